//! The two ends of the ring, their grants, and the options that build them.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::header::{Claimant, Header, Role, Word};
use crate::mirror::{Backend, MirrorMap, MirrorOptions};
use crate::peer::ProcessWatch;
use crate::protocol::{self, ConsumerCursor, ProducerCursor, Stop};
use crate::shared::SharedRing;
use crate::stats::{Counters, Stats, StatsHandle};
use crate::sync;
use crate::sys;
use crate::wait::{self, NoPeer, PeerCheck, Waiter};

/// The capacity [`RingOptions`] uses when none is given: 64 KiB (a Linux pipe's default).
pub const DEFAULT_CAPACITY: usize = 64 * 1024;

/// Options for building a ring, between threads ([`build`](RingOptions::build)) or between
/// processes ([`shared`](RingOptions::shared)).
///
/// # Examples
///
/// ```
/// use mirror_ring::{Backend, RingOptions};
/// use std::time::Duration;
///
/// let (tx, rx) = RingOptions::new()
///     .capacity(1 << 20)
///     .backend(Backend::Auto)
///     .prefault(true)
///     .spin_budget(Duration::from_micros(20))
///     .build()?;
/// assert_eq!(tx.capacity(), 1 << 20);
/// assert_eq!(rx.capacity(), 1 << 20);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RingOptions {
    capacity: usize,
    map: MirrorOptions,
    spin: Duration,
    start: u64,
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions { capacity: DEFAULT_CAPACITY, map: MirrorOptions::new(), spin: wait::DEFAULT_SPIN, start: 0 }
    }
}

impl RingOptions {
    /// Default options: [`DEFAULT_CAPACITY`], [`Backend::Auto`], no prefault, a 50 µs spin
    /// budget.
    pub fn new() -> Self {
        Self::default()
    }

    /// The capacity in bytes, rounded up to a power of two of at least one page (the ends
    /// report the real capacity).
    pub fn capacity(&mut self, bytes: usize) -> &mut Self {
        self.capacity = bytes;
        self
    }

    /// How the data pages are mirrored. Only [`Backend::Memfd`] rings can be handed to an
    /// unrelated process; every backend works across `fork`.
    pub fn backend(&mut self, backend: Backend) -> &mut Self {
        self.map.backend(backend);
        self
    }

    /// Fault in both views of the data at creation (see [`MirrorOptions::prefault`]).
    pub fn prefault(&mut self, yes: bool) -> &mut Self {
        self.map.prefault(yes);
        self
    }

    /// Keep the ring out of forked children (`MADV_DONTFORK` over the whole ring).
    pub fn dont_fork(&mut self, yes: bool) -> &mut Self {
        self.map.dont_fork(yes);
        self
    }

    /// How long a blocked call spins (then yields) before sleeping on a futex. Zero sleeps at
    /// once. Default 50 µs: about one futex park-and-wake round trip on the machines it was
    /// measured on, which bounds the cost of either choice to twice the better one.
    pub fn spin_budget(&mut self, budget: Duration) -> &mut Self {
        self.spin = budget;
        self
    }

    /// Test-only: start both cursors at `pos` (to exercise wrapping near `u64::MAX`).
    #[cfg(test)]
    pub(crate) fn start_position(&mut self, pos: u64) -> &mut Self {
        self.start = pos;
        self
    }

    /// Builds a ring for two threads of this process.
    ///
    /// # Errors
    ///
    /// As [`MirrorMap::with_backend`]: `InvalidInput` for a zero or absurd capacity,
    /// `OutOfMemory` (with the OS error as `source()`) when address space or mappings run out.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// let (mut tx, mut rx) = mirror_ring::RingOptions::new().capacity(4096).build()?;
    /// tx.write_all(b"hi")?;
    /// let mut buf = [0; 2];
    /// rx.read_exact(&mut buf)?;
    /// assert_eq!(&buf, b"hi");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn build(&self) -> io::Result<(Producer, Consumer)> {
        let ring = RingMem::create(self)?;
        let hdr = ring.header();
        let park = sync::register_process(false);
        // Both roles are taken by this process at once; nobody else can reach a thread ring
        // (unless it is forked, and then the ends belong to the parent). Nobody watches this
        // pid, so the start time and namespace are not needed.
        let me = Claimant { pid: sys::getpid(), start_time: 0, pid_ns: 0, park };
        let claimed = hdr.claim(Role::Producer, me) && hdr.claim(Role::Consumer, me);
        debug_assert!(claimed, "a fresh ring has free roles");
        let producer = Producer::attach(ring.clone(), self.spin, park, None)?;
        let consumer = Consumer::attach(ring, self.spin, park, None)?;
        Ok((producer, consumer))
    }

    /// Builds a ring to share between processes: an anonymous one survives `fork()`, and a
    /// [`Backend::Memfd`] one can also be sent to an unrelated process. Each process then
    /// claims one role ([`SharedRing::into_producer`], [`SharedRing::into_consumer`]).
    ///
    /// # Errors
    ///
    /// As [`build`](RingOptions::build).
    pub fn shared(&self) -> io::Result<SharedRing> {
        Ok(SharedRing::from_mem(RingMem::create(self)?, self.spin))
    }
}

/// Creates a ring for threads with [`DEFAULT_CAPACITY`]'s defaults but the given capacity.
/// Same as `RingOptions::new().capacity(capacity).build()`.
///
/// # Errors
///
/// As [`RingOptions::build`].
///
/// # Examples
///
/// ```
/// use std::io::{BufRead, Write};
///
/// let (mut tx, mut rx) = mirror_ring::channel(1 << 16)?;
/// let writer = std::thread::spawn(move || tx.write_all(b"one line\n"));
/// let mut line = String::new();
/// rx.read_line(&mut line)?;
/// assert_eq!(line, "one line\n");
/// writer.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn channel(capacity: usize) -> io::Result<(Producer, Consumer)> {
    RingOptions::new().capacity(capacity).build()
}

/// The mapped ring: the mirror plus its header. Shared (`Arc`) by both ends and by
/// [`SharedRing`]; unmapped when the last one drops.
pub(crate) struct RingMem {
    map: MirrorMap,
}

impl RingMem {
    fn create(opts: &RingOptions) -> io::Result<Arc<RingMem>> {
        let map = opts.map.map(opts.capacity)?;
        let mem = RingMem { map };
        mem.header().init(mem.capacity() as u64, sys::page_size() as u64, mem.map.backend().to_raw(), opts.start);
        Ok(Arc::new(mem))
    }

    /// Wraps a mapping whose header the caller has validated.
    pub(crate) fn from_validated(map: MirrorMap) -> Arc<RingMem> {
        Arc::new(RingMem { map })
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the control page is mapped read-write for as long as `map` lives, is
        // page-aligned (so aligned for Header) and at least a page long (Header fits, pinned by
        // a test). Header is only atomics, for which every bit pattern is valid, so a peer's
        // writes cannot make this reference invalid.
        unsafe { self.map.control_ptr().cast::<Header>().as_ref() }
    }

