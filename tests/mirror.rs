//! The mirrored mapping on its own: every backend mirrors, lengths round, errors are clear, and
//! nothing leaks.

mod common;

use std::io::ErrorKind;
use std::sync::atomic::{compiler_fence, Ordering};

use common::{
    available, in_child, limit_locking_to, locked_bytes, mapped_at, mirrors_at, open_fds, our_mappings, page_size,
    vm_size,
};
use mirror_ring::{Backend, MirrorMap, MirrorOptions};

#[test]
fn every_backend_mirrors_both_ways_at_first_middle_last_byte() {
    for b in available() {
        let map = MirrorMap::with_backend(1 << 16, b).unwrap();
        assert_eq!(map.backend(), b);
        let n = map.len();
        for (i, off) in [0, 1, n / 2 - 1, n / 2, n - 2, n - 1].into_iter().enumerate() {
            assert!(mirrors_at(&map, off, 0x40 + i as u8), "{b}: offset {off} is not mirrored");
        }
    }
}

#[test]
fn a_slice_across_the_seam_is_the_ring_wrapped() {
    for b in available() {
        let map = MirrorMap::with_backend(page_size(), b).unwrap();
        let n = map.len();
        // Fill the first view with a pattern, then look at a window straddling the seam.
        for i in 0..n {
            // SAFETY: i < n, inside view A.
            unsafe { map.as_ptr().add(i).write_volatile((i % 251) as u8) };
        }
        compiler_fence(Ordering::SeqCst);
        let start = n - 100;
        // SAFETY: [start, start + 200) lies within the 2n valid bytes; nothing else writes.
        let window = unsafe { std::slice::from_raw_parts(map.as_ptr().add(start), 200) };
        for (k, &v) in window.iter().enumerate() {
            assert_eq!(v, (((start + k) % n) % 251) as u8, "{b}: byte {k} of the window");
        }
        // And writing across the seam lands at the start of the ring.
        for k in 0..200 {
            // SAFETY: within the 2n valid bytes.
            unsafe { map.as_ptr().add(start + k).write_volatile(0xEE) };
        }
        compiler_fence(Ordering::SeqCst);
        for k in 0..100 {
            // SAFETY: k < n.
            assert_eq!(unsafe { map.as_ptr().add(k).read_volatile() }, 0xEE, "{b}: wrapped byte {k}");
        }
    }
}

#[test]
fn sizes_from_one_page_to_one_gib() {
    for b in available() {
        let mut len = page_size();
        while len <= 1 << 30 {
            let map = MirrorMap::with_backend(len, b).unwrap_or_else(|e| panic!("{b} at {len}: {e}"));
            assert_eq!(map.len(), len);
            // Touch only a few pages: the large maps stay untouched.
            for off in [0, len / 2, len - 1] {
                assert!(mirrors_at(&map, off, 0x11), "{b} at {len}: offset {off}");
            }
            len *= 4;
        }
    }
}

#[test]
fn lengths_round_up_to_a_power_of_two_of_at_least_a_page_size() {
    let p = page_size();
    for (asked, got) in [(1, p), (p - 1, p), (p, p), (p + 1, 2 * p), (10_000, 16_384.max(p)), (3 << 20, 4 << 20)] {
        assert_eq!(MirrorMap::new(asked).unwrap().len(), got, "asked for {asked}");
    }
}

#[test]
fn zero_and_absurd_lengths_are_errors_not_panics() {
    for len in [0, usize::MAX, usize::MAX / 2 + 2, 1 << 62] {
        let e = MirrorMap::new(len).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "len {len}: {e}");
    }
    // Representable, but the two views (2 x 64 TiB) exceed a 47-bit user address space. (A
    // 32 TiB memfd ring would succeed: memfd memory is charged on first touch, not at mmap.)
    for b in available() {
        let e = MirrorMap::with_backend(1 << 46, b).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfMemory, "{b}: {e}");
        let msg = e.to_string();
        assert!(msg.contains("RLIMIT_AS"), "{b}: the message should name the likely cause: {msg}");
        let os = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(os.and_then(|s| s.raw_os_error()), Some(libc::ENOMEM), "{b}: errno kept as source");
    }
}

