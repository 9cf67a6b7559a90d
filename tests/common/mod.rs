//! Helpers shared by the integration tests and the crate's unit tests (included there with
//! `#[path]`): forking a child that `_exit`s, and looking at this process's mappings and fds.
#![allow(dead_code, unreachable_pub)]

use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{compiler_fence, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mirror_ring::{Backend, MirrorMap};

/// How many parking helper threads this process has (`comm` cuts `mirror-ring-park-N`).
pub fn helper_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|s| s.starts_with("mirror-ring-par"))
        .count()
}

/// The backends that work on this machine (at least one must).
pub fn available() -> Vec<Backend> {
    let v: Vec<Backend> = Backend::CONCRETE.into_iter().filter(|b| b.is_available()).collect();
    assert!(!v.is_empty(), "no backend works on this machine");
    v
}

/// The system page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// How many forks through [`in_child`] and [`spawn_child`] lie between the test process and
/// this one: 0 in the test process, one more in each child. A [`Child`] guard a forked child
/// inherited (its closure captured it) was made at a smaller depth: that copy is not the
/// parent, and must neither signal nor wait for the pid.
static FORK_DEPTH: AtomicU32 = AtomicU32::new(0);

/// Forks a child that runs `f` and leaves through `_exit` (101 when `f` panics); returns its
/// pid in the parent, never in the child.
///
/// The child dies with the thread that forked it (`PR_SET_PDEATHSIG`): a test child killed by
/// its guard takes the children it had forked along, and so does a test process that aborts
/// or crashes. So fork only from a thread that outlives the child (a test's own thread, the
/// main thread of a test child), never from a short-lived helper thread.
fn fork_child(f: impl FnOnce() -> i32) -> libc::pid_t {
    let parent = std::process::id();
    // SAFETY: the child only runs `f` and then `_exit`s; it never returns into the harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        FORK_DEPTH.fetch_add(1, Ordering::Relaxed);
        // SAFETY: prctl(PR_SET_PDEATHSIG) only records a signal to send later; no memory
        // effects. (It cannot fail with a valid signal; nothing here may panic anyway.)
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
        // A parent that died before that sends nothing: do what its signal would have done.
        // (The first process of a new PID namespace sees a parent id of 0 and cannot check.)
        let ppid = std::os::unix::process::parent_id();
        if ppid != parent && ppid != 0 {
            // SAFETY: _exit ends the child at once, as its parent's death would have.
            unsafe { libc::_exit(128 + libc::SIGKILL) };
        }
        let code = catch_unwind(AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: _exit ends the child without running the parent's atexit handlers or
        // destructors.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Runs `f` in a forked child and returns its exit status (or 128 + signal number). The child
/// never returns into the test harness: it leaves through `_exit`, also when `f` panics (101).
pub fn in_child(f: impl FnOnce() -> i32) -> i32 {
    wait_pid(fork_child(f))
}

/// Waits for child `pid` (forked by the test itself, or by code under test); its exit status,
/// or 128 + the signal that killed it.
pub fn wait_pid(pid: libc::pid_t) -> i32 {
    match reap(pid, 0) {
        Ok(Some(raw)) => decode(raw),
        other => panic!("waitpid({pid}): {other:?}"),
    }
}

/// Sends `fds` in one `SCM_RIGHTS` message with one byte of payload, as the crate's `send_fd`
/// sends one; what `sendmsg` returned (1 once sent).
pub fn send_fds(sock: &std::os::unix::net::UnixStream, fds: &[std::os::fd::RawFd]) -> isize {
    let mut byte = [0u8];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let payload = std::mem::size_of_val(fds) as u32;
    // SAFETY: CMSG_SPACE / CMSG_LEN are pure size computations.
    let (space, len) = unsafe { (libc::CMSG_SPACE(payload) as usize, libc::CMSG_LEN(payload) as usize) };
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: all-zero bytes are a valid msghdr; the control buffer holds one cmsg of `len`
    // bytes, written through the CMSG macros within it.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = len as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast::<i32>(), fds.len());
        libc::sendmsg(sock.as_raw_fd(), &msg, 0)
    }
}

/// The state letter of a `/proc/.../stat` line (the field after the command in parentheses,
/// which may itself hold parentheses).
fn stat_state(stat: &str) -> Option<char> {
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// Forks a child that runs `f` and `_exit`s, and returns it without waiting, in a [`Child`]
/// guard: whatever happens in the test, the child is killed and reaped by the time the guard
/// is gone.
pub fn spawn_child(f: impl FnOnce() -> i32) -> Child {
    let pid = fork_child(f);
    Child { pid, depth: FORK_DEPTH.load(Ordering::Relaxed), status: None }
}

/// A forked child of this process, from [`spawn_child`]. Dropping the guard (also while a
/// panic unwinds, when an assertion failed before the test waited) kills the child with
/// SIGKILL and reaps it, unless it was reaped already: then the pid may name another process
/// by now, and the guard leaves it alone. So no test can leave a child running, or a zombie.
///
/// The pid stays this child's until the guard reaps it, so [`kill`](Child::kill) and
/// [`state`](Child::state) are safe until then, and refuse (panic) after.
#[derive(Debug)]
#[must_use = "dropping a Child kills it at once"]
pub struct Child {
    pid: libc::pid_t,
    /// [`FORK_DEPTH`] in the process that forked it, the only one that may signal or reap it.
    depth: u32,
    /// The exit status (or 128 + signal) once reaped.
    status: Option<i32>,
}

impl Child {
    /// The child's pid, for what looks at it (`/proc`, a ring's role slot): the guard keeps
    /// signalling and waiting to itself.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Waits for the child and returns its exit status, or 128 + the signal that killed it
    /// (the same again once reaped).
    pub fn wait(&mut self) -> i32 {
        if let Some(status) = self.status {
            return status;
        }
        match reap(self.pid, 0) {
            Ok(Some(raw)) => self.reaped(raw),
            other => panic!("waitpid({}): {other:?}", self.pid),
        }
    }

    /// Reaps the child if it has ended, without waiting: its status, or `None` while it runs.
    pub fn try_wait(&mut self) -> Option<i32> {
        if self.status.is_none() {
            match reap(self.pid, libc::WNOHANG) {
                Ok(Some(raw)) => {
                    self.reaped(raw);
                }
                Ok(None) => {}
                Err(e) => panic!("waitpid({}): {e}", self.pid),
            }
        }
        self.status
    }

    /// Waits for the child at most `limit`; on expiry kills it, reaps it, and fails the test.
    pub fn wait_within(&mut self, limit: Duration) -> i32 {
        self.reap_within(limit).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`wait_within`](Child::wait_within) for a test that reports rather than panics: the
    /// status, or (the child killed and reaped on expiry) what happened.
    pub fn reap_within(&mut self, limit: Duration) -> Result<i32, String> {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                return Ok(status);
            }
            if Instant::now() > end {
                // Where it was stuck (the kernel's view of each thread), before it is gone.
                let threads = self.threads();
                self.kill();
                self.wait();
                return Err(format!(
                    "child {} still running after {limit:?}: killed (its threads: {threads})",
                    self.pid
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Sends SIGKILL to the child (which stays unreaped: a zombie until waited for).
    pub fn kill(&self) {
        assert!(self.status.is_none(), "child {} was reaped already: its pid may name another process", self.pid);
        // SAFETY: our own child, not yet reaped (so the pid cannot name anyone else).
        let r = unsafe { libc::kill(self.pid, libc::SIGKILL) };
        assert_eq!(r, 0, "kill({}): {}", self.pid, std::io::Error::last_os_error());
    }

    /// The state letter of the child's `/proc/<pid>/stat` (`Z` for a zombie).
    pub fn state(&self) -> char {
        assert!(self.status.is_none(), "child {} was reaped already: its pid may name another process", self.pid);
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).expect("child's /proc entry");
        stat_state(&stat).unwrap()
    }

    /// What each of the child's threads is doing, for a failure message about a child that
    /// made no progress: `tid state wchan syscall` per thread (`/proc/<pid>/task`: the
    /// kernel function it sleeps in and the number of the system call it is in, where the
    /// kernel tells), or why it cannot be told.
    pub fn threads(&self) -> String {
        assert!(self.status.is_none(), "child {} was reaped already: its pid may name another process", self.pid);
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return "no /proc entry".into();
        };
        let mut out = Vec::new();
        for task in tasks.flatten() {
            let dir = task.path();
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
            let state = stat_state(&stat).unwrap_or('?');
            let wchan = std::fs::read_to_string(dir.join("wchan")).unwrap_or_default();
            let syscall = std::fs::read_to_string(dir.join("syscall")).unwrap_or_default();
            let call = syscall.split_whitespace().next().unwrap_or("?");
            out.push(format!("{} {state} {} {call}", task.file_name().to_string_lossy(), wchan.trim()));
        }
        out.sort();
        out.join(", ")
    }

    /// Runs `call` (typically one that blocks on the ring this child shares) while another
    /// thread kills the child with SIGKILL `after` it started; returns what `call` returned and
    /// how long after the kill it did. The killer is a scoped thread: it is joined before this
    /// returns, also when `call` panics, so the guard can never reap the child while a kill
    /// is still coming (the pid could name another process by then).
    pub fn kill_during<T>(&self, after: Duration, call: impl FnOnce() -> T) -> (T, Duration) {
        std::thread::scope(|s| {
            let killer = s.spawn(|| {
                std::thread::sleep(after);
                self.kill();
                Instant::now()
            });
            let r = call();
            let returned = Instant::now();
            let killed_at = killer.join().expect("the killer thread panicked");
            (r, returned.saturating_duration_since(killed_at))
        })
    }

    fn reaped(&mut self, raw: libc::c_int) -> i32 {
        let status = decode(raw);
        self.status = Some(status);
        status
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // A copy inherited by a forked child is not the parent (see FORK_DEPTH); a reaped pid
        // is no longer ours. Never panics: this runs while a failed test unwinds.
        if self.status.is_some() || self.depth != FORK_DEPTH.load(Ordering::Relaxed) {
            return;
        }
        // SAFETY: our own child, not yet reaped (so the pid cannot name anyone else). It may
        // have exited already: then the signal does nothing.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let _ = reap(self.pid, 0);
    }
}

/// `waitpid(pid, flags)`, retried on EINTR: the raw status once reaped, `None` if `WNOHANG`
/// found the child still running.
fn reap(pid: libc::pid_t, flags: libc::c_int) -> std::io::Result<Option<libc::c_int>> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r == pid {
            return Ok(Some(status));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// A raw wait status as the tests compare it: the exit status, or 128 + the signal.
fn decode(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

/// The lines of /proc/self/maps that this crate could have created: shared mappings (both
/// anonymous shmem and memfd views show an `s` in the permissions) and memfd files.
pub fn our_mappings() -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines()
        .filter(|l| {
            let perms = l.split_whitespace().nth(1).unwrap_or("");
            perms.ends_with('s') || l.contains("memfd:") || l.contains("/dev/zero")
        })
        .map(str::to_owned)
        .collect()
}

/// This process's address space in bytes (`VmSize` in /proc/self/status), if readable.
pub fn vm_size() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: usize =
        status.lines().find_map(|l| l.strip_prefix("VmSize:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Sets this process's soft limit on `res` to `soft` bytes (the hard limit unchanged); the old
/// soft limit, or `None` if the call failed. For forked children of the tests.
pub fn set_soft_limit(res: libc::__rlimit_resource_t, soft: usize) -> Option<libc::rlim_t> {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a valid out-pointer, then a valid rlimit for this process's own limit.
    unsafe {
        if libc::getrlimit(res, &mut rl) != 0 {
            return None;
        }
        let old = rl.rlim_cur;
        rl.rlim_cur = soft as libc::rlim_t;
        (libc::setrlimit(res, &rl) == 0).then_some(old)
    }
}

/// Offsets in the shared header (the ABI pinned in `src/header.rs`: 128-byte lines on every
/// architecture), for tests that play a hostile peer. A role slot: the claim word u64 (state in
/// bits 0..8, epoch in 8..32, pid in 32..64, so on a little-endian machine a u32 state+epoch at
/// +0 and the pid at +4), start_time u64, pid_ns u64, park u32, 0u32.
#[allow(dead_code)]
/// The lock every test takes before it changes one of the machine's kernel knobs (the huge
/// page pool, the transparent huge page knobs) and holds until it has put the knob back.
///
/// A lock in the process alone is not enough: a test runner that runs each test in a process
/// of its own (cargo-nextest), or two `cargo test` runs at once, would let one test put a knob
/// back while another counts on it, or leave the pool raised for good (the second test saves
/// the first one's raised value and restores that). So after the in-process lock it takes an
/// `flock` on a file in the temporary directory ([`knob_lock_across_processes`]). The lock file
/// is opened only by the thread that holds the in-process lock, so the tests that count this
/// process's descriptors under the lock never see another test's. Where the file cannot be
/// opened or locked (a read-only `/tmp`), the in-process lock stands alone.
pub struct KnobLock {
    // Dropped first: the file lock goes before the in-process one.
    _file: Option<std::fs::File>,
    _thread: std::sync::MutexGuard<'static, ()>,
}

static KNOBS_IN_PROCESS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the [`KnobLock`], waiting for any other test, in this process or another, that holds it.
pub fn knob_lock() -> KnobLock {
    let thread = KNOBS_IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    KnobLock { _file: knob_lock_across_processes(), _thread: thread }
}

/// The in-process part of [`knob_lock`] alone (for the test of the other part).
pub fn knob_lock_in_process() -> std::sync::MutexGuard<'static, ()> {
    KNOBS_IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The part of [`knob_lock`] that serialises processes: the lock file, opened anew and locked
/// with `flock` (held until the file is closed). `None` where it cannot be opened or locked.
/// A forked child takes this part alone: it may have inherited the in-process lock held.
pub fn knob_lock_across_processes() -> Option<std::fs::File> {
    let path = std::env::temp_dir().join("mirror-ring-test-knobs.lock");
    std::fs::OpenOptions::new().create(true).append(true).open(path).ok().filter(|f| loop {
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            break true;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break false;
        }
    })
}

/// The header word of a `len`-byte frame at ring position `pos`, stamped, for rings of up to
/// 4 GiB, exactly as `docs::framing` specifies it (a number: store it little-endian): the
/// length; its complement XOR the position stamp `pos >> 3`, 30 bits; state `10`. The same
/// frame's header before its stamp (state `01`) is this XOR `3 << 62`.
pub fn stamped_word(pos: u64, len: u32) -> u64 {
    let check = u64::from(!len ^ (pos >> 3) as u32) & 0x3FFF_FFFF;
    u64::from(len) | check << 32 | 1 << 63
}

pub mod header_offsets {
    pub const OFF_MAGIC: usize = 0;
    pub const OFF_VERSION: usize = 8;
    pub const OFF_BACKEND: usize = 12;
    pub const OFF_CAPACITY: usize = 16;
    pub const OFF_DATA_OFFSET: usize = 24;
    pub const OFF_PRODUCER: usize = 32;
    pub const OFF_CONSUMER: usize = 64;
    pub const OFF_POISONED: usize = 96;
    pub const OFF_FRAMING_START: usize = 104;
    /// The producer's framing epoch: its role slot's `framing` word (a `u32` at +28).
    pub const OFF_FRAMING_EPOCH: usize = OFF_PRODUCER + 28;
    pub const OFF_HEAD: usize = 128;
    pub const OFF_TAIL: usize = 256;
    pub const OFF_DATA_WAITER: usize = 384;
    pub const OFF_SPACE_WAITER: usize = 512;
    /// The header's size in bytes.
    pub const HEADER_LEN: usize = 640;
}

/// A field of the `/proc/self/smaps` entry of the mapping that holds `addr`, in kB
/// (`KernelPageSize`, `ShmemPmdMapped`, ...); `None` if there is no such mapping or field.
pub fn smaps_kb(addr: usize, field: &str) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for l in smaps.lines() {
        if let Some((range, _)) = l.split_once(' ') {
            if let Some((a, b)) = range.split_once('-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                    inside = a <= addr && addr < b;
                    continue;
                }
            }
        }
        if inside {
            if let Some(v) = l.strip_prefix(field).and_then(|v| v.strip_prefix(':')) {
                return v.trim().trim_end_matches("kB").trim().parse().ok();
            }
        }
    }
    None
}

/// The bytes this process has locked in memory (`VmLck` in /proc/self/status).
pub fn locked_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmLck:")).expect("VmLck in /proc/self/status");
    let kib: usize = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmLck in kB");
    kib * 1024
}

/// In a forked child running as root: becomes `nobody`, so that the limits root's
/// capabilities ignore (`RLIMIT_MEMLOCK`, `RLIMIT_NPROC`) apply. True if it is not root now.
pub fn become_nobody() -> bool {
    // SAFETY: plain calls on this process's own credentials, in a forked child.
    unsafe {
        libc::geteuid() != 0
            || (libc::setgroups(0, std::ptr::null()) == 0 && libc::setgid(65534) == 0 && libc::setuid(65534) == 0)
    }
}

/// In a forked child: sets `RLIMIT_MEMLOCK` to `bytes` and, when running as root, becomes
/// `nobody` so that the limit applies (`CAP_IPC_LOCK` ignores it). False if either step
/// failed or a capability to lock remains.
pub fn limit_locking_to(bytes: usize) -> bool {
    let rl = libc::rlimit { rlim_cur: bytes as libc::rlim_t, rlim_max: bytes as libc::rlim_t };
    // SAFETY: plain calls on this process's own limits and credentials, in a forked child.
    unsafe {
        if libc::setrlimit(libc::RLIMIT_MEMLOCK, &rl) != 0 {
            return false;
        }
    }
    if !become_nobody() {
        return false;
    }
    // CAP_IPC_LOCK is bit 14 of the effective set.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim);
    cap_eff.and_then(|hex| u64::from_str_radix(hex, 16).ok()).is_some_and(|caps| caps & (1 << 14) == 0)
}

/// Whether any mapping of this process overlaps `[addr, addr + len)`.
pub fn mapped_at(addr: usize, len: usize) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines().any(|l| {
        let range = l.split_whitespace().next().unwrap_or("");
        let Some((a, b)) = range.split_once('-') else { return false };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            return false;
        };
        a < addr + len && addr < b
    })
}

