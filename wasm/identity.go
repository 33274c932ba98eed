package main

import (
	"encoding/base64"
	"encoding/binary"
	"strings"
)

// workload is one side of a request as Istio's labels describe it.
type workload struct {
	name, namespace, app, version  string
	canonicalService, canonicalRev string
	cluster, principal             string
}

// Istio's pod labels for the canonical service and revision.
const (
	labelCanonicalName     = "service.istio.io/canonical-name"
	labelCanonicalRevision = "service.istio.io/canonical-revision"
)

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
	w.canonicalService = firstNonEmpty(md("LABELS", labelCanonicalName), md("LABELS", "app.kubernetes.io/name"), w.app, w.name)
	w.canonicalRev = firstNonEmpty(md("LABELS", labelCanonicalRevision), md("LABELS", "app.kubernetes.io/version"), w.version, "latest")
	return w
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
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
	fields, ok := structStrings(raw, true)
	if !ok {
		return workload{}, false
	}
	w := workload{
		name:      fields["WORKLOAD_NAME"],
		namespace: fields["NAMESPACE"],
		cluster:   fields["CLUSTER_ID"],
		app:       fields["LABELS.app"],
		version:   fields["LABELS.version"],
	}
	w.canonicalService = firstNonEmpty(fields["LABELS."+labelCanonicalName], fields["LABELS.app.kubernetes.io/name"], w.app, w.name)
	w.canonicalRev = firstNonEmpty(fields["LABELS."+labelCanonicalRevision], fields["LABELS.app.kubernetes.io/version"], w.version, "latest")
	return w, true
}

// structStrings reads the string values of a serialized
// google.protobuf.Struct, and (when nested) those of the LABELS struct as
// "LABELS.<key>". It is a minimal protobuf reader: pulling in the protobuf
// runtime would double the size of the .wasm.
func structStrings(b []byte, nested bool) (map[string]string, bool) {
	out := map[string]string{}
	for len(b) > 0 {
		num, typ, n := protoTag(b)
		if n <= 0 {
			return nil, false
		}
		b = b[n:]
		if num != 1 || typ != 2 { // Struct.fields
			if n = protoSkip(b, typ); n < 0 {
				return nil, false
			}
			b = b[n:]
			continue
		}
		entry, rest, ok := protoBytes(b)
		if !ok {
			return nil, false
		}
		b = rest
		key, value, ok := mapEntry(entry)
		if !ok {
			return nil, false
		}
		s, sub, ok := valueString(value)
		if !ok {
			return nil, false
		}
		switch {
		case sub != nil && nested && key == "LABELS":
			labels, ok := structStrings(sub, false)
			if !ok {
				return nil, false
			}
			for k, v := range labels {
				out["LABELS."+k] = v
			}
		case sub == nil:
			out[key] = s
		}
	}
	return out, true
}

// mapEntry splits a map<string, Value> entry.
func mapEntry(b []byte) (key string, value []byte, ok bool) {
	for len(b) > 0 {
		num, typ, n := protoTag(b)
		if n <= 0 {
			return "", nil, false
		}
		b = b[n:]
		if typ != 2 {
			if n = protoSkip(b, typ); n < 0 {
				return "", nil, false
			}
			b = b[n:]
			continue
		}
		v, rest, ok := protoBytes(b)
		if !ok {
			return "", nil, false
		}
		b = rest
		switch num {
		case 1:
			key = string(v)
		case 2:
			value = v
		}
	}
	return key, value, true
}

// valueString returns a Value's string_value, or its struct_value bytes.
func valueString(b []byte) (s string, sub []byte, ok bool) {
	for len(b) > 0 {
		num, typ, n := protoTag(b)
		if n <= 0 {
			return "", nil, false
		}
		b = b[n:]
		if typ != 2 {
			if n = protoSkip(b, typ); n < 0 {
				return "", nil, false
			}
			b = b[n:]
			continue
		}
		v, rest, ok := protoBytes(b)
		if !ok {
			return "", nil, false
		}
		b = rest
		switch num {
		case 3:
			s = string(v)
		case 5:
			sub = v
		}
	}
	return s, sub, true
}

func protoTag(b []byte) (num uint64, typ uint64, n int) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, n
	}
	return v >> 3, v & 7, n
}

func protoBytes(b []byte) (v, rest []byte, ok bool) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return nil, nil, false
	}
	return b[n : n+int(l)], b[n+int(l):], true
}

// protoSkip returns how many bytes a field of wire type typ takes, or -1.
func protoSkip(b []byte, typ uint64) int {
	switch typ {
	case 0:
		_, n := binary.Uvarint(b)
		if n <= 0 {
			return -1
		}
		return n
	case 1:
		if len(b) < 8 {
			return -1
		}
		return 8
	case 2:
		_, rest, ok := protoBytes(b)
		if !ok {
			return -1
		}
		return len(b) - len(rest)
	case 5:
		if len(b) < 4 {
			return -1
		}
		return 4
	}
	return -1
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
