//! Watching the peer process: is the process that claimed the other end alive, dead, or
//! impossible to tell?
//!
//! The story (what is checked, how often, what a blocked call does with the answer, and the
//! limits) is told once, in [`docs::lifecycle`](crate::docs::lifecycle); this module is the
//! code.
//!
//! The answer has three values. Only proof is death:
//! - the pidfd (Linux 5.3+) opened on the peer's pid became readable (it terminated; also
//!   while it is an unreaped zombie);
//! - `pidfd_open` or `kill(pid, 0)` failed with `ESRCH` (no such process);
//! - `/proc/<pid>/stat` shows state `X`, or `Z` with no other thread left (a process whose
//!   first thread exited while others run shows `Z` too, and lives), or a start time other
//!   than the one the claimant recorded (the pid now names a later process).
//!
//! Everything else that prevents an answer ("no descriptor left" (`EMFILE`), `/proc`
//! unreadable or hiding the process, a peer in another PID namespace) is
//! [`Liveness::Unknown`]: retried at the next check, never latched, never taken for a death.
//! A death, once proven, is latched for that holding of the role: a dead process does not
//! come back. Only a new holding (a take-over, which bumps the epoch in the peer's claim word)
//! makes the watcher look again, at the new holder ([`ProcessWatch::check_with`]).
//!
//! [`take_over`] is the other use of the check: a process may take a role over only from a
//! holder proven dead.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use crate::header::{Claim, Claimant, Header, Role, ROLE_CLAIMED, ROLE_CLOSED, ROLE_FREE, ROLE_TAKING};
use crate::stats::Counters;
use crate::sys;
use crate::wait::PeerCheck;

/// What a check of the peer process found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// The peer lives (or has not claimed its role yet: there is nobody to watch).
    Alive,
    /// Proven dead.
    Dead,
    /// Could not tell: no descriptor left, `/proc` unreadable, another PID namespace.
    Unknown,
}

/// Checks closer together than this reuse the previous answer, so a polling `try_*` loop does
/// not make a system call per call. Read on `CLOCK_MONOTONIC_COARSE` (one timer tick, 1-4 ms),
/// which is much cheaper than `Instant::now` on the hot failing-`try_*` path
/// (BENCHMARKS.md, "Profile and hot-path changes (AMD, first release)").
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(1);

/// Watches the peer process of one end.
#[derive(Debug)]
pub(crate) struct ProcessWatch {
    /// Our role; the peer is the other one.
    role: Role,
    /// The peer's claim word when we last looked (`None`: not looked yet).
    seen: Option<Claim>,
    /// The peer's identity, once its slot showed a holding.
    peer: Option<Peer>,
    /// The pidfd on the peer, once opened (shared with the helper thread that watches the peer
    /// for a parked async end: [`watched`](Self::watched)).
    pidfd: Option<Arc<OwnedFd>>,
    /// `pidfd_open` is not available here (ENOSYS, EPERM from a sandbox): use `/proc` only.
    /// Never set for a refusal that concerns one peer (a thread id: see [`Refused`]).
    no_pidfd: bool,
    /// The death of the holding in `seen`, once proven.
    dead: bool,
    /// When the last check ran (coarse clock).
    last_check: Option<Duration>,
}

/// The peer as its slot described it when we looked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer {
    pub(crate) pid: i32,
    /// 0 when unknown (the holder could not read it, or it is still TAKING).
    pub(crate) start_time: u64,
    /// The claim word this identity was read with (the holding it describes).
    pub(crate) claim: Claim,
    /// The peer is this very process (both ends here): it cannot outlive itself.
    same_process: bool,
    /// The peer's pid belongs to another PID namespace: it names nothing we can check.
    foreign: bool,
}

impl ProcessWatch {
    /// A watcher for the end playing `role`: it watches the other role's holder.
    pub(crate) fn new(role: Role) -> ProcessWatch {
        ProcessWatch { role, seen: None, peer: None, pidfd: None, no_pidfd: false, dead: false, last_check: None }
    }

    /// Whether the death of the peer's current holding is proven (latched until a take-over).
    /// (For the async ends' counters.)
    #[cfg(any(feature = "tokio", mirror_ring_loom))]
    pub(crate) fn is_dead(&self) -> bool {
        self.dead
    }