/// Maps `len` fresh bytes of anonymous private memory at exactly `addr`, filled with 0x5a, as
/// any allocation of the process could take a free range: `None` if anything is mapped there
/// already (`MAP_FIXED_NOREPLACE` fails rather than replace it). The mapping lives until the
/// process ends.
#[allow(clippy::disallowed_methods)] // a test playing an allocation that takes a free range
pub fn take_range(addr: usize, len: usize) -> Option<&'static mut [u8]> {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p as usize != addr {
        return None;
    }
    // SAFETY: our own fresh mapping of `len` bytes, never unmapped by this code.
    let mine = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) };
    mine.fill(0x5a);
    Some(mine)
}

/// The children of the calling thread that are not reaped yet (running or zombies): a
/// [`Child`] guard the test lost track of leaves one here. (Per thread: a child belongs to the
/// thread that forked it, so tests running beside this one do not show.)
pub fn children_of_this_thread() -> Vec<libc::pid_t> {
    let list = std::fs::read_to_string("/proc/thread-self/children").expect("read /proc/thread-self/children");
    list.split_whitespace().map(|p| p.parse().expect("a pid")).collect()
}

/// The open descriptors of this process, sorted.
pub fn open_fds() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    v.sort();
    v
}

/// The `/proc/self/task` directories of this process's threads whose `comm` starts with
/// `prefix`.
pub fn threads_named(prefix: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix)))
        .map(|t| t.path())
        .collect()
}

