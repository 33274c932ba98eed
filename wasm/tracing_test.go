package main

import (
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/meshtrail/meshtrail/internal/tracecontext"
	tct "github.com/meshtrail/meshtrail/internal/tracecontext/tracecontexttest"
)

const (
	suiteTrace  = "12345678901234567890123456789012"
	suiteParent = "1234567890123456"
	w3cOnly     = `{"tracing":{"formats":["w3c"],"sampling_percentage":100}}`
)

// kv turns suite headers into proxytest's pairs, names lowercased as Envoy
// hands them to a filter.
func kv(in []tct.Header) [][2]string {
	var out [][2]string
	for _, x := range tct.Lowercase(in) {
		out = append(out, [2]string{x.Name, x.Value})
	}
	return out
}

// invalidTotal sums meshtrail_trace_headers_invalid_total over reasons.
func invalidTotal(e *emulator) uint64 {
	var n uint64
	for _, r := range invalidReasons {
		if v, err := e.GetCounterMetric(invalidHeaderStat(r.name)); err == nil {
			n += v
		}
	}
	return n
}

// Every request of the W3C trace-context test suite (test/test.py at its
// default strictness, tracecontexttest.W3CSuite) through the filter: the
// harness sends headers and checks the traceparent and tracestate the
// service sends on.
func TestW3CTraceContextSuite(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		e := start(t, vm, w3cOnly, nil)
		for _, c := range tct.W3CSuite {
			t.Run(c.Origin, func(t *testing.T) {
				x := e.request(append([][2]string{{":method", "GET"}, {":path", "/"}}, kv(c.In)...), nil)
				out, err := tracecontext.ParseTraceparent(header(t, x.upstream, "traceparent"))
				if err != nil {
					t.Fatalf("outbound traceparent invalid: %v", err)
				}
				if c.Continues {
					if out.TraceID.String() != suiteTrace {
						t.Errorf("trace id %s, want %s continued", out.TraceID, suiteTrace)
					}
					if out.SpanID.String() == suiteParent {
						t.Errorf("parent id %s was not replaced", out.SpanID)
					}
					if x.state["meshtrail_parent_span_id"] != suiteParent {
						t.Errorf("filter state parent span %q, want %s", x.state["meshtrail_parent_span_id"], suiteParent)
					}
				} else {
					for _, h := range c.In {
						if strings.Contains(h.Value, out.TraceID.String()) {
							t.Errorf("trace id %s taken from invalid input %q", out.TraceID, h.Value)
						}
					}
					if _, ok := x.state["meshtrail_parent_span_id"]; ok {
						t.Errorf("a trace started here has no parent span, got %q", x.state["meshtrail_parent_span_id"])
					}
				}
				if x.state["meshtrail_trace_id"] != out.TraceID.String() || x.state["meshtrail_span_id"] != out.SpanID.String() {
					t.Errorf("filter state %v does not match traceparent %s", x.state, header(t, x.upstream, "traceparent"))
				}
				if msg := c.CheckTraceState(header(t, x.upstream, "tracestate")); msg != "" {
					t.Error(msg)
				}
				if c.RandomFlag && out.TraceFlags&tracecontext.FlagRandom == 0 {
					t.Errorf("traceparent %s lost the random flag", header(t, x.upstream, "traceparent"))
				}
			})
		}
	})
}

// test.py's AdvancedTest (tracecontexttest.W3CAdvanced): three calls per
// inbound request, each with its own span id, the trace id kept when the
// traceparent is valid and never taken from an invalid one.
func TestW3CSuiteMultipleRequests(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		e := start(t, vm, w3cOnly, nil)
		for _, c := range tct.W3CAdvanced {
			spans := map[string]bool{}
			for i := 0; i < 3; i++ {
				x := e.request(kv(c.In), nil)
				out, err := tracecontext.ParseTraceparent(header(t, x.upstream, "traceparent"))
				if err != nil {
					t.Fatal(err)
				}
				spans[out.SpanID.String()] = true
				if (out.TraceID.String() == suiteTrace) != c.Continues {
					t.Errorf("%s: trace id %s, continued want %v", c.Origin, out.TraceID, c.Continues)
				}
				if !out.TraceID.IsValid() {
					t.Errorf("%s: all-zero trace id sent", c.Origin)
				}
			}
			if len(spans) != 3 {
				t.Errorf("%s: span ids %v, want 3 distinct", c.Origin, spans)
			}
		}
	})
}

