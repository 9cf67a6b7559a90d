//! Unit tests of the ends: hostile cursors, wrapping, poisoning, aliasing across the seam.
use super::*;
use crate::test_util::Rng;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::sync::atomic::Ordering;

fn header_of(p: &Producer) -> &Header {
    p.end.header().unwrap()
}

/// Random grants, commits, reads and releases against a `VecDeque` model, with both cursors
/// starting just below `u64::MAX`, so the stream crosses the wrap of the `u64` cursors as
/// well as the wrap of the ring, many times (about 50 laps, whatever the page size).
#[test]
fn cursors_wrap_around_u64_max() {
    for backend in Backend::CONCRETE.into_iter().filter(|b| b.is_available()) {
        let start = u64::MAX - 10_000;
        let (mut tx, mut rx) =
            RingOptions::new().capacity(4096).backend(backend).start_position(start).build().unwrap();
        let cap = tx.capacity();
        let mut model = VecDeque::new();
        let mut rng = Rng::new(7);
        let mut next = 0u8;
        let mut moved = 0u64;
        while moved < 50 * cap as u64 {
            if rng.up_to(1) == 0 {
                let want = rng.up_to(cap);
                match tx.write_grant(want) {
                    Ok(mut g) => {
                        assert!(g.len() >= want.max(1) && g.len() <= cap - model.len());
                        let n = rng.up_to(g.len());
                        for b in &mut g[..n] {
                            *b = next;
                            model.push_back(next);
                            next = next.wrapping_add(1);
                        }
                        g.commit(n).unwrap();
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::WouldBlock);
                        assert!(cap - model.len() < want.max(1), "free {} want {want}", cap - model.len());
                    }
                }
            } else {
                let want = rng.up_to(cap);
                match rx.read_grant(want) {
                    Ok(g) => {
                        assert!(g.len() >= want.max(1) && g.len() <= model.len());
                        let n = rng.up_to(g.len());
                        for (i, b) in g[..n].iter().enumerate() {
                            assert_eq!(*b, model[i]);
                        }
                        g.release(n).unwrap();
                        model.drain(..n);
                        moved += n as u64;
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::WouldBlock);
                        assert!(model.len() < want.max(1));
                    }
                }
            }
        }
        assert!(rx.cur.tail() < start, "{backend}: the cursor did not wrap past u64::MAX");
    }
}

#[test]
fn a_head_beyond_capacity_poisons_the_consumer_for_good() {
    let (mut tx, mut rx) = channel(4096).unwrap();
    let cap = tx.capacity();
    tx.try_write(b"abc").unwrap();
    let hdr = header_of(&tx);
    // A "peer" publishes a head more than a capacity ahead of the tail.
    hdr.head.store(3 + cap as u64 + 1, Ordering::Release);
    let mut buf = [0; 8];
    assert_eq!(rx.try_read(&mut buf).unwrap_err().kind(), ErrorKind::InvalidData);
    assert_eq!(rx.read(&mut buf).unwrap_err().kind(), ErrorKind::InvalidData);
    // Even a sane value afterwards does not un-poison it.
    hdr.head.store(3, Ordering::Release);
    assert_eq!(rx.try_read(&mut buf).unwrap_err().kind(), ErrorKind::InvalidData);
    assert!(hdr.is_poisoned());
    // The producer sees the shared flag once it has to look at the consumer's cursor.
    tx.try_write(&vec![0; cap - 3]).unwrap();
    assert_eq!(tx.try_write(b"x").unwrap_err().kind(), ErrorKind::InvalidData);
    assert_eq!(tx.write_timeout(b"x", Duration::from_millis(1)).unwrap_err().kind(), ErrorKind::InvalidData);
}

