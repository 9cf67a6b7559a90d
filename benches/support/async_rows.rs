//! The async ends and the kernel on the other side, measured (feature `tokio`): used by
//! `benches/async.rs` (criterion) and by the comparison demo, which measures
//! [`async_section`] interleaved, with per-repetition ratios, in one run.
//!
//! - Round trip of an 8-byte message between two current-thread runtimes on two pinned
//!   threads (pinger on CPU 0, echo on CPU 1): mirror-ring's async ends on a thread ring
//!   (woken directly), on a ring claimed through a `SharedRing` in the same process (woken
//!   through the `futex_waitv` helper, as between processes), tokio's `UnixStream` and
//!   `tokio::io::duplex`. "Parked": each side parks between messages (the runtime thread
//!   sleeps); "busy": each runtime also runs a task that yields in a loop, so the thread never
//!   sleeps and a wake-up finds it running.
//! - Streaming at 64 B and 4 KiB writes (reads of the same size) between the two runtimes,
//!   the same four.
//! - A socket-to-socket relay (Unix stream sockets): source -> ring with `read_from` (one
//!   thread), ring -> sink with `write_to` (another); against `std::io::copy` (one thread), a
//!   plain read/write loop through a 64 KiB buffer, and `splice(2)` through a pipe.
#![allow(dead_code, unreachable_pub)]

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use mirror_ring::RingOptions;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{interleave, pin_to, Contender, Outcome, Sample, CONSUMER_CPU, PRODUCER_CPU};

/// The async transports compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsyncKind {
    /// Thread ring, async ends: the publisher wakes the task directly.
    Mirror,
    /// A `SharedRing` with both roles in this process: woken through the helper thread.
    MirrorHelper,
    /// `tokio::net::UnixStream::pair`.
    UnixStream,
    /// `tokio::io::duplex` with a 64 KiB buffer.
    Duplex,
}

impl AsyncKind {
    pub const ALL: [AsyncKind; 4] =
        [AsyncKind::Mirror, AsyncKind::MirrorHelper, AsyncKind::UnixStream, AsyncKind::Duplex];

    pub fn name(self) -> &'static str {
        match self {
            AsyncKind::Mirror => "mirror-ring/async",
            AsyncKind::MirrorHelper => "mirror-ring/async-helper",
            AsyncKind::UnixStream => "tokio UnixStream",
            AsyncKind::Duplex => "tokio duplex",
        }
    }
}

/// The ring's default spin budget (`RingOptions::spin_budget`).
const DEFAULT_SPIN: Duration = Duration::from_micros(50);

type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// One end of a transport before it meets its runtime: a tokio socket must be registered with
/// the reactor of the runtime that polls it, so it travels as a std socket until then.
enum Half<T> {
    Unix(UnixStream),
    Ready(T),
}

impl Half<Writer> {
    /// The writer, on the current runtime.
    fn writer(self) -> io::Result<Writer> {
        match self {
            Half::Ready(w) => Ok(w),
            Half::Unix(s) => {
                s.set_nonblocking(true)?;
                Ok(Box::new(tokio::net::UnixStream::from_std(s)?))
            }
        }
    }
}

impl Half<Reader> {
    /// The reader, on the current runtime.
    fn reader(self) -> io::Result<Reader> {
        match self {
            Half::Ready(r) => Ok(r),
            Half::Unix(s) => {
                s.set_nonblocking(true)?;
                Ok(Box::new(tokio::net::UnixStream::from_std(s)?))
            }
        }
    }
}

/// One direction of a transport: (writer, reader), each to be finished on its runtime.
fn pipe(kind: AsyncKind, cap: usize, spin: Duration) -> io::Result<(Half<Writer>, Half<Reader>)> {
    Ok(match kind {
        AsyncKind::Mirror => {
            let (tx, rx) = RingOptions::new().capacity(cap).spin_budget(spin).build()?;
            (Half::Ready(Box::new(tx.into_async()?)), Half::Ready(Box::new(rx.into_async()?)))
        }
        AsyncKind::MirrorHelper => {
            let ring = RingOptions::new().capacity(cap).spin_budget(spin).shared()?;
            let tx = ring.clone().into_producer()?.into_async()?;
            (Half::Ready(Box::new(tx)), Half::Ready(Box::new(ring.into_consumer()?.into_async()?)))
        }
        AsyncKind::UnixStream => {
            let (a, b) = UnixStream::pair()?;
            (Half::Unix(a), Half::Unix(b))
        }
        AsyncKind::Duplex => {
            let (a, b) = tokio::io::duplex(cap);
            (Half::Ready(Box::new(a)), Half::Ready(Box::new(b)))
        }
    })
}

