package route

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/yaml"

	"github.com/meshtrail/meshtrail/internal/fanout/queue"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/recordtest"
)

func tenantRec(id int, tenant, ns string) *record.Record {
	return &record.Record{
		Kind: record.KindHTTP, Node: record.Node{Namespace: ns},
		RequestHeaders: map[string]string{"x-id": strconv.Itoa(id), "x-tenant": tenant},
	}
}

// collector is an in-memory sink that reads back the records' x-id.
type collector struct{ recordtest.Sink }

func (c *collector) ids() []string {
	var out []string
	for _, r := range c.Records() {
		out = append(out, r.RequestHeaders["x-id"])
	}
	return out
}

func TestRoutesByNamespaceAndTenant(t *testing.T) {
	var yml = `
tenant: {from: header, header: x-tenant}
routes:
  - tenants: [gold]
    sinks: [elasticsearch, loki]
  - namespaces: [kube-system]
    sinks: [file]
default_sinks: [loki]
`
	var cfg Config
	if err := yaml.UnmarshalStrict([]byte(yml), &cfg); err != nil {
		t.Fatal(err)
	}
	es, loki, file := &collector{}, &collector{}, &collector{}
	r, err := New(cfg, map[string]record.Consumer{"elasticsearch": es, "loki": loki, "file": file}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = r.ConsumeRecords(context.Background(), []*record.Record{
		tenantRec(0, "gold", "shop"), tenantRec(1, "bronze", "kube-system"), tenantRec(2, "bronze", "shop"), tenantRec(3, "", "shop"),
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		got  *collector
		want string
	}{"elasticsearch": {es, "0"}, "loki": {loki, "0,2,3"}, "file": {file, "1"}} {
		if got := strings.Join(c.got.ids(), ","); got != c.want {
			t.Errorf("%s got %s, want %s", name, got, c.want)
		}
	}
}

func TestValidateNamesFields(t *testing.T) {
	cfg := Config{
		Tenant: TenantConfig{From: "header"},
		Routes: []Rule{{Sinks: []string{"nope"}}},
		Quota:  QuotaConfig{Excess: "spill"},
	}
	err := cfg.Validate(map[string]record.Consumer{"loki": &collector{}})
	for _, want := range []string{"routing.tenant.header", "routing.routes[0]: needs", `routing.routes[0].sinks: unknown sink "nope"`, "routing.quota.spill_sink"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

// gateExporter fails (backend down) until opened, then records ids.
type gateExporter struct {
	mu   sync.Mutex
	open bool
	seen map[string]bool
}

func (g *gateExporter) Name() string { return "shared" }
func (g *gateExporter) Export(_ context.Context, b []*record.Record) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.open {
		return context.DeadlineExceeded
	}
	for _, r := range b {
		g.seen[r.RequestHeaders["x-id"]] = true
	}
	return nil
}

func (g *gateExporter) count(prefix string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for id := range g.seen {
		if strings.HasPrefix(id, prefix) {
			n++
		}
	}
	return n
}

// A tenant flooding a shared queue while its backend is down: without a
// quota it fills the queue and the quiet tenant's records are dropped;
// with one, every record of the quiet tenant gets through.
func TestTenantQuotaIsolation(t *testing.T) {
	run := func(t *testing.T, quota QuotaConfig) (quietDelivered, floodDelivered int, exceeded float64) {
		g := &gateExporter{seen: map[string]bool{}}
		qcfg := queue.Config{Workers: 1}
		mem := 1000
		qcfg.Memory.Records = &mem
		qcfg.Batch.MaxRecords = 100
		qcfg.Retry.InitialBackoff = queue.Duration(time.Millisecond)
		qcfg.Retry.MaxBackoff = queue.Duration(5 * time.Millisecond)
		q, err := queue.New(g, qcfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		r, err := New(Config{Tenant: TenantConfig{From: FromHeader, Header: "x-tenant"}, Quota: quota},
			map[string]record.Consumer{"shared": q}, reg, nil)
		if err != nil {
			t.Fatal(err)
		}
		for call := 0; call < 200; call++ {
			batch := []*record.Record{tenantRec(0, "quiet", "a")}
			batch[0].RequestHeaders["x-id"] = "quiet-" + strconv.Itoa(call)
			for j := 0; j < 100; j++ {
				rec := tenantRec(0, "flood", "b")
				rec.RequestHeaders["x-id"] = "flood-" + strconv.Itoa(call*100+j)
				batch = append(batch, rec)
			}
			if err := r.ConsumeRecords(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
		}
		g.mu.Lock()
		g.open = true
		g.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := q.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		var m dto.Metric
		if c, err := r.exceeded.GetMetricWithLabelValues("other", "dropped"); err == nil {
			c.Write(&m)
		}
		return g.count("quiet-"), g.count("flood-"), m.GetCounter().GetValue()
	}

	t.Run("without quota", func(t *testing.T) {
		quiet, _, _ := run(t, QuotaConfig{})
		if quiet == 200 {
			t.Fatal("the flood did not starve the quiet tenant; the test shows nothing")
		}
	})
	t.Run("with quota", func(t *testing.T) {
		quiet, flood, exceeded := run(t, QuotaConfig{Limit: Limit{RecordsPerSecond: 10, Burst: 500}})
		if quiet != 200 {
			t.Fatalf("quiet tenant delivered %d of 200", quiet)
		}
		if flood+int(exceeded) != 20000 || flood < 500 {
			t.Fatalf("flood delivered %d + dropped %v != 20000", flood, exceeded)
		}
	})
}
