//! The loom models of `mirror-ring`'s protocol.
//!
//! This folder is compiled by the crate itself, as its own unit tests, under
//! `--cfg mirror_ring_loom` (see `README.md` here): the models call the crate's real cursor,
//! publish, wait, close, poison and claim code, with loom's atomics and a loom-visible futex
//! per waiter word swapped in by `sync.rs`. Nothing public exists for them.
//!
//! Loom cannot model `mmap`, so a model's header lives on the heap (`Header::for_model`) and
//! its data bytes are loom `UnsafeCell`s indexed by `position & (N - 1)` ([`Data`]): loom's
//! causality checker fails a model whenever a producer write and a consumer read of one byte
//! are not ordered by the protocol.

use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::header::{Claim, Claimant, Header, Role, Word, ROLE_TAKING};
use crate::peer::{self, Liveness, Peer, ProcessWatch, Refusal};
use crate::protocol::{self, ConsumerCursor, ProducerCursor, Stop};
use crate::stats::Counters;
use crate::sync::{Ordering, Park};
use crate::wait::{self, NoPeer, PeerCheck, Spin, Waiter};

#[path = "asyncpark.rs"]
mod asyncpark;
#[path = "claims.rs"]
mod claims;
#[path = "close.rs"]
mod close;
#[path = "epoch.rs"]
mod epoch;
#[path = "frames.rs"]
mod frames;
#[path = "kept.rs"]
mod kept;
#[path = "poison.rs"]
mod poison;
#[path = "stream.rs"]
mod stream;
#[path = "takeover.rs"]
mod takeover;
#[path = "wakeup.rs"]
mod wakeup;

/// A ring's shared header on the heap, initialised like a real ring's. Derefs to the
/// [`Header`], so the cursors' methods take `&ring` directly.
#[derive(Debug)]
pub(crate) struct Ring {
    hdr: Box<Header>,
    cap: u64,
}

impl Deref for Ring {
    type Target = Header;
    fn deref(&self) -> &Header {
        &self.hdr
    }
}

impl Ring {
    /// A fresh ring of `capacity` bytes (a power of two; tiny in models) with both cursors at
    /// `start`. Must be called inside `loom::model`.
    pub(crate) fn new(capacity: u64, start: u64) -> Ring {
        // The wake path asks the async registry through a function pointer (so that `sync`
        // does not name the ring module), which an async end's registration installs; install
        // it before anything in this execution can wake, as in a process that has parked an
        // async end before (the first registration racing a wake has a model of its own:
        // `asyncpark.rs`).
        crate::sync::set_direct_wake(crate::ring::asynch::park::direct_wake);
        Ring::before_any_park(capacity, start)
    }

    /// [`new`](Self::new) in a process where no async end has parked yet: the direct-wake
    /// function is not installed until the first registration.
    pub(crate) fn before_any_park(capacity: u64, start: u64) -> Ring {
        Ring { hdr: Header::for_model(capacity, start), cap: capacity }
    }

    /// The real producer cursor, attached to the header's cursors.
    pub(crate) fn producer(&self) -> ProducerCursor {
        ProducerCursor::attach(&self.hdr, self.cap).expect("valid cursors")
    }

    /// The real consumer cursor, attached to the header's cursors.
    pub(crate) fn consumer(&self) -> ConsumerCursor {
        ConsumerCursor::attach(&self.hdr, self.cap).expect("valid cursors")
    }

    /// `protocol::close`, as dropping an end does, with the role's current claim word as the
    /// closer's token (in these models only the closer's thread writes its slot, so this load
    /// adds no ordering an end's own copy of its token would not have).
    pub(crate) fn close(&self, role: Role) {
        protocol::close(&self.hdr, role, self.hdr.claim_word(role));
    }

    /// `wait::wait_for` by the role that sleeps on `word`, with no spin, no deadline and no
    /// peer process: raises the flag, rechecks with `poll`, sleeps on the word's futex.
    pub(crate) fn wait_for<T>(&self, word: Word, poll: impl FnMut() -> Option<Result<T, Stop>>) -> Result<T, Stop> {
        self.wait_watching(word, &mut NoPeer, poll)
    }

