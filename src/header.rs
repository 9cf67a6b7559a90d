//! The shared header: the ring's control page, a cross-process ABI.
//!
//! The header lives in the first page of the ring's shared object (see `mirror`), so every
//! process that maps the ring sees the same header. It holds only fixed-width atomics in a
//! `#[repr(C)]` layout pinned by tests: a process built from the same crate version on the
//! same architecture can attach to a ring another process created.
//!
//! ```text
//! offset  line  field                       written by            read by
//!      0     0  magic, version, backend,     creator (once)        from_fd, attach
//!               capacity, data_offset
//!     32     0  producer role slot           claimant, taker,      consumer (slow path),
//!                                            at close              per publish (`park`),
//!                                                                  producer (ownership)
//!     64     0  consumer role slot           as above              producer (every write),
//!                                                                  consumer (ownership)
//!     96     0  poisoned                     whoever detects it    both (slow path)
//!    104     0  framing_start                producer, when it     consumer, when it
//!                                            turns framed          trusts stamps
//!    128     1  head (producer cursor)       producer, per commit  consumer, on refresh
//!    256     2  tail (consumer cursor)       consumer, per release producer, on refresh
//!    384     3  data_waiter (futex word)     consumer sleeps here  producer, per commit
//!    512     4  space_waiter (futex word)    producer sleeps here  consumer, per release
//! ```
//!
//! # A role slot (32 bytes)
//!
//! ```text
//! offset  field       meaning
//!      0  claim       one 64-bit word, so that claiming, taking over and closing are each
//!                     one compare-and-swap ([`Claim`]):
//!                       bits  0..8   state: FREE 0, CLAIMED 1, CLOSED 2, TAKING 3
//!                       bits  8..32  epoch: 0 while free, +1 (wrapping) at every claim and
//!                                    take-over, so the word names one holding of the role
//!                       bits 32..64  pid of the holder (of the taker while TAKING)
//!      8  start_time  the holder's start time (`/proc/<pid>/stat` field 22), 0 if unknown
//!     16  pid_ns      the holder's PID namespace (inode of `/proc/self/ns/pid`), 0 if unknown
//!     24  park        how the holder parks (`Park::to_raw`), which tells its peer which
//!                     barrier a publish needs ([`docs::barriers`](crate::docs::barriers))
//!     28  framing     the producer's framing epoch: odd while it writes frames, even while
//!                     it writes bytes (`RoleSlot::framing`); zero in the consumer's slot
//! ```
//!
//! The states: FREE until the first claim; CLAIMED while a holder owns the role; CLOSED once
//! it dropped its end (final: never claimed or taken over again); TAKING for the few stores
//! between winning a claim or a take-over and publishing the winner's start time, namespace
//! and park mode (the pid is already in the word). The fields after the word belong to the
//! holding the word names: a reader takes them as a seqlock reader does ([`Header::holder`]),
//! and a TAKING word names its taker by pid alone. How the states are used, and what a
//! hostile peer can do with them: [`docs::lifecycle`](crate::docs::lifecycle), "Restart",
//! and [`docs::trust_model`](crate::docs::trust_model).
//!
//! The raw codes stored here (role states, park modes, backends) are part of the ABI and are
//! defined in this module; the rest of the crate converts through it.
//!
//! The header spells out its own alignment: every line is a [`Line`], `#[repr(C, align(128))]`
//! on every architecture, so the layout does not depend on any dependency's idea of a cache
//! line. Line 0 is read-mostly: it changes only when a role is claimed, taken over or closed
//! (or a sleeper downgrades its `park` mode), so reading it on the hot path costs an L1 hit.
//! The cursors each own a line; the two waiter words each own a line too, so the per-commit
//! check "is the reader asleep?" reads a line that nobody writes while both sides are busy.
//! (128 bytes, not 64: x86 prefetches lines in adjacent pairs.)
//!
//! Nothing in the header is trusted: a peer process can write any value into any field at any
//! time. Every value read from it is validated before it becomes an offset or a length
//! (`protocol.rs`, `Header::check_identity`).

use std::ops::Deref;

use crate::sync::{fence, AtomicU32, AtomicU64, FutexWord, Ordering, Park};

/// "MIRRRING" in little-endian bytes.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"MIRRRING");
/// Bumped whenever the layout or the meaning of a field changes. 2: role slots of 32 bytes
/// with the claimant's PID namespace and park mode; lines of 128 bytes on every architecture.
/// 3: a role slot starts with one 64-bit claim word (state, epoch, pid; [`Claim`]) and has a
/// TAKING state, so that a dead holder's role can be taken over by one compare-and-swap.
/// 4: framed rings stamp each frame header with its position and release lazily
/// ([`docs::framing`](crate::docs::framing)). 5: a frame sent on its own is stamped before
/// head is stored, so the consumer's cursor (and the tail it releases) may be ahead of the
/// published head by that frame. 6: the producer's framing epoch and the start of its frames
/// (`framing`, `framing_start`). 7: a batch of frames is stamped before its head too, so that
/// nothing stores below the head (a newcomer covers a whole batch stamped above it).
pub(crate) const VERSION: u32 = 7;

