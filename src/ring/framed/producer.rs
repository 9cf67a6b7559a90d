//! The sending end of a framed ring: `send` copies a message in, `reserve` lends its room;
//! batching decides when the producer's cursor is published.

use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use super::link::{Mark, Room, Sender};
use super::wire::{frame_size, load_small, store_pair, too_long, write_frame, write_payload, CLEAR, HEADER};
use super::FramedProducer;
use crate::header::{Role, Word};
use crate::protocol::Stop;
use crate::ring::{poisoned_error, producer_error, Producer, Wait};
use crate::sync::Ordering;

impl FramedProducer {
    /// The ring's capacity in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = mirror_ring::channel(1 << 16)?;
    /// assert_eq!(tx.into_framed().capacity(), 65536);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// The longest message this ring can ever hold: `capacity - 8` (the frame header), and at
    /// most `u32::MAX - 7` (the header's length field) on rings of 4 GiB and more.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = mirror_ring::channel(1 << 16)?;
    /// let mut tx = tx.into_framed();
    /// assert_eq!(tx.max_frame_len(), 65528);
    /// let err = tx.send(&vec![0; 65529]).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn max_frame_len(&self) -> usize {
        self.max_len
    }

    /// Sends one message, blocking until there is room for it.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `msg` is longer than [`max_frame_len`](Self::max_frame_len) (nothing is
    /// written; the ring keeps working); `BrokenPipe` when the consumer is gone; `InvalidData`
    /// when the ring is poisoned; `Unsupported` in a forked child; `ConnectionAborted` once
    /// another process took this end's role over.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    /// let reader = std::thread::spawn(move || {
    ///     let mut total = 0;
    ///     while let Some(frame) = rx.recv().unwrap() {
    ///         total += frame.len();
    ///     }
    ///     total
    /// });
    /// for _ in 0..100 {
    ///     tx.send(&[7; 1000])?; // waits while the 4 KiB ring is full
    /// }
    /// drop(tx);
    /// assert_eq!(reader.join().unwrap(), 100_000);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.send_with(msg, Wait::Until(None))
    }

    /// Sends one message if there is room for it now; never blocks.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when the ring has no room for the frame (pending frames are published
    /// first); otherwise as [`send`](Self::send).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = mirror_ring::channel(1 << 16)?;
    /// let mut tx = tx.into_framed();
    /// tx.try_send(&vec![1; 65_500])?;
    /// let err = tx.try_send(&[1; 100]).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.send_with(msg, Wait::No)
    }

    /// Sends one message, waiting up to `timeout` for room.
    ///
    /// # Errors
    ///
    /// `TimedOut` when no room appeared in time; otherwise as [`send`](Self::send).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let (tx, _rx) = mirror_ring::channel(1 << 16)?;
    /// let mut tx = tx.into_framed();
    /// tx.send_timeout(&vec![1; 65_500], Duration::from_millis(10))?;
    /// let err = tx.send_timeout(&[1; 100], Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> io::Result<()> {
        self.send_with(msg, Wait::within(timeout))
    }

    /// Sends the leading messages of `msgs` that fit, in order, one frame each, and returns
    /// how many it sent: at least one, blocking until the first fits (`Ok(0)` only for an
    /// empty slice). The batch costs one ownership check, one look at the room and one
    /// publish (one head store, one stamp and one wake-up check) per eighth of the ring, not
    /// per message; after the first, each frame of up to 8 bytes is one plain 16-byte store of
    /// header and payload on x86-64 (two 8-byte stores elsewhere). Any frames held back by
    /// [`set_batch`](Self::set_batch) are published with it.
    ///
    /// It stops early, and the next call reports why, at a message longer than
    /// [`max_frame_len`](Self::max_frame_len) or when the ring is full, closed or poisoned.
    /// So nothing is lost: the unsent messages are `msgs[sent..]`, to pass again. The
    /// consumer's counterpart is [`FramedConsumer::recv_batch`](crate::FramedConsumer::recv_batch).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), for the first message only.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    /// let readings: Vec<[u8; 8]> = (0..1000u64).map(u64::to_le_bytes).collect();
    /// let reader = std::thread::spawn(move || {
    ///     let mut sum = 0;
    ///     while rx.recv_batch(|frame| sum += u64::from_le_bytes(frame.try_into().unwrap()))? > 0 {}
    ///     Ok::<u64, std::io::Error>(sum)
    /// });
    /// let mut rest = &readings[..];
    /// while !rest.is_empty() {
    ///     let sent = tx.send_batch(rest)?; // as many as the 4 KiB ring takes now
    ///     rest = &rest[sent..];
    /// }
    /// drop(tx);
    /// assert_eq!(reader.join().unwrap()?, 999 * 1000 / 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_batch<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> io::Result<usize> {
        self.batch_send_with(msgs, Wait::Until(None))
    }

    /// Like [`send_batch`](Self::send_batch), but never blocks.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when the first message does not fit now; otherwise as
    /// [`send_batch`](Self::send_batch).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = mirror_ring::channel(1 << 16)?;
    /// let mut tx = tx.into_framed();
    /// // 200-byte frames take 208 bytes each: 315 fit in 65536, with the 8-byte mark after them.
    /// let msgs = vec![[0u8; 200]; 400];
    /// assert_eq!(tx.try_send_batch(&msgs)?, 315);
    /// let err = tx.try_send_batch(&msgs[315..]).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_send_batch<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> io::Result<usize> {
        self.batch_send_with(msgs, Wait::No)
    }

    /// Like [`send_batch`](Self::send_batch), but waits at most `timeout` for room for the
    /// first message.
    ///
    /// # Errors
    ///
    /// `TimedOut` when no room appeared in time; otherwise as [`send_batch`](Self::send_batch).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let (tx, _rx) = mirror_ring::channel(1 << 16)?;
    /// let mut tx = tx.into_framed();
    /// tx.send(&vec![0; 65_500])?;
    /// let err = tx.send_batch_timeout(&[[1u8; 100]], Duration::from_millis(5)).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_batch_timeout<M: AsRef<[u8]>>(&mut self, msgs: &[M], timeout: Duration) -> io::Result<usize> {
        self.batch_send_with(msgs, Wait::within(timeout))
    }

    #[inline(always)]
    fn batch_send_with<M: AsRef<[u8]>>(&mut self, msgs: &[M], wait: Wait) -> io::Result<usize> {
        let Some(first) = msgs.first() else {
            // As every call, an empty one fails in a forked copy.
            self.inner.end.header_or_err()?;
            return Ok(0);
        };
        // The slice whose length claimed the room is the one written, from the same `as_ref`
        // call (a caller's `AsRef` may answer differently each time). A message that ends a run
        // is asked again as the next run's first: its second answer claims and is written.
        let mut first = first.as_ref();
        // Every check `send` makes (ownership, length, closed, poisoned), and the wait for room.
        let mut header = self.claim(first.len(), wait)?;
        let mut sent = 0;
        loop {
            sent += self.put_run(header, first, &msgs[sent + 1..]);
            self.publish_pending();
            let Some(next) = msgs.get(sent) else { break };
            first = next.as_ref();
            // A further run if there is room now (a reason to stop is reported by the next
            // call, which starts with this message).
            match self.claim(first.len(), Wait::No) {
                Ok(at) => header = at,
                Err(_) => break,
            }
        }
        Ok(sent)
    }

    /// Writes `first`, then the leading messages of `rest`, as frames from the head, which is
    /// at `header` and has room for `first` (claimed in this call for exactly this slice), while
    /// each fits with the clear mark after it, up to an eighth of the ring; counts them as
    /// pending, to be published by the caller. Returns how many it wrote (at least one).
    #[inline(always)]
    fn put_run<M: AsRef<[u8]>>(&mut self, header: *mut u8, first: &[u8], rest: &[M]) -> usize {
        let (words, stamp, max_len) = (self.words, self.link.stamp(), self.max_len);
        // SAFETY: `claim` reserved frame_size(first.len()) free bytes from `header` (the head,
        // 8-aligned, inside the two views), the producer's until it publishes them; `first`
        // cannot overlap free space (see `send_at`).
        unsafe { write_payload(header, first) };
        // Its header: unstamped if it opens the batch (the consumer may be polling that word),
        // with the pending frames' bookkeeping.
        self.link.put(&mut self.inner.cur, &words, first.len());
        let start = self.inner.cur.head();
        // The run ends where the room known from the cached tail does (`free_cached`: at most
        // N, from the validated cursors), or an eighth of the ring on, whichever comes first:
        // the consumer sees nothing of it before the publish.
        let room = self.inner.cur.free_cached().min(self.capacity() / 8);
        let end = start.wrapping_add(room as u64);
        let mut head = start;
        let mut n = 1;
        for m in rest {
            // (Its one `as_ref`: the length checked below is that of the slice written.)
            let msg = m.as_ref();
            let len = msg.len();
            // The caller's `as_ref` may have forked: in the child this call's copy writes no
            // more (the room is the parent's, or, `dont_fork`, not there at all), and its
            // publish and next claim do nothing but fail. (frame_size cannot overflow: len <=
            // max_len < 2^32.)
            if len > max_len || end.wrapping_sub(head) < (frame_size(len) + HEADER) as u64 || self.inner.end.forked() {
                break;
            }
            // SAFETY: [head, head + size + 8) lies below `end`, inside the free room (at most N
            // bytes, inside the two views), the producer's until it publishes; 8-aligned. No
            // consumer reads these words before the run's first frame is stamped or covered by
            // the head (both at the publish), so plain stores will do. `msg` cannot overlap
            // free space (see `send_at`).
            unsafe { write_frame(words.at(head), stamp.stamped(len, head), msg) };
            head = head.wrapping_add(frame_size(len) as u64);
            n += 1;
        }
        self.inner.cur.advance(head.wrapping_sub(start) as usize);
        n
    }

    #[inline(always)]
    fn send_with(&mut self, msg: &[u8], wait: Wait) -> io::Result<()> {
        let len = msg.len();
        // One ownership check for the whole call (`End::header`), before anything is stored;
        // the rest of the call uses `header_checked`. (frame_size cannot overflow: len <=
        // max_len < 2^32.)
        if len <= self.max_len && self.inner.end.header_as(Role::Producer).is_some() {
            let (head, size) = (self.inner.cur.head(), frame_size(len));
            if self.fast_until.wrapping_sub(head) as i64 >= size as i64 {
                // Batched fast path: a frame after the first of its batch, inside the room
                // (with the clear mark after it) and the batch checked last time. (`rearm`
                // leaves no room here while no frame is pending, on the batch's last frame and
                // once the cursor is poisoned; a head that moved on without it is past
                // `fast_until`: the signed difference is negative.)
                // SAFETY: `rearm` keeps size + 8 bytes from the head inside the free room (at
                // most N, inside the two views), owned by the producer until it publishes them;
                // 8-aligned. No consumer reads them before the batch's first frame is stamped,
                // so plain stores will do (the clear mark after the batch comes with its
                // publish). `msg` cannot overlap free space (see `send_at`).
                unsafe { write_frame(self.words.at(head), self.link.stamp().stamped(len, head), msg) };
                self.inner.cur.advance(size);
                self.frames_left -= 1;
                if self.frames_left <= 1 {
                    // The batch's last frame takes the general path, which publishes.
                    self.fast_until = head;
                }
                // A consumer that went to sleep gets what is pending now, not at the batch's
                // end.
                if self.consumer_sleeping() {
                    self.publish_pending();
                }
                return Ok(());
            }
            if self.room_end.wrapping_sub(head) >= (size + HEADER) as u64
                && !self.inner.end.header_checked().is_closed(Role::Consumer)
            {
                // The first or the last frame of a batch, with room.
                self.send_at(self.words.at(head), msg, true);
                return Ok(());
            }
        }
        self.send_slow(msg, wait)
    }

    /// [`send_with`](Self::send_with) when the cached cursors show no room, the ring needs a
    /// look, or the call fails: asks the ring (waiting per `wait`), then sends.
    #[inline(never)]
    fn send_slow(&mut self, msg: &[u8], wait: Wait) -> io::Result<()> {
        let header = self.claim_slow(msg.len(), wait)?;
        let marked = frame_size(msg.len()) + HEADER <= self.inner.cur.free_cached();
        self.send_at(header, msg, marked);
        Ok(())
    }

    /// Writes `msg` as the frame whose header goes at `header` (the head), and counts and
    /// publishes it per the batching policy, for a call that has checked the ownership and
    /// claimed the room (`claim`: the whole frame, and the 8 bytes after it unless the frame
    /// fills the ring). `marked`: the free room also holds the 8 bytes after the frame.
    #[inline(always)]
    fn send_at(&mut self, header: *mut u8, msg: &[u8], marked: bool) {
        let len = msg.len();
        if self.batch <= 1 && len.wrapping_sub(1) < HEADER && marked {
            // 1 to 8 bytes sent on their own, with room for the clear mark after them: payload
            // and mark in one 16-byte store, one store fewer to the line the consumer polls.
            // SAFETY: as below, and the 8 bytes after the frame are free room too (checked);
            // no consumer reads the mark's word before this frame is stamped.
            unsafe { store_pair(header.add(HEADER), load_small(msg.as_ptr(), len), CLEAR) };
            let (inner, words) = (&mut *self.inner, self.words);
            // The caller checked the ownership in this call.
            self.link.put_and_publish(inner.end.header_checked(), &mut inner.cur, &words, len, Mark::Written);
            return;
        }
        // SAFETY: `claim` reserved frame_size(len) = 8 + round_up(len, 8) free bytes from
        // `header` (at most N of them, inside the two views), which the producer owns until it
        // publishes them. `header` is 8-aligned (page-aligned data, aligned position). `msg`
        // cannot overlap free space: the only ring memory a caller can hold is a frame being
        // read, which covers unreleased bytes.
        unsafe { write_payload(header, msg) };
        self.finish(len, if marked { Mark::Fits } else { Mark::Check });
    }

    /// Lends the space for one `len`-byte message, blocking until there is room: fill it, then
    /// [`commit`](FrameGrant::commit). Dropping the grant uncommitted sends nothing.
    ///
    /// Building a message here, rather than in a buffer that [`send`](Self::send) then copies,
    /// stores each byte once. `send` is as fast for messages of up to 256 bytes written as
    /// words of 8 bytes or more; a grant is the fast way for messages built from narrower
    /// stores (`u32` fields, byte by byte: about twice `send`'s rate at 64 bytes between two
    /// cores) and for longer ones (see [`docs::framing`](crate::docs::framing), "Messages built
    /// for the call").
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    /// let mut grant = tx.reserve(12)?;
    /// grant[..4].copy_from_slice(&7u32.to_le_bytes());
    /// grant[4..].copy_from_slice(&42u64.to_le_bytes());
    /// grant.commit()?;
    /// let frame = rx.recv()?.unwrap();
    /// assert_eq!(u64::from_le_bytes(frame[4..].try_into().unwrap()), 42);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[inline]
    pub fn reserve(&mut self, len: usize) -> io::Result<FrameGrant<'_>> {
        self.grant_with(len, Wait::Until(None))
    }

    /// Like [`reserve`](Self::reserve), but never blocks.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when there is no room now; otherwise as [`send`](Self::send).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = mirror_ring::channel(1 << 16)?;
    /// let mut tx = tx.into_framed();
    /// tx.try_reserve(65_500)?.commit()?;
    /// assert_eq!(tx.try_reserve(100).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> io::Result<FrameGrant<'_>> {
        self.grant_with(len, Wait::No)
    }

    /// Like [`reserve`](Self::reserve), but waits at most `timeout`.
    ///
    /// # Errors
    ///
    /// `TimedOut` when no room appeared in time; otherwise as [`send`](Self::send).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let (tx, _rx) = mirror_ring::channel(4096)?;
    /// let mut tx = tx.into_framed();
    /// let grant = tx.reserve_timeout(16, Duration::from_millis(10))?;
    /// assert_eq!(grant.len(), 16);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> io::Result<FrameGrant<'_>> {
        self.grant_with(len, Wait::within(timeout))
    }

    #[inline(always)]
    fn grant_with(&mut self, len: usize, wait: Wait) -> io::Result<FrameGrant<'_>> {
        let header = self.claim(len, wait)?;
        Ok(FrameGrant { header, len, producer: self })
    }

    /// Waits (per `wait`) for room for a frame of `len` payload bytes and returns where its
    /// header goes; the whole frame's bytes from there are free and the producer's, and so are
    /// the 8 bytes after it unless the frame fills the ring (`link::Sender::room`).
    #[inline(always)]
    fn claim(&mut self, len: usize, wait: Wait) -> io::Result<*mut u8> {
        // Fast path: aligned already, room for the frame and the clear mark known from the
        // cached cursors, and the same checks `reserve` makes first (this process owns the end;
        // the consumer is still there). frame_size cannot overflow: len <= max_len < 2^32.
        if len <= self.max_len
            && self.room_end.wrapping_sub(self.inner.cur.head()) >= (frame_size(len) + HEADER) as u64
            && self.may_write()
        {
            return Ok(self.words.at(self.inner.cur.head()));
        }
        self.claim_slow(len, wait)
    }

    /// Asks the ring for room (refreshing the consumer's cursor, waiting per `wait`).
    #[inline(never)]
    fn claim_slow(&mut self, len: usize, wait: Wait) -> io::Result<*mut u8> {
        // Disarmed first: a wait publishes head, which may wake a task of this thread through
        // its waker, the caller's code, which may panic (see `publish_pending`).
        self.disarm();
        let claimed = self.ask(len, wait);
        // Whatever happened (the cached tail moved, the skip was made, the cursor poisoned).
        self.sync_room();
        // A wait publishes head first, after which no frame is pending: the batched fast path
        // must not go on writing stamped frames after a first frame that is no longer held
        // back (a grant dropped uncommitted would leave it armed).
        self.rearm();
        claimed
    }

    /// The fast paths' bound on the head, `room_end`, from the state it sums up: the cached
    /// tail plus the capacity (the head may go up to there), or the head itself (no room) while
    /// the alignment skip is pending or the cursor is poisoned. Called wherever any of them
    /// may change: after every call to `reserve` (`claim_slow`) and at the start.
    pub(super) fn sync_room(&mut self) {
        let cur = &self.inner.cur;
        self.room_end = if self.skip != 0 || !self.begun || cur.is_poisoned() {
            cur.head()
        } else {
            cur.cached_tail().wrapping_add(self.capacity() as u64)
        };
    }

    /// [`claim_slow`](Self::claim_slow)'s work.
    fn ask(&mut self, len: usize, wait: Wait) -> io::Result<*mut u8> {
        // Before anything below stores into the ring (the clear mark): in a forked copy its
        // pages may not even exist (`dont_fork`).
        self.inner.end.header_or_err()?;
        if len > self.max_len {
            // As for any other failure: the frames held back go out now.
            return Err(self.failed(too_long(len, self.max_len)));
        }
        if self.skip != 0 {
            self.align(wait)?;
        }
        let size = frame_size(len);
        // Pending frames are published if this fails (`failed`), or before it sleeps (by
        // `reserve`: head only, the consumer takes the unstamped first frame through it).
        let want = (size + HEADER).min(self.capacity());
        let mut need = size;
        // `reserve` publishes head before it sleeps: the pending frames need their clear mark.
        if self.inner.cur.unpublished() != 0 {
            Sender::clear_after(&self.inner.cur, &self.words);
        }
        loop {
            if let Err(e) = self.inner.reserve(need, want, wait) {
                return Err(self.failed(e));
            }
            // At most twice: the second time there are size + 8 bytes free.
            match self.link.room(&self.inner.cur, &self.words, size) {
                Room::Fits => {
                    if !self.begun {
                        self.begin();
                    }
                    return Ok(self.words.at(self.inner.cur.head()));
                }
                Room::Short(more) => need = more,
            }
        }
    }

    /// Begins the framing epoch at the head, where the first frame goes, for a producer that
    /// turned framed on a full ring (see `begun`), now that the room claimed for that frame
    /// reaches its header's word, as `into_framed` does when it can.
    #[cold]
    fn begin(&mut self) {
        // `reserve` checked the ownership in this call.
        Sender::begin(self.inner.end.header_checked(), &self.words, self.inner.cur.head());
        self.begun = true;
    }

    /// Skips to the first aligned position (once, before the first frame).
    #[cold]
    fn align(&mut self, wait: Wait) -> io::Result<()> {
        match self.inner.reserve(self.skip, self.skip, wait) {
            Ok(_) => {
                // Published at once, so the first frame is the first of a batch (`link::Sender`
                // tells by the unpublished bytes); the consumer skips the same bytes.
                // `reserve` checked the ownership in this call.
                let inner = &mut *self.inner;
                inner.cur.commit(inner.end.header_checked(), self.skip);
                self.skip = 0;
                Ok(())
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    /// No room (or worse): publish what is pending so the consumer is not left waiting for
    /// frames we hold back while we wait for it (or give up).
    #[cold]
    #[inline(never)]
    fn failed(&mut self, e: io::Error) -> io::Error {
        self.publish_pending();
        e
    }

    /// Writes the header of the frame of `len` payload bytes whose payload is at
    /// the head + 8, counts it, and publishes per the batching policy. `mark`: what the caller
    /// knows of the room for the clear mark after the frame.
    #[inline(always)]
    fn finish(&mut self, len: usize, mark: Mark) {
        let words = self.words;
        // The frame lies within the room claimed for it (a grant may have been truncated).
        if self.batch <= 1 {
            // Every caller (a send, a grant's commit) checked the ownership in this call.
            let inner = &mut *self.inner;
            self.link.put_and_publish(inner.end.header_checked(), &mut inner.cur, &words, len, mark);
            return;
        }
        self.link.put(&mut self.inner.cur, &words, len);
        self.frames_left = self.frames_left.saturating_sub(1);
        if self.frames_left == 0 || self.inner.cur.unpublished() >= self.batch_bytes || self.consumer_sleeping() {
            self.publish_pending();
        } else {
            self.rearm();
        }
    }

    /// Sets how far the batched fast path may write: the known free room less the clear mark,
    /// cut where the current batch must be published; nothing while no frame is pending (the
    /// first frame of a batch takes the general path, which writes it unstamped).
    #[inline]
    fn rearm(&mut self) {
        let head = self.inner.cur.head();
        let pending = self.inner.cur.unpublished();
        let budget = if self.batch <= 1
            || self.frames_left <= 1
            || self.skip != 0
            || !self.begun
            || pending == 0
            || self.inner.cur.is_poisoned()
        {
            0
        } else {
            // One byte short of the batch's end: the frame that completes a batch takes the
            // general path, which publishes it.
            (self.batch_bytes.saturating_sub(pending).saturating_sub(1))
                .min(self.inner.cur.free_cached().saturating_sub(HEADER))
        };
        self.fast_until = head.wrapping_add(budget as u64);
    }

    /// Publishes every pending frame now (and wakes the consumer if it sleeps), then reports
    /// whether the ring can still take frames. Only needed with [`set_batch`](Self::set_batch);
    /// cheap when nothing is pending.
    ///
    /// # Errors
    ///
    /// `Unsupported` in a forked child (nothing is published); `ConnectionAborted` once another
    /// process took this end's role over (nothing is published); `InvalidData` when the ring
    /// is poisoned (every send after this report fails with `InvalidData` too); `BrokenPipe`
    /// when the consumer closed or its process died (the frames are published, but nobody will
    /// read them).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    /// tx.set_batch(8);
    /// tx.send(b"held back")?;
    /// assert_eq!(rx.try_recv().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// tx.flush()?;
    /// assert_eq!(&*rx.try_recv()?.unwrap(), b"held back");
    /// drop(rx);
    /// assert_eq!(tx.flush().unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn flush(&mut self) -> io::Result<()> {
        self.disarm();
        let inner = &mut *self.inner;
        let hdr = inner.end.header_or_err()?;
        self.link.publish(hdr, &mut inner.cur, &self.words);
        self.frames_left = self.batch;
        self.rearm();
        self.check_usable()
    }

    /// Leaves the batched fast path no room, for a call about to publish. A publish may wake a
    /// task of this thread directly, through its waker: the caller's code, which may panic, and
    /// a caller that catches the panic goes on with this producer. Left armed with nothing
    /// pending, the fast path would write its frames stamped, with no clear mark after them,
    /// where the consumer takes them at once and reads on into stale words.
    #[inline]
    fn disarm(&mut self) {
        self.fast_until = self.inner.cur.head();
    }

    /// Publishes every pending frame (nothing in a forked copy) and starts a new batch.
    #[inline]
    fn publish_pending(&mut self) {
        self.disarm();
        // A forked copy publishes nothing; its next send reports `Unsupported`.
        let inner = &mut *self.inner;
        if let Some(hdr) = inner.end.header() {
            self.link.publish(hdr, &mut inner.cur, &self.words);
        }
        self.frames_left = self.batch;
        self.rearm();
    }

    /// Lets up to `frames` consecutive frames share one cursor store (at least 1; 1, the
    /// default, publishes every frame as it is sent). Pending frames are also published when a
    /// quarter of the ring is pending, when the ring is full, when the consumer sleeps, on
    /// [`flush`](Self::flush) and on drop. Changing it publishes what is pending. See
    /// [`docs::framing`](crate::docs::framing), "Batching on the producer side".
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = mirror_ring::channel(1 << 16)?;
    /// let mut tx = tx.into_framed();
    /// tx.set_batch(32);
    /// assert_eq!(tx.batch(), 32);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_batch(&mut self, frames: usize) -> &mut Self {
        self.batch = frames.max(1);
        self.publish_pending();
        self
    }

    /// The batch size set by [`set_batch`](Self::set_batch) (1 by default).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = mirror_ring::channel(4096)?;
    /// assert_eq!(tx.into_framed().batch(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Whether the consumer is gone: it closed its end, or its process died.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let mut tx = tx.into_framed();
    /// assert!(!tx.is_abandoned());
    /// drop(rx);
    /// assert!(tx.is_abandoned());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_abandoned(&self) -> bool {
        self.inner.is_abandoned()
    }

    /// What this end's blocking calls have done so far (see [`Stats`](crate::Stats)): the
    /// byte-level producer's counters, which it keeps across
    /// [`into_framed`](Producer::into_framed) and [`into_inner`](Self::into_inner).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(1 << 16)?;
    /// let (mut tx, _rx) = (tx.into_framed(), rx.into_framed());
    /// tx.send(&vec![1; 65_500])?;
    /// let err = tx.send_timeout(&[2; 100], std::time::Duration::from_millis(5)).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// assert_eq!(tx.stats().timed_out, 1); // it parked: 5 ms is past the spin budget
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stats(&self) -> crate::Stats {
        self.inner.stats()
    }

    /// A handle to this end's counters that another thread can read (see
    /// [`StatsHandle`](crate::StatsHandle)).
    pub fn stats_handle(&self) -> crate::StatsHandle {
        self.inner.stats_handle()
    }

    /// Publishes what is pending (not in a forked copy) and gives the byte-level producer back. Further bytes follow
    /// the last frame directly (the consumer must know where framing stops).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let (tx, _rx) = mirror_ring::channel(4096)?;
    /// let mut tx = tx.into_framed();
    /// tx.send(b"frame")?;
    /// let mut raw = tx.into_inner();
    /// raw.write_all(b"raw bytes")?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_inner(self) -> Producer {
        let mut me = ManuallyDrop::new(self);
        me.publish_or_close();
        // The byte end writes no clear mark: a framed consumer must stop trusting stamps
        // before any byte of it can be seen.
        if let Some(hdr) = me.inner.end.header() {
            hdr.end_framing();
        }
        // SAFETY: `me` is never used or dropped again; the other fields need no drop.
        unsafe { ManuallyDrop::take(&mut me.inner) }
    }
}

