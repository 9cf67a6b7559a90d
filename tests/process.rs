//! Rings between processes: fork streams on every backend, role claims, ends misused from a
//! forked child, memfd hand-over, peer death (SIGKILL mid-stream, zombies), and leaks (fds,
//! child processes, `/dev/shm`).
//!
//! Every test that forks keeps the child out of the harness (`_exit`), and bounds every wait on
//! a child so that a bug shows as a failure, not a hang. Death detection is held to a liveness
//! bound, [`DEATH`] (10x the design's 100 ms), from the SIGKILL to the blocked call returning;
//! the latencies themselves are printed (run with `--nocapture`), not judged: the machines are
//! shared and noisy.

// The tests play the hostile or crashing peer: they map pages and create memfds themselves.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{BufRead, ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{
    available, in_child, locked_bytes, open_fds, our_mappings, page_size, scale, seed, send_fds, spawn_child, Child,
    Pattern, Rng, SharedPage,
};
use mirror_ring::{Backend, Consumer, Producer, RingOptions, SharedRing};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// The bound on any single blocking call in these tests: far above any healthy wait, so that
/// reaching it means a hang, not a slow machine.
const LONG: Duration = Duration::from_secs(20);
/// A blocked call must notice a killed peer within this: 10x the 100 ms the design promises
/// (measured: 9-16 ms median, under 30 ms worst), so only a regression reaches it.
const DEATH: Duration = Duration::from_secs(1);

/// FNV-1a over 8-byte words (plus the tail), as the checksum both ends compute independently.
#[derive(Clone, Copy)]
struct Checksum(u64, u64);

impl Checksum {
    fn new() -> Checksum {
        Checksum(0xcbf2_9ce4_8422_2325, 0)
    }
    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.1 += bytes.len() as u64;
    }
}

/// No child processes left: `waitpid(-1, WNOHANG)` says there are none to wait for.
fn no_children_left() -> bool {
    // SAFETY: a null status pointer is allowed.
    let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD)
}

/// Writes `total` bytes of the pattern with random chunk sizes, mixing `write_timeout`,
/// write grants and `write_all`; returns the checksum of what it wrote.
fn produce(tx: &mut Producer, pat: &Pattern, total: u64, seed: u64) -> std::io::Result<Checksum> {
    let mut rng = Rng::new(seed);
    let mut sum = Checksum::new();
    let mut pos = 0u64;
    let cap = tx.capacity();
    while pos < total {
        let want = (1 + rng.up_to(Pattern::MAX_CHUNK.min(cap) - 1)).min((total - pos) as usize);
        let n = match rng.up_to(2) {
            0 => tx.write_timeout(pat.at(pos, want), LONG)?,
            1 => {
                let min = want.min(1 + rng.up_to(cap / 2));
                let mut g = tx.write_grant_timeout(min, LONG)?;
                let n = want.min(g.len());
                g[..n].copy_from_slice(pat.at(pos, n));
                g.commit(n)?;
                n
            }
            _ => {
                tx.write_all(pat.at(pos, want))?;
                want
            }
        };
        sum.add(pat.at(pos, n));
        pos += n as u64;
    }
    Ok(sum)
}

/// Reads until end of stream with random sizes, mixing `read_timeout`, read grants and
/// `fill_buf`; checks every byte against the pattern. Returns the checksum of what it read, or
/// the stream position where a byte differed.
fn consume(rx: &mut Consumer, pat: &Pattern, seed: u64) -> std::io::Result<Result<Checksum, u64>> {
    let mut rng = Rng::new(seed);
    let mut sum = Checksum::new();
    let mut pos = 0u64;
    let mut buf = vec![0u8; Pattern::MAX_CHUNK];
    let cap = rx.capacity();
    loop {
        let n = match rng.up_to(2) {
            0 => {
                let want = 1 + rng.up_to(buf.len() - 1);
                let n = rx.read_timeout(&mut buf[..want], LONG)?;
                if !pat.matches(pos, &buf[..n]) {
                    return Ok(Err(pos));
                }
                sum.add(&buf[..n]);
                n
            }
            1 => {
                let min = 1 + rng.up_to(cap / 4);
                // Fewer than `min` bytes left at the end of the stream is UnexpectedEof; take
                // the rest (empty at the end) with min 0.
                let g = match rx.read_grant_timeout(min, LONG) {
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => rx.read_grant_timeout(0, LONG)?,
                    other => other?,
                };
                let n = g.len().min(1 + rng.up_to(Pattern::MAX_CHUNK - 1));
                if !pat.matches(pos, &g[..n]) {
                    return Ok(Err(pos));
                }
                sum.add(&g[..n]);
                g.release(n)?;
                n
            }
            _ => {
                let b = rx.fill_buf()?;
                let n = b.len().min(Pattern::MAX_CHUNK);
                if !pat.matches(pos, &b[..n]) {
                    return Ok(Err(pos));
                }
                sum.add(&b[..n]);
                rx.consume(n);
                n
            }
        };
        if n == 0 {
            return Ok(Ok(sum));
        }
        pos += n as u64;
    }
}

