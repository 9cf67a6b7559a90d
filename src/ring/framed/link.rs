//! The hand-over of frames between the two sides: what each side stores and loads, in which
//! order, to pass a frame on without the consumer loading the producer's cursor per message.
//! Written over any storage of header words ([`Words`]): the ring's mapped pages for the
//! framed ends, loom's atomics in the models (`loom-tests/frames.rs`), so the models check this
//! code itself.
//!
//! # The producer ([`Sender`])
//!
//! A frame at position `p` sent on its own ([`Sender::put_and_publish`], room checked first
//! with [`Sender::room`]):
//!
//! 1. the payload (the caller writes it);
//! 2. the clear mark after the frame, where the next frame's header will go (a Relaxed store,
//!    or one store with a short payload), unless the frame filled the ring to the byte: the
//!    word there is then the header of the consumer's oldest unreleased frame, exactly one lap
//!    old, which the stamp tells apart (rings of up to 4 GiB; larger ones always keep the 8
//!    bytes for the mark; so does a frame whose word after it does not read as "not yet",
//!    [`Sender::room`]);
//! 3. the stamped header word at `p` (see `wire::Stamp` for the word), Release: what the
//!    consumer polls, and the only store to that word;
//! 4. head, Release (the commit: what the byte API, a closing consumer and a newcomer see);
//! 5. the publisher's half of the barrier pair, then the consumer's waiter flag (`notify`).
//!
//! So for a moment a frame may be stamped and not yet below the head, and the consumer may
//! take it (and even release it) before head comes: its cursor, and the tail it stores, may
//! be ahead of the published head, by the frames of one publish. Everything that reads the
//! cursors allows that (`header::resume_at`, `ConsumerCursor::refresh`; the producer itself
//! never loads the tail between the two stores, so `ProducerCursor::refresh` keeps its
//! bound). A producer that dies between steps 3 and 4 leaves a complete frame above the head:
//! a newcomer covers it before it writes ([`Sender::resume`]), since the consumer may have
//! taken it.
//!
//! A batch (frames held back by `set_batch`, `send_batch`; [`Sender::put`] per frame, then
//! [`Sender::publish`]) is published in the same order, but its frames are written before
//! anything is published:
//!
//! 1. per frame, the payload, then the header word: *unstamped* for the batch's first frame,
//!    *stamped* for the others (Relaxed);
//! 2. at the publish, the clear mark after the last frame, as above;
//! 3. the stamp of the batch's first frame, Release;
//! 4. head, Release;
//! 5. the wake-up check, as above.
//!
//! No consumer can reach the batch's later frames before it has passed the first, which is
//! stamped last. A producer that dies between steps 3 and 4 leaves the whole batch stamped
//! above the head, and a newcomer covers all of it ([`Sender::resume`]).
//!
//! **Nothing is stored below the head.** The stamp is the last store to a frame's bytes, and it
//! comes before head: once head covers a frame, the byte API may lend it (a consumer turned
//! into bytes holds the header word in a `&[u8]`), and a store there would change bytes a
//! reference covers. (A batch used to be stamped after its head; the Miri review of
//! 2026-12-01 caught the stamp landing in a byte consumer's grant.) The byte end's sleep
//! (`Producer::reserve`) publishes head over pending frames without their stamp: the first
//! header of those stays unstamped for good, and the consumer takes it through the head; the
//! frames written after it start a new batch.
//!
//! # The consumer ([`Receiver`])
//!
//! [`Receiver::poll_word`] loads the header word at its cursor with Acquire: a stamped header for
//! exactly that position, whose frame lies within the producer's room, is a frame (the Acquire
//! pairs with the stamp's Release store, so the payload is visible). It loads nothing else per
//! frame. It loads no word above the head at all until it trusts stamps (below), since until
//! then the producer may be writing bytes there with plain stores; it looks at head instead.
//!
//! Otherwise [`Receiver::look`] decides, and it is the only place that reads the producer's
//! cursor: the clear mark or a header from one lap back means "not yet" while the producer has
//! not closed (no load of head, so a consumer that has caught up spins on the data line
//! only); anything else sends it to the published head (Acquire, pairing with the head's
//! Release store). Below the head every frame has been written, so the word there must be this
//! position's header, stamped or not (the byte end's sleep publishes a batch's unstamped first
//! frame), or the ring is poisoned.
//! A head behind the cursor shows nothing (frames taken by their stamps before their head
//! came). The first frame after a conversion is taken this way (or by the one look a consumer
//! makes after its producer's death, `Receiver::look_after_death`): until then the words ahead
//! were not written by this stream and are not trusted.
//!
//! A consumer that finds the *unstamped* header of its own position has caught up with a batch
//! being written (step 1 of its first frame is done, step 4 is not): it then watches head alone
//! until head covers the cursor (`Receiver::via_head`), rather than polling that frame's line,
//! into which the producer is still writing the batch's next frames (each poll would take the
//! line from the producer, which must fetch it back for its next store).
//!
//! # Sleeping
//!
//! The consumer parks with the usual protocol (`wait.rs`): flag, its barrier, then a recheck
//! that polls the stamp ([`Receiver::look`]). The Dekker pair is the stamp store and the flag:
//! the producer's barrier sits after both its stamp and head stores and before its flag load.
//! A recheck that sees "not yet" therefore means the producer will see the flag after its next
//! publish; a recheck that goes to head (behind a batch) pairs with the head store the same
//! way.
//!
//! # Releases
//!
//! The consumer moves its cursor privately per frame and stores it (with its own wake-up
//! check, `ConsumerCursor::publish`) only every `release_every` bytes, when the producer is
//! parked for space ([`Receiver::producer_waits`], checked per receive), before it waits or
//! answers `WouldBlock`, and when the byte API needs the cursor (conversion, drop). So the
//! producer reloads the consumer's cursor about once per lap, not per message.

