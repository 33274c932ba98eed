#!/usr/bin/env bash
# Builds zincsearch, the Elasticsearch-compatible store the Elasticsearch
# sink's end-to-end test writes to (/es/_bulk) and searches
# (/es/<index>/_search); real Elasticsearch/OpenSearch cannot be had here.
# Built from a copy of the module: its web UI is embedded from web/dist,
# which the module zip lacks, so a stub index.html stands in. zincsearch
# v0.4.10 needs an older toolchain (GOTOOLCHAIN=go1.21.13, fetched from the
# module proxy). About 2 minutes cold.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MODULE=github.com/zincsearch/zincsearch
VERSION=v0.4.10
cached zincsearch "$VERSION" zincsearch && exit 0

work=$(mktemp -d)
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
log "zincsearch $VERSION: building in $work (about 2 minutes cold)"
dir=$(go mod download -json "$MODULE@$VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"
mkdir -p "$work/src/web/dist"
echo '<!doctype html><title>zincsearch</title>' > "$work/src/web/dist/index.html"
cd "$work/src"
mkdir -p "$TOOLS_DIR/zincsearch-$VERSION"
GOTOOLCHAIN=go1.21.13 GOFLAGS="-trimpath -mod=mod" go build -ldflags "-s -w" \
  -o "$TOOLS_DIR/zincsearch-$VERSION/zincsearch.tmp" ./cmd/zincsearch
mv "$TOOLS_DIR/zincsearch-$VERSION/zincsearch.tmp" "$TOOLS_DIR/zincsearch-$VERSION/zincsearch"
publish zincsearch "$VERSION" zincsearch
