package tracecontext

import (
	"errors"
	"testing"
)

// Examples and rules of the B3 propagation spec
// (github.com/openzipkin/b3-propagation README).
const (
	b3Trace  = "80f198ee56343ba864fe8b2a57d3eff7"
	b3Span   = "e457b5a2e4d86bd1"
	b3Parent = "05e3ac9a4f6e3b90"
	b3Trace6 = "463ac35c9f6413ad"
)

func TestParseB3Single(t *testing.T) {
	cases := []struct {
		name, in    string
		trace, span string
		parent      string
		sampling    Sampling
		err         error
	}{
		{"full", b3Trace + "-" + b3Span + "-1-" + b3Parent, b3Trace, b3Span, b3Parent, SamplingAccept, nil},
		{"spec_example", "80f198ee56343ba864fe8b2a57d3eff7-05e3ac9a4f6e3b90-1-e457b5a2e4d86bd1", b3Trace, b3Parent, b3Span, SamplingAccept, nil},
		{"no_parent", b3Trace + "-" + b3Span + "-1", b3Trace, b3Span, "", SamplingAccept, nil},
		{"defer", b3Trace + "-" + b3Span, b3Trace, b3Span, "", SamplingUnset, nil},
		{"debug", b3Trace + "-" + b3Span + "-d", b3Trace, b3Span, "", SamplingDebug, nil},
		{"deny", b3Trace + "-" + b3Span + "-0", b3Trace, b3Span, "", SamplingDeny, nil},
		{"trace_64", b3Trace6 + "-" + b3Span + "-1", "0000000000000000" + b3Trace6, b3Span, "", SamplingAccept, nil},
		{"deny_only", "0", "", "", "", SamplingDeny, ErrDenyOnly},
		{"accept_only", "1", "", "", "", SamplingAccept, ErrDenyOnly},
		{"debug_only", "d", "", "", "", SamplingDebug, ErrDenyOnly},
		{"bad_only", "x", "", "", "", SamplingUnset, ErrSampling},
		{"bad_sampling", b3Trace + "-" + b3Span + "-2", "", "", "", SamplingUnset, ErrSampling},
		{"empty_sampling", b3Trace + "-" + b3Span + "-", "", "", "", SamplingUnset, ErrSampling},
		{"trace_48", b3Trace[:12] + "-" + b3Span + "-1", "", "", "", SamplingUnset, ErrMalformed},
		{"span_short", b3Trace + "-" + b3Span[:15] + "-1", "", "", "", SamplingUnset, ErrMalformed},
		{"zero_trace", "00000000000000000000000000000000-" + b3Span + "-1", "", "", "", SamplingUnset, ErrZeroID},
		{"zero_span", b3Trace + "-0000000000000000-1", "", "", "", SamplingUnset, ErrZeroID},
		{"zero_parent", b3Trace + "-" + b3Span + "-1-0000000000000000", "", "", "", SamplingUnset, ErrZeroID},
		{"too_many_fields", b3Trace + "-" + b3Span + "-1-" + b3Parent + "-1", "", "", "", SamplingUnset, ErrMalformed},
		{"non_hex", "g0f198ee56343ba864fe8b2a57d3eff7-" + b3Span + "-1", "", "", "", SamplingUnset, ErrMalformed},
		{"empty", "", "", "", "", SamplingUnset, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseB3Single(c.in)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("ParseB3Single(%q) error %v, want %v", c.in, err, c.err)
				}
				if c.err == ErrDenyOnly && got.Sampling != c.sampling {
					t.Errorf("decision %v, want %v", got.Sampling, c.sampling)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseB3Single(%q): %v", c.in, err)
			}
			if got.TraceID.String() != c.trace || got.SpanID.String() != c.span || got.Sampling != c.sampling {
				t.Errorf("got %s %s %v", got.TraceID, got.SpanID, got.Sampling)
			}
			if c.parent != "" && got.ParentSpanID.String() != c.parent {
				t.Errorf("parent %s, want %s", got.ParentSpanID, c.parent)
			}
			if c.parent == "" && got.ParentSpanID.IsValid() {
				t.Errorf("unexpected parent %s", got.ParentSpanID)
			}
		})
	}
}