use crate::header::{Header, Role, Word};
use crate::protocol::{notify, ConsumerCursor, ProducerCursor, Stop};
use crate::sync::{fence, Ordering};

use super::wire::{frame_size, laps_apart, Known, Stamp, CLEAR, HEADER, RESTAMP};

/// Storage of frame header words: 8-byte words addressed by ring position, loaded and stored
/// atomically (the consumer polls a word the producer may be writing).
pub(crate) trait Words {
    /// The header word at ring position `pos` (a multiple of 8), as a number.
    fn load(&self, pos: u64, order: Ordering) -> u64;
    /// Stores header word `word` (a number) at ring position `pos` (a multiple of 8).
    fn store(&self, pos: u64, word: u64, order: Ordering);
}

/// The header words of a mapped ring: view A of its data, words stored little-endian.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingWords {
    data: *mut u8,
    mask: u64,
}

// SAFETY: a `RingWords` is a pointer into a mapping owned (through its `Arc`) by the ring end
// that holds it, which is `Send`; it moves with that end and is used by one thread at a time,
// the end's. What it points at is shared with the peer by the protocol, whatever thread the
// end is on: header words are accessed atomically where they can race (`word`), and the
// payload bytes behind `at` are handed over by the cursors and stamps.
unsafe impl Send for RingWords {}

impl RingWords {
    /// The words of the ring whose view A starts at `data` (page-aligned), `capacity` bytes.
    ///
    /// # Safety
    ///
    /// `data` stays mapped, readable and writable for `capacity` bytes while the value is used.
    #[inline(always)]
    pub(crate) unsafe fn new(data: *mut u8, capacity: usize) -> RingWords {
        // Rounded down to a word: a position that is not a multiple of 8 (a cursor before the
        // alignment skip) reads the word it lies in, never a misaligned one.
        RingWords { data, mask: (capacity as u64 - 1) & !7 }
    }

    /// Where ring position `pos` (a multiple of 8) lies in view A.
    #[inline(always)]
    pub(crate) fn at(&self, pos: u64) -> *mut u8 {
        // SAFETY: an offset below N, inside view A (see `word`).
        unsafe { self.data.add((pos & self.mask) as usize) }
    }

    #[inline(always)]
    fn word(&self, pos: u64) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: `pos & mask` is a multiple of 8 below N (N is a multiple of the page size), so
        // the 8 bytes lie inside view A, which `new`'s caller keeps mapped; `data` is
        // page-aligned, so the word is 8-aligned. `from_ptr` also asks that no access to the
        // word races with a non-atomic one. Header words that can race are accessed through
        // here; the plain stores of header words (`wire::write_frame`) are made only where no
        // consumer looks yet (the frames after the first of an unpublished batch), and the
        // payload copies are ordered against the words by the protocol (the module docs).
        // The exception is the documented window of `docs::framing`: a byte producer's plain
        // stores that a consumer still in framed mode may read as a header until it sees the
        // framing epoch change. That consumer validates whatever it reads, as from a hostile
        // peer.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.at(pos).cast()) }
    }
}

impl Words for RingWords {
    #[inline(always)]
    fn load(&self, pos: u64, order: Ordering) -> u64 {
        u64::from_le(self.word(pos).load(order))
    }

    #[inline(always)]
    fn store(&self, pos: u64, word: u64, order: Ordering) {
        self.word(pos).store(word.to_le(), order);
    }
}

/// Whether a frame fits at the producer's head now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Room {
    /// It fits, with the clear mark after it (or needing none).
    Fits,
    /// Wait until this many bytes are free, then ask again.
    Short(usize),
}

