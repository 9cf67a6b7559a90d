//! The writing end: grants, copies, `io::Write`.

use std::fmt;
use std::io::{self, Write};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use super::{copy_in, poisoned_error, producer_error, too_big, End, Producer, RingMem, Wait};
use crate::header::{Claim, Role};
use crate::mirror::Backend;
use crate::peer::ProcessWatch;
use crate::protocol::{ProducerCursor, Stop};
use crate::stats::{Stats, StatsHandle};
use crate::sync::Park;

impl Producer {
    pub(crate) fn attach(
        ring: Arc<RingMem>,
        spin: Duration,
        park: Park,
        peer: Option<ProcessWatch>,
        token: Claim,
    ) -> io::Result<Producer> {
        let cap = ring.capacity() as u64;
        let cur = ProducerCursor::attach(ring.header(), cap)
            .map_err(|_| poisoned_error())?
            .with_light(crate::header::light_peer_code(peer.is_some()));
        Ok(Producer { end: End::new(ring, Role::Producer, spin, park, peer, token), cur, _not_sync: PhantomData })
    }

    /// For a producer that took its role over from one that died, before it lends any room:
    /// if the dead one was writing frames, it goes on after a frame that one stamped and died
    /// before publishing with head, which the consumer may have taken and may hold
    /// (`framed::link::Sender::resume`); then the framing epoch ends, since this is a byte end
    /// (see `Header::end_framing`).
    pub(crate) fn took_over(mut self) -> Producer {
        if self.end.header().is_some_and(|hdr| hdr.framing_epoch() % 2 == 1) {
            self.cover_frame_stamped_above_head();
        }
        if let Some(hdr) = self.end.header() {
            hdr.end_framing();
        }
        self
    }

    /// The stream position: how many bytes have been committed to this ring since it was
    /// made, by this end and by every producer before it (modulo 2^64). An end that takes a
    /// dead producer's role over starts where the committed stream ends, so with fixed-size
    /// records `position() / size` is the index of the next one, with no side channel. (In a
    /// forked child, whose copy of the end cannot be used, it is the copy's position at the
    /// fork.)
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// let (mut tx, _rx) = mirror_ring::channel(4096)?;
    /// tx.write_all(&[0; 24])?; // three 8-byte records
    /// assert_eq!(tx.position() / 8, 3); // the next is record 3
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn position(&self) -> u64 {
        self.cur.head()
    }

    /// The ring's capacity in bytes (the requested size rounded up).
    pub fn capacity(&self) -> usize {
        self.end.ring.capacity()
    }

    /// The backend the ring was built with.
    pub fn backend(&self) -> Backend {
        self.end.ring.map().backend()
    }

