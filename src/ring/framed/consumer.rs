//! The receiving end of a framed ring: `recv` lends each message as one slice straight out of
//! the ring, `recv_batch` hands a run of them to a closure, `recv_into` copies one out.

use std::fmt;
use std::io;
use std::ops::Deref;
use std::time::Duration;

use super::link::Receiver;
use super::wire::{Stamp, HEADER};
use super::FramedConsumer;
use crate::header::Role;
use crate::protocol::Stop;
use crate::ring::{consumer_error, Consumer, Wait};
use crate::wait::slip;

impl FramedConsumer {
    /// The ring's capacity in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = mirror_ring::channel(1 << 16)?;
    /// assert_eq!(rx.into_framed().capacity(), 65536);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// The longest message this ring can hold: `capacity - 8`, and at most `u32::MAX - 7` on
    /// rings of 4 GiB and more. A header claiming more is corrupt.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = mirror_ring::channel(1 << 16)?;
    /// assert_eq!(rx.into_framed().max_frame_len(), 65528);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn max_frame_len(&self) -> usize {
        self.max_len
    }

    /// Receives the next message, blocking until one arrives. `Ok(None)` means end of stream:
    /// the producer closed the ring and every frame was read.
    ///
    /// After a run of frames that were all there at once, a call that finds none waits 1 µs
    /// before it looks again, to let a streaming producer get ahead
    /// ([`docs::framing`](crate::docs::framing), "Which side sets the pace").
    ///
    /// # Errors
    ///
    /// `UnexpectedEof` when the producer's process died without closing (after every frame it
    /// committed was read: see [`docs::lifecycle`](crate::docs::lifecycle), "Where the newcomer
    /// resumes"); `InvalidData` when a frame header is corrupt or the ring is poisoned (for
    /// good: every later call fails too); `Unsupported` in a forked child; `ConnectionAborted`
    /// once another process took this end's role over.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    /// std::thread::spawn(move || tx.send(b"ping"));
    /// let frame = rx.recv()?.expect("one frame, then end of stream");
    /// assert_eq!(&*frame, b"ping");
    /// drop(frame); // releases its bytes
    /// assert!(rx.recv()?.is_none());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[inline]
    pub fn recv(&mut self) -> io::Result<Option<Frame<'_>>> {
        self.recv_with(Wait::Until(None))
    }

    /// Receives the next message if one is there; never blocks.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when no frame is readable and more may come; otherwise as
    /// [`recv`](Self::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    /// assert_eq!(rx.try_recv().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// tx.send(b"x")?;
    /// assert_eq!(&*rx.try_recv()?.unwrap(), b"x");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[inline]
    pub fn try_recv(&mut self) -> io::Result<Option<Frame<'_>>> {
        self.recv_with(Wait::No)
    }

    /// Receives the next message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// `TimedOut` when nothing arrived in time; otherwise as [`recv`](Self::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let (_tx, rx) = mirror_ring::channel(4096)?;
    /// let mut rx = rx.into_framed();
    /// let err = rx.recv_timeout(Duration::from_millis(5)).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> io::Result<Option<Frame<'_>>> {
        self.recv_with(Wait::within(timeout))
    }

    /// Receives the next message by copying it into `buf` (cleared first), blocking until one
    /// arrives; returns its length, or `Ok(None)` at the end of the stream. The frame is
    /// consumed before this returns (its bytes reach the producer with the consumer's next
    /// release, as a dropped [`Frame`]'s do: [`docs::framing`](crate::docs::framing),
    /// "Releases").
    ///
    /// This is the receive to use with an untrusted producer: a [`Frame`] lends the ring's
    /// own bytes, which a hostile process could change while you look at them, whereas here
    /// each byte is read exactly once into memory that is yours (between processes the copy
    /// tolerates a peer writing at the same time; see
    /// [`docs::trust_model`](crate::docs::trust_model)). Validate `buf`, not the ring.
    ///
    /// `buf` grows to the frame's length, which the producer chooses, up to
    /// [`max_frame_len`](Self::max_frame_len): with an untrusted ring, check its
    /// [`capacity`](Self::capacity) before you receive from it.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv); `OutOfMemory` when `buf` cannot grow to the frame's length (the
    /// frame stays in the ring, for a later call or for [`recv`](Self::recv)). `buf` is left
    /// empty on any error.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    /// tx.send(b"copied out")?;
    /// drop(tx);
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.recv_into(&mut buf)?, Some(10));
    /// assert_eq!(buf, b"copied out");
    /// assert_eq!(rx.recv_into(&mut buf)?, None);
    /// assert!(buf.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        self.copy_with(buf, Wait::Until(None))
    }

    /// Like [`recv_into`](Self::recv_into), but never blocks.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when no frame is readable and more may come; otherwise as
    /// [`recv_into`](Self::recv_into).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.try_recv_into(&mut buf).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// tx.send(b"x")?;
    /// assert_eq!(rx.try_recv_into(&mut buf)?, Some(1));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        self.copy_with(buf, Wait::No)
    }

    /// Like [`recv_into`](Self::recv_into), but waits at most `timeout`.
    ///
    /// # Errors
    ///
    /// `TimedOut` when nothing arrived in time; otherwise as [`recv_into`](Self::recv_into).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let (_tx, rx) = mirror_ring::channel(4096)?;
    /// let mut rx = rx.into_framed();
    /// let err = rx.recv_into_timeout(&mut Vec::new(), Duration::from_millis(5)).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_into_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> io::Result<Option<usize>> {
        self.copy_with(buf, Wait::within(timeout))
    }

    fn copy_with(&mut self, buf: &mut Vec<u8>, wait: Wait) -> io::Result<Option<usize>> {
        buf.clear();
        let racy = self.inner.end.peer.is_some();
        let Some(frame) = self.recv_with(wait)? else { return Ok(None) };
        let len = frame.len;
        if let Err(e) = buf.try_reserve(len) {
            // Nothing released: the frame stays at the cursor for the next receive.
            std::mem::forget(frame);
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("cannot allocate {len} bytes to copy a frame into (it stays in the ring): {e}"),
            ));
        }
        // SAFETY: the payload is `len` readable bytes of the ring (checked when the frame was
        // made), `buf` has room for `len` bytes (reserved above) and is our own memory, so the
        // two do not overlap; `copy_out` initialises all `len` bytes before `set_len`.
        unsafe {
            crate::ring::copy_out(frame.payload, buf.as_mut_ptr(), len, racy);
            buf.set_len(len);
        }
        drop(frame);
        Ok(Some(len))
    }

    #[inline(always)]
    fn recv_with(&mut self, wait: Wait) -> io::Result<Option<Frame<'_>>> {
        let (len, size) = match self.poll_fast(wait, true)? {
            Some(frame) => {
                // (A u64 never wraps here: one add, no saturation on the hot path.)
                self.streak += 1;
                frame
            }
            None => match self.recv_slow(wait)? {
                Some(frame) => frame,
                None => return Ok(None),
            },
        };
        // SAFETY: the frame was just checked at the cursor.
        Ok(Some(unsafe { self.frame_at_cursor(len, size) }))
    }

    /// The frame a receive in this poll found and forgot (`mem::forget`: nothing released),
    /// handed out again from its length without a second look at the ring, where a hostile
    /// producer could have changed the header meanwhile: for the async `recv`, which finds
    /// the frame in one borrow and returns it in another.
    ///
    /// # Safety
    ///
    /// The last call on this consumer was a receive that returned a frame of `len` bytes, and
    /// that frame was forgotten.
    #[cfg(feature = "tokio")]
    pub(crate) unsafe fn frame_found(&mut self, len: usize) -> Frame<'_> {
        // SAFETY: the caller vouches that the frame at the cursor was checked, and nothing
        // moved the cursor since.
        unsafe { self.frame_at_cursor(len, super::wire::frame_size(len)) }
    }

    /// The frame of `len` bytes, `size` in the ring, at the cursor.
    ///
    /// # Safety
    ///
    /// Its header is at the cursor (offset < N) and `size = frame_size(len) <= N` bytes from it
    /// are the frame's, checked against the producer's room or the published head.
    #[inline(always)]
    unsafe fn frame_at_cursor(&mut self, len: usize, size: usize) -> Frame<'_> {
        // SAFETY: per the caller, the payload lies inside the two views.
        let payload = unsafe { self.words.at(self.inner.cur.tail()).add(HEADER) };
        Frame { payload, len, size, consumer: self }
    }

    /// The fast path of every receive: this process owns the end (the first check every call
    /// makes) and the frame at the cursor is stamped: `Ok(Some((len, size)))`. Or, for a call
    /// that does not wait, between threads (no peer process to watch), the word there says "not
    /// yet" and nothing else needs a look (`link::Receiver::idle`): `WouldBlock` at once.
    /// `Ok(None)`: the slow path decides. `release_early`: first release what was consumed if
    /// the producer is parked waiting for room.
    #[inline(always)]
    fn poll_fast(&mut self, wait: Wait, release_early: bool) -> io::Result<Option<(usize, usize)>> {
        let Some(hdr) = self.inner.end.header_as(Role::Consumer) else { return Ok(None) };
        if release_early && Receiver::producer_waits(hdr) {
            self.release_now();
        }
        // (The same header: this call checked the ownership above.)
        let hdr = self.inner.end.header_checked();
        match self.link.poll_word(hdr, &self.inner.cur, &self.words) {
            Ok(frame) => Ok(Some(frame)),
            Err(word) if matches!(wait, Wait::No) && self.inner.end.peer.is_none() => {
                let inner = &mut self.inner;
                // This call checked the ownership above.
                if self.link.idle(inner.end.header_checked(), &mut inner.cur, word) {
                    self.streak = 0;
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(None)
            }
            Err(_) => Ok(None),
        }
    }

    /// No stamped frame at the cursor (or a forked copy): releases what was consumed, then
    /// looks again, at the published head if need be, and waits per `wait`. `Ok(None)` at the
    /// end of the stream.
    #[inline(never)]
    fn recv_slow(&mut self, wait: Wait) -> io::Result<Option<(usize, usize)>> {
        self.inner.end.header_or_err()?;
        if let Wait::Until(deadline) = wait {
            if self.streak >= u64::from(SLIP_AFTER) {
                slip(deadline, self.inner.end.spin_budget());
            }
        }
        self.streak = 0;
        if self.skip != 0 && !self.align(wait)? {
            return Ok(None);
        }
        let hdr = self.inner.end.header_checked();
        // (`look` releases what was consumed first: a producer waiting for room needs it.)
        let (link, cur, end, words) = (&mut self.link, &mut self.inner.cur, &self.inner.end, &self.words);
        let looked = match link.look(hdr, cur, words) {
            Some(r) => r,
            None => match wait {
                Wait::No if end.peer_gone(cur.counters()) => link.look(hdr, cur, words).unwrap_or(Err(Stop::PeerDied)),
                Wait::No => return Err(io::ErrorKind::WouldBlock.into()),
                Wait::Until(deadline) => {
                    let counters = cur.counters().clone();
                    end.wait(hdr, &counters, deadline, |hdr| link.look(hdr, cur, words))
                }
            },
        };
        let looked = match looked {
            // Frames stamped above the head by a producer that died before its head store are
            // committed: delivered before the death.
            Err(Stop::PeerDied) => link.look_after_death(hdr, cur, words).unwrap_or(Err(Stop::PeerDied)),
            looked => looked,
        };
        match looked {
            Ok(frame) => Ok(Some(frame)),
            Err(Stop::Closed) => Ok(None),
            Err(Stop::Corrupt) => Err(self.corrupt()),
            Err(stop) => Err(consumer_error(stop)),
        }
    }

    /// The current run of frames taken without a miss (tests of the slip).
    #[cfg(test)]
    pub(crate) fn streak(&self) -> u64 {
        self.streak
    }

    /// Releases what was consumed now (the producer is waiting for room).
    #[cold]
    #[inline(never)]
    fn release_now(&mut self) {
        if let Some(hdr) = self.inner.end.header_as(Role::Consumer) {
            self.link.publish(hdr, &mut self.inner.cur);
        }
    }

    /// Hands every frame readable now to `f`, in order, each as one contiguous `&[u8]`, then
    /// gives all their bytes back to the producer at once: one store of the consumer's cursor
    /// for the whole batch, and a tight loop with no [`Frame`] per message. Frames are found by
    /// their stamps, as `recv` finds them: the producer's cursor is loaded only where no stamp
    /// says more ([`docs::framing`](crate::docs::framing)). Blocks until at least one frame is readable. Returns how many frames `f`
    /// saw; `Ok(0)` means end of stream, as `recv`'s `None` does.
    ///
    /// One call takes at most about an eighth of the ring (and at least one frame), so that
    /// working off a large backlog gives the producer room back as it goes; call it in a loop.
    /// Like [`recv`](Self::recv), a call that finds nothing right after a run of frames waits
    /// 1 µs before it looks again ([`docs::framing`](crate::docs::framing), "Which side sets
    /// the pace").
    ///
    /// If `f` panics, the frames it has already seen (including the one it panicked on) are
    /// released. A corrupt header after some good frames ends the batch: the good frames are
    /// delivered and released, and the next call fails.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv): `UnexpectedEof` after a producer died, `InvalidData` for a
    /// corrupt header or a poisoned ring.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    /// for word in ["one", "two", "three"] {
    ///     tx.send(word.as_bytes())?;
    /// }
    /// drop(tx);
    /// let mut words = Vec::new();
    /// while rx.recv_batch(|frame| words.push(String::from_utf8_lossy(frame).into_owned()))? > 0 {}
    /// assert_eq!(words, ["one", "two", "three"]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_batch(&mut self, f: impl FnMut(&[u8])) -> io::Result<usize> {
        self.batch_with(Wait::Until(None), f)
    }

    /// Like [`recv_batch`](Self::recv_batch), but never blocks.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when no frame is readable and more may come; otherwise as
    /// [`recv_batch`](Self::recv_batch).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    /// assert_eq!(rx.try_recv_batch(|_| {}).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// tx.send(&[1; 10])?;
    /// tx.send(&[2; 20])?;
    /// let mut total = 0;
    /// assert_eq!(rx.try_recv_batch(|frame| total += frame.len())?, 2);
    /// assert_eq!(total, 30);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_recv_batch(&mut self, f: impl FnMut(&[u8])) -> io::Result<usize> {
        self.batch_with(Wait::No, f)
    }

    /// Like [`recv_batch`](Self::recv_batch), but waits at most `timeout` for the first frame.
    ///
    /// # Errors
    ///
    /// `TimedOut` when nothing arrived in time; otherwise as [`recv_batch`](Self::recv_batch).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let (_tx, rx) = mirror_ring::channel(4096)?;
    /// let mut rx = rx.into_framed();
    /// let err = rx.recv_batch_timeout(Duration::from_millis(5), |_| {}).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_batch_timeout(&mut self, timeout: Duration, f: impl FnMut(&[u8])) -> io::Result<usize> {
        self.batch_with(Wait::within(timeout), f)
    }

    #[inline(always)]
    fn batch_with(&mut self, wait: Wait, mut f: impl FnMut(&[u8])) -> io::Result<usize> {
        // (No early release here: the batch releases everything when it ends.)
        let (mut len, mut size) = match self.poll_fast(wait, false)? {
            Some(frame) => frame,
            None => match self.recv_slow(wait)? {
                Some(frame) => frame,
                None => return Ok(0),
            },
        };
        let words = self.words;
        let start = self.inner.cur.tail();
        // At most about an eighth of the ring per call (at least one frame): a batch releases
        // nothing until it ends, and a producer waiting on a full ring should not wait for a
        // whole ring's worth of frames. Frames past the bound are left to the next call.
        let limit = self.batch_limit;
        // Stamped frames are taken only while they end at or before `bound`, so the room
        // `bound - q` never wraps. Two frames are not checked against it, and may end past
        // it: the first (taken before the bound was known) and any taken through head below
        // (committed, so inside the producer's room). After either, `bound` moves to that
        // frame's end: from there no frame is taken by its stamp, and the limit ends the batch.
        let mut bound = self.link.batch_bound(start, limit);
        let reach =
            |bound: u64, end: u64| if end.wrapping_sub(start) > bound.wrapping_sub(start) { end } else { bound };
        bound = reach(bound, start.wrapping_add(size as u64));
        // Releases what `f` has seen, also if it panics.
        let mut done = Release { consumer: self, seen: start };
        // The loop keeps the cursor (`done.seen`) and the last header (`known`) in locals: `f`
        // may be opaque code, after which fields would have to be loaded again.
        let mut known = done.consumer.link.known();
        // The header, for the epoch check of each frame taken by its stamp below, and the epoch
        // stamps are trusted under (both kept at hand, as `known` is). (This call owns the end:
        // checked in `poll_fast` or `recv_slow`.)
        let hdr: *const crate::header::Header = done.consumer.inner.end.header_checked();
        let mut epoch = done.consumer.link.epoch();
        let mut frames = 0;
        let corrupt = loop {
            let q = done.seen;
            // Counted before `f` runs, so a panic in `f` releases this frame too.
            done.seen = q.wrapping_add(size as u64);
            frames += 1;
            // SAFETY: the frame's header is at `q` (offset < N) with size = frame_size(len)
            // bytes (checked against the producer's room or the head), inside the two views;
            // the producer does not write them until they are released, after `f` returns (a
            // producer that keeps the protocol: `docs::trust_model`, lending calls).
            f(unsafe { std::slice::from_raw_parts(words.at(q).add(HEADER), len) });
            // `f` may have forked: in the child this call's copy touches the ring no more
            // (`Release` releases nothing there; the child's next call is `Unsupported`).
            if done.consumer.inner.end.forked() {
                break false;
            }
            let q = done.seen;
            // SAFETY: the header of this end's ring, mapped while the consumer (borrowed by
            // `done` for this whole loop) lives.
            let hdr = unsafe { &*hdr };
            // The room before the load: while stamps are not trusted `bound` is the cursor, and
            // the word there may be a byte producer's, which no load may race (`via_head`).
            if known.fits(bound.wrapping_sub(q)) {
                let word = Receiver::batch_word(&words, q);
                if let Some(frame) = known.repeat(Stamp, word, q, bound.wrapping_sub(q)) {
                    if Receiver::epoch_is(hdr, epoch) {
                        (len, size) = frame;
                        continue;
                    }
                }
            }
            let c = done.sync();
            let found = c.link.poll_within(hdr, q, bound, &words);
            epoch = c.link.epoch();
            (len, size) = match found {
                Some(frame) => {
                    known = c.link.known();
                    frame
                }
                None if q.wrapping_sub(start) >= limit as u64 => break false,
                // This call owns the end (checked above or in `recv_slow`).
                None => match c.link.committed(c.inner.end.header_checked(), &mut c.inner.cur, &words) {
                    Some(Ok(frame)) => {
                        let end = q.wrapping_add(frame.1 as u64);
                        // Stamps no longer trusted (this look, or the one by stamp before it,
                        // found the epoch moved on): nothing past this frame is taken, and no
                        // word beyond it loaded (`via_head`).
                        bound = if c.link.armed() { reach(bound, end) } else { end };
                        frame
                    }
                    Some(Err(_)) => break true,
                    None => break false,
                },
            };
        };
        drop(done);
        // A batch's frames count towards the run that makes a blocking call slip.
        self.streak += frames as u64;
        if corrupt {
            // Deliver the good frames now; the next call reports the corruption (the ring is
            // poisoned already).
            let _ = self.corrupt();
        }
        Ok(frames)
    }

    /// Skips to the first aligned position (once, before the first frame). `Ok(false)` at end
    /// of stream.
    #[cold]
    fn align(&mut self, wait: Wait) -> io::Result<bool> {
        let readable = self.inner.available_or_rest(self.skip, wait, true)?;
        if readable < self.skip {
            return if readable == 0 { Ok(false) } else { Err(self.corrupt()) };
        }
        // Released at once, on every path (blocking or not): a producer waiting for room for
        // a frame of the whole ring needs these bytes back.
        self.inner.release(self.skip);
        self.skip = 0;
        self.link.disarm(&self.inner.cur);
        Ok(true)
    }

    #[cold]
    #[inline(never)]
    fn corrupt(&mut self) -> io::Error {
        // No frame is taken by its stamp any more either.
        self.link.disarm(&self.inner.cur);
        let _ = self.inner.poison();
        io::Error::new(
            io::ErrorKind::InvalidData,
            "corrupt frame header from the producer (or the two ends were made framed at different stream \
             positions), or a poisoned ring: the ring is poisoned for good",
        )
    }

    /// Whether the producer is gone: it closed its end, or its process died. Frames it sent
    /// may still be readable.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    /// tx.send(b"last words")?;
    /// drop(tx);
    /// assert!(rx.is_abandoned());
    /// assert!(rx.recv()?.is_some());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_abandoned(&self) -> bool {
        self.inner.is_abandoned()
    }

    /// What this end's blocking calls have done so far (see [`Stats`](crate::Stats)): the
    /// byte-level consumer's counters, which it keeps across
    /// [`into_framed`](Consumer::into_framed) and [`into_inner`](Self::into_inner).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let (_tx, mut rx) = (tx.into_framed(), rx.into_framed());
    /// let err = rx.recv_timeout(std::time::Duration::from_millis(5)).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// let handle = rx.stats_handle(); // readable from another thread
    /// assert_eq!((rx.stats().timed_out, handle.get().timed_out), (1, 1));
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

    /// Gives the byte-level consumer back, positioned after the last frame read.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let (mut tx, rx) = (tx.into_framed(), rx.into_framed());
    /// tx.send(b"abc")?;
    /// let mut raw = rx.into_inner();
    /// let grant = raw.read_grant(16)?; // header (8 bytes) + "abc" + padding to 8
    /// assert_eq!(&grant[8..11], b"abc");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_inner(mut self) -> Consumer {
        // The byte API counts on the cached head again, and the producer gets the releases.
        self.inner.cur.catch_up_head();
        self.release_now();
        self.inner
    }
}

