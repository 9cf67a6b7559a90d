//! What the docs promise, checked: each test takes one claim a user would rely on (an error
//! kind in a `# Errors` section, a documented number, what a conversion, a drop or a peer's
//! death does) from the README, the rustdoc or a chapter of `docs`, named in the comment above
//! it, and provokes it. A test that fails is a difference between the docs and the behaviour:
//! mend whichever is wrong.

mod common;

use std::io::{BufRead, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::{in_child, page_size, spawn_child, Child};
use mirror_ring::{channel, Backend, MirrorMap, MirrorOptions, RingOptions, SharedRing, DEFAULT_CAPACITY};

fn kind<T>(r: std::io::Result<T>) -> ErrorKind {
    match r {
        Ok(_) => panic!("expected an error, got Ok"),
        Err(e) => e.kind(),
    }
}

// ---------------------------------------------------------------------------------------
// Numbers: capacities, rounding, frame lengths
// ---------------------------------------------------------------------------------------

/// ring/mod.rs `DEFAULT_CAPACITY` is 1 MiB; RingOptions::new() uses it (ring/mod.rs);
/// README "The default capacity is 1 MiB".
#[test]
fn default_capacity_is_1_mib() {
    assert_eq!(DEFAULT_CAPACITY, 1 << 20);
    let (tx, rx) = RingOptions::new().build().unwrap();
    assert_eq!(tx.capacity(), 1 << 20);
    assert_eq!(rx.capacity(), 1 << 20);
    let ring = RingOptions::new().shared().unwrap();
    assert_eq!(ring.capacity(), 1 << 20);
}

/// ring/mod.rs "rounded up to a power of two of at least one page"; mirror/mod.rs.
#[test]
fn capacity_rounds_up_to_power_of_two_of_at_least_a_page() {
    let ps = page_size();
    for (ask, want) in [(1, ps), (ps - 1, ps), (ps + 1, 2 * ps), (3 * ps, 4 * ps), (100_000, 131_072.max(ps))] {
        let (tx, _rx) = channel(ask).unwrap();
        assert_eq!(tx.capacity(), want, "channel({ask})");
        assert_eq!(MirrorMap::new(ask).unwrap().len(), want, "MirrorMap::new({ask})");
    }
}

/// ring/mod.rs "`InvalidInput` for a zero or absurd capacity"; mirror/mod.rs.
#[test]
fn zero_or_absurd_capacity_is_invalid_input() {
    assert_eq!(kind(channel(0)), ErrorKind::InvalidInput);
    assert_eq!(kind(channel(usize::MAX)), ErrorKind::InvalidInput);
    assert_eq!(kind(channel(usize::MAX / 2 + 2)), ErrorKind::InvalidInput);
    assert_eq!(kind(MirrorMap::new(0)), ErrorKind::InvalidInput);
    assert_eq!(kind(RingOptions::new().capacity(0).shared()), ErrorKind::InvalidInput);
}

/// README "the longest frame is `capacity - 8` bytes ... a longer one is refused with
/// `InvalidInput` before anything is written"; framed/producer.rs,  "nothing is
/// written; the ring keeps working".
#[test]
fn max_frame_len_is_capacity_minus_8_and_longer_is_invalid_input() {
    for ask in [1, 4 * page_size(), 1 << 20] {
        let (tx, rx) = channel(ask).unwrap();
        let cap = tx.capacity();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        assert_eq!(tx.max_frame_len(), cap - 8);
        assert_eq!(rx.max_frame_len(), cap - 8);
        let big = vec![7u8; cap - 7];
        assert_eq!(kind(tx.send(&big)), ErrorKind::InvalidInput);
        assert_eq!(kind(tx.try_send(&big)), ErrorKind::InvalidInput);
        assert_eq!(kind(tx.send_timeout(&big, Duration::from_millis(1))), ErrorKind::InvalidInput);
        assert_eq!(kind(tx.try_reserve(cap - 7)), ErrorKind::InvalidInput);
        assert_eq!(kind(rx.try_recv()), ErrorKind::WouldBlock, "nothing was written");
        // The largest frame fits and arrives whole.
        tx.try_send(&big[..cap - 8]).unwrap();
        let f = rx.try_recv().unwrap().unwrap();
        assert_eq!(f.len(), cap - 8);
        drop(f);
        // The ring keeps working.
        tx.send(b"after").unwrap();
        assert_eq!(&*rx.recv().unwrap().unwrap(), b"after");
    }
}

/// README "Zero-length frames are fine".
#[test]
fn zero_length_frames() {
    let (tx, rx) = channel(1).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    for _ in 0..3 * tx.capacity() / 8 {
        tx.send(&[]).unwrap();
        assert_eq!(rx.recv().unwrap().unwrap().len(), 0);
    }
    tx.reserve(0).unwrap().commit().unwrap();
    assert_eq!(rx.recv().unwrap().unwrap().len(), 0);
}

/// README "recv_batch ... (at most an eighth of the ring per call)"; framed/consumer.rs
/// "at most about an eighth of the ring (and at least one frame)".
#[test]
fn recv_batch_takes_at_most_an_eighth_of_the_ring() {
    let (tx, rx) = channel(16 * page_size()).unwrap();
    let cap = tx.capacity();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let msgs = vec![[1u8; 8]; cap / 16];
    let sent = tx.try_send_batch(&msgs).unwrap();
    assert!(sent * 16 > cap / 2, "sent {sent}");
    let mut total = 0;
    while total < sent {
        let mut bytes = 0;
        let n = rx.try_recv_batch(|f| bytes += 8 + f.len()).unwrap();
        assert!(n >= 1);
        assert!(bytes <= cap / 8 + 16, "one call took {bytes} bytes of a {cap}-byte ring");
        total += n;
    }
    assert_eq!(total, sent);
}

/// README "The default ... capacity ... `channel(4096)` is a 16 KiB ring on ... 16 KiB pages":
/// a capacity is whole pages of the running kernel.
#[test]
fn capacity_is_whole_pages() {
    let (tx, _rx) = channel(4096).unwrap();
    assert_eq!(tx.capacity(), page_size().max(4096));
}

// ---------------------------------------------------------------------------------------
// Errors of the byte ends between threads
// ---------------------------------------------------------------------------------------

/// producer.rs try_write: `WouldBlock` when full; empty buf; `BrokenPipe` when the
/// consumer is gone; lib.rs "Consumer gone: BrokenPipe"; write_timeout: `TimedOut`.
#[test]
fn producer_errors_between_threads() {
    let (mut tx, rx) = channel(1).unwrap();
    let cap = tx.capacity();
    assert_eq!(tx.try_write(&vec![1; cap + 10]).unwrap(), cap);
    assert_eq!(kind(tx.try_write(&[1])), ErrorKind::WouldBlock);
    assert_eq!(tx.try_write(&[]).unwrap(), 0, "an empty buf is not WouldBlock");
    assert_eq!(kind(tx.write_timeout(&[1], Duration::from_millis(5))), ErrorKind::TimedOut);
    assert_eq!(kind(tx.write_grant_timeout(1, Duration::from_millis(5))), ErrorKind::TimedOut);
    assert_eq!(kind(tx.write_grant(cap + 1)), ErrorKind::InvalidInput);
    assert_eq!(kind(tx.write_grant_blocking(cap + 1)), ErrorKind::InvalidInput);
    assert_eq!(tx.stats().timed_out, 2);
    assert!(!tx.is_abandoned());
    drop(rx);
    assert!(tx.is_abandoned());
    assert_eq!(kind(tx.try_write(&[1])), ErrorKind::BrokenPipe);
    assert_eq!(kind(tx.write(&[1])), ErrorKind::BrokenPipe);
    assert_eq!(kind(tx.write_timeout(&[1], Duration::from_millis(5))), ErrorKind::BrokenPipe);
    assert_eq!(kind(tx.write_grant(1)), ErrorKind::BrokenPipe);
    assert_eq!(kind(tx.write_grant_blocking(1)), ErrorKind::BrokenPipe);
    assert_eq!(kind(tx.read_from(&mut std::io::repeat(1))), ErrorKind::BrokenPipe);
}

/// producer.rs WriteGrant::commit: `InvalidInput` if `n` exceeds the grant, nothing committed;
/// consumer.rs ReadGrant::release likewise.
#[test]
fn grant_overcommit_and_overrelease_are_invalid_input() {
    let (mut tx, mut rx) = channel(1).unwrap();
    let g = tx.write_grant(3).unwrap();
    let len = g.len();
    assert_eq!(kind(g.commit(len + 1)), ErrorKind::InvalidInput);
    assert_eq!(rx.len(), 0, "nothing committed");
    tx.try_write(b"abc").unwrap();
    let g = rx.read_grant(3).unwrap();
    assert_eq!(g.len(), 3);
    assert_eq!(kind(g.release(4)), ErrorKind::InvalidInput);
    assert_eq!(rx.len(), 3, "nothing released");
    assert_eq!(kind(rx.read_grant(rx.capacity() + 1)), ErrorKind::InvalidInput);
}

/// consumer.rs try_read: `WouldBlock`, `Ok(0)` at end of stream; read_timeout `TimedOut`;
/// read_grant: `UnexpectedEof` when fewer than `min` can ever come, bytes stay readable; lib.rs
/// "fewer bytes left than a grant's minimum at the end of the stream: UnexpectedEof".
#[test]
fn consumer_errors_between_threads() {
    let (mut tx, mut rx) = channel(1).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(kind(rx.try_read(&mut buf)), ErrorKind::WouldBlock);
    assert_eq!(rx.try_read(&mut []).unwrap(), 0);
    assert_eq!(kind(rx.read_timeout(&mut buf, Duration::from_millis(5))), ErrorKind::TimedOut);
    assert_eq!(kind(rx.read_grant_timeout(1, Duration::from_millis(5))), ErrorKind::TimedOut);
    assert_eq!(kind(rx.write_to_timeout(&mut Vec::new(), Duration::from_millis(5))), ErrorKind::TimedOut);
    assert_eq!(rx.stats().timed_out, 3);
    assert_eq!(kind(rx.read_grant(1)), ErrorKind::WouldBlock);
    tx.write_all(b"abcde").unwrap();
    drop(tx);
    assert!(rx.is_abandoned());
    assert_eq!(kind(rx.read_grant(6)), ErrorKind::UnexpectedEof);
    assert_eq!(kind(rx.read_grant_blocking(6)), ErrorKind::UnexpectedEof);
    assert_eq!(kind(rx.read_grant_timeout(6, Duration::from_secs(5))), ErrorKind::UnexpectedEof);
    assert_eq!(&*rx.read_grant(5).unwrap(), b"abcde", "the bytes stay readable");
    assert_eq!(rx.read(&mut buf).unwrap(), 5);
    assert_eq!(rx.read(&mut buf).unwrap(), 0);
    assert_eq!(rx.try_read(&mut buf).unwrap(), 0);
    assert_eq!(rx.read_timeout(&mut buf, Duration::from_millis(5)).unwrap(), 0);
    assert!(rx.fill_buf().unwrap().is_empty());
    assert!(rx.read_grant(0).unwrap().is_empty());
    assert_eq!(rx.write_to(&mut Vec::new()).unwrap(), 0);
}

/// transfer.rs read_from: a reader claiming more than it was lent: `InvalidData`,
/// nothing committed; an error of the reader passed through, nothing committed.
/// transfer.rs write_to: `WriteZero` for a writer that took nothing, `InvalidData` for
/// one that claims more, nothing released.
#[test]
fn read_from_write_to_refuse_lying_peers() {
    struct Liar(usize);
    impl Read for Liar {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            buf.fill(9);
            Ok(buf.len() + self.0)
        }
    }
    impl Write for Liar {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len() + self.0)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    struct Fails;
    impl Read for Fails {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            buf.fill(3);
            Err(std::io::Error::from_raw_os_error(libc::EIO))
        }
    }
    let (mut tx, mut rx) = channel(1).unwrap();
    assert_eq!(kind(tx.read_from(&mut Liar(1))), ErrorKind::InvalidData);
    assert_eq!(rx.len(), 0);
    let e = tx.read_from(&mut Fails).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    assert_eq!(rx.len(), 0);
    tx.write_all(b"xyz").unwrap();
    assert_eq!(kind(rx.write_to(&mut Liar(1))), ErrorKind::InvalidData);
    assert_eq!(rx.len(), 3);
    let mut zero: &mut [u8] = &mut [];
    assert_eq!(kind(rx.write_to(&mut zero)), ErrorKind::WriteZero);
    assert_eq!(rx.len(), 3);
}

