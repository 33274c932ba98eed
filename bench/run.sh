#!/usr/bin/env bash
# make bench: every benchmark, with the peers measured in the same run.
# Sections: als (end to end vs the OpenTelemetry Collector's envoyals
# receiver), instr (instructions per entry under callgrind, the figure the
# machine's load does not move), soak (memory over time), go (go test -bench
# of the hot paths), inject (the webhook). ONLY=als,go runs a subset; RUNS, ENTRIES, SOAK and
# COUNT tune them. Output is printed and kept in bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
only=",${ONLY:-als,instr,soak,go,inject},"
want() { [[ "$only" == *",$1,"* ]]; }
mkdir -p bench/out bin
export CGO_ENABLED=0
go build -trimpath -o bin/meshtrail ./cmd/meshtrail
go build -trimpath -o bin/alsload ./bench/alsload
go build -trimpath -o bin/alsbench ./bench/alsbench

if want als; then
  bash test/tools/install.sh otelcol
  echo "== ALS end to end: meshtrail vs otelcol envoyals, same load, alternating runs"
  ./bin/alsbench -runs "${RUNS:-5}" -entries "${ENTRIES:-400000}" | tee bench/out/als.txt
fi
if want instr; then
  echo "== ALS message path: instructions per entry (callgrind)"
  { bash bench/als-instructions.sh 100; bash bench/als-instructions.sh off; } | tee bench/out/als-instructions.txt
fi
if want soak; then
  echo "== ALS memory over ${SOAK:-10m} at 10000 entries/s (default NDJSON rotation)"
  ./bin/alsbench -soak "${SOAK:-10m}" -rate 10000 -rotate | tee bench/out/als-soak.txt
fi
if want go; then
  echo "== go test -bench (hot paths; -count ${COUNT:-5} for medians)"
  go test -run '^$' -bench . -benchmem -count "${COUNT:-5}" ./internal/record ./als ./internal/fanout/... ./internal/sink/... | tee bench/out/go.txt
fi
if want inject && [ -f bench/inject.sh ]; then
  echo "== injector"
  bash bench/inject.sh "${COUNT:-5}" | tee bench/out/inject.txt
fi
