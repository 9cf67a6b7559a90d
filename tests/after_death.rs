//! The framed consumer's look after its producer's death (`Receiver::look_after_death`), the
//! take-over's cover (`Sender::resume`) and the framing epoch around them, from an
//! adversarial review of stop 38. First the defect it found (a producer that turned framed on
//! a full ring: both tests failed before the epoch began past the unmarked word), then `pin_`
//! tests for the properties it checked and found sound.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{
    drain, header_offsets, in_child, lap_of_raw_bytes, spawn_child, stamped_word, watchdog, Peek, Receive, SharedPage,
    ALL_RECEIVES,
};
use mirror_ring::{Backend, RingOptions, SharedRing};

// ---------------------------------------------------------------------------------------------
// Defect: the look after the death trusts the word at the framing epoch's start, which
// `Producer::into_framed` leaves unwritten (no clear mark) when its cached room is short.
// ---------------------------------------------------------------------------------------------

/// A producer process fills the ring with raw bytes (`lap_of_raw_bytes`: its cached room is
/// then 0), turns framed (with no room, `into_framed` could not mark the word where its first
/// frame goes, position `cap`, which still holds the raw word of offset 0) and dies without
/// sending anything: at once, or (`claim_first`) once it has claimed its first frame's room
/// (a `FrameGrant`, 0x99 written into it, never committed), which needs this process to read
/// the raw bytes first. This process reads them as a byte consumer (all released) and returns
/// the ring.
fn framed_producer_dies_after_converting_on_a_full_ring(claim_first: bool) -> (SharedRing, mirror_ring::Consumer) {
    let ring = RingOptions::new().capacity(4096).shared().unwrap();
    let mut bytes = ring.clone().into_consumer().unwrap();
    let cap = bytes.capacity();
    let theirs = ring.clone();
    let mut child = spawn_child(move || {
        let mut tx = theirs.into_producer().unwrap();
        tx.write_all(&lap_of_raw_bytes(cap)).unwrap();
        let mut framed = tx.into_framed();
        if claim_first {
            let mut grant = framed.reserve(8).unwrap();
            grant.copy_from_slice(&[0x99; 8]);
            // SAFETY: ends the child at once (SIGKILL-like: nothing closed, the grant open).
            unsafe { libc::_exit(0) }
        }
        std::mem::forget(framed);
        // SAFETY: as above.
        unsafe { libc::_exit(0) }
    });
    let mut raw = vec![0u8; cap];
    bytes.read_exact(&mut raw).unwrap();
    assert_eq!(raw, lap_of_raw_bytes(cap));
    assert_eq!(child.wait(), 0);
    (ring, bytes)
}

/// The framed consumer, at the position where the dead producer's framing epoch began, with
/// nothing committed there, must report the death: no frame was ever sent. On the reviewed
/// code, `look_after_death` finds the cursor "inside the framing epoch" (`epoch_from`: odd
/// epoch, cursor == framing start), trusts the stamp of the raw word left from the previous
/// lap and hands out the 0xEE bytes as a frame nobody sent.
#[test]
fn the_look_after_the_death_takes_no_raw_word_at_an_unmarked_epoch_start_for_a_frame() {
    let _dog =
        watchdog("the_look_after_the_death_takes_no_raw_word_at_an_unmarked_epoch_start", Duration::from_secs(60));
    let mut failures = Vec::new();
    for (claim_first, how) in [false, true].into_iter().flat_map(|c| ALL_RECEIVES.map(|how| (c, how))) {
        let (_ring, bytes) = framed_producer_dies_after_converting_on_a_full_ring(claim_first);
        let mut rx = bytes.into_framed();
        let (got, end) = drain(&mut rx, how);
        if !got.is_empty() || end != Err(ErrorKind::UnexpectedEof) {
            failures.push(format!("{how:?}, claim_first {claim_first}: frames {got:02x?}, then {end:?}"));
        }
    }
    assert!(failures.is_empty(), "frames nobody sent, made of raw bytes one lap back:\n{}", failures.join("\n"));
}

