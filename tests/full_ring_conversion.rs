//! A conversion on a full ring, whose framing epoch begins with the first frame's claim
//! (`FramedProducer::begin`), and the brim check in `Sender::room`: pins from the third
//! adversarial review of stop 38, which showed no defect in that code. (Its take-over case is
//! in `tests/conversions.rs`, with the other first frames stamped above the head.)

mod common;

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{
    drain, header_offsets, lap_of_raw_bytes, spawn_child, stamped_word, watchdog, Peek, Receive, SharedPage,
    ALL_RECEIVES,
};
use mirror_ring::{Backend, FramedConsumer, RingOptions, SharedRing};

// ---------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------

/// A memfd ring of one page, shared (so the header can be peeked at), and its two byte ends.
fn memfd_ring() -> (SharedRing, mirror_ring::Producer, mirror_ring::Consumer, Peek) {
    let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    let tx = ring.clone().into_producer().unwrap();
    let rx = ring.clone().into_consumer().unwrap();
    let peek = Peek::new(&ring);
    (ring, tx, rx, peek)
}

fn recv_one(rx: &mut FramedConsumer) -> Vec<u8> {
    rx.recv_timeout(Duration::from_secs(5)).unwrap().expect("a frame, not the end").to_vec()
}

fn try_one(rx: &mut FramedConsumer) -> Result<Option<Vec<u8>>, ErrorKind> {
    rx.try_recv().map(|f| f.map(|f| f.to_vec())).map_err(|e| e.kind())
}

// ---------------------------------------------------------------------------------------------
// Every write path after a conversion on a full ring.
// ---------------------------------------------------------------------------------------------

/// Async paths are among them, so the whole check needs feature `tokio` (the README's test
/// command has it).
#[cfg(feature = "tokio")]
mod every_write_path {
    use super::*;
    use mirror_ring::FramedProducer;

    #[derive(Clone, Copy, Debug)]
    enum Path {
        /// Blocking `send`, parked (in a thread) on the full ring until the consumer reads.
        SendParked,
        TrySend,
        SendTimeout,
        /// Blocking `send_batch`, parked like `SendParked`.
        SendBatchParked,
        TrySendBatch,
        SendBatchTimeout,
        /// `set_batch(4)`, then sends, published by `flush`.
        SetBatchFlush,
        /// Blocking `reserve`, parked like `SendParked`, then commit.
        ReserveParked,
        TryReserve,
        /// A grant of 64 bytes truncated to the message (`reserve_timeout` while full).
        ReserveTruncated,
        /// A grant claimed and dropped uncommitted first (it begins the epoch), then `try_send`.
        ReserveDroppedThenSend,
        AsyncSend,
        AsyncSendBatch,
        AsyncReserve,
    }

    const PATHS: [Path; 14] = [
        Path::SendParked,
        Path::TrySend,
        Path::SendTimeout,
        Path::SendBatchParked,
        Path::TrySendBatch,
        Path::SendBatchTimeout,
        Path::SetBatchFlush,
        Path::ReserveParked,
        Path::TryReserve,
        Path::ReserveTruncated,
        Path::ReserveDroppedThenSend,
        Path::AsyncSend,
        Path::AsyncSendBatch,
        Path::AsyncReserve,
    ];

    enum Tx {
        Sync(FramedProducer),
        Async(mirror_ring::AsyncFramedProducer),
    }

