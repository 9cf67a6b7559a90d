//! The competitors' two halves: mirror-ring (spinning and blocking), the split-copy baseline,
//! the minimal mirrored ring (with an optional non-temporal copy), rtrb, ringbuf, and file
//! descriptors (pipe, socketpair).
#![allow(dead_code, unreachable_pub)]

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use mirror_ring::{Consumer, MirrorMap, Producer, SharedRing};

use super::*;

// ---------------------------------------------------------------------------------------------
// Streaming: the two halves every competitor implements
// ---------------------------------------------------------------------------------------------

/// The sending half of a byte stream: `send_all` returns once all of `buf` is in.
pub trait Tx {
    fn send_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// How many times this side has had to wait so far (a mirror-ring end's `stats().spins`:
    /// the producer found the ring full), where it can tell; the regime indicator.
    fn waits(&self) -> Option<u64> {
        None
    }
}

/// The receiving half: `recv` copies out at least one byte and at most `buf.len()`.
pub trait Rx {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Told before each phase of a run (warm-up, timed part) how many bytes it will receive,
    /// for receivers that wait for a watermark and must not wait past the end.
    fn expect(&mut self, _bytes: u64) {}
    /// As [`Tx::waits`]: the consumer found the ring empty.
    fn waits(&self) -> Option<u64> {
        None
    }
    /// How far behind the producer this reader runs, sampled (mirror-ring's blocking reader).
    fn lag(&self) -> Option<Lag> {
        None
    }
}

/// A pair created before `fork()`: the parent keeps the sender, the child the receiver.
pub trait ForkPair {
    type Tx: Tx;
    type Rx: Rx;
    fn into_tx(self) -> io::Result<Self::Tx>;
    fn into_rx(self) -> io::Result<Self::Rx>;
}

#[inline(always)]
pub fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

// --- mirror-ring, spinning on try_write / try_read -------------------------------------------

/// mirror-ring's producer, spinning on `try_write`.
pub struct MirrorTx(pub Producer);
/// mirror-ring's consumer, spinning on `try_read`.
pub struct MirrorRx(pub Consumer);

impl Tx for MirrorTx {
    #[inline]
    fn send_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.0.try_write(buf) {
                Ok(n) => buf = &buf[n..],
                Err(e) if would_block(&e) => std::hint::spin_loop(),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Rx for MirrorRx {
    #[inline]
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.try_read(buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => return Ok(n),
                Err(e) if would_block(&e) => std::hint::spin_loop(),
                Err(e) => return Err(e),
            }
        }
    }
}

/// mirror-ring through `std::io` (blocking: spin for the budget, then sleep on the futex).
pub struct MirrorBlockingTx(pub Producer);
/// mirror-ring through `std::io::Read` (blocking), with a sample of how far behind the producer
/// it reads (`Consumer::len`, every 256th read).
pub struct MirrorBlockingRx(pub Consumer, pub Lag);

impl MirrorBlockingRx {
    pub fn new(c: Consumer) -> MirrorBlockingRx {
        MirrorBlockingRx(c, Lag::default())
    }
}

/// Samples of the bytes readable when a reader takes more (how far behind the producer it
/// runs).
#[derive(Clone, Copy, Debug, Default)]
pub struct Lag {
    pub calls: u64,
    pub sum: u64,
    pub n: u64,
}

impl Lag {
    #[inline]
    fn tick(&mut self, c: &Consumer) {
        self.calls += 1;
        if self.calls % 256 == 0 {
            self.sum += c.len() as u64;
            self.n += 1;
        }
    }
}

impl Tx for MirrorBlockingTx {
    #[inline]
    fn send_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn waits(&self) -> Option<u64> {
        Some(self.0.stats().spins)
    }
}

impl Rx for MirrorBlockingRx {
    #[inline]
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.1.tick(&self.0);
        match self.0.read(buf)? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            n => Ok(n),
        }
    }

    fn waits(&self) -> Option<u64> {
        Some(self.0.stats().spins)
    }

    fn lag(&self) -> Option<Lag> {
        Some(self.1)
    }
}

