//! A lock-free single-producer/single-consumer byte ring whose data pages are mapped twice,
//! back to back, so that every readable and every writable region is **one contiguous slice**,
//! even across the wrap point.
//!
//! ```
//! use std::io::{BufRead, Write};
//!
//! let (mut tx, mut rx) = mirror_ring::channel(64 * 1024)?;
//! let writer = std::thread::spawn(move || -> std::io::Result<()> {
//!     for i in 0..1000 {
//!         writeln!(tx, "record {i}")?;
//!     }
//!     Ok(()) // dropping tx closes the ring
//! });
//! let mut count = 0;
//! loop {
//!     // Every readable byte, in one slice, straight from the ring: no copy, no reassembly.
//!     let buf = rx.fill_buf()?;
//!     if buf.is_empty() {
//!         break; // end of stream
//!     }
//!     let whole = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
//!     count += buf[..whole].iter().filter(|&&b| b == b'\n').count();
//!     rx.consume(whole);
//! }
//! writer.join().unwrap()?;
//! assert_eq!(count, 1000);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Why mirror the pages
//!
//! A ring buffer's free and filled regions wrap around the end of the buffer. Ordinary rings
//! then hand out two slices, or copy: a parser that needs a whole record has to reassemble it.
//! Here the `N` data pages appear twice in a row in the address space, so the `k` bytes at
//! offset `N - 3` are simply the slice `[N - 3, N - 3 + k)`: [`Producer::write_grant`],
//! [`Consumer::read_grant`] and `BufRead::fill_buf` always lend one slice.
//!
//! The memory is anonymous shared memory mirrored with `mremap` ([`Backend::MirrorFlag`] where
//! the kernel proves it works, [`Backend::Duplicate`] otherwise), so the same ring works
//! between threads and between a parent and its forked children, with no file descriptor and
//! no name to leak. [`Backend::Memfd`] serves rings handed to unrelated processes.
//!
//! # Between threads
//!
//! [`channel`] or [`RingOptions::build`] return a [`Producer`] and a [`Consumer`]: `Send`, not
//! `Sync`, one per thread. Beside grants they offer `std::io` (`Write`; `Read` and `BufRead`),
//! non-blocking [`Producer::try_write`] / [`Consumer::try_read`] (`WouldBlock`), and variants
//! with a timeout. Blocking spins briefly, then sleeps on a futex in the shared header; the
//! fast path makes no system call and writes no shared cache line beyond the cursor.
//!
//! Dropping the producer closes the ring: the consumer drains what is left and then sees end
//! of stream. Dropping the consumer makes writes fail with `BrokenPipe`.
//!
//! # Between processes
//!
//! [`RingOptions::shared`] builds a [`SharedRing`]: the ring before any process has claimed an
//! end. Each process then claims one role with [`SharedRing::into_producer`] or
//! [`SharedRing::into_consumer`]. A role is claimed by a compare-and-swap in the shared header,
//! once for the life of the ring: a second claim of the same role, from any process, fails with
//! `AlreadyExists` (also after the first claimant closed or died).
//!
//! **Across `fork()`**, with no file descriptor and no name (every backend): create the ring,
//! fork, and let each process claim its role.
//!
//! ```
//! use std::io::{Read, Write};
//!
//! let ring = mirror_ring::RingOptions::new().capacity(1 << 16).shared()?;
//! // SAFETY (example): the child uses only its own end, then leaves through _exit.
//! let pid = unsafe { libc::fork() };
//! if pid == 0 {
//!     let mut tx = ring.into_producer().unwrap();
//!     tx.write_all(b"from the child").unwrap();
//!     drop(tx); // closes: the parent sees end of stream
//!     unsafe { libc::_exit(0) };
//! }
//! let mut rx = ring.into_consumer()?;
//! let mut text = String::new();
//! rx.read_to_string(&mut text)?;
//! assert_eq!(text, "from the child");
//! unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Fork caveats:
//! - Until the roles are claimed, both processes hold the whole ring and either could claim
//!   either role: claim right after the fork, and only the role each process is meant to have.
//! - A claimed end belongs to the process that claimed it. A forked child inherits a copy that
//!   refuses to work (`Unsupported`, checked on every call through a fork generation counter
//!   bumped by a `pthread_atfork` handler: one relaxed load) and whose drop does not close the
//!   parent's ring. Children made without `pthread_atfork` (a raw `clone` syscall) are not
//!   detected: do not use an end there.
//! - [`RingOptions::dont_fork`] (`MADV_DONTFORK` over the whole ring, never one view alone)
//!   keeps the ring out of children altogether. The child's copies of the handles are inert:
//!   claims fail with `Unsupported` and dropping them unmaps nothing (the range may hold other
//!   memory there).
//!
//! **To an unrelated process**, a [`Backend::Memfd`] ring travels as its sealed memfd over a
//! Unix socket ([`SharedRing::send_to`] and [`SharedRing::recv_from`], `SCM_RIGHTS`), or any
//! other way a descriptor can travel, into [`SharedRing::from_fd`]. `from_fd` treats the file
//! as untrusted: it must be a memfd (shared memory) sealed with `F_SEAL_SHRINK | F_SEAL_GROW`
//! (the crate adds `F_SEAL_SEAL`; a writable, unsealed or write-sealed file is refused), open
//! read-write, sized exactly one page plus a power-of-two capacity, and its header (checked
//! from a copy before anything is mapped, and again once mapped) must carry the right magic,
//! version, capacity, backend, role states and cursors. Anything else is `InvalidData`, with
//! the descriptor closed and nothing left mapped. Because of the seals, no holder of the file
//! can shrink it under the mapping (the `SIGBUS` a truncated shared file would raise).
//!
//! **Peer death.** A process can die without running `Drop`. Between processes, every blocked
//! call sleeps at most 25 ms at a time and then checks the peer through a pidfd (Linux 5.3+;
//! `/proc/<pid>/stat` before), which reports a process as soon as it terminates, also while it
//! is an unreaped zombie: a parent need not `waitpid` a dead child for its ring to notice. Pid
//! reuse is caught by the start time each claimant records next to its pid: once the pidfd is
//! open, the process it names must have that start time, or the claimant is gone. Limits: both
//! processes must share a PID namespace, and where `/proc` hides the peer (`hidepid`) the pidfd
//! alone decides. Measured from `SIGKILL` to the blocked call returning, over 150 kills on a
//! 2-core VM: median 9–16 ms, at most 27.5 ms (the 25 ms interval plus scheduling). The
//! consumer first reads every byte committed before the death, then gets `UnexpectedEof` (a
//! crash is not a clean end of stream); the producer gets `BrokenPipe`. `try_*` calls (when
//! they would otherwise say "empty" or "full") and `is_abandoned` report it too; a write that
//! fits is not refused (like bytes written to a pipe nobody reads, it is lost). Until the peer
//! has claimed its role there is no one to watch, so a blocking call just waits: the timeout
//! variants exist for that.
//!
//! **Trust model.** The peer process and the ring file are untrusted. Validated: every value
//! read from the shared header before it becomes an offset or a length (a cursor that moves
//! backwards or further than the capacity poisons the ring: `InvalidData` from then on, for
//! both ends); the file handed to `from_fd` (above); the peer's pid (only used to open a pidfd
//! and read `/proc`, never to send a signal; non-positive values are ignored). So a hostile
//! peer, even one writing random values over the header at full speed, cannot make this
//! process read or write out of bounds, receive a slice longer than the capacity, crash, or
//! spin forever in a bounded call. What it can still do:
//! - change bytes in flight: shared memory is shared, and a grant's bytes can change while you
//!   look at them. A consumer that must not trust its peer validates what it copies out
//!   ([`Consumer::try_read`] and `Read` copy), never a grant it re-reads;
//! - stall the ring (never publish, never release), or forge its own pid so that its death
//!   goes unnoticed: use the timeout variants with an untrusted peer;
//! - forge a close, a death (a pid that names no process) or corruption: the ends then report
//!   `Ok(0)` / `UnexpectedEof` / `BrokenPipe` / `InvalidData` early;
//! - punch holes in a memfd ring (allowed by the size seals): the bytes read as zeros, which is
//!   one more way of changing bytes in flight.
//!
//! **Accounting.** RSS counts both views (2N once touched, in every process that maps the
//! ring); PSS, `Shmem` in `/proc/meminfo` and memory cgroups count the pages once (N).
//! `RLIMIT_AS` counts 2N per mapping process.
//!
//! # Kernel requirements
//!
//! Linux only. [`Backend::MirrorFlag`]: 5.13+. [`Backend::Duplicate`]: any Linux since 2.6
//! (shared memory). [`Backend::Memfd`]: 3.17+. Blocking uses `membarrier` (4.16+) when
//! available and a full fence otherwise; peer watching uses pidfds (5.3+) or `/proc`.
//!
//! # Errors
//!
//! Every error is an [`std::io::Error`]. OS failures keep their errno (`raw_os_error()`, or as
//! `source()` where context is added: `OutOfMemory` from creation names `RLIMIT_AS` and
//! `vm.max_map_count`). Full/empty on `try_*`: `WouldBlock`. Consumer gone: `BrokenPipe`.
//! Producer died: `UnexpectedEof`. Poisoned ring or bad ring file: `InvalidData`. Oversized
//! frame or grant: `InvalidInput`.

