//! Framed messages: whole frames in order between threads and across fork, oversize frames,
//! corrupt headers (also written while both ends run), batching, frames crossing the seam.
//!
//! Blocking calls between threads sleep without a deadline, so a lost wake-up would hang: every
//! test that can block runs under a [`watchdog`] that aborts the test process instead.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    available, in_child, page_size, scale, seed, set_soft_limit, spawn_child, stamped_word, vm_size, watchdog, Rng,
};
use mirror_ring::{channel, FramedConsumer, FramedProducer, RingOptions};

/// The watchdog's bound for one test: the slowest test here takes about a second (debug build).
const HANG: Duration = Duration::from_secs(60);

/// The bound on noticing a dead peer: 10x the 100 ms the design promises.
const LIVE: Duration = Duration::from_secs(1);

/// The bound on a wake-up between threads (healthy: microseconds); wide, for loaded machines.
const WAKE: Duration = Duration::from_secs(5);

/// The payload of frame `i`: `len` bytes of a fixed random pattern, starting at an offset that
/// depends on `i`, so a frame delivered out of order, twice, or with foreign bytes is caught.
struct Payloads(Vec<u8>);

impl Payloads {
    const PERIOD: usize = 8191;
    fn new() -> Payloads {
        let mut v = vec![0u8; Self::PERIOD + 70_000];
        Rng::new(0xf4a3e).fill(&mut v);
        Payloads(v)
    }
    fn of(&self, i: u64, len: usize) -> &[u8] {
        let start = (i.wrapping_mul(2_654_435_761) % Self::PERIOD as u64) as usize;
        &self.0[start..start + len]
    }
}

/// Frame `i`'s length: the same sequence on both sides (same seed).
struct Sizes {
    rng: Rng,
    min: usize,
    max: usize,
}

impl Sizes {
    fn new(seed: u64, min: usize, max: usize) -> Sizes {
        Sizes { rng: Rng::new(seed), min, max }
    }
    fn next(&mut self) -> usize {
        // One in eight frames is at the lower or the upper limit, the rest uniform in between.
        match self.rng.up_to(15) {
            0 => self.min,
            1 => self.max,
            _ => self.min + self.rng.up_to(self.max - self.min),
        }
    }
}

/// Names the first differing byte instead of printing kilobytes.
fn check_frame(got: &[u8], want: &[u8], i: u64) {
    assert_eq!(got.len(), want.len(), "frame {i}: length");
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap();
        panic!("frame {i} ({} bytes): byte {at} differs", got.len());
    }
}

/// Sends `count` frames of sizes from `Sizes(seed, 0, max)`, mixing `send`, `try_send`,
/// `send_timeout`, `reserve` + `commit`, and the three `send_batch` calls on runs of up to 16
/// messages (passing again what a call left over).
fn send_frames(tx: &mut FramedProducer, count: u64, seed: u64, max: usize) {
    send_sized(tx, count, seed, 0, max)
}

/// As [`send_frames`], with every frame at least `min` bytes long.
fn send_sized(tx: &mut FramedProducer, count: u64, seed: u64, min: usize, max: usize) {
    let payloads = Payloads::new();
    let mut sizes = Sizes::new(seed, min, max);
    let mut pick = Rng::new(seed ^ 0xabcd);
    let mut i = 0;
    while i < count {
        let len = sizes.next();
        let msg = payloads.of(i, len);
        if pick.up_to(4) == 4 {
            let k = (1 + pick.up_to(15) as u64).min(count - i);
            let mut batch = vec![msg];
            batch.extend((i + 1..i + k).map(|j| payloads.of(j, sizes.next())));
            let mut rest = &batch[..];
            while !rest.is_empty() {
                let sent = match pick.up_to(2) {
                    // The blocking calls send at least one.
                    0 => at_least_one(tx.send_batch(rest).unwrap()),
                    1 => at_least_one(tx.send_batch_timeout(rest, Duration::from_secs(600)).unwrap()),
                    _ => match tx.try_send_batch(rest) {
                        Ok(n) => n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            thread::yield_now();
                            0
                        }
                        Err(e) => panic!("try_send_batch: {e}"),
                    },
                };
                assert!(sent <= rest.len(), "send_batch sent {sent} of {}", rest.len());
                rest = &rest[sent..];
            }
            i += k;
            continue;
        }
        i += 1;
        match pick.up_to(3) {
            0 => tx.send(msg).unwrap(),
            1 => loop {
                match tx.try_send(msg) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => thread::yield_now(),
                    Err(e) => panic!("try_send: {e}"),
                }
            },
            2 => tx.send_timeout(msg, Duration::from_secs(600)).unwrap(),
            _ => {
                let mut grant = tx.reserve(len).unwrap();
                assert_eq!(grant.len(), len);
                grant.copy_from_slice(msg);
                grant.commit().unwrap();
            }
        }
    }
}

fn at_least_one(sent: usize) -> usize {
    assert!(sent >= 1, "a blocking send_batch returned without sending");
    sent
}

/// Receives `count` frames and checks each; then expects end of stream.
fn recv_frames(rx: &mut FramedConsumer, count: u64, seed: u64, max: usize) {
    recv_sized(rx, count, seed, 0, max)
}

/// As [`recv_frames`], for frames from [`send_sized`].
fn recv_sized(rx: &mut FramedConsumer, count: u64, seed: u64, min: usize, max: usize) {
    let payloads = Payloads::new();
    let mut sizes = Sizes::new(seed, min, max);
    let mut pick = Rng::new(seed ^ 0x1234);
    for i in 0..count {
        let want = payloads.of(i, sizes.next());
        let frame = match pick.up_to(2) {
            0 => rx.recv().unwrap(),
            1 => rx.recv_timeout(Duration::from_secs(600)).unwrap(),
            _ => loop {
                match rx.try_recv() {
                    Ok(f) => break f,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => thread::yield_now(),
                    Err(e) => panic!("try_recv: {e}"),
                }
            },
        };
        let frame = frame.unwrap_or_else(|| panic!("end of stream before frame {i}"));
        check_frame(&frame, want, i);
        assert_eq!(frame.as_ptr() as usize % 8, 0, "frame {i} is not 8-byte aligned");
    }
    assert!(rx.recv().unwrap().is_none(), "more frames than were sent");
    assert!(rx.recv().unwrap().is_none(), "end of stream is sticky");
}

#[test]
fn random_frames_arrive_whole_and_in_order_between_threads() {
    let _dog = watchdog("random_frames_arrive_whole_and_in_order_between_threads", HANG);
    let count = 200_000 * scale() as u64;
    let seed = seed();
    for (capacity, batch) in [(64 * 1024, 1), (16 * 1024, 32)] {
        let (tx, rx) = RingOptions::new().capacity(capacity).build().unwrap();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        tx.set_batch(batch);
        let writer = thread::spawn(move || send_frames(&mut tx, count, seed, 4096));
        recv_frames(&mut rx, count, seed, 4096);
        writer.join().unwrap();
    }
}

/// A blocking receive that runs dry after a run of frames slips (waits about a microsecond
/// without looking at the ring, `docs::framing`): bursts longer than the run that triggers it,
/// separated by pauses shorter than the slip, longer, and none, lose nothing and end with the
/// stream; a timed receive that slips still keeps its deadline.
#[test]
fn bursts_around_the_slip_lose_nothing() {
    let _dog = watchdog("bursts_around_the_slip_lose_nothing", HANG);
    let (tx, rx) = RingOptions::new().capacity(64 * 1024).build().unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let pauses = [Duration::ZERO, Duration::from_nanos(300), Duration::from_micros(3), Duration::from_micros(200)];
    let bursts = 400 * scale() as u64;
    let writer = thread::spawn(move || {
        let mut i = 0u64;
        for b in 0..bursts {
            for _ in 0..40 {
                tx.send(&i.to_le_bytes()).unwrap();
                i += 1;
            }
            let until = Instant::now() + pauses[b as usize % pauses.len()];
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        i
    });
    let mut want = 0u64;
    while let Some(frame) = rx.recv().unwrap() {
        assert_eq!(frame[..], want.to_le_bytes(), "frame {want}");
        want += 1;
    }
    assert_eq!(want, writer.join().unwrap());

    // A run, then a timed receive with nothing coming: it times out on time (the slip is cut
    // to the deadline), and the next frame still arrives.
    let (tx, rx) = RingOptions::new().capacity(64 * 1024).build().unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    for i in 0..64u64 {
        tx.send(&i.to_le_bytes()).unwrap();
    }
    for i in 0..64u64 {
        assert_eq!(rx.recv().unwrap().unwrap()[..], i.to_le_bytes());
    }
    let started = Instant::now();
    assert_eq!(rx.recv_timeout(Duration::from_nanos(1)).unwrap_err().kind(), ErrorKind::TimedOut);
    assert!(started.elapsed() < WAKE, "a 1 ns timeout took {:?}", started.elapsed());
    tx.send(b"after").unwrap();
    assert_eq!(&*rx.recv_timeout(WAKE).unwrap().unwrap(), b"after");
}

#[test]
fn every_backend_carries_frames() {
    let _dog = watchdog("every_backend_carries_frames", HANG);
    for backend in available() {
        let (tx, rx) = RingOptions::new().capacity(8192).backend(backend).build().unwrap();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        let seed = seed() ^ backend as u64;
        let writer = thread::spawn(move || send_frames(&mut tx, 20_000, seed, 2000));
        recv_frames(&mut rx, 20_000, seed, 2000);
        writer.join().unwrap();
    }
}

#[test]
fn a_tiny_ring_without_spinning_never_loses_a_wakeup() {
    let _dog = watchdog("a_tiny_ring_without_spinning_never_loses_a_wakeup", HANG);
    // Every frame takes more than half of the smallest ring (4 KiB, or one page: with 4 KiB,
    // 2041 payload bytes make 2056), so only one fits at a time: the producer waits for each
    // frame's release and the consumer for each send, and with no spin budget every wait parks
    // on the futex. A lost wake-up hangs
    // (the watchdog turns that into a failure).
    let (tx, rx) = RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).build().unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let seed = seed() ^ 77;
    let (min, max) = (tx.capacity() / 2 - 8 + 1, tx.max_frame_len());
    let writer = thread::spawn(move || send_sized(&mut tx, 3_000, seed, min, max));
    recv_sized(&mut rx, 3_000, seed, min, max);
    writer.join().unwrap();
}