/// README / lib.rs: "Dropping the consumer makes writes fail with BrokenPipe"; producer.rs
/// "`flush` has nothing to do"; lib.rs "Dropping the producer closes the ring".
/// framed/producer.rs flush: `BrokenPipe` when the consumer closed (frames published).
#[test]
fn framed_errors_between_threads() {
    let (tx, rx) = channel(1).unwrap();
    let cap = tx.capacity();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    assert_eq!(kind(rx.try_recv()), ErrorKind::WouldBlock);
    assert_eq!(kind(rx.recv_timeout(Duration::from_millis(5))), ErrorKind::TimedOut);
    let mut v = vec![1, 2, 3];
    assert_eq!(kind(rx.recv_into_timeout(&mut v, Duration::from_millis(5))), ErrorKind::TimedOut);
    assert!(v.is_empty(), "framed/consumer.rs `buf` is left empty on any error");
    assert_eq!(kind(rx.try_recv_batch(|_| {})), ErrorKind::WouldBlock);
    assert_eq!(kind(rx.recv_batch_timeout(Duration::from_millis(5), |_| {})), ErrorKind::TimedOut);
    tx.try_send(&vec![0; cap - 8]).unwrap();
    assert_eq!(kind(tx.try_send(&[])), ErrorKind::WouldBlock);
    assert_eq!(kind(tx.send_timeout(&[], Duration::from_millis(5))), ErrorKind::TimedOut);
    assert_eq!(kind(tx.try_send_batch(&[[0u8; 1]])), ErrorKind::WouldBlock);
    assert_eq!(kind(tx.reserve_timeout(0, Duration::from_millis(5))), ErrorKind::TimedOut);
    assert_eq!(tx.try_send_batch::<&[u8]>(&[]).unwrap(), 0);
    drop(rx);
    assert!(tx.is_abandoned());
    assert_eq!(kind(tx.flush()), ErrorKind::BrokenPipe);
    assert_eq!(kind(tx.send(&[])), ErrorKind::BrokenPipe);
    assert_eq!(kind(tx.try_send(&[])), ErrorKind::BrokenPipe);
    assert_eq!(kind(tx.send_batch(&[[0u8; 1]])), ErrorKind::BrokenPipe);
    assert_eq!(kind(tx.reserve(1)), ErrorKind::BrokenPipe);
}

/// framed/producer.rs into_inner "Further bytes follow the last frame directly";
/// framed/consumer.rs "positioned after the last frame read"; framed/mod.rs stats kept
/// across into_framed/into_inner.
#[test]
fn into_inner_positions_and_keeps_stats() {
    // No spin: the read parks at once, so its timeout ends a park (`timed_out`) even when the
    // thread loses its CPU for the 2 ms (a CI run on a loaded machine once saw the deadline
    // pass inside the 50 µs spin, where no park is counted).
    let (tx, rx) = RingOptions::new().capacity(1).spin_budget(Duration::ZERO).build().unwrap();
    let mut rx = rx;
    let mut b = [0u8; 1];
    let _ = rx.read_timeout(&mut b, Duration::from_millis(2));
    assert_eq!(rx.stats().timed_out, 1);
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    assert_eq!(rx.stats().timed_out, 1, "kept across into_framed");
    tx.send(b"abc").unwrap();
    tx.send(b"defg").unwrap();
    let mut raw_tx = tx.into_inner();
    raw_tx.write_all(b"RAW").unwrap();
    assert_eq!(&*rx.recv().unwrap().unwrap(), b"abc");
    let mut raw_rx = rx.into_inner();
    assert_eq!(raw_rx.stats().timed_out, 1, "kept across into_inner");
    // Next: the frame "defg" (8-byte header + 8 bytes), then the raw bytes.
    let g = raw_rx.read_grant(16 + 3).unwrap();
    assert_eq!(&g[8..12], b"defg");
    assert_eq!(&g[16..19], b"RAW");
}

