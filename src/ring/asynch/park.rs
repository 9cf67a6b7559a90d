//! Parking an async end: the waiter flag, the `Waker` registry, and the helper threads that
//! turn a `FUTEX_WAKE` into `Waker::wake()`. The design and the measurements behind it:
//! `docs::async_ends` (`src/docs/async_ends.rs`); this file is the code.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[cfg(not(mirror_ring_loom))]
use std::sync::Mutex;

#[cfg(mirror_ring_loom)]
use loom::sync::Mutex;

use crate::header::{Claim, Header, Role};
use crate::peer::ProcessWatch;
use crate::ring::RingMem;
use crate::stats::Counters;
use crate::sync::{fence, park_barrier, FutexWord, Ordering, Park, SPINS};
use crate::wait::{self, PeerCheck, Spin, REARM_INTERVAL, SAFETY_INTERVAL, WATCH_INTERVAL};

/// What a parking end lends the machinery while it parks: its header, role, park mode and
/// counters, and how its peer can wake it.
pub(crate) struct Site<'a> {
    pub(crate) hdr: &'a Header,
    pub(crate) role: Role,
    /// How this end parks (downgraded here if its barrier fails).
    pub(crate) park: &'a Cell<Park>,
    pub(crate) counters: &'a Counters,
    /// The peer lives in this process and publishes through this very mapping (a thread ring):
    /// its wake reaches the registry directly. Otherwise a helper thread sleeps on the word.
    pub(crate) direct: bool,
    /// The end's watcher of the peer process (`None`: the peer is in this process) and the
    /// end's claim word. With it the helper watches the peer itself when the watcher can hand
    /// it what it needs ([`ProcessWatch::watched`]); otherwise it wakes the task every watch
    /// interval, so that its own liveness check runs (as a blocking end's does). See
    /// [`watch`](Self::watch) and [`peer_dead`](Self::peer_dead).
    pub(crate) watcher: Option<(&'a RefCell<ProcessWatch>, Claim)>,
    /// The mapping, kept alive by a helper that reads the header (`None` in loom models).
    pub(crate) ring: Option<&'a Arc<RingMem>>,
    /// How long to keep trying before parking (the end's spin, adapted as a blocking end's
    /// is: `wait::Spin`), by rescheduling the task (it yields to the runtime between attempts,
    /// so other tasks run).
    pub(crate) spin: &'a Cell<Spin>,
    /// A waiter flag a blocking call of this end left raised for its next wait
    /// (`wait::Waiter::kept`, through `get_mut` or before `into_async`): the next async park
    /// takes it over (`None` in loom models).
    pub(crate) kept: Option<&'a Cell<bool>>,
}

impl Site<'_> {
    /// The peer may be another process whose death must be noticed, every watch interval.
    /// Otherwise the helper checks for a missed wake-up itself, every safety interval, without
    /// waking the task.
    fn watch(&self) -> bool {
        self.watcher.is_some_and(|(w, _)| w.borrow().active())
    }

    /// The end's watcher has proven the peer's process dead: a park that ends now ended by
    /// the death (`Stats::peer_died`), not by a wake-up that never came.
    fn peer_dead(&self) -> bool {
        self.watcher.is_some_and(|(w, _)| w.borrow().is_dead())
    }
}

/// Applies `f` to the spin state in `cell`.
fn update(cell: &Cell<Spin>, f: impl FnOnce(&mut Spin)) {
    let mut spin = cell.get();
    f(&mut spin);
    cell.set(spin);
}

/// An end that can park: it lends a [`Site`] (`None` in a forked copy, which must not touch
/// the header).
pub(crate) trait ParkEnd {
    fn site(&self) -> Option<Site<'_>>;
    /// Why `site` said no: the end's own error for a forked copy, a shut end, or a role that
    /// another process took over (`ConnectionAborted`), as its blocking calls give it.
    fn lost(&self) -> io::Error;
}

/// One end's parking state, kept between polls (a pending future keeps nothing: dropping it
/// leaves this state, which the next poll or the end's drop settles).
#[derive(Debug, Default)]
pub(crate) struct Parking {
    /// Our waiter flag is raised (by us) and nobody has cleared it since, as far as we know.
    armed: bool,
    /// The raising was covered by a heavy barrier (else the registration carries a short
    /// deadline after which the barrier is paid).
    strong: bool,
    last_barrier: Option<Instant>,
    /// The word we registered under, while an entry may be in the registry.
    key: Option<usize>,
    /// This park's name in the registry, given at its first registration (0: none yet). Two
    /// parks of this process can share a word: an end whose role this process took over (a
    /// peer forged its holder's death) parks on the word of the end that took it. Each may
    /// touch only its own entry.
    owner: u64,
    /// When the current wait started trying again before parking (the spin phase).
    spin_since: Option<Instant>,
    /// The current wait's spin phase ran out and was counted as missed (`wait::Spin`).
    spin_missed: bool,
}

/// Whether this poll comes from a task of a current-thread tokio runtime (or of a `LocalSet`
/// on one). Not the `block_on` future itself, which is no task: that one may be another
/// executor's, which would then wait for ever for a wake-up handed to a runtime whose thread
/// it blocks (a nested executor inside a task still does; so does tokio's own I/O there).
fn in_current_thread_task() -> bool {
    #[cfg(not(mirror_ring_loom))]
    if tokio::task::try_id().is_some() {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            return handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread;
        }
    }
    false
}

impl Parking {
    /// Has the task polled again soon, after the runtime's other ready tasks, for a retry of
    /// the spin phase. In a task of a current-thread runtime the retry waits for the runtime's
    /// driver poll too, as `tokio::task::yield_now` does (it hands the waker to the scheduler):
    /// a task queued again at once is polled up to the runtime's `event_interval` (61) times
    /// before the `block_on` future gets its turn, and when that future is the peer the task
    /// waits for, each hand-off cost those 61 polls (6-11 µs per round trip, against 0.4 µs).
    /// Elsewhere the task is queued at once: on a multi-thread runtime the `block_on` future
    /// has a thread of its own, and a driver poll (a system call) per retry would slow the
    /// spin that the phase is for.
    ///
    /// Decided at each retry, from the poll at hand: a spin phase may outlive the call that
    /// began it (cancelled in a task) and go on under another executor nested in the
    /// `block_on` future, whose waker, handed to the runtime's deferred list, would never be
    /// woken while that executor blocks the runtime's thread (an adversarial review found the
    /// hang when this was decided once per phase).
    fn retry_later(&self, cx: &mut Context<'_>) {
        #[cfg(not(mirror_ring_loom))]
        if in_current_thread_task() {
            // `yield_now` answers Pending on its first poll, the waker handed on; dropping it
            // then leaves nothing behind.
            let _ = std::future::Future::poll(std::pin::pin!(tokio::task::yield_now()), cx);
            return;
        }
        cx.waker().wake_by_ref();
    }

