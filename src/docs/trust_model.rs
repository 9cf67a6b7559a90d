//! The trust model: what a peer process can do to this one.
//!
//! Between processes, the peer and the ring file are untrusted: a peer can write any value
//! into any byte of the shared memory at any time, die at any instruction, or never run
//! again. The promise is that it cannot make this process read or write out of bounds, crash,
//! hang in a call with a timeout, or lose bytes already committed; it can still make the ring
//! useless to this process, and tell it lies about the data.
//!
//! # What is validated
//!
//! - Every value read from the shared header before it becomes an offset or a length: a
//!   cursor must lie between the last value seen and this side's own cursor (the consumer sees
//!   at most `N` readable bytes, and the producer's cursor never moves backwards; the same for
//!   the consumer's cursor as the producer sees it). Each side keeps its own cursor privately
//!   and never reads it back from shared memory. An impossible value *poisons* the ring:
//!   `InvalidData` from then on, for the side that found it once it has served the bytes it
//!   had validated before (a consumer's reads, grants and `fill_buf` lend them first, as long
//!   as each call consumes something: asked again at the same place, they fail), and for its
//!   peer as soon as the peer looks at the shared flag (a producer when it has to wait for
//!   room, or at a framed `flush`, which reports the flag: until then its writes go into room
//!   it already knew of; a framed consumer when no stamped frame is at its cursor: until then
//!   it takes the frames stamped there, so frames sent after a flag that a third party set,
//!   before either side looked, still arrive); the flag also wakes a sleeping peer.
//! - Frame headers (the length against its complement and the frame's position stamp, the
//!   frame's fit in the ring, and below the published head its fit under it) are read once
//!   and checked before any slice is formed ([`framing`](super::framing), "Hostile
//!   producers").
//! - The file handed to [`SharedRing::from_fd`](crate::SharedRing::from_fd): a memfd sealed
//!   against shrinking and growing (so no holder can truncate it under the mapping and raise
//!   `SIGBUS`), open read-write, one page plus a power-of-two capacity long, with a header whose
//!   magic, version, capacity, backend, role states and cursors are checked from a copy before
//!   anything is mapped, and again once mapped.
//! - The peer's pid and start time are only used to open a pidfd, read `/proc` and ask
//!   `kill(pid, 0)` whether it exists (which sends no signal); a pid that is not positive is
//!   never passed to the kernel.
//!
//! # What a hostile peer can still do
//!
//! - **Change bytes in flight.** Shared memory is shared: bytes can change while you look at
//!   them (see the next section).
//! - **Stall the ring**: never publish, never release, or keep its pid alive while doing
//!   nothing. A framed producer can also leave the clear mark (or a header one lap old) where
//!   the next frame's header belongs, below its published head: the consumer, which learns of
//!   frames from their headers, keeps waiting there instead of poisoning the ring, until the
//!   producer closes or dies (then it looks at head and poisons). Use the timeout variants
//!   with an untrusted peer.
//! - **Forge a close, a death or corruption**: the ends then report `Ok(0)`,
//!   `UnexpectedEof`, `BrokenPipe` or `InvalidData` early. A peer that writes a pid of its
//!   choice into its slot can also hide its own death (blocked calls then end only by their
//!   timeouts).
//! - **Clear this side's waiter flag** without publishing: a sleeper not yet in its futex
//!   wait returns at once, and one already asleep is not woken (a store is not a wake-up) but
//!   loses the wake-up of the next honest publish, which finds no flag raised; either way it
//!   looks again at its sleep's bound at the latest (25 ms between processes, 100 ms between
//!   threads; an async end up to twice its own, which between processes is 100 ms while the
//!   peer-poll thread watches the peer: [`async_ends`](super::async_ends), "Bounded
//!   sleeps"; measured with a scribbler clearing the flags at random: blocking calls up to
//!   ~100 ms late, none lost) and parks again. Its heavy barrier is rate-limited, so this
//!   cannot drive a tight loop of membarriers ([`barriers`](super::barriers)).
//! - **Punch holes in a memfd ring** (`fallocate(PUNCH_HOLE)` is allowed by the size seals):
//!   the bytes read as zeros, one more way of changing bytes in flight.
//! - **Take a living holder's role away**, by forging its death (see the next section).
//!
//! # Forged deaths and take-overs
//!
//! A take-over ([`lifecycle`](super::lifecycle), "Restart") trusts the role slot to name the
//! holder, and takes the role from a holder the slot shows dead. A process that can write the
//! header (any holder of the memfd, any forked copy of the ring) can therefore:
//!
//! - **Forge a death** (a start time that is not the holder's, a pid of a dead process) and
//!   so let a taker take the role of a holder that is alive. The holder notices at its next
//!   call (every call passes the one checked place, which compares the slot's claim word with
//!   the one the end claimed with, and stops at a new epoch: one relaxed load of the
//!   read-mostly first line) and from
//!   then on returns `ConnectionAborted`, and touches the header no more: no publish, no
//!   release, no close when dropped. Not earlier: a call already past that check when the
//!   take-over lands, a blocking one that was waiting then included, still completes (a read
//!   returns what it found) and its one cursor publish still reaches the header. The peer
//!   validates it
//!   like any cursor: an impossible one poisons the ring (`InvalidData`), a possible one can
//!   hand the new holder bytes that change in flight, as any hostile peer can.
//! - **Rewrite the claim word.** A word that names another holding of this end's role (a
//!   claimed, taking or closed state in another epoch: closed there is a taker that has
//!   closed since) stops the end as a take-over does; a word rewritten within the end's own
//!   epoch, or to free or an invalid state, names no other holding, and the end goes on (the
//!   peer then sees a forged close, or corruption).
//!   A closed role is final against every honest process; a writer of the header can undo
//!   the close (and could as well forge the cursors).
//! - **Make the survivor watch a process of its choice.** A death, once proven, is dropped
//!   only when the claim word shows a new holding (a new epoch), which a writer of the header
//!   can fake, naming a living process: the survivor then waits for that process instead of
//!   reporting the death. That gains nothing it could not do before: it could have named a
//!   living process from the start (hiding a death, above). Calls with a timeout still end.
//! - **Make a holder and a taker both own a role, by rewinding the epoch.** A taker's epoch is
//!   the one it finds in the slot plus one, and an end stops only at another epoch. A writer
//!   that sets the slot to the holder's epoch less one (or to free, epoch 0) makes the next
//!   taker (or claimant) land on the holder's own epoch, and both ends then write: nothing
//!   out of bounds (each end's cursors are its own, and the peer's are validated), but the
//!   stream's bytes are corrupt, as a writer of the header could make them anyway. Only a
//!   slot that an honest process wrote last is safe from this.
//!
//! What it cannot do: make two takers both win (the take-over is one compare-and-swap of the
//! whole claim word), make a holder and a taker both own a role without rewriting the slot's
//! epoch as above (every end compares the word before it touches the header, and a close is
//! a compare-and-swap against the end's own word), take over a role whose slot names a
//! living process with its own start time (a death needs the kernel's proof about the
//! process the slot names), or make the newcomer go out of bounds: the cursors it resumes at
//! are validated when it attaches (`InvalidData`, the role closed and the ring poisoned, as
//! for a claim) and at every refresh after.
//!
//! # Which calls are sound with an untrusted peer
//!
//! Rust's rules make the lending calls unsound against a peer that writes the bytes it lent
//! out: a `&[u8]` promises the bytes do not change while it lives, and the compiler may read a
//! byte twice (once for your bounds check, again for your use) and see two values. So, with an
//! untrusted peer:
//!
//! - **Sound**: the copying calls. [`Consumer::try_read`](crate::Consumer::try_read),
//!   `Read::read`, [`Consumer::read_timeout`](crate::Consumer::read_timeout) and
//!   [`FramedConsumer::recv_into`](crate::FramedConsumer::recv_into) copy the bytes into your
//!   memory, reading each byte exactly once with volatile loads when the ring is shared
//!   between processes (the copy is what you validate). The copying writes
//!   ([`Producer::try_write`](crate::Producer::try_write), `Write::write`,
//!   [`FramedProducer::send`](crate::FramedProducer::send)) only store into the free space and
//!   never read it back, so nothing the peer does to that memory meanwhile changes what this
//!   process computes.
//! - **Not sound**: the lending calls, [`Consumer::read_grant`](crate::Consumer::read_grant),
//!   `BufRead::fill_buf` (and the `BufRead` helpers built on it, such as `read_line`),
//!   [`FramedConsumer::recv`](crate::FramedConsumer::recv)'s `Frame`, and on the writing side
//!   [`Producer::write_grant`](crate::Producer::write_grant) and
//!   [`FramedProducer::reserve`](crate::FramedProducer::reserve): they hand out a slice of
//!   memory the peer can write. Use them with a peer you trust (your own process's threads, a
//!   forked child running your code, a cooperating service), which is where their zero-copy
//!   speed is meant to be used.
//!
//! **The kernel on the other side** ([`Producer::read_from`](crate::Producer::read_from),
//! [`Consumer::write_to`](crate::Consumer::write_to) and their async forms) lends ring memory
//! to a reader or writer of your choosing: `read_from` passes the free space as the `&mut
//! [u8]` of one `read()`, `write_to` the readable bytes as the `&[u8]` of one `write()`. Both
//! are lending calls in the sense above: with an untrusted peer only a reader or writer that
//! does not look at the bytes twice is safe (a socket or a file is: the kernel copies them
//! once). The free space `read_from` lends still holds bytes the consumer has read: a reader
//! that looks at its buffer before filling it sees earlier data of the stream. A reader that
//! claims more bytes than it was lent, or a writer more than it was given, is refused
//! (`InvalidData`) and nothing is committed or released.
//!
//! Between threads of one process there is no such peer: the other end is safe Rust, and the
//! protocol never lets it write the bytes it lent out, so every call is sound and the copies
//! are plain `memcpy`s.
