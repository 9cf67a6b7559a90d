//! Messages between two pinned threads: mirror-ring framed messages against rtrb (and crossbeam's
//! `ArrayQueue` for reference), one at a time and batched, like with like.
//!
//! - One at a time: mirror-ring `try_send` / `try_recv` (a cursor store per message on each
//!   side, the default) against rtrb `push` / `pop` of one element per message.
//! - Batched by `n`: mirror-ring with `try_send_batch` of `n` messages on the producer (one
//!   check of the ring and one publish per `n` frames; `set_batch(n)` + `try_send`, one call
//!   per message, is in the batching tables) and `try_recv_batch` on the consumer (everything readable, at most an eighth of the
//!   ring, one cursor load and one store per call) against rtrb with `write_chunk_uninit(n)` +
//!   `commit_all` on the producer (one store per `n` elements) and `read_chunk(slots)` +
//!   `commit_all` on the consumer (everything readable, at most an eighth of the ring, one load
//!   and one store per call).
//! - 8-byte messages: mirror-ring frames of 8 bytes (16 in the ring with the header) against
//!   rtrb elements of a `u64`; 64-byte messages: frames of 64 bytes against `[u8; 64]`.
//!
//! Every side does the same work: the producer builds each message (its counter in the first
//! word, the rest a constant), the consumer copies the whole message out of the queue and folds
//! its first word into a checksum, checked after every sample (warm-up and timed part). Every
//! queue holds 1 MiB of messages (the framed ring's 1 MiB also holds the headers) and spins
//! (`spin_loop`) when full or empty: this measures the queues, not a waiting policy. Producer
//! on CPU 0, consumer on CPU 1; a fresh queue per sample, a warm-up of two laps of the queue,
//! a spinning barrier, then the clock runs from the producer leaving the barrier to the
//! consumer holding the last message.
#![allow(dead_code, unreachable_pub)]

use std::hint::{black_box, spin_loop};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use mirror_ring::{FramedConsumer, FramedProducer, RingOptions};

use super::pair::{drive, expected_sum, InOrder, SeqRx, SeqTx};
use super::*;

/// Bytes of messages each queue holds, unless a case says otherwise ([`MsgCase::queue_bytes`]).
pub const MSG_QUEUE_BYTES: usize = MIB;

/// The queue and API shape under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgQueue {
    /// mirror-ring framed, `try_send` / `try_recv`: every message published on both sides.
    Framed,
    /// mirror-ring framed, `set_batch(n)` + `try_recv_batch`.
    FramedBatched(usize),
    /// rtrb `push` / `pop`, one element per message.
    RtrbPushPop,
    /// rtrb `write_chunk_uninit(n)` + `read_chunk(slots)`.
    RtrbChunks(usize),
    /// crossbeam `ArrayQueue` `push` / `pop` (a reference: it has no batch API).
    ArrayQueue,
    /// mirror-ring framed, `set_batch(n)` + `try_recv`: batching on the producer only.
    FramedBatchedSend(usize),
    /// mirror-ring framed, `try_send` + `try_recv_batch`: batching on the consumer only.
    FramedRecvBatch,
    /// The hand-written minimal stamped-frame queue (`MinShared`): the floor for framed
    /// messages, one at a time.
    Minimal,
    /// mirror-ring framed, blocking `send` / `recv`: one at a time, the crate's own waiting
    /// (its spin, and the slip after a run of frames, `docs::framing`).
    FramedBlocking,
    /// mirror-ring framed, `try_send` + blocking `recv_batch`: batching on the consumer only,
    /// with the crate's own waiting.
    FramedRecvBatchBlocking,
    /// mirror-ring framed, `try_send_batch` of `n` messages + `try_recv_batch`: the batch APIs
    /// on both sides, like rtrb's chunks.
    FramedSendBatch(usize),
    /// mirror-ring framed, one at a time, each message built in place: blocking `reserve` +
    /// [`Message::write_to`] + `commit` on the producer, blocking `recv` on the consumer.
    FramedInPlaceBlocking,
    /// mirror-ring framed, one at a time, each message built in place: `try_reserve` +
    /// [`Message::write_to`] + `commit`, `try_recv`, spinning on `WouldBlock` on both sides.
    FramedInPlace,
    /// mirror-ring framed, `set_batch(n)`, each message built in place (`try_reserve` +
    /// [`Message::write_to`] + `commit`), `try_recv_batch` on the consumer.
    FramedInPlaceBatched(usize),
}

impl MsgQueue {
    pub fn name(self) -> String {
        match self {
            MsgQueue::Framed => "mirror-ring send/recv".into(),
            MsgQueue::FramedBatched(n) => format!("mirror-ring batch {n}"),
            MsgQueue::RtrbPushPop => "rtrb push/pop".into(),
            MsgQueue::RtrbChunks(n) => format!("rtrb chunks {n}"),
            MsgQueue::ArrayQueue => "ArrayQueue".into(),
            MsgQueue::FramedBatchedSend(n) => format!("set_batch({n}) + try_recv"),
            MsgQueue::FramedRecvBatch => "try_send + try_recv_batch".into(),
            MsgQueue::Minimal => "minimal stamped".into(),
            MsgQueue::FramedBlocking => "mirror-ring send/recv, blocking".into(),
            MsgQueue::FramedRecvBatchBlocking => "try_send + recv_batch (blocking)".into(),
            MsgQueue::FramedSendBatch(n) => format!("mirror-ring send_batch {n}"),
            MsgQueue::FramedInPlaceBlocking => "mirror-ring reserve/recv, blocking".into(),
            MsgQueue::FramedInPlace => "mirror-ring reserve/recv".into(),
            MsgQueue::FramedInPlaceBatched(n) => format!("set_batch({n}) + reserve + try_recv_batch"),
        }
    }

    /// A short name for criterion ids: `mirror_framed`, `rtrb_chunks128`, ...
    pub fn id(self) -> String {
        match self {
            MsgQueue::Framed => "mirror_framed".into(),
            MsgQueue::FramedBatched(n) => format!("mirror_framed_batch{n}"),
            MsgQueue::RtrbPushPop => "rtrb_push_pop".into(),
            MsgQueue::RtrbChunks(n) => format!("rtrb_chunks{n}"),
            MsgQueue::ArrayQueue => "crossbeam_arrayqueue".into(),
            MsgQueue::FramedBatchedSend(n) => format!("mirror_framed_send_batch{n}"),
            MsgQueue::FramedRecvBatch => "mirror_framed_recv_batch".into(),
            MsgQueue::Minimal => "minimal_stamped".into(),
            MsgQueue::FramedBlocking => "mirror_framed_blocking".into(),
            MsgQueue::FramedRecvBatchBlocking => "mirror_framed_recv_batch_blocking".into(),
            MsgQueue::FramedSendBatch(n) => format!("mirror_framed_send_batch_api{n}"),
            MsgQueue::FramedInPlaceBlocking => "mirror_framed_in_place_blocking".into(),
            MsgQueue::FramedInPlace => "mirror_framed_in_place".into(),
            MsgQueue::FramedInPlaceBatched(n) => format!("mirror_framed_in_place_batch{n}"),
        }
    }
}

/// A message type: `u64` for 8 bytes, `[u8; 64]` for 64.
pub trait Message: Copy + Send + 'static {
    type Bytes: AsRef<[u8]> + Send;
    /// The message with counter `i` in its first word.
    fn make(i: u64) -> Self;
    fn first_word(&self) -> u64;
    /// Its bytes, as sent in a frame.
    fn to_bytes(self) -> Self::Bytes;
    /// A copy of a frame's payload.
    fn from_bytes(b: &[u8]) -> Self;
    /// Writes the bytes of message `i` (`make(i).to_bytes()`) straight into `dst`, a frame's
    /// payload of exactly that size: the message is built in place, never on the stack.
    fn write_to(i: u64, dst: &mut [u8]);
    /// What a receiver that reads the message where it lies takes from it: its counter, after
    /// a check of its last byte (two loads, no copy; a wrong last byte changes the value, so the
    /// driver's sum check catches it).
    fn glance(&self) -> u64;
    /// [`glance`](Self::glance) of a frame's payload.
    fn glance_bytes(b: &[u8]) -> u64;
}