/// Runs `f` on a current-thread runtime (with I/O and timers) on a thread pinned to `cpu`,
/// with a task that yields in a loop beside it when `busy`.
fn on_runtime<T: Send + 'static>(
    cpu: usize,
    busy: bool,
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<T>>>> + Send + 'static,
) -> std::thread::JoinHandle<io::Result<T>> {
    std::thread::spawn(move || {
        pin_to(cpu);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let stop = std::rc::Rc::new(std::cell::Cell::new(false));
            if busy {
                let s = stop.clone();
                tokio::task::spawn_local(async move {
                    while !s.get() {
                        tokio::task::yield_now().await;
                    }
                });
            }
            let r = f().await;
            stop.set(true);
            r
        })
    })
}

/// Mean round trip of an 8-byte message, in nanoseconds, over `n` round trips after `warm`.
pub fn async_round_trip(kind: AsyncKind, busy: bool, n: u64, warm: u64) -> io::Result<f64> {
    // Parked: the ring ends park at once (no spin phase), as the tokio transports do. Busy:
    // the ring's default spin budget (50 µs of retrying before parking).
    let spin = if busy { DEFAULT_SPIN } else { Duration::ZERO };
    let (ping_w, ping_r) = pipe(kind, 4096, spin)?;
    let (pong_w, pong_r) = pipe(kind, 4096, spin)?;
    let echo = on_runtime(CONSUMER_CPU, busy, move || {
        Box::pin(async move {
            let (mut ping_r, mut pong_w) = (ping_r.reader()?, pong_w.writer()?);
            let mut b = [0u8; 8];
            loop {
                ping_r.read_exact(&mut b).await?;
                if u64::from_ne_bytes(b) == u64::MAX {
                    return Ok(());
                }
                pong_w.write_all(&b).await?;
            }
        })
    });
    let pinger = on_runtime(PRODUCER_CPU, busy, move || {
        Box::pin(async move {
            let (mut ping_w, mut pong_r) = (ping_w.writer()?, pong_r.reader()?);
            let mut b = [0u8; 8];
            let mut t0 = Instant::now();
            for i in 0..warm + n {
                if i == warm {
                    t0 = Instant::now();
                }
                ping_w.write_all(&i.to_ne_bytes()).await?;
                pong_r.read_exact(&mut b).await?;
                if u64::from_ne_bytes(b) != i {
                    return Err(io::Error::other("wrong echo"));
                }
            }
            let t = t0.elapsed();
            ping_w.write_all(&u64::MAX.to_ne_bytes()).await?;
            Ok(t.as_nanos() as f64 / n as f64)
        })
    });
    let r = pinger.join().map_err(|_| io::Error::other("pinger panicked"))?;
    echo.join().map_err(|_| io::Error::other("echo panicked"))??;
    r
}

/// Streams `total` bytes in writes of `write` bytes (reads of the same size) between two
/// runtimes on two pinned threads; GB/s (1e9 bytes per second).
pub fn async_stream(kind: AsyncKind, write: usize, total: u64) -> io::Result<f64> {
    let (w, r) = pipe(kind, 64 << 10, DEFAULT_SPIN)?;
    let start = std::sync::Arc::new(std::sync::Barrier::new(2));
    let s2 = start.clone();
    let consumer = on_runtime(CONSUMER_CPU, false, move || {
        Box::pin(async move {
            let mut r = r.reader()?;
            let mut buf = vec![0u8; write];
            let mut got = 0u64;
            s2.wait();
            while got < total {
                let n = r.read(&mut buf).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                got += n as u64;
            }
            Ok(Instant::now())
        })
    });
    let producer = on_runtime(PRODUCER_CPU, false, move || {
        Box::pin(async move {
            let mut w = w.writer()?;
            let buf = vec![7u8; write];
            start.wait();
            let t0 = Instant::now();
            let mut sent = 0u64;
            while sent < total {
                let n = write.min((total - sent) as usize);
                w.write_all(&buf[..n]).await?;
                sent += n as u64;
            }
            Ok(t0)
        })
    });
    let t0 = producer.join().map_err(|_| io::Error::other("producer panicked"))??;
    let t1 = consumer.join().map_err(|_| io::Error::other("consumer panicked"))??;
    Ok(total as f64 / t1.duration_since(t0).as_secs_f64() / 1e9)
}

