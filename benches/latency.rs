//! Round trip of one 8-byte message between a pinger on CPU 0 and an echo on CPU 1, between
//! threads and between a parent and its forked child: mirror-ring spinning (`try_*` loops)
//! and blocking (spin budget 0, i.e. straight to the futex, and the default budget), against a
//! pipe, a bare shared-futex ping-pong and a bare atomic ping-pong; and mirror-ring's blocking
//! round trip across spin budgets. Criterion reports the time per round trip.

mod support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use support::*;

fn run(c: &mut Criterion, name: &str, mode: Mode, kinds: &[Pinger]) {
    let mut g = c.benchmark_group(name);
    g.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for &k in kinds {
        g.bench_function(BenchmarkId::from_parameter(k.name()), |b| {
            b.iter_custom(|iters| {
                let per_rt = round_trips(k, mode, 1, iters, iters.min(1000))
                    .unwrap_or_else(|e| panic!("{} ({}): {e}", k.name(), mode.name()))[0];
                Duration::from_nanos((per_rt * iters as f64) as u64)
            })
        });
    }
    g.finish();
}

fn round_trip(c: &mut Criterion) {
    let kinds = [
        Pinger::MirrorSpin,
        Pinger::Atomic,
        Pinger::MirrorBlocking(Duration::ZERO),
        Pinger::MirrorBlocking(Duration::from_micros(50)),
        Pinger::Futex,
        Pinger::Pipe,
    ];
    run(c, "round-trip/threads", Mode::Threads, &kinds);
    run(c, "round-trip/fork", Mode::Fork, &kinds);
}

fn spin_budget(c: &mut Criterion) {
    let kinds: Vec<Pinger> =
        [0u64, 5, 20, 50, 200, 1000].iter().map(|&us| Pinger::MirrorBlocking(Duration::from_micros(us))).collect();
    run(c, "round-trip/threads/spin-budget", Mode::Threads, &kinds);
}

criterion_group!(benches, round_trip, spin_budget);
criterion_main!(benches);