impl Message for u64 {
    type Bytes = [u8; 8];
    #[inline(always)]
    fn make(i: u64) -> u64 {
        i
    }
    #[inline(always)]
    fn first_word(&self) -> u64 {
        *self
    }
    #[inline(always)]
    fn to_bytes(self) -> [u8; 8] {
        self.to_le_bytes()
    }
    #[inline(always)]
    fn from_bytes(b: &[u8]) -> u64 {
        let mut m = [0u8; 8];
        m.copy_from_slice(b);
        u64::from_le_bytes(m)
    }
    #[inline(always)]
    fn write_to(i: u64, dst: &mut [u8]) {
        dst.copy_from_slice(&i.to_le_bytes());
    }
    #[inline(always)]
    fn glance(&self) -> u64 {
        *self
    }
    #[inline(always)]
    fn glance_bytes(b: &[u8]) -> u64 {
        Self::from_bytes(b)
    }
}

impl Message for [u8; 64] {
    type Bytes = [u8; 64];
    #[inline(always)]
    fn make(i: u64) -> [u8; 64] {
        let mut m = [0x5a; 64];
        m[..8].copy_from_slice(&i.to_le_bytes());
        m
    }
    #[inline(always)]
    fn first_word(&self) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&self[..8]);
        u64::from_le_bytes(w)
    }
    #[inline(always)]
    fn to_bytes(self) -> [u8; 64] {
        self
    }
    #[inline(always)]
    fn from_bytes(b: &[u8]) -> [u8; 64] {
        let mut m = [0u8; 64];
        m.copy_from_slice(b);
        m
    }
    #[inline(always)]
    fn write_to(i: u64, dst: &mut [u8]) {
        let (word, rest) = dst.split_at_mut(8);
        word.copy_from_slice(&i.to_le_bytes());
        rest.fill(0x5a);
    }
    #[inline(always)]
    fn glance(&self) -> u64 {
        self.first_word().wrapping_add(u64::from(self[63] != 0x5a))
    }
    #[inline(always)]
    fn glance_bytes(b: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[..8]);
        u64::from_le_bytes(w).wrapping_add(u64::from(b[b.len() - 1] != 0x5a))
    }
}

fn err(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Busy work per message, in steps, on the sending and the receiving side of the one-at-a-time
/// queues (mirror-ring `try_send` / `try_recv`, rtrb `push` / `pop`, `ArrayQueue`, the minimal
/// queue): what [`msg_regime_section`] varies to show which side sets the pace. Zero everywhere
/// else. Set per run by [`MsgCase`] (the cases of one comparison run one after another).
static WORK: [AtomicU32; 2] = [AtomicU32::new(0), AtomicU32::new(0)];

/// How the receivers of the one-at-a-time queues use each message in this run: false (the
/// default), copy it out of the queue into a value the optimiser must keep (`black_box`: all
/// its bytes read and stored); true, read its counter and last byte where it lies
/// ([`Message::glance`]). Set per run by [`MsgCase`], like [`WORK`].
static IN_PLACE: AtomicBool = AtomicBool::new(false);

/// Bytes of messages the queues of this run hold; 0 for [`MSG_QUEUE_BYTES`]. Set per run by
/// [`MsgCase`], like [`WORK`].
static QUEUE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The bytes of messages this run's queues hold ([`QUEUE_BYTES`]).
fn queue_bytes() -> usize {
    // Relaxed: set before the run's threads are spawned (the spawn orders it).
    match QUEUE_BYTES.load(Ordering::Relaxed) {
        0 => MSG_QUEUE_BYTES,
        n => n,
    }
}

/// Whether this run's receivers read each message in place ([`IN_PLACE`]).
fn in_place() -> bool {
    // Relaxed: set before the run's threads are spawned (the spawn orders it).
    IN_PLACE.load(Ordering::Relaxed)
}

/// The work per message of the sending side (`0`) or the receiving side (`1`) for this run.
fn work_steps(side: usize) -> u32 {
    // Relaxed: set before the run's threads are spawned (the spawn orders it).
    WORK[side].load(Ordering::Relaxed)
}

/// `steps` dependent steps the optimiser cannot remove (about one cycle each): a stand-in for
/// building or handling a message.
#[inline(always)]
fn busy(steps: u32) {
    let mut x = 0u32;
    for _ in 0..steps {
        x = black_box(x.wrapping_add(1));
    }
}

// --- mirror-ring ------------------------------------------------------------------------------

/// mirror-ring's sending end: `try_send`, spinning on `WouldBlock` (`BLOCKING` false), or the
/// blocking `send` (true).
struct FramedTx<M, const BLOCKING: bool>(FramedProducer, std::marker::PhantomData<M>);

impl<M: Message, const BLOCKING: bool> SeqTx for FramedTx<M, BLOCKING> {
    fn send_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        let steps = work_steps(0);
        for i in from..to {
            busy(steps);
            let m = M::make(i).to_bytes();
            loop {
                match if BLOCKING { self.0.send(m.as_ref()) } else { self.0.try_send(m.as_ref()) } {
                    Ok(()) => break,
                    Err(e) if !BLOCKING && would_block(&e) => spin_loop(),
                    Err(e) => return Err(err(if BLOCKING { "send" } else { "try_send" }, e)),
                }
            }
        }
        // Publishes what a batching producer holds back (nothing otherwise).
        self.0.flush().unwrap();
        Ok(())
    }
}

/// mirror-ring's sending end, `n` messages per call: `try_send_batch`, spinning on
/// `WouldBlock`, passing again what did not fit. The messages are built into a buffer first
/// (what a caller of a slice API does; rtrb's chunks are written in place).
struct FramedBatchTx<M: Message>(FramedProducer, usize, Vec<M::Bytes>);

impl<M: Message> SeqTx for FramedBatchTx<M> {
    fn send_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        let mut i = from;
        while i < to {
            let k = ((to - i) as usize).min(self.1);
            self.2.clear();
            self.2.extend((i..i + k as u64).map(|j| M::make(j).to_bytes()));
            let mut rest = &self.2[..];
            while !rest.is_empty() {
                match self.0.try_send_batch(rest) {
                    Ok(sent) => rest = &rest[sent..],
                    Err(e) if would_block(&e) => spin_loop(),
                    Err(e) => return Err(err("try_send_batch", e)),
                }
            }
            i += k as u64;
        }
        Ok(())
    }
}

/// mirror-ring's sending end, each message built in place: `reserve` (`BLOCKING` true) or
/// `try_reserve`, spinning on `WouldBlock` (false), of the message's size, then
/// [`Message::write_to`] into the grant and `commit`. Nothing is built on the stack and copied
/// (what `send` of a freshly built message does; `docs::framing`, "Build large messages in
/// place"). A producer batching with `set_batch` publishes its last frames with `flush` at the
/// end.
struct FramedInPlaceTx<M, const BLOCKING: bool>(FramedProducer, std::marker::PhantomData<M>);

