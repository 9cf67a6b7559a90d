//! Lifecycle defects found by reading the first release as a hostile user would: forked copies
//! that still wrote the shared header, a framed `try_recv` that could never deliver, "could not
//! check" taken for "dead", idle rings paying a heavy barrier per watch interval, and the
//! framed producer's fast path after poisoning. Each test failed on the first release.

mod common;

use std::io::{BufRead, ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use common::{in_child, spawn_child};
use mirror_ring::{Backend, RingOptions};

/// Exit codes of the forked children below: 0 fine, 1 the call did something it must not.
const OK: i32 = 0;
const WRONG: i32 = 1;

/// The smallest thread ring (one page: the tests below read its size from the ends),
/// inherited by children unless `dont_fork`.
fn ring(dont_fork: bool) -> (mirror_ring::Producer, mirror_ring::Consumer) {
    RingOptions::new().capacity(4096).dont_fork(dont_fork).build().unwrap()
}

fn unsupported<T>(r: std::io::Result<T>) -> bool {
    matches!(r, Err(e) if e.kind() == ErrorKind::Unsupported)
}

/// `BufRead::consume` in a forked child must not release the parent's unread bytes (before the
/// fix: a child's `consume(3)` let the parent's producer overwrite them; with `dont_fork` the
/// child died of SIGSEGV storing into a page it does not have).
#[test]
fn a_forked_consume_releases_nothing() {
    for dont_fork in [false, true] {
        let (mut tx, mut rx) = ring(dont_fork);
        tx.write_all(b"abc").unwrap();
        assert_eq!(rx.fill_buf().unwrap(), b"abc");
        let status = in_child(|| {
            rx.consume(3);
            OK
        });
        assert_eq!(status, OK, "dont_fork {dont_fork}: the child crashed (139: SIGSEGV)");
        let cap = tx.capacity();
        assert_eq!(
            tx.try_write(&vec![7; cap]).unwrap(),
            cap - 3,
            "dont_fork {dont_fork}: the unread bytes were released"
        );
        let mut got = [0; 3];
        rx.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abc", "dont_fork {dont_fork}");
    }
}

/// A `ReadGrant` held across `fork()` and released in the child.
#[test]
fn a_read_grant_released_in_a_forked_child_releases_nothing() {
    for dont_fork in [false, true] {
        let (mut tx, mut rx) = ring(dont_fork);
        tx.write_all(b"abc").unwrap();
        let grant = rx.read_grant(3).unwrap();
        let status = in_child(|| if unsupported(grant.release(3)) { OK } else { WRONG });
        assert_eq!(status, OK, "dont_fork {dont_fork}: 1: released, 139: SIGSEGV");
        assert_eq!(tx.free(), tx.capacity() - 3, "dont_fork {dont_fork}");
    }
}

/// A `WriteGrant` held across `fork()` and committed in the child.
#[test]
fn a_write_grant_committed_in_a_forked_child_publishes_nothing() {
    for dont_fork in [false, true] {
        let (mut tx, rx) = ring(dont_fork);
        let grant = tx.write_grant(3).unwrap();
        let status = in_child(|| if unsupported(grant.commit(3)) { OK } else { WRONG });
        assert_eq!(status, OK, "dont_fork {dont_fork}: 1: committed, 139: SIGSEGV");
        assert_eq!(rx.len(), 0, "dont_fork {dont_fork}: bytes were published by the child");
    }
}

/// The framed producer's flush, `send_batch`, `set_batch` and `into_inner` (which publish
/// pending frames) and a `FrameGrant` committed in a child: nothing reaches the parent's consumer, the ring is
/// not closed, and nothing crashes.
#[test]
fn framed_producer_calls_in_a_forked_child_publish_nothing() {
    type Op = fn(&mut Option<mirror_ring::FramedProducer>) -> bool;
    let ops: [(&str, Op); 5] = [
        ("flush", |tx| unsupported(tx.as_mut().unwrap().flush())),
        // Would publish the pending frame with its own, and the ring has room for both.
        ("send_batch", |tx| unsupported(tx.as_mut().unwrap().send_batch(&[b"from the child"]))),
        ("set_batch", |tx| {
            tx.as_mut().unwrap().set_batch(1);
            true
        }),
        ("into_inner", |tx| {
            drop(tx.take().unwrap().into_inner());
            true
        }),
        ("FrameGrant::commit", |tx| {
            let tx = tx.as_mut().unwrap();
            tx.set_batch(1);
            match tx.reserve(5) {
                Err(e) => e.kind() == ErrorKind::Unsupported,
                Ok(g) => unsupported(g.commit()),
            }
        }),
    ];
    for dont_fork in [false, true] {
        for (what, op) in ops {
            let (tx, rx) = ring(dont_fork);
            let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
            tx.set_batch(8);
            tx.send(b"pending").unwrap();
            let mut tx = Some(tx);
            let status = in_child(|| if op(&mut tx) { OK } else { WRONG });
            assert_eq!(status, OK, "{what}, dont_fork {dont_fork}: 1: wrong result, 139: SIGSEGV");
            let tx = tx.as_mut().unwrap();
            assert_eq!(
                rx.try_recv().map(|f| f.map(|f| f.len())).unwrap_err().kind(),
                ErrorKind::WouldBlock,
                "{what}, dont_fork {dont_fork}: the child published or closed"
            );
            tx.flush().unwrap();
            assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"pending", "{what}, dont_fork {dont_fork}");
        }
    }
}

