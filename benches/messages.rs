//! Messages per second between two pinned threads (producer on CPU 0, consumer on CPU 1):
//! mirror-ring framed messages against rtrb, like with like, and crossbeam's `ArrayQueue` for
//! reference.
//!
//! - One at a time: mirror-ring `try_send` / `try_recv` (a stamped frame per message; the
//!   consumer stores its cursor every 64 KiB) against rtrb `push` / `pop`.
//! - Batched: mirror-ring `try_send_batch` of 128 + `try_recv_batch` against rtrb
//!   `write_chunk_uninit(128)` + `read_chunk` (everything readable).
//! - One at a time, blocking: mirror-ring `send` / `recv` (the crate's own spin, and its slip
//!   after a run of frames) against the same rtrb `push` / `pop`.
//! - 8-byte messages (rtrb `u64`) and 64-byte messages (rtrb `[u8; 64]`); 1 MiB of queue each.
//!
//! The queues, the work each side does and the timing are in `benches/support/messages.rs`.
//!
//! Two measurements:
//!
//! 1. criterion groups `messages_8B` and `messages_64B` (one case after another, ~4 s each),
//!    for criterion's reports and history. The host can move the two vCPUs between cases, so do
//!    not take ratios between these.
//! 2. Then the interleaved comparison, which is where the ratios come from: 7 repetitions,
//!    each running every case once in rotated order between two probes of the core-to-core
//!    round trip; ratios are per repetition, reported per placement, repetitions whose
//!    placement moved left out (`benches/support/interleave.rs`). The comparison demo
//!    (`cargo run --release --example compare`) prints the same table.
//!
//! `cargo bench --bench messages` runs both; `cargo bench --bench messages -- interleaved`
//! only the second; `-- regime`, `-- minimal`, `-- read` and `-- sizes` one comparison of their
//! own (which side sets the pace; the hand-written floor; the receiver copying each message
//! out, as every other table has it, against reading it in place; queues of 64 KiB to 4 MiB,
//! with the receiver blocking or spinning); any other filter only criterion's
//! matching cases. Every receiver here copies each message out unless `-- read` says otherwise:
//! rtrb's `push`/`pop` can be three to four times faster when its receiver only reads the
//! message where it lies (BENCHMARKS.md, "How the receiver uses a message"). Under `cargo
//! test` (criterion's test mode) every case runs once and the interleaved table and the
//! queue-size comparison once, small.

mod support;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use support::*;

const SIZES: [usize; 2] = [8, 64];
/// Messages per cursor store in the batched cases, on both sides of the comparison.
const BATCH: usize = 128;

fn criterion_groups(c: &mut Criterion) {
    for &size in &SIZES {
        let mut g = c.benchmark_group(format!("messages_{size}B"));
        g.throughput(Throughput::Elements(1));
        for case in msg_contenders(&[size], BATCH) {
            let q = case.queue;
            g.bench_function(BenchmarkId::from_parameter(q.id()), |b| {
                b.iter_custom(|iters| {
                    msg_run(q, size, msg_warm_up(size), iters)
                        .unwrap_or_else(|e| panic!("{} ({size} B): {e}", q.name()))
                        .time
                })
            });
        }
        g.finish();
    }
}

