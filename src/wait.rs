//! Blocking: spin, then sleep on a futex word, without lost wake-ups; and noticing a dead peer.
//!
//! # The sleep protocol
//!
//! A side that cannot proceed first spins for its spin budget, because a park-and-wake round
//! trip costs hundreds of times a spinning hand-over (BENCHMARKS.md, "Round trip"). Then it
//! parks:
//!
//! 1. store 1 into its waiter word (`data_waiter` for the consumer, `space_waiter` for the
//!    producer);
//! 2. the heavy barrier (`membarrier`, see `sync.rs`);
//! 3. re-check the condition (this reloads the peer's cursor and close flag); if it now holds,
//!    clear the word and return;
//! 4. `FUTEX_WAIT(word, 1)`: the kernel sleeps only if the word is still 1.
//!
//! The peer, after every cursor store, runs the light barrier and loads the waiter word; if it
//! is non-zero it swaps it to 0 and calls `FUTEX_WAKE`.
//!
//! Why no wake-up is lost: the barrier pair orders "store flag; load cursor" on the sleeper
//! against "store cursor; load flag" on the publisher, so at least one side sees the other's
//! store. If the sleeper's recheck sees the new cursor, it does not sleep. Otherwise the
//! publisher sees the flag, swaps it to 0 and wakes: if the sleeper has not yet entered
//! `FUTEX_WAIT`, the kernel's comparison of the word (now 0, expected 1) makes it return at
//! once; if it has, the wake finds it. The same argument covers close (`protocol::close`
//! stores CLOSED, fences, clears the word and wakes unconditionally). The interleavings are
//! model-checked in `loom-tests`.
//!
//! The flag stays raised for the whole park, across the bounded sleeps: as long as nobody
//! has cleared it, every publish after our barrier sees it, so a timed wake-up (to watch the
//! peer) rechecks and sleeps again without paying the heavy barrier again. Only a wake-up
//! clears the flag; if the condition still does not hold (the peer published too little, or
//! cleared the flag without publishing), the next park raises it again with a new barrier,
//! at most one per [`REARM_INTERVAL`]: inside that interval the flag is raised with a local
//! fence only and the sleep is cut to the rest of the interval, so a wake-up missed for want
//! of the barrier costs at most that long. A peer that keeps clearing the flag therefore
//! cannot drive this process (and, through a global barrier, every CPU) in a tight loop; nor
//! across calls, since a call that ended on its timeout hands the time of its last barrier to
//! the end's next wait ([`Waiter::timed_out_barrier`]).
//!
//! # How long to spin
//!
//! The spin polls with a few `PAUSE`s between looks and never calls `sched_yield`: on a
//! loaded machine a yield can hand the core to another runnable task for a whole time slice,
//! long after the peer has published, while a parked waiter that is woken runs again at once
//! (measured on Linux 6.18; BENCHMARKS.md, "Spin budget": with a busy loop beside
//! each end, a round trip between two threads took 2-100 µs with yields and 0.34 µs
//! without).
//!
//! Without yields a spin cannot help a peer that shares this core: it only delays it. So each
//! end adapts ([`Spin`]): the ring's spin budget is the most it spins; every
//! [`MISSES_TO_HALVE`] waits in a row that spun in vain halve the budget, down to
//! [`SPIN_FLOOR`]; one wait that the spin served restores the whole budget. An end whose peer
//! answers while it spins keeps spinning for the whole budget (the design figure: either
//! mistake costs at most twice the better choice); an end whose waits all end in a park (the
//! two ends on one core, or a peer that is idle for longer than the budget) soon spins for a
//! microsecond only, so it neither stalls its peer nor burns a core. An async end's retry phase
//! (`ring/asynch/park.rs`) keeps the same [`Spin`] and adapts it the same way.
//!
//! # Bounded sleeps
//!
//! Every sleep is bounded: by [`WATCH_INTERVAL`] between processes, after which the peer's
//! liveness is checked (`peer.rs`; the story is in the crate docs, "Peer death"), and by
//! [`SAFETY_INTERVAL`] between threads, so that a missed wake-up (a bug, or a hostile peer)
//! delays but never hangs. Each end counts what its waits did (`stats.rs`), which is how the
//! tests prove that no wake-up is lost: a sleep that ran to its bound while the condition
//! already held is counted as a lost wake-up.