    /// Runs `attempt` (a non-blocking call that answers `WouldBlock` while the end must wait)
    /// and parks the task while it would block: raises the waiter flag, pays the heavy
    /// barrier once per park, runs `attempt` again (the recheck), and registers the waker.
    pub(crate) fn poll<E: ParkEnd + ?Sized, T>(
        &mut self,
        cx: &mut Context<'_>,
        end: &mut E,
        mut attempt: impl FnMut(&mut E) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        // Spends the task's cooperative budget on tokio, as tokio's own I/O does: an end whose
        // peer keeps it ready (a fast or a hostile one) otherwise answers every poll at once,
        // and a loop over it never gives the runtime's thread back to its other tasks. When
        // the budget is spent, the task is woken and yields. (Outside a tokio runtime there is
        // no budget: always ready.)
        #[cfg(not(mirror_ring_loom))]
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        match attempt(end) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            r => {
                #[cfg(not(mirror_ring_loom))]
                coop.made_progress();
                if self.spin_since.is_some() {
                    self.retry_ended(end);
                }
                self.settle_as(end, true);
                return Poll::Ready(r);
            }
        }
        let Some(site) = end.site() else { return Poll::Ready(Err(end.lost())) };
        let budget = site.spin.get().budget();
        if SPINS && !self.armed && self.key.is_none() && !budget.is_zero() {
            // The spin phase, as a blocking end spins before it parks: try again after the
            // runtime's other ready tasks, for at most the end's spin. (A start older than the
            // budget plus a millisecond is a leftover of a cancelled call: start again.)
            let now = clock_now();
            let since = match self.spin_since {
                Some(t) if now.duration_since(t) <= budget.saturating_add(REARM_INTERVAL) => t,
                _ => {
                    site.counters.spins.bump();
                    self.spin_missed = false;
                    *self.spin_since.insert(now)
                }
            };
            if now.duration_since(since) < budget {
                self.retry_later(cx);
                return Poll::Pending;
            }
            if !self.spin_missed {
                // The spin ran out in vain: the end parks now (counted once per spin phase).
                self.spin_missed = true;
                update(site.spin, Spin::missed);
            }
        }
        let word = site.hdr.word(site.role.own_word());
        let key = word as *const _ as usize;
        if self.armed {
            let status = self.key.map_or(Status::Gone, |k| registry().status(k, self.owner));
            if status != Status::Registered {
                self.key = None;
            }
            // Acquire: pairs with the waker's Release clear (`protocol::wake`): a flag found
            // cleared makes the publish before it visible to the recheck below. Anything but 1
            // counts as cleared, as the registry and the helpers read it (`register`,
            // `Entry::due`): a peer's stray value is answered by raising the flag again, not by
            // waking this task forever.
            if word.load(Ordering::Acquire) != 1 {
                // A wake that did not satisfy us (too little, or a hostile clear).
                count_wake(site.counters, status);
                self.armed = false;
                // An entry still registered (its waker clears the flag before it takes the
                // registry's lock, or nobody is coming) belongs to the park that just ended:
                // drop it, so that the park raised below registers with its own deadline (a
                // short one when it raises the flag with a fence only).
                if let Some(k) = self.key.take() {
                    registry().deregister(k, self.owner);
                }
            } else if status == Status::Timer {
                // A helper's timer ended this sleep; the flag stays raised, the park goes on.
                site.counters.sleep_timeouts.bump();
            }
        }
        let mut recheck = false;
        if !self.armed {
            // A flag a blocking call of this end left raised is taken over (and a wake-up that
            // cleared it counted): this park raises it anew, with a barrier below.
            let kept = site.kept.is_some_and(|k| k.replace(false));
            wait::raise(word, kept, site.counters);
            (self.armed, self.strong, recheck) = (true, false, true);
        }
        let now = clock_now();
        if !self.strong {
            if self.last_barrier.is_some_and(|t| now.duration_since(t) < REARM_INTERVAL) {
                // Raised again soon after a wake-up that did not satisfy us: a local fence
                // only, and a registration that ends when the interval does (wait.rs).
                fence(Ordering::SeqCst);
            } else {
                self.last_barrier = Some(now);
                site.counters.barriers.bump();
                self.strong = park_barrier(site.park.get());
                if !self.strong {
                    // As in wait.rs: park with full fences from now on, say so to the
                    // publisher, and keep this registration short.
                    site.park.set(Park::Fence);
                    site.hdr.downgrade_park(site.role);
                    fence(Ordering::SeqCst);
                }
                recheck = true;
            }
        }
        if recheck {
            match attempt(end) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => {
                    // Progress, as on the first attempt's path: spend the budget.
                    #[cfg(not(mirror_ring_loom))]
                    coop.made_progress();
                    // Found by the recheck after raising the flag (or paying the barrier): no
                    // wake-up was due yet, so none was lost.
                    if let Some(key) = self.key.take() {
                        registry().deregister(key, self.owner);
                    }
                    self.settle(end);
                    return Poll::Ready(r);
                }
            }
        }
        let Some(site) = end.site() else { return Poll::Ready(Err(end.lost())) };
        let word = site.hdr.word(site.role.own_word());
        let watch = site.watch();
        let interval = if watch { WATCH_INTERVAL } else { SAFETY_INTERVAL };
        let deadline =
            if !self.strong { self.last_barrier.map_or(now, |t| t + REARM_INTERVAL) } else { now + interval };
        // Between processes, what lets the helper watch the peer for the task (the task's own
        // check runs otherwise).
        let watched = match site.watcher {
            Some((watcher, own)) if watch && self.strong => {
                watcher.borrow().watched().map(|(peer, pidfd)| Watched { own, peer, pidfd, armed: 0 })
            }
            _ => None,
        };
        // The safety check of the entry, made by the helper at its deadline: the cursor this
        // end waits on, as now. Between processes only with the peer watched too.
        let check = (self.strong && (!watch || watched.is_some())).then(|| {
            let cursor = match site.role {
                Role::Consumer => &site.hdr.head,
                Role::Producer => &site.hdr.tail,
            };
            // Relaxed: a snapshot compared by the helper later, ordering nothing.
            (site.role, cursor.load(Ordering::Relaxed))
        });
        let entry = Entry {
            owner: self.owner(),
            word: WordPtr(word),
            waker: cx.waker().clone(),
            bound: self.strong,
            suspect: false,
            direct: site.direct,
            deadline,
            interval,
            check,
            watched,
            ring: site.ring.cloned(),
            helper: 0,
        };
        match registry().register(key, entry) {
            Err(e) => {
                self.settle(end);
                Poll::Ready(Err(e))
            }
            Ok(Registered::Yes) => {
                // A sleep is a new registration; a poll of a park still registered only
                // refreshes its waker.
                if self.key.replace(key).is_none() {
                    site.counters.sleeps.bump();
                }
                Poll::Pending
            }
            Ok(Registered::AlreadyWoken) => {
                // The flag was cleared between our recheck and the registration (the
                // registry's lock orders the two, as the kernel's compare does for a futex
                // wait): that wake-up was for us. Be polled again at once, through the
                // runtime, so that a peer that keeps clearing the flag cannot hold this
                // thread in a loop.
                self.key = None;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    /// This park's name in the registry (see `owner`), given on first use: a process-wide
    /// count, never 0.
    fn owner(&mut self) -> u64 {
        // Relaxed: a unique number, ordering nothing (std's atomic, also in loom models: the
        // count is no part of the protocol they check).
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        if self.owner == 0 {
            self.owner = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.owner
    }

    /// The end, mutably, for its own calls (an async end's `get_mut`), after ending a park a
    /// cancelled call left behind: a blocking call on the end parks on the same waiter word,
    /// and the leftover registration would take its wake-up.
    pub(crate) fn hand_out<'a, E: ParkEnd + ?Sized>(&mut self, end: &'a mut E) -> &'a mut E {
        self.settle(end);
        end
    }

    /// A wait that had started its retry phase is over: if a retry found what it waited for
    /// (it neither ran out nor parked), the end gets its whole spin budget back. (A start older
    /// than the budget plus a millisecond, which the spin phase takes for a cancelled call's
    /// leftover, proves nothing.)
    #[cold]
    fn retry_ended<E: ParkEnd + ?Sized>(&self, end: &E) {
        if self.spin_missed || self.armed {
            return;
        }
        if let (Some(site), Some(since)) = (end.site(), self.spin_since) {
            if clock_now().duration_since(since) <= site.spin.get().budget().saturating_add(REARM_INTERVAL) {
                update(site.spin, Spin::served);
            }
        }
    }

    /// Ends a park whose call did not find what it waited for (the end handed out, given
    /// back, shut, or a failed registration): lowers our flag if it is still raised and drops
    /// our registration, counting a wake-up if the peer had cleared the flag.
    pub(crate) fn settle<E: ParkEnd + ?Sized>(&mut self, end: &E) {
        self.settle_as(end, false);
    }

    /// [`settle`](Self::settle); `found`: the call's attempt has just found what it waited
    /// for, so a flag never cleared after a timer ended the sleep is a lost wake-up. (Not
    /// otherwise: a cancelled call handed back on an idle ring lost nothing.)
    fn settle_as<E: ParkEnd + ?Sized>(&mut self, end: &E, found: bool) {
        self.spin_since = None;
        self.spin_missed = false;
        if !self.armed && self.key.is_none() {
            return;
        }
        let Some(site) = end.site() else {
            // No header to look at (a forked copy, or the role taken over meanwhile): the flag
            // is not ours to lower, but the registration is ours to drop, and needs none. Left
            // behind, it would keep the task's waker (and, between processes, a helper's futex
            // slot) until the peer published or closed.
            if let Some(key) = self.key.take() {
                registry().deregister(key, self.owner);
            }
            self.armed = false;
            return;
        };
        let word = site.hdr.word(site.role.own_word());
        // `key` is None when no registration of this park can be outstanding (settled after a
        // recheck, or after the timer that removed it was counted): then no lost wake-up.
        let status = self.key.take().map_or(Status::Gone, |key| registry().deregister(key, self.owner));
        if self.armed {
            self.armed = false;
            // Lowers our own flag, which publishes nothing (Relaxed: a publisher that still
            // reads 1 sends one spurious wake). A swap, not a load and a store: each raising is
            // then cleared by exactly one side, the peer (which counts a wake-up sent) or us,
            // and the peer's count and ours agree (`wait::lower`).
            if word.swap(0, Ordering::Relaxed) == 0 {
                count_wake(site.counters, status);
            } else {
                if site.peer_dead() {
                    // The watch timer woke the task, which found the peer dead: the park ended
                    // by the death, as a blocking wait's does (no wake-up was due).
                    site.counters.peer_died.bump();
                } else if found && status == Status::Timer && self.strong {
                    // A timer ended the sleep, the flag was never cleared, and the condition
                    // held: a publish that should have woken us did not.
                    site.counters.lost_wakeups.bump();
                }
            }
        }
    }
}

