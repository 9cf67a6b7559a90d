//! Programs an independent client wrote from the README, the rustdoc and the `docs` pages only:
//! a log shipper with async framed consumers and a worker killed and replaced, a whole-record
//! parser on the byte API across the wrap point, a service with an exec'd helper that gets the
//! ring over a Unix socket and is restarted several times, the counters after known workloads,
//! and the documented bounds of timeouts, peer death and close-and-drain.
//!
//! Every program checks its own result exactly: every record arrives once, in order, with its
//! bytes intact. Cross-process parts fork (the child leaves through `libc::_exit`) or exec this
//! test binary again as an unrelated helper (`client_helper_entry`).

use std::io::{self, BufRead, ErrorKind, Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

mod common;

use common::SharedPage;
use mirror_ring::{Backend, RingOptions, SharedRing};

// ---------------------------------------------------------------------------------------------
// Small helpers a client would write.

/// xorshift64*: deterministic "random" sizes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn mix(a: u64, b: u64) -> u64 {
    let mut r = Rng(a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_add(0x1234_5678) | 1);
    r.next()
}

/// Runs `f` in a forked child, which always leaves through `_exit` (0: `f` returned Ok).
fn fork_child(f: impl FnOnce() -> io::Result<()>) -> libc::pid_t {
    // SAFETY: the child runs only `f`, then `_exit`s without returning into the harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        // Killed when the test's thread ends, also when an assertion of the test failed before
        // it told the child to stop (a child of a failed test once outlived the harness).
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => {
                eprintln!("child {}: {e} ({:?})", std::process::id(), e.kind());
                1
            }
            Err(_) => 2,
        };
        // SAFETY: leaves the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Waits for a child, at most `limit` (then SIGKILLs it and fails); returns the raw status.
fn reap_within(pid: libc::pid_t, limit: Duration) -> i32 {
    let until = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: our own child, a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return status;
        }
        assert_eq!(r, 0, "waitpid({pid}): {}", io::Error::last_os_error());
        if Instant::now() > until {
            // SAFETY: our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: as above.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            panic!("child {pid} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `word` moves past `from` (a child reporting progress), at most 20 s.
fn wait_past(word: &AtomicU64, from: u64, what: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    while word.load(SeqCst) == from {
        assert!(Instant::now() < until, "{what}: no progress in 20 s");
        std::thread::sleep(Duration::from_micros(100));
    }
}

fn sigkill(pid: libc::pid_t) {
    // SAFETY: our own unreaped child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
}

/// A self-checking record: `[len u32][seq u32][stream u64][body...]`, body bytes derived from
/// (stream, seq, index). `len` is the whole record's length, at least 16.
fn record_len(stream: u64, seq: u64, max: usize) -> usize {
    // Mostly small, one in eight close to `max`.
    let h = mix(stream, seq);
    if h % 8 == 0 { max - (h >> 8) as usize % 64 } else { 16 + (h >> 8) as usize % 1500 }.max(16).min(max)
}

fn fill_record(buf: &mut [u8], stream: u64, seq: u64) {
    let len = buf.len();
    buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[4..8].copy_from_slice(&(seq as u32).to_le_bytes());
    buf[8..16].copy_from_slice(&stream.to_le_bytes());
    let seed = mix(stream, seq) as u8;
    for (i, b) in buf[16..].iter_mut().enumerate() {
        *b = seed.wrapping_add((i as u8).wrapping_mul(31));
    }
}

fn make_record(stream: u64, seq: u64, max: usize) -> Vec<u8> {
    let mut v = vec![0; record_len(stream, seq, max)];
    fill_record(&mut v, stream, seq);
    v
}

/// Checks a whole record; returns its length.
fn check_record(rec: &[u8], stream: u64, seq: u64, max: usize) -> usize {
    assert!(rec.len() >= 16, "stream {stream} seq {seq}: short record ({} bytes)", rec.len());
    let len = u32::from_le_bytes(rec[..4].try_into().unwrap()) as usize;
    let got_seq = u32::from_le_bytes(rec[4..8].try_into().unwrap()) as u64;
    let got_stream = u64::from_le_bytes(rec[8..16].try_into().unwrap());
    assert_eq!((got_stream, got_seq), (stream, seq), "record out of order, lost or duplicated");
    assert_eq!(len, record_len(stream, seq, max), "stream {stream} seq {seq}: length");
    assert!(rec.len() >= len);
    let mut want = vec![0; len];
    fill_record(&mut want, stream, seq);
    assert!(rec[..len] == want[..], "stream {stream} seq {seq}: body corrupted");
    len
}

// ---------------------------------------------------------------------------------------------
// 1. A log shipper: forked workers, one framed ring each, async framed consumers in the parent;
//    one worker is SIGKILLed mid-stream twice, and a replacement takes its producer role over.

#[cfg(feature = "tokio")]
#[test]
fn log_shipper_async_framed_consumers_survive_worker_kills_and_takeovers() {
    const WORKERS: u64 = 3;
    const RECORDS: u64 = 3000;
    const VICTIM: u64 = 1;
    const KILL_AT: [u64; 2] = [900, 1900];
    const CAP: usize = 16 * 1024;

    let rings: Vec<SharedRing> = (0..WORKERS).map(|_| RingOptions::new().capacity(CAP).shared().unwrap()).collect();
    let max = rings[0].capacity() - 8; // max_frame_len
                                       // The parent claims every consumer role before forking (children get inert copies).
    let consumers: Vec<_> = rings.iter().map(|r| r.clone().into_consumer().unwrap().into_framed()).collect();

    // The replacement says when it holds the role: until then the consumer's next call still
    // reports the old death (`UnexpectedEof`, latched), which it cannot tell from a new one.
    let board = SharedPage::new();
    fn worker(
        ring: &SharedRing,
        id: u64,
        start: u64,
        take_over: bool,
        max: usize,
        board: &SharedPage,
    ) -> io::Result<()> {
        let tx = if take_over { ring.take_over_producer()? } else { ring.clone().into_producer()? };
        board.word(id as usize).fetch_add(1, SeqCst);
        let mut tx = tx.into_framed();
        for seq in start..RECORDS {
            tx.send(&make_record(id, seq, max))?;
            if seq % 64 == 0 {
                std::thread::sleep(Duration::from_micros(300));
            }
        }
        Ok(()) // dropping tx closes the ring
    }

    let mut pids: Vec<libc::pid_t> =
        (0..WORKERS).map(|id| fork_child(|| worker(&rings[id as usize], id, 0, false, max, &board))).collect();
    let victim_pids = std::sync::Mutex::new(vec![pids[VICTIM as usize]]);

    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for (id, rx) in consumers.into_iter().enumerate() {
            let id = id as u64;
            let mut rx = rx.into_async().unwrap();
            let ring = rings[id as usize].clone();
            let victim_pids = &victim_pids;
            let board = &board;
            tasks.push(async move {
                let (mut next, mut deaths, mut kills) = (0u64, 0u64, 0usize);
                loop {
                    match rx.recv().await {
                        Ok(Some(frame)) => {
                            check_record(&frame, id, next, max);
                            assert_eq!(frame.len(), record_len(id, next, max));
                            drop(frame);
                            next += 1;
                            if id == VICTIM && kills < KILL_AT.len() && next == KILL_AT[kills] {
                                sigkill(*victim_pids.lock().unwrap().last().unwrap());
                                kills += 1;
                            }
                        }
                        Ok(None) => break,
                        Err(e) if e.kind() == ErrorKind::UnexpectedEof && id == VICTIM => {
                            // Every frame committed before the death was delivered: resume after
                            // the last one seen. Reap first, as the docs ask of a supervisor.
                            deaths += 1;
                            let dead = *victim_pids.lock().unwrap().last().unwrap();
                            let st = reap_within(dead, Duration::from_secs(10));
                            assert!(libc::WIFSIGNALED(st), "the victim was killed: status {st:#x}");
                            let holdings = board.word(id as usize).load(SeqCst);
                            let ring2 = ring.clone();
                            let pid = fork_child(move || worker(&ring2, id, next, true, max, board));
                            victim_pids.lock().unwrap().push(pid);
                            while board.word(id as usize).load(SeqCst) == holdings {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                        }
                        Err(e) => panic!("stream {id}: after {next} records: {e} ({:?})", e.kind()),
                    }
                }
                (id, next, deaths)
            });
        }
        let all = futures_join_all(tasks);
        tokio::time::timeout(Duration::from_secs(120), all).await.expect("the shipper hung")
    });
    for (id, received, deaths) in results {
        assert_eq!(received, RECORDS, "stream {id}: every record exactly once");
        assert_eq!(deaths, if id == VICTIM { KILL_AT.len() as u64 } else { 0 }, "stream {id}: deaths seen");
    }
    pids[VICTIM as usize] = *victim_pids.lock().unwrap().last().unwrap();
    for pid in pids {
        assert_eq!(reap_within(pid, Duration::from_secs(30)), 0, "worker {pid} exit status");
    }
}