/// Role state: nobody has claimed this end yet.
pub(crate) const ROLE_FREE: u32 = 0;
/// Role state: held by the process whose pid the claim word carries, in use.
pub(crate) const ROLE_CLAIMED: u32 = 1;
/// Role state: the holder closed its end (dropped it). Final.
pub(crate) const ROLE_CLOSED: u32 = 2;
/// Role state: the process whose pid the claim word carries has just won a claim or a
/// take-over and is storing its start time, namespace and park mode; CLAIMED follows.
pub(crate) const ROLE_TAKING: u32 = 3;

/// Bits of the claim word that hold the state.
const STATE_BITS: u32 = 8;
/// The epoch wraps at this many holdings (24 bits): a taker whose compare-and-swap waited
/// through 2^24 take-overs could succeed by accident; each take-over needs a proven death.
const EPOCH_MASK: u32 = (1 << (32 - STATE_BITS)) - 1;

/// A role slot's claim word, unpacked: who holds the role, in which state, in which holding
/// (epoch). Two claim words are equal only for the same holding of the role, so an end keeps
/// the word it claimed with as its token of ownership ([`Header::owns`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Claim(u64);

impl Claim {
    /// The word for `state` in holding `epoch` (taken modulo 2^24) by `pid`.
    pub(crate) fn new(state: u32, epoch: u32, pid: i32) -> Claim {
        let low = (state & ((1 << STATE_BITS) - 1)) | (epoch & EPOCH_MASK) << STATE_BITS;
        Claim(u64::from(pid as u32) << 32 | u64::from(low))
    }

    /// `ROLE_FREE`, `ROLE_CLAIMED`, `ROLE_CLOSED`, `ROLE_TAKING`, or (from a hostile peer)
    /// anything else below 256.
    pub(crate) fn state(self) -> u32 {
        self.0 as u32 & ((1 << STATE_BITS) - 1)
    }

    /// Which holding of the role this is (0 while free).
    pub(crate) fn epoch(self) -> u32 {
        (self.0 as u32) >> STATE_BITS
    }

    /// The holder's (or, while TAKING, the taker's) pid.
    pub(crate) fn pid(self) -> i32 {
        (self.0 >> 32) as u32 as i32
    }

    /// The raw word (for tests and models).
    #[cfg(test)]
    pub(crate) fn raw(self) -> u64 {
        self.0
    }

    /// Whether the word names a holding of the role (CLAIMED or TAKING).
    #[inline(always)]
    pub(crate) fn is_holding(self) -> bool {
        matches!(self.state(), ROLE_CLAIMED | ROLE_TAKING)
    }

    /// Whether the word names a holding other than `token`'s: CLAIMED, TAKING or CLOSED in
    /// another epoch (only a take-over moves to another epoch, so CLOSED there is a taker that
    /// has since closed: the role was taken from `token` all the same).
    #[inline(always)]
    pub(crate) fn is_other_holding(self, token: Claim) -> bool {
        (self.is_holding() || self.state() == ROLE_CLOSED) && self.epoch() != token.epoch()
    }

    /// The word of the next holding, by `pid`, while it stores its fields.
    fn next_taking(self, pid: i32) -> Claim {
        Claim::new(ROLE_TAKING, self.epoch().wrapping_add(1), pid)
    }

    /// This holding, in `state`.
    fn with_state(self, state: u32) -> Claim {
        Claim::new(state, self.epoch(), self.pid())
    }
}

/// The holding a role slot describes, read consistently ([`Header::holder`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Holder {
    pub(crate) claim: Claim,
    /// The holder's start time; 0 when unknown (always while TAKING).
    pub(crate) start_time: u64,
    /// The holder's PID namespace; 0 when unknown (always while TAKING).
    pub(crate) pid_ns: u64,
}

/// Park mode codes (`RoleSlot::park`); any other value reads as `PARK_FENCE`.
const PARK_FENCE: u32 = 0;
const PARK_PRIVATE: u32 = 1;
const PARK_GLOBAL: u32 = 2;

impl Park {
    /// The code stored in a role slot.
    pub(crate) fn to_raw(self) -> u32 {
        match self {
            Park::Fence => PARK_FENCE,
            Park::Private => PARK_PRIVATE,
            Park::Global => PARK_GLOBAL,
        }
    }

    /// The mode a stored code stands for; an unknown code (a hostile peer) is the safe one,
    /// `Fence`.
    #[cfg(test)]
    pub(crate) fn from_raw(v: u32) -> Park {
        match v {
            PARK_GLOBAL => Park::Global,
            PARK_PRIVATE => Park::Private,
            _ => Park::Fence,
        }
    }
}

/// The park code a peer must record for this process to wake it after a compiler fence only
/// ([`docs::barriers`](crate::docs::barriers)): `Private` for a ring between threads (the peer
/// is this process, which registered when it built the ring), `Global` between processes if
/// this process is registered as a target of global barriers; otherwise a code no slot holds,
/// so every publish pays a full fence.
pub(crate) fn light_peer_code(between_processes: bool) -> u32 {
    match (between_processes, crate::sync::global_registered()) {
        (false, _) => PARK_PRIVATE,
        (true, true) => PARK_GLOBAL,
        (true, false) => u32::MAX,
    }
}

/// Backend codes (`Header::backend`): never 0, so a zeroed header is recognisably empty.
pub(crate) const BACKEND_MIRROR_FLAG: u32 = 1;
pub(crate) const BACKEND_DUPLICATE: u32 = 2;
pub(crate) const BACKEND_MEMFD: u32 = 3;