/// The head is checked against the tail the consumer *published*, not its own: bytes it has
/// consumed without releasing them yet (batched, as the framed ends do) are still its, so an
/// honest head stays within a capacity of the published tail. A forged head up to a capacity
/// beyond the private tail would show those consumed bytes again as new ones.
#[test]
fn a_head_beyond_the_published_tail_plus_capacity_poisons_the_consumer() {
    let (mut tx, mut rx) = channel(4096).unwrap();
    let cap = tx.capacity() as u64;
    tx.try_write(&[7; 100]).unwrap();
    let hdr = header_of(&tx);
    assert_eq!(rx.cur.refresh(hdr).ok(), Some(100));
    rx.cur.advance(100); // consumed, not released: the published tail stays 0
    assert_eq!(rx.cur.unpublished(), 100);
    // Within a capacity of the published tail: fine (nothing new, nothing lost).
    hdr.head.store(cap, Ordering::Release);
    assert_eq!(rx.cur.refresh(hdr).ok(), Some(cap as usize - 100));
    // Beyond it, though within a capacity of the private tail: no producer can be there.
    hdr.head.store(cap + 100, Ordering::Release);
    assert!(rx.cur.refresh(hdr).is_err());
    assert!(hdr.is_poisoned());
}

#[test]
fn a_head_moving_backwards_poisons_the_consumer() {
    let (mut tx, mut rx) = channel(4096).unwrap();
    tx.try_write(&[1; 100]).unwrap();
    let mut buf = [0; 10];
    assert_eq!(rx.try_read(&mut buf).unwrap(), 10);
    // head goes back to 50: still >= tail (10) but behind what was already seen (100).
    header_of(&tx).head.store(50, Ordering::Release);
    // Cached bytes are still served (they were validated); the refresh then fails.
    let mut big = [0; 200];
    assert_eq!(rx.try_read(&mut big).unwrap(), 90);
    assert_eq!(rx.try_read(&mut big).unwrap_err().kind(), ErrorKind::InvalidData);
}

#[test]
fn a_tail_beyond_head_or_backwards_poisons_the_producer() {
    for bad_tail in [111u64, u64::MAX] {
        let (mut tx, rx) = channel(4096).unwrap();
        let cap = tx.capacity();
        tx.try_write(&[1; 100]).unwrap();
        header_of(&tx).tail.store(bad_tail, Ordering::Release);
        // (111 is one past the head after the next write; u64::MAX is behind the old tail.)
        // The cached tail says `cap - 100` bytes are free, so this fits without a refresh...
        tx.try_write(&[1; 10]).unwrap();
        // ...but needing more (`cap - 96` of the `cap - 110` left) forces a refresh, which
        // must refuse the value.
        assert_eq!(tx.try_write(&vec![1; cap - 96]).unwrap_err().kind(), ErrorKind::InvalidData, "tail {bad_tail}");
        assert_eq!(tx.try_write(&[1]).unwrap_err().kind(), ErrorKind::InvalidData);
        drop(rx);
    }
}

/// Waits (boundedly) until the end whose counters `waits` reads has gone to sleep: raised its
/// flag, paid its barrier, rechecked, and counted the sleep it then enters. Its flag alone is
/// not enough: it is raised before the recheck, so a change made as soon as it shows can be
/// seen there, with no sleep and no wake-up.
fn wait_until_asleep(waits: &crate::StatsHandle) {
    let t0 = Instant::now();
    while waits.get().sleeps == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "never went to sleep: {:?}", waits.get());
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A consumer that finds the ring corrupt wakes a producer asleep on a full ring, which
/// then fails with `InvalidData`. Every sleep is bounded, so the proof that it was woken
/// (not rescued by its bound) is in its counters.
#[test]
fn poisoning_wakes_a_producer_asleep_on_a_full_ring() {
    let (mut tx, mut rx) = RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).build().unwrap();
    tx.try_write(&vec![0; tx.capacity()]).unwrap();
    let hdr: *const Header = header_of(&tx);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waits = tx.stats_handle();
    // An unbounded blocking write: only a wake-up (or the sleep bound) can end it.
    std::thread::spawn(move || {
        let r = std::io::Write::write(&mut tx, b"x").map_err(|e| e.kind());
        done_tx.send((r, tx.stats()))
    });
    // Let it fall asleep: past the recheck that follows its barrier, which would otherwise
    // find the poisoning without being woken.
    wait_until_asleep(&waits);
    // SAFETY: the header lives as long as the consumer, which is alive here.
    unsafe { &*hdr }.head.store(u64::MAX / 2, Ordering::Release);
    let mut one = [0; 1];
    assert_eq!(rx.try_read(&mut one).unwrap_err().kind(), ErrorKind::InvalidData); // finds the impossible head
                                                                                   // Generous: this bounds a hang, not a speed.
    let (result, stats) = done_rx.recv_timeout(Duration::from_secs(60)).expect("the sleeping producer never returned");
    assert_eq!(result, Err(ErrorKind::InvalidData));
    assert_eq!(stats.parks, 1, "{stats:?}");
    assert_eq!(stats.woken, 1, "the poisoning did not wake the sleeping producer: {stats:?}");
}

