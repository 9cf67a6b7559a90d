//! Frame parsing from a corrupt peer: a producer writes arbitrary bytes (not frames) into the
//! ring in arbitrary chunks; the framed consumer must hand out frames that are exactly the
//! bytes the stream holds at their position, or fail with `InvalidData` for good, and never
//! panic, read out of bounds or hang.
#![no_main]

use std::io::ErrorKind;

use libfuzzer_sys::fuzz_target;
use mirror_ring::RingOptions;

/// Whether `data[pos..written]` starts with a whole, well-formed frame (the wire format of
/// `framed.rs`: `len` and `!len` as little-endian `u32`s, the payload padded to 8).
fn whole_frame_at(data: &[u8], pos: usize, written: usize, max: usize) -> bool {
    if pos + 8 > written {
        return false;
    }
    let w = u64::from_le_bytes(data[pos..pos + 8].try_into().unwrap());
    let len = w as u32;
    (w >> 32) as u32 == !len && (len as usize) <= max && pos + 8 + (len as usize).div_ceil(8) * 8 <= written
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (sel, data) = data.split_at(2);
    let (mut tx, mut rx) = RingOptions::new().capacity(4096).build().expect("ring");
    // Start anywhere in the ring (raw bytes first), so frames cross the seam and both ends
    // first skip to a multiple of 8.
    let start = u16::from_le_bytes([sel[0], sel[1]]) as usize % 4096;
    assert_eq!(tx.try_write(&vec![0; start]).unwrap(), start);
    assert_eq!(std::io::Read::read(&mut rx, &mut vec![0; start]).unwrap(), start);
    let mut tx = Some(tx);
    let mut rx = rx.into_framed();
    let max = rx.max_frame_len();
    // The consumer's position in `data` (each frame starts where the previous one ended; the
    // first after the alignment padding).
    let mut pos = start.wrapping_neg() % 8;
    let mut written = 0usize;
    let mut chunks = sel[0] as usize | 1;
    loop {
        // A chunk of the hostile stream (sizes vary with the input), as much as fits.
        if let Some(t) = tx.as_mut() {
            chunks = chunks.wrapping_mul(33).wrapping_add(data.get(written).copied().unwrap_or(0) as usize);
            let n = (1 + chunks % 700).min(data.len() - written);
            match t.try_write(&data[written..written + n]) {
                Ok(w) => written += w,
                Err(e) => assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e:?}"),
            }
            if written == data.len() {
                tx = None; // close: the consumer sees every byte, and all of it must parse
            }
        }
        let closed = tx.is_none();
        // Take every frame the consumer can parse now.
        let kind = loop {
            match rx.try_recv() {
                Ok(Some(frame)) => {
                    let len = frame.len();
                    assert!(len <= max);
                    let start = pos + 8;
                    assert!(start + len <= written, "a frame beyond the written bytes");
                    assert!(*frame == data[start..start + len], "frame bytes differ from the stream");
                    assert_eq!(frame.as_ptr() as usize % 8, 0);
                    pos = start + len.div_ceil(8) * 8;
                }
                Ok(None) => {
                    assert!(closed, "end of stream while the producer lives");
                    assert!(pos == written || written == 0, "end of stream before the last byte");
                    return;
                }
                Err(e) => break e.kind(),
            }
        };
        if kind == ErrorKind::WouldBlock {
            assert!(!closed, "WouldBlock after close");
            assert!(!whole_frame_at(data, pos, written, max), "a whole frame at {pos} not handed out");
            continue;
        }
        assert_eq!(kind, ErrorKind::InvalidData);
        // The header at `pos` really is bad, or the stream ended inside a frame.
        assert!(!whole_frame_at(data, pos, written, max), "a valid frame refused at {pos}");
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
