#!/usr/bin/env bash
# Instructions per ALS entry on the receiver's message path (decode ->
# record -> NDJSON with a record.Encoder -> RED metrics; no network), counted
# by callgrind: the figure that does not move with the machine's load.
# Two run lengths of BenchmarkMessagePath (13 entries per message), the
# difference divided by the entries between them, so setup cancels out.
#   bash bench/als-instructions.sh [GOGC]   (default 100; "off" leaves GC out)
set -euo pipefail
cd "$(dirname "$0")/.."
gogc=${1:-100}
bin=$(mktemp -d)/als.test
go test -c -o "$bin" ./als
count() {
  (cd "$(dirname "$bin")" && GOGC=$gogc GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 valgrind --tool=callgrind \
    --callgrind-out-file=/dev/null "$bin" -test.run XXX -test.bench MessagePath -test.benchtime "$1x" 2>&1 |
    awk '/Collected/ {print $4}')
}
a=$(count 500)
b=$(count 4500)
echo "instructions per entry (GOGC=$gogc): $(( (b - a) / (4000 * 13) ))"
rm -rf "$(dirname "$bin")"
