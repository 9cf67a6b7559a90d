//! Framed messages: variable-size records that are always contiguous.
//!
//! [`Producer::into_framed`] and [`Consumer::into_framed`] turn the two ends of a byte ring
//! into a message queue. Because the ring's pages are mirrored, a frame never splits at the
//! wrap point: the producer writes each message in place, and the consumer gets each one as a
//! single `&[u8]` straight out of the ring ([`Frame`]), with no reassembly and no copy. A
//! frame's bytes go back to the producer when the [`Frame`] is dropped.
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
//! # Wire format
//!
//! The stream is a sequence of frames, each starting at a ring position that is a multiple of
//! 8 (so the payload handed out is 8-byte aligned too):
//!
//! ```text
//! offset 0     4      8                8 + len          8 + round_up(len, 8)
//!        | len | !len | payload (len)  | padding (0-7)  | next frame ...
//! ```
//!
//! - `len`: the payload length, `u32` little-endian. Zero is a valid frame.
//! - `!len`: its bitwise complement, `u32` little-endian. A header whose two halves disagree
//!   cannot have been written by this module: it marks a corrupt or hostile producer.
//! - The padding bytes have unspecified contents.
//!
//! A frame therefore occupies `8 + round_up(len, 8)` bytes, and at most the whole ring: the
//! longest frame is [`max_frame_len`](FramedProducer::max_frame_len) `= capacity - 8` bytes
//! (capped at `u32::MAX - 7` for rings of 4 GiB and more). Thanks to the mirror no frame ever
//! needs padding at the wrap point. If the ends were converted at a position that is not a
//! multiple of 8 (raw bytes went through the ring first), both skip to the next multiple of 8
//! before the first frame; convert both ends at the same stream position.
//!
//! The producer only ever publishes whole frames, so every frame whose header lies below the
//! published head lies entirely below it. The consumer checks each header before it forms any
//! slice: the halves must agree, `len <= max_frame_len`, and the whole frame must lie within
//! the bytes the ring reports readable (which are at most the capacity). A header that fails
//! poisons the ring: this and every later call fail with `InvalidData`, and the producer sees
//! the poison flag too. A hostile producer can still change payload bytes while they are lent
//! out (shared memory is shared): validate what you read, ideally after copying it out.
//!
//! # Batching
//!
//! By default every [`send`](FramedProducer::send) (and every [`FrameGrant::commit`])
//! publishes the producer's cursor, so the frame is visible to the consumer when the call
//! returns. [`set_batch(n)`](FramedProducer::set_batch) lets up to `n` consecutive frames share
//! one cursor store instead. The pending frames are published
//! - when `n` frames are pending, or a quarter of the ring is;
//! - when the ring is full (before a blocking call sleeps or a `try_*` call returns
//!   `WouldBlock`);
//! - when the consumer is asleep waiting for data (checked on every send, at the cost of one
//!   load of a line nobody writes while both sides are busy);
//! - on [`flush`](FramedProducer::flush), and when the producer is dropped.
//!
//! Inside a batch a send writes straight into room it already knows about, checking only that
//! this process owns the end: a consumer that has gone away is noticed when the batch is
//! published (that send fails with `BrokenPipe`), not on every frame.
//!
//! Call `flush` when you stop sending for a while: a consumer that is still spinning (it
//! spins for the ring's spin budget before it sleeps) does not see pending frames until then.
//! Frames not yet published when a producer process dies are not there: only published frames
//! count.
//!
//! On the other side the consumer reloads the producer's cursor only when every frame it knows
//! of has been read, so it takes a whole batch (or whatever was published meanwhile) from one
//! cursor load. Each [`Frame`] releases its bytes when dropped (one cursor store per frame, so
//! the producer sees the room at once). [`recv_batch`](FramedConsumer::recv_batch) goes further:
//! it hands every readable frame to a closure in one tight loop and releases them all with one
//! cursor store.
//!
//! Measured (`benches/messages.rs`, two pinned threads, 1 MiB rings): batching on both sides
//! is what makes small frames fast; a cursor store per message makes the two cores trade the
//! cursor's cache line on every frame. See BENCHMARKS.md for the numbers.

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use crate::ring::{Consumer, Producer, Wait};

