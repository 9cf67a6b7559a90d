//! Construction failing at every step, the ENOMEM explanation, and the probe.
use super::backend::verify_mirror;
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

/// For a child whose construction just failed: 0 when it left nothing behind, else what it
/// left: 12 the reservation still mapped, 13 other mappings, 14 descriptors.
fn left_behind(maps_before: &[String], fds_before: &[String]) -> i32 {
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
}

/// The OS error of `e`: its own, or that of its `source()` (an explanation's).
fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| std::error::Error::source(e)?.downcast_ref::<io::Error>()?.raw_os_error())
}

/// For each backend of `cases` that works here, and each of its steps, in a child: `build`
/// with that step made to fail with EIO must fail keeping the errno, satisfy `also` (a status
/// code, 0 when fine), and leave no mapping and no descriptor. Returns the status of the first
/// case that fails, with its backend and step, or how many cases ran.
fn fail_each_step(
    cases: &[(Backend, &[Step])],
    build: impl Fn(Backend) -> io::Result<MirrorMap>,
    also: impl Fn(Step, &io::Error) -> i32,
) -> Result<usize, (Backend, Step, i32)> {
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
                let r = build(backend);
                FAIL_AT.with(|f| f.set(None));
                let Err(e) = r else { return 10 };
                if errno_of(&e) != Some(libc::EIO) {
                    return 11;
                }
                match also(step, &e) {
                    0 => left_behind(&maps_before, &fds_before),
                    code => code,
                }
            });
            if status != 0 {
                return Err((backend, step, status));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

/// Every construction step, made to fail, leaves no mapping and no descriptor behind, and
/// the error keeps its errno.
#[test]
fn failure_at_every_step_leaks_nothing() {
    let cases: &[(Backend, &[Step])] = &[
        (
            Backend::MirrorFlag,
            &[Step::Reserve, Step::MapFirst, Step::MapSecond, Step::Prefault, Step::DontFork, Step::Lock],
        ),
        (
            Backend::Duplicate,
            &[Step::Reserve, Step::MapFirst, Step::MapSecond, Step::Prefault, Step::DontFork, Step::Lock],
        ),
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
                Step::Lock,
            ],
        ),
    ];
    let build =
        |backend| MirrorOptions::new().backend(backend).prefault(true).dont_fork(true).lock_memory(true).map(1 << 16);
    match fail_each_step(cases, build, |_, _| 0) {
        Ok(checked) => assert!(checked >= 9, "too few backends available to test ({checked} cases)"),
        Err((backend, step, status)) => {
            panic!("{backend} failing at {step:?}: status {status} (10: no error, 11: errno lost, 12-14: leak)")
        }
    }
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