impl Drop for FramedProducer {
    /// Publishes what is pending (the byte end's drop would publish head, but not the stamp
    /// and the clear mark a frame needs), then drops the byte end, which closes the ring.
    fn drop(&mut self) {
        self.publish_or_close();
        // SAFETY: dropped once, here (`publish_or_close` returned, so it did not drop it);
        // `into_inner` takes the field out without running this.
        unsafe { ManuallyDrop::drop(&mut self.inner) };
    }
}

impl FramedProducer {
    /// Publishes what is pending, for `drop` and `into_inner`, whose caller never sees this end
    /// again if it unwinds. The publish may wake a task of this thread through its waker, which
    /// may panic: then the byte end is dropped (the ring closed) before the panic goes on, or
    /// the consumer would wait for a close that never comes. The callers must not touch
    /// `inner` after an unwind out of here.
    fn publish_or_close(&mut self) {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.publish_pending())) {
            // SAFETY: dropped once, here: the callers (see above) never drop or use it after
            // this unwinds.
            unsafe { ManuallyDrop::drop(&mut self.inner) };
            std::panic::resume_unwind(panic);
        }
    }

    /// Whether a frame may be written without asking the ring: this end belongs to this
    /// process, its cursor is not poisoned and the consumer has not closed (the checks
    /// `Producer::reserve` makes before it looks at the free space).
    #[inline(always)]
    fn may_write(&self) -> bool {
        self.inner.end.header_as(Role::Producer).is_some_and(|hdr| !hdr.is_closed(Role::Consumer))
            && !self.inner.cur.is_poisoned()
    }

    /// Whether the consumer is asleep waiting for data, for a call that has checked the
    /// ownership. A hint only, so no barrier: the frames it is about are not published yet, so
    /// no store of ours needs ordering before it; the wake-up itself comes with the publish
    /// (`link::Sender::publish`).
    #[inline(always)]
    fn consumer_sleeping(&self) -> bool {
        // Relaxed: a hint (see above).
        self.inner.end.header_checked().word(Word::Data).load(Ordering::Relaxed) != 0
    }

    /// The error a send reports now, if any: `Unsupported` in a forked copy, `InvalidData`
    /// once the ring is poisoned, `BrokenPipe` once the consumer closed or died.
    fn check_usable(&mut self) -> io::Result<()> {
        if self.inner.end.header_or_err()?.is_poisoned() && !self.inner.cur.is_poisoned() {
            // Latched, as a wait for room latches it: the sends after this report fail too
            // (`docs::trust_model`), and the fast paths' room goes with it.
            self.inner.cur.saw_poison();
            self.sync_room();
        }
        if self.inner.cur.is_poisoned() {
            return Err(poisoned_error());
        }
        let inner = &*self.inner;
        // (The same header: this call checked the ownership above.)
        if inner.end.header_checked().is_closed(Role::Consumer) {
            return Err(producer_error(Stop::Closed));
        }
        if inner.end.peer_gone(inner.cur.counters()) {
            return Err(producer_error(Stop::PeerDied));
        }
        Ok(())
    }
}

