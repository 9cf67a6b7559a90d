//! Property tests: random operation sequences on a real ring, checked step by step against a
//! `VecDeque<u8>` model.
//!
//! Every backend that works here, small capacities (so the seam is crossed constantly), random
//! grant sizes, random commits and releases (including oversized ones, which must be refused
//! without effect), holding a read grant while writing the whole write grant (the two must
//! never overlap), and every `WouldBlock` checked against the model in both directions.
//!
//! Seeded: `MIRROR_RING_SEED=<n>` replays a run (the seed is in every failure message);
//! `MIRROR_RING_LONG=<k>` runs `k` times as many operations.

mod common;

use std::collections::VecDeque;
use std::io::{BufRead, ErrorKind, Read, Write};

use common::{available, page_size, scale, seed, Rng};
use mirror_ring::{Backend, Consumer, Producer, RingOptions};

/// Operations per (backend, capacity) in a CI-sized run.
const OPS: usize = 100_000;

/// The capacities the models run at: the two smallest a ring can have (one and two pages: 4
/// and 8 KiB where pages are 4 KiB), so that the seam is crossed constantly.
fn small_capacities() -> [usize; 2] {
    [page_size(), 2 * page_size()]
}

/// A random length in `0..=max`, biased towards the edges (0, 1, max - 1, max) and small
/// values, where off-by-one errors live.
fn len(rng: &mut Rng, max: usize) -> usize {
    match rng.up_to(9) {
        0 => 0,
        1 => 1.min(max),
        2 => max,
        3 => max.saturating_sub(1),
        4 | 5 => rng.up_to(max.min(64)),
        _ => rng.up_to(max),
    }
}

