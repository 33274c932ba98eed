package promremote

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/recordtest"
	"github.com/meshtrail/meshtrail/test/harness"
)

// TestPrometheus writes to a real Prometheus' remote-write receiver and
// reads the totals back with PromQL; a failed write is not counted, and
// a repeated successful batch adds exactly its own requests.
func TestPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs Prometheus (make test)")
	}
	p := harness.StartPrometheus(t, harness.PrometheusOptions{})
	ctx := context.Background()
	down, _ := New(Options{URL: "http://" + harness.FreeAddr(t) + "/api/v1/write"})
	// A clock that stands still: every export falls in one millisecond, as
	// two quick ones do, and Prometheus refuses a second sample of a series
	// at the same timestamp.
	now := time.Now()
	e, err := New(Options{URL: p.URL + "/api/v1/write", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	g := recordtest.New("promrw", 60)
	var batch []*record.Record
	for i := 0; i < 10; i++ {
		_, recs := g.Request([]uint32{200, 503}[i%2])
		batch = append(batch, recs...)
	}
	if err := down.Export(ctx, batch); err == nil {
		t.Fatal("export to a closed port succeeded")
	}
	if err := e.Export(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := e.Export(ctx, batch[:5]); err != nil { // one more request's hops
		t.Fatal(err)
	}
	check := func(q string, want float64) {
		harness.Eventually(t, 30*time.Second, q, func() error {
			res, err := p.Query(ctx, q)
			if err != nil {
				return err
			}
			if len(res) != 1 || res[0].Value != fmt.Sprint(want) {
				return fmt.Errorf("got %+v, want %v", res, want)
			}
			return nil
		})
	}
	check(`sum(meshtrail_requests_total{destination_workload="ratings-v1",reporter="destination"})`, 11)
	check(`sum(meshtrail_requests_total{destination_workload="ratings-v1",response_code="503"})`, 10)
	check(`sum(meshtrail_request_duration_milliseconds_count{source_workload_namespace="promrw"})`, 11*4) // 4 of 5 hops have a mesh caller
}
