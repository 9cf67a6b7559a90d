//! `Producer::read_from` and `Consumer::write_to`: one `read()` into all the contiguous free
//! space, one `write()` of every readable byte; socket and file relays, and readers and
//! writers that fail, lie, or take nothing.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{in_child, watchdog, Pattern};
use mirror_ring::{Consumer, Producer, RingOptions};

fn ring(cap: usize) -> (Producer, Consumer) {
    RingOptions::new().capacity(cap).build().unwrap()
}

/// FNV-1a, for end-to-end checksums.
fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}
const FNV0: u64 = 0xcbf2_9ce4_8422_2325;

/// Moves the ring's cursors to `offset` (less than the capacity) with nothing left in it.
fn at_offset(tx: &mut Producer, rx: &mut Consumer, offset: usize) {
    tx.write_all(&vec![0; offset]).unwrap();
    let mut sink = vec![0; offset];
    rx.read_exact(&mut sink).unwrap();
}

/// Relays `total` bytes from one socket to another through a ring: a thread moves source ->
/// ring with `read_from`, another ring -> sink with `write_to`; checksummed end to end.
fn relay<S: Read + Write + Send + 'static>(
    (mut src_w, mut src_r): (S, S),
    (mut dst_w, mut dst_r): (S, S),
    total: u64,
) -> (u64, u64, u64) {
    let (mut tx, mut rx) = ring(16 << 10);
    let source = std::thread::spawn(move || {
        let pattern = Pattern::new(7);
        let (mut pos, mut h) = (0u64, FNV0);
        while pos < total {
            let n = 5555.min(total - pos) as usize;
            let chunk = pattern.at(pos, n);
            h = fnv(h, chunk);
            src_w.write_all(chunk).unwrap();
            pos += n as u64;
        }
        h // dropping src_w ends the source stream
    });
    let inbound = std::thread::spawn(move || {
        let mut calls = 0u64;
        while tx.read_from(&mut src_r).unwrap() > 0 {
            calls += 1;
        }
        calls // dropping tx closes the ring
    });
    let outbound = std::thread::spawn(move || {
        while rx.write_to(&mut dst_w).unwrap() > 0 {}
        // dropping dst_w ends the sink's stream
    });
    let (mut n, mut h) = (0u64, FNV0);
    let mut buf = vec![0; 9000];
    loop {
        let k = dst_r.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        h = fnv(h, &buf[..k]);
        n += k as u64;
    }
    let sent = source.join().unwrap();
    let calls = inbound.join().unwrap();
    outbound.join().unwrap();
    assert_eq!(n, total, "bytes through the relay");
    (sent, h, calls)
}

#[test]
fn unix_socket_relay_through_the_ring() {
    let _dog = watchdog("unix_socket_relay_through_the_ring", Duration::from_secs(60));
    let (sent, got, calls) = relay(UnixStream::pair().unwrap(), UnixStream::pair().unwrap(), 16 << 20);
    assert_eq!(got, sent, "checksum");
    assert!(calls > 0);
}

#[test]
fn tcp_relay_through_the_ring() {
    let _dog = watchdog("tcp_relay_through_the_ring", Duration::from_secs(60));
    let pair = || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    };
    let (sent, got, _) = relay(pair(), pair(), 16 << 20);
    assert_eq!(got, sent, "checksum");
}

/// A file copied through the ring: `read_from` a file, `write_to` another; the copy is equal.
#[test]
fn file_relay_through_the_ring() {
    let dir = std::env::temp_dir();
    let tag = format!("{}-{:?}", std::process::id(), std::thread::current().id());
    let (src_path, dst_path) = (dir.join(format!("mr-src-{tag}")), dir.join(format!("mr-dst-{tag}")));
    let pattern = Pattern::new(8);
    let len = 3 * 1024 * 1024 + 12345;
    let mut data = Vec::with_capacity(len);
    let mut pos = 0;
    while data.len() < len {
        let n = 100_000.min(len - data.len());
        data.extend_from_slice(pattern.at(pos, n));
        pos += n as u64;
    }
    std::fs::write(&src_path, &data).unwrap();
    let mut src = std::fs::File::open(&src_path).unwrap();
    let mut dst = std::fs::File::create(&dst_path).unwrap();
    let (mut tx, mut rx) = ring(4096);
    at_offset(&mut tx, &mut rx, 1000); // every later region crosses the seam at some point
    loop {
        let n = tx.read_from(&mut src).unwrap();
        if n == 0 {
            break;
        }
        // Drain what is there (a file takes every byte it is given).
        while !rx.is_empty() {
            rx.write_to(&mut dst).unwrap();
        }
    }
    drop(tx);
    assert_eq!(rx.write_to(&mut dst).unwrap(), 0, "end of the ring's stream");
    drop(dst);
    let copy = std::fs::read(&dst_path).unwrap();
    let _ = std::fs::remove_file(&src_path);
    let _ = std::fs::remove_file(&dst_path);
    assert!(copy == data, "the copy differs ({} bytes of {})", copy.len(), data.len());
}