use std::time::{Duration, Instant};

use crate::header::{Header, Role};
use crate::protocol::Stop;
use crate::stats::Counters;
use crate::sync::{fence, park_barrier, FutexWord, Ordering, Park, Woke, SPINS};

/// How often a sleeper that watches a peer process wakes to check that the peer lives.
pub(crate) const WATCH_INTERVAL: Duration = Duration::from_millis(25);

/// The longest sleep between threads (no peer to watch): a missed wake-up costs a blocking end
/// at most this (an async end up to twice this: the helper wakes it only at the second check
/// that finds the cursor moved, `docs::async_ends`).
pub(crate) const SAFETY_INTERVAL: Duration = Duration::from_millis(100);

/// The shortest time between two heavy barriers of one blocked call (see the module docs).
pub(crate) const REARM_INTERVAL: Duration = Duration::from_millis(1);

/// The default time to spin before sleeping: about one park-and-wake round trip, which bounds
/// the cost of either choice to twice the better one (BENCHMARKS.md, "Spin budget").
pub(crate) const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// The shortest spin an adapted budget comes down to (no more than the ring's budget): long
/// enough to catch a peer that answers at once from another core (a hand-over takes well under
/// a microsecond), short against a park.
pub(crate) const SPIN_FLOOR: Duration = Duration::from_micros(1);

/// How many waits in a row must park, their spin in vain, before an end halves its spin.
pub(crate) const MISSES_TO_HALVE: u8 = 3;

/// The most `PAUSE`s between two looks at the ring while spinning (the count doubles from one):
/// with the clock read, a look every ~0.1 µs on the Intel host (a `PAUSE` took 9 ns there),
/// less than a hand-over between its cores (~0.15 µs one way). Cores whose `PAUSE` takes ~140
/// cycles look about every 0.5 µs.
const MAX_PAUSES: u32 = 8;

/// How long an end spins before it parks: its ring's budget, adapted to what its waits found
/// (see the module docs, "How long to spin"). One per end, kept between its waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Spin {
    /// The ring's spin budget: the most this end spins.
    full: Duration,
    /// What it spins now.
    now: Duration,
    /// Waits in a row whose spin was in vain (they parked).
    misses: u8,
}

impl Spin {
    pub(crate) fn new(full: Duration) -> Spin {
        Spin { full, now: full, misses: 0 }
    }

    /// The ring's spin budget: the most this end spins.
    pub(crate) fn full(&self) -> Duration {
        self.full
    }

    /// How long the next wait spins.
    pub(crate) fn budget(&self) -> Duration {
        self.now
    }

    /// A spin found what it waited for: the whole budget again.
    pub(crate) fn served(&mut self) {
        self.now = self.full;
        self.misses = 0;
    }

    /// A wait spun for its budget in vain and parks.
    pub(crate) fn missed(&mut self) {
        self.misses += 1;
        if self.misses >= MISSES_TO_HALVE {
            self.misses = 0;
            self.now = (self.now / 2).max(SPIN_FLOOR.min(self.full));
        }
    }
}

/// How long a slip lasts. Long enough for the other side to work some kilobytes of ring ahead
/// undisturbed (on the Intel host, 64 B frames went from 25 to 45, 89 and 95-98 M/s with
/// consumer slips of 0.5, 1 and 2 µs; 64-byte records through `fill_buf` from 43-45 to
/// 114-117 M/s with a 1 µs producer slip); short against the spin budget (50 µs by default)
/// and the cost of a sleep and wake-up (tens of µs).
pub(crate) const SLIP: Duration = Duration::from_micros(1);