/// Bytes in a frame header: `u32` length, `u32` complement.
const HEADER: usize = 8;

/// Every frame starts at a multiple of this.
const ALIGN: usize = 8;

/// The longest payload the `u32` length field can describe, rounded down to `ALIGN`.
const LEN_FIELD_MAX: usize = (u32::MAX as usize) & !(ALIGN - 1);

/// The bytes a frame of `len` payload bytes occupies in the ring.
#[inline(always)]
fn frame_size(len: usize) -> usize {
    HEADER + ((len + (ALIGN - 1)) & !(ALIGN - 1))
}

/// The header word for a payload of `len` bytes (`len <= u32::MAX`), as stored (little-endian).
#[inline(always)]
fn encode_header(len: usize) -> u64 {
    let len = len as u32;
    (u64::from(!len) << 32 | u64::from(len)).to_le()
}

/// The payload length in a header word as read from the ring, if the header is well formed and
/// the frame fits in `readable` bytes and in a `max_len` payload.
#[inline(always)]
fn decode_header(raw: u64, max_len: usize, readable: usize) -> Option<usize> {
    let word = u64::from_le(raw);
    let len = word as u32;
    if (word >> 32) as u32 != !len {
        return None;
    }
    let len = len as usize;
    // Checked in this order, no arithmetic can overflow: len <= max_len < 2^32.
    if len > max_len || frame_size(len) > readable {
        return None;
    }
    Some(len)
}

/// The longest payload for a ring of `capacity` bytes.
fn max_frame_len_for(capacity: usize) -> usize {
    (capacity - HEADER).min(LEN_FIELD_MAX)
}

/// Bytes from `ptr` to the next multiple of `ALIGN`. The data pages start page-aligned, so this
/// is also the distance from the ring position to the next multiple of `ALIGN`.
fn misalignment(ptr: *const u8) -> usize {
    (ptr as usize).wrapping_neg() & (ALIGN - 1)
}

/// Copies a payload into the ring; messages of up to 64 bytes without a call into `memcpy`
/// (two overlapping loads and stores of the widest size that fits).
///
/// # Safety
///
/// `src` is valid for `len` bytes of reads, `dst` for `len` bytes of writes, and they do not
/// overlap.
#[inline(always)]
unsafe fn copy_payload(src: *const u8, dst: *mut u8, len: usize) {
    /// Copies `[0, W)` and `[len - W, len)`, which together cover `len` bytes for
    /// `W <= len <= 2W`.
    #[inline(always)]
    unsafe fn two<T: Copy>(src: *const u8, dst: *mut u8, len: usize) {
        let w = std::mem::size_of::<T>();
        // SAFETY: W <= len, so both windows lie within the `len` bytes the caller vouches for.
        unsafe {
            let head = src.cast::<T>().read_unaligned();
            let tail = src.add(len - w).cast::<T>().read_unaligned();
            dst.cast::<T>().write_unaligned(head);
            dst.add(len - w).cast::<T>().write_unaligned(tail);
        }
    }
    // SAFETY: each branch copies exactly the `len` bytes the caller vouches for.
    unsafe {
        match len {
            0 => {}
            1..=3 => {
                *dst = *src;
                *dst.add(len / 2) = *src.add(len / 2);
                *dst.add(len - 1) = *src.add(len - 1);
            }
            4..=7 => two::<u32>(src, dst, len),
            8..=16 => two::<u64>(src, dst, len),
            17..=32 => two::<[u64; 2]>(src, dst, len),
            33..=64 => two::<[u64; 4]>(src, dst, len),
            _ => std::ptr::copy_nonoverlapping(src, dst, len),
        }
    }
}

