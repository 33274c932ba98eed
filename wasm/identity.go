package main

import (
	"encoding/base64"
	"strings"

	"github.com/meshtrail/meshtrail/peermeta"
)

// workload is one side of a request as Istio's labels describe it.
type workload struct {
	name, namespace, app, version  string
	canonicalService, canonicalRev string
	cluster, principal             string
}

// localWorkload reads the proxy's own identity from the node metadata
// Istio's injector puts in the bootstrap (WORKLOAD_NAME, NAMESPACE,
// CLUSTER_ID, LABELS). It runs once at plugin start.
func localWorkload(h envoyHost) workload {
	md := func(k ...string) string {
		return h.propertyString(append([]string{"node", "metadata"}, k...))
	}
	w := workload{
		name:      md("WORKLOAD_NAME"),
		namespace: md("NAMESPACE"),
		cluster:   md("CLUSTER_ID"),
		app:       md("LABELS", "app"),
		version:   md("LABELS", "version"),
	}
	w.canonicalService = peermeta.CanonicalService(md("LABELS", peermeta.LabelCanonicalName), md("LABELS", "app.kubernetes.io/name"), w.app, w.name)
	w.canonicalRev = peermeta.CanonicalRevision(md("LABELS", peermeta.LabelCanonicalRevision), md("LABELS", "app.kubernetes.io/version"), w.version)
	return w
}

// Header Istio's HTTP metadata exchange sends: the peer's node metadata as
// a base64 serialized google.protobuf.Struct.
const headerPeerMetadata = "x-envoy-peer-metadata"

// peerCache remembers decoded peer metadata by header value: a proxy talks
// to few peers, and decoding per request would allocate.
type peerCache struct {
	m   map[string]workload
	max int
}

func newPeerCache(max int) *peerCache { return &peerCache{m: make(map[string]workload), max: max} }

// decode returns the workload in an x-envoy-peer-metadata value.
func (c *peerCache) decode(v string) (workload, bool) {
	if w, ok := c.m[v]; ok {
		return w, true
	}
	w, ok := decodePeerMetadata(v)
	if !ok {
		return w, false
	}
	if len(c.m) >= c.max {
		// Bounded: forget everything rather than track recency.
		clear(c.m)
	}
	c.m[v] = w
	return w, true
}

func decodePeerMetadata(v string) (workload, bool) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
	if err != nil {
		return workload{}, false
	}
	pw, ok := peermeta.Decode(raw, func(b []byte) string { return string(b) })
	if !ok {
		return workload{}, false
	}
	w := workload{name: pw.Name, namespace: pw.Namespace, cluster: pw.Cluster, app: pw.App, version: pw.Version}
	w.canonicalService, w.canonicalRev = pw.Canonical()
	return w, true
}

// spiffeNamespace returns NS from spiffe://<trust-domain>/ns/NS/sa/SA.
func spiffeNamespace(principal string) string {
	i := strings.Index(principal, "/ns/")
	if !strings.HasPrefix(principal, "spiffe://") || i < 0 {
		return ""
	}
	ns := principal[i+len("/ns/"):]
	if j := strings.IndexByte(ns, '/'); j >= 0 {
		ns = ns[:j]
	}
	return ns
}
