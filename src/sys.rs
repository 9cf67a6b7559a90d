//! Every system call the crate makes, in one place.
//!
//! Each function is a thin, documented wrapper over one `libc` call: it converts the C
//! convention (`-1`/`MAP_FAILED` and `errno`) into `io::Result` and keeps the OS error intact
//! (`io::Error::last_os_error()`), so callers can match on `raw_os_error()`. Context is added
//! by the callers, by wrapping, never by replacing the errno. No other module calls `libc`
//! functions that touch memory mappings, futexes or file descriptors (`.clippy.toml` enforces
//! it for the mapping calls).

#![allow(clippy::disallowed_methods)] // this is the one module allowed to call them

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// `mremap` flag value 4: the `MREMAP_MIRROR` of the 2017 linux-mm RFC; mainline ships the
/// same value as `MREMAP_DONTUNMAP`, which since Linux 5.13 keeps a *shared* source mapping in
/// place and so yields a mirror. Used only on `MAP_SHARED` memory and only where the probe in
/// `mirror.rs` has proven that it mirrors.
pub(crate) const MREMAP_MIRROR: libc::c_int = 4;
/// `madvise` advice that prefaults writable page tables (Linux 5.14+).
const MADV_POPULATE_WRITE: libc::c_int = 23;

/// The errnos with which a kernel or a sandbox refuses one form of a call: an unknown flag or
/// form (`EINVAL`), a missing call (`ENOSYS`), a policy (`EPERM`, `EOPNOTSUPP`). Unlike a
/// shortage, asking again will not help.
pub(crate) fn is_refusal_errno(errno: i32) -> bool {
    matches!(errno, libc::EINVAL | libc::ENOSYS | libc::EPERM | libc::EOPNOTSUPP)
}

/// The system page size, read once. (An atomic, not a `OnceLock`: a child forked while
/// another thread initialises a `OnceLock` would wait for ever on it.)
pub(crate) fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    // Relaxed: every thread computes the same value; a race only computes it twice.
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf has no memory-safety preconditions.
            let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let v = if v <= 0 { 4096 } else { v as usize };
            PAGE.store(v, Ordering::Relaxed);
            v
        }
        v => v,
    }
}

/// Reserves `len` bytes of address space that nothing else can be placed in:
/// `PROT_NONE`, private, anonymous, not charged against overcommit.
pub(crate) fn reserve(len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh mapping at an address of the kernel's choice (no MAP_FIXED), so no
    // existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // mmap never returns NULL for a non-fixed mapping on Linux (mmap_min_addr), but do not
    // build a NonNull on faith.
    NonNull::new(p.cast()).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))
}

