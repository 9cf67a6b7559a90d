//! What a debug build does differently: integer overflow and `debug_assert!` panic there. These
//! tests drive the extreme values a caller can pass (counts beyond a grant, `Duration::MAX`
//! timeouts, the largest spin budget) and a hostile peer can store (cursors at the `u64` wrap,
//! a claim word at the last epoch) through the public API, and check the exact outcome: the
//! documented error kind, and every committed byte delivered. They run in both build profiles
//! (the CI runs the suite in release and in debug). Also: a `Waker` that forks inside the
//! publish that wakes it, which used to reach an internal debug assertion.

// The tests play the hostile peer: they write the ring's header themselves.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::header_offsets::*;
use common::{in_child, page_size, watchdog, HeaderView, Pattern};
use mirror_ring::{Backend, Consumer, FramedConsumer, FramedProducer, Producer, RingOptions, SharedRing};

/// Far-off timeouts: one `Instant` cannot hold (`Duration::MAX`), one just as impossible, and
/// one it can (about 544 years), which becomes a real deadline.
const FAR: [Duration; 3] = [Duration::MAX, Duration::from_secs(u64::MAX / 2), Duration::from_secs(1 << 34)];
/// How long the peer waits before it acts, so that the call under test really waits.
const LATER: Duration = Duration::from_millis(20);
/// A generous bound on calls that must end (not a performance threshold).
const BOUND: Duration = Duration::from_secs(5);

/// A memfd ring of `cap` bytes whose cursors both start at `start` (as a ring file another
/// process prepared), with a view of its header; no role claimed yet.
fn ring_at(cap: usize, start: u64) -> (SharedRing, HeaderView) {
    let ring = RingOptions::new().capacity(cap).backend(Backend::Memfd).shared().unwrap();
    let view = HeaderView::map(ring.as_fd().unwrap());
    view.u64_at(OFF_HEAD).store(start, Ordering::SeqCst);
    view.u64_at(OFF_TAIL).store(start, Ordering::SeqCst);
    (ring, view)
}

/// The header of a ring whose producer is `tx` (the page before the data), as a hostile peer
/// would write it.
fn header_of(tx: &mut Producer) -> &'static [AtomicU64; 80] {
    let data = tx.write_grant(1).unwrap().as_ptr() as usize;
    // SAFETY: the header page precedes the data and stays mapped while the ring lives (every
    // test keeps its ends until it is done with the header); all accesses are atomic.
    let hdr = unsafe { &*((data - page_size()) as *const [AtomicU64; 80]) };
    assert_eq!(hdr[OFF_MAGIC / 8].load(Ordering::SeqCst), u64::from_le_bytes(*b"MIRRRING"), "not the header");
    hdr
}

/// The payload of frame `i` of length `len`.
fn frame(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|k| (i * 31 + k) as u8).collect()
}

/// Reads exactly `n` bytes and checks them against `pat` from `pos`.
fn read_checked(rx: &mut Consumer, pat: &Pattern, pos: u64, n: usize) {
    let mut buf = vec![0u8; n];
    rx.read_exact(&mut buf).unwrap();
    assert!(pat.matches(pos, &buf), "wrong bytes at stream position {pos}");
}

/// The frame lengths sent in each round of [`frames_across`].
fn frame_lens(max: usize, cap: usize) -> Vec<usize> {
    vec![0, 1, 7, 8, 9, 15, 16, 100, 1000, cap / 2 - 9, max, 3, cap / 3, 24]
}

/// Sends every frame of [`frame_lens`] in four rounds (one by one, batched, `send_batch`,
/// through grants truncated to size), then returns the producer.
fn send_rounds(mut tx: FramedProducer, rounds: usize) -> FramedProducer {
    let lens = frame_lens(tx.max_frame_len(), tx.capacity());
    let mut i = 0;
    for round in 0..rounds {
        match round % 4 {
            0 => {
                for &len in &lens {
                    tx.send(&frame(i, len)).unwrap();
                    i += 1;
                }
            }
            1 => {
                tx.set_batch(4);
                for &len in &lens {
                    tx.send(&frame(i, len)).unwrap();
                    i += 1;
                }
                tx.flush().unwrap();
                tx.set_batch(1);
            }
            2 => {
                let msgs: Vec<Vec<u8>> = lens.iter().enumerate().map(|(k, &len)| frame(i + k, len)).collect();
                let mut sent = 0;
                while sent < msgs.len() {
                    sent += tx.send_batch(&msgs[sent..]).unwrap();
                }
                i += msgs.len();
            }
            _ => {
                for &len in &lens {
                    let want = (len + 5).min(tx.max_frame_len());
                    let mut g = tx.reserve(want).unwrap();
                    g[..len].copy_from_slice(&frame(i, len));
                    g.truncate(len);
                    g.commit().unwrap();
                    i += 1;
                }
            }
        }
    }
    tx
}

