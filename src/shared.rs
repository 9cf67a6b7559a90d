//! Rings between processes: claiming roles, attaching to a memfd from another process, and
//! watching the peer process.
//!
//! # Roles
//!
//! Each role (producer, consumer) is claimed once for the life of the ring, by a
//! compare-and-swap on its slot in the shared header; a second claim of the same role, from any
//! process, fails with `AlreadyExists`, also after the first claimant closed or died (a role
//! whose holder died is *taken over* instead: [`SharedRing::take_over_producer`],
//! [`SharedRing::take_over_consumer`], and `docs::lifecycle`, "Restart"). The
//! claimant records its pid, its start time and its PID namespace next to the claim, which is
//! how the peer watches it.
//! A claimed end belongs to the process that claimed it: after `fork()` the child's copy
//! refuses to work (`Unsupported`: a per-process fork generation, bumped by a
//! `pthread_atfork` child handler, is compared on every call) and its drop does not close the
//! parent's ring. A ring made with `dont_fork` does not exist in a child at all: claiming from
//! the child's copy of a [`SharedRing`] fails with `Unsupported`, and dropping it unmaps
//! nothing. Forks that bypass `pthread_atfork` (a raw `clone` syscall) are not detected: do not
//! use an end from such a child.
//!
//! # Peer death
//!
//! A process can die without running `Drop`, leaving its role claimed until another process
//! takes it over (`docs::lifecycle`, "Restart"). Every blocked call on a ring between
//! processes whose peer is another process sleeps at most 25 ms at a time (`wait.rs`; 100 ms
//! when both ends turn out to be in this one, with no process to watch) and then checks the
//! peer, so a dead peer is noticed within about 25 ms (measured: see `tests/process.rs`).
//! The check uses a pidfd (Linux 5.3+) opened on the pid in the peer's slot, which becomes
//! readable when the process terminates, **also while it is an unreaped zombie**: a parent
//! does not have to `waitpid` a dead child before its ring notices.
//!
//! Pid reuse: the pid in the slot could name a newer process if the claimant died and was
//! reaped before the first check. So after opening the pidfd, the process's start time
//! (`/proc/<pid>/stat` field 22) is compared with the one the claimant recorded; a mismatch
//! means the claimant is gone. From then on the pidfd names that one process, whatever happens
//! to the number. Where pidfds are unavailable, `/proc/<pid>/stat` (state, where a zombie
//! counts as dead unless other threads of it still run, and start time) is read at every check
//! instead.
//!
//! Limits: a pid recorded in another PID namespace names a different process, or none, here:
//! such a peer is *unknown*, never dead, and its death is seen only through timeouts. If
//! `/proc` hides other users' processes (`hidepid`), the start time cannot be compared and the
//! pidfd alone decides.
//!
//! Until the peer has claimed its role there is no one to watch, so a blocking call just waits
//! (use a timeout variant). `try_*` calls and `is_abandoned` run the same check (at most once
//! per millisecond) when they would otherwise report "empty", "full" or "still there". A write
//! that fits is not refused because the consumer died: like the data in a pipe nobody reads,
//! it is lost, and the next write that has to wait gets `BrokenPipe`.
//!
//! # Trust
//!
//! The peer and the ring file are untrusted; see the crate docs, "Between processes", for what
//! is validated and what a hostile peer can still do. Here: [`SharedRing::from_fd`] validates
//! the file before mapping it and the header again after; the pid and start time in the peer's
//! slot are only ever used to open a pidfd, read `/proc` and ask `kill(pid, 0)` whether the
//! process exists (signal 0 sends nothing), and a pid that is not positive is ignored.

use std::fmt;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use crate::header::{Claim, Claimant, Header, Role, ROLE_TAKING};
use crate::mirror::{self, Backend, MirrorMap};
use crate::peer::{self, ProcessWatch, Refusal};
use crate::protocol;
use crate::ring::{Consumer, Producer, RingMem, RingOptions};
use crate::sync::{self, Park};
use crate::sys;

