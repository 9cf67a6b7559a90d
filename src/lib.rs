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
//! [`RingOptions::shared`] builds a [`SharedRing`]. Across `fork()`, create it first, fork,
//! and let each process claim one role with [`SharedRing::into_producer`] or
//! [`SharedRing::into_consumer`]. Each role can be claimed once for the life of the ring, by
//! any process; a claimed end belongs to the process that claimed it (a forked child's copy
//! refuses to work). A [`Backend::Memfd`] ring can be sent to an unrelated process over a Unix
//! socket ([`SharedRing::send_to`], [`SharedRing::recv_from`], or [`SharedRing::from_fd`]).
//!
//! Fork caveats: until roles are claimed, both processes hold the whole ring; a ring made with
//! [`RingOptions::dont_fork`] does not reach children at all. Claimed ends inherited by a child
//! must not be used there (they return `Unsupported`).
//!
//! A peer process that dies without closing is noticed within about 25 ms by any blocked call
//! (and by `try_*` and `is_abandoned`): the consumer first reads every byte committed before
//! the death, then gets `UnexpectedEof`; the producer gets `BrokenPipe`.
//!
//! **Trust model.** The peer is untrusted. Every value read from the shared header is validated
//! before it becomes an offset or a length: a cursor that moves backwards or further than the
//! capacity poisons the ring (`InvalidData` from then on); [`SharedRing::from_fd`] checks the
//! file type, seals, size and every header field before use. A hostile peer therefore cannot
//! make this process read or write out of bounds, crash, or loop forever. It can still change
//! bytes in flight (shared memory is shared): a consumer must validate what it reads, ideally
//! after copying it out. It can also stall the ring by never publishing, like any peer.
//!
//! Memory accounting: RSS counts both views (2N once touched); PSS, `Shmem` in
//! `/proc/meminfo` and memory cgroups count the pages once (N).
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

/// The kernel release this process runs on (`uname -r`), for reports.
#[cfg(not(loom))]
pub fn kernel_release() -> String {
    sys::kernel_release()
}

/// The README's examples, compiled and run as doctests so they stay true.
#[cfg(all(doctest, not(loom)))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(all(test, not(loom)))]
#[path = "../tests/common/mod.rs"]
mod test_util;
