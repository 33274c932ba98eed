package loki

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/recordtest"
	"github.com/meshtrail/meshtrail/test/harness"
)

type decodedEntry struct {
	ts   time.Time
	line string
	meta map[string]string
}

// decodePush parses a PushRequest with protowire: stream labels -> entries.
func decodePush(t *testing.T, b []byte) map[string][]decodedEntry {
	t.Helper()
	out := map[string][]decodedEntry{}
	fields := func(b []byte, f func(num protowire.Number, v []byte, n uint64)) {
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				t.Fatal("bad tag")
			}
			b = b[n:]
			switch typ {
			case protowire.BytesType:
				v, n := protowire.ConsumeBytes(b)
				f(num, v, 0)
				b = b[n:]
			case protowire.VarintType:
				v, n := protowire.ConsumeVarint(b)
				f(num, nil, v)
				b = b[n:]
			default:
				t.Fatalf("unexpected wire type %v", typ)
			}
		}
	}
	fields(b, func(_ protowire.Number, s []byte, _ uint64) {
		var labels string
		var entries []decodedEntry
		fields(s, func(num protowire.Number, v []byte, _ uint64) {
			switch num {
			case 1:
				labels = string(v)
			case 2:
				e := decodedEntry{meta: map[string]string{}}
				fields(v, func(num protowire.Number, v []byte, _ uint64) {
					switch num {
					case 1:
						var sec, nano uint64
						fields(v, func(num protowire.Number, _ []byte, x uint64) {
							if num == 1 {
								sec = x
							} else {
								nano = x
							}
						})
						e.ts = time.Unix(int64(sec), int64(nano))
					case 2:
						e.line = string(v)
					case 3:
						var k, val string
						fields(v, func(num protowire.Number, v []byte, _ uint64) {
							if num == 1 {
								k = string(v)
							} else {
								val = string(v)
							}
						})
						e.meta[k] = val
					}
				})
				entries = append(entries, e)
			}
		})
		out[labels] = append(out[labels], entries...)
	})
	return out
}

func TestEncodeStreamsLabelsMetadataOrder(t *testing.T) {
	e, _ := New(Options{URL: "http://x", ExtraLabels: map[string]string{"cluster": "c1"}})
	g := recordtest.New("shop", 30)
	var batch []*record.Record
	for i := 0; i < 5; i++ {
		tid, recs := g.Request(200)
		batch = append(batch, recs...)
		batch = append(batch, g.LogLine(tid, recs[1].Trace.SpanID, "reviews", "line"))
	}
	// Reverse so the encoder has to restore per-stream time order.
	for i, j := 0, len(batch)-1; i < j; i, j = i+1, j-1 {
		batch[i], batch[j] = batch[j], batch[i]
	}
	got := decodePush(t, e.Encode(nil, batch))
	total := 0
	for labels, entries := range got {
		for _, forbidden := range []string{"trace_id", "span_id", "pod", "path"} {
			if strings.Contains(labels, forbidden+"=") {
				t.Errorf("unbounded %s in labels %s", forbidden, labels)
			}
		}
		if !strings.Contains(labels, `namespace="shop"`) || !strings.Contains(labels, `cluster="c1"`) {
			t.Errorf("labels %s", labels)
		}
		for i, en := range entries {
			if i > 0 && en.ts.Before(entries[i-1].ts) {
				t.Errorf("stream %s: entry %d out of order", labels, i)
			}
			if len(en.meta["trace_id"]) != 32 {
				t.Errorf("entry without trace_id metadata: %v", en.meta)
			}
			r, err := record.ParseJSON([]byte(en.line))
			if err != nil || r.Trace.TraceID != en.meta["trace_id"] || !r.StartTime.Equal(en.ts) {
				t.Errorf("line %s: %v", en.line, err)
			}
		}
		total += len(entries)
	}
	if total != len(batch) {
		t.Errorf("%d entries, want %d", total, len(batch))
	}
	if want := `{namespace="shop", workload="ratings-v1", source="http", status_class="2xx", cluster="c1"}`; got[want] == nil {
		t.Errorf("no stream %s in %v", want, keys(got))
	}
}

func keys[V any](m map[string]V) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	return k
}