/// Receives what [`send_rounds`] sent (with `recv`, `recv_into` and `recv_batch` in turn),
/// checking every frame.
fn recv_rounds(rx: &mut FramedConsumer, rounds: usize) {
    let lens = frame_lens(rx.max_frame_len(), rx.capacity());
    let total = lens.len() * rounds;
    let mut i = 0;
    let mut buf = Vec::new();
    let mut how = 0;
    while i < total {
        how += 1;
        match how % 3 {
            0 => {
                let f = rx.recv().unwrap().expect("a frame, not the end");
                assert_eq!(&*f, &frame(i, lens[i % lens.len()])[..], "frame {i}");
                i += 1;
            }
            1 => {
                assert_eq!(rx.recv_into(&mut buf).unwrap(), Some(lens[i % lens.len()]), "frame {i}");
                assert_eq!(buf, frame(i, lens[i % lens.len()]), "frame {i}");
                i += 1;
            }
            _ => {
                let mut bad = None;
                let n = rx
                    .recv_batch(|f| {
                        if bad.is_none() && (i >= total || f != &frame(i, lens[i % lens.len()])[..]) {
                            bad = Some(i);
                        }
                        i += 1;
                    })
                    .unwrap();
                assert!(n > 0, "recv_batch saw the end before frame {i}");
                assert_eq!(bad, None, "recv_batch: wrong frame");
            }
        }
    }
}

/// Cursors a ring file starts with may lie anywhere in `u64`, just below the wrap included
/// (`check_identity` accepts them). Bytes, frames (sent, batched, `send_batch`, truncated
/// grants; received by `recv`, `recv_into`, `recv_batch`) and bytes again all cross 2^64, at
/// every alignment, with every byte delivered and the head wrapped: no position arithmetic
/// overflows in a debug build.
#[test]
fn a_ring_born_just_below_the_u64_wrap_streams_bytes_and_frames_across_it() {
    let _dog = watchdog("a_ring_born_just_below_the_u64_wrap", Duration::from_secs(120));
    let pat = Pattern::new(7);
    let cap = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap().capacity();
    let capu = cap as u64;
    for start in [u64::MAX - 2 * capu + 4, u64::MAX - 7, u64::MAX, u64::MAX - capu / 2 - 1] {
        let (ring, view) = ring_at(cap, start);
        let mut tx = ring.clone().into_producer().unwrap();
        let mut rx = ring.clone().into_consumer().unwrap();
        // Bytes first: a lap and a few bytes, in odd chunks.
        let n1 = capu + 3;
        std::thread::scope(|s| {
            let tx = &mut tx;
            let pat = &pat;
            s.spawn(move || common::write_pattern(tx, pat, n1, &[1, 4093, 5, 333]).unwrap());
            read_checked(&mut rx, pat, 0, n1 as usize);
        });
        // Frames: the ends turn framed at an unaligned position, then four lap-crossing rounds.
        let (ftx, mut frx) = (tx.into_framed(), rx.into_framed());
        let rounds = 4;
        let ftx = std::thread::scope(|s| {
            let sender = s.spawn(move || send_rounds(ftx, rounds));
            recv_rounds(&mut frx, rounds);
            sender.join().unwrap()
        });
        // Bytes again, then the end of the stream.
        let (mut tx, mut rx) = (ftx.into_inner(), frx.into_inner());
        tx.write_all(b"after the frames").unwrap();
        drop(tx);
        let mut rest = Vec::new();
        rx.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"after the frames", "start {start:#x}");
        let head = view.u64_at(OFF_HEAD).load(Ordering::SeqCst);
        assert!(head < 1 << 32, "start {start:#x}: the head did not wrap ({head:#x})");
        assert_eq!(view.u64_at(OFF_TAIL).load(Ordering::SeqCst), head, "start {start:#x}: all released");
        assert_eq!(view.u32_at(OFF_POISONED).load(Ordering::SeqCst), 0, "start {start:#x}: poisoned");
    }
}

