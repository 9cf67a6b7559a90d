#!/usr/bin/env bash
# Every function a message or a record passes through on the fast paths must be inlined into
# the caller's crate: an out-of-line copy of one of them in a program built against the crate
# means each message pays a call (and, for a grant's slice, loses its constant length).
#
# Why a check and not a benchmark threshold: no test may hold a speed (the machines are shared
# and noisy), and this one went unseen for days. `FrameGrant`'s `deref` gained a call to the
# fork check, stopped being a leaf, and rustc then stopped inlining it into other crates without
# `#[inline]`: 8-byte frames built in place fell from about 230 to 80 M messages/s
# (BENCHMARKS.md, "A grant's slice out of line"). Whether a function was inlined is not noise:
# it shows in the symbol table of the optimised program.
#
# Usage: tools/inlined.sh [BINARY]   (default: the demo, target/release/examples/compare, which
# drives every fast path: framed send/recv/reserve, byte grants, try_read/try_write, fill_buf).
# Needs `nm` (binutils, which the Rust toolchain's linker comes with).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-target/release/examples/compare}
if ! command -v nm >/dev/null; then
    echo "inlined.sh: nm not found (install binutils)" >&2
    exit 2
fi
if [[ ! -x $bin ]]; then
    echo "inlined.sh: $bin not found; build it first (cargo build --release --all-features --example compare)" >&2
    exit 2
fi

# One pattern per line: extended regexes matched against the whole demangled name. A method
# prints as `path::Type::name` when its impl block is in the type's module and as
# `path::<impl path::Type>::name` otherwise: `Type>?::` matches both. Slow paths
# (`claim_slow`, `recv_slow`, `available_slow`, ...) are out of line on purpose and not here.
patterns=(
    # Grants and frames: the slices lent per message.
    '<mirror_ring::ring::framed::producer::FrameGrant as core::ops::deref::Deref(Mut)?>::deref(_mut)?'
    '<mirror_ring::ring::producer::WriteGrant as core::ops::deref::Deref(Mut)?>::deref(_mut)?'
    '<mirror_ring::ring::consumer::ReadGrant as core::ops::deref::Deref>::deref'
    '<mirror_ring::ring::framed::consumer::Frame as core::ops::deref::Deref>::deref'
    '<mirror_ring::ring::framed::consumer::Frame as core::ops::drop::Drop>::drop'
    'mirror_ring::ring::framed::producer::FrameGrant>?::commit'
    'mirror_ring::ring::producer::WriteGrant>?::commit'
    'mirror_ring::ring::consumer::ReadGrant>?::release'
    # The framed ends, one message per call.
    'mirror_ring::ring::framed::FramedProducer>?::(send|try_send|send_with|send_at|reserve|try_reserve|grant_with|claim|finish|may_write|consumer_sleeping)'
    'mirror_ring::ring::framed::FramedConsumer>?::(recv|try_recv|recv_with|frame_at_cursor|poll_fast|sync)'
    # The byte ends' non-blocking calls.
    'mirror_ring::ring::Producer>?::(try_write|write_grant|reserve)'
    'mirror_ring::ring::Consumer>?::(try_read|read_grant|available|available_or_rest|release|fill|consume_clamped)'
    # The std traits' thin wrappers, called once per record by a parser loop (`write_all`,
    # `fill_buf`, `consume`); `read_with` / `write_with` behind them may stay out of line.
    'std::io::(Read|BufRead) for mirror_ring::ring::Consumer>::(read|fill_buf|consume)'
    'std::io::Write for mirror_ring::ring::Producer>::write'
    # What every call checks first.
    'mirror_ring::ring::End>?::(header|header_as|header_checked|header_or_err|header_or_err_as|forked|lent)'
    'mirror_ring::header::Header>?::(is_poisoned|owns|is_holding)'
)

symbols=$(nm -C --defined-only "$bin" | cut -d' ' -f3-)
found=0
for p in "${patterns[@]}"; do
    if hits=$(grep -E "(<impl |^)${p}\$" <<<"$symbols"); then
        printf 'out of line in %s:\n%s\n' "$bin" "$hits"
        found=1
    fi
done
if ((found)); then
    echo "inlined.sh: fast-path functions above were not inlined (add #[inline], or see why it stopped)" >&2
    exit 1
fi
echo "inlined.sh: ${#patterns[@]} fast-path patterns, none out of line in $bin"