// TestLoki pushes to a real Loki and reads each trace's lines back with
// LogQL filtered on the trace_id structured metadata; trace_id is no label.
func TestLoki(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs Loki (make test)")
	}
	l := harness.StartLoki(t)
	e, err := New(Options{URL: l.URL + "/loki/api/v1/push"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	g := recordtest.New("lokitest", 31)
	traces := map[string]int{}
	var batch []*record.Record
	for i := 0; i < 10; i++ {
		tid, recs := g.Request([]uint32{200, 503}[i%2])
		recs = append(recs, g.LogLine(tid, recs[1].Trace.SpanID, "reviews", fmt.Sprintf("log line %d", i)))
		traces[tid] = len(recs)
		batch = append(batch, recs...)
	}
	if err := e.Export(ctx, batch); err != nil {
		t.Fatal(err)
	}
	// A retry of the same batch: Loki drops entries identical in
	// stream, timestamp and line, so nothing is counted twice.
	if err := e.Export(ctx, batch); err != nil {
		t.Fatal(err)
	}
	start, end := g.Base.Add(-time.Minute), time.Now().Add(time.Minute)
	for tid, n := range traces {
		q := fmt.Sprintf(`{namespace="lokitest"} | trace_id=%q`, tid)
		harness.Eventually(t, 30*time.Second, q, func() error {
			got, err := l.Query(ctx, q, start, end, 1000)
			if err != nil {
				return err
			}
			if len(got) != n {
				return fmt.Errorf("%d lines, want %d", len(got), n)
			}
			for _, en := range got {
				if !strings.Contains(en.Line, tid) {
					return fmt.Errorf("line of another trace: %s", en.Line)
				}
			}
			return nil
		})
	}
	var labels struct {
		Data []string `json:"data"`
	}
	if err := harness.GetJSON(ctx, l.URL+"/loki/api/v1/labels", &labels); err != nil {
		t.Fatal(err)
	}
	for _, name := range labels.Data {
		if name == "trace_id" || name == "span_id" {
			t.Errorf("%s is a label: %v", name, labels.Data)
		}
	}
	got, err := l.Query(ctx, `{namespace="lokitest", status_class="5xx"}`, start, end, 1000)
	if err != nil || len(got) != 10 { // the last hop of 5 requests, reported by both proxies
		t.Errorf("5xx stream: %d lines, %v", len(got), err)
	}
}

// TestLokiTenants pushes to a real multi-tenant Loki (auth_enabled): with
// tenant_from_record each tenant reads back exactly its records (a record
// without a tenant goes to the fixed tenant), with a fixed tenant every
// record lands in that one, and without any the push is refused.
func TestLokiTenants(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs Loki (make test)")
	}
	l := harness.StartLokiMultiTenant(t)
	url := l.URL + "/loki/api/v1/push"
	ctx := context.Background()
	g := recordtest.New("lokitenants", 32)
	var batch []*record.Record
	want := map[string]int{}
	for i := 0; i < 9; i++ {
		tenant := []string{"team-a", "team-b", ""}[i%3]
		_, recs := g.Request(200)
		for _, r := range recs {
			r.Tenant = tenant
		}
		want[tenant] += len(recs)
		batch = append(batch, recs...)
	}

	none, _ := New(Options{URL: url})
	if err := none.Export(ctx, batch); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a push without X-Scope-OrgID to a multi-tenant Loki: %v, want a 401", err)
	}
	perRecord, _ := New(Options{URL: url, TenantFromRecord: true, Tenant: "fallback"})
	if err := perRecord.Export(ctx, batch); err != nil {
		t.Fatal(err)
	}
	fixed, _ := New(Options{URL: url, Tenant: "fixed"})
	if err := fixed.Export(ctx, batch); err != nil {
		t.Fatal(err)
	}

	start, end := g.Base.Add(-time.Minute), time.Now().Add(time.Minute)
	for tenant, n := range map[string]int{"team-a": want["team-a"], "team-b": want["team-b"], "fallback": want[""], "fixed": len(batch), "nobody": 0} {
		harness.Eventually(t, 30*time.Second, "lines of tenant "+tenant, func() error {
			got, err := l.QueryAs(ctx, tenant, `{namespace="lokitenants"}`, start, end, 1000)
			if err != nil {
				return err
			}
			if len(got) != n {
				return fmt.Errorf("tenant %s: %d lines, want %d", tenant, len(got), n)
			}
			for _, en := range got {
				r, err := record.ParseJSON([]byte(en.Line))
				if err != nil {
					return err
				}
				if tenant != "fixed" && r.Tenant != strings.TrimPrefix(tenant, "fallback") {
					return fmt.Errorf("tenant %s holds a record of tenant %q", tenant, r.Tenant)
				}
			}
			return nil
		})
	}
}

// TestTenantFailsAlone: with tenant_from_record, a tenant whose push is
// refused for now (503) comes back for retry alone; the tenant that was
// accepted is not sent again.
func TestTenantFailsAlone(t *testing.T) {
	var mu sync.Mutex
	pushes := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tenant := r.Header.Get("X-Scope-OrgID")
		mu.Lock()
		pushes[tenant]++
		mu.Unlock()
		if tenant == "team-b" {
			http.Error(w, "ingester unavailable", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	e, _ := New(Options{URL: srv.URL, TenantFromRecord: true})
	g := recordtest.New("tenantfail", 33)
	var batch []*record.Record
	for i := 0; i < 4; i++ {
		_, recs := g.Request(200)
		for _, r := range recs {
			r.Tenant = []string{"team-a", "team-b"}[i%2]
		}
		batch = append(batch, recs...)
	}
	err := e.Export(context.Background(), batch)
	var pe *fanout.PartialError
	if !errors.As(err, &pe) {
		t.Fatalf("err %v, want a *fanout.PartialError", err)
	}
	for _, r := range pe.Retry {
		if r.Tenant != "team-b" {
			t.Fatalf("a record of %q returned for retry", r.Tenant)
		}
	}
	if len(pe.Retry) != len(batch)/2 || !strings.Contains(err.Error(), `tenant "team-b"`) || !strings.Contains(err.Error(), "503") {
		t.Errorf("%d records to retry (want %d), err %v", len(pe.Retry), len(batch)/2, err)
	}
	if pushes["team-a"] != 1 || pushes["team-b"] != 1 || len(pushes) != 2 {
		t.Errorf("pushes per tenant %v, want one each for team-a and team-b", pushes)
	}
}