#![cfg_attr(loom, allow(dead_code, unused_imports))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

#[cfg(not(target_os = "linux"))]
compile_error!("mirror-ring supports Linux only: it relies on mremap, memfd_create and futex");

mod header;
mod protocol;
mod stats;
mod sync;
mod wait;

#[cfg(loom)]
pub mod loom_api;

#[cfg(not(loom))]
mod framed;
#[cfg(not(loom))]
mod io;
#[cfg(not(loom))]
mod mirror;
#[cfg(not(loom))]
mod peer;
#[cfg(not(loom))]
mod ring;
#[cfg(not(loom))]
mod shared;
#[cfg(not(loom))]
mod sys;

#[cfg(not(loom))]
pub use framed::{Frame, FrameGrant, FramedConsumer, FramedProducer};
#[cfg(not(loom))]
pub use mirror::{Backend, MirrorMap, MirrorOptions};
#[cfg(not(loom))]
pub use ring::{channel, Consumer, Producer, ReadGrant, RingOptions, WriteGrant, DEFAULT_CAPACITY};
#[cfg(not(loom))]
pub use shared::{recv_fd, send_fd, SharedRing};
pub use stats::{Stats, StatsHandle};

/// The kernel release this process runs on (`uname -r`), for reports.
#[cfg(not(loom))]
pub fn kernel_release() -> String {
    sys::kernel_release()
}

/// The README's examples, compiled and run as doctests so they stay true.
#[cfg(all(doctest, not(loom)))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Lets the shared test helpers (`tests/common`) name the crate as integration tests do.
#[cfg(all(test, not(loom)))]
extern crate self as mirror_ring;

#[cfg(all(test, not(loom)))]
#[path = "../tests/common/mod.rs"]
mod test_util;
