//! Do the byte ends honour the contracts of std's `Read`/`Write`/`BufRead` and tokio's
//! `AsyncRead`/`AsyncWrite`/`AsyncBufRead` when driven by generic code that knows nothing about
//! mirror-ring (std and tokio adaptors, `copy`, `BufReader`, `lines`, cancellation)?
//!
//! Every test runs under a liveness bound (a hang fails the test instead of stalling the run);
//! no test measures speed. Forked children leave through `_exit` (tests/common).
#![cfg(feature = "tokio")]

#[path = "common/mod.rs"]
mod common;

use std::future::Future as _;
use std::io::{self, BufRead, BufReader, BufWriter, ErrorKind, IoSlice, IoSliceMut, Read, Write};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{spawn_child, Rng};
use mirror_ring::{channel, RingOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// The byte at stream position `i`: position-dependent, so a lost, duplicated or reordered
/// byte shows.
fn pat(i: u64) -> u8 {
    (i.wrapping_mul(0x9E37_79B9) >> 7) as u8 ^ (i as u8).rotate_left(3) ^ (i >> 11) as u8
}

fn pat_vec(from: u64, n: usize) -> Vec<u8> {
    (0..n as u64).map(|k| pat(from + k)).collect()
}

fn check_at(pos: u64, got: &[u8]) {
    for (k, &b) in got.iter().enumerate() {
        let want = pat(pos + k as u64);
        assert_eq!(b, want, "wrong byte at stream position {} (got {b}, want {want})", pos + k as u64);
    }
}

/// Runs `f` on a thread of its own and fails the test if it has not finished within `secs`.
fn bounded<T: Send + 'static>(name: &str, secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done_tx, done_rx) = mpsc::channel();
    let h = thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let r = f();
            let _ = done_tx.send(());
            r
        })
        .unwrap();
    match done_rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => h.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(_) => unreachable!(),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{name}: did not finish within {secs} s (hang)"),
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Runs the async body as a task on a current-thread and on a multi-thread runtime, each
/// bounded.
fn on_both_runtimes<F, Fut>(name: &'static str, secs: u64, body: F)
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let b = body.clone();
    bounded(&format!("{name}/current_thread"), secs, move || {
        let rt = current_thread();
        rt.block_on(async move { tokio::spawn(b()).await.unwrap() })
    });
    bounded(&format!("{name}/multi_thread"), secs, move || {
        let rt = multi_thread();
        rt.block_on(async move { tokio::spawn(body()).await.unwrap() })
    });
}

// ---------------------------------------------------------------------------------------------
// std::io
// ---------------------------------------------------------------------------------------------

/// `write`/`write_vectored` never answer Ok(0) for a non-empty buffer and always write a
/// prefix of what they were given; `read`/`read_vectored` never answer Ok(0) before the end of
/// the stream and, after it, answer Ok(0) again (and `fill_buf` an empty slice).
#[test]
fn std_write_and_read_contracts_over_a_wrapping_stream() {
    bounded("std_write_and_read_contracts", 60, || {
        const TOTAL: u64 = 3 << 20;
        let (mut tx, mut rx) = channel(4096).unwrap();
        let writer = thread::spawn(move || {
            let mut rng = Rng::new(11);
            let mut pos = 0u64;
            while pos < TOTAL {
                let len = (1 + rng.up_to(9000)).min((TOTAL - pos) as usize);
                let data = pat_vec(pos, len);
                let n = if rng.up_to(3) == 0 && len > 1 {
                    let cut = 1 + rng.up_to(len - 2);
                    let (a, b) = data.split_at(cut);
                    let n = tx.write_vectored(&[IoSlice::new(&[]), IoSlice::new(a), IoSlice::new(b)]).unwrap();
                    n
                } else {
                    tx.write(&data).unwrap()
                };
                assert!(n > 0, "Write::write returned Ok(0) for a {len}-byte buffer");
                assert!(n <= len, "write claims {n} of {len} bytes");
                pos += n as u64;
            }
            assert_eq!(tx.write(&[]).unwrap(), 0);
            tx.flush().unwrap();
        });
        let mut rng = Rng::new(12);
        let mut pos = 0u64;
        loop {
            let n = if rng.up_to(3) == 0 {
                let mut a = vec![0u8; 1 + rng.up_to(100)];
                let mut b = vec![0u8; 1 + rng.up_to(9000)];
                let n = rx
                    .read_vectored(&mut [IoSliceMut::new(&mut []), IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)])
                    .unwrap();
                let mut got = a.clone();
                got.extend_from_slice(&b);
                check_at(pos, &got[..n]);
                n
            } else {
                let mut buf = vec![0u8; 1 + rng.up_to(9000)];
                let n = rx.read(&mut buf).unwrap();
                check_at(pos, &buf[..n]);
                n
            };
            if n == 0 {
                break;
            }
            pos += n as u64;
        }
        writer.join().unwrap();
        assert_eq!(pos, TOTAL, "Read::read returned Ok(0) at {pos} of {TOTAL}: before the end of the stream");
        for _ in 0..3 {
            assert_eq!(rx.read(&mut [0; 8]).unwrap(), 0, "end of stream is not sticky");
            assert!(rx.fill_buf().unwrap().is_empty());
        }
    });
}

/// An empty ring whose producer lives: `read`, `fill_buf` and `read_exact` wait; they do not
/// report end of stream. Then they see the bytes that come, and Ok(0) only after the close.
#[test]
fn std_empty_ring_with_live_producer_is_not_end_of_stream() {
    bounded("std_empty_ring_with_live_producer", 30, || {
        let (mut tx, rx) = channel(4096).unwrap();
        // read
        let (res_tx, res_rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            let mut rx = rx;
            let mut buf = [0u8; 16];
            let r = rx.read(&mut buf).map(|n| buf[..n].to_vec());
            res_tx.send(r).unwrap();
            rx
        });
        match res_rx.recv_timeout(Duration::from_millis(300)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            other => panic!("read on an empty ring with a live producer returned {other:?}"),
        }
        tx.write_all(b"x").unwrap();
        let got = res_rx.recv_timeout(Duration::from_secs(5)).expect("read not woken by a write").unwrap();
        assert_eq!(got, b"x");
        let rx = reader.join().unwrap();

        // fill_buf
        let (res_tx, res_rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            let mut rx = rx;
            let r = rx.fill_buf().map(|b| b.to_vec());
            res_tx.send(r).unwrap();
            rx.consume(2);
            rx
        });
        match res_rx.recv_timeout(Duration::from_millis(300)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            other => panic!("fill_buf on an empty ring with a live producer returned {other:?}"),
        }
        tx.write_all(b"yz").unwrap();
        let got = res_rx.recv_timeout(Duration::from_secs(5)).expect("fill_buf not woken").unwrap();
        assert_eq!(got, b"yz");
        let rx = reader.join().unwrap();

        // read_exact across several writes
        let (res_tx, res_rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            let mut rx = rx;
            let mut buf = [0u8; 6];
            let r = rx.read_exact(&mut buf).map(|()| buf.to_vec());
            res_tx.send(r).unwrap();
            rx
        });
        tx.write_all(b"abc").unwrap();
        match res_rx.recv_timeout(Duration::from_millis(200)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            other => panic!("read_exact(6) after 3 bytes returned {other:?}"),
        }
        tx.write_all(b"def").unwrap();
        assert_eq!(res_rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap(), b"abcdef");
        let mut rx = reader.join().unwrap();

        // read_exact that the close cuts short: UnexpectedEof, per Read::read_exact.
        tx.write_all(b"12").unwrap();
        drop(tx);
        let mut buf = [0u8; 5];
        let e = rx.read_exact(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
        assert_eq!(rx.read(&mut buf).unwrap(), 0);
    });
}