/// `rng.fill(buf)`, the same bytes and the same generator state after, eight bytes a store
/// rather than a copy per chunk (the rings of 64 KiB pages lend 16 times longer grants).
fn fill(rng: &mut Rng, buf: &mut [u8]) {
    let mut words = buf.chunks_exact_mut(8);
    for w in &mut words {
        w.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    let rest = words.into_remainder();
    if !rest.is_empty() {
        rest.copy_from_slice(&rng.next_u64().to_le_bytes()[..rest.len()]);
    }
}

/// Asserts that `got` is a prefix of the model. Compares slices (memcmp: the grants of rings
/// with 64 KiB pages are 16 times longer than with 4 KiB ones), then names the first differing
/// byte.
fn check_prefix(model: &VecDeque<u8>, ctx: &str, got: &[u8], step: usize, what: &str) {
    assert!(got.len() <= model.len(), "{ctx}: step {step} {what}: {} bytes, model {}", got.len(), model.len());
    let (front, back) = model.as_slices();
    let k = got.len().min(front.len());
    if got[..k] != front[..k] || got[k..] != back[..got.len() - k] {
        for (i, (g, m)) in got.iter().zip(model.iter()).enumerate() {
            assert_eq!(g, m, "{ctx}: step {step} {what}: byte {i} of {}", got.len());
        }
    }
}

/// The ring under test, the model of its contents, and the stream generator.
struct Harness {
    tx: Producer,
    rx: Consumer,
    cap: usize,
    model: VecDeque<u8>,
    rng: Rng,
    ctx: String,
    /// Operations that crossed the seam (a grant or copy covering offset `cap - 1` and `0`).
    seams: usize,
    tx_pos: u64,
    rx_pos: u64,
}

impl Harness {
    fn new(backend: Backend, cap: usize, seed: u64) -> Harness {
        let (tx, rx) = RingOptions::new().capacity(cap).backend(backend).build().unwrap();
        assert_eq!(tx.capacity(), cap);
        assert_eq!(rx.capacity(), cap);
        Harness {
            tx,
            rx,
            cap,
            model: VecDeque::new(),
            rng: Rng::new(seed),
            ctx: format!("{backend} cap {cap} seed {seed}"),
            seams: 0,
            tx_pos: 0,
            rx_pos: 0,
        }
    }

    fn free(&self) -> usize {
        self.cap - self.model.len()
    }

    fn wrote(&mut self, n: usize) {
        if n > 0 && (self.tx_pos % self.cap as u64) as usize + n > self.cap {
            self.seams += 1;
        }
        self.tx_pos += n as u64;
    }

    fn read(&mut self, n: usize) {
        if n > 0 && (self.rx_pos % self.cap as u64) as usize + n > self.cap {
            self.seams += 1;
        }
        self.rx_pos += n as u64;
    }

    fn step(&mut self, step: usize) {
        let cap = self.cap;
        let ctx = self.ctx.clone();
        match self.rng.up_to(9) {
            // write_grant(min), then commit n (sometimes too many), or drop it.
            0 | 1 => {
                let min = if self.rng.up_to(50) == 0 { cap + 1 + self.rng.up_to(cap) } else { len(&mut self.rng, cap) };
                let free = self.free();
                match self.tx.write_grant(min) {
                    Ok(mut g) => {
                        assert!(min <= cap, "{ctx}: step {step}: a grant of min {min} > capacity");
                        assert!(g.len() >= min.max(1), "{ctx}: step {step}: grant {} < min {min}", g.len());
                        assert!(g.len() <= free, "{ctx}: step {step}: grant {} > free {free}", g.len());
                        let n = len(&mut self.rng, g.len());
                        fill(&mut self.rng, &mut g[..n]);
                        let bytes = g[..n].to_vec();
                        match self.rng.up_to(8) {
                            0 => drop(g), // nothing published
                            1 => {
                                let too_many = g.len() + 1 + self.rng.up_to(3);
                                assert_eq!(g.commit(too_many).unwrap_err().kind(), ErrorKind::InvalidInput, "{ctx}");
                            }
                            _ => {
                                g.commit(n).unwrap();
                                self.model.extend(&bytes);
                                self.wrote(n);
                            }
                        }
                    }
                    Err(e) if min > cap => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{ctx}: step {step}"),
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{ctx}: step {step}: {e}");
                        assert!(free < min.max(1), "{ctx}: step {step}: WouldBlock for min {min} with {free} free");
                    }
                }
            }
            // try_write: takes exactly min(len, free).
            2 => {
                let mut buf = vec![0; len(&mut self.rng, cap + 100)];
                fill(&mut self.rng, &mut buf);
                let free = self.free();
                match self.tx.try_write(&buf) {
                    Ok(n) => {
                        assert_eq!(n, buf.len().min(free), "{ctx}: step {step}: try_write of {}", buf.len());
                        assert!(n > 0 || buf.is_empty(), "{ctx}: step {step}: Ok(0) for a non-empty write");
                        self.model.extend(&buf[..n]);
                        self.wrote(n);
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{ctx}: step {step}: {e}");
                        assert!(free == 0 && !buf.is_empty(), "{ctx}: step {step}: WouldBlock with {free} free");
                    }
                }
            }
            // read_grant(min), then release n (sometimes too many), or drop it.
            3 | 4 => {
                let min = if self.rng.up_to(50) == 0 { cap + 1 } else { len(&mut self.rng, cap) };
                let avail = self.model.len();
                match self.rx.read_grant(min) {
                    Ok(g) => {
                        assert!(min <= cap, "{ctx}: step {step}: a grant of min {min} > capacity");
                        assert!(g.len() >= min.max(1), "{ctx}: step {step}: grant {} < min {min}", g.len());
                        check_prefix(&self.model, &ctx, &g, step, "read_grant");
                        let n = len(&mut self.rng, g.len());
                        match self.rng.up_to(8) {
                            0 => drop(g),
                            1 => {
                                let too_many = g.len() + 1;
                                assert_eq!(g.release(too_many).unwrap_err().kind(), ErrorKind::InvalidInput, "{ctx}");
                            }
                            _ => {
                                g.release(n).unwrap();
                                self.model.drain(..n);
                                self.read(n);
                            }
                        }
                    }
                    Err(e) if min > cap => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{ctx}: step {step}"),
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{ctx}: step {step}: {e}");
                        assert!(
                            avail < min.max(1),
                            "{ctx}: step {step}: WouldBlock for min {min} with {avail} readable"
                        );
                    }
                }
            }
            // try_read: gives exactly min(len, readable).
            5 => {
                let mut buf = vec![0; len(&mut self.rng, cap + 100)];
                let avail = self.model.len();
                match self.rx.try_read(&mut buf) {
                    Ok(n) => {
                        assert_eq!(n, buf.len().min(avail), "{ctx}: step {step}: try_read of {}", buf.len());
                        assert!(n > 0 || buf.is_empty(), "{ctx}: step {step}: Ok(0) (end of stream) while open");
                        check_prefix(&self.model, &ctx, &buf[..n], step, "try_read");
                        self.model.drain(..n);
                        self.read(n);
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{ctx}: step {step}: {e}");
                        assert!(avail == 0 && !buf.is_empty(), "{ctx}: step {step}: WouldBlock with {avail} readable");
                    }
                }
            }
            // fill_buf returns readable bytes (the rest of its last view, if partly consumed
            // since); asked again without a consume it returns every readable byte (it
            // refreshes). Then consume (clamped).
            6 => {
                if self.model.is_empty() {
                    return; // fill_buf would block: the producer is still there
                }
                let first = self.rx.fill_buf().unwrap().to_vec();
                assert!(
                    !first.is_empty() && first.len() <= self.model.len(),
                    "{ctx}: step {step}: fill_buf returned {} of {} readable",
                    first.len(),
                    self.model.len()
                );
                check_prefix(&self.model, &ctx, &first, step, "fill_buf");
                let buf = self.rx.fill_buf().unwrap();
                assert_eq!(
                    buf.len(),
                    self.model.len(),
                    "{ctx}: step {step}: fill_buf asked again is not everything readable"
                );
                let got = buf.to_vec();
                check_prefix(&self.model, &ctx, &got, step, "fill_buf");
                let n = if self.rng.up_to(10) == 0 {
                    got.len() + 1 + self.rng.up_to(10)
                } else {
                    len(&mut self.rng, got.len())
                };
                self.rx.consume(n);
                let n = n.min(got.len());
                self.model.drain(..n);
                self.read(n);
            }
            // A read grant held while the whole write grant is overwritten: disjoint memory.
            7 => {
                let model_len = self.model.len();
                let Ok(r) = self.rx.read_grant(1) else {
                    assert_eq!(model_len, 0, "{ctx}: step {step}");
                    return;
                };
                let Ok(mut w) = self.tx.write_grant(1) else {
                    assert_eq!(model_len, cap, "{ctx}: step {step}");
                    return;
                };
                assert!(r.len() + w.len() <= cap, "{ctx}: step {step}: grants {} + {} > {cap}", r.len(), w.len());
                // Physical offsets: the write grant starts `model_len` bytes after the read
                // grant, modulo the capacity, and must not reach back into it.
                let d = (w.as_ptr() as usize).wrapping_sub(r.as_ptr() as usize).wrapping_add(2 * cap) % cap;
                assert_eq!(d, model_len % cap, "{ctx}: step {step}: write grant not at head");
                assert!(d + w.len() <= cap || model_len == 0, "{ctx}: step {step}: grants overlap");
                w.fill(0xA5);
                check_prefix(&self.model, &ctx, &r, step, "read grant after filling the write grant");
                assert!(r.len() <= model_len);
                drop(w); // nothing committed
                drop(r);
            }
            // Lengths from both ends, exact after their refresh.
            _ => {
                let n = self.model.len();
                assert_eq!(self.tx.len(), n, "{ctx}: step {step}: producer len");
                assert_eq!(self.tx.is_empty(), n == 0, "{ctx}: step {step}");
                assert_eq!(self.tx.free(), cap - n, "{ctx}: step {step}: producer free");
                assert_eq!(self.rx.len(), n, "{ctx}: step {step}: consumer len");
                assert_eq!(self.rx.is_empty(), n == 0, "{ctx}: step {step}");
            }
        }
    }

    /// Closes the producer: the consumer must drain exactly the model, then see end of stream.
    fn finish(mut self) {
        let ctx = self.ctx.clone();
        drop(self.tx);
        let mut rest = Vec::new();
        self.rx.read_to_end(&mut rest).unwrap();
        assert_eq!(rest.len(), self.model.len(), "{ctx}: drain after close");
        assert!(rest.iter().eq(self.model.iter()), "{ctx}: drained bytes differ");
        assert_eq!(self.rx.try_read(&mut [0; 4]).unwrap(), 0, "{ctx}: end of stream");
        assert!(self.rx.fill_buf().unwrap().is_empty(), "{ctx}");
        assert!(self.rx.is_abandoned());
    }
}

