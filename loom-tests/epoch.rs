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

use super::frames::{receiver, Framed, N};
use super::{model, value};
use crate::header::Role;
use crate::protocol::{ConsumerCursor, ProducerCursor, Stop};
use crate::ring::framed::link::{Receiver, Sender, Words};
use crate::ring::framed::wire::max_frame_len_for;
use crate::ring::framed::wire::Stamp;
use crate::sync::Ordering;
use loom::sync::atomic::AtomicBool;
use loom::sync::Arc;
use loom::thread;

/// A frame header's size, and the clear mark (`wire::HEADER`, `wire::CLEAR`).
const HEADER: usize = 8;
const CLEAR: u64 = 0;

/// The switches, as the producer's ends make them (`Framed` and its `send`/`recv`: `frames.rs`).
impl Framed {
    /// `FramedProducer::into_inner` with nothing pending: the epoch ends.
    fn turn_into_bytes(&self) {
        self.ring.end_framing();
    }

    /// A producer that sends frame 0 framed, then turns into a byte end (`into_inner`): its
    /// cursor, for the bytes it writes next.
    fn frame_0_then_bytes(&self) -> ProducerCursor {
        let mut tx = self.ring.producer();
        let mut link = Sender::new(N as usize, 0);
        self.send(&mut link, &mut tx, 0);
        self.turn_into_bytes();
        tx
    }

