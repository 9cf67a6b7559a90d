//! Claims of the documentation, checked against the code (kept from the documentation review
//! of stop 44): the descriptors and threads the accounting docs promise, a take-over at
//! impossible cursors, and what a close counts. Every test that forks does its work in a child
//! of its own (`common::in_child`), which `_exit`s, so that descriptor and thread counts are
//! not disturbed by the other tests of this binary running beside it.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use common::{in_child, spawn_child};
use mirror_ring::{Backend, RingOptions};

/// What the descriptors of this process point at (`readlink /proc/self/fd/*`), as a multiset.
fn fd_links() -> HashMap<String, usize> {
    let mut links = HashMap::new();
    for e in std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd").flatten() {
        if let Ok(target) = std::fs::read_link(e.path()) {
            *links.entry(target.to_string_lossy().into_owned()).or_insert(0) += 1;
        }
    }
    links
}

/// The links in `after` that `before` did not have (with their counts).
fn new_links(before: &HashMap<String, usize>, after: &HashMap<String, usize>) -> Vec<String> {
    let mut new = Vec::new();
    for (link, &n) in after {
        let had = before.get(link).copied().unwrap_or(0);
        for _ in had..n {
            new.push(link.clone());
        }
    }
    new.sort();
    new
}

/// How many threads this process has.
#[cfg(feature = "tokio")]
fn tasks() -> usize {
    std::fs::read_dir("/proc/self/task").expect("read /proc/self/task").count()
}

/// An fd-less backend that works here, if any.
fn fd_less_backend() -> Option<Backend> {
    [Backend::MirrorFlag, Backend::Duplicate].into_iter().find(|b| b.is_available())
}

/// `docs::accounting`, "Descriptors", and the crate docs: an fd-less ring needs no descriptor
/// for its memory, and an end claimed between processes opens one pidfd on its peer when it
/// first watches it (a blocked call), and keeps it for the peer's holding: one descriptor per
/// end, gone with the end. (The review found the crate docs and README saying "no file
/// descriptor" for rings between processes, without the pidfd.)
#[test]
fn an_fd_less_ring_between_processes_holds_one_pidfd_per_watching_end_and_none_for_its_memory() {
    let Some(backend) = fd_less_backend() else {
        eprintln!("no fd-less backend here: nothing to check");
        return;
    };
    let status = in_child(move || {
        let before = fd_links();
        let ring = RingOptions::new().capacity(4096).backend(backend).shared().unwrap();
        assert!(ring.as_fd().is_none());
        let made = new_links(&before, &fd_links());
        if !made.is_empty() {
            eprintln!("making a {backend:?} ring opened {made:?}");
            return 3;
        }
        let theirs = ring.clone();
        let producer = spawn_child(move || {
            let Ok(mut tx) = theirs.into_producer() else { return 3 };
            if tx.write_all(b"x").is_err() {
                return 4;
            }
            // Alive, holding its end, until the guard below kills it.
            std::thread::sleep(Duration::from_secs(60));
            0
        });
        let before = fd_links();
        let mut rx = ring.into_consumer().unwrap();
        let mut one = [0u8; 1];
        rx.read_exact(&mut one).unwrap(); // the producer has claimed its role
                                          // A blocked call on a ring between processes: it watches its peer.
        let r = rx.read_timeout(&mut one, Duration::from_millis(60));
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        let watching = new_links(&before, &fd_links());
        drop(rx);
        let dropped = new_links(&before, &fd_links());
        drop(producer);
        if watching == ["anon_inode:[pidfd]"] && dropped.is_empty() {
            0
        } else {
            eprintln!(
                "{backend:?} ring between processes: the watching end added {watching:?}; after its drop, \
                 {dropped:?} were left"
            );
            4
        }
    });
    assert_eq!(status, 0, "3: the memory took a descriptor; 4: not one pidfd per watching end (see stderr)");
}

/// `docs::accounting`, "Threads", and `docs::async_ends`: the first async end of a thread ring
/// that parks starts one helper thread, which keeps the safety deadlines of all such ends (the
/// publisher wakes them itself): a second thread ring's end parks without another thread.
/// (The review found the accounting docs and README naming helper threads for rings between
/// processes only.)
#[cfg(feature = "tokio")]
#[test]
fn the_first_parked_async_end_of_a_thread_ring_starts_one_helper_and_the_next_none() {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    use tokio::io::AsyncReadExt;

    struct Nothing;
    impl Wake for Nothing {
        fn wake(self: Arc<Self>) {}
    }
    let status = in_child(|| {
        let waker = Waker::from(Arc::new(Nothing));
        let mut cx = Context::from_waker(&waker);
        let ring = || RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).build().unwrap();
        let (mut tx1, rx1) = ring();
        let (mut tx2, rx2) = ring();
        let (mut rx1, mut rx2) = (rx1.into_async().unwrap(), rx2.into_async().unwrap());
        let (mut b1, mut b2) = ([0u8; 4], [0u8; 4]);
        let before = tasks();
        let mut read1 = pin!(rx1.read(&mut b1));
        // A zero spin budget: the first poll parks at once (docs::async_ends, "The rule").
        if read1.as_mut().poll(&mut cx).is_ready() {
            return 2;
        }
        // (A thread names itself once it runs: count the tasks, not the names.)
        let first = tasks() - before;
        let mut read2 = pin!(rx2.read(&mut b2));
        if read2.as_mut().poll(&mut cx).is_ready() {
            return 2;
        }
        let second = tasks() - before - first;
        tx1.write_all(b"data").unwrap();
        tx2.write_all(b"data").unwrap();
        let done = |r: Poll<std::io::Result<usize>>| matches!(r, Poll::Ready(Ok(4)));
        if !done(read1.as_mut().poll(&mut cx)) || !done(read2.as_mut().poll(&mut cx)) {
            return 5;
        }
        // (A new thread names itself once it runs: give it up to a second. Its name is cut to
        // the 15 bytes of `comm`: "mirror-ring-par".)
        let named = std::time::Instant::now() + Duration::from_secs(1);
        while common::threads_named("mirror-ring-par").is_empty() && std::time::Instant::now() < named {
            std::thread::sleep(Duration::from_millis(1));
        }
        let helpers = common::threads_named("mirror-ring-par").len();
        if (first, second, helpers) == (1, 0, 1) {
            0
        } else {
            eprintln!("threads started by the first park: {first}, by the second: {second}; helpers: {helpers}");
            3
        }
    });
    assert_eq!(status, 0, "3: not one helper for both thread rings' parked ends (see stderr)");
}