#[test]
fn oversize_frames_are_refused_write_nothing_and_the_ring_keeps_working() {
    let _dog = watchdog("oversize_frames_are_refused_write_nothing_and_the_ring_keeps_working", HANG);
    let (tx, rx) = channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    // 4 KiB, or one page where pages are larger.
    let cap = tx.capacity();
    assert_eq!(cap, page_size().max(4096));
    assert_eq!((tx.max_frame_len(), rx.max_frame_len()), (cap - 8, cap - 8));
    tx.send(b"before").unwrap();
    let big = vec![9u8; cap - 7];
    for err in [
        tx.send(&big).unwrap_err(),
        tx.try_send(&big).unwrap_err(),
        tx.send_timeout(&big, Duration::from_millis(1)).unwrap_err(),
        tx.send(&vec![0; 1 << 20]).unwrap_err(),
        tx.reserve(cap - 7).unwrap_err(),
        tx.try_reserve(usize::MAX).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    }
    // Nothing but the frame before was written.
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"before");
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
    // The largest frame fits exactly, twice in a row (the second crosses the seam).
    for round in 0..2u8 {
        let max = vec![round; cap - 8];
        tx.try_send(&max).unwrap();
        assert_eq!(tx.try_send(b"").unwrap_err().kind(), ErrorKind::WouldBlock, "the ring is full");
        let frame = rx.try_recv().unwrap().unwrap();
        assert_eq!(&*frame, &max[..]);
    }
    tx.send(b"after").unwrap();
    drop(tx);
    assert_eq!(&*rx.recv().unwrap().unwrap(), b"after");
    assert!(rx.recv().unwrap().is_none());
}

/// `send_batch` stops before a message that is too long, at a full ring and at a closed
/// consumer; the next call, starting with that message, reports why; nothing sent is lost and
/// nothing unsent goes out.
#[test]
fn send_batch_stops_where_a_message_cannot_go_and_the_next_call_says_why() {
    let (tx, rx) = channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let cap = tx.capacity();
    let long = vec![9u8; cap - 7];
    let msgs: [&[u8]; 5] = [b"one", b"", b"three", &long, b"five"];
    assert_eq!(tx.try_send_batch(&msgs).unwrap(), 3);
    assert_eq!(tx.try_send_batch(&msgs[3..]).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(tx.send_batch(&msgs[4..]).unwrap(), 1);
    assert_eq!(tx.send_batch::<&[u8]>(&[]).unwrap(), 0);
    let mut got = Vec::new();
    assert_eq!(rx.try_recv_batch(|f| got.push(f.to_vec())).unwrap(), 4);
    assert_eq!(got, [&b"one"[..], b"", b"three", b"five"]);

    // A full ring (everything above was received and released): 100-byte messages take 112
    // bytes with their header, and the last needs the 8-byte mark after it: with 4 KiB,
    // 36 * 112 + 8 = 4040 bytes fit in 4096, 37 would not.
    let fit = (cap - 8) / 112;
    let msgs = vec![[7u8; 100]; fit + 24];
    let sent = tx.try_send_batch(&msgs).unwrap();
    assert_eq!(sent, fit);
    assert_eq!(tx.try_send_batch(&msgs[sent..]).unwrap_err().kind(), ErrorKind::WouldBlock);
    let err = tx.send_batch_timeout(&msgs[sent..], Duration::from_millis(5)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    let mut n = 0;
    while n < sent {
        n += rx.try_recv_batch(|f| assert_eq!(f, &[7u8; 100][..])).unwrap();
    }
    assert_eq!(n, sent);
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);

    drop(rx);
    assert_eq!(tx.send_batch(&[b"late"]).unwrap_err().kind(), ErrorKind::BrokenPipe);
    assert_eq!(tx.try_send_batch(&[b"late"]).unwrap_err().kind(), ErrorKind::BrokenPipe);
}

/// Frames of `set_batch` held back go out with a `send_batch`, first, in order.
/// A frame of "abc" as a producer would write it at position 0 (the wire format of
/// `docs::framing`: the stamped header, the payload padded to 8 bytes, the clear mark after).
fn frame_shaped_bytes(buf: &mut [u8]) {
    buf[..8].copy_from_slice(&stamped_word(0, 3).to_le_bytes());
    buf[8..16].copy_from_slice(b"abc\0\0\0\0\0");
    buf[16..24].fill(0);
}

/// A source that writes into the space it is lent, then fails.
struct FailsAfterWriting;

impl Read for FailsAfterWriting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        frame_shaped_bytes(buf);
        Err(std::io::Error::new(ErrorKind::ConnectionReset, "the source failed"))
    }
}

/// Bytes a producer wrote into its free space and did not commit (a dropped grant, a
/// `read_from` whose reader failed) stay unpublished when it turns framed, even where they
/// look like a frame at the head: only a producer that took its role over from a dead one
/// looks there for a frame to cover (`docs::lifecycle`, "Restart"). Before, every new producer
/// did, and a framed consumer received a message nobody sent.
#[test]
fn into_framed_publishes_nothing_that_was_not_committed() {
    let (mut tx, rx) = channel(4096).unwrap();
    let mut grant = tx.write_grant(32).unwrap();
    frame_shaped_bytes(&mut grant);
    drop(grant);
    let tx = tx.into_framed();
    assert_eq!(rx.len(), 0, "into_framed published a dropped grant's bytes");
    let mut rx = rx.into_framed();
    assert_eq!(rx.try_recv().map(|f| f.map(|f| f.to_vec())).unwrap_err().kind(), ErrorKind::WouldBlock);
    drop((tx, rx));

    let (mut tx, rx) = channel(4096).unwrap();
    assert_eq!(tx.read_from(&mut FailsAfterWriting).unwrap_err().kind(), ErrorKind::ConnectionReset);
    let mut tx = tx.into_framed();
    let mut rx = rx.into_framed();
    assert_eq!(
        rx.try_recv().map(|f| f.map(|f| f.to_vec())).unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "a frame the producer never sent was delivered"
    );
    tx.send(b"sent").unwrap();
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"sent");
}

/// Frames written through the byte API, as `docs::framing` asks (whole, unstamped headers),
/// to a framed consumer: the byte producer writes no clear mark after its last frame, so the
/// word at its head is whatever an earlier lap left, and a payload may hold there exactly the
/// stamped header of that position. The consumer must not take it (a `Frame` over the
/// producer's free space, which its next write changes under the `&[u8]`): frames written
/// unstamped are taken through head only. And the stream goes on as sent.
#[test]
fn frames_written_through_the_byte_api_are_taken_through_head_only() {
    let (mut tx, rx) = channel(4096).unwrap();
    let cap = tx.capacity() as u64;
    let mut rx = rx.into_framed();
    // Lap 1: one frame of `cap - 16` bytes at 0 (4080 with 4 KiB), whose payload words read as
    // the stamped headers of 64-byte frames one lap later at their places.
    let first = cap as u32 - 16;
    let mut frame = unstamped(0, first).to_vec();
    for i in 0..u64::from(first) / 8 {
        frame.extend_from_slice(&stamped_word(8 + 8 * i + cap, 64).to_le_bytes());
    }
    tx.write_all(&frame).unwrap();
    assert_eq!(rx.try_recv().unwrap().unwrap().len(), first as usize);
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
    // Lap 2: one 8-byte frame at `cap - 8`. The producer's head is then `cap + 8`, where lap 1
    // left a word that reads as a stamped 64-byte frame.
    let mut second = unstamped(cap - 8, 8).to_vec();
    second.extend_from_slice(b"secondms");
    tx.write_all(&second).unwrap();
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"secondms");
    match rx.try_recv() {
        Err(e) => assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}"),
        Ok(f) => panic!("a frame nobody sent, in the producer's free space: {:?}", f.map(|f| f.len())),
    }
    // The next frame, then the end.
    let mut third = unstamped(cap + 8, 64).to_vec();
    third.extend_from_slice(&[0xEE; 64]);
    tx.write_all(&third).unwrap();
    drop(tx);
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), &[0xEE; 64]);
    assert!(rx.try_recv().unwrap().is_none());
}

/// A framed producer turned back into a byte producer (`into_inner`) writes no clear mark:
/// a consumer that trusted its stamps must stop before any of its bytes can be taken for one.
/// Here the byte end's first 16 bytes hold exactly the stamped header of a 64-byte frame at
/// that position: taken by its stamp, that frame would reach 56 bytes into the producer's free
/// space, lent as a `&[u8]` that its next write changes. Through head, it is what it is: part
/// of a frame below head, corruption.
#[test]
fn a_producer_back_to_bytes_ends_the_stamps_its_consumer_trusts() {
    let (tx, rx) = channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    for msg in [&b"first"[..], b"second"] {
        tx.send(msg).unwrap();
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), msg);
    }
    let mut tx = tx.into_inner();
    let at = 2 * 16; // after the two frames
    let mut bytes = stamped_word(at, 64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0xEE; 8]);
    tx.write_all(&bytes).unwrap();
    let got = rx.try_recv().map(|f| f.map(|f| f.len()));
    assert_eq!(got.map_err(|e| e.kind()), Err(ErrorKind::InvalidData), "bytes taken for a frame by their stamp?");
}

/// A message whose `as_ref` answers its `answers` in turn, the last one from then on (safe
/// code may do that: one that reads a buffer another thread fills, say).
struct ShapeShifter {
    calls: std::cell::Cell<usize>,
    answers: Vec<Vec<u8>>,
}

impl ShapeShifter {
    fn new(answers: &[usize], byte: u8) -> ShapeShifter {
        ShapeShifter { calls: Default::default(), answers: answers.iter().map(|&n| vec![byte; n]).collect() }
    }
}

impl AsRef<[u8]> for ShapeShifter {
    fn as_ref(&self) -> &[u8] {
        let n = self.calls.get();
        self.calls.set(n + 1);
        &self.answers[n.min(self.answers.len() - 1)]
    }
}

/// `send_batch` writes, for each message, the slice whose length claimed its room: asking
/// `as_ref` again let safe code copy a longer slice into room claimed for a shorter one, over
/// a frame the consumer still holds (a `&[u8]` changed under it) or past the end of the
/// mapping. For the first message, which the call claims room for, and for the first of a
/// further run, which is claimed afresh after it did not fit in the run before.
#[test]
fn send_batch_writes_the_slice_it_claimed_room_for() {
    let (tx, rx) = channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let cap = tx.capacity();
    tx.send(&[0xAA; 2000]).unwrap();
    let held = rx.try_recv().unwrap().unwrap();
    assert_eq!(tx.send_batch(&[ShapeShifter::new(&[0, cap - 8], 0x55)]).unwrap(), 1);
    assert!(held.iter().all(|&b| b == 0xAA), "send_batch overwrote a frame the consumer holds");
    drop(held);
    assert_eq!(rx.try_recv().unwrap().unwrap().len(), 0, "the slice that claimed the room is the one sent");
    // A run takes at most an eighth of the ring (512 bytes with 4 KiB) after its first frame:
    // 88 bytes more (600 with 4 KiB) do not fit, so the second message opens a run of its own,
    // claimed by the length it answers then.
    let msgs = [ShapeShifter::new(&[200], 1), ShapeShifter::new(&[cap / 8 + 88, 8, cap - 96], 2)];
    assert_eq!(tx.try_send_batch(&msgs).unwrap(), 2);
    let mut got = Vec::new();
    while let Ok(Some(f)) = rx.try_recv() {
        got.push((f.len(), f[0]));
    }
    assert_eq!(got, [(200, 1), (8, 2)]);
}

