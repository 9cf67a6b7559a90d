//! Forgeries racing calls in flight, and `set_batch` frames pending at poisoning.
//!
//! A hostile "peer" (a thread of this process, or a forked child) writes the shared header and
//! the frame words directly while the victim is inside a call: framed sends and receives of
//! every style, a `Frame` held, `recv_batch` with its callback running, byte grants held open.
//! What must hold: no panic, no out-of-bounds access, no hang (every call bounded), only the
//! documented error kinds, committed frames that the victim validated are neither lost nor
//! duplicated, and a ring found corrupt stays `InvalidData`.

// The tests play the hostile peer: they write the ring's header and data words themselves.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::header_offsets::*;
use common::{drain, page_size, seed, spawn_child, stamped_word, watchdog, HeaderWords, Receive, Rng};
use mirror_ring::{FramedConsumer, FramedProducer, RingOptions, SharedRing};

const KIB: usize = 1024;
/// Every call in the storms waits at most 5 ms (`WAIT`): one taking this long is a hang.
const CALL_BOUND: Duration = Duration::from_secs(1);
/// Liveness bound for one deterministic call (a wide margin, not a performance figure).
const BOUND: Duration = Duration::from_secs(3);
const HANG: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_millis(5);

/// A hostile peer's view of a ring's header and data words (raw addresses into the mapping).
#[derive(Clone, Copy)]
struct Forge {
    hdr: usize,
    cap: usize,
}

impl Forge {
    fn u64(&self, off: usize) -> &'static AtomicU64 {
        assert!(off % 8 == 0 && off < page_size() + self.cap);
        // SAFETY: an aligned word inside the ring's mapping (header page or view A), which
        // outlives every use here (each test keeps the `SharedRing`); every access is atomic.
        unsafe { &*((self.hdr + off) as *const AtomicU64) }
    }
    fn u32(&self, off: usize) -> &'static AtomicU32 {
        // SAFETY: as above.
        unsafe { &*((self.hdr + off) as *const AtomicU32) }
    }
    /// The data word at ring position `pos` (a multiple of 8), in view A.
    fn word(&self, pos: u64) -> &'static AtomicU64 {
        self.u64((page_size() + (pos % self.cap as u64) as usize) & !7)
    }
}

impl HeaderWords for Forge {
    fn header_u64(&self, off: usize) -> &AtomicU64 {
        self.u64(off)
    }
    fn header_u32(&self, off: usize) -> &AtomicU32 {
        self.u32(off)
    }
}

/// A shared ring of `cap` bytes, its framed ends and the forge on its header.
fn framed(cap: usize) -> (SharedRing, FramedProducer, FramedConsumer, Forge) {
    let ring = RingOptions::new().capacity(cap).spin_budget(Duration::from_micros(5)).shared().unwrap();
    let cap = ring.capacity();
    let mut tx = ring.clone().into_producer().unwrap();
    let rx = ring.clone().into_consumer().unwrap();
    let hdr = tx.write_grant(1).unwrap().as_ptr() as usize - page_size();
    let f = Forge { hdr, cap };
    assert_eq!(f.u64(OFF_MAGIC).load(Ordering::SeqCst), u64::from_le_bytes(*b"MIRRRING"), "not the header");
    (ring, tx.into_framed(), rx.into_framed(), f)
}

/// Message `seq` of a stream: 8 to 31 bytes, its sequence number first.
fn msg(seq: u64) -> Vec<u8> {
    let len = 8 + (seq as usize * 7) % 24;
    let mut m = vec![seq as u8 ^ 0x5a; len];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    m
}

fn kind<T>(r: &std::io::Result<T>) -> Option<ErrorKind> {
    r.as_ref().err().map(|e| e.kind())
}

/// One control frame through the ring, so the consumer has taken a frame through the head and
/// trusts stamps from then on (the state in which it polls frame words).
fn arm(tx: &mut FramedProducer, rx: &mut FramedConsumer) {
    tx.send(b"control!").unwrap();
    tx.flush().unwrap();
    assert_eq!(&*rx.recv_timeout(BOUND).unwrap().expect("control frame"), b"control!");
}

// ---------------------------------------------------------------------------------------------
// 1. Storms: forgeries while both framed ends run every call style.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Head, tail (nearby, far, impossible) and, rarely, the poison flag.
    Cursors,
    /// Frame words at and after the consumer's cursor: junk, stamps of this position with
    /// lengths up to twice the ring, unstamped headers, the clear mark, all ones.
    Frames,
    /// The role states: a forged close of either end (epoch and pid kept), or free.
    Closes,
    /// The waiter words only: the stream must stay exact, nothing poisoned or closed.
    Waiters,
    /// No forgery at all (the control: the same checks as `Waiters`).
    Quiet,
    /// The producer's framing epoch and the start of its frames (which tell the consumer when
    /// to trust stamps).
    Framing,
    /// Cursors moved to values the validation must accept (a tail up to the published head, a
    /// head a few words further): the ends go on with lies about the data, with pauses.
    Plausible,
}

/// Forges per `mode` until `stop` or `until`, counting the stores in `writes`.
fn forge(f: Forge, mode: Mode, seed: u64, stop: &AtomicBool, until: Instant, writes: &AtomicU64) {
    let cap = f.cap as u64;
    let mut rng = Rng::new(seed);
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        let r = rng.next_u64();
        match mode {
            Mode::Cursors => {
                let (off, cur) = if r & 1 == 0 { (OFF_HEAD, f.head()) } else { (OFF_TAIL, f.tail()) };
                let v = match (r >> 1) % 8 {
                    0 => u64::MAX,
                    1 => cur.wrapping_add(cap + 8),
                    2 => cur.wrapping_sub(8),
                    3 if (r >> 8) % 16 == 0 => {
                        f.poison();
                        writes.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    _ => cur.wrapping_add(8 * rng.up_to(2 * f.cap / 8) as u64).wrapping_sub(cap),
                };
                f.u64(off).store(v, Ordering::Relaxed);
            }
            Mode::Frames => {
                // At or just after the consumer's published cursor, where it polls.
                let pos = (f.tail() & !7).wrapping_add(8 * rng.up_to(48) as u64);
                let v = match (r >> 2) % 7 {
                    0 => rng.next_u64(),
                    1 => stamped_word(pos, rng.up_to(2 * f.cap) as u32),
                    2 => stamped_word(pos, rng.up_to(64) as u32),
                    3 => stamped_word(pos, rng.up_to(64) as u32) ^ 3 << 62,
                    4 => 0,
                    5 => u64::MAX,
                    _ => stamped_word(pos.wrapping_add(cap), rng.up_to(64) as u32),
                };
                f.word(pos).store(v, Ordering::Relaxed);
            }
            Mode::Closes => {
                let slot = if r & 1 == 0 { OFF_PRODUCER } else { OFF_CONSUMER };
                let w = f.u64(slot).load(Ordering::SeqCst);
                let state = if (r >> 1) % 4 == 0 { 0 } else { 2 };
                f.u64(slot).store(w & !0xff | state, Ordering::SeqCst);
            }
            Mode::Quiet => {}
            Mode::Framing => match (r >> 1) % 16 {
                0..=7 => {
                    let e = f.u32(OFF_FRAMING_EPOCH).load(Ordering::SeqCst);
                    let v = match (r >> 8) % 4 {
                        0 => e.wrapping_add(1),
                        1 => e.wrapping_add(2),
                        2 => e.wrapping_sub(1),
                        _ => rng.next_u64() as u32,
                    };
                    f.u32(OFF_FRAMING_EPOCH).store(v, Ordering::SeqCst);
                }
                _ => {
                    let t = f.tail();
                    let v = match (r >> 8) % 4 {
                        0 => t.wrapping_add(8 * rng.up_to(64) as u64),
                        1 => t.wrapping_sub(8 * rng.up_to(64) as u64),
                        2 => t,
                        _ => rng.next_u64(),
                    };
                    f.u64(OFF_FRAMING_START).store(v, Ordering::SeqCst);
                }
            },
            Mode::Plausible => {
                let (h, t) = (f.head(), f.tail());
                match (r >> 1) % 3 {
                    0 => f.set_tail(h),
                    1 => f.set_head(h.wrapping_add(8 * (1 + rng.up_to(3)) as u64)),
                    _ => f.set_tail(t.wrapping_add(8 * rng.up_to(4) as u64)),
                }
            }
            Mode::Waiters => {
                let off = if r & 1 == 0 { OFF_DATA_WAITER } else { OFF_SPACE_WAITER };
                let v = match (r >> 1) % 3 {
                    0 => 0,
                    1 => 1,
                    _ => rng.next_u64() as u32,
                };
                f.u32(off).store(v, Ordering::Relaxed);
            }
        }
        writes.fetch_add(1, Ordering::Relaxed);
        // Mostly a burst, sometimes a pause, so calls also run on a quiet forged state.
        for _ in 0..rng.up_to(if matches!(mode, Mode::Cursors | Mode::Plausible) { 20_000 } else { 2_000 }) {
            std::hint::spin_loop();
        }
    }
}

