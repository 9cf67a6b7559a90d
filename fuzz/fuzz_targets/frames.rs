//! Frame parsing from a corrupt peer: a producer writes arbitrary bytes (not frames) into the
//! ring in arbitrary chunks; the framed consumer (`try_recv`, or `try_recv_batch` when the top
//! bit of the input's second byte is set) must hand out frames that are exactly the
//! bytes the stream holds at their position, or fail with `InvalidData` for good, and never
//! panic, read out of bounds or hang.
#![no_main]

use std::io::ErrorKind;

use libfuzzer_sys::fuzz_target;
use mirror_ring::RingOptions;

const CAP: usize = 4096;
const CHECK_MASK: u64 = 0x3FFF_FFFF << 32;
const UNSTAMPED: u64 = 1 << 62;
const RESTAMP: u64 = 3 << 62;

/// The ring as the consumer sees it at stream index `q` of `data` (stream position
/// `start + q`): the last byte the producer wrote at that ring offset, or 0 (the raw bytes
/// before the stream and fresh pages are zeros).
fn ring_byte(data: &[u8], written: usize, q: usize) -> u8 {
    let mut q = q as isize;
    while q >= written as isize {
        q -= CAP as isize;
    }
    if q >= 0 {
        data[q as usize]
    } else {
        0
    }
}

fn ring_word(data: &[u8], written: usize, q: usize) -> u64 {
    u64::from_le_bytes(std::array::from_fn(|i| ring_byte(data, written, q + i)))
}

/// The header words of a frame of `len` bytes at stream position `p` (the wire format of
/// `mirror_ring::docs::framing`): (unstamped, stamped).
fn headers(len: u32, p: u64) -> (u64, u64) {
    let base = (u64::from(!len) << 32) & CHECK_MASK | UNSTAMPED | u64::from(len);
    let unstamped = base ^ ((p << 29) & CHECK_MASK);
    (unstamped, unstamped ^ RESTAMP)
}

/// The header at `data[pos..]` (stream position `p`) as `(len, stamped)`, if it is a header of
/// this position of at most `max` bytes, stamped or not.
fn header_at(data: &[u8], written: usize, pos: usize, p: u64, max: usize) -> Option<(usize, bool)> {
    let w = ring_word(data, written, pos);
    let len = w as u32;
    let (unstamped, stamped) = headers(len, p);
    ((w == unstamped || w == stamped) && len as usize <= max).then_some((len as usize, w == stamped))
}

