//! The mirrored mapping: one region of shared memory mapped twice, back to back.
//!
//! # Layout
//!
//! Every map, whatever its backend, lives inside one address-space reservation:
//!
//! ```text
//! base            base+H               base+H+N              base+H+2N
//! | control (H)   | data, view A (N)   | data, view B (N)     |
//!   one page        the pages            the same pages again
//! ```
//!
//! The control page (`H`, one page) belongs to the same shared object as the data and is
//! mapped once. The ring keeps its shared header there (see `header.rs`), so a ring is one
//! object: one anonymous shmem segment, or one memfd of `H + N` bytes whose first page is the
//! header. [`MirrorMap::as_ptr`] points at view A; a plain `MirrorMap` leaves the control page
//! unused.
//!
//! # Construction
//!
//! 1. Reserve `H + 2N` bytes `PROT_NONE` (private, anonymous, `MAP_NORESERVE`). Every later
//!    step places memory with `MAP_FIXED`/`MREMAP_FIXED` strictly inside this reservation, so
//!    nothing that belongs to someone else can be replaced.
//! 2. Map the shared object over `[base, base+H+N)`.
//! 3. Make view B at `base+H+N`, by backend:
//!    - [`Backend::MirrorFlag`]: `mremap(base+H, N, N, MAYMOVE|FIXED|4, base+H+N)`;
//!    - [`Backend::Duplicate`]: `mremap(base+H, 0, N, MAYMOVE|FIXED, base+H+N)`;
//!    - [`Backend::Memfd`]: a second `mmap` of the memfd at offset `H`, then the seals.
//! 4. Optionally prefault both views, mark the whole range `MADV_DONTFORK`, and lock it
//!    (`mlock`, only now that it mirrors).
//!
//! Any failure unmaps the whole reservation in one call (and closes the memfd); so does
//! `Drop`. The mremap forms are only ever applied to `MAP_SHARED` memory.
//!
//! # Huge pages
//!
//! With [`MirrorOptions::huge_pages`], the data is 2 MiB hugetlb pages, and the layout moves
//! inside a reservation one huge page longer, so that view A starts on a 2 MiB boundary:
//!
//! ```text
//! base     ctrl    ctrl+H = data (2 MiB aligned)   data+N                data+2N
//! | slack  | H     | view A (N, huge pages)        | view B (same pages)  | slack |
//! ```
//!
//! `mremap` cannot mirror hugetlb memory: both forms (`old_len == 0` and flag 4) fail with
//! `EINVAL` on anonymous `MAP_SHARED | MAP_HUGETLB` mappings and on hugetlb memfd mappings
//! alike (measured on Linux 6.18). What works is a `memfd_create(MFD_HUGETLB | MFD_HUGE_2MB)`
//! file of `N` bytes mapped twice, so `Auto` builds that (and [`MirrorMap::backend`] reports
//! `Memfd`); the descriptor is closed once both views are mapped (the mappings keep the file),
//! which keeps a huge-page ring as fd-less as the mremap backends. The control page is one
//! ordinary page of anonymous shared memory just below view A: a huge page for a header of a
//! few hundred bytes would cost 2 MiB per ring. Explicit `MirrorFlag` or `Duplicate` requests
//! really try their `mremap` form on a hugetlb mapping (a later kernel may accept it; the
//! result is then checked to mirror) and fail with `Unsupported` naming huge pages, the
//! kernel's errno as `source()`. An explicit `Memfd` request fails with `Unsupported`: a
//! huge-page map keeps no descriptor to hand over (and `SharedRing::from_fd` accepts shmem
//! memfds only).
//!
//! # Transparent huge pages
//!
//! With [`MirrorOptions::transparent_huge_pages`], the data is ordinary shared memory that
//! the kernel may back with 2 MiB transparent huge pages (shmem THP). A page-table entry maps
//! 2 MiB only where the virtual address and the offset in the shared object agree modulo
//! 2 MiB, so the map takes the huge-page layout above: the control page mapped on its own,
//! the data at offset 0 of its object with view A on a 2 MiB boundary. View B follows as for
//! 4 KiB pages (either `mremap` form; or, as `Auto`'s last resort, a memfd of `N` bytes mapped
//! twice, its descriptor closed), and `MADV_HUGEPAGE` goes over both views before anything
//! touches them. Measured on Linux 6.18 with `shmem_enabled` at `advise`: all three ways map
//! every 2 MiB of both views with one entry each. The knobs are read at creation (the 2 MiB
//! one, `hugepages-2048kB/shmem_enabled`, decides unless it says `inherit`, or the top-level
//! one says `deny`, which refuses whatever the 2 MiB one says; measured, the 2 MiB knob
//! otherwise overrides the top-level one both ways); `never`, `deny` or a kernel without them
//! is `Unsupported`, before anything is mapped.
//!
//! Which backend, the probe, its cache and `Auto`'s hand-over: `backend.rs`.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::Context;
use crate::sys;

/// The construction steps, named so that tests can make each one fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Reserve,
    /// The control page of a huge-page map (ordinary shared memory, mapped on its own).
    MapControl,
    MemfdCreate,
    Truncate,
    MapFirst,
    MapSecond,
    Seal,
    Prefault,
    DontFork,
    Lock,
    /// `MADV_HUGEPAGE` over both views of a map that asks for transparent huge pages.
    Advise,
}

/// What backs a map's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pages {
    /// The system's pages (4 KiB), in the layout of the module docs.
    Small,
    /// 2 MiB hugetlb pages ([`MirrorOptions::huge_pages`]).
    Huge,
    /// Shared memory that may get 2 MiB transparent huge pages
    /// ([`MirrorOptions::transparent_huge_pages`]), in the layout of huge pages.
    Transparent,
}

#[cfg(test)]
thread_local! {
    /// Test hook: make `Step` fail with this errno on this thread.
    pub(crate) static FAIL_AT: std::cell::Cell<Option<(Step, i32)>> = const { std::cell::Cell::new(None) };
    /// Test hook: every step this thread has reached, in order (`None`: not recording).
    pub(crate) static STEPS_TAKEN: std::cell::RefCell<Option<Vec<Step>>> = const { std::cell::RefCell::new(None) };
}