/// stats.rs "Every count is of a slow path; a ring that never waits counts nothing".
#[test]
fn stats_count_nothing_without_waits() {
    let (mut tx, mut rx) = channel(1).unwrap();
    let mut buf = [0; 8];
    for _ in 0..1000 {
        tx.try_write(b"12345678").unwrap();
        rx.try_read(&mut buf).unwrap();
        let g = tx.write_grant(8).unwrap();
        g.commit(8).unwrap();
        let g = rx.read_grant(8).unwrap();
        g.release(8).unwrap();
    }
    assert_eq!(tx.stats(), mirror_ring::Stats::default());
    assert_eq!(rx.stats(), mirror_ring::Stats::default());
    assert_eq!(tx.stats_handle().get(), mirror_ring::Stats::default());
}

// ---------------------------------------------------------------------------------------
// Mirror options
// ---------------------------------------------------------------------------------------

/// mirror/mod.rs "Together with huge_pages it is `InvalidInput`".
#[test]
fn thp_with_huge_pages_is_invalid_input() {
    let r = MirrorOptions::new().huge_pages(true).transparent_huge_pages(true).map(4 << 20);
    assert_eq!(kind(r), ErrorKind::InvalidInput);
    let r = RingOptions::new().huge_pages(true).transparent_huge_pages(true).build();
    assert_eq!(kind(r), ErrorKind::InvalidInput);
}

/// mirror/mod.rs README "explicit mremap backends or `Memfd` are refused with
/// `Unsupported`" for huge pages ("with too few free pages they fail with `OutOfMemory`").
#[test]
fn huge_pages_with_explicit_memfd_is_unsupported() {
    let r = MirrorOptions::new().huge_pages(true).backend(Backend::Memfd).map(2 << 20);
    assert_eq!(kind(r), ErrorKind::Unsupported);
    for b in [Backend::MirrorFlag, Backend::Duplicate] {
        let k = kind(MirrorOptions::new().huge_pages(true).backend(b).map(2 << 20));
        assert!(matches!(k, ErrorKind::Unsupported | ErrorKind::OutOfMemory), "{b:?}: {k:?}");
    }
}

/// mirror/mod.rs README: THP with knobs at `never` fails with `Unsupported` naming the
/// file; mirror/mod.rs an explicit `Memfd` fails with `Unsupported`.
#[test]
fn thp_refusals_are_unsupported() {
    let r = MirrorOptions::new().transparent_huge_pages(true).backend(Backend::Memfd).map(2 << 20);
    assert_eq!(kind(r), ErrorKind::Unsupported);
    let knob = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled").unwrap_or_default();
    let per = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/shmem_enabled")
        .unwrap_or_else(|_| "[inherit]".into());
    if knob.contains("[never]") && (per.contains("[inherit]") || per.contains("[never]")) {
        let e = RingOptions::new().transparent_huge_pages(true).build().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.to_string().contains("shmem_enabled"), "{e}");
    }
}

/// README table: `backend()` reports the backend actually used, never `Auto`.
#[test]
fn backend_is_never_auto() {
    let (tx, rx) = channel(1).unwrap();
    assert_ne!(tx.backend(), Backend::Auto);
    assert_eq!(tx.backend(), rx.backend());
    for b in common::available() {
        let (tx, _rx) = RingOptions::new().backend(b).capacity(1).build().unwrap();
        assert_eq!(tx.backend(), b);
    }
}

// ---------------------------------------------------------------------------------------
// Between processes: roles, fork, from_fd, send_to
// ---------------------------------------------------------------------------------------

/// README "a second claim, from any process, fails with `AlreadyExists`"; lib.rs "also after
/// the first claimant closed or died".
#[test]
fn second_claim_already_exists_also_after_close_and_death() {
    let ring = RingOptions::new().capacity(1).shared().unwrap();
    let tx = ring.clone().into_producer().unwrap();
    assert_eq!(kind(ring.clone().into_producer()), ErrorKind::AlreadyExists);
    drop(tx);
    assert_eq!(kind(ring.clone().into_producer()), ErrorKind::AlreadyExists, "after a close");
    // Another process: a claim there fails too, and a claimant that dies keeps the role.
    let r2 = ring.clone();
    let code = in_child(move || match r2.into_producer() {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => 0,
        _ => 1,
    });
    assert_eq!(code, 0);
    let r3 = ring.clone();
    let code = in_child(move || {
        let rx = r3.into_consumer().unwrap();
        std::mem::forget(rx);
        0 // dies holding the role
    });
    assert_eq!(code, 0);
    assert_eq!(kind(ring.clone().into_consumer()), ErrorKind::AlreadyExists, "after a death");
}

/// shared.rs take_over: `NotFound` for a never-claimed role, `AlreadyExists` while the
/// holder lives (this process) and for a cleanly closed role.
#[test]
fn take_over_refusals() {
    let ring = RingOptions::new().capacity(1).shared().unwrap();
    assert_eq!(kind(ring.take_over_producer()), ErrorKind::NotFound);
    assert_eq!(kind(ring.take_over_consumer()), ErrorKind::NotFound);
    let tx = ring.clone().into_producer().unwrap();
    assert_eq!(kind(ring.take_over_producer()), ErrorKind::AlreadyExists);
    drop(tx);
    assert_eq!(kind(ring.take_over_producer()), ErrorKind::AlreadyExists);
}

/// README "a forked child's copy returns `Unsupported` and its drop does not close the
/// parent's ring"; lifecycle.rs "Calls that return a `Result` fail with `Unsupported`; the
/// others (`consume`, drops) do nothing"; is_abandoned "Always true in a forked child".
#[test]
fn forked_copies_are_unsupported_and_inert() {
    let (mut tx, mut rx) = channel(1).unwrap();
    tx.write_all(b"parent").unwrap();
    let code = in_child(|| {
        let mut bad = 0;
        let mut buf = [0u8; 8];
        let checks: Vec<ErrorKind> = vec![
            kind(tx.try_write(b"x")),
            kind(tx.write(b"x")),
            kind(tx.write_timeout(b"x", Duration::from_millis(1))),
            kind(tx.write_grant(1)),
            kind(tx.flush()),
            kind(tx.try_write(&[])),
            kind(rx.try_read(&mut buf)),
            kind(rx.read(&mut buf)),
            kind(rx.read_grant(0)),
            kind(rx.fill_buf()),
            kind(rx.write_to(&mut Vec::new())),
            kind(rx.try_read(&mut [])),
        ];
        for (i, k) in checks.iter().enumerate() {
            if *k != ErrorKind::Unsupported {
                eprintln!("check {i}: {k:?}");
                bad += 1;
            }
        }
        if !tx.is_abandoned() || !rx.is_abandoned() {
            bad += 100;
        }
        rx.consume(3);
        // SAFETY (test): the child's copies, dropped once here; the child then _exits without
        // running any other destructor, so the originals are never dropped in the child.
        unsafe { drop(std::ptr::read(&tx)) };
        // SAFETY: as above.
        unsafe { drop(std::ptr::read(&rx)) };
        bad
    });
    assert_eq!(code, 0);
    assert!(!tx.is_abandoned() && !rx.is_abandoned(), "the child's drops closed nothing");
    let mut buf = [0u8; 6];
    rx.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"parent", "the child's consume released nothing");
    tx.write_all(b"more").unwrap();
}

