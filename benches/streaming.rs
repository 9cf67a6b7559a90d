//! Streaming throughput, bytes copied in by a producer on CPU 0 and out by a consumer on CPU 1:
//! mirror-ring through `std::io` (blocking, default options) and spinning on each backend,
//! against the split-copy ring (same protocol, no mirror), the minimal mirrored ring (the
//! floor), rtrb, ringbuf, a pipe and a socketpair; between threads and between a parent and its
//! forked child; by write size (1 MiB ring) and by ring size (4 KiB writes); 64-byte records
//! one per call (a parser loop) against rtrb's chunk API; 4 KiB writes through 1 MiB and 4 MiB
//! rings with a watermark reader; huge pages where some are free. Reports read in GB/s or
//! records/s (`Throughput`).
//!
//! `cargo bench --bench streaming -- records` runs one group. For the side-by-side table with
//! per-repetition ratios and the placement, run `cargo run --release --example compare`.

mod support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mirror_ring::Backend;
use support::*;

const WRITES: [usize; 4] = [64, KIB, 4 * KIB, 64 * KIB];
const RING_SIZES: [usize; 9] = [64 * KIB, 128 * KIB, 256 * KIB, 512 * KIB, MIB, 2 * MIB, 4 * MIB, 8 * MIB, 16 * MIB];

const ALL: [Competitor; 11] = [
    Competitor::MirrorIo,
    Competitor::Mirror(Backend::MirrorFlag),
    Competitor::Mirror(Backend::Duplicate),
    Competitor::Mirror(Backend::Memfd),
    Competitor::MirrorBlocking(Backend::Auto, Duration::from_micros(50)),
    Competitor::Split,
    Competitor::Minimal,
    Competitor::Rtrb,
    Competitor::Ringbuf,
    Competitor::Pipe,
    Competitor::Socketpair,
];

/// Bytes per criterion iteration: small writes through the kernel are slow, so smaller blocks
/// there keep the sample count up.
fn block(write: usize) -> u64 {
    if write < KIB {
        (256 * KIB) as u64
    } else {
        (4 * MIB) as u64
    }
}

fn group(c: &mut Criterion, name: &str, mode: Mode, comps: &[Competitor], cells: &[(usize, usize, String)]) {
    let mut g = c.benchmark_group(name);
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for (cap, write, label) in cells {
        let (cap, write) = (*cap, *write);
        let block = block(write);
        g.throughput(Throughput::Bytes(block));
        for &comp in comps.iter().filter(|c| c.supports(mode) && c.available()) {
            g.bench_with_input(BenchmarkId::new(comp.name(), label), &(cap, write), |b, &(cap, write)| {
                b.iter_custom(|iters| {
                    let total = iters * block;
                    let warm = warm_up(cap, write, 2 * total);
                    let run = Run { write, warm, total, verify: false };
                    stream(comp, mode, cap, &run)
                        .unwrap_or_else(|e| panic!("{} ({}): {e}", comp.name(), mode.name()))
                        .time
                })
            });
        }
    }
    g.finish();
}

fn by_write_size(c: &mut Criterion) {
    let cells: Vec<(usize, usize, String)> = WRITES.iter().map(|&w| (MIB, w, fmt_size(w).replace(' ', ""))).collect();
    group(c, "stream/threads/write-size(1MiB-ring)", Mode::Threads, &ALL, &cells);
    group(c, "stream/fork/write-size(1MiB-ring)", Mode::Fork, &ALL, &cells);
}

fn by_ring_size(c: &mut Criterion) {
    let cells: Vec<(usize, usize, String)> =
        RING_SIZES.iter().map(|&r| (r, 4 * KIB, fmt_size(r).replace(' ', ""))).collect();
    group(c, "stream/threads/ring-size(4KiB-writes)", Mode::Threads, &ALL, &cells);
    let fork = [Competitor::Mirror(Backend::Auto), Competitor::Minimal, Competitor::Split, Competitor::Pipe];
    group(c, "stream/fork/ring-size(4KiB-writes)", Mode::Fork, &fork, &cells);
}

fn non_temporal(c: &mut Criterion) {
    let cells: Vec<(usize, usize, String)> = [(MIB, KIB), (MIB, 4 * KIB), (MIB, 64 * KIB), (4 * MIB, 4 * KIB)]
        .iter()
        .map(|&(r, w)| (r, w, format!("{}-ring/{}-writes", fmt_size(r), fmt_size(w)).replace(' ', "")))
        .collect();
    group(c, "stream/threads/non-temporal", Mode::Threads, &[Competitor::Minimal, Competitor::MinimalNt], &cells);
}

/// 64-byte records, one per call on each side, 1 MiB ring (`benches/support/records.rs`).
fn records(c: &mut Criterion) {
    let mut g = c.benchmark_group("records/threads/64B(1MiB-ring)");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    let per_iter = 16 * 1024u64;
    g.throughput(Throughput::Elements(per_iter));
    for q in RecQueue::ALL {
        g.bench_function(BenchmarkId::from_parameter(q.name()), |b| {
            b.iter_custom(|iters| {
                rec_run(q, MIB, rec_warm_up(MIB), iters * per_iter).unwrap_or_else(|e| panic!("{}: {e}", q.name())).time
            })
        });
    }
    g.finish();
}

/// 4 KiB writes through 1 MiB and 4 MiB rings: mirror-ring through `std::io`, with a 64 KiB
/// watermark reader, rtrb and a pipe.
fn bulk(c: &mut Criterion) {
    let comps = BULK_COMPETITORS;
    let cells: Vec<(usize, usize, String)> =
        [MIB, 4 * MIB].iter().map(|&r| (r, 4 * KIB, fmt_size(r).replace(' ', ""))).collect();
    group(c, "stream/threads/bulk(4KiB-writes)", Mode::Threads, &comps, &cells);
}

/// Huge pages against 4 KiB pages, 4 KiB writes, at the ring sizes the free huge pages allow
/// (nothing when none are free).
fn huge_pages(c: &mut Criterion) {
    // Huge pages at the sizes the free pool holds; transparent huge pages wherever the kernel's
    // `shmem_enabled` allows them (`Competitor::available` checks both).
    let free = huge_pages_free();
    let cells: Vec<(usize, usize, String)> = [4 * MIB, 64 * MIB]
        .iter()
        .filter(|&&r| shmem_thp_allowed() || (r / (2 * MIB)) as u64 <= free)
        .map(|&r| (r, 4 * KIB, fmt_size(r).replace(' ', "")))
        .collect();
    if cells.is_empty() {
        eprintln!("stream/threads/huge-pages: no free huge pages and no transparent huge pages, skipped");
        return;
    }
    let huge =
        if cells.iter().all(|&(r, _, _)| (r / (2 * MIB)) as u64 <= free) { &[Competitor::MirrorHuge][..] } else { &[] };
    let comps: Vec<Competitor> = huge.iter().copied().chain([Competitor::MirrorThp, Competitor::MirrorIo]).collect();
    group(c, "stream/threads/huge-pages", Mode::Threads, &comps, &cells);
}

criterion_group!(benches, records, bulk, by_write_size, by_ring_size, huge_pages, non_temporal);
criterion_main!(benches);
