//! The fork contract (`docs::lifecycle`, "fork()"): a forked child's copy of an end the parent
//! holds is inert; every call that returns a `Result` fails with `Unsupported`, everything else
//! does nothing, and nothing it does touches the shared header or the data; a `dont_fork` ring
//! does not exist in the child. From an adversarial review, which found three defects (a fork
//! inside a `recv_batch` callback, grants held across a fork, an empty `send_batch`) and swept
//! every other call (the last test); and a fork inside `send_batch`'s `AsRef`, from a later review.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};

use common::{in_child, wait_pid};
use mirror_ring::{Backend, RingOptions};

const OK: i32 = 0;
const WRONG: i32 = 1;

fn unsupported<T>(r: std::io::Result<T>) -> bool {
    matches!(r, Err(e) if e.kind() == ErrorKind::Unsupported)
}

/// `recv_batch` hands each frame to the caller's closure in the middle of the call; a closure
/// that forks (same thread) carries the running call into the child, which went on with the
/// batch: the rest of the call trusted the one ownership check made before the fork
/// (`header_checked`, the raw `hdr` pointer kept by the batch loop), on the ground that "a
/// fork() by another thread cannot carry a call that is running into the child". Here the
/// forking thread is the caller's own. The child's copy then read the ring (delivered the
/// parent's next frame to the child a second time, with a `dont_fork` ring: SIGSEGV on memory
/// the child does not have) and reached `header_checked` in a forked copy (its debug assertion
/// fired).
///
/// Now, once the closure returns in the child, the batch ends without touching the ring (no
/// further frame, no crash, no panic).
#[test]
fn a_fork_inside_a_recv_batch_callback_does_not_carry_the_batch_into_the_child() {
    let mut failures = Vec::new();
    for dont_fork in [false, true] {
        let (tx, rx) = RingOptions::new().capacity(4096).dont_fork(dont_fork).build().unwrap();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        tx.send(b"first").unwrap();
        tx.send(b"second").unwrap();
        tx.send(b"third").unwrap();
        let mut child = 0;
        let mut in_the_child = false;
        let mut seen_in_child = 0;
        let mut seen_in_parent = 0;
        let r = catch_unwind(AssertUnwindSafe(|| {
            rx.try_recv_batch(|_frame| {
                if in_the_child {
                    seen_in_child += 1;
                    return;
                }
                seen_in_parent += 1;
                if child == 0 {
                    // SAFETY: the child leaves through _exit below, never into the harness.
                    let pid = unsafe { libc::fork() };
                    assert!(pid >= 0);
                    if pid == 0 {
                        in_the_child = true;
                    } else {
                        child = pid;
                    }
                }
            })
        }));
        if in_the_child {
            let code = match r {
                // A panic (a debug assertion) in the child, after `seen_in_child` more frames.
                Err(_) => 100 + seen_in_child.min(27),
                Ok(_) if seen_in_child > 0 => 10 + seen_in_child.min(50),
                Ok(_) => OK,
            };
            // SAFETY: leave the child at once, without the harness.
            unsafe { libc::_exit(code) };
        }
        assert_eq!(r.unwrap().unwrap(), 3, "the parent's batch");
        let status = wait_pid(child);
        if status != OK {
            failures.push(format!(
                "dont_fork {dont_fork}: child status {status} (10x: received x more frames after the \
                 fork, then panicked; 1x: received x more frames; 139: SIGSEGV)"
            ));
        }
        // The parent's ring still works.
        tx.send(b"after").unwrap();
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"after", "dont_fork {dont_fork}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A `WriteGrant` half-written by the parent and held across `fork()`: the child's copy lends
/// nothing (an empty slice), so nothing the child does through it reaches the parent's
/// uncommitted bytes, and its `commit` fails with `Unsupported`. Before, it lent the same
/// shared bytes, and the parent committed what its child wrote.
#[test]
fn a_write_grant_held_across_a_fork_lends_the_child_nothing() {
    let (mut tx, mut rx) = RingOptions::new().capacity(4096).build().unwrap();
    let mut grant = Some(tx.write_grant(5).unwrap());
    grant.as_mut().unwrap()[..5].copy_from_slice(b"hello");
    let status = in_child(|| {
        // (The child's `take` leaves the parent's grant where it is.)
        let mut grant = grant.take().unwrap();
        grant.iter_mut().for_each(|b| *b = b'!');
        // (Its length says the same as its slice, so `grant[..grant.len()]` cannot panic.)
        if grant.is_empty() && grant.len() == (*grant).len() && unsupported(grant.commit(5)) {
            OK
        } else {
            WRONG
        }
    });
    assert_eq!(status, OK, "the child's grant lent bytes, or its commit did not fail");
    let grant = grant.unwrap();
    assert_eq!(&grant[..5], b"hello");
    grant.commit(5).unwrap();
    let mut got = [0; 5];
    rx.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello", "the parent committed what its child wrote into its grant");
}

/// The same for a `FrameGrant` of a framed producer.
#[test]
fn a_frame_grant_held_across_a_fork_lends_the_child_nothing() {
    let (tx, rx) = RingOptions::new().capacity(4096).build().unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let mut grant = Some(tx.reserve(5).unwrap());
    grant.as_mut().unwrap()[..5].copy_from_slice(b"hello");
    let status = in_child(|| {
        let mut grant = grant.take().unwrap();
        grant.iter_mut().for_each(|b| *b = b'!');
        if grant.is_empty() && unsupported(grant.commit()) {
            OK
        } else {
            WRONG
        }
    });
    assert_eq!(status, OK, "the child's grant lent bytes, or its commit did not fail");
    grant.unwrap().commit().unwrap();
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"hello", "the parent sent what its child wrote");
}

/// `send_batch` of an empty slice fails with `Unsupported` in a forked child, as every call that
/// returns a `Result` does there (the byte producer's `write(&[])` too); it answered `Ok(0)`.
#[test]
fn an_empty_send_batch_in_a_forked_child_is_unsupported() {
    let (tx, _rx) = RingOptions::new().capacity(4096).build().unwrap();
    let mut raw = tx;
    // The byte end's answer for the same empty write, for comparison.
    let status = in_child(|| if unsupported(raw.try_write(&[])) { OK } else { WRONG });
    assert_eq!(status, OK, "a byte producer's empty write in a child");
    let mut tx = raw.into_framed();
    let empty: [&[u8]; 0] = [];
    let status = in_child(|| {
        let a = tx.try_send_batch(&empty);
        let b = tx.send_batch(&empty);
        let c = tx.send_batch_timeout(&empty, std::time::Duration::from_millis(1));
        if unsupported(a) && unsupported(b) && unsupported(c) {
            OK
        } else {
            WRONG
        }
    });
    assert_eq!(status, OK, "send_batch(&[]) in a forked child did not fail with Unsupported");
}

/// `send_batch` asks each message's `AsRef` in the middle of the call, after the one ownership
/// check of the run; an `AsRef` that forks (same thread) carried the run into the child, which
/// went on writing the rest of the run's frames into the parent's ring: over frames the parent
/// had published meanwhile (the consumer then read the child's bytes), or, with a `dont_fork`
/// ring, into memory the child does not have (SIGSEGV).
///
/// Here the child waits in its `AsRef` until the parent's batch is published, then answers
/// other bytes of the same length. Now the run stops in the child once that `AsRef` returns,
/// writing nothing; the consumer reads exactly what the parent sent.
#[test]
fn a_fork_inside_a_send_batch_as_ref_writes_nothing_from_the_child() {
    use std::cell::Cell;

    /// A message; the one with `forks` forks in its first `as_ref`. In the child every message
    /// answers `child`, once the parent has written a byte to `gate`.
    struct Msg<'a> {
        parent: [u8; 16],
        child: [u8; 16],
        forks: bool,
        /// 0 before the fork, the child's pid in the parent, -1 in the child.
        role: &'a Cell<i32>,
        gate: libc::c_int,
    }
    impl AsRef<[u8]> for Msg<'_> {
        fn as_ref(&self) -> &[u8] {
            if self.forks && self.role.get() == 0 {
                // SAFETY: the child leaves through _exit below, never into the harness.
                let pid = unsafe { libc::fork() };
                assert!(pid >= 0);
                if pid == 0 {
                    self.role.set(-1);
                    let mut byte = 0u8;
                    // SAFETY: one byte into a local; blocks until the parent writes (or exits).
                    unsafe { libc::read(self.gate, (&mut byte as *mut u8).cast(), 1) };
                } else {
                    self.role.set(pid);
                }
            }
            if self.role.get() == -1 {
                &self.child
            } else {
                &self.parent
            }
        }
    }

    let mut failures = Vec::new();
    for dont_fork in [false, true] {
        let (tx, rx) = RingOptions::new().capacity(4096).dont_fork(dont_fork).build().unwrap();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        let mut gate = [0; 2];
        // SAFETY: pipe writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe(gate.as_mut_ptr()) }, 0);
        let role = Cell::new(0);
        let msgs: Vec<Msg> = (0..4u8)
            .map(|i| Msg { parent: [b'P' + i; 16], child: [b'c' + i; 16], forks: i == 1, role: &role, gate: gate[0] })
            .collect();
        let r = catch_unwind(AssertUnwindSafe(|| tx.try_send_batch(&msgs)));
        if role.get() == -1 {
            // The child's copy of the call ran on after the gate; whatever it returned, it
            // must not have touched the ring (checked by the parent) nor panicked.
            // SAFETY: leave the child at once, without the harness.
            unsafe { libc::_exit(if r.is_ok() { OK } else { 100 }) };
        }
        assert_eq!(r.unwrap().unwrap(), 4, "dont_fork {dont_fork}: the parent's batch");
        // SAFETY: one byte from a local; then both ends of the pipe are closed.
        unsafe {
            assert_eq!(libc::write(gate[1], b"g".as_ptr().cast(), 1), 1);
            libc::close(gate[0]);
            libc::close(gate[1]);
        }
        let status = wait_pid(role.get());
        if status != OK {
            failures.push(format!("dont_fork {dont_fork}: child status {status} (139: SIGSEGV)"));
        }
        for (i, m) in msgs.iter().enumerate() {
            let frame = rx.try_recv().unwrap().unwrap();
            if *frame != m.parent {
                failures.push(format!("dont_fork {dont_fork}: frame {i} is {:?}", &*frame));
            }
        }
        // The parent's ring still works.
        tx.send(b"after").unwrap();
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"after", "dont_fork {dont_fork}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Sweep (found sound): every public call on every kind of end, made in a child, leaves the
/// shared header page and the data of a memfd ring byte for byte as they were, and the
/// parent's ends work on. Ends: byte ends with grants held, framed ends with pending frames
/// (set_batch), a frame borrowed.
#[test]
fn the_childs_calls_leave_header_and_data_as_they_were() {
    use std::os::unix::fs::FileExt;
    let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    let file = std::fs::File::from(ring.as_fd().unwrap().try_clone_to_owned().unwrap());
    let snapshot = || {
        let mut v = vec![0u8; common::page_size() + 4096];
        file.read_exact_at(&mut v, 0).unwrap();
        v
    };
    let mut tx = ring.clone().into_producer().unwrap();
    let mut rx = ring.clone().into_consumer().unwrap();
    tx.write_all(b"0123456789abcdef").unwrap();
    let mut four = [0; 4];
    rx.read_exact(&mut four).unwrap();

    // Byte ends, no grant held.
    let (mut otx, mut orx) = (Some(tx), Some(rx));
    let before = snapshot();
    let status = in_child(|| {
        let mut bad = 0;
        let (mut tx, mut rx) = (otx.take().unwrap(), orx.take().unwrap());
        bad += !unsupported(tx.try_write(b"x")) as i32;
        bad += !unsupported(tx.write(b"x")) as i32;
        bad += !unsupported(tx.write_timeout(b"x", std::time::Duration::from_millis(1))) as i32;
        bad += !unsupported(tx.write_grant(1).map(drop)) as i32;
        bad += !unsupported(tx.write_grant_blocking(1).map(drop)) as i32;
        bad += !unsupported(tx.flush()) as i32;
        bad += !unsupported(tx.read_from(&mut &b"abc"[..])) as i32;
        bad += !tx.is_abandoned() as i32;
        let _ = (tx.len(), tx.free(), tx.is_empty(), tx.stats(), format!("{tx:?}"));
        bad += !unsupported(rx.try_read(&mut [0; 4])) as i32;
        bad += !unsupported(rx.read(&mut [0; 4])) as i32;
        bad += !unsupported(rx.read_grant(1).map(drop)) as i32;
        bad += !unsupported(std::io::BufRead::fill_buf(&mut rx).map(drop)) as i32;
        std::io::BufRead::consume(&mut rx, 4);
        bad += !unsupported(rx.write_to(&mut Vec::new())) as i32;
        bad += !rx.is_abandoned() as i32;
        let _ = (rx.len(), rx.is_empty(), rx.stats(), format!("{rx:?}"));
        // Conversions and drops.
        let mut ftx = tx.into_framed();
        ftx.set_batch(4);
        bad += !unsupported(ftx.send(b"x")) as i32;
        bad += !unsupported(ftx.try_send_batch(&[b"x"])) as i32;
        bad += !unsupported(ftx.flush()) as i32;
        bad += !unsupported(ftx.reserve(3).map(drop)) as i32;
        let mut frx = rx.into_framed();
        bad += !unsupported(frx.try_recv().map(|f| f.map(|f| f.len()))) as i32;
        bad += !unsupported(frx.recv_into(&mut Vec::new())) as i32;
        bad += !unsupported(frx.try_recv_batch(|_| {})) as i32;
        let raw_tx = ftx.into_inner();
        let raw_rx = frx.into_inner();
        drop(raw_tx);
        drop(raw_rx);
        bad
    });
    assert_eq!(status, 0, "calls that did not fail with Unsupported");
    assert!(before == snapshot(), "the child changed the header or the data");
    let (mut tx, mut rx) = (otx.unwrap(), orx.unwrap());
    tx.write_all(b"ghij").unwrap();
    let mut rest = [0; 16];
    rx.read_exact(&mut rest).unwrap();
    assert_eq!(&rest, b"456789abcdefghij");

    // Framed, pending frames, a frame borrowed.
    let (mut ftx, mut frx) = (tx.into_framed(), rx.into_framed());
    ftx.send(b"one").unwrap();
    ftx.send(b"two").unwrap();
    ftx.set_batch(8);
    ftx.send(b"pending").unwrap();
    let mut frame = std::mem::ManuallyDrop::new(frx.try_recv().unwrap().unwrap());
    let before_frame = snapshot();
    let status = in_child(|| {
        // SAFETY: dropped once, in the child only.
        unsafe { std::mem::ManuallyDrop::drop(&mut frame) };
        OK
    });
    assert_eq!(status, OK);
    assert!(before_frame == snapshot(), "dropping a frame in the child changed the ring");
    // SAFETY: dropped once, in the parent.
    unsafe { std::mem::ManuallyDrop::drop(&mut frame) };
    let mut ftx = Some(ftx);
    let before = snapshot();
    let status = in_child(|| {
        let mut bad = 0;
        let tx = ftx.as_mut().unwrap();
        tx.set_batch(1);
        bad += !unsupported(tx.flush()) as i32;
        bad += !tx.is_abandoned() as i32;
        drop(ftx.take());
        bad
    });
    assert_eq!(status, OK);
    assert!(before == snapshot(), "the child's framed calls changed the ring");
    let mut ftx = ftx.unwrap();
    assert_eq!(status, OK);
    ftx.flush().unwrap();
    assert_eq!(&*frx.try_recv().unwrap().unwrap(), b"two");
    assert_eq!(&*frx.try_recv().unwrap().unwrap(), b"pending");
}