/// A received `Frame` dropped in a child, and `recv_batch` in a child: the parent's frames
/// stay unreleased.
#[test]
fn framed_consumer_calls_in_a_forked_child_release_nothing() {
    for dont_fork in [false, true] {
        let (tx, rx) = ring(dont_fork);
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        tx.send(&[1; 100]).unwrap();
        tx.send(&[2; 100]).unwrap();
        let used = 2 * (8 + 104);
        // ManuallyDrop: the closure only borrows the frame, so the parent does not drop (and
        // release) it when `in_child` drops the unused closure.
        let mut frame = std::mem::ManuallyDrop::new(rx.try_recv().unwrap().unwrap());
        let status = in_child(|| {
            // SAFETY: dropped once, in the child only.
            unsafe { std::mem::ManuallyDrop::drop(&mut frame) };
            OK
        });
        assert_eq!(status, OK, "dont_fork {dont_fork}: dropping a frame crashed the child");
        let status = in_child(|| {
            let mut seen = 0;
            if unsupported(rx.try_recv_batch(|_| seen += 1)) && seen == 0 {
                OK
            } else {
                WRONG
            }
        });
        assert_eq!(status, OK, "dont_fork {dont_fork}: recv_batch in a child");
        let raw = tx.into_inner();
        let cap = raw.capacity();
        assert_eq!(raw.free(), cap - used, "dont_fork {dont_fork}: a child released frames");
        assert_eq!(rx.try_recv_batch(|_| {}).unwrap(), 2);
        assert_eq!(raw.free(), cap);
    }
}