/// mirror-ring's reader with a watermark: it waits (`read_grant_blocking`) until at least `w`
/// bytes are readable (fewer at the end of a phase), then copies them out one `recv` at a time
/// and releases them in one store; the producer writes through `io::Write`. Hand-overs then
/// move at least `w` bytes at a time.
pub struct MirrorWatermarkRx {
    pub rx: Consumer,
    pub w: usize,
    /// Bytes lent by the last grant and not yet copied out.
    have: usize,
    /// Bytes copied out of it so far (released together when it is used up).
    taken: usize,
    /// Bytes still to come in this phase.
    left: u64,
}

impl MirrorWatermarkRx {
    pub fn new(rx: Consumer, w: usize) -> MirrorWatermarkRx {
        MirrorWatermarkRx { rx, w, have: 0, taken: 0, left: u64::MAX }
    }
}

impl Rx for MirrorWatermarkRx {
    #[inline]
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.have == 0 {
            let min = (self.w as u64).min(self.left).max(1) as usize;
            let g = self.rx.read_grant_blocking(min)?;
            // Take what the grant shows, at most the rest of the phase.
            self.have = (g.len() as u64).min(self.left) as usize;
            self.taken = 0;
        }
        let n = buf.len().min(self.have);
        let g = self.rx.read_grant(self.taken + n)?;
        buf[..n].copy_from_slice(&g[self.taken..self.taken + n]);
        self.taken += n;
        self.have -= n;
        self.left -= n as u64;
        if self.have == 0 {
            g.release(self.taken)?;
        }
        Ok(n)
    }

    fn expect(&mut self, bytes: u64) {
        self.left = bytes;
    }

    fn waits(&self) -> Option<u64> {
        Some(self.rx.stats().spins)
    }
}

/// A mirror-ring shared ring to fork with.
pub struct MirrorFork {
    pub ring: SharedRing,
    pub blocking: bool,
}

/// Either flavour of mirror-ring sender, for the forked driver.
pub enum MirrorAnyTx {
    Spin(MirrorTx),
    Blocking(MirrorBlockingTx),
}
/// Either flavour of mirror-ring receiver, for the forked driver.
pub enum MirrorAnyRx {
    Spin(MirrorRx),
    Blocking(MirrorBlockingRx),
}

impl Tx for MirrorAnyTx {
    #[inline]
    fn send_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            MirrorAnyTx::Spin(t) => t.send_all(buf),
            MirrorAnyTx::Blocking(t) => t.send_all(buf),
        }
    }

    fn waits(&self) -> Option<u64> {
        match self {
            MirrorAnyTx::Spin(_) => None,
            MirrorAnyTx::Blocking(t) => t.waits(),
        }
    }
}

impl Rx for MirrorAnyRx {
    #[inline]
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MirrorAnyRx::Spin(r) => r.recv(buf),
            MirrorAnyRx::Blocking(r) => r.recv(buf),
        }
    }

    fn waits(&self) -> Option<u64> {
        match self {
            MirrorAnyRx::Spin(_) => None,
            MirrorAnyRx::Blocking(r) => r.waits(),
        }
    }

    fn lag(&self) -> Option<Lag> {
        match self {
            MirrorAnyRx::Spin(_) => None,
            MirrorAnyRx::Blocking(r) => r.lag(),
        }
    }
}

impl ForkPair for MirrorFork {
    type Tx = MirrorAnyTx;
    type Rx = MirrorAnyRx;
    fn into_tx(self) -> io::Result<MirrorAnyTx> {
        let p = self.ring.into_producer()?;
        Ok(if self.blocking { MirrorAnyTx::Blocking(MirrorBlockingTx(p)) } else { MirrorAnyTx::Spin(MirrorTx(p)) })
    }
    fn into_rx(self) -> io::Result<MirrorAnyRx> {
        let c = self.ring.into_consumer()?;
        Ok(if self.blocking { MirrorAnyRx::Blocking(MirrorBlockingRx::new(c)) } else { MirrorAnyRx::Spin(MirrorRx(c)) })
    }
}