/// How the relay moves bytes from one socket to the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayKind {
    /// Source -> ring with `read_from` (one thread), ring -> sink with `write_to` (another).
    Ring,
    /// `std::io::copy` (one thread).
    StdCopy,
    /// A read/write loop through a 64 KiB buffer (one thread).
    Buffer,
    /// `splice(2)` socket -> pipe -> socket (one thread).
    Splice,
}

impl RelayKind {
    pub const ALL: [RelayKind; 4] = [RelayKind::Ring, RelayKind::StdCopy, RelayKind::Buffer, RelayKind::Splice];

    pub fn name(self) -> &'static str {
        match self {
            RelayKind::Ring => "ring: read_from + write_to",
            RelayKind::StdCopy => "std::io::copy",
            RelayKind::Buffer => "read/write, 64 KiB buffer",
            RelayKind::Splice => "splice through a pipe",
        }
    }
}

/// Relays `total` bytes from a source socket to a sink socket; GB/s, from the source's first
/// write to the sink's last read. The source writes 64 KiB at a time, the sink reads 64 KiB.
pub fn relay(kind: RelayKind, total: u64) -> io::Result<f64> {
    let (mut src_w, mut src_r) = UnixStream::pair()?;
    let (mut dst_w, mut dst_r) = UnixStream::pair()?;
    let t0 = Instant::now();
    let source = std::thread::spawn(move || -> io::Result<()> {
        pin_to(PRODUCER_CPU);
        let buf = vec![3u8; 64 << 10];
        let mut sent = 0;
        while sent < total {
            let n = buf.len().min((total - sent) as usize);
            src_w.write_all(&buf[..n])?;
            sent += n as u64;
        }
        Ok(())
    });
    let relay: Vec<std::thread::JoinHandle<io::Result<()>>> = match kind {
        RelayKind::Ring => {
            let (mut tx, mut rx) = RingOptions::new().capacity(1 << 20).build()?;
            vec![
                std::thread::spawn(move || {
                    while tx.read_from(&mut src_r)? > 0 {}
                    Ok(())
                }),
                std::thread::spawn(move || {
                    while rx.write_to(&mut dst_w)? > 0 {}
                    Ok(())
                }),
            ]
        }
        RelayKind::StdCopy => vec![std::thread::spawn(move || io::copy(&mut src_r, &mut dst_w).map(drop))],
        RelayKind::Buffer => vec![std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = src_r.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                dst_w.write_all(&buf[..n])?;
            }
        })],
        RelayKind::Splice => vec![std::thread::spawn(move || splice_relay(&src_r, &dst_w))],
    };
    let sink = std::thread::spawn(move || -> io::Result<Instant> {
        pin_to(CONSUMER_CPU);
        let mut buf = vec![0u8; 64 << 10];
        let mut got = 0u64;
        loop {
            let n = dst_r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        if got != total {
            return Err(io::Error::other(format!("relayed {got} of {total} bytes")));
        }
        Ok(Instant::now())
    });
    source.join().map_err(|_| io::Error::other("source panicked"))??;
    for r in relay {
        r.join().map_err(|_| io::Error::other("relay panicked"))??;
    }
    let t1 = sink.join().map_err(|_| io::Error::other("sink panicked"))??;
    Ok(total as f64 / t1.duration_since(t0).as_secs_f64() / 1e9)
}

/// `splice(src -> pipe)`, `splice(pipe -> dst)` until the source ends; closes `dst`'s write
/// side (by dropping the caller's handle afterwards).
fn splice_relay(src: &UnixStream, dst: &UnixStream) -> io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just created these two descriptors, owned by nobody else.
    let (pr, pw) = unsafe {
        use std::os::fd::FromRawFd;
        (std::os::fd::OwnedFd::from_raw_fd(fds[0]), std::os::fd::OwnedFd::from_raw_fd(fds[1]))
    };
    let splice = |from: i32, to: i32, len: usize| -> io::Result<usize> {
        // SAFETY: plain descriptors, no offsets.
        let r = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, libc::SPLICE_F_MOVE) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    };
    loop {
        let n = splice(src.as_raw_fd(), pw.as_raw_fd(), 1 << 20)?;
        if n == 0 {
            return Ok(());
        }
        let mut left = n;
        while left > 0 {
            left -= splice(pr.as_raw_fd(), dst.as_raw_fd(), left)?;
        }
    }
}