/// Framed ends converted at a position that is not a multiple of 8: the consumer's skip over
/// the alignment gap must reach the producer on the non-blocking path too, or a frame that
/// needs the whole ring never fits (before the fix, both sides waited for ever).
#[test]
fn framed_try_recv_after_an_unaligned_conversion_delivers_a_full_size_frame() {
    let (mut tx, mut rx) = RingOptions::new().capacity(4096).build().unwrap();
    tx.write_all(b"raw").unwrap();
    let mut three = [0; 3];
    rx.read_exact(&mut three).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let max = tx.max_frame_len();
    let sender = std::thread::spawn(move || {
        // Bounded, so that a failure shows as an error instead of a hang.
        tx.send_timeout(&vec![9; max], Duration::from_secs(10)).map_err(|e| e.kind())
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        match rx.try_recv() {
            Ok(Some(frame)) => break Some(frame.len()),
            Ok(None) => break None,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => std::thread::yield_now(),
            Err(e) => panic!("try_recv: {e}"),
        }
    };
    assert_eq!(sender.join().unwrap(), Ok(()), "the producer never found room for the frame");
    assert_eq!(got, Some(max));
}

/// Sets `RLIMIT_NOFILE` so that no descriptor can be opened (in the calling process: only
/// call this in a forked child). Returns the old limit.
fn exhaust_descriptors() -> libc::rlimit {
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    // The highest descriptor in use: a limit at or below it makes every open fail with EMFILE.
    let lowest_free = {
        // SAFETY: dup of stdin-or-anything; we close it right away.
        let fd = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 0) };
        assert!(fd >= 0);
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
        fd as u64
    };
    let low = libc::rlimit { rlim_cur: lowest_free, rlim_max: old.rlim_max };
    // SAFETY: valid pointer.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    // SAFETY: an open that must now fail.
    let probe = unsafe { libc::open(c"/proc/self/stat".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    assert_eq!(probe, -1, "descriptors are not exhausted");
    old
}

/// With every descriptor in use, the liveness check of a live, silent producer cannot open a
/// pidfd or read `/proc`: that is "unknown", not "dead". A blocked read must time out (not
/// report a dead producer), and the verdict must not stick once descriptors are back.
#[test]
fn descriptor_exhaustion_is_not_death_and_is_not_latched() {
    for backend in [Backend::Auto, Backend::Memfd] {
        let ring = RingOptions::new().capacity(4096).backend(backend).shared().unwrap();
        // The producer: this process, alive and silent until told to write.
        let mut tx = ring.clone().into_producer().unwrap();
        let (go_r, go_w) = pipe();
        let mut child = spawn_child(move || {
            let mut rx = ring.into_consumer().unwrap();
            let old = exhaust_descriptors();
            let mut buf = [0u8; 8];
            let first = rx.read_timeout(&mut buf, Duration::from_millis(200)).map_err(|e| e.kind());
            let stats = rx.stats();
            // SAFETY: restores the limit read above.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) };
            let second = rx.read_timeout(&mut buf, Duration::from_millis(200)).map_err(|e| e.kind());
            // Tell the parent to write, then read what it writes.
            let _ = rustix_write(&go_w, b"g");
            let third = rx.read_timeout(&mut buf, Duration::from_secs(20)).map_err(|e| e.kind());
            let ok = first == Err(ErrorKind::TimedOut)
                && stats.peer_unknown > 0
                && second == Err(ErrorKind::TimedOut)
                && third == Ok(5)
                && &buf[..5] == b"hello";
            if !ok {
                eprintln!("{backend}: exhausted {first:?} ({stats:?}), restored {second:?}, then {third:?}");
            }
            if ok {
                OK
            } else {
                WRONG
            }
        });
        let mut g = [0u8; 1];
        // Bounded by the child's own timeouts; a broken child closes the pipe (read 0).
        let n = std::fs::File::from(go_r).read(&mut g).unwrap_or(0);
        if n == 1 {
            tx.write_all(b"hello").unwrap();
        }
        assert_eq!(child.wait_within(Duration::from_secs(60)), OK, "{backend}: see stderr");
        drop(tx);
    }
}

/// A claim by a process that cannot read its own start time for want of a descriptor must
/// fail, claiming nothing: a holding recorded with start time 0 ("unknown") would lose the
/// pid-reuse check for its whole life. Once descriptors are back the claim works and records
/// the start time. A take-over goes through the same claimant record.
#[test]
fn a_claim_without_descriptors_fails_and_claims_nothing() {
    use common::header_offsets::{OFF_CONSUMER, OFF_PRODUCER};
    use std::sync::atomic::Ordering::Relaxed;
    let status = in_child(|| {
        let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
        let view = common::HeaderView::map(ring.as_fd().unwrap());
        let old = exhaust_descriptors();
        let r = ring.clone().into_producer().map(drop);
        // SAFETY: restores the limit read above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) };
        let Err(e) = r else {
            eprintln!("claimed; start time recorded: {}", view.u64_at(OFF_PRODUCER + 8).load(Relaxed));
            return 2;
        };
        let os = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>());
        if os.and_then(|o| o.raw_os_error()) != Some(libc::EMFILE) || !e.to_string().contains("start time") {
            eprintln!("{e} ({e:?})");
            return 3;
        }
        if view.u64_at(OFF_PRODUCER).load(Relaxed) != 0 {
            return 4;
        }
        let Ok(tx) = ring.clone().into_producer() else { return 5 };
        let Ok(rx) = ring.clone().into_consumer() else { return 5 };
        let recorded = [OFF_PRODUCER, OFF_CONSUMER].map(|slot| view.u64_at(slot + 8).load(Relaxed));
        drop((tx, rx));
        if recorded.contains(&0) {
            return 6;
        }
        OK
    });
    assert_eq!(
        status, OK,
        "2 = claimed anyway, 3 = not EMFILE naming the start time, 4 = the slot changed, 5 = no claim once \
         descriptors were back, 6 = no start time recorded"
    );
}

