# Shared by the .ci scripts (sourced after `cd` to the repository root).
#
# `step NAME` ends the running step, printing its seconds, and starts NAME;
# `step_summary TITLE` ends the last step and prints every step's seconds
# and the script's total. A script called by another (CI_LEVEL > 0) also
# appends its step lines, indented, to $CI_STEPS_FILE, so that the
# outer script's summary lists them. On exit a running step is ended,
# marked FAILED if the script fails.

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

export CI_LEVEL=$((${CI_LEVEL:--1} + 1))
ci_start=$(now)
step_name=
step_t0=
step_lines=()

step_end() { # [exit status]
  [ -n "$step_name" ] || return 0
  local s line
  [ "${1:-0}" = 0 ] || step_name="$step_name: FAILED (exit $1)"
  s=$(secs "$step_t0" "$(now)")
  printf -- '--- %s s: %s\n' "$s" "$step_name"
  line=$(printf '%*s%9s s  %s' $((4 * CI_LEVEL)) '' "$s" "$step_name")
  step_lines+=("$line")
  if [ "$CI_LEVEL" -gt 0 ] && [ -n "${CI_STEPS_FILE:-}" ]; then
    printf '%s\n' "$line" >>"$CI_STEPS_FILE"
  fi
  step_name=
}

trap 'step_end $?' EXIT

step() {
  step_end
  step_name="$*"
  step_t0=$(now)
  printf '\n==> %s\n' "$*"
}

step_summary() { # TITLE
  step_end
  printf '\n==> %s: %s s\n' "$1" "$(secs "$ci_start" "$(now)")"
  printf '%s\n' "${step_lines[@]}"
}

# make_pkg DIR KEEP: writes DIR/Cargo.toml, homeslab's Cargo.toml with
# only the dev-dependencies named in KEEP (`|`-separated, may be empty) and
# without the workspace, benches, examples and profiles, listing every
# tests/*.rs that needs no other dev-dependency and does not read
# CARGO_MANIFEST_DIR (the source-scanning tests and the C library test);
# and DIR/Cargo.lock, a copy of the lockfile (same versions). The Miri,
# sanitizer and MSRV builds then skip criterion, the benchmark allocators
# and their C builds.
make_pkg() {
  local dir=$1 keep="^($2)\$" root dropped f src name
  root=$(pwd)
  mkdir -p "$dir"
  dropped=$(awk -v keep="$keep" '/^\[/ { on = ($0 == "[dev-dependencies]") }
    on && /^[a-z]/ && $1 !~ keep { print $1 }' Cargo.toml | tr - _ | paste -sd'|')
  {
    awk -v keep="$keep" '
      /^\[/ { sec = $0; on = (sec !~ /^\[(workspace|profile|\[bench\]|\[example\])/) }
      on && (sec != "[dev-dependencies]" || /^\[/ || $1 ~ keep)' Cargo.toml
    printf '\n[workspace]\n\n[lib]\npath = "%s/src/lib.rs"\n' "$root"
    for f in tests/*.rs tests/*/main.rs; do
      [ -f "$f" ] || continue
      # tests/NAME/main.rs: the test NAME, its modules beside it.
      src=$f name=$(basename "$f" .rs)
      if [ "$name" = main ]; then
        src=$(dirname "$f")
        name=$(basename "$src")
      fi
      grep -rq CARGO_MANIFEST_DIR "$src" && continue
      [ -n "$dropped" ] && grep -rEq "\\b($dropped)::" "$src" && continue
      printf '\n[[test]]\nname = "%s"\npath = "%s/%s"\n' "$name" "$root" "$f"
    done
  } >"$dir/Cargo.toml"
  cp Cargo.lock "$dir/Cargo.lock"
  echo "$dir: $(grep -c '^\[\[test\]\]' "$dir/Cargo.toml") test files (not: the ones using $dropped, or CARGO_MANIFEST_DIR)"
}
