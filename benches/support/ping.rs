//! Round trips of one small message: ring, pipe, bare futex and bare atomic ping-pongs, and
//! paced requests for the spin-budget sweep.
#![allow(dead_code, unreachable_pub)]

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mirror_ring::{Backend, Consumer, Producer, SharedRing};

use super::*;

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

/// What bounces the message in the latency benches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinger {
    /// Two mirror-rings, spinning on `try_write` / `try_read`.
    MirrorSpin,
    /// Two mirror-rings through `io::Write` / `io::Read` with this spin budget (zero: sleep on
    /// the futex at once).
    MirrorBlocking(Duration),
    /// Two pipes, blocking `write` / `read`.
    Pipe,
    /// Two shared futex words: store, `FUTEX_WAKE`; `FUTEX_WAIT` until the peer's word moves.
    Futex,
    /// Two atomic words in their own cache lines, spinning.
    Atomic,
    /// Two rtrb byte rings (threads only), chunk API (`write_chunk_uninit` / `read_chunk`),
    /// spinning: rtrb's faster shape.
    Rtrb,
}

impl Pinger {
    pub fn name(self) -> String {
        match self {
            Pinger::MirrorSpin => "mirror-ring/spin".into(),
            Pinger::MirrorBlocking(d) => format!("mirror-ring/blocking-spin-{}", fmt_duration(d)),
            Pinger::Pipe => "pipe".into(),
            Pinger::Futex => "bare-futex".into(),
            Pinger::Atomic => "bare-atomic".into(),
            Pinger::Rtrb => "rtrb/chunks".into(),
        }
    }
}

/// The message that ends an echo loop (fits a 32-bit futex word; sequence numbers stay below).
const STOP: u64 = u32::MAX as u64;
const LINE: usize = 128;

/// One side of a ping-pong. (Unboxed on purpose: the ends live on the stack of the measuring
/// thread, and boxing would add an indirection to the timed path.)
#[allow(clippy::large_enum_variant)]
pub enum PingEnd {
    Mirror { tx: Producer, rx: Consumer, spin: bool },
    Fd { w: OwnedFd, r: OwnedFd },
    Futex { mem: Arc<Shared>, mine: usize, theirs: usize, last: u32 },
    Atomic { mem: Arc<Shared>, mine: usize, theirs: usize, last: u64 },
    Rtrb { tx: rtrb::Producer<u8>, rx: rtrb::Consumer<u8> },
}

fn futex_op(word: &AtomicU32, op: libc::c_int, val: u32) {
    // SAFETY: a shared (not private) futex op on a live, aligned u32 in shared memory; no
    // timeout, no second word.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), op, val, std::ptr::null::<libc::timespec>(), 0usize, 0u32);
    }
}

impl PingEnd {
    fn send(&mut self, v: u64) -> io::Result<()> {
        match self {
            PingEnd::Mirror { tx, spin: true, .. } => MirrorTx::send_all_ref(tx, &v.to_ne_bytes()),
            PingEnd::Mirror { tx, spin: false, .. } => tx.write_all(&v.to_ne_bytes()),
            PingEnd::Fd { w, .. } => write_all_fd(w, &v.to_ne_bytes()),
            PingEnd::Futex { mem, mine, .. } => {
                // SAFETY: offsets are line-aligned inside the page (see ping_setup).
                let w: &AtomicU32 = unsafe { mem.at(*mine) };
                // Release: pairs with the peer's Acquire load in recv.
                w.store(v as u32, Ordering::Release);
                futex_op(w, libc::FUTEX_WAKE, 1);
                Ok(())
            }
            PingEnd::Atomic { mem, mine, .. } => {
                // SAFETY: as above.
                let w: &AtomicU64 = unsafe { mem.at(*mine) };
                // Release: pairs with the peer's Acquire load in recv.
                w.store(v, Ordering::Release);
                Ok(())
            }
            PingEnd::Rtrb { tx, .. } => {
                let b = v.to_ne_bytes();
                let mut chunk = loop {
                    match tx.write_chunk_uninit(8) {
                        Ok(c) => break c,
                        Err(_) => std::hint::spin_loop(),
                    }
                };
                let (x, y) = chunk.as_mut_slices();
                let k = x.len();
                for (d, s) in x.iter_mut().zip(&b[..k]) {
                    d.write(*s);
                }
                for (d, s) in y.iter_mut().zip(&b[k..]) {
                    d.write(*s);
                }
                // SAFETY: all 8 slots were written just above.
                unsafe { chunk.commit_all() };
                Ok(())
            }
        }
    }