fn pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: two fresh descriptors that nothing else owns.
    unsafe { (std::os::fd::OwnedFd::from_raw_fd(fds[0]), std::os::fd::OwnedFd::from_raw_fd(fds[1])) }
}

/// A write of an already-open descriptor (needs no new descriptor).
fn rustix_write(fd: &std::os::fd::OwnedFd, bytes: &[u8]) -> isize {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor and buffer.
    unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) }
}

/// An idle reader between processes sleeps in bounded slices (to watch its peer) but pays the
/// heavy barrier once per park, not once per slice: a global expedited membarrier interrupts
/// every CPU running any registered process on the machine.
#[test]
fn an_idle_reader_between_processes_pays_one_barrier_per_park() {
    let ring = RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).shared().unwrap();
    let _tx = ring.clone().into_producer().unwrap(); // alive and silent: this process
    let status = in_child(move || {
        let mut rx = ring.into_consumer().unwrap();
        let r = rx.read_timeout(&mut [0u8; 8], Duration::from_millis(300)).map_err(|e| e.kind());
        let s = rx.stats();
        // 300 ms in slices of the 25 ms watch interval: about a dozen sleeps, one park.
        let ok = r == Err(ErrorKind::TimedOut) && s.parks == 1 && s.barriers <= 1 && s.sleeps >= 5 && s.timed_out == 1;
        if !ok {
            eprintln!("{r:?} {s:?}");
        }
        if ok {
            OK
        } else {
            WRONG
        }
    });
    assert_eq!(status, OK, "see stderr");
}

/// A framed producer whose cursor was found poisoned keeps refusing, also on its batched fast
/// path (before the fix, the fast path went on accepting frames into room it had checked
/// before the poisoning).
#[test]
fn a_poisoned_framed_producer_refuses_every_send() {
    let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    let fd = ring.as_fd().unwrap().try_clone_to_owned().unwrap();
    let (tx, rx) = (ring.clone().into_producer().unwrap(), ring.into_consumer().unwrap());
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    tx.set_batch(64);
    for _ in 0..8 {
        tx.send(&[1; 100]).unwrap();
    }
    tx.flush().unwrap();
    let mut got = 0;
    while got < 8 {
        got += rx.try_recv_batch(|_| {}).unwrap();
    }
    // A hostile consumer publishes a tail beyond the head.
    let bad = 1u64 << 40;
    // SAFETY: a valid descriptor and buffer.
    let n = unsafe {
        use std::os::fd::AsRawFd;
        libc::pwrite(fd.as_raw_fd(), bad.to_le_bytes().as_ptr().cast(), 8, common::header_offsets::OFF_TAIL as i64)
    };
    assert_eq!(n, 8);
    // Fill the room the producer knows of (at most the whole ring, 112 bytes a frame: 100
    // sends are plenty with 4 KiB, as many per 4 KiB of a larger ring), so that it must look
    // at the tail again.
    let mut first_error = None;
    for i in 0..100 * (tx.capacity() / 4096) {
        if let Err(e) = tx.send(&[2; 100]) {
            first_error = Some((i, e.kind()));
            break;
        }
    }
    let (i, kind) = first_error.expect("the poisoned tail was never noticed");
    assert_eq!(kind, ErrorKind::InvalidData, "after {i} sends");
    for _ in 0..100 {
        assert_eq!(tx.send(&[3; 8]).unwrap_err().kind(), ErrorKind::InvalidData, "a send after the poisoning");
    }
    assert_eq!(tx.flush().unwrap_err().kind(), ErrorKind::InvalidData);
    drop(rx);
}

