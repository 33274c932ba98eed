package pipeline

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/fanout/route"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/sink/endpoint"
	"github.com/meshtrail/meshtrail/internal/sink/loki"
)

// Every record leaves the pipeline with its tenant: the node's namespace
// by default (what routing.tenant defaults to), kept when the source set
// one, so the Loki org id and the Elasticsearch prefix agree with the
// router.
func TestTenantIsSetBeforeTheFanout(t *testing.T) {
	out := filepath.Join(t.TempDir(), "records.ndjson")
	cfg := DefaultConfig()
	cfg.Out = out
	p, err := New(cfg, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := []*record.Record{
		{Kind: record.KindHTTP, Node: record.Node{Namespace: "shop"}},
		{Kind: record.KindLog, Tenant: "payments", Node: record.Node{Namespace: "shop"}},
		{Kind: record.KindHTTP},
	}
	if err := p.Consumer(Queued).ConsumeRecords(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatalf("a second Shutdown: %v", err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var r struct {
			Tenant string `json:"tenant"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r.Tenant)
	}
	if strings.Join(got, ",") != "shop,payments,unknown" {
		t.Fatalf("tenants %v, want shop,payments,unknown", got)
	}
}

func TestConfigValidationNamesTheField(t *testing.T) {
	for field, mutate := range map[string]func(*Config){
		"metrics.prefix":           func(c *Config) { c.Metrics.Prefix = "9bad-" },
		"metrics.max_series":       func(c *Config) { c.Metrics.MaxSeries = -1 },
		"out_rotation.max_size_mb": func(c *Config) { c.Out = "/tmp/x"; c.OutRotation.MaxSizeMB = 0 },
		"out_rotation.max_backups": func(c *Config) { c.OutRotation.MaxBackups = -1 },
		"sinks.loki.url":           func(c *Config) { c.Sinks.Loki = &loki.Config{Common: endpoint.Common{Enabled: true}} },
		"routing":                  func(c *Config) { c.Routing = &route.Config{} },
	} {
		c := DefaultConfig()
		mutate(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), field+":") {
			t.Errorf("%s: got %v, want an error naming the field", field, err)
		}
	}
}
