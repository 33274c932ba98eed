// Package peermeta decodes the peer metadata Istio's proxies exchange about
// each other: a serialized google.protobuf.Struct, carried in the
// x-envoy-peer-metadata header (the Wasm filter reads it) and logged as the
// upstream_peer / downstream_peer filter state (the ALS receiver reads
// it). Istio writes it in one of two shapes: the node-metadata form
// (WORKLOAD_NAME, NAMESPACE, CLUSTER_ID, NAME, LABELS{app, version,
// service.istio.io/canonical-*}) or the peer object's own keys (workload,
// namespace, service, revision, app, version, cluster, identity, name).
//
// It has no dependencies: the protobuf runtime would double the size of
// the .wasm.
package peermeta

// Workload is one peer as Istio's telemetry labels describe it. Empty
// fields were not in the metadata.
type Workload struct {
	Name, Namespace                     string
	CanonicalService, CanonicalRevision string // the service.istio.io/canonical-* labels as sent
	App, Version                        string
	Cluster, Principal, Pod             string

	// app.kubernetes.io/name and /version, for Canonical's fallbacks.
	k8sName, k8sVersion string
}

// Canonical returns the canonical service and revision the way Istio
// derives them when the labels are missing: the canonical label, else
// app.kubernetes.io/name (version), else app (version), else the workload
// name (and "latest").
func (w Workload) Canonical() (service, revision string) {
	return CanonicalService(w.CanonicalService, w.k8sName, w.App, w.Name), CanonicalRevision(w.CanonicalRevision, w.k8sVersion, w.Version)
}

// CanonicalService is Istio's canonical service of a workload from its
// labels: the first non-empty of its arguments.
func CanonicalService(canonicalLabel, k8sName, app, workload string) string {
	return firstNonEmpty(canonicalLabel, k8sName, app, workload)
}