    /// Sends `msg` by `path`, on a ring with room (the async ones on `rt`).
    fn send_by(path: Path, tx: &mut Tx, rt: &tokio::runtime::Runtime, msg: &[u8]) {
        match tx {
            Tx::Sync(tx) => match path {
                Path::SendParked => tx.send(msg).unwrap(),
                Path::TrySend | Path::ReserveDroppedThenSend => tx.try_send(msg).unwrap(),
                Path::SendTimeout => tx.send_timeout(msg, Duration::from_secs(5)).unwrap(),
                Path::SendBatchParked => assert_eq!(tx.send_batch(&[msg]).unwrap(), 1),
                Path::TrySendBatch => assert_eq!(tx.try_send_batch(&[msg]).unwrap(), 1),
                Path::SendBatchTimeout => assert_eq!(tx.send_batch_timeout(&[msg], Duration::from_secs(5)).unwrap(), 1),
                Path::SetBatchFlush => tx.send(msg).unwrap(),
                Path::ReserveParked => {
                    let mut g = tx.reserve(msg.len()).unwrap();
                    g.copy_from_slice(msg);
                    g.commit().unwrap();
                }
                Path::TryReserve => {
                    let mut g = tx.try_reserve(msg.len()).unwrap();
                    g.copy_from_slice(msg);
                    g.commit().unwrap();
                }
                Path::ReserveTruncated => {
                    let mut g = tx.reserve_timeout(64, Duration::from_secs(5)).unwrap();
                    g[..msg.len()].copy_from_slice(msg);
                    g[msg.len()..].fill(0xCC);
                    g.truncate(msg.len());
                    g.commit().unwrap();
                }
                _ => unreachable!(),
            },
            Tx::Async(tx) => rt.block_on(async {
                match path {
                    Path::AsyncSend => tx.send(msg).await.unwrap(),
                    Path::AsyncSendBatch => assert_eq!(tx.send_batch(&[msg]).await.unwrap(), 1),
                    Path::AsyncReserve => {
                        let mut g = tx.reserve(msg.len()).await.unwrap();
                        g.copy_from_slice(msg);
                        g.commit().unwrap();
                    }
                    _ => unreachable!(),
                }
            }),
        }
    }

    /// The attempt a path makes while the ring is still full (nothing may change), and its error.
    fn attempt_while_full(path: Path, tx: &mut Tx, rt: &tokio::runtime::Runtime) -> Option<ErrorKind> {
        let msg = b"early";
        let short = Duration::from_millis(10);
        match tx {
            Tx::Sync(tx) => match path {
                Path::TrySend | Path::ReserveDroppedThenSend => Some(tx.try_send(msg).unwrap_err().kind()),
                Path::SendTimeout => Some(tx.send_timeout(msg, short).unwrap_err().kind()),
                Path::TrySendBatch => Some(tx.try_send_batch(&[msg]).unwrap_err().kind()),
                Path::SendBatchTimeout => Some(tx.send_batch_timeout(&[msg], short).unwrap_err().kind()),
                Path::SetBatchFlush => {
                    tx.set_batch(4);
                    let e = tx.try_send(msg).unwrap_err().kind();
                    tx.flush().unwrap();
                    Some(e)
                }
                Path::TryReserve => Some(tx.try_reserve(5).unwrap_err().kind()),
                Path::ReserveTruncated => Some(tx.reserve_timeout(64, short).unwrap_err().kind()),
                _ => None,
            },
            // A pending async call, cancelled by its timeout.
            Tx::Async(tx) => rt.block_on(async {
                let elapsed = match path {
                    Path::AsyncSend => tokio::time::timeout(short, tx.send(msg)).await.is_err(),
                    Path::AsyncSendBatch => tokio::time::timeout(short, tx.send_batch(&[msg])).await.is_err(),
                    Path::AsyncReserve => tokio::time::timeout(short, tx.reserve(5)).await.is_err(),
                    _ => unreachable!(),
                };
                assert!(elapsed, "{path:?}: a full ring took a frame");
                Some(ErrorKind::TimedOut)
            }),
        }
    }