/// Runs before every construction step; in tests it can inject a failure.
#[inline(always)]
fn checkpoint(_step: Step) -> io::Result<()> {
    #[cfg(test)]
    STEPS_TAKEN.with(|t| t.borrow_mut().as_mut().map(|steps| steps.push(_step)));
    #[cfg(test)]
    if let Some((s, errno)) = FAIL_AT.with(|f| f.get()) {
        if s == _step {
            return Err(io::Error::from_raw_os_error(errno));
        }
    }
    Ok(())
}

/// Wraps ENOMEM in an `OutOfMemory` error that says what usually causes it; every other errno
/// is returned untouched, so `raw_os_error()` keeps working.
fn explain_enomem(err: io::Error, what: impl FnOnce() -> String) -> io::Error {
    if err.raw_os_error() == Some(libc::ENOMEM) {
        io::Error::new(io::ErrorKind::OutOfMemory, Context { msg: what(), source: err })
    } else {
        err
    }
}

/// [`explain_enomem`] for a step that maps (`mmap`, `mremap`, the reservation), where EAGAIN too
/// has one cause:
/// the process locks its future mappings (`mlockall(MCL_FUTURE)`) and this one would pass
/// `RLIMIT_MEMLOCK`.
fn explain_map(err: io::Error, what: impl FnOnce() -> String) -> io::Error {
    if err.raw_os_error() != Some(libc::EAGAIN) {
        return explain_enomem(err, what);
    }
    let limit = sys::memlock_limit().map_or_else(|| "unlimited".to_owned(), |b| format!("{b} bytes"));
    let msg = format!(
        "{}: EAGAIN, the kernel's answer when a process that locks every new mapping (mlockall \
         with MCL_FUTURE) would pass RLIMIT_MEMLOCK ({limit} here); it counts each mapping as it \
         is made, the address space reserved for the map included",
        what()
    );
    io::Error::new(io::ErrorKind::OutOfMemory, Context { msg, source: err })
}

/// Options for building a [`MirrorMap`], in the style of `memmap2::MmapOptions`.
///
/// # Examples
///
/// ```
/// use mirror_ring::{Backend, MirrorOptions};
///
/// let map = MirrorOptions::new().backend(Backend::Auto).prefault(true).map(64 * 1024)?;
/// assert_eq!(map.len(), 64 * 1024);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MirrorOptions {
    backend: Backend,
    prefault: bool,
    dont_fork: bool,
    huge: bool,
    thp: bool,
    lock: bool,
}

impl MirrorOptions {
    /// Default options: `Backend::Auto`, no prefault, inherited by forked children, not locked.
    pub fn new() -> Self {
        Self::default()
    }

    /// Which backend makes the second view.
    pub fn backend(&mut self, backend: Backend) -> &mut Self {
        self.backend = backend;
        self
    }

    /// Fault in both views up front (`MADV_POPULATE_WRITE`, Linux 5.14+, else by touching
    /// every page), so the first pass over the ring does not pay ~2 µs per page.
    pub fn prefault(&mut self, yes: bool) -> &mut Self {
        self.prefault = yes;
        self
    }

    /// Keep the map out of forked children (`MADV_DONTFORK` over the whole range, both views
    /// and the control page; never one view alone, which would leave a child half a ring).
    pub fn dont_fork(&mut self, yes: bool) -> &mut Self {
        self.dont_fork = yes;
        self
    }

    /// Lock the map in memory at creation, once it mirrors (`mlock` over the control page and
    /// both views; never before the mirror exists, so that what is locked is the final
    /// mapping): every page is faulted in now and none is swapped out or faulted again later,
    /// for consumers that must never wait on a page fault (audio, SDR).
    ///
    /// The lock belongs to this process's mapping: `RLIMIT_MEMLOCK` counts the whole range,
    /// `H + 2N` bytes for an `N`-byte map (each view separately, and `H`, one page, for the
    /// control page), unless the process has `CAP_IPC_LOCK`. Over the limit, creation fails
    /// with `OutOfMemory` (`PermissionDenied` when the limit is zero), a message naming
    /// `RLIMIT_MEMLOCK` and the limit, and the OS error as `source()`. (An `EPERM` under any
    /// other limit is a sandbox's refusal: `PermissionDenied`, and the message says so.) A forked child does not
    /// inherit the lock (`fork(2)`), but the shared pages stay resident while the locking
    /// process maps them. With [`huge_pages`](Self::huge_pages) the data is hugetlb memory,
    /// which is never swapped and which the kernel does not lock: the control page is
    /// locked, the data prefaulted, and the limit counts the control page only.
    ///
    /// The pages are faulted in before the lock is asked for, so that running out of memory
    /// (`OutOfMemory`, "no memory to back the pages") fails with nothing locked: `mlock` marks
    /// the range locked first and faults it in after, and when a fault fails it fails the
    /// call with the range still locked. A refusal over the limit therefore comes after the
    /// prefault.
    ///
    /// # Examples
    ///
    /// ```
    /// use mirror_ring::MirrorOptions;
    ///
    /// match MirrorOptions::new().lock_memory(true).map(64 * 1024) {
    ///     Ok(map) => assert_eq!(map.len(), 64 * 1024),
    ///     // Over this process's RLIMIT_MEMLOCK: the error says so, the OS error is its source.
    ///     Err(e) => assert!(e.to_string().contains("RLIMIT_MEMLOCK"), "{e}"),
    /// }
    /// ```
    pub fn lock_memory(&mut self, yes: bool) -> &mut Self {
        self.lock = yes;
        self
    }

