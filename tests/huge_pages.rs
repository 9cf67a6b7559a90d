//! Huge pages (`RingOptions::huge_pages`, `MirrorOptions::huge_pages`): 2 MiB pages, mirrored,
//! rounded, streamed across the seam between threads and across fork, prefaulted, kept out of
//! children, returned to the pool on drop; and, where no huge pages can be had, a clear error.
//!
//! Run as root, each test that needs huge pages reserves them itself (it raises
//! `/proc/sys/vm/nr_hugepages` by what it needs and puts the old value back when it ends, also
//! when it fails) and holds a lock while it does, so the tests of this file never change the
//! knob under each other (nor under the tests in other processes: `common::knob_lock`). Without root (or when the kernel cannot find the memory), those
//! tests check the error path instead: creation fails with a message naming huge pages.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::{in_child, knob_lock, locked_bytes, mapped_at, mirrors_at, open_fds, our_mappings, page_size, Pattern};
use mirror_ring::{Backend, MirrorOptions, RingOptions};

const HUGE: usize = 2 << 20;
const KNOB: &str = "/proc/sys/vm/nr_hugepages";

fn read_num(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Free 2 MiB huge pages right now.
fn free_pages() -> u64 {
    read_num("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").unwrap_or(0)
}

/// The test's claim on the pool: the lock, and the knob's value to put back (if this test
/// raised it). Dropping it restores the knob, also while a failed test unwinds.
struct Pool {
    restore: Option<u64>,
    /// The pool and its knob are global (`common::knob_lock`).
    _lock: common::KnobLock,
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(old) = self.restore {
            if let Err(e) = std::fs::write(KNOB, old.to_string()) {
                eprintln!("could not put {KNOB} back to {old}: {e}");
            }
        }
    }
}

/// Takes the lock and makes sure at least `pages` huge pages are free: raises the knob as root
/// when they are not. `Err(pool)` (still holding the lock) when they cannot be had here.
fn reserve(pages: u64) -> Result<Pool, Pool> {
    let lock = knob_lock();
    let mut pool = Pool { restore: None, _lock: lock };
    if free_pages() >= pages {
        return Ok(pool);
    }
    let Some(now) = read_num(KNOB) else { return Err(pool) };
    let want = now + pages - free_pages();
    if std::fs::write(KNOB, want.to_string()).is_err() {
        return Err(pool); // not root (or no hugetlb support)
    }
    pool.restore = Some(now);
    if free_pages() >= pages {
        Ok(pool)
    } else {
        Err(pool) // the kernel could not find that much contiguous memory
    }
}

/// The OS error under an explained error.
fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| std::error::Error::source(e)?.downcast_ref::<io::Error>()?.raw_os_error())
}

/// The error a huge-page creation must give when no huge pages can be had.
fn assert_names_huge_pages(e: &io::Error) {
    let msg = e.to_string();
    assert!(msg.contains("huge page"), "the error must name huge pages: {msg}");
    let errno = errno_of(e).unwrap_or_else(|| panic!("the OS error must stay reachable as source(): {e:?}"));
    if errno == libc::ENOMEM {
        assert_eq!(e.kind(), ErrorKind::OutOfMemory, "{e}");
    }
}

/// The kernel page size of the mapping that holds `addr`, in kB (`/proc/self/smaps`).
fn kernel_page_kb(addr: usize) -> Option<u64> {
    common::smaps_kb(addr, "KernelPageSize")
}

