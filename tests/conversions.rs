//! Raw bytes never pass for a frame, across conversions between bytes and frames and the
//! take-overs after them: from an adversarial review of stop 38 (after 8a41654). First the two
//! defects it found (a frame filling the ring to the byte behind a byte reader stopped inside a
//! frame; the first frame after a conversion on a full ring, stamped above the head and lost
//! at its producer's death), then `pin_` tests for the properties it checked and found sound.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{drain, spawn_child, stamped_word, watchdog, Receive, SharedPage, ALL_RECEIVES};
use mirror_ring::{RingOptions, SharedRing};

// ---------------------------------------------------------------------------------------------
// Defect: a frame that fills the ring to the byte (`brim`, no clear mark after it) while the
// consumer is a byte end whose cursor lies inside a frame's payload.
// ---------------------------------------------------------------------------------------------

/// Frame A's payload (40 bytes, at position 8): its first word reads as the stamped header of
/// an 8-byte frame at position `cap + 8` (where the ring's head will be one lap on), then 8
/// bytes of 0xEE, then zeros (the clear mark after such a frame).
fn payload_a(cap: usize) -> Vec<u8> {
    let mut a = vec![0u8; 40];
    a[..8].copy_from_slice(&stamped_word(cap as u64 + 8, 8).to_le_bytes());
    a[8..16].copy_from_slice(&[0xEE; 8]);
    a
}

/// An honest framed producer process sends frame A (`payload_a`, positions 0..48) while the
/// consumer, a byte end (as `FramedConsumer::into_inner` gives, or one that never turned
/// framed), reads it with `io::Read` in pieces: first its 8-byte header. The producer then
/// sends frame B, which fills the ring to the byte (`Sender::room`: the tail, 8, lies in
/// [start, head], so it is taken for "a frame boundary of this stream"): no clear mark after
/// it, so the word at the new head (`cap + 8`, ring offset 8) keeps A's first payload word.
/// The producer then dies (SIGKILL-like, nothing closed). The consumer reads the rest of A and
/// all of B: every committed byte, once. Returns the ring and the byte consumer at the head.
fn brim_over_a_byte_reader_mid_frame_then_death() -> (SharedRing, mirror_ring::Consumer, usize) {
    let ring = RingOptions::new().capacity(4096).shared().unwrap();
    let mut bytes = ring.clone().into_consumer().unwrap();
    let cap = bytes.capacity();
    let page = SharedPage::new();
    let theirs = ring.clone();
    let mut child = spawn_child(|| {
        let mut tx = theirs.into_producer().unwrap().into_framed();
        tx.send(&payload_a(cap)).unwrap();
        page.word(0).store(1, Ordering::SeqCst);
        while page.word(1).load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
        // Fills the ring to the byte: cap - 40 bytes are free (the tail is at 8). Where the
        // producer will not fill it over the byte reader's cursor, B waits for A's rest to be
        // read (word 2: 1 sent at once, 2 waited).
        let b = vec![0x5B; cap - 48];
        let at_once = tx.try_send(&b).is_ok();
        page.word(2).store(if at_once { 1 } else { 2 }, Ordering::SeqCst);
        let sent = at_once || tx.send(&b).is_ok();
        std::mem::forget(tx);
        // SAFETY: ends the child at once (SIGKILL-like: nothing closed).
        unsafe { libc::_exit(if sent { 0 } else { 3 }) }
    });
    page.await_word(0);
    let mut header = [0u8; 8];
    bytes.read_exact(&mut header).unwrap();
    assert_eq!(u64::from_le_bytes(header), stamped_word(0, 40), "A's header");
    page.word(1).store(1, Ordering::SeqCst);
    page.await_word(2);
    let mut rest = vec![0u8; cap];
    bytes.read_exact(&mut rest).unwrap();
    assert_eq!(child.wait_within(Duration::from_secs(10)), 0, "the producer could not send B");
    assert_eq!(rest[..40], payload_a(cap)[..], "the rest of A");
    assert_eq!(u64::from_le_bytes(rest[40..48].try_into().unwrap()), stamped_word(48, cap as u32 - 48), "B's header");
    assert!(rest[48..].iter().all(|&b| b == 0x5B), "B's payload");
    (ring, bytes, cap)
}