/// Same for framed ends (lifecycle.rs "a frame dropped, a framed flush, closing on drop").
#[test]
fn forked_framed_copies_are_unsupported_and_inert() {
    let (tx, rx) = channel(1).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    tx.set_batch(8);
    tx.send(b"pending").unwrap(); // held back by the batch
    let code = in_child(|| {
        let ks = [
            kind(tx.send(b"x")),
            kind(tx.try_send(b"x")),
            kind(tx.flush()),
            kind(tx.reserve(1)),
            kind(rx.try_recv()),
            kind(rx.recv()),
            kind(rx.try_recv_batch(|_| {})),
        ];
        let bad = ks.iter().filter(|k| **k != ErrorKind::Unsupported).count() as i32;
        if bad != 0 {
            eprintln!("{ks:?}");
        }
        // SAFETY (test): as in the byte-end test above.
        unsafe { drop(std::ptr::read(&tx)) };
        // SAFETY: as above.
        unsafe { drop(std::ptr::read(&rx)) };
        bad
    });
    assert_eq!(code, 0);
    assert_eq!(kind(rx.try_recv()), ErrorKind::WouldBlock, "the child's drop published nothing");
    tx.flush().unwrap();
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"pending");
}

/// lifecycle.rs / shared.rs with `dont_fork`: claims in a child fail with
/// `Unsupported`, take-overs too, and dropping the handles there unmaps nothing.
#[test]
fn dont_fork_claims_in_child_are_unsupported() {
    let ring = RingOptions::new().capacity(1).dont_fork(true).shared().unwrap();
    let r = ring.clone();
    let code = in_child(move || {
        let a = kind(r.clone().into_producer());
        let b = kind(r.clone().into_consumer());
        let c = kind(r.take_over_producer());
        drop(r);
        if [a, b, c] == [ErrorKind::Unsupported; 3] {
            0
        } else {
            eprintln!("{a:?} {b:?} {c:?}");
            1
        }
    });
    assert_eq!(code, 0);
    let _tx = ring.clone().into_producer().unwrap();
    let _rx = ring.into_consumer().unwrap();
}

fn memfd_raw(len: usize, seals: libc::c_int) -> OwnedFd {
    let f = common::memfd(true);
    f.set_len(len as u64).unwrap();
    if seals != 0 {
        // SAFETY: fcntl on an open descriptor.
        assert_eq!(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_ADD_SEALS, seals) }, 0);
    }
    f.into()
}

/// A copy of a real ring's file, as a new memfd with `seals`: header valid.
fn copy_of_ring(ring: &SharedRing, seals: libc::c_int, extra: usize) -> OwnedFd {
    let src = ring.as_fd().unwrap();
    let len = page_size() + ring.capacity();
    let fd = memfd_raw(len + extra, 0);
    let mut buf = vec![0u8; len];
    // SAFETY: buf is len bytes.
    let n = unsafe { libc::pread(src.as_raw_fd(), buf.as_mut_ptr().cast(), len, 0) };
    assert_eq!(n as usize, len);
    // SAFETY: buf is len bytes.
    let n = unsafe { libc::pwrite(fd.as_raw_fd(), buf.as_ptr().cast(), len, 0) };
    assert_eq!(n as usize, len);
    if seals != 0 {
        // SAFETY: valid fd.
        assert_eq!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }, 0);
    }
    fd
}

/// shared.rs / README "To an unrelated process": `from_fd` refuses with `InvalidData`
/// anything but a memfd sealed SHRINK|GROW, not WRITE, open read-write, one page plus a
/// power-of-two capacity, valid header.
#[test]
fn from_fd_validation_errors() {
    let ring = RingOptions::new().backend(Backend::Memfd).capacity(1).shared().unwrap();
    let ok = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    // The copy with the right seals is accepted (the validation is of the file, not its origin).
    let good = SharedRing::from_fd(copy_of_ring(&ring, ok, 0)).unwrap();
    assert_eq!(good.capacity(), ring.capacity());
    drop(good);
    // Unsealed, sealed against shrinking only, sealed against writing.
    for seals in [0, libc::F_SEAL_SHRINK, libc::F_SEAL_GROW, ok | libc::F_SEAL_WRITE] {
        let e = SharedRing::from_fd(copy_of_ring(&ring, seals, 0)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData, "seals {seals:#x}: {e}");
    }
    // A page too long.
    let e = SharedRing::from_fd(copy_of_ring(&ring, ok, page_size())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
    // Zeros: no magic.
    let e = SharedRing::from_fd(memfd_raw(page_size() + ring.capacity(), ok)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
    // Open read-only (through /proc/self/fd).
    let path = format!("/proc/self/fd/{}", ring.as_fd().unwrap().as_raw_fd());
    let ro = std::fs::File::open(&path).unwrap();
    let e = SharedRing::from_fd(ro.into()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
    // A regular file on disk (not shared memory).
    let f = std::fs::File::open("/proc/self/exe").unwrap();
    assert_eq!(kind(SharedRing::from_fd(f.into())), ErrorKind::InvalidData);
}

/// shared.rs send_to: `Unsupported` for fd-less backends; shared.rs recv_from:
/// `UnexpectedEof` if the socket closed first.
#[test]
fn send_to_and_recv_from_errors() {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let ring = RingOptions::new().backend(Backend::Duplicate).capacity(1).shared().unwrap();
    assert_eq!(kind(ring.send_to(&a)), ErrorKind::Unsupported);
    drop(a);
    assert_eq!(kind(SharedRing::recv_from(&b)), ErrorKind::UnexpectedEof);
}

/// shared.rs recv_fd: "`InvalidData` if the message carried no descriptor, or more than one
/// (any received are closed)"; recv_from: "plus those of recv_fd". A message with two, or with
/// a ring's memfd and another descriptor, is refused and leaves no descriptor open (before, two
/// to eight were taken, the first returned: a found defect; nine or more were refused).
#[test]
fn a_message_with_more_than_one_descriptor_is_refused() {
    // In a child: one thread, so that the descriptors open are this test's alone.
    let status = in_child(|| {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
        let (null, zero) = (std::fs::File::open("/dev/null").unwrap(), std::fs::File::open("/dev/zero").unwrap());
        let before = common::open_fds();
        assert_eq!(common::send_fds(&a, &[null.as_raw_fd(), zero.as_raw_fd()]), 1);
        if kind(mirror_ring::recv_fd(&b)) != ErrorKind::InvalidData {
            return 2;
        }
        assert_eq!(common::send_fds(&a, &[ring.as_fd().unwrap().as_raw_fd(), null.as_raw_fd()]), 1);
        if kind(SharedRing::recv_from(&b)) != ErrorKind::InvalidData {
            return 3;
        }
        if common::open_fds() != before {
            return 4;
        }
        // One descriptor still goes through.
        ring.send_to(&a).unwrap();
        match SharedRing::recv_from(&b) {
            Ok(r) if r.capacity() == 4096 => 0,
            _ => 5,
        }
    });
    assert_eq!(status, 0, "2, 3: not InvalidData; 4: a refused message left descriptors open; 5: one ring refused");
}

/// shared.rs recv_from / recv_fd: one descriptor sent is received, also by a process that asks
/// its socket for the sender's credentials (`SO_PASSCRED`) and pidfd (`SO_PASSPIDFD`, where
/// the kernel has it), which the kernel adds beside the descriptor; no descriptor is left open
/// (the pidfd is closed). Before, the control buffer had room for descriptors only: the kernel
/// cut the message short, discarded the ring, and the error blamed the sender (found by an
/// adversarial review).
#[test]
fn a_receiver_that_asks_for_credentials_still_gets_the_ring() {
    const SO_PASSPIDFD: libc::c_int = 76;
    // In a child: one thread, so that the descriptor count is this test's alone.
    let status = in_child(|| {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let one: libc::c_int = 1;
        for opt in [libc::SO_PASSCRED, SO_PASSPIDFD] {
            // SAFETY: setsockopt with a valid int option value on our own socket (SO_PASSPIDFD
            // is refused before Linux 6.5: then only credentials come).
            unsafe { libc::setsockopt(b.as_raw_fd(), libc::SOL_SOCKET, opt, (&one as *const libc::c_int).cast(), 4) };
        }
        let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
        let before = common::open_fds().len();
        ring.send_to(&a).unwrap();
        match SharedRing::recv_from(&b) {
            Err(e) => {
                let _ =
                    std::io::Write::write_all(&mut std::io::stderr(), format!("the ring was lost: {e}\n").as_bytes());
                2
            }
            Ok(got) if got.capacity() != 4096 => 3,
            // Only the ring's descriptor stays open.
            Ok(_) if common::open_fds().len() != before + 1 => 4,
            Ok(_) => 0,
        }
    });
    assert_eq!(status, 0, "2: the ring was lost, 3: another ring, 4: a descriptor left open");
}

/// shared.rs from_fd: "It is made close-on-exec": a descriptor inherited across `exec` arrives
/// without the flag, and the attached ring's must not pass on to later programs.
#[test]
fn an_attached_rings_descriptor_is_close_on_exec() {
    let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    let fd = ring.as_fd().unwrap().try_clone_to_owned().unwrap();
    // SAFETY: fcntl on our own descriptor: as exec inheritance hands it over.
    assert_eq!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) }, 0);
    let attached = SharedRing::from_fd(fd).unwrap();
    // SAFETY: fcntl on a descriptor the ring keeps open.
    let flags = unsafe { libc::fcntl(attached.as_fd().unwrap().as_raw_fd(), libc::F_GETFD) };
    assert_ne!(flags & libc::FD_CLOEXEC, 0, "flags {flags}");
}