impl<M: Message, const BLOCKING: bool> SeqTx for FramedInPlaceTx<M, BLOCKING> {
    fn send_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        let steps = work_steps(0);
        let len = std::mem::size_of::<M>();
        for i in from..to {
            busy(steps);
            let mut grant = loop {
                match if BLOCKING { self.0.reserve(len) } else { self.0.try_reserve(len) } {
                    Ok(grant) => break grant,
                    Err(e) if !BLOCKING && would_block(&e) => spin_loop(),
                    Err(e) => return Err(err(if BLOCKING { "reserve" } else { "try_reserve" }, e)),
                }
            };
            M::write_to(i, &mut grant);
            grant.commit().map_err(|e| err("commit", e))?;
        }
        // Publishes what a batching producer holds back (nothing otherwise).
        self.0.flush().map_err(|e| err("flush", e))?;
        Ok(())
    }
}

/// mirror-ring's receiving end, one frame per call: `try_recv`, spinning on `WouldBlock`
/// (`BLOCKING` false), or the blocking `recv` (true).
struct FramedRx<M, const BLOCKING: bool>(FramedConsumer, std::marker::PhantomData<M>);

impl<M: Message, const BLOCKING: bool> SeqRx for FramedRx<M, BLOCKING> {
    fn recv_n(&mut self, from: u64, n: u64) -> io::Result<u64> {
        let mut order = InOrder::new(from);
        let (mut sum, steps, glance) = (0u64, work_steps(1), in_place());
        for _ in 0..n {
            loop {
                match if BLOCKING { self.0.recv() } else { self.0.try_recv() } {
                    Ok(Some(frame)) => {
                        let v = if glance {
                            M::glance_bytes(&frame)
                        } else {
                            let m = M::from_bytes(&frame);
                            black_box(&m).first_word()
                        };
                        sum = sum.wrapping_add(order.see(v));
                        drop(frame);
                        busy(steps);
                        break;
                    }
                    Ok(None) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Err(e) if !BLOCKING && would_block(&e) => spin_loop(),
                    Err(e) => return Err(err(if BLOCKING { "recv" } else { "try_recv" }, e)),
                }
            }
        }
        order.check("items")?;
        Ok(sum)
    }
}

/// mirror-ring's receiving end, a batch per call: `try_recv_batch`, spinning on `WouldBlock`
/// (`BLOCKING` false), or the blocking `recv_batch` (true).
struct FramedBatchRx<M, const BLOCKING: bool>(FramedConsumer, std::marker::PhantomData<M>);

impl<M: Message, const BLOCKING: bool> SeqRx for FramedBatchRx<M, BLOCKING> {
    fn recv_n(&mut self, from: u64, n: u64) -> io::Result<u64> {
        let mut order = InOrder::new(from);
        let (mut sum, mut got) = (0u64, 0u64);
        while got < n {
            let each = |frame: &[u8]| {
                let m = M::from_bytes(frame);
                sum = sum.wrapping_add(order.see(black_box(&m).first_word()));
            };
            match if BLOCKING { self.0.recv_batch(each) } else { self.0.try_recv_batch(each) } {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(k) => got += k as u64,
                Err(e) if !BLOCKING && would_block(&e) => spin_loop(),
                Err(e) => return Err(err(if BLOCKING { "recv_batch" } else { "try_recv_batch" }, e)),
            }
        }
        if got != n {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("received {got} messages, {n} were sent")));
        }
        order.check("items")?;
        Ok(sum)
    }
}

// --- rtrb -------------------------------------------------------------------------------------

struct RtrbPushTx<M>(rtrb::Producer<M>);

impl<M: Message> SeqTx for RtrbPushTx<M> {
    fn send_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        let steps = work_steps(0);
        for i in from..to {
            busy(steps);
            let mut v = M::make(i);
            while let Err(rtrb::PushError::Full(back)) = self.0.push(v) {
                v = back;
                spin_loop();
            }
        }
        Ok(())
    }
}

struct RtrbPopRx<M>(rtrb::Consumer<M>);

impl<M: Message> SeqRx for RtrbPopRx<M> {
    fn recv_n(&mut self, from: u64, n: u64) -> io::Result<u64> {
        let mut order = InOrder::new(from);
        let (mut sum, steps, glance) = (0u64, work_steps(1), in_place());
        for _ in 0..n {
            loop {
                if let Ok(v) = self.0.pop() {
                    sum = sum.wrapping_add(order.see(if glance { v.glance() } else { black_box(&v).first_word() }));
                    busy(steps);
                    break;
                }
                spin_loop();
            }
        }
        order.check("items")?;
        Ok(sum)
    }
}

struct RtrbChunkTx<M>(rtrb::Producer<M>, usize);

impl<M: Message> SeqTx for RtrbChunkTx<M> {
    fn send_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        let mut i = from;
        while i < to {
            let k = ((to - i) as usize).min(self.1);
            let mut chunk = loop {
                match self.0.write_chunk_uninit(k) {
                    Ok(c) => break c,
                    Err(_) => spin_loop(),
                }
            };
            let (a, b) = chunk.as_mut_slices();
            for (j, slot) in (i..).zip(a.iter_mut().chain(b.iter_mut())) {
                slot.write(M::make(j));
            }
            // SAFETY: every one of the chunk's k slots was written just above.
            unsafe { chunk.commit_all() };
            i += k as u64;
        }
        Ok(())
    }
}

struct RtrbChunkRx<M>(rtrb::Consumer<M>, usize);

impl<M: Message> SeqRx for RtrbChunkRx<M> {
    fn recv_n(&mut self, from: u64, n: u64) -> io::Result<u64> {
        let mut order = InOrder::new(from);
        let (mut sum, mut got) = (0u64, 0u64);
        while got < n {
            // One load of the producer's index (slots), then everything readable at once.
            let k = self.0.slots().min(self.1).min((n - got) as usize);
            if k == 0 {
                spin_loop();
                continue;
            }
            let chunk = self.0.read_chunk(k).map_err(|e| io::Error::other(format!("read_chunk: {e}")))?;
            let (a, b) = chunk.as_slices();
            for v in a.iter().chain(b) {
                let m = *v;
                sum = sum.wrapping_add(order.see(black_box(&m).first_word()));
            }
            chunk.commit_all();
            got += k as u64;
        }
        order.check("items")?;
        Ok(sum)
    }
}

// --- the minimum: a hand-written stamped-frame queue ------------------------------------------

/// The least a variable-size ring with position-stamped frames does per message, as a yardstick
/// for mirror-ring's framed ends (issue 15): a plain heap buffer (no mirror, no shared header,
/// no waiting, no validation beyond the stamp), frames of an 8-byte header word and the payload
/// rounded up to 8 bytes. The producer writes the payload, then the header word with Release;
/// the consumer polls the header word at its cursor with Acquire. The consumer publishes its
/// cursor lazily (every 64 KiB or a quarter of the ring); the producer reloads it only when
/// its cached copy leaves it short of room. A frame that runs past the end of the buffer
/// continues into a slack area after it (the mirror's job, for frames of at most `SLACK`
/// bytes), so every frame is contiguous.
///
/// Header word: bits 0-31 the length with bit 31 set (zeroed memory is never a header), bits
/// 32-63 the frame's position / 8 (a header from an earlier lap has another stamp). A bench
/// simplification: nothing clears the word where the next frame will go, so a payload word
/// from an earlier lap could pass for a header if it held exactly that stamp and length (this
/// bench's payloads never do; mirror-ring writes a clear mark there).
struct MinShared {
    /// `words` u64s, zeroed: the ring's `cap` bytes, then `SLACK` bytes.
    buf: *mut u64,
    words: usize,
    cap: u64,
    /// The consumer's published cursor (bytes consumed, ever).
    tail: CachePadded<std::sync::atomic::AtomicU64>,
}