#[test]
fn send_batch_publishes_the_frames_set_batch_held_back_first() {
    let (tx, rx) = channel(1 << 16).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    tx.set_batch(100);
    tx.send(b"held 1").unwrap();
    tx.send(b"held 2").unwrap();
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
    assert_eq!(tx.send_batch(&[b"batch 1", b"batch 2"]).unwrap(), 2);
    let mut got = Vec::new();
    while got.len() < 4 {
        rx.try_recv_batch(|f| got.push(String::from_utf8(f.to_vec()).unwrap())).unwrap();
    }
    assert_eq!(got, ["held 1", "held 2", "batch 1", "batch 2"]);
    // The batch setting is kept: the next send is held back again.
    tx.send(b"held 3").unwrap();
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
    tx.flush().unwrap();
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"held 3");
}

#[test]
fn zero_length_frames_are_frames() {
    let _dog = watchdog("zero_length_frames_are_frames", HANG);
    let (tx, rx) = channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    // `cap / 8` empty frames (512 with 4 KiB) fill the ring exactly (8 bytes each).
    let frames = tx.capacity() / 8;
    for _ in 0..frames {
        tx.try_send(&[]).unwrap();
    }
    assert_eq!(tx.try_send(&[]).unwrap_err().kind(), ErrorKind::WouldBlock);
    assert_eq!(tx.try_reserve(0).unwrap_err().kind(), ErrorKind::WouldBlock);
    drop(tx);
    let mut n = 0;
    while let Some(frame) = rx.recv().unwrap() {
        assert!(frame.is_empty());
        n += 1;
    }
    assert_eq!(n, frames);
}

#[test]
fn dropping_a_frame_releases_its_bytes() {
    let (tx, rx) = channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let len = tx.capacity() / 4 - 8; // a quarter of the ring each, with the header
    for i in 0..4u8 {
        tx.try_send(&vec![i; len]).unwrap();
    }
    assert_eq!(tx.try_send(&[]).unwrap_err().kind(), ErrorKind::WouldBlock);
    let frame = rx.try_recv().unwrap().unwrap();
    assert_eq!(frame[0], 0);
    // Still held: no room.
    assert_eq!(tx.try_send(&[]).unwrap_err().kind(), ErrorKind::WouldBlock);
    drop(frame);
    tx.try_send(&vec![4; len]).unwrap();
    assert_eq!(tx.try_send(&[]).unwrap_err().kind(), ErrorKind::WouldBlock);
    for i in 1..5u8 {
        assert_eq!(rx.try_recv().unwrap().unwrap()[len - 1], i);
    }
}

#[test]
fn frames_cross_the_seam_many_times_single_threaded() {
    // Release-mode check of the aliasing rules: frames written through view B and read
    // through view A in one thread.
    for backend in available() {
        let (tx, rx) = RingOptions::new().capacity(4096).backend(backend).build().unwrap();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        let cap = tx.capacity();
        let payloads = Payloads::new();
        let mut rng = Rng::new(seed() ^ 5);
        let (mut pos, mut crossings) = (0usize, 0u32);
        for i in 0..20_000u64 {
            // Up to 600 bytes in a 4 KiB ring, as many in proportion in a larger one: as many
            // crossings.
            let len = rng.up_to(600 * (cap / 4096));
            let msg = payloads.of(i, len);
            if i % 2 == 0 {
                tx.try_send(msg).unwrap();
            } else {
                let mut g = tx.try_reserve(len).unwrap();
                g.copy_from_slice(msg);
                g.commit().unwrap();
            }
            let frame = rx.try_recv().unwrap().unwrap();
            check_frame(&frame, msg, i);
            let size = 8 + len.div_ceil(8) * 8;
            if pos % cap + size > cap {
                crossings += 1;
            }
            pos += size;
        }
        assert!(crossings > 1000, "{backend}: only {crossings} frames crossed the seam");
    }
}

#[test]
fn frames_cross_the_seam_many_times_between_threads() {
    let _dog = watchdog("frames_cross_the_seam_many_times_between_threads", HANG);
    // Sizes that do not divide the capacity, in a small ring, so frame after frame straddles
    // the seam, and many frames are in flight at once.
    let (tx, rx) = RingOptions::new().capacity(4096).build().unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let count = 100_000 * scale() as u64;
    let seed = seed() ^ 9;
    let writer = thread::spawn(move || send_frames(&mut tx, count, seed, 700));
    recv_frames(&mut rx, count, seed, 700);
    writer.join().unwrap();
}

#[test]
fn batched_frames_wait_for_flush_and_drop_publishes_them() {
    let _dog = watchdog("batched_frames_wait_for_flush_and_drop_publishes_them", HANG);
    let (tx, rx) = channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let cap = tx.capacity();
    tx.set_batch(100);
    for i in 0..5u8 {
        tx.send(&[i; 3]).unwrap();
    }
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock, "published before the batch ended");
    tx.flush().unwrap();
    for i in 0..5u8 {
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), &[i; 3]);
    }
    // (A full ring publishing what is pending: `a_full_ring_publishes_pending_frames_...`.)
    // The batch limit publishes by itself, with the n-th frame.
    tx.set_batch(3);
    for i in 0..2u8 {
        tx.send(&[i]).unwrap();
    }
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock, "published before the batch was full");
    tx.send(&[2]).unwrap();
    for i in 0..3u8 {
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), &[i]);
    }
    // A quarter of the ring pending publishes whatever the count: 1024 bytes with 4 KiB.
    tx.set_batch(1000);
    let len = 300 * (cap / 4096); // with 4 KiB, 312 bytes each with the header and padding
    for i in 0..3u8 {
        tx.send(&vec![i; len]).unwrap();
    }
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
    tx.send(&vec![3; len]).unwrap(); // 1248 >= 1024 with 4 KiB
    for i in 0..4u8 {
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), &vec![i; len][..]);
    }
    // Dropping the producer publishes the rest.
    tx.send(b"last").unwrap();
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
    drop(tx);
    assert_eq!(&*rx.recv().unwrap().unwrap(), b"last");
    assert!(rx.recv().unwrap().is_none());
}

/// How a producer meets a full ring with frames pending in its batch.
#[derive(Clone, Copy, Debug, PartialEq)]
enum OnFull {
    /// It does not try again: the control case, the pending frames stay invisible.
    Nothing,
    TrySend,
    TryReserve,
    SendTimeout,
}

/// A full ring publishes what is pending, also on a call that fails: frames held back by the
/// batch would otherwise wait for a consumer that cannot make room before it sees them.
#[test]
fn a_full_ring_publishes_pending_frames_when_a_send_fails() {
    for on_full in [OnFull::Nothing, OnFull::TrySend, OnFull::TryReserve, OnFull::SendTimeout] {
        let (tx, rx) = channel(4096).unwrap();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        // All but 896 bytes published (3200 with 4 KiB; no batching yet) ...
        let big = tx.capacity() - 896 - 8;
        tx.try_send(&vec![7; big]).unwrap();
        // ... then 56 frames of 16 bytes batched: 896 bytes, under both the batch count (100)
        // and a quarter of the ring (1024 or more), so nothing publishes them, and the ring is
        // full.
        tx.set_batch(100);
        for i in 0..56u32 {
            tx.try_send(&i.to_le_bytes()).unwrap();
        }
        let failed = match on_full {
            OnFull::Nothing => None,
            OnFull::TrySend => Some(tx.try_send(&[0; 100]).unwrap_err()),
            OnFull::TryReserve => Some(tx.try_reserve(100).unwrap_err()),
            OnFull::SendTimeout => Some(tx.send_timeout(&[0; 100], Duration::from_millis(1)).unwrap_err()),
        };
        let want = if on_full == OnFull::SendTimeout { ErrorKind::TimedOut } else { ErrorKind::WouldBlock };
        if let Some(e) = failed {
            assert_eq!(e.kind(), want, "{on_full:?}: {e}");
        }
        assert_eq!(rx.try_recv().unwrap().unwrap().len(), big, "{on_full:?}");
        if on_full == OnFull::Nothing {
            let e = rx.try_recv().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WouldBlock, "control: the 56 frames must still be pending");
            continue;
        }
        for i in 0..56u32 {
            match rx.try_recv() {
                Ok(Some(f)) => assert_eq!(&*f, &i.to_le_bytes(), "{on_full:?}"),
                other => panic!(
                    "{on_full:?}: frame {i} of 56 pending was not published: {:?}",
                    other.map(|f| f.map(|f| f.len()))
                ),
            }
        }
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
    }
}

/// A producer that blocks on a full ring publishes its pending frames before it sleeps (not
/// only when a send gives up): once it has woken and sent, nothing else publishes them here,
/// so the consumer sees them only if they went out before the sleep.
#[test]
fn a_producer_blocking_on_a_full_ring_publishes_its_pending_frames_first() {
    let _dog = watchdog("a_producer_blocking_on_a_full_ring_publishes_its_pending_frames_first", HANG);
    let (mut tx, rx) = RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).build().unwrap();
    let hdr = tx.write_grant(1).unwrap().as_ptr() as usize - page_size();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    // As in the test above: all but 896 bytes published, then 56 frames (896 bytes) pending,
    // and full.
    let big = tx.capacity() - 896 - 8;
    tx.try_send(&vec![7; big]).unwrap();
    tx.set_batch(100);
    for i in 0..56u32 {
        tx.try_send(&i.to_le_bytes()).unwrap();
    }
    let (tid_tx, tid_rx) = mpsc::channel();
    let writer = thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        // 112 bytes: only the big frame's release makes room. The frame it then writes stays
        // pending too (1008 bytes in all, under a quarter of the ring; the consumer awake), so
        // only a publish before the sleep makes the 56 visible.
        tx.send(&[9; 100]).unwrap();
        tx // handed back unflushed: dropping it would publish
    });
    wait_until_parked(tid_rx.recv().unwrap(), hdr);
    assert_eq!(rx.try_recv().unwrap().unwrap().len(), big);
    let mut tx = writer.join().unwrap();
    for i in 0..56u32 {
        match rx.try_recv() {
            Ok(Some(f)) => assert_eq!(&*f, &i.to_le_bytes()),
            other => panic!("frame {i} of 56 pending was not published: {:?}", other.map(|f| f.map(|f| f.len()))),
        }
    }
    tx.flush().unwrap();
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), &[9; 100]);
}

