package main

import (
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/meshtrail/meshtrail/internal/tracecontext"
)

const (
	suiteTrace  = "12345678901234567890123456789012"
	suiteParent = "1234567890123456"
	w3cOnly     = `{"tracing":{"formats":["w3c"],"sampling_percentage":100}}`
)

// The cases of the W3C trace-context test suite (test/test.py in
// github.com/w3c/trace-context), played through the filter: the harness
// sends headers and checks the traceparent/tracestate the service sends on.
func TestW3CTraceContextSuite(t *testing.T) {
	tp := func(v string) [2]string { return [2]string{"traceparent", v} }
	ts := func(v string) [2]string { return [2]string{"tracestate", v} }
	valid00 := "00-" + suiteTrace + "-" + suiteParent + "-00"
	type want int
	const (
		continues want = iota // same trace id, new parent id
		restarts              // a new trace id
	)
	cases := []struct {
		name      string
		in        [][2]string
		want      want
		stateHas  []string // members expected in the outbound tracestate
		stateNone bool     // outbound tracestate must be absent
	}{
		{"both_missing", nil, restarts, nil, true},
		{"traceparent_included_tracestate_missing", [][2]string{tp("00-" + suiteTrace + "-" + suiteParent + "-01")}, continues, nil, true},
		{"traceparent_duplicated", [][2]string{tp("00-12345678901234567890123456789011-1234567890123456-01"), tp("00-" + suiteTrace + "-1234567890123456-01")}, restarts, nil, true},
		{"header_name_trace-parent", [][2]string{{"trace-parent", "00-" + suiteTrace + "-" + suiteParent + "-01"}}, restarts, nil, true},
		{"header_name_trace.parent", [][2]string{{"trace.parent", "00-" + suiteTrace + "-" + suiteParent + "-01"}}, restarts, nil, true},
		{"version_00_trailing_dot", [][2]string{tp("00-" + suiteTrace + "-" + suiteParent + "-01.")}, restarts, nil, true},
		{"version_00_future_suffix", [][2]string{tp("00-" + suiteTrace + "-" + suiteParent + "-01-what-the-future-will-be-like")}, restarts, nil, true},
		{"version_cc", [][2]string{tp("cc-" + suiteTrace + "-" + suiteParent + "-01")}, continues, nil, true},
		{"version_cc_future_suffix", [][2]string{tp("cc-" + suiteTrace + "-" + suiteParent + "-01-what-the-future-will-be-like")}, continues, nil, true},
		{"version_cc_bad_suffix", [][2]string{tp("cc-" + suiteTrace + "-" + suiteParent + "-01.what-the-future-will-be-like")}, restarts, nil, true},
		{"version_ff", [][2]string{tp("ff-" + suiteTrace + "-" + suiteParent + "-01")}, restarts, nil, true},
		{"version_illegal_.0", [][2]string{tp(".0-" + suiteTrace + "-" + suiteParent + "-01")}, restarts, nil, true},
		{"version_illegal_0.", [][2]string{tp("0.-" + suiteTrace + "-" + suiteParent + "-01")}, restarts, nil, true},
		{"version_too_long_000", [][2]string{tp("000-" + suiteTrace + "-" + suiteParent + "-01")}, restarts, nil, true},
		{"version_too_long_0000", [][2]string{tp("0000-" + suiteTrace + "-" + suiteParent + "-01")}, restarts, nil, true},
		{"version_too_short", [][2]string{tp("0-" + suiteTrace + "-" + suiteParent + "-01")}, restarts, nil, true},
		{"trace_id_all_zero", [][2]string{tp("00-00000000000000000000000000000000-" + suiteParent + "-01")}, restarts, nil, true},
		{"trace_id_illegal_first", [][2]string{tp("00-.2345678901234567890123456789012-" + suiteParent + "-01")}, restarts, nil, true},
		{"trace_id_illegal_last", [][2]string{tp("00-1234567890123456789012345678901.-" + suiteParent + "-01")}, restarts, nil, true},
		{"trace_id_too_long", [][2]string{tp("00-123456789012345678901234567890123-" + suiteParent + "-01")}, restarts, nil, true},
		{"trace_id_too_short", [][2]string{tp("00-1234567890123456789012345678901-" + suiteParent + "-01")}, restarts, nil, true},
		{"parent_id_all_zero", [][2]string{tp("00-" + suiteTrace + "-0000000000000000-01")}, restarts, nil, true},
		{"parent_id_illegal_first", [][2]string{tp("00-" + suiteTrace + "-.234567890123456-01")}, restarts, nil, true},
		{"parent_id_illegal_last", [][2]string{tp("00-" + suiteTrace + "-123456789012345.-01")}, restarts, nil, true},
		{"parent_id_too_long", [][2]string{tp("00-" + suiteTrace + "-12345678901234567-01")}, restarts, nil, true},
		{"parent_id_too_short", [][2]string{tp("00-" + suiteTrace + "-123456789012345-01")}, restarts, nil, true},
		{"trace_flags_illegal_.0", [][2]string{tp("00-" + suiteTrace + "-" + suiteParent + "-.0")}, restarts, nil, true},
		{"trace_flags_illegal_0.", [][2]string{tp("00-" + suiteTrace + "-" + suiteParent + "-0.")}, restarts, nil, true},
		{"trace_flags_too_long", [][2]string{tp("00-" + suiteTrace + "-" + suiteParent + "-001")}, restarts, nil, true},
		{"trace_flags_too_short", [][2]string{tp("00-" + suiteTrace + "-" + suiteParent + "-1")}, restarts, nil, true},
		{"ows_leading_space", [][2]string{tp(" 00-" + suiteTrace + "-" + suiteParent + "-01")}, continues, nil, true},
		{"ows_leading_tab", [][2]string{tp("\t00-" + suiteTrace + "-" + suiteParent + "-01")}, continues, nil, true},
		{"ows_trailing_space", [][2]string{tp("00-" + suiteTrace + "-" + suiteParent + "-01 ")}, continues, nil, true},
		{"ows_trailing_tab", [][2]string{tp("00-" + suiteTrace + "-" + suiteParent + "-01\t")}, continues, nil, true},
		{"ows_both", [][2]string{tp("\t 00-" + suiteTrace + "-" + suiteParent + "-01 \t")}, continues, nil, true},
		{"tracestate_without_traceparent", [][2]string{ts("foo=1,bar=2")}, restarts, nil, true},
		{"tracestate_inherited", [][2]string{tp(valid00), ts("foo=1,bar=2")}, continues, []string{"foo=1", "bar=2"}, false},
		{"tracestate_header_name_trace-state", [][2]string{tp(valid00), {"trace-state", "foo=1"}}, continues, nil, true},
		{"tracestate_empty", [][2]string{tp(valid00), ts("")}, continues, nil, true},
		{"tracestate_empty_then_member", [][2]string{tp(valid00), ts(""), ts("foo=1")}, continues, []string{"foo=1"}, false},
		{"tracestate_member_then_empty", [][2]string{tp(valid00), ts("foo=1"), ts("")}, continues, []string{"foo=1"}, false},
		{"tracestate_multiple_headers", [][2]string{tp(valid00), ts("foo=1,bar=2"), ts("rojo=1,congo=2"), ts("baz=3")}, continues, []string{"foo=1", "bar=2", "rojo=1", "congo=2", "baz=3"}, false},
		{"tracestate_duplicated_keys_same_value", [][2]string{tp(valid00), ts("foo=1,foo=1")}, continues, nil, true},
		{"tracestate_duplicated_keys", [][2]string{tp(valid00), ts("foo=1,foo=2")}, continues, nil, true},
		{"tracestate_duplicated_keys_across_headers", [][2]string{tp(valid00), ts("foo=1"), ts("foo=2")}, continues, nil, true},
		{"tracestate_all_allowed_characters", [][2]string{tp(valid00), ts(allowedKey + "=" + allowedValue)}, continues, []string{allowedKey + "=" + allowedValue}, false},
		{"tracestate_all_allowed_characters_vendor", [][2]string{tp(valid00), ts(allowedKey + "@a-z0-9_-*/=" + allowedValue)}, continues, []string{allowedKey + "@a-z0-9_-*/=" + allowedValue}, false},
		{"tracestate_ows", [][2]string{tp(valid00), ts("foo=1 \t , \t bar=2, \t baz=3")}, continues, []string{"foo=1", "bar=2", "baz=3"}, false},
		{"tracestate_ows_tabs", [][2]string{tp(valid00), ts("foo=1\t \t,\t \tbar=2,\t \tbaz=3")}, continues, []string{"foo=1", "bar=2", "baz=3"}, false},
		{"tracestate_ows_edges", [][2]string{tp(valid00), ts("\t foo=1 \t")}, continues, []string{"foo=1"}, false},
		{"tracestate_key_space", [][2]string{tp(valid00), ts("foo =1")}, continues, nil, true},
		{"tracestate_key_upper", [][2]string{tp(valid00), ts("FOO=1")}, continues, nil, true},
		{"tracestate_key_dot", [][2]string{tp(valid00), ts("foo.bar=1")}, continues, nil, true},
		{"tracestate_vendor_empty_system", [][2]string{tp(valid00), ts("foo@=1,bar=2")}, continues, nil, true},
		{"tracestate_vendor_empty_tenant", [][2]string{tp(valid00), ts("@foo=1,bar=2")}, continues, nil, true},
		{"tracestate_vendor_double_at", [][2]string{tp(valid00), ts("foo@@bar=1,bar=2")}, continues, nil, true},
		{"tracestate_vendor_two_ats", [][2]string{tp(valid00), ts("foo@bar@baz=1,bar=2")}, continues, nil, true},
		{"tracestate_32_members", append([][2]string{tp(valid00)}, members(32)...), continues, []string{"bar01=01", "bar32=32"}, false},
		{"tracestate_33_members", append([][2]string{tp(valid00)}, members(33)...), continues, nil, true},
		{"tracestate_key_256", [][2]string{tp(valid00), ts("foo=1"), ts(strings.Repeat("z", 256) + "=1")}, continues, []string{"foo=1"}, false},
		{"tracestate_key_257", [][2]string{tp(valid00), ts("foo=1"), ts(strings.Repeat("z", 257) + "=1")}, continues, nil, true},
		{"tracestate_tenant_241_vendor_14", [][2]string{tp(valid00), ts("foo=1"), ts(strings.Repeat("t", 241) + "@" + strings.Repeat("v", 14) + "=1")}, continues, []string{"foo=1"}, false},
		{"tracestate_tenant_242", [][2]string{tp(valid00), ts("foo=1"), ts(strings.Repeat("t", 242) + "@v=1")}, continues, nil, true},
		{"tracestate_vendor_15", [][2]string{tp(valid00), ts("foo=1"), ts("t@" + strings.Repeat("v", 15) + "=1")}, continues, nil, true},
		{"tracestate_value_with_equals", [][2]string{tp(valid00), ts("foo=bar=baz")}, continues, nil, true},
		{"tracestate_value_empty", [][2]string{tp(valid00), ts("foo=,bar=3")}, continues, nil, true},
	}
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		e := start(t, vm, w3cOnly, nil)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				x := e.request(append([][2]string{{":method", "GET"}, {":path", "/"}}, c.in...), nil)
				out, err := tracecontext.ParseTraceparent(header(t, x.upstream, "traceparent"))
				if err != nil {
					t.Fatalf("outbound traceparent invalid: %v", err)
				}
				switch c.want {
				case continues:
					if out.TraceID.String() != suiteTrace {
						t.Errorf("trace id %s, want %s continued", out.TraceID, suiteTrace)
					}
					if out.SpanID.String() == suiteParent {
						t.Errorf("parent id %s was not replaced", out.SpanID)
					}
					if x.state["meshtrail_parent_span_id"] != suiteParent {
						t.Errorf("filter state parent span %q, want %s", x.state["meshtrail_parent_span_id"], suiteParent)
					}
				case restarts:
					for _, kv := range c.in {
						if strings.Contains(kv[1], out.TraceID.String()) {
							t.Errorf("trace id %s taken from invalid input %q", out.TraceID, kv[1])
						}
					}
					if _, ok := x.state["meshtrail_parent_span_id"]; ok {
						t.Errorf("a trace started here has no parent span, got %q", x.state["meshtrail_parent_span_id"])
					}
				}
				if x.state["meshtrail_trace_id"] != out.TraceID.String() || x.state["meshtrail_span_id"] != out.SpanID.String() {
					t.Errorf("filter state %v does not match traceparent %s", x.state, header(t, x.upstream, "traceparent"))
				}
				state := header(t, x.upstream, "tracestate")
				if c.stateNone && state != "" {
					t.Errorf("tracestate %q sent, want none", state)
				}
				for _, m := range c.stateHas {
					if !strings.Contains(state, m) {
						t.Errorf("tracestate %q lacks %q", state, m)
					}
				}
				if c.name == "tracestate_multiple_headers" && state != "foo=1,bar=2,rojo=1,congo=2,baz=3" {
					t.Errorf("combined tracestate %q lost the order", state)
				}
			})
		}
	})
}

