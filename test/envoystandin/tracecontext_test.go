package envoystandin

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/meshtrail/meshtrail/internal/tracecontext"
	tct "github.com/meshtrail/meshtrail/internal/tracecontext/tracecontexttest"
)

// sendRaw sends a request through the proxy with the headers as given:
// names in the sender's case (Go writes a non-canonical key as it is) and
// every value of a repeated header on its own line, in order. It returns
// the headers the upstream received.
func sendRaw(t *testing.T, p *Proxy, in []tct.Header) http.Header {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.Addr()+"/reviews/0", nil)
	req.Host = "reviews.default.svc.cluster.local:9080"
	for _, h := range in {
		req.Header[h.Name] = append(req.Header[h.Name], h.Value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var seen http.Header
	if err := json.Unmarshal(b, &seen); err != nil {
		t.Fatalf("upstream answer %q: %v", b, err)
	}
	return seen
}

// one returns the only value of name the upstream received.
func one(t *testing.T, h http.Header, name string) string {
	t.Helper()
	v := h.Values(name)
	if len(v) > 1 {
		t.Fatalf("%s sent %d times: %q", name, len(v), v)
	}
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// Every request of the W3C suite (test/test.py at its default strictness)
// over real HTTP through the compiled filter, header names in the case the
// suite sends them, as the suite's harness would send them to a service
// behind the proxy: the traceparent and tracestate the upstream receives
// are what the harness checks.
func TestW3CSuiteOverHTTP(t *testing.T) {
	up := upstreamEcho(t)
	_, p := startProxy(t, HostOptions{PluginConfig: []byte(`{"tracing":{"formats":["w3c"],"sampling_percentage":100}}`)},
		ProxyConfig{Upstream: up.URL, Inbound: true})
	for _, c := range tct.W3CSuite {
		t.Run(c.Origin, func(t *testing.T) {
			seen := sendRaw(t, p, c.In)
			out, err := tracecontext.ParseTraceparent(one(t, seen, "traceparent"))
			if err != nil {
				t.Fatalf("outbound traceparent: %v", err)
			}
			if continued := out.TraceID.String() == tct.SuiteTraceID; continued != c.Continues {
				t.Errorf("trace id %s, continued = %v, want %v", out.TraceID, continued, c.Continues)
			}
			if c.Continues && out.SpanID.String() == tct.SuiteParentID {
				t.Errorf("parent id %s not replaced", out.SpanID)
			}
			if msg := c.CheckTraceState(strings.Join(seen.Values("tracestate"), ",")); msg != "" {
				t.Error(msg)
			}
			if c.RandomFlag && out.TraceFlags&tracecontext.FlagRandom == 0 {
				t.Errorf("random flag lost: %s", one(t, seen, "traceparent"))
			}
		})
	}
}

// Every rule of the B3 README over real HTTP through the compiled filter,
// every format written: the b3 header the upstream receives continues the
// trace (the inbound span as parent) with the inbound decision, or starts
// a new one.
func TestB3RulesOverHTTP(t *testing.T) {
	up := upstreamEcho(t)
	_, p := startProxy(t, HostOptions{PluginConfig: []byte(`{"tracing":{"formats":["w3c","b3","b3multi"],"sampling_percentage":100}}`)},
		ProxyConfig{Upstream: up.URL, Inbound: true})
	for _, c := range tct.B3Rules {
		t.Run(c.Origin, func(t *testing.T) {
			seen := sendRaw(t, p, c.In)
			b3 := one(t, seen, "b3")
			out, err := tracecontext.ParseB3Single(b3)
			if err != nil {
				t.Fatalf("outbound b3 %q: %v", b3, err)
			}
			if c.Trace != "" && (out.TraceID.String() != c.Trace || out.ParentSpanID.String() != c.Span) {
				t.Errorf("b3 %s, want trace %s continued from span %s", b3, c.Trace, c.Span)
			}
			if c.Trace == "" && out.ParentSpanID.IsValid() {
				t.Errorf("b3 %s: a new trace has no parent", b3)
			}
			want := c.Sampling
			if want == "" {
				want = "1"
			}
			if parts := strings.Split(b3, "-"); len(parts) < 3 || parts[2] != want {
				t.Errorf("b3 %s: sampling state want %s", b3, want)
			}
			if got := one(t, seen, "x-b3-traceid"); got != out.TraceID.String() {
				t.Errorf("x-b3-traceid %q, b3 %s", got, b3)
			}
		})
	}
}