/// Writes the frame for `msg`: header, payload, padding (zeros for frames of 1 to 8 bytes,
/// which go out as one 16-byte store; unspecified otherwise).
///
/// # Safety
///
/// `header` is 8-aligned and valid for `frame_size(msg.len())` bytes of writes, which `msg`
/// does not overlap; `msg.len() <= u32::MAX`.
#[inline(always)]
unsafe fn write_frame(header: *mut u8, msg: &[u8]) {
    let len = msg.len();
    // SAFETY: the caller vouches for the frame's bytes; each branch writes within them.
    unsafe {
        if len.wrapping_sub(1) < 8 {
            // 1 to 8 bytes: a 16-byte frame. (An empty frame is only its 8-byte header.)
            store_pair(header, encode_header(len), load_small(msg.as_ptr(), len));
        } else {
            header.cast::<u64>().write(encode_header(len));
            copy_payload(msg.as_ptr(), header.add(HEADER), len);
        }
    }
}

/// Up to 8 bytes from `src` as the word whose in-memory bytes are those bytes followed by
/// zeros.
///
/// # Safety
///
/// `src` is valid for `len <= 8` bytes of reads.
#[inline(always)]
unsafe fn load_small(src: *const u8, len: usize) -> u64 {
    // SAFETY: every read lies within the `len` bytes the caller vouches for.
    let v = unsafe {
        match len {
            8 => u64::from_le(src.cast::<u64>().read_unaligned()),
            4..=7 => {
                let lo = u32::from_le(src.cast::<u32>().read_unaligned());
                let hi = u32::from_le(src.add(len - 4).cast::<u32>().read_unaligned());
                // The two windows overlap on identical bytes, so OR-ing them is exact.
                u64::from(lo) | u64::from(hi) << ((len - 4) * 8)
            }
            1..=3 => {
                u64::from(*src)
                    | u64::from(*src.add(len / 2)) << (len / 2 * 8)
                    | u64::from(*src.add(len - 1)) << ((len - 1) * 8)
            }
            _ => 0,
        }
    };
    v.to_le()
}

/// Writes two in-memory words to `dst` (16 bytes), with one store where the target has one.
///
/// # Safety
///
/// `dst` is valid for 16 bytes of writes and 8-byte aligned.
#[inline(always)]
unsafe fn store_pair(dst: *mut u8, first: u64, second: u64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of x86_64; the unaligned store writes exactly the 16 bytes the
    // caller vouches for.
    unsafe {
        use std::arch::x86_64::{_mm_set_epi64x, _mm_storeu_si128};
        _mm_storeu_si128(dst.cast(), _mm_set_epi64x(second as i64, first as i64));
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above, as two aligned words.
    unsafe {
        dst.cast::<u64>().write(first);
        dst.cast::<u64>().add(1).write(second);
    }
}

#[cold]
#[inline(never)]
fn too_long(len: usize, max: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("a {len}-byte frame can never fit: this ring's frames hold at most {max} bytes"),
    )
}

