//! The framing epoch (`Header::begin_framing`, `Header::end_framing`, `Receiver::take`'s
//! second look): a framed producer that turns into a byte end and back, while a framed
//! consumer receives, with the crate's real `Sender` and `Receiver` over loom atomics for
//! header words and loom cells for payload bytes (as in `frames.rs`).
//!
//! What the producer's ends do at a switch is replayed step by step from
//! `ring/framed/{producer,mod}.rs`: `FramedProducer::into_inner` publishes what is pending, then
//! `end_framing`; `Producer::into_framed` stores the clear mark where its first frame goes (if
//! the room reaches), then `begin_framing`. A byte end's writes into the ring are plain byte
//! copies: a header word written by one is modelled as a Relaxed store of that word.

use super::{model, value, Data, Ring};
use crate::header::{Role, Word};
use crate::protocol::{ConsumerCursor, ProducerCursor, Stop};
use crate::ring::framed::link::{Mark, Receiver, Room, Sender, Words};
use crate::ring::framed::wire::{frame_size, max_frame_len_for, Stamp};
use crate::sync::Ordering;
use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::thread;

/// A ring of two 16-byte frames.
const N: u64 = 32;
/// A frame header's size, and the clear mark (`wire::HEADER`, `wire::CLEAR`).
const HEADER: usize = 8;
const CLEAR: u64 = 0;

/// One loom atomic per 8-byte header word, zeroed like fresh pages.
struct ModelWords {
    words: Box<[AtomicU64]>,
    mask: u64,
}

impl ModelWords {
    fn new(capacity: u64) -> ModelWords {
        ModelWords { words: (0..capacity / 8).map(|_| AtomicU64::new(0)).collect(), mask: capacity - 1 }
    }
}

impl Words for ModelWords {
    fn load(&self, pos: u64, order: Ordering) -> u64 {
        self.words[((pos & self.mask) >> 3) as usize].load(order)
    }

    fn store(&self, pos: u64, word: u64, order: Ordering) {
        self.words[((pos & self.mask) >> 3) as usize].store(word, order);
    }
}

struct Framed {
    ring: Ring,
    words: ModelWords,
    data: Data,
}

impl Framed {
    fn new() -> Arc<Framed> {
        Arc::new(Framed { ring: Ring::new(N, 0), words: ModelWords::new(N), data: Data::new(N) })
    }

    fn room(&self, link: &Sender, tx: &mut ProducerCursor, size: usize) {
        while let Room::Short(need) = link.room(tx, size) {
            self.ring.wait_writable(tx, need).expect("the consumer is alive");
        }
    }

    /// An unbatched framed `send` of a one-byte frame `v`.
    fn send(&self, link: &mut Sender, tx: &mut ProducerCursor, v: u8) {
        self.room(link, tx, frame_size(1));
        self.data.write(tx.head() + 8, v);
        link.put_and_publish(&self.ring, tx, &self.words, 1, Mark::Check);
    }

    /// `FramedProducer::into_inner` with nothing pending: the epoch ends.
    fn into_inner(&self) {
        self.ring.end_framing();
    }

    /// `Producer::into_framed` at an aligned head (no resume: not a take-over): the clear mark
    /// where the first frame goes, if the room reaches, then the next framing epoch.
    fn into_framed(&self, tx: &mut ProducerCursor) -> Sender {
        if tx.free_cached() >= HEADER {
            self.words.store(tx.head(), CLEAR, Ordering::Relaxed);
        }
        self.ring.begin_framing(tx.head());
        Sender::new(N as usize, tx.head())
    }

    /// `recv` as the framed consumer does it (fast poll, look, sleep with look as recheck).
    fn recv(&self, link: &mut Receiver, rx: &mut ConsumerCursor) -> Result<u8, Stop> {
        let (len, size) = match link.poll(&self.ring, rx, &self.words) {
            Some(frame) => frame,
            None => match link.look(&self.ring, rx, &self.words) {
                Some(r) => r?,
                None => self.ring.wait_for(Word::Data, || link.look(&self.ring, rx, &self.words))?,
            },
        };
        assert_eq!((len, size), (1, 16), "frame at {}", rx.tail());
        let v = self.data.read(rx.tail() + 8);
        if link.consumed(rx, size) {
            link.publish(&self.ring, rx);
        }
        Ok(v)
    }