/// Joins futures on one task, in order of completion, without pulling in `futures`.
#[cfg(feature = "tokio")]
async fn futures_join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    use std::pin::Pin;
    use std::task::Poll;
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futs.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => out[i] = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

// ---------------------------------------------------------------------------------------------
// 2. A parser that needs whole records, on the byte API, across the wrap point, with records
//    of random sizes up to the whole capacity.

const PARSE_RECORDS: u64 = 20_000;

/// The writer: each record is built in place in one write grant of exactly its size.
fn write_records_in_place(tx: &mut mirror_ring::Producer, stream: u64, max: usize) -> io::Result<()> {
    for seq in 0..PARSE_RECORDS {
        let len = record_len(stream, seq, max);
        let mut g = tx.write_grant_blocking(len)?;
        assert!(g.len() >= len);
        fill_record(&mut g[..len], stream, seq);
        g.commit(len)?;
    }
    Ok(())
}

#[test]
fn parser_reads_whole_records_with_read_grants_across_the_wrap() {
    let (mut tx, mut rx) = mirror_ring::channel(64 * 1024).unwrap();
    let cap = tx.capacity();
    let writer = std::thread::spawn(move || write_records_in_place(&mut tx, 2, cap));
    let (mut pos, mut wrapped, mut biggest) = (0usize, 0u64, 0usize);
    for seq in 0..PARSE_RECORDS {
        // The length first, then the whole record as one slice.
        let len = {
            let g = rx.read_grant_blocking(4).unwrap();
            u32::from_le_bytes(g[..4].try_into().unwrap()) as usize
        };
        let g = rx.read_grant_blocking(len).unwrap();
        assert!(g.len() >= len);
        check_record(&g[..len], 2, seq, cap);
        g.release(len).unwrap();
        if pos % cap + len > cap {
            wrapped += 1;
        }
        pos += len;
        biggest = biggest.max(len);
    }
    // End of stream: the empty grant of min 0.
    writer.join().unwrap().unwrap();
    assert!(rx.read_grant(0).unwrap().is_empty());
    assert_eq!(rx.read(&mut [0; 8]).unwrap(), 0);
    assert!(wrapped > 100, "records across the wrap point: {wrapped}");
    assert!(biggest > cap - 64, "largest record {biggest} of {cap}");
}

/// The same parser through `BufRead` only (`fill_buf`/`consume`), with `read_grant_blocking`
/// to wait for the rest of a record, as the crate's first example does; the writer is a
/// forked child.
#[test]
fn parser_reads_whole_records_with_fill_buf_from_a_forked_writer() {
    let ring = RingOptions::new().capacity(64 * 1024).shared().unwrap();
    let cap = ring.capacity();
    let mut rx = ring.clone().into_consumer().unwrap();
    let pid = fork_child(|| write_records_in_place(&mut ring.into_producer()?, 3, cap));
    let (mut seq, mut wrapped, mut pos) = (0u64, 0u64, 0usize);
    loop {
        let buf = rx.fill_buf().unwrap();
        if buf.is_empty() {
            break;
        }
        let have = buf.len();
        let need = if have < 4 { 4 } else { u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize };
        if have < need {
            drop(rx.read_grant_blocking(need).unwrap());
            continue;
        }
        let len = check_record(&buf[..need], 3, seq, cap);
        if pos % cap + len > cap {
            wrapped += 1;
        }
        pos += len;
        seq += 1;
        rx.consume(len);
    }
    assert_eq!(seq, PARSE_RECORDS);
    assert!(wrapped > 100, "records across the wrap point: {wrapped}");
    assert_eq!(reap_within(pid, Duration::from_secs(30)), 0);
}

// ---------------------------------------------------------------------------------------------
// 3. A service and a restartable helper: a memfd ring handed over a Unix socket to a helper
//    process (this binary run again), which is killed during writes, between writes, and
//    right after its take-over, and restarted each time; the service keeps reading.

const HELPER_ENV: &str = "REVIEW_CLIENT_HELPER_SOCKET";
const HELPER_RECORDS: u64 = 6000;
const HELPER_BURST: u64 = 100;

/// Not a test of its own: the entry point of the helper process (does nothing unless started
/// by `service_keeps_reading_while_its_memfd_helper_is_killed_and_restarted`).
#[test]
fn client_helper_entry() {
    let Ok(name) = std::env::var(HELPER_ENV) else { return };
    let code = match helper_main(&name) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("helper {}: {e} ({:?})", std::process::id(), e.kind());
            1
        }
    };
    // Leave without running destructors either way: a helper that finished dropped its end
    // itself; one told to die must not close it.
    std::process::exit(code);
}

fn helper_main(name: &str) -> io::Result<()> {
    let sock = UnixStream::connect_addr(&SocketAddr::from_abstract_name(name)?)?;
    let ring = SharedRing::recv_from(&sock)?;
    let mut order = [0u8; 10];
    (&sock).read_exact(&mut order)?;
    let start = u64::from_le_bytes(order[..8].try_into().unwrap());
    let take_over = order[8] == 1;
    let die_at_once = order[9] == 1;
    let max = ring.capacity() / 2;
    let mut tx = if take_over { ring.take_over_producer()? } else { ring.into_producer()? };
    (&sock).write_all(b"R")?; // ready
    if die_at_once {
        // Holds the role, wrote nothing: leaves without closing, for a successor.
        std::mem::forget(tx);
        std::process::exit(0);
    }
    for seq in start..HELPER_RECORDS {
        let len = record_len(7, seq, max);
        let mut g = tx.write_grant_blocking(len)?;
        fill_record(&mut g[..len], 7, seq);
        g.commit(len)?;
        if seq % HELPER_BURST == HELPER_BURST - 1 {
            std::thread::sleep(Duration::from_millis(20)); // between bursts
        }
    }
    drop(tx); // a clean close: the end of the stream
    Ok(())
}

#[test]
fn service_keeps_reading_while_its_memfd_helper_is_killed_and_restarted() {
    let name = format!("mirror-ring-client-helper-{}", std::process::id());
    let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
    listener.set_nonblocking(true).unwrap();
    let ring = RingOptions::new().capacity(32 * 1024).backend(Backend::Memfd).shared().unwrap();
    let max = ring.capacity() / 2;
    let mut rx = ring.clone().into_consumer().unwrap();

    // How each incarnation ends: killed after the service has read that many records of it
    // (in the middle of a burst: during writes), killed in the pause after a burst (between
    // writes), dies right after taking over, or runs to the end.
    #[derive(Clone, Copy, Debug)]
    enum Fate {
        KillDuring(u64),
        KillBetween,
        DieAtOnce,
        Finish,
    }
    let fates = [
        Fate::KillDuring(250),
        Fate::KillBetween,
        Fate::DieAtOnce,
        Fate::KillDuring(777),
        Fate::DieAtOnce,
        Fate::KillBetween,
        Fate::Finish,
    ];
    let (mut next, mut deaths) = (0u64, 0);
    let started = Instant::now();
    for (k, fate) in fates.iter().enumerate() {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "client_helper_entry", "--nocapture", "--test-threads=1"])
            .env(HELPER_ENV, &name)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        let sock = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < until => {
                    assert!(child.try_wait().unwrap().is_none(), "helper {k} exited before connecting");
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        sock.set_nonblocking(false).unwrap();
        ring.send_to(&sock).unwrap();
        let mut order = [0u8; 10];
        order[..8].copy_from_slice(&next.to_le_bytes());
        order[8] = u8::from(k > 0);
        order[9] = u8::from(matches!(fate, Fate::DieAtOnce));
        (&sock).write_all(&order).unwrap();
        let mut ready = [0u8; 1];
        (&sock).read_exact(&mut ready).unwrap();

        let first = next;
        let mut killed = false;
        let ended = loop {
            let len = match rx.read_grant_blocking(4) {
                Ok(g) => u32::from_le_bytes(g[..4].try_into().unwrap()) as usize,
                Err(e) => break e.kind(),
            };
            let g = rx.read_grant_blocking(len).unwrap();
            check_record(&g[..len], 7, next, max);
            g.release(len).unwrap();
            next += 1;
            let kill = match *fate {
                Fate::KillDuring(n) => next - first == n,
                // The last record of a burst: the helper is now in its 20 ms pause.
                Fate::KillBetween => next - first >= 150 && next % HELPER_BURST == 0,
                _ => false,
            };
            if kill && !killed {
                child.kill().unwrap();
                killed = true;
            }
        };
        let status = child.wait().unwrap();
        match fate {
            Fate::Finish => {
                assert_eq!(ended, ErrorKind::UnexpectedEof, "min 4 at the clean end: fewer can ever come");
                assert!(status.success(), "last helper: {status}");
            }
            _ => {
                assert_eq!(ended, ErrorKind::UnexpectedEof, "incarnation {k} ({fate:?}): the death");
                // The same kind as the clean end above: a zero-byte grant tells them apart.
                let probe = rx.read_grant(0).map(|g| g.len()).map_err(|e| e.kind());
                assert_eq!(probe, Err(ErrorKind::UnexpectedEof), "incarnation {k}: a death is not an end of stream");
                assert!(rx.is_abandoned());
                deaths += 1;
            }
        }
    }
    assert_eq!(next, HELPER_RECORDS, "every record exactly once, in order");
    assert_eq!(deaths, fates.len() - 1);
    // The last helper closed: end of stream, and the role is final.
    assert!(rx.read_grant(0).unwrap().is_empty());
    assert_eq!(ring.take_over_producer().unwrap_err().kind(), ErrorKind::AlreadyExists);
    assert!(started.elapsed() < Duration::from_secs(120));
}

