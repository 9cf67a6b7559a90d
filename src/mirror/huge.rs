//! Huge-page mirrors (see the parent module's docs, "Huge pages"): a hugetlb memfd mapped
//! twice, or for the explicit mremap backends an attempt that the kernel refuses. Kept apart
//! from the 4 KiB path, which is what almost every ring takes.

use std::io;
use std::os::fd::AsFd;
use std::ptr::NonNull;

use super::backend::is_shortage_errno;
use super::{check_and_clear, explain_map, step, total_len, Backend, Context, MirrorMap, Pages, Reservation, Step};
use crate::sys;

/// The size of the huge pages a huge-page map is made of: 2 MiB.
pub(crate) const HUGE_PAGE: usize = 2 << 20;

/// Free 2 MiB huge pages right now, if the kernel says.
pub(crate) fn free_huge_pages() -> Option<u64> {
    std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").ok()?.trim().parse().ok()
}

/// An error of a huge-page construction step, explained: the message names huge pages and
/// what to do, the kind is `OutOfMemory` for ENOMEM (else the errno's own kind), and the OS
/// error stays reachable as `source()`. Errors without an errno (injected or made up by the
/// crate) pass through.
fn explain_huge(err: io::Error, len: usize, what: &str) -> io::Error {
    let Some(errno) = err.raw_os_error() else { return err };
    let msg = if errno == libc::ENOMEM {
        let free = free_huge_pages().map_or_else(|| "unknown".to_owned(), |n| n.to_string());
        format!(
            "{what}: not enough free 2 MiB huge pages for a {len}-byte huge-page mirror, which needs {} \
             (free now: {free}; reserve them with /proc/sys/vm/nr_hugepages; RLIMIT_AS and vm.max_map_count \
             can also say ENOMEM)",
            len / HUGE_PAGE
        )
    } else if matches!(errno, libc::EINVAL | libc::ENOENT | libc::ENODEV | libc::ENOSYS | libc::EOPNOTSUPP) {
        // What a kernel without hugetlbfs, or without its 2 MiB size, answers.
        format!("{what} (huge pages: the kernel needs hugetlbfs with 2 MiB pages)")
    } else {
        // Anything else (out of descriptors, a limit, a signal) is not about hugetlbfs.
        format!("{what} for a ring in 2 MiB huge pages")
    };
    let kind = if errno == libc::ENOMEM { io::ErrorKind::OutOfMemory } else { err.kind() };
    io::Error::new(kind, Context { msg, source: err })
}

/// Where the kernel says whether shared memory may get transparent huge pages.
pub(crate) const SHMEM_THP_KNOB: &str = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";

/// The selected word of a sysfs choice such as `always within_size [advise] never deny force`.
fn selected(knob: &str) -> Option<&str> {
    let start = knob.find('[')? + 1;
    let len = knob[start..].find(']')?;
    Some(&knob[start..start + len])
}

/// Whether a map of `backend` may ask for transparent huge pages here: `Ok` when
/// [`SHMEM_THP_KNOB`] lets shared memory have them; `Unsupported`, naming the knob or the
/// backend, when it does not, when the kernel has no such knob, or for an explicit `Memfd`
/// (see [`MirrorOptions::transparent_huge_pages`](super::MirrorOptions::transparent_huge_pages)).
pub(crate) fn check_shmem_thp(backend: Backend) -> io::Result<()> {
    if backend == Backend::Memfd {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "transparent huge pages need the data at the start of its shared object, and a memfd to hand \
             over keeps the ring's header there: ask for them with Backend::Auto, MirrorFlag or Duplicate",
        ));
    }
    let text = std::fs::read_to_string(SHMEM_THP_KNOB).map_err(|e| {
        if e.raw_os_error().is_some_and(is_shortage_errno) {
            return knob_unread(SHMEM_THP_KNOB, e);
        }
        Context::explain_as(
            io::ErrorKind::Unsupported,
            e,
            format!("cannot read {SHMEM_THP_KNOB}: no transparent huge pages for shared memory here"),
        )
    })?;
    // Absent (a kernel before 6.11, or no 2 MiB size): the top-level knob decides.
    let per_size = match std::fs::read_to_string(SHMEM_THP_KNOB_2M) {
        Ok(text) => Some(text),
        Err(e) if e.raw_os_error().is_some_and(is_shortage_errno) => return Err(knob_unread(SHMEM_THP_KNOB_2M, e)),
        Err(_) => None,
    };
    thp_modes_allow(&text, per_size.as_deref())
}

