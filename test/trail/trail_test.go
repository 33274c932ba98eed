// Package trail is the end-to-end test of what a user comes for: the whole
// trail of a failed request, joined by one trace id, in the backends they
// already run. The real `meshtrail als --config` binary receives a
// synthetic Istio mesh over gRPC and fans out to real Jaeger (OTLP),
// Loki and Prometheus (scraping it); the test reads each back.
package trail

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshtrail/meshtrail/internal/meshsim"
	"github.com/meshtrail/meshtrail/test/harness"
)

func TestFailedRequestTrailAcrossBackends(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: starts Jaeger, Loki and Prometheus (run by make test)")
	}
	bin := buildMeshtrail(t)

	jaeger := harness.StartJaeger(t)
	loki := harness.StartLoki(t)
	grpcAddr, metricsAddr := harness.FreeAddr(t), harness.FreeAddr(t)
	prom := harness.StartPrometheus(t, harness.PrometheusOptions{Targets: []string{metricsAddr}})

	dir := t.TempDir()
	cfg := fmt.Sprintf(`listen: %s
metrics_listen: %s
out: %s
sinks:
  otlp:
    enabled: true
    protocol: grpc
    endpoint: %s
    queue:
      batch: {max_wait: 100ms}
  loki:
    enabled: true
    url: %s/loki/api/v1/push
    queue:
      batch: {max_wait: 100ms}
`, grpcAddr, metricsAddr, filepath.Join(dir, "records.ndjson"), jaeger.OTLPGRPC, loki.URL)
	cfgPath := filepath.Join(dir, "als.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	mt := harness.Start(t, "meshtrail", nil, bin, "als", "--config", cfgPath, "--log-level", "debug")
	harness.WaitHTTP(t, mt, "http://"+metricsAddr+"/readyz", 30*time.Second)

	// A mesh with the meshtrail filter in every proxy, and enough failures
	// that some requests fail at ratings.
	mesh := meshsim.Bookinfo(11)
	mesh.ErrorRate = 0.5
	var entries []meshsim.Entry
	var failed *meshsim.Request
	start := time.Now().Add(-2 * time.Second)
	for i := 0; i < 40; i++ {
		r := mesh.Request(start.Add(time.Duration(i) * 10 * time.Millisecond))
		entries = append(entries, r.Entries...)
		if r.Failed && failed == nil {
			failed = &r
		}
	}
	if failed == nil {
		t.Fatal("no failed request in the simulation")
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := meshsim.Stream(ctx, conn, "e2e", meshsim.Batch(entries, 16<<10)); err != nil {
		t.Fatal(err)
	}
	hops := len(failed.Entries)
	t.Logf("failed request: trace %s, %d access log entries", failed.TraceID, hops)

	// Jaeger: every hop is a span of one tree, the failed call marked as an error.
	var spans []harness.JaegerSpan
	harness.Eventually(t, 60*time.Second, "the failed request's trace in Jaeger", func() error {
		spans, err = jaeger.Trace(ctx, failed.TraceID)
		if err != nil {
			return err
		}
		if len(spans) != hops {
			return fmt.Errorf("%d spans, want %d", len(spans), hops)
		}
		return nil
	})
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.SpanID] = true
	}
	roots := 0
	sawError := false
	for _, s := range spans {
		if s.ParentSpanID == "" {
			roots++
		} else if !ids[s.ParentSpanID] {
			t.Errorf("span %s (%s) has parent %s outside the trace", s.SpanID, s.OperationName, s.ParentSpanID)
		}
		if s.Tags["error"] == "true" || s.Tags["otel.status_code"] == "ERROR" {
			sawError = true
		}
	}
	if roots != 1 {
		t.Errorf("the trace has %d roots, want one tree rooted at the gateway", roots)
	}
	if !sawError {
		t.Errorf("no span of the failed request is marked as an error: %+v", spans)
	}

	// Loki: the same records, found by the trace_id structured metadata.
	harness.Eventually(t, 60*time.Second, "the failed request's records in Loki", func() error {
		got, err := loki.Query(ctx, fmt.Sprintf(`{source="http"} | trace_id=%q`, failed.TraceID), start.Add(-time.Minute), time.Now().Add(time.Minute), 1000)
		if err != nil {
			return err
		}
		if len(got) != hops {
			return fmt.Errorf("%d log lines, want %d", len(got), hops)
		}
		for _, e := range got {
			if !strings.Contains(e.Line, failed.TraceID) {
				return fmt.Errorf("line without the trace id: %s", e.Line)
			}
		}
		return nil
	})

	// Prometheus: the RED metrics, scraped, with the failure and exemplars.
	harness.Eventually(t, 60*time.Second, "RED metrics in Prometheus", func() error {
		// By service: a refused connection names the pod only once the
		// receiver has seen ratings' own stream, which here runs
		// alongside its callers'.
		res, err := prom.Query(ctx, `sum(meshtrail_requests_total{destination_service_name="ratings",response_code="503",response_flags="UF,URX"})`)
		if err != nil {
			return err
		}
		if len(res) == 0 || res[0].Value == "0" {
			return fmt.Errorf("no failed ratings requests yet: %v", res)
		}
		return nil
	})
	harness.Eventually(t, 60*time.Second, "trace_id exemplars in Prometheus", func() error {
		ex, err := prom.QueryExemplars(ctx, `meshtrail_requests_total{response_code="503"}`, 10*time.Minute)
		if err != nil {
			return err
		}
		for _, e := range ex {
			if len(e.Labels["trace_id"]) == 32 {
				return nil
			}
		}
		return fmt.Errorf("no exemplar with a trace_id among %d", len(ex))
	})
}