// SAFETY: the buffer is only accessed through the SPSC protocol below (the producer writes
// free room, the consumer reads frames it saw stamped with Acquire), and freed once, on drop.
unsafe impl Send for MinShared {}
// SAFETY: as above.
unsafe impl Sync for MinShared {}

impl MinShared {
    const SLACK: usize = 128;

    /// `cap`: a power of two.
    fn new(cap: usize) -> MinShared {
        assert!(cap.is_power_of_two());
        let words = (cap + Self::SLACK) / 8;
        let buf = Box::into_raw(vec![0u64; words].into_boxed_slice()).cast::<u64>();
        MinShared { buf, words, cap: cap as u64, tail: CachePadded::new(Default::default()) }
    }

    /// The header word of the frame at `pos` (8-aligned).
    #[inline(always)]
    fn word(&self, pos: u64) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: (pos mod cap) / 8 < words; the word is 8-aligned and lives as long as self; all
        // concurrent accesses to a header word are atomic.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.buf.add(((pos & (self.cap - 1)) / 8) as usize)) }
    }

    /// Where the bytes of a frame at `pos` start.
    #[inline(always)]
    fn at(&self, pos: u64) -> *mut u8 {
        // SAFETY: pos mod cap < cap, inside the buffer.
        unsafe { self.buf.cast::<u8>().add((pos & (self.cap - 1)) as usize) }
    }

    #[inline(always)]
    fn header(pos: u64, len: usize) -> u64 {
        (pos >> 3) << 32 | (len as u64 | 1 << 31)
    }
}

impl Drop for MinShared {
    fn drop(&mut self) {
        // SAFETY: made by Box::into_raw of a boxed slice of `words` u64s in `new`, freed once.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.buf, self.words)) });
    }
}

struct MinTx<M> {
    q: Arc<MinShared>,
    head: u64,
    /// The consumer's cursor as last loaded.
    tail: u64,
    _m: std::marker::PhantomData<M>,
}

impl<M: Message> MinTx<M> {
    /// Sends one message, spinning while there is no room.
    #[inline(always)]
    fn send_one(&mut self, m: &[u8]) {
        let q = &*self.q;
        let size = 8 + m.len().next_multiple_of(8) as u64;
        while self.head + size > self.tail + q.cap {
            // Acquire: pairs with the consumer's Release store of its cursor; the frames it
            // read are done with before we overwrite them.
            self.tail = q.tail.load(Ordering::Acquire);
            if self.head + size > self.tail + q.cap {
                spin_loop();
            }
        }
        let p = q.at(self.head);
        // SAFETY: [head, head + size) is free room (checked above), inside the buffer and its
        // slack (size <= SLACK); no one reads it before the header's Release store.
        unsafe { std::ptr::copy_nonoverlapping(m.as_ptr(), p.add(8), m.len()) };
        // Release: the payload before the header; pairs with the consumer's Acquire poll.
        q.word(self.head).store(MinShared::header(self.head, m.len()), Ordering::Release);
        self.head += size;
    }
}

impl<M: Message> SeqTx for MinTx<M> {
    fn send_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        let steps = work_steps(0);
        for i in from..to {
            busy(steps);
            self.send_one(M::make(i).to_bytes().as_ref());
        }
        Ok(())
    }
}

struct MinRx<M> {
    q: Arc<MinShared>,
    tail: u64,
    published: u64,
    release_every: u64,
    _m: std::marker::PhantomData<M>,
}

impl<M: Message> MinRx<M> {
    /// Receives one message (spinning until it is there) and returns its first word.
    #[inline(always)]
    fn recv_one(&mut self, glance: bool) -> u64 {
        let q = &*self.q;
        let len = std::mem::size_of::<M>();
        let size = 8 + len.next_multiple_of(8) as u64;
        let want = MinShared::header(self.tail, len);
        // Acquire: pairs with the producer's Release store of the header; the payload is
        // visible after it.
        while q.word(self.tail).load(Ordering::Acquire) != want {
            spin_loop();
        }
        // SAFETY: the frame at tail is stamped (its payload written before the stamp), and the
        // producer does not overwrite it before we publish a cursor past it.
        let b = unsafe { std::slice::from_raw_parts(q.at(self.tail).add(8), len) };
        let v = if glance {
            M::glance_bytes(b)
        } else {
            let m = M::from_bytes(b);
            black_box(&m).first_word()
        };
        self.tail += size;
        if self.tail - self.published >= self.release_every {
            // Release: we are done with the frames before tail; pairs with the producer's
            // Acquire load.
            q.tail.store(self.tail, Ordering::Release);
            self.published = self.tail;
        }
        v
    }
}

impl<M: Message> SeqRx for MinRx<M> {
    fn recv_n(&mut self, from: u64, n: u64) -> io::Result<u64> {
        let mut order = InOrder::new(from);
        let (mut sum, steps, glance) = (0u64, work_steps(1), in_place());
        for _ in 0..n {
            sum = sum.wrapping_add(order.see(self.recv_one(glance)));
            busy(steps);
        }
        // The last frames go back before the consumer leaves (no producer waits on them in
        // this bench; it keeps the queue's state whole between the warm-up and the timed part).
        self.q.tail.store(self.tail, Ordering::Release);
        self.published = self.tail;
        order.check("items")?;
        Ok(sum)
    }
}

fn minimal<M: Message>() -> (MinTx<M>, MinRx<M>) {
    let bytes = queue_bytes();
    let q = Arc::new(MinShared::new(bytes));
    let every = (64 * 1024).min(bytes / 4) as u64;
    (
        MinTx { q: q.clone(), head: 0, tail: 0, _m: std::marker::PhantomData },
        MinRx { q, tail: 0, published: 0, release_every: every, _m: std::marker::PhantomData },
    )
}

// --- crossbeam ArrayQueue ---------------------------------------------------------------------

struct QueueTx<M>(Arc<ArrayQueue<M>>);

impl<M: Message> SeqTx for QueueTx<M> {
    fn send_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        let steps = work_steps(0);
        for i in from..to {
            busy(steps);
            let mut v = M::make(i);
            while let Err(back) = self.0.push(v) {
                v = back;
                spin_loop();
            }
        }
        Ok(())
    }
}

struct QueueRx<M>(Arc<ArrayQueue<M>>);

impl<M: Message> SeqRx for QueueRx<M> {
    fn recv_n(&mut self, from: u64, n: u64) -> io::Result<u64> {
        let mut order = InOrder::new(from);
        let (mut sum, steps, glance) = (0u64, work_steps(1), in_place());
        for _ in 0..n {
            loop {
                if let Some(v) = self.0.pop() {
                    sum = sum.wrapping_add(order.see(if glance { v.glance() } else { black_box(&v).first_word() }));
                    busy(steps);
                    break;
                }
                spin_loop();
            }
        }
        order.check("items")?;
        Ok(sum)
    }
}

// --- the driver -------------------------------------------------------------------------------

/// One run of `queue` with `size`-byte messages (8 or 64): `warm` untimed, `count` timed.
pub fn msg_run(queue: MsgQueue, size: usize, warm: u64, count: u64) -> io::Result<Sample> {
    match size {
        8 => msg_run_typed::<u64>(queue, warm, count),
        64 => msg_run_typed::<[u8; 64]>(queue, warm, count),
        _ => Err(io::Error::new(io::ErrorKind::Unsupported, format!("{size}-byte messages: only 8 and 64"))),
    }
}

fn framed(batch: usize) -> io::Result<(FramedProducer, FramedConsumer)> {
    let (tx, rx) = RingOptions::new().capacity(queue_bytes()).prefault(true).build()?;
    let mut tx = tx.into_framed();
    if batch > 1 {
        tx.set_batch(batch);
    }
    Ok((tx, rx.into_framed()))
}