// ---------------------------------------------------------------------------------------------
// 4. The counters after known workloads.

// Once a defect (found by an independent client, 2026-12-03): the reader counted `woken` only
// for parks that reached the futex sleep, while the writer counts a wake-up sent for every
// clearing of the raised flag. A publish landing between the reader's raising of its flag and
// its recheck was counted by the writer and by nobody on the reader's side: on the 2-core VM,
// with the two busy threads below, e.g. parks 241, wakes_sent 241, woken 2, against the
// `Stats` example's `assert_eq!(ws.wakes_sent, rs.woken)`. The reader now lowers its flag
// with a swap and counts a park whose flag the peer cleared (`wait::lower`).
/// A ping-pong of one-byte messages over two rings with no spin budget, beside two busy
/// threads: every wait parks, and each park is ended by the peer's wake-up (while asleep, or
/// found by the recheck), so a reader's `woken` equals its writer's `wakes_sent`, nothing
/// timed out, nothing was lost.
#[test]
fn stats_of_a_parked_ping_pong_add_up() {
    // Ten runs of the workload: the old miscount needed the writer to publish inside the
    // reader's park-and-recheck window, which the busy threads make likely but not certain in
    // any one run.
    for attempt in 0..10 {
        for (what, rx, tx) in parked_ping_pong(3000) {
            assert_eq!(rx.woken, tx.wakes_sent, "attempt {attempt}, {what}: woken vs wakes_sent: rx {rx:?} tx {tx:?}");
            assert_eq!((rx.timed_out, rx.lost_wakeups, rx.peer_died), (0, 0, 0), "{what}: {rx:?}");
            assert!(rx.parks >= rx.woken, "{what}: {rx:?}");
            // The writer never waited: a 4 KiB ring never fills with one byte in flight.
            assert_eq!((tx.spins, tx.parks, tx.sleeps, tx.woken), (0, 0, 0, 0), "{what}: {tx:?}");
        }
    }
}

/// One ping-pong of `rounds` one-byte messages; returns the (reader, writer) counters of
/// both rings.
fn parked_ping_pong(rounds: u64) -> [(&'static str, mirror_ring::Stats, mirror_ring::Stats); 2] {
    let opts = {
        let mut o = RingOptions::new();
        o.capacity(4096).spin_budget(Duration::ZERO);
        o
    };
    let (mut ping_tx, mut ping_rx) = opts.build().unwrap();
    let (mut pong_tx, mut pong_rx) = opts.build().unwrap();
    // A busy machine, as a service's usually is: two threads that keep the cores occupied, so
    // that the ends are descheduled at arbitrary points of their waits.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hogs: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let server = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        for i in 0..rounds {
            ping_rx.read_exact(&mut b).unwrap();
            assert_eq!(b[0], i as u8);
            pong_tx.write_all(&b).unwrap();
        }
        (ping_rx.stats(), pong_tx.stats())
    });
    let mut b = [0u8; 1];
    for i in 0..rounds {
        ping_tx.write_all(&[i as u8]).unwrap();
        pong_rx.read_exact(&mut b).unwrap();
        assert_eq!(b[0], i as u8);
    }
    let (ping_rx_s, pong_tx_s) = server.join().unwrap();
    stop.store(true, SeqCst);
    hogs.into_iter().for_each(|h| h.join().unwrap());
    [("ping", ping_rx_s, ping_tx.stats()), ("pong", pong_rx.stats(), pong_tx_s)]
}

/// `timed_out` counts each call that returned `TimedOut` after it parked, whatever kind of
/// call; and a `StatsHandle` taken before the byte end turned
/// framed (and async) keeps seeing the same counters ("which it keeps across `into_framed`").
///
/// Each call is judged by what it did: a call whose timeout passed while it still spun (on a
/// loaded machine the thread can be descheduled past a short deadline before it parks; the
/// debug build in CI once was) returns `TimedOut` without parking and is not counted
/// (`Stats::timed_out`); one that parked is counted once.
#[test]
fn stats_timed_out_counts_every_timeout_across_conversions() {
    let (mut tx, mut rx) = mirror_ring::channel(4096).unwrap();
    let (txh, rxh) = (tx.stats_handle(), rx.stats_handle());
    // Runs one call that must time out; checks that `timed_out` moved by exactly the parks it
    // made (0 or 1: nothing wakes an idle end); returns whether it parked.
    fn judged(what: &str, stats: &dyn Fn() -> mirror_ring::Stats, call: &mut dyn FnMut() -> ErrorKind) -> u64 {
        let before = stats();
        assert_eq!(call(), ErrorKind::TimedOut, "{what}");
        let after = stats();
        let parked = after.parks - before.parks;
        assert!(parked <= 1, "{what}: {before:?} -> {after:?}");
        assert_eq!(after.timed_out - before.timed_out, parked, "{what}: {before:?} -> {after:?}");
        parked
    }
    let long = Duration::from_millis(3);
    let mut parked = 0;
    for t in [long, Duration::from_millis(1)] {
        let stats = || rxh.get();
        parked += judged("read_timeout", &stats, &mut || rx.read_timeout(&mut [0; 4], t).unwrap_err().kind());
        parked +=
            judged("read_grant_timeout", &stats, &mut || rx.read_grant_timeout(1, t).map(|_| ()).unwrap_err().kind());
        parked +=
            judged("write_to_timeout", &stats, &mut || rx.write_to_timeout(&mut Vec::new(), t).unwrap_err().kind());
        assert_eq!(rxh.get(), rx.stats());
    }
    assert!(parked > 0, "no consumer call parked: {:?}", rx.stats());
    let n = rx.stats().timed_out;
    tx.write_all(&[1; 4096]).unwrap();
    let mut parked = 0;
    for t in [long, Duration::from_millis(1)] {
        let stats = || txh.get();
        parked += judged("write_timeout", &stats, &mut || tx.write_timeout(&[1], t).unwrap_err().kind());
        parked +=
            judged("write_grant_timeout", &stats, &mut || tx.write_grant_timeout(1, t).map(|_| ()).unwrap_err().kind());
        parked += judged("read_from_timeout", &stats, &mut || {
            tx.read_from_timeout(&mut io::repeat(0), t).unwrap_err().kind()
        });
    }
    assert!(parked > 0, "no producer call parked: {:?}", tx.stats());
    let m = tx.stats().timed_out;
    // Drain, then go framed: the counters (and the handles) carry on.
    let mut sink = vec![0; 4096];
    rx.read_exact(&mut sink).unwrap();
    let (mut ftx, mut frx) = (tx.into_framed(), rx.into_framed());
    let stats = || rxh.get();
    let p = judged("recv_timeout", &stats, &mut || frx.recv_timeout(long).map(|_| ()).unwrap_err().kind());
    assert_eq!(frx.stats().timed_out, n + p);
    assert_eq!(rxh.get().timed_out, n + p, "the handle taken from the byte end: {:?}", rxh.get());
    ftx.send(&vec![0; ftx.max_frame_len()]).unwrap();
    let stats = || txh.get();
    let p = judged("send_timeout", &stats, &mut || ftx.send_timeout(&[1], long).unwrap_err().kind());
    assert_eq!(ftx.stats().timed_out, m + p);
    assert_eq!(txh.get().timed_out, m + p, "the handle taken from the byte end: {:?}", txh.get());
}

