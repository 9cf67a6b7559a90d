//! Bytes cross the ring once, in order, never torn, and the producer never overwrites unread
//! bytes: a producer and a consumer thread stream a few bytes through a 4-byte ring whose
//! grants cross the wrap point (and the `u64` wrap of the cursors). Every byte lives in a loom
//! `UnsafeCell`, so a write and a read of one byte that the protocol fails to order fail the
//! model, whichever interleaving exposes it.

use super::{model, value, Data, Ring};
use crate::header::Role;
use crate::protocol::Stop;
use loom::sync::Arc;
use loom::thread;

const N: u64 = 4;

/// Producer grants of 3, 4, 2, 3, 4 and 1 bytes (17 bytes, four laps of the ring), starting at
/// offset 2, so four of them cross the wrap point, and two take the whole ring (the producer
/// must wait until it is empty); the consumer takes whatever is readable, which crosses it
/// too. The cursors start two bytes below `u64::MAX`, so the stream also crosses the wrap of
/// the `u64` cursors. The producer closes at the end; the consumer drains everything, then
/// sees `Closed`.
#[test]
fn grants_cross_the_wrap_in_order() {
    model("grants_cross_the_wrap_in_order", || {
        let start = u64::MAX - 1;
        let ring = Arc::new(Ring::new(N, start));
        let data = Arc::new(Data::new(N));
        let (r, d) = (ring.clone(), data.clone());
        let producer = thread::spawn(move || {
            let mut tx = r.producer();
            let mut k = 0;
            let mut crossed = 0;
            for len in [3usize, 4, 2, 3, 4, 1] {
                let free = r.wait_writable(&mut tx, len).expect("the consumer is alive");
                assert!(free >= len && free as u64 <= N, "free {free}");
                crossed += usize::from(tx.offset() + len > N as usize);
                for i in 0..len as u64 {
                    d.write(tx.head().wrapping_add(i), value(k));
                    k += 1;
                }
                tx.commit(&r, len);
            }
            assert_eq!(crossed, 4, "grants that cross the wrap point");
            r.close(Role::Producer);
        });
        let mut rx = ring.consumer();
        let mut k = 0;
        loop {
            match ring.wait_readable(&mut rx, 1) {
                Ok(n) => {
                    assert!(n >= 1 && n as u64 <= N, "grant of {n}");
                    for i in 0..n as u64 {
                        assert_eq!(data.read(rx.tail().wrapping_add(i)), value(k), "byte {k}");
                        k += 1;
                    }
                    rx.release(&ring, n);
                }
                Err(Stop::Closed) => break,
                Err(e) => panic!("consumer: {e:?}"),
            }
        }
        assert_eq!(k, 17, "every byte arrives exactly once");
        assert_eq!(rx.tail(), start.wrapping_add(17));
        producer.join().unwrap();
    });
}

/// The batched paths, over sixteen bytes (four laps of the ring): the producer fills all the
/// free space it sees one byte at a time with `advance` and publishes once per grant; the
/// consumer takes one byte at a time, advances, and releases only every second byte (or before
/// it sleeps). The ring is full most of the time, so any overwrite of an unreleased byte, or a
/// read of an unpublished one, is a race on a cell.
#[test]
fn producer_never_overwrites_unread_bytes() {
    model("producer_never_overwrites_unread_bytes", || {
        const TOTAL: u64 = 16;
        let ring = Arc::new(Ring::new(N, 0));
        let data = Arc::new(Data::new(N));
        let (r, d) = (ring.clone(), data.clone());
        let producer = thread::spawn(move || {
            let mut tx = r.producer();
            let mut k = 0;
            while k < TOTAL {
                let free = r.wait_writable(&mut tx, 1).expect("the consumer is alive");
                assert!(free >= 1 && free as u64 <= N, "free {free}");
                let n = (free as u64).min(TOTAL - k);
                for _ in 0..n {
                    d.write(tx.head(), value(k));
                    tx.advance(1);
                    k += 1;
                }
                tx.publish(&r);
            }
        });
        let mut rx = ring.consumer();
        let mut unreleased = 0;
        for k in 0..TOTAL {
            let n = match rx.readable(&ring, 1) {
                Ok(0) => ring.wait_readable(&mut rx, 1).expect("bytes are coming"),
                Ok(n) => n,
                Err(e) => panic!("consumer: {e:?}"),
            };
            assert!(n >= 1 && n as u64 <= N, "readable {n}");
            assert_eq!(data.read(rx.tail()), value(k), "byte {k}");
            rx.advance(1);
            unreleased += 1;
            if unreleased == 2 {
                rx.publish(&ring);
                unreleased = 0;
            }
        }
        producer.join().unwrap();
    });
}

/// A consumer that attaches while the producer is publishing (a role claimed, or taken over,
/// while the producer runs) and reads what its attach found without another load of head:
/// `ConsumerCursor::attach` caches the head it loads, and `readable` answers from that cache
/// when it shows enough, so the attach's Acquire is what orders the producer's writes of those
/// bytes before the consumer's reads.
#[test]
fn a_consumer_reads_what_its_attach_found() {
    model("a_consumer_reads_what_its_attach_found", || {
        let ring = Arc::new(Ring::new(N, 0));
        let data = Arc::new(Data::new(N));
        let (r, d) = (ring.clone(), data.clone());
        let producer = thread::spawn(move || {
            let mut tx = r.producer();
            d.write(tx.head(), value(0));
            tx.commit(&r, 1);
        });
        // Without this yield loom explores a single execution here (the attach always runs
        // before the producer's first step); with it, the attach may find the byte committed.
        thread::yield_now();
        let mut rx = ring.consumer();
        if rx.readable_cached() == 1 {
            // Found by the attach: no refresh before the read.
            assert_eq!(rx.readable(&ring, 1), Ok(1));
            assert_eq!(data.read(rx.tail()), value(0));
        }
        producer.join().unwrap();
    });
}
