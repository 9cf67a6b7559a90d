//! Framed messages: the wire format and the batching rules.
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
//! longest frame is [`max_frame_len`](crate::FramedProducer::max_frame_len) `= capacity - 8` bytes
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
//! out (shared memory is shared): with an untrusted producer, receive with
//! [`recv_into`](crate::FramedConsumer::recv_into) and validate the copy
//! ([`trust_model`](super::trust_model)).
//!
//! # Batching
//!
//! By default every [`send`](crate::FramedProducer::send) (and every [`FrameGrant::commit`](crate::FrameGrant::commit))
//! publishes the producer's cursor, so the frame is visible to the consumer when the call
//! returns. [`set_batch(n)`](crate::FramedProducer::set_batch) lets up to `n` consecutive frames share
//! one cursor store instead. The pending frames are published
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
//! On the other side the consumer reloads the producer's cursor only when every frame it knows
//! of has been read, so it takes a whole batch (or whatever was published meanwhile) from one
//! cursor load. Each [`Frame`](crate::Frame) releases its bytes when dropped (one cursor store per frame, so
//! the producer sees the room at once). [`recv_batch`](crate::FramedConsumer::recv_batch) goes further:
//! it hands every readable frame to a closure in one tight loop and releases them all with one
//! cursor store.
//!
//! Batching on both sides is what makes small frames fast: a cursor store per message makes the
//! two cores trade the cursor's cache line on every frame (`BENCHMARKS.md`, "Messages").