/// Waits [`SLIP`] without touching the ring, so the other side works on lines nobody else is
/// reading: a framed receive that caught up with a streaming producer
/// (`docs::framing`, "Which side sets the pace"), a write that found the ring full (each
/// release the consumer publishes would otherwise have to take its cursor's line back from
/// the polling producer). No longer than the end's spin budget (nothing with a zero budget:
/// such an end sleeps at once, it does not spin) or than the call's `deadline`. Nothing under
/// loom, whose models do not spin.
#[cold]
pub(crate) fn slip(deadline: Option<Instant>, spin_budget: Duration) {
    let length = SLIP.min(spin_budget);
    if !SPINS || length.is_zero() {
        return;
    }
    let start = Instant::now();
    let until = deadline.map_or(start + length, |d| d.min(start + length));
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Something that can tell whether the peer has died.
pub(crate) trait PeerCheck {
    /// Whether there is a peer process to watch (sleeps are then bounded by the watch
    /// interval).
    fn active(&self) -> bool;
    /// Whether the peer is proven gone without having closed its end (`peer.rs`).
    fn gone(&mut self, hdr: &Header, counters: &Counters) -> bool;
}

/// No peer to watch: the other end lives in this process.
#[derive(Debug, Default)]
pub(crate) struct NoPeer;

impl PeerCheck for NoPeer {
    fn active(&self) -> bool {
        false
    }
    fn gone(&mut self, _hdr: &Header, _counters: &Counters) -> bool {
        false
    }
}

/// Who is waiting, and how: the parts of an end that a wait uses.
pub(crate) struct Waiter<'a> {
    pub(crate) hdr: &'a Header,
    /// The waiting role (it sleeps on its own word).
    pub(crate) role: Role,
    /// How this role parks; downgraded here if its barrier fails.
    pub(crate) park: &'a mut Park,
    /// How long to spin; updated with what this wait found.
    pub(crate) spin: &'a mut Spin,
    pub(crate) peer: &'a mut dyn PeerCheck,
    pub(crate) counters: &'a Counters,
    /// In: the previous wait of this end returned on its deadline with its flag left raised
    /// after a heavy barrier. Out: whether this wait did so.
    pub(crate) kept: &'a mut bool,
    /// In: when the previous wait of this end paid its last heavy barrier, if that wait
    /// returned on its deadline. Out: the same of this wait. A wait that then raises its flag
    /// again (it was cleared since, or not kept) counts that barrier towards the rate limit
    /// of one a [`REARM_INTERVAL`], as a park within one wait does: so a peer that keeps
    /// clearing the flag cannot have each of a loop of short timed calls pay a barrier. (A
    /// wait that was satisfied passes nothing on: the next one's first park is strong.)
    pub(crate) timed_out_barrier: &'a mut Option<Instant>,
}

