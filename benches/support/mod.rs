//! Code shared by the benches (`benches/*.rs`) and the comparison demo (`examples/compare.rs`,
//! which includes this file with `#[path]`): system helpers (pinning, clocks, shared memory,
//! fork), creation timing and statistics here; the competitors in `rings.rs`, the streaming
//! drivers in `stream.rs`, messages in `messages.rs`, round trips in `ping.rs`, the interleaved
//! loop with placement probes in `interleave.rs`, the SVG chart in `chart.rs`.
//!
//! Method, in one place:
//! - the producer (or pinger) runs on CPU 0, the consumer (or echo) on CPU 1;
//! - streaming counts bytes moved end to end: the producer copies each write in from its own
//!   buffer, the consumer copies each read out into its own buffer (at most one write's worth
//!   per read), so every competitor does the same work;
//! - each run first streams a warm-up (faulting in the ring's pages and warming the caches),
//!   then both sides meet at a spinning barrier and the timed part starts: from the producer
//!   leaving the barrier to the consumer holding the last byte (`CLOCK_MONOTONIC`, which is the
//!   same clock in both processes of a forked run);
//! - rings are created outside the timed part.
#![allow(dead_code, unreachable_pub)]

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use mirror_ring::{Backend, MirrorMap, RingOptions};

#[cfg(feature = "tokio")]
mod async_rows;
mod chart;
mod interleave;
mod messages;
mod pair;
mod ping;
mod records;
mod rings;
mod stream;

// Each bench uses a part; the demo uses all of it.
#[cfg(feature = "tokio")]
#[allow(unused_imports)]
pub use async_rows::*;
#[allow(unused_imports)]
pub use chart::*;
#[allow(unused_imports)]
pub use interleave::*;
#[allow(unused_imports)]
pub use messages::*;
#[allow(unused_imports)]
pub use ping::*;
#[allow(unused_imports)]
pub use records::*;
#[allow(unused_imports)]
pub use rings::*;
#[allow(unused_imports)]
pub use stream::*;

pub const KIB: usize = 1024;
pub const MIB: usize = 1024 * 1024;
pub const GIB: usize = 1024 * 1024 * 1024;

/// The CPU the producer (or pinger) runs on.
pub const PRODUCER_CPU: usize = 0;
/// The CPU the consumer (or echo side) runs on.
pub const CONSUMER_CPU: usize = 1;

// ---------------------------------------------------------------------------------------------
// Small system helpers
// ---------------------------------------------------------------------------------------------

/// Set once any [`pin_to`] failed: the figures may then come from unpinned threads, or from
/// two threads on one CPU (a thread inherits its parent's mask).
static PIN_FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Pins the calling thread to `cpu`. Returns false if that is impossible (fewer CPUs, or a
/// cpuset that excludes it); the measurement then runs unpinned, says so on stderr the first
/// time, and [`pinning_failed`] tells the report.
pub fn pin_to(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let pinned = cpu < 8 * std::mem::size_of::<libc::cpu_set_t>() && {
        // SAFETY: cpu is below the set's capacity (checked just before).
        unsafe { libc::CPU_SET(cpu, &mut set) };
        // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
    };
    if !pinned && !PIN_FAILED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        eprintln!(
            "warning: cannot pin a thread to CPU {cpu} ({}): the figures come from unpinned threads, \
             perhaps both on one CPU",
            std::io::Error::last_os_error()
        );
    }
    pinned
}