/// What a caller of [`Sender::put_and_publish`] knows about the clear mark after its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mark {
    /// It wrote the mark itself, with the payload.
    Written,
    /// The free room reaches 8 bytes past the frame (it checked, against the same cached tail):
    /// the mark is stored without looking again.
    Fits,
    /// Unknown: the mark is stored if the room reaches that far ([`Sender::clear_after`]).
    Check,
}

/// The producer's side of the hand-over (see the module docs).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sender {
    stamp: Stamp,
    /// Whether a frame may fill the ring to the byte (no clear mark after it): only when a
    /// header one lap old differs from an awaited one (`wire::laps_apart`).
    brim: bool,
    /// Where this stream's first frame went: a consumer cursor at or past it sits on a frame
    /// boundary whose header this producer wrote.
    start: u64,
    /// The first frame written since the last publish and its stamped header word (valid while
    /// the cursor has unpublished bytes).
    first_at: u64,
    first_word: u64,
}

impl Sender {
    /// The sending side of a ring of `capacity` bytes whose first frame goes at `start`.
    pub(crate) fn new(capacity: usize, start: u64) -> Sender {
        Sender { stamp: Stamp, brim: laps_apart(capacity), start, first_at: start, first_word: 0 }
    }

    /// The stamp of this ring.
    #[inline(always)]
    pub(crate) fn stamp(&self) -> Stamp {
        self.stamp
    }

    /// Whether a frame of `size` bytes fits at the head by the cached tail: with 8 bytes to
    /// spare for the clear mark after it, or exactly, when the word after it is the header of
    /// a frame of this stream one lap back (the consumer's oldest unreleased frame), which
    /// the consumer reads there as "not yet".
    #[inline(always)]
    pub(crate) fn room<W: Words>(&self, cur: &ProducerCursor, words: &W, size: usize) -> Room {
        let free = cur.free_cached();
        if size + HEADER <= free {
            return Room::Fits;
        }
        if size > free {
            return Room::Short(size);
        }
        // The tail lies in [start, head] (no raw bytes from before the first frame after it),
        // and the word there, the one after the frame, says "not yet" for the position after
        // the frame, or is the frame's own header (the ring is empty: the frame fills all of
        // it). A byte consumer (a framed one turned into bytes) may have released up to any
        // byte inside a frame, so the word at the tail may be payload that reads as anything,
        // even as the stamp of that position. It stays as loaded: unreleased, no one writes
        // it.
        let (tail, head) = (cur.cached_tail(), cur.head());
        let framed = tail.wrapping_sub(self.start) <= head.wrapping_sub(self.start);
        if size == free
            && framed
            && self.brim
            // Relaxed: the word is unreleased, so no one stores to it now (the consumer only
            // reads it); its last store was this producer's own, a lap ago, or came before the
            // claim or take-over that gave it the role (Acquire).
            && (tail == head
                || self.stamp.not_yet(words.load(tail, Ordering::Relaxed), head.wrapping_add(size as u64), cur.capacity()))
        {
            Room::Fits
        } else {
            // Unreleased bytes from before the first frame (raw bytes) lie after the frame:
            // they could hold anything, so the clear mark must be written.
            Room::Short(size + HEADER)
        }
    }

    /// Writes the header of the frame of `len` bytes at the head and counts the frame. Its
    /// payload is written before the publish, by the caller; the clear mark after the last
    /// frame of a batch is written by the publish ([`clear_after`](Self::clear_after)).
    #[inline(always)]
    pub(crate) fn put<W: Words>(&mut self, cur: &mut ProducerCursor, words: &W, len: usize) {
        let p = cur.head();
        let stamped = self.stamp.stamped(len, p);
        if cur.unpublished() == 0 {
            self.first_at = p;
            self.first_word = stamped;
            // Relaxed: the consumer may be polling this word now (an unstamped header); it
            // takes the frame only once the head store or the stamp (both Release, in
            // `commit`) publishes it.
            words.store(p, stamped ^ RESTAMP, Ordering::Relaxed);
        } else {
            // Relaxed: no consumer reads this word before the batch's first frame is stamped
            // (Release) or covered by the head (Release), so it may be stamped at once.
            words.store(p, stamped, Ordering::Relaxed);
        }
        cur.advance(frame_size(len));
    }

    /// Publishes every frame written since the last publish: the clear mark after them, head,
    /// then the stamp of the first of them, then the wake-up check. Nothing if nothing is
    /// pending.
    #[inline(always)]
    pub(crate) fn publish<W: Words>(&mut self, hdr: &Header, cur: &mut ProducerCursor, words: &W) {
        if cur.unpublished() != 0 {
            Self::clear_after(cur, words);
            commit(hdr, cur, words, self.first_at, self.first_word);
        }
    }

