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
//! publish. A full fence on every commit drains the store buffer after the copy, which is
//! enough to halve the 64-byte rate (BENCHMARKS.md, "Blocking").
//!
//! So the cost is moved to the sleeper, who is about to spend a system call anyway: the
//! publisher uses [`publish_barrier`] (a compiler fence only, when allowed), the sleeper uses
//! [`park_barrier`] (`membarrier(2)`), which runs a full barrier on every CPU currently running
//! a thread of the processes it targets. Either the publisher's cursor store precedes that
//! barrier in its program order (and is visible to the sleeper's recheck), or its waiter-flag
//! load follows it (and sees the flag).
//!
//! Which halves pair is negotiated through the header, never assumed: each role records how
//! it parks (`RoleSlot::park`):
//! - `PARK_PRIVATE`: rings between threads. The sleeper issues
//!   `MEMBARRIER_CMD_PRIVATE_EXPEDITED`, which interrupts only the CPUs running this process,
//!   where the publisher lives (the ends of a thread ring belong to one process; a forked copy
//!   is inert).
//! - `PARK_GLOBAL`: rings between processes. The sleeper issues
//!   `MEMBARRIER_CMD_GLOBAL_EXPEDITED`, which interrupts the CPUs running any process
//!   registered for it; every process registers when it claims a role ([`register_process`]).
//!   A publisher uses the light half only if its own registration succeeded.
//! - `PARK_FENCE`: the sleeper could not register (old kernel, seccomp) and fences locally;
//!   a publisher then pays a full fence too.
//!
//! The publisher reads its peer's record on every publish (line 0 of the header, read-mostly:
//! an L1 hit). A sleeper whose membarrier call fails at park time downgrades its record to
//! `PARK_FENCE` and bounds that one sleep, since a publisher may have read the old record
//! (`wait.rs`). Every sleep is bounded in any case, so a missed wake-up delays, never hangs.
//!
//! membarrier registration is per process, inherited by `fork()` and cleared by `exec`
//! (measured, KERNEL.md); a child re-registers when it claims a role, which is harmless. The
//! heavy half is paid once per park, not once per timed wake-up (`wait.rs`): a global
//! expedited barrier interrupts every CPU running any registered process on the machine, so
//! an idle ring must not issue one per watch interval.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicI32, AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicI32, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
mod imp {
    use super::{fence, Ordering};
    use crate::header::{Header, Word, PARK_FENCE, PARK_GLOBAL, PARK_PRIVATE};
    use crate::sys;
    pub(crate) use crate::sys::FutexWake;
    use std::sync::atomic::{compiler_fence, AtomicU8, AtomicUsize};
    use std::sync::Once;
    use std::time::Duration;

    const UNKNOWN: u8 = 0;
    const REGISTERED: u8 = 1;
    const UNAVAILABLE: u8 = 2;

    /// Whether this process is registered as a target of global expedited barriers (what lets
    /// it publish with the light half to a `PARK_GLOBAL` sleeper in another process).
    static GLOBAL: AtomicU8 = AtomicU8::new(UNKNOWN);
    /// Whether this process is registered for private expedited barriers (what lets a sleeper
    /// of a thread ring park with `PARK_PRIVATE`).
    static PRIVATE: AtomicU8 = AtomicU8::new(UNKNOWN);
    /// Incremented in every forked child: an end claimed at another generation belongs to the
    /// parent.
    static FORK_GENERATION: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn after_fork_in_child() {
        FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
    }

    fn register(state: &AtomicU8, cmd: libc::c_int) -> bool {
        if state.load(Ordering::Relaxed) == UNKNOWN {
            let v = if sys::membarrier(cmd).is_ok() { REGISTERED } else { UNAVAILABLE };
            // Relaxed: the value only selects a barrier; a racing registration in another
            // thread stores the same value.
            let _ = state.compare_exchange(UNKNOWN, v, Ordering::Relaxed, Ordering::Relaxed);
        }
        state.load(Ordering::Relaxed) == REGISTERED
    }

