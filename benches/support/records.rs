//! Fixed-size records through a byte ring, one record per call on each side: the shape of a
//! parser loop. The producer `write_all`s one 64-byte record at a time; the consumer asks for
//! what is readable, takes one whole record out of it, and gives those bytes back, then asks
//! again. Every contender does the same work per record: the producer builds it (its sequence
//! number in the first word, a constant pattern in the rest) and copies it into the ring, the
//! consumer copies it out and folds its first word into a checksum that is checked after every
//! sample (a lost, repeated or reordered record fails the run).
//!
//! - `mirror-ring/io`: `io::Write::write_all` / `BufRead::fill_buf` + `consume(64)`, blocking,
//!   default options: what a user writes.
//! - `mirror-ring/try`: `try_write` / `read_grant(64)` + `release(64)`, spinning on `WouldBlock`.
//! - `rtrb/chunks`: rtrb's faster shape, `write_chunk_uninit(64)` + `commit_all` /
//!   `read_chunk(64)` + `commit_all` (each side reloads the other's index only when its cached
//!   view is short), spinning when short.
//! - `rtrb/slices`: `push_partial_slice` / `pop_partial_slice`, what rtrb's own `io::Write` and
//!   `io::Read` do.
#![allow(dead_code, unreachable_pub)]

use std::hint::spin_loop;
use std::io::{self, BufRead, Write};
use std::time::Duration;

use mirror_ring::{Consumer, Producer, RingOptions};

use super::pair::{drive, InOrder, SeqRx, SeqTx};
use super::*;

/// Bytes per record.
pub const REC: usize = 64;

/// How a record travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecQueue {
    /// mirror-ring through `std::io` (blocking), default spin budget.
    MirrorIo,
    /// mirror-ring `try_write` / `read_grant` (spinning).
    MirrorTry,
    /// rtrb chunks (spinning).
    RtrbChunks,
    /// rtrb partial slices (spinning).
    RtrbSlices,
}

impl RecQueue {
    pub const ALL: [RecQueue; 4] =
        [RecQueue::MirrorIo, RecQueue::MirrorTry, RecQueue::RtrbChunks, RecQueue::RtrbSlices];

    pub fn name(self) -> String {
        match self {
            RecQueue::MirrorIo => "mirror-ring/io".into(),
            RecQueue::MirrorTry => "mirror-ring/try".into(),
            RecQueue::RtrbChunks => "rtrb/chunks".into(),
            RecQueue::RtrbSlices => "rtrb/slices".into(),
        }
    }

    pub fn from_name(s: &str) -> Option<RecQueue> {
        RecQueue::ALL.into_iter().find(|q| q.name() == s)
    }
}

/// A record with sequence number `i`.
#[inline(always)]
fn stamp(rec: &mut [u8; REC], i: u64) {
    rec[..8].copy_from_slice(&i.to_le_bytes());
}

/// A fresh record template (the pattern after the first word).
fn template() -> [u8; REC] {
    let mut r = [0u8; REC];
    for (k, b) in r.iter_mut().enumerate() {
        *b = (k as u8).wrapping_mul(37) ^ 0x5A;
    }
    r
}

/// Copies one record out of `src` (at least `REC` bytes) and returns its first word.
#[inline(always)]
fn take(src: &[u8]) -> u64 {
    let mut out = [0u8; REC];
    out.copy_from_slice(&src[..REC]);
    let out = std::hint::black_box(out);
    u64::from_le_bytes(out[..8].try_into().unwrap())
}

// --- mirror-ring ------------------------------------------------------------------------------

struct MirrorIoTx(Producer);
struct MirrorIoRx(Consumer);

impl SeqTx for MirrorIoTx {
    fn send_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        let mut rec = template();
        for i in from..to {
            stamp(&mut rec, i);
            self.0.write_all(&rec)?;
        }
        Ok(())
    }
}

