//! Thin public wrappers over the crate's real protocol code, for the models in `loom-tests`.
//! Compiled only under `--cfg loom`.
//!
//! Loom cannot model `mmap`, so a [`Ring`] here is a heap-allocated [`Header`] initialised as a
//! real ring's would be; the models keep the data bytes themselves (in loom `UnsafeCell`s
//! indexed by `position & (N - 1)`). Every method below forwards to the real cursor, wait and
//! close code of `protocol.rs`, `wait.rs` and `header.rs`, whose atomics and futex are loom's
//! under this cfg (see `sync.rs`). Nothing here re-implements protocol logic.
//!
//! ```ignore
//! loom::model(|| {
//!     let ring = Ring::new(4, 0);
//!     let mut tx = ring.producer();
//!     assert_eq!(tx.writable(&ring, 1), Ok(4));
//! });
//! ```

use std::time::Duration;

use crate::header::{self, Claimant, Header, Line, RoleSlot};
use crate::protocol;
use crate::sync::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use crate::wait::{self, NoPeer};

/// A value read from the peer failed validation; the ring is poisoned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupt;

/// Why a wait ended without its condition (mirrors the crate's internal `Stop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The peer closed its end.
    Closed,
    /// The peer's process died without closing (never under loom: there is no peer process).
    PeerDied,
    /// The ring is poisoned.
    Corrupt,
    /// The deadline passed (never under loom: waits have no deadline here).
    TimedOut,
}

/// One end of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The writing end.
    Producer,
    /// The reading end.
    Consumer,
}

/// One of the two futex words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Word {
    /// The consumer sleeps here waiting for data.
    Data,
    /// The producer sleeps here waiting for space.
    Space,
}

fn stop_out(s: protocol::Stop) -> Stop {
    match s {
        protocol::Stop::Closed => Stop::Closed,
        protocol::Stop::PeerDied => Stop::PeerDied,
        protocol::Stop::Corrupt => Stop::Corrupt,
        protocol::Stop::TimedOut => Stop::TimedOut,
    }
}

fn stop_in(s: Stop) -> protocol::Stop {
    match s {
        Stop::Closed => protocol::Stop::Closed,
        Stop::PeerDied => protocol::Stop::PeerDied,
        Stop::Corrupt => protocol::Stop::Corrupt,
        Stop::TimedOut => protocol::Stop::TimedOut,
    }
}

fn poll_out(p: Option<Result<usize, protocol::Stop>>) -> Option<Result<usize, Stop>> {
    p.map(|r| r.map_err(stop_out))
}

fn corrupt<T>(r: Result<T, protocol::Corrupt>) -> Result<T, Corrupt> {
    r.map_err(|protocol::Corrupt| Corrupt)
}

fn role_in(r: Role) -> header::Role {
    match r {
        Role::Producer => header::Role::Producer,
        Role::Consumer => header::Role::Consumer,
    }
}

fn word_in(w: Word) -> header::Word {
    match w {
        Word::Data => header::Word::Data,
        Word::Space => header::Word::Space,
    }
}

/// A ring's shared header on the heap, initialised like a real ring's (`Header::init`).
#[derive(Debug)]
pub struct Ring {
    hdr: Box<Header>,
    cap: u64,
}

impl Ring {
    /// A fresh ring of `capacity` bytes (a power of two; tiny in models) with both cursors at
    /// `start`. Must be called inside `loom::model`.
    pub fn new(capacity: u64, start: u64) -> Ring {
        let slot = || RoleSlot {
            state: AtomicU32::new(0),
            pid: AtomicI32::new(0),
            start_time: AtomicU64::new(0),
            pid_ns: AtomicU64::new(0),
            park: AtomicU32::new(0),
            reserved: AtomicU32::new(0),
        };
        let hdr = Box::new(Header {
            magic: AtomicU64::new(0),
            version: AtomicU32::new(0),
            backend: AtomicU32::new(0),
            capacity: AtomicU64::new(0),
            data_offset: AtomicU64::new(0),
            producer: slot(),
            consumer: slot(),
            poisoned: AtomicU32::new(0),
            head: Line(AtomicU64::new(0)),
            tail: Line(AtomicU64::new(0)),
            data_waiter: Line(AtomicU32::new(0)),
            space_waiter: Line(AtomicU32::new(0)),
            futex: Default::default(),
        });
        // Backend 3 (Memfd) and a 4 KiB control page: any valid values do.
        hdr.init(capacity, 4096, 3, start);
        Ring { hdr, cap: capacity }
    }

