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

use common::{scale, seed, Rng};
use mirror_ring::{Backend, Consumer, Producer, RingOptions};

/// Operations per (backend, capacity) in a CI-sized run.
const OPS: usize = 100_000;

fn backends() -> Vec<Backend> {
    let v: Vec<Backend> = Backend::CONCRETE.into_iter().filter(|b| b.is_available()).collect();
    assert!(!v.is_empty(), "no backend works here");
    v
}

/// A random length in `0..=max`, biased towards the edges (0, 1, max - 1, max) and small
/// values, where off-by-one errors live.
fn len(rng: &mut Rng, max: usize) -> usize {
    match rng.below(9) {
        0 => 0,
        1 => 1.min(max),
        2 => max,
        3 => max.saturating_sub(1),
        4 | 5 => rng.below(max.min(64)),
        _ => rng.below(max),
    }
}

/// Asserts that `got` is a prefix of the model.
fn check_prefix(model: &VecDeque<u8>, ctx: &str, got: &[u8], step: usize, what: &str) {
    assert!(got.len() <= model.len(), "{ctx}: step {step} {what}: {} bytes, model {}", got.len(), model.len());
    for (i, (g, m)) in got.iter().zip(model.iter()).enumerate() {
        assert_eq!(g, m, "{ctx}: step {step} {what}: byte {i} of {}", got.len());
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
        match self.rng.below(9) {
            // write_grant(min), then commit n (sometimes too many), or drop it.
            0 | 1 => {
                let min = if self.rng.below(50) == 0 { cap + 1 + self.rng.below(cap) } else { len(&mut self.rng, cap) };
                let free = self.free();
                match self.tx.write_grant(min) {
                    Ok(mut g) => {
                        assert!(min <= cap, "{ctx}: step {step}: a grant of min {min} > capacity");
                        assert!(g.len() >= min.max(1), "{ctx}: step {step}: grant {} < min {min}", g.len());
                        assert!(g.len() <= free, "{ctx}: step {step}: grant {} > free {free}", g.len());
                        let n = len(&mut self.rng, g.len());
                        self.rng.fill(&mut g[..n]);
                        let bytes = g[..n].to_vec();
                        match self.rng.below(8) {
                            0 => drop(g), // nothing published
                            1 => {
                                let too_many = g.len() + 1 + self.rng.below(3);
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
                self.rng.fill(&mut buf);
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
                let min = if self.rng.below(50) == 0 { cap + 1 } else { len(&mut self.rng, cap) };
                let avail = self.model.len();
                match self.rx.read_grant(min) {
                    Ok(g) => {
                        assert!(min <= cap, "{ctx}: step {step}: a grant of min {min} > capacity");
                        assert!(g.len() >= min.max(1), "{ctx}: step {step}: grant {} < min {min}", g.len());
                        check_prefix(&self.model, &ctx, &g, step, "read_grant");
                        let n = len(&mut self.rng, g.len());
                        match self.rng.below(8) {
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
            // fill_buf returns every readable byte (it refreshes), then consume (clamped).
            6 => {
                if self.model.is_empty() {
                    return; // fill_buf would block: the producer is still there
                }
                let buf = self.rx.fill_buf().unwrap();
                assert_eq!(buf.len(), self.model.len(), "{ctx}: step {step}: fill_buf is not everything readable");
                let got = buf.to_vec();
                check_prefix(&self.model, &ctx, &got, step, "fill_buf");
                let n = if self.rng.below(10) == 0 {
                    got.len() + 1 + self.rng.below(10)
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
    for backend in backends() {
        for (i, cap) in [4096usize, 8192].into_iter().enumerate() {
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
    for backend in backends() {
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
    for backend in backends() {
        let s = seed() ^ backend as u64;
        let (mut tx, mut rx) = RingOptions::new().capacity(4096).backend(backend).build().unwrap();
        let cap = tx.capacity();
        let writer = std::thread::spawn(move || {
            let mut rng = Rng::new(s);
            let mut pos = 0u64;
            let mut buf = vec![0u8; cap + 64];
            while pos < total {
                let left = (total - pos) as usize;
                match rng.below(2) {
                    0 => {
                        let min = (1 + rng.below(cap / 2)).min(left);
                        let mut g = tx.write_grant_blocking(min).unwrap();
                        assert!(g.len() >= min && g.len() <= cap);
                        let n = (1 + rng.below(g.len() - 1)).min(left);
                        for (i, b) in g[..n].iter_mut().enumerate() {
                            *b = stream_byte(pos + i as u64);
                        }
                        g.commit(n).unwrap();
                        pos += n as u64;
                    }
                    _ => {
                        let n = (1 + rng.below(cap + 63)).min(left);
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
            let n = match rng.below(2) {
                0 => {
                    let got = rx.fill_buf().unwrap();
                    if got.is_empty() {
                        break;
                    }
                    assert!(got.len() <= cap);
                    for (i, b) in got.iter().enumerate() {
                        assert_eq!(*b, stream_byte(pos + i as u64), "{backend} seed {s}: byte {}", pos + i as u64);
                    }
                    let n = rng.below(got.len());
                    rx.consume(n);
                    n
                }
                _ => {
                    let want = 1 + rng.below(cap + 63);
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
