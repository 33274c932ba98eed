package sidecar

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshtrail/meshtrail/sidecar/checkpoint"
)

// BenchmarkTailToNDJSON runs the agent in-process over a file of b.N
// lines to an NDJSON file: raw lines with a traceparent, and JSON lines.
// bench/tailbench measures the whole process against the peer.
func BenchmarkTailToNDJSON(b *testing.B) {
	for _, kind := range []string{"raw", "json"} {
		b.Run(kind, func(b *testing.B) {
			dir := b.TempDir()
			in := filepath.Join(dir, "app.log")
			f, _ := os.Create(in)
			w := bufio.NewWriter(f)
			var size int64
			for n := 0; n < b.N; n++ {
				var l string
				if kind == "json" {
					l = fmt.Sprintf(`{"time":"2026-12-02T21:00:00.%03dZ","level":"info","msg":"request handled","path":"/api/cart/%d","user":%d,"trace_id":"%016x%016x","span_id":"%016x"}`+"\n", n%1000, n%1000, n%97, n+1, n*7+1, n*13+1)
				} else {
					l = fmt.Sprintf("2026-12-02T21:00:00.%03dZ INFO request handled path=/api/cart/%d user=%d traceparent=00-%016x%016x-%016x-01\n", n%1000, n%1000, n%97, n+1, n*7+1, n*13+1)
				}
				w.WriteString(l)
				size += int64(len(l))
			}
			w.Flush()
			f.Close()
			cfg := DefaultConfig()
			cfg.Paths, cfg.Parser, cfg.StateDir, cfg.Out = []string{in}, kind, filepath.Join(dir, "state"), filepath.Join(dir, "out.ndjson")
			os.MkdirAll(cfg.StateDir, 0o700)
			out, _, err := openOut(cfg.Out, -1, io.Discard)
			if err != nil {
				b.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			a, err := newAgent(cfg, checkpoint.State{Output: -1}, out, out, func(string) PodMeta { return PodMeta{} }, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			b.SetBytes(size / int64(b.N))
			b.ResetTimer()
			go func() { done <- a.Run(ctx) }()
			delivered := func() float64 {
				var m dto.Metric
				a.metrics.delivered.Write(&m)
				return m.GetCounter().GetValue()
			}
			for delivered() < float64(b.N) {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			cancel()
			<-done
		})
	}
}