/// A knob that could not be read for a shortage: the OS error's own kind (not `Unsupported`:
/// a caller may try again once the shortage is over), the error as `source()`.
fn knob_unread(knob: &str, e: io::Error) -> io::Error {
    Context::explain(e, format!("cannot read {knob} to see whether shared memory may have transparent huge pages"))
}

/// The per-size knob for 2 MiB pages of shared memory (Linux 6.11+, mTHP for shmem): what
/// decides, unless it says `inherit` (the top-level knob's value then applies).
pub(crate) const SHMEM_THP_KNOB_2M: &str = "/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/shmem_enabled";

/// [`check_shmem_thp`]'s verdict on both knobs' texts: a top-level `deny` refuses whatever the
/// 2 MiB knob says; a 2 MiB knob other than `inherit` decides; else the top-level knob does.
pub(super) fn thp_modes_allow(top: &str, per_size: Option<&str>) -> io::Result<()> {
    match (selected(top), per_size.and_then(selected)) {
        (Some("deny"), _) | (_, None | Some("inherit")) => thp_mode_allows(top),
        (_, Some("always" | "within_size" | "advise")) => Ok(()),
        (_, Some(mode)) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "transparent huge pages of 2 MiB for shared memory are off here: {SHMEM_THP_KNOB_2M} is `{mode}` \
                 (the per-size knob overrides {SHMEM_THP_KNOB}; as root, `echo inherit` or `echo advise` into it \
                 lets a ring ask for them; or use huge_pages)"
            ),
        )),
    }
}

/// [`check_shmem_thp`]'s verdict on the knob's text.
pub(super) fn thp_mode_allows(text: &str) -> io::Result<()> {
    match selected(text) {
        Some("always" | "within_size" | "advise" | "force") => Ok(()),
        mode => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "transparent huge pages for shared memory are off here: {SHMEM_THP_KNOB} is {} \
                 (as root, `echo advise` into it lets a ring ask for them; or use huge_pages)",
                mode.map_or_else(|| format!("{:?}", text.trim()), |m| format!("`{m}`"))
            ),
        )),
    }
}

/// Rounds a requested length up to a power of two of at least [`HUGE_PAGE`], checking that
/// the whole reservation (`H + 2N` plus a huge page of alignment slack) is representable.
pub(crate) fn round_len_huge(len: usize) -> io::Result<usize> {
    let invalid = |msg: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{msg} (requested {len} bytes)"));
    if len == 0 {
        return Err(invalid("a mirrored map cannot be empty"));
    }
    let n = len
        .max(HUGE_PAGE)
        .checked_next_power_of_two()
        .ok_or_else(|| invalid("length too large to round up to a power of two"))?;
    total_len_huge(n).ok_or_else(|| invalid("length too large: the two views do not fit the address space"))?;
    Ok(n)
}

/// `H + 2N` plus a huge page of slack (to align view A to 2 MiB), if it fits in `isize`.
fn total_len_huge(n: usize) -> Option<usize> {
    let total = total_len(n)?.checked_add(HUGE_PAGE)?;
    (total <= isize::MAX as usize).then_some(total)
}

