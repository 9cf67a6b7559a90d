//! A poisoned cursor is seen consistently: the side that loads an impossible cursor from its
//! peer wakes (a hostile publish still notifies), reports `Corrupt` and keeps reporting it even
//! if the value later looks sane again; the shared flag makes the other side report `Corrupt`
//! too as soon as it has to wait, never a clean end of stream or a grant formed from the bad
//! value.

use super::{model, value, Data, Ring};
use crate::header::{Role, Word};
use crate::protocol::Stop;
use loom::sync::Arc;
use loom::thread;

const N: u64 = 4;

/// A hostile producer publishes one good byte, then a head more than `N` ahead of the tail.
/// The consumer reads the good byte at most, then `Corrupt`, for good.
#[test]
fn bad_head_poisons_the_consumer_for_good() {
    model("bad_head_poisons_the_consumer_for_good", || {
        let ring = Arc::new(Ring::new(N, 0));
        let data = Arc::new(Data::new(N));
        let (r, d) = (ring.clone(), data.clone());
        let hostile = thread::spawn(move || {
            let mut tx = r.producer();
            d.write(tx.head(), value(0));
            tx.commit(&r, 1);
            r.hostile_publish_head(N + 2);
        });
        let mut rx = ring.consumer();
        let mut got = 0;
        loop {
            match ring.wait_readable(&mut rx, 1) {
                Ok(n) => {
                    assert_eq!(n, 1, "only the good byte may be lent");
                    assert_eq!(data.read(rx.tail()), value(0));
                    rx.release(&ring, 1);
                    got += 1;
                }
                Err(Stop::Corrupt) => break,
                Err(e) => panic!("consumer: {e:?}"),
            }
        }
        assert!(got <= 1);
        hostile.join().unwrap();
        assert!(ring.is_poisoned(), "the detecting side sets the shared flag");
        // A sane-looking head afterwards does not un-poison the consumer.
        ring.hostile_publish_head(rx.tail());
        assert!(rx.refresh(&ring).is_err());
        assert!(rx.readable(&ring, 1).is_err());
        assert_eq!(rx.poll_readable(&ring, 1), Some(Err(Stop::Corrupt)));
    });
}

/// The producer sleeps on a full ring; a hostile consumer publishes a tail beyond the head. The
/// producer must wake with `Corrupt` and stay poisoned; it then closes its end, as dropping it
/// does. Meanwhile the honest consumer has read everything and waits for more: it must end
/// with `Corrupt` (from the shared flag), never with a clean `Closed`.
#[test]
fn bad_tail_poisons_both_sides() {
    model("bad_tail_poisons_both_sides", || {
        let ring = Arc::new(Ring::new(N, 0));
        let mut tx = ring.producer();
        tx.commit(&ring, N as usize);
        let mut rx = ring.consumer();
        let r = ring.clone();
        let hostile = thread::spawn(move || r.hostile_publish_tail(N + 5));
        let r = ring.clone();
        let producer = thread::spawn(move || {
            assert_eq!(r.wait_writable(&mut tx, 1), Err(Stop::Corrupt));
            assert!(tx.refresh(&r).is_err());
            assert!(tx.writable(&r, 1).is_err());
            assert_eq!(tx.poll_writable(&r, 1), Some(Err(Stop::Corrupt)));
            r.close(Role::Producer);
        });
        // The consumer reads all four bytes without publishing its tail (a publish would
        // overwrite the hostile value), then waits for more.
        assert_eq!(rx.readable(&ring, 1), Ok(N as usize));
        rx.advance(N as usize);
        assert_eq!(ring.wait_for(Word::Data, || rx.poll_readable(&ring, 1)), Err(Stop::Corrupt));
        hostile.join().unwrap();
        producer.join().unwrap();
    });
}