/// Impossible cursors forged around the `u64` wrap (one back, one lap and one beyond, the
/// largest value, the far half of the circle) are judged like any other: the consumer serves
/// the bytes it validated (every committed one), then `InvalidData` for good; the producer
/// writes into the room it knew, then `InvalidData`; `len`, `free` and `Debug` stay within the
/// ring. Nothing panics on the wrapped differences.
#[test]
fn cursors_forged_across_the_u64_wrap_poison_after_the_validated_bytes() {
    let _dog = watchdog("cursors_forged_across_the_u64_wrap", Duration::from_secs(60));
    let pat = Pattern::new(11);
    let cap = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap().capacity();
    let capu = cap as u64;
    let start = u64::MAX - 49;
    // (what, forge the head?, value from (head, published tail))
    type Value = fn(u64, u64, u64) -> u64;
    let cases: [(&str, bool, Value); 8] = [
        ("head one back", true, |h, _, _| h.wrapping_sub(1)),
        ("head a lap and one past the tail", true, |_, t, c| t.wrapping_add(c + 1)),
        ("head u64::MAX", true, |_, _, _| u64::MAX),
        ("head on the far half", true, |h, _, _| h ^ 1 << 63),
        ("tail one back", false, |_, t, _| t.wrapping_sub(1)),
        ("tail past the head", false, |h, _, _| h.wrapping_add(1)),
        ("tail a lap back", false, |_, t, c| t.wrapping_sub(c)),
        ("tail on the far half", false, |_, t, _| t ^ 1 << 63),
    ];
    for (what, head, value) in cases {
        let (ring, view) = ring_at(cap, start);
        let mut tx = ring.clone().into_producer().unwrap();
        let mut rx = ring.clone().into_consumer().unwrap();
        tx.write_all(pat.at(0, 100)).unwrap();
        read_checked(&mut rx, &pat, 0, 10);
        let mut committed = 100usize;
        if !head {
            // The producer looks at the consumer's cursor (more than the room it knew of), so
            // that the forgeries below are judged against the tail it has seen.
            committed += tx.try_write(pat.at(100, cap - 99)).unwrap();
            assert_eq!(committed, cap + 1);
        }
        let (h, t) = (view.u64_at(OFF_HEAD).load(Ordering::SeqCst), view.u64_at(OFF_TAIL).load(Ordering::SeqCst));
        assert_eq!((h, t), (start.wrapping_add(committed as u64), start.wrapping_add(10)), "{what}");
        if head {
            view.u64_at(OFF_HEAD).store(value(h, t, capu), Ordering::SeqCst);
        } else {
            view.u64_at(OFF_TAIL).store(value(h, t, capu), Ordering::SeqCst);
            // The producer writes into the room it knew of, then fails when it must look.
            let err = loop {
                match tx.try_write(pat.at(committed as u64, 1000)) {
                    Ok(n) => committed += n,
                    Err(e) => break e,
                }
                assert!(committed <= 10 + cap, "{what}: wrote {committed} bytes into a {cap}-byte ring");
            };
            assert_eq!(err.kind(), ErrorKind::InvalidData, "{what}: {err}");
            assert!(tx.free() <= cap && tx.len() <= cap, "{what}: free {} len {}", tx.free(), tx.len());
            let _ = format!("{tx:?}");
            assert_eq!(tx.try_write(b"x").unwrap_err().kind(), ErrorKind::InvalidData, "{what}");
        }
        assert!(rx.len() <= cap, "{what}: len {}", rx.len());
        let _ = format!("{rx:?}");
        // Every committed byte, then InvalidData, and again.
        let mut got = Vec::new();
        let mut buf = [0u8; 300];
        let err = loop {
            match rx.try_read(&mut buf) {
                Ok(0) => panic!("{what}: a clean end of stream on a poisoned ring"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ErrorKind::InvalidData, "{what}: {err} after {} bytes", got.len());
        assert_eq!(got.len(), committed - 10, "{what}: committed bytes lost");
        assert!(pat.matches(10, &got), "{what}: wrong bytes");
        assert_eq!(rx.try_read(&mut buf).unwrap_err().kind(), ErrorKind::InvalidData, "{what}");
        assert_eq!(rx.read_timeout(&mut buf, Duration::MAX).unwrap_err().kind(), ErrorKind::InvalidData, "{what}");
        assert!(rx.len() <= cap, "{what}: len {}", rx.len());
        assert_ne!(view.u32_at(OFF_POISONED).load(Ordering::SeqCst), 0, "{what}: the flag");
    }
}

/// Runs `call` here while another thread, `LATER`, acts on `peer`; both results.
fn meanwhile<A: Send, P: Send, R>(
    peer: &mut A,
    act: impl FnOnce(&mut A) -> P + Send,
    call: impl FnOnce() -> R,
) -> (R, P) {
    std::thread::scope(|s| {
        let other = s.spawn(move || {
            std::thread::sleep(LATER);
            act(peer)
        });
        let r = call();
        (r, other.join().unwrap())
    })
}

/// Runs `call` here while another thread drops `end` `LATER`.
fn dropped_meanwhile<T: Send, R>(end: T, call: impl FnOnce() -> R) -> R {
    std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(LATER);
            drop(end);
        });
        call()
    })
}

