#!/usr/bin/env bash
# The test suite on aarch64 under qemu-user, at page sizes other than the host's 4 KiB: arm64
# kernels run 16 KiB (Asahi Linux) and 64 KiB pages, and every test must hold there. qemu's
# `QEMU_PAGESIZE` sets the page size the guest's sysconf reports, which is the one the library
# and the tests use. Not part of .ci/run (it needs qemu-user and a cross linker, and takes
# about 4 minutes per page size on 2 cores, more for the first build); run it after changing
# tests that size rings.
#
# Usage: tools/pages.sh [PAGESIZE...]        (default: 16384 65536; 4096 runs the same set)
# Needs: rustup target add aarch64-unknown-linux-gnu; Debian packages gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross, qemu-user.
#
# qemu-user cannot run some tests at any page size, 4 KiB included; they are skipped below,
# each with the reason, and are checked natively by .ci/run. A test added to this list must
# fail under qemu at 4 KiB too.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
# glibc's SVE memcpy faults on a view that qemu's MREMAP_DONTUNMAP emulation left without page
# flags; without SVE it takes another path.
export QEMU_CPU=max,sve=off

declare -A skip=(
    # Syscalls that read or write view A of a MirrorFlag map get EFAULT from qemu.
    [transfer]="file_relay_through_the_ring tcp_relay_through_the_ring unix_socket_relay_through_the_ring would_block_sockets_pass_through"
    [async_ends]="async_read_from_and_write_to_relay_sockets futex_waitv_refused_falls_back"
    [process]="a_real_file_crosses_a_fork_byte_for_byte a_child_forked_during_the_backend_probe_can_create_rings a_dont_fork_ring_does_not_exist_in_a_child receiving_with_no_descriptor_left_says_so"
    # qemu keeps its own view of the guest's address space and limits: RLIMIT_AS, MADV_DONTFORK,
    # prefaulting, hugetlb and THP, file holes and descriptor counts are not the kernel's.
    [lib]="a_shortage_at_the_first_probe_is_returned_and_forgotten"
    [mirror]="a_tight_rlimit_as_gives_enomem_not_a_crash dont_fork_keeps_the_whole_map_out_of_children prefault_populates_both_views"
    [huge_pages]="lock_memory_with_huge_pages_locks_the_control_page only_auto_builds_a_huge_page_mirror prefault_and_dont_fork_with_huge_pages"
    [transparent_huge_pages]="a_2mib_knob_at_advise_allows_thp a_thp_map_mirrors_with_both_views_in_2_mib_pages lock_memory_and_dont_fork_with_thp"
    [lifecycle]="a_dont_fork_ring_is_not_in_a_child_that_has_its_makers_pid a_claim_without_descriptors_fails_and_claims_nothing"
    [hostile]="a_consistent_huge_sparse_ring_file_attaches_or_fails_cleanly"
    # (and qemu has no mremap with old_len 0: a Duplicate ring is ENOMEM there)
    [documented]="address_space_map_entries_and_descriptors_per_ring recv_into_out_of_memory_keeps_the_frame rlimit_as_counts_both_views rlimit_as_is_out_of_memory_naming_the_limit send_to_and_recv_from_errors"
    [framed]="recv_into_without_memory_for_the_frame_is_an_error_and_keeps_the_frame a_parked_producer_gets_released_room_on_the_next_receive a_producer_blocking_on_a_full_ring_publishes_its_pending_frames_first a_sleeping_consumer_gets_batched_frames_without_flush"
    # qemu shows the guest's own /proc/self/stat with state 0 and no start time to compare.
    [restart]="a_forged_death_moves_the_role_and_the_old_holder_stops_touching_the_ring"
    # ptrace, stop signals and signal storms of forked emulated processes: qemu asserts inside
    # itself.
    [signals]="halted_peers_are_alive_through_proc_too a_signal_and_stop_storm_between_processes_loses_no_byte a_signal_storm_on_async_ends_between_processes_loses_no_byte"
    # Forks of a process running tokio's threads, killed at random: qemu asserts inside itself.
    [chaos]="async_ends::chaos_async_producers_killed_and_taken_over"
    # The README's examples include a socket hand-over (EFAULT above); the two API examples map
    # view A into a syscall too.
    [doc]="ReadmeDoctests MirrorOptions::map SharedRing::as_fd"
)
# Whole binaries: seccomp filters under qemu filter qemu's own calls; and `exec` starts copies
# of the test binary, which the host cannot run without binfmt_misc (exit status 127).
no_run="sandbox exec"

targets=(lib doc)
for f in tests/*.rs; do
    t=$(basename "$f" .rs)
    [[ " $no_run " == *" $t "* ]] || targets+=("$t")
done

pages=("$@")
((${#pages[@]})) || pages=(16384 65536)
failed=()
for page in "${pages[@]}"; do
    export QEMU_PAGESIZE=$page
    for t in "${targets[@]}"; do
        case $t in lib) sel=(--lib) ;; doc) sel=(--doc) ;; *) sel=(--test "$t") ;; esac
        args=()
        for s in ${skip[$t]:-}; do args+=(--skip "$s"); done
        printf '==> %s at %d-byte pages\n' "$t" "$page"
        # One test at a time: a guest that forks while the harness runs other test threads
        # trips assertions inside qemu (cpu_exec: cpu == current_cpu).
        if ! timeout 900 cargo test -q --release --all-features --target aarch64-unknown-linux-gnu \
            --target-dir target/pages "${sel[@]}" -- --test-threads=1 "${args[@]}"; then
            failed+=("$t@$page")
        fi
    done
done
if ((${#failed[@]})); then
    echo "failed: ${failed[*]}"
    exit 1
fi
echo "all passed"
