//! Framed messages: variable-size records that are always contiguous.
//!
//! [`Producer::into_framed`] and [`Consumer::into_framed`] turn the two ends of a byte ring
//! into a message queue. Because the ring's pages are mirrored, a frame never splits at the
//! wrap point: the producer writes each message in place, and the consumer gets each one as a
//! single `&[u8]` straight out of the ring ([`Frame`]), with no reassembly and no copy. A
//! frame's bytes go back to the producer once the [`Frame`] is dropped, with the consumer's
//! next release ([`docs::framing`](crate::docs::framing), "Releases").
//!
//! ```
//! let (tx, rx) = mirror_ring::channel(64 * 1024)?;
//! let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
//! let writer = std::thread::spawn(move || -> std::io::Result<()> {
//!     for i in 0..1000u32 {
//!         tx.send(&i.to_le_bytes()[..(i % 5) as usize])?; // 0 to 4 bytes each
//!     }
//!     Ok(()) // dropping tx flushes and closes the ring
//! });
//! let mut frames = 0u32;
//! while let Some(frame) = rx.recv()? {
//!     assert_eq!(frame.len(), (frames % 5) as usize);
//!     frames += 1;
//! } // each frame's bytes are released when it drops
//! writer.join().unwrap()?;
//! assert_eq!(frames, 1000);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//!
//! The wire format and the batching rules, for users: [`docs::framing`](crate::docs::framing).
//! Here: the two framed end types, built by `into_framed`; the format as pure functions
//! (`wire`), the sending side (`producer`) and the receiving side (`consumer`), which extend
//! the byte ends directly.

use super::{Consumer, Producer};
use link::{Receiver, RingWords, Sender};
use wire::{max_frame_len_for, misalignment, HEADER};

mod consumer;
pub(crate) mod link;
mod producer;
pub(crate) mod wire;

/// The consumer releases what it consumed once this many bytes are pending (or a quarter of a
/// smaller ring; see `link.rs`, "Releases").
const RELEASE_EVERY: usize = 64 * 1024;

pub use consumer::Frame;
pub use producer::FrameGrant;

impl Producer {
    /// Turns this producer into the sending end of a message queue: frames of any size up to
    /// [`max_frame_len`](FramedProducer::max_frame_len), each one contiguous in the ring. See
    /// [`docs::framing`](crate::docs::framing) for the wire format.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    /// tx.send(b"hello")?;
    /// assert_eq!(&*rx.recv()?.unwrap(), b"hello");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_framed(mut self) -> FramedProducer {
        let capacity = self.capacity();
        // SAFETY: view A of this ring, `capacity` bytes, mapped as long as `self` (moved into the
        // framed end with it) lives.
        let words = unsafe { RingWords::new(self.end.data.as_ptr(), capacity) };
        // (A forked copy has no header: it writes nothing, and its calls fail.)
        let mut begun = true;
        if let Some(hdr) = self.end.header() {
            // From here on this producer writes frames, with the clear mark after them: a
            // framed consumer may trust their stamps under a new epoch, from its first frame
            // on (past the alignment skip). The clear mark goes there first, where the room
            // reaches, by the consumer's cursor as it is now (a stale cache would leave the
            // word unmarked for nothing).
            let skip = misalignment(self.write_ptr()) as u64;
            let first = self.cur.head().wrapping_add(skip);
            let want = skip + HEADER as u64;
            if self.cur.writable(hdr, want as usize).is_ok_and(|free| free as u64 >= want) {
                Sender::begin(hdr, &words, first);
            } else {
                // The ring is full (or poisoned): the word there still holds unread bytes of
                // the lap before, raw bytes that may read as a stamp for that position. The
                // epoch begins only when the first frame claims its room (`FramedProducer::
                // begin`): until then the producer writes bytes, as far as anyone can tell.
                begun = false;
            }
        }
        let skip = misalignment(self.write_ptr());
        let head = self.cur.head();
        let mut framed = FramedProducer {
            max_len: max_frame_len_for(capacity),
            batch_bytes: capacity / 4,
            frames_left: 1,
            fast_until: head,
            link: Sender::new(capacity, head.wrapping_add(skip as u64)),
            words,
            inner: std::mem::ManuallyDrop::new(self),
            batch: 1,
            skip,
            begun,
            room_end: head,
        };
        framed.sync_room();
        framed
    }
}

impl Producer {
    /// See [`Producer::took_over`]: covers the complete frames stamped just above the head by
    /// a framed producer that died between a publish's stamp and its head store.
    pub(in crate::ring) fn cover_frame_stamped_above_head(&mut self) {
        let capacity = self.capacity();
        // SAFETY: view A of this ring, `capacity` bytes, mapped while `self` lives (this call).
        let words = unsafe { RingWords::new(self.end.data.as_ptr(), capacity) };
        if let Some(hdr) = self.end.header() {
            Sender::resume(hdr, &mut self.cur, &words, max_frame_len_for(capacity));
        }
    }
}