/// Waits until `poll` returns `Some`, spinning for the end's spin first and then sleeping on
/// the waiter's futex word. `poll` must re-read everything it depends on from the header on
/// each call.
pub(crate) fn wait_for<T>(
    w: Waiter<'_>,
    deadline: Option<Instant>,
    mut poll: impl FnMut() -> Option<Result<T, Stop>>,
) -> Result<T, Stop> {
    if let Some(r) = poll() {
        // Satisfied: no barrier to pass on (see `Waiter::timed_out_barrier`).
        *w.timed_out_barrier = None;
        return r;
    }
    let Waiter { hdr, role, park, spin, peer, counters, kept, timed_out_barrier } = w;
    let mut kept_strong = std::mem::take(kept);
    let word = hdr.word(role.own_word());
    // A peer already known (or now found) dead: do not wait a watch interval to say so again.
    // `gone` is rate-limited, so a busy ring pays a clock read here, not a system call.
    if peer.active() && peer.gone(hdr, counters) {
        if kept_strong {
            // The flag kept from the previous wait is not kept further: lower it, as the end
            // of a wait does.
            lower(word, counters);
        }
        return poll().unwrap_or(Err(Stop::PeerDied));
    }
    counters.spins.bump();
    let budget = spin.budget();
    let mut pauses = 1;
    let start = Instant::now();
    let mut last_check = start;
    // Whether our flag is raised and has stayed raised since we raised it.
    let mut armed = false;
    // Whether the raising was covered by a heavy barrier (else sleeps are cut short).
    let mut strong = false;
    let mut last_barrier: Option<Instant> = std::mem::take(timed_out_barrier);
    // Whether this wait's spin has been counted as missed (once per wait, at its first park).
    let mut missed = false;
    let result = loop {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            if armed {
                counters.timed_out.bump();
                if strong {
                    // Leave the flag raised: the next wait need not pay the barrier again.
                    *kept = true;
                    armed = false;
                }
            }
            break Err(Stop::TimedOut);
        }
        if peer.active() && now.duration_since(last_check) >= WATCH_INTERVAL {
            last_check = now;
            if peer.gone(hdr, counters) {
                if armed {
                    counters.peer_died.bump();
                }
                // Whatever it committed before dying is visible now: drain it first.
                break poll().unwrap_or(Err(Stop::PeerDied));
            }
        }
        if !armed && SPINS && now.duration_since(start) < budget {
            for _ in 0..pauses {
                std::hint::spin_loop();
            }
            pauses = (pauses * 2).min(MAX_PAUSES);
            if let Some(r) = poll() {
                spin.served();
                break r;
            }
            continue;
        }
        let mut recheck = false;
        if !armed {
            if SPINS && !missed {
                missed = true;
                spin.missed();
            }
            let kept_flag = std::mem::take(&mut kept_strong);
            let was = raise(word, kept_flag, counters);
            // Still raised since the heavy barrier of our previous wait (nobody cleared it):
            // every publish since then has seen it, so no new barrier is needed.
            let still = kept_flag && was == 1;
            (armed, strong, recheck) = (true, still, true);
        }
        if !strong {
            if last_barrier.is_some_and(|t| now.duration_since(t) < REARM_INTERVAL) {
                // Raised again soon after a wake-up that did not satisfy us: no heavy barrier
                // yet (see the module docs); the sleep below is cut to the rest of the
                // interval, after which the barrier is paid and the park becomes strong.
                // SeqCst fence: orders the raised flag before the recheck. It pairs with a
                // publisher's full fence (one that parks us as `Fence`, or its own heavy
                // half); against the light half nothing pairs with it, hence the cut sleep.
                fence(Ordering::SeqCst);
            } else {
                last_barrier = Some(now);
                counters.barriers.bump();
                strong = park_barrier(*park);
                if !strong {
                    // Our membarrier failed: from now on we park with a full fence, and say so
                    // to the publisher. This sleep stays short: a publisher may have read the
                    // old record and used the light half.
                    *park = Park::Fence;
                    hdr.downgrade_park(role);
                    // SeqCst fence: the `Fence` half of the pair, ordering the raised flag
                    // (and the downgraded record) before the recheck.
                    fence(Ordering::SeqCst);
                }
                recheck = true;
            }
        }
        if recheck {
            if let Some(r) = poll() {
                break r;
            }
        }
        let mut bound = if peer.active() { WATCH_INTERVAL } else { SAFETY_INTERVAL };
        if !strong {
            let since = last_barrier.map_or(Duration::ZERO, |t| now.duration_since(t));
            bound = bound.min(REARM_INTERVAL.saturating_sub(since)).max(Duration::from_micros(20));
        }
        let timeout = deadline.map_or(bound, |d| d.saturating_duration_since(now).min(bound));
        // Cut short by the call's own deadline: a sleep that ends there did not reach its
        // bound, and a publish in flight at that moment (its cursor stored, its look at the
        // flag still to come) is no lost wake-up.
        let cut = timeout < bound;
        counters.sleeps.bump();
        let outcome = word.wait(1, timeout);
        // Acquire: pairs with the waker's Release clear (`protocol::wake`; a close clears after
        // a SeqCst fence): a flag found cleared makes every publish before the clear visible to
        // the poll below. (The kernel's comparison of the word orders nothing for us.)
        // Still raised: nobody woke us, the park goes on, whatever the futex said (a
        // `FUTEX_WAKE` that finds the flag raised is a late one, from a publisher descheduled
        // between its clear and its wake that ended an earlier park; counted there, not here).
        // Cleared: a waker got to it, while we slept or just after.
        armed = word.load(Ordering::Acquire) != 0;
        let timed_out = armed && outcome == Woke::TimedOut && !cut;
        if !armed {
            counters.woken.bump();
        } else if timed_out {
            counters.sleep_timeouts.bump();
        }
        if let Some(r) = poll() {
            if armed {
                if timed_out && strong {
                    // The condition held and the flag was never cleared: a publish that
                    // should have woken us did not.
                    counters.lost_wakeups.bump();
                }
                lower(word, counters);
                armed = false;
            }
            break r;
        }
    };
    if result.as_ref().err() == Some(&Stop::TimedOut) {
        *timed_out_barrier = last_barrier;
    }
    if armed {
        lower(word, counters);
    } else if kept_strong {
        // The flag kept from the previous wait was not touched in this one (it ended while
        // spinning): keep it for the next if this one timed out too, else lower it.
        if result.as_ref().err() == Some(&Stop::TimedOut) {
            *kept = true;
        } else {
            lower(word, counters);
        }
    }
    result
}

