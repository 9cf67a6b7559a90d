//! Streaming drivers (threads, fork, one thread), the competitor list, and calibration.
#![allow(dead_code, unreachable_pub)]

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mirror_ring::{Backend, RingOptions};

use super::*;

// ---------------------------------------------------------------------------------------------
// Streaming drivers
// ---------------------------------------------------------------------------------------------

/// The verification pattern: the byte at stream position `p` is `PATTERN[p % PERIOD]`, kept
/// twice over so any window of up to `PERIOD` bytes is one slice.
const PERIOD: usize = 1_048_573; // a prime: no write size divides it

fn pattern() -> Vec<u8> {
    (0..2 * PERIOD).map(|i| ((i % PERIOD) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes()[5]).collect()
}

/// A value alone on its cache lines (128-byte aligned and padded, the adjacent-line prefetch
/// pair on x86).
#[repr(align(128))]
pub struct Isolated<T>(pub T);

/// A byte buffer that starts on a 128-byte boundary and shares no line with anything else.
pub struct Lines {
    mem: Vec<Isolated<[u8; 128]>>,
    len: usize,
}

impl Lines {
    pub fn new(len: usize) -> Lines {
        Lines { mem: (0..len.div_ceil(128)).map(|_| Isolated([0u8; 128])).collect(), len }
    }

    pub fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: the Vec holds len.div_ceil(128) * 128 >= len initialised bytes, contiguous
        // (Isolated<[u8; 128]> is exactly 128 bytes, no padding between elements).
        unsafe { std::slice::from_raw_parts_mut(self.mem.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// One streaming run.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// Bytes per write (and the most copied out per read).
    pub write: usize,
    /// Untimed bytes first.
    pub warm: u64,
    /// Timed bytes (a multiple of `write`).
    pub total: u64,
    /// Check every byte against a pattern (slower; for the self-check, not for timing).
    pub verify: bool,
}

fn produce<T: Tx>(tx: &mut T, run: &Run, start: u64, bytes: u64, pat: Option<&[u8]>, src: &[u8]) -> io::Result<()> {
    let mut pos = start;
    let end = start + bytes;
    while pos < end {
        let n = ((end - pos) as usize).min(run.write);
        let chunk = match pat {
            Some(p) => &p[(pos % PERIOD as u64) as usize..][..n],
            None => &src[..n],
        };
        tx.send_all(chunk)?;
        pos += n as u64;
    }
    Ok(())
}

fn consume<R: Rx>(rx: &mut R, start: u64, bytes: u64, pat: Option<&[u8]>, buf: &mut [u8]) -> io::Result<u64> {
    let mut pos = start;
    let end = start + bytes;
    let mut bad = 0u64;
    rx.expect(bytes);
    while pos < end {
        let want = ((end - pos) as usize).min(buf.len());
        let n = rx.recv(&mut buf[..want])?;
        if let Some(p) = pat {
            let expect = &p[(pos % PERIOD as u64) as usize..][..n];
            bad += expect.iter().zip(&buf[..n]).filter(|(a, b)| a != b).count() as u64;
        }
        pos += n as u64;
    }
    Ok(bad)
}

fn check_verified(bad: u64) -> io::Result<()> {
    if bad == 0 {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidData, format!("{bad} bytes arrived wrong")))
    }
}

/// A timed run: how long the timed part took, and how long either side waited for its CPU
/// while another task ran there (run-queue delay, summed over both sides), which says more
/// about the machine than about the ring.
#[derive(Clone, Copy, Debug)]
pub struct Timed {
    pub time: Duration,
    pub preempted: Duration,
    /// Times the producer found the ring full and the consumer found it empty during the
    /// timed part (mirror-ring's blocking ends only): which side waited for the other.
    pub waits: Option<(u64, u64)>,
    /// The reader's mean lag behind the producer in the timed part, bytes (sampled).
    pub lag: Option<f64>,
}

impl Timed {
    /// Whether other tasks took more than 1% of the run from us.
    pub fn disturbed(&self) -> bool {
        self.preempted.as_nanos() * 100 > self.time.as_nanos()
    }
}

/// What the consumer thread of [`stream_threads`] reports: its end time, the mismatches, its
/// run-queue delay, how often it waited, and its mean lag behind the producer.
type Received = (u64, u64, u64, Option<u64>, Option<f64>);

/// Streams `run` from a producer on CPU 0 (this thread) to a consumer thread on CPU 1.
pub fn stream_threads<T: Tx, R: Rx + Send>(tx: T, rx: R, run: &Run) -> io::Result<Timed> {
    let ctl_mem = Shared::new(4096)?;
    // SAFETY: Control is atomics only and fits in the page.
    let ctl: &Control = unsafe { ctl_mem.at(0) };
    let pat = run.verify.then(pattern);
    let pat = pat.as_deref();
    pin_to(PRODUCER_CPU);
    std::thread::scope(|s| {
        let consumer = s.spawn(move || -> io::Result<Received> {
            pin_to(CONSUMER_CPU);
            // Move the receiver out of the spawned closure (a heap block next to whatever the
            // producer allocates next) onto this thread's stack, and give the buffer lines of
            // its own: otherwise the two sides can share a cache line by accident, which
            // slows whichever competitor happens to land there.
            let mut rx = Isolated(rx);
            let rx = &mut rx.0;
            let mut buf = Lines::new(run.write);
            let buf = buf.as_mut();
            let mut bad = consume(rx, 0, run.warm, pat, buf)?;
            // (The run-queue delay is read outside the timed part: reading it is a syscall.)
            let sw = run_delay_ns();
            let w0 = rx.waits();
            let l0 = rx.lag();
            ctl.meet();
            bad += consume(rx, run.warm, run.total, pat, buf)?;
            let t1 = now_ns();
            let w = w0.zip(rx.waits()).map(|(a, b)| b - a);
            let lag =
                l0.zip(rx.lag()).and_then(|(a, b)| (b.n > a.n).then(|| (b.sum - a.sum) as f64 / (b.n - a.n) as f64));
            Ok((t1, bad, run_delay_ns() - sw, w, lag))
        });
        let mut tx = Isolated(tx);
        let tx = &mut tx.0;
        let mut src = Lines::new(run.write);
        src.as_mut().fill(0x5A);
        let src = &*src.as_mut();
        let sent = (|| {
            produce(tx, run, 0, run.warm, pat, src)?;
            let sw = run_delay_ns();
            let w0 = tx.waits();
            ctl.meet();
            let t0 = now_ns();
            produce(tx, run, run.warm, run.total, pat, src)?;
            let w = w0.zip(tx.waits()).map(|(a, b)| b - a);
            Ok::<(u64, u64, Option<u64>), io::Error>((t0, run_delay_ns() - sw, w))
        })();
        let received = consumer.join().map_err(|_| io::Error::other("consumer thread panicked"))?;
        let (t0, sw0, w_tx) = sent?;
        let (t1, bad, sw1, w_rx, lag) = received?;
        check_verified(bad)?;
        Ok(Timed {
            time: Duration::from_nanos(t1.saturating_sub(t0)),
            preempted: Duration::from_nanos(sw0 + sw1),
            waits: w_tx.zip(w_rx),
            lag,
        })
    })
}

/// Streams `run` from this process (CPU 0) to a forked child (CPU 1) that owns the receiving
/// half.
pub fn stream_fork<P: ForkPair>(pair: P, run: &Run) -> io::Result<Timed> {
    let ctl_mem = Shared::new(4096)?;
    // SAFETY: Control is atomics only and fits in the page.
    let ctl: &Control = unsafe { ctl_mem.at(0) };
    let pat = run.verify.then(pattern);
    let pat = pat.as_deref();
    let child = fork()?;
    if child.is_child() {
        child_main(|| {
            let mut rx = pair.into_rx()?;
            let rx = &mut rx;
            let mut buf = Lines::new(run.write);
            let buf = buf.as_mut();
            let mut bad = consume(rx, 0, run.warm, pat, buf)?;
            let sw = run_delay_ns();
            ctl.meet();
            bad += consume(rx, run.warm, run.total, pat, buf)?;
            // Release: pairs with the parent's Acquire loads after reaping (reaping orders
            // them anyway; this keeps the intent explicit).
            ctl.t1.store(now_ns(), Ordering::Release);
            ctl.mismatches.store(bad, Ordering::Release);
            ctl.preempted.store(run_delay_ns() - sw, Ordering::Release);
            Ok(())
        });
    }
    pin_to(PRODUCER_CPU);
    let mut tx = pair.into_tx()?;
    let tx = &mut tx;
    let mut src = Lines::new(run.write);
    src.as_mut().fill(0x5A);
    let src = &*src.as_mut();
    produce(tx, run, 0, run.warm, pat, src)?;
    let sw = run_delay_ns();
    ctl.meet();
    let t0 = now_ns();
    produce(tx, run, run.warm, run.total, pat, src)?;
    let sw = run_delay_ns() - sw;
    child.reap()?;
    check_verified(ctl.mismatches.load(Ordering::Acquire))?;
    Ok(Timed {
        time: Duration::from_nanos(ctl.t1.load(Ordering::Acquire).saturating_sub(t0)),
        preempted: Duration::from_nanos(sw + ctl.preempted.load(Ordering::Acquire)),
        waits: None,
        lag: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Competitors
// ---------------------------------------------------------------------------------------------

/// Threads of one process, or a parent and its forked child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Threads,
    Fork,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Threads => "threads",
            Mode::Fork => "fork",
        }
    }
}

/// The bulk comparison (4 KiB writes through 1 and 4 MiB rings), the same in the streaming
/// bench and the demo: mirror-ring through `std::io`, with a 64 KiB watermark reader, spinning
/// (`try_*`), rtrb and a pipe.
pub const BULK_COMPETITORS: [Competitor; 5] = [
    Competitor::MirrorIo,
    Competitor::MirrorWatermark(64 * KIB),
    Competitor::Mirror(Backend::Auto),
    Competitor::Rtrb,
    Competitor::Pipe,
];

/// Everything the streaming benches compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Competitor {
    /// mirror-ring as users call it: `io::Write::write_all` / `io::Read::read`, blocking,
    /// default options (`RingOptions::new().capacity(..)`).
    MirrorIo,
    /// mirror-ring on a backend, spinning on `try_write` / `try_read`.
    Mirror(Backend),
    /// mirror-ring through `io::Write` / `io::Read` (blocking) with this spin budget.
    MirrorBlocking(Backend, Duration),
    /// mirror-ring, `io::Write` producer and a reader that waits for this many bytes
    /// (`read_grant_blocking`) before it takes them ([`MirrorWatermarkRx`]); default options.
    MirrorWatermark(usize),
    /// mirror-ring through `io::Write` / `io::Read` (blocking, default options) over 2 MiB
    /// huge pages (`RingOptions::huge_pages`).
    MirrorHuge,
    /// The same over transparent huge pages (`RingOptions::transparent_huge_pages`).
    MirrorThp,
    /// The same protocol over a non-mirrored buffer: copies split at the wrap.
    Split,
    /// The floor: a minimal hand-written mirrored ring.
    Minimal,
    /// The floor with non-temporal stores in the producer.
    MinimalNt,
    /// rtrb 0.3, chunk API.
    Rtrb,
    /// ringbuf 0.4, slice API, through the ends `HeapRb::split()` hands out (its default).
    Ringbuf,
    /// ringbuf 0.4, slice API, through frozen ends driven like a caching ring (its best case).
    RingbufCached,
    /// A pipe with `F_SETPIPE_SZ` = the ring size.
    Pipe,
    /// A Unix stream socketpair with `SO_SNDBUF`/`SO_RCVBUF` = the ring size.
    Socketpair,
}