/// The dead producer committed nothing after B, whose bytes the consumer has read: a byte
/// newcomer that takes the role over and writes "after" must leave the consumer exactly
/// "after". On the reviewed code the take-over's cover (`Sender::resume`: the framing epoch is
/// odd and the head past its start) finds A's stale payload word at the head, which reads as
/// a stamped 8-byte frame of that position with zeros (a "clear mark") after it, and commits
/// those 16 bytes a second time ahead of the newcomer's.
#[test]
fn a_take_over_after_a_brim_frame_over_a_byte_reader_commits_no_stale_bytes() {
    let _dog = watchdog("a_take_over_after_a_brim_frame_over_a_byte_reader", Duration::from_secs(30));
    let (ring, mut bytes, _cap) = brim_over_a_byte_reader_mid_frame_then_death();
    let got = common::read_after_a_byte_newcomer(&ring, &mut bytes);
    assert_eq!(got, b"after", "the byte stream after the take-over: stale bytes of A committed again ahead of it");
}

/// The same state, the consumer turned framed at the head (a frame boundary: the end of B)
/// after reading everything: no frame was sent after B, so every receive must report the
/// death. On the reviewed code the look after the death (`Receiver::look_after_death`, its
/// cursor inside the framing epoch) trusts A's stale payload word at its cursor as a stamp and
/// hands out 8 bytes of 0xEE as a frame nobody sent.
#[test]
fn the_look_after_the_death_takes_no_stale_word_after_a_brim_frame_for_a_frame() {
    let _dog = watchdog("the_look_after_the_death_takes_no_stale_word_after_a_brim_frame", Duration::from_secs(60));
    let mut failures = Vec::new();
    for how in ALL_RECEIVES {
        let (_ring, bytes, _cap) = brim_over_a_byte_reader_mid_frame_then_death();
        let mut rx = bytes.into_framed();
        let (got, end) = drain(&mut rx, how);
        if !got.is_empty() || end != Err(ErrorKind::UnexpectedEof) {
            failures.push(format!("{how:?}: frames {got:02x?}, then {end:?}"));
        }
    }
    assert!(failures.is_empty(), "frames nobody sent, made of stale payload bytes:\n{}", failures.join("\n"));
}

/// In one thread, by honest calls: frame A (`payload_a`) sent, the byte consumer reads its
/// header; frame B (`cap - 48` bytes of 0x5B) sent over the byte reader's cursor if the
/// producer fills the ring to the byte there, or (where it will not) once A's rest is read;
/// A's rest read. Returns the producer, the consumer (at the end of A) and the capacity.
fn brim_over_a_live_byte_reader() -> (mirror_ring::FramedProducer, mirror_ring::Consumer, usize) {
    let (tx, mut bytes) = mirror_ring::channel(4096).unwrap();
    let cap = tx.capacity();
    let mut tx = tx.into_framed();
    tx.send(&payload_a(cap)).unwrap();
    let mut header = [0u8; 8];
    bytes.read_exact(&mut header).unwrap();
    let b = vec![0x5B; cap - 48];
    let at_once = tx.try_send(&b).is_ok();
    let mut rest_of_a = [0u8; 40];
    bytes.read_exact(&mut rest_of_a).unwrap();
    assert_eq!(rest_of_a[..], payload_a(cap)[..]);
    if !at_once {
        tx.try_send(&b).unwrap();
    }
    (tx, bytes, cap)
}

/// The same brim frame with both ends alive, in one thread, by honest calls only: the
/// consumer, a byte end, reads A's header, the producer sends B (filling the ring to the
/// byte over the byte reader's cursor), the consumer reads the rest of A and turns framed at
/// the frame boundary after it, takes B through head (which arms it: B lies inside the
/// framing epoch), then finds A's stale payload word at the head, which reads as the stamp
/// of that position. It must find nothing there (`WouldBlock`), then the producer's next
/// frame C. On the reviewed code it takes 8 bytes of 0xEE as a frame nobody sent, and then
/// loses its place in the stream.
#[test]
fn a_live_framed_consumer_takes_no_stale_word_after_a_brim_frame_for_a_frame() {
    let (mut tx, bytes, cap) = brim_over_a_live_byte_reader();
    let mut rx = bytes.into_framed();
    assert_eq!(rx.try_recv().unwrap().map(|f| f.len()), Some(cap - 48), "B");
    let next = rx.try_recv().map(|f| f.map(|f| f.to_vec())).map_err(|e| e.kind());
    tx.send(b"C").unwrap();
    let after = rx.try_recv().map(|f| f.map(|f| f.to_vec())).map_err(|e| e.kind());
    assert_eq!(
        (next, after),
        (Err(ErrorKind::WouldBlock), Ok(Some(b"C".to_vec()))),
        "after B: nothing, then C (stale payload of A taken for a frame?)"
    );
}