/// Raises our own waiter flag to park (counted in `parks`); returns what it held. `kept`: the
/// flag was left raised by an earlier wait of this end (`Waiter::kept`); if the peer has
/// cleared it since, counting a wake-up sent, that earlier park ended by it and is counted as
/// woken here (see [`lower`]). Shared by the blocking wait and the async park.
pub(crate) fn raise(word: &FutexWord, kept: bool, counters: &Counters) -> u32 {
    // Relaxed: the caller's barrier orders this store before its recheck.
    let was = word.swap(1, Ordering::Relaxed);
    counters.parks.bump();
    if kept && was == 0 {
        counters.woken.bump();
    }
    was
}

/// Lowers our own waiter flag at the end of a park. A park whose flag the peer had already
/// cleared counts as woken: the peer counted a wake-up sent (`protocol::wake`), which came
/// before our sleep, or was found by our recheck or our poll after a sleep, and the two
/// counts are to agree (`Stats::woken`).
fn lower(word: &FutexWord, counters: &Counters) {
    // Relaxed: lowering our own flag publishes nothing (a publisher that still reads 1 sends
    // one spurious wake). A swap, not a store: each raising is then cleared by exactly one
    // side, the peer (which counts a wake-up sent) or us.
    if word.swap(0, Ordering::Relaxed) == 0 {
        counters.woken.bump();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_spins_halve_the_budget_down_to_the_floor_and_one_served_spin_restores_it() {
        let full = Duration::from_micros(50);
        let mut spin = Spin::new(full);
        assert_eq!(spin.budget(), full);
        for _ in 1..MISSES_TO_HALVE {
            spin.missed();
            assert_eq!(spin.budget(), full, "halved before {MISSES_TO_HALVE} misses");
        }
        spin.missed();
        assert_eq!(spin.budget(), full / 2);
        // A served spin between misses starts the count again.
        spin.missed();
        spin.served();
        assert_eq!(spin.budget(), full);
        for _ in 0..MISSES_TO_HALVE - 1 {
            spin.missed();
        }
        assert_eq!(spin.budget(), full);
        for _ in 0..100 * u32::from(MISSES_TO_HALVE) {
            spin.missed();
        }
        assert_eq!(spin.budget(), SPIN_FLOOR);
        spin.served();
        assert_eq!(spin.budget(), full);
    }

    #[test]
    fn a_budget_below_the_floor_is_kept_and_zero_never_spins() {
        for full in [Duration::ZERO, SPIN_FLOOR / 4] {
            let mut spin = Spin::new(full);
            for _ in 0..10 * u32::from(MISSES_TO_HALVE) {
                spin.missed();
                assert_eq!(spin.budget(), full, "a budget at or below the floor is not cut");
            }
        }
    }
}
