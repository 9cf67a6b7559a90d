//! Position-stamped frames (`src/ring/framed/link.rs`): a producer and a consumer stream frames
//! through a 32-byte ring (two 16-byte frames fill it), with the crate's real hand-over code:
//! `Sender` (room, the header and clear-mark stores, then stamp and head, for a batch as for a
//! frame sent on its own, then the wake-up; the newcomer's `resume`) and
//! `Receiver` (the stamp poll, the look at head, the lazy releases), both sides sleeping on the
//! real `wait_for`. The header words are loom atomics; the payload bytes are loom cells, so a
//! frame read before its stamp (or its head) was published is a causality failure.
//!
//! Each model follows the framed ends' call sequence (`ring/framed/{producer,consumer}.rs`):
//! - send: `room`, else wait for space (`Ring::wait_writable`, as `Producer::reserve` does);
//!   write the payload; `put_and_publish` (unbatched) or `put` ... `publish` (batched);
//! - receive: the producer-parked hint (release at once), `poll`; else `look`, else sleep on
//!   the data word with `look` as the recheck; after a frame, `consumed` (release when due).
//!
//! The consumer releases only when it must (`release_every` is the whole ring): when it looks at
//! the ring without finding a frame, and when the producer is parked. So the producer often
//! fills the ring to the byte, which leaves the previous lap's header where the next frame goes.

use super::{model, value, Data, Ring};
use crate::header::{Role, Word};
use crate::protocol::{ConsumerCursor, Stop};
use crate::ring::framed::link::{Mark, Receiver, Room, Sender, Words};
use crate::ring::framed::wire::{frame_size, max_frame_len_for};
use crate::sync::Ordering;
use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::thread;

/// A ring of two 16-byte frames.
pub(super) const N: u64 = 32;

/// The header words of a model ring: one loom atomic per 8-byte word, zeroed like fresh pages.
pub(super) struct ModelWords {
    words: Box<[AtomicU64]>,
    mask: u64,
}

impl ModelWords {
    fn new(capacity: u64) -> ModelWords {
        ModelWords { words: (0..capacity / 8).map(|_| AtomicU64::new(0)).collect(), mask: capacity - 1 }
    }

    fn word(&self, pos: u64) -> &AtomicU64 {
        &self.words[((pos & self.mask) >> 3) as usize]
    }
}

impl Words for ModelWords {
    fn load(&self, pos: u64, order: Ordering) -> u64 {
        self.word(pos).load(order)
    }

    fn store(&self, pos: u64, word: u64, order: Ordering) {
        self.word(pos).store(word, order);
    }
}

/// One model ring: header, header words, payload cells (also for `epoch.rs`).
pub(super) struct Framed {
    pub(super) ring: Ring,
    pub(super) words: ModelWords,
    pub(super) data: Data,
}

impl Framed {
    pub(super) fn new() -> Arc<Framed> {
        Framed::with_capacity(N)
    }

    /// A model ring of `capacity` bytes (a power of two).
    pub(super) fn with_capacity(capacity: u64) -> Arc<Framed> {
        Arc::new(Framed { ring: Ring::new(capacity, 0), words: ModelWords::new(capacity), data: Data::new(capacity) })
    }

    /// Waits (as the producer's blocking send does) until a frame of `size` bytes fits.
    fn room(&self, link: &Sender, tx: &mut crate::protocol::ProducerCursor, size: usize) {
        while let Room::Short(need) = link.room(tx, &self.words, size) {
            self.ring.wait_writable(tx, need).expect("the consumer is alive");
        }
    }

    /// Writes a one-byte payload `v` for the frame at the producer's head.
    pub(super) fn payload(&self, tx: &crate::protocol::ProducerCursor, v: u8) {
        self.data.write(tx.head() + 8, v);
    }

