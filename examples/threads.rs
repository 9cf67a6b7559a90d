//! A producer thread writes HTTP/1.1 requests into a ring in arbitrary pieces; a consumer
//! thread parses them with `httparse` straight out of `fill_buf`, with no reassembly buffer.
//!
//! A request that straddles the end of the ring is still one slice (the pages are mapped
//! twice), so the parser never sees a split record: when it says "partial", the consumer just
//! waits for at least one more byte (`read_grant_blocking(have + 1)`) and parses again from the
//! same place.
//!
//! `cargo run --release --example threads`

use std::io::{BufRead, Write};
use std::time::Instant;

const REQUESTS: usize = 200_000;

fn request(i: usize) -> String {
    format!("GET /item/{i} HTTP/1.1\r\nHost: example.test\r\nUser-Agent: mirror-ring-demo\r\nX-Seq: {i}\r\n\r\n")
}

fn main() -> std::io::Result<()> {
    // A small ring, so requests straddle the wrap point thousands of times.
    let (mut tx, mut rx) = mirror_ring::channel(4096)?;
    let start = Instant::now();

    let producer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut piece = 1;
        for i in 0..REQUESTS {
            // Write each request in odd-sized pieces, as a network would deliver it.
            let req = request(i);
            for chunk in req.as_bytes().chunks(piece) {
                tx.write_all(chunk)?;
            }
            piece = piece % 97 + 13;
        }
        Ok(()) // dropping tx ends the stream
    });

    let (mut parsed, mut straddled, mut partial_waits, mut bytes) = (0usize, 0usize, 0usize, 0usize);
    let cap = rx.capacity();
    let mut pos = 0usize; // stream position, to count requests that cross the wrap point
    loop {
        let buf = rx.fill_buf()?;
        if buf.is_empty() {
            break; // the producer is gone and everything was read
        }
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let seq: usize = req
                    .headers
                    .iter()
                    .find(|h| h.name == "X-Seq")
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                    .expect("every request carries X-Seq");
                assert_eq!(seq, parsed, "requests arrive whole and in order");
                assert_eq!(req.path, Some(format!("/item/{seq}").as_str()));
                if pos % cap + len > cap {
                    straddled += 1;
                }
                parsed += 1;
                pos += len;
                bytes += len;
                rx.consume(len);
            }
            // Not all of it is here yet: wait until at least one more byte is readable (no
            // busy loop), then parse again from the same place.
            Ok(httparse::Status::Partial) => {
                partial_waits += 1;
                let have = buf.len();
                if have == cap {
                    panic!("a request larger than the ring");
                }
                // Waits for one more byte; a stream that ends inside a request is an
                // `UnexpectedEof` error.
                drop(rx.read_grant_blocking(have + 1)?);
            }
            Err(e) => panic!("parse error at request {parsed}: {e}"),
        }
    }
    producer.join().expect("producer thread")?;
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(parsed, REQUESTS);
    println!(
        "parsed {parsed} requests ({bytes} bytes) in {:.1} ms: {:.2} M requests/s",
        secs * 1e3,
        parsed as f64 / secs / 1e6
    );
    println!("{straddled} of them straddled the end of the {cap}-byte ring and were parsed in place");
    println!("{partial_waits} times the parser saw a partial request and waited for more in place");
    Ok(())
}