/// How many times those threads went to sleep (`voluntary_ctxt_switches`, summed): each sleep
/// of a parked thread ends in one wake-up.
pub fn sleeps_of(prefix: &str) -> u64 {
    threads_named(prefix)
        .iter()
        .filter_map(|t| std::fs::read_to_string(t.join("status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// The descriptor of mirror-ring's peer-poll thread, if that thread runs in this process: the
/// epoll instance it waits in (`docs::accounting`, "Descriptors": one per process, opened with
/// the thread when the first async end parks on a peer process it watches through a pidfd,
/// and kept, like the thread, for the life of the process). Read from the thread's system call
/// (`/proc/self/task/<tid>/syscall`: the number, then the descriptor), waiting (boundedly) for
/// it to be back in its wait.
pub fn peer_poll_fd() -> Option<String> {
    let tid = std::fs::read_dir("/proc/self/task").ok()?.flatten().find_map(|t| {
        let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
        comm.starts_with("mirror-ring-pid").then(|| t.file_name().to_string_lossy().into_owned())
    })?;
    let waits: &[libc::c_long] = &[
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_epoll_wait,
    ];
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).unwrap_or_default();
        let mut f = s.split_whitespace();
        let nr = f.next().and_then(|n| n.parse::<libc::c_long>().ok());
        let fd = f.next().and_then(|a| i64::from_str_radix(a.trim_start_matches("0x"), 16).ok());
        if let (Some(nr), Some(fd)) = (nr, fd) {
            if waits.contains(&nr) {
                return Some(fd.to_string());
            }
        }
        assert!(Instant::now() < until, "the peer-poll thread {tid} is not back in epoll_wait: {s:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// [`open_fds`] less the peer-poll thread's epoll instance ([`peer_poll_fd`]).
pub fn open_fds_but_peer_poll() -> Vec<String> {
    let mut fds = open_fds();
    if let Some(ours) = peer_poll_fd() {
        fds.retain(|fd| *fd != ours);
    }
    fds
}

/// A small, fast, seeded generator (xorshift64*), so tests are reproducible without a
/// dependency. Print the seed on failure to replay a run.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-ish in `0..=max` (inclusive, as the name says).
    pub fn up_to(&mut self, max: usize) -> usize {
        (self.next_u64() % (max as u64 + 1)) as usize
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// CPU time the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A writer thread that writes the bytes `0, 1, ..., n - 1` through `tx` one at a time, each
/// only once the reader whose counters `reader` holds has raised its waiter flag again (its
/// `parks` grew): every read of that reader waits, and its spin is in vain, however the threads
/// are scheduled. (A writer on a timer lets a late wake-up meet the next write inside the spin,
/// which rightly restores the whole budget.)
pub fn write_each_byte_after_a_park(
    mut tx: mirror_ring::Producer,
    reader: mirror_ring::StatsHandle,
    n: u32,
) -> std::thread::JoinHandle<()> {
    use std::io::Write;
    std::thread::spawn(move || {
        let mut parked = 0;
        for i in 0..n {
            while reader.get().parks == parked {
                std::thread::sleep(Duration::from_micros(100));
            }
            parked = reader.get().parks;
            tx.write_all(&[i as u8]).unwrap();
        }
    })
}

/// How a framed consumer receives (`drain`).
#[derive(Clone, Copy, Debug)]
pub enum Receive {
    Recv,
    TryRecv,
    Timeout,
    Batch,
    Into,
}

pub const ALL_RECEIVES: [Receive; 5] =
    [Receive::Recv, Receive::TryRecv, Receive::Timeout, Receive::Batch, Receive::Into];

/// Receives with `how` until the end of the stream or an error (`WouldBlock` retried up to
/// 10 s): the frames, then how it ended (`Ok(())` for the end of the stream).
pub fn drain(rx: &mut mirror_ring::FramedConsumer, how: Receive) -> (Vec<Vec<u8>>, Result<(), std::io::ErrorKind>) {
    use std::io::ErrorKind;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = Vec::new();
    loop {
        let r = match how {
            Receive::Recv => rx.recv().map(|f| f.map(|f| got.push(f.to_vec()))),
            Receive::TryRecv => rx.try_recv().map(|f| f.map(|f| got.push(f.to_vec()))),
            Receive::Timeout => rx.recv_timeout(Duration::from_secs(5)).map(|f| f.map(|f| got.push(f.to_vec()))),
            Receive::Batch => rx.recv_batch(|f| got.push(f.to_vec())).map(|n| (n > 0).then_some(())),
            Receive::Into => rx.recv_into(&mut buf).map(|n| n.map(|_| got.push(buf.clone()))),
        };
        match r {
            Ok(Some(())) => {}
            Ok(None) => return (got, Ok(())),
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(e) => return (got, Err(e.kind())),
        }
        assert!(got.len() < 1000, "{how:?}: a frame delivered over and over");
    }
}

/// The raw bytes a byte producer writes to fill the whole ring of `cap` bytes: at offset 0 a
/// word that reads as the stamped header of an 8-byte frame at position `cap` (one lap on,
/// where the producer's first frame will go), then 8 bytes of 0xEE, then zeros (which read as
/// the clear mark after such a frame).
pub fn lap_of_raw_bytes(cap: usize) -> Vec<u8> {
    let mut raw = vec![0u8; cap];
    raw[..8].copy_from_slice(&stamped_word(cap as u64, 8).to_le_bytes());
    raw[8..16].copy_from_slice(&[0xEE; 8]);
    raw
}

/// A byte newcomer takes the producer role of `ring` over (its holder is dead), writes
/// `b"after"` and closes: what `bytes`, the consumer turned into a byte end, reads from then to
/// the end of the stream. Exactly `b"after"` when the take-over covered nothing the consumer
/// had not already had, and the consumer reads nothing raw from before.
pub fn read_after_a_byte_newcomer(ring: &mirror_ring::SharedRing, bytes: &mut mirror_ring::Consumer) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut tx = ring.take_over_producer().expect("take the dead producer's role over");
    tx.write_all(b"after").unwrap();
    drop(tx);
    let mut rest = Vec::new();
    bytes.read_to_end(&mut rest).unwrap();
    rest
}

/// The seed for randomized tests: `MIRROR_RING_SEED` if set, else a fixed default.
pub fn seed() -> u64 {
    std::env::var("MIRROR_RING_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_1234)
}

/// A scale factor for long runs: `MIRROR_RING_LONG=1` multiplies loop counts.
pub fn scale() -> usize {
    std::env::var("MIRROR_RING_LONG").ok().and_then(|s| s.parse().ok()).unwrap_or(1).max(1)
}

/// A deterministic byte stream with a period that is not a power of two: the byte at position
/// `p` is `PATTERN[p % PERIOD]`, so any prefix of the stream can be checked by slice compares.
pub struct Pattern(Vec<u8>);

impl Pattern {
    pub const PERIOD: usize = 1_000_003;
    pub const MAX_CHUNK: usize = 256 * 1024;

    pub fn new(seed: u64) -> Pattern {
        let mut v = vec![0u8; Self::PERIOD + Self::MAX_CHUNK];
        Rng::new(seed).fill(&mut v[..Self::PERIOD]);
        v.copy_within(..Self::MAX_CHUNK, Self::PERIOD);
        Pattern(v)
    }

    /// `len` (at most `MAX_CHUNK`) bytes of the stream from position `pos`.
    pub fn at(&self, pos: u64, len: usize) -> &[u8] {
        let o = (pos % Self::PERIOD as u64) as usize;
        &self.0[o..o + len]
    }

    /// Whether `got` is the stream from `pos`.
    pub fn matches(&self, pos: u64, got: &[u8]) -> bool {
        got.chunks(Self::MAX_CHUNK).enumerate().all(|(i, c)| c == self.at(pos + (i * Self::MAX_CHUNK) as u64, c.len()))
    }
}

/// Writes the first `total` bytes of `pat` into `tx` with `write_all`s of the sizes in
/// `chunks`, in turn (odd sizes, so that copies cross the seam between the views at every kind
/// of offset).
pub fn write_pattern(
    tx: &mut mirror_ring::Producer,
    pat: &Pattern,
    total: u64,
    chunks: &[usize],
) -> std::io::Result<()> {
    use std::io::Write;
    let (mut pos, mut k) = (0u64, 0usize);
    while pos < total {
        let n = ((total - pos) as usize).min(chunks[k % chunks.len()]);
        tx.write_all(pat.at(pos, n))?;
        pos += n as u64;
        k += 1;
    }
    Ok(())
}

/// Reads `rx` to the end of the stream with reads of up to `buf_len` bytes, asserting that
/// every byte is `pat`'s; returns how many it read.
pub fn read_pattern(rx: &mut mirror_ring::Consumer, pat: &Pattern, buf_len: usize) -> u64 {
    use std::io::Read;
    let mut buf = vec![0u8; buf_len];
    let mut pos = 0u64;
    loop {
        let n = rx.read(&mut buf).unwrap();
        if n == 0 {
            return pos;
        }
        assert!(pat.matches(pos, &buf[..n]), "wrong bytes at stream position {pos}");
        pos += n as u64;
    }
}

/// Streams the first `total` bytes of `pat` from a thread writing into `tx` to this thread
/// reading `rx`, in odd-sized writes and reads that cross the seam between the views at every
/// kind of offset; asserts every byte, then the end of the stream.
pub fn stream_between_threads(tx: mirror_ring::Producer, rx: &mut mirror_ring::Consumer, pat: &Pattern, total: u64) {
    std::thread::scope(|s| {
        let mut tx = tx;
        s.spawn(move || write_pattern(&mut tx, pat, total, &[4093, 65_537, 1, 250_001]).unwrap());
        assert_eq!(read_pattern(rx, pat, 300_007), total, "every byte, then end of stream");
    });
}

/// A forked child claims `ring`'s producer and writes the first `total` bytes of `pat` in
/// 100,003-byte `write_all`s; this process reads them as the consumer, checking every byte.
/// Returns the bytes read and the child's status (3: no producer, 4: a write failed).
pub fn stream_from_child(ring: mirror_ring::SharedRing, pat: &Pattern, total: u64) -> (u64, i32) {
    let child_ring = ring.clone();
    let mut producer = spawn_child(|| {
        let Ok(mut tx) = child_ring.into_producer() else { return 3 };
        i32::from(write_pattern(&mut tx, pat, total, &[100_003]).is_err()) * 4
    });
    let mut rx = ring.into_consumer().unwrap();
    (read_pattern(&mut rx, pat, 1 << 20), producer.wait())
}

/// A per-test bound for tests whose threads block without a deadline (a lost wake-up between
/// threads sleeps for ever): if the guard is still alive after `limit`, it kills the children
/// registered with [`Watchdog::kill_on_expiry`], names `what` on stderr and aborts the test
/// process, so CI fails instead of hanging. Dropping the guard (also while a panic unwinds)
/// disarms it.
pub struct Watchdog {
    done: Option<std::sync::mpsc::Sender<Registered>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts a [`Watchdog`] for `what`, scaled by [`scale`] like the loop counts.
pub fn watchdog(what: &str, limit: Duration) -> Watchdog {
    let limit = limit * scale() as u32;
    let what = what.to_owned();
    let (done, rx) = std::sync::mpsc::channel::<Registered>();
    let thread = std::thread::spawn(move || {
        let end = Instant::now() + limit;
        let mut children = Vec::new();
        loop {
            match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
                Ok(child) => children.push(child), // a child to kill on expiry
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return, // disarmed
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
            }
        }
        for child in &children {
            child.kill();
        }
        // Straight to stderr: the harness captures eprintln! in test threads (and in threads
        // they spawn) and would lose the message with the process.
        let msg = format!("watchdog: {what} still running after {limit:?} (a lost wake-up?): aborting\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
        std::process::abort();
    });
    Watchdog { done: Some(done), thread: Some(thread) }
}

impl Watchdog {
    /// Kills `child` (a forked child of this test) before aborting, so a hang leaves no
    /// process behind: an abort unwinds nothing, so no [`Child`] guard would.
    pub fn kill_on_expiry(&self, child: &Child) {
        let _ = self.done.as_ref().map(|d| d.send(Registered::new(child)));
    }
}

/// A child registered with a [`Watchdog`], named by a pidfd where the kernel has them: the
/// test may reap the child before the watchdog fires, and its pid may then name another
/// process; the pidfd keeps naming the child (a signal to it is then refused, harmlessly).
struct Registered {
    pid: libc::pid_t,
    pidfd: Option<std::os::fd::OwnedFd>,
}

impl Registered {
    fn new(child: &Child) -> Registered {
        assert!(child.status.is_none(), "registering child {} after it was reaped", child.pid);
        // SAFETY: pidfd_open has no memory-safety preconditions; the child is ours and not
        // reaped (checked above), so the pid names it.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.pid, 0) };
        // SAFETY: a descriptor the call just opened and nothing else owns.
        let pidfd = (fd >= 0).then(|| unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as libc::c_int) });
        Registered { pid: child.pid, pidfd }
    }

    fn kill(&self) {
        match &self.pidfd {
            // SAFETY: a pidfd we own; no info struct (null) and no flags.
            Some(fd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    std::os::fd::AsRawFd::as_raw_fd(fd),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                );
            },
            // No pidfds (before Linux 5.3): by pid. If the test reaped the child already the
            // pid may have been reused, but the test process is about to abort on a hang.
            // SAFETY: kill has no memory-safety preconditions.
            None => unsafe {
                libc::kill(self.pid, libc::SIGKILL);
            },
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take()); // disconnects: the thread returns at once
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One page of anonymous shared memory that survives fork: counters the processes of a test
/// report in, readable after a child died.
pub struct SharedPage(*mut AtomicU64);

// SAFETY: the value owns its mapping (unmapped once, on drop, by whichever thread drops it) and
// hands out only `&AtomicU64`s into it, so moving it to another thread or sharing it between
// threads is like moving or sharing a `Box<[AtomicU64; 512]>`.
unsafe impl Send for SharedPage {}
// SAFETY: as for `Send`: every access through `&SharedPage` is atomic.
unsafe impl Sync for SharedPage {}

// The tests map their own pages (a test's shared counters, a hostile view of a ring's header)
// with the raw calls: the crate's wrappers in `src/sys.rs` are private to it.
#[allow(clippy::disallowed_methods)]
impl SharedPage {
    pub fn new() -> SharedPage {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choice.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        SharedPage(p.cast())
    }

    pub fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < 512);
        // SAFETY: the page holds 512 aligned u64 words, zero-initialised, accessed only
        // atomically, and mapped until drop.
        unsafe { &*self.0.add(i) }
    }

    /// In a forked child: says it is ready (word 0), then waits, without a bound (the parent's
    /// watchdog has one), until the parent says go (word 1).
    pub fn ready_then_await_go(&self) {
        self.word(0).store(1, Ordering::SeqCst);
        while self.word(1).load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Waits (at most 10 s) until word `i` is non-zero.
    pub fn await_word(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.word(i).load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "word {i} never came");
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

#[allow(clippy::disallowed_methods)] // (see `impl SharedPage`)
impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: our own mapping; no reference into it outlives self.
        unsafe { libc::munmap(self.0.cast(), 4096) };
    }
}

/// In a forked child: says it is ready (word 0 of `page`), waits for word 1, then `exec`s
/// `/bin/sh -c "sleep <seconds>"`, so that the process lives on as another program for that
/// long and then exits (127 if the `exec` fails).
pub fn exec_a_sleep_when_told(page: &SharedPage, seconds: &str) -> ! {
    page.ready_then_await_go();
    let script = std::ffi::CString::new(format!("sleep {seconds}")).unwrap();
    let argv = [c"sh".as_ptr(), c"-c".as_ptr(), script.as_ptr(), std::ptr::null()];
    // SAFETY: NUL-terminated strings that outlive the call, and a null-terminated argv.
    unsafe { libc::execv(c"/bin/sh".as_ptr(), argv.as_ptr()) };
    // SAFETY: leaves the child at once.
    unsafe { libc::_exit(127) }
}

/// A shared, writable mapping of the first page of a ring file: the header as another holder
/// of the memfd (a hostile peer, a supervisor) sees it. Each test file adds the accessors its
/// forgeries need.
pub struct HeaderView {
    ptr: *mut u8,
}

#[allow(clippy::disallowed_methods)] // (see `impl SharedPage`)
impl HeaderView {
    pub fn map(fd: std::os::fd::BorrowedFd<'_>) -> HeaderView {
        // SAFETY: a fresh mapping at an address of the kernel's choice.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page_size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        HeaderView { ptr: p.cast() }
    }

    pub fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(off % 4 == 0 && off + 4 <= page_size());
        // SAFETY: aligned, inside the mapped page, which lives as long as self; every access
        // to the header is atomic, in the ring and here.
        unsafe { &*self.ptr.add(off).cast::<AtomicU32>() }
    }

    pub fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= page_size());
        // SAFETY: as in `u32_at`.
        unsafe { &*self.ptr.add(off).cast::<AtomicU64>() }
    }
}

// SAFETY: the page is this value's own mapping, unmapped only by its drop, and every access
// through it is atomic: a view may be shared with the threads that forge or watch a header.
unsafe impl Send for HeaderView {}
// SAFETY: as above.
unsafe impl Sync for HeaderView {}

#[allow(clippy::disallowed_methods)] // (see `impl SharedPage`)
impl Drop for HeaderView {
    fn drop(&mut self) {
        // SAFETY: our own mapping; nothing refers into it after drop.
        unsafe { libc::munmap(self.ptr.cast(), page_size()) };
    }
}

/// What another holder of a memfd ring's file sees of its framing: the producer's framing
/// epoch and its start, head, and the data word at a ring position (read from the file).
pub struct Peek {
    pub header: HeaderView,
    file: std::fs::File,
    cap: u64,
}

impl Peek {
    pub fn new(ring: &mirror_ring::SharedRing) -> Peek {
        let fd = ring.as_fd().expect("a memfd ring");
        Peek {
            header: HeaderView::map(fd),
            file: std::fs::File::from(fd.try_clone_to_owned().unwrap()),
            cap: ring.capacity() as u64,
        }
    }

    pub fn epoch(&self) -> u32 {
        self.header.u32_at(header_offsets::OFF_FRAMING_EPOCH).load(Ordering::SeqCst)
    }

    pub fn start(&self) -> u64 {
        self.header.u64_at(header_offsets::OFF_FRAMING_START).load(Ordering::SeqCst)
    }

    pub fn head(&self) -> u64 {
        self.header.u64_at(header_offsets::OFF_HEAD).load(Ordering::SeqCst)
    }

    /// The data word at ring position `pos` (a multiple of 8).
    pub fn word(&self, pos: u64) -> u64 {
        use std::os::unix::fs::FileExt;
        let mut w = [0u8; 8];
        self.file.read_exact_at(&mut w, page_size() as u64 + pos % self.cap).unwrap();
        u64::from_le_bytes(w)
    }
}

/// A hostile peer's reads and writes of a ring header's cursors and poison flag, given its raw
/// word accessors (each test file's forge has its own way to reach the header).
pub trait HeaderWords {
    fn header_u64(&self, off: usize) -> &AtomicU64;
    fn header_u32(&self, off: usize) -> &AtomicU32;
    fn head(&self) -> u64 {
        self.header_u64(header_offsets::OFF_HEAD).load(Ordering::SeqCst)
    }
    fn set_head(&self, v: u64) {
        self.header_u64(header_offsets::OFF_HEAD).store(v, Ordering::SeqCst)
    }
    fn tail(&self) -> u64 {
        self.header_u64(header_offsets::OFF_TAIL).load(Ordering::SeqCst)
    }
    fn set_tail(&self, v: u64) {
        self.header_u64(header_offsets::OFF_TAIL).store(v, Ordering::SeqCst)
    }
    fn poison(&self) {
        self.header_u32(header_offsets::OFF_POISONED).store(1, Ordering::SeqCst)
    }
    fn is_poisoned(&self) -> bool {
        self.header_u32(header_offsets::OFF_POISONED).load(Ordering::SeqCst) != 0
    }
}

/// Writes through one view at `off` and reads through the other, both ways. Volatile accesses
/// and compiler fences: the compiler must not assume the two views are different memory.
pub fn mirrors_at(map: &MirrorMap, off: usize, tag: u8) -> bool {
    let n = map.len();
    let p = map.as_ptr();
    // SAFETY: off < n and the map is valid for 2n bytes; only this thread uses it.
    unsafe {
        p.add(off).write_volatile(tag);
        compiler_fence(Ordering::SeqCst);
        let seen_b = p.add(n + off).read_volatile();
        p.add(n + off).write_volatile(!tag);
        compiler_fence(Ordering::SeqCst);
        let seen_a = p.add(off).read_volatile();
        seen_b == tag && seen_a == !tag
    }
}

/// Runs `body` in a forked child and returns what it reported: `Ok` or the message of the
/// first failed check (a panic counts as one). The child always `_exit`s; it is bounded by
/// `limit` and killed and reaped by its guard whatever happens.
pub fn in_child_reporting(limit: std::time::Duration, body: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) }, 0);
    // SAFETY: pipe2 just returned these two descriptors, owned by nobody else.
    let (rd, wr) = unsafe {
        use std::os::fd::{FromRawFd, OwnedFd};
        (std::fs::File::from(OwnedFd::from_raw_fd(fds[0])), std::fs::File::from(OwnedFd::from_raw_fd(fds[1])))
    };
    let mut child = spawn_child(|| {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
        let msg = match outcome {
            Ok(Ok(())) => return 0,
            Ok(Err(msg)) => msg,
            Err(panic) => {
                let text = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                format!("panic: {}", text.unwrap_or_default())
            }
        };
        let _ = std::io::Write::write_all(&mut &wr, msg.as_bytes());
        1
    });
    drop(wr);
    let status = child.wait_within(limit);
    let mut msg = String::new();
    let _ = std::io::Read::read_to_string(&mut &rd, &mut msg); // non-blocking: what the child wrote
    match status {
        0 => Ok(()),
        1 => Err(msg),
        s => Err(format!("child ended with status {s}: {msg}")),
    }
}

