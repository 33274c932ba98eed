package main

import (
	"math/rand/v2"
	"unsafe"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

	"github.com/meshtrail/meshtrail/internal/tracecontext"
)

// traceResult is what this hop propagates: the outbound context (our span
// id, the inbound span as parent) and whether the trace started here.
type traceResult struct {
	out     tracecontext.Context
	started bool
	// invalid lists what was wrong with inbound headers, for counting.
	invalid []error
}

// tracer starts and continues traces. rng is seeded once per plugin from
// the host's entropy; a per-request crypto/rand call would be a host call.
type tracer struct {
	s   *settings
	rng *rand.Rand
}

// continueTrace reads the inbound context from headers and builds the
// outbound one by the rules of each format.
func (t *tracer) continueTrace(h headerList) traceResult {
	in, _, found, errs := tracecontext.Extract(h.values, nil)
	r := traceResult{invalid: errs}
	out := &r.out
	if found {
		out.TraceID = in.TraceID
		out.ParentSpanID = in.SpanID
		out.Sampling = in.Sampling
		out.TraceFlags = in.TraceFlags
		out.TraceState = in.TraceState
	} else {
		r.started = true
		for !out.TraceID.IsValid() {
			t.fill(out.TraceID[:])
		}
		// All 128 bits come from the generator: W3C Trace Context Level
		// 2's random trace-id flag says so downstream.
		out.TraceFlags = tracecontext.FlagRandom
		// A bare decision (b3: 0) without ids is still the upstream's
		// decision: honour it for the new trace.
		out.Sampling = in.Sampling
	}
	if out.Sampling == tracecontext.SamplingUnset {
		if t.rng.Float64() < t.s.sampling {
			out.Sampling = tracecontext.SamplingAccept
		} else {
			out.Sampling = tracecontext.SamplingDeny
		}
	}
	for !out.SpanID.IsValid() {
		t.fill(out.SpanID[:])
	}
	if t.s.stateKey != "" {
		if ts, err := tracecontext.UpdateTraceState(out.TraceState, t.s.stateKey, out.SpanID.String()); err == nil {
			out.TraceState = ts
		}
	}
	return r
}

func (t *tracer) fill(b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := t.rng.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}

// traceText is the outbound context rendered once per request into one
// buffer: the traceparent value, then the parent span id. The B3 values
// and the filter-state values are slices of it (the trace id and span id
// hex appear once), so a request costs one allocation for all of them.
// The buffer is never written after it is built: hosts that keep what
// they are given (proxytest) see stable values.
type traceText struct {
	b []byte
}

const (
	ttTraceID   = 3  // 32 hex
	ttSpanID    = 36 // 16 hex
	ttParent    = 55 // 16 hex, when the context has a parent
	ttLenParent = 71
)

func newTraceText(c *tracecontext.Context) traceText {
	b := make([]byte, 0, ttLenParent)
	b = append(b, '0', '0', '-')
	b = appendHexBytes(b, c.TraceID[:])
	b = append(b, '-')
	b = appendHexBytes(b, c.SpanID[:])
	b = append(b, '-')
	// Only the sampled and random flags are propagated (see
	// tracecontext.FormatTraceparent).
	flags := c.TraceFlags & tracecontext.FlagRandom
	if c.Sampling.Sampled() {
		flags |= tracecontext.FlagSampled
	}
	b = append(b, hexDigits[flags>>4], hexDigits[flags&0xf])
	if c.ParentSpanID.IsValid() {
		b = appendHexBytes(b, c.ParentSpanID[:])
	}
	return traceText{b: b}
}

func (t traceText) str(i, j int) string   { return unsafe.String(&t.b[i], j-i) }
func (t traceText) traceparent() string   { return t.str(0, ttParent) }
func (t traceText) traceIDHex() []byte    { return t.b[ttTraceID : ttTraceID+32] }
func (t traceText) spanIDHex() []byte     { return t.b[ttSpanID : ttSpanID+16] }
func (t traceText) parentHex() []byte     { return t.b[ttParent:len(t.b)] }
func (t traceText) hasParent() bool       { return len(t.b) == ttLenParent }
func (t traceText) traceIDString() string { return t.str(ttTraceID, ttTraceID+32) }
func (t traceText) spanIDString() string  { return t.str(ttSpanID, ttSpanID+16) }
func (t traceText) parentSpanIDString() string {
	if !t.hasParent() {
		return ""
	}
	return t.str(ttParent, ttLenParent)
}