    /// The capacity `N`.
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// A producer cursor attached to the header's current cursors (`ProducerCursor::attach`).
    ///
    /// # Panics
    ///
    /// If the header's cursors are invalid.
    pub fn producer(&self) -> ProducerCursor {
        ProducerCursor(protocol::ProducerCursor::attach(&self.hdr, self.cap).expect("valid cursors"))
    }

    /// A consumer cursor attached to the header's current cursors (`ConsumerCursor::attach`).
    ///
    /// # Panics
    ///
    /// If the header's cursors are invalid.
    pub fn consumer(&self) -> ConsumerCursor {
        ConsumerCursor(protocol::ConsumerCursor::attach(&self.hdr, self.cap).expect("valid cursors"))
    }

    /// `Header::claim`: claims `role` for `pid`; exactly one claim per role succeeds.
    pub fn claim(&self, role: Role, pid: i32, start_time: u64) -> bool {
        self.hdr.claim(role_in(role), Claimant { pid, start_time, pid_ns: 0, park: header::PARK_GLOBAL })
    }

    /// Reads a role slot the way the peer watcher in `shared.rs` does: the state (Acquire),
    /// then, if claimed, the pid (Acquire) and the start time (Relaxed).
    pub fn watch(&self, role: Role) -> (u32, i32, u64) {
        let slot = self.hdr.slot(role_in(role));
        let state = slot.state.load(Ordering::Acquire);
        if state != header::ROLE_CLAIMED {
            return (state, 0, 0);
        }
        let pid = slot.pid.load(Ordering::Acquire);
        (state, pid, slot.start_time.load(Ordering::Relaxed))
    }

    /// `protocol::close`: marks `role` closed and wakes the peer.
    pub fn close(&self, role: Role) {
        protocol::close(&self.hdr, role_in(role));
    }

    /// `Header::is_closed`.
    pub fn is_closed(&self, role: Role) -> bool {
        self.hdr.is_closed(role_in(role))
    }

    /// `Header::is_poisoned`.
    pub fn is_poisoned(&self) -> bool {
        self.hdr.is_poisoned()
    }

    /// A hostile producer: stores any head (Release, as a publish does) and wakes the consumer
    /// the way a publish does (`protocol::notify`).
    pub fn hostile_publish_head(&self, head: u64) {
        self.hdr.head.store(head, Ordering::Release);
        protocol::notify(&self.hdr, header::Word::Data, &Default::default());
    }

    /// A hostile consumer: stores any tail (Release, as a release does) and wakes the producer
    /// the way a release does.
    pub fn hostile_publish_tail(&self, tail: u64) {
        self.hdr.tail.store(tail, Ordering::Release);
        protocol::notify(&self.hdr, header::Word::Space, &Default::default());
    }

    /// `wait::wait_for` with no spin, no deadline and no peer process to watch: raises the
    /// waiter flag on `word`, rechecks with `poll`, and sleeps on the (emulated) futex.
    pub fn wait_for<T>(&self, word: Word, mut poll: impl FnMut() -> Option<Result<T, Stop>>) -> Result<T, Stop> {
        let w = word_in(word);
        let mut park = header::PARK_GLOBAL;
        let counters = Default::default();
        let waiter = wait::Waiter {
            hdr: &self.hdr,
            role: w.sleeper(),
            park: &mut park,
            spin: Duration::ZERO,
            peer: &mut NoPeer,
            counters: &counters,
        };
        wait::wait_for(waiter, None, || poll().map(|r| r.map_err(stop_in))).map_err(stop_out)
    }