    pub(crate) fn map(&self) -> &MirrorMap {
        &self.map
    }

    pub(crate) fn capacity(&self) -> usize {
        self.map.len()
    }
}

impl fmt::Debug for RingMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingMem").field("map", &self.map).finish()
    }
}

/// What every end needs, whichever role it plays.
struct End {
    ring: Arc<RingMem>,
    hdr: NonNull<Header>,
    data: NonNull<u8>,
    spin: Duration,
    role: Role,
    /// How this end parks (`header::PARK_*`), as recorded in its role slot (downgraded if its
    /// barrier fails).
    park: Cell<u32>,
    /// Watches the peer process (rings between processes only).
    peer: Option<RefCell<ProcessWatch>>,
    /// The fork generation this end was claimed in: a forked child must not use it.
    generation: usize,
}

impl End {
    fn new(ring: Arc<RingMem>, role: Role, spin: Duration, park: u32, peer: Option<ProcessWatch>) -> End {
        let hdr = NonNull::from(ring.header());
        // SAFETY: as_ptr() is the non-null start of view A.
        let data = unsafe { NonNull::new_unchecked(ring.map().as_ptr()) };
        End {
            ring,
            hdr,
            data,
            spin,
            role,
            park: Cell::new(park),
            peer: peer.map(RefCell::new),
            generation: sync::fork_generation(),
        }
    }

    /// The shared header, if this end belongs to this process, else `None`: the one checked
    /// place through which every use of the shared memory passes. A forked child's copy of an
    /// end must not touch it: the parent owns the role, and with `dont_fork` the child does
    /// not even have the page. One relaxed load of a process-wide counter.
    #[inline(always)]
    fn header(&self) -> Option<&Header> {
        if self.generation == sync::fork_generation() {
            // SAFETY: points into `ring`'s control page, which `self.ring` keeps mapped in the
            // process that claimed the end (this one: the generation matches).
            Some(unsafe { self.hdr.as_ref() })
        } else {
            None
        }
    }

    /// [`header`](Self::header), or the error a call that returns a `Result` reports.
    #[inline(always)]
    fn header_or_err(&self) -> io::Result<&Header> {
        self.header().ok_or_else(forked_error)
    }

    /// Waits (see `wait.rs`) until `poll` says the call can go on. `hdr` is this end's header,
    /// from [`header`](Self::header).
    fn wait<T>(
        &self,
        hdr: &Header,
        counters: &Counters,
        deadline: Option<Instant>,
        mut poll: impl FnMut(&Header) -> Option<Result<T, Stop>>,
    ) -> Result<T, Stop> {
        let mut none = NoPeer;
        let mut watch = self.peer.as_ref().map(RefCell::borrow_mut);
        let peer: &mut dyn PeerCheck = match watch.as_deref_mut() {
            Some(p) => p,
            None => &mut none,
        };
        let mut park = self.park.get();
        let waiter = Waiter { hdr, role: self.role, park: &mut park, spin: self.spin, peer, counters };
        let r = wait::wait_for(waiter, deadline, || poll(hdr));
        self.park.set(park);
        r
    }

    /// Whether the peer's process is proven dead (rate-limited; see `peer.rs`).
    fn peer_gone(&self, counters: &Counters) -> bool {
        match (self.header(), &self.peer) {
            (Some(hdr), Some(p)) => p.borrow_mut().gone(hdr, counters),
            _ => false,
        }
    }

    /// Whether the peer is gone: closed, or its process died. Always true in a forked copy.
    fn abandoned(&self, counters: &Counters) -> bool {
        match self.header() {
            Some(hdr) => hdr.is_closed(self.role.peer()) || self.peer_gone(counters),
            None => true,
        }
    }
}

#[cold]
fn forked_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "this ring end belongs to the process that claimed it; a forked child cannot use it",
    )
}

#[cold]
fn poisoned_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "ring poisoned: the peer published an impossible cursor or corrupted the shared header",
    )
}

#[cold]
fn short_stream(left: usize, min: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the producer closed the ring with {left} bytes left, fewer than the {min} asked for"),
    )
}

/// Copies `n` bytes out of the ring. With `racy`, the source may be written by another
/// process at the same time (a hostile peer): then every byte is read exactly once, with
/// volatile loads, so the compiler cannot read a byte twice and hand the caller a value other
/// than the one it copied (a plain `memcpy` from memory that changes underneath is a data
/// race in Rust's model). Without `racy`, a plain `memcpy`.
///
/// # Safety
///
/// `src` is valid for `n` bytes of reads, `dst` for `n` bytes of writes, and they do not
/// overlap.
#[inline]
pub(crate) unsafe fn copy_out(src: *const u8, dst: *mut u8, n: usize, racy: bool) {
    if !racy {
        // SAFETY: the caller vouches for both ranges.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, n) };
        return;
    }
    /// The widest load that every target of this crate can do in one volatile instruction.
    #[cfg(target_arch = "x86_64")]
    type Chunk = std::arch::x86_64::__m128i;
    #[cfg(not(target_arch = "x86_64"))]
    type Chunk = u64;
    const W: usize = std::mem::size_of::<Chunk>();
    let mut i = 0;
    // SAFETY: every access lies within the `n` bytes the caller vouches for; the chunk loads
    // are aligned (the loop before them walks `src + i` to a multiple of W); the stores are
    // unaligned writes to caller memory.
    unsafe {
        while i < n && (src.add(i) as usize) % W != 0 {
            dst.add(i).write(src.add(i).read_volatile());
            i += 1;
        }
        while i + W <= n {
            let v = src.add(i).cast::<Chunk>().read_volatile();
            dst.add(i).cast::<Chunk>().write_unaligned(v);
            i += W;
        }
        while i < n {
            dst.add(i).write(src.add(i).read_volatile());
            i += 1;
        }
    }
}

fn too_big(min: usize, cap: usize) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("asked for {min} contiguous bytes; the ring holds {cap}"))
}

/// Whether and how long a call may block.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Never block: `WouldBlock` instead.
    No,
    /// Block until the deadline (`None`: forever).
    Until(Option<Instant>),
}

impl Wait {
    /// Block for at most `timeout` (one too large to represent is no deadline at all).
    pub(crate) fn within(timeout: Duration) -> Wait {
        Wait::Until(Instant::now().checked_add(timeout))
    }
}

/// Turns a [`Stop`] into the error the producer reports.
fn producer_error(stop: Stop) -> io::Error {
    match stop {
        Stop::Closed => io::Error::new(io::ErrorKind::BrokenPipe, "the consumer closed the ring"),
        Stop::PeerDied => io::Error::new(io::ErrorKind::BrokenPipe, "the consumer's process died"),
        Stop::Corrupt => poisoned_error(),
        Stop::TimedOut => io::Error::new(io::ErrorKind::TimedOut, "timed out waiting for space in the ring"),
    }
}

