//! The cursor protocol: who may touch which bytes when, independent of how the bytes are
//! mapped.
//!
//! The ring is `N` bytes (a power of two). Two monotonically increasing `u64` cursors count
//! bytes: `head` (everything the producer ever committed) and `tail` (everything the consumer
//! ever released). They wrap around `u64::MAX`, so every difference is taken with wrapping
//! arithmetic; a byte position maps to offset `pos & (N - 1)`.
//!
//! - The producer owns `[head, tail + N)`: `free = N - (head - tail)` bytes it may write.
//!   `commit(n)` stores `head + n` with Release.
//! - The consumer owns `[tail, head)`: `readable = head - tail` bytes it may read.
//!   `release(n)` stores `tail + n` with Release.
//!
//! Each side keeps its own cursor privately (it never re-reads it from shared memory, so a
//! peer cannot move it) and caches the peer's, reloading it (Acquire) only when the cache says
//! "not enough". The reload is the only way a value from the peer enters, and it is validated
//! there: the peer's cursor must lie between the last value seen and our own cursor (consumer
//! view: `0 <= head - tail <= N`, and head may not move backwards; a framed consumer may run one
//! frame ahead of head, and a head that lags its cursor then shows nothing readable, see
//! [`ConsumerCursor`]). Anything else poisons the ring: that side returns an error from then
//! on and sets the shared `poisoned` flag. No slice, offset or length is formed from an
//! unvalidated value.
//!
//! # Atomic orderings
//!
//! - `head`: Release store in [`ProducerCursor::commit`] publishes the bytes written in
//!   `[old head, new head)`; paired with the Acquire load in [`ConsumerCursor::refresh`].
//! - `tail`: Release store in [`ConsumerCursor::release`] says "done reading
//!   `[old tail, new tail)`"; paired with the Acquire load in [`ProducerCursor::refresh`], after
//!   which the producer may overwrite those bytes.
//! - Waiter words: the asymmetric barrier pair ([`docs::barriers`](crate::docs::barriers)) and
//!   `wait.rs`.
//! - Role state `CLOSED`: Release compare-and-swap in [`close`] (`Header::close`) after the
//!   closer's last publish; Acquire load in `Header::is_closed`, after which one more refresh
//!   sees the final cursor.
//!
//! # Aliasing
//!
//! The two views of the data are the same memory, which the compiler does not know. The
//! protocol keeps every hand-over of bytes behind an Acquire load: the consumer hands out
//! bytes only up to a head it loaded with Acquire after they were published, and the producer
//! reuses bytes only after an Acquire load of a tail that released them. A grant never spans
//! more than `N` bytes, and the producer's and consumer's regions are disjoint, so no two live
//! slices cover the same physical byte.

use std::sync::Arc;

use crate::header::{resume_at, Claim, Header, Role, Word};
use crate::stats::Counters;
use crate::sync::{fence, publish_barrier, Ordering};

/// A value read from the peer failed validation; the ring is poisoned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Corrupt;

/// The producer's private state.
#[derive(Debug)]
pub(crate) struct ProducerCursor {
    /// Own cursor: never re-read from shared memory. May run ahead of `published` when
    /// commits are batched.
    head: u64,
    /// The last head stored into the header.
    published: u64,
    /// The last validated consumer cursor.
    cached_tail: u64,
    cap: u64,
    poisoned: bool,
    /// The peer's park code that lets a publish wake it after a compiler fence only
    /// (`Header::light_peer_code`; a code no slot holds means a full fence every time).
    light: u32,
    /// This end's counters (process-local; `stats.rs`).
    counters: Arc<Counters>,
}