/// The live case through the async framed consumer (feature `tokio`): after B, nothing
/// within 200 ms, then C.
#[cfg(feature = "tokio")]
#[test]
fn an_async_framed_consumer_takes_no_stale_word_after_a_brim_frame_for_a_frame() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (mut tx, bytes, cap) = brim_over_a_live_byte_reader();
    let mut rx = bytes.into_framed().into_async().unwrap();
    let (next, after) = rt.block_on(async {
        assert_eq!(rx.recv().await.unwrap().map(|f| f.len()), Some(cap - 48), "B");
        let next = tokio::time::timeout(Duration::from_millis(200), async {
            rx.recv().await.map(|f| f.map(|f| f.to_vec())).map_err(|e| e.kind())
        })
        .await
        .ok();
        tx.send(b"C").unwrap();
        let after = tokio::time::timeout(Duration::from_secs(5), async {
            rx.recv().await.map(|f| f.map(|f| f.to_vec())).map_err(|e| e.kind())
        })
        .await
        .ok();
        (next, after)
    });
    assert_eq!((next, after), (None, Some(Ok(Some(b"C".to_vec())))), "after B: nothing, then C");
}

// ---------------------------------------------------------------------------------------------
// Defect: after a conversion on a full ring (where 8a41654 began the epoch one word past the
// first frame's header; now the epoch begins when that frame claims its room), a first frame
// stamped above the head by a producer that then died counts as committed (`docs::lifecycle`,
// "Where the newcomer resumes"; `docs::framing`), but was neither delivered by the consumer's
// look after the death nor covered by a newcomer.
// ---------------------------------------------------------------------------------------------

/// A producer process fills the ring with raw bytes (`full`) or writes 16 (not full), turns
/// framed (on a full ring the epoch then begins only with F1's claim, at `cap`; otherwise at
/// once, at `16`), waits until this process has read every
/// raw byte, then sends F1 (8 bytes of 0xF1) and dies between the publish's last two stores:
/// payload, clear mark, stamped header stored, head not. Returns the ring and the byte
/// consumer at F1's position.
///
/// `taken_over`: a first producer process writes the raw bytes and dies holding the role; the
/// one that sends F1 takes the role over (`took_over`), then turns framed.
fn first_frame_stamped_above_head_then_death(full: bool, taken_over: bool) -> (SharedRing, mirror_ring::Consumer, u64) {
    let ring = RingOptions::new().capacity(4096).shared().unwrap();
    let mut bytes = ring.clone().into_consumer().unwrap();
    let cap = bytes.capacity();
    let raw_len = if full { cap } else { 16 };
    if taken_over {
        let theirs = ring.clone();
        let mut first = spawn_child(move || {
            let mut tx = theirs.into_producer().unwrap();
            tx.write_all(&vec![0x11; raw_len]).unwrap();
            std::mem::forget(tx);
            // SAFETY: ends the child at once, holding the role.
            unsafe { libc::_exit(0) }
        });
        assert_eq!(first.wait_within(Duration::from_secs(10)), 0);
    }
    let page = SharedPage::new();
    let theirs = ring.clone();
    let mut child = spawn_child(|| {
        let tx = if taken_over {
            theirs.take_over_producer().unwrap()
        } else {
            let mut tx = theirs.into_producer().unwrap();
            tx.write_all(&vec![0x11; raw_len]).unwrap();
            tx
        };
        let mut tx = tx.into_framed();
        page.word(0).store(1, Ordering::SeqCst);
        while page.word(1).load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
        let mut grant = tx.reserve(8).unwrap();
        grant.copy_from_slice(&[0xF1; 8]);
        let header = grant.as_mut_ptr().wrapping_sub(8);
        // SAFETY: F1's header word (8 bytes before the grant) and the word after F1 lie in the
        // free room (the whole ring is free: every raw byte was read), 8-aligned, inside view A
        // and its mirror.
        unsafe {
            header.add(16).cast::<u64>().write_volatile(0);
            AtomicU64::from_ptr(header.cast::<u64>()).store(stamped_word(raw_len as u64, 8).to_le(), Ordering::Release);
        }
        // SAFETY: ends the child at once, before the head store.
        unsafe { libc::_exit(0) }
    });
    page.await_word(0);
    let mut raw = vec![0u8; raw_len];
    bytes.read_exact(&mut raw).unwrap();
    page.word(1).store(1, Ordering::SeqCst);
    assert_eq!(child.wait_within(Duration::from_secs(10)), 0);
    (ring, bytes, raw_len as u64)
}