/// Frames taken in a row (each found at once, or in batches) after which a blocking receive
/// that finds none slips: the consumer has caught up with a producer that is streaming.
pub(super) const SLIP_AFTER: u32 = 16;

/// Releases the frames a batch has handed out (one store), when the batch ends or unwinds.
struct Release<'a> {
    consumer: &'a mut FramedConsumer,
    /// The end of the last frame handed out: where the consumer's cursor goes.
    seen: u64,
}

impl Release<'_> {
    /// The consumer, with its cursor moved to `seen`.
    #[inline(always)]
    fn sync(&mut self) -> &mut FramedConsumer {
        let cur = &mut self.consumer.inner.cur;
        cur.advance_stamped(self.seen.wrapping_sub(cur.tail()) as usize);
        self.consumer
    }
}

impl Drop for Release<'_> {
    #[inline]
    fn drop(&mut self) {
        // Does nothing in a forked copy (which could not have read the frames anyway).
        self.sync().release_now();
    }
}

impl fmt::Debug for FramedConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramedConsumer")
            .field("max_frame_len", &self.max_len)
            .field("capacity", &self.capacity())
            .field("position", &self.inner.cur.tail())
            .field("unreleased_bytes", &self.inner.cur.unpublished())
            .field("poisoned", &self.inner.cur.is_poisoned())
            .finish()
    }
}

