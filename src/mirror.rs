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
//! 4. Optionally prefault both views and mark the whole range `MADV_DONTFORK`.
//!
//! Any failure unmaps the whole reservation in one call (and closes the memfd); so does
//! `Drop`. The mremap forms are only ever applied to `MAP_SHARED` memory.
//!
//! # Which backend: the probe, its cache, and `Auto`'s hand-over
//!
//! Whether a backend works is decided by a one-page probe (built, then written through each
//! view and read through the other), run lazily once per process and cached per backend. The
//! environment can change after the probe: a library that installs a seccomp filter at
//! start-up, after something probed, may deny one form of `mremap` or `memfd_create`. So the
//! cache can be downgraded (never upgraded: a seccomp filter cannot be removed):
//!
//! - `Auto` tries the available backends in [`Backend::CONCRETE`] order. A backend-specific
//!   step (everything after the reservation) that fails with a *refusal* errno (`EINVAL`,
//!   `ENOSYS`, `EPERM`, `EOPNOTSUPP`: what an older kernel or a sandbox answers for a form it
//!   does not allow) hands over to the next backend. Any other error (`ENOMEM`, a failed
//!   reservation, ...) is returned as it is: a fallback must not hide it.
//! - Before a refused backend is marked unavailable, its one-page probe runs again. Only if
//!   the probe is refused too (or builds something that does not mirror) is the cache
//!   downgraded; if the probe still works, the refusal was specific to that request (a size a
//!   filter rejects, say) and the backend stays available for the next one.
//! - The next backend is *not* re-probed: its earlier probe proved that it mirrors on this
//!   kernel, and a seccomp filter can only make a call fail, never change what a call that
//!   runs does. A mapping call faked as successful without running (`SECCOMP_RET_ERRNO` with
//!   errno 0) returns an address other than the target, which `sys::check_fixed` rejects; a
//!   tracer that emulates calls (ptrace, `SECCOMP_RET_USER_NOTIF`) is trusted like a kernel.
//! - An explicitly requested backend does not hand over: it returns its own error, after the
//!   same confirmation may have downgraded the cache.
//! - When every backend is refused or unavailable, `Auto` fails with `Unsupported`, naming each
//!   backend and why, with the last OS error as `source()`.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{compiler_fence, AtomicU32, Ordering};

use crate::sys;

/// How the second view of a [`MirrorMap`] is made.
///
/// Kernel requirements: [`MirrorFlag`](Backend::MirrorFlag) Linux 5.13+,
/// [`Duplicate`](Backend::Duplicate) any Linux since 2.6, [`Memfd`](Backend::Memfd) 3.17+.
/// Emulators and sandboxes (qemu-user, gVisor, seccomp filters) may refuse any of them.
///
/// Which backends work is probed once per process and cached (see
/// [`is_available`](Backend::is_available)). [`Auto`](Backend::Auto) uses the first that works
/// and, if that one is refused at creation because the environment changed since the probe (a
/// seccomp filter installed later), hands over to the next one and remembers the refusal.
///
/// # Examples
///
/// ```
/// use mirror_ring::Backend;
///
/// // Auto is available whenever any backend works, and is what `MirrorMap::new` uses.
/// assert!(Backend::Auto.is_available());
/// let chosen = Backend::Auto.resolve().unwrap();
/// assert_ne!(chosen, Backend::Auto);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The best backend this process can use: [`MirrorFlag`](Backend::MirrorFlag) where the
    /// probe proves it mirrors, else [`Duplicate`](Backend::Duplicate), else
    /// [`Memfd`](Backend::Memfd).
    ///
    /// A backend that the probe approved but that is refused at creation (`EINVAL`, `ENOSYS`,
    /// `EPERM` or `EOPNOTSUPP` from one of its own steps: a sandbox installed after the probe)
    /// hands over to the next one, and is marked unavailable once a fresh probe confirms the
    /// refusal. So `Auto` never fails while one backend works; when none does, creation fails
    /// with `Unsupported`. Other errors (`ENOMEM`, ...) are returned as they are.
    #[default]
    Auto,
    /// `mremap` with flag value 4 (the `MREMAP_MIRROR` of the 2017 RFC; mainline's
    /// `MREMAP_DONTUNMAP`, which mirrors shared memory since Linux 5.13) on anonymous shared
    /// memory. No file descriptor.
    MirrorFlag,
    /// `mremap` with `old_len == 0`, the historical "duplicate a shared mapping" form (any
    /// Linux since 2.6, on shared memory only). No file descriptor.
    Duplicate,
    /// A sealed `memfd` (Linux 3.17+) mapped twice. The only backend with a file descriptor,
    /// so the only one that can be handed to an unrelated process.
    Memfd,
}

