//! Copies into and out of the ring's data pages.

/// Copies `len` bytes into the ring (a frame's payload, a byte write); up to 256 bytes without
/// a call into `memcpy`: up to 16 bytes as two overlapping loads and stores of the widest size
/// that fits, 17 to 256 as 16-byte stores each fed by two 8-byte loads ([`copy_16`]).
///
/// # Safety
///
/// `src` is valid for `len` bytes of reads, `dst` for `len` bytes of writes, and they do not
/// overlap.
#[inline(always)]
pub(crate) unsafe fn copy_in(src: *const u8, dst: *mut u8, len: usize) {
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
            17..=256 => {
                // 16-byte pieces from the start, and the last 16 bytes (overlapping the one
                // before unless len is a multiple of 16).
                let mut at = 0;
                while at + 16 < len {
                    copy_16(src.add(at), dst.add(at));
                    at += 16;
                }
                copy_16(src.add(len - 16), dst.add(len - 16));
            }
            _ => std::ptr::copy_nonoverlapping(src, dst, len),
        }
    }
}

/// Copies 16 bytes with two 8-byte loads and one 16-byte store.
///
/// Why not one 16-byte load: the message is often written just before the call, and those
/// stores may still be in flight. A load is served from in-flight stores only when one store
/// covers it (store-to-load forwarding); a 16-byte load of bytes written as two 8-byte words,
/// a common way to build a message, is not. It then waits until those stores reach the cache,
/// and stores reach it in order, likely behind this producer's earlier stores into ring lines
/// that the consumer's core is reading. Between two cores that halved the rate of 64-byte
/// messages rebuilt for each `send` (median 87 against 172 M/s with this copy, x86-64;
/// `BENCHMARKS.md`, "Copies the store buffer can serve"). An 8-byte load is served by any
/// store of 8 or more bytes that contains it.
///
/// LLVM merges two adjacent loads into one wide load, and widens an 8-byte load where it knows
/// more bytes are readable (a message on the stack). So on x86-64 the two offsets, 0 and 8,
/// come out of an `asm!` block that LLVM cannot see into: it then knows nothing about where
/// the loads are relative to each other, and emits them as written. The loads, the combining
/// and the store stay ordinary code, so the compiler encodes them for the caller's target
/// features. A first version loaded with `movq` and `movhps` inside the `asm!` block, legacy
/// SSE encodings: inlined into a caller built with AVX, whose registers' upper halves were in
/// use, it sent 64-byte messages at 2 M/s instead of 172. (`_mm_loadh_pd` would name `movhps`,
/// but it dereferences an `f64` pointer, which must be aligned.) Elsewhere this is a plain
/// 16-byte copy (the effect is unmeasured there).
///
/// # Safety
///
/// `src` is valid for 16 bytes of reads, `dst` for 16 bytes of writes, and they do not
/// overlap.
#[inline(always)]
unsafe fn copy_16(src: *const u8, dst: *mut u8) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: the `asm!` block only writes 0 and 8 into two registers (`pure, nomem, nostack,
    // preserves_flags`), so the unaligned loads read bytes 0-7 and 8-15 of the 16 at `src`
    // that the caller vouches for, and the unaligned store writes the 16 at `dst`.
    unsafe {
        use std::arch::x86_64::{_mm_set_epi64x, _mm_storeu_si128};
        let (zero, eight): (usize, usize);
        std::arch::asm!(
            "mov {zero}, 0",
            "mov {eight}, 8",
            zero = out(reg) zero,
            eight = out(reg) eight,
            options(pure, nomem, nostack, preserves_flags),
        );
        let lo = src.add(zero).cast::<u64>().read_unaligned();
        let hi = src.add(eight).cast::<u64>().read_unaligned();
        _mm_storeu_si128(dst.cast(), _mm_set_epi64x(hi as i64, lo as i64));
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    // SAFETY: as the caller vouches; unaligned reads and writes.
    unsafe {
        dst.cast::<[u64; 2]>().write_unaligned(src.cast::<[u64; 2]>().read_unaligned());
    }
}