// Every rule of the B3 propagation README (tracecontexttest.B3Rules)
// through the filter with every format written, sampling at 100%: a
// continued trace keeps its id and the inbound span becomes the parent,
// the inbound decision is honoured, malformed headers are counted and a
// new trace starts.
func TestB3Propagation(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		e := start(t, vm, `{"tracing":{"formats":["w3c","b3","b3multi"],"sampling_percentage":100}}`, nil)
		for _, c := range tct.B3Rules {
			t.Run(c.Origin, func(t *testing.T) {
				before := invalidTotal(e)
				x := e.request(kv(c.In), nil)
				if got := invalidTotal(e) - before; (got > 0) != c.Invalid {
					t.Errorf("invalid headers counted %d, want invalid=%v", got, c.Invalid)
				}
				b3 := header(t, x.upstream, "b3")
				single, err := tracecontext.ParseB3Single(b3)
				if err != nil {
					t.Fatalf("outbound b3 %q: %v", b3, err)
				}
				if c.Trace != "" && single.TraceID.String() != c.Trace {
					t.Errorf("trace id %s, want %s", single.TraceID, c.Trace)
				}
				if c.Trace == "" {
					for _, h := range c.In {
						if len(h.Value) >= 16 && strings.Contains(strings.ToLower(h.Value), single.TraceID.String()[16:]) {
							t.Errorf("trace id %s taken from %q", single.TraceID, h.Value)
						}
					}
				}
				if c.Trace != "" {
					if single.ParentSpanID.String() != c.Span {
						t.Errorf("b3 parent %s, want the inbound span %s", single.ParentSpanID, c.Span)
					}
					if single.SpanID.String() == c.Span {
						t.Error("span id not replaced")
					}
					if got := header(t, x.upstream, "x-b3-parentspanid"); got != c.Span {
						t.Errorf("x-b3-parentspanid %q, want %s", got, c.Span)
					}
				} else if header(t, x.upstream, "x-b3-parentspanid") != "" {
					t.Error("a new trace has no parent span")
				}
				// The inbound decision, else the 100% rate.
				want := c.Sampling
				if want == "" {
					want = "1"
				}
				parts := strings.Split(b3, "-")
				if len(parts) < 3 || parts[2] != want {
					t.Errorf("b3 %q: sampling state want %s", b3, want)
				}
				// Multi: debug is x-b3-flags: 1 without x-b3-sampled.
				flags, sampled := header(t, x.upstream, "x-b3-flags"), header(t, x.upstream, "x-b3-sampled")
				if want == "d" && (flags != "1" || sampled != "") {
					t.Errorf("debug: x-b3-flags %q x-b3-sampled %q", flags, sampled)
				}
				if want != "d" && (flags != "" || sampled != want) {
					t.Errorf("x-b3-flags %q x-b3-sampled %q, want sampled %s", flags, sampled, want)
				}
				if got := header(t, x.upstream, "x-b3-traceid"); got != single.TraceID.String() {
					t.Errorf("x-b3-traceid %q != b3 trace %s", got, single.TraceID)
				}
				if got := header(t, x.upstream, "x-b3-spanid"); got != single.SpanID.String() {
					t.Errorf("x-b3-spanid %q != b3 span %s", got, single.SpanID)
				}
				w, err := tracecontext.ParseTraceparent(header(t, x.upstream, "traceparent"))
				if err != nil || w.TraceID != single.TraceID || w.SpanID != single.SpanID {
					t.Errorf("traceparent %q disagrees with b3 %q (%v)", header(t, x.upstream, "traceparent"), b3, err)
				}
				wantState := "1"
				if want == "0" {
					wantState = "0"
				}
				if x.state["meshtrail_sampled"] != wantState {
					t.Errorf("filter state sampled %q, want %s", x.state["meshtrail_sampled"], wantState)
				}
			})
		}
		// Precedence between the formats (tracecontext.DefaultOrder).
		for _, c := range []struct {
			name  string
			in    [][2]string
			trace string
		}{
			{"w3c_over_b3", [][2]string{{"traceparent", "00-" + suiteTrace + "-" + suiteParent + "-01"}, {"b3", tct.B3Trace + "-" + tct.B3Span + "-0"}}, suiteTrace},
			{"invalid_w3c_falls_back_to_b3", [][2]string{{"traceparent", "ff-" + suiteTrace + "-" + suiteParent + "-01"}, {"b3", tct.B3Trace + "-" + tct.B3Span + "-1"}}, tct.B3Trace},
		} {
			x := e.request(c.in, nil)
			if got := x.state["meshtrail_trace_id"]; got != c.trace {
				t.Errorf("%s: trace %s, want %s", c.name, got, c.trace)
			}
		}
	})
}