/// One end's claim: who holds it, whether they closed it, and how they park. See the module
/// docs for the layout.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct RoleSlot {
    /// The claim word ([`Claim`]): state, epoch, pid.
    pub(crate) claim: AtomicU64,
    /// The holder's start time (`/proc/<pid>/stat` field 22), to tell it apart from a later
    /// process that reuses the pid. 0 when unknown.
    pub(crate) start_time: AtomicU64,
    /// The holder's PID namespace (inode of `/proc/self/ns/pid`), 0 when unknown. A peer in
    /// another namespace cannot check its pid.
    pub(crate) pid_ns: AtomicU64,
    /// How the holder parks (`Park::to_raw`).
    pub(crate) park: AtomicU32,
    /// In the producer's slot, its framing epoch: odd while the producer writes frames (a
    /// framed producer, which writes the clear mark after its frames, so a framed consumer may
    /// take them by their stamps); even while it writes bytes (a byte producer's free room may
    /// hold anything, also words that read as stamps). Each switch moves it on by one, so a
    /// consumer that trusts stamps under one odd value notices any switch since. Zero in the
    /// consumer's slot.
    pub(crate) framing: AtomicU32,
}

/// Who claims (or takes over) a role: the values recorded in its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Claimant {
    pub(crate) pid: i32,
    pub(crate) start_time: u64,
    pub(crate) pid_ns: u64,
    pub(crate) park: Park,
}

/// One line of the header: 128 bytes, aligned to 128 on every architecture (x86 moves lines
/// between cores in adjacent pairs). The header's own type, so its layout is its own.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub(crate) struct Line<T>(pub(crate) T);

impl<T> Deref for Line<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The ring's shared header. See the module docs for the layout.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Header {
    /// [`MAGIC`], written last during initialisation.
    pub(crate) magic: AtomicU64,
    /// [`VERSION`].
    pub(crate) version: AtomicU32,
    /// The backend that created the ring (`BACKEND_*`).
    pub(crate) backend: AtomicU32,
    /// `N`, the data capacity in bytes (a power of two, a multiple of the page size).
    pub(crate) capacity: AtomicU64,
    /// `H`, where the data starts in the shared object (one page).
    pub(crate) data_offset: AtomicU64,
    /// The producer's claim.
    pub(crate) producer: RoleSlot,
    /// The consumer's claim.
    pub(crate) consumer: RoleSlot,
    /// Non-zero once either side has seen an impossible value from its peer.
    pub(crate) poisoned: AtomicU32,
    /// Where the producer's current framing epoch began (`RoleSlot::framing`): the position of
    /// its first frame. Below it lie bytes, even when they read as frames.
    pub(crate) framing_start: AtomicU64,
    /// The producer cursor: total bytes ever committed (wrapping `u64`).
    pub(crate) head: Line<AtomicU64>,
    /// The consumer cursor: total bytes ever released (wrapping `u64`).
    pub(crate) tail: Line<AtomicU64>,
    /// Futex word: non-zero while the consumer sleeps waiting for data.
    pub(crate) data_waiter: Line<FutexWord>,
    /// Futex word: non-zero while the producer sleeps waiting for space.
    pub(crate) space_waiter: Line<FutexWord>,
}

/// Which of the two futex words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Word {
    /// The consumer waits for data on `data_waiter`.
    Data,
    /// The producer waits for space on `space_waiter`.
    Space,
}

impl Word {
    /// The role that sleeps on this word.
    #[inline(always)]
    pub(crate) fn sleeper(self) -> Role {
        match self {
            Word::Data => Role::Consumer,
            Word::Space => Role::Producer,
        }
    }
}

/// Which end of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Producer,
    Consumer,
}

impl Role {
    /// The word this role sleeps on.
    pub(crate) fn own_word(self) -> Word {
        match self {
            Role::Producer => Word::Space,
            Role::Consumer => Word::Data,
        }
    }

    pub(crate) fn peer(self) -> Role {
        match self {
            Role::Producer => Role::Consumer,
            Role::Consumer => Role::Producer,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        }
    }
}

/// Why a header cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadHeader {
    Magic,
    Version,
    Capacity,
    DataOffset,
    Backend,
    Cursors,
    RoleState,
}

impl BadHeader {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            BadHeader::Magic => "not a mirror-ring file (bad magic)",
            BadHeader::Version => "ring layout version not supported by this build",
            BadHeader::Capacity => "ring capacity is not a power of two matching the file size",
            BadHeader::DataOffset => "ring data offset does not match this system's page size",
            BadHeader::Backend => "unknown ring backend",
            BadHeader::Cursors => "ring cursors are further apart than the capacity",
            BadHeader::RoleState => "ring role state is invalid",
        }
    }
}

impl Header {
    /// Initialises a fresh (zeroed) header. `start` is the initial value of both cursors (0,
    /// except in tests of the wrapping arithmetic). `magic` is stored last, with Release, so a
    /// reader that sees it (Acquire) sees every other field.
    pub(crate) fn init(&self, capacity: u64, data_offset: u64, backend: u32, start: u64) {
        self.version.store(VERSION, Ordering::Relaxed);
        self.backend.store(backend, Ordering::Relaxed);
        self.capacity.store(capacity, Ordering::Relaxed);
        self.data_offset.store(data_offset, Ordering::Relaxed);
        self.head.store(start, Ordering::Relaxed);
        self.tail.store(start, Ordering::Relaxed);
        // Release: every field above is visible before the magic. Pairs with the Acquire load
        // in `check_identity`.
        self.magic.store(MAGIC, Ordering::Release);
    }