impl Producer {
    /// Turns this producer into the sending end of a message queue: frames of any size up to
    /// [`max_frame_len`](FramedProducer::max_frame_len), each one contiguous in the ring. See
    /// the [`FramedProducer`] docs for the wire format.
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
    pub fn into_framed(self) -> FramedProducer {
        let capacity = self.capacity();
        let pad = misalignment(self.write_ptr());
        let head = self.position();
        FramedProducer {
            max_len: max_frame_len_for(capacity),
            batch_bytes: capacity / 4,
            frames_left: 1,
            fast_until: head,
            inner: self,
            batch: 1,
            pad,
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
        FramedConsumer {
            known: Known::NONE,
            batch_limit: capacity / 8,
            max_len: max_frame_len_for(capacity),
            inner: self,
            skip,
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
    inner: Producer,
    max_len: usize,
    /// As given to `set_batch` (1: publish every frame).
    batch: usize,
    /// With batching, publish once this many bytes are pending (a quarter of the ring).
    batch_bytes: usize,
    /// With batching, the frames still to go before the batch is published (the frame that
    /// brings this to zero publishes).
    frames_left: usize,
    /// With batching, the position up to which frames may be written without a further check:
    /// the free room known at the last check, cut at the end of the current batch (the head
    /// itself while the alignment skip is pending).
    fast_until: u64,
    /// Bytes to skip before the first frame (0 unless converted at an unaligned position).
    pad: usize,
}

impl FramedProducer {
    /// The ring's capacity in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = mirror_ring::channel(4096)?;
    /// assert_eq!(tx.into_framed().capacity(), 4096);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// The longest message this ring can ever hold: `capacity - 8` (the frame header).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = mirror_ring::channel(4096)?;
    /// let mut tx = tx.into_framed();
    /// assert_eq!(tx.max_frame_len(), 4088);
    /// let err = tx.send(&[0; 4089]).unwrap_err();
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
    /// when the ring is poisoned.
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
    /// let (tx, _rx) = mirror_ring::channel(4096)?;
    /// let mut tx = tx.into_framed();
    /// tx.try_send(&[1; 4000])?;
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
    /// let (tx, _rx) = mirror_ring::channel(4096)?;
    /// let mut tx = tx.into_framed();
    /// tx.send_timeout(&[1; 4000], Duration::from_millis(10))?;
    /// let err = tx.send_timeout(&[1; 100], Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> io::Result<()> {
        self.send_with(msg, Wait::within(timeout))
    }

    #[inline(always)]
    fn send_with(&mut self, msg: &[u8], wait: Wait) -> io::Result<()> {
        let len = msg.len();
        // Batched fast path: inside the room and the batch checked last time, in the process
        // that owns the end. (frame_size cannot overflow: len <= max_len < 2^32.)
        if self.frames_left > 1
            && len <= self.max_len
            && self.inner.usable()
            && self.fast_until.wrapping_sub(self.inner.position()) >= frame_size(len) as u64
        {
            // SAFETY: as below: frame_size(len) bytes at write_ptr() are free room.
            unsafe { write_frame(self.inner.write_ptr(), msg) };
            self.inner.advance(frame_size(len));
            self.frames_left -= 1;
            // A consumer that went to sleep gets what is pending now, not at the batch's end.
            if self.inner.consumer_sleeping() {
                self.publish_pending();
            }
            return Ok(());
        }
        let header = self.claim(len, wait)?;
        // SAFETY: `claim` reserved frame_size(len) = 8 + round_up(len, 8) free bytes from
        // `header` (at most N of them, inside the two views), which the producer owns until it
        // publishes them. `header` is 8-aligned (page-aligned data, aligned position). `msg`
        // cannot overlap free space: the only ring memory a caller can hold is a frame being
        // read, which covers unreleased bytes.
        unsafe { write_frame(header, msg) };
        self.finish(len);
        Ok(())
    }

    /// Lends the space for one `len`-byte message, blocking until there is room: fill it, then
    /// [`commit`](FrameGrant::commit). Dropping the grant uncommitted sends nothing.
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
    /// let (tx, _rx) = mirror_ring::channel(4096)?;
    /// let mut tx = tx.into_framed();
    /// tx.try_reserve(4000)?.commit()?;
    /// assert_eq!(tx.try_reserve(100).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// # Ok::<(), std::io::Error>(())
    /// ```
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

    fn grant_with(&mut self, len: usize, wait: Wait) -> io::Result<FrameGrant<'_>> {
        let header = self.claim(len, wait)?;
        Ok(FrameGrant { header, len, producer: self })
    }

    /// Waits (per `wait`) for room for a frame of `len` payload bytes and returns where its
    /// header goes; the whole frame's bytes from there are free and the producer's.
    #[inline(always)]
    fn claim(&mut self, len: usize, wait: Wait) -> io::Result<*mut u8> {
        // Fast path: aligned already, room known from the ring's cached cursors, and the same
        // checks `reserve` makes first (this process owns the end; the consumer is still
        // there). frame_size cannot overflow: len <= max_len < 2^32.
        if len <= self.max_len && self.pad == 0 && frame_size(len) <= self.inner.free_cached() && self.inner.may_write()
        {
            return Ok(self.inner.write_ptr());
        }
        self.claim_slow(len, wait)
    }

    /// Asks the ring for room (refreshing the consumer's cursor, waiting per `wait`).
    #[inline(never)]
    fn claim_slow(&mut self, len: usize, wait: Wait) -> io::Result<*mut u8> {
        if len > self.max_len {
            return Err(too_long(len, self.max_len));
        }
        if self.pad != 0 {
            self.align(wait)?;
        }
        let size = frame_size(len);
        match self.inner.reserve(size, size, wait) {
            Ok(_) => Ok(self.inner.write_ptr()),
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Skips to the first aligned position (once, before the first frame).
    #[cold]
    fn align(&mut self, wait: Wait) -> io::Result<()> {
        match self.inner.reserve(self.pad, self.pad, wait) {
            Ok(_) => {
                self.inner.advance(self.pad);
                self.pad = 0;
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

    /// Counts a frame of `len` payload bytes, written at `write_ptr()`, and publishes per the
    /// batching policy.
    #[inline(always)]
    fn finish(&mut self, len: usize) {
        // The frame lies within the room claimed for it (a grant may have been truncated).
        self.inner.advance(frame_size(len));
        if self.batch <= 1 {
            // The frame was written by this process's own end (checked by the caller), so
            // the only failure, a forked copy, cannot happen here.
            let _ = self.inner.publish();
            return;
        }
        self.frames_left = self.frames_left.saturating_sub(1);
        if self.frames_left == 0 || self.inner.unpublished() >= self.batch_bytes || self.inner.consumer_sleeping() {
            self.publish_pending();
        } else {
            self.rearm();
        }
    }

    /// Sets how far the batched fast path may write: the known free room, cut where the
    /// current batch must be published.
    #[inline]
    fn rearm(&mut self) {
        let head = self.inner.position();
        let budget = if self.batch <= 1 || self.pad != 0 {
            0
        } else {
            // One byte short of the batch's end: the frame that completes a batch takes the
            // general path, which publishes it.
            (self.batch_bytes.saturating_sub(self.inner.unpublished()).saturating_sub(1)).min(self.inner.free_cached())
        };
        self.fast_until = head.wrapping_add(budget as u64);
    }

    /// Publishes every pending frame now (and wakes the consumer if it sleeps), then reports
    /// whether the ring can still take frames. Only needed with [`set_batch`](Self::set_batch);
    /// cheap when nothing is pending.
    ///
    /// # Errors
    ///
    /// `Unsupported` in a forked child (nothing is published); `InvalidData` when the ring is
    /// poisoned; `BrokenPipe` when the consumer closed or its process died (the frames are
    /// published, but nobody will read them).
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
        self.inner.publish()?;
        self.frames_left = self.batch;
        self.rearm();
        self.inner.check_usable()
    }

    /// Publishes every pending frame (nothing in a forked copy) and starts a new batch.
    #[inline]
    fn publish_pending(&mut self) {
        // A forked copy publishes nothing; its next send reports `Unsupported`.
        let _ = self.inner.publish();
        self.frames_left = self.batch;
        self.rearm();
    }

    /// Lets up to `frames` consecutive frames share one cursor store (at least 1; 1, the
    /// default, publishes every frame as it is sent). Pending frames are also published when a
    /// quarter of the ring is pending, when the ring is full, when the consumer sleeps, on
    /// [`flush`](Self::flush) and on drop. Changing it publishes what is pending. See the
    /// module docs, "Batching".
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
    pub fn into_inner(mut self) -> Producer {
        self.publish_pending();
        self.inner
    }
}

impl fmt::Debug for FramedProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramedProducer")
            .field("max_frame_len", &self.max_len)
            .field("batch", &self.batch)
            .field("unpublished_bytes", &self.inner.unpublished())
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
    /// `Unsupported` in a forked child (a grant held across `fork()`): nothing is written or
    /// published. The room itself was taken when the grant was made.
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
    pub fn commit(self) -> io::Result<()> {
        // In a forked copy the ring's pages may not even exist (`dont_fork`): write nothing.
        self.producer.inner.check_owned()?;
        // SAFETY: the grant holds frame_size(reserved len) >= frame_size(self.len) free bytes
        // from `header`, 8-aligned, owned by the producer this grant borrows mutably.
        unsafe { self.header.cast::<u64>().write(encode_header(self.len)) };
        self.producer.finish(self.len);
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
    fn deref(&self) -> &[u8] {
        // SAFETY: [header + 8, header + 8 + len) is reserved free space (inside the two views),
        // initialised memory (zeroed at creation or written before), and no other reference to
        // it exists while the grant borrows the producer mutably.
        unsafe { std::slice::from_raw_parts(self.header.add(HEADER), self.len) }
    }
}

impl DerefMut for FrameGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref; the grant is the only reference to these bytes.
        unsafe { std::slice::from_raw_parts_mut(self.header.add(HEADER), self.len) }
    }
}

impl fmt::Debug for FrameGrant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameGrant").field("len", &self.len).finish()
    }
}

/// The receiving end of a framed ring: whole messages, each lent as one contiguous slice
/// straight out of the ring.
///
/// Made by [`Consumer::into_framed`]. [`recv`](Self::recv) returns a [`Frame`], which derefs
/// to the message's bytes and gives them back to the producer when dropped.
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
    /// The last header that passed the checks.
    known: Known,
    /// Bytes after which `recv_batch` stops and releases.
    batch_limit: usize,
    max_len: usize,
    /// Bytes to skip before the first frame (0 unless converted at an unaligned position).
    skip: usize,
}

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
        let racy = self.inner.peer_untrusted();
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
        if self.inner.readable_cached() < HEADER || self.skip != 0 || !self.inner.usable() {
            match self.refill(wait) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let readable = self.inner.readable_cached();
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
        if self.inner.readable_cached() < HEADER || self.skip != 0 || !self.inner.usable() {
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
        let mut left = done.consumer.inner.readable_cached();
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

/// The last frame header that passed the checks, with its length and frame size.
///
/// Streams often carry runs of frames of one size. Recognising a repeat by comparing the raw
/// header word with the last valid one (rather than decoding it) makes the next frame's
/// position independent of the value just loaded: with the comparison's branch predicted, the
/// CPU issues the next header load without waiting for this one, which takes the reader off
/// the load-latency chain that variable-size records otherwise impose.
#[derive(Clone, Copy, Debug)]
struct Known {
    raw: u64,
    len: usize,
    size: usize,
}

impl Known {
    /// Matches nothing: its size exceeds any readable count.
    const NONE: Known = Known { raw: 0, len: 0, size: usize::MAX };

    /// The payload length and frame size for header word `raw` with `readable` bytes from its
    /// start, or `None` if the header is corrupt or the frame does not fit.
    #[inline(always)]
    fn parse(&mut self, raw: u64, max_len: usize, readable: usize) -> Option<(usize, usize)> {
        // The same word as a header that passed decode_header: the same length, so only the
        // fit needs checking again.
        if raw == self.raw && self.size <= readable {
            return Some((self.len, self.size));
        }
        let len = decode_header(raw, max_len, readable)?;
        *self = Known { raw, len, size: frame_size(len) };
        Some((len, self.size))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RingOptions;
    use std::io::ErrorKind;

    #[test]
    fn header_round_trips_and_rejects_every_corruption() {
        for len in [0usize, 1, 7, 8, 9, 4087, 4088] {
            assert_eq!(decode_header(encode_header(len), 4088, 4096), Some(len));
            // The frame must fit in what is readable.
            assert_eq!(decode_header(encode_header(len), 4088, frame_size(len)), Some(len));
            assert_eq!(decode_header(encode_header(len), 4088, frame_size(len) - 1), None);
        }
        // Over the limit, even with a valid complement.
        assert_eq!(decode_header(encode_header(4089), 4088, 4096), None);
        let huge = max_frame_len_for(1 << 40);
        assert_eq!(decode_header(encode_header(LEN_FIELD_MAX + 7), huge, 1 << 40), None);
        assert_eq!(decode_header(encode_header(LEN_FIELD_MAX), huge, 1 << 40), Some(LEN_FIELD_MAX));
        // Complement mismatch: every single-bit flip of a valid header is refused.
        let good = u64::from_le(encode_header(100));
        for bit in 0..64 {
            assert_eq!(decode_header((good ^ (1 << bit)).to_le(), 4088, 4096), None, "bit {bit}");
        }
        // Patterns a crashed or hostile producer might leave.
        for raw in [0u64, u64::MAX, 0xFFFF_FFFF, 0x0000_0001_0000_0001, 0xDEAD_BEEF_DEAD_BEEF] {
            assert_eq!(decode_header(raw, 4088, 4096), None, "{raw:#x}");
        }
    }

    #[test]
    fn small_frames_are_stored_as_header_then_payload_then_zeros() {
        let src: Vec<u8> = (1..=8).collect();
        for len in 1..=8 {
            let mut dst = [0xEEu8; 24];
            // SAFETY: src has 8 >= len bytes; dst has 16 writable, 8-aligned bytes at 8.
            unsafe {
                let at = dst.as_mut_ptr().add(8 - dst.as_ptr() as usize % 8);
                store_pair(at, encode_header(len), load_small(src.as_ptr(), len));
                let got = std::slice::from_raw_parts(at, 16);
                assert_eq!(got[..8], encode_header(len).to_ne_bytes(), "len {len}");
                assert_eq!(&got[8..8 + len], &src[..len], "len {len}");
                assert!(got[8 + len..].iter().all(|&b| b == 0), "len {len}: padding not zero");
            }
        }
    }

    #[test]
    fn small_copies_copy_exactly_len_bytes() {
        let src: Vec<u8> = (1..=100).collect();
        for len in 0..=100 {
            let mut dst = [0u8; 112];
            // SAFETY: src has 100 >= len bytes, dst 112; distinct buffers.
            unsafe { copy_payload(src.as_ptr(), dst.as_mut_ptr(), len) };
            assert_eq!(&dst[..len], &src[..len], "len {len}");
            assert!(dst[len..].iter().all(|&b| b == 0), "len {len}: wrote past the end");
        }
    }

    #[test]
    fn frame_sizes_are_aligned_and_bounded() {
        assert_eq!(frame_size(0), 8);
        assert_eq!(frame_size(1), 16);
        assert_eq!(frame_size(8), 16);
        assert_eq!(frame_size(9), 24);
        assert_eq!(max_frame_len_for(4096), 4088);
        assert_eq!(frame_size(max_frame_len_for(4096)), 4096);
        assert_eq!(max_frame_len_for(1 << 40), LEN_FIELD_MAX);
        assert!(frame_size(LEN_FIELD_MAX) <= (1 << 40));
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
            }
            drop(tx);
            assert!(rx.try_recv().unwrap().is_none());
        }
    }

    #[test]
    fn a_partial_frame_after_close_is_corrupt() {
        let (mut tx, rx) = crate::channel(4096).unwrap();
        // A producer that publishes half a header and closes.
        tx.try_write(&encode_header(5).to_ne_bytes()[..4]).unwrap();
        drop(tx);
        let mut rx = rx.into_framed();
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::InvalidData);
        assert_eq!(rx.recv().unwrap_err().kind(), ErrorKind::InvalidData);
    }
}