/// Across fork: a forked child that takes a dead consumer's role over starts its own counters;
/// the parent's producer, blocked on the full ring of the dead consumer, counts one death
/// (`peer_died`) and then continues when the newcomer releases space.
#[test]
fn stats_count_the_death_and_the_takeover_across_fork() {
    let ring = RingOptions::new().capacity(4096).shared().unwrap();
    let mut tx = ring.clone().into_producer().unwrap();
    let board = SharedPage::new();
    let doomed = fork_child(|| {
        let mut rx = ring.clone().into_consumer()?;
        let mut b = [0u8; 100];
        rx.read_exact(&mut b)?;
        board.word(0).store(1, SeqCst);
        std::thread::sleep(Duration::from_secs(600)); // killed here
        Ok(())
    });
    tx.write_all(&[5; 100]).unwrap();
    while board.word(0).load(SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    tx.write_all(&[6; 4096]).unwrap(); // fills the ring exactly
                                       // Kill the consumer while the producer waits for room.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        sigkill(doomed);
        reap_within(doomed, Duration::from_secs(10))
    });
    let t0 = Instant::now();
    let err = tx.write_all(&[7; 10]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(libc::WIFSIGNALED(killer.join().unwrap()));
    assert_eq!(tx.stats().peer_died, 1, "{:?}", tx.stats());
    assert!(tx.is_abandoned());
    // A newcomer, forked now, takes the role over and reads everything from the released cursor.
    let newcomer = fork_child(|| {
        let mut rx = ring.take_over_consumer()?;
        board.word(1).store(1, SeqCst);
        assert_eq!(rx.stats(), mirror_ring::Stats::default(), "a new end's counters start at zero");
        let mut all = Vec::new();
        rx.read_to_end(&mut all)?;
        let want: Vec<u8> = [vec![6; 4096], vec![7; 10]].concat();
        if all != want {
            return Err(io::Error::other(format!(
                "newcomer read {} bytes, not the {} expected",
                all.len(),
                want.len()
            )));
        }
        Ok(())
    });
    // Until the newcomer has taken over, the death stays reported; then the survivor goes on.
    while board.word(1).load(SeqCst) == 0 {
        assert_eq!(tx.try_write(&[7; 10]).unwrap_err().kind(), ErrorKind::BrokenPipe);
        std::thread::sleep(Duration::from_millis(1));
    }
    tx.write_all(&[7; 10]).unwrap(); // waits for the newcomer to release space
    assert_eq!(tx.stats().peer_died, 1, "{:?}", tx.stats());
    drop(tx);
    assert_eq!(reap_within(newcomer, Duration::from_secs(30)), 0);
}

// ---------------------------------------------------------------------------------------------
// 5. Documented bounds: timeouts, peer death, close-and-drain, errors.

/// "A dead peer process reaches an async end as it reaches a blocking one (`UnexpectedEof`
/// for the reader, `BrokenPipe` for the writer, within about 25 ms)"; and an async read with a
/// tokio timeout returns when the timeout says (nothing blocks the runtime's thread).
#[cfg(feature = "tokio")]
#[test]
fn async_ends_see_a_killed_peer_within_the_documented_bound() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    // A reader whose producer is killed mid-stream, and a writer whose consumer is.
    let r1 = RingOptions::new().capacity(4096).shared().unwrap();
    let r2 = RingOptions::new().capacity(4096).shared().unwrap();
    let rx = r1.clone().into_consumer().unwrap();
    let tx = r2.clone().into_producer().unwrap();
    let p = fork_child(|| {
        let mut tx = r1.clone().into_producer()?;
        tx.write_all(b"last words")?;
        std::thread::sleep(Duration::from_secs(600));
        Ok(())
    });
    let c = fork_child(|| {
        let _rx = r2.clone().into_consumer()?;
        std::thread::sleep(Duration::from_secs(600));
        Ok(())
    });
    rt.block_on(async {
        let (mut rx, mut tx) = (rx.into_async().unwrap(), tx.into_async().unwrap());
        let mut buf = [0u8; 10];
        rx.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"last words");
        // Nothing comes: the runtime's own timer bounds the read.
        let t = Instant::now();
        assert!(tokio::time::timeout(Duration::from_millis(30), rx.read(&mut buf)).await.is_err());
        assert!(t.elapsed() < Duration::from_millis(300));
        tx.write_all(&[0; 4096]).await.unwrap(); // fills the ring
        let (t_read, t_write) = tokio::join!(
            async {
                let t = Instant::now();
                let e = rx.read(&mut buf).await.unwrap_err();
                (e.kind(), t.elapsed())
            },
            async {
                let t = Instant::now();
                let e = tx.write_all(&[1]).await.unwrap_err();
                (e.kind(), t.elapsed())
            },
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                sigkill(p);
                sigkill(c);
            }
        )
        .into_pick();
        assert_eq!(t_read.0, ErrorKind::UnexpectedEof);
        assert_eq!(t_write.0, ErrorKind::BrokenPipe);
        // 20 ms until the kill, 25 ms documented: ten times that is generous.
        assert!(t_read.1 < Duration::from_millis(20 + 250), "reader saw the death after {:?}", t_read.1);
        assert!(t_write.1 < Duration::from_millis(20 + 250), "writer saw the death after {:?}", t_write.1);
    });
    assert!(libc::WIFSIGNALED(reap_within(p, Duration::from_secs(10))));
    assert!(libc::WIFSIGNALED(reap_within(c, Duration::from_secs(10))));
}

#[cfg(feature = "tokio")]
trait IntoPick<A, B> {
    fn into_pick(self) -> (A, B);
}
#[cfg(feature = "tokio")]
impl<A, B> IntoPick<A, B> for (A, B, ()) {
    fn into_pick(self) -> (A, B) {
        (self.0, self.1)
    }
}

/// Blocking calls with a timeout, between processes, against a live peer that does nothing:
/// each returns `TimedOut` no earlier than asked and within ten times the timeout plus the
/// documented safety interval.
#[test]
fn timeouts_between_processes_return_within_their_bound() {
    let ring = RingOptions::new().capacity(4096).shared().unwrap();
    let board = SharedPage::new();
    let idle = fork_child(|| {
        let _tx = ring.clone().into_producer()?;
        board.word(0).store(1, SeqCst);
        while board.word(0).load(SeqCst) != 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(()) // closes
    });
    let mut rx = ring.clone().into_consumer().unwrap();
    while board.word(0).load(SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    for ms in [1u64, 30, 120] {
        let d = Duration::from_millis(ms);
        let t = Instant::now();
        assert_eq!(rx.read_timeout(&mut [0; 8], d).unwrap_err().kind(), ErrorKind::TimedOut);
        let took = t.elapsed();
        assert!(took >= d && took < d * 10 + Duration::from_millis(100), "read_timeout({d:?}) took {took:?}");
        let t = Instant::now();
        assert_eq!(rx.read_grant_timeout(8, d).map(|_| ()).unwrap_err().kind(), ErrorKind::TimedOut);
        let took = t.elapsed();
        assert!(took >= d && took < d * 10 + Duration::from_millis(100), "read_grant_timeout({d:?}) took {took:?}");
    }
    // The counters of those six waits on a live, idle peer: each parked at most once (one
    // barrier at most), slept in bounded sleeps (the 25 ms watch interval), ended by its own
    // timeout; nothing woke it, nothing was lost, nobody died. (A 1 ms wait may time out
    // before it parks, on a loaded machine or in a debug build: then it counts nothing. The
    // longer ones park.)
    let st = rx.stats();
    assert_eq!((st.timed_out, st.woken, st.lost_wakeups, st.peer_died), (st.parks, 0, 0, 0), "{st:?}");
    assert!((4..=6).contains(&st.parks) && st.barriers <= st.parks, "{st:?}");
    assert!(st.sleep_timeouts <= st.sleeps, "{st:?}");
    // 2 x (1 + 30 + 120) ms of waiting in sleeps of at most 25 ms: at least 12 sleeps.
    assert!(st.sleeps >= 12, "{st:?}");
    board.word(0).store(2, SeqCst);
    // Close-and-drain: the clean close is an end of stream, not an error.
    assert_eq!(rx.read_timeout(&mut [0; 8], Duration::from_secs(10)).unwrap(), 0);
    assert_eq!(reap_within(idle, Duration::from_secs(10)), 0);
}

/// "Dropping the producer publishes every pending frame and closes the ring": a forked
/// producer with `set_batch` leaves frames pending, drops its end and exits; every frame
/// arrives, then `None`. And a producer that exits without dropping loses only unpublished
/// frames: what it flushed arrives, then `UnexpectedEof`. (The frame it sent after its flush
/// may arrive too: a batch ends early when the consumer sleeps, so that a parked consumer is
/// not kept waiting for a batch to fill; the debug build in CI once saw it.)
#[test]
fn framed_close_and_drain_across_fork_with_pending_batches() {
    for clean in [true, false] {
        let ring = RingOptions::new().capacity(1 << 16).shared().unwrap();
        let mut rx = ring.clone().into_consumer().unwrap().into_framed();
        let pid = fork_child(|| {
            let mut tx = ring.clone().into_producer()?.into_framed();
            tx.set_batch(64);
            for seq in 0..1000u64 {
                tx.send(&make_record(9, seq, 512))?;
            }
            if clean {
                drop(tx);
            } else {
                tx.flush()?;
                tx.send(&make_record(9, 1000, 512))?; // pending, never published
                std::mem::forget(tx);
            }
            Ok(())
        });
        let mut seq = 0;
        let end = loop {
            match rx.recv() {
                Ok(Some(f)) => {
                    check_record(&f, 9, seq, 512);
                    seq += 1;
                }
                Ok(None) => break None,
                Err(e) => break Some(e.kind()),
            }
        };
        assert_eq!(reap_within(pid, Duration::from_secs(30)), 0);
        if clean {
            assert_eq!(seq, 1000, "every frame, the pending ones too");
        } else {
            assert!(seq == 1000 || seq == 1001, "the flushed frames, and perhaps the last: {seq}");
        }
        assert_eq!(end, if clean { None } else { Some(ErrorKind::UnexpectedEof) }, "clean {clean}");
    }
}

/// Errors carry the OS error: a ring sent over a socket whose peer is gone fails with the
/// errno of `sendmsg`; a ring whose creation exceeds `RLIMIT_AS` fails with `OutOfMemory`
/// naming the limit, `ENOMEM` as `source()`.
#[test]
fn errors_carry_the_os_error() {
    let ring = RingOptions::new().backend(Backend::Memfd).capacity(4096).shared().unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    drop(b);
    let e = ring.send_to(&a).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPIPE), "{e:?}");
    let e = RingOptions::new().backend(Backend::Duplicate).shared().unwrap().send_to(&a).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e:?}");

    let pid = fork_child(|| {
        let lim = libc::rlimit { rlim_cur: 1 << 30, rlim_max: libc::RLIM_INFINITY };
        // SAFETY: a valid rlimit, in this child only.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) }, 0);
        let e = RingOptions::new().capacity(1 << 30).build().map(|_| ()).unwrap_err();
        let src =
            std::error::Error::source(&e).and_then(|s| s.downcast_ref::<io::Error>()).and_then(io::Error::raw_os_error);
        let errno = e.raw_os_error().or(src);
        if e.kind() != ErrorKind::OutOfMemory || !e.to_string().contains("RLIMIT_AS") || errno != Some(libc::ENOMEM) {
            return Err(io::Error::other(format!("unexpected: {e:?} (errno {errno:?})")));
        }
        Ok(())
    });
    assert_eq!(reap_within(pid, Duration::from_secs(30)), 0);
}