    /// `Producer::into_framed` at an aligned head, then its first frame's claim: the next
    /// framing epoch begins where the first frame goes (`Sender::begin`: the clear mark there,
    /// then the epoch) once the consumer's cursor, reloaded, leaves room for that word; on a
    /// full ring only when the first frame has its room (`FramedProducer::begin`).
    fn turn_into_framed(&self, tx: &mut ProducerCursor) -> Sender {
        if tx.writable(&self.ring, HEADER).expect("an honest consumer") < HEADER {
            self.ring.wait_writable(tx, HEADER).expect("the consumer is alive");
        }
        Sender::begin(&self.ring, &self.words, tx.head());
        Sender::new(N as usize, tx.head())
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

    /// A producer about to die in the publish of a batch: frames 0 and 1 (`value(0)`,
    /// `value(1)`) written from its head as a batch (the first header unstamped), the clear mark
    /// after them. Returns the first frame's position, for the stamp the model stores.
    fn batch_of_two(&self, link: &mut Sender, tx: &mut ProducerCursor) -> u64 {
        let first = tx.head();
        for k in 0..2 {
            self.payload(tx, value(k));
            link.put(tx, &self.words, 1);
        }
        Sender::clear_after(tx, &self.words);
        first
    }

    /// A byte newcomer's take-over (`Producer::took_over`) after a producer that died with
    /// frames stamped above the head: it covers them (`Sender::resume`), then ends the framing
    /// epoch. Its cursor, for the bytes it writes next.
    fn byte_newcomer(&self) -> ProducerCursor {
        let mut tx = self.ring.producer();
        let max = max_frame_len_for(tx.capacity() as usize);
        Sender::resume(&self.ring, &mut tx, &self.words, max);
        self.ring.end_framing();
        tx
    }
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
            let tx = g.frame_0_then_bytes();
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
            let mut tx = g.frame_0_then_bytes();
            // The byte end writes one whole frame (room for it: 16 bytes are free).
            let p = tx.head();
            g.data.write(p + 8, value(1));
            g.words.store(p, Stamp.unstamped(1, p), Ordering::Relaxed);
            tx.commit(&g.ring, 16);
            let mut link = g.turn_into_framed(&mut tx);
            g.send(&mut link, &mut tx, 2);
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

/// A framed producer dies between the stamp and the head store of its first publish, a batch
/// of frames 0 and 1 (so the consumer trusts no stamp yet, and watched the head), and a byte
/// newcomer takes over while the consumer, having found the producer dead, looks once more
/// (`Receiver::look_after_death`): the newcomer covers the batch (`Sender::resume`), ends the
/// framing epoch, and writes, uncommitted, a word that reads as a stamped header where the
/// consumer looks after the batch, and a payload byte. The consumer gets frames 0 and 1 with
/// their payloads, by their stamps or, once the epoch ended, through the head, and never takes
/// the newcomer's bytes for a frame.
#[test]
fn a_consumer_that_found_its_producer_dead_takes_its_stamped_batch_and_no_bytes() {
    model("a_consumer_that_found_its_producer_dead_takes_its_stamped_batch_and_no_bytes", || {
        const CAP: u64 = 64;
        let f = Framed::with_capacity(CAP);
        // The newcomer, which takes over once the producer is dead.
        let dead = Arc::new(AtomicBool::new(false));
        let (g, died) = (f.clone(), dead.clone());
        let newcomer = thread::spawn(move || {
            // Acquire: pairs with the Release store of `dead` below: everything the dead producer
            // stored is seen (as the kernel's proof of the death orders it for a newcomer).
            while !died.load(Ordering::Acquire) {
                thread::yield_now();
            }
            let tx = g.byte_newcomer();
            assert_eq!(tx.head(), 32, "the newcomer covers the batch");
            let p = tx.head();
            g.words.store(p, Stamp.stamped(1, p), Ordering::Relaxed);
            g.data.write(p + 8, 0xEE);
        });
        // The dead producer: frames 0 and 1 written as a batch.
        let mut tx = f.ring.producer();
        let mut link = Sender::new(CAP as usize, 0);
        f.batch_of_two(&mut link, &mut tx);
        // The consumer looks: frame 0's header is unstamped, and no frame came through the head.
        let mut rx = f.ring.consumer();
        let mut rlink = Receiver::new(CAP as usize, max_frame_len_for(CAP as usize), CAP as usize, rx.tail());
        assert_eq!(f.try_recv(&mut rlink, &mut rx), None);
        // The publish's first store (Release: as `commit`'s, for `Receiver::poll_word` and
        // `Sender::resume`), then the death (Release: for the newcomer's Acquire load of `dead`).
        f.words.store(0, link.stamp().stamped(1, 0), Ordering::Release);
        dead.store(true, Ordering::Release);
        // The consumer, as `recv_slow` after finding the producer dead: a look, then (nothing
        // found) the look after the death. Each call must deliver a frame of the batch: the
        // death is never reported over it, whichever of the newcomer's steps it sees.
        let mut got = Vec::new();
        while got.len() < 2 {
            let found =
                rlink.look(&f.ring, &mut rx, &f.words).or_else(|| rlink.look_after_death(&f.ring, &mut rx, &f.words));
            match found {
                Some(Ok((len, size))) => {
                    assert_eq!((len, size), (1, 16));
                    got.push(f.data.read(rx.tail() + 8));
                    let _ = rlink.consumed(&mut rx, size);
                }
                Some(Err(stop)) => panic!("stop {stop:?} after the death"),
                None => panic!("the death reported over a stamped frame, after {got:?}"),
            }
        }
        assert_eq!(got, [value(0), value(1)]);
        newcomer.join().unwrap();
        assert_eq!(f.try_recv(&mut rlink, &mut rx), None, "the newcomer's bytes taken for a frame");
        assert!(!f.ring.is_poisoned());
    });
}

/// As above, in the order that model leaves to chance: the consumer's look finds nothing
/// (head not covering the batch yet), then the newcomer takes over in full (covers the batch,
/// ends the framing epoch), and only then, having seen the epoch end (a Relaxed load: no
/// synchronisation of its own), does the consumer make its look after the death. It must see
/// the newcomer's cover through head. `after_a`: the producer first published frame A, which
/// the consumer took through head, so it trusts stamps and watched head only behind the
/// batch's unstamped first header; its look takes the stamp, finds the epoch changed, and must
/// go on to head (the Acquire fence in `Receiver::take`). Otherwise the batch is the epoch's
/// first publish: the look finds no epoch to trust a stamp in and looks at head (the Acquire
/// load in `Receiver::epoch_from`). Both pair with the Release fence before the epoch store in
/// `Header::end_framing` (here the newcomer's publish also fences: see the README).
fn a_look_after_the_death_sees_a_newcomers_cover_through_head(after_a: bool) {
    const CAP: u64 = 64;
    let f = Framed::with_capacity(CAP);
    let mut tx = f.ring.producer();
    let mut link = Sender::new(CAP as usize, 0);
    let mut rx = f.ring.consumer();
    let mut rlink = Receiver::new(CAP as usize, max_frame_len_for(CAP as usize), CAP as usize, rx.tail());
    if after_a {
        f.send(&mut link, &mut tx, 9);
        assert_eq!(f.recv(&mut rlink, &mut rx), Ok(value(9)));
    }
    // The dead producer: frames 0 and 1 as a batch.
    let first = f.batch_of_two(&mut link, &mut tx);
    // A look at the unstamped batch (after A: the consumer watches head from here).
    assert!(rlink.look(&f.ring, &mut rx, &f.words).is_none());
    // The publish's first store, then the death; the consumer's look before it reports it.
    f.words.store(first, link.stamp().stamped(1, first), Ordering::Release);
    assert!(rlink.look(&f.ring, &mut rx, &f.words).is_none());
    let g = f.clone();
    let newcomer = thread::spawn(move || {
        g.byte_newcomer();
    });
    // Relaxed: only to wait for the newcomer's end of the epoch, adding no ordering.
    while f.ring.framing_epoch() % 2 == 1 {
        thread::yield_now();
    }
    match rlink.look_after_death(&f.ring, &mut rx, &f.words) {
        Some(Ok((1, 16))) => assert_eq!(f.data.read(rx.tail() + 8), value(0)),
        other => panic!("the look after the death found {other:?}, not frame 0 through head"),
    }
    newcomer.join().unwrap();
}

#[test]
fn a_look_after_the_death_sees_a_newcomers_cover_through_head_first_frames() {
    model("a_look_after_the_death_sees_a_newcomers_cover_through_head_first_frames", || {
        a_look_after_the_death_sees_a_newcomers_cover_through_head(false)
    });
}

#[test]
fn a_look_after_the_death_sees_a_newcomers_cover_through_head_after_a() {
    model("a_look_after_the_death_sees_a_newcomers_cover_through_head_after_a", || {
        a_look_after_the_death_sees_a_newcomers_cover_through_head(true)
    });
}
