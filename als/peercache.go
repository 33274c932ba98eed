package als

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshtrail/meshtrail/record"
)

// peerCache remembers decoded Istio peer metadata by its serialized bytes.
// One Envoy talks to few peers, and each entry repeats the same Struct, so
// a stream decodes each peer once. It belongs to one stream's goroutine:
// no locking.
type peerCache struct {
	m map[string]record.Workload
}

const peerCacheMax = 512

func (c *peerCache) workload(b []byte) (record.Workload, bool) {
	if w, ok := c.m[string(b)]; ok { // no allocation for the lookup
		return w, true
	}
	w, ok := decodePeerStruct(b)
	if !ok {
		return w, false
	}
	if c.m == nil || len(c.m) >= peerCacheMax {
		c.m = make(map[string]record.Workload, 16)
	}
	c.m[string(b)] = w
	return w, true
}

// decodePeerStruct reads Istio's peer metadata from a serialized
// google.protobuf.Struct without building the generic Struct: only string
// fields and the LABELS sub-struct matter. It accepts both shapes Istio
// logs: the peer object's own keys or the node-metadata form.
func decodePeerStruct(b []byte) (record.Workload, bool) {
	fields := map[string]string{}
	labels := map[string]string{}
	if !walkStruct(b, func(key string, str []byte, sub []byte) bool {
		switch {
		case str != nil:
			fields[key] = string(str)
		case sub != nil && key == "LABELS":
			return walkStruct(sub, func(k string, s []byte, _ []byte) bool {
				if s != nil {
					labels[k] = string(s)
				}
				return true
			})
		}
		return true
	}) {
		return record.Workload{}, false
	}
	if len(fields) == 0 {
		return record.Workload{}, false
	}
	if _, nodeForm := fields["WORKLOAD_NAME"]; nodeForm || fields["NAMESPACE"] != "" {
		return record.Workload{
			Name: fields["WORKLOAD_NAME"], Namespace: fields["NAMESPACE"],
			CanonicalService: labels[labelCanonicalName], CanonicalRevision: labels[labelCanonicalRevision],
			App: labels["app"], Version: labels["version"], Cluster: fields["CLUSTER_ID"], Pod: fields["NAME"],
		}, true
	}
	return record.Workload{
		Name: fields["workload"], Namespace: fields["namespace"], CanonicalService: fields["service"],
		CanonicalRevision: fields["revision"], App: fields["app"], Version: fields["version"],
		Cluster: fields["cluster"], Principal: fields["identity"], Pod: fields["name"],
	}, true
}

// walkStruct calls fn for each entry of a serialized Struct's fields map
// (field 1: map<string, Value>) with the Value's string_value (field 3) or
// struct_value (field 5) bytes.
func walkStruct(b []byte, fn func(key string, str, sub []byte) bool) bool {
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
		var key string
		var str, sub []byte
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
				key = string(v)
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
