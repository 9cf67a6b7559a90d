//! Sandboxes installed after the probe: a process whose probe approved the mirror flag, then
//! running under a seccomp filter that refuses one form of a call, must still get rings.
//!
//! Each case runs in a forked child that installs a seccomp BPF filter returning an errno for
//! one form of `mremap` (flag value 4, or `old_len == 0`), for `memfd_create`, `membarrier` or
//! `pidfd_open`, the way an older kernel or a sandboxing library answers, and allows every
//! other call. The parent has probed every backend before forking, so the child inherits a
//! cache that says they all work: the situation of a library that sandboxes itself at
//! start-up, after something already probed. The child reports failures through a pipe and
//! always leaves through `_exit`.

#![cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]

mod common;

use std::error::Error as _;
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{compiler_fence, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{available, open_fds, our_mappings, page_size, spawn_child, Pattern};
use mirror_ring::{Backend, MirrorMap, RingOptions};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// The bound on a whole sandboxed case: far above any healthy run, so reaching it is a hang.
const CASE_LIMIT: Duration = Duration::from_secs(120);
/// The bound on one blocking call inside a case.
const LONG: Duration = Duration::from_secs(20);

use common::seccomp::{self, Deny};

/// A failed check inside a child: its message travels back to the parent.
type Check = Result<(), String>;

/// Fails the check with `msg` unless `cond`.
fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Check {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

/// Converts an I/O error into a check failure saying what was being done.
fn io<T>(what: &str, r: std::io::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e} (kind {:?}, errno {:?})", e.kind(), e.raw_os_error()))
}

/// Runs `body` in a forked child under a seccomp filter made of `rules`, and returns what it
/// reported: `Ok` or the message of the first failed check (or panic). The child always
/// `_exit`s; the whole case is bounded by [`CASE_LIMIT`].
fn sandboxed(rules: &[Deny], body: impl FnOnce() -> Check) -> Check {
    common::in_child_reporting(CASE_LIMIT, || {
        seccomp::install(rules).map_err(|e| format!("installing the seccomp filter: {e}"))?;
        body()
    })
}

/// Runs the probe of every backend in this (unsandboxed) process, so that a forked child
/// inherits a cache saying which work. Returns false, after saying why, if `needed` are not all
/// available here: the scenario then cannot be set up on this machine.
fn probed_in_parent(needed: &[Backend]) -> bool {
    let here = available();
    let missing: Vec<_> = needed.iter().filter(|b| !here.contains(b)).collect();
    if !missing.is_empty() {
        eprintln!("skipped: {missing:?} do not work on this machine, so no sandbox can take them away");
    }
    missing.is_empty()
}

/// Whether a byte written through each view is read back through the other, at the first, a
/// middle and the last byte.
fn mirrors(map: &MirrorMap) -> bool {
    let n = map.len();
    let p = map.as_ptr();
    [0, n / 2, n - 1].into_iter().enumerate().all(|(i, off)| {
        let tag = 0x3c ^ i as u8;
        // SAFETY: off < n and the map is valid for 2n bytes; only this thread uses it.
        // Volatile accesses and compiler fences: the compiler does not know the views alias.
        unsafe {
            p.add(off).write_volatile(tag);
            compiler_fence(Ordering::SeqCst);
            let b = p.add(n + off).read_volatile();
            p.add(n + off).write_volatile(!tag);
            compiler_fence(Ordering::SeqCst);
            b == tag && p.add(off).read_volatile() == !tag
        }
    })
}

/// A 4 KiB thread ring: one read grant across the seam in one slice, then 1 MiB streamed from
/// another thread in chunks that do not divide the capacity, every byte checked.
fn stream_through_a_thread_ring(expect: Backend) -> Check {
    let (mut tx, mut rx) = io("RingOptions::build", RingOptions::new().capacity(4096).build())?;
    ensure(tx.backend() == expect && rx.backend() == expect, || {
        format!("ring built with {}, not {expect}", tx.backend())
    })?;
    let pat = Pattern::new(0x5a4d);
    // Across the seam: bytes [3000, 6000) of the stream sit at ring offsets 3000..4096, 0..1904.
    io("write", tx.write_all(pat.at(0, 3000)))?;
    let g = io("read grant", rx.read_grant(3000))?;
    ensure(pat.matches(0, &g), || "wrong bytes before the seam".into())?;
    io("release", g.release(3000))?;
    io("write across the seam", tx.write_all(pat.at(3000, 3000)))?;
    let g = io("read grant across the seam", rx.read_grant(3000))?;
    ensure(g.len() == 3000 && pat.matches(3000, &g), || "the grant across the seam is not the stream".into())?;
    io("release", g.release(3000))?;
    let total = MIB as u64;
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let pat = Pattern::new(0x5a4d);
        let mut pos = 6000u64;
        while pos < total {
            let n = 1000.min((total - pos) as usize);
            tx.write_all(pat.at(pos, n))?;
            pos += n as u64;
        }
        Ok(())
    });
    let mut pos = 6000u64;
    while pos < total {
        let g = io("read grant", rx.read_grant_timeout(1, LONG))?;
        let n = g.len();
        ensure(pat.matches(pos, &g), || format!("wrong byte in [{pos}, {})", pos + n as u64))?;
        io("release", g.release(n))?;
        pos += n as u64;
    }
    io("writer", writer.join().map_err(|_| "writer panicked".to_string())?)?;
    let mut rest = [0u8; 1];
    ensure(io("read after close", rx.read(&mut rest))? == 0, || "end of stream expected".into())
}