    /// What `Producer::reserve_slow` does: publish batched bytes, then wait until `min` bytes
    /// are free (`poll_writable` on `Word::Space`).
    pub fn wait_writable(&self, tx: &mut ProducerCursor, min: usize) -> Result<usize, Stop> {
        tx.publish(self);
        self.wait_for(Word::Space, || tx.poll_writable(self, min))
    }

    /// What `Consumer::available_slow` does: release batched bytes, then wait until `min`
    /// bytes are readable (`poll_readable` on `Word::Data`).
    pub fn wait_readable(&self, rx: &mut ConsumerCursor, min: usize) -> Result<usize, Stop> {
        rx.publish(self);
        self.wait_for(Word::Data, || rx.poll_readable(self, min))
    }
}

/// The real `protocol::ProducerCursor`.
#[derive(Debug)]
pub struct ProducerCursor(protocol::ProducerCursor);

impl ProducerCursor {
    /// Own cursor (total bytes advanced).
    pub fn head(&self) -> u64 {
        self.0.head()
    }
    /// `head & (N - 1)`.
    pub fn offset(&self) -> usize {
        self.0.offset()
    }
    /// Free bytes per the cached tail.
    pub fn free_cached(&self) -> usize {
        self.0.free_cached()
    }
    /// Reloads and validates the tail.
    pub fn refresh(&mut self, ring: &Ring) -> Result<usize, Corrupt> {
        corrupt(self.0.refresh(&ring.hdr))
    }
    /// Free space, refreshing only if fewer than `max(want, 1)` are known free.
    pub fn writable(&mut self, ring: &Ring, want: usize) -> Result<usize, Corrupt> {
        corrupt(self.0.writable(&ring.hdr, want))
    }
    /// Advances and publishes `n` bytes.
    pub fn commit(&mut self, ring: &Ring, n: usize) {
        self.0.commit(&ring.hdr, n)
    }
    /// Advances without publishing.
    pub fn advance(&mut self, n: usize) {
        self.0.advance(n)
    }
    /// Publishes the advanced head and wakes a sleeping consumer.
    pub fn publish(&mut self, ring: &Ring) {
        self.0.publish(&ring.hdr)
    }
    /// One poll of a blocked writer.
    pub fn poll_writable(&mut self, ring: &Ring, min: usize) -> Option<Result<usize, Stop>> {
        poll_out(self.0.poll_writable(&ring.hdr, min))
    }
}

/// The real `protocol::ConsumerCursor`.
#[derive(Debug)]
pub struct ConsumerCursor(protocol::ConsumerCursor);

impl ConsumerCursor {
    /// Own cursor (total bytes consumed).
    pub fn tail(&self) -> u64 {
        self.0.tail()
    }
    /// `tail & (N - 1)`.
    pub fn offset(&self) -> usize {
        self.0.offset()
    }
    /// Readable bytes per the cached head.
    pub fn readable_cached(&self) -> usize {
        self.0.readable_cached()
    }
    /// Reloads and validates the head.
    pub fn refresh(&mut self, ring: &Ring) -> Result<usize, Corrupt> {
        corrupt(self.0.refresh(&ring.hdr))
    }
    /// Readable bytes, refreshing only if fewer than `max(want, 1)` are known.
    pub fn readable(&mut self, ring: &Ring, want: usize) -> Result<usize, Corrupt> {
        corrupt(self.0.readable(&ring.hdr, want))
    }
    /// Advances and publishes `n` bytes.
    pub fn release(&mut self, ring: &Ring, n: usize) {
        self.0.release(&ring.hdr, n)
    }
    /// Advances without publishing.
    pub fn advance(&mut self, n: usize) {
        self.0.advance(n)
    }
    /// Publishes the advanced tail and wakes a sleeping producer.
    pub fn publish(&mut self, ring: &Ring) {
        self.0.publish(&ring.hdr)
    }
    /// One poll of a blocked reader.
    pub fn poll_readable(&mut self, ring: &Ring, min: usize) -> Option<Result<usize, Stop>> {
        poll_out(self.0.poll_readable(&ring.hdr, min))
    }
}
