package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

	"github.com/meshtrail/meshtrail/tracecontext"
)

// Filter state properties the filter writes. Envoy stores
// proxywasm.SetProperty([]string{name}) under "wasm.<name>"; listed in
// HttpGrpcAccessLogConfig.common_config.filter_state_objects_to_log they
// reach the ALS receiver as Any(google.protobuf.BytesValue). The receiver
// (package als) decodes exactly these names: keep them in step.
var (
	propTraceID       = []string{"meshtrail_trace_id"}       // 32 lowercase hex
	propSpanID        = []string{"meshtrail_span_id"}        // 16 hex: the span id sent upstream
	propParentSpanID  = []string{"meshtrail_parent_span_id"} // 16 hex: the inbound span; unset when the trace started here
	propSampled       = []string{"meshtrail_sampled"}        // "1" or "0"
	propPeerPrincipal = []string{"meshtrail_peer_principal"}
	propPeerWorkload  = []string{"meshtrail_peer_workload"}
	propPeerNamespace = []string{"meshtrail_peer_namespace"}
	propPeerService   = []string{"meshtrail_peer_canonical_service"}
)

// writeTraceAttributes stores the trace ids for the access log.
func writeTraceAttributes(c tracecontext.Context, started bool) error {
	// Fresh slices each time: a host may keep the slice it was given
	// (proxytest does), so a reused buffer would rewrite earlier values.
	if err := proxywasm.SetProperty(propTraceID, appendHexBytes(make([]byte, 0, 32), c.TraceID[:])); err != nil {
		return err
	}
	if err := proxywasm.SetProperty(propSpanID, appendHexBytes(make([]byte, 0, 16), c.SpanID[:])); err != nil {
		return err
	}
	if !started && c.ParentSpanID.IsValid() {
		if err := proxywasm.SetProperty(propParentSpanID, appendHexBytes(make([]byte, 0, 16), c.ParentSpanID[:])); err != nil {
			return err
		}
	}
	sampled := []byte{'0'}
	if c.Sampling.Sampled() {
		sampled[0] = '1'
	}
	return proxywasm.SetProperty(propSampled, sampled)
}

// writePeerAttributes stores what is known of the peer. Empty values are
// not written: Envoy's SetProperty needs a value, and absence says unknown.
func writePeerAttributes(w workload) error {
	for _, kv := range [...]struct {
		path  []string
		value string
	}{
		{propPeerPrincipal, w.principal},
		{propPeerWorkload, w.name},
		{propPeerNamespace, w.namespace},
		{propPeerService, w.canonicalService},
	} {
		if kv.value == "" {
			continue
		}
		if err := proxywasm.SetProperty(kv.path, []byte(kv.value)); err != nil {
			return err
		}
	}
	return nil
}

// setNonEmpty writes a configured header or attribute when it has a value.
func setNonEmpty(path []string, v string) error {
	if v == "" {
		return nil
	}
	return proxywasm.SetProperty(path, []byte(v))
}

const hexDigits = "0123456789abcdef"

func appendHexBytes(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}
