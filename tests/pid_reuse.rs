//! A dead holder's pid reused, as seen by the process that got it, and a start-time check that
//! runs out of descriptors (docs::lifecycle: "a start time other than the recorded one: the
//! pid was reused by a later process" is proof of death; "no descriptor left" is unknown,
//! retried, never latched). From an adversarial review of peer-death detection, which found
//! both defects: a slot naming this very pid was taken for this process whatever its start
//! time, and a start-time check skipped for want of a descriptor was never made again.
//!
//! Two tests reuse a pid for real (`/proc/sys/kernel/ns_last_pid`, root only; they say so and
//! pass when they cannot); the others leave the slot as that reuse leaves it, by a forgery.
//! Every child leaves through `_exit`, every wait on a child is bounded.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::header_offsets::OFF_PRODUCER;
use common::{spawn_child, Child, HeaderView, SharedPage};
use mirror_ring::{Backend, RingOptions, SharedRing};

const LONG: Duration = Duration::from_secs(20);
/// The design's bound on seeing a death (100 ms), times ten.
const DEATH: Duration = Duration::from_secs(1);
/// A role slot: the claim word (state, epoch, pid), then the holder's start time.
const SLOT_START: usize = 8;

fn memfd_ring() -> (SharedRing, HeaderView) {
    let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    let view = HeaderView::map(ring.as_fd().unwrap());
    (ring, view)
}

/// The producer slot's claim word with its pid replaced by `pid`.
fn name_in_producer_slot(view: &HeaderView, pid: i32) {
    let claim = view.u64_at(OFF_PRODUCER);
    claim.store((claim.load(Ordering::SeqCst) & 0xffff_ffff) | (u64::from(pid as u32) << 32), Ordering::SeqCst);
}

/// This process's start time, from `/proc/self/stat`.
fn own_start_time() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    stat[stat.rfind(')').unwrap() + 1..].split_ascii_whitespace().nth(19).unwrap().parse().unwrap()
}

/// A producer process that claims its role, commits `abc` and dies without closing, reaped
/// before this returns; its pid. It starts two clock ticks after this call: start times count
/// ticks (`USER_HZ`, 100 a second), and the forgeries below name this process with the
/// producer's start time, which must not be this process's own (a test binary may have started
/// a few milliseconds ago).
fn dead_producer(ring: &SharedRing) -> i32 {
    std::thread::sleep(Duration::from_millis(20));
    let mut child = spawn_child(|| {
        let mut tx = ring.clone().into_producer().unwrap();
        tx.write_all(b"abc").unwrap();
        std::mem::forget(tx);
        0
    });
    assert_eq!(child.wait_within(LONG), 0);
    child.pid()
}

/// Forks a child running `f` with pid `target` (freed: its process died and was reaped), by
/// setting `/proc/sys/kernel/ns_last_pid`, retrying while other forks on the machine take the
/// pid first. `None` where that file cannot be written (not root).
///
/// It waits two clock ticks first: start times count clock ticks (`USER_HZ`, 100 a second), and
/// a pid reused within the tick its dead process started in is not told apart (docs::lifecycle).
fn fork_at_pid(target: i32, f: &dyn Fn() -> i32) -> Option<Child> {
    const ANOTHER_PID: i32 = 77;
    std::thread::sleep(Duration::from_millis(20));
    for _ in 0..500 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", target - 1)).ok()?;
        let mut child = spawn_child(|| if std::process::id() as i32 == target { f() } else { ANOTHER_PID });
        if child.pid() == target {
            return Some(child);
        }
        assert_eq!(child.wait_within(LONG), ANOTHER_PID);
    }
    None
}

/// The slot names this process's pid with the dead holder's start time: a take-over by this
/// process proves the holder dead and succeeds (it answered `AlreadyExists`, "alive", before).
#[test]
fn a_slot_naming_this_pid_with_another_start_time_is_taken_over() {
    let (ring, view) = memfd_ring();
    let mut rx = ring.clone().into_consumer().unwrap();
    dead_producer(&ring);
    name_in_producer_slot(&view, std::process::id() as i32);
    assert_ne!(view.u64_at(OFF_PRODUCER + SLOT_START).load(Ordering::SeqCst), own_start_time());
    let mut tx = ring.take_over_producer().expect("the recorded start time is not ours: the holder is dead");
    tx.write_all(b"def").unwrap();
    drop(tx);
    let mut got = Vec::new();
    rx.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"abcdef");
}