    /// Back the data with 2 MiB huge pages (hugetlb): fewer TLB misses and one page fault per
    /// 2 MiB instead of per 4 KiB. The length is rounded up to a power of two of at least
    /// 2 MiB (so a multiple of 2 MiB). The pages come from the kernel's reserved pool
    /// (`/proc/sys/vm/nr_hugepages`), taken at creation: when too few are free, creation fails
    /// with `OutOfMemory`, a message naming huge pages, and the OS error (`ENOMEM`) as
    /// `source()`. Only [`Backend::Auto`] can build a huge-page mirror (a hugetlb memfd mapped
    /// twice, its descriptor closed once both views are mapped; [`MirrorMap::backend`] then
    /// reports `Memfd` and [`MirrorMap::as_fd`] `None`); `mremap` refuses hugetlb memory, so
    /// `MirrorFlag` and `Duplicate` fail with `Unsupported` (they try, so with too few free huge
    /// pages they fail with `OutOfMemory` first), and so does `Memfd`, whose point is a
    /// descriptor to hand over. Works between threads and across `fork`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mirror_ring::MirrorOptions;
    ///
    /// match MirrorOptions::new().huge_pages(true).map(3 << 20) {
    ///     Ok(map) => assert_eq!(map.len(), 4 << 20), // rounded up to a power of two
    ///     // No huge pages reserved on this machine (or no hugetlbfs): the error says so.
    ///     Err(e) => assert!(e.to_string().contains("huge page"), "{e}"),
    /// }
    /// ```
    pub fn huge_pages(&mut self, yes: bool) -> &mut Self {
        self.huge = yes;
        self
    }

    /// Ask for the data in 2 MiB transparent huge pages of shared memory (shmem THP): fewer
    /// TLB misses and page faults, like [`huge_pages`](Self::huge_pages), without a reserved
    /// pool. The length is rounded up to a power of two of at least 2 MiB, both views start on
    /// a 2 MiB boundary, and the control page is mapped on its own below view A (the layout of
    /// huge pages), so that the kernel can map each 2 MiB of either view with one page-table
    /// entry. Both `mremap` forms keep those entries in view B (measured on Linux 6.18).
    ///
    /// The kernel decides whether shared memory gets them, through two knobs under
    /// `/sys/kernel/mm/transparent_hugepage/`: `hugepages-2048kB/shmem_enabled` (Linux 6.11+)
    /// decides for 2 MiB pages unless it says `inherit`, and then (or on older kernels)
    /// `shmem_enabled` does; the deciding one must say `advise` (the map asks with
    /// `MADV_HUGEPAGE`), `within_size` or `always` (`force` too, at the top level), and a
    /// top-level `deny` refuses whatever the other says (measured on 6.18). Most distributions
    /// ship `never` and `inherit`; then, or on a kernel without transparent huge pages,
    /// creation fails with `Unsupported` and a message naming the deciding file, before
    /// anything is mapped. A knob that cannot be read for want of a resource (no descriptor
    /// left, `EMFILE`; no memory) is no verdict: that OS error comes back with its own kind,
    /// as `source()`. Where the knobs allow them, a huge page is still the kernel's best
    /// effort: where it finds no free 2 MiB of memory when a page is first touched, it uses
    /// 4 KiB pages, and nothing reports it (`ShmemPmdMapped` in `/proc/<pid>/smaps` counts the
    /// huge part). [`prefault`](Self::prefault) takes the pages at creation.
    ///
    /// Works with [`Backend::Auto`], `MirrorFlag` and `Duplicate`, between threads and across
    /// `fork`. If `Auto` falls back to a memfd, it maps an `N`-byte memfd twice and closes the
    /// descriptor, as for huge pages ([`MirrorMap::as_fd`] is `None`). An explicit
    /// [`Backend::Memfd`] fails with `Unsupported`: the file it hands over keeps the header in
    /// its first page and the data after it, where no 2 MiB page can line up with the views.
    /// Together with [`huge_pages`](Self::huge_pages) it is `InvalidInput`: they are two ways to
    /// the same pages. [`lock_memory`](Self::lock_memory) locks and counts these pages as it
    /// does 4 KiB ones.
    ///
    /// # Examples
    ///
    /// ```
    /// use mirror_ring::MirrorOptions;
    ///
    /// match MirrorOptions::new().transparent_huge_pages(true).prefault(true).map(3 << 20) {
    ///     Ok(map) => assert_eq!(map.len(), 4 << 20), // rounded up to a power of two
    ///     // The knobs say `never` here (the usual default): the error names the one.
    ///     Err(e) => assert!(e.to_string().contains("shmem_enabled"), "{e}"),
    /// }
    /// ```
    pub fn transparent_huge_pages(&mut self, yes: bool) -> &mut Self {
        self.thp = yes;
        self
    }

    /// Builds a map of at least `len` bytes (see [`MirrorMap::new`] for the rounding).
    ///
    /// With [`Backend::Auto`], a backend refused at creation hands over to the next one (see
    /// [`Backend::Auto`]); an explicit backend returns its own error.
    ///
    /// # Errors
    ///
    /// As [`MirrorMap::with_backend`].
    ///
    /// # Examples
    ///
    /// ```
    /// use mirror_ring::{Backend, MirrorOptions};
    /// let map = MirrorOptions::new().backend(Backend::Duplicate).dont_fork(true).map(4096)?;
    /// assert_eq!(map.backend(), Backend::Duplicate);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn map(&self, len: usize) -> io::Result<MirrorMap> {
        // Miri cannot map shared memory or remap it: a heap stand-in, for the Miri harness.
        #[cfg(miri)]
        if !self.huge && !self.thp {
            return Ok(MirrorMap::heap(round_len(len)?));
        }
        if self.huge && self.thp {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "huge_pages and transparent_huge_pages are two ways to 2 MiB pages: ask for one",
            ));
        }
        if self.huge {
            let len = round_len_huge(len)?;
            return MirrorMap::build_huge(len, self.backend)?.finish(self);
        }
        let len = if self.thp { round_len_huge(len)? } else { round_len(len)? };
        let pages = if self.thp {
            huge::check_shmem_thp(self.backend)?;
            Pages::Transparent
        } else {
            Pages::Small
        };
        let map = match self.backend {
            Backend::Auto => MirrorMap::build_auto(len, pages)?,
            backend => MirrorMap::build_explicit(len, backend, pages)?,
        };
        map.finish(self)
    }
}

/// Rounds a requested length up to a power of two that is at least one page, checking that the
/// whole reservation (`H + 2N`) is representable.
pub(crate) fn round_len(len: usize) -> io::Result<usize> {
    let invalid = |msg: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{msg} (requested {len} bytes)"));
    if len == 0 {
        return Err(invalid("a mirrored map cannot be empty"));
    }
    let n = len
        .max(sys::page_size())
        .checked_next_power_of_two()
        .ok_or_else(|| invalid("length too large to round up to a power of two"))?;
    total_len(n).ok_or_else(|| invalid("length too large: the two views do not fit the address space"))?;
    Ok(n)
}

