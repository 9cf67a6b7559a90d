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

/// Streams `run` from a producer on CPU 0 (this thread) to a consumer thread on CPU 1.
/// Returns the timed part's duration.
pub fn stream_threads<T: Tx, R: Rx + Send>(mut tx: T, mut rx: R, run: &Run) -> io::Result<Duration> {
    let ctl_mem = Shared::new(4096)?;
    // SAFETY: Control is atomics only and fits in the page.
    let ctl: &Control = unsafe { ctl_mem.at(0) };
    let pat = run.verify.then(pattern);
    let pat = pat.as_deref();
    pin_to(PRODUCER_CPU);
    std::thread::scope(|s| {
        let consumer = s.spawn(move || -> io::Result<(u64, u64)> {
            pin_to(CONSUMER_CPU);
            let mut buf = vec![0u8; run.write];
            let mut bad = consume(&mut rx, 0, run.warm, pat, &mut buf)?;
            ctl.meet();
            bad += consume(&mut rx, run.warm, run.total, pat, &mut buf)?;
            Ok((now_ns(), bad))
        });
        let src = vec![0x5Au8; run.write];
        let sent = (|| {
            produce(&mut tx, run, 0, run.warm, pat, &src)?;
            ctl.meet();
            let t0 = now_ns();
            produce(&mut tx, run, run.warm, run.total, pat, &src)?;
            Ok::<u64, io::Error>(t0)
        })();
        let received = consumer.join().map_err(|_| io::Error::other("consumer thread panicked"))?;
        let t0 = sent?;
        let (t1, bad) = received?;
        check_verified(bad)?;
        Ok(Duration::from_nanos(t1.saturating_sub(t0)))
    })
}

/// Streams `run` from this process (CPU 0) to a forked child (CPU 1) that owns the receiving
/// half. Returns the timed part's duration.
pub fn stream_fork<P: ForkPair>(pair: P, run: &Run) -> io::Result<Duration> {
    let ctl_mem = Shared::new(4096)?;
    // SAFETY: Control is atomics only and fits in the page.
    let ctl: &Control = unsafe { ctl_mem.at(0) };
    let pat = run.verify.then(pattern);
    let pat = pat.as_deref();
    let child = fork()?;
    if child.is_child() {
        child_main(|| {
            let mut rx = pair.into_rx()?;
            let mut buf = vec![0u8; run.write];
            let mut bad = consume(&mut rx, 0, run.warm, pat, &mut buf)?;
            ctl.meet();
            bad += consume(&mut rx, run.warm, run.total, pat, &mut buf)?;
            // Release: pairs with the parent's Acquire loads after reaping (reaping orders
            // them anyway; this keeps the intent explicit).
            ctl.t1.store(now_ns(), Ordering::Release);
            ctl.mismatches.store(bad, Ordering::Release);
            Ok(())
        });
    }
    pin_to(PRODUCER_CPU);
    let mut tx = pair.into_tx()?;
    let src = vec![0x5Au8; run.write];
    produce(&mut tx, run, 0, run.warm, pat, &src)?;
    ctl.meet();
    let t0 = now_ns();
    produce(&mut tx, run, run.warm, run.total, pat, &src)?;
    child.reap()?;
    drop(tx);
    check_verified(ctl.mismatches.load(Ordering::Acquire))?;
    Ok(Duration::from_nanos(ctl.t1.load(Ordering::Acquire).saturating_sub(t0)))
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

/// Everything the streaming benches compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Competitor {
    /// mirror-ring on a backend, spinning on `try_write` / `try_read`.
    Mirror(Backend),
    /// mirror-ring through `io::Write` / `io::Read` (blocking) with this spin budget.
    MirrorBlocking(Backend, Duration),
    /// The same protocol over a non-mirrored buffer: copies split at the wrap.
    Split,
    /// The floor: a minimal hand-written mirrored ring.
    Minimal,
    /// The floor with non-temporal stores in the producer.
    MinimalNt,
    /// rtrb 0.3, chunk API.
    Rtrb,
    /// ringbuf 0.4, slice API.
    Ringbuf,
    /// A pipe with `F_SETPIPE_SZ` = the ring size.
    Pipe,
    /// A Unix stream socketpair with `SO_SNDBUF`/`SO_RCVBUF` = the ring size.
    Socketpair,
}

