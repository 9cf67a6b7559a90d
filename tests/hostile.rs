//! Hostile peers and bad files: a header scribbler while both ends run, forged role slots,
//! every kind of bad file handed to `SharedRing::from_fd`, and a peer that tries to resize or
//! punch holes in a sealed memfd.
//!
//! Everything that could crash runs in a forked child, so a crash (SIGSEGV, SIGBUS) shows as a
//! failed exit status, and every wait is bounded, so a hang shows as a failure too.

// The tests play the hostile peer: they map ring files and create memfds themselves.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::header_offsets::*;
use common::{available, open_fds, our_mappings, page_size, scale, seed, spawn_child, HeaderView, Pattern, Rng};
use mirror_ring::{Backend, RingOptions, SharedRing};

const KIB: usize = 1024;
const LONG: Duration = Duration::from_secs(20);
/// A blocked call must notice a dead peer within this: 10x the 100 ms the design promises.
const DEATH: Duration = Duration::from_secs(1);

/// Runs `f` in a forked child, bounded by `limit`; returns its exit status (128 + signal if it
/// crashed).
fn in_child_within(limit: Duration, f: impl FnOnce() -> i32) -> i32 {
    spawn_child(f).wait_within(limit)
}

impl HeaderView {
    /// Forges a role slot: start time, then pid, then state, as a claimant would write them.
    fn forge_slot(&self, off: usize, state: u32, pid: i32, start: u64) {
        self.u64_at(off + 8).store(start, Ordering::SeqCst);
        self.u32_at(off + 4).store(pid as u32, Ordering::SeqCst);
        self.u32_at(off).store(state, Ordering::SeqCst);
    }
}

fn seal(f: &File, seals: libc::c_int) {
    // SAFETY: fcntl on an open descriptor.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_ADD_SEALS, seals) };
    assert_eq!(r, 0, "F_ADD_SEALS: {}", std::io::Error::last_os_error());
}

const SHRINK_GROW: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;

