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
//!     if whole == 0 {
//!         // Part of a line: wait for more (`fill_buf` returns what is there without waiting;
//!         // `UnexpectedEof` if the stream ends inside the line).
//!         let have = buf.len();
//!         rx.read_grant_blocking(have + 1)?;
//!         continue;
//!     }
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
//! between threads and between a parent and its forked children, with no file descriptor for
//! the memory and no name to leak. (An end between processes holds one pidfd on its peer once
//! it watches it: [`docs::accounting`].) [`Backend::Memfd`] serves rings handed to unrelated
//! processes.
//!
//! # Between threads
//!
//! [`channel`] or [`RingOptions::build`] return a [`Producer`] and a [`Consumer`]: `Send`, not
//! `Sync`, one per thread. Beside grants they offer `std::io` (`Write`; `Read` and `BufRead`),
//! non-blocking [`Producer::try_write`] / [`Consumer::try_read`] (`WouldBlock`), and variants
//! with a timeout. Blocking spins briefly, then sleeps on a futex in the shared header; the
//! fast path makes no system call and writes no shared cache line beyond the cursor. A
//! blocking write that finds the ring full first waits 1 µs without looking at it (within the
//! spin budget), so the consumer can release a run of records without the producer taking its
//! cursor's cache line after every one (64-byte records through `fill_buf`: 42-50 -> 114-119
//! M/s on the Intel host, over several runs).
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
//! **Across `fork()`**, with every backend (the `mremap` ones need no descriptor for the
//! memory, and none has a name): create the ring, fork, and let each process claim its role.
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
//! A claimed end belongs to the process that claimed it: a forked child's copy of an end is
//! inert (`Unsupported`), and its drop does not close the parent's ring.
//! [`RingOptions::dont_fork`] keeps a ring out of children altogether. The whole story (roles,
//! closing, a peer that dies without closing, PID namespaces): [`docs::lifecycle`].
//!
//! **To an unrelated process**, a [`Backend::Memfd`] ring travels as its sealed memfd over a
//! Unix socket ([`SharedRing::send_to`] and [`SharedRing::recv_from`], `SCM_RIGHTS`), or any
//! other way a descriptor can travel, into [`SharedRing::from_fd`], which validates the file
//! and its header before and after mapping it.
//!
//! **Peer death.** A process killed without running `Drop` is noticed by a blocked call within
//! the watch interval (25 ms) plus scheduling: the consumer reads every committed byte, then
//! gets `UnexpectedEof`; the producer gets `BrokenPipe`. Only proof counts as death ("could not
//! check" is retried): [`docs::lifecycle`].
//!
//! **Restart.** Those errors are not final: another process (a supervisor that inherited the
//! ring, or one that attached with `from_fd`) may take the dead role over with
//! [`SharedRing::take_over_producer`] or [`SharedRing::take_over_consumer`] and resume at the
//! committed cursor (a dead consumer's unreleased bytes come again), and the survivor goes on:
//! [`docs::lifecycle`], "Restart".
//!
//! **Trust.** A peer process can write anything into the shared memory at any time; it cannot
//! make this process read out of bounds, crash, or hang in a call with a timeout. With an
//! untrusted peer only the copying calls are sound: [`docs::trust_model`].
//!
//! # Counters
//!
//! Each end counts what its blocking calls did (spins, parks, wake-ups sent and received,
//! sleeps that ran to their bound, lost wake-ups, peer deaths): [`Producer::stats`],
//! [`Consumer::stats`] and [`StatsHandle`] for a monitoring thread.
//!
//! # Kernel requirements
//!
//! Linux only. [`Backend::MirrorFlag`]: 5.13+. [`Backend::Duplicate`]: any Linux since 2.6
//! (shared memory). [`Backend::Memfd`]: 3.17+. [`Backend::Auto`] picks the first that works and
//! hands over to the next if a sandbox refuses one later. Blocking uses `membarrier` when
//! available (4.14+ between threads, 4.16+ between processes) and full fences otherwise
//! ([`docs::barriers`]); peer watching uses pidfds (5.3+), `/proc` and `kill(pid, 0)`. Costs in
//! memory and address space: [`docs::accounting`].
//!
//! # Errors
//!
//! Every error is an [`std::io::Error`]. OS failures keep their errno (`raw_os_error()`, or as
//! `source()` where context is added: `OutOfMemory` from creation names the limit involved,
//! `RLIMIT_AS` and `vm.max_map_count` for the mapping, memory itself for a prefault,
//! `RLIMIT_MEMLOCK` for a lock, which is `PermissionDenied` when that limit is zero).
//! Full/empty on `try_*`: `WouldBlock`. A timeout variant whose time ran out: `TimedOut`.
//! Consumer gone: `BrokenPipe`.
//! Producer died: `UnexpectedEof`; fewer bytes left than a grant's minimum at the end of the
//! stream: `UnexpectedEof`. Poisoned ring or bad ring file: `InvalidData`. Oversized frame or
//! grant: `InvalidInput`. A forked child's copy of an end: `Unsupported`. An end whose role
//! another process took over (a forged death): `ConnectionAborted`. A take-over refused:
//! `AlreadyExists` (the holder lives, or closed), `NotFound` (never claimed), `WouldBlock`
//! (cannot tell now).

#![cfg_attr(mirror_ring_loom, allow(dead_code))] // the loom build runs the models only
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

#[cfg(not(target_os = "linux"))]
compile_error!("mirror-ring supports Linux only: it relies on mremap, memfd_create and futex");
#[cfg(not(target_pointer_width = "64"))]
compile_error!(
    "mirror-ring supports 64-bit targets only: its stream positions are u64 offsets into views of up to \
     half the address space, and it passes the kernel 64-bit time values"
);

// Dependencies run one way: sys, sync -> header -> stats, protocol -> wait, peer -> mirror,
// ring (and its children framed, producer, consumer) -> shared.
mod error;
mod header;
mod mirror;
mod peer;
mod protocol;
mod ring;
mod shared;
mod stats;
mod sync;
mod sys;
mod wait;

pub mod docs;

#[cfg(doctest)]
mod compile_fail;

pub use mirror::{Backend, MirrorMap, MirrorOptions};

pub use ring::{
    channel, Consumer, Frame, FrameGrant, FramedConsumer, FramedProducer, Producer, ReadGrant, RingOptions, WriteGrant,
    DEFAULT_CAPACITY,
};
#[cfg(feature = "tokio")]
pub use ring::{AsyncConsumer, AsyncFramedConsumer, AsyncFramedProducer, AsyncProducer};
pub use shared::{recv_fd, send_fd, SharedRing};
pub use stats::{Stats, StatsHandle};

/// The kernel release this process runs on (`uname -r`), for reports.
pub fn kernel_release() -> String {
    sys::kernel_release()
}

/// The README's examples, compiled and run as doctests so they stay true. Its async example
/// needs the feature `tokio`, so they run with it (`.ci/run` tests with `--all-features`).
#[cfg(all(doctest, feature = "tokio"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Lets the shared test helpers (`tests/common`) name the crate as integration tests do.
#[cfg(all(test, not(mirror_ring_loom)))]
extern crate self as mirror_ring;

#[cfg(all(test, not(mirror_ring_loom)))]
#[path = "../tests/common/mod.rs"]
mod test_util;

/// The loom models of the protocol, kept in the top-level `loom-tests/` folder and compiled as
/// this crate's own tests under `--cfg mirror_ring_loom` (see the README).
#[cfg(all(test, mirror_ring_loom))]
#[path = "../loom-tests/models.rs"]
mod loom_models;
