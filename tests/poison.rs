//! Poisoned rings and hostile-peer corruption as generic code (std and tokio traits) and the
//! async ends see them.
//!
//! The hostile peer is played in-process: both ends of a shared ring live in this process,
//! and the test stores impossible values straight into the shared header (found from the data
//! pointer of a write grant at position 0: the header is the page before the data), as
//! `tests/hostile.rs` does. Every wait is bounded: a hang is a failure (watchdog).

// The tests play the hostile peer: they write the ring's header themselves.
#![cfg(feature = "tokio")]
#![allow(clippy::disallowed_methods)]

mod common;

use std::future::Future;
use std::io::{BufRead, ErrorKind, Read, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use common::header_offsets::*;
use common::{page_size, stamped_word, watchdog, HeaderWords};
use mirror_ring::{Consumer, Producer, RingOptions, SharedRing};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Liveness bound for one call on a poisoned ring, and for a parked end to notice a forgery
/// made without a wake-up (the docs: 25 ms watch interval between processes, design bound
/// 100 ms): a wide margin, not a performance threshold.
const BOUND: Duration = Duration::from_secs(3);
const HANG: Duration = Duration::from_secs(120);
/// Bytes the honest producer commits before the forgery.
const COMMITTED: usize = 100;
/// Bytes the consumer reads (and so validates a head for) before the forgery.
const PRE: usize = 10;

const ROLE_CLOSED: u64 = 2;

/// A hostile peer's view of the header.
#[derive(Clone, Copy)]
struct Forge(usize);

impl Forge {
    fn u64(&self, off: usize) -> &'static AtomicU64 {
        // SAFETY: aligned word inside the mapped header page; every ring outlives its forge's
        // use in these tests (the fixture keeps the ring).
        unsafe { &*((self.0 + off) as *const AtomicU64) }
    }
    fn u32(&self, off: usize) -> &'static AtomicU32 {
        // SAFETY: as above.
        unsafe { &*((self.0 + off) as *const AtomicU32) }
    }
    fn state(&self, slot: usize) -> u64 {
        self.u64(slot).load(Ordering::SeqCst) & 0xff
    }
    /// The data word at ring position `pos` (a multiple of 8).
    fn data_word(&self, pos: u64, cap: usize) -> &'static AtomicU64 {
        self.u64(page_size() + (pos % cap as u64) as usize)
    }
}

impl HeaderWords for Forge {
    fn header_u64(&self, off: usize) -> &AtomicU64 {
        self.u64(off)
    }
    fn header_u32(&self, off: usize) -> &AtomicU32 {
        self.u32(off)
    }
}

struct Fixture {
    _ring: SharedRing,
    tx: Producer,
    rx: Consumer,
    f: Forge,
    cap: usize,
}

fn fixture() -> Fixture {
    let ring = RingOptions::new().capacity(16 * 1024).spin_budget(Duration::from_micros(5)).shared().unwrap();
    let cap = ring.capacity();
    let mut tx = ring.clone().into_producer().unwrap();
    let rx = ring.clone().into_consumer().unwrap();
    let f = Forge(tx.write_grant(1).unwrap().as_ptr() as usize - page_size());
    assert_eq!(f.u64(OFF_MAGIC).load(Ordering::SeqCst), u64::from_le_bytes(*b"MIRRRING"), "not the header");
    assert_eq!(f.head(), 0);
    Fixture { _ring: ring, tx, rx, f, cap }
}

/// The stream's byte at `i`: ASCII letters, a newline every 16 (so `lines()` sees valid UTF-8
/// and an `InvalidData` from it can only be the ring's).
fn pat(i: usize) -> u8 {
    if i % 16 == 15 {
        b'\n'
    } else {
        b'a' + (i % 26) as u8
    }
}

fn pattern(from: usize, len: usize) -> Vec<u8> {
    (from..from + len).map(pat).collect()
}

