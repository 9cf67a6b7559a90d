//! A parked async end against a publisher: the task raises the same waiter flag as a blocking
//! end (the real `ring::asynch::park::Parking::poll`: flag, barrier, recheck, registration of
//! its `Waker`), and the publisher's unchanged `notify` wakes it, either directly through the
//! registry (a thread ring) or through a helper that sleeps on the word's futex and fires the
//! registry's entries (a ring between processes). The task runs under
//! `loom::future::block_on`, which sleeps until its waker is woken: a lost wake-up is a
//! deadlock, which loom reports.

use std::cell::Cell;
use std::io;

use loom::sync::atomic::AtomicBool;
use loom::sync::Arc;
use loom::thread;

use super::{model, publish_bytes, value, Data, Ring};
use crate::header::{Header, Role, Word};
use crate::protocol::{ConsumerCursor, Stop};
use crate::ring::asynch::park::{self, ParkEnd, Parking, Site};
use crate::stats::Counters;
use crate::sync::{Ordering, Park};
use crate::wait::Spin;

const N: u64 = 4;

/// The consumer side of a model ring as an async end would hold it.
struct AsyncReader {
    ring: Arc<Ring>,
    rx: ConsumerCursor,
    park: Cell<Park>,
    counters: Counters,
    direct: bool,
    /// No spin phase: loom explores the park itself.
    spin: Cell<Spin>,
}

impl ParkEnd for AsyncReader {
    fn lost(&self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::Unsupported, "the model's end is always there")
    }

    fn site(&self) -> Option<Site<'_>> {
        let hdr: &Header = &self.ring;
        Some(Site {
            hdr,
            role: Role::Consumer,
            park: &self.park,
            counters: &self.counters,
            direct: self.direct,
            watcher: None,
            ring: None,
            spin: &self.spin,
            kept: None,
        })
    }
}

impl AsyncReader {
    fn new(ring: &Arc<Ring>, direct: bool) -> AsyncReader {
        AsyncReader {
            rx: ring.consumer(),
            ring: ring.clone(),
            park: Cell::new(Park::Global),
            counters: Counters::default(),
            direct,
            spin: Cell::new(Spin::new(std::time::Duration::ZERO)),
        }
    }

