//! Creating a ring (`RingOptions::build`: reserve, map, mirror, optional prefault, header) per
//! backend, at 64 KiB, 1 MiB, 64 MiB and 1 GiB, with and without prefault. Only creation is
//! timed; the drop (one munmap) is not.

mod support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use mirror_ring::Backend;
use support::*;

fn creation(c: &mut Criterion) {
    let backends = [Backend::Auto, Backend::MirrorFlag, Backend::Duplicate, Backend::Memfd];
    for prefault in [false, true] {
        let name = if prefault { "create/prefault" } else { "create" };
        let mut g = c.benchmark_group(name);
        g.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(Duration::from_millis(300));
        for size in [64 * KIB, MIB, 64 * MIB, GIB] {
            g.measurement_time(Duration::from_secs(if prefault && size >= 64 * MIB { 8 } else { 2 }));
            for b in backends.iter().copied().filter(|b| b.is_available()) {
                g.bench_with_input(
                    BenchmarkId::new(b.name(), fmt_size(size).replace(' ', "")),
                    &size,
                    |bench, &size| {
                        bench.iter_custom(|iters| {
                            (0..iters).map(|_| create_ring(b, size, prefault).expect("create ring")).sum::<Duration>()
                        })
                    },
                );
            }
        }
        g.finish();
    }
}

criterion_group!(benches, creation);
criterion_main!(benches);