impl Competitor {
    pub fn name(self) -> String {
        match self {
            Competitor::Mirror(Backend::Auto) => "mirror-ring".into(),
            Competitor::Mirror(b) => format!("mirror-ring/{b}"),
            Competitor::MirrorBlocking(b, spin) => {
                let b = if b == Backend::Auto { String::new() } else { format!("/{b}") };
                format!("mirror-ring{b}/blocking-spin-{}", fmt_duration(spin))
            }
            Competitor::Split => "split-copy-ring".into(),
            Competitor::Minimal => "minimal-mirror".into(),
            Competitor::MinimalNt => "minimal-mirror-nt".into(),
            Competitor::Rtrb => "rtrb".into(),
            Competitor::Ringbuf => "ringbuf".into(),
            Competitor::Pipe => "pipe".into(),
            Competitor::Socketpair => "socketpair".into(),
        }
    }

    /// rtrb and ringbuf live on the heap of one process.
    pub fn supports(self, mode: Mode) -> bool {
        mode == Mode::Threads || !matches!(self, Competitor::Rtrb | Competitor::Ringbuf)
    }

    /// Whether the backend (if any) works here.
    pub fn available(self) -> bool {
        match self {
            Competitor::Mirror(b) | Competitor::MirrorBlocking(b, _) => b.is_available(),
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
pub fn stream(c: Competitor, mode: Mode, cap: usize, run: &Run) -> io::Result<Duration> {
    match (c, mode) {
        (Competitor::Mirror(b), Mode::Threads) => {
            let (p, q) = mirror_options(b, cap, None).build()?;
            stream_threads(MirrorTx(p), MirrorRx(q), run)
        }
        (Competitor::MirrorBlocking(b, spin), Mode::Threads) => {
            let (p, q) = mirror_options(b, cap, Some(spin)).build()?;
            stream_threads(MirrorBlockingTx(p), MirrorBlockingRx(q), run)
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
        (Competitor::Rtrb | Competitor::Ringbuf, Mode::Fork) => {
            Err(io::Error::new(io::ErrorKind::Unsupported, "heap rings do not cross fork"))
        }
    }
}

/// Rounds `bytes` up to a positive multiple of `write`.
fn whole_writes(bytes: u64, write: usize) -> u64 {
    bytes.div_ceil(write as u64).max(1) * write as u64
}

/// Picks a run of `write`-byte writes that takes about `target` for `c` on this machine: one
/// short trial run, then bytes = rate x target (at least 64 writes, at most 8 GiB). The
/// warm-up is two ring capacities (every page of the ring touched, caches warm), but never more
/// than half the timed part, so slow competitors do not spend their budget warming up.
pub fn calibrate(c: Competitor, mode: Mode, cap: usize, write: usize, target: Duration) -> io::Result<Run> {
    let trial_bytes = whole_writes((2 * MIB as u64).max(64 * write as u64) / if write < KIB { 8 } else { 1 }, write);
    let trial =
        Run { write, warm: whole_writes((cap as u64).min(trial_bytes), write), total: trial_bytes, verify: false };
    let took = stream(c, mode, cap, &trial)?.max(Duration::from_micros(1));
    let rate = trial.total as f64 / took.as_secs_f64();
    let total = whole_writes(((rate * target.as_secs_f64()) as u64).clamp(64 * write as u64, 8 << 30), write);
    let warm = whole_writes((2 * cap as u64).min(total / 2), write);
    Ok(Run { write, warm, total, verify: false })
}

/// GB/s (1e9 bytes per second) for `bytes` in `d`.
pub fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

// ---------------------------------------------------------------------------------------------
// One thread: the cost of the operations themselves, with no other core involved
// ---------------------------------------------------------------------------------------------

fn ping_one_thread<T: Tx, R: Rx>(mut tx: T, mut rx: R, write: usize, ops: u64) -> io::Result<Duration> {
    let src = vec![0x5Au8; write];
    let mut dst = vec![0u8; write];
    // Warm-up: two passes over the ring, so page faults and cold caches stay out of the timing.
    let warm = (2 * MIB / write) as u64;
    let mut t = Instant::now();
    for i in 0..warm + ops {
        if i == warm {
            t = Instant::now();
        }
        tx.send_all(&src)?;
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
        Competitor::Mirror(b) => {
            let (p, q) = mirror_options(b, cap, None).build()?;
            ping_one_thread(MirrorTx(p), MirrorRx(q), write, ops)
        }
        Competitor::MirrorBlocking(b, spin) => {
            let (p, q) = mirror_options(b, cap, Some(spin)).build()?;
            ping_one_thread(MirrorBlockingTx(p), MirrorBlockingRx(q), write, ops)
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
