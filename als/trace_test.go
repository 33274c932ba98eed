package als

import (
	"fmt"
	"strings"
	"testing"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"

	tct "github.com/meshtrail/meshtrail/internal/tracecontext/tracecontexttest"
)

// loggedTraceHeaders is what Envoy's gRPC access log sends for a request
// carrying in, configured with the trace headers (als/command.go's
// additionalRequestHeadersToLog): each configured name matched
// case-insensitively, repeated values joined with "," (Envoy's
// HeaderUtility::getAllOfHeaderAsString).
func loggedTraceHeaders(in []tct.Header) map[string]string {
	out := map[string]string{}
	for _, name := range []string{"traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags"} {
		if v := tct.Values(in, name); len(v) > 0 {
			out[name] = strings.Join(v, ",")
		}
	}
	return out
}

// sendCases sends one entry per header set through a running receiver and
// returns the records in order, and the receiver's metrics text.
func sendCases(t *testing.T, ins [][]tct.Header) ([]recordTrace, string) {
	t.Helper()
	ts := startService(t, nil)
	conn := ts.dial()
	var entries []*accesslogv3.HTTPAccessLogEntry
	for _, in := range ins {
		entries = append(entries, httpEntry(loggedTraceHeaders(in)))
	}
	if err := ts.send(conn, httpMessage(true, entries...)); err != nil {
		t.Fatal(err)
	}
	m := ts.metrics(false)
	recs := ts.records()
	if len(recs) != len(ins) {
		t.Fatalf("%d records, want %d", len(recs), len(ins))
	}
	out := make([]recordTrace, len(recs))
	for i, r := range recs {
		out[i] = recordTrace{r.Trace.TraceID, r.Trace.SpanID, r.Trace.ParentSpanID, r.Trace.Source, "", r.Trace.Sampled != nil}
		if r.Trace.Sampled != nil {
			out[i].sampled = map[bool]string{true: "1", false: "0"}[*r.Trace.Sampled]
		}
	}
	return out, m
}

type recordTrace struct {
	trace, span, parent, source, sampled string
	hasSampled                           bool
}

// Every request of the W3C suite (test/test.py, default strictness) as
// Envoy logs it: the receiver takes the trace id exactly when the filter
// continues it. A tracestate with a repeated key keeps its trace id.
func TestW3CSuiteThroughReceiver(t *testing.T) {
	cases := append(append([]tct.W3CCase{}, tct.W3CSuite...), tct.W3CAdvanced...)
	var ins [][]tct.Header
	for _, c := range cases {
		ins = append(ins, c.In)
	}
	recs, _ := sendCases(t, ins)
	for i, c := range cases {
		got := recs[i]
		if c.Continues && (got.trace != tct.SuiteTraceID || got.span != tct.SuiteParentID || got.source != traceFromW3C) {
			t.Errorf("%s: trace %q span %q from %q, want the suite's trace continued from traceparent", c.Origin, got.trace, got.span, got.source)
		}
		if !c.Continues && got.trace != "" {
			t.Errorf("%s: trace id %q taken from an invalid or absent traceparent", c.Origin, got.trace)
		}
	}
}

// Every rule of the B3 README as Envoy logs the headers: the first value
// of a repeated header wins, x-b3-flags other than 1 is ignored, malformed
// headers give no trace and are counted.
func TestB3RulesThroughReceiver(t *testing.T) {
	var ins [][]tct.Header
	invalid := 0
	for _, c := range tct.B3Rules {
		ins = append(ins, c.In)
		if c.Invalid {
			invalid++
		}
	}
	recs, m := sendCases(t, ins)
	for i, c := range tct.B3Rules {
		got := recs[i]
		if got.trace != c.Trace || got.span != c.Span || got.parent != c.Parent {
			t.Errorf("%s: trace %q span %q parent %q, want %q %q %q", c.Origin, got.trace, got.span, got.parent, c.Trace, c.Span, c.Parent)
		}
		if c.Trace == "" {
			continue
		}
		want := map[string]string{"": "", "0": "0", "1": "1", "d": "1"}[c.Sampling]
		if got.sampled != want {
			t.Errorf("%s: sampled %q, want %q", c.Origin, got.sampled, want)
		}
	}
	total := 0
	for _, line := range strings.Split(m, "\n") {
		if strings.HasPrefix(line, "meshtrail_als_invalid_trace_headers_total{") {
			var v int
			fmt.Sscan(strings.Fields(line)[1], &v)
			total += v
		}
	}
	if total != invalid {
		t.Errorf("invalid trace headers counted %d, want %d (one per malformed case)", total, invalid)
	}
}
