//! The reading end: grants, `fill_buf`, copies, `io::Read` and `io::BufRead`.

use std::fmt;
use std::io::{self, BufRead, Read};
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use super::{
    consumer_error, copy_out, died_short, poisoned_error, short_stream, too_big, Consumer, End, RingMem, Wait,
};
use crate::header::{Claim, Role};
use crate::mirror::Backend;
use crate::peer::ProcessWatch;
use crate::protocol::{ConsumerCursor, Stop};
use crate::stats::{Stats, StatsHandle};
use crate::sync::Park;

impl Consumer {
    pub(crate) fn attach(
        ring: Arc<RingMem>,
        spin: Duration,
        park: Park,
        peer: Option<ProcessWatch>,
        token: Claim,
    ) -> io::Result<Consumer> {
        let cap = ring.capacity() as u64;
        let cur = ConsumerCursor::attach(ring.header(), cap)
            .map_err(|_| poisoned_error())?
            .with_light(crate::header::light_peer_code(peer.is_some()));
        Ok(Consumer { end: End::new(ring, Role::Consumer, spin, park, peer, token), cur, _not_sync: PhantomData })
    }

    /// The stream position: how many bytes this end, and every consumer before it, has
    /// consumed (released) since the ring was made (modulo 2^64). An end that takes a dead
    /// consumer's role over starts at the last release that consumer made visible (bytes it
    /// had read but not released are read again). (In a forked child, whose copy of the end
    /// cannot be used, it is the copy's position at the fork.)
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// let (mut tx, mut rx) = mirror_ring::channel(4096)?;
    /// tx.write_all(b"0123456789")?;
    /// rx.read_exact(&mut [0; 4])?;
    /// assert_eq!(rx.position(), 4);
    /// assert_eq!(tx.position(), 10);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn position(&self) -> u64 {
        self.cur.tail()
    }

    /// The ring's capacity in bytes (the requested size rounded up).
    pub fn capacity(&self) -> usize {
        self.end.ring.capacity()
    }

    /// The backend the ring was built with.
    pub fn backend(&self) -> Backend {
        self.end.ring.map().backend()
    }

    /// Readable bytes right now, as the producer's cursor shows now (a lower bound once the
    /// cursor was seen to be impossible: the next read reports that).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = mirror_ring::channel(4096)?;
    /// assert!(rx.is_empty());
    /// tx.try_write(b"abc")?;
    /// assert_eq!(rx.len(), 3);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        // A forked child's copy must not touch the header (gone with `dont_fork`).
        self.end.header().and_then(|hdr| self.cur.peek_readable(hdr)).unwrap_or_else(|| self.cur.readable_cached())
    }

    /// Whether nothing is readable right now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the producer is gone: it closed its end, or its process is proven dead (until
    /// another process takes its role over). Bytes it committed may still be readable. Always
    /// true in a forked child, where this end cannot be used, and once another process took
    /// this end's own role over.
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

    /// Waits (per `wait`) until at least `min` bytes are readable and returns the readable
    /// count. After a clean close it returns whatever remains if that is at least `min`;
    /// fewer (and nothing more can come) is `UnexpectedEof`, except that an empty ring at the
    /// end of the stream returns 0 when `min` is 0 (the end-of-stream answer). The bytes start
    /// at [`read_ptr`](Self::read_ptr).
    #[inline(always)]
    pub(super) fn available(&mut self, min: usize, wait: Wait) -> io::Result<usize> {
        self.available_or_rest(min, wait, false)
    }

    /// As [`available`](Self::available), but after a clean close whatever remains is returned
    /// even if it is fewer than `min` (for framing, which judges a short rest itself).
    #[inline(always)]
    pub(super) fn available_or_rest(&mut self, min: usize, wait: Wait, rest: bool) -> io::Result<usize> {
        let hdr = self.end.header_or_err()?;
        if min > self.capacity() {
            return Err(too_big(min, self.capacity()));
        }
        match self.cur.readable(hdr, min.max(1)) {
            Ok(n) if n >= min.max(1) => Ok(n),
            Ok(_) => self.available_slow(min, wait, rest),
            Err(_) => Err(poisoned_error()),
        }
    }

    #[cold]
    fn available_slow(&mut self, min: usize, wait: Wait, rest: bool) -> io::Result<usize> {
        let hdr = self.end.header_or_err()?;
        let want = min.max(1);
        let result = match wait {
            Wait::No => match self.cur.poll_readable(hdr, want) {
                Some(r) => r,
                None if self.end.peer_gone(self.cur.counters()) => {
                    self.cur.poll_readable(hdr, want).unwrap_or(Err(Stop::PeerDied))
                }
                None => return Err(io::ErrorKind::WouldBlock.into()),
            },
            Wait::Until(deadline) => {
                // Batched releases must be visible before we sleep, or the producer could wait
                // for space while we wait for it.
                self.cur.publish(hdr);
                let counters = self.cur.counters().clone();
                let cur = &mut self.cur;
                self.end.wait(hdr, &counters, deadline, |hdr| cur.poll_readable(hdr, want))
            }
        };
        match result {
            Ok(n) => Ok(n),
            Err(Stop::Closed) => match self.cur.readable_cached() {
                left if left >= min || rest => Ok(left),
                left => Err(short_stream(left, min)),
            },
            // A death with committed bytes left (fewer than `min`: the wait would have lent
            // them otherwise) must not say that everything was read.
            Err(Stop::PeerDied) if !rest && self.cur.readable_cached() > 0 => {
                Err(died_short(self.cur.readable_cached(), min))
            }
            Err(stop) => Err(consumer_error(stop)),
        }
    }

    /// Where the readable bytes start.
    #[inline]
    pub(super) fn read_ptr(&self) -> *const u8 {
        // SAFETY: offset < N: inside view A.
        unsafe { self.end.data.as_ptr().add(self.cur.offset()) }
    }

    /// Counts `n` bytes as consumed and releases them (with everything consumed before): the
    /// one place a release goes through. Does nothing at all in a forked copy, whose cursor
    /// must not move either.
    #[inline]
    pub(super) fn release(&mut self, n: usize) {
        if let Some(hdr) = self.end.header() {
            self.cur.release(hdr, n);
        }
    }

    /// Poisons the ring for good (every later call fails with `InvalidData`, and the producer
    /// sees the shared flag): for corruption found inside the bytes, such as a bad frame header.
    #[cold]
    pub(super) fn poison(&mut self) -> io::Error {
        if let Some(hdr) = self.end.header() {
            let _ = self.cur.poison(hdr);
        }
        poisoned_error()
    }

    /// Reads as many bytes as are readable now, up to `buf.len()`, without blocking.
    ///
    /// Between processes the bytes are copied with loads that tolerate a peer writing them at
    /// the same time (see [`docs::trust_model`](crate::docs::trust_model)): the copy is what
    /// you validate.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when nothing is readable (and `buf` is not empty). `Ok(0)` means end of
    /// stream: the producer closed and everything was read. `UnexpectedEof` when the producer's
    /// process died and everything it committed was read (not final: see
    /// [`SharedRing::take_over_producer`](crate::SharedRing::take_over_producer));
    /// `InvalidData` when the ring is poisoned; `Unsupported` in a forked child;
    /// `ConnectionAborted` once another process took this end's role over (its death was
    /// forged: [`docs::trust_model`](crate::docs::trust_model)).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mirror_ring::channel(4096)?;
    /// let mut buf = [0; 8];
    /// assert_eq!(rx.try_read(&mut buf).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// tx.try_write(b"abc")?;
    /// drop(tx);
    /// assert_eq!(rx.try_read(&mut buf)?, 3);
    /// assert_eq!(rx.try_read(&mut buf)?, 0); // end of stream
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[inline]
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(buf, Wait::No)
    }

    /// Reads up to `buf.len()` bytes, waiting up to `timeout` for at least one.
    ///
    /// # Errors
    ///
    /// `TimedOut` when nothing arrived in time; otherwise as [`try_read`](Self::try_read).
    pub fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        self.read_with(buf, Wait::within(timeout))
    }

    /// Copies up to `buf.len()` readable bytes out (waiting per `wait` for one) and releases
    /// them. `Ok(0)` at end of stream.
    #[inline]
    fn read_with(&mut self, buf: &mut [u8], wait: Wait) -> io::Result<usize> {
        if buf.is_empty() {
            self.end.header_or_err()?;
            return Ok(0);
        }
        let mut n = self.available(0, wait)?;
        // `available` checked the ownership in this call.
        let hdr = self.end.header_checked();
        if n < buf.len() && n > 0 {
            // `available` may have answered from the cached head: reload it once, as
            // `write_with` does for space, so a read takes every byte readable now. If the
            // reload finds the head corrupt, the bytes already validated are still served; the
            // next call reports the poisoning.
            n = self.cur.readable(hdr, buf.len()).unwrap_or(n);
        }
        let n = buf.len().min(n);
        // SAFETY: read_ptr() is at offset < N and n <= readable <= N: inside the two views.
        // The bytes were published before the Acquire load that reported them readable; the
        // producer does not touch them until we release them. `buf` is caller memory, which
        // cannot be these unreleased bytes (a write grant covers only free space).
        unsafe { copy_out(self.read_ptr(), buf.as_mut_ptr(), n, self.end.peer.is_some()) };
        self.cur.release(hdr, n);
        Ok(n)
    }

    /// Lends the readable bytes as one contiguous slice, if at least `min` are readable; never
    /// blocks. [`release`](ReadGrant::release) frees what was consumed. The grant is never
    /// shorter than `min`.
    ///
    /// The bytes this end knows of: all of them when the producer's cursor is loaded (on the
    /// first grant, and whenever fewer than `min` bytes are cached); otherwise what the cache
    /// shows, such as the rest of the previous grant after a partial release, also if more was
    /// published since. So a parser that found an incomplete record must ask again with the
    /// size it needs as `min`: asked again with the same `min`, a grant lends the same bytes.
    ///
    /// At the end of the stream (the producer closed): if at least `min` bytes remain, they
    /// are lent as usual; if fewer remain, that is `UnexpectedEof` (the bytes stay readable
    /// with a smaller `min`); with `min == 0` an empty ring at the end of the stream lends an
    /// empty grant, the end-of-stream answer.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when fewer than `max(min, 1)` bytes are readable and more may come;
    /// `UnexpectedEof` when fewer than `min` (`min > 0`) can ever come: the producer closed, or
    /// its process died (the message says how many committed bytes are left, which a smaller
    /// `min` lends; with none left, everything was read), and for any `min`, `0` too, once the
    /// producer's process died and nothing is left (a death is not the end of the stream); `InvalidInput` when `min` exceeds
    /// the capacity; `InvalidData` when the ring is poisoned; `Unsupported` in a forked child;
    /// `ConnectionAborted` once another process took this end's role over.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = mirror_ring::channel(4096)?;
    /// tx.try_write(b"hello world")?;
    /// let grant = rx.read_grant(5)?;
    /// assert_eq!(&grant[..5], b"hello");
    /// grant.release(6)?; // "hello "
    /// assert_eq!(&*rx.read_grant(1)?, b"world");
    /// drop(tx);
    /// // "world" (5 bytes) is all that will ever come:
    /// let err = rx.read_grant(8).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    /// rx.read_grant(5)?.release(5)?;
    /// assert!(rx.read_grant(0)?.is_empty()); // end of stream
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[inline]
    pub fn read_grant(&mut self, min: usize) -> io::Result<ReadGrant<'_>> {
        self.grant_with(min, Wait::No)
    }

    /// Like [`read_grant`](Self::read_grant), but waits for `min` readable bytes.
    ///
    /// # Errors
    ///
    /// As [`read_grant`](Self::read_grant), without `WouldBlock`.
    pub fn read_grant_blocking(&mut self, min: usize) -> io::Result<ReadGrant<'_>> {
        self.grant_with(min, Wait::Until(None))
    }

    /// Like [`read_grant`](Self::read_grant), but waits up to `timeout` for `min` bytes.
    ///
    /// # Errors
    ///
    /// `TimedOut` when they did not arrive in time; otherwise as
    /// [`read_grant`](Self::read_grant).
    pub fn read_grant_timeout(&mut self, min: usize, timeout: Duration) -> io::Result<ReadGrant<'_>> {
        self.grant_with(min, Wait::within(timeout))
    }

    #[inline]
    fn grant_with(&mut self, min: usize, wait: Wait) -> io::Result<ReadGrant<'_>> {
        let len = self.available(min, wait)?;
        Ok(ReadGrant { ptr: self.read_ptr(), len, consumer: self })
    }

    /// The readable bytes (see [`ConsumerCursor::view`] for when the producer's cursor is
    /// reloaded); blocks only while nothing is readable. Backs `BufRead::fill_buf`.
    #[inline]
    fn fill(&mut self) -> io::Result<&[u8]> {
        let hdr = self.end.header_or_err()?;
        let n = match self.cur.view(hdr) {
            Ok(0) => self.available(0, Wait::Until(None))?,
            Ok(n) => n,
            Err(_) => return Err(poisoned_error()),
        };
        // SAFETY: as in `ReadGrant::deref`, for n readable bytes (n <= N).
        Ok(unsafe { std::slice::from_raw_parts(self.read_ptr(), n) })
    }

    /// Releases up to `n` bytes (clamped to what is readable). Backs `BufRead::consume`.
    #[inline]
    fn consume_clamped(&mut self, n: usize) {
        let mut known = self.cur.readable_cached();
        if n > known {
            // More than the last `fill_buf` showed (say, what `len` reported since): look once
            // more. A corrupt cursor is reported by the next call that returns a `Result`.
            if let Some(hdr) = self.end.header() {
                known = self.cur.refresh(hdr).unwrap_or(known);
            }
        }
        self.release(n.min(known));
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // A copy inherited by a forked child must not close the parent's ring.
        if let Some(hdr) = self.end.header() {
            self.cur.publish(hdr);
            self.end.close(hdr);
        }
    }
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.capacity())
            .field("backend", &self.backend())
            .field("len_at_least", &self.cur.readable_cached())
            .field("position", &self.cur.tail())
            .field("poisoned", &self.cur.is_poisoned())
            .finish()
    }
}

