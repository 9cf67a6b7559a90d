//! No lost wake-up: a reader that sleeps for data and a writer that sleeps for space are always
//! woken by the publish that satisfies them. Loom reports a lost wake-up as a deadlock (every
//! thread blocked on the emulated futex).

use super::{model, publish_bytes, value, Data, Ring};
use loom::sync::Arc;
use loom::thread;

const N: u64 = 4;

/// The consumer waits for two bytes on an empty ring; the producer publishes them one by one,
/// so the consumer may sleep, wake for one byte, and sleep again.
#[test]
fn sleeping_reader_is_woken() {
    model("sleeping_reader_is_woken", || {
        let ring = Arc::new(Ring::new(N, 0));
        let data = Arc::new(Data::new(N));
        let producer = publish_bytes(&ring, &data, 2);
        let mut rx = ring.consumer();
        let n = ring.wait_readable(&mut rx, 2).expect("two bytes come");
        assert_eq!(n, 2);
        assert_eq!([data.read(0), data.read(1)], [value(0), value(1)]);
        producer.join().unwrap();
    });
}

/// The producer fills the ring, then waits for two bytes of space; the consumer releases them
/// one by one.
#[test]
fn sleeping_writer_is_woken() {
    model("sleeping_writer_is_woken", || {
        let ring = Arc::new(Ring::new(N, 0));
        let mut tx = ring.producer();
        tx.commit(&ring, N as usize);
        let r = ring.clone();
        let consumer = thread::spawn(move || {
            let mut rx = r.consumer();
            assert_eq!(rx.readable(&r, 1), Ok(N as usize));
            rx.release(&r, 1);
            rx.release(&r, 1);
        });
        let free = ring.wait_writable(&mut tx, 2).expect("space comes");
        assert_eq!(free, 2);
        consumer.join().unwrap();
    });
}