fn errno_of(r: libc::c_int) -> Option<i32> {
    (r != 0).then(|| std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

// ---------------------------------------------------------------------------------------------
// Sealed memfds.

/// Tries to resize or reseal a ring file; returns the errno of each attempt (0 if it worked).
fn try_to_resize(fd: std::os::fd::BorrowedFd<'_>, size: i64) -> [i32; 5] {
    let fd = fd.as_raw_fd();
    // SAFETY: plain syscalls on an open descriptor.
    unsafe {
        [
            errno_of(libc::ftruncate(fd, 0)).unwrap_or(0),
            errno_of(libc::ftruncate(fd, size - 1)).unwrap_or(0),
            errno_of(libc::ftruncate(fd, size * 2)).unwrap_or(0),
            errno_of(libc::fallocate(fd, 0, 0, size * 2)).unwrap_or(0),
            errno_of(libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_WRITE)).unwrap_or(0),
        ]
    }
}

#[test]
fn another_holder_cannot_resize_or_reseal_a_ring_memfd() {
    let ring = RingOptions::new().capacity(64 * KIB).backend(Backend::Memfd).shared().unwrap();
    let size = (page_size() + 64 * KIB) as i64;
    let other = ring.as_fd().unwrap().try_clone_to_owned().unwrap();
    // SAFETY: F_GET_SEALS on an open descriptor.
    let seals = unsafe { libc::fcntl(other.as_raw_fd(), libc::F_GET_SEALS) };
    assert_eq!(seals, libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL);
    assert_eq!(try_to_resize(other.as_fd(), size), [libc::EPERM; 5], "in this process");

    // The same from another process that received the descriptor over a socket.
    let (a, b) = UnixStream::pair().unwrap();
    let mut child = spawn_child(|| {
        let fd = mirror_ring::recv_fd(&b).unwrap();
        i32::from(try_to_resize(fd.as_fd(), size) != [libc::EPERM; 5])
    });
    ring.send_to(&a).unwrap();
    assert_eq!(child.wait_within(LONG), 0, "another process resized or resealed the ring file");

    // Still the same size, and the ring still works.
    assert_eq!(File::from(other).metadata().unwrap().len(), size as u64);
    let mut tx = ring.clone().into_producer().unwrap();
    let mut rx = ring.into_consumer().unwrap();
    tx.write_all(&[9; 60_000]).unwrap();
    let mut buf = vec![0; 60_000];
    let n = rx.try_read(&mut buf).unwrap();
    assert!(n > 0 && buf[..n].iter().all(|&b| b == 9));
}

/// Hole punching is allowed by the size seals: the punched range reads as zeros (never
/// SIGBUS). A holder that punches the header or the data while both ends run can only corrupt
/// the stream, which the ends report (or deliver as changed bytes): `InvalidData` for a cursor
/// that went back; for a hole in a role slot, what an overwritten claim or a forged death gets
/// (`docs::lifecycle`): `ConnectionAborted` at the end whose claim word changed (its role is
/// no longer its own); where a hole turned the holder's pid into another one, which no live
/// process has, `UnexpectedEof` at the consumer (its producer died) and `BrokenPipe` at the
/// producer (its consumer died). A soak found the first two (seeds 84862888 and 124; the test
/// accepted only `TimedOut` and `InvalidData` before); the third is their mirror image,
/// checked by hand.
#[test]
fn punching_holes_in_a_ring_file_corrupts_nothing_but_the_stream() {
    use ErrorKind::{BrokenPipe, ConnectionAborted, InvalidData, TimedOut, UnexpectedEof};
    let writer_may_get = |kind| matches!(kind, TimedOut | InvalidData | ConnectionAborted | BrokenPipe);
    let reader_may_get = |kind| matches!(kind, TimedOut | InvalidData | ConnectionAborted | UnexpectedEof);
    let status = in_child_within(2 * LONG, || {
        let ring = RingOptions::new().capacity(16 * KIB).backend(Backend::Memfd).shared().unwrap();
        let fd = ring.as_fd().unwrap().try_clone_to_owned().unwrap();
        // The whole file: the header page and the data (16 KiB, or one larger page).
        let size = (page_size() + ring.capacity()) as i64;
        let mut tx = ring.clone().into_producer().unwrap();
        let mut rx = ring.clone().into_consumer().unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut rng = Rng::new(seed());
                while !stop.load(Ordering::Relaxed) {
                    let off = rng.up_to(size as usize - 1) as i64;
                    let len = 1 + rng.up_to((size - off) as usize - 1) as i64;
                    // SAFETY: fallocate on an open descriptor.
                    let r = unsafe {
                        libc::fallocate(
                            fd.as_raw_fd(),
                            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                            off,
                            len,
                        )
                    };
                    assert_eq!(r, 0, "punching a hole: {}", std::io::Error::last_os_error());
                }
            });
            // The ends are borrowed, not moved: neither closes while the other still runs.
            let writer = s.spawn(|| {
                let deadline = Instant::now() + Duration::from_millis(300);
                while Instant::now() < deadline {
                    match tx.write_timeout(&[0xee; 3000], Duration::from_millis(20)) {
                        Ok(_) => {}
                        Err(e) if writer_may_get(e.kind()) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            });
            let reader = s.spawn(|| {
                let deadline = Instant::now() + Duration::from_millis(300);
                let mut buf = [0u8; 5000];
                while Instant::now() < deadline {
                    match rx.read_timeout(&mut buf, Duration::from_millis(20)) {
                        Ok(n) => assert!(n <= buf.len()),
                        Err(e) if reader_may_get(e.kind()) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            });
            let w = writer.join().unwrap();
            let r = reader.join().unwrap();
            stop.store(true, Ordering::Relaxed);
            w.and(r)
        })
        .map_or_else(
            |e| {
                eprintln!("{:?}: {e}", e.kind());
                1
            },
            |()| 0,
        )
    });
    assert_eq!(status, 0, "1: an unexpected error kind; 135: SIGBUS; 139: SIGSEGV");
}

// ---------------------------------------------------------------------------------------------
// Bad files for from_fd.

/// The bytes of a fresh, unclaimed ring of `cap` bytes (a power of two, at least a page).
fn ring_image(cap: usize) -> Vec<u8> {
    let ring = RingOptions::new().capacity(cap).backend(Backend::Memfd).shared().unwrap();
    assert_eq!(ring.capacity(), cap, "a ring image of {cap} bytes");
    file_bytes(&ring, page_size() + cap)
}

/// The first `len` bytes of a memfd ring's file, as another holder of it reads them.
fn file_bytes(ring: &SharedRing, len: usize) -> Vec<u8> {
    let file = File::from(ring.as_fd().unwrap().try_clone_to_owned().unwrap());
    let mut bytes = vec![0u8; len];
    file.read_exact_at(&mut bytes, 0).unwrap();
    bytes
}

/// A memfd holding `bytes`, `len` long (sparse beyond the bytes), with `seals`.
fn file_with(bytes: &[u8], len: u64, sealing: bool, seals: libc::c_int) -> OwnedFd {
    let f = common::memfd(sealing);
    f.set_len(len).unwrap();
    f.write_all_at(&bytes[..bytes.len().min(len as usize)], 0).unwrap();
    if seals != 0 {
        seal(&f, seals);
    }
    f.into()
}

fn patched(img: &[u8], off: usize, value: &[u8]) -> Vec<u8> {
    let mut v = img.to_vec();
    v[off..off + value.len()].copy_from_slice(value);
    v
}

/// Every bad file must give `InvalidData`, in a child (a crash is a failure) that ends with the
/// descriptors and shared mappings it started with.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn from_fd_refuses_every_bad_file_with_invalid_data_and_leaks_nothing() {
    let status = in_child_within(2 * LONG, || {
        let page = page_size();
        // Four data pages (16 KiB with 4 KiB pages): "3 data pages" and "half the data" below
        // stay distinct wrong sizes at every page size.
        let cap = 4 * page;
        let img = ring_image(cap);
        let len = (page + cap) as u64;
        let good = |bytes: &[u8]| file_with(bytes, len, true, SHRINK_GROW);

        // Positive controls: a faithful sealed copy attaches, and works.
        let copy = SharedRing::from_fd(good(&img)).expect("a faithful copy of a ring attaches");
        assert_eq!(copy.capacity(), cap);
        let mut tx = copy.clone().into_producer().unwrap();
        let mut rx = copy.into_consumer().unwrap();
        tx.write_all(b"copy").unwrap();
        let mut four = [0u8; 4];
        rx.read_exact(&mut four).unwrap();
        assert_eq!(&four, b"copy");
        drop((tx, rx));

        let fds = open_fds();
        let maps = our_mappings();
        let mut failures = Vec::new();
        let mut check = |what: &str, fd: OwnedFd| match SharedRing::from_fd(fd) {
            Err(e) if e.kind() == ErrorKind::InvalidData => {}
            Err(e) => failures.push(format!("{what}: {:?} ({e})", e.kind())),
            Ok(_) => failures.push(format!("{what}: accepted")),
        };

        // Not memory files at all.
        let mut p = [0; 2];
        // SAFETY: p is a valid array of two ints.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors nobody else owns.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
        check("pipe, read end", r);
        check("pipe, write end", w);
        check("socket", UnixStream::pair().unwrap().0.into());
        check("/dev/zero", File::options().read(true).write(true).open("/dev/zero").unwrap().into());
        check("/dev/null", File::options().read(true).write(true).open("/dev/null").unwrap().into());
        check("a directory", File::open("/").unwrap().into());
        check("an executable on disk", File::open("/proc/self/exe").unwrap().into());

        // Memory files without the seals.
        check("unsealed copy of a ring", file_with(&img, len, true, 0));
        check("copy that cannot be sealed", file_with(&img, len, false, 0));
        check("copy sealed against shrinking only", file_with(&img, len, true, libc::F_SEAL_SHRINK));
        check("copy sealed against growing only", file_with(&img, len, true, libc::F_SEAL_GROW));
        check("copy sealed against writing", file_with(&img, len, true, SHRINK_GROW | libc::F_SEAL_WRITE));
        check("copy sealed against future writes", file_with(&img, len, true, SHRINK_GROW | libc::F_SEAL_FUTURE_WRITE));

        // Sealed, but the wrong size or contents.
        check("sealed empty file", file_with(&[], 0, true, SHRINK_GROW));
        check("sealed 100-byte file", file_with(&img, 100, true, SHRINK_GROW));
        check("sealed header page alone", file_with(&img, page as u64, true, SHRINK_GROW));
        check("sealed file, half a data page", file_with(&img, (page + page / 2) as u64, true, SHRINK_GROW));
        check("sealed file, 3 data pages", file_with(&img, (page + 3 * page) as u64, true, SHRINK_GROW));
        check("sealed short copy (half the data)", file_with(&img, (page + cap / 2) as u64, true, SHRINK_GROW));
        check("sealed zeros", good(&vec![0u8; page + cap]));
        let mut garbage = vec![0u8; page + cap];
        Rng::new(seed()).fill(&mut garbage);
        check("sealed garbage", good(&garbage));
        check("huge sparse file, zero header", file_with(&[], (page as u64) + (1 << 40), true, SHRINK_GROW));
        check("absurd file size", file_with(&img, (page as u64) + (1 << 62), true, SHRINK_GROW));

        // A faithful copy with one field broken.
        let fields: &[(&str, usize, &[u8])] = &[
            ("magic", OFF_MAGIC, b"MIRRRINH"),
            ("version 3 (frames without stamps)", OFF_VERSION, &3u32.to_le_bytes()),
            ("version 4 (frames stamped after head)", OFF_VERSION, &4u32.to_le_bytes()),
            ("version 6 (batches stamped after head)", OFF_VERSION, &6u32.to_le_bytes()),
            ("version 99", OFF_VERSION, &99u32.to_le_bytes()),
            ("backend 0", OFF_BACKEND, &0u32.to_le_bytes()),
            ("backend 9", OFF_BACKEND, &9u32.to_le_bytes()),
            ("capacity 2x", OFF_CAPACITY, &(2 * cap as u64).to_le_bytes()),
            ("capacity 0", OFF_CAPACITY, &0u64.to_le_bytes()),
            ("capacity - 1", OFF_CAPACITY, &(cap as u64 - 1).to_le_bytes()),
            ("huge capacity", OFF_CAPACITY, &(1u64 << 40).to_le_bytes()),
            ("capacity u64::MAX", OFF_CAPACITY, &u64::MAX.to_le_bytes()),
            ("data offset 0", OFF_DATA_OFFSET, &0u64.to_le_bytes()),
            ("data offset 2 pages", OFF_DATA_OFFSET, &(2 * page as u64).to_le_bytes()),
            ("producer state 4", OFF_PRODUCER, &4u32.to_le_bytes()),
            ("consumer state u32::MAX", OFF_CONSUMER, &u32::MAX.to_le_bytes()),
            ("head > tail + capacity", OFF_HEAD, &(cap as u64 + 1).to_le_bytes()),
            // (A tail ahead of the head by up to the capacity is valid: a consumer can take and
            // release a frame stamped before its head was stored.)
            ("tail > head + capacity", OFF_TAIL, &(cap as u64 + 1).to_le_bytes()),
        ];
        for (what, off, value) in fields {
            check(&format!("copy with bad {what}"), good(&patched(&img, *off, value)));
        }

        // A real ring's own file, reopened without write access.
        let ring = RingOptions::new().capacity(cap).backend(Backend::Memfd).shared().unwrap();
        let path = format!("/proc/self/fd/{}", ring.as_fd().unwrap().as_raw_fd());
        check("ring file opened read-only", File::open(&path).unwrap().into());
        check("ring file opened write-only", File::options().write(true).open(&path).unwrap().into());
        let cpath = std::ffi::CString::new(path.as_str()).unwrap();
        // SAFETY: a valid NUL-terminated path; the result is checked.
        let opath = unsafe { libc::open(cpath.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        assert!(opath >= 0);
        // SAFETY: a fresh descriptor that nothing else owns.
        check("ring file as an O_PATH descriptor", unsafe { OwnedFd::from_raw_fd(opath) });
        drop(ring);

        if !failures.is_empty() {
            eprintln!("from_fd accepted or misreported:\n  {}", failures.join("\n  "));
            return 1;
        }
        if open_fds() != fds {
            eprintln!("descriptors leaked: before {fds:?}, after {:?}", open_fds());
            return 2;
        }
        if our_mappings() != maps {
            eprintln!("mappings leaked");
            return 3;
        }
        0
    });
    assert_eq!(status, 0, "1: a bad file not refused with InvalidData, 2: fd leak, 3: mapping leak, >128: crash");
}

/// A consistent but enormous ring file (sparse) is a valid ring: attaching maps address space
/// only, or fails cleanly when that runs out.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn a_consistent_huge_sparse_ring_file_attaches_or_fails_cleanly() {
    let status = in_child_within(LONG, || {
        let page = page_size();
        let huge = 1u64 << 40;
        let img = patched(&ring_image(page)[..page], OFF_CAPACITY, &huge.to_le_bytes());
        match SharedRing::from_fd(file_with(&img, page as u64 + huge, true, SHRINK_GROW)) {
            Ok(ring) => {
                if ring.capacity() as u64 != huge {
                    return 1;
                }
                let mut rx = ring.into_consumer().unwrap();
                i32::from(rx.try_read(&mut [0u8; 8]).unwrap_err().kind() != ErrorKind::WouldBlock)
            }
            Err(e) if e.kind() == ErrorKind::OutOfMemory => 0,
            Err(e) => {
                eprintln!("{e}");
                2
            }
        }
    });
    assert_eq!(status, 0);
}

/// The fuzz `header` target's seeds (`fuzz/seeds/header`), as that target reads them: three
/// selector bytes, then the start of the ring file.
const FUZZ_SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/header");

/// The file size the `header` target makes for `sel` when the seeds use it: one 4 KiB page plus
/// the capacity `4 KiB << k` (the target's other shapes are not rings), and whether it seals
/// shrinking and growing.
fn fuzz_seed_shape(sel: &[u8]) -> (usize, bool) {
    let k = u32::from(sel[0] >> 2) % 6;
    assert_eq!(sel[0] & 3, 3, "a seed must pick the exact size of a ring");
    (4096 << k, sel[2] & 3 != 3)
}

/// The seeds start the header target past the magic number and the layout version: if they
/// stop being rings this crate accepts (the version moved on, say), the target fuzzes nothing
/// but the first check. Remake them with `write_the_fuzz_seeds`.
#[test]
fn the_fuzz_seeds_are_rings_this_version_accepts() {
    if page_size() != 4096 {
        eprintln!("skipped: the header target's seeds are 4 KiB header pages");
        return;
    }
    let mut seen = 0;
    for entry in std::fs::read_dir(FUZZ_SEEDS).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let (sel, content) = data.split_at(3);
        let (cap, sealed) = fuzz_seed_shape(sel);
        assert!(sealed, "{}: the seed must keep the required seals", path.display());
        let ring = SharedRing::from_fd(file_with(content, (4096 + cap) as u64, true, SHRINK_GROW))
            .unwrap_or_else(|e| panic!("{}: {e} (remake the seeds: see fuzz/README.md)", path.display()));
        assert_eq!(ring.capacity(), cap, "{}", path.display());
        seen += 1;
    }
    assert_eq!(seen, 2, "the two seeds of fuzz/README.md");
}

