//! The four async ends: tokio's I/O traits over the byte ends, `send`/`recv` over the framed
//! ends, and the async forms of `read_from`/`write_to`.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};

use super::park::Parking;
use crate::ring::{
    poisoned_error, shut_error, Consumer, Frame, FrameGrant, FramedConsumer, FramedProducer, Producer, ReadGrant, Wait,
    WriteGrant,
};
use crate::stats::Stats;

impl Producer {
    /// Turns this producer into an async one ([`AsyncProducer`], tokio's `AsyncWrite`), which
    /// parks its task, not its thread, while the ring is full. The consumer may be async,
    /// blocking or spinning, in this process or another: it wakes this end through the same
    /// waiter word as a blocking producer's ([`docs::async_ends`](crate::docs::async_ends)).
    ///
    /// # Errors
    ///
    /// `Unsupported` in a forked child (the end belongs to its parent); `ConnectionAborted`
    /// once another process took this end's role over; `BrokenPipe` for a producer that an
    /// async end shut down (`poll_shutdown`) and handed back with `into_inner`.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// rt.block_on(async {
    ///     let (tx, rx) = mirror_ring::channel(4096)?;
    ///     let (mut tx, mut rx) = (tx.into_async()?, rx.into_async()?);
    ///     let writer = tokio::spawn(async move { tx.write_all(&[7; 10_000]).await });
    ///     let mut got = Vec::new();
    ///     rx.read_to_end(&mut got).await?; // 10 000 bytes through a 4 KiB ring
    ///     writer.await??;
    ///     assert_eq!(got, [7; 10_000]);
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_async(self) -> io::Result<AsyncProducer> {
        self.end.enter_async()?;
        Ok(AsyncProducer { inner: self, parking: Parking::default() })
    }
}

impl Consumer {
    /// Turns this consumer into an async one ([`AsyncConsumer`], tokio's `AsyncRead` and
    /// `AsyncBufRead`, whose buffer is the ring itself), which parks its task while the ring is
    /// empty. The producer may be async, blocking or spinning, in this process or another.
    ///
    /// # Errors
    ///
    /// `Unsupported` in a forked child; `ConnectionAborted` once another process took this
    /// end's role over.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use tokio::io::AsyncBufReadExt;
    ///
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// let (mut tx, rx) = mirror_ring::channel(4096)?;
    /// // A blocking producer on a thread, an async consumer on the runtime.
    /// let writer = std::thread::spawn(move || writeln!(tx, "one\ntwo"));
    /// let lines = rt.block_on(async {
    ///     let mut lines = rx.into_async()?.lines();
    ///     let mut all = Vec::new();
    ///     while let Some(line) = lines.next_line().await? {
    ///         all.push(line);
    ///     }
    ///     Ok::<_, std::io::Error>(all)
    /// })?;
    /// writer.join().unwrap()?;
    /// assert_eq!(lines, ["one", "two"]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_async(self) -> io::Result<AsyncConsumer> {
        self.end.enter_async()?;
        Ok(AsyncConsumer { inner: self, parking: Parking::default() })
    }
}

impl FramedProducer {
    /// Turns this framed producer into an async one ([`AsyncFramedProducer`]), whose
    /// [`send`](AsyncFramedProducer::send) parks its task while there is no room.
    ///
    /// # Errors
    ///
    /// `Unsupported` in a forked child; `ConnectionAborted` once another process took this
    /// end's role over.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// rt.block_on(async {
    ///     let (tx, rx) = mirror_ring::channel(4096)?;
    ///     let mut tx = tx.into_framed().into_async()?;
    ///     let mut rx = rx.into_framed().into_async()?;
    ///     tx.send(b"hello").await?;
    ///     assert_eq!(&*rx.recv().await?.unwrap(), b"hello");
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_async(self) -> io::Result<AsyncFramedProducer> {
        self.byte_end().end.enter_async()?;
        Ok(AsyncFramedProducer { inner: self, parking: Parking::default() })
    }
}

