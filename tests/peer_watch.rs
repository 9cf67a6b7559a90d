//! The helper thread watches a parked async end's peer process through its pidfd and the claim
//! words instead of waking the task every watch interval (`docs::async_ends`, "Bounded
//! sleeps"): parked async ends between processes must still see their peer's death, within a
//! second (10x the design bound), whatever way it dies and however the ring was shared, and
//! follow take-overs, poisonings and missed wake-ups, leaking no pidfd.

mod common;

#[cfg(feature = "tokio")]
mod watched {
    use std::future::Future;
    use std::io::{ErrorKind, Read, Write};
    use std::pin::Pin;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};
    use std::time::{Duration, Instant};

    use super::common::header_offsets::{
        OFF_CONSUMER, OFF_DATA_OFFSET, OFF_DATA_WAITER, OFF_HEAD, OFF_POISONED, OFF_PRODUCER,
    };
    use super::common::{self, in_child, noop_waker, spawn_child, watchdog, Counting, HeaderView, SharedPage};
    use mirror_ring::{Backend, RingOptions, SharedRing};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    type Call<'a, T> = Pin<Box<dyn Future<Output = std::io::Result<T>> + 'a>>;

    fn ring() -> SharedRing {
        RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).shared().unwrap()
    }

    /// Polls `call` as an executor would (again each time its waker was woken) until it is
    /// ready or `limit` passed; how many times it was woken meanwhile.
    struct Pump<'a, T> {
        call: Call<'a, T>,
        count: Arc<Counting>,
        polled: usize,
    }

    impl<'a, T> Pump<'a, T> {
        fn new(call: Call<'a, T>) -> Self {
            let mut p = Pump { call, count: Arc::new(Counting(0.into())), polled: 0 };
            let waker = Waker::from(p.count.clone());
            assert!(p.call.as_mut().poll(&mut Context::from_waker(&waker)).is_pending(), "nothing to do yet");
            p
        }

        fn woken(&self) -> usize {
            self.count.0.load(Ordering::SeqCst)
        }

        /// Runs until ready or `limit`; `None` at the limit.
        fn run(&mut self, limit: Duration) -> Option<std::io::Result<T>> {
            let until = Instant::now() + limit;
            while Instant::now() < until {
                let now = self.woken();
                if now != self.polled {
                    self.polled = now;
                    let waker = Waker::from(self.count.clone());
                    if let Poll::Ready(r) = self.call.as_mut().poll(&mut Context::from_waker(&waker)) {
                        return Some(r);
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            None
        }
    }

    /// In a forked child of the test: panic messages go straight to the standard error (the
    /// harness's capture does not reach the parent).
    fn loud_panics() {
        std::panic::set_hook(Box::new(|info| {
            let _ = writeln!(std::io::stderr(), "child: {info}");
        }));
    }

    /// Runs `f` in a forked child whose panics reach the standard error, under a 30 s watchdog
    /// named `name`; the child must exit with 0.
    fn in_loud_child(name: &str, f: impl FnOnce() -> i32) {
        let _dog = watchdog(name, Duration::from_secs(30));
        let status = in_child(|| {
            loud_panics();
            f()
        });
        assert_eq!(status, 0, "{name}: the child's status");
    }

    /// Waits (up to a second) until this process's descriptors are `before` again, but for the
    /// peer-poll thread's epoll instance, which stays (`docs::accounting`); `what` names the case.
    fn await_descriptors_back(before: &[String], what: &str) {
        let until = Instant::now() + Duration::from_secs(1);
        while common::open_fds_but_peer_poll() != before {
            assert!(
                Instant::now() < until,
                "{what}: descriptors left: {:?} -> {:?}",
                before,
                common::open_fds_but_peer_poll()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// In a peer process: takes the producer's role over (retrying for up to 10 s while its
    /// dead holder's claim is not yet released), writes `hi`, and keeps the role.
    fn take_over_and_write_hi(ring: &SharedRing, page: &SharedPage) -> i32 {
        let until = Instant::now() + Duration::from_secs(10);
        let mut tx = loop {
            match ring.take_over_producer() {
                Ok(tx) => break tx,
                Err(e) => assert!(Instant::now() < until, "no take-over: {e}"),
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        tx.write_all(b"hi").unwrap();
        park_child(page, || std::mem::forget(tx))
    }

    fn park_child(page: &SharedPage, f: impl FnOnce()) -> i32 {
        f();
        page.word(0).store(1, Ordering::SeqCst);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// A peer that leaves through `_exit` without dropping its end (as a crash that is not a
    /// signal): the parked async reader, left asleep while the peer lived, sees the death
    /// within a second as `UnexpectedEof`, counts it once in `peer_died`, and counts no lost
    /// wake-up.
    #[test]
    fn a_parked_async_reader_sees_a_peer_that_exits_without_closing() {
        let dog = watchdog("a_parked_async_reader_sees_a_peer_that_exits_without_closing", Duration::from_secs(30));
        let ring = ring();
        let page = SharedPage::new();
        let child = spawn_child(|| {
            let tx = ring.clone().into_producer().unwrap();
            page.ready_then_await_go();
            std::mem::forget(tx);
            unsafe { libc::_exit(0) }
        });
        dog.kill_on_expiry(&child);
        page.await_word(0);
        let mut rx = ring.clone().into_consumer().unwrap().into_async().unwrap();
        let mut b = [0u8; 1];
        {
            let mut p = Pump::new(Box::pin(rx.read(&mut b)));
            assert!(p.run(Duration::from_millis(300)).is_none(), "nothing was written");
            assert!(p.woken() <= 3, "an idle end on a live peer was woken {} times", p.woken());
            page.word(1).store(1, Ordering::SeqCst);
            let r = p.run(Duration::from_secs(1)).expect("the exit not seen within a second");
            assert_eq!(r.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        }
        // A later call answers the same, and the one death stays counted once.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let again = rt.block_on(async { tokio::time::timeout(Duration::from_secs(1), rx.read(&mut b)).await });
        assert_eq!(again.expect("the second call hung").unwrap_err().kind(), ErrorKind::UnexpectedEof);
        let s = rx.stats();
        assert_eq!(s.peer_died, 1, "{s:?}");
        assert_eq!(s.lost_wakeups, 0, "{s:?}");
        let mut child = child;
        assert_eq!(child.wait(), 0);
    }

    /// A memfd ring handed to the peer over a Unix socket (no fork inheritance of anything but
    /// the socket's other end): the peer consumes nothing, the parent's async writer parks on
    /// the full ring, left asleep, and sees the peer's SIGKILL as `BrokenPipe` within a second.
    #[test]
    fn a_parked_async_writer_on_a_memfd_ring_sees_a_killed_receiver() {
        let dog = watchdog("a_parked_async_writer_on_a_memfd_ring_sees_a_killed_receiver", Duration::from_secs(30));
        let ring =
            RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).backend(Backend::Memfd).shared().unwrap();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let page = SharedPage::new();
        let mut child = spawn_child(|| {
            let ring = SharedRing::recv_from(&b).unwrap();
            park_child(&page, || std::mem::forget(ring.into_consumer().unwrap()))
        });
        dog.kill_on_expiry(&child);
        drop(b);
        ring.send_to(&a).unwrap();
        drop(a);
        page.await_word(0);
        let mut tx = ring.clone().into_producer().unwrap();
        tx.write_all(&vec![7; tx.capacity()]).unwrap();
        let mut tx = tx.into_async().unwrap();
        {
            let mut p = Pump::new(Box::pin(tx.write_all(b"more")));
            assert!(p.run(Duration::from_millis(300)).is_none(), "the ring is full");
            assert!(p.woken() <= 3, "an idle end on a live peer was woken {} times", p.woken());
            child.kill();
            let r = p.run(Duration::from_secs(1)).expect("the death not seen within a second");
            assert_eq!(r.unwrap_err().kind(), ErrorKind::BrokenPipe);
        }
        let s = tx.stats();
        assert_eq!(s.peer_died, 1, "{s:?}");
        assert_eq!(s.lost_wakeups, 0, "{s:?}");
        child.wait();
    }

    /// A peer that replaces its image with `exec` (its mapping of the ring gone, its pid the
    /// same) and then exits: the parked async reader sees the death within a second of it.
    #[test]
    fn a_parked_async_reader_sees_a_peer_that_execs_then_exits() {
        let dog = watchdog("a_parked_async_reader_sees_a_peer_that_execs_then_exits", Duration::from_secs(30));
        let ring = ring();
        let page = SharedPage::new();
        let mut child = spawn_child(|| {
            std::mem::forget(ring.clone().into_producer().unwrap());
            common::exec_a_sleep_when_told(&page, "0.3")
        });
        dog.kill_on_expiry(&child);
        page.await_word(0);
        let mut rx = ring.clone().into_consumer().unwrap().into_async().unwrap();
        let mut b = [0u8; 1];
        let mut p = Pump::new(Box::pin(rx.read(&mut b)));
        assert!(p.run(Duration::from_millis(200)).is_none(), "nothing was written");
        page.word(1).store(1, Ordering::SeqCst);
        let started = Instant::now();
        let r = p.run(Duration::from_millis(1500)).expect("the exec'd peer's exit not seen 1.2 s after it");
        assert_eq!(r.unwrap_err().kind(), ErrorKind::UnexpectedEof, "after {:?}", started.elapsed());
        assert_eq!(child.wait(), 0, "the exec'd shell ran");
    }

    /// A peer that is already a zombie (exited, not reaped) when the end parks: the park ends
    /// at once (within a second) with `UnexpectedEof`.
    #[test]
    fn an_async_reader_parking_on_a_zombie_peer_sees_it_dead() {
        let dog = watchdog("an_async_reader_parking_on_a_zombie_peer_sees_it_dead", Duration::from_secs(30));
        let ring = ring();
        let mut child = spawn_child(|| {
            std::mem::forget(ring.clone().into_producer().unwrap());
            0
        });
        dog.kill_on_expiry(&child);
        let until = Instant::now() + Duration::from_secs(5);
        while child.state() != 'Z' {
            assert!(Instant::now() < until, "the child never exited");
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut rx = ring.clone().into_consumer().unwrap().into_async().unwrap();
        let mut b = [0u8; 1];
        let mut call: Call<'_, usize> = Box::pin(rx.read(&mut b));
        let count = Arc::new(Counting(0.into()));
        let waker = Waker::from(count.clone());
        let r = match call.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(r) => r,
            Poll::Pending => {
                let mut p = Pump { call, count, polled: 0 };
                p.run(Duration::from_secs(1)).expect("a zombie peer not seen dead within a second")
            }
        };
        assert_eq!(r.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        child.wait();
    }

    /// A park cancelled (its future dropped) while the helper watched the peer, then the peer
    /// killed: a new call on the same end, made later, sees the death within a second.
    #[test]
    fn a_cancelled_park_then_a_new_call_sees_a_death_in_between() {
        let dog = watchdog("a_cancelled_park_then_a_new_call_sees_a_death_in_between", Duration::from_secs(30));
        let ring = ring();
        let page = SharedPage::new();
        let mut child = spawn_child(|| park_child(&page, || std::mem::forget(ring.clone().into_producer().unwrap())));
        dog.kill_on_expiry(&child);
        page.await_word(0);
        let mut rx = ring.clone().into_consumer().unwrap().into_framed().into_async().unwrap();
        {
            let mut p = Pump::new(Box::pin(async { rx.recv().await.map(|f| f.map(|f| f.len())) }));
            assert!(p.run(Duration::from_millis(150)).is_none(), "nothing was sent");
        }
        child.kill();
        std::thread::sleep(Duration::from_millis(100));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let r = rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(1), rx.recv()).await.map(|r| r.map(|f| f.map(|f| f.len())))
            })
            .expect("the death not seen within a second by the next call");
        assert_eq!(r.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        child.wait();
    }

    /// With no descriptor left (EMFILE) when the end first checks its peer, the watcher has no
    /// pidfd and the task is woken every watch interval to check for itself; once descriptors
    /// are back and the peer is killed, the death is seen within a second. Run in a forked
    /// child of the test, whose descriptor limit is its own. Every descriptor the end and its
    /// helper held (the pidfd shared with the registry) is closed once the end is dropped.
    #[test]
    fn a_parked_async_end_without_descriptors_still_sees_the_death_and_leaks_none() {
        in_loud_child("a_parked_async_end_without_descriptors_still_sees_the_death_and_leaks_none", || {
            let ring = ring();
            let page = SharedPage::new();
            let mut child =
                spawn_child(|| park_child(&page, || std::mem::forget(ring.clone().into_producer().unwrap())));
            page.await_word(0);
            let before = common::open_fds_but_peer_poll();
            let mut rx = ring.clone().into_consumer().unwrap().into_async().unwrap();
            // Every descriptor taken.
            let old = common::set_soft_limit(libc::RLIMIT_NOFILE, 64).expect("setrlimit");
            let mut fill = Vec::new();
            while let Ok(f) = std::fs::File::open("/dev/null") {
                fill.push(f);
            }
            let mut b = [0u8; 1];
            {
                let mut p = Pump::new(Box::pin(rx.read(&mut b)));
                assert!(p.run(Duration::from_millis(300)).is_none(), "nothing was written");
                assert!(p.woken() >= 4, "without a pidfd the task was woken only {} times in 300 ms", p.woken());
                drop(fill);
                common::set_soft_limit(libc::RLIMIT_NOFILE, old as usize);
                assert!(p.run(Duration::from_millis(200)).is_none(), "nothing was written");
                child.kill();
                let r = p.run(Duration::from_secs(1)).expect("the death not seen within a second");
                assert_eq!(r.unwrap_err().kind(), ErrorKind::UnexpectedEof);
            }
            child.wait();
            drop(rx);
            await_descriptors_back(&before, "the end parked without descriptors");
            0
        });
    }

    /// Many ends (readers, writers, framed) on one peer process, all left asleep by the helper:
    /// the peer's death reaches every one within a second, and once they are dropped no pidfd
    /// is left open (the helper's registry shares them). In a forked child, to count its
    /// descriptors alone.
    #[test]
    fn many_parked_ends_sharing_one_peer_all_see_its_death_and_leak_no_pidfd() {
        in_loud_child("many_parked_ends_sharing_one_peer_all_see_its_death_and_leak_no_pidfd", || {
            const N: usize = 12;
            let rings: Vec<SharedRing> = (0..N).map(|_| ring()).collect();
            let page = SharedPage::new();
            let mut child = spawn_child(|| {
                park_child(&page, || {
                    for (i, r) in rings.iter().enumerate() {
                        if i % 2 == 0 {
                            std::mem::forget(r.clone().into_producer().unwrap());
                        } else {
                            std::mem::forget(r.clone().into_consumer().unwrap());
                        }
                    }
                })
            });
            page.await_word(0);
            let before = common::open_fds_but_peer_poll();
            {
                let mut pumps: Vec<Pump<'static, ()>> = Vec::new();
                for (i, r) in rings.iter().enumerate() {
                    if i % 4 == 0 {
                        let mut rx = r.clone().into_consumer().unwrap().into_async().unwrap();
                        pumps.push(Pump::new(Box::pin(async move {
                            let mut b = [0u8; 1];
                            rx.read(&mut b).await.map(drop)
                        })));
                    } else if i % 4 == 2 {
                        let mut rx = r.clone().into_consumer().unwrap().into_framed().into_async().unwrap();
                        pumps.push(Pump::new(Box::pin(async move { rx.recv().await.map(drop) })));
                    } else {
                        let mut tx = r.clone().into_producer().unwrap();
                        tx.write_all(&vec![1; tx.capacity()]).unwrap();
                        let mut tx = tx.into_async().unwrap();
                        pumps.push(Pump::new(Box::pin(async move { tx.write_all(b"x").await })));
                    }
                }
                let idle = Instant::now();
                while idle.elapsed() < Duration::from_millis(300) {
                    for p in pumps.iter_mut() {
                        assert!(p.run(Duration::ZERO).is_none());
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                child.kill();
                let killed = Instant::now();
                let mut done = vec![None; N];
                while done.iter().any(Option::is_none) {
                    assert!(killed.elapsed() < Duration::from_secs(1), "not seen in a second: {done:?}");
                    for (i, p) in pumps.iter_mut().enumerate() {
                        if done[i].is_none() {
                            if let Some(r) = p.run(Duration::from_millis(1)) {
                                done[i] = Some(r.unwrap_err().kind());
                            }
                        }
                    }
                }
                for (i, k) in done.iter().enumerate() {
                    let want = if i % 2 == 0 { ErrorKind::UnexpectedEof } else { ErrorKind::BrokenPipe };
                    assert_eq!(*k, Some(want), "end {i}");
                }
            }
            child.wait();
            await_descriptors_back(&before, "ends sharing one peer");
            0
        });
    }

    /// Field 22 of `/proc/<pid>/stat`: the process's start time, as a claimant records it.
    fn start_time(pid: libc::pid_t) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(19).unwrap().parse().unwrap()
    }

    fn memfd_ring() -> (SharedRing, HeaderView) {
        let ring =
            RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).backend(Backend::Memfd).shared().unwrap();
        let view = HeaderView::map(ring.as_fd().unwrap());
        (ring, view)
    }

    /// While an async reader is parked (its helper watching producer A through A's pidfd),
    /// the producer's claim word is rewritten to name another live process C (a holder the end
    /// did not see at its park). The end must follow the slot: A's death is then not its
    /// peer's, C's is, and seen within a second of C's kill.
    #[test]
    fn a_parked_async_reader_follows_its_peer_slot_to_a_new_holder_and_sees_its_death() {
        let dog = watchdog(
            "a_parked_async_reader_follows_its_peer_slot_to_a_new_holder_and_sees_its_death",
            Duration::from_secs(30),
        );
        let (ring, view) = memfd_ring();
        let page = SharedPage::new();
        let mut a = spawn_child(|| park_child(&page, || std::mem::forget(ring.clone().into_producer().unwrap())));
        dog.kill_on_expiry(&a);
        page.await_word(0);
        let mut c = spawn_child(|| loop {
            std::thread::sleep(Duration::from_secs(1));
        });
        dog.kill_on_expiry(&c);
        let mut rx = ring.clone().into_consumer().unwrap().into_async().unwrap();
        let mut b = [0u8; 1];
        let mut p = Pump::new(Box::pin(rx.read(&mut b)));
        assert!(p.run(Duration::from_millis(200)).is_none(), "nothing was written");
        // C's identity as a claimant records it: its start time, then the claim word naming it.
        view.u64_at(OFF_PRODUCER + 8).store(start_time(c.pid()), Ordering::SeqCst);
        let claim = view.u64_at(OFF_PRODUCER);
        claim.store((claim.load(Ordering::SeqCst) & 0xffff_ffff) | ((c.pid() as u64) << 32), Ordering::SeqCst);
        assert!(p.run(Duration::from_millis(200)).is_none(), "the new holder C lives");
        a.kill();
        a.wait();
        assert!(p.run(Duration::from_millis(200)).is_none(), "A no longer holds the role: C lives");
        c.kill();
        let r = p.run(Duration::from_secs(1)).expect("the new holder's death not seen within a second");
        assert_eq!(r.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        c.wait();
    }

    /// This end's own role taken over by another process while it is parked (its claim word
    /// forged to name a dead process, then taken over for real by a third process): the old
    /// end, left asleep by its helper, is woken and answers `ConnectionAborted` within a
    /// second.
    #[test]
    fn a_parked_async_end_whose_role_another_process_takes_over_answers_connection_aborted() {
        let dog = watchdog(
            "a_parked_async_end_whose_role_another_process_takes_over_answers_connection_aborted",
            Duration::from_secs(30),
        );
        let dead = {
            let mut c = spawn_child(|| 0);
            let pid = c.pid();
            c.wait();
            pid as u64
        };
        let (ring, view) = memfd_ring();
        let page = SharedPage::new();
        let mut a = spawn_child(|| park_child(&page, || std::mem::forget(ring.clone().into_producer().unwrap())));
        dog.kill_on_expiry(&a);
        page.await_word(0);
        let mut old = ring.clone().into_consumer().unwrap().into_async().unwrap();
        let mut b = [0u8; 1];
        let mut p = Pump::new(Box::pin(old.read(&mut b)));
        assert!(p.run(Duration::from_millis(200)).is_none(), "nothing was written");
        let claim = view.u64_at(OFF_CONSUMER);
        claim.store((claim.load(Ordering::SeqCst) & 0xffff_ffff) | (dead << 32), Ordering::SeqCst);
        page.word(0).store(0, Ordering::SeqCst);
        let mut c = spawn_child(|| park_child(&page, || std::mem::forget(ring.take_over_consumer().unwrap())));
        dog.kill_on_expiry(&c);
        page.await_word(0);
        let r = p.run(Duration::from_secs(1)).expect("the take-over not seen within a second");
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ConnectionAborted);
        a.kill();
        c.kill();
        a.wait();
        c.wait();
    }

    /// The ring poisoned by a bare store (no wake-up) while an async reader is parked on a
    /// live peer process: the helper's missed-wake-up check finds it, and the reader answers
    /// `InvalidData` within a second.
    #[test]
    fn a_parked_async_reader_sees_a_poisoning_made_without_a_wake_up() {
        let dog = watchdog("a_parked_async_reader_sees_a_poisoning_made_without_a_wake_up", Duration::from_secs(30));
        let (ring, view) = memfd_ring();
        let page = SharedPage::new();
        let mut a = spawn_child(|| park_child(&page, || std::mem::forget(ring.clone().into_producer().unwrap())));
        dog.kill_on_expiry(&a);
        page.await_word(0);
        let mut rx = ring.clone().into_consumer().unwrap().into_async().unwrap();
        let mut b = [0u8; 1];
        let mut p = Pump::new(Box::pin(rx.read(&mut b)));
        assert!(p.run(Duration::from_millis(200)).is_none(), "nothing was written");
        view.u32_at(OFF_POISONED).store(1, Ordering::SeqCst);
        let r = p.run(Duration::from_secs(1)).expect("the poisoning not seen within a second");
        assert_eq!(r.unwrap_err().kind(), ErrorKind::InvalidData);
        a.kill();
        a.wait();
    }

    /// A hostile store clears the parked reader's waiter word without a wake-up; the honest
    /// producer process then writes: the read completes within a second, and the peer's later
    /// death is still seen within a second.
    #[test]
    fn a_parked_async_reader_whose_waiter_word_is_cleared_still_gets_data_and_the_death() {
        let dog = watchdog(
            "a_parked_async_reader_whose_waiter_word_is_cleared_still_gets_data_and_the_death",
            Duration::from_secs(30),
        );
        let (ring, view) = memfd_ring();
        let page = SharedPage::new();
        let mut a = spawn_child(|| {
            let mut tx = ring.clone().into_producer().unwrap();
            page.ready_then_await_go();
            tx.write_all(b"z").unwrap();
            std::mem::forget(tx);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        dog.kill_on_expiry(&a);
        page.await_word(0);
        let mut rx = ring.clone().into_consumer().unwrap().into_async().unwrap();
        let mut b = [0u8; 1];
        {
            let mut p = Pump::new(Box::pin(rx.read(&mut b)));
            assert!(p.run(Duration::from_millis(150)).is_none(), "nothing was written");
            view.u32_at(OFF_DATA_WAITER).store(0, Ordering::SeqCst);
            assert!(p.run(Duration::from_millis(150)).is_none(), "nothing was written");
            view.u32_at(OFF_DATA_WAITER).store(0, Ordering::SeqCst);
            page.word(1).store(1, Ordering::SeqCst);
            let r = p.run(Duration::from_secs(1)).expect("the write not seen within a second");
            assert_eq!(r.unwrap(), 1);
        }
        assert_eq!(&b, b"z");
        {
            let mut p = Pump::new(Box::pin(rx.read(&mut b)));
            assert!(p.run(Duration::from_millis(150)).is_none(), "nothing more was written");
            a.kill();
            let r = p.run(Duration::from_secs(1)).expect("the death not seen within a second");
            assert_eq!(r.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        }
        a.wait();
    }

    /// A publish that never wakes (a peer that stores the data and the head but skips its
    /// wake-up, as a crashed-mid-publish or hostile producer would) while an async reader is
    /// parked on a live producer process, watched by its helper: the helper's missed-wake-up
    /// check (cursor moved, flag still raised, two checks in a row) wakes the task, and the
    /// read returns the byte within a second.
    #[test]
    #[allow(clippy::disallowed_methods)] // a second mapping of the memfd, to publish by hand
    fn a_parked_async_reader_gets_a_publish_that_never_woke_it() {
        let dog = watchdog("a_parked_async_reader_gets_a_publish_that_never_woke_it", Duration::from_secs(30));
        let (ring, view) = memfd_ring();
        let page = SharedPage::new();
        let mut a = spawn_child(|| park_child(&page, || std::mem::forget(ring.clone().into_producer().unwrap())));
        dog.kill_on_expiry(&a);
        page.await_word(0);
        let mut rx = ring.clone().into_consumer().unwrap().into_async().unwrap();
        let mut b = [0u8; 1];
        {
            let mut p = Pump::new(Box::pin(rx.read(&mut b)));
            assert!(p.run(Duration::from_millis(200)).is_none(), "nothing was written");
            // The producer's publish, by hand: the byte at position 0 of the data, then the head.
            let data = view.u64_at(OFF_DATA_OFFSET).load(Ordering::SeqCst) as usize;
            assert_eq!(view.u64_at(OFF_HEAD).load(Ordering::SeqCst), 0);
            let fd = ring.as_fd().unwrap();
            // SAFETY: a fresh shared mapping of the ring's memfd, of its header and first data
            // page, unmapped below; only the byte at `data` is written.
            unsafe {
                use std::os::fd::AsRawFd;
                let len = data + 4096;
                let m = libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    0,
                );
                assert_ne!(m, libc::MAP_FAILED);
                *(m as *mut u8).add(data) = b'q';
                libc::munmap(m, len);
            }
            view.u64_at(OFF_HEAD).store(1, Ordering::SeqCst);
            let r = p.run(Duration::from_secs(1)).expect("a publish without a wake-up not seen within a second");
            assert_eq!(r.unwrap(), 1);
        }
        assert_eq!(&b, b"q");
        a.kill();
        a.wait();
    }

    /// An end dropped while its park is registered with the helper (the future cancelled, the
    /// peer alive, so the helper never wakes it): the pidfd the registry shared is closed with
    /// it. In a forked child, to count its descriptors alone.
    #[test]
    fn an_end_dropped_while_parked_on_a_live_peer_leaves_no_pidfd() {
        in_loud_child("an_end_dropped_while_parked_on_a_live_peer_leaves_no_pidfd", || {
            let rings = [ring(), ring()];
            let page = SharedPage::new();
            let mut child = spawn_child(|| {
                park_child(&page, || rings.iter().for_each(|r| std::mem::forget(r.clone().into_producer().unwrap())))
            });
            page.await_word(0);
            let before = common::open_fds_but_peer_poll();
            for (framed, ring) in [false, true].into_iter().zip(&rings) {
                let rx = ring.clone().into_consumer().unwrap();
                if framed {
                    let mut rx = rx.into_framed().into_async().unwrap();
                    let mut p = Pump::new(Box::pin(async move { rx.recv().await.map(drop) }));
                    assert!(p.run(Duration::from_millis(150)).is_none(), "nothing was sent");
                } else {
                    let mut rx = rx.into_async().unwrap();
                    let mut p = Pump::new(Box::pin(async move {
                        let mut b = [0u8; 1];
                        rx.read(&mut b).await.map(drop)
                    }));
                    assert!(p.run(Duration::from_millis(150)).is_none(), "nothing was written");
                    assert!(common::open_fds_but_peer_poll().len() > before.len(), "no pidfd on the peer while parked");
                }
                await_descriptors_back(&before, &format!("framed {framed}"));
            }
            child.kill();
            child.wait();
            0
        });
    }

    /// A park cancelled while producer A lived; then A is killed and a third process C takes
    /// the producer over and writes. The consumer's next call (another runtime) follows the
    /// new holder: it reads C's bytes, and then sees C's death within a second.
    #[test]
    fn a_cancelled_park_then_a_take_over_of_the_peer_is_followed_by_the_next_call() {
        let dog = watchdog(
            "a_cancelled_park_then_a_take_over_of_the_peer_is_followed_by_the_next_call",
            Duration::from_secs(30),
        );
        let ring = ring();
        let page = SharedPage::new();
        let mut a = spawn_child(|| park_child(&page, || std::mem::forget(ring.clone().into_producer().unwrap())));
        dog.kill_on_expiry(&a);
        page.await_word(0);
        let mut rx = ring.clone().into_consumer().unwrap().into_async().unwrap();
        {
            let mut b = [0u8; 2];
            let mut p = Pump::new(Box::pin(rx.read(&mut b)));
            assert!(p.run(Duration::from_millis(150)).is_none(), "nothing was written");
        }
        a.kill();
        a.wait();
        page.word(0).store(0, Ordering::SeqCst);
        let mut c = spawn_child(|| take_over_and_write_hi(&ring, &page));
        dog.kill_on_expiry(&c);
        page.await_word(0);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut b = [0u8; 2];
        let got = rt.block_on(async { tokio::time::timeout(Duration::from_secs(1), rx.read_exact(&mut b)).await });
        got.expect("the new holder's bytes not read within a second").unwrap();
        assert_eq!(&b, b"hi");
        let mut p = Pump::new(Box::pin(rx.read(&mut b)));
        assert!(p.run(Duration::from_millis(150)).is_none(), "C wrote nothing more");
        c.kill();
        let r = p.run(Duration::from_secs(1)).expect("C's death not seen within a second");
        assert_eq!(r.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        c.wait();
    }

    /// Producer A killed while the async reader is parked, and a third process C takes the role
    /// over at once (docs::lifecycle, "Restart"): the reader answers `UnexpectedEof` for A's
    /// death at most (never a hang, nothing else), then reads what C wrote, parks again watching
    /// C, and sees C's death within a second.
    #[test]
    fn a_parked_async_reader_survives_a_restart_of_its_peer_and_sees_the_new_holders_death() {
        let dog = watchdog(
            "a_parked_async_reader_survives_a_restart_of_its_peer_and_sees_the_new_holders_death",
            Duration::from_secs(30),
        );
        let ring = ring();
        let page = SharedPage::new();
        let mut a = spawn_child(|| park_child(&page, || std::mem::forget(ring.clone().into_producer().unwrap())));
        dog.kill_on_expiry(&a);
        page.await_word(0);
        page.word(0).store(0, Ordering::SeqCst);
        let mut c = spawn_child(|| take_over_and_write_hi(&ring, &page));
        dog.kill_on_expiry(&c);
        let mut rx = ring.clone().into_consumer().unwrap().into_async().unwrap();
        let mut b = [0u8; 2];
        let mut eofs = 0;
        {
            let mut p = Pump::new(Box::pin(rx.read_exact(&mut b)));
            assert!(p.run(Duration::from_millis(150)).is_none(), "nothing was written");
            a.kill();
            match p.run(Duration::from_secs(1)).expect("neither A's death nor C's bytes within a second") {
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
                    eofs += 1;
                }
            }
        }
        a.wait();
        if eofs > 0 {
            page.await_word(0);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let got = rt.block_on(async { tokio::time::timeout(Duration::from_secs(1), rx.read_exact(&mut b)).await });
            got.expect("C's bytes not read within a second").unwrap();
        }
        assert_eq!(&b, b"hi");
        page.await_word(0);
        let mut p = Pump::new(Box::pin(rx.read(&mut b)));
        assert!(p.run(Duration::from_millis(200)).is_none(), "C wrote nothing more");
        assert!(p.woken() <= 3, "an idle end on the live new holder was woken {} times", p.woken());
        c.kill();
        let r = p.run(Duration::from_secs(1)).expect("C's death not seen within a second");
        assert_eq!(r.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        c.wait();
    }

    /// An async writer parked on a full memfd ring before any consumer claimed (nobody to
    /// watch): a process that receives the ring over a socket, claims the consumer and is then
    /// killed is followed and its death seen as `BrokenPipe` within a second.
    #[test]
    fn a_parked_async_writer_follows_a_consumer_that_claims_later_and_sees_its_death() {
        let dog = watchdog(
            "a_parked_async_writer_follows_a_consumer_that_claims_later_and_sees_its_death",
            Duration::from_secs(30),
        );
        let (ring, _view) = memfd_ring();
        let mut tx = ring.clone().into_producer().unwrap().into_framed();
        let big = tx.capacity() - 96;
        tx.send(&vec![1; big]).unwrap();
        let mut tx = tx.into_async().unwrap();
        let mut p = Pump::new(Box::pin(tx.send(&[2; 200])));
        assert!(p.run(Duration::from_millis(150)).is_none(), "the ring is full");
        let (s0, s1) = std::os::unix::net::UnixStream::pair().unwrap();
        let page = SharedPage::new();
        let mut c = spawn_child(|| {
            let ring = SharedRing::recv_from(&s1).unwrap();
            park_child(&page, || std::mem::forget(ring.into_consumer().unwrap()))
        });
        dog.kill_on_expiry(&c);
        drop(s1);
        ring.send_to(&s0).unwrap();
        page.await_word(0);
        assert!(p.run(Duration::from_millis(200)).is_none(), "the consumer reads nothing");
        c.kill();
        let r = p.run(Duration::from_secs(1)).expect("the consumer's death not seen within a second");
        assert_eq!(r.unwrap_err().kind(), ErrorKind::BrokenPipe);
        c.wait();
    }

    const HELPERS: &str = "mirror-ring-par";
    const PEER_POLL: &str = "mirror-ring-pid";

    /// Runs every pump for `limit`, none of which may finish.
    fn idle(pumps: &mut [Pump<'static, ()>], limit: Duration) {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            for p in pumps.iter_mut() {
                assert!(p.run(Duration::ZERO).is_none(), "nothing was written");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The peer-poll thread waits in `epoll_wait` on the pidfds of parked ends' peers
    /// (`docs::async_ends`, "Bounded sleeps"), so the helper need not look for a death every
    /// watch interval: while the peers live, the helper wakes once a safety interval (100 ms,
    /// about 10 times a second, against 40 when it watched every 25 ms), the peer-poll thread not
    /// at all, and no task. The death is then seen at once: every end within 250 ms of the kill
    /// (10x the watch interval the helpers kept before). In a child, so that no other test's
    /// parked ends share the threads.
    #[test]
    fn while_the_peer_lives_the_helper_wakes_once_a_safety_interval_and_the_peer_poll_thread_not_at_all() {
        in_loud_child(
            "while_the_peer_lives_the_helper_wakes_once_a_safety_interval_and_the_peer_poll_thread_not_at_all",
            || {
                const N: usize = 4;
                let rings: Vec<SharedRing> = (0..N).map(|_| ring()).collect();
                let page = SharedPage::new();
                let mut child = spawn_child(|| {
                    park_child(&page, || {
                        for r in &rings {
                            std::mem::forget(r.clone().into_producer().unwrap());
                        }
                    })
                });
                page.await_word(0);
                let mut pumps: Vec<Pump<'static, ()>> = rings
                    .iter()
                    .map(|r| {
                        let mut rx = r.clone().into_consumer().unwrap().into_async().unwrap();
                        Pump::new(Box::pin(async move {
                            let mut b = [0u8; 1];
                            rx.read(&mut b).await.map(drop)
                        }))
                    })
                    .collect();
                idle(&mut pumps, Duration::from_millis(300));
                assert!(common::peer_poll_fd().is_some(), "no peer-poll thread waiting in epoll_wait");
                let (helper0, poll0) = (common::sleeps_of(HELPERS), common::sleeps_of(PEER_POLL));
                let woken0: Vec<usize> = pumps.iter().map(|p| p.woken()).collect();
                idle(&mut pumps, Duration::from_secs(1));
                let (helper, poll) = (common::sleeps_of(HELPERS) - helper0, common::sleeps_of(PEER_POLL) - poll0);
                eprintln!("one idle second: the helper slept {helper} times, the peer-poll thread {poll}");
                assert!(helper <= 20, "the helper woke {helper} times in an idle second (10 expected)");
                assert!(poll <= 2, "the peer-poll thread woke {poll} times in an idle second (none expected)");
                let woken: Vec<usize> = pumps.iter().zip(&woken0).map(|(p, w0)| p.woken() - w0).collect();
                assert!(woken.iter().all(|&w| w == 0), "idle tasks were woken {woken:?} times in the idle second");
                child.kill();
                let killed = Instant::now();
                for (i, p) in pumps.iter_mut().enumerate() {
                    let left = Duration::from_millis(250).saturating_sub(killed.elapsed());
                    let r = p.run(left).unwrap_or_else(|| panic!("end {i}: the death not seen within 250 ms"));
                    assert_eq!(r.unwrap_err().kind(), ErrorKind::UnexpectedEof, "end {i}");
                }
                child.wait();
                0
            },
        );
    }

    /// When the peer-poll thread cannot start (the thread limit: `RLIMIT_NPROC` 0 as `nobody`,
    /// once a helper runs), the end parks as before: its helper watches the peer every watch
    /// interval (at least 20 wake-ups in a second, about 40 expected, against 10 at the safety
    /// interval). Once the limit is lifted, the next park starts the thread, which takes over
    /// the watch of the end that parked without it: with that second end gone, the helper
    /// wakes at most 20 times in a second again. The death is seen within a second. In a
    /// child: the threads of a forked process start anew.
    #[test]
    fn without_a_peer_poll_thread_the_helper_watches_every_watch_interval_until_one_starts() {
        in_loud_child("without_a_peer_poll_thread_the_helper_watches_every_watch_interval_until_one_starts", || {
            if !common::become_nobody() {
                return 2;
            }
            let (lonely, watched, later) = (ring(), ring(), ring());
            let page = SharedPage::new();
            let mut child = spawn_child(|| {
                park_child(&page, || {
                    std::mem::forget(watched.clone().into_producer().unwrap());
                    std::mem::forget(later.clone().into_producer().unwrap());
                })
            });
            page.await_word(0);
            let park = |r: &SharedRing| {
                let mut rx = r.clone().into_consumer().unwrap().into_async().unwrap();
                Pump::new(Box::pin(async move {
                    let mut b = [0u8; 1];
                    rx.read(&mut b).await.map(drop)
                }))
            };
            // A helper first: an end with no holder to watch starts no peer-poll thread.
            let mut first = park(&lonely);
            assert!(first.run(Duration::from_millis(50)).is_none());
            // (Dropped: its helper stays, with no entry watched every watch interval.)
            drop(first);
            let old = common::set_soft_limit(libc::RLIMIT_NPROC, 0).expect("setrlimit");
            let mut p = park(&watched);
            assert!(common::threads_named(PEER_POLL).is_empty(), "a peer-poll thread started at the thread limit");
            let helper0 = common::sleeps_of(HELPERS);
            assert!(p.run(Duration::from_secs(1)).is_none(), "nothing was written");
            let helper = common::sleeps_of(HELPERS) - helper0;
            common::set_soft_limit(libc::RLIMIT_NPROC, old as usize);
            assert!(helper >= 20, "the helper woke only {helper} times in a second: it does not watch the peer");
            // A second past the failed start: the next park starts the thread.
            let mut q = park(&later);
            assert!(q.run(Duration::from_millis(50)).is_none(), "nothing was written");
            assert!(!common::threads_named(PEER_POLL).is_empty(), "no peer-poll thread once the limit was lifted");
            drop(q);
            let helper0 = common::sleeps_of(HELPERS);
            assert!(p.run(Duration::from_secs(1)).is_none(), "nothing was written");
            let helper = common::sleeps_of(HELPERS) - helper0;
            assert!(
                helper <= 20,
                "the helper woke {helper} times in a second (10 expected): the end that parked without the \
                 peer-poll thread is still watched every watch interval"
            );
            child.kill();
            let r = p.run(Duration::from_secs(1)).expect("the death not seen within a second");
            assert_eq!(r.unwrap_err().kind(), ErrorKind::UnexpectedEof);
            child.wait();
            0
        });
    }

    #[allow(dead_code)]
    fn unused(_: &mut dyn Read, _: &mut dyn Write) {
        let _ = noop_waker;
    }
}
