#!/usr/bin/env bash
# Installs staticcheck (honnef.co/go/tools), the linter `make lint` runs,
# into $TOOLS_DIR/staticcheck-<version>/. About a minute cold.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VERSION=v0.8.2
cached staticcheck "$VERSION" staticcheck && exit 0
log "staticcheck $VERSION: building"
GOBIN="$TOOLS_DIR/staticcheck-$VERSION" go install "honnef.co/go/tools/cmd/staticcheck@$VERSION"
publish staticcheck "$VERSION" staticcheck
