package sidecar_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/sidecar/internal/tailtest"
)

// writer appends numbered lines to path at full speed until n are written,
// in writes of random sizes (so lines are often split between writes).
// rotate, when set, is called every rotateEvery lines with the writer
// paused; it returns the file to continue writing to.
type writer struct {
	path        string
	n           int
	rotate      func(f *os.File) *os.File
	rotateEvery int
	// rotatePause waits before each rotation: how soon a new file may be
	// rotated away again.
	rotatePause time.Duration
	written     atomic.Int64
}

func line(i int) string { return fmt.Sprintf("line %08d trace_id=%032x\n", i, i+1) }

func (w *writer) run(t *testing.T, pace time.Duration) {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	var buf []byte
	for i := 0; i < w.n; i++ {
		buf = append(buf, line(i)...)
		if len(buf) > 4096 || rand.IntN(8) == 0 || i == w.n-1 {
			cut := rand.IntN(len(buf) + 1)
			f.Write(buf[:cut])
			f.Write(buf[cut:])
			buf = buf[:0]
			w.written.Store(int64(i + 1))
			if pace > 0 {
				time.Sleep(pace)
			}
		}
		if w.rotate != nil && (i+1)%w.rotateEvery == 0 && i+1 < w.n {
			if len(buf) > 0 {
				f.Write(buf)
				buf = buf[:0]
			}
			time.Sleep(w.rotatePause)
			f = w.rotate(f)
		}
	}
	f.Close()
}

// checkExactlyOnce asserts out holds every line 0..n-1 exactly once.
func checkExactlyOnce(t *testing.T, outPath string, n int) {
	t.Helper()

	recs := tailtest.ReadOut(t, outPath)
	seen := make([]int, n)
	for _, r := range recs {
		f := strings.Fields(r.Message)
		if len(f) < 2 || f[0] != "line" {
			t.Fatalf("unexpected line %q", r.Message)
		}
		i, err := strconv.Atoi(f[1])
		if err != nil || i < 0 || i >= n {
			t.Fatalf("unexpected line %q", r.Message)
		}
		if r.Message+"\n" != line(i) {
			t.Fatalf("line %d mangled: %q", i, r.Message)
		}
		if r.Trace.TraceID != fmt.Sprintf("%032x", i+1) {
			t.Fatalf("line %d: trace id %q", i, r.Trace.TraceID)
		}
		seen[i]++
	}
	var lost, dup []int
	for i, c := range seen {
		if c == 0 {
			lost = append(lost, i)
		}
		if c > 1 {
			dup = append(dup, i)
		}
	}
	if len(lost) > 0 || len(dup) > 0 {
		t.Fatalf("%d records for %d lines: %d lost (first %v), %d duplicated (first %v)", len(recs), n, len(lost), head(lost), len(dup), head(dup))
	}
}

func head(s []int) []int {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}

type agentProc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
}

func startAgent(t *testing.T, bin string, args []string) agentProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("agent log:\n%s", lastLines(stderr.String(), 200))
		}
	})
	return agentProc{cmd, &stderr}
}

// stopWhenOut ends the agent with SIGTERM once the output holds want
// lines (or a minute passed), and checks it exited cleanly.
func stopWhenOut(t *testing.T, p agentProc, outPath string, want int) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	for countLines(outPath) < want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("output complete after %v", time.Since(start))
	p.cmd.Process.Signal(syscall.SIGTERM)
	defer func() { t.Logf("agent stopped %v after SIGTERM", time.Since(start)) }()
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("agent: %v\n%s", err, p.stderr.String())
	}

}

func lastLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func countLines(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte("\n"))
}

// TestKill9NeverLosesOrDuplicates kills the agent with SIGKILL at random
// moments, 20 times, while a writer appends at full speed; after a last
// clean run the NDJSON output holds every line exactly once.
func TestKill9NeverLosesOrDuplicates(t *testing.T) {
	bin := tailtest.Binary(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "app.log")
	outPath := filepath.Join(dir, "out.ndjson")
	args := []string{"tail", "--paths=" + filepath.Join(dir, "*.log"), "--state-dir=" + filepath.Join(dir, "state"), "--out=" + outPath}
	const n = 40000
	w := &writer{path: logPath, n: n}
	done := make(chan struct{})
	start := time.Now()
	go func() { defer close(done); w.run(t, 100*time.Microsecond) }()
	for round := 0; round < 20; round++ {
		cmd := exec.Command(bin, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(30+rand.IntN(300)) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
	}
	<-done
	t.Logf("after 20 kills (%v): %d of %d lines out", time.Since(start), countLines(outPath), n)
	stopWhenOut(t, startAgent(t, bin, args), outPath, n)
	checkExactlyOnce(t, outPath, n)
}