    /// Validates the identity fields of a header found in memory that may have been written
    /// by anyone: magic, version, backend, a power-of-two capacity equal to `expected_capacity`
    /// (derived from the file size), the data offset, the role states, and cursors no further
    /// apart than the capacity (either way round: see [`resume_at`]).
    pub(crate) fn check_identity(&self, expected_capacity: u64, data_offset: u64) -> Result<(), BadHeader> {
        // Acquire: pairs with the Release store of the magic in `init`.
        if self.magic.load(Ordering::Acquire) != MAGIC {
            return Err(BadHeader::Magic);
        }
        // Relaxed, every field below up to the cursors: `init` stored them before the magic,
        // so the Acquire above has made them visible; and written by anyone, they are only
        // compared, so no ordering could make them more trustworthy.
        if self.version.load(Ordering::Relaxed) != VERSION {
            return Err(BadHeader::Version);
        }
        let cap = self.capacity.load(Ordering::Relaxed);
        if !cap.is_power_of_two() || cap != expected_capacity {
            return Err(BadHeader::Capacity);
        }
        if self.data_offset.load(Ordering::Relaxed) != data_offset {
            return Err(BadHeader::DataOffset);
        }
        let backend = self.backend.load(Ordering::Relaxed);
        if !(BACKEND_MIRROR_FLAG..=BACKEND_MEMFD).contains(&backend) {
            return Err(BadHeader::Backend);
        }
        for slot in [&self.producer, &self.consumer] {
            let state = Claim(slot.claim.load(Ordering::Relaxed)).state();
            if state > ROLE_TAKING || slot.park.load(Ordering::Relaxed) > PARK_GLOBAL {
                return Err(BadHeader::RoleState);
            }
        }
        // Acquire: pairs with the cursors' Release stores (`protocol`), a margin on a cold path:
        // the values are only validated here, and each end loads its cursors again to use them.
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        // (The tail may be ahead of the head by a frame taken by its stamp: `resume_at`.)
        if resume_at(head, tail, cap).is_none() {
            return Err(BadHeader::Cursors);
        }
        Ok(())
    }

    /// The futex word `w`.
    #[inline(always)]
    pub(crate) fn word(&self, w: Word) -> &FutexWord {
        match w {
            Word::Data => &self.data_waiter,
            Word::Space => &self.space_waiter,
        }
    }

    /// The role slot of `r`.
    #[inline]
    pub(crate) fn slot(&self, r: Role) -> &RoleSlot {
        match r {
            Role::Producer => &self.producer,
            Role::Consumer => &self.consumer,
        }
    }

    /// The claim word of `r`'s slot. Acquire: pairs with the Release compare-and-swap that
    /// published a CLAIMED or CLOSED word ([`take`](Self::take), [`close`](Self::close)), so a
    /// caller that sees CLAIMED sees that holder's fields, and one that sees CLOSED sees the
    /// closer's last cursor publish.
    #[inline]
    pub(crate) fn claim_word(&self, r: Role) -> Claim {
        Claim(self.slot(r).claim.load(Ordering::Acquire))
    }

    /// Whether `r` has closed its end. Acquire: see [`claim_word`](Self::claim_word); after
    /// this returns true, one more refresh sees the closer's final cursor.
    #[inline]
    pub(crate) fn is_closed(&self, r: Role) -> bool {
        self.claim_word(r).state() == ROLE_CLOSED
    }

    /// Whether the holding `token` (the word an end claimed with) still holds role `r`: false
    /// once the slot names another holding, CLAIMED, TAKING or CLOSED in another epoch (a
    /// take-over always moves to the next epoch, and a taker that has closed since took the
    /// role all the same). A word a peer rewrote within this end's epoch, or to FREE or an
    /// invalid state, names no other holding: the end goes on (such a rewrite is a forged
    /// close or corruption, which the ends handle as such). One load of
    /// the read-mostly line 0. Relaxed: a hint that orders nothing; a take-over that lands just
    /// after this check lets the one store in flight through (see `docs::trust_model`).
    #[inline(always)]
    pub(crate) fn owns(&self, r: Role, token: Claim) -> bool {
        let now = Claim(self.slot(r).claim.load(Ordering::Relaxed));
        // The unchanged word, the every-call case, is one compare on the hot paths; a changed
        // word is decoded out of line.
        now == token || Self::still_owns(now, token)
    }

    /// [`owns`](Self::owns) for a claim word `now` that differs from `token`.
    #[cold]
    #[inline(never)]
    fn still_owns(now: Claim, token: Claim) -> bool {
        !now.is_other_holding(token)
    }