impl MirrorMap {
    /// Builds a huge-page mirror of `len` bytes (already rounded by [`round_len_huge`]); see
    /// the module docs, "Huge pages".
    pub(super) fn build_huge(len: usize, backend: Backend) -> io::Result<MirrorMap> {
        if backend == Backend::Memfd {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a huge-page map keeps no descriptor to hand to another process (SharedRing::from_fd takes \
                 shmem memfds only): ask for huge pages with Backend::Auto, between threads or across fork",
            ));
        }
        let h = sys::page_size();
        let res = Reservation::new_huge(len)?;
        step(Step::MapControl, || {
            // SAFETY: [ctrl, ctrl+H) is inside our reservation.
            unsafe { sys::map_shared_anon_fixed(res.ctrl, h) }
        })
        .map_err(|e| explain_map(e, || "cannot map the control page of a huge-page mirror".to_owned()))?;
        match backend {
            Backend::MirrorFlag | Backend::Duplicate => {
                step(Step::MapFirst, || {
                    // SAFETY: [ctrl+H, ctrl+H+N) is inside our reservation, 2 MiB aligned.
                    unsafe { sys::map_shared_anon_huge_fixed(res.at(h), len) }
                })
                .map_err(|e| explain_huge(e, len, "cannot map anonymous shared huge pages"))?;
                let (old_len, flag) = if backend == Backend::MirrorFlag { (len, sys::MREMAP_MIRROR) } else { (0, 0) };
                step(Step::MapSecond, || {
                    // SAFETY: source and target are inside our reservation; the source is the
                    // MAP_SHARED hugetlb mapping made just above.
                    unsafe { sys::mremap_fixed(res.at(h), old_len, len, flag, res.at(h + len)) }
                })
                .map_err(|e| match e.raw_os_error() {
                    Some(errno) if errno != libc::ENOMEM => io::Error::new(
                        io::ErrorKind::Unsupported,
                        Context {
                            msg: format!(
                                "the {backend} backend cannot mirror huge pages: mremap refuses hugetlb mappings \
                                 (Backend::Auto maps a huge-page memfd twice instead)"
                            ),
                            source: e,
                        },
                    ),
                    _ => explain_huge(e, len, "cannot create the second view of a huge-page mirror"),
                })?;
                let mut res = res;
                res.trim(len);
                let map = res.into_map(len, Pages::Huge, backend, None);
                if !check_and_clear(&map) {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!("the {backend} backend accepted a hugetlb mapping but did not mirror it"),
                    ));
                }
                Ok(map)
            }
            Backend::Auto | Backend::Memfd => {
                let fd = step(Step::MemfdCreate, || sys::memfd_create_huge(c"mirror-ring-huge"))
                    .map_err(|e| explain_huge(e, len, "cannot create a huge-page memfd"))?;
                super::size_memfd(fd.as_fd(), len)
                    .map_err(|e| explain_huge(e, len, "cannot size a huge-page memfd"))?;
                step(Step::MapFirst, || {
                    // SAFETY: [ctrl+H, ctrl+H+N) is inside our reservation, 2 MiB aligned; the
                    // file is N bytes long.
                    unsafe { sys::map_fd_fixed(res.at(h), len, fd.as_fd(), 0) }
                })
                .map_err(|e| explain_huge(e, len, "cannot map a huge-page memfd"))?;
                step(Step::MapSecond, || {
                    // SAFETY: [ctrl+H+N, ctrl+H+2N) is inside our reservation, 2 MiB aligned.
                    unsafe { sys::map_fd_fixed(res.at(h + len), len, fd.as_fd(), 0) }
                })
                .map_err(|e| explain_huge(e, len, "cannot map the second view of a huge-page memfd"))?;
                // Both views hold the file now; nothing else needs the descriptor.
                drop(fd);
                let mut res = res;
                res.trim(len);
                Ok(res.into_map(len, Pages::Huge, Backend::Memfd, None))
            }
        }
    }
}

impl Reservation {
    /// A reservation in which `ctrl + H` (view A) is 2 MiB aligned, with room for `H + 2N`
    /// from `ctrl`.
    pub(super) fn new_huge(len: usize) -> io::Result<Reservation> {
        let total =
            total_len_huge(len).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        let base = Self::reserve(total, len)?;
        let h = sys::page_size();
        let data = (base.as_ptr() as usize + h).next_multiple_of(HUGE_PAGE);
        let skip = data - h - base.as_ptr() as usize;
        debug_assert!(skip + h + 2 * len <= total);
        // SAFETY: skip < HUGE_PAGE, the slack at the end of the reservation; in bounds, non-null.
        let ctrl = unsafe { NonNull::new_unchecked(base.as_ptr().add(skip)) };
        Ok(Reservation { base, total, ctrl })
    }
}