#[derive(Default, Debug)]
struct Side {
    ok: u64,
    /// Frames sent (producer) or received (consumer).
    frames: u64,
    invalid: u64,
    closed: u64,
    waits: u64,
    max_call: Duration,
}

impl Side {
    fn count<T>(&mut self, r: &std::io::Result<T>, started: Instant, who: &str) -> Result<(), String> {
        let took = started.elapsed();
        if took >= CALL_BOUND {
            return Err(format!("{who}: a call took {took:?}"));
        }
        self.tally(r, started, who)
    }

    /// [`count`](Self::count) without the bound on the call's time (an async call that may
    /// stall, bounded by its caller's timeout).
    fn tally<T>(&mut self, r: &std::io::Result<T>, started: Instant, who: &str) -> Result<(), String> {
        self.max_call = self.max_call.max(started.elapsed());
        match r {
            Ok(_) => self.ok += 1,
            Err(e) => match e.kind() {
                ErrorKind::InvalidData => self.invalid += 1,
                ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof | ErrorKind::ConnectionAborted => self.closed += 1,
                ErrorKind::WouldBlock | ErrorKind::TimedOut => self.waits += 1,
                k => return Err(format!("{who}: {k:?}: {e}")),
            },
        }
        Ok(())
    }
}

/// The producer side of a storm until `until`: every send style, batching switched on and
/// off. Returns its tally and the number of frames whose send returned `Ok`.
fn storm_producer(tx: &mut FramedProducer, until: Instant, seed: u64) -> Result<Side, String> {
    let mut rng = Rng::new(seed);
    let mut s = Side::default();
    let mut seq = 0u64;
    while Instant::now() < until {
        let started = Instant::now();
        let r: std::io::Result<u64> = match rng.up_to(7) {
            0 => tx.send_timeout(&msg(seq), WAIT).map(|()| 1),
            1 => tx.try_send(&msg(seq)).map(|()| 1),
            2 => match tx.reserve_timeout(msg(seq).len(), WAIT) {
                Ok(mut g) => {
                    let m = msg(seq);
                    if g.len() != m.len() {
                        return Err(format!("producer: a grant of {} bytes for {}", g.len(), m.len()));
                    }
                    g.copy_from_slice(&m);
                    g.commit().map(|()| 1)
                }
                Err(e) => Err(e),
            },
            3 => {
                let msgs = [msg(seq), msg(seq + 1), msg(seq + 2)];
                match tx.send_batch_timeout(&msgs, WAIT) {
                    Ok(n) if n > 3 => return Err(format!("producer: send_batch sent {n} of 3")),
                    r => r.map(|n| n as u64),
                }
            }
            4 => {
                tx.set_batch(1 + rng.up_to(7));
                Ok(0)
            }
            5 => tx.flush().map(|()| 0),
            _ => {
                let _ = tx.is_abandoned();
                Ok(0)
            }
        };
        s.count(&r, started, "producer")?;
        if let Ok(n) = r {
            seq += n;
            s.frames += n;
        }
    }
    Ok(s)
}

