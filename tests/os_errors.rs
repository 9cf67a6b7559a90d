//! The promise "clear errors that keep the OS error", where the other suites do not drive it
//! (kept from the errors review of stop 44, whose two defects the first two tests pin: an OS
//! failure came back under the wrong kind, or without its errno).
//!
//! Each case runs in a forked child (it lowers a limit or installs a seccomp filter, both for
//! good), which reports what it saw through a pipe and always leaves through `_exit`.

#![cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]

mod common;

use std::io::{self, ErrorKind};
use std::time::Duration;

use common::in_child_reporting;
use common::seccomp::Deny;
use mirror_ring::{Backend, RingOptions, SharedRing};

/// The bound on one child: far above any healthy run, so reaching it is a hang.
const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// The errno an error carries: its own, or that of an `io::Error` `source()`.
fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| std::error::Error::source(e)?.downcast_ref::<io::Error>()?.raw_os_error())
}

/// How an error reads in a report: kind, errno, message.
fn describe(e: &io::Error) -> String {
    format!("kind {:?}, errno {:?}: {e}", e.kind(), errno_of(e))
}

/// In a forked child: lowers `RLIMIT_NOFILE` so that no descriptor can be opened (the lowest
/// free number is the limit). Returns the old soft limit.
fn no_descriptor_left() -> Result<usize, String> {
    // SAFETY: F_DUPFD gives the lowest free descriptor number, closed at once.
    let lowest_free = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 0) };
    if lowest_free < 0 {
        return Err(format!("F_DUPFD: {}", io::Error::last_os_error()));
    }
    // SAFETY: our own fresh descriptor.
    unsafe { libc::close(lowest_free) };
    common::set_soft_limit(libc::RLIMIT_NOFILE, lowest_free as usize)
        .map(|old| old as usize)
        .ok_or_else(|| "setrlimit(RLIMIT_NOFILE) failed".to_owned())
}