#[test]
fn a_huge_page_map_mirrors_in_2_mib_pages_and_gives_them_back() {
    let Ok(_pool) = reserve(2) else {
        let e = MirrorOptions::new().huge_pages(true).map(HUGE).unwrap_err();
        return assert_names_huge_pages(&e);
    };
    let maps_before = our_mappings();
    let fds_before = open_fds();
    let free_before = free_pages();
    let map = MirrorOptions::new().huge_pages(true).map(3 << 20).unwrap_err_or_map();
    assert_eq!(map.len(), 4 << 20, "rounded up to a power of two of at least 2 MiB");
    assert!(map.huge_pages());
    assert_eq!(map.backend(), Backend::Memfd, "a hugetlb memfd mapped twice");
    assert!(map.as_fd().is_none(), "the descriptor is closed once both views are mapped");
    assert_eq!(map.as_ptr() as usize % HUGE, 0, "view A starts on a 2 MiB boundary");
    for (i, off) in [0, 1, HUGE - 1, HUGE, map.len() / 2 + 7, map.len() - 1].into_iter().enumerate() {
        assert!(mirrors_at(&map, off, 0x40 + i as u8), "no mirror at offset {off}");
    }
    let a = map.as_ptr() as usize;
    assert_eq!(kernel_page_kb(a), Some(2048), "view A is not in 2 MiB pages");
    // The address space reserved to align view A is given back: no reserved (PROT_NONE)
    // mapping right below the control page or right after view B.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let slack: Vec<&str> = maps
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("---p"))
        .filter(|l| {
            let (x, y) = l.split_whitespace().next().unwrap().split_once('-').unwrap();
            let (x, y) = (usize::from_str_radix(x, 16).unwrap(), usize::from_str_radix(y, 16).unwrap());
            y == a - common::page_size() || x == a + 2 * map.len()
        })
        .collect();
    assert!(slack.is_empty(), "alignment slack left reserved: {slack:?}");
    assert_eq!(kernel_page_kb(a + map.len()), Some(2048), "view B is not in 2 MiB pages");
    // Both views are the same two pages: the pool lost two, not four.
    assert_eq!(free_before - free_pages(), 2, "pages taken by one 4 MiB mirror");
    assert_eq!(open_fds(), fds_before, "no descriptor kept");
    drop(map);
    assert_eq!(free_pages(), free_before, "the huge pages go back to the pool on drop");
    assert_eq!(our_mappings(), maps_before, "no mapping left behind");
}

/// `unwrap` with the error shown (huge-page errors carry a context worth reading).
trait UnwrapShow<T> {
    fn unwrap_err_or_map(self) -> T;
}

impl<T> UnwrapShow<T> for io::Result<T> {
    fn unwrap_err_or_map(self) -> T {
        self.unwrap_or_else(|e| panic!("huge-page creation failed with pages free: {e} ({e:?})"))
    }
}

#[test]
fn too_few_free_huge_pages_is_out_of_memory_naming_them() {
    let _pool = knob_lock();
    // More than the pool can give now, even with every surplus page the kernel may add.
    let can_give = free_pages() + read_num("/proc/sys/vm/nr_overcommit_hugepages").unwrap_or(0);
    let len = ((can_give as usize + 1) * HUGE).next_power_of_two();
    let maps_before = our_mappings();
    let fds_before = open_fds();
    let e = MirrorOptions::new().huge_pages(true).map(len).unwrap_err();
    assert_names_huge_pages(&e);
    let e = RingOptions::new().capacity(len).huge_pages(true).build().unwrap_err();
    assert_names_huge_pages(&e);
    assert_eq!(our_mappings(), maps_before, "a failed creation leaves no mapping");
    assert_eq!(open_fds(), fds_before, "a failed creation leaves no descriptor");
}

#[test]
fn only_auto_builds_a_huge_page_mirror() {
    let pool = reserve(1);
    let maps_before = our_mappings();
    let fds_before = open_fds();
    // Memfd's point is a descriptor to hand over, which a huge-page map does not keep.
    let e = MirrorOptions::new().backend(Backend::Memfd).huge_pages(true).map(HUGE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("huge-page"), "{e}");
    for backend in [Backend::MirrorFlag, Backend::Duplicate] {
        let r = MirrorOptions::new().backend(backend).huge_pages(true).map(HUGE);
        match (&pool, r) {
            // A kernel that can mirror hugetlb memory with mremap: it must really mirror.
            (Ok(_), Ok(map)) => assert!(mirrors_at(&map, 5, 9) && map.huge_pages(), "{backend}"),
            // Linux 6.18: mremap refuses hugetlb mappings with EINVAL.
            (Ok(_), Err(e)) => {
                assert_eq!(e.kind(), ErrorKind::Unsupported, "{backend}: {e}");
                assert!(e.to_string().contains("huge pages"), "{backend}: {e}");
                assert!(errno_of(&e).is_some(), "{backend}: the errno must be kept: {e:?}");
            }
            (Err(_), r) => assert_names_huge_pages(&r.unwrap_err()),
        }
    }
    assert_eq!(our_mappings(), maps_before, "nothing left behind");
    assert_eq!(open_fds(), fds_before, "no descriptor left behind");
    drop(pool);
}