    /// After a conversion on a full ring (the raw lap's word at the first frame's position reads
    /// as a stamped 8-byte frame there, with 0xEE payload and a "clear mark"), for every write
    /// path: while the ring is full nothing is written (the epoch stays even, the start where it
    /// was, the raw word in place: a non-blocking attempt fails, a timed one times out, a blocking
    /// one parks, an async one is cancelled); once the consumer has read the lap, the path's first
    /// frame begins the epoch at its own position (odd, the start there), and the consumer gets
    /// exactly the frames sent, never the stale one. Guards `begin` on every path into `ask`, and
    /// the fast paths' lack of room until then (`sync_room`, `rearm`).
    #[test]
    fn pin_every_write_path_begins_the_epoch_with_its_first_frame_after_a_full_ring_conversion() {
        let _dog = watchdog("pin_every_write_path_begins_the_epoch", Duration::from_secs(60));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut failures = Vec::new();
        for path in PATHS {
            let (_ring, mut raw_tx, mut raw_rx, peek) = memfd_ring();
            let cap = raw_tx.capacity();
            raw_tx.write_all(&lap_of_raw_bytes(cap)).unwrap();
            let even = peek.epoch();
            assert_eq!(even % 2, 0);
            let start_before = peek.start();
            let raw_word = stamped_word(cap as u64, 8);
            let framed = raw_tx.into_framed();
            let untouched = |what: &str| {
                assert_eq!(
                    (peek.epoch(), peek.start(), peek.word(cap as u64)),
                    (even, start_before, raw_word),
                    "{path:?}: {what}: the epoch began, or the unread word changed, on a full ring"
                );
            };
            untouched("into_framed");
            let mut tx = match path {
                Path::AsyncSend | Path::AsyncSendBatch | Path::AsyncReserve => {
                    Tx::Async(rt.block_on(async { framed.into_async().unwrap() }))
                }
                _ => Tx::Sync(framed),
            };
            if let Some(kind) = attempt_while_full(path, &mut tx, &rt) {
                assert!(matches!(kind, ErrorKind::WouldBlock | ErrorKind::TimedOut), "{path:?}: {kind:?}");
                untouched("an attempt while full");
            }
            let mut lap = vec![0u8; cap];
            let parked = matches!(path, Path::SendParked | Path::SendBatchParked | Path::ReserveParked);
            if parked {
                let Tx::Sync(mut sync) = tx else { unreachable!() };
                let sender = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                    let mut t = Tx::Sync(sync);
                    send_by(path, &mut t, &rt, b"one");
                    let Tx::Sync(s) = t else { unreachable!() };
                    sync = s;
                    sync
                });
                std::thread::sleep(Duration::from_millis(50));
                untouched("a parked call");
                raw_rx.read_exact(&mut lap).unwrap();
                tx = Tx::Sync(sender.join().unwrap());
            } else {
                raw_rx.read_exact(&mut lap).unwrap();
                if let Path::ReserveDroppedThenSend = path {
                    let Tx::Sync(t) = &mut tx else { unreachable!() };
                    drop(t.try_reserve(8).unwrap());
                    assert_eq!(
                        (peek.epoch(), peek.start(), peek.word(cap as u64)),
                        (even + 1, cap as u64, 0),
                        "a dropped grant's claim begins the epoch, its word marked clear"
                    );
                }
                send_by(path, &mut tx, &rt, b"one");
            }
            assert_eq!(lap, lap_of_raw_bytes(cap));
            let mut rx = raw_rx.into_framed();
            if let (Path::SetBatchFlush, Tx::Sync(t)) = (path, &mut tx) {
                assert_eq!(try_one(&mut rx), Err(ErrorKind::WouldBlock), "held back by the batch");
                t.flush().unwrap();
            }
            let begun = (peek.epoch(), peek.start());
            let mut got = vec![recv_one(&mut rx)];
            for msg in [&b"two"[..], b"three"] {
                send_by(path, &mut tx, &rt, msg);
            }
            if let (Path::SetBatchFlush, Tx::Sync(t)) = (path, &mut tx) {
                t.flush().unwrap();
            }
            got.push(recv_one(&mut rx));
            got.push(recv_one(&mut rx));
            drop(tx);
            let end = rx.recv_timeout(Duration::from_secs(5)).map(|f| f.map(|f| f.to_vec())).map_err(|e| e.kind());
            if begun != (even + 1, cap as u64)
                || got != [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
                || end != Ok(None)
            {
                failures.push(format!(
                    "{path:?}: epoch/start {begun:?} (want ({}, {cap})), frames {got:02x?}, then {end:?}",
                    even + 1
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

/// The first frame after a conversion on a full ring may fill the ring to the byte once the
/// consumer has read everything (tail == head: the word after it is its own header): sent at
/// once, the epoch begun at its position; the consumer takes it, finds nothing after it, then
/// the next frame. Guards the `tail == head` arm of the brim check together with `begin`.
#[test]
fn pin_a_first_frame_of_the_whole_ring_after_a_full_ring_conversion() {
    let (_ring, mut raw_tx, mut raw_rx, peek) = memfd_ring();
    let cap = raw_tx.capacity();
    raw_tx.write_all(&lap_of_raw_bytes(cap)).unwrap();
    let even = peek.epoch();
    let mut tx = raw_tx.into_framed();
    let max = tx.max_frame_len();
    assert_eq!(tx.try_send(&vec![0x42; max]).unwrap_err().kind(), ErrorKind::WouldBlock);
    let mut lap = vec![0u8; cap];
    raw_rx.read_exact(&mut lap).unwrap();
    let mut rx = raw_rx.into_framed();
    tx.try_send(&vec![0x42; max]).expect("the whole ring, at once");
    assert_eq!((peek.epoch(), peek.start(), peek.head()), (even + 1, cap as u64, 2 * cap as u64));
    assert_eq!(recv_one(&mut rx), vec![0x42; max]);
    assert_eq!(try_one(&mut rx), Err(ErrorKind::WouldBlock), "nothing after the whole-ring frame");
    tx.send(b"next").unwrap();
    assert_eq!(recv_one(&mut rx), b"next");
    drop(tx);
    assert_eq!(try_one(&mut rx), Ok(None));
}

// ---------------------------------------------------------------------------------------------
// Conversions back and forth, a pending skip, a poisoned cursor.
// ---------------------------------------------------------------------------------------------

/// On a full ring, `into_framed` then `into_inner` (no frame in between), three times: the
/// epoch never moves (nothing was framed), the start stays, the unread word stays raw, and a
/// non-blocking send in each framed spell fails with nothing written. Then, the lap read:
/// `into_framed` begins at once (room), `into_inner` right away ends it; a raw lap fills the
/// ring again; `into_framed` (full) and a grant dropped uncommitted once the lap is read
/// begin the next epoch; `into_inner`, `into_framed` again (room) and a frame: the framed
/// consumer gets exactly that frame and the end of the stream. Guards `begun` across
/// conversions and `end_framing` only on an odd epoch.
#[test]
fn pin_conversions_back_and_forth_on_a_full_ring_begin_no_epoch() {
    let (_ring, mut raw_tx, mut raw_rx, peek) = memfd_ring();
    let cap = raw_tx.capacity();
    let capu = cap as u64;
    raw_tx.write_all(&lap_of_raw_bytes(cap)).unwrap();
    let (e0, s0) = (peek.epoch(), peek.start());
    for round in 0..3 {
        let mut tx = raw_tx.into_framed();
        assert_eq!(tx.try_send(b"x").unwrap_err().kind(), ErrorKind::WouldBlock, "round {round}");
        assert_eq!(tx.try_reserve(0).unwrap_err().kind(), ErrorKind::WouldBlock, "round {round}");
        tx.flush().unwrap();
        raw_tx = tx.into_inner();
        assert_eq!((peek.epoch(), peek.start(), peek.word(capu)), (e0, s0, stamped_word(capu, 8)), "round {round}");
    }
    let mut lap = vec![0u8; cap];
    raw_rx.read_exact(&mut lap).unwrap();
    assert_eq!(lap, lap_of_raw_bytes(cap));
    // Room now: begun at once, and ended at once.
    raw_tx = raw_tx.into_framed().into_inner();
    assert_eq!((peek.epoch(), peek.start(), peek.word(capu)), (e0 + 2, capu, 0));
    // A second raw lap (its first word reads as a frame at 2 * cap), the ring full again.
    let mut lap2 = vec![0u8; cap];
    lap2[..8].copy_from_slice(&stamped_word(2 * capu, 8).to_le_bytes());
    lap2[8..16].copy_from_slice(&[0xEE; 8]);
    raw_tx.write_all(&lap2).unwrap();
    let mut tx = raw_tx.into_framed();
    assert_eq!((peek.epoch(), peek.word(2 * capu)), (e0 + 2, stamped_word(2 * capu, 8)), "full: not begun");
    raw_rx.read_exact(&mut lap).unwrap();
    assert_eq!(lap, lap2);
    drop(tx.try_reserve(8).unwrap());
    assert_eq!((peek.epoch(), peek.start(), peek.word(2 * capu)), (e0 + 3, 2 * capu, 0));
    let raw_tx = tx.into_inner();
    assert_eq!(peek.epoch(), e0 + 4);
    let mut rx = raw_rx.into_framed();
    let mut tx = raw_tx.into_framed();
    assert_eq!((peek.epoch(), peek.start()), (e0 + 5, 2 * capu));
    assert_eq!(try_one(&mut rx), Err(ErrorKind::WouldBlock));
    tx.send(b"framed").unwrap();
    assert_eq!(recv_one(&mut rx), b"framed");
    drop(tx);
    assert_eq!(try_one(&mut rx), Ok(None));
}

/// A conversion at an unaligned head on a full ring: the skip and the epoch both pending.
/// While the ring is full nothing is committed (head stays); once the consumer has released
/// exactly the skip's 5 bytes, a `try_send` makes the skip (head moves to the aligned
/// position) but has no room for its frame: the epoch still has not begun. Once the consumer
/// has read the rest, the first frame begins the epoch at the aligned position, and the
/// consumer (converted at the same unaligned position, skipping too) gets every frame.
/// Guards `align` before `begin`, and `begin` at the aligned head (= `Sender::start`).
#[test]
fn pin_a_full_ring_conversion_with_a_pending_skip_begins_past_the_skip() {
    let (_ring, mut raw_tx, mut raw_rx, peek) = memfd_ring();
    let cap = raw_tx.capacity();
    let capu = cap as u64;
    raw_tx.write_all(b"abc").unwrap();
    let mut abc = [0u8; 3];
    raw_rx.read_exact(&mut abc).unwrap();
    let raw = vec![0x11u8; cap];
    raw_tx.write_all(&raw).unwrap();
    let even = peek.epoch();
    let mut tx = raw_tx.into_framed();
    assert_eq!(tx.try_send(b"one").unwrap_err().kind(), ErrorKind::WouldBlock);
    assert_eq!((peek.epoch(), peek.head()), (even, capu + 3), "full: no skip, no epoch");
    let mut five = [0u8; 5];
    raw_rx.read_exact(&mut five).unwrap();
    assert_eq!(tx.try_send(b"one").unwrap_err().kind(), ErrorKind::WouldBlock);
    assert_eq!((peek.epoch(), peek.head()), (even, capu + 8), "the skip made, the epoch not begun");
    let mut rest = vec![0u8; cap - 5];
    raw_rx.read_exact(&mut rest).unwrap();
    assert!(rest.iter().chain(&five).all(|&b| b == 0x11));
    // The consumer at cap + 3: it skips the 5 bytes the producer committed.
    let mut rx = raw_rx.into_framed();
    tx.try_send(b"one").unwrap();
    assert_eq!((peek.epoch(), peek.start()), (even + 1, capu + 8));
    tx.send(b"two").unwrap();
    assert_eq!(recv_one(&mut rx), b"one");
    assert_eq!(recv_one(&mut rx), b"two");
    drop(tx);
    assert_eq!(try_one(&mut rx), Ok(None));
}

/// A hostile consumer stores a tail past the head while the ring is full (by the producer's
/// cache): `into_framed`'s reload finds it impossible (the cursor poisoned), so the epoch does
/// not begin and the unread word is not marked; every send fails `InvalidData` and writes
/// nothing; `into_inner` leaves the epoch even. Guards the poisoned arm of `into_framed` and
/// `begin`'s place after a successful `reserve`.
#[test]
fn pin_a_poisoned_cursor_at_a_full_ring_conversion_begins_no_epoch() {
    let (_ring, mut raw_tx, _raw_rx, peek) = memfd_ring();
    let cap = raw_tx.capacity();
    let capu = cap as u64;
    raw_tx.write_all(&lap_of_raw_bytes(cap)).unwrap();
    let (even, start) = (peek.epoch(), peek.start());
    peek.header.u64_at(header_offsets::OFF_TAIL).store(capu + 8, Ordering::SeqCst);
    let mut tx = raw_tx.into_framed();
    let untouched = |what: &str| {
        assert_eq!((peek.epoch(), peek.start(), peek.word(capu)), (even, start, stamped_word(capu, 8)), "{what}");
    };
    untouched("into_framed");
    assert_eq!(tx.try_send(b"x").unwrap_err().kind(), ErrorKind::InvalidData);
    assert_eq!(tx.send(b"x").unwrap_err().kind(), ErrorKind::InvalidData);
    assert_eq!(tx.send_batch(&[b"x"]).unwrap_err().kind(), ErrorKind::InvalidData);
    assert_eq!(tx.reserve(8).unwrap_err().kind(), ErrorKind::InvalidData);
    assert_eq!(tx.flush().unwrap_err().kind(), ErrorKind::InvalidData);
    untouched("the sends");
    let _bytes = tx.into_inner();
    untouched("into_inner");
}

// ---------------------------------------------------------------------------------------------
// The consumer across an even epoch.
// ---------------------------------------------------------------------------------------------

/// A framed consumer trusts stamps under epoch E (A through head, B by its stamp, then
/// "nothing yet"); the producer turns into bytes (E + 1) and writes whole frames through the
/// byte API, with *stamped* headers (taken through head all the same) whose payloads read as
/// stamped frames of the positions after them, filling the ring; turns framed on the full ring
/// (the epoch stays E + 1); the consumer reads the byte frames (each through head, nothing
/// else), and the producer's first frame then begins E + 2 where the byte frames end. For every
/// receive: exactly the frames written, in order, and the end. Guards `epoch_holds` and
/// `epoch_from`'s start check while an epoch is even for a while.
#[test]
fn pin_a_consumer_armed_under_one_epoch_trusts_nothing_written_under_the_even_one() {
    let _dog = watchdog("pin_a_consumer_armed_under_one_epoch", Duration::from_secs(60));
    for how in ALL_RECEIVES {
        let (_ring, raw_tx, raw_rx, peek) = memfd_ring();
        let cap = raw_tx.capacity();
        let (mut tx, mut rx) = (raw_tx.into_framed(), raw_rx.into_framed());
        let e = peek.epoch();
        assert_eq!(e % 2, 1);
        tx.send(&[0xAA; 8]).unwrap();
        tx.send(&[0xBB; 8]).unwrap();
        assert_eq!(recv_one(&mut rx), [0xAA; 8]);
        assert_eq!(recv_one(&mut rx), [0xBB; 8]);
        assert_eq!(try_one(&mut rx), Err(ErrorKind::WouldBlock), "armed, at the clear mark; releases");
        let mut bytes = tx.into_inner();
        assert_eq!(peek.epoch(), e + 1);
        // Byte frames of 24 bytes from 32: header stamped for its position, then a payload
        // word that reads as the stamped header of an 8-byte frame right after this one's
        // header, then one that reads as the frame after that.
        let mut at = 32u64;
        let mut want = Vec::new();
        while at + 24 <= 32 + cap as u64 {
            let mut frame = stamped_word(at, 16).to_le_bytes().to_vec();
            frame.extend_from_slice(&stamped_word(at + 8, 8).to_le_bytes());
            frame.extend_from_slice(&stamped_word(at + 24, 8).to_le_bytes());
            bytes.write_all(&frame).unwrap();
            want.push(frame[8..].to_vec());
            at += 24;
        }
        // Fill the rest of the lap (cap is not a multiple of 24) with 8-byte frames of zeros.
        while at + 16 <= 32 + cap as u64 {
            let mut frame = stamped_word(at, 8).to_le_bytes().to_vec();
            frame.extend_from_slice(&[0; 8]);
            bytes.write_all(&frame).unwrap();
            want.push(vec![0; 8]);
            at += 16;
        }
        assert_eq!(at, 32 + cap as u64, "the lap is full");
        let mut tx = bytes.into_framed();
        assert_eq!(peek.epoch(), e + 1, "full: not begun");
        // The consumer reads every byte frame (and, with a blocking receive, waits at the end).
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < want.len() {
            assert!(Instant::now() < deadline, "{how:?}: only {} of {} byte frames", got.len(), want.len());
            match how {
                Receive::Batch => {
                    rx.try_recv_batch(|f| got.push(f.to_vec())).unwrap_or(0);
                }
                Receive::Into => {
                    let mut buf = Vec::new();
                    if let Ok(Some(_)) = rx.try_recv_into(&mut buf) {
                        got.push(buf);
                    }
                }
                _ => {
                    if let Ok(Some(f)) = try_one(&mut rx) {
                        got.push(f);
                    }
                }
            }
        }
        assert_eq!(got, want, "{how:?}: the byte frames");
        assert_eq!(try_one(&mut rx), Err(ErrorKind::WouldBlock), "{how:?}: nothing past them");
        tx.send(b"first of E+2").unwrap();
        assert_eq!((peek.epoch(), peek.start()), (e + 2, 32 + cap as u64));
        tx.send(b"second").unwrap();
        drop(tx);
        let (rest, end) = drain(&mut rx, how);
        assert_eq!((rest, end), (vec![b"first of E+2".to_vec(), b"second".to_vec()], Ok(())), "{how:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Liveness of the brim check.
// ---------------------------------------------------------------------------------------------

/// The brim check refuses a frame that would fill the ring to the byte behind a byte reader
/// stopped inside a frame whose word there is payload (0x77..., not "not yet"): a `try_send`
/// of exactly the free room fails. A blocking `send` of it (in a thread) must still finish
/// once the reader reads on, here in pieces of 3 bytes (tail never 8-aligned in between), and
/// the reader gets every byte of it once; the ends then turn framed at the boundary and carry
/// the next frame. Guards the brim check's liveness (`Room::Short(size + 8)`, a need of at most
/// the capacity).
#[test]
fn pin_a_refused_brim_frame_is_sent_once_a_byte_reader_in_odd_pieces_reads_on() {
    let _dog = watchdog("pin_a_refused_brim_frame_is_sent_once", Duration::from_secs(30));
    let (tx, mut bytes) = mirror_ring::channel(4096).unwrap();
    let cap = tx.capacity();
    let mut tx = tx.into_framed();
    tx.send(&[0x77; 40]).unwrap();
    let mut head_and_8 = [0u8; 16];
    bytes.read_exact(&mut head_and_8).unwrap();
    assert_eq!(u64::from_le_bytes(head_and_8[..8].try_into().unwrap()), stamped_word(0, 40));
    // Tail 16 (A's payload word 0x77...), head 48: cap - 32 bytes free.
    let b = vec![0x5B; cap - 40];
    assert_eq!(tx.try_send(&b).unwrap_err().kind(), ErrorKind::WouldBlock, "a brim frame over a payload word");
    let sender = std::thread::spawn(move || {
        let started = Instant::now();
        tx.send(&b).unwrap();
        (tx, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(20));
    let mut got = Vec::new();
    let total = 32 + cap - 32;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < total {
        assert!(Instant::now() < deadline, "the reader stalled at {} of {total}", got.len());
        let mut piece = [0u8; 3];
        let want = (total - got.len()).min(3);
        let n = bytes.read_timeout(&mut piece[..want], Duration::from_secs(5)).unwrap();
        got.extend_from_slice(&piece[..n]);
    }
    let (mut tx, took) = sender.join().unwrap();
    assert!(took < Duration::from_secs(10), "the send took {took:?}");
    assert!(got[..32].iter().all(|&x| x == 0x77), "the rest of A");
    assert_eq!(u64::from_le_bytes(got[32..40].try_into().unwrap()), stamped_word(48, cap as u32 - 40));
    assert!(got[40..].iter().all(|&x| x == 0x5B), "B's payload");
    let mut rx = bytes.into_framed();
    tx.send(b"C").unwrap();
    assert_eq!(recv_one(&mut rx), b"C");
    drop(tx);
    assert_eq!(try_one(&mut rx), Ok(None));
}

// ---------------------------------------------------------------------------------------------
// Deaths around `begin`, and a take-over before the conversion.
// ---------------------------------------------------------------------------------------------

/// A producer process fills the ring with the raw lap, turns framed (full: not begun), waits
/// until this process has read the lap, claims its first frame's room and drops the grant
/// (the epoch begins, the word at the start marked clear), and dies. The header then shows the
/// odd epoch begun at `cap` over a clear word; every framed receive reports the death with no
/// frame, and a byte newcomer covers nothing. Guards the mark `begin` stores before the epoch.
#[test]
fn pin_a_producer_dead_right_after_begin_left_a_clear_start_and_no_frame() {
    let _dog = watchdog("pin_a_producer_dead_right_after_begin", Duration::from_secs(60));
    for how in [Some(Receive::Recv), Some(Receive::TryRecv), Some(Receive::Batch), None] {
        let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
        let peek = Peek::new(&ring);
        let mut bytes = ring.clone().into_consumer().unwrap();
        let cap = bytes.capacity();
        let page = SharedPage::new();
        let theirs = ring.clone();
        let mut child = spawn_child(|| {
            let mut tx = theirs.into_producer().unwrap();
            tx.write_all(&lap_of_raw_bytes(cap)).unwrap();
            let mut tx = tx.into_framed();
            page.word(0).store(1, Ordering::SeqCst);
            while page.word(1).load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_micros(100));
            }
            drop(tx.reserve(8).unwrap());
            std::mem::forget(tx);
            // SAFETY: ends the child at once (SIGKILL-like).
            unsafe { libc::_exit(0) }
        });
        page.await_word(0);
        let even = peek.epoch();
        let mut lap = vec![0u8; cap];
        bytes.read_exact(&mut lap).unwrap();
        page.word(1).store(1, Ordering::SeqCst);
        assert_eq!(child.wait_within(Duration::from_secs(10)), 0);
        assert_eq!((peek.epoch(), peek.start(), peek.word(cap as u64)), (even + 1, cap as u64, 0));
        match how {
            Some(how) => {
                let mut rx = bytes.into_framed();
                let (got, end) = drain(&mut rx, how);
                assert_eq!((got, end), (vec![], Err(ErrorKind::UnexpectedEof)), "{how:?}");
            }
            None => assert_eq!(common::read_after_a_byte_newcomer(&ring, &mut bytes), b"after"),
        }
    }
}