/// F1's raw bytes as a byte end reads them once covered: its stamped header, its payload.
fn f1_bytes(at: u64) -> Vec<u8> {
    let mut v = stamped_word(at, 8).to_le_bytes().to_vec();
    v.extend_from_slice(&[0xF1; 8]);
    v
}

/// The framed consumer must take F1 before it reports the death, as after a conversion on a
/// ring that was not full (`pin_a_first_frame_stamped_above_head_is_delivered_and_covered`).
/// On the reviewed code F1's position lies before the epoch's start (`cap + 8`), so the look
/// after the death does not look at it: the frame is lost.
#[test]
fn a_first_frame_stamped_above_head_after_a_full_ring_conversion_is_delivered_after_the_death() {
    let _dog = watchdog("a_first_frame_stamped_above_head_after_a_full_ring_conversion", Duration::from_secs(60));
    let mut failures = Vec::new();
    for (taken_over, how) in [false, true].into_iter().flat_map(|t| ALL_RECEIVES.map(|how| (t, how))) {
        let (_ring, bytes, _at) = first_frame_stamped_above_head_then_death(true, taken_over);
        let mut rx = bytes.into_framed();
        let (got, end) = drain(&mut rx, how);
        if got != [vec![0xF1; 8]] || end != Err(ErrorKind::UnexpectedEof) {
            failures.push(format!("{how:?}, taken_over {taken_over}: frames {got:02x?}, then {end:?}"));
        }
    }
    assert!(failures.is_empty(), "a committed frame (stamped above head) lost:\n{}", failures.join("\n"));
}

/// The same (also for a producer that took the role over before it turned framed: review 38c),
/// the consumer left a byte end: a byte newcomer's take-over must cover F1 (committed)
/// so the consumer reads F1's bytes, then "after". On the reviewed code `Sender::resume` sees
/// the head before the epoch's start and covers nothing: F1 is overwritten.
#[test]
fn a_take_over_covers_a_first_frame_stamped_above_head_after_a_full_ring_conversion() {
    let _dog = watchdog("a_take_over_covers_a_first_frame_stamped_above_head", Duration::from_secs(30));
    for taken_over in [false, true] {
        let (ring, mut bytes, at) = first_frame_stamped_above_head_then_death(true, taken_over);
        let mut want = f1_bytes(at);
        want.extend_from_slice(b"after");
        let got = common::read_after_a_byte_newcomer(&ring, &mut bytes);
        assert_eq!(got, want, "taken_over {taken_over}: F1 lost by the take-over");
    }
}

// ---------------------------------------------------------------------------------------------
// Pins.
// ---------------------------------------------------------------------------------------------

/// The control for the defect above: after a conversion on a ring that was not full, a first
/// frame stamped above the head by a producer that died is delivered before the death (every
/// receive), and a byte newcomer covers it. Guards `look_after_death` trusting the epoch's
/// start, and `Sender::resume`.
#[test]
fn pin_a_first_frame_stamped_above_head_is_delivered_and_covered() {
    let _dog = watchdog("pin_a_first_frame_stamped_above_head_is_delivered_and_covered", Duration::from_secs(60));
    for how in ALL_RECEIVES {
        let (_ring, bytes, _at) = first_frame_stamped_above_head_then_death(false, false);
        let mut rx = bytes.into_framed();
        let (got, end) = drain(&mut rx, how);
        assert_eq!((got, end), (vec![vec![0xF1; 8]], Err(ErrorKind::UnexpectedEof)), "{how:?}");
    }
    let (ring, mut bytes, at) = first_frame_stamped_above_head_then_death(false, false);
    let mut want = f1_bytes(at);
    want.extend_from_slice(b"after");
    assert_eq!(common::read_after_a_byte_newcomer(&ring, &mut bytes), want);
}