/// The writing end of a ring.
///
/// Writes go straight into the shared pages: [`write_grant`](Producer::write_grant) lends the
/// free space as one `&mut [u8]` (contiguous even across the wrap), and
/// [`commit`](WriteGrant::commit) publishes what was written. [`io::Write`] blocks until at
/// least one byte fits; [`try_write`](Producer::try_write) never blocks.
///
/// Dropping the producer closes the ring: the consumer reads what is left, then sees end of
/// stream.
///
/// `Producer` is [`Send`] but not [`Sync`]:
///
/// ```compile_fail
/// fn needs_sync<T: Sync>() {}
/// needs_sync::<mirror_ring::Producer>();
/// ```
pub struct Producer {
    end: End,
    cur: ProducerCursor,
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: the producer's private state is plain data, and the ring memory it points into is
// kept alive by the Arc it owns; only one thread at a time can use it (it is not Sync), which
// is all the single-producer protocol needs.
unsafe impl Send for Producer {}

impl Producer {
    pub(crate) fn attach(
        ring: Arc<RingMem>,
        spin: Duration,
        park: u32,
        peer: Option<ProcessWatch>,
    ) -> io::Result<Producer> {
        let cap = ring.capacity() as u64;
        let cur = ProducerCursor::attach(ring.header(), cap).map_err(|_| poisoned_error())?;
        Ok(Producer { end: End::new(ring, Role::Producer, spin, park, peer), cur, _not_sync: PhantomData })
    }

    /// The ring's capacity in bytes (the requested size rounded up).
    pub fn capacity(&self) -> usize {
        self.end.ring.capacity()
    }

    /// The backend the ring was built with.
    pub fn backend(&self) -> Backend {
        self.end.ring.map().backend()
    }

    /// Bytes committed and not yet released by the consumer, as the consumer's cursor shows
    /// now (an upper bound once the cursor was seen to be impossible: the next write reports
    /// that).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, _rx) = mirror_ring::channel(4096)?;
    /// tx.try_write(b"abc")?;
    /// assert_eq!(tx.len(), 3);
    /// assert_eq!(tx.free(), 4093);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.capacity() - self.free()
    }

    /// Whether the consumer has released everything committed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Free bytes: how much a write could take right now, as the consumer's cursor shows now.
    pub fn free(&self) -> usize {
        // A forked child's copy must not touch the header (gone with `dont_fork`).
        self.end.header().and_then(|hdr| self.cur.peek_free(hdr)).unwrap_or_else(|| self.cur.free_cached())
    }

    /// Whether the consumer is gone: it closed its end, or its process is proven dead. Always
    /// true in a forked child, where this end cannot be used.
    pub fn is_abandoned(&self) -> bool {
        self.end.abandoned(self.cur.counters())
    }

    /// What this end's blocking calls have done so far (see [`Stats`]).
    pub fn stats(&self) -> Stats {
        self.cur.counters().snapshot()
    }