/// Reads the `u64` at `off` in the ring file's header (a `Backend::Memfd` ring).
fn peek(ring: &mirror_ring::SharedRing, off: usize) -> u64 {
    use std::os::fd::AsRawFd;
    let fd = ring.as_fd().unwrap().as_raw_fd();
    let mut b = [0u8; 8];
    // SAFETY: 8 bytes read into our own buffer from inside the ring file's header page.
    assert_eq!(unsafe { libc::pread(fd, b.as_mut_ptr().cast(), 8, off as libc::off_t) }, 8);
    u64::from_le_bytes(b)
}

/// Writes the `u64` at `off` in the ring file's header, as a hostile holder of the file can.
fn poke(ring: &mirror_ring::SharedRing, off: usize, val: u64) {
    use std::os::fd::AsRawFd;
    let fd = ring.as_fd().unwrap().as_raw_fd();
    let b = val.to_le_bytes();
    // SAFETY: 8 bytes written from our own buffer into the ring file's header page.
    assert_eq!(unsafe { libc::pwrite(fd, b.as_ptr().cast(), 8, off as libc::off_t) }, 8);
}

/// src/docs/trust_model.rs:107-109: a take-over cannot "make the newcomer go out of bounds:
/// the cursors it resumes at are validated when it attaches (`InvalidData`, the role closed and
/// the ring poisoned, as for a claim)"; src/shared.rs:270-272 says the same in `take_over_*`'s
/// `# Errors`. (No other test takes a role over from a header with impossible cursors.) A
/// producer dies holding its role; a writer of the header then moves head three laps past the
/// tail; the take-over must refuse with `InvalidData`, leave the role closed, the ring poisoned,
/// and the consumer must then say `InvalidData`, not wait for the newcomer.
#[test]
fn a_take_over_at_impossible_cursors_is_invalid_data_and_poisons() {
    use common::header_offsets::{OFF_HEAD, OFF_POISONED, OFF_PRODUCER};
    let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    let cap = ring.capacity() as u64;
    let theirs = ring.clone();
    let mut producer = spawn_child(move || {
        let Ok(mut tx) = theirs.into_producer() else { return 3 };
        if tx.write_all(b"0123456789").is_err() {
            return 4;
        }
        // Dies holding its role: no close.
        std::mem::forget(tx);
        0
    });
    assert_eq!(producer.wait(), 0);
    let mut rx = ring.clone().into_consumer().unwrap();
    let mut got = [0u8; 10];
    rx.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"0123456789");
    // Head three laps past the tail: no newcomer may resume there.
    poke(&ring, OFF_HEAD, 3 * cap + 10);
    let err = ring.take_over_producer().map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    assert_eq!(peek(&ring, OFF_PRODUCER) & 0xff, 2, "the producer role is closed (state 2)");
    assert_ne!(peek(&ring, OFF_POISONED), 0, "the ring is poisoned");
    let mut buf = [0u8; 8];
    let r = rx.read_timeout(&mut buf, Duration::from_secs(2));
    assert_eq!(r.map_err(|e| e.kind()), Err(std::io::ErrorKind::InvalidData));
}

/// src/stats.rs:111-112 (`Stats::woken`): "Parks ended by a wake-up from the peer (or by a close
/// or a poisoning, which wake too, and which the peer's `wakes_sent` does not count)", and
/// src/stats.rs:134-136 (`Stats::wakes_sent`): "The wake-up of a close or a poisoning is not
/// counted". (No other test looks at `wakes_sent` for a close.) A reader parked on an empty
/// ring is woken by its producer's drop: one `woken`, no `wakes_sent`, no lost wake-up.
#[test]
fn a_close_wakes_a_parked_reader_and_counts_no_wake_up_sent() {
    let (tx, mut rx) = RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).build().unwrap();
    let sent = tx.stats_handle();
    let parked = rx.stats_handle();
    let reader = std::thread::spawn(move || {
        let mut b = [0u8; 8];
        let r = rx.read(&mut b).map_err(|e| e.kind());
        (r, rx.stats())
    });
    let until = std::time::Instant::now() + Duration::from_secs(10);
    // Asleep once `sleeps` counts: its flag is raised by then.
    while parked.get().sleeps == 0 {
        assert!(std::time::Instant::now() < until, "the reader never slept");
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(tx);
    let (r, rs) = reader.join().unwrap();
    assert_eq!(r, Ok(0), "end of stream after the close");
    assert_eq!(rs.woken, 1, "the close's wake-up ended the park: {rs:?}");
    assert_eq!(sent.get().wakes_sent, 0, "a close's wake-up is not counted as sent: {:?}", sent.get());
    assert_eq!(rs.lost_wakeups, 0, "{rs:?}");
}