/// Whether thread `tid` of this process is blocked in a futex system call on a word inside
/// `[lo, lo + len)` (`/proc/self/task/<tid>/syscall`: the number, then the arguments).
fn parked_on(tid: libc::pid_t, lo: usize, len: usize) -> bool {
    let Ok(s) = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")) else { return false };
    let mut f = s.split_whitespace();
    let nr = f.next().and_then(|n| n.parse::<libc::c_long>().ok());
    let addr = f.next().and_then(|a| usize::from_str_radix(a.trim_start_matches("0x"), 16).ok());
    nr == Some(libc::SYS_futex) && addr.is_some_and(|a| (lo..lo + len).contains(&a))
}

/// Waits (boundedly) until thread `tid` has been parked on a futex word of the ring header at
/// `hdr` for a while: seen there twice, 20 ms apart.
fn wait_until_parked(tid: libc::pid_t, hdr: usize) {
    let until = Instant::now() + WAKE;
    loop {
        if parked_on(tid, hdr, page_size()) {
            thread::sleep(Duration::from_millis(20));
            if parked_on(tid, hdr, page_size()) {
                return;
            }
        }
        assert!(Instant::now() < until, "thread {tid} never parked on the ring's futex word");
        thread::sleep(Duration::from_millis(1));
    }
}

/// A consumer asleep in `recv` gets batched frames without a flush: the send that finds it
/// asleep publishes. The ring is 64 KiB (a quarter is 16 KiB) and the batch a million frames,
/// so for the one 16-byte frame sent per round neither the batch count nor the quarter-ring
/// rule fires: without the "consumer is asleep" rule the frame stays pending and the consumer
/// sleeps on (past the bound).
#[test]
fn a_sleeping_consumer_gets_batched_frames_without_flush() {
    let _dog = watchdog("a_sleeping_consumer_gets_batched_frames_without_flush", HANG);
    let (mut tx, rx) = RingOptions::new().capacity(64 * 1024).spin_budget(Duration::ZERO).build().unwrap();
    // Nothing written yet: the free space starts at view A, one page after the header.
    let hdr = tx.write_grant(1).unwrap().as_ptr() as usize - page_size();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    tx.set_batch(1_000_000);
    let (tid_tx, tid_rx) = mpsc::channel();
    let (got_tx, got_rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        while let Some(frame) = rx.recv().unwrap() {
            if got_tx.send(frame.to_vec()).is_err() {
                break;
            }
        }
    });
    let tid = tid_rx.recv().unwrap();
    // Round 0 takes the batched fast path of `send`, round 1 the general path (a grant's commit).
    for round in 0..2u8 {
        wait_until_parked(tid, hdr);
        if round == 0 {
            tx.send(&[round]).unwrap();
        } else {
            let mut g = tx.reserve(1).unwrap();
            g[0] = round;
            g.commit().unwrap();
        }
        match got_rx.recv_timeout(WAKE) {
            Ok(frame) => assert_eq!(frame, [round]),
            Err(_) => panic!("round {round}: the sleeping consumer did not get the batched frame within {WAKE:?}"),
        }
    }
    drop(tx);
    reader.join().unwrap();
}

#[test]
fn send_after_the_consumer_left_is_broken_pipe_and_recv_after_close_is_none() {
    let _dog = watchdog("send_after_the_consumer_left_is_broken_pipe_and_recv_after_close_is_none", HANG);
    let (tx, rx) = channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    tx.send(b"a").unwrap();
    assert!(!rx.is_abandoned());
    drop(tx);
    assert!(rx.is_abandoned());
    assert_eq!(&*rx.recv().unwrap().unwrap(), b"a");
    assert!(rx.try_recv().unwrap().is_none());
    assert!(rx.recv_timeout(Duration::from_millis(1)).unwrap().is_none());

    let (tx, rx) = channel(4096).unwrap();
    let mut tx = tx.into_framed();
    drop(rx);
    assert!(tx.is_abandoned());
    for err in [tx.send(b"x").unwrap_err(), tx.try_send(b"x").unwrap_err(), tx.reserve(1).unwrap_err()] {
        assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    }
}

#[test]
fn timeouts_expire() {
    let _dog = watchdog("timeouts_expire", HANG);
    let (tx, rx) = channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    // 88 bytes stay free (4000 bytes sent with 4 KiB): not room for 100 more.
    let big = tx.capacity() - 96;
    // Each call waits out its timeout (not less) and then gives up with TimedOut.
    let t = Duration::from_millis(5);
    let expires = |what: &str, started: Instant, kind: ErrorKind| {
        assert_eq!(kind, ErrorKind::TimedOut, "{what}");
        assert!(started.elapsed() >= t, "{what} gave up after {:?}, before its {t:?}", started.elapsed());
    };
    let started = Instant::now();
    expires("recv_timeout", started, rx.recv_timeout(t).unwrap_err().kind());
    tx.send(&vec![0; big]).unwrap();
    let started = Instant::now();
    expires("send_timeout", started, tx.send_timeout(&[0; 100], t).unwrap_err().kind());
    let started = Instant::now();
    expires("reserve_timeout", started, tx.reserve_timeout(100, t).unwrap_err().kind());
    assert_eq!(rx.recv_timeout(t).unwrap().unwrap().len(), big);
}

#[test]
fn a_truncated_grant_sends_its_real_size_and_a_dropped_grant_sends_nothing() {
    let _dog = watchdog("a_truncated_grant_sends_its_real_size_and_a_dropped_grant_sends_nothing", HANG);
    let (tx, rx) = channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let cap = tx.capacity();
    let mut g = tx.reserve(cap - 8).unwrap();
    g[..5].copy_from_slice(b"hello");
    g.truncate(5);
    assert_eq!(g.len(), 5);
    g.commit().unwrap();
    let g = tx.reserve_timeout(100, WAKE).unwrap();
    drop(g);
    // While "hello" is still held, a truncated frame takes only its real size: 16 bytes, so
    // exactly `cap - 16` remain (4080 with 4 KiB).
    let hello = rx.try_recv().unwrap().unwrap();
    assert_eq!(&*hello, b"hello");
    tx.try_send(&vec![1; cap - 24]).unwrap();
    assert_eq!(tx.try_send(&[]).unwrap_err().kind(), ErrorKind::WouldBlock, "the ring is full");
    drop(hello);
    // The dropped grant sent nothing: the next frame is the one sent after it.
    assert_eq!(rx.try_recv().unwrap().unwrap().len(), cap - 24);
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
}

#[test]
fn ends_are_send_and_debug_shows_sizes_not_bytes() {
    let _dog = watchdog("ends_are_send_and_debug_shows_sizes_not_bytes", HANG);
    fn send<T: Send>() {}
    send::<FramedProducer>();
    send::<FramedConsumer>();
    let (tx, rx) = channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    tx.send(b"secret").unwrap();
    let cap = tx.capacity();
    let d = format!("{tx:?} {rx:?}");
    let (max, cap) = (format!("max_frame_len: {}", cap - 8), format!("capacity: {cap}"));
    assert!(d.contains(&max) && d.contains(&cap) && !d.contains("secret"), "{d}");
    let g = tx.reserve(3).unwrap();
    assert_eq!(format!("{g:?}"), "FrameGrant { len: 3 }");
    drop(g);
    let f = rx.recv().unwrap().unwrap();
    assert_eq!(format!("{f:?}"), "Frame { len: 6 }");
}

#[test]
fn into_inner_gives_the_byte_ends_back() {
    let _dog = watchdog("into_inner_gives_the_byte_ends_back", HANG);
    let (tx, rx) = channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    tx.set_batch(10);
    tx.send(b"framed").unwrap();
    let mut raw_tx = tx.into_inner(); // publishes the pending frame
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"framed");
    raw_tx.write_all(b"raw").unwrap();
    let raw_rx = rx.into_inner();
    let mut raw_rx = raw_rx;
    let g = raw_rx.read_grant(3).unwrap();
    assert_eq!(&*g, b"raw");
}

// ---------------------------------------------------------------------------------------------
// Corrupt headers: a hostile or broken producer writes garbage where a frame header belongs.
// ---------------------------------------------------------------------------------------------

/// Publishes `bytes` with a raw producer, then reads with a framed consumer: the first recv
/// must fail with `InvalidData`, without panicking, and so must every later call, also after
/// a well-formed frame follows; the producer side learns of the poison too.
fn assert_poisons(bytes: &[u8], what: &str) {
    let (mut raw, rx) = channel(4096).unwrap();
    raw.write_all(bytes).unwrap();
    let mut rx = rx.into_framed();
    let err = rx.try_recv().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{what}: {err}");
    // A good frame afterwards does not un-poison it. (It must really be in the ring: after
    // it, a header that claimed more bytes than were published would fit, so a consumer that
    // forgot the poison would hand out a frame.)
    let mut tx = raw.into_framed();
    tx.try_send(b"good").unwrap_or_else(|e| panic!("{what}: the good frame was not sent: {e}"));
    for _ in 0..3 {
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::InvalidData, "{what}");
        assert_eq!(rx.recv().unwrap_err().kind(), ErrorKind::InvalidData, "{what}");
        assert_eq!(rx.recv_timeout(Duration::from_millis(1)).unwrap_err().kind(), ErrorKind::InvalidData);
    }
    // The producer sees the shared poison flag as soon as it has to wait.
    assert_eq!(producer_error(&mut tx).kind(), ErrorKind::InvalidData, "{what}");
}

/// Sends until the producer gets an error other than `TimedOut` (a poisoned ring is noticed
/// when the producer has to wait for space).
fn producer_error(tx: &mut FramedProducer) -> std::io::Error {
    for _ in 0..10_000 {
        match tx.send_timeout(&[0; 500], Duration::from_millis(1)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::TimedOut => {}
            Err(e) => return e,
        }
    }
    panic!("the producer never noticed the poisoned ring");
}

/// The capacity of `channel(4096)`: 4 KiB, or one page where pages are larger.
fn small_capacity() -> usize {
    channel(4096).unwrap().0.capacity()
}

/// [`stamped_word`] as bytes.
fn stamped(pos: u64, len: u32) -> [u8; 8] {
    stamped_word(pos, len).to_le_bytes()
}

/// The same frame's header before its stamp (state `01`): what a producer writes first.
fn unstamped(pos: u64, len: u32) -> [u8; 8] {
    (stamped_word(pos, len) ^ (3 << 62)).to_le_bytes()
}

