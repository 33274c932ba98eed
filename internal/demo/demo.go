// Package demo is "meshtrail demo": the ALS receiver on its embedded
// defaults, fed over real gRPC by a synthetic Istio mesh (Bookinfo behind an
// ingress gateway), and then what a user comes for: one request's whole
// trail grouped by trace id, RED per service edge, and the snippet that
// points a real mesh at the receiver. No external server is needed.
package demo

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshtrail/meshtrail/als"
	"github.com/meshtrail/meshtrail/internal/meshsim"
	"github.com/meshtrail/meshtrail/internal/pipeline"
	"github.com/meshtrail/meshtrail/internal/record"
)

const usageText = `Usage: meshtrail demo [flags]

Starts the ALS receiver on embedded defaults, streams a synthetic Istio mesh
(Bookinfo: gateway -> productpage -> details, reviews -> ratings, with W3C and
B3 propagation, failures and retries) to it over gRPC, one stream per Envoy,
and prints the trail of a failed request, RED metrics per service edge, and
how to point a real Istio mesh at the receiver.

Flags:
`

// Command runs "meshtrail demo".
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usageText); fs.PrintDefaults() }
	requests := fs.Int("requests", 300, "end-user requests to simulate")
	errorRate := fs.Float64("error-rate", 0.08, "chance that a call to ratings fails (503, UF,URX after retries)")
	out := fs.String("out", "", "NDJSON records file (default: a new file under the temp directory)")
	keep := fs.Bool("keep-running", false, "keep the receiver serving after the demo (Ctrl-C stops it) so you can scrape /metrics")
	logLevel := fs.String("log-level", "warn", "receiver log level")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *out == "" {
		dir, err := os.MkdirTemp("", "meshtrail-demo-")
		if err != nil {
			fmt.Fprintln(stderr, "meshtrail demo:", err)
			return 1
		}
		*out = filepath.Join(dir, "records.ndjson")
	}
	if err := run(ctx, *requests, *errorRate, *out, *keep, *logLevel, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "meshtrail demo:", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, n int, errorRate float64, out string, keep bool, logLevel string, stdout, stderr io.Writer) error {
	cfg := als.DefaultConfig()
	cfg.Listen, cfg.MetricsListen = "127.0.0.1:0", "127.0.0.1:0"
	pcfg := pipeline.DefaultConfig()
	pcfg.Out = out
	logger := als.NewLogger(stderr, logLevel)
	reg := prometheus.NewRegistry()
	p, err := pipeline.New(pcfg, reg, logger)
	if err != nil {
		return err
	}
	svc, err := als.Start(cfg, p.Consumer(pipeline.Queued), reg, logger, p.Gatherer())
	if err != nil {
		_ = p.Shutdown(context.Background())
		return err
	}
	svc.AddCloser(p.Shutdown)
	fmt.Fprintf(stdout, "meshtrail ALS receiver on %s (metrics http://%s/metrics), records -> %s\n", svc.Addr(), svc.MetricsAddr(), out)

	mesh := meshsim.Bookinfo(uint64(time.Now().UnixNano()))
	mesh.ErrorRate = errorRate
	// Without the meshtrail filter the trail is joined from the logged
	// headers alone, whichever format each service propagates.
	mesh.WithFilter = false
	start := time.Now().Add(-time.Duration(n) * 20 * time.Millisecond)
	var entries []meshsim.Entry
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(i) * 20 * time.Millisecond)
		entries = append(entries, mesh.Request(at).Entries...)
		entries = append(entries, mesh.Background(at)...)
	}
	batches := meshsim.Batch(entries, 16<<10)
	fmt.Fprintf(stdout, "streaming %d access log entries of %d requests from %d Envoys (one gRPC stream each)...\n", len(entries), n, len(batches))
	conn, err := grpc.NewClient(svc.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := meshsim.Stream(ctx, conn, "meshtrail-demo", batches); err != nil {
		return err
	}
	metricsURL := "http://" + svc.MetricsAddr() + "/metrics"
	if !keep {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Shutdown(sctx); err != nil {
			return err
		}
	} else {
		// Flush what was written so far; the sink flushes every second.
		time.Sleep(1100 * time.Millisecond)
	}
	f, err := os.Open(out)
	if err != nil {
		return err
	}
	recs, err := record.ReadNDJSON(f)
	f.Close()
	if err != nil {
		return err
	}
	report(stdout, recs, out, svc.Addr())
	if keep {
		fmt.Fprintf(stdout, "\nreceiver still running: curl -H 'Accept: application/openmetrics-text' %s   (Ctrl-C to stop)\n", metricsURL)
		return svc.Wait(ctx, 10*time.Second)
	}
	return nil
}

