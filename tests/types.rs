//! Soundness of the safe public API at the type level: auto traits, leaked guards, reentrancy
//! from callbacks, Debug/Default. The lends the borrow checker must refuse are `compile_fail`
//! doctests in `src/compile_fail.rs`.

mod common;

use std::io::{BufRead, ErrorKind, Read, Write};
use std::marker::PhantomData;
use std::panic::{RefUnwindSafe, UnwindSafe};
#[allow(unused_imports)]
use std::sync::{Arc, Mutex};
#[allow(unused_imports)]
use std::time::Duration;

// Auto-trait probes: the inherent method, which exists only when the bound holds, wins over
// the trait's fallback that answers false.
macro_rules! probe {
    ($probe:ident, $fallback:ident, $method:ident, $bound:path) => {
        struct $probe<T: ?Sized>(PhantomData<T>);
        #[allow(dead_code)] // never called for a type with the bound
        trait $fallback {
            fn $method(&self) -> bool {
                false
            }
        }
        impl<T: ?Sized> $fallback for $probe<T> {}
        impl<T: ?Sized + $bound> $probe<T> {
            fn $method(&self) -> bool {
                true
            }
        }
    };
}
probe!(S, NoS, send, Send);
probe!(Y, NoY, sync, Sync);
probe!(U, NoU, unpin, Unpin);
probe!(W, NoW, uw, UnwindSafe);
probe!(R, NoR, ruw, RefUnwindSafe);

macro_rules! traits {
    ($t:ty) => {
        (
            S::<$t>(PhantomData).send(),
            Y::<$t>(PhantomData).sync(),
            U::<$t>(PhantomData).unpin(),
            W::<$t>(PhantomData).uw(),
            R::<$t>(PhantomData).ruw(),
        )
    };
}