/// A refused `mlock` is explained with the limit it ran into, the errno kept as `source()`:
/// ENOMEM (over `RLIMIT_MEMLOCK`) as `OutOfMemory`, EPERM (a zero limit) as
/// `PermissionDenied`, EAGAIN (`mlock`'s word for running out of memory while faulting the
/// pages in: mm/mlock.c turns the populate's ENOMEM into it) as `OutOfMemory` saying so, never
/// `WouldBlock`, anything else under its own kind.
#[test]
fn a_refused_lock_names_rlimit_memlock() {
    let backend = Backend::Auto.resolve().unwrap();
    for (errno, kind, names_limit) in [
        (libc::ENOMEM, io::ErrorKind::OutOfMemory, true),
        (libc::EPERM, io::ErrorKind::PermissionDenied, true),
        (libc::EAGAIN, io::ErrorKind::OutOfMemory, false),
        (libc::EIO, io::Error::from_raw_os_error(libc::EIO).kind(), false),
    ] {
        FAIL_AT.with(|f| f.set(Some((Step::Lock, errno))));
        let e = MirrorOptions::new().backend(backend).lock_memory(true).map(1 << 16).unwrap_err();
        FAIL_AT.with(|f| f.set(None));
        assert_eq!(e.kind(), kind, "errno {errno}: {e}");
        let msg = e.to_string();
        assert!(msg.contains(&format!("cannot lock {} bytes", sys::page_size() + (2 << 16))), "{msg}");
        assert_eq!(msg.contains("RLIMIT_MEMLOCK"), names_limit, "errno {errno}: {msg}");
        assert_eq!(msg.contains("no memory to back"), errno == libc::EAGAIN, "errno {errno}: {msg}");
        let src = std::error::Error::source(&e).expect("errno kept as source");
        assert_eq!(src.downcast_ref::<io::Error>().and_then(io::Error::raw_os_error), Some(errno));
    }
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

#[test]
fn huge_rounding() {
    assert_eq!(round_len_huge(1).unwrap(), HUGE_PAGE);
    assert_eq!(round_len_huge(HUGE_PAGE).unwrap(), HUGE_PAGE);
    assert_eq!(round_len_huge(HUGE_PAGE + 1).unwrap(), 2 * HUGE_PAGE);
    assert_eq!(round_len_huge(3 << 20).unwrap(), 4 << 20);
    assert_eq!(round_len_huge(0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(round_len_huge(usize::MAX).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(round_len_huge(1 << 62).unwrap_err().kind(), io::ErrorKind::InvalidInput);
}

/// Makes sure `pages` free 2 MiB huge pages exist while it lives (as root, by raising
/// `vm.nr_hugepages`, put back on drop, also when the test fails). `None` when they cannot be
/// had here (not root, no hugetlbfs, or no memory).
struct HugePages {
    restore: Option<u64>,
    /// The tests that change the knob run one at a time, also across processes: one's
    /// restore must not take the pages another one counts on (`test_util::knob_lock`).
    _one_at_a_time: crate::test_util::KnobLock,
}

impl HugePages {
    const KNOB: &'static str = "/proc/sys/vm/nr_hugepages";

    fn reserve(pages: u64) -> Option<HugePages> {
        let one = crate::test_util::knob_lock();
        let free = || free_huge_pages().unwrap_or(0);
        if free() >= pages {
            return Some(HugePages { restore: None, _one_at_a_time: one });
        }
        let now: u64 = std::fs::read_to_string(Self::KNOB).ok()?.trim().parse().ok()?;
        std::fs::write(Self::KNOB, (now + pages - free()).to_string()).ok()?;
        let guard = HugePages { restore: Some(now), _one_at_a_time: one };
        (free() >= pages).then_some(guard)
    }
}

impl Drop for HugePages {
    fn drop(&mut self) {
        if let Some(old) = self.restore {
            let _ = std::fs::write(Self::KNOB, old.to_string());
        }
    }
}

/// The huge-page path made to fail at each of its steps: no mapping and no descriptor left,
/// the errno kept (as `raw_os_error` or as the `source()` of the explanation), and an ENOMEM
/// explained as `OutOfMemory` naming huge pages. Each case runs in a child, so the knob is
/// changed once, here, with every child's mappings its own.
#[test]
fn huge_page_failure_at_every_step_leaks_nothing() {
    let Some(_pages) = HugePages::reserve(2) else {
        eprintln!("no huge pages can be reserved here: the huge-page steps are checked by tests/huge_pages.rs");
        return;
    };
    let steps = [
        Step::Reserve,
        Step::MapControl,
        Step::MemfdCreate,
        Step::Truncate,
        Step::MapFirst,
        Step::MapSecond,
        Step::Prefault,
        Step::DontFork,
        Step::Lock,
    ];
    for errno in [libc::EIO, libc::ENOMEM] {
        for step in steps {
            let status = in_child(|| {
                let maps_before = our_mappings();
                let fds_before = open_fds();
                FAIL_AT.with(|f| f.set(Some((step, errno))));
                LAST_RESERVATION.with(|r| r.set(None));
                let r =
                    MirrorOptions::new().huge_pages(true).prefault(true).dont_fork(true).lock_memory(true).map(4 << 20);
                FAIL_AT.with(|f| f.set(None));
                let Err(e) = r else { return 10 };
                if errno_of(&e) != Some(errno) {
                    return 11;
                }
                if errno == libc::ENOMEM && e.kind() != io::ErrorKind::OutOfMemory {
                    return 15;
                }
                let names_huge = e.to_string().contains("huge page");
                let huge_step = matches!(step, Step::MemfdCreate | Step::Truncate | Step::MapFirst | Step::MapSecond);
                if huge_step && !names_huge {
                    return 16;
                }
                left_behind(&maps_before, &fds_before)
            });
            assert_eq!(
                status, 0,
                "huge pages failing at {step:?} with errno {errno} (10: no error, 11: errno lost, 12-14: leak, \
                 15: ENOMEM not OutOfMemory, 16: huge pages not named)"
            );
        }
    }
}

/// The transparent-huge-page path made to fail at each of its steps, for each backend it can
/// take (the memfd form, which only `Auto` falls back to, is built directly here), with every
/// option: no mapping and no descriptor left, the errno kept. The knob is not consulted (its
/// check comes before the first step), so this runs wherever the backends do.
#[test]
fn thp_failure_at_every_step_leaks_nothing() {
    use Step::*;
    let mremap_steps: &[Step] = &[Reserve, MapControl, MapFirst, MapSecond, Advise, Prefault, DontFork, Lock];
    let cases: &[(Backend, &[Step])] = &[
        (Backend::MirrorFlag, mremap_steps),
        (Backend::Duplicate, mremap_steps),
        (
            Backend::Memfd,
            &[Reserve, MapControl, MemfdCreate, Truncate, MapFirst, MapSecond, Advise, Prefault, DontFork, Lock],
        ),
    ];
    let len = 4 << 20;
    let opts = MirrorOptions::new().prefault(true).dont_fork(true).lock_memory(true).clone();
    let build = |backend| {
        Reservation::for_pages(len, Pages::Transparent)
            .and_then(|res| MirrorMap::build_in(res, len, backend, Pages::Transparent))
            .and_then(|map| map.finish(&opts))
    };
    let also = |step, e: &io::Error| i32::from(step == Advise && e.kind() != io::ErrorKind::Unsupported) * 15;
    match fail_each_step(cases, build, also) {
        Ok(checked) => assert!(checked >= 10, "too few backends available to test ({checked} cases)"),
        Err((backend, step, status)) => panic!(
            "THP {backend} failing at {step:?}: status {status} (10: no error, 11: errno lost, 12-14: leak, 15: a \
             refused MADV_HUGEPAGE not Unsupported)"
        ),
    }
}

/// A refused `MADV_HUGEPAGE` is `Unsupported` (no transparent huge pages here); one that ran
/// out of memory is `OutOfMemory`, as every shortage at creation is. The errno stays the
/// `source()` either way.
#[test]
fn a_failed_thp_advice_says_refused_or_out_of_memory() {
    let backend = Backend::Auto.resolve().unwrap();
    for (errno, kind) in [(libc::EINVAL, io::ErrorKind::Unsupported), (libc::ENOMEM, io::ErrorKind::OutOfMemory)] {
        let len = 2 << 20;
        FAIL_AT.with(|f| f.set(Some((Step::Advise, errno))));
        let r = Reservation::for_pages(len, Pages::Transparent)
            .and_then(|res| MirrorMap::build_in(res, len, backend, Pages::Transparent));
        FAIL_AT.with(|f| f.set(None));
        let e = r.unwrap_err();
        assert_eq!((e.kind(), errno_of(&e)), (kind, Some(errno)), "{e}");
    }
}

/// Which values of `shmem_enabled` let a map ask for transparent huge pages, and what the
/// refusal says.
#[test]
fn the_shmem_thp_knob_is_read_by_its_selected_word() {
    use super::huge::thp_mode_allows;
    for ok in ["[always] within_size advise never deny force", "always within_size [advise] never deny force"] {
        assert!(thp_mode_allows(ok).is_ok(), "{ok}");
    }
    assert!(thp_mode_allows("always [within_size] advise never deny force\n").is_ok());
    assert!(thp_mode_allows("always within_size advise never deny [force]").is_ok());
    for off in ["always within_size advise [never] deny force\n", "always within_size advise never [deny] force"] {
        let e = thp_mode_allows(off).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        let word = off.split_once('[').unwrap().1.split_once(']').unwrap().0;
        assert!(e.to_string().contains(&format!("`{word}`")) && e.to_string().contains("shmem_enabled"), "{e}");
    }
    // Unreadable text is a refusal that shows it, not a panic.
    for junk in ["", "advise", "[", "]["] {
        let e = thp_mode_allows(junk).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{junk:?}");
    }
}

/// `Auto`'s last resort for transparent huge pages, a memfd of `N` bytes mapped twice, mirrors,
/// reports `Memfd`, and keeps no descriptor. In a child, whose descriptors are its own.
#[test]
fn the_thp_memfd_form_mirrors_and_keeps_no_descriptor() {
    if !Backend::Memfd.is_available() {
        return;
    }
    let status = in_child(|| {
        let fds_before = open_fds();
        let len = 2 << 20;
        let Ok(map) = Reservation::for_pages(len, Pages::Transparent)
            .and_then(|res| MirrorMap::build_in(res, len, Backend::Memfd, Pages::Transparent))
        else {
            return 2;
        };
        if !verify_mirror(&map) || map.as_ptr() as usize % HUGE_PAGE != 0 {
            return 3;
        }
        if map.backend() != Backend::Memfd || map.as_fd().is_some() || !map.transparent_huge_pages() {
            return 4;
        }
        i32::from(open_fds() != fds_before) * 5
    });
    assert_eq!(status, 0, "2: not built, 3: no mirror or misaligned, 4: wrong report, 5: a descriptor kept");
}

/// `SharedRing::lock_memory` on a huge-page ring in use, after bytes were committed: where
/// `MADV_POPULATE_WRITE` is refused with EINVAL (kernels before 5.14; injected here), the
/// prefault falls back to touching every page, which must not write: nothing committed (nor
/// the header) may change.
#[test]
fn locking_a_live_huge_page_ring_keeps_its_bytes() {
    use std::io::{Read, Write};
    let Some(_pages) = HugePages::reserve(1) else {
        eprintln!("no huge pages can be reserved here: tests/huge_pages.rs checks the error path");
        return;
    };
    let ring = crate::RingOptions::new().capacity(2 << 20).huge_pages(true).shared().unwrap();
    let mut tx = ring.clone().into_producer().unwrap();
    let mut rx = ring.clone().into_consumer().unwrap();
    let cap = tx.capacity();
    // Every byte of the data committed, the first of its huge page too.
    tx.write_all(&vec![0xAB; cap]).unwrap();
    FAIL_AT.with(|f| f.set(Some((Step::Prefault, libc::EINVAL))));
    let locked = ring.lock_memory();
    FAIL_AT.with(|f| f.set(None));
    locked.unwrap();
    let mut got = vec![0; cap];
    rx.read_exact(&mut got).unwrap();
    let changed: Vec<usize> = (0..cap).filter(|&i| got[i] != 0xAB).collect();
    assert!(changed.is_empty(), "lock_memory changed committed bytes at offsets {changed:?}");
}

/// The steps a map takes with `prefault` and `lock_memory`: the lock prefaults first (so that
/// running out of memory fails before anything is locked; a hugetlb map's data must be
/// populated besides, as `mlock` leaves it out) except where creation has just prefaulted, so
/// the memory is populated once; a later `SharedRing::lock_memory` prefaults again (it may find
/// anything unpopulated).
fn prefaulted_once(huge: bool, len: usize) {
    let steps = |opts: &MirrorOptions| {
        STEPS_TAKEN.with(|t| *t.borrow_mut() = Some(Vec::new()));
        let map = opts.map(len);
        let steps = STEPS_TAKEN.with(|t| t.borrow_mut().take()).unwrap();
        (map.unwrap(), steps.into_iter().filter(|&s| s == Step::Prefault || s == Step::Lock).collect::<Vec<_>>())
    };
    let (map, taken) = steps(MirrorOptions::new().huge_pages(huge).prefault(true).lock_memory(true));
    drop(map);
    assert_eq!(taken, [Step::Prefault, Step::Lock], "prefault and lock");
    let (map, taken) = steps(MirrorOptions::new().huge_pages(huge).lock_memory(true));
    drop(map);
    assert_eq!(taken, [Step::Prefault, Step::Lock], "lock alone");
    let ring = crate::RingOptions::new().capacity(len).huge_pages(huge).prefault(true).shared().unwrap();
    STEPS_TAKEN.with(|t| *t.borrow_mut() = Some(Vec::new()));
    ring.lock_memory().unwrap();
    let taken = STEPS_TAKEN.with(|t| t.borrow_mut().take()).unwrap();
    assert_eq!(taken, [Step::Prefault, Step::Lock], "SharedRing::lock_memory");
}

#[test]
fn a_map_is_prefaulted_once() {
    prefaulted_once(false, 1 << 16);
}

#[test]
fn a_huge_page_map_is_prefaulted_once() {
    let Some(_pages) = HugePages::reserve(2) else {
        eprintln!("no huge pages can be reserved here: tests/huge_pages.rs checks the error path");
        return;
    };
    prefaulted_once(true, 2 << 20);
}

/// A `SharedRing::lock_memory` that runs out of memory (injected: the prefault's ENOMEM) fails
/// with `OutOfMemory` and leaves nothing locked: `mlock` itself would have marked the range
/// locked before faulting it in, and failed with it still locked. Then an honest lock does lock
/// (so the measure can see one). In a child, which starts with nothing locked; 0 when it holds.
fn failed_lock_leaves_nothing_locked(opts: &crate::RingOptions) -> i32 {
    let Ok(ring) = opts.shared() else { return 4 };
    let before = crate::test_util::locked_bytes();
    FAIL_AT.with(|f| f.set(Some((Step::Prefault, libc::ENOMEM))));
    let r = ring.lock_memory();
    FAIL_AT.with(|f| f.set(None));
    match r {
        Ok(()) => return 2,
        Err(e) if e.kind() != io::ErrorKind::OutOfMemory => return 5,
        Err(_) => {}
    }
    if crate::test_util::locked_bytes() != before {
        return 3;
    }
    if ring.lock_memory().is_err() || crate::test_util::locked_bytes() <= before {
        return 6;
    }
    0
}

const FAILED_LOCK: &str =
    "2 = no error, 3 = the failed lock left pages locked, 4 = no ring, 5 = not OutOfMemory, 6 = no lock seen";

#[test]
fn a_lock_that_runs_out_of_memory_leaves_nothing_locked() {
    for backend in Backend::CONCRETE.into_iter().filter(|b| b.is_available()) {
        let opts = crate::RingOptions::new().capacity(1 << 16).backend(backend).clone();
        let status = in_child(|| failed_lock_leaves_nothing_locked(&opts));
        assert_eq!(status, 0, "{backend:?}: {FAILED_LOCK}");
    }
}

#[test]
fn a_failed_lock_of_a_huge_page_ring_leaves_nothing_locked() {
    let Some(_pages) = HugePages::reserve(1) else {
        eprintln!("no huge pages can be reserved here: tests/huge_pages.rs checks the error path");
        return;
    };
    let opts = crate::RingOptions::new().capacity(2 << 20).huge_pages(true).clone();
    let status = in_child(|| failed_lock_leaves_nothing_locked(&opts));
    assert_eq!(status, 0, "{FAILED_LOCK}");
}

/// The per-size knob decides for 2 MiB pages unless it says `inherit`; a top-level `deny`
/// refuses whatever it says; without it (before 6.11) the top-level knob decides.
#[test]
fn the_2mib_knob_overrides_the_top_level_one() {
    use super::huge::thp_modes_allow;
    let never = "always within_size advise [never] deny force";
    let advise = "always within_size [advise] never deny force";
    let deny = "always within_size advise never [deny] force";
    let per = |m: &str| "always inherit within_size advise never".replace(m, &format!("[{m}]"));
    assert!(thp_modes_allow(never, Some(&per("advise"))).is_ok());
    assert!(thp_modes_allow(never, Some(&per("always"))).is_ok());
    assert!(thp_modes_allow(never, Some(&per("inherit"))).is_err());
    assert!(thp_modes_allow(advise, Some(&per("inherit"))).is_ok());
    let e = thp_modes_allow(advise, Some(&per("never"))).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    assert!(e.to_string().contains("hugepages-2048kB/shmem_enabled is `never`"), "{e}");
    assert!(thp_modes_allow(deny, Some(&per("advise"))).is_err());
    assert!(thp_modes_allow(advise, None).is_ok() && thp_modes_allow(never, None).is_err());
}

/// A refused lock of a huge-page map locked one page, the control page; its message must not
/// blame a limit "which counts the control page and both views".
#[test]
fn a_refused_lock_of_a_huge_page_map_says_what_it_counted() {
    let Some(_pages) = HugePages::reserve(1) else {
        eprintln!("no huge pages can be reserved here: tests/huge_pages.rs checks the error path");
        return;
    };
    FAIL_AT.with(|f| f.set(Some((Step::Lock, libc::ENOMEM))));
    let r = MirrorOptions::new().huge_pages(true).lock_memory(true).map(2 << 20);
    FAIL_AT.with(|f| f.set(None));
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains(&format!("cannot lock {} bytes", sys::page_size())), "{msg}");
    assert!(!msg.contains("both views"), "the limit counted the control page only: {msg}");
}
