package als

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshtrail/meshtrail/record"
)

// decodePeerStruct reads Istio's peer metadata from a serialized
// google.protobuf.Struct straight into a Workload, without building the
// generic Struct. It runs for nearly every entry: a cache keyed by the bytes
// would not help, because protobuf serializes a Struct's map in an order
// that varies from one entry to the next. It accepts both shapes Istio logs:
// the peer object's own keys (workload, namespace, service, revision, ...)
// and the node-metadata form (WORKLOAD_NAME, NAMESPACE, LABELS{...}, ...).
// str turns bytes into (interned) strings.
func decodePeerStruct(b []byte, str func([]byte) string) (record.Workload, bool) {
	var w record.Workload
	any := false
	ok := walkStruct(b, func(key, v, sub []byte) bool {
		any = true
		if sub != nil && string(key) == "LABELS" {
			return walkStruct(sub, func(k, s, _ []byte) bool {
				switch string(k) {
				case labelCanonicalName:
					w.CanonicalService = str(s)
				case labelCanonicalRevision:
					w.CanonicalRevision = str(s)
				case "app":
					w.App = str(s)
				case "version":
					w.Version = str(s)
				}
				return true
			})
		}
		if v == nil {
			return true
		}
		switch string(key) {
		case "workload":
			w.Name = str(v)
		case "WORKLOAD_NAME":
			w.Name = str(v)
		case "namespace":
			w.Namespace = str(v)
		case "NAMESPACE":
			w.Namespace = str(v)
		case "service":
			w.CanonicalService = str(v)
		case "revision":
			w.CanonicalRevision = str(v)
		case "app":
			w.App = str(v)
		case "version":
			w.Version = str(v)
		case "cluster", "CLUSTER_ID":
			w.Cluster = str(v)
		case "identity":
			w.Principal = str(v)
		case "name", "NAME":
			w.Pod = str(v)
		}
		return true
	})
	return w, ok && any
}

// walkStruct calls fn for each entry of a serialized Struct's fields map
// (field 1: map<string, Value>) with the Value's string_value (field 3) or
// struct_value (field 5) bytes.
func walkStruct(b []byte, fn func(key, str, sub []byte) bool) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if num != 1 || typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return false
			}
			b = b[m:]
			continue
		}
		entry, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return false
		}
		b = b[m:]
		var key, str, sub []byte
		for len(entry) > 0 {
			en, et, k := protowire.ConsumeTag(entry)
			if k < 0 {
				return false
			}
			entry = entry[k:]
			if et != protowire.BytesType {
				k = protowire.ConsumeFieldValue(en, et, entry)
				if k < 0 {
					return false
				}
				entry = entry[k:]
				continue
			}
			v, k := protowire.ConsumeBytes(entry)
			if k < 0 {
				return false
			}
			entry = entry[k:]
			switch en {
			case 1:
				key = v
			case 2: // Value
				for len(v) > 0 {
					vn, vt, j := protowire.ConsumeTag(v)
					if j < 0 {
						return false
					}
					v = v[j:]
					if vt != protowire.BytesType {
						j = protowire.ConsumeFieldValue(vn, vt, v)
						if j < 0 {
							return false
						}
						v = v[j:]
						continue
					}
					val, j := protowire.ConsumeBytes(v)
					if j < 0 {
						return false
					}
					v = v[j:]
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