impl Consumer {
    /// Turns this consumer into the receiving end of a message queue (see
    /// [`Producer::into_framed`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    /// tx.send(&[])?; // an empty frame is a frame
    /// drop(tx);
    /// assert_eq!(rx.recv()?.map(|f| f.len()), Some(0));
    /// assert!(rx.recv()?.is_none()); // the producer is gone and every frame was read
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_framed(self) -> FramedConsumer {
        let capacity = self.capacity();
        let skip = misalignment(self.read_ptr());
        let max_len = max_frame_len_for(capacity);
        // SAFETY: as in `Producer::into_framed`.
        let words = unsafe { RingWords::new(self.end.data.as_ptr(), capacity) };
        FramedConsumer {
            link: Receiver::new(capacity, max_len, RELEASE_EVERY.min(capacity / 4), self.cur.tail()),
            words,
            batch_limit: capacity / 8,
            max_len,
            inner: self,
            skip,
            streak: 0,
        }
    }
}

/// The sending end of a framed ring: whole messages, each one contiguous in the ring.
///
/// Made by [`Producer::into_framed`]. [`send`](Self::send) copies a message in;
/// [`reserve`](Self::reserve) lends the space for one so it can be built in place. Dropping the
/// producer publishes every pending frame and closes the ring.
///
/// # Examples
///
/// ```
/// let (tx, rx) = mirror_ring::channel(1 << 16)?;
/// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
/// tx.set_batch(32); // up to 32 frames per cursor store
/// for word in ["alpha", "beta", "gamma"] {
///     tx.send(word.as_bytes())?;
/// }
/// tx.flush()?; // publish the pending frames now
/// assert_eq!(&*rx.try_recv()?.unwrap(), b"alpha");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct FramedProducer {
    /// Dropped by `Drop` after the pending frames are published (or taken by `into_inner`).
    inner: std::mem::ManuallyDrop<Producer>,
    /// The hand-over: stamps and the pending batch's first frame.
    link: Sender,
    words: RingWords,
    max_len: usize,
    /// As given to `set_batch` (1: publish every frame).
    batch: usize,
    /// With batching, publish once this many bytes are pending (a quarter of the ring).
    batch_bytes: usize,
    /// With batching, the frames still to go before the batch is published (the frame that
    /// brings this to zero publishes).
    frames_left: usize,
    /// With batching, the position up to which frames may be written without a further check:
    /// the free room known at the last check less the clear mark, cut at the end of the current
    /// batch (the head itself while the alignment skip is pending or no frame is pending; behind
    /// the head once it has moved on without batching).
    fast_until: u64,
    /// Bytes to skip before the first frame (0 unless converted at an unaligned position).
    skip: usize,
    /// Whether this producer's framing epoch has begun (`Header::begin_framing`). Not yet
    /// after a conversion on a full ring, where the word of the first frame's header held
    /// unread bytes of the lap before and could not be marked: then the epoch begins when the
    /// first frame claims its room, which reaches that word (`begin`).
    begun: bool,
    /// The fast paths' bound: a frame of `size` bytes fits at the head, with the clear mark
    /// after it, by the cached cursors, when `room_end - head >= size + 8` (the cached tail
    /// plus the capacity; the head itself, no room, while the skip is pending, the epoch has
    /// not begun or the cursor is poisoned). Kept by `sync_room`.
    room_end: u64,
}

/// The receiving end of a framed ring: whole messages, each lent as one contiguous slice
/// straight out of the ring.
///
/// Made by [`Consumer::into_framed`]. [`recv`](Self::recv) returns a [`Frame`], which derefs
/// to the message's bytes and, once dropped, gives them back to the producer with the next
/// release (see [`Frame`]).
///
/// # Examples
///
/// ```
/// let (tx, rx) = mirror_ring::channel(4096)?;
/// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
/// tx.send(b"one")?;
/// tx.send(b"two")?;
/// drop(tx);
/// let mut got = Vec::new();
/// while let Some(frame) = rx.recv()? {
///     got.push(frame.to_vec());
/// }
/// assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct FramedConsumer {
    inner: Consumer,
    /// The hand-over: stamps, the fast path's bound, the batched releases.
    link: Receiver,
    words: RingWords,
    /// Bytes after which `recv_batch` stops and releases.
    batch_limit: usize,
    max_len: usize,
    /// Bytes to skip before the first frame (0 unless converted at an unaligned position).
    skip: usize,
    /// Frames taken since the last receive that found none (each found at once, or in
    /// batches): a blocking receive that runs dry after a long run slips (`docs::framing`,
    /// "Which side sets the pace").
    streak: u64,
}

// The one hook the async ends (`ring::asynch`) need: the byte end underneath, to park on its
// waiter word. Read-only; the framed state stays this module's.
#[cfg(feature = "tokio")]
impl FramedProducer {
    pub(in crate::ring) fn byte_end(&self) -> &Producer {
        &self.inner
    }
}

#[cfg(feature = "tokio")]
impl FramedConsumer {
    pub(in crate::ring) fn byte_end(&self) -> &Consumer {
        &self.inner
    }
}

#[cfg(all(test, not(mirror_ring_loom)))]
mod tests {
    use super::wire::Stamp;
    use crate::RingOptions;
    use std::io::ErrorKind;
    use std::sync::atomic::Ordering;

