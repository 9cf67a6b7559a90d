//! Framed messages: the wire format, the hand-over and the batching rules.
//!
//! [`Producer::into_framed`](crate::Producer::into_framed) and
//! [`Consumer::into_framed`](crate::Consumer::into_framed) turn the two ends of a byte ring
//! into a message queue whose records never split: each frame is written in place and read as
//! one `&[u8]` straight out of the ring, even where it crosses the wrap point.
//!
//! # Wire format
//!
//! The stream is a sequence of frames, each starting at a ring position that is a multiple of
//! 8 (so the payload handed out is 8-byte aligned too):
//!
//! ```text
//! offset 0        8                8 + len          8 + round_up(len, 8)
//!        | header | payload (len)  | padding (0-7)  | next frame ...
//! ```
//!
//! The header is one little-endian `u64`, for a frame of `len` bytes at stream position `pos`
//! (bit 0 is the least significant):
//!
//! ```text
//! bits  0-31  len
//! bits 32-61  (!len XOR S(pos)) & 0x3FFF_FFFF     S(pos) = (pos >> 3) mod 2^30, the stamp
//! bits 62-63  state: 10 stamped, 01 unstamped (00 and 11 are never a header)
//! ```
//!
//! - `len`: the payload length. Zero is a valid frame.
//! - The check field is the length's complement XOR the frame's **position stamp**: a header
//!   is only ever valid at the one position it was written for. Two positions one lap of the
//!   ring apart have different stamps for every ring of up to 4 GiB (one lap is `N / 8 < 2^30`
//!   words), so a header left from the previous lap never passes for the next one.
//! - The state says whether the producer has *stamped* the frame (told the consumer it is
//!   there) or only written it (*unstamped*: committed once the producer's cursor covers it).
//!   A word of all zeros (fresh pages, and the clear mark below) or all ones is never a header,
//!   at any position.
//! - The padding bytes have unspecified contents.
//!
//! A frame therefore occupies `8 + round_up(len, 8)` bytes, and at most the whole ring: the
//! longest frame is [`max_frame_len`](crate::FramedProducer::max_frame_len) `= capacity - 8`
//! bytes (capped at `u32::MAX - 7` for rings of 4 GiB and more). Thanks to the mirror no frame
//! ever needs padding at the wrap point. If the ends were converted at a position that is not
//! a multiple of 8 (raw bytes went through the ring first), both skip to the next multiple of
//! 8 before the first frame; convert both ends at the same stream position.
//!
//! # The hand-over: one cache line per message
//!
//! A frame says itself that it is there, so the consumer does not load the producer's cursor
//! per message (which would move that cursor's cache line between the cores on every frame,
//! on top of the frame's own line). For each frame sent on its own the producer:
//!
//! 1. writes the payload;
//! 2. writes the **clear mark** (a zero word) where the next frame's header will go, unless
//!    the frame fills the ring to the byte (then that word is the header of the consumer's
//!    oldest unreleased frame, one lap old, which the stamp tells apart; rings over 4 GiB
//!    never fill to the byte, and nor does a frame whose word after it, loaded first, does
//!    not read as "not yet": a byte consumer may have stopped inside a frame's payload);
//! 3. stores the *stamped* header (Release): the one store to the word the consumer polls;
//! 4. stores its cursor, head (Release): the commit, as in the byte API;
//! 5. checks the consumer's waiter flag (the barrier pair of [`barriers`](super::barriers)).
//!
//! A batch (below) is written before anything is published: each frame's payload and header,
//! the first frame's header *unstamped*, the others stamped; then the clear mark after the
//! batch, the first frame's stamp, and head. No consumer reaches the later frames before it
//! has passed the first. In both orders the stamp is the last store to a frame's bytes and
//! comes before head: once head covers a frame, a byte consumer may hold its bytes, the header
//! included, in a `&[u8]`, and nothing stores there any more. (Before header version 7 a batch
//! was stamped after its head.)
//!
//! The consumer polls the header word at its cursor (Acquire, pairing with step 3): a stamped
//! header for exactly that position, of at most `max_frame_len` bytes, is a frame whose bytes
//! are all visible. Nothing else is loaded per message. Otherwise it decides in its slow path:
//!
//! - the clear mark, or a header for the position one lap back: nothing yet (no load of the
//!   producer's cursor, so a consumer that has caught up waits on the data line alone), unless
//!   the producer has closed;
//! - anything else, or a closed producer: it loads head (Acquire, pairing with step 4). Below
//!   head every frame has been written in full, so the word there must be this position's
//!   header, stamped or not, fitting below head; anything else **poisons the ring** (this and
//!   every later call fail with `InvalidData`, and the producer sees the poison flag too, when
//!   it next waits for room).
//!   An unstamped header for this position means the producer is writing a batch from here:
//!   until head covers it the consumer polls head only, leaving the frame's line to the
//!   producer.
//!
//! An unstamped frame below head is still a frame: a byte-level publish of framed bytes leaves
//! one (the framed producer's own byte end does, when it sleeps for room with frames pending).
//! The other way round, frames may be stamped, and taken by the consumer, before head covers
//! them: for a moment the consumer's cursor, and the tail it releases, may be ahead of the
//! published head, by the frames of one publish. Every reader of the cursors allows for that
//! (a head behind the consumer's cursor shows nothing readable), and a producer that takes the
//! role over from one that died between steps 3 and 4 first covers those frames with head (it
//! recognises them exactly: from the head's position a run of stamped headers, each of its own
//! position, and the clear mark after them), since the consumer may have taken them. Being
//! committed, they are drained before the death is reported: a consumer that finds its
//! producer dead while watching head (behind a batch's unstamped first header, or with no frame
//! through head yet in this epoch) looks once more at the word at its cursor, trusting a stamp
//! there on the ground below (its cursor lies inside the producer's framing epoch, which still
//! holds), or, if a newcomer has ended that epoch meanwhile, at head, which then covers them.
//! Otherwise a consumer that turned into a byte end after the death would read their raw bytes,
//! headers and all, once a byte newcomer covered them.
//!
//! The first frame after a conversion is taken through head (or, after the producer's death,
//! by that one look), and stamps are trusted only after a frame of the producer's current
//! framing epoch came through head (below): until then the words ahead were not written by
//! this stream's framed producer (raw bytes, or frames written through the byte API, could
//! leave anything there), and from then on every word the consumer looks at was written by the
//! producer in this lap (step 2) or is a header one lap old.
//!
//! **Frames written through the byte API** (a stream built by hand, or relayed from elsewhere
//! into a byte producer while the consumer is framed) must go in whole, each write ending
//! where a frame ends (head is always a frame boundary: part of a frame below it poisons the
//! ring), with *unstamped* headers: they are frames once the byte cursor covers them, and the
//! consumer takes them through head only.
//!
//! **The framing epoch.** A byte producer writes no clear mark after its last frame, so the
//! word there is whatever an earlier lap left, perhaps payload that reads as a stamp; taken by
//! its stamp, it would lend the producer's free room as a frame. So the consumer trusts stamps
//! only from a producer that writes frames, only from that producer's first frame on, and only
//! while it writes them: the producer's role slot holds its *framing epoch* (header version 6),
//! odd while it writes frames and even while it writes bytes, moved on by one at each switch
//! (`into_framed`, a framed end's `into_inner`, a take-over, which starts as a byte end), and
//! line 0 holds where the current epoch's first frame goes. `into_framed` stores the clear
//! mark there, then the start, then the epoch (Release). Where the ring is full (by the
//! consumer's cursor as `into_framed` reloads it), that word still holds unread bytes of the
//! lap before, which may read as anything, and cannot be marked yet: the epoch then begins
//! only when the first frame claims its room, with the mark first, and until then the
//! producer counts as a byte producer (nothing it left is trusted, nothing is covered by a
//! newcomer). The consumer
//! trusts stamps once a frame at or past that start came through head under an odd epoch, and
//! after each frame it takes by its stamp checks that the epoch is still that one (one load of
//! the read-mostly first line after the stamp's Acquire load, a seqlock reader's second look:
//! the producer stores the even epoch and a Release fence before its first byte). So frames
//! written through the byte API, with stamped headers or not, are always taken through head,
//! and whatever bytes follow them are never taken for one. A relay that copies another ring's
//! framed bytes verbatim, cut wherever its reads end, does not work (part of a frame below head
//! is corruption): relay whole messages, with `recv` and `send`.
//!
//! **No load races a byte producer's stores.** A byte producer writes with plain copies, and
//! in one process an atomic load of the same bytes by another thread would be a data race in
//! Rust's memory model, even of a value never trusted. So until it trusts stamps, the consumer
//! loads no word above the head at all: it looks at head, and at the words head covers. Two
//! windows remain, as in any seqlock, where a consumer loads the word at its cursor until it
//! sees the epoch change: while it trusts stamps, a framed producer that has just turned into
//! bytes (`into_inner`) may be writing there; and in its one look after the producer's death,
//! so may a byte newcomer that has just taken the role over (`take_over_producer`). Between
//! processes, where the two sides share no compiler, it is the same race any peer can cause; in
//! one process, turn both ends into bytes at the same stream position (as "Wire format" asks of
//! the conversion to frames), not the producer alone, and take a dead producer's role over in
//! another thread only once the consumer has reported the death. (Miri, on a heap-backed stand-in for the mirror, found the race this closes
//! and the one the publish order above closes: review of 2026-12-01.)
//!
//! A consumer that sleeps raises its waiter flag, runs its half of the barrier pair, then
//! rechecks the stamp: the Dekker pair is the stamp store and the flag, with the producer's
//! barrier after its stamp and head stores and before its flag load (step 5), so either the
//! recheck sees the stamp or the producer sees the flag. (A recheck that goes on to head pairs
//! with the head store the same way.) The interleavings are model-checked with loom
//! (`loom-tests/frames.rs`): streaming through a ring of two frames with both sides sleeping,
//! headers one lap old where the consumer waits, batches, a newcomer after a producer that
//! died with a batch unpublished, a batch published by head alone (as the byte end's sleep
//! publishes it), a producer that dies between the stamp and the head of a frame or of a batch
//! (the newcomer goes on after them), a byte end that holds what head covers while a batch is
//! published (nothing there changes), and a consumer that looks at head right after taking a
//! frame by its stamp (it waits for the head, and never takes it for corruption).
//!
//! Head remains the committed cursor, and always a frame boundary: the byte API, a closing or
//! dead producer's last frames, and a newcomer that takes over the role (it resumes at head,
//! where step 2 left the clear mark, or after the frames stamped above it) all rely on it.
//!
//! # Releases
//!
//! The consumer moves its own cursor per frame, privately, and stores it for the producer
//! (one store, and the wake-up check for a producer waiting for space):
//!
//! - once a quarter of the ring (at most 64 KiB) is released;
//! - at once when the producer is parked waiting for space (its waiter flag, checked on every
//!   receive);
//! - before it waits for a frame, and before a `try_*` call answers `WouldBlock`;
//! - at the end of every [`recv_batch`](crate::FramedConsumer::recv_batch);
//! - on [`into_inner`](crate::FramedConsumer::into_inner) and when the consumer is dropped.
//!
//! So the producer reloads the consumer's cursor about once per lap rather than per frame.
//! The price: a dropped [`Frame`](crate::Frame)'s bytes reach the producer with the next
//! release, not at once, so a producer that polls with `try_send` (and never parks) can see
//! `WouldBlock` while up to a quarter of the ring waits to be released by a consumer that is
//! busy elsewhere. A blocking `send` parks, which the consumer's next receive notices; until
//! that call, the parked producer waits (up to its timeout, if it has one). So a consumer
//! that stops receiving while its producer may need the room it gave back (it waits for the
//! producer on another channel, or both ends run on one thread) must hand it over first: one
//! more `try_recv` (its `WouldBlock` releases; a frame it returns is released in turn at the
//! next call), or [`into_inner`](crate::FramedConsumer::into_inner), or dropping the consumer.
//!
//! # Hostile producers
//!
//! Every header is read once and checked before any slice is formed: the check field against
//! the length and the exact position, the length against `max_frame_len` (so a frame never
//! spans more than the ring, inside the two views), and below head the frame's fit under head.
//! A peer cannot make the consumer read out of bounds, take a frame written for another
//! position or lap, or loop: a batch stops after an eighth of the ring, a `try_*` call after
//! one look, a blocking call waits with bounded sleeps. A stamped header is taken as committed:
//! a hostile producer can stamp frames it never covers with head (the consumer takes them, up
//! to a ring ahead of its last release, as it would from an honest producer; a head that then
//! stays behind shows nothing readable, a head that moves backwards poisons the ring, and so
//! does a close with the head still behind them: not a clean end of the stream), or
//! write headers the consumer takes for "nothing yet" (it then waits, as for a producer that
//! never sends). A hostile producer
//! can also change payload bytes while they are lent out (shared memory is shared): with an
//! untrusted producer, receive with [`recv_into`](crate::FramedConsumer::recv_into) and
//! validate the copy ([`trust_model`](super::trust_model)).
//!
//! # Batching on the producer side
//!
//! By default every [`send`](crate::FramedProducer::send) (and every
//! [`FrameGrant::commit`](crate::FrameGrant::commit)) publishes its frame (steps 3 to 5), so
//! the frame is visible to the consumer when the call returns.
//! [`set_batch(n)`](crate::FramedProducer::set_batch) lets up to `n` consecutive frames share
//! one publish instead: the frames after the first of a batch are written stamped, and the
//! first is stamped at the publish, so the consumer sees none of them before it. The pending
//! frames are published
//! - when `n` frames are pending, or a quarter of the ring is;
//! - when the ring is full (before a blocking call sleeps or a `try_*` call returns
//!   `WouldBlock`);
//! - when the consumer is asleep waiting for data (checked on every send, at the cost of one
//!   load of a line nobody writes while both sides are busy);
//! - on [`flush`](crate::FramedProducer::flush), and when the producer is dropped.
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
//! With stamps, one frame at a time already costs the consumer no cursor load and the producer
//! no cursor load per frame; what batching still saves is the publish itself (a head store,
//! the stamp's Release and the wake-up check per frame) and, between cores, the consumer's
//! polling of lines the producer is still filling. `BENCHMARKS.md` ("Messages") measures where
//! it wins. [`recv_batch`](crate::FramedConsumer::recv_batch) is the consumer's counterpart:
//! it hands every readable frame to a closure in one tight loop (at most an eighth of the ring
//! per call) and releases them with one store.
//!
//! # Batch sends
//!
//! `set_batch` still makes one call per message, and every call checks the ownership, the
//! room and the batch. When the messages are at hand together,
//! [`send_batch`](crate::FramedProducer::send_batch) (and `try_send_batch`,
//! `send_batch_timeout`) takes a slice of them: one ownership check and one look at the room
//! per run of up to an eighth of the ring (usually one run for the call), a tight loop that
//! writes each frame of the run (for up to 8 bytes, the header and the payload in one 16-byte
//! store), and one publish per run. It is the same
//! hand-over as a batch of `set_batch`: the first frame is written unstamped and stamped at the
//! publish, the others stamped as they are written. The call sends the leading messages that fit and
//! returns how many; a message that is too long, or a full, closed or poisoned ring, ends the
//! call early, and the next call (which starts with that message) reports it. Frames held back
//! by `set_batch` are published with it. With `recv_batch` on the other side, this is the
//! fastest way to move small messages (`BENCHMARKS.md`, "Batch sends").
//!
//! # Messages built for the call: `send` or a grant
//!
//! [`send`](crate::FramedProducer::send) copies a message that is already in memory. Most
//! callers build each message just for the call, in a buffer on the stack, so the copy reads
//! bytes stored a moment before, which may still be in the core's store buffer. On x86-64 a
//! load is served from there only when one earlier store covers it (store-to-load
//! forwarding); otherwise it waits until those stores reach the cache. Stores reach the cache
//! in order, so between two cores the wait is likely behind the producer's earlier stores into
//! ring lines that the consumer's core is reading: in one thread the same copy costs little.
//! When `send` copied with 16-byte loads, 64-byte messages written as 8-byte words ran at half
//! the rate of the same messages written straight into the ring.
//!
//! So `send` (and `send_batch`, and the byte end's writes) copy up to 256 bytes with 8-byte
//! loads, which any store of 8 bytes or more that contains them can serve. On the Intel host,
//! 64-byte messages rebuilt before each `send` now run as fast as the same messages written
//! straight into the ring (158-182 M/s, blocking or with `try_*`; 83-102 with the 16-byte
//! copy: against rtrb's `push`/`pop` of `[u8; 64]` that is 2.7-3.3x in rtrb's slow mode, 0.8x in
//! its fast one, `BENCHMARKS.md`, "How the receiver uses a message"). Two cases still favour writing in place
//! with [`reserve`](crate::FramedProducer::reserve) (or `try_reserve`), the writes into the
//! grant, and [`commit`](crate::FrameGrant::commit):
//!
//! - a message built from stores narrower than 8 bytes (`u32` fields, byte by byte): an
//!   8-byte load then spans two stores and waits as before (64 bytes built as sixteen `u32`
//!   stores: 90 M/s through `send`, 192 written into a grant; byte by byte: 43 against 60);
//! - messages longer than 256 bytes, which `send` copies with `memcpy`: in place, each byte
//!   is stored once rather than twice.
//!
//! `BENCHMARKS.md` ("Copies the store buffer can serve") has the measurements. Note that
//! rtrb's `push` takes its message by value and the compiler writes it into the slot, so it
//! always writes in place.
//!
//! ```
//! let (tx, rx) = mirror_ring::channel(1 << 16)?;
//! let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
//! for seq in 0..100u64 {
//!     // A 64-byte record: its sequence number, then the body, written into the ring itself.
//!     let mut grant = tx.reserve(64)?;
//!     let (head, body) = grant.split_at_mut(8);
//!     head.copy_from_slice(&seq.to_le_bytes());
//!     body.fill(b'.');
//!     grant.commit()?;
//! }
//! for seq in 0..100u64 {
//!     let frame = rx.recv()?.unwrap();
//!     assert_eq!(frame[..8], seq.to_le_bytes());
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! For messages of up to 8 bytes `send` is the call to use: it writes each together with the
//! clear mark after it in one 16-byte store, and is never slower than the grant (blocking,
//! both ran at 272-296 M/s; with `try_*`, `send` at 216-286 and the grant at 131-201).
//!
//! # Which side sets the pace
//!
//! Between two cores, one message at a time, the throughput depends on which side is slower
//! per message. When the consumer is (it does some work with each message, as real consumers
//! do), the ring fills, the producer waits for releases, and the consumer reads lines the
//! producer finished long ago: the stamped hand-over then runs close to its floor. When the
//! consumer does less per message than the producer, it catches up and reads each frame right
//! after it is stamped, from the line the producer is still writing the next frame into; both
//! sides then wait on that line, message after message, at the speed of the core-to-core
//! round trip rather than of either side's code. Every queue that the consumer polls right
//! behind the producer does this; `BENCHMARKS.md` ("Which side sets the pace") measures it on
//! mirror-ring, a minimal stamped queue and rtrb with about ten nanoseconds of work added to one
//! side.
//!
//! In that caught-up state every store to the line the consumer polls costs a trip between the
//! cores, so a frame sent on its own makes as few as it can: the payload (with the clear mark,
//! in the same line for short frames) and the stamped header, once. (Until 2026-11-30 the
//! header was written twice, unstamped first, and a consumer that saw the unstamped word went
//! to watch head, one more line: with 24 busy steps per 64-byte message on the sending side
//! that ran at 12-14 M/s; now 18-21, level with the minimal stamped queue, `BENCHMARKS.md`.)
//!
//! At 64 bytes what made mirror-ring's producer the slower side in the first place was mostly
//! `send`'s copy of messages built just before the call (see "Messages built for the call"
//! above). With the copy that forwarding can serve, the producer keeps ahead through a 1 MiB
//! ring and even a `try_recv` loop with nothing to do runs at 171-179 M/s instead of 18-28 (a
//! small ring is another matter: below).
//!
//! The blocking receives ([`recv`](crate::FramedConsumer::recv),
//! [`recv_timeout`](crate::FramedConsumer::recv_timeout),
//! [`recv_into`](crate::FramedConsumer::recv_into),
//! [`recv_batch`](crate::FramedConsumer::recv_batch) and their timed forms) get out of that
//! state by themselves: one that finds no frame right after taking 16 or more in a row (each
//! found at once, or in batches) has caught up with a streaming producer, and **slips**: it
//! waits 1 µs (or until its deadline, if sooner; never longer than the ring's spin budget, and
//! not at all with a zero budget) without touching the ring before it looks again, so the
//! producer writes ahead on lines nobody is reading, and the consumer then takes them as
//! finished lines. On the Intel host this took blocking 64-byte frames from 25 to about 80-90
//! M/s, and a blocking `recv_batch` behind an unbatched producer from 17-20 to about 80 M/s at
//! 64 bytes and from 65-75 to about 230-270 at 8 bytes (`BENCHMARKS.md`). The price is at most
//! 1 µs of delay for a frame that arrives during a slip: only after a run of 16 frames, so a
//! request/response exchange (one frame, then a wait) never slips. The `try_*` receives never
//! wait, so they never slip; a caller that polls them in a loop can slip itself, or batch on
//! the producer side ([`set_batch`](crate::FramedProducer::set_batch)), after which the
//! consumer finds whole batches of finished lines. (Since the copy that store-to-load
//! forwarding can serve, the slip matters at 8 bytes, not at 64: `BENCHMARKS.md`.) The other
//! way round, a blocking `send` that finds the ring full slips the same way before it waits,
//! as every blocking write does (crate docs, "Between threads").
//!
//! A small ring makes the caught-up state likelier, and a bare `try_recv` loop cannot leave it.
//! In an outside harness whose receiver only checked each message, 8-byte frames through a
//! 64 KiB ring ran at 55-65 M/s with a spinning `try_send` / `try_recv` pair and 146-152 with
//! `send` / `recv`; through 1 MiB the spinning pair ran at 186-220 in one run and 68-117 in
//! another, whichever state it fell into. The bench's queue-size table and the measurements
//! behind this are in `BENCHMARKS.md`, "Queue size and the receiver's loop" (with a third loop
//! shape, `examples/lean.rs`, and what the clear mark costs in that state: up to half the rate
//! at 8 bytes). Rings of 256 KiB or more, and `recv` (or a back-off of about a microsecond
//! after a `WouldBlock` that follows a run of frames) keep a fast consumer out of it.