    /// The holding `r`'s slot describes, read consistently: the claim word and, for a CLAIMED
    /// word, the fields its holder stored before publishing it (start time, namespace). A
    /// TAKING word names its taker by pid only (its fields are being written). `None` if the
    /// word kept changing while it was read (a take-over in progress, or a scribbler).
    ///
    /// A seqlock read: load the word (Acquire), the fields, an Acquire fence, the word again.
    /// If a field load saw a store a later taker made after its TAKING compare-and-swap (and
    /// its Release fence), the fences synchronise and the second load sees that word or a
    /// later one: the two loads differ and the read is retried. If the word did not change,
    /// the fields are the ones its holder published with it (the first load's Acquire pairs
    /// with the Release that published CLAIMED).
    pub(crate) fn holder(&self, r: Role) -> Option<Holder> {
        let slot = self.slot(r);
        for _ in 0..4 {
            let claim = self.claim_word(r);
            if claim.state() != ROLE_CLAIMED {
                return Some(Holder { claim, start_time: 0, pid_ns: 0 });
            }
            // Relaxed: ordered by the fence below (see above).
            let start_time = slot.start_time.load(Ordering::Relaxed);
            let pid_ns = slot.pid_ns.load(Ordering::Relaxed);
            // Acquire fence: pairs with the Release fence in `take`.
            fence(Ordering::Acquire);
            // Relaxed: the fence above orders the field loads before it.
            if slot.claim.load(Ordering::Relaxed) == claim.0 {
                return Some(Holder { claim, start_time, pid_ns });
            }
        }
        None
    }

    /// Marks the ring poisoned for both sides.
    pub(crate) fn poison(&self) {
        // Relaxed: a flag with no data attached; each side also keeps its own.
        self.poisoned.store(1, Ordering::Relaxed);
    }

    /// Whether either side has poisoned the ring.
    #[inline]
    pub(crate) fn is_poisoned(&self) -> bool {
        // Relaxed: a flag with no data attached (see `poison`). The one reader that must see
        // a poisoning that came before a close (`protocol`'s drain check) gets it through the
        // close: `poison` is sequenced before the Release of the close, which it reads with
        // Acquire (`is_closed`).
        self.poisoned.load(Ordering::Relaxed) != 0
    }

    /// Claims role `r`, never claimed before, for `who`: exactly one claim of each role ever
    /// succeeds, across every process that maps the ring. Returns the new claim word (the
    /// claimant's token of ownership).
    pub(crate) fn claim(&self, r: Role, who: Claimant) -> Option<Claim> {
        let free = self.claim_word(r);
        if free.state() != ROLE_FREE {
            return None;
        }
        self.take(r, free, who).ok()
    }

    /// The one atomic step of a claim or a take-over: if `r`'s claim word is still `expected`
    /// (the free word, or the word of a holding proven dead), replaces it with the next
    /// holding by `who`, TAKING; stores `who`'s fields; then publishes the holding as CLAIMED.
    /// Of any number of processes that race with the same `expected`, exactly one wins the
    /// first compare-and-swap; the epoch in the word makes a stale `expected` (a holding that
    /// was already replaced) fail even if the new holding has the same pid. Returns the
    /// CLAIMED word, or the word found instead.
    ///
    /// A taker that dies between the two compare-and-swaps leaves a TAKING word naming its
    /// pid: its death is proven like a holder's, and the role taken over from it.
    pub(crate) fn take(&self, r: Role, expected: Claim, who: Claimant) -> Result<Claim, Claim> {
        let slot = self.slot(r);
        let taking = expected.next_taking(who.pid);
        // Nothing needs to travel with this compare-and-swap (an ordering audit weakened it to
        // Relaxed under every loom model): a free role's word is the zero the memory started
        // with, and a dead holder's last cursor publishes came after its claim word, so they
        // cannot travel with it; they reach the taker through the death the kernel proved and
        // the Acquire loads of the cursors in the newcomer's `attach`. The fields below are
        // published by the fence and the CLAIMED compare-and-swap. AcqRel and Acquire stay as
        // a margin on a cold path.
        slot.claim.compare_exchange(expected.0, taking.0, Ordering::AcqRel, Ordering::Acquire).map_err(Claim)?;
        // Release fence: the field stores below are not seen by a reader that has not seen
        // `taking` (pairs with the Acquire fence in `holder`).
        fence(Ordering::Release);
        // Relaxed: published by the Release below; guarded by the seqlock read in `holder`.
        slot.start_time.store(who.start_time, Ordering::Relaxed);
        slot.pid_ns.store(who.pid_ns, Ordering::Relaxed);
        // Relaxed: the park mode is read on its own (`parks_with`, with the reasoning of
        // `downgrade_park`: a peer that reads a previous holder's mode for a while can delay a
        // wake-up by at most one bounded sleep).
        slot.park.store(who.park.to_raw(), Ordering::Relaxed);
        let claimed = taking.with_state(ROLE_CLAIMED);
        // Release: the fields above are visible to whoever sees CLAIMED (Acquire in
        // `claim_word`). A compare-and-swap, not a store: only a peer that proved this taker
        // dead (a forgery) can have replaced `taking`, and its holding must stand.
        slot.claim
            .compare_exchange(taking.0, claimed.0, Ordering::Release, Ordering::Acquire)
            .map(|_| claimed)
            .map_err(Claim)
    }

