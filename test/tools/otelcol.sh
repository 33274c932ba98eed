#!/usr/bin/env bash
# Builds the OpenTelemetry Collector the end-to-end tests use (receivers:
# otlp, fluentforward, zipkin, envoyals, filelog; exporters: file, debug,
# prometheus, elasticsearch, otlphttp) with the collector builder (ocb) from tools/otelcol/manifest.yaml,
# into $TOOLS_DIR/otelcol-<version>-<manifest hash>/otelcol. The manifest
# hash is part of the cache key so adding a component rebuilds it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VERSION=0.139.0
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
manifest="$here/otelcol/manifest.yaml"
key="$VERSION-$(sha256sum "$manifest" | cut -c1-12)"
cached otelcol "$key" otelcol && exit 0

# The builder itself (ocb), cached by version.
ocb_dir="$TOOLS_DIR/ocb-$VERSION"
if [ ! -x "$ocb_dir/builder" ]; then
  log "ocb $VERSION: go install (about a minute cold)"
  GOBIN="$ocb_dir" go install "go.opentelemetry.io/collector/cmd/builder@v$VERSION"
fi

# The elasticsearch exporter's Elastic modules (go-docappender, ...) are not
# in the checksum database this machine's proxy answers for, like
# OpenTelemetry's own (lib.sh).
export GONOSUMDB="$GONOSUMDB,github.com/elastic"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out="$TOOLS_DIR/otelcol-$key"
log "otelcol $key: building in $work (about 4 minutes cold)"
sed "s#^  output_path:.*#  output_path: $work/dist#" "$manifest" > "$work/manifest.yaml"
# ocb runs `go mod tidy` and `go build` in output_path; GOFLAGS from lib.sh
# carries -trimpath and CGO_ENABLED=0, so warm rebuilds hit the build cache.
"$ocb_dir/builder" --config="$work/manifest.yaml"
mkdir -p "$out"
mv "$work/dist/otelcol" "$out/otelcol"
publish otelcol "$key" otelcol