impl Drop for Parking {
    fn drop(&mut self) {
        // An end dropped while parked: its entry must not keep the mapping or the waker.
        if let Some(key) = self.key.take() {
            registry().deregister(key, self.owner);
        }
    }
}

/// Counts how a park whose flag was found cleared ended: by the peer's wake-up, or by a timer
/// of the helper (which found the flag cleared at its deadline: the wake-up did not reach the
/// task by itself).
fn count_wake(counters: &Counters, status: Status) {
    if status == Status::Timer {
        counters.sleep_timeouts.bump();
    } else {
        counters.woken.bump();
    }
}

/// What became of a registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Still in the registry.
    Registered,
    /// Removed by a helper because its deadline passed.
    Timer,
    /// Removed by a wake-up (or never there).
    Gone,
}

/// The futex word an entry parks on.
struct WordPtr(*const FutexWord);

// SAFETY: a pointer into a ring header, which is shared memory made of atomics; it is only
// dereferenced while the header is mapped (see `WordPtr::get`).
unsafe impl Send for WordPtr {}

impl WordPtr {
    /// The word.
    ///
    /// # Safety
    ///
    /// The header must still be mapped: the entry holds its mapping (`Entry::ring`), or, in a
    /// loom model, the model's ring outlives its registrations.
    unsafe fn get(&self) -> &FutexWord {
        // SAFETY: per the contract, the word is live and aligned.
        unsafe { &*self.0 }
    }
}

/// Whether a registration went through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Registered {
    Yes,
    /// The flag was no longer raised: the wake-up already happened.
    AlreadyWoken,
}

/// What a helper watches the peer process with, for a parked end (`Entry::watched`).
struct Watched {
    /// The end's claim word: its role taken over changes it.
    own: Claim,
    /// The peer's claim word, as the end's watcher last saw it (and found its holder alive).
    peer: Claim,
    /// The pidfd on the peer's holder: readable once it has died (`None`: no holder to watch).
    pidfd: Option<Arc<OwnedFd>>,
    /// The token the pidfd is armed with in the peer-poll thread's epoll instance (0: not
    /// armed), new at each arming (`helper::watch_peer`).
    armed: u64,
}

/// One parked end in the registry.
struct Entry {
    /// The park that registered it (`Parking::owner`).
    owner: u64,
    word: WordPtr,
    waker: Waker,
    /// Woken by the publisher through [`direct_wake`]; otherwise by a helper's futex wait.
    direct: bool,
    /// The deadline bounds the sleep (the watch or safety interval), rather than ending a
    /// park raised without the heavy barrier: a wake-up first seen at it counts as a timeout.
    bound: bool,
    /// A safety check found the cursor moved with the flag still raised (see `due`).
    suspect: bool,
    /// When a helper wakes the task anyway (to watch the peer, to pay a deferred barrier), or
    /// for an entry with a `check`, looks whether it missed a wake-up.
    deadline: Instant,
    /// How far an entry with a `check` moves its deadline when the check finds nothing: the
    /// safety interval, or the watch interval between processes (the safety interval again
    /// when the peer-poll thread waits on the peer's pidfd: it sees the death at once).
    interval: Duration,
    /// The role and the peer's cursor when it parked. At the deadline the helper wakes the task
    /// only if the cursor moved, or the peer closed, or the ring was poisoned, with the flag
    /// still raised (a lost wake-up), or (between processes, `watched`) the peer may have died
    /// or either role changed hands; otherwise it waits another interval, with no work for the
    /// task. `None`: the task is woken at the deadline.
    check: Option<(Role, u64)>,
    /// Between processes: what the helper watches the peer with.
    watched: Option<Watched>,
    /// Keeps the header mapped while a helper may read it.
    ring: Option<Arc<RingMem>>,
    /// The helper thread that watches this entry.
    helper: usize,
}

