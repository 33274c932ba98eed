package main

import (
	"encoding/base64"
	"encoding/binary"
	"strings"

	"github.com/meshtrail/meshtrail/internal/peermeta"
)

// workload is one side of a request as Istio's labels describe it.
type workload struct {
	name, namespace, app, version  string
	canonicalService, canonicalRev string
	cluster, principal             string
}

// localWorkload reads the proxy's own identity from the node metadata
// Istio's injector puts in the bootstrap (WORKLOAD_NAME, NAMESPACE,
// CLUSTER_ID, LABELS): xds.node.metadata, or node.metadata where Envoy
// serves only that name. It runs once at plugin start.
func localWorkload() workload {
	node := renamedAttr{names: attrNode}
	md := func(k ...string) string {
		return node.readString(append([]string{"metadata"}, k...)...)
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

// Istio's peer_metadata filter (the HTTP metadata exchange of current
// Istio) runs before this filter, consumes the x-envoy-peer-metadata
// request header and stores the peer as filter state downstream_peer (on
// the source side upstream_peer, set only after this filter's response
// callback, whose response header is still there): a CelState of type
// google.protobuf.Struct holding the peer object's keys (workload,
// namespace, cluster, service, revision, app, version, name, type,
// labels; istio/proxy extensions/common/metadata_object.cc). Envoy's
// ["filter_state", key] property evaluates a Protobuf CelState as a CEL
// value (the Any unpacked, the Struct a map: CelState::exprValue with
// last=false in FilterStateWrapper) and serializes a map as Proxy-Wasm
// pairs (count, sizes, NUL-terminated keys and values; nested maps
// serialized the same way).
var pathDownstreamPeer = mkPath("filter_state", "downstream_peer")

// decodeFilterState returns the workload in a downstream_peer value,
// cached by value like the header's.
func (c *peerCache) decodeFilterState(b []byte) (workload, bool) {
	if w, ok := c.m[string(b)]; ok {
		return w, true
	}
	w, ok := decodePeerPairs(b)
	if !ok {
		// The Struct's own bytes, should a host hand them out as they
		// are stored.
		pw, ok2 := peermeta.Decode(b, func(b []byte) string { return string(b) })
		if !ok2 {
			return workload{}, false
		}
		w = workload{name: pw.Name, namespace: pw.Namespace, cluster: pw.Cluster, app: pw.App, version: pw.Version}
		w.canonicalService, w.canonicalRev = pw.Canonical()
	}
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[string(b)] = w
	return w, true
}

// decodePeerPairs reads the peer object's keys from their Proxy-Wasm
// pairs serialization; false when b is not one or names no workload.
func decodePeerPairs(b []byte) (workload, bool) {
	if len(b) < 4 {
		return workload{}, false
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n > (len(b)-4)/8 {
		return workload{}, false
	}
	data := 4 + 8*n
	var w workload
	var service, revision string
	for i := 0; i < n; i++ {
		ks := int(binary.LittleEndian.Uint32(b[4+8*i:]))
		vs := int(binary.LittleEndian.Uint32(b[8+8*i:]))
		if ks < 0 || vs < 0 || data+ks+1+vs+1 > len(b) || b[data+ks] != 0 || b[data+ks+1+vs] != 0 {
			return workload{}, false
		}
		k, v := string(b[data:data+ks]), string(b[data+ks+1:data+ks+1+vs])
		data += ks + 1 + vs + 1
		switch k {
		case "workload":
			w.name = v
		case "namespace":
			w.namespace = v
		case "cluster":
			w.cluster = v
		case "service":
			service = v
		case "revision":
			revision = v
		case "app":
			w.app = v
		case "version":
			w.version = v
		}
	}
	if data != len(b) || (w.name == "" && w.namespace == "" && service == "") {
		return workload{}, false
	}
	w.canonicalService = peermeta.CanonicalService(service, "", w.app, w.name)
	w.canonicalRev = peermeta.CanonicalRevision(revision, "", w.version)
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
