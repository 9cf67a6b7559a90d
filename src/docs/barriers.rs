//! Blocking without a fence per commit: the asymmetric barrier pair.
//!
//! # The problem
//!
//! A blocked call first spins (for at most the ring's spin budget; `wait.rs`, "How long to
//! spin"), because a park-and-wake round trip costs hundreds of times a spinning hand-over
//! (`BENCHMARKS.md`, "Round trip" and "Spin budget"). Then it *parks*: it raises its waiter flag in the shared header (`data_waiter` for
//! the consumer, `space_waiter` for the producer), rechecks its condition, and sleeps on the
//! flag with `FUTEX_WAIT`. After every cursor store, the peer loads that flag and, if it is
//! raised, clears it and calls `FUTEX_WAKE`.
//!
//! That is a store-buffering (Dekker) pattern: the sleeper stores "I sleep" then loads the
//! cursor; the publisher stores the cursor then loads "anyone asleep?". Each side needs a
//! StoreLoad barrier between its store and its load, or both can read the old values and the
//! sleeper sleeps through the publish. A full fence on every commit drains the store buffer
//! after the copy, which is enough to halve the 64-byte rate.
//!
//! # Two unequal halves
//!
//! So the cost is moved to the sleeper, which is about to make a system call anyway. The
//! publisher's half is a compiler fence only; the sleeper's half is `membarrier(2)`, which runs
//! a full barrier on every CPU currently running a thread of the processes it targets. Either
//! the publisher's cursor store precedes that barrier in its program order (and the sleeper's
//! recheck after the barrier sees it), or its flag load follows the barrier (and sees the
//! flag). If the recheck sees the new cursor, the sleeper does not sleep; otherwise the
//! publisher sees the flag, clears it and wakes: if the sleeper has not reached `FUTEX_WAIT`
//! yet, the kernel's comparison of the word (now 0, expected 1) returns at once; if it has, the
//! wake finds it. Either way the sleeper then reloads its flag with Acquire, paired with the
//! Release of the clear: a flag found cleared makes the cursor stored before the clear visible
//! to its next look (the kernel's comparison orders nothing in Rust's model, and on a weakly
//! ordered CPU a Relaxed clear could be seen before the cursor). Close and poisoning use the
//! same pattern with a full fence on the closing side (they run once).
//!
//! # Agreeing on the halves
//!
//! A publisher may use the compiler-fence half only if its sleeper really issues the heavy
//! half, and the two may be different processes built with different options or running under
//! different sandboxes. So nothing is assumed: each role records in its slot of the header how
//! it parks, and a publisher reads its peer's record on every publish (line 0 of the header,
//! read-mostly: an L1 hit).
//!
//! - *Private*: rings between threads. The sleeper issues `MEMBARRIER_CMD_PRIVATE_EXPEDITED`,
//!   which interrupts only the CPUs running its own process, where the publisher lives (the
//!   ends of a thread ring belong to one process; a forked copy is inert).
//! - *Global*: rings between processes. The sleeper issues `MEMBARRIER_CMD_GLOBAL_EXPEDITED`,
//!   which interrupts the CPUs running any process registered for it; every process registers
//!   when it claims a role, and a publisher uses the light half only if its own registration
//!   succeeded.
//! - *Fence*: the sleeper could not register (a kernel before 4.14 for a thread ring or before
//!   4.16 for a ring between processes, a seccomp filter): it fences locally, and its
//!   publisher pays a full fence too. A refusal is remembered for the life of the process;
//!   `ENOMEM` (the kernel could not allocate a CPU mask) is not, and the next claim tries
//!   again.
//!
//! A sleeper whose membarrier call fails when it parks (a sandbox installed after the claim)
//! downgrades its record to *Fence*; that one sleep is cut short, since a publisher may have
//! read the old record. Registration is per process, inherited by `fork()` and cleared by
//! `exec`; claiming again in a child is harmless.
//!
//! # Paying the heavy half once per park
//!
//! A global expedited membarrier interrupts every CPU that runs any registered process on the
//! machine, so an idle ring must not issue one per watch interval. The flag stays raised for
//! the whole park, across the bounded sleeps: as long as nobody clears it, every publish after
//! the barrier sees it, so a timed wake-up rechecks and sleeps again without another barrier.
//! Only a wake-up clears the flag; if the condition still does not hold (the peer published
//! too little, or a hostile peer cleared the flag without publishing), the next park raises it
//! again with a new barrier, at most once a millisecond: inside that interval the flag is
//! raised with a local fence only and the sleep is cut to the rest of the interval, so a
//! wake-up missed for want of the barrier costs at most that long.
//!
//! The same holds across calls: a blocking call that ends on its timeout leaves its flag
//! raised, and the end's next wait finds it still raised (nobody cleared it since the
//! barrier) and pays no new barrier. So a loop of `read_timeout`s on an idle ring pays one
//! barrier, not one per call. The price is one wake-up the peer sends for nothing at its next
//! publish. A call that finds the flag cleared (a wake-up, or an async park in between: an
//! end made async forgets the flag) pays the barrier again, within the same limit of once a
//! millisecond, which counts the last barrier of the call before when that call ended on its
//! timeout: so a peer that clears the flag between short timed calls (100 µs each, say) cannot
//! have each of them pay one (measured: 842 a second against 4,000-5,300 before, in
//! `tests/waits.rs`). A call whose wait was satisfied passes nothing on, so the next call's
//! first park is covered by its own barrier at once.
//!
//! # Async ends
//!
//! An async end (feature `tokio`) parks on the same flag with the same heavy half, once per
//! park, and registers a `Waker` instead of calling `FUTEX_WAIT`; the publisher's half does not
//! change. How the wake reaches the `Waker` (directly within a process, through a helper
//! thread in `futex_waitv` across processes), and why no wake-up is lost between the recheck
//! and the registration: [`async_ends`](super::async_ends).
//!
//! # Every sleep is bounded
//!
//! A sleep lasts at most the watch interval (25 ms) between processes, after which the peer's
//! liveness is checked ([`lifecycle`](super::lifecycle)), and at most 100 ms between threads.
//! So a missed wake-up (a bug, a hostile peer) delays, but never hangs. That also means a lost
//! wake-up would not show as a hang in a test; each end therefore counts what its parks did
//! ([`Stats`](crate::Stats)), and a sleep that ran to its bound while the condition already
//! held is counted as a lost wake-up. The tests stream between processes on every backend,
//! with membarrier available and denied, and require that count to be zero. The interleavings
//! are model-checked with loom (`loom-tests/`), one model per futex word.