// ---------------------------------------------------------------------------------------------
// 6. Take-over under fire: many kills at random moments, in every way of sending and with the
//    consumer's role changing hands too.

/// A forked framed producer is SIGKILLed 40 times at random moments (while sending one at a
/// time, with `set_batch`, with `send_batch`, or building frames in place with `reserve`, some
/// of them dropped uncommitted), with frames up to the longest; each time the parent, a
/// blocking framed consumer (`recv` or `recv_batch`), drains what was committed, sees
/// `UnexpectedEof`, and forks a replacement that takes the role over and resumes after the
/// last record received. Exactly once, in order, intact.
#[test]
fn framed_producer_killed_at_random_moments_in_every_send_mode_loses_and_repeats_nothing() {
    const RECORDS: u64 = 200_000;
    const KILLS: usize = 40;
    // One record in eight is within 64 bytes of the longest frame (`capacity - 8`): frames
    // that fill the ring to the byte.
    const MAX: usize = 8192 - 8;
    let ring = RingOptions::new().capacity(8192).shared().unwrap();
    let mut rx = ring.clone().into_consumer().unwrap().into_framed();
    let board = SharedPage::new(); // holdings of the producer role so far

    fn producer(ring: &SharedRing, start: u64, k: usize, board: &SharedPage) -> io::Result<()> {
        let tx = if k == 0 { ring.clone().into_producer()? } else { ring.take_over_producer()? };
        board.word(0).fetch_add(1, SeqCst);
        let mut tx = tx.into_framed();
        let mut seq = start;
        match k % 4 {
            0 => {
                while seq < RECORDS {
                    tx.send(&make_record(4, seq, MAX))?;
                    seq += 1;
                }
            }
            1 => {
                tx.set_batch(8);
                while seq < RECORDS {
                    tx.send(&make_record(4, seq, MAX))?;
                    seq += 1;
                }
            }
            2 => {
                while seq < RECORDS {
                    let msgs: Vec<Vec<u8>> = (seq..RECORDS.min(seq + 16)).map(|s| make_record(4, s, MAX)).collect();
                    let mut rest = &msgs[..];
                    while !rest.is_empty() {
                        let n = tx.send_batch(rest)?;
                        rest = &rest[n..];
                        seq += n as u64;
                    }
                }
            }
            _ => {
                while seq < RECORDS {
                    if seq % 7 == 0 {
                        // Reserved at the largest size and abandoned: sends nothing.
                        let mut g = tx.reserve(MAX)?;
                        g.fill(0xEE);
                        drop(g);
                    }
                    let len = record_len(4, seq, MAX);
                    let mut g = tx.reserve(MAX)?;
                    fill_record(&mut g[..len], 4, seq);
                    g.truncate(len);
                    g.commit()?;
                    seq += 1;
                }
            }
        }
        Ok(())
    }

    // The kills come from this thread, between receives (`recv_timeout`), so that no signal
    // can reach a pid after it was reaped.
    let mut rng = Rng(0xC0FFEE);
    let mut pid = fork_child(|| producer(&ring, 0, 0, &board));
    wait_past(board.word(0), 0, "first producer");
    let mut kill_at = Some(Instant::now() + Duration::from_micros(rng.below(4000)));
    let (mut next, mut deaths) = (0u64, 0usize);
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(120), "stuck at record {next} after {deaths} deaths");
        if kill_at.is_some_and(|t| Instant::now() >= t) {
            sigkill(pid);
            kill_at = None;
        }
        // Odd holdings are read in batches, even ones a frame at a time.
        let got = if deaths % 2 == 1 {
            rx.recv_batch_timeout(Duration::from_micros(500), |f| {
                check_record(f, 4, next, MAX);
                next += 1;
            })
            .map(|n| (n > 0).then_some(()))
        } else {
            rx.recv_timeout(Duration::from_micros(500)).map(|f| {
                f.map(|f| {
                    check_record(&f, 4, next, MAX);
                    next += 1;
                })
            })
        };
        match got {
            Ok(Some(())) => {}
            Ok(None) => break,
            Err(e) if e.kind() == ErrorKind::TimedOut => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                deaths += 1;
                let st = reap_within(pid, Duration::from_secs(10));
                assert!(libc::WIFSIGNALED(st), "producer {deaths} was not killed but ended with {st:#x}");
                let holdings = board.word(0).load(SeqCst);
                pid = fork_child(|| producer(&ring, next, deaths, &board));
                wait_past(board.word(0), holdings, "replacement producer");
                if deaths < KILLS {
                    kill_at = Some(Instant::now() + Duration::from_micros(rng.below(4000)));
                }
            }
            Err(e) => panic!("after {next} records, {deaths} deaths: {e} ({:?})", e.kind()),
        }
    }
    // The last producer closed (a kill may still have reached it after its close).
    reap_within(pid, Duration::from_secs(30));
    assert_eq!(next, RECORDS);
    eprintln!("{deaths} producers killed at random moments");
    assert!(deaths >= KILLS / 2, "only {deaths} kills landed before the end");
}

