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
//! namespace next to the claim; that is how its peer watches it. A role whose holder died
//! without closing can be *taken over* by another process ([Restart](#restart)); a closed
//! role is final.
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
//! `Result` fail with `Unsupported`; the others (`consume`, drops) do nothing. A write grant
//! (`WriteGrant`, `FrameGrant`) held across the fork lends the child nothing (an empty slice,
//! and `WriteGrant::len` says 0: the free space is the parent's), a `recv_batch` whose closure forks ends in the child
//! when the closure returns, and a `send_batch` whose message's `AsRef` forks writes nothing
//! more in the child once that `AsRef` returns. A `Waker` of an async end that forks when a
//! call of its peer in the same process wakes it (a thread ring's publish runs the waker in
//! the publishing thread) would carry the rest of that call into the child, where nothing
//! checks again: the child's copy of the call panics there instead, with a message that says
//! so; the parent's call goes on. The parent's ring is neither changed nor
//! closed by anything its children do with their copies. Children made without
//! `pthread_atfork` (a raw `clone` system call) are not detected: do not use an end there.
//! The handler is installed by a process's first claim (or its first `dont_fork` ring); where
//! `pthread_atfork` fails (ENOMEM, its only error) that claim or creation fails with
//! `OutOfMemory` and claims nothing, and the next one tries again.
//!
//! [`RingOptions::dont_fork`](crate::RingOptions::dont_fork) (`MADV_DONTFORK` over the whole
//! ring, never one view alone) keeps the ring out of children altogether: their copies of the
//! handles are inert, claims fail with `Unsupported`, and dropping them unmaps nothing (the
//! range may hold other memory in the child). A slice borrowed from a read grant, a `Frame` or
//! `fill_buf` before the fork points at memory the child does not have: do not touch it there.
//!
//! Without `dont_fork`, the child's copies keep the ring mapped in the child (and, between
//! them, its shared memory allocated, with a memfd ring's descriptor open) until the child drops
//! them. Copies the child cannot drop keep it so until the child exits or `exec`s: those held
//! by the parent's *other* threads at the fork (a thread that owned an end, or the crate's own
//! helper threads, which hold the ring of every async end parked between processes), whose
//! stacks were copied with no thread left to run them. A long-lived child that must not keep
//! its parent's rings alive: make them with `dont_fork`.
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
//! - `/proc/<pid>/stat` showing state `X`, or `Z` with no other thread left (a process whose
//!   first thread has exited while others run shows `Z` too, and lives), or a start time
//!   other than the recorded one: the pid was reused by a later process (from the moment the
//!   pidfd is open it names that one process, whatever happens to the number). Each side
//!   takes its own time namespace's boottime offset out of the start time it reads, so the
//!   two agree across time namespaces. This holds also when the later process is the one
//!   checking (a replacement worker that got its dead predecessor's pid): a slot names the
//!   checking process itself only with its own start time. Start times count clock ticks
//!   (`USER_HZ`, 100 a second): a pid reused within the tick in which its dead process
//!   started is not told apart.
//!
//! Everything else is *unknown*: no descriptor left to open a pidfd or `/proc` (`EMFILE`; also
//! when the pidfd takes the last one and the start time cannot be read, unless that pidfd
//! already reads as exited, which proves the death whichever process it names: it is closed
//! again, and the next check compares the start time),
//! `/proc` unreadable or hiding the process (`hidepid`), a peer in another PID namespace. An
//! unknown answer is counted ([`Stats::peer_unknown`](crate::Stats::peer_unknown)), retried at
//! the next check and never latched: a blocked call keeps waiting, and its timeout (if it has
//! one) decides. A proven death is latched, for that holding of the role: only a take-over
//! ([Restart](#restart)) makes the watcher look again, at the new holder.
//!
//! **PID namespaces.** A pid means something only inside its PID namespace. Each claimant
//! records its namespace; a peer in another one is never checked by pid (the answer is
//! always unknown), so its death is seen only as a close that never comes: use the timeout
//! variants, or have the two processes agree on liveness some other way. (The peer credentials
//! of the Unix socket that carried the ring, `SO_PEERCRED`, give the sender's pid translated
//! into the receiver's namespace, but the sender need not be the process that claims the role,
//! so the crate does not use them.) A claimant that cannot read its own namespace (no `/proc`
//! in its sandbox) records none, and a watcher takes that, or its own namespace unreadable,
//! for the same namespace: it then checks the pid, which is right for a sandbox that shares
//! the PID namespace and wrong for one in a namespace of its own. Give such a sandbox
//! `/proc`, or treat its deaths as unknown yourself (timeouts).
//!
//! **Writes to a dead consumer.** Unlike a pipe, whose writer gets `EPIPE` as soon as the last
//! reader is gone, a write that fits is accepted after the consumer's process died (watching the
//! peer on every write would put a system call on the fast path): those bytes stay in the ring
//! for a consumer that takes the role over, or are lost with the ring, and the next write that
//! has to wait for space gets `BrokenPipe`. A consumer that closes cleanly is
//! seen by the very next write. `is_abandoned` asks at any time.
//!
//! **No peer yet.** Until the peer has claimed its role there is no one to watch, so a
//! blocking call just waits: the timeout variants exist for that.
//!
//! **`exec` while holding an end.** `exec` keeps the process's pid and start time but drops
//! its memory, the end with it, without a close. To its peer the holder is still alive, and
//! nobody can take the role over until the process exits: drop ends (or close them) before
//! `exec`.
//!
//! # Restart
//!
//! A process that dies without closing leaves its role claimed, and its peer (the survivor)
//! reports the death. Another process can then take the dead role over and resume where the
//! dead one stopped, without a new ring and without the survivor starting again:
//! [`SharedRing::take_over_producer`](crate::SharedRing::take_over_producer) and
//! [`SharedRing::take_over_consumer`](crate::SharedRing::take_over_consumer).
//!
//! **Who may.** Any process that maps the ring: an unrelated process that attached with
//! `from_fd` (a memfd ring), or a supervisor that inherited the ring across `fork()` and never
//! claimed a role itself. The holder must be *proven* dead, by the check the peer watcher
//! makes (above): a holder that lives, including the calling process itself, is
//! `AlreadyExists`; one that cannot be checked (unknown) is `WouldBlock`, nothing changed,
//! try again (in another PID namespace the answer stays unknown); only a death goes on. So a
//! forked copy of a living holder cannot take its role (the holder lives). A supervisor that
//! has just sent SIGKILL should reap the child (or wait for its death) before it takes over:
//! a kill takes effect asynchronously, and until it has, the holder lives. A role that was
//! closed cleanly is never taken over (`AlreadyExists`: a close is final), and a role never
//! claimed has nothing to take over (`NotFound`: claim it with `into_producer` or
//! `into_consumer`). So a helper that is to hand its role to a successor leaves without
//! closing its end: it flushes, then forgets the end (`std::mem::forget`) or leaves with
//! `std::process::exit`, which runs no destructors; its peer sees a death, and the successor
//! takes over as after a crash.
//!
//! **One atomic step.** A role slot starts with one 64-bit claim word: the state, an epoch
//! that counts the holdings of the role, and the holder's pid (`header.rs`). A take-over is a
//! compare-and-swap from the dead holding's exact word to the next epoch's TAKING word naming
//! the taker; the taker then stores its start time, namespace and park mode and publishes the
//! holding as CLAIMED. Of any number of racing takers exactly one compare-and-swap succeeds,
//! and the others then find the winner alive; a holder's close is a compare-and-swap on the
//! same word, so a take-over racing the holder's own close has one winner, never both (this
//! matters only when the holder was not in fact dead, see
//! [`trust_model`](super::trust_model)). Readers take the fields after the word as a seqlock
//! reader does, so a pid is never paired with another holder's start time. All of it is
//! model-checked (`loom-tests/takeover.rs`).
//!
//! **A taker that dies in the middle** (between its two compare-and-swaps, a few stores) leaves
//! a TAKING word that names it by pid, with no start time yet. It is checked by pid alone (its
//! pidfd, a zombie, no such process) and, once dead, its take-over is taken over in turn. The
//! limit: if it was reaped and its pid reused by an unrelated process before anyone looked,
//! the pid-only check finds that process alive, and the role waits until it exits.
//!
//! **Where the newcomer resumes**: at the committed cursors in the header. A new producer
//! starts at the last published head: bytes the dead producer wrote and did not commit (or
//! committed in a batch it never published, such as pending frames) vanish. A new consumer
//! starts at the last released tail: every byte the dead consumer had not released is
//! delivered again, read or not, so nothing committed is lost (at least once, not exactly
//! once). Released is the mark, not used: a call that copies a message out (`recv_into`,
//! `read`, `try_read`) releases it before it returns, so a consumer that dies after such a
//! call, before it has used the copy, may lose that message (a framed consumer stores its
//! releases lazily, so it is lost only if they were stored). For at least once, handle a
//! `Frame` or a `ReadGrant` in place and drop it (or `consume`) only when done. Commit and
//! release whole records, and the committed cursors are record boundaries; a byte end's
//! `position()` (`Producer::position`, `Consumer::position`) tells the newcomer where it
//! stands, so with fixed-size records it knows the next one's index without a side channel;
//! framed rings do (whole frames are published and released), so both sides of a framed ring
//! stay frame-aligned across a take-over. One refinement for framed rings: a frame sent on its
//! own is stamped a moment before its head is stored, and the consumer may take it (and
//! release it) in between, so a producer that died there leaves the consumer's cursor past
//! the published head. A batch is published the same way: the stamp of its first frame, then
//! head. The new producer goes on after those frames: from the released tail if it is ahead
//! of head (it stores head there at once, so that a close with nothing sent is still a clean
//! end), and, when the dead producer was writing frames (its framing epoch still odd), the
//! take-over itself covers the complete frames stamped just above the head
//! ([`framing`](super::framing)), before the newcomer can lend any room, since the consumer
//! may hold them. They count as committed: a framed consumer that finds its producer dead
//! takes them before it reports the death. Nothing else ever does, so bytes a producer wrote and did not commit
//! (a dropped grant, a failed `read_from`) stay unpublished even where they look like a frame.
//! What the cursors
//! cannot say (which counter a new producer should send next, which records a new consumer
//! has seen) is the application's: the example `examples/supervisor.rs` keeps it in shared
//! memory.
//!
//! **The survivor goes on.** Its peer watcher notices a new holding of the peer's role (the
//! epoch in the claim word changed), forgets the dead holder, and watches the new one, so
//! `BrokenPipe` and `UnexpectedEof` after a death are not final: once the role is taken
//! over, the survivor's next call goes on, and a blocked call whose check finds the newcomer
//! does not end (a producer blocked on the full ring of a dead consumer continues when the
//! new consumer releases space). A death is dropped only by a new epoch, never by a rewrite
//! of the dead holding's own fields. With a fast restart the survivor may never see the death
//! at all.
//!
//! **The old holder**, if it was in fact alive (a peer forged its death), notices at its next
//! call: the role's slot names another holding (a new epoch) instead of the claim word it
//! claimed with, which the one checked place through which every end touches the header
//! compares (one load of the read-mostly first line). From then on every call returns
//! `ConnectionAborted` and nothing it does, dropping included, reaches the header, also once
//! the taker has closed the role in its turn ([`trust_model`](super::trust_model) has the
//! limits: a writer of the header who puts the old claim word back makes the old end go on,
//! as a rewound epoch does; the loss is not latched). A blocking call that was already waiting when the role was taken is past that
//! check: it may still complete once, a read with bytes the newcomer reads too
//! ([`trust_model`](super::trust_model), "Not earlier"). Where the taker is this same process
//! (it took the role over from its own end, whose death a peer forged), the two ends park on
//! one waiter word: an async end parked there makes way for the newcomer's park and is woken
//! to find its role gone; a blocking one may take one wake-up meant for the newcomer, which
//! then waits for its next periodic look (up to the 100 ms safety interval) instead.
//!
//! Times (restart gap from SIGKILL to the replacement's first byte, the take-over call
//! itself) are printed by `tests/restart.rs` and `examples/supervisor.rs`; measured figures:
//! `BENCHMARKS.md`, "Take-over".