impl ProducerCursor {
    /// Starts from the cursors in the header, validating them.
    pub(crate) fn attach(hdr: &Header, cap: u64) -> Result<Self, Corrupt> {
        // Acquire on tail: pairs with the consumer's Release publishes; the bytes below it, which
        // this producer may now overwrite, are done with. Acquire on head: a margin only (the
        // producer never reads below its head; a dead producer's publishes reach a newcomer
        // through the death the kernel proved, not through this load).
        let published = hdr.head.load(Ordering::Acquire);
        let tail = hdr.tail.load(Ordering::Acquire);
        let Some(head) = resume_at(published, tail, cap) else { return Err(Corrupt) };
        if head != published {
            // The consumer released past the published head (frames stamped by a producer that
            // died before its head store): bring head level with it now, so that a close with
            // nothing written is a clean end, not a head behind the consumer. Release: pairs
            // with the consumer's Acquire load of head, as a publish does.
            hdr.head.store(head, Ordering::Release);
        }
        Ok(ProducerCursor {
            head,
            published: head,
            cached_tail: tail,
            cap,
            poisoned: false,
            light: u32::MAX,
            counters: Arc::default(),
        })
    }

    /// Own cursor.
    #[inline]
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// The ring's capacity in bytes.
    #[inline]
    pub(crate) fn capacity(&self) -> u64 {
        self.cap
    }

    /// Where the next byte goes: `head & (N - 1)`.
    #[inline]
    pub(crate) fn offset(&self) -> usize {
        (self.head & (self.cap - 1)) as usize
    }

    /// Free bytes according to the cached tail (a lower bound).
    #[inline]
    pub(crate) fn free_cached(&self) -> usize {
        (self.cap - self.head.wrapping_sub(self.cached_tail)) as usize
    }

    /// Bytes committed and not yet released, according to the cached tail (an upper bound).
    #[inline]
    pub(crate) fn used_cached(&self) -> usize {
        self.head.wrapping_sub(self.cached_tail) as usize
    }

    #[inline]
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// This end's counters.
    pub(crate) fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Sets the peer's park code that allows the light barrier (see the field).
    pub(crate) fn with_light(mut self, light: u32) -> Self {
        self.light = light;
        self
    }

    /// The peer's park code that allows the light barrier.
    #[inline(always)]
    pub(crate) fn light(&self) -> u32 {
        self.light
    }

    /// The free space the consumer's cursor in the header shows now, if it is valid; nothing
    /// is cached or poisoned (for read-only queries: a bad value is judged by the next call
    /// that uses it).
    pub(crate) fn peek_free(&self, hdr: &Header) -> Option<usize> {
        if self.poisoned {
            return None;
        }
        // Acquire: as in `refresh`.
        let t = hdr.tail.load(Ordering::Acquire);
        let used = self.head.wrapping_sub(t);
        let advanced = t.wrapping_sub(self.cached_tail);
        (used <= self.cap && advanced <= self.published.wrapping_sub(self.cached_tail))
            .then(|| (self.cap - used) as usize)
    }

    /// Reloads and validates the consumer's cursor; returns the free space.
    pub(crate) fn refresh(&mut self, hdr: &Header) -> Result<usize, Corrupt> {
        if self.poisoned {
            return Err(Corrupt);
        }
        // Acquire: pairs with the Release store of tail in `ConsumerCursor::release`; the
        // consumer has finished reading everything below `t` before we overwrite it.
        let t = hdr.tail.load(Ordering::Acquire);
        let used = self.head.wrapping_sub(t);
        let advanced = t.wrapping_sub(self.cached_tail);
        // tail must lie in [cached_tail, published head]: never past what we published, never
        // backwards. (used <= cap follows, since head - cached_tail <= cap.) A framed frame sent
        // on its own is stamped just before its head is stored, so the consumer may release it
        // before that store (`ring/framed/link.rs`); but this end never loads the tail between
        // the two stores, so the bound holds.
        if used > self.cap || advanced > self.published.wrapping_sub(self.cached_tail) {
            return Err(self.poison(hdr));
        }
        self.cached_tail = t;
        Ok(self.free_cached())
    }