    /// `wait::wait_for` as above, watching the peer with `peer`.
    pub(crate) fn wait_watching<T>(
        &self,
        word: Word,
        peer: &mut dyn PeerCheck,
        poll: impl FnMut() -> Option<Result<T, Stop>>,
    ) -> Result<T, Stop> {
        let mut park = Park::Global;
        let counters = Counters::default();
        let waiter = Waiter {
            hdr: &self.hdr,
            role: word.sleeper(),
            park: &mut park,
            spin: &mut Spin::new(Duration::ZERO),
            peer,
            counters: &counters,
            kept: &mut false,
            timed_out_barrier: &mut None,
        };
        wait::wait_for(waiter, None, poll)
    }

    /// What the producer's blocking path does: publish what was advanced, then wait until
    /// `min` bytes are free.
    pub(crate) fn wait_writable(&self, tx: &mut ProducerCursor, min: usize) -> Result<usize, Stop> {
        tx.publish(&self.hdr);
        self.wait_for(Word::Space, || tx.poll_writable(&self.hdr, min))
    }

    /// What the consumer's blocking path does: release what was advanced, then wait until
    /// `min` bytes are readable.
    pub(crate) fn wait_readable(&self, rx: &mut ConsumerCursor, min: usize) -> Result<usize, Stop> {
        rx.publish(&self.hdr);
        self.wait_for(Word::Data, || rx.poll_readable(&self.hdr, min))
    }

    /// The take-over a process `pid` (start time `1000 + pid`) makes of `role`: the real
    /// `peer::take_over`, with the processes in `dead` proven dead and every other one alive
    /// ([`liveness`]).
    pub(crate) fn take_over(&self, role: Role, pid: i32, dead: &'static [i32]) -> Result<Claim, Refusal> {
        peer::take_over(&self.hdr, role, claimant(pid, 1000 + pid as u64), liveness(dead))
    }

    /// `Header::claim` for `pid` (start time `1000 + pid`); the claimant's token.
    pub(crate) fn claim_token(&self, role: Role, pid: i32) -> Claim {
        self.hdr.claim(role, claimant(pid, 1000 + pid as u64)).expect("a free role")
    }

    /// `protocol::close` of the holding `token`, as the holder's drop does; whether it closed.
    pub(crate) fn close_holding(&self, role: Role, token: Claim) -> bool {
        protocol::close(&self.hdr, role, token)
    }

    /// `Header::claim` for `pid`, as a process claiming `role` does.
    pub(crate) fn claim(&self, role: Role, pid: i32, start_time: u64) -> bool {
        self.hdr.claim(role, claimant(pid, start_time)).is_some()
    }

    /// A hostile producer: stores any head (Release, as a publish does) and wakes the consumer
    /// the way a publish does.
    pub(crate) fn hostile_publish_head(&self, head: u64) {
        self.hdr.head.store(head, Ordering::Release);
        protocol::notify(&self.hdr, Word::Data, u32::MAX, &Counters::default());
    }

    /// A hostile consumer: stores any tail and wakes the producer the way a release does.
    pub(crate) fn hostile_publish_tail(&self, tail: u64) {
        self.hdr.tail.store(tail, Ordering::Release);
        protocol::notify(&self.hdr, Word::Space, u32::MAX, &Counters::default());
    }
}

/// The liveness oracle of the take-over models, in place of the pidfd and `/proc` checks
/// (which loom cannot run): the pids in `dead` are dead, every other one lives. It also checks
/// what the watcher read from the slot: a CLAIMED holder always comes with its own start time
/// (`1000 + pid` in these models), a TAKING one with none; anything else is a torn read of
/// the slot.
pub(crate) fn liveness(dead: &'static [i32]) -> impl FnMut(&mut ProcessWatch, Peer) -> Liveness {
    move |_, peer| {
        let consistent = if peer.claim.state() == ROLE_TAKING { 0 } else { 1000 + peer.pid as u64 };
        assert_eq!(peer.start_time, consistent, "pid {} read with another holder's start time", peer.pid);
        if dead.contains(&peer.pid) {
            Liveness::Dead
        } else {
            Liveness::Alive
        }
    }
}

