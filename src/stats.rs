//! Per-end counters of the slow paths: spinning, parking, waking.
//!
//! Each end counts, in its own process-local memory (never in the shared header), what its
//! blocking calls did. Only slow paths count: a park already costs a system call, a wake-up
//! sent costs one too, and a spin phase starts only when a call could not proceed at once, so
//! the fast path (a grant, a commit, a release that wakes nobody) touches no counter.
//! The counters are single-writer (the end's own thread) relaxed atomics, so a monitoring
//! thread may read them through a [`StatsHandle`] at any time.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One counter, written only by the thread that owns the end.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds one. Relaxed load and store, not a read-modify-write: the end's own thread is the
    /// only writer, and readers only need some recent value.
    #[inline]
    pub(crate) fn bump(&self) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        // Relaxed: a statistic, ordered with nothing.
        self.0.load(Ordering::Relaxed)
    }
}

/// The counters of one end.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) spins: Counter,
    pub(crate) parks: Counter,
    pub(crate) barriers: Counter,
    pub(crate) sleeps: Counter,
    pub(crate) woken: Counter,
    pub(crate) sleep_timeouts: Counter,
    pub(crate) lost_wakeups: Counter,
    pub(crate) timed_out: Counter,
    pub(crate) peer_died: Counter,
    pub(crate) peer_unknown: Counter,
    pub(crate) wakes_sent: Counter,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            spins: self.spins.get(),
            parks: self.parks.get(),
            barriers: self.barriers.get(),
            sleeps: self.sleeps.get(),
            woken: self.woken.get(),
            sleep_timeouts: self.sleep_timeouts.get(),
            lost_wakeups: self.lost_wakeups.get(),
            timed_out: self.timed_out.get(),
            peer_died: self.peer_died.get(),
            peer_unknown: self.peer_unknown.get(),
            wakes_sent: self.wakes_sent.get(),
        }
    }
}

/// What an end's blocking calls have done so far: a snapshot of its counters.
///
/// Every count is of a slow path; a ring that never waits counts nothing. "Park" is one
/// raising of the end's waiter flag in the shared header; a park may sleep several times
/// (each sleep is bounded, see the crate docs on peer death) before it ends.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use std::time::Duration;
///
/// let (mut tx, mut rx) = mirror_ring::RingOptions::new().spin_budget(Duration::ZERO).build()?;
/// let writer = std::thread::spawn(move || {
///     // Long enough for the reader below to be asleep, even on a loaded machine.
///     std::thread::sleep(Duration::from_millis(100));
///     tx.write_all(b"late").unwrap();
///     tx.stats()
/// });
/// let mut buf = [0; 4];
/// rx.read_exact(&mut buf)?; // parks until the writer publishes
/// let (rs, ws) = (rx.stats(), writer.join().unwrap());
/// assert!(rs.parks >= 1 && rs.woken >= 1);
/// assert_eq!(ws.wakes_sent, rs.woken);
/// assert_eq!(rs.lost_wakeups, 0);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Blocking calls that could not proceed at once and began to wait (spinning first, for
    /// the end's spin budget). An async end counts only the waits that spin: with a budget of
    /// zero its waits are not counted here, a blocking end's are.
    pub spins: u64,
    /// Times the end raised its waiter flag to sleep.
    pub parks: u64,
    /// Heavy barriers the end issued to park: at most one per park, and fewer when wake-ups
    /// that did not satisfy the call come faster than once a millisecond, or when a timed-out
    /// wait left its flag raised for the next. Counted as issued: a `membarrier`, or, for an
    /// end that parks with full fences (no membarrier here), the fence in its place; a
    /// `membarrier` that failed (and moved the end to fences) counts too, so the park in which
    /// it failed counts two (the failure, then the fence paid a millisecond later).
    pub barriers: u64,
    /// Futex sleeps (a park may sleep several times: every sleep is bounded).
    pub sleeps: u64,
    /// Parks ended by a wake-up from the peer: parks whose flag the peer cleared, whether the
    /// end was asleep then or had not gone to sleep yet (its recheck after raising the flag
    /// found what the publish brought). Also parks ended by a close or a poisoning, which wake
    /// too, and which the peer's `wakes_sent` does not count. So, between two blocking ends, a
    /// peer's `wakes_sent` equals this end's `woken` less its closes and poisonings, with one
    /// lag: a wait that times out leaves its flag raised for the end's next wait (which then
    /// needs no barrier), and a wake-up that clears that flag is counted when the end next
    /// parks, not before (a call served without parking does not look at the flag). An async
    /// end counts a wake-up its helper's timer found before the task did (the flag cleared at
    /// the sleep's bound) in `sleep_timeouts`, beside the sleeps that reached their bound, so
    /// there the peer's `wakes_sent` lies between `woken` and `woken + sleep_timeouts`.
    pub woken: u64,
    /// Sleeps that ended at their bound (the watch interval between processes) with the flag
    /// still raised; the park then goes on without another barrier. (An async end's helper
    /// answers most bounds itself, without ending the sleep: `docs::async_ends`, "Bounded
    /// sleeps".)
    pub sleep_timeouts: u64,
    /// Sleeps that ended at their bound while the call's condition already held: a wake-up the
    /// peer should have sent and did not. Zero in a correct protocol between honest ends, with
    /// one exception: a publish in flight at the instant the sleep reaches its bound (the
    /// publisher between its cursor store and its look at the waiter flag, for example
    /// descheduled there) is counted too, though its wake-up was only late. A sleep cut short
    /// by the call's own timeout, and a park that ends in the peer's death, count nothing
    /// here.
    pub lost_wakeups: u64,
    /// Parks ended because the call's own timeout passed. A call whose timeout passes while it
    /// still spins (a timeout shorter than the spin budget, or a spin not yet over) returns
    /// `TimedOut` without having parked, and is not counted here: this counts sleeps cut by
    /// deadlines, not `TimedOut` returns.
    pub timed_out: u64,
    /// Parks ended because the peer's process was found dead.
    pub peer_died: u64,
    /// Peer checks that could not tell whether the peer lives (no descriptor left, `/proc`
    /// unreadable, another PID namespace); retried, never taken for a death.
    pub peer_unknown: u64,
    /// Wake-ups this end sent its parked peer after a publish: `FUTEX_WAKE` calls, and, for a
    /// peer parked in an async task of this process, direct wakes of its `Waker` (no system
    /// call). The wake-up of a close or a poisoning is not counted.
    pub wakes_sent: u64,
}

/// A handle to one end's counters that any thread may read, for example to export them.
///
/// # Examples
///
/// ```
/// let (tx, _rx) = mirror_ring::channel(4096)?;
/// let handle = tx.stats_handle();
/// let monitor = std::thread::spawn(move || handle.get().parks);
/// assert_eq!(monitor.join().unwrap(), 0);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct StatsHandle(pub(crate) Arc<Counters>);

impl StatsHandle {
    /// The counters now.
    pub fn get(&self) -> Stats {
        self.0.snapshot()
    }
}

impl fmt::Debug for StatsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.get(), f)
    }
}
