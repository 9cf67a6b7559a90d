//! Chaos over the restart / take-over path (`docs::lifecycle`, "Restart"): producers and
//! consumers SIGKILLed at random moments and at chosen points, newcomers taking their role over
//! one after another, framed and byte generations alternating, async ends too, and every
//! message checking itself.
//!
//! Each scenario runs on a ring of two pages (so it holds at 4, 16 and 64 KiB pages alike),
//! once inherited across `fork` and once as a memfd ring that the children get only by its
//! descriptor over a socket. Every holder is a forked child that `_exit`s (or is killed); the
//! parent keeps the other end for the whole run.
//!
//! - **A, `chaos_producers_killed_and_taken_over`**: the parent holds the consumer; 14
//!   producer generations take the role over one after another, each framed or byte, killed at
//!   a random moment, with a grant open, inside a run of `send_batch`es, blocked on a full
//!   ring, with frames pending under `set_batch`, or early (often in the middle of its own
//!   take-over); the last one finishes and closes. Message (g, s) is `body(seed, g, s)`,
//!   deterministic in length and bytes, and one of 16 bytes or more carries (g, s, len) in its
//!   first 12; a byte generation writes `[len u32][message]` records through whole grants. The
//!   consumer checks every message: intact, really sent, never one from an open grant, no
//!   duplicate, in order within its generation, no generation after a later one began; every
//!   message whose send returned Ok (acked in shared memory) arrives; a death is seen
//!   (`UnexpectedEof`) within [`BOUND`] of the kill; it turns framed or byte with the
//!   generations (after seeing the death, everything committed read), or restarts fast
//!   without seeing the death at all.
//! - **B, `chaos_consumers_killed_and_taken_over`**: the parent holds the producer; 10 consumer
//!   children take the role over one after another, killed at a random moment, holding a
//!   `Frame` or a `ReadGrant`, inside `recv_batch`, blocked on an empty ring, or early. Each
//!   checks that it resumes at a message boundary no later than what earlier consumers took
//!   (at least once: nothing lost), then gap-free and intact to the end of the stream. After
//!   about half of the kills the producer must see the death (`BrokenPipe`) within [`BOUND`]
//!   before the next consumer starts; after the others the newcomer races that detection.
//! - **C, `chaos_async_producers_killed_and_taken_over`**: as A with async framed producers
//!   (killed at random, parked in `send` on a full ring, or idle while the parent's async
//!   receive is parked) and an async consumer whose receives are often cancelled by a timeout:
//!   a cancelled receive loses nothing, and a death reaches a parked receive within [`BOUND`].
//! - `chaos_leaves_no_descriptor_mapping_or_child_behind`: one seed of every scenario in a
//!   forked child that compares its descriptors and `/proc/self/maps` before and after, and
//!   finds no holder left (running or a zombie).
//!
//! **Seeds**: [`SEEDS`], fixed, so a run is the same plan every time (the kills land where the
//! scheduler puts them, so not the same run). A failure stops its test and names its seed;
//! `CHAOS_SEED=n` runs that seed alone (`CHAOS_SEED=a..b` a range), e.g.
//! `CHAOS_SEED=3 cargo test --release --all-features --test chaos`. `MIRROR_RING_LONG=k`
//! (common's `scale`) runs `k` times as many seeds. The whole file takes about 6 s in release
//! and 8 s in debug (its waits are sleeps, not work); a death must be seen within [`BOUND`],
//! 5 s (the design figure is 25 ms), and each test has a 60 s watchdog, so a hang fails CI
//! instead of stalling it.
//!
//! **What it rarely reaches.** A kill lands where the scheduler happens to stop the child; one
//! window is a single store wide and seldom hit: a framed producer that dies between the stamp
//! of a publish's first frame and its head store, leaving complete frames above the head that
//! the consumer may already have taken (`Sender::resume` covers them at the take-over;
//! mutating it away goes unnoticed here). A long run (`MIRROR_RING_LONG=3`) hit it once, while
//! the consumer was watching head behind a batch's unstamped first header: the consumer
//! reported the death without those frames, turned into a byte end, and read them as a record
//! "nobody committed" once a byte newcomer covered them. The forged-state tests in
//! `tests/framing_epoch.rs` build that state by hand:
//! `a_byte_newcomer_never_lends_a_frame_the_consumer_holds`,
//! `a_byte_newcomer_never_lends_a_batch_frame_the_consumer_holds`,
//! `a_newcomer_that_asked_for_room_first_loses_no_frame`, and `tests/after_death.rs`:
//! `a_batch_stamped_while_the_consumer_watched_head_is_delivered_before_the_death`. Nor does
//! it forge deaths or role slots (`tests/restart.rs`, `tests/hostile.rs`) or race takers
//! against each other (`tests/restart.rs`).

mod common;

use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{
    children_of_this_thread, open_fds_but_peer_poll, our_mappings, page_size, scale, spawn_child, watchdog, Child, Rng,
    SharedPage,
};
use mirror_ring::{Backend, Consumer, FramedConsumer, RingOptions, SharedRing};

const SEEDS: [u64; 6] = [1, 2, 3, 0x5eed, 0xdead_beef, 77];
/// A blocking receive must return within this after its producer died.
const BOUND: Duration = Duration::from_secs(5);
const UNCOMMITTED: u32 = 0x8000_0000;

/// The seeds to run: `CHAOS_SEED` (one seed `n`, or a range `a..b`), else [`SEEDS`] and, for a
/// long run (`MIRROR_RING_LONG=k`, common's [`scale`]), `k - 1` times as many more.
fn seeds() -> Vec<u64> {
    match std::env::var("CHAOS_SEED") {
        Ok(s) => match s.split_once("..") {
            Some((a, b)) => (a.parse().unwrap()..b.parse().unwrap()).collect(),
            None => vec![s.parse().unwrap()],
        },
        Err(_) => SEEDS.iter().copied().chain((SEEDS.len()..SEEDS.len() * scale()).map(|i| mix(i as u64))).collect(),
    }
}

/// A shared ring as every scenario makes it: two pages (small, so it is often full and every
/// size class of message wraps at the seam), anonymous shared memory inherited by the children
/// or (`memfd`) a memfd ring the children get only by its descriptor over a socket, as an
/// unrelated process would (then `dont_fork`: a forked child must not use the inherited copy).
fn make_ring(memfd: bool) -> Result<SharedRing, String> {
    RingOptions::new()
        .capacity(2 * page_size())
        .backend(if memfd { Backend::Memfd } else { Backend::Auto })
        .dont_fork(memfd)
        .shared()
        .map_err(|e| format!("the ring: {e}"))
}

/// Forks the next holder of a role in `ring` (see [`make_ring`] for `memfd`), which runs `f`
/// on the ring and `_exit`s with what it returns (5: the descriptor never came).
fn spawn_holder(ring: &SharedRing, memfd: bool, f: impl FnOnce(SharedRing) -> i32) -> Result<Child, String> {
    let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let inherited = ring.clone();
    let child = spawn_child(move || {
        let ring = if memfd {
            drop(inherited);
            match SharedRing::recv_from(&theirs) {
                Ok(r) => r,
                Err(_) => return 5,
            }
        } else {
            inherited
        };
        f(ring)
    });
    if memfd {
        ring.send_to(&ours).map_err(|e| format!("send_to: {e}"))?;
    }
    Ok(child)
}