#[test]
fn random_operations_match_a_vecdeque_model() {
    for backend in available() {
        for (i, cap) in small_capacities().into_iter().enumerate() {
            let s = seed().wrapping_add(i as u64 * 1000 + backend as u64);
            let mut h = Harness::new(backend, cap, s);
            for step in 0..OPS * scale() {
                h.step(step);
            }
            assert!(h.seams > OPS / 50, "{}: only {} seam crossings", h.ctx, h.seams);
            println!("{}: {} operations, {} crossed the seam", h.ctx, OPS * scale(), h.seams);
            h.finish();
        }
    }
}

/// Regression (found by the model test): `try_read` answered from the consumer's cached head
/// and returned fewer bytes than were readable, although it reads "as many bytes as are
/// readable now" (and `try_write` refreshes the same way for space).
#[test]
fn try_read_takes_every_readable_byte() {
    for backend in available() {
        let (mut tx, mut rx) = RingOptions::new().capacity(4096).backend(backend).build().unwrap();
        tx.try_write(&[1; 10]).unwrap();
        let mut buf = [0; 100];
        assert_eq!(rx.try_read(&mut buf[..5]).unwrap(), 5); // caches head = 10
        tx.try_write(&[2; 10]).unwrap();
        assert_eq!(rx.try_read(&mut buf).unwrap(), 15, "{backend}");
        assert_eq!(&buf[..15], &[[1; 5].as_slice(), &[2; 10]].concat()[..]);
    }
}

