package als

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// The stream identifier (node, log name) arrives once per stream and is
// copied into every record of it, so its fields are bounded here: a client
// that sends a 256 KiB pod name must not make every record 256 KiB. The
// generated code is not used to decode it either: proto3 rejects invalid
// UTF-8 in a string, which would end the stream, and Envoy would reconnect
// with the same identifier in a loop. The decoder reads only the fields the
// receiver keeps, cuts each to its documented size on a UTF-8 boundary and
// repairs invalid UTF-8; every cut and repair is counted by field.

// Identifier field sizes (README.md, "Bad input"). Istio's node id is
// TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.DOMAIN: a pod name is at most 253
// bytes, a namespace 63, a domain 253, so real ids stay well under 1 KiB;
// node metadata values are Kubernetes names (<= 253) or label values
// (<= 63).
const (
	maxNodeIDBytes        = 1024
	maxNodeClusterBytes   = 512
	maxLogNameBytes       = 256
	maxMetadataValueBytes = 256
)

// identifierFields is what the receiver keeps of a stream's identifier,
// each value already cut and valid UTF-8.
type identifierFields struct {
	hasNode              bool // a stream without a node has no workload
	id, cluster, logName string
	metadata             map[string]string // the nodeMetadataKeys present
	labels               map[string]string // the nodeLabelKeys present
}

// nodeMetadataKeys are the node metadata entries read (Istio's
// pkg/model/proxy.go NodeMetadata), nodeLabelKeys those of its LABELS.
var (
	nodeMetadataKeys = []string{"NAME", "NAMESPACE", "WORKLOAD_NAME", "MESH_ID", "NETWORK", "CLUSTER_ID", "SERVICE_ACCOUNT", "TRUST_DOMAIN", "LABELS"}
	nodeLabelKeys    = []string{labelCanonicalName, labelCanonicalRevision, "app", "version", "app.kubernetes.io/name", "app.kubernetes.io/version"}
)

// identifierRepair is one field that was cut or repaired.
type identifierRepair struct {
	field  string // node.id, node.cluster, log_name, node.metadata.KEY, node.metadata.LABELS.KEY
	reason string // too_long or invalid_utf8
}

// Reasons an identifier field is repaired; label values of
// meshtrail_als_identifier_repaired_total.
const (
	repairTooLong     = "too_long"
	repairInvalidUTF8 = "invalid_utf8"
)

var errIdentifier = errors.New("identifier: truncated or malformed protobuf")

// decodeIdentifier decodes a serialized
// StreamAccessLogsMessage.Identifier (als.proto: node 1, log_name 2;
// base.proto Node: id 1, cluster 2, metadata 3). Only a structural error
// fails it; long or invalid text is repaired and reported in repairs.
func decodeIdentifier(b []byte) (f identifierFields, repairs []identifierRepair, err error) {
	text := func(field string, v []byte, limit int) string {
		s, cut, bad := boundedText(v, limit)
		if cut {
			repairs = append(repairs, identifierRepair{field, repairTooLong})
		}
		if bad {
			repairs = append(repairs, identifierRepair{field, repairInvalidUTF8})
		}
		return s
	}
	err = eachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			f.hasNode = true
			return eachField(v, func(num protowire.Number, v []byte) error {
				switch num {
				case 1:
					f.id = text("node.id", v, maxNodeIDBytes)
				case 2:
					f.cluster = text("node.cluster", v, maxNodeClusterBytes)
				case 3:
					return eachStructString(v, nodeMetadataKeys, func(key string, v []byte, nested []byte) error {
						// A key repeated in the map: the last entry wins, as
						// protobuf decodes a map.
						if key == "LABELS" {
							f.labels = nil
							return eachStructString(nested, nodeLabelKeys, func(label string, v []byte, _ []byte) error {
								if f.labels == nil {
									f.labels = map[string]string{}
								}
								f.labels[label] = text("node.metadata.LABELS."+label, v, maxMetadataValueBytes)
								return nil
							})
						}
						if f.metadata == nil {
							f.metadata = map[string]string{}
						}
						f.metadata[key] = text("node.metadata."+key, v, maxMetadataValueBytes)
						return nil
					})
				}
				return nil
			})
		case 2:
			f.logName = text("log_name", v, maxLogNameBytes)
		}
		return nil
	})
	if err != nil {
		return identifierFields{}, nil, fmt.Errorf("%w (%v)", errIdentifier, err)
	}
	return f, repairs, nil
}

