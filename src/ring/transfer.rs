//! The kernel on the other side: one `read()` straight into the ring's free space
//! ([`Producer::read_from`]), one `write()` straight out of its readable bytes
//! ([`Consumer::write_to`]). Because the ring is mirrored, each is a single call over one
//! contiguous region, wherever the cursors stand.

use std::io;
use std::time::Duration;

use super::{Consumer, Producer, Wait};

impl Producer {
    /// Waits for space, then fills all the contiguous free space with **one** `r.read()` and
    /// commits what it read. Returns the byte count; `Ok(0)` means the source is at its end
    /// (the ring always lends at least one byte).
    ///
    /// The reader writes straight into the ring's pages (for a socket or a file, the kernel
    /// copies into them: one copy in all). The region it is lent may hold bytes the consumer
    /// has already read: a reader that looks at its buffer sees old ring contents
    /// ([`docs::trust_model`](crate::docs::trust_model), "The kernel on the other side").
    ///
    /// # Errors
    ///
    /// The reader's error, passed through with nothing committed (`WouldBlock` from a
    /// non-blocking source included, and `Interrupted` when a signal whose handler was
    /// installed without `SA_RESTART` cuts a blocking read short: call again, as `io::copy`
    /// does); `InvalidData` if the reader claims to have read more
    /// than it was lent (nothing committed); `BrokenPipe` when the consumer is gone;
    /// `InvalidData` when the ring is poisoned; `Unsupported` in a forked child;
    /// `ConnectionAborted` once another process took this end's role over.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    ///
    /// let (mut tx, mut rx) = mirror_ring::channel(4096)?;
    /// let mut file: &[u8] = b"bytes from anywhere that implements Read";
    /// while tx.read_from(&mut file)? > 0 {}
    /// drop(tx);
    /// let mut s = String::new();
    /// rx.read_to_string(&mut s)?;
    /// assert_eq!(s, "bytes from anywhere that implements Read");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn read_from<R: io::Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        self.read_from_with(r, Wait::Until(None))
    }

    /// [`read_from`](Self::read_from), waiting at most `timeout` for space in the ring: a
    /// relay loop that must notice a request to stop calls this rather than wait for ever on
    /// a consumer that does not read.
    ///
    /// The timeout bounds the wait for the ring only. The one `r.read()` that follows is the
    /// reader's own call, as long as the reader makes it: give a socket a receive timeout
    /// (`UnixStream::set_read_timeout`) or make it non-blocking to bound that too.
    ///
    /// # Errors
    ///
    /// `TimedOut` when no space came in time (nothing read, nothing committed); otherwise as
    /// [`read_from`](Self::read_from).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (mut tx, _rx) = mirror_ring::channel(4096)?;
    /// let cap = tx.capacity();
    /// let mut source = std::io::repeat(7);
    /// // The consumer never reads: the first call fills the ring, the second waits 10 ms.
    /// assert_eq!(tx.read_from_timeout(&mut source, Duration::from_millis(10))?, cap);
    /// let err = tx.read_from_timeout(&mut source, Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn read_from_timeout<R: io::Read + ?Sized>(&mut self, r: &mut R, timeout: Duration) -> io::Result<usize> {
        self.read_from_with(r, Wait::within(timeout))
    }

    fn read_from_with<R: io::Read + ?Sized>(&mut self, r: &mut R, wait: Wait) -> io::Result<usize> {
        // `want` is the whole ring: the consumer's cursor is reloaded, so the reader gets all
        // the space there is now.
        let free = self.reserve(1, self.capacity(), wait)?;
        // SAFETY: write_ptr() is at offset < N and `free` (<= N) bytes from it are the
        // producer's free space, inside the two views, initialised (zeroed at creation or
        // written before); no other reference to them exists until they are committed (with a
        // consumer that keeps the protocol: `docs::trust_model`, lending calls).
        let space = unsafe { std::slice::from_raw_parts_mut(self.write_ptr(), free) };
        let n = r.read(space)?;
        if n > free {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the reader claims {n} bytes read into a {free}-byte buffer; nothing committed"),
            ));
        }
        if n > 0 {
            let hdr = self.end.header_or_err()?;
            self.cur.commit(hdr, n);
        }
        Ok(n)
    }
}

