package main

import "unsafe"

// Filter state properties the filter writes. Envoy stores
// proxywasm.SetProperty([]string{name}) under "wasm.<name>"; listed in
// HttpGrpcAccessLogConfig.common_config.filter_state_objects_to_log they
// reach the ALS receiver as Any(google.protobuf.BytesValue). The receiver
// (package als) decodes exactly these names: keep them in step.
var (
	propTraceID       = mkPath("meshtrail_trace_id")       // 32 lowercase hex
	propSpanID        = mkPath("meshtrail_span_id")        // 16 hex: the span id sent upstream
	propParentSpanID  = mkPath("meshtrail_parent_span_id") // 16 hex: the inbound span; unset when the trace started here
	propSampled       = mkPath("meshtrail_sampled")        // "1" or "0"
	propPeerPrincipal = mkPath("meshtrail_peer_principal")
	propPeerWorkload  = mkPath("meshtrail_peer_workload")
	propPeerNamespace = mkPath("meshtrail_peer_namespace")
	propPeerService   = mkPath("meshtrail_peer_canonical_service")
)

// Values of meshtrail_sampled. Never written to: a host may keep the slice.
var (
	sampledYes = []byte{'1'}
	sampledNo  = []byte{'0'}
)

// writeTraceAttributes stores the trace ids for the access log, from the
// request's rendered trace text (never rewritten afterwards: a host may
// keep the slice it was given, as proxytest does).
func writeTraceAttributes(txt traceText, sampled, started bool) error {
	if err := setProperty(&propTraceID, txt.traceIDHex()); err != nil {
		return err
	}
	if err := setProperty(&propSpanID, txt.spanIDHex()); err != nil {
		return err
	}
	if !started && txt.hasParent() {
		if err := setProperty(&propParentSpanID, txt.parentHex()); err != nil {
			return err
		}
	}
	v := sampledNo
	if sampled {
		v = sampledYes
	}
	return setProperty(&propSampled, v)
}

// writePeerAttributes stores what is known of the peer. Empty values are
// not written: Envoy's SetProperty needs a value, and absence says unknown.
func writePeerAttributes(w *workload) error {
	if err := setNonEmpty(&propPeerPrincipal, w.principal); err != nil {
		return err
	}
	if err := setNonEmpty(&propPeerWorkload, w.name); err != nil {
		return err
	}
	if err := setNonEmpty(&propPeerNamespace, w.namespace); err != nil {
		return err
	}
	return setNonEmpty(&propPeerService, w.canonicalService)
}

// setNonEmpty writes a configured header or attribute when it has a value.
// v is immutable (a Go string), so its bytes are passed as they are.
func setNonEmpty(path *propPath, v string) error {
	if v == "" {
		return nil
	}
	return setProperty(path, unsafe.Slice(unsafe.StringData(v), len(v)))
}

const hexDigits = "0123456789abcdef"

func appendHexBytes(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}
