package tracecontexttest

import "strings"

// B3Case is one request carrying B3 headers and what extraction must make
// of it. Origins quote the section of the B3 propagation README
// (github.com/openzipkin/b3-propagation at 3e54cda) the case comes from.
type B3Case struct {
	Origin string
	In     []Header
	// Trace is the trace id continued (32 hex, 64-bit ids left-padded);
	// "" means no context is extracted and a new trace starts.
	Trace string
	// Span and Parent are the inbound span and parent span ids ("" none).
	Span, Parent string
	// Sampling is the decision extracted: "" defer, "0" deny, "1" accept,
	// "d" debug; with no Trace, a decision sent alone.
	Sampling string
	// Invalid: a B3 header was present but malformed; it is counted and
	// ignored.
	Invalid bool
}

// B3 example ids: the README's multi-header and single-header examples
// (80f198ee..., e457b5a2..., 05e3ac9a...) and its TraceId/SpanId/
// ParentSpanId header examples (463ac35c..., a2fb4a1d..., 0020000...).
const (
	B3Trace     = "80f198ee56343ba864fe8b2a57d3eff7"
	B3Span      = "e457b5a2e4d86bd1"
	B3Parent    = "05e3ac9a4f6e3b90"
	B3Trace128  = "463ac35c9f6413ad48485a3953bb6124"
	B3Span2     = "a2fb4a1d1a96d312"
	B3Parent2   = "0020000000000001"
	B3Trace64   = "48485a3953bb6124"
	b3Padded64  = "0000000000000000" + B3Trace64
	readme      = "b3-propagation README "
	readmeMulti = readme + "\"Multiple Headers\": "
	readmeOne   = readme + "\"Single Header\": "
)

func h(name, value string) Header { return Header{name, value} }