/// The other direction: the parent sends framed records; forked consumers (async framed
/// consumers on their own runtimes) are killed at random moments and replaced by take-over.
/// At least once: each consumer's first record is no later than one past the last record any
/// consumer saw (no gap), every consumer sees a gap-free run, frames stay whole and aligned,
/// and the producer (blocked or not) goes on once the newcomer holds the role.
#[cfg(feature = "tokio")]
#[test]
fn framed_consumers_killed_at_random_moments_get_every_record_at_least_once() {
    const RECORDS: u64 = 100_000;
    const KILLS: usize = 25;
    const MAX: usize = 1200;
    let ring = RingOptions::new().capacity(8192).shared().unwrap();
    let mut tx = ring.clone().into_producer().unwrap().into_framed();
    // 0: holdings of the consumer role; 1: one past the highest record seen; 2: gaps;
    // 3: records seen again; 4: failures in a consumer.
    let board = SharedPage::new();

    fn consumer(ring: &SharedRing, k: usize, board: &SharedPage) -> io::Result<()> {
        let rx = if k == 0 { ring.clone().into_consumer()? } else { ring.take_over_consumer()? };
        board.word(0).fetch_add(1, SeqCst);
        let rt = tokio::runtime::Builder::new_current_thread().build()?;
        rt.block_on(async {
            let mut rx = rx.into_framed().into_async()?;
            let mut expect: Option<u64> = None;
            while let Some(f) = rx.recv().await? {
                let seq = u64::from(u32::from_le_bytes(f[4..8].try_into().unwrap()));
                if let Some(e) = expect {
                    if seq != e {
                        board.word(4).fetch_add(1, SeqCst);
                        return Err(io::Error::other(format!("consumer {k}: record {seq}, expected {e}")));
                    }
                }
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_record(&f, 6, seq, MAX)));
                if r.is_err() {
                    board.word(4).fetch_add(1, SeqCst);
                    return Err(io::Error::other(format!("consumer {k}: record {seq} corrupt")));
                }
                let done = board.word(1).load(SeqCst);
                if seq > done {
                    board.word(2).fetch_add(1, SeqCst);
                } else if seq < done {
                    board.word(3).fetch_add(1, SeqCst);
                }
                board.word(1).store(done.max(seq + 1), SeqCst);
                expect = Some(seq + 1);
                // Some work per record, so that the ring is full and the consumer has taken
                // frames it has not yet given back when it is killed.
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(3) {
                    std::hint::spin_loop();
                }
            }
            Ok(())
        })
    }

    let mut pid = fork_child(|| consumer(&ring, 0, &board));
    wait_past(board.word(0), 0, "first consumer");
    let mut rng = Rng(0xBADC0DE);
    let (mut kills, mut broken) = (0usize, 0u64);
    let mut seq = 0u64;
    let mut next_kill = Instant::now() + Duration::from_micros(rng.below(4000));
    let t0 = Instant::now();
    while seq < RECORDS {
        assert!(t0.elapsed() < Duration::from_secs(120), "stuck at record {seq} after {kills} kills");
        if kills < KILLS && Instant::now() >= next_kill {
            sigkill(pid);
            let st = reap_within(pid, Duration::from_secs(10));
            assert!(libc::WIFSIGNALED(st), "consumer {kills} failed on its own: {st:#x}");
            kills += 1;
            let holdings = board.word(0).load(SeqCst);
            pid = fork_child(|| consumer(&ring, kills, &board));
            wait_past(board.word(0), holdings, "replacement consumer");
            next_kill = Instant::now() + Duration::from_micros(rng.below(4000));
        }
        match tx.send_timeout(&make_record(6, seq, MAX), Duration::from_millis(2)) {
            Ok(()) => seq += 1,
            Err(e) if e.kind() == ErrorKind::TimedOut => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => broken += 1,
            Err(e) => panic!("record {seq}: {e} ({:?})", e.kind()),
        }
    }
    drop(tx);
    assert_eq!(reap_within(pid, Duration::from_secs(30)), 0, "the last consumer");
    let (done, gaps, again, fails) = (
        board.word(1).load(SeqCst),
        board.word(2).load(SeqCst),
        board.word(3).load(SeqCst),
        board.word(4).load(SeqCst),
    );
    eprintln!("{kills} kills, {again} records seen again, {broken} BrokenPipe");
    assert_eq!((done, gaps, fails), (RECORDS, 0, 0));
}

/// The same counters for async ends of a thread ring: every park of the async reader ends by
/// the writer's wake (`woken`, "the flag was found cleared by the peer") and every wake the
/// writer sent went to a parked reader; and a `StatsHandle` taken before `into_async` keeps
/// seeing the async end's counters.
#[cfg(feature = "tokio")]
#[test]
fn stats_of_an_async_ping_pong_add_up() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const ROUNDS: u64 = 300;
    let opts = {
        let mut o = RingOptions::new();
        o.capacity(4096).spin_budget(Duration::ZERO);
        o
    };
    let (ping_tx, ping_rx) = opts.build().unwrap();
    let (pong_tx, pong_rx) = opts.build().unwrap();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let (mut ping_rx, mut pong_tx) = (ping_rx.into_async().unwrap(), pong_tx.into_async().unwrap());
            let mut b = [0u8; 1];
            for _ in 0..ROUNDS {
                ping_rx.read_exact(&mut b).await.unwrap();
                pong_tx.write_all(&b).await.unwrap();
            }
            (ping_rx.stats(), pong_tx.stats())
        })
    });
    // Handles taken from the blocking ends before they turned async, for a monitoring thread.
    let (ping_tx_h, pong_rx_h) = (ping_tx.stats_handle(), pong_rx.stats_handle());
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let (ping_tx_s, pong_rx_s) = rt.block_on(async {
        let (mut ping_tx, mut pong_rx) = (ping_tx.into_async().unwrap(), pong_rx.into_async().unwrap());
        let mut b = [0u8; 1];
        for i in 0..ROUNDS {
            ping_tx.write_all(&[i as u8]).await.unwrap();
            pong_rx.read_exact(&mut b).await.unwrap();
            assert_eq!(b[0], i as u8);
        }
        (ping_tx.stats(), pong_rx.stats())
    });
    let (ping_rx_s, pong_tx_s) = server.join().unwrap();
    for (what, rx, tx) in [("ping", ping_rx_s, ping_tx_s), ("pong", pong_rx_s, pong_tx_s)] {
        assert_eq!((rx.timed_out, rx.lost_wakeups, rx.peer_died), (0, 0, 0), "{what}: {rx:?}");
        // Every park was ended by the writer's wake (the flag found cleared), or by the end of
        // a sleep that had to be cut to the rest of a millisecond (no barrier yet) and was
        // counted in `sleep_timeouts`: the identity of the `Stats` example holds up to those.
        assert!(
            rx.woken <= tx.wakes_sent && tx.wakes_sent <= rx.woken + rx.sleep_timeouts,
            "{what}: rx {rx:?} tx {tx:?}"
        );
    }
    assert!(pong_rx_s.parks > 0);
    assert_eq!(pong_rx_h.get(), pong_rx_s, "a handle taken before into_async sees the async end's counters");
    assert_eq!(ping_tx_h.get(), ping_tx_s, "a handle taken before into_async sees the async end's counters");
}

// ---------------------------------------------------------------------------------------------
// 7. Smaller promises a client leans on.