/// Streams `total` bytes from one process to the other through a ring created before the
/// fork, and checks both the bytes and the checksums the two ends computed independently.
fn fork_stream(backend: Backend, parent_produces: bool, total: u64, capacity: usize) -> Duration {
    let seed = seed() ^ backend as u64 ^ u64::from(parent_produces);
    let pat = Pattern::new(seed);
    let page = SharedPage::new(); // word 0: checksum, word 1: length, word 2: 1 when written
    let ring = RingOptions::new().capacity(capacity).backend(backend).shared().unwrap();
    let started = Instant::now();
    let child_ring = ring.clone();
    let mut child = spawn_child(|| {
        let code = if parent_produces {
            let mut rx = child_ring.into_consumer().unwrap();
            match consume(&mut rx, &pat, seed ^ 1) {
                Ok(Ok(sum)) => {
                    page.word(0).store(sum.0, Ordering::Relaxed);
                    page.word(1).store(sum.1, Ordering::Relaxed);
                    0
                }
                Ok(Err(pos)) => {
                    eprintln!("child: wrong byte near stream position {pos}");
                    2
                }
                Err(e) => {
                    eprintln!("child: {e}");
                    3
                }
            }
        } else {
            let mut tx = child_ring.into_producer().unwrap();
            match produce(&mut tx, &pat, total, seed ^ 2) {
                Ok(sum) => {
                    page.word(0).store(sum.0, Ordering::Relaxed);
                    page.word(1).store(sum.1, Ordering::Relaxed);
                    0
                }
                Err(e) => {
                    eprintln!("child: {e}");
                    3
                }
            }
        };
        // Release: the checksum words above are visible to a parent that sees the flag.
        page.word(2).store(1, Ordering::Release);
        code
    });
    let mine = if parent_produces {
        let mut tx = ring.into_producer().unwrap();
        let sum = produce(&mut tx, &pat, total, seed ^ 2).unwrap();
        drop(tx); // end of stream for the child
        sum
    } else {
        let mut rx = ring.into_consumer().unwrap();
        match consume(&mut rx, &pat, seed ^ 1).unwrap() {
            Ok(sum) => sum,
            Err(pos) => panic!("{backend}: wrong byte near stream position {pos}"),
        }
    };
    let elapsed = started.elapsed();
    assert_eq!(child.wait_within(20 * LONG), 0, "{backend}: child failed (2: bad byte, 3: I/O error)");
    assert_eq!(page.word(2).load(Ordering::Acquire), 1);
    assert_eq!(mine.1, total, "{backend}: stream length");
    assert_eq!(page.word(1).load(Ordering::Relaxed), total, "{backend}: the child's stream length");
    assert_eq!(page.word(0).load(Ordering::Relaxed), mine.0, "{backend}: checksums of the two ends differ");
    elapsed
}

#[test]
fn fork_streams_64_mib_both_directions_on_every_backend() {
    let total = (64 * MIB * scale()) as u64;
    for backend in available() {
        for parent_produces in [true, false] {
            let t = fork_stream(backend, parent_produces, total, 256 * KIB);
            let dir = if parent_produces { "parent -> child" } else { "child -> parent" };
            eprintln!(
                "fork stream {backend:>11} {dir}: {} MiB in {t:?} ({:.0} MB/s, every byte compared)",
                total >> 20,
                total as f64 / t.as_secs_f64() / 1e6
            );
        }
    }
}

/// A real file (this test's own executable) crosses a fork byte for byte: the parent reads
/// the file straight into write grants, the child compares what arrives with the file as it
/// read it before the fork.
#[test]
fn a_real_file_crosses_a_fork_byte_for_byte() {
    use std::os::unix::fs::FileExt;
    // One open file, read by offset: the same bytes each time even if the path is replaced.
    let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    let mut want = vec![0u8; file.metadata().unwrap().len() as usize];
    file.read_exact_at(&mut want, 0).unwrap();
    assert!(want.len() > 256 * KIB, "a file large enough to wrap the ring many times");
    for backend in available() {
        let ring = RingOptions::new().capacity(64 * KIB).backend(backend).shared().unwrap();
        let child_ring = ring.clone();
        let mut child = spawn_child(|| {
            let mut rx = child_ring.into_consumer().unwrap();
            let mut got = Vec::new();
            rx.read_to_end(&mut got).unwrap();
            i32::from(got != want)
        });
        let mut tx = ring.into_producer().unwrap();
        let mut offset = 0;
        loop {
            let mut grant = tx.write_grant_timeout(1, LONG).unwrap();
            let n = file.read_at(&mut grant, offset).unwrap();
            if n == 0 {
                break;
            }
            grant.commit(n).unwrap();
            offset += n as u64;
        }
        drop(tx);
        assert_eq!(child.wait_within(10 * LONG), 0, "{backend}: the file arrived changed");
    }
}

#[test]
fn a_tiny_ring_across_fork_without_spinning() {
    // One page and no spin budget: nearly every call sleeps on the futex, across processes.
    for backend in available() {
        let ring = RingOptions::new().capacity(1).backend(backend).spin_budget(Duration::ZERO).shared().unwrap();
        assert_eq!(ring.capacity(), page_size());
        let pat = Pattern::new(9);
        let total = (4 * MIB * scale()) as u64;
        let child_ring = ring.clone();
        let mut child = spawn_child(|| {
            let mut tx = child_ring.into_producer().unwrap();
            i32::from(produce(&mut tx, &pat, total, 5).is_err())
        });
        let mut rx = ring.into_consumer().unwrap();
        let sum = consume(&mut rx, &pat, 6).unwrap().expect("every byte as written");
        assert_eq!(sum.1, total);
        assert_eq!(child.wait_within(20 * LONG), 0, "{backend}");
    }
}

#[test]
fn each_role_is_claimed_once_in_one_process() {
    for backend in available() {
        let ring = RingOptions::new().backend(backend).shared().unwrap();
        let tx = ring.clone().into_producer().unwrap();
        assert_eq!(ring.clone().into_producer().unwrap_err().kind(), ErrorKind::AlreadyExists);
        let rx = ring.clone().into_consumer().unwrap();
        assert_eq!(ring.clone().into_consumer().unwrap_err().kind(), ErrorKind::AlreadyExists);
        // Closing an end does not free its role: once for the life of the ring.
        drop(tx);
        drop(rx);
        assert_eq!(ring.clone().into_producer().unwrap_err().kind(), ErrorKind::AlreadyExists);
        assert_eq!(ring.into_consumer().unwrap_err().kind(), ErrorKind::AlreadyExists);
    }
}

#[test]
fn a_role_claimed_in_a_child_cannot_be_claimed_by_the_parent() {
    for backend in available() {
        let ring = RingOptions::new().backend(backend).shared().unwrap();
        let child_ring = ring.clone();
        let status = in_child(|| {
            let mut tx = child_ring.into_producer().unwrap();
            tx.write_all(b"from the child").unwrap();
            0 // tx drops: closed
        });
        assert_eq!(status, 0);
        assert_eq!(ring.clone().into_producer().unwrap_err().kind(), ErrorKind::AlreadyExists);
        let mut rx = ring.clone().into_consumer().unwrap();
        let mut got = String::new();
        rx.read_to_string(&mut got).unwrap();
        assert_eq!(got, "from the child");
        // And the other way round: the parent's claim stops a child.
        let status = in_child(|| match ring.into_consumer() {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => 0,
            _ => 1,
        });
        assert_eq!(status, 0, "{backend}: a child claimed the consumer role the parent holds");
    }
}

