package pipeline

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/recordtest"
	"github.com/meshtrail/meshtrail/test/harness"
)

// fastRetry is a queue block that retries quickly and spills to dir.
func fastRetry(dir string) string {
	return fmt.Sprintf(`queue:
      memory: {records: 200}
      workers: 1
      batch: {max_records: 50, max_wait: 50ms}
      retry: {initial_backoff: 20ms, max_backoff: 300ms}
      disk: {dir: %q, fsync: always}
      timeout: 5s`, dir)
}

func build(t *testing.T, yaml string) ([]fanout.Sink, func(context.Context) error, *prometheus.Registry) {
	t.Helper()
	c, err := parse(yaml)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	sinks, shutdown, err := Build(c, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sinks, shutdown, reg
}

// waitFailing waits until the queue has retried records, which proves it
// met the outage (rather than the backend returning before it tried).
func waitFailing(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	harness.Eventually(t, 60*time.Second, "the queue retries during the outage", func() error {
		mfs, err := reg.Gather()
		if err != nil {
			return err
		}
		for _, mf := range mfs {
			if mf.GetName() != "meshtrail_sink_records_retried_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetCounter().GetValue() > 0 {
					return nil
				}
			}
		}
		return fmt.Errorf("no record retried yet")
	})
}

func feed(t *testing.T, sinks []fanout.Sink, g *recordtest.Gen, requests int) (n int) {
	t.Helper()
	for i := 0; i < requests; i++ {
		tid, recs := g.Request([]uint32{200, 503}[i%2])
		recs = append(recs, g.LogLine(tid, recs[1].Trace.SpanID, "reviews", fmt.Sprintf("line %d", g.Base.UnixNano()+int64(i))))
		for _, s := range sinks {
			if err := s.ConsumeRecords(context.Background(), recs); err != nil {
				t.Fatalf("%s refused records: %v", s.Name(), err)
			}
		}
		n += len(recs)
	}
	return n
}

// TestOutageElasticsearch stops zincsearch mid-stream, then stops
// meshtrail's sinks too while the store is down (the queue persists to
// disk), builds them again from the same configuration, restarts the
// store: every record accepted before, during and after the outage is
// stored exactly once (stable ids make the retries idempotent).
func TestOutageElasticsearch(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs zincsearch (make test)")
	}
	z := harness.StartZinc(t)
	t.Setenv("MT_ZINC_PASSWORD", z.Password)
	yaml := fmt.Sprintf(`sinks:
  elasticsearch:
    enabled: true
    url: %s/es
    index: outage-{namespace}
    auth: {username: %s, password_env: MT_ZINC_PASSWORD}
    %s
`, z.URL, z.User, fastRetry(t.TempDir()))
	sinks, shutdown, reg := build(t, yaml)
	g := recordtest.New("esoutage", 70)
	total := feed(t, sinks, g, 20)
	z.Stop()
	total += feed(t, sinks, g, 20)
	waitFailing(t, reg)
	// meshtrail stops during the outage: what is queued goes to disk.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = shutdown(ctx)
	cancel()
	sinks, shutdown, _ = build(t, yaml)
	defer shutdown(context.Background())
	z.Restart(t)
	total += feed(t, sinks, g, 20)
	harness.Eventually(t, 90*time.Second, "every record stored once", func() error {
		hits, n, err := z.Search(context.Background(), "outage-esoutage", map[string]any{"query": map[string]any{"match_all": map[string]any{}}, "size": 10000})
		if err != nil {
			return err
		}
		if n != total || len(hits) != total {
			return fmt.Errorf("%d documents (%d distinct), want %d", n, len(hits), total)
		}
		return nil
	})
}