    /// Prepares this process to use a ring end: installs the atfork handler (once) and
    /// registers for the barriers a role of this kind needs. Returns the park mode to record
    /// for the role: `PARK_GLOBAL` or `PARK_PRIVATE` when the registration succeeded,
    /// `PARK_FENCE` otherwise. `between_processes`: the peer may live in another process.
    pub(crate) fn register_process(between_processes: bool) -> u32 {
        static ATFORK: Once = Once::new();
        let mut atfork = true;
        ATFORK.call_once(|| atfork = sys::at_fork_child(after_fork_in_child).is_ok());
        if !atfork {
            // Without the handler a forked child could not tell that its ends are copies. This
            // cannot happen with glibc or musl (pthread_atfork fails only on ENOMEM); if it
            // does, the ring still works, with full fences.
            return PARK_FENCE;
        }
        if between_processes {
            if register(&GLOBAL, sys::MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) {
                return PARK_GLOBAL;
            }
        } else if register(&PRIVATE, sys::MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) {
            return PARK_PRIVATE;
        }
        PARK_FENCE
    }

    /// The current fork generation of this process.
    #[inline]
    pub(crate) fn fork_generation() -> usize {
        FORK_GENERATION.load(Ordering::Relaxed)
    }

    /// The publisher's half of the pair: between the cursor store and the waiter-flag load.
    /// `peer_park` is the sleeper's record (`Header::park_mode`).
    #[inline(always)]
    pub(crate) fn publish_barrier(peer_park: u32) {
        let light = match peer_park {
            PARK_GLOBAL => GLOBAL.load(Ordering::Relaxed) == REGISTERED,
            // Only a thread ring records PARK_PRIVATE, and its publisher is in this process.
            PARK_PRIVATE => true,
            _ => false,
        };
        if light {
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
    }

    /// The sleeper's half, for a sleeper that parks with `mode`: between setting the waiter
    /// flag and rechecking the cursor. `false` if the membarrier call failed: then the caller
    /// must downgrade its record to `PARK_FENCE` and bound this sleep (a publisher may have
    /// read the old record and used the light half). In `PARK_FENCE` mode the local fence is
    /// the whole half (the publisher fences too), so that is `true`.
    pub(crate) fn park_barrier(mode: u32) -> bool {
        fence(Ordering::SeqCst);
        let cmd = match mode {
            PARK_GLOBAL => sys::MEMBARRIER_CMD_GLOBAL_EXPEDITED,
            PARK_PRIVATE => sys::MEMBARRIER_CMD_PRIVATE_EXPEDITED,
            _ => return true,
        };
        sys::membarrier(cmd).is_ok()
    }

    /// Sleeps on `w` while it holds `expected`, for at most `timeout`.
    pub(crate) fn futex_wait(hdr: &Header, w: Word, expected: u32, timeout: Duration) -> FutexWake {
        sys::futex_wait(hdr.word(w), expected, Some(timeout))
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
    use crate::header::{Header, Word, PARK_GLOBAL};
    use std::time::Duration;

    /// How a futex wait ended (the same type as `sys::FutexWake`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum FutexWake {
        Woken,
        Changed,
        #[allow(dead_code)]
        TimedOut,
        #[allow(dead_code)]
        Spurious,
    }

    /// A futex emulated for loom: `wait` re-checks the word under the lock, `wake` takes the
    /// lock before notifying, as the kernel does with its hash-bucket lock.
    #[derive(Debug, Default)]
    pub(crate) struct FutexEmu {
        lock: loom::sync::Mutex<()>,
        cv: loom::sync::Condvar,
    }

    pub(crate) fn register_process(_between_processes: bool) -> u32 {
        PARK_GLOBAL
    }

    pub(crate) fn fork_generation() -> usize {
        0
    }

    pub(crate) fn publish_barrier(_peer_park: u32) {
        fence(Ordering::SeqCst);
    }

    pub(crate) fn park_barrier(_mode: u32) -> bool {
        fence(Ordering::SeqCst);
        true
    }

    /// Timeouts are not modelled: a lost wake-up shows up as a deadlock, which loom reports.
    pub(crate) fn futex_wait(hdr: &Header, w: Word, expected: u32, _timeout: Duration) -> FutexWake {
        let g = hdr.futex.lock.lock().unwrap();
        if hdr.word(w).load(Ordering::SeqCst) != expected {
            return FutexWake::Changed;
        }
        drop(hdr.futex.cv.wait(g).unwrap());
        FutexWake::Woken
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
