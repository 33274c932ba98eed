package harness

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Loki is a real single-binary Loki (test/tools/loki.sh) with filesystem
// storage in a temporary directory and structured metadata allowed.
type Loki struct {
	URL     string // http://host:port; push at URL+"/loki/api/v1/push"
	Process *Process

	bin, cfgPath string
}

// StartLoki starts Loki on free loopback ports and waits for /ready
// (about 10-20 s: the ingester joins its in-memory ring first).
func StartLoki(t testing.TB) *Loki {
	t.Helper()
	return startLoki(t, false)
}

// StartLokiMultiTenant starts Loki with auth_enabled: true, as a
// multi-tenant Loki runs: every push and query must name its tenant in
// X-Scope-OrgID (a push without one is refused with 401), and each tenant
// sees only its own streams. Query with QueryAs.
func StartLokiMultiTenant(t testing.TB) *Loki {
	t.Helper()
	return startLoki(t, true)
}

func startLoki(t testing.TB, multiTenant bool) *Loki {
	t.Helper()
	bin := Tool(t, "loki")
	dir := t.TempDir()
	httpAddr, grpcAddr, gossip := FreeAddr(t), FreeAddr(t), FreeAddr(t)
	_, httpPort := splitHostPort(t, httpAddr)
	_, grpcPort := splitHostPort(t, grpcAddr)
	_, gossipPort := splitHostPort(t, gossip)
	cfg := fmt.Sprintf(`auth_enabled: %[5]t
server:
  http_listen_address: 127.0.0.1
  http_listen_port: %[1]s
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: %[2]s
  log_level: warn
common:
  instance_addr: 127.0.0.1
  path_prefix: %[3]s
  storage:
    filesystem:
      chunks_directory: %[3]s/chunks
      rules_directory: %[3]s/rules
  replication_factor: 1
  ring:
    kvstore:
      store: inmemory
ingester:
  lifecycler:
    min_ready_duration: 0s
    final_sleep: 0s
memberlist:
  bind_addr: [127.0.0.1]
  bind_port: %[4]s
query_range:
  results_cache:
    cache:
      embedded_cache:
        enabled: true
        max_size_mb: 50
limits_config:
  allow_structured_metadata: true
  reject_old_samples: false
schema_config:
  configs:
    - from: 2024-01-01
      store: tsdb
      object_store: filesystem
      schema: v13
      index:
        prefix: index_
        period: 24h
analytics:
  reporting_enabled: false
ruler:
  enable_api: false
pattern_ingester:
  enabled: false
`, httpPort, grpcPort, filepath.Join(dir, "data"), gossipPort, multiTenant)
	cfgPath := filepath.Join(dir, "loki.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	l := &Loki{URL: "http://" + httpAddr, bin: bin, cfgPath: cfgPath}
	l.Process = Start(t, "loki", nil, bin, "-config.file="+cfgPath)
	WaitHTTP(t, l.Process, l.URL+"/ready", 120*time.Second)
	return l
}

// Stop stops Loki; its WAL and chunks stay for Restart.
func (l *Loki) Stop() { l.Process.Stop() }

// Restart starts Loki again on the same ports and storage.
func (l *Loki) Restart(t testing.TB) {
	t.Helper()
	l.Process.Stop()
	l.Process = Start(t, "loki-restarted", nil, l.bin, "-config.file="+l.cfgPath)
	WaitHTTP(t, l.Process, l.URL+"/ready", 120*time.Second)
}

// LokiEntry is one log line returned by a LogQL query.
type LokiEntry struct {
	Stream map[string]string // labels, plus structured metadata and parsed labels as Loki returns them
	Time   time.Time
	Line   string
}

// Query runs a LogQL log query over [start, end] (forward order).
func (l *Loki) Query(ctx context.Context, logql string, start, end time.Time, limit int) ([]LokiEntry, error) {
	return l.QueryAs(ctx, "", logql, start, end, limit)
}

// QueryAs is Query as tenant (X-Scope-OrgID; "" sends none), for a Loki
// started with StartLokiMultiTenant.
func (l *Loki) QueryAs(ctx context.Context, tenant, logql string, start, end time.Time, limit int) ([]LokiEntry, error) {
	q := url.Values{
		"query":     {logql},
		"start":     {strconv.FormatInt(start.UnixNano(), 10)},
		"end":       {strconv.FormatInt(end.UnixNano(), 10)},
		"limit":     {strconv.Itoa(limit)},
		"direction": {"forward"},
	}
	var out struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Stream map[string]string `json:"stream"`
				Values [][]any           `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	var header http.Header
	if tenant != "" {
		header = http.Header{"X-Scope-OrgID": {tenant}}
	}
	if err := getJSON(ctx, l.URL+"/loki/api/v1/query_range?"+q.Encode(), header, &out); err != nil {
		return nil, err
	}
	var res []LokiEntry
	for _, s := range out.Data.Result {
		for _, v := range s.Values {
			if len(v) < 2 {
				continue
			}
			ts, _ := v[0].(string)
			line, _ := v[1].(string)
			ns, _ := strconv.ParseInt(ts, 10, 64)
			stream := s.Stream
			// With categorize-labels, metadata rides in a third element.
			if len(v) > 2 {
				if m, ok := v[2].(map[string]any); ok {
					stream = copyLabels(s.Stream)
					for _, group := range m {
						if g, ok := group.(map[string]any); ok {
							for k, val := range g {
								stream[k] = fmt.Sprint(val)
							}
						}
					}
				}
			}
			res = append(res, LokiEntry{Stream: stream, Time: time.Unix(0, ns), Line: line})
		}
	}
	return res, nil
}

func copyLabels(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