    /// [`put`](Self::put) then [`publish`](Self::publish), for a frame sent on its own; `mark`
    /// says what the caller knows of the clear mark after it (a caller may write it with the
    /// payload: plain stores are fine there, no consumer reads that word before this frame's
    /// stamp).
    #[inline(always)]
    pub(crate) fn put_and_publish<W: Words>(
        &mut self,
        hdr: &Header,
        cur: &mut ProducerCursor,
        words: &W,
        len: usize,
        mark: Mark,
    ) {
        if cur.unpublished() != 0 {
            self.put(cur, words, len);
            self.publish(hdr, cur, words);
            return;
        }
        let p = cur.head();
        cur.advance(frame_size(len));
        match mark {
            Mark::Written => {}
            // Relaxed: as in `clear_after`.
            Mark::Fits => words.store(cur.head(), CLEAR, Ordering::Relaxed),
            Mark::Check => Self::clear_after(cur, words),
        }
        // No unstamped header first: nothing below the head ever lacks its header, and the
        // consumer polling this line sees one store to it fewer (see the module docs).
        commit(hdr, cur, words, p, self.stamp.stamped(len, p));
    }

    /// For a producer that has just taken its role over from one that was writing frames,
    /// before it lends any room (`Producer::took_over`; any other producer would find only its
    /// own uncommitted bytes at its head, which must stay unpublished):
    /// if the one it replaces died between the last two stores of a publish (the stamp of its
    /// first frame stored, head not), those frames (one sent on its own, or a batch) are
    /// complete and the consumer may have taken them. Covers them with the head (published,
    /// with the wake-up check) so that this producer's first frame goes after them, where the
    /// consumer waits.
    ///
    /// The frames are recognised exactly: from the head, a run of stamped headers, each of
    /// its own position with a length of at most `max_len`, the run inside the free room, and
    /// after it the clear mark that was stored before the first stamp (or, for a run that
    /// filled the ring, the header one lap back), so stale bytes from an earlier lap are not
    /// taken for them (they would have to hold these words of this stream at these
    /// positions). Nothing unless the first header is stamped: a batch's first frame stays
    /// unstamped until its publish, which stores that stamp first. Nothing unless the head lies
    /// inside the framing epoch, at or past its start, where the consumer trusts stamps too
    /// (`Receiver::epoch_from`): words before the start are not the framed producer's (an
    /// honest producer never leaves its head there; a forged start must not make the two
    /// sides disagree on what was committed).
    pub(crate) fn resume<W: Words>(hdr: &Header, cur: &mut ProducerCursor, words: &W, max_len: usize) {
        let start = cur.head();
        if start % HEADER as u64 != 0 || Receiver::epoch_from(hdr, start).is_none() {
            return;
        }
        // The run's bytes so far: at most the free room (so at most the capacity: no overflow).
        let (free, mut run) = (cur.free_cached(), 0);
        // Acquire: the first load pairs with the dead producer's Release store of the first
        // stamp: every frame of that publish, and the clear mark after them, were stored
        // before it and are visible after it. (The later loads are Acquire as a margin.)
        loop {
            let p = start.wrapping_add(run as u64);
            let word = words.load(p, Ordering::Acquire);
            let Some(len) = Stamp.stamped_len(word, p, max_len) else {
                // The clear mark, or a header one lap back where the frames filled the ring to
                // the byte (when they were sent: the consumer may have released room since).
                if run == 0 || !Stamp.not_yet(word, p, cur.capacity()) {
                    return;
                }
                break;
            };
            let size = frame_size(len);
            if size > free - run {
                return;
            }
            run += size;
        }
        cur.advance(run);
        cur.publish(hdr);
    }

    /// Begins a framing epoch at `first`, where this producer's first frame goes, whose word is
    /// its free room: the clear mark there, then the start and the epoch (`Header::begin_framing`,
    /// Release), so that a consumer that sees the epoch sees the mark, not what the word held.
    pub(crate) fn begin<W: Words>(hdr: &Header, words: &W, first: u64) {
        // Relaxed: published by the Release store of the epoch.
        words.store(first, CLEAR, Ordering::Relaxed);
        hdr.begin_framing(first);
    }

    /// Writes the clear mark at the head, where the next frame's header will go, if the room
    /// reaches that far (a frame that filled the ring to the byte needs none, see
    /// [`room`](Self::room)). Every publish does this first; so must anything else that
    /// publishes head with frames pending (the byte end before it sleeps).
    #[inline(always)]
    pub(crate) fn clear_after<W: Words>(cur: &ProducerCursor, words: &W) {
        if cur.free_cached() >= HEADER {
            // Relaxed: published by the head store and the stamp that follow (Release), before
            // anyone can look for a frame there.
            words.store(cur.head(), CLEAR, Ordering::Relaxed);
        }
    }
}