#[test]
fn auto_resolves_to_an_available_concrete_backend() {
    assert!(Backend::Auto.is_available());
    let chosen = Backend::Auto.resolve().unwrap();
    assert!(Backend::CONCRETE.contains(&chosen) && chosen.is_available());
    let map = MirrorMap::new(page_size()).unwrap();
    assert_eq!(map.backend(), chosen);
    assert_eq!(map.as_fd().is_some(), chosen == Backend::Memfd);
    // On the kernels this project targets (5.13+) the flag form is what Auto picks.
    let release = mirror_ring::kernel_release();
    let mut nums = release.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse::<u32>().ok());
    let version = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    if version >= (5, 13) {
        assert_eq!(chosen, Backend::MirrorFlag, "kernel {release}");
    }
}

/// Creating and dropping thousands of maps leaves this process's mappings and descriptors as
/// they were. Runs in a forked child, which is single-threaded, so nothing else maps or opens
/// anything meanwhile.
#[test]
fn thousands_of_create_drop_cycles_leak_nothing() {
    let backends = available();
    let status = in_child(move || {
        let maps = our_mappings();
        let fds = open_fds();
        for i in 0..3000usize {
            let b = backends[i % backends.len()];
            let opts = MirrorOptions::new().backend(b).prefault(i % 7 == 0).dont_fork(i % 5 == 0).clone();
            let map = match opts.map(page_size() << (i % 5)) {
                Ok(m) => m,
                Err(_) => return 2,
            };
            let base = map.as_ptr() as usize - page_size();
            let total = page_size() + 2 * map.len();
            drop(map);
            if mapped_at(base, total) {
                return 3;
            }
        }
        if our_mappings() != maps {
            return 4;
        }
        if open_fds() != fds {
            return 5;
        }
        0
    });
    assert_eq!(status, 0, "2: create failed, 3: a reservation survived drop, 4: mappings leaked, 5: fds leaked");
}

#[test]
fn a_forked_childs_write_is_seen_by_the_parent() {
    for b in available() {
        let map = MirrorMap::with_backend(1 << 16, b).unwrap();
        let n = map.len();
        let addr = map.as_ptr() as usize;
        let status = in_child(move || {
            let p = addr as *mut u8;
            // SAFETY: the child inherited the mapping at the same address; it writes through
            // both views and exits.
            unsafe {
                p.add(10).write_volatile(0xC1);
                p.add(n + 20).write_volatile(0xC2);
            }
            0
        });
        assert_eq!(status, 0);
        compiler_fence(Ordering::SeqCst);
        // SAFETY: the parent's mapping, same pages as the child's.
        unsafe {
            assert_eq!(map.as_ptr().add(n + 10).read_volatile(), 0xC1, "{b}");
            assert_eq!(map.as_ptr().add(20).read_volatile(), 0xC2, "{b}");
        }
    }
}

#[test]
fn dont_fork_keeps_the_whole_map_out_of_children() {
    let map = MirrorOptions::new().dont_fork(true).map(1 << 16).unwrap();
    let (base, total) = (map.as_ptr() as usize - page_size(), page_size() + 2 * map.len());
    assert!(mapped_at(base, total));
    let status = in_child(move || if mapped_at(base, total) { 1 } else { 0 });
    assert_eq!(status, 0, "the child still has (part of) the ring");
}

/// RLIMIT_AS counts both views: a child whose limit leaves room for one view but not two gets
/// an `OutOfMemory` error with ENOMEM as its source, not a crash.
#[test]
fn a_tight_rlimit_as_gives_enomem_not_a_crash() {
    for b in available() {
        let status = in_child(move || {
            let n: usize = 256 << 20;
            let Some(vm_size) = vm_size() else { return 2 };
            // Room for about 1.5 views on top of what is mapped now.
            let lim = (vm_size + n + n / 2) as libc::rlim_t;
            let rl = libc::rlimit { rlim_cur: lim, rlim_max: lim };
            // SAFETY: rl is a valid rlimit; lowering our own limit.
            if unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) } != 0 {
                return 3;
            }
            match MirrorMap::with_backend(n, b) {
                Ok(_) => 4,
                Err(e) if e.kind() != ErrorKind::OutOfMemory => 5,
                Err(e) => {
                    let os = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>());
                    if os.and_then(|o| o.raw_os_error()) != Some(libc::ENOMEM) {
                        return 6;
                    }
                    // A map that fits still works under the same limit.
                    match MirrorMap::with_backend(1 << 20, b) {
                        Ok(m) if mirrors_at(&m, 5, 9) => 0,
                        _ => 7,
                    }
                }
            }
        });
        assert_eq!(status, 0, "{b}: 4 = created anyway, 5 = wrong kind, 6 = errno lost, 7 = small map failed");
    }
}