/// A peer that scribbles on a framed ring *while both ends run*: it writes plausible frame
/// headers (stamped for the right position and for a lap earlier, unstamped, zero, the "no
/// frame" pattern, random words, lengths at and past the maximum) around both cursors, and,
/// with `header_too`, plausible cursor values and waiter words. Meanwhile a framed producer and
/// a framed consumer use every send and receive call with 3 ms timeouts. Nothing may crash,
/// panic, hand out a frame longer than the maximum, take longer than [`LIVE`] per call, or
/// fail with a kind the API does not name. Rounds of 40 ms in a forked child, each on a fresh
/// ring; most end at the first `InvalidData` (the scribbles are found), which is the point.
fn scribbled_rounds(header_too: bool, rounds: usize) -> i32 {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    // Offsets in the header page (header.rs, the layout table).
    const HEAD: usize = 128;
    const TAIL: usize = 256;
    const DATA_WAITER: usize = 384;
    const SPACE_WAITER: usize = 512;
    fn word(addr: usize) -> &'static AtomicU64 {
        // SAFETY: aligned, inside the ring, which outlives the scribbler (scoped thread); every
        // access to it is atomic, here and in the ring.
        unsafe { &*(addr as *const AtomicU64) }
    }
    fn scribble(hdr: usize, cap: usize, stop: &AtomicBool, writes: &AtomicU64, seed: u64, header_too: bool) {
        let (data, max, mut rng) = (hdr + page_size(), cap - 8, Rng::new(seed));
        while !stop.load(Ordering::Relaxed) {
            let (h, t) = (word(hdr + HEAD).load(Ordering::Relaxed), word(hdr + TAIL).load(Ordering::Relaxed));
            let base = match rng.up_to(3) {
                0 => t,
                1 => h,
                2 => t.wrapping_add(rng.up_to(cap) as u64),
                _ => h.wrapping_sub(rng.up_to(cap) as u64),
            } & !7;
            let pos = base.wrapping_add(8 * rng.up_to(8) as u64);
            let len = match rng.up_to(5) {
                0 => max as u32,
                1 => (max + 1) as u32,
                2 => rng.up_to(64) as u32,
                3 => rng.up_to(max) as u32,
                4 => (max - 8 * rng.up_to(4)) as u32,
                _ => rng.next_u64() as u32,
            };
            let stamp_bits = ((pos >> 3) & 0x3FFF_FFFF) << 32;
            let at = data + (pos as usize & (cap - 1));
            match rng.up_to(if header_too { 10 } else { 6 }) {
                0 | 1 => word(at).store(stamped_word(pos, len).to_le(), Ordering::Release),
                2 => word(at).store((stamped_word(pos, len) ^ 3 << 62).to_le(), Ordering::Release),
                3 => word(at).store(0, Ordering::Release),
                4 => word(at).store(stamped_word(pos.wrapping_sub(cap as u64), len).to_le(), Ordering::Release),
                5 => word(at).store((u64::MAX ^ stamp_bits).to_le(), Ordering::Release),
                6 => word(at).store(rng.next_u64(), Ordering::Release),
                7 => word(hdr + HEAD).store(h.wrapping_add(8 * rng.up_to(cap / 4) as u64), Ordering::Release),
                8 => word(hdr + TAIL).store(t.wrapping_add(8 * rng.up_to(cap / 8) as u64), Ordering::Release),
                9 => word(hdr + DATA_WAITER).store(rng.up_to(2) as u64, Ordering::Relaxed),
                _ => word(hdr + SPACE_WAITER).store(rng.up_to(2) as u64, Ordering::Relaxed),
            }
            writes.fetch_add(1, Ordering::Relaxed);
            for _ in 0..rng.up_to(200) {
                std::hint::spin_loop();
            }
        }
    }
    // Each call: Ok(Some(longest frame)), Ok(None) at an end of stream (a forged close), or
    // the error, which must be one the API names.
    fn judge(r: std::io::Result<Option<usize>>, took: Duration, max: usize) -> Result<Option<bool>, String> {
        if took > LIVE {
            return Err(format!("a call took {took:?}"));
        }
        match r {
            Ok(Some(n)) if n > max => Err(format!("a frame of {n} bytes, max {max}")),
            Ok(Some(_)) => Ok(Some(true)),
            Ok(None) => Ok(None),
            Err(e) => match e.kind() {
                ErrorKind::InvalidData | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof => Ok(None),
                ErrorKind::ConnectionAborted | ErrorKind::WouldBlock | ErrorKind::TimedOut => Ok(Some(false)),
                _ => Err(format!("{:?}: {e}", e.kind())),
            },
        }
    }
    fn consume(rx: &mut FramedConsumer, until: Instant, mut rng: Rng) -> Result<u64, String> {
        let (max, wait, mut buf, mut frames) = (rx.max_frame_len(), Duration::from_millis(3), Vec::new(), 0);
        let mut sum = 0u64;
        let mut add = |f: &[u8]| sum = f.iter().fold(sum, |a, &b| a.wrapping_add(u64::from(b)));
        while Instant::now() < until {
            let start = Instant::now();
            let mut longest = 0;
            let mut take = |f: &[u8]| {
                longest = longest.max(f.len());
                add(f);
            };
            let r = match rng.up_to(4) {
                0 => rx.recv_timeout(wait).map(|f| f.map(|f| (take(&f), f.len()).1)),
                1 => rx.try_recv().map(|f| f.map(|f| (take(&f), f.len()).1)),
                2 => rx.recv_into_timeout(&mut buf, wait),
                3 => rx.recv_batch_timeout(wait, &mut take).map(|n| (n > 0).then_some(longest)),
                _ => rx.try_recv_batch(&mut take).map(|n| (n > 0).then_some(longest)),
            };
            match judge(r, start.elapsed(), max)? {
                Some(got) => frames += u64::from(got),
                None => break,
            }
        }
        std::hint::black_box(sum);
        Ok(frames)
    }
    fn produce(tx: &mut FramedProducer, until: Instant, mut rng: Rng) -> Result<u64, String> {
        let (max, wait, mut sent) = (tx.max_frame_len(), Duration::from_millis(3), 0);
        let msg = vec![0xa5; max];
        while Instant::now() < until {
            let start = Instant::now();
            let len = if rng.up_to(7) == 0 { rng.up_to(max) } else { rng.up_to(100) };
            let r = match rng.up_to(5) {
                0 => tx.send_timeout(&msg[..len], wait),
                1 => tx.try_send(&msg[..len]),
                2 => {
                    let batch: Vec<&[u8]> = (0..1 + rng.up_to(20)).map(|_| &msg[..rng.up_to(64)]).collect();
                    tx.send_batch_timeout(&batch, wait).map(drop)
                }
                3 => tx.reserve_timeout(len, wait).and_then(|mut grant| {
                    grant.fill(7);
                    grant.truncate(rng.up_to(len));
                    grant.commit()
                }),
                4 => {
                    tx.set_batch(1 + rng.up_to(8));
                    Ok(())
                }
                _ => tx.flush(),
            };
            match judge(r.map(|()| Some(0)), start.elapsed(), max)? {
                Some(ok) => sent += u64::from(ok),
                None => break,
            }
        }
        Ok(sent)
    }
    let (mut sent, mut received, mut scribbles) = (0, 0, 0);
    for round in 0..rounds {
        let seed = seed() ^ (round as u64) << 12 ^ u64::from(header_too);
        let ring = RingOptions::new()
            .capacity(4096)
            .backend(mirror_ring::Backend::Memfd)
            .spin_budget(Duration::from_micros(5))
            .shared()
            .unwrap();
        let cap = ring.capacity();
        let mut tx = ring.clone().into_producer().unwrap();
        let rx = ring.clone().into_consumer().unwrap();
        let hdr = tx.write_grant(1).unwrap().as_ptr() as usize - page_size();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        // One honest frame first, through head: from here the consumer trusts stamps.
        tx.send(b"armed").unwrap();
        assert_eq!(&*rx.recv().unwrap().unwrap(), b"armed");
        let (stop, writes) = (AtomicBool::new(false), AtomicU64::new(0));
        let until = Instant::now() + Duration::from_millis(40);
        let (p, c) = thread::scope(|s| {
            let scribbler = s.spawn(|| scribble(hdr, cap, &stop, &writes, seed, header_too));
            let p = s.spawn(|| produce(&mut tx, until, Rng::new(seed ^ 1)));
            let c = s.spawn(|| consume(&mut rx, until, Rng::new(seed ^ 2)));
            let (p, c) = (p.join(), c.join());
            stop.store(true, Ordering::Relaxed);
            scribbler.join().unwrap();
            (p, c)
        });
        match (p, c) {
            (Ok(Ok(p)), Ok(Ok(c))) => {
                (sent, received, scribbles) = (sent + p, received + c, scribbles + writes.into_inner())
            }
            (p, c) => {
                eprintln!("round {round} (seed {seed:#x}): producer {p:?}, consumer {c:?}");
                return 1;
            }
        }
    }
    eprintln!("scribbled on framed ends: {sent} sent, {received} received, {scribbles} scribbles");
    i32::from(sent == 0 || received == 0 || scribbles == 0) * 2
}

#[test]
fn a_peer_scribbling_frame_headers_while_both_ends_run_is_caught() {
    let status = spawn_child(|| scribbled_rounds(false, 60)).wait_within(HANG);
    assert_eq!(status, 0, "1 = a forbidden result (stderr), 2 = nothing was exercised, 101 = a panic, >128 = a crash");
}

#[test]
fn a_peer_scribbling_frame_headers_cursors_and_waiter_words_is_caught() {
    let status = spawn_child(|| scribbled_rounds(true, 60)).wait_within(HANG);
    assert_eq!(status, 0, "1 = a forbidden result (stderr), 2 = nothing was exercised, 101 = a panic, >128 = a crash");
}

#[test]
fn a_corrupt_length_prefix_poisons_the_ring() {
    let _dog = watchdog("a_corrupt_length_prefix_poisons_the_ring", HANG);
    let mut body = vec![0u8; 64];
    // Complement does not match.
    let mut bad = (stamped_word(0, 5) ^ 1 << 32).to_le_bytes().to_vec();
    bad.extend_from_slice(&body[..8]);
    assert_poisons(&bad, "complement mismatch");
    // All zeros (a producer that published memory it never wrote).
    assert_poisons(&[0; 16], "zero header");
    assert_poisons(&[0xff; 16], "all ones");
    // Longer than any frame this ring can hold, with a valid check and stamp.
    let cap = small_capacity();
    for len in [cap as u32 - 7, 1 << 20, u32::MAX] {
        let mut bad = stamped(0, len).to_vec();
        bad.extend_from_slice(&body);
        assert_poisons(&bad, &format!("len {len}"));
    }
    // Well formed, but claims more bytes than were published.
    for (len, published) in [(100u32, 64usize), (57, 56), (1, 0)] {
        let mut bad = stamped(0, len).to_vec();
        body.resize(published, 0);
        bad.extend_from_slice(&body);
        assert_poisons(&bad, &format!("len {len} with {published} published"));
    }
    // A header stamped for another position: the lap before, the next word.
    for pos in [cap as u64, 8] {
        let mut bad = stamped(pos, 8).to_vec();
        bad.extend_from_slice(&[0; 8]);
        assert_poisons(&bad, &format!("stamped for {pos}"));
    }
    // A good frame, then garbage: the good one is delivered, the garbage poisons.
    let (mut raw, rx) = channel(4096).unwrap();
    let mut stream = stamped(0, 3).to_vec();
    stream.extend_from_slice(b"abc\0\0\0\0\0");
    stream.extend_from_slice(&(stamped_word(16, 3) ^ 1).to_le_bytes());
    raw.write_all(&stream).unwrap();
    let mut rx = rx.into_framed();
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"abc");
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::InvalidData);
}