/// `BufRead::fill_buf`/`consume`: what the impl's docs promise (consume clamped to what is
/// readable, over-consume never panics, `consume(0)` changes nothing, data after a clamp is
/// neither lost nor duplicated).
#[test]
fn std_fill_buf_consume_contract() {
    bounded("std_fill_buf_consume_contract", 30, || {
        let (mut tx, mut rx) = channel(4096).unwrap();
        tx.write_all(b"abc").unwrap();
        assert_eq!(rx.fill_buf().unwrap(), b"abc");
        rx.consume(0);
        assert_eq!(rx.fill_buf().unwrap(), b"abc", "consume(0) changed the buffer");
        rx.consume(10); // more than fill_buf returned: clamped to the 3 readable bytes
        tx.write_all(b"def").unwrap();
        assert_eq!(rx.fill_buf().unwrap(), b"def", "over-consume lost or kept bytes");
        rx.consume(usize::MAX);
        rx.consume(usize::MAX); // empty ring: nothing to release, no panic
        assert_eq!(rx.len(), 0);
        // Documented: the clamp is to what is readable *now*, which may include bytes published
        // after the fill_buf.
        tx.write_all(b"ghi").unwrap();
        assert_eq!(rx.fill_buf().unwrap(), b"ghi");
        tx.write_all(b"jk").unwrap();
        rx.consume(4);
        assert_eq!(rx.fill_buf().unwrap(), b"k");
        rx.consume(1);
        // Partial consumes walk through a view in order.
        tx.write_all(b"0123456789").unwrap();
        let mut got = Vec::new();
        loop {
            let b = rx.fill_buf().unwrap();
            if b.is_empty() {
                break;
            }
            got.push(b[0]);
            rx.consume(1);
            if got.len() == 10 {
                break;
            }
        }
        assert_eq!(got, b"0123456789");
        // Mixed with Read: no byte served twice.
        tx.write_all(b"ABCDEF").unwrap();
        assert_eq!(rx.fill_buf().unwrap(), b"ABCDEF");
        rx.consume(2);
        let mut two = [0u8; 2];
        rx.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"CD");
        assert_eq!(rx.fill_buf().unwrap(), b"EF");
        rx.consume(2);
        drop(tx);
        assert!(rx.fill_buf().unwrap().is_empty());
        rx.consume(5); // at end of stream: nothing, no panic
        assert!(rx.fill_buf().unwrap().is_empty());
    });
}

fn line(i: usize, rng: &mut Rng) -> String {
    let len = rng.up_to(300);
    let body: String = (0..len).map(|k| (b'a' + ((i + k) % 26) as u8) as char).collect();
    format!("{i}:{body}")
}

fn expected_lines(n: usize) -> Vec<String> {
    let mut rng = Rng::new(77);
    (0..n).map(|i| line(i, &mut rng)).collect()
}

/// A producer thread writing `n` lines (the last without a newline when `tail`), split at random
/// points, through a 4 KiB ring (so lines cross the wrap).
fn line_writer(n: usize, tail: bool) -> (thread::JoinHandle<()>, mirror_ring::Consumer) {
    let (mut tx, rx) = channel(4096).unwrap();
    let h = thread::spawn(move || {
        let mut text = String::new();
        for (i, l) in expected_lines(n).into_iter().enumerate() {
            text.push_str(&l);
            if !(tail && i == n - 1) {
                text.push('\n');
            }
        }
        let bytes = text.as_bytes();
        let mut rng = Rng::new(5);
        let mut pos = 0;
        while pos < bytes.len() {
            let k = (1 + rng.up_to(700)).min(bytes.len() - pos);
            tx.write_all(&bytes[pos..pos + k]).unwrap();
            pos += k;
        }
    });
    (h, rx)
}

/// `lines`, `read_line`, `split`, and `BufReader` around the consumer, over lines that cross
/// the wrap point, with a final line without newline.
#[test]
fn std_line_apis_see_every_line() {
    bounded("std_line_apis", 90, || {
        const N: usize = 6000;
        let want = expected_lines(N);

        let (h, rx) = line_writer(N, true);
        let got: Vec<String> = rx.lines().map(|l| l.unwrap()).collect();
        h.join().unwrap();
        assert_eq!(got.len(), N, "Consumer::lines");
        assert!(got == want, "Consumer::lines: wrong lines");

        let (h, mut rx) = line_writer(N, true);
        let mut got = Vec::new();
        let mut s = String::new();
        loop {
            s.clear();
            if rx.read_line(&mut s).unwrap() == 0 {
                break;
            }
            got.push(s.trim_end_matches('\n').to_string());
        }
        h.join().unwrap();
        assert!(got == want, "read_line: {} lines", got.len());

        let (h, rx) = line_writer(N, false);
        let got: Vec<String> = rx.split(b'\n').map(|l| String::from_utf8(l.unwrap()).unwrap()).collect();
        h.join().unwrap();
        assert!(got == want, "split: {} lines", got.len());

        let (h, rx) = line_writer(N, true);
        let got: Vec<String> = BufReader::with_capacity(37, rx).lines().map(|l| l.unwrap()).collect();
        h.join().unwrap();
        assert!(got == want, "BufReader(37)::lines: {} lines", got.len());
    });
}

/// `std::io::copy` between the consumer of one ring and the producer of another, with
/// `BufWriter`/`BufReader` wrapping the ends, and `read_to_end` at the far side.
#[test]
fn std_io_copy_between_rings_with_buffered_wrappers() {
    bounded("std_io_copy_between_rings", 60, || {
        const TOTAL: u64 = 2 << 20;
        let (tx1, rx1) = channel(4096).unwrap();
        let (tx2, rx2) = channel(8192).unwrap();
        let writer = thread::spawn(move || {
            let mut w = BufWriter::with_capacity(1000, tx1);
            let mut rng = Rng::new(3);
            let mut pos = 0u64;
            while pos < TOTAL {
                let k = (1 + rng.up_to(300)).min((TOTAL - pos) as usize);
                w.write_all(&pat_vec(pos, k)).unwrap();
                pos += k as u64;
            }
            w.flush().unwrap();
            // dropping the BufWriter drops the producer: end of stream
        });
        let relay = thread::spawn(move || {
            let mut r = BufReader::with_capacity(777, rx1);
            let mut w = tx2;
            io::copy(&mut r, &mut w).unwrap()
        });
        let mut rx2 = rx2;
        let mut all = Vec::new();
        rx2.read_to_end(&mut all).unwrap();
        writer.join().unwrap();
        assert_eq!(relay.join().unwrap(), TOTAL, "io::copy's count");
        assert_eq!(all.len() as u64, TOTAL);
        check_at(0, &all);

        // And the bare ends, no wrappers, with read_to_string at the end.
        let (mut tx1, mut rx1) = channel(4096).unwrap();
        let (mut tx2, mut rx2) = channel(4096).unwrap();
        let text: String = (0..50_000).map(|i| format!("{i},")).collect();
        let t2 = text.clone();
        let writer = thread::spawn(move || tx1.write_all(t2.as_bytes()).unwrap());
        let relay = thread::spawn(move || io::copy(&mut rx1, &mut tx2).unwrap());
        let mut s = String::new();
        rx2.read_to_string(&mut s).unwrap();
        writer.join().unwrap();
        assert_eq!(relay.join().unwrap(), text.len() as u64);
        assert!(s == text);
    });
}