    fn recv(&mut self) -> io::Result<u64> {
        let mut b = [0u8; 8];
        match self {
            PingEnd::Mirror { rx, spin: true, .. } => {
                let mut got = 0;
                while got < 8 {
                    got += MirrorRx::recv_ref(rx, &mut b[got..])?;
                }
            }
            PingEnd::Mirror { rx, spin: false, .. } => rx.read_exact(&mut b)?,
            PingEnd::Fd { r, .. } => {
                let mut got = 0;
                while got < 8 {
                    got += read_fd(r, &mut b[got..])?;
                }
            }
            PingEnd::Futex { mem, theirs, last, .. } => {
                // SAFETY: as in send.
                let w: &AtomicU32 = unsafe { mem.at(*theirs) };
                loop {
                    // Acquire: pairs with the peer's Release store.
                    let x = w.load(Ordering::Acquire);
                    if x != *last {
                        *last = x;
                        return Ok(x as u64);
                    }
                    futex_op(w, libc::FUTEX_WAIT, x);
                }
            }
            PingEnd::Atomic { mem, theirs, last, .. } => {
                // SAFETY: as in send.
                let w: &AtomicU64 = unsafe { mem.at(*theirs) };
                loop {
                    // Acquire: pairs with the peer's Release store.
                    let x = w.load(Ordering::Acquire);
                    if x != *last {
                        *last = x;
                        return Ok(x);
                    }
                    std::hint::spin_loop();
                }
            }
            PingEnd::Rtrb { rx, .. } => {
                let chunk = loop {
                    match rx.read_chunk(8) {
                        Ok(c) => break c,
                        Err(_) => std::hint::spin_loop(),
                    }
                };
                let (x, y) = chunk.as_slices();
                b[..x.len()].copy_from_slice(x);
                b[x.len()..].copy_from_slice(y);
                chunk.commit_all();
            }
        }
        Ok(u64::from_ne_bytes(b))
    }
}