    /// Free space, refreshing the cached tail only if fewer than `max(want, 1)` bytes are
    /// known to be free.
    #[inline]
    pub(crate) fn writable(&mut self, hdr: &Header, want: usize) -> Result<usize, Corrupt> {
        let f = self.free_cached();
        if f >= want.max(1) && !self.poisoned {
            return Ok(f);
        }
        self.refresh(hdr)
    }

    /// Publishes `n` more bytes (the caller has written them at `offset()`), then wakes the
    /// consumer if it sleeps. `n` must not exceed the free space last reported.
    #[inline]
    pub(crate) fn commit(&mut self, hdr: &Header, n: usize) {
        self.advance(n);
        self.publish(hdr);
    }

    /// Counts `n` more bytes as written without publishing them yet (batching): the consumer
    /// sees them at the next [`publish`](Self::publish).
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.free_cached());
        self.head = self.head.wrapping_add(n as u64);
    }

    /// Bytes advanced but not yet published.
    #[inline]
    pub(crate) fn unpublished(&self) -> usize {
        self.head.wrapping_sub(self.published) as usize
    }

    /// Stores the head (if it moved) and wakes the consumer if it sleeps.
    #[inline]
    pub(crate) fn publish(&mut self, hdr: &Header) {
        if self.published == self.head {
            return;
        }
        self.published = self.head;
        // Release: the bytes in [old head, new head) become visible before the new head.
        // Pairs with the Acquire load of head in `ConsumerCursor::refresh`.
        hdr.head.store(self.head, Ordering::Release);
        notify(hdr, Word::Data, self.light, &self.counters);
    }

    /// Stores the head (everything advanced so far) without the wake-up check, for framing:
    /// the frame stamp goes between this store and [`notify`] (`ring/framed/link.rs`).
    #[inline]
    pub(crate) fn store_head(&mut self, hdr: &Header) {
        self.published = self.head;
        // Release: as in `publish`; pairs with the Acquire load of head in
        // `ConsumerCursor::refresh`.
        hdr.head.store(self.head, Ordering::Release);
    }

    /// The last validated consumer cursor.
    #[inline]
    pub(crate) fn cached_tail(&self) -> u64 {
        self.cached_tail
    }

    /// Whether the consumer may still read: `Err(Closed)` once it closed (`Err(Corrupt)` still,
    /// once this end found the ring poisoned: `InvalidData` from then on).
    pub(crate) fn poll_writable(&mut self, hdr: &Header, min: usize) -> Option<Result<usize, Stop>> {
        if hdr.is_closed(Role::Consumer) {
            return Some(Err(if self.poisoned { Stop::Corrupt } else { Stop::Closed }));
        }
        match self.writable(hdr, min) {
            Err(Corrupt) => return Some(Err(Stop::Corrupt)),
            Ok(n) if n >= min => return Some(Ok(n)),
            Ok(_) => {}
        }
        if hdr.is_poisoned() {
            self.poisoned = true;
            return Some(Err(Stop::Corrupt));
        }
        None
    }

    fn poison(&mut self, hdr: &Header) -> Corrupt {
        self.poisoned = true;
        poison_ring(hdr, Role::Producer);
        Corrupt
    }

    /// The shared poisoned flag was found set by a call that reports it (a framed `flush`):
    /// `InvalidData` from then on, as [`poll_writable`](Self::poll_writable) latches it. (The
    /// send paths look at this end's own flag, not the shared one.)
    pub(crate) fn saw_poison(&mut self) {
        self.poisoned = true;
    }
}