// staleW3C, staleB3 and staleB3Multi are the inbound headers of a format
// the filter does not write: sent on, they would carry the inbound span
// (or another trace) next to ours, and a tracer reading them (B3 single
// wins over multi on extraction; W3C first) would follow the stale one.
// tracestate goes with traceparent: without it W3C ignores it, and its
// members describe the inbound span.
var (
	staleW3C     = [...]string{tracecontext.HeaderTraceparent, tracecontext.HeaderTracestate}
	staleB3      = [...]string{tracecontext.HeaderB3}
	staleB3Multi = [...]string{tracecontext.HeaderB3TraceID, tracecontext.HeaderB3SpanID, tracecontext.HeaderB3ParentSpan,
		tracecontext.HeaderB3Sampled, tracecontext.HeaderB3Flags}
)

// removeStale removes the inbound headers of the formats not written.
// Only headers present cost a host call.
func (t *tracer) removeStale(in headerList) error {
	if !t.s.writeW3C {
		if err := removeHeaders(in, staleW3C[:]); err != nil {
			return err
		}
	}
	if !t.s.writeB3 {
		if err := removeHeaders(in, staleB3[:]); err != nil {
			return err
		}
	}
	if !t.s.writeB3Multi {
		return removeHeaders(in, staleB3Multi[:])
	}
	return nil
}

func removeHeaders(in headerList, names []string) error {
	for _, n := range names {
		if err := setRequestHeader(in, n, ""); err != nil {
			return err
		}
	}
	return nil
}

// inject writes the outbound context in the configured formats and
// removes inbound headers of the formats not configured.
func (t *tracer) inject(in headerList, c *tracecontext.Context, txt traceText) error {
	if err := t.removeStale(in); err != nil {
		return err
	}
	if t.s.writeW3C {
		if err := setRequestHeader(in, tracecontext.HeaderTraceparent, txt.traceparent()); err != nil {
			return err
		}
		if err := setRequestHeader(in, tracecontext.HeaderTracestate, c.TraceState); err != nil {
			return err
		}
	}
	if t.s.writeB3 {
		if err := setRequestHeader(in, tracecontext.HeaderB3, tracecontext.FormatB3SingleHeader(*c)); err != nil {
			return err
		}
	}
	if t.s.writeB3Multi {
		// As tracecontext.FormatB3MultiHeaders, from the rendered ids.
		sampled, flags := "", ""
		switch c.Sampling {
		case tracecontext.SamplingAccept:
			sampled = "1"
		case tracecontext.SamplingDeny:
			sampled = "0"
		case tracecontext.SamplingDebug:
			flags = "1"
		}
		if err := setRequestHeader(in, tracecontext.HeaderB3TraceID, txt.traceIDString()); err != nil {
			return err
		}
		if err := setRequestHeader(in, tracecontext.HeaderB3SpanID, txt.spanIDString()); err != nil {
			return err
		}
		if err := setRequestHeader(in, tracecontext.HeaderB3ParentSpan, txt.parentSpanIDString()); err != nil {
			return err
		}
		if err := setRequestHeader(in, tracecontext.HeaderB3Sampled, sampled); err != nil {
			return err
		}
		if err := setRequestHeader(in, tracecontext.HeaderB3Flags, flags); err != nil {
			return err
		}
	}
	return nil
}

// setRequestHeader makes value the only value of name ("" removes it).
// Envoy's replace and remove act on every value of a header, some hosts
// (proxytest) only on the first: with repeated inbound values, remove each
// one first (further removes are no-ops).
func setRequestHeader(in headerList, name, value string) error {
	n := in.count(name)
	if value != "" && n <= 1 {
		return replaceRequestHeader(name, value)
	}
	for i := 0; i < n; i++ {
		if err := proxywasm.RemoveHttpRequestHeader(name); err != nil {
			return err
		}
	}
	if value == "" {
		return nil
	}
	return proxywasm.AddHttpRequestHeader(name, value)
}