/// The auto traits of every public type, as found (printed with --nocapture) and pinned: the
/// ends are Send and not Sync (their &self methods touch Cells and a RefCell), grants and
/// frames are neither (they hold raw pointers and a &mut end), SharedRing, MirrorMap, the
/// options and the stats are both (atomics / CAS in the header, or plain data).
#[test]
fn auto_traits() {
    macro_rules! row {
        ($(($t:ty, $send:expr, $sync:expr)),* $(,)?) => {$(
            let (s, y, u, w, r) = traits!($t);
            eprintln!("{:<22} Send={:<5} Sync={:<5} Unpin={:<5} UnwindSafe={:<5} RefUnwindSafe={:<5}", stringify!($t), s, y, u, w, r);
            assert_eq!((s, y), ($send, $sync), "{}", stringify!($t));
        )*};
    }
    use mirror_ring::*;
    row!((Producer, true, false), (Consumer, true, false), (FramedProducer, true, false), (FramedConsumer, true, false),
         (ReadGrant<'static>, false, false), (WriteGrant<'static>, false, false), (FrameGrant<'static>, false, false),
         (Frame<'static>, false, false), (SharedRing, true, true), (MirrorMap, true, true), (MirrorOptions, true, true),
         (RingOptions, true, true), (Stats, true, true), (StatsHandle, true, true), (Backend, true, true));
    #[cfg(feature = "tokio")]
    {
        row!(
            (AsyncProducer, true, false),
            (AsyncConsumer, true, false),
            (AsyncFramedProducer, true, false),
            (AsyncFramedConsumer, true, false)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// mem::forget of guards.

/// A forgotten WriteGrant publishes nothing; the next grant lends the same room; the stream
/// stays intact.
// The grants have no `Drop` today, so forgetting is dropping; the tests hold the property
// should one be added.
#[allow(clippy::forget_non_drop)]
#[test]
fn forget_write_grant_publishes_nothing() {
    let (mut tx, mut rx) = mirror_ring::channel(4096).unwrap();
    let mut g = tx.write_grant(10).unwrap();
    g[..10].copy_from_slice(b"NEVERSENT!");
    std::mem::forget(g);
    assert_eq!(rx.try_read(&mut [0; 16]).unwrap_err().kind(), ErrorKind::WouldBlock);
    assert_eq!(tx.free(), tx.capacity());
    let mut g = tx.write_grant(5).unwrap();
    g[..5].copy_from_slice(b"hello");
    g.commit(5).unwrap();
    drop(tx);
    let mut s = String::new();
    rx.read_to_string(&mut s).unwrap();
    assert_eq!(s, "hello");
}

/// A forgotten ReadGrant releases nothing; the same bytes come again.
#[allow(clippy::forget_non_drop)]
#[test]
fn forget_read_grant_releases_nothing() {
    let (mut tx, mut rx) = mirror_ring::channel(4096).unwrap();
    tx.write_all(b"abcdef").unwrap();
    let g = rx.read_grant(3).unwrap();
    assert_eq!(&g[..3], b"abc");
    std::mem::forget(g);
    assert_eq!(tx.free(), tx.capacity() - 6);
    let g = rx.read_grant(6).unwrap();
    assert_eq!(&*g, b"abcdef");
    g.release(6).unwrap();
    assert_eq!(tx.free(), tx.capacity());
}

/// A forgotten Frame is delivered again (nothing released); the frames after it follow in
/// order; the producer gets the room back once they are dropped.
#[test]
fn forget_frame_redelivers_it() {
    let (tx, rx) = mirror_ring::channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    for m in [&b"one"[..], b"two", b"three"] {
        tx.send(m).unwrap();
    }
    let f = rx.try_recv().unwrap().unwrap();
    assert_eq!(&*f, b"one");
    std::mem::forget(f);
    let f = rx.try_recv().unwrap().unwrap();
    assert_eq!(&*f, b"one", "a forgotten frame must come again, not be skipped");
    drop(f);
    let mut got = Vec::new();
    while let Ok(Some(f)) = rx.try_recv() {
        got.push(f.to_vec());
    }
    assert_eq!(got, [b"two".to_vec(), b"three".to_vec()]);
    // With batching on the consumer side too: forget in the middle of a run, then recv_batch.
    for i in 0..50u32 {
        tx.send(&i.to_le_bytes()).unwrap();
    }
    for _ in 0..10 {
        std::mem::forget(rx.try_recv().unwrap().unwrap());
    }
    let mut seen = Vec::new();
    while let Ok(n) = rx.try_recv_batch(|f| seen.push(u32::from_le_bytes(f.try_into().unwrap()))) {
        if n == 0 {
            break;
        }
    }
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
    drop(tx);
    assert!(rx.recv().unwrap().is_none());
}

/// Forgotten / dropped / truncated FrameGrants whose payload holds forged stamped headers for
/// every later aligned position: the consumer must only ever see the frames committed, in
/// order (a forged frame taken by its stamp would lend the producer's free room as a `&[u8]`
/// while the producer may write it). With and without batching, with a consumer thread.
#[allow(clippy::forget_non_drop)]
#[test]
fn forged_stamps_in_uncommitted_frame_grants_are_never_frames() {
    for batch in [1usize, 4, 64] {
        let (tx, rx) = mirror_ring::channel(4096).unwrap();
        let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
        tx.set_batch(batch);
        let reader = std::thread::spawn(move || {
            let mut n = 0u64;
            while let Some(f) = rx.recv().unwrap() {
                assert_eq!(f.len(), 8 + (n % 3) as usize * 8, "batch {batch}: frame {n} has a forged length");
                assert_eq!(u64::from_le_bytes(f[..8].try_into().unwrap()), n, "batch {batch}: frame {n}");
                n += 1;
            }
            n
        });
        let mut pos = 0u64; // stream position of the next frame header
        for n in 0..20_000u64 {
            // A big grant filled with forged stamped headers, then dropped or forgotten.
            let big = 256;
            let mut g = tx.reserve(big).unwrap();
            for k in (0..big).step_by(8) {
                let at = pos + 8 + k as u64;
                g[k..k + 8].copy_from_slice(&common::stamped_word(at, 16).to_le_bytes());
            }
            if n % 2 == 0 {
                drop(g);
            } else {
                std::mem::forget(g);
            }
            // The real frame, through a truncated grant over the same forged bytes.
            let len = 8 + (n % 3) as usize * 8;
            let mut g = tx.reserve(big).unwrap();
            for k in (len..big).step_by(8) {
                let at = pos + 8 + k as u64;
                g[k..k + 8].copy_from_slice(&common::stamped_word(at, 16).to_le_bytes());
            }
            g[..8].copy_from_slice(&n.to_le_bytes());
            g.truncate(len);
            g.commit().unwrap();
            pos += 8 + len as u64;
        }
        drop(tx);
        assert_eq!(reader.join().unwrap(), 20_000);
    }
}

// ---------------------------------------------------------------------------------------------
// Reentrancy.

/// recv_batch's closure sends on the producer of the same ring (same thread): the new frames
/// are never written over frames the batch is still lending, and every frame arrives in order.
#[test]
fn recv_batch_callback_sends_on_the_same_ring() {
    let (tx, rx) = mirror_ring::channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    let next = std::cell::Cell::new(0u64);
    for _ in 0..8 {
        tx.send(&next.get().to_le_bytes()).unwrap();
        next.set(next.get() + 1);
    }
    let mut expect = 0u64;
    let mut sent_in_cb = 0;
    while expect < 5000 {
        rx.try_recv_batch(|f| {
            assert_eq!(u64::from_le_bytes(f.try_into().unwrap()), expect);
            expect += 1;
            // Fill whatever room there is while the batch holds its frames.
            while next.get() < 5008 {
                match tx.try_send(&next.get().to_le_bytes()) {
                    Ok(()) => {
                        next.set(next.get() + 1);
                        sent_in_cb += 1;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
            // The frame lent to us is still ours: unchanged by the sends.
            assert_eq!(u64::from_le_bytes(f.try_into().unwrap()), expect - 1);
        })
        .unwrap();
    }
    assert!(sent_in_cb > 4000);
}

/// A recv_batch closure that panics half way: the frames it saw are released (documented),
/// the rest come next, in order.
#[test]
fn recv_batch_panic_releases_seen_frames_only() {
    let (tx, rx) = mirror_ring::channel(4096).unwrap();
    let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
    for i in 0..20u64 {
        tx.send(&i.to_le_bytes()).unwrap();
    }
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rx.try_recv_batch(|f| {
            if u64::from_le_bytes(f.try_into().unwrap()) == 7 {
                panic!("boom");
            }
        })
    }));
    assert!(r.is_err());
    let f = rx.try_recv().unwrap().unwrap();
    assert_eq!(u64::from_le_bytes((*f).try_into().unwrap()), 8);
}

/// Loopback: the consumer's write_to writes into the producer of the same ring, and the
/// producer's read_from reads from the consumer of the same ring. The lent regions never
/// overlap; the stream stays intact.
#[test]
fn transfer_into_the_same_ring() {
    let (mut tx, mut rx) = mirror_ring::channel(4096).unwrap();
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 3) as u8).collect();
    tx.write_all(&data).unwrap();
    // Round trip through the ring itself, several times: rx -> tx.
    for _ in 0..10 {
        let n = rx.write_to(&mut tx).unwrap();
        assert!(n > 0);
        let mut buf = Vec::new();
        // Drain everything and put it back, through read_from with rx as the reader.
        let have = rx.read_grant(1).unwrap().len();
        buf.resize(have, 0);
        rx.read_exact(&mut buf).unwrap();
        tx.write_all(&buf).unwrap();
        let m = tx.read_from(&mut rx).unwrap();
        assert!(m > 0);
    }
    drop(tx);
    let mut all = Vec::new();
    rx.read_to_end(&mut all).unwrap();
    assert_eq!(all.len(), 3000);
    // The bytes are a rotation of the data (each round moved a prefix to the end).
    let mut doubled = data.clone();
    doubled.extend_from_slice(&data);
    assert!(doubled.windows(3000).any(|w| w == &all[..]), "the stream was corrupted by the loopback");
}

/// A reader that panics half way through read_from (after writing into the lent room):
/// nothing is committed, the producer stays usable.
#[test]
fn read_from_panicking_reader_commits_nothing() {
    struct Bad;
    impl Read for Bad {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            buf[..4].copy_from_slice(b"XXXX");
            panic!("reader panics");
        }
    }
    let (mut tx, mut rx) = mirror_ring::channel(4096).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tx.read_from(&mut Bad)));
    assert!(r.is_err());
    assert_eq!(tx.free(), tx.capacity());
    assert_eq!(rx.try_read(&mut [0; 8]).unwrap_err().kind(), ErrorKind::WouldBlock);
    tx.write_all(b"ok").unwrap();
    let mut b = [0; 2];
    rx.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ok");
    // And a writer that lies about its count releases nothing.
    struct Liar;
    impl Write for Liar {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len() + 100)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    tx.write_all(b"abc").unwrap();
    assert_eq!(rx.write_to(&mut Liar).unwrap_err().kind(), ErrorKind::InvalidData);
    assert_eq!(rx.fill_buf().unwrap(), b"abc");
}