/// Errors keep their kind: `BrokenPipe` for every write path once the consumer is gone
/// (also one blocked on a full ring), Ok(0) for a reader blocked when the producer closes.
#[test]
fn std_errors_after_the_peer_closes() {
    bounded("std_errors_after_the_peer_closes", 30, || {
        let (mut tx, rx) = channel(4096).unwrap();
        drop(rx);
        assert_eq!(tx.write(b"a").unwrap_err().kind(), ErrorKind::BrokenPipe);
        assert_eq!(tx.write_all(b"abc").unwrap_err().kind(), ErrorKind::BrokenPipe);
        assert_eq!(tx.write_vectored(&[IoSlice::new(b"a")]).unwrap_err().kind(), ErrorKind::BrokenPipe);
        assert_eq!(write!(tx, "{}", 5).unwrap_err().kind(), ErrorKind::BrokenPipe);
        assert_eq!(tx.write(b"a").unwrap_err().kind(), ErrorKind::BrokenPipe, "not sticky");
        // flush "has nothing to do": it must not panic, whatever it answers.
        let _ = tx.flush();

        // A writer blocked on a full ring learns of the consumer's drop.
        let (mut tx, rx) = channel(4096).unwrap();
        tx.write_all(&[1; 4096]).unwrap();
        let (res_tx, res_rx) = mpsc::channel();
        let w = thread::spawn(move || res_tx.send(tx.write_all(&[2; 100])).unwrap());
        thread::sleep(Duration::from_millis(100));
        assert!(res_rx.try_recv().is_err(), "write on a full ring returned early");
        drop(rx);
        let r = res_rx.recv_timeout(Duration::from_secs(5)).expect("blocked writer not woken by the consumer's drop");
        assert_eq!(r.unwrap_err().kind(), ErrorKind::BrokenPipe);
        w.join().unwrap();

        // A reader blocked on an empty ring learns of the producer's drop: Ok(0).
        let (tx, mut rx) = channel(4096).unwrap();
        let (res_tx, res_rx) = mpsc::channel();
        let r = thread::spawn(move || {
            let mut v = Vec::new();
            res_tx.send(rx.read_to_end(&mut v).map(|n| (n, v))).unwrap();
        });
        thread::sleep(Duration::from_millis(100));
        drop(tx);
        let (n, v) = res_rx.recv_timeout(Duration::from_secs(5)).expect("blocked reader not woken").unwrap();
        assert_eq!((n, v.len()), (0, 0));
        r.join().unwrap();
    });
}

/// A shared ring whose producer, a forked child, wrote the first `n` bytes of the stream and
/// exited without closing (its `Drop` never runs).
fn ring_whose_producer_died(n: usize) -> mirror_ring::SharedRing {
    let ring = RingOptions::new().capacity(16384).shared().unwrap();
    let mut child = spawn_child(|| {
        let mut tx = ring.clone().into_producer().unwrap();
        tx.write_all(&pat_vec(0, n)).unwrap();
        std::mem::forget(tx);
        0 // _exit: no close
    });
    assert_eq!(child.wait_within(Duration::from_secs(10)), 0);
    ring
}

/// A forked producer that dies without closing (its `Drop` never runs): the reader gets every
/// committed byte, then `UnexpectedEof` (documented: "a crash is not a clean end of stream"),
/// and keeps getting it, never an Ok(0) that generic code would take for a clean end.
#[test]
fn std_reader_after_producer_death_never_sees_clean_eof() {
    const N: usize = 10_000;
    let ring = ring_whose_producer_died(N);
    let mut rx = ring.into_consumer().unwrap();
    let (res_tx, res_rx) = mpsc::channel();
    let t = thread::spawn(move || {
        let mut all = Vec::new();
        let r = rx.read_to_end(&mut all).map_err(|e| e.kind());
        let again = rx.read(&mut [0; 8]).map_err(|e| e.kind());
        let fill = rx.fill_buf().map(|b| b.len()).map_err(|e| e.kind());
        let mut s = String::new();
        let line = rx.read_line(&mut s).map_err(|e| e.kind());
        res_tx.send((all, r, again, fill, line)).unwrap();
    });
    let (all, r, again, fill, line) =
        res_rx.recv_timeout(Duration::from_secs(10)).expect("reader of a dead producer hangs");
    t.join().unwrap();
    assert_eq!(all.len(), N, "committed bytes lost");
    check_at(0, &all);
    assert_eq!(r, Err(ErrorKind::UnexpectedEof), "read_to_end after the producer's death");
    assert_eq!(again, Err(ErrorKind::UnexpectedEof), "a read after the death error");
    assert_eq!(fill, Err(ErrorKind::UnexpectedEof), "fill_buf after the death error");
    assert_eq!(line, Err(ErrorKind::UnexpectedEof), "read_line after the death error");
}

/// A forked consumer that dies without closing: `write_all` of more than the ring holds ends
/// with `BrokenPipe` (documented), within a bound.
#[test]
fn std_writer_after_consumer_death_gets_broken_pipe() {
    let ring = RingOptions::new().capacity(4096).shared().unwrap();
    let mut child = spawn_child(|| {
        let rx = ring.clone().into_consumer().unwrap();
        std::mem::forget(rx);
        0
    });
    assert_eq!(child.wait_within(Duration::from_secs(10)), 0);
    let mut tx = ring.into_producer().unwrap();
    let (res_tx, res_rx) = mpsc::channel();
    let t = thread::spawn(move || {
        let r = tx.write_all(&[9; 20_000]).map_err(|e| e.kind());
        let again = tx.write(b"x").map_err(|e| e.kind());
        res_tx.send((r, again)).unwrap();
    });
    let (r, again) = res_rx.recv_timeout(Duration::from_secs(10)).expect("writer to a dead consumer hangs");
    t.join().unwrap();
    assert_eq!(r, Err(ErrorKind::BrokenPipe));
    assert_eq!(again, Err(ErrorKind::BrokenPipe));
}

// ---------------------------------------------------------------------------------------------
// tokio
// ---------------------------------------------------------------------------------------------

/// `AsyncWriteExt::write`/`write_vectored` never Ok(0) for a non-empty buffer; `read` never
/// Ok(0) before the end of the stream (shutdown), and Ok(0) again after it.
#[test]
fn tokio_write_and_read_contracts_over_a_wrapping_stream() {
    on_both_runtimes("tokio_write_and_read_contracts", 60, || async {
        const TOTAL: u64 = 2 << 20;
        let (tx, rx) = channel(4096).unwrap();
        let (mut tx, mut rx) = (tx.into_async().unwrap(), rx.into_async().unwrap());
        let writer = tokio::spawn(async move {
            let mut rng = Rng::new(21);
            let mut pos = 0u64;
            while pos < TOTAL {
                let len = (1 + rng.up_to(9000)).min((TOTAL - pos) as usize);
                let data = pat_vec(pos, len);
                let n = if rng.up_to(3) == 0 && len > 1 {
                    let (a, b) = data.split_at(1 + rng.up_to(len - 2));
                    tx.write_vectored(&[IoSlice::new(&[]), IoSlice::new(a), IoSlice::new(b)]).await.unwrap()
                } else {
                    tx.write(&data).await.unwrap()
                };
                assert!(n > 0 && n <= len, "write of {len} bytes returned Ok({n})");
                pos += n as u64;
            }
            tx.flush().await.unwrap();
            tx.shutdown().await.unwrap();
            tx
        });
        let mut rng = Rng::new(22);
        let mut pos = 0u64;
        loop {
            let mut buf = vec![0u8; 1 + rng.up_to(9000)];
            let n = if rng.up_to(3) == 0 {
                // read_buf appends to what a Vec already holds
                let mut v = b"keep".to_vec();
                let n = rx.read_buf(&mut v).await.unwrap();
                assert_eq!(&v[..4], b"keep");
                assert_eq!(v.len(), 4 + n);
                check_at(pos, &v[4..]);
                n
            } else {
                let n = rx.read(&mut buf).await.unwrap();
                check_at(pos, &buf[..n]);
                n
            };
            if n == 0 {
                break;
            }
            pos += n as u64;
        }
        let _tx = writer.await.unwrap();
        assert_eq!(pos, TOTAL, "AsyncRead returned EOF before the end of the stream");
        for _ in 0..3 {
            assert_eq!(rx.read(&mut [0; 8]).await.unwrap(), 0);
            assert!(rx.fill_buf().await.unwrap().is_empty());
        }
    });
}

