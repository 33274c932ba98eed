package parse

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/internal/record"
)

func TestFindTrace(t *testing.T) {
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, tc := range []struct {
		line, trace, span, source string
	}{
		{"GET / traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", tid, "00f067aa0ba902b7", "traceparent"},
		{`{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`, tid, "00f067aa0ba902b7", "traceparent"},
		{"b3: 4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", tid, "00f067aa0ba902b7", "b3"},
		{"X-B3-TraceId: a3ce929d0e0e4736 X-B3-SpanId: 00f067aa0ba902b7", "0000000000000000a3ce929d0e0e4736", "00f067aa0ba902b7", "x-b3"},
		{"msg=hi trace_id=4BF92F3577B34DA6A3CE929D0E0E4736 span_id=00f067aa0ba902b7", tid, "00f067aa0ba902b7", "line"},
		{`{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","msg":"x"}`, tid, "", "line"},
		// Invalid by tracecontext's rules: nothing.
		{"traceparent=ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", "", ""},
		{"traceparent=00-00000000000000000000000000000000-00f067aa0ba902b7-01", "", "", ""},
		{"trace_id=00000000000000000000000000000000", "", "", ""},
		{"trace_id=4bf92f3577b34da6a3ce929d0e0e47", "", "", ""},
		{"trace_idx=4bf92f3577b34da6a3ce929d0e0e4736", "", "", ""},
		{"nothing to see", "", "", ""},
		// An invalid traceparent does not hide a valid trace_id.
		{"traceparent=00-zz trace_id=4bf92f3577b34da6a3ce929d0e0e4736", tid, "", "line"},
	} {
		var tr record.Trace
		FindTrace(tc.line, &tr)
		if tr.TraceID != tc.trace || tr.SpanID != tc.span || tr.Source != tc.source {
			t.Errorf("%q: got %+v, want %s %s %s", tc.line, tr, tc.trace, tc.span, tc.source)
		}
	}
}

func TestJSON(t *testing.T) {
	var r record.Record
	err := JSON{}.Parse([]byte(`{"time":"2026-12-02T21:00:00.5Z","level":"ERROR","msg":"pay \"failed\"","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","n":42,"ok":true,"obj":{"a":[1,"}"]},"nil":null}`), &r)
	if err != nil {
		t.Fatal(err)
	}
	if r.Message != `pay "failed"` || r.Level != "error" || !r.StartTime.Equal(time.Date(2026, 12, 2, 21, 0, 0, 5e8, time.UTC)) ||
		r.Trace.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || r.Trace.SpanID != "00f067aa0ba902b7" ||
		r.Fields["n"] != "42" || r.Fields["ok"] != "true" || r.Fields["obj"] != `{"a":[1,"}"]}` || r.Fields["nil"] != "null" {
		t.Fatalf("%+v", r)
	}
	for _, bad := range []string{`{"a":}`, `{"a":1`, `[1,2]`, `{"a":1} x`, `{"a":"\x01"}`, `{"a":NaN}`, `{"a":0x10}`, `{"a" 1}`, "not json"} {
		var r record.Record
		if err := (JSON{}).Parse([]byte(bad), &r); err == nil {
			t.Errorf("%q parsed", bad)
		} else if r.Message != bad {
			t.Errorf("%q: the line was not kept as the message: %q", bad, r.Message)
		}
	}
}

func TestUnixTimes(t *testing.T) {
	want := time.Date(2026, 12, 2, 21, 0, 0, 0, time.UTC)
	for _, s := range []string{"1796245200", "1796245200000", "1796245200000000", "1796245200000000000", "2026-12-02T21:00:00Z", "2026-12-02 21:00:00"} {
		got, ok := ParseTime(s)
		if !ok || !got.Equal(want) {
			t.Errorf("%s: %v %v", s, got, ok)
		}
	}
}

func TestLogfmt(t *testing.T) {
	var r record.Record
	if err := (Logfmt{}).Parse([]byte(`ts=2026-12-02T21:00:00Z level=warn msg="slow \"db\" query" dur=1.2s trace_id=4bf92f3577b34da6a3ce929d0e0e4736 debug`), &r); err != nil {
		t.Fatal(err)
	}
	if r.Message != `slow "db" query` || r.Level != "warn" || r.Fields["dur"] != "1.2s" || r.Trace.TraceID == "" || r.StartTime.IsZero() {
		t.Fatalf("%+v", r)
	}
	if _, ok := r.Fields["debug"]; !ok {
		t.Fatalf("bare key lost: %+v", r.Fields)
	}
	if err := (Logfmt{}).Parse([]byte(`msg="unterminated`), &r); err == nil || !strings.Contains(err.Error(), "unterminated") {
		t.Fatalf("err = %v", err)
	}
}

