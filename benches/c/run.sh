#!/usr/bin/env bash
# The C allocator benchmarks (larson-, xmalloc- and cache-scratch-shaped)
# under LD_PRELOAD: glibc (nothing preloaded), homeslab's malloc library,
# and mimalloc / jemalloc shared libraries if the machine has them
# (Debian: libmimalloc2.0, libjemalloc2). Interleaved rounds, medians.
#
# Usage: benches/c/run.sh [rounds] [scale]   (builds the library in release)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
scale=${2:-1}
target=${CARGO_TARGET_DIR:-target}
cargo build -q --release --example homeslab_malloc
out=$(mktemp -d)
for p in larson xmalloc cache_scratch; do
  cc -O2 -pthread -o "$out/$p" "benches/c/$p.c"
done
declare -A lib=([glibc]="" [homeslab]="$target/release/examples/libhomeslab_malloc.so")
for so in /usr/lib/x86_64-linux-gnu/libmimalloc.so.2 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2; do
  if [ -e "$so" ]; then
    case $so in *mimalloc*) lib[mimalloc]=$so ;; *jemalloc*) lib[jemalloc]=$so ;; esac
  fi
done
names=(glibc homeslab)
[ -n "${lib[mimalloc]:-}" ] && names+=(mimalloc)
[ -n "${lib[jemalloc]:-}" ] && names+=(jemalloc)
for r in $(seq "$rounds"); do
  for p in larson xmalloc cache_scratch; do
    n=${#names[@]}
    for i in $(seq 0 $((n - 1))); do
      a=${names[$(( (i + r) % n ))]}
      line=$(LD_PRELOAD="${lib[$a]}" "$out/$p" "$scale")
      echo "$p $a $line" >>"$out/results"
    done
  done
done
echo "medians of $rounds rounds (ops/s, peak RSS)"
echo "| program | allocator | Mops/s | peak RSS MiB |"
echo "|---|---|---:|---:|"
for p in larson xmalloc cache_scratch; do
  for a in "${names[@]}"; do
    awk -v p="$p" -v a="$a" '$1 == p && $2 == a { print $4 / $5, $6 }' "$out/results" |
      sort -n | awk -v p="$p" -v a="$a" '
        { ops[NR] = $1; rss[NR] = $2 }
        END { m = int((NR + 1) / 2); printf "| %s | %s | %.2f | %.1f |\n", p, a, ops[m] / 1e6, rss[m] / 1024 }'
  done
done
rm -rf "$out"
