//! The primitives the protocol is built from: atomics, the futex word, the two halves of the
//! barrier pair, and the fork generation. Under `--cfg mirror_ring_loom` the atomics are loom's
//! and the futex word emulates the kernel's compare-and-sleep with a loom mutex and condition
//! variable of its own, so the models in `loom-tests/` check the crate's real protocol code.
//!
//! Why the barrier pair has two unequal halves, and how each role says which one its peer
//! must use: [`docs::barriers`](crate::docs::barriers).

use std::ops::Deref;
use std::time::Duration;

#[cfg(not(mirror_ring_loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(mirror_ring_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// How a sleeper issues its half of the barrier pair, which decides the half its publisher
/// must use. Recorded in the sleeper's role slot (the raw codes live with the header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Park {
    /// A full fence only: the publisher must fence too.
    Fence,
    /// `membarrier(PRIVATE_EXPEDITED)`: orders the threads of the sleeper's own process, so a
    /// publisher in that process may use a compiler fence. Rings between threads.
    Private,
    /// `membarrier(GLOBAL_EXPEDITED)`: orders every process registered for it, so a registered
    /// publisher in any process may use a compiler fence. Rings between processes.
    Global,
}

/// How a futex wait ended. The caller always re-checks its condition; the outcome only tells
/// it (and its counters) why it is awake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Woke {
    /// A `FUTEX_WAKE` reached this waiter.
    Woken,
    /// The word no longer held the expected value when it was compared (`EAGAIN`).
    Changed,
    /// The timeout passed.
    TimedOut,
    /// A signal, or an error that cannot happen for a live, aligned word.
    Spurious,
}

/// A futex word in the shared header: an `AtomicU32` that a thread can sleep on until another
/// thread, in any process that maps it, wakes it. Always the shared futex ops (never
/// `FUTEX_PRIVATE_FLAG`): private futexes key on the virtual address and do not work across
/// processes or across the two views of the mirror.
#[cfg(not(mirror_ring_loom))]
#[repr(transparent)]
#[derive(Debug, Default)]
pub(crate) struct FutexWord(AtomicU32);

#[cfg(not(mirror_ring_loom))]
impl FutexWord {
    /// Sleeps while the word holds `expected`, for at most `timeout`.
    pub(crate) fn wait(&self, expected: u32, timeout: Duration) -> Woke {
        use crate::sys::FutexWake;
        match crate::sys::futex_wait(&self.0, expected, Some(timeout)) {
            FutexWake::Woken => Woke::Woken,
            FutexWake::Changed => Woke::Changed,
            FutexWake::TimedOut => Woke::TimedOut,
            FutexWake::Spurious => Woke::Spurious,
        }
    }

    /// Wakes the (single) sleeper on the word: a parked async end of this process directly
    /// (no system call, see [`direct_wake`]), else a `FUTEX_WAKE`.
    pub(crate) fn wake(&self) {
        if direct_wake(self) {
            return;
        }
        crate::sys::futex_wake(&self.0, 1);
    }
}

/// Under loom: the word plus an emulated futex of its own. `wait` compares the word under the
/// lock and `wake` takes the lock before notifying, as the kernel does with its hash-bucket
/// lock, so the emulation keeps the guarantee that matters (no lost wake-up between the
/// comparison and the sleep). Each word has its own condition variable: a wake of the wrong
/// word wakes nobody, as in the kernel. Timeouts are not modelled: a lost wake-up is a
/// deadlock, which loom reports.
#[cfg(mirror_ring_loom)]
#[derive(Debug, Default)]
pub(crate) struct FutexWord {
    word: AtomicU32,
    lock: loom::sync::Mutex<()>,
    cv: loom::sync::Condvar,
}

#[cfg(mirror_ring_loom)]
impl FutexWord {
    pub(crate) fn wait(&self, expected: u32, _timeout: Duration) -> Woke {
        let g = self.lock.lock().unwrap();
        // Relaxed, as the kernel's plain comparison: it orders nothing for the caller, which
        // acquires what a waker published by its own load of the word afterwards.
        if self.word.load(Ordering::Relaxed) != expected {
            return Woke::Changed;
        }
        drop(self.cv.wait(g).unwrap());
        Woke::Woken
    }

    pub(crate) fn wake(&self) {
        if direct_wake(self) {
            return;
        }
        let _g = self.lock.lock().unwrap();
        self.cv.notify_all();
    }
}

