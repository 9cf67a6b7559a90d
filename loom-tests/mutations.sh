#!/usr/bin/env bash
# Reproduces the mutation table of loom-tests/README.md: each mutation below breaks one
# ordering, barrier or check of the protocol in a scratch copy of the crate, runs every loom
# model in its own process (a loom deadlock aborts the test binary), and reports which models
# fail. The working tree is never touched.
#
#   loom-tests/mutations.sh            # every mutation (about 16 minutes on 2 cores)
#   loom-tests/mutations.sh 3 7        # only mutations 3 and 7
#
# Exit status: 0 when every mutation is caught by at least one model (and the unmutated crate
# passes every model), 1 otherwise.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export CARGO_TARGET_DIR="$top/target/loom-mutations"
export RUSTFLAGS="--cfg mirror_ring_loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"

# name | file | exact text to find (must occur) | replacement | which occurrence (1-based)
#   [| why no model can catch it: an expected escape, reported but not counted as a failure]
# Texts may hold \n (a newline); several edits of one file: texts and replacements joined
# with " %% ", applied in turn (each at the given occurrence).
mutations=(
  "head publish Release -> Relaxed|src/protocol.rs|hdr.head.store(self.head, Ordering::Release);|hdr.head.store(self.head, Ordering::Relaxed);|1"
  "tail publish Release -> Relaxed|src/protocol.rs|hdr.tail.store(self.tail, Ordering::Release);|hdr.tail.store(self.tail, Ordering::Relaxed);|1"
  "consumer's head reload (refresh) Acquire -> Relaxed|src/protocol.rs|let h = hdr.head.load(Ordering::Acquire);|let h = hdr.head.load(Ordering::Relaxed);|2"
  "no recheck after raising the flag|src/wait.rs|if recheck {|if false \&\& recheck {|1"
  "no publisher barrier|src/protocol.rs|publish_barrier(hdr.parks_with(w.sleeper(), light));|let _ = hdr.parks_with(w.sleeper(), light);|1"
  "no sleeper barrier|src/wait.rs|strong = park_barrier(*park);|strong = true;|1"
  "the publisher wakes the other word|src/protocol.rs|        hdr.word(w).wake();|        hdr.word(match w { Word::Data => Word::Space, Word::Space => Word::Data }).wake();|1"
  "the publisher clears the flag but never wakes|src/protocol.rs|        hdr.word(w).wake();|        let _ = w;|1"
  "close: CLOSED Release -> Relaxed|src/header.rs|slot.claim.compare_exchange(now.0, closed.0, Ordering::Release, Ordering::Relaxed)|slot.claim.compare_exchange(now.0, closed.0, Ordering::Relaxed, Ordering::Relaxed)|1"
  "close: no fence before clearing the peer's flag|src/protocol.rs|    fence(Ordering::SeqCst);\n    let w = role.peer().own_word();|    let w = role.peer().own_word();|1"
  "claim/take-over: CLAIMED Release -> Relaxed|src/header.rs|.compare_exchange(taking.0, claimed.0, Ordering::Release, Ordering::Acquire)|.compare_exchange(taking.0, claimed.0, Ordering::Relaxed, Ordering::Acquire)|1"
  "claim/take-over: compare-exchange -> load then store|src/header.rs|slot.claim.compare_exchange(expected.0, taking.0, Ordering::AcqRel, Ordering::Acquire).map_err(Claim)?;|if slot.claim.load(Ordering::Acquire) != expected.0 { return Err(Claim(slot.claim.load(Ordering::Acquire))); } slot.claim.store(taking.0, Ordering::Release);|1"
  "close of a poisoned ring reads as a clean end|src/protocol.rs|Ok(_) if hdr.is_poisoned() => {|Ok(_) if false \&\& hdr.is_poisoned() => {|1"
  "take-over: no Release fence before the taker's fields|src/header.rs|        fence(Ordering::Release);|        // (no fence)|1"
  "slot read: no second look at the claim word (seqlock)|src/header.rs|if slot.claim.load(Ordering::Relaxed) == claim.0 {|if true {|1"
  "take-over without a proven death|src/peer.rs|let answer = watch.check_with(hdr, \&mut probe);|let answer = { let _ = watch.check_with(hdr, \&mut probe); Liveness::Dead };|1"
  "take-over: the epoch is not bumped|src/header.rs|Claim::new(ROLE_TAKING, self.epoch().wrapping_add(1), pid)|Claim::new(ROLE_TAKING, self.epoch(), pid)|1"
  "watcher: a latched death outlives a take-over|src/peer.rs|Some(seen) if self.dead \&\& seen.epoch() == now.epoch() => {}|Some(_) if self.dead => {}|1"
  "watcher: follows the slot but keeps the old identity|src/peer.rs|self.peer = None;\n                self.pidfd = None;|self.pidfd = None;|1"
  "old holder: ownership ignores a take-over|src/header.rs|let now = Claim(self.slot(r).claim.load(Ordering::Relaxed));|let now = token;|1"
  "close: not a compare-and-swap against the holding (always closes)|src/header.rs|        while now == token|        while now == now|1"
  "async park: no recheck after raising the flag|src/ring/asynch/park.rs|        if recheck {|        if false \&\& recheck {|1"
  "async park: registration does not compare the flag under the lock|src/ring/asynch/park.rs|if unsafe { entry.word.get() }.load(Ordering::Relaxed) != 1 {|if false {|1"
  "async park: the direct wake takes the waker but never wakes it|src/ring/asynch/park.rs|            w.wake();\n            if crate::sync::fork_generation() != generation {|            drop(w);\n            if crate::sync::fork_generation() != generation {|1"
  "frames: the stamp store Release -> Relaxed|src/ring/framed/link.rs|words.store(first, stamped, Ordering::Release);|words.store(first, stamped, Ordering::Relaxed);|1"
  "frames: the consumer's stamp poll Acquire -> Relaxed|src/ring/framed/link.rs|        let word = words.load(q, Ordering::Acquire);\n        self.take(hdr, word, q, self.limit.wrapping_sub(q))|        let word = words.load(q, Ordering::Relaxed);\n        self.take(hdr, word, q, self.limit.wrapping_sub(q))|1"
  "frames: no wake-up check after the stamp store|src/ring/framed/link.rs|    notify(hdr, Word::Data, cur.light(), cur.counters());|    let _ = (cur.light(), cur.counters());|1"
  "frames: the stamp ignores the lap (offset in a 32-byte ring only)|src/ring/framed/wire.rs|        (pos << STAMP_SHL) \& CHECK_MASK|        ((pos \& 31) << STAMP_SHL) \& CHECK_MASK|1"
  "frames: no clear mark after the published frames|src/ring/framed/link.rs|            words.store(cur.head(), CLEAR, Ordering::Relaxed);|            let _ = cur;|1"
  "frames: the consumer looks (and may sleep) without releasing first|src/ring/framed/link.rs|        self.publish(hdr, cur);\n        if cur.is_poisoned() {|        if cur.is_poisoned() {|1"
  "frames: a publish stores head before its stamp|src/ring/framed/link.rs|    words.store(first, stamped, Ordering::Release);\n    cur.store_head(hdr);|    cur.store_head(hdr);\n    words.store(first, stamped, Ordering::Release);|1"
  "frames: head store (after the stamp) Release -> Relaxed|src/protocol.rs|hdr.head.store(self.head, Ordering::Release);|hdr.head.store(self.head, Ordering::Relaxed);|2"
  "frames: the newcomer covers one frame at most|src/ring/framed/link.rs|            run += size;\n        }|            run += size;\n            if run > size {\n                return;\n            }\n        }|1"
  "frames: a batch's first frame is written stamped before its publish|src/ring/framed/link.rs|words.store(p, stamped ^ RESTAMP, Ordering::Relaxed);|words.store(p, stamped, Ordering::Relaxed);|1"
  "frames: while it polls via head (behind a batch, or not trusting stamps), the consumer never looks at head|src/ring/framed/link.rs|        cur.catch_up_head();\n        match cur.poll_readable(hdr, HEADER)? {|        if self.via_head {\n            return None;\n        }\n        cur.catch_up_head();\n        match cur.poll_readable(hdr, HEADER)? {|1"
  "frames: a frame below the head counts only once stamped|src/ring/framed/wire.rs|        let expect = self.unstamped(len, pos);\n        // Checked|        let expect = self.unstamped(len, pos);\n        let word = if word == expect { !word } else { word };\n        // Checked|1"
  "frames: the newcomer covers frames with no clear mark after them|src/ring/framed/link.rs|!Stamp.not_yet(word, p, cur.capacity())|false|1|the check after the run is a margin against stale bytes that read as stamped headers of this lap: a dead producer's run always ends at its clear mark (or, filling the ring, at a header one lap old, whose stamp differs), so no model can leave anything else there"
  "frames: the newcomer does not cover the frames stamped above the head|src/ring/framed/link.rs|        cur.advance(run);\n        cur.publish(hdr);|        let _ = run;|1"
  "consumer: a head behind its cursor is taken for corruption|src/protocol.rs|Some(if avail <= self.cap { avail as usize } else { 0 })|(avail <= self.cap).then_some(avail as usize)|1"
  "attach: a tail ahead of the head is taken for corruption|src/header.rs|    } else if tail.wrapping_sub(head) <= cap {|    } else if false {|1"
  "consumer attach: head Acquire -> Relaxed|src/protocol.rs|        let tail = hdr.tail.load(Ordering::Acquire);\n        let head = hdr.head.load(Ordering::Acquire);|        let tail = hdr.tail.load(Ordering::Acquire);\n        let head = hdr.head.load(Ordering::Relaxed);|1"
  "frames: the batch loop's stamp poll Acquire -> Relaxed|src/ring/framed/link.rs|        words.load(q, Ordering::Acquire)\n    }|        words.load(q, Ordering::Relaxed)\n    }|1"
  "direct wake: no fence between clearing the flag and looking for the function|src/sync.rs|    fence(Ordering::SeqCst);\n    // Acquire: pairs with the Release store in|    // Acquire: pairs with the Release store in|1"
  "first registration: no fence between installing the function and comparing the flag|src/ring/asynch/park.rs|        fence(Ordering::SeqCst);\n        let mut t = self.table.lock()|        let mut t = self.table.lock()|1"
  "a consumer that found its producer dead does not look past the head again|src/ring/framed/link.rs|    ) -> Option<Result<(usize, usize), Stop>> {\n        if self.armed {|    ) -> Option<Result<(usize, usize), Stop>> {\n        if cur.tail() != u64::MAX {\n            return None;\n        }\n        if self.armed {|1"
  "that look gives up outside a framing epoch instead of looking at head|src/ring/framed/link.rs|            return self.look(hdr, cur, words);\n        };|            return None;\n        };|1"
  "a kept flag is trusted without checking that nobody cleared it|src/wait.rs|let still = kept_flag \&\& was == 1;|let still = kept_flag;|1"
  "the waker's clear of the flag Release -> Relaxed|src/protocol.rs|swap(0, Ordering::Release)|swap(0, Ordering::Relaxed)|1|under loom both halves of the barrier pair are SeqCst fences, so a sleeper that polled in vain after the clear and raises its flag again always finds the publish in its recheck: on a weakly ordered CPU the missing Release costs a delay of at most one cut sleep (1 ms), which no model of lost wake-ups can show"
)

