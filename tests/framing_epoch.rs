//! The framing epoch and the take-over's cover of the frames stamped above the head
//! (`docs::framing`, "The framing epoch"; `docs::lifecycle`, "Restart"): bytes are never
//! taken for a frame, a frame the consumer took by its stamp is never lent out again or lost
//! across a take-over, and frames stamped above the head by a producer that died are delivered
//! before its death is.

mod common;

use std::time::Duration;

use common::{in_child, page_size, stamped_word, watchdog};
use mirror_ring::{RingOptions, SharedRing};

/// A producer process that sends frame A (0xAA, at 0, published), then writes `batch` frames
/// B (0xB1, 0xB2, ...: 8 bytes each, from 16) up to the stamp of the first, as a publish stores
/// them (a frame sent on its own when `batch` is 1), and dies before the head store: nothing
/// dropped, nothing published.
fn die_between_stamp_and_head(ring: &SharedRing, batch: usize) {
    let child = ring.clone();
    let status = in_child(move || {
        let mut tx = child.into_producer().unwrap().into_framed();
        tx.send(&[0xAA; 8]).unwrap();
        let mut grant = tx.reserve(8).unwrap();
        grant.copy_from_slice(&[0xB1; 8]);
        let first = grant.as_mut_ptr().wrapping_sub(8);
        for k in 1..batch {
            // SAFETY: frame k's header and payload, 16 bytes from 16 * k past the first frame's
            // header, lie in the free room of this fresh ring of at least 4 KiB (the clear mark
            // after the last is its zero); 8-aligned.
            unsafe {
                let at = first.add(16 * k);
                at.cast::<u64>().write_volatile(stamped_word(16 + 16 * k as u64, 8).to_le());
                at.add(8).cast::<[u8; 8]>().write_volatile([0xB1 + k as u8; 8]);
            }
        }
        // SAFETY: the first frame's header word, inside the room the grant claimed (8-aligned).
        unsafe { first.cast::<u64>().write_volatile(stamped_word(16, 8).to_le()) };
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(0) }
    });
    assert_eq!(status, 0);
}

/// A producer process dies between the two stores of a frame sent on its own (the stamp of
/// frame B stored, head not: what `put_and_publish` leaves if it dies there, written here by
/// hand into the free room it had claimed). The framed consumer, which trusts stamps (frame A
/// came through head), takes B by its stamp, as documented ("the consumer may have taken it"),
/// and still holds it as a `Frame`. A process takes the producer role over (here the
/// consumer's own process, which any process mapping the ring may do) and writes bytes: the
/// byte end's first grant starts at the published head, which is B's header, so safe code now
/// holds a `Frame` and a `WriteGrant` over the same bytes, and the frame's payload changes
/// under the consumer, unless the take-over itself covers B (`Sender::resume`), before the
/// newcomer can lend anything.
#[test]
fn a_byte_newcomer_never_lends_a_frame_the_consumer_holds() {
    let _dog = watchdog("a_byte_newcomer_never_lends_a_frame_the_consumer_holds", Duration::from_secs(10));
    byte_newcomer_after_a_death_between_stamp_and_head(1);
}

/// As above, the producer dying in the publish of a batch of three frames: the stamp of the
/// first stored, head not. The consumer takes all three by their stamps and holds the last;
/// the take-over covers the whole batch (it used to cover one frame, the only one a frame sent
/// on its own can leave, when a batch was stamped after its head).
#[test]
fn a_byte_newcomer_never_lends_a_batch_frame_the_consumer_holds() {
    let _dog = watchdog("a_byte_newcomer_never_lends_a_batch_frame_the_consumer_holds", Duration::from_secs(10));
    byte_newcomer_after_a_death_between_stamp_and_head(3);
}

