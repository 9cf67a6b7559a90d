//! A producer service streams counters to a worker through a ring shared across `fork()`. A
//! supervisor, which never claims a role, kills the worker with SIGKILL three times and starts
//! a new one, which takes the dead worker's role over and resumes at its last released byte:
//! the producer never stops, and every counter reaches a worker, gap-free, at least once. The
//! restart gap (SIGKILL to the new worker's first record) is printed.
//!
//! ```sh
//! cargo run --release --example supervisor
//! ```

use std::io::{self, BufRead, ErrorKind};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use mirror_ring::{Producer, RingOptions, SharedRing};

const TOTAL: u64 = 2_000_000; // counters, 8 bytes each
const KILLS: u64 = 3;

/// What the processes tell each other, in shared memory (it survives fork and SIGKILL).
struct Board {
    done: AtomicU64,     // one past the highest counter processed (the workers' "output")
    gaps: AtomicU64,     // counters that skipped ahead of `done`: lost records; must stay 0
    again: AtomicU64,    // records processed again after a restart (at least once)
    first_ns: AtomicU64, // when the current worker processed its first record (0: not yet)
    take_ns: AtomicU64,  // how long its take-over call took
    broken: AtomicU64,   // `BrokenPipe`s the producer rode out while no worker lived
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs `f` in a forked child, which leaves through `_exit` (never returning into `main`).
fn fork(f: impl FnOnce() -> io::Result<()>) -> libc::pid_t {
    // SAFETY: the child only runs `f` (single-threaded parent) and then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(r) => i32::from(r.map_err(|e| eprintln!("child {}: {e}", std::process::id())).is_err()),
            Err(_) => 2,
        };
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    pid
}

fn reap(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: our own child; a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    status // 0: exited with code 0
}

/// The producer service: counters in whole 8-byte records, paced like a real source. A dead
/// worker is `BrokenPipe` until a new one takes over; then the next write goes on.
fn service(mut tx: Producer, board: &Board) -> io::Result<()> {
    let mut next = 0;
    while next < TOTAL {
        match tx.write_grant_blocking(8) {
            Ok(mut g) => {
                let n = (g.len() / 8).min(1000).min((TOTAL - next) as usize);
                for (i, rec) in g.chunks_exact_mut(8).take(n).enumerate() {
                    rec.copy_from_slice(&(next + i as u64).to_le_bytes());
                }
                g.commit(n * 8)?;
                next += n as u64;
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                board.broken.fetch_add(1, SeqCst);
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(()) // dropping tx closes the ring: the worker sees the end of the stream
}

/// A worker: claims the consumer role (or takes a dead worker's over) and processes records.
fn worker(ring: &SharedRing, board: &Board, restart: bool) -> io::Result<()> {
    let started = Instant::now();
    let mut rx = if restart { ring.take_over_consumer()? } else { ring.clone().into_consumer()? };
    board.take_ns.store(started.elapsed().as_nanos() as u64, SeqCst);
    loop {
        let buf = rx.fill_buf()?; // whole records: the producer commits only those
        if buf.is_empty() {
            return Ok(()); // the producer closed and everything was read
        }
        for rec in buf.chunks_exact(8) {
            let c = u64::from_le_bytes(rec.try_into().unwrap());
            let done = board.done.load(SeqCst);
            if c > done {
                board.gaps.fetch_add(1, SeqCst);
            } else if c < done {
                board.again.fetch_add(1, SeqCst);
            }
            board.done.store(done.max(c + 1), SeqCst);
        }
        let _ = board.first_ns.compare_exchange(0, now_ns(), SeqCst, SeqCst);
        let n = buf.len();
        std::thread::sleep(Duration::from_micros(100)); // the rest of the work on this batch
        rx.consume(n); // released only now: a worker killed before this gets them "again"
    }
}

fn main() -> io::Result<()> {
    let ring = RingOptions::new().capacity(64 * 1024).shared()?;
    // SAFETY: a fresh anonymous shared mapping (zeroed: a valid Board of atomics) that lives
    // until the process exits, in the parent and in every forked child.
    #[allow(clippy::disallowed_methods)] // the example's own page, not a ring's mapping
    let board: &Board = unsafe {
        let (prot, flags) = (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS);
        let p = libc::mmap(std::ptr::null_mut(), std::mem::size_of::<Board>(), prot, flags, -1, 0);
        assert_ne!(p, libc::MAP_FAILED, "mmap: {}", io::Error::last_os_error());
        &*p.cast::<Board>()
    };
    let producer = fork(|| service(ring.clone().into_producer()?, board));
    let mut pid = fork(|| worker(&ring, board, false));
    for k in 1..=KILLS {
        while board.done.load(SeqCst) < k * TOTAL / (KILLS + 1) {
            std::thread::sleep(Duration::from_micros(100));
        }
        // SAFETY: our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let killed = now_ns();
        let (at, again) = (board.done.load(SeqCst), board.again.load(SeqCst));
        reap(pid);
        board.first_ns.store(0, SeqCst);
        pid = fork(|| worker(&ring, board, true));
        let until = Instant::now() + Duration::from_secs(10);
        while board.first_ns.load(SeqCst) == 0 {
            assert!(Instant::now() < until, "the new worker never got a record");
            std::thread::yield_now();
        }
        let gap = Duration::from_nanos(board.first_ns.load(SeqCst) - killed);
        let take = Duration::from_nanos(board.take_ns.load(SeqCst));
        let again = board.again.load(SeqCst) - again;
        println!("restart {k}: killed at counter {at}; gap {gap:?} (take-over {take:?}); {again} records again");
    }
    let (w, p) = (reap(pid), reap(producer));
    let (done, gaps, again) = (board.done.load(SeqCst), board.gaps.load(SeqCst), board.again.load(SeqCst));
    println!("{done} counters of {TOTAL} processed, {gaps} gaps, {again} processed again after restarts");
    println!("the producer never stopped; it saw {} BrokenPipe while no worker lived", board.broken.load(SeqCst));
    assert!(w == 0 && p == 0, "worker / producer exit status {w} / {p}");
    assert_eq!((done, gaps), (TOTAL, 0), "every counter, no gap");
    Ok(())
}