    /// What a helper thread needs to watch the peer for a parked async end without waking its
    /// task (`asynch::park`): the peer's claim word this watcher last saw, and the pidfd that
    /// proves its holder alive while it is not readable (`None`: no holder to watch, a free or
    /// closed slot, or one naming no process). `None` when only this watcher can tell: a death
    /// already latched, nothing looked at yet, a peer checked through `/proc` (no pidfd here),
    /// one in another PID namespace. Whatever changes the answer changes the claim word or
    /// makes the pidfd readable, and the helper then wakes the task to check for itself.
    #[cfg(any(feature = "tokio", mirror_ring_loom))]
    pub(crate) fn watched(&self) -> Option<(Claim, Option<Arc<OwnedFd>>)> {
        let seen = self.seen.filter(|_| !self.dead)?;
        match self.peer {
            // Nobody to watch (as `identify` found it), not a read that failed.
            None if !(matches!(seen.state(), ROLE_CLAIMED | ROLE_TAKING) && seen.pid() > 0) => Some((seen, None)),
            None => None,
            Some(p) if !p.foreign && !p.same_process && p.claim == seen => Some((seen, Some(self.pidfd.clone()?))),
            Some(_) => None,
        }
    }

    /// The peer identified at the last check, if any.
    pub(crate) fn peer(&self) -> Option<Peer> {
        self.peer
    }

    /// Reads the peer's slot, once it shows a holding (CLAIMED, or TAKING: a taker named by
    /// its pid alone) with a pid that can name a process.
    pub(crate) fn identify(&self, hdr: &Header) -> Option<Peer> {
        let holder = hdr.holder(self.role.peer())?;
        let pid = holder.claim.pid();
        if !matches!(holder.claim.state(), ROLE_CLAIMED | ROLE_TAKING) || pid <= 0 {
            // Free: nobody to watch. Closed: the close flag speaks for itself. A pid that is
            // not positive (a hostile value) names no process.
            return None;
        }
        let (theirs, ours) = (holder.pid_ns, own_pid_namespace());
        let foreign = theirs != 0 && ours != 0 && theirs != ours;
        // Our own pid names this process only with our own start time: another recorded start
        // time is a holder that died and whose pid this process got later (a supervisor's
        // replacement worker, say), whom the ordinary check proves dead. If our own start time
        // cannot be read now, the ordinary check decides too (it finds this process alive).
        let same_process = !foreign
            && pid == sys::getpid()
            && (holder.start_time == 0 || sys::proc_stat(pid).is_ok_and(|(_, start)| start == holder.start_time));
        Some(Peer { pid, start_time: holder.start_time, claim: holder.claim, same_process, foreign })
    }

    /// Notices a new holding of the peer's role: if the claim word changed since we looked,
    /// forget the identity (and the pidfd) so the next check identifies the holder afresh. A
    /// proven death stays latched unless the epoch changed: only a new holding, not a rewrite
    /// of the dead one's word, makes us look again. One load of the read-mostly line 0.
    fn follow(&mut self, hdr: &Header) {
        let now = hdr.claim_word(self.role.peer());
        match self.seen {
            Some(seen) if seen == now => {}
            Some(seen) if self.dead && seen.epoch() == now.epoch() => {}
            _ => {
                self.seen = Some(now);
                self.peer = None;
                self.pidfd = None;
                self.dead = false;
            }
        }
    }

    /// One check of the peer, without rate limiting.
    pub(crate) fn check(&mut self, hdr: &Header) -> Liveness {
        self.check_with(hdr, ProcessWatch::check_process)
    }

    /// One check of the peer's current holding, asking `probe` whether a process lives (the
    /// system calls of [`check`](Self::check); the loom models pass an oracle). Follows a
    /// take-over: a new holding is identified and checked afresh, a latched death is dropped
    /// with the holding it belonged to.
    pub(crate) fn check_with(
        &mut self,
        hdr: &Header,
        probe: impl FnOnce(&mut ProcessWatch, Peer) -> Liveness,
    ) -> Liveness {
        self.follow(hdr);
        if self.dead {
            return Liveness::Dead;
        }
        if self.peer.is_none() {
            self.peer = self.identify(hdr);
            if let Some(p) = self.peer {
                // The word identify read may be newer than the one `follow` saw.
                self.seen = Some(p.claim);
            }
        }
        let Some(peer) = self.peer else { return Liveness::Alive };
        if peer.same_process {
            return Liveness::Alive;
        }
        if peer.foreign {
            return Liveness::Unknown;
        }
        let answer = probe(self, peer);
        self.dead = answer == Liveness::Dead;
        answer
    }

