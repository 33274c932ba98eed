#!/usr/bin/env bash
# Sink encoder benchmarks before and after a change, in the same run: the
# BASE commit is extracted (git archive) into a temporary directory, then
# each round runs the benchmarks once on BASE and once on the working tree,
# COUNT rounds (default 5), alternating so load changes hit both alike.
# Prints the median records/CPU-s and CPU-ns/record of each side.
#   bash bench/sinks-ab.sh BASE COUNT PACKAGE... (e.g. ./internal/sink/otlp)
# BENCH (default .) selects the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
base=$1 count=$2
shift 2
dir=$(mktemp -d)
out=$(mktemp)
trap 'rm -rf "$dir" "$out"' EXIT
git archive "$base" | tar -x -C "$dir"
for i in $(seq "$count"); do
  for side in base head; do
    src=.
    [ "$side" = base ] && src=$dir
    (cd "$src" && go test -run '^$' -bench "${BENCH:-.}" -benchtime 2s -count 1 "$@" 2>&1) |
      sed "s/^Benchmark/$side Benchmark/; s/^pkg: /$side pkg: /" | tee -a "$out" >&2
  done
done
echo "| side | package | benchmark | records/CPU-s (median) | CPU-ns/record (median) | B/op | allocs/op |"
echo "|---|---|---|---:|---:|---:|---:|"
awk '
  $2 == "pkg:" { pkg[$1] = $3; sub(".*/sink/", "sink/", pkg[$1]) }
  $2 ~ /^Benchmark/ {
    side = $1; name = $2; sub(/-[0-9]+$/, "", name); key = side " " pkg[side] " " name
    for (i = 4; i <= NF; i++) {
      if ($(i+1) == "records/cpu-s") rps[key] = rps[key] " " $i
      if ($(i+1) == "cpu-ns/record") nsr[key] = nsr[key] " " $i
      if ($(i+1) == "B/op") bop[key] = $i
      if ($(i+1) == "allocs/op") aop[key] = $i
    }
    if (!(key in seen)) { seen[key] = 1; order[++n] = key }
  }
  function median(s,   a, m, i, j, t) {
    m = split(s, a, " ")
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }
  END {
    for (k = 1; k <= n; k++) {
      split(order[k], p, " ")
      printf "| %s | %s | %s | %.0f | %.0f | %s | %s |\n", p[1], p[2], p[3], median(rps[order[k]]), median(nsr[order[k]]), bop[order[k]], aop[order[k]]
    }
  }' "$out"
