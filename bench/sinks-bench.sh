#!/usr/bin/env bash
# Sink encoder benchmarks: records per CPU-second into each exporter with the
# network left out, median of COUNT runs (default 5). Prints a Markdown table.
#   bash bench/sinks-bench.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-5}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test -run '^$' -bench . -benchtime 2s -count "$count" \
  ./internal/sink/spans ./internal/sink/otlp ./internal/sink/zipkin ./internal/sink/loki ./internal/sink/elasticsearch ./internal/sink/fluentd ./internal/sink/promremote | tee "$out" >&2
echo "| package | benchmark | records/CPU-s (median) | CPU-ns/record (median) | B/op | allocs/op |"
echo "|---|---|---:|---:|---:|---:|"
awk '
  /^pkg: / { pkg = $2; sub(".*/sink/", "sink/", pkg) }
  /^Benchmark/ {
    name = $1; sub(/-[0-9]+$/, "", name); key = pkg " " name
    for (i = 3; i <= NF; i++) {
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
      printf "| %s | %s | %.0f | %.0f | %s | %s |\n", p[1], p[2], median(rps[order[k]]), median(nsr[order[k]]), bop[order[k]], aop[order[k]]
    }
  }' "$out"
