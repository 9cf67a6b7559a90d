//! Restart after a crash: a process takes over the role of a peer that died
//! (`SharedRing::take_over_producer`, `SharedRing::take_over_consumer`).
//!
//! The streams here are runs of `u64` counters, 8 bytes each, always written and released in
//! whole records, so every committed cursor is a record boundary. A reader checks that the run
//! has no gap: after a take-over the run may step back (a dead consumer's unreleased records
//! are delivered again, a new producer may resend what it cannot know was committed), never
//! forward.
//!
//! Every child leaves through `_exit` (`tests/common`), every wait on a child is bounded, and
//! the restart gaps and take-over times are printed (`--nocapture`), never judged.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{available, scale, spawn_child, Child, HeaderView, SharedPage};
use mirror_ring::{Backend, Consumer, FramedConsumer, FramedProducer, Producer, RingOptions, SharedRing};

const KIB: usize = 1024;
/// The bound on any single blocking call: reaching it means a hang, not a slow machine.
const LONG: Duration = Duration::from_secs(20);
/// How long a producer may go on getting `BrokenPipe` (its consumer dead, not yet replaced)
/// before it gives up: far above any restart here.
const OUTAGE: Duration = Duration::from_secs(10);

// Header offsets of the consumer's role slot (the ABI pinned in src/header.rs).
const OFF_PRODUCER: usize = 32;
const OFF_CONSUMER: usize = 64;
/// In a role slot: the claim word (state bits 0..8, epoch 8..32, pid 32..64), start time,
/// PID namespace.
const SLOT_CLAIM: usize = 0;
const SLOT_START: usize = 8;
const SLOT_PID_NS: usize = 16;
const CLAIMED: u64 = 1;
const CLOSED: u64 = 2;
const TAKING: u64 = 3;

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Claim words of a ring file's header, as a hostile holder of the memfd forges them.
impl HeaderView {
    /// The claim word of the slot at `slot`: (state, epoch, pid).
    fn claim(&self, slot: usize) -> (u64, u64, i32) {
        let w = self.u64_at(slot + SLOT_CLAIM).load(Ordering::SeqCst);
        (w & 0xff, (w >> 8) & 0xff_ffff, (w >> 32) as u32 as i32)
    }
    fn set_claim(&self, slot: usize, state: u64, epoch: u64, pid: i32) {
        self.u64_at(slot + SLOT_CLAIM).store(u64::from(pid as u32) << 32 | epoch << 8 | state, Ordering::SeqCst);
    }
}