/// `is_abandoned` "runs the same check (at most once per millisecond)": a reaped producer is
/// reported within ten times that (plus scheduling), and once a newcomer has taken the role
/// over, the consumer is no longer abandoned and reads on.
#[test]
fn is_abandoned_follows_death_and_takeover() {
    let ring = RingOptions::new().capacity(4096).shared().unwrap();
    let rx = ring.clone().into_consumer().unwrap();
    let board = SharedPage::new();
    let p = fork_child(|| {
        let _tx = ring.clone().into_producer()?;
        board.word(0).store(1, SeqCst);
        std::thread::sleep(Duration::from_secs(600));
        Ok(())
    });
    wait_past(board.word(0), 0, "producer");
    assert!(!rx.is_abandoned());
    sigkill(p);
    assert!(libc::WIFSIGNALED(reap_within(p, Duration::from_secs(10))));
    let t = Instant::now();
    while !rx.is_abandoned() {
        assert!(t.elapsed() < Duration::from_millis(100), "death not reported by is_abandoned");
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut rx = rx;
    let q = fork_child(|| {
        let mut tx = ring.take_over_producer()?;
        board.word(0).store(2, SeqCst);
        tx.write_all(b"after")?;
        std::thread::sleep(Duration::from_millis(50));
        Ok(())
    });
    wait_past(board.word(0), 1, "newcomer");
    assert!(!rx.is_abandoned(), "taken over: the producer is back");
    let mut s = String::new();
    rx.read_to_string(&mut s).unwrap();
    assert_eq!(s, "after");
    assert_eq!(reap_within(q, Duration::from_secs(10)), 0);
}

/// "No peer yet ... a blocking call just waits: the timeout variants exist for that": a
/// consumer of a ring whose producer never claims its role times out as asked, and a framed
/// one too.
#[test]
fn timeouts_hold_before_the_peer_has_claimed_its_role() {
    let ring = RingOptions::new().capacity(4096).shared().unwrap();
    let mut rx = ring.clone().into_consumer().unwrap();
    for ms in [5u64, 60] {
        let d = Duration::from_millis(ms);
        let t = Instant::now();
        assert_eq!(rx.read_timeout(&mut [0; 8], d).unwrap_err().kind(), ErrorKind::TimedOut);
        assert!(t.elapsed() >= d && t.elapsed() < d * 10 + Duration::from_millis(100), "{:?}", t.elapsed());
    }
    assert!(!rx.is_abandoned());
    let mut rx = rx.into_framed();
    let t = Instant::now();
    assert_eq!(rx.recv_timeout(Duration::from_millis(30)).map(|_| ()).unwrap_err().kind(), ErrorKind::TimedOut);
    assert!(t.elapsed() < Duration::from_millis(400));
}

/// A ring kept out of children (`dont_fork`) but made on a memfd: a forked helper cannot use
/// its copy of the handle, but it can attach to the ring through the descriptor it inherited,
/// as an unrelated process would ("Forked children inherit the memfd as any descriptor, also
/// from a ring made with `dont_fork`").
#[test]
fn dont_fork_memfd_ring_reached_by_a_forked_helper_through_its_descriptor() {
    let ring = RingOptions::new().capacity(8192).backend(Backend::Memfd).dont_fork(true).shared().unwrap();
    let mut rx = ring.clone().into_consumer().unwrap();
    let pid = fork_child(|| {
        let copy = ring.clone();
        let e = copy.clone().into_producer().unwrap_err();
        if e.kind() != ErrorKind::Unsupported {
            return Err(io::Error::other(format!("claim through the inert copy: {e:?}")));
        }
        let fd = copy.as_fd().ok_or_else(|| io::Error::other("as_fd: None in the child"))?.try_clone_to_owned()?;
        let attached = SharedRing::from_fd(fd)?;
        let mut tx = attached.into_producer()?;
        for seq in 0..500 {
            tx.write_all(&make_record(8, seq, 4096))?;
        }
        Ok(())
    });
    for seq in 0..500 {
        let len = {
            let g = rx.read_grant_blocking(4).unwrap();
            u32::from_le_bytes(g[..4].try_into().unwrap()) as usize
        };
        let g = rx.read_grant_blocking(len).unwrap();
        check_record(&g[..len], 8, seq, 4096);
        g.release(len).unwrap();
    }
    assert_eq!(rx.read(&mut [0; 1]).unwrap(), 0);
    assert_eq!(reap_within(pid, Duration::from_secs(30)), 0);
}

/// An async parser that needs whole records waits with `AsyncConsumer::read_grant(min)`: while
/// the writer takes 100 ms to finish a record, the reader's task is parked (polled a handful of
/// times), then gets the whole record in one slice of the ring. (This client first had only
/// `fill_buf`, which returns as soon as one byte is readable: it returned the same half record
/// 4.6 million times in those 100 ms, a core spent spinning. `read_grant` was added for it.)
#[cfg(feature = "tokio")]
#[test]
fn async_parser_waits_parked_for_the_rest_of_a_record() {
    use std::future::Future;
    // No spin budget: the first wait parks at once (with the default budget an async wait first
    // retries, yielding, for 50 µs: a hundred polls or so).
    let (mut tx, rx) = RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).build().unwrap();
    let rec = make_record(1, 0, 1000);
    let writer = std::thread::spawn(move || {
        tx.write_all(&rec[..rec.len() / 2]).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        tx.write_all(&rec[rec.len() / 2..]).unwrap();
        tx.write_all(&[0; 3]).unwrap(); // and the start of the next record, never finished
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let polls = rt.block_on(async {
        let mut rx = rx.into_async().unwrap();
        let len = u32::from_le_bytes(rx.read_grant(4).await.unwrap()[..4].try_into().unwrap()) as usize;
        let mut polls = 0u32;
        {
            let mut whole = std::pin::pin!(rx.read_grant(len));
            let grant = std::future::poll_fn(|cx| {
                polls += 1;
                whole.as_mut().poll(cx)
            })
            .await
            .unwrap();
            assert_eq!(check_record(&grant, 1, 0, 1000), len);
            grant.release(len).unwrap();
        }
        // The writer closes with 3 bytes of a record: fewer than asked for can ever come.
        let err = rx.read_grant(16).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
        assert_eq!(rx.read_grant(3).await.unwrap().len(), 3, "the bytes left stay readable");
        assert!(rx.stats().parks >= 1, "{:?}", rx.stats());
        polls
    });
    writer.join().unwrap();
    // Parked while it waited: a poll or two per wake-up, not a spin.
    assert!(polls <= 10, "read_grant was polled {polls} times while the record was incomplete");
}

/// A service whose async ends between processes are parked (so this process runs the crate's
/// helper and peer-poll threads) forks a worker that uses async ends between processes of its
/// own: the child has none of those threads ("A forked child does not get the threads"), and
/// its parked tasks must still be woken by a publish from another process and by a peer's
/// death.
#[cfg(feature = "tokio")]
#[test]
fn async_ends_in_a_child_forked_from_a_process_with_parked_async_ends() {
    use tokio::io::AsyncReadExt;
    // Parent side: an async reader parked on a ring whose producer (a child) is idle.
    let idle_ring = RingOptions::new().capacity(4096).shared().unwrap();
    let board = SharedPage::new();
    let idle = fork_child(|| {
        let _tx = idle_ring.clone().into_producer()?;
        board.word(0).store(1, SeqCst);
        std::thread::sleep(Duration::from_secs(600));
        Ok(())
    });
    wait_past(board.word(0), 0, "idle producer");
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let mut parked = idle_ring.clone().into_consumer().unwrap().into_async().unwrap();
    rt.block_on(async {
        let mut b = [0u8; 1];
        // Parks (the helpers and the peer-poll thread start), then is cancelled; the end stays.
        assert!(tokio::time::timeout(Duration::from_millis(50), parked.read(&mut b)).await.is_err());
    });

    // The worker's two rings: one the parent writes to late, one whose producer gets killed.
    let late = RingOptions::new().capacity(4096).shared().unwrap();
    let doomed = RingOptions::new().capacity(4096).shared().unwrap();
    let victim = fork_child(|| {
        let mut tx = doomed.clone().into_producer()?;
        tx.write_all(b"x")?;
        board.word(1).store(1, SeqCst);
        std::thread::sleep(Duration::from_secs(600));
        Ok(())
    });
    wait_past(board.word(1), 0, "doomed producer");
    let worker = fork_child(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
        rt.block_on(async {
            let mut late_rx = late.clone().into_consumer()?.into_async()?;
            let mut doomed_rx = doomed.clone().into_consumer()?.into_async()?;
            board.word(1).store(2, SeqCst);
            let t = Instant::now();
            let mut got = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), late_rx.read_to_end(&mut got))
                .await
                .map_err(|_| io::Error::other("a publish from the parent never woke the worker's task"))??;
            if got != b"late data" {
                return Err(io::Error::other(format!("got {got:?}")));
            }
            let woke_after = t.elapsed();
            let mut b = [0u8; 2];
            let n = doomed_rx.read(&mut b).await?;
            let t = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(5), doomed_rx.read(&mut b)).await;
            match r {
                Err(_) => Err(io::Error::other("the producer's death never reached the worker's task")),
                Ok(Err(e)) if e.kind() == ErrorKind::UnexpectedEof && n == 1 => {
                    eprintln!("worker: woken after {woke_after:?}, death seen after {:?}", t.elapsed());
                    if t.elapsed() > Duration::from_millis(1000) {
                        return Err(io::Error::other(format!("death seen after {:?}", t.elapsed())));
                    }
                    Ok(())
                }
                Ok(other) => Err(io::Error::other(format!("unexpected: {other:?} (first read {n})"))),
            }
        })
    });
    wait_past(board.word(1), 1, "worker");
    let mut tx = late.clone().into_producer().unwrap();
    std::thread::sleep(Duration::from_millis(100)); // the worker's task is parked by now
    tx.write_all(b"late data").unwrap();
    drop(tx);
    std::thread::sleep(Duration::from_millis(100));
    sigkill(victim);
    assert!(libc::WIFSIGNALED(reap_within(victim, Duration::from_secs(10))));
    assert_eq!(reap_within(worker, Duration::from_secs(30)), 0, "the worker");
    sigkill(idle);
    reap_within(idle, Duration::from_secs(10));
    drop(parked);
}

