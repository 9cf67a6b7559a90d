//! The ring between threads: streams, std::io, try_*, grants, blocking, close, misuse.

mod common;

use std::io::{BufRead, ErrorKind, Read, Write};
use std::thread;
use std::time::Duration;

use common::{available, in_child, page_size, scale, seed, thread_cpu_time, Pattern, Rng};
use mirror_ring::{channel, Backend, Consumer, Producer, RingOptions};

/// A lost wake-up would hang a stream: abort the test process (a failure) if one runs for
/// far longer than any healthy run could.
fn watchdog() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        thread::spawn(|| {
            thread::sleep(Duration::from_secs(900 * scale() as u64));
            eprintln!("watchdog: a stream is hung (lost wake-up?)");
            std::process::abort();
        });
    });
}

/// Compares without printing megabytes on failure: names the first differing byte.
fn same(got: &[u8], want: &[u8], backend: Backend, api: &str, pos: u64) {
    if got != want {
        let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        panic!("{backend}: {api} at stream position {pos}: byte {i} differs ({} bytes compared)", got.len());
    }
}

/// Streams `total` bytes through a ring with random chunk sizes, mixing every write and read
/// API, and compares every byte on arrival.
fn stream(backend: Backend, capacity: usize, spin: Duration, total: u64, seed: u64) {
    watchdog();
    let (mut tx, mut rx) = RingOptions::new().capacity(capacity).backend(backend).spin_budget(spin).build().unwrap();
    let pattern = std::sync::Arc::new(Pattern::new(seed));
    let p2 = pattern.clone();
    let writer = thread::spawn(move || {
        let mut rng = Rng::new(seed ^ 1);
        let mut pos = 0u64;
        while pos < total {
            let left = (total - pos) as usize;
            let n = (1 + rng.up_to(65_535)).min(left);
            match rng.up_to(2) {
                0 => tx.write_all(p2.at(pos, n)).unwrap(),
                1 => {
                    let min = n.min(tx.capacity());
                    let mut g = tx.write_grant_blocking(min).unwrap();
                    let k = g.len().min(n);
                    g[..k].copy_from_slice(p2.at(pos, k));
                    g.commit(k).unwrap();
                    pos += k as u64;
                    continue;
                }
                _ => {
                    let k = tx.write_timeout(p2.at(pos, n), Duration::from_secs(30)).unwrap();
                    pos += k as u64;
                    continue;
                }
            }
            pos += n as u64;
        }
        // Dropping tx closes the ring.
    });
    let mut rng = Rng::new(seed ^ 2);
    let mut pos = 0u64;
    let mut buf = vec![0u8; 70_000];
    loop {
        let got = match rng.up_to(3) {
            0 => {
                let n = 1 + rng.up_to(65_535);
                let k = rx.read(&mut buf[..n]).unwrap();
                same(&buf[..k], pattern.at(pos, k), backend, "read", pos);
                k
            }
            1 => {
                let data = rx.fill_buf().unwrap();
                let k = data.len().min(1 + rng.up_to(65_535));
                same(&data[..k], pattern.at(pos, k), backend, "fill_buf", pos);
                rx.consume(k);
                k
            }
            _ => {
                let g = rx.read_grant_timeout(0, Duration::from_secs(30)).unwrap();
                let k = g.len().min(1 + rng.up_to(65_535));
                same(&g[..k], pattern.at(pos, k), backend, "read_grant", pos);
                let empty = g.is_empty();
                g.release(k).unwrap();
                if empty {
                    0
                } else {
                    k
                }
            }
        };
        if got == 0 {
            break;
        }
        pos += got as u64;
    }
    writer.join().unwrap();
    assert_eq!(pos, total, "{backend}: stream ended early");
}

/// Gigabytes through every backend with random chunk sizes on both sides, every byte checked.
#[test]
fn multi_gib_stream_between_threads_on_every_backend() {
    for (i, b) in available().into_iter().enumerate() {
        stream(b, 1 << 20, Duration::from_micros(50), (2u64 << 30) * scale() as u64, seed() + i as u64);
    }
}

