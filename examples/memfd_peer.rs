//! Hands a ring to an unrelated process over a Unix socket: the sealed memfd behind a
//! `Backend::Memfd` ring travels as `SCM_RIGHTS`, and the receiver validates and maps it.
//!
//! Run without arguments, the example starts a second copy of itself as the peer (a fresh
//! process image, sharing nothing with this one but the socket name), sends it the ring,
//! streams 100,000 lines through it, and checks what the peer reports.
//!
//! ```sh
//! cargo run --release --example memfd_peer
//! ```
//!
//! The socket lives in the abstract namespace (no file is left behind). Run by hand, the peer
//! is `memfd_peer --peer NAME LINES`.

use std::io::{self, BufRead, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::process::Command;
use std::time::{Duration, Instant};

use mirror_ring::{Backend, RingOptions, SharedRing};

const LINES: usize = 100_000;

fn line(i: usize) -> String {
    format!("line {i}: the quick brown fox jumps over the lazy dog\n")
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, name, lines] if flag == "--peer" => {
            let lines = lines.parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "LINES"))?;
            peer(name, lines)
        }
        [] => parent(),
        _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "usage: memfd_peer [--peer NAME LINES]")),
    }
}

fn parent() -> io::Result<()> {
    let name = format!("mirror-ring-example-{}", std::process::id());
    let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(&name)?)?;
    let mut peer = Command::new(std::env::current_exe()?).args(["--peer", &name, &LINES.to_string()]).spawn()?;

    // Wait for the peer to connect, but not forever: it may fail to start.
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let sock = loop {
        match listener.accept() {
            Ok((sock, _)) => break sock,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                if let Some(status) = peer.try_wait()? {
                    return Err(io::Error::other(format!("the peer exited before connecting: {status}")));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    };
    sock.set_nonblocking(false)?;

    let ring = RingOptions::new().capacity(256 * 1024).backend(Backend::Memfd).shared()?;
    ring.send_to(&sock)?; // the memfd crosses over as SCM_RIGHTS
    let mut tx = ring.into_producer()?;
    let start = Instant::now();
    let mut bytes = 0;
    for i in 0..LINES {
        let l = line(i);
        tx.write_all(l.as_bytes())?;
        bytes += l.len();
    }
    drop(tx); // end of stream
    let status = peer.wait()?;
    let secs = start.elapsed().as_secs_f64();
    println!("parent: sent {LINES} lines ({bytes} bytes) in {:.1} ms; peer {status}", secs * 1e3);
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other("the peer reported a failure"))
    }
}

fn peer(name: &str, lines: usize) -> io::Result<()> {
    let sock = UnixStream::connect_addr(&SocketAddr::from_abstract_name(name)?)?;
    // Validates the file (memfd, sealed, size, header) before mapping it.
    let ring = SharedRing::recv_from(&sock)?;
    println!("peer {}: attached to a {} KiB {} ring", std::process::id(), ring.capacity() >> 10, ring.backend());
    let mut rx = ring.into_consumer()?;
    let (mut count, mut bytes) = (0, 0);
    loop {
        // Every readable byte as one slice: whole lines, even across the wrap point.
        let buf = rx.fill_buf()?;
        if buf.is_empty() {
            break; // the parent closed the ring and everything was read
        }
        let have = buf.len();
        let whole = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for l in buf[..whole].split_inclusive(|&b| b == b'\n') {
            // The parent could change bytes in flight: check each line, trust nothing.
            if l != line(count).as_bytes() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("line {count} differs")));
            }
            count += 1;
        }
        bytes += whole;
        rx.consume(whole);
        if whole == 0 {
            // Only part of a line: wait for one more byte. If the stream ends inside the line,
            // that is an `UnexpectedEof` error.
            drop(rx.read_grant_blocking(have + 1)?);
        }
    }
    println!("peer: received {count} lines ({bytes} bytes), every one as sent");
    if count == lines {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{count} of {lines} lines")))
    }
}
