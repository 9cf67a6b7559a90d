//! Close while the peer sleeps: the sleeper is woken, a reader first drains every byte
//! published before the close, and each side then reports `Closed`.

use super::{model, value, Data, Ring};
use crate::header::Role;
use crate::protocol::Stop;
use loom::sync::Arc;
use loom::thread;

const N: u64 = 4;

/// The consumer waits for more bytes than will ever come; the producer publishes one and
/// closes (as `Producer::drop` does). The consumer must wake, and the byte published before
/// the close must be readable after `Closed` (the close's Release / `is_closed`'s Acquire).
#[test]
fn close_wakes_sleeping_reader_after_its_last_byte() {
    model("close_wakes_sleeping_reader_after_its_last_byte", || {
        let ring = Arc::new(Ring::new(N, 0));
        let data = Arc::new(Data::new(N));
        let (r, d) = (ring.clone(), data.clone());
        let producer = thread::spawn(move || {
            let mut tx = r.producer();
            d.write(tx.head(), value(0));
            tx.commit(&r, 1);
            r.close(Role::Producer);
        });
        let mut rx = ring.consumer();
        assert_eq!(ring.wait_readable(&mut rx, 2), Err(Stop::Closed));
        assert_eq!(rx.readable_cached(), 1, "the byte published before the close is visible");
        assert_eq!(data.read(rx.tail()), value(0));
        rx.release(&ring, 1);
        assert_eq!(ring.wait_readable(&mut rx, 1), Err(Stop::Closed));
        producer.join().unwrap();
    });
}

/// The producer sleeps on a full ring; the consumer closes without reading. The producer must
/// wake and report `Closed`.
#[test]
fn close_wakes_sleeping_writer() {
    model("close_wakes_sleeping_writer", || {
        let ring = Arc::new(Ring::new(N, 0));
        let mut tx = ring.producer();
        tx.commit(&ring, N as usize);
        let r = ring.clone();
        let consumer = thread::spawn(move || {
            let mut rx = r.consumer();
            rx.publish(&r); // nothing consumed: publishes nothing
            r.close(Role::Consumer);
        });
        assert_eq!(ring.wait_writable(&mut tx, 1), Err(Stop::Closed));
        consumer.join().unwrap();
    });
}