/// Whether any [`pin_to`] failed in this process.
pub fn pinning_failed() -> bool {
    PIN_FAILED.load(std::sync::atomic::Ordering::Relaxed)
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the machine, so a forked
/// consumer's end time can be compared with the parent's start time.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Nanoseconds the calling thread has spent runnable but waiting for a CPU
/// (`/proc/thread-self/schedstat`, second field): time another task had our CPU. Zero where the
/// kernel does not report it.
pub fn run_delay_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// CPU time used by this process so far (user + system, all threads).
pub fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A few pages of memory shared with forked children (anonymous shared memory, via the
/// crate's public `MirrorMap`; only the first view is used). Holds the barrier, the
/// timestamps, and the cursors of the hand-written rings.
pub struct Shared {
    map: MirrorMap,
}

impl Shared {
    pub fn new(len: usize) -> io::Result<Shared> {
        Ok(Shared { map: MirrorMap::new(len)? })
    }

    /// The `T` at byte offset `off`.
    ///
    /// # Safety
    ///
    /// `T` must be made of atomics (any bit pattern valid, shared access fine), `off` aligned
    /// for it, and `off + size_of::<T>() <= len`.
    pub unsafe fn at<T>(&self, off: usize) -> &T {
        debug_assert!(off + std::mem::size_of::<T>() <= self.map.len());
        // SAFETY: per the contract; the map is zero-filled shared memory that lives as long
        // as self.
        unsafe { &*self.map.as_ptr().add(off).cast::<T>() }
    }

    pub fn ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// The control block of one run, in shared memory.
#[repr(C)]
struct Control {
    arrived: CachePadded<AtomicU32>,
    t0: CachePadded<AtomicU64>,
    t1: AtomicU64,
    mismatches: AtomicU64,
    preempted: AtomicU64,
}

impl Control {
    /// A two-party spinning barrier (single use): no futex wake-up lands in the timed part.
    fn meet(&self) {
        // AcqRel: each side's warm-up reads/writes happen before the other leaves the barrier.
        self.arrived.fetch_add(1, Ordering::AcqRel);
        while self.arrived.load(Ordering::Acquire) < 2 {
            std::hint::spin_loop();
        }
    }
}

/// In a freshly forked child: pins it to the consumer CPU, runs `f`, and leaves through
/// `_exit` (status 0 on `Ok`, 1 on `Err`, 101 on panic). Never returns.
fn child_main(f: impl FnOnce() -> io::Result<()>) -> ! {
    pin_to(CONSUMER_CPU);
    let code = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => 0,
        Ok(Err(_)) => 1,
        Err(_) => 101,
    };
    // SAFETY: _exit ends the child without running destructors or atexit handlers that belong
    // to the parent.
    unsafe { libc::_exit(code) }
}

/// `fork()`. The drivers fork only while this process runs one thread (the benches and the
/// demo join every thread they start before forking).
fn fork() -> io::Result<Child> {
    // SAFETY: the child continues in the caller, which sends it straight into `child_main`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(Child(pid))
    }
}

/// A forked child (or, with pid 0, the child itself). Dropping it without `reap` kills and
/// reaps the child, so an error in the parent never leaves a child spinning.
struct Child(libc::pid_t);

impl Child {
    fn is_child(&self) -> bool {
        self.0 == 0
    }

    /// Waits for the child and turns a non-zero exit into an error.
    fn reap(mut self) -> io::Result<()> {
        let status = wait_pid(self.0)?;
        self.0 = 0;
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            Ok(())
        } else {
            Err(io::Error::other(format!("benchmark child failed (wait status {status:#x})")))
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.0 > 0 {
            // SAFETY: kill and wait on our own child.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
            let _ = wait_pid(self.0);
        }
    }
}

fn wait_pid(pid: libc::pid_t) -> io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Creation
// ---------------------------------------------------------------------------------------------

/// Time to build the mirrored mapping alone (`MirrorOptions::map`: reserve, map, mirror,
/// optional prefault); the drop (unmap) is not timed.
pub fn create_map(backend: Backend, cap: usize, prefault: bool) -> io::Result<Duration> {
    let mut o = mirror_ring::MirrorOptions::new();
    o.backend(backend).prefault(prefault);
    let t = Instant::now();
    let map = o.map(cap)?;
    let d = t.elapsed();
    drop(map);
    Ok(d)
}

/// Free 2 MiB huge pages right now (0 when the kernel does not say).
pub fn huge_pages_free() -> u64 {
    std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether shared memory may have transparent huge pages here, as the crate itself decides it
/// (the kernel's `shmem_enabled` knobs, the top-level one and the 2 MiB one, which overrides
/// it): a 2 MiB map asked for them is built. The demo never changes the knobs.
pub fn shmem_thp_allowed() -> bool {
    mirror_ring::MirrorOptions::new().transparent_huge_pages(true).map(2 * MIB).is_ok()
}

/// What backs a ring's data in the page-size comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paging {
    /// 4 KiB pages (the default).
    Small,
    /// 2 MiB hugetlb pages (`RingOptions::huge_pages`).
    Huge,
    /// Transparent huge pages of shared memory (`RingOptions::transparent_huge_pages`).
    Thp,
}

impl Paging {
    pub fn name(self) -> &'static str {
        match self {
            Paging::Small => "4 KiB pages",
            Paging::Huge => "huge pages",
            Paging::Thp => "transparent huge pages",
        }
    }

    /// Default options for a ring of `cap` bytes backed this way.
    pub fn options(self, cap: usize) -> RingOptions {
        let mut o = RingOptions::new();
        o.capacity(cap).huge_pages(self == Paging::Huge).transparent_huge_pages(self == Paging::Thp);
        o
    }
}