/// The consumer side of a storm until `until`: every receive style, a frame held while the
/// forger runs. With `exact`, every frame must be the stream's next.
fn storm_consumer(rx: &mut FramedConsumer, until: Instant, seed: u64, exact: bool) -> Result<Side, String> {
    let mut rng = Rng::new(seed);
    let mut s = Side::default();
    let max = rx.max_frame_len();
    let mut next = 0u64;
    let mut buf = Vec::new();
    let mut sink = 0u64;
    let mut sticky = false;
    let mut check = |got: &[u8], next: &mut u64| -> Result<(), String> {
        if got.len() > max {
            return Err(format!("consumer: a frame of {} bytes (max {max})", got.len()));
        }
        // Touch every byte: an out-of-bounds frame faults here.
        sink = got.iter().fold(sink, |a, &b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
        if exact && got != msg(*next).as_slice() {
            return Err(format!("consumer: frame {next} wrong: {} bytes {:?}", got.len(), &got[..got.len().min(8)]));
        }
        *next += 1;
        Ok(())
    };
    while Instant::now() < until {
        let started = Instant::now();
        let r: std::io::Result<u64> = match rng.up_to(4) {
            0 => match rx.recv_timeout(WAIT) {
                Ok(Some(fr)) => {
                    // Held while the forger runs.
                    for _ in 0..rng.up_to(3000) {
                        std::hint::spin_loop();
                    }
                    check(&fr, &mut next)?;
                    Ok(1)
                }
                Ok(None) => Err(ErrorKind::UnexpectedEof.into()),
                Err(e) => Err(e),
            },
            1 => match rx.recv_into_timeout(&mut buf, WAIT) {
                Ok(Some(n)) => {
                    if n != buf.len() {
                        return Err(format!("consumer: recv_into said {n}, copied {}", buf.len()));
                    }
                    check(&buf, &mut next)?;
                    Ok(1)
                }
                Ok(None) => Err(ErrorKind::UnexpectedEof.into()),
                Err(e) => Err(e),
            },
            2 => {
                let mut calls = 0u64;
                let mut bad = None;
                let r = rx.recv_batch_timeout(WAIT, |fr| {
                    calls += 1;
                    for _ in 0..rng.up_to(500) {
                        std::hint::spin_loop();
                    }
                    if let Err(e) = check(fr, &mut next) {
                        bad.get_or_insert(e);
                    }
                });
                if let Some(e) = bad {
                    return Err(e);
                }
                match r {
                    Ok(n) if n as u64 != calls => return Err(format!("consumer: recv_batch said {n}, called {calls}")),
                    Ok(0) => Err(ErrorKind::UnexpectedEof.into()),
                    r => r.map(|n| n as u64),
                }
            }
            _ => match rx.try_recv() {
                Ok(Some(fr)) => {
                    check(&fr, &mut next)?;
                    Ok(1)
                }
                Ok(None) => Err(ErrorKind::UnexpectedEof.into()),
                Err(e) => Err(e),
            },
        };
        s.count(&r, started, "consumer")?;
        match &r {
            Ok(n) => {
                if sticky && *n > 0 {
                    return Err("consumer: a frame after InvalidData".into());
                }
                s.frames += n;
            }
            Err(e) if e.kind() == ErrorKind::InvalidData => sticky = true,
            Err(e) if sticky && !matches!(e.kind(), ErrorKind::ConnectionAborted) => {
                return Err(format!("consumer: {:?} after InvalidData", e.kind()));
            }
            Err(_) => {}
        }
    }
    std::hint::black_box(sink);
    if exact && s.frames != next {
        return Err(format!("consumer: {s:?} counted {} frames, checked {next}", s.frames));
    }
    Ok(s)
}

/// One storm of `mode` for `ms` milliseconds against both framed ends, the forger a thread
/// of this process or (`in_child`) a forked child. Returns a description, or what went wrong.
fn storm(mode: Mode, seed: u64, ms: u64, in_child: bool) -> Result<String, String> {
    let (ring, mut tx, mut rx, f) = framed(16 * KIB);
    arm(&mut tx, &mut rx);
    let stop = AtomicBool::new(false);
    let writes = AtomicU64::new(0);
    let until = Instant::now() + Duration::from_millis(ms);
    // The forked forger runs on its own clock; its stores count nowhere we can see.
    let mut child = in_child.then(|| {
        spawn_child(move || {
            let (stop, writes) = (AtomicBool::new(false), AtomicU64::new(0));
            forge(f, mode, seed, &stop, until, &writes);
            i32::from(writes.load(Ordering::Relaxed) == 0)
        })
    });
    let (p, c) = std::thread::scope(|s| {
        let forger = (!in_child).then(|| s.spawn(|| forge(f, mode, seed, &stop, until, &writes)));
        let prod = s.spawn(|| storm_producer(&mut tx, until, seed ^ 1));
        let c = storm_consumer(&mut rx, until, seed ^ 2, matches!(mode, Mode::Waiters | Mode::Quiet));
        let p = prod.join().map_err(|_| "the producer panicked".to_string());
        stop.store(true, Ordering::Relaxed);
        if let Some(fg) = forger {
            fg.join().map_err(|_| "the forger panicked".to_string())?;
        }
        Ok::<_, String>((p??, c?))
    })?;
    if let Some(ch) = child.as_mut() {
        let st = ch.reap_within(Duration::from_secs(10))?;
        if st != 0 {
            return Err(format!("forger child exited {st}"));
        }
    } else if writes.load(Ordering::Relaxed) == 0 {
        return Err("the forger never wrote".into());
    }
    let what = format!("{mode:?}: producer {p:?}; consumer {c:?}");
    // After the storm: each end either goes on, or keeps failing.
    // (Only then: a frame taken here would be missing from the drain below.)
    let after_rx: Vec<_> = if c.invalid > 0 {
        (0..2).map(|_| kind(&rx.try_recv().map(|f| f.map(|f| f.len())))).collect()
    } else {
        Vec::new()
    };
    if after_rx.iter().any(|k| *k != Some(ErrorKind::InvalidData)) {
        // A forged take-over (Closes) may turn it into ConnectionAborted; no other mode may.
        if !(matches!(mode, Mode::Closes | Mode::Framing)
            && after_rx.iter().all(|k| *k == Some(ErrorKind::ConnectionAborted)))
        {
            return Err(format!("{what}: consumer after the storm: {after_rx:?}, InvalidData before"));
        }
    }
    if f.is_poisoned() && !matches!(mode, Mode::Closes | Mode::Framing) {
        let r = tx.send_timeout(b"after", BOUND);
        let started = Instant::now();
        let fl = tx.flush();
        if started.elapsed() > BOUND {
            return Err(format!("{what}: flush took {:?}", started.elapsed()));
        }
        // Flag set (by the forger or by an end): the producer's flush looks at it.
        if kind(&fl) != Some(ErrorKind::InvalidData) {
            return Err(format!("{what}: poisoned ring, then send {r:?}, flush {fl:?}"));
        }
    }
    if matches!(mode, Mode::Waiters | Mode::Quiet) {
        if p.invalid + c.invalid + p.closed + c.closed != 0 || f.is_poisoned() {
            return Err(format!("{what}: waiter words poisoned or closed the ring"));
        }
        // Nothing lost or repeated: everything sent arrives, in order (checked as received).
        tx.flush().map_err(|e| format!("{what}: flush {e}"))?;
        let received = c.frames;
        let mut c2 = c;
        let deadline = Instant::now() + BOUND;
        while c2.frames < p.frames && Instant::now() < deadline {
            match rx.recv_timeout(WAIT) {
                Ok(Some(fr)) if *fr == *msg(c2.frames) => c2.frames += 1,
                Ok(Some(fr)) => {
                    return Err(format!(
                        "{what}: drain: frame {} wrong ({} bytes, seq {})",
                        c2.frames,
                        fr.len(),
                        u64::from_le_bytes(fr[..8].try_into().unwrap())
                    ))
                }
                Ok(None) => return Err(format!("{what}: drain: end of stream")),
                Err(e) if e.kind() == ErrorKind::TimedOut => {}
                Err(e) => return Err(format!("{what}: drain: {e}")),
            }
        }
        if c2.frames != p.frames || received == 0 {
            return Err(format!("{what}: sent {} frames, received {}", p.frames, c2.frames));
        }
    }
    drop((tx, rx, ring));
    Ok(what)
}

fn modes() -> Vec<Mode> {
    match std::env::var("REVIEW_MODES").ok().as_deref() {
        Some("quiet") => vec![Mode::Quiet],
        Some("waiters") => vec![Mode::Waiters],
        Some("framing") => vec![Mode::Framing],
        _ => {
            vec![Mode::Quiet, Mode::Cursors, Mode::Plausible, Mode::Frames, Mode::Closes, Mode::Framing, Mode::Waiters]
        }
    }
}

/// Runs the storms of every mode in a forked child (a crash shows as its exit status).
fn storms(in_child_forger: bool, rounds: usize) {
    let name = if in_child_forger { "storm, forger process" } else { "storm, forger thread" };
    let mut child = spawn_child(move || {
        let _dog = watchdog(name, HANG);
        for round in 0..rounds {
            for mode in modes() {
                let s = seed() ^ (round as u64) << 16 ^ mode as u64;
                match storm(mode, s, 120, in_child_forger) {
                    Ok(what) => eprintln!("{name} round {round}: {what}"),
                    Err(e) => {
                        eprintln!("{name} round {round} seed {s}: {e}");
                        return 1;
                    }
                }
            }
        }
        0
    });
    assert_eq!(child.wait_within(HANG), 0, "{name}: see stderr");
}

/// A thread forging cursors, frame words, role states and waiter words while both framed ends
/// run every call style: no crash, no call over a second, only documented errors, no frame
/// longer than `max_frame_len`, no frame after `InvalidData`, a poisoned ring stays failing,
/// and waiter words alone change nothing (the stream exact, nothing lost or repeated).
#[test]
fn framed_calls_in_flight_survive_a_forging_thread() {
    storms(false, 3 * common::scale());
}

/// The same storms from a forked child writing the shared mapping (a peer process).
#[test]
fn framed_calls_in_flight_survive_a_forging_process() {
    storms(true, 2 * common::scale());
}

// ---------------------------------------------------------------------------------------------
// 2. Forgeries at chosen moments of a call in flight.

/// A `Frame` held while the head is forged backwards: its bytes stay, and the frames stamped
/// before the forgery (committed: the head covered them) are still delivered, in order, before
/// the ring reports `InvalidData` for good.
#[test]
fn frames_committed_before_a_forged_head_are_delivered_while_one_is_held() {
    let _dog = watchdog("held frame, forged head", HANG);
    let (_ring, mut tx, mut rx, f) = framed(16 * KIB);
    arm(&mut tx, &mut rx);
    for i in 0..6 {
        tx.send(&msg(i)).unwrap();
    }
    let committed = f.head();
    let fr = rx.recv_timeout(BOUND).unwrap().unwrap();
    // Backwards, under the consumer's cursor.
    f.set_head(8);
    assert_eq!(&*fr, msg(0).as_slice(), "the held frame changed");
    drop(fr);
    let mut buf = Vec::new();
    for i in 1..6 {
        let r = if i % 2 == 0 {
            rx.try_recv().map(|f| f.map(|f| f.to_vec()))
        } else {
            rx.recv_into_timeout(&mut buf, BOUND).map(|n| n.map(|_| buf.clone()))
        };
        assert_eq!(r.unwrap().as_deref(), Some(msg(i).as_slice()), "committed frame {i} (head was {committed})");
    }
    // The head behind the cursor is not looked at while the word there says "not yet" (a
    // head that stays behind shows nothing readable, `docs::framing`): `WouldBlock`, or
    // `InvalidData` if it was looked at.
    let idle = kind(&rx.try_recv().map(|f| f.is_some()));
    assert!(matches!(idle, Some(ErrorKind::WouldBlock | ErrorKind::InvalidData)), "{idle:?}");
    let waited = kind(&rx.recv_timeout(WAIT).map(|f| f.is_some()));
    assert!(matches!(waited, Some(ErrorKind::TimedOut | ErrorKind::InvalidData)), "{waited:?}");
    // The next honest publish stores a head past the forged one: the stream goes on exactly,
    // or (had the forged head been seen) stays `InvalidData`.
    let sent = tx.send(&msg(6));
    match rx.recv_timeout(BOUND) {
        Ok(Some(fr)) => {
            assert_eq!(idle, Some(ErrorKind::WouldBlock));
            assert_eq!(&*fr, msg(6).as_slice());
            assert!(sent.is_ok());
        }
        r => {
            assert_eq!(kind(&r.map(|f| f.is_some())), Some(ErrorKind::InvalidData));
            assert!(f.is_poisoned());
        }
    };
}

/// `recv_batch` whose callback, at its third frame, forges an impossible head and a stamped
/// header too long for the ring at the seventh frame: the six frames before are delivered
/// exactly, the call counts what it delivered, and the ring is `InvalidData` from then on.
#[test]
fn recv_batch_with_forgeries_from_its_callback_delivers_whole_frames_then_invalid_data() {
    let _dog = watchdog("recv_batch callback forging", HANG);
    let (_ring, mut tx, mut rx, f) = framed(64 * KIB);
    arm(&mut tx, &mut rx);
    let mut at = Vec::new();
    for i in 0..10 {
        at.push(f.head());
        tx.send(&msg(i)).unwrap();
    }
    let max = rx.max_frame_len() as u32;
    let mut got = Vec::new();
    let n = rx
        .recv_batch_timeout(BOUND, |fr| {
            got.push(fr.to_vec());
            if got.len() == 3 {
                f.set_head(u64::MAX);
                f.word(at[6]).store(stamped_word(at[6], max + 8), Ordering::SeqCst);
            }
        })
        .unwrap();
    assert_eq!(n, got.len());
    let want: Vec<Vec<u8>> = (0..6).map(msg).collect();
    // The batch may stop anywhere; with what the next calls deliver, exactly frames 0 to 5.
    let mut next = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(Some(fr)) => next.push(fr.to_vec()),
            Ok(None) => panic!("end of stream on a corrupt ring"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
                break;
            }
        }
        assert!(got.len() + next.len() <= 6, "a frame past the forged header");
    }
    got.extend(next);
    assert_eq!(got, want);
    assert_eq!(
        kind(&rx.recv_batch_timeout(WAIT, |_| panic!("a frame after InvalidData"))),
        Some(ErrorKind::InvalidData)
    );
}