impl Backend {
    /// The concrete backends, in the order `Auto` prefers them.
    pub const CONCRETE: [Backend; 3] = [Backend::MirrorFlag, Backend::Duplicate, Backend::Memfd];

    /// Whether this backend works in this process. The answer comes from a one-page probe
    /// (written through each view, read through the other), run once per process per backend
    /// and cached. `Auto` is available when any backend is.
    ///
    /// The cached answer can turn from `true` to `false` (never back): when a creation is later
    /// refused with this backend (`EINVAL`, `ENOSYS`, `EPERM`, `EOPNOTSUPP`, as under a seccomp
    /// filter installed after the probe) and a fresh probe is refused too. A forked child
    /// inherits the answers its parent had.
    ///
    /// # Examples
    ///
    /// ```
    /// use mirror_ring::Backend;
    /// for b in Backend::CONCRETE {
    ///     println!("{b}: {}", b.is_available());
    /// }
    /// ```
    pub fn is_available(self) -> bool {
        match self {
            Backend::Auto => Backend::CONCRETE.iter().any(|b| b.is_available()),
            concrete => concrete.availability() == Availability::Works,
        }
    }

    /// The concrete backend this one stands for: itself, or for `Auto` the first available
    /// backend (the one `Auto` tries first; a creation may still hand over to a later one, see
    /// [`Backend::Auto`]).
    ///
    /// # Errors
    ///
    /// `Unsupported` when `Auto` finds no working backend.
    ///
    /// # Examples
    ///
    /// ```
    /// use mirror_ring::Backend;
    /// assert_eq!(Backend::Memfd.resolve()?, Backend::Memfd);
    /// assert!(Backend::CONCRETE.contains(&Backend::Auto.resolve()?));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn resolve(self) -> io::Result<Backend> {
        match self {
            Backend::Auto => Backend::CONCRETE.into_iter().find(|b| b.is_available()).ok_or_else(|| {
                io::Error::new(io::ErrorKind::Unsupported, "no mirroring backend works in this process")
            }),
            b => Ok(b),
        }
    }

    /// What this process knows about a concrete backend, probing it on first use.
    fn availability(self) -> Availability {
        debug_assert_ne!(self, Backend::Auto);
        let cell = &AVAILABILITY[self.index()];
        // Relaxed (here and below): the value only selects a backend; it publishes no memory.
        // Every map is built and checked by the thread that uses it.
        match Availability::from_raw(cell.load(Ordering::Relaxed)) {
            Availability::Unknown => {
                let found = probe(self).availability();
                // From Unknown only: a downgrade stored meanwhile by another thread is newer
                // news than this probe and wins. Two threads may both probe; both answers are
                // the same and each probe frees its own map.
                match cell.compare_exchange(0, found.to_raw(), Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => found,
                    Err(now) => Availability::from_raw(now),
                }
            }
            known => known,
        }
    }

    /// After a creation with this backend was refused with `errno` (a refusal errno at one of
    /// its own steps): probes again, and marks the backend unavailable if the probe is
    /// refused too or does not mirror. Returns whether it did. A probe that still works means
    /// the refusal was about that one request; a probe failing otherwise (`ENOMEM`) proves
    /// nothing; in both cases the cache keeps its answer.
    fn confirm_refusal(self, errno: i32) -> bool {
        let confirmed = match probe(self) {
            Probe::NoMirror => true,
            Probe::Failed(e) => is_refusal(&e),
            Probe::Mirrors => false,
        };
        if confirmed {
            AVAILABILITY[self.index()].store(Availability::Fails(Some(errno)).to_raw(), Ordering::Relaxed);
        }
        confirmed
    }

    /// Short lowercase name, as [`Display`](fmt::Display) prints it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::MirrorFlag => "mirror-flag",
            Backend::Duplicate => "duplicate",
            Backend::Memfd => "memfd",
        }
    }

    fn index(self) -> usize {
        match self {
            Backend::Auto | Backend::MirrorFlag => 0,
            Backend::Duplicate => 1,
            Backend::Memfd => 2,
        }
    }

    /// The value stored in a ring header (never 0, so a zeroed header is recognisably empty).
    pub(crate) fn to_raw(self) -> u32 {
        match self {
            Backend::Auto => 0,
            Backend::MirrorFlag => 1,
            Backend::Duplicate => 2,
            Backend::Memfd => 3,
        }
    }

    /// The inverse of [`to_raw`](Self::to_raw) for concrete backends.
    pub(crate) fn from_raw(v: u32) -> Option<Backend> {
        match v {
            1 => Some(Backend::MirrorFlag),
            2 => Some(Backend::Duplicate),
            3 => Some(Backend::Memfd),
            _ => None,
        }
    }
}

