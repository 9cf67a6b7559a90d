//! Which backend: the probe, its cache, and `Auto`'s hand-over.
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
//!   errno 0) returns an address other than the target, which `sys::check_fixed` rejects as a
//!   refusal (`EOPNOTSUPP`), so `Auto` hands over; a tracer that emulates calls (ptrace,
//!   `SECCOMP_RET_USER_NOTIF`) is trusted like a kernel.
//! - An explicitly requested backend does not hand over: it returns its own error, after the
//!   same confirmation may have downgraded the cache.
//! - When every backend is refused or unavailable, `Auto` fails with `Unsupported`, naming each
//!   backend and why, with the last OS error as `source()`.
//! - A probe that fails for want of a resource (`ENOMEM`: `RLIMIT_AS`, the map count, a
//!   cgroup; `EMFILE`, `ENFILE`, `EAGAIN`; `EFBIG`: `RLIMIT_FSIZE` below the memfd probe's two
//!   pages) says nothing about the backend: its error is
//!   returned as it is and nothing is cached, so the next creation probes again. (Cached, such
//!   a shortage at a process's first ring would disable the backend for the process's life.)

use std::fmt;
use std::io;
use std::sync::atomic::{compiler_fence, AtomicU32, Ordering};

use super::{Context, MirrorMap, Pages, Reservation};
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
    /// inherits the answers its parent had. While the probe cannot run for want of memory or
    /// descriptors this says `false`, and remembers nothing: the next call probes again.
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
            concrete => matches!(concrete.availability(), Ok(Availability::Works)),
        }
    }

    /// The concrete backend this one stands for: itself, or for `Auto` the first available
    /// backend (the one `Auto` tries first; a creation may still hand over to a later one, see
    /// [`Backend::Auto`]).
    ///
    /// # Errors
    ///
    /// `Unsupported` when `Auto` finds no working backend; the probe's own error when it could
    /// not run for want of memory or descriptors (`OutOfMemory`, `EMFILE`, ...).
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
            Backend::Auto => {
                for b in Backend::CONCRETE {
                    if b.availability()? == Availability::Works {
                        return Ok(b);
                    }
                }
                Err(io::Error::new(io::ErrorKind::Unsupported, "no mirroring backend works in this process"))
            }
            b => Ok(b),
        }
    }

    /// What this process knows about a concrete backend, probing it on first use. `Err`: the
    /// probe failed for want of a resource, which says nothing about the backend; nothing is
    /// cached and the caller returns the error (see the module docs).
    fn availability(self) -> io::Result<Availability> {
        debug_assert_ne!(self, Backend::Auto);
        let cell = &AVAILABILITY[self.index()];
        // Relaxed (here and below): the value only selects a backend; it publishes no memory.
        // Every map is built and checked by the thread that uses it.
        Ok(match Availability::from_raw(cell.load(Ordering::Relaxed)) {
            Availability::Unknown => {
                let found = match probe(self) {
                    Probe::Failed(e) if errno_of(&e).is_some_and(is_shortage_errno) => return Err(e),
                    probe => probe.availability(),
                };
                // From Unknown only: a downgrade stored meanwhile by another thread is newer
                // news than this probe and wins. Two threads may both probe; both answers are
                // the same and each probe frees its own map.
                match cell.compare_exchange(0, found.to_raw(), Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => found,
                    Err(now) => Availability::from_raw(now),
                }
            }
            known => known,
        })
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

// A creation step that fails with a refusal errno (`sys::is_refusal_errno`; `EINVAL` is how
// Linux 5.7-5.12 answers `mremap` flag 4 on shared memory) makes `Auto` hand over.
use crate::sys::is_refusal_errno;

/// The errnos of a shortage of memory, address space, descriptors or file size
/// (`RLIMIT_FSIZE`, which `size_memfd` checks first and reports as `EFBIG`): a probe that fails
/// with one of these has learnt nothing about its backend (nor a read of a huge-page knob
/// about the kernel: `huge::check_shmem_thp`).
pub(super) fn is_shortage_errno(errno: i32) -> bool {
    matches!(errno, libc::ENOMEM | libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::EFBIG)
}

/// The errno of an error, also from under an explanation (an `OutOfMemory` keeps it as
/// `source()`).
fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| std::error::Error::source(e)?.downcast_ref::<io::Error>()?.raw_os_error())
}

fn is_refusal(err: &io::Error) -> bool {
    err.raw_os_error().is_some_and(is_refusal_errno)
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
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
            Probe::Failed(e) => Availability::Fails(errno_of(e)),
        }
    }
}