/// What a scripted reader does with the buffer it is lent.
type ReadAnswer = fn(&mut [u8]) -> io::Result<usize>;
/// What a scripted writer does with the buffer it is given.
type WriteAnswer = fn(&[u8]) -> io::Result<usize>;

/// A reader that records the buffers it is lent and answers with a scripted result.
struct Scripted {
    lent: Vec<usize>,
    answer: ReadAnswer,
}

impl Read for Scripted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.lent.push(buf.len());
        (self.answer)(buf)
    }
}

/// One `read()` over all the contiguous free space, also where it crosses the seam; what it
/// read is committed, exactly.
#[test]
fn read_from_lends_all_free_space_in_one_read() {
    let (mut tx, mut rx) = ring(4096);
    let cap = tx.capacity();
    at_offset(&mut tx, &mut rx, cap - 96);
    tx.write_all(b"0123456789").unwrap();
    // The consumer frees 4 more bytes after the producer last looked at its cursor.
    let mut first = [0; 4];
    rx.read_exact(&mut first).unwrap();
    let mut r = Scripted {
        lent: Vec::new(),
        answer: |buf| {
            buf[..5].copy_from_slice(b"hello");
            Ok(5)
        },
    };
    assert_eq!(tx.read_from(&mut r).unwrap(), 5);
    // Free: cap - 6 bytes, from offset cap - 86 across the seam, all lent to one read().
    assert_eq!(r.lent, [cap - 6], "one read over every free byte");
    let mut all = vec![0; 11];
    rx.read_exact(&mut all).unwrap();
    assert_eq!(&all, b"456789hello");
    assert!(rx.is_empty());
}

/// A reader's error passes through with nothing committed; a reader that claims more than it
/// was lent is refused (`InvalidData`) with nothing committed; `Ok(0)` is the source's end.
#[test]
fn failing_and_lying_readers_commit_nothing() {
    let (mut tx, rx) = ring(4096);
    let cap = tx.capacity();
    tx.write_all(b"kept").unwrap();
    let cases: [(ReadAnswer, Option<ErrorKind>); 5] = [
        (
            |buf| {
                buf.fill(1);
                Err(io::Error::from_raw_os_error(libc::ECONNRESET))
            },
            Some(ErrorKind::ConnectionReset),
        ),
        (
            |buf| {
                buf.fill(2);
                Ok(buf.len() + 1)
            },
            Some(ErrorKind::InvalidData),
        ),
        (|_| Ok(usize::MAX), Some(ErrorKind::InvalidData)),
        (|_| Err(ErrorKind::WouldBlock.into()), Some(ErrorKind::WouldBlock)),
        (|_| Ok(0), None),
    ];
    for (i, (answer, want)) in cases.into_iter().enumerate() {
        let mut r = Scripted { lent: Vec::new(), answer };
        match (tx.read_from(&mut r), want) {
            (Err(e), Some(kind)) => {
                assert_eq!(e.kind(), kind, "case {i}: {e}");
                if kind == ErrorKind::ConnectionReset {
                    assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET), "case {i}: the errno is kept");
                }
            }
            (Ok(0), None) => {}
            (other, _) => panic!("case {i}: {other:?}"),
        }
        assert_eq!(rx.len(), 4, "case {i}: something was committed");
        assert_eq!(tx.free(), cap - 4, "case {i}");
    }
    let mut rx = rx;
    let mut got = [0; 4];
    rx.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"kept");
}