// ---------------------------------------------------------------------------------------
// Peer death
// ---------------------------------------------------------------------------------------

const DEATH_BOUND: Duration = Duration::from_millis(1000); // 25 ms documented; wide margin

/// A child process that claims `ring`'s producer, writes `last` and sleeps until killed.
fn producer_child(ring: &SharedRing, last: &'static [u8]) -> Child {
    let r = ring.clone();
    spawn_child(move || {
        let mut tx = r.into_producer().unwrap();
        tx.write_all(last).unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    })
}

/// A child process that claims `ring`'s consumer, reads nothing and sleeps until killed;
/// returned once the claim shows in the header.
fn idle_consumer_child(ring: &SharedRing) -> Child {
    let r = ring.clone();
    let child = spawn_child(move || {
        let _rx = r.into_consumer().unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let start = Instant::now();
    while ring.take_over_consumer().err().map(|e| e.kind()) == Some(ErrorKind::NotFound) {
        assert!(start.elapsed() < Duration::from_secs(10), "the child never claimed the consumer");
        std::thread::sleep(Duration::from_millis(1));
    }
    child
}

/// README "Peer death": a blocked reader gets every committed byte, then `UnexpectedEof`,
/// within the 25 ms watch interval plus scheduling; Stats::peer_died counts it; try_* and
/// is_abandoned report it too.
#[test]
fn producer_death_seen_by_blocked_reader() {
    let ring = RingOptions::new().capacity(1).shared().unwrap();
    let mut rx = ring.clone().into_consumer().unwrap();
    let child = producer_child(&ring, b"last words");
    let mut buf = [0u8; 10];
    rx.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"last words");
    let (r, after) = child.kill_during(Duration::from_millis(50), || rx.read(&mut buf));
    assert_eq!(kind(r), ErrorKind::UnexpectedEof);
    eprintln!("reader saw the producer's death {after:?} after the kill");
    assert!(after < DEATH_BOUND, "{after:?}");
    assert!(rx.stats().peer_died >= 1, "{:?}", rx.stats());
    assert!(rx.is_abandoned());
    assert_eq!(kind(rx.try_read(&mut buf)), ErrorKind::UnexpectedEof);
    drop(child);
}

/// README: "the writer gets `BrokenPipe`"; lifecycle.rs "Writes to a dead consumer: a write that
/// fits is accepted ... the next write that has to wait for space gets `BrokenPipe`".
#[test]
fn consumer_death_seen_by_blocked_writer() {
    let ring = RingOptions::new().capacity(1).shared().unwrap();
    let mut tx = ring.clone().into_producer().unwrap();
    let child = idle_consumer_child(&ring);
    let cap = tx.capacity();
    tx.write_all(&vec![1; cap]).unwrap();
    let (r, after) = child.kill_during(Duration::from_millis(50), || tx.write(&[1]));
    assert_eq!(kind(r), ErrorKind::BrokenPipe);
    eprintln!("writer saw the consumer's death {after:?} after the kill");
    assert!(after < DEATH_BOUND, "{after:?}");
    assert!(tx.stats().peer_died >= 1, "{:?}", tx.stats());
    assert!(tx.is_abandoned());
    assert_eq!(kind(tx.try_write(&[1])), ErrorKind::BrokenPipe);
    drop(child);
}

/// consumer.rs read_grant: `UnexpectedEof` when the producer's process died with fewer
/// than `min` committed bytes left; a smaller `min` lends them.
#[test]
fn read_grant_after_death_with_short_rest() {
    let ring = RingOptions::new().capacity(1).shared().unwrap();
    let mut rx = ring.clone().into_consumer().unwrap();
    let r = ring.clone();
    let code = in_child(move || {
        let mut tx = r.into_producer().unwrap();
        tx.write_all(b"abc").unwrap();
        std::mem::forget(tx);
        0
    });
    assert_eq!(code, 0);
    let e = rx.read_grant_timeout(5, Duration::from_secs(5)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{e}");
    assert_eq!(&*rx.read_grant(3).unwrap(), b"abc");
}

// ---------------------------------------------------------------------------------------
// Poisoning through a corrupt frame (a memfd ring, the header scribbled over by "the peer")
// ---------------------------------------------------------------------------------------

/// README "a corrupt one poisons the ring (`InvalidData` for good: at once for the consumer,
/// and for the producer as soon as it has to wait for room ...)"; framed/consumer.rs "for
/// good: every later call fails too".
#[test]
fn corrupt_frame_poisons_for_good() {
    let ring = RingOptions::new().backend(Backend::Memfd).capacity(1).shared().unwrap();
    let cap = ring.capacity();
    let ps = page_size();
    let fd = ring.as_fd().unwrap().as_raw_fd();
    let mut tx = ring.clone().into_producer().unwrap().into_framed();
    let mut rx = ring.clone().into_consumer().unwrap().into_framed();
    tx.send(b"good").unwrap();
    assert_eq!(&*rx.recv().unwrap().unwrap(), b"good");
    tx.send(b"victim").unwrap();
    // The second frame's header is at stream position 16: file offset page + 16.
    let garbage = 0x8000_0000_ffff_ff00u64.to_le_bytes();
    // SAFETY: 8 bytes inside the memfd's data.
    let n = unsafe { libc::pwrite(fd, garbage.as_ptr().cast(), 8, (ps + 16) as libc::off_t) };
    assert_eq!(n, 8);
    assert_eq!(kind(rx.try_recv()), ErrorKind::InvalidData);
    assert_eq!(kind(rx.try_recv()), ErrorKind::InvalidData, "for good");
    assert_eq!(kind(rx.recv_timeout(Duration::from_millis(5))), ErrorKind::InvalidData);
    let mut v = Vec::new();
    assert_eq!(kind(rx.recv_into(&mut v)), ErrorKind::InvalidData);
    // The producer: as soon as it has to wait for room.
    let mut saw = None;
    for _ in 0..(2 * cap / 16 + 2) {
        match tx.send_timeout(&[0; 8], Duration::from_millis(50)) {
            Ok(()) => {}
            Err(e) => {
                saw = Some(e.kind());
                break;
            }
        }
    }
    assert_eq!(saw, Some(ErrorKind::InvalidData));
}

// ---------------------------------------------------------------------------------------
// Async ends
// ---------------------------------------------------------------------------------------

#[cfg(feature = "tokio")]
mod asynch {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
    }

    /// ring/mod.rs "every call fails with `BrokenPipe`" after the async producer's
    /// shutdown; the reader sees end of stream (README async example).
    #[test]
    fn async_shutdown_then_broken_pipe() {
        rt().block_on(async {
            let (tx, rx) = channel(1).unwrap();
            let (mut tx, mut rx) = (tx.into_async().unwrap(), rx.into_async().unwrap());
            tx.write_all(b"x").await.unwrap();
            tx.shutdown().await.unwrap();
            assert_eq!(kind(tx.write(b"y").await), ErrorKind::BrokenPipe);
            // asynch/ends.rs into_async: "`BrokenPipe` for a producer that an async end shut
            // down ... and handed back with `into_inner`".
            assert_eq!(kind(tx.into_inner().into_async()), ErrorKind::BrokenPipe);
            let mut v = Vec::new();
            rx.read_to_end(&mut v).await.unwrap();
            assert_eq!(v, b"x");
        });
    }

    /// README "A dead peer process reaches an async end as it reaches a blocking one
    /// (`UnexpectedEof` for the reader, `BrokenPipe` for the writer, within about 25 ms)".
    #[test]
    fn async_reader_sees_producer_death() {
        let ring = RingOptions::new().capacity(1).shared().unwrap();
        let rx = ring.clone().into_consumer().unwrap();
        let child = producer_child(&ring, b"z");
        let mut rx = rx.into_async().unwrap();
        let rt = rt();
        let mut b = [0u8; 1];
        rt.block_on(rx.read_exact(&mut b)).unwrap();
        let (r, after) = child.kill_during(Duration::from_millis(50), || rt.block_on(rx.read(&mut b)));
        assert_eq!(kind(r), ErrorKind::UnexpectedEof);
        eprintln!("async reader saw the death {after:?} after the kill");
        assert!(after < DEATH_BOUND, "{after:?}");
        drop(child);
    }

    #[test]
    fn async_writer_sees_consumer_death() {
        let ring = RingOptions::new().capacity(1).shared().unwrap();
        let tx = ring.clone().into_producer().unwrap();
        let child = idle_consumer_child(&ring);
        let cap = tx.capacity();
        let mut tx = tx.into_async().unwrap();
        let rt = rt();
        rt.block_on(tx.write_all(&vec![0; cap])).unwrap();
        let (r, after) = child.kill_during(Duration::from_millis(50), || rt.block_on(tx.write(&[1])));
        assert_eq!(kind(r), ErrorKind::BrokenPipe);
        eprintln!("async writer saw the death {after:?} after the kill");
        assert!(after < DEATH_BOUND, "{after:?}");
        drop(child);
    }
}

// ---------------------------------------------------------------------------------------
// Batching, drops, conversions
// ---------------------------------------------------------------------------------------

/// framed/producer.rs set_batch "at least 1"; "Pending frames are also published when a
/// quarter of the ring is pending"; README "set_batch(n) lets up to n frames share one publish
/// (... when a quarter of the ring is pending ...)".
#[test]
fn set_batch_publishes_at_a_quarter_of_the_ring() {
    let (tx, rx) = channel(16 * page_size()).unwrap();
    let cap = tx.capacity();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    tx.set_batch(0);
    assert_eq!(tx.batch(), 1);
    tx.set_batch(usize::MAX);
    let frame = [3u8; 56]; // 64 bytes in the ring
    let mut sent = 0;
    while !rx.try_recv().is_ok_and(|f| f.is_some()) {
        tx.try_send(&frame).unwrap();
        sent += 64;
        assert!(sent <= cap / 4 + 64, "nothing published after {sent} bytes pending (ring {cap})");
    }
    assert!(sent >= cap / 4 - 64, "published early at {sent}");
}

/// docs/framing.rs "when the consumer is asleep waiting for data (checked on every send)".
#[test]
fn set_batch_publishes_when_the_consumer_sleeps() {
    let (tx, rx) = RingOptions::new().capacity(1).spin_budget(Duration::ZERO).build().unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    tx.set_batch(1000);
    let t = std::thread::spawn(move || {
        let got = rx.recv_timeout(Duration::from_secs(5)).map(|f| f.map(|f| f.to_vec()));
        (got, rx)
    });
    std::thread::sleep(Duration::from_millis(200)); // the consumer is asleep by now
    tx.send(b"wake").unwrap();
    let (got, _rx) = t.join().unwrap();
    assert_eq!(got.unwrap().unwrap(), b"wake");
    drop(tx);
}

/// FramedProducer docs: "Dropping the producer publishes every pending frame and closes the
/// ring"; send_batch "Any frames held back by set_batch are published with it".
#[test]
fn framed_drop_and_send_batch_publish_pending() {
    let (tx, rx) = channel(1).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    tx.set_batch(100);
    tx.send(b"a").unwrap();
    assert_eq!(kind(rx.try_recv()), ErrorKind::WouldBlock);
    assert_eq!(tx.send_batch(&[b"b"]).unwrap(), 1);
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"a");
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"b");
    tx.send(b"c").unwrap();
    drop(tx);
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"c");
    assert!(rx.try_recv().unwrap().is_none());
}

