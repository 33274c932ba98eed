#!/usr/bin/env bash
# Injector benchmarks: bench/inject.sh [COUNT] (default 5 runs each).
#  - BenchmarkReview: the /inject handler, reviews per CPU-second.
#  - BenchmarkPodCreate: pod creation p50/p99 through a real kube-apiserver
#    + etcd (test/tools/kube-apiserver.sh, test/tools/etcd.sh), without the webhook
#    and with it. Needs `make tools`.
# Prints each run, then the median of every metric over the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-5}
out=$(mktemp -d)
echo "# nproc: $(nproc); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
go test -run '^$' -bench 'BenchmarkReview' -count "$count" ./injector/ | tee "$out/review.txt" | grep '^Benchmark'
go test -run '^$' -bench 'BenchmarkPodCreate' -benchtime 300x -count "$count" -timeout 30m ./injector/ \
  | tee "$out/create.txt" | grep '^Benchmark'
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "# medians over $count runs"
cat "$out/review.txt" "$out/create.txt" | awk '
  /^Benchmark/ {
    name=$1; sub(/-[0-9]+$/, "", name)
    for (i = 3; i < NF; i++) if ($(i+1) ~ /^(ns\/op|p50-ms|p99-ms|reviews\/cpu-s)$/) {
      key = name " " $(i+1); vals[key] = vals[key] " " $i; if (!(key in seen)) { seen[key]=1; order[n++]=key }
    }
  }
  END {
    for (k = 0; k < n; k++) {
      m = split(substr(vals[order[k]], 2), a, " ")
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      med = (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
      printf "%-50s %12.3f\n", order[k], med
    }
  }'
rm -rf "$out"