/// How each end parks is recorded in its slot (header version 2): privately expedited
/// barriers for a thread ring, global ones between processes, or fences where the kernel
/// offers no membarrier.
#[test]
fn each_role_records_how_it_parks() {
    use crate::sync::Park;
    let membarrier = crate::sys::membarrier(crate::sys::MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED).is_ok();
    let (tx, _rx) = channel(4096).unwrap();
    let want = if membarrier { Park::Private } else { Park::Fence };
    assert_eq!(header_of(&tx).park_mode(Role::Producer), want);
    assert_eq!(header_of(&tx).park_mode(Role::Consumer), want);
    let ring = RingOptions::new().capacity(4096).shared().unwrap();
    let tx = ring.clone().into_producer().unwrap();
    let want = if membarrier { Park::Global } else { Park::Fence };
    assert_eq!(header_of(&tx).park_mode(Role::Producer), want);
    assert_eq!(header_of(&tx).park_mode(Role::Consumer), Park::Fence, "not claimed yet: the zeroed code");
}

/// A publish that wakes nobody (a bug, or a hostile peer) delays a sleeper between threads
/// by at most the safety interval: every sleep is bounded. The counters call it what it is.
#[test]
fn a_lost_wakeup_between_threads_delays_but_never_hangs() {
    let (tx, mut rx) = RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).build().unwrap();
    let hdr: *const Header = header_of(&tx);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waits = rx.stats_handle();
    std::thread::spawn(move || {
        let mut b = [0u8; 4];
        let r = rx.read(&mut b).map_err(|e| e.kind());
        let _ = done_tx.send((r, b, rx.stats()));
    });
    // Past the recheck that follows the reader's barrier, which would otherwise find the
    // bytes without any wake-up having been missed.
    wait_until_asleep(&waits);
    // Publish "ping" the way a producer does, but without looking for a sleeper.
    // SAFETY: the producer's free space at offset 0, 4 bytes.
    unsafe { tx.write_ptr().copy_from_nonoverlapping(b"ping".as_ptr(), 4) };
    // SAFETY: as above.
    unsafe { &*hdr }.head.store(4, Ordering::Release);
    let published = Instant::now();
    let (r, b, stats) = done_rx.recv_timeout(Duration::from_secs(60)).expect("the sleeping reader hangs");
    let delay = published.elapsed();
    assert_eq!((r, &b), (Ok(4), b"ping"));
    // 10x the design bound: a liveness bound, not a speed.
    assert!(delay < 10 * crate::wait::SAFETY_INTERVAL, "woke after {delay:?}");
    assert_eq!(stats.lost_wakeups, 1, "{stats:?}");
    drop(tx);
}

/// The aliasing hazard of two views of one page: bytes written through view B and read through view A
/// (and the reverse) in one thread, with optimisations on. Run in release mode by CI.
#[test]
fn single_thread_writes_across_the_seam_read_back_exactly() {
    for backend in Backend::CONCRETE.into_iter().filter(|b| b.is_available()) {
        let (mut tx, mut rx) = RingOptions::new().capacity(4096).backend(backend).build().unwrap();
        let cap = tx.capacity();
        let mut rng = Rng::new(42);
        let mut out = vec![0u8; cap];
        for round in 0..20_000u32 {
            // Park the cursors a few bytes before the seam, then write across it.
            let target = cap - 1 - rng.up_to(63);
            let skip = (target + cap - tx.cur.offset()) % cap;
            if skip > 0 {
                tx.write_grant(skip).unwrap().commit(skip).unwrap();
                let g = rx.read_grant(skip).unwrap();
                g.release(skip).unwrap();
            }
            let n = 2 + rng.up_to(120);
            let mut g = tx.write_grant(n).unwrap();
            for (i, b) in g[..n].iter_mut().enumerate() {
                *b = (round as u8).wrapping_mul(31).wrapping_add(i as u8);
            }
            g.commit(n).unwrap();
            let got = rx.try_read(&mut out[..n]).unwrap();
            assert_eq!(got, n);
            for (i, b) in out[..n].iter().enumerate() {
                assert_eq!(*b, (round as u8).wrapping_mul(31).wrapping_add(i as u8), "{backend} round {round}");
            }
        }
    }
}