/// What this process knows about one concrete backend (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Availability {
    /// Not probed yet.
    Unknown,
    /// The probe built a one-page mirror and saw it mirror, both ways.
    Works,
    /// Does not work here: the probe failed, or a later creation and a fresh probe were refused.
    /// With the errno when there was one (`None`: it built but did not mirror, or failed
    /// without an errno).
    Fails(Option<i32>),
}

impl Availability {
    fn to_raw(self) -> u32 {
        match self {
            Availability::Unknown => 0,
            Availability::Works => 1,
            Availability::Fails(None) => 2,
            // errno values are small and positive; anything else is stored as "no errno".
            Availability::Fails(Some(e)) => u32::try_from(e).map_or(2, |e| e.saturating_add(3)),
        }
    }

    fn from_raw(v: u32) -> Availability {
        match v {
            0 => Availability::Unknown,
            1 => Availability::Works,
            2 => Availability::Fails(None),
            e => Availability::Fails(i32::try_from(e - 3).ok()),
        }
    }

    /// Why a backend known not to work is unavailable, for error messages.
    fn reason(self) -> String {
        match self {
            Availability::Fails(Some(e)) => format!("unavailable ({})", io::Error::from_raw_os_error(e)),
            Availability::Fails(None) => "unavailable (its probe did not build a working mirror)".to_owned(),
            Availability::Unknown | Availability::Works => "available".to_owned(),
        }
    }
}

/// Why an `Auto` creation passed over one backend.
#[derive(Clone, Copy, Debug)]
enum PassedOver {
    /// Known not to work before this creation started.
    Known(Availability),
    /// Refused at this creation with `errno`; `marked`: the re-probe confirmed it and the
    /// cache now says so.
    Refused { errno: i32, marked: bool },
}

/// The `Unsupported` error of an `Auto` creation that passed over every backend (in
/// `Backend::CONCRETE` order): each backend and why, with the last errno as `source()`.
fn no_backend_works(passed_over: &[Option<PassedOver>; 3]) -> io::Error {
    let mut why = Vec::new();
    let mut last_errno = None;
    for (backend, p) in Backend::CONCRETE.into_iter().zip(passed_over) {
        match *p {
            Some(PassedOver::Known(known)) => {
                if let Availability::Fails(Some(e)) = known {
                    last_errno = Some(e);
                }
                why.push(format!("{backend}: {}", known.reason()));
            }
            Some(PassedOver::Refused { errno, marked }) => {
                last_errno = Some(errno);
                let note = if marked { "marked unavailable" } else { "its probe still works" };
                why.push(format!("{backend}: refused at creation ({}; {note})", io::Error::from_raw_os_error(errno)));
            }
            None => why.push(format!("{backend}: not tried")),
        }
    }
    let msg = format!("no mirroring backend works in this process ({})", why.join("; "));
    match last_errno {
        Some(e) => io::Error::new(io::ErrorKind::Unsupported, Context { msg, source: io::Error::from_raw_os_error(e) }),
        None => io::Error::new(io::ErrorKind::Unsupported, msg),
    }
}

/// Per concrete backend (`Backend::index`): an `Availability` as `to_raw` encodes it.
static AVAILABILITY: [AtomicU32; 3] = [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)];