/// The same kinds of operations from two threads at once: the producer writes a seeded stream
/// with random grant, commit and write sizes; the consumer reads it back with random grant,
/// release, read and fill_buf sizes, checking every byte against the same stream.
#[test]
fn random_operations_from_two_threads_keep_the_stream_intact() {
    fn stream_byte(pos: u64) -> u8 {
        let x = pos.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (x >> 56) as u8 ^ pos as u8
    }
    let total = 2_000_000 * scale() as u64;
    for backend in available() {
        let s = seed() ^ backend as u64;
        let (mut tx, mut rx) = RingOptions::new().capacity(4096).backend(backend).build().unwrap();
        let cap = tx.capacity();
        let writer = std::thread::spawn(move || {
            let mut rng = Rng::new(s);
            let mut pos = 0u64;
            let mut buf = vec![0u8; cap + 64];
            while pos < total {
                let left = (total - pos) as usize;
                match rng.up_to(2) {
                    0 => {
                        let min = (1 + rng.up_to(cap / 2)).min(left);
                        let mut g = tx.write_grant_blocking(min).unwrap();
                        assert!(g.len() >= min && g.len() <= cap);
                        let n = (1 + rng.up_to(g.len() - 1)).min(left);
                        for (i, b) in g[..n].iter_mut().enumerate() {
                            *b = stream_byte(pos + i as u64);
                        }
                        g.commit(n).unwrap();
                        pos += n as u64;
                    }
                    _ => {
                        let n = (1 + rng.up_to(cap + 63)).min(left);
                        for (i, b) in buf[..n].iter_mut().enumerate() {
                            *b = stream_byte(pos + i as u64);
                        }
                        let w = tx.write(&buf[..n]).unwrap();
                        assert!(w >= 1 && w <= n);
                        pos += w as u64;
                    }
                }
            }
        });
        let mut rng = Rng::new(s.rotate_left(17));
        let mut pos = 0u64;
        let mut buf = vec![0u8; cap + 64];
        loop {
            let n = match rng.up_to(2) {
                0 => {
                    let got = rx.fill_buf().unwrap();
                    if got.is_empty() {
                        break;
                    }
                    assert!(got.len() <= cap);
                    for (i, b) in got.iter().enumerate() {
                        assert_eq!(*b, stream_byte(pos + i as u64), "{backend} seed {s}: byte {}", pos + i as u64);
                    }
                    let n = rng.up_to(got.len());
                    rx.consume(n);
                    n
                }
                _ => {
                    let want = 1 + rng.up_to(cap + 63);
                    let n = rx.read(&mut buf[..want]).unwrap();
                    if n == 0 {
                        break;
                    }
                    for (i, b) in buf[..n].iter().enumerate() {
                        assert_eq!(*b, stream_byte(pos + i as u64), "{backend} seed {s}: byte {}", pos + i as u64);
                    }
                    n
                }
            };
            pos += n as u64;
        }
        writer.join().unwrap();
        assert_eq!(pos, total, "{backend} seed {s}: bytes lost or invented");
    }
}