impl FramedConsumer {
    /// Turns this framed consumer into an async one ([`AsyncFramedConsumer`]), whose
    /// [`recv`](AsyncFramedConsumer::recv) parks its task while no frame is there and yields
    /// the same zero-copy [`Frame`].
    ///
    /// # Errors
    ///
    /// `Unsupported` in a forked child; `ConnectionAborted` once another process took this
    /// end's role over.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// let (tx, rx) = mirror_ring::channel(4096)?;
    /// let mut tx = tx.into_framed(); // a blocking sender on a thread
    /// let sender = std::thread::spawn(move || tx.send(b"from a thread"));
    /// rt.block_on(async {
    ///     let mut rx = rx.into_framed().into_async()?;
    ///     let frame = rx.recv().await?.expect("one frame");
    ///     assert_eq!(&*frame, b"from a thread");
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// sender.join().unwrap()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_async(self) -> io::Result<AsyncFramedConsumer> {
        self.byte_end().end.enter_async()?;
        Ok(AsyncFramedConsumer { inner: self, parking: Parking::default() })
    }
}

/// The writing end of a ring, for async code: tokio's [`AsyncWrite`].
///
/// Made by [`Producer::into_async`]. A write that finds the ring full parks its task (no
/// thread, no polling) until the consumer releases space. `poll_flush` does nothing (every
/// write is published when it returns); `poll_shutdown` closes the ring, so the consumer reads
/// what is left and then sees end of stream (dropping the end does the same). After it the end
/// writes nothing more: writes, through this end or the producer under it (`get_mut`,
/// `into_inner`), fail with `BrokenPipe`; `poll_flush` and `poll_shutdown` succeed. Dropping a
/// pending write loses nothing: a write commits only what it copied, and parking only
/// registers interest.
///
/// # Examples
///
/// ```
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// rt.block_on(async {
///     let (tx, rx) = mirror_ring::channel(4096)?;
///     let (mut tx, mut rx) = (tx.into_async()?, rx.into_async()?);
///     tx.write_all(b"hi").await?;
///     tx.shutdown().await?; // closes the ring
///     let mut s = String::new();
///     rx.read_to_string(&mut s).await?;
///     assert_eq!(s, "hi");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct AsyncProducer {
    // Declared (so dropped) before `inner`: see `AsyncConsumer`.
    parking: Parking,
    inner: Producer,
}

impl AsyncProducer {
    /// The byte-level producer, for its non-blocking calls (`try_write`, `write_grant`, `free`).
    pub fn get_ref(&self) -> &Producer {
        &self.inner
    }

    /// The byte-level producer, mutably (its `try_*` calls and grants never block).
    pub fn get_mut(&mut self) -> &mut Producer {
        self.parking.hand_out(&mut self.inner)
    }