    /// Closes the holding `token` of role `r`: CLOSED, final. `false` (and nothing stored) if
    /// the slot names another holding: a take-over and the holder's own close race, and
    /// exactly one of them wins. (A slot a peer rewrote without naming another holding is
    /// closed all the same, as [`owns`](Self::owns) lets the end go on.)
    pub(crate) fn close(&self, r: Role, token: Claim) -> bool {
        let slot = self.slot(r);
        let closed = token.with_state(ROLE_CLOSED);
        // Relaxed: only compared; the compare-and-swap below decides.
        let mut now = Claim(slot.claim.load(Ordering::Relaxed));
        while now == token || !now.is_other_holding(token) {
            // Release on success: this end's last cursor publish is visible to a peer that
            // sees CLOSED (Acquire in `claim_word`).
            match slot.claim.compare_exchange(now.0, closed.0, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(w) => now = Claim(w),
            }
        }
        false
    }

    /// How the holder of `r` parks (an unknown code reads as `Park::Fence`).
    #[cfg(test)]
    pub(crate) fn park_mode(&self, r: Role) -> Park {
        // Relaxed: see `parks_with`.
        Park::from_raw(self.slot(r).park.load(Ordering::Relaxed))
    }

    /// Whether `r` records the park code `light` (`light_peer_code`): then a publish to it
    /// needs only a compiler fence. One load of the read-mostly line 0 and a comparison.
    #[inline(always)]
    pub(crate) fn parks_with(&self, r: Role, light: u32) -> bool {
        // Relaxed: the record selects a barrier and publishes no data; its partners are the
        // Relaxed stores of `take` and `downgrade_park`, whose comments say what a stale read
        // can cost.
        self.slot(r).park.load(Ordering::Relaxed) == light
    }

    /// The producer's framing epoch ([`RoleSlot::framing`]): odd while it writes frames.
    /// Relaxed: ordered by the caller (`begin_framing`, `end_framing`, `Receiver`).
    #[inline(always)]
    pub(crate) fn framing_epoch(&self) -> u32 {
        self.producer.framing.load(Ordering::Relaxed)
    }

    /// [`framing_epoch`](Self::framing_epoch), with Acquire (see `begin_framing`).
    pub(crate) fn framing_epoch_acquire(&self) -> u32 {
        self.producer.framing.load(Ordering::Acquire)
    }

    /// The producer starts writing frames, its first at `start`: the next odd epoch. Release:
    /// the start, and the clear mark written there first (`Producer::into_framed`), are
    /// visible to a consumer that reads this epoch with Acquire (`Receiver::committed_in`).
    pub(crate) fn begin_framing(&self, start: u64) {
        // Relaxed: published by the Release store of the epoch below.
        self.framing_start.store(start, Ordering::Relaxed);
        let e = self.framing_epoch();
        self.producer.framing.store(e.wrapping_add(if e % 2 == 0 { 1 } else { 2 }), Ordering::Release);
    }

    /// Where the current framing epoch began ([`framing_start`](Header::framing_start)).
    /// Relaxed: read after the epoch (Acquire), which published it.
    pub(crate) fn framing_start(&self) -> u64 {
        self.framing_start.load(Ordering::Relaxed)
    }

    /// The producer stops writing frames (it writes bytes from now on): the next even epoch,
    /// if it was odd. The Release fence after the store orders it before every byte written
    /// from now on: a consumer whose Acquire load of a word saw one of them sees the new epoch
    /// in its next look (`Receiver::epoch_holds`, a seqlock reader's second look). The one
    /// before it publishes what the producer did before, a newcomer's cover of frames stamped
    /// above the head included (`Producer::took_over`): a consumer that sees the new epoch and
    /// then looks at head, after an Acquire load or fence, sees that head
    /// (`Receiver::look_after_death`, `Receiver::take`).
    pub(crate) fn end_framing(&self) {
        let e = self.framing_epoch();
        if e % 2 == 1 {
            fence(Ordering::Release);
            self.producer.framing.store(e.wrapping_add(1), Ordering::Relaxed);
            fence(Ordering::Release);
        }
    }

    /// Records that `r` now parks with a full fence only (its membarrier call failed).
    pub(crate) fn downgrade_park(&self, r: Role) {
        // Relaxed: no ordering makes a publisher see this at once (only a full fence on the
        // publisher's side could, which is what the light half avoids). The sleeper that
        // downgrades cuts its current sleep short (`wait.rs`), but its later sleeps are
        // full-length and rely on the record having reached every publisher: cache coherence
        // delivers it in far less than a sleep, though the memory model promises no bound. A
        // publisher that still read the old record could delay a wake-up by one bounded
        // sleep (the watch or safety interval), never lose it.
        self.slot(r).park.store(PARK_FENCE, Ordering::Relaxed);
    }

    /// A header on the heap, initialised as a fresh ring's (for the loom models, which cannot
    /// map memory), its producer in its first framing epoch: the framed models drive the
    /// framed sides directly, not through `into_framed`.
    #[cfg(all(test, mirror_ring_loom))]
    pub(crate) fn for_model(capacity: u64, start: u64) -> Box<Header> {
        let slot = || RoleSlot {
            claim: AtomicU64::new(0),
            start_time: AtomicU64::new(0),
            pid_ns: AtomicU64::new(0),
            park: AtomicU32::new(PARK_FENCE),
            framing: AtomicU32::new(0),
        };
        let hdr = Box::new(Header {
            magic: AtomicU64::new(0),
            version: AtomicU32::new(0),
            backend: AtomicU32::new(0),
            capacity: AtomicU64::new(0),
            data_offset: AtomicU64::new(0),
            producer: slot(),
            consumer: slot(),
            poisoned: AtomicU32::new(0),
            framing_start: AtomicU64::new(0),
            head: Line(AtomicU64::new(0)),
            tail: Line(AtomicU64::new(0)),
            data_waiter: Line(FutexWord::default()),
            space_waiter: Line(FutexWord::default()),
        });
        hdr.init(capacity, 4096, BACKEND_MEMFD, start);
        hdr.producer.framing.store(1, Ordering::Relaxed);
        hdr.framing_start.store(start, Ordering::Relaxed);
        hdr
    }
}

