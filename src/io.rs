//! `std::io` for the two ends: blocking `Write` on the producer, blocking `Read` and `BufRead`
//! on the consumer.

use std::io::{self, BufRead, Read, Write};

use crate::ring::{Consumer, Producer, Wait};

/// Blocks until at least one byte fits, then writes as much of `buf` as fits.
///
/// Errors: `BrokenPipe` once the consumer is gone, `InvalidData` if the ring is poisoned.
/// `flush` does nothing: every write is published when it returns.
impl Write for Producer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_with(buf, Wait::Until(None))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Blocks until at least one byte is readable, then reads as many as fit in `buf`. `Ok(0)` is
/// end of stream (the producer closed and everything was read).
///
/// Errors: `UnexpectedEof` after every committed byte was read if the producer's process died
/// without closing; `InvalidData` if the ring is poisoned.
impl Read for Consumer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(buf, Wait::Until(None))
    }
}

/// `fill_buf` returns every byte readable at the moment of the call, as one slice (contiguous
/// across the wrap), reloading the producer's cursor on every call: a parser that found an
/// incomplete record can simply call it again. It blocks only while nothing is readable, and
/// returns an empty slice at end of stream. `consume` releases bytes to the producer (clamped
/// to what `fill_buf` returned).
impl BufRead for Consumer {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.fill()
    }

    fn consume(&mut self, amt: usize) {
        self.consume_clamped(amt)
    }
}