/// `H + 2N`, if it fits in `isize` (the largest object Rust allows).
fn total_len(n: usize) -> Option<usize> {
    let total = n.checked_mul(2)?.checked_add(sys::page_size())?;
    (total <= isize::MAX as usize).then_some(total)
}

/// A region of `len()` bytes of shared memory mapped twice, back to back: the byte at
/// `as_ptr() + i` and the byte at `as_ptr() + len() + i` are the same memory, for every
/// `i < len()`. Any window of up to `len()` bytes starting inside the first view is therefore
/// one contiguous slice, even where it wraps.
///
/// # Examples
///
/// ```
/// use mirror_ring::MirrorMap;
///
/// let map = MirrorMap::new(4096)?;
/// let n = map.len();
/// // SAFETY (example): the map is valid for 2 * len() bytes and only this thread uses it.
/// unsafe {
///     map.as_ptr().add(n + 7).write_volatile(42); // through the second view
///     std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
///     assert_eq!(map.as_ptr().add(7).read_volatile(), 42); // read back through the first
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Aliasing
///
/// The compiler does not know that the two views are the same memory: a write through one
/// view followed by a read through the other can be miscompiled into a stale read. Never keep
/// two live references covering the same bytes through both views, and separate a write
/// through one view from a read through the other by a fence or an Acquire/Release pair (the
/// ring does this for you).
pub struct MirrorMap {
    /// Start of the reservation.
    base: NonNull<u8>,
    /// Length of the reservation (`H + 2N`, plus a huge page of slack for huge pages).
    res_len: usize,
    /// The control page; view A starts one page after it. `base` except for huge pages.
    ctrl: NonNull<u8>,
    /// `N`: the length of one view.
    len: usize,
    /// What backs the data: 4 KiB pages, hugetlb pages or transparent huge pages.
    pages: Pages,
    backend: Backend,
    /// The memfd, for `Backend::Memfd`.
    fd: Option<OwnedFd>,
    /// For a `dont_fork` map: the fork generation of the process that made it. A forked child
    /// inherits this struct but not the mapping (`MADV_DONTFORK`), so there the range is
    /// someone else's; every forked child has moved on to another generation (the handler that
    /// moves it is installed before the map is handed out). A pid would not tell: a child
    /// forked into a new PID namespace, or a descendant after the maker died and its pid came
    /// round again, can have the maker's.
    dont_fork_owner: Option<usize>,
}

// SAFETY: MirrorMap owns a memory range, like a Box<[u8]> would; it hands out raw pointers
// only, so moving it between threads or sharing &MirrorMap cannot by itself cause a data race.
unsafe impl Send for MirrorMap {}
// SAFETY: as above; every accessor takes &self and returns a raw pointer or plain data.
unsafe impl Sync for MirrorMap {}

