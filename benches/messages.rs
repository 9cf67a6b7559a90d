//! Messages per second between two pinned threads: mirror-ring framed messages (a cursor
//! store per message, and batched), rtrb, and crossbeam's `ArrayQueue`, in one run.
//!
//! - `mirror_framed`: `send` and `recv` per message, each publishing its cursor (the default).
//! - `mirror_framed_batched`: the producer with `set_batch(128)` (one cursor store per 128
//!   frames, or sooner when the consumer sleeps), the consumer with `try_recv_batch` (every
//!   frame readable at once, one cursor load and one cursor store per batch).
//!
//! - 8-byte messages: mirror-ring frames of 8 bytes (16 in the ring: 8-byte header + payload)
//!   against rtrb `push`/`pop` of a `u64` and `ArrayQueue<u64>`.
//! - 64-byte messages: mirror-ring frames of 64 bytes against rtrb `push`/`pop` of a `[u8; 64]`
//!   (one slot per message, the same bytes) and `ArrayQueue<[u8; 64]>`.
//!
//! Every side does the same work: the producer writes a counter into each message (the rest of
//! a 64-byte message is a constant pattern), the consumer copies the whole message out of the
//! queue and folds its first word into a checksum, which is checked at the end of every sample.
//! All queues hold 1 MiB of messages (the framed ring's 1 MiB also holds the headers). The
//! producer runs on CPU 0, the consumer (the bench thread) on CPU 1; every competitor busy-spins
//! (`spin_loop`) when its queue is full or empty, so the mirror-ring ends use `try_send` /
//! `try_recv` / `try_recv_batch` here: this measures the queues, not a waiting policy (the
//! blocking calls spin, then yield, then sleep; on a busy machine a yield can hand the CPU away
//! for a whole time slice). Timing: from handing the producer its count to the consumer holding the
//! last message. Throughput is reported in elements: messages per second.
//!
//! Run: `cargo bench --bench messages`. Absolute numbers swing with where the host places the
//! two vCPUs; compare ratios within one run.

use std::hint::{black_box, spin_loop};
use std::io::ErrorKind;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use mirror_ring::{FramedConsumer, FramedProducer, RingOptions};
use std::sync::Arc;

const RING_BYTES: usize = 1 << 20;
const PRODUCER_CPU: usize = 0;
const CONSUMER_CPU: usize = 1;
/// Frames per cursor store in the batched mirror-ring case.
const BATCH: usize = 128;

/// Pins the calling thread to `cpu` if the machine allows it (otherwise runs unpinned).
fn pin_to(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set. CPU_SET only sets a bit
    // (cpu < CPU_SETSIZE: the bench uses CPUs 0 and 1).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    #[allow(unused_unsafe)] // CPU_SET is an unsafe fn in some libc releases
    unsafe {
        libc::CPU_SET(cpu, &mut set)
    };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    let _ = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}

/// A message of `N` bytes whose first word is the counter `i`.
#[inline(always)]
fn message<const N: usize>(i: u64) -> [u8; N] {
    let mut m = [0x5a; N];
    m[..8].copy_from_slice(&i.to_le_bytes());
    m
}

#[inline(always)]
fn first_word(m: &[u8]) -> u64 {
    u64::from_le_bytes(m[..8].try_into().unwrap())
}

/// The sending side of one competitor.
trait Tx: Send + 'static {
    fn put(&mut self, i: u64);
    /// After the last message of a sample (batching competitors publish here).
    fn end(&mut self) {}
}

/// The receiving side.
trait Rx {
    /// Receives one message and returns the first word of the copy it made.
    fn take(&mut self) -> u64;
    /// Receives `n` messages and returns the wrapping sum of their first words.
    fn take_n(&mut self, n: u64) -> u64 {
        (0..n).fold(0u64, |sum, _| sum.wrapping_add(self.take()))
    }
}