/// The errnos with which a kernel or a sandbox refuses one form of a call: an unknown flag or
/// form (`EINVAL`, as Linux 5.7-5.12 answers `mremap` flag 4 on shared memory), a missing call
/// (`ENOSYS`), a policy (`EPERM`, `EOPNOTSUPP`). These make `Auto` hand over.
fn is_refusal_errno(errno: i32) -> bool {
    matches!(errno, libc::EINVAL | libc::ENOSYS | libc::EPERM | libc::EOPNOTSUPP)
}

fn is_refusal(err: &io::Error) -> bool {
    err.raw_os_error().is_some_and(is_refusal_errno)
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The construction steps, named so that tests can make each one fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Reserve,
    MemfdCreate,
    Truncate,
    MapFirst,
    MapSecond,
    Seal,
    Prefault,
    DontFork,
}

#[cfg(test)]
thread_local! {
    /// Test hook: make `Step` fail with this errno on this thread.
    pub(crate) static FAIL_AT: std::cell::Cell<Option<(Step, i32)>> = const { std::cell::Cell::new(None) };
}

/// Runs before every construction step; in tests it can inject a failure.
#[inline(always)]
fn checkpoint(_step: Step) -> io::Result<()> {
    #[cfg(test)]
    if let Some((s, errno)) = FAIL_AT.with(|f| f.get()) {
        if s == _step {
            return Err(io::Error::from_raw_os_error(errno));
        }
    }
    Ok(())
}

/// An error that adds an explanation to an OS error, which stays reachable as `source()`.
#[derive(Debug)]
pub(crate) struct Context {
    msg: String,
    source: io::Error,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.msg, self.source)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
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
}

impl MirrorOptions {
    /// Default options: `Backend::Auto`, no prefault, inherited by forked children.
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
        let len = round_len(len)?;
        let map = match self.backend {
            Backend::Auto => MirrorMap::build_auto(len)?,
            backend => MirrorMap::build_explicit(len, backend)?,
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
    /// Start of the reservation (the control page).
    base: NonNull<u8>,
    /// `N`: the length of one view.
    len: usize,
    backend: Backend,
    /// The memfd, for `Backend::Memfd`.
    fd: Option<OwnedFd>,
    /// For a `dont_fork` map: the process that made it. A forked child inherits this struct
    /// but not the mapping (`MADV_DONTFORK`), so there the range is someone else's.
    dont_fork_owner: Option<libc::pid_t>,
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
    /// let map = mirror_ring::MirrorMap::new(10_000)?;
    /// assert_eq!(map.len(), 16384);
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
        // SAFETY: base + H is inside the reservation, which is H + 2N bytes long.
        unsafe { self.base.as_ptr().add(sys::page_size()) }
    }

    /// The backend actually used (never `Auto`).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The memfd behind a [`Backend::Memfd`] map (`None` for the fd-less backends). It holds
    /// the control page and the data: its size is one page plus [`len`](Self::len).
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    /// The control page (one page, shared like the data) at the start of the reservation.
    pub(crate) fn control_ptr(&self) -> NonNull<u8> {
        self.base
    }

    /// `Auto`: each available backend in `Backend::CONCRETE` order, handing over on a refusal
    /// (see the module docs). `len` is already rounded. Nothing is formatted or allocated for
    /// the backends passed over unless every one fails.
    fn build_auto(len: usize) -> io::Result<MirrorMap> {
        let mut passed_over = [None; 3];
        for (slot, backend) in passed_over.iter_mut().zip(Backend::CONCRETE) {
            let known = backend.availability();
            if known != Availability::Works {
                *slot = Some(PassedOver::Known(known));
                continue;
            }
            // A failed reservation is nobody's refusal (it is the same for every backend):
            // returned as is.
            let res = Reservation::new(len)?;
            match MirrorMap::build_in(res, len, backend) {
                Ok(map) => return Ok(map),
                Err(e) => {
                    let Some(errno) = e.raw_os_error().filter(|&n| is_refusal_errno(n)) else {
                        return Err(e);
                    };
                    let marked = backend.confirm_refusal(errno);
                    *slot = Some(PassedOver::Refused { errno, marked });
                }
            }
        }
        Err(no_backend_works(&passed_over))
    }

