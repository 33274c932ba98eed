package queue

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/record"
)

// rec builds record i; its id travels in a request header, as a sink that
// deduplicates (Elasticsearch document ids) would use it.
func rec(i int) *record.Record {
	return &record.Record{
		Kind:           record.KindHTTP,
		StartTime:      time.Unix(1700000000, int64(i)).UTC(),
		Node:           record.Node{Namespace: "ns-" + strconv.Itoa(i%3)},
		Trace:          record.Trace{TraceID: fmt.Sprintf("%032x", i+1), SpanID: fmt.Sprintf("%016x", i+1)},
		StreamID:       "stream-1",
		HTTP:           record.HTTP{Method: "GET", Path: "/r/" + strconv.Itoa(i), ResponseCode: 200},
		RequestHeaders: map[string]string{"x-id": strconv.Itoa(i)},
	}
}

func recs(from, to int) []*record.Record {
	out := make([]*record.Record, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, rec(i))
	}
	return out
}

func idOf(r *record.Record) int {
	n, err := strconv.Atoi(r.RequestHeaders["x-id"])
	if err != nil {
		panic(err)
	}
	return n
}

// ndjsonServer is a real HTTP backend on 127.0.0.1 that takes NDJSON
// batches, remembers each record id's arrivals, and can be taken down
// (listener and connections closed) and brought back on the same port.
type ndjsonServer struct {
	addr string

	mu       sync.Mutex
	srv      *http.Server
	seen     map[int]int
	order    []int // ids in order of first arrival
	changed  chan struct{}
	requests int
}

func newNDJSONServer(t *testing.T) *ndjsonServer {
	s := &ndjsonServer{seen: map[int]int{}, changed: make(chan struct{}, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	t.Cleanup(s.down)
	return s
}

func (s *ndjsonServer) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(s.handle)}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go srv.Serve(ln)
}

func (s *ndjsonServer) handle(w http.ResponseWriter, req *http.Request) {
	var ids []int
	sc := bufio.NewScanner(req.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		r, err := record.ParseJSON(sc.Bytes())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ids = append(ids, idOf(r))
	}
	if sc.Err() != nil {
		http.Error(w, sc.Err().Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.requests++
	for _, id := range ids {
		if s.seen[id] == 0 {
			s.order = append(s.order, id)
		}
		s.seen[id]++
	}
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
	w.WriteHeader(http.StatusOK)
}

func (s *ndjsonServer) down() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (s *ndjsonServer) up(t *testing.T) {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	s.serve(ln)
}

func (s *ndjsonServer) unique() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// waitUnique waits until n distinct ids have arrived. The long limit only
// turns a hang into a failure; no test asserts on how long it took.
func (s *ndjsonServer) waitUnique(t *testing.T, n int) {
	t.Helper()
	limit := time.After(60 * time.Second)
	for s.unique() < n {
		select {
		case <-s.changed:
		case <-time.After(50 * time.Millisecond):
		case <-limit:
			t.Fatalf("only %d of %d records arrived", s.unique(), n)
		}
	}
}

// httpExporter posts a batch as NDJSON: 2xx is success, 4xx permanent,
// anything else (including a refused connection) retryable.
type httpExporter struct {
	url    string
	client *http.Client
}

func newHTTPExporter(addr string) *httpExporter {
	return &httpExporter{url: "http://" + addr + "/ingest", client: &http.Client{Transport: &http.Transport{}}}
}

func (e *httpExporter) Name() string { return "ndjson-http" }

func (e *httpExporter) Export(ctx context.Context, batch []*record.Record) error {
	var body []byte
	for _, r := range batch {
		body = append(record.AppendJSON(body, r), '\n')
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return fanout.Permanent(err)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode < 500:
		return fanout.Permanent(fmt.Errorf("status %d", resp.StatusCode))
	}
	return fmt.Errorf("status %d", resp.StatusCode)
}

// funcExporter is an in-process exporter for the error-contract tests.
type funcExporter struct {
	name string
	fn   func(ctx context.Context, batch []*record.Record) error
}

func (e funcExporter) Name() string { return e.name }
func (e funcExporter) Export(ctx context.Context, b []*record.Record) error {
	return e.fn(ctx, b)
}

// gate is a backend switch for in-process exporters: down returns a
// retryable error; up records the ids.
type gate struct {
	mu    sync.Mutex
	open  bool
	seen  map[int]int
	order []int
	cond  *sync.Cond
}

func newGate(open bool) *gate {
	g := &gate{open: open, seen: map[int]int{}}
	g.cond = sync.NewCond(&g.mu)
	return g
}

var errDown = errors.New("backend down")

func (g *gate) export(_ context.Context, b []*record.Record) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.open {
		return errDown
	}
	for _, r := range b {
		id := idOf(r)
		if g.seen[id] == 0 {
			g.order = append(g.order, id)
		}
		g.seen[id]++
	}
	g.cond.Broadcast()
	return nil
}

func (g *gate) set(open bool) {
	g.mu.Lock()
	g.open = open
	g.mu.Unlock()
}

func (g *gate) unique() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.seen)
}

func (g *gate) waitUnique(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for g.unique() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d records arrived", g.unique(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func intp(n int) *int { return &n }

// fastConfig keeps test queues quick: small batches, short waits.
func fastConfig() Config {
	c := Config{Workers: 1}
	c.Memory.Records = intp(100)
	c.Batch = BatchConfig{MaxRecords: 20, MaxWait: Duration(2 * time.Millisecond)}
	c.Retry = RetryConfig{InitialBackoff: Duration(time.Millisecond), MaxBackoff: Duration(10 * time.Millisecond)}
	c.Disk.SegmentBytes = 16 << 10
	c.Disk.Fsync = FsyncNever
	return c
}

func newQueue(t *testing.T, exp fanout.Exporter, cfg Config) *Queue {
	t.Helper()
	q, err := New(exp, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func shutdown(t *testing.T, q *Queue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := q.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func consume(t *testing.T, q *Queue, rs []*record.Record, chunk int) {
	t.Helper()
	for len(rs) > 0 {
		n := min(chunk, len(rs))
		if err := q.ConsumeRecords(context.Background(), rs[:n]); err != nil {
			t.Fatal(err)
		}
		rs = rs[n:]
	}
}

func assertInOrder(t *testing.T, order []int, n int) {
	t.Helper()
	if len(order) != n {
		t.Fatalf("%d distinct ids, want %d", len(order), n)
	}
	for i, id := range order {
		if id != i {
			t.Fatalf("arrival %d is id %d: order not kept", i, id)
		}
	}
}

// value reads a single counter or gauge.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