    /// One non-waiting look (`try_recv`): the frame's payload, or nothing.
    fn try_recv(&self, link: &mut Receiver, rx: &mut ConsumerCursor) -> Option<u8> {
        let (len, size) = match link.poll(&self.ring, rx, &self.words) {
            Some(frame) => frame,
            None => match link.look(&self.ring, rx, &self.words) {
                Some(Ok(frame)) => frame,
                Some(Err(stop)) => panic!("stop {stop:?} at {}", rx.tail()),
                None => return None,
            },
        };
        let v = self.data.read(rx.tail() + 8);
        let _ = link.consumed(rx, size);
        assert_eq!(len, 1);
        Some(v)
    }
}

fn receiver(rx: &ConsumerCursor) -> Receiver {
    Receiver::new(N as usize, max_frame_len_for(N as usize), N as usize, rx.tail())
}

/// A framed producer sends frame 0, turns into a byte end (`into_inner`), and writes into its
/// free room, uncommitted (a write grant it drops), a word that reads as the stamped header of
/// a one-byte frame exactly where the consumer looks next, and a payload byte after it. The
/// consumer, which took frame 0 (through head: stamps are then trusted), keeps looking: it must
/// never take those bytes for a frame, during the switch or after it.
#[test]
fn a_byte_end_after_a_framed_one_never_passes_for_a_frame() {
    model("a_byte_end_after_a_framed_one_never_passes_for_a_frame", || {
        let f = Framed::new();
        let g = f.clone();
        let producer = thread::spawn(move || {
            let mut tx = g.ring.producer();
            let mut link = Sender::new(N as usize, 0);
            g.send(&mut link, &mut tx, value(0));
            g.into_inner();
            // The byte end's grant: bytes at the head, never committed.
            let p = tx.head();
            g.words.store(p, Stamp.stamped(1, p), Ordering::Relaxed);
            g.data.write(p + 8, 0xEE);
        });
        let mut rx = f.ring.consumer();
        let mut link = receiver(&rx);
        assert_eq!(f.recv(&mut link, &mut rx), Ok(value(0)));
        assert_eq!(f.try_recv(&mut link, &mut rx), None, "bytes taken for a frame during the switch");
        producer.join().unwrap();
        assert_eq!(f.try_recv(&mut link, &mut rx), None, "bytes taken for a frame after the switch");
        assert!(!f.ring.is_poisoned());
    });
}

/// framed -> bytes -> framed at frame boundaries while the consumer (framed throughout)
/// receives, both sides sleeping: frame 0 framed, frame 1 written through the byte API
/// (unstamped header, committed by the byte cursor), frame 2 framed again after
/// `into_framed`. The consumer gets all three in order, then the end of the stream: no hang
/// after a disarm, nothing twice, no poison.
#[test]
fn framed_bytes_framed_streams_in_order() {
    model("framed_bytes_framed_streams_in_order", || {
        let f = Framed::new();
        let g = f.clone();
        let producer = thread::spawn(move || {
            let mut tx = g.ring.producer();
            let mut link = Sender::new(N as usize, 0);
            g.send(&mut link, &mut tx, value(0));
            g.into_inner();
            // The byte end writes one whole frame (room for it: 16 bytes are free).
            let p = tx.head();
            g.data.write(p + 8, value(1));
            g.words.store(p, Stamp.unstamped(1, p), Ordering::Relaxed);
            tx.commit(&g.ring, 16);
            let mut link = g.into_framed(&mut tx);
            g.send(&mut link, &mut tx, value(2));
            g.ring.close(Role::Producer);
        });
        let mut rx = f.ring.consumer();
        let mut link = receiver(&rx);
        for k in 0..3 {
            assert_eq!(f.recv(&mut link, &mut rx), Ok(value(k)), "frame {k}");
        }
        assert_eq!(f.recv(&mut link, &mut rx), Err(Stop::Closed));
        producer.join().unwrap();
        assert!(!f.ring.is_poisoned());
    });
}
