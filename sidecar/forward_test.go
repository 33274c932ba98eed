package sidecar_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/sidecar/internal/tailtest"
	"github.com/meshtrail/meshtrail/test/harness"
)

// startReceiver runs the real "meshtrail als" with its OTLP logs listener
// on otlpAddr, writing records to out.
func startReceiver(t *testing.T, bin, name, otlpAddr, out string) *harness.Process {
	t.Helper()
	metrics := harness.FreeAddr(t)
	p := harness.Start(t, name, nil, bin, "als", "--listen", harness.FreeAddr(t), "--metrics-listen", metrics,
		"--otlp-listen", otlpAddr, "--out", out)
	harness.WaitHTTP(t, p, "http://"+metrics+"/readyz", 30*time.Second)
	return p
}

// TestForwardThroughReceiverOutages forwards to a real receiver that is
// down at first, then up, then down again for a while, then up: every
// line arrives exactly once (the agent holds its position while the
// receiver does not answer, and advances only on its answer).
func TestForwardThroughReceiverOutages(t *testing.T) {
	bin := tailtest.Binary(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "app.log")
	alsOut := filepath.Join(dir, "als.ndjson")
	otlpAddr := harness.FreeAddr(t)
	agent := harness.Start(t, "tail", []string{"POD_NAME=cart-1", "POD_NAMESPACE=shop", "POD_UID=u-1", "NODE_NAME=n1"}, bin, "tail",
		"--paths="+filepath.Join(dir, "*.log"), "--state-dir="+filepath.Join(dir, "state"), "--forward="+otlpAddr)

	const n = 20000
	w := &writer{path: logPath, n: n / 2}
	w.run(t, 0)
	time.Sleep(2 * time.Second) // receiver down: the agent retries
	rcv := startReceiver(t, bin, "als-1", otlpAddr, alsOut)
	harness.Eventually(t, 30*time.Second, "first half at the receiver", func() error { return wantLines(alsOut, n/2) })
	rcv.Stop()

	// The second half is written while the receiver is down.
	f, _ := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0)
	for i := n / 2; i < n; i++ {
		f.WriteString(line(i))
	}
	f.Close()
	time.Sleep(3 * time.Second)
	startReceiver(t, bin, "als-2", otlpAddr, alsOut)
	harness.Eventually(t, 60*time.Second, "every line at the receiver", func() error { return wantLines(alsOut, n) })
	agent.Stop()
	checkExactlyOnce(t, alsOut, n)

	recs := tailtest.ReadOut(t, alsOut)
	r := recs[0]
	if r.Node.Pod != "cart-1" || r.Node.Namespace != "shop" || r.Fields["k8s.pod.uid"] != "u-1" || r.Fields["k8s.node.name"] != "n1" ||
		r.Stream != logPath || r.ID == "" {
		t.Errorf("forwarded record lost its metadata: %+v", r)
	}
}

func wantLines(path string, n int) error {
	if c := countLines(path); c < n {
		return &shortError{c, n}
	}
	return nil
}

type shortError struct{ have, want int }

func (e *shortError) Error() string { return fmt.Sprintf("have %d of %d lines", e.have, e.want) }