/// The same state, with the consumer left a byte end: a byte newcomer takes the producer role
/// over and writes "after". The consumer must read "after" and nothing else: the dead
/// producer committed nothing after its raw bytes, which were read already. On the reviewed
/// code the take-over's cover (`Sender::resume`, run because the dead producer's framing
/// epoch is odd) recognises the raw word at the head as a stamped frame, with "the clear mark"
/// (the zeros) after it, and commits those 16 stale bytes a second time, ahead of the
/// newcomer's.
#[test]
fn a_take_over_commits_no_raw_bytes_left_at_an_unmarked_epoch_start() {
    let _dog = watchdog("a_take_over_commits_no_raw_bytes_left_at_an_unmarked_epoch_start", Duration::from_secs(30));
    for claim_first in [false, true] {
        let (ring, mut bytes) = framed_producer_dies_after_converting_on_a_full_ring(claim_first);
        assert_eq!(
            common::read_after_a_byte_newcomer(&ring, &mut bytes),
            b"after",
            "claim_first {claim_first}: the byte stream after the take-over: stale bytes committed again ahead of it"
        );
    }
}

/// A producer whose header says its framing epoch began past its head (a forged start: an
/// honest producer never leaves its head before it) dies with a batch stamped above the head
/// there. The consumer trusts no stamp before the start (`Receiver::epoch_from`), so a
/// newcomer must not cover those frames either (`Sender::resume` asks the same): the two
/// sides agree that nothing was committed, and a byte end reads only the newcomer's bytes.
#[test]
fn a_take_over_covers_nothing_before_a_forged_framing_start() {
    let _dog = watchdog("a_take_over_covers_nothing_before_a_forged_framing_start", Duration::from_secs(30));
    let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    let peek = Peek::new(&ring);
    let mut bytes = ring.clone().into_consumer().unwrap();
    let page = SharedPage::new();
    let mut child = dying_batch(&ring, &page, false, 2);
    while page.word(0).load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_micros(100));
    }
    page.word(1).store(1, Ordering::SeqCst);
    assert_eq!(child.wait(), 0);
    assert_eq!(peek.start(), 0, "the epoch began at the batch");
    peek.header.u64_at(header_offsets::OFF_FRAMING_START).store(64, Ordering::SeqCst);
    assert_eq!(common::read_after_a_byte_newcomer(&ring, &mut bytes), b"after", "frames before the start covered");
}

/// Where and when the framing epoch begins (`framing_start`, header offset 104; the epoch,
/// offset 60 in the producer's role slot): at the first frame's position, marked clear, when
/// `into_framed` finds room for that word by the consumer's cursor as it is now (here the
/// producer's cached view still says full: the consumer has read the whole lap since). On a
/// full ring, not at the conversion (the epoch stays even, the word keeps its unread bytes)
/// but when the first frame claims its room.
#[test]
fn the_framing_epoch_begins_where_the_first_frame_goes_once_that_word_is_free() {
    let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
    let peek = Peek::new(&ring);
    let (mut tx, mut rx) = (ring.clone().into_producer().unwrap(), ring.clone().into_consumer().unwrap());
    let cap = tx.capacity();
    let mut lap = vec![0u8; cap];
    tx.write_all(&vec![0x11; cap]).unwrap();
    rx.read_exact(&mut lap).unwrap();
    let tx = tx.into_framed();
    assert_eq!((peek.start(), peek.word(0), peek.epoch() % 2), (cap as u64, 0, 1), "room by the consumer's cursor now");
    let mut tx = tx.into_inner();
    tx.write_all(&vec![0x22; cap]).unwrap();
    let bytes_epoch = peek.epoch();
    assert_eq!(bytes_epoch % 2, 0);
    let mut tx = tx.into_framed();
    let raw = u64::from_le_bytes([0x22; 8]);
    assert_eq!(
        (peek.epoch(), peek.start(), peek.word(0)),
        (bytes_epoch, cap as u64, raw),
        "a full ring: not begun yet"
    );
    rx.read_exact(&mut lap).unwrap();
    assert_eq!(lap, vec![0x22; cap]);
    // The first frame claims its room: the epoch begins there. The live stream carries it
    // (through head), and the frames after it (by their stamps).
    let mut rx = rx.into_framed();
    for (k, msg) in [&b"one"[..], b"two", b"three"].into_iter().enumerate() {
        tx.send(msg).unwrap();
        if k == 0 {
            assert_eq!((peek.epoch(), peek.start()), (bytes_epoch + 1, 2 * cap as u64), "begun with the first frame");
        }
        assert_eq!(rx.recv().unwrap().as_deref(), Some(msg));
    }
    drop(tx);
    assert!(rx.recv().unwrap().is_none());
}

