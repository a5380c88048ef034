#!/usr/bin/env bash
# Sanitizers, fuzzing and the MSRV, called by .ci/run (docs/TESTING.md
# explains each layer and gives its time):
#   1. AddressSanitizer + LeakSanitizer over the whole test suite, with
#      homeslab's free slots poisoned (--cfg homeslab_asan), and the proof
#      that ASan sees inside homeslab's mappings (tests/asan_detects.rs:
#      each test must fail with the report its `ignore` reason names);
#   2. ThreadSanitizer over the cross-thread tests (TSAN_TESTS) and the
#      soak at reduced length;
#   3. each cargo-fuzz target for FUZZ_SECONDS from its committed corpus;
#   4. the library and its tests built and run by the MSRV toolchain.
#
# Env: SKIP_ASAN=1, SKIP_TSAN=1, SKIP_FUZZ=1, SKIP_MSRV=1 skip a layer
# locally (CI runs everything); FUZZ_SECONDS (default 60 per target);
# FUZZ_JOBS (targets fuzzed at once, default 2); FUZZ_RSS_MB (libFuzzer's RSS
# limit per target, default 8192);
# TSAN_TESTS (test files, globs allowed; default below); TSAN_SOAK_OPS
# (default 3000000). Every build and run here is niced: the CI machine is
# shared with benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib.sh
. .ci/lib.sh

host=$(rustc -vV | sed -n 's/^host: //p')