    /// Gives the blocking producer back.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = mirror_ring::channel(4096)?;
    /// let mut tx = tx.into_async()?.into_inner();
    /// tx.try_write(b"blocking again")?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_inner(self) -> Producer {
        let AsyncProducer { inner, mut parking, .. } = self;
        parking.settle(&inner);
        inner
    }

    /// What this end's calls have done so far, async parks included (see [`Stats`]).
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Waits (parked) until at least `min` bytes are free, then lends the free space as one
    /// contiguous slice: the async form of [`Producer::write_grant_blocking`], for records
    /// built in place. Write into the grant, then [`commit`](WriteGrant::commit) how much to
    /// publish. With `min` 0 it waits for one free byte.
    ///
    /// Dropping the pending call, or the grant, commits nothing.
    ///
    /// # Errors
    ///
    /// As [`Producer::write_grant`], without `WouldBlock`: `InvalidInput` without waiting
    /// for space when `min` exceeds the capacity, `BrokenPipe` when the consumer is gone, `InvalidData` when the
    /// ring is poisoned.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::io::AsyncReadExt;
    ///
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// rt.block_on(async {
    ///     let (tx, rx) = mirror_ring::channel(4096)?;
    ///     let (mut tx, mut rx) = (tx.into_async()?, rx.into_async()?);
    ///     // A length-prefixed record, built where the consumer will read it.
    ///     let mut grant = tx.write_grant(4 + 5).await?;
    ///     grant[..4].copy_from_slice(&5u32.to_le_bytes());
    ///     grant[4..9].copy_from_slice(b"hello");
    ///     grant.commit(9)?;
    ///     let mut record = [0; 9];
    ///     rx.read_exact(&mut record).await?;
    ///     assert_eq!(&record[4..], b"hello");
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn write_grant(&mut self, min: usize) -> io::Result<WriteGrant<'_>> {
        poll_fn(|cx| self.poll_room(cx, min, min)).await?;
        // Found: lends it without waiting (the cached cursors already show `min` free bytes).
        self.inner.write_grant(min)
    }

    /// Waits until at least one byte of space is free (or an error): the free byte count.
    fn poll_space(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let capacity = self.inner.capacity();
        self.poll_room(cx, 1, capacity)
    }

    /// Waits until at least `min` bytes of space are free (or an error), looking for up to
    /// `want` (`Producer::reserve`): the free byte count.
    fn poll_room(&mut self, cx: &mut Context<'_>, min: usize, want: usize) -> Poll<io::Result<usize>> {
        if self.inner.end.is_shut() {
            return Poll::Ready(Err(shut_error()));
        }
        self.parking.poll(cx, &mut self.inner, |p| p.reserve(min, want, Wait::No))
    }

    /// Fills the ring's free space with one `poll_read` of `r` and commits what it read: the
    /// async form of [`Producer::read_from`]. Waits (parked) for space first. `Ok(0)`: the
    /// source is at its end.
    ///
    /// Dropping the future before it completes commits nothing.
    ///
    /// # Errors
    ///
    /// The reader's errors, with nothing committed; `BrokenPipe` when the consumer is gone;
    /// `InvalidData` when the ring is poisoned, or when the reader replaced the [`ReadBuf`]
    /// it was lent with one of its own (nothing committed: its bytes are not in the ring).
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::io::AsyncReadExt;
    ///
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// rt.block_on(async {
    ///     let (tx, rx) = mirror_ring::channel(4096)?;
    ///     let (mut tx, mut rx) = (tx.into_async()?, rx.into_async()?);
    ///     let mut source: &[u8] = b"straight into the ring";
    ///     assert_eq!(tx.read_from(&mut source).await?, 22);
    ///     drop(tx);
    ///     let mut s = String::new();
    ///     rx.read_to_string(&mut s).await?;
    ///     assert_eq!(s, "straight into the ring");
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn read_from<R: AsyncRead + Unpin + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        poll_fn(|cx| {
            let free = match self.poll_space(cx) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            // SAFETY: write_ptr() is at offset < N and `free` (<= N) bytes from it are the
            // producer's free space, inside the two views, initialised memory (zeroed at
            // creation or written before); nothing else refers to them until we commit (with a
            // consumer that keeps the protocol: `docs::trust_model`, lending calls).
            let space = unsafe { std::slice::from_raw_parts_mut(self.inner.write_ptr(), free) };
            let lent = space.as_ptr();
            let mut buf = ReadBuf::new(space);
            match Pin::new(&mut *r).poll_read(cx, &mut buf) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    // A `ReadBuf` never reports more than it holds, but safe code can replace
                    // the one it is lent with its own (`*buf = ReadBuf::new(leaked)`): then
                    // the bytes are not in the ring, and may be more than the free space.
                    // Commit nothing then, as the blocking `read_from` for a reader that
                    // claims too much.
                    let n = buf.filled().len();
                    if buf.filled().as_ptr() != lent || n > free {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "the reader replaced the buffer it was lent; nothing committed",
                        )));
                    }
                    if n > 0 {
                        let hdr = self.inner.end.header_or_err()?;
                        self.inner.cur.commit(hdr, n);
                    }
                    Poll::Ready(Ok(n))
                }
            }
        })
        .await
    }
}

impl AsyncWrite for AsyncProducer {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.inner.end.is_shut() {
            return Poll::Ready(Err(shut_error()));
        }
        this.parking.poll(cx, &mut this.inner, |p| p.try_write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Every write is published; after a shutdown there is nothing left to flush.
        Poll::Ready(io::Write::flush(&mut self.get_mut().inner))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.inner.end.is_shut() {
            return Poll::Ready(Ok(()));
        }
        let hdr = match this.inner.end.header_or_err() {
            Ok(hdr) => hdr,
            Err(e) => return Poll::Ready(Err(e)),
        };
        this.inner.cur.publish(hdr);
        this.parking.settle(&this.inner);
        // The end stays (get_ref, get_mut, into_inner) but refuses every write from here.
        this.inner.end.shut();
        Poll::Ready(Ok(()))
    }
}

impl fmt::Debug for AsyncProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncProducer")
            .field("ring", &self.inner)
            .field("shut_down", &self.inner.end.is_shut())
            .finish()
    }
}