/// Unmaps `[addr, addr+len)`.
///
/// # Safety
/// The range must be owned by the caller (a reservation it made) and no reference into it may
/// be used afterwards.
pub(crate) unsafe fn unmap(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller owns the range and promises nothing refers to it any more.
    let r = unsafe { libc::munmap(addr.as_ptr().cast(), len) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Places `len` bytes of new anonymous shared memory at exactly `addr`.
///
/// # Safety
/// `[addr, addr+len)` must lie inside a reservation the caller owns: `MAP_FIXED` silently
/// replaces whatever was mapped there.
pub(crate) unsafe fn map_shared_anon_fixed(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the target range is its own reservation.
    let p = unsafe {
        libc::mmap(
            addr.as_ptr().cast(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    check_fixed(p, addr)
}

/// Maps `len` bytes of `fd`, from `offset`, shared and writable, at exactly `addr`.
///
/// # Safety
/// As [`map_shared_anon_fixed`]: the range must be inside the caller's reservation.
pub(crate) unsafe fn map_fd_fixed(addr: NonNull<u8>, len: usize, fd: BorrowedFd<'_>, offset: usize) -> io::Result<()> {
    let offset = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mapping offset too large"))?;
    // SAFETY: the caller guarantees the target range is its own reservation; fd is open for
    // the duration of the call (borrowed).
    let p = unsafe {
        libc::mmap(
            addr.as_ptr().cast(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED,
            fd.as_raw_fd(),
            offset,
        )
    };
    check_fixed(p, addr)
}

fn check_fixed(p: *mut libc::c_void, want: NonNull<u8>) -> io::Result<()> {
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    if p.cast::<u8>() != want.as_ptr() {
        // Impossible with MAP_FIXED unless the call never ran: a sandbox answering "success"
        // without running it (SECCOMP_RET_ERRNO with errno 0). Refuse rather than trust a
        // mapping we did not ask for, with a refusal errno, so that `Auto` hands over to the
        // next backend (and its check of the refusal finds this one refused too).
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    Ok(())
}

/// `mremap(old, old_len, new_len, MREMAP_MAYMOVE | MREMAP_FIXED | extra_flags, new)`.
///
/// `old_len == 0` is the historical "duplicate a shared mapping" form; `extra_flags ==
/// MREMAP_MIRROR` with `old_len == new_len` is the value-4 form.
///
/// # Safety
/// Both ranges must lie inside a reservation the caller owns, and `old` must be shared
/// memory (on a private mapping the duplicate form logs a kernel warning and the value-4 form
/// moves the pages away, leaving zeros behind).
pub(crate) unsafe fn mremap_fixed(
    old: NonNull<u8>,
    old_len: usize,
    new_len: usize,
    extra_flags: libc::c_int,
    new: NonNull<u8>,
) -> io::Result<()> {
    // SAFETY: the caller guarantees both ranges are inside its own reservation and that the
    // source is shared memory.
    let p = unsafe {
        libc::mremap(
            old.as_ptr().cast(),
            old_len,
            new_len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED | extra_flags,
            new.as_ptr().cast::<libc::c_void>(),
        )
    };
    check_fixed(p, new)
}

/// `madvise(addr, len, MADV_DONTFORK)`.
///
/// # Safety
/// The range must be mapped and owned by the caller.
pub(crate) unsafe fn madvise_dontfork(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: advice only; the caller owns the range.
    unsafe { madvise(addr, len, libc::MADV_DONTFORK) }
}

/// `madvise(addr, len, MADV_HUGEPAGE)`: ask for transparent huge pages in the range (for
/// shared memory the kernel honours it when `shmem_enabled` is `advise`, `within_size` or
/// `always`; `EINVAL` without transparent huge page support).
///
/// # Safety
/// The range must be mapped and owned by the caller.
pub(crate) unsafe fn madvise_hugepage(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: advice only, it changes which pages back the range, not its contents; the
    // caller owns the range.
    unsafe { madvise(addr, len, libc::MADV_HUGEPAGE) }
}

/// `madvise(addr, len, MADV_POPULATE_WRITE)` (Linux 5.14+; EINVAL before).
///
/// # Safety
/// The range must be mapped writable and owned by the caller.
pub(crate) unsafe fn madvise_populate_write(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: prefaulting does not change the contents; the caller owns the range.
    unsafe { madvise(addr, len, MADV_POPULATE_WRITE) }
}

/// `mlock(addr, len)`: locks the range's pages in memory, faulting them in first.
///
/// # Safety
/// The range must be mapped and owned by the caller.
pub(crate) unsafe fn mlock(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: locking changes residency, not contents; the caller owns the range.
    let r = unsafe { libc::mlock(addr.as_ptr().cast(), len) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `munlock(addr, len)`: unlocks the range (a range that was not locked stays as it was).
///
/// # Safety
/// The range must be mapped and owned by the caller.
pub(crate) unsafe fn munlock(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: unlocking changes residency, not contents; the caller owns the range.
    let r = unsafe { libc::munlock(addr.as_ptr().cast(), len) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the range is locked (`VM_LOCKED`, as every new mapping is in a process that called
/// `mlockall(MCL_FUTURE)`): `madvise(MADV_COLD)` refuses a locked range with `EINVAL`
/// (mm/madvise.c, `can_madv_lru_vma`), and on any other range only marks its pages as the
/// first to reclaim, which changes no contents. Any other answer (a sandbox's `EPERM`, say)
/// counts as not locked.
///
/// # Safety
/// The range must be mapped and owned by the caller, ordinary (not hugetlb) shared memory.
pub(crate) unsafe fn is_locked(addr: NonNull<u8>, len: usize) -> bool {
    // SAFETY: advice that changes no contents, on the caller's range.
    let r = unsafe { madvise(addr, len, libc::MADV_COLD) };
    matches!(r, Err(e) if e.raw_os_error() == Some(libc::EINVAL))
}

/// This process's `RLIMIT_MEMLOCK` soft limit in bytes, `None` when unlimited or unreadable.
pub(crate) fn memlock_limit() -> Option<u64> {
    soft_limit(libc::RLIMIT_MEMLOCK as libc::c_int)
}

/// This process's `RLIMIT_FSIZE` soft limit in bytes (the largest file it may make), `None`
/// when unlimited or unreadable.
pub(crate) fn file_size_limit() -> Option<u64> {
    soft_limit(libc::RLIMIT_FSIZE as libc::c_int)
}

/// The soft limit of `resource`, `None` when unlimited or unreadable.
fn soft_limit(resource: libc::c_int) -> Option<u64> {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `rl` is a valid out-pointer for the call. (The resource's C type differs between
    // the C libraries; the value is one of theirs.)
    let r = unsafe { libc::getrlimit(resource as _, &mut rl) };
    (r == 0 && rl.rlim_cur != libc::RLIM_INFINITY).then_some(rl.rlim_cur)
}

unsafe fn madvise(addr: NonNull<u8>, len: usize, advice: libc::c_int) -> io::Result<()> {
    // SAFETY: forwarded from the callers' contracts.
    let r = unsafe { libc::madvise(addr.as_ptr().cast(), len, advice) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`.
pub(crate) fn memfd_create(name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: name is a valid NUL-terminated string.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `memfd_create(name, MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB)`: a file on the kernel's
/// hugetlbfs whose pages are 2 MiB (its size and every mapping offset must be multiples of
/// that). Mapping it `MAP_SHARED` reserves its huge pages at `mmap` time (`ENOMEM` when too few
/// are free), so a later fault cannot fail.
pub(crate) fn memfd_create_huge(name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: name is a valid NUL-terminated string.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_HUGETLB | libc::MFD_HUGE_2MB) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Places `len` bytes of new anonymous shared memory backed by 2 MiB huge pages
/// (`MAP_HUGETLB | MAP_HUGE_2MB`) at exactly `addr`, which must be 2 MiB aligned.
///
/// # Safety
/// As [`map_shared_anon_fixed`]: the range must be inside the caller's reservation.
pub(crate) unsafe fn map_shared_anon_huge_fixed(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the target range is its own reservation.
    let p = unsafe {
        libc::mmap(
            addr.as_ptr().cast(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_HUGETLB | libc::MAP_HUGE_2MB,
            -1,
            0,
        )
    };
    check_fixed(p, addr)
}

/// `ftruncate(fd, len)`.
pub(crate) fn ftruncate(fd: BorrowedFd<'_>, len: usize) -> io::Result<()> {
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file length too large"))?;
    // SAFETY: plain syscall on a borrowed, open descriptor.
    let r = unsafe { libc::ftruncate(fd.as_raw_fd(), len) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fcntl(fd, F_ADD_SEALS, seals)`.
pub(crate) fn add_seals(fd: BorrowedFd<'_>, seals: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed, open descriptor.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fcntl(fd, F_GET_SEALS)`.
pub(crate) fn get_seals(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: plain syscall on a borrowed, open descriptor.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// What `fstat` and `fstatfs` say about a descriptor: enough to decide whether it can be a
/// ring file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileInfo {
    /// `st_size`.
    pub(crate) size: u64,
    /// Regular file (`S_IFREG`).
    pub(crate) regular: bool,
    /// Lives on tmpfs/shmem (memfd files do).
    pub(crate) shmem: bool,
}

/// `fstat` + `fstatfs` of a descriptor.
pub(crate) fn file_info(fd: BorrowedFd<'_>) -> io::Result<FileInfo> {
    // SAFETY: all-zero bytes are a valid `stat` (plain integers).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid out-pointer; fd is open.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: all-zero bytes are a valid `statfs` (plain integers).
    let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: sfs is a valid out-pointer; fd is open.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut sfs) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FileInfo {
        size: u64::try_from(st.st_size).unwrap_or(0),
        regular: (st.st_mode & libc::S_IFMT) == libc::S_IFREG,
        #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
        shmem: sfs.f_type as i64 == libc::TMPFS_MAGIC as i64,
    })
}

/// Reads up to `buf.len()` bytes at `offset` (`pread`, retried on `EINTR` and short reads).
/// Returns how many bytes were read: fewer than `buf.len()` only at end of file.
pub(crate) fn pread_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let off = offset
            .checked_add(done as u64)
            .and_then(|o| libc::off_t::try_from(o).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
        let rest = &mut buf[done..];
        // SAFETY: rest is a valid, writable buffer of rest.len() bytes; fd is open (borrowed).
        let r = unsafe { libc::pread(fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len(), off) };
        if r == 0 {
            break;
        }
        if r < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(err);
        }
        done += r as usize;
    }
    Ok(done)
}

/// The access mode a descriptor was opened with (`fcntl(F_GETFL) & O_ACCMODE`: `O_RDONLY`,
/// `O_WRONLY` or `O_RDWR`).
pub(crate) fn access_mode(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: plain syscall on a borrowed, open descriptor.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r & libc::O_ACCMODE)
}

/// How a [`futex_wait`] ended. The caller always re-checks its condition; the outcome only
/// tells it (and its counters) why it is awake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FutexWake {
    /// `FUTEX_WAKE` reached this waiter.
    Woken,
    /// The word no longer held the expected value when the kernel compared it (`EAGAIN`).
    Changed,
    /// The timeout passed (`ETIMEDOUT`).
    TimedOut,
    /// A signal, or an error that cannot happen for a live, aligned word (`EINTR`, `EFAULT`).
    Spurious,
}

/// `FUTEX_WAIT` (shared, not private: the word may be mapped in several processes and at two
/// addresses). Returns when woken, when `*word != expected`, on a signal, or after `timeout`.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> FutexWake {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: word is a valid, aligned u32 for the duration of the call; the kernel only reads
    // it. ts_ptr is null or points to a live timespec.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, ts_ptr, 0usize, 0u32) };
    if r == 0 {
        return FutexWake::Woken;
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => FutexWake::Changed,
        Some(libc::ETIMEDOUT) => FutexWake::TimedOut,
        _ => FutexWake::Spurious,
    }
}

/// `FUTEX_WAKE` (shared): wakes up to `n` waiters on `word`. Returns how many were woken.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) -> usize {
    // SAFETY: word is a valid, aligned u32; FUTEX_WAKE does not access it.
    let r = unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n.min(i32::MAX as u32), 0usize, 0usize, 0u32)
    };
    // A failing wake (EFAULT cannot happen on a live word) just means nobody was woken.
    usize::try_from(r).unwrap_or(0)
}

/// The system calls behind the async ends' helper threads (`ring::asynch::park`).
#[cfg(all(feature = "tokio", not(mirror_ring_loom)))]
mod futex2 {
    use std::io;
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    /// `futex_waitv(2)` (Linux 5.16+): the system call number, the same on every architecture
    /// (the generic table).
    const SYS_FUTEX_WAITV: libc::c_long = 449;
    /// `FUTEX2_SIZE_U32`: a waiter entry names a 32-bit word. Without `FUTEX2_PRIVATE` the wait
    /// is shared (keyed on the backing object, so it works across processes and views).
    const FUTEX2_SIZE_U32: u32 = 0x02;
    /// `FUTEX2_PRIVATE`: a process-local word (the helper's own control word).
    const FUTEX2_PRIVATE: u32 = 128;
    /// The most words one `futex_waitv` call can wait on (`FUTEX_WAITV_MAX`).
    pub(crate) const FUTEX_WAITV_MAX: usize = 128;

    /// One entry of a [`futex_waitv`] call (`struct futex_waitv`).
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct FutexWaitv {
        val: u64,
        uaddr: u64,
        flags: u32,
        reserved: u32,
    }

    impl FutexWaitv {
        /// Wait while the word at `word` holds `expected`; `shared`: the word may be mapped by
        /// other processes (a ring header), else it is process-local.
        pub(crate) fn new(word: *const AtomicU32, expected: u32, shared: bool) -> FutexWaitv {
            let flags = if shared { FUTEX2_SIZE_U32 } else { FUTEX2_SIZE_U32 | FUTEX2_PRIVATE };
            FutexWaitv { val: u64::from(expected), uaddr: word as u64, flags, reserved: 0 }
        }
    }

    /// How a [`futex_waitv`] call ended.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum WaitvOutcome {
        /// A `FUTEX_WAKE` reached the waiter on entry `i`.
        Woken(usize),
        /// One of the words no longer held its expected value (`EAGAIN`).
        Changed,
        /// The deadline passed.
        TimedOut,
        /// A signal (`EINTR`) or another transient failure: look again.
        Spurious,
    }

    /// `futex_waitv(waiters, n, 0, deadline, CLOCK_MONOTONIC)`: sleeps until one of the words is
    /// woken or no longer holds its value, or until `deadline` (absolute, `CLOCK_MONOTONIC`; `None`:
    /// no deadline). `Err` with the errno when the call itself is refused (`ENOSYS` before 5.16,
    /// or a sandbox's answer): the caller then falls back to something else.
    ///
    /// # Safety
    ///
    /// Every entry's address must stay a valid, aligned `u32` for the duration of the call (the
    /// kernel reads it; a word of shared memory must stay mapped).
    pub(crate) unsafe fn futex_waitv(waiters: &[FutexWaitv], deadline: Option<Duration>) -> io::Result<WaitvOutcome> {
        let ts = deadline.map(|d| libc::timespec {
            tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `waiters` is a live array of `len` entries in the kernel's layout, every address
        // in it is valid per the caller; ts_ptr is null or points to a live timespec.
        let r = unsafe {
            libc::syscall(
                SYS_FUTEX_WAITV,
                waiters.as_ptr(),
                waiters.len() as libc::c_uint,
                0u32,
                ts_ptr,
                libc::CLOCK_MONOTONIC,
            )
        };
        if r >= 0 {
            return Ok(WaitvOutcome::Woken(r as usize));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) => Ok(WaitvOutcome::Changed),
            Some(libc::ETIMEDOUT) => Ok(WaitvOutcome::TimedOut),
            Some(libc::EINTR) => Ok(WaitvOutcome::Spurious),
            _ => Err(e),
        }
    }

    /// `FUTEX_WAIT_PRIVATE` with a relative timeout: for a process-local word (a helper thread's
    /// control word). Returns when woken, when the word differs, on a signal, or after `timeout`.
    pub(crate) fn futex_wait_private(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        let ts = timeout.map(|d| libc::timespec {
            tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: word is a valid, aligned u32 for the duration of the call; ts_ptr is null or
        // points to a live timespec.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                expected,
                ts_ptr,
                0usize,
                0u32,
            )
        };
    }

    /// `FUTEX_WAKE_PRIVATE`: wakes the waiters on a process-local word (a `futex_waitv` entry with
    /// `FUTEX2_PRIVATE` is woken by it too).
    pub(crate) fn futex_wake_private(word: &AtomicU32) {
        // SAFETY: word is a valid, aligned u32; FUTEX_WAKE does not access it.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                i32::MAX,
                0usize,
                0usize,
                0u32,
            )
        };
    }

    /// `CLOCK_MONOTONIC` now, as a duration since its (boot-time) origin: the clock the deadlines
    /// of [`futex_waitv`] are given on.
    pub(crate) fn monotonic_now() -> Duration {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: ts is a valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}

#[cfg(all(feature = "tokio", not(mirror_ring_loom)))]
pub(crate) use futex2::*;

/// `membarrier(2)` commands (linux/membarrier.h).
pub(crate) const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
pub(crate) const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;
pub(crate) const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
pub(crate) const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

/// `membarrier(cmd, 0, 0)` (the private expedited commands since Linux 4.14, the global ones
/// since 4.16). Registration is per process; it is inherited by `fork()` and cleared by `exec`
/// (measured on 6.18).
pub(crate) fn membarrier(cmd: libc::c_int) -> io::Result<()> {
    // Miri has no membarrier: answer as a kernel without it, so the ends use full fences.
    // (`if cfg!`: the code after it stays reachable to the compiler.)
    #[cfg(miri)]
    if cfg!(miri) {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    // SAFETY: membarrier has no memory-safety preconditions.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `CLOCK_MONOTONIC_COARSE`: the last timer tick, read from the vDSO without a syscall or a TSC
/// read (~3 ns); resolution one tick (1-4 ms).
pub(crate) fn monotonic_coarse() -> std::time::Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid out-pointer; the clock id is valid on every Linux since 2.6.32.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `getpid()`.
pub(crate) fn getpid() -> i32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// `pidfd_open(pid, 0)` (Linux 5.3+): a descriptor that keeps naming this very process even if
/// its pid is later reused.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    if pid <= 0 {
        // 0 and negative values name no single process (the pid may come from an untrusted
        // header); refuse them here rather than rely on the kernel's EINVAL.
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: pidfd_open has no memory-safety preconditions.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Whether a pidfd's process has terminated (a zombie counts as terminated): polls for
/// `POLLIN` without blocking.
pub(crate) fn pidfd_exited(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(pidfds_exited(&[fd])?[0])
}

/// [`pidfd_exited`] for many pidfds in one `poll`: whether each one's process has terminated.
pub(crate) fn pidfds_exited(fds: &[BorrowedFd<'_>]) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|fd| libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    loop {
        // SAFETY: `pfds` is a valid array of `pfds.len()` pollfds, which `poll` writes only
        // inside (their `revents`); a zero timeout never blocks.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 0) };
        if r >= 0 {
            return Ok(pfds.iter().map(|p| p.revents & (libc::POLLIN | libc::POLLHUP) != 0).collect());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// A new epoll instance (close-on-exec).
#[cfg(all(feature = "tokio", not(mirror_ring_loom)))]
pub(crate) fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1 has no memory-safety preconditions.
    let r = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// Arms `fd` in the epoll instance `ep` for one readiness report (`EPOLLIN`, one-shot),
/// carrying `data`: added, or re-armed if it is there already.
#[cfg(all(feature = "tokio", not(mirror_ring_loom)))]
pub(crate) fn epoll_arm_once(ep: BorrowedFd<'_>, fd: BorrowedFd<'_>, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLONESHOT) as u32, u64: data };
    let mut ctl = |op| {
        // SAFETY: both descriptors are borrowed for the call; `ev` is a valid epoll_event that
        // the kernel only reads.
        if unsafe { libc::epoll_ctl(ep.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    match ctl(libc::EPOLL_CTL_ADD) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => ctl(libc::EPOLL_CTL_MOD),
        r => r,
    }
}

/// Waits, with no time limit, for readiness reports from the epoll instance `ep`, and
/// returns the data of those it got (none when a signal interrupted the wait).
#[cfg(all(feature = "tokio", not(mirror_ring_loom)))]
pub(crate) fn epoll_wait(ep: BorrowedFd<'_>, events: &mut [libc::epoll_event]) -> io::Result<Vec<u64>> {
    let n = events.len().min(libc::c_int::MAX as usize) as libc::c_int;
    // SAFETY: `events` is a valid, writable array of at least `n` epoll_events, which the
    // kernel writes only inside; `ep` is borrowed for the call.
    let r = unsafe { libc::epoll_wait(ep.as_raw_fd(), events.as_mut_ptr(), n, -1) };
    if r < 0 {
        let err = io::Error::last_os_error();
        return if err.raw_os_error() == Some(libc::EINTR) { Ok(Vec::new()) } else { Err(err) };
    }
    Ok(events[..r as usize].iter().map(|e| e.u64).collect())
}

/// Whether a process with id `pid` exists: `kill(pid, 0)`, which sends no signal. `Ok(false)`
/// only on `ESRCH` (proof that no such process exists in this PID namespace); `EPERM` means it
/// exists but belongs to someone else.
pub(crate) fn process_exists(pid: i32) -> io::Result<bool> {
    if pid <= 0 {
        // 0 and negative values address process groups, never one process.
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: signal 0 performs only the existence and permission checks; nothing is sent.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ESRCH) => Ok(false),
        Some(libc::EPERM) => Ok(true),
        _ => Err(err),
    }
}

/// This process's PID namespace, as the inode number of `/proc/self/ns/pid` (0 if `/proc` or
/// the namespace file cannot be read). Two processes with the same non-zero value share a PID
/// namespace, so a pid recorded by one names the same process for the other.
pub(crate) fn pid_namespace() -> u64 {
    std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| std::os::unix::fs::MetadataExt::ino(&m))
}

/// The running kernel's release string (`uname -r`).
pub(crate) fn kernel_release() -> String {
    // SAFETY: all-zero bytes are a valid utsname.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid out-pointer.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::from("unknown");
    }
    // SAFETY: uname NUL-terminates every field.
    let rel = unsafe { CStr::from_ptr(u.release.as_ptr()) };
    rel.to_string_lossy().into_owned()
}

/// Registers `handler` to run in the child after every `fork()`.
pub(crate) fn at_fork_child(handler: unsafe extern "C" fn()) -> io::Result<()> {
    // Miri cannot fork: nothing to run after one.
    #[cfg(miri)]
    if cfg!(miri) {
        return Ok(());
    }
    // SAFETY: the handler is an `extern "C"` function with no arguments, as pthread_atfork
    // requires; it stays valid for the life of the program (a fn item).
    let r = unsafe { libc::pthread_atfork(None, None, Some(handler)) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Sends `fd` over a Unix socket as `SCM_RIGHTS` ancillary data, with one byte of payload.
pub(crate) fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut byte = [0x4du8];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: all-zero bytes are a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points to `space` bytes, enough for one cmsg with one fd, so
    // CMSG_FIRSTHDR is non-null and CMSG_DATA has room for a RawFd.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd.as_raw_fd());
    }
    loop {
        // SAFETY: msg describes live buffers (byte, cbuf) for the duration of the call.
        let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if r == 1 {
            return Ok(());
        }
        if r >= 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "sendmsg sent nothing"));
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Why `recvmsg` truncated the descriptors of a message after installing `got` of them: the
/// kernel also truncates when it cannot install one, because this process has no descriptor
/// left (it then drops the rest), so look for that first (a `dup` fails the same way); else
/// the message carried more than `recv_fd` takes.
fn truncated_fds(sock: BorrowedFd<'_>, got: usize) -> io::Error {
    // SAFETY: plain fcntl on a borrowed, open descriptor; the duplicate is closed at once.
    let probe = unsafe { libc::fcntl(sock.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if probe >= 0 {
        // SAFETY: our own fresh descriptor.
        unsafe { libc::close(probe) };
        return io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the message's control data was cut short (more descriptors than one ring's, or a \
                 longer security label than this call makes room for); the {got} received were closed"
            ),
        );
    }
    crate::error::Context::explain(
        io::Error::last_os_error(),
        "a descriptor arrived but this process had no room for it (RLIMIT_NOFILE): the kernel closed it, so \
         the ring it carried is lost and the sender must send it again"
            .to_owned(),
    )
}

/// Sets `FD_CLOEXEC` on `fd`.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain fcntl on a borrowed, open descriptor.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SCM_PIDFD` (Linux 6.5, `include/linux/socket.h`): the sender's pidfd, with `SO_PASSPIDFD`.
const SCM_PIDFD: libc::c_int = 0x04;

/// Receives one descriptor sent by [`send_fd`]. A message with none or more than one is
/// `InvalidData`, every descriptor it carried closed: a ring is one descriptor, and a sender
/// that adds others is not one this process should take a ring from.
pub(crate) fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    const MAX_FDS: usize = 8;
    // What a receiver's own socket options add beside the descriptors: `SO_PASSCRED` the
    // sender's credentials, `SO_PASSPIDFD` (Linux 6.5+) a pidfd of it, `SO_PASSSEC` its
    // security label (room for a long one). Without this room the kernel truncates the
    // control data and discards the ring's descriptor (found by an adversarial review).
    const SECURITY_LABEL: usize = 256;
    let mut byte = [0u8];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe {
        libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32)
            + libc::CMSG_SPACE(std::mem::size_of::<libc::ucred>() as u32)
            + libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32)
            + libc::CMSG_SPACE(SECURITY_LABEL as u32)
    } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: all-zero bytes are a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let r = loop {
        // SAFETY: msg describes live buffers; MSG_CMSG_CLOEXEC marks received fds close-on-exec.
        let r = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if r >= 0 {
            break r;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control with well-formed cmsgs up to msg_controllen; the
    // CMSG_* macros walk them within that bound.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let bytes = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    let raw = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            } else if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == SCM_PIDFD {
                // The sender's pidfd (`SO_PASSPIDFD`): not the ring; closed here.
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
                drop(OwnedFd::from_raw_fd(raw));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(truncated_fds(sock, fds.len()));
    }
    if r == 0 && fds.is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "socket closed before a descriptor arrived"));
    }
    if fds.len() > 1 {
        // (`fds` drops, closing them all.)
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the message carried {} descriptors, not one ring's; all were closed", fds.len()),
        ));
    }
    fds.pop().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "message carried no descriptor"))
}

