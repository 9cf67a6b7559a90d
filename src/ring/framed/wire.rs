//! The framed wire format, as pure functions: sizes, the header word, and the copies that
//! write a frame. A cross-process ABI: the layout is described for users in
//! [`docs::framing`](crate::docs::framing) and pinned by the tests below.

use std::io;

use crate::ring::copy_in;

/// Bytes in a frame header: one little-endian `u64` word (see [`Stamp`]).
pub(super) const HEADER: usize = 8;

/// Every frame starts at a multiple of this.
pub(super) const ALIGN: usize = 8;

/// The longest payload the `u32` length field can describe, rounded down to `ALIGN`.
pub(super) const LEN_FIELD_MAX: usize = (u32::MAX as usize) & !(ALIGN - 1);

/// The bytes a frame of `len` payload bytes occupies in the ring.
#[inline(always)]
pub(crate) fn frame_size(len: usize) -> usize {
    HEADER + ((len + (ALIGN - 1)) & !(ALIGN - 1))
}

/// State bits 63-62 of a header word: `10`, the frame is stamped (visible to the consumer on
/// its own).
pub(super) const STAMPED: u64 = 1 << 63;
/// State bits 63-62 of a header word: `01`, the frame is written but not stamped (the consumer
/// takes it only below the published head).
pub(super) const UNSTAMPED: u64 = 1 << 62;
/// Flips a stamped header word into the unstamped one for the same frame, and back.
pub(super) const RESTAMP: u64 = STAMPED | UNSTAMPED;
/// The check field, bits 61-32: the length's complement XOR the position stamp, 30 bits.
const CHECK_MASK: u64 = 0x3FFF_FFFF << 32;
/// What the producer writes where the next frame's header will go ("nothing here yet"): state
/// `00`, which no header has. Zeroed memory reads the same.
pub(super) const CLEAR: u64 = 0;

/// The position stamp: which bits of a frame's position go into its header word.
///
/// The stamp of position `pos` is `S(pos) = (pos >> 3) mod 2^30`: consecutive 8-byte positions
/// share no stamp within 8 GiB of stream. A header word for a frame of `len` bytes at `pos` is
/// (bit 0 is the least significant; stored little-endian):
///
/// ```text
/// bits  0-31  len
/// bits 32-61  (!len XOR S(pos)) & 0x3FFF_FFFF
/// bits 62-63  01 unstamped, 10 stamped (00 and 11 are never a header: zeroed memory and
///             all-ones never match)
/// ```
///
/// A header one lap old (`pos - N`) has another stamp when the ring is at most 4 GiB
/// ([`laps_apart`]); larger rings never leave one where a frame is awaited (`link.rs`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stamp;

/// `S(pos) << 32 == (pos << STAMP_SHL) & CHECK_MASK` for positions that are multiples of 8.
const STAMP_SHL: u32 = 29;

/// Whether the stamps of two positions one lap of a `capacity`-byte ring apart differ
/// (`capacity >> 3` is not a multiple of `2^30`).
pub(crate) fn laps_apart(capacity: usize) -> bool {
    capacity as u64 <= 1 << 32
}

impl Stamp {
    /// `S(pos)` in place (bits 32-61), to XOR into a header word.
    #[inline(always)]
    pub(crate) fn bits(self, pos: u64) -> u64 {
        (pos << STAMP_SHL) & CHECK_MASK
    }

    /// The stamped header word for a frame of `len` bytes at `pos` (`len <= u32::MAX`), as a
    /// number (store it with `to_le`).
    #[inline(always)]
    pub(crate) fn stamped(self, len: usize, pos: u64) -> u64 {
        unstamped_base(len) ^ RESTAMP ^ self.bits(pos)
    }

    /// The unstamped header word for a frame of `len` bytes at `pos`.
    #[inline(always)]
    pub(crate) fn unstamped(self, len: usize, pos: u64) -> u64 {
        unstamped_base(len) ^ self.bits(pos)
    }