/// What one async contender measures: round trips of one transport (parked or busy),
/// streaming through it at one write size, or one way of relaying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsyncJob {
    RoundTrip(AsyncKind, bool),
    Stream(AsyncKind, usize),
    Relay(RelayKind),
}

/// An async measurement as a contender of the interleaved loop ([`super::interleave`]): each
/// sample is `units` round trips (after a tenth as many to warm up) or bytes. The run-queue
/// delay of the runtimes' threads is not read: no sample counts as disturbed.
pub struct AsyncCase {
    pub job: AsyncJob,
    pub units: u64,
}

impl AsyncCase {
    fn run(&self, units: u64) -> io::Result<Sample> {
        let secs = match self.job {
            AsyncJob::RoundTrip(kind, busy) => async_round_trip(kind, busy, units, (units / 10).max(20))? * 1e-9,
            AsyncJob::Stream(kind, write) => 1.0 / (async_stream(kind, write, units)? * 1e9),
            AsyncJob::Relay(kind) => 1.0 / (relay(kind, units)? * 1e9),
        } * units as f64;
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(io::Error::other(format!("timed {secs} s")));
        }
        Ok(Sample { units, time: Duration::from_secs_f64(secs), preempted: Duration::ZERO })
    }
}

impl Contender for AsyncCase {
    fn name(&self) -> String {
        match self.job {
            AsyncJob::RoundTrip(k, _) | AsyncJob::Stream(k, _) => k.name().to_string(),
            AsyncJob::Relay(k) => k.name().to_string(),
        }
    }

    /// The sample's size is fixed (see [`async_section`]); a short trial says whether the
    /// transport runs here at all.
    fn calibrate(&mut self, _target: Duration) -> io::Result<()> {
        self.run((self.units / 64).max(64)).map(drop)
    }

    fn sample(&mut self) -> io::Result<Sample> {
        self.run(self.units)
    }
}

/// The async section of the comparison, as interleaved measurements: round trips of an 8-byte
/// message with both ends parked and with both busy, streaming at 64 B and 4 KiB writes (each
/// across the four transports of [`AsyncKind`]), and the relays of [`RelayKind`]; each group
/// runs `reps` repetitions, every contender once per repetition in rotated order, between
/// placement probes, so ratios are taken per repetition. The work of the former single samples
/// (20 000 round trips, 128 MiB streamed, 512 MiB relayed; a tenth of that with `quick`) is
/// split across the repetitions, so the section takes about as long whatever `reps` is.
/// Returns (title, outcome) per group.
pub fn async_section(quick: bool, reps: usize, progress: &mut dyn FnMut(&str)) -> Vec<(String, Outcome)> {
    let (rts, bytes, relay_bytes) =
        if quick { (2_000, 8u64 << 20, 32u64 << 20) } else { (20_000, 128 << 20, 512 << 20) };
    let per = |total: u64| (total / reps.max(1) as u64).max(1);
    let mut groups: Vec<(String, Vec<AsyncCase>)> = Vec::new();
    for busy in [false, true] {
        groups.push((
            format!("round trip, 8 B, {}", if busy { "both ends busy" } else { "both ends parked" }),
            AsyncKind::ALL.iter().map(|&k| AsyncCase { job: AsyncJob::RoundTrip(k, busy), units: per(rts) }).collect(),
        ));
    }
    for write in [64usize, 4096] {
        let total = if write == 64 { bytes / 8 } else { bytes };
        groups.push((
            format!("streaming, {} writes", if write == 64 { "64 B" } else { "4 KiB" }),
            AsyncKind::ALL.iter().map(|&k| AsyncCase { job: AsyncJob::Stream(k, write), units: per(total) }).collect(),
        ));
    }
    groups.push((
        "socket-to-socket relay".to_string(),
        RelayKind::ALL.iter().map(|&k| AsyncCase { job: AsyncJob::Relay(k), units: per(relay_bytes) }).collect(),
    ));
    groups
        .into_iter()
        .map(|(title, cases)| {
            let mut cases: Vec<Box<dyn Contender>> =
                cases.into_iter().map(|c| Box::new(c) as Box<dyn Contender>).collect();
            let out = interleave(&mut cases, reps, Duration::ZERO, &mut |step| progress(&format!("{title}: {step}")));
            (title, out)
        })
        .collect()
}
