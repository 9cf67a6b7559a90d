//! One message at a time between two pinned threads, with the leanest loops: the sender builds
//! each message and sends it, the receiver checks its counter and reads its last byte where it
//! lies. mirror-ring's framed `send` / `recv` and `try_send` / `try_recv` (spinning on
//! `WouldBlock`), against rtrb's `push` / `pop`, through a queue of the size you give.
//!
//! ```sh
//! cargo run --release --example lean -- 64K 8     # 64 KiB queues, 8-byte messages
//! cargo run --release --example lean -- 1M 64     # 1 MiB queues, 64-byte messages
//! ```
//!
//! Options after the two: `--reps N` (default 4) and `--messages N` (timed per run, default
//! 20 000 000; two laps of the queue, at least 2 000 000 messages, warm up each run untimed).
//!
//! This is the loop shape of the outside harnesses in `BENCHMARKS.md` ("How the receiver uses
//! a message", "Queue size and the receiver's loop"): not the bench's, whose receivers copy
//! each message out or sum it. Between two cores the rate of a one-at-a-time queue depends on
//! which state the two loops settle in (a full queue, or the receiver right behind the sender),
//! and small differences in the loops move it several-fold; the bench and this example land in
//! different states for some sizes. Each run prints the core-to-core round trip before and
//! after (the placement of the moment) beside the rates, and the ratios are per repetition.

#[path = "../benches/support/mod.rs"]
mod support;

use std::hint::{black_box, spin_loop};
use std::io::ErrorKind;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use support::{fmt_size, median, pin_to, probe_round_trip, Summary, CONSUMER_CPU, PRODUCER_CPU};

/// A message of `N` bytes (8 or 64) whose first 8 bytes hold `i`.
#[inline(always)]
fn message<const N: usize>(i: u64) -> [u8; N] {
    let mut m = [0xAB; N];
    m[..8].copy_from_slice(&i.to_le_bytes());
    m
}

/// The counter at the start of a message.
#[inline(always)]
fn counter(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

/// Runs `warm` then `count` messages, the sender calling `send(i)` on the producer's CPU and the
/// receiver `recv(i)` (which checks message `i` and returns something to keep) on the
/// consumer's; returns the receiver's time for the timed part.
fn run<S, R>(warm: u64, count: u64, mut send: S, mut recv: R) -> Duration
where
    S: FnMut(u64) + Send,
    R: FnMut(u64) -> u64 + Send,
{
    let meet = Barrier::new(2);
    std::thread::scope(|s| {
        let meet = &meet;
        s.spawn(move || {
            pin_to(PRODUCER_CPU);
            (0..warm).for_each(&mut send);
            meet.wait();
            (warm..warm + count).for_each(&mut send);
        });
        s.spawn(move || {
            pin_to(CONSUMER_CPU);
            let mut sum = 0u64;
            for i in 0..warm {
                sum = sum.wrapping_add(recv(i));
            }
            meet.wait();
            let t = Instant::now();
            for i in warm..warm + count {
                sum = sum.wrapping_add(recv(i));
            }
            let took = t.elapsed();
            black_box(sum);
            took
        })
        .join()
        .expect("the receiver panicked")
    })
}

/// mirror-ring's framed ends through a `queue`-byte ring: `send` / `recv`, or with `spin`
/// `try_send` / `try_recv` spinning on `WouldBlock`.
fn mirror_ring<const N: usize>(queue: usize, spin: bool, warm: u64, count: u64) -> Duration {
    let (tx, rx) = mirror_ring::channel(queue).expect("a ring");
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    run(
        warm,
        count,
        move |i| {
            let m = message::<N>(i);
            if !spin {
                return tx.send(&m).expect("send");
            }
            loop {
                match tx.try_send(&m) {
                    Ok(()) => return,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => spin_loop(),
                    Err(e) => panic!("try_send: {e}"),
                }
            }
        },
        move |i| loop {
            let got = if spin { rx.try_recv() } else { rx.recv() };
            match got {
                Ok(Some(frame)) => {
                    assert_eq!(frame.len(), N);
                    assert_eq!(counter(&frame), i);
                    return u64::from(frame[N - 1]) + i;
                }
                Ok(None) => panic!("the stream ended early"),
                Err(e) if spin && e.kind() == ErrorKind::WouldBlock => spin_loop(),
                Err(e) => panic!("recv: {e}"),
            }
        },
    )
}

/// rtrb's `push` / `pop` of `[u8; N]` through a queue of `queue` bytes, both spinning.
fn rtrb<const N: usize>(queue: usize, warm: u64, count: u64) -> Duration {
    let (mut tx, mut rx) = rtrb::RingBuffer::<[u8; N]>::new(queue / N);
    run(
        warm,
        count,
        move |i| {
            let mut m = message::<N>(i);
            while let Err(rtrb::PushError::Full(back)) = tx.push(m) {
                m = back;
                spin_loop();
            }
        },
        move |i| loop {
            if let Ok(m) = rx.pop() {
                assert_eq!(counter(&m), i);
                return u64::from(m[N - 1]) + i;
            }
            spin_loop();
        },
    )
}

/// "64K", "1M", "4096": bytes.
fn parse_bytes(s: &str) -> Option<usize> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => s.split_at(at),
        None => (s, ""),
    };
    let n: usize = digits.parse().ok()?;
    let unit = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KIB" => 1 << 10,
        "M" | "MIB" => 1 << 20,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// The smallest and the largest of `xs`.