    /// A handle to this end's counters that another thread can read (see [`StatsHandle`]).
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.cur.counters().clone())
    }

    /// Waits (per `wait`) until at least `min` bytes are free, and returns the free byte
    /// count. The cached tail is refreshed first if it shows fewer than `want` free bytes.
    /// The free space starts at [`write_ptr`](Self::write_ptr).
    #[inline]
    pub(crate) fn reserve(&mut self, min: usize, want: usize, wait: Wait) -> io::Result<usize> {
        let hdr = self.end.header_or_err()?;
        if min > self.capacity() {
            return Err(too_big(min, self.capacity()));
        }
        // Relaxed-cost check of a read-mostly line: writes fail as soon as the consumer is gone.
        if hdr.is_closed(Role::Consumer) {
            return Err(producer_error(Stop::Closed));
        }
        match self.cur.writable(hdr, want.max(min)) {
            Ok(free) if free >= min.max(1) => return Ok(free),
            Ok(_) => {}
            Err(_) => return Err(poisoned_error()),
        }
        self.reserve_slow(min.max(1), wait)
    }

    #[cold]
    fn reserve_slow(&mut self, min: usize, wait: Wait) -> io::Result<usize> {
        let hdr = self.end.header_or_err()?;
        let deadline = match wait {
            Wait::No => {
                // Full as far as the cached cursors tell: look at the shared flags as a blocking
                // call would, so a poisoned ring is an error here too, not "full" for ever.
                match self.cur.poll_writable(hdr, min) {
                    Some(r) => return r.map_err(producer_error),
                    None if self.end.peer_gone(self.cur.counters()) => return Err(producer_error(Stop::PeerDied)),
                    None => return Err(io::ErrorKind::WouldBlock.into()),
                }
            }
            Wait::Until(deadline) => deadline,
        };
        // Batched commits must be visible before we sleep, or the consumer could wait for them
        // while we wait for it.
        self.cur.publish(hdr);
        let counters = self.cur.counters().clone();
        let cur = &mut self.cur;
        self.end.wait(hdr, &counters, deadline, |hdr| cur.poll_writable(hdr, min)).map_err(producer_error)
    }

    /// Where the free space starts: `free` bytes from here are the producer's, as one slice.
    #[inline]
    pub(crate) fn write_ptr(&self) -> *mut u8 {
        // SAFETY: offset < N, so the pointer is inside view A.
        unsafe { self.end.data.as_ptr().add(self.cur.offset()) }
    }

    /// Whether a write may go ahead without asking [`reserve`](Self::reserve): this end
    /// belongs to this process, its cursor is not poisoned and the consumer has not closed
    /// (the checks `reserve` makes before it looks at the free space). For callers that track
    /// the free space themselves.
    #[inline(always)]
    pub(crate) fn may_write(&self) -> bool {
        self.end.header().is_some_and(|hdr| !hdr.is_closed(Role::Consumer)) && !self.cur.is_poisoned()
    }

    /// The producer's own cursor: every byte ever advanced, published or not.
    #[inline(always)]
    pub(crate) fn position(&self) -> u64 {
        self.cur.head()
    }

    /// `Unsupported` if this end is a forked copy (the check every call makes first).
    #[inline(always)]
    pub(crate) fn check_owned(&self) -> io::Result<()> {
        self.end.header_or_err().map(|_| ())
    }

    /// Whether this end may write without further checks: it belongs to this process and its
    /// cursor is not poisoned (the local checks of [`may_write`](Self::may_write), without
    /// looking at the shared header).
    #[inline(always)]
    pub(crate) fn usable(&self) -> bool {
        self.end.header().is_some() && !self.cur.is_poisoned()
    }

    /// Free bytes according to the cached consumer cursor (a lower bound; no shared memory is
    /// read). For callers that track the free space themselves.
    #[inline(always)]
    pub(crate) fn free_cached(&self) -> usize {
        self.cur.free_cached()
    }

    /// Counts `n` bytes written at `write_ptr()` without publishing them (see `publish`).
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) {
        self.cur.advance(n);
    }

    /// Publishes every advanced byte and wakes the consumer if it sleeps. Does nothing in a
    /// forked copy (`Unsupported`).
    #[inline]
    pub(crate) fn publish(&mut self) -> io::Result<()> {
        let hdr = self.end.header_or_err()?;
        self.cur.publish(hdr);
        Ok(())
    }

    /// Bytes advanced and not yet published.
    #[inline]
    pub(crate) fn unpublished(&self) -> usize {
        self.cur.unpublished()
    }

    /// Whether the consumer is asleep waiting for data (false in a forked copy).
    #[inline]
    pub(crate) fn consumer_sleeping(&self) -> bool {
        self.end.header().is_some_and(|hdr| protocol::peer_sleeping(hdr, Word::Data))
    }

    /// The error a write reports now, if any: `Unsupported` in a forked copy, `InvalidData`
    /// once the ring is poisoned, `BrokenPipe` once the consumer closed or died.
    pub(crate) fn check_usable(&mut self) -> io::Result<()> {
        let hdr = self.end.header_or_err()?;
        if self.cur.is_poisoned() || hdr.is_poisoned() {
            return Err(poisoned_error());
        }
        if hdr.is_closed(Role::Consumer) {
            return Err(producer_error(Stop::Closed));
        }
        if self.end.peer_gone(self.cur.counters()) {
            return Err(producer_error(Stop::PeerDied));
        }
        Ok(())
    }

    /// Writes as much of `buf` as fits now, without blocking.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when the ring is full (and `buf` is not empty); `BrokenPipe` when the
    /// consumer is gone; `InvalidData` when the ring is poisoned; `Unsupported` in a forked
    /// child.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, _rx) = mirror_ring::channel(4096)?;
    /// assert_eq!(tx.try_write(&[1; 5000])?, 4096);
    /// assert_eq!(tx.try_write(&[1]).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[inline]
    pub fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_with(buf, Wait::No)
    }

    /// Writes as much of `buf` as fits, waiting up to `timeout` for at least one byte of space.
    ///
    /// # Errors
    ///
    /// `TimedOut` when no space appeared in time; otherwise as [`try_write`](Self::try_write).
    pub fn write_timeout(&mut self, buf: &[u8], timeout: Duration) -> io::Result<usize> {
        self.write_with(buf, Wait::within(timeout))
    }

    /// Copies as much of `buf` as fits (waiting per `wait` for one byte) and commits it.
    #[inline]
    pub(crate) fn write_with(&mut self, buf: &[u8], wait: Wait) -> io::Result<usize> {
        if buf.is_empty() {
            self.end.header_or_err()?;
            return Ok(0);
        }
        let free = self.reserve(1, buf.len(), wait)?;
        let n = buf.len().min(free);
        // SAFETY: write_ptr() is at offset < N and n <= free <= N, so [offset, offset + n) lies
        // within the two views (2N bytes); the producer owns those free bytes until it commits.
        // `buf` cannot overlap them: the only ring memory a caller can hold is a read grant,
        // which covers unreleased bytes, physically disjoint from free space.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), self.write_ptr(), n) };
        self.commit(n)?;
        Ok(n)
    }

    /// Publishes `n` more bytes written at `write_ptr()` (at most the free space last
    /// reported), through the one checked place.
    #[inline]
    fn commit(&mut self, n: usize) -> io::Result<()> {
        let hdr = self.end.header_or_err()?;
        self.cur.commit(hdr, n);
        Ok(())
    }

    /// Lends all free space as one contiguous slice, if at least `min` bytes are free; never
    /// blocks. Write into the grant, then [`commit`](WriteGrant::commit) how much to publish.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when fewer than `max(min, 1)` bytes are free; `InvalidInput` when `min`
    /// exceeds the capacity; `BrokenPipe` when the consumer is gone; `InvalidData` when the
    /// ring is poisoned; `Unsupported` in a forked child.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mirror_ring::channel(4096)?;
    /// let mut grant = tx.write_grant(3)?;
    /// grant[..3].copy_from_slice(b"abc");
    /// grant.commit(3)?;
    /// assert_eq!(&*rx.read_grant(3)?, b"abc");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[inline]
    pub fn write_grant(&mut self, min: usize) -> io::Result<WriteGrant<'_>> {
        self.grant_with(min, Wait::No)
    }

    /// Like [`write_grant`](Self::write_grant), but waits for `min` bytes of space.
    ///
    /// # Errors
    ///
    /// As [`write_grant`](Self::write_grant), without `WouldBlock`.
    pub fn write_grant_blocking(&mut self, min: usize) -> io::Result<WriteGrant<'_>> {
        self.grant_with(min, Wait::Until(None))
    }

    /// Like [`write_grant`](Self::write_grant), but waits up to `timeout` for `min` bytes.
    ///
    /// # Errors
    ///
    /// `TimedOut` when the space did not appear in time; otherwise as
    /// [`write_grant`](Self::write_grant).
    pub fn write_grant_timeout(&mut self, min: usize, timeout: Duration) -> io::Result<WriteGrant<'_>> {
        self.grant_with(min, Wait::within(timeout))
    }

    #[inline]
    fn grant_with(&mut self, min: usize, wait: Wait) -> io::Result<WriteGrant<'_>> {
        let len = self.reserve(min, min, wait)?;
        Ok(WriteGrant { ptr: self.write_ptr(), len, producer: self })
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // A copy inherited by a forked child must not close the parent's ring.
        if let Some(hdr) = self.end.header() {
            self.cur.publish(hdr);
            protocol::close(hdr, Role::Producer);
        }
    }
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.capacity())
            .field("backend", &self.backend())
            .field("len_at_most", &self.cur.used_cached())
            .field("position", &self.cur.head())
            .field("poisoned", &self.cur.is_poisoned())
            .finish()
    }
}

/// Free space lent by [`Producer::write_grant`]: one contiguous `&mut [u8]`, even where the
/// ring wraps. Nothing is published until [`commit`](WriteGrant::commit); dropping the grant
/// publishes nothing.
#[must_use = "a grant publishes nothing until it is committed"]
pub struct WriteGrant<'a> {
    ptr: *mut u8,
    len: usize,
    producer: &'a mut Producer,
}

impl WriteGrant<'_> {
    /// Publishes the first `n` bytes of the grant to the consumer.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `n` exceeds the grant; `Unsupported` in a forked child (a grant held
    /// across `fork()`); nothing is committed then.
    pub fn commit(self, n: usize) -> io::Result<()> {
        if n > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot commit {n} bytes from a {}-byte grant", self.len),
            ));
        }
        self.producer.commit(n)
    }

    /// The grant's length (all the free space at the time it was made).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the grant is empty (never, for grants the producer hands out).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Deref for WriteGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: [ptr, ptr + len) is free space owned by the producer (len <= N, inside the
        // two views), initialised memory (zeroed at creation or written before), and no other
        // reference to it exists while the grant borrows the producer mutably.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl DerefMut for WriteGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref; the grant is the only reference to these bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl fmt::Debug for WriteGrant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteGrant").field("len", &self.len).finish()
    }
}