impl Entry {
    /// Whether the helper must wake the task now: `Some(false)` for a wake-up (the flag was
    /// cleared, or a role changed hands), `Some(true)` for its deadline, `None` not yet.
    fn due(&mut self, now: Instant) -> Option<bool> {
        // SAFETY: the entry keeps the header mapped (`WordPtr::get`).
        let word = unsafe { self.word.get() };
        // Relaxed: the value decides only whether to poll the task; the task's poll orders
        // what it reads.
        let cleared = !self.direct && word.load(Ordering::Relaxed) != 1;
        // A sleep's bound may be reached a little early, so that the helper's checks of many
        // entries fall together instead of one wake-up per entry (`fire`).
        let at = if self.bound { now + SLACK } else { now };
        if at < self.deadline || (cleared && !self.bound) {
            // Before the deadline, or at a deferred barrier's deadline (not a sleep bound): a
            // cleared flag is the peer's wake-up.
            return cleared.then_some(false);
        }
        let (Some((role, seen)), Some(ring)) = (self.check, &self.ring) else { return Some(true) };
        let hdr = ring.header();
        if let Some(w) = &self.watched {
            // A take-over of either role, or a close or a new holding of the peer's: the task
            // looks for itself, at once. Not as a timer's wake-up: a close is seen here before
            // its closer clears the flag, and the task must not count a lost wake-up for it.
            if !hdr.owns(role, w.own) || hdr.claim_word(role.peer()) != w.peer {
                return Some(false);
            }
        }
        // Relaxed (the cursor and the flag): a safety net that only decides whether to poll
        // the task again; the task's own poll acquires what it reads.
        let cursor = match role {
            Role::Consumer => hdr.head.load(Ordering::Relaxed),
            Role::Producer => hdr.tail.load(Ordering::Relaxed),
        };
        let lowered = word.load(Ordering::Relaxed) != 1;
        if !(lowered || cursor != seen || hdr.is_closed(role.peer()) || hdr.is_poisoned()) {
            return None;
        }
        // Something happened and the task was not woken. The publisher may be between its
        // store and its wake-up right now: only if the same is still true a whole interval
        // later is it a missed wake-up.
        if !self.suspect {
            self.suspect = true;
            return None;
        }
        Some(true)
    }
}

/// The clock the parking decisions read (the spin phase, the re-arm interval, the entries'
/// deadlines): real time.
#[cfg(not(mirror_ring_loom))]
#[inline]
fn clock_now() -> Instant {
    Instant::now()
}

/// Under loom, a clock that never moves: loom replays each model many times and requires every
/// execution to take the same branches given the same schedule, which a real clock breaks when
/// a slow (loaded) execution crosses the 1 ms re-arm interval or a deadline. Frozen, a re-park
/// always takes the re-arm branch (as a fast execution does) and no deadline passes, so the
/// models check the wake-ups, not timers.
#[cfg(mirror_ring_loom)]
fn clock_now() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// How early a sleep's bound may be reached (see `Entry::due`).
const SLACK: std::time::Duration = std::time::Duration::from_millis(10);

/// The process's parked async ends, keyed by the address of the futex word each one parked
/// on: one entry per word, that of the park which registered last (`register`), and each
/// entry names its park (`Entry::owner`).
pub(crate) struct Registry {
    #[cfg(not(mirror_ring_loom))]
    generation: usize,
    table: Mutex<Table>,
    /// `futex_waitv` was refused here: the helpers poll (see the module docs).
    #[cfg(not(mirror_ring_loom))]
    fallback: std::sync::atomic::AtomicBool,
}

struct Table {
    entries: HashMap<usize, Entry>,
    /// Keys (and owners) whose entry a helper removed at its deadline, until that park looks
    /// (`status`).
    timed: HashSet<(usize, u64)>,
    #[cfg(not(mirror_ring_loom))]
    helpers: Vec<helper::Slot>,
    #[cfg(not(mirror_ring_loom))]
    peers: helper::PeerPoll,
}

impl Table {
    /// Removes the entry for `key`, and counts it off its helper's futex words: `assign`
    /// starts another helper when every one looks full, and a helper recounts only when it
    /// runs, so an end that parks and unparks faster than that would otherwise start helper
    /// after helper (each lives for the rest of the process).
    fn take(&mut self, key: usize) -> Option<Entry> {
        let e = self.entries.remove(&key)?;
        #[cfg(not(mirror_ring_loom))]
        if !e.direct {
            if let Some(slot) = self.helpers.get_mut(e.helper) {
                slot.left();
            }
        }
        Some(e)
    }
}