/// `read_exact`, `read_to_end`, `read_line`, `lines`, `fill_buf`/`consume` (over-consume
/// clamped), and tokio's `BufReader` around the async consumer.
#[test]
fn tokio_read_helpers() {
    on_both_runtimes("tokio_read_helpers", 60, || async {
        let (tx, rx) = channel(4096).unwrap();
        let (mut tx, mut rx) = (tx.into_async().unwrap(), rx.into_async().unwrap());
        // A read on an empty ring with a live producer is Pending, not EOF.
        let r = tokio::time::timeout(Duration::from_millis(100), rx.read(&mut [0; 4])).await;
        assert!(r.is_err(), "read on an empty ring returned {r:?}");
        let r = tokio::time::timeout(Duration::from_millis(100), rx.fill_buf()).await.map(|r| r.map(|b| b.len()));
        assert!(r.is_err(), "fill_buf on an empty ring returned {r:?}");

        tx.write_all(b"hello world\nsecond").await.unwrap();
        let mut five = [0u8; 5];
        rx.read_exact(&mut five).await.unwrap();
        assert_eq!(&five, b"hello");
        let mut s = String::new();
        assert_eq!(rx.read_line(&mut s).await.unwrap(), 7);
        assert_eq!(s, " world\n");
        let b = rx.fill_buf().await.unwrap();
        assert_eq!(b, b"second");
        std::pin::Pin::new(&mut rx).consume(100); // over-consume: clamped, no panic
        tx.write_all(b"third\n").await.unwrap();
        assert_eq!(rx.fill_buf().await.unwrap(), b"third\n", "over-consume lost or kept bytes");
        std::pin::Pin::new(&mut rx).consume(0);
        assert_eq!(rx.fill_buf().await.unwrap(), b"third\n");
        std::pin::Pin::new(&mut rx).consume(6);

        // read_exact cut short by the close: UnexpectedEof.
        tx.write_all(b"ab").await.unwrap();
        tx.shutdown().await.unwrap();
        let mut buf = [0u8; 3];
        assert_eq!(rx.read_exact(&mut buf).await.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        assert_eq!(rx.read(&mut buf).await.unwrap(), 0);

        // lines and read_to_end through a writer task; BufReader(small) around the consumer.
        const N: usize = 4000;
        let want = expected_lines(N);
        for wrap in [false, true] {
            let (tx, rx) = channel(4096).unwrap();
            let (mut tx, rx) = (tx.into_async().unwrap(), rx.into_async().unwrap());
            let w = want.clone();
            let writer = tokio::spawn(async move {
                for (i, l) in w.iter().enumerate() {
                    tx.write_all(l.as_bytes()).await.unwrap();
                    if i + 1 < w.len() {
                        tx.write_all(b"\n").await.unwrap();
                    }
                }
                drop(tx); // dropping closes too
            });
            let mut got = Vec::new();
            if wrap {
                let mut lines = tokio::io::BufReader::with_capacity(37, rx).lines();
                while let Some(l) = lines.next_line().await.unwrap() {
                    got.push(l);
                }
            } else {
                let mut lines = rx.lines();
                while let Some(l) = lines.next_line().await.unwrap() {
                    got.push(l);
                }
            }
            writer.await.unwrap();
            assert_eq!(got.len(), N, "lines (BufReader: {wrap})");
            assert!(got == want, "lines (BufReader: {wrap}): wrong lines");
        }

        let (tx, rx) = channel(4096).unwrap();
        let (mut tx, mut rx) = (tx.into_async().unwrap(), rx.into_async().unwrap());
        let writer = tokio::spawn(async move {
            tx.write_all(&pat_vec(0, 300_000)).await.unwrap();
            tx.shutdown().await.unwrap();
        });
        let mut all = Vec::new();
        assert_eq!(rx.read_to_end(&mut all).await.unwrap(), 300_000);
        check_at(0, &all);
        writer.await.unwrap();
    });
}

/// `shutdown` closes the ring (the reader sees everything, then EOF); writes after it fail with
/// `BrokenPipe` (documented), flush and a second shutdown succeed; nothing written after the
/// shutdown reaches the reader.
#[test]
fn tokio_shutdown_then_writes() {
    on_both_runtimes("tokio_shutdown_then_writes", 30, || async {
        let (tx, rx) = channel(4096).unwrap();
        let (mut tx, mut rx) = (tx.into_async().unwrap(), rx.into_async().unwrap());
        tx.write_all(b"abc").await.unwrap();
        tx.shutdown().await.unwrap();
        assert_eq!(tx.write(b"d").await.unwrap_err().kind(), ErrorKind::BrokenPipe);
        assert_eq!(tx.write_all(b"efg").await.unwrap_err().kind(), ErrorKind::BrokenPipe);
        tx.flush().await.unwrap();
        tx.shutdown().await.unwrap();
        assert_eq!(tx.get_mut().write(b"h").unwrap_err().kind(), ErrorKind::BrokenPipe);
        let mut all = Vec::new();
        rx.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"abc");
        let mut inner = tx.into_inner();
        assert_eq!(inner.write(b"i").unwrap_err().kind(), ErrorKind::BrokenPipe);
        assert_eq!(inner.try_write(b"i").unwrap_err().kind(), ErrorKind::BrokenPipe);
        drop(inner);
        assert_eq!(rx.read(&mut [0; 4]).await.unwrap(), 0);
    });
}

/// `tokio::io::copy` and `copy_buf` between rings, and `tokio::io::split` of a `join`ed pair.
#[test]
fn tokio_copy_copy_buf_and_split() {
    on_both_runtimes("tokio_copy_copy_buf_and_split", 60, || async {
        const TOTAL: u64 = 1 << 20;
        let (tx1, rx1) = channel(4096).unwrap();
        let (tx2, rx2) = channel(8192).unwrap();
        let (tx3, rx3) = channel(4096).unwrap();
        let (mut tx1, mut rx1) = (tx1.into_async().unwrap(), rx1.into_async().unwrap());
        let (mut tx2, mut rx2) = (tx2.into_async().unwrap(), rx2.into_async().unwrap());
        let (mut tx3, mut rx3) = (tx3.into_async().unwrap(), rx3.into_async().unwrap());
        let writer = tokio::spawn(async move {
            let mut rng = Rng::new(8);
            let mut pos = 0u64;
            while pos < TOTAL {
                let k = (1 + rng.up_to(5000)).min((TOTAL - pos) as usize);
                tx1.write_all(&pat_vec(pos, k)).await.unwrap();
                pos += k as u64;
            }
            tx1.shutdown().await.unwrap();
        });
        let copy = tokio::spawn(async move {
            let n = tokio::io::copy(&mut rx1, &mut tx2).await.unwrap();
            tx2.shutdown().await.unwrap();
            n
        });
        let copy_buf = tokio::spawn(async move {
            let n = tokio::io::copy_buf(&mut rx2, &mut tx3).await.unwrap();
            tx3.shutdown().await.unwrap();
            n
        });
        let mut all = Vec::new();
        rx3.read_to_end(&mut all).await.unwrap();
        writer.await.unwrap();
        assert_eq!(copy.await.unwrap(), TOTAL, "copy's count");
        assert_eq!(copy_buf.await.unwrap(), TOTAL, "copy_buf's count");
        assert_eq!(all.len() as u64, TOTAL);
        check_at(0, &all);

        // split of a joined (consumer, producer) pair: an echo over two rings.
        let (a_tx, a_rx) = channel(4096).unwrap(); // client -> server
        let (b_tx, b_rx) = channel(4096).unwrap(); // server -> client
        let server = tokio::io::join(a_rx.into_async().unwrap(), b_tx.into_async().unwrap());
        let (mut sr, mut sw) = tokio::io::split(server);
        let echo = tokio::spawn(async move {
            let n = tokio::io::copy(&mut sr, &mut sw).await.unwrap();
            sw.shutdown().await.unwrap();
            n
        });
        let client = tokio::io::join(b_rx.into_async().unwrap(), a_tx.into_async().unwrap());
        let (mut cr, mut cw) = tokio::io::split(client);
        let sender = tokio::spawn(async move {
            cw.write_all(&pat_vec(0, 200_000)).await.unwrap();
            cw.shutdown().await.unwrap();
        });
        let mut back = Vec::new();
        cr.read_to_end(&mut back).await.unwrap();
        sender.await.unwrap();
        assert_eq!(echo.await.unwrap(), 200_000);
        assert_eq!(back.len(), 200_000);
        check_at(0, &back);
    });
}