impl Competitor {
    pub fn name(self) -> String {
        match self {
            Competitor::MirrorIo => "mirror-ring/io".into(),
            Competitor::Mirror(Backend::Auto) => "mirror-ring/try".into(),
            Competitor::Mirror(b) => format!("mirror-ring/try/{b}"),
            Competitor::MirrorBlocking(b, spin) => {
                let b = if b == Backend::Auto { String::new() } else { format!("/{b}") };
                format!("mirror-ring{b}/blocking-spin-{}", fmt_duration(spin))
            }
            Competitor::MirrorWatermark(w) => format!("mirror-ring/watermark-{}", fmt_size(w).replace(' ', "")),
            Competitor::MirrorHuge => "mirror-ring/huge-pages".into(),
            Competitor::MirrorThp => "mirror-ring/thp".into(),
            Competitor::Split => "split-copy-ring".into(),
            Competitor::Minimal => "minimal-mirror".into(),
            Competitor::MinimalNt => "minimal-mirror-nt".into(),
            Competitor::Rtrb => "rtrb".into(),
            Competitor::Ringbuf => "ringbuf/default".into(),
            Competitor::RingbufCached => "ringbuf/cached".into(),
            Competitor::Pipe => "pipe".into(),
            Competitor::Socketpair => "socketpair".into(),
        }
    }