/// Auto under `rules` (installed after the parent's probe, which approved every backend)
/// builds `expect` maps and rings that work, and downgrades exactly the refused backends.
fn auto_hands_over(rules: &[Deny], refused: &[Backend], expect: Backend) -> Check {
    sandboxed(rules, || {
        ensure(refused.iter().all(|b| b.is_available()), || "the inherited cache should approve every backend".into())?;
        let map = io("MirrorMap::new", MirrorMap::new(64 * KIB))?;
        ensure(map.backend() == expect, || format!("Auto built {}, expected {expect}", map.backend()))?;
        ensure(mirrors(&map), || format!("the {expect} map does not mirror"))?;
        ensure(map.as_fd().is_some() == (expect == Backend::Memfd), || "descriptor does not match the backend".into())?;
        for &b in refused {
            ensure(!b.is_available(), || format!("{b} refused at creation but still cached as available"))?;
        }
        ensure(Backend::Auto.is_available(), || "Auto must stay available while one backend works".into())?;
        ensure(Backend::Auto.resolve().ok() == Some(expect), || {
            "resolve() should name the backend Auto now uses".into()
        })?;
        // Later creations: the cache already says which backends are refused.
        let again = io("second MirrorMap::new", MirrorMap::new(4096))?;
        ensure(again.backend() == expect && mirrors(&again), || format!("second map: {}", again.backend()))?;
        stream_through_a_thread_ring(expect)?;
        let shared = io("RingOptions::shared", RingOptions::new().capacity(4096).shared())?;
        ensure(shared.backend() == expect, || format!("shared ring built with {}", shared.backend()))
    })
}

/// The scenario: flag value 4 refused with EINVAL (as Linux 5.7-5.12 refuses it), after
/// the probe approved it. Auto hands over to Duplicate.
#[test]
fn mirror_flag_refused_after_the_probe_hands_over_to_duplicate() {
    if !probed_in_parent(&[Backend::MirrorFlag, Backend::Duplicate]) {
        return;
    }
    auto_hands_over(&[Deny::MremapFlag4(libc::EINVAL)], &[Backend::MirrorFlag], Backend::Duplicate).unwrap();
}

/// A sandbox that answers flag value 4 with "success" without running the call (errno 0):
/// the address that comes back is not the target, which counts as a refusal, so Auto hands
/// over to Duplicate and stops offering the faked backend.
#[test]
fn mirror_flag_faked_as_successful_hands_over_to_duplicate() {
    if !probed_in_parent(&[Backend::MirrorFlag, Backend::Duplicate]) {
        return;
    }
    auto_hands_over(&[Deny::MremapFlag4(0)], &[Backend::MirrorFlag], Backend::Duplicate).unwrap();
}