/// Whether `data[pos..written]` starts with a whole, well-formed frame (header of this
/// position, stamped or not, and the whole payload written).
fn whole_frame_at(data: &[u8], pos: usize, p: u64, written: usize, max: usize) -> bool {
    pos + 8 <= written
        && header_at(data, written, pos, p, max).is_some_and(|(len, _)| pos + 8 + len.div_ceil(8) * 8 <= written)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (sel, data) = data.split_at(2);
    let (mut tx, mut rx) = RingOptions::new().capacity(CAP).build().expect("ring");
    // Start anywhere in the ring (raw bytes first), so frames cross the seam and both ends
    // first skip to a multiple of 8.
    let start = u16::from_le_bytes([sel[0], sel[1]]) as usize % CAP;
    assert_eq!(tx.try_write(&vec![0; start]).unwrap(), start);
    assert_eq!(std::io::Read::read(&mut rx, &mut vec![0; start]).unwrap(), start);
    let mut tx = Some(tx);
    let mut rx = rx.into_framed();
    let max = rx.max_frame_len();
    // The consumer's position in `data` (each frame starts where the previous one ended; the
    // first after the alignment padding).
    let mut pos = start.wrapping_neg() % 8;
    // Stream position of data[0], and how many frames were handed out.
    let origin = start;
    let mut delivered = 0usize;
    let mut written = 0usize;
    let mut chunks = sel[0] as usize | 1;
    let mut stuck = false;
    let batched = sel[1] & 0x80 != 0;
    // Whether the consumer took a frame stamped ahead of the bytes written (the stream's
    // header came before its payload), and whether the producer then poisoned the ring.
    let mut ran_ahead = false;
    let mut producer_poisoned = false;
    loop {
        // A chunk of the hostile stream (sizes vary with the input), as much as fits.
        if let Some(t) = tx.as_mut() {
            chunks = chunks.wrapping_mul(33).wrapping_add(data.get(written).copied().unwrap_or(0) as usize);
            let n = (1 + chunks % 700).min(data.len() - written);
            stuck = match t.try_write(&data[written..written + n]) {
                Ok(w) => {
                    written += w;
                    false
                }
                Err(e) if e.kind() == ErrorKind::InvalidData => {
                    // The consumer released past the bytes written (a frame stamped ahead of
                    // its payload): a byte producer takes a consumer's cursor ahead of its own
                    // for corruption and poisons the ring (a framed producer allows one frame
                    // ahead). The consumer must then fail too.
                    assert!(ran_ahead, "{e:?}");
                    producer_poisoned = true;
                    tx = None;
                    false
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e:?}");
                    true
                }
            };
            if written == data.len() {
                tx = None; // close: the consumer sees every byte, and all of it must parse
            }
        }
        let closed = tx.is_none();
        // Take every frame the consumer can parse now: one at a time, or in batches when the
        // input says so (`recv_batch` has a loop of its own).
        let kind = loop {
            // Where this call starts, and what its frames take: a call never takes a frame
            // beyond a ring ahead of its start (the consumer has released no further), and a
            // batch stops after an eighth of the ring past its first frame.
            let call_start = pos;
            let mut take = |frame: &[u8]| {
                let len = frame.len();
                assert!(len <= max);
                let p = (origin + pos) as u64;
                let (hlen, stamped) = header_at(data, written, pos, p, max).expect("a frame without its header");
                assert_eq!(hlen, len, "a frame whose length is not its header's");
                let body = pos + 8;
                // An unstamped frame is taken through the published head: all written. A
                // stamped one is taken by its stamp, once stamps are trusted (after the
                // first frame), and a hostile producer may stamp before the payload: the
                // rest is whatever the ring held there (in bounds, never past one lap).
                assert!(body + len <= written || (stamped && delivered > 0), "a frame beyond the written bytes");
                ran_ahead |= body + len > written;
                assert!(
                    frame.iter().enumerate().all(|(i, &b)| b == ring_byte(data, written, body + i)),
                    "frame bytes differ from the ring"
                );
                assert_eq!(frame.as_ptr() as usize % 8, 0);
                assert!(pos - call_start < CAP / 8 || pos == call_start, "a batch past its bound at {pos}");
                let end = body + len.div_ceil(8) * 8;
                assert!(end <= call_start + CAP, "a frame beyond a ring from the call's start");
                pos = end;
                delivered += 1;
            };
            let got = if batched {
                rx.try_recv_batch(&mut take).map(|n| n > 0)
            } else {
                rx.try_recv().map(|frame| frame.map(|frame| take(&frame)).is_some())
            };
            match got {
                Ok(true) => {}
                Ok(false) => {
                    assert!(!producer_poisoned, "end of stream from a poisoned ring");
                    assert!(closed, "end of stream while the producer lives");
                    assert!(pos == written || written == 0, "end of stream before the last byte");
                    return;
                }
                Err(e) => break e.kind(),
            }
        };
        if kind == ErrorKind::WouldBlock {
            assert!(!closed, "WouldBlock after close");
            assert!(
                !whole_frame_at(data, pos, (origin + pos) as u64, written, max),
                "a whole frame at {pos} not handed out"
            );
            if stuck {
                // The ring is full and the consumer waits: allowed only where the word at its
                // cursor says "not yet" to a consumer that trusts stamps (the clear mark, or a
                // header of this position one lap back), which a hostile producer can leave
                // there to stall the ring, as it can by never publishing (the trust model).
                // Close the producer: the consumer must then look at head and decide.
                let p = (origin + pos) as u64;
                let w = ring_word(data, written, pos);
                let (u, st) = headers(w as u32, p.wrapping_sub(CAP as u64));
                assert!(delivered > 0 && (w == 0 || w == u || w == st), "stalled at {pos} on {w:#x}");
                tx = None;
            }
            continue;
        }
        assert_eq!(kind, ErrorKind::InvalidData);
        // The header at `pos` really is bad, or the stream ended inside a frame (or the
        // producer poisoned the ring).
        assert!(
            producer_poisoned || !whole_frame_at(data, pos, (origin + pos) as u64, written, max),
            "a valid frame refused at {pos}"
        );
        // Poisoned for good.
        assert_eq!(rx.try_recv().unwrap_err().kind(), ErrorKind::InvalidData);
        if closed {
            assert_eq!(rx.recv().unwrap_err().kind(), ErrorKind::InvalidData);
        }
        if let Some(t) = tx.as_mut() {
            // The producer sees the poison once it has to look at the consumer's cursor.
            let fill = vec![0u8; 4096];
            while t.try_write(&fill).is_ok() {}
            assert_eq!(t.try_write(&fill).unwrap_err().kind(), ErrorKind::InvalidData);
        }
        return;
    }
});
