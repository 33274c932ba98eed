package elasticsearch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/recordtest"
	"github.com/meshtrail/meshtrail/test/harness"
)

func batchOf(t testing.TB, ns string, seed uint64, requests int) []*record.Record {
	g := recordtest.New(ns, seed)
	var batch []*record.Record
	for i := 0; i < requests; i++ {
		tid, recs := g.Request(200)
		batch = append(batch, recs...)
		batch = append(batch, g.LogLine(tid, recs[1].Trace.SpanID, "reviews", fmt.Sprintf("line %d", i)))
	}
	return batch
}

// TestEncodeIndexAndStableIDs: the index prefix follows the record's
// tenant (not its namespace), the _id is the record's own ID when set and
// a stable derived one otherwise.
func TestEncodeIndexAndStableIDs(t *testing.T) {
	e, err := New(Options{URL: "http://x", TenantPrefixes: map[string]string{"team-pay": "acme", "shop": "not-by-namespace"}})
	if err != nil {
		t.Fatal(err)
	}
	batch := batchOf(t, "shop", 40, 3)
	for i, r := range batch {
		if i%2 == 0 {
			r.Tenant = "team-pay"
		}
	}
	batch[3].ID = "file:42:offset:1234"
	body := e.Encode(nil, batch)
	sc := bufio.NewScanner(bytes.NewReader(body))
	ids := map[string]bool{}
	n := 0
	for sc.Scan() {
		var action struct {
			Create struct{ Index, ID string } `json:"create"`
		}
		var a map[string]map[string]string
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("action %s: %v", sc.Bytes(), err)
		}
		action.Create.Index, action.Create.ID = a["create"]["_index"], a["create"]["_id"]
		r := batch[n]
		wantIndex := "meshtrail-" + r.StartTime.UTC().Format("2006.01.02")
		if r.Tenant == "team-pay" {
			wantIndex = "acme-" + wantIndex
		}
		if action.Create.Index != wantIndex {
			t.Errorf("record %d (tenant %q): index %q, want %q", n, r.Tenant, action.Create.Index, wantIndex)
		}
		switch {
		case r.ID != "" && action.Create.ID != r.ID:
			t.Errorf("record %d: _id %q, want its ID %q", n, action.Create.ID, r.ID)
		case r.ID == "" && len(action.Create.ID) != 32:
			t.Errorf("record %d: derived _id %q malformed", n, action.Create.ID)
		case ids[action.Create.ID]:
			t.Errorf("_id %q duplicated", action.Create.ID)
		}
		ids[action.Create.ID] = true
		if !sc.Scan() {
			t.Fatal("action without document")
		}
		var doc map[string]any
		if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
			t.Fatalf("document %s: %v", sc.Bytes(), err)
		}
		if doc["@timestamp"] == nil || doc["trace_id"] != r.Trace.TraceID {
			t.Errorf("document %s", sc.Bytes())
		}
		n++
	}
	if n != len(batch) {
		t.Fatalf("%d documents, want %d", n, len(batch))
	}
	if again := e.Encode(nil, batch); !bytes.Equal(again, body) {
		t.Error("encoding the same batch twice differs: ids are not stable")
	}
}

