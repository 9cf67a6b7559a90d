//! Restart after a crash: taking a dead holder's role over. The models run the crate's real
//! take-over (`peer::take_over`: the slot read as a seqlock, the liveness answer, the one
//! compare-and-swap of `Header::take`), the real close (`protocol::close`), the real peer
//! watcher (`ProcessWatch::check_with`, which follows a take-over) and the real wait, with a
//! liveness oracle in place of pidfds ([`liveness`](super::liveness): the pids it is given are
//! dead, the others alive, and every identity the watcher reads must be consistent).
//!
//! Model pids: 1 the survivor, 10 the holder that dies (or, when a peer forged its death, is
//! alive and closes), 20 and 21 the takers. A process's start time is `1000 + pid`.

use super::{liveness, model, value, Data, ModelWatch, Ring};
use crate::header::{Claim, Role, Word, ROLE_CLAIMED, ROLE_CLOSED};
use crate::peer::{Liveness, ProcessWatch, Refusal};
use crate::protocol::Stop;
use loom::sync::Arc;
use loom::thread;

const N: u64 = 4;

/// Two processes race to take the role of a dead holder over while the survivor's watcher
/// reads the slot: exactly one wins (the other sees the winner alive), the slot names the
/// winner with its own start time in a new epoch, and the watcher, which may first have
/// found the holder dead, follows the take-over to the living winner.
#[test]
fn racing_takers_have_exactly_one_winner() {
    model("racing_takers_have_exactly_one_winner", || {
        let ring = Arc::new(Ring::new(N, 0));
        assert!(ring.claim(Role::Consumer, 10, 1010));
        let takers: Vec<_> = [20, 21]
            .into_iter()
            .map(|pid| {
                let r = ring.clone();
                thread::spawn(move || (pid, r.take_over(Role::Consumer, pid, &[10])))
            })
            .collect();
        // The producer's watcher, concurrently: every identity it reads is consistent (the
        // oracle checks), and only the dead holder is dead.
        let mut watch = ProcessWatch::new(Role::Producer);
        let first = watch.check_with(&ring, liveness(&[10]));
        let results: Vec<(i32, Result<Claim, Refusal>)> = takers.into_iter().map(|t| t.join().unwrap()).collect();
        let winners: Vec<(i32, Claim)> = results.iter().filter_map(|&(pid, r)| r.ok().map(|c| (pid, c))).collect();
        assert_eq!(winners.len(), 1, "exactly one take-over wins: {results:?}");
        let (winner, token) = winners[0];
        for &(pid, r) in &results {
            if pid != winner {
                assert_eq!(r, Err(Refusal::Alive(winner)), "the loser sees the winner alive");
            }
        }
        assert_eq!(ring.claim_word(Role::Consumer), token);
        assert_eq!((token.state(), token.epoch(), token.pid()), (ROLE_CLAIMED, 2, winner));
        let holder = ring.holder(Role::Consumer).expect("a settled slot");
        assert_eq!(holder.start_time, 1000 + winner as u64);
        // The watcher follows: whatever it saw first, it now watches the winner, alive.
        assert!(matches!(first, Liveness::Dead | Liveness::Alive));
        assert_eq!(watch.check_with(&ring, liveness(&[10])), Liveness::Alive);
        assert_eq!(watch.peer().map(|p| p.pid), Some(winner));
        // A later taker finds the winner alive.
        assert_eq!(ring.take_over(Role::Consumer, 30, &[10]), Err(Refusal::Alive(winner)));
    });
}