#[test]
fn a_partial_frame_at_end_of_stream_is_invalid_data() {
    let _dog = watchdog("a_partial_frame_at_end_of_stream_is_invalid_data", HANG);
    for cut in [1usize, 4, 7, 9, 15] {
        let (mut raw, rx) = channel(4096).unwrap();
        let mut stream = stamped(0, 8).to_vec();
        stream.extend_from_slice(b"12345678");
        raw.write_all(&stream[..cut]).unwrap();
        drop(raw);
        let mut rx = rx.into_framed();
        assert_eq!(rx.recv().unwrap_err().kind(), ErrorKind::InvalidData, "cut at {cut}");
        assert_eq!(rx.recv().unwrap_err().kind(), ErrorKind::InvalidData);
    }
}

#[test]
fn random_garbage_never_panics() {
    let _dog = watchdog("random_garbage_never_panics", HANG);
    let mut rng = Rng::new(seed() ^ 0xbad);
    for round in 0..500 {
        let (mut raw, rx) = channel(4096).unwrap();
        let cap = raw.capacity();
        let mut junk = vec![0u8; 8 + rng.up_to(cap - 8)];
        rng.fill(&mut junk);
        if round % 2 == 0 {
            // Plausible lengths (some too long for the ring) make the check go further than the
            // complement.
            let len = rng.up_to(cap + cap / 4) as u32;
            junk[..8].copy_from_slice(&stamped(0, len));
        }
        raw.write_all(&junk).unwrap();
        drop(raw);
        let mut rx = rx.into_framed();
        let mut frames = 0;
        loop {
            match rx.recv() {
                Ok(Some(f)) => frames += f.len() + 1,
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::InvalidData);
                    break;
                }
            }
        }
        assert!(frames <= junk.len());
    }
}

// ---------------------------------------------------------------------------------------------
// Across fork
// ---------------------------------------------------------------------------------------------

#[test]
fn frames_cross_fork_child_to_parent() {
    let _dog = watchdog("frames_cross_fork_child_to_parent", HANG);
    for (backend, batch) in available().into_iter().flat_map(|b| [(b, 1), (b, 16)]) {
        let ring = RingOptions::new().capacity(16 * 1024).backend(backend).shared().unwrap();
        let count = 30_000 * scale() as u64;
        let seed = seed() ^ 0xf0;
        let child = ring.clone();
        let mut producer = spawn_child(move || {
            let mut tx = child.into_producer().unwrap().into_framed();
            tx.set_batch(batch);
            send_frames(&mut tx, count, seed, 3000);
            drop(tx); // flushes and closes
            0
        });
        _dog.kill_on_expiry(&producer);
        let mut rx = ring.into_consumer().unwrap().into_framed();
        recv_frames(&mut rx, count, seed, 3000);
        assert_eq!(producer.wait_within(HANG), 0, "{backend} batch {batch}");
    }
}

#[test]
fn frames_cross_fork_parent_to_child() {
    let _dog = watchdog("frames_cross_fork_parent_to_child", HANG);
    let ring = RingOptions::new().capacity(8192).shared().unwrap();
    let count = 30_000 * scale() as u64;
    let seed = seed() ^ 0x0f;
    let child = ring.clone();
    let mut consumer = spawn_child(move || {
        let mut rx = child.into_consumer().unwrap().into_framed();
        recv_frames(&mut rx, count, seed, 5000);
        0
    });
    _dog.kill_on_expiry(&consumer);
    let mut tx = ring.into_producer().unwrap().into_framed();
    send_frames(&mut tx, count, seed, 5000);
    drop(tx);
    assert_eq!(consumer.wait_within(HANG), 0);
}

/// A producer process killed mid-batch while the reader is blocked in `recv`: the frames it
/// published arrive, the ones still pending in its batch are simply not there, and the blocked
/// `recv` returns `UnexpectedEof` (a crash is not a clean end) within [`LIVE`] of the kill,
/// while the dead producer is still an unreaped zombie.
#[test]
fn a_producer_dying_mid_batch_leaves_exactly_its_published_frames() {
    let _dog = watchdog("a_producer_dying_mid_batch_leaves_exactly_its_published_frames", HANG);
    let ring = RingOptions::new().capacity(8192).shared().unwrap();
    let child = ring.clone();
    let (mut ready, ready_child) = UnixStream::pair().unwrap();
    let mut producer = spawn_child(move || {
        let mut tx = child.into_producer().unwrap().into_framed();
        tx.set_batch(1000);
        for i in 0..10u32 {
            tx.send(&i.to_le_bytes()).unwrap();
        }
        tx.flush().unwrap();
        // Pending: 5 frames of 16 bytes, under the batch count and a quarter of the ring, and
        // the consumer has not even claimed its end yet (so it cannot be asleep).
        for i in 10..15u32 {
            tx.send(&i.to_le_bytes()).unwrap();
        }
        (&ready_child).write_all(b"!").unwrap();
        loop {
            thread::sleep(Duration::from_secs(1)); // until killed
        }
    });
    _dog.kill_on_expiry(&producer); // (the closure, with the parent's copy of ready_child, is gone)
    ready.set_read_timeout(Some(HANG)).unwrap();
    let mut byte = [0u8; 1];
    ready.read_exact(&mut byte).expect("the child never sent its frames");
    let mut rx = ring.into_consumer().unwrap().into_framed();
    for i in 0..10u32 {
        assert_eq!(&*rx.recv().unwrap().unwrap(), &i.to_le_bytes());
    }
    // Killed 40 ms in: the reader is asleep in recv by then.
    let (err, latency) =
        producer.kill_during(Duration::from_millis(40), || rx.recv().map(|f| f.map(|f| f.to_vec())).unwrap_err());
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
    assert!(latency < LIVE, "the blocked recv noticed the killed producer only after {latency:?}");
    assert_eq!(producer.state(), 'Z', "noticed through a zombie: not reaped yet");
    assert_eq!(rx.try_recv().map(|f| f.map(|f| f.to_vec())).unwrap_err().kind(), ErrorKind::UnexpectedEof);
    assert_eq!(producer.wait(), 128 + libc::SIGKILL);
}

/// A framed consumer in a forked child reading a corrupt header: `InvalidData`, no crash, and
/// the parent's producer sees the poison.
#[test]
fn a_corrupt_header_across_fork_poisons_both_processes() {
    let _dog = watchdog("a_corrupt_header_across_fork_poisons_both_processes", HANG);
    let ring = RingOptions::new().capacity(4096).shared().unwrap();
    // The child keeps its end open until the parent has checked (it would otherwise close it,
    // and a closed consumer is BrokenPipe first): it waits for EOF on this pipe.
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // The parent's ends, closed on drop also when an assertion below fails first. (The child
    // uses its copies by number: it leaves through `_exit`, which drops nothing.)
    // SAFETY: two descriptors the call just opened, owned by nothing else.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let child = ring.clone();
    let mut consumer = spawn_child(move || {
        // SAFETY: closing the child's copy of the write end, which it does not use.
        unsafe { libc::close(fds[1]) };
        let mut rx = child.into_consumer().unwrap().into_framed();
        let code = match (rx.recv().map(|f| f.is_some()), rx.recv().map(|f| f.is_some())) {
            (Err(a), Err(b)) if a.kind() == ErrorKind::InvalidData && b.kind() == ErrorKind::InvalidData => 0,
            _ => 2,
        };
        let mut byte = 0u8;
        // SAFETY: reads into a valid one-byte buffer; returns 0 at EOF.
        unsafe { libc::read(fds[0], (&mut byte as *mut u8).cast(), 1) };
        code
    });
    _dog.kill_on_expiry(&consumer);
    drop(read_end); // the parent does not use it
    let mut raw = ring.into_producer().unwrap();
    raw.write_all(&stamped(0, 100_000)).unwrap();
    let mut tx = raw.into_framed();
    let err = producer_error(&mut tx);
    drop(write_end); // lets the child finish
    assert_eq!(consumer.wait_within(HANG), 0);
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
}

// ---------------------------------------------------------------------------------------------
// recv_batch
// ---------------------------------------------------------------------------------------------

/// Receives `count` frames through `recv_batch`/`try_recv_batch` and checks each; then expects
/// end of stream.
fn recv_frames_batched(rx: &mut FramedConsumer, count: u64, seed: u64, max: usize) {
    let payloads = Payloads::new();
    let mut sizes = Sizes::new(seed, 0, max);
    let (mut i, mut batches) = (0u64, 0u64);
    while i < count {
        let got = if batches % 2 == 0 {
            rx.recv_batch(|frame| {
                check_frame(frame, payloads.of(i, sizes.next()), i);
                assert_eq!(frame.as_ptr() as usize % 8, 0);
                i += 1;
            })
            .unwrap()
        } else {
            match rx.try_recv_batch(|frame| {
                check_frame(frame, payloads.of(i, sizes.next()), i);
                i += 1;
            }) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => 1, // not end of stream
                Err(e) => panic!("try_recv_batch: {e}"),
            }
        };
        assert!(got > 0, "end of stream before frame {i}");
        batches += 1;
    }
    assert_eq!(i, count);
    assert_eq!(rx.recv_batch(|_| panic!("more frames than were sent")).unwrap(), 0);
}

#[test]
fn recv_batch_delivers_every_frame_whole_and_in_order() {
    let _dog = watchdog("recv_batch_delivers_every_frame_whole_and_in_order", HANG);
    let count = 200_000 * scale() as u64;
    let seed = seed() ^ 0xba7c;
    for (capacity, batch) in [(64 * 1024, 32), (4096, 1)] {
        let (tx, rx) = RingOptions::new().capacity(capacity).build().unwrap();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        tx.set_batch(batch);
        let max = 4096.min(tx.max_frame_len());
        let writer = thread::spawn(move || send_frames(&mut tx, count, seed, max));
        recv_frames_batched(&mut rx, count, seed, max);
        writer.join().unwrap();
    }
}