copy() {
  rm -rf "$scratch/crate"
  mkdir -p "$scratch/crate"
  (cd "$top" && tar --exclude=./target --exclude=./.git --exclude=./fuzz/target --exclude=./fuzz/corpus --exclude=./fuzz/artifacts -cf - .) | (cd "$scratch/crate" && tar -xf -)
  # tar keeps the files' old times, older than the last (mutated) build: cargo would reuse it.
  find "$scratch/crate/src" "$scratch/crate/loom-tests" -type f -exec touch {} +
}

# Applies mutation $1 to the scratch copy; fails if the text is not there.
mutate() {
  local IFS='|'
  read -r name file find replace nth _ <<<"$1"
  python3 - "$scratch/crate/$file" "$find" "$replace" "$nth" <<'PY'
import sys
path, find, replace, nth = sys.argv[1], sys.argv[2].replace("\\n", "\n"), sys.argv[3].replace("\\n", "\n"), int(sys.argv[4])
replace = replace.replace("\\&", "&")
find = find.replace("\\&", "&")
text = open(path).read()
for find, replace in zip(find.split(" %% "), replace.split(" %% ")):
    at = -1
    for _ in range(nth):
        at = text.find(find, at + 1)
        if at < 0:
            sys.exit(f"mutation text not found in {path}: {find!r}")
    text = text[:at] + replace + text[at + len(find):]
open(path, "w").write(text)
PY
}

