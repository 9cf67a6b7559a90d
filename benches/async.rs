//! The async ends (feature `tokio`) against tokio's `UnixStream` and `tokio::io::duplex`:
//! round trip of an 8-byte message with both ends parked between messages and with both
//! runtimes kept busy, and streaming at 64 B and 4 KiB; and a socket-to-socket relay through
//! the ring with `read_from`/`write_to` against `std::io::copy`, a buffer loop and `splice`.
//! The scenarios live in `support/async_rows.rs`, which the comparison demo prints side by
//! side. Criterion reports time per round trip, and throughput for the streams and relays.

mod support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use support::*;

fn round_trip(c: &mut Criterion) {
    for busy in [false, true] {
        let mut g = c.benchmark_group(if busy { "async-round-trip/busy" } else { "async-round-trip/parked" });
        g.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
        for k in AsyncKind::ALL {
            g.bench_function(BenchmarkId::from_parameter(k.name()), |b| {
                b.iter_custom(|iters| {
                    let ns = async_round_trip(k, busy, iters, iters.min(200))
                        .unwrap_or_else(|e| panic!("{}: {e}", k.name()));
                    Duration::from_nanos((ns * iters as f64) as u64)
                })
            });
        }
        g.finish();
    }
}

fn streaming(c: &mut Criterion) {
    for write in [64usize, 4096] {
        let total: u64 = if write == 64 { 4 << 20 } else { 64 << 20 };
        let mut g = c.benchmark_group(format!("async-stream/{write}B"));
        g.sample_size(10).throughput(Throughput::Bytes(total)).measurement_time(Duration::from_secs(3));
        for k in AsyncKind::ALL {
            g.bench_function(BenchmarkId::from_parameter(k.name()), |b| {
                b.iter_custom(|iters| {
                    let mut t = Duration::ZERO;
                    for _ in 0..iters {
                        let gbps = async_stream(k, write, total).unwrap_or_else(|e| panic!("{}: {e}", k.name()));
                        t += Duration::from_secs_f64(total as f64 / (gbps * 1e9));
                    }
                    t
                })
            });
        }
        g.finish();
    }
}

fn relays(c: &mut Criterion) {
    let total: u64 = 128 << 20;
    let mut g = c.benchmark_group("relay/unix-sockets");
    g.sample_size(10).throughput(Throughput::Bytes(total)).measurement_time(Duration::from_secs(3));
    for k in RelayKind::ALL {
        g.bench_function(BenchmarkId::from_parameter(k.name()), |b| {
            b.iter_custom(|iters| {
                let mut t = Duration::ZERO;
                for _ in 0..iters {
                    let gbps = relay(k, total).unwrap_or_else(|e| panic!("{}: {e}", k.name()));
                    t += Duration::from_secs_f64(total as f64 / (gbps * 1e9));
                }
                t
            })
        });
    }
    g.finish();
}

criterion_group!(benches, round_trip, streaming, relays);
criterion_main!(benches);
