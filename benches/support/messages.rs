//! Messages between two pinned threads: mirror-ring framed messages against rtrb (and crossbeam's
//! `ArrayQueue` for reference), one at a time and batched, like with like.
//!
//! - One at a time: mirror-ring `try_send` / `try_recv` (a cursor store per message on each
//!   side, the default) against rtrb `push` / `pop` of one element per message.
//! - Batched by `n`: mirror-ring with `set_batch(n)` on the producer (one cursor store per `n`
//!   frames) and `try_recv_batch` on the consumer (everything readable, at most an eighth of the
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
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use mirror_ring::{FramedConsumer, FramedProducer, RingOptions};

use super::*;

/// Bytes of messages each queue holds.
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
        }
    }
}

/// A message type: `u64` for 8 bytes, `[u8; 64]` for 64.
pub trait Message: Copy + Send + 'static {
    type Bytes: AsRef<[u8]>;
    /// The message with counter `i` in its first word.
    fn make(i: u64) -> Self;
    fn first_word(&self) -> u64;
    /// Its bytes, as sent in a frame.
    fn to_bytes(self) -> Self::Bytes;
    /// A copy of a frame's payload.
    fn from_bytes(b: &[u8]) -> Self;
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
}

/// The sending side: sends messages `from .. to`.
trait MsgTx {
    fn send_range(&mut self, from: u64, to: u64) -> io::Result<()>;
}

/// The receiving side: receives `n` messages, returns the wrapping sum of their first words.
trait MsgRx {
    fn recv_n(&mut self, n: u64) -> io::Result<u64>;
}

fn err(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

// --- mirror-ring ------------------------------------------------------------------------------

struct FramedTx<M>(FramedProducer, std::marker::PhantomData<M>);

impl<M: Message> MsgTx for FramedTx<M> {
    fn send_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        for i in from..to {
            let m = M::make(i).to_bytes();
            loop {
                match self.0.try_send(m.as_ref()) {
                    Ok(()) => break,
                    Err(e) if would_block(&e) => spin_loop(),
                    Err(e) => return Err(err("try_send", e)),
                }
            }
        }
        // Publishes what a batching producer holds back (nothing otherwise).
        self.0.flush().unwrap();
        Ok(())
    }
}

struct FramedRx<M>(FramedConsumer, std::marker::PhantomData<M>);

impl<M: Message> MsgRx for FramedRx<M> {
    fn recv_n(&mut self, n: u64) -> io::Result<u64> {
        let mut sum = 0u64;
        for _ in 0..n {
            loop {
                match self.0.try_recv() {
                    Ok(Some(frame)) => {
                        let m = M::from_bytes(&frame);
                        sum = sum.wrapping_add(black_box(&m).first_word());
                        break;
                    }
                    Ok(None) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Err(e) if would_block(&e) => spin_loop(),
                    Err(e) => return Err(err("try_recv", e)),
                }
            }
        }
        Ok(sum)
    }
}

struct FramedBatchRx<M>(FramedConsumer, std::marker::PhantomData<M>);

impl<M: Message> MsgRx for FramedBatchRx<M> {
    fn recv_n(&mut self, n: u64) -> io::Result<u64> {
        let (mut sum, mut got) = (0u64, 0u64);
        while got < n {
            let batch = self.0.try_recv_batch(|frame| {
                let m = M::from_bytes(frame);
                sum = sum.wrapping_add(black_box(&m).first_word());
            });
            match batch {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(k) => got += k as u64,
                Err(e) if would_block(&e) => spin_loop(),
                Err(e) => return Err(err("try_recv_batch", e)),
            }
        }
        if got != n {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("received {got} messages, {n} were sent")));
        }
        Ok(sum)
    }
}

// --- rtrb -------------------------------------------------------------------------------------

struct RtrbPushTx<M>(rtrb::Producer<M>);