    fn check_process(&mut self, peer: Peer) -> Liveness {
        if self.pidfd.is_none() && !self.no_pidfd {
            match sys::pidfd_open(peer.pid) {
                Ok(fd) => {
                    // The pidfd may name a later process that reused the pid: compare start
                    // times. No descriptor or memory to read /proc with (the pidfd may have
                    // taken the last descriptor): the pidfd still proves a death if it reads
                    // as exited (it names the peer, or a later process at its pid, which the
                    // peer must have died to leave), and cannot tell otherwise; it goes, so
                    // that the next check compares again. No answer otherwise (/proc hides the
                    // process): the pidfd alone decides from now on.
                    if peer.start_time != 0 {
                        match sys::proc_stat(peer.pid) {
                            Ok((_, now)) if now != peer.start_time => return Liveness::Dead,
                            Ok(_) => {}
                            Err(e) if short_of_resources(&e) => {
                                return match sys::pidfd_exited(fd.as_fd()) {
                                    Ok(true) => Liveness::Dead,
                                    _ => Liveness::Unknown,
                                };
                            }
                            Err(_) => {}
                        }
                    }
                    self.pidfd = Some(Arc::new(fd));
                }
                Err(e) => match pidfd_refusal(e.raw_os_error()) {
                    Refused::Dead => return Liveness::Dead,
                    Refused::ForGood => self.no_pidfd = true,
                    Refused::ThisTime => {}
                },
            }
        }
        if let Some(fd) = &self.pidfd {
            return match sys::pidfd_exited(fd.as_fd()) {
                Ok(true) => Liveness::Dead,
                Ok(false) => Liveness::Alive,
                Err(_) => Liveness::Unknown,
            };
        }
        check_proc(peer)
    }
}

/// What a `pidfd_open` error means for a watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refused {
    /// No such process (`ESRCH`): the peer is dead.
    Dead,
    /// Not on this kernel (`ENOSYS`), or refused by a sandbox (`EPERM`): `/proc` from now on.
    ForGood,
    /// This peer, this time: `/proc` for this check, a pidfd again at the next. A pid that is
    /// a thread, not a process (a forged slot: an honest claimant records its process id), is
    /// `EINVAL` in the man page and `ENOENT` on 6.18 (the test below); a hostile slot must not turn
    /// pidfds off for the holders that follow. `EMFILE`, `ENFILE`, `ENOMEM` pass too.
    ThisTime,
}

fn pidfd_refusal(errno: Option<i32>) -> Refused {
    match errno {
        Some(libc::ESRCH) => Refused::Dead,
        Some(libc::ENOSYS) | Some(libc::EPERM) => Refused::ForGood,
        _ => Refused::ThisTime,
    }
}

/// The `/proc` and `kill(pid, 0)` check, for when no pidfd is open.
fn check_proc(peer: Peer) -> Liveness {
    match sys::proc_stat(peer.pid) {
        Ok((state, start)) => {
            // A process whose first thread has exited while others run shows `Z` too, and
            // lives: only a zombie with no other thread left is dead.
            let state = match state {
                'Z' => match sys::proc_threads(peer.pid) {
                    Ok(n) if n > 1 => 'S',
                    Ok(_) => 'Z',
                    Err(_) => return Liveness::Unknown,
                },
                s => s,
            };
            if matches!(state, 'Z' | 'X' | 'x') || (peer.start_time != 0 && start != peer.start_time) {
                Liveness::Dead
            } else {
                Liveness::Alive
            }
        }
        // No /proc entry (or no descriptor to read it, or /proc hides other users'
        // processes): ask the kernel whether the pid exists at all. That needs no descriptor,
        // and ESRCH is proof. Existing is not proof of life here (the pid may have been reused
        // and the start time cannot be read), so that is "unknown".
        Err(_) => match sys::process_exists(peer.pid) {
            Ok(false) => Liveness::Dead,
            _ => Liveness::Unknown,
        },
    }
}

/// `/proc` could not be read for want of a descriptor or of memory (`EMFILE`, `ENFILE`,
/// `ENOMEM`): a shortage of this process, which says nothing about the one looked at.
fn short_of_resources(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM))
}

/// This process's PID namespace (`sys::pid_namespace`), read afresh each time: a value kept
/// from earlier would be inherited by a child forked into a new PID namespace
/// (`unshare(CLONE_NEWPID)` then `fork`, or `clone(CLONE_NEWPID)`), which would then record
/// its parent's namespace and be checked by a pid that means nothing there. Called per claim
/// and per new holding watched, never on a data path.
fn own_pid_namespace() -> u64 {
    sys::pid_namespace()
}

/// What a claimant records about itself (its pid, start time and PID namespace). The start
/// time is 0 ("unknown") where `/proc` cannot tell it (not mounted, or hidden); a shortage of
/// descriptors or memory that keeps this process from reading it is an error instead, since a
/// holding recorded without its start time loses the pid-reuse check for its whole life, in its
/// peer's watcher and for every would-be taker.
pub(crate) fn this_process() -> io::Result<(i32, u64, u64)> {
    let me = sys::getpid();
    let start_time = match sys::proc_stat(me) {
        Ok((_, start)) => start,
        Err(e) if short_of_resources(&e) => return Err(e),
        Err(_) => 0,
    };
    Ok((me, start_time, own_pid_namespace()))
}

impl PeerCheck for ProcessWatch {
    fn active(&self) -> bool {
        !self.peer.is_some_and(|p| p.same_process)
    }