/// The last steps of every publish (module docs), once the frames and the clear mark after
/// them are written: the stamped header word `stamped` of the first unpublished frame (at
/// `first`), head, the wake-up check. The stamp goes first: once head covers a frame, a byte
/// end may lend its bytes, the header word included, and nothing may store to them any more.
#[inline(always)]
fn commit<W: Words>(hdr: &Header, cur: &mut ProducerCursor, words: &W, first: u64, stamped: u64) {
    // Release: every frame written since the last publish (payloads, headers, the clear mark)
    // is visible before the stamp. Pairs with the Acquire load in `Receiver::poll_word`.
    words.store(first, stamped, Ordering::Release);
    cur.store_head(hdr);
    // The barrier pair orders the stamp and head stores before the load of the consumer's
    // flag, against the consumer's flag store and its recheck (`Receiver::look`).
    notify(hdr, Word::Data, cur.light(), cur.counters());
}

/// The consumer's side of the hand-over (see the module docs).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Receiver {
    stamp: Stamp,
    cap: u64,
    max_len: usize,
    /// The last stamped header taken.
    known: Known,
    /// A frame taken by its stamp must end at or before this position: one ring past the
    /// published tail (the producer's room), or the tail itself while stamps are not trusted
    /// (since the conversion, no frame taken through the head yet; or poisoned).
    limit: u64,
    armed: bool,
    /// Polls look at the published head, not at the word at the cursor:
    /// - while stamps are not trusted (`!armed`): that word may then be a byte producer's,
    ///   written with plain stores, which no atomic load of a thread of this process may race
    ///   (Rust's memory model), and it would not be trusted anyway;
    /// - while the word there was last seen holding the unstamped header of this position: the
    ///   producer is writing a batch there, and until the published head covers the cursor,
    ///   polls look at head (one store per batch) instead of that frame's line, which the
    ///   producer is still writing the batch's next frames into (each poll would take the
    ///   line from it).
    via_head: bool,
    /// Releases are stored once this many bytes are consumed.
    release_every: usize,
    /// The producer's framing epoch (`Header::framing_epoch`, odd) under which stamps are
    /// trusted (while `armed`); a frame taken by its stamp counts only while it holds.
    epoch: u32,
}

impl Receiver {
    /// The receiving side of a ring of `capacity` bytes, its cursor at `tail`; stamps are
    /// trusted only after the first frame taken through the head.
    pub(crate) fn new(capacity: usize, max_len: usize, release_every: usize, tail: u64) -> Receiver {
        Receiver {
            stamp: Stamp,
            cap: capacity as u64,
            max_len,
            known: Known::NONE,
            limit: tail,
            armed: false,
            via_head: true,
            release_every: release_every.max(1),
            epoch: 0,
        }
    }

    /// [`poll_word`](Self::poll_word)'s frame, if any (what the loom models poll).
    #[cfg(mirror_ring_loom)]
    #[inline(always)]
    pub(crate) fn poll<W: Words>(&mut self, hdr: &Header, cur: &ConsumerCursor, words: &W) -> Option<(usize, usize)> {
        self.poll_word(hdr, cur, words).ok()
    }

    /// The frame at the cursor if its stamp is there: `Ok((len, size))`. Otherwise the word it
    /// found there, for [`idle`](Self::idle); `u64::MAX`, which is never a header, when it looked
    /// at nothing (`via_head`: stamps not trusted, or a batch being written there).
    #[inline(always)]
    pub(crate) fn poll_word<W: Words>(
        &mut self,
        hdr: &Header,
        cur: &ConsumerCursor,
        words: &W,
    ) -> Result<(usize, usize), u64> {
        if self.via_head {
            return Err(u64::MAX);
        }
        let q = cur.tail();
        // Acquire: pairs with the Release store of the stamp in `commit` (every publish); the
        // frame's bytes, written before it, are visible after this load.
        let word = words.load(q, Ordering::Acquire);
        self.take(hdr, word, q, self.limit.wrapping_sub(q)).ok_or(word)
    }

    /// For a call that answers `WouldBlock` rather than wait, after a
    /// [`poll_word`](Self::poll_word) that found `word` at the cursor and no frame: true when that is all
    /// [`look`](Self::look) would find, so the call may answer at once: the word says "not
    /// yet" (as in `look`), stamps are trusted, the producer has not closed and the ring is
    /// not poisoned. Then it releases what was consumed, as `look` does first (a producer may
    /// be waiting for the room). False: the caller takes `look`.
    #[inline(always)]
    pub(crate) fn idle(&mut self, hdr: &Header, cur: &mut ConsumerCursor, word: u64) -> bool {
        let quiet = self.armed
            && !self.via_head
            && !cur.is_poisoned()
            && self.stamp.not_yet(word, cur.tail(), self.cap)
            && !hdr.is_closed(Role::Producer)
            && !hdr.is_poisoned();
        if quiet && cur.unpublished() != 0 {
            self.publish(hdr, cur);
        }
        quiet
    }

