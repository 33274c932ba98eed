// Package hostile is the project's hostile-input suite (issue 15): every
// case sends what a hostile or broken client would over the real socket of
// the real `meshtrail als` or `meshtrail inject` binary, then checks that
// the process is alive, that a good stream or review still works, that the
// counter naming the problem moved, and that the process's peak RSS
// stayed under its documented bound.
//
// Each case gets a fresh process, so its peak RSS (VmHWM) is the case's
// own. MESHTRAIL_HOSTILE_BIN runs the suite against another build (the
// before/after figures in bench/RESULTS.md: bench/hostile.sh);
// MESHTRAIL_HOSTILE_REPORT appends "server case peak-RSS-KiB" per case to
// a file.
package hostile

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/test/harness"
)

// Documented bounds (als: README.md "Bad input"; injector/README.md
// "Bad input"): one client's input never takes a process with the
// default configuration past these.
const (
	alsPeakBound    = 512 << 20
	injectPeakBound = 128 << 20 // the example Deployment's memory limit
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// binary is the meshtrail binary under test: MESHTRAIL_HOSTILE_BIN, or
// ./cmd/meshtrail built once (without the race detector, whose shadow
// memory would hide the figures measured here).
func binary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("MESHTRAIL_HOSTILE_BIN"); b != "" {
		return b
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meshtrail-hostile-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "meshtrail")
		cmd := exec.Command("go", "build", "-trimpath", "-o", builtBin, "./cmd/meshtrail")
		cmd.Dir = harness.RepoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build meshtrail: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// peakRSS is the process's peak resident set (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read peak RSS: %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", rest, err)
			}
			return kib << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// checkPeak fails the case when the process's peak RSS passed bound, and
// reports it.
func checkPeak(t *testing.T, p *harness.Process, server string, bound int64) {
	t.Helper()
	peak := peakRSS(t, p.Cmd.Process.Pid)
	t.Logf("peak RSS %.1f MiB (bound %d MiB)", float64(peak)/(1<<20), bound>>20)
	if path := os.Getenv("MESHTRAIL_HOSTILE_REPORT"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%s %s %d\n", server, t.Name(), peak>>10)
			f.Close()
		}
	}
	if peak > bound {
		t.Errorf("peak RSS %d MiB is over the documented bound of %d MiB", peak>>20, bound>>20)
	}
}

// alive fails the case unless the process still runs and answers.
func alive(t *testing.T, p *harness.Process, healthURL string, client *http.Client) {
	t.Helper()
	if exited, err := p.Exited(); exited {
		t.Fatalf("%s exited: %v", p.Name, err)
	}
	resp, err := client.Get(healthURL)
	if err != nil {
		t.Fatalf("%s does not answer %s: %v", p.Name, healthURL, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s answered %d", p.Name, healthURL, resp.StatusCode)
	}
}

// scrape returns a /metrics page.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metric is the value of the first series of name whose labels hold every
// fragment, 0 when there is none.
func metric(text, name string, fragments ...string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, f := range fragments {
			ok = ok && strings.Contains(line, f)
		}
		if !ok {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err == nil {
			return v
		}
	}
	return 0
}

// eventually polls cond until it holds or two minutes passed.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	harness.Eventually(t, 2*time.Minute, what, cond) // generous: the machines running the suite are shared
}

// skipShort skips the suite under -short (make test-unit): it builds and
// runs the real binary, like the other end-to-end tests.
func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("hostile-input suite against the real binary: run without -short (make test)")
	}
}