impl Registry {
    fn new(_generation: usize) -> Registry {
        Registry {
            #[cfg(not(mirror_ring_loom))]
            generation: _generation,
            table: Mutex::new(Table {
                entries: HashMap::new(),
                timed: HashSet::new(),
                #[cfg(not(mirror_ring_loom))]
                helpers: Vec::new(),
                #[cfg(not(mirror_ring_loom))]
                peers: helper::PeerPoll::default(),
            }),
            #[cfg(not(mirror_ring_loom))]
            fallback: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Registers (or refreshes the waker of) `entry.owner`'s entry for `key`.
    ///
    /// No waker is dropped under the lock, here or in `deregister`: a waker's drop runs the
    /// executor's code, which may drop a task that owns a ring end, whose drop wakes its peer
    /// through `direct_wake` and so takes this lock again. Replaced wakers and removed
    /// entries are dropped once the lock is released.
    ///
    /// Another park's entry for the same word (an end of this process whose role this one took
    /// over, or the reverse: only the holder of the role may park there) makes way for this
    /// one, and its task is woken to look again: an end whose role is gone answers
    /// `ConnectionAborted` and parks no more. (Were they to share the entry, the first to
    /// leave would remove it under the other, whose task would then never be woken.)
    fn register(&'static self, key: usize, mut entry: Entry) -> io::Result<Registered> {
        crate::sync::set_direct_wake(direct_wake);
        // SeqCst fence: the function stored above before the load of the word below, against
        // the publisher's clear of the word, fence and load of the function (`sync.rs`,
        // `direct_wake`): it finds the function, or we see the cleared word.
        fence(Ordering::SeqCst);
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        // Under the lock, as the kernel compares a futex word under its bucket lock: a waker
        // clears the flag before it takes this lock to look for us, so either it finds the
        // entry below, or we see the cleared flag here.
        t.timed.remove(&(key, entry.owner));
        // (Another park's entry taken out below: woken once the lock is released.)
        let wake_other = |e: Option<Entry>, owner: u64| {
            if let Some(e) = e {
                if e.owner != owner {
                    e.waker.wake();
                }
            }
        };
        // SAFETY: the caller's end holds the header mapped for the duration of this call.
        // Relaxed: the lock orders it against the waker's clear.
        if unsafe { entry.word.get() }.load(Ordering::Relaxed) != 1 {
            let removed = t.take(key);
            drop(t);
            // (The cleared flag was a wake-up for whichever park was on the word.)
            wake_other(removed, entry.owner);
            return Ok(Registered::AlreadyWoken);
        }
        let displaced = match t.entries.get_mut(&key) {
            Some(old) if old.owner == entry.owner => {
                // Still registered (a poll that was not a wake-up): keep its deadline.
                if !old.waker.will_wake(&entry.waker) {
                    std::mem::swap(&mut old.waker, &mut entry.waker);
                }
                drop(t);
                // (`entry`, now holding the replaced waker, drops here, after the lock.)
                return Ok(Registered::Yes);
            }
            Some(_) => t.take(key),
            None => None,
        };
        let owner = entry.owner;
        // An end that watches its peer through a pidfd: the peer-poll thread waits on it.
        #[cfg(not(mirror_ring_loom))]
        helper::watch_peer(self, &mut t, &mut entry);
        #[cfg(not(mirror_ring_loom))]
        let notify = match helper::assign(self, &mut t, &mut entry) {
            Ok(notify) => notify,
            Err(e) => {
                drop(t);
                wake_other(displaced, owner);
                return Err(e);
            }
        };
        #[cfg(mirror_ring_loom)]
        {
            entry.helper = 0;
        }
        t.entries.insert(key, entry);
        drop(t);
        #[cfg(not(mirror_ring_loom))]
        if let Some(slot) = notify {
            slot.notify();
        }
        wake_other(displaced, owner);
        Ok(Registered::Yes)
    }

    /// Removes `owner`'s entry for `key`; what had become of it. (The entry is dropped after
    /// the lock is released: see `register`.) Another park's entry for the word stays.
    fn deregister(&self, key: usize, owner: u64) -> Status {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let ours = t.entries.get(&key).is_some_and(|e| e.owner == owner);
        match if ours { t.take(key) } else { None } {
            None if t.timed.remove(&(key, owner)) => Status::Timer,
            None => Status::Gone,
            Some(e) => {
                #[cfg(not(mirror_ring_loom))]
                let slot = (!e.direct).then(|| t.helpers[e.helper].clone());
                drop(t);
                drop(e);
                // Let its helper drop the mapping it holds for the wait, now.
                #[cfg(not(mirror_ring_loom))]
                if let Some(slot) = slot {
                    slot.notify();
                }
                Status::Registered
            }
        }
    }

    /// What became of `owner`'s registration for `key` (a timer's mark is read once).
    fn status(&self, key: usize, owner: u64) -> Status {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if t.entries.get(&key).is_some_and(|e| e.owner == owner) {
            Status::Registered
        } else if t.timed.remove(&(key, owner)) {
            Status::Timer
        } else {
            Status::Gone
        }
    }

    /// The publisher's side of a thread ring: takes the direct entry for `key`, if any.
    fn take_direct(&self, key: usize) -> Option<Waker> {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if t.entries.get(&key).is_some_and(|e| e.direct) {
            return t.take(key).map(|e| e.waker);
        }
        None
    }

    /// Removes and returns the wakers of `helper`'s entries that are due (see [`Entry::due`]).
    /// Used by the helper threads and, for one word, by the loom model of the helper path.
    fn fire(&self, helper: usize, now: Instant) -> Vec<Waker> {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let due: Vec<(usize, bool)> = t
            .entries
            .iter_mut()
            .filter(|(_, e)| e.helper == helper)
            .filter_map(|(k, e)| e.due(now).map(|timed| (*k, timed)))
            .collect();
        let mut wakers = Vec::with_capacity(due.len());
        for (k, timed) in due {
            if let Some(e) = t.take(k) {
                if timed {
                    t.timed.insert((k, e.owner));
                }
                wakers.push(e.waker);
            }
        }
        // Entries whose deadline passed (or nearly) with nothing to do wait another interval,
        // all from now: after one round their checks fall together. Those that watch a peer
        // process through a pidfd have it polled first, all in one call, outside the lock;
        // not those whose pidfd the peer-poll thread waits on (`armed`): it reports the exit.
        let mut probes: Vec<(usize, u64, Arc<OwnedFd>)> = Vec::new();
        let mut checked: Vec<Duration> = Vec::new();
        for (k, e) in t.entries.iter_mut() {
            if e.helper == helper && e.bound && e.deadline <= now + SLACK {
                e.deadline = now + e.interval;
                if !checked.contains(&e.interval) {
                    checked.push(e.interval);
                }
                if let Some(fd) = e.watched.as_ref().filter(|w| w.armed == 0).and_then(|w| w.pidfd.clone()) {
                    probes.push((*k, e.owner, fd));
                }
            }
        }
        // (What new entries of those intervals join: `helper::align`.)
        #[cfg(not(mirror_ring_loom))]
        for interval in checked {
            helper::checked(&mut t, helper, interval, now + interval);
        }
        #[cfg(mirror_ring_loom)]
        let _ = checked;
        drop(t);
        if !probes.is_empty() {
            self.probe(&probes, &mut wakers);
        }
        wakers
    }

    /// Polls the pidfds of entries that watch a peer process (`fire`): the task of an entry
    /// whose peer's pidfd reads as exited, or of every one if the poll fails, is woken (and the
    /// entry removed, as at a deadline), so that its own check tells. Only a readable pidfd
    /// proves the death; the task's check proves it again and latches it.
    fn probe(&self, probes: &[(usize, u64, Arc<OwnedFd>)], wakers: &mut Vec<Waker>) {
        use std::os::fd::AsFd;
        let fds: Vec<_> = probes.iter().map(|(_, _, fd)| fd.as_fd()).collect();
        let exited = crate::sys::pidfds_exited(&fds).unwrap_or_else(|_| vec![true; fds.len()]);
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        for ((k, owner, _), exited) in probes.iter().zip(exited) {
            // Only the probed park's entry: one registered since, under the same word, has a
            // deadline of its own.
            if exited && t.entries.get(k).is_some_and(|e| e.owner == *owner) {
                if let Some(e) = t.take(*k) {
                    t.timed.insert((*k, e.owner));
                    wakers.push(e.waker);
                }
            }
        }
    }
}

/// The function `FutexWord::wake` calls first (`sync::set_direct_wake`): wakes a thread
/// ring's async end parked on the word at `key`, with no system call of ours.
///
/// The waker is the caller's code, run inside the publishing call. One that forks carries
/// that call into the child, past the check every call makes first (`docs::lifecycle`,
/// "`fork()`"), where the rest of it would go on with the parent's ring: storing to its header
/// and data, or, with `dont_fork`, faulting on pages the child does not have. So the child's
/// copy of the call ends here, in a panic that says why (the only way out of a publish, which
/// returns nothing, that stops the rest of the call at once). The parent's call goes on.
pub(crate) fn direct_wake(key: usize) -> bool {
    match registry().take_direct(key) {
        Some(w) => {
            let generation = crate::sync::fork_generation();
            w.wake();
            if crate::sync::fork_generation() != generation {
                forked_in_a_waker();
            }
            true
        }
        None => false,
    }
}

#[cold]
#[inline(never)]
fn forked_in_a_waker() -> ! {
    panic!(
        "a Waker forked the process while a mirror-ring end was waking it: the child's copy of the \
         waking ring call cannot go on (the ring is its parent's; see mirror_ring::docs::lifecycle)"
    )
}

/// This process's registry. A forked child gets a fresh one: the parent's may be locked by a
/// thread that does not exist in the child, and its helper threads are not there either (the
/// parent's registry is left as it was, a small leak per forked child that parks).
#[cfg(not(mirror_ring_loom))]
pub(crate) fn registry() -> &'static Registry {
    use std::sync::atomic::AtomicPtr;
    static REGISTRY: AtomicPtr<Registry> = AtomicPtr::new(std::ptr::null_mut());
    let generation = crate::sync::fork_generation();
    loop {
        // Acquire: pairs with the AcqRel exchange below, which published the registry.
        let p = REGISTRY.load(std::sync::atomic::Ordering::Acquire);
        // SAFETY: a non-null pointer here came from `Box::into_raw` below and is never freed
        // (registries live for the rest of the process).
        if let Some(r) = unsafe { p.as_ref() } {
            if r.generation == generation {
                return r;
            }
        }
        let new = Box::into_raw(Box::new(Registry::new(generation)));
        match REGISTRY.compare_exchange(
            p,
            new,
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
        ) {
            // SAFETY: just published; never freed.
            Ok(_) => return unsafe { &*new },
            // Another thread installed one first: free ours (nobody else saw it) and look again.
            // SAFETY: `new` came from Box::into_raw above and was never shared.
            Err(_) => drop(unsafe { Box::from_raw(new) }),
        }
    }
}

#[cfg(mirror_ring_loom)]
loom::lazy_static! {
    static ref REGISTRY: Registry = Registry::new(0);
}

/// Under loom: one registry per model execution.
#[cfg(mirror_ring_loom)]
pub(crate) fn registry() -> &'static Registry {
    &REGISTRY
}