impl<M: Message> MsgTx for RtrbPushTx<M> {
    fn send_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        for i in from..to {
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

impl<M: Message> MsgRx for RtrbPopRx<M> {
    fn recv_n(&mut self, n: u64) -> io::Result<u64> {
        let mut sum = 0u64;
        for _ in 0..n {
            loop {
                if let Ok(v) = self.0.pop() {
                    sum = sum.wrapping_add(black_box(&v).first_word());
                    break;
                }
                spin_loop();
            }
        }
        Ok(sum)
    }
}

struct RtrbChunkTx<M>(rtrb::Producer<M>, usize);

impl<M: Message> MsgTx for RtrbChunkTx<M> {
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

impl<M: Message> MsgRx for RtrbChunkRx<M> {
    fn recv_n(&mut self, n: u64) -> io::Result<u64> {
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
                sum = sum.wrapping_add(black_box(&m).first_word());
            }
            chunk.commit_all();
            got += k as u64;
        }
        Ok(sum)
    }
}

// --- crossbeam ArrayQueue ---------------------------------------------------------------------

struct QueueTx<M>(Arc<ArrayQueue<M>>);

impl<M: Message> MsgTx for QueueTx<M> {
    fn send_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        for i in from..to {
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

impl<M: Message> MsgRx for QueueRx<M> {
    fn recv_n(&mut self, n: u64) -> io::Result<u64> {
        let mut sum = 0u64;
        for _ in 0..n {
            loop {
                if let Some(v) = self.0.pop() {
                    sum = sum.wrapping_add(black_box(&v).first_word());
                    break;
                }
                spin_loop();
            }
        }
        Ok(sum)
    }
}

// --- the driver -------------------------------------------------------------------------------

/// The wrapping sum of `from .. to`: what the consumer's checksum must come to.
fn expected_sum(from: u64, to: u64) -> u64 {
    (from..to).fold(0u64, |a, i| a.wrapping_add(i))
}

/// A two-party spinning barrier either side can call off: a side that failed aborts it instead
/// of leaving the other spinning at it for ever.
#[derive(Default)]
struct Meet {
    arrived: CachePadded<AtomicU32>,
    aborted: CachePadded<AtomicU32>,
}

impl Meet {
    /// Waits for the other side; false if it called the meeting off.
    fn meet(&self) -> bool {
        // AcqRel: each side's warm-up happens before the other leaves the barrier.
        self.arrived.fetch_add(1, Ordering::AcqRel);
        while self.arrived.load(Ordering::Acquire) < 2 {
            // Acquire: pairs with the Release store in abort.
            if self.aborted.load(Ordering::Acquire) != 0 {
                return false;
            }
            spin_loop();
        }
        true
    }

    fn abort(&self) {
        // Release: pairs with the Acquire load in meet.
        self.aborted.store(1, Ordering::Release);
    }
}

/// Runs `warm` messages untimed, then `count` timed, from this thread (pinned to the producer
/// CPU) to a consumer thread on the consumer CPU.
fn drive<T: MsgTx + Send, R: MsgRx + Send>(tx: T, rx: R, warm: u64, count: u64) -> io::Result<Sample> {
    let meet = Meet::default();
    let meet = &meet;
    let called_off = || io::Error::other("the other side failed before the timed part");
    pin_to(PRODUCER_CPU);
    std::thread::scope(|s| {
        let consumer = s.spawn(move || -> io::Result<(u64, u64, u64, u64)> {
            pin_to(CONSUMER_CPU);
            // On this thread's stack, on lines of its own (see stream_threads). On a failure
            // the end is dropped on the way out, which closes a mirror-ring and so stops its
            // producer (the other queues' producers cannot fail).
            let mut rx = Isolated(rx);
            let rx = &mut rx.0;
            let warm_sum = rx.recv_n(warm).inspect_err(|_| meet.abort())?;
            let sw = run_delay_ns();
            if !meet.meet() {
                return Err(called_off());
            }
            let sum = rx.recv_n(count)?;
            let t1 = now_ns();
            Ok((t1, warm_sum, sum, run_delay_ns() - sw))
        });
        let mut tx = Isolated(tx);
        let sent = (|| {
            tx.0.send_range(0, warm).inspect_err(|_| meet.abort())?;
            let sw = run_delay_ns();
            if !meet.meet() {
                return Err(called_off());
            }
            let t0 = now_ns();
            tx.0.send_range(warm, warm + count)?;
            Ok::<(u64, u64), io::Error>((t0, run_delay_ns() - sw))
        })();
        // Dropping the sending end closes a mirror-ring: a consumer still waiting for messages
        // a failed producer will never send sees the end of the stream instead of spinning.
        drop(tx);
        let received = consumer.join().map_err(|_| io::Error::other("message consumer panicked"))?;
        let (t0, sw0) = sent?;
        let (t1, warm_sum, sum, sw1) = received?;
        if warm_sum != expected_sum(0, warm) || sum != expected_sum(warm, warm + count) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "messages were lost, reordered or corrupted"));
        }
        Ok(Sample {
            units: count,
            time: Duration::from_nanos(t1.saturating_sub(t0)),
            preempted: Duration::from_nanos(sw0 + sw1),
        })
    })
}