/// The other refusal errnos a sandbox or kernel gives hand over too.
#[test]
fn mirror_flag_refused_with_eperm_eopnotsupp_or_enosys_hands_over_too() {
    if !probed_in_parent(&[Backend::MirrorFlag, Backend::Duplicate]) {
        return;
    }
    for errno in [libc::EPERM, libc::EOPNOTSUPP, libc::ENOSYS] {
        auto_hands_over(&[Deny::MremapFlag4(errno)], &[Backend::MirrorFlag], Backend::Duplicate)
            .unwrap_or_else(|e| panic!("errno {errno}: {e}"));
    }
}

/// Both mremap forms refused: Memfd.
#[test]
fn both_mremap_forms_refused_hand_over_to_memfd() {
    if !probed_in_parent(&Backend::CONCRETE) {
        return;
    }
    let rules = [Deny::MremapFlag4(libc::EINVAL), Deny::MremapDuplicate(libc::EINVAL)];
    auto_hands_over(&rules, &[Backend::MirrorFlag, Backend::Duplicate], Backend::Memfd).unwrap();
}

/// Every backend refused: `Unsupported` from every way of creating, naming each backend, with
/// the last OS error kept; nothing leaked by the failed attempts; Auto then reports itself
/// unavailable, and later creations fail the same way from the cache.
#[test]
fn every_backend_refused_is_unsupported_from_creation() {
    if !probed_in_parent(&Backend::CONCRETE) {
        return;
    }
    let rules = [
        Deny::MremapFlag4(libc::EINVAL),
        Deny::MremapDuplicate(libc::EINVAL),
        Deny::Call(libc::SYS_memfd_create, libc::ENOSYS),
    ];
    sandboxed(&rules, || {
        ensure(Backend::Auto.is_available(), || "the inherited cache should approve Auto".into())?;
        let maps = our_mappings();
        let fds = open_fds();
        let check = |what: &str, r: std::io::Result<()>, errno: i32| -> Check {
            let e = r.err().ok_or_else(|| format!("{what}: created something with every backend refused"))?;
            ensure(e.kind() == ErrorKind::Unsupported, || format!("{what}: {e} ({:?})", e.kind()))?;
            let msg = e.to_string();
            let names = if what.contains("Duplicate") { vec![Backend::Duplicate] } else { Backend::CONCRETE.to_vec() };
            ensure(names.iter().all(|b| msg.contains(b.name())), || {
                format!("{what}: message should name {names:?}: {msg}")
            })?;
            let os = e.source().and_then(|s| s.downcast_ref::<std::io::Error>()).and_then(|s| s.raw_os_error());
            ensure(os == Some(errno), || format!("{what}: source() should be errno {errno}, is {os:?}: {msg}"))
        };
        check("MirrorMap::new", MirrorMap::new(64 * KIB).map(drop), libc::ENOSYS)?;
        ensure(!Backend::Auto.is_available(), || "Auto still claims to be available".into())?;
        ensure(Backend::CONCRETE.iter().all(|b| !b.is_available()), || {
            "a refused backend is still cached as available".into()
        })?;
        ensure(Backend::Auto.resolve().map_err(|e| e.kind()) == Err(ErrorKind::Unsupported), || {
            "resolve() should fail".into()
        })?;
        check("RingOptions::build", RingOptions::new().build().map(drop), libc::ENOSYS)?;
        check("RingOptions::shared", RingOptions::new().shared().map(drop), libc::ENOSYS)?;
        // An explicit backend says why, from the cache.
        check(
            "MirrorMap::with_backend(Duplicate)",
            MirrorMap::with_backend(4096, Backend::Duplicate).map(drop),
            libc::EINVAL,
        )?;
        ensure(our_mappings() == maps, || "a refused attempt left a mapping behind".into())?;
        ensure(open_fds() == fds, || "a refused attempt left a descriptor open".into())
    })
    .unwrap();
}