// --- hand-written rings: the split-copy baseline and the minimal mirrored floor -------------

/// The cursor lines of the hand-written rings, laid out like mirror-ring's header: each
/// cursor and each waiter word in its own cache line, plus a read-mostly line with the close
/// flags.
#[repr(C)]
struct Cursors {
    closed: CachePadded<AtomicU32>,
    head: CachePadded<AtomicU64>,
    tail: CachePadded<AtomicU64>,
    data_waiter: CachePadded<AtomicU32>,
    space_waiter: CachePadded<AtomicU32>,
}

/// Memory for a hand-written ring: cursors in one shared page, data in a `MirrorMap` (shared
/// memory of the same kind as mirror-ring's; the split-copy ring uses only its first view).
/// The pointers are taken once, so the hot loops make no calls to find their memory.
pub struct HandRing {
    cursors: *const Cursors,
    base: *mut u8,
    cap: u64,
    _ctl: Shared,
    _data: MirrorMap,
}

// SAFETY: the raw pointers point into the two mappings this struct owns (alive as long as it
// is); what is behind them is atomics (cursors) or bytes whose hand-over the ring protocol
// orders, exactly as for mirror-ring's own ends.
unsafe impl Send for HandRing {}
// SAFETY: as above; shared access goes through atomics or the protocol.
unsafe impl Sync for HandRing {}

impl HandRing {
    pub fn new(cap: usize) -> io::Result<Arc<HandRing>> {
        let ctl = Shared::new(4096)?;
        let data = MirrorMap::new(cap)?;
        // SAFETY: Cursors is atomics only, at page-aligned offset 0, and fits in 4096 bytes.
        let cursors: *const Cursors = unsafe { ctl.at::<Cursors>(0) };
        Ok(Arc::new(HandRing { cursors, base: data.as_ptr(), cap: data.len() as u64, _ctl: ctl, _data: data }))
    }

    #[inline(always)]
    fn cursors(&self) -> &Cursors {
        // SAFETY: points into `_ctl`, which lives as long as self.
        unsafe { &*self.cursors }
    }

    #[inline(always)]
    fn cap(&self) -> u64 {
        self.cap
    }
}

#[cold]
fn corrupt() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "impossible cursor")
}

/// The split-copy baseline's producer: mirror-ring's protocol (private head, cached tail
/// refreshed with Acquire only when short, the same validation on refresh, the consumer's
/// close flag checked per write, the waiter word read after each publish) over one
/// non-mirrored buffer, so every copy that crosses the end is split in two.
pub struct SplitTx {
    ring: Arc<HandRing>,
    head: u64,
    cached_tail: u64,
}

/// The split-copy baseline's consumer.
pub struct SplitRx {
    ring: Arc<HandRing>,
    tail: u64,
    cached_head: u64,
}

impl SplitTx {
    pub fn new(ring: Arc<HandRing>) -> SplitTx {
        SplitTx { ring, head: 0, cached_tail: 0 }
    }

    #[inline]
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let ring = &*self.ring;
        let c = ring.cursors();
        let cap = ring.cap();
        if c.closed.load(Ordering::Acquire) != 0 {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let mut free = cap - self.head.wrapping_sub(self.cached_tail);
        if free < buf.len() as u64 {
            // Acquire: pairs with the consumer's Release store of tail.
            let t = c.tail.load(Ordering::Acquire);
            if self.head.wrapping_sub(t) > cap
                || t.wrapping_sub(self.cached_tail) > self.head.wrapping_sub(self.cached_tail)
            {
                return Err(corrupt());
            }
            self.cached_tail = t;
            free = cap - self.head.wrapping_sub(t);
            if free == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
        let n = (buf.len() as u64).min(free) as usize;
        let off = (self.head & (cap - 1)) as usize;
        let first = n.min(cap as usize - off);
        let base = ring.base;
        // SAFETY: [off, off + first) and [0, n - first) lie in the first view (off < cap,
        // first <= cap - off, n <= free <= cap) and are free space the consumer does not read.
        unsafe {
            std::ptr::copy_nonoverlapping(buf.as_ptr(), base.add(off), first);
            std::ptr::copy_nonoverlapping(buf.as_ptr().add(first), base, n - first);
        }
        self.head = self.head.wrapping_add(n as u64);
        // Release: publishes the bytes; pairs with the consumer's Acquire load of head.
        c.head.store(self.head, Ordering::Release);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        if c.data_waiter.load(Ordering::Relaxed) != 0 {
            // Nobody sleeps in this ring; the load is the per-publish cost being matched.
            std::hint::black_box(());
        }
        Ok(n)
    }
}

impl SplitRx {
    pub fn new(ring: Arc<HandRing>) -> SplitRx {
        SplitRx { ring, tail: 0, cached_head: 0 }
    }

