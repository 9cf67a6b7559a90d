//! Peers that are fresh process images, as an unrelated process is: a copy of this test binary
//! started with `Command` (fork and exec), which gets its ring only as a memfd over a Unix
//! socket. Every other suite between processes forks, so its children inherit what a process
//! sets up once: the `membarrier` registration (which `exec` clears), the backend probe, the
//! fork generation, the helper registry. Here the peer starts from nothing, as the README's
//! "unrelated processes" do (as in `examples/memfd_peer.rs`, which streams one way only).
//!
//! Each test is its own peer: started with [`PEER`] set (the job and its arguments), the test
//! runs the peer's side and the harness of that copy reports how it went by its exit status.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::page_size;
use mirror_ring::{Backend, FramedConsumer, FramedProducer, RingOptions, SharedRing};

/// Set in a peer copy of this binary: `JOB SOCKET [ARG...]`, space-separated.
const PEER: &str = "MIRROR_RING_EXEC_PEER";

/// A liveness bound: a peer connects, a death is seen, a stream ends within this (the design
/// figure for a death is 25 ms; starting a copy of the binary takes a few ms).
const BOUND: Duration = Duration::from_secs(10);

/// This process's peer job, if it is a peer copy: its words after the job name.
fn peer_job(job: &str) -> Option<Vec<String>> {
    let spec = std::env::var(PEER).ok()?;
    let mut words = spec.split(' ').map(str::to_owned);
    (words.next()? == job).then(|| words.collect())
}

/// A peer process: a copy of this test binary running only `test`, with `job` as its
/// [`PEER`] job. Killed and reaped when dropped (a test that fails first leaves none behind).
struct Peer {
    child: std::process::Child,
    sock: UnixStream,
}