impl SeqRx for MirrorIoRx {
    fn recv_n(&mut self, from: u64, n: u64) -> io::Result<u64> {
        let mut order = InOrder::new(from);
        let mut sum = 0u64;
        let mut got = 0;
        while got < n {
            let buf = self.0.fill_buf()?;
            if buf.len() < REC {
                if buf.is_empty() {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                // Incomplete: ask again, as a parser does.
                continue;
            }
            sum = sum.wrapping_add(order.see(take(buf)));
            self.0.consume(REC);
            got += 1;
        }
        order.check("items")?;
        Ok(sum)
    }
}

struct MirrorTryTx(Producer);
struct MirrorTryRx(Consumer);

impl SeqTx for MirrorTryTx {
    fn send_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        let mut rec = template();
        for i in from..to {
            stamp(&mut rec, i);
            let mut buf = &rec[..];
            while !buf.is_empty() {
                match self.0.try_write(buf) {
                    Ok(k) => buf = &buf[k..],
                    Err(e) if would_block(&e) => spin_loop(),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

impl SeqRx for MirrorTryRx {
    fn recv_n(&mut self, from: u64, n: u64) -> io::Result<u64> {
        let mut order = InOrder::new(from);
        let mut sum = 0u64;
        let mut got = 0;
        while got < n {
            match self.0.read_grant(REC) {
                Ok(g) => {
                    sum = sum.wrapping_add(order.see(take(&g)));
                    g.release(REC)?;
                    got += 1;
                }
                Err(e) if would_block(&e) => spin_loop(),
                Err(e) => return Err(e),
            }
        }
        order.check("items")?;
        Ok(sum)
    }
}

// --- rtrb -------------------------------------------------------------------------------------

struct RtrbChunkTx(rtrb::Producer<u8>);
struct RtrbChunkRx(rtrb::Consumer<u8>);

impl SeqTx for RtrbChunkTx {
    fn send_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        let mut rec = template();
        for i in from..to {
            stamp(&mut rec, i);
            let mut chunk = loop {
                match self.0.write_chunk_uninit(REC) {
                    Ok(c) => break c,
                    Err(_) => spin_loop(),
                }
            };
            let (a, b) = chunk.as_mut_slices();
            let k = a.len();
            for (d, s) in a.iter_mut().zip(&rec[..k]) {
                d.write(*s);
            }
            for (d, s) in b.iter_mut().zip(&rec[k..]) {
                d.write(*s);
            }
            // SAFETY: every one of the chunk's REC slots was written just above.
            unsafe { chunk.commit_all() };
        }
        Ok(())
    }
}

impl SeqRx for RtrbChunkRx {
    fn recv_n(&mut self, from: u64, n: u64) -> io::Result<u64> {
        let mut order = InOrder::new(from);
        let mut sum = 0u64;
        let mut got = 0;
        while got < n {
            let chunk = match self.0.read_chunk(REC) {
                Ok(c) => c,
                Err(_) => {
                    spin_loop();
                    continue;
                }
            };
            let (a, b) = chunk.as_slices();
            let mut out = [0u8; REC];
            out[..a.len()].copy_from_slice(a);
            out[a.len()..].copy_from_slice(b);
            let out = std::hint::black_box(out);
            sum = sum.wrapping_add(order.see(u64::from_le_bytes(out[..8].try_into().unwrap())));
            chunk.commit_all();
            got += 1;
        }
        order.check("items")?;
        Ok(sum)
    }
}

struct RtrbSliceTx(rtrb::Producer<u8>);
struct RtrbSliceRx(rtrb::Consumer<u8>);

impl SeqTx for RtrbSliceTx {
    fn send_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        let mut rec = template();
        for i in from..to {
            stamp(&mut rec, i);
            let mut buf = &rec[..];
            while !buf.is_empty() {
                let (done, rest) = self.0.push_partial_slice(buf);
                if done.is_empty() {
                    spin_loop();
                }
                buf = rest;
            }
        }
        Ok(())
    }
}

impl SeqRx for RtrbSliceRx {
    fn recv_n(&mut self, from: u64, n: u64) -> io::Result<u64> {
        let mut order = InOrder::new(from);
        let mut sum = 0u64;
        let mut got = 0;
        let mut out = [0u8; REC];
        let mut have = 0;
        while got < n {
            let k = self.0.pop_partial_slice(&mut out[have..]).0.len();
            if k == 0 {
                spin_loop();
                continue;
            }
            have += k;
            if have == REC {
                let o = std::hint::black_box(out);
                sum = sum.wrapping_add(order.see(u64::from_le_bytes(o[..8].try_into().unwrap())));
                have = 0;
                got += 1;
            }
        }
        order.check("items")?;
        Ok(sum)
    }
}

/// One run of `queue` through a ring of `cap` bytes: `warm` records untimed, `count` timed.
pub fn rec_run(queue: RecQueue, cap: usize, warm: u64, count: u64) -> io::Result<Sample> {
    match queue {
        RecQueue::MirrorIo => {
            let (tx, rx) = RingOptions::new().capacity(cap).build()?;
            drive(MirrorIoTx(tx), MirrorIoRx(rx), warm, count, "records")
        }
        RecQueue::MirrorTry => {
            let (tx, rx) = RingOptions::new().capacity(cap).build()?;
            drive(MirrorTryTx(tx), MirrorTryRx(rx), warm, count, "records")
        }
        RecQueue::RtrbChunks => {
            let (tx, rx) = rtrb::RingBuffer::<u8>::new(cap);
            drive(RtrbChunkTx(tx), RtrbChunkRx(rx), warm, count, "records")
        }
        RecQueue::RtrbSlices => {
            let (tx, rx) = rtrb::RingBuffer::<u8>::new(cap);
            drive(RtrbSliceTx(tx), RtrbSliceRx(rx), warm, count, "records")
        }
    }
}

/// Untimed records before each sample: two laps of the ring.
pub fn rec_warm_up(cap: usize) -> u64 {
    (2 * cap / REC) as u64
}

/// One queue and ring size as a [`Contender`]; rates in records per second.
pub struct RecCase {
    pub queue: RecQueue,
    pub cap: usize,
    count: u64,
}

impl RecCase {
    pub fn new(queue: RecQueue, cap: usize) -> RecCase {
        RecCase { queue, cap, count: 0 }
    }
}

impl Contender for RecCase {
    fn name(&self) -> String {
        self.queue.name()
    }

    /// A trial of 100 000 records, then as many as take `target` at that rate (at least
    /// 10 000).
    fn calibrate(&mut self, target: Duration) -> io::Result<()> {
        let s = rec_run(self.queue, self.cap, rec_warm_up(self.cap), 100_000)?;
        self.count = ((s.rate() * target.as_secs_f64()) as u64).clamp(10_000, 1 << 32);
        Ok(())
    }

    fn sample(&mut self) -> io::Result<Sample> {
        if self.count == 0 {
            return Err(io::Error::other("not calibrated"));
        }
        rec_run(self.queue, self.cap, rec_warm_up(self.cap), self.count)
    }
}

/// `ops` times, in one thread: one record written, then read back (the per-record cost with no
/// second core; the loop to run under `valgrind --tool=callgrind` for instruction counts).
/// Returns the checksum, so nothing is optimised away.
pub fn rec_single(queue: RecQueue, cap: usize, ops: u64) -> io::Result<u64> {
    let mut sum = 0;
    match queue {
        RecQueue::MirrorIo => {
            let (tx, rx) = RingOptions::new().capacity(cap).build()?;
            let (mut tx, mut rx) = (MirrorIoTx(tx), MirrorIoRx(rx));
            for i in 0..ops {
                tx.send_range(i, i + 1)?;
                sum += rx.recv_n(i, 1)?;
            }
        }
        RecQueue::MirrorTry => {
            let (tx, rx) = RingOptions::new().capacity(cap).build()?;
            let (mut tx, mut rx) = (MirrorTryTx(tx), MirrorTryRx(rx));
            for i in 0..ops {
                tx.send_range(i, i + 1)?;
                sum += rx.recv_n(i, 1)?;
            }
        }
        RecQueue::RtrbChunks => {
            let (tx, rx) = rtrb::RingBuffer::<u8>::new(cap);
            let (mut tx, mut rx) = (RtrbChunkTx(tx), RtrbChunkRx(rx));
            for i in 0..ops {
                tx.send_range(i, i + 1)?;
                sum += rx.recv_n(i, 1)?;
            }
        }
        RecQueue::RtrbSlices => {
            let (tx, rx) = rtrb::RingBuffer::<u8>::new(cap);
            let (mut tx, mut rx) = (RtrbSliceTx(tx), RtrbSliceRx(rx));
            for i in 0..ops {
                tx.send_range(i, i + 1)?;
                sum += rx.recv_n(i, 1)?;
            }
        }
    }
    Ok(sum)
}