    #[inline]
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let ring = &*self.ring;
        let c = ring.cursors();
        let cap = ring.cap();
        let mut avail = self.cached_head.wrapping_sub(self.tail);
        if avail < buf.len() as u64 {
            // Acquire: pairs with the producer's Release store of head.
            let h = c.head.load(Ordering::Acquire);
            let a = h.wrapping_sub(self.tail);
            if a > cap || a < avail {
                return Err(corrupt());
            }
            self.cached_head = h;
            avail = a;
            if avail == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
        let n = (buf.len() as u64).min(avail) as usize;
        let off = (self.tail & (cap - 1)) as usize;
        let first = n.min(cap as usize - off);
        let base = ring.base;
        // SAFETY: as in SplitTx::try_write, for published bytes the producer does not touch.
        unsafe {
            std::ptr::copy_nonoverlapping(base.add(off), buf.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(base, buf.as_mut_ptr().add(first), n - first);
        }
        self.tail = self.tail.wrapping_add(n as u64);
        // Release: our reads are done before the producer reuses the bytes.
        c.tail.store(self.tail, Ordering::Release);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        if c.space_waiter.load(Ordering::Relaxed) != 0 {
            std::hint::black_box(());
        }
        Ok(n)
    }
}

impl Tx for SplitTx {
    #[inline]
    fn send_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.try_write(buf) {
                Ok(n) => buf = &buf[n..],
                Err(e) if would_block(&e) => std::hint::spin_loop(),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Rx for SplitRx {
    #[inline]
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.try_read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if would_block(&e) => std::hint::spin_loop(),
                Err(e) => return Err(e),
            }
        }
    }
}

/// The floor: a minimal mirrored ring over the public `MirrorMap`. Raw pointers, two cursors,
/// a cached peer cursor, spinning; no validation, no close flag, no waiter word, no blocking.
/// With `nt`, the producer copies with non-temporal (streaming) stores and fences before
/// publishing.
pub struct MinimalTx {
    ring: Arc<HandRing>,
    head: u64,
    cached_tail: u64,
    nt: bool,
}

/// The floor's consumer.
pub struct MinimalRx {
    ring: Arc<HandRing>,
    tail: u64,
    cached_head: u64,
}

impl MinimalTx {
    pub fn new(ring: Arc<HandRing>, nt: bool) -> MinimalTx {
        MinimalTx { ring, head: 0, cached_tail: 0, nt }
    }
}

impl MinimalRx {
    pub fn new(ring: Arc<HandRing>) -> MinimalRx {
        MinimalRx { ring, tail: 0, cached_head: 0 }
    }
}

impl Tx for MinimalTx {
    #[inline]
    fn send_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        let ring = &*self.ring;
        let c = ring.cursors();
        let cap = ring.cap();
        while !buf.is_empty() {
            let mut free = cap - self.head.wrapping_sub(self.cached_tail);
            if free < buf.len() as u64 {
                // Acquire: pairs with the consumer's Release store of tail.
                self.cached_tail = c.tail.load(Ordering::Acquire);
                free = cap - self.head.wrapping_sub(self.cached_tail);
                if free == 0 {
                    std::hint::spin_loop();
                    continue;
                }
            }
            let n = (buf.len() as u64).min(free) as usize;
            let off = (self.head & (cap - 1)) as usize;
            // SAFETY: off < cap and n <= cap: inside the two views; free space.
            let dst = unsafe { ring.base.add(off) };
            if self.nt {
                // SAFETY: as above; buf is caller memory, disjoint from the ring.
                unsafe { copy_nt(buf.as_ptr(), dst, n) };
            } else {
                // SAFETY: as above.
                unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), dst, n) };
            }
            self.head = self.head.wrapping_add(n as u64);
            // Release: publishes the bytes; pairs with the consumer's Acquire load of head.
            c.head.store(self.head, Ordering::Release);
            buf = &buf[n..];
        }
        Ok(())
    }
}