/// FrameGrant: "dropping it uncommitted sends nothing"; truncate.
#[test]
fn frame_grant_drop_sends_nothing() {
    let (tx, rx) = channel(1).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let mut g = tx.reserve(40).unwrap();
    assert_eq!(g.len(), 40);
    assert_eq!(g.as_ptr() as usize % 8, 0, "8-byte aligned");
    g.fill(1);
    drop(g);
    assert_eq!(kind(rx.try_recv()), ErrorKind::WouldBlock);
    let mut g = tx.reserve(40).unwrap();
    g[..2].copy_from_slice(b"hi");
    g.truncate(2);
    g.commit().unwrap();
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"hi");
}

/// framed/consumer.rs recv: `UnexpectedEof` when the producer's process died without
/// closing (after every frame it published was read).
#[test]
fn framed_producer_death_is_unexpected_eof() {
    let ring = RingOptions::new().capacity(1).shared().unwrap();
    let mut rx = ring.clone().into_consumer().unwrap().into_framed();
    let r = ring.clone();
    let code = in_child(move || {
        let mut tx = r.into_producer().unwrap().into_framed();
        tx.send(b"one").unwrap();
        tx.send(b"two").unwrap();
        std::mem::forget(tx);
        0
    });
    assert_eq!(code, 0);
    assert_eq!(&*rx.recv().unwrap().unwrap(), b"one");
    assert_eq!(&*rx.recv().unwrap().unwrap(), b"two");
    assert_eq!(kind(rx.recv_timeout(Duration::from_secs(5))), ErrorKind::UnexpectedEof);
    assert_eq!(kind(rx.try_recv()), ErrorKind::UnexpectedEof);
    assert_eq!(kind(rx.try_recv_batch(|_| {})), ErrorKind::UnexpectedEof);
    assert!(rx.is_abandoned());
}

// ---------------------------------------------------------------------------------------
// Limits at creation (lib.rs "# Errors", ring/mod.rs lock_memory)
// ---------------------------------------------------------------------------------------

/// lib.rs "`OutOfMemory` from creation names the limit involved, `RLIMIT_AS` ... OS
/// failures keep their errno (... as `source()` where context is added)".
#[test]
fn rlimit_as_is_out_of_memory_naming_the_limit() {
    let code = in_child(|| {
        let vm = common::vm_size().unwrap();
        if common::set_soft_limit(libc::RLIMIT_AS, vm + (64 << 20)).is_none() {
            return 2;
        }
        let e = match RingOptions::new().capacity(1 << 30).build() {
            Ok(_) => return 3,
            Err(e) => e,
        };
        let src = std::error::Error::source(e.get_ref().map(|x| x as &dyn std::error::Error).unwrap_or(&e));
        let errno = src.and_then(|s| s.downcast_ref::<std::io::Error>()).and_then(|s| s.raw_os_error());
        eprintln!("{e} / kind {:?} / source errno {errno:?}", e.kind());
        if e.kind() != ErrorKind::OutOfMemory {
            return 4;
        }
        if !e.to_string().contains("RLIMIT_AS") {
            return 5;
        }
        if errno != Some(libc::ENOMEM) {
            return 6;
        }
        0
    });
    assert_eq!(code, 0);
}

