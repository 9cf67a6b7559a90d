//! Essays: the stories behind the API, each told once.
//!
//! The rest of the documentation (item docs, module docs in the source) links here instead of
//! retelling these stories. Measured figures live in `BENCHMARKS.md`, which says when, where
//! and how each was measured; these pages name only the design constants.
//!
//! - [`lifecycle`]: roles, `fork()`, closing, peer death, and what a blocked call sees.
//! - [`trust_model`]: what a hostile peer process can and cannot do, and which calls are sound
//!   with one.
//! - [`barriers`]: blocking without a fence per commit: the asymmetric barrier pair, how the
//!   two sides agree on it, and why no wake-up is lost.
//! - [`framing`]: the framed wire format (position-stamped headers), the hand-over of a frame
//!   without a cursor load per message, and the batching rules.
//! - [`async_ends`]: async ends (feature `tokio`): how a `FUTEX_WAKE` from any peer becomes a
//!   `Waker::wake()`, what a parked end costs, and the alternatives that were measured.
//! - [`accounting`]: what the two views cost in RSS, address space, map count and locked
//!   memory.

pub mod accounting;
pub mod async_ends;
pub mod barriers;
pub mod framing;
pub mod lifecycle;
pub mod trust_model;