    /// Bytes committed and not yet released by the consumer, as the consumer's cursor shows
    /// now (an upper bound once the cursor was seen to be impossible: the next write reports
    /// that).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, _rx) = mirror_ring::channel(1 << 16)?;
    /// tx.try_write(b"abc")?;
    /// assert_eq!(tx.len(), 3);
    /// assert_eq!(tx.free(), 65533);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.capacity() - self.free()
    }

    /// Whether the consumer has released everything committed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Free bytes: how much a write could take right now, as the consumer's cursor shows now.
    pub fn free(&self) -> usize {
        // A forked child's copy must not touch the header (gone with `dont_fork`).
        self.end.header().and_then(|hdr| self.cur.peek_free(hdr)).unwrap_or_else(|| self.cur.free_cached())
    }

    /// Whether the consumer is gone: it closed its end, or its process is proven dead (until
    /// another process takes its role over). Always true in a forked child, where this end
    /// cannot be used, and once another process took this end's own role over.
    pub fn is_abandoned(&self) -> bool {
        self.end.abandoned(self.cur.counters())
    }

    /// What this end's blocking calls have done so far (see [`Stats`]).
    pub fn stats(&self) -> Stats {
        self.cur.counters().snapshot()
    }

    /// A handle to this end's counters that another thread can read (see [`StatsHandle`]).
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.cur.counters().clone())
    }

    /// Waits (per `wait`) until at least `min` bytes are free, and returns the free byte
    /// count. The cached tail is refreshed first if it shows fewer than `want` free bytes.
    /// The free space starts at [`write_ptr`](Self::write_ptr).
    #[inline(always)]
    pub(super) fn reserve(&mut self, min: usize, want: usize, wait: Wait) -> io::Result<usize> {
        let hdr = self.end.header_or_err()?;
        if min > self.capacity() {
            return Err(too_big(min, self.capacity()));
        }
        // Relaxed-cost check of a read-mostly line: writes fail as soon as the consumer is gone
        // (with `InvalidData` still, once this end found the ring poisoned).
        if hdr.is_closed(Role::Consumer) {
            return Err(if self.cur.is_poisoned() { poisoned_error() } else { producer_error(Stop::Closed) });
        }
        match self.cur.writable(hdr, want.max(min)) {
            Ok(free) if free >= min.max(1) => return Ok(free),
            Ok(_) => {}
            Err(_) => return Err(poisoned_error()),
        }
        self.reserve_slow(min.max(1), wait)
    }

    #[cold]
    fn reserve_slow(&mut self, min: usize, wait: Wait) -> io::Result<usize> {
        let hdr = self.end.header_or_err()?;
        let deadline = match wait {
            Wait::No => {
                // Full as far as the cached cursors tell: look at the shared flags as a blocking
                // call would, so a poisoned ring is an error here too, not "full" for ever.
                match self.cur.poll_writable(hdr, min) {
                    Some(r) => return r.map_err(producer_error),
                    None if self.end.peer_gone(self.cur.counters()) => return Err(producer_error(Stop::PeerDied)),
                    None => return Err(io::ErrorKind::WouldBlock.into()),
                }
            }
            Wait::Until(deadline) => deadline,
        };
        // Batched commits must be visible before we sleep, or the consumer could wait for them
        // while we wait for it.
        self.cur.publish(hdr);
        // The ring is full: the consumer is the slower side. Looking again at once would take
        // the line of its cursor for each release it publishes (`consume` publishes per call),
        // and it would have to take the line back: slip first, let it release a run undisturbed.
        crate::wait::slip(deadline, self.end.spin_budget());
        let counters = self.cur.counters().clone();
        let cur = &mut self.cur;
        self.end.wait(hdr, &counters, deadline, |hdr| cur.poll_writable(hdr, min)).map_err(producer_error)
    }

    /// Where the free space starts: `free` bytes from here are the producer's, as one slice.
    #[inline]
    pub(super) fn write_ptr(&self) -> *mut u8 {
        // SAFETY: offset < N, so the pointer is inside view A.
        unsafe { self.end.data.as_ptr().add(self.cur.offset()) }
    }

    /// Writes as much of `buf` as fits now, without blocking.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when the ring is full (and `buf` is not empty); `BrokenPipe` when the
    /// consumer is gone (not final after a death: see
    /// [`SharedRing::take_over_consumer`](crate::SharedRing::take_over_consumer));
    /// `InvalidData` when the ring is poisoned; `Unsupported` in a forked child;
    /// `ConnectionAborted` once another process took this end's role over (its death was
    /// forged: [`docs::trust_model`](crate::docs::trust_model)).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, _rx) = mirror_ring::channel(1 << 16)?;
    /// assert_eq!(tx.try_write(&vec![1; 70_000])?, 65536);
    /// assert_eq!(tx.try_write(&[1]).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[inline]
    pub fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_with(buf, Wait::No)
    }

    /// Writes as much of `buf` as fits, waiting up to `timeout` for at least one byte of space.
    ///
    /// # Errors
    ///
    /// `TimedOut` when no space appeared in time; otherwise as [`try_write`](Self::try_write).
    pub fn write_timeout(&mut self, buf: &[u8], timeout: Duration) -> io::Result<usize> {
        self.write_with(buf, Wait::within(timeout))
    }

    /// Copies as much of `buf` as fits (waiting per `wait` for one byte) and commits it.
    #[inline]
    fn write_with(&mut self, buf: &[u8], wait: Wait) -> io::Result<usize> {
        if buf.is_empty() {
            self.end.header_or_err()?;
            return Ok(0);
        }
        let free = self.reserve(1, buf.len(), wait)?;
        let n = buf.len().min(free);
        // SAFETY: write_ptr() is at offset < N and n <= free <= N, so [offset, offset + n) lies
        // within the two views (2N bytes); the producer owns those free bytes until it commits.
        // `buf` cannot overlap them: the only ring memory a caller can hold is a read grant,
        // which covers unreleased bytes, physically disjoint from free space.
        unsafe { copy_in(buf.as_ptr(), self.write_ptr(), n) };
        // `reserve` checked the ownership in this call.
        self.cur.commit(self.end.header_checked(), n);
        Ok(n)
    }

    /// Publishes `n` more bytes written at `write_ptr()` (at most the free space last
    /// reported), through the one checked place.
    #[inline]
    fn commit(&mut self, n: usize) -> io::Result<()> {
        let hdr = self.end.header_or_err()?;
        self.cur.commit(hdr, n);
        Ok(())
    }

    /// Lends the free space as one contiguous slice, if at least `min` bytes are free; never
    /// blocks. Write into the grant, then [`commit`](WriteGrant::commit) how much to publish.
    ///
    /// The grant is the free space this end knows of: all of it when the consumer's cursor is
    /// loaded (whenever fewer than `min` bytes are known to be free), otherwise what the cached
    /// cursor shows. So a writer that needs room for a larger record must ask again with that
    /// size as `min`: asked again with the same `min`, a grant lends the same room.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when fewer than `max(min, 1)` bytes are free; `InvalidInput` when `min`
    /// exceeds the capacity; `BrokenPipe` when the consumer is gone; `InvalidData` when the
    /// ring is poisoned; `Unsupported` in a forked child; `ConnectionAborted` once another
    /// process took this end's role over.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mirror_ring::channel(4096)?;
    /// let mut grant = tx.write_grant(3)?;
    /// grant[..3].copy_from_slice(b"abc");
    /// grant.commit(3)?;
    /// assert_eq!(&*rx.read_grant(3)?, b"abc");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[inline]
    pub fn write_grant(&mut self, min: usize) -> io::Result<WriteGrant<'_>> {
        self.grant_with(min, Wait::No)
    }

    /// Like [`write_grant`](Self::write_grant), but waits for `min` bytes of space.
    ///
    /// # Errors
    ///
    /// As [`write_grant`](Self::write_grant), without `WouldBlock`.
    pub fn write_grant_blocking(&mut self, min: usize) -> io::Result<WriteGrant<'_>> {
        self.grant_with(min, Wait::Until(None))
    }

    /// Like [`write_grant`](Self::write_grant), but waits up to `timeout` for `min` bytes.
    ///
    /// # Errors
    ///
    /// `TimedOut` when the space did not appear in time; otherwise as
    /// [`write_grant`](Self::write_grant).
    pub fn write_grant_timeout(&mut self, min: usize, timeout: Duration) -> io::Result<WriteGrant<'_>> {
        self.grant_with(min, Wait::within(timeout))
    }

    #[inline]
    fn grant_with(&mut self, min: usize, wait: Wait) -> io::Result<WriteGrant<'_>> {
        let len = self.reserve(min, min, wait)?;
        Ok(WriteGrant { ptr: self.write_ptr(), len, producer: self })
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // A copy inherited by a forked child must not close the parent's ring.
        if let Some(hdr) = self.end.header() {
            self.cur.publish(hdr);
            self.end.close(hdr);
        }
    }
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.capacity())
            .field("backend", &self.backend())
            .field("len_at_most", &self.cur.used_cached())
            .field("position", &self.cur.head())
            .field("poisoned", &self.cur.is_poisoned())
            .finish()
    }
}