impl MirrorMap {
    /// Maps at least `len` bytes twice, with [`Backend::Auto`].
    ///
    /// `len` is rounded up to a power of two that is at least one page; [`len`](Self::len)
    /// reports the real length.
    ///
    /// # Errors
    ///
    /// - `InvalidInput` for `len == 0` or a length whose rounding or doubling overflows;
    /// - `OutOfMemory` when the address space, `RLIMIT_AS` (which counts both views) or
    ///   `vm.max_map_count` is exhausted, with the OS error as `source()`;
    /// - `Unsupported` when no backend works in this process (each one refused by the kernel
    ///   or a sandbox); the message names each backend and why, and the last OS error is the
    ///   `source()`. A backend refused while another works is not an error: see
    ///   [`Backend::Auto`];
    /// - any other OS error as-is (`raw_os_error()` gives the errno).
    ///
    /// # Examples
    ///
    /// ```
    /// let map = mirror_ring::MirrorMap::new(100_000)?;
    /// assert_eq!(map.len(), 131_072);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(len: usize) -> io::Result<MirrorMap> {
        Self::with_backend(len, Backend::Auto)
    }

    /// Maps at least `len` bytes twice with the given backend.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new). An explicit backend never hands over to another one: if its probe
    /// failed (or an earlier creation's refusal was confirmed), `Unsupported` with the recorded
    /// OS error as `source()`; if it is refused now (a sandbox installed after the probe), the
    /// kernel's error as-is (typically `EINVAL`, `ENOSYS` or `EPERM`), and the backend is
    /// marked unavailable once a fresh probe confirms the refusal.
    ///
    /// # Examples
    ///
    /// ```
    /// use mirror_ring::{Backend, MirrorMap};
    /// let map = MirrorMap::with_backend(1 << 20, Backend::Memfd)?;
    /// assert_eq!(map.backend(), Backend::Memfd);
    /// assert!(map.as_fd().is_some());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_backend(len: usize, backend: Backend) -> io::Result<MirrorMap> {
        MirrorOptions::new().backend(backend).map(len)
    }

    /// The length of one view. [`as_ptr`](Self::as_ptr) is valid for `2 * len()` bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: a map is at least one page. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The start of the first view; valid for reads and writes of `2 * len()` bytes.
    pub fn as_ptr(&self) -> *mut u8 {
        // SAFETY: ctrl + H is inside the reservation, which holds [ctrl, ctrl + H + 2N).
        unsafe { self.ctrl.as_ptr().add(sys::page_size()) }
    }

    /// The backend actually used (never `Auto`).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The memfd behind a [`Backend::Memfd`] map (`None` for the fd-less backends, and for a
    /// huge-page map, whose descriptor is closed once both views are mapped). It holds the
    /// control page and the data: its size is one page plus [`len`](Self::len).
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    /// Whether the data is 2 MiB huge pages ([`MirrorOptions::huge_pages`]).
    pub fn huge_pages(&self) -> bool {
        self.pages == Pages::Huge
    }

    /// Whether the map asked for transparent huge pages
    /// ([`MirrorOptions::transparent_huge_pages`]): its layout lets the kernel use them. How
    /// much of it the kernel backs with them is its own choice (see that option).
    pub fn transparent_huge_pages(&self) -> bool {
        self.pages == Pages::Transparent
    }

    /// The control page (one page, shared like the data) right below view A.
    pub(crate) fn control_ptr(&self) -> NonNull<u8> {
        self.ctrl
    }

    /// Builds the mirror over a fresh shared object, in a fresh reservation (the probe's way).
    /// `len` is already rounded.
    fn build(len: usize, backend: Backend) -> io::Result<MirrorMap> {
        MirrorMap::build_in(Reservation::new(len)?, len, backend, Pages::Small)
    }

    /// Builds the mirror inside `res` (made for `len`, already rounded, and for `pages`: 4 KiB
    /// pages, or transparent huge pages with their 2 MiB-aligned layout). Every error here
    /// comes from a step of `backend` itself; on failure `res` drops and unmaps everything.
    fn build_in(res: Reservation, len: usize, backend: Backend, pages: Pages) -> io::Result<MirrorMap> {
        if pages == Pages::Transparent {
            return MirrorMap::build_thp(res, len, backend);
        }
        let h = sys::page_size();
        let fd = match backend {
            Backend::MirrorFlag | Backend::Duplicate => {
                step(Step::MapFirst, || {
                    // SAFETY: [ctrl, ctrl+H+N) is inside our reservation.
                    unsafe { sys::map_shared_anon_fixed(res.ctrl, h + len) }
                })
                .map_err(|e| shared_enomem(e, h + len))?;
                mirror_by_mremap(&res, len, backend)?;
                None
            }
            Backend::Memfd => {
                let fd = step(Step::MemfdCreate, || sys::memfd_create(c"mirror-ring"))?;
                size_memfd(fd.as_fd(), h + len)?;
                map_ring_file(&res, fd.as_fd(), len)?;
                step(Step::Seal, || {
                    sys::add_seals(fd.as_fd(), libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL)
                })?;
                Some(fd)
            }
            Backend::Auto => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "Backend::Auto must be resolved first"))
            }
        };
        Ok(res.into_map(len, pages, backend, fd))
    }

    /// [`build_in`](Self::build_in) for transparent huge pages, in a reservation made by
    /// [`Reservation::new_huge`]: the control page on its own, the data (offset 0 of its
    /// object, 2 MiB aligned) mirrored by `backend`, then `MADV_HUGEPAGE` over both views before
    /// anything touches them. The memfd form keeps no descriptor (see
    /// [`MirrorOptions::transparent_huge_pages`]).
    fn build_thp(mut res: Reservation, len: usize, backend: Backend) -> io::Result<MirrorMap> {
        let h = sys::page_size();
        step(Step::MapControl, || {
            // SAFETY: [ctrl, ctrl+H) is inside our reservation.
            unsafe { sys::map_shared_anon_fixed(res.ctrl, h) }
        })
        .map_err(|e| shared_enomem(e, h))?;
        match backend {
            Backend::MirrorFlag | Backend::Duplicate => {
                step(Step::MapFirst, || {
                    // SAFETY: [ctrl+H, ctrl+H+N) is inside our reservation.
                    unsafe { sys::map_shared_anon_fixed(res.at(h), len) }
                })
                .map_err(|e| shared_enomem(e, len))?;
                mirror_by_mremap(&res, len, backend)?;
            }
            Backend::Memfd => {
                let fd = step(Step::MemfdCreate, || sys::memfd_create(c"mirror-ring-thp"))?;
                size_memfd(fd.as_fd(), len)?;
                step(Step::MapFirst, || {
                    // SAFETY: [ctrl+H, ctrl+H+N) is inside our reservation; the file is N bytes.
                    unsafe { sys::map_fd_fixed(res.at(h), len, fd.as_fd(), 0) }
                })
                .map_err(|e| {
                    explain_map(e, || format!("cannot map a {len}-byte memfd (RLIMIT_AS or vm.max_map_count)"))
                })?;
                step(Step::MapSecond, || {
                    // SAFETY: [ctrl+H+N, ctrl+H+2N) is inside our reservation.
                    unsafe { sys::map_fd_fixed(res.at(h + len), len, fd.as_fd(), 0) }
                })
                .map_err(|e| mirror_enomem(e, len, false))?;
                // Both views hold the file now; nothing else needs the descriptor.
            }
            Backend::Auto => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "Backend::Auto must be resolved first"))
            }
        }
        step(Step::Advise, || {
            // SAFETY: advice over both views, which we just mapped and nobody has touched.
            unsafe { sys::madvise_hugepage(res.at(h), 2 * len) }
        })
        .map_err(|e| match e.raw_os_error() {
            // The kernel could not allocate while changing the mapping: a shortage, not a refusal.
            Some(libc::ENOMEM) => {
                explain_enomem(e, || format!("cannot advise MADV_HUGEPAGE over a {len}-byte mirror: out of memory"))
            }
            _ => io::Error::new(
                io::ErrorKind::Unsupported,
                Context {
                    msg: "the kernel refused MADV_HUGEPAGE: no transparent huge pages here".to_owned(),
                    source: e,
                },
            ),
        })?;
        res.trim(len);
        Ok(res.into_map(len, Pages::Transparent, backend, None))
    }

    /// Maps an existing memfd ring file (`H + len` bytes, already validated by the caller:
    /// sealed against shrinking and growing, and of exactly this size).
    pub(crate) fn from_ring_file(fd: OwnedFd, len: usize) -> io::Result<MirrorMap> {
        let res = Reservation::new(len)?;
        map_ring_file(&res, fd.as_fd(), len)?;
        Ok(res.into_map(len, Pages::Small, Backend::Memfd, Some(fd)))
    }

    /// Whether the mapping exists in this process: false only in a forked child of the process
    /// that made a `dont_fork` map (the child inherited the struct, not the memory).
    pub(crate) fn mapped_here(&self) -> bool {
        self.dont_fork_owner.map_or(true, |generation| generation == crate::sync::fork_generation())
    }

    /// Applies the optional steps (prefault, DONTFORK, lock); on failure `self` drops and
    /// unmaps.
    fn finish(mut self, opts: &MirrorOptions) -> io::Result<MirrorMap> {
        let total = self.total_len();
        if opts.prefault {
            self.prefault(true)?;
        }
        if opts.dont_fork {
            // SAFETY: advice over the whole range we own (never one view alone).
            step(Step::DontFork, || unsafe { sys::madvise_dontfork(self.ctrl, total) })?;
            // Before the map is handed out, so that every later fork moves the generation.
            crate::sync::track_forks("a dont_fork map")?;
            self.dont_fork_owner = Some(crate::sync::fork_generation());
        }
        if opts.lock {
            self.lock_prefaulted(opts.prefault)?;
        }
        Ok(self)
    }

    /// Faults in every page of both views and the control page. `fresh`: the map is being
    /// built and no one else uses it yet, so the fallback may write (zeros) into it; otherwise
    /// (a live ring, `lock`) the fallback only reads.
    fn prefault(&self, fresh: bool) -> io::Result<()> {
        // SAFETY: the whole range is mapped read-write by us.
        match step(Step::Prefault, || unsafe { sys::madvise_populate_write(self.ctrl, self.total_len()) }) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.touch_all(fresh);
                Ok(())
            }
            Err(e) => Err(explain_enomem(e, || {
                format!("cannot prefault a {}-byte mirror: no memory to back it (the machine's, or its memory cgroup's limit)", self.len)
            })),
        }
    }

    /// Locks this process's mapping in memory (see [`MirrorOptions::lock_memory`]): all of it,
    /// or for a huge-page map the control page, with the hugetlb data prefaulted.
    pub(crate) fn lock(&self) -> io::Result<()> {
        self.lock_prefaulted(false)
    }

    /// [`lock`](Self::lock); `prefaulted`: creation has just prefaulted the whole map, so a
    /// huge-page map need not be prefaulted again.
    fn lock_prefaulted(&self, prefaulted: bool) -> io::Result<()> {
        if !self.mapped_here() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this ring was made with dont_fork: it does not exist in a forked child",
            ));
        }
        let huge = self.pages == Pages::Huge;
        if !prefaulted {
            // First, so that running out of memory leaves nothing locked: `mlock` marks the
            // range locked (and counts it against RLIMIT_MEMLOCK) before it faults the pages
            // in, and a fault that fails then fails the call with the range still locked
            // (mm/mlock.c, `do_mlock`: `apply_vma_lock_flags`, then `__mm_populate`). Without
            // a write, because the ring may be in use (`SharedRing::lock_memory`). A hugetlb
            // map needs it anyway: `mlock` leaves its data out.
            self.prefault(false)?;
        }
        let locked = if huge { sys::page_size() } else { self.total_len() };
        // SAFETY: [ctrl, ctrl + locked) is mapped by us (checked above for a forked child).
        step(Step::Lock, || unsafe { sys::mlock(self.ctrl, locked) }).map_err(|e| lock_error(e, locked, huge))?;
        Ok(())
    }

    /// Prefaults by writing a zero into every page of both views (fresh memory is zero), or,
    /// for a map that may be in use (`fresh` false), by reading a byte of every page: a read
    /// fault on a shared writable mapping maps the page in, and changes nothing.
    fn touch_all(&self, fresh: bool) {
        let page = sys::page_size();
        // (Transparent huge pages are touched per 4 KiB: where the kernel found no huge page,
        // the 2 MiB are small pages.)
        let data_page = if self.pages == Pages::Huge { HUGE_PAGE } else { page };
        let offsets = std::iter::once(0).chain((page..self.total_len()).step_by(data_page));
        for off in offsets {
            // SAFETY: off < total, inside the mapping.
            let at = unsafe { self.ctrl.as_ptr().add(off) };
            if fresh {
                // SAFETY: the map is freshly created, so no one else can be using this byte,
                // and it already holds zero.
                unsafe { at.write_volatile(0) };
            } else {
                // SAFETY: `at` is valid and aligned for a byte. A peer may be writing it: an
                // atomic load, whose value is discarded (the peer's plain stores, in another
                // process or through the ring's copies, are the trust model's, as for every
                // byte the ring shares).
                let byte = unsafe { AtomicU8::from_ptr(at) };
                std::hint::black_box(byte.load(Ordering::Relaxed));
            }
        }
    }

    /// `H + 2N`: the part of the reservation that is mapped, from the control page on.
    fn total_len(&self) -> usize {
        sys::page_size() + 2 * self.len
    }
}