fn span(xs: &[f64]) -> (f64, f64) {
    xs.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)))
}

fn usage() -> ! {
    eprintln!("usage: lean QUEUE_BYTES (e.g. 64K, 1M) MESSAGE_BYTES (8 or 64) [--reps N] [--messages N]");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let queue = args.first().and_then(|s| parse_bytes(s)).filter(|q| q.is_power_of_two()).unwrap_or_else(|| usage());
    let size: usize =
        args.get(1).and_then(|s| s.parse().ok()).filter(|&n| n == 8 || n == 64).unwrap_or_else(|| usage());
    let option = |name: &str, default: u64| -> u64 {
        match args.iter().position(|a| a == name) {
            Some(at) => args.get(at + 1).and_then(|s| s.parse().ok()).unwrap_or_else(|| usage()),
            None => default,
        }
    };
    let (reps, count) = (option("--reps", 4).max(1) as usize, option("--messages", 20_000_000).max(1));
    let warm = ((2 * queue / size) as u64).max(2_000_000);
    let names = ["mirror-ring send/recv", "mirror-ring try_send/try_recv", "rtrb push/pop"];
    println!("{size}-byte messages through {} queues, {count} per run, {reps} repetitions", fmt_size(queue));
    println!("round trip before: {:.0} ns", probe_round_trip());
    let mut rates = vec![Vec::new(); names.len()];
    for rep in 0..reps {
        let mut line = format!("rep {rep}:");
        // Repetitions come in pairs: the order rotated by one per pair, then reversed, so no
        // contender always runs first or right after the same other one.
        let n = names.len();
        for k in 0..n {
            let which = (if rep % 2 == 1 { n - 1 - k } else { k } + rep / 2) % n;
            let took = match (which, size) {
                (0, 8) => mirror_ring::<8>(queue, false, warm, count),
                (0, _) => mirror_ring::<64>(queue, false, warm, count),
                (1, 8) => mirror_ring::<8>(queue, true, warm, count),
                (1, _) => mirror_ring::<64>(queue, true, warm, count),
                (_, 8) => rtrb::<8>(queue, warm, count),
                (_, _) => rtrb::<64>(queue, warm, count),
            };
            let rate = count as f64 / took.as_secs_f64() / 1e6;
            rates[which].push(rate);
            line += &format!("  {} {rate:.1}", names[which]);
        }
        println!("{line}");
    }
    println!("round trip after: {:.0} ns", probe_round_trip());
    println!("\nM messages/s, median (min-max) of {reps}; ratio against rtrb per repetition:");
    for (k, name) in names.iter().enumerate() {
        let r = &rates[k];
        let (lo, hi) = span(r);
        let mut line = format!("  {name:30} {:7.1} ({lo:.1}-{hi:.1})", median(r));
        if k + 1 < names.len() {
            let ratios: Vec<f64> = r.iter().zip(&rates[2]).map(|(a, b)| a / b).collect();
            if let Some(s) = Summary::of(&ratios) {
                line += &format!("   {}", s.ratio_text());
            }
        }
        println!("{line}");
    }
}