    fn gone(&mut self, hdr: &Header, counters: &Counters) -> bool {
        // A latched death is answered from the slot alone (one load: has the role been taken
        // over since?), never rate-limited, so a survivor's next call sees a take-over at once.
        if !self.dead {
            let now = sys::monotonic_coarse();
            if self.last_check.is_some_and(|t| now.saturating_sub(t) < MIN_CHECK_INTERVAL) {
                return false;
            }
            self.last_check = Some(now);
        }
        match self.check(hdr) {
            Liveness::Dead => true,
            Liveness::Alive => false,
            Liveness::Unknown => {
                counters.peer_unknown.bump();
                false
            }
        }
    }
}

/// Why a take-over was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The role was never claimed: there is no holder to take it from.
    NeverClaimed,
    /// The holder closed the role cleanly: final.
    Closed,
    /// The holder (pid) lives.
    Alive(i32),
    /// Whether the holder (pid) lives cannot be told now.
    Unknown(i32),
    /// The slot kept changing, or names no process (a hostile value): nothing to prove dead.
    Unsettled,
    /// The slot holds a state that no version of this crate writes.
    Corrupt,
}

/// Takes role `role` over for `who`, if its holder is proven dead: the identity in the slot is
/// checked by `probe` (as the peer watcher checks it), and only a `Dead` answer lets the one
/// atomic step (`Header::take`) try to replace exactly that holding. A racing taker that won
/// first, a holder that closed meanwhile, or a new holding is seen at the next look. Returns the
/// new claim word, the taker's token.
pub(crate) fn take_over(
    hdr: &Header,
    role: Role,
    who: Claimant,
    mut probe: impl FnMut(&mut ProcessWatch, Peer) -> Liveness,
) -> Result<Claim, Refusal> {
    // The watcher of the other role watches `role`'s slot.
    let mut watch = ProcessWatch::new(role.peer());
    for _ in 0..8 {
        match hdr.claim_word(role).state() {
            ROLE_FREE => return Err(Refusal::NeverClaimed),
            ROLE_CLOSED => return Err(Refusal::Closed),
            ROLE_CLAIMED | ROLE_TAKING => {}
            _ => return Err(Refusal::Corrupt),
        }
        let answer = watch.check_with(hdr, &mut probe);
        let Some(holder) = watch.peer() else { continue };
        match answer {
            Liveness::Alive => return Err(Refusal::Alive(holder.pid)),
            Liveness::Unknown => return Err(Refusal::Unknown(holder.pid)),
            Liveness::Dead => match hdr.take(role, holder.claim, who) {
                Ok(token) => return Ok(token),
                // Someone else moved first (a racing taker, a close): look again.
                Err(_) => continue,
            },
        }
    }
    Err(Refusal::Unsettled)
}

/// [`take_over`] with the real liveness check (pidfd, `/proc`, `kill(pid, 0)`).
pub(crate) fn take_over_dead(hdr: &Header, role: Role, who: Claimant) -> Result<Claim, Refusal> {
    take_over(hdr, role, who, ProcessWatch::check_process)
}

#[cfg(all(test, not(mirror_ring_loom)))]
mod tests {
    use super::*;

    /// A forged slot naming a thread (not a process): `pidfd_open` refuses it with `EINVAL`,
    /// the watcher checks it through `/proc` (a live thread: alive), and it goes on using
    /// pidfds for the next holder.
    #[test]
    fn a_thread_id_in_a_slot_does_not_turn_pidfds_off() {
        if let Err(e) = sys::pidfd_open(sys::getpid()) {
            eprintln!("no pidfd_open here ({e}): nothing to turn off");
            return;
        }
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            let _ = stop_rx.recv();
        });
        let tid = tid_rx.recv().unwrap();
        let peer = |pid| Peer {
            pid,
            start_time: 0,
            claim: Claim::new(ROLE_CLAIMED, 1, pid),
            same_process: false,
            foreign: false,
        };
        let mut watch = ProcessWatch::new(Role::Consumer);
        // The man page says EINVAL; 6.18 answers ENOENT.
        let refusal = sys::pidfd_open(tid).unwrap_err().raw_os_error();
        assert!(matches!(refusal, Some(libc::EINVAL) | Some(libc::ENOENT)), "{refusal:?}");
        assert_eq!(pidfd_refusal(Some(libc::EINVAL)), Refused::ThisTime);
        assert_eq!(pidfd_refusal(Some(libc::ENOENT)), Refused::ThisTime);
        assert_eq!(watch.check_process(peer(tid)), Liveness::Alive);
        assert!(!watch.no_pidfd, "a thread id turned pidfds off for good");
        // The next holder, a real process (this one), is watched through a pidfd.
        watch.pidfd = None;
        assert_eq!(watch.check_process(peer(sys::getpid())), Liveness::Alive);
        assert!(watch.pidfd.is_some());
        drop(stop_tx);
        thread.join().unwrap();
    }
}