/// A failed `mlock` of `locked` bytes, explained; the OS error stays the `source()`.
fn lock_error(err: io::Error, locked: usize, huge: bool) -> io::Error {
    let counts =
        if huge { "the control page only (hugetlb data is not locked)" } else { "the control page and both views" };
    let bytes = sys::memlock_limit();
    let limit = match bytes {
        Some(bytes) => format!("{bytes} bytes"),
        None => "unlimited".to_owned(),
    };
    let (kind, why) = match err.raw_os_error() {
        Some(libc::ENOMEM) => (
            io::ErrorKind::OutOfMemory,
            format!(
                "over RLIMIT_MEMLOCK ({limit} here), which counts {counts} unless the process has \
                 CAP_IPC_LOCK"
            ),
        ),
        // mlock turns the ENOMEM of faulting the pages in into EAGAIN (mm/mlock.c,
        // `__mlock_posix_error_return`), and its EFAULT into ENOMEM.
        Some(libc::EAGAIN) => (
            io::ErrorKind::OutOfMemory,
            "no memory to back the pages (the machine's, or its memory cgroup's limit)".to_owned(),
        ),
        // The kernel answers EPERM only for a limit of 0 without CAP_IPC_LOCK; under any other
        // limit the refusal came from elsewhere.
        Some(libc::EPERM) if bytes == Some(0) => {
            (io::ErrorKind::PermissionDenied, "RLIMIT_MEMLOCK is 0 here and the process lacks CAP_IPC_LOCK".to_owned())
        }
        Some(libc::EPERM) => (
            io::ErrorKind::PermissionDenied,
            format!(
                "mlock refused although RLIMIT_MEMLOCK is {limit} here: a sandbox (a seccomp filter, a \
                 security module) denies it"
            ),
        ),
        _ => (err.kind(), "the kernel could not lock every page".to_owned()),
    };
    io::Error::new(kind, Context { msg: format!("cannot lock {locked} bytes of a ring in memory: {why}"), source: err })
}