/// Byte ends: a `ReadGrant` held while the head is forged impossible. The grant's bytes stay;
/// after a partial release, the rest that was validated is served by the copying read, then
/// `InvalidData` for good. A `WriteGrant` held while the tail is forged: its commit keeps the
/// bytes committed (the consumer reads them exactly), and the producer fails once it needs the
/// tail.
#[test]
fn byte_grants_held_across_forged_cursors_keep_committed_bytes() {
    let _dog = watchdog("byte grants, forged cursors", HANG);
    let ring = RingOptions::new().capacity(16 * KIB).spin_budget(Duration::from_micros(5)).shared().unwrap();
    let mut tx = ring.clone().into_producer().unwrap();
    let mut rx = ring.clone().into_consumer().unwrap();
    let f = Forge { hdr: tx.write_grant(1).unwrap().as_ptr() as usize - page_size(), cap: ring.capacity() };
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
    tx.write_all(&data).unwrap();
    {
        let g = rx.read_grant(1).unwrap();
        assert_eq!(g.len(), 1000);
        f.set_head(u64::MAX);
        assert_eq!(&g[..], &data[..]);
        g.release(400).unwrap();
    }
    let mut buf = vec![0u8; 2000];
    let mut rest = Vec::new();
    loop {
        match rx.try_read(&mut buf) {
            Ok(0) => panic!("end of stream on a corrupt ring"),
            Ok(n) => rest.extend_from_slice(&buf[..n]),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
                break;
            }
        }
        assert!(rest.len() <= 600);
    }
    assert_eq!(rest, &data[400..], "validated bytes lost or changed");
    for _ in 0..3 {
        assert_eq!(kind(&rx.try_read(&mut buf)), Some(ErrorKind::InvalidData));
    }
    drop((tx, rx, ring));

    // The writing side.
    let ring = RingOptions::new().capacity(16 * KIB).spin_budget(Duration::from_micros(5)).shared().unwrap();
    let mut tx = ring.clone().into_producer().unwrap();
    let mut rx = ring.clone().into_consumer().unwrap();
    let f = Forge { hdr: tx.write_grant(1).unwrap().as_ptr() as usize - page_size(), cap: ring.capacity() };
    let mut g = tx.write_grant(1000).unwrap();
    f.set_tail(u64::MAX);
    g[..1000].copy_from_slice(&data);
    let committed = g.commit(1000);
    let mut got = vec![0u8; 1000];
    match committed {
        Ok(()) => {
            let mut n = 0;
            while n < 1000 {
                match rx.read_timeout(&mut got[n..], BOUND) {
                    Ok(0) => panic!("end of stream"),
                    Ok(k) => n += k,
                    Err(e) => panic!("committed bytes not delivered after {n}: {e}"),
                }
            }
            assert_eq!(got, data);
            // The consumer's release stored an honest tail over the forged one: forge again.
            f.set_tail(u64::MAX);
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}"),
    }
    // Writes that need the tail find it impossible.
    let started = Instant::now();
    let r = loop {
        match tx.write_timeout(&[1; 4096], WAIT) {
            Ok(_) => assert!(started.elapsed() < BOUND, "writes went on past a forged tail"),
            Err(e) => break e,
        }
    };
    assert_eq!(r.kind(), ErrorKind::InvalidData, "{r}");
    assert_eq!(kind(&tx.try_write(b"x")), Some(ErrorKind::InvalidData));
}

// ---------------------------------------------------------------------------------------------
// 3. `set_batch` frames pending when the ring is poisoned.

/// How the pending frames get poisoned.
#[derive(Clone, Copy, Debug)]
enum Poison {
    /// The shared flag, set by a peer.
    Flag,
    /// An impossible tail, which the producer finds when it needs room.
    Tail,
    /// An impossible head, which the consumer finds (it raises the flag).
    Head,
}

/// A batching producer with frames pending when the ring is poisoned, then `flush`, more sends
/// and drop: no panic, no hang; `flush` reports `InvalidData`; the consumer (trusting stamps,
/// or not yet) gets a prefix of what was sent, exact and in order, then `InvalidData` for good,
/// never a clean end of stream. Prints what became of the pending frames.
#[test]
fn set_batch_frames_pending_at_poisoning() {
    let _dog = watchdog("set_batch pending at poisoning", HANG);
    for how in [Poison::Flag, Poison::Tail, Poison::Head] {
        for armed in [true, false] {
            let (_ring, mut tx, mut rx, f) = framed(16 * KIB);
            if armed {
                arm(&mut tx, &mut rx);
            }
            tx.set_batch(8);
            let mut sent = Vec::new();
            for i in 0..3 {
                tx.send(&msg(i)).unwrap();
                sent.push(msg(i));
            }
            assert_eq!(kind(&rx.try_recv().map(|f| f.is_some())), Some(ErrorKind::WouldBlock), "published early");
            match how {
                Poison::Flag => f.poison(),
                Poison::Tail => f.set_tail(u64::MAX),
                Poison::Head => {
                    f.set_head(u64::MAX);
                    // The consumer finds it (and raises the flag).
                    let r = rx.try_recv().map(|f| f.is_some());
                    assert_eq!(kind(&r), Some(ErrorKind::InvalidData), "{how:?} armed {armed}");
                    assert!(f.is_poisoned());
                }
            }
            // More sends: into room the producer knows of, or refused.
            let mut sends = Vec::new();
            for i in 3..6 {
                let r = tx.send_timeout(&msg(i), WAIT);
                if r.is_ok() {
                    sent.push(msg(i));
                }
                sends.push(kind(&r));
            }
            // Enough to need the tail: the producer must then see the corruption.
            let started = Instant::now();
            let big = loop {
                match tx.send_timeout(&[7; 2000], WAIT) {
                    Ok(()) => {
                        sent.push(vec![7; 2000]);
                        assert!(started.elapsed() < BOUND, "{how:?}: sends went on");
                    }
                    Err(e) => break e.kind(),
                }
            };
            let fl = kind(&tx.flush());
            let after = kind(&tx.try_send(b"after"));
            let started = Instant::now();
            drop(tx);
            assert!(started.elapsed() < BOUND);
            let (got, end) = drain(&mut rx, Receive::TryRecv);
            eprintln!(
                "{how:?} armed {armed}: sends after {sends:?}, big send {big:?}, flush {fl:?}, try_send {after:?}; \
                 consumer got {} of {} sent frames, then {end:?}",
                got.len(),
                sent.len()
            );
            assert_eq!(big, ErrorKind::InvalidData, "{how:?} armed {armed}");
            assert_eq!(fl, Some(ErrorKind::InvalidData), "{how:?} armed {armed}: flush");
            assert_eq!(after, Some(ErrorKind::InvalidData), "{how:?} armed {armed}: a send after flush failed");
            assert!(got.len() <= sent.len() && got[..] == sent[..got.len()], "{how:?} armed {armed}: not a prefix");
            assert_eq!(end, Err(ErrorKind::InvalidData), "{how:?} armed {armed}: the stream's end");
            assert_eq!(kind(&rx.try_recv().map(|f| f.is_some())), Some(ErrorKind::InvalidData));
        }
    }
}

