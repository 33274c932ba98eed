package als

import (
	"github.com/meshtrail/meshtrail/internal/filterstate"
	"github.com/meshtrail/meshtrail/internal/peermeta"
	"github.com/meshtrail/meshtrail/internal/record"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Filter state keys the meshtrail Wasm filter writes, as Envoy logs them
// (package filterstate is the contract).
const (
	fsTraceID      = filterstate.WasmPrefix + filterstate.TraceID
	fsSpanID       = filterstate.WasmPrefix + filterstate.SpanID
	fsParentSpanID = filterstate.WasmPrefix + filterstate.ParentSpanID
	fsSampled      = filterstate.WasmPrefix + filterstate.Sampled
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
	values                   map[string]string
	trace                    filterTrace
	upstreamPeer             record.Workload
	downstreamPeer           record.Workload
	hasUpstream, hasDownPeer bool
}

// add decodes one filter state object into ds. Wasm filter state
// (CelState) arrives as Any(BytesValue); other objects as StringValue or
// Struct. Istio's peer metadata (upstream_peer, downstream_peer) becomes
// the record's Source or Destination instead of text. An object of another
// type is kept as its type URL so the user sees it was there. It reports
// false when the object could not be decoded.
//
// dec decodes Istio peer metadata (a serialized Struct; the wire decoder
// keeps a cache, since one Envoy logs the same few peers over and over)
// and stores text.
func (ds *decodedState) add(key, typeURL string, value []byte, dec objectDecoder) bool {
	switch typeURL {
	case typeBytesValue, typeStringValue:
		v, ok := wrapperValue(value, dec.text)
		if !ok {
			return false
		}
		ds.set(key, v)
	case typeStruct:
		switch key {
		case fsUpstreamPeer, fsDownstreamPeer, "wasm.upstream_peer", "wasm.downstream_peer":
			w, ok := dec.peer(value)
			if !ok {
				return false
			}
			if key == fsUpstreamPeer || key == "wasm.upstream_peer" {
				ds.upstreamPeer, ds.hasUpstream = w, true
			} else {
				ds.downstreamPeer, ds.hasDownPeer = w, true
			}
			return true
		}
		s := new(structpb.Struct)
		if err := proto.Unmarshal(value, s); err != nil {
			return false
		}
		b, err := protojson.Marshal(s)
		if err != nil {
			return false
		}
		ds.set(key, string(b))
	case filterstate.GRPCStatsType:
		// Envoy's grpc_stats filter (emit_filter_state): kept as the
		// text Envoy renders it in, which the RED metrics read.
		req, resp, ok := grpcStatsObject(value)
		if !ok {
			return false
		}
		ds.set(key, filterstate.FormatGRPCStats(req, resp))
	default:
		ds.set(key, "@type="+typeURL)
	}
	return true
}

// grpcStatsObject reads envoy.extensions.filters.http.grpc_stats.v3.
// FilterObject: request_message_count (1) and response_message_count (2),
// both uint64.
func grpcStatsObject(b []byte) (req, resp uint64, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, false
		}
		b = b[n:]
		if (num == 1 || num == 2) && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return 0, 0, false
			}
			if num == 1 {
				req = v
			} else {
				resp = v
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return 0, 0, false
		}
		b = b[m:]
	}
	return req, resp, true
}

// objectDecoder is what decodedState needs from the wire decoder.
type objectDecoder interface {
	peer(b []byte) (record.Workload, bool)
	text(b []byte) string // the bytes as a string (not validated: the JSON writer repairs)
}

// decodePeer turns serialized Istio peer metadata into a Workload, and
// says whether the result is independent of the Struct's entry order.
func decodePeer(value []byte, str func([]byte) string) (w record.Workload, ok, orderFree bool) {
	pw, ok, orderFree := peermeta.DecodeOrderFree(value, str)
	if !ok {
		return record.Workload{}, false, false
	}
	return record.Workload{
		Name: pw.Name, Namespace: pw.Namespace, CanonicalService: pw.CanonicalService,
		CanonicalRevision: pw.CanonicalRevision, App: pw.App, Version: pw.Version,
		Cluster: pw.Cluster, Principal: pw.Principal, Pod: pw.Pod,
	}, true, orderFree
}

func (ds *decodedState) set(k, v string) {
	if ds.trace.set(k, v) {
		return
	}
	if ds.values == nil {
		ds.values = make(map[string]string, 4)
	}
	ds.values[k] = v
}

// wrapperValue reads field 1 of a BytesValue or StringValue without
// reflection (this runs for every entry that carries filter state).
func wrapperValue(b []byte, text func([]byte) string) (string, bool) {
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
	return text(v), true // a copy: nothing aliases the message buffer
}

// filterTrace is the trace context the meshtrail filter wrote into filter
// state. It stays out of the record's FilterState map when it becomes the
// record's Trace: the same ids twice would cost every record about 230
// bytes and the map its allocations. An invalid one goes back into the
// map, so the user sees what the filter wrote.
type filterTrace struct {
	values  [4]string // in the order of filterTraceKeys
	present uint8     // bit i: filterTraceKeys[i] was logged
}

var filterTraceKeys = [4]string{fsTraceID, fsSpanID, fsParentSpanID, fsSampled}

// set keeps v if k is one of the filter's trace keys.
func (ft *filterTrace) set(k, v string) bool {
	for i, key := range filterTraceKeys {
		if k == key {
			ft.values[i], ft.present = v, ft.present|1<<i
			return true
		}
	}
	return false
}

func (ft *filterTrace) get(i int) (string, bool) {
	return ft.values[i], ft.present&(1<<i) != 0
}

// restoreUnused puts the logged keys that did not become part of tr (an
// invalid value, or a trace taken from elsewhere) back into a FilterState
// map, so the user sees what the filter wrote.
func (ft *filterTrace) restoreUnused(m map[string]string, tr *record.Trace) map[string]string {
	if ft.present == 0 {
		return m
	}
	var used [4]bool // in the order of filterTraceKeys
	if tr.Source == traceFromFilterState {
		used = [4]bool{true, ft.values[1] == tr.SpanID, ft.values[2] == tr.ParentSpanID, tr.Sampled != nil}
	}
	for i, key := range filterTraceKeys {
		v, ok := ft.get(i)
		if !ok || used[i] {
			continue
		}
		if m == nil {
			m = make(map[string]string, 4)
		}
		m[key] = v
	}
	return m
}