    /// What backs the ring's data: huge pages for the two huge-page competitors.
    fn paging(self) -> Paging {
        match self {
            Competitor::MirrorHuge => Paging::Huge,
            Competitor::MirrorThp => Paging::Thp,
            _ => Paging::Small,
        }
    }

    /// rtrb and ringbuf live on the heap of one process.
    pub fn supports(self, mode: Mode) -> bool {
        mode == Mode::Threads
            || !matches!(
                self,
                Competitor::Rtrb | Competitor::Ringbuf | Competitor::RingbufCached | Competitor::MirrorWatermark(_)
            )
    }

    /// Whether the backend (if any) works here.
    pub fn available(self) -> bool {
        match self {
            Competitor::Mirror(b) | Competitor::MirrorBlocking(b, _) => b.is_available(),
            Competitor::MirrorWatermark(_) | Competitor::MirrorIo => Backend::Auto.is_available(),
            Competitor::MirrorHuge => huge_pages_free() > 0,
            Competitor::MirrorThp => shmem_thp_allowed(),
            _ => true,
        }
    }
}

pub fn mirror_options(b: Backend, cap: usize, spin: Option<Duration>) -> RingOptions {
    let mut o = RingOptions::new();
    o.capacity(cap).backend(b);
    if let Some(s) = spin {
        o.spin_budget(s);
    }
    o
}

