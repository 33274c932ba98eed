#!/usr/bin/env bash
# Per-request cost of the meshtrail Proxy-Wasm filter hosted directly on
# wazero (test/envoystandin, compilation cache on), against the SDK no-op
# plugin and the no-op that reads both header maps (bench/wasmnoop, the
# floor the target is set against), in the same run. The variants are
# interleaved: COUNT rounds, each running every variant once, so a change
# in the host's load hits all of them alike. Medians of the rounds; then one
# run of a million requests for guest memory growth (MILLION=0 skips it).
# Writes the raw output to bench/results/wasm-raw.txt and prints the medians
# and each variant's ratio to the floor.
#   bash bench/wasm.sh [COUNT] [BENCHTIME]
# MESHTRAIL_WASM_BASELINE=path/to/other.wasm adds that build of the filter
# (e.g. from an earlier commit) as meshtrail-baseline, in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-5}
benchtime=${2:-100000x}
raw=bench/results/wasm-raw.txt
: > "$raw"
CGO_ENABLED=0 go test -c -o /tmp/meshtrail-envoystandin.test ./test/envoystandin
for i in $(seq "$count"); do
  (cd test/envoystandin && /tmp/meshtrail-envoystandin.test -test.run XXX -test.bench 'BenchmarkFilterPerRequest' \
    -test.benchtime "$benchtime" -test.count 1) | tee -a "$raw"
done
if [ "${MILLION:-1}" != 0 ]; then
  (cd test/envoystandin && /tmp/meshtrail-envoystandin.test -test.run XXX -test.bench 'BenchmarkFilterPerRequest/meshtrail$' \
    -test.benchtime 1000000x -test.count 1) | tee -a "$raw"
fi
ls -l dist/meshtrail.wasm 2>/dev/null || true
# Medians per benchmark (the million-request run excluded), and the ratio
# of each to the floor (noop-readheaders).
for b in $(awk '/^BenchmarkFilterPerRequest/ {print $1}' "$raw" | sort -u); do
  awk -v b="$b" '$1 == b && $2 != 1000000 {print $3}' "$raw" | sort -n |
    awk -v b="$b" '{v[NR] = $1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%s median %.0f ns/op over %d runs\n", b, m, NR}'
done | tee /tmp/meshtrail-wasm-medians.txt
floor=$(awk '$1 ~ /noop-readheaders/ {print $3}' /tmp/meshtrail-wasm-medians.txt)
awk -v f="$floor" '{printf "%s %.2fx the floor\n", $1, $3 / f}' /tmp/meshtrail-wasm-medians.txt
# Per round: each variant against the floor of the same round.
awk '/^BenchmarkFilterPerRequest/ && $2 != 1000000 {
  split($1, p, "/"); v = p[2]; sub(/-[0-9]+$/, "", v)
  if (v == "noop") round++
  ns[round, v] = $3; names[v] = 1
} END {
  for (r = 1; r <= round; r++) { line = "round " r ":"; for (v in names) if (v != "noop-readheaders" && ns[r, "noop-readheaders"] > 0) line = line sprintf(" %s %.2fx", v, ns[r, v] / ns[r, "noop-readheaders"]); print line }
}' "$raw"