// ---------------------------------------------------------------------------------------------
// Pins: properties checked and found sound.
// ---------------------------------------------------------------------------------------------

/// A producer process that sends frame A (0xAA) when `after_a`, then writes a batch of
/// `batch` 8-byte frames B1, B2, ... (payload 0xB1, 0xB2, ...): B1's header unstamped, the
/// others stamped, as `Sender::put` leaves them; signals word 0 of `page`, waits for word 1,
/// stores B1's stamp (the first of a publish's last two stores) and dies before the head store.
/// Returns the child (still alive, waiting for word 1).
fn dying_batch(ring: &SharedRing, page: &SharedPage, after_a: bool, batch: usize) -> common::Child {
    let theirs = ring.clone();
    spawn_child(move || {
        let mut tx = theirs.into_producer().unwrap().into_framed();
        if after_a {
            tx.send(&[0xAA; 8]).unwrap();
        }
        let mut grant = tx.reserve(8).unwrap();
        grant.copy_from_slice(&[0xB1; 8]);
        let first = grant.as_mut_ptr().wrapping_sub(8);
        let b1 = if after_a { 16 } else { 0 };
        // SAFETY: B1's header word (8 bytes before the grant) and the later frames' 16 bytes
        // each after it lie in the free room of this fresh ring of at least 4 KiB, claimed by
        // this producer (the clear mark after the last is the fresh ring's zero); 8-aligned.
        let header = unsafe {
            for k in 1..batch {
                let at = first.add(16 * k);
                at.cast::<u64>().write_volatile(stamped_word(b1 + 16 * k as u64, 8).to_le());
                at.add(8).cast::<[u8; 8]>().write_volatile([0xB1 + k as u8; 8]);
            }
            AtomicU64::from_ptr(first.cast::<u64>())
        };
        header.store((stamped_word(b1, 8) ^ 3 << 62).to_le(), Ordering::Release);
        page.word(0).store(1, Ordering::SeqCst);
        while page.word(1).load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
        header.store(stamped_word(b1, 8).to_le(), Ordering::Release);
        // SAFETY: ends the child at once, the grant and the end open.
        unsafe { libc::_exit(0) }
    })
}

fn batch_payloads(batch: usize) -> Vec<Vec<u8>> {
    (0..batch).map(|k| vec![0xB1 + k as u8; 8]).collect()
}

/// Brings the consumer to the state the death finds it in: A taken through head (`after_a`),
/// then a look at the unstamped B1 (watching head from then on); lets the child die.
fn consumer_watches_head_then_producer_dies(
    rx: &mut mirror_ring::FramedConsumer,
    page: &SharedPage,
    child: &mut common::Child,
    after_a: bool,
) {
    if after_a {
        assert_eq!(rx.recv().unwrap().as_deref(), Some(&[0xAA; 8][..]));
    }
    while page.word(0).load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_micros(100));
    }
    let err = rx.try_recv().map(|f| f.map(|f| f.to_vec())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock, "B1 is not published yet");
    page.word(1).store(1, Ordering::SeqCst);
    assert_eq!(child.wait(), 0);
}

