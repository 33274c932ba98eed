#!/usr/bin/env bash
# Prepares, offline, what test/chart validates the rendered chart against:
# kubeconform's strict JSON schemas for Kubernetes (from the OpenAPI document
# k8s.io/kubernetes ships) and for the CRDs the chart can render (Istio's from
# istio.io/api, cert-manager's, prometheus-operator's), plus those CRDs'
# manifests (crd-manifests/), which the test installs into the real
# kube-apiserver before applying the chart. Under a minute once the Go
# modules are downloaded (k8s.io/kubernetes is shared with kube-apiserver.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
K8S=v1.34.4 ISTIO=v1.28.0 CERTMANAGER=v1.19.1 PROMOP=v0.85.0
# r1: the converter's revision (test/tools/kubeschemas); bump when it changes.
VERSION="k8s$K8S-istio$ISTIO-cm$CERTMANAGER-po$PROMOP-r1"
cached kube-schemas "$VERSION" kube-schemas && exit 0

dir_of() { (cd "$repo" && GOFLAGS=-mod=mod go mod download -json "$1@$2") | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'; }
k8s=$(dir_of k8s.io/kubernetes "$K8S")
istio=$(dir_of istio.io/api "$ISTIO")
cm=$(dir_of github.com/cert-manager/cert-manager "$CERTMANAGER")
po=$(dir_of github.com/prometheus-operator/prometheus-operator "$PROMOP")
for d in "$k8s" "$istio" "$cm" "$po"; do [ -d "$d" ] || { log "kube-schemas: a module did not download"; exit 1; }; done

out="$TOOLS_DIR/kube-schemas-$VERSION"
tmp="$out.tmp"
rm -rf "$tmp" && mkdir -p "$tmp/kube-schemas/crd-manifests"
crds=("$istio/kubernetes/customresourcedefinitions.gen.yaml"
  "$cm/deploy/crds/cert-manager.io_certificates.yaml" "$cm/deploy/crds/cert-manager.io_issuers.yaml"
  "$po/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"
  "$po/example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml")
for f in "${crds[@]}"; do cp "$f" "$tmp/kube-schemas/crd-manifests/"; done
chmod -R u+w "$tmp"
(cd "$repo" && go run ./test/tools/kubeschemas -swagger "$k8s/api/openapi-spec/swagger.json" -out "$tmp/kube-schemas" "${crds[@]}")
rm -rf "$out" && mv "$tmp" "$out"
publish kube-schemas "$VERSION" kube-schemas