fn msg_run_typed<M: Message>(queue: MsgQueue, warm: u64, count: u64) -> io::Result<Sample> {
    use std::marker::PhantomData as P;
    let slots = queue_bytes() / std::mem::size_of::<M>();
    // Readers take at most an eighth of the queue per call (what try_recv_batch does).
    let eighth = slots / 8;
    match queue {
        MsgQueue::Framed => {
            let (tx, rx) = framed(1)?;
            drive(FramedTx::<M, false>(tx, P), FramedRx::<M, false>(rx, P), warm, count, "messages")
        }
        MsgQueue::FramedBatched(n) => {
            let (tx, rx) = framed(n)?;
            drive(FramedTx::<M, false>(tx, P), FramedBatchRx::<M, false>(rx, P), warm, count, "messages")
        }
        MsgQueue::FramedBatchedSend(n) => {
            let (tx, rx) = framed(n)?;
            drive(FramedTx::<M, false>(tx, P), FramedRx::<M, false>(rx, P), warm, count, "messages")
        }
        MsgQueue::FramedRecvBatch => {
            let (tx, rx) = framed(1)?;
            drive(FramedTx::<M, false>(tx, P), FramedBatchRx::<M, false>(rx, P), warm, count, "messages")
        }
        MsgQueue::RtrbPushPop => {
            let (tx, rx) = rtrb::RingBuffer::<M>::new(slots);
            drive(RtrbPushTx(tx), RtrbPopRx(rx), warm, count, "messages")
        }
        MsgQueue::RtrbChunks(n) => {
            let (tx, rx) = rtrb::RingBuffer::<M>::new(slots);
            drive(RtrbChunkTx(tx, n.clamp(1, slots)), RtrbChunkRx(rx, eighth), warm, count, "messages")
        }
        MsgQueue::ArrayQueue => {
            let q = Arc::new(ArrayQueue::<M>::new(slots));
            drive(QueueTx(q.clone()), QueueRx(q), warm, count, "messages")
        }
        MsgQueue::Minimal => {
            let (tx, rx) = minimal::<M>();
            drive(tx, rx, warm, count, "messages")
        }
        MsgQueue::FramedBlocking => {
            let (tx, rx) = framed(1)?;
            drive(FramedTx::<M, true>(tx, P), FramedRx::<M, true>(rx, P), warm, count, "messages")
        }
        MsgQueue::FramedRecvBatchBlocking => {
            let (tx, rx) = framed(1)?;
            drive(FramedTx::<M, false>(tx, P), FramedBatchRx::<M, true>(rx, P), warm, count, "messages")
        }
        MsgQueue::FramedInPlaceBlocking => {
            let (tx, rx) = framed(1)?;
            drive(FramedInPlaceTx::<M, true>(tx, P), FramedRx::<M, true>(rx, P), warm, count, "messages")
        }
        MsgQueue::FramedInPlace => {
            let (tx, rx) = framed(1)?;
            drive(FramedInPlaceTx::<M, false>(tx, P), FramedRx::<M, false>(rx, P), warm, count, "messages")
        }
        MsgQueue::FramedInPlaceBatched(n) => {
            let (tx, rx) = framed(n)?;
            drive(FramedInPlaceTx::<M, false>(tx, P), FramedBatchRx::<M, false>(rx, P), warm, count, "messages")
        }
        MsgQueue::FramedSendBatch(n) => {
            let (tx, rx) = framed(1)?;
            let n = n.max(1);
            drive(
                FramedBatchTx::<M>(tx, n, Vec::with_capacity(n)),
                FramedBatchRx::<M, false>(rx, P),
                warm,
                count,
                "messages",
            )
        }
    }
}

/// Untimed messages before each sample: two laps of the queue (every page touched, caches
/// warm).
pub fn msg_warm_up(size: usize) -> u64 {
    (2 * queue_bytes() / size) as u64
}

/// One queue and message size as a [`Contender`]; rates in messages per second.
pub struct MsgCase {
    pub queue: MsgQueue,
    pub size: usize,
    /// Busy steps per message on the sending and the receiving side ([`busy`]).
    pub work: [u32; 2],
    /// The receiver reads each message in place instead of copying it out ([`IN_PLACE`]).
    pub in_place: bool,
    /// Bytes of messages the queue holds; 0 for [`MSG_QUEUE_BYTES`] ([`QUEUE_BYTES`]).
    pub queue_bytes: usize,
    count: u64,
}

impl MsgCase {
    pub fn new(queue: MsgQueue, size: usize) -> MsgCase {
        MsgCase { queue, size, work: [0, 0], in_place: false, queue_bytes: 0, count: 0 }
    }

    /// One run with this case's work per message (and none afterwards).
    fn run(&self, count: u64) -> io::Result<Sample> {
        for (w, &steps) in WORK.iter().zip(&self.work) {
            // Relaxed: read by the run's threads, spawned after this.
            w.store(steps, Ordering::Relaxed);
        }
        IN_PLACE.store(self.in_place, Ordering::Relaxed);
        QUEUE_BYTES.store(self.queue_bytes, Ordering::Relaxed);
        let s = msg_run(self.queue, self.size, msg_warm_up(self.size), count);
        for w in &WORK {
            w.store(0, Ordering::Relaxed);
        }
        IN_PLACE.store(false, Ordering::Relaxed);
        QUEUE_BYTES.store(0, Ordering::Relaxed);
        s
    }
}

impl Contender for MsgCase {
    fn name(&self) -> String {
        let name = match self.work {
            [0, 0] => self.queue.name(),
            [p, 0] => format!("{}, sender +{p}", self.queue.name()),
            [0, c] => format!("{}, receiver +{c}", self.queue.name()),
            [p, c] => format!("{}, sender +{p}, receiver +{c}", self.queue.name()),
        };
        let name = if self.in_place { format!("{name}, read in place") } else { name };
        match self.queue_bytes {
            0 => name,
            n => format!("{name}, {} queue", fmt_size(n)),
        }
    }

    /// A trial of 100 000 messages, then as many as take `target` at that rate (at least
    /// 10 000).
    fn calibrate(&mut self, target: Duration) -> io::Result<()> {
        let trial = 100_000;
        let s = self.run(trial)?;
        self.count = ((s.rate() * target.as_secs_f64()) as u64).clamp(10_000, 1 << 32);
        Ok(())
    }

    fn sample(&mut self) -> io::Result<Sample> {
        if self.count == 0 {
            return Err(io::Error::other("not calibrated"));
        }
        self.run(self.count)
    }
}

/// The message comparison the bench and the demo both print: for each size, one at a time
/// (mirror-ring try_send/try_recv vs rtrb push/pop), batched by `batch` (mirror-ring
/// try_send_batch + try_recv_batch vs rtrb chunks), one at a time with mirror-ring's blocking
/// send/recv, and both one-at-a-time forms with each message built in place (`try_reserve` or
/// `reserve` + `commit`; all against the same rtrb push/pop), ArrayQueue alongside the first.
/// Returns the contenders in the order [`msg_pairs`] indexes them: [`MSG_PER_SIZE`] per size.
pub fn msg_contenders(sizes: &[usize], batch: usize) -> Vec<MsgCase> {
    let mut v = Vec::new();
    for &size in sizes {
        v.push(MsgCase::new(MsgQueue::Framed, size));
        v.push(MsgCase::new(MsgQueue::RtrbPushPop, size));
        v.push(MsgCase::new(MsgQueue::ArrayQueue, size));
        v.push(MsgCase::new(MsgQueue::FramedSendBatch(batch), size));
        v.push(MsgCase::new(MsgQueue::RtrbChunks(batch), size));
        v.push(MsgCase::new(MsgQueue::FramedBlocking, size));
        v.push(MsgCase::new(MsgQueue::FramedInPlaceBlocking, size));
        v.push(MsgCase::new(MsgQueue::FramedInPlace, size));
    }
    v
}

