package main

import (
	"math/rand/v2"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

	"github.com/meshtrail/meshtrail/tracecontext"
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

// inject writes the outbound context in the configured formats. Formats
// not configured are left as they came.
func (t *tracer) inject(in headerList, c tracecontext.Context) error {
	set := func(name, value string) error {
		// Envoy's replace and remove act on every value of a header, some
		// hosts (proxytest) only on the first: with repeated inbound
		// values, remove each one first (further removes are no-ops).
		n := len(in.values(name))
		if value != "" && n <= 1 {
			return proxywasm.ReplaceHttpRequestHeader(name, value)
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
	if t.s.writeW3C {
		if err := set(tracecontext.HeaderTraceparent, tracecontext.FormatTraceparent(c)); err != nil {
			return err
		}
		if err := set(tracecontext.HeaderTracestate, c.TraceState); err != nil {
			return err
		}
	}
	if t.s.writeB3 {
		if err := set(tracecontext.HeaderB3, tracecontext.FormatB3SingleHeader(c)); err != nil {
			return err
		}
	}
	if t.s.writeB3Multi {
		m := tracecontext.FormatB3MultiHeaders(c)
		for _, kv := range [...][2]string{
			{tracecontext.HeaderB3TraceID, m.TraceID},
			{tracecontext.HeaderB3SpanID, m.SpanID},
			{tracecontext.HeaderB3ParentSpan, m.ParentSpanID},
			{tracecontext.HeaderB3Sampled, m.Sampled},
			{tracecontext.HeaderB3Flags, m.Flags},
		} {
			if err := set(kv[0], kv[1]); err != nil {
				return err
			}
		}
	}
	return nil
}
