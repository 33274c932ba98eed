package zipkin

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/recordtest"
	"github.com/meshtrail/meshtrail/test/harness"
)

func TestEncode(t *testing.T) {
	e, err := New(Options{URL: "http://127.0.0.1:1/api/v2/spans"})
	if err != nil {
		t.Fatal(err)
	}
	g := recordtest.New("shop", 20)
	_, recs := g.Request(503)
	body, err := e.Encode(recs)
	if err != nil {
		t.Fatal(err)
	}
	var got []struct {
		TraceID, ID, ParentID, Kind, Name string
		Timestamp, Duration               int64
		LocalEndpoint                     struct{ ServiceName string }
		Tags                              map[string]string
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("%d spans, want %d", len(got), len(recs))
	}
	for i, s := range got {
		r := recs[i]
		if s.TraceID != r.Trace.TraceID || s.ID != r.Trace.SpanID || s.ParentID != r.Trace.ParentSpanID {
			t.Errorf("span %d ids %s/%s/%s, record %+v", i, s.TraceID, s.ID, s.ParentID, r.Trace)
		}
		want := "SERVER"
		if r.Reporter == record.ReporterSource {
			want = "CLIENT"
		}
		if s.Kind != want || s.Timestamp != r.StartTime.UnixMicro() || s.Duration != r.Timings.Total.Microseconds() {
			t.Errorf("span %d: kind %s ts %d dur %d", i, s.Kind, s.Timestamp, s.Duration)
		}
	}
	if got[4].Tags["error"] == "" {
		t.Errorf("503 span has no error tag: %v", got[4].Tags)
	}
}

// TestJaegerZipkin posts spans to a real Jaeger v2's Zipkin receiver and
// reads every trace back as one correct tree.
func TestJaegerZipkin(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs Jaeger (make test)")
	}
	j := harness.StartJaeger(t)
	ctx := context.Background()
	e, err := New(Options{URL: "http://" + j.Zipkin + "/api/v2/spans"})
	if err != nil {
		t.Fatal(err)
	}
	g := recordtest.New("shop", 21)
	traces := map[string][]*record.Record{}
	var batch []*record.Record
	for i := 0; i < 3; i++ {
		tid, recs := g.Request([]uint32{200, 404, 503}[i])
		traces[tid] = recs
		batch = append(batch, recs...)
	}
	if err := e.Export(ctx, batch); err != nil {
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
}