impl Consumer {
    /// Waits for data, then drains every readable byte into `w` with **one** `w.write()` and
    /// releases what it took. Returns the byte count; `Ok(0)` means the ring's stream ended
    /// (the producer closed and everything was read).
    ///
    /// The writer reads straight out of the ring's pages (for a socket or a file, the kernel
    /// copies out of them). Like [`fill_buf`](std::io::BufRead::fill_buf), this lends the
    /// ring's own bytes: with an untrusted peer process, see
    /// [`docs::trust_model`](crate::docs::trust_model).
    ///
    /// # Errors
    ///
    /// The writer's error, passed through with nothing released (`Interrupted` included: call
    /// again, as `io::copy` does; and `WouldBlock` from a non-blocking sink); `WriteZero` if
    /// the writer took nothing of a non-empty
    /// buffer; `InvalidData` if it claims to have written more than it was given (nothing
    /// released) or the ring is poisoned; `UnexpectedEof` after the producer's process died
    /// and everything was read; `Unsupported` in a forked child; `ConnectionAborted` once
    /// another process took this end's role over.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    ///
    /// let (mut tx, mut rx) = mirror_ring::channel(4096)?;
    /// tx.write_all(b"to any Write")?;
    /// drop(tx);
    /// let mut sink = Vec::new();
    /// while rx.write_to(&mut sink)? > 0 {}
    /// assert_eq!(sink, b"to any Write");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn write_to<W: io::Write + ?Sized>(&mut self, w: &mut W) -> io::Result<usize> {
        self.write_to_with(w, Wait::Until(None))
    }

    /// [`write_to`](Self::write_to), waiting at most `timeout` for data: a relay loop that
    /// must notice a request to stop calls this rather than wait for ever on a quiet producer.
    ///
    /// The timeout bounds the wait for the ring only. The one `w.write()` that follows is the
    /// writer's own call, as long as the writer makes it: give a socket a send timeout
    /// (`UnixStream::set_write_timeout`) or make it non-blocking to bound that too.
    ///
    /// # Errors
    ///
    /// `TimedOut` when no data came in time (nothing written, nothing released); otherwise as
    /// [`write_to`](Self::write_to).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use std::time::Duration;
    ///
    /// let (mut tx, mut rx) = mirror_ring::channel(4096)?;
    /// let mut sink = Vec::new();
    /// let err = rx.write_to_timeout(&mut sink, Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// tx.write_all(b"late")?;
    /// assert_eq!(rx.write_to_timeout(&mut sink, Duration::from_millis(10))?, 4);
    /// assert_eq!(sink, b"late");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn write_to_timeout<W: io::Write + ?Sized>(&mut self, w: &mut W, timeout: Duration) -> io::Result<usize> {
        self.write_to_with(w, Wait::within(timeout))
    }

    fn write_to_with<W: io::Write + ?Sized>(&mut self, w: &mut W, wait: Wait) -> io::Result<usize> {
        let mut n = self.available(0, wait)?;
        if n == 0 {
            return Ok(0);
        }
        // `available` may have answered from the cached head: reload it once, so the writer
        // gets every byte readable now. A corrupt head found here is reported by the next call.
        if let Some(hdr) = self.end.header() {
            n = self.cur.readable(hdr, self.capacity()).unwrap_or(n);
        }
        // SAFETY: read_ptr() is at offset < N with `n` (<= N) readable bytes from it, inside
        // the two views, published before the Acquire load that counted them; the producer
        // does not write them until they are released, below (a producer that keeps the
        // protocol: `docs::trust_model`, lending calls).
        let data = unsafe { std::slice::from_raw_parts(self.read_ptr(), n) };
        let m = w.write(data)?;
        released(self, m, n)
    }
}

/// After a writer reported `m` of `n` lent bytes written: releases them, or refuses a writer
/// that took nothing or claims more than it was given (releasing nothing).
pub(super) fn released(c: &mut Consumer, m: usize, n: usize) -> io::Result<usize> {
    if m > n {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the writer claims {m} bytes written from a {n}-byte buffer; nothing released"),
        ));
    }
    if m == 0 {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "the writer took none of the ring's readable bytes"));
    }
    c.end.header_or_err()?;
    c.release(m);
    Ok(m)
}
