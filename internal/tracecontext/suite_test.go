package tracecontext

import (
	"testing"

	tct "github.com/meshtrail/meshtrail/internal/tracecontext/tracecontexttest"
)

// getter serves headers as Envoy hands them over: names matched
// case-insensitively, every value in order.
func getter(in []tct.Header) Getter {
	return func(name string) []string { return tct.Values(in, name) }
}

// Every request of the W3C suite (test/test.py, default strictness)
// through Extract and FormatTraceparent: what this hop would send on.
func TestW3CSuiteExtract(t *testing.T) {
	for _, c := range append(append([]tct.W3CCase{}, tct.W3CSuite...), tct.W3CAdvanced...) {
		t.Run(c.Origin, func(t *testing.T) {
			ctx, from, found, _ := Extract(getter(c.In), nil)
			continued := found && from == FormatW3C && ctx.TraceID.String() == tct.SuiteTraceID
			if continued != c.Continues {
				t.Fatalf("continued = %v (found %v from %q trace %s), want %v", continued, found, from, ctx.TraceID, c.Continues)
			}
			if !found {
				ctx = Context{}
			}
			if msg := c.CheckTraceState(ctx.TraceState); msg != "" {
				t.Error(msg)
			}
			if c.RandomFlag {
				out, err := ParseTraceparent(FormatTraceparent(ctx))
				if err != nil || out.TraceFlags&FlagRandom == 0 {
					t.Errorf("outbound %q lost the random flag (%v)", FormatTraceparent(ctx), err)
				}
			}
		})
	}
}

var samplingOf = map[string]Sampling{"": SamplingUnset, "0": SamplingDeny, "1": SamplingAccept, "d": SamplingDebug}

// Every rule of the B3 README through Extract.
func TestB3RulesExtract(t *testing.T) {
	for _, c := range tct.B3Rules {
		t.Run(c.Origin, func(t *testing.T) {
			ctx, _, found, errs := Extract(getter(c.In), nil)
			if (len(errs) > 0) != c.Invalid {
				t.Errorf("errors %v, want invalid=%v", errs, c.Invalid)
			}
			if found != (c.Trace != "") {
				t.Fatalf("found = %v (trace %s), want trace %q", found, ctx.TraceID, c.Trace)
			}
			if ctx.Sampling != samplingOf[c.Sampling] {
				t.Errorf("sampling %v, want %q", ctx.Sampling, c.Sampling)
			}
			if !found {
				return
			}
			if ctx.TraceID.String() != c.Trace || ctx.SpanID.String() != c.Span {
				t.Errorf("trace %s span %s, want %s %s", ctx.TraceID, ctx.SpanID, c.Trace, c.Span)
			}
			if c.Parent == "" && ctx.ParentSpanID.IsValid() || c.Parent != "" && ctx.ParentSpanID.String() != c.Parent {
				t.Errorf("parent %s, want %q", ctx.ParentSpanID, c.Parent)
			}
		})
	}
}
