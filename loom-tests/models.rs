//! Model-checking support for `mirror-ring`'s protocol (see `tests/`). Everything here exists
//! only under `--cfg loom`; without it the crate is empty.
//!
//! Run the models with:
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p loom-tests
//! ```
//!
//! The crate's real protocol code (`mirror_ring::loom_api`, thin wrappers over `protocol.rs`,
//! `wait.rs` and `header.rs`) runs over a heap-allocated header, with loom's atomics and a
//! loom-visible futex swapped in by the crate's `sync.rs` shim. The data bytes live in
//! [`Data`]: loom `UnsafeCell`s indexed by `position & (N - 1)`, so loom's causality checker
//! fails a model whenever a producer write and a consumer read of one byte are not ordered by
//! the protocol (an overwrite of unread bytes, or a read of unpublished ones).
#![cfg(loom)]

pub use mirror_ring::loom_api::{ConsumerCursor, Corrupt, ProducerCursor, Ring, Role, Stop, Word};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The data pages of a model ring: `N` loom-checked cells, addressed by byte position.
#[derive(Debug)]
pub struct Data {
    cells: Box<[loom::cell::UnsafeCell<u8>]>,
    mask: u64,
}

// SAFETY: the cells are shared between the producer and the consumer thread exactly as the
// ring's pages are; whether every access is ordered is what loom checks (it reports any
// unsynchronised pair of accesses to one cell as a failure of the model).
unsafe impl Sync for Data {}

impl Data {
    /// `capacity` zeroed cells (a power of two).
    pub fn new(capacity: u64) -> Data {
        assert!(capacity.is_power_of_two());
        Data { cells: (0..capacity).map(|_| loom::cell::UnsafeCell::new(0)).collect(), mask: capacity - 1 }
    }

    /// The producer writes byte position `pos`.
    pub fn write(&self, pos: u64, v: u8) {
        // SAFETY: loom's cell checks that no access by another thread races with this one.
        self.cells[(pos & self.mask) as usize].with_mut(|p| unsafe { *p = v });
    }

    /// The consumer reads byte position `pos`.
    pub fn read(&self, pos: u64) -> u8 {
        // SAFETY: as in `write`.
        self.cells[(pos & self.mask) as usize].with(|p| unsafe { *p })
    }
}

/// The value of the `k`-th byte of a model stream (counting from 0): never 0, so a byte that
/// was never written shows, and distinct within 255 bytes, so a stale or misplaced byte shows.
pub fn value(k: u64) -> u8 {
    (k % 255) as u8 + 1
}

/// Runs `f` under loom (settings from the `LOOM_*` environment variables, as `loom::model`),
/// and prints how many executions were explored and how long it took.
pub fn model<F>(name: &str, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let start = Instant::now();
    loom::model::Builder::new().check(move || {
        // Relaxed: a plain counter, read after the model has finished.
        counter.fetch_add(1, Ordering::Relaxed);
        f()
    });
    let runs = runs.load(Ordering::Relaxed);
    println!("model {name}: {runs} executions in {:.2?}", start.elapsed());
}