/// `tokio::io::copy_bidirectional` between two joined pairs: on EOF from one side it shuts the
/// other side's writer down, which must reach the far reader as EOF.
#[test]
fn tokio_copy_bidirectional_propagates_shutdown() {
    on_both_runtimes("tokio_copy_bidirectional", 60, || async {
        let (c1_tx, c1_rx) = channel(4096).unwrap(); // client -> proxy
        let (c2_tx, c2_rx) = channel(4096).unwrap(); // proxy -> client
        let (s1_tx, s1_rx) = channel(4096).unwrap(); // proxy -> server
        let (s2_tx, s2_rx) = channel(4096).unwrap(); // server -> proxy
        let mut a = tokio::io::join(c1_rx.into_async().unwrap(), c2_tx.into_async().unwrap());
        let mut b = tokio::io::join(s2_rx.into_async().unwrap(), s1_tx.into_async().unwrap());
        let proxy = tokio::spawn(async move { tokio::io::copy_bidirectional(&mut a, &mut b).await.unwrap() });
        let (mut s_in, mut s_out) = (s1_rx.into_async().unwrap(), s2_tx.into_async().unwrap());
        let server = tokio::spawn(async move {
            let n = tokio::io::copy(&mut s_in, &mut s_out).await.unwrap();
            s_out.shutdown().await.unwrap();
            n
        });
        let (mut c_out, mut c_in) = (c1_tx.into_async().unwrap(), c2_rx.into_async().unwrap());
        let client = tokio::spawn(async move {
            c_out.write_all(&pat_vec(0, 300_000)).await.unwrap();
            c_out.shutdown().await.unwrap();
        });
        let mut back = Vec::new();
        c_in.read_to_end(&mut back).await.unwrap();
        client.await.unwrap();
        assert_eq!(server.await.unwrap(), 300_000);
        assert_eq!(proxy.await.unwrap(), (300_000, 300_000));
        check_at(0, &back);
    });
}

/// Cancellation of reads: `read`, `fill_buf` and `read_u8` futures dropped mid-wait (by
/// `select!` against a short sleep, or `timeout`) lose no byte and duplicate none, against a
/// bursty blocking producer; every byte arrives in order.
#[test]
fn tokio_cancelled_reads_lose_and_duplicate_nothing() {
    on_both_runtimes("tokio_cancelled_reads", 90, || async {
        const TOTAL: u64 = 1 << 20;
        let (mut tx, rx) = channel(4096).unwrap();
        let writer = thread::spawn(move || {
            let mut rng = Rng::new(31);
            let mut pos = 0u64;
            while pos < TOTAL {
                let k = (1 + rng.up_to(3000)).min((TOTAL - pos) as usize);
                tx.write_all(&pat_vec(pos, k)).unwrap();
                pos += k as u64;
                if rng.up_to(4) == 0 {
                    thread::sleep(Duration::from_micros(rng.up_to(1500) as u64));
                }
            }
        });
        let mut rx = rx.into_async().unwrap();
        let mut rng = Rng::new(32);
        let mut pos = 0u64;
        let mut cancelled = 0u32;
        loop {
            let wait = Duration::from_micros(rng.up_to(400) as u64);
            match rng.up_to(2) {
                0 => {
                    let mut buf = vec![0u8; 1 + rng.up_to(5000)];
                    tokio::select! {
                        r = rx.read(&mut buf) => {
                            let n = r.unwrap();
                            if n == 0 { break; }
                            check_at(pos, &buf[..n]);
                            pos += n as u64;
                        }
                        _ = tokio::time::sleep(wait) => cancelled += 1,
                    }
                }
                1 => match tokio::time::timeout(wait, rx.fill_buf()).await {
                    Ok(r) => {
                        let b = r.unwrap();
                        if b.is_empty() {
                            break;
                        }
                        let take = 1 + rng.up_to(b.len() - 1);
                        check_at(pos, &b[..take]);
                        pos += take as u64;
                        std::pin::Pin::new(&mut rx).consume(take);
                    }
                    Err(_) => cancelled += 1,
                },
                _ => match tokio::time::timeout(wait, rx.read_u8()).await {
                    Ok(Ok(b)) => {
                        check_at(pos, &[b]);
                        pos += 1;
                    }
                    Ok(Err(e)) if e.kind() == ErrorKind::UnexpectedEof => break,
                    Ok(Err(e)) => panic!("{e}"),
                    Err(_) => cancelled += 1,
                },
            }
        }
        writer.join().unwrap();
        assert_eq!(pos, TOTAL, "bytes lost ({cancelled} cancellations)");
        eprintln!("tokio_cancelled_reads: {cancelled} cancellations");
    });
}

/// Cancellation of writes: `write` futures dropped mid-wait (ring full) commit nothing; every
/// completed write is counted once; the reader gets exactly the stream.
#[test]
fn tokio_cancelled_writes_lose_and_duplicate_nothing() {
    on_both_runtimes("tokio_cancelled_writes", 90, || async {
        const TOTAL: u64 = 1 << 20;
        let (tx, mut rx) = channel(4096).unwrap();
        let reader = thread::spawn(move || {
            let mut rng = Rng::new(41);
            let mut pos = 0u64;
            let mut buf = vec![0u8; 6000];
            loop {
                let k = 1 + rng.up_to(5999);
                let n = rx.read(&mut buf[..k]).unwrap();
                if n == 0 {
                    break;
                }
                check_at(pos, &buf[..n]);
                pos += n as u64;
                if rng.up_to(4) == 0 {
                    thread::sleep(Duration::from_micros(rng.up_to(1500) as u64));
                }
            }
            pos
        });
        let mut tx = tx.into_async().unwrap();
        let mut rng = Rng::new(42);
        let mut pos = 0u64;
        let mut cancelled = 0u32;
        while pos < TOTAL {
            let k = (1 + rng.up_to(6000)).min((TOTAL - pos) as usize);
            let data = pat_vec(pos, k);
            let wait = Duration::from_micros(rng.up_to(400) as u64);
            tokio::select! {
                r = tx.write(&data) => {
                    let n = r.unwrap();
                    assert!(n > 0 && n <= k);
                    pos += n as u64;
                }
                _ = tokio::time::sleep(wait) => cancelled += 1,
            }
        }
        tx.shutdown().await.unwrap();
        let got = tokio::task::spawn_blocking(move || reader.join().unwrap()).await.unwrap();
        assert_eq!(got, TOTAL, "reader saw a different stream length ({cancelled} cancellations)");
        eprintln!("tokio_cancelled_writes: {cancelled} cancellations");
    });
}

