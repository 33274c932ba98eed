#!/usr/bin/env bash
# Builds helm (the chart's lint and template checks, test/chart) from the Go
# module proxy into $TOOLS_DIR/helm-$VERSION/helm. About 5 minutes cold.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VERSION=v3.22.0
cached helm "$VERSION" helm && exit 0
log "helm $VERSION: go install (about 5 minutes cold)"
mkdir -p "$TOOLS_DIR/helm-$VERSION"
GOBIN="$TOOLS_DIR/helm-$VERSION" go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$VERSION" "helm.sh/helm/v3/cmd/helm@$VERSION"
publish helm "$VERSION" helm