impl RingOptions {
    /// Builds a ring to share between processes: an anonymous one survives `fork()`, and a
    /// [`Backend::Memfd`] one can also be sent to an unrelated process. Each process then
    /// claims one role ([`SharedRing::into_producer`], [`SharedRing::into_consumer`]).
    ///
    /// # Errors
    ///
    /// As [`build`](RingOptions::build).
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = mirror_ring::RingOptions::new().capacity(1 << 16).shared()?;
    /// assert_eq!(ring.capacity(), 1 << 16);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shared(&self) -> io::Result<SharedRing> {
        Ok(SharedRing { mem: RingMem::create(self)?, spin: self.spin })
    }
}

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
    /// The ring's capacity in bytes (the requested size rounded up to a power of two of at
    /// least a page).
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = mirror_ring::RingOptions::new().capacity(100_000).shared()?;
    /// assert_eq!(ring.capacity(), 131_072);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.mem.capacity()
    }

    /// The backend the ring was built with (never [`Backend::Auto`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use mirror_ring::{Backend, RingOptions};
    /// let ring = RingOptions::new().backend(Backend::Memfd).shared()?;
    /// assert_eq!(ring.backend(), Backend::Memfd);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn backend(&self) -> Backend {
        self.mem.map().backend()
    }

    /// The ring's memfd, for [`Backend::Memfd`] rings (`None` for the fd-less backends). It is
    /// sealed against shrinking and growing; whoever receives a copy can map the ring (with
    /// [`from_fd`](Self::from_fd)) but not resize it. A ring this process created is sealed
    /// against further sealing too; an attached one carries the seals its creator set
    /// (`from_fd` requires only the first two).
    ///
    /// # Examples
    ///
    /// ```
    /// use mirror_ring::{Backend, RingOptions};
    /// assert!(RingOptions::new().backend(Backend::Memfd).shared()?.as_fd().is_some());
    /// assert!(RingOptions::new().backend(Backend::Duplicate).shared()?.as_fd().is_none());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.mem.map().as_fd()
    }

    /// Claims the producer role for this process.
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if any process has claimed the producer role of this ring before;
    /// `Unsupported` in a forked child when the ring was made with
    /// [`dont_fork`](crate::RingOptions::dont_fork) (the child has no such memory);
    /// `InvalidData` if the ring's cursors are impossible (the role is then closed and the
    /// ring poisoned, so the peer does not wait for an end that will never act), or if the
    /// role's slot holds a state no version of the crate writes (nothing is changed); the OS
    /// error as `source()` (EMFILE, ENFILE, ENOMEM) when this process cannot read its own start
    /// time for want of a descriptor or memory, which its peer needs to tell it from a later
    /// process with the same pid (nothing is claimed: try again once there is one);
    /// `OutOfMemory`, the OS error as `source()`, when the process's first claim cannot
    /// install the fork handler that lets its forked children tell their copies of the end
    /// (`docs::lifecycle`; nothing is claimed).
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = mirror_ring::RingOptions::new().shared()?;
    /// let tx = ring.clone().into_producer()?;
    /// assert_eq!(ring.into_producer().unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
    /// # drop(tx);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_producer(self) -> io::Result<Producer> {
        let (park, token) = self.claim(Role::Producer)?;
        Producer::attach(self.mem.clone(), self.spin, park, Some(ProcessWatch::new(Role::Producer)), token)
            .map_err(|e| self.abandon(Role::Producer, token, e))
    }

    /// Claims the consumer role for this process.
    ///
    /// # Errors
    ///
    /// As [`into_producer`](Self::into_producer), for the consumer role.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    ///
    /// let ring = mirror_ring::RingOptions::new().shared()?;
    /// let mut rx = ring.clone().into_consumer()?;
    /// let mut tx = ring.into_producer()?; // both ends in one process is fine too
    /// tx.write_all(b"ping")?;
    /// drop(tx);
    /// let mut got = Vec::new();
    /// rx.read_to_end(&mut got)?;
    /// assert_eq!(got, b"ping");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_consumer(self) -> io::Result<Consumer> {
        let (park, token) = self.claim(Role::Consumer)?;
        Consumer::attach(self.mem.clone(), self.spin, park, Some(ProcessWatch::new(Role::Consumer)), token)
            .map_err(|e| self.abandon(Role::Consumer, token, e))
    }

    /// Takes the producer role over from a process that died holding it, and resumes where
    /// the dead producer's committed cursor stands: bytes it wrote and did not commit (or
    /// committed in a batch it never published) vanish; the consumer reads on from the last
    /// committed byte. A consumer that got `UnexpectedEof` after the death reads on too. (For
    /// a framed ring the committed position may be past the published head, by the frames of
    /// one publish: see
    /// [`docs::lifecycle`](crate::docs::lifecycle), "Where the newcomer resumes".)
    ///
    /// The holder must be *proven* dead (a pidfd that became readable, no such process, a
    /// zombie, a start time that changed: the same check the peer watcher makes, see
    /// [`docs::lifecycle`](crate::docs::lifecycle), "Restart"). Of any number of processes
    /// racing to take the role over, exactly one succeeds; the others see the winner alive.
    /// Any process that maps the ring may take over: a supervisor that inherited the ring
    /// across `fork()` without ever claiming a role, or an unrelated process that attached
    /// with [`from_fd`](Self::from_fd). A forked copy of the living holder cannot (the holder
    /// lives).
    ///
    /// If the holder was in fact alive (a peer forged its death), it notices on its next call
    /// and stops touching the ring (`ConnectionAborted`): see
    /// [`docs::trust_model`](crate::docs::trust_model).
    ///
    /// # Errors
    ///
    /// - `AlreadyExists` while the holder lives (including when the holder is this process),
    ///   and for a role that was closed cleanly: a close is final, never taken over (the
    ///   message says which).
    /// - `NotFound` if the role was never claimed: there is nothing to take over; claim it
    ///   with [`into_producer`](Self::into_producer).
    /// - `WouldBlock` if it cannot be told now whether the holder lives (no descriptor left,
    ///   `/proc` unreadable, a holder in another PID namespace, or a slot that kept changing
    ///   while it was read): nothing was changed; try again later (in another PID namespace
    ///   the answer stays unknown).
    /// - The OS error as `source()` (EMFILE, ENFILE, ENOMEM) when this process cannot read its
    ///   own start time, as for [`into_producer`](Self::into_producer): nothing was changed.
    /// - `InvalidData` if the ring is corrupt: a role state no version of the crate writes
    ///   (nothing is changed), or impossible cursors (then the role is closed and the ring
    ///   poisoned, as for a claim).
    /// - `Unsupported` in a forked child of a [`dont_fork`](crate::RingOptions::dont_fork)
    ///   ring (the child has no such memory).
    ///
    /// # Examples
    ///
    /// A producer process dies in the middle of a write; another process (here the parent)
    /// takes the role over and the consumer reads on.
    ///
    /// ```
    /// use std::io::{ErrorKind, Read, Write};
    ///
    /// let ring = mirror_ring::RingOptions::new().capacity(4096).shared()?;
    /// let mut rx = ring.clone().into_consumer()?;
    /// // SAFETY (example): the child uses only its own end, then leaves through _exit.
    /// let pid = unsafe { libc::fork() };
    /// if pid == 0 {
    ///     let mut tx = ring.into_producer().unwrap();
    ///     tx.write_all(b"committed ").unwrap();
    ///     let mut grant = tx.write_grant(5).unwrap();
    ///     grant[..5].copy_from_slice(b"never"); // written, not committed: lost with the child
    ///     unsafe { libc::_exit(0) }; // dies without closing its end
    /// }
    /// unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    /// let mut buf = [0u8; 64];
    /// let n = rx.read(&mut buf)?;
    /// assert_eq!(&buf[..n], b"committed ");
    /// assert_eq!(rx.read(&mut buf).unwrap_err().kind(), ErrorKind::UnexpectedEof);
    ///
    /// let mut tx = ring.take_over_producer()?; // the dead child's role
    /// tx.write_all(b"resumed")?;
    /// drop(tx);
    /// let mut rest = String::new();
    /// rx.read_to_string(&mut rest)?; // the consumer reads on
    /// assert_eq!(rest, "resumed");
    /// // Closed cleanly now: final.
    /// assert_eq!(ring.take_over_producer().unwrap_err().kind(), ErrorKind::AlreadyExists);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn take_over_producer(&self) -> io::Result<Producer> {
        let (park, token) = self.take_over(Role::Producer)?;
        Producer::attach(self.mem.clone(), self.spin, park, Some(ProcessWatch::new(Role::Producer)), token)
            .map(Producer::took_over)
            .map_err(|e| self.abandon(Role::Producer, token, e))
    }

    /// Takes the consumer role over from a process that died holding it, and resumes at the
    /// dead consumer's released cursor: every byte it had not released (read or not) is
    /// delivered again, so nothing committed is lost (at least once). A producer that got
    /// `BrokenPipe` after the death writes on, and one blocked on the full ring continues
    /// when the new consumer releases space.
    ///
    /// The rules are those of [`take_over_producer`](Self::take_over_producer): only from a
    /// holder proven dead, exactly one winner among racing takers, any process that maps the
    /// ring, never a cleanly closed role.
    ///
    /// # Errors
    ///
    /// As [`take_over_producer`](Self::take_over_producer), for the consumer role (claim a
    /// never-claimed one with [`into_consumer`](Self::into_consumer)).
    ///
    /// # Examples
    ///
    /// A consumer process dies holding a read grant it never released; a supervisor that never
    /// claimed a role takes the role over and gets those bytes again.
    ///
    /// ```
    /// use std::io::{ErrorKind, Read, Write};
    ///
    /// let ring = mirror_ring::RingOptions::new().capacity(4096).shared()?;
    /// let mut tx = ring.clone().into_producer()?;
    /// tx.write_all(b"hello")?;
    /// // SAFETY (example): the child uses only its own end, then leaves through _exit.
    /// let pid = unsafe { libc::fork() };
    /// if pid == 0 {
    ///     let mut rx = ring.into_consumer().unwrap();
    ///     let grant = rx.read_grant(5).unwrap(); // read, never released
    ///     let code = i32::from(&*grant != b"hello");
    ///     unsafe { libc::_exit(code) }; // dies without releasing or closing
    /// }
    /// // While the worker lives its role is its own (AlreadyExists). Once it is dead:
    /// let mut status = 0;
    /// unsafe { libc::waitpid(pid, &mut status, 0) };
    /// assert_eq!(status, 0);
    /// let mut rx = ring.take_over_consumer()?;
    /// tx.write_all(b", again")?; // the producer writes on
    /// drop(tx);
    /// let mut got = String::new();
    /// rx.read_to_string(&mut got)?;
    /// assert_eq!(got, "hello, again"); // the unreleased bytes were delivered again
    /// assert_eq!(ring.take_over_consumer().unwrap_err().kind(), ErrorKind::AlreadyExists);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn take_over_consumer(&self) -> io::Result<Consumer> {
        let (park, token) = self.take_over(Role::Consumer)?;
        Consumer::attach(self.mem.clone(), self.spin, park, Some(ProcessWatch::new(Role::Consumer)), token)
            .map_err(|e| self.abandon(Role::Consumer, token, e))
    }

    /// Claims `role` for this process; returns how it parks (recorded in its slot) and the
    /// claim word (the end's token of ownership).
    fn claim(&self, role: Role) -> io::Result<(Park, Claim)> {
        let (park, who) = self.claimant()?;
        let hdr = self.mem.header();
        match hdr.claim(role, who) {
            Some(token) => Ok((park, token)),
            // As for a take-over, and as `check_identity` judges it at attach time.
            None if hdr.claim_word(role).state() > ROLE_TAKING => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the {} role's slot holds a state no version of this crate writes: the ring's header is \
                     corrupt; nothing was changed",
                    role.name()
                ),
            )),
            None => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("the {} role of this ring was already claimed", role.name()),
            )),
        }
    }

    /// Takes `role` over for this process from a holder proven dead (see `peer::take_over`).
    fn take_over(&self, role: Role) -> io::Result<(Park, Claim)> {
        let (park, who) = self.claimant()?;
        let name = role.name();
        let err = |kind, msg: String| Err(io::Error::new(kind, msg));
        match peer::take_over_dead(self.mem.header(), role, who) {
            Ok(token) => Ok((park, token)),
            Err(Refusal::Alive(pid)) => err(
                io::ErrorKind::AlreadyExists,
                format!("the {name} role of this ring is held by process {pid}, which is alive"),
            ),
            Err(Refusal::Closed) => err(
                io::ErrorKind::AlreadyExists,
                format!("the {name} role of this ring was closed cleanly: a close is final, never taken over"),
            ),
            Err(Refusal::NeverClaimed) => err(
                io::ErrorKind::NotFound,
                format!("the {name} role of this ring was never claimed: there is nothing to take over; claim it with into_{name}"),
            ),
            Err(Refusal::Unknown(pid)) => err(
                io::ErrorKind::WouldBlock,
                format!(
                    "cannot tell now whether process {pid}, which holds the {name} role, is alive (no descriptor \
                     left, /proc unreadable, or another PID namespace); nothing was changed: try again later"
                ),
            ),
            Err(Refusal::Unsettled) => err(
                io::ErrorKind::WouldBlock,
                format!("the {name} role's slot kept changing or names no process; nothing was changed: try again later"),
            ),
            Err(Refusal::Corrupt) => err(
                io::ErrorKind::InvalidData,
                format!("the {name} role's slot holds an invalid state: the ring is corrupt"),
            ),
        }
    }

    /// What a claim or a take-over by this process records, and how it parks.
    fn claimant(&self) -> io::Result<(Park, Claimant)> {
        if !self.mem.map().mapped_here() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this ring was made with dont_fork: it does not exist in a forked child",
            ));
        }
        let park = sync::register_process(true)?;
        let (pid, start_time, pid_ns) = peer::this_process().map_err(|e| {
            crate::error::Context::explain(
                e,
                "cannot claim a role: this process cannot read its own start time (/proc/self/stat), which \
                 its peer needs to tell it from a later process with the same pid; nothing was claimed"
                    .to_owned(),
            )
        })?;
        Ok((park, Claimant { pid, start_time, pid_ns, park }))
    }

    /// A role was claimed but its end could not be built (corrupt cursors): close the role and
    /// poison the ring, so the peer is not left waiting for an end that will never act.
    fn abandon(&self, role: Role, token: Claim, err: io::Error) -> io::Error {
        let hdr = self.mem.header();
        hdr.poison();
        let _ = protocol::close(hdr, role, token);
        err
    }

    /// Attaches to a ring file received from another process (a [`Backend::Memfd`] ring's fd).
    ///
    /// The file is untrusted. In this order, it must be: a regular file on shared memory
    /// (tmpfs/memfd); sealed against shrinking and growing (`F_SEAL_SHRINK | F_SEAL_GROW`; the
    /// size is read only once the seals make it final) and not against writing; open for
    /// reading and writing; exactly one page plus a power-of-two capacity long; and its header
    /// (read with `pread` before anything is mapped, and checked again once mapped) must carry
    /// the magic, this layout version, that capacity, a known backend, sane role states and
    /// cursors no further apart than the capacity. The descriptor is consumed: on error it is
    /// closed and nothing stays mapped. It is made close-on-exec (one inherited across `exec`
    /// arrives without the flag): to pass the ring to a program you start, give it a
    /// duplicate.
    ///
    /// # Errors
    ///
    /// `InvalidData` for any file that is not a valid, sealed ring; OS errors from `fstat`,
    /// `fcntl` and `pread` on the descriptor, with their errno as `raw_os_error()`, and from
    /// mapping it (`OutOfMemory` when the address space or map count runs out, the OS error as
    /// its `source()`).
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
        let pre = sys::file_info(fd.as_fd())?;
        if !pre.regular || !pre.shmem {
            return Err(bad("not a shared-memory (memfd) file"));
        }
        // Seals first: only once shrinking and growing are sealed is the size final. (Read
        // before, it could change before the mapping, and touching pages past the end of the
        // file raises SIGBUS.)
        // EINVAL: not a memfd; EBADF: an O_PATH descriptor. Either way, not a ring file (the
        // errno kept as `source()`). Any other errno (a sandbox refusing the call) is the OS's
        // answer, not the file's: returned as it is, its errno as `raw_os_error()`, like those
        // of the other calls on the descriptor.
        let seals = sys::get_seals(fd.as_fd()).map_err(|e| match e.raw_os_error() {
            Some(libc::EINVAL | libc::EBADF) => crate::error::Context::explain_as(
                io::ErrorKind::InvalidData,
                e,
                "not a usable ring file: cannot read its seals".to_owned(),
            ),
            _ => e,
        })?;
        let need = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        if seals & need != need {
            return Err(bad("not sealed against shrinking and growing (F_SEAL_SHRINK | F_SEAL_GROW)"));
        }
        if seals & (libc::F_SEAL_WRITE | libc::F_SEAL_FUTURE_WRITE) != 0 {
            return Err(bad("sealed against writing"));
        }
        if sys::access_mode(fd.as_fd())? != libc::O_RDWR {
            return Err(bad("not open for reading and writing"));
        }
        // Close-on-exec, as every ring descriptor the crate makes or receives is: one inherited
        // across `exec` arrives without it, and would pass on to every program started later.
        sys::set_cloexec(fd.as_fd())?;
        let info = sys::file_info(fd.as_fd())?;
        let h = sys::page_size() as u64;
        let n = info.size.checked_sub(h).ok_or_else(|| bad("shorter than the control page"))?;
        // A power of two of at least a page whose two views fit the address space.
        let cap = usize::try_from(n)
            .ok()
            .filter(|&c| mirror::round_len(c).ok() == Some(c))
            .ok_or_else(|| bad("size is not one page plus a power-of-two capacity"))?;
        // Validate a copy of the header before mapping anything.
        let mut copy = MaybeUninit::<Header>::zeroed();
        // SAFETY: the bytes of a zeroed Header: it is made of integer atomics and padding, so
        // the buffer is fully initialised and any bytes written into it form a valid Header.
        let bytes = unsafe { std::slice::from_raw_parts_mut(copy.as_mut_ptr().cast::<u8>(), size_of::<Header>()) };
        if sys::pread_at(fd.as_fd(), bytes, 0)? != bytes.len() {
            return Err(bad("shorter than its header"));
        }
        // SAFETY: fully initialised above (zeroed, then overwritten by file bytes), and every bit
        // pattern is a valid Header.
        let copy = unsafe { copy.assume_init() };
        copy.check_identity(n, h).map_err(|b| bad(b.describe()))?;
        let map = MirrorMap::from_ring_file(fd, cap)?;
        let mem = RingMem::from_validated(map);
        // Again in shared memory: the other holder may have changed it since the copy. (It can
        // change it at any time after this, too; the protocol validates every value it uses.)
        mem.header().check_identity(n, h).map_err(|b| bad(b.describe()))?;
        Ok(SharedRing { mem, spin: crate::wait::DEFAULT_SPIN })
    }

    /// Sets the longest the ends claimed from this handle (and its later clones) spin before
    /// they sleep (each end adapts within it), as
    /// [`RingOptions::spin_budget`](crate::RingOptions::spin_budget) does for a ring
    /// this process creates. A ring attached with [`from_fd`](SharedRing::from_fd) or
    /// [`recv_from`](SharedRing::recv_from) starts with the default (50 µs). Each process
    /// chooses its own: the budget is not stored in the ring.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mirror_ring::{Backend, RingOptions, SharedRing};
    ///
    /// let ring = RingOptions::new().backend(Backend::Memfd).shared()?;
    /// let mut attached = SharedRing::from_fd(ring.as_fd().unwrap().try_clone_to_owned()?)?;
    /// attached.spin_budget(Duration::ZERO); // a consumer that sleeps at once when idle
    /// let rx = attached.into_consumer()?;
    /// # drop(rx);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn spin_budget(&mut self, budget: Duration) -> &mut Self {
        self.spin = budget;
        self
    }

    /// Locks this process's mapping of the ring in memory, as
    /// [`RingOptions::lock_memory`](crate::RingOptions::lock_memory) does at creation: for a
    /// ring this process attached to ([`from_fd`](Self::from_fd),
    /// [`recv_from`](Self::recv_from)) or inherited across `fork` (a child does not inherit
    /// its parent's lock). Locking twice is harmless; the lock ends when this process unmaps
    /// the ring (its last end or handle is dropped).
    ///
    /// # Errors
    ///
    /// `OutOfMemory` over `RLIMIT_MEMLOCK` (which counts `2 * capacity` plus one page, or one
    /// page for a huge-page ring, whose data the kernel does not lock; unless the process has
    /// `CAP_IPC_LOCK`), `PermissionDenied` when that limit is zero, with a message naming it
    /// and the OS error as `source()` (or when a sandbox refuses `mlock`, which the message
    /// then names instead); `OutOfMemory` also when the memory to fault the pages in
    /// ran out, saying so (in the prefault that comes first, which leaves nothing locked; or
    /// `mlock`'s `EAGAIN`, should pages reclaimed since then find no memory); `Unsupported` in
    /// a forked child of a `dont_fork` ring, which has no mapping to lock.
    ///
    /// # Examples
    ///
    /// ```
    /// use mirror_ring::{Backend, RingOptions, SharedRing};
    ///
    /// let ring = RingOptions::new().capacity(64 * 1024).backend(Backend::Memfd).shared()?;
    /// let attached = SharedRing::from_fd(ring.as_fd().unwrap().try_clone_to_owned()?)?;
    /// if let Err(e) = attached.lock_memory() {
    ///     assert!(e.to_string().contains("RLIMIT_MEMLOCK"), "{e}");
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn lock_memory(&self) -> io::Result<()> {
        self.mem.map().lock()
    }

    /// Sends this ring's memfd over a Unix socket (`SCM_RIGHTS`); the receiver calls
    /// [`recv_from`](SharedRing::recv_from).
    ///
    /// # Errors
    ///
    /// `Unsupported` for fd-less backends; OS errors from `sendmsg`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::unix::net::UnixStream;
    /// use mirror_ring::{Backend, RingOptions, SharedRing};
    ///
    /// let (here, there) = UnixStream::pair()?; // in real use, one end in each process
    /// let ring = RingOptions::new().backend(Backend::Memfd).shared()?;
    /// ring.send_to(&here)?;
    /// let received = SharedRing::recv_from(&there)?; // validated, then mapped a second time
    /// let mut tx = ring.into_producer()?;
    /// let mut rx = received.into_consumer()?;
    /// tx.write_all(b"over the socket")?;
    /// drop(tx);
    /// let mut got = String::new();
    /// rx.read_to_string(&mut got)?;
    /// assert_eq!(got, "over the socket");
    /// # Ok::<(), std::io::Error>(())
    /// ```
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
    /// As [`from_fd`](SharedRing::from_fd), plus those of [`recv_fd`] (`UnexpectedEof` if the
    /// socket closed first; with no descriptor left, an error with EMFILE as its `source()`
    /// saying that the ring sent is lost).
    ///
    /// # Examples
    ///
    /// See [`send_to`](SharedRing::send_to). A socket that carries no descriptor:
    ///
    /// ```
    /// use std::io::Write;
    /// let (a, b) = std::os::unix::net::UnixStream::pair()?;
    /// (&a).write_all(b"x")?;
    /// let err = mirror_ring::SharedRing::recv_from(&b).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    /// # Ok::<(), std::io::Error>(())
    /// ```
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

