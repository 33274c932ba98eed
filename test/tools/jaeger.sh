#!/usr/bin/env bash
# Builds Jaeger v2 (the trace sinks' end-to-end receiver: OTLP gRPC/HTTP and
# Zipkin in, /api/traces/{id} out) into $TOOLS_DIR/jaeger-<version>/jaeger.
# Module tag v1.76.0 of github.com/jaegertracing/jaeger is the v2 binary
# (cmd/jaeger, Jaeger 2.13). Its go.mod has a replace directive, so
# `go install` refuses it: build from a throwaway module that copies the
# replace lines (../shared/RECIPES.md). About 6 minutes cold on 2 cores.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MODULE=github.com/jaegertracing/jaeger
VERSION=v1.76.0
cached jaeger "$VERSION" jaeger && exit 0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "jaeger $VERSION: building in $work (about 6 minutes cold)"
cd "$work"
gomod=$(go mod download -json "$MODULE@$VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
{
  printf 'module meshtrail.tools/jaeger\n\ngo 1.25\n\nrequire %s %s\n\n' "$MODULE" "$VERSION"
  # Copy replace/exclude lines (single-line and block forms), minus local paths.
  awk '/^(replace|exclude) \(/{blk=$1; next} blk && /^\)/{blk=""; next}
       blk {print blk, $0; next} /^(replace|exclude) /{print}' "$gomod" | grep -v '=> *\.' || true
} > go.mod
go get "$MODULE/cmd/jaeger@$VERSION"
mkdir -p "$TOOLS_DIR/jaeger-$VERSION"
go build -trimpath -ldflags "-s -w" -o "$TOOLS_DIR/jaeger-$VERSION/jaeger.tmp" "$MODULE/cmd/jaeger"
mv "$TOOLS_DIR/jaeger-$VERSION/jaeger.tmp" "$TOOLS_DIR/jaeger-$VERSION/jaeger"
publish jaeger "$VERSION" jaeger