/// Writes the `header` target's two seeds: a fresh 4 KiB ring, and a 64 KiB ring with both ends
/// claimed and cursors past 64 Ki. The header page of a memfd ring this crate made, trailing
/// zeros cut, after the target's selector bytes. Run after the header layout changes:
/// `cargo test --test hostile -- --ignored write_the_fuzz_seeds`.
#[test]
#[ignore = "writes fuzz/seeds/header; run it after a change of the header layout"]
fn write_the_fuzz_seeds() {
    assert_eq!(page_size(), 4096, "the header target's seeds are 4 KiB header pages");
    let header_page = |ring: &SharedRing| {
        let mut page = file_bytes(ring, 4096);
        let end = page.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        page.truncate(end);
        page
    };
    let write = |name: &str, sel: [u8; 3], page: &[u8]| {
        let mut seed = sel.to_vec();
        seed.extend_from_slice(page);
        std::fs::write(format!("{FUZZ_SEEDS}/{name}"), seed).unwrap();
    };
    let small = RingOptions::new().capacity(4 * KIB).backend(Backend::Memfd).shared().unwrap();
    write("valid-4k", [0x03, 0, 0], &header_page(&small));

    let ring = RingOptions::new().capacity(64 * KIB).backend(Backend::Memfd).shared().unwrap();
    let attach = || SharedRing::from_fd(ring.as_fd().unwrap().try_clone_to_owned().unwrap()).unwrap();
    let page = {
        let (mut tx, mut rx) = (attach().into_producer().unwrap(), attach().into_consumer().unwrap());
        let chunk = [0x5au8; 4096];
        let mut buf = [0u8; 4096];
        for _ in 0..17 {
            assert_eq!(tx.try_write(&chunk).unwrap(), chunk.len());
            rx.read_exact(&mut buf).unwrap();
        }
        header_page(&ring)
    };
    write("valid-64k-claimed", [0x13, 0, 0], &page);
}

