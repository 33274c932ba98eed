// Package harness starts the real servers end-to-end tests talk to (a
// kube-apiserver, Prometheus, Jaeger, Loki, ...) on 127.0.0.1 and finds the
// tools `make tools` installed under ToolsDir. A missing tool fails the test
// with the command that installs it: tests are never skipped for that.
package harness

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// RepoRoot returns the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("harness: no go.mod above the working directory")
		}
		dir = parent
	}
}

// ToolsDir is $MESHTRAIL_TOOLS_DIR, or meshtrail/tools in the user's cache
// directory (~/.cache), where `make tools` puts them: one cache for every
// checkout, so a fresh clone does not rebuild Loki and kube-apiserver.
func ToolsDir(t testing.TB) string {
	if d := os.Getenv("MESHTRAIL_TOOLS_DIR"); d != "" {
		return d
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("harness: no cache directory for the tools (set MESHTRAIL_TOOLS_DIR): %v", err)
	}
	return filepath.Join(cache, "meshtrail", "tools")
}

// Tool returns the path of an installed tool binary, failing the test with
// the install command when it is missing.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(ToolsDir(t), "bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("harness: tool %s is not installed at %s: run `make tools` (or test/tools/install.sh %s)", name, p, name)
	}
	return p
}

// FreeAddr returns a free 127.0.0.1:port, never one it returned before in
// this process.
func FreeAddr(t testing.TB) string {
	t.Helper()
	freeMu.Lock()
	defer freeMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		// The kernel may hand a just-closed port out again: two servers
		// of one test (Jaeger's OTLP and Zipkin ports) once got the same.
		if !handedOut[addr] {
			handedOut[addr] = true
			return addr
		}
	}
	t.Fatal("harness: no free port not handed out before in 100 tries")
	return ""
}

var (
	freeMu    sync.Mutex
	handedOut = map[string]bool{} // every address FreeAddr returned in this process
)

// Process is a server started for a test. Its output goes to a log file
// that is printed when the test fails.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	Log  string

	mu      sync.Mutex
	done    chan struct{}
	waitErr error
}

// Start runs name with args in the background; the process is stopped
// (SIGTERM, then SIGKILL) when the test ends.
func Start(t testing.TB, name string, env []string, bin string, args ...string) *Process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("harness: start %s: %v", name, err)
	}
	p := &Process{Name: name, Cmd: cmd, Log: logPath, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("--- %s log (tail) ---\n%s", name, b)
		}
	})
	return p
}

// Stop ends the process and waits for it.
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Eventually polls cond every 100ms until it returns nil or timeout passes,
// then fails the test with the last error.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("harness: %s: not true after %v: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitHTTP waits until GET url answers with a 2xx status, failing early if
// p exits (p may be nil).
func WaitHTTP(t testing.TB, p *Process, url string, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, "wait for "+url, func() error {
		if p != nil {
			if exited, err := p.Exited(); exited {
				t.Fatalf("harness: %s exited before %s answered: %v (log %s)", p.Name, url, err, p.Log)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			return fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(b.String()))
		}
		return nil
	})
}