// TestOutageFluentd cuts the network between meshtrail and a real
// collector mid-stream (a TCP relay in front of the fluentforward
// receiver is closed, connections and all, then reopened on the same
// port): every record arrives (at least once: the forward protocol cannot
// deduplicate a record whose ack was lost).
//
// The collector itself is not stopped: its fluentforward receiver acks an
// event once it is in an in-process channel, before the pipeline has it,
// and drops that channel on shutdown, so a stopped collector can lose
// acknowledged records whatever the client does.
func TestOutageFluentd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs otelcol (make test)")
	}
	c := harness.StartOtelcol(t)
	relay := startRelay(t, c.Forward)
	sinks, shutdown, reg := build(t, fmt.Sprintf("sinks:\n  fluentd:\n    enabled: true\n    address: %s\n    timeout: 2s\n    %s\n", relay.addr, fastRetry(t.TempDir())))
	defer shutdown(context.Background())
	g := recordtest.New("fluentoutage", 71)
	want := map[string]bool{}
	gen := func(n int) {
		for i := 0; i < n; i++ {
			tid, recs := g.Request(200)
			want[tid] = true
			for _, s := range sinks {
				if err := s.ConsumeRecords(context.Background(), recs); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	gen(20)
	relay.stop()
	gen(20)
	waitFailing(t, reg)
	relay.start(t)
	gen(20)
	harness.Eventually(t, 90*time.Second, "every record in the collector", func() error {
		logs, err := c.ReadLogs()
		if err != nil {
			return err
		}
		got := map[string]int{}
		for _, l := range logs {
			got[l.Attributes["trace_id"]]++
		}
		for tid := range want {
			if got[tid] < 5 {
				return fmt.Errorf("trace %s: %d of 5 records (%d records in all)", tid, got[tid], len(logs))
			}
		}
		return nil
	})
}

// relay is a TCP relay that can be cut and restored on the same address.
type relay struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        []net.Conn
}

func startRelay(t *testing.T, target string) *relay {
	r := &relay{addr: harness.FreeAddr(t), target: target}
	r.start(t)
	t.Cleanup(r.stop)
	return r
}

func (r *relay) start(t *testing.T) {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", r.target)
			if err != nil {
				in.Close()
				continue
			}
			r.mu.Lock()
			if r.ln != ln {
				// stop ran while this connection was being set up: it must
				// not outlive the outage it would otherwise bridge.
				r.mu.Unlock()
				in.Close()
				out.Close()
				return
			}
			r.conns = append(r.conns, in, out)
			r.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
}

func (r *relay) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

// TestOutageLoki stops Loki mid-stream and restarts it on the same
// storage: every line accepted before, during and after the outage can be
// read back, none twice.
func TestOutageLoki(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs Loki (make test)")
	}
	l := harness.StartLoki(t)
	sinks, shutdown, reg := build(t, fmt.Sprintf("sinks:\n  loki:\n    enabled: true\n    url: %s/loki/api/v1/push\n    timeout: 2s\n    %s\n", l.URL, fastRetry(t.TempDir())))
	defer shutdown(context.Background())
	g := recordtest.New("lokioutage", 73)
	total := feed(t, sinks, g, 20)
	l.Stop()
	total += feed(t, sinks, g, 20)
	waitFailing(t, reg)
	l.Restart(t)
	total += feed(t, sinks, g, 20)
	start, end := g.Base.Add(-time.Minute), time.Now().Add(time.Minute)
	harness.Eventually(t, 120*time.Second, "every line in Loki once", func() error {
		got, err := l.Query(context.Background(), `{namespace="lokioutage"}`, start, end, 5000)
		if err != nil {
			return err
		}
		seen := map[string]int{}
		for _, e := range got {
			seen[e.Line]++
		}
		if len(got) != total || len(seen) != total {
			return fmt.Errorf("%d lines (%d distinct), want %d", len(got), len(seen), total)
		}
		return nil
	})
}

// TestOutageTraces cuts the network to a real Jaeger (a TCP relay in
// front of its OTLP gRPC and Zipkin receivers, closed with its
// connections, then reopened) mid-stream: every trace sent before, during
// and after the cut ends up in Jaeger as one complete tree, no span twice.
// Jaeger is not restarted: its in-memory storage would forget the traces
// from before.
func TestOutageTraces(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs Jaeger (make test)")
	}
	j := harness.StartJaeger(t)
	otlpRelay, zipkinRelay := startRelay(t, j.OTLPGRPC), startRelay(t, j.Zipkin)
	for _, tc := range []struct {
		name, yaml string
		relay      *relay
		seed       uint64
	}{
		{"otlp-grpc", fmt.Sprintf("sinks:\n  otlp:\n    enabled: true\n    endpoint: %s\n    timeout: 2s\n    %s\n", otlpRelay.addr, fastRetry(t.TempDir())), otlpRelay, 74},
		{"zipkin", fmt.Sprintf("sinks:\n  zipkin:\n    enabled: true\n    url: http://%s/api/v2/spans\n    timeout: 2s\n    %s\n", zipkinRelay.addr, fastRetry(t.TempDir())), zipkinRelay, 75},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sinks, shutdown, reg := build(t, tc.yaml)
			defer shutdown(context.Background())
			g := recordtest.New("traceoutage", tc.seed)
			traces := map[string][]*record.Record{}
			send := func(n int) []string {
				var ids []string
				for i := 0; i < n; i++ {
					tid, recs := g.Request(200)
					traces[tid] = recs
					ids = append(ids, tid)
					for _, s := range sinks {
						if err := s.ConsumeRecords(context.Background(), recs); err != nil {
							t.Fatal(err)
						}
					}
				}
				return ids
			}
			waitTrees := func(ids []string) {
				for _, tid := range ids {
					harness.Eventually(t, 90*time.Second, "trace "+tid, func() error {
						got, err := j.Trace(context.Background(), tid)
						if err != nil {
							return err
						}
						return recordtest.CheckJaegerTree(got, traces[tid])
					})
				}
			}
			// Before the cut, wait until Jaeger has everything, so no
			// request is in flight when the connection drops (a request
			// cut after Jaeger took it would be resent: at least once).
			waitTrees(send(10))
			tc.relay.stop()
			during := send(10)
			waitFailing(t, reg)
			tc.relay.start(t)
			after := send(10)
			waitTrees(append(during, after...))
		})
	}
}