    /// The payload length in `word` (a number, from `from_le`) if it is the stamped header of
    /// a frame at `pos` of at most `max_len` bytes.
    #[inline(always)]
    pub(crate) fn stamped_len(self, word: u64, pos: u64, max_len: usize) -> Option<usize> {
        let len = word as u32 as usize;
        (word == self.stamped(len, pos) && len <= max_len).then_some(len)
    }

    /// The payload length in `word` if it is a header of a frame at `pos`, stamped or not, of at
    /// most `max_len` bytes whose frame fits in `room` bytes: what a frame below the published
    /// head must be.
    #[inline]
    pub(crate) fn committed_len(self, word: u64, pos: u64, max_len: usize, room: usize) -> Option<usize> {
        let len = word as u32 as usize;
        let expect = self.unstamped(len, pos);
        // Checked in this order, no arithmetic can overflow: len <= max_len < 2^32.
        ((word == expect || word == expect ^ RESTAMP) && len <= max_len && frame_size(len) <= room).then_some(len)
    }

    /// Whether `word` is the unstamped header of a frame at `pos` (of any length).
    #[inline]
    pub(crate) fn is_unstamped(self, word: u64, pos: u64) -> bool {
        word == self.unstamped(word as u32 as usize, pos)
    }

    /// Whether `word`, found where a frame at `pos` will go, says "not yet": the clear mark, or
    /// a header from exactly one lap (`capacity` bytes) before (what a full ring leaves there).
    #[inline(always)]
    pub(crate) fn not_yet(self, word: u64, pos: u64, capacity: u64) -> bool {
        let len = word as u32 as usize;
        let earlier = self.unstamped(len, pos.wrapping_sub(capacity));
        word == CLEAR || word == earlier || word == earlier ^ RESTAMP
    }
}

/// The unstamped header word for `len` at a position whose stamp is 0.
#[inline(always)]
fn unstamped_base(len: usize) -> u64 {
    let len = len as u32;
    (u64::from(!len) << 32) & CHECK_MASK | UNSTAMPED | u64::from(len)
}

/// The longest payload for a ring of `capacity` bytes.
pub(crate) fn max_frame_len_for(capacity: usize) -> usize {
    (capacity - HEADER).min(LEN_FIELD_MAX)
}

/// Bytes from `ptr` to the next multiple of `ALIGN`. The data pages start page-aligned, so this
/// is also the distance from the ring position to the next multiple of `ALIGN`.
pub(super) fn misalignment(ptr: *const u8) -> usize {
    (ptr as usize).wrapping_neg() & (ALIGN - 1)
}

/// Writes the payload of the frame whose header is at `header`: for 1 to 8 bytes one 8-byte
/// store, with zeros for padding; otherwise [`copy_in`] (padding unspecified).
///
/// # Safety
///
/// `header` is 8-aligned and valid for `frame_size(msg.len())` bytes of writes, which `msg`
/// does not overlap.
#[inline(always)]
pub(super) unsafe fn write_payload(header: *mut u8, msg: &[u8]) {
    let len = msg.len();
    // SAFETY: the caller vouches for the frame's bytes; each branch writes within them (a frame
    // of 1 to 8 bytes has 8 payload bytes).
    unsafe {
        if len.wrapping_sub(1) < 8 {
            header.add(HEADER).cast::<u64>().write(load_small(msg.as_ptr(), len));
        } else {
            copy_in(msg.as_ptr(), header.add(HEADER), len);
        }
    }
}

