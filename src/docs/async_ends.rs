//! Async ends: how a `FUTEX_WAKE` from any peer becomes a `Waker::wake()`.
//!
//! With the cargo feature `tokio`, `Producer::into_async`, `Consumer::into_async` and the two
//! framed `into_async` give ends that implement tokio's `AsyncWrite`, `AsyncRead` and
//! `AsyncBufRead` (the buffer is the ring itself), async `write_grant(min)` and
//! `read_grant(min)` (wait for `min` bytes of space or data, then lend them in one slice: a
//! record built or parsed in place), and async `send`/`recv`, `send_batch`/`recv_batch` and
//! `reserve` (a `FrameGrant` to build a message in place).
//! Underneath, the parking is runtime-agnostic: a `std::task::Waker`, nothing else from the
//! runtime, except tokio's cooperative budget. On a tokio runtime every call spends it, as
//! tokio's own I/O does, and when it is spent the task yields once. Without that, an end whose
//! peer keeps it ready (a fast peer, or a hostile one, for ever) would never give the thread
//! back to the runtime's other tasks: measured, a task ticking every millisecond beside a read
//! loop on a current-thread runtime waited 260-400 ms, against about 3.5 ms with the budget
//! spent (`tests/async_ends.rs`). Outside a tokio runtime there is no budget.
//!
//! # The rule: park the way a blocking end parks
//!
//! An async end that cannot go on first retries for the ring's spin budget (default 50 µs;
//! `RingOptions::spin_budget`), as a blocking end spins, but by rescheduling its task, so the
//! runtime's other tasks run in between; with a budget of zero it parks at once. In a task of
//! a current-thread runtime a retry also waits for the runtime's driver poll, as
//! `tokio::task::yield_now` does, so that the `block_on` future runs in between too: queued at
//! once, a spinning task was polled 61 times (the runtime's `event_interval`) per turn of the
//! `block_on` future, and a round trip between the two took 6-11 µs instead of 0.4 µs. (So an
//! end polled by another executor nested inside such a task, which blocks the runtime's
//! thread, waits for ever, as tokio's own I/O would there; under the `block_on` future, which
//! is no task, it retries with its own waker.) It adapts the
//! budget as a blocking end does (`RingOptions::spin_budget`): retries that keep ending in a
//! park shorten it, one that finds what it waited for restores it. (Without that, two runtimes
//! on one core took ~100 µs per round trip: each retried for 50 µs while the peer it waited
//! for could not run.) Without this
//! phase every wait paid the heavy barrier, an inter-processor interrupt: an 8-byte round trip
//! between two busy runtimes took about 30 µs, and with it about 0.5 µs (noisy figures, see
//! below). Then it raises **the same waiter flag** in the shared header as a
//! blocking end (`data_waiter` for a consumer, `space_waiter` for a producer), pays the same
//! heavy half of the barrier pair once per park ([`barriers`](super::barriers)), runs its
//! non-blocking call again (the recheck), and only then registers its `Waker` and returns
//! `Pending`. The publisher's side does not change at all: after a publish it loads the
//! flag, and only if it is raised does it clear it and call `FutexWord::wake`. So a blocking
//! or spinning peer, in this process or another, built with or without the feature, wakes an
//! async end without knowing it is async, and an idle ring costs the publisher what it cost
//! before: no extra shared store, no system call.
//!
//! The argument that no wake-up is lost is the blocking one, with one more step. The barrier
//! pair makes either the recheck see the publish or the publisher see the flag. In the second
//! case the publisher clears the flag and wakes; the wake must find the registration, and the
//! registration may come after it. A futex wait solves that by comparing the word under the
//! kernel's bucket lock; here the registry does the same under its own lock: a registration
//! compares the flag under the lock and, if it was cleared, returns "already woken" (the task
//! is polled again at once), and a waker clears the flag *before* it takes the lock to look
//! for the entry. Loom checks this (`loom-tests/asyncpark.rs`, a parked async reader against a
//! publisher, woken directly, through a helper, and by a close); without the comparison under
//! the lock the close model deadlocks, which is how the first version of this code was
//! caught.
//!
//! # Turning the wake into `Waker::wake()`
//!
//! The flag and the publisher are fixed; what remains is who calls `Waker::wake()`.
//!
//! - **Thread rings: directly, through a process-local registry.** When both ends were built
//!   by `RingOptions::build`, the publisher is in this process and uses the same mapping, so
//!   `FutexWord::wake` first asks the registry (a hash map keyed by the word's address,
//!   behind one mutex, consulted only on the wake path, i.e. only when the flag was raised)
//!   whether an async end is parked on that word, and wakes its `Waker` itself. No system call
//!   by the publisher, no thread in between. So the publisher's call runs the waker's code; a
//!   waker that panics unwinds out of that call (a `send`, a `write`, a `flush`, a release)
//!   after its publish: what it published stays published and the end stays sound and usable,
//!   but the call's own result is lost (a caller that catches the panic and sends again sends
//!   twice).
//! - **Rings between processes: a helper thread in `futex_waitv`.** The peer's `FUTEX_WAKE`
//!   cannot reach a registry in another process, so a helper thread of this process sleeps in
//!   `futex_waitv(2)` (Linux 5.16+) on the words of every parked end (up to 127 per helper, the
//!   128th word is its own control word; another helper starts for each further 127), and
//!   when a wait returns it wakes the `Waker` of every entry whose flag was cleared. A new
//!   registration bumps the helper's control word, so the helper re-enters its wait with the
//!   new word; a registration that finds the flag cleared does not register at all (above).
//!   A few threads per process at most, none per end. A helper, once started, stays for the
//!   life of the process, asleep without a timeout while it has nothing to watch (no CPU):
//!   their number is set by the most ends of rings between processes parked at one time,
//!   one per 127, and does not shrink when those rings are gone. (The first helper also
//!   keeps the deadlines of thread rings' parked ends, so it starts with the first async end
//!   that parks, of either kind.)
//! - **Peers between processes: one peer-poll thread in `epoll_wait`.** Started with its
//!   epoll instance (one descriptor) the first time an end parks on a peer process it watches
//!   through a pidfd, it sleeps without a timeout on those pidfds (each registration arms its
//!   end's pidfd for one report, with a token of its own) and, when one reads as exited, makes
//!   the entry armed with it due at once and tells its helper ("Bounded sleeps", below). Like
//!   the helpers it stays for the life of the process, and costs nothing while no peer dies.
//!   (If its `epoll_wait` fails, it hands every armed entry back to its helper's watch
//!   interval and ends; a park a second later at the earliest starts another, which takes
//!   those entries over.)
//!
//! # What was measured
//!
//! One-way wake latency, from the publisher's store to the parked side running again, on the
//! 2-vCPU development VM (Linux 6.18) while other builds ran (load average near 4: the figures
//! are noisy, and most of each is the idle CPU's own wake-up; a quiet-machine run is still to
//! come). The publisher runs the crate's unchanged path (clear the flag, `FUTEX_WAKE`); the
//! parked side sleeps in `epoll_wait` on an eventfd, as a tokio runtime thread does, except
//! for the first row (median, p99 of 20,000 wakes, two runs):
//!
//! | how the parked side is woken | median | p99 |
//! |---|---:|---:|
//! | a blocking end: `FUTEX_WAIT` on the word (reference) | 23–29 µs | 160–180 µs |
//! | direct: the publisher wakes the `Waker` (eventfd write) | 24 µs | 150–580 µs |
//! | `io_uring` `IORING_OP_FUTEX_WAIT` (6.7+), completion on the eventfd | 24–25 µs | 140–200 µs |
//! | helper thread in `futex_waitv`, which writes the eventfd | 25–27 µs | 2–3 ms |
//!
//! The helper costs one more thread hop: about 2 µs at the median, and a long tail when the
//! helper has to wait for a CPU that both busy threads hold. `io_uring` avoids the hop and
//! performed like the direct wake, but it was not chosen: it needs the runtime's reactor to
//! watch the ring's descriptor (tokio's `AsyncFd`, which ties the design to one runtime), one
//! submission per park, Linux 6.7, and it is often disabled (`kernel.io_uring_disabled`, the
//! default seccomp profiles of container runtimes). The direct registry gives the same one hop
//! wherever it applies (thread rings), and the helper serves everything else on any kernel
//! since 5.16. An eventfd per end would need the descriptor in the peer process and would
//! break the fd-less fork ring, so it was not built.
//!
//! Parked ends cost no CPU. Measured by `tests/async_ends.rs`: 350 ends parked on one
//! current-thread runtime (200 thread rings, 150 rings woken through two helpers) added two
//! threads to the process and used 3–7 ms of CPU over an idle second when first measured, and
//! 4–55 ms in later runs on the same VM (November 30th; it varies from run to run), almost all
//! of it the first helper waking at the entries' deadlines, walking the table and re-entering
//! `futex_waitv` on 127 words (before the helpers' checks were made to fall together it was
//! 13 ms more: one wake-up per entry). No task is polled while parked: the helper answers the
//! deadlines itself (each end's `Stats::sleep_timeouts` stays 0 over the idle second).
//!
//! The async ends against tokio's own transports (`benches/async.rs`, also printed by the
//! comparison demo; two current-thread runtimes on two pinned vCPUs; two quiet runs,
//! core-to-core round trip 279-299 ns; `BENCHMARKS.md`, "Async ends and relays", which also
//! says how far single samples can be trusted):
//!
//! | | mirror-ring async | same, via the helper | tokio `UnixStream` | `tokio::io::duplex` |
//! |---|---:|---:|---:|---:|
//! | round trip, 8 B, both ends parked | 64.0 / 64.5 µs | 96.3 / 93.1 µs | 78.2 / 75.8 µs | 81.2 / 74.5 µs |
//! | round trip, 8 B, both runtimes busy | 0.5 / 0.5 µs | 0.5 / 0.5 µs | 5.4 / 5.2 µs | 1.4 / 1.5 µs |
//! | streaming, 64 B writes | 1.81 / 1.51 GB/s | 1.77 / 1.53 GB/s | 0.07 / 0.07 GB/s | 0.32 / 0.36 GB/s |
//! | streaming, 4 KiB writes | 8.36 / 8.06 GB/s | 9.18 / 8.31 GB/s | 2.30 / 2.35 GB/s | 0.99 / 0.92 GB/s |
//!
//! A parked round trip is four wake-ups of idle vCPUs on this VM (about 25 µs each, above),
//! whatever the transport; the ring saves the system calls around them.
//!
//! # Older kernels, sandboxes
//!
//! Where `futex_waitv` is refused (`ENOSYS` before 5.16, or a seccomp filter), the helpers
//! fall back, for good, to looking at their words every millisecond while any end of a ring
//! between processes is parked (a bounded delay of at most 1 ms per wake-up, and a scan per
//! millisecond while parked; thread rings are not affected, they are woken directly). The
//! check is made at run time by the first wait. A failure that may pass (`ENOMEM`) is not a
//! refusal: the helper polls that one round and tries `futex_waitv` again. `tests/async_ends.rs`
//! runs a ring between processes with `futex_waitv` denied by a seccomp filter, and with it
//! failing for a while with `ENOMEM`.
//!
//! # Bounded sleeps, peer death, missed wake-ups
//!
//! Every parked end has a deadline in the registry, kept by its helper:
//!
//! - an end whose peer may be another process has the peer watched, so that a dead producer
//!   reaches an async reader as `UnexpectedEof`, a dead consumer an async writer as
//!   `BrokenPipe`, within the bound a blocking end keeps (25 ms, the watch interval). When
//!   the end's own last check found the peer alive through a pidfd, the peer-poll thread waits
//!   on that pidfd and sees the death at once; the end's helper then polls the pidfd (all its
//!   entries that are due, in one `poll`) and wakes the task, whose own check tells, and
//!   latches the death. The helper also loads both roles' claim words at each of the entry's
//!   deadlines, and wakes the task if either role changed hands (a take-over, a close, a
//!   first claim); those deadlines come every safety interval (100 ms) while the peer-poll
//!   thread has the pidfd, every watch interval otherwise (no holder to watch yet, or no
//!   peer-poll thread: it could not start, or its wait failed; a park a second later at the
//!   earliest tries to start it again, and a thread that starts takes over every end parked
//!   without it). Without a pidfd (a kernel
//!   before 5.3, a sandbox, no descriptor left; a peer in another PID namespace) the task is
//!   woken every watch interval to check for itself. Measured (`tests/scale.rs`, 300 readers
//!   parked on live peer processes, three helpers, one idle second, release build): 62-64 ms
//!   of CPU when every task was woken each interval, 22-31 ms with the helpers watching
//!   every watch interval, 4.4-9.5 ms with the peer-poll thread (`BENCHMARKS.md`, "Idle async
//!   ends between processes"). What is left is each helper's wake-up every safety interval:
//!   re-entering `futex_waitv` on up to 127 words;
//! - an end watched that way also has the check of the next item made for it, at the same
//!   deadlines: a missed wake-up between processes costs an async end up to two of its
//!   intervals (two safety intervals while the peer-poll thread has its peer's pidfd);
//! - an end whose peer is in this process is not woken for nothing: every safety interval
//!   (100 ms) the helper itself compares the cursor the end waits on with its value at the
//!   park (and looks at the close and poison flags), and wakes the task only if it found it
//!   moved, with the flag still raised, at two checks in a row (once could be a publisher
//!   between its store and its wake-up): a lost wake-up, counted in the end's
//!   `Stats::lost_wakeups`. So a missed wake-up costs an async end up to two safety
//!   intervals (a blocking end, one: it checks for itself); measured, up to 273 ms under a
//!   peer that kept clearing the waiter word. So that the checks of many entries fall into
//!   one wake-up of the helper, deadlines that bound a sleep may be reached up to 10 ms
//!   early, and a new park's first check joins the helper's next check of the entries with
//!   the same interval when that comes no later than its own (so it may come sooner than an
//!   interval after the park, never later). Entries parked at different times are then
//!   checked together: measured (`tests/soak.rs`), 100 ends parked in eight groups 12 ms
//!   apart cost their helper 159 wake-ups in two idle seconds before, 19-20 now, as many as
//!   the same ends parked at once;
//! - a park whose flag had to be raised without the heavy barrier (again within a
//!   millisecond of the last one, see [`barriers`](super::barriers)) is woken when that
//!   millisecond ends, and pays the barrier then.
//!
//! # Cancellation
//!
//! Parking only registers interest: the state of a park lives in the end, not in the future.
//! Dropping a pending `read`, `write`, `send` or `recv` leaves the ring exactly as it was: a
//! write commits only what it copied, a read releases only what it copied out or consumed, a
//! `send` writes and commits a frame in one step, and `recv` releases a frame only when its
//! `Frame` drops. The next call settles the leftover registration; dropping the end removes
//! it. Between processes the helper that slept on the end's word also holds the ring (its
//! mapping and, for a memfd ring, its descriptor) for that sleep: the removal wakes it, and it
//! lets go when it runs, just after the drop returns (under load, a scheduling delay later),
//! not before.
//!
//! Until then the registration keeps its task's `Waker`, and with it whatever the waker keeps
//! alive. An end that outlives the runtime its task was parked on (kept in a pool, behind a
//! mutex) keeps that task's waker, and through it the dropped runtime's driver (its
//! descriptors) and the task's memory, until the end is used again or dropped, or until its
//! helper wakes the task (a publish, a close, the peer's death; between processes with no
//! pidfd on the peer, the next watch of it, within 25 ms). A
//! waker that panics when woken by the helper thread (an executor that is gone) is caught
//! there, so the helper goes on serving the other ends; one woken directly by a thread ring's
//! publisher unwinds out of the publisher's call (above).
//!
//! # Counters
//!
//! Async parks count in the end's `Stats` like blocking ones: `parks` (flag raised),
//! `barriers`, `sleeps` (registrations), `woken` (the flag was found cleared by the peer),
//! `sleep_timeouts` (a deadline ended the sleep) and `lost_wakeups`.
