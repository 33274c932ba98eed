#!/usr/bin/env bash
# Builds kube-apiserver (for the injector's end-to-end test: a real API
# server calls the webhook) from the Go module proxy into
# $TOOLS_DIR/kube-apiserver-$VERSION/kube-apiserver.
#
# k8s.io/kubernetes points its 31 staging modules (k8s.io/api, client-go,
# apiserver, ...) at ./staging/ with replace directives, which the module
# proxy cannot serve. The throwaway module below replaces each of them with
# its published v0.X.Y twin, generated from kubernetes' own go.mod so the
# list never drifts from the pinned version. 4–9 min cold on 2 cores.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VERSION=1.34.4
cached kube-apiserver "$VERSION" kube-apiserver && exit 0

staging="v0.${VERSION#1.}"   # 1.34.4 -> v0.34.4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "kube-apiserver $VERSION: building in $work (4-9 min cold)"
cd "$work"
k8s_gomod=$(go mod download -json "k8s.io/kubernetes@v$VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
[ -f "$k8s_gomod" ] || { log "kube-apiserver: cannot read k8s.io/kubernetes@v$VERSION go.mod"; exit 1; }
replaces=$(grep -E '^[[:space:]]*k8s\.io/[^ ]+ => \./staging/' "$k8s_gomod" | awk -v v="$staging" '{print "\t" $1 " => " $1 " " v}')
n=$(printf '%s\n' "$replaces" | grep -c '=>')
log "kube-apiserver $VERSION: $n staging replaces -> $staging"
{
  echo "module meshtrail.tools/kube-apiserver"
  echo
  echo "go 1.24"
  echo
  echo "require k8s.io/kubernetes v$VERSION"
  echo
  echo "replace ("
  printf '%s\n' "$replaces"
  echo ")"
} > go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
go get "k8s.io/kubernetes/cmd/kube-apiserver@v$VERSION"
mkdir -p "$TOOLS_DIR/kube-apiserver-$VERSION"
go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$VERSION" \
  -o "$TOOLS_DIR/kube-apiserver-$VERSION/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$TOOLS_DIR/kube-apiserver-$VERSION/kube-apiserver.tmp" "$TOOLS_DIR/kube-apiserver-$VERSION/kube-apiserver"
publish kube-apiserver "$VERSION" kube-apiserver