/// An explicitly requested backend does not fall back: the kernel's error the first time, and
/// `Unsupported` (with that errno as the source) once the refusal is cached. Auto then skips it.
#[test]
fn an_explicit_backend_refused_returns_its_own_error() {
    if !probed_in_parent(&[Backend::MirrorFlag, Backend::Duplicate]) {
        return;
    }
    sandboxed(&[Deny::MremapFlag4(libc::EINVAL)], || {
        let first = MirrorMap::with_backend(64 * KIB, Backend::MirrorFlag);
        let e = first.map(|m| format!("a {} map", m.backend())).err().ok_or("explicit MirrorFlag built something")?;
        ensure(e.raw_os_error() == Some(libc::EINVAL), || format!("first refusal should be the kernel's EINVAL: {e}"))?;
        let e =
            MirrorMap::with_backend(64 * KIB, Backend::MirrorFlag).err().ok_or("second explicit MirrorFlag built")?;
        ensure(e.kind() == ErrorKind::Unsupported, || format!("once cached: Unsupported expected, got {e}"))?;
        let os = e.source().and_then(|s| s.downcast_ref::<std::io::Error>()).and_then(|s| s.raw_os_error());
        ensure(os == Some(libc::EINVAL), || format!("the cached errno should be the source: {e}"))?;
        let map = io("Auto after the refusal", MirrorMap::new(4096))?;
        ensure(map.backend() == Backend::Duplicate, || format!("Auto built {}", map.backend()))
    })
    .unwrap();
}

/// Errors that are not refusals (ENOMEM, EAGAIN from the flag-4 mremap) are returned as they
/// are (explained, `OutOfMemory` with the errno as the source: EAGAIN is the kernel's answer
/// under `mlockall(MCL_FUTURE)` past `RLIMIT_MEMLOCK`), not hidden by a fallback; the cache
/// keeps the backend.
#[test]
fn an_error_that_is_not_a_refusal_is_not_handed_over() {
    if !probed_in_parent(&[Backend::MirrorFlag, Backend::Duplicate]) {
        return;
    }
    sandboxed(&[Deny::MremapFlag4(libc::ENOMEM)], || {
        let e = MirrorMap::new(64 * KIB).map(|m| m.backend()).err().ok_or("ENOMEM was masked by a fallback")?;
        ensure(e.kind() == ErrorKind::OutOfMemory, || format!("OutOfMemory expected: {e}"))?;
        let os = e.source().and_then(|s| s.downcast_ref::<std::io::Error>()).and_then(|s| s.raw_os_error());
        ensure(os == Some(libc::ENOMEM), || format!("errno lost: {e}"))?;
        ensure(Backend::MirrorFlag.is_available(), || "an ENOMEM must not mark the backend unavailable".into())
    })
    .unwrap();
    sandboxed(&[Deny::MremapFlag4(libc::EAGAIN)], || {
        let e = MirrorMap::new(64 * KIB).map(|m| m.backend()).err().ok_or("EAGAIN was masked by a fallback")?;
        ensure(e.kind() == ErrorKind::OutOfMemory, || format!("OutOfMemory expected: {e}"))?;
        let os = e.source().and_then(|s| s.downcast_ref::<std::io::Error>()).and_then(|s| s.raw_os_error());
        ensure(os == Some(libc::EAGAIN), || format!("errno lost: {e}"))?;
        ensure(Backend::MirrorFlag.is_available(), || "an EAGAIN must not mark the backend unavailable".into())
    })
    .unwrap();
}

/// A refusal that depends on the request (flag 4 refused only above one page) hands this
/// request over, but the re-probe (one page) still works, so the backend stays available and a
/// one-page map still gets it.
#[test]
fn a_refusal_the_probe_does_not_confirm_hands_over_without_downgrading() {
    if !probed_in_parent(&[Backend::MirrorFlag, Backend::Duplicate]) {
        return;
    }
    let page = u32::try_from(page_size()).unwrap();
    sandboxed(&[Deny::MremapFlag4Above(page, libc::EINVAL)], || {
        let big = io("64 KiB map", MirrorMap::new(64 * KIB))?;
        ensure(big.backend() == Backend::Duplicate && mirrors(&big), || format!("64 KiB map: {}", big.backend()))?;
        ensure(Backend::MirrorFlag.is_available(), || {
            "one refused size must not disable the flag for every size".into()
        })?;
        let small = io("one-page map", MirrorMap::new(1))?;
        ensure(small.backend() == Backend::MirrorFlag && mirrors(&small), || {
            format!("one-page map: {}", small.backend())
        })
    })
    .unwrap();
    // The re-probe fails, but not with a refusal (ENOMEM for one page, EINVAL above): that
    // proves nothing about the form, so the cache keeps the backend too.
    let rules = [Deny::MremapFlag4Above(page, libc::EINVAL), Deny::MremapFlag4(libc::ENOMEM)];
    sandboxed(&rules, || {
        let big = io("64 KiB map", MirrorMap::new(64 * KIB))?;
        ensure(big.backend() == Backend::Duplicate, || format!("64 KiB map: {}", big.backend()))?;
        ensure(Backend::MirrorFlag.is_available(), || "a probe failing with ENOMEM confirmed a refusal".into())
    })
    .unwrap();
}

