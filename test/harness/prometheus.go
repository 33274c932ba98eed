package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Prometheus is a real Prometheus server started for a test, with the
// remote-write receiver and exemplar storage enabled.
type Prometheus struct {
	Addr    string // 127.0.0.1:port of the web API
	URL     string // http://Addr
	Process *Process

	bin  string
	args []string
}

// PrometheusOptions configure StartPrometheus.
type PrometheusOptions struct {
	// Targets are host:port addresses scraped at /metrics (job "meshtrail").
	Targets []string
	// ScrapeInterval defaults to 1s so tests see samples quickly.
	ScrapeInterval time.Duration
}

// StartPrometheus starts Prometheus on a free loopback port with temporary
// storage and waits until it is ready. Remote write is accepted at
// URL+"/api/v1/write".
func StartPrometheus(t testing.TB, opts PrometheusOptions) *Prometheus {
	t.Helper()
	bin := Tool(t, "prometheus")
	if opts.ScrapeInterval <= 0 {
		opts.ScrapeInterval = time.Second
	}
	dir := t.TempDir()
	addr := FreeAddr(t)
	var targets []string
	for _, tg := range opts.Targets {
		targets = append(targets, fmt.Sprintf("'%s'", tg))
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: %[1]s
  evaluation_interval: %[1]s
scrape_configs:
  - job_name: meshtrail
    static_configs:
      - targets: [%[2]s]
`, opts.ScrapeInterval, strings.Join(targets, ", "))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--config.file=" + cfgPath,
		"--web.listen-address=" + addr,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.enable-remote-write-receiver",
		"--enable-feature=exemplar-storage",
	}
	prom := &Prometheus{Addr: addr, URL: "http://" + addr, bin: bin, args: args}
	prom.Process = Start(t, "prometheus", nil, bin, args...)
	WaitHTTP(t, prom.Process, prom.URL+"/-/ready", 60*time.Second)
	return prom
}

// Stop stops Prometheus, keeping its storage for Restart.
func (p *Prometheus) Stop() { p.Process.Stop() }

// Restart starts Prometheus again on the same address and storage.
func (p *Prometheus) Restart(t testing.TB) {
	t.Helper()
	p.Process.Stop()
	p.Process = Start(t, "prometheus-restarted", nil, p.bin, p.args...)
	WaitHTTP(t, p.Process, p.URL+"/-/ready", 60*time.Second)
}

// PromSample is one series of an instant-vector query result.
type PromSample struct {
	Metric map[string]string
	Value  string
}

// Query runs an instant PromQL query and returns the vector result.
func (p *Prometheus) Query(ctx context.Context, promql string) ([]PromSample, error) {
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := GetJSON(ctx, p.URL+"/api/v1/query?query="+url.QueryEscape(promql), &out); err != nil {
		return nil, err
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("prometheus query %q: %s", promql, out.Error)
	}
	res := make([]PromSample, 0, len(out.Data.Result))
	for _, r := range out.Data.Result {
		v, _ := r.Value[1].(string)
		res = append(res, PromSample{Metric: r.Metric, Value: v})
	}
	return res, nil
}

// PromExemplar is one exemplar returned by the exemplars API.
type PromExemplar struct {
	SeriesLabels map[string]string
	Labels       map[string]string // e.g. trace_id
	Value        string
}

// QueryExemplars returns the exemplars of the series selected by promql
// within the last window.
func (p *Prometheus) QueryExemplars(ctx context.Context, promql string, window time.Duration) ([]PromExemplar, error) {
	now := time.Now()
	q := url.Values{
		"query": {promql},
		"start": {fmt.Sprintf("%d", now.Add(-window).Unix())},
		"end":   {fmt.Sprintf("%d", now.Add(time.Minute).Unix())},
	}
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   []struct {
			SeriesLabels map[string]string `json:"seriesLabels"`
			Exemplars    []struct {
				Labels map[string]string `json:"labels"`
				Value  string            `json:"value"`
			} `json:"exemplars"`
		} `json:"data"`
	}
	if err := GetJSON(ctx, p.URL+"/api/v1/query_exemplars?"+q.Encode(), &out); err != nil {
		return nil, err
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("prometheus exemplars %q: %s", promql, out.Error)
	}
	var res []PromExemplar
	for _, s := range out.Data {
		for _, e := range s.Exemplars {
			res = append(res, PromExemplar{SeriesLabels: s.SeriesLabels, Labels: e.Labels, Value: e.Value})
		}
	}
	return res, nil
}

// GetJSON GETs u and decodes a 2xx JSON body into v.
func GetJSON(ctx context.Context, u string, v any) error { return getJSON(ctx, u, nil, v) }

func getJSON(ctx context.Context, u string, header http.Header, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: status %d: %s", u, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, v)
}

// WaitTCP waits until addr accepts TCP connections, failing early if p
// exits (p may be nil).
func WaitTCP(t testing.TB, p *Process, addr string, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, "wait for tcp "+addr, func() error {
		if p != nil {
			if exited, err := p.Exited(); exited {
				t.Fatalf("harness: %s exited before %s listened: %v (log %s)", p.Name, addr, err, p.Log)
			}
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

func splitHostPort(t testing.TB, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}