    /// The slip's trigger (`consumer::SLIP_AFTER`): frames found stamped at once count up, a
    /// batch's frames too, and any receive that finds none (blocking or not, timed out or
    /// answered later) starts the count again.
    #[test]
    fn the_run_counts_frames_taken_at_once_and_a_miss_ends_it() {
        use super::consumer::SLIP_AFTER;
        let (tx, rx) = RingOptions::new().capacity(1 << 16).build().unwrap();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        let n = u64::from(SLIP_AFTER) + 4;
        for i in 0..n {
            tx.send(&i.to_le_bytes()).unwrap();
        }
        // The first frame after the conversion is taken through head, not by its stamp.
        for i in 0..n {
            assert_eq!(rx.recv().unwrap().unwrap()[..], i.to_le_bytes());
        }
        assert_eq!(rx.streak(), n - 1);
        let started = std::time::Instant::now();
        let err = rx.recv_timeout(std::time::Duration::from_millis(5)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "the slip outlived the deadline");
        assert_eq!(rx.streak(), 0);
        for i in 0..3u32 {
            tx.send(&i.to_le_bytes()).unwrap();
        }
        assert_eq!(rx.try_recv().unwrap().unwrap()[..], 0u32.to_le_bytes());
        assert_eq!(rx.try_recv_batch(|_| {}).unwrap(), 2);
        assert_eq!(rx.streak(), 3);
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
        assert_eq!(rx.streak(), 0);
    }

    /// Raw bytes before framing leave the cursors unaligned: both ends skip to the next
    /// multiple of 8, and the largest frame still fits.
    #[test]
    fn ends_converted_at_an_unaligned_position_agree() {
        for start in [0u64, 3, u64::MAX - 2] {
            let (mut tx, mut rx) = RingOptions::new().capacity(4096).start_position(start).build().unwrap();
            tx.try_write(b"raw").unwrap();
            let mut buf = [0; 3];
            rx.try_read(&mut buf).unwrap();
            let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
            for round in 0..5u8 {
                let msg = vec![round; if round == 2 { tx.max_frame_len() } else { round as usize * 5 }];
                tx.try_send(&msg).unwrap();
                let frame = rx.try_recv().unwrap().unwrap();
                assert_eq!(&*frame, &msg[..], "start {start} round {round}");
                assert_eq!(frame.as_ptr() as usize % 8, 0);
                drop(frame);
                // Nothing more: and that call hands the released bytes to the producer, which
                // needs all of them for the largest frame.
                assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
            }
            drop(tx);
            assert!(rx.try_recv().unwrap().is_none());
        }
    }

    /// Leaves at the producer's head what a producer that died between the stamp and the head
    /// store of a frame sent on its own leaves: the payload, the clear mark after it, the
    /// stamped header; head not moved. Returns the frame's position.
    fn stamp_above_head(tx: &super::FramedProducer, msg: &[u8]) -> u64 {
        use super::link::Words;
        use super::wire::{frame_size, CLEAR};
        let p = tx.inner.cur.head();
        // SAFETY: the free room at the head (the tests leave plenty), inside view A; nothing
        // else writes there.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), tx.words.at(p).add(8), msg.len()) };
        tx.words.store(p + frame_size(msg.len()) as u64, CLEAR, Ordering::Relaxed);
        tx.words.store(p, Stamp.stamped(msg.len(), p), Ordering::Release);
        p
    }

    /// A newcomer's producer: the byte end, re-attached to the header's cursors as a take-over
    /// does (the take-over itself is tested in `tests/restart.rs`).
    fn newcomer(tx: super::FramedProducer) -> super::FramedProducer {
        newcomer_writing(tx, &[], true)
    }

    /// [`newcomer`], which writes `raw` bytes before it turns framed; `took_over` false: a
    /// producer re-attached as a claim would attach it, not as a take-over.
    fn newcomer_writing(tx: super::FramedProducer, raw: &[u8], took_over: bool) -> super::FramedProducer {
        // The byte end as a death leaves it: nothing published, the framing epoch not ended.
        let mut dead = std::mem::ManuallyDrop::new(tx);
        // SAFETY: `dead` is never used or dropped again.
        let mut bytes = unsafe { std::mem::ManuallyDrop::take(&mut dead.inner) };
        let hdr = bytes.end.header().unwrap();
        bytes.cur = crate::protocol::ProducerCursor::attach(hdr, bytes.capacity() as u64).unwrap();
        if took_over {
            bytes = bytes.took_over();
        }
        if !raw.is_empty() {
            bytes.try_write(raw).unwrap();
        }
        bytes.into_framed()
    }