/// Writes a whole frame with plain stores, header word `word` (a number) first: for frames the
/// consumer cannot be reading yet (not the first of a batch). 1 to 8 bytes go out as one
/// 16-byte store.
///
/// # Safety
///
/// As [`write_payload`]; and no other thread accesses the header word meanwhile.
#[inline(always)]
pub(super) unsafe fn write_frame(header: *mut u8, word: u64, msg: &[u8]) {
    let len = msg.len();
    // SAFETY: as in write_payload; the header word is ours alone (the caller vouches).
    unsafe {
        if len.wrapping_sub(1) < 8 {
            store_pair(header, word.to_le(), load_small(msg.as_ptr(), len));
        } else {
            header.cast::<u64>().write(word.to_le());
            copy_in(msg.as_ptr(), header.add(HEADER), len);
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

/// The last stamped frame header that passed the checks, with its length and frame size.
///
/// Streams often carry runs of frames of one size. Recognising a repeat by comparing the
/// header word with the one a frame of the last length would have here (one XOR of the
/// position stamp) rather than decoding it keeps the length off the path from the load to the
/// next position.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Known {
    /// The stamped header word of a frame of `len` bytes at a position whose stamp is 0.
    pub(crate) base: u64,
    pub(crate) len: usize,
    pub(crate) size: usize,
}

impl Known {
    /// Matches nothing: its state bits are `11`, which no header has.
    pub(crate) const NONE: Known = Known { base: u64::MAX, len: 0, size: usize::MAX };

    /// The frame of `len` bytes.
    #[inline(always)]
    pub(crate) fn of(stamp: Stamp, len: usize) -> Known {
        Known { base: stamp.stamped(len, 0), len, size: frame_size(len) }
    }

    /// Whether this frame fits in `room` bytes (never for [`NONE`](Self::NONE)).
    #[inline(always)]
    pub(crate) fn fits(&self, room: u64) -> bool {
        self.size as u64 <= room
    }

    /// `(len, size)` if `word`, loaded at `q`, is this frame's stamped header for `q` and the
    /// frame fits in `room` bytes.
    #[inline(always)]
    pub(crate) fn repeat(&self, stamp: Stamp, word: u64, q: u64, room: u64) -> Option<(usize, usize)> {
        (word == self.base ^ stamp.bits(q) && self.fits(room)).then_some((self.len, self.size))
    }
}

#[cfg(all(test, not(mirror_ring_loom)))]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_every_corruption() {
        let st = Stamp;
        for pos in [0u64, 8, 4096, 4104, u64::MAX - 7] {
            for len in [0usize, 1, 7, 8, 9, 4087, 4088] {
                let w = st.stamped(len, pos);
                assert_eq!(st.stamped_len(w, pos, 4088), Some(len));
                assert_eq!(st.committed_len(w, pos, 4088, 4096), Some(len));
                assert_eq!(st.committed_len(w ^ RESTAMP, pos, 4088, 4096), Some(len), "unstamped");
                assert_eq!(st.stamped_len(w ^ RESTAMP, pos, 4088), None, "unstamped is not stamped");
                // The frame must fit in what is committed.
                assert_eq!(st.committed_len(w, pos, 4088, frame_size(len)), Some(len));
                assert_eq!(st.committed_len(w, pos, 4088, frame_size(len) - 1), None);
                // Not for any other position: the next, the previous, one lap on or back.
                for other in [pos.wrapping_add(8), pos.wrapping_sub(8), pos.wrapping_add(4096), pos.wrapping_sub(4096)]
                {
                    assert_eq!(st.stamped_len(w, other, 4088), None, "{len} at {pos} read at {other}");
                    assert_eq!(st.committed_len(w, other, 4088, 4096), None);
                }
            }
        }
        // Over the limit, even with a valid check field.
        assert_eq!(st.stamped_len(st.stamped(4089, 0), 0, 4088), None);
        let huge = max_frame_len_for(1 << 40);
        let big = Stamp;
        assert_eq!(big.committed_len(big.stamped(LEN_FIELD_MAX + 7, 0), 0, huge, 1 << 40), None);
        assert_eq!(big.committed_len(big.stamped(LEN_FIELD_MAX, 0), 0, huge, 1 << 40), Some(LEN_FIELD_MAX));
        // Every single-bit flip of a valid header is refused, stamped or not.
        let good = st.stamped(100, 4096 * 3 + 64);
        for bit in 0..64 {
            let bad = good ^ (1 << bit);
            assert_eq!(st.committed_len(bad, 4096 * 3 + 64, 4088, 4096), None, "bit {bit}");
        }
        // Patterns a crashed or hostile producer might leave, and zeroed memory, at any position.
        for pos in (0..1u64 << 36).step_by(1 << 20).chain([0, 8, (1 << 33) - 8, u64::MAX - 7]) {
            for raw in [0u64, u64::MAX, 0xFFFF_FFFF, 0x0000_0001_0000_0001, 0xDEAD_BEEF_DEAD_BEEF] {
                assert_eq!(st.committed_len(raw, pos, 4088, 4096), None, "{raw:#x} at {pos}");
            }
        }
    }

    /// A header from the lap before is "not yet", never a frame, for every ring size that can
    /// leave one where a frame is awaited (up to 4 GiB); so is the clear mark.
    #[test]
    fn one_lap_stale_headers_never_match() {
        let st = Stamp;
        for log in 12..=32u32 {
            let cap = 1u64 << log;
            assert!(laps_apart(cap as usize));
            let max = max_frame_len_for(cap as usize);
            for pos in [0u64, cap, 5 * cap + 8, u64::MAX - 7, (1 << 40) + 64] {
                for len in [0usize, 8, 100] {
                    let old = st.stamped(len, pos.wrapping_sub(cap));
                    assert_eq!(st.stamped_len(old, pos, max), None, "cap 2^{log}, pos {pos}");
                    assert_eq!(st.committed_len(old, pos, max, cap as usize), None);
                    assert_eq!(st.committed_len(old ^ RESTAMP, pos, max, cap as usize), None);
                    assert!(st.not_yet(old, pos, cap) && st.not_yet(old ^ RESTAMP, pos, cap));
                    assert!(!st.not_yet(st.stamped(len, pos), pos, cap));
                }
                assert!(st.not_yet(CLEAR, pos, cap));
            }
        }
        // From 8 GiB on, one lap is a multiple of 2^30 words: the stamp cannot tell.
        assert!(!laps_apart(1 << 33));
        assert_eq!(st.stamped(8, 1 << 33), st.stamped(8, 0));
    }

    #[test]
    fn known_matches_exactly_the_stamped_word_of_its_length() {
        let st = Stamp;
        let k = Known::of(st, 8);
        assert_eq!(k.size, 16);
        for pos in [0u64, 16, 1 << 20, u64::MAX - 15] {
            assert_eq!(k.base ^ st.bits(pos), st.stamped(8, pos));
            assert_ne!(k.base ^ st.bits(pos), st.stamped(9, pos));
            assert_ne!(Known::NONE.base ^ st.bits(pos), CLEAR);
        }
    }

    #[test]
    fn known_none_matches_no_word_at_any_position_and_fits_no_ring() {
        // Two guards, each enough: its state bits are ones no header has, and its size
        // exceeds any room (a ring's room is at most its capacity, below 2^63).
        let st = Stamp;
        let none = Known::NONE;
        assert!(!none.fits(1 << 62));
        for pos in [0u64, 8, 4096, 1 << 33, u64::MAX - 7] {
            for len in [0usize, 1, 8, 9, 4088, 1 << 20] {
                let word = st.stamped(len, pos);
                assert_ne!(word, none.base ^ st.bits(pos), "NONE's word is a header's");
                assert_eq!(none.repeat(st, word, pos, u64::MAX), None);
            }
            assert_eq!(none.repeat(st, CLEAR, pos, u64::MAX), None);
            assert_eq!(none.repeat(st, none.base ^ st.bits(pos), pos, 1 << 62), None, "fits a ring");
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
                let word = Stamp.stamped(len, 0);
                write_frame(at, word, &src[..len]);
                let got = std::slice::from_raw_parts(at, 16);
                assert_eq!(got[..8], word.to_le_bytes(), "len {len}");
                assert_eq!(&got[8..8 + len], &src[..len], "len {len}");
                assert!(got[8 + len..].iter().all(|&b| b == 0), "len {len}: padding not zero");
            }
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
