#!/usr/bin/env bash
# Builds kubeconform (validates every object the chart renders against the
# Kubernetes and Istio schemas of test/tools/kube-schemas.sh) into
# $TOOLS_DIR/kubeconform-$VERSION/kubeconform. Under a minute cold.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VERSION=v0.8.0
cached kubeconform "$VERSION" kubeconform && exit 0
log "kubeconform $VERSION: go install"
mkdir -p "$TOOLS_DIR/kubeconform-$VERSION"
GOBIN="$TOOLS_DIR/kubeconform-$VERSION" go install -ldflags "-s -w" "github.com/yannh/kubeconform/cmd/kubeconform@$VERSION"
publish kubeconform "$VERSION" kubeconform