impl Rx for MinimalRx {
    #[inline]
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let ring = &*self.ring;
        let c = ring.cursors();
        let cap = ring.cap();
        let mut avail = self.cached_head.wrapping_sub(self.tail);
        if avail < buf.len() as u64 {
            loop {
                // Acquire: pairs with the producer's Release store of head.
                self.cached_head = c.head.load(Ordering::Acquire);
                avail = self.cached_head.wrapping_sub(self.tail);
                if avail != 0 {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        let n = (buf.len() as u64).min(avail) as usize;
        let off = (self.tail & (cap - 1)) as usize;
        // SAFETY: off < cap, n <= cap: inside the two views; published bytes.
        unsafe { std::ptr::copy_nonoverlapping(ring.base.add(off), buf.as_mut_ptr(), n) };
        self.tail = self.tail.wrapping_add(n as u64);
        // Release: our reads are done before the producer reuses the bytes.
        c.tail.store(self.tail, Ordering::Release);
        Ok(n)
    }
}

/// Copies `n` bytes with non-temporal stores (16-byte `movntdq`) for the aligned middle and
/// ordinary copies for the ragged ends, then `sfence`, so the streaming stores are ordered
/// before the Release store that publishes them. Short copies use ordinary stores.
///
/// # Safety
///
/// As `copy_nonoverlapping(src, dst, n)`.
#[inline]
pub unsafe fn copy_nt(src: *const u8, dst: *mut u8, n: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
        if n >= 256 {
            let head = dst.align_offset(16).min(n);
            // SAFETY: per the contract, for the first `head` bytes.
            unsafe { std::ptr::copy_nonoverlapping(src, dst, head) };
            let mut i = head;
            while i + 64 <= n {
                // SAFETY: i + 64 <= n: inside both buffers; dst + i is 16-byte aligned.
                unsafe {
                    let s = src.add(i).cast::<__m128i>();
                    let d = dst.add(i).cast::<__m128i>();
                    let a = _mm_loadu_si128(s);
                    let b = _mm_loadu_si128(s.add(1));
                    let c = _mm_loadu_si128(s.add(2));
                    let e = _mm_loadu_si128(s.add(3));
                    _mm_stream_si128(d, a);
                    _mm_stream_si128(d.add(1), b);
                    _mm_stream_si128(d.add(2), c);
                    _mm_stream_si128(d.add(3), e);
                }
                i += 64;
            }
            // SAFETY: the rest of both buffers; sfence orders the streaming stores before the
            // caller's publishing store.
            unsafe {
                std::ptr::copy_nonoverlapping(src.add(i), dst.add(i), n - i);
                _mm_sfence();
            }
            return;
        }
    }
    // SAFETY: per the contract.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, n) };
}

/// Hand-written rings across fork: either kind, sender in the parent, receiver in the child.
pub struct HandFork {
    pub ring: Arc<HandRing>,
    pub kind: HandKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandKind {
    Split,
    Minimal,
    MinimalNt,
}

pub enum HandTx {
    Split(SplitTx),
    Minimal(MinimalTx),
}
pub enum HandRx {
    Split(SplitRx),
    Minimal(MinimalRx),
}

impl Tx for HandTx {
    #[inline]
    fn send_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            HandTx::Split(t) => t.send_all(buf),
            HandTx::Minimal(t) => t.send_all(buf),
        }
    }
}

impl Rx for HandRx {
    #[inline]
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            HandRx::Split(r) => r.recv(buf),
            HandRx::Minimal(r) => r.recv(buf),
        }
    }
}

