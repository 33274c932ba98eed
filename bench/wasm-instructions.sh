#!/usr/bin/env bash
# Instructions per request of the compiled filter and of the two no-op
# references (the SDK no-op, and the no-op that reads both header maps: the
# floor the filter's target is set against), hosted on wazero by
# test/envoystandin, counted by callgrind: the figure that does not move
# with the machine's load (the wall-clock bench/wasm.sh does, a lot, on a
# shared host). For each variant, two run lengths after the same warm-up;
# the difference divided by the requests between them, so setup, module
# load and warm-up cancel out. The guest code is wazero's compiled output
# (the compilation cache is filled by a native run first), so what is
# counted is the host's and the guest's machine instructions.
#   bash bench/wasm-instructions.sh [A] [B] [WARMUP]  (default 2000 10000 20000)
# VARIANTS="noop meshtrail" picks variants (default all three);
# MESHTRAIL_WASM_BASELINE=path/to/other.wasm with VARIANTS=meshtrail-baseline
# counts another build of the filter the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:-2000}
b=${2:-10000}
warm=${3:-20000}
bin=$(mktemp -d)/envoystandin.test
CGO_ENABLED=0 go test -c -o "$bin" ./test/envoystandin
run() { # variant count [valgrind...]
  local v=$1 n=$2
  shift 2
  (cd test/envoystandin && MESHTRAIL_WASM_WARMUP=$warm GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 "$@" "$bin" \
    -test.run XXX -test.bench "BenchmarkFilterPerRequest/$v\$" -test.benchtime "${n}x" -test.count 1 2>&1)
}
count() { # valgrind 3.19 sometimes aborts on a Go binary (m_mallocfree.c): retry
  local n
  for _ in 1 2 3 4 5; do
    n=$(run "$1" "$2" valgrind --tool=callgrind --callgrind-out-file=/dev/null | awk '/Collected/ {print $4}')
    if [ -n "$n" ]; then echo "$n"; return; fi
  done
  echo "callgrind failed 5 times on $1 x$2" >&2
  return 1
}
for v in ${VARIANTS:-noop noop-readheaders meshtrail}; do
  run "$v" 10 >/dev/null # fills the compilation cache natively
  x=$(count "$v" "$a")
  y=$(count "$v" "$b")
  echo "$v instructions per request: $(( (y - x) / (b - a) )) ($x at $a, $y at $b)"
done
rm -rf "$(dirname "$bin")"