/// A batching producer whose pending frames the consumer cannot see yet, while a forger thread
/// storms the head and the frame words: the frames the consumer takes are exactly the stream's
/// (no partial batch, no forged length past `max_frame_len`), and a `flush` or a drop after the
/// storm neither panics nor hangs.
#[test]
fn a_batching_producer_flushes_and_drops_cleanly_after_a_storm() {
    let _dog = watchdog("batching producer after a storm", HANG);
    for round in 0..4u64 {
        let (ring, mut tx, mut rx, f) = framed(16 * KIB);
        arm(&mut tx, &mut rx);
        tx.set_batch(1 + round as usize * 3);
        let stop = AtomicBool::new(false);
        let writes = AtomicU64::new(0);
        let until = Instant::now() + Duration::from_millis(60);
        let mode = if round % 2 == 0 { Mode::Cursors } else { Mode::Frames };
        std::thread::scope(|s| {
            s.spawn(|| forge(f, mode, seed() ^ round, &stop, until, &writes));
            let mut seq = 0;
            while Instant::now() < until {
                let started = Instant::now();
                let r = tx.send_timeout(&msg(seq), WAIT);
                assert!(started.elapsed() < CALL_BOUND);
                match r {
                    Ok(()) => seq += 1,
                    Err(e) => {
                        assert!(matches!(e.kind(), ErrorKind::InvalidData | ErrorKind::TimedOut), "{mode:?}: send: {e}")
                    }
                }
                if seq % 5 == 0 {
                    let _ = rx.try_recv().map(|fr| fr.map(|fr| assert!(fr.len() <= rx_max(&ring))));
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        let started = Instant::now();
        let fl = tx.flush();
        drop(tx);
        assert!(started.elapsed() < BOUND, "flush and drop took {:?}", started.elapsed());
        if f.is_poisoned() {
            assert_eq!(kind(&fl), Some(ErrorKind::InvalidData));
        }
        let (got, end) = drain(&mut rx, Receive::TryRecv);
        assert!(got.iter().all(|g| g.len() <= rx.max_frame_len()));
        assert!(matches!(end, Ok(()) | Err(ErrorKind::InvalidData)), "{mode:?}: {end:?}");
    }
}

/// A `FrameGrant` held while the tail is forged impossible and the poison flag raised: its
/// commit still publishes a whole frame, which the consumer (trusting stamps) receives exactly
/// before `InvalidData`; the producer fails once it needs the tail.
#[test]
fn a_frame_grant_held_across_forgeries_commits_a_whole_frame() {
    let _dog = watchdog("frame grant, forgeries", HANG);
    for flag in [false, true] {
        let (_ring, mut tx, mut rx, f) = framed(16 * KIB);
        arm(&mut tx, &mut rx);
        let m = msg(5);
        let mut g = tx.reserve(m.len()).unwrap();
        f.set_tail(u64::MAX);
        if flag {
            f.poison();
        }
        g.copy_from_slice(&m);
        let committed = g.commit();
        let r = rx.recv_timeout(BOUND).map(|fr| fr.map(|fr| fr.to_vec()));
        match committed {
            Ok(()) => assert_eq!(r.unwrap().as_deref(), Some(m.as_slice()), "flag {flag}: the committed frame"),
            Err(e) => panic!("flag {flag}: commit failed: {e}"),
        }
        let started = Instant::now();
        let e = loop {
            match tx.send_timeout(&[1; 1000], WAIT) {
                Ok(()) => assert!(started.elapsed() < BOUND, "sends went on past a forged tail"),
                Err(e) => break e,
            }
        };
        assert_eq!(e.kind(), ErrorKind::InvalidData, "flag {flag}: {e}");
        assert_eq!(kind(&tx.flush()), Some(ErrorKind::InvalidData));
    }
}

/// A batching producer with frames pending when its role is taken over (the claim word forged
/// to name another holding, its pid kept alive): `flush` reports `ConnectionAborted` and
/// publishes nothing (`docs::trust_model`: the end touches the header no more), the consumer
/// sees only what was published before and no end of stream (the slot names a live holder),
/// and dropping the producer closes nothing.
#[test]
fn set_batch_frames_pending_at_a_forged_take_over_are_not_published() {
    let _dog = watchdog("pending at take-over", HANG);
    let (_ring, mut tx, mut rx, f) = framed(16 * KIB);
    arm(&mut tx, &mut rx);
    tx.send(&msg(0)).unwrap();
    tx.set_batch(8);
    for i in 1..4 {
        tx.send(&msg(i)).unwrap();
    }
    let head = f.head();
    // The same pid and state, the next epoch: another holding of the producer's role.
    let claim = f.u64(OFF_PRODUCER).load(Ordering::SeqCst);
    f.u64(OFF_PRODUCER).store(claim + (1 << 8), Ordering::SeqCst);
    assert_eq!(kind(&tx.flush()), Some(ErrorKind::ConnectionAborted));
    assert_eq!(kind(&tx.send(&msg(4))), Some(ErrorKind::ConnectionAborted));
    assert_eq!(f.head(), head, "a producer whose role was taken published");
    drop(tx);
    assert_eq!(f.head(), head, "a producer whose role was taken published on drop");
    assert_eq!(f.u64(OFF_PRODUCER).load(Ordering::SeqCst), claim + (1 << 8), "the dropped end wrote its slot");
    assert_eq!(rx.recv_timeout(BOUND).unwrap().as_deref(), Some(msg(0).as_slice()));
    for _ in 0..2 {
        let r = rx.recv_timeout(Duration::from_millis(50)).map(|f| f.map(|f| f.len()));
        assert_eq!(kind(&r), Some(ErrorKind::TimedOut), "{r:?}");
    }
}

/// A forged take-over of the consumer's role from inside a `recv_batch` callback, and while a
/// `Frame` is held: the call completes (its frames delivered whole), at most its one release
/// reaches the header, and from then on the end answers `ConnectionAborted` and touches the
/// header no more: no release, no close when dropped (`docs::trust_model`).
#[test]
fn a_take_over_forged_during_a_batch_or_a_held_frame_stops_the_end() {
    let _dog = watchdog("take-over in flight", HANG);
    for held in [false, true] {
        let (_ring, mut tx, mut rx, f) = framed(16 * KIB);
        arm(&mut tx, &mut rx);
        let big = |i: u64| {
            let mut m = vec![i as u8; 1000];
            m[..8].copy_from_slice(&i.to_le_bytes());
            m
        };
        for i in 0..6 {
            tx.send(&big(i)).unwrap();
        }
        let claim = f.u64(OFF_CONSUMER).load(Ordering::SeqCst);
        let taken = claim + (1 << 8);
        let mut got = Vec::new();
        if held {
            let fr = rx.recv_timeout(BOUND).unwrap().unwrap();
            f.u64(OFF_CONSUMER).store(taken, Ordering::SeqCst);
            got.push(fr.to_vec());
        } else {
            let n = rx
                .recv_batch_timeout(BOUND, |fr| {
                    got.push(fr.to_vec());
                    if got.len() == 2 {
                        f.u64(OFF_CONSUMER).store(taken, Ordering::SeqCst);
                    }
                })
                .unwrap();
            assert_eq!(n, got.len());
            assert!(n >= 2);
        }
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g, &big(i as u64), "held {held}: frame {i}");
        }
        let tail = f.tail();
        for _ in 0..3 {
            let r = rx.try_recv().map(|f| f.map(|f| f.len()));
            assert_eq!(kind(&r), Some(ErrorKind::ConnectionAborted), "held {held}: {r:?}");
            let r = rx.recv_timeout(WAIT).map(|f| f.map(|f| f.len()));
            assert_eq!(kind(&r), Some(ErrorKind::ConnectionAborted), "held {held}: {r:?}");
        }
        assert_eq!(f.tail(), tail, "held {held}: released after the take-over was seen");
        drop(rx);
        assert_eq!(f.tail(), tail, "held {held}: the dropped end released");
        assert_eq!(f.u64(OFF_CONSUMER).load(Ordering::SeqCst), taken, "held {held}: the dropped end wrote its slot");
        // The producer still sees a consumer (the slot names a live holding): its sends go on
        // into the room it has, then time out.
        let started = Instant::now();
        let e = loop {
            match tx.send_timeout(&big(9), WAIT) {
                Ok(()) => assert!(started.elapsed() < BOUND),
                Err(e) => break e,
            }
        };
        assert_eq!(e.kind(), ErrorKind::TimedOut, "held {held}: {e}");
    }
}

/// Once `flush` has reported the shared poison flag (`InvalidData`), the producer has looked at
/// the flag: `InvalidData` from then on (`docs::trust_model`, "What is validated": "for its
/// peer as soon as the peer looks at the shared flag"; `flush`'s own doc: it "reports whether
/// the ring can still take frames"), for every send style, batched or not, and nothing more is
/// published.
// (Found by a review: every send style succeeded and published after `flush` had reported
// `InvalidData`, and the consumer trusting stamps took those frames: `check_usable` read the
// shared flag without latching it in the producer's cursor.)
#[test]
fn after_flush_reports_a_poisoned_ring_every_send_fails() {
    let _dog = watchdog("sends after flush saw the flag", HANG);
    for batch in [1, 8] {
        let (_ring, mut tx, mut rx, f) = framed(16 * KIB);
        arm(&mut tx, &mut rx);
        tx.set_batch(batch);
        tx.send(&msg(0)).unwrap();
        f.poison();
        assert_eq!(kind(&tx.flush()), Some(ErrorKind::InvalidData), "batch {batch}: flush");
        let head = f.head();
        let sends = [
            ("try_send", kind(&tx.try_send(&msg(1)))),
            ("send", kind(&tx.send(&msg(2)))),
            ("send_timeout", kind(&tx.send_timeout(&msg(3), WAIT))),
            ("send_batch", kind(&tx.send_batch(&[msg(4)]))),
            ("reserve", kind(&tx.reserve(8).and_then(|g| g.commit()))),
            ("flush", kind(&tx.flush())),
        ];
        let published = f.head().wrapping_sub(head);
        let (got, end) = drain(&mut rx, Receive::TryRecv);
        eprintln!(
            "batch {batch}: after flush reported InvalidData: {sends:?}, {published} bytes published; \
             the consumer then got {} frames, then {end:?}",
            got.len()
        );
        for (what, k) in sends {
            assert_eq!(k, Some(ErrorKind::InvalidData), "batch {batch}: {what} after flush reported InvalidData");
        }
        assert_eq!(published, 0, "batch {batch}: frames published after flush reported InvalidData");
    }
}

/// A frame stamped above the head by a forger (never covered by the head), taken by the
/// trusting consumer, which then turns into a byte end: the byte end reports nothing beyond
/// the capacity and reads nothing while the head stays behind it (`WouldBlock`); once the
/// honest producer's head passes it (the producer wrote past the forged release before it
/// looked at the tail, so the release is valid to it), the byte end reads only what lies below
/// that head (the stream is a lie from the forged frame on, as `docs::framing` allows).
#[test]
fn a_frame_stamped_above_the_head_then_into_inner_reads_nothing_out_of_place() {
    let _dog = watchdog("stamped above head, into_inner", HANG);
    let (_ring, mut tx, mut rx, f) = framed(16 * KIB);
    arm(&mut tx, &mut rx);
    let q = f.head();
    f.word(q + 8).store(u64::from_le_bytes(*b"forged!!"), Ordering::SeqCst);
    f.word(q + 16).store(0, Ordering::SeqCst);
    f.word(q).store(stamped_word(q, 8), Ordering::SeqCst);
    assert_eq!(rx.try_recv().unwrap().as_deref(), Some(&b"forged!!"[..]), "a stamped frame is taken");
    let mut raw = rx.into_inner();
    assert!(raw.len() <= raw.capacity(), "len {}", raw.len());
    let mut buf = vec![0u8; 4096];
    let r = raw.try_read(&mut buf);
    assert_eq!(kind(&r), Some(ErrorKind::WouldBlock), "{r:?}");
    assert_eq!(f.tail(), q + 16, "the release went past the head");
    tx.send(&[5; 1000]).unwrap();
    let head = f.head();
    assert_eq!(head, q + 1008);
    let mut total = 0;
    loop {
        match raw.try_read(&mut buf) {
            Ok(0) => panic!("end of stream"),
            Ok(n) => total += n,
            Err(e) => {
                assert!(matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::InvalidData), "{e}");
                break;
            }
        }
        assert!(total as u64 <= head - (q + 16), "read {total} bytes past the head");
    }
    assert_eq!(total as u64, head - (q + 16));
}

/// The same question for a consumer that died (its process exited holding the role): once
/// `flush` has reported it (`BrokenPipe`), what do the sends say? Prints the answers; asserts
/// only what `flush`'s doc promises (`BrokenPipe`, the frames published) and that no send
/// panics or hangs.
#[test]
fn sends_after_flush_reported_a_dead_consumer() {
    let _dog = watchdog("sends after a dead consumer", HANG);
    let ring = RingOptions::new().capacity(16 * KIB).spin_budget(Duration::from_micros(5)).shared().unwrap();
    let mut tx = ring.clone().into_producer().unwrap().into_framed();
    let r2 = ring.clone();
    let mut child = spawn_child(move || {
        let rx = r2.into_consumer().unwrap();
        // Dies holding the role (no close).
        std::mem::forget(rx);
        0
    });
    assert_eq!(child.wait_within(BOUND), 0);
    tx.set_batch(4);
    tx.send(&msg(0)).unwrap();
    let fl = kind(&tx.flush());
    assert_eq!(fl, Some(ErrorKind::BrokenPipe));
    let sends = [
        ("try_send", kind(&tx.try_send(&msg(1)))),
        ("send_timeout", kind(&tx.send_timeout(&msg(2), WAIT))),
        ("flush", kind(&tx.flush())),
    ];
    eprintln!("after flush reported a dead consumer: {sends:?}");
    for (_, k) in sends {
        assert!(matches!(k, None | Some(ErrorKind::BrokenPipe)), "{sends:?}");
    }
    drop(tx);
    drop(ring);
}

fn rx_max(ring: &SharedRing) -> usize {
    ring.capacity() - 8
}

// ---------------------------------------------------------------------------------------------
// 5. Byte ends: `fill_buf` + `consume` and grants held open while the forger runs.

/// The byte stream's byte at `pos`.
fn byte_at(pos: u64) -> u8 {
    (pos.wrapping_mul(0x9E37_79B9) >> 7) as u8
}

fn byte_storm(mode: Mode, seed: u64, ms: u64) -> Result<String, String> {
    use std::io::BufRead;
    let ring = RingOptions::new().capacity(16 * KIB).spin_budget(Duration::from_micros(5)).shared().unwrap();
    let cap = ring.capacity();
    let mut tx = ring.clone().into_producer().unwrap();
    let mut rx = ring.clone().into_consumer().unwrap();
    let f = Forge { hdr: tx.write_grant(1).unwrap().as_ptr() as usize - page_size(), cap };
    let exact = matches!(mode, Mode::Waiters | Mode::Quiet);
    let stop = AtomicBool::new(false);
    let writes = AtomicU64::new(0);
    let until = Instant::now() + Duration::from_millis(ms);
    // `fill_buf` has no timeout: the producer goes on writing until the consumer is done, so a
    // last `fill_buf` on an empty ring ends (with a forged close it might not: not used then).
    let consumer_done = AtomicBool::new(false);
    let (p, c) = std::thread::scope(|s| {
        let forger = s.spawn(|| forge(f, mode, seed, &stop, until, &writes));
        let prod = s.spawn(|| {
            let mut rng = Rng::new(seed ^ 1);
            let mut side = Side::default();
            let mut pos = 0u64;
            let mut chunk = vec![0u8; cap];
            while !consumer_done.load(Ordering::Relaxed) && Instant::now() < until + BOUND {
                let started = Instant::now();
                let r = if rng.up_to(1) == 0 {
                    let n = 1 + rng.up_to(cap - 1);
                    for (i, b) in chunk[..n].iter_mut().enumerate() {
                        *b = byte_at(pos + i as u64);
                    }
                    tx.write_timeout(&chunk[..n], WAIT)
                } else {
                    match tx.write_grant_timeout(1 + rng.up_to(cap / 2), WAIT) {
                        Ok(mut g) => {
                            if g.len() > cap {
                                return Err(format!("byte producer: a grant of {} bytes", g.len()));
                            }
                            let len = g.len();
                            for (i, b) in g.iter_mut().enumerate() {
                                *b = byte_at(pos + i as u64);
                            }
                            // Held while the forger runs.
                            for _ in 0..rng.up_to(3000) {
                                std::hint::spin_loop();
                            }
                            let n = rng.up_to(len);
                            g.commit(n).map(|()| n)
                        }
                        Err(e) => Err(e),
                    }
                };
                side.count(&r, started, "byte producer")?;
                if let Ok(n) = r {
                    pos += n as u64;
                    side.frames += n as u64;
                }
            }
            Ok::<_, String>(side)
        });
        let c = (|| {
            let mut rng = Rng::new(seed ^ 2);
            let mut side = Side::default();
            let mut pos = 0u64;
            let mut buf = vec![0u8; cap];
            let mut sticky = false;
            while Instant::now() < until {
                let started = Instant::now();
                let r: std::io::Result<usize> = match rng.up_to(2) {
                    0 if mode != Mode::Closes => match rx.fill_buf() {
                        Ok(b) => {
                            if b.len() > cap {
                                return Err(format!("fill_buf lent {} bytes", b.len()));
                            }
                            for _ in 0..rng.up_to(3000) {
                                std::hint::spin_loop();
                            }
                            let n = rng.up_to(b.len());
                            if exact && b[..n].iter().enumerate().any(|(i, &x)| x != byte_at(pos + i as u64)) {
                                return Err(format!("fill_buf: wrong bytes at {pos}"));
                            }
                            std::hint::black_box(b.iter().map(|&x| u64::from(x)).sum::<u64>());
                            rx.consume(n);
                            Ok(n)
                        }
                        Err(e) => Err(e),
                    },
                    0 | 1 => match rx.read_grant_timeout(1, WAIT) {
                        Ok(g) => {
                            if g.len() > cap {
                                return Err(format!("read grant of {} bytes", g.len()));
                            }
                            for _ in 0..rng.up_to(3000) {
                                std::hint::spin_loop();
                            }
                            let n = rng.up_to(g.len());
                            if exact && g[..n].iter().enumerate().any(|(i, &x)| x != byte_at(pos + i as u64)) {
                                return Err(format!("read grant: wrong bytes at {pos}"));
                            }
                            std::hint::black_box(g.iter().map(|&x| u64::from(x)).sum::<u64>());
                            g.release(n).map(|()| n)
                        }
                        Err(e) => Err(e),
                    },
                    _ => {
                        let want = 1 + rng.up_to(cap - 1);
                        match rx.read_timeout(&mut buf[..want], WAIT) {
                            Ok(n) if n > want => return Err(format!("read {n} into {want}")),
                            Ok(0) => Err(ErrorKind::UnexpectedEof.into()),
                            Ok(n) => {
                                if exact && buf[..n].iter().enumerate().any(|(i, &x)| x != byte_at(pos + i as u64)) {
                                    return Err(format!("read: wrong bytes at {pos}"));
                                }
                                Ok(n)
                            }
                            Err(e) => Err(e),
                        }
                    }
                };
                side.count(&r, started, "byte consumer")?;
                match &r {
                    Ok(n) if sticky && *n > 0 => return Err(format!("byte consumer: {n} bytes after InvalidData")),
                    Ok(n) => {
                        pos += *n as u64;
                        side.frames += *n as u64;
                    }
                    Err(e) if e.kind() == ErrorKind::InvalidData => sticky = true,
                    Err(e) if sticky && e.kind() != ErrorKind::ConnectionAborted => {
                        return Err(format!("byte consumer: {:?} after InvalidData", e.kind()))
                    }
                    Err(_) => {}
                }
            }
            Ok::<_, String>(side)
        })();
        consumer_done.store(true, Ordering::Relaxed);
        let p = prod.join().map_err(|_| "the byte producer panicked".to_string());
        stop.store(true, Ordering::Relaxed);
        forger.join().map_err(|_| "the forger panicked".to_string())?;
        Ok::<_, String>((p??, c?))
    })?;
    let what = format!("bytes {mode:?}: producer {p:?}; consumer {c:?}");
    if c.invalid > 0 {
        let mut buf = [0u8; 64];
        let again = kind(&rx.try_read(&mut buf));
        if again != Some(ErrorKind::InvalidData)
            && !(mode == Mode::Closes && again == Some(ErrorKind::ConnectionAborted))
        {
            return Err(format!("{what}: consumer after the storm: {again:?}"));
        }
    }
    if exact {
        if p.invalid + c.invalid + p.closed + c.closed != 0 || f.is_poisoned() || c.frames == 0 {
            return Err(format!("{what}: not a clean stream"));
        }
        // Everything committed arrives, exactly.
        let mut got = c.frames;
        let mut buf = vec![0u8; cap];
        let deadline = Instant::now() + BOUND;
        while got < p.frames && Instant::now() < deadline {
            match rx.read_timeout(&mut buf, WAIT) {
                Ok(0) => return Err(format!("{what}: drain: end of stream")),
                Ok(n) => {
                    if buf[..n].iter().enumerate().any(|(i, &x)| x != byte_at(got + i as u64)) {
                        return Err(format!("{what}: drain: wrong bytes at {got}"));
                    }
                    got += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::TimedOut => {}
                Err(e) => return Err(format!("{what}: drain: {e}")),
            }
        }
        if got != p.frames {
            return Err(format!("{what}: committed {} bytes, received {got}", p.frames));
        }
    }
    drop((tx, rx, ring));
    Ok(what)
}

/// Byte ends under the same storms: `fill_buf` slices and grants held while the forger runs
/// (no slice beyond the capacity, no crash, no call over a second), no byte after
/// `InvalidData`, and with only waiter words forged the stream exact and complete.
#[test]
fn byte_calls_in_flight_survive_a_forging_thread() {
    let mut child = spawn_child(|| {
        let _dog = watchdog("byte storm", HANG);
        for round in 0..2 * common::scale() {
            for mode in [Mode::Quiet, Mode::Waiters, Mode::Cursors, Mode::Plausible, Mode::Closes] {
                let s = seed() ^ (round as u64) << 16 ^ mode as u64;
                match byte_storm(mode, s, 120) {
                    Ok(what) => eprintln!("{what}"),
                    Err(e) => {
                        eprintln!("byte storm seed {s}: {e}");
                        return 1;
                    }
                }
            }
        }
        0
    });
    assert_eq!(child.wait_within(HANG), 0, "byte storm: see stderr");
}

// ---------------------------------------------------------------------------------------------
// 4. The async ends, parked while the forger runs.

#[cfg(feature = "tokio")]
mod async_storm {
    use super::*;
    use tokio::time::timeout;

    /// The other side stops at the storm's deadline: a call that started this long before it
    /// and did not end within `CALL_BOUND` hung while its peer was still active.
    const MARGIN: Duration = Duration::from_millis(100);

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// Whether a call that started at `started` and did not end within `CALL_BOUND` must count
    /// as a hang: `strict` (no forgery may stall the stream) and the peer ran all along.
    fn hung(strict: bool, started: Instant, until: Instant) -> bool {
        strict && started + CALL_BOUND + MARGIN < until
    }

    fn producer(tx: FramedProducer, until: Instant, seed: u64, strict: bool) -> Result<(Side, FramedProducer), String> {
        let mut atx = tx.into_async().map_err(|e| format!("into_async: {e}"))?;
        let mut rng = Rng::new(seed);
        let mut s = Side::default();
        let mut seq = 0u64;
        rt().block_on(async {
            while Instant::now() < until {
                let started = Instant::now();
                let op = rng.up_to(3);
                if op == 0 {
                    atx.get_mut().set_batch(1 + rng.up_to(5));
                }
                let m = [msg(seq), msg(seq + 1), msg(seq + 2)];
                let call = async {
                    match op {
                        0 => atx.send(&m[0]).await.map(|()| 1u64),
                        1 => atx.send_batch(&m).await.map(|n| n as u64),
                        _ => match atx.reserve(m[0].len()).await {
                            Ok(mut g) => {
                                g.copy_from_slice(&m[0]);
                                g.commit().map(|()| 1)
                            }
                            Err(e) => Err(e),
                        },
                    }
                };
                match timeout(CALL_BOUND, call).await {
                    Ok(r) => {
                        if strict {
                            s.count(&r, started, "async producer")?
                        } else {
                            s.tally(&r, started, "async producer")?
                        }
                        if let Ok(n) = r {
                            seq += n;
                            s.frames += n;
                        }
                    }
                    Err(_) if hung(strict, started, until) => {
                        return Err(format!("async producer: a send parked {CALL_BOUND:?} while the consumer ran"));
                    }
                    Err(_) => s.waits += 1,
                }
            }
            Ok::<_, String>(())
        })?;
        Ok((s, atx.into_inner()))
    }

    fn consumer(rx: FramedConsumer, until: Instant, seed: u64, strict: bool) -> Result<(Side, FramedConsumer), String> {
        let mut arx = rx.into_async().map_err(|e| format!("into_async: {e}"))?;
        let max = arx.get_ref().max_frame_len();
        let mut rng = Rng::new(seed);
        let mut s = Side::default();
        let mut next = 0u64;
        let mut sticky = false;
        let check = |got: &[u8], next: &mut u64| -> Result<(), String> {
            if got.len() > max {
                return Err(format!("async consumer: a frame of {} bytes (max {max})", got.len()));
            }
            if strict && got != msg(*next).as_slice() {
                return Err(format!("async consumer: frame {next} wrong ({} bytes)", got.len()));
            }
            *next += 1;
            Ok(())
        };
        rt().block_on(async {
            while Instant::now() < until {
                let started = Instant::now();
                let r: Result<std::io::Result<u64>, _> = if rng.up_to(1) == 0 {
                    match timeout(CALL_BOUND, arx.recv()).await {
                        Ok(Ok(Some(fr))) => {
                            check(&fr, &mut next)?;
                            Ok(Ok(1))
                        }
                        Ok(Ok(None)) => Ok(Err(ErrorKind::UnexpectedEof.into())),
                        Ok(Err(e)) => Ok(Err(e)),
                        Err(e) => Err(e),
                    }
                } else {
                    let mut bad = None;
                    let mut calls = 0u64;
                    let r = timeout(
                        CALL_BOUND,
                        arx.recv_batch(|fr| {
                            calls += 1;
                            if let Err(e) = check(fr, &mut next) {
                                bad.get_or_insert(e);
                            }
                        }),
                    )
                    .await;
                    if let Some(e) = bad {
                        return Err(e);
                    }
                    match r {
                        Ok(Ok(n)) if n as u64 != calls => {
                            return Err(format!("async consumer: recv_batch said {n}, called {calls}"))
                        }
                        Ok(Ok(0)) => Ok(Err(ErrorKind::UnexpectedEof.into())),
                        Ok(r) => Ok(r.map(|n| n as u64)),
                        Err(e) => Err(e),
                    }
                };
                match r {
                    Ok(r) => {
                        if strict {
                            s.count(&r, started, "async consumer")?
                        } else {
                            s.tally(&r, started, "async consumer")?
                        }
                        match &r {
                            Ok(n) if sticky => return Err(format!("async consumer: {n} frames after InvalidData")),
                            Ok(n) => s.frames += n,
                            Err(e) if e.kind() == ErrorKind::InvalidData => sticky = true,
                            Err(e) if sticky => {
                                return Err(format!("async consumer: {:?} after InvalidData", e.kind()))
                            }
                            Err(_) => {}
                        }
                    }
                    Err(_) if hung(strict, started, until) => {
                        return Err(format!("async consumer: a receive parked {CALL_BOUND:?} while the producer ran"));
                    }
                    Err(_) => s.waits += 1,
                }
            }
            Ok::<_, String>(())
        })?;
        if strict && s.frames != next {
            return Err(format!("async consumer: counted {} frames, checked {next}", s.frames));
        }
        Ok((s, arx.into_inner()))
    }

    fn storm(mode: Mode, seed: u64, ms: u64) -> Result<String, String> {
        let (ring, mut tx, mut rx, f) = framed(16 * KIB);
        arm(&mut tx, &mut rx);
        let strict = matches!(mode, Mode::Waiters | Mode::Quiet);
        let stop = AtomicBool::new(false);
        let writes = AtomicU64::new(0);
        let until = Instant::now() + Duration::from_millis(ms);
        let ((p, mut tx), (c, mut rx)) = std::thread::scope(|s| {
            let forger = s.spawn(|| forge(f, mode, seed, &stop, until, &writes));
            let prod = s.spawn(move || producer(tx, until, seed ^ 1, strict));
            let c = consumer(rx, until, seed ^ 2, strict);
            let p = prod.join().map_err(|_| "the async producer panicked".to_string());
            stop.store(true, Ordering::Relaxed);
            forger.join().map_err(|_| "the forger panicked".to_string())?;
            Ok::<_, String>((p??, c?))
        })?;
        let what = format!("async {mode:?}: producer {p:?}; consumer {c:?}");
        if c.invalid > 0 {
            let again = kind(&rx.try_recv().map(|f| f.is_some()));
            if again != Some(ErrorKind::InvalidData) {
                return Err(format!("{what}: consumer after the storm: {again:?}"));
            }
        }
        if strict {
            if p.invalid + c.invalid + p.closed + c.closed != 0 || f.is_poisoned() || c.frames == 0 {
                return Err(format!("{what}: not a clean stream"));
            }
            tx.flush().map_err(|e| format!("{what}: flush {e}"))?;
            let mut got = c.frames;
            let deadline = Instant::now() + BOUND;
            while got < p.frames && Instant::now() < deadline {
                match rx.recv_timeout(WAIT) {
                    Ok(Some(fr)) if *fr == *msg(got) => got += 1,
                    Ok(Some(fr)) => return Err(format!("{what}: drain: frame {got} wrong ({} bytes)", fr.len())),
                    Ok(None) => return Err(format!("{what}: drain: end of stream")),
                    Err(e) if e.kind() == ErrorKind::TimedOut => {}
                    Err(e) => return Err(format!("{what}: drain: {e}")),
                }
            }
            if got != p.frames {
                return Err(format!("{what}: sent {} frames, received {got}", p.frames));
            }
        }
        drop((tx, rx, ring));
        Ok(what)
    }

    /// A parked async `recv` (nothing sent) whose producer's close is forged without a wake-up
    /// ends with the end of the stream, and a parked async `send` (ring full) whose consumer's
    /// close is forged ends with `BrokenPipe`: within the helper's checks (100 ms between
    /// threads), far inside the bound.
    #[test]
    fn parked_async_framed_ends_notice_a_forged_close_without_a_wake_up() {
        let _dog = watchdog("parked async, forged close", HANG);
        let rt = rt();
        for side in ["recv", "send"] {
            let (_ring, mut tx, mut rx, f) = framed(16 * KIB);
            arm(&mut tx, &mut rx);
            if side == "send" {
                while tx.try_send(&[3; 500]).is_ok() {}
            }
            let slot = if side == "recv" { OFF_PRODUCER } else { OFF_CONSUMER };
            let forger = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                let w = f.u64(slot).load(Ordering::SeqCst);
                f.u64(slot).store(w & !0xff | 2, Ordering::SeqCst);
                Instant::now()
            });
            let r = if side == "recv" {
                let mut arx = rx.into_async().unwrap();
                let r =
                    rt.block_on(async { timeout(BOUND, async { arx.recv().await.map(|f| f.map(|f| f.len())) }).await });
                rx = arx.into_inner();
                r.map(|r| kind(&r).map_or_else(|| format!("{r:?}"), |k| format!("{k:?}")))
            } else {
                let mut atx = tx.into_async().unwrap();
                let r = rt.block_on(async { timeout(BOUND, atx.send(&[4; 500])).await });
                tx = atx.into_inner();
                r.map(|r| kind(&r).map_or_else(|| format!("{r:?}"), |k| format!("{k:?}")))
            };
            let forged = forger.join().unwrap();
            let late = forged.elapsed();
            let r = r.unwrap_or_else(|_| panic!("{side}: still parked {BOUND:?} after the forged close"));
            let want = if side == "recv" { "Ok(None)" } else { "BrokenPipe" };
            assert_eq!(r, want, "{side}");
            assert!(late < BOUND, "{side}: {late:?} after the forgery");
            drop((tx, rx));
        }
    }

    /// The async framed ends (send, send_batch, reserve; recv, recv_batch), parked and woken
    /// while a thread forges waiter words (each call must end within a second while its peer
    /// runs, the stream exact), cursors, frame words: no crash, only documented errors, no
    /// frame over `max_frame_len`, none after `InvalidData`.
    #[test]
    fn async_framed_calls_in_flight_survive_a_forging_thread() {
        let mut child = spawn_child(|| {
            let _dog = watchdog("async storm", HANG);
            for mode in [Mode::Quiet, Mode::Waiters, Mode::Plausible, Mode::Frames, Mode::Cursors] {
                let s = seed() ^ mode as u64;
                match storm(mode, s, 1500) {
                    Ok(what) => eprintln!("{what}"),
                    Err(e) => {
                        eprintln!("async storm seed {s}: {e}");
                        return 1;
                    }
                }
            }
            0
        });
        assert_eq!(child.wait_within(HANG), 0, "async storm: see stderr");
    }
}