/// A tiny ring (one page) and no spinning: nearly every hand-over parks one side on the futex,
/// so a lost wake-up would hang the stream (every blocking call is bounded, so it fails
/// instead).
#[test]
fn tiny_ring_without_spinning_never_loses_a_wakeup() {
    for (i, b) in available().into_iter().enumerate() {
        stream(b, 4096, Duration::ZERO, (16u64 << 20) * scale() as u64, seed() + 100 + i as u64);
    }
}

#[test]
fn capacity_is_rounded_and_reported() {
    // A power of two of at least a page: 8192 where pages are 4 KiB, one page where they are
    // larger; one byte over a page is two pages everywhere.
    let page = page_size();
    let (tx, rx) = channel(5000).unwrap();
    assert_eq!(tx.capacity(), 8192.max(page));
    assert_eq!(rx.capacity(), 8192.max(page));
    let (tx, rx) = channel(page + 1).unwrap();
    assert_eq!(tx.capacity(), 2 * page);
    assert_eq!(rx.capacity(), 2 * page);
    assert_eq!(channel(1).unwrap().0.capacity(), page);
    assert_eq!(channel(0).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(channel(usize::MAX).unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[test]
fn try_calls_would_block_then_end_of_stream() {
    let (mut tx, mut rx) = channel(4096).unwrap();
    let cap = tx.capacity(); // one page
    let mut buf = [0u8; 100];
    assert_eq!(rx.try_read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
    assert_eq!(tx.try_write(&vec![7; cap + 904]).unwrap(), cap);
    assert_eq!(tx.try_write(&[7]).unwrap_err().kind(), ErrorKind::WouldBlock);
    assert_eq!(tx.try_write(&[]).unwrap(), 0, "an empty write is not an error");
    assert_eq!(tx.len(), cap);
    assert_eq!(tx.free(), 0);
    assert_eq!(rx.len(), cap);
    assert_eq!(rx.try_read(&mut buf).unwrap(), 100);
    assert_eq!(tx.free(), 100);
    drop(tx);
    assert!(rx.is_abandoned());
    let mut rest = Vec::new();
    rx.read_to_end(&mut rest).unwrap();
    assert_eq!(rest.len(), cap - 100);
    assert_eq!(rx.try_read(&mut buf).unwrap(), 0, "end of stream is Ok(0)");
    assert_eq!(rx.read(&mut buf).unwrap(), 0);
    assert!(rx.fill_buf().unwrap().is_empty());
    let g = rx.read_grant(0).unwrap();
    assert!(g.is_empty(), "an end-of-stream grant (min 0) is empty");
    drop(g);
    // Never a grant shorter than min: nothing more can come.
    assert_eq!(rx.read_grant(1).unwrap_err().kind(), ErrorKind::UnexpectedEof);
    assert_eq!(rx.read_grant_blocking(1).unwrap_err().kind(), ErrorKind::UnexpectedEof);
}

#[test]
fn writes_after_the_consumer_left_are_broken_pipe() {
    let (mut tx, rx) = channel(4096).unwrap();
    tx.try_write(b"unread").unwrap();
    drop(rx);
    assert!(tx.is_abandoned());
    for r in [tx.try_write(b"x"), tx.write(b"x"), tx.write_timeout(b"x", Duration::from_millis(1))] {
        assert_eq!(r.unwrap_err().kind(), ErrorKind::BrokenPipe);
    }
    assert_eq!(tx.write_grant(1).unwrap_err().kind(), ErrorKind::BrokenPipe);
}

/// A grant made before the consumer left commits without an error (the commit does not look
/// at the consumer); the next call reports the close.
#[test]
fn a_commit_after_the_consumer_left_succeeds_and_the_next_call_reports_it() {
    let (mut tx, rx) = channel(4096).unwrap();
    let mut g = tx.write_grant(4).unwrap();
    g[..4].copy_from_slice(b"late");
    drop(rx);
    g.commit(4).unwrap();
    assert_eq!(tx.try_write(b"x").unwrap_err().kind(), ErrorKind::BrokenPipe);
    assert_eq!(tx.write_grant(1).unwrap_err().kind(), ErrorKind::BrokenPipe);
}

/// A producer whose process died with fewer committed bytes left than a grant asks for: the
/// grant is `UnexpectedEof` saying how many are left (not that everything was read), the bytes
/// stay readable with a smaller `min`, and once they are read the error says so.
#[test]
fn a_grant_after_a_death_says_how_many_bytes_are_left() {
    for backend in available() {
        let ring = RingOptions::new().capacity(4096).backend(backend).shared().unwrap();
        let child_ring = ring.clone();
        let status = in_child(|| {
            let mut tx = child_ring.into_producer().unwrap();
            tx.write_all(b"four").unwrap();
            // Dies without closing: the drop would close the ring cleanly.
            std::mem::forget(tx);
            0
        });
        assert_eq!(status, 0);
        let mut rx = ring.into_consumer().unwrap();
        for err in [rx.read_grant(10).unwrap_err(), rx.read_grant_timeout(10, Duration::from_secs(10)).unwrap_err()] {
            assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{backend}: {err}");
            let msg = err.to_string();
            assert!(msg.contains("4 committed bytes left") && !msg.contains("every"), "{backend}: {msg}");
        }
        let g = rx.read_grant(4).unwrap();
        assert_eq!(&*g, b"four", "{backend}");
        g.release(4).unwrap();
        let err = rx.read_grant(1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{backend}: {err}");
        assert!(err.to_string().contains("every committed byte was read"), "{backend}: {err}");
    }
}

#[test]
fn fill_buf_returns_everything_readable_and_refreshes_each_call() {
    let (mut tx, mut rx) = channel(4096).unwrap();
    let cap = tx.capacity();
    // Put the cursors near the seam (96 bytes before it) so the readable bytes wrap.
    tx.write_all(&vec![0; cap - 96]).unwrap();
    rx.consume_all();
    tx.write_all(b"first ").unwrap();
    assert_eq!(rx.fill_buf().unwrap(), b"first ");
    // Without consuming, new bytes show up on the next call: the cursor is reloaded.
    tx.write_all(&[b'x'; 200]).unwrap();
    let all = rx.fill_buf().unwrap();
    assert_eq!(all.len(), 206, "one slice across the seam");
    assert_eq!(&all[..6], b"first ");
    assert!(all[6..].iter().all(|&b| b == b'x'));
    rx.consume(1_000_000); // clamped to what is readable
    assert_eq!(rx.len(), 0);
    assert_eq!(tx.free(), cap, "nothing was released twice");
}

trait ConsumeAll {
    fn consume_all(&mut self);
}

impl ConsumeAll for Consumer {
    fn consume_all(&mut self) {
        let n = self.len();
        self.consume(n);
    }
}

#[test]
fn grants_are_contiguous_bounded_and_checked() {
    let (mut tx, mut rx) = channel(4096).unwrap();
    let cap = tx.capacity();
    assert_eq!(tx.write_grant(cap + 1).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(rx.read_grant(cap + 1).unwrap_err().kind(), ErrorKind::InvalidInput);
    let mut g = tx.write_grant(10).unwrap();
    assert_eq!(g.len(), cap);
    g[..3].copy_from_slice(b"abc");
    assert_eq!(g.commit(cap + 1).unwrap_err().kind(), ErrorKind::InvalidInput, "commit beyond the grant");
    assert_eq!(rx.len(), 0, "a refused commit publishes nothing");
    let g = tx.write_grant(3).unwrap();
    drop(g); // dropping a grant publishes nothing
    assert_eq!(rx.len(), 0);
    let mut g = tx.write_grant(3).unwrap();
    g[..3].copy_from_slice(b"abc");
    g.commit(3).unwrap();
    assert_eq!(rx.read_grant(4).unwrap_err().kind(), ErrorKind::WouldBlock, "fewer than min readable");
    let g = rx.read_grant(3).unwrap();
    assert_eq!(&*g, b"abc");
    assert_eq!(g.release(4).unwrap_err().kind(), ErrorKind::InvalidInput);
    let g = rx.read_grant(1).unwrap();
    drop(g); // dropping releases nothing: the same bytes come back
    let g = rx.read_grant(1).unwrap();
    assert_eq!(&*g, b"abc");
    g.release(3).unwrap();
    // A write grant near the seam still spans all the free space in one slice.
    let mut g = tx.write_grant(cap).unwrap();
    assert_eq!(g.len(), cap);
    g.fill(9);
    g.commit(cap).unwrap();
    let g = rx.read_grant(cap).unwrap();
    assert!(g.len() == cap && g.iter().all(|&b| b == 9));
    g.release(cap).unwrap();
}

/// A grant lends what this end knows of: asked again with the same `min`, the same bytes
/// (the cache shows enough); asked with the size the caller needs, the peer's cursor is
/// loaded and everything since shows. A parser with an incomplete record, or a writer that
/// needs room for a larger one, asks for what it needs.
#[test]
fn a_grant_asked_for_what_is_needed_sees_the_peers_progress() {
    let (mut tx, mut rx) = channel(4096).unwrap();
    tx.write_all(b"AAAA\nBB").unwrap();
    let g = rx.read_grant_blocking(1).unwrap();
    let line = g.iter().rposition(|&b| b == b'\n').unwrap() + 1;
    g.release(line).unwrap();
    tx.write_all(b"B\n").unwrap(); // completes the line
    assert_eq!(&*rx.read_grant(1).unwrap(), b"BB", "the rest of the grant, as it was seen");
    assert_eq!(&*rx.read_grant(1).unwrap(), b"BB", "the same min, the same view");
    assert_eq!(&*rx.read_grant(3).unwrap(), b"BBB\n", "more than is cached: the head is loaded");

    let (mut tx, mut rx) = channel(4096).unwrap();
    let cap = tx.capacity();
    tx.write_all(&[0; 2000]).unwrap();
    let mut sink = [0; 2000];
    rx.read_exact(&mut sink).unwrap();
    let known = tx.write_grant(1).unwrap().len();
    assert!((cap - 2000..=cap).contains(&known), "{known}");
    assert_eq!(tx.write_grant(known + 1).unwrap().len(), cap, "more than is known: the tail is loaded");
}

#[test]
fn a_blocked_reader_wakes_on_data_and_on_close() {
    for spin in [Duration::ZERO, Duration::from_micros(50)] {
        let (mut tx, mut rx) = RingOptions::new().capacity(4096).spin_budget(spin).build().unwrap();
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 16];
            let n = rx.read(&mut buf).unwrap();
            let first = buf[..n].to_vec();
            let end = rx.read(&mut buf).unwrap();
            (first, end)
        });
        thread::sleep(Duration::from_millis(50)); // let it go to sleep
        tx.write_all(b"wake").unwrap();
        thread::sleep(Duration::from_millis(50));
        drop(tx);
        let (first, end) = reader.join().unwrap();
        assert_eq!(first, b"wake");
        assert_eq!(end, 0, "close must wake the reader with end of stream");
    }
}

#[test]
fn a_blocked_writer_wakes_on_space_and_on_close() {
    // A writer that is never woken fails the test (aborts it, naming it) rather than hanging.
    let _hang = common::watchdog("a blocked writer woken on space and on close", Duration::from_secs(60));
    for spin in [Duration::ZERO, Duration::from_micros(50)] {
        let (mut tx, mut rx) = RingOptions::new().capacity(4096).spin_budget(spin).build().unwrap();
        let cap = tx.capacity();
        tx.write_all(&vec![1; cap]).unwrap();
        let writer = thread::spawn(move || {
            let first = tx.write(&[2; 100]);
            // More than the 100 bytes of room left: blocks until the close.
            let last = tx.write_all(&vec![4; cap]);
            (first.map_err(|e| e.kind()), last.map_err(|e| e.kind()))
        });
        thread::sleep(Duration::from_millis(50));
        let mut buf = [0u8; 200];
        assert_eq!(rx.read(&mut buf).unwrap(), 200);
        thread::sleep(Duration::from_millis(50));
        drop(rx);
        let (first, last) = writer.join().unwrap();
        assert_eq!(first, Ok(100));
        assert_eq!(last, Err(ErrorKind::BrokenPipe), "close must wake the writer with BrokenPipe");
    }
}

#[test]
fn an_end_whose_waits_keep_parking_stops_spinning_its_whole_budget() {
    // A reader that spins 2 ms before it parks, fed by a writer that writes only once the
    // reader's current wait has parked: every spin is in vain, however the threads are
    // scheduled. (A writer on a timer failed the test under load: see the helper.) At
    // the full budget each wait would burn 2 ms, 300 ms in all; halving after every third miss
    // spends 3 x (2 + 1 + 0.5 + ...) = 12 ms, then about a microsecond a wait. The bound is ten
    // times that.
    const WAITS: u32 = 150;
    let _hang = common::watchdog("a reader whose waits keep parking", Duration::from_secs(60));
    let budget = Duration::from_millis(2);
    let (tx, mut rx) = RingOptions::new().capacity(4096).spin_budget(budget).build().unwrap();
    let writer = common::write_each_byte_after_a_park(tx, rx.stats_handle(), WAITS);
    let before = thread_cpu_time();
    for i in 0..WAITS {
        let mut b = [0u8];
        rx.read_exact(&mut b).unwrap();
        assert_eq!(b[0], i as u8);
    }
    let spent = thread_cpu_time() - before;
    writer.join().unwrap();
    let stats = rx.stats();
    assert_eq!(stats.spins, u64::from(WAITS), "every read had to wait: {stats:?}");
    assert!(stats.parks >= u64::from(WAITS), "a spin was served: {stats:?}");
    assert!(spent < Duration::from_millis(120), "{WAITS} waits spent {spent:?} of CPU: {stats:?}");
}

#[test]
fn timeouts_expire_with_timed_out() {
    let (mut tx, mut rx) = RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).build().unwrap();
    let cap = tx.capacity();
    let mut buf = [0u8; 4];
    assert_eq!(rx.read_timeout(&mut buf, Duration::from_millis(20)).unwrap_err().kind(), ErrorKind::TimedOut);
    assert_eq!(rx.read_grant_timeout(1, Duration::from_millis(1)).unwrap_err().kind(), ErrorKind::TimedOut);
    tx.write_all(&vec![0; cap]).unwrap();
    assert_eq!(tx.write_timeout(b"x", Duration::from_millis(20)).unwrap_err().kind(), ErrorKind::TimedOut);
    assert_eq!(tx.write_grant_timeout(1, Duration::from_millis(1)).unwrap_err().kind(), ErrorKind::TimedOut);
    // Nothing was lost or written by the failed calls.
    assert_eq!(rx.len(), cap);
    // An enormous timeout is simply no deadline.
    assert_eq!(rx.read_timeout(&mut buf, Duration::MAX).unwrap(), 4);
}

#[test]
fn ends_are_send_and_debug_shows_fill_not_bytes() {
    fn send<T: Send>() {}
    send::<Producer>();
    send::<Consumer>();
    let (mut tx, rx) = channel(4096).unwrap();
    tx.write_all(b"secret").unwrap();
    let d = format!("{tx:?} {rx:?}");
    let capacity = format!("capacity: {}", 4096.max(page_size()));
    assert!(d.contains(&capacity) && !d.contains("secret"), "{d}");
    let t = thread::spawn(move || tx.write_all(b"!").map(|_| tx));
    let _tx = t.join().unwrap().unwrap();
}

/// An end inherited by a forked child belongs to the parent: the child gets `Unsupported`, and
/// the child's drop does not close the parent's ring.
#[test]
fn ends_used_from_a_forked_child_refuse_and_do_not_close_the_ring() {
    let (tx, rx) = channel(4096).unwrap();
    let (mut tx, mut rx) = (Some(tx), Some(rx));
    let status = in_child(|| {
        let (mut tx, mut rx) = (tx.take().unwrap(), rx.take().unwrap());
        let mut buf = [0u8; 4];
        let w = tx.try_write(b"x").map_err(|e| e.kind());
        let r = rx.try_read(&mut buf).map_err(|e| e.kind());
        drop(tx);
        drop(rx);
        if w == Err(ErrorKind::Unsupported) && r == Err(ErrorKind::Unsupported) {
            0
        } else {
            1
        }
    });
    assert_eq!(status, 0);
    let (mut tx, mut rx) = (tx.unwrap(), rx.unwrap());
    assert!(!tx.is_abandoned() && !rx.is_abandoned(), "the child's drop closed the parent's ring");
    tx.write_all(b"still open").unwrap();
    let mut buf = [0u8; 10];
    rx.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"still open");
}