    /// A framed ring of the smallest capacity (one page) where frame "zero" went through head
    /// and frame "one" is stamped above it ([`stamp_above_head`]), taken by the consumer if
    /// `taken`. Returns the ends and the position of "one".
    fn one_stamped_above_head(taken: bool) -> (super::FramedProducer, super::FramedConsumer, u64) {
        let (tx, rx) = crate::channel(4096).unwrap();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        tx.send(b"zero").unwrap();
        // Through head (the first frame after the conversion): head 16 is loaded.
        assert_eq!(&*rx.recv().unwrap().unwrap(), b"zero");
        let p = stamp_above_head(&tx, b"one");
        if taken {
            assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"one");
        }
        (tx, rx, p)
    }

    /// The three ways a producer that died between a frame's stamp and its head store can
    /// leave the consumer: the frame not taken, taken, taken and released past the published
    /// head. Per way: its name, the framed ends (the producer to be replaced by a newcomer),
    /// the frame's position, and whether the consumer took it.
    fn died_between_stamp_and_head() -> Vec<(String, super::FramedProducer, super::FramedConsumer, u64, bool)> {
        [(false, false), (true, false), (true, true)]
            .into_iter()
            .map(|(taken, released)| {
                let case = format!("taken {taken}, released {released}");
                let (tx, mut rx, p) = one_stamped_above_head(taken);
                if released {
                    // Nothing more: the consumer releases its cursor, past the published head.
                    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock, "{case}");
                    let hdr = tx.inner.end.header().unwrap();
                    assert_eq!(hdr.tail.load(Ordering::Relaxed), p + 16, "{case}");
                    assert_eq!(hdr.head.load(Ordering::Relaxed), p, "{case}");
                }
                (case, tx, rx, p, taken)
            })
            .collect()
    }

    /// A producer that died between a frame's stamp and its head store left a complete frame
    /// above the head, which the consumer may have taken (and released) or not: a newcomer
    /// goes on after it in every case, and the consumer gets every frame once, in order,
    /// never a poisoned ring.
    #[test]
    fn a_newcomer_goes_on_after_a_frame_stamped_above_the_head() {
        for (case, tx, mut rx, p, taken) in died_between_stamp_and_head() {
            let mut tx = newcomer(tx);
            assert_eq!(tx.inner.cur.head(), p + 16, "{case}: the newcomer starts after the frame");
            tx.send(b"two").unwrap();
            if !taken {
                assert_eq!(&*rx.recv().unwrap().unwrap(), b"one", "{case}");
            }
            assert_eq!(&*rx.recv().unwrap().unwrap(), b"two", "{case}");
            drop(tx);
            assert!(rx.recv().unwrap().is_none(), "{case}");
        }
    }

    /// A newcomer that closes without sending anything, after a predecessor died between a
    /// frame's stamp and its head store: a clean end of the stream in every case (its close
    /// must not leave the head behind the consumer).
    #[test]
    fn a_newcomer_that_sends_nothing_ends_the_stream_cleanly() {
        for (case, tx, mut rx, _, taken) in died_between_stamp_and_head() {
            drop(newcomer(tx));
            if !taken {
                assert_eq!(&*rx.recv().unwrap().unwrap(), b"one", "{case}");
            }
            assert!(rx.recv().unwrap().is_none(), "{case}");
        }
    }

    /// The consumer's look at a head behind its cursor (frames taken by their stamps before
    /// their head came, or a producer that never stores head): nothing readable, no poison,
    /// the releases still go out; a head that moves back behind the last one loaded poisons.
    #[test]
    fn a_head_behind_the_cursor_shows_nothing_and_one_moving_back_poisons() {
        use super::link::Words;
        let (tx, mut rx, p) = one_stamped_above_head(true);
        // Neither "not yet" nor a header where the consumer waits: it looks at head, which is
        // behind its cursor.
        tx.words.store(p + 16, u64::MAX, Ordering::Relaxed);
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
        let hdr = tx.inner.end.header().unwrap();
        assert_eq!((hdr.head.load(Ordering::Relaxed), hdr.tail.load(Ordering::Relaxed)), (p, p + 16));
        assert!(!hdr.is_poisoned());
        // Behind the head loaded before: impossible for any producer.
        hdr.head.store(p - 8, Ordering::Relaxed);
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::InvalidData);
        assert!(hdr.is_poisoned());
    }

    /// A producer that closes with its head behind a frame it stamped (and the consumer took)
    /// did not close cleanly: the end of the stream is `InvalidData`, not `None`.
    #[test]
    fn a_close_with_the_head_behind_a_frame_taken_is_corrupt() {
        let (tx, mut rx, _) = one_stamped_above_head(true);
        drop(tx);
        assert_eq!(rx.recv().unwrap_err().kind(), ErrorKind::InvalidData);
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::InvalidData);
    }

    /// The newcomer covers only what a predecessor's frame sent on its own can leave above the
    /// head: the stamped header of that position, of a valid length, inside the room, with the
    /// clear mark (or a header one lap back) after it; nothing else, only at a take-over (not at
    /// a later `into_framed`, nor for a producer that claimed its role), and only when the dead
    /// one was writing frames (its framing epoch not ended).
    #[test]
    fn a_newcomer_covers_nothing_else() {
        use super::link::Words;
        use super::wire::RESTAMP;
        type Spoil = fn(&super::FramedProducer, u64);
        let cases: [(&str, Spoil); 7] = [
            ("unstamped header", |tx, p| tx.words.store(p, Stamp.stamped(3, p) ^ RESTAMP, Ordering::Relaxed)),
            ("stamped for the position one lap back", |tx, p| {
                tx.words.store(p, Stamp.stamped(3, p.wrapping_sub(tx.capacity() as u64)), Ordering::Relaxed)
            }),
            ("no clear mark after it", |tx, p| tx.words.store(p + 16, u64::MAX, Ordering::Relaxed)),
            ("longer than the largest frame", |tx, p| {
                tx.words.store(p, Stamp.stamped(tx.max_frame_len() + 1, p), Ordering::Relaxed)
            }),
            // The room is the ring less "zero" (16 bytes); this frame takes 8 more.
            ("longer than the free room", |tx, p| {
                tx.words.store(p, Stamp.stamped(tx.capacity() - 16, p), Ordering::Relaxed)
            }),
            ("not a take-over", |_, _| {}),
            ("a predecessor that wrote bytes", |tx, _| tx.inner.end.header().unwrap().end_framing()),
        ];
        for (what, spoil) in cases {
            // The consumer (kept) holds "zero" unreleased: 16 bytes of the room are taken.
            let (tx, _rx, p) = one_stamped_above_head(false);
            spoil(&tx, p);
            let tx = newcomer_writing(tx, &[], what != "not a take-over");
            assert_eq!(tx.inner.cur.head(), p, "{what}: nothing covered");
        }
        // The cover comes with the take-over, before the newcomer can lend any room: bytes it
        // writes next go after the frame, which the consumer may hold.
        let (tx, _rx, p) = one_stamped_above_head(false);
        let tx = newcomer_writing(tx, &[7; 8], true);
        assert_eq!(tx.inner.cur.head(), p + 16 + 8, "covered, then written after it");
    }

    /// A consumer with nothing to read (the word at its cursor says "not yet") still learns at
    /// once that the producer found the ring poisoned: `try_recv` fails, not `WouldBlock`.
    #[test]
    fn an_idle_consumer_sees_a_poison_the_producer_found() {
        let (tx, rx) = crate::channel(4096).unwrap();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        tx.try_send(b"one").unwrap();
        drop(rx.try_recv().unwrap().unwrap());
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
        // An impossible tail (past everything published), which the producer finds when it
        // next needs room: it poisons the ring.
        let hdr = tx.inner.end.header().unwrap();
        hdr.tail.store(hdr.head.load(Ordering::Relaxed) + 8, Ordering::Relaxed);
        assert_eq!(tx.try_send(&vec![0; tx.max_frame_len()]).unwrap_err().kind(), ErrorKind::InvalidData);
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::InvalidData);
    }

    /// A producer that found an impossible consumer cursor sends nothing more, not even a frame
    /// its cached cursors still show room for.
    #[test]
    fn a_producer_that_found_the_ring_poisoned_sends_nothing_more() {
        let (tx, rx) = crate::channel(4096).unwrap();
        let (mut tx, _rx) = (tx.into_framed(), rx.into_framed());
        tx.try_send(b"one").unwrap();
        let hdr = tx.inner.end.header().unwrap();
        hdr.tail.store(hdr.head.load(Ordering::Relaxed) + 8, Ordering::Relaxed);
        assert_eq!(tx.try_send(&vec![0; tx.max_frame_len()]).unwrap_err().kind(), ErrorKind::InvalidData);
        assert_eq!(tx.try_send(b"x").unwrap_err().kind(), ErrorKind::InvalidData);
        tx.set_batch(4);
        assert_eq!(tx.try_send(b"x").unwrap_err().kind(), ErrorKind::InvalidData);
    }

    #[test]
    fn a_partial_frame_after_close_is_corrupt() {
        let (mut tx, rx) = crate::channel(4096).unwrap();
        // A producer that publishes half a header and closes.
        tx.try_write(&Stamp.stamped(5, 0).to_le_bytes()[..4]).unwrap();
        drop(tx);
        let mut rx = rx.into_framed();
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::InvalidData);
        assert_eq!(rx.recv().unwrap_err().kind(), ErrorKind::InvalidData);
    }

    /// Frames written through the byte API (`docs::framing`): whole frames, with unstamped
    /// headers as documented or stamped ones, arrive whole, taken through head; no stamp from
    /// a byte producer is trusted (it writes no clear mark, and its epoch is not a framing
    /// one), so a header alone below the byte cursor, stamped or not, is part of a frame:
    /// corruption.
    #[test]
    fn frames_written_through_the_byte_api_need_unstamped_headers() {
        use super::wire::RESTAMP;
        let frame = |len: usize, p: u64, stamped: bool, fill: u8| {
            let word = Stamp.stamped(len, p) ^ if stamped { 0 } else { RESTAMP };
            let mut f = word.to_le_bytes().to_vec();
            f.resize(8 + len, fill);
            f
        };
        // Whole frames, `stamped` or not, arrive whole; then the next frame's header alone,
        // stamped, and what the consumer makes of it.
        for stamped in [false, true] {
            let (mut tx, rx) = crate::channel(4096).unwrap();
            let mut rx = rx.into_framed();
            for (i, p) in [0u64, 16].into_iter().enumerate() {
                let fill = i as u8 + 1;
                tx.try_write(&frame(8, p, stamped, fill)).unwrap();
                assert_eq!(&*rx.try_recv().unwrap().unwrap(), &[fill; 8]);
                assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
            }
            tx.try_write(&frame(8, 32, true, 3)[..8]).unwrap();
            // Not trusted: below the cursor and not a whole frame.
            assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::InvalidData, "stamped {stamped}");
        }
    }

    /// A batching producer whose blocking `reserve` waited (publishing head first: the
    /// pending frame "a" goes out) and whose grant was then dropped; the consumer has taken
    /// both frames and released them. Returns the ends. (The sizes are those of a 4 KiB ring,
    /// scaled to the ring's capacity; "a" stays small.)
    fn after_a_dropped_grant_that_waited() -> (super::FramedProducer, super::FramedConsumer) {
        let (tx, rx) = crate::channel(4096).unwrap();
        let k = tx.capacity() / 4096;
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        tx.send(&vec![1; 2000 * k]).unwrap();
        tx.set_batch(8);
        tx.send(&[2; 16]).unwrap(); // "a": pending, unstamped
        let waits = tx.inner.stats_handle();
        std::thread::scope(|s| {
            let rx = &mut rx;
            s.spawn(move || {
                let (mut got, deadline) = (Vec::new(), std::time::Instant::now() + std::time::Duration::from_secs(10));
                // Not before `reserve` has found the room short: a release of the first frame
                // before it looks would give it the room without a wait (and "a" would stay
                // pending).
                while waits.get().spins == 0 {
                    assert!(std::time::Instant::now() < deadline, "reserve never waited");
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                // Until "a" is taken, then one more look: that answer releases both frames.
                loop {
                    match rx.try_recv() {
                        Ok(Some(f)) => got.push(f.len()),
                        Err(e) if e.kind() == ErrorKind::WouldBlock && got.len() == 2 => break,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            assert!(std::time::Instant::now() < deadline, "the wait never published");
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                        other => panic!("{:?}", other.map(|f| f.map(|f| f.len()))),
                    }
                }
                assert_eq!(got, [2000 * k, 16]);
            });
            drop(tx.reserve(3000 * k).unwrap());
        });
        assert_eq!(tx.inner.cur.unpublished(), 0);
        (tx, rx)
    }

    /// After a dropped grant whose wait published the batch, the next frame opens a new batch:
    /// a later publish stamps that frame, not the old one's position (which by then lies inside
    /// the payload of a frame one lap on).
    #[test]
    fn a_dropped_grant_after_a_wait_leaves_later_frames_whole() {
        let (mut tx, mut rx) = after_a_dropped_grant_that_waited();
        let cap = tx.capacity();
        tx.send(&[3; 100]).unwrap();
        // Over the slot of "a"'s header, one lap on; completes the batch's bytes. (Its frame
        // takes the ring less the 112 bytes of the one before and 8.)
        tx.send(&vec![9; cap - 128]).unwrap();
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), &[3; 100]);
        let big = rx.try_recv().unwrap().unwrap();
        let bad = big.iter().filter(|&&b| b != 9).count();
        assert_eq!(bad, 0, "{bad} payload bytes overwritten");
    }

    /// ... and the consumer cannot take that frame above the published head, so its release
    /// never passes the head (which the producer would take for corruption).
    #[test]
    fn a_dropped_grant_after_a_wait_cannot_poison_an_honest_ring() {
        let (mut tx, mut rx) = after_a_dropped_grant_that_waited();
        let cap = tx.capacity();
        tx.send(&[3; 100]).unwrap();
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
        tx.try_send(&vec![4; cap - 136]).unwrap();
        tx.flush().unwrap();
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), &[3; 100]);
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), &vec![4; cap - 136][..]);
    }

    /// A dropped frame's bytes reach a producer waiting for room with the consumer's next
    /// call, not at the drop (`docs::framing`, "Releases"): the producer times out until that
    /// call, and goes on right after it.
    #[test]
    fn a_dropped_frame_reaches_a_waiting_producer_at_the_next_call() {
        let (tx, rx) = crate::channel(4096).unwrap();
        // The sizes of a 4 KiB ring, scaled to the ring's capacity: the dropped frame stays
        // under the quarter of the ring that the consumer releases on its own.
        let k = tx.capacity() / 4096;
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        tx.send(&vec![1; 1000 * k]).unwrap();
        tx.send(&vec![2; 3000 * k]).unwrap();
        drop(rx.recv().unwrap().unwrap());
        let wait = std::time::Duration::from_millis(30);
        let third = vec![3; 1000 * k];
        assert_eq!(tx.send_timeout(&third, wait).unwrap_err().kind(), ErrorKind::TimedOut);
        // The consumer's next call hands the room over.
        assert_eq!(rx.try_recv().unwrap().unwrap().len(), 3000 * k);
        tx.send_timeout(&third, wait).unwrap();
    }

    /// A message too long for the ring fails with `InvalidInput`, and the frames `set_batch`
    /// held back go out with that call, as with any other failure (`docs::framing`).
    #[test]
    fn a_too_long_message_publishes_the_frames_held_back() {
        let (tx, rx) = crate::channel(4096).unwrap();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        tx.set_batch(8);
        // Longer than the ring itself, as 5000 bytes are for a 4 KiB one.
        let too_long = vec![0; tx.capacity() + 904];
        for send_batch in [false, true] {
            tx.send(b"p1").unwrap();
            assert_ne!(tx.inner.cur.unpublished(), 0);
            let e = if send_batch {
                tx.send_batch(std::slice::from_ref(&too_long)).unwrap_err()
            } else {
                tx.send(&too_long).unwrap_err()
            };
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert_eq!(tx.inner.cur.unpublished(), 0, "send_batch {send_batch}: held back");
            assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"p1");
        }
    }

    /// Stamps a hostile frame of `len` bytes (payload `fill`) at `p` without moving head, as a
    /// producer may: the consumer can take it by its stamp.
    fn forge_stamped(tx: &super::FramedProducer, p: u64, len: usize, fill: u8) {
        // SAFETY: the tests aim only inside the ring's two views (`at` masks the position).
        unsafe { std::ptr::write_bytes(tx.words.at(p).add(8), fill, len) };
        forge_header(tx, p, len);
    }

    /// Only the stamped header of a hostile `len`-byte frame at `p`.
    fn forge_header(tx: &super::FramedProducer, p: u64, len: usize) {
        use super::link::Words;
        tx.words.store(p, Stamp.stamped(len, p), Ordering::Release);
    }

    /// A batch takes at most its limit (an eighth of the ring) past its first frame, however
    /// the frames come: a first frame larger than the limit ends the call, and so does a
    /// frame taken through head that ends past the bound. Every frame still arrives, in order.
    #[test]
    fn a_batch_stops_at_its_limit() {
        use super::wire::frame_size;
        // 64 KiB: a limit of 8 KiB, 1000-byte frames; the smallest ring (one page; 4 KiB: a
        // limit of 512): a first frame 88 bytes over the limit (600), then 8-byte ones.
        for (cap, large_first) in [(1usize << 16, false), (4096, true)] {
            let (tx, rx) = crate::channel(cap).unwrap();
            let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
            let (limit, mut next) = (rx.batch_limit, 0);
            let sizes: Vec<usize> =
                if large_first { [limit + 88].into_iter().chain([8; 20]).collect() } else { vec![1000; 60] };
            for (i, &len) in sizes.iter().enumerate() {
                tx.send(&vec![i as u8; len]).unwrap();
            }
            while next < sizes.len() {
                let mut bytes = 0;
                let got = rx
                    .try_recv_batch(|f| {
                        assert_eq!(f.len(), sizes[next], "cap {cap}: frame {next}");
                        assert!(f.iter().all(|&b| b == next as u8), "cap {cap}: frame {next}");
                        bytes += frame_size(f.len());
                        next += 1;
                    })
                    .unwrap();
                assert!(got >= 1);
                let last = frame_size(sizes[next - 1]);
                assert!(bytes - last < limit, "cap {cap}: one batch took {got} frames, {bytes} bytes");
            }
            assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
        }
    }

    /// A hostile producer stamps frames past its room, the last one reaching over bytes the
    /// consumer has not released: one batch takes only what its bound allows, and never a
    /// frame outside the producer's room.
    #[test]
    fn a_batch_takes_no_frame_outside_the_producers_room() {
        let (tx, rx) = crate::channel(4096).unwrap();
        let cap = tx.capacity();
        // The frames of a 4 KiB ring (1000 bytes), scaled to the ring's capacity.
        let len = 1000 * (cap / 4096);
        let size = len as u64 + 8;
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        tx.send(b"zero").unwrap();
        // Through head; the consumer's cursor is at 16, with nothing released yet.
        drop(rx.recv().unwrap().unwrap());
        tx.send(&vec![0xAA; len]).unwrap();
        // At 4 KiB: 1024, 2032, 3040.
        for i in 1..=3 {
            forge_stamped(&tx, 16 + i * size, len, 0xBB);
        }
        // At 4 KiB at 4048; its frame ends at 5056, past the released tail (0) plus the ring:
        // over "zero" and A.
        let last = 16 + 4 * size;
        assert!(last + size > cap as u64);
        forge_header(&tx, last, len);
        let base = tx.words.at(0) as usize;
        let mut seen = Vec::new();
        let got = rx.try_recv_batch(|f| seen.push((f.as_ptr() as usize - base, f.len(), f[0]))).unwrap();
        assert_eq!(got, 1, "{seen:?}");
        assert_eq!(seen, [(24, len, 0xAA)]);
    }

    /// A hostile producer that stamps the next lap's frame each time the consumer passes
    /// cannot hold a timed batch call: it returns after its limit, and the header's cursors
    /// stay ones a newcomer can resume from.
    #[test]
    fn a_producer_restamping_each_lap_cannot_hold_a_batch() {
        let (tx, rx) = crate::channel(4096).unwrap();
        let cap = tx.capacity();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        // A frame filling the ring.
        tx.send(&vec![1; cap - 8]).unwrap();
        let mut lap = 0u64;
        let started = std::time::Instant::now();
        let got = rx
            .recv_batch_timeout(std::time::Duration::from_millis(1), |_| {
                // The hostile producer's store, made while the consumer reads: the header only
                // (the payload is the slice this closure was lent, which nothing may write to
                // while it is borrowed; Miri flagged the test's own write there).
                lap += 1;
                if lap < 100_000 {
                    forge_header(&tx, lap * cap as u64, cap - 8);
                }
            })
            .unwrap();
        assert_eq!(got, 1);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let hdr = tx.inner.end.header().unwrap();
        let (head, tail) = (hdr.head.load(Ordering::Relaxed), hdr.tail.load(Ordering::Relaxed));
        assert_eq!((head, tail), (cap as u64, cap as u64));
        assert!(crate::header::resume_at(head, tail, cap as u64).is_some());
    }

    /// The async `recv` hands out the frame its readiness check found, without a second look
    /// at the ring: a producer that takes the stamp back at that moment cannot turn the
    /// receive into a `WouldBlock`, which `recv` never answers.
    #[test]
    #[cfg(feature = "tokio")]
    fn an_async_recv_never_answers_would_block() {
        use std::future::Future;
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        use std::task::{Context, Poll, Wake, Waker};
        struct Noop;
        impl Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        let (tx, rx) = crate::channel(4096).unwrap();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        tx.send(b"zero").unwrap();
        // Through head: from here the consumer takes frames by their stamps.
        drop(rx.recv().unwrap().unwrap());
        let mut rx = rx.into_async().unwrap();
        let p = tx.inner.cur.head();
        forge_stamped(&tx, p, 5, 7);
        /// The producer's view of the ring, for the hostile thread.
        struct Hostile(super::RingWords);
        // SAFETY: the words are atomics in a mapping that outlives the scope (`tx` is kept).
        unsafe impl Send for Hostile {}
        let (stop, words) = (&AtomicBool::new(false), Hostile(tx.words));
        std::thread::scope(|s| {
            // The hostile producer: the stamp of a 5-byte frame at `p`, then the clear mark,
            // over and over; head never moves.
            s.spawn(move || {
                use super::link::Words;
                use super::wire::CLEAR;
                let Hostile(words) = words;
                while !stop.load(Ordering::Relaxed) {
                    words.store(p, Stamp.stamped(5, p), Ordering::Release);
                    words.store(p, CLEAR, Ordering::Relaxed);
                }
            });
            let waker = Waker::from(Arc::new(Noop));
            let mut cx = Context::from_waker(&waker);
            let mut found = 0;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while std::time::Instant::now() < deadline {
                let mut recv = std::pin::pin!(rx.recv());
                let result = loop {
                    if let Poll::Ready(r) = recv.as_mut().poll(&mut cx) {
                        break r;
                    }
                };
                match result {
                    // Not released: the next receive finds the same frame (or its absence).
                    Ok(Some(frame)) => {
                        assert_eq!(&*frame, &[7; 5]);
                        std::mem::forget(frame);
                        found += 1;
                    }
                    other => {
                        stop.store(true, Ordering::Relaxed);
                        panic!("after {found} frames: {:?}", other.map(|f| f.map(|f| f.len())));
                    }
                }
            }
            stop.store(true, Ordering::Relaxed);
            assert!(found > 0);
        });
    }

    /// The consumer's cursor may not pass what the producer has published, even where the
    /// producer has written further (frames `set_batch` holds back): a tail in the unpublished
    /// frames poisons the producer at its next look at the tail.
    #[test]
    fn a_tail_in_the_frames_held_back_poisons_the_producer() {
        let (tx, _rx) = crate::channel(4096).unwrap();
        let mut tx = tx.into_framed();
        // Frames of 112 bytes in a 4 KiB ring, scaled to the ring's capacity.
        let size = 112 * (tx.capacity() / 4096);
        let msg = vec![7; size - 8];
        // 30 frames, published one by one; then up to 6 held back (under a quarter of the
        // ring), until the room runs out and the tail is loaded.
        for _ in 0..30 {
            tx.try_send(&msg).unwrap();
        }
        let published = tx.inner.cur.head();
        tx.set_batch(1000);
        for _ in 0..3 {
            tx.try_send(&msg).unwrap();
        }
        assert_eq!(tx.inner.cur.unpublished(), 3 * size, "held back");
        // A consumer that claims to have read into frames nobody published.
        tx.inner.end.header().unwrap().tail.store(published + size as u64, Ordering::Release);
        let mut sent = 33;
        let e = loop {
            match tx.try_send(&msg) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 100, "the room never ran out");
        };
        assert_eq!(e.kind(), ErrorKind::InvalidData, "after {sent} frames");
        assert!(tx.inner.end.header().unwrap().is_poisoned());
    }

    /// The newcomer never covers a frame larger than the free room, even one that passes every
    /// other check: a whole-ring frame, whose own header is the word after it and reads as the
    /// header one lap back.
    #[test]
    fn a_newcomer_covers_no_frame_larger_than_the_room() {
        // The consumer (kept) holds "zero" unreleased: the room is 16 bytes short of the ring.
        let (tx, _rx, p) = one_stamped_above_head(false);
        forge_header(&tx, p, tx.capacity() - 8);
        let tx = newcomer(tx);
        assert_eq!(tx.inner.cur.head(), p, "nothing covered");
        assert_eq!(tx.inner.end.header().unwrap().head.load(Ordering::Acquire), p);
    }

    /// A frame that would fill the ring to the byte leaves no clear mark after it: the word
    /// there must then be a header of this stream one lap back. Raw bytes written before the
    /// conversion and not yet released are not: such a frame waits for 8 more bytes, so the
    /// mark goes after it. (Raw bytes that read as the stamped header of that position would
    /// otherwise be taken for a frame.)
    #[test]
    fn a_frame_filling_the_ring_waits_while_raw_bytes_before_it_are_unreleased() {
        use std::io::Read;
        let (mut tx, mut rx) = crate::channel(4096).unwrap();
        let cap = tx.capacity();
        // 8 raw bytes that read as the stamped header of an empty frame one ring on.
        tx.try_write(&Stamp.stamped(0, cap as u64).to_le_bytes()).unwrap();
        let mut tx = tx.into_framed();
        // With the raw bytes, it fills the ring to the byte.
        let msg = vec![1; cap - 16];
        assert_eq!(tx.try_send(&msg).unwrap_err().kind(), ErrorKind::WouldBlock);
        let mut raw = [0u8; 8];
        rx.read_exact(&mut raw).unwrap();
        let mut rx = rx.into_framed();
        tx.try_send(&msg).unwrap();
        assert_eq!(rx.try_recv().unwrap().unwrap().len(), cap - 16);
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
    }
}