/// A producer process writes a batch of three 8-byte frames (B1's header unstamped, as a
/// batch's first frame is until its publish; the others stamped); the consumer looks and
/// finds B1 unstamped (or, before any frame came through the head, looks at the head only);
/// then the producer stores B1's stamp, the first of its publish's last two stores, and dies
/// before the head store. The frames are complete and committed: a newcomer covers them
/// (`Sender::resume`). So every blocking and non-blocking framed receive (recv, try_recv,
/// recv_timeout, recv_batch, recv_into) must deliver them, each once and in order, before it
/// reports the death, and report it again when asked again. It used to report the death at
/// once, and after it turned into a byte end, a byte newcomer's cover handed it the frames' raw
/// bytes, headers and all, ahead of the newcomer's own (the chaos suite caught it, as a
/// "message nobody committed"). With `after_a` the producer first sends frame A, which the
/// consumer takes through the head, so it trusts stamps and watches the head only for B1's
/// unstamped header; without, the batch opens the framing epoch and the consumer trusts no
/// stamp yet.
#[test]
fn a_batch_stamped_while_the_consumer_watched_head_is_delivered_before_the_death() {
    let _dog = watchdog("a_batch_stamped_while_the_consumer_watched_head_is_delivered", Duration::from_secs(60));
    for after_a in [true, false] {
        for how in ALL_RECEIVES {
            let case = format!("{how:?}, after_a {after_a}");
            let ring = RingOptions::new().capacity(4096).shared().unwrap();
            let mut rx = ring.clone().into_consumer().unwrap().into_framed();
            let page = SharedPage::new();
            let mut child = dying_batch(&ring, &page, after_a, 3);
            consumer_watches_head_then_producer_dies(&mut rx, &page, &mut child, after_a);
            let (got, end) = drain(&mut rx, how);
            assert_eq!(got, batch_payloads(3), "{case}: the committed batch, before the death");
            assert_eq!(end, Err(ErrorKind::UnexpectedEof), "{case}: then the death");
            // Asked again: the death again, nothing delivered twice.
            let (again, end) = drain(&mut rx, how);
            assert_eq!((again.len(), end), (0, Err(ErrorKind::UnexpectedEof)), "{case}: asked again");
            let mut bytes = rx.into_inner();
            assert_eq!(
                common::read_after_a_byte_newcomer(&ring, &mut bytes),
                b"after",
                "{case}: the byte stream after the take-over"
            );
        }
    }
}

/// The async framed consumer (tokio), `recv` and `recv_batch`: as above. It receives through
/// `try_recv`/`try_recv_batch`, so it must take the same look after the death.
#[cfg(feature = "tokio")]
#[test]
fn pin_the_async_framed_consumer_delivers_a_stamped_batch_before_the_death() {
    let _dog = watchdog("pin_the_async_framed_consumer_delivers_a_stamped_batch", Duration::from_secs(60));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for after_a in [true, false] {
        for batch_call in [false, true] {
            let case = format!("recv_batch {batch_call}, after_a {after_a}");
            let ring = RingOptions::new().capacity(4096).shared().unwrap();
            let mut rx = ring.clone().into_consumer().unwrap().into_framed();
            let page = SharedPage::new();
            let mut child = dying_batch(&ring, &page, after_a, 3);
            consumer_watches_head_then_producer_dies(&mut rx, &page, &mut child, after_a);
            let mut rx = rx.into_async().unwrap();
            let (got, end) = rt.block_on(async {
                let mut got = Vec::new();
                let end = loop {
                    let r = tokio::time::timeout(Duration::from_secs(10), async {
                        if batch_call {
                            rx.recv_batch(|f| got.push(f.to_vec())).await.map(|n| n > 0)
                        } else {
                            rx.recv().await.map(|f| f.map(|f| got.push(f.to_vec())).is_some())
                        }
                    })
                    .await
                    .expect("the async receive hung after the death");
                    match r {
                        Ok(true) => {}
                        Ok(false) => break Ok(()),
                        Err(e) => break Err(e.kind()),
                    }
                };
                (got, end)
            });
            assert_eq!(got, batch_payloads(3), "{case}");
            assert_eq!(end, Err(ErrorKind::UnexpectedEof), "{case}");
        }
    }
}