/// One streaming run of `c` with a ring (or pipe, or socket buffer) of `cap` bytes.
pub fn stream(c: Competitor, mode: Mode, cap: usize, run: &Run) -> io::Result<Timed> {
    match (c, mode) {
        (Competitor::MirrorIo, Mode::Threads) => {
            let (p, q) = RingOptions::new().capacity(cap).build()?;
            stream_threads(MirrorBlockingTx(p), MirrorBlockingRx::new(q), run)
        }
        (Competitor::MirrorIo, Mode::Fork) => {
            stream_fork(MirrorFork { ring: RingOptions::new().capacity(cap).shared()?, blocking: true }, run)
        }
        (Competitor::Mirror(b), Mode::Threads) => {
            let (p, q) = mirror_options(b, cap, None).build()?;
            stream_threads(MirrorTx(p), MirrorRx(q), run)
        }
        (Competitor::MirrorBlocking(b, spin), Mode::Threads) => {
            let (p, q) = mirror_options(b, cap, Some(spin)).build()?;
            stream_threads(MirrorBlockingTx(p), MirrorBlockingRx::new(q), run)
        }
        (Competitor::MirrorWatermark(w), Mode::Threads) => {
            let (p, q) = mirror_options(Backend::Auto, cap, None).build()?;
            stream_threads(MirrorBlockingTx(p), MirrorWatermarkRx::new(q, w), run)
        }
        (Competitor::MirrorHuge | Competitor::MirrorThp, Mode::Threads) => {
            let (p, q) = c.paging().options(cap).build()?;
            stream_threads(MirrorBlockingTx(p), MirrorBlockingRx::new(q), run)
        }
        (Competitor::MirrorHuge | Competitor::MirrorThp, Mode::Fork) => {
            stream_fork(MirrorFork { ring: c.paging().options(cap).shared()?, blocking: true }, run)
        }
        (Competitor::MirrorWatermark(_), Mode::Fork) => {
            Err(io::Error::new(io::ErrorKind::Unsupported, "the watermark reader runs between threads only"))
        }
        (Competitor::Mirror(b), Mode::Fork) => {
            stream_fork(MirrorFork { ring: mirror_options(b, cap, None).shared()?, blocking: false }, run)
        }
        (Competitor::MirrorBlocking(b, spin), Mode::Fork) => {
            stream_fork(MirrorFork { ring: mirror_options(b, cap, Some(spin)).shared()?, blocking: true }, run)
        }
        (Competitor::Split, Mode::Threads) => {
            let r = HandRing::new(cap)?;
            stream_threads(SplitTx::new(r.clone()), SplitRx::new(r), run)
        }
        (Competitor::Minimal | Competitor::MinimalNt, Mode::Threads) => {
            let r = HandRing::new(cap)?;
            stream_threads(MinimalTx::new(r.clone(), c == Competitor::MinimalNt), MinimalRx::new(r), run)
        }
        (Competitor::Split, Mode::Fork) => {
            stream_fork(HandFork { ring: HandRing::new(cap)?, kind: HandKind::Split }, run)
        }
        (Competitor::Minimal, Mode::Fork) => {
            stream_fork(HandFork { ring: HandRing::new(cap)?, kind: HandKind::Minimal }, run)
        }
        (Competitor::MinimalNt, Mode::Fork) => {
            stream_fork(HandFork { ring: HandRing::new(cap)?, kind: HandKind::MinimalNt }, run)
        }
        (Competitor::Rtrb, Mode::Threads) => {
            let (p, q) = rtrb::RingBuffer::new(cap);
            stream_threads(RtrbTx(p), RtrbRx(q), run)
        }
        (Competitor::Ringbuf, Mode::Threads) => {
            use ringbuf::traits::Split as _;
            let (p, q) = ringbuf::HeapRb::<u8>::new(cap).split();
            stream_threads(RingbufTx(p), RingbufRx(q), run)
        }
        (Competitor::RingbufCached, Mode::Threads) => {
            let (p, q) = ringbuf_cached(cap);
            stream_threads(p, q, run)
        }
        (Competitor::Pipe, Mode::Threads) => {
            let (FdPair(w, r), _) = pipe_pair(cap)?;
            stream_threads(FdTx(w), FdRx(r), run)
        }
        (Competitor::Socketpair, Mode::Threads) => {
            let (FdPair(w, r), _) = socket_pair(cap)?;
            stream_threads(FdTx(w), FdRx(r), run)
        }
        (Competitor::Pipe, Mode::Fork) => stream_fork(pipe_pair(cap)?.0, run),
        (Competitor::Socketpair, Mode::Fork) => stream_fork(socket_pair(cap)?.0, run),
        (Competitor::Rtrb | Competitor::Ringbuf | Competitor::RingbufCached, Mode::Fork) => {
            Err(io::Error::new(io::ErrorKind::Unsupported, "heap rings do not cross fork"))
        }
    }
}