/// A Waker, woken inline by the producer's publish (a thread ring's direct wake), that calls
/// back into the ring: reads through the parked async consumer, then drops it (its drop
/// deregisters and closes, waking the producer's word through the same registry). No
/// deadlock, no double borrow; the producer then sees the close.
#[cfg(feature = "tokio")]
#[test]
fn waker_that_reads_and_drops_the_parked_end() {
    use std::pin::Pin;
    use std::task::{Context, Poll, Wake, Waker};
    use tokio::io::{AsyncRead, ReadBuf};

    struct Slot {
        end: Mutex<Option<mirror_ring::AsyncConsumer>>,
        got: Mutex<Vec<u8>>,
        woken: std::sync::atomic::AtomicUsize,
    }
    impl Wake for Slot {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref()
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.woken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if let Some(mut rx) = self.end.lock().unwrap().take() {
                let mut buf = [0u8; 64];
                if let Ok(n) = rx.get_mut().try_read(&mut buf) {
                    self.got.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                drop(rx);
            }
        }
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut tx, rx) = mirror_ring::channel(4096).unwrap();
        let mut rx = rx.into_async().unwrap();
        let slot = Arc::new(Slot { end: Mutex::new(None), got: Mutex::new(Vec::new()), woken: 0.into() });
        let waker = Waker::from(slot.clone());
        let mut cx = Context::from_waker(&waker);
        let mut buf = [0u8; 16];
        // Poll until parked (the spin phase answers Pending through wake_by_ref first).
        let mut polls = 0;
        loop {
            let mut rb = ReadBuf::new(&mut buf);
            match Pin::new(&mut rx).poll_read(&mut cx, &mut rb) {
                Poll::Pending => {}
                Poll::Ready(r) => panic!("ready with nothing written: {r:?}"),
            }
            polls += 1;
            if rx.stats().sleeps > 0 || polls > 1_000_000 {
                break;
            }
        }
        assert!(rx.stats().sleeps > 0, "never parked");
        *slot.end.lock().unwrap() = Some(rx);
        let before = slot.woken.load(std::sync::atomic::Ordering::SeqCst);
        tx.write_all(b"wake up").unwrap(); // wakes inline: the waker reads and drops rx
        assert!(slot.woken.load(std::sync::atomic::Ordering::SeqCst) > before);
        assert_eq!(&*slot.got.lock().unwrap(), b"wake up");
        assert!(slot.end.lock().unwrap().is_none());
        assert_eq!(tx.write(b"more").unwrap_err().kind(), ErrorKind::BrokenPipe);
        done_tx.send(()).unwrap();
    });
    done_rx.recv_timeout(Duration::from_secs(20)).expect("deadlock or panic in the reentrant waker");
}

