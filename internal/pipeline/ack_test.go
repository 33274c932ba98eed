package pipeline

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/config"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/recordtest"
	"github.com/meshtrail/meshtrail/test/harness"
)

// The acknowledgement a source waits for is a promise: a batch the
// Acknowledged consumer accepted, with the backend down, survives the
// process being killed with SIGKILL right after, and is delivered by the
// next process on the same disk queue once the backend is back. (A tail
// agent commits its file offsets on that answer, so a loss here would be
// a loss of log lines nothing could read again.)
func TestAcknowledgedBatchSurvivesSIGKILL(t *testing.T) {
	if dir := os.Getenv("MESHTRAIL_ACK_CHILD_DIR"); dir != "" {
		ackChild(t, dir, os.Getenv("MESHTRAIL_ACK_CHILD_URL"))
		return
	}
	if testing.Short() {
		t.Skip("end-to-end: needs zincsearch (make test)")
	}
	z := harness.StartZinc(t)
	t.Setenv("MT_ZINC_PASSWORD", z.Password)
	z.Stop() // down while the child accepts: only the disk can keep the batch
	dir := t.TempDir()

	child := exec.Command(os.Args[0], "-test.run=^TestAcknowledgedBatchSurvivesSIGKILL$", "-test.v")
	child.Env = append(os.Environ(), "MESHTRAIL_ACK_CHILD_DIR="+dir, "MESHTRAIL_ACK_CHILD_URL="+z.URL,
		"MESHTRAIL_ACK_CHILD_USER="+z.User)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	acked := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if n, ok := strings.CutPrefix(sc.Text(), "ACKED "); ok {
				v, _ := strconv.Atoi(n)
				acked <- v
			}
		}
		close(acked)
	}()
	var total int
	select {
	case n, ok := <-acked:
		if !ok {
			t.Fatal("the child ended without acknowledging its batch")
		}
		total = n
	case <-time.After(2 * time.Minute):
		_ = child.Process.Kill()
		t.Fatal("no acknowledgement from the child in 2 minutes")
	}
	// Killed the moment it answered: no Shutdown, no flush.
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()

	z.Restart(t)
	p := newAckPipeline(t, dir, z.URL, z.User)
	defer p.Shutdown(context.Background())
	harness.Eventually(t, 90*time.Second, "every acknowledged record stored once", func() error {
		hits, n, err := z.Search(context.Background(), "ack-acked", map[string]any{"query": map[string]any{"match_all": map[string]any{}}, "size": 10000})
		if err != nil {
			return err
		}
		if n != total || len(hits) != total {
			return fmt.Errorf("%d documents (%d distinct), want %d", n, len(hits), total)
		}
		return nil
	})
}

// ackChild is the process that is killed: it accepts one batch through
// the Acknowledged consumer, says so, and waits for the signal.
func ackChild(t *testing.T, dir, url string) {
	p := newAckPipeline(t, dir, url, os.Getenv("MESHTRAIL_ACK_CHILD_USER"))
	g := recordtest.New("acked", 72)
	var recs []*record.Record
	for len(recs) < 300 {
		_, r := g.Request(200)
		recs = append(recs, r...)
	}
	if err := p.Consumer(Acknowledged).ConsumeRecords(context.Background(), recs); err != nil {
		t.Fatalf("the acknowledged batch was refused: %v", err)
	}
	fmt.Printf("ACKED %d\n", len(recs))
	time.Sleep(time.Hour)
}

// newAckPipeline sends to the Elasticsearch-compatible store through a
// disk queue in dir. Memory could hold the whole batch: only the
// acknowledgement puts it on disk before the answer.
func newAckPipeline(t *testing.T, dir, url, user string) *Pipeline {
	t.Helper()
	doc := fmt.Sprintf(`sinks:
  elasticsearch:
    enabled: true
    url: %s/es
    index: ack-{namespace}
    auth: {username: %s, password_env: MT_ZINC_PASSWORD}
    queue:
      memory: {records: 1000}
      batch: {max_records: 100, max_wait: 50ms}
      retry: {initial_backoff: 20ms, max_backoff: 300ms}
      disk: {dir: %q, fsync: never}
`, url, user, dir)
	var cfg Config
	if err := config.Parse("ack.yaml", []byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