/// A tail ahead of the head is valid where an end attaches: a consumer took (and released)
/// frames stamped before their head was stored (`ring/framed/link.rs`), and the producer
/// stopped between its two stores. An end that attaches then goes on from the tail: a consumer
/// sees nothing readable (not the "readable" bytes a head behind it would count), and a
/// producer starts at the tail, with the whole ring free.
#[test]
fn ends_attaching_with_the_tail_ahead_of_the_head_go_on_from_the_tail() {
    // A consumer attaching.
    let ring = RingOptions::new().capacity(4096).shared().unwrap();
    let tx = ring.clone().into_producer().unwrap();
    header_of(&tx).tail.store(64, Ordering::Release);
    let mut rx = ring.into_consumer().unwrap();
    assert_eq!(rx.try_read(&mut [0; 100]).unwrap_err().kind(), ErrorKind::WouldBlock);
    assert_eq!(rx.len(), 0);
    drop((tx, rx));

    // A producer attaching.
    let ring = RingOptions::new().capacity(4096).shared().unwrap();
    let rx = ring.clone().into_consumer().unwrap();
    rx.end.header().unwrap().tail.store(64, Ordering::Release);
    let tx = ring.into_producer().unwrap();
    assert_eq!(header_of(&tx).head.load(Ordering::Acquire), 64, "head brought level with the tail");
    assert_eq!(tx.free(), tx.capacity());
    assert_eq!(tx.len(), 0);
}

/// A full ring is all readable: the head exactly one ring ahead of the tail shows `N` bytes,
/// to a query and to a non-blocking read alike (not nothing, which would leave a consumer
/// waiting for a producer that waits for it).
#[test]
fn a_full_ring_is_all_readable() {
    let (mut tx, mut rx) = channel(4096).unwrap();
    let cap = tx.capacity();
    tx.try_write(&vec![5; cap]).unwrap();
    assert_eq!(rx.len(), cap);
    let mut buf = vec![0; cap];
    assert_eq!(rx.try_read(&mut buf).unwrap(), cap);
    assert!(buf.iter().all(|&b| b == 5));
    assert_eq!(tx.free(), cap);
}

/// A producer that found the ring poisoned and then closed did not end the stream cleanly: the
/// consumer, which found nothing wrong itself, reads `InvalidData` after the rest, not the end
/// of the stream.
#[test]
fn a_producer_closing_after_it_found_the_ring_poisoned_is_no_clean_end() {
    let (mut tx, mut rx) = channel(4096).unwrap();
    let cap = tx.capacity();
    tx.try_write(&[1; 100]).unwrap();
    let mut buf = [0; 100];
    assert_eq!(rx.try_read(&mut buf).unwrap(), 100);
    // A tail behind the one the producer knows: its next look at the tail (for more than the
    // `cap - 100` bytes its cached tail leaves) poisons the ring.
    header_of(&tx).tail.store(u64::MAX, Ordering::Release);
    assert_eq!(tx.try_write(&vec![1; cap - 96]).unwrap_err().kind(), ErrorKind::InvalidData);
    drop(tx);
    assert_eq!(rx.read(&mut buf).unwrap_err().kind(), ErrorKind::InvalidData);
}

/// An end whose spin was cut (here to half, a window wide enough that the test cannot miss
/// it) gets its whole budget back from one wait that its spin served.
#[test]
fn a_served_spin_restores_the_whole_budget() {
    let full = Duration::from_millis(50);
    let (_tx, rx) = RingOptions::new().capacity(4096).spin_budget(full).build().unwrap();
    let end = &rx.end;
    let mut decayed = wait::Spin::new(full);
    for _ in 0..wait::MISSES_TO_HALVE {
        decayed.missed();
    }
    assert_eq!(decayed.budget(), full / 2);
    end.spinning.set(decayed);
    let hdr = end.header().unwrap();
    let counters = crate::stats::Counters::default();
    // Found at the second look: the first is before the spin, the second inside it.
    let mut looks = 0;
    let r: Result<(), Stop> = end.wait(hdr, &counters, None, |_| {
        looks += 1;
        (looks >= 2).then_some(Ok(()))
    });
    assert_eq!(r, Ok(()));
    assert_eq!(counters.snapshot().parks, 0, "served while spinning, not after a park");
    assert_eq!(end.spinning.get().budget(), full);
}