# Runs each ignored test of tests/$1.rs alone with the command in the rest
# of the arguments, and requires it to fail with the sanitizer report that
# its `#[ignore = "expects <sanitizer>: <report>"]` reason names.
expect_reports() {
  local file=$1
  shift
  local cases n=0 want name log
  cases=$(awk '
    /#\[ignore = "expects / { sub(/.*expects [^:]*: /, ""); sub(/"\]$/, ""); want = $0 }
    /^fn / && want != "" { name = $2; sub(/\(.*/, "", name); print want "|" name; want = "" }
  ' "tests/$file.rs")
  while IFS='|' read -r want name; do
    [ -n "$name" ] || continue
    log="target/detect-$file-$name.log"
    if "$@" --test "$file" -- --ignored --exact "$name" >"$log" 2>&1; then
      cat "$log"
      echo "$file::$name passed: the sanitizer did not report it" >&2
      return 1
    fi
    if ! grep -q "Sanitizer: $want" "$log" || grep -q "NOT DETECTED" "$log"; then
      cat "$log"
      echo "$file::$name: expected \"$want\" in the sanitizer's report" >&2
      return 1
    fi
    printf '  %-55s reported: %s\n' "$name" "$(grep -m1 -o "Sanitizer: .*" "$log" | cut -c1-50)"
    n=$((n + 1))
  done <<<"$cases"
  echo "  $n cases"
  detected=$n
}

# The sanitizer runs build std with the sanitizer too (-Zbuild-std), so
# they need an explicit target (which also keeps build scripts and proc
# macros uninstrumented).
# They use the package `make_pkg` writes, with proptest (tests/model.rs).
san_pkg=target/san-pkg
san_cargo=(nice -n 19 cargo +nightly test -Zbuild-std --target "$host"
  --manifest-path "$san_pkg/Cargo.toml")

if [ "${SKIP_ASAN:-}" != 1 ] || [ "${SKIP_TSAN:-}" != 1 ]; then
  step "sanitizers: toolchain (nightly rust-src, for -Zbuild-std)"
  rustup component add --toolchain nightly rust-src
  make_pkg "$san_pkg" "proptest|hashbrown"
fi

# ------------------------------------------------------------------ ASan
if [ "${SKIP_ASAN:-}" != 1 ]; then
  asan_flags="-Zsanitizer=address --cfg homeslab_asan"
  asan=(env RUSTFLAGS="$asan_flags" CARGO_TARGET_DIR=target/asan
    ASAN_OPTIONS="detect_leaks=1:abort_on_error=0" "${san_cargo[@]}")

  step "ASan: build (RUSTFLAGS=$asan_flags)"
  t0=$(now)
  "${asan[@]}" --lib --tests --no-run
  echo "asan build: $(secs "$t0" "$(now)") s"

  # Every unit and integration test but one: the slab unit test
  # `use_after_free_writes_cannot_reach_the_freelist` scribbles over freed
  # blocks on purpose (to show that no link lives there), which ASan
  # rightly reports as a use after poison. The doctests are not run here
  # (they are examples, run by `cargo test`; rustdoc would need its own
  # sanitizer flags and cross-compiled doctests).
  step "ASan + LeakSanitizer: unit and integration tests"
  t0=$(now)
  "${asan[@]}" --lib --tests -- --skip use_after_free_writes_cannot_reach_the_freelist
  echo "asan tests: $(secs "$t0" "$(now)") s"

  step "ASan: each mistake in tests/asan_detects.rs is reported"
  t0=$(now)
  expect_reports asan_detects "${asan[@]}"
  if [ "$detected" -lt 4 ]; then
    echo "ASan: only $detected detection cases found" >&2
    exit 1
  fi
  echo "asan detection: $detected cases in $(secs "$t0" "$(now)") s"
fi

# ------------------------------------------------------------------ TSan
if [ "${SKIP_TSAN:-}" != 1 ]; then
  # Tests (tests/NAME.rs or tests/NAME/main.rs) with cross-thread traffic;
  # globs pick up new ones (tests/slab_alloc*).
  TSAN_TESTS="${TSAN_TESTS:-stress thread_exit contexts holding overflow slab_alloc*}"
  tsan_args=()
  for pat in $TSAN_TESTS; do
    for f in tests/$pat.rs tests/$pat/main.rs; do
      [ -f "$f" ] || continue
      name=$(basename "$f" .rs)
      [ "$name" = main ] && name=$(basename "$(dirname "$f")")
      tsan_args+=(--test "$name")
    done
  done
  # Release: TSan's checks are the point, not debug assertions (the ASan
  # run and `cargo test` have those), and unoptimised code under TSan
  # would take several times longer.
  tsan=(env RUSTFLAGS="-Zsanitizer=thread -Cdebuginfo=line-tables-only" CARGO_TARGET_DIR=target/tsan
    TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" "${san_cargo[@]}" --release)

  step "TSan: build (${tsan_args[*]} --test soak)"
  t0=$(now)
  "${tsan[@]}" "${tsan_args[@]}" --test soak --test tsan_detects --no-run
  echo "tsan build: $(secs "$t0" "$(now)") s"

  step "TSan: cross-thread tests"
  t0=$(now)
  "${tsan[@]}" "${tsan_args[@]}"
  echo "tsan tests: $(secs "$t0" "$(now)") s"

  step "TSan: the race in tests/tsan_detects.rs is reported"
  t0=$(now)
  expect_reports tsan_detects "${tsan[@]}"
  if [ "$detected" -lt 1 ]; then
    echo "TSan: no detection case found" >&2
    exit 1
  fi
  echo "tsan detection: $(secs "$t0" "$(now)") s"

  step "TSan: soak (${TSAN_SOAK_OPS:-3000000} operations)"
  t0=$(now)
  HOMESLAB_SOAK_OPS="${TSAN_SOAK_OPS:-3000000}" "${tsan[@]}" --test soak -- --ignored --nocapture
  echo "tsan soak: $(secs "$t0" "$(now)") s"
fi

# ------------------------------------------------------------------ fuzz
if [ "${SKIP_FUZZ:-}" != 1 ]; then
  step "fuzz: cargo-fuzz"
  if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    t0=$(now)
    nice -n 19 cargo install cargo-fuzz --version "^0.13" --locked
    echo "cargo install cargo-fuzz: $(secs "$t0" "$(now)") s"
  fi
  # The test hook exists only with the feature: lint it too.
  nice -n 19 cargo clippy -p homeslab --lib --features test-hooks -- -D warnings
  cargo fmt --check --manifest-path fuzz/Cargo.toml
  (cd fuzz && nice -n 19 cargo +nightly clippy --all-targets -- -D warnings)

  step "fuzz: build (ASan, --cfg homeslab_asan)"
  t0=$(now)
  (cd fuzz && RUSTFLAGS="--cfg homeslab_asan" nice -n 19 cargo +nightly fuzz build)
  echo "fuzz build: $(secs "$t0" "$(now)") s"

  FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
  FUZZ_JOBS="${FUZZ_JOBS:-2}"
  # hardened_corruption once outgrew libFuzzer's default 2 GiB in 60 s
  # (corrupted HELD words pin their slab and pool: docs/ARCHITECTURE.md,
  # Slab; docs/TESTING.md, Fuzzing). Every target gets this limit.
  FUZZ_RSS_MB="${FUZZ_RSS_MB:-8192}"
  targets=$(cd fuzz && cargo +nightly fuzz list)
  # A libFuzzer run uses one core: FUZZ_JOBS targets run at once, each for
  # the whole FUZZ_SECONDS.
  step "fuzz: each target for $FUZZ_SECONDS s from fuzz/corpus/, $FUZZ_JOBS at a time"
  fuzz_one() { # target: writes target/fuzz-ci/<target>.{log,rc,secs}
    local t=$1 t0 rc=0
    t0=$(now)
    # New inputs go to target/fuzz-ci/ (the first directory), so the
    # committed corpus stays as it is; a crash leaves its input in
    # fuzz/artifacts/<target>/.
    mkdir -p "target/fuzz-ci/$t" "fuzz/corpus/$t"
    (cd fuzz && RUSTFLAGS="--cfg homeslab_asan" nice -n 19 cargo +nightly fuzz run "$t" \
      "../target/fuzz-ci/$t" "corpus/$t" -- -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 \
      -rss_limit_mb="$FUZZ_RSS_MB") \
      >"target/fuzz-ci/$t.log" 2>&1 || rc=$?
    echo "$rc" >"target/fuzz-ci/$t.rc"
    secs "$t0" "$(now)" >"target/fuzz-ci/$t.secs"
  }
  for t in $targets; do
    while [ "$(jobs -pr | wc -l)" -ge "$FUZZ_JOBS" ]; do sleep 1; done
    rm -f "target/fuzz-ci/$t.rc"
    fuzz_one "$t" &
  done
  wait
  fuzz_failed=0
  for t in $targets; do
    log="target/fuzz-ci/$t.log"
    if [ "$(cat "target/fuzz-ci/$t.rc" 2>/dev/null)" != 0 ]; then
      tail -n 60 "$log"
      echo "fuzz target $t FAILED (input in fuzz/artifacts/$t/)" >&2
      fuzz_failed=1
      continue
    fi
    printf '  %-22s ok  %s runs  %6s s\n' "$t" \
      "$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")" "$(cat "target/fuzz-ci/$t.secs")"
  done
  [ "$fuzz_failed" = 0 ] || exit 1
fi

# ------------------------------------------------------------------ MSRV
if [ "${SKIP_MSRV:-}" != 1 ]; then
  msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
  step "MSRV: Rust $msrv"
  rustup toolchain install "$msrv" --profile minimal
  # The dev-dependencies (criterion, proptest, …) need newer compilers;
  # the library and its tests do not: the package `make_pkg` writes, with
  # no dev-dependency.
  pkg=target/msrv/pkg
  make_pkg "$pkg" ""
  t0=$(now)
  nice -n 19 cargo "+$msrv" build --manifest-path "$pkg/Cargo.toml" --target-dir target/msrv --lib
  nice -n 19 cargo "+$msrv" test --manifest-path "$pkg/Cargo.toml" --target-dir target/msrv --lib --tests
  echo "msrv: $(secs "$t0" "$(now)") s"
fi

step_summary "sanitizers, fuzzing and MSRV passed"