/// Turns a [`Stop`] into the error the consumer reports. `Closed` is not an error for reads
/// (it is `Ok(0)`); callers handle it before this.
fn consumer_error(stop: Stop) -> io::Error {
    match stop {
        Stop::Closed => io::Error::new(io::ErrorKind::UnexpectedEof, "the producer closed the ring"),
        Stop::PeerDied => io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the producer's process died without closing the ring (every committed byte was read)",
        ),
        Stop::Corrupt => poisoned_error(),
        Stop::TimedOut => io::Error::new(io::ErrorKind::TimedOut, "timed out waiting for data in the ring"),
    }
}

/// The reading end of a ring.
///
/// [`read_grant`](Consumer::read_grant) and [`fill_buf`](io::BufRead::fill_buf) lend the
/// readable bytes as one `&[u8]` (contiguous even across the wrap), so a parser can take whole
/// records straight from the ring. [`io::Read`] blocks until at least one byte is there;
/// [`try_read`](Consumer::try_read) never blocks.
///
/// When the producer closes, the consumer reads what is left, then sees end of stream
/// (`Ok(0)`). If the producer's process dies without closing, the consumer reads every
/// committed byte, then gets `UnexpectedEof`.
///
/// `Consumer` is [`Send`] but not [`Sync`]:
///
/// ```compile_fail
/// fn needs_sync<T: Sync>() {}
/// needs_sync::<mirror_ring::Consumer>();
/// ```
pub struct Consumer {
    end: End,
    cur: ConsumerCursor,
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: as for Producer: private state plus an Arc-owned mapping, used by one thread at a
// time.
unsafe impl Send for Consumer {}

impl Consumer {
    pub(crate) fn attach(
        ring: Arc<RingMem>,
        spin: Duration,
        park: u32,
        peer: Option<ProcessWatch>,
    ) -> io::Result<Consumer> {
        let cap = ring.capacity() as u64;
        let cur = ConsumerCursor::attach(ring.header(), cap).map_err(|_| poisoned_error())?;
        Ok(Consumer { end: End::new(ring, Role::Consumer, spin, park, peer), cur, _not_sync: PhantomData })
    }

    /// The ring's capacity in bytes (the requested size rounded up).
    pub fn capacity(&self) -> usize {
        self.end.ring.capacity()
    }

    /// The backend the ring was built with.
    pub fn backend(&self) -> Backend {
        self.end.ring.map().backend()
    }

    /// Readable bytes right now, as the producer's cursor shows now (a lower bound once the
    /// cursor was seen to be impossible: the next read reports that).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = mirror_ring::channel(4096)?;
    /// assert!(rx.is_empty());
    /// tx.try_write(b"abc")?;
    /// assert_eq!(rx.len(), 3);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        // A forked child's copy must not touch the header (gone with `dont_fork`).
        self.end.header().and_then(|hdr| self.cur.peek_readable(hdr)).unwrap_or_else(|| self.cur.readable_cached())
    }

    /// Whether nothing is readable right now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the producer is gone: it closed its end, or its process is proven dead. Bytes
    /// it committed may still be readable. Always true in a forked child, where this end
    /// cannot be used.
    pub fn is_abandoned(&self) -> bool {
        self.end.abandoned(self.cur.counters())
    }

    /// What this end's blocking calls have done so far (see [`Stats`]).
    pub fn stats(&self) -> Stats {
        self.cur.counters().snapshot()
    }

