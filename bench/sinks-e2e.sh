#!/usr/bin/env bash
# End to end into the real servers (issue 3): entries per CPU-second of the
# meshtrail process receiving ALS over gRPC and fanning out to real Jaeger
# (OTLP gRPC), Loki, zincsearch (elasticsearch sink) and the OpenTelemetry
# Collector's fluentforward receiver (fluentd sink), all on 127.0.0.1, with
# the servers from the tools directory (make tools). The clock of a run stops when
# every sink's meshtrail_sink_records_sent_total has reached the entry
# count (alsbench -wait-sinks). Then each sink alone, RUNS_EACH runs each.
#   bash bench/sinks-e2e.sh [ENTRIES] [RUNS] [RUNS_EACH]
# No peer does the same fan-out, so meshtrail is measured alone.
set -euo pipefail
cd "$(dirname "$0")/.."
entries=${1:-100000}
runs=${2:-5}
runs_each=${3:-1}
tools=${MESHTRAIL_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshtrail/tools}/bin
for t in jaeger loki zincsearch otelcol; do
  [ -x "$tools/$t" ] || { echo "missing $tools/$t: run make tools" >&2; exit 1; }
done
go build -trimpath -o bin/meshtrail ./cmd/meshtrail
go build -o bin/alsload ./bench/alsload
go build -o bin/alsbench ./bench/alsbench

dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url what
  for _ in $(seq 1 600); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done
  echo "$2 did not answer at $1; logs in $dir" >&2; exit 1
}
wait_tcp() { # port what
  for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.2; done
  echo "$2 did not listen on $1" >&2; exit 1
}

# Jaeger v2, in-memory storage, OTLP gRPC receiver.
j_otlp=$(port); j_query=$(port); j_qgrpc=$(port); j_health=$(port); j_http=$(port)
cat >"$dir/jaeger.yaml" <<EOF
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [jaeger_storage_exporter]}
  telemetry: {metrics: {level: none}, logs: {level: warn}}
extensions:
  jaeger_storage: {backends: {mem: {memory: {max_traces: 100000}}}}
  jaeger_query: {storage: {traces: mem}, http: {endpoint: 127.0.0.1:$j_query}, grpc: {endpoint: 127.0.0.1:$j_qgrpc}}
  healthcheckv2: {use_v2: true, http: {endpoint: 127.0.0.1:$j_health}}
receivers:
  otlp: {protocols: {grpc: {endpoint: 127.0.0.1:$j_otlp}, http: {endpoint: 127.0.0.1:$j_http}}}
processors:
  batch: {}
exporters:
  jaeger_storage_exporter: {trace_storage: mem}
EOF
"$tools/jaeger" --config="$dir/jaeger.yaml" >"$dir/jaeger.log" 2>&1 &
pids+=($!)

# Loki, single binary, filesystem storage; ingestion limits raised so the
# bench measures meshtrail, not Loki's rate limiter.
l_http=$(port); l_grpc=$(port); l_gossip=$(port)
cat >"$dir/loki.yaml" <<EOF
auth_enabled: false
server: {http_listen_address: 127.0.0.1, http_listen_port: $l_http, grpc_listen_address: 127.0.0.1, grpc_listen_port: $l_grpc, log_level: warn, grpc_server_max_recv_msg_size: 67108864}
common:
  instance_addr: 127.0.0.1
  path_prefix: $dir/loki
  storage: {filesystem: {chunks_directory: $dir/loki/chunks, rules_directory: $dir/loki/rules}}
  replication_factor: 1
  ring: {kvstore: {store: inmemory}}
ingester: {lifecycler: {min_ready_duration: 0s, final_sleep: 0s}}
memberlist: {bind_addr: [127.0.0.1], bind_port: $l_gossip}
limits_config:
  allow_structured_metadata: true
  reject_old_samples: false
  ingestion_rate_mb: 1024
  ingestion_burst_size_mb: 1024
  per_stream_rate_limit: 1GB
  per_stream_rate_limit_burst: 1GB
