package fluentd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/recordtest"
	"github.com/meshtrail/meshtrail/test/harness"
)

func TestEventMarshal(t *testing.T) {
	g := recordtest.New("shop", 50)
	tid, recs := g.Request(503)
	for _, r := range append(recs, g.LogLine(tid, recs[0].Trace.SpanID, "reviews", "hello")) {
		b, err := (&Event{R: r}).MarshalMsg(nil)
		if err != nil {
			t.Fatal(err)
		}
		var js bytes.Buffer
		if _, err := msgp.CopyToJSON(&js, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(js.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", js.Bytes(), err)
		}
		if m["trace_id"] != tid || m["kind"] != r.Kind.String() {
			t.Errorf("event %s", js.Bytes())
		}
		if r.Kind == record.KindLog && (m["message"] != "hello" || m["fields"].(map[string]any)["logger"] != "app") {
			t.Errorf("log event %s", js.Bytes())
		}
		if r.Kind == record.KindHTTP && (m["response_code"] != float64(r.HTTP.ResponseCode) || m["duration_ms"] != float64(r.Timings.Total.Milliseconds())) {
			t.Errorf("http event %s", js.Bytes())
		}
	}
}

// TestOtelcolForward sends records with acknowledgements to a real
// OpenTelemetry Collector's fluentforward receiver: Export returns after
// every ack, and every record arrives in the collector's file output with
// its fields as attributes.
func TestOtelcolForward(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs otelcol (make test)")
	}
	c := harness.StartOtelcol(t)
	e, err := New(Options{Address: c.Forward})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	g := recordtest.New("fluent", 51)
	var batch []*record.Record
	want := map[string]int{}
	for i := 0; i < 20; i++ {
		tid, recs := g.Request(200)
		recs = append(recs, g.LogLine(tid, recs[1].Trace.SpanID, "reviews", fmt.Sprintf("line %d", i)))
		want[tid] = len(recs)
		batch = append(batch, recs...)
	}
	if err := e.Export(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 30*time.Second, "records in the collector's output", func() error {
		logs, err := c.ReadLogs()
		if err != nil {
			return err
		}
		got := map[string]int{}
		bodies := 0
		for _, l := range logs {
			got[l.Attributes["trace_id"]]++
			if l.Attributes["fluent.tag"] == "meshtrail.log" && l.Body != "" {
				bodies++
			}
		}
		if len(logs) != len(batch) {
			return fmt.Errorf("%d records, want %d", len(logs), len(batch))
		}
		for tid, n := range want {
			if got[tid] != n {
				return fmt.Errorf("trace %s: %d records, want %d", tid, got[tid], n)
			}
		}
		if bodies != 20 {
			return fmt.Errorf("%d log lines with a body, want 20 (first: %+v)", bodies, logs[0])
		}
		return nil
	})
}

func TestExportToNothingIsRetryable(t *testing.T) {
	e, err := New(Options{Address: harness.FreeAddr(t), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	g := recordtest.New("fluent", 52)
	_, recs := g.Request(200)
	err = e.Export(context.Background(), recs)
	if err == nil {
		t.Fatal("export to a closed port succeeded")
	}
	var pe *fanout.PartialError
	if errors.As(err, &pe) || fanout.IsPermanent(err) {
		t.Errorf("want a plain retryable error for the whole batch, got %T %v", err, err)
	}
}