impl ForkPair for HandFork {
    type Tx = HandTx;
    type Rx = HandRx;
    fn into_tx(self) -> io::Result<HandTx> {
        Ok(match self.kind {
            HandKind::Split => HandTx::Split(SplitTx::new(self.ring)),
            HandKind::Minimal => HandTx::Minimal(MinimalTx::new(self.ring, false)),
            HandKind::MinimalNt => HandTx::Minimal(MinimalTx::new(self.ring, true)),
        })
    }
    fn into_rx(self) -> io::Result<HandRx> {
        Ok(match self.kind {
            HandKind::Split => HandRx::Split(SplitRx::new(self.ring)),
            HandKind::Minimal | HandKind::MinimalNt => HandRx::Minimal(MinimalRx::new(self.ring)),
        })
    }
}

// --- other ring crates (threads only) --------------------------------------------------------

/// rtrb's producer through its chunk API (`push_partial_slice`, which is what its
/// `io::Write` uses), spinning when full.
pub struct RtrbTx(pub rtrb::Producer<u8>);
/// rtrb's consumer (`pop_partial_slice`), spinning when empty.
pub struct RtrbRx(pub rtrb::Consumer<u8>);

impl Tx for RtrbTx {
    #[inline]
    fn send_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let (done, rest) = self.0.push_partial_slice(buf);
            if done.is_empty() {
                std::hint::spin_loop();
            }
            buf = rest;
        }
        Ok(())
    }
}

impl Rx for RtrbRx {
    #[inline]
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.0.pop_partial_slice(buf).0.len();
            if n > 0 {
                return Ok(n);
            }
            std::hint::spin_loop();
        }
    }
}

/// ringbuf 0.4's producer as `HeapRb::split()` hands it out (`HeapProd` = `CachingProd`),
/// through `push_slice`, spinning when full. (Its caching covers `try_push`/`try_pop` only: the
/// slice calls ask for the vacant room through `read_index()`, which `CachingProd` answers by
/// loading the consumer's index every time, and publish after every call.)
pub struct RingbufTx(pub ringbuf::HeapProd<u8>);
/// ringbuf 0.4's consumer as `split()` hands it out (`HeapCons` = `CachingCons`), through
/// `pop_slice` (loads the producer's index on every call), spinning when empty.
pub struct RingbufRx(pub ringbuf::HeapCons<u8>);

impl Tx for RingbufTx {
    #[inline]
    fn send_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        use ringbuf::traits::Producer as _;
        while !buf.is_empty() {
            let n = self.0.push_slice(buf);
            if n == 0 {
                std::hint::spin_loop();
            }
            buf = &buf[n..];
        }
        Ok(())
    }
}

impl Rx for RingbufRx {
    #[inline]
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use ringbuf::traits::Consumer as _;
        loop {
            let n = self.0.pop_slice(buf);
            if n > 0 {
                return Ok(n);
            }
            std::hint::spin_loop();
        }
    }
}

/// ringbuf 0.4 at its best through slices: the frozen ends (`CachingProd::freeze`), which keep
/// both indices in the end itself. Like mirror-ring, rtrb and the hand-written rings: the
/// consumer's index is fetched (one Acquire load) only when the cached free room is too short,
/// and every `push_slice` is published (`commit`, one Release store).
pub struct RingbufCachedTx(pub ringbuf::wrap::FrozenProd<Arc<ringbuf::HeapRb<u8>>>);
/// The consumer's frozen end: fetches the producer's index only when nothing cached is left,
/// commits every `pop_slice`.
pub struct RingbufCachedRx(pub ringbuf::wrap::FrozenCons<Arc<ringbuf::HeapRb<u8>>>);

/// The frozen ends of a fresh `HeapRb` of `cap` bytes.
pub fn ringbuf_cached(cap: usize) -> (RingbufCachedTx, RingbufCachedRx) {
    use ringbuf::traits::Split as _;
    let (p, c) = ringbuf::HeapRb::<u8>::new(cap).split();
    (RingbufCachedTx(p.freeze()), RingbufCachedRx(c.freeze()))
}