/// Readable bytes lent by [`Consumer::read_grant`]: one contiguous `&[u8]`, even where the ring
/// wraps. Nothing is freed until [`release`](ReadGrant::release); dropping the grant frees
/// nothing, so the same bytes are lent again next time.
#[must_use = "a grant frees nothing until it is released"]
pub struct ReadGrant<'a> {
    ptr: *const u8,
    len: usize,
    consumer: &'a mut Consumer,
}

impl ReadGrant<'_> {
    /// Frees the first `n` bytes of the grant for the producer.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `n` exceeds the grant; `Unsupported` in a forked child (a grant held
    /// across `fork()`); `ConnectionAborted` once another process took this end's role over;
    /// nothing is released then.
    #[inline]
    pub fn release(self, n: usize) -> io::Result<()> {
        if n > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot release {n} bytes from a {}-byte grant", self.len),
            ));
        }
        self.consumer.end.header_or_err()?;
        self.consumer.release(n);
        Ok(())
    }

    /// The grant's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the grant is empty (only at end of stream, for `min == 0`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Deref for ReadGrant<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: [ptr, ptr + len) holds published, unreleased bytes (len <= N, inside the two
        // views); the producer does not write them until they are released, which needs the
        // consumer this grant borrows mutably (a producer that keeps the protocol; a hostile
        // one can, which is why lending calls are unsound against it: `docs::trust_model`).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl fmt::Debug for ReadGrant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadGrant").field("len", &self.len).finish()
    }
}