// members returns n tracestate members barNN=NN as the suite sends them.
func members(n int) [][2]string { return kv(tct.Members(n)) }

func TestSamplingRateAndFormats(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		// 0%: new traces are not sampled, but an upstream accept is honoured.
		e := start(t, vm, `{"tracing":{"formats":["b3"],"sampling_percentage":0}}`, nil)
		x := e.request(nil, nil)
		if b3 := header(t, x.upstream, "b3"); !strings.HasSuffix(b3, "-0") || x.state["meshtrail_sampled"] != "0" {
			t.Errorf("0%%: b3 %q sampled %q", b3, x.state["meshtrail_sampled"])
		}
		if header(t, x.upstream, "traceparent") != "" || header(t, x.upstream, "x-b3-traceid") != "" {
			t.Error("only b3 is configured, other formats were written")
		}
		x = e.request([][2]string{{"traceparent", "00-" + suiteTrace + "-" + suiteParent + "-01"}}, nil)
		if b3 := header(t, x.upstream, "b3"); !strings.HasPrefix(b3, suiteTrace) || !strings.Contains(b3, "-1-"+suiteParent) {
			t.Errorf("upstream accept not honoured: b3 %q", b3)
		}
		// B3 defer (no sampling state): the rate decides.
		x = e.request([][2]string{{"b3", suiteTrace + "-" + suiteParent}}, nil)
		if b3 := header(t, x.upstream, "b3"); b3 != suiteTrace+"-"+x.state["meshtrail_span_id"]+"-0-"+suiteParent {
			t.Errorf("deferred decision: b3 %q", b3)
		}

		// 100%: a b3: 0 deny is still honoured for the trace started here.
		e = start(t, vm, `{"tracing":{"sampling_percentage":100}}`, nil)
		x = e.request([][2]string{{"b3", "0"}}, nil)
		// (-02: not sampled, random trace id.)
		if tp := header(t, x.upstream, "traceparent"); !strings.HasSuffix(tp, "-02") || header(t, x.upstream, "x-b3-sampled") != "0" {
			t.Errorf("b3: 0 not honoured: traceparent %q x-b3-sampled %q", tp, header(t, x.upstream, "x-b3-sampled"))
		}
		x = e.request(nil, nil)
		if tp := header(t, x.upstream, "traceparent"); !strings.HasSuffix(tp, "-03") || x.state["meshtrail_sampled"] != "1" {
			t.Errorf("100%%: traceparent %q", tp)
		}
		if header(t, x.upstream, "b3") != "" {
			t.Error("default formats are w3c and b3multi, b3 single was written")
		}
	})
}

func TestTraceStateMember(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		e := start(t, vm, `{"tracing":{"formats":["w3c"],"sampling_percentage":100,"tracestate_key":"meshtrail"}}`, nil)
		x := e.request([][2]string{{"traceparent", "00-" + suiteTrace + "-" + suiteParent + "-01"}, {"tracestate", "foo=1,meshtrail=old,bar=2"}}, nil)
		want := "meshtrail=" + x.state["meshtrail_span_id"] + ",foo=1,bar=2"
		if got := header(t, x.upstream, "tracestate"); got != want {
			t.Errorf("tracestate %q, want %q (ours moved to the front)", got, want)
		}
		// 32 members inbound: ours goes first, the last one is dropped.
		in := [][2]string{{"traceparent", "00-" + suiteTrace + "-" + suiteParent + "-01"}}
		x = e.request(append(in, members(32)...), nil)
		got := strings.Split(header(t, x.upstream, "tracestate"), ",")
		if len(got) != 32 || got[0] != "meshtrail="+x.state["meshtrail_span_id"] || got[31] != "bar31=31" {
			t.Errorf("tracestate with 32 members: %d members, first %q last %q", len(got), got[0], got[len(got)-1])
		}
		// A new trace carries only our member.
		x = e.request(nil, nil)
		if got := header(t, x.upstream, "tracestate"); got != "meshtrail="+x.state["meshtrail_span_id"] {
			t.Errorf("new trace tracestate %q", got)
		}
	})
}