// ---------------------------------------------------------------------------------------------
// Forged role slots.

/// The start time of `pid` (`/proc/<pid>/stat` field 22).
fn start_time_of(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_ascii_whitespace().nth(19)?.parse().ok()
}

/// What a consumer's bounded read returns when the producer slot holds the forged values.
fn read_with_forged_producer(state: u32, pid: i32, start: u64) -> Result<usize, ErrorKind> {
    let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    let view = HeaderView::map(ring.as_fd().unwrap());
    let mut rx = ring.into_consumer().unwrap();
    view.forge_slot(OFF_PRODUCER, state, pid, start);
    rx.read_timeout(&mut [0u8; 8], Duration::from_millis(150)).map_err(|e| e.kind())
}

/// What a producer's bounded write into a full ring returns when the consumer slot is forged.
fn write_with_forged_consumer(state: u32, pid: i32, start: u64) -> Result<usize, ErrorKind> {
    let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    let view = HeaderView::map(ring.as_fd().unwrap());
    let mut tx = ring.into_producer().unwrap();
    let cap = tx.capacity();
    assert_eq!(tx.try_write(&vec![0; cap]).unwrap(), cap, "the ring is full");
    view.forge_slot(OFF_CONSUMER, state, pid, start);
    tx.write_timeout(b"x", Duration::from_millis(150)).map_err(|e| e.kind())
}

/// A forged role slot (name, state, pid, start time) and what a bounded read should return.
type ForgedCase = (&'static str, u32, i32, u64, Result<usize, ErrorKind>);

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn forged_role_slots_never_fool_the_watcher_into_misbehaving() {
    const CLAIMED: u32 = 1;
    const CLOSED: u32 = 2;
    use ErrorKind::{BrokenPipe, TimedOut, UnexpectedEof};
    let status = in_child_within(2 * LONG, || {
        let me = std::process::id() as i32;
        let my_start = start_time_of(me).unwrap();
        // A live process we own, to watch (it sleeps until killed), and a dead, reaped one.
        let mut sleeper = spawn_child(|| loop {
            std::thread::sleep(Duration::from_secs(1));
        });
        let sleeper_pid = sleeper.pid();
        let sleeper_start = start_time_of(sleeper_pid).unwrap();
        let reaped = {
            let mut child = spawn_child(|| 0);
            child.wait();
            child.pid()
        };

        let mut cases: Vec<ForgedCase> = vec![
            ("our own pid", CLAIMED, me, my_start, Err(TimedOut)),
            // Our pid with a start time not ours: what a dead holder whose pid this process got
            // later leaves (tests/pid_reuse.rs), so dead, as for any other process.
            ("our own pid, garbage start", CLAIMED, me, u64::MAX, Err(UnexpectedEof)),
            ("pid 0", CLAIMED, 0, 0, Err(TimedOut)),
            ("pid -1", CLAIMED, -1, 5, Err(TimedOut)),
            ("pid i32::MIN", CLAIMED, i32::MIN, u64::MAX, Err(TimedOut)),
            ("pid i32::MAX (no such process)", CLAIMED, i32::MAX, 1, Err(UnexpectedEof)),
            ("a reaped child's pid", CLAIMED, reaped, 0, Err(UnexpectedEof)),
            ("a live process, its start time", CLAIMED, sleeper_pid, sleeper_start, Err(TimedOut)),
            ("a live process, another start time", CLAIMED, sleeper_pid, sleeper_start + 1, Err(UnexpectedEof)),
            ("state 3", 3, sleeper_pid, sleeper_start, Err(TimedOut)),
            ("state u32::MAX", u32::MAX, i32::MAX, 1, Err(TimedOut)),
            ("closed, garbage pid", CLOSED, -77, 3, Ok(0)),
        ];
        // pid 1 (init, or a container's first process), if /proc shows it to us.
        if let Some(s1) = start_time_of(1) {
            cases.push(("pid 1, its start time", CLAIMED, 1, s1, Err(TimedOut)));
            cases.push(("pid 1, no start time", CLAIMED, 1, 0, Err(TimedOut)));
            cases.push(("pid 1, wrong start time", CLAIMED, 1, s1 + 7, Err(UnexpectedEof)));
        }
        let mut bad = 0;
        for (what, state, pid, start, want) in cases {
            let got = read_with_forged_producer(state, pid, start);
            if got != want {
                eprintln!("consumer, forged producer slot, {what}: got {got:?}, want {want:?}");
                bad += 1;
            }
            // The same forgery in the consumer slot, seen by a producer waiting for space.
            let want_w = match want {
                Err(UnexpectedEof) => Err(BrokenPipe),
                Ok(0) => Err(BrokenPipe),
                other => other,
            };
            let got = write_with_forged_consumer(state, pid, start);
            if got != want_w {
                eprintln!("producer, forged consumer slot, {what}: got {got:?}, want {want_w:?}");
                bad += 1;
            }
        }
        // The watched process was only watched: still alive, never signalled.
        let alive = sleeper.try_wait().is_none();
        // A watched process that then dies is noticed (the start time matched, so this is the
        // pidfd at work).
        let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
        let view = HeaderView::map(ring.as_fd().unwrap());
        let mut rx = ring.into_consumer().unwrap();
        view.forge_slot(OFF_PRODUCER, CLAIMED, sleeper_pid, sleeper_start);
        let first = rx.read_timeout(&mut [0u8; 8], Duration::from_millis(60)).map_err(|e| e.kind());
        sleeper.kill();
        let killed_at = Instant::now();
        let second = rx.read_timeout(&mut [0u8; 8], LONG).map_err(|e| e.kind());
        let latency = killed_at.elapsed();
        sleeper.wait();
        // Noticed within 10x the design's 100 ms, while still an unreaped zombie.
        if !alive || first != Err(TimedOut) || second != Err(UnexpectedEof) || latency >= DEATH {
            eprintln!("watched sleeper: alive {alive}, before kill {first:?}, after {second:?} in {latency:?}");
            bad += 1;
        }
        bad
    });
    assert_eq!(status, 0, "{status} forged slots misjudged (see stderr)");
}

// ---------------------------------------------------------------------------------------------
// The header scribbler.

/// What the scribbler writes, and what the ends must show for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Any value anywhere, as fast as it can: it soon hits the shared `poisoned` flag. The ends
    /// may only give the allowed results, and must notice (`InvalidData`).
    FullSpeed,
    /// Mostly plausible values (nearby cursors, small role states), never the `poisoned` flag,
    /// with pauses: the ends run on with subtly wrong cursors and flags (the harder case for the
    /// validation) until one of them notices. Data must move and corruption must be seen; a
    /// false alarm cannot be told from a true one here (the `Harmless` rounds catch those).
    Plausible,
    /// Any value, but only into bytes the ends must not depend on once attached: the identity
    /// fields (checked at attach), the padding, the rest of the page, and the waiter words (a
    /// wrong value there costs a spurious or a missed wake-up, which a bounded wait absorbs).
    /// The stream must stay byte-exact, never poisoned, never closed.
    Harmless,
}