/// The bytes a frame of `len` payload bytes occupies: an 8-byte header, the payload rounded up
/// to 8 (the wire format documented in `framed.rs`).
fn frame_size(len: usize) -> usize {
    8 + len.div_ceil(8) * 8
}

/// A `VecDeque<Vec<u8>>` model of the frames in flight: published frames (visible to the
/// consumer) and pending ones (held back by batching), each with the ring position it starts
/// at, and the positions that say how much room the producer has.
struct FrameModel {
    cap: usize,
    max: usize,
    published: VecDeque<(u64, Vec<u8>)>,
    pending: VecDeque<(u64, Vec<u8>)>,
    rng: Rng,
    ctx: String,
    /// Producer position (advanced), its last published value, the consumer's position as the
    /// producer sees it (released), and its own (consumed), as byte counts from ring creation.
    p_pos: u64,
    p_published: u64,
    c_released: u64,
    c_consumed: u64,
    /// The alignment padding before the first frame (raw bytes went first), not yet skipped.
    pad: u64,
    /// Where the first frame goes; whether the consumer has skipped to it, and taken a frame
    /// (its first frame goes through the published head, which releases what it consumed).
    start: u64,
    c_aligned: bool,
    armed: bool,
    /// The consumer releases once this many bytes are consumed (`docs::framing`).
    release_every: u64,
    batch: usize,
    seams: usize,
    /// Counters, to show what a run covered: frames received, refusals for room, refusals
    /// for size, empty receives, frames held while the producer filled the ring.
    received: usize,
    full: usize,
    too_long: usize,
    empty: usize,
    held: usize,
    /// `send_batch` calls that sent something, and those that left messages over.
    batches: usize,
    batches_cut: usize,
}

impl FrameModel {
    fn free(&self) -> usize {
        self.cap - (self.p_pos - self.c_released) as usize
    }

    /// Whether a frame of `size` bytes fits: with 8 bytes to spare (the mark after it), or
    /// exactly when the consumer's released position is a frame boundary of this stream.
    fn fits(&self, size: usize) -> bool {
        size + 8 <= self.free() || (size == self.free() && self.c_released >= self.start)
    }

    /// What a receive does first: skip the padding once the producer has, releasing it.
    fn align(&mut self) {
        if !self.c_aligned && self.pad == 0 {
            self.c_consumed = self.start;
            self.c_released = self.start;
            self.c_aligned = true;
        }
    }

    /// A frame of `size` bytes at the consumer's position was dropped.
    fn consumed(&mut self, size: usize) {
        self.c_consumed += size as u64;
        if self.c_consumed - self.c_released >= self.release_every {
            self.c_released = self.c_consumed;
        }
    }

    fn publish(&mut self) {
        self.published.extend(self.pending.drain(..));
        self.p_published = self.p_pos;
    }

    /// A message length: edges, small, or anything up to a bit over the limit.
    fn msg_len(&mut self) -> usize {
        match self.rng.up_to(40) {
            0 => self.max + 1 + self.rng.up_to(100),
            1 => self.max,
            2..=5 => 0,
            6..=25 => self.rng.up_to(64),
            _ => self.rng.up_to(self.max),
        }
    }

    /// What a claim of `len` bytes does before the frame is written: refused (`None`) when too
    /// long, after the producer publishes what is pending; otherwise the first claim skips the
    /// alignment padding; then the frame fits, or the producer publishes what is pending and
    /// reports `WouldBlock`.
    fn claim(&mut self, len: usize) -> Option<bool> {
        if len > self.max {
            self.publish();
            return None;
        }
        if self.pad != 0 {
            self.p_pos += self.pad; // the ring is empty at the first claim: the padding fits
            self.p_published = self.p_pos; // and is published at once
            self.pad = 0;
        }
        if self.fits(frame_size(len)) {
            Some(true)
        } else {
            self.publish();
            Some(false)
        }
    }