/// Contenders per message size in [`msg_contenders`]: mirror-ring one at a time, rtrb
/// push/pop, ArrayQueue, mirror-ring send_batch, rtrb chunks, mirror-ring blocking, mirror-ring
/// blocking built in place, mirror-ring built in place (`try_*`).
pub const MSG_PER_SIZE: usize = 8;

/// The pairs of [`msg_contenders`]`(sizes, batch)`: per size one at a time, one at a time
/// built in place, batched, blocking, blocking built in place.
pub fn msg_pairs(sizes: &[usize], batch: usize) -> Vec<Pair> {
    let mut v = Vec::new();
    for (k, &size) in sizes.iter().enumerate() {
        let b = MSG_PER_SIZE * k;
        v.push(Pair { label: format!("{}, one at a time", fmt_size(size)), ours: b, theirs: b + 1, also: vec![b + 2] });
        v.push(Pair {
            label: format!("{}, one at a time, built in place", fmt_size(size)),
            ours: b + 7,
            theirs: b + 1,
            also: vec![],
        });
        v.push(Pair {
            label: format!("{}, batches of {batch}", fmt_size(size)),
            ours: b + 3,
            theirs: b + 4,
            also: vec![],
        });
        v.push(Pair {
            label: format!("{}, one at a time, blocking", fmt_size(size)),
            ours: b + 5,
            theirs: b + 1,
            also: vec![],
        });
        v.push(Pair {
            label: format!("{}, one at a time, blocking, built in place", fmt_size(size)),
            ours: b + 6,
            theirs: b + 1,
            also: vec![],
        });
    }
    v
}

/// Runs the message comparison interleaved and prints its section: placement per repetition,
/// the pairs table (M messages/s), and why anything is missing. Returns the outcome.
pub fn msg_section(
    sizes: &[usize],
    batch: usize,
    reps: usize,
    target: Duration,
    progress: &mut dyn FnMut(&str),
) -> Outcome {
    let mut cases: Vec<Box<dyn Contender>> =
        msg_contenders(sizes, batch).into_iter().map(|c| Box::new(c) as Box<dyn Contender>).collect();
    interleave(&mut cases, reps, target, progress)
}

/// Where batching pays, for one message size: mirror-ring framed one at a time against
/// batching on the producer (`set_batch(batch)`), on the consumer (`try_recv_batch`), on both,
/// on the consumer with the blocking `recv_batch` (which slips after a run, `docs::framing`),
/// and with the batch calls on both sides (`try_send_batch` + `try_recv_batch`);
/// the ratios are against one at a time. Interleaved like [`msg_section`].
pub fn msg_batching_section(
    size: usize,
    batch: usize,
    reps: usize,
    target: Duration,
    progress: &mut dyn FnMut(&str),
) -> Outcome {
    let mut cases: Vec<Box<dyn Contender>> = [
        MsgQueue::Framed,
        MsgQueue::FramedBatchedSend(batch),
        MsgQueue::FramedRecvBatch,
        MsgQueue::FramedBatched(batch),
        MsgQueue::FramedRecvBatchBlocking,
        MsgQueue::FramedSendBatch(batch),
        MsgQueue::FramedInPlaceBatched(batch),
    ]
    .into_iter()
    .map(|q| Box::new(MsgCase::new(q, size)) as Box<dyn Contender>)
    .collect();
    interleave(&mut cases, reps, target, progress)
}

/// Prints [`msg_batching_section`]'s outcome.
pub fn print_msg_batching_section(out: &Outcome, size: usize) {
    let pairs: Vec<Pair> = (1..out.names.len())
        .map(|k| Pair { label: format!("{}, {}", fmt_size(size), out.names[k]), ours: k, theirs: 0, also: vec![] })
        .collect();
    print_pairs(out, &pairs, "M messages/s; ratio against one at a time (try_send / try_recv), per repetition:");
}

/// Which side sets the pace, for one message size: mirror-ring `try_send` / `try_recv`, the
/// minimal stamped queue and rtrb `push` / `pop`, each with no work per message, with `steps`
/// busy steps per message on the sending side (the sender is the slower side), and with them
/// on the receiving side (the receiver is). Interleaved like [`msg_section`]; the cases come in
/// threes (mirror-ring, minimal, rtrb) per work setting.
pub fn msg_regime_section(
    size: usize,
    steps: u32,
    reps: usize,
    target: Duration,
    progress: &mut dyn FnMut(&str),
) -> Outcome {
    let mut cases: Vec<Box<dyn Contender>> = Vec::new();
    for work in [[0, 0], [steps, 0], [0, steps]] {
        for q in [MsgQueue::Framed, MsgQueue::Minimal, MsgQueue::RtrbPushPop] {
            let mut case = MsgCase::new(q, size);
            case.work = work;
            cases.push(Box::new(case));
        }
    }
    interleave(&mut cases, reps, target, progress)
}

/// Prints [`msg_regime_section`]'s outcome: mirror-ring and the minimal queue against rtrb with
/// the same work per message.
pub fn print_msg_regime_section(out: &Outcome) {
    print_pairs(
        out,
        &pairs_in_groups(out, 3, |_, name| name.to_string()),
        "M messages/s; ratio against rtrb push/pop with the same work per message, per repetition:",
    );
}

/// How the receiver uses each message, per size in `sizes`: mirror-ring `try_send` /
/// `try_recv`, its blocking `send` / `recv`, and rtrb `push` / `pop`, first with the receiver
/// copying each message out (what every other table does), then with it reading the counter
/// and the last byte where the message lies. Interleaved like [`msg_section`]; the cases come
/// in threes (mirror-ring, mirror-ring blocking, rtrb) per size and reading.
pub fn msg_read_section(sizes: &[usize], reps: usize, target: Duration, progress: &mut dyn FnMut(&str)) -> Outcome {
    let mut cases: Vec<Box<dyn Contender>> = Vec::new();
    for &size in sizes {
        for in_place in [false, true] {
            for q in [MsgQueue::Framed, MsgQueue::FramedBlocking, MsgQueue::RtrbPushPop] {
                let mut case = MsgCase::new(q, size);
                case.in_place = in_place;
                cases.push(Box::new(case));
            }
        }
    }
    interleave(&mut cases, reps, target, progress)
}

/// The pairs of [`msg_read_section`]`(sizes, ..)`: mirror-ring (`try_*`, then blocking)
/// against rtrb read the same way, per size and reading; labelled with the size.
pub fn msg_read_pairs(out: &Outcome, sizes: &[usize]) -> Vec<Pair> {
    pairs_in_groups(out, 3, |k, name| format!("{}, {name}", fmt_size(sizes[k / 2])))
}

/// For an outcome whose cases come in groups of `n` (contenders, then the reference they are
/// all measured against): the `n - 1` pairs of each group, labelled by `label(k, name)` for the
/// `k`-th group and the contender's case name.
fn pairs_in_groups(out: &Outcome, n: usize, label: impl Fn(usize, &str) -> String) -> Vec<Pair> {
    (0..out.names.len() / n)
        .flat_map(|k| {
            let b = n * k;
            let label = &label;
            (b..b + n - 1).map(move |ours| Pair {
                label: label(k, &out.names[ours]),
                ours,
                theirs: b + n - 1,
                also: vec![],
            })
        })
        .collect()
}

/// Prints [`msg_read_section`]`(sizes, ..)`'s outcome.
pub fn print_msg_read_section(out: &Outcome, sizes: &[usize]) {
    print_pairs(
        out,
        &msg_read_pairs(out, sizes),
        "M messages/s; ratio against rtrb push/pop with the receiver reading the same way, per repetition:",
    );
}