#[test]
fn a_panicking_batch_callback_releases_the_frames_it_saw() {
    let (tx, rx) = channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    // 64 bytes each: `n` of them fill the ring (64 with 4 KiB). Frame `i` starts with `i`.
    let n = (tx.capacity() / 64) as u32;
    let msg = |i: u32| {
        let mut m = [0u8; 56];
        m[..4].copy_from_slice(&i.to_le_bytes());
        m
    };
    let index = |frame: &[u8]| u32::from_le_bytes(frame[..4].try_into().unwrap());
    for i in 0..n {
        tx.try_send(&msg(i)).unwrap();
    }
    assert_eq!(tx.try_send(&[]).unwrap_err().kind(), ErrorKind::WouldBlock);
    let mut seen = Vec::new();
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rx.try_recv_batch(|frame| {
            seen.push(index(frame));
            if index(frame) == 1 {
                panic!("callback gives up");
            }
        })
    }));
    assert!(unwound.is_err());
    assert_eq!(seen, [0, 1]);
    // Frames 0 and 1 were released: two frames' room, and frame 2 comes next.
    tx.try_send(&msg(n)).unwrap();
    tx.try_send(&msg(n + 1)).unwrap();
    assert_eq!(tx.try_send(&[]).unwrap_err().kind(), ErrorKind::WouldBlock);
    let mut rest = Vec::new();
    while let Ok(k) = rx.try_recv_batch(|frame| rest.push(index(frame))) {
        assert!(k > 0);
    }
    assert_eq!(rest, (2..n + 2).collect::<Vec<u32>>());
}

#[test]
fn a_corrupt_header_mid_batch_delivers_the_good_frames_then_fails() {
    let _dog = watchdog("a_corrupt_header_mid_batch_delivers_the_good_frames_then_fails", HANG);
    let (mut raw, rx) = channel(4096).unwrap();
    let mut stream = Vec::new();
    for i in 0..3u8 {
        stream.extend_from_slice(&stamped(16 * u64::from(i), 8));
        stream.extend_from_slice(&[i; 8]);
    }
    stream.extend_from_slice(&(stamped_word(48, 8) ^ 1).to_le_bytes()); // complement wrong
    stream.extend_from_slice(&[9; 8]);
    raw.write_all(&stream).unwrap();
    let mut rx = rx.into_framed();
    let mut seen = Vec::new();
    assert_eq!(rx.try_recv_batch(|f| seen.push(f.to_vec())).unwrap(), 3);
    assert_eq!(seen, [[0u8; 8], [1; 8], [2; 8]]);
    for _ in 0..2 {
        assert_eq!(
            rx.try_recv_batch(|_| panic!("no frame after the corrupt one")).unwrap_err().kind(),
            ErrorKind::InvalidData
        );
        assert_eq!(rx.recv().unwrap_err().kind(), ErrorKind::InvalidData);
    }
}

/// A run of headers of one length is recognised without decoding each one; the bounds check
/// must still apply to every frame: a header of that length below the published head with too
/// few bytes behind it is corrupt (unstamped, as a producer writes it before the head store).
#[test]
fn a_repeated_header_without_its_payload_is_corrupt() {
    let _dog = watchdog("a_repeated_header_without_its_payload_is_corrupt", HANG);
    for batched in [false, true] {
        let (mut raw, rx) = channel(4096).unwrap();
        let mut stream = Vec::new();
        for i in 0..5u8 {
            stream.extend_from_slice(&stamped(24 * u64::from(i), 16));
            stream.extend_from_slice(&[i; 16]);
        }
        stream.extend_from_slice(&unstamped(120, 16)); // and then the stream ends
        raw.write_all(&stream).unwrap();
        drop(raw);
        let mut rx = rx.into_framed();
        let mut seen = 0u8;
        if batched {
            while let Ok(n) = rx.recv_batch(|f| {
                assert_eq!(f, &[seen; 16]);
                seen += 1;
            }) {
                assert!(n > 0, "end of stream despite the dangling header");
            }
        } else {
            while let Ok(Some(f)) = rx.recv() {
                assert_eq!(&*f, &[seen; 16]);
                seen += 1;
            }
        }
        assert_eq!(seen, 5);
        assert_eq!(rx.recv().unwrap_err().kind(), ErrorKind::InvalidData, "batched {batched}");
        assert_eq!(rx.recv_batch(|_| {}).unwrap_err().kind(), ErrorKind::InvalidData);
    }
}

#[test]
fn recv_batch_across_fork() {
    let _dog = watchdog("recv_batch_across_fork", HANG);
    let ring = RingOptions::new().capacity(16 * 1024).shared().unwrap();
    let count = 30_000 * scale() as u64;
    let seed = seed() ^ 0xf05;
    let child = ring.clone();
    let mut producer = spawn_child(move || {
        let mut tx = child.into_producer().unwrap().into_framed();
        tx.set_batch(8);
        send_frames(&mut tx, count, seed, 3000);
        0
    });
    _dog.kill_on_expiry(&producer);
    let mut rx = ring.into_consumer().unwrap().into_framed();
    recv_frames_batched(&mut rx, count, seed, 3000);
    assert_eq!(producer.wait_within(HANG), 0);
}

#[test]
fn one_batch_takes_at_most_an_eighth_of_the_ring() {
    let (tx, rx) = channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let cap = tx.capacity();
    // 16 bytes each: 3200 of 4096 with 4 KiB, as much of a larger ring.
    let sent = (200 * (cap / 4096)) as u32;
    for i in 0..sent {
        tx.try_send(&i.to_le_bytes()).unwrap();
    }
    let mut next = 0u32;
    let first = rx
        .try_recv_batch(|f| {
            assert_eq!(f, next.to_le_bytes());
            next += 1;
        })
        .unwrap();
    assert_eq!(first, cap / 8 / 16, "the first batch stops after an eighth of the ring");
    // The producer has that room back at once.
    for i in sent..sent + first as u32 {
        tx.try_send(&i.to_le_bytes()).unwrap();
    }
    while rx
        .try_recv_batch(|f| {
            assert_eq!(f, next.to_le_bytes());
            next += 1;
        })
        .is_ok()
    {}
    assert_eq!(next, sent + first as u32);
}

// ---------------------------------------------------------------------------------------------
// Position stamps and lazy releases (docs::framing)
// ---------------------------------------------------------------------------------------------

/// Random streams of frames, each header stamped or not (below the head both are frames), then
/// one bad chunk (a header with a wrong check, stamped for another position or lap, too long,
/// running past what was published, zeros, random bytes), then random bytes: the consumer
/// delivers exactly the good frames, byte for byte, then `InvalidData`, and never panics. When
/// the producer stays open, a bad chunk that reads as "nothing yet" (zeros, a header one lap
/// old) may leave the consumer waiting instead; it must not deliver anything else.
#[test]
fn random_streams_deliver_exactly_their_good_prefix() {
    let _dog = watchdog("random_streams_deliver_exactly_their_good_prefix", HANG);
    let mut rng = Rng::new(seed() ^ 0x5747);
    for round in 0..2000 {
        let (mut raw, rx) = channel(4096).unwrap();
        let cap = raw.capacity() as u64;
        let (mut stream, mut good) = (Vec::new(), Vec::new());
        // Good frames, up to about half the ring.
        while stream.len() < cap as usize / 2 && rng.up_to(9) != 0 {
            let (pos, len) = (stream.len() as u64, rng.up_to(100));
            let mut payload = vec![0u8; len];
            rng.fill(&mut payload);
            let header = if rng.up_to(3) == 0 { unstamped(pos, len as u32) } else { stamped(pos, len as u32) };
            stream.extend_from_slice(&header);
            stream.extend_from_slice(&payload);
            stream.resize(stream.len().next_multiple_of(8), 0);
            good.push(payload);
        }
        let pos = stream.len() as u64;
        let len = 8 + rng.up_to(40) as u32;
        let kind = rng.up_to(7);
        let bad: u64 = match kind {
            0 => stamped_word(pos, len) ^ (1 << (32 + rng.up_to(29))), // check bit flipped
            1 => stamped_word(pos + 8 * (1 + rng.up_to(3) as u64), len), // another position
            2 => stamped_word(pos.wrapping_sub(cap), len),             // one lap back
            3 => stamped_word(pos, cap as u32 - 7 + rng.up_to(1 << 20) as u32), // longer than the ring
            4 => u64::from_le_bytes(unstamped(pos, len)),              // payload not all there
            5 => 0,                                                    // never written
            _ => rng.next_u64(),                                       // anything
        };
        stream.extend_from_slice(&bad.to_le_bytes());
        if kind != 4 {
            let mut junk = vec![0u8; rng.up_to(200)];
            rng.fill(&mut junk);
            stream.extend_from_slice(&junk);
        }
        raw.write_all(&stream).unwrap();
        let closed = round % 2 == 0;
        if closed {
            drop(raw);
        }
        let mut rx = rx.into_framed();
        let mut got = 0;
        let end = loop {
            match rx.try_recv() {
                Ok(Some(f)) => {
                    assert!(got < good.len(), "round {round} kind {kind}: a frame past the good ones");
                    assert_eq!(&*f, &good[got][..], "round {round} kind {kind}: frame {got}");
                    got += 1;
                }
                Ok(None) => panic!("round {round} kind {kind}: a clean end after a bad chunk"),
                Err(e) => break e.kind(),
            }
        };
        assert_eq!(got, good.len(), "round {round} kind {kind}: good frames lost");
        let waits = !closed && (kind == 5 || kind == 2);
        if waits && end == ErrorKind::WouldBlock {
            continue;
        }
        assert_eq!(end, ErrorKind::InvalidData, "round {round} kind {kind} closed {closed}");
        assert_eq!(rx.recv().map(|f| f.is_some()).unwrap_err().kind(), ErrorKind::InvalidData);
    }
}

/// Bytes the producer wrote in an earlier lap, where a frame is awaited now, are never taken
/// for a frame: here a payload holds exactly the stamped header of the frame that will follow
/// at that place one lap later. The producer's clear mark replaces it before the frame before
/// it is published (sent with the payload for frames of up to 8 bytes, by the publish for
/// longer ones and for batches).
#[test]
fn a_payload_that_looks_like_the_next_header_is_not_a_frame() {
    let _dog = watchdog("a_payload_that_looks_like_the_next_header_is_not_a_frame", HANG);
    for (first, batch) in [(8usize, 1usize), (20, 1), (8, 4)] {
        let (tx, rx) = channel(4096).unwrap();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        let cap = tx.capacity();
        // Lap 0: one frame of the whole ring. Its payload covers the place where the second
        // frame of lap 1 will start: put that frame's own header there.
        let next = (cap + frame_len(first)) as u64;
        let mut big = vec![0xAB; cap - 8];
        let at = next as usize - cap - 8;
        big[at..at + 8].copy_from_slice(&stamped(next, 8));
        tx.try_send(&big).unwrap();
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), &big[..]);
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock); // releases the room
                                                                              // Lap 1: one frame at `cap`; the next goes where the forged header lies.
        tx.set_batch(batch);
        let genuine = vec![b'g'; first];
        tx.try_send(&genuine).unwrap();
        tx.flush().unwrap();
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), &genuine[..], "{first} bytes, batch {batch}");
        for _ in 0..3 {
            let e = rx.try_recv().map(|f| f.map(|f| f.to_vec())).unwrap_err();
            assert_eq!(
                e.kind(),
                ErrorKind::WouldBlock,
                "{first} bytes, batch {batch}: a frame the producer never sent"
            );
        }
        tx.try_send(b"second!!").unwrap();
        tx.flush().unwrap();
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"second!!");
    }
}