/// A stream between processes through a tiny ring with no spin budget, so that nearly every
/// hand-over parks: every park must end by a wake-up, never by running to its bound while the
/// data (or space) was already there. Sleeps are bounded by the watch interval, so a stream
/// with every wake-up lost would still finish; the counters are what can tell.
#[test]
fn a_stream_between_processes_loses_no_wakeup() {
    for backend in common::available() {
        let ring = RingOptions::new().capacity(4096).backend(backend).spin_budget(Duration::ZERO).shared().unwrap();
        let total = 4 << 20;
        let mut child = spawn_child({
            let ring = ring.clone();
            move || {
                let mut tx = ring.into_producer().unwrap();
                let mut sent = 0usize;
                let chunk: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
                while sent < total {
                    let n = (total - sent).min(1000);
                    let off = sent % 256;
                    tx.write_all(&chunk[..n].iter().map(|&b| b.wrapping_add(off as u8)).collect::<Vec<_>>()).unwrap();
                    sent += n;
                }
                let s = tx.stats();
                drop(tx);
                if s.lost_wakeups == 0 {
                    OK
                } else {
                    eprintln!("{backend} producer: {s:?}");
                    WRONG
                }
            }
        });
        let mut rx = ring.into_consumer().unwrap();
        let mut buf = vec![0u8; 1500];
        let mut got = 0usize;
        loop {
            let n = rx.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            for (i, &b) in buf[..n].iter().enumerate() {
                assert_eq!(b, ((got + i) % 256) as u8, "{backend}: byte {}", got + i);
            }
            got += n;
        }
        assert_eq!(got, total);
        let s = rx.stats();
        assert_eq!(child.wait_within(Duration::from_secs(120)), OK, "{backend}: the producer lost wake-ups");
        assert!(s.parks > 0, "{backend}: the consumer never parked, so nothing was tested: {s:?}");
        assert_eq!(s.lost_wakeups, 0, "{backend}: the consumer lost wake-ups: {s:?}");
    }
}

/// A `dont_fork` ring is not in a forked child, even one with its maker's pid: pid 1 of a
/// PID namespace forks pid 1 of a nested one. That child's own memory where the ring was
/// (taken here as any allocation could take it) is neither read as a header by a claim, which
/// fails with `Unsupported`, nor unmapped by a drop. Needs the right to make PID namespaces
/// (skipped, saying so, without it).
#[test]
fn a_dont_fork_ring_is_not_in_a_child_that_has_its_makers_pid() {
    let page = common::page_size();
    let status = in_child(|| {
        // SAFETY: unshare has no memory effects; CLONE_NEWPID applies to later children.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return 77;
        }
        in_child(|| {
            // SAFETY: getpid cannot fail.
            assert_eq!(unsafe { libc::getpid() }, 1);
            let ring = RingOptions::new().capacity(4096).dont_fork(true).shared().unwrap();
            // The range: the control page, then the two views.
            let base = ring.clone().into_producer().unwrap().write_grant(1).unwrap().as_ptr() as usize - page;
            let total = page + 2 * ring.capacity();
            // SAFETY: as above.
            if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
                return 78;
            }
            in_child(move || {
                // SAFETY: getpid cannot fail.
                assert_eq!(unsafe { libc::getpid() }, 1, "the child has its maker's pid");
                // The range is free here (MADV_DONTFORK): the child's own memory goes there.
                let Some(mine) = common::take_range(base, total) else { return 20 };
                let claimed = ring.clone().into_consumer();
                if !matches!(&claimed, Err(e) if e.kind() == ErrorKind::Unsupported) {
                    return 21;
                }
                drop(claimed);
                drop(ring);
                if !common::mapped_at(base, total) {
                    return 22;
                }
                i32::from(mine.iter().any(|&b| b != 0x5a)) * 23
            })
        })
    });
    match status {
        77 => eprintln!("skipped: no right to make a PID namespace here"),
        s => assert_eq!(s, OK, "21: a claim did not fail, 22: a drop unmapped the child's memory, 23: changed it"),
    }
}