/// A peer forged the death of a living holder, and a taker believes it while the holder closes
/// its end; the producer (the survivor) waits on the full ring meanwhile, watching its peer.
/// The close and the take-over exclude each other. Either the role is closed (final: the
/// take-over is refused, and the waiting producer is woken with `Closed`), or it is the
/// taker's (the holder's close stored nothing and woke nobody, the holder's token no longer
/// owns the role, which is what stops it touching the ring, and the producer goes on when the
/// new consumer releases a byte).
#[test]
fn a_takeover_and_the_holders_close_exclude_each_other() {
    model("a_takeover_and_the_holders_close_exclude_each_other", || {
        let ring = Arc::new(Ring::new(N, 0));
        let token = ring.claim_token(Role::Consumer, 10);
        assert!(ring.claim(Role::Producer, 1, 1001));
        let mut tx = ring.producer();
        tx.commit(&ring, N as usize);
        let r = ring.clone();
        let holder = thread::spawn(move || {
            let closed = r.close_holding(Role::Consumer, token);
            (closed, r.owns(Role::Consumer, token))
        });
        let r = ring.clone();
        let survivor = thread::spawn(move || {
            let mut watch = ModelWatch::new(Role::Producer, &[10]);
            loop {
                tx.publish(&r);
                match r.wait_watching(Word::Space, watch.rearm(), || tx.poll_writable(&r, 1)) {
                    // The forged death, seen before the take-over or the close: not final.
                    Err(Stop::PeerDied) => thread::yield_now(),
                    other => return other,
                }
            }
        });
        let taken = ring.take_over(Role::Consumer, 20, &[10]);
        if taken.is_ok() {
            let mut rx = ring.consumer();
            rx.release(&ring, 1);
        }
        let (closed, still_owns) = holder.join().unwrap();
        let got = survivor.join().unwrap();
        let word = ring.claim_word(Role::Consumer);
        match (closed, taken) {
            (true, Err(Refusal::Closed)) => {
                assert_eq!((word.state(), word.epoch(), word.pid()), (ROLE_CLOSED, 1, 10));
                assert!(ring.is_closed(Role::Consumer));
                assert_eq!(got, Err(Stop::Closed), "the survivor sees the close");
            }
            (false, Ok(new)) => {
                assert_eq!(word, new);
                assert_eq!((word.state(), word.epoch(), word.pid()), (ROLE_CLAIMED, 2, 20));
                assert_eq!(ring.holder(Role::Consumer).map(|h| h.start_time), Some(1020));
                assert!(!still_owns && !ring.owns(Role::Consumer, token), "the old holder still owns the role");
                assert!(!ring.is_closed(Role::Consumer));
                assert_eq!(got, Ok(1), "the survivor goes on with the new consumer");
            }
            other => panic!("close and take-over must exclude each other: {other:?}, slot {word:?}"),
        }
    });
}

/// The take-over against the survivor's wait. The consumer (pid 10) dies holding all four
/// bytes of a full ring unreleased; the producer (the survivor) waits for space, watching its
/// peer; process 20 takes the consumer role over, reads the four bytes again (they were never
/// released), releases two, and waits for one more. The producer's wait may first end with
/// `PeerDied` (`BrokenPipe`: it saw the death before the take-over), which is not final: its
/// next call goes on, and a wait that starts after the take-over watches the new consumer
/// and is woken by its release (a lost wake-up would be a deadlock). The bytes are loom cells:
/// the new consumer's reads and the producer's later write of the same cell must be ordered.
#[test]
fn a_waiting_survivor_goes_on_after_a_takeover() {
    model("a_waiting_survivor_goes_on_after_a_takeover", || {
        let ring = Arc::new(Ring::new(N, 0));
        let data = Arc::new(Data::new(N));
        assert!(ring.claim(Role::Producer, 1, 1001));
        assert!(ring.claim(Role::Consumer, 10, 1010));
        let mut tx = ring.producer();
        for k in 0..N {
            data.write(k, value(k));
        }
        tx.commit(&ring, N as usize);
        // Pid 10 read the four bytes and died before releasing them.
        let (r, d) = (ring.clone(), data.clone());
        let taker = thread::spawn(move || {
            r.take_over(Role::Consumer, 20, &[10]).expect("the holder is dead");
            let mut rx = r.consumer(); // at the committed tail
            assert_eq!(rx.readable(&r, 1), Ok(N as usize), "every unreleased byte again");
            for k in 0..N {
                assert_eq!(d.read(rx.tail() + k), value(k), "byte {k} delivered again");
            }
            rx.release(&r, 1);
            rx.release(&r, 1);
            let n = r.wait_readable(&mut rx, 3).expect("the producer writes on");
            assert_eq!(n, 3);
            assert_eq!(d.read(rx.tail() + 2), value(N));
        });
        let mut watch = ModelWatch::new(Role::Producer, &[10]);
        let free = loop {
            // The slot only moves forward (10 CLAIMED, 20 TAKING, 20 CLAIMED): once it names
            // the newcomer, no wait may end with PeerDied.
            let taken = ring.claim_word(Role::Consumer).pid() == 20;
            tx.publish(&ring);
            match ring.wait_watching(Word::Space, watch.rearm(), || tx.poll_writable(&ring, 1)) {
                Ok(n) => break n,
                // BrokenPipe: the death was seen before the take-over. Not final.
                Err(Stop::PeerDied) if !taken => thread::yield_now(),
                Err(e) => panic!("producer (slot taken over before the wait: {taken}): {e:?}"),
            }
        };
        assert!(free >= 1);
        data.write(tx.head(), value(N));
        tx.commit(&ring, 1);
        taker.join().unwrap();
        // The watcher now watches the new consumer, alive.
        assert_eq!(watch.watch().check_with(&ring, liveness(&[10])), Liveness::Alive);
        // And the dead holder's token does not own the role.
        assert!(!ring.owns(Role::Consumer, Claim::new(ROLE_CLAIMED, 1, 10)));
    });
}