models() {
  (cd "$scratch/crate" && cargo test --release --lib -q -- --list 2>/dev/null) | sed -n 's/: test$//p' | grep '^loom_models::'
}

# Runs every model in its own process; prints the names of those that fail.
failing() {
  local m
  (cd "$scratch/crate" && cargo test --release --lib --no-run -q 2>/dev/null) || { echo "(does not build)"; return; }
  for m in $(models); do
    if ! (cd "$scratch/crate" && timeout 600 cargo test --release --lib -q -- --exact "$m" >/dev/null 2>&1); then
      echo "${m#loom_models::}"
    fi
  done
}

pick=("$@")
status=0
copy
echo "| mutation | models that fail |"
echo "|---|---|"
base=$(failing | tr '\n' ' ')
echo "| (none) | ${base:-none} |"
[ -z "$base" ] || status=1
i=0
for m in "${mutations[@]}"; do
  i=$((i + 1))
  if [ ${#pick[@]} -gt 0 ] && [[ ! " ${pick[*]} " == *" $i "* ]]; then
    continue
  fi
  copy
  mutate "$m"
  fails=$(failing | tr '\n' ' ')
  why=$(awk -F'|' '{print $6}' <<<"$m")
  if [ -n "$fails" ]; then
    echo "| $i. ${m%%|*} | $fails |"
  elif [ -n "$why" ]; then
    echo "| $i. ${m%%|*} | none, as expected: $why |"
  else
    echo "| $i. ${m%%|*} | NONE: not caught |"
    status=1
  fi
done
exit $status