/// The reading end of a ring, for async code: tokio's [`AsyncRead`] and [`AsyncBufRead`].
///
/// Made by [`Consumer::into_async`]. `poll_fill_buf` lends every readable byte as one slice
/// straight out of the ring (contiguous across the wrap, refreshed on every call), so
/// `lines()`, `read_until` and parsers work on the ring itself; `consume` gives bytes back to
/// the producer. A read that finds the ring empty parks its task until the producer publishes
/// or closes. Dropping a pending read loses nothing: bytes are released only when they are
/// copied out (`poll_read`) or consumed.
///
/// End of stream: the producer closed and everything was read. If the producer's process died
/// without closing, every committed byte is delivered, then `UnexpectedEof`.
///
/// # Examples
///
/// ```
/// use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
///
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// rt.block_on(async {
///     let (tx, rx) = mirror_ring::channel(4096)?;
///     let (mut tx, mut rx) = (tx.into_async()?, rx.into_async()?);
///     tx.write_all(b"key=value\n").await?;
///     let buf = rx.fill_buf().await?; // the ring's own bytes
///     assert_eq!(buf, b"key=value\n");
///     let n = buf.len();
///     rx.consume(n);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct AsyncConsumer {
    // Declared (so dropped) before `inner`, which keeps the ring mapped: the parking's drop
    // removes its registration by the waiter word's address, which must not be handed out to
    // another ring's word (a new mapping at the same address) before it does.
    parking: Parking,
    inner: Consumer,
}

impl AsyncConsumer {
    /// The byte-level consumer, for its non-blocking calls (`try_read`, `read_grant`, `len`).
    pub fn get_ref(&self) -> &Consumer {
        &self.inner
    }

    /// The byte-level consumer, mutably (its `try_*` calls and grants never block).
    pub fn get_mut(&mut self) -> &mut Consumer {
        self.parking.hand_out(&mut self.inner)
    }

    /// Gives the blocking consumer back.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = mirror_ring::channel(4096)?;
    /// let rx = rx.into_async()?.into_inner();
    /// assert!(rx.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_inner(self) -> Consumer {
        let AsyncConsumer { inner, mut parking } = self;
        parking.settle(&inner);
        inner
    }

    /// What this end's calls have done so far, async parks included (see [`Stats`]).
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Waits (parked) until at least `min` bytes are readable, then lends the readable bytes
    /// as one contiguous slice: the async form of [`Consumer::read_grant_blocking`], for a
    /// parser that needs a whole record in place. (`fill_buf`, of tokio's `AsyncBufReadExt`,
    /// returns as soon as one byte is readable, so a parser waiting for the rest of a record
    /// with it would poll without rest.) [`release`](ReadGrant::release) frees what was
    /// consumed. With `min` 0 it waits for one byte, or lends an empty grant at the end of the
    /// stream.
    ///
    /// Dropping the pending call, or the grant, releases nothing.
    ///
    /// # Errors
    ///
    /// As [`Consumer::read_grant`], without `WouldBlock`: `UnexpectedEof` when fewer than
    /// `min` bytes (`min > 0`) can ever come (the producer closed or died; the bytes left stay
    /// readable with a smaller `min`; for any `min` once the producer's process died with
    /// nothing left), `InvalidInput` without waiting for data when `min` exceeds the capacity,
    /// `InvalidData` when the ring is poisoned.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::io::AsyncWriteExt;
    ///
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// rt.block_on(async {
    ///     let (tx, rx) = mirror_ring::channel(4096)?;
    ///     let (mut tx, mut rx) = (tx.into_async()?, rx.into_async()?);
    ///     let writer = async move {
    ///         tx.write_all(&5u32.to_le_bytes()).await?;
    ///         tokio::task::yield_now().await; // the record arrives in two parts
    ///         tx.write_all(b"hello").await
    ///     };
    ///     let reader = async {
    ///         let len = u32::from_le_bytes(rx.read_grant(4).await?[..4].try_into().unwrap()) as usize;
    ///         let record = rx.read_grant(4 + len).await?; // parks until the whole record is in
    ///         assert_eq!(&record[4..4 + len], b"hello");
    ///         record.release(4 + len)
    ///     };
    ///     let (w, r) = tokio::join!(writer, reader);
    ///     w.and(r)
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn read_grant(&mut self, min: usize) -> io::Result<ReadGrant<'_>> {
        poll_fn(|cx| self.parking.poll(cx, &mut self.inner, |c| c.available(min, Wait::No))).await?;
        // Found: lends it without waiting (the cached cursor already shows `min` bytes).
        self.inner.read_grant(min)
    }

    /// Waits until at least one byte is readable: every byte readable now (refreshing the
    /// producer's cursor), or 0 at the end of the stream.
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.parking.poll(cx, &mut self.inner, |c| {
            let hdr = c.end.header_or_err()?;
            // Poisoned: the bytes validated before are still served.
            match c.cur.refresh_or_rest(hdr) {
                Ok(0) => c.available(0, Wait::No),
                Ok(n) => Ok(n),
                Err(_) => Err(poisoned_error()),
            }
        })
    }

    /// Drains every readable byte into `w` with one `poll_write` and releases what it took:
    /// the async form of [`Consumer::write_to`]. Waits (parked) for data first. `Ok(0)`: the
    /// ring's stream ended (the producer closed and everything was read).
    ///
    /// Dropping the future before it completes releases nothing.
    ///
    /// # Errors
    ///
    /// The writer's errors, with nothing released; `WriteZero` if the writer took nothing;
    /// `InvalidData` if it claims more than it was given (nothing released) or the ring is
    /// poisoned; `UnexpectedEof` when the producer's process died and everything was read.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::io::AsyncWriteExt;
    ///
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// rt.block_on(async {
    ///     let (tx, rx) = mirror_ring::channel(4096)?;
    ///     let (mut tx, mut rx) = (tx.into_async()?, rx.into_async()?);
    ///     tx.write_all(b"out of the ring").await?;
    ///     drop(tx);
    ///     let mut sink = Vec::new();
    ///     while rx.write_to(&mut sink).await? > 0 {}
    ///     assert_eq!(sink, b"out of the ring");
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn write_to<W: AsyncWrite + Unpin + ?Sized>(&mut self, w: &mut W) -> io::Result<usize> {
        poll_fn(|cx| {
            let n = match self.poll_data(cx) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(0)),
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            // SAFETY: read_ptr() is at offset < N with `n` (<= N) readable bytes from it,
            // inside the two views, published before the Acquire load that counted them; the
            // producer does not write them until we release them (a producer that keeps the
            // protocol: `docs::trust_model`, lending calls).
            let data = unsafe { std::slice::from_raw_parts(self.inner.read_ptr(), n) };
            match Pin::new(&mut *w).poll_write(cx, data) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Ready(Ok(m)) => Poll::Ready(crate::ring::transfer::released(&mut self.inner, m, n)),
            }
        })
        .await
    }
}