/// ring/mod.rs / README "Locked in memory": over RLIMIT_MEMLOCK, `OutOfMemory` naming
/// the limit; `PermissionDenied` when the limit is zero.
#[test]
fn lock_memory_limits() {
    for (limit, want) in [(0usize, ErrorKind::PermissionDenied), (page_size() * 3, ErrorKind::OutOfMemory)] {
        let code = in_child(move || {
            if !common::limit_locking_to(limit) {
                return 2;
            }
            let e = match RingOptions::new().capacity(4 * page_size()).lock_memory(true).build() {
                Ok(_) => return 3,
                Err(e) => e,
            };
            eprintln!("limit {limit}: {e} ({:?})", e.kind());
            if e.kind() != want {
                return 4;
            }
            if !e.to_string().contains("RLIMIT_MEMLOCK") {
                return 5;
            }
            0
        });
        assert_eq!(code, 0, "limit {limit}");
    }
}

/// RingOptions::lock_memory: "RLIMIT_MEMLOCK counts `2 * capacity` plus one page": a limit of
/// exactly that is enough.
#[test]
fn lock_memory_fits_in_exactly_2n_plus_a_page() {
    let cap = 4 * page_size();
    let code = in_child(move || {
        if !common::limit_locking_to(2 * cap + page_size()) {
            return 2;
        }
        match RingOptions::new().capacity(cap).lock_memory(true).build() {
            Ok(_) => 0,
            Err(e) => {
                eprintln!("{e}");
                1
            }
        }
    });
    assert_eq!(code, 0);
}

#[cfg(feature = "tokio")]
mod asynch_drop {
    use super::*;

    /// README "Dropping a pending read, write, send or recv loses nothing already committed and
    /// leaves the end usable."
    #[test]
    fn dropped_pending_recv_leaves_end_usable() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let (tx, rx) = channel(1).unwrap();
            let (mut tx, mut rx) = (tx.into_framed().into_async().unwrap(), rx.into_framed().into_async().unwrap());
            let timed_out = tokio::time::timeout(Duration::from_millis(20), rx.recv()).await.is_err();
            assert!(timed_out);
            tx.send(b"later").await.unwrap();
            let f = rx.recv().await.unwrap().unwrap();
            assert_eq!(&*f, b"later");
        });
    }
}

// ---------------------------------------------------------------------------------------
// Scribbling peers: role states, forged deaths (a memfd ring's header, written with pwrite)
// ---------------------------------------------------------------------------------------

const PRODUCER_SLOT: usize = 32;
const CONSUMER_SLOT: usize = 64;

fn poke(ring: &SharedRing, off: usize, val: u64) {
    let fd = ring.as_fd().unwrap().as_raw_fd();
    let b = val.to_le_bytes();
    // SAFETY: 8 bytes inside the ring file's header page.
    assert_eq!(unsafe { libc::pwrite(fd, b.as_ptr().cast(), 8, off as libc::off_t) }, 8);
}

fn peek(ring: &SharedRing, off: usize) -> u64 {
    let fd = ring.as_fd().unwrap().as_raw_fd();
    let mut b = [0u8; 8];
    // SAFETY: 8 bytes inside the ring file's header page.
    assert_eq!(unsafe { libc::pread(fd, b.as_mut_ptr().cast(), 8, off as libc::off_t) }, 8);
    u64::from_le_bytes(b)
}

/// shared.rs into_producer: `InvalidData` "if the role's slot holds a state no version
/// of the crate writes (nothing is changed)"; shared.rs take_over likewise; from_fd
/// "sane role states".
#[test]
fn unknown_role_state_is_invalid_data() {
    let ring = RingOptions::new().backend(Backend::Memfd).capacity(1).shared().unwrap();
    poke(&ring, CONSUMER_SLOT, 0x7f);
    assert_eq!(kind(ring.clone().into_consumer()), ErrorKind::InvalidData);
    assert_eq!(kind(ring.take_over_consumer()), ErrorKind::InvalidData);
    assert_eq!(peek(&ring, CONSUMER_SLOT), 0x7f, "nothing is changed");
    let dup = ring.as_fd().unwrap().try_clone_to_owned().unwrap();
    assert_eq!(kind(SharedRing::from_fd(dup)), ErrorKind::InvalidData);
    // The producer role is unaffected.
    let _tx = ring.clone().into_producer().unwrap();
}

/// lifecycle.rs "The old holder, if it was in fact alive (a peer forged its death), notices
/// at its next call ... every call returns `ConnectionAborted` and nothing it does, dropping
/// included, reaches the header"; lib.rs "An end whose role another process took over (a
/// forged death): `ConnectionAborted`".
#[test]
fn forged_death_gives_connection_aborted_to_the_old_holder() {
    let ring = RingOptions::new().backend(Backend::Memfd).capacity(1).shared().unwrap();
    let mut old = ring.clone().into_producer().unwrap();
    let mut rx = ring.clone().into_consumer().unwrap();
    old.write_all(b"old ").unwrap();
    // Forge: the holder's pid replaced by one of a process that is gone (a reaped child).
    let dead = {
        let mut c = spawn_child(|| 0);
        let pid = c.pid();
        c.wait();
        pid as u64
    };
    let claim = peek(&ring, PRODUCER_SLOT);
    poke(&ring, PRODUCER_SLOT, (claim & 0xffff_ffff) | (dead << 32));
    let mut new = ring.take_over_producer().expect("a forged death is taken for a death");
    assert_eq!(kind(old.try_write(b"x")), ErrorKind::ConnectionAborted);
    assert_eq!(kind(old.write(b"x")), ErrorKind::ConnectionAborted);
    assert_eq!(kind(old.write_grant(1)), ErrorKind::ConnectionAborted);
    assert_eq!(kind(old.flush()), ErrorKind::ConnectionAborted);
    assert!(old.is_abandoned(), "producer.rs is_abandoned: true once another process took this end's own role");
    drop(old); // must not close the role the newcomer holds
    assert!(!rx.is_abandoned());
    new.write_all(b"new").unwrap();
    drop(new);
    let mut s = String::new();
    rx.read_to_string(&mut s).unwrap();
    assert_eq!(s, "old new");
}

/// lifecycle.rs "Where the taker is this same process ... a blocking one may take one wake-up
/// meant for the newcomer, which then waits until its next periodic look": both blocking
/// readers, the old one parked before the forged death and the newcomer parked after the
/// take-over, return well within a second of the write (the old one with `ConnectionAborted`,
/// the newcomer with the data), whichever of them the write's wake-up reached.
#[test]
fn a_blocking_end_taken_over_in_its_own_process_leaves_the_newcomer_woken() {
    let ring = RingOptions::new().backend(Backend::Memfd).capacity(1).shared().unwrap();
    let mut tx = ring.clone().into_producer().unwrap();
    let mut old = ring.clone().into_consumer().unwrap();
    let dead = {
        let mut c = spawn_child(|| 0);
        let pid = c.pid();
        c.wait();
        pid as u64
    };
    std::thread::scope(|s| {
        let old_reader = s.spawn(move || old.read(&mut [0; 8]).map_err(|e| e.kind()));
        // Parked: give it time to reach its futex wait.
        std::thread::sleep(Duration::from_millis(50));
        let claim = peek(&ring, CONSUMER_SLOT);
        poke(&ring, CONSUMER_SLOT, (claim & 0xffff_ffff) | (dead << 32));
        let mut new = ring.take_over_consumer().expect("a forged death is taken for a death");
        let new_reader = s.spawn(move || {
            let mut buf = [0; 8];
            let n = new.read(&mut buf)?;
            Ok::<_, std::io::Error>(buf[..n].to_vec())
        });
        std::thread::sleep(Duration::from_millis(50));
        let wrote = Instant::now();
        tx.write_all(b"new data").unwrap();
        let got = new_reader.join().unwrap().unwrap();
        let new_took = wrote.elapsed();
        let old_got = old_reader.join().unwrap();
        let both_took = wrote.elapsed();
        eprintln!("newcomer {new_took:?}, old reader {both_took:?}: {old_got:?}");
        assert_eq!(got, b"new data");
        // The old call was waiting when the take-over landed, past its check: it may complete
        // once (trust_model.rs, "Not earlier"), else it stops there.
        assert!(matches!(old_got, Ok(8) | Err(ErrorKind::ConnectionAborted)), "{old_got:?}");
        // 10x the 100 ms safety interval, the longest periodic look of a blocking wait.
        assert!(new_took < Duration::from_secs(1), "the newcomer's read took {new_took:?}");
        assert!(both_took < Duration::from_secs(1), "the old reader's read took {both_took:?}");
    });
}