/// A reader polling an idle ring with short timeouts pays the heavy barrier once, not once
/// per call: a wait that ends on its deadline leaves its flag raised, covered by the barrier
/// it paid, for the next wait (membarrier's global form interrupts every CPU running a
/// registered process). Between threads and on a shared ring. No spin budget, so that every
/// wait parks: with one, a loaded machine can spend a 2 ms wait spinning and yielding.
#[test]
fn timed_waits_on_an_idle_ring_pay_the_heavy_barrier_once() {
    for shared in [false, true] {
        let mut opts = RingOptions::new();
        opts.capacity(4096).spin_budget(Duration::ZERO);
        let (_tx, mut rx) = if shared {
            let ring = opts.shared().unwrap();
            (ring.clone().into_producer().unwrap(), ring.into_consumer().unwrap())
        } else {
            opts.build().unwrap()
        };
        let mut buf = [0u8; 16];
        for _ in 0..100 {
            assert_eq!(rx.read_timeout(&mut buf, Duration::from_millis(2)).unwrap_err().kind(), ErrorKind::TimedOut);
        }
        let s = rx.stats();
        assert!(s.parks >= 100, "shared {shared}: {s:?}");
        assert!(s.barriers <= 2, "shared {shared}: a heavy barrier per timed wait: {s:?}");
    }
}

/// The flag a timed-out wait leaves raised still wakes the next wait at once, on both sides,
/// with and without a spin budget: the time from the peer's call to the woken call's return
/// stays far below the 100 ms bound a lost wake-up would wait for.
#[test]
fn a_flag_left_raised_by_timed_out_waits_still_wakes() {
    let bound = Duration::from_millis(50);
    for spin in [Duration::ZERO, Duration::from_micros(50)] {
        let (mut tx, mut rx) = RingOptions::new().capacity(4096).spin_budget(spin).build().unwrap();
        let mut buf = [0u8; 8];
        for _ in 0..5 {
            assert_eq!(rx.read_timeout(&mut buf, Duration::from_millis(2)).unwrap_err().kind(), ErrorKind::TimedOut);
        }
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let t = Instant::now();
            tx.write_all(b"z").unwrap();
            (t, tx)
        });
        assert_eq!(rx.read_timeout(&mut buf, Duration::from_secs(5)).unwrap(), 1);
        let woke = Instant::now();
        let (t, _tx) = writer.join().unwrap();
        assert!(woke.saturating_duration_since(t) < bound, "reader, spin {spin:?}: {:?}", woke - t);
        assert_eq!(rx.stats().lost_wakeups, 0);

        let (mut tx, mut rx) = RingOptions::new().capacity(4096).spin_budget(spin).build().unwrap();
        tx.write_all(&vec![0; tx.capacity()]).unwrap();
        for _ in 0..5 {
            assert_eq!(tx.write_timeout(b"a", Duration::from_millis(2)).unwrap_err().kind(), ErrorKind::TimedOut);
        }
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let mut b = [0u8; 100];
            let t = Instant::now();
            rx.read_exact(&mut b).unwrap();
            (t, rx)
        });
        assert_eq!(tx.write_timeout(b"a", Duration::from_secs(5)).unwrap(), 1);
        let woke = Instant::now();
        let (t, _rx) = reader.join().unwrap();
        assert!(woke.saturating_duration_since(t) < bound, "writer, spin {spin:?}: {:?}", woke - t);
        assert_eq!(tx.stats().lost_wakeups, 0);
    }
}