/// The bytes a frame of `len` payload bytes takes in the ring.
fn frame_len(len: usize) -> usize {
    8 + len.div_ceil(8) * 8
}

/// The consumer gives released bytes back to the producer in batches: not per frame, but once
/// a quarter of the ring (at most 64 KiB) is released, or when it finds no frame.
#[test]
fn releases_reach_the_producer_every_quarter_ring_or_when_the_consumer_waits() {
    let _dog = watchdog("releases_reach_the_producer_every_quarter_ring_or_when_the_consumer_waits", HANG);
    let (tx, rx) = channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    // With 4 KiB: 256 frames of 16 bytes fill the ring, 64 a quarter of it.
    let full = (tx.capacity() / 16) as u32;
    let quarter = full / 4;
    let mut sent = 0u32;
    while tx.try_send(&sent.to_le_bytes()).is_ok() {
        sent += 1; // 16 bytes each
    }
    assert_eq!(sent, full, "the ring holds {full} frames of 16 bytes, the last one to the byte");
    let mut next = 0u32;
    let recv = |rx: &mut FramedConsumer, next: &mut u32| {
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), &next.to_le_bytes());
        *next += 1;
    };
    // 63 frames (1008 bytes) with 4 KiB released: under a quarter of the ring, still the
    // consumer's.
    for _ in 0..quarter - 1 {
        recv(&mut rx, &mut next);
    }
    assert_eq!(tx.try_send(&[]).unwrap_err().kind(), ErrorKind::WouldBlock, "released before a quarter ring");
    // The 64th makes 1024 bytes: released with it.
    recv(&mut rx, &mut next);
    for _ in 0..quarter {
        tx.try_send(&sent.to_le_bytes()).unwrap();
        sent += 1;
    }
    assert_eq!(tx.try_send(&[]).unwrap_err().kind(), ErrorKind::WouldBlock);
    // Ten more, then a look that finds... frames still there: nothing released yet.
    for _ in 0..10 {
        recv(&mut rx, &mut next);
    }
    assert_eq!(tx.try_send(&[]).unwrap_err().kind(), ErrorKind::WouldBlock);
    // Drain: the consumer that finds no frame releases everything (160 bytes here) at once.
    while next < sent {
        recv(&mut rx, &mut next);
    }
    assert_eq!(rx.try_recv().map(|f| f.is_some()).unwrap_err().kind(), ErrorKind::WouldBlock);
    for _ in 0..full {
        tx.try_send(&sent.to_le_bytes()).unwrap();
        sent += 1;
    }
    assert_eq!(tx.try_send(&[]).unwrap_err().kind(), ErrorKind::WouldBlock, "the whole ring was released");
}

/// A producer parked on a full ring gets the room of the frames the consumer has dropped with
/// the consumer's next receive, not a quarter of a ring later: the consumer checks the
/// producer's waiter flag on every receive.
#[test]
fn a_parked_producer_gets_released_room_on_the_next_receive() {
    let _dog = watchdog("a_parked_producer_gets_released_room_on_the_next_receive", HANG);
    let (mut tx, rx) = RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).build().unwrap();
    let hdr = tx.write_grant(1).unwrap().as_ptr() as usize - page_size();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let full = (tx.capacity() / 16) as u32; // 256 with 4 KiB
    for i in 0..full {
        tx.try_send(&i.to_le_bytes()).unwrap(); // 16 bytes each: full
    }
    drop(rx.try_recv().unwrap().unwrap()); // frame 0: 16 bytes released, not given back yet
    let (tid_tx, tid_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let writer = thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        tx.send(&full.to_le_bytes()).unwrap(); // needs frame 0's 16 bytes
        done_tx.send(()).unwrap();
        tx
    });
    wait_until_parked(tid_rx.recv().unwrap(), hdr);
    assert!(done_rx.try_recv().is_err(), "sent without room");
    let frame = rx.try_recv().unwrap().unwrap(); // frame 1, held
    assert_eq!(&*frame, &1u32.to_le_bytes());
    if done_rx.recv_timeout(WAKE).is_err() {
        panic!("the parked producer did not get frame 0's room within {WAKE:?} of the next receive");
    }
    drop(frame);
    let _tx = writer.join().unwrap();
    for i in 2..full + 1 {
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), &i.to_le_bytes());
    }
}

/// Raw bytes that went through the ring before it was framed are never taken for a frame, even
/// when they hold exactly the stamped header the first frame will have: the consumer takes its
/// first frame after a conversion through the producer's cursor, not by a stamp.
#[test]
fn raw_bytes_before_framing_are_never_taken_for_a_frame() {
    let _dog = watchdog("raw_bytes_before_framing_are_never_taken_for_a_frame", HANG);
    let (mut tx, mut rx) = channel(4096).unwrap();
    let cap = tx.capacity();
    // One lap of raw bytes whose start is the header and payload a frame at `cap` would have.
    let mut lap = vec![0x33u8; cap];
    lap[..8].copy_from_slice(&stamped(cap as u64, 6));
    lap[8..14].copy_from_slice(b"forged");
    tx.write_all(&lap).unwrap();
    let mut back = vec![0u8; cap];
    rx.read_exact(&mut back).unwrap();
    let (tx, mut rx) = (tx.into_framed(), rx.into_framed());
    for _ in 0..3 {
        let e = rx.try_recv().map(|f| f.map(|f| f.to_vec())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "a frame nobody sent");
    }
    let mut tx = tx;
    tx.try_send(b"real").unwrap();
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"real");
}

/// `recv_into` whose buffer cannot grow to the frame's length (the producer chooses it; here
/// a child's `RLIMIT_AS` leaves no room for 256 MiB) fails with `OutOfMemory` and an empty
/// buffer, and loses nothing: the frame stays at the cursor, and the next call, with memory
/// again, copies it whole, followed by the next frame. (It used to abort the process.)
#[test]
fn recv_into_without_memory_for_the_frame_is_an_error_and_keeps_the_frame() {
    let status = in_child(|| {
        // Larger than any free space the heap may have kept from the parent's tests.
        let len = 256 << 20;
        let (tx, rx) = RingOptions::new().capacity(512 << 20).backend(mirror_ring::Backend::Memfd).build().unwrap();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        let byte = |i: usize| (i % 251) as u8;
        let mut grant = tx.reserve(len).unwrap();
        grant.iter_mut().enumerate().for_each(|(i, b)| *b = byte(i));
        grant.commit().unwrap();
        tx.send(b"next").unwrap();
        let mut buf = Vec::new();
        let Some(old) = set_soft_limit(libc::RLIMIT_AS, vm_size().unwrap() + (16 << 20)) else { return 2 };
        let first = rx.try_recv_into(&mut buf);
        if set_soft_limit(libc::RLIMIT_AS, old as usize).is_none() {
            return 2;
        }
        match first {
            Err(e) if e.kind() == ErrorKind::OutOfMemory && e.to_string().contains("stays in the ring") => {}
            other => {
                eprintln!("with no memory for the frame: {other:?}");
                return 3;
            }
        }
        if !buf.is_empty() {
            return 4;
        }
        if rx.try_recv_into(&mut buf).ok() != Some(Some(len)) || buf.iter().enumerate().any(|(i, &b)| b != byte(i)) {
            return 5;
        }
        match rx.try_recv_into(&mut buf) {
            Ok(Some(4)) if buf == b"next" => 0,
            _ => 6,
        }
    });
    assert_eq!(status, 0, "2 = setrlimit failed, 3 = not OutOfMemory, 4 = buf not empty, 5 = the frame was lost, 6 = the next frame was lost");
}

/// A consumer that took every frame (its last releases still held back, as releases are
/// batched) and then waits hands the room over at once, in every wait it has: a producer
/// blocked in `send_timeout` for a frame that needs the whole ring gets its room, and the
/// wait returns that frame. The waits: `recv_timeout`, `recv_batch_timeout`,
/// `recv_into_timeout`, a byte grant after `into_inner`, `recv_timeout` after
/// `into_inner().into_framed()`, and the async `recv` and `recv_batch`; each after frames
/// taken by `try_recv` and by `try_recv_into`. (From an adversarial review of the consumer side,
/// which found no defect; this pins docs::framing, "Releases".)
#[test]
fn every_wait_of_the_consumer_hands_its_held_back_releases_to_a_blocked_producer() {
    let _dog = watchdog("every_wait_of_the_consumer_hands_its_held_back_releases_to_a_blocked_producer", HANG);
    let waits = if cfg!(feature = "tokio") { 7 } else { 5 };
    for take_into in [false, true] {
        for wait in 0..waits {
            let (tx, rx) = channel(4096).unwrap();
            let cap = tx.capacity();
            let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
            let mut sent = 0;
            while tx.try_send(&[5; 64]).is_ok() {
                sent += 1;
            }
            let mut buf = Vec::new();
            for _ in 0..sent {
                if take_into {
                    rx.try_recv_into(&mut buf).unwrap().unwrap();
                } else {
                    drop(rx.try_recv().unwrap().unwrap());
                }
            }
            let whole = vec![9; cap - 8];
            let sender = thread::spawn(move || {
                // Parked before the consumer's wait begins, most of the time.
                thread::sleep(Duration::from_millis(20));
                let t = Instant::now();
                let r = tx.send_timeout(&whole, WAKE);
                (r.map_err(|e| e.kind()), t.elapsed())
            });
            let long = 2 * WAKE;
            let got = match wait {
                0 => rx.recv_timeout(long).unwrap().unwrap().len(),
                1 => {
                    let mut len = 0;
                    rx.recv_batch_timeout(long, |f| len = f.len()).unwrap();
                    len
                }
                2 => rx.recv_into_timeout(&mut buf, long).unwrap().unwrap(),
                // The frame's header and payload, as bytes.
                3 => rx.into_inner().read_grant_timeout(cap, long).unwrap().len() - 8,
                4 => rx.into_inner().into_framed().recv_timeout(long).unwrap().unwrap().len(),
                #[cfg(feature = "tokio")]
                5 | 6 => {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    let mut rx = rx.into_async().unwrap();
                    rt.block_on(async {
                        if wait == 5 {
                            rx.recv().await.unwrap().unwrap().len()
                        } else {
                            let mut len = 0;
                            rx.recv_batch(|f| len = f.len()).await.unwrap();
                            len
                        }
                    })
                }
                _ => unreachable!(),
            };
            let (r, took) = sender.join().unwrap();
            let case = format!("taken by {}, wait {wait}", if take_into { "try_recv_into" } else { "try_recv" });
            assert_eq!(r, Ok(()), "{case}");
            assert!(took < LIVE, "{case}: the producer waited {took:?} for the room");
            assert_eq!(got, cap - 8, "{case}");
        }
    }
}