/// trust_model.rs: an impossible value poisons the ring, "`InvalidData` from then on, at once
/// for the side that found it". A producer that found an impossible tail keeps saying so after
/// the consumer closes, on every write path, bytes and framed (before, the close was looked at
/// first: `BrokenPipe` from `try_write`, `write_timeout`, `write_grant` and `try_send`, while
/// the framed `flush` said `InvalidData`: a found defect).
#[test]
fn a_producer_that_found_the_ring_poisoned_says_so_after_the_consumer_closes() {
    const TAIL: usize = 256;
    for framed in [false, true] {
        let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
        let mut tx = ring.clone().into_producer().unwrap();
        let rx = ring.clone().into_consumer().unwrap();
        tx.try_write(&[1; 96]).unwrap();
        // A tail the consumer cannot have published (behind the one the producer knows).
        poke(&ring, TAIL, u64::MAX);
        assert_eq!(kind(tx.try_write(&[1; 4096])), ErrorKind::InvalidData, "framed {framed}: the tail is impossible");
        drop(rx);
        let kinds = if framed {
            let mut tx = tx.into_framed();
            vec![kind(tx.flush()), kind(tx.try_send(b"x")), kind(tx.send_timeout(b"x", Duration::from_millis(10)))]
        } else {
            vec![
                kind(tx.try_write(b"x")),
                kind(tx.write_timeout(b"x", Duration::from_millis(10))),
                kind(tx.write_grant(1)),
                kind(tx.write(b"x")),
            ]
        };
        assert!(kinds.iter().all(|&k| k == ErrorKind::InvalidData), "framed {framed}, after the close: {kinds:?}");
    }
}

/// framed/producer.rs send_batch: "It stops early, and the next call reports why, at a message
/// longer than max_frame_len ... the unsent messages are `msgs[sent..]`"; "Errors: As send,
/// for the first message only".
#[test]
fn send_batch_stops_before_a_too_long_message() {
    let (tx, rx) = channel(1).unwrap();
    let cap = tx.capacity();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let long = vec![0u8; cap];
    let msgs: [&[u8]; 3] = [b"a", &long, b"c"];
    assert_eq!(tx.send_batch(&msgs).unwrap(), 1);
    assert_eq!(kind(tx.send_batch(&msgs[1..])), ErrorKind::InvalidInput);
    assert_eq!(kind(tx.try_send_batch(&msgs[1..])), ErrorKind::InvalidInput);
    assert_eq!(tx.send_batch(&msgs[2..]).unwrap(), 1);
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"a");
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"c");
}

/// framed/consumer.rs recv_into: "`OutOfMemory` when `buf` cannot grow to the frame's
/// length (the frame stays in the ring, for a later call or for recv). `buf` is left empty".
#[test]
fn recv_into_out_of_memory_keeps_the_frame() {
    let code = in_child(|| {
        // Larger than a malloc arena's 64 MiB reserve, which could serve a smaller Vec.
        let (tx, rx) = channel(256 << 20).unwrap();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        let len = 200 << 20;
        tx.reserve(len).unwrap().commit().unwrap();
        let vm = common::vm_size().unwrap();
        if common::set_soft_limit(libc::RLIMIT_AS, vm + (1 << 20)).is_none() {
            return 2;
        }
        // The limit must keep a Vec of the frame's length from growing, or there is nothing
        // to test (a malloc arena's reserve may serve it).
        let mut probe: Vec<u8> = Vec::new();
        if probe.try_reserve_exact(len).is_ok() {
            eprintln!("a {len}-byte Vec still fits under the limit: cannot provoke");
            return 6;
        }
        let mut buf = vec![1u8; 3];
        match rx.recv_into(&mut buf) {
            Err(e) if e.kind() == ErrorKind::OutOfMemory => {}
            other => {
                eprintln!("{other:?}");
                return 3;
            }
        }
        if !buf.is_empty() {
            return 4;
        }
        let got = rx.try_recv().map(|f| f.map(|f| f.len()));
        if matches!(got, Ok(Some(n)) if n == len) {
            0
        } else {
            eprintln!("{got:?}");
            5
        }
    });
    assert_eq!(code, 0);
}

// ---------------------------------------------------------------------------------------
// Accounting (docs/accounting.rs, README "Costs to know")
// ---------------------------------------------------------------------------------------

fn map_lines() -> usize {
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().count()
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// accounting.rs "mapped as `H + 2N` bytes of address space";  "each ring uses 2 or 3
/// mapping entries";  a memfd ring keeps its memfd open, the fd-less backends keep none.
/// (In a forked child: a single thread, so nothing else maps or opens meanwhile.)
#[test]
fn address_space_map_entries_and_descriptors_per_ring() {
    for b in common::available() {
        let code = in_child(move || {
            let n = 64 << 20;
            let (vm0, maps0, fds0) = (common::vm_size().unwrap(), map_lines(), fd_count());
            let (tx, rx) = RingOptions::new().backend(b).capacity(n).build().unwrap();
            let (vm1, maps1, fds1) = (common::vm_size().unwrap(), map_lines(), fd_count());
            let mut bad = 0;
            if vm1 - vm0 != 2 * n + page_size() {
                eprintln!("{b:?}: VmSize grew by {} for N = {n}", vm1 - vm0);
                bad |= 1;
            }
            if !(2..=3).contains(&(maps1 - maps0)) {
                eprintln!("{b:?}: {} new map entries", maps1 - maps0);
                bad |= 2;
            }
            let want_fds = usize::from(b == Backend::Memfd);
            if fds1 - fds0 != want_fds {
                eprintln!("{b:?}: {} new descriptors", fds1 - fds0);
                bad |= 4;
            }
            drop((tx, rx));
            if map_lines() != maps0 || fd_count() != fds0 {
                eprintln!("{b:?}: not all undone");
                bad |= 8;
            }
            bad
        });
        assert_eq!(code, 0, "{b:?}");
    }
}

/// accounting.rs "RLIMIT_AS counts 2N per mapping process: creation fails ... when only N
/// fits".
#[test]
fn rlimit_as_counts_both_views() {
    let code = in_child(|| {
        let n = 256 << 20;
        let vm = common::vm_size().unwrap();
        common::set_soft_limit(libc::RLIMIT_AS, vm + n + (n / 2)).unwrap();
        match channel(n) {
            Err(e) if e.kind() == ErrorKind::OutOfMemory => {}
            other => {
                eprintln!("{:?}", other.map(|_| ()));
                return 1;
            }
        }
        common::set_soft_limit(libc::RLIMIT_AS, vm + 2 * n + (16 << 20)).unwrap();
        match channel(n) {
            Ok(_) => 0,
            Err(e) => {
                eprintln!("{e}");
                2
            }
        }
    });
    assert_eq!(code, 0);
}

/// asynch/ends.rs into_async: "`Unsupported` in a forked child".
#[cfg(feature = "tokio")]
#[test]
fn into_async_in_forked_child_is_unsupported() {
    let (tx, rx) = channel(1).unwrap();
    let (ftx, frx) = channel(1).unwrap();
    let (ftx, frx) = (ftx.into_framed(), frx.into_framed());
    let code = in_child(|| {
        // SAFETY (test): the child's copies, consumed once here; the child then _exits
        // without running any other destructor.
        let (tx, rx, ftx, frx) =
            unsafe { (std::ptr::read(&tx), std::ptr::read(&rx), std::ptr::read(&ftx), std::ptr::read(&frx)) };
        let ks = [kind(tx.into_async()), kind(rx.into_async()), kind(ftx.into_async()), kind(frx.into_async())];
        if ks == [ErrorKind::Unsupported; 4] {
            0
        } else {
            eprintln!("{ks:?}");
            1
        }
    });
    assert_eq!(code, 0);
    drop((tx, rx, ftx, frx));
}
