// Package repo checks the repository itself: what a reviewer would
// otherwise have to catch by eye.
package repo

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/meshtrail/meshtrail/test/harness"
)

// go.mod says exactly what the code imports: every direct dependency
// without "// indirect", nothing unused. `go mod tidy -diff` prints what it
// would change and exits non-zero when anything would.
func TestGoModIsTidy(t *testing.T) {
	cmd := exec.Command("go", "mod", "tidy", "-diff")
	cmd.Dir = harness.RepoRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go mod tidy would change go.mod/go.sum (run `go mod tidy`): %v\n%s", err, out)
	}
}

// Every Go file is gofmt-formatted.
func TestGofmt(t *testing.T) {
	cmd := exec.Command("gofmt", "-l", ".")
	cmd.Dir = harness.RepoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gofmt: %v", err)
	}
	if files := strings.TrimSpace(string(out)); files != "" {
		t.Fatalf("not gofmt-formatted (run gofmt -w):\n%s", files)
	}
}