impl Peer {
    /// Starts the peer and waits for it to connect to a fresh abstract socket (no file left
    /// behind), whose name it gets as its first argument.
    fn start(test: &str, job: &str, args: &[String]) -> Peer {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("mirror-ring-exec-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        listener.set_nonblocking(true).unwrap();
        let spec =
            [job, name.as_str()].into_iter().chain(args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "-q", "--test-threads=1"])
            .env(PEER, spec)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let end = Instant::now() + BOUND;
        let sock = loop {
            match listener.accept() {
                Ok((sock, _)) => break sock,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < end => {
                    if let Some(status) = child.try_wait().unwrap() {
                        panic!("the {job} peer exited before connecting: {status}");
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the {job} peer did not connect: {e}");
                }
            }
        };
        sock.set_nonblocking(false).unwrap();
        sock.set_read_timeout(Some(BOUND)).unwrap();
        Peer { child, sock }
    }

    /// The peer's next report: a number it writes to the socket.
    fn report(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.sock.read_exact(&mut b).expect("a report from the peer");
        u64::from_le_bytes(b)
    }

    fn tell(&mut self, v: u64) {
        self.sock.write_all(&v.to_le_bytes()).unwrap();
    }

    /// Its exit status, waiting at most [`BOUND`].
    fn finish(mut self) -> std::process::ExitStatus {
        let end = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "the peer still runs after {BOUND:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // std's `kill` never signals a child it has reaped already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The peer's side: connects to the socket named in `args[0]`.
fn connect(args: &[String]) -> UnixStream {
    let sock = UnixStream::connect_addr(&SocketAddr::from_abstract_name(&args[0]).unwrap()).unwrap();
    sock.set_read_timeout(Some(BOUND)).unwrap();
    sock
}

fn send_report(sock: &mut UnixStream, v: u64) {
    sock.write_all(&v.to_le_bytes()).unwrap();
}

fn read_report(sock: &mut UnixStream) -> u64 {
    let mut b = [0u8; 8];
    sock.read_exact(&mut b).expect("a word from the test");
    u64::from_le_bytes(b)
}

/// A memfd ring of two pages: small, so that both ends wait often.
fn small_ring() -> SharedRing {
    RingOptions::new().capacity(2 * page_size()).backend(Backend::Memfd).shared().unwrap()
}

/// Message `i` of the echo test: its length varies up to a quarter of the ring, and every
/// byte depends on `i` and its place, so a stale, torn or misplaced message shows.
fn message(i: u64, max: usize) -> Vec<u8> {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let len = (x >> 40) as usize % (max + 1);
    (0..len).map(|k| (x >> (k % 7 * 8)) as u8 ^ k as u8).collect()
}

/// The echo peer's side: the two rings the test sends (see [`start_echo`]), the first to
/// receive from and the second to echo into, as framed ends.
fn echo_rings(sock: &UnixStream) -> (FramedConsumer, FramedProducer) {
    let rx = SharedRing::recv_from(sock).unwrap().into_consumer().unwrap().into_framed();
    let tx = SharedRing::recv_from(sock).unwrap().into_producer().unwrap().into_framed();
    (rx, tx)
}

/// The echo test's side: starts the peer (`test` run as `job`), sends it two small rings, and
/// keeps the framed producer of the first and the framed consumer of the second.
fn start_echo(test: &str, job: &str) -> (Peer, FramedProducer, FramedConsumer) {
    let peer = Peer::start(test, job, &[]);
    let (out, back) = (small_ring(), small_ring());
    out.send_to(&peer.sock).unwrap();
    back.send_to(&peer.sock).unwrap();
    let (tx, rx) = (out.into_producer().unwrap().into_framed(), back.into_consumer().unwrap().into_framed());
    (peer, tx, rx)
}

/// Messages in the echo test (fewer in a debug build, where making and checking them is most
/// of the time; the peer is the same build).
const ECHOES: u64 = if cfg!(debug_assertions) { 40_000 } else { 200_000 };

/// A peer in a fresh process image receives framed messages on one small ring and sends each
/// back on another, with a consumer and a producer of ours on two threads: both processes
/// block on both rings again and again, so the peer parks with the barriers it registered for
/// itself (an exec'd process inherits no registration). Every message comes back intact and in
/// order, the stream ends cleanly both ways, and no wake-up is lost on our side.
#[test]
fn a_fresh_process_echoes_framed_messages_through_two_small_rings() {
    if let Some(args) = peer_job("echo") {
        let (mut rx, mut tx) = echo_rings(&connect(&args));
        let max = rx.capacity() / 4;
        let mut i = 0;
        while let Some(frame) = rx.recv().unwrap() {
            assert_eq!(*frame, message(i, max)[..], "message {i} arrived wrong");
            tx.send(&frame).unwrap();
            i += 1;
        }
        assert_eq!(i, ECHOES, "the stream ended early");
        return;
    }
    let (peer, mut tx, mut rx) = start_echo("a_fresh_process_echoes_framed_messages_through_two_small_rings", "echo");
    let max = tx.capacity() / 4;
    let sender = std::thread::spawn(move || {
        for i in 0..ECHOES {
            tx.send(&message(i, max)).unwrap();
        }
        tx.stats()
    });
    let started = Instant::now();
    let mut i = 0;
    while let Some(frame) = rx.recv().unwrap() {
        assert_eq!(*frame, message(i, max)[..], "echo {i} came back wrong");
        i += 1;
    }
    assert_eq!(i, ECHOES, "the echoes ended early");
    let sent = sender.join().unwrap();
    let got = rx.stats();
    assert!(peer.finish().success(), "the peer failed");
    eprintln!("{ECHOES} echoes in {:?}; ours: sender {sent:?}, receiver {got:?}", started.elapsed());
    assert!(sent.parks + got.parks > 0, "nothing waited: the test did not test blocking");
    assert_eq!((sent.lost_wakeups, got.lost_wakeups), (0, 0), "a wake-up from the peer was lost");
}

/// The echo again with async ends on both sides, each process on a current-thread runtime:
/// the peer's async consumer and producer start from nothing in a fresh image (the helper
/// registry, the direct wake-up, the barrier registration), and its tasks are woken by our
/// publishes and releases, ours by its. Every message comes back intact and in order, no
/// wake-up is lost on our side, and our parks mostly end by the peer's wake-up.
#[cfg(feature = "tokio")]
#[test]
fn a_fresh_process_echoes_through_async_ends_on_both_sides() {
    if let Some(args) = peer_job("async_echo") {
        let (rx, tx) = echo_rings(&connect(&args));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let echoed = rt.block_on(async move {
            let (mut rx, mut tx) = (rx.into_async().unwrap(), tx.into_async().unwrap());
            let max = rx.get_ref().capacity() / 4;
            let mut i = 0;
            while let Some(frame) = rx.recv().await.unwrap() {
                assert_eq!(*frame, message(i, max)[..], "message {i} arrived wrong");
                tx.send(&frame).await.unwrap();
                i += 1;
            }
            i
        });
        assert_eq!(echoed, ECHOES, "the stream ended early");
        return;
    }
    let (peer, tx, rx) = start_echo("a_fresh_process_echoes_through_async_ends_on_both_sides", "async_echo");
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let started = Instant::now();
    let (sent, got) = rt.block_on(async move {
        let (mut tx, mut rx) = (tx.into_async().unwrap(), rx.into_async().unwrap());
        let max = tx.get_ref().capacity() / 4;
        let sender = tokio::spawn(async move {
            for i in 0..ECHOES {
                tx.send(&message(i, max)).await.unwrap();
            }
            tx.stats()
        });
        let mut i = 0;
        while let Some(frame) = tokio::time::timeout(BOUND, rx.recv()).await.expect("an echo within the bound").unwrap()
        {
            assert_eq!(*frame, message(i, max)[..], "echo {i} came back wrong");
            i += 1;
        }
        assert_eq!(i, ECHOES, "the echoes ended early");
        (sender.await.unwrap(), rx.stats())
    });
    assert!(peer.finish().success(), "the peer failed");
    eprintln!("{ECHOES} async echoes in {:?}; ours: sender {sent:?}, receiver {got:?}", started.elapsed());
    assert!(sent.parks > 0 && got.parks > 0, "an end of ours never parked: the test did not test waking");
    assert_eq!((sent.lost_wakeups, got.lost_wakeups), (0, 0), "a wake-up from the peer was lost");
    // A wake-up that clears the flag but never reaches the task is caught by the helper's
    // timer, which counts it as a sleep timeout, not as lost: so most parks must end woken
    // (about 97% do; with the helper deaf to cleared flags, 0.5%, and the run took 90x longer).
    for (end, s) in [("sender", sent), ("receiver", got)] {
        assert!(s.woken * 2 >= s.parks, "our {end}'s parks mostly ended by timer, not by the peer: {s:?}");
    }
}

const RECORDS: u64 = 1 << 20;

/// The peer's consumer: takes the role over (or claims it, the first), reads 8-byte counters
/// from its ring gap-free from wherever it resumes, reporting the first and then, every
/// 4096, how far it has released; the last one reads to the end of the stream.
fn counting_consumer(args: &[String]) {
    let mut sock = connect(args);
    let ring = SharedRing::recv_from(&sock).unwrap();
    let mut rx = if args[1] == "claim" { ring.into_consumer().unwrap() } else { ring.take_over_consumer().unwrap() };
    let mut next = None;
    let mut buf = [0u8; 8];
    loop {
        match rx.read_exact(&mut buf) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof && next == Some(RECORDS) => return,
            Err(e) => panic!("after {next:?}: {e}"),
        }
        let got = u64::from_le_bytes(buf);
        match next {
            None => send_report(&mut sock, got),
            Some(n) => assert_eq!(got, n, "a gap or a repeat"),
        }
        next = Some(got + 1);
        if (got + 1) % 4096 == 0 {
            send_report(&mut sock, got + 1);
        }
    }
}

/// The peer's producer: claims the role (the first) or takes it over and says so (until then
/// the consumer's calls report the death), then writes 8-byte counters from the one the test
/// tells it; the last one writes to [`RECORDS`] and closes.
fn counting_producer(args: &[String]) {
    let mut sock = connect(args);
    let ring = SharedRing::recv_from(&sock).unwrap();
    let mut tx = if args[1] == "claim" { ring.into_producer().unwrap() } else { ring.take_over_producer().unwrap() };
    send_report(&mut sock, 1);
    for n in read_report(&mut sock)..RECORDS {
        tx.write_all(&n.to_le_bytes()).unwrap();
    }
}

/// A consumer in a fresh process image, killed mid-stream: our producer, blocked on the full
/// ring, learns of the death within the bound (`BrokenPipe`); a second fresh process takes
/// the role over and resumes exactly where the first had released, and our producer goes on
/// to the end of the stream with nothing lost.
#[test]
fn a_killed_fresh_consumer_is_seen_dead_and_a_fresh_one_takes_its_role_over() {
    if let Some(args) = peer_job("consume") {
        return counting_consumer(&args);
    }
    const TEST: &str = "a_killed_fresh_consumer_is_seen_dead_and_a_fresh_one_takes_its_role_over";
    let ring = small_ring();
    let mut first = Peer::start(TEST, "consume", &["claim".into()]);
    ring.send_to(&first.sock).unwrap();
    let mut tx = ring.clone().into_producer().unwrap();
    // Stream until the peer has released 16 Ki records, then kill it.
    let mut n = 0u64;
    let reported = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            assert_eq!(first.report(), 0, "the first consumer's first record");
            loop {
                let r = first.report();
                if r >= 16 * 1024 {
                    first.kill();
                    return r;
                }
            }
        });
        let died = loop {
            match tx.write_all(&n.to_le_bytes()) {
                Ok(()) => n += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(died.kind(), ErrorKind::BrokenPipe, "{died}");
        reader.join().unwrap()
    });
    // Writes that fit go on after a consumer's death; only the write that found the ring full
    // waited and saw the death. So the dead consumer released exactly the records before the
    // last ring-full, and there the newcomer must resume: not later (records lost), not
    // earlier (the dead one's releases undone).
    let released = n - (ring.capacity() / 8) as u64;
    let started = Instant::now();
    assert!(tx.is_abandoned());
    let mut second = Peer::start(TEST, "consume", &["take".into()]);
    ring.send_to(&second.sock).unwrap();
    let resumed = second.report();
    assert!(released >= reported, "the first consumer reported {reported} released, the ring says {released}");
    assert_eq!(resumed, released, "where the newcomer resumed ({n} records were written)");
    eprintln!(
        "killed after {reported} released, {n} written; the newcomer resumed at {resumed} in {:?}",
        started.elapsed()
    );
    while n < RECORDS {
        tx.write_all(&n.to_le_bytes()).unwrap();
        n += 1;
    }
    drop(tx);
    assert!(second.finish().success(), "the second consumer failed");
}