/// Whether a freshly built map mirrors (as the probe checks it), leaving the bytes it wrote
/// zero again, as fresh memory is.
fn check_and_clear(map: &MirrorMap) -> bool {
    let ok = backend::verify_mirror(map);
    let n = map.len();
    for off in [0, n / 2, n - 1] {
        // SAFETY: off < n, inside view A; the map is fresh and private to the caller.
        unsafe { map.as_ptr().add(off).write_volatile(0) };
    }
    ok
}

/// Runs one construction step (which a test may make fail instead).
fn step<T>(s: Step, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    checkpoint(s)?;
    f()
}

/// Sizes a new memfd to `len` bytes. A length over the process's `RLIMIT_FSIZE` is refused
/// first: past that limit `ftruncate` does fail with EFBIG, but the kernel also sends SIGXFSZ,
/// whose default action ends the process.
pub(super) fn size_memfd(fd: BorrowedFd<'_>, len: usize) -> io::Result<()> {
    step(Step::Truncate, || match sys::file_size_limit() {
        Some(limit) if len as u64 > limit => {
            let efbig = io::Error::from_raw_os_error(libc::EFBIG);
            Err(io::Error::new(
                efbig.kind(),
                Context {
                    msg: format!(
                        "cannot make a {len}-byte memfd: RLIMIT_FSIZE allows files of {limit} bytes \
                             (past it the kernel ends the process with SIGXFSZ)"
                    ),
                    source: efbig,
                },
            ))
        }
        _ => sys::ftruncate(fd, len),
    })
}

/// Maps a memfd of `H + len` bytes into `res`: all of it at the base, then the data part
/// (offset `H`) again right after, as view B.
fn map_ring_file(res: &Reservation, fd: BorrowedFd<'_>, len: usize) -> io::Result<()> {
    let h = sys::page_size();
    step(Step::MapFirst, || {
        // SAFETY: [ctrl, ctrl+H+N) is inside our reservation; the file is H + N bytes long.
        unsafe { sys::map_fd_fixed(res.ctrl, h + len, fd, 0) }
    })
    .map_err(|e| explain_map(e, || format!("cannot map a {}-byte memfd (RLIMIT_AS or vm.max_map_count)", h + len)))?;
    step(Step::MapSecond, || {
        // SAFETY: [base+H+N, base+H+2N) is inside our reservation; [H, H+N) is inside the file.
        unsafe { sys::map_fd_fixed(res.at(h + len), len, fd, h) }
    })
    .map_err(|e| mirror_enomem(e, len, false))
}

/// Makes view B of `len` bytes at `ctrl + H + N` from view A, the shared memory at `ctrl + H`,
/// with `backend`'s `mremap` form.
///
/// In a process that locks its future mappings (`mlockall(MCL_FUTURE)`, as audio and SDR
/// programs do), view A is locked as soon as it is mapped, and the value-4 form on a locked
/// source leaks `locked_vm` accounting (KERNEL.md): every such map would keep `H + N` bytes
/// counted against `RLIMIT_MEMLOCK` for the life of the process. So view A is unlocked for the
/// step and both views are locked after it, as `MCL_FUTURE` asks. (The duplicate form carries
/// the lock over and accounts for it correctly.)
fn mirror_by_mremap(res: &Reservation, len: usize, backend: Backend) -> io::Result<()> {
    let h = sys::page_size();
    let (old_len, flag) = if backend == Backend::MirrorFlag { (len, sys::MREMAP_MIRROR) } else { (0, 0) };
    // SAFETY: view A, [ctrl+H, ctrl+H+N), is the shared memory the caller just mapped there.
    let relock = backend == Backend::MirrorFlag && unsafe { sys::is_locked(res.at(h), len) };
    if relock {
        // SAFETY: as above.
        step(Step::Lock, || unsafe { sys::munlock(res.at(h), len) })?;
    }
    step(Step::MapSecond, || {
        // SAFETY: source and target are inside our reservation; the source is the MAP_SHARED
        // mapping the caller just made, never private memory.
        unsafe { sys::mremap_fixed(res.at(h), old_len, len, flag, res.at(h + len)) }
    })
    .map_err(|e| mirror_enomem(e, len, old_len == 0))?;
    if relock {
        // SAFETY: both views, [ctrl+H, ctrl+H+2N), are mapped inside our reservation.
        step(Step::Lock, || unsafe { sys::mlock(res.at(h), 2 * len) }).map_err(|e| lock_error(e, 2 * len, false))?;
    }
    Ok(())
}

/// ENOMEM from mapping `len` bytes of anonymous shared memory, explained.
fn shared_enomem(e: io::Error, len: usize) -> io::Error {
    explain_map(e, || {
        format!("cannot map {len} bytes of shared memory (overcommit limit, RLIMIT_AS or vm.max_map_count)")
    })
}

/// ENOMEM from making view B of a `len`-byte mirror, explained. `duplicate`: by the duplicate
/// form of `mremap`, which the kernel charges to `RLIMIT_AS` before it unmaps the reserved
/// range the new view replaces, so that for a moment it needs room for a third view.
fn mirror_enomem(e: io::Error, len: usize, duplicate: bool) -> io::Error {
    explain_map(e, || {
        let room = if duplicate {
            format!("RLIMIT_AS must have room for both views and, while the duplicate form makes the second, a third ({} bytes)", 3 * len)
        } else {
            format!("RLIMIT_AS counts both views ({} bytes)", 2 * len)
        };
        format!(
            "cannot create the second view of a {len}-byte mirror: {room}, and each ring uses 2-3 of the \
             process's vm.max_map_count mappings (default 65530)"
        )
    })
}

