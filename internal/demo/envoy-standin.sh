#!/usr/bin/env bash
# The second half of `make demo`: real HTTP requests through the compiled
# meshtrail.wasm filter, hosted by a TEST STAND-IN for Envoy (Envoy itself
# cannot be had on this machine; test/envoystandin hosts the .wasm on
# wazero the way Envoy hosts it), whose access log reaches the ALS receiver
# with the filter's trace context in filter state.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

# wait_for FILE PATTERN: the first line of FILE matching PATTERN, within 30 s.
wait_for() {
  for _ in $(seq 300); do
    if line=$(grep -m1 "$2" "$1" 2>/dev/null); then echo "$line"; return 0; fi
    sleep 0.1
  done
  echo "demo: timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; return 1
}

./bin/meshtrail als --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --out "$dir/records.ndjson" 2>"$dir/als.log" &
als_pid=$!
als=$(wait_for "$dir/als.log" "ALS receiver listening" | sed -E 's/.* grpc=([^ ]+).*/\1/')
./bin/envoystandin --wasm dist/meshtrail.wasm --config '{"tracing":{"sampling_percentage":100}}' \
  --listen 127.0.0.1:0 --upstream echo --als "$als" \
  --pod productpage-v1-6b746f74dc-9stvs --workload productpage-v1 --app productpage --namespace bookinfo 2>"$dir/standin.log" &
standin_pid=$!
proxy=$(wait_for "$dir/standin.log" "envoystandin" | sed -E 's/.*: ([0-9.]+:[0-9]+) -> .*/\1/')

echo
echo "== Through the meshtrail Wasm filter (dist/meshtrail.wasm, $(stat -c %s dist/meshtrail.wasm) bytes) in a test stand-in for Envoy on $proxy"
echo "-- a request with no trace context: the filter starts one and propagates it upstream"
curl -sS "http://$proxy/productpage"
echo "-- a request continuing a W3C trace: the filter keeps the trace id, new span, parent = the caller's span"
curl -sS -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' "http://$proxy/reviews/0"

# Stop the stand-in (its ALS stream closes), then the receiver (it flushes).
kill "$standin_pid"; wait "$standin_pid" 2>/dev/null || true
kill "$als_pid"; wait "$als_pid" 2>/dev/null || true

echo
echo "== What reached the ALS receiver: one record per request, trace ids from the filter's filter state"
jq -c '{path, response_code, trace_id, span_id, parent_span_id, trace_source, reporter}' "$dir/records.ndjson"
