// Package filterstate is the contract between the meshtrail Wasm filter and
// the ALS receiver: the filter-state keys the filter writes with
// proxywasm.SetProperty and the receiver reads from Envoy's
// filter_state_objects_to_log. Envoy stores a Wasm filter's property NAME
// under WasmPrefix+NAME and sends it as Any(google.protobuf.BytesValue).
package filterstate

import (
	"strconv"
	"strings"
)

// WasmPrefix is what Envoy puts before a Wasm filter's property names.
const WasmPrefix = "wasm."

// The trace context the filter sent upstream.
const (
	TraceID      = "meshtrail_trace_id"       // 32 lowercase hex
	SpanID       = "meshtrail_span_id"        // 16 hex: the span id sent upstream
	ParentSpanID = "meshtrail_parent_span_id" // 16 hex: the inbound span; unset when the trace started here
	Sampled      = "meshtrail_sampled"        // "1" or "0"
)

// HeaderPrefix starts the names of the headers and attributes the filter
// logs (its access_log.headers and access_log.attributes).
const HeaderPrefix = "meshtrail_h_"

// HeaderKey is the property a header or attribute is logged under:
// HeaderPrefix + the name lowercased with every character outside
// [a-z0-9_] as '_' (x-request-id -> meshtrail_h_x_request_id).
func HeaderKey(name string) string {
	b := []byte(HeaderPrefix + strings.ToLower(name))
	for i := len(HeaderPrefix); i < len(b); i++ {
		if c := b[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// GRPCStats is the key under which Envoy's grpc_stats filter, with
// emit_filter_state, keeps the messages of a gRPC call
// (source/extensions/filters/http/grpc_stats/grpc_stats_filter.h,
// GrpcStatsObject). The access log carries it as Any(GRPCStatsType); its
// text form, as Envoy renders it, is "REQUEST_COUNT,RESPONSE_COUNT". Istio's
// stats plugin reads the same object for istio_request_messages_total and
// istio_response_messages_total.
const (
	GRPCStats     = "envoy.filters.http.grpc_stats"
	GRPCStatsType = "type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterObject"
)

// FormatGRPCStats renders message counts as Envoy's GrpcStatsObject
// serializeAsString does.
func FormatGRPCStats(requests, responses uint64) string {
	return strconv.FormatUint(requests, 10) + "," + strconv.FormatUint(responses, 10)
}

// ParseGRPCStats reads FormatGRPCStats's text; ok is false for anything
// else.
func ParseGRPCStats(s string) (requests, responses uint64, ok bool) {
	a, b, found := strings.Cut(s, ",")
	if !found {
		return 0, 0, false
	}
	requests, err1 := strconv.ParseUint(a, 10, 64)
	responses, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return requests, responses, true
}