func report(w io.Writer, recs []*record.Record, out, addr string) {
	byTrace := map[string][]*record.Record{}
	var failed []string
	for _, r := range recs {
		byTrace[r.Trace.TraceID] = append(byTrace[r.Trace.TraceID], r)
		if r.HTTP.ResponseCode >= 500 && r.Trace.TraceID != "" {
			failed = append(failed, r.Trace.TraceID)
		}
	}
	// The failed request with the longest trail: a failure deep in the
	// call chain (ratings refusing reviews) shows more than one the
	// gateway answered itself.
	var failedTrace string
	for _, id := range failed {
		if failedTrace == "" || len(byTrace[id]) > len(byTrace[failedTrace]) {
			failedTrace = id
		}
	}
	fmt.Fprintf(w, "\n%d records in %d traces; every hop of a request carries its trace id, whatever it propagated (traceparent, b3, x-b3-*).\n", len(recs), len(byTrace))
	if failedTrace != "" {
		fmt.Fprintf(w, "\n== The trail of a failed request: trace %s\n", failedTrace)
		trail := byTrace[failedTrace]
		sort.Slice(trail, func(i, j int) bool {
			if !trail[i].StartTime.Equal(trail[j].StartTime) {
				return trail[i].StartTime.Before(trail[j].StartTime)
			}
			return trail[i].Reporter > trail[j].Reporter
		})
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "start\treporter\tsource -> destination\trequest\tcode\tflags\ttries\tms\ttrace from")
		t0 := trail[0].StartTime
		for _, r := range trail {
			fmt.Fprintf(tw, "+%.1fms\t%s\t%s -> %s\t%s %s\t%d\t%s\t%d\t%.1f\t%s\n",
				float64(r.StartTime.Sub(t0).Microseconds())/1000, r.Reporter, orUnknown(r.Source.Name), destName(r), r.HTTP.Method, r.HTTP.Path,
				r.HTTP.ResponseCode, r.ResponseFlags, max(r.Upstream.RequestAttemptCount, 1), float64(r.Timings.Total.Microseconds())/1000, r.Trace.Source)
		}
		tw.Flush()
		fmt.Fprintf(w, "   (find it again: grep %s %s)\n", failedTrace, out)
	}

	type edge struct{ src, dst string }
	type stat struct {
		n, failed int
		ms        []float64
	}
	edges := map[edge]*stat{}
	for _, r := range recs {
		if r.Reporter != record.ReporterSource { // count each call once, at the caller
			continue
		}
		e := edge{orUnknown(r.Source.Name), destName(r)}
		s := edges[e]
		if s == nil {
			s = &stat{}
			edges[e] = s
		}
		s.n++
		if r.Failed() {
			s.failed++
		}
		s.ms = append(s.ms, float64(r.Timings.Total.Microseconds())/1000)
	}
	keys := make([]edge, 0, len(edges))
	for e := range edges {
		keys = append(keys, e)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].src+keys[i].dst < keys[j].src+keys[j].dst })
	fmt.Fprintln(w, "\n== RED per service edge (reported by the caller's proxy)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "source\tdestination\trequests\terrors\terror %\tp50 ms\tp99 ms")
	for _, e := range keys {
		s := edges[e]
		sort.Float64s(s.ms)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f\t%.1f\t%.1f\n", e.src, e.dst, s.n, s.failed, 100*float64(s.failed)/float64(s.n), pct(s.ms, 0.5), pct(s.ms, 0.99))
	}
	tw.Flush()
	fmt.Fprintf(w, `
The same figures are Prometheus metrics on /metrics (meshtrail_requests_total,
meshtrail_request_duration_milliseconds, ... with Istio's labels and trace_id exemplars).

== Point a real Istio mesh at it
1. Run the receiver where the mesh can reach it:
     meshtrail als --listen 0.0.0.0:18000 --metrics-listen 0.0.0.0:18090 --out /var/log/meshtrail/records.ndjson
2. Send the mesh's access logs to it and turn them on:
%s(This demo's receiver was %s.)
`, als.IstioSnippet, addr)
}

func destName(r *record.Record) string {
	if r.Destination.Name != "" {
		return r.Destination.Name
	}
	return orUnknown(r.Upstream.ServiceName)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func pct(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}
