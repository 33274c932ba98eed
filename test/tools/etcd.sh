#!/usr/bin/env bash
# Builds etcd (the kube-apiserver's storage, for the injector's end-to-end
# test) from the Go module proxy into $TOOLS_DIR/etcd-$VERSION/etcd.
# etcd's server module carries replace directives, so `go install` refuses
# it: build from a throwaway module instead (../shared/RECIPES.md).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VERSION=3.6.4
cached etcd "$VERSION" etcd && exit 0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "etcd $VERSION: building in $work (about a minute cold)"
cd "$work"
cat > go.mod <<MOD
module meshtrail.tools/etcd

go 1.24
MOD
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
go get "go.etcd.io/etcd/server/v3@v$VERSION"
mkdir -p "$TOOLS_DIR/etcd-$VERSION"
go build -trimpath -ldflags "-s -w" -o "$TOOLS_DIR/etcd-$VERSION/etcd.tmp" go.etcd.io/etcd/server/v3
mv "$TOOLS_DIR/etcd-$VERSION/etcd.tmp" "$TOOLS_DIR/etcd-$VERSION/etcd"
publish etcd "$VERSION" etcd
