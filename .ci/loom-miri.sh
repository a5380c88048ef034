#!/usr/bin/env bash
# Concurrency checks, called by .ci/run: the loom models (each timed), the
# mutation proof (weakened orderings must fail the models), Miri on
# tests/miri.rs, and the release soak test. docs/TESTING.md explains each.
#
# Env: LOOM_MAX_PREEMPTIONS (default 3), HOMESLAB_SOAK_OPS (default
# 30000000 here), MIRIFLAGS (added to the ones below), and SKIP_MIRI=1,
# SKIP_SOAK=1, SKIP_MUTATION=1 to skip a layer locally (CI runs everything).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib.sh
. .ci/lib.sh

# ------------------------------------------------------------------ loom
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
loom_env=(env RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom)

step "loom: build models (RUSTFLAGS=--cfg loom, LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS)"
"${loom_env[@]}" cargo test -q --release -p loom-tests --tests --no-run

step "loom: models, one at a time"
t0=$(now)
models=0
for file in loom-tests/tests/*.rs; do
  name=$(basename "$file" .rs)
  tests=$("${loom_env[@]}" cargo test -q --release -p loom-tests --test "$name" -- --list 2>/dev/null |
    sed -n 's/: test$//p')
  for t in $tests; do
    m0=$(now)
    if ! "${loom_env[@]}" cargo test -q --release -p loom-tests --test "$name" -- --exact "$t" \
      >"target/loom/$name-$t.log" 2>&1; then
      cat "target/loom/$name-$t.log"
      echo "loom model FAILED: $name::$t" >&2
      exit 1
    fi
    printf '  %-60s ok  %6s s\n' "$name::$t" "$(secs "$m0" "$(now)")"
    models=$((models + 1))
  done
done
if [ "$models" -lt 10 ]; then
  echo "loom: only $models models found" >&2
  exit 1
fi
echo "loom: $models models passed in $(secs "$t0" "$(now)") s"

# -------------------------------------------------------------- mutation
if [ "${SKIP_MUTATION:-}" != 1 ]; then
  step "loom mutation proof (loom-tests/mutation.sh)"
  # Every model passed unmutated just above, on the same build.
  PRODUCTION_CHECKED=1 bash loom-tests/mutation.sh
fi

# ------------------------------------------------------------------ miri
if [ "${SKIP_MIRI:-}" != 1 ]; then
  step "miri: toolchain"
  if ! rustup component add --toolchain nightly miri rust-src; then
    echo "################################################################" >&2
    echo "## ERROR: could not install Miri (rustup component add         ##" >&2
    echo "## --toolchain nightly miri rust-src failed). Miri is required. ##" >&2
    echo "################################################################" >&2
    exit 1
  fi
  cargo +nightly miri setup

  # Isolation stays on (homeslab needs no host clock or randomness Miri
  # cannot emulate). Permissive provenance: slab headers are found by
  # address arithmetic (`ptr & !(region - 1)`), an integer-to-pointer cast.
  base_flags="-Zmiri-permissive-provenance ${MIRIFLAGS:-}"
  # The package `make_pkg` writes, without dev-dependencies: the unit tests
  # and tests/miri.rs need none, and Miri then builds no criterion or
  # benchmark allocators.
  miri_pkg=target/miri-pkg
  make_pkg "$miri_pkg" ""
  miri=(cargo +nightly miri test --manifest-path "$miri_pkg/Cargo.toml" --target-dir target/miri-pkg-target)

  step "miri: build unit tests + tests/miri.rs"
  "${miri[@]}" --lib --test miri --no-run

  # Each interpreter runs on one core: the two borrow models run at once.
  step "miri: Stacked Borrows (unit tests + tests/miri.rs) and Tree Borrows (tests/miri.rs), side by side"
  t0=$(now)
  MIRIFLAGS="$base_flags" "${miri[@]}" --lib --test miri >target/miri-sb.log 2>&1 &
  sb=$!
  MIRIFLAGS="$base_flags -Zmiri-tree-borrows" "${miri[@]}" --test miri >target/miri-tb.log 2>&1 &
  tb=$!
  sb_rc=0 tb_rc=0
  wait "$sb" || sb_rc=$?
  sb_s=$(secs "$t0" "$(now)")
  wait "$tb" || tb_rc=$?
  echo "-- Stacked Borrows (exit $sb_rc, $sb_s s):"
  cat target/miri-sb.log
  echo "-- Tree Borrows (exit $tb_rc, $(secs "$t0" "$(now)") s):"
  cat target/miri-tb.log
  if [ "$sb_rc" != 0 ] || [ "$tb_rc" != 0 ]; then
    echo "miri FAILED (Stacked Borrows exit $sb_rc, Tree Borrows exit $tb_rc)" >&2
    exit 1
  fi

  step "miri: threaded tests under 6 scheduler seeds"
  MIRIFLAGS="$base_flags -Zmiri-many-seeds=0..6" "${miri[@]}" --test miri -- \
    remote_frees_race_owner_drains full_slab_returned_by_remote_free owners_exit_with_live_blocks \
    overflow_tier_two_threads trim_races_allocation
fi

# ------------------------------------------------------------------ soak
if [ "${SKIP_SOAK:-}" != 1 ]; then
  export HOMESLAB_SOAK_OPS="${HOMESLAB_SOAK_OPS:-30000000}"
  step "soak: $HOMESLAB_SOAK_OPS operations, release"
  cargo test --release -p homeslab --test soak -- --ignored --nocapture
fi

step_summary "loom, mutation, miri and soak passed"