impl Tx for RingbufCachedTx {
    #[inline]
    fn send_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        use ringbuf::traits::{Observer as _, Producer as _};
        while !buf.is_empty() {
            if self.0.vacant_len() < buf.len() {
                // Short of room by the cached index: fetch the consumer's.
                self.0.fetch();
            }
            let n = self.0.push_slice(buf);
            if n == 0 {
                std::hint::spin_loop();
                continue;
            }
            self.0.commit();
            buf = &buf[n..];
        }
        Ok(())
    }
}

impl Rx for RingbufCachedRx {
    #[inline]
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use ringbuf::traits::{Consumer as _, Observer as _};
        loop {
            if self.0.is_empty() {
                // Nothing left by the cached index: fetch the producer's.
                self.0.fetch();
            }
            let n = self.0.pop_slice(buf);
            if n > 0 {
                self.0.commit();
                return Ok(n);
            }
            std::hint::spin_loop();
        }
    }
}

// --- kernel byte streams ---------------------------------------------------------------------

/// A file descriptor written with `write(2)` / read with `read(2)`, blocking.
pub struct FdTx(pub OwnedFd);
/// The reading descriptor.
pub struct FdRx(pub OwnedFd);

impl Tx for FdTx {
    #[inline]
    fn send_all(&mut self, buf: &[u8]) -> io::Result<()> {
        write_all_fd(&self.0, buf)
    }
}

impl Rx for FdRx {
    #[inline]
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_fd(&self.0, buf)
    }
}

/// `write(2)` until all of `buf` is written.
pub fn write_all_fd(fd: &OwnedFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is valid for buf.len() bytes; the fd is open.
        let r = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[r as usize..];
    }
    Ok(())
}

/// One `read(2)` of at least one byte; end of file is an error here.
pub fn read_fd(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for buf.len() bytes; the fd is open.
        let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match r {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            r if r > 0 => return Ok(r as usize),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Two connected descriptors: `.0` is written, `.1` is read.
pub struct FdPair(pub OwnedFd, pub OwnedFd);

impl ForkPair for FdPair {
    type Tx = FdTx;
    type Rx = FdRx;
    fn into_tx(self) -> io::Result<FdTx> {
        Ok(FdTx(self.0)) // the read end closes here
    }
    fn into_rx(self) -> io::Result<FdRx> {
        Ok(FdRx(self.1))
    }
}

/// A pipe whose buffer is set to `size` with `F_SETPIPE_SZ` (capped at
/// `/proc/sys/fs/pipe-max-size` for unprivileged users). Returns the pair and the size the
/// kernel granted.
pub fn pipe_pair(size: usize) -> io::Result<(FdPair, usize)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let want = size.min(pipe_max_size()) as libc::c_int;
    // SAFETY: fcntl on an open fd with an int argument.
    let got = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, want) };
    let got = if got < 0 {
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) })?
    } else {
        got
    };
    Ok((FdPair(w, r), got as usize))
}

/// The largest pipe buffer an unprivileged process may ask for.
pub fn pipe_max_size() -> usize {
    std::fs::read_to_string("/proc/sys/fs/pipe-max-size").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(MIB)
}

/// A Unix stream socketpair with `SO_SNDBUF` on the sending socket and `SO_RCVBUF` on the
/// receiving one set to `size` (the kernel doubles the value and caps it at
/// `net.core.wmem_max`/`rmem_max`). Returns the pair and the send buffer the kernel granted.
pub fn socket_pair(size: usize) -> io::Result<(FdPair, usize)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    // SAFETY: socketpair returned two fresh descriptors that nothing else owns.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let v = size.min(i32::MAX as usize / 2) as libc::c_int;
    let set = |fd: &OwnedFd, opt| {
        // SAFETY: setsockopt with a valid int option value.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
    };
    set(&a, libc::SO_SNDBUF)?;
    set(&b, libc::SO_RCVBUF)?;
    let mut got: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt with valid out-pointers of the right size.
    cvt(unsafe {
        libc::getsockopt(
            a.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&mut got as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok((FdPair(a, b), got as usize))
}