struct Framed<const N: usize>(FramedProducer);
impl<const N: usize> Tx for Framed<N> {
    #[inline]
    fn put(&mut self, i: u64) {
        let m = message::<N>(i);
        loop {
            match self.0.try_send(&m) {
                Ok(()) => return,
                Err(e) if e.kind() == ErrorKind::WouldBlock => spin_loop(),
                Err(e) => panic!("try_send: {e}"),
            }
        }
    }
    fn end(&mut self) {
        self.0.flush().unwrap();
    }
}
struct FramedRx<const N: usize>(FramedConsumer);
impl<const N: usize> Rx for FramedRx<N> {
    #[inline]
    fn take(&mut self) -> u64 {
        loop {
            match self.0.try_recv() {
                Ok(Some(frame)) => {
                    let mut m = [0u8; N];
                    m.copy_from_slice(&frame);
                    return first_word(black_box(&m));
                }
                Ok(None) => panic!("end of stream"),
                Err(e) if e.kind() == ErrorKind::WouldBlock => spin_loop(),
                Err(e) => panic!("try_recv: {e}"),
            }
        }
    }
}

/// The batched consumer: every frame readable at once through `recv_batch` (one cursor load
/// and one cursor store per batch), each copied out like the others.
struct FramedBatchRx<const N: usize>(FramedConsumer);
impl<const N: usize> Rx for FramedBatchRx<N> {
    fn take(&mut self) -> u64 {
        unreachable!("the batched consumer takes whole runs (take_n)")
    }
    #[inline]
    fn take_n(&mut self, n: u64) -> u64 {
        let (mut sum, mut got) = (0u64, 0u64);
        while got < n {
            let batch = self.0.try_recv_batch(|frame| {
                let mut m = [0u8; N];
                m.copy_from_slice(frame);
                sum = sum.wrapping_add(first_word(black_box(&m)));
            });
            match batch {
                Ok(0) => panic!("end of stream"),
                Ok(k) => got += k as u64,
                Err(e) if e.kind() == ErrorKind::WouldBlock => spin_loop(),
                Err(e) => panic!("try_recv_batch: {e}"),
            }
        }
        assert_eq!(got, n, "the producer sent exactly n messages");
        sum
    }
}

struct RtrbTx<T>(rtrb::Producer<T>, fn(u64) -> T);
impl<T: Send + 'static> Tx for RtrbTx<T> {
    #[inline]
    fn put(&mut self, i: u64) {
        let mut v = (self.1)(i);
        while let Err(rtrb::PushError::Full(back)) = self.0.push(v) {
            v = back;
            spin_loop();
        }
    }
}
struct RtrbRx<T>(rtrb::Consumer<T>, fn(&T) -> u64);
impl<T> Rx for RtrbRx<T> {
    #[inline]
    fn take(&mut self) -> u64 {
        loop {
            if let Ok(v) = self.0.pop() {
                return (self.1)(black_box(&v));
            }
            spin_loop();
        }
    }
}

struct QueueTx<T>(Arc<ArrayQueue<T>>, fn(u64) -> T);
impl<T: Send + 'static> Tx for QueueTx<T> {
    #[inline]
    fn put(&mut self, i: u64) {
        let mut v = (self.1)(i);
        while let Err(back) = self.0.push(v) {
            v = back;
            spin_loop();
        }
    }
}
struct QueueRx<T>(Arc<ArrayQueue<T>>, fn(&T) -> u64);
impl<T> Rx for QueueRx<T> {
    #[inline]
    fn take(&mut self) -> u64 {
        loop {
            if let Some(v) = self.0.pop() {
                return (self.1)(black_box(&v));
            }
            spin_loop();
        }
    }
}

/// A producer thread pinned to `PRODUCER_CPU` that sends as many messages as it is told.
struct Feeder {
    cmd: Option<mpsc::Sender<u64>>,
    thread: Option<JoinHandle<()>>,
    /// Messages sent so far (the counter continues across samples).
    next: u64,
}

