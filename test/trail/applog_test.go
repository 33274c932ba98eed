package trail

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshtrail/meshtrail/internal/meshsim"
	"github.com/meshtrail/meshtrail/test/harness"
)

// TestAppLogJoinsProxyRecordsInLoki: an app writes a line with the trace
// id of a request its proxies logged; the real `meshtrail tail` reads it
// and forwards it (OTLP) to the real `meshtrail als`, which sends both to
// the real Loki. One LogQL query by the trace_id metadata returns the
// proxies' records and the app's line. Then the same with the receiver
// stopped while the app writes, and restarted.
func TestAppLogJoinsProxyRecordsInLoki(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: starts Loki (run by make test)")
	}
	bin := buildMeshtrail(t)
	loki := harness.StartLoki(t)
	dir := t.TempDir()
	grpcAddr, metricsAddr, otlpAddr := harness.FreeAddr(t), harness.FreeAddr(t), harness.FreeAddr(t)
	cfg := fmt.Sprintf(`listen: %s
metrics_listen: %s
otlp_listen: %s
out: ""
sinks:
  loki:
    enabled: true
    url: %s/loki/api/v1/push
    queue:
      batch: {max_wait: 100ms}
`, grpcAddr, metricsAddr, otlpAddr, loki.URL)
	cfgPath := filepath.Join(dir, "als.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startReceiver := func(name string) *harness.Process {
		p := harness.Start(t, name, nil, bin, "als", "--config", cfgPath)
		harness.WaitHTTP(t, p, "http://"+metricsAddr+"/readyz", 30*time.Second)
		return p
	}
	rcv := startReceiver("meshtrail-als")

	appLog := filepath.Join(dir, "app", "app.log")
	os.MkdirAll(filepath.Dir(appLog), 0o755)
	harness.Start(t, "meshtrail-tail", []string{"POD_NAME=reviews-v2-abc", "POD_NAMESPACE=default", "POD_UID=uid-1", "NODE_NAME=node-a"},
		bin, "tail", "--paths="+filepath.Join(dir, "app", "*.log"), "--parser=json", "--state-dir="+filepath.Join(dir, "state"),
		"--forward="+otlpAddr)

	mesh := meshsim.Bookinfo(3)
	start := time.Now().Add(-2 * time.Second)
	send := func(req meshsim.Request) {
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := meshsim.Stream(ctx, conn, "e2e", meshsim.Batch(req.Entries, 16<<10)); err != nil {
			t.Fatal(err)
		}
	}
	appLine := func(traceID, msg string) {
		f, err := os.OpenFile(appLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, `{"time":%q,"level":"error","msg":%q,"trace_id":%q}`+"\n", time.Now().UTC().Format(time.RFC3339Nano), msg, traceID)
		f.Close()
	}
	both := func(traceID string, hops int) {
		t.Helper()
		harness.Eventually(t, 90*time.Second, "proxy records and the app line of trace "+traceID+" in Loki", func() error {
			got, err := loki.Query(context.Background(), fmt.Sprintf(`{source=~"http|log"} | trace_id=%q`, traceID),
				start.Add(-time.Minute), time.Now().Add(time.Minute), 1000)
			if err != nil {
				return err
			}
			kinds := map[string]int{}
			for _, e := range got {
				kinds[e.Stream["source"]]++
			}
			if kinds["http"] != hops || kinds["log"] != 1 {
				return fmt.Errorf("%v, want %d http and 1 log", kinds, hops)
			}
			return nil
		})
	}

	req := mesh.Request(start)
	send(req)
	appLine(req.TraceID, "rating lookup failed")
	both(req.TraceID, len(req.Entries))

	// The receiver down while the app writes: the line waits in the file
	// and arrives once the receiver is back.
	rcv.Stop()
	req2 := mesh.Request(start.Add(time.Second))
	appLine(req2.TraceID, "written while the receiver was down")
	time.Sleep(3 * time.Second)
	startReceiver("meshtrail-als-restarted")
	send(req2)
	both(req2.TraceID, len(req2.Entries))
}