/// The process-local shortcut behind [`FutexWord::wake`]: a function that, given a word's
/// address, wakes the async end of this process parked on it (if one is, without a helper
/// thread in between) and says whether it did. Installed by the async parking machinery
/// (`ring::asynch::park`) the first time an end parks; until then (and in processes that
/// never park an async end) a wake costs one more relaxed load, on the slow path only (a
/// wake happens only when the sleeper's flag was raised). A plain function pointer, not a
/// call into that module, so that dependencies keep running one way (`lib.rs`).
#[cfg(not(mirror_ring_loom))]
static DIRECT_WAKE: std::sync::atomic::AtomicPtr<()> = std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

// Under loom: one per model execution, so that every execution starts without the function, as
// a process does, and the models can explore its installation racing a publisher's wake.
#[cfg(mirror_ring_loom)]
loom::lazy_static! {
    static ref DIRECT_WAKE: loom::sync::atomic::AtomicPtr<()> =
        loom::sync::atomic::AtomicPtr::new(std::ptr::null_mut());
}

/// Installs the direct-wake function (idempotent: always the same function). An async end's
/// registration does, each time (`ring::asynch::park`, `Registry::register`); most loom models
/// also install it before anything wakes (`loom-tests/models.rs`, `Ring::new`), as in a process
/// that has parked an async end before.
#[cfg(any(feature = "tokio", mirror_ring_loom))]
pub(crate) fn set_direct_wake(f: fn(usize) -> bool) {
    // Release: pairs with the Acquire load in `direct_wake` (the function pointer is all that
    // is published; the registry it reads has its own lock).
    DIRECT_WAKE.store(f as *mut (), std::sync::atomic::Ordering::Release);
}

/// Runs the direct-wake function for `word`, if one is installed.
#[inline]
fn direct_wake(word: &FutexWord) -> bool {
    // SeqCst fence: orders the caller's clear of the waiter word before the load below,
    // against an async end's first registration (`set_direct_wake`, SeqCst fence, load of the
    // word: `Registry::register`). Either this load sees the function, or that registration
    // sees the cleared word and does not wait. Without the pair, a weakly ordered CPU could let
    // both miss (the publisher a bare FUTEX_WAKE, the end registered on a cleared word until a
    // helper's safety timer); x86's locked instructions happen to prevent it.
    fence(Ordering::SeqCst);
    // Acquire: pairs with the Release store in `set_direct_wake`.
    let f = DIRECT_WAKE.load(std::sync::atomic::Ordering::Acquire);
    if f.is_null() {
        return false;
    }
    // SAFETY: the only non-null value ever stored is a `fn(usize) -> bool` cast to a pointer
    // (`set_direct_wake`); function pointers and data pointers have the same size here.
    let f = unsafe { std::mem::transmute::<*mut (), fn(usize) -> bool>(f) };
    f(word as *const FutexWord as usize)
}

impl Deref for FutexWord {
    type Target = AtomicU32;
    #[inline(always)]
    fn deref(&self) -> &AtomicU32 {
        #[cfg(not(mirror_ring_loom))]
        return &self.0;
        #[cfg(mirror_ring_loom)]
        return &self.word;
    }
}

#[cfg(not(mirror_ring_loom))]
mod imp {
    use super::{fence, Ordering, Park};
    use crate::error::Context;
    use crate::sys;
    use std::io;
    use std::sync::atomic::{compiler_fence, AtomicU8, AtomicUsize};

    const UNKNOWN: u8 = 0;
    const REGISTERED: u8 = 1;
    const UNAVAILABLE: u8 = 2;

    /// Whether this process is registered as a target of global expedited barriers (what lets
    /// it publish with the light half to a `Park::Global` sleeper in another process).
    static GLOBAL: AtomicU8 = AtomicU8::new(UNKNOWN);
    /// Whether this process is registered for private expedited barriers (what lets a sleeper
    /// of a thread ring park with `Park::Private`).
    static PRIVATE: AtomicU8 = AtomicU8::new(UNKNOWN);
    /// Incremented in every forked child: an end claimed at another generation belongs to the
    /// parent.
    ///
    /// Every call into an end loads it (`End::header`), so it sits alone in a 128-byte line
    /// pair of its own. Otherwise the linker may put it beside the program's own statics: an
    /// application counter bumped by the consumer thread for each message, placed by the
    /// linker in the same line, took 8-byte frames between two pinned threads from 223-244 to
    /// 67-75 M msg/s; with the generation alone, 122-136 (BENCHMARKS.md, "A line of its own
    /// for the fork generation").
    static FORK_GENERATION: Alone = Alone(AtomicUsize::new(0));

