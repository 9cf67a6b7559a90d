#!/usr/bin/env bash
# Build against build: links two builds of mirror-ring into one program and runs them
# alternately, pinned (tools/ab/ab.rs says what it prints).
#
#   tools/ab/ab.sh BASE WORK MODE SIZE PAIRS [AMOUNT]
#
# BASE and WORK are git revisions, or "." for the work tree as it is (uncommitted changes
# included). MODE: framed | bytes | async | async-shared. Examples:
#
#   tools/ab/ab.sh HEAD . framed 8 21            # this change against the last commit
#   tools/ab/ab.sh HEAD HEAD framed 8 21         # the control: one build against itself
#   tools/ab/ab.sh v1 HEAD async 256 11          # 256-byte async writes, 11 pairs
#
# Everything is built under target/ab (one cargo project, two copies of the crate renamed by
# their version).
set -euo pipefail
[ $# -ge 5 ] || { sed -n '2,16p' "$0" >&2; exit 2; }
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
out="$root/target/ab"
base=$1 work=$2
shift 2

# copy REV DIR VERSION: the crate at REV (or the work tree for ".") into DIR, as VERSION.
copy() {
  rm -rf "$2" && mkdir -p "$2"
  if [ "$1" = . ]; then
    # Tracked and untracked (not ignored) files, less the ones deleted in the work tree.
    (cd "$root" && git ls-files -z --cached --others --exclude-standard |
      while IFS= read -r -d '' f; do if [ -e "$f" ]; then printf '%s\0' "$f"; fi; done |
      xargs -0 cp --parents -t "$2")
  else
    git -C "$root" archive "$1" | tar -x -C "$2"
  fi
  # The package's own version line (the first "version =" of the manifest).
  sed -i "0,/^version = .*/s//version = \"$3\"/" "$2/Cargo.toml"
}
copy "$base" "$out/base" 0.0.0-base
copy "$work" "$out/work" 0.0.0-work

mkdir -p "$out/src"
cp "$root/tools/ab/ab.rs" "$out/src/main.rs"
# The project's lock file pins the dependencies both copies share (libc, tokio).
cp "$root/Cargo.lock" "$out/Cargo.lock"
cat > "$out/Cargo.toml" <<TOML
[package]
name = "ab"
version = "0.0.0"
edition = "2021"
publish = false

# Not a member of mirror-ring's workspace; the two copies are packages of their own.
[workspace]
exclude = ["base", "work"]

[dependencies]
libc = "0.2"
tokio = { version = "1", features = ["rt", "io-util"] }
base = { package = "mirror-ring", path = "base", features = ["tokio"] }
work = { package = "mirror-ring", path = "work", features = ["tokio"] }
TOML
# describe REV: the commit, and whether the work tree's changes come with it.
describe() {
  if [ "$1" = . ]; then echo "$(git -C "$root" rev-parse --short HEAD) + work tree"; else git -C "$root" rev-parse --short "$1"; fi
}
echo "base: $(describe "$base"), work: $(describe "$work")" >&2
cargo build --quiet --release --manifest-path "$out/Cargo.toml"
exec "$out/target/release/ab" "$@"
