package sidecar_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/sidecar/internal/tailtest"
	"github.com/meshtrail/meshtrail/test/harness"
)

// TestNodeModeCRIRotationAndPartials writes a /var/log/pods tree the way
// the kubelet does: CRI lines, long lines split into P parts, rotation by
// renaming N.log to N.log.TIMESTAMP and opening a new N.log, and a
// container restart (1.log). Every line must come out once, whole, with
// its pod's namespace, name, uid and container from the path.
func TestNodeModeCRIRotationAndPartials(t *testing.T) {
	bin := tailtest.Binary(t)
	dir := t.TempDir()
	pods := filepath.Join(dir, "pods")
	outPath := filepath.Join(dir, "out.ndjson")
	cdir := filepath.Join(pods, "shop_cart-7d9f-x2_0c1e-77", "api")
	other := filepath.Join(pods, "web_front-1_9a9a", "nginx")
	os.MkdirAll(cdir, 0o755)
	os.MkdirAll(other, 0o755)
	listen := harness.FreeAddr(t)
	p := startAgent(t, bin, []string{"tail", "--node", "--pods-dir=" + pods, "--state-dir=" + filepath.Join(dir, "state"), "--out=" + outPath,
		"--listen=" + listen})

	ts := time.Date(2026, 12, 2, 21, 0, 0, 0, time.UTC)
	open := func(path string) *os.File {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	f := open(filepath.Join(cdir, "0.log"))
	want := map[string]bool{}
	const n = 3000
	for i := 0; i < n; i++ {
		msg := fmt.Sprintf("req %05d trace_id=%032x", i, i+1)
		if i%10 == 0 {
			msg += " " + strings.Repeat("x", 300) // split in P parts below
		}
		want[msg] = true
		stamp := ts.Add(time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano)
		if i%10 == 0 {
			for len(msg) > 100 {
				fmt.Fprintf(f, "%s stdout P %s\n", stamp, msg[:100])
				msg = msg[100:]
			}
		}
		fmt.Fprintf(f, "%s stdout F %s\n", stamp, msg)
		if i%5 == 0 {
			o := open(filepath.Join(other, "0.log"))
			fmt.Fprintf(o, "%s stderr F {\"level\":\"warn\",\"msg\":\"front %d\"}\n", stamp, i)
			o.Close()
			want[fmt.Sprintf("front %d", i)] = true
		}
		switch i {
		case 1000, 2000: // kubelet rotation: rename, then a new file
			f.Close()
			os.Rename(filepath.Join(cdir, "0.log"), filepath.Join(cdir, "0.log."+stamp))
			f = open(filepath.Join(cdir, "0.log"))
		case 2500: // the container restarted: the kubelet writes 1.log
			f.Close()
			f = open(filepath.Join(cdir, "1.log"))
		}
	}
	f.Close()
	harness.Eventually(t, 60*time.Second, "every line out", func() error { return wantLines(outPath, len(want)) })
	// Per-pod figures: the web pod wrote 600 lines; once its directory is
	// gone (the pod deleted) and its file let go, its series go too.
	metrics := func() string {
		resp, err := http.Get("http://" + listen + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	const webLines = `meshtrail_tail_pod_lines_total{namespace="web",pod="front-1"} 600`
	if m := metrics(); !strings.Contains(m, webLines) {
		t.Fatalf("no %s in\n%s", webLines, m)
	}
	os.RemoveAll(filepath.Join(pods, "web_front-1_9a9a"))
	harness.Eventually(t, 30*time.Second, "the deleted pod's series removed", func() error {
		if strings.Contains(metrics(), `pod="front-1"`) {
			return fmt.Errorf("series still there")
		}
		return nil
	})
	stopWhenOut(t, p, outPath, len(want))
	recs := tailtest.ReadOut(t, outPath)
	seen := map[string]int{}
	for _, r := range recs {
		seen[r.Message]++
		if !want[r.Message] {
			t.Fatalf("unexpected record %q", r.Message)
		}
		if strings.HasPrefix(r.Message, "req ") {
			if r.Node.Namespace != "shop" || r.Node.Pod != "cart-7d9f-x2" || r.Fields["k8s.pod.uid"] != "0c1e-77" ||
				r.Fields["k8s.container.name"] != "api" || r.Stream != "stdout" || len(r.Trace.TraceID) != 32 || r.StartTime.IsZero() {
				t.Fatalf("metadata: %+v", r)
			}
		} else if r.Node.Namespace != "web" || r.Node.Pod != "front-1" || r.Level != "warn" || r.Stream != "stderr" {
			t.Fatalf("metadata: %+v", r)
		}
	}
	for m := range want {
		if seen[m] != 1 {
			t.Fatalf("%q seen %d times", m, seen[m])
		}
	}
}