    /// A handle to this end's counters that another thread can read (see [`StatsHandle`]).
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.cur.counters().clone())
    }

    /// Waits (per `wait`) until at least `min` bytes are readable and returns the readable
    /// count. After a clean close it returns whatever remains if that is at least `min`;
    /// fewer (and nothing more can come) is `UnexpectedEof`, except that an empty ring at the
    /// end of the stream returns 0 when `min` is 0 (the end-of-stream answer). The bytes start
    /// at [`read_ptr`](Self::read_ptr).
    #[inline]
    pub(crate) fn available(&mut self, min: usize, wait: Wait) -> io::Result<usize> {
        self.available_or_rest(min, wait, false)
    }

    /// As [`available`](Self::available), but after a clean close whatever remains is returned
    /// even if it is fewer than `min` (for framing, which judges a short rest itself).
    #[inline]
    pub(crate) fn available_or_rest(&mut self, min: usize, wait: Wait, rest: bool) -> io::Result<usize> {
        let hdr = self.end.header_or_err()?;
        if min > self.capacity() {
            return Err(too_big(min, self.capacity()));
        }
        match self.cur.readable(hdr, min.max(1)) {
            Ok(n) if n >= min.max(1) => Ok(n),
            Ok(_) => self.available_slow(min, wait, rest),
            Err(_) => Err(poisoned_error()),
        }
    }

    #[cold]
    fn available_slow(&mut self, min: usize, wait: Wait, rest: bool) -> io::Result<usize> {
        let hdr = self.end.header_or_err()?;
        let want = min.max(1);
        let result = match wait {
            Wait::No => match self.cur.poll_readable(hdr, want) {
                Some(r) => r,
                None if self.end.peer_gone(self.cur.counters()) => {
                    self.cur.poll_readable(hdr, want).unwrap_or(Err(Stop::PeerDied))
                }
                None => return Err(io::ErrorKind::WouldBlock.into()),
            },
            Wait::Until(deadline) => {
                // Batched releases must be visible before we sleep, or the producer could wait
                // for space while we wait for it.
                self.cur.publish(hdr);
                let counters = self.cur.counters().clone();
                let cur = &mut self.cur;
                self.end.wait(hdr, &counters, deadline, |hdr| cur.poll_readable(hdr, want))
            }
        };
        match result {
            Ok(n) => Ok(n),
            Err(Stop::Closed) => match self.cur.readable_cached() {
                left if left >= min || rest => Ok(left),
                left => Err(short_stream(left, min)),
            },
            Err(stop) => Err(consumer_error(stop)),
        }
    }

    /// Where the readable bytes start.
    #[inline]
    pub(crate) fn read_ptr(&self) -> *const u8 {
        // SAFETY: offset < N: inside view A.
        unsafe { self.end.data.as_ptr().add(self.cur.offset()) }
    }

    /// Whether this end may read without further checks: it belongs to this process (the first
    /// check [`available`](Self::available) makes). For callers that track the readable bytes
    /// themselves.
    #[inline(always)]
    pub(crate) fn usable(&self) -> bool {
        self.end.header().is_some()
    }

    /// Whether the peer writing these bytes is another process, which may change them while
    /// they are copied out (see [`copy_out`]).
    #[inline(always)]
    pub(crate) fn peer_untrusted(&self) -> bool {
        self.end.peer.is_some()
    }

    /// Readable bytes according to the cached producer cursor (a lower bound; no shared memory
    /// is read). For callers that track the readable bytes themselves.
    #[inline(always)]
    pub(crate) fn readable_cached(&self) -> usize {
        self.cur.readable_cached()
    }

    /// Counts `n` bytes as consumed and releases them (with everything consumed before): the
    /// one place a release goes through. Does nothing at all in a forked copy, whose cursor
    /// must not move either.
    #[inline]
    pub(crate) fn release(&mut self, n: usize) {
        if let Some(hdr) = self.end.header() {
            self.cur.release(hdr, n);
        }
    }

    /// Poisons the ring for good (every later call fails with `InvalidData`, and the producer
    /// sees the shared flag): for corruption found inside the bytes, such as a bad frame header.
    #[cold]
    pub(crate) fn poison(&mut self) -> io::Error {
        if let Some(hdr) = self.end.header() {
            let _ = self.cur.poison(hdr);
        }
        poisoned_error()
    }

    /// Reads as many bytes as are readable now, up to `buf.len()`, without blocking.
    ///
    /// Between processes the bytes are copied with loads that tolerate a peer writing them at
    /// the same time (see the crate docs, "Trust model"): the copy is what you validate.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when nothing is readable (and `buf` is not empty). `Ok(0)` means end of
    /// stream: the producer closed and everything was read. `UnexpectedEof` when the producer's
    /// process died and everything it committed was read; `InvalidData` when the ring is
    /// poisoned; `Unsupported` in a forked child.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mirror_ring::channel(4096)?;
    /// let mut buf = [0; 8];
    /// assert_eq!(rx.try_read(&mut buf).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// tx.try_write(b"abc")?;
    /// drop(tx);
    /// assert_eq!(rx.try_read(&mut buf)?, 3);
    /// assert_eq!(rx.try_read(&mut buf)?, 0); // end of stream
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[inline]
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(buf, Wait::No)
    }

    /// Reads up to `buf.len()` bytes, waiting up to `timeout` for at least one.
    ///
    /// # Errors
    ///
    /// `TimedOut` when nothing arrived in time; otherwise as [`try_read`](Self::try_read).
    pub fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        self.read_with(buf, Wait::within(timeout))
    }

    /// Copies up to `buf.len()` readable bytes out (waiting per `wait` for one) and releases
    /// them. `Ok(0)` at end of stream.
    #[inline]
    pub(crate) fn read_with(&mut self, buf: &mut [u8], wait: Wait) -> io::Result<usize> {
        if buf.is_empty() {
            self.end.header_or_err()?;
            return Ok(0);
        }
        let mut n = self.available(0, wait)?;
        if n < buf.len() && n > 0 {
            // `available` may have answered from the cached head: reload it once, as
            // `write_with` does for space, so a read takes every byte readable now. If the
            // reload finds the head corrupt, the bytes already validated are still served; the
            // next call reports the poisoning.
            if let Some(hdr) = self.end.header() {
                n = self.cur.readable(hdr, buf.len()).unwrap_or(n);
            }
        }
        let n = buf.len().min(n);
        // SAFETY: read_ptr() is at offset < N and n <= readable <= N: inside the two views.
        // The bytes were published before the Acquire load that reported them readable; the
        // producer does not touch them until we release them. `buf` is caller memory, which
        // cannot be these unreleased bytes (a write grant covers only free space).
        unsafe { copy_out(self.read_ptr(), buf.as_mut_ptr(), n, self.peer_untrusted()) };
        self.release(n);
        Ok(n)
    }

    /// Lends every readable byte as one contiguous slice, if at least `min` are readable; never
    /// blocks. [`release`](ReadGrant::release) frees what was consumed. The grant is never
    /// shorter than `min`.
    ///
    /// At the end of the stream (the producer closed): if at least `min` bytes remain, they
    /// are lent as usual; if fewer remain, that is `UnexpectedEof` (the bytes stay readable
    /// with a smaller `min`); with `min == 0` an empty ring at the end of the stream lends an
    /// empty grant, the end-of-stream answer.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when fewer than `max(min, 1)` bytes are readable and more may come;
    /// `UnexpectedEof` when fewer than `min` (`min > 0`) can ever come (the producer closed),
    /// or after the producer's process died and everything was read; `InvalidInput` when `min`
    /// exceeds the capacity; `InvalidData` when the ring is poisoned; `Unsupported` in a forked
    /// child.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mirror_ring::channel(4096)?;
    /// tx.try_write(b"hello world")?;
    /// let grant = rx.read_grant(5)?;
    /// assert_eq!(&grant[..5], b"hello");
    /// grant.release(6)?; // "hello "
    /// assert_eq!(&*rx.read_grant(1)?, b"world");
    /// drop(tx);
    /// // "world" (5 bytes) is all that will ever come:
    /// let err = rx.read_grant(8).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    /// rx.read_grant(5)?.release(5)?;
    /// assert!(rx.read_grant(0)?.is_empty()); // end of stream
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[inline]
    pub fn read_grant(&mut self, min: usize) -> io::Result<ReadGrant<'_>> {
        self.grant_with(min, Wait::No)
    }

    /// Like [`read_grant`](Self::read_grant), but waits for `min` readable bytes.
    ///
    /// # Errors
    ///
    /// As [`read_grant`](Self::read_grant), without `WouldBlock`.
    pub fn read_grant_blocking(&mut self, min: usize) -> io::Result<ReadGrant<'_>> {
        self.grant_with(min, Wait::Until(None))
    }

    /// Like [`read_grant`](Self::read_grant), but waits up to `timeout` for `min` bytes.
    ///
    /// # Errors
    ///
    /// `TimedOut` when they did not arrive in time; otherwise as
    /// [`read_grant`](Self::read_grant).
    pub fn read_grant_timeout(&mut self, min: usize, timeout: Duration) -> io::Result<ReadGrant<'_>> {
        self.grant_with(min, Wait::within(timeout))
    }

    #[inline]
    fn grant_with(&mut self, min: usize, wait: Wait) -> io::Result<ReadGrant<'_>> {
        let len = self.available(min, wait)?;
        Ok(ReadGrant { ptr: self.read_ptr(), len, consumer: self })
    }

    /// Every byte readable now, refreshing the producer's cursor; blocks only while nothing is
    /// readable. Backs `BufRead::fill_buf`.
    pub(crate) fn fill(&mut self) -> io::Result<&[u8]> {
        let hdr = self.end.header_or_err()?;
        let n = match self.cur.refresh(hdr) {
            Ok(0) => self.available(0, Wait::Until(None))?,
            Ok(n) => n,
            Err(_) => return Err(poisoned_error()),
        };
        // SAFETY: as in `ReadGrant::deref`, for n readable bytes (n <= N).
        Ok(unsafe { std::slice::from_raw_parts(self.read_ptr(), n) })
    }

    /// Releases up to `n` bytes (clamped to what is readable). Backs `BufRead::consume`.
    pub(crate) fn consume_clamped(&mut self, n: usize) {
        let mut known = self.cur.readable_cached();
        if n > known {
            // More than the last `fill_buf` showed (say, what `len` reported since): look once
            // more. A corrupt cursor is reported by the next call that returns a `Result`.
            if let Some(hdr) = self.end.header() {
                known = self.cur.refresh(hdr).unwrap_or(known);
            }
        }
        self.release(n.min(known));
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // A copy inherited by a forked child must not close the parent's ring.
        if let Some(hdr) = self.end.header() {
            self.cur.publish(hdr);
            protocol::close(hdr, Role::Consumer);
        }
    }
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.capacity())
            .field("backend", &self.backend())
            .field("len_at_least", &self.cur.readable_cached())
            .field("position", &self.cur.tail())
            .field("poisoned", &self.cur.is_poisoned())
            .finish()
    }
}

