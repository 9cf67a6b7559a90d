//! The framed wire format, as pure functions: sizes, the header word, and the copies that
//! write a frame. A cross-process ABI: the layout is described for users in
//! [`docs::framing`](crate::docs::framing) and pinned by the tests below.

use std::io;

/// Bytes in a frame header: `u32` length, `u32` complement.
pub(super) const HEADER: usize = 8;

/// Every frame starts at a multiple of this.
pub(super) const ALIGN: usize = 8;

/// The longest payload the `u32` length field can describe, rounded down to `ALIGN`.
pub(super) const LEN_FIELD_MAX: usize = (u32::MAX as usize) & !(ALIGN - 1);

/// The bytes a frame of `len` payload bytes occupies in the ring.
#[inline(always)]
pub(super) fn frame_size(len: usize) -> usize {
    HEADER + ((len + (ALIGN - 1)) & !(ALIGN - 1))
}

/// The header word for a payload of `len` bytes (`len <= u32::MAX`), as stored (little-endian).
#[inline(always)]
pub(super) fn encode_header(len: usize) -> u64 {
    let len = len as u32;
    (u64::from(!len) << 32 | u64::from(len)).to_le()
}

/// The payload length in a header word as read from the ring, if the header is well formed and
/// the frame fits in `readable` bytes and in a `max_len` payload.
#[inline(always)]
pub(super) fn decode_header(raw: u64, max_len: usize, readable: usize) -> Option<usize> {
    let word = u64::from_le(raw);
    let len = word as u32;
    if (word >> 32) as u32 != !len {
        return None;
    }
    let len = len as usize;
    // Checked in this order, no arithmetic can overflow: len <= max_len < 2^32.
    if len > max_len || frame_size(len) > readable {
        return None;
    }
    Some(len)
}

/// The longest payload for a ring of `capacity` bytes.
pub(super) fn max_frame_len_for(capacity: usize) -> usize {
    (capacity - HEADER).min(LEN_FIELD_MAX)
}

/// Bytes from `ptr` to the next multiple of `ALIGN`. The data pages start page-aligned, so this
/// is also the distance from the ring position to the next multiple of `ALIGN`.
pub(super) fn misalignment(ptr: *const u8) -> usize {
    (ptr as usize).wrapping_neg() & (ALIGN - 1)
}

/// Copies a payload into the ring; messages of up to 64 bytes without a call into `memcpy`
/// (two overlapping loads and stores of the widest size that fits).
///
/// # Safety
///
/// `src` is valid for `len` bytes of reads, `dst` for `len` bytes of writes, and they do not
/// overlap.
#[inline(always)]
pub(super) unsafe fn copy_payload(src: *const u8, dst: *mut u8, len: usize) {
    /// Copies `[0, W)` and `[len - W, len)`, which together cover `len` bytes for
    /// `W <= len <= 2W`.
    #[inline(always)]
    unsafe fn two<T: Copy>(src: *const u8, dst: *mut u8, len: usize) {
        let w = std::mem::size_of::<T>();
        // SAFETY: W <= len, so both windows lie within the `len` bytes the caller vouches for.
        unsafe {
            let head = src.cast::<T>().read_unaligned();
            let tail = src.add(len - w).cast::<T>().read_unaligned();
            dst.cast::<T>().write_unaligned(head);
            dst.add(len - w).cast::<T>().write_unaligned(tail);
        }
    }
    // SAFETY: each branch copies exactly the `len` bytes the caller vouches for.
    unsafe {
        match len {
            0 => {}
            1..=3 => {
                *dst = *src;
                *dst.add(len / 2) = *src.add(len / 2);
                *dst.add(len - 1) = *src.add(len - 1);
            }
            4..=7 => two::<u32>(src, dst, len),
            8..=16 => two::<u64>(src, dst, len),
            17..=32 => two::<[u64; 2]>(src, dst, len),
            33..=64 => two::<[u64; 4]>(src, dst, len),
            _ => std::ptr::copy_nonoverlapping(src, dst, len),
        }
    }
}