impl MirrorMap {
    /// Under Miri only (`tests/miri_heap.rs`): a heap allocation of `H + 2N` zeroed bytes,
    /// page-aligned, laid out as a map is (control page, view A, view B), so that every pointer
    /// the ring derives from it has the provenance of one allocation, as it has of one
    /// reservation. View B is other memory, not a mirror of view A: only what is written and
    /// read through the same addresses reads back (the harness keeps to that), and the
    /// aliasing of the two views is out of Miri's sight.
    #[cfg(miri)]
    fn heap(len: usize) -> MirrorMap {
        let total = sys::page_size() + 2 * len;
        let layout = std::alloc::Layout::from_size_align(total, sys::page_size()).expect("a page-aligned layout");
        // SAFETY: the layout's size is not zero.
        let base = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).expect("out of memory");
        MirrorMap {
            base,
            res_len: total,
            ctrl: base,
            len,
            pages: Pages::Small,
            backend: Backend::Duplicate,
            fd: None,
            dont_fork_owner: None,
        }
    }
}

impl Drop for MirrorMap {
    fn drop(&mut self) {
        // Under Miri every map is `heap`'s.
        #[cfg(miri)]
        if cfg!(miri) {
            let layout = std::alloc::Layout::from_size_align(self.res_len, sys::page_size()).expect("its layout");
            // SAFETY: allocated by `heap` with this layout; no reference into it outlives the map.
            unsafe { std::alloc::dealloc(self.base.as_ptr(), layout) };
            return;
        }
        if !self.mapped_here() {
            // A forked child's copy of a `dont_fork` map: the range was never mapped in this
            // process and may since hold unrelated memory, which munmap would destroy.
            return;
        }
        // SAFETY: we own the whole reservation; no reference into it outlives the map (the ring
        // types keep the map alive for as long as they hand out slices).
        // A failing munmap cannot be handled here; leaking the range is better than panicking.
        let _ = unsafe { sys::unmap(self.base, self.res_len) };
    }
}

impl fmt::Debug for MirrorMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorMap")
            .field("ptr", &self.as_ptr())
            .field("len", &self.len)
            .field("backend", &self.backend)
            .field("pages", &self.pages)
            .field("fd", &self.fd)
            .finish()
    }
}

/// The `PROT_NONE` reservation of `H + 2N` bytes (plus alignment slack for huge pages);
/// unmapped on drop unless handed over.
struct Reservation {
    base: NonNull<u8>,
    total: usize,
    /// Where the control page goes: `base`, or for huge pages the page below the first 2 MiB
    /// boundary past `base + H`.
    ctrl: NonNull<u8>,
}

impl Reservation {
    /// A reservation for a map of `len` bytes of `pages`: 2 MiB-aligned views for any huge
    /// pages.
    fn for_pages(len: usize, pages: Pages) -> io::Result<Reservation> {
        match pages {
            Pages::Small => Reservation::new(len),
            Pages::Huge | Pages::Transparent => Reservation::new_huge(len),
        }
    }

    fn new(len: usize) -> io::Result<Reservation> {
        let total = total_len(len).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        let base = Self::reserve(total, len)?;
        Ok(Reservation { base, total, ctrl: base })
    }

    fn reserve(total: usize, len: usize) -> io::Result<NonNull<u8>> {
        let base = step(Step::Reserve, || sys::reserve(total)).map_err(|e| {
            explain_map(e, || {
                format!(
                    "cannot reserve {total} bytes of address space for a {len}-byte mirror \
                     (RLIMIT_AS counts both views)"
                )
            })
        })?;
        #[cfg(test)]
        LAST_RESERVATION.with(|r| r.set(Some((base.as_ptr() as usize, total))));
        Ok(base)
    }

    /// `ctrl + off`, for `off <= H + 2N`.
    fn at(&self, off: usize) -> NonNull<u8> {
        debug_assert!(self.ctrl.as_ptr() as usize + off <= self.base.as_ptr() as usize + self.total);
        // SAFETY: off is within the reservation (or one past its end), so the pointer stays in
        // bounds of the same mapping and is non-null.
        unsafe { NonNull::new_unchecked(self.ctrl.as_ptr().add(off)) }
    }

    /// Gives back the alignment slack around `[ctrl, ctrl + H + 2N)` (two mapping entries and
    /// up to 2 MiB of address space per huge-page map), leaving a reservation of exactly that
    /// range. The slack is reserved `PROT_NONE` memory of ours; nothing else is mapped there.
    fn trim(&mut self, len: usize) {
        let used = sys::page_size() + 2 * len;
        let (base, ctrl) = (self.base.as_ptr() as usize, self.ctrl.as_ptr() as usize);
        let (before, after) = (ctrl - base, base + self.total - (ctrl + used));
        // SAFETY: [base, ctrl) is slack of our own reservation; nothing refers into it. If the
        // unmap fails, it stays reserved and goes with the rest on drop.
        if before > 0 && unsafe { sys::unmap(self.base, before) }.is_ok() {
            (self.base, self.total) = (self.ctrl, self.total - before);
        }
        // SAFETY: as above, for the slack past the views; ctrl + used is inside the reservation.
        if after > 0 && unsafe { sys::unmap(NonNull::new_unchecked((ctrl + used) as *mut u8), after) }.is_ok() {
            self.total -= after;
        }
        #[cfg(test)]
        LAST_RESERVATION.with(|r| r.set(Some((self.base.as_ptr() as usize, self.total))));
    }

    /// Hands the reservation, now holding a complete mirror of `len` bytes, to a `MirrorMap`.
    fn into_map(self, len: usize, pages: Pages, backend: Backend, fd: Option<OwnedFd>) -> MirrorMap {
        let map = MirrorMap {
            base: self.base,
            res_len: self.total,
            ctrl: self.ctrl,
            len,
            pages,
            backend,
            fd,
            dont_fork_owner: None,
        };
        std::mem::forget(self);
        map
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: construction failed; nothing refers into the range. One munmap removes the
        // reservation and every mapping placed inside it. Ignored on failure (see MirrorMap).
        let _ = unsafe { sys::unmap(self.base, self.total) };
    }
}

#[cfg(test)]
thread_local! {
    /// Test hook: the last reservation made on this thread, to check it is gone after a failure.
    pub(crate) static LAST_RESERVATION: std::cell::Cell<Option<(usize, usize)>> = const { std::cell::Cell::new(None) };
}

mod backend;
mod huge;
#[cfg(all(test, not(mirror_ring_loom)))]
mod tests;

pub use backend::Backend;
#[cfg(all(test, not(mirror_ring_loom)))]
use huge::free_huge_pages;
pub(crate) use huge::{round_len_huge, HUGE_PAGE};