/// Writes distinct values through each view at the first, a middle and the last byte and reads
/// them back through the other view.
pub(super) fn verify_mirror(map: &MirrorMap) -> bool {
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

impl MirrorMap {
    /// `Auto`: each available backend in `Backend::CONCRETE` order, handing over on a refusal
    /// (see the module docs). `len` is already rounded. Nothing is formatted or allocated for
    /// the backends passed over unless every one fails.
    pub(super) fn build_auto(len: usize, pages: Pages) -> io::Result<MirrorMap> {
        let mut passed_over = [None; 3];
        for (slot, backend) in passed_over.iter_mut().zip(Backend::CONCRETE) {
            // A probe that could not run for want of a resource: returned as is, like a failed
            // reservation below (the next backend would meet the same shortage).
            let known = backend.availability()?;
            if known != Availability::Works {
                *slot = Some(PassedOver::Known(known));
                continue;
            }
            // A failed reservation is nobody's refusal (it is the same for every backend):
            // returned as is.
            let res = Reservation::for_pages(len, pages)?;
            match MirrorMap::build_in(res, len, backend, pages) {
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
    pub(super) fn build_explicit(len: usize, backend: Backend, pages: Pages) -> io::Result<MirrorMap> {
        let known = backend.availability()?;
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
        MirrorMap::build_in(Reservation::for_pages(len, pages)?, len, backend, pages).inspect_err(|e| {
            if let Some(errno) = e.raw_os_error().filter(|&n| is_refusal_errno(n)) {
                backend.confirm_refusal(errno);
            }
        })
    }
}

#[cfg(all(test, not(mirror_ring_loom)))]
mod tests {
    use super::*;

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

    /// A shortage at a process's first probe (no address space, no descriptor, a file size
    /// limit) is returned as
    /// it is, with its errno, and not cached: once the shortage is over the backends work.
    /// Cached, it used to make every later creation in the process fail with `Unsupported`.
    /// In a child, whose cache is reset as in a fresh process.
    #[test]
    fn a_shortage_at_the_first_probe_is_returned_and_forgotten() {
        use crate::test_util::{in_child, set_soft_limit, vm_size};
        let status = in_child(|| {
            let fresh = || AVAILABILITY.iter().for_each(|c| c.store(0, Ordering::Relaxed));
            let cached = |b: Backend| AVAILABILITY[b.index()].load(Ordering::Relaxed) != 0;
            fresh();
            let Some(vm_size) = vm_size() else { return 2 };
            // Room for one more page of address space: not for the probe's reservation.
            let old = set_soft_limit(libc::RLIMIT_AS, vm_size + sys::page_size()).unwrap();
            let first = MirrorMap::new(4096);
            set_soft_limit(libc::RLIMIT_AS, old as usize).unwrap();
            match first {
                Err(e) if e.kind() == io::ErrorKind::OutOfMemory && errno_of(&e) == Some(libc::ENOMEM) => {}
                _ => return 3,
            }
            if Backend::CONCRETE.into_iter().any(cached) {
                return 4;
            }
            if MirrorMap::new(4096).is_err() || !Backend::Auto.is_available() {
                return 5;
            }
            // No descriptor left for the memfd probe.
            fresh();
            // SAFETY: F_DUPFD gives the lowest free descriptor number, closed at once.
            let lowest = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 0) };
            // SAFETY: as above, our own fresh descriptor.
            if lowest < 0 || unsafe { libc::close(lowest) } != 0 {
                return 2;
            }
            let old = set_soft_limit(libc::RLIMIT_NOFILE, lowest as usize).unwrap();
            let first = MirrorMap::with_backend(4096, Backend::Memfd);
            set_soft_limit(libc::RLIMIT_NOFILE, old as usize).unwrap();
            match first {
                Err(e) if errno_of(&e) == Some(libc::EMFILE) => {}
                _ => return 6,
            }
            if cached(Backend::Memfd) {
                return 7;
            }
            match MirrorMap::with_backend(4096, Backend::Memfd) {
                Ok(_) if Backend::Memfd.is_available() => {}
                _ => return 8,
            }
            // Files of one page at most: not the memfd probe's two (RLIMIT_FSIZE, which the
            // crate checks itself, since the kernel's answer past it is SIGXFSZ).
            fresh();
            let old = set_soft_limit(libc::RLIMIT_FSIZE, sys::page_size()).unwrap();
            let first = MirrorMap::with_backend(4096, Backend::Memfd);
            set_soft_limit(libc::RLIMIT_FSIZE, old as usize).unwrap();
            match first {
                Err(e) if errno_of(&e) == Some(libc::EFBIG) && e.to_string().contains("RLIMIT_FSIZE") => {}
                _ => return 9,
            }
            if cached(Backend::Memfd) {
                return 10;
            }
            match MirrorMap::with_backend(4096, Backend::Memfd) {
                Ok(_) if Backend::Memfd.is_available() => 0,
                _ => 11,
            }
        });
        assert_eq!(
            status, 0,
            "3 = RLIMIT_AS not OutOfMemory with ENOMEM, 4 = the shortage was cached, 5 = no backend afterwards, \
             6 = EMFILE lost, 7 = EMFILE cached, 8 = memfd unavailable afterwards, 9 = EFBIG or its \
             explanation lost, 10 = EFBIG cached, 11 = memfd unavailable after RLIMIT_FSIZE"
        );
    }
}
