//! The benchmarks' two-thread driver (`benches/support/pair.rs`) fails a run whose queue loses,
//! repeats or reorders items, and passes an honest one. Before, its check was a wrapping sum
//! of the item numbers, blind to order and to a loss paired with a repeat: a review of the
//! measuring code drove it with such a queue and got a timed sample back.

#![allow(dead_code, unused_imports)]

#[path = "../benches/support/mod.rs"]
mod support;
use support::*;

// The driver again, as a module of its own here: `support` keeps its copy private.
#[allow(clippy::duplicate_mod)]
#[path = "../benches/support/pair.rs"]
mod pair;

use std::io;
use std::sync::mpsc;

/// What the queue does to the items it carries.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Nothing: every item once, in order.
    None,
    /// Swaps every adjacent pair (0, 1, 2, 3 -> 1, 0, 3, 2).
    Swap,
    /// Loses items 3k and 3k + 2 and carries 3k + 1 three times: the same sum.
    LoseAndRepeat,
}

struct Tx(mpsc::SyncSender<u64>, Fault);
struct Rx(mpsc::Receiver<u64>);

impl pair::SeqTx for Tx {
    fn send_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        let mut i = from;
        while i < to {
            let items: Vec<u64> = match self.1 {
                Fault::Swap if i + 1 < to => vec![i + 1, i],
                Fault::LoseAndRepeat if i + 2 < to => vec![i + 1; 3],
                _ => vec![i],
            };
            i += items.len() as u64;
            for v in items {
                self.0.send(v).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
            }
        }
        Ok(())
    }
}

impl pair::SeqRx for Rx {
    /// As the benchmarks' receivers do: the sum of the numbers, each seen by `InOrder`.
    fn recv_n(&mut self, from: u64, n: u64) -> io::Result<u64> {
        let mut order = pair::InOrder::new(from);
        let mut sum = 0u64;
        for _ in 0..n {
            let v = self.0.recv().map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            sum = sum.wrapping_add(order.see(v));
        }
        order.check("items")?;
        Ok(sum)
    }
}

fn run(fault: Fault) -> io::Result<Sample> {
    let (tx, rx) = mpsc::sync_channel(1 << 16);
    // Warm-up and timed part multiples of 6: every pair and triple stays inside one part.
    pair::drive(Tx(tx, fault), Rx(rx), 6_000, 60_000, "items")
}

#[test]
fn the_driver_fails_a_queue_that_reorders_or_loses_and_repeats_and_passes_an_honest_one() {
    assert_eq!(run(Fault::None).map(|s| s.units).map_err(|e| e.to_string()), Ok(60_000));
    for fault in [Fault::Swap, Fault::LoseAndRepeat] {
        let r = run(fault);
        assert_eq!(r.as_ref().map(|_| ()).map_err(|e| e.kind()), Err(io::ErrorKind::InvalidData), "{fault:?}: {r:?}");
    }
}
