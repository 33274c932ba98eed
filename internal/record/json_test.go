package record

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleRecord() *Record {
	yes := true
	return &Record{
		Kind:        KindHTTP,
		StartTime:   time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.UTC),
		ReceivedAt:  time.Date(2026, 11, 21, 10, 0, 1, 0, time.UTC),
		Node:        Node{ID: "sidecar~10.0.0.1~productpage-v1-abc.default~default.svc.cluster.local", Type: "sidecar", IP: "10.0.0.1", Pod: "productpage-v1-abc", Namespace: "default", Workload: "productpage-v1", LogName: "als"},
		Reporter:    ReporterSource,
		Source:      Workload{Name: "productpage-v1", Namespace: "default", CanonicalService: "productpage", CanonicalRevision: "v1", Principal: "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"},
		Destination: Workload{Name: "reviews-v2", Namespace: "default", App: "reviews", Version: "v2"},
		ID:          "app.log:8d3f00:1024",
		Tenant:      "default",
		Trace:       Trace{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7", ParentSpanID: "00f067aa0ba902b8", Sampled: &yes, Source: "traceparent"},
		HTTP: HTTP{Method: "GET", Scheme: "http", Authority: "reviews:9080", Path: "/reviews/0?x=\"q\"\n", Protocol: "HTTP/1.1",
			ResponseCode: 503, ResponseCodeDetails: "upstream_reset_before_response_started{connection_failure}", GRPCStatus: "14",
			RequestID: "a-b", UserAgent: "curl/8 \u2028", RequestHeaderBytes: 120, ResponseBodyBytes: 19},
		Timings:                  Timings{LastRxByte: 1500 * time.Microsecond, FirstUpstreamTxByte: 2 * time.Millisecond, LastDownstreamTxByte: 12345 * time.Microsecond, Total: 12345 * time.Microsecond},
		Upstream:                 Upstream{Cluster: "outbound|9080||reviews.default.svc.cluster.local", Direction: "outbound", Port: 9080, Service: "reviews.default.svc.cluster.local", ServiceName: "reviews", ServiceNamespace: "default", Host: "10.0.0.2:9080", RequestAttemptCount: 2},
		Downstream:               Downstream{RemoteAddress: "10.0.0.1:5000"},
		TLS:                      TLS{Version: "TLSv1.3", SNI: "outbound_.9080_._.reviews.default.svc.cluster.local", PeerURISAN: "spiffe://cluster.local/ns/default/sa/x"},
		ResponseFlags:            "UF,URX",
		ConnectionSecurityPolicy: "mutual_tls",
		SampleRate:               0.5,
		RequestHeaders:           map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "x-bad": "\xff\xfe"},
		FilterState:              map[string]string{"wasm.meshtrail_trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"},
	}
}

func TestAppendJSONIsValidAndRoundTrips(t *testing.T) {
	r := sampleRecord()
	b := AppendJSON(nil, r)
	if !json.Valid(b) {
		t.Fatalf("invalid JSON: %s", b)
	}
	got, err := ParseJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	want := *r
	want.RequestHeaders = map[string]string{"traceparent": r.RequestHeaders["traceparent"], "x-bad": "\ufffd\ufffd"}
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", *got, want)
	}
}

func TestAppendJSONMatchesEncodingJSONForStrings(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\"back\\slash", "ctl\x00\x01\x1f", "tab\tnl\nret\r", "\u2028\u2029", "bad\xffutf8", "日本語", "<html>&"} {
		got := AppendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, got, err)
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if back != want {
			t.Errorf("%q -> %s -> %q, want %q", s, got, back, want)
		}
	}
}

func TestEmptyRecordOmitsEverythingButKind(t *testing.T) {
	b := AppendJSON(nil, &Record{Kind: KindTCP})
	if string(b) != `{"kind":"tcp"}` {
		t.Fatalf("got %s", b)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("hello\x00\xff\u2028")
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, b, err)
		}
		if back != strings.ToValidUTF8(s, "\ufffd") {
			// encoding/json replaces each invalid byte; ToValidUTF8 collapses runs.
			if len([]rune(back)) < len([]rune(strings.ToValidUTF8(s, "\ufffd"))) {
				t.Fatalf("%q decoded to %q", s, back)
			}
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	r := sampleRecord()
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], r)
	}
}

// Every byte value in every lane of the eight-byte fast path: it must
// never call a byte plain that needs escaping.
func TestNeedsEscape8FindsEveryByteThatNeedsEscaping(t *testing.T) {
	for pos := 0; pos < 8; pos++ {
		for c := 0; c < 256; c++ {
			b := []byte("abcdefgh")
			b[pos] = byte(c)
			needs := c < 0x20 || c == '"' || c == '\\' || c >= 0x80
			if got := needsEscape8(string(b), 0); needs && !got {
				t.Fatalf("byte %#x at %d: fast path says plain", c, pos)
			} else if !needs && got {
				t.Errorf("byte %#x at %d: needless slow path", c, pos)
			}
		}
	}
}

func TestLogRecordRoundTrips(t *testing.T) {
	r := &Record{
		Kind: KindLog, StartTime: time.Date(2026, 12, 2, 21, 0, 0, 5, time.UTC),
		Message: "boom \"x\"", Level: "error", Stream: "/var/log/app/app.log",
		Fields: map[string]string{"k8s.container.name": "api"},
		ID:     "2049:1234:9f86d081884c7d65:4096", Truncated: true, InvalidUTF8: true,
	}
	b := AppendJSON(nil, r)
	for _, want := range []string{`"record_id":"2049:1234:9f86d081884c7d65:4096"`, `"truncated":true`, `"invalid_utf8":true`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	got, err := ParseJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, *r) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", *got, *r)
	}
}