    /// The frame whose header `word` was loaded (Acquire) at `q`, if it is stamped for `q`,
    /// fits in `room` bytes, and the producer still writes frames (`epoch_holds`).
    #[inline(always)]
    fn take(&mut self, hdr: &Header, word: u64, q: u64, room: u64) -> Option<(usize, usize)> {
        let frame = if word == self.known.base ^ self.stamp.bits(q) {
            self.known.repeat(self.stamp, word, q, room)
        } else if word == CLEAR {
            // The commonest miss, "not yet": nothing to decode (and no batch being written
            // here, see `poll_other`; stamps are trusted: every caller looked only then).
            self.via_head = false;
            return None;
        } else {
            self.poll_other(word, q, room)
        };
        match frame {
            Some(_) if !self.epoch_holds(hdr) => {
                // The producer stopped writing frames since stamps were trusted: the word may
                // be one of its bytes. Through head from here. Acquire: with the Release fence
                // before the epoch store in `Header::end_framing` (or the Release store of
                // `begin_framing`), the head looks that follow see what the producer stored
                // before the new epoch: a newcomer's cover of frames stamped above the head.
                fence(Ordering::Acquire);
                self.armed = false;
                self.via_head = true;
                self.limit = q;
                None
            }
            frame => frame,
        }
    }

    /// Whether the producer is still in the framing epoch under which stamps were trusted,
    /// after a frame was found by its stamp: a seqlock reader's second look. The word was
    /// loaded with Acquire, so this load comes after it; and if that load saw a byte the
    /// producer wrote after it stopped writing frames, it synchronised with the Release fence
    /// in `Header::end_framing`, which the epoch store precedes: this load sees the new epoch.
    /// (No frame is taken by its stamp while not `armed`: `limit` leaves it no room.)
    #[inline(always)]
    fn epoch_holds(&self, hdr: &Header) -> bool {
        Self::epoch_is(hdr, self.epoch)
    }

    /// [`epoch_holds`](Self::epoch_holds) for an epoch the caller keeps at hand
    /// ([`epoch`](Self::epoch)), as a batch does, after its own Acquire load of the word.
    #[inline(always)]
    pub(crate) fn epoch_is(hdr: &Header, epoch: u32) -> bool {
        hdr.framing_epoch() == epoch
    }

    /// Whether stamps are trusted: frames may be taken by them, and words above the head
    /// loaded ([`via_head`](Self::via_head)'s first reason).
    #[inline(always)]
    pub(crate) fn armed(&self) -> bool {
        self.armed
    }

