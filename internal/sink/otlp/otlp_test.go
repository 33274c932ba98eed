package otlp

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/recordtest"
	"github.com/meshtrail/meshtrail/test/harness"
)

func TestEncode(t *testing.T) {
	g := recordtest.New("shop", 10)
	tid, recs := g.Request(503)
	recs = append(recs, g.LogLine(tid, recs[0].Trace.SpanID, "reviews", "not a span"))
	ro := Encode(recs, instrumentation.Scope{Name: "test"})
	if len(ro) != 5 {
		t.Fatalf("%d spans, want 5 (the log line is not one)", len(ro))
	}
	for i, s := range ro {
		r := recs[i]
		if s.SpanContext().SpanID().String() != r.Trace.SpanID || s.Parent().IsValid() != (r.Trace.ParentSpanID != "") {
			t.Errorf("span %d ids %v parent %v, record %+v", i, s.SpanContext(), s.Parent(), r.Trace)
		}
		want := trace.SpanKindServer
		if r.Reporter == record.ReporterSource {
			want = trace.SpanKindClient
		}
		if s.SpanKind() != want {
			t.Errorf("span %d kind %v, want %v", i, s.SpanKind(), want)
		}
		if sv, _ := s.Resource().Set().Value("service.name"); sv.AsString() == "" {
			t.Errorf("span %d: no service.name", i)
		}
	}
	if ro[4].Status().Code.String() != "Error" {
		t.Errorf("503 span status %v", ro[4].Status())
	}
}

// TestJaegerOTLP sends requests over OTLP gRPC and OTLP HTTP to a real
// Jaeger v2 and reads every trace back from its query API: each hop is a
// span with the record's ids, kind, service, start and duration, and the
// hops of one request form one tree.
func TestJaegerOTLP(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs Jaeger (make test)")
	}
	j := harness.StartJaeger(t)
	ctx := context.Background()
	for _, proto := range []Protocol{GRPC, HTTP} {
		t.Run(string(proto), func(t *testing.T) {
			exp, err := New(ctx, Options{Protocol: proto, Endpoint: map[Protocol]string{GRPC: j.OTLPGRPC, HTTP: j.OTLPHTTP}[proto]})
			if err != nil {
				t.Fatal(err)
			}
			defer exp.Shutdown(ctx)
			g := recordtest.New("shop", map[Protocol]uint64{GRPC: 11, HTTP: 12}[proto])
			traces := map[string][]*record.Record{}
			var batch []*record.Record
			for i := 0; i < 3; i++ {
				tid, recs := g.Request([]uint32{200, 404, 503}[i])
				traces[tid] = recs
				batch = append(batch, recs...)
			}
			if err := exp.Export(ctx, batch); err != nil {
				t.Fatal(err)
			}
			for tid, recs := range traces {
				harness.Eventually(t, 30*time.Second, "trace "+tid+" in jaeger", func() error {
					got, err := j.Trace(ctx, tid)
					if err != nil {
						return err
					}
					return recordtest.CheckJaegerTree(got, recs)
				})
			}
		})
	}
}