/// The two tests above: `die_between_stamp_and_head(batch)`, the consumer takes every frame and
/// holds the last, and a byte newcomer's first write grant must not overlap it.
fn byte_newcomer_after_a_death_between_stamp_and_head(batch: usize) {
    let ring = RingOptions::new().capacity(4096).shared().unwrap();
    let mut rx = ring.clone().into_consumer().unwrap().into_framed();
    die_between_stamp_and_head(&ring, batch);

    let a = rx.recv().unwrap().expect("frame A");
    assert_eq!(&*a, &[0xAA; 8]);
    drop(a);
    for k in 1..batch {
        let f = rx.recv().unwrap().expect("a frame of the batch, taken by its stamp");
        assert_eq!(&*f, &[0xB0 + k as u8; 8]);
    }
    let b = rx.recv().unwrap().expect("the last frame, taken by its stamp");
    let last = 0xB0 + batch as u8;
    assert_eq!(&*b, &[last; 8]);
    let (b_start, b_end) = (b.as_ptr() as usize, b.as_ptr() as usize + b.len());

    let mut tx = ring.take_over_producer().unwrap();
    let mut grant = tx.write_grant(16).unwrap();
    let (g_start, g_end) = (grant.as_ptr() as usize, grant.as_ptr() as usize + grant.len());
    let overlap = g_start < b_end && b_start < g_end;
    // Write through the grant where it overlaps, then look at the frame (volatile: the two
    // borrows alias, which safe code must never be able to arrange).
    if overlap {
        for (i, byte) in grant.iter_mut().enumerate() {
            let at = g_start + i;
            if at >= b_start && at < b_end {
                *byte = 0x11;
            }
        }
    }
    // SAFETY: reads the frame's own payload bytes.
    let seen: Vec<u8> = (0..b.len()).map(|i| unsafe { b.as_ptr().add(i).read_volatile() }).collect();
    drop(grant);
    assert!(
        !overlap,
        "the newcomer's write grant [{g_start:#x}, {g_end:#x}) overlaps the frame the consumer holds \
         [{b_start:#x}, {b_end:#x}); the frame now reads {seen:02x?}"
    );
    assert_eq!(seen, [last; 8], "the held frame changed under the consumer");
    drop(b);
    drop(tx);
}

/// As above, with a newcomer that asks for room through the byte API before it turns framed
/// (a write grant it drops unused: nothing written, nothing committed), then sends frames C
/// and D and closes. The consumer took B by its stamp before the take-over, so its cursor is
/// past B; a newcomer that did not cover B would write C where B is: the consumer must get C,
/// then D, then the end of the stream.
#[test]
fn a_newcomer_that_asked_for_room_first_loses_no_frame() {
    let _dog = watchdog("a_newcomer_that_asked_for_room_first_loses_no_frame", Duration::from_secs(10));
    let ring = RingOptions::new().capacity(4096).shared().unwrap();
    let mut rx = ring.clone().into_consumer().unwrap().into_framed();
    die_between_stamp_and_head(&ring, 1);
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(rx.recv().unwrap().expect("frames A and B").to_vec());
    }
    assert_eq!(got, [[0xAA; 8], [0xB1; 8]]);

    let mut bytes = ring.take_over_producer().unwrap();
    drop(bytes.write_grant(8).unwrap()); // asks for room, writes nothing
    let mut tx = bytes.into_framed();
    tx.send(&[0xCC; 8]).unwrap();
    tx.send(&[0xDD; 8]).unwrap();
    drop(tx);

    let mut rest = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(Some(f)) => rest.push(f.to_vec()),
            Ok(None) => break,
            Err(e) => {
                rest.push(format!("error: {e}").into_bytes());
                break;
            }
        }
    }
    assert_eq!(rest, [vec![0xCC; 8], vec![0xDD; 8]], "frames after the take-over");
}