#[test]
fn racing_claims_from_many_processes_have_exactly_one_winner() {
    const RACERS: usize = 6;
    for round in 0..10 * scale() {
        let backend = available()[round % available().len()];
        let ring = RingOptions::new().backend(backend).shared().unwrap();
        let page = SharedPage::new(); // word 0: start flag
        let racers: Vec<Child> = (0..RACERS)
            .map(|_| {
                let ring = ring.clone();
                let page = &page;
                spawn_child(move || {
                    while page.word(0).load(Ordering::Acquire) == 0 {
                        std::hint::spin_loop();
                    }
                    match ring.into_producer() {
                        Ok(tx) => {
                            std::thread::sleep(Duration::from_millis(5));
                            drop(tx);
                            10
                        }
                        Err(e) if e.kind() == ErrorKind::AlreadyExists => 20,
                        Err(_) => 30,
                    }
                })
            })
            .collect();
        page.word(0).store(1, Ordering::Release);
        let codes: Vec<i32> = racers.into_iter().map(|mut racer| racer.wait_within(LONG)).collect();
        assert_eq!(codes.iter().filter(|&&c| c == 10).count(), 1, "{backend}: winners in {codes:?}");
        assert_eq!(codes.iter().filter(|&&c| c == 20).count(), RACERS - 1, "{backend}: {codes:?}");
        assert_eq!(ring.into_producer().unwrap_err().kind(), ErrorKind::AlreadyExists);
    }
}