/// A read cancelled while parked on one runtime; the end then moves to another runtime (the
/// first one dropped), and to a blocking thread via `into_inner`: later calls are woken and see
/// every byte in order (the leftover registration does not swallow their wake-up).
#[test]
fn tokio_cancelled_read_then_end_moves_on() {
    bounded("tokio_cancelled_read_then_end_moves_on", 30, || {
        let (mut tx, rx) = channel(4096).unwrap();
        let rx = rx.into_async().unwrap();
        let rt1 = current_thread();
        let rx = rt1.block_on(async {
            tokio::spawn(async move {
                let mut rx = rx;
                let r = tokio::time::timeout(Duration::from_millis(50), rx.read(&mut [0; 4])).await;
                assert!(r.is_err(), "empty ring read returned {r:?}");
                rx
            })
            .await
            .unwrap()
        });
        drop(rt1);
        // Another runtime, another task: woken by a write from a thread.
        let rt2 = multi_thread();
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            tx.write_all(b"ab").unwrap();
            tx
        });
        let rx = rt2.block_on(async {
            tokio::spawn(async move {
                let mut rx = rx;
                let mut buf = [0u8; 2];
                tokio::time::timeout(Duration::from_secs(5), rx.read_exact(&mut buf))
                    .await
                    .expect("read after a cancelled park, on another runtime, never woken")
                    .unwrap();
                assert_eq!(&buf, b"ab");
                // cancel once more, parked, then hand the end to a blocking thread
                let r = tokio::time::timeout(Duration::from_millis(30), rx.read(&mut [0; 4])).await;
                assert!(r.is_err());
                rx
            })
            .await
            .unwrap()
        });
        let mut tx = writer.join().unwrap();
        let mut rx = rx.into_inner();
        let (res_tx, res_rx) = mpsc::channel();
        let r = thread::spawn(move || {
            let mut buf = [0u8; 3];
            res_tx.send(rx.read_exact(&mut buf).map(|()| buf)).unwrap();
            rx
        });
        thread::sleep(Duration::from_millis(50));
        tx.write_all(b"cde").unwrap();
        let got = res_rx.recv_timeout(Duration::from_secs(5)).expect("blocking read after into_inner not woken");
        assert_eq!(&got.unwrap(), b"cde");
        let _rx = r.join().unwrap();
        drop(rt2);
    });
}

/// The same for a write cancelled while parked on a full ring, then the end moved to another
/// task, and a parked writer woken by the consumer's drop (`BrokenPipe`); polls after an error
/// do not panic and keep the kind.
#[test]
fn tokio_cancelled_write_then_errors_stay() {
    on_both_runtimes("tokio_cancelled_write_then_errors_stay", 30, || async {
        let (tx, mut rx) = channel(4096).unwrap();
        let mut tx = tx.into_async().unwrap();
        tx.write_all(&pat_vec(0, 4096)).await.unwrap();
        let r = tokio::time::timeout(Duration::from_millis(50), tx.write(&pat_vec(4096, 10))).await;
        assert!(r.is_err(), "write to a full ring returned {r:?}");
        let mut tx = tokio::spawn(async move {
            // moved to another task: a write parks there and is woken by the reader below
            let n = tokio::time::timeout(Duration::from_secs(5), tx.write(&pat_vec(4096, 10)))
                .await
                .expect("write after a cancelled park never woken")
                .unwrap();
            assert!(n > 0);
            (tx, n)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut buf = vec![0u8; 4096];
        let got = tokio::task::spawn_blocking(move || {
            rx.read_exact(&mut buf).unwrap();
            check_at(0, &buf);
            rx
        })
        .await
        .unwrap();
        let (mut tx, n) = (&mut tx).await.unwrap();
        let mut rest = vec![0u8; n];
        let mut rx = got;
        rx.read_exact(&mut rest).unwrap();
        check_at(4096, &rest);
        // Fill the ring again, park a writer, drop the consumer from a thread.
        tx.write_all(&vec![0; 4096]).await.unwrap();
        let dropper = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            drop(rx);
        });
        let r = tokio::time::timeout(Duration::from_secs(5), tx.write(b"x"))
            .await
            .expect("parked writer not woken by the drop");
        assert_eq!(r.unwrap_err().kind(), ErrorKind::BrokenPipe);
        dropper.join().unwrap();
        for _ in 0..3 {
            assert_eq!(tx.write(b"x").await.unwrap_err().kind(), ErrorKind::BrokenPipe);
        }
        let _ = tx.flush().await;
        let _ = tx.shutdown().await;
        let _ = tx.shutdown().await;
        assert!(tx.write(b"x").await.is_err());
    });
}

/// Parked readers are woken by every kind of close: a `shutdown` from another task, a blocking
/// producer's drop on a thread; both read Ok(0).
#[test]
fn tokio_parked_reader_woken_by_close() {
    on_both_runtimes("tokio_parked_reader_woken_by_close", 30, || async {
        let (tx, rx) = channel(4096).unwrap();
        let (mut tx, mut rx) = (tx.into_async().unwrap(), rx.into_async().unwrap());
        let closer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.shutdown().await.unwrap();
            tx // kept alive: the shutdown alone must end the stream
        });
        let n =
            tokio::time::timeout(Duration::from_secs(5), rx.read(&mut [0; 8])).await.expect("not woken by shutdown");
        assert_eq!(n.unwrap(), 0);
        let _tx = closer.await.unwrap();

        let (tx, rx) = channel(4096).unwrap();
        let mut rx = rx.into_async().unwrap();
        let dropper = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            drop(tx);
        });
        let b = tokio::time::timeout(Duration::from_secs(5), rx.fill_buf()).await.expect("not woken by the drop");
        assert!(b.unwrap().is_empty());
        dropper.join().unwrap();
    });
}

/// A forked producer that dies without closing: an async reader gets every committed byte,
/// then `UnexpectedEof` (not EOF), and polls after that error keep it and do not panic.
#[test]
fn tokio_reader_after_producer_death() {
    const N: usize = 10_000;
    let ring = ring_whose_producer_died(N);
    let rx = ring.into_consumer().unwrap();
    bounded("tokio_reader_after_producer_death", 20, move || {
        current_thread().block_on(async move {
            let mut rx = rx.into_async().unwrap();
            let mut all = Vec::new();
            let e = rx.read_to_end(&mut all).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{e}");
            assert_eq!(all.len(), N);
            check_at(0, &all);
            for _ in 0..3 {
                assert_eq!(rx.read(&mut [0; 8]).await.unwrap_err().kind(), ErrorKind::UnexpectedEof);
                assert_eq!(rx.fill_buf().await.unwrap_err().kind(), ErrorKind::UnexpectedEof);
            }
            let mut lines = rx.lines();
            assert_eq!(lines.next_line().await.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        })
    });
}

/// A forked consumer that dies without closing: an async `write_all` of more than the ring
/// holds ends with `BrokenPipe` within a bound; later polls keep the kind.
#[test]
fn tokio_writer_after_consumer_death() {
    let ring = RingOptions::new().capacity(4096).shared().unwrap();
    let mut child = spawn_child(|| {
        std::mem::forget(ring.clone().into_consumer().unwrap());
        0
    });
    assert_eq!(child.wait_within(Duration::from_secs(10)), 0);
    let tx = ring.into_producer().unwrap();
    bounded("tokio_writer_after_consumer_death", 20, move || {
        multi_thread().block_on(async move {
            tokio::spawn(async move {
                let mut tx = tx.into_async().unwrap();
                let t0 = Instant::now();
                let e = tx.write_all(&[1; 20_000]).await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::BrokenPipe, "{e}");
                assert!(t0.elapsed() < Duration::from_secs(10));
                assert_eq!(tx.write(b"x").await.unwrap_err().kind(), ErrorKind::BrokenPipe);
                let _ = tx.flush().await;
                let _ = tx.shutdown().await;
            })
            .await
            .unwrap()
        })
    });
}

// ---------------------------------------------------------------------------------------------
// wakers, foreign executors, rings between processes
// ---------------------------------------------------------------------------------------------

struct CountWaker {
    count: std::sync::atomic::AtomicUsize,
    thread: thread::Thread,
}

