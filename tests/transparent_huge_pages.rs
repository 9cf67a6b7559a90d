//! Transparent huge pages (`RingOptions::transparent_huge_pages`,
//! `MirrorOptions::transparent_huge_pages`): shared memory in 2 MiB pages without a reserved
//! pool, mirrored by every mremap backend with both views mapped in 2 MiB entries, streamed
//! across the seam between threads and across fork, locked, kept out of children, unmapped on
//! drop; and where the kernel's knob says no, a clear error.
//!
//! The kernel decides through `/sys/kernel/mm/transparent_hugepage/shmem_enabled`, which most
//! machines ship as `never`. Run as root, each test sets it to what it needs (`advise`: only
//! memory that asks gets huge pages, so nothing else on the machine changes) and puts the old
//! value back when it ends, also when it fails, holding a lock meanwhile so that the tests of
//! this file never change it under each other (nor tests in other processes:
//! `common::knob_lock`). Without root, the tests that need huge pages
//! check the error path instead.

mod common;

use std::io::ErrorKind;

use common::{in_child, locked_bytes, mapped_at, mirrors_at, open_fds, our_mappings, page_size, smaps_kb, Pattern};
use mirror_ring::{Backend, MirrorMap, MirrorOptions, RingOptions};

const HUGE: usize = 2 << 20;
const KNOB: &str = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";
/// The per-size knob for 2 MiB pages (Linux 6.11+), which decides unless it says `inherit`.
const KNOB_2M: &str = "/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/shmem_enabled";

/// A knob's selected value (`never` in `always within_size advise [never] deny force`).
fn selected(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let (_, rest) = text.split_once('[')?;
    Some(rest.split_once(']')?.0.to_owned())
}

/// The top-level knob's value.
fn mode() -> Option<String> {
    selected(KNOB)
}

/// The test's hold on the knobs: the lock, and the values to put back (those it changed).
struct Knobs {
    restore: Vec<(&'static str, String)>,
    /// The knobs are global (`common::knob_lock`).
    _lock: common::KnobLock,
}

impl Drop for Knobs {
    fn drop(&mut self) {
        for (path, old) in self.restore.iter().rev() {
            if let Err(e) = std::fs::write(path, old) {
                eprintln!("could not put {path} back to {old}: {e}");
            }
        }
    }
}

/// Takes the lock and sets the top-level knob to `top` and the 2 MiB knob (where the kernel
/// has one) to `per_size`, unless they say that already. `Err(knobs)` (still holding the lock)
/// when one cannot be set here (not root, or no such knob).
fn set_knobs(top: &str, per_size: &str) -> Result<Knobs, Knobs> {
    let lock = common::knob_lock();
    let mut knobs = Knobs { restore: Vec::new(), _lock: lock };
    for (path, want) in [(KNOB, top), (KNOB_2M, per_size)] {
        let Some(now) = selected(path) else {
            if path == KNOB {
                return Err(knobs);
            }
            continue; // a kernel before 6.11: the top-level knob alone decides
        };
        if now == want {
            continue;
        }
        if std::fs::write(path, want).is_err() {
            return Err(knobs);
        }
        knobs.restore.push((path, now));
        if selected(path).as_deref() != Some(want) {
            return Err(knobs);
        }
    }
    Ok(knobs)
}

/// Both knobs set ([`set_knobs`]) for a test of the 2 MiB knob; `None`, having said why on
/// stderr, where they cannot be set or the kernel has no 2 MiB knob (before 6.11). The lock
/// comes first: every read of a knob, the check for the 2 MiB one included, opens a descriptor,
/// which a test counting descriptors under the lock must not see (it once did).
fn set_both_knobs(top: &str, per_size: &str) -> Option<Knobs> {
    let Ok(knobs) = set_knobs(top, per_size) else {
        eprintln!("not root: the knobs cannot be set");
        return None;
    };
    if selected(KNOB_2M).is_none() {
        eprintln!("no per-size knob (a kernel before 6.11): nothing to check");
        return None;
    }
    Some(knobs)
}

/// The top-level knob at `top`, the 2 MiB one deferring to it.
fn set_knob(top: &str) -> Result<Knobs, Knobs> {
    set_knobs(top, "inherit")
}

/// Shared memory may have transparent huge pages (`advise`), for as long as the result lives.
fn allow() -> Result<Knobs, Knobs> {
    set_knob("advise")
}

/// The error creation must give where the knob says no.
fn assert_names_the_knob(e: &std::io::Error) {
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("shmem_enabled"), "the error must name the knob: {e}");
}

/// kB of the mapping at `addr` that the kernel maps in 2 MiB entries.
fn pmd_kb(addr: usize) -> u64 {
    smaps_kb(addr, "ShmemPmdMapped").unwrap_or_else(|| panic!("no ShmemPmdMapped for the mapping at {addr:#x}"))
}