/// One run of `queue` with `size`-byte messages (8 or 64): `warm` untimed, `count` timed.
pub fn msg_run(queue: MsgQueue, size: usize, warm: u64, count: u64) -> io::Result<Sample> {
    match size {
        8 => msg_run_typed::<u64>(queue, warm, count),
        64 => msg_run_typed::<[u8; 64]>(queue, warm, count),
        _ => Err(io::Error::new(io::ErrorKind::Unsupported, format!("{size}-byte messages: only 8 and 64"))),
    }
}

fn framed(batch: usize) -> io::Result<(FramedProducer, FramedConsumer)> {
    let (tx, rx) = RingOptions::new().capacity(MSG_QUEUE_BYTES).prefault(true).build()?;
    let mut tx = tx.into_framed();
    if batch > 1 {
        tx.set_batch(batch);
    }
    Ok((tx, rx.into_framed()))
}

fn msg_run_typed<M: Message>(queue: MsgQueue, warm: u64, count: u64) -> io::Result<Sample> {
    use std::marker::PhantomData as P;
    let slots = MSG_QUEUE_BYTES / std::mem::size_of::<M>();
    // Readers take at most an eighth of the queue per call (what try_recv_batch does).
    let eighth = slots / 8;
    match queue {
        MsgQueue::Framed => {
            let (tx, rx) = framed(1)?;
            drive(FramedTx::<M>(tx, P), FramedRx::<M>(rx, P), warm, count)
        }
        MsgQueue::FramedBatched(n) => {
            let (tx, rx) = framed(n)?;
            drive(FramedTx::<M>(tx, P), FramedBatchRx::<M>(rx, P), warm, count)
        }
        MsgQueue::FramedBatchedSend(n) => {
            let (tx, rx) = framed(n)?;
            drive(FramedTx::<M>(tx, P), FramedRx::<M>(rx, P), warm, count)
        }
        MsgQueue::FramedRecvBatch => {
            let (tx, rx) = framed(1)?;
            drive(FramedTx::<M>(tx, P), FramedBatchRx::<M>(rx, P), warm, count)
        }
        MsgQueue::RtrbPushPop => {
            let (tx, rx) = rtrb::RingBuffer::<M>::new(slots);
            drive(RtrbPushTx(tx), RtrbPopRx(rx), warm, count)
        }
        MsgQueue::RtrbChunks(n) => {
            let (tx, rx) = rtrb::RingBuffer::<M>::new(slots);
            drive(RtrbChunkTx(tx, n.clamp(1, slots)), RtrbChunkRx(rx, eighth), warm, count)
        }
        MsgQueue::ArrayQueue => {
            let q = Arc::new(ArrayQueue::<M>::new(slots));
            drive(QueueTx(q.clone()), QueueRx(q), warm, count)
        }
    }
}

/// Untimed messages before each sample: two laps of the queue (every page touched, caches
/// warm).
pub fn msg_warm_up(size: usize) -> u64 {
    (2 * MSG_QUEUE_BYTES / size) as u64
}

/// One queue and message size as a [`Contender`]; rates in messages per second.
pub struct MsgCase {
    pub queue: MsgQueue,
    pub size: usize,
    count: u64,
}

impl MsgCase {
    pub fn new(queue: MsgQueue, size: usize) -> MsgCase {
        MsgCase { queue, size, count: 0 }
    }
}

impl Contender for MsgCase {
    fn name(&self) -> String {
        self.queue.name()
    }

    /// A trial of 100 000 messages, then as many as take `target` at that rate (at least
    /// 10 000).
    fn calibrate(&mut self, target: Duration) -> io::Result<()> {
        let trial = 100_000;
        let s = msg_run(self.queue, self.size, msg_warm_up(self.size), trial)?;
        self.count = ((s.rate() * target.as_secs_f64()) as u64).clamp(10_000, 1 << 32);
        Ok(())
    }