/// `docs::framing`, "The framing epoch": "frames written through the byte API, with stamped
/// headers or not, are always taken through head, and whatever bytes follow them are never
/// taken for one". Here a byte producer sends 16 raw bytes, which a byte consumer reads in two
/// reads (so the producer's cached tail is left 8 bytes in), the consumer turns framed at 16,
/// and the producer writes one whole frame with a stamped header through the byte API, up to
/// 8 bytes short of a lap past that cached tail, then turns framed. With no room by its cached
/// tail, `into_framed` writes no clear mark where its first frame goes: the word there is the
/// raw bytes of one lap back. The consumer takes the byte API's frame through head under the
/// new (odd) epoch; it lies before the epoch's first frame, so the consumer must not trust
/// stamps from there (it would take those raw bytes for a frame nobody sent, lent over the
/// producer's free room).
#[test]
fn bytes_after_a_byte_api_frame_are_never_taken_for_a_frame() {
    use std::io::{ErrorKind, Read, Write};
    let _dog = watchdog("bytes_after_a_byte_api_frame_are_never_taken_for_a_frame", Duration::from_secs(10));
    let (mut tx, mut rx) = mirror_ring::channel(4096).unwrap();
    let cap = tx.capacity();
    assert_eq!(cap, 4096.max(page_size()));
    // Raw bytes: 8 arbitrary, then 8 that read as the stamped header of an 8-byte frame at
    // cap + 8 (one lap on), which is where the producer's first frame will go.
    let mut raw = vec![0x5A; 8];
    raw.extend_from_slice(&stamped_word(cap as u64 + 8, 8).to_le_bytes());
    tx.write_all(&raw).unwrap();
    let mut buf = [0u8; 8];
    rx.read_exact(&mut buf).unwrap(); // releases 8
                                      // One whole frame through the byte API, at 16, filling the room up to 8 + cap.
    let len = cap - 16;
    let mut frame = stamped_word(16, len as u32).to_le_bytes().to_vec();
    frame.extend(std::iter::repeat_n(0x77, len));
    let mut g = tx.write_grant_blocking(frame.len()).unwrap();
    g[..frame.len()].copy_from_slice(&frame);
    g.commit(frame.len()).unwrap();
    rx.read_exact(&mut buf).unwrap(); // the rest of the raw bytes
    let mut rx = rx.into_framed(); // at 16, where the frames start
    let mut tx = tx.into_framed(); // at cap + 8

    let f = rx.recv().unwrap().expect("the byte API's frame");
    assert_eq!((f.len(), f[0]), (len, 0x77));
    drop(f);
    let phantom = match rx.try_recv() {
        Ok(Some(f)) => Some(f.to_vec()),
        Ok(None) => panic!("end of stream"),
        Err(e) if e.kind() == ErrorKind::WouldBlock => None,
        Err(e) => panic!("{e}"),
    };
    tx.send(b"real").unwrap();
    assert_eq!(phantom, None, "a frame nobody sent, made of the raw bytes one lap back");
    assert_eq!(&*rx.recv().unwrap().unwrap(), b"real");
}

/// A producer that turned framed and back into bytes (its framing epoch ended) writes,
/// uncommitted, a word that reads as the stamped header of a frame at the consumer's cursor,
/// and a payload, then dies. The framed consumer, which has taken no frame through the head,
/// looks once more after the death, but trusts a stamp there only inside a framing epoch: it
/// must report the death, not hand out those bytes as a frame. (Found by review: without the
/// epoch check in that look, the consumer returned the 0xEE bytes.)
#[test]
fn a_dead_byte_producers_uncommitted_bytes_are_not_taken_for_a_frame() {
    use std::io::ErrorKind;
    let _dog = watchdog("a_dead_byte_producers_uncommitted_bytes_are_not_taken_for_a_frame", Duration::from_secs(30));
    let ring = RingOptions::new().capacity(4096).shared().unwrap();
    let mut rx = ring.clone().into_consumer().unwrap().into_framed();
    let theirs = ring.clone();
    let status = in_child(move || {
        let mut bytes = theirs.into_producer().unwrap().into_framed().into_inner();
        let mut grant = bytes.write_grant(24).unwrap();
        grant[..8].copy_from_slice(&stamped_word(0, 8).to_le_bytes());
        grant[8..16].copy_from_slice(&[0xEE; 8]);
        grant[16..24].copy_from_slice(&[0; 8]);
        // SAFETY: ends the child at once, the grant uncommitted.
        unsafe { libc::_exit(0) }
    });
    assert_eq!(status, 0);
    let got = rx.recv().map(|f| f.map(|f| f.to_vec())).map_err(|e| e.kind());
    assert_eq!(got, Err(ErrorKind::UnexpectedEof), "the dead byte producer's uncommitted bytes");
}