/// Both views of `map`, wholly in 2 MiB entries (the map must have been written or prefaulted).
fn assert_both_views_huge(map: &MirrorMap, what: &str) {
    let (a, n) = (map.as_ptr() as usize, map.len());
    let want = (n / 1024) as u64;
    // Best effort by the kernel, but on a machine with free memory it finds 2 MiB pages; a
    // failure here on a machine short of contiguous memory says so.
    assert_eq!(pmd_kb(a), want, "{what}: view A not in 2 MiB entries (is the machine short of free 2 MiB blocks?)");
    assert_eq!(pmd_kb(a + n), want, "{what}: view B not in 2 MiB entries");
}

#[test]
fn a_thp_map_mirrors_with_both_views_in_2_mib_pages_and_leaves_nothing() {
    let Ok(_knob) = allow() else {
        let e = MirrorOptions::new().transparent_huge_pages(true).map(HUGE).unwrap_err();
        return assert_names_the_knob(&e);
    };
    let backends: Vec<Backend> = [Backend::Auto, Backend::MirrorFlag, Backend::Duplicate]
        .into_iter()
        .filter(|b| *b == Backend::Auto || b.is_available())
        .collect();
    for backend in backends {
        let maps_before = our_mappings();
        let fds_before = open_fds();
        let map = MirrorOptions::new()
            .backend(backend)
            .transparent_huge_pages(true)
            .prefault(true)
            .map(3 << 20)
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert_eq!(map.len(), 4 << 20, "{backend}: rounded up to a power of two of at least 2 MiB");
        assert!(map.transparent_huge_pages() && !map.huge_pages(), "{backend}");
        assert_ne!(map.backend(), Backend::Memfd, "{backend}: an mremap backend works here");
        assert!(map.as_fd().is_none(), "{backend}");
        assert_eq!(map.as_ptr() as usize % HUGE, 0, "{backend}: view A starts on a 2 MiB boundary");
        assert_both_views_huge(&map, &backend.to_string());
        for (i, off) in [0, 1, HUGE - 1, HUGE, map.len() / 2 + 7, map.len() - 1].into_iter().enumerate() {
            assert!(mirrors_at(&map, off, 0x40 + i as u8), "{backend}: no mirror at offset {off}");
        }
        // The control page is a mapping of its own right below view A; the address space
        // reserved to align view A is given back.
        let a = map.as_ptr() as usize;
        assert!(mapped_at(a - page_size(), page_size()), "{backend}: no control page below view A");
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let slack = maps.lines().filter(|l| l.split_whitespace().nth(1) == Some("---p")).any(|l| {
            let (x, y) = l.split_whitespace().next().unwrap().split_once('-').unwrap();
            let (x, y) = (usize::from_str_radix(x, 16).unwrap(), usize::from_str_radix(y, 16).unwrap());
            y == a - page_size() || x == a + 2 * map.len()
        });
        assert!(!slack, "{backend}: alignment slack left reserved");
        assert_eq!(open_fds(), fds_before, "{backend}: no descriptor kept");
        drop(map);
        assert_eq!(our_mappings(), maps_before, "{backend}: no mapping left behind");
    }
}