/// A frame that fills the ring to the byte behind a *framed* reader (its cursor on a frame
/// boundary, A2's header) is sent at once, with no clear mark after it; the consumer takes it,
/// finds the header one lap old after it ("not yet"), then the next frame. Guards the brim
/// (`Sender::room`) for the case it was made for.
#[test]
fn pin_a_brim_frame_behind_a_framed_reader_is_sent_at_once_and_nothing_follows_it() {
    let (tx, rx) = mirror_ring::channel(4096).unwrap();
    let cap = tx.capacity();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    tx.send(&payload_a(cap)).unwrap();
    assert_eq!(&*rx.recv().unwrap().unwrap(), &payload_a(cap)[..]);
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock, "releases A");
    tx.send(&[0xA2; 8]).unwrap();
    // 48..64 is A2; the tail is at 48: cap - 16 bytes free.
    let b = vec![0x5B; cap - 24];
    tx.try_send(&b).expect("fills the ring to the byte at once");
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), &[0xA2; 8]);
    assert_eq!(rx.try_recv().unwrap().unwrap().len(), cap - 24);
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock, "after B");
    tx.send(b"C").unwrap();
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"C");
    drop(tx);
    assert!(rx.try_recv().unwrap().is_none());
}

/// An armed framed consumer (A through head, B by its stamp) at the clear mark after the last
/// frame; the producer process turns into bytes and writes, uncommitted, a word that reads as
/// the stamped header of an 8-byte frame at that very position, a payload and a clear mark;
/// the consumer must not take it (the epoch moved on), before or after the producer's death,
/// and a byte newcomer covers nothing (the epoch is even). Guards `epoch_holds` after the
/// stamp's load, `look_after_death` while armed, and `took_over`'s epoch test.
#[test]
fn pin_uncommitted_raw_bytes_after_the_last_frame_before_into_inner_are_never_a_frame() {
    let _dog = watchdog("pin_uncommitted_raw_bytes_after_the_last_frame", Duration::from_secs(30));
    let ring = RingOptions::new().capacity(4096).shared().unwrap();
    let mut rx = ring.clone().into_consumer().unwrap().into_framed();
    let page = SharedPage::new();
    let theirs = ring.clone();
    let mut child = spawn_child(|| {
        let mut tx = theirs.into_producer().unwrap().into_framed();
        tx.send(&[0xAA; 8]).unwrap();
        tx.send(&[0xBB; 8]).unwrap();
        page.word(0).store(1, Ordering::SeqCst);
        while page.word(1).load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
        let mut bytes = tx.into_inner();
        let mut grant = bytes.write_grant(24).unwrap();
        grant[..8].copy_from_slice(&stamped_word(32, 8).to_le_bytes());
        grant[8..16].copy_from_slice(&[0xEE; 8]);
        grant[16..24].copy_from_slice(&[0; 8]);
        page.word(2).store(1, Ordering::SeqCst);
        while page.word(3).load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
        // SAFETY: ends the child at once, the grant uncommitted.
        unsafe { libc::_exit(0) }
    });
    page.await_word(0);
    assert_eq!(&*rx.recv().unwrap().unwrap(), &[0xAA; 8]);
    assert_eq!(&*rx.recv().unwrap().unwrap(), &[0xBB; 8]);
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock, "armed, at the clear mark");
    page.word(1).store(1, Ordering::SeqCst);
    page.await_word(2);
    let live = rx.try_recv().map(|f| f.map(|f| f.to_vec())).map_err(|e| e.kind());
    assert_eq!(live, Err(ErrorKind::WouldBlock), "the byte producer's uncommitted bytes, live");
    page.word(3).store(1, Ordering::SeqCst);
    assert_eq!(child.wait_within(Duration::from_secs(10)), 0);
    let (got, end) = drain(&mut rx, Receive::Recv);
    assert_eq!((got, end), (vec![], Err(ErrorKind::UnexpectedEof)), "after the death");
    let mut bytes = rx.into_inner();
    assert_eq!(common::read_after_a_byte_newcomer(&ring, &mut bytes), b"after");
}