// CanonicalRevision is Istio's canonical revision: the first non-empty of
// its arguments, else "latest".
func CanonicalRevision(canonicalLabel, k8sVersion, version string) string {
	return firstNonEmpty(canonicalLabel, k8sVersion, version, "latest")
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// Istio's pod labels for the canonical service and revision.
const (
	LabelCanonicalName     = "service.istio.io/canonical-name"
	LabelCanonicalRevision = "service.istio.io/canonical-revision"
)

// Decode reads a serialized Struct in either shape. str turns bytes into
// strings (an interning function, or one that just copies). It reports
// false for bytes that are not a well-formed Struct or hold no field.
func Decode(b []byte, str func([]byte) string) (Workload, bool) {
	w, ok, _ := DecodeOrderFree(b, str)
	return w, ok
}

// DecodeOrderFree is Decode, and also reports whether the result is the
// same whatever order the Struct's entries come in: no field of the
// Workload was set twice (a repeated key, or both "service" and the
// canonical-name label). Envoy serializes a Struct's map in hash order,
// which varies from one log entry to the next, so a caller that caches
// decoded peers by their set of entries may cache only such results.
func DecodeOrderFree(b []byte, str func([]byte) string) (w Workload, ok, orderFree bool) {
	any := false
	var set uint16
	orderFree = true
	put := func(dst *string, bit uint16, v []byte) {
		if set&bit != 0 {
			orderFree = false
		}
		set |= bit
		*dst = str(v)
	}
	const (
		bName = 1 << iota
		bNamespace
		bService
		bRevision
		bApp
		bVersion
		bCluster
		bPrincipal
		bPod
		bK8sName
		bK8sVersion
		bLabels
	)
	ok = Walk(b, func(key, val, sub []byte) bool {
		any = true
		if sub != nil && (string(key) == "LABELS" || string(key) == "labels") { // node metadata; a WorkloadMetadataObject's extra labels
			if set&bLabels != 0 {
				orderFree = false
			}
			set |= bLabels
			return Walk(sub, func(k, s, _ []byte) bool {
				if s == nil {
					return true
				}
				switch string(k) {
				case LabelCanonicalName:
					put(&w.CanonicalService, bService, s)
				case LabelCanonicalRevision:
					put(&w.CanonicalRevision, bRevision, s)
				case "app":
					put(&w.App, bApp, s)
				case "version":
					put(&w.Version, bVersion, s)
				case "app.kubernetes.io/name":
					put(&w.k8sName, bK8sName, s)
				case "app.kubernetes.io/version":
					put(&w.k8sVersion, bK8sVersion, s)
				}
				return true
			})
		}
		if val == nil {
			return true
		}
		switch string(key) {
		case "workload", "WORKLOAD_NAME":
			put(&w.Name, bName, val)
		case "namespace", "NAMESPACE":
			put(&w.Namespace, bNamespace, val)
		case "service":
			put(&w.CanonicalService, bService, val)
		case "revision":
			put(&w.CanonicalRevision, bRevision, val)
		case "app":
			put(&w.App, bApp, val)
		case "version":
			put(&w.Version, bVersion, val)
		case "cluster", "CLUSTER_ID":
			put(&w.Cluster, bCluster, val)
		case "identity":
			put(&w.Principal, bPrincipal, val)
		case "name", "NAME":
			put(&w.Pod, bPod, val)
		}
		return true
	})
	ok = ok && any
	return w, ok, orderFree && ok
}

// Walk calls fn for each entry of a serialized Struct (field 1,
// map<string, Value>) with the Value's string_value (field 3, non-nil even
// when empty) or its struct_value (field 5). fn returns false to stop.
// Walk reports false for malformed bytes.
func Walk(b []byte, fn func(key, str, sub []byte) bool) bool {
	for len(b) > 0 {
		num, typ, entry, rest, ok := field(b)
		if !ok {
			return false
		}
		b = rest
		if num != 1 || typ != wireBytes {
			continue
		}
		var key, str, sub []byte
		for len(entry) > 0 {
			en, et, v, erest, ok := field(entry)
			if !ok {
				return false
			}
			entry = erest
			if et != wireBytes {
				continue
			}
			switch en {
			case 1:
				key = v
			case 2: // Value
				for len(v) > 0 {
					vn, vt, val, vrest, ok := field(v)
					if !ok {
						return false
					}
					v = vrest
					if vt != wireBytes {
						continue
					}
					switch vn {
					case 3:
						str = val
						if str == nil {
							str = []byte{}
						}
					case 5:
						sub = val
					}
				}
			}
		}
		if !fn(key, str, sub) {
			return false
		}
	}
	return true
}

const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// field reads one protobuf field: its number and wire type, its bytes when
// length-delimited, and what follows it.
func field(b []byte) (num uint64, typ int, val, rest []byte, ok bool) {
	tag, n := uvarint(b)
	if n <= 0 {
		return 0, 0, nil, nil, false
	}
	b = b[n:]
	num, typ = tag>>3, int(tag&7)
	switch typ {
	case wireVarint:
		_, n = uvarint(b)
		if n <= 0 {
			return 0, 0, nil, nil, false
		}
		return num, typ, nil, b[n:], true
	case wireFixed64:
		if len(b) < 8 {
			return 0, 0, nil, nil, false
		}
		return num, typ, nil, b[8:], true
	case wireFixed32:
		if len(b) < 4 {
			return 0, 0, nil, nil, false
		}
		return num, typ, nil, b[4:], true
	case wireBytes:
		l, n := uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return 0, 0, nil, nil, false
		}
		b = b[n:]
		return num, typ, b[:l:l], b[l:], true
	}
	return 0, 0, nil, nil, false // groups are not used by Struct
}

// uvarint decodes a protobuf varint (at most 10 bytes).
func uvarint(b []byte) (uint64, int) {
	var x uint64
	for i := 0; i < len(b) && i < 10; i++ {
		c := b[i]
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return x, i + 1
		}
	}
	return 0, 0
}