/// A producer in a fresh process image, killed mid-stream: our consumer learns of the death
/// within the bound (`UnexpectedEof` after every committed byte), a second fresh process takes
/// the role over and writes on from where we tell it, and we read the stream to its end
/// gap-free.
#[test]
fn a_killed_fresh_producer_is_seen_dead_and_a_fresh_one_takes_its_role_over() {
    if let Some(args) = peer_job("produce") {
        return counting_producer(&args);
    }
    const TEST: &str = "a_killed_fresh_producer_is_seen_dead_and_a_fresh_one_takes_its_role_over";
    let ring = small_ring();
    let mut rx = ring.clone().into_consumer().unwrap();
    let mut first = Peer::start(TEST, "produce", &["claim".into()]);
    ring.send_to(&first.sock).unwrap();
    assert_eq!(first.report(), 1, "the first producer's claim");
    first.tell(0);
    let mut buf = [0u8; 8];
    let mut next = 0u64;
    let mut killed = None;
    let died = loop {
        match rx.read_exact(&mut buf) {
            Ok(()) => {}
            Err(e) => break e,
        }
        assert_eq!(u64::from_le_bytes(buf), next, "a gap or a repeat");
        next += 1;
        if killed.is_none() && next == 16 * 1024 {
            first.kill();
            killed = Some(Instant::now());
        }
    };
    let seen = killed.expect("the stream failed before the kill").elapsed();
    assert_eq!(died.kind(), ErrorKind::UnexpectedEof, "{died}");
    assert!(seen < BOUND, "the death took {seen:?} to be seen");
    assert!(rx.is_abandoned());
    let mut second = Peer::start(TEST, "produce", &["take".into()]);
    // Until a newcomer holds the role, every call reports the death again.
    let mut byte = [0u8; 1];
    assert_eq!(rx.try_read(&mut byte).unwrap_err().kind(), ErrorKind::UnexpectedEof, "the death sticks");
    ring.send_to(&second.sock).unwrap();
    assert_eq!(second.report(), 1, "the take-over");
    second.tell(next);
    while next < RECORDS {
        rx.read_exact(&mut buf).unwrap_or_else(|e| panic!("at record {next} after the take-over: {e}"));
        assert_eq!(u64::from_le_bytes(buf), next, "a gap or a repeat after the take-over");
        next += 1;
    }
    assert_eq!(rx.read(&mut buf).unwrap(), 0, "the stream ends after the last record");
    assert!(second.finish().success(), "the second producer failed");
    eprintln!("the death was seen {seen:?} after the kill");
}