func TestParseB3Multi(t *testing.T) {
	cases := []struct {
		name     string
		in       B3Multi
		sampling Sampling
		err      error
	}{
		{"accept", B3Multi{TraceID: b3Trace, SpanID: b3Span, ParentSpanID: b3Parent, Sampled: "1"}, SamplingAccept, nil},
		{"deny", B3Multi{TraceID: b3Trace, SpanID: b3Span, Sampled: "0"}, SamplingDeny, nil},
		{"defer", B3Multi{TraceID: b3Trace, SpanID: b3Span}, SamplingUnset, nil},
		{"lenient_true", B3Multi{TraceID: b3Trace, SpanID: b3Span, Sampled: "true"}, SamplingAccept, nil},
		{"lenient_false", B3Multi{TraceID: b3Trace, SpanID: b3Span, Sampled: "false"}, SamplingDeny, nil},
		{"debug_flag", B3Multi{TraceID: b3Trace, SpanID: b3Span, Flags: "1"}, SamplingDebug, nil},
		{"debug_wins_over_deny", B3Multi{TraceID: b3Trace, SpanID: b3Span, Sampled: "0", Flags: "1"}, SamplingDebug, nil},
		{"trace_64", B3Multi{TraceID: b3Trace6, SpanID: b3Span, Sampled: "1"}, SamplingAccept, nil},
		{"deny_only", B3Multi{Sampled: "0"}, SamplingDeny, ErrDenyOnly},
		{"debug_only", B3Multi{Flags: "1"}, SamplingDebug, ErrDenyOnly},
		{"nothing", B3Multi{}, SamplingUnset, ErrMalformed},
		{"missing_span", B3Multi{TraceID: b3Trace, Sampled: "1"}, SamplingUnset, ErrMalformed},
		{"missing_trace", B3Multi{SpanID: b3Span, Sampled: "1"}, SamplingUnset, ErrMalformed},
		{"bad_sampled", B3Multi{TraceID: b3Trace, SpanID: b3Span, Sampled: "d"}, SamplingUnset, ErrSampling},
		{"other_flags_ignored", B3Multi{TraceID: b3Trace, SpanID: b3Span, Flags: "2"}, SamplingUnset, nil},
		{"upper_trace", B3Multi{TraceID: "80F198EE56343BA864FE8B2A57D3EFF7", SpanID: b3Span}, SamplingUnset, ErrMalformed},
		{"zero_trace", B3Multi{TraceID: "0000000000000000", SpanID: b3Span}, SamplingUnset, ErrZeroID},
		{"zero_parent", B3Multi{TraceID: b3Trace, SpanID: b3Span, ParentSpanID: "0000000000000000"}, SamplingUnset, ErrZeroID},
		{"bad_parent", B3Multi{TraceID: b3Trace, SpanID: b3Span, ParentSpanID: "xyz"}, SamplingUnset, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseB3Multi(c.in)
			if c.err != nil && !errors.Is(err, c.err) {
				t.Fatalf("error %v, want %v", err, c.err)
			}
			if c.err == nil && err != nil {
				t.Fatal(err)
			}
			if (c.err == nil || c.err == ErrDenyOnly) && got.Sampling != c.sampling {
				t.Errorf("sampling %v, want %v", got.Sampling, c.sampling)
			}
		})
	}
}

// Formatting writes what the spec says: debug as x-b3-flags: 1 without
// x-b3-sampled, the parent only after a sampling state in b3 single.
func TestFormatB3(t *testing.T) {
	c, _ := ParseB3Single(b3Trace + "-" + b3Span + "-1-" + b3Parent)
	if got := FormatB3SingleHeader(c); got != b3Trace+"-"+b3Span+"-1-"+b3Parent {
		t.Errorf("round trip: %s", got)
	}
	m := FormatB3MultiHeaders(c)
	if m != (B3Multi{TraceID: b3Trace, SpanID: b3Span, ParentSpanID: b3Parent, Sampled: "1"}) {
		t.Errorf("multi %+v", m)
	}
	c.Sampling = SamplingDebug
	if m := FormatB3MultiHeaders(c); m.Flags != "1" || m.Sampled != "" {
		t.Errorf("debug multi %+v", m)
	}
	if got := FormatB3SingleHeader(c); got != b3Trace+"-"+b3Span+"-d-"+b3Parent {
		t.Errorf("debug single %s", got)
	}
	c.Sampling = SamplingUnset
	if got := FormatB3SingleHeader(c); got != b3Trace+"-"+b3Span {
		t.Errorf("defer single %s (a parent needs a sampling state before it)", got)
	}
}