/// Sends a file descriptor over a Unix socket as `SCM_RIGHTS` ancillary data (with one byte
/// of payload, which [`recv_fd`] consumes).
///
/// # Errors
///
/// OS errors from `sendmsg`.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// let (a, b) = std::os::unix::net::UnixStream::pair()?;
/// let file = std::fs::File::open("/proc/self/exe")?;
/// mirror_ring::send_fd(&a, file.as_fd())?;
/// let copy: std::fs::File = mirror_ring::recv_fd(&b)?.into();
/// assert_eq!(copy.metadata()?.len(), file.metadata()?.len());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn send_fd(sock: &UnixStream, fd: BorrowedFd<'_>) -> io::Result<()> {
    sys::send_fd(sock.as_fd(), fd)
}

/// Receives one file descriptor sent by [`send_fd`] (close-on-exec).
///
/// # Errors
///
/// OS errors from `recvmsg`; `UnexpectedEof` if the socket closed first; `InvalidData` if the
/// message carried no descriptor, or more than one (any received are closed). A process with
/// no descriptor left (`RLIMIT_NOFILE`) cannot receive one: the kernel closes it, and the
/// error, with EMFILE (or ENFILE) as its `source()`, says that what was sent is lost.
///
/// # Examples
///
/// See [`send_fd`].
pub fn recv_fd(sock: &UnixStream) -> io::Result<OwnedFd> {
    sys::recv_fd(sock.as_fd())
}