    /// What an async read does: a non-blocking attempt (`WouldBlock` while fewer than `min`
    /// bytes are readable), parked between attempts. `Closed` ends it with the bytes left.
    fn read(&mut self, min: usize) -> Result<usize, Stop> {
        let mut parking = Parking::default();
        let r = loom::future::block_on(std::future::poll_fn(|cx| {
            parking.poll(cx, self, |end| match end.rx.poll_readable(&end.ring, min) {
                Some(Ok(n)) => Ok(Ok(n)),
                Some(Err(stop)) => Ok(Err(stop)),
                None => Err(io::ErrorKind::WouldBlock.into()),
            })
        }));
        match r {
            Ok(r) => r,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}

/// A thread ring: the publisher's wake finds the parked task in the registry and wakes it
/// directly. The consumer waits for two bytes published one at a time, so it may park, be
/// woken for one byte, and park again.
#[test]
fn parked_async_reader_is_woken_directly() {
    model("parked_async_reader_is_woken_directly", || woken_directly(Ring::new(N, 0), 2));
}

/// The body of the models of a thread ring's direct wake: an async reader of `ring` waits for
/// `n` bytes that a producer thread publishes one commit each, and gets them all; no
/// registration outlives the read.
fn woken_directly(ring: Ring, n: u64) {
    let ring = Arc::new(ring);
    let data = Arc::new(Data::new(N));
    let producer = publish_bytes(&ring, &data, n);
    let mut reader = AsyncReader::new(&ring, true);
    assert_eq!(reader.read(n as usize), Ok(n as usize));
    for k in 0..n {
        assert_eq!(data.read(k), value(k), "byte {k}");
    }
    producer.join().unwrap();
    assert!(!park::registered_for_model(), "a registration outlived the read");
}

/// A thread ring in a process where no async end has parked before: the task's registration
/// installs the direct-wake function while the publisher clears the flag and looks for it. The
/// fence pair (`sync::direct_wake`, `Registry::register`) makes either the publisher find the
/// function (and then the entry, or the task sees the cleared flag under the registry's lock)
/// or the task see the cleared flag; without it both could miss, the publisher waking the
/// futex nobody sleeps on and the task waiting for ever.
#[test]
fn first_registration_racing_a_publish_is_not_lost() {
    model("first_registration_racing_a_publish_is_not_lost", || woken_directly(Ring::before_any_park(N, 0), 1));
}

/// A ring between processes: nothing is woken directly; a helper thread sleeps on the word's
/// (emulated) futex while an entry is registered, and fires the due entries when it wakes.
#[test]
fn parked_async_reader_is_woken_by_the_helper() {
    model("parked_async_reader_is_woken_by_the_helper", || {
        let ring = Arc::new(Ring::new(N, 0));
        let data = Arc::new(Data::new(N));
        let done = Arc::new(AtomicBool::new(false));
        let producer = publish_bytes(&ring, &data, 1);
        let (r, stop) = (ring.clone(), done.clone());
        let helper = thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if park::registered_for_model() {
                    r.word(Word::Data).wait(1, std::time::Duration::ZERO);
                    for w in park::fire_for_model() {
                        w.wake();
                    }
                } else {
                    thread::yield_now();
                }
            }
        });
        let mut reader = AsyncReader::new(&ring, false);
        assert_eq!(reader.read(1), Ok(1));
        assert_eq!(data.read(0), value(0));
        producer.join().unwrap();
        // What deregistering does in the crate: tell the helper to look again.
        done.store(true, Ordering::SeqCst);
        ring.word(Word::Data).wake();
        helper.join().unwrap();
    });
}

/// The producer closes without publishing: the close wakes the parked task (directly), which
/// then sees the end of the stream.
#[test]
fn close_wakes_parked_async_reader() {
    model("close_wakes_parked_async_reader", || {
        let ring = Arc::new(Ring::new(N, 0));
        let r = ring.clone();
        let producer = thread::spawn(move || r.close(Role::Producer));
        let mut reader = AsyncReader::new(&ring, true);
        assert_eq!(reader.read(1), Err(Stop::Closed));
        producer.join().unwrap();
    });
}

/// Two parks on one waiter word: an end of this process whose role this process took over
/// (a peer forged its death), parked, and the newcomer, parking on the same word. The old
/// park goes (its end dropped, on another thread) while the newcomer parks and a byte is
/// published: the newcomer is woken. (Before, the registry kept one entry per word: the
/// newcomer's registration swapped its waker into the old park's entry, and the old park's
/// drop removed it, so the publish woke nobody: a deadlock here.)
#[test]
fn a_park_displaced_from_its_word_does_not_take_the_newcomers_wake() {
    model("a_park_displaced_from_its_word_does_not_take_the_newcomers_wake", || {
        let ring = Arc::new(Ring::new(N, 0));
        let data = Arc::new(Data::new(N));
        let mut reader = AsyncReader::new(&ring, true);
        // The old end's park: registered, its task never polled again.
        let mut old = Parking::default();
        let waker = std::task::Waker::noop();
        let polled = old.poll(&mut std::task::Context::from_waker(waker), &mut reader, |end| {
            match end.rx.poll_readable(&end.ring, 1) {
                Some(_) => Ok(()),
                None => Err(io::ErrorKind::WouldBlock.into()),
            }
        });
        assert!(polled.is_pending(), "nothing was published yet");
        let leaving = thread::spawn(move || drop(old));
        let producer = publish_bytes(&ring, &data, 1);
        assert_eq!(reader.read(1), Ok(1));
        assert_eq!(data.read(0), value(0));
        producer.join().unwrap();
        leaving.join().unwrap();
        assert!(!park::registered_for_model(), "a registration outlived the read");
    });
}