/// Every timed call with a timeout no `Instant` can hold (or one of centuries) waits for its
/// event, like the untimed call, and returns it: no `Instant + Duration` overflow, no
/// immediate `TimedOut`.
#[test]
fn far_off_timeouts_wait_for_the_event_in_every_timed_call() {
    let _dog = watchdog("far_off_timeouts_wait_for_the_event", Duration::from_secs(60));
    for t in FAR {
        let (mut tx, mut rx) = RingOptions::new().capacity(4096).build().unwrap();
        let cap = tx.capacity();
        let mut buf = [0u8; 16];
        // Empty ring: the reads wait for a write.
        let (r, ()) = meanwhile(&mut tx, |tx| tx.write_all(b"abc").unwrap(), || rx.read_timeout(&mut buf, t));
        assert_eq!(r.unwrap(), 3, "{t:?}");
        let act = |tx: &mut Producer| {
            tx.write_all(b"d").unwrap();
            std::thread::sleep(LATER);
            tx.write_all(b"ef").unwrap();
        };
        let (r, ()) = meanwhile(&mut tx, act, || rx.read_grant_timeout(3, t).map(|g| (g[..3].to_vec(), g.release(3))));
        let (got, released) = r.unwrap();
        assert_eq!(got, b"def", "{t:?}");
        released.unwrap();
        let mut sink = Vec::new();
        let (r, ()) = meanwhile(&mut tx, |tx| tx.write_all(b"gh").unwrap(), || rx.write_to_timeout(&mut sink, t));
        assert_eq!(r.unwrap(), 2, "{t:?}");
        assert_eq!(sink, b"gh");
        // Full ring: the writes wait for a read.
        tx.write_all(&vec![1; cap]).unwrap();
        let take = |n: usize| move |rx: &mut Consumer| rx.read_exact(&mut vec![0u8; n]).unwrap();
        let (r, ()) = meanwhile(&mut rx, take(100), || tx.write_timeout(b"x", t));
        assert_eq!(r.unwrap(), 1, "{t:?}");
        tx.write_all(&[1; 99]).unwrap();
        let grant = || {
            tx.write_grant_timeout(10, t).and_then(|mut g| {
                g[..10].copy_from_slice(b"0123456789");
                g.commit(10)
            })
        };
        let (r, ()) = meanwhile(&mut rx, take(10), grant);
        r.unwrap();
        let (r, ()) = meanwhile(&mut rx, take(3), || tx.read_from_timeout(&mut &b"xyz"[..], t));
        assert_eq!(r.unwrap(), 3, "{t:?}");
        let mut rest = vec![0u8; cap];
        rx.read_exact(&mut rest).unwrap();
        assert_eq!(&rest[cap - 13..], b"0123456789xyz");
        // The peer closes while the call waits: the end of the stream, or `BrokenPipe`.
        assert_eq!(dropped_meanwhile(tx, || rx.read_timeout(&mut buf, t)).unwrap(), 0, "{t:?}");
        let (mut tx, rx) = RingOptions::new().capacity(4096).build().unwrap();
        tx.write_all(&vec![1; cap]).unwrap();
        let err = dropped_meanwhile(rx, || tx.write_timeout(b"x", t)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{t:?}");
        // Framed: each timed receive waits for a frame, each timed send for room.
        let (tx, rx) = RingOptions::new().capacity(4096).build().unwrap();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        let max = tx.max_frame_len();
        let send = |msg: &'static [u8]| move |tx: &mut FramedProducer| tx.send(msg).unwrap();
        let (r, ()) = meanwhile(&mut tx, send(b"one"), || rx.recv_timeout(t).map(|f| f.map(|f| f.to_vec())));
        assert_eq!(r.unwrap().unwrap(), b"one", "{t:?}");
        let mut v = Vec::new();
        let (r, ()) = meanwhile(&mut tx, send(b"two"), || rx.recv_into_timeout(&mut v, t));
        assert_eq!(r.unwrap(), Some(3), "{t:?}");
        assert_eq!(v, b"two");
        let mut got = Vec::new();
        let (r, ()) = meanwhile(&mut tx, send(b"three"), || rx.recv_batch_timeout(t, |f| got.push(f.to_vec())));
        assert_eq!(r.unwrap(), 1, "{t:?}");
        assert_eq!(got, [b"three".to_vec()]);
        // A full ring: the sends wait until the consumer takes the big frame.
        for k in 0..3 {
            tx.send(&vec![k as u8; max]).unwrap();
            let recv_two = |rx: &mut FramedConsumer| {
                assert_eq!(rx.recv().unwrap().unwrap().len(), max);
                let small = rx.recv().unwrap().unwrap().to_vec();
                // Hands the room back (a framed consumer releases lazily: `docs::framing`).
                assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
                small
            };
            let call = || match k {
                0 => tx.send_timeout(b"small", t),
                1 => tx.send_batch_timeout(&[b"small"], t).map(|n| assert_eq!(n, 1)),
                _ => tx.reserve_timeout(5, t).and_then(|mut g| {
                    g.copy_from_slice(b"small");
                    g.commit()
                }),
            };
            let (r, small) = meanwhile(&mut rx, recv_two, call);
            r.unwrap();
            assert_eq!(small, b"small", "send {k}, {t:?}");
        }
        let r = dropped_meanwhile(tx, || rx.recv_timeout(t).map(|f| f.is_none()));
        assert!(r.unwrap(), "{t:?}: the end of the stream");
    }
}

/// The largest spin budget is a budget, not a promise to spin for ever: the timed calls still
/// end at their deadlines, a close still ends a wait, a framed consumer's slip after a run of
/// frames still ends, and a dead producer process is still noticed.
#[test]
fn the_largest_spin_budget_still_honours_deadlines_closes_and_deaths() {
    let _dog = watchdog("the_largest_spin_budget", Duration::from_secs(60));
    let short = Duration::from_millis(30);
    let (mut tx, mut rx) = RingOptions::new().capacity(4096).spin_budget(Duration::MAX).build().unwrap();
    let cap = tx.capacity();
    let started = Instant::now();
    assert_eq!(rx.read_timeout(&mut [0; 8], short).unwrap_err().kind(), ErrorKind::TimedOut);
    assert_eq!(rx.read_grant_timeout(1, short).unwrap_err().kind(), ErrorKind::TimedOut);
    tx.write_all(&vec![1; cap]).unwrap();
    assert_eq!(tx.write_timeout(b"x", short).unwrap_err().kind(), ErrorKind::TimedOut);
    assert_eq!(tx.write_grant_timeout(1, short).unwrap_err().kind(), ErrorKind::TimedOut);
    assert!(started.elapsed() < BOUND, "the deadlines were overrun: {:?}", started.elapsed());
    let mut all = vec![0; cap];
    rx.read_exact(&mut all).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(LATER);
            drop(tx);
        });
        assert_eq!(rx.read(&mut [0; 8]).unwrap(), 0, "the close ended the spin");
    });
    // Framed: a run of frames taken at once, then a timed receive (the slip), a timed send.
    let (tx, rx) = RingOptions::new().capacity(4096).spin_budget(Duration::MAX).build().unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    for i in 0..40u32 {
        tx.send(&i.to_le_bytes()).unwrap();
    }
    for i in 0..40u32 {
        assert_eq!(&*rx.recv_timeout(short).unwrap().unwrap(), &i.to_le_bytes());
    }
    let started = Instant::now();
    assert_eq!(rx.recv_timeout(short).unwrap_err().kind(), ErrorKind::TimedOut);
    tx.send(&vec![0; tx.max_frame_len()]).unwrap();
    assert_eq!(tx.send_timeout(b"x", short).unwrap_err().kind(), ErrorKind::TimedOut);
    assert!(started.elapsed() < BOUND, "the deadlines were overrun: {:?}", started.elapsed());
    // Between processes: a producer that dies without closing.
    let mut ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    ring.spin_budget(Duration::MAX);
    let mut rx = ring.clone().into_consumer().unwrap();
    let child_ring = ring.clone();
    let status = in_child(move || {
        let Ok(mut tx) = child_ring.into_producer() else { return 3 };
        if tx.write_all(b"last words").is_err() {
            return 4;
        }
        std::mem::forget(tx); // dies holding the role
        0
    });
    assert_eq!(status, 0);
    let mut got = [0u8; 10];
    rx.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"last words");
    let started = Instant::now();
    let err = rx.read(&mut [0; 8]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
    assert!(started.elapsed() < BOUND, "the death was noticed late: {:?}", started.elapsed());
}