/// Blocks until at least one byte is readable, then reads as many as fit in `buf`. `Ok(0)` is
/// end of stream (the producer closed and everything was read).
///
/// Errors: `UnexpectedEof` after every committed byte was read if the producer's process died
/// without closing; `InvalidData` if the ring is poisoned.
impl Read for Consumer {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(buf, Wait::Until(None))
    }
}

/// `fill_buf` returns the readable bytes as one slice (contiguous across the wrap). It blocks
/// only while nothing is readable, and returns an empty slice at end of stream. `consume`
/// releases bytes to the producer (clamped to what is readable, which may include bytes
/// published after the `fill_buf`).
///
/// When it looks for new bytes: like `std::io::BufReader`, `fill_buf` first hands out what it
/// already holds. After a `consume` of part of the bytes it returned, the next `fill_buf`
/// returns the rest of them without reloading the producer's cursor; it reloads it (and shows
/// every byte readable at that moment) on the first call, once everything it showed has been
/// consumed, and whenever it is called again without a `consume` in between. So a parser that
/// found an incomplete record sees any newer bytes when it calls it again; but `fill_buf` does
/// not wait while some bytes are readable, so such a loop spins, and at the end of a stream
/// that stops inside a record it spins for ever. To wait for the rest of a record of `need`
/// bytes, call [`read_grant_blocking(need)`](Consumer::read_grant_blocking) (`UnexpectedEof`
/// if the stream ends first), as the crate's first example does. A parser that takes one
/// record per call works through what it has without pulling the producer's cursor line away
/// from the producer at every record (between cores that share no cache, that reload cost a
/// parser loop of 64-byte records three quarters of its speed: `BENCHMARKS.md`, "64-byte
/// records").
impl BufRead for Consumer {
    #[inline]
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.fill()
    }

    #[inline]
    fn consume(&mut self, amt: usize) {
        self.consume_clamped(amt)
    }
}

