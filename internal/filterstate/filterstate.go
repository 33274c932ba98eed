// Package filterstate is the contract between the meshtrail Wasm filter and
// the ALS receiver: the filter-state keys the filter writes with
// proxywasm.SetProperty and the receiver reads from Envoy's
// filter_state_objects_to_log. Envoy stores a Wasm filter's property NAME
// under WasmPrefix+NAME and sends it as Any(google.protobuf.BytesValue).
package filterstate

import "strings"

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