/// Rounds `bytes` up to a positive multiple of `write`.
fn whole_writes(bytes: u64, write: usize) -> u64 {
    bytes.div_ceil(write as u64).max(1) * write as u64
}

/// The warm-up: at least one full lap of the ring, so that every page has been faulted in
/// before the clock starts (a first write to a page of shared memory costs a fault of ~3 µs on
/// these VMs, ten times a private page's, and would otherwise be billed to the bigger rings),
/// and two laps when the timed part is long enough to afford them.
pub fn warm_up(cap: usize, write: usize, total: u64) -> u64 {
    whole_writes((cap + write) as u64, write).max(whole_writes((2 * cap as u64).min(total / 2), write))
}

/// Picks a run of `write`-byte writes that takes about `target` for `c` on this machine: one
/// short trial run, then bytes = rate x target (at least 64 writes, at most 8 GiB), after the
/// warm-up of [`warm_up`].
pub fn calibrate(c: Competitor, mode: Mode, cap: usize, write: usize, target: Duration) -> io::Result<Run> {
    // A pipe or a socket has no ring of pages to fault in (the kernel allocates a page per
    // write as it goes), and small writes through them are slow: a short warm-up does.
    let warm_cap = if matches!(c, Competitor::Pipe | Competitor::Socketpair) { cap.min(256 * KIB) } else { cap };
    let trial_bytes = whole_writes((2 * MIB as u64).max(64 * write as u64) / if write < KIB { 8 } else { 1 }, write);
    let trial = Run { write, warm: warm_up(warm_cap, write, 0), total: trial_bytes, verify: false };
    let took = stream(c, mode, cap, &trial)?.time.max(Duration::from_micros(1));
    let rate = trial.total as f64 / took.as_secs_f64();
    let total = whole_writes(((rate * target.as_secs_f64()) as u64).clamp(64 * write as u64, 8 << 30), write);
    Ok(Run { write, warm: warm_up(warm_cap, write, total), total, verify: false })
}