impl AsyncRead for AsyncConsumer {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(this.inner.end.header_or_err().map(|_| ()));
        }
        let space = buf.initialize_unfilled();
        match this.parking.poll(cx, &mut this.inner, |c| c.try_read(space)) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncBufRead for AsyncConsumer {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        match this.poll_data(cx) {
            Poll::Ready(Ok(n)) => {
                // SAFETY: as in `write_to`: `n` readable bytes from read_ptr(), not written by
                // the producer until released, which needs `&mut self`, which the returned
                // slice borrows.
                Poll::Ready(Ok(unsafe { std::slice::from_raw_parts(this.inner.read_ptr(), n) }))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        io::BufRead::consume(&mut self.get_mut().inner, amt)
    }
}

impl fmt::Debug for AsyncConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncConsumer").field("ring", &self.inner).finish()
    }
}

/// The sending end of a framed ring, for async code.
///
/// Made by [`FramedProducer::into_async`]. [`send`](Self::send) parks its task while there is
/// no room for the frame. Dropping a pending `send` sends nothing (a frame is written and
/// committed in one step, once there is room).
///
/// # Examples
///
/// ```
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// rt.block_on(async {
///     let (tx, rx) = mirror_ring::channel(4096)?;
///     let mut tx = tx.into_framed().into_async()?;
///     let mut rx = rx.into_framed().into_async()?;
///     let sender = tokio::spawn(async move {
///         for i in 0..1000u32 {
///             tx.send(&i.to_le_bytes()).await?;
///         }
///         Ok::<(), std::io::Error>(())
///     });
///     let mut n = 0u32;
///     while let Some(frame) = rx.recv().await? {
///         assert_eq!(*frame, n.to_le_bytes());
///         n += 1;
///     }
///     sender.await??;
///     assert_eq!(n, 1000);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct AsyncFramedProducer {
    // Declared (so dropped) before `inner`: see `AsyncConsumer`.
    parking: Parking,
    inner: FramedProducer,
}