impl Feeder {
    fn start(mut tx: impl Tx) -> Feeder {
        let (cmd, orders) = mpsc::channel::<u64>();
        let thread = thread::spawn(move || {
            pin_to(PRODUCER_CPU);
            let mut i = 0u64;
            while let Ok(n) = orders.recv() {
                for _ in 0..n {
                    tx.put(i);
                    i += 1;
                }
                tx.end();
            }
        });
        Feeder { cmd: Some(cmd), thread: Some(thread), next: 0 }
    }

    /// Sends `n` messages through the queue and receives them on this thread; returns the time
    /// from the order to the last message.
    fn run(&mut self, rx: &mut impl Rx, n: u64) -> Duration {
        let start = Instant::now();
        self.cmd.as_ref().unwrap().send(n).unwrap();
        let sum = rx.take_n(n);
        let elapsed = start.elapsed();
        // The counters next .. next + n, in order: a lost or reordered message fails the run.
        let first = self.next;
        self.next += n;
        let want = (first..self.next).fold(0u64, |a, i| a.wrapping_add(i));
        assert_eq!(sum, want, "messages were lost or corrupted");
        elapsed
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        drop(self.cmd.take());
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// A framed ring: `send` + `recv` per message, or (batched) `set_batch(BATCH)` + `recv_batch`.
fn framed_pair<const N: usize>() -> (Framed<N>, FramedRx<N>) {
    let (tx, rx) = RingOptions::new().capacity(RING_BYTES).prefault(true).build().unwrap();
    (Framed(tx.into_framed()), FramedRx(rx.into_framed()))
}

fn framed_batched<const N: usize>() -> (Framed<N>, FramedBatchRx<N>) {
    let (tx, rx) = RingOptions::new().capacity(RING_BYTES).prefault(true).build().unwrap();
    let mut tx = tx.into_framed();
    tx.set_batch(BATCH);
    (Framed(tx), FramedBatchRx(rx.into_framed()))
}

fn bench_case(c: &mut Criterion, group: &str, name: &str, tx: impl Tx, mut rx: impl Rx) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    let mut feeder = Feeder::start(tx);
    g.bench_function(BenchmarkId::from_parameter(name), |b| b.iter_custom(|iters| feeder.run(&mut rx, iters)));
    g.finish();
}

fn messages(c: &mut Criterion) {
    pin_to(CONSUMER_CPU);

    // 8-byte messages.
    let g = "messages_8B";
    let (tx, rx) = framed_pair::<8>();
    bench_case(c, g, "mirror_framed", tx, rx);
    let (tx, rx) = framed_batched::<8>();
    bench_case(c, g, "mirror_framed_batched", tx, rx);
    let (tx, rx) = rtrb::RingBuffer::<u64>::new(RING_BYTES / 8);
    bench_case(c, g, "rtrb_u64", RtrbTx(tx, |i| i), RtrbRx(rx, |v| *v));
    let q = Arc::new(ArrayQueue::<u64>::new(RING_BYTES / 8));
    bench_case(c, g, "crossbeam_arrayqueue_u64", QueueTx(q.clone(), |i| i), QueueRx(q, |v| *v));

    // 64-byte messages.
    let g = "messages_64B";
    let (tx, rx) = framed_pair::<64>();
    bench_case(c, g, "mirror_framed", tx, rx);
    let (tx, rx) = framed_batched::<64>();
    bench_case(c, g, "mirror_framed_batched", tx, rx);
    let (tx, rx) = rtrb::RingBuffer::<[u8; 64]>::new(RING_BYTES / 64);
    bench_case(c, g, "rtrb_u8x64", RtrbTx(tx, message::<64>), RtrbRx(rx, |m| first_word(m)));
    let q = Arc::new(ArrayQueue::<[u8; 64]>::new(RING_BYTES / 64));
    bench_case(c, g, "crossbeam_arrayqueue_u8x64", QueueTx(q.clone(), message::<64>), QueueRx(q, |m| first_word(m)));
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = messages
}
criterion_main!(benches);