    /// A process-local word alone in its 128-byte line pair (not shared memory: the header's
    /// lines are `header::Line`).
    #[repr(align(128))]
    struct Alone(AtomicUsize);

    unsafe extern "C" fn after_fork_in_child() {
        // Relaxed: read by this (single-threaded, just forked) process's own threads later,
        // after thread creation, which orders it.
        FORK_GENERATION.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Test hook: make every membarrier registration fail with this errno (0: no).
    #[cfg(test)]
    pub(crate) static MEMBARRIER_FAILS: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

    /// Test hook: forget both registrations, as in a process that never made one.
    #[cfg(test)]
    pub(crate) fn forget_registrations() {
        GLOBAL.store(UNKNOWN, Ordering::Relaxed);
        PRIVATE.store(UNKNOWN, Ordering::Relaxed);
    }

    /// Registers this process for the barriers of `cmd` (once); whether it is registered. A
    /// refusal is remembered (the kernel or a sandbox will refuse again); ENOMEM is not (the
    /// kernel could not allocate a CPU mask: it may pass, and remembered it would leave every
    /// later end of the process parking with full fences).
    fn register(state: &AtomicU8, cmd: libc::c_int) -> bool {
        // Relaxed (here and at the end): the state publishes no memory. `REGISTERED` was stored
        // after the registering call returned, and the registration is the kernel's, for the
        // whole process, from that return on.
        if state.load(Ordering::Relaxed) == UNKNOWN {
            #[cfg(test)]
            let registered = match MEMBARRIER_FAILS.load(Ordering::Relaxed) {
                0 => sys::membarrier(cmd),
                errno => Err(io::Error::from_raw_os_error(errno)),
            };
            #[cfg(not(test))]
            let registered = sys::membarrier(cmd);
            let v = match registered {
                Ok(()) => REGISTERED,
                Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => return false,
                Err(_) => UNAVAILABLE,
            };
            // Relaxed: the value only selects a barrier; a racing registration in another
            // thread stores the same value.
            let _ = state.compare_exchange(UNKNOWN, v, Ordering::Relaxed, Ordering::Relaxed);
        }
        state.load(Ordering::Relaxed) == REGISTERED
    }

    /// Prepares this process to use a ring end: installs the atfork handler (once) and
    /// registers for the barriers a role of this kind needs. Returns how the role parks:
    /// `Global` or `Private` when the registration succeeded, `Fence` otherwise.
    /// `between_processes`: the peer may live in another process.
    ///
    /// # Errors
    ///
    /// `OutOfMemory` when the atfork handler cannot be installed ([`track_forks`]): without
    /// it a forked child could not tell that its ends are copies, and its copies would write
    /// to the parent's ring.
    pub(crate) fn register_process(between_processes: bool) -> io::Result<Park> {
        track_forks("ring ends; nothing was claimed")?;
        if between_processes {
            if register(&GLOBAL, sys::MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) {
                return Ok(Park::Global);
            }
        } else if register(&PRIVATE, sys::MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) {
            return Ok(Park::Private);
        }
        Ok(Park::Fence)
    }

    /// The current fork generation of this process.
    #[inline(always)]
    pub(crate) fn fork_generation() -> usize {
        // Relaxed: see `after_fork_in_child`, its only writer.
        FORK_GENERATION.0.load(Ordering::Relaxed)
    }

    /// Whether the atfork handler is installed: `UNKNOWN` until it is, then `REGISTERED`. A
    /// failure is not remembered: `pthread_atfork` fails only on ENOMEM, which may pass.
    static ATFORK: AtomicU8 = AtomicU8::new(UNKNOWN);

    /// Test hook: make `pthread_atfork` fail with ENOMEM in this process.
    #[cfg(test)]
    pub(crate) static ATFORK_FAILS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// Test hook: forget that the handler is installed, as in a process that never installed
    /// it (the handler a forked child inherits stays installed).
    #[cfg(test)]
    pub(crate) fn forget_fork_handler() {
        ATFORK.store(UNKNOWN, Ordering::Relaxed);
    }

    /// Installs (once) the atfork handler that moves a forked child to the next fork
    /// generation. `what`: the forked copies it lets a child tell, for the error.
    ///
    /// # Errors
    ///
    /// `OutOfMemory`, the OS error (ENOMEM, the only one `pthread_atfork` returns) as
    /// `source()`. The next call tries again: cached, one moment without memory used to leave
    /// every later end of the process unable to tell a forked copy.
    pub(crate) fn track_forks(what: &str) -> io::Result<()> {
        // Not a `Once`: a process that forks while another thread runs a `Once` leaves its
        // child a `Once` marked "running" that no thread will ever finish, and the child's
        // first claim would hang. Two threads racing here both install the handler, which is
        // harmless (a child then moves on by two generations).
        // Relaxed: the state publishes no memory; `REGISTERED` was stored after the handler was
        // installed, by a call that had returned.
        if ATFORK.load(Ordering::Relaxed) == REGISTERED {
            return Ok(());
        }
        #[cfg(test)]
        let installed = if ATFORK_FAILS.load(Ordering::Relaxed) {
            Err(io::Error::from_raw_os_error(libc::ENOMEM))
        } else {
            sys::at_fork_child(after_fork_in_child)
        };
        #[cfg(not(test))]
        let installed = sys::at_fork_child(after_fork_in_child);
        match installed {
            Ok(()) => {
                // Relaxed: it publishes nothing; a racing thread stores the same value.
                ATFORK.store(REGISTERED, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(Context::explain_as(
                io::ErrorKind::OutOfMemory,
                e,
                format!(
                    "cannot install the fork handler (pthread_atfork) that lets a forked child tell its \
                     copies of {what}"
                ),
            )),
        }
    }

    /// Whether this process is registered as a target of global expedited barriers.
    #[inline]
    pub(crate) fn global_registered() -> bool {
        // Relaxed: as in `register`.
        GLOBAL.load(Ordering::Relaxed) == REGISTERED
    }

    /// The publisher's half of the pair: between the cursor store and the waiter-flag load.
    /// `light`: the sleeper's park record allows a compiler fence alone
    /// (`Header::parks_with`); otherwise a full fence.
    #[inline(always)]
    pub(crate) fn publish_barrier(light: bool) {
        if light {
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
    }

    /// The sleeper's half, for a sleeper that parks with `mode`: between raising the waiter
    /// flag and rechecking the cursor. `false` if the membarrier call failed: then the caller
    /// must downgrade its record to `Fence` and bound this sleep (a publisher may have read the
    /// old record and used the light half). In `Fence` mode the local fence is the whole half
    /// (the publisher fences too), so that is `true`.
    pub(crate) fn park_barrier(mode: Park) -> bool {
        fence(Ordering::SeqCst);
        let cmd = match mode {
            Park::Global => sys::MEMBARRIER_CMD_GLOBAL_EXPEDITED,
            Park::Private => sys::MEMBARRIER_CMD_PRIVATE_EXPEDITED,
            Park::Fence => return true,
        };
        sys::membarrier(cmd).is_ok()
    }

    /// Whether blocking calls spin before they park (not under loom, which explores the
    /// interleavings of the park itself).
    pub(crate) const SPINS: bool = true;

    #[cfg(test)]
    mod tests {
        use super::FORK_GENERATION;

        #[test]
        fn the_fork_generation_has_a_line_pair_of_its_own() {
            // Aligned to 128 and 128 bytes long: no other static can share its pair of lines.
            let at = std::ptr::addr_of!(FORK_GENERATION) as usize;
            assert_eq!(at % 128, 0, "at {at:#x}");
            assert_eq!(std::mem::size_of_val(&FORK_GENERATION), 128);
        }
    }
}

#[cfg(mirror_ring_loom)]
mod imp {
    use super::{fence, Ordering, Park};

    pub(crate) fn register_process(_between_processes: bool) -> std::io::Result<Park> {
        Ok(Park::Global)
    }

    pub(crate) fn fork_generation() -> usize {
        0
    }

    pub(crate) fn track_forks(_what: &str) -> std::io::Result<()> {
        Ok(())
    }

    pub(crate) fn global_registered() -> bool {
        true
    }

    /// Both halves are full fences under loom: what the asymmetric pair guarantees to each
    /// other, and what loom can model.
    pub(crate) fn publish_barrier(_light: bool) {
        fence(Ordering::SeqCst);
    }

    pub(crate) fn park_barrier(_mode: Park) -> bool {
        fence(Ordering::SeqCst);
        true
    }

    pub(crate) const SPINS: bool = false;
}

pub(crate) use imp::*;