/// `RLIMIT_AS` with room for the whole map (`H + 2N` on top of what is mapped, and 1 MiB to
/// spare): every backend makes it, except `Duplicate`, whose `mremap` the kernel charges for
/// view B before it unmaps the reserved range that view replaces (docs::accounting): it fails
/// with `OutOfMemory` saying it needs room for a third view (before, the message said that
/// both views fit), and makes the map with `H + 3N` of room. (From an adversarial review.)
#[test]
fn rlimit_as_with_room_for_both_views_makes_the_map_and_duplicate_needs_a_third() {
    let n: usize = 64 << 20;
    for b in available() {
        let status = in_child(move || {
            let Some(vm) = vm_size() else { return 2 };
            let room = |views: usize| vm + page_size() + views * n + (1 << 20);
            if common::set_soft_limit(libc::RLIMIT_AS, room(2)).is_none() {
                return 2;
            }
            match (MirrorMap::with_backend(n, b), b) {
                (Ok(m), Backend::MirrorFlag | Backend::Memfd) if mirrors_at(&m, n - 1, 0x77) => 0,
                (Err(e), Backend::Duplicate)
                    if e.kind() == ErrorKind::OutOfMemory && e.to_string().contains("third") =>
                {
                    if common::set_soft_limit(libc::RLIMIT_AS, room(3)).is_none() {
                        return 2;
                    }
                    match MirrorMap::with_backend(n, b) {
                        Ok(m) if mirrors_at(&m, n - 1, 0x77) => 0,
                        _ => 4,
                    }
                }
                (r, _) => {
                    eprintln!("{b}: {:?}", r.map(|m| m.len()));
                    3
                }
            }
        });
        assert_eq!(status, 0, "{b}: 2 = setup, 3 = not as documented, 4 = duplicate failed with room for three views");
    }
}

/// A memfd larger than `RLIMIT_FSIZE` allows: `ftruncate` would fail with EFBIG *and* the
/// kernel would send SIGXFSZ, whose default action ends the process. Creation must refuse it
/// first, with EFBIG as the source and a message naming the limit, and leave nothing; a map
/// within the limit still works. Every path that sizes a memfd: the `Memfd` backend (a map,
/// and a ring's `shared()`) and the hugetlb memfd of `huge_pages` (which sizes it before it
/// needs a single huge page).
#[test]
fn a_memfd_over_rlimit_fsize_is_an_error_not_a_signal() {
    let status = in_child(|| {
        let (maps_before, fds_before) = (our_mappings(), open_fds());
        // No core file should the signal come after all.
        common::set_soft_limit(libc::RLIMIT_CORE, 0);
        // Four pages (16 KiB where pages are 4 KiB): room for a one-page map and its header page,
        // far from the 1 MiB and 2 MiB maps below.
        if common::set_soft_limit(libc::RLIMIT_FSIZE, 4 * page_size()).is_none() {
            return 2;
        }
        let attempts = [
            ("a Memfd map", MirrorOptions::new().backend(Backend::Memfd).map(1 << 20).map(drop)),
            (
                "a Memfd ring",
                mirror_ring::RingOptions::new().capacity(1 << 20).backend(Backend::Memfd).shared().map(drop),
            ),
            ("a huge-page map", MirrorOptions::new().huge_pages(true).map(2 << 20).map(drop)),
        ];
        for (what, r) in attempts {
            let Err(e) = r else {
                eprintln!("{what} over RLIMIT_FSIZE was made");
                return 3;
            };
            let os = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>());
            if os.and_then(|o| o.raw_os_error()) != Some(libc::EFBIG) || !e.to_string().contains("RLIMIT_FSIZE") {
                eprintln!("{what}: {e} ({e:?})");
                return 4;
            }
        }
        if our_mappings() != maps_before || open_fds() != fds_before {
            return 5;
        }
        // A page of data and its header page: within the limit.
        match MirrorOptions::new().backend(Backend::Memfd).map(page_size()) {
            Ok(m) if mirrors_at(&m, 1, 2) => 0,
            _ => 6,
        }
    });
    assert_eq!(
        status,
        0,
        "{} = killed by SIGXFSZ, 2 = setrlimit failed, 3 = made anyway, 4 = not EFBIG naming the limit, \
         5 = left something behind, 6 = a map within the limit failed",
        128 + libc::SIGXFSZ
    );
}