/// Readable bytes lent by [`Consumer::read_grant`]: one contiguous `&[u8]`, even where the ring
/// wraps. Nothing is freed until [`release`](ReadGrant::release); dropping the grant frees
/// nothing, so the same bytes are lent again next time.
#[must_use = "a grant frees nothing until it is released"]
pub struct ReadGrant<'a> {
    ptr: *const u8,
    len: usize,
    consumer: &'a mut Consumer,
}

impl ReadGrant<'_> {
    /// Frees the first `n` bytes of the grant for the producer.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `n` exceeds the grant; `Unsupported` in a forked child (a grant held
    /// across `fork()`); nothing is released then.
    pub fn release(self, n: usize) -> io::Result<()> {
        if n > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot release {n} bytes from a {}-byte grant", self.len),
            ));
        }
        self.consumer.end.header_or_err()?;
        self.consumer.release(n);
        Ok(())
    }

    /// The grant's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the grant is empty (only at end of stream, for `min == 0`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Deref for ReadGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: [ptr, ptr + len) holds published, unreleased bytes (len <= N, inside the two
        // views); the producer does not write them until they are released, which needs the
        // consumer this grant borrows mutably.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl fmt::Debug for ReadGrant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadGrant").field("len", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Rng;
    use std::collections::VecDeque;
    use std::io::{ErrorKind, Read};
    use std::sync::atomic::Ordering;

    fn header_of(p: &Producer) -> &Header {
        p.end.header().unwrap()
    }

    /// Random grants, commits, reads and releases against a `VecDeque` model, with both cursors
    /// starting just below `u64::MAX`, so the stream crosses the wrap of the `u64` cursors as
    /// well as the wrap of the ring, many times.
    #[test]
    fn cursors_wrap_around_u64_max() {
        for backend in Backend::CONCRETE.into_iter().filter(|b| b.is_available()) {
            let start = u64::MAX - 10_000;
            let (mut tx, mut rx) =
                RingOptions::new().capacity(4096).backend(backend).start_position(start).build().unwrap();
            let cap = tx.capacity();
            let mut model = VecDeque::new();
            let mut rng = Rng::new(7);
            let mut next = 0u8;
            let mut moved = 0u64;
            while moved < 200_000 {
                if rng.below(1) == 0 {
                    let want = rng.below(cap);
                    match tx.write_grant(want) {
                        Ok(mut g) => {
                            assert!(g.len() >= want.max(1) && g.len() <= cap - model.len());
                            let n = rng.below(g.len());
                            for b in &mut g[..n] {
                                *b = next;
                                model.push_back(next);
                                next = next.wrapping_add(1);
                            }
                            g.commit(n).unwrap();
                        }
                        Err(e) => {
                            assert_eq!(e.kind(), ErrorKind::WouldBlock);
                            assert!(cap - model.len() < want.max(1), "free {} want {want}", cap - model.len());
                        }
                    }
                } else {
                    let want = rng.below(cap);
                    match rx.read_grant(want) {
                        Ok(g) => {
                            assert!(g.len() >= want.max(1) && g.len() <= model.len());
                            let n = rng.below(g.len());
                            for (i, b) in g[..n].iter().enumerate() {
                                assert_eq!(*b, model[i]);
                            }
                            g.release(n).unwrap();
                            model.drain(..n);
                            moved += n as u64;
                        }
                        Err(e) => {
                            assert_eq!(e.kind(), ErrorKind::WouldBlock);
                            assert!(model.len() < want.max(1));
                        }
                    }
                }
            }
            assert!(rx.cur.tail() < start, "{backend}: the cursor did not wrap past u64::MAX");
        }
    }

    #[test]
    fn a_head_beyond_capacity_poisons_the_consumer_for_good() {
        let (mut tx, mut rx) = channel(4096).unwrap();
        tx.try_write(b"abc").unwrap();
        let hdr = header_of(&tx);
        // A "peer" publishes a head more than a capacity ahead of the tail.
        hdr.head.store(3 + 4096 + 1, Ordering::Release);
        let mut buf = [0; 8];
        assert_eq!(rx.try_read(&mut buf).unwrap_err().kind(), ErrorKind::InvalidData);
        assert_eq!(rx.read(&mut buf).unwrap_err().kind(), ErrorKind::InvalidData);
        // Even a sane value afterwards does not un-poison it.
        hdr.head.store(3, Ordering::Release);
        assert_eq!(rx.try_read(&mut buf).unwrap_err().kind(), ErrorKind::InvalidData);
        assert!(hdr.is_poisoned());
        // The producer sees the shared flag once it has to look at the consumer's cursor.
        tx.try_write(&[0; 4093]).unwrap();
        assert_eq!(tx.try_write(b"x").unwrap_err().kind(), ErrorKind::InvalidData);
        assert_eq!(tx.write_timeout(b"x", Duration::from_millis(1)).unwrap_err().kind(), ErrorKind::InvalidData);
    }

    #[test]
    fn a_head_moving_backwards_poisons_the_consumer() {
        let (mut tx, mut rx) = channel(4096).unwrap();
        tx.try_write(&[1; 100]).unwrap();
        let mut buf = [0; 10];
        assert_eq!(rx.try_read(&mut buf).unwrap(), 10);
        // head goes back to 50: still >= tail (10) but behind what was already seen (100).
        header_of(&tx).head.store(50, Ordering::Release);
        // Cached bytes are still served (they were validated); the refresh then fails.
        let mut big = [0; 200];
        assert_eq!(rx.try_read(&mut big).unwrap(), 90);
        assert_eq!(rx.try_read(&mut big).unwrap_err().kind(), ErrorKind::InvalidData);
    }

    #[test]
    fn a_tail_beyond_head_or_backwards_poisons_the_producer() {
        for bad_tail in [111u64, u64::MAX] {
            let (mut tx, rx) = channel(4096).unwrap();
            tx.try_write(&[1; 100]).unwrap();
            header_of(&tx).tail.store(bad_tail, Ordering::Release);
            // (111 is one past the head after the next write; u64::MAX is behind the old tail.)
            // The cached tail says 3996 bytes are free, so this fits without a refresh...
            tx.try_write(&[1; 10]).unwrap();
            // ...but needing more forces a refresh, which must refuse the value.
            assert_eq!(tx.try_write(&[1; 4000]).unwrap_err().kind(), ErrorKind::InvalidData, "tail {bad_tail}");
            assert_eq!(tx.try_write(&[1]).unwrap_err().kind(), ErrorKind::InvalidData);
            drop(rx);
        }
    }

    /// A consumer that finds the ring corrupt wakes a producer asleep on a full ring, which
    /// then fails with `InvalidData`. Every sleep is bounded, so the proof that it was woken
    /// (not rescued by its bound) is in its counters.
    #[test]
    fn poisoning_wakes_a_producer_asleep_on_a_full_ring() {
        let (mut tx, mut rx) = RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).build().unwrap();
        tx.try_write(&[0; 4096]).unwrap();
        let hdr: *const Header = header_of(&tx);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        // An unbounded blocking write: only a wake-up (or the sleep bound) can end it.
        std::thread::spawn(move || {
            let r = std::io::Write::write(&mut tx, b"x").map_err(|e| e.kind());
            done_tx.send((r, tx.stats()))
        });
        // Let it fall asleep.
        let t0 = Instant::now();
        // SAFETY: the header lives as long as the consumer, which is alive here.
        while unsafe { &*hdr }.space_waiter.load(Ordering::Relaxed) == 0 && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // SAFETY: the header lives as long as the consumer, which is alive here.
        unsafe { &*hdr }.head.store(u64::MAX / 2, Ordering::Release);
        let mut one = [0; 1];
        assert_eq!(rx.try_read(&mut one).unwrap_err().kind(), ErrorKind::InvalidData); // finds the impossible head
                                                                                       // Generous: this bounds a hang, not a speed.
        let (result, stats) =
            done_rx.recv_timeout(Duration::from_secs(60)).expect("the sleeping producer never returned");
        assert_eq!(result, Err(ErrorKind::InvalidData));
        assert_eq!(stats.parks, 1, "{stats:?}");
        assert_eq!(stats.woken, 1, "the poisoning did not wake the sleeping producer: {stats:?}");
    }

    /// How each end parks is recorded in its slot (header version 2): privately expedited
    /// barriers for a thread ring, global ones between processes, or fences where the kernel
    /// offers no membarrier.
    #[test]
    fn each_role_records_how_it_parks() {
        use crate::header::{PARK_FENCE, PARK_GLOBAL, PARK_PRIVATE};
        let membarrier = crate::sys::membarrier(crate::sys::MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED).is_ok();
        let (tx, _rx) = channel(4096).unwrap();
        let want = if membarrier { PARK_PRIVATE } else { PARK_FENCE };
        assert_eq!(header_of(&tx).park_mode(Role::Producer), want);
        assert_eq!(header_of(&tx).park_mode(Role::Consumer), want);
        let ring = RingOptions::new().capacity(4096).shared().unwrap();
        let tx = ring.clone().into_producer().unwrap();
        let want = if membarrier { PARK_GLOBAL } else { PARK_FENCE };
        assert_eq!(header_of(&tx).park_mode(Role::Producer), want);
        assert_eq!(header_of(&tx).park_mode(Role::Consumer), 0, "not claimed yet");
    }

    /// A publish that wakes nobody (a bug, or a hostile peer) delays a sleeper between threads
    /// by at most the safety interval: every sleep is bounded. The counters call it what it is.
    #[test]
    fn a_lost_wakeup_between_threads_delays_but_never_hangs() {
        let (tx, mut rx) = RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).build().unwrap();
        let hdr: *const Header = header_of(&tx);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut b = [0u8; 4];
            let r = rx.read(&mut b).map_err(|e| e.kind());
            let _ = done_tx.send((r, b, rx.stats()));
        });
        let t0 = Instant::now();
        // SAFETY: the header lives as long as the ends; the reader holds the consumer.
        while unsafe { &*hdr }.data_waiter.load(Ordering::Relaxed) == 0 && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Publish "ping" the way a producer does, but without looking for a sleeper.
        // SAFETY: the producer's free space at offset 0, 4 bytes.
        unsafe { tx.write_ptr().copy_from_nonoverlapping(b"ping".as_ptr(), 4) };
        // SAFETY: as above.
        unsafe { &*hdr }.head.store(4, Ordering::Release);
        let published = Instant::now();
        let (r, b, stats) = done_rx.recv_timeout(Duration::from_secs(60)).expect("the sleeping reader hangs");
        let delay = published.elapsed();
        assert_eq!((r, &b), (Ok(4), b"ping"));
        // 10x the design bound: a liveness bound, not a speed.
        assert!(delay < 10 * crate::wait::SAFETY_INTERVAL, "woke after {delay:?}");
        assert_eq!(stats.lost_wakeups, 1, "{stats:?}");
        drop(tx);
    }

    /// The aliasing hazard of KERNEL.md: bytes written through view B and read through view A
    /// (and the reverse) in one thread, with optimisations on. Run in release mode by CI.
    #[test]
    fn single_thread_writes_across_the_seam_read_back_exactly() {
        for backend in Backend::CONCRETE.into_iter().filter(|b| b.is_available()) {
            let (mut tx, mut rx) = RingOptions::new().capacity(4096).backend(backend).build().unwrap();
            let mut rng = Rng::new(42);
            let mut out = vec![0u8; 4096];
            for round in 0..20_000u32 {
                // Park the cursors a few bytes before the seam, then write across it.
                let target = 4096 - 1 - rng.below(63);
                let skip = (target + 4096 - tx.cur.offset()) % 4096;
                if skip > 0 {
                    tx.write_grant(skip).unwrap().commit(skip).unwrap();
                    let g = rx.read_grant(skip).unwrap();
                    g.release(skip).unwrap();
                }
                let n = 2 + rng.below(120);
                let mut g = tx.write_grant(n).unwrap();
                for (i, b) in g[..n].iter_mut().enumerate() {
                    *b = (round as u8).wrapping_mul(31).wrapping_add(i as u8);
                }
                g.commit(n).unwrap();
                let got = rx.try_read(&mut out[..n]).unwrap();
                assert_eq!(got, n);
                for (i, b) in out[..n].iter().enumerate() {
                    assert_eq!(*b, (round as u8).wrapping_mul(31).wrapping_add(i as u8), "{backend} round {round}");
                }
            }
        }
    }
}
