package otlplogs

import (
	"testing"
	"time"
	"unicode/utf8"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/proto"
)

// FuzzRecords: any request that decodes converts without panicking, into
// records with valid UTF-8 and ids only of the right length.
func FuzzRecords(f *testing.F) {
	b, _ := proto.Marshal(request())
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var req collogspb.ExportLogsServiceRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		for _, r := range Records(&req, time.Unix(0, 0)) {
			if !utf8.ValidString(r.Message) {
				t.Fatalf("invalid UTF-8 message %q", r.Message)
			}
			if id := r.Trace.TraceID; id != "" && len(id) != 32 {
				t.Fatalf("trace id %q", id)
			}
			if id := r.Trace.SpanID; id != "" && len(id) != 16 {
				t.Fatalf("span id %q", id)
			}
		}
	})
}