#[test]
fn a_ring_attached_from_its_fd_shares_the_claims() {
    let ring = RingOptions::new().backend(Backend::Memfd).shared().unwrap();
    let fd = ring.as_fd().unwrap().try_clone_to_owned().unwrap();
    let page = SharedPage::new(); // word 0: the child has claimed
    let mut child = spawn_child(|| {
        // A second, independent mapping of the same file, as an unrelated process would make.
        let attached = SharedRing::from_fd(fd).unwrap();
        let mut rx = attached.into_consumer().unwrap();
        page.word(0).store(1, Ordering::Release);
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        i32::from(got != b"through a second mapping")
    });
    let until = Instant::now() + LONG;
    while page.word(0).load(Ordering::Acquire) == 0 {
        assert!(Instant::now() < until, "the child never claimed");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(ring.clone().into_consumer().unwrap_err().kind(), ErrorKind::AlreadyExists);
    let mut tx = ring.into_producer().unwrap();
    tx.write_all(b"through a second mapping").unwrap();
    drop(tx);
    assert_eq!(child.wait_within(LONG), 0);
}

#[test]
fn ends_claimed_by_the_parent_refuse_in_a_child_and_do_not_close_the_ring() {
    for backend in available() {
        let ring = RingOptions::new().capacity(4096).backend(backend).shared().unwrap();
        let mut tx = ring.clone().into_producer().unwrap();
        let rx = ring.clone().into_consumer().unwrap();
        tx.write_all(b"abc").unwrap();
        // The child drops its copies of the ends; the parent keeps its own (the closure only
        // borrows them, so nothing is dropped here when it is).
        let (mut tx_slot, mut rx_slot) = (Some(tx), Some(rx));
        // Bounded: a child whose copies went on blocking (as if they were the parent's ends)
        // fails the test instead of hanging it.
        let status = spawn_child(|| {
            let (mut tx, mut rx) = (tx_slot.take().unwrap(), rx_slot.take().unwrap());
            let unsupported = |r: std::io::Result<usize>| matches!(r, Err(e) if e.kind() == ErrorKind::Unsupported);
            let mut buf = [0u8; 8];
            let checks = [
                unsupported(tx.try_write(b"x")),
                unsupported(tx.write(b"x")),
                unsupported(tx.write_timeout(b"x", Duration::from_millis(10))),
                unsupported(tx.write_grant(1).map(|g| g.len())),
                unsupported(tx.write_grant_timeout(1, Duration::from_millis(10)).map(|g| g.len())),
                unsupported(tx.flush().map(|()| 0)),
                unsupported(rx.try_read(&mut buf)),
                unsupported(rx.read(&mut buf)),
                unsupported(rx.read_timeout(&mut buf, Duration::from_millis(10))),
                unsupported(rx.read_grant(1).map(|g| g.len())),
                unsupported(rx.fill_buf().map(|b| b.len())),
                tx.is_abandoned(),
                rx.is_abandoned(),
                // Another claim from the child fails as in any process.
                matches!(ring.clone().into_producer(), Err(e) if e.kind() == ErrorKind::AlreadyExists),
            ];
            let _ = (tx.len(), tx.free(), rx.len()); // harmless, no header writes
            drop(tx);
            drop(rx);
            match checks.iter().position(|ok| !ok) {
                None => 0,
                Some(i) => 10 + i as i32,
            }
        })
        .wait_within(Duration::from_secs(60));
        assert_eq!(status, 0, "{backend}: check {} failed in the child", status - 10);
        let (mut tx, mut rx) = (tx_slot.unwrap(), rx_slot.unwrap());
        // The child's drops closed nothing: the parent's ring still works, with its bytes.
        assert!(!tx.is_abandoned() && !rx.is_abandoned(), "{backend}");
        let mut buf = [0u8; 8];
        assert_eq!(rx.try_read(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");
        assert_eq!(rx.try_read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock, "{backend}: closed by child?");
        tx.write_all(b"de").unwrap();
        assert_eq!(rx.try_read(&mut buf).unwrap(), 2);
    }
}

/// A ring built with `lock_memory` is locked in the process that built it; another mapping of
/// it (attached through `from_fd`, as an unrelated process would) is not, until it calls
/// `SharedRing::lock_memory`; a second lock changes nothing, the locked ring works, and the
/// locks end with the mappings. In a child, which starts with nothing locked.
#[test]
fn lock_memory_locks_each_mapping_of_a_ring_on_its_own() {
    if !Backend::Memfd.is_available() {
        return eprintln!("no memfd here: nothing to attach");
    }
    let status = in_child(|| {
        let n = 64 * KIB;
        let whole = page_size() + 2 * n;
        let ring = RingOptions::new().capacity(n).backend(Backend::Memfd).lock_memory(true).shared().unwrap();
        if locked_bytes() != whole {
            return 2;
        }
        let attached = SharedRing::from_fd(ring.as_fd().unwrap().try_clone_to_owned().unwrap()).unwrap();
        if locked_bytes() != whole {
            return 3;
        }
        attached.lock_memory().unwrap();
        attached.lock_memory().unwrap();
        if locked_bytes() != 2 * whole {
            return 4;
        }
        let (mut tx, mut rx) = (ring.into_producer().unwrap(), attached.into_consumer().unwrap());
        let msg = vec![0xa5; n - 1];
        tx.write_all(&msg).unwrap();
        drop(tx);
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        if got != msg {
            return 5;
        }
        drop(rx);
        if locked_bytes() != 0 {
            return 6;
        }
        0
    });
    assert_eq!(
        status, 0,
        "2 = the built ring is not locked, 3 = attaching locked, 4 = lock_memory (twice) is not H + 2N, \
         5 = bytes lost, 6 = still locked after the drops"
    );
}

#[test]
fn a_dont_fork_ring_does_not_exist_in_a_child_and_its_drop_there_unmaps_nothing() {
    let page = page_size();
    for backend in available() {
        let ring = RingOptions::new().capacity(4096).backend(backend).dont_fork(true).shared().unwrap();
        let mut tx = ring.clone().into_producer().unwrap();
        // Nothing committed yet: the free space starts at view A, one page after the header.
        let base = tx.write_grant(1).unwrap().as_ptr() as usize - page;
        // The header page and both views of the data (one page: 4096 rounds up to it).
        let total = page + 2 * tx.capacity();
        let mut tx_slot = Some(tx);
        let mut ring_slot = Some(ring);
        let status = in_child(|| {
            let (mut tx, ring) = (tx_slot.take().unwrap(), ring_slot.take().unwrap());
            // The range is empty here: the kernel may hand it to anyone. Take it ourselves.
            let Some(mine) = common::take_range(base, total) else {
                return 20; // the ring's range was still mapped in the child
            };
            let p = mine.as_mut_ptr();
            let claim = ring.clone().into_consumer();
            if !matches!(&claim, Err(e) if e.kind() == ErrorKind::Unsupported) {
                return 21;
            }
            if !tx.is_abandoned() || tx.try_write(b"x").map_err(|e| e.kind()) != Err(ErrorKind::Unsupported) {
                return 22;
            }
            // Locking would lock whatever is mapped there now (here, our own range).
            if !matches!(ring.lock_memory(), Err(e) if e.kind() == ErrorKind::Unsupported) {
                return 23;
            }
            drop(tx);
            drop(ring);
            // A drop that unmapped the ring's range would make this fault (exit 139).
            // SAFETY: still our mapping, unless a drop above destroyed it.
            let intact = (0..total).step_by(997).all(|i| unsafe { p.cast::<u8>().add(i).read_volatile() } == 0x5a);
            i32::from(!intact)
        });
        assert_eq!(status, 0, "{backend}: 20: range mapped in child, 21-23: wrong error, 139: drop unmapped it");
        tx_slot.unwrap().write_all(b"still here").unwrap();
    }
}

/// The standard hand-over to a process that never had the ring: fork first, then create a
/// Memfd ring and send it over a socket.
#[test]
fn a_memfd_ring_crosses_a_unix_socket_to_a_process_that_never_had_it() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let pat = Pattern::new(77);
    let total = (8 * MIB * scale()) as u64;
    let mut child = spawn_child(|| {
        let ring = match SharedRing::recv_from(&theirs) {
            Ok(r) => r,
            Err(_) => return 2,
        };
        if ring.backend() != Backend::Memfd || ring.as_fd().is_none() || ring.capacity() != 128 * KIB {
            return 3;
        }
        let mut rx = ring.into_consumer().unwrap();
        match consume(&mut rx, &pat, 3) {
            Ok(Ok(sum)) if sum.1 == total => 0,
            Ok(_) => 4,
            Err(_) => 5,
        }
    });
    drop(theirs);
    let ring = RingOptions::new().capacity(128 * KIB).backend(Backend::Memfd).shared().unwrap();
    ring.send_to(&ours).unwrap();
    let mut tx = ring.into_producer().unwrap();
    produce(&mut tx, &pat, total, 4).unwrap();
    drop(tx);
    assert_eq!(child.wait_within(10 * LONG), 0, "2: recv, 3: wrong ring, 4: bad bytes, 5: I/O error");
}

#[test]
fn sending_needs_a_memfd_and_receiving_needs_a_descriptor() {
    let (a, b) = UnixStream::pair().unwrap();
    let anon = RingOptions::new().backend(available()[0]).shared().unwrap();
    if anon.backend() != Backend::Memfd {
        assert!(anon.as_fd().is_none());
        assert_eq!(anon.send_to(&a).unwrap_err().kind(), ErrorKind::Unsupported);
    }
    // A plain byte carries no descriptor.
    (&a).write_all(b"x").unwrap();
    assert_eq!(SharedRing::recv_from(&b).unwrap_err().kind(), ErrorKind::InvalidData);
    // A closed socket: end of stream.
    drop(a);
    assert_eq!(SharedRing::recv_from(&b).unwrap_err().kind(), ErrorKind::UnexpectedEof);
    // A descriptor that is not a ring: refused by from_fd's checks.
    let (c, d) = UnixStream::pair().unwrap();
    let (p0, _p1) = pipe();
    mirror_ring::send_fd(&c, p0.as_fd()).unwrap();
    assert_eq!(SharedRing::recv_from(&d).unwrap_err().kind(), ErrorKind::InvalidData);
}

/// A receiver with no descriptor left loses the ring it is sent: the kernel closes the
/// descriptor it cannot install and truncates the message. The error must say that (EMFILE as
/// its source, naming the limit), not blame the sender's message, and leave nothing behind. A
/// message that really carries more descriptors than one is refused as such, and the ones
/// received are closed.
#[test]
fn receiving_with_no_descriptor_left_says_so_and_too_many_descriptors_are_refused() {
    let status = in_child(|| {
        let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        ring.send_to(&a).unwrap();
        let (maps_before, fds_before) = (our_mappings(), open_fds());
        // SAFETY: F_DUPFD gives the lowest free descriptor number, closed at once.
        let lowest_free = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 0) };
        // SAFETY: our own fresh descriptor.
        unsafe { libc::close(lowest_free) };
        let Some(old) = common::set_soft_limit(libc::RLIMIT_NOFILE, lowest_free as usize) else { return 2 };
        let r = SharedRing::recv_from(&b).map(drop);
        common::set_soft_limit(libc::RLIMIT_NOFILE, old as usize);
        let Err(e) = r else { return 3 };
        let os = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>());
        if os.and_then(|o| o.raw_os_error()) != Some(libc::EMFILE) || !e.to_string().contains("RLIMIT_NOFILE") {
            eprintln!("{e} ({e:?})");
            return 4;
        }
        if our_mappings() != maps_before || open_fds() != fds_before {
            return 5;
        }
        // Nine descriptors in one message: refused as such, whether all of them arrive or the
        // message is cut short (the control buffer also has room for credentials and a label).
        let fds: Vec<OwnedFd> = (0..9).map(|_| pipe().0).collect();
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        if send_fds(&a, &raw) != 1 {
            return 6;
        }
        let fds_before = open_fds();
        match SharedRing::recv_from(&b) {
            Err(e) if e.kind() == ErrorKind::InvalidData && e.to_string().contains("descriptors") => {}
            other => {
                eprintln!("nine descriptors: {:?}", other.map(drop));
                return 7;
            }
        }
        if open_fds() != fds_before {
            return 8;
        }
        0
    });
    assert_eq!(
        status, 0,
        "2 = setrlimit failed, 3 = received with no descriptor left, 4 = not EMFILE naming RLIMIT_NOFILE, \
         5 = left something behind, 6 = sendmsg failed, 7 = nine descriptors not refused, 8 = received ones kept"
    );
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: two fresh descriptors that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

