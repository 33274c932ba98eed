#!/usr/bin/env bash
# Installs Elastic's mock-es (a _bulk mock that answers create actions with
# 409/429/406 and whole bulks with 413 at configurable rates), which drives
# the Elasticsearch sink's per-item error paths, into
# $TOOLS_DIR/mock-es-<version>/mock-es. About 35 s cold.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MODULE=github.com/elastic/mock-es
VERSION=v0.0.0-20250530054253-8c3b6053f9b6
cached mock-es "$VERSION" mock-es && exit 0
# `go install pkg@version` asks the proxy for the module's version list
# (deprecation check), which this machine's proxy answers 403: build from a
# throwaway module instead.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "mock-es $VERSION: building in $work"
cd "$work"
printf 'module meshtrail.tools/mockes\n\ngo 1.22\n' > go.mod
go get "$MODULE/cmd/mock-es@$VERSION"
mkdir -p "$TOOLS_DIR/mock-es-$VERSION"
go build -trimpath -ldflags "-s -w" -o "$TOOLS_DIR/mock-es-$VERSION/mock-es.tmp" "$MODULE/cmd/mock-es"
mv "$TOOLS_DIR/mock-es-$VERSION/mock-es.tmp" "$TOOLS_DIR/mock-es-$VERSION/mock-es"
publish mock-es "$VERSION" mock-es
