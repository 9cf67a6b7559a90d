//! Blocking: spin, then sleep on a futex word, without lost wake-ups; and noticing a dead peer.
//!
//! # The sleep protocol
//!
//! A side that cannot proceed first spins (crossbeam `Backoff`, then yields) for the spin
//! budget, because a futex round trip costs ~50 µs on the machines this was tuned on while a
//! spinning hand-over costs ~130 ns. Then it parks:
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
//! # Bounded sleeps and dead peers
//!
//! A process can die without closing its end. Between processes every sleep is bounded by
//! [`WATCH_INTERVAL`], after which the peer's liveness is checked (`shared.rs`), so a blocked
//! call notices a dead peer well within 100 ms. A peer that has not claimed its role yet is not
//! watched: the call simply keeps waiting (use a timeout variant).

use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;

use crate::header::{Header, Word};
use crate::protocol::Stop;
use crate::sync::{futex_wait, heavy_barrier, pause, Ordering};

/// How often a sleeper that watches a peer process wakes to check that the peer lives.
pub(crate) const WATCH_INTERVAL: Duration = Duration::from_millis(25);

/// The default time to spin before sleeping. Measured (see BENCHMARKS.md): parking costs the
/// waker a syscall and the sleeper ~50 µs of wake-up latency, so spinning for about as long as
/// a park-and-wake round trip keeps the cost within 2x of the best choice in hindsight.
pub(crate) const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// Something that can tell whether the peer has died.
pub(crate) trait PeerCheck {
    /// Whether there is a peer process to watch (sleeps are then bounded).
    fn active(&self) -> bool;
    /// Whether the peer is known to be gone without having closed its end.
    fn gone(&mut self, hdr: &Header) -> bool;
}

/// No peer to watch: the other end lives in this process.
#[derive(Debug, Default)]
pub(crate) struct NoPeer;

impl PeerCheck for NoPeer {
    fn active(&self) -> bool {
        false
    }
    fn gone(&mut self, _hdr: &Header) -> bool {
        false
    }
}

/// Waits until `poll` returns `Some`, spinning for `spin` first and then sleeping on `word`.
/// `poll` must re-read everything it depends on from the header on each call.
pub(crate) fn wait_for<T>(
    hdr: &Header,
    word: Word,
    spin: Duration,
    deadline: Option<Instant>,
    peer: &mut dyn PeerCheck,
    mut poll: impl FnMut() -> Option<Result<T, Stop>>,
) -> Result<T, Stop> {
    if let Some(r) = poll() {
        return r;
    }
    // A peer already known (or now found) dead: do not wait a watch interval to say so again.
    // `gone` is rate-limited, so a busy ring pays a clock read here, not a system call.
    if peer.active() && peer.gone(hdr) {
        return poll().unwrap_or(Err(Stop::PeerDied));
    }
    let backoff = Backoff::new();
    let start = Instant::now();
    let mut last_check = start;
    loop {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(Stop::TimedOut);
        }
        if peer.active() && now.duration_since(last_check) >= WATCH_INTERVAL {
            last_check = now;
            if peer.gone(hdr) {
                // Whatever it committed before dying is visible now: drain it first.
                return poll().unwrap_or(Err(Stop::PeerDied));
            }
        }
        if cfg!(not(loom)) && now.duration_since(start) < spin {
            pause(&backoff);
        } else {
            let w = hdr.word(word);
            // Relaxed: the heavy barrier below orders this store before the recheck.
            w.store(1, Ordering::Relaxed);
            let strong = heavy_barrier();
            if let Some(r) = poll() {
                w.store(0, Ordering::Relaxed);
                return r;
            }
            let mut timeout = deadline.map(|d| d.saturating_duration_since(now));
            if peer.active() || !strong {
                // Bounded: to watch the peer, or because without membarrier a publisher that
                // uses the light barrier could be missed (only possible if this process cannot
                // use membarrier while the peer can).
                timeout = Some(timeout.map_or(WATCH_INTERVAL, |t| t.min(WATCH_INTERVAL)));
            }
            futex_wait(hdr, word, 1, timeout);
            w.store(0, Ordering::Relaxed);
            if peer.active() {
                last_check = Instant::now();
                if peer.gone(hdr) {
                    return poll().unwrap_or(Err(Stop::PeerDied));
                }
            }
        }
        if let Some(r) = poll() {
            return r;
        }
    }
}
