//! The life of a ring: roles, `fork()`, closing, and a peer that dies.
//!
//! # Roles
//!
//! A ring has two roles, producer and consumer. Between threads,
//! [`RingOptions::build`](crate::RingOptions::build) claims both at once. Between processes,
//! [`RingOptions::shared`](crate::RingOptions::shared) gives a [`SharedRing`](crate::SharedRing)
//! and each process claims one role with `into_producer` or `into_consumer`: a
//! compare-and-swap on the role's slot in the shared header, once for the life of the ring. A
//! second claim of the same role, from any process, fails with `AlreadyExists`, also after the
//! first claimant closed or died. The claimant records its pid, its start time and its PID
//! namespace next to the claim; that is how its peer watches it.
//!
//! # `fork()`
//!
//! Every backend survives `fork()`: create the ring, fork, and let each process claim its role
//! right after the fork (until then both processes hold the whole ring and either could claim
//! either role).
//!
//! A claimed end belongs to the process that claimed it. A forked child inherits a copy of
//! every end its parent held, and such a copy is inert: every path that would touch the shared
//! header (a read, a write, a grant's commit or release, `consume`, a frame dropped, a framed
//! flush, closing on drop) goes through one check, a comparison of the fork generation that a
//! `pthread_atfork` handler bumps in every child (one relaxed load). Calls that return a
//! `Result` fail with `Unsupported`; the others (`consume`, drops) do nothing. The parent's
//! ring is neither changed nor closed by anything its children do with their copies. Children
//! made without `pthread_atfork` (a raw `clone` system call) are not detected: do not use an
//! end there.
//!
//! [`RingOptions::dont_fork`](crate::RingOptions::dont_fork) (`MADV_DONTFORK` over the whole
//! ring, never one view alone) keeps the ring out of children altogether: their copies of the
//! handles are inert, claims fail with `Unsupported`, and dropping them unmaps nothing (the
//! range may hold other memory in the child). A slice borrowed from a grant or from
//! `fill_buf` before the fork points at memory the child does not have: do not touch it there.
//!
//! # Closing
//!
//! Dropping an end closes it, after publishing everything it had committed or released: its
//! slot says *closed* (final), and the peer is woken. The consumer of a closed producer reads
//! every byte that was committed, then sees the end of the stream (`Ok(0)`, an empty
//! `fill_buf`, `None` from `recv`). The producer of a closed consumer gets `BrokenPipe`.
//!
//! # Peer death
//!
//! A process can die without running `Drop`, leaving its role claimed. Between processes every
//! sleep of a blocked call is bounded by the watch interval (25 ms), after which the peer is
//! checked, so a blocked call notices a death within that interval plus scheduling (the design
//! bound is 100 ms; measured: `BENCHMARKS.md`, "Peer death"). `try_*` calls, when they would
//! otherwise say "empty" or "full", and `is_abandoned` run the same check (at most once per
//! millisecond). The consumer first reads every byte committed before the death, then gets
//! `UnexpectedEof` (a crash is not a clean end of stream); the producer gets `BrokenPipe`.
//!
//! The check has three answers: alive, dead, or unknown. Only proof is death:
//! - a pidfd (Linux 5.3+) opened on the peer's pid becomes readable when the process
//!   terminates, also while it is an unreaped zombie, so a parent need not `waitpid` a dead
//!   child for its ring to notice;
//! - `pidfd_open` or `kill(pid, 0)` failing with `ESRCH` (no such process);
//! - `/proc/<pid>/stat` showing state `Z` or `X`, or a start time other than the recorded one
//!   (the pid was reused by a later process; from the moment the pidfd is open it names that
//!   one process, whatever happens to the number).
//!
//! Everything else is *unknown*: no descriptor left to open a pidfd or `/proc` (`EMFILE`),
//! `/proc` unreadable or hiding the process (`hidepid`), a peer in another PID namespace. An
//! unknown answer is counted ([`Stats::peer_unknown`](crate::Stats::peer_unknown)), retried at
//! the next check and never latched: a blocked call keeps waiting, and its timeout (if it has
//! one) decides. A proven death is latched.
//!
//! **PID namespaces.** A pid means something only inside its PID namespace. Each claimant
//! records its namespace; a peer in another one is never checked by pid (the answer is
//! always unknown), so its death is seen only as a close that never comes: use the timeout
//! variants, or have the two processes agree on liveness some other way. (The peer credentials
//! of the Unix socket that carried the ring, `SO_PEERCRED`, give the sender's pid translated
//! into the receiver's namespace, but the sender need not be the process that claims the role,
//! so the crate does not use them.)
//!
//! **Writes to a dead consumer.** Unlike a pipe, whose writer gets `EPIPE` as soon as the last
//! reader is gone, a write that fits is accepted after the consumer's process died (watching the
//! peer on every write would put a system call on the fast path): those bytes are lost, and the
//! next write that has to wait for space gets `BrokenPipe`. A consumer that closes cleanly is
//! seen by the very next write. `is_abandoned` asks at any time.
//!
//! **No peer yet.** Until the peer has claimed its role there is no one to watch, so a
//! blocking call just waits: the timeout variants exist for that.
