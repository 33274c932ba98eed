package als

import (
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Filter state keys the meshtrail Wasm filter writes (with
// proxywasm.SetProperty; Envoy prefixes "wasm."). The contract is shared
// with wasm/.
const (
	fsTraceID      = "wasm.meshtrail_trace_id"
	fsSpanID       = "wasm.meshtrail_span_id"
	fsParentSpanID = "wasm.meshtrail_parent_span_id"
	fsSampled      = "wasm.meshtrail_sampled"
)

// Istio's peer metadata filter state keys.
const (
	fsUpstreamPeer   = "upstream_peer"
	fsDownstreamPeer = "downstream_peer"
)

const (
	typeBytesValue  = "type.googleapis.com/google.protobuf.BytesValue"
	typeStringValue = "type.googleapis.com/google.protobuf.StringValue"
	typeStruct      = "type.googleapis.com/google.protobuf.Struct"
)

// decodedState is what the receiver takes from one entry's filter state.
type decodedState struct {
	values         map[string]string
	upstreamPeer   *structpb.Struct
	downstreamPeer *structpb.Struct
}

// decodeFilterState turns Envoy's filter_state_objects into text. Wasm
// filter state (CelState) arrives as Any(BytesValue); other objects as
// StringValue or Struct (Istio's peer metadata). An object that cannot be
// decoded is kept as its type URL so the user sees it was there.
func decodeFilterState(objs map[string]*anypb.Any) (decodedState, []string) {
	var ds decodedState
	if len(objs) == 0 {
		return ds, nil
	}
	var bad []string
	ds.values = make(map[string]string, len(objs))
	for k, a := range objs {
		switch a.GetTypeUrl() {
		case typeBytesValue, typeStringValue:
			v, ok := wrapperValue(a.GetValue())
			if !ok {
				bad = append(bad, k)
				continue
			}
			ds.values[k] = v
		case typeStruct:
			s := new(structpb.Struct)
			if err := proto.Unmarshal(a.GetValue(), s); err != nil {
				bad = append(bad, k)
				continue
			}
			switch k {
			case fsUpstreamPeer, "wasm.upstream_peer":
				ds.upstreamPeer = s
			case fsDownstreamPeer, "wasm.downstream_peer":
				ds.downstreamPeer = s
			}
			if b, err := protojson.Marshal(s); err == nil {
				ds.values[k] = string(b)
			}
		default:
			ds.values[k] = "@type=" + a.GetTypeUrl()
		}
	}
	return ds, bad
}

// wrapperValue reads field 1 of a BytesValue or StringValue without
// reflection (this runs for every entry that carries filter state).
func wrapperValue(b []byte) (string, bool) {
	var v []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			val, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return "", false
			}
			v = val
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return "", false
		}
		b = b[m:]
	}
	return strings.Clone(string(v)), true
}
