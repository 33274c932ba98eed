package trail

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshtrail/meshtrail/internal/meshsim"
	"github.com/meshtrail/meshtrail/test/harness"
)

// TestKillDuringOutageReplaysDiskQueue is issue 3's "kill meshtrail itself
// during an outage and restart it: the disk queue is replayed", on the real
// binary: `meshtrail als --config FILE` ships a synthetic mesh to a real
// zincsearch through the elasticsearch sink with a write-ahead disk queue;
// zincsearch is stopped mid-stream, more of the mesh is streamed, and once
// /metrics shows the undelivered records on disk meshtrail is killed with
// SIGKILL (no shutdown hook runs). It is started again on the same config
// (same disk directory) while zincsearch is still down, and must report
// the same backlog on disk; then zincsearch comes back, and every record
// accepted before the kill is stored exactly once (stable document ids),
// as are records streamed after the restart.
func TestKillDuringOutageReplaysDiskQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds meshtrail and starts zincsearch (run by make test)")
	}
	bin := buildMeshtrail(t)
	zinc := harness.StartZinc(t)
	grpcAddr, metricsAddr := harness.FreeAddr(t), harness.FreeAddr(t)
	dir := t.TempDir()
	queueDir := filepath.Join(dir, "queue", "elasticsearch")
	const index = "trail-kill"
	// memory.records 0 is the write-ahead mode: every accepted record is
	// appended to the disk log first, so SIGKILL loses nothing accepted.
	cfg := fmt.Sprintf(`listen: %s
metrics_listen: %s
out: %s
sinks:
  elasticsearch:
    enabled: true
    url: %s/es
    index: %s
    auth: {username: %s, password_env: MT_ZINC_PASSWORD}
    queue:
      memory: {records: 0}
      workers: 1
      batch: {max_records: 50, max_wait: 50ms}
      retry: {initial_backoff: 20ms, max_backoff: 300ms}
      disk: {dir: %s, fsync: always}
      timeout: 5s
`, grpcAddr, metricsAddr, filepath.Join(dir, "records.ndjson"), zinc.URL, index, zinc.User, queueDir)
	cfgPath := filepath.Join(dir, "als.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"MT_ZINC_PASSWORD=" + zinc.Password}
	startMT := func(name string) *harness.Process {
		p := harness.Start(t, name, env, bin, "als", "--config", cfgPath, "--log-level", "debug")
		harness.WaitHTTP(t, p, "http://"+metricsAddr+"/readyz", 30*time.Second)
		return p
	}
	mt := startMT("meshtrail")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	mesh := meshsim.Bookinfo(31)
	mesh.ErrorRate = 0.2
	start := time.Now().Add(-time.Minute)
	var reqs []meshsim.Request
	stream := func(n int) int {
		t.Helper()
		var entries []meshsim.Entry
		for i := 0; i < n; i++ {
			r := mesh.Request(start.Add(time.Duration(len(reqs)) * 5 * time.Millisecond))
			reqs = append(reqs, r)
			entries = append(entries, r.Entries...)
		}
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Small messages: many per stream, as a proxy's flushes are.
		if err := meshsim.Stream(ctx, conn, "outage", meshsim.Batch(entries, 2<<10)); err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	sink := `sink="elasticsearch"`
	scrape := func() (string, error) { return getText(ctx, "http://"+metricsAddr+"/metrics") }

	// Before the outage: delivered.
	total := stream(40)
	harness.Eventually(t, 60*time.Second, "the first records delivered", func() error {
		m, err := scrape()
		if err != nil {
			return err
		}
		if sent := promValue(m, "meshtrail_sink_records_sent_total", sink); sent != float64(total) {
			return fmt.Errorf("sent %v of %d", sent, total)
		}
		return nil
	})

	// The store goes down mid-stream; the mesh keeps logging.
	zinc.Stop()
	total += stream(40)
	total += stream(40)
	var sentBeforeKill, onDisk float64
	harness.Eventually(t, 60*time.Second, "the undelivered records on disk, retried", func() error {
		m, err := scrape()
		if err != nil {
			return err
		}
		sentBeforeKill = promValue(m, "meshtrail_sink_records_sent_total", sink)
		onDisk = promValue(m, "meshtrail_sink_queue_records", sink, `where="disk"`)
		mem := promValue(m, "meshtrail_sink_queue_records", sink, `where="memory"`)
		retried := promValue(m, "meshtrail_sink_records_retried_total", sink)
		if retried == 0 || mem != 0 || onDisk == 0 || sentBeforeKill+onDisk != float64(total) {
			return fmt.Errorf("accepted %d: sent %v, on disk %v, in memory %v, retried %v", total, sentBeforeKill, onDisk, mem, retried)
		}
		return nil
	})
	t.Logf("accepted %d records; %v delivered, %v on disk at the kill", total, sentBeforeKill, onDisk)

	// SIGKILL: no shutdown, no flush; only what is on disk survives.
	if err := mt.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, "meshtrail killed", func() error {
		if exited, _ := mt.Exited(); !exited {
			return fmt.Errorf("still running")
		}
		return nil
	})

	// Restarted on the same config while the store is still down: the
	// backlog is read back from the disk queue.
	startMT("meshtrail-restarted")
	harness.Eventually(t, 30*time.Second, "the restarted meshtrail to resume the disk queue", func() error {
		m, err := scrape()
		if err != nil {
			return err
		}
		if d := promValue(m, "meshtrail_sink_queue_records", sink, `where="disk"`); d != onDisk {
			return fmt.Errorf("%v records on disk, want the %v left at the kill", d, onDisk)
		}
		return nil
	})
	total += stream(20) // accepted after the restart, queued behind the backlog
	zinc.Restart(t)

	// Every record exactly once: per trace, as many documents as the
	// request had access log entries, and no more documents in all.
	want := map[string]int{}
	for _, r := range reqs {
		want[r.TraceID] = len(r.Entries)
	}
	query := map[string]any{"query": map[string]any{"match_all": map[string]any{}}, "size": 10000}
	harness.Eventually(t, 120*time.Second, "every record stored exactly once", func() error {
		hits, n, err := zinc.Search(ctx, index, query)
		if err != nil {
			return err
		}
		if n != total || len(hits) != total {
			return fmt.Errorf("%d documents (%d distinct ids), want %d", n, len(hits), total)
		}
		got := map[string]int{}
		keys := map[string]bool{}
		for _, src := range hits {
			var d struct {
				TraceID   string `json:"trace_id"`
				SpanID    string `json:"span_id"`
				Reporter  string `json:"reporter"`
				StartTime string `json:"start_time"`
				RequestID string `json:"request_id"`
			}
			if err := json.Unmarshal(src, &d); err != nil {
				return err
			}
			got[d.TraceID]++
			keys[strings.Join([]string{d.TraceID, d.SpanID, d.Reporter, d.StartTime, d.RequestID}, "|")] = true
		}
		if len(keys) != total {
			return fmt.Errorf("%d distinct observations among %d documents: a record stored twice", len(keys), total)
		}
		for tid, w := range want {
			if got[tid] != w {
				return fmt.Errorf("trace %s: %d documents, want %d", tid, got[tid], w)
			}
		}
		return nil
	})
}

// buildMeshtrail builds ./cmd/meshtrail into a temporary directory.
func buildMeshtrail(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "meshtrail")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/meshtrail")
	build.Dir = harness.RepoRoot(t)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build meshtrail: %v\n%s", err, out)
	}
	return bin
}

func getText(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return string(b), err
}

// promValue sums the samples of metric name (Prometheus text format)
// whose labels contain every one of labels (`key="value"`).
func promValue(text, name string, labels ...string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); ok && err == nil {
			sum += v
		}
	}
	return sum
}