impl MirrorTx {
    #[inline]
    fn send_all_ref(p: &mut Producer, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match p.try_write(buf) {
                Ok(n) => buf = &buf[n..],
                Err(e) if would_block(&e) => std::hint::spin_loop(),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl MirrorRx {
    #[inline]
    fn recv_ref(c: &mut Consumer, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match c.try_read(buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => return Ok(n),
                Err(e) if would_block(&e) => std::hint::spin_loop(),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Both sides of a ping-pong, made before `fork()` (or for two threads): side A pings, side
/// B echoes.
pub enum PingSetup {
    Mirror { ab: SharedRing, ba: SharedRing, spin: bool },
    Fd { ab: FdPair, ba: FdPair },
    Futex(Arc<Shared>),
    Atomic(Arc<Shared>),
}

impl PingSetup {
    pub fn new(kind: Pinger) -> io::Result<PingSetup> {
        let ring = |spin: Option<Duration>| mirror_options(Backend::Auto, 4096, spin).shared();
        Ok(match kind {
            Pinger::MirrorSpin => PingSetup::Mirror { ab: ring(None)?, ba: ring(None)?, spin: true },
            Pinger::MirrorBlocking(d) => PingSetup::Mirror { ab: ring(Some(d))?, ba: ring(Some(d))?, spin: false },
            Pinger::Pipe => PingSetup::Fd { ab: pipe_pair(4096)?.0, ba: pipe_pair(4096)?.0 },
            Pinger::Futex => PingSetup::Futex(Arc::new(Shared::new(4096)?)),
            Pinger::Atomic => PingSetup::Atomic(Arc::new(Shared::new(4096)?)),
            Pinger::Rtrb => return Err(io::Error::new(io::ErrorKind::Unsupported, "rtrb does not cross fork")),
        })
    }

    /// The pinging side (sends on a->b, receives on b->a).
    pub fn side_a(self) -> io::Result<PingEnd> {
        Ok(match self {
            PingSetup::Mirror { ab, ba, spin } => {
                PingEnd::Mirror { tx: ab.into_producer()?, rx: ba.into_consumer()?, spin }
            }
            PingSetup::Fd { ab, ba } => PingEnd::Fd { w: ab.0, r: ba.1 },
            PingSetup::Futex(mem) => PingEnd::Futex { mem, mine: 0, theirs: LINE, last: 0 },
            PingSetup::Atomic(mem) => PingEnd::Atomic { mem, mine: 0, theirs: LINE, last: 0 },
        })
    }

    /// The echoing side.
    pub fn side_b(self) -> io::Result<PingEnd> {
        Ok(match self {
            PingSetup::Mirror { ab, ba, spin } => {
                PingEnd::Mirror { tx: ba.into_producer()?, rx: ab.into_consumer()?, spin }
            }
            PingSetup::Fd { ab, ba } => PingEnd::Fd { w: ba.0, r: ab.1 },
            PingSetup::Futex(mem) => PingEnd::Futex { mem, mine: LINE, theirs: 0, last: 0 },
            PingSetup::Atomic(mem) => PingEnd::Atomic { mem, mine: LINE, theirs: 0, last: 0 },
        })
    }
}

/// The two ends for two threads: rings made with `RingOptions::build` (the thread API); the
/// rest as for fork.
fn ping_thread_ends(kind: Pinger) -> io::Result<(PingEnd, PingEnd)> {
    let pair = |spin: Option<Duration>| mirror_options(Backend::Auto, 4096, spin).build();
    match kind {
        Pinger::MirrorSpin | Pinger::MirrorBlocking(_) => {
            let (spin, budget) = match kind {
                Pinger::MirrorBlocking(d) => (false, Some(d)),
                _ => (true, None),
            };
            let (p1, c1) = pair(budget)?;
            let (p2, c2) = pair(budget)?;
            Ok((PingEnd::Mirror { tx: p1, rx: c2, spin }, PingEnd::Mirror { tx: p2, rx: c1, spin }))
        }
        Pinger::Pipe => {
            let (ab, _) = pipe_pair(4096)?;
            let (ba, _) = pipe_pair(4096)?;
            Ok((PingEnd::Fd { w: ab.0, r: ba.1 }, PingEnd::Fd { w: ba.0, r: ab.1 }))
        }
        Pinger::Rtrb => {
            let (p1, c1) = rtrb::RingBuffer::<u8>::new(4096);
            let (p2, c2) = rtrb::RingBuffer::<u8>::new(4096);
            Ok((PingEnd::Rtrb { tx: p1, rx: c2 }, PingEnd::Rtrb { tx: p2, rx: c1 }))
        }
        Pinger::Futex | Pinger::Atomic => {
            let mem = Arc::new(Shared::new(4096)?);
            let a = if kind == Pinger::Futex { PingSetup::Futex(mem.clone()) } else { PingSetup::Atomic(mem.clone()) };
            let b = if kind == Pinger::Futex { PingSetup::Futex(mem) } else { PingSetup::Atomic(mem) };
            Ok((a.side_a()?, b.side_b()?))
        }
    }
}

/// Pings `batches` x `per_batch` round trips (after a warm-up) and returns the mean round trip
/// of each batch, in nanoseconds.
fn ping(a: &mut PingEnd, batches: usize, per_batch: u64, warm: u64) -> io::Result<Vec<f64>> {
    let mut seq = 1u64;
    let mut one = |a: &mut PingEnd| -> io::Result<()> {
        a.send(seq)?;
        let r = a.recv()?;
        if r != seq {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("sent {seq}, got {r} back")));
        }
        seq += 1;
        Ok(())
    };
    for _ in 0..warm {
        one(a)?;
    }
    let mut out = Vec::with_capacity(batches);
    for _ in 0..batches {
        let t = Instant::now();
        for _ in 0..per_batch {
            one(a)?;
        }
        out.push(t.elapsed().as_nanos() as f64 / per_batch as f64);
    }
    assert!(seq < STOP, "sequence numbers must stay below STOP");
    a.send(STOP)?;
    a.recv()?;
    Ok(out)
}

fn echo(b: &mut PingEnd) -> io::Result<()> {
    loop {
        let v = b.recv()?;
        b.send(v)?;
        if v == STOP {
            return Ok(());
        }
    }
}

/// Round trips between a pinger on CPU 0 and an echo on CPU 1: per-batch mean round trip in
/// ns.
pub fn round_trips(kind: Pinger, mode: Mode, batches: usize, per_batch: u64, warm: u64) -> io::Result<Vec<f64>> {
    match mode {
        Mode::Threads => thread_round_trips(kind, CONSUMER_CPU, batches, per_batch, warm),
        Mode::Fork => {
            let setup = PingSetup::new(kind)?;
            let child = fork()?;
            if child.is_child() {
                child_main(|| echo(&mut setup.side_b()?));
            }
            pin_to(PRODUCER_CPU);
            let mut a = setup.side_a()?;
            let r = ping(&mut a, batches, per_batch, warm)?;
            child.reap()?;
            Ok(r)
        }
    }
}

/// [`round_trips`] between two threads: the pinger on CPU 0, the echo on `echo_cpu` (CPU 0
/// too puts both ends on one core).
pub fn thread_round_trips(
    kind: Pinger,
    echo_cpu: usize,
    batches: usize,
    per_batch: u64,
    warm: u64,
) -> io::Result<Vec<f64>> {
    let (mut a, mut b) = ping_thread_ends(kind)?;
    pin_to(PRODUCER_CPU);
    std::thread::scope(|s| {
        let e = s.spawn(move || {
            pin_to(echo_cpu);
            echo(&mut b)
        });
        let r = ping(&mut a, batches, per_batch, warm);
        if r.is_err() {
            // Unblock the echo thread: dropping our ends closes rings and pipes.
            drop(a);
        }
        let echoed = e.join().map_err(|_| io::Error::other("echo thread panicked"))?;
        let r = r?;
        echoed?;
        Ok(r)
    })
}

/// Runs `f` while a busy loop (a thread that never sleeps or yields) runs on each of the two
/// measured CPUs: a machine whose cores other work keeps busy.
pub fn with_busy_loops<T>(f: impl FnOnce() -> T) -> T {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for cpu in [PRODUCER_CPU, CONSUMER_CPU] {
            let stop = &stop;
            s.spawn(move || {
                pin_to(cpu);
                // Relaxed: a flag polled until it is seen; it publishes nothing.
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            });
        }
        let r = f();
        stop.store(true, Ordering::Relaxed);
        r
    })
}

/// CPU time used by the calling thread.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Paced requests between two threads over blocking mirror-rings with spin budget `budget`:
/// the pinger busy-waits `gap` before each request, so the echo thread waits about that long
/// for each one (spinning through the gap or sleeping on the futex). Returns the median round
/// trip in ns (gap excluded) and the share of one CPU the echo thread used.
pub fn paced_round_trips(budget: Duration, gap: Duration, n: u64) -> io::Result<(f64, f64)> {
    let (mut a, mut b) = ping_thread_ends(Pinger::MirrorBlocking(budget))?;
    pin_to(PRODUCER_CPU);
    std::thread::scope(|s| {
        let e = s.spawn(move || -> io::Result<f64> {
            pin_to(CONSUMER_CPU);
            // The first request arrives after the pinger's first gap; start the clocks there.
            let first = b.recv()?;
            b.send(first)?;
            let (c0, t0) = (thread_cpu_time(), Instant::now());
            echo(&mut b)?;
            Ok((thread_cpu_time() - c0).as_secs_f64() / t0.elapsed().as_secs_f64())
        });
        let mut lat = Vec::with_capacity(n as usize);
        let r = (|| -> io::Result<()> {
            for seq in 1..=n {
                let until = Instant::now() + gap;
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                let t = Instant::now();
                a.send(seq)?;
                if a.recv()? != seq {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "wrong echo"));
                }
                lat.push(t.elapsed().as_nanos() as f64);
            }
            a.send(STOP)?;
            a.recv()?;
            Ok(())
        })();
        if r.is_err() {
            drop(a);
        }
        let cpu = e.join().map_err(|_| io::Error::other("echo thread panicked"))?;
        r?;
        Ok((median(&lat[1..]), cpu?))
    })
}