// ---------------------------------------------------------------------------------------------
// The one Sync type with state-changing &self methods: SharedRing (claims and take-overs go
// through compare-and-swaps in the header).

/// Clones of one SharedRing claiming the same role from 8 threads at once: exactly one wins
/// each role; take-overs of a living holder from 8 threads through one &SharedRing all fail
/// with AlreadyExists and change nothing.
#[test]
fn shared_ring_claims_race_through_shared_refs() {
    for _ in 0..50 {
        let ring = mirror_ring::RingOptions::new().capacity(4096).shared().unwrap();
        let barrier = std::sync::Barrier::new(8);
        let wins = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let (ring, barrier) = (ring.clone(), &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        if i % 2 == 0 {
                            ring.into_producer().map(|p| Box::new(p) as Box<dyn std::any::Any + Send>)
                        } else {
                            ring.into_consumer().map(|c| Box::new(c) as Box<dyn std::any::Any + Send>)
                        }
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
        });
        let ok: Vec<_> = wins.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(i, _)| i % 2).collect();
        assert_eq!(ok.len(), 2, "one winner per role");
        assert!(ok.contains(&0) && ok.contains(&1));
        for r in &wins {
            if let Err(e) = r {
                assert_eq!(e.kind(), ErrorKind::AlreadyExists);
            }
        }
        let r = &ring;
        std::thread::scope(|s| {
            for i in 0..8 {
                s.spawn(move || {
                    let e = if i % 2 == 0 { r.take_over_producer().err() } else { r.take_over_consumer().err() };
                    assert_eq!(e.expect("a living holder's role taken over").kind(), ErrorKind::AlreadyExists);
                });
            }
        });
        drop(wins);
    }
}