impl Mode {
    fn of_round(round: usize) -> Mode {
        [Mode::FullSpeed, Mode::Plausible, Mode::Harmless][round % 3]
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// Header bytes whose scribbling decides outcomes: the role slots, the `poisoned` flag and the
/// two cursors.
const LIVE_FIELDS: [std::ops::Range<usize>; 3] =
    [OFF_PRODUCER..OFF_POISONED + 4, OFF_HEAD..OFF_HEAD + 8, OFF_TAIL..OFF_TAIL + 8];

/// Writes values over the header page until `stop` (see [`Mode`]), mostly into the header's
/// own bytes, in 4- and 8-byte stores, counting them in `writes`.
fn scribble(hdr: usize, stop: &AtomicBool, writes: &AtomicU64, seed: u64, cap: usize, mode: Mode) {
    let page = page_size();
    let mut rng = Rng::new(seed);
    while !stop.load(Ordering::Relaxed) {
        let r = rng.next_u64();
        let off = if r & 7 != 0 { (r >> 3) as usize % HEADER_LEN } else { (r >> 3) as usize % page } & !3;
        let wide = off % 8 == 0 && (r >> 45) & 1 == 0;
        let touches = |o: usize| LIVE_FIELDS.iter().any(|f| f.contains(&o));
        match mode {
            Mode::Plausible if off & !7 == OFF_POISONED => continue,
            Mode::Harmless if touches(off) || (wide && touches(off + 4)) => continue,
            _ => {}
        }
        let kind = if mode == Mode::Plausible { 2 + (r >> 40) % 8 } else { (r >> 40) & 3 };
        if wide {
            // SAFETY: an aligned word inside the mapped header page; every access to the
            // header is atomic, in the ring and here.
            let w = unsafe { &*((hdr + off) as *const AtomicU64) };
            let v = match kind {
                0 => rng.next_u64(),
                1 => rng.next_u64() % 4,
                _ => w.load(Ordering::Relaxed).wrapping_add(rng.up_to(4 * cap) as u64).wrapping_sub(2 * cap as u64),
            };
            w.store(v, Ordering::Relaxed);
        } else {
            // SAFETY: as above, for a 4-byte-aligned u32.
            let w = unsafe { &*((hdr + off) as *const AtomicU32) };
            let v = match kind {
                0 => rng.next_u64() as u32,
                1 => (rng.next_u64() % 4) as u32,
                _ => w.load(Ordering::Relaxed).wrapping_add(rng.up_to(8) as u32).wrapping_sub(4),
            };
            w.store(v, Ordering::Relaxed);
        }
        writes.fetch_add(1, Ordering::Relaxed);
        if mode == Mode::Plausible {
            for _ in 0..rng.up_to(4000) {
                std::hint::spin_loop();
            }
        }
    }
}

/// Sets the flag when dropped (also while unwinding).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Waits (boundedly) until the scribbler has written at least once, so that everything the
/// ends do afterwards happens on a scribbled header.
fn wait_for_first_scribble(writes: &AtomicU64) {
    let until = Instant::now() + LONG;
    while writes.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < until, "the scribbler never wrote");
        std::thread::yield_now();
    }
}

/// The longest any single call may take: every call here waits at most 5 ms, so this is a
/// hang, not a slow machine (10x the design's 100 ms for a blocked call to notice a dead peer).
const CALL_BOUND: Duration = Duration::from_secs(1);

/// Tallies what the ends returned.
#[derive(Clone, Copy, Default, Debug)]
struct Tally {
    ok: u64,
    /// Bytes written (committed) or read (released) by the calls that returned `Ok`.
    moved: u64,
    invalid: u64,
    /// `BrokenPipe`, `UnexpectedEof`, a read's end of stream (`Ok(0)`), or `ConnectionAborted`
    /// (this end's role taken over).
    closed: u64,
    other_allowed: u64,
    /// The longest single call.
    max_call: Duration,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.ok += o.ok;
        self.moved += o.moved;
        self.invalid += o.invalid;
        self.closed += o.closed;
        self.other_allowed += o.other_allowed;
        self.max_call = self.max_call.max(o.max_call);
    }
    fn to_bytes(self) -> [u8; 48] {
        let v = [self.ok, self.moved, self.invalid, self.closed, self.other_allowed, self.max_call.as_nanos() as u64];
        let mut b = [0u8; 48];
        for (c, x) in b.chunks_mut(8).zip(v) {
            c.copy_from_slice(&x.to_le_bytes());
        }
        b
    }
    fn from_bytes(b: &[u8; 48]) -> Tally {
        let v: Vec<u64> = b.chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
        Tally {
            ok: v[0],
            moved: v[1],
            invalid: v[2],
            closed: v[3],
            other_allowed: v[4],
            max_call: Duration::from_nanos(v[5]),
        }
    }
    /// Counts one call's result (`Ok(bytes moved)`); `Err` for a result no header may cause.
    fn count(&mut self, r: std::io::Result<usize>, started: Instant, side: &str) -> Result<(), String> {
        self.max_call = self.max_call.max(started.elapsed());
        match r {
            Ok(n) => {
                self.ok += 1;
                self.moved += n as u64;
            }
            Err(e) => match e.kind() {
                ErrorKind::InvalidData => self.invalid += 1,
                // ConnectionAborted: the scribbler wrote a claim word naming another holding
                // of this end's role (a forged take-over); the end stops touching the ring.
                ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof | ErrorKind::ConnectionAborted => self.closed += 1,
                ErrorKind::WouldBlock | ErrorKind::TimedOut => self.other_allowed += 1,
                k => return Err(format!("{side}: {k:?}: {e}")),
            },
        }
        Ok(())
    }
}

/// Per mode: the producer's and the consumer's tallies and the scribbler's writes, summed over
/// the mode's rounds.
type Totals = [(Tally, Tally, u64); 3];

/// What the rounds of one mode showed.
enum Verdict {
    Pass,
    /// Something no header may cause: the test fails.
    Forbidden(String),
    /// Not enough happened to show what the mode must show (a loaded machine can starve a
    /// round of calls): more rounds are run before this counts as a failure.
    Unproven(String),
}

