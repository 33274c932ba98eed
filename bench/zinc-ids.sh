#!/usr/bin/env bash
# The slow-store question (issue 11): how fast zincsearch takes the
# elasticsearch sink's _bulk bodies with the stable _id and without any, by
# batch size and concurrent requests. A fresh zincsearch (empty data
# directory) for every configuration, so each starts from the same index.
#   bash bench/zinc-ids.sh [RECORDS] [CONFIGS...]
# A config is IDS:BATCH:WORKERS (IDS stable|none); the default matrix is
# stable and none at 500 records x 2 workers (the queue's defaults),
# 500 x 8 and 5000 x 2.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-50000}
shift || true
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(stable:500:2 none:500:2 stable:500:8 none:500:8 stable:5000:2 none:5000:2)
tools=${MESHTRAIL_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshtrail/tools}/bin
[ -x "$tools/zincsearch" ] || { echo "missing $tools/zincsearch: run make tools" >&2; exit 1; }
go build -o bin/zincbulk ./bench/zincbulk
dir=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# utime+stime of a process in seconds.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/hz}' "/proc/$1/stat"; }
export ZINC_PASSWORD=meshtrail-bench
echo "# nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(date -u +%FT%TZ); load average $(cut -d' ' -f1-3 /proc/loadavg)"
for c in "${configs[@]}"; do
  IFS=: read -r ids batch workers <<<"$c"
  z_port=$(port)
  rm -rf "$dir/zinc"
  ZINC_SERVER_ADDRESS=127.0.0.1 ZINC_SERVER_PORT=$z_port ZINC_DATA_PATH="$dir/zinc" \
    ZINC_FIRST_ADMIN_USER=admin ZINC_FIRST_ADMIN_PASSWORD=$ZINC_PASSWORD \
    ZINC_TELEMETRY=false ZINC_SENTRY=false GIN_MODE=release "$tools/zincsearch" >"$dir/zinc.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do curl -fsS -o /dev/null "http://127.0.0.1:$z_port/healthz" 2>/dev/null && break; sleep 0.2; done
  cpu0=$(cpu "$pid")
  line=$(bin/zincbulk -url "http://127.0.0.1:$z_port/es" -records "$records" -batch "$batch" -workers "$workers" -ids "$ids")
  cpu1=$(cpu "$pid")
  # zincsearch indexes from its WAL after answering: wait (up to 10 min) until every
  # document is searchable, then take its CPU (its whole cost per
  # document, whatever share of the shared cores it got).
  t0=$(date +%s.%N)
  for _ in $(seq 1 300); do
    n=$(curl -fsS -u "admin:$ZINC_PASSWORD" -H 'Content-Type: application/json' \
      -d '{"query":{"match_all":{}},"size":0}' "http://127.0.0.1:$z_port/es/bench-*/_search" 2>/dev/null |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["hits"]["total"]["value"])' 2>/dev/null || echo 0)
    [ "$n" -ge "$records" ] && break
    sleep 2 # a search costs zincsearch CPU too: seldom
  done
  cpu2=$(cpu "$pid")
  echo "$line zinc_cpu_bulk=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{printf "%.1fs", b-a}') searchable_after=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1fs", b-a}') zinc_cpu_total=$(awk -v a="$cpu0" -v b="$cpu2" 'BEGIN{printf "%.1fs", b-a}') zinc_cpu_us_per_doc=$(awk -v a="$cpu0" -v b="$cpu2" -v n="$records" 'BEGIN{printf "%.0f", (b-a)*1e6/n}')"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
echo "# load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