schema_config:
  configs: [{from: 2024-01-01, store: tsdb, object_store: filesystem, schema: v13, index: {prefix: index_, period: 24h}}]
analytics: {reporting_enabled: false}
ruler: {enable_api: false}
pattern_ingester: {enabled: false}
EOF
"$tools/loki" -config.file="$dir/loki.yaml" >"$dir/loki.log" 2>&1 &
pids+=($!)

# zincsearch, Elasticsearch API under /es.
z_port=$(port)
export ZINC_PASSWORD=meshtrail-bench
ZINC_SERVER_ADDRESS=127.0.0.1 ZINC_SERVER_PORT=$z_port ZINC_DATA_PATH="$dir/zinc" \
  ZINC_FIRST_ADMIN_USER=admin ZINC_FIRST_ADMIN_PASSWORD=$ZINC_PASSWORD \
  ZINC_TELEMETRY=false ZINC_SENTRY=false GIN_MODE=release "$tools/zincsearch" >"$dir/zinc.log" 2>&1 &
pids+=($!)

# OpenTelemetry Collector: fluentforward receiver -> debug exporter (counts only).
o_fwd=$(port); o_tel=$(port)
cat >"$dir/otelcol.yaml" <<EOF
receivers:
  fluentforward: {endpoint: 127.0.0.1:$o_fwd}
processors:
  batch: {}
exporters:
  debug: {verbosity: basic}
service:
  telemetry:
    logs: {level: warn}
    metrics: {readers: [{pull: {exporter: {prometheus: {host: 127.0.0.1, port: $o_tel}}}}]}
  pipelines:
    logs: {receivers: [fluentforward], processors: [batch], exporters: [debug]}
EOF
"$tools/otelcol" --config="$dir/otelcol.yaml" >"$dir/otelcol.log" 2>&1 &
pids+=($!)

wait_http "http://127.0.0.1:$j_query/api/services" jaeger
wait_tcp "$j_otlp" "jaeger OTLP gRPC"
wait_http "http://127.0.0.1:$l_http/ready" loki
wait_http "http://127.0.0.1:$z_port/healthz" zincsearch
wait_tcp "$o_fwd" "otelcol fluentforward"

# The same queue for every sink: a memory queue that pushes back on the
# ALS streams when full (overflow: block) rather than dropping, no disk.
queue='queue: {memory: {records: 20000}, overflow: {policy: block, block_timeout: 10m}}'
otlp="  otlp:
    enabled: true
    protocol: grpc
    endpoint: 127.0.0.1:$j_otlp
    $queue"
loki="  loki:
    enabled: true
    url: http://127.0.0.1:$l_http/loki/api/v1/push
    $queue"
es="  elasticsearch:
    enabled: true
    url: http://127.0.0.1:$z_port/es
    index: bench-{date}
    auth: {username: admin, password_env: ZINC_PASSWORD}
    $queue"
fluentd="  fluentd:
    enabled: true
    address: 127.0.0.1:$o_fwd
    $queue"
printf 'sinks:\n%s\n%s\n%s\n%s\n' "$otlp" "$loki" "$es" "$fluentd" >"$dir/all.yaml"
for s in otlp loki es fluentd; do printf 'sinks:\n%s\n' "${!s}" >"$dir/$s.yaml"; done

echo "# nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(date -u +%FT%TZ); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# all four sinks: bin/alsbench -runs $runs -entries $entries -config all.yaml -wait-sinks"
cat "$dir/all.yaml"
bin/alsbench -runs "$runs" -entries "$entries" -config "$dir/all.yaml" -wait-sinks
for s in otlp loki es fluentd; do
  echo
  echo "# $s alone: bin/alsbench -runs $runs_each -entries $entries -config $s.yaml -wait-sinks"
  bin/alsbench -runs "$runs_each" -entries "$entries" -config "$dir/$s.yaml" -wait-sinks
done
echo
echo "# NDJSON only (no sinks): bin/alsbench -runs $runs_each -entries $entries, meshtrail column"
bin/alsbench -runs "$runs_each" -entries "$entries" | grep -E '^run|^median'
echo "# load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
