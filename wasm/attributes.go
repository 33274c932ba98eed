package main

import (
	"unsafe"

	"github.com/meshtrail/meshtrail/internal/filterstate"
)

// Filter state properties the filter writes (package filterstate is the
// contract with the ALS receiver).
var (
	propTraceID       = mkPath(filterstate.TraceID)
	propSpanID        = mkPath(filterstate.SpanID)
	propParentSpanID  = mkPath(filterstate.ParentSpanID)
	propSampled       = mkPath(filterstate.Sampled)
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