/// The consumer's private state.
#[derive(Debug)]
pub(crate) struct ConsumerCursor {
    /// Own cursor: never re-read from shared memory. May run ahead of `published` when
    /// releases are batched.
    tail: u64,
    /// The last tail stored into the header.
    published: u64,
    /// The readable limit: the last validated producer cursor, raised to `tail` when frames
    /// taken by their stamps took the tail past it (`catch_up_head`); never below `tail`.
    cached_head: u64,
    /// The last producer cursor loaded from the header and validated: the next one must not be
    /// behind it. It may lag `tail` by the frames taken by their stamps before their head
    /// came (`ring/framed/link.rs`).
    loaded_head: u64,
    /// Where the last [`view`](Self::view) started (`tail` then), if there was one.
    viewed_at: Option<u64>,
    cap: u64,
    poisoned: bool,
    /// Where the tail was when [`refresh_or_rest`](Self::refresh_or_rest) last served the bytes
    /// validated before the poisoning.
    rest_at: Option<u64>,
    /// The poisoning was for corruption inside the bytes: none are served after it.
    withheld: bool,
    /// The peer's park code that lets a publish wake it after a compiler fence only
    /// (`Header::light_peer_code`; a code no slot holds means a full fence every time).
    light: u32,
    /// This end's counters (process-local; `stats.rs`).
    counters: Arc<Counters>,
}

impl ConsumerCursor {
    /// Starts from the cursors in the header, validating them.
    pub(crate) fn attach(hdr: &Header, cap: u64) -> Result<Self, Corrupt> {
        // Acquire on head: pairs with the producer's Release publishes; the bytes below it may be
        // read on the strength of this load alone (`readable` answers from it until a
        // refresh; loom model `a_consumer_reads_what_its_attach_found`). Acquire on tail: a
        // margin only (a previous consumer's reads need no ordering with ours).
        let tail = hdr.tail.load(Ordering::Acquire);
        let head = hdr.head.load(Ordering::Acquire);
        let Some(level) = resume_at(head, tail, cap) else { return Err(Corrupt) };
        Ok(ConsumerCursor {
            tail,
            published: tail,
            cached_head: level,
            loaded_head: head,
            viewed_at: None,
            cap,
            poisoned: false,
            rest_at: None,
            withheld: false,
            light: u32::MAX,
            counters: Arc::default(),
        })
    }

    /// Own cursor.
    #[inline]
    pub(crate) fn tail(&self) -> u64 {
        self.tail
    }

    /// Where the next unread byte is: `tail & (N - 1)`.
    #[inline]
    pub(crate) fn offset(&self) -> usize {
        (self.tail & (self.cap - 1)) as usize
    }

    /// Readable bytes according to the cached head (a lower bound).
    #[inline]
    pub(crate) fn readable_cached(&self) -> usize {
        self.cached_head.wrapping_sub(self.tail) as usize
    }

    #[inline]
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// This end's counters.
    pub(crate) fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Sets the peer's park code that allows the light barrier (see the field).
    pub(crate) fn with_light(mut self, light: u32) -> Self {
        self.light = light;
        self
    }

    /// The readable bytes the producer's cursor in the header shows now, if it is valid;
    /// nothing is cached or poisoned (for read-only queries).
    pub(crate) fn peek_readable(&self, hdr: &Header) -> Option<usize> {
        if self.poisoned {
            return None;
        }
        // Acquire: as in `refresh`.
        let h = hdr.head.load(Ordering::Acquire);
        self.check_head(h)
    }

    /// The readable bytes head `h`, just loaded, shows: 0 while it lags the tail (see
    /// `loaded_head`); `None` if it is invalid: behind the last head loaded, or more than `N`
    /// ahead of the *published* tail. (Bytes consumed and not yet released are still ours: a
    /// producer can only reach a capacity beyond the tail it was given. Measured against our
    /// own tail, a forged head could show those bytes again as new ones.)
    #[inline]
    fn check_head(&self, h: u64) -> Option<usize> {
        let bound = self.published.wrapping_add(self.cap).wrapping_sub(self.loaded_head);
        if h.wrapping_sub(self.loaded_head) > bound {
            return None;
        }
        let avail = h.wrapping_sub(self.tail);
        Some(if avail <= self.cap { avail as usize } else { 0 })
    }

