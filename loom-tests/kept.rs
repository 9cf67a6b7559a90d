//! The waiter flag kept raised across calls (`wait::Waiter::kept`): a wait that ends on its
//! deadline leaves its flag raised after a heavy barrier, and the end's next wait, finding it
//! still raised (`swap(1)` returns 1), parks without paying a barrier again. The only park that
//! pays none; the other models pass `kept: &mut false`. (Written by the orderings review of
//! 2026-12-03, which also checked that with the previous wait's barrier removed loom reports
//! the lost wake-up, as a deadlock.)

use super::{model, publish_bytes, value, Data, Ring};
use crate::header::Word;
use crate::protocol::Stop;
use crate::stats::Counters;
use crate::sync::{park_barrier, Ordering, Park};
use crate::wait::{self, NoPeer, Spin, Waiter};
use loom::sync::Arc;
use std::time::Duration;

const N: u64 = 4;

/// Executions that never parked / parked on the kept flag without a barrier / paid a barrier.
static SEEN: [std::sync::atomic::AtomicUsize; 3] = [const { std::sync::atomic::AtomicUsize::new(0) }; 3];

/// `wait::wait_for` by the consumer with `kept` as given (the previous wait's hand-over).
fn wait_kept<T>(
    ring: &Ring,
    kept: &mut bool,
    counters: &Counters,
    poll: impl FnMut() -> Option<Result<T, Stop>>,
) -> Result<T, Stop> {
    let mut park = Park::Global;
    let waiter = Waiter {
        hdr: ring,
        role: Word::Data.sleeper(),
        park: &mut park,
        spin: &mut Spin::new(Duration::ZERO),
        peer: &mut NoPeer,
        counters,
        kept,
        timed_out_barrier: &mut None,
    };
    wait::wait_for(waiter, None, poll)
}

/// The consumer's previous wait ended on its deadline with the flag raised after its barrier
/// (raised and paid here, racing the producer's first publish); the next wait, told the flag
/// was kept, waits for two bytes published one at a time. The first publish may clear the
/// kept flag before the wait raises it again (then `was == 0` and the wait pays the barrier)
/// or after (then the publish must wake it). Loom reports a lost wake-up as a deadlock.
#[test]
fn a_kept_flag_parks_without_a_barrier_and_loses_no_wake_up() {
    model("a_kept_flag_parks_without_a_barrier_and_loses_no_wake_up", || {
        let ring = Arc::new(Ring::new(N, 0));
        let data = Arc::new(Data::new(N));
        let producer = publish_bytes(&ring, &data, 2);
        let mut rx = ring.consumer();
        // The previous wait: flag raised (Relaxed, as in `wait_for`), then its heavy half.
        ring.word(Word::Data).swap(1, Ordering::Relaxed);
        assert!(park_barrier(Park::Global));
        let mut kept = true;
        let counters = Counters::default();
        let n = wait_kept(&ring, &mut kept, &counters, || rx.poll_readable(&ring, 2)).expect("two bytes come");
        // Which way the wait went, across executions: both must be explored.
        let s = counters.snapshot();
        let slot = match (s.parks > 0, s.barriers) {
            (false, _) => 0,
            (true, 0) => 1,
            (true, _) => 2,
        };
        SEEN[slot].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(n, 2);
        assert_eq!([data.read(0), data.read(1)], [value(0), value(1)]);
        producer.join().unwrap();
    });
    let seen: Vec<usize> = SEEN.iter().map(|c| c.load(std::sync::atomic::Ordering::Relaxed)).collect();
    eprintln!("kept model: no park {}, park without barrier {}, park with barrier {}", seen[0], seen[1], seen[2]);
    assert!(seen[1] > 0, "the kept path (no barrier) was never taken");
}