/// Whether this process has a pidfd open.
/// The pidfds this process holds. (A forked child inherits every descriptor its parent had at
/// the fork, including pidfds that other tests running in parallel threads had open, so a
/// test compares this list before and after, rather than expecting it empty.)
fn pidfds() -> Vec<String> {
    open_fds()
        .into_iter()
        .filter(|fd| {
            std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok_and(|l| l.to_string_lossy().contains("pidfd"))
        })
        .collect()
}

/// The result of a raw system call that the filter should refuse: its errno.
fn refused_errno(r: libc::c_long) -> Option<i32> {
    (r == -1).then(|| std::io::Error::last_os_error().raw_os_error()).flatten()
}

/// membarrier and pidfd_open refused in both processes: a few MiB through a 4 KiB ring with no
/// spin budget (nearly every hand-over parks on the futex, with full fences instead of the
/// membarrier pair) arrive byte-exact, and a blocked reader notices a SIGKILLed producer
/// through `/proc` within 1 s (10x the 100 ms design bound).
#[test]
fn without_membarrier_and_pidfd_open_blocking_and_death_detection_still_work() {
    let rules = [Deny::Call(libc::SYS_membarrier, libc::ENOSYS), Deny::Call(libc::SYS_pidfd_open, libc::ENOSYS)];
    sandboxed(&rules, || {
        let inherited = pidfds();
        // The filter is in force here and in every child forked from here.
        // SAFETY: membarrier(MEMBARRIER_CMD_QUERY) and pidfd_open(own pid) have no memory
        // effects; each would return a number, or here an error.
        let (mb, pidfd) = unsafe {
            (libc::syscall(libc::SYS_membarrier, 0, 0, 0), libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0))
        };
        ensure(refused_errno(mb) == Some(libc::ENOSYS), || format!("membarrier not refused: {mb}"))?;
        ensure(refused_errno(pidfd) == Some(libc::ENOSYS), || format!("pidfd_open not refused: {pidfd}"))?;

        // Two threads of this process, parking at nearly every hand-over.
        let total = 4 * MIB as u64;
        let (mut tx, mut rx) =
            io("thread ring", RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).build())?;
        let writer = std::thread::spawn(move || -> std::io::Result<mirror_ring::Stats> {
            let pat = Pattern::new(0xb10c);
            let mut pos = 0u64;
            while pos < total {
                let n = 3000.min((total - pos) as usize);
                let mut done = 0;
                while done < n {
                    done += tx.write_timeout(pat.at(pos + done as u64, n - done), LONG)?;
                }
                pos += n as u64;
            }
            Ok(tx.stats())
        });
        let pat = Pattern::new(0xb10c);
        let mut buf = vec![0u8; 8 * KIB];
        let mut pos = 0u64;
        loop {
            let n = io("thread stream read", rx.read_timeout(&mut buf, LONG))?;
            if n == 0 {
                break;
            }
            ensure(pat.matches(pos, &buf[..n]), || format!("threads: wrong byte in [{pos}, {})", pos + n as u64))?;
            pos += n as u64;
        }
        let wstats = io("thread writer", writer.join().map_err(|_| "writer panicked".to_string())?)?;
        ensure(pos == total, || format!("thread stream ended at {pos} of {total}"))?;
        // Without membarrier both sides fence: every park must still end by a wake-up.
        no_lost_wakeups("thread reader", rx.stats())?;
        ensure(wstats.lost_wakeups == 0, || format!("thread writer lost wake-ups: {wstats:?}"))?;

        // A stream between two sandboxed processes, parking at nearly every hand-over.
        let ring = io("shared ring", RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).shared())?;
        let child_ring = ring.clone();
        let mut producer = spawn_child(|| {
            let Ok(mut tx) = child_ring.into_producer() else { return 2 };
            let mut pos = 0u64;
            while pos < total {
                let n = 3000.min((total - pos) as usize);
                if tx.write_all(pat.at(pos, n)).is_err() {
                    return 3;
                }
                pos += n as u64;
            }
            if tx.stats().lost_wakeups != 0 {
                return 4;
            }
            0
        });
        let mut rx = io("claim consumer", ring.into_consumer())?;
        let mut pos = 0u64;
        loop {
            let n = io("stream read", rx.read_timeout(&mut buf, LONG))?;
            if n == 0 {
                break;
            }
            ensure(pat.matches(pos, &buf[..n]), || format!("wrong byte in [{pos}, {})", pos + n as u64))?;
            pos += n as u64;
        }
        ensure(pos == total, || format!("stream ended at {pos} of {total}"))?;
        no_lost_wakeups("process reader", rx.stats())?;
        let status = producer.wait_within(LONG);
        ensure(status == 0, || format!("producer exited with {status} (4: it lost wake-ups)"))?;

        // A reader blocked on an empty ring; its producer is SIGKILLed while it sleeps.
        let ring = io("shared ring", RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).shared())?;
        let child_ring = ring.clone();
        let mut victim = spawn_child(|| {
            let Ok(mut tx) = child_ring.into_producer() else { return 2 };
            if tx.write_all(b"last words").is_err() {
                return 3;
            }
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let mut rx = io("claim consumer", ring.into_consumer())?;
        let mut buf = [0u8; 64];
        let n = io("first read", rx.read_timeout(&mut buf, LONG))?;
        ensure(&buf[..n] == b"last words", || format!("read {:?}", &buf[..n]))?;
        let (err, latency) = victim.kill_during(Duration::from_millis(40), || rx.read_timeout(&mut buf, LONG).err());
        let status = victim.wait_within(LONG);
        let err = err.ok_or("the read returned data from a dead producer")?;
        ensure(err.kind() == ErrorKind::UnexpectedEof, || format!("UnexpectedEof expected: {err}"))?;
        ensure(latency < Duration::from_secs(1), || format!("death seen after {latency:?}"))?;
        ensure(status == 128 + libc::SIGKILL, || format!("victim status {status}"))?;
        // The watch could not have used a pidfd: the death was seen through /proc.
        let now = pidfds();
        ensure(now.iter().all(|fd| inherited.contains(fd)), || {
            format!("a pidfd was opened although pidfd_open was refused: {now:?}, inherited {inherited:?}")
        })?;
        drop(rx);
        Ok(())
    })
    .unwrap();
}

