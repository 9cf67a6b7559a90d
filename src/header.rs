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
//!     32     0  producer role slot           claimant, at close    consumer (slow path),
//!                                                                  per publish (`park`)
//!     64     0  consumer role slot           claimant, at close    producer (every write)
//!     96     0  poisoned                     whoever detects it    both (slow path)
//!    128     1  head (producer cursor)       producer, per commit  consumer, on refresh
//!    256     2  tail (consumer cursor)       consumer, per release producer, on refresh
//!    384     3  data_waiter (futex word)     consumer sleeps here  producer, per commit
//!    512     4  space_waiter (futex word)    producer sleeps here  consumer, per release
//! ```
//!
//! A role slot (32 bytes): `state`, `pid`, `start_time`, `pid_ns` (the claimant's PID
//! namespace), `park` (how the claimant parks, which tells its peer which barrier a publish
//! needs: [`docs::barriers`](crate::docs::barriers)), and a reserved word that is zero.
//!
//! The raw codes stored here (role states, park modes, backends) are part of the ABI and are
//! defined in this module; the rest of the crate converts through it.
//!
//! The header spells out its own alignment: every line is a [`Line`], `#[repr(C, align(128))]`
//! on every architecture, so the layout does not depend on any dependency's idea of a cache
//! line. Line 0 is read-mostly: it changes only when a role is claimed or closed (or a sleeper
//! downgrades its `park` mode), so reading it on the hot path costs an L1 hit. The cursors
//! each own a line; the two waiter words each own a line too, so the per-commit check "is the
//! reader asleep?" reads a line that nobody writes while both sides are busy. (128 bytes, not
//! 64: x86 prefetches lines in adjacent pairs.)
//!
//! Nothing in the header is trusted: a peer process can write any value into any field at any
//! time. Every value read from it is validated before it becomes an offset or a length
//! (`protocol.rs`, `Header::check_identity`).

use std::ops::Deref;

use crate::sync::{AtomicI32, AtomicU32, AtomicU64, FutexWord, Ordering, Park};

/// "MIRRRING" in little-endian bytes.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"MIRRRING");
/// Bumped whenever the layout or the meaning of a field changes. 2: role slots of 32 bytes
/// with the claimant's PID namespace and park mode; lines of 128 bytes on every architecture.
/// 3: framed rings stamp each frame header with its position and release lazily
/// ([`docs::framing`](crate::docs::framing)).
pub(crate) const VERSION: u32 = 3;

/// Role state: nobody has claimed this end yet.
pub(crate) const ROLE_FREE: u32 = 0;
/// Role state: claimed by the process in `pid`, in use.
pub(crate) const ROLE_CLAIMED: u32 = 1;
/// Role state: the claimant closed its end (dropped it). Final.
pub(crate) const ROLE_CLOSED: u32 = 2;

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

/// One end's claim: who holds it, whether they closed it, and how they park.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct RoleSlot {
    /// `ROLE_FREE`, `ROLE_CLAIMED` or `ROLE_CLOSED`.
    pub(crate) state: AtomicU32,
    /// The claimant's process id (in its PID namespace, `pid_ns`).
    pub(crate) pid: AtomicI32,
    /// The claimant's start time (`/proc/<pid>/stat` field 22), to tell it apart from a later
    /// process that reuses the pid. 0 when unknown.
    pub(crate) start_time: AtomicU64,
    /// The claimant's PID namespace (inode of `/proc/self/ns/pid`), 0 when unknown. A peer in
    /// another namespace cannot check this pid.
    pub(crate) pid_ns: AtomicU64,
    /// How the claimant parks (`Park::to_raw`).
    pub(crate) park: AtomicU32,
    /// Zero; reserved.
    pub(crate) reserved: AtomicU32,
}