/// One message, lent straight out of the ring by [`FramedConsumer::recv`]: derefs to its
/// bytes (one contiguous, 8-byte aligned slice). Dropping it gives the bytes back to the
/// producer, with the consumer's next release: once a quarter of the ring (at most 64 KiB) is
/// waiting, or at the next receive if the producer is parked for room or the receive finds no
/// frame ([`docs::framing`](crate::docs::framing), "Releases").
///
/// # Examples
///
/// ```
/// let (tx, rx) = mirror_ring::channel(4096)?;
/// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
/// tx.send(&1234u64.to_le_bytes())?;
/// let frame = rx.recv()?.unwrap();
/// assert_eq!(frame.len(), 8);
/// assert_eq!(frame.as_ptr() as usize % 8, 0);
/// assert_eq!(u64::from_le_bytes((*frame).try_into().unwrap()), 1234);
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "a frame holds its message; dropping it releases the bytes unread"]
pub struct Frame<'a> {
    payload: *const u8,
    len: usize,
    /// The bytes the frame occupies in the ring: `frame_size(len)`.
    size: usize,
    consumer: &'a mut FramedConsumer,
}

impl Deref for Frame<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: [payload, payload + len) lies within the readable bytes (checked against the
        // frame header and the readable count), inside the two views; the producer does not
        // write them until they are released, which needs the consumer this frame borrows
        // mutably (a producer that keeps the protocol: `docs::trust_model`, lending calls).
        unsafe { std::slice::from_raw_parts(self.payload, self.len) }
    }
}

impl Drop for Frame<'_> {
    #[inline]
    fn drop(&mut self) {
        // The frame lies within what the producer published (checked when it was handed out).
        // The release reaches the producer with the next batch of releases (nothing in a
        // forked copy, a frame held across `fork()`).
        let c = &mut *self.consumer;
        if c.link.consumed(&mut c.inner.cur, self.size) {
            c.release_now();
        }
    }
}

impl fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame").field("len", &self.len).finish()
    }
}