    /// The framing epoch stamps are trusted under (meaningful while they are).
    #[inline(always)]
    pub(crate) fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The next frame of a batch: stamped at `q`, ending at or before `bound` (which the caller
    /// keeps within the producer's room, [`batch_bound`](Self::batch_bound)). `(len, size)`.
    #[inline(always)]
    pub(crate) fn poll_within<W: Words>(
        &mut self,
        hdr: &Header,
        q: u64,
        bound: u64,
        words: &W,
    ) -> Option<(usize, usize)> {
        if !self.armed {
            // Nothing is taken by its stamp (`limit`): no load of a word a byte producer may
            // be writing (`via_head`).
            return None;
        }
        let word = Self::batch_word(words, q);
        self.take(hdr, word, q, bound.wrapping_sub(q))
    }

    /// The header word at `q` where a batch looks for its next frame: here, and in
    /// `FramedConsumer::recv_batch`'s loop, which checks it against the last header itself.
    #[inline(always)]
    pub(crate) fn batch_word<W: Words>(words: &W, q: u64) -> u64 {
        // Acquire: as in `poll_word`: a frame found here is beyond the head, its payload
        // ordered by the stamp alone (loom model
        // `a_frame_found_within_a_batch_is_read_after_its_stamp`).
        words.load(q, Ordering::Acquire)
    }

    /// The last stamped header taken: a batch keeps a copy at hand to recognise repeats
    /// ([`Known::repeat`]), and asks [`poll_within`](Self::poll_within) about anything else.
    #[inline(always)]
    pub(crate) fn known(&self) -> Known {
        self.known
    }

    /// Where a batch that starts at `start` and may take `limit` bytes must end: no further,
    /// and not past the producer's room.
    #[inline(always)]
    pub(crate) fn batch_bound(&self, start: u64, limit: usize) -> u64 {
        let room = self.limit.wrapping_sub(start);
        start.wrapping_add(room.min(limit as u64))
    }

    /// [`poll_word`](Self::poll_word) for a header other than the last one's.
    #[inline]
    fn poll_other(&mut self, word: u64, q: u64, room: u64) -> Option<(usize, usize)> {
        let Some(len) = self.stamp.stamped_len(word, q, self.max_len) else {
            // The first frame of a batch, written and not stamped yet: watch head instead.
            self.via_head = self.stamp.is_unstamped(word, q);
            return None;
        };
        let known = Known::of(self.stamp, len);
        if known.size as u64 > room {
            return None;
        }
        self.known = known;
        Some((len, known.size))
    }

    /// One look at the cursor for a call that found no stamped frame there: first the releases
    /// (a call that may wait or answer `WouldBlock` must not keep room from a producer that may
    /// be waiting for it), then the stamp again, then, unless the word there says "not yet", the
    /// published head (which also notices a close and the poison flag). `None`: nothing yet. A
    /// frame below the head whose header is not this position's poisons the ring.
    pub(crate) fn look<W: Words>(
        &mut self,
        hdr: &Header,
        cur: &mut ConsumerCursor,
        words: &W,
    ) -> Option<Result<(usize, usize), Stop>> {
        self.publish(hdr, cur);
        if cur.is_poisoned() {
            return Some(Err(Stop::Corrupt));
        }
        if !self.via_head {
            let q = cur.tail();
            // Acquire: as in `poll_word`.
            let word = words.load(q, Ordering::Acquire);
            if let Some(frame) = self.take(hdr, word, q, self.limit.wrapping_sub(q)) {
                return Some(Ok(frame));
            }
            if self.armed
                && self.stamp.not_yet(word, q, self.cap)
                && !hdr.is_closed(Role::Producer)
                && !hdr.is_poisoned()
            {
                return None;
            }
        }
        // Behind a batch being written: head alone tells when it is published (stored, as the
        // stamp is, before the producer's barrier, so a recheck after raising the waiter flag
        // sees it as it would the stamp).
        cur.catch_up_head();
        match cur.poll_readable(hdr, HEADER)? {
            Ok(readable) => Some(self.committed_in(hdr, cur, words, readable)),
            // Closed: whatever remains is all there will be; nothing, or a piece of a frame.
            Err(Stop::Closed) if cur.readable_cached() == 0 => Some(Err(Stop::Closed)),
            Err(Stop::Closed) => Some(Err(self.corrupt(hdr, cur))),
            Err(stop) => Some(Err(stop)),
        }
    }

    /// [`look`](Self::look) once more for a call about to report the producer's death, at the
    /// word at the cursor where `look` watched the head instead. A producer that died between a
    /// publish's last two stores (the stamp of its first frame stored, head not) left complete
    /// frames above the head; the next producer covers them as committed (`Sender::resume`),
    /// and a byte newcomer would hand their raw bytes, headers and all, to a consumer that has
    /// turned into a byte end. So they are drained with the frames below the head. `look`
    /// watched the head either because the word held the unstamped header of a batch being
    /// written (`via_head` while stamps are trusted), or because no frame has come through the
    /// head in this framing epoch yet (not `armed`): then the stamps are trusted for this look
    /// on the same ground as after such a frame (`committed_in`), the cursor lying at or past
    /// the epoch's start; outside an epoch, a newcomer has ended it, after its cover, and the
    /// look is at head. `None`: nothing there (the death stands).
    ///
    /// No newcomer stores to that word while it holds a stamped frame: it covers it. A byte
    /// newcomer that finds no stamp there, and so writes there, ends the framing epoch first,
    /// which `take` checks after its load, as for any trusting consumer (the window that
    /// leaves is in [`docs::framing`](crate::docs::framing), "No load races a byte producer's
    /// stores").
    pub(crate) fn look_after_death<W: Words>(
        &mut self,
        hdr: &Header,
        cur: &mut ConsumerCursor,
        words: &W,
    ) -> Option<Result<(usize, usize), Stop>> {
        if self.armed {
            if !self.via_head {
                return None;
            }
            self.via_head = false;
            return self.look(hdr, cur, words);
        }
        let q = cur.tail();
        if q % HEADER as u64 != 0 || cur.is_poisoned() {
            return None;
        }
        let Some(epoch) = Self::epoch_from(hdr, q) else {
            // Not inside a framing epoch (any more): a newcomer may have taken over since the
            // death was found, covered the frames and ended the epoch or begun its own, which
            // this Acquire load saw (`epoch_from`; `Header::end_framing`, `begin_framing`).
            // Then head covers them: one more look at it.
            return self.look(hdr, cur, words);
        };
        self.arm(epoch, cur);
        let looked = self.look(hdr, cur, words);
        if !matches!(looked, Some(Ok(_))) {
            // Nothing taken: back to the head until a frame comes through it.
            self.disarm(cur);
        }
        looked
    }

    /// The frame at the cursor, known to lie below the head by the cached head, for a batch
    /// that found no stamp there: `None` when the cached head does not cover a header.
    pub(crate) fn committed<W: Words>(
        &mut self,
        hdr: &Header,
        cur: &mut ConsumerCursor,
        words: &W,
    ) -> Option<Result<(usize, usize), Stop>> {
        cur.catch_up_head();
        let readable = cur.readable_cached();
        (readable >= HEADER).then(|| self.committed_in(hdr, cur, words, readable))
    }

    /// The frame at the cursor, with `readable` bytes below the head from it.
    fn committed_in<W: Words>(
        &mut self,
        hdr: &Header,
        cur: &mut ConsumerCursor,
        words: &W,
        readable: usize,
    ) -> Result<(usize, usize), Stop> {
        let q = cur.tail();
        // Acquire: a margin only. The head load (Acquire) that reported these bytes ordered every
        // store of the frame, its header word's included (the stamp, where there is one, is
        // stored before head), and the word is only compared (`committed_len` takes it stamped
        // or not).
        let word = words.load(q, Ordering::Acquire);
        match self.stamp.committed_len(word, q, self.max_len, readable) {
            Some(len) => {
                let size = frame_size(len);
                if let Some(epoch) = Self::epoch_from(hdr, q) {
                    self.arm(epoch, cur);
                } else {
                    // Bytes (`epoch_from`): trust no stamp, not even past this frame (room 0 at
                    // the next cursor).
                    self.armed = false;
                    self.via_head = true;
                    self.limit = q.wrapping_add(size as u64);
                }
                Ok((len, size))
            }
            None => Err(self.corrupt(hdr, cur)),
        }
    }

    /// The framing epoch under which stamps at `q` can be trusted: the producer writes frames
    /// (an odd epoch) and `q` is at or past the first of them, so every word from `q` on was
    /// written by it in this lap (a frame, or the clear mark after the last one) or is a header
    /// one lap old. `None`: bytes (a byte producer, or what one wrote before the epoch began: it
    /// writes no clear mark, so the word after its last frame is whatever an earlier lap left,
    /// which may read as a stamp).
    fn epoch_from(hdr: &Header, q: u64) -> Option<u32> {
        // Acquire: pairs with the Release store in `Header::begin_framing` (the start stored
        // before it, and the clear mark at the start, are seen) and with the Release fence
        // before the store in `Header::end_framing` (what the producer stored before it ended
        // the epoch is seen: a newcomer's cover, for `look_after_death`).
        let epoch = hdr.framing_epoch_acquire();
        (epoch % 2 == 1 && q.wrapping_sub(hdr.framing_start()) < 1 << 63).then_some(epoch)
    }

    /// Trusts stamps from the cursor on while `epoch` holds ([`epoch_from`](Self::epoch_from)),
    /// within the producer's room.
    fn arm(&mut self, epoch: u32, cur: &ConsumerCursor) {
        self.armed = true;
        self.via_head = false;
        self.epoch = epoch;
        self.limit = cur.published().wrapping_add(self.cap);
    }

    /// Stops taking frames by their stamp until one is taken through the head (after the
    /// cursor moved without a frame: the alignment skip; or a look after the producer's death
    /// that trusted stamps for itself and took nothing).
    pub(crate) fn disarm(&mut self, cur: &ConsumerCursor) {
        self.armed = false;
        self.via_head = true;
        self.limit = cur.tail();
    }

    /// Poisons the ring (a header that is not this position's below the head): this side fails
    /// from now on, and the producer sees the shared flag.
    fn corrupt(&mut self, hdr: &Header, cur: &mut ConsumerCursor) -> Stop {
        self.disarm(cur);
        let _ = cur.poison(hdr);
        Stop::Corrupt
    }

    /// Counts a frame of `size` bytes as consumed; true when the releases are due.
    #[inline(always)]
    pub(crate) fn consumed(&self, cur: &mut ConsumerCursor, size: usize) -> bool {
        cur.advance_stamped(size);
        cur.unpublished() >= self.release_every
    }

    /// Releases everything consumed to the producer: one store of the tail, and its wake-up
    /// check.
    pub(crate) fn publish(&mut self, hdr: &Header, cur: &mut ConsumerCursor) {
        cur.catch_up_head();
        cur.publish(hdr);
        if self.armed {
            self.limit = cur.published().wrapping_add(self.cap);
        }
    }

    /// Whether the producer is parked waiting for space (its waiter flag is raised): releases
    /// then go out at once.
    #[inline(always)]
    pub(crate) fn producer_waits(hdr: &Header) -> bool {
        // Relaxed: a hint. The wake-up itself is `publish`'s (barrier pair on the tail store).
        hdr.word(Word::Space).load(Ordering::Relaxed) != 0
    }
}
