//! `SharedRing::from_fd` with arbitrary file contents, sizes and seals: it must return a ring
//! or an error (`InvalidData` for anything that is not a valid, sealed ring), never crash,
//! hang or leak a descriptor or a mapping. An accepted ring is then used from both ends with
//! the non-blocking calls, with whatever cursors and role slots the file held.
#![no_main]
// The target plays the peer that hands over a file: it makes memfds itself.
#![allow(clippy::disallowed_methods)]

use std::io::{ErrorKind, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use libfuzzer_sys::fuzz_target;
use mirror_ring::SharedRing;

const PAGE: usize = 4096;

fn memfd(size: usize, content: &[u8], seals: libc::c_int) -> OwnedFd {
    // SAFETY: a valid NUL-terminated name; the flags are constants.
    let fd = unsafe { libc::memfd_create(c"fuzz-ring".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    // EMFILE here after many runs would mean from_fd leaks descriptors.
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let file = std::fs::File::from(fd);
    file.set_len(size as u64).expect("ftruncate");
    let n = content.len().min(size);
    (&file).write_all(&content[..n]).expect("write");
    let fd = OwnedFd::from(file);
    if seals != 0 {
        use std::os::fd::AsRawFd;
        // SAFETY: F_ADD_SEALS on our own memfd with a seal mask.
        let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) };
        assert_eq!(r, 0, "F_ADD_SEALS: {}", std::io::Error::last_os_error());
    }
    fd
}

/// Every so often: the number of open descriptors must not grow (from_fd owns the fd it is
/// given and must close it on every error path; a dropped ring closes its pidfds too).
fn check_fd_leaks() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    static BASELINE: OnceLock<usize> = OnceLock::new();
    // Relaxed: a counter of this thread's own runs.
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    if !run.is_multiple_of(512) {
        return;
    }
    let open = std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count();
    let base = *BASELINE.get_or_init(|| open);
    assert!(open <= base + 8, "descriptors leak: {open} open after {run} runs, {base} at the start");
}

fuzz_target!(|data: &[u8]| {
    check_fd_leaks();
    if data.len() < 3 {
        return;
    }
    let (sel, content) = data.split_at(3);
    // File size: mostly one page plus a power of two (the shapes a ring has), sometimes one
    // byte off, sometimes anything.
    let k = (sel[0] >> 2) as u32 % 6; // capacity 4 KiB .. 128 KiB
    let size = match sel[0] & 3 {
        0 => (sel[1] as usize) << 6 | (sel[2] as usize) >> 2,
        1 => PAGE + (PAGE << k) + 1,
        2 => PAGE + (PAGE << k) - 1,
        _ => PAGE + (PAGE << k),
    };
    // Seals: mostly the two the crate requires, plus random extra ones; sometimes fewer.
    let mut seals = 0;
    for (bit, seal) in
        [libc::F_SEAL_SHRINK, libc::F_SEAL_GROW, libc::F_SEAL_SEAL, libc::F_SEAL_WRITE, libc::F_SEAL_FUTURE_WRITE]
            .into_iter()
            .enumerate()
    {
        let want = match bit {
            0 | 1 => sel[2] & 0x3 != 0x3, // required ones: missing one time in four
            _ => sel[2] & (1 << (bit + 2)) != 0 && sel[2] & 0x80 != 0,
        };
        if want {
            seals |= seal;
        }
    }
    let fd = memfd(size, content, seals);
    let ring = match SharedRing::from_fd(fd) {
        Ok(ring) => ring,
        Err(e) => {
            // Anything but a valid ring is InvalidData; mapping failures keep their errno.
            assert!(e.kind() == ErrorKind::InvalidData || e.raw_os_error().is_some(), "{e:?}");
            return;
        }
    };
    assert_eq!(ring.capacity() + PAGE, size);
    // Use it: both roles (if still free), non-blocking calls only. Errors are fine; crashes,
    // hangs and out-of-bounds accesses are not.
    let other = ring.clone();
    let tx = ring.into_producer();
    let rx = other.into_consumer();
    if let Ok(mut tx) = tx {
        let _ = tx.try_write(content);
        let _ = tx.len();
        let _ = tx.is_abandoned();
        if let Ok(mut g) = tx.write_grant(1) {
            let n = g.len().min(3);
            g[..n].fill(7);
            let _ = g.commit(n);
        }
    }
    if let Ok(mut rx) = rx {
        let mut buf = [0u8; 512];
        for _ in 0..4 {
            match rx.try_read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if let Ok(g) = rx.read_grant(1) {
            let n = g.len().min(5);
            let _ = g.release(n);
        }
        let _ = rx.is_abandoned();
    }
});
