package parse

import (
	"testing"
	"unicode/utf8"

	"github.com/meshtrail/meshtrail/internal/record"
)

// FuzzParsers: no input panics, and a line a parser refuses is kept whole
// as the message; trace ids found are always valid 32-hex lowercase.
func FuzzParsers(f *testing.F) {
	for _, s := range []string{
		`{"msg":"x","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","a":{"b":[1,2,{"c":"\u00e9"}]}}`,
		`level=info msg="a \"b\"" trace_id=4bf92f3577b34da6a3ce929d0e0e4736 x`,
		`2026-12-02T21:00:00Z stdout F {"msg":"x"}`,
		`{"log":"x\n","stream":"stderr","time":"2026-12-02T21:00:00Z"}`,
		`traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 b3=1-2 X-B3-TraceId: 1`,
		"\xff\xfe{\"", `{"a":1e400}`, `{"":""}`, `{}`, `=`, `"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		if !utf8.Valid(line) {
			return // the agent repairs UTF-8 before parsing
		}
		for _, name := range Names() {
			p, err := New(name, Options{Regex: `^(?P<level>\w+) (?P<msg>.*)$`})
			if err != nil {
				t.Fatal(err)
			}
			var r record.Record
			if err := p.Parse(line, &r); err != nil && r.Message != string(line) {
				t.Fatalf("%s refused %q but kept %q", name, line, r.Message)
			}
			if id := r.Trace.TraceID; id != "" {
				if _, ok := TraceID(id); !ok || len(id) != 32 {
					t.Fatalf("%s: invalid trace id %q from %q", name, id, line)
				}
			}
			if id := r.Trace.SpanID; id != "" && len(id) != 16 {
				t.Fatalf("%s: invalid span id %q from %q", name, id, line)
			}
		}
	})
}
