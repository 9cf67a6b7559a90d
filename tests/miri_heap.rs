//! The real grant, copy and framing code over a ring that Miri can run: under `cfg(miri)` the
//! crate backs a ring with a heap allocation laid out as a map is (control page, view A, view
//! B; `MirrorMap::heap`), with no membarrier and no atfork handler. View B is not a mirror
//! there, so these tests read every byte through the address it was written at (equal chunks
//! on both sides, frames of one size that divide the ring), and the contents check out both
//! under Miri and natively, where they run with the other tests on the real mirror.
//!
//! ```sh
//! cargo +nightly miri test --test miri_heap                               # Stacked Borrows
//! MIRIFLAGS=-Zmiri-tree-borrows cargo +nightly miri test --test miri_heap # Tree Borrows
//! cargo +nightly miri test --features tokio --test miri_heap async        # the async ends
//! ```
//!
//! The `mixed_*` tests pair a framed end with a byte end across threads, as the crate allows;
//! under Miri each reported a data race until header version 7 (a batch's stamp stored below
//! the head, into a byte consumer's grant) and the consumer's `via_head` (an untrusting framed
//! consumer's load of a word a byte producer was writing, also in the batch loop after a
//! disarm). From the reviews of 2026-12-01.

use std::io::{BufRead, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

/// The capacity asked for: one page of 4 KiB (Miri's page), more on larger pages. Tests that
/// depend on the ring's exact size read it from `capacity()`.
const CAP: usize = 4096;

fn pattern(lap: usize, i: usize) -> u8 {
    (lap * 31 + i * 7 + 1) as u8
}

/// Single thread: write grants and read grants of a size that divides the ring (so none
/// crosses the seam), several laps; `try_write`/`try_read`, `fill_buf`/`consume`.
#[test]
fn byte_grants_single_thread() {
    let (mut tx, mut rx) = mirror_ring::channel(CAP).unwrap();
    let cap = tx.capacity();
    let chunk = 512;
    for lap in 0..3 {
        for c in 0..cap / chunk {
            let mut g = tx.write_grant(chunk).unwrap();
            for (i, b) in g[..chunk].iter_mut().enumerate() {
                *b = pattern(lap, c * chunk + i);
            }
            g.commit(chunk).unwrap();
        }
        assert!(tx.try_write(&[1]).is_err(), "full");
        for c in 0..cap / chunk {
            let g = rx.read_grant(chunk).unwrap();
            assert!(g[..chunk].iter().enumerate().all(|(i, &b)| b == pattern(lap, c * chunk + i)));
            g.release(chunk).unwrap();
        }
    }
    // try_write / try_read / fill_buf, in the same chunking.
    for lap in 0..2 {
        let msg: Vec<u8> = (0..chunk).map(|i| pattern(lap + 7, i)).collect();
        for _ in 0..cap / chunk {
            assert_eq!(tx.try_write(&msg).unwrap(), chunk);
            let mut buf = vec![0; chunk];
            assert_eq!(rx.try_read(&mut buf).unwrap(), chunk);
            assert_eq!(buf, msg);
            assert_eq!(tx.try_write(&msg).unwrap(), chunk);
            let got = rx.fill_buf().unwrap();
            assert_eq!(&got[..chunk], &msg[..]);
            rx.consume(chunk);
        }
    }
}

/// Single thread: a grant that crosses the seam (into view B) and is read back by a read grant
/// of the same span (same addresses): the slices reaching past view A.
#[test]
fn a_grant_across_the_seam() {
    let (mut tx, mut rx) = mirror_ring::channel(CAP).unwrap();
    let cap = tx.capacity();
    // Move both cursors to cap - 100.
    let lead = vec![9u8; cap - 100];
    tx.write_all(&lead).unwrap();
    let mut sink = vec![0; cap - 100];
    rx.read_exact(&mut sink).unwrap();
    let mut g = tx.write_grant(300).unwrap();
    assert!(g.len() >= 300);
    for (i, b) in g[..300].iter_mut().enumerate() {
        *b = pattern(3, i);
    }
    g.commit(300).unwrap();
    let r = rx.read_grant(300).unwrap();
    assert_eq!(r.len(), 300);
    assert!(r.iter().enumerate().all(|(i, &b)| b == pattern(3, i)));
    r.release(300).unwrap();
}

/// Two threads, bytes: `Write::write_all` and `Read::read_exact` in chunks of 256, 6 laps: the
/// copies (`copy_in`, `copy_out`) and the cursor hand-over under Miri's race detector.
#[test]
fn byte_stream_two_threads() {
    let (mut tx, mut rx) = mirror_ring::channel(CAP).unwrap();
    let chunk = 256;
    let n = 6 * CAP / chunk;
    let w = thread::spawn(move || {
        for k in 0..n {
            let msg: Vec<u8> = (0..chunk).map(|i| pattern(k, i)).collect();
            tx.write_all(&msg).unwrap();
        }
    });
    let mut buf = vec![0; chunk];
    for k in 0..n {
        rx.read_exact(&mut buf).unwrap();
        assert!(buf.iter().enumerate().all(|(i, &b)| b == pattern(k, i)), "chunk {k}");
    }
    w.join().unwrap();
    assert_eq!(rx.read(&mut buf).unwrap(), 0, "end of stream");
}

/// Two threads, grants on both sides (the `&mut [u8]` and `&[u8]` lent straight from the ring).
#[test]
fn byte_grants_two_threads() {
    let (mut tx, mut rx) = mirror_ring::channel(CAP).unwrap();
    let chunk = 128;
    let n = 4 * CAP / chunk;
    let w = thread::spawn(move || {
        for k in 0..n {
            let mut g = tx.write_grant_blocking(chunk).unwrap();
            for (i, b) in g[..chunk].iter_mut().enumerate() {
                *b = pattern(k, i);
            }
            g.commit(chunk).unwrap();
        }
    });
    for k in 0..n {
        let g = rx.read_grant_blocking(chunk).unwrap();
        assert!(g[..chunk].iter().enumerate().all(|(i, &b)| b == pattern(k, i)), "chunk {k}");
        g.release(chunk).unwrap();
    }
    w.join().unwrap();
}

/// Frames of 8 payload bytes (16 in the ring: 256 per lap, none crosses the seam): `send` /
/// `recv` / `recv_into`, 3 laps, two threads. Covers the small-frame store pair, the stamp
/// poll, lazy releases, both sides sleeping.
#[test]
fn frames_send_recv_two_threads() {
    let (tx, rx) = mirror_ring::channel(CAP).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let n = 3 * CAP / 16;
    let w = thread::spawn(move || {
        for k in 0..n as u64 {
            tx.send(&k.to_le_bytes()).unwrap();
        }
    });
    let mut v = Vec::new();
    for k in 0..n as u64 {
        if k % 2 == 0 {
            let f = rx.recv().unwrap().unwrap();
            assert_eq!(u64::from_le_bytes((*f).try_into().unwrap()), k);
        } else {
            assert_eq!(rx.recv_into(&mut v).unwrap(), Some(8));
            assert_eq!(u64::from_le_bytes(v[..].try_into().unwrap()), k);
        }
    }
    w.join().unwrap();
    assert!(rx.recv().unwrap().is_none());
}

/// Frames of 56 payload bytes (64 in the ring, `copy_in`'s 16-byte pieces), written through
/// `reserve` (a `FrameGrant`) and `send`, read through `recv`: 3 laps, two threads.
#[test]
fn frame_grants_two_threads() {
    let (tx, rx) = mirror_ring::channel(CAP).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let n = 3 * CAP / 64;
    let w = thread::spawn(move || {
        for k in 0..n {
            if k % 2 == 0 {
                let mut g = tx.reserve(56).unwrap();
                for (i, b) in g.iter_mut().enumerate() {
                    *b = pattern(k, i);
                }
                g.commit().unwrap();
            } else {
                let msg: Vec<u8> = (0..56).map(|i| pattern(k, i)).collect();
                tx.send(&msg).unwrap();
            }
        }
    });
    for k in 0..n {
        let f = rx.recv().unwrap().unwrap();
        assert_eq!(f.len(), 56);
        assert!(f.iter().enumerate().all(|(i, &b)| b == pattern(k, i)), "frame {k}");
    }
    w.join().unwrap();
    assert!(rx.recv().unwrap().is_none());
}

/// `send_batch` / `recv_batch` (and `set_batch`'s held-back frames), frames of 24 bytes (32 in
/// the ring), two threads, 3 laps.
#[test]
fn frame_batches_two_threads() {
    let (tx, rx) = mirror_ring::channel(CAP).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let n = 3 * CAP / 32;
    let msgs: Vec<[u8; 24]> = (0..n).map(|k| std::array::from_fn(|i| pattern(k, i))).collect();
    let w = thread::spawn(move || {
        let mut rest = &msgs[..n / 2];
        while !rest.is_empty() {
            let sent = tx.send_batch(rest).unwrap();
            rest = &rest[sent..];
        }
        tx.set_batch(4);
        for m in &msgs[n / 2..] {
            tx.send(m).unwrap();
        }
    });
    let mut k = 0;
    while k < n {
        let got = rx
            .recv_batch(|f| {
                assert_eq!(f.len(), 24);
                assert!(f.iter().enumerate().all(|(i, &b)| b == pattern(k, i)), "frame {k}");
                k += 1;
            })
            .unwrap();
        assert!(got > 0);
    }
    w.join().unwrap();
    assert_eq!(rx.recv_batch(|_| panic!("no more")).unwrap(), 0);
}

/// A framed producer and a consumer turned byte end (`FramedConsumer::into_inner`, as the
/// docs allow): the byte consumer lends `&[u8]` over whole frames, headers included. A batch
/// is published with the stamp of its first frame before head (header version 7); stored after
/// head, the stamp landed in a header word the byte consumer held in a read grant (a data race
/// with a live `&[u8]`, under Miri).
#[test]
fn mixed_framed_producer_byte_consumer() {
    let (tx, rx) = mirror_ring::channel(CAP).unwrap();
    let mut tx = tx.into_framed();
    let mut rx = rx.into_framed().into_inner();
    let n = 2 * CAP / 32;
    let w = thread::spawn(move || {
        let msgs: Vec<[u8; 24]> = (0..8).map(|k| [k as u8; 24]).collect();
        let mut sent = 0;
        while sent < n {
            sent += tx.send_batch(&msgs[..8.min(n - sent)]).unwrap();
        }
    });
    let mut got = 0;
    while got < n * 32 {
        let g = rx.read_grant_blocking(32).unwrap();
        // Read the header word of the frame (what a parser of the documented wire format does).
        let word = u64::from_le_bytes(g[..8].try_into().unwrap());
        assert_eq!(word as u32, 24, "frame length at byte {got}");
        g.release(32).unwrap();
        got += 32;
    }
    w.join().unwrap();
}

/// A byte producer feeding a framed consumer (a supported pairing: the consumer takes what a
/// byte end writes through the published head, `docs::framing`). The framed consumer polls
/// the published head, not the word at its cursor, while it does not trust stamps (`via_head`):
/// the byte producer writes those bytes with plain stores (`copy_in`), which an atomic load
/// would race (Miri reported it before).
#[test]
fn mixed_byte_producer_framed_consumer() {
    let (mut tx, rx) = mirror_ring::channel(CAP).unwrap();
    let mut rx = rx.into_framed();
    let n = 64;
    let w = thread::spawn(move || {
        // Frames in the wire format, written by the byte API with unstamped headers (as the
        // docs' `frames_written_through_the_byte_api` describes): here as zero-length frames
        // whose header is the unstamped word, computed the way `wire::Stamp::unstamped` does.
        for k in 0..n as u64 {
            let pos = k * 8;
            let len: u32 = 0;
            let check = ((u64::from(!len) << 32) & (0x3FFF_FFFF << 32)) ^ ((pos << 29) & (0x3FFF_FFFF << 32));
            let word = check | (1 << 62) | u64::from(len);
            tx.write_all(&word.to_le_bytes()).unwrap();
        }
    });
    for k in 0..n {
        let f = rx.recv().unwrap().unwrap_or_else(|| panic!("frame {k}"));
        assert_eq!(f.len(), 0);
    }
    w.join().unwrap();
}

/// The consumer trusts stamps (it took S1 by its stamp: `known` is an 8-byte frame). The
/// producer publishes two one-frame batches W and X by head alone (its byte end's sleep for
/// room, here a `send_timeout` of a frame that cannot fit), so both headers stay unstamped
/// below the head. The consumer's `recv_batch` takes W through the head (epoch still odd:
/// armed), and while `f` holds W the producer turns into bytes (`into_inner`, the epoch ends)
/// and writes bytes after X with plain stores. The loop then finds X's unstamped header:
/// `poll_within` returns nothing without disarming, `committed` takes X through the head and
/// disarms (`committed_in`, epoch even). `bound` must then end at X: it stayed an eighth of the
/// ring ahead (`reach` only raises it), and the next iteration loaded the word at the head,
/// which the byte producer was writing (a data race Miri reported; natively the epoch check
/// kept the word from being taken). From the review of this change, 2026-12-01.
#[test]
fn mixed_batch_loop_loads_no_word_above_the_head_after_a_committed_disarm() {
    let (tx, rx) = mirror_ring::channel(CAP).unwrap();
    let mut tx = tx.into_framed();
    let mut rx = rx.into_framed();
    let (to_p, from_c) = mpsc::channel::<()>();
    let (to_c, from_p) = mpsc::channel::<()>();
    // Relaxed on both sides: tells the producer when to write without ordering anything, so
    // that its plain stores come after the consumer's load in time and unordered with it
    // (Miri then reports the race under every seed).
    let batch_done = Arc::new(AtomicBool::new(false));
    let done = batch_done.clone();
    let p = thread::spawn(move || {
        tx.send(&[0x50; 8]).unwrap(); // S0 at 0
        tx.send(&[0x51; 8]).unwrap(); // S1 at 16
        from_c.recv().unwrap();
        tx.set_batch(1000);
        let huge = vec![0u8; tx.max_frame_len()];
        tx.send(&[0x57; 8]).unwrap(); // W at 32: pending, unstamped
                                      // Cannot fit: the byte end publishes head over W before it sleeps, then times out.
        assert_eq!(tx.send_timeout(&huge, Duration::from_millis(1)).unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        tx.send(&[0x58; 8]).unwrap(); // X at 48: pending, unstamped
        assert_eq!(tx.send_timeout(&huge, Duration::from_millis(1)).unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        to_c.send(()).unwrap(); // W and X are below the head
        from_c.recv().unwrap(); // the consumer holds W
        let mut bytes = tx.into_inner(); // the framing epoch ends
        to_c.send(()).unwrap();
        while !done.load(Ordering::Relaxed) {
            thread::yield_now();
        }
        // Plain stores from the head (64) on, unordered with the consumer's loop.
        bytes.write_all(&[0xEE; 64]).unwrap();
        from_c.recv().unwrap();
        drop(bytes);
    });
    assert_eq!(&*rx.recv().unwrap().unwrap(), &[0x50; 8]); // through head: stamps trusted
    assert_eq!(&*rx.recv().unwrap().unwrap(), &[0x51; 8]); // by its stamp: `known`
    to_p.send(()).unwrap();
    from_p.recv().unwrap();
    let mut seen = Vec::new();
    let n = rx
        .recv_batch(|f| {
            seen.push(f.to_vec());
            if seen.len() == 1 {
                to_p.send(()).unwrap();
                from_p.recv().unwrap(); // the producer is a byte end now
            }
        })
        .unwrap();
    batch_done.store(true, Ordering::Relaxed);
    assert_eq!(n, 2);
    assert_eq!(seen, [[0x57; 8], [0x58; 8]]);
    to_p.send(()).unwrap();
    p.join().unwrap();
}

/// The async framed ends (feature `tokio`) on a current-thread runtime, the producer in a
/// spawned task: the async park/registration path and the same frame code.
#[cfg(feature = "tokio")]
#[test]
fn async_frames_current_thread() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (tx, rx) = mirror_ring::channel(CAP).unwrap();
        let mut tx = tx.into_framed().into_async().unwrap();
        let mut rx = rx.into_framed().into_async().unwrap();
        let n = 2 * CAP / 16;
        let w = tokio::spawn(async move {
            for k in 0..n as u64 {
                tx.send(&k.to_le_bytes()).await.unwrap();
            }
        });
        for k in 0..n as u64 {
            let f = rx.recv().await.unwrap().unwrap();
            assert_eq!(u64::from_le_bytes((*f).try_into().unwrap()), k);
        }
        w.await.unwrap();
        assert!(rx.recv().await.unwrap().is_none());
    });
}