/// Copies `n` bytes out of the ring. With `racy`, the source may be written by another
/// process at the same time (a hostile peer): then every byte is read exactly once, with
/// volatile loads, so the compiler cannot read a byte twice and hand the caller a value other
/// than the one it copied (a plain `memcpy` from memory that changes underneath is a data
/// race in Rust's model). Without `racy`, a plain `memcpy`.
///
/// # Safety
///
/// `src` is valid for `n` bytes of reads, `dst` for `n` bytes of writes, and they do not
/// overlap.
#[inline]
pub(crate) unsafe fn copy_out(src: *const u8, dst: *mut u8, n: usize, racy: bool) {
    if !racy {
        // SAFETY: the caller vouches for both ranges.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, n) };
        return;
    }
    /// The widest load that every target of this crate can do in one volatile instruction.
    #[cfg(target_arch = "x86_64")]
    type Chunk = std::arch::x86_64::__m128i;
    #[cfg(not(target_arch = "x86_64"))]
    type Chunk = u64;
    const W: usize = std::mem::size_of::<Chunk>();
    let mut i = 0;
    // SAFETY: every access lies within the `n` bytes the caller vouches for; the chunk loads
    // are aligned (the loop before them walks `src + i` to a multiple of W); the stores are
    // unaligned writes to caller memory.
    unsafe {
        while i < n && (src.add(i) as usize) % W != 0 {
            dst.add(i).write(src.add(i).read_volatile());
            i += 1;
        }
        // Four chunks per round: independent loads, so the loop is not bound by its own
        // overhead.
        while i + 4 * W <= n {
            let s = src.add(i).cast::<Chunk>();
            let (a, b, c, e) =
                (s.read_volatile(), s.add(1).read_volatile(), s.add(2).read_volatile(), s.add(3).read_volatile());
            let d = dst.add(i).cast::<Chunk>();
            d.write_unaligned(a);
            d.add(1).write_unaligned(b);
            d.add(2).write_unaligned(c);
            d.add(3).write_unaligned(e);
            i += 4 * W;
        }
        while i + W <= n {
            let v = src.add(i).cast::<Chunk>().read_volatile();
            dst.add(i).cast::<Chunk>().write_unaligned(v);
            i += W;
        }
        while i < n {
            dst.add(i).write(src.add(i).read_volatile());
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_in_copy_exactly_len_bytes() {
        let src: Vec<u8> = (0..308).map(|i| (i % 251 + 1) as u8).collect();
        // Every length through the word copies into memcpy's range, from and to addresses at
        // every offset from 8-byte alignment.
        for (len, from, to) in (0..=300).flat_map(|len| (0..8).flat_map(move |f| (0..8).map(move |t| (len, f, t)))) {
            let mut dst = [0u8; 320];
            // SAFETY: src has 308 >= from + len bytes, dst 320 >= to + len; distinct buffers.
            unsafe { copy_in(src[from..].as_ptr(), dst[to..].as_mut_ptr(), len) };
            assert_eq!(&dst[to..to + len], &src[from..from + len], "len {len}, offsets {from} {to}");
            assert!(dst[..to].iter().chain(&dst[to + len..]).all(|&b| b == 0), "len {len}: wrote outside");
        }
    }

    /// The race-tolerant copy copies exactly `n` bytes from any alignment, in its byte, chunk and
    /// unrolled parts, and writes nothing past them.
    #[test]
    fn the_volatile_copy_copies_exactly_n_bytes_from_any_alignment() {
        let src: Vec<u8> = (0..600u32).map(|i| (i * 7 + 3) as u8).collect();
        for off in 0..32 {
            for n in (0..200).chain([255, 256, 257, 511, 512, 513]) {
                let mut dst = vec![0xEEu8; n + 16];
                // SAFETY: src has off + n <= 600 readable bytes, dst n + 16 writable; distinct.
                unsafe { copy_out(src.as_ptr().add(off), dst.as_mut_ptr(), n, true) };
                assert_eq!(&dst[..n], &src[off..off + n], "offset {off}, {n} bytes");
                assert!(dst[n..].iter().all(|&b| b == 0xEE), "offset {off}, {n} bytes: wrote past the end");
            }
        }
    }
}