func TestCRIAndDocker(t *testing.T) {
	var r record.Record
	if err := (CRI{}).Parse([]byte(`2026-12-02T21:00:00.123456789Z stderr F {"level":"error","msg":"boom","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}`), &r); err != nil {
		t.Fatal(err)
	}
	if r.Stream != "stderr" || r.Message != "boom" || r.Level != "error" || r.Trace.TraceID == "" || r.StartTime.Nanosecond() != 123456789 {
		t.Fatalf("%+v", r)
	}
	r = record.Record{}
	if err := (CRI{}).Parse([]byte(`2026-12-02T21:00:00Z stdout F plain text`), &r); err != nil || r.Message != "plain text" {
		t.Fatalf("%+v %v", r, err)
	}
	r = record.Record{}
	if err := (CRI{}).Parse([]byte(`yesterday stdout F x`), &r); err == nil || r.Message != "yesterday stdout F x" {
		t.Fatalf("bad time accepted: %+v %v", r, err)
	}
	r = record.Record{}
	if err := (Docker{}).Parse([]byte(`{"log":"hello trace_id=4bf92f3577b34da6a3ce929d0e0e4736\n","stream":"stdout","time":"2026-12-02T21:00:00.5Z"}`), &r); err != nil {
		t.Fatal(err)
	}
	if r.Message != "hello trace_id=4bf92f3577b34da6a3ce929d0e0e4736" || r.Stream != "stdout" || r.Trace.TraceID == "" || r.StartTime.IsZero() {
		t.Fatalf("%+v", r)
	}
}

func TestPresets(t *testing.T) {
	for _, tc := range []struct {
		parser, line string
		check        func(r record.Record) bool
	}{
		{"nginx", `10.0.0.1 - - [02/Dec/2026:21:00:00 +0000] "GET /cart?traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 HTTP/1.1" 503 19 "-" "curl/8.5"`,
			func(r record.Record) bool {
				return r.Fields["status"] == "503" && r.Fields["remote_addr"] == "10.0.0.1" && r.StartTime.Equal(time.Date(2026, 12, 2, 21, 0, 0, 0, time.UTC)) && r.Trace.TraceID == "4bf92f3577b34da6a3ce929d0e0e4736"
			}},
		{"apache", `127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08"`,
			func(r record.Record) bool {
				return r.Fields["remote_user"] == "frank" && r.Fields["bytes"] == "2326" && r.StartTime.Year() == 2000
			}},
		{"envoy", `[2026-12-02T21:00:00.310Z] "GET /reviews/0 HTTP/1.1" 503 UF,URX 0 91 4 - "-" "curl/8" "a1b2" "reviews:9080" "10.0.0.2:9080"`,
			func(r record.Record) bool {
				return r.Fields["response_flags"] == "UF,URX" && r.Fields["request_id"] == "a1b2" && r.Fields["upstream_host"] == "10.0.0.2:9080" && r.StartTime.Nanosecond() == 310e6
			}},
	} {
		p, err := New(tc.parser, Options{})
		if err != nil {
			t.Fatal(err)
		}
		var r record.Record
		if err := p.Parse([]byte(tc.line), &r); err != nil || !tc.check(r) || r.Message != tc.line {
			t.Errorf("%s: %v %+v", tc.parser, err, r)
		}
	}
	if _, err := New("regex", Options{Regex: `^\d+`}); err == nil {
		t.Error("a pattern without named groups was accepted")
	}
	p, _ := New("regex", Options{Regex: `^(?P<level>\w+) (?P<msg>.*) trace=(?P<trace_id>\w+)$`})
	var r record.Record
	if err := p.Parse([]byte("WARN disk almost full trace=4bf92f3577b34da6a3ce929d0e0e4736"), &r); err != nil || r.Level != "warn" ||
		r.Message != "disk almost full" || r.Trace.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("regex: %v %+v", err, r)
	}
}

func TestTransforms(t *testing.T) {
	var chain []Transform
	for _, y := range []string{
		`{"rename":{"from":"lvl","to":"severity"}}`, `{"level":{"field":"severity"}}`, `{"drop":["password"]}`,
		`{"add":{"env":"prod"}}`, `{"convert":{"field":"status","type":"int"}}`, `{"convert":{"field":"ok","type":"bool"}}`,
		`{"timestamp":{"field":"at","layout":"02/01/2006 15:04"}}`,
	} {
		var tr Transform
		if err := json.Unmarshal([]byte(y), &tr); err != nil {
			t.Fatal(err)
		}
		if err := tr.Validate("transforms[0]"); err != nil {
			t.Fatal(err)
		}
		chain = append(chain, tr)
	}
	r := record.Record{Fields: map[string]string{"lvl": "WARN", "password": "x", "status": " 503", "ok": "maybe", "at": "02/12/2026 21:00"}}
	for i := range chain {
		chain[i].Apply(&r)
	}
	want := map[string]string{"env": "prod", "status": "503"}
	if r.Level != "warn" || !r.StartTime.Equal(time.Date(2026, 12, 2, 21, 0, 0, 0, time.UTC)) || len(r.Fields) != len(want) ||
		r.Fields["env"] != "prod" || r.Fields["status"] != "503" {
		t.Fatalf("%+v", r)
	}
	var bad Transform
	json.Unmarshal([]byte(`{"convert":{"field":"x","type":"date"}}`), &bad)
	if err := bad.Validate("transforms[3]"); err == nil || !strings.Contains(err.Error(), "transforms[3].convert.type") {
		t.Fatalf("err = %v", err)
	}
}