/// Counts beyond what was granted, or beyond the ring, are refused with `InvalidInput` at once
/// (not waited for, also with the largest timeout) and commit or release nothing.
#[test]
fn counts_beyond_a_grant_or_the_ring_are_refused_and_change_nothing() {
    let _dog = watchdog("counts_beyond_a_grant", Duration::from_secs(60));
    let (mut tx, mut rx) = RingOptions::new().capacity(4096).build().unwrap();
    let cap = tx.capacity();
    for n in [11, usize::MAX, usize::MAX / 2 + 1] {
        let mut g = tx.write_grant(10).unwrap();
        let len = g.len();
        g[..10].copy_from_slice(b"0123456789");
        let err = g.commit(n.max(len + 1)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "commit({n}): {err}");
        assert_eq!(rx.len(), 0, "commit({n}) committed something");
    }
    tx.write_all(b"0123456789").unwrap();
    for n in [11, usize::MAX, usize::MAX / 2 + 1] {
        let g = rx.read_grant(10).unwrap();
        assert_eq!(g.len(), 10);
        let err = g.release(n).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "release({n}): {err}");
        assert_eq!(rx.len(), 10, "release({n}) released something");
        assert_eq!(tx.free(), cap - 10);
    }
    for min in [cap + 1, usize::MAX] {
        for t in FAR {
            let started = Instant::now();
            assert_eq!(rx.read_grant(min).unwrap_err().kind(), ErrorKind::InvalidInput);
            assert_eq!(rx.read_grant_timeout(min, t).unwrap_err().kind(), ErrorKind::InvalidInput);
            assert_eq!(rx.read_grant_blocking(min).unwrap_err().kind(), ErrorKind::InvalidInput);
            assert_eq!(tx.write_grant(min).unwrap_err().kind(), ErrorKind::InvalidInput);
            assert_eq!(tx.write_grant_timeout(min, t).unwrap_err().kind(), ErrorKind::InvalidInput);
            assert_eq!(tx.write_grant_blocking(min).unwrap_err().kind(), ErrorKind::InvalidInput);
            assert!(started.elapsed() < BOUND, "a refused size was waited for");
        }
    }
    let mut ten = [0u8; 10];
    rx.read_exact(&mut ten).unwrap();
    assert_eq!(&ten, b"0123456789", "the bytes are intact");
    // Framed: lengths beyond the largest frame, a truncation to more than the grant.
    let (tx, rx) = RingOptions::new().capacity(4096).build().unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let max = tx.max_frame_len();
    for len in [max + 1, usize::MAX, usize::MAX - 6, u32::MAX as usize + 1] {
        for t in FAR {
            assert_eq!(tx.try_reserve(len).unwrap_err().kind(), ErrorKind::InvalidInput, "{len}");
            assert_eq!(tx.reserve_timeout(len, t).unwrap_err().kind(), ErrorKind::InvalidInput, "{len}");
            assert_eq!(tx.reserve(len).unwrap_err().kind(), ErrorKind::InvalidInput, "{len}");
        }
    }
    let mut g = tx.reserve(5).unwrap();
    g.copy_from_slice(b"hello");
    g.truncate(usize::MAX);
    assert_eq!(g.len(), 5);
    g.commit().unwrap();
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"hello");
    // The largest batch: frames go out on a flush (or when a quarter of the ring is pending).
    tx.set_batch(usize::MAX);
    assert_eq!(tx.batch(), usize::MAX);
    let mut next = 0u32;
    for i in 0..1000u32 {
        tx.send(&i.to_le_bytes()).unwrap();
        if i % 100 == 99 {
            tx.flush().unwrap();
            while next <= i {
                let mut wrong = false;
                rx.try_recv_batch(|f| {
                    wrong |= f != next.to_le_bytes();
                    next += 1;
                })
                .unwrap();
                assert!(!wrong, "a wrong frame before {next}");
            }
        }
    }
    assert_eq!(next, 1000);
    drop(tx);
    assert!(rx.recv().unwrap().is_none(), "the end of the stream");
}

