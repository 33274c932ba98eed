package promremote

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/recordtest"
	"github.com/meshtrail/meshtrail/internal/sink/istiometrics"
)

// BenchmarkPush is one push of a RED sink's registry (gather, flatten,
// encode, snappy, request) with the network left out, reported per
// sample pushed.
func BenchmarkPush(b *testing.B) {
	reg := prometheus.NewRegistry()
	red, err := istiometrics.New(istiometrics.Options{}, reg)
	if err != nil {
		b.Fatal(err)
	}
	for i := uint64(0); i < 20; i++ {
		_ = red.ConsumeRecords(context.Background(), recordtest.Batch("bench", i, 500))
	}
	p, err := NewPusher(Options{Gatherer: reg, URL: "http://bench/api/v1/write", Replica: "bench",
		Client: &http.Client{Transport: recordtest.Loopback{Status: http.StatusNoContent}, Timeout: time.Minute}}, prometheus.NewRegistry(), nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Push(context.Background()); err != nil {
		b.Fatal(err)
	}
	samples := p.batch.sent
	b.ReportAllocs()
	b.ResetTimer()
	start := recordtest.CPUTime()
	for i := 0; i < b.N; i++ {
		if err := p.Push(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	cpu := recordtest.CPUTime() - start
	b.ReportMetric(float64(samples), "samples/push")
	b.ReportMetric(float64(b.N*samples)/cpu.Seconds(), "samples/cpu-s")
}