    /// Reloads and validates the producer's cursor; returns the readable byte count.
    pub(crate) fn refresh(&mut self, hdr: &Header) -> Result<usize, Corrupt> {
        if self.poisoned {
            return Err(Corrupt);
        }
        // Acquire: pairs with the Release store of head in `ProducerCursor::commit`; the bytes
        // below `h` are visible after this load.
        let h = hdr.head.load(Ordering::Acquire);
        // head must lie in [loaded_head, published + N]: never backwards, never more than N
        // ahead of the tail the producer was given.
        // Behind the tail it shows nothing readable: frames were taken by their stamps before
        // their head was stored (`ring/framed/link.rs`); such a head can only mislead this
        // side into waiting, never into reading.
        let Some(avail) = self.check_head(h) else { return Err(self.poison_cursor(hdr)) };
        self.loaded_head = h;
        self.cached_head = self.tail.wrapping_add(avail as u64);
        Ok(avail)
    }

    /// Poisons the ring for good: this side fails from now on, and the shared flag tells the
    /// producer. For corruption found above the cursor level (a bad frame header): the bytes
    /// below the head are not served after it ([`refresh_or_rest`](Self::refresh_or_rest)), since
    /// what they hold is what was found corrupt.
    pub(crate) fn poison(&mut self, hdr: &Header) -> Corrupt {
        self.withheld = true;
        self.poison_cursor(hdr)
    }

    /// Poisons the ring for an impossible producer cursor: the bytes below the last valid one
    /// are still served ([`refresh_or_rest`](Self::refresh_or_rest)).
    fn poison_cursor(&mut self, hdr: &Header) -> Corrupt {
        self.poisoned = true;
        poison_ring(hdr, Role::Consumer);
        Corrupt
    }

    /// Readable bytes, refreshing the cached head only if fewer than `max(want, 1)` are known.
    /// Once the ring is poisoned, the bytes validated before (see
    /// [`refresh_or_rest`](Self::refresh_or_rest)).
    #[inline]
    pub(crate) fn readable(&mut self, hdr: &Header, want: usize) -> Result<usize, Corrupt> {
        let r = self.readable_cached();
        if r >= want.max(1) && !self.poisoned {
            return Ok(r);
        }
        self.refresh_or_rest(hdr)
    }

    /// [`refresh`](Self::refresh) for a reader: once the ring is poisoned (by this refresh or
    /// earlier), the bytes below the head validated before, which a peer's later corruption must
    /// not take away (`docs::trust_model`: committed bytes are not lost). Served as long as the
    /// caller makes progress: asked again at the same tail (nothing consumed since they were
    /// last served, as a parser waiting for the rest of a record asks `fill_buf`), the answer is
    /// the error, since no more bytes will come and the same ones again would have it ask for
    /// ever.
    pub(crate) fn refresh_or_rest(&mut self, hdr: &Header) -> Result<usize, Corrupt> {
        self.refresh(hdr).or_else(|_| self.validated_rest())
    }

    /// The validated rest of [`refresh_or_rest`](Self::refresh_or_rest), after a failed refresh.
    #[cold]
    fn validated_rest(&mut self) -> Result<usize, Corrupt> {
        let rest = self.readable_cached();
        // (Frames taken by their stamps may have moved the tail past the cached head, until
        // `catch_up_head`: then nothing below it is left to serve, and the wrapped difference
        // is past N.)
        if self.withheld || rest == 0 || rest as u64 > self.cap || self.rest_at == Some(self.tail) {
            return Err(Corrupt);
        }
        self.rest_at = Some(self.tail);
        Ok(rest)
    }

