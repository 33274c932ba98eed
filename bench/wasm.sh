#!/usr/bin/env bash
# Per-request cost of the meshtrail Proxy-Wasm filter hosted directly on
# wazero (test/envoystandin, compilation cache on), against the SDK no-op
# plugin (bench/wasmnoop) in the same run; medians of COUNT runs; then one
# run of a million requests for guest memory growth. Writes the raw output
# to bench/results/wasm-raw.txt and prints the medians.
#   bash bench/wasm.sh [COUNT] [BENCHTIME]
# MESHTRAIL_WASM_BASELINE=path/to/other.wasm adds that build of the filter
# (e.g. from an earlier commit) as meshtrail-baseline, in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-5}
benchtime=${2:-100000x}
raw=bench/results/wasm-raw.txt
CGO_ENABLED=0 go test -run XXX -bench 'BenchmarkFilterPerRequest' -benchtime "$benchtime" -count "$count" ./test/envoystandin | tee "$raw"
CGO_ENABLED=0 go test -run XXX -bench 'BenchmarkFilterPerRequest/meshtrail$' -benchtime 1000000x -count 1 ./test/envoystandin | tee -a "$raw"
ls -l dist/meshtrail.wasm 2>/dev/null || true
# Medians per benchmark (the million-request run excluded).
for b in $(awk '/^BenchmarkFilterPerRequest/ {print $1}' "$raw" | sort -u); do
  awk -v b="$b" '$1 == b && $2 != 1000000 {print $3}' "$raw" | sort -n |
    awk -v b="$b" '{v[NR] = $1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%s median %.0f ns/op over %d runs\n", b, m, NR}'
done