/// A field of `/proc/self/status`, in kB.
pub fn status_kb(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Installs a seccomp filter that answers the system call `nr` with `ENOSYS` and lets every
/// other call through; a call of another ABI passes. Only in a forked child: the filter stays
/// for the life of the process.
pub fn deny_with_enosys(nr: libc::c_long) -> std::io::Result<()> {
    seccomp::install(&[seccomp::Deny::Call(nr, libc::ENOSYS)])
}

/// A seccomp filter: a classic BPF program over `struct seccomp_data`, built from rules that
/// each make one form of one system call fail with an errno.
pub mod seccomp {
    use std::io;

    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64

    // Offsets in `struct seccomp_data { int nr; u32 arch; u64 instruction_pointer; u64 args[6]; }`.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    /// The low 32 bits of argument `i` (both supported targets are little-endian).
    const fn arg_lo(i: u32) -> u32 {
        16 + 8 * i
    }
    const fn arg_hi(i: u32) -> u32 {
        arg_lo(i) + 4
    }

    /// One thing to deny, and the errno to answer with.
    #[derive(Clone, Copy, Debug)]
    pub enum Deny {
        /// `mremap` whose flags (argument 3) have bit value 4 set: the mirror flag
        /// (`MREMAP_DONTUNMAP`), refused as Linux 5.7-5.12 refuses it on shared memory.
        MremapFlag4(i32),
        /// As `MremapFlag4`, but only when `new_len` (argument 2) is larger than the given
        /// number of bytes: a refusal that depends on the request, not on the form.
        MremapFlag4Above(u32, i32),
        /// `mremap` with `old_len == 0` (argument 1): the duplicate form.
        MremapDuplicate(i32),
        /// Every call of this system call number.
        Call(libc::c_long, i32),
        /// `fcntl` with this command (argument 1).
        Fcntl(libc::c_int, i32),
        /// This system call number when the low 32 bits of argument `.1` equal `.2`.
        CallWithArg(libc::c_long, u32, u32, i32),
    }

    fn stmt(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter { code: code as u16, jt: 0, jf: 0, k }
    }

    fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter { code: code as u16, jt, jf, k }
    }

    const LD: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    const JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    const JGT: u32 = libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K;
    const JSET: u32 = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
    const RET: u32 = libc::BPF_RET | libc::BPF_K;

    fn errno(e: i32) -> u32 {
        libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
    }

    fn nr(n: libc::c_long) -> u32 {
        u32::try_from(n).expect("syscall number")
    }

    /// The block of `Deny::CallWithArg`.
    fn call_with_arg(n: libc::c_long, arg: u32, value: u32, e: i32) -> [libc::sock_filter; 5] {
        [stmt(LD, NR), jump(JEQ, nr(n), 0, 3), stmt(LD, arg_lo(arg)), jump(JEQ, value, 0, 1), stmt(RET, errno(e))]
    }

    /// The program: other architectures and every call not named are allowed. Each rule is a
    /// self-contained block that reloads what it tests and either returns its errno or falls
    /// through to the next block.
    pub fn program(rules: &[Deny]) -> Vec<libc::sock_filter> {
        let mut p = vec![
            stmt(LD, ARCH),
            jump(JEQ, AUDIT_ARCH, 1, 0),
            stmt(RET, libc::SECCOMP_RET_ALLOW), // another ABI: its numbers mean other calls
        ];
        for &rule in rules {
            match rule {
                Deny::Call(n, e) => p.extend([stmt(LD, NR), jump(JEQ, nr(n), 0, 1), stmt(RET, errno(e))]),
                Deny::CallWithArg(n, arg, value, e) => p.extend(call_with_arg(n, arg, value, e)),
                Deny::Fcntl(cmd, e) => p.extend(call_with_arg(libc::SYS_fcntl, 1, cmd as u32, e)),
                Deny::MremapFlag4(e) => p.extend([
                    stmt(LD, NR),
                    jump(JEQ, nr(libc::SYS_mremap), 0, 3),
                    stmt(LD, arg_lo(3)),
                    jump(JSET, 4, 0, 1),
                    stmt(RET, errno(e)),
                ]),
                Deny::MremapFlag4Above(limit, e) => p.extend([
                    stmt(LD, NR),
                    jump(JEQ, nr(libc::SYS_mremap), 0, 7),
                    stmt(LD, arg_lo(3)),
                    jump(JSET, 4, 0, 5),
                    stmt(LD, arg_hi(2)),
                    jump(JGT, 0, 2, 0), // new_len >= 4 GiB: above any limit
                    stmt(LD, arg_lo(2)),
                    jump(JGT, limit, 0, 1),
                    stmt(RET, errno(e)),
                ]),
                Deny::MremapDuplicate(e) => p.extend([
                    stmt(LD, NR),
                    jump(JEQ, nr(libc::SYS_mremap), 0, 5),
                    stmt(LD, arg_lo(1)),
                    jump(JEQ, 0, 0, 3),
                    stmt(LD, arg_hi(1)),
                    jump(JEQ, 0, 0, 1),
                    stmt(RET, errno(e)),
                ]),
            }
        }
        p.push(stmt(RET, libc::SECCOMP_RET_ALLOW));
        p
    }

    /// Installs the filter on the calling thread (and so on every thread and child it
    /// creates later). Irrevocable: call it only in a forked child.
    pub fn install(rules: &[Deny]) -> io::Result<()> {
        let prog = program(rules);
        let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr().cast_mut() };
        // SAFETY: prctl with integer arguments; no memory is passed.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fprog points at `prog`, which lives until the call returns; the kernel copies
        // the program.
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &fprog as *const libc::sock_fprog,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A fresh memfd, empty, close-on-exec, that takes seals if `sealing`: for tests that forge or
/// copy ring files.
#[allow(clippy::disallowed_methods)] // a file that is not the crate's own ring
pub fn memfd(sealing: bool) -> std::fs::File {
    use std::os::fd::{FromRawFd, OwnedFd};
    let flags = libc::MFD_CLOEXEC | if sealing { libc::MFD_ALLOW_SEALING } else { 0 };
    // SAFETY: a valid NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"mirror-ring-test".as_ptr(), flags) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor that nothing else owns.
    std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A waker that does nothing (`Waker::noop` is newer than the crate's MSRV).
pub fn noop_waker() -> std::task::Waker {
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    std::task::Waker::from(std::sync::Arc::new(Noop))
}

/// A waker's task that counts its wake-ups.
pub struct Counting(pub std::sync::atomic::AtomicUsize);

impl std::task::Wake for Counting {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