// B3Rules is every rule of the B3 README as cases: both encodings, each
// identifier, each sampling state, the relation between the headers,
// malformed data, and precedence.
var B3Rules = []B3Case{
	// Multiple headers.
	{Origin: readmeMulti + "the example (TraceId, ParentSpanId, SpanId, Sampled: 1)",
		In:    []Header{h("X-B3-TraceId", B3Trace), h("X-B3-ParentSpanId", B3Parent), h("X-B3-SpanId", B3Span), h("X-B3-Sampled", "1")},
		Trace: B3Trace, Span: B3Span, Parent: B3Parent, Sampling: "1"},
	{Origin: readmeMulti + "TraceId, SpanId and ParentSpanId header examples",
		In:    []Header{h("x-b3-traceid", B3Trace128), h("x-b3-spanid", B3Span2), h("x-b3-parentspanid", B3Parent2), h("x-b3-sampled", "1")},
		Trace: B3Trace128, Span: B3Span2, Parent: B3Parent2, Sampling: "1"},
	{Origin: readmeMulti + "TraceId is 32 or 16 lower-hex: 16",
		In:    []Header{h("x-b3-traceid", B3Trace64), h("x-b3-spanid", B3Span), h("x-b3-sampled", "1")},
		Trace: b3Padded64, Span: B3Span, Sampling: "1"},
	{Origin: readmeMulti + "TraceId and SpanId can be sent alone (defer)",
		In:    []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span)},
		Trace: B3Trace, Span: B3Span},
	{Origin: readmeMulti + "a deny decision sent alone (X-B3-Sampled: 0, the /health example)",
		In: []Header{h("X-B3-Sampled", "0")}, Sampling: "0"},
	{Origin: readmeMulti + "an accept decision sent alone",
		In: []Header{h("x-b3-sampled", "1")}, Sampling: "1"},
	{Origin: readmeMulti + "deny with ids",
		In:    []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span), h("x-b3-sampled", "0")},
		Trace: B3Trace, Span: B3Span, Sampling: "0"},
	{Origin: readmeMulti + "true instead of 1: a lenient implementation may accept it",
		In:    []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span), h("x-b3-sampled", "true")},
		Trace: B3Trace, Span: B3Span, Sampling: "1"},
	{Origin: readmeMulti + "false instead of 0: a lenient implementation may accept it",
		In:    []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span), h("x-b3-sampled", "false")},
		Trace: B3Trace, Span: B3Span, Sampling: "0"},
	{Origin: readmeMulti + "Debug Flag: X-B3-Flags: 1 is debug",
		In:    []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span), h("x-b3-flags", "1")},
		Trace: B3Trace, Span: B3Span, Sampling: "d"},
	{Origin: readmeMulti + "Debug Flag: debug implies accept, over X-B3-Sampled",
		In:    []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span), h("x-b3-sampled", "0"), h("x-b3-flags", "1")},
		Trace: B3Trace, Span: B3Span, Sampling: "d"},
	{Origin: readmeMulti + "Debug Flag sent alone (\"some support guides send debug without IDs\")",
		In: []Header{h("x-b3-flags", "1")}, Sampling: "d"},
	{Origin: readmeMulti + "Debug Flag: any other value can be ignored (0)",
		In:    []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span), h("x-b3-sampled", "1"), h("x-b3-flags", "0")},
		Trace: B3Trace, Span: B3Span, Sampling: "1"},
	{Origin: readmeMulti + "Debug Flag: any other value can be ignored (2)",
		In:    []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span), h("x-b3-flags", "2")},
		Trace: B3Trace, Span: B3Span},
	{Origin: readmeMulti + "Debug Flag: any other value can be ignored (true)",
		In:    []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span), h("x-b3-sampled", "0"), h("x-b3-flags", "true")},
		Trace: B3Trace, Span: B3Span, Sampling: "0"},
	{Origin: readmeMulti + "Debug Flag: any other value can be ignored (empty)",
		In:    []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span), h("x-b3-sampled", "1"), h("x-b3-flags", "")},
		Trace: B3Trace, Span: B3Span, Sampling: "1"},
	{Origin: readmeMulti + "the first value wins: X-B3-TraceId twice",
		In:    []Header{h("x-b3-traceid", B3Trace), h("x-b3-traceid", B3Trace128), h("x-b3-spanid", B3Span), h("x-b3-sampled", "1")},
		Trace: B3Trace, Span: B3Span, Sampling: "1"},
	{Origin: readmeMulti + "the first value wins: the same X-B3-TraceId twice",
		In:    []Header{h("x-b3-traceid", B3Trace), h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span), h("x-b3-sampled", "1")},
		Trace: B3Trace, Span: B3Span, Sampling: "1"},
	{Origin: readmeMulti + "the first value wins: X-B3-SpanId and X-B3-ParentSpanId twice",
		In:    []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span), h("x-b3-spanid", B3Span2), h("x-b3-parentspanid", B3Parent), h("x-b3-parentspanid", B3Parent2)},
		Trace: B3Trace, Span: B3Span, Parent: B3Parent},
	{Origin: readmeMulti + "the first value wins: X-B3-Sampled 1 then 0",
		In:    []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span), h("x-b3-sampled", "1"), h("x-b3-sampled", "0")},
		Trace: B3Trace, Span: B3Span, Sampling: "1"},
	{Origin: readmeMulti + "the first value wins: X-B3-Sampled 0 then 1",
		In:    []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span), h("x-b3-sampled", "0"), h("x-b3-sampled", "1")},
		Trace: B3Trace, Span: B3Span, Sampling: "0"},
	{Origin: readmeMulti + "X-B3-TraceId is required unless only the sampling state is sent",
		In: []Header{h("x-b3-spanid", B3Span), h("x-b3-sampled", "1")}, Invalid: true},
	{Origin: readmeMulti + "X-B3-SpanId is required unless only the sampling state is sent",
		In: []Header{h("x-b3-traceid", B3Trace), h("x-b3-sampled", "1")}, Invalid: true},
	{Origin: readmeMulti + "an empty header (X-B3-Sampled: ) is malformed",
		In: []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span), h("x-b3-sampled", "")}, Invalid: true},
	{Origin: readmeMulti + "a nonsense value (X-B3-ParentSpanId: -) is malformed",
		In: []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span), h("x-b3-parentspanid", "-")}, Invalid: true},
	{Origin: readmeMulti + "an empty X-B3-ParentSpanId is malformed",
		In: []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span), h("x-b3-parentspanid", "")}, Invalid: true},
	{Origin: readmeMulti + "Sampling State is 1 or 0 (d is the single header's)",
		In: []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span), h("x-b3-sampled", "d")}, Invalid: true},
	{Origin: readmeMulti + "TraceId is lower-hex",
		In: []Header{h("x-b3-traceid", strings.ToUpper(B3Trace)), h("x-b3-spanid", B3Span), h("x-b3-sampled", "1")}, Invalid: true},
	{Origin: readmeMulti + "SpanId is lower-hex",
		In: []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", strings.ToUpper(B3Span)), h("x-b3-sampled", "1")}, Invalid: true},
	{Origin: readmeMulti + "TraceId is 32 or 16 characters (20)",
		In: []Header{h("x-b3-traceid", B3Trace[:20]), h("x-b3-spanid", B3Span), h("x-b3-sampled", "1")}, Invalid: true},
	{Origin: readmeMulti + "TraceId is 32 or 16 characters (33)",
		In: []Header{h("x-b3-traceid", B3Trace+"1"), h("x-b3-spanid", B3Span), h("x-b3-sampled", "1")}, Invalid: true},
	{Origin: readmeMulti + "SpanId is 16 characters (15)",
		In: []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span[:15]), h("x-b3-sampled", "1")}, Invalid: true},
	{Origin: readmeMulti + "ParentSpanId is 16 characters (17)",
		In: []Header{h("x-b3-traceid", B3Trace), h("x-b3-spanid", B3Span), h("x-b3-parentspanid", B3Parent+"0")}, Invalid: true},
	{Origin: readme + "\"Identifiers\": an all-zero trace id identifies nothing (Zipkin refuses it)",
		In: []Header{h("x-b3-traceid", strings.Repeat("0", 32)), h("x-b3-spanid", B3Span), h("x-b3-sampled", "1")}, Invalid: true},

	// Single header.
	{Origin: readmeOne + "the example {TraceId}-{SpanId}-{SamplingState}-{ParentSpanId}",
		In:    []Header{h("b3", B3Trace+"-"+B3Span+"-1-"+B3Parent)},
		Trace: B3Trace, Span: B3Span, Parent: B3Parent, Sampling: "1"},
	{Origin: readmeOne + "the last two fields are optional",
		In:    []Header{h("b3", B3Trace+"-"+B3Span)},
		Trace: B3Trace, Span: B3Span},
	{Origin: readmeOne + "Sampling State accept without ParentSpanId",
		In:    []Header{h("b3", B3Trace+"-"+B3Span+"-1")},
		Trace: B3Trace, Span: B3Span, Sampling: "1"},
	{Origin: readmeOne + "Sampling State debug (d)",
		In:    []Header{h("b3", B3Trace+"-"+B3Span+"-d")},
		Trace: B3Trace, Span: B3Span, Sampling: "d"},
	{Origin: readmeOne + "Sampling State deny (0)",
		In:    []Header{h("b3", B3Trace+"-"+B3Span+"-0")},
		Trace: B3Trace, Span: B3Span, Sampling: "0"},
	{Origin: readmeOne + "a deny decision may omit identifiers (b3: 0)",
		In: []Header{h("b3", "0")}, Sampling: "0"},
	{Origin: readmeOne + "sampling state sent alone: accept (b3: 1)",
		In: []Header{h("b3", "1")}, Sampling: "1"},
	{Origin: readmeOne + "sampling state sent alone: debug (b3: d)",
		In: []Header{h("b3", "d")}, Sampling: "d"},
	{Origin: readmeOne + "TraceId is 32 or 16 lower-hex: 16",
		In:    []Header{h("b3", B3Trace64+"-"+B3Span+"-1")},
		Trace: b3Padded64, Span: B3Span, Sampling: "1"},
	{Origin: readmeOne + "Sampling State is 0, 1 or d",
		In: []Header{h("b3", B3Trace+"-"+B3Span+"-2")}, Invalid: true},
	{Origin: readmeOne + "a bare sampling state is 0, 1 or d",
		In: []Header{h("b3", "x")}, Invalid: true},
	{Origin: readmeOne + "at most four fields",
		In: []Header{h("b3", B3Trace+"-"+B3Span+"-1-"+B3Parent+"-1")}, Invalid: true},
	{Origin: readmeOne + "ParentSpanId is 16 lower-hex",
		In: []Header{h("b3", B3Trace+"-"+B3Span+"-1-"+strings.ToUpper(B3Parent))}, Invalid: true},
	{Origin: readmeOne + "TraceId is lower-hex",
		In: []Header{h("b3", strings.ToUpper(B3Trace)+"-"+B3Span+"-1")}, Invalid: true},
	{Origin: readmeOne + "SpanId is required",
		In: []Header{h("b3", B3Trace)}, Invalid: true},
	{Origin: readmeOne + "a hyphen is no substitute for an absent ParentSpanId (\"Custom Encodings\")",
		In: []Header{h("b3", B3Trace+"-"+B3Span+"-1-")}, Invalid: true},
	{Origin: readme + "\"Http Encodings\": the single header takes precedence over the multiple ones",
		In:    []Header{h("b3", B3Trace+"-"+B3Span+"-1"), h("x-b3-traceid", B3Trace128), h("x-b3-spanid", B3Span2), h("x-b3-sampled", "0")},
		Trace: B3Trace, Span: B3Span, Sampling: "1"},
	{Origin: readme + "\"Multiple Headers\" (state headers: the first value wins) applied to b3 sent twice",
		In:    []Header{h("b3", B3Trace+"-"+B3Span+"-1"), h("b3", B3Trace128+"-"+B3Span2+"-0")},
		Trace: B3Trace, Span: B3Span, Sampling: "1"},
	{Origin: readme + "\"gRPC Encoding\": names down-cased",
		In:    []Header{h("x-b3-traceid", B3Trace), h("x-b3-parentspanid", B3Parent2), h("x-b3-spanid", B3Span), h("x-b3-sampled", "1")},
		Trace: B3Trace, Span: B3Span, Parent: B3Parent2, Sampling: "1"},
}

// Values returns the values of a lowercase header name in c's headers, in
// order, matching names case-insensitively as HTTP does.
func Values(in []Header, name string) []string {
	var out []string
	for _, x := range in {
		if strings.EqualFold(x.Name, name) {
			out = append(out, x.Value)
		}
	}
	return out
}

// Lowercase returns in with lowercase names, as Envoy hands headers to a
// filter and logs them (HTTP/2 names are lowercase; Envoy's HTTP/1 codec
// lowercases them).
func Lowercase(in []Header) []Header {
	out := make([]Header, len(in))
	for i, x := range in {
		out[i] = Header{strings.ToLower(x.Name), x.Value}
	}
	return out
}