// Inbound headers of a format the filter does not write are removed: sent
// on beside the new context they would carry the inbound span, and a B3
// tracer takes b3 over x-b3-* (W3C first), following the stale one.
func TestUnwrittenFormatsRemoved(t *testing.T) {
	const (
		trace = "80f198ee56343ba864fe8b2a57d3eff7"
		span  = "e457b5a2e4d86bd1"
	)
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		// Default formats: w3c and b3multi. An inbound b3 is continued in
		// them, and not sent on.
		e := start(t, vm, `{"tracing":{"sampling_percentage":100}}`, nil)
		x := e.request([][2]string{{"b3", trace + "-" + span + "-1"}}, nil)
		if got := header(t, x.upstream, "b3"); got != "" {
			t.Errorf("stale b3 %q sent on", got)
		}
		if got := header(t, x.upstream, "x-b3-traceid"); got != trace || header(t, x.upstream, "x-b3-parentspanid") != span {
			t.Errorf("x-b3-traceid %q parent %q, want the b3 trace continued", got, header(t, x.upstream, "x-b3-parentspanid"))
		}

		// b3 only: traceparent, tracestate and every x-b3-* go.
		e = start(t, vm, `{"tracing":{"formats":["b3"],"sampling_percentage":100}}`, nil)
		x = e.request([][2]string{
			{"traceparent", "00-" + suiteTrace + "-" + suiteParent + "-01"}, {"tracestate", "foo=1"},
			{"x-b3-traceid", trace}, {"x-b3-spanid", span}, {"x-b3-parentspanid", "05e3ac9a4f6e3b90"},
			{"x-b3-sampled", "1"}, {"x-b3-flags", "1"}, {"x-b3-sampled", "1"},
		}, nil)
		for _, h := range []string{"traceparent", "tracestate", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags"} {
			if got := header(t, x.upstream, h); got != "" {
				t.Errorf("stale %s %q sent on", h, got)
			}
		}
		if b3 := header(t, x.upstream, "b3"); !strings.HasPrefix(b3, suiteTrace+"-") {
			t.Errorf("b3 %q does not continue the W3C trace", b3)
		}

		// w3c only: tracestate stays (updated with the context), B3 goes.
		e = start(t, vm, w3cOnly, nil)
		x = e.request([][2]string{
			{"traceparent", "00-" + suiteTrace + "-" + suiteParent + "-01"}, {"tracestate", "foo=1"},
			{"b3", trace + "-" + span + "-1"}, {"x-b3-traceid", trace}, {"x-b3-spanid", span},
		}, nil)
		if header(t, x.upstream, "tracestate") != "foo=1" || header(t, x.upstream, "b3") != "" || header(t, x.upstream, "x-b3-traceid") != "" || header(t, x.upstream, "x-b3-spanid") != "" {
			t.Errorf("w3c only: upstream %v", x.upstream)
		}
	})
}

// W3C Trace Context Level 2: a trace id this filter generates is random,
// and its traceparent says so (flag 0x02); a continued trace keeps the
// flag as it came (set or not), and a B3 one, which has no such flag,
// does not get it.
func TestRandomTraceIDFlag(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		e := start(t, vm, `{"tracing":{"sampling_percentage":100}}`, nil)
		for _, c := range []struct {
			name string
			in   [][2]string
			want string
		}{
			{"started", nil, "03"},
			{"restarted after an invalid traceparent", [][2]string{{"traceparent", "00-00000000000000000000000000000000-" + suiteParent + "-01"}}, "03"},
			{"started, b3: 0", [][2]string{{"b3", "0"}}, "02"},
			{"w3c level 1", [][2]string{{"traceparent", "00-" + suiteTrace + "-" + suiteParent + "-01"}}, "01"},
			{"w3c random", [][2]string{{"traceparent", "00-" + suiteTrace + "-" + suiteParent + "-03"}}, "03"},
			{"w3c random, not sampled", [][2]string{{"traceparent", "00-" + suiteTrace + "-" + suiteParent + "-02"}}, "02"},
			{"b3", [][2]string{{"b3", suiteTrace + "-" + suiteParent + "-1"}}, "01"},
		} {
			x := e.request(c.in, nil)
			tp := header(t, x.upstream, "traceparent")
			if len(tp) != 55 || tp[53:] != c.want {
				t.Errorf("%s: traceparent %q, want flags %s", c.name, tp, c.want)
			}
			if _, err := tracecontext.ParseTraceparent(tp); err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
		}
	})
}