    fn sample(&mut self) -> io::Result<Sample> {
        if self.count == 0 {
            return Err(io::Error::other("not calibrated"));
        }
        msg_run(self.queue, self.size, msg_warm_up(self.size), self.count)
    }
}

/// The message comparison the bench and the demo both print: for each size, one at a time
/// (mirror-ring send/recv vs rtrb push/pop) and batched by `batch` (mirror-ring set_batch +
/// try_recv_batch vs rtrb chunks), ArrayQueue alongside the first. Returns the contenders in
/// the order [`msg_pairs`] indexes them.
pub fn msg_contenders(sizes: &[usize], batch: usize) -> Vec<MsgCase> {
    let mut v = Vec::new();
    for &size in sizes {
        v.push(MsgCase::new(MsgQueue::Framed, size));
        v.push(MsgCase::new(MsgQueue::RtrbPushPop, size));
        v.push(MsgCase::new(MsgQueue::ArrayQueue, size));
        v.push(MsgCase::new(MsgQueue::FramedBatched(batch), size));
        v.push(MsgCase::new(MsgQueue::RtrbChunks(batch), size));
    }
    v
}

/// The pairs of [`msg_contenders`]`(sizes, batch)`.
pub fn msg_pairs(sizes: &[usize], batch: usize) -> Vec<Pair> {
    let mut v = Vec::new();
    for (k, &size) in sizes.iter().enumerate() {
        let b = 5 * k;
        v.push(Pair { label: format!("{}, one at a time", fmt_size(size)), ours: b, theirs: b + 1, also: vec![b + 2] });
        v.push(Pair {
            label: format!("{}, batches of {batch}", fmt_size(size)),
            ours: b + 3,
            theirs: b + 4,
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
/// batching on the producer (`set_batch(batch)`), on the consumer (`try_recv_batch`), and on
/// both; the ratios are against one at a time. Interleaved like [`msg_section`].
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
    ]
    .into_iter()
    .map(|q| Box::new(MsgCase::new(q, size)) as Box<dyn Contender>)
    .collect();
    interleave(&mut cases, reps, target, progress)
}

/// Prints [`msg_batching_section`]'s outcome.
pub fn print_msg_batching_section(out: &Outcome, size: usize) {
    println!("Placement: {}.\n", out.placement_line());
    let pairs: Vec<Pair> = (1..4)
        .map(|k| Pair { label: format!("{}, {}", fmt_size(size), out.names[k]), ours: k, theirs: 0, also: vec![] })
        .collect();
    let (head, rows) = pairs_table(out, &pairs, 1e-6, "messages");
    println!("M messages/s; ratio against one at a time (try_send / try_recv), per repetition:\n");
    print_table(&head, &rows);
    for n in &out.notes {
        println!("- {n}");
    }
    if !out.notes.is_empty() {
        println!();
    }
}

/// Prints [`msg_section`]'s outcome.
pub fn print_msg_section(out: &Outcome, sizes: &[usize], batch: usize) {
    println!("Placement: {}.\n", out.placement_line());
    let (head, rows) = pairs_table(out, &msg_pairs(sizes, batch), 1e-6, "messages");
    println!("M messages/s (median of the repetitions in that placement); ratio: median (min-max) of the per-repetition ratios:\n");
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

fn single_typed<M: Message>(queue: MsgQueue, ops: u64) -> io::Result<Duration> {
    let slots = MSG_QUEUE_BYTES / std::mem::size_of::<M>();
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
        MsgQueue::Framed => {
            let (mut tx, mut rx) = framed(1)?;
            steps(warm, ops, &mut sum, &mut t, |i: u64, sum: &mut u64| {
                tx.try_send(M::make(i).to_bytes().as_ref()).map_err(|e| err("try_send", e))?;
                let frame = rx.try_recv().map_err(|e| err("try_recv", e))?.ok_or(io::ErrorKind::UnexpectedEof)?;
                let m = M::from_bytes(&frame);
                *sum = sum.wrapping_add(black_box(&m).first_word());
                Ok(1)
            })?
        }
        MsgQueue::FramedBatched(n) => {
            let (mut tx, mut rx) = framed(n)?;
            steps(warm, ops, &mut sum, &mut t, |i: u64, sum: &mut u64| {
                for j in i..i + n as u64 {
                    tx.try_send(M::make(j).to_bytes().as_ref()).map_err(|e| err("try_send", e))?;
                }
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