/// GB/s (1e9 bytes per second) for `bytes` in `d`.
pub fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

// ---------------------------------------------------------------------------------------------
// One thread: the cost of the operations themselves, with no other core involved
// ---------------------------------------------------------------------------------------------

fn ping_one_thread<T: Tx, R: Rx>(mut tx: T, mut rx: R, write: usize, ops: u64) -> io::Result<Duration> {
    let mut src = Lines::new(write);
    src.as_mut().fill(0x5A);
    let src = &*src.as_mut();
    let mut dst = Lines::new(write);
    let dst = dst.as_mut();
    // Warm-up: two passes over the ring, so page faults and cold caches stay out of the timing.
    let warm = (2 * MIB / write) as u64;
    let mut t = Instant::now();
    for i in 0..warm + ops {
        if i == warm {
            t = Instant::now();
        }
        tx.send_all(src)?;
        let mut got = 0;
        while got < write {
            got += rx.recv(&mut dst[got..])?;
        }
    }
    std::hint::black_box(&dst);
    Ok(t.elapsed())
}

/// `ops` times: one `write`-byte write, then reading it back, in one thread (1 MiB ring). The
/// per-operation cost of each competitor without cache-line traffic between cores; also the
/// loop to run under `valgrind --tool=callgrind` for instruction counts.
pub fn single_thread(c: Competitor, write: usize, ops: u64) -> io::Result<Duration> {
    let cap = MIB;
    match c {
        Competitor::MirrorIo => {
            let (p, q) = RingOptions::new().capacity(cap).build()?;
            ping_one_thread(MirrorBlockingTx(p), MirrorBlockingRx::new(q), write, ops)
        }
        Competitor::Mirror(b) => {
            let (p, q) = mirror_options(b, cap, None).build()?;
            ping_one_thread(MirrorTx(p), MirrorRx(q), write, ops)
        }
        Competitor::MirrorBlocking(b, spin) => {
            let (p, q) = mirror_options(b, cap, Some(spin)).build()?;
            ping_one_thread(MirrorBlockingTx(p), MirrorBlockingRx::new(q), write, ops)
        }
        Competitor::MirrorWatermark(w) => {
            let (p, q) = mirror_options(Backend::Auto, cap, None).build()?;
            ping_one_thread(MirrorBlockingTx(p), MirrorWatermarkRx::new(q, w.min(write)), write, ops)
        }
        Competitor::MirrorHuge | Competitor::MirrorThp => {
            let (p, q) = c.paging().options(cap).build()?;
            ping_one_thread(MirrorBlockingTx(p), MirrorBlockingRx::new(q), write, ops)
        }
        Competitor::Split => {
            let r = HandRing::new(cap)?;
            ping_one_thread(SplitTx::new(r.clone()), SplitRx::new(r), write, ops)
        }
        Competitor::Minimal | Competitor::MinimalNt => {
            let r = HandRing::new(cap)?;
            ping_one_thread(MinimalTx::new(r.clone(), c == Competitor::MinimalNt), MinimalRx::new(r), write, ops)
        }
        Competitor::Rtrb => {
            let (p, q) = rtrb::RingBuffer::new(cap);
            ping_one_thread(RtrbTx(p), RtrbRx(q), write, ops)
        }
        Competitor::Ringbuf => {
            use ringbuf::traits::Split as _;
            let (p, q) = ringbuf::HeapRb::<u8>::new(cap).split();
            ping_one_thread(RingbufTx(p), RingbufRx(q), write, ops)
        }
        Competitor::RingbufCached => {
            let (p, q) = ringbuf_cached(cap);
            ping_one_thread(p, q, write, ops)
        }
        Competitor::Pipe => {
            let (FdPair(w, r), _) = pipe_pair(cap)?;
            ping_one_thread(FdTx(w), FdRx(r), write, ops)
        }
        Competitor::Socketpair => {
            let (FdPair(w, r), _) = socket_pair(cap)?;
            ping_one_thread(FdTx(w), FdRx(r), write, ops)
        }
    }
}
