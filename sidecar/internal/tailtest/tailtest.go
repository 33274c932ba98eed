// Package tailtest builds the real meshtrail binary and runs "meshtrail
// tail" as a process, for the tests that kill it or hand it a real
// injected container's arguments.
package tailtest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/meshtrail/meshtrail/internal/record"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/meshtrail once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		dir, err := os.MkdirTemp("", "meshtrail-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "meshtrail")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/meshtrail")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// ReadOut parses an NDJSON output file.
func ReadOut(t testing.TB, path string) []*record.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []*record.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		r, err := record.ParseJSON(sc.Bytes())
		if err != nil {
			t.Fatalf("%s line %d: %v: %q", path, n, err, sc.Text())
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return recs
}
