//! The two ends of the ring and the options that build them.
//!
//! This module holds what both ends share: the options, the mapped ring, the `End` every end
//! is made of (with the one checked place through which an end touches the shared header),
//! the errors, and the two end types. Each side's behaviour is a child module (`producer`,
//! `consumer`), and so is framing (`framed`): they extend the ends directly, reading their
//! private fields, with no layer of accessors in between.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::marker::PhantomData;

use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::header::{self, Claim, Claimant, Header, Role};
use crate::mirror::{Backend, MirrorMap, MirrorOptions};
use crate::peer::ProcessWatch;
use crate::protocol::{self, ConsumerCursor, ProducerCursor, Stop};
use crate::stats::Counters;
use crate::sync::{self, Park};
use crate::sys;
use crate::wait::{self, NoPeer, PeerCheck, Waiter};

/// The capacity [`RingOptions`] uses when none is given: 1 MiB.
///
/// Chosen from measurements (`BENCHMARKS.md`, "Ring size and the default capacity"): with
/// 4 KiB writes between two threads a 64 KiB ring (a pipe's default) ran at a quarter to a third
/// of a 1 MiB ring on an Intel Xeon host and level on an AMD EPYC host; 2-4 MiB ran faster
/// still (up to 1.6x) when the two cores were near or on the Intel host, but cost two to four
/// times the memory per ring (RSS counts both views: `2N`). For bulk streaming set a bigger
/// capacity: `cargo run --release --all-features --example compare` prints the size that is fastest on your
/// machine next to this default.
pub const DEFAULT_CAPACITY: usize = 1024 * 1024;

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
    pub(crate) spin: Duration,
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

    /// Back the ring's data with 2 MiB huge pages (see [`MirrorOptions::huge_pages`]): the
    /// capacity is rounded up to a power of two of at least 2 MiB, the pages are taken from the
    /// kernel's reserved pool at creation, and without enough free huge pages creation fails
    /// with `OutOfMemory` and a message naming huge pages. With [`Backend::Auto`] only; works
    /// between threads and across `fork` (no descriptor is kept, so not through
    /// [`SharedRing::from_fd`](crate::SharedRing::from_fd)).
    ///
    /// # Examples
    ///
    /// ```
    /// use mirror_ring::RingOptions;
    ///
    /// match RingOptions::new().capacity(4 << 20).huge_pages(true).build() {
    ///     Ok((tx, _rx)) => assert_eq!(tx.capacity(), 4 << 20),
    ///     Err(e) => assert!(e.to_string().contains("huge page"), "{e}"),
    /// }
    /// ```
    pub fn huge_pages(&mut self, yes: bool) -> &mut Self {
        self.map.huge_pages(yes);
        self
    }

    /// Ask for the ring's data in 2 MiB transparent huge pages of shared memory (see
    /// [`MirrorOptions::transparent_huge_pages`]): no reserved pool, but the kernel's knob
    /// must allow them (`advise` or more in `/sys/kernel/mm/transparent_hugepage/shmem_enabled`,
    /// or in `hugepages-2048kB/shmem_enabled` beside it, which overrides it on Linux 6.11+
    /// unless it says `inherit`); where they say `never`, the usual default, creation fails
    /// with `Unsupported` and a message naming the file. The capacity is rounded up to a power of two of at least
    /// 2 MiB. Works between threads and across `fork`, with `Auto`, `MirrorFlag` or
    /// `Duplicate` (not through [`SharedRing::from_fd`](crate::SharedRing::from_fd)).
    ///
    /// # Examples
    ///
    /// ```
    /// use mirror_ring::RingOptions;
    ///
    /// match RingOptions::new().capacity(4 << 20).transparent_huge_pages(true).build() {
    ///     Ok((tx, _rx)) => assert_eq!(tx.capacity(), 4 << 20),
    ///     Err(e) => assert!(e.to_string().contains("shmem_enabled"), "{e}"),
    /// }
    /// ```
    pub fn transparent_huge_pages(&mut self, yes: bool) -> &mut Self {
        self.map.transparent_huge_pages(yes);
        self
    }

    /// Keep the ring out of forked children (`MADV_DONTFORK` over the whole ring).
    pub fn dont_fork(&mut self, yes: bool) -> &mut Self {
        self.map.dont_fork(yes);
        self
    }

    /// Lock the ring in memory at creation (see [`MirrorOptions::lock_memory`]): every page
    /// of both views and the control page is faulted in and stays resident, so no call on
    /// the ring waits on a page fault. `RLIMIT_MEMLOCK` counts `2 * capacity` plus one page
    /// (one page with [`huge_pages`](Self::huge_pages), whose data the kernel does not lock;
    /// unless the process has `CAP_IPC_LOCK`); over it, creation fails with `OutOfMemory` and
    /// a message naming the limit (`PermissionDenied` when the limit is zero). The lock is this
    /// process's: another process that maps the same ring locks its own mapping with
    /// [`SharedRing::lock_memory`](crate::SharedRing::lock_memory).
    ///
    /// # Examples
    ///
    /// ```
    /// use mirror_ring::RingOptions;
    ///
    /// match RingOptions::new().capacity(64 * 1024).lock_memory(true).build() {
    ///     Ok((tx, _rx)) => assert_eq!(tx.capacity(), 64 * 1024),
    ///     Err(e) => assert!(e.to_string().contains("RLIMIT_MEMLOCK"), "{e}"),
    /// }
    /// ```
    pub fn lock_memory(&mut self, yes: bool) -> &mut Self {
        self.map.lock_memory(yes);
        self
    }

    /// The longest a blocked call spins before it sleeps on a futex. Zero sleeps at once (and
    /// then neither a framed receive nor a write to a full ring slips first: see
    /// `docs::framing` and the crate docs, "Between threads"). Default 50 µs: about one
    /// futex park-and-wake round trip on the machines it was measured on, which bounds the cost
    /// of either choice to twice the better one.
    ///
    /// The spin never yields the core (on a loaded machine a yield gives it away for a whole
    /// time slice). Each end adapts the budget to what its waits find: after every third wait
    /// in a row that spun in vain and slept, it halves the time it spins, down to a
    /// microsecond; a single wait that its spin served restores the whole budget. So an end
    /// whose peer is idle for longer than the budget, or runs on the same core, soon stops
    /// burning it, and an end whose peer answers within the budget keeps spinning. A budget
    /// shorter than a wake-up (tens of µs) can then settle on sleeping every time when both
    /// ends wait for each other (BENCHMARKS.md, "Spin budget").
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
        let park = sync::register_process(false)?;
        // Both roles are taken by this process at once; nobody else can reach a thread ring
        // (unless it is forked, and then the ends belong to the parent). Nobody watches this
        // pid, so the start time and namespace are not needed.
        let me = Claimant { pid: sys::getpid(), start_time: 0, pid_ns: 0, park };
        let (Some(p), Some(c)) = (hdr.claim(Role::Producer, me), hdr.claim(Role::Consumer, me)) else {
            unreachable!("a fresh ring has free roles")
        };
        let producer = Producer::attach(ring.clone(), self.spin, park, None, p)?;
        let consumer = Consumer::attach(ring, self.spin, park, None, c)?;
        Ok((producer, consumer))
    }
}