#[test]
fn the_memfd_cannot_be_resized_or_unsealed_by_another_holder() {
    let map = MirrorMap::with_backend(1 << 16, Backend::Memfd).unwrap();
    let fd = map.as_fd().unwrap().try_clone_to_owned().unwrap();
    use std::os::fd::AsRawFd;
    for len in [0i64, 4096, (page_size() + map.len()) as i64 * 2] {
        // SAFETY: plain syscall on our own descriptor.
        let r = unsafe { libc::ftruncate(fd.as_raw_fd(), len) };
        assert_eq!(r, -1, "ftruncate to {len} succeeded");
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EPERM), "ftruncate to {len}");
    }
    // SAFETY: plain fcntl on our own descriptor.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    assert_eq!(seals & want, want);
    // SAFETY: as above.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_WRITE) };
    assert_eq!(r, -1, "F_SEAL_SEAL must forbid adding seals");
    // The ring is still intact.
    assert!(mirrors_at(&map, map.len() - 1, 0x77));
}

/// Prefault populates the page tables of *both* views (each view faults separately), as the
/// per-mapping Rss in /proc/self/smaps shows.
#[test]
fn prefault_populates_both_views() {
    for b in available() {
        let len = 1 << 20;
        let cold = MirrorOptions::new().backend(b).map(len).unwrap();
        let warm = MirrorOptions::new().backend(b).prefault(true).map(len).unwrap();
        let rss = |m: &MirrorMap| (rss_kib(m.as_ptr() as usize), rss_kib(m.as_ptr() as usize + m.len()));
        let (a, bv) = rss(&warm);
        assert!(a >= len / 1024 && bv >= len / 1024, "{b}: prefaulted views hold {a} and {bv} KiB");
        let (a, bv) = rss(&cold);
        assert!(a < len / 1024 && bv < len / 1024, "{b}: untouched views hold {a} and {bv} KiB");
    }
}

/// `lock_memory` locks the control page and both views: `VmLck` grows by `H + 2N` (the
/// kernel counts each view), both views are resident, and the lock goes with the map. In a
/// child, which starts with nothing locked (`fork` does not pass locks on).
#[test]
fn lock_memory_locks_the_control_page_and_both_views() {
    for b in available() {
        let status = in_child(move || {
            if locked_bytes() != 0 {
                return 2;
            }
            let n = 1 << 20;
            let map = MirrorOptions::new().backend(b).lock_memory(true).map(n).unwrap();
            if locked_bytes() != page_size() + 2 * n {
                return 3;
            }
            let (a, bv) = (rss_kib(map.as_ptr() as usize), rss_kib(map.as_ptr() as usize + n));
            if a < n / 1024 || bv < n / 1024 {
                return 4;
            }
            if !mirrors_at(&map, n - 1, 0x3c) {
                return 5;
            }
            drop(map);
            if locked_bytes() != 0 {
                return 6;
            }
            0
        });
        assert_eq!(
            status, 0,
            "{b}: 2 = child inherited locks, 3 = VmLck is not H + 2N, 4 = a view not resident, 5 = no mirror, \
             6 = still locked after drop"
        );
    }
}

/// `RLIMIT_MEMLOCK` counts both views: an unprivileged child whose limit has room for one
/// view and not two gets `OutOfMemory` naming the limit, ENOMEM as `source()`, and nothing
/// left mapped or locked; half the size fits; a zero limit is `PermissionDenied`.
#[test]
fn a_tight_rlimit_memlock_refuses_the_lock_clearly() {
    for b in available() {
        let status = in_child(move || {
            let n: usize = 1 << 20;
            if !limit_locking_to(page_size() + n + n / 2) {
                return 2;
            }
            let maps_before = our_mappings();
            match MirrorOptions::new().backend(b).lock_memory(true).map(n) {
                Ok(_) => return 3,
                Err(e) if e.kind() != ErrorKind::OutOfMemory => return 4,
                Err(e) => {
                    if !e.to_string().contains("RLIMIT_MEMLOCK") {
                        return 5;
                    }
                    let os = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>());
                    if os.and_then(|o| o.raw_os_error()) != Some(libc::ENOMEM) {
                        return 6;
                    }
                }
            }
            if our_mappings() != maps_before || locked_bytes() != 0 {
                return 7;
            }
            match MirrorOptions::new().backend(b).lock_memory(true).map(n / 2) {
                Ok(m) if locked_bytes() == page_size() + n && mirrors_at(&m, 5, 9) => {}
                _ => return 8,
            }
            if !limit_locking_to(0) {
                return 2;
            }
            match MirrorOptions::new().backend(b).lock_memory(true).map(n / 2) {
                Err(e) if e.kind() == ErrorKind::PermissionDenied && e.to_string().contains("RLIMIT_MEMLOCK") => 0,
                _ => 9,
            }
        });
        assert_eq!(
            status, 0,
            "{b}: 2 = could not limit locking here, 3 = locked anyway, 4 = wrong kind, 5 = limit not named, \
             6 = errno lost, 7 = left mapped or locked, 8 = the map that fits failed, 9 = zero limit not \
             PermissionDenied"
        );
    }
}