    /// One explicitly requested backend, without hand-over. `len` is already rounded.
    fn build_explicit(len: usize, backend: Backend) -> io::Result<MirrorMap> {
        let known = backend.availability();
        if known != Availability::Works {
            return Err(match known {
                Availability::Fails(Some(e)) => io::Error::new(
                    io::ErrorKind::Unsupported,
                    Context {
                        msg: format!(
                            "the {backend} backend is refused in this process, by the kernel or a sandbox \
                             (see Backend for kernel requirements)"
                        ),
                        source: io::Error::from_raw_os_error(e),
                    },
                ),
                _ => io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "the {backend} backend does not work in this process: its probe did not build a \
                         working mirror (see Backend for kernel requirements)"
                    ),
                ),
            });
        }
        MirrorMap::build_in(Reservation::new(len)?, len, backend).inspect_err(|e| {
            if let Some(errno) = e.raw_os_error().filter(|&n| is_refusal_errno(n)) {
                backend.confirm_refusal(errno);
            }
        })
    }

    /// Builds the mirror over a fresh shared object, in a fresh reservation (the probe's way).
    /// `len` is already rounded.
    fn build(len: usize, backend: Backend) -> io::Result<MirrorMap> {
        MirrorMap::build_in(Reservation::new(len)?, len, backend)
    }

    /// Builds the mirror inside `res` (made for `len`, already rounded). Every error here comes
    /// from a step of `backend` itself; on failure `res` drops and unmaps everything.
    fn build_in(res: Reservation, len: usize, backend: Backend) -> io::Result<MirrorMap> {
        let h = sys::page_size();
        let fd = match backend {
            Backend::MirrorFlag | Backend::Duplicate => {
                step(Step::MapFirst, || {
                    // SAFETY: [base, base+H+N) is inside our reservation.
                    unsafe { sys::map_shared_anon_fixed(res.base, h + len) }
                })
                .map_err(|e| {
                    explain_enomem(e, || {
                        format!(
                            "cannot map {} bytes of shared memory (overcommit limit, RLIMIT_AS or vm.max_map_count)",
                            h + len
                        )
                    })
                })?;
                let (old_len, flag) = if backend == Backend::MirrorFlag { (len, sys::MREMAP_MIRROR) } else { (0, 0) };
                step(Step::MapSecond, || {
                    // SAFETY: source and target are inside our reservation; the source is the
                    // MAP_SHARED mapping made just above, never private memory.
                    unsafe { sys::mremap_fixed(res.at(h), old_len, len, flag, res.at(h + len)) }
                })
                .map_err(|e| mirror_enomem(e, len))?;
                None
            }
            Backend::Memfd => {
                let fd = step(Step::MemfdCreate, || sys::memfd_create(c"mirror-ring"))?;
                step(Step::Truncate, || sys::ftruncate(fd.as_fd(), h + len))?;
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
        Ok(MirrorMap { base: res.into_raw(), len, backend, fd, dont_fork_owner: None })
    }

    /// Maps an existing memfd ring file (`H + len` bytes, already validated by the caller:
    /// sealed against shrinking and growing, and of exactly this size).
    pub(crate) fn from_ring_file(fd: OwnedFd, len: usize) -> io::Result<MirrorMap> {
        let res = Reservation::new(len)?;
        map_ring_file(&res, fd.as_fd(), len)?;
        Ok(MirrorMap { base: res.into_raw(), len, backend: Backend::Memfd, fd: Some(fd), dont_fork_owner: None })
    }

    /// Whether the mapping exists in this process: false only in a forked child of the process
    /// that made a `dont_fork` map (the child inherited the struct, not the memory).
    pub(crate) fn mapped_here(&self) -> bool {
        self.dont_fork_owner.map_or(true, |pid| pid == sys::getpid())
    }

    /// Applies the optional steps (prefault, DONTFORK); on failure `self` drops and unmaps.
    fn finish(mut self, opts: &MirrorOptions) -> io::Result<MirrorMap> {
        let total = self.total_len();
        if opts.prefault {
            // SAFETY: the whole range is mapped read-write by us.
            match step(Step::Prefault, || unsafe { sys::madvise_populate_write(self.base, total) }) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.touch_all(),
                Err(e) => {
                    return Err(explain_enomem(e, || format!("cannot prefault a {}-byte mirror", self.len)));
                }
            }
        }
        if opts.dont_fork {
            // SAFETY: advice over the whole range we own (never one view alone).
            step(Step::DontFork, || unsafe { sys::madvise_dontfork(self.base, total) })?;
            self.dont_fork_owner = Some(sys::getpid());
        }
        Ok(self)
    }

    /// Prefaults by writing a zero into every page of both views (fresh memory is zero).
    fn touch_all(&self) {
        let page = sys::page_size();
        for off in (0..self.total_len()).step_by(page) {
            // SAFETY: off < total, inside the mapping; the map is freshly created, so no one
            // else can be using these bytes, and they already hold zero.
            unsafe { self.base.as_ptr().add(off).write_volatile(0) };
        }
    }

    fn total_len(&self) -> usize {
        sys::page_size() + 2 * self.len
    }
}