/// A grant taken before a peer forged a cursor, closed its end or raised the poison flag
/// commits or releases within what was validated when it was made: `Ok`, the bytes counted
/// once (no debug assertion on the cached cursors), and the next call that looks fails.
#[test]
fn grants_outlive_a_forgery_a_close_and_a_poison_flag_within_what_they_were_given() {
    let _dog = watchdog("grants_outlive_a_forgery", Duration::from_secs(60));
    // A write grant across a forged tail.
    let (mut tx, mut rx) = RingOptions::new().capacity(4096).build().unwrap();
    let cap = tx.capacity();
    let hdr = header_of(&mut tx);
    let mut g = tx.write_grant(100).unwrap();
    g[..100].copy_from_slice(&[7; 100]);
    hdr[OFF_TAIL / 8].store(u64::MAX, Ordering::SeqCst);
    g.commit(100).unwrap();
    assert_eq!(tx.try_write(&vec![0; cap]).unwrap_err().kind(), ErrorKind::InvalidData);
    let mut buf = [0u8; 200];
    assert_eq!(rx.try_read(&mut buf).unwrap(), 100, "the committed bytes");
    assert_eq!(buf[..100], [7; 100]);
    assert_eq!(rx.try_read(&mut buf).unwrap_err().kind(), ErrorKind::InvalidData);
    // A read grant across a forged head: released in part, the rest still served, then the
    // poisoning.
    let (mut tx, mut rx) = RingOptions::new().capacity(4096).build().unwrap();
    let hdr = header_of(&mut tx);
    tx.write_all(&[5; 100]).unwrap();
    let g = rx.read_grant(100).unwrap();
    hdr[OFF_HEAD / 8].store(u64::MAX, Ordering::SeqCst);
    g.release(50).unwrap();
    assert_eq!(rx.try_read(&mut buf).unwrap(), 50, "the validated rest");
    assert_eq!(rx.try_read(&mut buf).unwrap_err().kind(), ErrorKind::InvalidData);
    let g = rx.read_grant(0);
    assert_eq!(g.unwrap_err().kind(), ErrorKind::InvalidData);
    // A frame grant across a forged tail.
    let (mut tx, rx) = RingOptions::new().capacity(4096).build().unwrap();
    let hdr = header_of(&mut tx);
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let mut g = tx.reserve(8).unwrap();
    g.copy_from_slice(b"grant ok");
    hdr[OFF_TAIL / 8].store(u64::MAX, Ordering::SeqCst);
    g.commit().unwrap();
    assert_eq!(tx.send(&vec![0; tx.max_frame_len()]).unwrap_err().kind(), ErrorKind::InvalidData);
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"grant ok");
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::InvalidData);
    // A write grant committed after the consumer closed, and one after the poison flag.
    let (mut tx, rx) = RingOptions::new().capacity(4096).build().unwrap();
    let mut g = tx.write_grant(3).unwrap();
    g[..3].copy_from_slice(b"abc");
    drop(rx);
    g.commit(3).unwrap();
    assert_eq!(tx.write(b"x").unwrap_err().kind(), ErrorKind::BrokenPipe);
    let (mut tx, mut rx) = RingOptions::new().capacity(4096).build().unwrap();
    let hdr = header_of(&mut tx);
    let mut g = tx.write_grant(3).unwrap();
    g[..3].copy_from_slice(b"abc");
    hdr[OFF_POISONED / 8].fetch_or(1, Ordering::SeqCst);
    g.commit(3).unwrap();
    let mut got = Vec::new();
    let err = loop {
        match rx.try_read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
        assert!(got.len() <= 3, "more bytes than committed");
    };
    assert_eq!(got, b"abc", "committed before the flag: delivered");
    assert_eq!(err.kind(), ErrorKind::InvalidData);
}