// Once a defect: a failed `pthread_atfork` was cached, and every end claimed in the process
// afterwards went on without the handler, so that a forked child's copies of its ends took
// themselves for the parent's and wrote to the ring.
/// `pthread_atfork` failing (ENOMEM, by the test hook, in a child whose record of the handler
/// is cleared as in a process that never installed it): a thread ring's creation and a role's
/// claim fail with `OutOfMemory`, the errno as `source()`, and claim nothing; once it works,
/// both succeed.
#[test]
fn a_fork_handler_that_cannot_be_installed_fails_the_claim_until_it_can() {
    use crate::sync::{forget_fork_handler, ATFORK_FAILS};
    let status = crate::test_util::in_child(|| {
        let errno = |e: &io::Error| {
            std::error::Error::source(e).and_then(|s| s.downcast_ref::<io::Error>()).and_then(|s| s.raw_os_error())
        };
        let refused = |r: io::Result<()>| match r {
            Err(e) if e.kind() == ErrorKind::OutOfMemory && errno(&e) == Some(libc::ENOMEM) => true,
            other => {
                eprintln!("expected OutOfMemory from pthread_atfork, got {other:?}");
                false
            }
        };
        let shared = RingOptions::new().capacity(4096).shared().unwrap();
        forget_fork_handler();
        ATFORK_FAILS.store(true, Ordering::Relaxed);
        if !refused(RingOptions::new().capacity(4096).build().map(drop)) {
            return 1;
        }
        if !refused(shared.clone().into_producer().map(drop)) {
            return 2;
        }
        if !refused(RingOptions::new().capacity(4096).dont_fork(true).shared().map(drop)) {
            return 3;
        }
        ATFORK_FAILS.store(false, Ordering::Relaxed);
        // Nothing was claimed by the refused claim; and the handler is tried again.
        let claimed = shared.clone().into_producer().and_then(|tx| Ok((tx, shared.into_consumer()?)));
        let built = RingOptions::new().capacity(4096).build();
        if claimed.is_err() || built.is_err() {
            eprintln!("after the refusal: {:?} / {:?}", claimed.err(), built.err());
            return 4;
        }
        0
    });
    assert_eq!(status, 0, "1-3: the refusal (build, claim, dont_fork); 4: no claim once the handler works");
}

/// A membarrier registration that fails with ENOMEM (the kernel could not allocate a CPU mask;
/// by the test hook, in a child whose registrations are cleared) leaves that claim parking
/// with fences, and is tried again by the next claim; a refusal (EPERM) is remembered.
#[test]
fn a_membarrier_registration_short_of_memory_is_tried_again() {
    use crate::sync::{forget_registrations, Park, MEMBARRIER_FAILS};
    if crate::sys::membarrier(crate::sys::MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED).is_err() {
        eprintln!("skipped: no private expedited membarrier here");
        return;
    }
    let status = crate::test_util::in_child(|| {
        let park = || {
            let (tx, _rx) = channel(4096).unwrap();
            header_of(&tx).park_mode(Role::Producer)
        };
        forget_registrations();
        MEMBARRIER_FAILS.store(libc::ENOMEM, Ordering::Relaxed);
        if park() != Park::Fence {
            return 1;
        }
        MEMBARRIER_FAILS.store(0, Ordering::Relaxed);
        if park() != Park::Private {
            return 2; // the ENOMEM was remembered
        }
        forget_registrations();
        MEMBARRIER_FAILS.store(libc::EPERM, Ordering::Relaxed);
        let refused = park();
        MEMBARRIER_FAILS.store(0, Ordering::Relaxed);
        if refused != Park::Fence || park() != Park::Fence {
            return 3; // a refusal must be remembered (and tried once only)
        }
        0
    });
    assert_eq!(status, 0, "1: ENOMEM did not fall back to fences; 2: ENOMEM remembered; 3: EPERM forgotten");
}