// ---------------------------------------------------------------------------------------------
// Peer death.

/// Latencies from SIGKILL to the blocked call returning: printed, and each held to [`DEATH`].
fn report(what: &str, lat: &mut [Duration]) {
    lat.sort();
    assert!(lat[lat.len() - 1] < DEATH, "{what}: a death took {:?} to notice (bound {DEATH:?})", lat[lat.len() - 1]);
    eprintln!(
        "death detection, {what}: min {:?}, median {:?}, max {:?} over {} kills",
        lat[0],
        lat[lat.len() / 2],
        lat[lat.len() - 1],
        lat.len()
    );
}

/// The producer is SIGKILLed while both ends stream at full speed. The consumer must read every
/// byte committed before the death (the child counts its commits in shared memory), each one
/// as written, then get `UnexpectedEof`; the dead child is not reaped until the end.
#[test]
fn a_producer_killed_mid_stream_loses_no_committed_byte() {
    let mut lat = Vec::new();
    for backend in available() {
        for round in 0..2 * scale() {
            let page = SharedPage::new(); // word 0: bytes committed so far
            let pat = Pattern::new(round as u64);
            let ring = RingOptions::new().capacity(64 * KIB).backend(backend).shared().unwrap();
            let child_ring = ring.clone();
            let mut child = spawn_child(|| {
                let mut tx = child_ring.into_producer().unwrap();
                let mut rng = Rng::new(round as u64 + 1);
                let mut pos = 0u64;
                loop {
                    let want = 1 + rng.up_to(20 * KIB);
                    let Ok(n) = tx.write_timeout(pat.at(pos, want), LONG) else { return 1 };
                    pos += n as u64;
                    // Release: counted only once committed (the commit happened above).
                    page.word(0).store(pos, Ordering::Release);
                }
            });
            let mut rx = ring.into_consumer().unwrap();
            let mut buf = vec![0u8; 32 * KIB];
            let mut pos = 0u64;
            let kill_at = (2 * MIB + round * 300 * KIB) as u64;
            let mut killed = None;
            let err = loop {
                match rx.read_timeout(&mut buf, LONG) {
                    Ok(0) => panic!("{backend}: clean end of stream from a killed producer"),
                    Ok(n) => {
                        assert!(pat.matches(pos, &buf[..n]), "{backend}: wrong byte near {pos}");
                        pos += n as u64;
                    }
                    Err(e) => break e,
                }
                if killed.is_none() && pos >= kill_at {
                    child.kill();
                    killed = Some(Instant::now());
                }
            };
            let Some(killed_at) = killed else { panic!("{backend}: the stream ended before the kill: {err}") };
            assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{backend}: {err}");
            // Draining what was committed (at most 64 KiB) included.
            lat.push(killed_at.elapsed());
            // Not reaped yet: the death was noticed through a zombie.
            assert_eq!(child.state(), 'Z');
            let committed = page.word(0).load(Ordering::Acquire);
            assert!(pos >= committed, "{backend}: read {pos} bytes, but {committed} were committed");
            // Nothing left behind, and the error sticks.
            assert_eq!(rx.len(), 0, "{backend}: bytes left after UnexpectedEof");
            assert_eq!(rx.try_read(&mut buf).unwrap_err().kind(), ErrorKind::UnexpectedEof);
            assert_eq!(rx.read(&mut buf).unwrap_err().kind(), ErrorKind::UnexpectedEof);
            assert!(rx.is_abandoned());
            assert_eq!(child.wait(), 128 + libc::SIGKILL);
        }
    }
    report("reader mid-stream, producer killed", &mut lat);
}

