//! The receiving end of a framed ring: `recv` lends each message as one slice straight out of
//! the ring, `recv_batch` hands a run of them to a closure, `recv_into` copies one out.

use std::fmt;
use std::io;
use std::ops::Deref;
use std::time::Duration;

use super::wire::HEADER;
use super::FramedConsumer;
use crate::ring::{Consumer, Wait};

impl FramedConsumer {
    /// The ring's capacity in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = mirror_ring::channel(4096)?;
    /// assert_eq!(rx.into_framed().capacity(), 4096);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// The longest message this ring can hold: `capacity - 8`. A header claiming more is
    /// corrupt.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = mirror_ring::channel(4096)?;
    /// assert_eq!(rx.into_framed().max_frame_len(), 4088);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn max_frame_len(&self) -> usize {
        self.max_len
    }

    /// Receives the next message, blocking until one arrives. `Ok(None)` means end of stream:
    /// the producer closed the ring and every frame was read.
    ///
    /// # Errors
    ///
    /// `UnexpectedEof` when the producer's process died without closing (after every frame it
    /// published was read); `InvalidData` when a frame header is corrupt or the ring is
    /// poisoned (for good: every later call fails too).
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
    /// arrives; returns its length, or `Ok(None)` at the end of the stream. The frame's bytes
    /// are released before this returns.
    ///
    /// This is the receive to use with an untrusted producer: a [`Frame`] lends the ring's
    /// own bytes, which a hostile process could change while you look at them, whereas here
    /// each byte is read exactly once into memory that is yours (between processes the copy
    /// tolerates a peer writing at the same time; see the crate docs, "Trust model").
    /// Validate `buf`, not the ring.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv); `buf` is left empty then.
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
        buf.reserve(len);
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
        // Fast path: a header's worth known readable, and this process owns the end (the first
        // check `available` makes).
        if self.inner.cur.readable_cached() < HEADER || self.skip != 0 || self.inner.end.header().is_none() {
            match self.refill(wait) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let readable = self.inner.cur.readable_cached();
        let header = self.inner.read_ptr();
        // SAFETY: header is at offset < N with at least 8 readable bytes from it (inside the
        // two views), 8-aligned (page-aligned data, aligned position). Volatile: the word is
        // read exactly once, so the value checked is the value used even if a hostile producer
        // rewrites it meanwhile.
        let raw = unsafe { header.cast::<u64>().read_volatile() };
        let Some((len, size)) = self.known.parse(raw, self.max_len, readable) else {
            return Err(self.corrupt());
        };
        // SAFETY: size = frame_size(len) <= readable (checked), so the payload is inside the
        // readable bytes and inside the two views.
        let payload = unsafe { header.add(HEADER) };
        Ok(Some(Frame { payload, len, size, consumer: self }))
    }

    /// Hands every frame readable now to `f`, in order, each as one contiguous `&[u8]`, then
    /// gives all their bytes back to the producer at once: one load of the producer's cursor
    /// and one store of the consumer's for the whole batch, and a tight loop with no [`Frame`]
    /// per message. Blocks until at least one frame is readable. Returns how many frames `f`
    /// saw; `Ok(0)` means end of stream, as `recv`'s `None` does.
    ///
    /// One call takes at most about an eighth of the ring (and at least one frame), so that
    /// working off a large backlog gives the producer room back as it goes; call it in a loop.
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
        if self.inner.cur.readable_cached() < HEADER || self.skip != 0 || self.inner.end.header().is_none() {
            match self.refill(wait) {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(e) => return Err(e),
            }
        }
        let max_len = self.max_len;
        let mut known = self.known;
        let start = self.inner.read_ptr();
        // Releases what `f` has seen, also if it panics.
        let mut done = Release { consumer: self, used: 0 };
        let mut left = done.consumer.inner.cur.readable_cached();
        let mut frames = 0;
        // At most about an eighth of the ring per call (at least one frame): a batch releases
        // nothing until it ends, and a producer waiting on a full ring should not wait for a
        // whole ring's worth of frames.
        let limit = done.consumer.batch_limit;
        let corrupt = loop {
            if left < HEADER || done.used >= limit {
                // Whatever is left (a partial header from a broken producer) is judged by the
                // next call, as `recv` would.
                break false;
            }
            // SAFETY: start + used is at offset < 2N with `left` >= 8 readable bytes from it,
            // inside the two views (start is at offset < N and used + left <= N), 8-aligned.
            // Read once (volatile), as in `recv_with`.
            let (header, raw) = unsafe {
                let header = start.add(done.used);
                (header, header.cast::<u64>().read_volatile())
            };
            let Some((len, size)) = known.parse(raw, max_len, left) else { break true };
            // Counted before `f` runs, so a panic in `f` releases this frame too.
            done.used += size;
            left -= size;
            frames += 1;
            // SAFETY: the payload lies within the readable bytes (checked against `left`); the
            // producer does not write them until they are released, after `f` returns.
            f(unsafe { std::slice::from_raw_parts(header.add(HEADER), len) });
        };
        drop(done);
        self.known = known;
        if corrupt && frames == 0 {
            return Err(self.corrupt());
        }
        if corrupt {
            // Deliver the good frames now; the next call reports the corruption.
            let _ = self.corrupt();
        }
        Ok(frames)
    }

    /// Asks the ring for readable bytes (refreshing the producer's cursor, waiting per `wait`).
    /// `Ok(false)` at end of stream.
    #[inline(never)]
    fn refill(&mut self, wait: Wait) -> io::Result<bool> {
        if self.skip != 0 && !self.align(wait)? {
            return Ok(false);
        }
        // Every readable byte was published before the Acquire load of head that reported it
        // (the ring never counts a byte readable otherwise), so reading it is the hand-over the
        // aliasing rules require.
        let readable = self.inner.available_or_rest(HEADER, wait, true)?;
        if readable < HEADER {
            // Only after a clean close: whatever is left. Whole frames only, or nothing.
            return if readable == 0 { Ok(false) } else { Err(self.corrupt()) };
        }
        Ok(true)
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
        Ok(true)
    }

    #[cold]
    #[inline(never)]
    fn corrupt(&mut self) -> io::Error {
        let _ = self.inner.poison();
        io::Error::new(
            io::ErrorKind::InvalidData,
            "corrupt frame header from the producer: the ring is poisoned for good",
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
    pub fn into_inner(self) -> Consumer {
        self.inner
    }
}

/// Releases the frames a batch has handed out, when the batch ends or unwinds.
struct Release<'a> {
    consumer: &'a mut FramedConsumer,
    used: usize,
}

impl Drop for Release<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.used != 0 {
            // Does nothing in a forked copy (which could not have read the frames anyway).
            self.consumer.inner.release(self.used);
        }
    }
}

impl fmt::Debug for FramedConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramedConsumer").field("max_frame_len", &self.max_len).field("ring", &self.inner).finish()
    }
}

/// One message, lent straight out of the ring by [`FramedConsumer::recv`]: derefs to its
/// bytes (one contiguous, 8-byte aligned slice). Dropping it gives the bytes back to the
/// producer.
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
        // mutably.
        unsafe { std::slice::from_raw_parts(self.payload, self.len) }
    }
}

impl Drop for Frame<'_> {
    #[inline]
    fn drop(&mut self) {
        // The frame lies within the readable bytes (checked when it was handed out). Does
        // nothing in a forked copy (a frame held across `fork()`).
        self.consumer.inner.release(self.size);
    }
}

impl fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame").field("len", &self.len).finish()
    }
}