/// `profile QUEUE SIZE OPS`: `ops` messages through one queue in one thread
/// (`msg_single_thread`). QUEUE: `framed`, `framed_blocking`, `framed_in_place`, `framed_in_place_blocking`, `framed_in_place_batch`, `framed_batch`, `framed_send_batch`, `rtrb_push_pop`, `rtrb_chunks`,
/// `arrayqueue`, `minimal` (the batched ones in batches of [`BATCH`]).
fn profile(args: &[String]) {
    let usage =
        "usage: messages profile framed|framed_blocking|framed_in_place|framed_in_place_blocking|framed_in_place_batch|framed_batch|framed_send_batch|rtrb_push_pop|rtrb_chunks|arrayqueue|minimal SIZE OPS";
    let queue = match args.first().map(String::as_str) {
        Some("framed") => MsgQueue::Framed,
        Some("framed_blocking") => MsgQueue::FramedBlocking,
        Some("framed_in_place") => MsgQueue::FramedInPlace,
        Some("framed_in_place_blocking") => MsgQueue::FramedInPlaceBlocking,
        Some("framed_in_place_batch") => MsgQueue::FramedInPlaceBatched(BATCH),
        Some("framed_batch") => MsgQueue::FramedBatched(BATCH),
        Some("framed_send_batch") => MsgQueue::FramedSendBatch(BATCH),
        Some("rtrb_push_pop") => MsgQueue::RtrbPushPop,
        Some("rtrb_chunks") => MsgQueue::RtrbChunks(BATCH),
        Some("arrayqueue") => MsgQueue::ArrayQueue,
        Some("minimal") => MsgQueue::Minimal,
        _ => panic!("{usage}"),
    };
    let size: usize = args.get(1).and_then(|s| s.parse().ok()).expect(usage);
    let ops: u64 = args.get(2).and_then(|s| s.parse().ok()).expect(usage);
    match msg_single_thread(queue, size, ops) {
        Ok(d) => {
            println!("{}: {ops} x {size} B in {d:?} ({:.2} ns each)", queue.name(), d.as_nanos() as f64 / ops as f64)
        }
        Err(e) => panic!("{}: {e}", queue.name()),
    }
}

/// Every case of `out` must have produced a rate (a failure is a bug in a queue or the harness).
fn assert_every_case_rated(out: &Outcome) {
    let missing: Vec<&String> =
        out.names.iter().enumerate().filter(|&(i, _)| out.all_rates(i).is_empty()).map(|(_, n)| n).collect();
    assert!(missing.is_empty(), "no rate for {missing:?}: {:?}", out.notes);
}

/// The hand-written minimal stamped-frame queue against mirror-ring and rtrb, interleaved, per
/// size (`cargo bench --bench messages -- minimal`).
fn minimal((reps, target): (usize, Duration)) {
    for &size in &SIZES {
        let out = msg_minimal_section(size, BATCH, reps, target, &mut |_| {});
        println!("\n## Minimal stamped frames, {size} B messages, interleaved ({reps} repetitions)\n");
        print_msg_minimal_section(&out, size);
        assert_every_case_rated(&out);
    }
}

/// Busy steps per message on the slower side in the regime comparison: about 12 ns on the Xeon
/// host (`busy` in `support/messages.rs`, timed alone), enough to make that side the slower one
/// at 64 B in both the bench and the demo builds (12 steps, 2-5 ns, was not in the demo's).
const REGIME_STEPS: u32 = 24;

/// mirror-ring, the minimal stamped queue and rtrb with no work per message, with `steps` busy
/// steps per message on the sending side and on the receiving side, 64 B messages
/// (`cargo bench --bench messages -- regime [STEPS]`).
fn regime(steps: u32, (reps, target): (usize, Duration)) {
    let out = msg_regime_section(64, steps, reps, target, &mut |_| {});
    println!("\n## Which side sets the pace, 64 B messages, {steps} busy steps per message, interleaved ({reps} repetitions)\n");
    print_msg_regime_section(&out);
    assert_every_case_rated(&out);
}

/// mirror-ring (`try_*` and blocking) and rtrb `push` / `pop`, the receiver copying each message
/// out, then reading it in place, 8 and 64 B (`cargo bench --bench messages -- read`).
fn read((reps, target): (usize, Duration)) {
    let out = msg_read_section(&SIZES, reps, target, &mut |_| {});
    println!(
        "\n## How the receiver uses each message: copied out or read in place, interleaved ({reps} repetitions)\n"
    );
    print_msg_read_section(&out, &SIZES);
    assert_every_case_rated(&out);
}

/// The queue sizes of the queue-size comparison.
const QUEUE_SIZES: [usize; 4] = [64 * KIB, 256 * KIB, MIB, 4 * MIB];