/// A writer that records the buffers it is given and answers with a scripted result.
struct Sink {
    given: Vec<usize>,
    taken: Vec<u8>,
    answer: WriteAnswer,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.given.push(buf.len());
        let r = (self.answer)(buf);
        if let Ok(n) = r {
            self.taken.extend_from_slice(&buf[..n.min(buf.len())]);
        }
        r
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One `write()` of every readable byte, also across the seam; a partial write releases
/// exactly what was taken.
#[test]
fn write_to_gives_every_readable_byte_in_one_write() {
    let (mut tx, mut rx) = ring(4096);
    let cap = tx.capacity();
    at_offset(&mut tx, &mut rx, cap - 96);
    let msg: Vec<u8> = (0..300u32).map(|i| i as u8).collect(); // crosses the seam
    tx.write_all(&msg).unwrap();
    let mut w = Sink { given: Vec::new(), taken: Vec::new(), answer: |_| Ok(100) };
    assert_eq!(rx.write_to(&mut w).unwrap(), 100);
    assert_eq!(w.given, [300], "one write of every readable byte");
    assert_eq!(rx.len(), 200, "exactly what the writer took was released");
    // More arrives after the consumer last looked: the next write_to sees it too.
    let more: Vec<u8> = (0..50u8).map(|i| i ^ 0x55).collect();
    tx.write_all(&more).unwrap();
    w.answer = |buf| Ok(buf.len());
    assert_eq!(rx.write_to(&mut w).unwrap(), 250);
    assert_eq!(w.given, [300, 250], "every byte readable now, in one write");
    assert_eq!(&w.taken[..300], &msg[..]);
    assert_eq!(&w.taken[300..], &more[..]);
    drop(tx);
    assert_eq!(rx.write_to(&mut w).unwrap(), 0, "end of stream");
}

/// A writer's error passes through with nothing released; one that claims more than it was
/// given is refused (`InvalidData`); one that takes nothing is `WriteZero`; nothing released.
#[test]
fn failing_and_lying_writers_release_nothing() {
    let (mut tx, mut rx) = ring(4096);
    let cap = tx.capacity();
    tx.write_all(b"precious bytes").unwrap();
    let cases: [(WriteAnswer, ErrorKind); 5] = [
        (|_| Err(io::Error::from_raw_os_error(libc::EPIPE)), ErrorKind::BrokenPipe),
        (|buf| Ok(buf.len() + 1), ErrorKind::InvalidData),
        (|_| Ok(usize::MAX), ErrorKind::InvalidData),
        (|_| Ok(0), ErrorKind::WriteZero),
        (|_| Err(ErrorKind::WouldBlock.into()), ErrorKind::WouldBlock),
    ];
    for (i, (answer, kind)) in cases.into_iter().enumerate() {
        let mut w = Sink { given: Vec::new(), taken: Vec::new(), answer };
        let e = rx.write_to(&mut w).unwrap_err();
        assert_eq!(e.kind(), kind, "case {i}: {e}");
        if kind == ErrorKind::BrokenPipe {
            assert_eq!(e.raw_os_error(), Some(libc::EPIPE), "case {i}: the errno is kept");
        }
        assert_eq!(rx.len(), 14, "case {i}: something was released");
        assert_eq!(tx.free(), cap - 14, "case {i}");
    }
    let mut all = Vec::new();
    assert_eq!(rx.write_to(&mut all).unwrap(), 14);
    assert_eq!(all, b"precious bytes");
}

/// Real non-blocking sockets: a full sink answers `WouldBlock`, passed through with nothing
/// released; an empty source answers `WouldBlock`, nothing committed.
#[test]
fn would_block_sockets_pass_through() {
    let (mut tx, mut rx) = ring(1 << 20);
    let (mut a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    // Fill the socket until it refuses.
    let junk = vec![0u8; 65536];
    while a.write(&junk).is_ok() {}
    tx.write_all(&[5; 1000]).unwrap();
    let e = rx.write_to(&mut a).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    assert_eq!(rx.len(), 1000, "released for a refused write");
    let (_c, mut d) = UnixStream::pair().unwrap();
    d.set_nonblocking(true).unwrap();
    let e = tx.read_from(&mut d).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    assert_eq!(rx.len(), 1000, "committed for a refused read");
    drop(b);
}

/// `read_from` waits for space (blocking) and `write_to` for data; a gone consumer is
/// `BrokenPipe`; a forked child's copy is `Unsupported`.
/// A thread that reads 100 bytes from `rx` after `delay` (freeing room for a waiting
/// producer), then hands `rx` back.
fn read_100_after(mut rx: Consumer, delay: Duration) -> std::thread::JoinHandle<Consumer> {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let mut buf = [0; 100];
        rx.read_exact(&mut buf).unwrap();
        rx
    })
}