/// The real peer watcher (`ProcessWatch::check_with`, which follows take-overs) with the
/// [`liveness`] oracle, as a waiting end's `PeerCheck`. The real wait asks it once when it
/// starts, then again every watch interval of real time; only the first is modelled (later
/// answers are `false` without touching the ring), so the model does not depend on the clock.
pub(crate) struct ModelWatch {
    watch: ProcessWatch,
    dead: &'static [i32],
    asked: bool,
}

impl ModelWatch {
    /// The watcher of the end playing `role`.
    pub(crate) fn new(role: Role, dead: &'static [i32]) -> ModelWatch {
        ModelWatch { watch: ProcessWatch::new(role), dead, asked: false }
    }

    /// Before each wait: the next `gone` is the wait's first check.
    pub(crate) fn rearm(&mut self) -> &mut Self {
        self.asked = false;
        self
    }

    /// The watcher itself.
    pub(crate) fn watch(&mut self) -> &mut ProcessWatch {
        &mut self.watch
    }
}

impl PeerCheck for ModelWatch {
    fn active(&self) -> bool {
        true
    }

    fn gone(&mut self, hdr: &Header, _counters: &Counters) -> bool {
        if std::mem::replace(&mut self.asked, true) {
            return false;
        }
        self.watch.check_with(hdr, liveness(self.dead)) == Liveness::Dead
    }
}

/// What process `pid` with start time `start_time` records when it claims or takes over a
/// role in a model.
pub(crate) fn claimant(pid: i32, start_time: u64) -> Claimant {
    Claimant { pid, start_time, pid_ns: 0, park: Park::Global }
}

/// The data pages of a model ring: `N` loom-checked cells, addressed by byte position.
#[derive(Debug)]
pub(crate) struct Data {
    cells: Box<[loom::cell::UnsafeCell<u8>]>,
    mask: u64,
}

// SAFETY: the cells are shared between the producer and the consumer thread exactly as the
// ring's pages are; whether every access is ordered is what loom checks (it reports any
// unsynchronised pair of accesses to one cell as a failure of the model).
unsafe impl Sync for Data {}

impl Data {
    /// `capacity` zeroed cells (a power of two).
    pub(crate) fn new(capacity: u64) -> Data {
        assert!(capacity.is_power_of_two());
        Data { cells: (0..capacity).map(|_| loom::cell::UnsafeCell::new(0)).collect(), mask: capacity - 1 }
    }

    /// The producer writes byte position `pos`.
    pub(crate) fn write(&self, pos: u64, v: u8) {
        // SAFETY: loom's cell checks that no access by another thread races with this one.
        self.cells[(pos & self.mask) as usize].with_mut(|p| unsafe { *p = v });
    }

    /// The consumer reads byte position `pos`.
    pub(crate) fn read(&self, pos: u64) -> u8 {
        // SAFETY: as in `write`.
        self.cells[(pos & self.mask) as usize].with(|p| unsafe { *p })
    }
}

/// A producer thread that publishes `n` bytes, `value(0)`, `value(1)`, ..., one commit each: with
/// two, a reader waiting for both may sleep, be woken for one, and sleep again.
pub(crate) fn publish_bytes(
    ring: &loom::sync::Arc<Ring>,
    data: &loom::sync::Arc<Data>,
    n: u64,
) -> loom::thread::JoinHandle<()> {
    let (r, d) = (ring.clone(), data.clone());
    loom::thread::spawn(move || {
        let mut tx = r.producer();
        for k in 0..n {
            d.write(tx.head(), value(k));
            tx.commit(&r, 1);
        }
    })
}

/// The value of the `k`-th byte of a model stream (counting from 0): never 0, so a byte that
/// was never written shows, and distinct within 255 bytes, so a stale or misplaced byte shows.
pub(crate) fn value(k: u64) -> u8 {
    (k % 255) as u8 + 1
}

/// Runs `f` under loom (settings from the `LOOM_*` environment variables, as `loom::model`),
/// and prints how many executions were explored and how long it took.
pub(crate) fn model<F>(name: &str, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let start = Instant::now();
    loom::model::Builder::new().check(move || {
        // Relaxed: a plain counter, read after the model has finished.
        counter.fetch_add(1, StdOrdering::Relaxed);
        f()
    });
    let runs = runs.load(StdOrdering::Relaxed);
    println!("model {name}: {runs} executions in {:.2?}", start.elapsed());
}