impl fmt::Debug for FramedProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramedProducer")
            .field("max_frame_len", &self.max_len)
            .field("batch", &self.batch)
            .field("unpublished_bytes", &self.inner.cur.unpublished())
            .field("ring", &self.inner)
            .finish()
    }
}

/// The space for one message, lent by [`FramedProducer::reserve`]: one contiguous, 8-byte
/// aligned `&mut [u8]` of exactly the requested length, inside the ring. Fill it, then
/// [`commit`](FrameGrant::commit); dropping it uncommitted sends nothing.
#[must_use = "a frame grant sends nothing until it is committed"]
pub struct FrameGrant<'a> {
    /// Where the frame's header goes; the payload follows.
    header: *mut u8,
    len: usize,
    producer: &'a mut FramedProducer,
}

impl FrameGrant<'_> {
    /// Sends the frame (published per the producer's batching, like
    /// [`send`](FramedProducer::send)).
    ///
    /// # Errors
    ///
    /// `Unsupported` in a forked child (a grant held across `fork()`), `ConnectionAborted`
    /// once another process took this end's role over: nothing is written or published. The
    /// room itself was taken when the grant was made.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    /// let mut grant = tx.reserve(3)?;
    /// grant.copy_from_slice(b"abc");
    /// grant.commit()?;
    /// assert_eq!(&*rx.recv()?.unwrap(), b"abc");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[inline(always)]
    pub fn commit(self) -> io::Result<()> {
        // In a forked copy the ring's pages may not even exist (`dont_fork`): write nothing.
        self.producer.inner.end.header_or_err_as(Role::Producer)?;
        // The grant holds frame_size(reserved len) >= frame_size(self.len) free bytes from
        // `header` (and the clear mark's 8 after the shorter frame): `finish` writes the header.
        // (A grant may have been truncated: the room for the mark is checked.)
        self.producer.finish(self.len, Mark::Check);
        Ok(())
    }

    /// Shortens the frame to `len` bytes (no effect if it is not longer), so a message can be
    /// built in a grant of its largest possible size and sent at its real size.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    /// let mut grant = tx.reserve(64)?;
    /// grant[..2].copy_from_slice(b"hi");
    /// grant.truncate(2);
    /// grant.commit()?;
    /// assert_eq!(&*rx.recv()?.unwrap(), b"hi");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl Deref for FrameGrant<'_> {
    type Target = [u8];
    // `#[inline]`: without it, once `lent` made this more than a leaf function, rustc stopped
    // inlining it into other crates, and a message written in place paid a call and lost its
    // constant length: 8-byte frames built in place fell from 229-249 to 66-87 M messages/s
    // between two cores (`BENCHMARKS.md`, "A grant's slice out of line"). So for every grant.
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: [header + 8, header + 8 + len) is reserved free space (inside the two views),
        // initialised memory (zeroed at creation or written before), and no other reference to
        // it exists while the grant borrows the producer mutably (with a consumer that keeps
        // the protocol: `docs::trust_model`, lending calls).
        unsafe { std::slice::from_raw_parts(self.header.add(HEADER), self.producer.inner.end.lent(self.len)) }
    }
}

impl DerefMut for FrameGrant<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref; the grant is the only reference to these bytes.
        unsafe { std::slice::from_raw_parts_mut(self.header.add(HEADER), self.producer.inner.end.lent(self.len)) }
    }
}

impl fmt::Debug for FrameGrant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameGrant").field("len", &self.len).finish()
    }
}