/// For the loom model of the helper path: what a helper does after its wait on one word.
#[cfg(mirror_ring_loom)]
pub(crate) fn fire_for_model() -> Vec<Waker> {
    registry().fire(0, clock_now())
}

/// For the loom models: whether any entry is registered.
#[cfg(mirror_ring_loom)]
pub(crate) fn registered_for_model() -> bool {
    !registry().table.lock().unwrap().entries.is_empty()
}

#[cfg(not(mirror_ring_loom))]
mod helper {
    //! The helper threads: each sleeps in `futex_waitv` on the words of up to 127 parked ends
    //! of rings between processes, plus its own control word, bounded by the nearest
    //! deadline of its entries. And the peer-poll thread, which sleeps in `epoll_wait` on the
    //! pidfds of those ends' peers, so that a death is seen at once and the helpers need not
    //! look for one every watch interval.

    use std::os::fd::{AsFd, OwnedFd};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::{Entry, Registry, Table};
    use crate::ring::RingMem;
    use crate::sys::{self, FutexWaitv, WaitvOutcome, FUTEX_WAITV_MAX};
    use crate::wait::{SAFETY_INTERVAL, WATCH_INTERVAL};

    /// How often a helper looks at its words when `futex_waitv` is refused (before Linux
    /// 5.16, or a sandbox): the longest delay a wake of a ring between processes then takes.
    pub(super) const FALLBACK_POLL: Duration = Duration::from_millis(1);

    /// Whether `futex_waitv` failing with `errno` refuses the call for good: a refusal
    /// (`sys::is_refusal_errno`: missing, denied, or a form this kernel does not take; the
    /// waiters are well formed), or `EACCES`, which some sandboxes answer. Anything else
    /// (`ENOMEM`) may pass.
    fn refuses_waitv(errno: i32) -> bool {
        sys::is_refusal_errno(errno) || errno == libc::EACCES
    }

    /// One helper thread, as the registry sees it.
    #[derive(Clone)]
    pub(super) struct Slot {
        shared: Arc<Shared>,
        /// Entries of rings between processes it waits on (at most `FUTEX_WAITV_MAX - 1`).
        futex_entries: usize,
        /// When it will wake at the latest (`None`: only when notified).
        wake_at: Option<Instant>,
        /// The next check of its entries bounded by each interval (one per interval in use):
        /// a new entry joins it ([`align`]), so that entries parked at different times are
        /// checked in one wake-up, not one each.
        checks: Vec<(Duration, Instant)>,
    }

    /// A new entry bounded by an interval (under the table's lock, its helper chosen) takes
    /// the next check of its helper's entries of the same interval as its deadline, when that
    /// check comes no later than its own deadline: its first check may come sooner than an
    /// interval after it parked (a sooner look is only a safety check made early; a missed
    /// wake-up still needs two checks a whole interval apart), never later. Otherwise its
    /// deadline becomes that check. Without this, entries parked at different times were
    /// each checked on their own, up to one wake-up of the helper per entry and interval
    /// (deadlines within `SLACK` of each other are checked together, no more).
    fn align(slot: &mut Slot, e: &mut Entry, now: Instant) {
        if !e.bound {
            return;
        }
        match slot.checks.iter().find(|(interval, _)| *interval == e.interval) {
            Some(&(_, at)) if at > now && at <= e.deadline => e.deadline = at,
            _ => slot.set_next_check(e.interval, e.deadline),
        }
    }

    /// The helper checked its entries of `interval` due now and set their next check at `at`:
    /// what new entries of that interval join ([`align`]).
    pub(super) fn checked(t: &mut Table, helper: usize, interval: Duration, at: Instant) {
        if let Some(slot) = t.helpers.get_mut(helper) {
            slot.set_next_check(interval, at);
        }
    }

    impl Slot {
        /// Records `at` as the next check of this helper's entries of `interval`.
        fn set_next_check(&mut self, interval: Duration, at: Instant) {
            match self.checks.iter_mut().find(|(i, _)| *i == interval) {
                Some((_, next)) => *next = at,
                None => self.checks.push((interval, at)),
            }
        }
    }

    struct Shared {
        /// Bumped (and woken) to make the thread look at the table again.
        control: AtomicU32,
    }

    impl Shared {
        fn new() -> Arc<Shared> {
            Arc::new(Shared { control: AtomicU32::new(0) })
        }

        fn notify(&self) {
            // Relaxed: the table's lock orders what the thread reads; this only ends its sleep
            // (the kernel compares the word, so a bump before it sleeps is not lost).
            self.control.fetch_add(1, Ordering::Relaxed);
            sys::futex_wake_private(&self.control);
        }
    }

    impl Slot {
        /// One of its entries of a ring between processes left the table.
        pub(super) fn left(&mut self) {
            self.futex_entries = self.futex_entries.saturating_sub(1);
        }

        pub(super) fn notify(&self) {
            self.shared.notify();
        }
    }

    /// The peer-poll thread, as the registry sees it.
    #[derive(Default)]
    pub(super) struct PeerPoll {
        /// Its epoll instance, once it runs.
        epoll: Option<Arc<OwnedFd>>,
        /// The last token a pidfd was armed with.
        armings: u64,
        /// When it last could not start: tried again a second later at the earliest (until then
        /// the helpers watch every peer each watch interval, as they do without the thread).
        failed_at: Option<Instant>,
    }