/// Round trips of one pinger as a [`Contender`]: units are round trips, so the rate is
/// 1 / (mean round trip); [`Outcome::ratios_in`] of two of them is the inverse ratio of their
/// round trips.
pub struct RttCase {
    pub kind: Pinger,
    pub mode: Mode,
    per_batch: u64,
}

impl RttCase {
    pub fn new(kind: Pinger, mode: Mode) -> RttCase {
        RttCase { kind, mode, per_batch: 0 }
    }
}

impl Contender for RttCase {
    fn name(&self) -> String {
        self.kind.name()
    }

    /// A trial of 200 round trips, then a batch that takes about `target / 2`.
    fn calibrate(&mut self, target: Duration) -> io::Result<()> {
        let v = round_trips(self.kind, self.mode, 1, 200, 50)?;
        if !(v[0].is_finite() && v[0] > 0.0) {
            return Err(io::Error::other(format!("calibration timed {} ns", v[0])));
        }
        self.per_batch = ((target.as_secs_f64() * 0.5e9 / v[0]) as u64).clamp(20, 200_000);
        Ok(())
    }

    fn sample(&mut self) -> io::Result<Sample> {
        let n = self.per_batch;
        let d0 = run_delay_ns();
        let v = round_trips(self.kind, self.mode, 1, n, n / 10 + 10)?;
        let time = Duration::from_nanos((v[0] * n as f64) as u64);
        Ok(Sample { units: n, time, preempted: Duration::from_nanos(run_delay_ns() - d0) })
    }
}