/// A stream's reader must have parked (or the stream tested nothing) and every park must have
/// ended by a wake-up, never by its bound with the data already there.
fn no_lost_wakeups(who: &str, s: mirror_ring::Stats) -> Check {
    ensure(s.parks > 0, || format!("{who} never parked: {s:?}"))?;
    ensure(s.lost_wakeups == 0, || format!("{who} lost wake-ups: {s:?}"))
}

/// The park mode a role records in a memfd ring's header (offset 24 of its 32-byte slot at
/// 32 for the producer, 64 for the consumer): 0 fence, 1 private, 2 global.
fn recorded_park(ring: &mirror_ring::SharedRing, slot: usize) -> u32 {
    let mut b = [0u8; 4];
    let fd = ring.as_fd().unwrap();
    // SAFETY: a valid descriptor and a 4-byte buffer.
    let n = unsafe { libc::pread(std::os::fd::AsRawFd::as_raw_fd(&fd), b.as_mut_ptr().cast(), 4, (slot + 24) as i64) };
    assert_eq!(n, 4);
    u32::from_le_bytes(b)
}

/// One process can use membarrier, its peer cannot (a sandbox). The sandboxed side parks with
/// a fence and says so in its role slot, whether it found out at its claim or only when its
/// first barrier failed; the other side then wakes it with a full fence. Streams both ways
/// end byte-exact with no lost wake-up on either side.
#[test]
fn a_peer_without_membarrier_is_woken_with_full_fences() {
    let deny = [Deny::Call(libc::SYS_membarrier, libc::ENOSYS)];
    for sandboxed_consumer in [true, false] {
        for claim_before_fork in [false, true] {
            let ring =
                RingOptions::new().capacity(4096).backend(Backend::Memfd).spin_budget(Duration::ZERO).shared().unwrap();
            let total = 2 * MIB as u64;
            let pat = Pattern::new(0xfe9ce);
            // The unsandboxed side: this process. Claiming before the fork leaves the child a
            // registration it inherits but cannot use.
            let (mut tx, mut rx) = (None, None);
            if claim_before_fork {
                if sandboxed_consumer {
                    tx = Some(ring.clone().into_producer().unwrap());
                } else {
                    rx = Some(ring.clone().into_consumer().unwrap());
                }
            }
            let child_ring = ring.clone();
            let pat_ = &pat;
            let mut child = spawn_child(move || {
                let pat = pat_;
                if seccomp::install(&deny).is_err() {
                    return 9;
                }
                let stats = if sandboxed_consumer {
                    let Ok(mut rx) = child_ring.into_consumer() else { return 2 };
                    let mut buf = vec![0u8; 3000];
                    let mut pos = 0u64;
                    loop {
                        match rx.read_timeout(&mut buf, LONG) {
                            Ok(0) => break,
                            Ok(n) if pat.matches(pos, &buf[..n]) => pos += n as u64,
                            _ => return 3,
                        }
                    }
                    if pos != total {
                        return 3;
                    }
                    rx.stats()
                } else {
                    let Ok(mut tx) = child_ring.into_producer() else { return 2 };
                    let mut pos = 0u64;
                    while pos < total {
                        let n = 2500.min((total - pos) as usize);
                        if tx.write_all(pat.at(pos, n)).is_err() {
                            return 3;
                        }
                        pos += n as u64;
                    }
                    tx.stats()
                };
                if stats.parks == 0 || stats.lost_wakeups != 0 {
                    // Straight to stderr: in this forked copy of a test thread the harness
                    // would capture an eprintln! and lose it with the process.
                    let side = if sandboxed_consumer { "consumer" } else { "producer" };
                    let msg = format!("sandboxed {side}, claimed before fork {claim_before_fork}: {stats:?}\n");
                    let _ = std::io::stderr().write_all(msg.as_bytes());
                    return 4;
                }
                0
            });
            let what = format!(
                "sandboxed {}, claimed before fork {claim_before_fork}",
                if sandboxed_consumer { "consumer" } else { "producer" }
            );
            let (slot, stats) = if sandboxed_consumer {
                let mut tx = tx.unwrap_or_else(|| ring.clone().into_producer().unwrap());
                let mut pos = 0u64;
                while pos < total {
                    let n = 2500.min((total - pos) as usize);
                    tx.write_all(pat.at(pos, n)).unwrap();
                    pos += n as u64;
                }
                let s = tx.stats();
                drop(tx);
                (64, s)
            } else {
                let mut rx = rx.unwrap_or_else(|| ring.clone().into_consumer().unwrap());
                let mut buf = vec![0u8; 3000];
                let mut pos = 0u64;
                loop {
                    let n = rx.read_timeout(&mut buf, LONG).unwrap();
                    if n == 0 {
                        break;
                    }
                    assert!(pat.matches(pos, &buf[..n]), "{what}: wrong bytes at {pos}");
                    pos += n as u64;
                }
                assert_eq!(pos, total, "{what}");
                (32, rx.stats())
            };
            assert_eq!(child.wait_within(LONG), 0, "{what}: 2 claim, 3 stream, 4 lost wake-ups or no park, 9 filter");
            assert_eq!(stats.lost_wakeups, 0, "{what}: {stats:?}");
            assert_eq!(recorded_park(&ring, slot), 0, "{what}: the sandboxed side does not record fence parking");
        }
    }
}