/// Writes the frame for `msg`: header, payload, padding (zeros for frames of 1 to 8 bytes,
/// which go out as one 16-byte store; unspecified otherwise).
///
/// # Safety
///
/// `header` is 8-aligned and valid for `frame_size(msg.len())` bytes of writes, which `msg`
/// does not overlap; `msg.len() <= u32::MAX`.
#[inline(always)]
pub(super) unsafe fn write_frame(header: *mut u8, msg: &[u8]) {
    let len = msg.len();
    // SAFETY: the caller vouches for the frame's bytes; each branch writes within them.
    unsafe {
        if len.wrapping_sub(1) < 8 {
            // 1 to 8 bytes: a 16-byte frame. (An empty frame is only its 8-byte header.)
            store_pair(header, encode_header(len), load_small(msg.as_ptr(), len));
        } else {
            header.cast::<u64>().write(encode_header(len));
            copy_payload(msg.as_ptr(), header.add(HEADER), len);
        }
    }
}

/// Up to 8 bytes from `src` as the word whose in-memory bytes are those bytes followed by
/// zeros.
///
/// # Safety
///
/// `src` is valid for `len <= 8` bytes of reads.
#[inline(always)]
pub(super) unsafe fn load_small(src: *const u8, len: usize) -> u64 {
    // SAFETY: every read lies within the `len` bytes the caller vouches for.
    let v = unsafe {
        match len {
            8 => u64::from_le(src.cast::<u64>().read_unaligned()),
            4..=7 => {
                let lo = u32::from_le(src.cast::<u32>().read_unaligned());
                let hi = u32::from_le(src.add(len - 4).cast::<u32>().read_unaligned());
                // The two windows overlap on identical bytes, so OR-ing them is exact.
                u64::from(lo) | u64::from(hi) << ((len - 4) * 8)
            }
            1..=3 => {
                u64::from(*src)
                    | u64::from(*src.add(len / 2)) << (len / 2 * 8)
                    | u64::from(*src.add(len - 1)) << ((len - 1) * 8)
            }
            _ => 0,
        }
    };
    v.to_le()
}

/// Writes two in-memory words to `dst` (16 bytes), with one store where the target has one.
///
/// # Safety
///
/// `dst` is valid for 16 bytes of writes and 8-byte aligned.
#[inline(always)]
pub(super) unsafe fn store_pair(dst: *mut u8, first: u64, second: u64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of x86_64; the unaligned store writes exactly the 16 bytes the
    // caller vouches for.
    unsafe {
        use std::arch::x86_64::{_mm_set_epi64x, _mm_storeu_si128};
        _mm_storeu_si128(dst.cast(), _mm_set_epi64x(second as i64, first as i64));
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above, as two aligned words.
    unsafe {
        dst.cast::<u64>().write(first);
        dst.cast::<u64>().add(1).write(second);
    }
}

#[cold]
#[inline(never)]
pub(super) fn too_long(len: usize, max: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("a {len}-byte frame can never fit: this ring's frames hold at most {max} bytes"),
    )
}

/// The last frame header that passed the checks, with its length and frame size.
///
/// Streams often carry runs of frames of one size. Recognising a repeat by comparing the raw
/// header word with the last valid one (rather than decoding it) makes the next frame's
/// position independent of the value just loaded: with the comparison's branch predicted, the
/// CPU issues the next header load without waiting for this one, which takes the reader off
/// the load-latency chain that variable-size records otherwise impose.
#[derive(Clone, Copy, Debug)]
pub(super) struct Known {
    raw: u64,
    len: usize,
    size: usize,
}

impl Known {
    /// Matches nothing: its size exceeds any readable count.
    pub(super) const NONE: Known = Known { raw: 0, len: 0, size: usize::MAX };

