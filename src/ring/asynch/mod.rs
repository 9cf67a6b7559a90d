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
    use crate::ring::{Consumer, FramedConsumer, FramedProducer, Producer};
    use crate::wait::PeerCheck;

    impl ParkEnd for Producer {
        fn site(&self) -> Option<Site<'_>> {
            Some(Site {
                hdr: self.end.header()?,
                role: self.end.role,
                park: &self.end.park,
                counters: self.cur.counters(),
                direct: self.end.peer.is_none(),
                watch: self.end.peer.as_ref().is_some_and(|p| p.borrow().active()),
                ring: Some(&self.end.ring),
                spin: self.end.spin,
            })
        }
    }

    impl ParkEnd for Consumer {
        fn site(&self) -> Option<Site<'_>> {
            Some(Site {
                hdr: self.end.header()?,
                role: self.end.role,
                park: &self.end.park,
                counters: self.cur.counters(),
                direct: self.end.peer.is_none(),
                watch: self.end.peer.as_ref().is_some_and(|p| p.borrow().active()),
                ring: Some(&self.end.ring),
                spin: self.end.spin,
            })
        }
    }

    impl ParkEnd for FramedProducer {
        fn site(&self) -> Option<Site<'_>> {
            self.byte_end().site()
        }
    }

    impl ParkEnd for FramedConsumer {
        fn site(&self) -> Option<Site<'_>> {
            self.byte_end().site()
        }
    }
}