/// Runs one construction step (which a test may make fail instead).
fn step<T>(s: Step, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    checkpoint(s)?;
    f()
}

/// Maps a memfd of `H + len` bytes into `res`: all of it at the base, then the data part
/// (offset `H`) again right after, as view B.
fn map_ring_file(res: &Reservation, fd: BorrowedFd<'_>, len: usize) -> io::Result<()> {
    let h = sys::page_size();
    step(Step::MapFirst, || {
        // SAFETY: [base, base+H+N) is inside our reservation; the file is H + N bytes long.
        unsafe { sys::map_fd_fixed(res.base, h + len, fd, 0) }
    })
    .map_err(|e| {
        explain_enomem(e, || format!("cannot map a {}-byte memfd (RLIMIT_AS or vm.max_map_count)", h + len))
    })?;
    step(Step::MapSecond, || {
        // SAFETY: [base+H+N, base+H+2N) is inside our reservation; [H, H+N) is inside the file.
        unsafe { sys::map_fd_fixed(res.at(h + len), len, fd, h) }
    })
    .map_err(|e| mirror_enomem(e, len))
}

fn mirror_enomem(e: io::Error, len: usize) -> io::Error {
    explain_enomem(e, || {
        format!(
            "cannot create the second view of a {len}-byte mirror: RLIMIT_AS counts both views \
             ({} bytes) and each ring uses 2-3 of the process's vm.max_map_count mappings (default 65530)",
            2 * len
        )
    })
}

impl Drop for MirrorMap {
    fn drop(&mut self) {
        if !self.mapped_here() {
            // A forked child's copy of a `dont_fork` map: the range was never mapped in this
            // process and may since hold unrelated memory, which munmap would destroy.
            return;
        }
        // SAFETY: we own the whole reservation; no reference into it outlives the map (the ring
        // types keep the map alive for as long as they hand out slices).
        // A failing munmap cannot be handled here; leaking the range is better than panicking.
        let _ = unsafe { sys::unmap(self.base, self.total_len()) };
    }
}

impl fmt::Debug for MirrorMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorMap")
            .field("ptr", &self.as_ptr())
            .field("len", &self.len)
            .field("backend", &self.backend)
            .field("fd", &self.fd)
            .finish()
    }
}

/// The `PROT_NONE` reservation of `H + 2N` bytes; unmapped on drop unless handed over.
struct Reservation {
    base: NonNull<u8>,
    total: usize,
}

impl Reservation {
    fn new(len: usize) -> io::Result<Reservation> {
        let total = total_len(len).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        let base = step(Step::Reserve, || sys::reserve(total)).map_err(|e| {
            explain_enomem(e, || {
                format!(
                    "cannot reserve {total} bytes of address space for a {len}-byte mirror \
                     (RLIMIT_AS counts both views)"
                )
            })
        })?;
        #[cfg(test)]
        LAST_RESERVATION.with(|r| r.set(Some((base.as_ptr() as usize, total))));
        Ok(Reservation { base, total })
    }

    /// `base + off`, for `off <= total`.
    fn at(&self, off: usize) -> NonNull<u8> {
        debug_assert!(off <= self.total);
        // SAFETY: off is within the reservation (or one past its end), so the pointer stays in
        // bounds of the same mapping and is non-null.
        unsafe { NonNull::new_unchecked(self.base.as_ptr().add(off)) }
    }