const allowedKey = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"

// allowedValue holds every character a tracestate value may carry.
var allowedValue = func() string {
	var b []byte
	for c := 0x20; c <= 0x7e; c++ {
		if c != 0x2c && c != 0x3d {
			b = append(b, byte(c))
		}
	}
	return string(b)
}()

// members returns n tracestate members barNN=NN split over headers of 10,
// as the suite sends them.
func members(n int) [][2]string {
	var out [][2]string
	var cur []string
	for i := 1; i <= n; i++ {
		cur = append(cur, fmtMember(i))
		if len(cur) == 10 || i == n {
			out = append(out, [2]string{"tracestate", strings.Join(cur, ",")})
			cur = nil
		}
	}
	return out
}

func fmtMember(i int) string {
	d := string([]byte{byte('0' + i/10), byte('0' + i%10)})
	return "bar" + d + "=" + d
}

// The AdvancedTest cases: every request gets its own span id, the trace id
// is kept, and an invalid traceparent is never continued.
func TestW3CSuiteMultipleRequests(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		e := start(t, vm, w3cOnly, nil)
		for _, in := range []string{"00-" + suiteTrace + "-" + suiteParent + "-01", "", "00-00000000000000000000000000000000-1234567890123456-01"} {
			spans := map[string]bool{}
			for i := 0; i < 3; i++ {
				var h [][2]string
				if in != "" {
					h = [][2]string{{"traceparent", in}}
				}
				x := e.request(h, nil)
				out, err := tracecontext.ParseTraceparent(header(t, x.upstream, "traceparent"))
				if err != nil {
					t.Fatal(err)
				}
				spans[out.SpanID.String()] = true
				if strings.HasPrefix(in, "00-1234") && out.TraceID.String() != suiteTrace {
					t.Errorf("trace id %s not continued", out.TraceID)
				}
				if out.TraceID == (tracecontext.TraceID{}) {
					t.Error("all-zero trace id sent")
				}
			}
			if len(spans) != 3 {
				t.Errorf("input %q: span ids %v, want 3 distinct", in, spans)
			}
		}
	})
}