// ---------------------------------------------------------------------------------------------
// Debug / Default.

/// Debug of every public type formats without touching what it must not (a shut async
/// producer, a closed ring), and the Defaults equal `new()`.
#[test]
fn debug_and_default() {
    let (tx, rx) = mirror_ring::channel(4096).unwrap();
    let (mut ftx, mut frx) = (tx.into_framed(), rx.into_framed());
    ftx.send(b"x").unwrap();
    let _ = format!("{ftx:?} {frx:?}");
    {
        let g = ftx.reserve(4).unwrap();
        let _ = format!("{g:?}");
    }
    {
        let f = frx.try_recv().unwrap().unwrap();
        let _ = format!("{f:?}");
    }
    let (mut tx, mut rx) = (ftx.into_inner(), frx.into_inner());
    let _ = format!("{:?}", tx.write_grant(1).unwrap());
    tx.write_all(b"y").unwrap();
    let _ = format!("{:?}", rx.read_grant(1).unwrap());
    let _ = format!("{tx:?} {rx:?} {:?} {:?}", tx.stats(), tx.stats_handle());
    drop(tx);
    let _ = format!("{rx:?}");
    let ring = mirror_ring::RingOptions::new().shared().unwrap();
    let _ = format!("{ring:?}");
    let map = mirror_ring::MirrorMap::new(4096).unwrap();
    let _ = format!("{map:?}");
    assert_eq!(format!("{:?}", mirror_ring::RingOptions::default()), format!("{:?}", mirror_ring::RingOptions::new()));
    assert_eq!(
        format!("{:?}", mirror_ring::MirrorOptions::default()),
        format!("{:?}", mirror_ring::MirrorOptions::new())
    );
    assert_eq!(mirror_ring::Backend::default(), mirror_ring::Backend::Auto);
    assert_eq!(mirror_ring::Stats::default(), mirror_ring::Stats::default());
    #[cfg(feature = "tokio")]
    {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (tx, rx) = mirror_ring::channel(4096).unwrap();
        let (mut tx, rx) = (tx.into_async().unwrap(), rx.into_async().unwrap());
        rt.block_on(tokio::io::AsyncWriteExt::shutdown(&mut tx)).unwrap();
        let _ = format!("{tx:?} {rx:?}");
        let p = tx.into_inner();
        assert_eq!(p.free(), p.capacity());
        let _ = format!("{p:?}");
    }
}
