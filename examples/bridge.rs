//! The way past one machine: a ring between local processes, its consumer draining straight
//! into a TCP connection with `Consumer::write_to`, and on the far side a process filling
//! another ring straight from the connection with `Producer::read_from`, whose consumer (a
//! process of its own) checks what arrived. Checksummed end to end: the far side sends back
//! the byte count and hash it saw, and the sender compares them with its own.
//!
//! ```text
//!  host A                                          host B
//!  [producer] --ring A--> [bridge out] ==TCP==> [bridge in] --ring B--> [checker]
//!   (forked)               write_to(tcp)         read_from(tcp)          (forked)
//! ```
//!
//! ```sh
//! cargo run --release --example bridge                 # both hosts on loopback, 64 MiB
//! cargo run --release --example bridge -- 256          # 256 MiB
//! # across two hosts:
//! hostB$ cargo run --release --example bridge -- listen 0.0.0.0:7000
//! hostA$ cargo run --release --example bridge -- send hostB:7000 [MiB]
//! ```
//!
//! The rings are fd-less anonymous rings shared with a forked child on each host; only the
//! TCP connection crosses the network. Each `write_to` hands the kernel every readable byte
//! of ring A in one `write()` (one contiguous slice, wherever the cursors stand), and each
//! `read_from` lets one `read()` fill all of ring B's free space.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::Instant;

use mirror_ring::{RingOptions, SharedRing};

const RING: usize = 1 << 20;

/// A fast 64-bit hash over the bytes in order, whatever pieces they arrive in.
#[derive(Clone, Copy)]
struct Hash(u64, u64);

impl Hash {
    fn new() -> Hash {
        Hash(0xcbf2_9ce4_8422_2325, 0)
    }
    fn update(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        self.0 = h;
        self.1 += bytes.len() as u64;
    }
}

/// The generated stream: a 1 MiB + 7 block of pseudo-random bytes, repeated.
fn block() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..(1 << 20) + 7)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Calls `f` in a forked child, which leaves through `_exit` (0 on success, 1 on an error,
/// 101 on a panic). Returns the child's pid.
fn fork(f: impl FnOnce() -> io::Result<()>) -> io::Result<libc::pid_t> {
    // SAFETY: the child runs `f` and leaves through _exit; it never returns here.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => {
                eprintln!("child {}: {e}", std::process::id());
                1
            }
            Err(_) => 101,
        };
        // SAFETY: ends the child without running the parent's destructors or atexit handlers.
        unsafe { libc::_exit(code) };
    }
    Ok(pid)
}

fn reap(pid: libc::pid_t, what: &str) -> io::Result<()> {
    let mut status = 0;
    // SAFETY: our own child; status is a valid out-pointer.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(io::Error::last_os_error());
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(io::Error::other(format!("{what} failed (wait status {status:#x})")))
    }
}