/// The state (field 3) and start time (field 22) from `/proc/<pid>/stat`. The error keeps the
/// OS error: `ENOENT` (no such process, or `/proc` hides it), `EMFILE` (no descriptor left to
/// open the file), ...; a file that cannot be parsed is `InvalidData`, and so is one whose
/// state is none of the kernel's letters (see `parse_stat`).
pub(crate) fn proc_stat(pid: i32) -> io::Result<(char, u64)> {
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let (state, start) = parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)?;
    // The kernel shows the start time moved by the *reader's* time namespace (its boottime
    // offset): take that out, so that processes in different time namespaces agree on it.
    Ok((state, start.wrapping_sub(boottime_offset_ticks())))
}

/// The state letter and the start time, as the kernel wrote them, from the text of a
/// `/proc/<pid>/stat`. A state that is none of the letters any kernel writes
/// (`fs/proc/array.c`: `R S D T t X Z P I`, and `x K W` of older kernels) means the text is not
/// the kernel's: an emulator's own version (qemu-user answers a process's reads of its own stat
/// with state `0` and a start time one tick off, so a start time recorded from it makes the
/// live process look like a reused pid to its peers). Then no field of it is believed:
/// `InvalidData`, which a claimant records as an unknown start time and a watcher as "cannot
/// tell", never as a death.
fn parse_stat(stat: &str) -> io::Result<(char, u64)> {
    let bad = |what| io::Error::new(io::ErrorKind::InvalidData, what);
    // The command name (field 2) is in parentheses and may contain spaces or ')': split after
    // the last ')'.
    let after_name = stat.rfind(')').ok_or_else(|| bad("unexpected /proc/<pid>/stat format"))?;
    let mut fields = stat[after_name + 1..].split_ascii_whitespace();
    let state =
        fields.next().and_then(|f| f.chars().next()).ok_or_else(|| bad("unexpected /proc/<pid>/stat format"))?;
    if !matches!(state, 'R' | 'S' | 'D' | 'T' | 't' | 'X' | 'x' | 'Z' | 'P' | 'I' | 'K' | 'W') {
        return Err(bad("/proc/<pid>/stat shows no kernel process state: not the kernel's text"));
    }
    // The state was field 3; the start time is field 22, 19 fields further on.
    let start = fields.nth(18).and_then(|f| f.parse().ok()).ok_or_else(|| bad("unexpected /proc/<pid>/stat format"))?;
    Ok((state, start))
}