#[test]
fn read_from_and_write_to_wait_and_see_the_peer_go() {
    let _dog = watchdog("read_from_and_write_to_wait_and_see_the_peer_go", Duration::from_secs(30));
    let (mut tx, rx) = ring(4096);
    let cap = tx.capacity();
    tx.write_all(&vec![1; cap]).unwrap();
    let drainer = read_100_after(rx, Duration::from_millis(50));
    let mut src: &[u8] = &[2; 500];
    assert_eq!(tx.read_from(&mut src).unwrap(), 100, "read_from waits, then fills the space there is");
    let mut rx = drainer.join().unwrap();
    let writer = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let mut total = 0;
        loop {
            match rx.write_to(&mut sink) {
                Ok(0) => return (total, sink),
                Ok(n) => total += n,
                Err(e) => panic!("{e}"),
            }
        }
    });
    std::thread::sleep(Duration::from_millis(20));
    drop(tx);
    let (total, sink) = writer.join().unwrap();
    assert_eq!(total, cap);
    assert_eq!(&sink[cap - 100..], &[2; 100][..]);

    let (mut tx, rx) = ring(4096);
    drop(rx);
    let e = tx.read_from(&mut &b"x"[..]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BrokenPipe);

    let (mut tx, mut rx) = ring(4096);
    tx.write_all(b"abc").unwrap();
    let status = in_child(|| {
        let a = tx.read_from(&mut &b"x"[..]).unwrap_err().kind() == ErrorKind::Unsupported;
        let b = rx.write_to(&mut Vec::new()).unwrap_err().kind() == ErrorKind::Unsupported;
        if a && b {
            0
        } else {
            1
        }
    });
    assert_eq!(status, 0);
    assert_eq!(rx.len(), 3, "the child's copy released something");
}

/// A reader or writer that counts its calls and otherwise behaves like an endless source / a
/// bottomless sink.
#[derive(Default)]
struct Counting {
    calls: usize,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        buf.fill(9);
        Ok(buf.len())
    }
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.calls += 1;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_timed_transfers_give_up_on_the_ring_and_touch_nothing() {
    let _dog = watchdog("the_timed_transfers_give_up_on_the_ring_and_touch_nothing", Duration::from_secs(30));
    let wait = Duration::from_millis(20);
    let (mut tx, mut rx) = ring(4096);
    let cap = tx.capacity();

    // Empty ring: the writer is never called, nothing is released.
    let mut sink = Counting::default();
    let started = std::time::Instant::now();
    let e = rx.write_to_timeout(&mut sink, wait).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(started.elapsed() >= wait, "gave up early: {:?}", started.elapsed());
    assert_eq!(sink.calls, 0, "the writer was called on an empty ring");

    // Full ring: the reader is never called, nothing is committed.
    let mut source = Counting::default();
    assert_eq!(tx.read_from_timeout(&mut source, wait).unwrap(), cap);
    assert_eq!(source.calls, 1);
    let started = std::time::Instant::now();
    let e = tx.read_from_timeout(&mut source, wait).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(started.elapsed() >= wait, "gave up early: {:?}", started.elapsed());
    assert_eq!(source.calls, 1, "the reader was called on a full ring");
    assert_eq!(rx.len(), cap, "a timed-out read_from committed something");

    // Both go on where they stood.
    assert_eq!(rx.write_to_timeout(&mut sink, wait).unwrap(), cap);
    assert_eq!(rx.len(), 0);
    assert_eq!(tx.free(), cap);

    // A duration too long for the clock waits without a deadline rather than panicking: the
    // data is there, so it returns at once.
    tx.write_all(b"abc").unwrap();
    assert_eq!(rx.write_to_timeout(&mut sink, Duration::MAX).unwrap(), 3);
}

#[test]
fn the_timed_transfers_wake_for_the_peer_and_see_it_go() {
    let _dog = watchdog("the_timed_transfers_wake_for_the_peer_and_see_it_go", Duration::from_secs(30));
    let (mut tx, mut rx) = ring(4096);
    let cap = tx.capacity();
    let bound = Duration::from_secs(10);

    // Data arriving within the timeout is taken.
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        tx.write_all(&[5; 10]).unwrap();
        tx
    });
    let mut sink = Vec::new();
    assert_eq!(rx.write_to_timeout(&mut sink, bound).unwrap(), 10);
    let mut tx = writer.join().unwrap();

    // Room appearing within the timeout is filled.
    tx.write_all(&vec![1; cap]).unwrap();
    let drainer = read_100_after(rx, Duration::from_millis(30));
    let mut src: &[u8] = &[2; 500];
    assert_eq!(tx.read_from_timeout(&mut src, bound).unwrap(), 100);
    let mut rx = drainer.join().unwrap();

    // A close ends the wait: the end of the stream after the rest, a broken pipe for the
    // producer.
    drop(tx);
    let mut total = 0;
    loop {
        match rx.write_to_timeout(&mut sink, bound) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(total, cap - 100 + 100);
    let (mut tx, rx) = ring(4096);
    drop(rx);
    let e = tx.read_from_timeout(&mut &b"x"[..], bound).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BrokenPipe, "{e}");
}
