package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Zinc is a real zincsearch (test/tools/zincsearch.sh), the Elasticsearch-
// compatible store the tests use: Elasticsearch's API lives under URL+"/es".
type Zinc struct {
	URL      string // http://host:port
	User     string
	Password string
	Process  *Process

	bin string
	env []string
}

// StartZinc starts zincsearch on a free loopback port with its data in a
// temporary directory and waits until it answers.
func StartZinc(t testing.TB) *Zinc {
	t.Helper()
	bin := Tool(t, "zincsearch")
	addr := FreeAddr(t)
	host, port := splitHostPort(t, addr)
	z := &Zinc{URL: "http://" + addr, User: "admin", Password: "meshtrail-test"}
	z.bin = bin
	z.env = []string{
		"ZINC_SERVER_ADDRESS=" + host,
		"ZINC_SERVER_PORT=" + port,
		"ZINC_DATA_PATH=" + t.TempDir(),
		"ZINC_FIRST_ADMIN_USER=" + z.User,
		"ZINC_FIRST_ADMIN_PASSWORD=" + z.Password,
		"ZINC_TELEMETRY=false",
		"ZINC_SENTRY=false",
	}
	z.Process = Start(t, "zincsearch", z.env, bin)
	WaitHTTP(t, z.Process, z.URL+"/healthz", 60*time.Second)
	return z
}

// Stop stops zincsearch, keeping its data for Restart.
func (z *Zinc) Stop() { z.Process.Stop() }

// Restart starts zincsearch again on the same address and data.
func (z *Zinc) Restart(t testing.TB) {
	t.Helper()
	z.Process.Stop()
	z.Process = Start(t, "zincsearch-restarted", z.env, z.bin)
	WaitHTTP(t, z.Process, z.URL+"/healthz", 60*time.Second)
}

// Search runs an Elasticsearch query DSL body against index (which may be
// a pattern like "meshtrail-*") and returns the hits' ids and sources.
func (z *Zinc) Search(ctx context.Context, index string, query map[string]any) (map[string]json.RawMessage, int, error) {
	body, _ := json.Marshal(query)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, z.URL+"/es/"+index+"/_search", bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.SetBasicAuth(z.User, z.Password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return nil, 0, fmt.Errorf("zinc search: status %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
	}
	var out struct {
		Hits struct {
			Total struct {
				Value int `json:"value"`
			} `json:"total"`
			Hits []struct {
				ID     string          `json:"_id"`
				Source json.RawMessage `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, 0, err
	}
	hits := make(map[string]json.RawMessage, len(out.Hits.Hits))
	for _, h := range out.Hits.Hits {
		hits[h.ID] = h.Source
	}
	return hits, out.Hits.Total.Value, nil
}