/// The boottime offset of this process's time namespace in clock ticks (0 outside one, or
/// when it cannot be read), rounded down: an offset that is not a whole number of ticks can
/// leave the start times two such namespaces see one tick apart. Read each time: a process
/// forked after `unshare(CLONE_NEWTIME)` lives in another namespace than its parent.
fn boottime_offset_ticks() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/timens_offsets") else { return 0 };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as i64;
    text.lines()
        .find_map(|line| {
            let mut f = line.split_ascii_whitespace();
            // The clock by name, or by number (CLOCK_BOOTTIME is 7) on older kernels.
            matches!(f.next(), Some("boottime" | "7")).then(|| {
                let secs: i64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                let nanos: i64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                secs.wrapping_mul(hz).wrapping_add(nanos / (1_000_000_000 / hz).max(1)) as u64
            })
        })
        .unwrap_or(0)
}

/// The number of threads of `pid` (`Threads:` in `/proc/<pid>/status`). The error keeps the
/// OS error; a file that cannot be parsed is `InvalidData`.
pub(crate) fn proc_threads(pid: i32) -> io::Result<u64> {
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/<pid>/status format"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line as 6.18 writes it, with a command name that holds `) ` and spaces.
    const LINE: &str = "4242 (a) b (c) S 1 4242 4242 0 -1 4194304 95 0 0 0 0 0 0 0 20 0 1 0 987654 \
                        2310144 224 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn parse_stat_reads_state_and_start_time_after_the_last_parenthesis() {
        assert_eq!(parse_stat(LINE).unwrap(), ('S', 987_654));
        for state in ['R', 'S', 'D', 'T', 't', 'X', 'x', 'Z', 'P', 'I', 'K', 'W'] {
            let line = LINE.replace(") S ", &format!(") {state} "));
            assert_eq!(parse_stat(&line).unwrap().0, state);
        }
    }

    #[test]
    fn a_stat_without_a_kernel_state_is_not_believed() {
        // qemu-user's answer to a guest reading its own stat: state `0`.
        for state in ["0", "?", "s", "-"] {
            let line = LINE.replace(") S ", &format!(") {state} "));
            let e = parse_stat(&line).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "state {state}");
        }
        for cut in ["4242 (a", "4242 (a) S 1 4242", ""] {
            assert_eq!(parse_stat(cut).unwrap_err().kind(), io::ErrorKind::InvalidData, "{cut:?}");
        }
    }
}