/// The contenders of [`msg_queue_size_section`], per queue size, in this order; rtrb last,
/// the reference.
const QUEUE_SIZE_CASES: [MsgQueue; 4] =
    [MsgQueue::FramedBlocking, MsgQueue::Framed, MsgQueue::Minimal, MsgQueue::RtrbPushPop];

/// The queue's size and how the receiver waits, for one message size: per queue size in
/// `queue_bytes`, mirror-ring's blocking `send` / `recv` (which slips 1 µs when it catches
/// up, `docs::framing`), its `try_send` / `try_recv` spinning on `WouldBlock` (no slip), the
/// minimal stamped queue and rtrb `push` / `pop`, each holding that many bytes of messages,
/// every receiver copying each message out or, with `in_place`, reading it where it lies.
/// Interleaved like [`msg_section`]; the cases come in fours per queue size.
pub fn msg_queue_size_section(
    size: usize,
    queue_bytes: &[usize],
    in_place: bool,
    reps: usize,
    target: Duration,
    progress: &mut dyn FnMut(&str),
) -> Outcome {
    let mut cases: Vec<Box<dyn Contender>> = Vec::new();
    for &bytes in queue_bytes {
        for q in QUEUE_SIZE_CASES {
            let mut case = MsgCase::new(q, size);
            case.queue_bytes = bytes;
            case.in_place = in_place;
            cases.push(Box::new(case));
        }
    }
    interleave(&mut cases, reps, target, progress)
}

/// Prints [`msg_queue_size_section`]'s outcome: each queue against rtrb holding as many bytes.
pub fn print_msg_queue_size_section(out: &Outcome) {
    print_pairs(
        out,
        &pairs_in_groups(out, QUEUE_SIZE_CASES.len(), |_, name| name.to_string()),
        "M messages/s; ratio against rtrb push/pop holding as many bytes, per repetition:",
    );
}

/// Prints [`msg_section`]'s outcome.
pub fn print_msg_section(out: &Outcome, sizes: &[usize], batch: usize) {
    print_pairs(
        out,
        &msg_pairs(sizes, batch),
        "M messages/s (median of the repetitions in that placement); ratio: median (min-max, count) of the per-repetition ratios:",
    );
}

/// Prints a section's placement line, its pairs table (M messages/s) under `heading`, and why
/// anything is missing.
fn print_pairs(out: &Outcome, pairs: &[Pair], heading: &str) {
    println!("Placement: {}.\n", out.placement_line());
    let (head, rows) = pairs_table(out, pairs, 1e-6, "messages");
    println!("{heading}\n");
    print_table(&head, &rows);
    for n in &out.notes {
        println!("- {n}");
    }
    if !out.notes.is_empty() {
        println!();
    }
}

// --- one thread: the instructions per message ---------------------------------------------------

/// `ops` messages of `size` bytes (8 or 64) through `queue` in one thread, after a warm-up of
/// two laps of the queue: one at a time (send, then receive it) for the one-at-a-time shapes,
/// in rounds of the batch size for the batched ones. No second core is involved, so this is the
/// cost of the operations themselves; it is the loop to run under `valgrind --tool=callgrind`
/// (`cargo bench --bench messages -- profile QUEUE SIZE OPS`; instructions per message = the
/// difference of two runs with different `ops`, divided by the difference in `ops`).
pub fn msg_single_thread(queue: MsgQueue, size: usize, ops: u64) -> io::Result<Duration> {
    match size {
        8 => single_typed::<u64>(queue, ops),
        64 => single_typed::<[u8; 64]>(queue, ops),
        _ => Err(io::Error::new(io::ErrorKind::Unsupported, format!("{size}-byte messages: only 8 and 64"))),
    }
}

/// One message through a framed pair in one thread: `try_send` / `try_recv` (`BLOCKING`
/// false) or `send` / `recv` (true). Returns 1, the messages it took.
#[inline(always)]
fn framed_step<M: Message, const BLOCKING: bool>(
    tx: &mut FramedProducer,
    rx: &mut FramedConsumer,
    i: u64,
    sum: &mut u64,
) -> io::Result<u64> {
    let m = M::make(i).to_bytes();
    if BLOCKING {
        tx.send(m.as_ref()).map_err(|e| err("send", e))?;
    } else {
        tx.try_send(m.as_ref()).map_err(|e| err("try_send", e))?;
    }
    recv_one::<M, BLOCKING>(rx, sum)
}

/// Receives one message (`recv` or `try_recv`; it is there already) in one thread and folds it
/// into `sum`. Returns 1.
#[inline(always)]
fn recv_one<M: Message, const BLOCKING: bool>(rx: &mut FramedConsumer, sum: &mut u64) -> io::Result<u64> {
    let frame = if BLOCKING {
        rx.recv().map_err(|e| err("recv", e))?
    } else {
        rx.try_recv().map_err(|e| err("try_recv", e))?
    };
    let frame = frame.ok_or(io::ErrorKind::UnexpectedEof)?;
    let m = M::from_bytes(&frame);
    *sum = sum.wrapping_add(black_box(&m).first_word());
    Ok(1)
}

/// One message built in place (`reserve` or `try_reserve`, [`Message::write_to`], `commit`)
/// and received (`recv` or `try_recv`) in one thread, folded into `sum`. Returns 1.
#[inline(always)]
fn in_place_step<M: Message, const BLOCKING: bool>(
    tx: &mut FramedProducer,
    rx: &mut FramedConsumer,
    i: u64,
    sum: &mut u64,
) -> io::Result<u64> {
    put_in_place::<M, BLOCKING>(tx, i)?;
    recv_one::<M, BLOCKING>(rx, sum)
}

/// Sends message `i` built in place: `reserve` (`BLOCKING`) or `try_reserve` of its size,
/// [`Message::write_to`] into the grant, `commit`. For one thread: no retry on `WouldBlock`.
#[inline(always)]
fn put_in_place<M: Message, const BLOCKING: bool>(tx: &mut FramedProducer, i: u64) -> io::Result<()> {
    let len = std::mem::size_of::<M>();
    let mut grant = if BLOCKING {
        tx.reserve(len).map_err(|e| err("reserve", e))?
    } else {
        tx.try_reserve(len).map_err(|e| err("try_reserve", e))?
    };
    M::write_to(i, &mut grant);
    grant.commit().map_err(|e| err("commit", e))
}

/// Takes `n` frames (all there already) with `try_recv_batch` in one thread, folding each into
/// `sum`. Returns `n`.
#[inline(always)]
fn recv_batches<M: Message>(rx: &mut FramedConsumer, n: usize, sum: &mut u64) -> io::Result<u64> {
    let mut got = 0;
    while got < n {
        got += rx
            .try_recv_batch(|frame| {
                let m = M::from_bytes(frame);
                *sum = sum.wrapping_add(black_box(&m).first_word());
            })
            .map_err(|e| err("try_recv_batch", e))?;
    }
    Ok(n as u64)
}