    /// The readable bytes `fill_buf` shows (0: nothing, the caller waits): the rest of the
    /// previous view when the caller has consumed part of it since (it is still working
    /// through bytes it has seen, and loading the head now would take the producer's cursor
    /// line from it for nothing), otherwise a refresh: on the first call, once everything seen
    /// was consumed, and when the caller asks again without consuming anything (a parser that
    /// found an incomplete record). Bytes in a view were validated when they were first loaded.
    #[inline]
    pub(crate) fn view(&mut self, hdr: &Header) -> Result<usize, Corrupt> {
        let cached = self.readable_cached();
        let n = if cached > 0 && self.viewed_at.is_some_and(|at| at != self.tail) && !self.poisoned {
            cached
        } else {
            self.refresh_or_rest(hdr)?
        };
        self.viewed_at = Some(self.tail);
        Ok(n)
    }

    /// Frees `n` bytes at `offset()` for the producer, then wakes it if it sleeps. `n` must
    /// not exceed the readable count last reported.
    #[inline]
    pub(crate) fn release(&mut self, hdr: &Header, n: usize) {
        self.advance(n);
        self.publish(hdr);
    }

    /// Counts `n` more bytes as consumed without telling the producer yet (batching).
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.readable_cached());
        self.tail = self.tail.wrapping_add(n as u64);
    }

    /// Counts `n` more bytes as consumed that the consumer found committed by a frame's stamp
    /// rather than by a load of head (framing, `ring/framed/link.rs`). No check against the
    /// cached head, which may now lag the tail: [`catch_up_head`](Self::catch_up_head) brings it
    /// level before anything uses it.
    #[inline(always)]
    pub(crate) fn advance_stamped(&mut self, n: usize) {
        self.tail = self.tail.wrapping_add(n as u64);
    }

    /// Raises the cached head to the tail if stamped frames took the tail past it. The head in
    /// the header may stay behind the tail for a moment (a frame sent on its own is stamped
    /// before its head is stored): `refresh` then reports nothing readable, and checks the next
    /// head against the last one loaded, not against this.
    #[inline]
    pub(crate) fn catch_up_head(&mut self) {
        if self.cached_head.wrapping_sub(self.tail) > self.cap {
            self.cached_head = self.tail;
        }
    }

    /// The last tail stored into the header.
    #[inline(always)]
    pub(crate) fn published(&self) -> u64 {
        self.published
    }

    /// Bytes consumed and not yet released to the producer.
    #[inline(always)]
    pub(crate) fn unpublished(&self) -> usize {
        self.tail.wrapping_sub(self.published) as usize
    }

    /// Stores the tail (if it moved) and wakes the producer if it sleeps.
    #[inline]
    pub(crate) fn publish(&mut self, hdr: &Header) {
        if self.published == self.tail {
            return;
        }
        self.published = self.tail;
        // Release: our reads of [old tail, new tail) happen before the producer reuses the
        // bytes. Pairs with the Acquire load of tail in `ProducerCursor::refresh`.
        hdr.tail.store(self.tail, Ordering::Release);
        notify(hdr, Word::Space, self.light, &self.counters);
    }

    /// Readable once at least `min` bytes are there; `Err(Closed)` once the producer closed and
    /// fewer than `min` remain (the rest can still be read).
    pub(crate) fn poll_readable(&mut self, hdr: &Header, min: usize) -> Option<Result<usize, Stop>> {
        match self.readable(hdr, min) {
            Err(Corrupt) => return Some(Err(Stop::Corrupt)),
            Ok(n) if n >= min => return Some(Ok(n)),
            Ok(_) => {}
        }
        if hdr.is_closed(Role::Producer) {
            // The Acquire in is_closed made the producer's final head visible: look once more.
            return Some(match self.refresh(hdr) {
                Ok(n) if n >= min => Ok(n),
                // A producer that found the ring poisoned closes after its error: that is not
                // a clean end of stream. (Its poison store precedes its close, so it is visible.)
                Ok(_) if hdr.is_poisoned() => {
                    self.poisoned = true;
                    Err(Stop::Corrupt)
                }
                // A final head behind this side's cursor: the producer stamped frames (which
                // were taken) that it never covered with head before it closed. An honest one
                // stores head right after each stamp, and before its close.
                Ok(_) if self.loaded_head.wrapping_sub(self.tail) > self.cap => {
                    self.poison(hdr);
                    Err(Stop::Corrupt)
                }
                Ok(_) => Err(Stop::Closed),
                Err(Corrupt) => Err(Stop::Corrupt),
            });
        }
        if hdr.is_poisoned() {
            self.poisoned = true;
            return Some(Err(Stop::Corrupt));
        }
        None
    }
}