    /// The payload length and frame size for header word `raw` with `readable` bytes from its
    /// start, or `None` if the header is corrupt or the frame does not fit.
    #[inline(always)]
    pub(super) fn parse(&mut self, raw: u64, max_len: usize, readable: usize) -> Option<(usize, usize)> {
        // The same word as a header that passed decode_header: the same length, so only the
        // fit needs checking again.
        if raw == self.raw && self.size <= readable {
            return Some((self.len, self.size));
        }
        let len = decode_header(raw, max_len, readable)?;
        *self = Known { raw, len, size: frame_size(len) };
        Some((len, self.size))
    }
}

#[cfg(all(test, not(mirror_ring_loom)))]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_every_corruption() {
        for len in [0usize, 1, 7, 8, 9, 4087, 4088] {
            assert_eq!(decode_header(encode_header(len), 4088, 4096), Some(len));
            // The frame must fit in what is readable.
            assert_eq!(decode_header(encode_header(len), 4088, frame_size(len)), Some(len));
            assert_eq!(decode_header(encode_header(len), 4088, frame_size(len) - 1), None);
        }
        // Over the limit, even with a valid complement.
        assert_eq!(decode_header(encode_header(4089), 4088, 4096), None);
        let huge = max_frame_len_for(1 << 40);
        assert_eq!(decode_header(encode_header(LEN_FIELD_MAX + 7), huge, 1 << 40), None);
        assert_eq!(decode_header(encode_header(LEN_FIELD_MAX), huge, 1 << 40), Some(LEN_FIELD_MAX));
        // Complement mismatch: every single-bit flip of a valid header is refused.
        let good = u64::from_le(encode_header(100));
        for bit in 0..64 {
            assert_eq!(decode_header((good ^ (1 << bit)).to_le(), 4088, 4096), None, "bit {bit}");
        }
        // Patterns a crashed or hostile producer might leave.
        for raw in [0u64, u64::MAX, 0xFFFF_FFFF, 0x0000_0001_0000_0001, 0xDEAD_BEEF_DEAD_BEEF] {
            assert_eq!(decode_header(raw, 4088, 4096), None, "{raw:#x}");
        }
    }

    #[test]
    fn small_frames_are_stored_as_header_then_payload_then_zeros() {
        let src: Vec<u8> = (1..=8).collect();
        for len in 1..=8 {
            let mut dst = [0xEEu8; 24];
            // SAFETY: src has 8 >= len bytes; dst has 16 writable, 8-aligned bytes at 8.
            unsafe {
                let at = dst.as_mut_ptr().add(8 - dst.as_ptr() as usize % 8);
                store_pair(at, encode_header(len), load_small(src.as_ptr(), len));
                let got = std::slice::from_raw_parts(at, 16);
                assert_eq!(got[..8], encode_header(len).to_ne_bytes(), "len {len}");
                assert_eq!(&got[8..8 + len], &src[..len], "len {len}");
                assert!(got[8 + len..].iter().all(|&b| b == 0), "len {len}: padding not zero");
            }
        }
    }

    #[test]
    fn small_copies_copy_exactly_len_bytes() {
        let src: Vec<u8> = (1..=100).collect();
        for len in 0..=100 {
            let mut dst = [0u8; 112];
            // SAFETY: src has 100 >= len bytes, dst 112; distinct buffers.
            unsafe { copy_payload(src.as_ptr(), dst.as_mut_ptr(), len) };
            assert_eq!(&dst[..len], &src[..len], "len {len}");
            assert!(dst[len..].iter().all(|&b| b == 0), "len {len}: wrote past the end");
        }
    }

    #[test]
    fn frame_sizes_are_aligned_and_bounded() {
        assert_eq!(frame_size(0), 8);
        assert_eq!(frame_size(1), 16);
        assert_eq!(frame_size(8), 16);
        assert_eq!(frame_size(9), 24);
        assert_eq!(max_frame_len_for(4096), 4088);
        assert_eq!(frame_size(max_frame_len_for(4096)), 4096);
        assert_eq!(max_frame_len_for(1 << 40), LEN_FIELD_MAX);
        assert!(frame_size(LEN_FIELD_MAX) <= (1 << 40));
    }
}