/// Streams a pattern through a huge-page ring between two threads with writes and reads of odd
/// sizes, so that copies cross the seam between the views (and the 2 MiB page boundary inside
/// each view) at every kind of offset.
#[test]
fn a_huge_page_ring_streams_across_the_seam_between_threads() {
    let Ok(_pool) = reserve(1) else {
        let e = RingOptions::new().capacity(1).huge_pages(true).build().unwrap_err();
        return assert_names_huge_pages(&e);
    };
    let (tx, mut rx) = RingOptions::new().capacity(1).huge_pages(true).build().unwrap_err_or_map();
    assert_eq!(tx.capacity(), HUGE, "the capacity is rounded up to one huge page");
    assert_eq!(rx.capacity(), HUGE);
    let pat = Pattern::new(14);
    let total = 5 * HUGE as u64 + 12_345;
    common::stream_between_threads(tx, &mut rx, &pat, total);
}

/// Across fork: the child writes into a huge-page ring, the parent reads; the ring keeps no
/// descriptor in either process.
#[test]
fn a_huge_page_ring_works_across_fork_without_a_descriptor() {
    let Ok(_pool) = reserve(2) else {
        let e = RingOptions::new().capacity(4 << 20).huge_pages(true).shared().unwrap_err();
        return assert_names_huge_pages(&e);
    };
    let fds_before = open_fds();
    let ring = RingOptions::new().capacity(4 << 20).huge_pages(true).shared().unwrap_err_or_map();
    assert!(ring.as_fd().is_none(), "no descriptor to hand over");
    assert_eq!(open_fds(), fds_before, "no descriptor kept");
    let pat = Pattern::new(3);
    let total = 3 * (4u64 << 20) + 999;
    let (got, child) = common::stream_from_child(ring, &pat, total);
    assert_eq!(got, total, "every byte, then end of stream");
    assert_eq!(child, 0, "the child failed (3: no producer, 4: a write failed)");
}

/// `prefault(true)` takes every page of the data at creation; `dont_fork(true)` keeps the whole
/// huge-page ring out of a child.
#[test]
fn prefault_and_dont_fork_with_huge_pages() {
    let Ok(_pool) = reserve(2) else {
        let e = MirrorOptions::new().huge_pages(true).prefault(true).dont_fork(true).map(HUGE).unwrap_err();
        return assert_names_huge_pages(&e);
    };
    let free_before = free_pages();
    let map = MirrorOptions::new().huge_pages(true).prefault(true).dont_fork(true).map(4 << 20).unwrap_err_or_map();
    assert_eq!(free_before - free_pages(), 2, "prefault faults in both huge pages");
    let (a, n) = (map.as_ptr() as usize, map.len());
    assert!(mirrors_at(&map, n - 3, 0x11));
    // The control page (one page of the system's size) right below view A, and both views.
    let status = in_child(|| if mapped_at(a - page_size(), page_size() + 2 * n) { 1 } else { 0 });
    assert_eq!(status, 0, "the child must not inherit any part of a dont_fork huge-page map");
    drop(map);
    assert_eq!(free_pages(), free_before);
}

/// `lock_memory(true)` with huge pages locks the control page only (hugetlb memory is never
/// swapped, and the kernel neither locks nor counts it in `VmLck`) and prefaults the data, so
/// that no call waits on a huge-page fault either. In a child, which starts with nothing
/// locked.
#[test]
fn lock_memory_with_huge_pages_locks_the_control_page_and_prefaults_the_data() {
    let Ok(_pool) = reserve(2) else {
        let e = MirrorOptions::new().huge_pages(true).lock_memory(true).map(HUGE).unwrap_err();
        return assert_names_huge_pages(&e);
    };
    let free_before = free_pages();
    let status = in_child(|| {
        let map = MirrorOptions::new().huge_pages(true).lock_memory(true).map(4 << 20).unwrap_err_or_map();
        if free_before - free_pages() != 2 {
            return 2;
        }
        if locked_bytes() != page_size() {
            return 3;
        }
        i32::from(!mirrors_at(&map, map.len() - 1, 0x42)) * 4
    });
    assert_eq!(status, 0, "2 = the data was not prefaulted, 3 = VmLck is not the control page, 4 = no mirror");
    assert_eq!(free_pages(), free_before, "the huge pages go back to the pool");
}

