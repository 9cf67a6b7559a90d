//! Watching the peer process: is the process that claimed the other end alive, dead, or
//! impossible to tell?
//!
//! The story (what is checked, how often, what a blocked call does with the answer, and the
//! limits) is told once, in the crate docs' "Peer death" section; this module is the code.
//!
//! The answer has three values. Only proof is death:
//! - the pidfd (Linux 5.3+) opened on the peer's pid became readable (it terminated; also
//!   while it is an unreaped zombie);
//! - `pidfd_open` or `kill(pid, 0)` failed with `ESRCH` (no such process);
//! - `/proc/<pid>/stat` shows state `Z` or `X`, or a start time other than the one the
//!   claimant recorded (the pid now names a later process).
//!
//! Everything else that prevents an answer ("no descriptor left" (`EMFILE`), `/proc`
//! unreadable or hiding the process, a peer in another PID namespace) is
//! [`Liveness::Unknown`]: retried at the next check, never latched, never taken for a death.
//! A death, once proven, is latched: a dead process does not come back.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use crate::header::{Header, Role, ROLE_CLAIMED};
use crate::stats::Counters;
use crate::sync::Ordering;
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
/// (BENCHMARKS.md, "Round trip between processes").
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(1);

/// Watches the peer process of one end.
#[derive(Debug)]
pub(crate) struct ProcessWatch {
    /// Our role; the peer is the other one.
    role: Role,
    /// The peer's identity, once its slot showed a claim.
    peer: Option<Peer>,
    /// The pidfd on the peer, once opened.
    pidfd: Option<OwnedFd>,
    /// `pidfd_open` is not available here (ENOSYS, EPERM from a sandbox): use `/proc` only.
    no_pidfd: bool,
    /// A death, once proven.
    dead: bool,
    /// When the last check ran (coarse clock).
    last_check: Option<Duration>,
}

/// The peer as its slot described it when we first looked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer {
    pub(crate) pid: i32,
    /// 0 when the claimant could not read it.
    pub(crate) start_time: u64,
    /// The peer is this very process (both ends here): it cannot outlive itself.
    same_process: bool,
    /// The peer's pid belongs to another PID namespace: it names nothing we can check.
    foreign: bool,
}

impl ProcessWatch {
    pub(crate) fn new(role: Role) -> ProcessWatch {
        ProcessWatch { role, peer: None, pidfd: None, no_pidfd: false, dead: false, last_check: None }
    }

    /// Reads the peer's slot, once it shows a claim with a pid.
    pub(crate) fn identify(&self, hdr: &Header) -> Option<Peer> {
        let slot = hdr.slot(self.role.peer());
        // Acquire: pairs with the AcqRel compare-and-swap that claimed the slot.
        if slot.state.load(Ordering::Acquire) != ROLE_CLAIMED {
            // Not claimed yet: nobody to watch. Closed: the close flag speaks for itself.
            return None;
        }
        // Acquire: pairs with the Release store of pid in `Header::claim`; start_time and
        // pid_ns are visible once pid is.
        let pid = slot.pid.load(Ordering::Acquire);
        if pid <= 0 {
            // Claimed, pid not stored yet (or a hostile value that names no process).
            return None;
        }
        let start_time = slot.start_time.load(Ordering::Relaxed);
        let (theirs, ours) = (slot.pid_ns.load(Ordering::Relaxed), own_pid_namespace());
        let foreign = theirs != 0 && ours != 0 && theirs != ours;
        let same_process = !foreign && pid == sys::getpid();
        Some(Peer { pid, start_time, same_process, foreign })
    }

    /// One check of the peer, without rate limiting.
    pub(crate) fn check(&mut self, hdr: &Header) -> Liveness {
        if self.dead {
            return Liveness::Dead;
        }
        if self.peer.is_none() {
            self.peer = self.identify(hdr);
        }
        let Some(peer) = self.peer else { return Liveness::Alive };
        if peer.same_process {
            return Liveness::Alive;
        }
        if peer.foreign {
            return Liveness::Unknown;
        }
        let answer = self.check_process(peer);
        self.dead = answer == Liveness::Dead;
        answer
    }

    fn check_process(&mut self, peer: Peer) -> Liveness {
        if self.pidfd.is_none() && !self.no_pidfd {
            match sys::pidfd_open(peer.pid) {
                Ok(fd) => {
                    // The pidfd may name a later process that reused the pid: compare start
                    // times. No answer from /proc (it hides the process, or no descriptor is
                    // left): the pidfd alone decides from now on.
                    if peer.start_time != 0 {
                        if let Ok((_, now)) = sys::proc_stat(peer.pid) {
                            if now != peer.start_time {
                                return Liveness::Dead;
                            }
                        }
                    }
                    self.pidfd = Some(fd);
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::ESRCH) => return Liveness::Dead,
                    // Not on this kernel, or refused by a sandbox: for good.
                    Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EINVAL) => self.no_pidfd = true,
                    // EMFILE, ENFILE, ENOMEM...: try again at the next check; /proc for now.
                    _ => {}
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

/// The `/proc` and `kill(pid, 0)` check, for when no pidfd is open.
fn check_proc(peer: Peer) -> Liveness {
    match sys::proc_stat(peer.pid) {
        Ok((state, start)) => {
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

/// This process's PID namespace (`sys::pid_namespace`), read once per process.
fn own_pid_namespace() -> u64 {
    // An atomic, not a `OnceLock`, which a child forked during its initialisation would wait
    // on for ever. u64::MAX: not read yet (a race reads it twice, harmlessly).
    static NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);
    // Relaxed: every thread reads the same value.
    match NS.load(std::sync::atomic::Ordering::Relaxed) {
        u64::MAX => {
            let ns = sys::pid_namespace();
            NS.store(ns, std::sync::atomic::Ordering::Relaxed);
            ns
        }
        ns => ns,
    }
}

/// What a claimant records about itself (its pid, start time and PID namespace).
pub(crate) fn this_process() -> (i32, u64, u64) {
    let me = sys::getpid();
    (me, sys::process_start_time(me).unwrap_or(0), own_pid_namespace())
}

impl PeerCheck for ProcessWatch {
    fn active(&self) -> bool {
        !self.peer.is_some_and(|p| p.same_process)
    }

    fn gone(&mut self, hdr: &Header, counters: &Counters) -> bool {
        if self.dead {
            return true;
        }
        let now = sys::monotonic_coarse();
        if self.last_check.is_some_and(|t| now.saturating_sub(t) < MIN_CHECK_INTERVAL) {
            return false;
        }
        self.last_check = Some(now);
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