/// What the rounds of one mode must show, beyond "only allowed results" (which the drivers
/// check call by call).
fn judge(mode: Mode, (p, c, writes): &(Tally, Tally, u64), cap: usize) -> Verdict {
    let what = format!("{mode:?}: {writes} header writes; producer {p:?}; consumer {c:?}");
    if p.max_call >= CALL_BOUND || c.max_call >= CALL_BOUND {
        return Verdict::Forbidden(format!("{what}: a call took {CALL_BOUND:?} or more"));
    }
    if mode == Mode::Harmless && p.invalid + c.invalid + p.closed + c.closed != 0 {
        return Verdict::Forbidden(format!("{what}: scribbles the ends must ignore poisoned or closed the ring"));
    }
    let missing = match mode {
        _ if *writes == 0 => Some("the scribbler never wrote"),
        // Proof that the scribbler reaches the header the ends use, and that they notice.
        Mode::FullSpeed if p.invalid + c.invalid == 0 => Some("neither end ever saw corruption"),
        Mode::Plausible if p.moved + c.moved == 0 => Some("no data moved"),
        Mode::Plausible if p.invalid + c.invalid == 0 => Some("no corruption seen"),
        Mode::Harmless if c.moved < cap as u64 => Some("the stream did not go once round the ring"),
        _ => None,
    };
    match missing {
        Some(m) => Verdict::Unproven(format!("{what}: {m}")),
        None => {
            eprintln!("{what}");
            Verdict::Pass
        }
    }
}

/// Runs `planned` rounds, the modes in turn, then more rounds of each mode whose rounds have
/// not yet shown what [`judge`] asks (up to `planned` more in all), and judges every mode.
/// `round(index, mode, totals)` runs one round and adds its tallies; its `Err` (an exit code)
/// ends the test at once. Returns 0, the first round's error, or `judged` when a mode fails
/// its check.
fn run_rounds(
    planned: usize,
    judged: i32,
    label: &str,
    mut round: impl FnMut(usize, Mode, &mut Totals) -> Result<usize, i32>,
) -> i32 {
    let mut totals: Totals = Default::default();
    let mut cap = 0;
    for index in 0..planned {
        match round(index, Mode::of_round(index), &mut totals) {
            Ok(c) => cap = c,
            Err(code) => return code,
        }
    }
    let mut index = planned;
    for mode in [Mode::FullSpeed, Mode::Plausible, Mode::Harmless] {
        while index < 2 * planned && matches!(judge(mode, &totals[mode.index()], cap), Verdict::Unproven(_)) {
            eprintln!("{label}: one more {mode:?} round (so far too little happened to judge)");
            if let Err(code) = round(index, mode, &mut totals) {
                return code;
            }
            index += 1;
        }
        match judge(mode, &totals[mode.index()], cap) {
            Verdict::Pass => {}
            Verdict::Forbidden(msg) | Verdict::Unproven(msg) => {
                eprintln!("{label}: {msg}");
                return judged;
            }
        }
    }
    0
}

/// Runs the producer side until `deadline`, with every write API and bounded waits, writing
/// the stream `pat` from position 0. Returns an error message for anything a hostile header
/// must not cause.
fn drive_producer(
    tx: &mut mirror_ring::Producer,
    deadline: Instant,
    seed: u64,
    pat: &Pattern,
) -> Result<Tally, String> {
    let cap = tx.capacity();
    let mut rng = Rng::new(seed);
    let mut t = Tally::default();
    let mut pos = 0u64;
    let wait = Duration::from_millis(5);
    while Instant::now() < deadline {
        let started = Instant::now();
        let r: std::io::Result<usize> = match rng.up_to(5) {
            0 => tx.write_timeout(pat.at(pos, 1 + rng.up_to(2 * cap - 1)), wait),
            1 => tx.try_write(pat.at(pos, 1 + rng.up_to(cap - 1))),
            2 | 3 => {
                let min = rng.up_to(cap);
                let g = if rng.up_to(1) == 0 { tx.write_grant(min) } else { tx.write_grant_timeout(min, wait) };
                match g {
                    Ok(mut g) => {
                        if g.len() > cap || g.len() < min.max(1) {
                            return Err(format!("write grant of {} bytes (min {min}, capacity {cap})", g.len()));
                        }
                        // Write every byte: an out-of-bounds grant faults here.
                        let len = g.len();
                        g.copy_from_slice(pat.at(pos, len));
                        let n = rng.up_to(len);
                        g.commit(n).map(|()| n)
                    }
                    Err(e) => Err(e),
                }
            }
            _ => {
                let (free, used) = (tx.free(), tx.len());
                if free > cap || used > cap {
                    return Err(format!("free {free} / used {used} beyond capacity {cap}"));
                }
                let _ = tx.is_abandoned();
                Ok(0)
            }
        };
        if let Ok(n) = r {
            pos += n as u64;
        }
        t.count(r, started, "producer")?;
    }
    Ok(t)
}