/// A role slot whose epoch is the last one (2^24 - 1), from a peer that wrote it (or from 2^24
/// take-overs): taking the role over wraps the epoch to 0, and the new holding works like any
/// other (bytes flow, the consumer follows it, the close is final).
#[test]
fn a_take_over_at_the_last_epoch_wraps_to_epoch_zero_and_works() {
    let _dog = watchdog("a_take_over_at_the_last_epoch", Duration::from_secs(60));
    let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    let view = HeaderView::map(ring.as_fd().unwrap());
    let mut rx = ring.clone().into_consumer().unwrap();
    let child_ring = ring.clone();
    let status = in_child(move || {
        let Ok(mut tx) = child_ring.into_producer() else { return 3 };
        if tx.write_all(b"before").is_err() {
            return 4;
        }
        std::mem::forget(tx); // dies holding the role
        0
    });
    assert_eq!(status, 0);
    let word = view.u64_at(OFF_PRODUCER);
    let old = word.load(Ordering::SeqCst);
    assert_eq!((old & 0xff, (old >> 8) & 0xFF_FFFF), (1, 1), "claimed, first epoch");
    word.store(old | 0xFF_FFFF << 8, Ordering::SeqCst);
    let mut six = [0u8; 6];
    rx.read_exact(&mut six).unwrap();
    assert_eq!(&six, b"before");
    assert_eq!(rx.read(&mut six).unwrap_err().kind(), ErrorKind::UnexpectedEof, "the death");
    let mut tx = ring.take_over_producer().unwrap();
    let now = word.load(Ordering::SeqCst);
    assert_eq!((now & 0xff, (now >> 8) & 0xFF_FFFF), (1, 0), "claimed, the epoch wrapped to 0");
    assert_eq!((now >> 32) as u32, std::process::id());
    tx.write_all(b"after").unwrap();
    drop(tx);
    let mut rest = Vec::new();
    rx.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"after");
    assert_eq!(ring.take_over_producer().unwrap_err().kind(), ErrorKind::AlreadyExists, "a close is final");
}

/// Set in a child forked by [`ForkingWaker`], right after the fork.
#[cfg(feature = "tokio")]
static IN_FORKED_CHILD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A waker that forks the first time it is woken: the child goes on inside the call that
/// woke it (as a child forked by any code the call runs, a signal handler's included).
#[cfg(feature = "tokio")]
struct ForkingWaker {
    armed: std::sync::atomic::AtomicBool,
    child: std::sync::atomic::AtomicI32,
}

#[cfg(feature = "tokio")]
impl std::task::Wake for ForkingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        if !self.armed.swap(false, Ordering::SeqCst) {
            return;
        }
        let parent = std::process::id();
        // SAFETY: the child only returns into the ring call that woke this waker, then the
        // test `_exit`s it (see the test); it never returns into the harness.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: prctl(PR_SET_PDEATHSIG) records a signal; no memory effects.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
            if std::os::unix::process::parent_id() != parent {
                // SAFETY: ends the child at once.
                unsafe { libc::_exit(9) };
            }
            IN_FORKED_CHILD.store(true, Ordering::SeqCst);
            // The harness captures the test thread's output, and the child never hands it
            // back: say where a panic happens straight on stderr.
            std::panic::set_hook(Box::new(|info| {
                let msg = format!("forked child: {info}\n");
                // SAFETY: a plain write of a live buffer to stderr.
                unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
            }));
        } else {
            self.child.store(pid, Ordering::SeqCst);
        }
    }
}

