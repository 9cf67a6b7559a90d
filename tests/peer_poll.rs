//! The peer-poll thread (`docs::async_ends`, "Bounded sleeps"): one thread per process waits in
//! `epoll_wait` on the pidfds of parked async ends' peers, arming each one-shot, and makes the
//! entry armed with a reported token due at once. From an adversarial review of it: many deaths
//! at once (more than one `epoll_wait` batch), re-arming the same pidfd many times, pidfd
//! numbers reused by a new end (one of these found reports keyed by the number: a stale
//! registration slowed a live end down), forked children of a process whose thread runs,
//! take-overs, exec, spinning, leaks, and the fallbacks (no descriptor for the epoll instance,
//! no thread, the epoll calls refused).

mod common;

#[cfg(feature = "tokio")]
mod peer_poll {
    use std::any::Any;
    use std::future::Future;
    use std::io::{ErrorKind, Write};
    use std::pin::Pin;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};
    use std::time::{Duration, Instant};

    use super::common::{self, in_child, spawn_child, watchdog, Child, Counting, SharedPage};
    use mirror_ring::{Backend, RingOptions, SharedRing, StatsHandle};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn ring() -> SharedRing {
        RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).shared().unwrap()
    }

    fn memfd_ring() -> SharedRing {
        RingOptions::new().capacity(4096).spin_budget(Duration::ZERO).backend(Backend::Memfd).shared().unwrap()
    }

    /// Polls `call` as an executor would (again each time its waker was woken) until it is
    /// ready or a limit passed (as `Pump` in tests/peer_watch.rs, over any output).
    struct Pump<'a, O> {
        call: Pin<Box<dyn Future<Output = O> + 'a>>,
        count: Arc<Counting>,
        polled: usize,
    }

    impl<'a, O> Pump<'a, O> {
        fn new(call: Pin<Box<dyn Future<Output = O> + 'a>>) -> Self {
            let mut p = Pump { call, count: Arc::new(Counting(0.into())), polled: 0 };
            let waker = Waker::from(p.count.clone());
            assert!(p.call.as_mut().poll(&mut Context::from_waker(&waker)).is_pending(), "nothing to do yet");
            p
        }

        fn woken(&self) -> usize {
            self.count.0.load(Ordering::SeqCst)
        }

        /// Runs until ready or `limit`; `None` at the limit.
        fn run(&mut self, limit: Duration) -> Option<O> {
            let until = Instant::now() + limit;
            loop {
                let now = self.woken();
                if now != self.polled {
                    self.polled = now;
                    let waker = Waker::from(self.count.clone());
                    if let Poll::Ready(r) = self.call.as_mut().poll(&mut Context::from_waker(&waker)) {
                        return Some(r);
                    }
                }
                if Instant::now() >= until {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// A parked call on an end it owns: when it ends it hands the end back (kept alive, its
    /// pidfd open), with what the call returned.
    type Parked = Pump<'static, (Box<dyn Any>, std::io::Result<()>)>;

    /// What kind of end parks (and the error a peer's death gives it).
    #[derive(Clone, Copy, Debug)]
    enum Kind {
        Reader,
        FramedReader,
        Writer,
        FramedWriter,
    }

    impl Kind {
        fn of(i: usize) -> Kind {
            [Kind::Reader, Kind::FramedReader, Kind::Writer, Kind::FramedWriter][i % 4]
        }

        fn reads(self) -> bool {
            matches!(self, Kind::Reader | Kind::FramedReader)
        }

        fn death(self) -> ErrorKind {
            if self.reads() {
                ErrorKind::UnexpectedEof
            } else {
                ErrorKind::BrokenPipe
            }
        }

        /// In the peer: claims the other role of `r` and keeps it.
        fn hold_peer_role(self, r: &SharedRing) {
            if self.reads() {
                std::mem::forget(r.clone().into_producer().unwrap());
            } else {
                std::mem::forget(r.clone().into_consumer().unwrap());
            }
        }

        /// Claims this kind's role of `r` and parks an async call on it (a writer fills the
        /// ring first).
        fn park(self, r: &SharedRing) -> (Parked, StatsHandle) {
            match self {
                Kind::Reader => {
                    let rx = r.clone().into_consumer().unwrap();
                    let h = rx.stats_handle();
                    let mut rx = rx.into_async().unwrap();
                    let p = Pump::new(Box::pin(async move {
                        let mut b = [0u8; 1];
                        let r = rx.read(&mut b).await.map(drop);
                        (Box::new(rx) as Box<dyn Any>, r)
                    }));
                    (p, h)
                }
                Kind::FramedReader => {
                    let rx = r.clone().into_consumer().unwrap().into_framed();
                    let h = rx.stats_handle();
                    let mut rx = rx.into_async().unwrap();
                    let p = Pump::new(Box::pin(async move {
                        let r = rx.recv().await.map(drop);
                        (Box::new(rx) as Box<dyn Any>, r)
                    }));
                    (p, h)
                }
                Kind::Writer => {
                    let mut tx = r.clone().into_producer().unwrap();
                    tx.write_all(&vec![1; tx.capacity()]).unwrap();
                    let h = tx.stats_handle();
                    let mut tx = tx.into_async().unwrap();
                    let p = Pump::new(Box::pin(async move {
                        let r = tx.write_all(b"x").await;
                        (Box::new(tx) as Box<dyn Any>, r)
                    }));
                    (p, h)
                }
                Kind::FramedWriter => {
                    let mut tx = r.clone().into_producer().unwrap().into_framed();
                    let big = tx.capacity() - 96;
                    tx.send(&vec![1; big]).unwrap();
                    let h = tx.stats_handle();
                    let mut tx = tx.into_async().unwrap();
                    let p = Pump::new(Box::pin(async move {
                        let r = tx.send(&[2; 200]).await.map(drop);
                        (Box::new(tx) as Box<dyn Any>, r)
                    }));
                    (p, h)
                }
            }
        }
    }

    /// In a forked child of the test: panic messages go straight to the standard error.
    fn loud_panics() {
        std::panic::set_hook(Box::new(|info| {
            let _ = writeln!(std::io::stderr(), "child: {info}");
        }));
    }

    /// A peer: runs `f`, says so in word 0 of `page`, then sleeps until killed.
    /// Runs `f` in a forked child whose panics reach the standard error, under a watchdog
    /// named `name` that kills it after `limit`; the child must exit with 0.
    fn in_loud_child(name: &str, limit: Duration, f: impl FnOnce() -> i32) {
        let _dog = watchdog(name, limit);
        let status = in_child(|| {
            loud_panics();
            f()
        });
        assert_eq!(status, 0, "{name}: the child's status");
    }

    fn park_child(page: &SharedPage, f: impl FnOnce()) -> i32 {
        f();
        page.word(0).store(1, Ordering::SeqCst);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// A peer process that holds, for each `(kind, ring)`, the role opposite `kind`'s.
    fn peer_of(page: &SharedPage, ends: &[(Kind, &SharedRing)]) -> Child {
        page.word(0).store(0, Ordering::SeqCst);
        let c = spawn_child(|| {
            park_child(page, || {
                for (k, r) in ends {
                    k.hold_peer_role(r);
                }
            })
        });
        page.await_word(0);
        c
    }

    const HELPERS: &str = "mirror-ring-par";
    const PEER_POLL: &str = "mirror-ring-pid";

    /// The CPU time those threads used (utime + stime of their `stat`), in clock ticks.
    fn cpu_ticks_of(prefix: &str) -> u64 {
        common::threads_named(prefix)
            .iter()
            .filter_map(|t| std::fs::read_to_string(t.join("stat")).ok())
            .map(|s| {
                let rest: Vec<&str> = s[s.rfind(')').unwrap() + 2..].split(' ').collect();
                rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap()
            })
            .sum()
    }

    /// The descriptors of this process whose link reads `what` (`anon_inode:[pidfd]`, ...).
    fn fds_linking_to(what: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == what))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn pidfds() -> Vec<String> {
        fds_linking_to("anon_inode:[pidfd]")
    }

    fn epolls() -> Vec<String> {
        fds_linking_to("anon_inode:[eventpoll]")
    }

    /// The epoll descriptors of this process that are not in `before` (a forked test child
    /// inherits the test process's: other tests' peer-poll threads, tokio runtimes).
    fn new_epolls(before: &[String]) -> Vec<String> {
        epolls().into_iter().filter(|e| !before.contains(e)).collect()
    }

    /// Polls `call` once and, if it is pending, as `Pump` does, for at most `limit`.
    fn complete<'a, O>(mut call: Pin<Box<dyn Future<Output = O> + 'a>>, limit: Duration) -> Option<O> {
        let count = Arc::new(Counting(0.into()));
        let waker = Waker::from(count.clone());
        match call.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => Pump { call, count, polled: 0 }.run(limit),
        }
    }

    fn thread_count() -> usize {
        std::fs::read_dir("/proc/self/task").unwrap().count()
    }

    /// Waits (at most `limit`) until `f` holds.
    fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
        let until = Instant::now() + limit;
        loop {
            if f() {
                return true;
            }
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Runs every pump for `limit`, none of which may finish.
    fn idle<O>(pumps: &mut [Pump<'_, O>], limit: Duration) {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            for (i, p) in pumps.iter_mut().enumerate() {
                assert!(p.run(Duration::ZERO).is_none(), "end {i} finished while its peer lived");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Runs every pump until all have finished, failing if that takes longer than `limit`
    /// from `since`; their outputs.
    fn finish_all<O>(pumps: &mut [Pump<'_, O>], since: Instant, limit: Duration) -> Vec<O> {
        let mut done: Vec<Option<O>> = pumps.iter().map(|_| None).collect();
        while done.iter().any(Option::is_none) {
            let late: Vec<usize> = (0..done.len()).filter(|&i| done[i].is_none()).collect();
            assert!(since.elapsed() < limit, "not finished {limit:?} after the deaths: ends {late:?}");
            for i in late {
                if let Some(r) = pumps[i].run(Duration::ZERO) {
                    done[i] = Some(r);
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        done.into_iter().map(Option::unwrap).collect()
    }

    /// How many times the helper threads slept while `pumps` idled for a second.
    fn helper_sleeps_over_an_idle_second<O>(pumps: &mut [Pump<'_, O>]) -> u64 {
        let h0 = common::sleeps_of(HELPERS);
        idle(pumps, Duration::from_secs(1));
        common::sleeps_of(HELPERS) - h0
    }

    /// Kills `peer`; the one end parked in `p` must see the death within a second as `want`,
    /// counted once in its `stats`, with no lost wake-up. Then reaps the peer.
    fn kill_and_see(peer: &mut Child, p: &mut [Parked; 1], stats: &StatsHandle, want: ErrorKind) {
        peer.kill();
        let killed = Instant::now();
        let (_end, r) = finish_all(p, killed, Duration::from_secs(1)).pop().unwrap();
        assert_eq!(r.unwrap_err().kind(), want);
        let s = stats.get();
        assert_eq!((s.peer_died, s.lost_wakeups), (1, 0), "{s:?}");
        peer.wait();
    }

    /// After a fallback, once a second has passed: an end of `kind` parked on `r` starts the
    /// peer-poll thread (one epoll descriptor beside `epolls0`; `also` checks more), is left
    /// asleep at the safety interval, and sees the death of `peer`, killed here, within a
    /// second.
    fn then_the_thread_watches_the_next_park(
        kind: Kind,
        r: &SharedRing,
        peer: &mut Child,
        epolls0: &[String],
        also: impl FnOnce(),
    ) {
        std::thread::sleep(Duration::from_millis(1100));
        let (p, stats) = kind.park(r);
        let mut p = [p];
        idle(&mut p, Duration::from_millis(200));
        let poll_fd = common::peer_poll_fd().expect("no peer-poll thread after the fallback");
        assert_eq!(new_epolls(epolls0), vec![poll_fd], "epoll descriptors");
        also();
        let helper = helper_sleeps_over_an_idle_second(&mut p);
        assert!(helper <= 20, "the helper woke {helper} times in an idle second with the thread");
        kill_and_see(peer, &mut p, &stats, kind.death());
    }

    /// One idle second, then what the peer-poll thread did in it: (sleeps, CPU ticks).
    fn peer_poll_over_an_idle_second() -> (u64, u64) {
        let (s0, c0) = (common::sleeps_of(PEER_POLL), cpu_ticks_of(PEER_POLL));
        std::thread::sleep(Duration::from_secs(1));
        (common::sleeps_of(PEER_POLL) - s0, cpu_ticks_of(PEER_POLL) - c0)
    }

    /// Four peer processes (one of them reached through memfd rings sent over a socket) hold
    /// the other roles of 166 parked async ends: readers, framed readers, writers and framed
    /// writers, so 166 pidfds, more than two helpers' worth and more than two `epoll_wait`
    /// batches of 64. All peers are killed at once: every end sees its peer's death within a
    /// second, with `peer_died == 1` and `lost_wakeups == 0`; then, the dead peers' pidfds
    /// still open and readable in the ends, the peer-poll thread neither wakes nor burns CPU
    /// over an idle second; and once the ends are dropped no pidfd is left, the process has
    /// exactly one epoll descriptor, and its threads are the baseline plus the helpers plus
    /// the one peer-poll thread.
    #[test]
    fn many_ends_on_many_peers_dying_at_once_all_see_it_and_nothing_spins_or_leaks() {
        in_loud_child("many_ends_on_many_peers_dying_at_once", Duration::from_secs(60), || {
            let baseline_threads = thread_count();
            let epolls0 = epolls();
            const PER_PEER: usize = 52;
            const PEERS: usize = 3;
            let rings: Vec<SharedRing> = (0..PEERS * PER_PEER).map(|_| ring()).collect();
            let page = SharedPage::new();
            let mut peers: Vec<Child> = rings
                .chunks(PER_PEER)
                .map(|chunk| {
                    let ends: Vec<(Kind, &SharedRing)> =
                        chunk.iter().enumerate().map(|(i, r)| (Kind::of(i), r)).collect();
                    peer_of(&page, &ends)
                })
                .collect();
            // The fourth peer gets its memfd rings over a socket, and holds their consumers.
            const SENT: usize = 10;
            let sent: Vec<SharedRing> = (0..SENT).map(|_| memfd_ring()).collect();
            let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            page.word(0).store(0, Ordering::SeqCst);
            peers.push(spawn_child(|| {
                let got: Vec<SharedRing> = (0..SENT).map(|_| SharedRing::recv_from(&b).unwrap()).collect();
                park_child(&page, || got.iter().for_each(|r| std::mem::forget(r.clone().into_consumer().unwrap())))
            }));
            for r in &sent {
                r.send_to(&a).unwrap();
            }
            drop((a, b));
            page.await_word(0);
            let before = common::open_fds();
            let mut kinds: Vec<Kind> = (0..PEERS * PER_PEER).map(Kind::of).collect();
            kinds.extend((0..SENT).map(|_| Kind::Writer));
            let (mut pumps, stats): (Vec<Parked>, Vec<StatsHandle>) =
                kinds.iter().zip(rings.iter().chain(&sent)).map(|(k, r)| k.park(r)).unzip();
            idle(&mut pumps, Duration::from_millis(300));
            assert_eq!(pidfds().len(), kinds.len(), "one pidfd per parked end");
            assert!(common::peer_poll_fd().is_some(), "no peer-poll thread");
            for p in &peers {
                p.kill();
            }
            let killed = Instant::now();
            let results = finish_all(&mut pumps, killed, Duration::from_secs(1));
            let mut ends = Vec::new();
            for (i, ((end, r), k)) in results.into_iter().zip(&kinds).enumerate() {
                assert_eq!(r.as_ref().map_err(|e| e.kind()).err(), Some(k.death()), "end {i} ({k:?}): {r:?}");
                let s = stats[i].get();
                assert_eq!((s.peer_died, s.lost_wakeups), (1, 0), "end {i} ({k:?}): {s:?}");
                ends.push(end);
            }
            for p in &mut peers {
                p.wait();
            }
            // The dead peers' pidfds are still open (in the ends) and readable.
            assert_eq!(pidfds().len(), kinds.len());
            let (sleeps, ticks) = peer_poll_over_an_idle_second();
            assert!(sleeps <= 2, "the peer-poll thread woke {sleeps} times in an idle second after the deaths");
            assert!(ticks <= 2, "the peer-poll thread used {ticks} ticks of CPU in an idle second after the deaths");
            drop(pumps);
            drop(ends);
            assert!(
                eventually(Duration::from_secs(1), || common::open_fds_but_peer_poll() == before),
                "descriptors left: {before:?} -> {:?}",
                common::open_fds_but_peer_poll()
            );
            assert!(pidfds().is_empty(), "pidfds left: {:?}", pidfds());
            let poll_fd = common::peer_poll_fd().expect("no peer-poll thread");
            assert_eq!(new_epolls(&epolls0), vec![poll_fd], "epoll descriptors");
            assert_eq!(common::threads_named(PEER_POLL).len(), 1);
            let helpers = common::threads_named(HELPERS).len();
            assert!(helpers >= 2, "{helpers} helpers for {} ends", kinds.len());
            assert_eq!(thread_count(), baseline_threads + helpers + 1, "threads");
            0
        });
    }

    /// An end that parks, is woken by a byte, and parks again 300 times on the same live peer
    /// (the same pidfd re-armed each time: `EPOLL_CTL_ADD` answers `EEXIST`, then
    /// `EPOLL_CTL_MOD`): the peer-poll thread is not woken by the re-arming, and the peer's
    /// death after all that is seen within a second, counted once, with no lost wake-up.
    #[test]
    fn an_end_that_reparks_many_times_still_sees_the_death() {
        in_loud_child("an_end_that_reparks_many_times_still_sees_the_death", Duration::from_secs(60), || {
            let r = ring();
            let page = SharedPage::new();
            let mut a = spawn_child(|| {
                let mut tx = r.clone().into_producer().unwrap();
                page.word(0).store(1, Ordering::SeqCst);
                let mut done = 0u64;
                loop {
                    let want = page.word(1).load(Ordering::SeqCst);
                    while done < want {
                        tx.write_all(&[done as u8]).unwrap();
                        done += 1;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            });
            page.await_word(0);
            let rx = r.clone().into_consumer().unwrap();
            let stats = rx.stats_handle();
            let mut rx = rx.into_async().unwrap();
            let mut b = [0u8; 1];
            const ROUNDS: u64 = 300;
            let mut pidfd = None;
            let mut poll0 = None;
            for i in 0..ROUNDS {
                let mut p = Pump::new(Box::pin(rx.read(&mut b)));
                if i == 0 {
                    pidfd = Some(pidfds());
                    poll0 = Some(common::sleeps_of(PEER_POLL));
                } else {
                    assert_eq!(Some(pidfds()), pidfd, "round {i}: another pidfd");
                }
                page.word(1).store(i + 1, Ordering::SeqCst);
                let got = p.run(Duration::from_secs(1)).expect("the byte not read within a second");
                assert_eq!(got.unwrap(), 1);
                drop(p);
                assert_eq!(b[0], i as u8);
            }
            let poll = common::sleeps_of(PEER_POLL) - poll0.unwrap();
            assert!(poll <= 3, "the peer-poll thread woke {poll} times while a live peer's pidfd was re-armed");
            {
                let mut p = Pump::new(Box::pin(rx.read(&mut b)));
                assert!(p.run(Duration::from_millis(300)).is_none(), "nothing more was written");
                a.kill();
                let r = p.run(Duration::from_secs(1)).expect("the death not seen within a second");
                assert_eq!(r.unwrap_err().kind(), ErrorKind::UnexpectedEof);
            }
            let s = stats.get();
            assert_eq!((s.peer_died, s.lost_wakeups), (1, 0), "{s:?}");
            assert!(s.parks >= ROUNDS, "{s:?}");
            a.wait();
            0
        });
    }

    /// The registrations of the epoll instance at descriptor `ep` whose target descriptor
    /// number is `fd`, as `/proc/self/fdinfo` lists them (one line each: `tfd`, events, data,
    /// the target file's inode).
    fn epoll_items_on(ep: &str, fd: &str) -> Vec<String> {
        std::fs::read_to_string(format!("/proc/self/fdinfo/{ep}"))
            .unwrap()
            .lines()
            .filter(|l| l.strip_prefix("tfd:").and_then(|t| t.split_whitespace().next()) == Some(fd))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }

    /// The pidfd of the end parked in this process now (the only one).
    fn the_pidfd() -> String {
        let v = pidfds();
        assert_eq!(v.len(), 1, "pidfds: {v:?}");
        v[0].clone()
    }

    /// A parked end dropped (its pidfd closed) and a new end, watching another peer, whose
    /// pidfd gets the same descriptor number: the old peer's later death does not touch the
    /// new end, which is left asleep at the safety interval (its helper wakes about 10 times
    /// a second, not 40), and the new peer's death is seen within a second.
    #[test]
    fn a_new_end_whose_pidfd_reuses_a_dropped_ends_number_is_watched() {
        in_loud_child("a_new_end_whose_pidfd_reuses_a_dropped_ends_number_is_watched", Duration::from_secs(60), || {
            let (r1, r2) = (ring(), ring());
            let page = SharedPage::new();
            // Both peers forked before any pidfd is open: neither holds a copy of one.
            let mut a = peer_of(&page, &[(Kind::Reader, &r1)]);
            let mut b = peer_of(&page, &[(Kind::Reader, &r2)]);
            let (mut p1, _) = Kind::Reader.park(&r1);
            idle(std::slice::from_mut(&mut p1), Duration::from_millis(150));
            let n = the_pidfd();
            drop(p1);
            assert!(eventually(Duration::from_secs(1), || pidfds().is_empty()), "the first end's pidfd stayed");
            let (p2, stats) = Kind::Reader.park(&r2);
            let mut p2 = [p2];
            assert_eq!(the_pidfd(), n, "the new end's pidfd did not reuse the number (test set-up)");
            idle(&mut p2, Duration::from_millis(200));
            a.kill();
            a.wait();
            idle(&mut p2, Duration::from_millis(200));
            let helper = helper_sleeps_over_an_idle_second(&mut p2);
            assert!(helper <= 20, "the helper woke {helper} times in an idle second (10 expected)");
            kill_and_see(&mut b, &mut p2, &stats, ErrorKind::UnexpectedEof);
            0
        });
    }

    /// As above, but the second peer is forked while the first end is parked, so it holds a
    /// copy of the first end's pidfd: dropping the end closes the descriptor here but not the
    /// pidfd's file, whose epoll registration (armed, keyed by the old descriptor number)
    /// stays. A new end whose pidfd gets that number, parked on the second peer, must still be
    /// left asleep at the safety interval when the first peer dies, and see the second peer's
    /// death within a second.
    #[test]
    fn a_stale_registration_of_a_reused_pidfd_number_does_not_slow_the_new_end() {
        in_loud_child(
            "a_stale_registration_of_a_reused_pidfd_number_does_not_slow_the_new_end",
            Duration::from_secs(60),
            || {
                let (r1, r2) = (ring(), ring());
                let page = SharedPage::new();
                let mut a = peer_of(&page, &[(Kind::Reader, &r1)]);
                let (mut p1, _) = Kind::Reader.park(&r1);
                idle(std::slice::from_mut(&mut p1), Duration::from_millis(150));
                let n = the_pidfd();
                // B inherits every descriptor of this process, the first end's pidfd too.
                let mut b = peer_of(&page, &[(Kind::Reader, &r2)]);
                drop(p1);
                assert!(eventually(Duration::from_secs(1), || pidfds().is_empty()), "the first end's pidfd stayed");
                let (p2, stats) = Kind::Reader.park(&r2);
                let mut p2 = [p2];
                assert_eq!(the_pidfd(), n, "the new end's pidfd did not reuse the number (test set-up)");
                idle(&mut p2, Duration::from_millis(200));
                // Two registrations under number n: A's pidfd (its file alive in B), and the new end's.
                let ep = common::peer_poll_fd().expect("no peer-poll thread");
                let items = epoll_items_on(&ep, &n);
                eprintln!("epoll registrations under descriptor {n}: {items:?}");
                assert_eq!(items.len(), 2, "test set-up: {items:?}");
                let before = helper_sleeps_over_an_idle_second(&mut p2);
                // A's death: its pidfd's file (kept by B) is still registered under number n.
                a.kill();
                a.wait();
                idle(&mut p2, Duration::from_millis(200));
                let after = helper_sleeps_over_an_idle_second(&mut p2);
                eprintln!("helper wake-ups in an idle second: {before} before A's death, {after} after");
                // The death must be seen either way (checked before the assertion on the wake-ups).
                kill_and_see(&mut b, &mut p2, &stats, ErrorKind::UnexpectedEof);
                assert!(before <= 20, "the helper woke {before} times in an idle second before A's death");
                // A's death, reported through its stale registration under number n, must not touch
                // the new end's entry (found by the review: reports were keyed by the number; each
                // arming now has a token of its own).
                assert!(after <= 20, "the helper woke {after} times in an idle second after A's (stale) death report");
                0
            },
        );
    }

    /// A process whose peer-poll thread runs (an end parked on a peer) forks a child: the child
    /// inherits the epoll descriptor but not the thread. An end parked in the child starts the
    /// child's own thread (a second epoll descriptor there, the inherited one left alone), is
    /// left asleep at the safety interval, and sees its peer's death within a second; the
    /// parent's end, parked all along, still sees its own peer's death within a second.
    #[test]
    fn ends_in_a_forked_child_of_a_process_with_the_thread_see_deaths() {
        in_loud_child(
            "ends_in_a_forked_child_of_a_process_with_the_thread_see_deaths",
            Duration::from_secs(60),
            || {
                let epolls0 = epolls();
                let r1 = ring();
                let page = SharedPage::new();
                let mut a = peer_of(&page, &[(Kind::Writer, &r1)]);
                let (p1, stats1) = Kind::Writer.park(&r1);
                let mut p1 = [p1];
                idle(&mut p1, Duration::from_millis(150));
                let inherited = common::peer_poll_fd().expect("no peer-poll thread in the parent");
                assert_eq!(new_epolls(&epolls0), vec![inherited.clone()]);
                let grandchild = in_child(|| {
                    loud_panics();
                    assert!(
                        common::threads_named(PEER_POLL).is_empty(),
                        "a forked child has the parent's peer-poll thread"
                    );
                    let epolls1 = epolls();
                    assert_eq!(new_epolls(&epolls0), vec![inherited.clone()], "the inherited epoll descriptor");
                    let r2 = memfd_ring();
                    let page2 = SharedPage::new();
                    let mut c = peer_of(&page2, &[(Kind::FramedReader, &r2)]);
                    let (p2, stats2) = Kind::FramedReader.park(&r2);
                    let mut p2 = [p2];
                    idle(&mut p2, Duration::from_millis(200));
                    let own = common::peer_poll_fd().expect("no peer-poll thread started in the forked child");
                    assert_ne!(own, inherited);
                    assert_eq!(common::threads_named(PEER_POLL).len(), 1);
                    assert_eq!(new_epolls(&epolls1), vec![own.clone()], "the child's own epoll descriptor");
                    let helper = helper_sleeps_over_an_idle_second(&mut p2);
                    assert!(helper <= 20, "the child's helper woke {helper} times in an idle second");
                    kill_and_see(&mut c, &mut p2, &stats2, ErrorKind::UnexpectedEof);
                    let (sleeps, ticks) = peer_poll_over_an_idle_second();
                    assert!(sleeps <= 2 && ticks <= 2, "the child's peer-poll thread: {sleeps} sleeps, {ticks} ticks");
                    0
                });
                assert_eq!(grandchild, 0, "the forked child");
                idle(&mut p1, Duration::from_millis(200));
                kill_and_see(&mut a, &mut p1, &stats1, ErrorKind::BrokenPipe);
                0
            },
        );
    }

    /// The peer dies while an async reader is parked (seen), a third process takes the role
    /// over and writes; the reader reads, parks again on the new holder, is left asleep at the
    /// safety interval (the new holder's pidfd armed), and sees the new holder's death within
    /// a second. Each death is counted once, no wake-up lost.
    #[test]
    fn the_new_holder_after_a_take_over_is_watched_by_the_thread() {
        in_loud_child("the_new_holder_after_a_take_over_is_watched_by_the_thread", Duration::from_secs(60), || {
            let r = ring();
            let page = SharedPage::new();
            let mut a = peer_of(&page, &[(Kind::Reader, &r)]);
            let rx = r.clone().into_consumer().unwrap();
            let stats = rx.stats_handle();
            let mut rx = rx.into_async().unwrap();
            let mut b = [0u8; 2];
            {
                let mut p = Pump::new(Box::pin(rx.read(&mut b)));
                assert!(p.run(Duration::from_millis(200)).is_none());
                a.kill();
                let r = p.run(Duration::from_secs(1)).expect("A's death not seen within a second");
                assert_eq!(r.unwrap_err().kind(), ErrorKind::UnexpectedEof);
            }
            a.wait();
            assert_eq!(stats.get().peer_died, 1, "{:?}", stats.get());
            page.word(0).store(0, Ordering::SeqCst);
            let mut c = spawn_child(|| {
                let mut tx = r.take_over_producer().expect("take the dead producer's role over");
                tx.write_all(b"hi").unwrap();
                park_child(&page, || std::mem::forget(tx))
            });
            page.await_word(0);
            complete(Box::pin(async { rx.read_exact(&mut b).await.map(drop) }), Duration::from_secs(1))
                .expect("C's bytes not read within a second")
                .unwrap();
            assert_eq!(&b, b"hi");
            {
                let mut p = Pump::new(Box::pin(rx.read(&mut b)));
                assert!(p.run(Duration::from_millis(200)).is_none(), "C wrote nothing more");
                let (h0, w0) = (common::sleeps_of(HELPERS), p.woken());
                assert!(p.run(Duration::from_secs(1)).is_none(), "C wrote nothing more");
                let helper = common::sleeps_of(HELPERS) - h0;
                assert!(helper <= 20, "the helper woke {helper} times in an idle second on the new holder");
                assert_eq!(p.woken(), w0, "the idle task was woken");
                c.kill();
                let r = p.run(Duration::from_secs(1)).expect("C's death not seen within a second");
                assert_eq!(r.unwrap_err().kind(), ErrorKind::UnexpectedEof);
            }
            let s = stats.get();
            assert_eq!((s.peer_died, s.lost_wakeups), (2, 0), "{s:?}");
            c.wait();
            0
        });
    }

    /// A consumer process that got a memfd ring over a socket replaces its image with `exec`
    /// (its mapping gone, its pid and claim the same), then exits: the parked async writer is
    /// not woken before the exit and sees it as `BrokenPipe` within a second of it.
    #[test]
    fn a_writer_on_a_memfd_ring_sees_a_peer_that_execs_then_exits() {
        let dog = watchdog("a_writer_on_a_memfd_ring_sees_a_peer_that_execs_then_exits", Duration::from_secs(60));
        let r = memfd_ring();
        let (s0, s1) = std::os::unix::net::UnixStream::pair().unwrap();
        let page = SharedPage::new();
        let mut c = spawn_child(|| {
            let r = SharedRing::recv_from(&s1).unwrap();
            std::mem::forget(r.into_consumer().unwrap());
            common::exec_a_sleep_when_told(&page, "0.4")
        });
        dog.kill_on_expiry(&c);
        drop(s1);
        r.send_to(&s0).unwrap();
        page.await_word(0);
        let (p, stats) = Kind::Writer.park(&r);
        let mut p = [p];
        idle(&mut p, Duration::from_millis(200));
        page.word(1).store(1, Ordering::SeqCst);
        // Exec'd, alive for 0.4 s: not dead yet.
        idle(&mut p, Duration::from_millis(250));
        assert!(c.try_wait().is_none(), "the exec'd shell ended early");
        let (_end, res) = finish_all(&mut p, Instant::now(), Duration::from_secs(2)).pop().unwrap();
        let seen = Instant::now();
        assert_eq!(res.unwrap_err().kind(), ErrorKind::BrokenPipe);
        // The child exited at most a second before the writer saw it.
        let mut exited = None;
        while exited.is_none() {
            exited = c.try_wait();
            assert!(seen.elapsed() < Duration::from_secs(5), "the writer saw a death before the exit");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(exited, Some(0), "the exec'd shell ran");
        let s = stats.get();
        assert_eq!((s.peer_died, s.lost_wakeups), (1, 0), "{s:?}");
    }

    /// Many parks and cancellations on live peers (500 parks cancelled, 20 ends dropped and
    /// made anew, so pidfds closed and reopened under the same numbers) do not wake the
    /// peer-poll thread, and after the peer dies and its death is seen it stays asleep: near
    /// zero wake-ups and CPU over an idle second.
    #[test]
    fn parks_and_cancellations_do_not_make_the_peer_poll_thread_spin() {
        in_loud_child("parks_and_cancellations_do_not_make_the_peer_poll_thread_spin", Duration::from_secs(60), || {
            let rings: Vec<SharedRing> = (0..4).map(|_| ring()).collect();
            // A ring per end made anew (a role once dropped is closed for good).
            let fresh: Vec<SharedRing> = (0..21).map(|_| ring()).collect();
            let page = SharedPage::new();
            let ends: Vec<(Kind, &SharedRing)> = rings.iter().enumerate().map(|(i, r)| (Kind::of(i), r)).collect();
            let all: Vec<(Kind, &SharedRing)> =
                ends.iter().copied().chain(fresh.iter().map(|r| (Kind::Reader, r))).collect();
            let mut a = peer_of(&page, &all);
            // The thread starts with the first park.
            drop(Kind::Reader.park(&fresh[20]));
            assert!(
                eventually(Duration::from_secs(2), || !common::threads_named(PEER_POLL).is_empty()),
                "no peer-poll thread"
            );
            assert!(common::peer_poll_fd().is_some(), "the peer-poll thread is not in epoll_wait");
            let (s0, c0) = (common::sleeps_of(PEER_POLL), cpu_ticks_of(PEER_POLL));
            for (round, r) in fresh[..20].iter().enumerate() {
                let rx = r.clone().into_consumer().unwrap();
                let mut rx = rx.into_async().unwrap();
                let mut b = [0u8; 1];
                for _ in 0..25 {
                    let p = Pump::new(Box::pin(rx.read(&mut b)));
                    drop(p);
                }
                drop(rx);
                assert!(
                    eventually(Duration::from_secs(1), || pidfds().is_empty()),
                    "round {round}: pidfds {:?}",
                    pidfds()
                );
            }
            let (sleeps, ticks) = (common::sleeps_of(PEER_POLL) - s0, cpu_ticks_of(PEER_POLL) - c0);
            assert!(sleeps <= 3, "the peer-poll thread woke {sleeps} times over 500 parks on a live peer");
            assert!(ticks <= 5, "the peer-poll thread used {ticks} ticks over 500 parks on a live peer");
            let (mut pumps, stats): (Vec<Parked>, Vec<StatsHandle>) = ends.iter().map(|(k, r)| k.park(r)).unzip();
            idle(&mut pumps, Duration::from_millis(200));
            a.kill();
            let killed = Instant::now();
            let results = finish_all(&mut pumps, killed, Duration::from_secs(1));
            let mut kept = Vec::new();
            for (i, ((end, r), (k, _))) in results.into_iter().zip(&ends).enumerate() {
                assert_eq!(r.as_ref().map_err(|e| e.kind()).err(), Some(k.death()), "end {i}: {r:?}");
                let s = stats[i].get();
                assert_eq!((s.peer_died, s.lost_wakeups), (1, 0), "end {i}: {s:?}");
                kept.push(end);
            }
            a.wait();
            let (sleeps, ticks) = peer_poll_over_an_idle_second();
            assert!(sleeps <= 2, "the peer-poll thread woke {sleeps} times in an idle second after the death");
            assert!(ticks <= 2, "the peer-poll thread used {ticks} ticks in an idle second after the death");
            drop(kept);
            0
        });
    }

    /// No descriptor left for the epoll instance (EMFILE) when the first end parks on a peer
    /// it watches through a pidfd (opened earlier, by a `try_read`): no thread starts and no
    /// epoll descriptor is left, the helper watches the peer every watch interval, and the
    /// death is seen within a second. Once descriptors are back (and a second has passed), the
    /// next park starts the thread, is left asleep at the safety interval, and sees its peer's
    /// death within a second.
    #[test]
    fn without_a_descriptor_for_epoll_the_helper_watches_and_the_thread_comes_later() {
        in_loud_child(
            "without_a_descriptor_for_epoll_the_helper_watches_and_the_thread_comes_later",
            Duration::from_secs(60),
            || {
                let epolls0 = epolls();
                let (r1, r2) = (ring(), ring());
                let page = SharedPage::new();
                let mut a = peer_of(&page, &[(Kind::Reader, &r1)]);
                let mut b = peer_of(&page, &[(Kind::Reader, &r2)]);
                let mut rx = r1.clone().into_consumer().unwrap();
                let stats = rx.stats_handle();
                let mut buf = [0u8; 1];
                // The end's own check opens the pidfd, with descriptors to spare.
                assert_eq!(rx.try_read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
                assert_eq!(pidfds().len(), 1, "no pidfd opened by the first check");
                let mut rx = rx.into_async().unwrap();
                let old = common::set_soft_limit(libc::RLIMIT_NOFILE, 64).expect("setrlimit");
                let mut fill = Vec::new();
                while let Ok(f) = std::fs::File::open("/dev/null") {
                    fill.push(f);
                }
                {
                    // Registered with no descriptor free: `epoll_create` fails (EMFILE).
                    let mut p = Pump::new(Box::pin(rx.read(&mut buf)));
                    drop(fill);
                    common::set_soft_limit(libc::RLIMIT_NOFILE, old as usize);
                    std::thread::sleep(Duration::from_millis(50));
                    assert!(
                        common::threads_named(PEER_POLL).is_empty(),
                        "a peer-poll thread started without a descriptor"
                    );
                    assert!(new_epolls(&epolls0).is_empty(), "epoll descriptors: {:?}", new_epolls(&epolls0));
                    let h0 = common::sleeps_of(HELPERS);
                    assert!(p.run(Duration::from_secs(1)).is_none(), "nothing was written");
                    let helper = common::sleeps_of(HELPERS) - h0;
                    assert!(
                        helper >= 20,
                        "the helper woke only {helper} times in a second (40 expected): it does not watch the peer"
                    );
                    assert_eq!(p.woken(), 0, "the task was woken while its peer lived");
                    a.kill();
                    let r = p.run(Duration::from_secs(1)).expect("the death not seen within a second");
                    assert_eq!(r.unwrap_err().kind(), ErrorKind::UnexpectedEof);
                }
                let s = stats.get();
                assert_eq!((s.peer_died, s.lost_wakeups), (1, 0), "{s:?}");
                a.wait();
                then_the_thread_watches_the_next_park(Kind::Reader, &r2, &mut b, &epolls0, || {});
                0
            },
        );
    }

    /// At the thread limit (`RLIMIT_NPROC` 0 as `nobody`, once a helper runs) the peer-poll
    /// thread cannot start: its epoll descriptor is not kept, the helper watches the peer every
    /// watch interval, and the death is seen within a second. With the limit back (and a
    /// second passed), the next park starts the thread (one epoll descriptor, one more thread)
    /// and sees its peer's death within a second.
    #[test]
    fn at_the_thread_limit_the_helper_watches_and_the_thread_comes_later() {
        in_loud_child(
            "at_the_thread_limit_the_helper_watches_and_the_thread_comes_later",
            Duration::from_secs(60),
            || {
                if !common::become_nobody() {
                    return 2;
                }
                // Dumpable again, so that this process can read its threads' `syscall` files.
                // SAFETY: prctl with integer arguments.
                unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
                let epolls0 = epolls();
                let (lonely, watched, later) = (ring(), ring(), ring());
                let page = SharedPage::new();
                let mut a = peer_of(&page, &[(Kind::Reader, &watched)]);
                let mut b = peer_of(&page, &[(Kind::Reader, &later)]);
                // A helper first: an end with no holder to watch starts no peer-poll thread.
                let mut rx = lonely.into_consumer().unwrap().into_async().unwrap();
                let mut first = Pump::new(Box::pin(async move {
                    let mut b = [0u8; 1];
                    rx.read(&mut b).await.map(drop)
                }));
                assert!(first.run(Duration::from_millis(50)).is_none());
                drop(first);
                let threads0 = thread_count();
                let old = common::set_soft_limit(libc::RLIMIT_NPROC, 0).expect("setrlimit");
                let (p, stats) = Kind::Reader.park(&watched);
                let mut p = [p];
                std::thread::sleep(Duration::from_millis(50));
                assert!(common::threads_named(PEER_POLL).is_empty(), "a peer-poll thread started at the thread limit");
                let left = new_epolls(&epolls0);
                assert!(left.is_empty(), "the epoll descriptor of a thread that did not start: {left:?}");
                let helper = helper_sleeps_over_an_idle_second(&mut p);
                common::set_soft_limit(libc::RLIMIT_NPROC, old as usize);
                assert!(
                    helper >= 20,
                    "the helper woke only {helper} times in a second (40 expected): it does not watch the peer"
                );
                kill_and_see(&mut a, &mut p, &stats, ErrorKind::UnexpectedEof);
                then_the_thread_watches_the_next_park(Kind::Reader, &later, &mut b, &epolls0, || {
                    assert_eq!(thread_count(), threads0 + 1, "threads: the peer-poll thread alone is new")
                });
                0
            },
        );
    }

    /// The peer-poll thread's wait fails (its descriptor number made to name `/dev/null`, as
    /// only a wait that fails can be made to here; in a forked child): the report it was
    /// waiting for is still acted on (that end sees its peer's death within a second), then
    /// the thread ends, its descriptor is closed, the end still parked on a live peer goes back
    /// to the watch interval and sees its peer's death within a second, and a park a second
    /// later starts a new thread that leaves its end asleep at the safety interval.
    #[test]
    #[allow(clippy::disallowed_methods)]
    fn a_failed_epoll_wait_hands_the_watch_back_to_the_helpers_and_a_new_thread_starts_later() {
        in_loud_child(
            "a_failed_epoll_wait_hands_the_watch_back_to_the_helpers_and_a_new_thread_starts_later",
            Duration::from_secs(60),
            || {
                let epolls0 = epolls();
                let (ra, rb, rc) = (ring(), ring(), ring());
                let page = SharedPage::new();
                let mut a = peer_of(&page, &[(Kind::Reader, &ra)]);
                let mut b = peer_of(&page, &[(Kind::Writer, &rb)]);
                let mut c = peer_of(&page, &[(Kind::FramedReader, &rc)]);
                let (pa, stats_a) = Kind::Reader.park(&ra);
                let (pb, stats_b) = Kind::Writer.park(&rb);
                let (mut pa, mut pb) = ([pa], [pb]);
                idle(&mut pa, Duration::from_millis(150));
                let ep = common::peer_poll_fd().expect("no peer-poll thread");
                let raw: libc::c_int = ep.parse().unwrap();
                let null = std::fs::File::open("/dev/null").unwrap();
                // SAFETY: replaces the descriptor number the peer-poll thread waits on with a copy of
                // /dev/null; the thread's wait in progress keeps the epoll instance until it returns.
                assert_eq!(unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), raw) }, raw);
                drop(null);
                kill_and_see(&mut a, &mut pa, &stats_a, ErrorKind::UnexpectedEof);
                assert!(
                    eventually(Duration::from_secs(1), || common::threads_named(PEER_POLL).is_empty()),
                    "the peer-poll thread did not end after its wait failed"
                );
                assert!(
                    eventually(Duration::from_secs(1), || {
                        // (Not `open_fds`: its own directory descriptor may take the number.)
                        std::fs::read_link(format!("/proc/self/fd/{ep}"))
                            .map_or(true, |l| l != std::path::Path::new("/dev/null"))
                    }),
                    "the failed thread's descriptor was not closed"
                );
                let helper = helper_sleeps_over_an_idle_second(&mut pb);
                assert!(
                    helper >= 20,
                    "the helper woke only {helper} times in a second (40 expected): nobody watches B"
                );
                kill_and_see(&mut b, &mut pb, &stats_b, ErrorKind::BrokenPipe);
                then_the_thread_watches_the_next_park(Kind::FramedReader, &rc, &mut c, &epolls0, || {
                    assert_eq!(common::threads_named(PEER_POLL).len(), 1)
                });
                0
            },
        );
    }

    /// A peer that writes one byte and exits at once, 30 times (a new ring and peer each
    /// time): the reader, woken by the byte, has left the registry when the death is reported
    /// (the one-shot report then finds no entry), and its next read, parked again or not, must
    /// still see the death within a second, counted once, with no lost wake-up.
    #[test]
    fn a_death_reported_between_two_parks_is_seen_by_the_next_park() {
        in_loud_child("a_death_reported_between_two_parks_is_seen_by_the_next_park", Duration::from_secs(90), || {
            let mut parked_again = 0;
            for i in 0..30 {
                let r = ring();
                let page = SharedPage::new();
                let mut a = spawn_child(|| {
                    let mut tx = r.clone().into_producer().unwrap();
                    page.ready_then_await_go();
                    tx.write_all(b"!").unwrap();
                    std::mem::forget(tx);
                    // SAFETY: leaves the child at once, without dropping its end.
                    unsafe { libc::_exit(0) }
                });
                page.await_word(0);
                let rx = r.clone().into_consumer().unwrap();
                let stats = rx.stats_handle();
                let mut rx = rx.into_async().unwrap();
                let mut b = [0u8; 1];
                {
                    let mut p = Pump::new(Box::pin(rx.read(&mut b)));
                    page.word(1).store(1, Ordering::SeqCst);
                    let got = p.run(Duration::from_secs(1)).expect("the byte not read within a second");
                    assert_eq!(got.unwrap(), 1, "round {i}");
                }
                // Later and later: the exit lands before, during or after the next park.
                std::thread::sleep(Duration::from_micros(150 * i));
                let parks = stats.get().parks;
                let r = complete(Box::pin(rx.read(&mut b)), Duration::from_secs(1))
                    .unwrap_or_else(|| panic!("round {i}: the death not seen within a second"));
                assert_eq!(r.unwrap_err().kind(), ErrorKind::UnexpectedEof, "round {i}");
                let s = stats.get();
                parked_again += usize::from(s.parks > parks);
                assert_eq!((s.peer_died, s.lost_wakeups), (u64::from(s.parks > parks), 0), "round {i}: {s:?}");
                assert_eq!(a.wait(), 0);
            }
            eprintln!("the second read parked in {parked_again} of 30 rounds");
            0
        });
    }

    /// Each of the peer-poll thread's system calls refused (`ENOSYS` from a seccomp filter, as
    /// a sandbox may): `epoll_create1` (no thread starts), `epoll_ctl` (the thread runs but no
    /// pidfd is armed), `epoll_wait` (the thread's wait fails at once). In each case the parked
    /// end keeps the watch interval (its helper wakes about 40 times a second, not 10), is not
    /// woken while its peer lives, and sees the peer's death within a second, counted once;
    /// a failed wait leaves no thread and no epoll descriptor behind.
    #[test]
    fn with_the_epoll_calls_refused_the_helper_watches_every_watch_interval() {
        let _dog =
            watchdog("with_the_epoll_calls_refused_the_helper_watches_every_watch_interval", Duration::from_secs(60));
        let waits = vec![
            libc::SYS_epoll_pwait,
            libc::SYS_epoll_pwait2,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_epoll_wait,
        ];
        let cases: [(&str, Vec<libc::c_long>); 3] = [
            ("epoll_create1", vec![libc::SYS_epoll_create1]),
            ("epoll_ctl", vec![libc::SYS_epoll_ctl]),
            ("epoll_wait", waits),
        ];
        for (name, calls) in cases {
            let status = in_child(|| {
                loud_panics();
                let epolls0 = epolls();
                let r = ring();
                let page = SharedPage::new();
                let mut a = peer_of(&page, &[(Kind::FramedReader, &r)]);
                for &nr in &calls {
                    common::deny_with_enosys(nr).expect("seccomp");
                }
                let (p, stats) = Kind::FramedReader.park(&r);
                let mut p = [p];
                idle(&mut p, Duration::from_millis(100));
                let h0 = common::sleeps_of(HELPERS);
                let w0 = p[0].woken();
                idle(&mut p, Duration::from_secs(1));
                let helper = common::sleeps_of(HELPERS) - h0;
                assert!(helper >= 20, "{name} refused: the helper woke only {helper} times in a second (40 expected)");
                assert_eq!(p[0].woken(), w0, "{name} refused: the task was woken while its peer lived");
                match name {
                    "epoll_create1" => {
                        assert!(
                            common::threads_named(PEER_POLL).is_empty(),
                            "a peer-poll thread without an epoll instance"
                        );
                        assert!(new_epolls(&epolls0).is_empty(), "{:?}", new_epolls(&epolls0));
                    }
                    "epoll_wait" => {
                        assert!(
                            eventually(Duration::from_secs(1), || common::threads_named(PEER_POLL).is_empty()),
                            "the peer-poll thread outlived its failed wait"
                        );
                        assert!(
                            eventually(Duration::from_secs(1), || new_epolls(&epolls0).is_empty()),
                            "epoll descriptors left: {:?}",
                            new_epolls(&epolls0)
                        );
                    }
                    _ => {}
                }
                a.kill();
                let killed = Instant::now();
                let (_end, res) = finish_all(&mut p, killed, Duration::from_secs(1)).pop().unwrap();
                assert_eq!(res.unwrap_err().kind(), ErrorKind::UnexpectedEof, "{name} refused");
                let s = stats.get();
                assert_eq!((s.peer_died, s.lost_wakeups), (1, 0), "{name} refused: {s:?}");
                a.wait();
                0
            });
            assert_eq!(status, 0, "{name} refused");
        }
    }
}