/// The consumer side, as [`drive_producer`]. With `exact`, every byte must be the stream's;
/// otherwise the bytes are not checked (a hostile peer may change them in flight) and what must
/// hold is that every slice lies inside the ring.
fn drive_consumer(
    rx: &mut mirror_ring::Consumer,
    deadline: Instant,
    seed: u64,
    pat: &Pattern,
    exact: bool,
) -> Result<Tally, String> {
    let cap = rx.capacity();
    let mut rng = Rng::new(seed);
    let mut t = Tally::default();
    let mut buf = vec![0u8; 2 * cap];
    let mut pos = 0u64;
    let wait = Duration::from_millis(5);
    let mut sink = 0u64;
    let check = |pos: u64, got: &[u8]| {
        if exact && !pat.matches(pos, got) {
            return Err(format!("consumer: wrong bytes in {} read at stream position {pos}", got.len()));
        }
        Ok(())
    };
    while Instant::now() < deadline {
        let started = Instant::now();
        let r: std::io::Result<usize> = match rng.up_to(5) {
            0 | 1 => {
                let (want, r) = if rng.up_to(1) == 0 {
                    let want = 1 + rng.up_to(buf.len() - 1);
                    (want, rx.read_timeout(&mut buf[..want], wait))
                } else {
                    let want = 1 + rng.up_to(cap - 1);
                    (want, rx.try_read(&mut buf[..want]))
                };
                match r {
                    Ok(n) if n > want => return Err(format!("read {n} bytes into {want}")),
                    // End of stream (after a forged close flag): not data.
                    Ok(0) => Err(ErrorKind::UnexpectedEof.into()),
                    Ok(n) => {
                        check(pos, &buf[..n])?;
                        Ok(n)
                    }
                    Err(e) => Err(e),
                }
            }
            2 | 3 => {
                let min = rng.up_to(cap);
                let g = if rng.up_to(1) == 0 { rx.read_grant(min) } else { rx.read_grant_timeout(min, wait) };
                match g {
                    Ok(g) => {
                        if g.len() > cap {
                            return Err(format!("read grant of {} bytes (capacity {cap})", g.len()));
                        }
                        // Read every byte: an out-of-bounds grant faults here.
                        sink = g.iter().fold(sink, |a, &b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
                        let n = rng.up_to(g.len());
                        check(pos, &g[..n])?;
                        g.release(n).map(|()| n)
                    }
                    Err(e) => Err(e),
                }
            }
            _ => {
                let n = rx.len();
                if n > cap {
                    return Err(format!("len {n} beyond capacity {cap}"));
                }
                let _ = rx.is_abandoned();
                Ok(0)
            }
        };
        if let Ok(n) = r {
            pos += n as u64;
        }
        t.count(r, started, "consumer")?;
    }
    std::hint::black_box(sink);
    Ok(t)
}

/// One round trip through a ring before the scribbler starts: a build that fails on its own
/// must not pass as "the scribbler made it fail".
fn control(tx: &mut mirror_ring::Producer, rx: &mut mirror_ring::Consumer) -> Result<(), String> {
    tx.write_all(b"control").map_err(|e| format!("control write: {e}"))?;
    let mut got = [0u8; 7];
    rx.read_exact(&mut got).map_err(|e| format!("control read: {e}"))?;
    if &got != b"control" {
        return Err(format!("control read {got:?}"));
    }
    Ok(())
}

/// Acceptable under a scribbler: `Ok`, `InvalidData` (corruption detected), `BrokenPipe` /
/// `UnexpectedEof` / end of stream (a forged close flag, or a forged pid that names a dead
/// process), `ConnectionAborted` (a forged claim word that names another holding of the
/// end's own role), and `WouldBlock` / `TimedOut` (forged cursors that say "full" or "empty"). Not
/// acceptable: any other error, a grant or length beyond the capacity, a crash, a hang, a call
/// over [`CALL_BOUND`], and what [`judge`] refuses for each [`Mode`].
#[test]
fn a_header_scribbler_thread_cannot_crash_or_hang_either_end() {
    for backend in available() {
        let status = in_child_within(4 * LONG, || {
            let page = page_size();
            let label = format!("scribbler vs {backend}");
            run_rounds(9 * scale(), 2, &label, |round, mode, totals| {
                let seed = seed() ^ (round as u64) << 8 ^ backend as u64;
                let pat = Pattern::new(seed);
                let ring = RingOptions::new()
                    .capacity(16 * KIB)
                    .backend(backend)
                    .spin_budget(Duration::from_micros(5))
                    .shared()
                    .unwrap();
                let cap = ring.capacity();
                let mut tx = ring.clone().into_producer().unwrap();
                let mut rx = ring.clone().into_consumer().unwrap();
                // Nothing committed yet: the free space starts at view A, a page after the header.
                let hdr = tx.write_grant(1).unwrap().as_ptr() as usize - page;
                if let Err(msg) = control(&mut tx, &mut rx) {
                    eprintln!("{backend} round {round}: {msg}");
                    return Err(3);
                }
                let stop = AtomicBool::new(false);
                let writes = AtomicU64::new(0);
                let deadline = Instant::now() + Duration::from_millis(40);
                // `ring` (a handle to the mapping) outlives the scope, so the scribbler never
                // writes into unmapped memory even after both ends dropped.
                let result = std::thread::scope(|s| {
                    let scribbler = s.spawn(|| scribble(hdr, &stop, &writes, seed, cap, mode));
                    // A panic below (a crate panic is a failure) must stop the scribbler, or the
                    // scope waits for it for ever and the failure shows as a hang.
                    let _stop_on_unwind = StopOnDrop(&stop);
                    wait_for_first_scribble(&writes);
                    // Borrowed, not moved: neither end closes while the other still runs.
                    let p = s.spawn(|| drive_producer(&mut tx, deadline, seed ^ 1, &pat));
                    let c = s.spawn(|| drive_consumer(&mut rx, deadline, seed ^ 2, &pat, mode == Mode::Harmless));
                    let (p, c) = (p.join().unwrap(), c.join().unwrap());
                    stop.store(true, Ordering::Relaxed);
                    scribbler.join().unwrap();
                    Ok::<_, String>((p?, c?))
                });
                drop((tx, rx, ring));
                match result {
                    Ok((p, c)) => {
                        let t = &mut totals[mode.index()];
                        t.0.add(&p);
                        t.1.add(&c);
                        t.2 += writes.load(Ordering::Relaxed);
                        Ok(cap)
                    }
                    Err(msg) => {
                        eprintln!("{backend} round {round} ({mode:?}): {msg}");
                        Err(1)
                    }
                }
            })
        });
        assert_eq!(
            status, 0,
            "{backend}: 1: a forbidden result, 2: a mode's rounds failed their check, 3: control failed (see stderr); \
             >128: crashed"
        );
    }
}

/// The same with the ends in two processes, so each end watches a real peer process: the
/// producer and the scribbler in one process, the consumer in another (which reports its
/// tally over a socket).
#[test]
fn a_header_scribbler_cannot_crash_or_hang_ends_in_two_processes() {
    for backend in available() {
        let status = in_child_within(4 * LONG, || {
            let page = page_size();
            let label = format!("scribbler vs {backend} across processes");
            run_rounds(6 * scale(), 4, &label, |round, mode, totals| {
                let seed = seed() ^ (round as u64) << 16 ^ backend as u64;
                let pat = Pattern::new(seed);
                let ring = RingOptions::new().capacity(16 * KIB).backend(backend).shared().unwrap();
                let cap = ring.capacity();
                let deadline = Instant::now() + Duration::from_millis(60);
                let consumer_ring = ring.clone();
                let (mut ours, theirs) = UnixStream::pair().unwrap();
                // Claimed before the fork (the child's copy is inert), the control bytes written.
                let mut tx = ring.clone().into_producer().unwrap();
                let hdr = tx.write_grant(1).unwrap().as_ptr() as usize - page;
                tx.write_all(b"control").unwrap();
                let mut consumer = spawn_child(|| {
                    let mut theirs = theirs;
                    // This process holds a copy of `ours` too (fork), so a parent that dies never
                    // shows as an end of file here: bound every wait for it instead, or a failed
                    // parent would leave this process blocked for ever.
                    theirs.set_read_timeout(Some(LONG)).unwrap();
                    let mut rx = consumer_ring.into_consumer().unwrap();
                    // The control round trip, then "claimed": now the scribbler may start (it
                    // could forge the claim otherwise). Then wait for its first write.
                    let mut got = [0u8; 7];
                    if rx.read_exact(&mut got).is_err() || &got != b"control" {
                        return 3;
                    }
                    theirs.write_all(b"!").unwrap();
                    theirs.read_exact(&mut [0u8; 1]).unwrap();
                    match drive_consumer(&mut rx, deadline, seed ^ 2, &pat, mode == Mode::Harmless) {
                        Ok(t) => {
                            theirs.write_all(&t.to_bytes()).unwrap();
                            // Keep the end open until the producer is done too: closing it would
                            // turn the producer's last calls into BrokenPipe.
                            let _ = theirs.read_exact(&mut [0u8; 1]);
                            0
                        }
                        Err(msg) => {
                            eprintln!("{backend} round {round} ({mode:?}): {msg}");
                            1
                        }
                    }
                });
                ours.set_read_timeout(Some(LONG)).unwrap();
                if ours.read_exact(&mut [0u8; 1]).is_err() {
                    eprintln!(
                        "{backend} round {round}: the consumer failed its control read (exit {})",
                        consumer.wait()
                    );
                    return Err(3);
                }
                let stop = AtomicBool::new(false);
                let writes = AtomicU64::new(0);
                let produced = std::thread::scope(|s| {
                    let scribbler = s.spawn(|| scribble(hdr, &stop, &writes, seed, cap, mode));
                    // A panic below (a crate panic is a failure) must stop the scribbler, or the
                    // scope waits for it for ever and the failure shows as a hang.
                    let _stop_on_unwind = StopOnDrop(&stop);
                    wait_for_first_scribble(&writes);
                    let _ = ours.write_all(b"!"); // (a consumer that died shows in its exit status)
                    let p = drive_producer(&mut tx, deadline, seed ^ 1, &pat);
                    stop.store(true, Ordering::Relaxed);
                    scribbler.join().unwrap();
                    p
                });
                let mut consumed = [0u8; 48];
                let reported = ours.read_exact(&mut consumed).is_ok();
                let _ = ours.write_all(b"."); // the consumer may close and exit now
                drop((tx, ring, ours));
                let code = consumer.wait_within(LONG);
                let p = match produced {
                    Ok(p) => p,
                    Err(msg) => {
                        eprintln!("{backend} round {round} ({mode:?}): {msg}");
                        return Err(1);
                    }
                };
                if code != 0 || !reported {
                    eprintln!("{backend} round {round} ({mode:?}): consumer process exited with {code}");
                    return Err(2);
                }
                let t = &mut totals[mode.index()];
                t.0.add(&p);
                t.1.add(&Tally::from_bytes(&consumed));
                t.2 += writes.load(Ordering::Relaxed);
                Ok(cap)
            })
        });
        assert_eq!(
            status, 0,
            "{backend}: 1/2: a forbidden result, 3: control failed, 4: a mode's rounds failed their check (see stderr); \
             >128: crashed"
        );
    }
}

/// A peer that never releases (or never writes) is a stall, not a hang: every bounded call
/// returns `TimedOut`.
#[test]
fn a_stalled_peer_process_times_out_bounded_calls() {
    for backend in available() {
        let ring = RingOptions::new().capacity(4096).backend(backend).shared().unwrap();
        let consumer_ring = ring.clone();
        let mut consumer = spawn_child(|| {
            let _rx = consumer_ring.into_consumer().unwrap();
            std::thread::sleep(Duration::from_millis(400)); // holds everything, reads nothing
            0
        });
        let mut tx = ring.into_producer().unwrap();
        tx.write_all(&vec![1; tx.capacity()]).unwrap();
        let started = Instant::now();
        let e = tx.write_timeout(b"x", Duration::from_millis(100)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{backend}: {e}");
        // A stall, waited out in full: not mistaken for a dead peer, nor given up early.
        assert!(started.elapsed() >= Duration::from_millis(100), "{backend}: gave up after {:?}", started.elapsed());
        assert_eq!(consumer.wait_within(LONG), 0);
        // Then it exits (closing): the writer sees it.
        assert_eq!(tx.write_timeout(b"x", LONG).unwrap_err().kind(), ErrorKind::BrokenPipe);
    }
}

/// Straight to fd 2: the harness's capture does not reach a forked child's `eprintln!`.
fn say(msg: &str) {
    let _ = std::io::stderr().write_all(format!("{msg}\n").as_bytes());
}

/// A non-blocking pipe: (read end, write end).
fn nonblocking_pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: a valid out-array of two ints.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: fresh descriptors nobody else owns.
    unsafe { (File::from(OwnedFd::from_raw_fd(fds[0])), File::from(OwnedFd::from_raw_fd(fds[1]))) }
}

/// A peer may stall the ring (documented), but it cannot keep a blocked call from noticing a
/// poisoning or a close: every blocking byte call, parked on a ring that cannot move, returns
/// within the bound once the peer sets the poisoned flag, or forges its own close (its claim
/// word's state CLOSED in its own epoch), and wakes nobody (a hostile peer need not): the
/// bounded sleeps must find the change. `InvalidData` for the poison; `BrokenPipe`,
/// `UnexpectedEof` or the end of stream for the close. (From a review that also ran every
/// blocking call, `fill_buf` and the transfers under random scribbles with no finding.)
#[test]
fn blocking_byte_calls_end_on_an_unwoken_poison_or_forged_close() {
    let status = spawn_child(|| {
        let mut failed = 0;
        for forge in ["poison", "close"] {
            for call in 0..8 {
                let ring =
                    RingOptions::new().capacity(16 * KIB).spin_budget(Duration::from_micros(5)).shared().unwrap();
                let cap = ring.capacity();
                let mut tx = ring.clone().into_producer().unwrap();
                let mut rx = ring.clone().into_consumer().unwrap();
                let hdr = tx.write_grant(1).unwrap().as_ptr() as usize - page_size();
                // Calls 0..4 block the producer (a full ring), 4..8 the consumer (an empty one).
                if call < 4 {
                    tx.write_all(&vec![7u8; cap]).unwrap();
                }
                let (mut pr, mut pw) = nonblocking_pipe();
                let (r, took) = std::thread::scope(|s| {
                    let forger = s.spawn(|| {
                        std::thread::sleep(Duration::from_millis(30));
                        // SAFETY: aligned words in the mapped header page; the ring outlives
                        // the scope.
                        unsafe {
                            if forge == "poison" {
                                (*((hdr + OFF_POISONED) as *const AtomicU32)).store(1, Ordering::SeqCst);
                            } else {
                                let slot = if call < 4 { OFF_CONSUMER } else { OFF_PRODUCER };
                                let w = &*((hdr + slot) as *const AtomicU32);
                                let now = w.load(Ordering::SeqCst);
                                w.store(now & !0xff | 2, Ordering::SeqCst); // CLOSED, same epoch
                            }
                        }
                    });
                    let started = Instant::now();
                    let r: std::io::Result<usize> = match call {
                        0 => tx.write(b"x"),
                        1 => tx.write_all(b"x").map(|()| 1),
                        2 => tx.write_grant_blocking(1).map(|g| g.len()),
                        3 => {
                            pw.write_all(b"abc").unwrap();
                            tx.read_from(&mut pr)
                        }
                        4 => rx.read(&mut [0u8; 8]),
                        5 => std::io::BufRead::fill_buf(&mut rx).map(|b| b.len()),
                        6 => rx.read_grant_blocking(1).map(|g| g.len()),
                        _ => rx.write_to(&mut pw),
                    };
                    let took = started.elapsed();
                    forger.join().unwrap();
                    (r, took)
                });
                let kind_ok = match (forge, &r) {
                    ("poison", Err(e)) => e.kind() == ErrorKind::InvalidData,
                    (_, Err(e)) => matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof),
                    (_, Ok(0)) => call >= 4, // end of stream
                    _ => false,
                };
                if !kind_ok || took >= DEATH {
                    say(&format!("{forge}: blocking call {call}: {r:?} after {took:?}: wrong result or too late"));
                    failed += 1;
                }
                drop((tx, rx, ring));
            }
        }
        failed
    })
    .wait_within(Duration::from_secs(20));
    assert_eq!(status, 0, "{status} blocking calls missed the poison or the close (see stderr); >128: crashed");
}
