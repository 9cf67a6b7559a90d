//! Role claims race safely: of two processes claiming the same role at once exactly one wins,
//! and a peer that watches the slot never sees a pid without its start time.

use super::{model, Ring};
use crate::header::Role;
use crate::peer::ProcessWatch;
use loom::sync::Arc;
use loom::thread;

#[test]
fn role_claims_race_safely() {
    model("role_claims_race_safely", || {
        let ring = Arc::new(Ring::new(4, 0));
        let claimers: Vec<_> = [10, 11]
            .into_iter()
            .map(|pid| {
                let r = ring.clone();
                thread::spawn(move || r.claim(Role::Producer, pid, 1000 + pid as u64).then_some(pid))
            })
            .collect();
        // The consumer's peer watcher (the real `ProcessWatch::identify`) reads the producer's
        // slot concurrently: a pid it sees must come with that claimant's start time.
        if let Some(peer) = ProcessWatch::new(Role::Consumer).identify(&ring) {
            assert_eq!(peer.start_time, 1000 + peer.pid as u64, "pid {} seen without its start time", peer.pid);
        }
        let winners: Vec<i32> = claimers.into_iter().filter_map(|t| t.join().unwrap()).collect();
        assert_eq!(winners.len(), 1, "exactly one claim wins: {winners:?}");
        assert!(!ring.claim(Role::Producer, 12, 1012), "a later claim fails");
        assert!(ring.claim(Role::Consumer, 12, 1012), "the other role is still free");
        let peer = ProcessWatch::new(Role::Consumer).identify(&ring).expect("the winner is watched");
        assert_eq!((peer.pid, peer.start_time), (winners[0], 1000 + winners[0] as u64));
    });
}