/// Free space lent by [`Producer::write_grant`]: one contiguous `&mut [u8]`, even where the
/// ring wraps. Nothing is published until [`commit`](WriteGrant::commit); dropping the grant
/// publishes nothing.
#[must_use = "a grant publishes nothing until it is committed"]
pub struct WriteGrant<'a> {
    ptr: *mut u8,
    len: usize,
    producer: &'a mut Producer,
}

impl WriteGrant<'_> {
    /// Publishes the first `n` bytes of the grant to the consumer.
    ///
    /// The commit does not look at the consumer: one that closed (or died) after the grant was
    /// made is reported by this end's next call, as `BrokenPipe`, and the bytes committed to
    /// it are not read.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `n` exceeds the grant; `Unsupported` in a forked child (a grant held
    /// across `fork()`); `ConnectionAborted` once another process took this end's role over;
    /// nothing is committed then.
    #[inline]
    pub fn commit(self, n: usize) -> io::Result<()> {
        if n > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot commit {n} bytes from a {}-byte grant", self.len),
            ));
        }
        self.producer.commit(n)
    }

    /// The grant's length (the free space this end knew of when it was made, at least `min`):
    /// the length of the slice it derefs to. So `grant[..grant.len()]` never panics, also in a
    /// forked child's copy of a grant held across the `fork`, which lends nothing (length 0;
    /// its `commit` fails with `Unsupported`).
    pub fn len(&self) -> usize {
        self.producer.end.lent(self.len)
    }

    /// Whether the grant is empty (never, for grants the producer hands out, but in a forked
    /// child's copy).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Deref for WriteGrant<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: [ptr, ptr + len) is free space owned by the producer (len <= N, inside the
        // two views), initialised memory (zeroed at creation or written before), and no other
        // reference to it exists while the grant borrows the producer mutably (the consumer
        // touches no free space if it keeps the protocol; a hostile one can, which is why
        // lending calls are unsound against it: `docs::trust_model`).
        unsafe { std::slice::from_raw_parts(self.ptr, self.producer.end.lent(self.len)) }
    }
}

impl DerefMut for WriteGrant<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref; the grant is the only reference to these bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.producer.end.lent(self.len)) }
    }
}

impl fmt::Debug for WriteGrant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteGrant").field("len", &self.len).finish()
    }
}

/// Blocks until at least one byte fits, then writes as much of `buf` as fits.
///
/// Errors: `BrokenPipe` once the consumer is gone, `InvalidData` if the ring is poisoned.
/// `flush` has nothing to do (every write is published when it returns), so it succeeds, also
/// after the consumer left and after a shutdown through the async end (nothing is buffered,
/// as that end's `poll_flush` says); like every call, it fails with `Unsupported` on a forked
/// copy of the end and with `ConnectionAborted` once another process took the role over.
impl Write for Producer {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_with(buf, Wait::Until(None))
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.end.is_shut() {
            return Ok(());
        }
        self.end.header_or_err().map(drop)
    }
}