/// In a holder child (`who`): gets its end. The `first` holder claims the role; every later
/// one takes it over from the one before, which was killed, retrying while the death cannot be
/// told yet (`WouldBlock`), and claiming it afresh if no holder ever claimed it (`NotFound`:
/// every earlier one was killed before its claim). `None` once it has reported its failure.
fn claim_end<E>(
    ring: SharedRing,
    first: bool,
    claim: fn(SharedRing) -> std::io::Result<E>,
    take_over: fn(&SharedRing) -> std::io::Result<E>,
    page: &SharedPage,
    who: &str,
) -> Option<E> {
    let mut tries = 0u64;
    let r = loop {
        let r = if first { claim(ring.clone()) } else { take_over(&ring) };
        match r {
            Ok(end) => break Ok(end),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                break claim(ring.clone()).map_err(|e| format!("claim after NotFound: {}", kind_str(&e)))
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                tries += 1;
                if tries == 5000 {
                    child_say(&format!(
                        "{who} (pid {}): take-over still WouldBlock after 1 s: {e}",
                        std::process::id()
                    ));
                }
                std::thread::sleep(Duration::from_micros(200))
            }
            Err(e) => break Err(format!("take over: {}", kind_str(&e))),
        }
    };
    r.map_err(|e| child_failed(page, who, e)).ok()
}

/// In a holder child: a line on stderr, written to the stream itself, not with `eprintln!`,
/// whose output the test harness captures in a buffer that dies with the child (a soak saw
/// "the child failed before ready" and no reason).
fn child_say(line: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
}

/// In a holder child (`who`): reports its own failure (on stderr, and in word [`ERR`]).
fn child_failed(page: &SharedPage, who: &str, what: impl std::fmt::Display) {
    child_say(&format!("{who}: {what}"));
    page.word(ERR).store(1, Ordering::SeqCst);
}

/// In the parent: reaps holder `child` (20 s at most after its kill or its end); an error if it
/// reported its own failure, or if it was the `finishing` one (never killed) and exited other
/// than 0.
fn reap_holder(child: &mut Child, page: &SharedPage, finishing: bool) -> Result<(), String> {
    let status = child.reap_within(Duration::from_secs(20))?;
    if page.word(ERR).load(Ordering::SeqCst) != 0 {
        return Err(format!("the child failed (status {status}; its message above)"));
    }
    if finishing && status != 0 {
        return Err(format!("the finishing child exited {status}"));
    }
    Ok(())
}

/// Writes message `msg` as a byte generation's record at the start of `grant`: its length (u32
/// little-endian), then its bytes (`4 + msg.len()` in all; the receivers read it back in
/// `recv_one` and `consumer_child`).
fn put_record(grant: &mut [u8], msg: &[u8]) {
    grant[..4].copy_from_slice(&(msg.len() as u32).to_le_bytes());
    grant[4..4 + msg.len()].copy_from_slice(msg);
}

/// A message that must never arrive: message (g, s) (or (g, 0) if that one is too short to
/// carry its id) marked uncommitted, for a grant the holder dies with, open.
fn uncommitted_body(seed: u64, g: u32, s: u32, max: usize) -> Vec<u8> {
    let mut b = body(seed, g, s, max);
    if b.len() < 16 {
        b = body(seed, g, 0, max);
    }
    b[0..4].copy_from_slice(&(g | UNCOMMITTED).to_le_bytes());
    b
}