    /// A frame of `msg` was written at the producer position: count it, publish per batching
    /// (`batch` frames, or a quarter of the ring, pending).
    fn sent(&mut self, msg: Vec<u8>) {
        let size = frame_size(msg.len()) as u64;
        if (self.p_pos % self.cap as u64) + size > self.cap as u64 {
            self.seams += 1;
        }
        self.pending.push_back((self.p_pos, msg));
        self.p_pos += size;
        if self.pending.len() >= self.batch || (self.p_pos - self.p_published) as usize >= self.cap / 4 {
            self.publish();
        }
    }

    fn check(&mut self, r: std::io::Result<()>, fits: Option<bool>, step: usize) -> bool {
        match fits {
            None => self.too_long += 1,
            Some(false) => self.full += 1,
            Some(true) => {}
        }
        let ctx = &self.ctx;
        match (r, fits) {
            (Ok(()), Some(true)) => return true,
            (Err(e), None) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{ctx}: step {step}"),
            (Err(e), Some(false)) => assert_eq!(e.kind(), ErrorKind::WouldBlock, "{ctx}: step {step}"),
            (r, fits) => panic!("{ctx}: step {step}: got {r:?}, the model says fits = {fits:?}"),
        }
        false
    }
}

/// The framed ends of a real ring and their model.
struct FrameHarness {
    tx: mirror_ring::FramedProducer,
    rx: mirror_ring::FramedConsumer,
    m: FrameModel,
}

impl FrameHarness {
    fn new(backend: Backend, cap: usize, seed: u64) -> FrameHarness {
        let mut rng = Rng::new(seed);
        let (mut tx, mut rx) = RingOptions::new().capacity(cap).backend(backend).build().unwrap();
        // Raw bytes first, usually, so both ends start unaligned and must agree on the skip.
        let raw = rng.up_to(11);
        assert_eq!(tx.try_write(&vec![9; raw]).unwrap(), raw);
        assert_eq!(rx.try_read(&mut vec![0; raw]).unwrap(), raw);
        let (tx, rx) = (tx.into_framed(), rx.into_framed());
        let max = tx.max_frame_len();
        assert_eq!(max, cap - 8);
        assert_eq!(rx.max_frame_len(), max);
        let raw = raw as u64;
        let m = FrameModel {
            cap,
            max,
            published: VecDeque::new(),
            pending: VecDeque::new(),
            rng,
            ctx: format!("{backend} cap {cap} seed {seed} raw {raw}"),
            p_pos: raw,
            p_published: raw,
            c_released: raw,
            c_consumed: raw,
            pad: raw.wrapping_neg() % 8,
            start: raw + raw.wrapping_neg() % 8,
            c_aligned: raw % 8 == 0,
            armed: false,
            release_every: (64 * 1024).min(cap as u64 / 4),
            batch: 1,
            seams: 0,
            received: 0,
            full: 0,
            too_long: 0,
            empty: 0,
            held: 0,
            batches: 0,
            batches_cut: 0,
        };
        FrameHarness { tx, rx, m }
    }