#[cfg(all(test, not(mirror_ring_loom)))]
mod tests {
    use std::io::{BufRead, Write};

    /// `fill_buf` after a partial `consume` shows the rest of its last view without reloading
    /// the producer's cursor; asked again without a `consume` (a parser that found an
    /// incomplete record), and once everything it showed is consumed, it shows everything.
    #[test]
    fn fill_buf_reloads_when_asked_again_or_used_up_not_after_a_partial_consume() {
        let (mut tx, mut rx) = crate::channel(4096).unwrap();
        tx.write_all(b"0123456789").unwrap();
        assert_eq!(rx.fill_buf().unwrap(), b"0123456789");
        rx.consume(4);
        tx.write_all(b"abc").unwrap();
        // Partly consumed since: the rest of the view, no reload.
        assert_eq!(rx.fill_buf().unwrap(), b"456789");
        // Asked again without a consume: a reload shows the new bytes.
        assert_eq!(rx.fill_buf().unwrap(), b"456789abc");
        rx.consume(9);
        tx.write_all(b"xy").unwrap();
        // Everything shown was consumed: a reload.
        assert_eq!(rx.fill_buf().unwrap(), b"xy");
        rx.consume(1);
        drop(tx);
        assert_eq!(rx.fill_buf().unwrap(), b"y");
        rx.consume(1);
        assert_eq!(rx.fill_buf().unwrap(), b"", "end of stream");
    }

    /// A parser loop that takes one record per `fill_buf` and calls again when a record is
    /// incomplete sees every record, with records split over the producer's writes.
    #[test]
    fn a_parser_loop_sees_records_completed_after_its_view() {
        let (mut tx, mut rx) = crate::channel(4096).unwrap();
        let writer = std::thread::spawn(move || {
            for i in 0..20_000u32 {
                let rec = format!("{i:08}\n");
                let (a, b) = rec.as_bytes().split_at(3);
                tx.write_all(a).unwrap();
                tx.write_all(b).unwrap();
            }
        });
        // The parser in a thread of its own, so that a hang fails the test (after a bound far
        // beyond the few milliseconds a healthy run takes) instead of stalling the suite.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut next = 0u32;
            loop {
                let buf = rx.fill_buf().unwrap();
                if buf.is_empty() {
                    break;
                }
                if buf.len() < 9 {
                    continue; // incomplete: ask again
                }
                assert_eq!(&buf[..9], format!("{next:08}\n").as_bytes());
                rx.consume(9);
                next += 1;
            }
            let _ = done_tx.send(next);
        });
        let next = done_rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the parser loop failed or hangs");
        assert_eq!(next, 20_000);
        writer.join().unwrap();
    }
}