/// In a holder child that has reached its point: waits for its SIGKILL.
fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// In the parent: waits until word `w` of `page` reads `want`, 20 s at most; fails at once when
/// a child has reported its own error (word [`ERR`]). A timeout says what the `child`'s threads
/// were doing.
fn wait_word(page: &SharedPage, child: &Child, w: usize, want: u64, what: &str) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(20);
    while page.word(w).load(Ordering::SeqCst) != want {
        if page.word(ERR).load(Ordering::SeqCst) != 0 {
            return Err(format!("the child failed before {what}"));
        }
        if Instant::now() > until {
            return Err(format!("timed out waiting for {what} (the child's threads: {})", child.threads()));
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    Ok(())
}

/// What a scenario did, summed over the seeds for the report line.
#[derive(Default)]
struct Tally {
    kills: u64,
    takeovers: u64,
    msgs: u64,
}

/// Runs `scenario` for every seed and every case under a watchdog, and stops at the first
/// failure: its message names the seed (replay it with `CHAOS_SEED`). Then checks that no
/// child is left behind (every holder killed or finished, and reaped).
fn run_chaos<C: Copy + std::fmt::Debug>(name: &str, cases: &[C], scenario: impl Fn(u64, C) -> Result<Tally, String>) {
    let _dog = watchdog(name, Duration::from_secs(60));
    let t0 = Instant::now();
    let mut sum = Tally::default();
    for seed in seeds() {
        for &case in cases {
            let t = Instant::now();
            match scenario(seed, case) {
                Ok(n) => {
                    sum.kills += n.kills;
                    sum.takeovers += n.takeovers;
                    sum.msgs += n.msgs;
                }
                Err(e) => panic!("{name}: {e}\n(replay this seed alone: CHAOS_SEED={seed})"),
            }
            if t.elapsed() > Duration::from_secs(2) {
                eprintln!("{name}: seed {seed} {case:?}: slow, {:?}", t.elapsed());
            }
        }
    }
    let left = children_of_this_thread();
    assert!(left.is_empty(), "{name}: children left behind: {left:?}");
    eprintln!("{name}: {} kills, {} take-overs, {} messages, {:?}", sum.kills, sum.takeovers, sum.msgs, t0.elapsed());
}

/// In the parent's killer thread of scenarios A and C: `reach` the holder's kill point, kill it
/// (unless it is the `finishing` one), tell the consumer loop (`killed`) and let it go on
/// (unpause). Returns what `reach` did.
fn kill_at_point(
    child: &Child,
    page: &SharedPage,
    killed: &AtomicBool,
    finishing: bool,
    reach: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let r = reach();
    if !finishing {
        child.kill();
    }
    killed.store(true, Ordering::SeqCst);
    page.word(W_PAUSE).store(0, Ordering::SeqCst);
    r
}

/// The longest message of `mode` in a ring of `cap` bytes: a frame's payload
/// (`max_frame_len`: the ring less the 8-byte frame header) or a byte record's (the ring less
/// its 4-byte length).
fn max_len(mode: Mode, cap: usize) -> usize {
    match mode {
        Mode::Framed => cap - 8,
        Mode::Bytes => cap - 4,
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The length of message (g, s): the first of a generation is long enough to carry its id.
fn body_len(seed: u64, g: u32, s: u32, max: usize) -> usize {
    let h = mix(seed ^ (u64::from(g) << 40) ^ u64::from(s) ^ 0x1111);
    if s == 0 {
        return 16 + (h % 48) as usize;
    }
    match (h >> 32) % 100 {
        0..=34 => (h % 16) as usize,
        35..=69 => 16 + (h % 240) as usize,
        70..=84 => 256 + (h % 2048) as usize,
        85..=94 => (h as usize) % (max + 1),
        95..=97 => max,
        _ => max - (h % 64) as usize,
    }
}

/// Message (g, s), `max` the longest allowed for the mode.
fn body(seed: u64, g: u32, s: u32, max: usize) -> Vec<u8> {
    let len = body_len(seed, g, s, max);
    let mut v = Vec::with_capacity(len);
    let mut i = 0u64;
    while v.len() < len {
        let w = mix(seed ^ (u64::from(g) << 40) ^ (u64::from(s) << 8) ^ (i << 20));
        v.extend_from_slice(&w.to_le_bytes());
        i += 1;
    }
    v.truncate(len);
    if len >= 16 {
        v[0..4].copy_from_slice(&g.to_le_bytes());
        v[4..8].copy_from_slice(&s.to_le_bytes());
        v[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    }
    v
}

fn id_of(m: &[u8]) -> Option<(u32, u32)> {
    (m.len() >= 16)
        .then(|| (u32::from_le_bytes(m[0..4].try_into().unwrap()), u32::from_le_bytes(m[4..8].try_into().unwrap())))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Framed,
    Bytes,
}

/// Where a producer generation is killed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Point {
    /// After a random delay (µs) from its first message.
    Random(u64),
    /// With a FrameGrant / WriteGrant open (marked UNCOMMITTED), after `n` messages.
    GrantOpen(u32),
    /// A random delay after it starts a loop of send_batch calls (framed) / back-to-back grants.
    InBatch(u64),
    /// While blocked waiting for room (the consumer pauses).
    BlockedRoom(u64),
    /// With frames pending under set_batch, after `n` messages.
    Pending(u32),
    /// Not killed: sends `n` messages and closes.
    Finish(u32),
    /// A delay (µs) after the fork, ready or not: often in the middle of its take-over.
    Early(u64),
}

// Page words. Every scenario: a child's own error (its message is on stderr).
const ERR: usize = 3;
// Scenarios A and C.
const W_READY: usize = 0; // generation that is ready (g + 1)
const W_POINT: usize = 1; // generation that reached its kill point (g + 1)
const W_PAUSE: usize = 2; // consumer paused
const W_DONE: usize = 5; // the finishing generation closed (g + 1)
const W_ACK: usize = 16; // + g: messages of generation g whose send returned Ok (published)

fn kind_str(e: &std::io::Error) -> String {
    format!("{:?}: {e}", e.kind())
}

/// A producer child of generation g.
fn producer_child(ring: SharedRing, seed: u64, g: u32, mode: Mode, point: Point, page: &SharedPage) -> i32 {
    let who = format!("gen {g} ({mode:?}, {point:?})");
    let Some(tx) = claim_end(ring, g == 0, SharedRing::into_producer, SharedRing::take_over_producer, page, &who)
    else {
        return 3;
    };
    let mut rng = Rng::new(mix(seed ^ u64::from(g) ^ 0xC0FFEE));
    let ack = page.word(W_ACK + g as usize);
    let cap = tx.capacity();
    page.word(W_READY).store(u64::from(g) + 1, Ordering::SeqCst);
    let at_point = || page.word(W_POINT).store(u64::from(g) + 1, Ordering::SeqCst);
    // The finishing generation, once it has closed its end.
    let closed = || {
        page.word(W_DONE).store(u64::from(g) + 1, Ordering::SeqCst);
        0
    };
    let fail = |what: String| -> i32 {
        child_failed(page, &who, what);
        4
    };
    let limit = match point {
        Point::GrantOpen(n) | Point::Pending(n) | Point::Finish(n) => n,
        _ => u32::MAX,
    };
    if matches!(point, Point::InBatch(_) | Point::BlockedRoom(_)) {
        at_point();
    }
    match mode {
        Mode::Framed => {
            let mut tx = tx.into_framed();
            let max = tx.max_frame_len();
            let mut s = 0u32;
            while s < limit {
                let op = if matches!(point, Point::InBatch(_)) { 3 } else { rng.up_to(4) };
                let r: std::io::Result<u32> = match op {
                    0 => tx.send(&body(seed, g, s, max)).map(|()| 1),
                    1 => tx.send_timeout(&body(seed, g, s, max), Duration::from_secs(30)).map(|()| 1),
                    2 => {
                        let b = body(seed, g, s, max);
                        match tx.reserve(b.len()) {
                            Ok(mut grant) => {
                                grant.copy_from_slice(&b);
                                grant.commit().map(|()| 1)
                            }
                            Err(e) => Err(e),
                        }
                    }
                    _ => {
                        let k = 1 + rng.up_to(if matches!(point, Point::InBatch(_)) { 200 } else { 20 }) as u32;
                        let k = k.min(limit - s);
                        let msgs: Vec<Vec<u8>> = (s..s + k).map(|i| body(seed, g, i, max)).collect();
                        tx.send_batch(&msgs).map(|n| n as u32)
                    }
                };
                match r {
                    Ok(n) => {
                        s += n;
                        ack.store(u64::from(s), Ordering::SeqCst);
                    }
                    Err(e) => return fail(format!("send {s}: {}", kind_str(&e))),
                }
            }
            match point {
                Point::GrantOpen(_) => {
                    let b = uncommitted_body(seed, g, s, max);
                    let mut grant = match tx.reserve(b.len()) {
                        Ok(grant) => grant,
                        Err(e) => return fail(format!("reserve: {}", kind_str(&e))),
                    };
                    grant.copy_from_slice(&b);
                    at_point();
                    sleep_forever();
                }
                Point::Pending(_) => {
                    tx.set_batch(1000);
                    for i in 0..1 + rng.up_to(8) as u32 {
                        let b = body(seed, g, s + i, max);
                        if let Err(e) = tx.send(&b) {
                            return fail(format!("pending send: {}", kind_str(&e)));
                        }
                    }
                    at_point();
                    sleep_forever();
                }
                Point::Finish(_) => {
                    drop(tx);
                    closed()
                }
                _ => sleep_forever(),
            }
        }
        Mode::Bytes => {
            let mut tx = tx;
            let max = max_len(Mode::Bytes, cap);
            let mut s = 0u32;
            while s < limit {
                let b = body(seed, g, s, max);
                let need = 4 + b.len();
                match tx.write_grant_timeout(need, Duration::from_secs(30)) {
                    Ok(mut grant) => {
                        if rng.up_to(2) == 0 {
                            grant.fill(0xEE);
                        }
                        put_record(&mut grant, &b);
                        if let Err(e) = grant.commit(need) {
                            return fail(format!("commit {s}: {}", kind_str(&e)));
                        }
                        s += 1;
                        ack.store(u64::from(s), Ordering::SeqCst);
                    }
                    Err(e) => return fail(format!("grant {s}: {}", kind_str(&e))),
                }
            }
            match point {
                Point::GrantOpen(_) | Point::Pending(_) => {
                    let b = uncommitted_body(seed, g, s, max);
                    let need = 4 + b.len();
                    let mut grant = match tx.write_grant_timeout(need, Duration::from_secs(30)) {
                        Ok(grant) => grant,
                        Err(e) => return fail(format!("grant: {}", kind_str(&e))),
                    };
                    put_record(&mut grant, &b);
                    at_point();
                    sleep_forever();
                }
                Point::Finish(_) => {
                    drop(tx);
                    closed()
                }
                _ => sleep_forever(),
            }
        }
    }
}

/// The parent's consumer, in the mode of the current generation.
enum Rx {
    Framed(FramedConsumer),
    Bytes(Consumer),
    Gone,
}

/// What the parent's consumer has seen.
struct Check {
    seed: u64,
    cap: usize,
    /// Current generation and the next sequence number expected in it.
    gen: Option<u32>,
    next: u32,
    /// Messages received per generation.
    got: Vec<u32>,
    msgs: u64,
    bytes: u64,
}

impl Check {
    fn take(&mut self, m: &[u8], mode_of: &dyn Fn(u32) -> Mode) -> Result<(), String> {
        self.msgs += 1;
        self.bytes += m.len() as u64;
        let (g, s) = match id_of(m) {
            Some((g, _)) if g & UNCOMMITTED != 0 => {
                return Err(format!("a message nobody committed (generation {}, from an open grant)", g & !UNCOMMITTED))
            }
            Some((g, s)) => (g, s),
            None => match self.gen {
                Some(g) => (g, self.next),
                None => return Err(format!("a short message ({} bytes) before any generation", m.len())),
            },
        };
        if g as usize >= self.got.len() {
            return Err(format!("generation {g} does not exist (torn or stale message of {} bytes)", m.len()));
        }
        let want = body(self.seed, g, s, max_len(mode_of(g), self.cap));
        if m != &want[..] {
            let at = m.iter().zip(&want).position(|(a, b)| a != b);
            return Err(format!(
                "message (gen {g}, seq {s}) is not what was sent: {} bytes, expected {}, first difference at {at:?} \
                 (current gen {:?}, next {})",
                m.len(),
                want.len(),
                self.gen,
                self.next
            ));
        }
        match self.gen {
            Some(cur) if g == cur => {
                if s != self.next {
                    return Err(format!(
                        "generation {g}: seq {s} after {} ({})",
                        self.next.wrapping_sub(1),
                        if s < self.next { "duplicate" } else { "gap" }
                    ));
                }
            }
            Some(cur) if g < cur => return Err(format!("generation {g} seq {s} after generation {cur} began (stale)")),
            _ => {
                if s != 0 {
                    return Err(format!("generation {g} begins at seq {s}, not 0"));
                }
                self.gen = Some(g);
            }
        }
        self.next = s + 1;
        self.got[g as usize] = s + 1;
        Ok(())
    }
}

/// One seed of scenario A.
fn scenario_a(seed: u64, memfd: bool, gens: u32) -> Result<Tally, String> {
    let ring = make_ring(memfd)?;
    let cap = ring.capacity();
    let page = SharedPage::new();
    let mut rng = Rng::new(seed);
    // Plans: mode and kill point per generation; the last one finishes.
    let mut modes = Vec::new();
    let mut points = Vec::new();
    for g in 0..gens {
        modes.push(if g == 0 || rng.up_to(3) != 0 {
            if g % 2 == 0 {
                Mode::Framed
            } else {
                Mode::Bytes
            }
        } else {
            Mode::Framed
        });
        let p = if g + 1 == gens {
            Point::Finish(50 + rng.up_to(100) as u32)
        } else {
            match rng.up_to(7) {
                6 if g > 0 => Point::Early(rng.up_to(1500) as u64),
                0 => Point::Random(rng.up_to(20_000) as u64),
                1 => Point::GrantOpen(rng.up_to(40) as u32),
                2 => Point::InBatch(rng.up_to(3000) as u64),
                3 => Point::BlockedRoom(rng.up_to(20_000) as u64),
                4 => Point::Pending(rng.up_to(30) as u32),
                _ => Point::Random(rng.up_to(3000) as u64),
            }
        };
        points.push(p);
    }
    let mode_of = |g: u32| modes[g as usize];
    let mut check = Check { seed, cap, gen: None, next: 0, got: vec![0; gens as usize], msgs: 0, bytes: 0 };
    let mut rx = Rx::Framed(ring.clone().into_consumer().map_err(|e| e.to_string())?.into_framed());
    let mut rx_mode = Mode::Framed;
    let (mut kills, mut takeovers) = (0u64, 0u64);
    let ctx = |g: u32, what: String| {
        format!("seed {seed} memfd {memfd} gen {g} {:?} {:?}: {what}", modes[g as usize], points[g as usize])
    };

    // One receive into `check`, waiting at most `t`: Ok(true) a message, Ok(false) timed out,
    // Err(kind) otherwise (end of stream / death / error).
    fn recv_one(
        rx: &mut Rx,
        check: &mut Check,
        t: Duration,
        mode_of: &dyn Fn(u32) -> Mode,
    ) -> Result<bool, std::io::Error> {
        let other = |msg: String| std::io::Error::other(msg);
        match rx {
            Rx::Framed(f) => match f.recv_timeout(t) {
                Ok(Some(m)) => check.take(&m, mode_of).map(|()| true).map_err(other),
                Ok(None) => Err(std::io::Error::new(ErrorKind::BrokenPipe, "end of stream")),
                Err(e) if e.kind() == ErrorKind::TimedOut => Ok(false),
                Err(e) => Err(e),
            },
            Rx::Bytes(c) => {
                let len = match c.read_grant_timeout(4, t) {
                    Ok(gr) => u32::from_le_bytes(gr[..4].try_into().unwrap()) as usize,
                    Err(e) if e.kind() == ErrorKind::TimedOut => return Ok(false),
                    // (Only once no newcomer can come, while draining: `t` is the bound then.)
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof && t == BOUND => {
                        let left = c.read_grant(0).map(|g| g.len()).unwrap_or(0);
                        if left != 0 {
                            return Err(other(format!("{left} bytes of a torn record at the end ({e})")));
                        }
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                };
                if len > max_len(Mode::Bytes, check.cap) {
                    return Err(other(format!("record length {len} (torn record)")));
                }
                let gr = match c.read_grant_timeout(4 + len, BOUND) {
                    Ok(gr) => gr,
                    Err(e) => return Err(other(format!("a record of {len} bytes not whole: {}", kind_str(&e)))),
                };
                let r = check.take(&gr[4..4 + len], mode_of);
                gr.release(4 + len).map_err(|e| other(format!("release: {e}")))?;
                r.map(|()| true).map_err(other)
            }
            Rx::Gone => unreachable!(),
        }
    }

    for g in 0..gens {
        let (mode, point) = (modes[g as usize], points[g as usize]);
        // Switch the consumer's mode (it has seen the previous producer's death: see below).
        if mode != rx_mode {
            rx = match std::mem::replace(&mut rx, Rx::Gone) {
                Rx::Framed(f) => Rx::Bytes(f.into_inner()),
                Rx::Bytes(c) => Rx::Framed(c.into_framed()),
                Rx::Gone => unreachable!(),
            };
            rx_mode = mode;
        }
        page.word(W_PAUSE).store(0, Ordering::SeqCst);
        let mut child = spawn_holder(&ring, memfd, |ring| producer_child(ring, seed, g, mode, point, &page))
            .map_err(|e| ctx(g, e))?;
        if g > 0 {
            takeovers += 1;
        }
        let killed = AtomicBool::new(false);
        let result: Result<(), String> = std::thread::scope(|sc| {
            let killer = sc.spawn(|| {
                let wait_for = |w: usize, what: &str| wait_word(&page, &child, w, u64::from(g) + 1, what);
                kill_at_point(&child, &page, &killed, matches!(point, Point::Finish(_)), || {
                    if let Point::Early(us) = point {
                        std::thread::sleep(Duration::from_micros(us));
                        return Ok(());
                    }
                    wait_for(W_READY, "ready")?;
                    match point {
                        Point::Finish(_) | Point::Early(_) => return Ok(()),
                        Point::Random(us) => std::thread::sleep(Duration::from_micros(us)),
                        Point::GrantOpen(_) | Point::Pending(_) => wait_for(W_POINT, "its point")?,
                        Point::InBatch(us) => {
                            wait_for(W_POINT, "its point")?;
                            std::thread::sleep(Duration::from_micros(us));
                        }
                        Point::BlockedRoom(us) => {
                            page.word(W_PAUSE).store(1, Ordering::SeqCst);
                            wait_for(W_POINT, "its point")?;
                            std::thread::sleep(Duration::from_micros(20_000 + us));
                        }
                    }
                    Ok(())
                })
            });
            // Consume while the child produces, until it was killed.
            let mut res = Ok(());
            while !killed.load(Ordering::SeqCst) || matches!(point, Point::Finish(_)) {
                if page.word(W_PAUSE).load(Ordering::SeqCst) != 0 {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                match recv_one(&mut rx, &mut check, Duration::from_millis(20), &mode_of) {
                    Ok(_) => {}
                    // This generation's death (seen once it was killed), or the previous one's,
                    // not seen before this one took over (the watcher then follows the new one).
                    // (Not for the finishing generation, which is never killed: there it is the
                    // previous death, reported by a call that looked before the take-over.)
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                        if killed.load(Ordering::SeqCst) && !matches!(point, Point::Finish(_)) {
                            break;
                        }
                        // A byte consumer's clean end is UnexpectedEof too (fewer than 4 bytes
                        // can ever come): the finishing child has closed.
                        if page.word(W_DONE).load(Ordering::SeqCst) == u64::from(g) + 1 {
                            break;
                        }
                        std::thread::sleep(Duration::from_micros(200))
                    }
                    Err(e) if e.kind() == ErrorKind::BrokenPipe && matches!(point, Point::Finish(_)) => break,
                    Err(e) => {
                        res = Err(format!("receive while producing: {}", kind_str(&e)));
                        break;
                    }
                }
            }
            let k = killer.join().unwrap();
            res.and(k)
        });
        let reaped = reap_holder(&mut child, &page, matches!(point, Point::Finish(_)));
        result.and(reaped).map_err(|e| ctx(g, e))?;
        if !matches!(point, Point::Finish(_)) {
            kills += 1;
        }
        // After the death: a fast restart (same mode next, sometimes) or drain to the death.
        let next_mode = modes.get(g as usize + 1).copied();
        let fast = next_mode == Some(mode) && rng.up_to(2) == 0;
        if !fast && !matches!(point, Point::Finish(_)) {
            let dead_at = Instant::now();
            loop {
                let t0 = Instant::now();
                match recv_one(&mut rx, &mut check, BOUND, &mode_of) {
                    Ok(true) => {}
                    Ok(false) => {
                        return Err(ctx(
                            g,
                            format!(
                                "a receive timed out after {:?}, {:?} after the producer was reaped",
                                t0.elapsed(),
                                dead_at.elapsed()
                            ),
                        ))
                    }
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(ctx(g, format!("draining after the death: {}", kind_str(&e)))),
                }
                if dead_at.elapsed() > BOUND * 2 {
                    return Err(ctx(g, "draining never ends".into()));
                }
            }
        }
        // Every acked message of every finished generation arrived (checked once the consumer
        // has seen the death, or at the end).
        if !fast {
            for h in 0..=g {
                let acked = page.word(W_ACK + h as usize).load(Ordering::SeqCst) as u32;
                if check.got[h as usize] < acked {
                    return Err(ctx(
                        g,
                        format!(
                            "generation {h} ({:?}, {:?}): {acked} sends returned Ok, {} arrived",
                            modes[h as usize], points[h as usize], check.got[h as usize]
                        ),
                    ));
                }
            }
        }
    }
    Ok(Tally { kills, takeovers, msgs: check.msgs })
}

#[test]
fn chaos_producers_killed_and_taken_over() {
    run_chaos("chaos_producers_killed_and_taken_over", &[false, true], |seed, memfd| scenario_a(seed, memfd, 14));
}

// ---------------------------------------------------------------------------------------------
// Scenario B: the parent produces, consumer children are killed and taken over.

/// Where a consumer child is killed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum CPoint {
    /// A random delay (µs) after it is ready.
    Random(u64),
    /// Holding a Frame (framed) / a ReadGrant (bytes), unreleased, after `n` messages.
    Holding(u32),
    /// Inside recv_batch's closure (framed; a held grant for bytes), after `n` messages.
    InBatch(u32),
    /// Blocked on an empty ring (the producer pauses), after a random delay (µs).
    BlockedEmpty(u64),
    /// Not killed: reads to the end of the stream.
    Finish,
    /// A delay (µs) after the fork, ready or not: often in the middle of its take-over.
    Early(u64),
}

const B_PAUSE: usize = 2; // the producer is asked to pause
const B_PAUSED: usize = 4; // the producer has paused (flushed)
const B_READY: usize = 5; // consumer c that is ready (c + 1)
const B_POINT: usize = 6; // consumer c at its point (c + 1)
const B_S0: usize = 32; // + c: first seq this consumer took + 1 (0: none identified yet)
const B_COUNT: usize = 160; // + c: messages it took (counted before they can be released)
const B_SENT: usize = 7; // messages the producer sent (Ok)
const B_LAST: usize = 8; // the last consumer is ready: the producer may close
const B_HOLDING: usize = 9; // the producer waits for B_LAST (a point past it may never come)
const B_STOP: usize = 10; // the parent failed: the producer gives up at its next outage
const B_BROKEN: usize = 11; // `BrokenPipe`s the producer saw (a dead consumer held the role)
const B_INTO: usize = 288; // + c: inside recv_into (which releases the frame before it returns)

/// A consumer child c: verifies what it takes, reports into the page.
fn consumer_child(
    ring: SharedRing,
    seed: u64,
    c: u32,
    mode: Mode,
    point: CPoint,
    page: &SharedPage,
    total: u32,
) -> i32 {
    let who = format!("consumer {c} ({mode:?}, {point:?})");
    let Some(rx) = claim_end(ring, c == 0, SharedRing::into_consumer, SharedRing::take_over_consumer, page, &who)
    else {
        return 3;
    };
    let cap = rx.capacity();
    let max = max_len(mode, cap);
    let mut rng = Rng::new(mix(seed ^ u64::from(c) ^ 0xBEEF));
    page.word(B_READY).store(u64::from(c) + 1, Ordering::SeqCst);
    let at_point = || page.word(B_POINT).store(u64::from(c) + 1, Ordering::SeqCst);
    let fail = |what: String| -> i32 {
        child_failed(page, &who, what);
        4
    };
    // Messages taken before the first long one (unidentified); the next seq once identified.
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut next: Option<u32> = None;
    let mut count = 0u64;
    // The bound on what earlier consumers took: the first seq here must not exceed it.
    let bound = {
        let mut b = 0u64;
        for k in 0..c as usize {
            let s0 = page.word(B_S0 + k).load(Ordering::SeqCst);
            let n = page.word(B_COUNT + k).load(Ordering::SeqCst);
            // A consumer killed inside recv_into may have released one frame it never saw.
            let n = n + page.word(B_INTO + k).load(Ordering::SeqCst);
            b = if s0 != 0 { (s0 - 1) + n } else { b + n };
        }
        b
    };
    let mut take = |m: &[u8]| -> Result<(), String> {
        count += 1;
        page.word(B_COUNT + c as usize).store(count, Ordering::SeqCst);
        match next {
            Some(s) => {
                let want = body(seed, 0, s, max);
                if m != &want[..] {
                    return Err(format!(
                        "seq {s}: {} bytes, not the message sent ({} bytes), id {:?}",
                        m.len(),
                        want.len(),
                        id_of(m)
                    ));
                }
                next = Some(s + 1);
            }
            None => match id_of(m) {
                None => pending.push(m.to_vec()),
                Some((g, s)) => {
                    let k = pending.len() as u32;
                    if g != 0 || s < k {
                        return Err(format!(
                            "first long message claims ({g}, {s}) after {k} short ones: torn or misaligned"
                        ));
                    }
                    let s0 = s - k;
                    for (i, p) in pending.iter().enumerate() {
                        if p[..] != body(seed, 0, s0 + i as u32, max)[..] {
                            return Err(format!("short message {} before seq {s} is not what was sent", s0 + i as u32));
                        }
                    }
                    if m != &body(seed, 0, s, max)[..] {
                        return Err(format!("seq {s} is not what was sent"));
                    }
                    if u64::from(s0) > bound {
                        return Err(format!(
                            "resumed at seq {s0}, past {bound} (what earlier consumers took): messages lost"
                        ));
                    }
                    page.word(B_S0 + c as usize).store(u64::from(s0) + 1, Ordering::SeqCst);
                    next = Some(s + 1);
                }
            },
        }
        Ok(())
    };
    let limit = match point {
        CPoint::Holding(n) | CPoint::InBatch(n) => u64::from(n),
        _ => u64::MAX,
    };
    let long = Duration::from_secs(30);
    match mode {
        Mode::Framed => {
            let mut rx = rx.into_framed();
            let mut taken = 0u64;
            loop {
                if taken >= limit {
                    if let CPoint::InBatch(_) = point {
                        let r = rx.recv_batch_timeout(long, |m| {
                            let _ = take(m);
                            at_point();
                            sleep_forever();
                        });
                        return fail(format!("recv_batch at the point: {r:?}"));
                    }
                    match rx.recv_timeout(long) {
                        Ok(Some(f)) => {
                            if let Err(e) = take(&f) {
                                return fail(e);
                            }
                            at_point();
                            sleep_forever();
                        }
                        other => return fail(format!("recv at the point: {:?}", other.map(|f| f.map(|f| f.len())))),
                    }
                }
                let r: std::io::Result<Option<u64>> = match rng.up_to(4) {
                    0 => rx
                        .recv_timeout(long)
                        .map(|f| f.map(|f| take(&f)).transpose().map_err(std::io::Error::other).map(|o| o.map(|()| 1)))
                        .and_then(|x| x),
                    1 => {
                        let mut err = None;
                        let n = rx.recv_batch_timeout(long, |m| {
                            if err.is_none() {
                                err = take(m).err();
                            }
                        });
                        match (n, err) {
                            (_, Some(e)) => Err(std::io::Error::other(e)),
                            (Ok(0), None) => Ok(None),
                            (Ok(n), None) => Ok(Some(n as u64)),
                            (Err(e), None) => Err(e),
                        }
                    }
                    2 => {
                        let mut buf = Vec::new();
                        page.word(B_INTO + c as usize).store(1, Ordering::SeqCst);
                        let r = match rx.recv_into_timeout(&mut buf, long) {
                            Ok(Some(_)) => take(&buf).map(|()| Some(1)).map_err(std::io::Error::other),
                            Ok(None) => Ok(None),
                            Err(e) => Err(e),
                        };
                        page.word(B_INTO + c as usize).store(0, Ordering::SeqCst);
                        r
                    }
                    _ => loop {
                        match rx.try_recv() {
                            Ok(Some(f)) => break take(&f).map(|()| Some(1)).map_err(std::io::Error::other),
                            Ok(None) => break Ok(None),
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                std::thread::sleep(Duration::from_micros(50))
                            }
                            Err(e) => break Err(e),
                        }
                    },
                };
                match r {
                    Ok(Some(n)) => taken += n,
                    Ok(None) => break,
                    Err(e) => return fail(format!("receive after {taken}: {}", kind_str(&e))),
                }
            }
        }
        Mode::Bytes => {
            let mut rx = rx;
            let mut taken = 0u64;
            loop {
                let r = rx.read_grant_timeout(4, long).map(|g| u32::from_le_bytes(g[..4].try_into().unwrap()) as usize);
                let len = match r {
                    Ok(len) => len,
                    Err(e)
                        if e.kind() == ErrorKind::UnexpectedEof
                            && rx.read_grant(0).map(|g| g.is_empty()).unwrap_or(false) =>
                    {
                        break
                    }
                    Err(e) => return fail(format!("receive after {taken}: {}", kind_str(&e))),
                };
                if len > max {
                    return fail(format!("record length {len}: torn or misaligned"));
                }
                let g = match rx.read_grant_timeout(4 + len, long) {
                    Ok(g) => g,
                    Err(e) => return fail(format!("record of {len} not whole: {}", kind_str(&e))),
                };
                if let Err(e) = take(&g[4..4 + len]) {
                    return fail(e);
                }
                taken += 1;
                if taken > limit {
                    at_point();
                    sleep_forever();
                }
                if let Err(e) = g.release(4 + len) {
                    return fail(format!("release: {e}"));
                }
            }
        }
    }
    // The clean end: everything sent was taken (a run of short messages at the end is
    // identified by its end).
    if next.is_none() && !pending.is_empty() {
        let k = pending.len() as u32;
        if k > total {
            return fail(format!("{k} messages, {total} sent"));
        }
        let s0 = total - k;
        for (i, p) in pending.iter().enumerate() {
            if p[..] != body(seed, 0, s0 + i as u32, max)[..] {
                return fail(format!("short message {} at the end is not what was sent", s0 + i as u32));
            }
        }
        if u64::from(s0) > bound {
            return fail(format!("resumed at seq {s0}, past {bound} (what earlier consumers took): messages lost"));
        }
        next = Some(total);
    }
    match next {
        Some(n) if n == total => 0,
        other => fail(format!("end of stream at {other:?}, {total} sent")),
    }
}

/// The parent's producer of scenario B: `total` messages, riding out consumer deaths.
fn produce_b(ring: &SharedRing, seed: u64, mode: Mode, total: u32, page: &SharedPage) -> Result<(), String> {
    let tx = ring.clone().into_producer().map_err(|e| e.to_string())?;
    let mut rng = Rng::new(seed ^ 0xFEED);
    let pause = |flush: &mut dyn FnMut()| {
        if page.word(B_PAUSE).load(Ordering::SeqCst) != 0 {
            flush();
            page.word(B_PAUSED).store(1, Ordering::SeqCst);
            while page.word(B_PAUSE).load(Ordering::SeqCst) != 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
            page.word(B_PAUSED).store(0, Ordering::SeqCst);
        }
    };
    let outage: std::cell::Cell<Option<Instant>> = std::cell::Cell::new(None);
    let broken = |e: std::io::Error, s: u32| -> Result<(), String> {
        if e.kind() != ErrorKind::BrokenPipe && e.kind() != ErrorKind::TimedOut {
            return Err(format!("producer at {s}: {}", kind_str(&e)));
        }
        if e.kind() == ErrorKind::BrokenPipe {
            page.word(B_BROKEN).fetch_add(1, Ordering::SeqCst);
        }
        if page.word(B_STOP).load(Ordering::SeqCst) != 0 {
            return Err(format!("producer at {s}: stopped (the consumers failed)"));
        }
        let since = outage.get().unwrap_or_else(Instant::now);
        outage.set(Some(since));
        if since.elapsed() > Duration::from_secs(20) {
            return Err(format!("producer at {s}: no consumer for 20 s: {}", kind_str(&e)));
        }
        std::thread::sleep(Duration::from_micros(300));
        Ok(())
    };
    let t = Duration::from_millis(200);
    let hold_last = || {
        page.word(B_HOLDING).store(1, Ordering::SeqCst);
        while page.word(B_LAST).load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    };
    match mode {
        Mode::Framed => {
            let mut tx = tx.into_framed();
            let max = tx.max_frame_len();
            let mut s = 0;
            while s < total {
                pause(&mut || {
                    let _ = tx.flush();
                });
                if s + 1 == total {
                    hold_last();
                }
                let r = match rng.up_to(3) {
                    0 => tx.send_timeout(&body(seed, 0, s, max), t).map(|()| 1),
                    1 => match tx.reserve_timeout(body_len(seed, 0, s, max), t) {
                        Ok(mut g) => {
                            g.copy_from_slice(&body(seed, 0, s, max));
                            g.commit().map(|()| 1)
                        }
                        Err(e) => Err(e),
                    },
                    _ => {
                        let k = (1 + rng.up_to(30) as u32).min(total - 1 - s).max(1);
                        let msgs: Vec<Vec<u8>> = (s..s + k).map(|i| body(seed, 0, i, max)).collect();
                        tx.send_batch_timeout(&msgs, t).map(|n| n as u32)
                    }
                };
                match r {
                    Ok(n) => {
                        s += n;
                        page.word(B_SENT).store(u64::from(s), Ordering::SeqCst);
                        outage.set(None);
                    }
                    Err(e) => broken(e, s)?,
                }
            }
            drop(tx);
        }
        Mode::Bytes => {
            let mut tx = tx;
            let max = max_len(Mode::Bytes, tx.capacity());
            let mut s = 0;
            while s < total {
                pause(&mut || {});
                if s + 1 == total {
                    hold_last();
                }
                let b = body(seed, 0, s, max);
                match tx.write_grant_timeout(4 + b.len(), t) {
                    Ok(mut g) => {
                        put_record(&mut g, &b);
                        g.commit(4 + b.len()).map_err(|e| e.to_string())?;
                        s += 1;
                        page.word(B_SENT).store(u64::from(s), Ordering::SeqCst);
                        outage.set(None);
                    }
                    Err(e) => broken(e, s)?,
                }
            }
            drop(tx);
        }
    }
    Ok(())
}

/// In the parent, after a consumer's kill: waits until the producer has seen the death, a
/// `BrokenPipe` counted after `before`. A producer that holds its last message back makes no
/// call that could see it, and passes. Fails after [`BOUND`] (the design figure is 25 ms).
fn producer_sees_death(page: &SharedPage, before: u64) -> Result<(), String> {
    let until = Instant::now() + BOUND;
    while page.word(B_BROKEN).load(Ordering::SeqCst) == before && page.word(B_HOLDING).load(Ordering::SeqCst) == 0 {
        if Instant::now() > until {
            return Err(format!("the producer did not see the consumer's death within {BOUND:?}"));
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    Ok(())
}

fn scenario_b(seed: u64, mode: Mode, memfd: bool, consumers: u32) -> Result<Tally, String> {
    let ring = make_ring(memfd)?;
    let page = SharedPage::new();
    let mut rng = Rng::new(seed ^ 0xB0B);
    let total = 3000 + rng.up_to(2000) as u32;
    let points: Vec<CPoint> = (0..consumers)
        .map(|c| {
            if c + 1 == consumers {
                CPoint::Finish
            } else {
                match rng.up_to(6) {
                    5 if c > 0 => CPoint::Early(rng.up_to(1500) as u64),
                    0 => CPoint::Random(rng.up_to(20_000) as u64),
                    1 => CPoint::Holding(rng.up_to(60) as u32),
                    2 => CPoint::InBatch(rng.up_to(60) as u32),
                    3 => CPoint::BlockedEmpty(rng.up_to(10_000) as u64),
                    _ => CPoint::Random(rng.up_to(2000) as u64),
                }
            }
        })
        .collect();
    // After about half of the kills the parent waits for the producer to see the death
    // (`BrokenPipe`) before the next consumer starts; after the others the newcomer starts at
    // once, racing the producer's detection. A generator of its own keeps the points the same.
    let mut coin = Rng::new(seed ^ 0xDEAD);
    let watched: Vec<bool> = (0..consumers).map(|_| coin.up_to(2) == 0).collect();
    let ctx = |c: u32, what: String| {
        format!("seed {seed} {mode:?} memfd {memfd} consumer {c} {:?}: {what}", points[c as usize])
    };
    let (mut kills, mut takes) = (0, 0);
    std::thread::scope(|sc| -> Result<(), String> {
        let producer = sc.spawn(|| produce_b(&ring, seed, mode, total, &page));
        let mut r = Ok(());
        for c in 0..consumers {
            let point = points[c as usize];
            let spawned = spawn_holder(&ring, memfd, |ring| consumer_child(ring, seed, c, mode, point, &page, total));
            let mut child = match spawned {
                Ok(child) => child,
                Err(e) => {
                    r = Err(ctx(c, e));
                    break;
                }
            };
            if c > 0 {
                takes += 1;
            }
            let wait_for = |w: usize, what: &str| wait_word(&page, &child, w, u64::from(c) + 1, what);
            let step = (|| -> Result<(), String> {
                if let CPoint::Early(us) = point {
                    std::thread::sleep(Duration::from_micros(us));
                    return Ok(());
                }
                wait_for(B_READY, "ready")?;
                match point {
                    CPoint::Early(_) => {}
                    CPoint::Finish => {
                        page.word(B_LAST).store(1, Ordering::SeqCst);
                        return Ok(());
                    }
                    CPoint::Random(us) => std::thread::sleep(Duration::from_micros(us)),
                    CPoint::Holding(_) | CPoint::InBatch(_) => {
                        // Unless the producer holds its last message back (the point may
                        // never come): then a kill in a blocked receive.
                        let until = Instant::now() + Duration::from_secs(20);
                        while page.word(B_POINT).load(Ordering::SeqCst) != u64::from(c) + 1 {
                            if page.word(ERR).load(Ordering::SeqCst) != 0 {
                                return Err("the child failed before its point".into());
                            }
                            if page.word(B_HOLDING).load(Ordering::SeqCst) != 0 {
                                std::thread::sleep(Duration::from_millis(30));
                                break;
                            }
                            if Instant::now() > until {
                                return Err("timed out waiting for its point".into());
                            }
                            std::thread::sleep(Duration::from_micros(100));
                        }
                    }
                    CPoint::BlockedEmpty(us) => {
                        page.word(B_PAUSE).store(1, Ordering::SeqCst);
                        let until = Instant::now() + Duration::from_secs(20);
                        while page.word(B_PAUSED).load(Ordering::SeqCst) == 0
                            && page.word(B_HOLDING).load(Ordering::SeqCst) == 0
                        {
                            if Instant::now() > until {
                                return Err("the producer never paused".into());
                            }
                            std::thread::sleep(Duration::from_micros(100));
                        }
                        std::thread::sleep(Duration::from_micros(20_000 + us));
                    }
                }
                Ok(())
            })();
            let broken_before = page.word(B_BROKEN).load(Ordering::SeqCst);
            if point != CPoint::Finish {
                child.kill();
                kills += 1;
            }
            let reaped = reap_holder(&mut child, &page, point == CPoint::Finish);
            page.word(B_PAUSE).store(0, Ordering::SeqCst);
            let seen = || {
                if point == CPoint::Finish || !watched[c as usize] {
                    return Ok(());
                }
                producer_sees_death(&page, broken_before)
            };
            if let Err(e) = reaped.and(step).and_then(|()| seen()) {
                r = Err(ctx(c, e));
                break;
            }
        }
        if r.is_err() {
            // Let the producer give up: a consumer that closes.
            page.word(B_STOP).store(1, Ordering::SeqCst);
            page.word(B_PAUSE).store(0, Ordering::SeqCst);
            page.word(B_LAST).store(1, Ordering::SeqCst);
            if let Ok(rx) = ring.take_over_consumer() {
                drop(rx);
            }
        }
        let p = producer.join().unwrap();
        r.and(p.map_err(|e| ctx(consumers - 1, e)))
    })?;
    Ok(Tally { kills, takeovers: takes, msgs: u64::from(total) })
}

#[test]
fn chaos_consumers_killed_and_taken_over() {
    let cases = [(Mode::Framed, false), (Mode::Bytes, true), (Mode::Framed, true)];
    run_chaos("chaos_consumers_killed_and_taken_over", &cases, |seed, (mode, memfd)| scenario_b(seed, mode, memfd, 10));
}

// ---------------------------------------------------------------------------------------------
// Scenario C: async ends. The parent's consumer is an AsyncFramedConsumer (its receives often
// cancelled by a timeout); the producer children are async framed producers, killed at random,
// while parked in `send` on a full ring, or idle (the consumer parked in `recv`).
#[cfg(feature = "tokio")]
mod async_ends {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum APoint {
        Random(u64),
        /// Parked in an async send on the full ring (the consumer pauses).
        ParkedSend(u64),
        /// Idle after `n` messages: the consumer parks in recv, then the producer dies.
        Idle(u32),
        Finish(u32),
    }

    fn async_producer_child(ring: SharedRing, seed: u64, g: u32, point: APoint, page: &SharedPage) -> i32 {
        let who = format!("async gen {g} ({point:?})");
        let Some(tx) = claim_end(ring, g == 0, SharedRing::into_producer, SharedRing::take_over_producer, page, &who)
        else {
            return 3;
        };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let fail = |what: String| -> i32 {
            child_failed(page, &who, what);
            4
        };
        let mut tx = match tx.into_framed().into_async() {
            Ok(tx) => tx,
            Err(e) => return fail(format!("into_async: {e}")),
        };
        let max = tx.get_ref().max_frame_len();
        let mut rng = Rng::new(mix(seed ^ u64::from(g) ^ 0xA5A5));
        let ack = page.word(W_ACK + g as usize);
        page.word(W_READY).store(u64::from(g) + 1, Ordering::SeqCst);
        if let APoint::ParkedSend(_) = point {
            page.word(W_POINT).store(u64::from(g) + 1, Ordering::SeqCst);
        }
        let limit = match point {
            APoint::Idle(n) | APoint::Finish(n) => n,
            _ => u32::MAX,
        };
        let r: Result<(), String> = rt.block_on(async {
            let mut s = 0u32;
            while s < limit {
                let r = match rng.up_to(3) {
                    0 => tx.send(&body(seed, g, s, max)).await.map(|()| 1),
                    1 => {
                        let b = body(seed, g, s, max);
                        match tx.reserve(b.len()).await {
                            Ok(mut gr) => {
                                gr.copy_from_slice(&b);
                                gr.commit().map(|()| 1)
                            }
                            Err(e) => Err(e),
                        }
                    }
                    _ => {
                        let k = (1 + rng.up_to(20) as u32).min(limit - s);
                        let msgs: Vec<Vec<u8>> = (s..s + k).map(|i| body(seed, g, i, max)).collect();
                        tx.send_batch(&msgs).await.map(|n| n as u32)
                    }
                };
                match r {
                    Ok(n) => {
                        s += n;
                        ack.store(u64::from(s), Ordering::SeqCst);
                    }
                    Err(e) => return Err(format!("send {s}: {}", kind_str(&e))),
                }
            }
            Ok(())
        });
        if let Err(e) = r {
            return fail(e);
        }
        match point {
            APoint::Finish(_) => {
                drop(tx);
                0
            }
            _ => {
                page.word(W_POINT).store(u64::from(g) + 1, Ordering::SeqCst);
                sleep_forever()
            }
        }
    }

    pub(super) fn scenario_c(seed: u64, memfd: bool, gens: u32) -> Result<Tally, String> {
        let ring = make_ring(memfd)?;
        let cap = ring.capacity();
        let page = SharedPage::new();
        let mut rng = Rng::new(seed ^ 0xC);
        let points: Vec<APoint> = (0..gens)
            .map(|g| {
                if g + 1 == gens {
                    APoint::Finish(30 + rng.up_to(50) as u32)
                } else {
                    match rng.up_to(3) {
                        0 => APoint::Random(rng.up_to(10_000) as u64),
                        1 => APoint::ParkedSend(rng.up_to(10_000) as u64),
                        _ => APoint::Idle(rng.up_to(30) as u32),
                    }
                }
            })
            .collect();
        let ctx =
            |g: u32, what: String| format!("async seed {seed} memfd {memfd} gen {g} {:?}: {what}", points[g as usize]);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let mut check = Check { seed, cap, gen: None, next: 0, got: vec![0; gens as usize], msgs: 0, bytes: 0 };
        let mode_of = |_: u32| Mode::Framed;
        let mut rx = ring
            .clone()
            .into_consumer()
            .map_err(|e| e.to_string())?
            .into_framed()
            .into_async()
            .map_err(|e| e.to_string())?;
        let mut kills = 0;
        for g in 0..gens {
            let point = points[g as usize];
            let mut child = spawn_holder(&ring, memfd, |ring| async_producer_child(ring, seed, g, point, &page))
                .map_err(|e| ctx(g, e))?;
            let killed = AtomicBool::new(false);
            let result: Result<(), String> = std::thread::scope(|sc| {
                let killer = sc.spawn(|| {
                    let wait_for = |w: usize, what: &str| wait_word(&page, &child, w, u64::from(g) + 1, what);
                    kill_at_point(&child, &page, &killed, matches!(point, APoint::Finish(_)), || {
                        wait_for(W_READY, "ready")?;
                        match point {
                            APoint::Finish(_) => return Ok(()),
                            APoint::Random(us) => std::thread::sleep(Duration::from_micros(us)),
                            APoint::ParkedSend(us) => {
                                page.word(W_PAUSE).store(1, Ordering::SeqCst);
                                wait_for(W_POINT, "its point")?;
                                std::thread::sleep(Duration::from_micros(20_000 + us));
                            }
                            APoint::Idle(_) => {
                                wait_for(W_POINT, "its point")?;
                                std::thread::sleep(Duration::from_millis(30));
                            }
                        }
                        Ok(())
                    })
                });
                let res = rt.block_on(async {
                    loop {
                        if killed.load(Ordering::SeqCst) && !matches!(point, APoint::Finish(_)) {
                            return Ok(());
                        }
                        if page.word(W_PAUSE).load(Ordering::SeqCst) != 0 {
                            tokio::time::sleep(Duration::from_micros(300)).await;
                            continue;
                        }
                        // Often cancelled: a pending receive dropped must lose nothing.
                        let t = Duration::from_micros(100 + rng.up_to(20_000) as u64);
                        match tokio::time::timeout(t, rx.recv()).await {
                            Err(_) => {}
                            Ok(Ok(Some(f))) => check.take(&f, &mode_of)?,
                            Ok(Ok(None)) if matches!(point, APoint::Finish(_)) => return Ok(()),
                            Ok(Err(e)) if e.kind() == ErrorKind::UnexpectedEof => {
                                if killed.load(Ordering::SeqCst) && !matches!(point, APoint::Finish(_)) {
                                    return Ok(());
                                }
                                tokio::time::sleep(Duration::from_micros(300)).await;
                            }
                            Ok(r) => return Err(format!("receive: {:?}", r.map(|f| f.map(|f| f.len())))),
                        }
                    }
                });
                let k = killer.join().unwrap();
                res.and(k)
            });
            let reaped = reap_holder(&mut child, &page, matches!(point, APoint::Finish(_)));
            result.and(reaped).map_err(|e| ctx(g, e))?;
            if matches!(point, APoint::Finish(_)) {
                continue;
            }
            kills += 1;
            // The death must reach the parked async receive within the bound.
            let dead = Instant::now();
            let r: Result<(), String> = rt.block_on(async {
                loop {
                    match tokio::time::timeout(BOUND, rx.recv()).await {
                        Err(_) => return Err(format!("an async recv parked {BOUND:?} after its producer was reaped")),
                        Ok(Ok(Some(f))) => check.take(&f, &mode_of)?,
                        Ok(Err(e)) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
                        Ok(r) => return Err(format!("draining: {:?}", r.map(|f| f.map(|f| f.len())))),
                    }
                    if dead.elapsed() > BOUND * 2 {
                        return Err("draining never ends".into());
                    }
                }
            });
            r.map_err(|e| ctx(g, e))?;
            let acked = page.word(W_ACK + g as usize).load(Ordering::SeqCst) as u32;
            if check.got[g as usize] < acked {
                return Err(ctx(g, format!("{acked} sends returned Ok, {} arrived", check.got[g as usize])));
            }
        }
        Ok(Tally { kills, takeovers: u64::from(gens - 1), msgs: check.msgs })
    }

    #[test]
    fn chaos_async_producers_killed_and_taken_over() {
        run_chaos("chaos_async_producers_killed_and_taken_over", &[false, true], |seed, memfd| {
            scenario_c(seed, memfd, 10)
        });
    }
}

/// One seed of every scenario in a forked child that compares its descriptors and mappings
/// before and after: the rings, sockets, shared pages and runtimes are all given back, and no
/// holder is left behind (running, or a zombie). In a child, so that what the tests running
/// beside it in the harness hold does not show.
#[test]
fn chaos_leaves_no_descriptor_mapping_or_child_behind() {
    let seed = seeds()[0];
    let mut child = spawn_child(|| {
        let (fds, maps) = (open_fds_but_peer_poll(), our_mappings());
        let runs = || -> Result<(), String> {
            scenario_a(seed, false, 6)?;
            scenario_a(seed, true, 6)?;
            scenario_b(seed, Mode::Framed, false, 4)?;
            scenario_b(seed, Mode::Bytes, true, 4)?;
            #[cfg(feature = "tokio")]
            {
                async_ends::scenario_c(seed, false, 4)?;
                async_ends::scenario_c(seed, true, 4)?;
            }
            Ok(())
        };
        if let Err(e) = runs() {
            eprintln!("{e}");
            return 1;
        }
        let left = children_of_this_thread();
        if !left.is_empty() {
            eprintln!("children left behind: {left:?}");
            return 2;
        }
        if open_fds_but_peer_poll() != fds {
            eprintln!("descriptors leaked: before {fds:?}, after {:?}", open_fds_but_peer_poll());
            return 3;
        }
        if our_mappings() != maps {
            eprintln!("mappings leaked: before {maps:#?}, after {:#?}", our_mappings());
            return 4;
        }
        0
    });
    let status = child.wait_within(Duration::from_secs(60));
    assert_eq!(status, 0, "1: a scenario failed, 2: a child left behind, 3: descriptors leaked, 4: mappings leaked");
}