// A process out of descriptors (EMFILE) that asks for transparent huge pages must not be told
// that the machine has none. (The review found `check_shmem_thp`, src/mirror/huge.rs, wrapping
// every failure to read /sys/kernel/mm/transparent_hugepage/shmem_enabled as `Unsupported`
// with "no transparent huge pages for shared memory here": the errno stayed as `source()`,
// but the kind and the message blamed the kernel for a shortage of this process's, and a
// caller that falls back for good on `Unsupported` gave up huge pages for a passing fd
// shortage.) The crate's
// own rule elsewhere: a shortage is not a refusal (`Backend::resolve` passes EMFILE through,
// src/mirror/backend.rs:121-123; huge_pages' `explain_huge` keeps EMFILE's kind and does not
// blame hugetlbfs, pinned by tests/huge_pages.rs `out_of_descriptors_is_not_blamed_on_hugetlbfs`).
#[test]
fn out_of_descriptors_is_not_blamed_on_missing_transparent_huge_pages() {
    let r = in_child_reporting(CHILD_LIMIT, || {
        let old = no_descriptor_left()?;
        let r = RingOptions::new().capacity(4096).transparent_huge_pages(true).build().map(drop);
        common::set_soft_limit(libc::RLIMIT_NOFILE, old);
        let e = match r {
            // Possible only if the build needed no descriptor at all: nothing to judge.
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        // Positive control: this is the shortage (else the test would judge another error).
        if errno_of(&e) != Some(libc::EMFILE) {
            return Err(format!("expected an error carrying EMFILE; got {}", describe(&e)));
        }
        if e.kind() == ErrorKind::Unsupported || e.to_string().contains("no transparent huge pages") {
            return Err(format!(
                "out of descriptors, reported as if the kernel had no transparent huge pages: {}",
                describe(&e)
            ));
        }
        Ok(())
    });
    r.unwrap();
}

/// Installs a seccomp filter that answers what `rule` names with `EPERM` (a sandbox that does
/// not allow it) and lets every other call through. Irrevocable: only in a forked child.
fn deny(rule: Deny) -> io::Result<()> {
    common::seccomp::install(&[rule])
}

// `SharedRing::from_fd` of a sound ring file, in a process whose sandbox refuses
// `fcntl(F_GET_SEALS)` (EPERM), must return the OS error. (The review found "not a usable ring
// file: cannot read its seals (Operation not permitted (os error 1))" as `InvalidData` with
// neither `raw_os_error()` nor a `source()`: src/shared.rs formatted the OS error into the text
// of `bad(..)`.) The file is
// good; the OS refused a call. The crate promises that OS failures keep their errno, and
// `InvalidData` from `from_fd` is documented as "bad ring file"; its own docs
// (src/shared.rs:476-477) say "OS errors from `fstat`, `fcntl` and `pread` on the descriptor,
// with their errno as `raw_os_error()`".
#[test]
fn from_fd_keeps_the_errno_when_the_seals_cannot_be_read() {
    let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    let r = in_child_reporting(CHILD_LIMIT, || {
        let fd = |what| ring.as_fd().and_then(|fd| fd.try_clone_to_owned().ok()).ok_or_else(|| format!("dup {what}"));
        // Positive control: the same file attaches without the filter.
        SharedRing::from_fd(fd("control")?).map_err(|e| format!("the ring's own file: {}", describe(&e)))?;
        let fd = fd("for the case")?;
        deny(Deny::Fcntl(libc::F_GET_SEALS, libc::EPERM)).map_err(|e| format!("installing the seccomp filter: {e}"))?;
        let e = match SharedRing::from_fd(fd) {
            Ok(_) => return Err("attached without reading the seals".to_owned()),
            Err(e) => e,
        };
        if errno_of(&e) != Some(libc::EPERM) {
            return Err(format!("the OS error (EPERM) is lost: {}", describe(&e)));
        }
        if e.kind() == ErrorKind::InvalidData {
            return Err(format!("a refused call reported as a bad ring file: {}", describe(&e)));
        }
        Ok(())
    });
    r.unwrap();
}

/// Every system call on the paths that create a ring, attach one from its file, lock it, and
/// hand its descriptor over, refused by a sandbox with `EPERM`: each call either still
/// succeeds (`Backend::Auto` hands over to another backend; a prefault falls back) or fails
/// with `EPERM` reachable as `raw_os_error()` or as the `source()`, never a panic and never an
/// error that lost it. (The other suites refuse `mremap`, `memfd_create`, `membarrier` and
/// `pidfd_open`; `fcntl(F_GET_SEALS)` in `from_fd` has the test above.)
#[test]
fn every_refused_system_call_comes_back_with_its_errno() {
    // Probed here, so that each child inherits a cache saying which backends work.
    for b in Backend::CONCRETE {
        let _ = b.is_available();
    }
    let calls: &[(&str, Deny)] = &[
        ("mmap", Deny::Call(libc::SYS_mmap, libc::EPERM)),
        ("mremap", Deny::Call(libc::SYS_mremap, libc::EPERM)),
        ("memfd_create", Deny::Call(libc::SYS_memfd_create, libc::EPERM)),
        ("ftruncate", Deny::Call(libc::SYS_ftruncate, libc::EPERM)),
        ("madvise", Deny::Call(libc::SYS_madvise, libc::EPERM)),
        ("mlock", Deny::Call(libc::SYS_mlock, libc::EPERM)),
        ("fstatfs", Deny::Call(libc::SYS_fstatfs, libc::EPERM)),
        ("pread64", Deny::Call(libc::SYS_pread64, libc::EPERM)),
        ("openat", Deny::Call(libc::SYS_openat, libc::EPERM)),
        ("sendmsg", Deny::Call(libc::SYS_sendmsg, libc::EPERM)),
        ("recvmsg", Deny::Call(libc::SYS_recvmsg, libc::EPERM)),
        ("fcntl(F_ADD_SEALS)", Deny::Fcntl(libc::F_ADD_SEALS, libc::EPERM)),
        ("fcntl(F_SETFD)", Deny::Fcntl(libc::F_SETFD, libc::EPERM)),
    ];
    let mut failures = Vec::new();
    for &(name, rule) in calls {
        let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let r = in_child_reporting(CHILD_LIMIT, || {
            let fd = ring.as_fd().and_then(|fd| fd.try_clone_to_owned().ok()).ok_or("dup")?;
            ring.send_to(&a).map_err(|e| format!("send_to before the filter: {e}"))?;
            deny(rule).map_err(|e| format!("installing the seccomp filter: {e}"))?;
            let mut bad = Vec::new();
            let mut check = |what: &str, r: io::Result<()>| match r {
                Err(e) if errno_of(&e) != Some(libc::EPERM) => bad.push(format!("{what}: {}", describe(&e))),
                _ => {}
            };
            for backend in [Backend::Auto, Backend::MirrorFlag, Backend::Duplicate, Backend::Memfd] {
                check(
                    &format!("build {backend:?}"),
                    RingOptions::new().capacity(8192).backend(backend).build().map(drop),
                );
            }
            let all = RingOptions::new().capacity(8192).prefault(true).dont_fork(true).lock_memory(true).build();
            check("build with prefault, dont_fork, lock_memory", all.map(drop));
            check("from_fd", SharedRing::from_fd(fd).map(drop));
            check("recv_from", SharedRing::recv_from(&b).map(drop));
            check("send_to", ring.send_to(&a));
            check("lock_memory", ring.lock_memory());
            check("into_producer", ring.clone().into_producer().map(drop));
            if bad.is_empty() {
                Ok(())
            } else {
                Err(bad.join("; "))
            }
        });
        if let Err(msg) = r {
            failures.push(format!("{name} refused: {msg}"));
        }
    }
    assert!(failures.is_empty(), "errors without the refused call's errno:\n  {}", failures.join("\n  "));
}

/// `mlock` refused by a sandbox (EPERM) under a nonzero `RLIMIT_MEMLOCK`: the error must not
/// blame the limit, which the kernel's own EPERM means only when it is 0. (The errors review
/// found "RLIMIT_MEMLOCK is 8388608 bytes here and the process lacks CAP_IPC_LOCK" for a
/// filter's refusal, from root.) A limit of 0, as `nobody`, is the kernel's EPERM: that one
/// does name the limit.
#[test]
fn a_refused_mlock_blames_the_sandbox_and_a_zero_limit_the_limit() {
    let lock = || RingOptions::new().capacity(8192).lock_memory(true).build().map(drop);
    let sandboxed = in_child_reporting(CHILD_LIMIT, || {
        let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: a valid out-pointer for this process's own limit.
        if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) } != 0 || rl.rlim_cur == 0 {
            // (A limit of 0 here would make the kernel's EPERM the expected one.)
            return Err(format!("RLIMIT_MEMLOCK is not a nonzero limit here: {}", rl.rlim_cur));
        }
        deny(Deny::Call(libc::SYS_mlock, libc::EPERM)).map_err(|e| format!("installing the seccomp filter: {e}"))?;
        let e = lock().err().ok_or("locked under a filter that refuses mlock")?;
        let text = e.to_string();
        if errno_of(&e) != Some(libc::EPERM) || e.kind() != ErrorKind::PermissionDenied {
            return Err(format!("not the filter's EPERM: {}", describe(&e)));
        }
        if text.contains("lacks CAP_IPC_LOCK") || !text.contains("sandbox") {
            return Err(format!("a sandbox's refusal blamed on the limit: {text}"));
        }
        Ok(())
    });
    sandboxed.unwrap();
    let zero = in_child_reporting(CHILD_LIMIT, || {
        if !common::limit_locking_to(0) {
            // (A capability to lock remains: the kernel ignores the limit; nothing to judge.)
            return Ok(());
        }
        let e = lock().err().ok_or("locked with RLIMIT_MEMLOCK 0 and no CAP_IPC_LOCK")?;
        let text = e.to_string();
        if errno_of(&e) != Some(libc::EPERM) || !text.contains("RLIMIT_MEMLOCK is 0") {
            return Err(format!("a zero limit not named: {}", describe(&e)));
        }
        Ok(())
    });
    zero.unwrap();
}
