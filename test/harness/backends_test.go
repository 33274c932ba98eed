package harness

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// These check the backend starters themselves against the real servers.

func TestStartPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs Prometheus (make test)")
	}
	p := StartPrometheus(t, PrometheusOptions{})
	// Prometheus scrapes nothing here but answers queries about itself.
	Eventually(t, 30*time.Second, "prometheus answers a query", func() error {
		_, err := p.Query(context.Background(), "vector(1)")
		return err
	})
	resp, err := http.Post(p.URL+"/api/v1/write", "application/x-protobuf", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		t.Errorf("remote-write receiver not enabled: %d", resp.StatusCode)
	}
}

func TestStartOtelcol(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs otelcol (make test)")
	}
	c := StartOtelcol(t)
	logs, err := c.ReadLogs()
	if err != nil || len(logs) != 0 {
		t.Fatalf("fresh collector: %d logs, %v", len(logs), err)
	}
}

func TestStartMockES(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs mock-es (make test)")
	}
	StartMockES(t, MockESOptions{Dup: 100})
}