    /// An entry is being registered (under the table's lock). If it watches its peer through
    /// a pidfd, arms that pidfd in the peer-poll thread's epoll instance (starting the thread
    /// if it is not running) for one report of the peer's exit, and lengthens the entry's
    /// interval to the safety interval: the thread sees the death at once, so its helper need
    /// not look for one every watch interval. Its helper still makes the other checks (a
    /// missed wake-up, a role changing hands), at the longer interval. When the pidfd cannot
    /// be armed, or the thread cannot start, the entry keeps the watch interval.
    ///
    /// A thread that starts here (the first, or one after a start or a wait that failed) also
    /// arms every entry already parked at the watch interval: those that parked while there
    /// was no thread would otherwise keep it until they park again.
    ///
    /// Armed one-shot, an exit is reported once per arming: each registration of a park arms
    /// its pidfd again. Each arming carries a token of its own, which the report names, and
    /// only the entry armed with it is made due. Not the descriptor's number: epoll drops a
    /// registration only when the pidfd's file is released, which a forked child holding a copy
    /// delays, so a registration of a pidfd this process closed long ago can still report, and
    /// its number may name another end's pidfd by then.
    pub(super) fn watch_peer(reg: &'static Registry, t: &mut Table, e: &mut Entry) {
        if !unarmed(e) {
            return;
        }
        let p = &mut t.peers;
        let epoll = match &p.epoll {
            Some(ep) => ep.clone(),
            None if p.failed_at.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) => return,
            None => {
                let started = sys::epoll_create().map(Arc::new).and_then(|ep| {
                    let theirs = ep.clone();
                    std::thread::Builder::new()
                        .name("mirror-ring-pidfds".to_owned())
                        .spawn(move || poll_peers(reg, theirs))
                        .map(|_| ep)
                });
                match started {
                    Ok(ep) => {
                        p.epoll = Some(ep.clone());
                        for parked in t.entries.values_mut().filter(|parked| unarmed(parked)) {
                            arm(&mut t.peers, &ep, parked);
                        }
                        ep
                    }
                    Err(_) => {
                        p.failed_at = Some(Instant::now());
                        return;
                    }
                }
            }
        };
        arm(&mut t.peers, &epoll, e);
    }

    /// Whether `e` watches its peer through a pidfd that is not armed: a park bounded by the
    /// watch interval. (An entry whose peer's exit was reported is one too, until its task
    /// looks; armed again, its pidfd reports at once.)
    fn unarmed(e: &Entry) -> bool {
        e.bound && e.interval == WATCH_INTERVAL && e.watched.as_ref().is_some_and(|w| w.pidfd.is_some() && w.armed == 0)
    }

    /// Arms `e`'s pidfd in `epoll` with a new token; on success the entry sleeps the safety
    /// interval (see [`watch_peer`]).
    fn arm(p: &mut PeerPoll, epoll: &OwnedFd, e: &mut Entry) {
        let Some(w) = e.watched.as_mut() else { return };
        let Some(pidfd) = w.pidfd.as_ref() else { return };
        p.armings += 1;
        if sys::epoll_arm_once(epoll.as_fd(), pidfd.as_fd(), p.armings).is_ok() {
            w.armed = p.armings;
            e.deadline += SAFETY_INTERVAL - WATCH_INTERVAL;
            e.interval = SAFETY_INTERVAL;
        }
    }

    /// The peer-poll thread's loop: waits in `epoll_wait`, with no time limit, for the pidfds
    /// armed by `watch_peer`. An exit reported makes the entry armed with that token due at
    /// once, back at the watch interval, and its helper is told: the helper's probe of the pidfd
    /// wakes the task, whose own check proves the death. If the wait fails, every entry goes
    /// back to the watch interval (the helpers watch the peers, as without the thread) and the
    /// thread ends; the next registration starts another.
    fn poll_peers(reg: &'static Registry, epoll: Arc<OwnedFd>) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
        loop {
            let found = sys::epoll_wait(epoll.as_fd(), &mut events);
            let failed = found.is_err();
            let tokens = found.unwrap_or_default();
            if tokens.is_empty() && !failed {
                continue;
            }
            let helpers: Vec<Arc<Shared>> = {
                let mut t = reg.table.lock().unwrap_or_else(|e| e.into_inner());
                if failed && t.peers.epoll.as_ref().is_some_and(|ep| Arc::ptr_eq(ep, &epoll)) {
                    t.peers.epoll = None;
                    t.peers.failed_at = Some(Instant::now());
                }
                let now = Instant::now();
                let mut told: Vec<usize> = Vec::new();
                for e in t.entries.values_mut() {
                    let Some(w) = e.watched.as_mut() else { continue };
                    if w.armed == 0 || !(failed || tokens.contains(&w.armed)) {
                        continue;
                    }
                    w.armed = 0;
                    e.interval = WATCH_INTERVAL;
                    e.deadline = if failed { e.deadline.min(now + WATCH_INTERVAL) } else { now };
                    if !told.contains(&e.helper) {
                        told.push(e.helper);
                    }
                }
                told.iter().filter_map(|&h| t.helpers.get(h)).map(|slot| slot.shared.clone()).collect()
            };
            for h in helpers {
                h.notify();
            }
            if failed {
                return;
            }
        }
    }

    /// The error of a helper thread that could not start. Not `WouldBlock`, the kind of the
    /// EAGAIN `pthread_create` gives at the thread limit: from an async call that would read
    /// as "not ready, poll again", and nothing would say that a thread could not start.
    fn no_helper(err: std::io::Error) -> std::io::Error {
        let kind = if err.kind() == std::io::ErrorKind::WouldBlock { std::io::ErrorKind::Other } else { err.kind() };
        crate::error::Context::explain_as(
            kind,
            err,
            "cannot start the thread that parks async ends (the thread limit, RLIMIT_NPROC or \
             kernel.threads-max, or memory); nothing is registered"
                .to_owned(),
        )
    }

    /// Chooses the helper for a new entry (starting one if needed) and says which helper must
    /// be told to look again.
    pub(super) fn assign(reg: &'static Registry, t: &mut Table, e: &mut Entry) -> std::io::Result<Option<Slot>> {
        let idx = if e.direct {
            0
        } else {
            match t.helpers.iter().position(|h| h.futex_entries < FUTEX_WAITV_MAX - 1) {
                Some(i) => i,
                None => t.helpers.len(),
            }
        };
        while t.helpers.len() <= idx {
            let shared = Shared::new();
            let index = t.helpers.len();
            let s = shared.clone();
            std::thread::Builder::new()
                .name(format!("mirror-ring-park-{index}"))
                .spawn(move || run(reg, index, s))
                .map_err(no_helper)?;
            t.helpers.push(Slot { shared, futex_entries: 0, wake_at: None, checks: Vec::new() });
        }
        e.helper = idx;
        let slot = &mut t.helpers[idx];
        align(slot, e, super::clock_now());
        let notify = if !e.direct {
            slot.futex_entries += 1;
            true
        } else {
            slot.wake_at.map_or(true, |w| e.deadline < w)
        };
        if notify {
            slot.wake_at = Some(slot.wake_at.map_or(e.deadline, |w| w.min(e.deadline)));
            return Ok(Some(slot.clone()));
        }
        Ok(None)
    }

    /// The helper thread's loop.
    fn run(reg: &'static Registry, index: usize, shared: Arc<Shared>) {
        let mut waiters: Vec<FutexWaitv> = Vec::with_capacity(FUTEX_WAITV_MAX);
        let mut hold: Vec<Arc<RingMem>> = Vec::new();
        loop {
            waiters.clear();
            hold.clear();
            let (deadline, polling, control) = {
                let mut t = reg.table.lock().unwrap_or_else(|e| e.into_inner());
                // Relaxed: read under the lock; a later bump ends the futex wait below.
                let control = shared.control.load(Ordering::Relaxed);
                let mut deadline: Option<Instant> = None;
                let mut futex = 0;
                for e in t.entries.values().filter(|e| e.helper == index) {
                    deadline = Some(deadline.map_or(e.deadline, |d| d.min(e.deadline)));
                    if !e.direct {
                        futex += 1;
                        // SAFETY: the entry keeps the header mapped (and `hold` keeps it mapped
                        // through the wait below).
                        let word: &AtomicU32 = unsafe { e.word.get() };
                        waiters.push(FutexWaitv::new(word, 1, true));
                        if let Some(r) = &e.ring {
                            hold.push(r.clone());
                        }
                    }
                }
                t.helpers[index].futex_entries = futex;
                t.helpers[index].wake_at = deadline;
                waiters.push(FutexWaitv::new(&shared.control, control, false));
                // Relaxed: the fallback flag publishes no memory; it only selects how to wait.
                (deadline, futex > 0 && reg.fallback.load(Ordering::Relaxed), control)
            };
            let now = Instant::now();
            let mut timeout = deadline.map(|d| d.saturating_duration_since(now));
            if polling {
                timeout = Some(timeout.map_or(FALLBACK_POLL, |t| t.min(FALLBACK_POLL)));
            }
            if polling || waiters.len() == 1 {
                // Only the control word (or no futex_waitv here): a plain private wait.
                sys::futex_wait_private(&shared.control, control, timeout);
            } else {
                let abs = timeout.map(|t| sys::monotonic_now() + t);
                // SAFETY: every word is inside a header kept mapped by `hold` for the call;
                // the control word lives in `shared`, which this thread owns a share of.
                match unsafe { sys::futex_waitv(&waiters, abs) } {
                    Ok(WaitvOutcome::Woken(_) | WaitvOutcome::Changed | WaitvOutcome::TimedOut) => {}
                    Ok(WaitvOutcome::Spurious) => {}
                    Err(e) if e.raw_os_error().is_some_and(refuses_waitv) => {
                        // Refused (ENOSYS before 5.16, EPERM or ENOSYS from a sandbox): poll
                        // from now on, in every helper of this process. (Relaxed: see the load
                        // above; another helper learns it at its next wait, or its own refusal.)
                        reg.fallback.store(true, Ordering::Relaxed);
                        continue;
                    }
                    Err(_) => {
                        // A failure that may pass (ENOMEM: the kernel could not copy the
                        // waiters in): this round polls, the next tries `futex_waitv` again.
                        // Taken for a refusal, one moment of memory pressure made every
                        // helper poll every millisecond for the life of the process.
                        let poll = timeout.map_or(FALLBACK_POLL, |t| t.min(FALLBACK_POLL));
                        sys::futex_wait_private(&shared.control, control, Some(poll));
                    }
                }
            }
            hold.clear();
            for w in reg.fire(index, Instant::now()) {
                // A waker is the caller's code. One that panics (an executor that is gone,
                // say) must not end this thread, which serves every end parked on it: the
                // panic is reported (by the panic hook) and the loop goes on.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.wake()));
            }
        }
    }
}