impl std::task::Wake for CountWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref()
    }
    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.thread.unpark();
    }
}

fn count_waker() -> (std::sync::Arc<CountWaker>, std::task::Waker) {
    let w = std::sync::Arc::new(CountWaker { count: Default::default(), thread: thread::current() });
    (w.clone(), std::task::Waker::from(w))
}

fn wakes(w: &CountWaker) -> usize {
    w.count.load(std::sync::atomic::Ordering::SeqCst)
}

/// A minimal executor outside any runtime (no coop budget): polls on this thread, parks between.
fn block_on<F: std::future::Future>(f: F, limit: Duration) -> F::Output {
    let (_w, waker) = count_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    let end = Instant::now() + limit;
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        let now = Instant::now();
        assert!(now < end, "future not ready within {limit:?}: a lost wake-up");
        thread::park_timeout(end - now);
    }
}

/// tokio's contract: after `Pending`, only the waker of the most recent poll must be woken.
/// A read polled with waker A, then with waker B (as `select!`/`FuturesUnordered` may), must
/// wake B when bytes arrive; the same for a write on a full ring. Thread rings (direct wake)
/// and rings between processes (helper thread), spin budget zero (parks at once).
#[test]
fn wake_goes_to_the_most_recent_waker() {
    bounded("wake_goes_to_the_most_recent_waker", 30, || {
        for shared in [false, true] {
            let mut opts = RingOptions::new();
            let opts = opts.capacity(4096).spin_budget(Duration::ZERO);
            let (mut tx, rx) = if shared {
                let ring = opts.shared().unwrap();
                (ring.clone().into_producer().unwrap(), ring.into_consumer().unwrap())
            } else {
                opts.build().unwrap()
            };
            let mut rx = rx.into_async().unwrap();
            let mut buf = [0u8; 8];
            {
                let mut fut = std::pin::pin!(rx.read(&mut buf));
                let (a, wa) = count_waker();
                let (b, wb) = count_waker();
                assert!(fut.as_mut().poll(&mut std::task::Context::from_waker(&wa)).is_pending());
                assert!(fut.as_mut().poll(&mut std::task::Context::from_waker(&wb)).is_pending());
                let before_a = wakes(&a);
                let writer = thread::spawn(move || {
                    thread::sleep(Duration::from_millis(30));
                    tx.write_all(b"hi").unwrap();
                    tx
                });
                let t0 = Instant::now();
                while wakes(&b) == 0 {
                    assert!(
                        t0.elapsed() < Duration::from_secs(5),
                        "shared={shared}: the most recent waker (B) was never woken (A: {} wakes)",
                        wakes(&a) - before_a
                    );
                    thread::sleep(Duration::from_millis(1));
                }
                tx = writer.join().unwrap();
                match fut.as_mut().poll(&mut std::task::Context::from_waker(&wb)) {
                    std::task::Poll::Ready(Ok(2)) => {}
                    other => panic!("shared={shared}: {other:?}"),
                }
                let _ = tx; // keep the producer alive to here
            }
            assert_eq!(&buf[..2], b"hi");
        }
    });
}

/// The async ends under an executor that is not tokio (no runtime, no budget): reads and
/// writes complete, woken by blocking peers on threads, with cancellations in between.
#[test]
fn foreign_executor_reads_and_writes() {
    bounded("foreign_executor_reads_and_writes", 60, || {
        const TOTAL: u64 = 512 << 10;
        let (mut tx, rx) = channel(4096).unwrap();
        let writer = thread::spawn(move || {
            let mut rng = Rng::new(51);
            let mut pos = 0u64;
            while pos < TOTAL {
                let k = (1 + rng.up_to(3000)).min((TOTAL - pos) as usize);
                tx.write_all(&pat_vec(pos, k)).unwrap();
                pos += k as u64;
                if rng.up_to(8) == 0 {
                    thread::sleep(Duration::from_micros(500));
                }
            }
        });
        let mut rx = rx.into_async().unwrap();
        let mut pos = 0u64;
        let mut buf = vec![0u8; 5000];
        let mut rng = Rng::new(52);
        loop {
            if rng.up_to(5) == 0 {
                // poll once and drop: a cancellation under a foreign executor
                let (_w, waker) = count_waker();
                let mut fut = std::pin::pin!(rx.read(&mut buf));
                if let std::task::Poll::Ready(r) = fut.as_mut().poll(&mut std::task::Context::from_waker(&waker)) {
                    let n = r.unwrap();
                    if n == 0 {
                        break;
                    }
                    check_at(pos, &buf[..n]);
                    pos += n as u64;
                }
                continue;
            }
            let n = block_on(rx.read(&mut buf), Duration::from_secs(10)).unwrap();
            if n == 0 {
                break;
            }
            check_at(pos, &buf[..n]);
            pos += n as u64;
        }
        writer.join().unwrap();
        assert_eq!(pos, TOTAL);

        let (tx, mut rx) = channel(4096).unwrap();
        let reader = thread::spawn(move || {
            let mut all = Vec::new();
            rx.read_to_end(&mut all).unwrap();
            all
        });
        let mut tx = tx.into_async().unwrap();
        block_on(tx.write_all(&pat_vec(0, TOTAL as usize)), Duration::from_secs(20)).unwrap();
        block_on(tx.shutdown(), Duration::from_secs(5)).unwrap();
        let all = reader.join().unwrap();
        assert_eq!(all.len() as u64, TOTAL);
        check_at(0, &all);
    });
}

/// Cancellations against a peer in another process (the helper-thread wake path), spin budget
/// zero so that most cancellations hit a parked end: nothing lost, nothing duplicated.
#[test]
fn tokio_cancelled_reads_against_a_forked_producer() {
    const TOTAL: u64 = 512 << 10;
    let ring = RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).shared().unwrap();
    let mut child = spawn_child(|| {
        let mut tx = ring.clone().into_producer().unwrap();
        let mut rng = Rng::new(61);
        let mut pos = 0u64;
        while pos < TOTAL {
            let k = (1 + rng.up_to(3000)).min((TOTAL - pos) as usize);
            if tx.write_all(&pat_vec(pos, k)).is_err() {
                return 3;
            }
            pos += k as u64;
            if rng.up_to(4) == 0 {
                thread::sleep(Duration::from_micros(rng.up_to(2000) as u64));
            }
        }
        0
    });
    let rx = ring.into_consumer().unwrap();
    let got = bounded("tokio_cancelled_reads_against_a_forked_producer", 60, move || {
        multi_thread().block_on(async move {
            tokio::spawn(async move {
                let mut rx = rx.into_async().unwrap();
                let mut rng = Rng::new(62);
                let mut pos = 0u64;
                let mut buf = vec![0u8; 5000];
                loop {
                    let wait = Duration::from_micros(rng.up_to(600) as u64);
                    if let Ok(r) = tokio::time::timeout(wait, rx.read(&mut buf)).await {
                        let n = r.unwrap();
                        if n == 0 {
                            break;
                        }
                        check_at(pos, &buf[..n]);
                        pos += n as u64;
                    }
                }
                pos
            })
            .await
            .unwrap()
        })
    });
    assert_eq!(child.wait_within(Duration::from_secs(10)), 0);
    assert_eq!(got, TOTAL);
}