func newExporter(t *testing.T, url string, o Options) (*Exporter, *prometheus.Registry, string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	dl := filepath.Join(t.TempDir(), "dead-letter.ndjson")
	f, err := os.Create(dl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	o.URL, o.Registerer, o.DeadLetter = url, reg, f
	e, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return e, reg, dl
}

func count(e *Exporter, result string) int {
	var m dto.Metric
	if err := e.items.WithLabelValues(result).Write(&m); err != nil {
		panic(err)
	}
	return int(m.GetCounter().GetValue())
}

func lines(t *testing.T, path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

// TestMockES drives the per-item paths with Elastic's mock-es, each path
// made deterministic by a 100% rate.
func TestMockES(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs mock-es (make test)")
	}
	ctx := context.Background()
	batch := batchOf(t, "shop", 41, 4)

	t.Run("409 on create counts as stored", func(t *testing.T) {
		m := harness.StartMockES(t, harness.MockESOptions{Dup: 100})
		e, _, dl := newExporter(t, m.URL, Options{})
		if err := e.Export(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if count(e, "duplicate") != len(batch) || lines(t, dl) != 0 {
			t.Errorf("duplicates %d dead letters %d", count(e, "duplicate"), lines(t, dl))
		}
	})
	t.Run("429 items are returned for retry", func(t *testing.T) {
		m := harness.StartMockES(t, harness.MockESOptions{TooMany: 100})
		e, _, _ := newExporter(t, m.URL, Options{})
		err := e.Export(ctx, batch)
		var pe *fanout.PartialError
		if !errors.As(err, &pe) || len(pe.Retry) != len(batch) {
			t.Fatalf("want a PartialError retrying all %d: %v", len(batch), err)
		}
		for i := range batch {
			if pe.Retry[i] != batch[i] {
				t.Fatalf("retry[%d] is not the record sent", i)
			}
		}
	})
	t.Run("rejected items are dead-lettered, the rest succeed", func(t *testing.T) {
		m := harness.StartMockES(t, harness.MockESOptions{NonIndex: 100})
		e, _, dl := newExporter(t, m.URL, Options{})
		if err := e.Export(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if lines(t, dl) != len(batch) || count(e, "dead_letter") != len(batch) {
			t.Errorf("dead letters: file %d counter %d, want %d", lines(t, dl), count(e, "dead_letter"), len(batch))
		}
		b, _ := os.ReadFile(dl)
		first, _, _ := bytes.Cut(b, []byte("\n"))
		var d struct {
			Status   int
			Document map[string]any
		}
		if err := json.Unmarshal(first, &d); err != nil || d.Status != 406 || d.Document["trace_id"] != batch[0].Trace.TraceID {
			t.Errorf("dead letter %s: %v", first, err)
		}
	})
	t.Run("mixed 409 and 429", func(t *testing.T) {
		m := harness.StartMockES(t, harness.MockESOptions{Dup: 50, TooMany: 50})
		e, _, _ := newExporter(t, m.URL, Options{})
		err := e.Export(ctx, batch)
		var pe *fanout.PartialError
		retried := 0
		if errors.As(err, &pe) {
			retried = len(pe.Retry)
		} else if err != nil {
			t.Fatal(err)
		}
		if got := count(e, "duplicate") + count(e, "created") + retried; got != len(batch) || retried != count(e, "retry") {
			t.Errorf("accounted %d of %d (retry %d/%d)", got, len(batch), retried, count(e, "retry"))
		}
	})
	t.Run("413 on every request dead-letters what cannot fit alone", func(t *testing.T) {
		m := harness.StartMockES(t, harness.MockESOptions{TooLarge: 100})
		e, _, dl := newExporter(t, m.URL, Options{})
		if err := e.Export(ctx, batch[:3]); err != nil {
			t.Fatal(err)
		}
		if lines(t, dl) != 3 {
			t.Errorf("dead letters %d, want 3", lines(t, dl))
		}
	})
}

// limitBody answers 413 for requests larger than limit, like a proxy's
// client_max_body_size in front of Elasticsearch, and passes the rest on.
func limitBody(t *testing.T, target string, limit int, auth string) (string, *atomic.Int64) {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	var refused atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if len(b) > limit {
			refused.Add(1)
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.ContentLength = int64(len(b))
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &refused
}

// TestZinc writes to a real Elasticsearch-compatible store (zincsearch)
// through a proxy that refuses large bodies with 413: the batch is split
// until it fits, every document is searchable, and sending the same batch
// again does not duplicate any (stable ids).
func TestZinc(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs zincsearch (make test)")
	}
	z := harness.StartZinc(t)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(z.User+":"+z.Password))
	proxy, refused := limitBody(t, z.URL+"/es", 8<<10, auth)
	e, _, dl := newExporter(t, proxy, Options{Index: "mt-{namespace}"})
	ctx := context.Background()
	batch := batchOf(t, "zinctest", 42, 10)
	for attempt := 0; attempt < 2; attempt++ {
		if err := e.Export(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if refused.Load() == 0 {
		t.Error("no request was large enough to be refused: the split path was not exercised")
	}
	if lines(t, dl) != 0 {
		t.Errorf("%d dead letters", lines(t, dl))
	}
	harness.Eventually(t, 30*time.Second, "documents searchable", func() error {
		hits, total, err := z.Search(ctx, "mt-zinctest", map[string]any{"query": map[string]any{"match_all": map[string]any{}}, "size": 1000})
		if err != nil {
			return err
		}
		if total != len(batch) || len(hits) != len(batch) {
			return fmt.Errorf("%d hits (total %d), want %d", len(hits), total, len(batch))
		}
		for _, src := range hits {
			if !strings.Contains(string(src), `"trace_id"`) {
				return fmt.Errorf("document without trace_id: %s", src)
			}
		}
		return nil
	})
	hits, _, err := z.Search(ctx, "mt-zinctest", map[string]any{
		"query": map[string]any{"match": map[string]any{"trace_id": batch[0].Trace.TraceID}}, "size": 100})
	if err != nil || len(hits) != 6 {
		t.Errorf("search by trace_id: %d hits, want 6 (5 hops + 1 log line): %v", len(hits), err)
	}
}

// TestPoisonRecordIsIsolated: a server that refuses a whole bulk with 400
// whenever it holds one bad document. The batch is split in halves until
// the bad record is alone; it is dead-lettered, every other record stored.
func TestPoisonRecordIsIsolated(t *testing.T) {
	batch := batchOf(t, "shop", 43, 6)
	poison := batch[13]
	var stored atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(poison.Trace.SpanID)) && bytes.Contains(body, []byte(poison.HTTP.RequestID)) {
			http.Error(w, `{"error":"mapper_parsing_exception"}`, http.StatusBadRequest)
			return
		}
		n := bytes.Count(body, []byte("\n")) / 2
		stored.Add(int64(n))
		w.Write([]byte(`{"errors":false,"items":[`))
		for i := 0; i < n; i++ {
			if i > 0 {
				w.Write([]byte(","))
			}
			w.Write([]byte(`{"create":{"status":201}}`))
		}
		w.Write([]byte("]}"))
	}))
	defer srv.Close()
	e, _, dl := newExporter(t, srv.URL, Options{})
	if err := e.Export(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if stored.Load() != int64(len(batch)-1) || lines(t, dl) != 1 {
		t.Fatalf("stored %d of %d, dead letters %d", stored.Load(), len(batch), lines(t, dl))
	}
	b, _ := os.ReadFile(dl)
	if !bytes.Contains(b, []byte(poison.HTTP.RequestID)) {
		t.Errorf("dead letter is not the poison record: %s", b)
	}
}

// TestZincTenantsAndRecordIDs writes to a real zincsearch: each tenant's
// records land in its prefixed index (whatever their namespace), and a
// record resent with the same ID but a different body (a tail agent
// re-reading a line after a restart, its time parsed anew) is still one
// document, while records without an ID keep the derived stable id.
func TestZincTenantsAndRecordIDs(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs zincsearch (make test)")
	}
	z := harness.StartZinc(t)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(z.User+":"+z.Password))
	e, _, dl := newExporter(t, z.URL+"/es", Options{Index: "mt-tenants",
		TenantPrefixes: map[string]string{"team-a": "a", "team-b": "b"}, Headers: map[string]string{"Authorization": auth}})
	ctx := context.Background()
	batch := batchOf(t, "zinctenants", 43, 6)
	want := map[string]int{}
	ids := map[string][]string{} // index -> record IDs it must hold as _id
	for i, r := range batch {
		r.Tenant = []string{"team-a", "team-b"}[i%2]
		index := []string{"a-mt-tenants", "b-mt-tenants"}[i%2]
		if r.Kind == record.KindLog {
			r.ID = fmt.Sprintf("tail:inode-7:offset-%d", i)
			ids[index] = append(ids[index], r.ID)
		}
		want[index]++
	}
	if err := e.Export(ctx, batch); err != nil {
		t.Fatal(err)
	}
	// The resend: same IDs, log lines re-parsed with another time (their
	// derived id would differ), the access records unchanged.
	again := make([]*record.Record, len(batch))
	for i, r := range batch {
		c := *r
		if c.ID != "" {
			c.StartTime = c.StartTime.Add(time.Millisecond)
		}
		again[i] = &c
	}
	if err := e.Export(ctx, again); err != nil {
		t.Fatal(err)
	}
	// zincsearch answers a create of an existing _id as an update (200,
	// not Elasticsearch's 409), so what counts is the documents stored.
	if lines(t, dl) != 0 {
		t.Errorf("%d dead letters", lines(t, dl))
	}
	for index, n := range want {
		harness.Eventually(t, 30*time.Second, "documents in "+index, func() error {
			hits, total, err := z.Search(ctx, index, map[string]any{"query": map[string]any{"match_all": map[string]any{}}, "size": 1000})
			if err != nil {
				return err
			}
			if total != n || len(hits) != n {
				return fmt.Errorf("%s: %d hits (total %d), want %d", index, len(hits), total, n)
			}
			for _, id := range ids[index] {
				if hits[id] == nil {
					return fmt.Errorf("%s: no document with _id %q (the record's ID)", index, id)
				}
			}
			tenant := map[string]string{"a-mt-tenants": "team-a", "b-mt-tenants": "team-b"}[index]
			for _, src := range hits {
				if !strings.Contains(string(src), `"tenant":"`+tenant+`"`) {
					return fmt.Errorf("%s holds a document of another tenant: %s", index, src)
				}
			}
			return nil
		})
	}
}