#[cfg(all(test, not(mirror_ring_loom)))]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering as O};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    use std::time::{Duration, Instant};

    use tokio::io::AsyncReadExt;

    use super::{registry, REARM_INTERVAL};
    use crate::header::Word;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, O::SeqCst);
        }
    }

    /// As for a blocking end (`ring::tests::a_served_spin_restores_the_whole_budget`): an
    /// async end whose retry phase was cut gets its whole budget back when a retry finds the
    /// bytes.
    #[test]
    fn a_served_retry_restores_the_whole_budget() {
        let full = Duration::from_millis(50);
        let (mut tx, rx) = crate::RingOptions::new().capacity(4096).spin_budget(full).build().unwrap();
        let mut rx = rx.into_async().unwrap();
        let spinning = &rx.get_ref().end.spinning;
        let mut decayed = spinning.get();
        for _ in 0..crate::wait::MISSES_TO_HALVE {
            decayed.missed();
        }
        assert_eq!(decayed.budget(), full / 2);
        spinning.set(decayed);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut buf = [0u8; 4];
        {
            let mut read = pin!(rx.read(&mut buf));
            // Nothing yet: the retry phase reschedules the task.
            assert!(read.as_mut().poll(&mut cx).is_pending());
            assert_eq!(count.0.load(O::SeqCst), 1, "a retry reschedules the task");
            std::io::Write::write_all(&mut tx, b"data").unwrap();
            assert!(matches!(read.as_mut().poll(&mut cx), Poll::Ready(Ok(4))));
        }
        assert_eq!(rx.stats().parks, 0, "served while retrying, not after a park");
        assert_eq!(rx.get_ref().end.spinning.get().budget(), full);
        // A call cancelled in its retry phase, and a later one that finds bytes at once: the
        // leftover start is stale, so that is no served retry and the cut budget stays cut.
        rx.get_ref().end.spinning.set(decayed);
        {
            let mut read = pin!(rx.read(&mut buf));
            assert!(read.as_mut().poll(&mut cx).is_pending());
        }
        std::thread::sleep(full / 2 + 2 * REARM_INTERVAL);
        std::io::Write::write_all(&mut tx, b"more").unwrap();
        assert!(matches!(pin!(rx.read(&mut buf)).as_mut().poll(&mut cx), Poll::Ready(Ok(4))));
        assert_eq!(rx.get_ref().end.spinning.get().budget(), full / 2, "a stale start restored the budget");
    }

    /// A park whose flag was cleared without a wake-up reaching it (a waker between its swap
    /// and its look at the registry, or a hostile clear), polled again within the re-arm
    /// interval: it raises the flag with a fence only, so it must register with the short
    /// deadline and be woken when the interval ends, not keep the old entry's 100 ms.
    #[test]
    fn a_park_raised_again_with_a_fence_gets_the_short_deadline() {
        for _ in 0..20 {
            let (_tx, rx) = crate::RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).build().unwrap();
            let mut rx = rx.into_async().unwrap();
            let hdr: *const crate::header::Header = rx.get_ref().end.header().unwrap();
            // SAFETY: `_tx` and `rx` keep the header mapped until the end of this iteration.
            let word = unsafe { &*hdr }.word(Word::Data);
            let key = word as *const _ as usize;
            let count = Arc::new(Count(AtomicUsize::new(0)));
            let waker = Waker::from(count.clone());
            let mut cx = Context::from_waker(&waker);
            let mut buf = [0u8; 4];
            let mut read = pin!(rx.read(&mut buf));
            let first = Instant::now();
            assert!(read.as_mut().poll(&mut cx).is_pending());
            // The flag cleared, as a waker's swap does before it takes the registry's lock.
            word.store(0, crate::sync::Ordering::Relaxed);
            assert!(read.as_mut().poll(&mut cx).is_pending());
            let (bound, left) = {
                // The clock is read under the registry's lock: the helper removes the entry only
                // under it, and only at its deadline (the interval after the first barrier,
                // which came after `first`), so one found in time is still there.
                let t = registry().table.lock().unwrap();
                if first.elapsed() >= REARM_INTERVAL / 2 {
                    continue; // Too slow to land inside the interval: the second park was strong.
                }
                let e = t.entries.get(&key).expect("registered");
                (e.bound, e.deadline.saturating_duration_since(Instant::now()))
            };
            assert!(!bound && left <= REARM_INTERVAL, "kept the old entry: bound {bound}, {left:?} left");
            let woken = Instant::now() + Duration::from_secs(5);
            while count.0.load(O::SeqCst) == 0 {
                assert!(Instant::now() < woken, "the short registration was never woken");
                std::thread::sleep(Duration::from_millis(1));
            }
            return;
        }
        panic!("no second poll landed within the re-arm interval in 20 tries");
    }
}