/// A producer that dies with frames held back by `set_batch` (written, the first unstamped,
/// nothing of the batch published) committed none of them: the consumer delivers the frames
/// it published (A) and reports the death; a byte newcomer does not cover the pending frames
/// (their first is unstamped), so the consumer, turned into a byte end, reads only the
/// newcomer's bytes. Guards the limits of `look_after_death` (no stamp, no frame) and of
/// `Sender::resume`.
#[test]
fn pin_frames_pending_in_a_dead_producers_batch_are_neither_delivered_nor_covered() {
    let _dog = watchdog("pin_frames_pending_in_a_dead_producers_batch", Duration::from_secs(30));
    for how in ALL_RECEIVES {
        let ring = RingOptions::new().capacity(4096).shared().unwrap();
        let mut rx = ring.clone().into_consumer().unwrap().into_framed();
        let theirs = ring.clone();
        let status = in_child(move || {
            let mut tx = theirs.into_producer().unwrap().into_framed();
            tx.send(&[0xAA; 8]).unwrap();
            tx.set_batch(8);
            for k in 0..5u8 {
                tx.send(&[0xC0 + k; 24]).unwrap();
            }
            let mut grant = tx.reserve(8).unwrap();
            grant.copy_from_slice(&[0xCF; 8]);
            // SAFETY: ends the child at once, five frames pending, a grant open.
            unsafe { libc::_exit(0) }
        });
        assert_eq!(status, 0);
        let (got, end) = drain(&mut rx, how);
        assert_eq!(got, [vec![0xAA; 8]], "{how:?}: only the published frame");
        assert_eq!(end, Err(ErrorKind::UnexpectedEof), "{how:?}");
        let mut bytes = rx.into_inner();
        assert_eq!(
            common::read_after_a_byte_newcomer(&ring, &mut bytes),
            b"after",
            "{how:?}: pending frames committed by the take-over"
        );
    }
}

/// After the death (the batch taken by its stamps, so the consumer's cursor, and the tail it
/// released, are ahead of the published head), the consumer turns into bytes and framed again
/// (trusting no stamp), and a newcomer takes over and turns framed: the consumer gets the
/// newcomer's frames C and D and the end of the stream, nothing twice, nothing lost. Guards
/// `resume_at` (tail ahead of head), the cover, and the new epoch's first frame through head.
#[test]
fn pin_a_reframed_consumer_gets_a_framed_newcomers_frames_after_the_death() {
    let _dog = watchdog("pin_a_reframed_consumer_gets_a_framed_newcomers_frames", Duration::from_secs(30));
    for after_a in [true, false] {
        let ring = RingOptions::new().capacity(4096).shared().unwrap();
        let mut rx = ring.clone().into_consumer().unwrap().into_framed();
        let page = SharedPage::new();
        let mut child = dying_batch(&ring, &page, after_a, 2);
        consumer_watches_head_then_producer_dies(&mut rx, &page, &mut child, after_a);
        let (got, end) = drain(&mut rx, Receive::Recv);
        assert_eq!((got, end), (batch_payloads(2), Err(ErrorKind::UnexpectedEof)));
        let mut rx = rx.into_inner().into_framed();
        let mut tx = ring.take_over_producer().unwrap().into_framed();
        tx.send(&[0xCC; 8]).unwrap();
        tx.send(&[0xDD; 40]).unwrap();
        drop(tx);
        let (got, end) = drain(&mut rx, Receive::Recv);
        assert_eq!(got, [vec![0xCC; 8], vec![0xDD; 40]], "after_a {after_a}");
        assert_eq!(end, Ok(()), "after_a {after_a}");
    }
}

/// A newcomer (a thread of the consumer's process) takes the dead producer's role over at a
/// random moment while the consumer receives (its look, its look after the death, or after it
/// reported the death), turns framed and sends C, then closes. However the two interleave, the
/// consumer gets B1, B2, C exactly once each, in order, then the end of the stream (a death
/// reported before the take-over is retried). Guards the fences that order the cover before
/// the epoch change (`end_framing`, `take`) and the head look outside an epoch.
#[test]
fn pin_a_newcomer_taking_over_mid_look_loses_and_repeats_nothing() {
    let _dog = watchdog("pin_a_newcomer_taking_over_mid_look", Duration::from_secs(60));
    let mut rng = common::Rng::new(common::seed());
    for round in 0..24 {
        let after_a = round % 2 == 0;
        let ring = RingOptions::new().capacity(4096).shared().unwrap();
        let mut rx = ring.clone().into_consumer().unwrap().into_framed();
        let page = SharedPage::new();
        let mut child = dying_batch(&ring, &page, after_a, 2);
        consumer_watches_head_then_producer_dies(&mut rx, &page, &mut child, after_a);
        let delay = Duration::from_micros(rng.up_to(400) as u64);
        let theirs = ring.clone();
        let newcomer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let mut tx = theirs.take_over_producer().unwrap().into_framed();
            tx.send(&[0xCC; 8]).unwrap();
        });
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let end = loop {
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(Some(f)) => got.push(f.to_vec()),
                Ok(None) => break Ok(()),
                Err(e) if e.kind() == ErrorKind::UnexpectedEof && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(e) => break Err(e.kind()),
            }
        };
        newcomer.join().unwrap();
        let mut want = batch_payloads(2);
        want.push(vec![0xCC; 8]);
        assert_eq!((got, end), (want, Ok(())), "round {round}, after_a {after_a}, delay {delay:?}");
    }
}

