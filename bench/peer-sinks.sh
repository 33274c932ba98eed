#!/usr/bin/env bash
# meshtrail against the OpenTelemetry Collector on the same ALS load, into the
# same real backends (issue 11): meshtrail's elasticsearch and loki sinks
# against the Collector's envoyals receiver -> batch -> elasticsearch exporter
# and otlphttp into Loki's OTLP endpoint (/otlp/v1/logs). Runs alternate
# meshtrail / Collector; each run's clock stops when every sink (every
# exporter) has sent every entry (bin/alsbench -wait-sinks -peer-config).
# Three pairings: Elasticsearch alone, Loki alone, both.
#   bash bench/peer-sinks.sh [ENTRIES] [RUNS] [BATCH_BYTES] [PAIRINGS]
# BATCH_BYTES is the ALS message size (default 100000: ~108 entries, as the
# issue's first peer run; 16384 is Envoy's default flush, ~13 entries).
# PAIRINGS defaults to "es loki both". ES_BACKEND=mock-es (default: Elastic's
# bulk mock, answers at once) or zinc (zincsearch, a store that indexes).
# Needs loki, mock-es or zincsearch, and an otelcol built from
# test/tools/otelcol/manifest.yaml with the elasticsearch and otlphttp
# exporters (bash test/tools/otelcol.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
entries=${1:-100000}
runs=${2:-3}
batch_bytes=${3:-100000}
pairings=${4:-es loki both}
es_backend=${ES_BACKEND:-mock-es}
tools=${MESHTRAIL_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshtrail/tools}/bin
need=(loki otelcol)
if [ "$es_backend" = zinc ]; then need+=(zincsearch); else need+=(mock-es); fi
for t in "${need[@]}"; do
  [ -x "$tools/$t" ] || { echo "missing $tools/$t: run make tools" >&2; exit 1; }
done
"$tools/otelcol" components 2>/dev/null | grep -q elasticsearch ||
  { echo "$tools/otelcol has no elasticsearch exporter: bash test/tools/otelcol.sh" >&2; exit 1; }
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

# Loki as in bench/sinks-e2e.sh; structured metadata on (OTLP ingestion
# stores resource and log attributes there).
l_http=$(port); l_grpc=$(port); l_gossip=$(port)
cat >"$dir/loki.yaml" <<YAML
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
YAML
"$tools/loki" -config.file="$dir/loki.yaml" >"$dir/loki.log" 2>&1 &
pids+=($!)

e_port=$(port)
if [ "$es_backend" = zinc ]; then
  export ZINC_PASSWORD=meshtrail-bench
  ZINC_SERVER_ADDRESS=127.0.0.1 ZINC_SERVER_PORT=$e_port ZINC_DATA_PATH="$dir/zinc" \
    ZINC_FIRST_ADMIN_USER=admin ZINC_FIRST_ADMIN_PASSWORD=$ZINC_PASSWORD \
    ZINC_TELEMETRY=false ZINC_SENTRY=false GIN_MODE=release "$tools/zincsearch" >"$dir/es.log" 2>&1 &
  pids+=($!)
  es_url=http://127.0.0.1:$e_port/es
  mt_auth='auth: {username: admin, password_env: ZINC_PASSWORD}'
  oc_auth="user: admin
    password: $ZINC_PASSWORD"
  wait_http "http://127.0.0.1:$e_port/healthz" zincsearch
else
  "$tools/mock-es" -addr "127.0.0.1:$e_port" >"$dir/es.log" 2>&1 &
  pids+=($!)
  es_url=http://127.0.0.1:$e_port
  mt_auth='' oc_auth=''
  for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/"$e_port") 2>/dev/null && break; sleep 0.2; done
fi
wait_http "http://127.0.0.1:$l_http/ready" loki

# meshtrail: the queue of bench/sinks-e2e.sh (memory, block when full).
queue='queue: {memory: {records: 20000}, overflow: {policy: block, block_timeout: 10m}}'
mt_es="  elasticsearch:
    enabled: true
    url: $es_url
    index: bench-{date}
    $mt_auth
    $queue"
mt_loki="  loki:
    enabled: true
    url: http://127.0.0.1:$l_http/loki/api/v1/push
    $queue"
# The Collector: defaults of each component, as a user starts with.
oc_es="  elasticsearch:
    endpoint: $es_url
    logs_index: bench-peer
    $oc_auth"
oc_loki="  otlphttp:
    endpoint: http://127.0.0.1:$l_http/otlp"
peer() { # exporters-yaml exporter-names
  cat <<YAML
receivers:
  envoyals: {endpoint: RECEIVER_ENDPOINT}
processors:
  batch: {}
exporters:
$1
service:
  telemetry:
    logs: {level: warn}
    metrics:
      level: normal
      readers:
        - pull: {exporter: {prometheus: {host: METRICS_HOST, port: METRICS_PORT}}}
  pipelines:
    logs: {receivers: [envoyals], processors: [batch], exporters: [$2]}
YAML
}
printf 'sinks:\n%s\n' "$mt_es" >"$dir/mt-es.yaml"
printf 'sinks:\n%s\n' "$mt_loki" >"$dir/mt-loki.yaml"
printf 'sinks:\n%s\n%s\n' "$mt_es" "$mt_loki" >"$dir/mt-both.yaml"
peer "$oc_es" elasticsearch >"$dir/oc-es.yaml"
peer "$oc_loki" otlphttp >"$dir/oc-loki.yaml"
peer "$oc_es
$oc_loki" "elasticsearch, otlphttp" >"$dir/oc-both.yaml"

echo "# nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(date -u +%FT%TZ); load average $(cut -d' ' -f1-3 /proc/loadavg); ES backend $es_backend; commit $(git rev-parse --short HEAD)"
for p in $pairings; do
  echo
  echo "# $p: bin/alsbench -runs $runs -entries $entries -batch-bytes $batch_bytes -config mt-$p.yaml -wait-sinks -peer-config oc-$p.yaml"
  sed 's/^/#   meshtrail: /' "$dir/mt-$p.yaml"
  sed 's/^/#   otelcol:   /' "$dir/oc-$p.yaml"
  bin/alsbench -runs "$runs" -entries "$entries" -batch-bytes "$batch_bytes" -config "$dir/mt-$p.yaml" -wait-sinks \
    -otelcol "$tools/otelcol" -peer-config "$dir/oc-$p.yaml"
done
echo "# load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