/// Why a wait ended without its condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The peer closed its end (for the consumer: and nothing more than what remains will come).
    Closed,
    /// The peer's process died without closing.
    PeerDied,
    /// The ring is poisoned.
    Corrupt,
    /// The deadline passed.
    TimedOut,
}

/// After a publish: wake the peer if its waiter flag is up. The fast path is a compiler fence
/// (or a full fence, as the sleeper's park record requires: [`docs::barriers`]), one load of
/// the read-mostly line 0 and one load of a line nobody writes while both sides are busy.
/// `light`: the peer's park code that allows the compiler fence alone.
///
/// [`docs::barriers`]: crate::docs::barriers
#[inline(always)]
pub(crate) fn notify(hdr: &Header, w: Word, light: u32, counters: &Counters) {
    if peer_sleeping(hdr, w, light) {
        wake(hdr, w, counters);
    }
}

/// Whether the peer sleeping on `w` has raised its flag ([`notify`]'s test). Its barrier
/// orders the look after our latest publish.
#[inline(always)]
pub(crate) fn peer_sleeping(hdr: &Header, w: Word, light: u32) -> bool {
    publish_barrier(hdr.parks_with(w.sleeper(), light));
    // Relaxed: ordering against the cursor store comes from the barrier pair.
    hdr.word(w).load(Ordering::Relaxed) != 0
}

#[cold]
#[inline(never)]
fn wake(hdr: &Header, w: Word, counters: &Counters) {
    // Clearing the flag first makes a sleeper that has not reached FUTEX_WAIT yet return at
    // once (the kernel compares the word); one that already sleeps is woken below.
    // Release: publishes our cursor store (before this in program order) to the sleeper's
    // Acquire reload of its flag after its futex returns (`wait::wait_for`; the async park's
    // look at its flag): a sleeper that finds the flag cleared then sees what woke it. (With
    // the light barrier half, a Relaxed clear could become visible before the cursor on a
    // weakly ordered CPU, and the woken sleeper poll in vain. On x86 the same instruction.)
    if hdr.word(w).swap(0, Ordering::Release) != 0 {
        counters.wakes_sent.bump();
        hdr.word(w).wake();
    }
}

/// Closes the holding `token` of `role`: marks it closed after every earlier publish (a
/// Release compare-and-swap, `Header::close`), then wakes the peer unconditionally (a full
/// fence here, not the light barrier: this runs once). Does nothing if the role was taken
/// over meanwhile: the new holder's role is not ours to close. Returns whether it closed.
pub(crate) fn close(hdr: &Header, role: Role, token: Claim) -> bool {
    let closed = hdr.close(role, token);
    if closed {
        wake_peer_after_flag(hdr, role);
    }
    closed
}

/// Sets the shared poisoned flag (found by `role`) and wakes the peer, which may sleep waiting
/// for a publish that will never come: its recheck sees the flag and fails with `InvalidData`.
fn poison_ring(hdr: &Header, role: Role) {
    hdr.poison();
    wake_peer_after_flag(hdr, role);
}

/// Wakes the peer of `role` unconditionally after a flag store (close, poison): runs rarely, so
/// a full fence, not the light barrier.
fn wake_peer_after_flag(hdr: &Header, role: Role) {
    // SeqCst fence: the flag store is ordered before the waiter-word store below, against the
    // sleeper's flag store + barrier + recheck (the same Dekker pattern as a publish).
    fence(Ordering::SeqCst);
    let w = role.peer().own_word();
    hdr.word(w).store(0, Ordering::Relaxed);
    hdr.word(w).wake();
}