/// Where the knob says `never`, creation fails with `Unsupported` naming it, and leaves
/// nothing behind; an explicit `Memfd` is `Unsupported` whatever the knob says, and asking for
/// both kinds of huge page is `InvalidInput`.
#[test]
fn refusals_are_clear_and_leave_nothing() {
    // Held to the end: the mapping and descriptor counts below need the other tests of this
    // file to be out of the way.
    let off = set_knob("never");
    let maps_before = our_mappings();
    let fds_before = open_fds();
    {
        if off.is_ok() || mode().as_deref().is_some_and(|m| m == "never" || m == "deny") {
            for backend in [Backend::Auto, Backend::MirrorFlag, Backend::Duplicate] {
                let e = MirrorOptions::new().backend(backend).transparent_huge_pages(true).map(HUGE).unwrap_err();
                assert_names_the_knob(&e);
                assert!(e.to_string().contains("never"), "the error must say what the knob says: {e}");
            }
            let e = RingOptions::new().transparent_huge_pages(true).build().unwrap_err();
            assert_names_the_knob(&e);
        } else {
            eprintln!("cannot set {KNOB} to never here: the refusal is not checked");
        }
    }
    let e = MirrorOptions::new().backend(Backend::Memfd).transparent_huge_pages(true).map(HUGE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("memfd"), "{e}");
    let e = MirrorOptions::new().huge_pages(true).transparent_huge_pages(true).map(HUGE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = RingOptions::new().huge_pages(true).transparent_huge_pages(true).shared().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(our_mappings(), maps_before, "a refused creation leaves no mapping");
    assert_eq!(open_fds(), fds_before, "a refused creation leaves no descriptor");
    drop(off);
}

/// Streams a pattern through a THP ring between two threads with writes and reads of odd sizes,
/// so that copies cross the seam between the views (and the 2 MiB page boundaries) at every
/// kind of offset.
#[test]
fn a_thp_ring_streams_across_the_seam_between_threads() {
    let Ok(_knob) = allow() else {
        let e = RingOptions::new().capacity(1).transparent_huge_pages(true).build().unwrap_err();
        return assert_names_the_knob(&e);
    };
    let (tx, mut rx) = RingOptions::new().capacity(1).transparent_huge_pages(true).build().unwrap();
    assert_eq!(tx.capacity(), HUGE, "the capacity is rounded up to one huge page");
    let pat = Pattern::new(21);
    let total = 5 * HUGE as u64 + 12_345;
    common::stream_between_threads(tx, &mut rx, &pat, total);
}

/// Across fork: the child writes into a THP ring made by the parent, the parent reads.
#[test]
fn a_thp_ring_works_across_fork() {
    let Ok(_knob) = allow() else {
        let e = RingOptions::new().capacity(4 << 20).transparent_huge_pages(true).shared().unwrap_err();
        return assert_names_the_knob(&e);
    };
    let ring = RingOptions::new().capacity(4 << 20).transparent_huge_pages(true).shared().unwrap();
    assert!(ring.as_fd().is_none(), "no descriptor");
    let pat = Pattern::new(5);
    let total = 3 * (4u64 << 20) + 999;
    let (got, child) = common::stream_from_child(ring, &pat, total);
    assert_eq!(got, total, "every byte, then end of stream");
    assert_eq!(child, 0, "the child failed (3: no producer, 4: a write failed)");
}

/// `lock_memory(true)` locks the control page and both views of a THP map, counted in `VmLck`
/// as base pages are (`H + 2N`), and they stay in 2 MiB entries; `dont_fork(true)` keeps all
/// of it out of a child. In children, which start with nothing locked.
#[test]
fn lock_memory_and_dont_fork_with_thp() {
    let Ok(_knob) = allow() else {
        let e = MirrorOptions::new().transparent_huge_pages(true).lock_memory(true).map(HUGE).unwrap_err();
        return assert_names_the_knob(&e);
    };
    let status = in_child(|| {
        // 2 MiB: H + 2N then fits the usual RLIMIT_MEMLOCK of 8 MiB, for a run without root on
        // a machine whose knob already allows THP (4 MiB needed 8 MiB + a page: status 2).
        let Ok(map) = MirrorOptions::new().transparent_huge_pages(true).lock_memory(true).map(2 << 20) else {
            return 2;
        };
        if locked_bytes() != page_size() + 2 * map.len() {
            return 3;
        }
        let (a, n) = (map.as_ptr() as usize, map.len());
        if pmd_kb(a) != (n / 1024) as u64 || pmd_kb(a + n) != (n / 1024) as u64 {
            return 4;
        }
        i32::from(!mirrors_at(&map, n - 1, 0x42)) * 5
    });
    assert_eq!(
        status, 0,
        "2 = creation failed, 3 = VmLck is not H + 2N, 4 = a view not in 2 MiB entries, 5 = no mirror"
    );
    let map = MirrorOptions::new().transparent_huge_pages(true).dont_fork(true).prefault(true).map(4 << 20).unwrap();
    let (a, n) = (map.as_ptr() as usize, map.len());
    assert!(mirrors_at(&map, n - 3, 0x11));
    let status = in_child(|| i32::from(mapped_at(a - page_size(), page_size() + 2 * n)));
    assert_eq!(status, 0, "the child must not inherit any part of a dont_fork THP map");
}

/// Since Linux 6.11 (mTHP for shmem), whether shared memory gets 2 MiB pages is decided by
/// `hugepages-2048kB/shmem_enabled`; the top-level `shmem_enabled` is only what its `inherit`
/// means. With the top-level knob at `never` and the 2 MiB knob at `advise`, the kernel maps a
/// `MADV_HUGEPAGE` ring in 2 MiB entries, so creation must not be refused.
#[test]
fn a_2mib_knob_at_advise_allows_thp_whatever_the_top_level_says() {
    let Some(_knobs) = set_both_knobs("never", "advise") else { return };
    let map = MirrorOptions::new().transparent_huge_pages(true).prefault(true).map(4 << 20);
    let map = map.unwrap_or_else(|e| panic!("refused although the kernel gives 2 MiB pages here: {e}"));
    assert_both_views_huge(&map, "top never, 2 MiB advise");
}

/// The converse: the top-level knob at `advise`, the 2 MiB knob at `never`: the kernel gives no
/// 2 MiB page to shared memory, and creation should say so (as for `never`), not hand out a map
/// of base pages as a transparent-huge-page map.
#[test]
fn a_2mib_knob_at_never_refuses_thp_whatever_the_top_level_says() {
    let Some(_knobs) = set_both_knobs("advise", "never") else { return };
    match MirrorOptions::new().transparent_huge_pages(true).prefault(true).map(4 << 20) {
        Err(e) => {
            assert_names_the_knob(&e);
            assert!(e.to_string().contains("hugepages-2048kB"), "the error must name the 2 MiB knob: {e}");
        }
        Ok(map) => panic!(
            "built a THP map that the kernel maps in base pages: ShmemPmdMapped {} kB of {} kB",
            pmd_kb(map.as_ptr() as usize),
            map.len() / 1024
        ),
    }
}