/// Host A: a forked producer fills ring A with `mib` MiB; this process drains ring A into the
/// connection with `write_to`, then reads the far side's count and hash and compares.
fn send(addr: &str, mib: u64) -> io::Result<()> {
    let total = mib << 20;
    let ring = RingOptions::new().capacity(RING).shared()?;
    let producer = fork(|| {
        let mut tx = ring.clone().into_producer()?;
        let data = block();
        let mut left = total;
        let mut at = 0;
        while left > 0 {
            let n = (64 << 10).min(left as usize).min(data.len() - at);
            tx.write_all(&data[at..at + n])?;
            at = (at + n) % data.len();
            left -= n as u64;
        }
        Ok(()) // dropping tx closes ring A
    })?;
    // What the producer sends, hashed here from the same generator.
    let mut expected = Hash::new();
    let data = block();
    let (mut left, mut at) = (total, 0);
    while left > 0 {
        let n = (64 << 10).min(left as usize).min(data.len() - at);
        expected.update(&data[at..at + n]);
        at = (at + n) % data.len();
        left -= n as u64;
    }
    let mut tcp = TcpStream::connect(addr.to_socket_addrs()?.next().ok_or(io::ErrorKind::NotFound)?)?;
    tcp.set_nodelay(true)?;
    let mut rx = ring.into_consumer()?;
    let start = Instant::now();
    let (mut calls, mut sent) = (0u64, 0u64);
    loop {
        let n = match rx.write_to(&mut tcp) {
            // A signal handler without SA_RESTART cut the write short: nothing was released.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r?,
        };
        match n {
            0 => break,
            n => {
                calls += 1;
                sent += n as u64;
            }
        }
    }
    tcp.shutdown(std::net::Shutdown::Write)?;
    let mut reply = [0u8; 16];
    tcp.read_exact(&mut reply)?;
    let elapsed = start.elapsed();
    reap(producer, "the producer")?;
    let got =
        Hash(u64::from_le_bytes(reply[..8].try_into().unwrap()), u64::from_le_bytes(reply[8..].try_into().unwrap()));
    println!(
        "sent {} MiB in {:.2?} ({:.0} MB/s), {calls} write_to calls ({} KiB each on average)",
        sent >> 20,
        elapsed,
        sent as f64 / elapsed.as_secs_f64() / 1e6,
        sent / calls.max(1) / 1024
    );
    if got.1 != total || got.0 != expected.0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("far side saw {} bytes, hash {:#x}; sent {total}, hash {:#x}", got.1, got.0, expected.0),
        ));
    }
    println!("far side checksum matches: {} bytes, hash {:#018x}", got.1, got.0);
    Ok(())
}

/// Host B, one connection: fills ring B from the connection with `read_from`; a forked
/// checker drains ring B, hashes it, and sends the count and hash back.
fn serve(mut tcp: TcpStream) -> io::Result<()> {
    let ring: SharedRing = RingOptions::new().capacity(RING).shared()?;
    let mut reply_to = tcp.try_clone()?;
    let for_checker = ring.clone();
    let checker = fork(move || {
        let mut rx = for_checker.into_consumer()?;
        let mut h = Hash::new();
        loop {
            let buf = io::BufRead::fill_buf(&mut rx)?;
            if buf.is_empty() {
                break; // ring B closed: everything arrived
            }
            h.update(buf);
            let n = buf.len();
            io::BufRead::consume(&mut rx, n);
        }
        let mut reply = [0u8; 16];
        reply[..8].copy_from_slice(&h.0.to_le_bytes());
        reply[8..].copy_from_slice(&h.1.to_le_bytes());
        reply_to.write_all(&reply)
    })?;
    // The checker holds its own handle of the connection for the reply.
    let mut tx = ring.into_producer()?;
    loop {
        match tx.read_from(&mut tcp) {
            Ok(0) => break,
            Ok(_) => {}
            // A signal handler without SA_RESTART cut the read short: nothing was committed.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    drop(tx); // closes ring B: the checker finishes and replies
    reap(checker, "the checker")
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("listen") => {
            let addr = args.get(1).map_or("0.0.0.0:7000", String::as_str);
            let listener = TcpListener::bind(addr)?;
            println!("listening on {}", listener.local_addr()?);
            let (tcp, peer) = listener.accept()?;
            println!("connection from {peer}");
            serve(tcp)
        }
        Some("send") => {
            let addr = args.get(1).ok_or_else(|| io::Error::other("send HOST:PORT [MiB]"))?;
            let mib = args.get(2).and_then(|m| m.parse().ok()).unwrap_or(64);
            send(addr, mib)
        }
        other => {
            // Both hosts on loopback: the far side is a forked process of its own.
            let mib = other.and_then(|m| m.parse().ok()).unwrap_or(64);
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?.to_string();
            let far = fork(move || {
                let (tcp, _) = listener.accept()?;
                serve(tcp)
            })?;
            let r = send(&addr, mib);
            reap(far, "the far side")?;
            r
        }
    }
}