    /// Sends frame `k` (one byte, `value(k)`) as an unbatched `send` does: waits for room,
    /// writes the payload, then `put_and_publish`.
    pub(super) fn send(&self, link: &mut Sender, tx: &mut crate::protocol::ProducerCursor, k: u64) {
        self.room(link, tx, frame_size(1));
        self.payload(tx, value(k));
        link.put_and_publish(&self.ring, tx, &self.words, 1, Mark::Check);
    }

    /// A producer thread on `f` that sends frames `0..n` one at a time and stops (without
    /// closing).
    fn spawn_sender(f: &Arc<Framed>, n: u64) -> thread::JoinHandle<()> {
        let g = f.clone();
        thread::spawn(move || {
            let mut tx = g.ring.producer();
            let mut link = Sender::new(N as usize, 0);
            for k in 0..n {
                g.send(&mut link, &mut tx, k);
            }
        })
    }

    /// A producer about to die in the middle of frame 1: frame 0 sent in full, then room for
    /// frame 1 and its payload written, nothing else of it. Returns its cursor and its side of
    /// the hand-over, for the model to take frame 1 as far as the death it models.
    fn frame_1_written(&self) -> (crate::protocol::ProducerCursor, Sender) {
        let mut tx = self.ring.producer();
        let mut link = Sender::new(N as usize, 0);
        self.send(&mut link, &mut tx, 0);
        self.room(&link, &mut tx, frame_size(1));
        self.payload(&tx, value(1));
        (tx, link)
    }