/// A process that locks its future mappings (`mlockall(MCL_FUTURE)`, as audio and SDR programs
/// do) gets every map locked, both views, and gives every locked byte back when the map goes:
/// `VmLck` returns to where it was. View A is locked from the moment it is mapped, and the
/// value-4 `mremap` on a locked source leaks `locked_vm` accounting (KERNEL.md): before, each
/// mirror-flag map (so each `Auto` map) left `H + N` bytes counted for the life of the process.
/// (From an adversarial review of map construction.)
#[test]
fn under_mlockall_future_maps_are_locked_and_give_their_lock_back() {
    for b in available().into_iter().chain([Backend::Auto]) {
        let status = in_child(move || {
            // SAFETY: a plain call on this process's own memory policy, in a forked child.
            if unsafe { libc::mlockall(libc::MCL_FUTURE) } != 0 {
                return 2;
            }
            let n = 1 << 20;
            let before = locked_bytes();
            for _ in 0..4 {
                let Ok(map) = MirrorMap::with_backend(n, b) else { return 3 };
                if locked_bytes() < before + 2 * n {
                    eprintln!("{b}: VmLck {before} before a 1 MiB map, {} with it", locked_bytes());
                    return 4;
                }
                if !mirrors_at(&map, n - 1, 0x5a) {
                    return 5;
                }
                drop(map);
                if locked_bytes() != before {
                    eprintln!("{b}: VmLck {before} before a 1 MiB map, {} after it was dropped", locked_bytes());
                    return 6;
                }
            }
            0
        });
        assert_eq!(
            status, 0,
            "{b}: 2 = mlockall failed, 3 = no map, 4 = both views not locked, 5 = no mirror, 6 = locked bytes \
             left behind"
        );
    }
}

/// The consequence for an unprivileged process under `MCL_FUTURE` (`RLIMIT_MEMLOCK` of 8 MiB,
/// room for three 1 MiB rings at once): making and dropping one ring at a time goes on for ever
/// (before, the sixth failed, each dropped ring having left 1 MiB counted); and a ring over the
/// limit is refused with `OutOfMemory` naming `MCL_FUTURE` and the limit, `EAGAIN` as its
/// `source()` (before: a bare `EAGAIN`, kind `WouldBlock`).
#[test]
fn under_mlockall_future_rings_come_and_go_within_rlimit_memlock() {
    let status = in_child(|| {
        // Probed before the limit, as a process's first ring would be.
        let _ = Backend::Auto.is_available();
        if !limit_locking_to(8 << 20) {
            return 2;
        }
        // SAFETY: as above.
        if unsafe { libc::mlockall(libc::MCL_FUTURE) } != 0 {
            return 3;
        }
        for i in 0..32 {
            if let Err(e) = mirror_ring::RingOptions::new().capacity(1 << 20).build() {
                eprintln!("ring {i}: {e} (VmLck {})", locked_bytes());
                return 4;
            }
        }
        match MirrorMap::new(8 << 20) {
            Err(e) if e.kind() == ErrorKind::OutOfMemory && e.to_string().contains("MCL_FUTURE") => {
                let os = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>());
                if os.and_then(|o| o.raw_os_error()) != Some(libc::EAGAIN) {
                    return 6;
                }
            }
            other => {
                eprintln!("an 8 MiB map under an 8 MiB RLIMIT_MEMLOCK: {:?}", other.map(|m| m.len()));
                return 5;
            }
        }
        0
    });
    assert_eq!(
        status, 0,
        "2 = cannot limit locking here, 3 = mlockall failed, 4 = a ring could not be made, 5 = the map over the \
         limit not OutOfMemory naming MCL_FUTURE, 6 = EAGAIN lost"
    );
}

/// The Rss (KiB) of the mapping that contains `addr`, from /proc/self/smaps.
fn rss_kib(addr: usize) -> usize {
    let kib = common::smaps_kb(addr, "Rss").unwrap_or_else(|| panic!("no mapping at {addr:#x}"));
    kib as usize
}

#[test]
fn maps_are_send_sync_and_debug() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<MirrorMap>();
    let map = MirrorMap::new(page_size()).unwrap();
    let s = format!("{map:?}");
    assert!(s.contains("MirrorMap") && s.contains("len"), "{s}");
    assert_eq!(format!("{}", Backend::Duplicate), "duplicate");
}