/// The survivor's side: this process holds the consumer, and the producer's slot names this
/// pid with the dead holder's start time. A blocked read ends with `UnexpectedEof` within the
/// bound (before, the watcher took the slot for this process and stopped watching: the read
/// ran into its timeout, and `is_abandoned` stayed false).
#[test]
fn a_dead_producer_whose_slot_names_the_consumers_pid_is_reported() {
    let (ring, view) = memfd_ring();
    dead_producer(&ring);
    let mut rx = ring.clone().into_consumer().unwrap();
    name_in_producer_slot(&view, std::process::id() as i32);
    let mut buf = [0; 3];
    rx.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"abc");
    let start = Instant::now();
    let r = rx.read_timeout(&mut buf, 2 * DEATH).map_err(|e| e.kind());
    assert_eq!(r, Err(ErrorKind::UnexpectedEof), "after {:?}", start.elapsed());
    assert!(start.elapsed() < DEATH, "the death took {:?}", start.elapsed());
    assert!(rx.is_abandoned());
}

/// Both cases with a pid reused for real: the producer dies, and a process that gets its pid
/// takes the producer role over, or claims the consumer and sees the death.
#[test]
fn a_process_that_got_a_dead_holders_pid_takes_over_and_sees_the_death() {
    let (ring, _view) = memfd_ring();
    let mut rx = ring.clone().into_consumer().unwrap();
    let dead = dead_producer(&ring);
    let taker = || match ring.take_over_producer() {
        Ok(mut tx) => i32::from(tx.write_all(b"def").is_err()),
        Err(e) => {
            eprintln!("the taker with the dead holder's pid: {e}");
            2
        }
    };
    let Some(mut child) = fork_at_pid(dead, &taker) else {
        eprintln!("not run: no pid can be chosen here (/proc/sys/kernel/ns_last_pid)");
        return;
    };
    assert_eq!(child.wait_within(LONG), 0, "1: the write failed, 2: the take-over was refused");
    // (The taker closed the role when it dropped its end.)
    let mut got = Vec::new();
    rx.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"abcdef");

    let (ring, _view) = memfd_ring();
    let dead = dead_producer(&ring);
    let survivor = || {
        let mut rx = ring.clone().into_consumer().unwrap();
        let mut buf = [0; 3];
        if rx.read_exact(&mut buf).is_err() || &buf != b"abc" {
            return 2;
        }
        let start = Instant::now();
        let r = rx.read_timeout(&mut buf, 2 * DEATH).map_err(|e| e.kind());
        if r == Err(ErrorKind::UnexpectedEof) && start.elapsed() < DEATH {
            0
        } else {
            eprintln!("the consumer with the dead producer's pid: {r:?} after {:?}", start.elapsed());
            1
        }
    };
    let Some(mut child) = fork_at_pid(dead, &survivor) else { return };
    assert_eq!(child.wait_within(LONG), 0, "1: the death was not reported in time, 2: the bytes were not there");
}

/// The holder's slot records a start time its process does not have (what a reused pid looks
/// like; forged here on a living holder, which the watcher cannot tell apart): proof of death.
/// The watcher's first check runs with one descriptor left, which its pidfd takes, so the
/// start time cannot be read (EMFILE): unknown. With descriptors back the next checks compare
/// the start time and see the death (before, the pidfd was kept without the comparison and
/// the holding was alive for good). With descriptors to spare from the start, the first check
/// sees it.
#[test]
fn a_start_time_check_short_of_a_descriptor_is_made_again() {
    for short in [true, false] {
        let (ring, view) = memfd_ring();
        let _tx = ring.clone().into_producer().unwrap();
        let start = view.u64_at(OFF_PRODUCER + SLOT_START);
        start.store(start.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
        let page = SharedPage::new();
        let mut child = spawn_child(|| {
            let rx = ring.clone().into_consumer().unwrap();
            let first = if short {
                let old = common::set_soft_limit(libc::RLIMIT_NOFILE, lowest_free_descriptor() + 1).unwrap();
                let first = rx.is_abandoned();
                common::set_soft_limit(libc::RLIMIT_NOFILE, old as usize).unwrap();
                first
            } else {
                rx.is_abandoned()
            };
            let begin = Instant::now();
            let mut seen = first;
            while !seen && begin.elapsed() < DEATH {
                // Past the watcher's 1 ms rate limit.
                std::thread::sleep(Duration::from_millis(5));
                seen = rx.is_abandoned();
            }
            page.word(0).store(1 + u64::from(first), Ordering::SeqCst);
            i32::from(!seen)
        });
        assert_eq!(child.wait_within(LONG), 0, "short of a descriptor {short}: the death was never seen");
        if !short {
            assert_eq!(page.word(0).load(Ordering::SeqCst), 2, "with descriptors to spare, at the first check");
        }
    }
}

/// The lowest descriptor number free now.
fn lowest_free_descriptor() -> usize {
    // SAFETY: F_DUPFD gives the lowest free descriptor number; it is closed at once.
    let fd = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 0) };
    assert!(fd >= 0);
    // SAFETY: our own fresh descriptor.
    unsafe { libc::close(fd) };
    fd as usize
}
