//! Async ends: parking a task, not a thread, on the ring's waiter words.
//!
//! The design, the alternatives that were measured and why this one was chosen:
//! [`docs::async_ends`](crate::docs::async_ends). Here: the parking machinery (`park`: the
//! per-end state machine, the registry of parked wakers, the helper threads) and, with the
//! `tokio` feature, the four ends (`ends`).

pub(crate) mod park;

#[cfg(feature = "tokio")]
mod ends;

#[cfg(feature = "tokio")]
pub use ends::{AsyncConsumer, AsyncFramedConsumer, AsyncFramedProducer, AsyncProducer};

#[cfg(feature = "tokio")]
mod sites {
    use super::park::{ParkEnd, Site};
    use crate::ring::{Consumer, End, FramedConsumer, FramedProducer, Producer};
    use crate::stats::Counters;

    /// The site of a byte end: `end` with the counters of its cursor.
    fn site_of<'a>(end: &'a End, counters: &'a Counters) -> Option<Site<'a>> {
        Some(Site {
            hdr: end.header()?,
            role: end.role,
            park: &end.park,
            counters,
            direct: end.peer.is_none(),
            watcher: end.peer.as_ref().map(|p| (p, end.token)),
            ring: Some(&end.ring),
            spin: &end.spinning,
            kept: Some(&end.kept),
        })
    }

    impl ParkEnd for Producer {
        fn site(&self) -> Option<Site<'_>> {
            site_of(&self.end, self.cur.counters())
        }
        fn lost(&self) -> std::io::Error {
            self.end.lost()
        }
    }

    impl ParkEnd for Consumer {
        fn site(&self) -> Option<Site<'_>> {
            site_of(&self.end, self.cur.counters())
        }
        fn lost(&self) -> std::io::Error {
            self.end.lost()
        }
    }

    impl ParkEnd for FramedProducer {
        fn site(&self) -> Option<Site<'_>> {
            self.byte_end().site()
        }
        fn lost(&self) -> std::io::Error {
            self.byte_end().end.lost()
        }
    }

    impl ParkEnd for FramedConsumer {
        fn site(&self) -> Option<Site<'_>> {
            self.byte_end().site()
        }
        fn lost(&self) -> std::io::Error {
            self.byte_end().end.lost()
        }
    }
}