/// A ring built for `io::Write` / `io::Read` by the README's recipe with huge pages: the default
/// capacity becomes one huge page.
#[test]
fn the_default_capacity_rounds_up_to_a_huge_page() {
    let Ok(_pool) = reserve(1) else {
        let e = RingOptions::new().huge_pages(true).build().unwrap_err();
        return assert_names_huge_pages(&e);
    };
    let (mut tx, mut rx) = RingOptions::new().huge_pages(true).build().unwrap_err_or_map();
    assert_eq!(tx.capacity(), HUGE.max(mirror_ring::DEFAULT_CAPACITY.next_power_of_two()));
    tx.write_all(b"huge").unwrap();
    drop(tx);
    let mut s = String::new();
    rx.read_to_string(&mut s).unwrap();
    assert_eq!(s, "huge");
}

/// `common::knob_lock` serialises processes, not only threads: a test in another process (a
/// runner that runs each test in a process of its own) waits until the holder lets go.
#[test]
fn the_knob_lock_holds_across_processes() {
    // The in-process part, so that no other test of this process counts mappings meanwhile.
    let _others = common::knob_lock_in_process();
    let Some(probe) = common::knob_lock_across_processes() else {
        eprintln!("no lock file can be made here: the knob lock is the in-process one alone");
        return;
    };
    drop(probe);
    // One shared word: 1 while the child holds the lock, 2 just before it lets go.
    let page = common::SharedPage::new();
    let word = page.word(0);
    let mut child = common::spawn_child(|| {
        let lock = common::knob_lock_across_processes();
        word.store(1, SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        word.store(2, SeqCst);
        drop(lock);
        0
    });
    let limit = Instant::now() + Duration::from_secs(10);
    while word.load(SeqCst) == 0 {
        assert!(Instant::now() < limit, "the child never took the lock");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mine = common::knob_lock_across_processes();
    assert_eq!(word.load(SeqCst), 2, "took the lock while another process held it");
    drop(mine);
    assert_eq!(child.wait(), 0);
}

/// With no descriptor left, a huge-page ring (its data a hugetlb memfd) fails with EMFILE, and
/// the message must not send the reader after a kernel feature ("the kernel needs hugetlbfs"):
/// only the errnos a kernel without hugetlbfs gives get that hint.
#[test]
fn out_of_descriptors_is_not_blamed_on_hugetlbfs() {
    // The pool's lock, though no knob changes, as every test here that makes a huge-page map
    // takes it: a test that reserved exactly the pages it needs must have them.
    let _pool = knob_lock();
    let status = in_child(|| {
        // SAFETY: F_DUPFD gives the lowest free descriptor number, closed at once.
        let lowest_free = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 0) };
        // SAFETY: our own fresh descriptor.
        unsafe { libc::close(lowest_free) };
        let Some(old) = common::set_soft_limit(libc::RLIMIT_NOFILE, lowest_free as usize) else { return 2 };
        let r = RingOptions::new().capacity(2 << 20).huge_pages(true).shared().map(drop);
        common::set_soft_limit(libc::RLIMIT_NOFILE, old as usize);
        let Err(e) = r else { return 3 };
        let errno =
            e.raw_os_error().or_else(|| std::error::Error::source(&e)?.downcast_ref::<io::Error>()?.raw_os_error());
        if errno != Some(libc::EMFILE) {
            eprintln!("{e} ({e:?})");
            return 4;
        }
        if e.to_string().contains("hugetlbfs") {
            eprintln!("{e}");
            return 5;
        }
        0
    });
    assert_eq!(status, 0, "2 = setrlimit failed, 3 = made anyway, 4 = not EMFILE, 5 = blamed on hugetlbfs");
}