/// An async end kept in a pool outlives the runtime it last parked on: used again on a new
/// runtime, it is woken by the next publish (thread ring and ring between processes), and
/// the peer's close ends its stream.
#[cfg(feature = "tokio")]
#[test]
fn async_end_parked_on_a_dropped_runtime_works_on_the_next_one() {
    use tokio::io::AsyncReadExt;
    let shared = RingOptions::new().capacity(4096).shared().unwrap();
    let go = SharedPage::new();
    let producer = fork_child(|| {
        let mut tx = shared.clone().into_producer()?;
        wait_past(go.word(0), 0, "parent");
        tx.write_all(b"from a process")?;
        Ok(())
    });
    let (mut thread_tx, thread_rx) = mirror_ring::channel(4096).unwrap();
    let mut ends = vec![thread_rx.into_async().unwrap(), shared.clone().into_consumer().unwrap().into_async().unwrap()];
    {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            for end in &mut ends {
                let mut b = [0u8; 1];
                assert!(tokio::time::timeout(Duration::from_millis(30), end.read(&mut b)).await.is_err());
            }
        });
    } // the runtime is gone; the ends keep their registrations
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        thread_tx.write_all(b"from a thread").unwrap();
        go.word(0).store(1, SeqCst);
        go
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let got = rt.block_on(async {
        let mut got = Vec::new();
        for end in &mut ends {
            let mut s = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), end.read_to_end(&mut s)).await.expect("never woken").unwrap();
            got.push(s);
        }
        got
    });
    let _go = writer.join().unwrap();
    assert_eq!(got, [b"from a thread".to_vec(), b"from a process".to_vec()]);
    assert_eq!(reap_within(producer, Duration::from_secs(10)), 0);
}

/// A service with a deadline on every call: each async `send`, `send_batch`, `reserve` and
/// `recv` runs under a short `tokio::time::timeout`, and a call that timed out is simply made
/// again. "Dropping a pending send sends nothing", "Dropping a pending call sends nothing",
/// "dropping the grant, or the pending call, sends nothing", "Dropping a pending recv loses
/// nothing": so every record arrives exactly once, in order, across processes.
#[cfg(feature = "tokio")]
#[test]
fn async_framed_calls_under_deadlines_send_and_receive_each_record_once() {
    const RECORDS: u64 = 20_000;
    const MAX: usize = 3000;
    let ring = RingOptions::new().capacity(8192).shared().unwrap();
    let consumer = fork_child(|| {
        let rx = ring.clone().into_consumer()?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
        rt.block_on(async {
            let mut rx = rx.into_framed().into_async()?;
            let (mut next, mut cancelled) = (0u64, 0u64);
            let mut rng = Rng(77);
            loop {
                let d = Duration::from_micros(20 + rng.below(300));
                match tokio::time::timeout(d, rx.recv()).await {
                    Err(_) => cancelled += 1,
                    Ok(Ok(Some(f))) => {
                        let seq = u64::from(u32::from_le_bytes(f[4..8].try_into().unwrap()));
                        if seq != next {
                            return Err(io::Error::other(format!("record {seq}, expected {next}")));
                        }
                        check_record(&f, 12, seq, MAX);
                        next += 1;
                        if rng.below(50) == 0 {
                            drop(f);
                            tokio::time::sleep(Duration::from_millis(1)).await; // fall behind
                        }
                    }
                    Ok(Ok(None)) => break,
                    Ok(Err(e)) => return Err(e),
                }
            }
            eprintln!("consumer: {next} records, {cancelled} recv calls cancelled");
            if next != RECORDS {
                return Err(io::Error::other(format!("{next} of {RECORDS} records")));
            }
            Ok(())
        })
    });
    let tx = ring.clone().into_producer().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let cancelled = rt.block_on(async {
        let mut tx = tx.into_framed().into_async().unwrap();
        let (mut seq, mut cancelled) = (0u64, 0u64);
        let mut rng = Rng(99);
        while seq < RECORDS {
            let d = Duration::from_micros(20 + rng.below(300));
            match seq % 3 {
                0 => {
                    let rec = make_record(12, seq, MAX);
                    match tokio::time::timeout(d, tx.send(&rec)).await {
                        Ok(r) => {
                            r.unwrap();
                            seq += 1;
                        }
                        Err(_) => cancelled += 1,
                    }
                }
                1 => {
                    let msgs: Vec<Vec<u8>> = (seq..RECORDS.min(seq + 5)).map(|s| make_record(12, s, MAX)).collect();
                    match tokio::time::timeout(d, tx.send_batch(&msgs)).await {
                        Ok(r) => seq += r.unwrap() as u64,
                        Err(_) => cancelled += 1,
                    }
                }
                _ => {
                    let len = record_len(12, seq, MAX);
                    let fut = async {
                        let mut g = tx.reserve(len).await?;
                        fill_record(&mut g, 12, seq);
                        g.commit()
                    };
                    match tokio::time::timeout(d, fut).await {
                        Ok(r) => {
                            r.unwrap();
                            seq += 1;
                        }
                        Err(_) => cancelled += 1,
                    }
                }
            }
        }
        cancelled
    });
    eprintln!("producer: {cancelled} calls cancelled");
    assert_eq!(reap_within(consumer, Duration::from_secs(60)), 0);
}

/// `examples/supervisor.rs` with an async producer: the parent streams 8-byte counters with
/// an `AsyncProducer` (tokio) while forked workers, blocking consumers that release a batch
/// only once it is processed, are SIGKILLed at random moments and replaced at once by
/// take-over. The parked async writer must go on each time (after `BrokenPipe`, or without
/// ever seeing the death), and every counter must reach a worker, gap-free, at least once.
#[cfg(feature = "tokio")]
#[test]
fn async_producer_streams_on_while_its_workers_are_killed_and_replaced() {
    use tokio::io::AsyncWriteExt;
    const TOTAL: u64 = 2_000_000;
    const KILLS: usize = 20;
    let ring = RingOptions::new().capacity(16 * 1024).shared().unwrap();
    // 0: holdings; 1: one past the highest counter processed; 2: gaps; 3: seen again.
    let board = SharedPage::new();
    fn worker(ring: &SharedRing, k: usize, board: &SharedPage) -> io::Result<()> {
        let mut rx = if k == 0 { ring.clone().into_consumer()? } else { ring.take_over_consumer()? };
        board.word(0).fetch_add(1, SeqCst);
        loop {
            let buf = rx.fill_buf()?;
            if buf.is_empty() {
                return Ok(());
            }
            if buf.len() % 8 != 0 {
                return Err(io::Error::other(format!("a torn record: {} bytes readable", buf.len())));
            }
            for rec in buf.chunks_exact(8) {
                let c = u64::from_le_bytes(rec.try_into().unwrap());
                let done = board.word(1).load(SeqCst);
                if c > done {
                    board.word(2).fetch_add(1, SeqCst);
                } else if c < done {
                    board.word(3).fetch_add(1, SeqCst);
                }
                board.word(1).store(done.max(c + 1), SeqCst);
            }
            let n = buf.len();
            std::thread::sleep(Duration::from_micros(50));
            rx.consume(n);
        }
    }
    let tx = ring.clone().into_producer().unwrap();
    let mut pid = fork_child(|| worker(&ring, 0, &board));
    wait_past(board.word(0), 0, "first worker");
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let (broken, kills) = rt.block_on(async {
        let mut tx = tx.into_async().unwrap();
        let mut rng = Rng(4242);
        let (mut next, mut broken, mut kills) = (0u64, 0u64, 0usize);
        let mut kill_at = Instant::now() + Duration::from_micros(rng.below(5_000));
        let t0 = Instant::now();
        while next < TOTAL {
            assert!(t0.elapsed() < Duration::from_secs(120), "stuck at {next}");
            if kills < KILLS && Instant::now() >= kill_at {
                sigkill(pid);
                assert!(libc::WIFSIGNALED(reap_within(pid, Duration::from_secs(10))));
                kills += 1;
                pid = fork_child(|| worker(&ring, kills, &board));
                kill_at = Instant::now() + Duration::from_micros(rng.below(5_000));
            }
            // A whole record per write: the free space is always a multiple of 8.
            match tokio::time::timeout(Duration::from_millis(2), tx.write_all(&next.to_le_bytes())).await {
                Ok(Ok(())) => next += 1,
                Ok(Err(e)) if e.kind() == ErrorKind::BrokenPipe => {
                    broken += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Ok(Err(e)) => panic!("counter {next}: {e}"),
                Err(_) => {} // a deadline: nothing of this record was written; try again
            }
        }
        tx.shutdown().await.unwrap();
        (broken, kills)
    });
    assert_eq!(reap_within(pid, Duration::from_secs(30)), 0, "the last worker");
    let (done, gaps, again) = (board.word(1).load(SeqCst), board.word(2).load(SeqCst), board.word(3).load(SeqCst));
    eprintln!("{kills} workers killed, {again} counters processed again, {broken} BrokenPipe");
    assert_eq!((done, gaps), (TOTAL, 0));
}