// eachField calls fn with each length-delimited field of b; fields of other
// wire types are skipped. A repeated scalar field keeps its last value, as
// protobuf merges it.
func eachField(b []byte, fn func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return protowire.ParseError(m)
			}
			b = b[m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return protowire.ParseError(m)
		}
		b = b[m:]
		if err := fn(num, v); err != nil {
			return err
		}
	}
	return nil
}

// eachStructString walks a google.protobuf.Struct (fields 1: map entries
// of key 1 and Value 2) and calls fn for the entries whose key is in keys:
// with the string_value (Value field 3) or, for "LABELS", the struct_value
// (field 5), nil when the value is of another kind. Other keys are not decoded at all, so a metadata Struct of any
// size or depth costs one walk of its top level.
func eachStructString(b []byte, keys []string, fn func(key string, str, nested []byte) error) error {
	return eachField(b, func(num protowire.Number, entry []byte) error {
		if num != 1 {
			return nil
		}
		var key, value []byte
		if err := eachField(entry, func(num protowire.Number, v []byte) error {
			switch num {
			case 1:
				key = v
			case 2:
				value = v
			}
			return nil
		}); err != nil {
			return err
		}
		k := knownKey(key, keys)
		if k == "" {
			return nil
		}
		var str, nested []byte
		if err := eachField(value, func(num protowire.Number, v []byte) error {
			// A Value is a oneof: the last one set wins.
			switch num {
			case 3:
				str, nested = v, nil
			case 5:
				str, nested = nil, v
			}
			return nil
		}); err != nil {
			return err
		}
		return fn(k, str, nested)
	})
}

// knownKey returns the entry of keys equal to k, or "" (k is not copied:
// only known keys are kept).
func knownKey(k []byte, keys []string) string {
	for _, want := range keys {
		if string(k) == want {
			return want
		}
	}
	return ""
}

// boundedText returns v as valid UTF-8 of at most limit bytes: cut at the
// last character boundary before limit, invalid sequences replaced by
// U+FFFD. It reports whether it cut and whether it replaced.
func boundedText(v []byte, limit int) (s string, cut, invalid bool) {
	if len(v) > limit {
		v, cut = v[:utf8Boundary(v, limit)], true
	}
	if !utf8.Valid(v) {
		// A replacement (3 bytes) can be longer than what it replaces:
		// cut again, now on valid text.
		s = strings.ToValidUTF8(string(v), "\uFFFD")
		if len(s) > limit {
			s, cut = s[:utf8Boundary(s, limit)], true
		}
		return s, cut, true
	}
	return string(v), cut, false
}

// utf8Boundary is the largest n <= limit at which b can be cut without
// splitting a UTF-8 character (the start of b[limit:] is not a
// continuation byte). An invalid sequence is cut like any other bytes.
func utf8Boundary[T string | []byte](b T, limit int) int {
	if limit >= len(b) {
		return len(b)
	}
	n := limit
	// A character is at most 4 bytes: step back over at most 3
	// continuation bytes to the start of the one that crosses limit.
	for i := 0; i < utf8.UTFMax-1 && n > 0 && !utf8.RuneStart(b[n]); i++ {
		n--
	}
	if !utf8.RuneStart(b[n]) {
		return limit // not UTF-8 there anyway: cut where asked
	}
	return n
}