/// Back and forth between async and blocking on both ends, each side parking in turn: an
/// async read parked (and one cancelled) then `into_inner` and a blocking read parked, then
/// `into_async` again, many times; the same for the writer through `get_mut` and `into_inner`.
/// Every park is woken; no byte is lost or repeated.
#[test]
fn switching_between_async_and_blocking_keeps_wakeups() {
    bounded("switching_between_async_and_blocking", 60, || {
        let (tx, rx) = RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).build().unwrap();
        let rt = current_thread();
        // writer: a thread writing one byte per request, after a pause (so the reader parks)
        let (req_tx, req_rx) = mpsc::channel::<u64>();
        let writer = thread::spawn(move || {
            let mut tx = tx;
            for pos in req_rx {
                thread::sleep(Duration::from_millis(2));
                tx.write_all(&[pat(pos)]).unwrap();
            }
        });
        let mut rx = rx;
        for round in 0..60u64 {
            let mut arx = rx.into_async().unwrap();
            let pos = 2 * round;
            rt.block_on(async {
                // a cancelled park first
                let r = tokio::time::timeout(Duration::from_micros(200), arx.read(&mut [0; 1])).await;
                assert!(r.is_err());
                req_tx.send(pos).unwrap();
                let b = tokio::time::timeout(Duration::from_secs(5), arx.read_u8())
                    .await
                    .expect("async read not woken")
                    .unwrap();
                assert_eq!(b, pat(pos), "round {round}");
                // a cancelled park again, left behind for the blocking read below
                let r = tokio::time::timeout(Duration::from_micros(200), arx.read(&mut [0; 1])).await;
                assert!(r.is_err());
            });
            rx = arx.into_inner();
            req_tx.send(pos + 1).unwrap();
            let (res_tx, res_rx) = mpsc::channel();
            let t = thread::spawn(move || {
                let mut b = [0u8; 1];
                let r = rx.read_exact(&mut b);
                res_tx.send(r.map(|()| b[0])).unwrap();
                rx
            });
            let b = res_rx.recv_timeout(Duration::from_secs(5)).expect("blocking read after into_inner not woken");
            assert_eq!(b.unwrap(), pat(pos + 1), "round {round}");
            rx = t.join().unwrap();
        }
        drop(req_tx);
        writer.join().unwrap();
        assert_eq!(rx.read(&mut [0; 1]).unwrap(), 0);

        // The writer side: a cancelled async write on a full ring, then blocking writes through
        // get_mut (try_write) and into_inner (write_all), woken by a slow reader.
        let (tx, mut rx) = RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).build().unwrap();
        let reader = thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 700];
            loop {
                thread::sleep(Duration::from_millis(1));
                let n = rx.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n]);
            }
            all
        });
        let mut tx = tx;
        let mut pos = 0u64;
        for round in 0..20u64 {
            let mut atx = tx.into_async().unwrap();
            let async_end = round * 20_000 + 15_000;
            pos = rt.block_on(async {
                let mut pos = pos;
                while pos < async_end {
                    let data = pat_vec(pos, 3000.min(async_end - pos) as usize);
                    tokio::select! {
                        r = atx.write(&data) => pos += r.unwrap() as u64,
                        _ = tokio::time::sleep(Duration::from_micros(300)) => {}
                    }
                }
                pos
            });
            // one byte through get_mut (never blocks: WouldBlock is fine)
            if atx.get_mut().try_write(&[pat(pos)]).is_ok() {
                pos += 1;
            }
            tx = atx.into_inner();
            let k = ((round + 1) * 20_000 - pos) as usize;
            tx.write_all(&pat_vec(pos, k)).unwrap();
            pos += k as u64;
        }
        drop(tx);
        let all = reader.join().unwrap();
        assert_eq!(all.len() as u64, pos);
        check_at(0, &all);
    });
}

/// A std relay that writes straight out of one ring's `fill_buf` into another ring, and a
/// loop that feeds a ring's own readable bytes back into it (the slices are disjoint).
#[test]
fn std_fill_buf_slices_written_into_rings() {
    bounded("std_fill_buf_slices_written_into_rings", 30, || {
        const TOTAL: u64 = 1 << 20;
        let (mut tx1, mut rx1) = channel(4096).unwrap();
        let (mut tx2, mut rx2) = channel(4096).unwrap();
        let w = thread::spawn(move || tx1.write_all(&pat_vec(0, TOTAL as usize)).unwrap());
        let relay = thread::spawn(move || {
            let mut moved = 0u64;
            loop {
                let b = rx1.fill_buf().unwrap();
                if b.is_empty() {
                    break;
                }
                let n = tx2.write(b).unwrap();
                assert!(n > 0);
                rx1.consume(n);
                moved += n as u64;
            }
            moved
        });
        let mut all = Vec::new();
        rx2.read_to_end(&mut all).unwrap();
        w.join().unwrap();
        assert_eq!(relay.join().unwrap(), TOTAL);
        check_at(0, &all);

        // self-feeding: the readable bytes written back into the same ring.
        let (mut tx, mut rx) = channel(4096).unwrap();
        tx.write_all(b"0123456789").unwrap();
        for _ in 0..1000 {
            let b = rx.fill_buf().unwrap();
            assert_eq!(b, b"0123456789");
            let n = tx.write(b).unwrap();
            assert_eq!(n, 10);
            rx.consume(10);
        }
    });
}

/// What `flush` answers on the byte producer under an async end that was shut down.
///
/// `impl Write for Producer` says `flush` has nothing to do, and `AsyncProducer` that after
/// `poll_shutdown` its `poll_flush` succeeds; std's `flush` fails only when buffered bytes
/// cannot be written. So the byte producer under a shut async end (`get_mut`, `into_inner`,
/// and a `BufWriter` around it with nothing buffered) flushes with `Ok`, as a producer whose
/// consumer left does. (It failed with `BrokenPipe`: the shut end's generation made every
/// call report the shutdown.)
#[test]
fn flush_of_the_producer_under_a_shut_async_end() {
    let rt = current_thread();
    let (tx, _rx) = channel(4096).unwrap();
    let mut tx = tx.into_async().unwrap();
    rt.block_on(async {
        tx.write_all(b"abc").await.unwrap();
        tx.shutdown().await.unwrap();
        tx.flush().await.unwrap(); // documented: succeeds
    });
    // For comparison: a producer whose consumer is gone flushes fine (nothing is buffered).
    let (mut other, rx2) = channel(4096).unwrap();
    drop(rx2);
    other.flush().unwrap();
    let r = tx.get_mut().flush();
    let mut inner = tx.into_inner();
    let r2 = inner.flush();
    let r3 = BufWriter::new(inner).flush();
    assert!(
        r.is_ok() && r2.is_ok() && r3.is_ok(),
        "Write::flush on the producer under a shut async end: get_mut {r:?}, into_inner {r2:?}, BufWriter {r3:?}"
    );
}

/// Liveness on a current-thread runtime: a task looping over `read`/`fill_buf` of a ring that a
/// fast peer keeps ready must still give the thread back (tokio's budget, as its own I/O does),
/// so another task runs. Bound: the other task runs 20 times within 10 s.
#[test]
fn tokio_always_ready_reader_does_not_starve_other_tasks() {
    bounded("tokio_always_ready_reader_does_not_starve", 30, || {
        let (mut tx, rx) = channel(1 << 16).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let writer = thread::spawn(move || {
            let chunk = vec![7u8; 8192];
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                if tx.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let rt = current_thread();
        rt.block_on(async {
            let mut rx = rx.into_async().unwrap();
            let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let t2 = ticks.clone();
            let ticker = tokio::spawn(async move {
                for _ in 0..20 {
                    tokio::task::yield_now().await;
                    t2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
            let reader = tokio::spawn(async move {
                let t0 = Instant::now();
                let mut buf = vec![0u8; 4096];
                while ticks.load(std::sync::atomic::Ordering::Relaxed) < 20 {
                    assert!(t0.elapsed() < Duration::from_secs(10), "the reader starved the other task");
                    let n = rx.read(&mut buf).await.unwrap();
                    assert!(n > 0);
                    let b = rx.fill_buf().await.unwrap();
                    let k = b.len().min(100);
                    std::pin::Pin::new(&mut rx).consume(k);
                }
                rx
            });
            ticker.await.unwrap();
            let _rx = reader.await.unwrap();
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
    });
}