    fn step(&mut self, step: usize) {
        let (tx, rx, m) = (&mut self.tx, &mut self.rx, &mut self.m);
        let ctx = m.ctx.clone();
        match m.rng.up_to(12) {
            // try_send, or a blocking send when the model says it fits.
            0..=2 => {
                let len = m.msg_len();
                let mut msg = vec![0; len];
                fill(&mut m.rng, &mut msg);
                let blocking = m.rng.up_to(3) == 0;
                if blocking && (len > m.max || !m.fits(frame_size(len) + m.pad as usize)) {
                    return; // send would wait for good (or is refused: try_send covers that)
                }
                let fits = m.claim(len);
                let r = if blocking { tx.send(&msg) } else { tx.try_send(&msg) };
                if m.check(r, fits, step) {
                    m.sent(msg);
                }
            }
            // try_reserve, fill, maybe truncate, then commit or drop.
            3 | 4 => {
                let len = m.msg_len();
                let fits = m.claim(len);
                match tx.try_reserve(len) {
                    Ok(mut g) => {
                        assert_eq!(fits, Some(true), "{ctx}: step {step}: a grant the model has no room for");
                        assert_eq!(g.len(), len, "{ctx}: step {step}");
                        assert_eq!(g.as_ptr() as usize % 8, 0, "{ctx}: step {step}: unaligned grant");
                        fill(&mut m.rng, &mut g);
                        if m.rng.up_to(4) == 0 {
                            let short = m.rng.up_to(len);
                            g.truncate(short);
                            assert_eq!(g.len(), short);
                        }
                        if m.rng.up_to(6) == 0 {
                            drop(g); // sends nothing
                        } else {
                            let msg = g.to_vec();
                            g.commit().unwrap();
                            m.sent(msg);
                        }
                    }
                    Err(e) => {
                        m.check(Err(e), fits, step);
                    }
                }
            }
            // try_recv (or recv when a frame is there); sometimes hold the frame while the
            // producer fills all its room, which must not touch the frame.
            5..=8 => {
                let blocking = m.rng.up_to(3) == 0;
                if blocking && m.published.is_empty() {
                    return;
                }
                let hold = m.rng.up_to(8) == 0;
                let r = if blocking { rx.recv() } else { rx.try_recv() };
                m.align();
                match r {
                    Ok(Some(frame)) => {
                        if !m.armed {
                            // Through the head, releasing first.
                            m.c_released = m.c_consumed;
                            m.armed = true;
                        }
                        let (pos, want) = m
                            .published
                            .pop_front()
                            .unwrap_or_else(|| panic!("{ctx}: step {step}: a frame the model has not published"));
                        assert_eq!(frame.len(), want.len(), "{ctx}: step {step}: frame length");
                        assert!(*frame == want[..], "{ctx}: step {step}: frame bytes");
                        assert_eq!(frame.as_ptr() as usize % 8, 0, "{ctx}: step {step}: unaligned frame");
                        if hold && m.pad == 0 && m.free() >= 8 {
                            let msg = vec![0x5A; m.free() - 8];
                            let fits = m.claim(msg.len());
                            assert_eq!(fits, Some(true));
                            if m.check(tx.try_send(&msg), fits, step) {
                                m.sent(msg);
                            }
                            assert!(*frame == want[..], "{ctx}: step {step}: a held frame was overwritten");
                            m.held += 1;
                        }
                        m.received += 1;
                        drop(frame);
                        assert_eq!(m.c_consumed, pos, "{ctx}: step {step}");
                        m.consumed(frame_size(want.len()));
                    }
                    Ok(None) => panic!("{ctx}: step {step}: end of stream while the producer lives"),
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{ctx}: step {step}: {e}");
                        assert!(m.published.is_empty(), "{ctx}: step {step}: WouldBlock with frames published");
                        // Before it answers WouldBlock the consumer releases what it consumed.
                        m.c_released = m.c_consumed;
                        m.empty += 1;
                    }
                }
            }
            // Batching: change the batch (which publishes), or flush.
            9 => {
                if m.rng.up_to(2) == 0 {
                    let b = [1, 2, 3, 8, 100][m.rng.up_to(4)];
                    tx.set_batch(b);
                    assert_eq!(tx.batch(), b);
                    m.batch = b;
                } else {
                    tx.flush().unwrap();
                }
                m.publish();
            }
            // try_send_batch of up to 6 messages (or a blocking send_batch when the model says
            // the first fits): the leading ones that fit, published, the rest left over.
            11 => {
                let msgs: Vec<Vec<u8>> = (0..m.rng.up_to(6))
                    .map(|_| {
                        let mut msg = vec![0; m.msg_len()];
                        fill(&mut m.rng, &mut msg);
                        msg
                    })
                    .collect();
                let blocking = m.rng.up_to(3) == 0;
                if blocking
                    && msgs
                        .first()
                        .is_some_and(|msg| msg.len() > m.max || !m.fits(frame_size(msg.len()) + m.pad as usize))
                {
                    return;
                }
                let r = if blocking { tx.send_batch(&msgs) } else { tx.try_send_batch(&msgs) };
                // The model: the first message as a single send would go; then each one while
                // it is not too long and fits; then a publish.
                let mut sent = 0;
                for msg in &msgs {
                    if sent == 0 {
                        let fits = m.claim(msg.len());
                        if fits != Some(true) {
                            m.check(r.as_ref().map(|_| ()).map_err(|e| std::io::Error::from(e.kind())), fits, step);
                            return;
                        }
                    } else if msg.len() > m.max || !m.fits(frame_size(msg.len())) {
                        break;
                    }
                    m.sent(msg.clone());
                    sent += 1;
                }
                match r {
                    Ok(n) => assert_eq!(
                        n,
                        sent,
                        "{ctx}: step {step}: send_batch of {} sent {n}, the model says {sent}",
                        msgs.len()
                    ),
                    Err(e) => panic!("{ctx}: step {step}: send_batch: {e}; the model says {sent} sent"),
                }
                if sent > 0 {
                    m.publish();
                    m.batches += 1;
                    if sent < msgs.len() {
                        m.batches_cut += 1;
                    }
                }
            }
            _ => {
                assert!(!tx.is_abandoned(), "{ctx}");
                assert!(!rx.is_abandoned(), "{ctx}");
            }
        }
    }

    /// Dropping the producer publishes what is pending and closes: every frame arrives, then
    /// end of stream.
    fn finish(mut self) {
        let ctx = self.m.ctx.clone();
        drop(self.tx);
        self.m.publish();
        while let Some(frame) = self.rx.recv().unwrap() {
            let (_, want) = self.m.published.pop_front().unwrap_or_else(|| panic!("{ctx}: an extra frame after close"));
            assert!(*frame == want[..], "{ctx}: frame after close");
        }
        assert!(self.m.published.is_empty(), "{ctx}: {} frames lost at close", self.m.published.len());
        assert!(self.rx.try_recv().unwrap().is_none(), "{ctx}");
    }
}