#[cfg(all(test, not(mirror_ring_loom)))]
mod tests {
    use super::*;
    use crate::header::ROLE_CLAIMED;
    use crate::sync::Ordering;

    /// A slot with a state no version of the crate writes is corruption (`InvalidData`) for a
    /// claim as for a take-over, not "already claimed"; nothing is changed, and the other
    /// role, whose slot is sound, is still claimed as usual.
    #[test]
    fn a_claim_on_a_slot_in_an_unknown_state_is_invalid_data() {
        let ring = RingOptions::new().capacity(4096).shared().unwrap();
        let forged = Claim::new(ROLE_TAKING + 1, 3, 1).raw();
        ring.mem.header().slot(Role::Producer).claim.store(forged, Ordering::Relaxed);
        for err in [ring.clone().into_producer().unwrap_err(), ring.clone().take_over_producer().unwrap_err()] {
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        }
        assert_eq!(ring.mem.header().claim_word(Role::Producer).raw(), forged, "nothing was changed");
        // A sound slot: the usual answers.
        let rx = ring.clone().into_consumer().unwrap();
        assert_eq!(ring.clone().into_consumer().unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(ring.mem.header().claim_word(Role::Consumer).state(), ROLE_CLAIMED);
        drop(rx);
    }

    /// A ring attached from its descriptor takes the spin budget its handle was given: with a
    /// long one a read that times out never parks (it spins until its deadline); with none it
    /// parks at once.
    #[test]
    fn an_attached_ring_takes_the_spin_budget_it_is_given() {
        use crate::Backend;
        for (budget, parks) in [(Duration::from_secs(600), false), (Duration::ZERO, true)] {
            let ring = RingOptions::new().capacity(4096).backend(Backend::Memfd).shared().unwrap();
            let _tx = ring.clone().into_producer().unwrap();
            let mut attached = SharedRing::from_fd(ring.as_fd().unwrap().try_clone_to_owned().unwrap()).unwrap();
            attached.spin_budget(budget);
            let mut rx = attached.into_consumer().unwrap();
            let err = rx.read_timeout(&mut [0; 8], Duration::from_millis(20)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            let stats = rx.stats();
            assert_eq!(stats.parks > 0, parks, "budget {budget:?}: {stats:?}");
        }
    }
}
