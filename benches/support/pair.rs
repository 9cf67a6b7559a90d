//! Two pinned threads passing sequence-numbered items through a queue, for the message and the
//! record comparisons: the sides' traits, the barrier between the warm-up and the timed part,
//! and the driver that times one run and checks that every item arrived once, in order.

use std::hint::spin_loop;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::*;

/// The sending side: sends items `from .. to` (each carrying its number).
pub(super) trait SeqTx {
    fn send_range(&mut self, from: u64, to: u64) -> io::Result<()>;
}

/// The receiving side: receives `n` items, which must be numbered `from ..`, in order, and
/// returns the wrapping sum of their numbers (`InOrder` checks the order).
pub(super) trait SeqRx {
    fn recv_n(&mut self, from: u64, n: u64) -> io::Result<u64>;
}

/// A receiver's check that the items arrive once each and in order: each number it sees is
/// compared with the next one expected (an xor and an or per item, the same for every queue;
/// the answer is given once, at the end). A sum alone did not see order, and a loss paired
/// with a repeat could leave it unchanged (found by a review of the measuring code).
pub(super) struct InOrder {
    next: u64,
    bad: u64,
}

impl InOrder {
    pub(super) fn new(from: u64) -> InOrder {
        InOrder { next: from, bad: 0 }
    }

    /// Takes item number `v` (and hands it back).
    #[inline(always)]
    pub(super) fn see(&mut self, v: u64) -> u64 {
        self.bad |= v ^ self.next;
        self.next = self.next.wrapping_add(1);
        v
    }

    /// `InvalidData` if any item was not the one expected.
    pub(super) fn check(&self, items: &str) -> io::Result<()> {
        if self.bad != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{items} arrived out of order, lost or repeated"),
            ));
        }
        Ok(())
    }
}

/// The wrapping sum of `from .. to`: what the consumer's checksum must come to.
pub(super) fn expected_sum(from: u64, to: u64) -> u64 {
    (from..to).fold(0u64, |a, i| a.wrapping_add(i))
}

/// A two-party spinning barrier either side can call off: a side that failed aborts it instead
/// of leaving the other spinning at it for ever.
#[derive(Default)]
struct Meet {
    arrived: CachePadded<AtomicU32>,
    aborted: CachePadded<AtomicU32>,
}

impl Meet {
    /// Waits for the other side; false if it called the meeting off.
    fn meet(&self) -> bool {
        // AcqRel: each side's warm-up happens before the other leaves the barrier.
        self.arrived.fetch_add(1, Ordering::AcqRel);
        while self.arrived.load(Ordering::Acquire) < 2 {
            // Acquire: pairs with the Release store in abort.
            if self.aborted.load(Ordering::Acquire) != 0 {
                return false;
            }
            spin_loop();
        }
        true
    }

    fn abort(&self) {
        // Release: pairs with the Acquire load in meet.
        self.aborted.store(1, Ordering::Release);
    }
}

/// What a side reports when the other called the meeting off.
const CALLED_OFF: &str = "the other side failed before the timed part";

/// Runs `warm` items untimed, then `count` timed, from this thread (pinned to the producer CPU)
/// to a consumer thread on the consumer CPU. `items` names them in errors ("messages").
pub(super) fn drive<T: SeqTx + Send, R: SeqRx + Send>(
    tx: T,
    rx: R,
    warm: u64,
    count: u64,
    items: &str,
) -> io::Result<Sample> {
    let meet = Meet::default();
    let meet = &meet;
    let called_off = || io::Error::other(CALLED_OFF);
    pin_to(PRODUCER_CPU);
    std::thread::scope(|s| {
        let consumer = s.spawn(move || -> io::Result<(u64, u64, u64, u64)> {
            pin_to(CONSUMER_CPU);
            // On this thread's stack, on lines of its own (see stream_threads). On a failure
            // the end is dropped on the way out, which closes a mirror-ring and so stops its
            // producer (the other queues' producers cannot fail).
            let mut rx = Isolated(rx);
            let rx = &mut rx.0;
            let warm_sum = rx.recv_n(0, warm).inspect_err(|_| meet.abort())?;
            let sw = run_delay_ns();
            if !meet.meet() {
                return Err(called_off());
            }
            let sum = rx.recv_n(warm, count)?;
            let t1 = now_ns();
            Ok((t1, warm_sum, sum, run_delay_ns() - sw))
        });
        let mut tx = Isolated(tx);
        let sent = (|| {
            tx.0.send_range(0, warm).inspect_err(|_| meet.abort())?;
            let sw = run_delay_ns();
            if !meet.meet() {
                return Err(called_off());
            }
            let t0 = now_ns();
            tx.0.send_range(warm, warm + count)?;
            Ok::<(u64, u64), io::Error>((t0, run_delay_ns() - sw))
        })();
        // Dropping the sending end closes a mirror-ring: a consumer still waiting for items a
        // failed producer will never send sees the end of the stream instead of spinning.
        drop(tx);
        let received = consumer.join().map_err(|_| io::Error::other(format!("the consumer of {items} panicked")))?;
        // A side that fails calls the meeting off, and the other then fails with CALLED_OFF:
        // report the failure itself (a consumer's failed check, say), not that.
        let ((t0, sw0), (t1, warm_sum, sum, sw1)) = match (sent, received) {
            (Ok(s), Ok(r)) => (s, r),
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => return Err(e),
            (Err(s), Err(r)) => return Err(if s.to_string() == CALLED_OFF { r } else { s }),
        };
        if warm_sum != expected_sum(0, warm) || sum != expected_sum(warm, warm + count) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{items} were lost, reordered or corrupted"),
            ));
        }
        Ok(Sample {
            units: count,
            time: Duration::from_nanos(t1.saturating_sub(t0)),
            preempted: Duration::from_nanos(sw0 + sw1),
        })
    })
}