    fn into_raw(self) -> NonNull<u8> {
        let base = self.base;
        std::mem::forget(self);
        base
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

/// Builds a one-page mirror with `backend` and checks, both ways, that a byte written through
/// one view is read back through the other.
fn probe(backend: Backend) -> Probe {
    match MirrorMap::build(sys::page_size(), backend) {
        Ok(map) if verify_mirror(&map) => Probe::Mirrors,
        Ok(_) => Probe::NoMirror,
        Err(e) => Probe::Failed(e),
    }
}

/// What a probe found.
#[derive(Debug)]
enum Probe {
    Mirrors,
    /// It built, but the views are not the same memory (value 4 on a kernel where it moves).
    NoMirror,
    Failed(io::Error),
}

impl Probe {
    fn availability(&self) -> Availability {
        match self {
            Probe::Mirrors => Availability::Works,
            Probe::NoMirror => Availability::Fails(None),
            // The errno, also from under an explanation (an `OutOfMemory` keeps it as source).
            Probe::Failed(e) => Availability::Fails(e.raw_os_error().or_else(|| {
                let source = std::error::Error::source(e)?;
                source.downcast_ref::<io::Error>()?.raw_os_error()
            })),
        }
    }
}

/// Writes distinct values through each view at the first, a middle and the last byte and reads
/// them back through the other view.
pub(crate) fn verify_mirror(map: &MirrorMap) -> bool {
    let n = map.len();
    let a = map.as_ptr();
    let mut ok = true;
    for (i, &off) in [0, n / 2, n - 1].iter().enumerate() {
        let v = 0xA5u8 ^ (i as u8) ^ (n as u8);
        // SAFETY: off < n and the map is valid for 2n bytes; it is private to this function.
        // Volatile accesses plus a compiler fence keep the compiler from assuming the two views
        // are different memory.
        unsafe {
            a.add(off).write_volatile(v);
            compiler_fence(Ordering::SeqCst);
            ok &= a.add(n + off).read_volatile() == v;
            a.add(n + off).write_volatile(!v);
            compiler_fence(Ordering::SeqCst);
            ok &= a.add(off).read_volatile() == !v;
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{in_child, mapped_at, open_fds, our_mappings};

    #[test]
    fn rounding() {
        let page = sys::page_size();
        assert_eq!(round_len(1).unwrap(), page);
        assert_eq!(round_len(page).unwrap(), page);
        assert_eq!(round_len(page + 1).unwrap(), 2 * page);
        assert_eq!(round_len(3 << 20).unwrap(), 4 << 20);
        assert_eq!(round_len(0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(round_len(usize::MAX).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(round_len(usize::MAX / 2).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        // 2^62: rounds fine, but twice that does not fit isize.
        assert_eq!(round_len(1 << 62).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    /// Every construction step, made to fail, leaves no mapping and no descriptor behind, and
    /// the error keeps its errno.
    #[test]
    fn failure_at_every_step_leaks_nothing() {
        let cases: &[(Backend, &[Step])] = &[
            (Backend::MirrorFlag, &[Step::Reserve, Step::MapFirst, Step::MapSecond, Step::Prefault, Step::DontFork]),
            (Backend::Duplicate, &[Step::Reserve, Step::MapFirst, Step::MapSecond, Step::Prefault, Step::DontFork]),
            (
                Backend::Memfd,
                &[
                    Step::Reserve,
                    Step::MemfdCreate,
                    Step::Truncate,
                    Step::MapFirst,
                    Step::MapSecond,
                    Step::Seal,
                    Step::Prefault,
                    Step::DontFork,
                ],
            ),
        ];
        let mut checked = 0;
        for &(backend, steps) in cases {
            if !backend.is_available() {
                continue;
            }
            for &step in steps {
                let status = in_child(|| {
                    let maps_before = our_mappings();
                    let fds_before = open_fds();
                    FAIL_AT.with(|f| f.set(Some((step, libc::EIO))));
                    LAST_RESERVATION.with(|r| r.set(None));
                    let r = MirrorOptions::new().backend(backend).prefault(true).dont_fork(true).map(1 << 16);
                    FAIL_AT.with(|f| f.set(None));
                    let Err(e) = r else { return 10 };
                    if e.raw_os_error() != Some(libc::EIO) {
                        return 11;
                    }
                    if let Some((base, len)) = LAST_RESERVATION.with(|r| r.get()) {
                        if mapped_at(base, len) {
                            return 12;
                        }
                    }
                    if our_mappings() != maps_before {
                        return 13;
                    }
                    if open_fds() != fds_before {
                        return 14;
                    }
                    0
                });
                assert_eq!(status, 0, "{backend} failing at {step:?} (10: no error, 11: errno lost, 12-14: leak)");
                checked += 1;
            }
        }
        assert!(checked >= 8, "too few backends available to test ({checked} cases)");
    }

    /// ENOMEM from the mirror step becomes an explained `OutOfMemory` with the errno as source.
    #[test]
    fn enomem_at_mirror_step_is_explained() {
        let backend = Backend::Auto.resolve().unwrap();
        FAIL_AT.with(|f| f.set(Some((Step::MapSecond, libc::ENOMEM))));
        let e = MirrorMap::with_backend(1 << 16, backend).unwrap_err();
        FAIL_AT.with(|f| f.set(None));
        assert_eq!(e.kind(), io::ErrorKind::OutOfMemory);
        let msg = e.to_string();
        assert!(msg.contains("RLIMIT_AS") && msg.contains("vm.max_map_count"), "{msg}");
        let src = std::error::Error::source(&e).expect("errno kept as source");
        let os = src.downcast_ref::<io::Error>().expect("source is the OS error");
        assert_eq!(os.raw_os_error(), Some(libc::ENOMEM));
    }

    /// `Auto` with every backend refused at a step all three share (the first map, the second
    /// view): each attempt is handed over, nothing leaks, the result is `Unsupported` with the
    /// errno as `source()`, and the cache (probes run in the parent, before the fork) is
    /// downgraded. A refused reservation and an ENOMEM are not handed over and downgrade nothing.
    #[test]
    fn auto_hands_over_only_refusals_and_leaks_nothing() {
        let all = Backend::CONCRETE.into_iter().filter(|b| b.is_available()).count();
        assert!(all > 0);
        for (step, errno, handed_over) in [
            (Step::MapFirst, libc::EPERM, true),
            (Step::MapSecond, libc::EINVAL, true),
            (Step::MapSecond, libc::ENOSYS, true),
            (Step::MapSecond, libc::ENOMEM, false),
            (Step::Reserve, libc::EINVAL, false),
        ] {
            let status = in_child(|| {
                let maps_before = our_mappings();
                let fds_before = open_fds();
                FAIL_AT.with(|f| f.set(Some((step, errno))));
                let r = MirrorOptions::new().map(1 << 16);
                FAIL_AT.with(|f| f.set(None));
                let Err(e) = r else { return 10 };
                let os = e.raw_os_error().or_else(|| {
                    let src = std::error::Error::source(&e)?;
                    src.downcast_ref::<io::Error>()?.raw_os_error()
                });
                if os != Some(errno) {
                    return 11;
                }
                let unsupported = e.kind() == io::ErrorKind::Unsupported;
                if unsupported != handed_over {
                    return 12;
                }
                let left = Backend::CONCRETE.into_iter().filter(|b| b.is_available()).count();
                if left != if handed_over { 0 } else { all } {
                    return 13;
                }
                if our_mappings() != maps_before || open_fds() != fds_before {
                    return 14;
                }
                0
            });
            assert_eq!(
                status, 0,
                "{step:?} failing with errno {errno} (10: no error, 11: errno lost, 12: wrong hand-over, \
                 13: wrong cache, 14: leak)"
            );
        }
    }

    #[test]
    fn availability_round_trips_through_its_raw_value() {
        for a in [
            Availability::Unknown,
            Availability::Works,
            Availability::Fails(None),
            Availability::Fails(Some(libc::EPERM)),
            Availability::Fails(Some(libc::EINVAL)),
            Availability::Fails(Some(4095)),
        ] {
            assert_eq!(Availability::from_raw(a.to_raw()), a);
        }
        assert_eq!(Availability::Fails(Some(-1)).to_raw(), Availability::Fails(None).to_raw());
    }

    #[test]
    fn probe_agrees_with_construction() {
        for b in Backend::CONCRETE {
            let built = MirrorMap::with_backend(4096, b);
            assert_eq!(built.is_ok(), b.is_available(), "{b}: {:?}", built.err());
            if let Ok(m) = built {
                assert!(verify_mirror(&m));
                assert_eq!(m.backend(), b);
            }
        }
    }
}
