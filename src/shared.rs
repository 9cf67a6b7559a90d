//! Rings between processes: claiming roles, attaching to a memfd from another process, and
//! watching the peer process.
//!
//! # Roles
//!
//! Each role (producer, consumer) is claimed once for the life of the ring, by a
//! compare-and-swap on its slot in the shared header; a second claim of the same role, from any
//! process, fails with `AlreadyExists`. The claimant records its pid and start time next to the
//! claim, which is how the peer watches it. A claimed end belongs to the process that claimed
//! it: after `fork()` the child's copy refuses to work (`Unsupported`) and its drop does not
//! close the parent's ring.
//!
//! # Peer death
//!
//! A process can die without running `Drop`, leaving its role claimed forever. Every blocked
//! call on a ring between processes sleeps at most 25 ms at a time and then checks the peer: a
//! pidfd (Linux 5.3+) opened on the pid in the peer's slot becomes readable when the process
//! terminates, also while it is an unreaped zombie. Pid reuse is handled by the start time:
//! after opening the pidfd, the process's start time (`/proc/<pid>/stat`) must equal the one the
//! claimant recorded, or the original claimant is already gone. Once open, a pidfd keeps naming
//! that one process. Without pidfds, `/proc/<pid>/stat` (state and start time) is read instead.
//!
//! # Trust
//!
//! See the crate docs, "Between processes".

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::header::{Header, Role, ROLE_CLAIMED};
use crate::mirror::{Backend, MirrorMap};
use crate::ring::{Consumer, Producer, RingMem};
use crate::sync::{self, Ordering};
use crate::sys;
use crate::wait::PeerCheck;

/// A ring shared between processes, before this process has claimed its end.
///
/// Build one with [`RingOptions::shared`](crate::RingOptions::shared). Every backend survives
/// `fork()`: create the ring, fork, and let each process claim one role. A
/// [`Backend::Memfd`] ring can also be sent to an unrelated process over a Unix socket
/// ([`send_to`](SharedRing::send_to), [`recv_from`](SharedRing::recv_from)).
///
/// Cloning is cheap and gives another handle to the same mapping (for example to claim both
/// roles in one process).
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use mirror_ring::RingOptions;
///
/// let ring = RingOptions::new().capacity(1 << 16).shared()?;
/// // SAFETY (example): the child only uses its own end and then leaves through _exit.
/// let pid = unsafe { libc::fork() };
/// if pid == 0 {
///     let mut tx = ring.into_producer().unwrap();
///     tx.write_all(b"hello from the child").unwrap();
///     drop(tx);
///     unsafe { libc::_exit(0) };
/// }
/// let mut rx = ring.into_consumer()?;
/// let mut text = String::new();
/// rx.read_to_string(&mut text)?;
/// assert_eq!(text, "hello from the child");
/// unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct SharedRing {
    mem: Arc<RingMem>,
    spin: Duration,
}

impl SharedRing {
    pub(crate) fn from_mem(mem: Arc<RingMem>, spin: Duration) -> SharedRing {
        SharedRing { mem, spin }
    }

    /// The ring's capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.mem.capacity()
    }

    /// The backend the ring was built with.
    pub fn backend(&self) -> Backend {
        self.mem.map().backend()
    }

    /// The ring's memfd, for [`Backend::Memfd`] rings (`None` for the fd-less backends).
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.mem.map().as_fd()
    }

    /// Claims the producer role for this process.
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if any process has claimed the producer role of this ring before.
    pub fn into_producer(self) -> io::Result<Producer> {
        let watch = self.claim(Role::Producer)?;
        Producer::attach(self.mem, self.spin, Some(watch))
    }

    /// Claims the consumer role for this process.
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if any process has claimed the consumer role of this ring before.
    pub fn into_consumer(self) -> io::Result<Consumer> {
        let watch = self.claim(Role::Consumer)?;
        Consumer::attach(self.mem, self.spin, Some(watch))
    }

    fn claim(&self, role: Role) -> io::Result<ProcessWatch> {
        sync::register_process();
        let me = sys::getpid();
        let start = sys::process_start_time(me).unwrap_or(0);
        if !self.mem.header().claim(role, me, start) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("the {} role of this ring was already claimed", role.name()),
            ));
        }
        Ok(ProcessWatch::new(role))
    }

    /// Attaches to a ring file received from another process (a [`Backend::Memfd`] ring's fd).
    ///
    /// The file is untrusted: it must be a shared-memory file sealed against shrinking and
    /// growing (`F_SEAL_SHRINK | F_SEAL_GROW`), exactly one page plus a power-of-two capacity
    /// long, with a header whose magic, version, capacity, backend, cursors and role states
    /// are valid. Anything else is refused before any byte of the data is touched.
    ///
    /// # Errors
    ///
    /// `InvalidData` for any file that is not a valid, sealed ring; OS errors from mapping it.
    ///
    /// # Examples
    ///
    /// ```
    /// use mirror_ring::{Backend, RingOptions, SharedRing};
    ///
    /// let ring = RingOptions::new().backend(Backend::Memfd).shared()?;
    /// let fd = ring.as_fd().unwrap().try_clone_to_owned()?; // as another process would get it
    /// let attached = SharedRing::from_fd(fd)?;
    /// assert_eq!(attached.capacity(), ring.capacity());
    ///
    /// let (sock, _other) = std::os::unix::net::UnixStream::pair()?; // not a ring
    /// assert_eq!(SharedRing::from_fd(sock.into()).unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn from_fd(fd: OwnedFd) -> io::Result<SharedRing> {
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("not a usable ring file: {why}"));
        let info = sys::file_info(fd.as_fd())?;
        if !info.regular || !info.shmem {
            return Err(bad("not a shared-memory (memfd) file"));
        }
        let seals = match sys::get_seals(fd.as_fd()) {
            Ok(s) => s,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Err(bad("the file does not support seals")),
            Err(e) => return Err(e),
        };
        let need = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        if seals & need != need {
            return Err(bad("not sealed against shrinking and growing (F_SEAL_SHRINK | F_SEAL_GROW)"));
        }
        let h = sys::page_size() as u64;
        let n = info.size.checked_sub(h).ok_or_else(|| bad("shorter than the control page"))?;
        if n < h || !n.is_power_of_two() || usize::try_from(n).is_err() {
            return Err(bad("size is not one page plus a power-of-two capacity"));
        }
        let map = MirrorMap::from_ring_file(fd, n as usize)?;
        let mem = RingMem::from_validated(map);
        mem.header().check_identity(n, h).map_err(|b| bad(b.describe()))?;
        Ok(SharedRing { mem, spin: crate::wait::DEFAULT_SPIN })
    }

    /// Sends this ring's memfd over a Unix socket (`SCM_RIGHTS`); the receiver calls
    /// [`recv_from`](SharedRing::recv_from).
    ///
    /// # Errors
    ///
    /// `Unsupported` for fd-less backends; OS errors from `sendmsg`.
    pub fn send_to(&self, sock: &UnixStream) -> io::Result<()> {
        let fd = self.as_fd().ok_or_else(|| {
            io::Error::new(io::ErrorKind::Unsupported, "only a Backend::Memfd ring has a descriptor to send")
        })?;
        send_fd(sock, fd)
    }

    /// Receives a ring sent with [`send_to`](SharedRing::send_to) and attaches to it (validated
    /// as by [`from_fd`](SharedRing::from_fd)).
    ///
    /// # Errors
    ///
    /// As [`from_fd`](SharedRing::from_fd), plus OS errors from `recvmsg` and `UnexpectedEof`
    /// if the socket closed first.
    pub fn recv_from(sock: &UnixStream) -> io::Result<SharedRing> {
        SharedRing::from_fd(recv_fd(sock)?)
    }
}

