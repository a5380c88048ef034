#!/usr/bin/env bash
# Mutation proof for the loom models: each run builds homeslab with one
# memory ordering weakened (the `homeslab_mutation` cfgs in src/remote.rs,
# src/magazine.rs)
# and EXPECTS the listed models to fail. A weakened variant that passes them
# means the models no longer cover that ordering, and this script fails.
# It also checks that the unmutated build passes the same models.
#
# The mutants share one target dir (target/loom-mut): the mutation cfg is
# given to homeslab alone (nightly's profile rustflags), so loom and the
# other dependencies are built once, and each mutant rebuilds only
# homeslab and the test files its models are in.
#
# Usage: loom-tests/mutation.sh            (from anywhere)
# Env:   LOOM_MAX_PREEMPTIONS (default 3); PRODUCTION_CHECKED=1 skips the
#        unmutated runs (.ci/loom-miri.sh has just run every model on the
#        same build, target/loom, with the same bound)
set -euo pipefail
cd "$(dirname "$0")/.."

export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
export LOOM_LOCATION=1 # loom names the source lines of a causality violation
export RUST_BACKTRACE=0

# mutation | test file | model expected to fail
CASES=(
  "remote_push_relaxed   remote     remote_free_races_drain"
  "remote_push_relaxed   remote     two_remote_freers_race_owner_alloc"
  "remote_push_relaxed   public_api user_model_send_poolbox_to_another_thread"
  "remote_push_relaxed   remote     held_chain_races_owner_drain"
  "drain_relaxed         remote     remote_free_races_drain"
  "drain_relaxed         remote     remote_free_to_full_slab_races_owner_running_dry"
  "drain_relaxed         public_api user_model_send_poolbox_to_another_thread"
  "drain_relaxed         remote     held_chain_races_owner_drain"
  "returned_push_relaxed remote     two_returned_slabs_race_owner_take"
  "magazine_handshake_skipped magazine steal_races_owner_push_and_pop"
  "magazine_publish_relaxed magazine steal_races_owner_push_and_pop"
)

log_dir="target/loom-mutation-logs"
mkdir -p "$log_dir"
status=0

run_model() { # target_dir file model log [cargo args...] -> exit code of the test
  local dir=$1 file=$2 model=$3 log=$4
  shift 4
  set +e
  RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$dir" \
    cargo "$@" test -q --release -p loom-tests --test "$file" -- --exact "$model" >"$log" 2>&1
  local rc=$?
  set -e
  return $rc
}

build() { # target_dir test_args [cargo args...]
  local dir=$1 tests=$2
  shift 2
  # shellcheck disable=SC2086 # $tests is a list of --test NAME
  if ! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$dir" \
    cargo "$@" test -q --release -p loom-tests $tests --no-run 2>"$log_dir/build.log"; then
    cat "$log_dir/build.log"
    echo "mutation: BUILD FAILED for $* $tests" >&2
    exit 1
  fi
}

if [ "${PRODUCTION_CHECKED:-}" = 1 ]; then
  echo "== mutation: unmutated build (target/loom): every listed model passed in the models step"
else
  echo "== mutation: unmutated build (target/loom) must pass every listed model"
  build target/loom --tests
  while read -r file model; do
    log="$log_dir/prod-$model.log"
    if run_model target/loom "$file" "$model" "$log"; then
      echo "  ok    production  $file::$model"
    else
      echo "  FAIL  production  $file::$model (see $log)"
      tail -n 30 "$log"
      status=1
    fi
  done < <(printf '%s\n' "${CASES[@]}" | awk '{print $2, $3}' | sort -u)
fi

for mutation in $(printf '%s\n' "${CASES[@]}" | awk '{print $1}' | sort -u); do
  mut=(+nightly -Zprofile-rustflags
    --config "profile.release.package.homeslab.rustflags=['--cfg', 'homeslab_mutation=\"$mutation\"']")
  tests=$(printf '%s\n' "${CASES[@]}" | awk -v m="$mutation" '$1 == m { print "--test", $2 }' | sort -u)
  echo "== mutation: $mutation (homeslab with --cfg homeslab_mutation=\"$mutation\", CARGO_TARGET_DIR=target/loom-mut)"
  start=$(date +%s)
  build target/loom-mut "$tests" "${mut[@]}"
  for case in "${CASES[@]}"; do
    read -r m file model <<<"$case"
    [ "$m" = "$mutation" ] || continue
    log="$log_dir/$mutation-$model.log"
    if run_model target/loom-mut "$file" "$model" "$log" "${mut[@]}"; then
      echo "  SURVIVED  $file::$model passed with $mutation: the model misses it"
      status=1
    elif grep -q "panicked at" "$log"; then
      # The first panic's message is loom's verdict (or the model's assert).
      why=$(awk '/panicked at/{getline; while ($0 ~ /^[[:space:]]*$/) getline; print; exit}' "$log")
      where=$(grep -m3 -E '^[[:space:]]+(created|read|write):' "$log" | tr -s ' ' | paste -sd';' - || true)
      echo "  killed    $file::$model: $why${where:+ [$where]}"
    else
      echo "  ERROR     $file::$model failed without a panic (see $log)"
      tail -n 20 "$log"
      status=1
    fi
  done
  echo "  ($mutation: $(( $(date +%s) - start ))s)"
done

if [ $status -ne 0 ]; then
  echo "mutation: FAILED" >&2
else
  echo "mutation: every weakened ordering was caught"
fi
exit $status
