//! Operation sequences on a real ring against a `VecDeque<u8>` model: the fuzzer picks the
//! backend, the capacity and every operation and size; every byte, every `WouldBlock`, every
//! grant length and the end of stream are checked (the same contract as `tests/model.rs`).
#![no_main]

use std::collections::VecDeque;
use std::io::{BufRead, ErrorKind, Read};

use libfuzzer_sys::fuzz_target;
use mirror_ring::{Backend, RingOptions};

/// Reads the fuzz input as a stream of small numbers (zeros once it runs out).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    /// A length in `0..=max`, from two bytes.
    fn len(&mut self, max: usize) -> usize {
        let v = u16::from_le_bytes([self.byte(), self.byte()]) as usize;
        v % (max + 1)
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// The byte at stream position `pos`: distinct along any window shorter than 251 bytes, and
/// never the same at `pos` and `pos + capacity`, so stale or misplaced bytes show.
fn stream(pos: u64) -> u8 {
    (pos % 251) as u8 ^ ((pos / 4096) as u8).rotate_left(3)
}

/// What the next `fill_buf` must return, by what the consumer did last.
#[derive(Clone, Copy)]
enum View {
    /// Exactly this many bytes: the rest of the last view, partly consumed since.
    Rest(usize),
    /// Every readable byte: nothing was consumed since the last view.
    Everything,
    /// Some non-empty prefix of the readable bytes.
    Unknown,
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let sel = inp.byte();
    let backends: Vec<Backend> = Backend::CONCRETE.into_iter().filter(|b| b.is_available()).collect();
    let backend = backends[sel as usize % backends.len()];
    let cap = if sel & 0x80 != 0 { 8192 } else { 4096 };
    let (mut tx, mut rx) = RingOptions::new().capacity(cap).backend(backend).build().expect("ring");
    assert_eq!(tx.capacity(), cap);
    let mut model: VecDeque<u8> = VecDeque::new();
    let mut wpos = 0u64;
    let mut buf = vec![0u8; cap + 64];
    let mut ops = 0;
    let mut view = View::Unknown;
    while !inp.done() && ops < 2000 {
        ops += 1;
        let free = cap - model.len();
        let op = inp.byte() % 8;
        if matches!(op, 2 | 3 | 5 | 6) {
            // Other consumer calls move the tail or reload the producer's cursor.
            view = View::Unknown;
        }
        match op {
            0 => {
                let min = inp.len(cap + 8);
                match tx.write_grant(min) {
                    Ok(mut g) => {
                        assert!(min <= cap && g.len() >= min.max(1) && g.len() <= free);
                        let n = inp.len(g.len());
                        for (i, b) in g[..n].iter_mut().enumerate() {
                            *b = stream(wpos + i as u64);
                        }
                        match inp.byte() % 4 {
                            0 => drop(g),
                            1 => {
                                let over = g.len() + 1;
                                assert_eq!(g.commit(over).unwrap_err().kind(), ErrorKind::InvalidInput);
                            }
                            _ => {
                                g.commit(n).unwrap();
                                model.extend((0..n as u64).map(|i| stream(wpos + i)));
                                wpos += n as u64;
                            }
                        }
                    }
                    Err(e) if min > cap => assert_eq!(e.kind(), ErrorKind::InvalidInput),
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::WouldBlock);
                        assert!(free < min.max(1));
                    }
                }
            }
            1 => {
                let n = inp.len(cap + 64);
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    *b = stream(wpos + i as u64);
                }
                match tx.try_write(&buf[..n]) {
                    Ok(w) => {
                        assert_eq!(w, n.min(free));
                        model.extend(&buf[..w]);
                        wpos += w as u64;
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::WouldBlock);
                        assert!(free == 0 && n > 0);
                    }
                }
            }
            2 => {
                let min = inp.len(cap + 8);
                match rx.read_grant(min) {
                    Ok(g) => {
                        assert!(min <= cap && g.len() >= min.max(1) && g.len() <= model.len());
                        assert!(g.iter().zip(model.iter()).all(|(a, b)| a == b));
                        let n = inp.len(g.len());
                        match inp.byte() % 4 {
                            0 => drop(g),
                            1 => {
                                let over = g.len() + 1;
                                assert_eq!(g.release(over).unwrap_err().kind(), ErrorKind::InvalidInput);
                            }
                            _ => {
                                g.release(n).unwrap();
                                model.drain(..n);
                            }
                        }
                    }
                    Err(e) if min > cap => assert_eq!(e.kind(), ErrorKind::InvalidInput),
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::WouldBlock);
                        assert!(model.len() < min.max(1));
                    }
                }
            }
            3 => {
                let n = inp.len(cap + 64);
                match rx.try_read(&mut buf[..n]) {
                    Ok(r) => {
                        assert_eq!(r, n.min(model.len()));
                        assert!(buf[..r].iter().zip(model.drain(..r)).all(|(a, b)| *a == b));
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::WouldBlock);
                        assert!(model.is_empty() && n > 0);
                    }
                }
            }
            4 if !model.is_empty() => {
                // fill_buf hands out what it holds first (as `std::io::BufReader` does): right
                // after a partial consume of its view, exactly the rest of that view; right
                // after a consume of nothing, everything; after other consumer calls, some
                // readable prefix. Asked again without a consume, every readable byte.
                let got = rx.fill_buf().unwrap();
                match view {
                    View::Rest(r) => assert_eq!(got.len(), r, "the rest of the view"),
                    View::Everything => assert_eq!(got.len(), model.len()),
                    View::Unknown => assert!(!got.is_empty() && got.len() <= model.len()),
                }
                assert!(got.iter().zip(model.iter()).all(|(a, b)| a == b));
                let got = rx.fill_buf().unwrap();
                assert_eq!(got.len(), model.len(), "asked again: everything readable");
                assert!(got.iter().zip(model.iter()).all(|(a, b)| a == b));
                let shown = got.len();
                let n = inp.len(shown + 4);
                rx.consume(n);
                model.drain(..n.min(model.len()));
                view = match n {
                    // Nothing consumed, or exactly everything shown: the next call reloads.
                    0 => View::Everything,
                    n if n == shown => View::Everything,
                    n if n < shown => View::Rest(shown - n),
                    // More than shown: consume looked again and kept what it saw.
                    _ => View::Unknown,
                };
            }
            5 => {
                assert_eq!(tx.len(), model.len());
                assert_eq!(tx.free(), free);
                assert_eq!(rx.len(), model.len());
                assert_eq!(rx.is_empty(), model.is_empty());
            }
            6 => {
                // A read grant held while the whole write grant is overwritten.
                if let (Ok(r), Ok(mut w)) = (rx.read_grant(1), tx.write_grant(1)) {
                    assert!(r.len() + w.len() <= cap);
                    w.fill(0xEE);
                    assert!(r.iter().zip(model.iter()).all(|(a, b)| a == b));
                }
            }
            _ => {}
        }
    }
    drop(tx);
    let mut rest = Vec::new();
    rx.read_to_end(&mut rest).unwrap();
    assert!(rest.iter().eq(model.iter()));
    assert_eq!(rx.try_read(&mut buf).unwrap(), 0);
});