impl AsyncFramedProducer {
    /// Sends one message, parking the task until there is room for it.
    ///
    /// # Errors
    ///
    /// As [`FramedProducer::send`]: `InvalidInput` for a message longer than
    /// [`max_frame_len`](FramedProducer::max_frame_len) (nothing written), `BrokenPipe` when
    /// the consumer is gone, `InvalidData` when the ring is poisoned.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// let (tx, _rx) = mirror_ring::channel(1 << 16)?;
    /// let mut tx = tx.into_framed().into_async()?;
    /// let err = rt.block_on(tx.send(&vec![0; 70_000])).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        poll_fn(|cx| self.parking.poll(cx, &mut self.inner, |p| p.try_send(msg))).await
    }

    /// Sends the leading messages of `msgs` that fit, parking the task until the first does,
    /// and returns how many it sent (`Ok(0)` only for an empty slice): the async
    /// [`FramedProducer::send_batch`]. Dropping a pending call sends nothing.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), for the first message; a later message that cannot go ends the
    /// batch, and the next call (which starts with it) reports why.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// rt.block_on(async {
    ///     let (tx, rx) = mirror_ring::channel(4096)?;
    ///     let mut tx = tx.into_framed().into_async()?;
    ///     let mut rx = rx.into_framed().into_async()?;
    ///     let msgs: Vec<[u8; 8]> = (0..1000u64).map(u64::to_le_bytes).collect();
    ///     let sender = tokio::spawn(async move {
    ///         let mut rest = &msgs[..];
    ///         while !rest.is_empty() {
    ///             let sent = tx.send_batch(rest).await?;
    ///             rest = &rest[sent..];
    ///         }
    ///         Ok::<(), std::io::Error>(())
    ///     });
    ///     let mut sum = 0;
    ///     while rx.recv_batch(|frame| sum += u64::from_le_bytes(frame.try_into().unwrap())).await? > 0 {}
    ///     sender.await??;
    ///     assert_eq!(sum, 999 * 1000 / 2);
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn send_batch<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> io::Result<usize> {
        poll_fn(|cx| self.parking.poll(cx, &mut self.inner, |p| p.try_send_batch(msgs))).await
    }

    /// Lends the space for one `len`-byte message, parking the task until there is room: the
    /// async [`FramedProducer::reserve`]. Fill the grant, then
    /// [`commit`](FrameGrant::commit) it; dropping the grant, or the pending call, sends
    /// nothing. For messages built from stores narrower than 8 bytes, or longer than 256 bytes,
    /// this is faster than building them in a buffer for [`send`](Self::send) (see
    /// [`docs::framing`](crate::docs::framing), "Messages built for the call").
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// rt.block_on(async {
    ///     let (tx, rx) = mirror_ring::channel(4096)?;
    ///     let mut tx = tx.into_framed().into_async()?;
    ///     let mut rx = rx.into_framed().into_async()?;
    ///     let mut grant = tx.reserve(16).await?;
    ///     grant[..8].copy_from_slice(&7u64.to_le_bytes());
    ///     grant[8..].copy_from_slice(&42u64.to_le_bytes());
    ///     grant.commit()?;
    ///     let frame = rx.recv().await?.unwrap();
    ///     assert_eq!(frame[8..], 42u64.to_le_bytes());
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn reserve(&mut self, len: usize) -> io::Result<FrameGrant<'_>> {
        // Wait until a reserve would not block. The grant the readiness check gets is dropped
        // uncommitted, which writes and sends nothing, and the room it found can only grow
        // meanwhile (the producer is the only one that takes room), so the reserve below gets
        // it again, and is the one whose borrow is returned (or an error that came since: a
        // close, the poison flag).
        poll_fn(|cx| self.parking.poll(cx, &mut self.inner, |p| p.try_reserve(len).map(drop))).await?;
        self.inner.try_reserve(len)
    }

    /// The framed producer underneath, for its non-blocking calls (`try_send`, `try_reserve`,
    /// `try_send_batch`, `flush`, `set_batch`).
    pub fn get_mut(&mut self) -> &mut FramedProducer {
        self.parking.hand_out(&mut self.inner)
    }

    /// The framed producer underneath.
    pub fn get_ref(&self) -> &FramedProducer {
        &self.inner
    }

    /// Gives the blocking framed producer back.
    pub fn into_inner(self) -> FramedProducer {
        let AsyncFramedProducer { inner, mut parking } = self;
        parking.settle(&inner);
        inner
    }

    /// What this end's calls have done so far, async parks included (see [`Stats`]).
    pub fn stats(&self) -> Stats {
        self.inner.byte_end().stats()
    }
}