/// Frames held back by `set_batch` at `into_inner` are published by it; raw bytes after them
/// that read as a stamped frame of their position (and the clear mark after it) reach a
/// consumer turned into bytes at the same position as bytes, once; both ends turned framed
/// again at the same position carry the next frame, and the end of the stream. Guards the
/// publish in `into_inner` and a round trip bytes → framed → bytes → framed on both ends.
#[test]
fn pin_a_round_trip_with_pending_frames_and_stamp_like_bytes_between() {
    let (tx, rx) = mirror_ring::channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    tx.set_batch(8);
    for k in 1..=3u8 {
        tx.send(&[k; 8]).unwrap();
    }
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock, "held back");
    let mut raw_tx = tx.into_inner();
    for k in 1..=3u8 {
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), &[k; 8]);
    }
    let mut raw = stamped_word(48, 8).to_le_bytes().to_vec();
    raw.extend_from_slice(&[0xEE; 8]);
    raw.extend_from_slice(&[0; 8]);
    raw_tx.write_all(&raw).unwrap();
    let mut raw_rx = rx.into_inner();
    let mut got = vec![0u8; 24];
    raw_rx.read_exact(&mut got).unwrap();
    assert_eq!(got, raw);
    let (mut tx, mut rx) = (raw_tx.into_framed(), raw_rx.into_framed());
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock, "nothing after the bytes");
    tx.send(b"D").unwrap();
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"D");
    assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::WouldBlock);
    drop(tx);
    assert!(rx.try_recv().unwrap().is_none());
}

/// A producer process writes 3 raw bytes (read at once), then fills the ring with raw bytes
/// (head `cap + 3`, unaligned), whose words at positions 8 and 16 read as stamped 8-byte
/// frames of positions `cap + 8` (its first frame, past the alignment skip) and `cap + 16`
/// (where 8a41654 began the epoch on a full ring), each with payload 0xEE and a clear mark; it
/// turns framed and dies. The consumer reads every raw byte, turns framed at `cap + 3`, and
/// must report the death with no frame; a byte newcomer covers nothing. Guards the unmarked
/// word at an unaligned head.
#[test]
fn pin_a_full_ring_conversion_at_an_unaligned_head_trusts_no_raw_word() {
    let _dog = watchdog("pin_a_full_ring_conversion_at_an_unaligned_head", Duration::from_secs(60));
    for how in [None, Some(Receive::Recv), Some(Receive::TryRecv), Some(Receive::Batch)] {
        let ring = RingOptions::new().capacity(4096).shared().unwrap();
        let mut bytes = ring.clone().into_consumer().unwrap();
        let cap = bytes.capacity();
        // Position p of the lap is raw[p - 3].
        let mut raw = vec![0x11u8; cap];
        for (pos, word) in [
            (8, stamped_word(cap as u64 + 8, 8)),
            (16, stamped_word(cap as u64 + 16, 8)),
            (24, u64::from_le_bytes([0xEE; 8])),
            (32, 0),
        ] {
            raw[pos - 3..pos + 5].copy_from_slice(&word.to_le_bytes());
        }
        let theirs = ring.clone();
        let page = SharedPage::new();
        let mut child = spawn_child(|| {
            let mut tx = theirs.into_producer().unwrap();
            tx.write_all(b"abc").unwrap();
            while page.word(0).load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_micros(100));
            }
            tx.write_all(&raw).unwrap();
            std::mem::forget(tx.into_framed());
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(0) }
        });
        let mut abc = [0u8; 3];
        bytes.read_exact(&mut abc).unwrap();
        page.word(0).store(1, Ordering::SeqCst);
        assert_eq!(child.wait_within(Duration::from_secs(10)), 0);
        let mut got = vec![0u8; cap];
        bytes.read_exact(&mut got).unwrap();
        assert_eq!(got, raw);
        match how {
            None => assert_eq!(common::read_after_a_byte_newcomer(&ring, &mut bytes), b"after"),
            Some(how) => {
                let mut rx = bytes.into_framed();
                let (got, end) = drain(&mut rx, how);
                assert_eq!((got, end), (vec![], Err(ErrorKind::UnexpectedEof)), "{how:?}");
            }
        }
    }
}