/// mirror-ring blocking and spinning, the minimal stamped queue and rtrb at each of
/// [`QUEUE_SIZES`], 8 and 64 B, the receivers copying each message out, then reading it in
/// place (`cargo bench --bench messages -- sizes`).
fn sizes((reps, target): (usize, Duration)) {
    for (in_place, reading) in [(false, "copied out"), (true, "read in place")] {
        for &size in &SIZES {
            let out = msg_queue_size_section(size, &QUEUE_SIZES, in_place, reps, target, &mut |_| {});
            println!(
                "\n## Queue size and how the receiver waits, {size} B messages {reading}, interleaved ({reps} repetitions)\n"
            );
            print_msg_queue_size_section(&out);
            assert_every_case_rated(&out);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "profile") {
        // profile QUEUE SIZE OPS: one single-thread loop, nothing else, for
        // `valgrind --tool=callgrind` (instructions per message).
        profile(&args[at + 1..]);
        return;
    }
    let test_mode = !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test");
    let listing = args.iter().any(|a| a == "--list");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let only_interleaved = filters.iter().any(|f| f.as_str() == "interleaved");
    if let Some(at) = filters.iter().position(|f| f.as_str() == "regime") {
        // `regime [STEPS]`: which side sets the pace (busy work per message on one side).
        let steps = filters.get(at + 1).and_then(|s| s.parse().ok()).unwrap_or(REGIME_STEPS);
        regime(steps, if test_mode { (1, Duration::from_millis(1)) } else { (7, Duration::from_millis(10)) });
        return;
    }
    if filters.iter().any(|f| f.as_str() == "read") {
        // `read`: the receiver copying each message out against reading it in place.
        read(if test_mode { (1, Duration::from_millis(1)) } else { (7, Duration::from_millis(10)) });
        return;
    }
    if filters.iter().any(|f| f.as_str() == "sizes") {
        // `sizes`: the queue's size and how the receiver waits.
        sizes(if test_mode { (1, Duration::from_millis(1)) } else { (7, Duration::from_millis(10)) });
        return;
    }
    if filters.iter().any(|f| f.as_str() == "minimal") {
        // `minimal`: only the floor comparison (the hand-written stamped-frame queue).
        minimal(if test_mode { (1, Duration::from_millis(1)) } else { (7, Duration::from_millis(10)) });
        return;
    }

    if !only_interleaved {
        let mut c = Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sample_size(20)
            .configure_from_args();
        criterion_groups(&mut c);
        c.final_summary();
    }

    if listing || !(filters.is_empty() || only_interleaved) {
        return;
    }
    let (reps, target) = if test_mode { (1, Duration::from_millis(1)) } else { (7, Duration::from_millis(10)) };
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let out = msg_section(&SIZES, BATCH, reps, target, &mut |step| {
        if tty {
            eprint!("\r\x1b[Kinterleaved: {step}");
        }
    });
    if tty {
        eprint!("\r\x1b[K");
    }
    println!("\n## Messages, interleaved ({reps} repetitions of ~{} ms per case)\n", target.as_millis());
    print_msg_section(&out, &SIZES, BATCH);
    // Where batching still pays now that one frame at a time loads no cursor per message.
    let mut batching = Vec::new();
    for &size in &SIZES {
        let b = msg_batching_section(size, BATCH, reps, target, &mut |step| {
            if tty {
                eprint!("\r\x1b[Kbatching, {size} B: {step}");
            }
        });
        if tty {
            eprint!("\r\x1b[K");
        }
        println!("\n## Batching, {size} B messages, interleaved ({reps} repetitions)\n");
        print_msg_batching_section(&b, size);
        batching.push(b);
    }
    if test_mode {
        // Every case must have produced a number (a failure is a bug in a queue or the harness).
        assert_every_case_rated(&out);
        for b in &batching {
            assert_every_case_rated(b);
        }
        // The queue-size comparison too (the demo runs the other comparisons).
        sizes((reps, target));
    }
}