/// Checks the cursors an end finds in the header when it attaches, and returns the producer's
/// position to go on from: `head` when it is at most `cap` bytes ahead of `tail`; `tail` when
/// the consumer's cursor is ahead of the published head, by at most `cap` bytes. That happens:
/// a framed frame sent on its own is stamped before head is stored (`ring/framed/link.rs`), so
/// a producer that died between the two stores leaves a head behind the frames the consumer
/// took and may have released. `None`: the cursors are further apart (or `cap` is not a power
/// of two).
pub(crate) fn resume_at(head: u64, tail: u64, cap: u64) -> Option<u64> {
    if !cap.is_power_of_two() {
        None
    } else if head.wrapping_sub(tail) <= cap {
        Some(head)
    } else if tail.wrapping_sub(head) <= cap {
        Some(tail)
    } else {
        None
    }
}

#[cfg(all(test, not(mirror_ring_loom)))]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};
    use memoffset::span_of;

    /// The header is a cross-process ABI: pin every offset and span. A change here needs a
    /// `VERSION` bump.
    #[test]
    fn layout_is_pinned() {
        let line = 128;
        assert_eq!(align_of::<Line<u8>>(), line);
        assert_eq!(size_of::<Line<AtomicU64>>(), line);
        assert_eq!(offset_of!(Header, magic), 0);
        assert_eq!(offset_of!(Header, version), 8);
        assert_eq!(offset_of!(Header, backend), 12);
        assert_eq!(offset_of!(Header, capacity), 16);
        assert_eq!(offset_of!(Header, data_offset), 24);
        assert_eq!(offset_of!(Header, producer), 32);
        assert_eq!(offset_of!(Header, consumer), 64);
        assert_eq!(offset_of!(Header, poisoned), 96);
        assert_eq!(offset_of!(Header, framing_start), 104);
        assert_eq!(size_of::<RoleSlot>(), 32);
        assert_eq!(offset_of!(RoleSlot, claim), 0);
        assert_eq!(offset_of!(RoleSlot, start_time), 8);
        assert_eq!(offset_of!(RoleSlot, pid_ns), 16);
        assert_eq!(offset_of!(RoleSlot, park), 24);
        assert_eq!(offset_of!(RoleSlot, framing), 28);
        assert_eq!(offset_of!(Header, head), line);
        assert_eq!(offset_of!(Header, tail), 2 * line);
        assert_eq!(offset_of!(Header, data_waiter), 3 * line);
        assert_eq!(offset_of!(Header, space_waiter), 4 * line);
        assert_eq!(span_of!(Header, head), line..2 * line);
        assert_eq!(span_of!(Header, tail), 2 * line..3 * line);
        assert_eq!(span_of!(Header, data_waiter), 3 * line..4 * line);
        assert_eq!(span_of!(Header, space_waiter), 4 * line..5 * line);
        assert_eq!(span_of!(Header, magic..poisoned), 0..96);
        assert_eq!(size_of::<Header>(), 5 * line);
        assert_eq!(align_of::<Header>(), line);
        assert!(size_of::<Header>() <= 4096, "the header must fit the control page");
        assert_eq!(MAGIC.to_le_bytes(), *b"MIRRRING");
        // The claim word: state in bits 0..8, epoch in 8..32, pid in 32..64.
        let c = Claim::new(ROLE_TAKING, 0x12_3456, -2);
        assert_eq!(c.raw(), 0xffff_fffe_1234_5603);
        assert_eq!((c.state(), c.epoch(), c.pid()), (ROLE_TAKING, 0x12_3456, -2));
        assert_eq!(Claim::new(ROLE_CLAIMED, 1 << 24, 5).epoch(), 0, "the epoch wraps at 2^24");
        assert_eq!(Claim::new(ROLE_CLAIMED, EPOCH_MASK, 5).next_taking(6), Claim::new(ROLE_TAKING, 0, 6));
        assert_eq!([ROLE_FREE, ROLE_CLAIMED, ROLE_CLOSED, ROLE_TAKING], [0, 1, 2, 3]);
        assert_eq!(VERSION, 7);
    }

    #[test]
    fn claims_are_exclusive_and_identity_checks_fields() {
        let h: Header = unsafe_zeroed_header();
        assert_eq!(h.check_identity(4096, 4096), Err(BadHeader::Magic));
        h.init(4096, 4096, BACKEND_MIRROR_FLAG, 0);
        assert_eq!(h.check_identity(4096, 4096), Ok(()));
        assert_eq!(h.check_identity(8192, 4096), Err(BadHeader::Capacity));
        assert_eq!(h.check_identity(4096, 8192), Err(BadHeader::DataOffset));
        let who = |pid| Claimant { pid, start_time: 1, pid_ns: 2, park: Park::Global };
        let p = h.claim(Role::Producer, who(7)).expect("a fresh ring's role is free");
        assert_eq!(p, Claim::new(ROLE_CLAIMED, 1, 7));
        assert!(h.claim(Role::Producer, who(8)).is_none());
        assert!(h.claim(Role::Consumer, who(8)).is_some());
        assert_eq!(h.holder(Role::Producer), Some(Holder { claim: p, start_time: 1, pid_ns: 2 }));
        assert_eq!(h.consumer.pid_ns.load(Ordering::Relaxed), 2);
        assert_eq!(h.park_mode(Role::Consumer), Park::Global);
        h.downgrade_park(Role::Consumer);
        assert_eq!(h.park_mode(Role::Consumer), Park::Fence);
        h.consumer.park.store(7, Ordering::Relaxed);
        assert_eq!(h.check_identity(4096, 4096), Err(BadHeader::RoleState));
        h.consumer.park.store(PARK_GLOBAL, Ordering::Relaxed);
        h.head.store(4097, Ordering::Relaxed);
        assert_eq!(h.check_identity(4096, 4096), Err(BadHeader::Cursors));
        // A tail ahead of the head: by a frame a consumer took by its stamp, or by more than
        // the ring.
        h.head.store(0, Ordering::Relaxed);
        h.tail.store(24, Ordering::Relaxed);
        assert_eq!(h.check_identity(4096, 4096), Ok(()));
        h.tail.store(4097, Ordering::Relaxed);
        assert_eq!(h.check_identity(4096, 4096), Err(BadHeader::Cursors));
        h.tail.store(0, Ordering::Relaxed);
        h.backend.store(9, Ordering::Relaxed);
        assert_eq!(h.check_identity(4096, 4096), Err(BadHeader::Backend));
        h.backend.store(1, Ordering::Relaxed);
        h.consumer.claim.store(Claim::new(ROLE_TAKING, 9, 8).raw(), Ordering::Relaxed);
        assert_eq!(h.check_identity(4096, 4096), Ok(()));
        h.consumer.claim.store(Claim::new(4, 9, 8).raw(), Ordering::Relaxed);
        assert_eq!(h.check_identity(4096, 4096), Err(BadHeader::RoleState));
    }

    /// A take-over replaces exactly the holding it names, bumps the epoch, and stores the
    /// taker's fields; a stale holding, a closed role and a second taker all fail; close and
    /// take-over exclude each other; the old token stops owning the role.
    #[test]
    fn take_over_replaces_one_holding_and_close_excludes_it() {
        let h: Header = unsafe_zeroed_header();
        h.init(4096, 4096, BACKEND_MEMFD, 0);
        let who = |pid: i32| Claimant { pid, start_time: 1000 + pid as u64, pid_ns: 5, park: Park::Fence };
        let first = h.claim(Role::Consumer, who(10)).unwrap();
        assert!(h.owns(Role::Consumer, first));
        let second = h.take(Role::Consumer, first, who(20)).expect("the named holding is replaced");
        assert_eq!((second.state(), second.epoch(), second.pid()), (ROLE_CLAIMED, 2, 20));
        assert_eq!(h.holder(Role::Consumer), Some(Holder { claim: second, start_time: 1020, pid_ns: 5 }));
        assert!(!h.owns(Role::Consumer, first), "the old holder's token no longer owns the role");
        assert_eq!(h.take(Role::Consumer, first, who(21)), Err(second), "a stale holding cannot be taken");
        assert!(!h.close(Role::Consumer, first), "the old holder cannot close the new holding");
        assert!(!h.is_closed(Role::Consumer));
        // The same pid taking again: a new epoch, so the word differs.
        let third = h.take(Role::Consumer, second, who(20)).unwrap();
        assert_ne!(third, second);
        // A slot rewritten without naming another holding (another pid in the same epoch, a
        // state that names no holder): still ours, and closed by us.
        h.consumer.claim.store(Claim::new(ROLE_TAKING, 3, 99).raw(), Ordering::Relaxed);
        assert!(h.owns(Role::Consumer, third));
        h.consumer.claim.store(Claim::new(ROLE_CLAIMED, 4, 20).raw(), Ordering::Relaxed);
        assert!(!h.owns(Role::Consumer, third), "another epoch is another holding");
        h.consumer.claim.store(0, Ordering::Relaxed);
        assert!(h.owns(Role::Consumer, third));
        assert!(h.close(Role::Consumer, third));
        assert!(h.is_closed(Role::Consumer));
        assert_eq!(h.claim_word(Role::Consumer), Claim::new(ROLE_CLOSED, 3, 20));
        assert!(h.take(Role::Consumer, third, who(30)).is_err(), "a closed role is never taken");
        // A TAKING word (a taker that died mid-way) names the taker, without fields.
        let dead_taker = Claim::new(ROLE_TAKING, 4, 40);
        h.producer.claim.store(dead_taker.raw(), Ordering::Relaxed);
        assert_eq!(h.holder(Role::Producer), Some(Holder { claim: dead_taker, start_time: 0, pid_ns: 0 }));
        assert_eq!(h.take(Role::Producer, dead_taker, who(50)).map(|c| c.epoch()), Ok(5));
    }

    fn unsafe_zeroed_header() -> Header {
        // SAFETY: every field is an integer atomic (or padding around one); all-zero is valid.
        unsafe { std::mem::zeroed() }
    }
}
