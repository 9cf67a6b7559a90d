//! The primitives the protocol is built from, swappable for loom's under `cfg(loom)`.
//!
//! Normally: `core` atomics, the Linux futex (shared, never `FUTEX_PRIVATE_FLAG`) and an
//! asymmetric barrier pair built on `membarrier(2)`. Under `--cfg loom`: loom's atomics, a
//! futex emulated with loom's `Mutex` + `Condvar` (the kernel's futex compares the word under
//! a lock too, so the emulation keeps its "no lost wake-up between check and sleep"
//! guarantee), and both barriers modelled as `fence(SeqCst)`, which is what the asymmetric pair
//! guarantees to each other.
//!
//! # The asymmetric barrier pair
//!
//! A sleeper must not miss the publish that should wake it. That is a store-buffering
//! (Dekker) pattern: the sleeper stores "I sleep" then loads the cursor; the publisher stores
//! the cursor then loads "anyone asleep?". Each side needs a StoreLoad barrier between its
//! store and its load, or both can read the old values and the sleeper sleeps through the
//! publish. A full fence on every commit costs ~20 ns (more after a copy, since it drains the
//! store buffer), enough to halve the 64-byte rate.
//!
//! So the cost is moved to the sleeper, who is about to spend ~50 µs in the kernel anyway:
//! the publisher uses [`light_barrier`] (a compiler fence only), the sleeper uses
//! [`heavy_barrier`] (`membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`), which runs a full
//! barrier on every CPU currently running a thread of a registered process. Either the
//! publisher's cursor store precedes that barrier in its program order (and is visible to the
//! sleeper's recheck), or its waiter-flag load follows it (and sees the flag). Registration is
//! per process and is not inherited by `fork`, so every process registers when it claims a
//! role ([`register_process`]), and a forked child starts unregistered (reset by an atfork
//! handler). A process that cannot register (old kernel, seccomp) uses a full fence for both
//! barriers; a sleeper whose `membarrier` call fails also caps its sleep (see `wait.rs`).

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicI32, AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicI32, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
mod imp {
    use super::{fence, Ordering};
    use crate::header::{Header, Word};
    use crate::sys;
    use std::sync::atomic::{compiler_fence, AtomicU8, AtomicUsize};
    use std::sync::Once;
    use std::time::Duration;

    const UNKNOWN: u8 = 0;
    const REGISTERED: u8 = 1;
    const UNAVAILABLE: u8 = 2;

    /// This process's membarrier registration. Reset to UNKNOWN in a forked child.
    static MEMBARRIER: AtomicU8 = AtomicU8::new(UNKNOWN);
    /// Incremented in every forked child: an end claimed at another generation belongs to the
    /// parent.
    static FORK_GENERATION: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn after_fork_in_child() {
        MEMBARRIER.store(UNKNOWN, Ordering::Relaxed);
        FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
    }

    /// Registers this process for asymmetric barriers (once per process; again in a forked
    /// child) and installs the atfork handler. Call before using an end.
    pub(crate) fn register_process() {
        static ATFORK: Once = Once::new();
        ATFORK.call_once(|| {
            // Without the handler a forked child would believe itself registered; if it cannot
            // be installed, never use the light barrier.
            if sys::at_fork_child(after_fork_in_child).is_err() {
                MEMBARRIER.store(UNAVAILABLE, Ordering::Relaxed);
            }
        });
        if MEMBARRIER.load(Ordering::Relaxed) == UNKNOWN {
            let state = if sys::membarrier_register_global_expedited().is_ok() { REGISTERED } else { UNAVAILABLE };
            // Relaxed: the value only selects which barrier this process uses; a racing
            // registration in another thread stores the same value.
            let _ = MEMBARRIER.compare_exchange(UNKNOWN, state, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// The current fork generation of this process.
    #[inline]
    pub(crate) fn fork_generation() -> usize {
        FORK_GENERATION.load(Ordering::Relaxed)
    }

    /// The publisher's half of the pair: between the cursor store and the waiter-flag load.
    #[inline(always)]
    pub(crate) fn light_barrier() {
        if MEMBARRIER.load(Ordering::Relaxed) == REGISTERED {
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
    }

    /// The sleeper's half: between setting the waiter flag and rechecking the cursor. Returns
    /// false if only a local fence could be issued (then the sleeper must bound its sleep).
    pub(crate) fn heavy_barrier() -> bool {
        fence(Ordering::SeqCst);
        sys::membarrier_global_expedited().is_ok()
    }

    /// Sleeps on `w` while it holds `expected`, for at most `timeout`.
    pub(crate) fn futex_wait(hdr: &Header, w: Word, expected: u32, timeout: Option<Duration>) {
        // An error here (EFAULT, EINVAL) cannot happen for a live, aligned word; if it did, the
        // caller's loop re-checks its condition and simply spins.
        let _ = sys::futex_wait(hdr.word(w), expected, timeout);
    }

    /// Wakes the (single) sleeper on `w`.
    pub(crate) fn futex_wake(hdr: &Header, w: Word) {
        sys::futex_wake(hdr.word(w), 1);
    }

    /// Spins or yields once.
    pub(crate) fn pause(backoff: &crossbeam_utils::Backoff) {
        backoff.snooze();
    }
}

#[cfg(loom)]
mod imp {
    use super::{fence, Ordering};
    use crate::header::{Header, Word};
    use std::time::Duration;

    /// A futex emulated for loom: `wait` re-checks the word under the lock, `wake` takes the
    /// lock before notifying, as the kernel does with its hash-bucket lock.
    #[derive(Debug, Default)]
    pub(crate) struct FutexEmu {
        lock: loom::sync::Mutex<()>,
        cv: loom::sync::Condvar,
    }

    pub(crate) fn register_process() {}

    pub(crate) fn fork_generation() -> usize {
        0
    }

    pub(crate) fn light_barrier() {
        fence(Ordering::SeqCst);
    }

    pub(crate) fn heavy_barrier() -> bool {
        fence(Ordering::SeqCst);
        true
    }

    /// Timeouts are not modelled: a lost wake-up shows up as a deadlock, which loom reports.
    pub(crate) fn futex_wait(hdr: &Header, w: Word, expected: u32, _timeout: Option<Duration>) {
        let g = hdr.futex.lock.lock().unwrap();
        if hdr.word(w).load(Ordering::SeqCst) != expected {
            return;
        }
        drop(hdr.futex.cv.wait(g).unwrap());
    }

    pub(crate) fn futex_wake(hdr: &Header, _w: Word) {
        let _g = hdr.futex.lock.lock().unwrap();
        hdr.futex.cv.notify_all();
    }

    pub(crate) fn pause(_backoff: &crossbeam_utils::Backoff) {
        loom::thread::yield_now();
    }
}

pub(crate) use imp::*;
