#!/usr/bin/env bash
# Builds Loki (the Loki sink's end-to-end receiver: push API in, LogQL
# query_range out) into $TOOLS_DIR/loki-<version>/loki. Loki's go.mod has
# replace directives, so build from a throwaway module copying them, minus
# `=> ./pkg/push` (the published pkg/push module version is used instead).
# About 10 minutes and 2.8 GB peak cold on 2 cores.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MODULE=github.com/grafana/loki/v3
VERSION=v3.7.8
cached loki "$VERSION" loki && exit 0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "loki $VERSION: building in $work (about 10 minutes cold)"
cd "$work"
gomod=$(go mod download -json "$MODULE@$VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
{
  printf 'module meshtrail.tools/loki\n\ngo 1.25\n\nrequire %s %s\n\n' "$MODULE" "$VERSION"
  awk '/^(replace|exclude) \(/{blk=$1; next} blk && /^\)/{blk=""; next}
       blk {print blk, $0; next} /^(replace|exclude) /{print}' "$gomod" | grep -v '=> *\.' || true
} > go.mod
go get "$MODULE/cmd/loki@$VERSION"
mkdir -p "$TOOLS_DIR/loki-$VERSION"
go build -trimpath -ldflags "-s -w" -o "$TOOLS_DIR/loki-$VERSION/loki.tmp" "$MODULE/cmd/loki"
mv "$TOOLS_DIR/loki-$VERSION/loki.tmp" "$TOOLS_DIR/loki-$VERSION/loki"
publish loki "$VERSION" loki