/// Creates a ring for threads with [`RingOptions::new`]'s defaults but the given capacity.
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
/// `SharedRing`; unmapped when the last one drops.
pub(crate) struct RingMem {
    map: MirrorMap,
}

impl RingMem {
    pub(crate) fn create(opts: &RingOptions) -> io::Result<Arc<RingMem>> {
        let map = opts.map.map(opts.capacity)?;
        let mem = RingMem { map };
        mem.header().init(mem.capacity() as u64, sys::page_size() as u64, backend_code(mem.map.backend()), opts.start);
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

/// The code a ring header stores for `backend` (the codes are the header's).
fn backend_code(backend: Backend) -> u32 {
    match backend {
        Backend::MirrorFlag => header::BACKEND_MIRROR_FLAG,
        Backend::Duplicate => header::BACKEND_DUPLICATE,
        // A map is never built with `Auto`; `Memfd` is the code's last value.
        Backend::Memfd | Backend::Auto => header::BACKEND_MEMFD,
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
    role: Role,
    /// How this end parks (`header::PARK_*`), as recorded in its role slot (downgraded if its
    /// barrier fails).
    park: Cell<Park>,
    /// The last wait ended on its deadline with the waiter flag left raised after a heavy
    /// barrier (`wait::Waiter::kept`).
    kept: Cell<bool>,
    /// When the last wait paid its last heavy barrier, if it ended on its deadline
    /// (`wait::Waiter::timed_out_barrier`).
    timed_out_barrier: Cell<Option<Instant>>,
    /// How long this end spins: the ring's spin budget and what its waits made of it
    /// (`wait::Spin`).
    spinning: Cell<wait::Spin>,
    /// Watches the peer process (rings between processes only).
    peer: Option<RefCell<ProcessWatch>>,
    /// The fork generation this end was claimed in: a forked child must not use it. [`SHUT`]
    /// once the end closed its role and lives on.
    generation: usize,
    /// The claim word this end claimed (or took over) its role with: while the role's slot
    /// still holds it, the role is this end's.
    token: Claim,
}

impl End {
    fn new(
        ring: Arc<RingMem>,
        role: Role,
        spin: Duration,
        park: Park,
        peer: Option<ProcessWatch>,
        token: Claim,
    ) -> End {
        let hdr = NonNull::from(ring.header());
        // SAFETY: as_ptr() is the non-null start of view A.
        let data = unsafe { NonNull::new_unchecked(ring.map().as_ptr()) };
        End {
            ring,
            hdr,
            data,
            role,
            park: Cell::new(park),
            kept: Cell::new(false),
            timed_out_barrier: Cell::new(None),
            spinning: Cell::new(wait::Spin::new(spin)),
            peer: peer.map(RefCell::new),
            generation: sync::fork_generation(),
            token,
        }
    }

    /// The shared header, if the role is still this end's, else `None`: the one checked place
    /// through which every use of the shared memory passes. A forked child's copy of an end
    /// must not touch it: the parent owns the role, and with `dont_fork` the child does not
    /// even have the page (one relaxed load of a process-wide counter). An end whose role was
    /// taken over by another process (its death was forged, see `docs::trust_model`) must not
    /// touch it either: the role's slot names another holding than this end's claim word
    /// (`Header::owns`: one relaxed load of the read-mostly line 0, which the ends read on
    /// their paths anyway).
    #[inline(always)]
    fn header(&self) -> Option<&Header> {
        self.header_as(self.role)
    }

    /// [`header`](Self::header), the same check, for a caller that knows this end's role at
    /// compile time (the framed ends' hot paths): the role slot's offset is then a constant.
    #[inline(always)]
    fn header_as(&self, role: Role) -> Option<&Header> {
        debug_assert_eq!(role, self.role, "header_as with another end's role");
        if self.generation != sync::fork_generation() {
            return None;
        }
        // SAFETY: points into `ring`'s control page, which `self.ring` keeps mapped in the
        // process that claimed the end (this one: the generation matches).
        let hdr = unsafe { self.hdr.as_ref() };
        hdr.owns(role, self.token).then_some(hdr)
    }

    /// The shared header, for the rest of a call that has already passed
    /// [`header`](Self::header): a `fork()` by another thread cannot carry a call that is
    /// running into the child (only the forking thread exists there), so one check per call
    /// is enough. Every call into an end makes that check first; a grant or frame that
    /// outlives the call checks again.
    #[inline(always)]
    fn header_checked(&self) -> &Header {
        // Only the fork generation can be asserted here: the claim word that `header` also
        // compares lives in shared memory, and a hostile peer may change it during the call
        // (the next call sees it).
        debug_assert!(self.generation == sync::fork_generation(), "header_checked in a forked copy");
        // SAFETY: as in `header`; the caller checked the generation earlier in this call.
        unsafe { self.hdr.as_ref() }
    }

    /// Whether this producer shut the ring down and lives on (an async producer after
    /// `poll_shutdown`, or the byte producer taken out of one).
    fn is_shut(&self) -> bool {
        self.generation == SHUT
    }

    /// Whether this is a forked child's copy of the end (the parent owns the role): checked
    /// again where user code can run in the middle of a call (it may `fork`), and by a write
    /// grant held across a `fork`, which must not lend the parent's free space to the child.
    /// (A shut producer, whose generation is `SHUT`, counts too; it has no grant to ask.)
    #[inline(always)]
    fn forked(&self) -> bool {
        self.generation != sync::fork_generation()
    }

    /// How many of a write grant's `len` bytes it lends: all, or none in a forked child's copy
    /// of a grant held across the `fork` (the free space is the parent's: without `dont_fork` a
    /// child that wrote it would change what the parent commits; with it the pages are not
    /// there).
    #[inline(always)]
    fn lent(&self, len: usize) -> usize {
        if self.forked() {
            0
        } else {
            len
        }
    }

    /// [`header`](Self::header), or the error a call that returns a `Result` reports.
    #[inline(always)]
    fn header_or_err(&self) -> io::Result<&Header> {
        self.header().ok_or_else(|| self.lost())
    }

    /// [`header_or_err`](Self::header_or_err) for a caller that knows this end's role at
    /// compile time, as [`header_as`](Self::header_as).
    #[inline(always)]
    fn header_or_err_as(&self, role: Role) -> io::Result<&Header> {
        self.header_as(role).ok_or_else(|| self.lost())
    }

    /// Why [`header`](Self::header) said no.
    #[cold]
    fn lost(&self) -> io::Error {
        if self.is_shut() {
            shut_error()
        } else if self.generation != sync::fork_generation() {
            forked_error()
        } else {
            taken_error(self.role)
        }
    }

    /// Checks that this end can become an async one. A waiter flag its last blocking wait left
    /// raised (`wait::Waiter::kept`) stays kept: the first async park takes it over (counting
    /// a wake-up if the peer cleared it), and a blocking wait after `into_inner` can still use
    /// it if no async park did.
    #[cfg(feature = "tokio")]
    fn enter_async(&self) -> io::Result<()> {
        self.header_or_err().map(|_| ())
    }

    /// Closes this end's role (if it is still this end's) and wakes the peer.
    fn close(&self, hdr: &Header) {
        let _ = protocol::close(hdr, self.role, self.token);
    }

    /// Closes this end's role for good while the end lives on (the async producer's
    /// `shutdown`): from here the end passes no check, so every call fails with `BrokenPipe`
    /// (nothing reaches a consumer that has seen the end of the stream), and the drop does
    /// nothing more.
    #[cfg(feature = "tokio")]
    fn shut(&mut self) {
        if let Some(hdr) = self.header() {
            self.close(hdr);
        }
        self.generation = SHUT;
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
        let mut kept = self.kept.get();
        let mut timed_out_barrier = self.timed_out_barrier.get();
        let mut spin = self.spinning.get();
        let waiter = Waiter {
            hdr,
            role: self.role,
            park: &mut park,
            spin: &mut spin,
            peer,
            counters,
            kept: &mut kept,
            timed_out_barrier: &mut timed_out_barrier,
        };
        let r = wait::wait_for(waiter, deadline, || poll(hdr));
        self.spinning.set(spin);
        self.park.set(park);
        self.kept.set(kept);
        self.timed_out_barrier.set(timed_out_barrier);
        r
    }

    /// The spin budget this end was given (the most it spins; slips are bounded by it too).
    fn spin_budget(&self) -> Duration {
        self.spinning.get().full()
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

/// [`End::generation`] of an end that closed its role and lives on ([`End::shut`]): no fork
/// generation reaches it (one per `fork()` from 0).
const SHUT: usize = usize::MAX;

#[cold]
pub(crate) fn shut_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "this producer shut the ring down; it writes nothing more")
}

#[cold]
fn taken_error(role: Role) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        format!(
            "another process took the {} role of this ring over (this end's death was forged or \
             its claim overwritten); this end's calls fail while the role is not its own",
            role.name()
        ),
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

#[cold]
fn died_short(left: usize, min: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "the producer's process died without closing the ring, with {left} committed bytes \
             left, fewer than the {min} asked for"
        ),
    )
}

fn too_big(min: usize, cap: usize) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("asked for {min} contiguous bytes; the ring holds {cap}"))
}

/// Whether and how long a call may block.
#[derive(Clone, Copy, Debug)]
enum Wait {
    /// Never block: `WouldBlock` instead.
    No,
    /// Block until the deadline (`None`: forever).
    Until(Option<Instant>),
}

impl Wait {
    /// Block for at most `timeout` (one too large to represent is no deadline at all).
    fn within(timeout: Duration) -> Wait {
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

#[cfg(any(feature = "tokio", mirror_ring_loom))]
pub(crate) mod asynch;
mod consumer;
mod copy;
use copy::{copy_in, copy_out};
pub(crate) mod framed;
mod producer;
#[cfg(all(test, not(mirror_ring_loom)))]
mod tests;
mod transfer;

#[cfg(feature = "tokio")]
pub use asynch::{AsyncConsumer, AsyncFramedConsumer, AsyncFramedProducer, AsyncProducer};
pub use consumer::ReadGrant;
pub use framed::{Frame, FrameGrant, FramedConsumer, FramedProducer};
pub use producer::WriteGrant;