/// A process whose first thread has exited while another thread holds the producer shows
/// state `Z` in `/proc/<pid>/stat`, and lives. With `pidfd_open` refused (older kernels,
/// sandboxes) the watcher checks `/proc`: it must not take that for a death, so a take-over
/// of the role is refused.
#[test]
fn a_holder_whose_first_thread_exited_is_not_taken_for_dead_through_proc() {
    let ring = RingOptions::new().capacity(1 << 16).shared().unwrap();
    let page = common::SharedPage::new(); // 0: the holder claimed, 1: the check is done
    let holder_ring = ring.clone();
    let mut holder = spawn_child(|| {
        // The page's two words, for the writer thread (the page is not `Sync`).
        let words = (page.word(0) as *const AtomicU64 as usize, page.word(1) as *const AtomicU64 as usize);
        let writer = std::thread::spawn(move || {
            // SAFETY: the page stays mapped for as long as this process lives (it leaves
            // through _exit, never unmapping it); the words are atomics.
            let (claimed, done) = unsafe { (&*(words.0 as *const AtomicU64), &*(words.1 as *const AtomicU64)) };
            let mut tx = holder_ring.into_producer().unwrap();
            claimed.store(1, Ordering::SeqCst);
            // Write until the check is done: the role is in use all along.
            while done.load(Ordering::SeqCst) == 0 {
                if tx.try_write(b"x").is_err_and(|e| e.kind() != ErrorKind::WouldBlock) {
                    // SAFETY: _exit ends the process at once, as a child must.
                    unsafe { libc::_exit(7) };
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            // SAFETY: as above.
            unsafe { libc::_exit(0) };
        });
        std::mem::forget(writer);
        while page.word(0).load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // SAFETY: ends only this thread (the thread group's leader); the writer goes on.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
        unreachable!()
    });
    let deadline = Instant::now() + CASE_LIMIT;
    while holder.state() != 'Z' {
        assert!(Instant::now() < deadline, "the holder's first thread never exited");
        std::thread::sleep(Duration::from_millis(1));
    }
    let verdict = sandboxed(&[Deny::Call(libc::SYS_pidfd_open, libc::ENOSYS)], || {
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(holder.pid(), 0) } == 0;
        ensure(alive, || "the holder is gone".into())?;
        match ring.take_over_producer() {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Ok(_) => Err("a live holder's role was taken over".into()),
            Err(e) => Err(format!("take_over_producer: {e}")),
        }
    });
    page.word(1).store(1, Ordering::SeqCst);
    assert_eq!(holder.wait_within(CASE_LIMIT), 0, "7: the holder's write failed");
    verdict.unwrap();
}

/// With `pidfd_open` refused and `/proc` unreadable (every open refused), the only thing the
/// watch can learn about a live peer is that `kill(pid, 0)` finds it: that proves nothing about
/// a death, so the answer is "unknown", never "dead". A bounded read then times out; it does not
/// report the (live) producer gone.
#[test]
fn without_pidfds_or_proc_a_live_peer_is_never_taken_for_dead() {
    let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    // The producer's holder is this (test) process: alive for the whole case.
    let tx = ring.clone().into_producer().unwrap();
    let rules = [
        Deny::Call(libc::SYS_pidfd_open, libc::ENOSYS),
        // (aarch64 has no open(2), only openat.)
        #[cfg(target_arch = "x86_64")]
        Deny::Call(libc::SYS_open, libc::EACCES),
        Deny::Call(libc::SYS_openat, libc::EACCES),
        Deny::Call(libc::SYS_openat2, libc::EACCES),
    ];
    sandboxed(&rules, || {
        ensure(std::fs::read("/proc/self/stat").is_err(), || "/proc is still readable".to_string())?;
        let mut rx = io("claim consumer", ring.into_consumer())?;
        let r = rx.read_timeout(&mut [0u8; 8], Duration::from_millis(150)).map_err(|e| e.kind());
        ensure(r == Err(ErrorKind::TimedOut), || format!("a live producer's consumer read {r:?}"))?;
        ensure(!rx.is_abandoned(), || "the live producer was taken for dead".to_string())
    })
    .unwrap();
    drop(tx);
}