/// Time to build a thread ring of `cap` bytes with default options backed per `paging`,
/// optionally prefaulted; the drop is not timed.
pub fn create_ring_paged(cap: usize, prefault: bool, paging: Paging) -> io::Result<Duration> {
    let mut o = paging.options(cap);
    o.prefault(prefault);
    let t = Instant::now();
    let ring = o.build()?;
    let d = t.elapsed();
    drop(ring);
    Ok(d)
}

/// The first lap over a fresh ring against the second, in one thread: `cap` bytes written with
/// 4 KiB `write_all`s then read back with 4 KiB `read`s, twice. The first lap pays every page
/// fault of both views (4 KiB pages: one per 4 KiB per view; huge pages: one per 2 MiB per
/// view). Returns (first lap, second lap); creation is not timed.
pub fn first_lap(cap: usize, paging: Paging) -> io::Result<(Duration, Duration)> {
    use std::io::{Read, Write};
    let (mut tx, mut rx) = paging.options(cap).build()?;
    let cap = tx.capacity();
    let src = vec![0x5Au8; 4 * KIB];
    let mut dst = vec![0u8; 4 * KIB];
    let mut lap = || -> io::Result<Duration> {
        let t = Instant::now();
        for _ in 0..cap / (4 * KIB) {
            tx.write_all(&src)?;
        }
        for _ in 0..cap / (4 * KIB) {
            rx.read_exact(&mut dst)?;
        }
        Ok(t.elapsed())
    };
    let first = lap()?;
    let second = lap()?;
    std::hint::black_box(&dst);
    Ok((first, second))
}

/// Time to build a thread ring (`RingOptions::build`: the mapping, plus the header, whose first
/// write faults in the control page, and the two ends); the drop (unmap) is not timed.
pub fn create_ring(backend: Backend, cap: usize, prefault: bool) -> io::Result<Duration> {
    let mut o = RingOptions::new();
    o.capacity(cap).backend(backend).prefault(prefault);
    let t = Instant::now();
    let ring = o.build()?;
    let d = t.elapsed();
    drop(ring);
    Ok(d)
}

// ---------------------------------------------------------------------------------------------
// Statistics and formatting
// ---------------------------------------------------------------------------------------------

/// The median (mean of the middle two for an even count). NaN for none.
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// "64 B", "4 KiB", "16 MiB", "1 GiB".
pub fn fmt_size(n: usize) -> String {
    if n >= GIB && n % GIB == 0 {
        format!("{} GiB", n / GIB)
    } else if n >= MIB && n % MIB == 0 {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n % KIB == 0 {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} B")
    }
}

/// "0", "5us", "1ms".
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us == 0 {
        "0".into()
    } else if us % 1000 == 0 {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

/// The machine, for reports: kernel, CPU model, online CPUs.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("Linux {}, {cpu}, {cpus} CPUs", mirror_ring::kernel_release())
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------------------------