/// A call that wakes a parked async end of a thread ring runs that end's waker in its own
/// thread (`direct_wake`). A waker that forks puts a copy of the call in the child, past the
/// call's fork-generation check (`docs::lifecycle`, "`fork()`"): the child's copy of the call
/// panics there, saying why, rather than go on with the parent's ring (in a release build it
/// used to return the parent's next frame; in a debug build it panicked on an internal
/// assertion; with `dont_fork` it would fault on pages the child does not have). The parent's
/// call and stream go on unharmed. Here: a blocking `FramedConsumer::recv` that releases early
/// for an `AsyncFramedProducer` parked for room.
#[cfg(feature = "tokio")]
#[test]
fn a_waker_that_forks_inside_a_publish_stops_the_forked_copy_of_the_call() {
    for dont_fork in [false, true] {
        forking_waker_inside_a_publish(dont_fork);
    }
}

#[cfg(feature = "tokio")]
fn forking_waker_inside_a_publish(dont_fork: bool) {
    use std::future::Future;
    let _dog =
        watchdog("a_waker_that_forks_inside_a_publish_stops_the_forked_copy_of_the_call", Duration::from_secs(60));
    let (tx, rx) = RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).dont_fork(dont_fork).build().unwrap();
    let cap = tx.capacity();
    let mut atx = tx.into_framed().into_async().unwrap();
    let mut rx = rx.into_framed();
    // Eight small frames, received: released lazily (under a quarter of the ring).
    let noop = common::noop_waker();
    let mut cx = std::task::Context::from_waker(&noop);
    for i in 0..8u8 {
        let msg = [i; 100];
        let mut send = std::pin::pin!(atx.send(&msg));
        assert!(matches!(send.as_mut().poll(&mut cx), std::task::Poll::Ready(Ok(()))));
    }
    for i in 0..8u8 {
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), &[i; 100]);
    }
    // A frame that leaves 8 bytes of room, then a send that parks for room with the waker.
    let big = vec![9u8; cap - 8 * 112 - 16];
    {
        let mut send = std::pin::pin!(atx.send(&big));
        assert!(matches!(send.as_mut().poll(&mut cx), std::task::Poll::Ready(Ok(()))));
    }
    let forking = std::sync::Arc::new(ForkingWaker {
        armed: std::sync::atomic::AtomicBool::new(true),
        child: std::sync::atomic::AtomicI32::new(0),
    });
    let waker = std::task::Waker::from(forking.clone());
    let mut parked_cx = std::task::Context::from_waker(&waker);
    let small = [1u8; 100];
    let mut parked = std::pin::pin!(atx.send(&small));
    assert!(parked.as_mut().poll(&mut parked_cx).is_pending(), "the send must park for room");
    // The receive sees the producer waiting, releases at once and wakes it: the fork.
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rx.recv().map(|f| f.map(|f| f.len()))));
    if IN_FORKED_CHILD.load(Ordering::SeqCst) {
        let code = match got {
            Err(p) => {
                let msg = p.downcast_ref::<String>().map(String::as_str).or(p.downcast_ref::<&str>().copied());
                let msg = msg.unwrap_or("");
                if msg.contains("a Waker forked the process") {
                    0
                } else {
                    101
                }
            }
            Ok(Ok(Some(_))) => 2,
            Ok(_) => 3,
        };
        // SAFETY: the forked child ends here, without returning into the harness.
        unsafe { libc::_exit(code) };
    }
    assert_eq!(got.unwrap().unwrap(), Some(big.len()), "the parent receives the big frame");
    let pid = forking.child.load(Ordering::SeqCst);
    assert!(pid > 0, "the waker was never woken: no fork");
    let until = Instant::now() + BOUND;
    let status = loop {
        let mut raw = 0;
        // SAFETY: our own child; a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut raw, libc::WNOHANG) };
        if r == pid {
            break if libc::WIFEXITED(raw) { libc::WEXITSTATUS(raw) } else { 128 + libc::WTERMSIG(raw) };
        }
        if Instant::now() > until {
            // SAFETY: our own child, not reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: as above.
            unsafe { libc::waitpid(pid, &mut raw, 0) };
            panic!("the forked child hung");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(status, 0, "dont_fork {dont_fork}: the forked copy of the call (0 = stopped by the documented panic, 2 = went on with the parent's frame, 101 = another panic, 3 = another result, 128+ = a signal; see stderr)");
    // The parent's stream is whole: the parked send completes and its frame arrives.
    assert!(parked.as_mut().poll(&mut cx).is_ready(), "the parked send completes in the parent");
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), &small, "dont_fork {dont_fork}");
}
