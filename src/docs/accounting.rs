//! What a ring costs the system.
//!
//! A ring of capacity `N` is one shared object of `H + N` bytes (`H`, the control page holding
//! the header, is one page), mapped as `H + 2N` bytes of address space: the data pages appear
//! twice. The kernel counts the two views differently in different places:
//!
//! - **RSS** (`VmRSS`, `RssShmem`) counts both views once they are touched: `2N` in every
//!   process that maps the ring.
//! - **PSS**, `Shmem` in `/proc/meminfo` and memory cgroups count the pages once: `N`. Report
//!   this one.
//! - **`RLIMIT_AS`** counts `2N` per mapping process: creation fails with `ENOMEM` (reported
//!   as `OutOfMemory`, naming `RLIMIT_AS`) when only `N` fits, at its first step, the
//!   reservation of `H + 2N` bytes of address space. `Backend::Duplicate` needs `N` more for a
//!   moment: the kernel charges its `mremap` for view B before it unmaps the reserved range
//!   that view replaces, so it fails where `H + 2N` fits and `H + 3N` does not (the other
//!   backends do not).
//! - **`vm.max_map_count`** (65530 by default): each ring uses 2 or 3 mapping entries, so a
//!   process holds some tens of thousands of rings at most; creation then fails with
//!   `OutOfMemory` naming the map count.
//! - **Overcommit**: anonymous shared memory (the fd-less backends) is charged `N` to
//!   `Committed_AS` when it is created (so strict overcommit fails at creation); a memfd ring
//!   is charged as its pages are first touched.
//! - **`RLIMIT_MEMLOCK`**: a ring locked with
//!   [`RingOptions::lock_memory`](crate::RingOptions::lock_memory) (or
//!   [`SharedRing::lock_memory`](crate::SharedRing::lock_memory)) charges the control page and
//!   each view, `H + 2N`, to the locking process (`VmLck` grows by that much; measured in
//!   `tests/mirror.rs`), unless it has `CAP_IPC_LOCK`. Locks are per process and not inherited
//!   across `fork`. A process under `mlockall(MCL_FUTURE)` has every ring locked as it is
//!   made, both views, and gets the whole charge back when the ring is dropped; while a ring is
//!   being made the kernel also counts the address space reserved for it, and a ring over the
//!   limit fails with `OutOfMemory` naming `MCL_FUTURE`, `EAGAIN` as `source()`.
//!
//! - **Descriptors** (`RLIMIT_NOFILE`): a ring made with `Backend::Memfd` keeps its memfd open
//!   while any handle of it lives in the process (the fd-less backends keep none). An end
//!   claimed between processes ([`SharedRing`](crate::SharedRing)) opens a pidfd of its peer
//!   when it first needs to watch it (Linux 5.3+), and keeps it for the peer's holding: one
//!   descriptor per end. Forked children inherit the memfd as any descriptor, also from a ring
//!   made with `dont_fork` (which keeps the mapping out of them, not the descriptor).
//! - **Threads** (feature `tokio`): async ends park through helper threads. The first async
//!   end of a thread ring that parks starts one, which keeps the safety deadlines of all such
//!   ends (their publisher wakes them itself); async ends of rings between processes are
//!   spread over helpers, one per 127 ends parked at one time. Once an end has parked on a
//!   peer process it watches through a pidfd, one peer-poll thread runs too, with one
//!   descriptor of its own (an epoll instance). They stay for the life of the process, asleep
//!   while nothing happens (a peer-poll thread whose `epoll_wait` fails ends, and a later park
//!   starts another with a new instance; [`async_ends`](super::async_ends), "Turning the wake
//!   into `Waker::wake()`"). A forked
//!   child does not get the threads, but inherits the epoll descriptor as any other, and keeps
//!   it until it exits or `exec`s (it is close-on-exec).
//!
//! Prefaulting ([`RingOptions::prefault`](crate::RingOptions::prefault)) touches both views at
//! creation (each view has its own page tables, so each faults separately); the first lap of
//! an unprefaulted ring pays those faults instead. Creation and first-touch costs:
//! `BENCHMARKS.md`, "Creation".
//!
//! # Huge pages
//!
//! A ring built with [`RingOptions::huge_pages`](crate::RingOptions::huge_pages) takes its data
//! pages from the kernel's hugetlb pool (`/proc/sys/vm/nr_hugepages`, 2 MiB pages), not from
//! ordinary memory, and the accounting moves with them:
//!
//! - the pages are **reserved at creation** (`mmap` of the hugetlb file): `HugePages_Rsvd`
//!   rises by `N / 2 MiB`, and creation fails with `OutOfMemory` when too few are free; they
//!   are taken from `HugePages_Free` as they are first touched (or at creation with
//!   `prefault`), so a hugetlb ring never fails later at a page fault;
//! - both views map the same pages: the pool pays `N`, not `2N`;
//! - they show in `/proc/<pid>/smaps` as `KernelPageSize: 2048 kB` and in `Hugetlb`
//!   (`/proc/meminfo`) and a cgroup's `hugetlb` controller, not in RSS, `Shmem` or the memory
//!   controller;
//! - they are never swapped and need no `RLIMIT_MEMLOCK`. The kernel does not lock hugetlb
//!   memory (`VmLck` does not count it) but would still charge a lock of it against the
//!   limit: measured, locking a whole 4 MiB huge-page ring under a 3 MiB limit is refused. So
//!   `lock_memory` locks the control page of a huge-page ring and prefaults its data;
//! - the control page stays one ordinary page of shared memory; each ring uses 3 mapping
//!   entries (the control page and the two views; the address space reserved to align view A
//!   to 2 MiB is given back once the views are in place).
//!
//! The pages go back to the pool when the last mapping of the ring is gone (in every process
//! that has it, after `fork`).
//!
//! # Transparent huge pages
//!
//! A ring built with
//! [`RingOptions::transparent_huge_pages`](crate::RingOptions::transparent_huge_pages) is
//! ordinary shared memory that the kernel may back with 2 MiB pages, so it is counted as
//! ordinary shared memory (measured on Linux 6.18, a 64 MiB ring, both views populated):
//!
//! - RSS counts both views (`RssShmem` `2N`), `Shmem` counts `N`, and `ShmemHugePages` and
//!   `ShmemPmdMapped` (`/proc/meminfo`) show the part in huge pages, `N` when the kernel found
//!   them all; per mapping, `ShmemPmdMapped` in `/proc/<pid>/smaps` is `N` for each view;
//! - overcommit charges `N` at creation (`Committed_AS`, measured), and as shared memory the
//!   pages belong to the memory cgroup and to swap like any other unless the ring is locked
//!   (not measured here);
//! - `lock_memory` locks and counts them as 4 KiB pages: `VmLck` grows by `H + 2N`;
//! - the layout is that of huge pages (3 mapping entries, the alignment slack given back).
//!
//! Whether a page is huge is decided when it is first touched: with too little free contiguous
//! memory the kernel uses 4 KiB pages for that 2 MiB and says nothing. `prefault` settles it at
//! creation.