/// A hostile producer stamps a whole lap of frames above the head (every 16 bytes, each of its
/// own position), forging no end to the run, and dies. The consumer, looking after the death,
/// takes at most one lap of them (the position stamp of the next lap differs), each once, then
/// reports the death: no loop, nothing twice. Guards the room `limit` and the position stamp in
/// the look after the death.
#[test]
fn pin_a_hostile_dead_producers_lap_of_stamps_ends_within_one_lap() {
    let _dog = watchdog("pin_a_hostile_dead_producers_lap_of_stamps", Duration::from_secs(30));
    for how in [Receive::Recv, Receive::TryRecv, Receive::Batch] {
        let ring = RingOptions::new().capacity(4096).shared().unwrap();
        let mut rx = ring.clone().into_consumer().unwrap().into_framed();
        let cap = rx.capacity();
        let theirs = ring.clone();
        let status = in_child(move || {
            let mut tx = theirs.into_producer().unwrap().into_framed();
            let grant = tx.reserve(8).unwrap();
            let base = grant.as_ptr().wrapping_sub(8) as *mut u8;
            // SAFETY: the ring's view A, `cap` bytes from `base` (the fresh ring's position 0),
            // 8-aligned; nothing is published.
            unsafe {
                for k in (0..cap / 16).rev() {
                    let at = base.add(16 * k);
                    at.add(8).cast::<u64>().write_volatile(k as u64);
                    AtomicU64::from_ptr(at.cast::<u64>())
                        .store(stamped_word(16 * k as u64, 8).to_le(), Ordering::Release);
                }
            }
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(0) }
        });
        assert_eq!(status, 0);
        let (got, end) = drain(&mut rx, how);
        let want: Vec<Vec<u8>> = (0..cap as u64 / 16).map(|k| k.to_le_bytes().to_vec()).collect();
        assert_eq!(got.len(), want.len(), "{how:?}: one lap of frames");
        assert_eq!(got, want, "{how:?}");
        assert_eq!(end, Err(ErrorKind::UnexpectedEof), "{how:?}");
    }
}

/// A producer sends one frame that fills the ring to the byte (no clear mark after it: the
/// word there is its own header, one lap old) and dies. The consumer delivers it, then reports
/// the death: the header one lap old is "not yet", never a frame, also in the look after the
/// death. Likewise for a consumer that turned framed only after the producer did, at that
/// frame, so that it takes the frame through head and looks at the stale header unarmed.
#[test]
fn pin_a_ring_filled_to_the_byte_leaves_no_stale_frame_after_the_death() {
    let _dog = watchdog("pin_a_ring_filled_to_the_byte", Duration::from_secs(30));
    for how in ALL_RECEIVES {
        let ring = RingOptions::new().capacity(4096).shared().unwrap();
        let mut rx = ring.clone().into_consumer().unwrap().into_framed();
        let max = rx.max_frame_len();
        let theirs = ring.clone();
        let status = in_child(move || {
            let mut tx = theirs.into_producer().unwrap().into_framed();
            tx.send(&vec![0x42; max]).unwrap();
            std::mem::forget(tx);
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(0) }
        });
        assert_eq!(status, 0);
        let (got, end) = drain(&mut rx, how);
        assert_eq!(got, [vec![0x42; max]], "{how:?}");
        assert_eq!(end, Err(ErrorKind::UnexpectedEof), "{how:?}");
    }
}