// B3 propagation (github.com/openzipkin/b3-propagation README): the
// examples and rules, played through the filter with every format written.
func TestB3Propagation(t *testing.T) {
	const (
		trace128 = "80f198ee56343ba864fe8b2a57d3eff7"
		span     = "e457b5a2e4d86bd1"
		parent   = "05e3ac9a4f6e3b90"
		trace64  = "463ac35c9f6413ad"
	)
	cases := []struct {
		name      string
		in        [][2]string
		trace     string // expected continued trace id ("" = a new one)
		inSpan    string // the inbound span, which becomes our parent
		sampled   string // "1", "0" or "d" in the outbound b3
		debugFlag bool   // x-b3-flags: 1 outbound
	}{
		{"multi_128", [][2]string{{"x-b3-traceid", trace128}, {"x-b3-spanid", span}, {"x-b3-parentspanid", parent}, {"x-b3-sampled", "1"}}, trace128, span, "1", false},
		{"multi_64_padded", [][2]string{{"x-b3-traceid", trace64}, {"x-b3-spanid", span}, {"x-b3-sampled", "0"}}, "0000000000000000" + trace64, span, "0", false},
		{"multi_debug_flag", [][2]string{{"x-b3-traceid", trace128}, {"x-b3-spanid", span}, {"x-b3-flags", "1"}}, trace128, span, "d", true},
		{"multi_lenient_true", [][2]string{{"x-b3-traceid", trace128}, {"x-b3-spanid", span}, {"x-b3-sampled", "true"}}, trace128, span, "1", false},
		{"multi_deny_only", [][2]string{{"x-b3-sampled", "0"}}, "", "", "0", false},
		{"multi_missing_span", [][2]string{{"x-b3-traceid", trace128}, {"x-b3-sampled", "1"}}, "", "", "1", false},
		{"multi_zero_trace", [][2]string{{"x-b3-traceid", strings.Repeat("0", 32)}, {"x-b3-spanid", span}, {"x-b3-sampled", "1"}}, "", "", "1", false},
		{"multi_duplicated_traceid", [][2]string{{"x-b3-traceid", trace128}, {"x-b3-traceid", trace128}, {"x-b3-spanid", span}, {"x-b3-sampled", "1"}}, "", "", "1", false},
		{"single_full", [][2]string{{"b3", trace128 + "-" + span + "-1-" + parent}}, trace128, span, "1", false},
		{"single_no_parent", [][2]string{{"b3", trace128 + "-" + span + "-1"}}, trace128, span, "1", false},
		{"single_debug", [][2]string{{"b3", trace128 + "-" + span + "-d"}}, trace128, span, "d", true},
		{"single_deny", [][2]string{{"b3", trace128 + "-" + span + "-0"}}, trace128, span, "0", false},
		{"single_deny_only", [][2]string{{"b3", "0"}}, "", "", "0", false},
		{"single_64", [][2]string{{"b3", trace64 + "-" + span + "-1"}}, "0000000000000000" + trace64, span, "1", false},
		{"single_over_multi", [][2]string{{"b3", trace128 + "-" + span + "-1"}, {"x-b3-traceid", trace64}, {"x-b3-spanid", parent}, {"x-b3-sampled", "0"}}, trace128, span, "1", false},
		{"single_bad_sampling", [][2]string{{"b3", trace128 + "-" + span + "-x"}}, "", "", "1", false},
		{"single_zero_span", [][2]string{{"b3", trace128 + "-0000000000000000-1"}}, "", "", "1", false},
		{"single_duplicated", [][2]string{{"b3", trace128 + "-" + span + "-1"}, {"b3", trace128 + "-" + span + "-1"}}, "", "", "1", false},
		{"single_too_many_fields", [][2]string{{"b3", trace128 + "-" + span + "-1-" + parent + "-00"}}, "", "", "1", false},
		{"w3c_over_b3", [][2]string{{"traceparent", "00-" + suiteTrace + "-" + suiteParent + "-01"}, {"b3", trace128 + "-" + span + "-0"}}, suiteTrace, suiteParent, "1", false},
		{"invalid_w3c_falls_back_to_b3", [][2]string{{"traceparent", "ff-" + suiteTrace + "-" + suiteParent + "-01"}, {"b3", trace128 + "-" + span + "-1"}}, trace128, span, "1", false},
	}
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		e := start(t, vm, `{"tracing":{"formats":["w3c","b3","b3multi"],"sampling_percentage":100}}`, nil)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				x := e.request(c.in, nil)
				b3 := header(t, x.upstream, "b3")
				single, err := tracecontext.ParseB3Single(b3)
				if err != nil {
					t.Fatalf("outbound b3 %q: %v", b3, err)
				}
				if c.trace != "" && single.TraceID.String() != c.trace {
					t.Errorf("trace id %s, want %s", single.TraceID, c.trace)
				}
				if c.trace == "" {
					for _, kv := range c.in {
						if len(kv[1]) >= 16 && strings.Contains(kv[1], single.TraceID.String()[16:]) {
							t.Errorf("trace id %s taken from invalid input", single.TraceID)
						}
					}
				}
				if c.inSpan != "" {
					if single.ParentSpanID.String() != c.inSpan {
						t.Errorf("b3 parent %s, want the inbound span %s", single.ParentSpanID, c.inSpan)
					}
					if single.SpanID.String() == c.inSpan {
						t.Error("span id not replaced")
					}
					if got := header(t, x.upstream, "x-b3-parentspanid"); got != c.inSpan {
						t.Errorf("x-b3-parentspanid %q, want %s", got, c.inSpan)
					}
				} else if header(t, x.upstream, "x-b3-parentspanid") != "" {
					t.Error("a new trace has no parent span")
				}
				parts := strings.Split(b3, "-")
				if len(parts) < 3 || parts[2] != c.sampled {
					t.Errorf("b3 %q: sampling state want %s", b3, c.sampled)
				}
				// Multi: debug is x-b3-flags: 1 without x-b3-sampled.
				flags, sampled := header(t, x.upstream, "x-b3-flags"), header(t, x.upstream, "x-b3-sampled")
				if c.debugFlag && (flags != "1" || sampled != "") {
					t.Errorf("debug: x-b3-flags %q x-b3-sampled %q", flags, sampled)
				}
				if !c.debugFlag && (flags != "" || sampled != c.sampled) {
					t.Errorf("x-b3-flags %q x-b3-sampled %q, want sampled %s", flags, sampled, c.sampled)
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
				wantSampled := "0"
				if c.sampled != "0" {
					wantSampled = "1"
				}
				if x.state["meshtrail_sampled"] != wantSampled {
					t.Errorf("filter state sampled %q, want %s", x.state["meshtrail_sampled"], wantSampled)
				}
			})
		}
	})
}

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