/// Forks a consumer of `ring` that claims the role and then idles until it is killed; returns
/// it once it holds the role.
fn idle_consumer(ring: &SharedRing) -> Child {
    let page = SharedPage::new();
    let child = spawn_child(|| {
        let _rx = ring.clone().into_consumer().unwrap();
        page.word(0).store(1, Ordering::Release);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    wait_until("the consumer claimed", || page.word(0).load(Ordering::Acquire) == 1);
    child
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the machine.
fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Waits (boundedly) until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// This process's start time (`/proc/<pid>/stat` field 22).
fn start_time_of(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 1..].split_ascii_whitespace().nth(19).unwrap().parse().unwrap()
}

fn kind<T>(r: std::io::Result<T>) -> Option<ErrorKind> {
    r.err().map(|e| e.kind())
}

/// Writes counters `next..end` in whole records, never stopping: a `BrokenPipe` (the consumer
/// died) is retried until a new consumer takes the role over (bounded by [`OUTAGE`]). With
/// `garbage`, each grant is first filled with 0xff bytes, so a record the producer wrote and
/// did not commit would show as a huge counter. Reports its position in `committed` after
/// every commit, and counts the `BrokenPipe`s it saw in `broken`. Closes when done.
fn produce_counters(
    mut tx: Producer,
    mut next: u64,
    end: u64,
    committed: &AtomicU64,
    broken: &AtomicU64,
    garbage: bool,
) -> Result<(), String> {
    let mut outage: Option<Instant> = None;
    while next < end {
        match tx.write_grant_timeout(8, LONG) {
            Ok(mut g) => {
                if garbage {
                    g.fill(0xff);
                }
                let n = (g.len() / 8).min((end - next) as usize).min(1024);
                for (i, rec) in g[..n * 8].chunks_exact_mut(8).enumerate() {
                    rec.copy_from_slice(&(next + i as u64).to_le_bytes());
                }
                g.commit(n * 8).map_err(|e| format!("commit: {e}"))?;
                next += n as u64;
                // Release: counted only once committed.
                committed.store(next, Ordering::Release);
                outage = None;
            }
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                broken.fetch_add(1, Ordering::Relaxed);
                let since = *outage.get_or_insert_with(Instant::now);
                if since.elapsed() > OUTAGE {
                    return Err(format!("no consumer came back within {OUTAGE:?}: {e}"));
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            Err(e) => return Err(format!("producer at {next}: {e}")),
        }
    }
    drop(tx);
    Ok(())
}

/// What a reader of counters saw.
#[derive(Clone, Copy, Debug, Default)]
struct Run {
    /// The first counter read.
    first: Option<u64>,
    /// The next counter expected (one past the last read).
    next: u64,
    /// Records read again after a step back (at least once, not exactly once).
    repeated: u64,
    /// Steps back (restarts of the run).
    restarts: u64,
}

impl Run {
    /// Checks one record: the next counter, or a step back to an earlier one (a restart); a
    /// step forward is a gap.
    fn take(&mut self, c: u64) -> Result<(), String> {
        if self.first.is_none() {
            self.first = Some(c);
        } else if c > self.next {
            return Err(format!("gap: counter {c} after {}", self.next.wrapping_sub(1)));
        } else if c < self.next {
            self.restarts += 1;
            self.repeated += self.next - c;
        }
        self.next = c + 1;
        Ok(())
    }
}

/// Reads counter records from `rx` until the end of the stream, checking the run and
/// reporting the next expected counter in `progress` *before* releasing (so a reader killed
/// in between leaves records that were reported but not released: they come again). With
/// `dawdle`, it sometimes sleeps while it holds a grant. Once it has read `park_at` records
/// it stops for good, holding its last grant unreleased (a reader that is to be killed must
/// not finish first on a busy machine). `stamp`: where to store the monotonic time of the
/// first record. Ends at `Ok(0)` (clean end of stream).
fn consume_counters(
    rx: &mut Consumer,
    run: &mut Run,
    progress: &AtomicU64,
    stamp: &AtomicU64,
    dawdle: bool,
    park_at: u64,
) -> Result<(), String> {
    let mut batches = 0u64;
    loop {
        let e = match rx.read_grant_timeout(8, LONG) {
            Ok(g) => {
                let n = g.len() / 8 * 8;
                for rec in g[..n].chunks_exact(8) {
                    run.take(u64::from_le_bytes(rec.try_into().unwrap()))?;
                }
                if stamp.load(Ordering::Relaxed) == 0 {
                    stamp.store(mono_ns(), Ordering::Relaxed);
                }
                progress.store(run.next, Ordering::Release);
                batches += 1;
                if dawdle && batches % 16 == 0 {
                    std::thread::sleep(Duration::from_micros(300));
                }
                if run.next >= park_at {
                    // Parked for good, the grant held: only a SIGKILL ends this.
                    loop {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
                g.release(n).map_err(|e| format!("release: {e}"))?;
                continue;
            }
            Err(e) => e,
        };
        // Fewer than 8 bytes left at the end of the stream: only the clean end (0) is fine.
        if e.kind() == ErrorKind::UnexpectedEof && rx.is_abandoned() {
            let g = rx.read_grant(0).map_err(|e| format!("at the end: {e}"))?;
            return if g.is_empty() { Ok(()) } else { Err(format!("{} stray bytes at the end", g.len())) };
        }
        return Err(format!("reader after {:?}: {e}", run.next));
    }
}

/// Times from SIGKILL to the replacement's first record, and take-over calls: printed.
fn report(what: &str, mut v: Vec<Duration>) {
    v.sort();
    eprintln!("{what}: min {:?}, median {:?}, max {:?} over {}", v[0], v[v.len() / 2], v[v.len() - 1], v.len());
}

/// Who replaces a killed consumer: an unrelated process that gets the memfd over a socket and
/// attaches with `from_fd`, or the supervisor that inherited the ring across `fork()`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Newcomer {
    FromMemfd,
    Supervisor(Backend),
}

// ---------------------------------------------------------------------------------------------
// The judged scenarios.

/// A consumer process is SIGKILLed mid-stream (sometimes holding a read grant it had reported
/// but not released); a process that attaches to the ring takes its role over and reads a
/// gap-free run of counters to the end, while the producer process never stops: it rides out
/// the death (`BrokenPipe`, retried) and goes on. Run with the newcomer attaching from the
/// memfd (received over a socket by a process that never mapped the ring) and with the
/// supervisor (which never claimed a role) taking over a ring inherited across fork, on every
/// backend.
#[test]
fn a_killed_consumer_is_replaced_and_the_counters_run_gap_free_to_the_end() {
    let mut cases = vec![Newcomer::FromMemfd];
    cases.extend(available().into_iter().map(Newcomer::Supervisor));
    let mut gaps = Vec::new();
    let mut takes = Vec::new();
    for (round, &case) in cases.iter().cycle().take(cases.len() * 2 * scale()).enumerate() {
        const TOTAL: u64 = 1 << 21; // 16 MiB of counters through a 64 KiB ring
        let kill_at = 300_000 + 150_000 * (round as u64 % 4);
        // Words: 0 producer committed, 1 producer BrokenPipes, 2 A's progress, 3 A's first
        // record, 4 B's progress, 5 B's first record (ns), 6 B's first counter, 7 B's
        // take-over (ns), 8 B's repeated records, 9 B's last counter + 1.
        let page = SharedPage::new();
        let backend = match case {
            Newcomer::FromMemfd => Backend::Memfd,
            Newcomer::Supervisor(b) => b,
        };
        // From the memfd: the ring is kept out of the children (dont_fork); each gets the fd.
        let dont_fork = case == Newcomer::FromMemfd;
        let ring = RingOptions::new().capacity(64 * KIB).backend(backend).dont_fork(dont_fork).shared().unwrap();
        let attach = |sock: UnixStream, inherited: &SharedRing| -> SharedRing {
            if dont_fork {
                SharedRing::recv_from(&sock).expect("receive the ring")
            } else {
                inherited.clone()
            }
        };
        let socks: Vec<(UnixStream, UnixStream)> = (0..3).map(|_| UnixStream::pair().unwrap()).collect();
        let [(p_ours, p_theirs), (a_ours, a_theirs), (b_ours, b_theirs)] = <[_; 3]>::try_from(socks).unwrap();
        let mut producer = spawn_child(|| {
            let ring = attach(p_theirs, &ring);
            let tx = ring.into_producer().unwrap();
            match produce_counters(tx, 0, TOTAL, page.word(0), page.word(1), false) {
                Ok(()) => 0,
                Err(msg) => {
                    eprintln!("producer: {msg}");
                    1
                }
            }
        });
        let mut a = spawn_child(|| {
            let ring = attach(a_theirs, &ring);
            let mut rx = ring.into_consumer().unwrap();
            let mut run = Run::default();
            // Odd rounds: killed while it runs; even rounds: while it holds a grant, parked.
            let park_at = if round % 2 == 0 { kill_at } else { kill_at + 400_000 };
            match consume_counters(&mut rx, &mut run, page.word(2), page.word(3), round % 2 == 1, park_at) {
                Ok(()) => 2, // it should have been killed
                Err(msg) => {
                    eprintln!("consumer A: {msg}");
                    1
                }
            }
        });
        if dont_fork {
            ring.send_to(&p_ours).unwrap();
            ring.send_to(&a_ours).unwrap();
        }
        wait_until("consumer A got far enough", || page.word(2).load(Ordering::Acquire) >= kill_at);
        a.kill();
        let killed = mono_ns();
        assert_eq!(a.wait(), 128 + libc::SIGKILL);
        let a_progress = page.word(2).load(Ordering::Acquire);
        let newcomer = |ring: SharedRing| -> i32 {
            let started = Instant::now();
            let mut rx = match ring.take_over_consumer() {
                Ok(rx) => rx,
                Err(e) => {
                    eprintln!("consumer B: take-over: {e}");
                    return 3;
                }
            };
            page.word(7).store(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            let mut run = Run::default();
            let r = consume_counters(&mut rx, &mut run, page.word(4), page.word(5), false, u64::MAX);
            page.word(6).store(run.first.unwrap_or(u64::MAX), Ordering::Relaxed);
            page.word(8).store(run.repeated, Ordering::Relaxed);
            page.word(9).store(run.next, Ordering::Relaxed);
            match r {
                Ok(()) => 0,
                Err(msg) => {
                    eprintln!("consumer B: {msg}");
                    1
                }
            }
        };
        let b_status = match case {
            Newcomer::FromMemfd => {
                let mut b = spawn_child(|| newcomer(attach(b_theirs, &ring)));
                ring.send_to(&b_ours).unwrap();
                b.wait_within(3 * LONG)
            }
            // The supervisor itself, which never claimed a role.
            Newcomer::Supervisor(_) => newcomer(ring.clone()),
        };
        let p_status = producer.wait_within(3 * LONG);
        let what = format!("round {round}, {case:?}");
        assert_eq!((p_status, b_status), (0, 0), "{what}: producer and newcomer exit codes (see stderr)");
        let first = page.word(6).load(Ordering::Relaxed);
        assert!(first <= a_progress, "{what}: the newcomer started at {first}, after A's {a_progress}: records lost");
        assert_eq!(page.word(9).load(Ordering::Relaxed), TOTAL, "{what}: the run did not reach the end");
        assert_eq!(page.word(0).load(Ordering::Relaxed), TOTAL, "{what}: the producer did not finish");
        gaps.push(Duration::from_nanos(page.word(5).load(Ordering::Relaxed).saturating_sub(killed)));
        takes.push(Duration::from_nanos(page.word(7).load(Ordering::Relaxed)));
        eprintln!(
            "{what}: A killed at {a_progress}, B resumed at {first} ({} records again), producer saw {} BrokenPipe",
            a_progress - first,
            page.word(1).load(Ordering::Relaxed)
        );
    }
    report("restart gap, SIGKILL to the new consumer's first record (fork or attach included)", gaps);
    report("take_over_consumer call", takes);
}

/// A producer process is SIGKILLed mid-stream (it fills every grant with 0xff before writing
/// counters, so uncommitted bytes would show); the consumer reads every committed record,
/// sees the death (`UnexpectedEof`), and only then does a process that attaches from the
/// memfd take the producer role over, resuming from what the dead producer reported
/// committed. The consumer reads on, gap-free, to the clean end of the stream.
#[test]
fn a_killed_producer_is_replaced_and_the_consumer_reads_on_after_seeing_the_death() {
    let mut gaps = Vec::new();
    for round in 0..3 * scale() as u64 {
        const TOTAL: u64 = 1 << 20;
        let page = SharedPage::new(); // 0: committed, 1: BrokenPipes, 2: take-over ns, 3: taken over
        let ring = RingOptions::new().capacity(64 * KIB).backend(Backend::Memfd).dont_fork(true).shared().unwrap();
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut p1 = spawn_child(|| {
            let tx = SharedRing::recv_from(&theirs).unwrap().into_producer().unwrap();
            let _ = produce_counters(tx, 0, TOTAL, page.word(0), page.word(1), true);
            1 // killed before it gets here
        });
        ring.send_to(&ours).unwrap();
        let mut rx = ring.clone().into_consumer().unwrap();
        let mut run = Run::default();
        let kill_at = 100_000 + 70_000 * round;
        let mut killed = None;
        let death = loop {
            match rx.read_grant_timeout(8, LONG) {
                Ok(g) => {
                    let n = g.len() / 8 * 8;
                    for rec in g[..n].chunks_exact(8) {
                        run.take(u64::from_le_bytes(rec.try_into().unwrap())).unwrap();
                    }
                    g.release(n).unwrap();
                }
                Err(e) => break e,
            }
            if killed.is_none() && run.next >= kill_at {
                p1.kill();
                killed = Some(Instant::now());
            }
        };
        assert!(killed.is_some(), "round {round}: the stream failed before the kill: {death}");
        assert_eq!(death.kind(), ErrorKind::UnexpectedEof, "round {round}: {death}");
        let committed = page.word(0).load(Ordering::Acquire);
        assert!(run.next >= committed, "round {round}: read {} records, {committed} were committed", run.next);
        assert_eq!(rx.len(), 0, "round {round}: bytes left after the death was reported");
        assert!(rx.is_abandoned());
        let mut buf = [0u8; 8];
        assert_eq!(kind(rx.try_read(&mut buf)), Some(ErrorKind::UnexpectedEof), "round {round}: the death sticks");
        assert_eq!(p1.wait(), 128 + libc::SIGKILL);
        // The death is seen; now the replacement, from the memfd, resumes where the dead one
        // reported it had committed (at most where it really had: records may come twice).
        let resume = committed;
        let mut p2 = spawn_child(|| {
            let ring = SharedRing::recv_from(&theirs).unwrap();
            let started = Instant::now();
            let tx = match ring.take_over_producer() {
                Ok(tx) => tx,
                Err(e) => {
                    eprintln!("producer 2: take-over: {e}");
                    return 3;
                }
            };
            page.word(2).store(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            page.word(3).store(1, Ordering::Release);
            // Let the consumer block on the empty ring first: its wait must not end with
            // the death it reported before the take-over.
            std::thread::sleep(Duration::from_millis(30));
            match produce_counters(tx, resume, TOTAL, page.word(0), page.word(1), false) {
                Ok(()) => 0,
                Err(msg) => {
                    eprintln!("producer 2: {msg}");
                    1
                }
            }
        });
        ring.send_to(&ours).unwrap();
        // The consumer reads on: once the role is taken over, its next call goes on (and
        // blocks for data without reporting the death again).
        wait_until("the producer's take-over", || page.word(3).load(Ordering::Acquire) == 1);
        let (stamp, progress) = (AtomicU64::new(0), AtomicU64::new(0));
        let r = consume_counters(&mut rx, &mut run, &progress, &stamp, false, u64::MAX);
        assert_eq!(r, Ok(()), "round {round}: the consumer after the take-over");
        assert_eq!(run.next, TOTAL, "round {round}");
        assert_eq!(p2.wait_within(3 * LONG), 0, "round {round}: producer 2");
        gaps.push(Duration::from_nanos(page.word(2).load(Ordering::Relaxed)));
        eprintln!(
            "round {round}: killed after {kill_at}+, {committed} reported committed, resumed with {} records again",
            run.repeated
        );
    }
    report("take_over_producer call", gaps);
}

/// Framed rings stay frame-aligned across a take-over on both sides: a framed consumer
/// killed while it holds frames (received, not yet dropped) is replaced, and the new framed
/// consumer parses every frame (no `InvalidData`) in a gap-free run; a framed producer
/// killed mid-batch is replaced, and the framed consumer that saw its death reads on.
#[test]
fn framed_rings_stay_frame_aligned_across_takeovers_on_both_sides() {
    const TOTAL: u64 = 200_000;
    /// Frame k: the counter, then `k % 29` bytes of `k as u8`.
    fn frame(k: u64, buf: &mut Vec<u8>) {
        buf.clear();
        buf.extend_from_slice(&k.to_le_bytes());
        buf.resize(8 + (k % 29) as usize, k as u8);
    }
    fn check(f: &[u8], run: &mut Run) -> Result<(), String> {
        let k = u64::from_le_bytes(f.get(..8).ok_or("short frame")?.try_into().unwrap());
        if f.len() != 8 + (k % 29) as usize || f[8..].iter().any(|&b| b != k as u8) {
            return Err(format!("frame {k} is malformed ({} bytes)", f.len()));
        }
        run.take(k)
    }
    /// Sends frames `next..TOTAL`, batched, retrying a frame refused with BrokenPipe.
    fn send_all(tx: &mut FramedProducer, mut next: u64, sent: &AtomicU64) -> Result<(), String> {
        let mut buf = Vec::new();
        let mut outage: Option<Instant> = None;
        while next < TOTAL {
            frame(next, &mut buf);
            match tx.send_timeout(&buf, LONG) {
                Ok(()) => {
                    next += 1;
                    sent.store(next, Ordering::Release);
                    outage = None;
                }
                Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                    if outage.get_or_insert_with(Instant::now).elapsed() > OUTAGE {
                        return Err(format!("no consumer came back: {e}"));
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
                Err(e) => return Err(format!("send {next}: {e}")),
            }
        }
        Ok(())
    }
    /// Receives to the end (holding up to 3 frames at a time, or by batches), checking every
    /// frame; reports progress before the frames are released.
    fn recv_all(rx: &mut FramedConsumer, run: &mut Run, progress: &AtomicU64, batches: bool) -> Result<(), String> {
        loop {
            if batches {
                let mut err = Ok(());
                // Progress per frame, inside the callback: the batch releases its frames when
                // the call returns, and a kill between that release and a store after the
                // call would leave the progress behind what was released.
                let n = rx
                    .recv_batch_timeout(LONG, |f| {
                        if err.is_ok() {
                            err = check(f, run);
                            progress.store(run.next, Ordering::Release);
                        }
                    })
                    .map_err(|e| format!("recv_batch after {}: {e}", run.next))?;
                err?;
                if n == 0 {
                    return Ok(());
                }
            } else {
                let Some(f) = rx.recv_timeout(LONG).map_err(|e| format!("recv after {}: {e}", run.next))? else {
                    return Ok(());
                };
                check(&f, run)?;
                progress.store(run.next, Ordering::Release);
                drop(f);
            }
        }
    }

    // The consumer side.
    for batches in [false, true] {
        let page = SharedPage::new(); // 0: sent, 1: A's progress, 2: B's first, 3: B's end
        let ring = RingOptions::new().capacity(16 * KIB).backend(Backend::Memfd).shared().unwrap();
        let fd = ring.as_fd().unwrap().try_clone_to_owned().unwrap();
        let mut producer = spawn_child(|| {
            let mut tx = ring.clone().into_producer().unwrap().into_framed();
            tx.set_batch(8);
            match send_all(&mut tx, 0, page.word(0)) {
                Ok(()) => 0,
                Err(msg) => {
                    eprintln!("framed producer: {msg}");
                    1
                }
            }
        });
        let mut a = spawn_child(|| {
            let mut rx = ring.clone().into_consumer().unwrap().into_framed();
            let _ = recv_all(&mut rx, &mut Run::default(), page.word(1), batches);
            1
        });
        wait_until("framed consumer A got far enough", || page.word(1).load(Ordering::Acquire) >= 40_000);
        a.kill();
        assert_eq!(a.wait(), 128 + libc::SIGKILL);
        let a_progress = page.word(1).load(Ordering::Acquire);
        let mut b = spawn_child(|| {
            let ring = SharedRing::from_fd(fd).unwrap();
            let mut rx = ring.take_over_consumer().unwrap().into_framed();
            let mut run = Run::default();
            let r = recv_all(&mut rx, &mut run, page.word(4), !batches);
            page.word(2).store(run.first.unwrap_or(u64::MAX), Ordering::Relaxed);
            page.word(3).store(run.next, Ordering::Relaxed);
            match r {
                Ok(()) => 0,
                Err(msg) => {
                    eprintln!("framed consumer B: {msg}");
                    1
                }
            }
        });
        assert_eq!(b.wait_within(3 * LONG), 0, "batches {batches}: the new framed consumer (see stderr)");
        assert_eq!(producer.wait_within(3 * LONG), 0, "batches {batches}: the framed producer");
        let first = page.word(2).load(Ordering::Relaxed);
        assert!(first <= a_progress, "batches {batches}: B started at {first}, after A's {a_progress}");
        assert_eq!(page.word(3).load(Ordering::Relaxed), TOTAL, "batches {batches}");
    }

    // The producer side.
    let page = SharedPage::new(); // 0: sent, 1: taken over
    let ring = RingOptions::new().capacity(16 * KIB).backend(Backend::Memfd).shared().unwrap();
    let fd = ring.as_fd().unwrap().try_clone_to_owned().unwrap();
    let mut p1 = spawn_child(|| {
        let mut tx = ring.clone().into_producer().unwrap().into_framed();
        tx.set_batch(16);
        let _ = send_all(&mut tx, 0, page.word(0));
        1
    });
    let mut rx = ring.clone().into_consumer().unwrap().into_framed();
    let mut run = Run::default();
    let progress = AtomicU64::new(0);
    let mut killed = false;
    let death = loop {
        match rx.recv_timeout(LONG) {
            Ok(Some(f)) => check(&f, &mut run).unwrap(),
            Ok(None) => panic!("a clean end of stream from a killed producer"),
            Err(e) => break e,
        }
        if !killed && run.next >= 50_000 {
            p1.kill();
            killed = true;
        }
    };
    assert_eq!(death.kind(), ErrorKind::UnexpectedEof, "{death}");
    assert_eq!(p1.wait(), 128 + libc::SIGKILL);
    // Frames the dead producer held back in its batch are gone; resume after the last one
    // the consumer saw (the consumer knows: it tells the replacement here through `resume`).
    let resume = run.next;
    let mut p2 = spawn_child(|| {
        let ring = SharedRing::from_fd(fd).unwrap();
        let mut tx = ring.take_over_producer().unwrap().into_framed();
        page.word(1).store(1, Ordering::Release);
        std::thread::sleep(Duration::from_millis(30)); // the consumer blocks first
        tx.set_batch(4);
        match send_all(&mut tx, resume, &AtomicU64::new(0)) {
            Ok(()) => 0,
            Err(msg) => {
                eprintln!("framed producer 2: {msg}");
                1
            }
        }
    });
    wait_until("the producer's take-over", || page.word(1).load(Ordering::Acquire) == 1);
    let r = recv_all(&mut rx, &mut run, &progress, false);
    assert_eq!(r, Ok(()), "the framed consumer after the producer's take-over");
    assert_eq!(run.next, TOTAL);
    assert_eq!(p2.wait_within(3 * LONG), 0);
}

/// A role whose holder lives is refused (`AlreadyExists`), whether the holder is another
/// process or this one; a cleanly closed role is refused for good, also once its holder has
/// exited; a role never claimed is `NotFound`; a holder that cannot be checked (its slot
/// says it lives in another PID namespace) is `WouldBlock`. No refusal changes the slot, and
/// the holder goes on working.
#[test]
fn live_closed_and_never_claimed_roles_are_refused() {
    for backend in available() {
        let ring = RingOptions::new().capacity(4096).backend(backend).shared().unwrap();
        assert_eq!(kind(ring.take_over_producer()), Some(ErrorKind::NotFound), "{backend}: never claimed");
        assert_eq!(kind(ring.take_over_consumer()), Some(ErrorKind::NotFound), "{backend}: never claimed");
        let page = SharedPage::new(); // 0: the child has claimed, 1: the child may go on
        let child_ring = ring.clone();
        let mut holder = spawn_child(|| {
            let mut rx = child_ring.clone().into_consumer().unwrap();
            page.word(0).store(1, Ordering::Release);
            // Refused for the holder itself too.
            if kind(child_ring.take_over_consumer()) != Some(ErrorKind::AlreadyExists) {
                return 2;
            }
            let mut got = [0u8; 5];
            match rx.read_exact(&mut got) {
                Ok(()) if &got == b"still" => 0,
                other => {
                    eprintln!("holder: {other:?} {got:?}");
                    1
                }
            }
        });
        wait_until("the holder claimed", || page.word(0).load(Ordering::Acquire) == 1);
        let err = ring.take_over_consumer().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{backend}: a live holder: {err}");
        assert!(err.to_string().contains(&holder.pid().to_string()), "{backend}: the message names the holder: {err}");
        // The holder goes on: it reads what the producer writes next.
        let mut tx = ring.clone().into_producer().unwrap();
        assert_eq!(kind(ring.take_over_producer()), Some(ErrorKind::AlreadyExists), "{backend}: we hold it");
        tx.write_all(b"still").unwrap();
        assert_eq!(holder.wait_within(LONG), 0, "{backend}: the holder after the refusals");
        // It closed cleanly (its end dropped) and exited: final.
        let err = ring.take_over_consumer().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{backend}: a closed role: {err}");
        assert!(err.to_string().contains("closed"), "{backend}: {err}");
        assert_eq!(kind(tx.write(b"x")), Some(ErrorKind::BrokenPipe), "{backend}: the consumer stays closed");
        drop(tx);
        assert_eq!(kind(ring.take_over_producer()), Some(ErrorKind::AlreadyExists), "{backend}: closed by us");
    }

    // A holder in another PID namespace cannot be checked: WouldBlock, nothing changed.
    let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    let view = HeaderView::map(ring.as_fd().unwrap());
    let page = SharedPage::new();
    let child_ring = ring.clone();
    let mut holder = spawn_child(|| {
        let _tx = child_ring.into_producer().unwrap();
        page.word(0).store(1, Ordering::Release);
        wait_until("the parent is done", || page.word(1).load(Ordering::Acquire) == 1);
        0
    });
    wait_until("the holder claimed", || page.word(0).load(Ordering::Acquire) == 1);
    let ns = view.u64_at(OFF_PRODUCER + SLOT_PID_NS);
    ns.store(ns.load(Ordering::SeqCst) ^ 0x5a5a, Ordering::SeqCst);
    let before = view.claim(OFF_PRODUCER);
    let err = ring.take_over_producer().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock, "another namespace: {err}");
    assert_eq!(view.claim(OFF_PRODUCER), before, "a refused take-over changed the slot");
    page.word(1).store(1, Ordering::Release);
    assert_eq!(holder.wait_within(LONG), 0);
}

/// A newcomer learns where the stream stands from its own end (`position()`): a producer that
/// takes a dead one's role over starts at the end of what it committed (with 8-byte records,
/// `position() / 8` is the next one), a consumer that takes a dead one's role over at its
/// last release; and the two agree with the survivors' own positions.
#[test]
fn a_newcomer_learns_the_stream_position_from_its_end() {
    let ring = RingOptions::new().capacity(64 * KIB).shared().unwrap();
    // Both first holders die without closing (their ends forgotten, as by a crash).
    let producer_ring = ring.clone();
    let mut p1 = spawn_child(|| {
        let mut tx = producer_ring.into_producer().unwrap();
        for i in 0..1000u64 {
            tx.write_all(&i.to_le_bytes()).unwrap();
        }
        let at = tx.position();
        std::mem::forget(tx);
        i32::from(at != 8000)
    });
    assert_eq!(p1.wait_within(LONG), 0, "the first producer's own position");
    let consumer_ring = ring.clone();
    let mut c1 = spawn_child(|| {
        let mut rx = consumer_ring.into_consumer().unwrap();
        let mut buf = [0u8; 8];
        for i in 0..300u64 {
            rx.read_exact(&mut buf).unwrap();
            if u64::from_le_bytes(buf) != i {
                return 2;
            }
        }
        let at = rx.position();
        std::mem::forget(rx);
        i32::from(at != 2400)
    });
    assert_eq!(c1.wait_within(LONG), 0, "the first consumer: its records, its position");
    let mut tx = ring.take_over_producer().unwrap();
    assert_eq!(tx.position(), 8000, "the new producer starts at the committed stream's end");
    tx.write_all(&(tx.position() / 8).to_le_bytes()).unwrap();
    let mut rx = ring.take_over_consumer().unwrap();
    assert_eq!(rx.position(), 2400, "the new consumer starts at the last release");
    let mut buf = [0u8; 8];
    for i in 300..=1000u64 {
        rx.read_exact(&mut buf).unwrap();
        assert_eq!(u64::from_le_bytes(buf), i, "the stream after both take-overs");
    }
    assert_eq!((rx.position(), tx.position()), (8008, 8008));
}

// ---------------------------------------------------------------------------------------------
// Hostile cases.

/// A peer forges the death of a living consumer (a start time that no longer matches its
/// process), and a supervisor believes it and takes the role over. The old consumer, alive,
/// notices at its next call (`ConnectionAborted`) and touches the ring no more: it neither
/// releases the bytes it reads past nor closes the role when it drops. The new consumer gets
/// every unreleased byte, the producer never sees a close.
#[test]
fn a_forged_death_moves_the_role_and_the_old_holder_stops_touching_the_ring() {
    let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    let view = HeaderView::map(ring.as_fd().unwrap());
    let page = SharedPage::new(); // 0: claimed and read, 1: taken over, 2: the old holder's verdict
    let mut tx = ring.clone().into_producer().unwrap();
    tx.write_all(b"first second").unwrap();
    let child_ring = ring.clone();
    let mut old = spawn_child(|| {
        let mut rx = child_ring.into_consumer().unwrap();
        let mut buf = [0u8; 6];
        rx.read_exact(&mut buf).unwrap(); // "first " released
        page.word(0).store(1, Ordering::Release);
        wait_until("the take-over", || page.word(1).load(Ordering::Acquire) == 1);
        let checks = [
            kind(rx.try_read(&mut buf)) == Some(ErrorKind::ConnectionAborted),
            kind(rx.read_timeout(&mut buf, Duration::from_millis(50))) == Some(ErrorKind::ConnectionAborted),
            kind(rx.read_grant(1).map(|g| g.release(1))) == Some(ErrorKind::ConnectionAborted),
            rx.is_abandoned(),
        ];
        // `consume` must release nothing, the drop must close nothing.
        std::io::BufRead::consume(&mut rx, 3);
        drop(rx);
        match checks.iter().position(|ok| !ok) {
            None => 0,
            Some(i) => 10 + i as i32,
        }
    });
    wait_until("the old consumer read", || page.word(0).load(Ordering::Acquire) == 1);
    let start = view.u64_at(OFF_CONSUMER + SLOT_START);
    assert_eq!(start.load(Ordering::SeqCst), start_time_of(old.pid()), "the slot records the holder's start time");
    start.store(start.load(Ordering::SeqCst) + 1, Ordering::SeqCst); // the forgery
    let mut rx = ring.take_over_consumer().expect("a forged death is believed");
    let (state, epoch, pid) = view.claim(OFF_CONSUMER);
    assert_eq!((state, epoch, pid), (CLAIMED, 2, std::process::id() as i32));
    page.word(1).store(1, Ordering::Release);
    assert_eq!(old.wait_within(LONG), 0, "10+i: the old holder's check i failed");
    // Nothing the old holder did reached the ring: the new consumer reads from its last
    // release, and the role is not closed.
    assert_eq!(view.claim(OFF_CONSUMER), (CLAIMED, 2, std::process::id() as i32));
    assert!(!tx.is_abandoned());
    let mut got = [0u8; 6];
    rx.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"second");
    tx.write_all(b"third").unwrap();
    let mut got = [0u8; 5];
    rx.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"third");
}

/// A holder whose death was forged stays stopped after its taker has closed the role too: the
/// slot then reads CLOSED in the taker's epoch, still another holding than the old one's. The
/// old producer's writes fail, its drop leaves the slot as the taker closed it, and the
/// consumer reads exactly what the two holders wrote while they held the role.
#[test]
fn a_taken_over_holder_stays_stopped_after_the_taker_closes() {
    let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    let view = HeaderView::map(ring.as_fd().unwrap());
    let page = SharedPage::new(); // 0: claimed and written, 1: taken over and closed
    let mut rx = ring.clone().into_consumer().unwrap();
    let child_ring = ring.clone();
    let mut old = spawn_child(|| {
        let mut tx = child_ring.into_producer().unwrap();
        tx.write_all(b"old;").unwrap();
        page.word(0).store(1, Ordering::Release);
        wait_until("the take-over and close", || page.word(1).load(Ordering::Acquire) == 1);
        let checks = [
            kind(tx.write(b"stale")) == Some(ErrorKind::ConnectionAborted),
            kind(tx.try_write(b"stale")) == Some(ErrorKind::ConnectionAborted),
        ];
        drop(tx);
        match checks.iter().position(|ok| !ok) {
            None => 0,
            Some(i) => 10 + i as i32,
        }
    });
    wait_until("the old producer wrote", || page.word(0).load(Ordering::Acquire) == 1);
    let start = view.u64_at(OFF_PRODUCER + SLOT_START);
    start.store(start.load(Ordering::SeqCst) + 1, Ordering::SeqCst); // the forgery
    let mut tx = ring.take_over_producer().expect("a forged death is believed");
    tx.write_all(b"new;").unwrap();
    drop(tx);
    let closed = view.claim(OFF_PRODUCER);
    assert_eq!(closed, (CLOSED, 2, std::process::id() as i32));
    page.word(1).store(1, Ordering::Release);
    assert_eq!(old.wait_within(LONG), 0, "10+i: the old holder's check i failed");
    assert_eq!(view.claim(OFF_PRODUCER), closed, "the old holder rewrote the closed slot");
    let mut got = Vec::new();
    rx.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"old;new;");
}

/// A claimant forked into a new PID namespace records that namespace, not the one of the
/// process it was forked from (which had claimed a role first): a watcher in the old
/// namespace must never check its pid, which means nothing there. Needs the right to make a
/// PID namespace (skipped, saying so, without it).
#[test]
fn a_claimant_in_a_new_pid_namespace_records_its_own() {
    use std::os::unix::fs::MetadataExt;
    let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    let view = HeaderView::map(ring.as_fd().unwrap());
    // This process claims first, so that anything it keeps about itself is in place.
    let _rx = ring.clone().into_consumer().unwrap();
    let ours = std::fs::metadata("/proc/self/ns/pid").unwrap().ino();
    assert_eq!(view.u64_at(OFF_CONSUMER + SLOT_PID_NS).load(Ordering::SeqCst), ours);
    let child_ring = ring.clone();
    let mut child = spawn_child(|| {
        // SAFETY: unshare has no memory effects; CLONE_NEWPID applies to later children.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return 90;
        }
        let mut claimant = spawn_child(|| {
            let _tx = child_ring.into_producer().unwrap();
            let own = std::fs::metadata("/proc/self/ns/pid").unwrap().ino();
            let recorded = view.u64_at(OFF_PRODUCER + SLOT_PID_NS).load(Ordering::SeqCst);
            i32::from(recorded != own || own == ours)
        });
        claimant.wait_within(LONG)
    });
    match child.wait_within(LONG) {
        90 => eprintln!("skipped: no right to make a PID namespace here"),
        code => assert_eq!(code, 0, "the claimant recorded another namespace than its own"),
    }
}

/// A holder in another time namespace, whose boottime is offset: the start time it records
/// and the one its watcher reads are the same process's, so the watcher sees it alive and a
/// take-over is refused. Needs the right to make a time namespace (skipped, saying so,
/// without it).
#[test]
fn a_holder_in_another_time_namespace_is_not_taken_for_dead() {
    let ring = RingOptions::new().capacity(1 << 16).backend(Backend::Memfd).shared().unwrap();
    let page = SharedPage::new(); // 0: the holder's pid once it claimed, 1: the checks are done
    let rx = ring.clone().into_consumer().unwrap();
    let child_ring = ring.clone();
    let mut child = spawn_child(|| {
        // SAFETY: unshare has no memory effects; CLONE_NEWTIME applies to later children.
        if unsafe { libc::unshare(libc::CLONE_NEWTIME) } != 0
            || std::fs::write("/proc/self/timens_offsets", "boottime 100000 0\n").is_err()
        {
            page.word(0).store(u64::MAX, Ordering::SeqCst);
            return 90;
        }
        let mut holder = spawn_child(|| {
            let mut tx = child_ring.into_producer().unwrap();
            page.word(0).store(std::process::id().into(), Ordering::SeqCst);
            while page.word(1).load(Ordering::SeqCst) == 0 {
                if kind(tx.try_write(b"x")).is_some_and(|k| k != ErrorKind::WouldBlock) {
                    return 7;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            0
        });
        holder.wait_within(LONG)
    });
    wait_until("the holder's claim", || page.word(0).load(Ordering::SeqCst) != 0);
    if page.word(0).load(Ordering::SeqCst) == u64::MAX {
        assert_eq!(child.wait_within(LONG), 90);
        eprintln!("skipped: no right to make a time namespace here");
        return;
    }
    std::thread::sleep(Duration::from_millis(5)); // past the watcher's rate limit
    let abandoned = rx.is_abandoned();
    let took = kind(ring.take_over_producer());
    page.word(1).store(1, Ordering::SeqCst);
    assert_eq!(child.wait_within(LONG), 0, "7: the holder's write failed");
    assert!(!abandoned, "a live holder was reported dead");
    assert_eq!(took, Some(ErrorKind::AlreadyExists), "a live holder's role was taken over");
}

/// A take-over races the holder's own close (the holder's death forged, so the take-over is
/// allowed to try): either the close wins (the take-over is refused, the role is closed) or
/// the take-over wins (the close stored nothing: the role is the taker's, the producer sees
/// no close). Never both, never neither, never a torn slot.
#[test]
fn a_takeover_racing_the_holders_close_has_one_winner() {
    let (mut closes, mut takes) = (0, 0);
    for round in 0..40 * scale() {
        let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
        let view = HeaderView::map(ring.as_fd().unwrap());
        let page = SharedPage::new(); // 0: claimed, 1: go
        let mut tx = ring.clone().into_producer().unwrap();
        let child_ring = ring.clone();
        let mut holder = spawn_child(|| {
            let rx = child_ring.into_consumer().unwrap();
            page.word(0).store(1, Ordering::Release);
            while page.word(1).load(Ordering::Acquire) == 0 {
                std::hint::spin_loop();
            }
            for _ in 0..round % 3 * 100 {
                std::hint::spin_loop();
            }
            drop(rx); // the close
            0
        });
        wait_until("the holder claimed", || page.word(0).load(Ordering::Acquire) == 1);
        let start = view.u64_at(OFF_CONSUMER + SLOT_START);
        start.store(start.load(Ordering::SeqCst) ^ 1, Ordering::SeqCst);
        page.word(1).store(1, Ordering::Release);
        // Vary who is first: the take-over's liveness check (a pidfd, /proc) takes longer
        // than the close's one compare-and-swap.
        let delay = Instant::now() + Duration::from_micros((round % 8 * 15) as u64);
        while Instant::now() < delay {
            std::hint::spin_loop();
        }
        let taken = ring.take_over_consumer();
        let holder_pid = holder.pid();
        assert_eq!(holder.wait_within(LONG), 0);
        let (state, epoch, pid) = view.claim(OFF_CONSUMER);
        match taken {
            Ok(rx) => {
                takes += 1;
                assert_eq!((state, epoch, pid), (CLAIMED, 2, std::process::id() as i32), "round {round}");
                assert!(!tx.is_abandoned(), "round {round}: the producer sees a close after the take-over won");
                tx.write_all(b"ok").unwrap();
                drop(rx);
            }
            Err(e) => {
                closes += 1;
                assert_eq!(e.kind(), ErrorKind::AlreadyExists, "round {round}: {e}");
                assert_eq!((state, epoch, pid), (CLOSED, 1, holder_pid), "round {round}: {e}");
                assert_eq!(kind(tx.write(b"x")), Some(ErrorKind::BrokenPipe), "round {round}");
            }
        }
    }
    eprintln!("take-over vs close: the close won {closes} times, the take-over {takes} times");
}

/// A forked copy of the living holder cannot take the role over (the holder lives), and its
/// copy of the end stays inert; the holder goes on.
#[test]
fn a_forked_copy_of_the_living_holder_cannot_take_over() {
    for backend in available() {
        let ring = RingOptions::new().capacity(4096).backend(backend).shared().unwrap();
        let child_ring = ring.clone();
        let mut holder = spawn_child(|| {
            let rx = child_ring.clone().into_consumer().unwrap();
            let mut rx_slot = Some(rx);
            let mut copy = spawn_child(|| {
                // A forked copy of the holder: the ring, and the holder's end, inherited.
                let refused = kind(child_ring.take_over_consumer()) == Some(ErrorKind::AlreadyExists);
                let mut rx = rx_slot.take().unwrap();
                let inert = kind(rx.try_read(&mut [0u8; 1])) == Some(ErrorKind::Unsupported);
                drop(rx); // closes nothing: the holder's end is not this process's
                i32::from(!refused) + 2 * i32::from(!inert)
            });
            let code = copy.wait_within(LONG);
            if code != 0 {
                return 10 + code;
            }
            let mut rx = rx_slot.unwrap();
            let mut got = [0u8; 2];
            match rx.read_exact(&mut got) {
                Ok(()) if &got == b"on" => 0,
                _ => 1,
            }
        });
        let mut tx = ring.clone().into_producer().unwrap();
        tx.write_all(b"on").unwrap();
        assert_eq!(
            holder.wait_within(LONG),
            0,
            "{backend}: 11: the copy took over, 12: its end was live, 13: both, 1: the holder stopped"
        );
    }
}

/// Processes race to take over the role of a killed consumer: exactly one wins, every other
/// one is refused with `AlreadyExists`, and the winner gets the bytes the dead consumer never
/// released.
#[test]
fn racing_takeovers_from_many_processes_have_exactly_one_winner() {
    const RACERS: usize = 6;
    for round in 0..8 * scale() {
        let memfd = round % 2 == 0;
        let backend = if memfd { Backend::Memfd } else { available()[round % available().len()] };
        let ring = RingOptions::new().capacity(4096).backend(backend).shared().unwrap();
        let page = SharedPage::new(); // 0: go, 1: the dead consumer read
        let mut tx = ring.clone().into_producer().unwrap();
        tx.write_all(b"unreleased").unwrap();
        let child_ring = ring.clone();
        let mut dead = spawn_child(|| {
            let mut rx = child_ring.into_consumer().unwrap();
            let g = rx.read_grant(10).unwrap(); // never released
            std::hint::black_box(&*g);
            page.word(1).store(1, Ordering::Release);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        wait_until("the consumer read", || page.word(1).load(Ordering::Acquire) == 1);
        dead.kill();
        if round % 4 < 2 {
            dead.wait(); // reaped (ESRCH)
        } else {
            wait_dead_unreaped(&dead); // a zombie (a readable pidfd)
        }
        let fds: Vec<OwnedFd> =
            (0..RACERS).map(|_| ring.as_fd().map_or_else(dup_null, |fd| fd.try_clone_to_owned().unwrap())).collect();
        let racers: Vec<Child> = fds
            .into_iter()
            .map(|fd| {
                let ring = &ring;
                let page = &page;
                spawn_child(move || {
                    // From the memfd (an unrelated process) or inherited across fork.
                    let ring = if memfd { SharedRing::from_fd(fd).unwrap() } else { ring.clone() };
                    while page.word(0).load(Ordering::Acquire) == 0 {
                        std::hint::spin_loop();
                    }
                    match ring.take_over_consumer() {
                        Ok(mut rx) => {
                            match rx.read_grant_timeout(10, Duration::from_secs(2)) {
                                Ok(g) if &*g == b"unreleased" => {}
                                _ => return 40,
                            }
                            // Hold the role while the others look, then close.
                            std::thread::sleep(Duration::from_millis(50));
                            10
                        }
                        Err(e) if e.kind() == ErrorKind::AlreadyExists => 20,
                        Err(e) => {
                            eprintln!("racer: {e}");
                            30
                        }
                    }
                })
            })
            .collect();
        page.word(0).store(1, Ordering::Release);
        let codes: Vec<i32> = racers.into_iter().map(|mut racer| racer.wait_within(LONG)).collect();
        if round % 4 >= 2 {
            dead.wait();
        }
        assert_eq!(codes.iter().filter(|&&c| c == 10).count(), 1, "round {round} ({backend}): winners in {codes:?}");
        assert_eq!(codes.iter().filter(|&&c| c == 20).count(), RACERS - 1, "round {round} ({backend}): {codes:?}");
    }

    fn dup_null() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }
}

/// Waits until our child has died (a SIGKILL takes effect asynchronously), leaving it
/// unreaped: a zombie.
fn wait_dead_unreaped(child: &Child) {
    // SAFETY: an all-zero siginfo_t is a valid out-buffer.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: our own child, not yet waited for; WNOWAIT leaves it waitable (unreaped).
    let r = unsafe { libc::waitid(libc::P_PID, child.pid() as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
    assert_eq!(r, 0, "waitid: {}", std::io::Error::last_os_error());
}

/// A taker killed in the middle of its take-over (between winning the slot and publishing its
/// start time: the slot is TAKING and names it by pid) does not wedge the role: while it
/// lives it holds the role (`AlreadyExists`), and once it is dead its take-over is taken over
/// in turn. The survivor producer meanwhile sees the dead taker as a dead peer and goes on
/// once the role is held again.
#[test]
fn a_taker_killed_mid_takeover_does_not_wedge_the_role() {
    let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    let view = HeaderView::map(ring.as_fd().unwrap());
    let mut tx = ring.clone().into_producer().unwrap();
    let cap = tx.capacity(); // one page
    tx.write_all(&vec![7u8; cap]).unwrap(); // full
    let mut holder = idle_consumer(&ring);
    assert!(!tx.is_abandoned());
    holder.kill();
    holder.wait();
    // The taker: a live process that won the slot (epoch 2, TAKING) and is then killed before
    // it could finish, exactly the state `Header::take` leaves between its two steps.
    let mut taker = spawn_child(|| loop {
        std::thread::sleep(Duration::from_secs(1));
    });
    let (state, epoch, _) = view.claim(OFF_CONSUMER);
    assert_eq!((state, epoch), (CLAIMED, 1));
    view.set_claim(OFF_CONSUMER, TAKING, 2, taker.pid());
    let err = ring.take_over_consumer().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "a live taker holds the role: {err}");
    assert_eq!(kind(tx.write_timeout(b"x", Duration::from_millis(100))), Some(ErrorKind::TimedOut), "a live taker");
    taker.kill();
    // Not reaped: a zombie taker is proven dead through its pidfd.
    assert_eq!(kind(tx.write_timeout(b"x", LONG)), Some(ErrorKind::BrokenPipe), "the dead taker is a dead peer");
    let mut rx = ring.take_over_consumer().expect("the dead taker's take-over is taken over");
    assert_eq!(view.claim(OFF_CONSUMER), (CLAIMED, 3, std::process::id() as i32));
    // The survivor goes on: the new consumer releases, the producer writes.
    let mut buf = vec![0u8; cap];
    rx.read_exact(&mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 7), "the bytes the dead consumer never released");
    tx.write_all(b"on").unwrap();
    rx.read_exact(&mut buf[..2]).unwrap();
    assert_eq!(&buf[..2], b"on");
    taker.wait();
}

// ---------------------------------------------------------------------------------------------
// The survivor.

/// The survivor's `BrokenPipe` after the death is not final, and a producer blocked on the
/// full ring of a dead consumer simply continues when the new consumer releases space: its
/// wait does not end with `BrokenPipe` once a newcomer holds the role (the watcher follows
/// the slot to the new holder), and a death it had already reported is dropped by the
/// take-over.
#[test]
fn the_survivor_goes_on_after_a_takeover() {
    for reported in [false, true] {
        let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
        let cap = ring.capacity(); // one page
        let fd = ring.as_fd().unwrap().try_clone_to_owned().unwrap();
        let page = SharedPage::new(); // 1: the producer blocks, 2: the take-over is done
        let mut tx = ring.clone().into_producer().unwrap();
        let mut first = idle_consumer(&ring);
        // The producer's watcher identifies the first consumer, alive.
        assert!(!tx.is_abandoned());
        tx.write_all(&vec![1u8; cap]).unwrap(); // full
        first.kill();
        first.wait();
        if reported {
            // The death is seen and reported...
            assert_eq!(kind(tx.write_timeout(b"x", LONG)), Some(ErrorKind::BrokenPipe));
            assert!(tx.is_abandoned());
        }
        let mut newcomer = spawn_child(|| {
            let ring = SharedRing::from_fd(fd).unwrap();
            let mut rx = ring.take_over_consumer().unwrap();
            page.word(2).store(1, Ordering::Release);
            wait_until("the producer blocks", || page.word(1).load(Ordering::Acquire) == 1);
            std::thread::sleep(Duration::from_millis(60)); // past the producer's watch interval
            let mut buf = vec![0u8; cap + 5];
            match rx.read_exact(&mut buf) {
                Ok(()) if buf[..cap].iter().all(|&b| b == 1) && &buf[cap..] == b"after" => 0,
                _ => 1,
            }
        });
        wait_until("the take-over", || page.word(2).load(Ordering::Acquire) == 1);
        // ... and not final: the next call goes on (here: blocks on the full ring until the
        // new consumer releases, well past the 25 ms watch interval, without BrokenPipe).
        assert!(!tx.is_abandoned(), "reported {reported}: the role is held again");
        page.word(1).store(1, Ordering::Release);
        let started = Instant::now();
        tx.write_all(b"after").expect("the blocked producer continues");
        assert!(started.elapsed() >= Duration::from_millis(50), "it did block");
        assert_eq!(newcomer.wait_within(LONG), 0, "reported {reported}");
    }
}

/// A killed producer's role taken over by the consumer's own process (both ends in one
/// process afterwards), on every backend: the consumer reports the death (`UnexpectedEof`),
/// then reads on.
#[test]
fn a_consumer_reads_on_after_its_own_process_takes_the_producer_over() {
    for backend in available() {
        let ring = RingOptions::new().capacity(4096).backend(backend).shared().unwrap();
        let mut rx = ring.clone().into_consumer().unwrap();
        let child_ring = ring.clone();
        let mut p1 = spawn_child(|| {
            let mut tx = child_ring.into_producer().unwrap();
            tx.write_all(b"before").unwrap();
            std::mem::forget(tx); // dies holding the role
            0
        });
        assert_eq!(p1.wait_within(LONG), 0);
        let mut buf = [0u8; 6];
        rx.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"before");
        assert_eq!(kind(rx.read_timeout(&mut buf, LONG)), Some(ErrorKind::UnexpectedEof), "{backend}");
        let mut tx = ring.take_over_producer().unwrap();
        assert!(!rx.is_abandoned(), "{backend}");
        tx.write_all(b"after").unwrap();
        drop(tx);
        let mut rest = Vec::new();
        rx.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"after", "{backend}");
    }
}