impl fmt::Debug for SharedRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRing")
            .field("capacity", &self.capacity())
            .field("backend", &self.backend())
            .field("fd", &self.as_fd())
            .finish()
    }
}

/// Sends a file descriptor over a Unix socket as `SCM_RIGHTS` ancillary data.
///
/// # Errors
///
/// OS errors from `sendmsg`.
pub fn send_fd(sock: &UnixStream, fd: BorrowedFd<'_>) -> io::Result<()> {
    sys::send_fd(sock.as_fd(), fd)
}

/// Receives one file descriptor sent by [`send_fd`] (close-on-exec).
///
/// # Errors
///
/// OS errors from `recvmsg`; `UnexpectedEof` if the socket closed first; `InvalidData` if the
/// message carried no descriptor.
pub fn recv_fd(sock: &UnixStream) -> io::Result<OwnedFd> {
    sys::recv_fd(sock.as_fd())
}

/// Watches the peer process of one end (see the module docs).
pub(crate) struct ProcessWatch {
    /// Our role; the peer is the other one.
    role: Role,
    pidfd: Option<OwnedFd>,
    /// The peer's pid, once known; checked through /proc when pidfds are unavailable.
    pid: i32,
    start_time: u64,
    dead: bool,
    same_process: bool,
    last_check: Option<Instant>,
}

/// Checks closer together than this reuse the previous answer, so a polling `try_*` loop does
/// not make a syscall per call.
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(1);

impl ProcessWatch {
    pub(crate) fn new(role: Role) -> ProcessWatch {
        ProcessWatch { role, pidfd: None, pid: 0, start_time: 0, dead: false, same_process: false, last_check: None }
    }

    fn check(&mut self, hdr: &Header) -> bool {
        if self.pid == 0 {
            let slot = hdr.slot(self.role.peer());
            // Acquire: pairs with the Release store of ROLE_CLAIMED...
            if slot.state.load(Ordering::Acquire) != ROLE_CLAIMED {
                // Not claimed yet: nobody to watch. Closed: the close flag speaks for itself.
                return false;
            }
            // Acquire: pairs with the Release store of pid in `Header::claim`; start_time is
            // visible once pid is.
            let pid = slot.pid.load(Ordering::Acquire);
            if pid <= 0 {
                return false; // claimed, pid not stored yet
            }
            let start = slot.start_time.load(Ordering::Relaxed);
            if pid == sys::getpid() {
                self.same_process = true;
                return false;
            }
            match sys::pidfd_open(pid) {
                Ok(fd) => {
                    // The pidfd may name a newer process that reused the pid: compare start
                    // times. A mismatch, or no /proc entry, means the claimant is gone.
                    if start != 0 && sys::process_start_time(pid) != Some(start) {
                        return true;
                    }
                    self.pidfd = Some(fd);
                }
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return true,
                Err(_) => {} // no pidfds here: fall back to /proc below
            }
            self.pid = pid;
            self.start_time = start;
        }
        match &self.pidfd {
            Some(fd) => sys::pidfd_exited(fd.as_fd()).unwrap_or(false),
            None => !sys::process_alive(self.pid, self.start_time),
        }
    }
}

impl PeerCheck for ProcessWatch {
    fn active(&self) -> bool {
        !self.same_process
    }

    fn gone(&mut self, hdr: &Header) -> bool {
        if self.dead {
            return true;
        }
        if self.same_process {
            return false;
        }
        let now = Instant::now();
        if self.last_check.is_some_and(|t| now.duration_since(t) < MIN_CHECK_INTERVAL) {
            return false;
        }
        self.last_check = Some(now);
        self.dead = self.check(hdr);
        self.dead
    }
}