    /// Receives one frame as `recv` does; `Ok(payload byte)`, or the stop.
    pub(super) fn recv(&self, link: &mut Receiver, rx: &mut ConsumerCursor) -> Result<u8, Stop> {
        let (len, size) = match self.fast(link, rx) {
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

    /// Receives frames `0..count` in order, each with its payload `value(k)`.
    fn recv_in_order(&self, link: &mut Receiver, rx: &mut ConsumerCursor, count: u64) {
        for k in 0..count {
            assert_eq!(self.recv(link, rx), Ok(value(k)), "frame {k}");
        }
    }

    /// The fast path of `recv`: the producer-parked hint, then the stamp poll.
    fn fast(&self, link: &mut Receiver, rx: &mut ConsumerCursor) -> Option<(usize, usize)> {
        if Receiver::producer_waits(&self.ring) {
            link.publish(&self.ring, rx);
        }
        link.poll(&self.ring, rx, &self.words)
    }
}

/// The consumer's side, lazy: it releases only when it must.
pub(super) fn receiver(rx: &ConsumerCursor) -> Receiver {
    Receiver::new(N as usize, max_frame_len_for(N as usize), N as usize, rx.tail())
}

/// Three one-byte frames, one publish each, through a ring that holds two: both sides sleep
/// (no spinning under loom), the producer on a full ring until the consumer looks for a frame
/// that is not there and releases, and when the ring was filled to the byte the consumer first
/// finds the header of the frame one lap back where it waits (the stamp must tell it apart).
/// Then the producer closes: the consumer gets every frame, in order, then `Closed`.
#[test]
fn stamped_frames_stream_with_both_sides_sleeping() {
    model("stamped_frames_stream_with_both_sides_sleeping", || {
        const FRAMES: u64 = 3;
        let f = Framed::new();
        let g = f.clone();
        let producer = thread::spawn(move || {
            let mut tx = g.ring.producer();
            let mut link = Sender::new(N as usize, 0);
            for k in 0..FRAMES {
                g.send(&mut link, &mut tx, k);
            }
            g.ring.close(Role::Producer);
        });
        let mut rx = f.ring.consumer();
        let mut link = receiver(&rx);
        f.recv_in_order(&mut link, &mut rx, FRAMES);
        assert_eq!(f.recv(&mut link, &mut rx), Err(Stop::Closed));
        producer.join().unwrap();
    });
}

/// Batches of two (`put`, `put`, `publish`): the second frame of a batch is stamped when it is
/// written, before the batch is published; the consumer must not take it before the first
/// frame's stamp (or head) says so.
#[test]
fn batched_frames_are_taken_only_after_the_batch_is_published() {
    model("batched_frames_are_taken_only_after_the_batch_is_published", || {
        const FRAMES: u64 = 4;
        let f = Framed::new();
        let g = f.clone();
        let producer = thread::spawn(move || {
            let mut tx = g.ring.producer();
            let mut link = Sender::new(N as usize, 0);
            for k in 0..FRAMES {
                if k % 2 == 0 {
                    // The whole batch must fit: room for two frames, as `rearm` keeps it.
                    while let Room::Short(_) = link.room(&tx, &g.words, 2 * frame_size(1)) {
                        g.ring.wait_writable(&mut tx, 2 * frame_size(1)).expect("the consumer is alive");
                    }
                }
                g.payload(&tx, value(k));
                link.put(&mut tx, &g.words, 1);
                if k % 2 == 1 {
                    link.publish(&g.ring, &mut tx, &g.words);
                }
            }
            g.ring.close(Role::Producer);
        });
        let mut rx = f.ring.consumer();
        let mut link = receiver(&rx);
        f.recv_in_order(&mut link, &mut rx, FRAMES);
        assert_eq!(f.recv(&mut link, &mut rx), Err(Stop::Closed));
        producer.join().unwrap();
    });
}

/// A producer that died with a batch written but never published (its second frame already
/// stamped), and a newcomer that resumes at the committed head with frames of the same size:
/// the consumer gets the newcomer's frames only, never the dead one's stamped frame (the
/// newcomer's clear mark replaces it before the newcomer publishes).
#[test]
fn a_newcomer_overwrites_a_dead_producers_unpublished_batch() {
    model("a_newcomer_overwrites_a_dead_producers_unpublished_batch", || {
        let f = Framed::new();
        {
            // The dead producer: two frames written (the ring is full), nothing published.
            let mut tx = f.ring.producer();
            let mut link = Sender::new(N as usize, 0);
            for k in 0..2 {
                f.payload(&tx, 100 + k);
                link.put(&mut tx, &f.words, 1);
            }
        }
        let g = f.clone();
        let newcomer = thread::spawn(move || {
            let mut tx = g.ring.producer(); // at the committed head: 0
            let mut link = Sender::new(N as usize, tx.head());
            for k in 0..2 {
                g.send(&mut link, &mut tx, k);
            }
            g.ring.close(Role::Producer);
        });
        let mut rx = f.ring.consumer();
        let mut link = receiver(&rx);
        f.recv_in_order(&mut link, &mut rx, 2);
        assert_eq!(f.recv(&mut link, &mut rx), Err(Stop::Closed));
        newcomer.join().unwrap();
    });
}

/// A consumer that took a frame by its stamp, then turns into a byte end (what
/// `FramedConsumer::into_inner` does: the cached head caught up with the cursor, the releases
/// stored), and the byte end's first read, which loads the published head. The producer
/// stamps a frame sent on its own before it stores head, so that head may still be behind the
/// byte end's cursor (by the last frame): the byte end must see nothing readable, not poison a
/// healthy ring, and the producer must accept the tail released past its published head.
#[test]
fn a_byte_end_ahead_of_the_published_head_sees_nothing_readable() {
    model("a_byte_end_ahead_of_the_published_head_sees_nothing_readable", || {
        let f = Framed::new();
        let producer = Framed::spawn_sender(&f, 2);
        let mut rx = f.ring.consumer();
        let mut link = receiver(&rx);
        // The first frame goes through the head (stamps are trusted after it); the second may
        // be taken by its stamp while the producer is between its last two stores.
        f.recv_in_order(&mut link, &mut rx, 2);
        rx.catch_up_head();
        link.publish(&f.ring, &mut rx);
        assert_eq!(rx.readable(&f.ring, 1), Ok(0), "the byte end's first look at the head");
        producer.join().unwrap();
        // The head has come: still nothing readable, and the ring is healthy on both sides.
        assert_eq!(rx.refresh(&f.ring), Ok(0));
        assert!(!f.ring.is_poisoned());
    });
}

/// A producer that dies between the stamp and the head store of a frame sent on its own (the
/// ring then full to the byte, so no clear mark after it), while the consumer may take that
/// frame by its stamp, and release it, or not yet; then a newcomer (`newcomer_goes_on_after`).
/// The consumer gets frames 0, 1, 2 in order, then the end of the stream.
#[test]
fn a_newcomer_goes_on_after_a_frame_stamped_above_the_head() {
    model("a_newcomer_goes_on_after_a_frame_stamped_above_the_head", || {
        newcomer_goes_on_after(N, 2, |g| {
            // The dead producer: frame 0 in full, frame 1 up to its stamp.
            let (tx, link) = g.frame_1_written();
            let p = tx.head();
            g.words.store(p, link.stamp().stamped(1, p), Ordering::Release);
        });
    });
}

/// A batch of two frames (the ring full) published while the consumer reads as a byte end does
/// (what `FramedConsumer::into_inner` leaves): it loads the published head, and once head
/// covers the batch it holds the bytes below it, the first frame's header word included, as a
/// `&[u8]` would. No store may reach them any more: the producer stamps the batch's first frame
/// before it stores head. (Stamped after head, as before header version 7, the stamp could
/// land between the two reads below; Miri saw it land in a byte consumer's grant.)
#[test]
fn nothing_below_the_head_changes_under_a_byte_end() {
    model("nothing_below_the_head_changes_under_a_byte_end", || {
        let f = Framed::new();
        let g = f.clone();
        let producer = thread::spawn(move || {
            let mut tx = g.ring.producer();
            let mut link = Sender::new(N as usize, 0);
            for k in 0..2 {
                g.payload(&tx, value(k));
                link.put(&mut tx, &g.words, 1);
            }
            link.publish(&g.ring, &mut tx, &g.words);
        });
        let mut rx = f.ring.consumer();
        // As a byte end waits for data: until head covers the batch.
        while rx.readable(&f.ring, 1) != Ok(N as usize) {
            thread::yield_now();
        }
        // Relaxed: as a plain read of a lent slice; the head's Acquire ordered the stores.
        let first = f.words.load(0, Ordering::Relaxed);
        thread::yield_now();
        assert_eq!(f.words.load(0, Ordering::Relaxed), first, "a header word below the head changed");
        producer.join().unwrap();
    });
}

/// A producer that dies between the stamp and the head store of a batch's publish: frame 0
/// sent on its own, then frames 1 and 2 as one batch, stamped and not covered by head, with the
/// clear mark after them (a 64-byte ring). The consumer may take frame 0 through the head and
/// then frames 1 and 2 by their stamps, and release them, or not yet; then a newcomer, which
/// must cover the whole batch (`newcomer_goes_on_after`). The consumer gets frames 0 to 3 in
/// order, then the end of the stream.
#[test]
fn a_newcomer_goes_on_after_a_batch_stamped_above_the_head() {
    model("a_newcomer_goes_on_after_a_batch_stamped_above_the_head", || {
        const CAP: u64 = 64;
        newcomer_goes_on_after(CAP, 3, |g| {
            // The dead producer: frame 0 in full, then a batch of frames 1 and 2 published up
            // to the stamp of its first frame.
            let mut tx = g.ring.producer();
            let mut link = Sender::new(CAP as usize, 0);
            g.send(&mut link, &mut tx, 0);
            for k in 1..3 {
                g.payload(&tx, value(k));
                link.put(&mut tx, &g.words, 1);
            }
            Sender::clear_after(&tx, &g.words);
            g.words.store(16, link.stamp().stamped(1, 16), Ordering::Release);
        });
    });
}

/// The take-over models above: on a `capacity`-byte ring, a producer that `die`s with frames
/// 0 to `next - 1` sent or stamped above the head, then a newcomer that attaches (at the
/// published head, or at the consumer's tail if that was released past it), covers what was
/// stamped above the head (`Sender::resume`), goes on at frame `next` (16 bytes a frame) and
/// closes. The consumer gets frames 0 to `next` in order, then `Closed`: nothing lost, nothing
/// twice, never poisoned.
fn newcomer_goes_on_after(capacity: u64, next: u64, die: impl FnOnce(&Framed) + Send + 'static) {
    let f = Framed::with_capacity(capacity);
    let g = f.clone();
    let dead_then_newcomer = thread::spawn(move || {
        die(&g);
        // The newcomer (the take-over itself is modelled in `takeover.rs`).
        let mut tx = g.ring.producer();
        // (It finds less or nothing to cover if the consumer released past the head: it
        // attached there.)
        Sender::resume(&g.ring, &mut tx, &g.words, max_frame_len_for(capacity as usize));
        assert_eq!(tx.head(), next * 16, "the newcomer goes on after frame {}", next - 1);
        let mut link = Sender::new(capacity as usize, tx.head());
        g.send(&mut link, &mut tx, next);
        g.ring.close(Role::Producer);
    });
    let mut rx = f.ring.consumer();
    let mut link = Receiver::new(capacity as usize, max_frame_len_for(capacity as usize), capacity as usize, rx.tail());
    f.recv_in_order(&mut link, &mut rx, next + 1);
    assert_eq!(f.recv(&mut link, &mut rx), Err(Stop::Closed));
    dead_then_newcomer.join().unwrap();
    assert!(!f.ring.is_poisoned());
}

/// A producer that publishes a batch (here of one frame) by head alone, as its byte end does
/// when it sleeps for room with frames pending (`Producer::reserve`): head covers the frame,
/// its header is the unstamped one for good, and the producer closes. The consumer, asleep or
/// not, takes that frame through the head after the first, then gets the end of the stream: a
/// frame below the head counts whether its stamp came or not, and nothing was read out of
/// order.
#[test]
fn a_frame_below_the_head_is_read_though_its_stamp_never_came() {
    model("a_frame_below_the_head_is_read_though_its_stamp_never_came", || {
        let f = Framed::new();
        let g = f.clone();
        let producer = thread::spawn(move || {
            // The second frame, published by head alone (the clear mark, then head): no stamp.
            let (mut tx, mut link) = g.frame_1_written();
            link.put(&mut tx, &g.words, 1);
            Sender::clear_after(&tx, &g.words);
            tx.store_head(&g.ring);
            g.ring.close(Role::Producer);
        });
        let mut rx = f.ring.consumer();
        let mut link = receiver(&rx);
        f.recv_in_order(&mut link, &mut rx, 2);
        assert_eq!(f.recv(&mut link, &mut rx), Err(Stop::Closed));
        producer.join().unwrap();
    });
}

/// The framed consumer's batch loop (`FramedConsumer`'s batched receive): after a frame taken
/// through the head, the next one is found by `Receiver::poll_within` alone (its stamp, within
/// the producer's room), with no look at head. Its payload is read right after that poll, so the
/// poll's Acquire (paired with the stamp's Release in `Sender::put_and_publish`) is all that
/// orders the payload write before the read.
#[test]
fn a_frame_found_within_a_batch_is_read_after_its_stamp() {
    model("a_frame_found_within_a_batch_is_read_after_its_stamp", || {
        let f = Framed::new();
        let producer = Framed::spawn_sender(&f, 2);
        let mut rx = f.ring.consumer();
        let mut link = receiver(&rx);
        // Frame 0 as `recv` takes it (through the head: stamps are not trusted before that).
        assert_eq!(f.recv(&mut link, &mut rx), Ok(value(0)));
        // Frame 1 as the batch loop looks for it: by its stamp, within the producer's room.
        let q = rx.tail();
        let bound = link.batch_bound(q, N as usize);
        let frame = loop {
            match link.poll_within(&f.ring, q, bound, &f.words) {
                Some(frame) => break frame,
                None => thread::yield_now(),
            }
        };
        assert_eq!(frame, (1, 16), "frame at {q}");
        assert_eq!(f.data.read(q + 8), value(1), "the payload stored before the stamp");
        producer.join().unwrap();
    });
}
