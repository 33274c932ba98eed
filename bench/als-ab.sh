#!/usr/bin/env bash
# A/B of two meshtrail receivers (or two environments) on the same load,
# alternating, without the peer: entries per CPU-second of `meshtrail als`
# (user+system from /proc/PID/stat) for 400,000 entries of bin/alsload over
# 100 streams, one NDJSON file per run. For a quick same-minutes check of
# a change; bench/alsbench stays the figure of record.
#   bash bench/als-ab.sh RUNS BIN_A BIN_B [ENV_A] [ENV_B]
#   e.g. bash bench/als-ab.sh 5 /tmp/meshtrail.before bin/meshtrail
#        bash bench/als-ab.sh 5 bin/meshtrail bin/meshtrail GOGC=400 GOGC=800
set -euo pipefail
cd "$(dirname "$0")/.."
runs=$1 bin_a=$2 bin_b=$3 env_a=${4:-X=} env_b=${5:-X=}
[ -x bin/alsload ] || go build -o bin/alsload ./bench/alsload
cfg=$(mktemp); echo 'out_rotation: {max_size_mb: 65536}' >"$cfg"
one() { # ENV BIN -> entries per CPU-second
  local d port pid u0 s0 u1 s1 n
  d=$(mktemp -d); port=$((20000 + RANDOM % 10000))
  env "$1" "$2" als --listen 127.0.0.1:$port --metrics-listen 127.0.0.1:$((port + 1)) --out "$d/r.ndjson" \
    --log-level warn --config "$cfg" & pid=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$((port + 1))/readyz" >/dev/null && break; sleep 0.05; done
  read -r u0 s0 < <(awk '{print $14, $15}' /proc/$pid/stat)
  ./bin/alsload -addr 127.0.0.1:$port -entries 400000 -streams 100 >/dev/null 2>&1
  for _ in $(seq 300); do
    n=$(curl -s "127.0.0.1:$((port + 1))/metrics" | awk '/^meshtrail_ndjson_records_written_total/ {print int($2)}')
    [ "${n:-0}" -ge 399990 ] && break; sleep 0.1
  done
  read -r u1 s1 < <(awk '{print $14, $15}' /proc/$pid/stat)
  kill $pid; wait $pid 2>/dev/null || true; rm -rf "$d"
  echo $((400000 * $(getconf CLK_TCK) / (u1 + s1 - u0 - s0)))
}
a=(); b=()
for r in $(seq "$runs"); do
  a+=("$(one "$env_a" "$bin_a")"); b+=("$(one "$env_b" "$bin_b")")
  echo "run $r: A ${a[-1]}  B ${b[-1]} entries/CPU-s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
echo "median: A $(median "${a[@]}")  B $(median "${b[@]}")  (A: $env_a $bin_a, B: $env_b $bin_b)"
rm -f "$cfg"