func TestExtract(t *testing.T) {
	hdr := func(kv ...string) Getter {
		return func(name string) []string {
			var out []string
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == name {
					out = append(out, kv[i+1])
				}
			}
			return out
		}
	}
	tp := "00-" + tid + "-" + pid + "-01"
	cases := []struct {
		name   string
		get    Getter
		from   Format
		found  bool
		trace  string
		state  string
		nerrs  int
		decide Sampling
	}{
		{"none", hdr(), "", false, "", "", 0, SamplingUnset},
		{"w3c", hdr("traceparent", tp, "tracestate", "a=1", "tracestate", "b=2"), FormatW3C, true, tid, "a=1,b=2", 0, SamplingAccept},
		{"w3c_bad_state", hdr("traceparent", tp, "tracestate", "A=1"), FormatW3C, true, tid, "", 1, SamplingAccept},
		{"w3c_over_b3", hdr("traceparent", tp, "b3", b3Trace+"-"+b3Span+"-1"), FormatW3C, true, tid, "", 0, SamplingAccept},
		{"bad_w3c_then_b3", hdr("traceparent", "ff-"+tid+"-"+pid+"-01", "b3", b3Trace+"-"+b3Span+"-1"), FormatB3, true, b3Trace, "", 1, SamplingAccept},
		{"dup_traceparent", hdr("traceparent", tp, "traceparent", tp), "", false, "", "", 1, SamplingUnset},
		{"b3_over_multi", hdr("b3", b3Trace+"-"+b3Span+"-0", "x-b3-traceid", b3Trace6, "x-b3-spanid", b3Span), FormatB3, true, b3Trace, "", 0, SamplingDeny},
		{"multi", hdr("x-b3-traceid", b3Trace6, "x-b3-spanid", b3Span, "x-b3-sampled", "1"), FormatB3Multi, true, "0000000000000000" + b3Trace6, "", 0, SamplingAccept},
		{"dup_multi_first_wins", hdr("x-b3-traceid", b3Trace6, "x-b3-traceid", b3Trace, "x-b3-spanid", b3Span), FormatB3Multi, true, "0000000000000000" + b3Trace6, "", 0, SamplingUnset},
		{"w3c_dup_key_state_kept", hdr("traceparent", tp, "tracestate", "a=1", "tracestate", "a=2,b=3"), FormatW3C, true, tid, "a=1,b=3", 0, SamplingAccept},
		{"multi_flags_only_ignored", hdr("x-b3-flags", "0"), "", false, "", "", 0, SamplingUnset},
		{"deny_only", hdr("b3", "0"), "", false, "", "", 0, SamplingDeny},
		{"deny_only_then_multi", hdr("b3", "0", "x-b3-traceid", b3Trace6, "x-b3-spanid", b3Span, "x-b3-sampled", "1"), FormatB3Multi, true, "0000000000000000" + b3Trace6, "", 0, SamplingDeny},
		{"tracestate_alone", hdr("tracestate", "a=1"), "", false, "", "", 0, SamplingUnset},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, from, found, errs := Extract(c.get, nil)
			if found != c.found || from != c.from || len(errs) != c.nerrs {
				t.Fatalf("found %v from %q errs %v", found, from, errs)
			}
			if ctx.Sampling != c.decide {
				t.Errorf("sampling %v, want %v", ctx.Sampling, c.decide)
			}
			if found && (ctx.TraceID.String() != c.trace || ctx.TraceState != c.state) {
				t.Errorf("trace %s state %q", ctx.TraceID, ctx.TraceState)
			}
		})
	}
}
