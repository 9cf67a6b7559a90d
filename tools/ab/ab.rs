//! Build against build: two builds of mirror-ring linked into one program (`base` and `work`,
//! set up by `ab.sh`), run alternately in pairs, pinned to CPUs 0 and 1. Prints each build's
//! median rate and the median of the per-pair ratios work/base (with their range), beside the
//! atomic round trip between the two CPUs measured before every pair. Run two copies of one
//! build (`ab.sh HEAD HEAD ...`) to see what the harness itself reports as a difference.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Pins this thread to `cpu`, or says on stderr that it could not (a cpuset without that CPU):
/// the two sides may then share one CPU, and the result line cannot be read as pinned.
fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity on it and
    // this thread are plain libc calls.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if r != 0 {
        eprintln!("WARNING: cannot pin to CPU {cpu} ({}): this run is not pinned", std::io::Error::last_os_error());
    }
}

/// One sample of a mode: `size` and `amount` (messages or bytes) in, a rate out.
type Run = fn(usize, u64) -> f64;

/// Framed `try_send` / `try_recv` of `n` messages of `size` bytes through a 1 MiB ring, in M
/// messages/s.
macro_rules! framed {
    ($name:ident, $krate:ident) => {
        fn $name(size: usize, n: u64) -> f64 {
            let (tx, rx) = $krate::channel(1 << 20).unwrap();
            let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
            let start = Arc::new(Barrier::new(2));
            let go = start.clone();
            let consumer = std::thread::spawn(move || {
                pin(1);
                go.wait();
                let (mut got, mut sum) = (0u64, 0u64);
                while got < n {
                    match rx.try_recv() {
                        Ok(Some(f)) => {
                            sum = sum.wrapping_add(u64::from(f[0]));
                            got += 1;
                        }
                        Ok(None) => panic!("the producer closed early"),
                        Err(_) => std::hint::spin_loop(),
                    }
                }
                sum
            });
            pin(0);
            let msg = vec![7u8; size];
            start.wait();
            let t = Instant::now();
            let mut sent = 0u64;
            while sent < n {
                if tx.try_send(std::hint::black_box(&msg[..])).is_ok() {
                    sent += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
            std::hint::black_box(consumer.join().unwrap());
            n as f64 / t.elapsed().as_secs_f64() / 1e6
        }
    };
}

/// Blocking `write_all` / `read_exact` of `total` bytes in `size`-byte calls through a 64 KiB
/// ring, in GB/s.
macro_rules! bytes {
    ($name:ident, $krate:ident) => {
        fn $name(size: usize, total: u64) -> f64 {
            use std::io::{Read, Write};
            let (mut tx, mut rx) = $krate::RingOptions::new().capacity(64 << 10).build().unwrap();
            let total = total - total % size as u64;
            let consumer = std::thread::spawn(move || {
                pin(1);
                let mut buf = vec![0u8; size];
                let mut got = 0u64;
                while got < total {
                    rx.read_exact(&mut buf).unwrap();
                    got += size as u64;
                }
            });
            pin(0);
            let buf = vec![7u8; size];
            let t = Instant::now();
            let mut sent = 0u64;
            while sent < total {
                tx.write_all(&buf).unwrap();
                sent += size as u64;
            }
            consumer.join().unwrap();
            total as f64 / t.elapsed().as_secs_f64() / 1e9
        }
    };
}

/// Async `write_all` / `read` of `total` bytes in `size`-byte calls through a 64 KiB ring, a
/// current-thread runtime on each side, in GB/s. `$shared`: a ring between processes' ends
/// (woken through the helper thread) rather than a thread ring.
macro_rules! asynch {
    ($name:ident, $krate:ident, $shared:expr) => {
        fn $name(size: usize, total: u64) -> f64 {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (tx, rx) = if $shared {
                let ring = $krate::RingOptions::new().capacity(64 << 10).shared().unwrap();
                (ring.clone().into_producer().unwrap(), ring.into_consumer().unwrap())
            } else {
                $krate::RingOptions::new().capacity(64 << 10).build().unwrap()
            };
            let total = total - total % size as u64;
            let runtime = || tokio::runtime::Builder::new_current_thread().build().unwrap();
            let consumer = std::thread::spawn(move || {
                pin(1);
                runtime().block_on(async move {
                    let mut r = rx.into_async().unwrap();
                    let mut buf = vec![0u8; size];
                    let mut got = 0u64;
                    while got < total {
                        let n = r.read(&mut buf).await.unwrap();
                        assert!(n > 0, "the producer closed early");
                        got += n as u64;
                    }
                })
            });
            pin(0);
            let t = runtime().block_on(async move {
                let mut w = tx.into_async().unwrap();
                let buf = vec![7u8; size];
                let t = Instant::now();
                let mut sent = 0u64;
                while sent < total {
                    w.write_all(&buf).await.unwrap();
                    sent += size as u64;
                }
                t
            });
            consumer.join().unwrap();
            total as f64 / t.elapsed().as_secs_f64() / 1e9
        }
    };
}

framed!(framed_base, base);
framed!(framed_work, work);
bytes!(bytes_base, base);
bytes!(bytes_work, work);
asynch!(async_base, base, false);
asynch!(async_work, work, false);
asynch!(async_shared_base, base, true);
asynch!(async_shared_work, work, true);

/// The median of an atomic ping-pong between CPUs 0 and 1, in ns per round trip.
fn round_trip() -> f64 {
    const N: u64 = 20_000;
    let word = Arc::new(AtomicU64::new(0));
    let other = word.clone();
    let echo = std::thread::spawn(move || {
        pin(1);
        for i in 0..N {
            // Acquire/Release: the two threads hand the word back and forth; nothing else is
            // published.
            while other.load(Ordering::Acquire) != 2 * i + 1 {
                std::hint::spin_loop();
            }
            other.store(2 * i + 2, Ordering::Release);
        }
    });
    pin(0);
    std::thread::sleep(Duration::from_millis(1));
    let t = Instant::now();
    for i in 0..N {
        word.store(2 * i + 1, Ordering::Release);
        while word.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
    }
    echo.join().unwrap();
    t.elapsed().as_nanos() as f64 / N as f64
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn usage() -> ! {
    eprintln!(
        "usage: ab MODE SIZE PAIRS [AMOUNT]\n  \
         MODE: framed (AMOUNT messages, default 5000000), bytes, async, async-shared (AMOUNT \
         bytes, default 268435456)"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, size, pairs, rest @ ..] = &args[..] else { usage() };
    let size: usize = size.parse().unwrap_or_else(|_| usage());
    let pairs: usize = pairs.parse().unwrap_or_else(|_| usage());
    let (runs, unit, default): ((Run, Run), &str, u64) = match mode.as_str() {
        "framed" => ((framed_base, framed_work), "M msg/s", 5_000_000),
        "bytes" => ((bytes_base, bytes_work), "GB/s", 1 << 28),
        "async" => ((async_base, async_work), "GB/s", 1 << 28),
        "async-shared" => ((async_shared_base, async_shared_work), "GB/s", 1 << 28),
        _ => usage(),
    };
    let amount: u64 = rest.first().map_or(Some(default), |a| a.parse().ok()).unwrap_or_else(|| usage());
    if size == 0 || pairs == 0 || amount < size as u64 {
        usage();
    }
    let (mut base, mut work, mut ratio, mut rtt) = (vec![], vec![], vec![], vec![]);
    for i in 0..pairs {
        rtt.push(round_trip());
        // Alternate which build goes first.
        let (b, w) = if i % 2 == 0 {
            let b = runs.0(size, amount);
            (b, runs.1(size, amount))
        } else {
            let w = runs.1(size, amount);
            (runs.0(size, amount), w)
        };
        base.push(b);
        work.push(w);
        ratio.push(w / b);
    }
    let lo = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "{mode} {size} B, {pairs} pairs: base {:.2} {unit}, work {:.2} {unit}; work/base median {:.3} ({:.3}-{:.3}); \
         round trip CPU 0 <-> 1 {:.0}-{:.0} ns",
        median(&base),
        median(&work),
        median(&ratio),
        lo(&ratio),
        hi(&ratio),
        lo(&rtt),
        hi(&rtt)
    );
}