/// A reader blocked on an empty ring, the producer killed while asleep: the read returns
/// `UnexpectedEof` after the bytes written before, with the child still a zombie.
#[test]
fn a_blocked_reader_notices_a_killed_producer_while_it_is_a_zombie() {
    let mut lat = Vec::new();
    for backend in available() {
        for _ in 0..3 {
            let page = SharedPage::new();
            let ring = RingOptions::new().capacity(4096).backend(backend).shared().unwrap();
            let child_ring = ring.clone();
            let mut child = spawn_child(|| {
                let mut tx = child_ring.into_producer().unwrap();
                tx.write_all(b"last words").unwrap();
                page.word(0).store(1, Ordering::Release);
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
            let mut rx = ring.into_consumer().unwrap();
            let mut buf = [0u8; 64];
            let n = rx.read_timeout(&mut buf, LONG).unwrap();
            assert_eq!(&buf[..n], b"last words");
            let (err, latency) =
                child.kill_during(Duration::from_millis(40), || rx.read_timeout(&mut buf, LONG).unwrap_err());
            assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{backend}: {err}");
            assert_eq!(child.state(), 'Z', "{backend}: the child was reaped behind our back?");
            lat.push(latency);
            assert_eq!(rx.try_read(&mut buf).unwrap_err().kind(), ErrorKind::UnexpectedEof);
            assert_eq!(child.wait(), 128 + libc::SIGKILL);
        }
    }
    report("blocked reader, producer killed", &mut lat);
}

/// A writer blocked on a full ring, the consumer killed: `BrokenPipe`, and the same from
/// `try_write`, later blocking writes and `is_abandoned`.
#[test]
fn a_blocked_writer_notices_a_killed_consumer() {
    let mut lat = Vec::new();
    for backend in available() {
        for _ in 0..3 {
            let page = SharedPage::new();
            let ring = RingOptions::new().capacity(4096).backend(backend).shared().unwrap();
            let child_ring = ring.clone();
            let mut child = spawn_child(|| {
                let mut rx = child_ring.into_consumer().unwrap();
                let mut one = [0u8; 1];
                rx.read_exact(&mut one).unwrap();
                page.word(0).store(1, Ordering::Release);
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
            let mut tx = ring.into_producer().unwrap();
            tx.write_all(b"!").unwrap();
            let until = Instant::now() + LONG;
            while page.word(0).load(Ordering::Acquire) == 0 {
                assert!(Instant::now() < until, "{backend}: the consumer never read");
                std::thread::sleep(Duration::from_millis(1));
            }
            while tx.try_write(&[7u8; 4096]).is_ok() {}
            assert!(!tx.is_abandoned());
            let (err, latency) =
                child.kill_during(Duration::from_millis(40), || tx.write_timeout(b"more", LONG).unwrap_err());
            assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{backend}: {err}");
            assert_eq!(child.state(), 'Z');
            lat.push(latency);
            assert_eq!(tx.try_write(b"x").unwrap_err().kind(), ErrorKind::BrokenPipe);
            assert_eq!(tx.write(b"x").unwrap_err().kind(), ErrorKind::BrokenPipe);
            assert!(tx.is_abandoned());
            assert_eq!(child.wait(), 128 + libc::SIGKILL);
        }
    }
    report("blocked writer, consumer killed", &mut lat);
}

/// The consumer is SIGKILLed while both ends stream: the writer fills what space is left, then
/// gets `BrokenPipe` instead of waiting forever.
#[test]
fn a_consumer_killed_mid_stream_breaks_the_pipe() {
    let mut lat = Vec::new();
    for backend in available() {
        let ring = RingOptions::new().capacity(64 * KIB).backend(backend).shared().unwrap();
        let page = SharedPage::new(); // word 0: bytes read by the child
        let child_ring = ring.clone();
        let mut child = spawn_child(|| {
            let mut rx = child_ring.into_consumer().unwrap();
            let mut buf = vec![0u8; 8 * KIB];
            let mut total = 0;
            loop {
                match rx.read_timeout(&mut buf, LONG) {
                    Ok(n) if n > 0 => total += n as u64,
                    _ => return 1,
                }
                page.word(0).store(total, Ordering::Release);
            }
        });
        let mut tx = ring.into_producer().unwrap();
        let chunk = [0x42u8; 3000];
        let mut killed = None;
        let err = loop {
            if let Err(e) = tx.write_timeout(&chunk, LONG) {
                break e;
            }
            if killed.is_none() && page.word(0).load(Ordering::Acquire) >= (MIB as u64) {
                child.kill();
                killed = Some(Instant::now());
            }
        };
        let Some(killed_at) = killed else { panic!("{backend}: failed before the kill: {err}") };
        assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{backend}: {err}");
        lat.push(killed_at.elapsed()); // filling the space left (at most 64 KiB) included
        assert_eq!(child.state(), 'Z', "{backend}: noticed through a zombie: not reaped yet");
        assert!(tx.is_abandoned());
        assert_eq!(child.wait(), 128 + libc::SIGKILL);
    }
    report("writer mid-stream, consumer killed", &mut lat);
}

/// A producer that exits normally after closing gives a clean end of stream, not a crash,
/// even though its process is gone by the time the reader looks.
#[test]
fn a_producer_that_closed_and_exited_is_a_clean_end_of_stream() {
    for backend in available() {
        let ring = RingOptions::new().backend(backend).shared().unwrap();
        let child_ring = ring.clone();
        let mut child = spawn_child(|| {
            let mut tx = child_ring.into_producer().unwrap();
            tx.write_all(b"bye").unwrap();
            0
        });
        // Reaped before the reader even starts: the pid may be gone, the close flag decides.
        assert_eq!(child.wait(), 0);
        let mut rx = ring.into_consumer().unwrap();
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"bye");
    }
}

/// Set in the copy of this test binary that [`a_child_forked_during_the_backend_probe_can_create_rings`]
/// runs: that copy makes the attempts.
const PROBE_RACE_WORKER: &str = "MIRROR_RING_PROBE_RACE_WORKER";

/// A process forked while another of its threads probes which backends work must still be
/// able to create rings: the probe's once-per-process state must not stay "in progress" in the
/// child, where the probing thread does not exist (a hang, seen in this suite as a child of a
/// multi-threaded test process that never returned from its first ring creation).
///
/// The probe runs once per process and a fork inherits its result, so the attempts run in a
/// freshly started copy of this test binary, where nothing has probed yet. Each attempt forks
/// from it (so still unprobed); there one thread probes every backend for the first time while
/// the main thread forks children that each create a ring.
#[test]
fn a_child_forked_during_the_backend_probe_can_create_rings() {
    if std::env::var_os(PROBE_RACE_WORKER).is_some() {
        return probe_race_attempts();
    }
    let mut worker = Worker(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "a_child_forked_during_the_backend_probe_can_create_rings", "--nocapture", "-q"])
            .env(PROBE_RACE_WORKER, "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Read while it runs: a worker that filled the pipe would block on its stderr, and one that
    // hangs should still show what it said. (Its children die with it: the pipe then closes.)
    let mut stderr = worker.0.stderr.take().unwrap();
    let said = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let end = Instant::now() + 4 * LONG;
    let status = loop {
        if let Some(status) = worker.0.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            worker.0.kill().unwrap();
            worker.0.wait().unwrap();
            let err = said.join().unwrap_or_default();
            panic!("the worker process ran for more than {:?}:\n{err}", 4 * LONG);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let err = said.join().unwrap_or_default();
    assert!(status.success(), "the worker failed ({status}):\n{err}");
}

/// The worker process of [`a_child_forked_during_the_backend_probe_can_create_rings`]: killed
/// and reaped when dropped, so a test that fails before it has waited for the worker (a
/// panicking `try_wait`) leaves no copy of the test binary running. std's `Child` does
/// neither on drop; its `kill` never signals a child it has already reaped, so this drop is
/// safe whenever it runs.
struct Worker(std::process::Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The attempts of [`a_child_forked_during_the_backend_probe_can_create_rings`], in a process
/// that has not probed the backends.
fn probe_race_attempts() {
    let mut hung = 0;
    let mut forked = 0;
    for _ in 0..1000 * scale() {
        let page = SharedPage::new(); // word 0: children forked while the probe ran, 1: hung
        let status = in_child(|| {
            let done = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|s| {
                s.spawn(|| {
                    let _ = Backend::Auto.is_available(); // the first probe in this process
                    done.store(true, Ordering::Release);
                });
                let mut children = Vec::new();
                while !done.load(Ordering::Acquire) && children.len() < 64 {
                    children.push(spawn_child(|| i32::from(RingOptions::new().capacity(4096).shared().is_err())));
                }
                page.word(0).store(children.len() as u64, Ordering::Relaxed);
                let end = Instant::now() + LONG / 4;
                for mut child in children {
                    loop {
                        if child.try_wait().is_some() {
                            break;
                        }
                        if Instant::now() > end {
                            page.word(1).fetch_add(1, Ordering::Relaxed);
                            child.kill();
                            child.wait();
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            });
            0
        });
        assert_eq!(status, 0);
        forked += page.word(0).load(Ordering::Relaxed);
        hung += page.word(1).load(Ordering::Relaxed);
        if hung > 0 {
            break;
        }
    }
    assert!(forked > 0, "no child was forked while the probe ran");
    assert_eq!(hung, 0, "{hung} of {forked} children forked during the backend probe hung creating a ring");
}

// ---------------------------------------------------------------------------------------------
// Leaks.

/// Forks a child that says it runs (word `i` of `page`) and then sleeps until its parent is
/// gone: killed by a guard, or by the end of the process that forked it, whichever is first,
/// so that a broken guard cannot leave it behind for longer than that process lives.
fn sleeper(page: &SharedPage, i: usize) -> Child {
    let parent = std::process::id();
    let child = spawn_child(|| {
        page.word(i).store(1, Ordering::Release);
        while std::os::unix::process::parent_id() == parent {
            std::thread::sleep(Duration::from_millis(5));
        }
        0
    });
    let until = Instant::now() + LONG;
    while page.word(i).load(Ordering::Acquire) == 0 {
        assert!(Instant::now() < until, "the sleeper never ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    child
}

/// A test that fails while its forked child runs leaves no process behind: the `Child` guard,
/// dropped while the failed assertion unwinds, kills the child and reaps it. Played in a
/// process of its own (one thread, no other test's children), which must then have no child
/// at all: neither the sleeper running, nor its zombie.
#[test]
fn a_failed_assertion_leaves_no_child_process_behind() {
    let status = spawn_child(|| {
        let page = SharedPage::new(); // word 0: the sleeper runs
        let mut pid = 0;
        let unwound = catch_unwind(AssertUnwindSafe(|| {
            let child = sleeper(&page, 0);
            pid = child.pid();
            assert_eq!(page.word(0).load(Ordering::Acquire), 2, "a failed assertion while the child runs");
        }))
        .is_err();
        if !unwound || pid <= 0 {
            return 2; // nothing panicked, or before the sleeper ran
        }
        // SAFETY: a null status pointer is allowed.
        let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        let e = std::io::Error::last_os_error().raw_os_error();
        match r {
            -1 if e == Some(libc::ECHILD) => 0,
            0 => {
                // Still running: the guard did not kill it. Clean up here, so that this
                // failure leaves nothing behind either.
                // SAFETY: our own child, still running, so unreaped: the pid is its own.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                // SAFETY: a null status pointer is allowed.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
                3
            }
            r if r == pid => 4, // a zombie (now reaped): killed, never reaped
            _ => 5,
        }
    })
    .wait_within(LONG);
    assert_eq!(status, 0, "2: the setup failed, 3: the child was left running, 4: left a zombie, 5: waitpid failed");
}

/// A child whose parent dies dies with it: a test child killed by its guard (or by a bound on
/// its wait) while it had forked children of its own leaves none of them running.
#[test]
fn a_grandchild_dies_with_its_parent() {
    let page = SharedPage::new(); // word 0: the grandchild runs, word 1: its pid
    let mut parent = spawn_child(|| {
        let _grandchild = spawn_child(|| {
            page.word(1).store(std::process::id().into(), Ordering::Relaxed);
            page.word(0).store(1, Ordering::Release);
            std::thread::sleep(LONG); // (bounded: even a grandchild left behind ends)
            0
        });
        loop {
            std::thread::sleep(Duration::from_secs(1)); // until killed: no guard runs
        }
    });
    let until = Instant::now() + LONG;
    while page.word(0).load(Ordering::Acquire) == 0 {
        assert!(Instant::now() < until, "the grandchild never ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    let grandchild = page.word(1).load(Ordering::Relaxed);
    parent.kill();
    assert_eq!(parent.wait(), 128 + libc::SIGKILL);
    // Not our child: its /proc entry tells, gone or a zombie until its new parent reaps it.
    let dead = || match std::fs::read_to_string(format!("/proc/{grandchild}/stat")) {
        Ok(stat) => matches!(stat[stat.rfind(')').unwrap() + 2..].chars().next(), Some('Z' | 'X')),
        Err(_) => true,
    };
    let until = Instant::now() + Duration::from_secs(5);
    while !dead() {
        assert!(Instant::now() < until, "the grandchild {grandchild} outlived its parent");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A copy of a guard that a forked child inherited (its closure took the guard) is not the
/// parent: dropping it there neither kills nor reaps the sibling it names, which lives on
/// until its own parent's guard ends it.
#[test]
fn a_guard_copied_into_a_forked_child_leaves_the_sibling_alone() {
    let status = spawn_child(|| {
        let page = SharedPage::new(); // word 0: the sleeper runs
        let mut slot = Some(sleeper(&page, 0));
        let mut carrier = spawn_child(|| {
            drop(slot.take()); // this process's copy of the guard
            0
        });
        if carrier.wait_within(LONG) != 0 {
            return 2;
        }
        let mut sibling = slot.take().unwrap();
        // A SIGKILL sent by the copy would have ended the sleeper by now.
        std::thread::sleep(Duration::from_millis(100));
        match sibling.try_wait() {
            None => 0,
            Some(_) => 3,
        }
    })
    .wait_within(LONG);
    assert_eq!(status, 0, "2: the carrier failed, 3: the copy of the guard killed the sibling");
}

/// Creates, forks, streams and drops rings on every backend (including memfd hand-over) many
/// times inside a child, and checks that the child ends with the same descriptors and shared
/// mappings it started with, and no child processes of its own.
#[test]
fn ring_cycles_across_processes_leak_no_fd_mapping_or_child() {
    let status = in_child(|| {
        let fds = open_fds();
        let maps = our_mappings();
        let pat = Pattern::new(1);
        for round in 0..8 * scale() {
            for backend in available() {
                let ring = RingOptions::new().capacity(16 * KIB).backend(backend).shared().unwrap();
                let child_ring = ring.clone();
                let mut child = spawn_child(|| {
                    let mut tx = child_ring.into_producer().unwrap();
                    i32::from(produce(&mut tx, &pat, 256 * KIB as u64, round as u64).is_err())
                });
                let mut rx = ring.into_consumer().unwrap();
                let ok = matches!(consume(&mut rx, &pat, 1), Ok(Ok(s)) if s.1 == 256 * KIB as u64);
                drop(rx);
                if !ok || child.wait_within(LONG) != 0 {
                    return 2;
                }
            }
            // The memfd hand-over; on odd rounds the receiver is killed once it has read, and
            // the producer must see it dead (its watch opens a pidfd, which must not leak).
            let kill = round % 2 == 1;
            let (a, b) = UnixStream::pair().unwrap();
            let mut child = spawn_child(|| {
                let ring = SharedRing::recv_from(&b).unwrap();
                let mut rx = ring.into_consumer().unwrap();
                if kill {
                    let mut got = [0u8; 9];
                    rx.read_exact(&mut got).unwrap();
                    (&b).write_all(&[u8::from(&got != b"hand-over")]).unwrap();
                    loop {
                        std::thread::sleep(Duration::from_secs(1)); // until killed
                    }
                }
                let mut got = Vec::new();
                rx.read_to_end(&mut got).unwrap();
                i32::from(got != b"hand-over")
            });
            drop(b);
            let ring = RingOptions::new().backend(Backend::Memfd).shared().unwrap();
            ring.send_to(&a).unwrap();
            let attached = SharedRing::from_fd(ring.as_fd().unwrap().try_clone_to_owned().unwrap()).unwrap();
            let mut tx = attached.into_producer().unwrap();
            tx.write_all(b"hand-over").unwrap();
            if kill {
                let mut verdict = [1u8];
                a.set_read_timeout(Some(LONG)).unwrap();
                if (&a).read_exact(&mut verdict).is_err() || verdict[0] != 0 {
                    child.kill();
                    child.wait();
                    return 7;
                }
                child.kill();
                let until = Instant::now() + LONG;
                while !tx.is_abandoned() {
                    if Instant::now() > until {
                        return 8;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                // (A write that finds room still succeeds: the death is consulted once the ring
                // is full, so fill it.)
                let err = loop {
                    if let Err(e) = tx.try_write(&[0; 4096]) {
                        break e;
                    }
                };
                let broken = err.kind() == ErrorKind::BrokenPipe;
                if !broken || child.wait_within(LONG) != 128 + libc::SIGKILL {
                    return 9;
                }
                drop((tx, ring, a));
                continue;
            }
            drop((tx, ring, a));
            if child.wait_within(LONG) != 0 {
                return 3;
            }
        }
        if open_fds() != fds {
            eprintln!("fds before {fds:?}, after {:?}", open_fds());
            return 4;
        }
        if our_mappings() != maps {
            return 5;
        }
        if !no_children_left() {
            return 6;
        }
        0
    });
    assert_eq!(
        status, 0,
        "2/3: a stream failed, 4: fd leak, 5: mapping leak, 6: child left, 7-9: the killed receiver (7: it read wrong \
         bytes, 8: its death never seen, 9: no BrokenPipe or wrong exit status)"
    );
}

/// Nothing the crate does between processes leaves a name in `/dev/shm` (the fd-less
/// backends have no name at all; memfds live on an internal mount).
#[test]
fn no_new_entries_under_dev_shm() {
    let list = || -> Vec<String> {
        let mut v: Vec<String> = match std::fs::read_dir("/dev/shm") {
            Ok(d) => d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(), // no /dev/shm at all: nothing can appear there either
        };
        v.sort();
        v
    };
    let before = list();
    let status = in_child(|| {
        for backend in available() {
            let ring = RingOptions::new().backend(backend).shared().unwrap();
            let child_ring = ring.clone();
            let mut child = spawn_child(|| {
                let mut tx = child_ring.into_producer().unwrap();
                tx.write_all(&[1; 100_000]).unwrap();
                // Die without closing: a crash must not leave a name behind either.
                // SAFETY: raising SIGKILL on ourselves ends this process at once.
                unsafe { libc::raise(libc::SIGKILL) };
                0
            });
            let mut rx = ring.into_consumer().unwrap();
            let mut n = 0;
            let mut buf = [0u8; 4096];
            let e = loop {
                match rx.read_timeout(&mut buf, LONG) {
                    Ok(k) => n += k,
                    Err(e) => break e,
                }
            };
            if n != 100_000 || e.kind() != ErrorKind::UnexpectedEof || child.wait() != 128 + libc::SIGKILL {
                return 1;
            }
        }
        0
    });
    assert_eq!(status, 0);
    let after = list();
    let new: Vec<_> = after.iter().filter(|e| !before.contains(e)).collect();
    assert!(new.is_empty(), "new entries under /dev/shm: {new:?}");
}

/// `recv_fd` hands back a close-on-exec descriptor (a later exec must not leak the ring), and
/// the ring it names attaches.
#[test]
fn received_descriptors_are_close_on_exec() {
    let (a, b) = UnixStream::pair().unwrap();
    let ring = RingOptions::new().backend(Backend::Memfd).shared().unwrap();
    ring.send_to(&a).unwrap();
    let fd = mirror_ring::recv_fd(&b).unwrap();
    // SAFETY: F_GETFD on an open descriptor.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    assert!(flags >= 0 && flags & libc::FD_CLOEXEC != 0);
    let attached = SharedRing::from_fd(fd).unwrap();
    assert_eq!(attached.capacity(), ring.capacity());
}