fn single_typed<M: Message>(queue: MsgQueue, ops: u64) -> io::Result<Duration> {
    let slots = queue_bytes() / std::mem::size_of::<M>();
    let warm = msg_warm_up(std::mem::size_of::<M>());
    let mut sum = 0u64;
    let mut t = std::time::Instant::now();
    // Runs `step(i)` (messages i, i + 1, ...: returns how many it took) until `warm + ops`
    // messages went through, timing from the first step at or after `warm`. Generic, so the
    // steps are inlined into the loop.
    fn steps<F: FnMut(u64, &mut u64) -> io::Result<u64>>(
        warm: u64,
        ops: u64,
        sum: &mut u64,
        t: &mut std::time::Instant,
        mut step: F,
    ) -> io::Result<u64> {
        let mut i = 0;
        let mut timing = false;
        while i < warm + ops {
            if !timing && i >= warm {
                *t = std::time::Instant::now();
                timing = true;
            }
            i += step(i, sum)?;
        }
        Ok(i)
    }
    let sent = match queue {
        MsgQueue::FramedRecvBatchBlocking => {
            let (mut tx, mut rx) = framed(1)?;
            steps(warm, ops, &mut sum, &mut t, |i: u64, sum: &mut u64| {
                tx.try_send(M::make(i).to_bytes().as_ref()).map_err(|e| err("try_send", e))?;
                rx.recv_batch(|frame| {
                    let m = M::from_bytes(frame);
                    *sum = sum.wrapping_add(black_box(&m).first_word());
                })
                .map_err(|e| err("recv_batch", e))
                .map(|k| k as u64)
            })?
        }
        MsgQueue::FramedBlocking => {
            let (mut tx, mut rx) = framed(1)?;
            steps(warm, ops, &mut sum, &mut t, |i, sum| framed_step::<M, true>(&mut tx, &mut rx, i, sum))?
        }
        MsgQueue::FramedInPlaceBlocking => {
            let (mut tx, mut rx) = framed(1)?;
            steps(warm, ops, &mut sum, &mut t, |i, sum| in_place_step::<M, true>(&mut tx, &mut rx, i, sum))?
        }
        MsgQueue::FramedInPlace => {
            let (mut tx, mut rx) = framed(1)?;
            steps(warm, ops, &mut sum, &mut t, |i, sum| in_place_step::<M, false>(&mut tx, &mut rx, i, sum))?
        }
        MsgQueue::Framed => {
            let (mut tx, mut rx) = framed(1)?;
            steps(warm, ops, &mut sum, &mut t, |i, sum| framed_step::<M, false>(&mut tx, &mut rx, i, sum))?
        }
        MsgQueue::FramedBatched(n) => {
            let (mut tx, mut rx) = framed(n)?;
            steps(warm, ops, &mut sum, &mut t, |i: u64, sum: &mut u64| {
                for j in i..i + n as u64 {
                    tx.try_send(M::make(j).to_bytes().as_ref()).map_err(|e| err("try_send", e))?;
                }
                recv_batches::<M>(&mut rx, n, sum)
            })?
        }
        MsgQueue::FramedInPlaceBatched(n) => {
            let (mut tx, mut rx) = framed(n)?;
            steps(warm, ops, &mut sum, &mut t, |i: u64, sum: &mut u64| {
                for j in i..i + n as u64 {
                    put_in_place::<M, false>(&mut tx, j)?;
                }
                recv_batches::<M>(&mut rx, n, sum)
            })?
        }
        MsgQueue::FramedSendBatch(n) => {
            let (mut tx, mut rx) = framed(1)?;
            let mut buf = Vec::with_capacity(n);
            steps(warm, ops, &mut sum, &mut t, |i: u64, sum: &mut u64| {
                buf.clear();
                buf.extend((i..i + n as u64).map(|j| M::make(j).to_bytes()));
                let sent = tx.try_send_batch(&buf).map_err(|e| err("try_send_batch", e))?;
                if sent != n {
                    return Err(io::Error::other(format!("try_send_batch: {sent} of {n} sent")));
                }
                recv_batches::<M>(&mut rx, n, sum)
            })?
        }
        MsgQueue::Minimal => {
            let (mut tx, mut rx) = minimal::<M>();
            steps(warm, ops, &mut sum, &mut t, |i: u64, sum: &mut u64| {
                tx.send_one(M::make(i).to_bytes().as_ref());
                *sum = sum.wrapping_add(rx.recv_one(false));
                Ok(1)
            })?
        }
        MsgQueue::FramedBatchedSend(_) | MsgQueue::FramedRecvBatch => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "profile: framed, framed_batch, rtrb_* or arrayqueue",
            ))
        }
        MsgQueue::RtrbPushPop => {
            let (mut tx, mut rx) = rtrb::RingBuffer::<M>::new(slots);
            steps(warm, ops, &mut sum, &mut t, |i: u64, sum: &mut u64| {
                tx.push(M::make(i)).map_err(|_| io::Error::other("push: full"))?;
                let v = rx.pop().map_err(|_| io::Error::other("pop: empty"))?;
                *sum = sum.wrapping_add(black_box(&v).first_word());
                Ok(1)
            })?
        }
        MsgQueue::RtrbChunks(n) => {
            let (mut tx, mut rx) = rtrb::RingBuffer::<M>::new(slots);
            steps(warm, ops, &mut sum, &mut t, |i: u64, sum: &mut u64| {
                let mut chunk = tx.write_chunk_uninit(n).map_err(|e| io::Error::other(format!("write_chunk: {e}")))?;
                let (a, b) = chunk.as_mut_slices();
                for (j, slot) in (i..).zip(a.iter_mut().chain(b.iter_mut())) {
                    slot.write(M::make(j));
                }
                // SAFETY: every one of the chunk's n slots was written just above.
                unsafe { chunk.commit_all() };
                let k = rx.slots().min(slots / 8);
                let chunk = rx.read_chunk(k).map_err(|e| io::Error::other(format!("read_chunk: {e}")))?;
                let (a, b) = chunk.as_slices();
                for v in a.iter().chain(b) {
                    let m = *v;
                    *sum = sum.wrapping_add(black_box(&m).first_word());
                }
                chunk.commit_all();
                Ok(k as u64)
            })?
        }
        MsgQueue::ArrayQueue => {
            let q = ArrayQueue::<M>::new(slots);
            steps(warm, ops, &mut sum, &mut t, |i: u64, sum: &mut u64| {
                q.push(M::make(i)).map_err(|_| io::Error::other("push: full"))?;
                let v = q.pop().ok_or_else(|| io::Error::other("pop: empty"))?;
                *sum = sum.wrapping_add(black_box(&v).first_word());
                Ok(1)
            })?
        }
    };
    let took = t.elapsed();
    if sum != expected_sum(0, sent) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "messages were lost, reordered or corrupted"));
    }
    Ok(took)
}

/// The floor for framed messages (issue 15): the hand-written minimal stamped-frame queue
/// ([`MsgQueue::Minimal`]) against mirror-ring one at a time and batched, rtrb push/pop and
/// chunks, for one message size, interleaved like [`msg_section`]. Cases in this order:
/// minimal, mirror-ring send/recv, rtrb push/pop, mirror-ring batch, rtrb chunks.
pub fn msg_minimal_section(
    size: usize,
    batch: usize,
    reps: usize,
    target: Duration,
    progress: &mut dyn FnMut(&str),
) -> Outcome {
    let mut cases: Vec<Box<dyn Contender>> = [
        MsgQueue::Minimal,
        MsgQueue::Framed,
        MsgQueue::RtrbPushPop,
        MsgQueue::FramedBatched(batch),
        MsgQueue::RtrbChunks(batch),
    ]
    .into_iter()
    .map(|q| Box::new(MsgCase::new(q, size)) as Box<dyn Contender>)
    .collect();
    interleave(&mut cases, reps, target, progress)
}

/// Prints [`msg_minimal_section`]'s outcome: every case against rtrb push/pop.
pub fn print_msg_minimal_section(out: &Outcome, size: usize) {
    let pairs: Vec<Pair> = [0, 1, 3, 4]
        .into_iter()
        .map(|k| Pair { label: format!("{}, {}", fmt_size(size), out.names[k]), ours: k, theirs: 2, also: vec![] })
        .collect();
    print_pairs(out, &pairs, "M messages/s; ratio against rtrb push/pop, per repetition:");
}