fn kind<T>(r: &std::io::Result<T>) -> Option<ErrorKind> {
    r.as_ref().err().map(|e| e.kind())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Forged head, seen by the consumer through std traits.

/// How the hostile producer (or a third writer of the header) forges head, once the consumer
/// has loaded head = COMMITTED and read PRE bytes (its published tail is PRE).
#[derive(Clone, Copy, Debug)]
enum HeadForge {
    /// More than a capacity ahead of any tail the consumer publishes. (A head forged to
    /// `tail + cap + 1` at the time of the forgery becomes plausible as soon as the consumer
    /// releases a byte: it then reads the forger's "data", a documented lie, and may stall.)
    BeyondCapacity,
    /// Behind the head the consumer already loaded (head moved backwards).
    Backwards,
    /// Behind the consumer's own tail.
    BehindTail,
    Max,
    Far,
}

const HEAD_FORGES: [HeadForge; 5] =
    [HeadForge::BeyondCapacity, HeadForge::Backwards, HeadForge::BehindTail, HeadForge::Max, HeadForge::Far];

impl HeadForge {
    fn value(self, cap: usize) -> u64 {
        match self {
            // Past every tail the consumer can publish before it needs a new head (it may
            // read all COMMITTED bytes first): impossible at any time the consumer checks.
            HeadForge::BeyondCapacity => (COMMITTED + cap + 1) as u64,
            HeadForge::Backwards => (COMMITTED / 2) as u64,
            HeadForge::BehindTail => (PRE - 1) as u64,
            HeadForge::Max => u64::MAX,
            HeadForge::Far => 1 << 63,
        }
    }
}

/// A ring where the honest producer committed COMMITTED pattern bytes, the consumer read PRE
/// of them (so it validated head = COMMITTED), and then head was forged.
fn forged_head(how: HeadForge) -> Fixture {
    let mut fx = fixture();
    fx.tx.write_all(&pattern(0, COMMITTED)).unwrap();
    let mut pre = [0u8; PRE];
    fx.rx.read_exact(&mut pre).unwrap();
    assert_eq!(pre[..], pattern(0, PRE)[..]);
    fx.f.set_head(how.value(fx.cap));
    fx
}

#[derive(Clone, Copy, Debug)]
enum StdRead {
    Read,
    ReadExact,
    ReadToEnd,
    FillBuf,
    Lines,
    Copy,
    BufReader,
    TryRead,
    ReadTimeout,
    ReadGrant,
    WriteTo,
}

const STD_READS: [StdRead; 11] = [
    StdRead::Read,
    StdRead::ReadExact,
    StdRead::ReadToEnd,
    StdRead::FillBuf,
    StdRead::Lines,
    StdRead::Copy,
    StdRead::BufReader,
    StdRead::TryRead,
    StdRead::ReadTimeout,
    StdRead::ReadGrant,
    StdRead::WriteTo,
];

/// What `drain_std` and `drain_async` report for an end of stream.
fn eof() -> std::io::Error {
    std::io::Error::other("eof: the stream ended instead of failing")
}

/// One read of `n` bytes into `buf`: appends them to `got`; `Ok(0)` is an end of stream.
fn took(got: &mut Vec<u8>, r: std::io::Result<usize>, buf: &[u8]) -> std::io::Result<()> {
    match r? {
        0 => Err(eof()),
        n => {
            got.extend_from_slice(&buf[..n]);
            Ok(())
        }
    }
}

/// A read to the end into `all`: appends what it got to `got`; even a success is an error here
/// (the stream ended instead of failing).
fn took_all(got: &mut Vec<u8>, r: std::io::Result<()>, all: &[u8]) -> std::io::Result<()> {
    got.extend_from_slice(all);
    r.and_then(|()| Err(eof()))
}

/// Calls `how` until it fails (at most 1000 calls): the bytes it delivered, and the error. An
/// end of stream (`Ok(0)`, an empty `fill_buf`) is reported as an `Other` error "eof".
fn drain_std(rx: &mut Consumer, how: StdRead) -> (Vec<u8>, std::io::Error) {
    let mut got = Vec::new();
    for _ in 0..1000 {
        if got.len() > 4 * 16 * 1024 {
            return (got, std::io::Error::other("far more bytes than the ring holds"));
        }
        let started = Instant::now();
        let step: std::io::Result<()> = match how {
            StdRead::Read => {
                let mut b = [0u8; 64];
                {
                    let r = rx.read(&mut b);
                    took(&mut got, r, &b)
                }
            }
            StdRead::ReadExact => {
                let mut b = [0u8; 32];
                rx.read_exact(&mut b).map(|()| got.extend_from_slice(&b))
            }
            StdRead::ReadToEnd => {
                let mut v = Vec::new();
                let r = rx.read_to_end(&mut v).map(drop);
                took_all(&mut got, r, &v)
            }
            StdRead::FillBuf => match rx.fill_buf() {
                Ok([]) => Err(eof()),
                Ok(b) => {
                    let n = b.len().min(40);
                    got.extend_from_slice(&b[..n]);
                    rx.consume(n);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            StdRead::Lines => match (&mut *rx).lines().next() {
                None => Err(eof()),
                Some(Ok(line)) => {
                    got.extend_from_slice(line.as_bytes());
                    got.push(b'\n');
                    Ok(())
                }
                Some(Err(e)) => Err(e),
            },
            StdRead::Copy => {
                let mut v = Vec::new();
                let r = std::io::copy(rx, &mut v).map(drop);
                took_all(&mut got, r, &v)
            }
            StdRead::BufReader => {
                let mut v = Vec::new();
                let r = std::io::BufReader::with_capacity(32, &mut *rx).read_to_end(&mut v).map(drop);
                took_all(&mut got, r, &v)
            }
            StdRead::TryRead => {
                let mut b = [0u8; 64];
                {
                    let r = rx.try_read(&mut b);
                    took(&mut got, r, &b)
                }
            }
            StdRead::ReadTimeout => {
                let mut b = [0u8; 64];
                {
                    let r = rx.read_timeout(&mut b, Duration::from_millis(500));
                    took(&mut got, r, &b)
                }
            }
            StdRead::ReadGrant => match rx.read_grant(1) {
                Ok(g) if g.is_empty() => Err(eof()),
                Ok(g) => {
                    let n = g.len().min(40);
                    got.extend_from_slice(&g[..n]);
                    g.release(n)
                }
                Err(e) => Err(e),
            },
            StdRead::WriteTo => {
                let mut v = Vec::new();
                {
                    let r = rx.write_to(&mut v);
                    took(&mut got, r, &v)
                }
            }
        };
        assert!(started.elapsed() < BOUND, "{how:?}: one call took {:?}", started.elapsed());
        if let Err(e) = step {
            return (got, e);
        }
    }
    panic!("{how:?}: 1000 calls on a poisoned ring without an error ({} bytes)", got.len());
}

/// Every later call on a consumer that found the ring poisoned fails with `InvalidData`.
fn assert_consumer_stays_poisoned(rx: &mut Consumer, what: &str) {
    for _ in 0..2 {
        rx.consume(usize::MAX); // clamped, no panic
        rx.consume(0);
        assert_eq!(kind(&rx.try_read(&mut [0; 8])), Some(ErrorKind::InvalidData), "{what}: try_read");
        assert_eq!(kind(&rx.read(&mut [0; 8])), Some(ErrorKind::InvalidData), "{what}: read");
        assert_eq!(kind(&rx.fill_buf().map(|b| b.len())), Some(ErrorKind::InvalidData), "{what}: fill_buf");
        assert_eq!(kind(&rx.read_grant(0).map(|g| g.len())), Some(ErrorKind::InvalidData), "{what}: read_grant");
        assert_eq!(
            kind(&rx.read_timeout(&mut [0; 8], Duration::from_millis(10))),
            Some(ErrorKind::InvalidData),
            "{what}: read_timeout"
        );
    }
}

/// Angle 1 (std): a forged head never yields a byte beyond what was committed, never panics
/// or hangs, ends in `InvalidData`, and the error repeats.
#[test]
fn std_reads_on_a_forged_head_end_in_invalid_data_with_nothing_uncommitted() {
    let _dog = watchdog("std_reads_on_a_forged_head", HANG);
    let mut failures = Vec::new();
    for how in HEAD_FORGES {
        for call in STD_READS {
            let mut fx = forged_head(how);
            let (got, err) = drain_std(&mut fx.rx, call);
            if err.kind() != ErrorKind::InvalidData || got.len() > COMMITTED - PRE || got != pattern(PRE, got.len()) {
                failures.push(format!("{how:?}/{call:?}: {} bytes, then {err}", got.len()));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    for how in HEAD_FORGES {
        for call in STD_READS {
            let mut fx = forged_head(how);
            let what = format!("{how:?}/{call:?}");
            let (got, err) = drain_std(&mut fx.rx, call);
            assert_eq!(err.kind(), ErrorKind::InvalidData, "{what}: {err}");
            assert!(got.len() <= COMMITTED - PRE, "{what}: {} bytes, more than were committed", got.len());
            assert_eq!(got, pattern(PRE, got.len()), "{what}: bytes that were not committed");
            assert_consumer_stays_poisoned(&mut fx.rx, &what);
            assert!(fx.f.is_poisoned(), "{what}: the shared flag was not raised for the producer");
            // The producer learns of it when it has to wait (it had room it knew of).
            let big = vec![0u8; fx.cap];
            let r =
                fx.tx.write_timeout(&big, Duration::from_millis(100)).and_then(|_| fx.tx.write_all(&big).map(|()| 0));
            assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "{what}: producer after the poison: {r:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Forged head, seen through tokio's traits.

#[derive(Clone, Copy, Debug)]
enum AsyncRd {
    Read,
    ReadExact,
    ReadToEnd,
    FillBuf,
    Lines,
    Copy,
    WriteTo,
}

const ASYNC_READS: [AsyncRd; 7] = [
    AsyncRd::Read,
    AsyncRd::ReadExact,
    AsyncRd::ReadToEnd,
    AsyncRd::FillBuf,
    AsyncRd::Lines,
    AsyncRd::Copy,
    AsyncRd::WriteTo,
];

async fn drain_async(rx: &mut mirror_ring::AsyncConsumer, how: AsyncRd) -> (Vec<u8>, std::io::Error) {
    let mut got = Vec::new();
    for _ in 0..1000 {
        if got.len() > 4 * 16 * 1024 {
            return (got, std::io::Error::other("far more bytes than the ring holds"));
        }
        let step = async {
            match how {
                AsyncRd::Read => {
                    let mut b = [0u8; 64];
                    let n = rx.read(&mut b).await?;
                    if n == 0 {
                        return Err(eof());
                    }
                    Ok(b[..n].to_vec())
                }
                AsyncRd::ReadExact => {
                    let mut b = [0u8; 32];
                    rx.read_exact(&mut b).await?;
                    Ok(b.to_vec())
                }
                AsyncRd::ReadToEnd => {
                    let mut v = Vec::new();
                    match rx.read_to_end(&mut v).await {
                        Ok(_) => Err(eof()),
                        Err(e) if v.is_empty() => Err(e),
                        // Bytes and an error: report the bytes, the next step the error.
                        Err(_) => Ok(v),
                    }
                }
                AsyncRd::FillBuf => {
                    let b = rx.fill_buf().await?;
                    if b.is_empty() {
                        return Err(eof());
                    }
                    let n = b.len().min(40);
                    let v = b[..n].to_vec();
                    rx.consume(n);
                    Ok(v)
                }
                AsyncRd::Lines => {
                    let mut line = Vec::new();
                    let n = rx.read_until(b'\n', &mut line).await?;
                    if n == 0 {
                        return Err(eof());
                    }
                    Ok(line)
                }
                AsyncRd::Copy => {
                    let mut v = Vec::new();
                    match tokio::io::copy(rx, &mut v).await {
                        Ok(_) => Err(eof()),
                        Err(e) if v.is_empty() => Err(e),
                        Err(_) => Ok(v),
                    }
                }
                AsyncRd::WriteTo => {
                    let mut v = Vec::new();
                    let n = rx.write_to(&mut v).await?;
                    if n == 0 {
                        return Err(eof());
                    }
                    Ok(v)
                }
            }
        };
        match tokio::time::timeout(BOUND, step).await {
            Err(_) => panic!("{how:?}: an async call hung on a poisoned ring"),
            Ok(Ok(v)) => got.extend_from_slice(&v),
            Ok(Err(e)) => return (got, e),
        }
    }
    panic!("{how:?}: 200 async calls on a poisoned ring without an error");
}

fn noop_cx() -> Context<'static> {
    static NOOP: std::sync::OnceLock<Waker> = std::sync::OnceLock::new();
    Context::from_waker(NOOP.get_or_init(common::noop_waker))
}

/// Polls the async consumer's trait methods directly, again after each `Ready(Err)`: each must
/// be `Ready(Err(InvalidData))` (no panic, not `Pending`: the poison is permanent).
fn assert_async_consumer_stays_poisoned(rx: &mut mirror_ring::AsyncConsumer, what: &str) {
    let mut cx = noop_cx();
    for _ in 0..3 {
        Pin::new(&mut *rx).consume(usize::MAX); // clamped, no panic
        let mut b = [0u8; 16];
        let mut rb = ReadBuf::new(&mut b);
        match Pin::new(&mut *rx).poll_read(&mut cx, &mut rb) {
            Poll::Ready(Err(e)) => assert_eq!(e.kind(), ErrorKind::InvalidData, "{what}: poll_read"),
            other => panic!("{what}: poll_read on a poisoned ring: {other:?} ({} bytes)", rb.filled().len()),
        }
        match Pin::new(&mut *rx).poll_fill_buf(&mut cx) {
            Poll::Ready(Err(e)) => assert_eq!(e.kind(), ErrorKind::InvalidData, "{what}: poll_fill_buf"),
            Poll::Ready(Ok(b)) => panic!("{what}: poll_fill_buf on a poisoned ring lent {} bytes", b.len()),
            Poll::Pending => panic!("{what}: poll_fill_buf on a poisoned ring: Pending"),
        }
    }
}

/// Angle 1 (tokio): as the std test, through `AsyncReadExt`, `AsyncBufReadExt`,
/// `tokio::io::copy` and `write_to`; then raw polls after the error.
#[test]
fn async_reads_on_a_forged_head_end_in_invalid_data_with_nothing_uncommitted() {
    let _dog = watchdog("async_reads_on_a_forged_head", HANG);
    let rt = rt();
    let mut failures = Vec::new();
    for how in HEAD_FORGES {
        for call in ASYNC_READS {
            let fx = forged_head(how);
            let mut rx = fx.rx.into_async().unwrap();
            let (got, err) = rt.block_on(drain_async(&mut rx, call));
            if err.kind() != ErrorKind::InvalidData || got.len() > COMMITTED - PRE || got != pattern(PRE, got.len()) {
                failures.push(format!("{how:?}/{call:?}: {} bytes, then {err}", got.len()));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    for how in HEAD_FORGES {
        for call in ASYNC_READS {
            let fx = forged_head(how);
            let what = format!("{how:?}/{call:?}");
            let Fixture { _ring, tx, rx, f, cap } = fx;
            let mut rx = rx.into_async().unwrap();
            let (got, err) = rt.block_on(drain_async(&mut rx, call));
            assert_eq!(err.kind(), ErrorKind::InvalidData, "{what}: {err}");
            assert!(got.len() <= COMMITTED - PRE, "{what}: {} bytes, more than were committed", got.len());
            assert_eq!(got, pattern(PRE, got.len()), "{what}: bytes that were not committed");
            assert_async_consumer_stays_poisoned(&mut rx, &what);
            let r = rt.block_on(async { tokio::time::timeout(BOUND, rx.read(&mut [0u8; 4])).await });
            assert_eq!(kind(&r.expect("hung")), Some(ErrorKind::InvalidData), "{what}: a later read");
            assert!(f.is_poisoned(), "{what}");
            // The async producer learns of it when it has to wait.
            let mut atx = tx.into_async().unwrap();
            let big = vec![0u8; cap];
            // Twice: the first may fit in room it validated (documented: the producer sees the
            // flag when it has to wait).
            let r = rt.block_on(async {
                tokio::time::timeout(BOUND, async {
                    atx.write_all(&big).await?;
                    atx.write_all(&big).await
                })
                .await
            });
            assert_eq!(kind(&r.expect("async write_all hung")), Some(ErrorKind::InvalidData), "{what}: producer");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Forged tail, seen by the producer.

#[derive(Clone, Copy, Debug)]
enum TailForge {
    /// Past the head the producer published.
    PastHead,
    /// Behind the tail the producer already loaded.
    Backwards,
    Max,
}

const TAIL_FORGES: [TailForge; 3] = [TailForge::PastHead, TailForge::Backwards, TailForge::Max];

/// A full ring whose producer has loaded tail = cap / 2 (so knows of no free room), then the
/// tail is forged. The consumer has read cap / 2 pattern bytes.
fn forged_tail(how: TailForge) -> Fixture {
    let mut fx = fixture();
    let cap = fx.cap;
    fx.tx.write_all(&pattern(0, cap)).unwrap();
    let mut half = vec![0u8; cap / 2];
    fx.rx.read_exact(&mut half).unwrap();
    fx.tx.write_all(&pattern(cap, cap / 2)).unwrap(); // loads tail = cap / 2, fills the ring
    assert_eq!(fx.tx.try_write(b"x").unwrap_err().kind(), ErrorKind::WouldBlock);
    let head = fx.f.head();
    assert_eq!(head, (cap + cap / 2) as u64);
    fx.f.set_tail(match how {
        TailForge::PastHead => head + 8,
        TailForge::Backwards => (cap / 2 - 8) as u64,
        TailForge::Max => u64::MAX,
    });
    fx
}

#[derive(Clone, Copy, Debug)]
enum StdWrite {
    Write,
    WriteAll,
    TryWrite,
    WriteTimeout,
    WriteGrant,
    WriteGrantBlocking,
    ReadFrom,
    Copy,
    BufWriter,
}

const STD_WRITES: [StdWrite; 9] = [
    StdWrite::Write,
    StdWrite::WriteAll,
    StdWrite::TryWrite,
    StdWrite::WriteTimeout,
    StdWrite::WriteGrant,
    StdWrite::WriteGrantBlocking,
    StdWrite::ReadFrom,
    StdWrite::Copy,
    StdWrite::BufWriter,
];

fn std_write(tx: &mut Producer, how: StdWrite) -> std::io::Result<usize> {
    let msg = [7u8; 64];
    match how {
        StdWrite::Write => tx.write(&msg),
        StdWrite::WriteAll => tx.write_all(&msg).map(|()| msg.len()),
        StdWrite::TryWrite => tx.try_write(&msg),
        StdWrite::WriteTimeout => tx.write_timeout(&msg, Duration::from_millis(500)),
        StdWrite::WriteGrant => tx.write_grant(1).map(|g| g.len()),
        StdWrite::WriteGrantBlocking => tx.write_grant_blocking(1).map(|g| g.len()),
        StdWrite::ReadFrom => tx.read_from(&mut &msg[..]),
        StdWrite::Copy => std::io::copy(&mut &msg[..], tx).map(|n| n as usize),
        StdWrite::BufWriter => {
            let mut w = std::io::BufWriter::with_capacity(16, &mut *tx);
            w.write_all(&msg)?;
            w.flush().map(|()| msg.len())
        }
    }
}

/// Angle 1 (producer, std) and angle 2: a forged tail makes every write fail with
/// `InvalidData` at once (the producer knows of no room), repeatedly; `flush` succeeds as
/// documented (nothing is buffered); the consumer then reads every byte that was committed,
/// and only those, before `InvalidData`.
#[test]
fn std_writes_on_a_forged_tail_fail_and_the_consumer_keeps_the_committed_bytes() {
    let _dog = watchdog("std_writes_on_a_forged_tail", HANG);
    for how in TAIL_FORGES {
        for call in STD_WRITES {
            let mut fx = forged_tail(how);
            let what = format!("{how:?}/{call:?}");
            for i in 0..3 {
                let started = Instant::now();
                let r = std_write(&mut fx.tx, call);
                assert!(started.elapsed() < BOUND, "{what}: took {:?}", started.elapsed());
                assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "{what} (call {i}): {r:?}");
            }
            assert!(fx.tx.flush().is_ok(), "{what}: flush is documented to succeed");
            assert!(fx.f.is_poisoned(), "{what}: flag not raised");
            // Angle 2: the consumer still gets the cap committed bytes it had not read.
            let cap = fx.cap;
            let (got, err) = drain_std(&mut fx.rx, StdRead::Read);
            assert_eq!(err.kind(), ErrorKind::InvalidData, "{what}: consumer: {err}");
            assert_eq!(got.len(), cap, "{what}: the consumer lost committed bytes");
            assert_eq!(got, pattern(cap / 2, cap), "{what}");
        }
    }
}

/// Angle 1 (producer, tokio): `write`, `write_all`, `read_from` fail with `InvalidData`, also
/// on later calls and raw polls; `flush` and `shutdown` do not panic or hang.
#[test]
fn async_writes_on_a_forged_tail_fail_with_invalid_data() {
    let _dog = watchdog("async_writes_on_a_forged_tail", HANG);
    let rt = rt();
    for how in TAIL_FORGES {
        let fx = forged_tail(how);
        let Fixture { _ring, tx, rx, f, cap } = fx;
        let mut tx = tx.into_async().unwrap();
        rt.block_on(async {
            for i in 0..2 {
                let r = tokio::time::timeout(BOUND, tx.write(b"abc")).await.expect("write hung");
                assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "{how:?} write {i}: {r:?}");
                let r = tokio::time::timeout(BOUND, tx.write_all(&[1; 100])).await.expect("write_all hung");
                assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "{how:?} write_all {i}: {r:?}");
                let r = tokio::time::timeout(BOUND, tx.read_from(&mut &[1u8; 10][..])).await.expect("read_from hung");
                assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "{how:?} read_from {i}: {r:?}");
            }
        });
        let mut cx = noop_cx();
        for _ in 0..3 {
            match Pin::new(&mut tx).poll_write(&mut cx, b"zz") {
                Poll::Ready(Err(e)) => assert_eq!(e.kind(), ErrorKind::InvalidData),
                other => panic!("{how:?}: poll_write on a poisoned ring: {other:?}"),
            }
        }
        // flush: documented to succeed (nothing buffered); shutdown: no panic, no hang; and
        // writes after a shutdown are refused.
        let fl = rt.block_on(async { tokio::time::timeout(BOUND, tx.flush()).await.expect("flush hung") });
        assert!(matches!(kind(&fl), None | Some(ErrorKind::InvalidData)), "{how:?}: flush {fl:?}");
        let sd = rt.block_on(async { tokio::time::timeout(BOUND, tx.shutdown()).await.expect("shutdown hung") });
        assert!(matches!(kind(&sd), None | Some(ErrorKind::InvalidData)), "{how:?}: shutdown {sd:?}");
        for _ in 0..2 {
            let _ = Pin::new(&mut tx).poll_shutdown(&mut cx);
            let _ = Pin::new(&mut tx).poll_flush(&mut cx);
            assert!(matches!(Pin::new(&mut tx).poll_write(&mut cx, b"q"), Poll::Ready(Err(_))));
        }
        assert!(f.is_poisoned());
        // Angle 2 through the async consumer: every committed byte, then InvalidData.
        let mut rx = rx.into_async().unwrap();
        let (got, err) = rt.block_on(drain_async(&mut rx, AsyncRd::Read));
        assert_eq!(err.kind(), ErrorKind::InvalidData, "{how:?}: {err}");
        assert_eq!(got, pattern(cap / 2, cap), "{how:?}: the async consumer lost committed bytes");
        drop(tx);
        assert_async_consumer_stays_poisoned(&mut rx, &format!("{how:?} after the producer dropped"));
    }
}

// ---------------------------------------------------------------------------------------------
// Angle 2: a poison flag raised by the peer; bytes committed before it.

/// The peer raised the poison flag (it found our cursor impossible, or says so) after the
/// producer committed COMMITTED bytes the consumer never looked at. The docs: the peer of the
/// side that found it fails "as soon as it looks at the shared flag", and a peer "cannot make
/// this process ... lose bytes already committed". Every read style must deliver all of them,
/// then `InvalidData` (not an end of stream), also after the producer closed.
#[test]
fn committed_bytes_before_a_poison_flag_are_delivered_then_invalid_data() {
    let _dog = watchdog("committed_bytes_before_a_poison_flag", HANG);
    let rt = rt();
    for producer_closed in [false, true] {
        for call in STD_READS {
            let mut fx = fixture();
            fx.tx.write_all(&pattern(0, COMMITTED)).unwrap();
            fx.f.poison();
            if producer_closed {
                drop(std::mem::replace(&mut fx.tx, fixture().tx));
            }
            let what = format!("std {call:?} closed {producer_closed}");
            let (got, err) = drain_std(&mut fx.rx, call);
            assert_eq!(err.kind(), ErrorKind::InvalidData, "{what}: {err}");
            if matches!(call, StdRead::ReadExact | StdRead::Lines) {
                // These lose a partial record by their own contract.
                assert_eq!(got, pattern(0, got.len()), "{what}");
                assert!(got.len() >= COMMITTED - 32, "{what}: {} bytes", got.len());
            } else {
                assert_eq!(got, pattern(0, COMMITTED), "{what}: committed bytes lost");
            }
        }
        for call in ASYNC_READS {
            let mut fx = fixture();
            fx.tx.write_all(&pattern(0, COMMITTED)).unwrap();
            fx.f.poison();
            if producer_closed {
                drop(std::mem::replace(&mut fx.tx, fixture().tx));
            }
            let what = format!("async {call:?} closed {producer_closed}");
            let mut rx = fx.rx.into_async().unwrap();
            let (got, err) = rt.block_on(drain_async(&mut rx, call));
            assert_eq!(err.kind(), ErrorKind::InvalidData, "{what}: {err}");
            if matches!(call, AsyncRd::ReadExact | AsyncRd::Lines | AsyncRd::Copy) {
                // A partial record (read_exact, read_until), or tokio's copy buffer, is lost
                // with the error by those helpers' own contract.
                assert_eq!(got, pattern(0, got.len()), "{what}");
            } else {
                assert_eq!(got, pattern(0, COMMITTED), "{what}: committed bytes lost");
            }
        }
    }
}

/// Same for frames: three frames sent, then the peer raises the flag; every receive style gets
/// the three frames, then `InvalidData`.
#[test]
fn committed_frames_before_a_poison_flag_are_delivered_then_invalid_data() {
    let _dog = watchdog("committed_frames_before_a_poison_flag", HANG);
    let rt = rt();
    for style in 0..7 {
        let fx = fixture();
        let Fixture { _ring, tx, rx, f, .. } = fx;
        let mut tx = tx.into_framed();
        let frames: Vec<Vec<u8>> = (0..3).map(|i| pattern(i * 10, 5 + i)).collect();
        for m in &frames {
            tx.send(m).unwrap();
        }
        tx.flush().unwrap();
        f.poison();
        let mut rx = rx.into_framed();
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut buf = Vec::new();
        let err = loop {
            assert!(got.len() <= 3, "style {style}: more frames than were sent");
            let r: std::io::Result<bool> = match style {
                0 => rx.recv().map(|fr| fr.map(|fr| got.push(fr.to_vec())).is_some()),
                1 => rx.try_recv().map(|fr| fr.map(|fr| got.push(fr.to_vec())).is_some()),
                2 => rx.recv_timeout(BOUND).map(|fr| fr.map(|fr| got.push(fr.to_vec())).is_some()),
                3 => rx.recv_batch(|fr| got.push(fr.to_vec())).map(|n| n > 0),
                4 => rx.recv_into(&mut buf).map(|n| n.map(|_| got.push(buf.clone())).is_some()),
                5 => {
                    let mut arx = rx.into_async().unwrap();
                    let r = rt.block_on(async {
                        tokio::time::timeout(BOUND, async {
                            match arx.recv().await {
                                Ok(Some(fr)) => Ok(Some(fr.to_vec())),
                                Ok(None) => Ok(None),
                                Err(e) => Err(e),
                            }
                        })
                        .await
                        .expect("async recv hung")
                    });
                    rx = arx.into_inner();
                    r.map(|fr| fr.map(|fr| got.push(fr)).is_some())
                }
                _ => {
                    let mut arx = rx.into_async().unwrap();
                    let r = rt.block_on(async {
                        tokio::time::timeout(BOUND, arx.recv_batch(|fr| got.push(fr.to_vec())))
                            .await
                            .expect("async recv_batch hung")
                    });
                    rx = arx.into_inner();
                    r.map(|n| n > 0)
                }
            };
            match r {
                Ok(true) => {}
                Ok(false) => panic!("style {style}: end of stream on a poisoned ring"),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ErrorKind::InvalidData, "style {style}: {err}");
        assert_eq!(got, frames, "style {style}: committed frames lost");
        assert_eq!(kind(&rx.try_recv().map(|f| f.is_some())), Some(ErrorKind::InvalidData));
        assert_eq!(kind(&rx.recv_into(&mut buf)), Some(ErrorKind::InvalidData));
    }
}

// ---------------------------------------------------------------------------------------------
// Angle 1 (framed): forged frame headers and cursors through the framed and async framed ends.

/// A raw producer publishes a bad frame header; the async framed consumer fails with
/// `InvalidData` on every call (recv, recv_batch, try_recv_into through get_mut), and the
/// async framed producer (send, send_batch, reserve) learns of the poison when it must wait.
#[test]
fn async_framed_ends_on_a_forged_frame_header() {
    let _dog = watchdog("async_framed_ends_on_a_forged_frame_header", HANG);
    let rt = rt();
    let cap_probe = fixture().cap;
    let bads: Vec<(&str, Vec<u8>)> = vec![
        ("length past the ring", [stamped_word(0, cap_probe as u32 + 8).to_le_bytes(), [0; 8]].concat()),
        ("length 2^32-1", [stamped_word(0, u32::MAX).to_le_bytes(), [0; 8]].concat()),
        ("stamp for the next word", [stamped_word(8, 8).to_le_bytes(), [0; 8]].concat()),
        ("stamp one lap on", [stamped_word(cap_probe as u64, 8).to_le_bytes(), [0; 8]].concat()),
        ("bad complement", [(stamped_word(0, 8) ^ 1 << 33).to_le_bytes(), [0; 8]].concat()),
        ("more than published", [&stamped_word(0, 100).to_le_bytes()[..], &[0; 40][..]].concat()),
    ];
    for (what, bad) in bads {
        for sender in 0..3 {
            let Fixture { _ring, mut tx, rx, .. } = fixture();
            tx.write_all(&bad).unwrap();
            let mut rx = rx.into_framed().into_async().unwrap();
            rt.block_on(async {
                for _ in 0..2 {
                    let r = tokio::time::timeout(BOUND, async { rx.recv().await.map(|f| f.map(|f| f.len())) })
                        .await
                        .expect("recv hung");
                    assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "{what}: recv {r:?}");
                    let r = tokio::time::timeout(BOUND, rx.recv_batch(|_| panic!("{what}: a frame from garbage")))
                        .await
                        .expect("recv_batch hung");
                    assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "{what}: recv_batch {r:?}");
                    let mut v = Vec::new();
                    let r = rx.get_mut().try_recv_into(&mut v);
                    assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "{what}: try_recv_into {r:?}");
                }
            });
            // The producer side: it learns when it must wait.
            let mut atx = tx.into_framed().into_async().unwrap();
            let r = rt.block_on(async {
                tokio::time::timeout(BOUND * 3, async {
                    for _ in 0..10_000 {
                        let r = match sender {
                            0 => atx.send(&[0; 500]).await,
                            1 => atx.send_batch(&[[0u8; 300]; 4]).await.map(drop),
                            _ => match atx.reserve(500).await {
                                Ok(g) => g.commit(),
                                Err(e) => Err(e),
                            },
                        };
                        r?;
                    }
                    Ok(())
                })
                .await
                .expect("async framed producer hung on a poisoned ring")
            });
            assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "{what}: sender {sender}: {r:?}");
            let r = rt.block_on(async { tokio::time::timeout(BOUND, atx.send(b"x")).await.expect("hung") });
            assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "{what}: sender {sender} again");
        }
    }
}

/// A forged head under a fresh framed consumer (no frame taken yet, so it goes by head): every
/// receive style fails with `InvalidData`; a forged tail under a full framed producer: every
/// send style fails with `InvalidData` at once.
#[test]
fn framed_ends_on_forged_cursors() {
    let _dog = watchdog("framed_ends_on_forged_cursors", HANG);
    let rt = rt();
    for head in [HeadForge::BeyondCapacity, HeadForge::Max, HeadForge::Far] {
        for style in 0..7 {
            let Fixture { _ring, tx, rx, f, cap } = fixture();
            let _tx = tx.into_framed();
            let mut rx = rx.into_framed();
            f.set_head(head.value(cap));
            let mut buf = Vec::new();
            let started = Instant::now();
            let r: std::io::Result<()> = match style {
                0 => rx.recv().map(|fr| assert!(fr.is_none(), "a frame from a forged head")),
                1 => rx.try_recv().map(|fr| assert!(fr.is_none(), "a frame from a forged head")),
                2 => rx.recv_timeout(BOUND).map(|fr| assert!(fr.is_none())),
                3 => rx.recv_batch(|_| panic!("a frame from a forged head")).map(drop),
                4 => rx.recv_into(&mut buf).map(drop),
                5 => {
                    let mut arx = rx.into_async().unwrap();
                    let r = rt.block_on(async {
                        tokio::time::timeout(BOUND, async { arx.recv().await.map(|f| f.map(|f| f.len())) })
                            .await
                            .expect("async recv hung on a forged head")
                    });
                    rx = arx.into_inner();
                    r.map(drop)
                }
                _ => {
                    let mut arx = rx.into_async().unwrap();
                    let r = rt.block_on(async {
                        tokio::time::timeout(BOUND, arx.recv_batch(|_| panic!("frame"))).await.expect("hung")
                    });
                    rx = arx.into_inner();
                    r.map(drop)
                }
            };
            assert!(started.elapsed() < BOUND);
            assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "{head:?} style {style}: {r:?}");
            assert_eq!(kind(&rx.try_recv().map(|f| f.is_some())), Some(ErrorKind::InvalidData));
        }
    }
    for tail in [TailForge::PastHead, TailForge::Max] {
        for style in 0..9 {
            let Fixture { _ring, tx, rx: _rx, f, .. } = fixture();
            let mut tx = tx.into_framed();
            while tx.try_send(&[3; 200]).is_ok() {}
            tx.flush().unwrap();
            let head = f.head();
            f.set_tail(if matches!(tail, TailForge::Max) { u64::MAX } else { head + 8 });
            let started = Instant::now();
            let msgs = [[1u8; 200]; 3];
            let r: std::io::Result<()> = match style {
                0 => tx.send(&[1; 200]),
                1 => tx.try_send(&[1; 200]),
                2 => tx.send_timeout(&[1; 200], BOUND),
                3 => tx.send_batch(&msgs).map(drop),
                4 => tx.try_send_batch(&msgs).map(drop),
                5 => tx.reserve(200).and_then(|g| g.commit()),
                6 => tx.try_reserve(200).and_then(|g| g.commit()),
                7 => {
                    let mut atx = tx.into_async().unwrap();
                    let r = rt.block_on(async {
                        tokio::time::timeout(BOUND, atx.send(&[1; 200])).await.expect("async send hung")
                    });
                    tx = atx.into_inner();
                    r
                }
                _ => {
                    let mut atx = tx.into_async().unwrap();
                    let r = rt.block_on(async {
                        tokio::time::timeout(BOUND, async {
                            match atx.reserve(200).await {
                                Ok(g) => g.commit(),
                                Err(e) => Err(e),
                            }
                        })
                        .await
                        .expect("async reserve hung")
                    });
                    tx = atx.into_inner();
                    r
                }
            };
            assert!(started.elapsed() < BOUND);
            assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "{tail:?} style {style}: {r:?}");
            assert_eq!(kind(&tx.try_send(b"x")), Some(ErrorKind::InvalidData), "{tail:?} style {style}: again");
            assert_eq!(kind(&tx.send_batch(&[b"y"])), Some(ErrorKind::InvalidData), "{tail:?} style {style}: again");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Angle 3: a parked end, the header corrupted while it waits, nobody wakes it.

#[derive(Clone, Copy, Debug)]
enum Corrupt {
    HeadMax,
    HeadBeyond,
    TailPastHead,
    TailMax,
    Flag,
}

impl Corrupt {
    fn apply(self, f: Forge, cap: usize) {
        match self {
            Corrupt::HeadMax => f.set_head(u64::MAX),
            Corrupt::HeadBeyond => f.set_head(f.tail().wrapping_add(cap as u64 + 1)),
            Corrupt::TailPastHead => f.set_tail(f.head() + 8),
            Corrupt::TailMax => f.set_tail(u64::MAX),
            Corrupt::Flag => f.poison(),
        }
    }
}

/// Runs `call` (which parks), corrupting the header with `c` 100 ms into it, without any
/// wake-up; the call's result and how long after the corruption it returned.
fn parked<T>(f: Forge, cap: usize, c: Corrupt, call: impl FnOnce() -> T) -> (T, Duration) {
    std::thread::scope(|s| {
        let forger = s.spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            c.apply(f, cap);
            Instant::now()
        });
        let r = call();
        let end = Instant::now();
        let at = forger.join().unwrap();
        (r, end.saturating_duration_since(at))
    })
}

#[test]
fn a_parked_blocking_consumer_wakes_on_an_unwoken_corruption() {
    let _dog = watchdog("a_parked_blocking_consumer", HANG);
    for c in [Corrupt::HeadMax, Corrupt::HeadBeyond, Corrupt::Flag] {
        for call in 0..8 {
            let Fixture { _ring, tx: _tx, mut rx, f, cap } = fixture();
            let (r, after) = parked(f, cap, c, || -> std::io::Result<usize> {
                match call {
                    0 => rx.read(&mut [0u8; 8]),
                    1 => rx.fill_buf().map(|b| b.len()),
                    2 => rx.read_exact(&mut [0u8; 8]).map(|()| 8),
                    3 => rx.read_grant_blocking(1).map(|g| g.len()),
                    4 => rx.write_to(&mut Vec::new()),
                    5 => rx.into_framed().recv().map(|fr| fr.map_or(0, |f| f.len())),
                    6 => rx.into_framed().recv_batch(|_| ()),
                    _ => rx.into_framed().recv_into(&mut Vec::new()).map(|n| n.unwrap_or(0)),
                }
            });
            assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "{c:?} call {call}: {r:?}");
            assert!(after < BOUND, "{c:?} call {call}: woke {after:?} after the corruption");
        }
    }
}

#[test]
fn a_parked_blocking_producer_wakes_on_an_unwoken_corruption() {
    let _dog = watchdog("a_parked_blocking_producer", HANG);
    for c in [Corrupt::TailPastHead, Corrupt::TailMax, Corrupt::Flag] {
        for call in 0..4 {
            let Fixture { _ring, mut tx, rx: _rx, f, cap } = fixture();
            let framed = call >= 2;
            let (r, after) = if framed {
                let mut tx = tx.into_framed();
                while tx.try_send(&[3; 200]).is_ok() {}
                tx.flush().unwrap();
                parked(f, cap, c, move || match call {
                    2 => tx.send(&[1; 200]),
                    _ => tx.send_batch(&[[1u8; 200]; 2]).map(drop),
                })
            } else {
                tx.write_all(&vec![5; cap]).unwrap();
                parked(f, cap, c, move || match call {
                    0 => tx.write_all(b"more"),
                    _ => tx.write_grant_blocking(1).map(drop),
                })
            };
            assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "{c:?} call {call}: {r:?}");
            assert!(after < BOUND, "{c:?} call {call}: woke {after:?} after the corruption");
        }
    }
}

#[test]
fn a_parked_async_end_wakes_on_an_unwoken_corruption() {
    let _dog = watchdog("a_parked_async_end", HANG);
    let rt = rt();
    let reader_corruptions = [Corrupt::HeadMax, Corrupt::HeadBeyond, Corrupt::Flag];
    let writer_corruptions = [Corrupt::TailPastHead, Corrupt::TailMax, Corrupt::Flag];
    for end in 0..6 {
        for i in 0..3 {
            let c = if end < 3 { reader_corruptions[i] } else { writer_corruptions[i] };
            let Fixture { _ring, mut tx, rx, f, cap } = fixture();
            let (r, after) = match end {
                0 => {
                    let mut rx = rx.into_async().unwrap();
                    parked(f, cap, c, || {
                        rt.block_on(async { tokio::time::timeout(BOUND * 2, rx.read(&mut [0u8; 8])).await })
                    })
                }
                1 => {
                    let mut rx = rx.into_async().unwrap();
                    parked(f, cap, c, || {
                        rt.block_on(async {
                            tokio::time::timeout(BOUND * 2, async { rx.fill_buf().await.map(|b| b.len()) }).await
                        })
                    })
                }
                2 => {
                    let mut rx = rx.into_framed().into_async().unwrap();
                    parked(f, cap, c, || {
                        rt.block_on(async {
                            tokio::time::timeout(BOUND * 2, async { rx.recv().await.map(|f| f.map_or(0, |f| f.len())) })
                                .await
                        })
                    })
                }
                3 => {
                    tx.write_all(&vec![5; cap]).unwrap();
                    let mut tx = tx.into_async().unwrap();
                    parked(f, cap, c, || {
                        rt.block_on(async {
                            tokio::time::timeout(BOUND * 2, tx.write_all(b"more")).await.map(|r| r.map(|()| 0))
                        })
                    })
                }
                4 => {
                    let mut tx = tx.into_framed();
                    while tx.try_send(&[3; 200]).is_ok() {}
                    tx.flush().unwrap();
                    let mut tx = tx.into_async().unwrap();
                    parked(f, cap, c, || {
                        rt.block_on(async {
                            tokio::time::timeout(BOUND * 2, tx.send(&[1; 200])).await.map(|r| r.map(|()| 0))
                        })
                    })
                }
                _ => {
                    let mut tx = tx.into_framed();
                    while tx.try_send(&[3; 200]).is_ok() {}
                    tx.flush().unwrap();
                    let mut tx = tx.into_async().unwrap();
                    parked(f, cap, c, || {
                        rt.block_on(async {
                            tokio::time::timeout(BOUND * 2, async {
                                match tx.reserve(200).await {
                                    Ok(g) => g.commit().map(|()| 0),
                                    Err(e) => Err(e),
                                }
                            })
                            .await
                        })
                    })
                }
            };
            let r = r.unwrap_or_else(|_| panic!("end {end} {c:?}: still parked {:?} after the corruption", after));
            assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "end {end} {c:?}: {r:?}");
            assert!(after < BOUND, "end {end} {c:?}: woke {after:?} after the corruption");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Angle 4: dropping the ends of a poisoned ring.

/// Dropping either end of a poisoned ring (blocking, async, framed, async framed; after its
/// error, and with a parked future dropped first): no panic, its slot says CLOSED, and the peer
/// sees a close or the poison (never a hang, never `Ok`).
#[test]
fn dropping_the_ends_of_a_poisoned_ring_closes_them() {
    let _dog = watchdog("dropping_the_ends_of_a_poisoned_ring", HANG);
    let rt = rt();
    for kind_of_end in 0..4 {
        // The consumer finds the poison (a forged head) and is dropped.
        let Fixture { _ring, mut tx, rx, f, cap } = fixture();
        f.set_head(u64::MAX);
        match kind_of_end {
            0 => {
                let mut rx = rx;
                assert_eq!(kind(&rx.try_read(&mut [0; 4])), Some(ErrorKind::InvalidData));
                drop(rx);
            }
            1 => {
                let mut rx = rx.into_async().unwrap();
                // One raw poll of a read (it finds the forged head at once), the future dropped,
                // then the end.
                let mut cx = noop_cx();
                let mut b = [0u8; 4];
                {
                    let mut fut = std::pin::pin!(rx.read(&mut b));
                    let _ = fut.as_mut().poll(&mut cx);
                }
                drop(rx);
            }
            2 => {
                let mut rx = rx.into_framed();
                assert_eq!(kind(&rx.try_recv().map(|f| f.is_some())), Some(ErrorKind::InvalidData));
                drop(rx);
            }
            _ => {
                let mut rx = rx.into_framed().into_async().unwrap();
                let r = rt.block_on(async {
                    tokio::time::timeout(BOUND, async { rx.recv().await.map(|f| f.is_some()) }).await.expect("hung")
                });
                assert_eq!(kind(&r), Some(ErrorKind::InvalidData));
                drop(rx);
            }
        }
        assert_eq!(f.state(OFF_CONSUMER), ROLE_CLOSED, "end {kind_of_end}: the consumer's slot is not closed");
        let started = Instant::now();
        let r = tx.write_all(&vec![0; cap + 1]);
        assert!(started.elapsed() < BOUND);
        assert!(
            matches!(kind(&r), Some(ErrorKind::BrokenPipe | ErrorKind::InvalidData)),
            "end {kind_of_end}: producer after the consumer of a poisoned ring dropped: {r:?}"
        );
        assert!(tx.is_abandoned(), "end {kind_of_end}");
        drop(tx);
        assert_eq!(f.state(OFF_PRODUCER), ROLE_CLOSED);

        // The producer finds the poison (a forged tail) and is dropped; the consumer had read
        // everything: InvalidData, not a clean end of stream (documented).
        let Fixture { _ring, tx, mut rx, f, cap } = fixture();
        let mut tx = tx;
        tx.write_all(&pattern(0, cap)).unwrap();
        let mut all = vec![0u8; cap];
        rx.read_exact(&mut all).unwrap();
        f.set_tail(u64::MAX);
        match kind_of_end {
            0 => {
                assert_eq!(kind(&tx.try_write(b"x")), Some(ErrorKind::InvalidData));
                drop(tx);
            }
            1 => {
                let mut tx = tx.into_async().unwrap();
                let mut cx = noop_cx();
                {
                    let mut fut = std::pin::pin!(tx.write_all(b"abc"));
                    let _ = fut.as_mut().poll(&mut cx);
                }
                drop(tx);
            }
            2 => {
                let mut tx = tx.into_framed();
                assert_eq!(kind(&tx.try_send(b"x")), Some(ErrorKind::InvalidData));
                drop(tx);
            }
            _ => {
                let mut tx = tx.into_framed().into_async().unwrap();
                let r = rt.block_on(async { tokio::time::timeout(BOUND, tx.send(b"x")).await.expect("hung") });
                assert_eq!(kind(&r), Some(ErrorKind::InvalidData));
                drop(tx);
            }
        }
        assert_eq!(f.state(OFF_PRODUCER), ROLE_CLOSED, "end {kind_of_end}: the producer's slot is not closed");
        let started = Instant::now();
        let r = rx.read(&mut [0u8; 8]);
        assert!(started.elapsed() < BOUND);
        assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "end {kind_of_end}: consumer after a poisoned close: {r:?}");
        assert!(rx.is_abandoned());
    }
}

/// A parked async future dropped while the ring gets poisoned under it, then its end dropped:
/// no panic, and the slot is closed (the registration with the helper thread is settled).
#[test]
fn dropping_a_parked_async_future_on_a_ring_poisoned_under_it() {
    let _dog = watchdog("dropping_a_parked_async_future", HANG);
    for consumer in [true, false] {
        let Fixture { _ring, tx, rx, f, cap } = fixture();
        let mut cx = noop_cx();
        if consumer {
            let mut rx = rx.into_async().unwrap();
            let mut b = [0u8; 4];
            {
                let mut fut = std::pin::pin!(rx.read(&mut b));
                assert!(fut.as_mut().poll(&mut cx).is_pending());
                f.set_head(u64::MAX);
                std::thread::sleep(Duration::from_millis(60)); // let a helper look
            }
            drop(rx);
            assert_eq!(f.state(OFF_CONSUMER), ROLE_CLOSED);
            drop(tx);
        } else {
            let mut tx = tx;
            tx.write_all(&vec![1; cap]).unwrap();
            let mut tx = tx.into_async().unwrap();
            {
                let mut fut = std::pin::pin!(tx.write_all(b"more"));
                assert!(fut.as_mut().poll(&mut cx).is_pending());
                f.set_tail(u64::MAX);
                std::thread::sleep(Duration::from_millis(60));
            }
            drop(tx);
            assert_eq!(f.state(OFF_PRODUCER), ROLE_CLOSED);
            drop(rx);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Angle 2, continued: bytes the consumer had already validated when the head was forged.

/// Bytes committed before the corruption and already validated by the consumer (it loaded
/// the honest head = 100 and read 10 of them) reach the lending readers too: `fill_buf`, and
/// `lines` on it, std and tokio, serve the 90 bytes, then `InvalidData` (`docs::trust_model`:
/// committed bytes are not lost). They failed at once: `fill_buf` reloads the head on its
/// first call, found the forgery, and the latched poisoning made every later call fail.
#[test]
fn validated_bytes_survive_a_forged_head_through_fill_buf() {
    let _dog = watchdog("validated_bytes_survive_a_forged_head_through_fill_buf", HANG);
    let rt = rt();
    let mut failures = Vec::new();
    for how in HEAD_FORGES {
        for call in [StdRead::FillBuf, StdRead::Lines] {
            let mut fx = forged_head(how);
            let (got, err) = drain_std(&mut fx.rx, call);
            assert_eq!(err.kind(), ErrorKind::InvalidData, "{how:?}/{call:?}");
            let expected = if matches!(call, StdRead::Lines) { (COMMITTED / 16) * 16 - PRE } else { COMMITTED - PRE };
            if got != pattern(PRE, expected) {
                failures.push(format!("std {how:?}/{call:?}: {} of the {expected} validated bytes", got.len()));
            }
        }
        for call in [AsyncRd::FillBuf, AsyncRd::Lines] {
            let fx = forged_head(how);
            let mut rx = fx.rx.into_async().unwrap();
            let (got, err) = rt.block_on(drain_async(&mut rx, call));
            assert_eq!(err.kind(), ErrorKind::InvalidData, "{how:?}/{call:?}");
            let expected = if matches!(call, AsyncRd::Lines) { (COMMITTED / 16) * 16 - PRE } else { COMMITTED - PRE };
            if got != pattern(PRE, expected) {
                failures.push(format!("async {how:?}/{call:?}: {} of the {expected} validated bytes", got.len()));
            }
        }
    }
    assert!(failures.is_empty(), "validated committed bytes lost: {failures:#?}");
}

/// The copying readers keep them too, a whole read or grant at a time.
#[test]
fn validated_bytes_survive_a_forged_head_through_the_copying_reads() {
    let _dog = watchdog("validated_bytes_survive_a_forged_head_through_the_copying_reads", HANG);
    for how in HEAD_FORGES {
        for call in [
            StdRead::Read,
            StdRead::TryRead,
            StdRead::ReadTimeout,
            StdRead::ReadGrant,
            StdRead::WriteTo,
            StdRead::ReadToEnd,
        ] {
            let mut fx = forged_head(how);
            let (got, err) = drain_std(&mut fx.rx, call);
            assert_eq!(err.kind(), ErrorKind::InvalidData, "{how:?}/{call:?}");
            assert_eq!(got, pattern(PRE, COMMITTED - PRE), "{how:?}/{call:?}: validated bytes lost");
        }
    }
}

/// Reads smaller than what was validated each serve their share of the 90 bytes, the one that
/// finds the forgery included. `fill_buf` serves them (it failed at once), and asked again
/// without consuming anything (a parser waiting for the rest of a record) fails rather than lend
/// the same bytes for ever: the validated rest is served once per position.
#[test]
fn validated_bytes_are_served_in_small_reads_and_fill_buf_does_not_repeat_them() {
    let _dog = watchdog("validated_bytes_are_served_in_small_reads", HANG);
    for how in HEAD_FORGES {
        let mut fx = forged_head(how);
        let mut got = Vec::new();
        let mut buf = [0u8; 7];
        let err = loop {
            match fx.rx.read(&mut buf) {
                Ok(0) => panic!("{how:?}: end of stream on a poisoned ring"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
            assert!(got.len() <= COMMITTED, "{how:?}: more than was committed");
        };
        assert_eq!(err.kind(), ErrorKind::InvalidData, "{how:?}");
        assert_eq!(got, pattern(PRE, COMMITTED - PRE), "{how:?}: validated bytes lost to small reads");

        let mut fx = forged_head(how);
        let first = fx.rx.fill_buf().unwrap().to_vec();
        assert_eq!(first, pattern(PRE, COMMITTED - PRE), "{how:?}");
        assert_eq!(
            kind(&fx.rx.fill_buf().map(|b| b.len())),
            Some(ErrorKind::InvalidData),
            "{how:?}: the same bytes again"
        );
        fx.rx.consume(5);
        assert_eq!(fx.rx.fill_buf().unwrap(), &pattern(PRE + 5, COMMITTED - PRE - 5)[..], "{how:?}: after a consume");
    }
}

// ---------------------------------------------------------------------------------------------
// Angle 3, continued: a framed consumer that trusts stamps (it took a frame), parked.

/// A framed consumer that has taken a frame (so it trusts stamps and waits on the clear mark)
/// parks; the header or the next frame header is corrupted with no wake-up. The poison flag
/// and a corrupt header below a moved head must end the wait with `InvalidData` within the
/// bound, blocking and async. (A head forged alone, with the clear mark at the cursor, is the
/// documented stall: only a timeout ends it; checked to end with `TimedOut` or `InvalidData`.)
#[test]
fn a_parked_trusting_framed_consumer_notices_corruption() {
    let _dog = watchdog("a_parked_trusting_framed_consumer", HANG);
    let rt = rt();
    for forge in 0..3 {
        for asynch in [false, true] {
            let Fixture { _ring, tx, rx, f, cap } = fixture();
            let mut tx = tx.into_framed();
            let mut rx = rx.into_framed();
            tx.send(b"first!!!").unwrap();
            assert_eq!(&*rx.recv().unwrap().unwrap(), b"first!!!");
            assert_eq!(
                &*{
                    tx.send(b"second!!").unwrap();
                    rx.recv().unwrap().unwrap()
                },
                b"second!!"
            );
            let q = f.head();
            let corrupt = move || match forge {
                0 => f.poison(),
                1 => {
                    // A stamped header at the cursor whose length the ring cannot hold, and head
                    // moved past it.
                    f.data_word(q, cap).store(stamped_word(q, u32::MAX - 1), Ordering::SeqCst);
                    f.set_head(q + 16);
                }
                _ => f.set_head(u64::MAX),
            };
            let started = Instant::now();
            let r: std::io::Result<usize> = std::thread::scope(|s| {
                s.spawn(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    corrupt();
                });
                if asynch {
                    let mut arx = rx.into_async().unwrap();
                    let r = rt.block_on(async {
                        tokio::time::timeout(BOUND, async { arx.recv().await.map(|fr| fr.map_or(0, |fr| fr.len())) })
                            .await
                    });
                    drop(arx.into_inner());
                    r.unwrap_or_else(|_| Err(ErrorKind::TimedOut.into()))
                } else {
                    rx.recv_timeout(BOUND).map(|fr| fr.map_or(0, |fr| fr.len()))
                }
            });
            let took = started.elapsed();
            if forge < 2 {
                assert_eq!(
                    kind(&r),
                    Some(ErrorKind::InvalidData),
                    "forge {forge} async {asynch}: {r:?} after {took:?}"
                );
                assert!(took < BOUND, "forge {forge} async {asynch}: {took:?}");
            } else {
                assert!(
                    matches!(kind(&r), Some(ErrorKind::InvalidData | ErrorKind::TimedOut)),
                    "forge {forge} async {asynch}: {r:?}"
                );
            }
            drop(tx);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Angle 1 (framed), forged lengths into the copying receive: no allocation of the forged
// length, no panic, `InvalidData`, repeated.

#[test]
fn recv_into_and_recv_batch_refuse_forged_lengths_without_allocating_them() {
    let _dog = watchdog("recv_into_refuses_forged_lengths", HANG);
    let max = fixture().rx.into_framed().max_frame_len();
    for len in [max as u32 + 1, (max + 8) as u32, 1 << 30, u32::MAX - 7, u32::MAX] {
        for style in 0..4 {
            let Fixture { _ring, mut tx, rx, .. } = fixture();
            // The header, then a full ring's worth of bytes behind it, published: only the
            // length can be wrong.
            let mut bytes = stamped_word(0, len).to_le_bytes().to_vec();
            bytes.resize(fx_cap_minus(&rx, 8), 0xAB);
            tx.write_all(&bytes).unwrap();
            let mut rx = rx.into_framed();
            let mut buf = Vec::new();
            for i in 0..3 {
                let r: std::io::Result<usize> = match style {
                    0 => rx.recv_into(&mut buf).map(|n| n.unwrap_or(0)),
                    1 => rx.try_recv_into(&mut buf).map(|n| n.unwrap_or(0)),
                    2 => rx.recv_into_timeout(&mut buf, BOUND).map(|n| n.unwrap_or(0)),
                    _ => rx.recv_batch(|f| panic!("a {}-byte frame from a forged length", f.len())),
                };
                assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "len {len} style {style} call {i}: {r:?}");
                assert!(
                    buf.capacity() <= 2 * max,
                    "len {len}: the buffer grew to {} for a forged length",
                    buf.capacity()
                );
            }
        }
    }
}

fn fx_cap_minus(rx: &Consumer, n: usize) -> usize {
    rx.capacity() - n
}

// ---------------------------------------------------------------------------------------------
// Angle 3 across processes: a hostile child scribbles on the header while this process's
// async and blocking ends are parked.

/// A forked child (it inherited the ring's shared mapping) waits, forges head (or tail) and
/// `_exit`s without waking anyone; the parked end in the parent must end with `InvalidData`
/// within the bound. The child is reaped (its guard), and never returns into the harness.
#[test]
fn a_hostile_child_corrupting_the_header_ends_a_parked_wait() {
    let _dog = watchdog("a_hostile_child_corrupting_the_header", HANG);
    let rt = rt();
    for case in 0..4 {
        let Fixture { _ring, mut tx, rx, f, cap } = fixture();
        if case >= 2 {
            tx.write_all(&vec![1; cap]).unwrap();
        }
        let mut child = common::spawn_child(move || {
            std::thread::sleep(Duration::from_millis(150));
            if case < 2 {
                f.set_head(u64::MAX);
            } else {
                f.set_tail(f.head() + 8);
            }
            0
        });
        _dog.kill_on_expiry(&child);
        let started = Instant::now();
        let r: std::io::Result<usize> = match case {
            0 => rx
                .into_async()
                .map(|mut a| {
                    rt.block_on(async { tokio::time::timeout(BOUND * 2, a.read(&mut [0u8; 8])).await })
                        .unwrap_or_else(|_| Err(ErrorKind::TimedOut.into()))
                })
                .unwrap(),
            1 => {
                let mut rx = rx;
                rx.read(&mut [0u8; 8])
            }
            2 => tx
                .into_async()
                .map(|mut a| {
                    rt.block_on(async { tokio::time::timeout(BOUND * 2, a.write_all(b"more")).await })
                        .unwrap_or_else(|_| Err(ErrorKind::TimedOut.into()))
                        .map(|()| 4)
                })
                .unwrap(),
            _ => tx.write_all(b"more").map(|()| 4),
        };
        let took = started.elapsed();
        assert_eq!(child.wait_within(BOUND), 0, "case {case}: the child failed");
        assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "case {case}: {r:?} after {took:?}");
        assert!(took < BOUND + Duration::from_millis(150), "case {case}: ended {took:?} after the start");
    }
}

/// Frames committed before a forged head, the first of them taken through that honest head:
/// the rest are delivered (they are committed, and the consumer takes them by their stamps),
/// for every receive style; what follows is `InvalidData` or, with the clear mark at the
/// cursor, the documented stall (`WouldBlock` / `TimedOut`).
#[test]
fn frames_committed_before_a_forged_head_are_delivered() {
    let _dog = watchdog("frames_committed_before_a_forged_head", HANG);
    let rt = rt();
    for how in HEAD_FORGES {
        for style in 0..6 {
            let Fixture { _ring, tx, rx, f, cap } = fixture();
            let mut tx = tx.into_framed();
            let mut rx = rx.into_framed();
            let frames: Vec<Vec<u8>> = (0..4).map(|i| pattern(i * 10, 5 + i)).collect();
            for m in &frames {
                tx.send(m).unwrap();
            }
            assert_eq!(&*rx.recv().unwrap().unwrap(), &frames[0][..]);
            let loaded = f.head();
            f.set_head(match how {
                HeadForge::BeyondCapacity => loaded + cap as u64 + 1,
                HeadForge::Backwards | HeadForge::BehindTail => loaded - 8,
                other => other.value(cap),
            });
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut buf = Vec::new();
            let end = loop {
                assert!(got.len() <= 3, "{how:?} style {style}: more frames than were sent");
                let r: std::io::Result<bool> = match style {
                    0 => rx.try_recv().map(|fr| fr.map(|fr| got.push(fr.to_vec())).is_some()),
                    1 => rx
                        .recv_timeout(Duration::from_millis(300))
                        .map(|fr| fr.map(|fr| got.push(fr.to_vec())).is_some()),
                    2 => rx.try_recv_batch(|fr| got.push(fr.to_vec())).map(|n| n > 0),
                    3 => rx.try_recv_into(&mut buf).map(|n| n.map(|_| got.push(buf.clone())).is_some()),
                    4 => rx.recv_batch_timeout(Duration::from_millis(300), |fr| got.push(fr.to_vec())).map(|n| n > 0),
                    _ => {
                        let mut arx = rx.into_async().unwrap();
                        let r = rt.block_on(async {
                            match tokio::time::timeout(Duration::from_millis(300), arx.recv()).await {
                                Err(_) => Err(ErrorKind::TimedOut.into()),
                                Ok(Ok(Some(fr))) => Ok(Some(fr.to_vec())),
                                Ok(Ok(None)) => Ok(None),
                                Ok(Err(e)) => Err(e),
                            }
                        });
                        rx = arx.into_inner();
                        r.map(|fr| fr.map(|fr| got.push(fr)).is_some())
                    }
                };
                match r {
                    Ok(true) => {}
                    Ok(false) => panic!("{how:?} style {style}: end of stream"),
                    Err(e) => break e.kind(),
                }
            };
            assert!(
                matches!(end, ErrorKind::InvalidData | ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "{how:?} style {style}: {end:?}"
            );
            assert_eq!(got, frames[1..], "{how:?} style {style}: committed frames lost (ended {end:?})");
            drop(tx);
            // The producer's close makes the consumer look at head: the forgery must then be
            // reported, not taken for a clean end.
            let r = rx.recv_timeout(BOUND).map(|fr| fr.is_some());
            assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "{how:?} style {style}: after the close: {r:?}");
        }
    }
}

/// The trust model: the peer of the side that found the corruption fails "as soon as [it]
/// looks at the shared flag (a producer when it has to wait for room: until then its writes go
/// into room it already knew of...)". So a write into known room succeeds, and the first one
/// that must wait fails with `InvalidData`, for the byte, framed and async producers.
#[test]
fn a_producer_writes_into_known_room_then_fails_when_it_must_wait() {
    let _dog = watchdog("a_producer_writes_into_known_room", HANG);
    let rt = rt();
    for style in 0..3 {
        let Fixture { _ring, mut tx, rx: _rx, f, cap } = fixture();
        f.poison();
        match style {
            0 => {
                assert_eq!(tx.try_write(b"abc").unwrap(), 3, "into known room");
                let r = tx.write_all(&vec![0; cap]);
                assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "{r:?}");
            }
            1 => {
                let mut tx = tx.into_framed();
                tx.try_send(b"abc").unwrap();
                let mut n = 0;
                let err = loop {
                    match tx.send(&[0; 500]) {
                        Ok(()) => n += 1,
                        Err(e) => break e,
                    }
                    assert!(n < 2 * cap / 500, "the framed producer never looked at the flag");
                };
                assert_eq!(err.kind(), ErrorKind::InvalidData);
            }
            _ => {
                let mut tx = tx.into_async().unwrap();
                rt.block_on(async {
                    tx.write_all(b"abc").await.unwrap();
                    let r = tokio::time::timeout(BOUND, tx.write_all(&vec![0; cap])).await.expect("hung");
                    assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "{r:?}");
                });
            }
        }
    }
}