#[test]
fn random_frame_operations_match_a_vecdeque_model() {
    for backend in available() {
        for (i, cap) in small_capacities().into_iter().enumerate() {
            let s = seed().wrapping_add(7 + i as u64 * 1000 + backend as u64);
            let mut h = FrameHarness::new(backend, cap, s);
            let ops = OPS / 2 * scale();
            for step in 0..ops {
                h.step(step);
            }
            let m = &h.m;
            assert!(m.seams > ops / 200, "{}: only {} frames crossed the seam", m.ctx, m.seams);
            assert!(
                m.full > 0 && m.too_long > 0 && m.empty > 0 && m.held > 0 && m.batches_cut > 0,
                "{}: a case never came up",
                m.ctx
            );
            println!(
                "{}: {ops} operations: {} frames received, {} crossed the seam; refused: {} full, {} too long; \
                 {} empty receives; {} frames held while the producer filled the ring; {} batches sent, {} cut short",
                m.ctx, m.received, m.seams, m.full, m.too_long, m.empty, m.held, m.batches, m.batches_cut
            );
            h.finish();
        }
    }
}

/// Regression (found by the `frames` fuzz target): once the consumer had poisoned the ring
/// (here: a corrupt frame header), the producer's non-blocking calls on a full ring said
/// `WouldBlock` for ever; only blocking calls looked at the shared flag. Both now fail with
/// `InvalidData`, on both sides.
#[test]
fn a_poisoned_ring_fails_non_blocking_calls_on_both_sides() {
    for backend in available() {
        let (mut tx, rx) = RingOptions::new().capacity(4096).backend(backend).build().unwrap();
        let mut rx = rx.into_framed();
        // A header whose two halves disagree.
        tx.try_write(&[5, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::InvalidData, "{backend}");
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::InvalidData, "{backend}");
        // The producer still has room for a while (it need not look at the consumer), then
        // must see the poison rather than a full ring.
        let fill = [0u8; 1000];
        let err = loop {
            match tx.try_write(&fill) {
                Ok(n) => assert!(n > 0),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ErrorKind::InvalidData, "{backend}: {err}");
        assert_eq!(tx.write_grant(1).unwrap_err().kind(), ErrorKind::InvalidData, "{backend}");
    }
}