/// Who claims a role: the values recorded in its slot.
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
    /// apart than the capacity.
    pub(crate) fn check_identity(&self, expected_capacity: u64, data_offset: u64) -> Result<(), BadHeader> {
        // Acquire: pairs with the Release store of the magic in `init`.
        if self.magic.load(Ordering::Acquire) != MAGIC {
            return Err(BadHeader::Magic);
        }
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
            if slot.state.load(Ordering::Relaxed) > ROLE_CLOSED || slot.park.load(Ordering::Relaxed) > PARK_GLOBAL {
                return Err(BadHeader::RoleState);
            }
        }
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        if head.wrapping_sub(tail) > cap {
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

    /// Whether `r` has closed its end. Acquire: pairs with the Release store in `close`, so the
    /// closer's last cursor publish is visible after this returns true.
    #[inline]
    pub(crate) fn is_closed(&self, r: Role) -> bool {
        self.slot(r).state.load(Ordering::Acquire) == ROLE_CLOSED
    }

    /// Marks the ring poisoned for both sides.
    pub(crate) fn poison(&self) {
        // Relaxed: a flag with no data attached; each side also keeps its own.
        self.poisoned.store(1, Ordering::Relaxed);
    }

    /// Whether either side has poisoned the ring.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Relaxed) != 0
    }

    /// Claims role `r` for `who`. Exactly one claim of each role ever succeeds, across every
    /// process that maps the ring.
    pub(crate) fn claim(&self, r: Role, who: Claimant) -> bool {
        let slot = self.slot(r);
        // AcqRel on success: Acquire sees the creator's initialisation (and, for an attaching
        // process, the cursors); Release publishes nothing yet, the fields follow. The peer
        // reads pid after seeing ROLE_CLAIMED, and treats pid 0 as "not known yet".
        let won = slot.state.compare_exchange(ROLE_FREE, ROLE_CLAIMED, Ordering::AcqRel, Ordering::Relaxed).is_ok();
        if won {
            slot.start_time.store(who.start_time, Ordering::Relaxed);
            slot.pid_ns.store(who.pid_ns, Ordering::Relaxed);
            // Relaxed: the park mode is read on its own (see `sync::publish_barrier`); the
            // barrier argument does not need it ordered with anything else.
            slot.park.store(who.park.to_raw(), Ordering::Relaxed);
            // Release: start_time and pid_ns are visible before the pid. Pairs with the Acquire
            // load of pid in the peer's liveness check.
            slot.pid.store(who.pid, Ordering::Release);
        }
        won
    }

    /// How the claimant of `r` parks (an unknown code reads as `Park::Fence`).
    #[cfg(test)]
    pub(crate) fn park_mode(&self, r: Role) -> Park {
        // Relaxed: see `claim`.
        Park::from_raw(self.slot(r).park.load(Ordering::Relaxed))
    }

    /// Whether `r` records the park code `light` (`light_peer_code`): then a publish to it
    /// needs only a compiler fence. One load of the read-mostly line 0 and a comparison.
    #[inline(always)]
    pub(crate) fn parks_with(&self, r: Role, light: u32) -> bool {
        // Relaxed: see `claim`.
        self.slot(r).park.load(Ordering::Relaxed) == light
    }

    /// Records that `r` now parks with a full fence only (its membarrier call failed).
    pub(crate) fn downgrade_park(&self, r: Role) {
        // Relaxed: the sleeper that downgrades also bounds its current sleep, so a publisher
        // that still uses the light barrier can delay it by at most that bound (`wait.rs`).
        self.slot(r).park.store(PARK_FENCE, Ordering::Relaxed);
    }

    /// A header on the heap, initialised as a fresh ring's (for the loom models, which cannot
    /// map memory).
    #[cfg(all(test, mirror_ring_loom))]
    pub(crate) fn for_model(capacity: u64, start: u64) -> Box<Header> {
        let slot = || RoleSlot {
            state: AtomicU32::new(ROLE_FREE),
            pid: AtomicI32::new(0),
            start_time: AtomicU64::new(0),
            pid_ns: AtomicU64::new(0),
            park: AtomicU32::new(PARK_FENCE),
            reserved: AtomicU32::new(0),
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
            head: Line(AtomicU64::new(0)),
            tail: Line(AtomicU64::new(0)),
            data_waiter: Line(FutexWord::default()),
            space_waiter: Line(FutexWord::default()),
        });
        hdr.init(capacity, 4096, BACKEND_MEMFD, start);
        hdr
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
        assert_eq!(size_of::<RoleSlot>(), 32);
        assert_eq!(offset_of!(RoleSlot, state), 0);
        assert_eq!(offset_of!(RoleSlot, pid), 4);
        assert_eq!(offset_of!(RoleSlot, start_time), 8);
        assert_eq!(offset_of!(RoleSlot, pid_ns), 16);
        assert_eq!(offset_of!(RoleSlot, park), 24);
        assert_eq!(offset_of!(RoleSlot, reserved), 28);
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
        assert!(h.claim(Role::Producer, who(7)));
        assert!(!h.claim(Role::Producer, who(8)));
        assert!(h.claim(Role::Consumer, who(8)));
        assert_eq!(h.producer.pid.load(Ordering::Relaxed), 7);
        assert_eq!(h.consumer.pid_ns.load(Ordering::Relaxed), 2);
        assert_eq!(h.park_mode(Role::Consumer), Park::Global);
        h.downgrade_park(Role::Consumer);
        assert_eq!(h.park_mode(Role::Consumer), Park::Fence);
        h.consumer.park.store(7, Ordering::Relaxed);
        assert_eq!(h.check_identity(4096, 4096), Err(BadHeader::RoleState));
        h.consumer.park.store(PARK_GLOBAL, Ordering::Relaxed);
        h.head.store(4097, Ordering::Relaxed);
        assert_eq!(h.check_identity(4096, 4096), Err(BadHeader::Cursors));
        h.head.store(0, Ordering::Relaxed);
        h.backend.store(9, Ordering::Relaxed);
        assert_eq!(h.check_identity(4096, 4096), Err(BadHeader::Backend));
        h.backend.store(1, Ordering::Relaxed);
        h.consumer.state.store(3, Ordering::Relaxed);
        assert_eq!(h.check_identity(4096, 4096), Err(BadHeader::RoleState));
    }

    fn unsafe_zeroed_header() -> Header {
        // SAFETY: every field is an integer atomic (or padding around one); all-zero is valid.
        unsafe { std::mem::zeroed() }
    }
}