impl fmt::Debug for AsyncFramedProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFramedProducer").field("framed", &self.inner).finish()
    }
}

/// The receiving end of a framed ring, for async code.
///
/// Made by [`FramedConsumer::into_async`]. [`recv`](Self::recv) parks its task until a frame
/// arrives and yields the same zero-copy [`Frame`] as the blocking end. Dropping a pending
/// `recv` loses nothing: a frame is released only when the [`Frame`] it returned drops.
///
/// # Examples
///
/// ```
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// rt.block_on(async {
///     let (tx, rx) = mirror_ring::channel(4096)?;
///     let mut tx = tx.into_framed().into_async()?;
///     let mut rx = rx.into_framed().into_async()?;
///     tx.send(b"one").await?;
///     drop(tx);
///     assert_eq!(&*rx.recv().await?.unwrap(), b"one");
///     assert!(rx.recv().await?.is_none()); // end of stream
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct AsyncFramedConsumer {
    // Declared (so dropped) before `inner`: see `AsyncConsumer`.
    parking: Parking,
    inner: FramedConsumer,
}

impl AsyncFramedConsumer {
    /// Receives the next message, parking the task until one arrives. `Ok(None)`: end of
    /// stream (the producer closed and every frame was read).
    ///
    /// # Errors
    ///
    /// As [`FramedConsumer::recv`]: `UnexpectedEof` when the producer's process died (after
    /// every frame it committed was read), `InvalidData` for a corrupt frame or a poisoned
    /// ring.
    ///
    /// # Examples
    ///
    /// See [`AsyncFramedConsumer`].
    pub async fn recv(&mut self) -> io::Result<Option<Frame<'_>>> {
        // Wait until a receive finds a frame. It is forgotten there (nothing released) and
        // handed out again below, in a borrow of its own, from its length: a second receive
        // would read the header again, which a hostile producer may have taken back by then
        // (and `recv` would answer `WouldBlock`).
        let found = poll_fn(|cx| {
            self.parking.poll(cx, &mut self.inner, |c| {
                c.try_recv().map(|frame| {
                    frame.map(|frame| {
                        let len = frame.len();
                        std::mem::forget(frame);
                        len
                    })
                })
            })
        })
        .await?;
        // SAFETY: the last call on the consumer was that receive, which returned this frame
        // and forgot it (the parking's `settle` after it sees the end only by reference).
        Ok(found.map(|len| unsafe { self.inner.frame_found(len) }))
    }

    /// Hands every frame readable now to `f`, in order, parking the task until there is at
    /// least one, and returns how many `f` saw; `Ok(0)` means end of stream: the async
    /// [`FramedConsumer::recv_batch`]. Dropping a pending call loses nothing (`f` runs only
    /// in the poll that takes the frames, and they are released when it returns).
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    ///
    /// # Examples
    ///
    /// See [`send_batch`](AsyncFramedProducer::send_batch).
    pub async fn recv_batch(&mut self, mut f: impl FnMut(&[u8])) -> io::Result<usize> {
        poll_fn(|cx| self.parking.poll(cx, &mut self.inner, |c| c.try_recv_batch(&mut f))).await
    }

    /// The framed consumer underneath, for its non-blocking calls (`try_recv`,
    /// `try_recv_batch`, `try_recv_into`).
    pub fn get_mut(&mut self) -> &mut FramedConsumer {
        self.parking.hand_out(&mut self.inner)
    }

    /// The framed consumer underneath.
    pub fn get_ref(&self) -> &FramedConsumer {
        &self.inner
    }

    /// Gives the blocking framed consumer back.
    pub fn into_inner(self) -> FramedConsumer {
        let AsyncFramedConsumer { inner, mut parking } = self;
        parking.settle(&inner);
        inner
    }

    /// What this end's calls have done so far, async parks included (see [`Stats`]).
    pub fn stats(&self) -> Stats {
        self.inner.byte_end().stats()
    }
}

impl fmt::Debug for AsyncFramedConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFramedConsumer").field("framed", &self.inner).finish()
    }
}
