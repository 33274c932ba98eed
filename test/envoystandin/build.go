package envoystandin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// BuildWasm compiles the Go Proxy-Wasm plugin in pkgDir (a package main,
// e.g. <repo>/wasm) with the project's fixed flags and returns the module.
// Go's build cache makes a rebuild of unchanged sources take a second.
func BuildWasm(pkgDir, outDir string) ([]byte, error) {
	out := filepath.Join(outDir, filepath.Base(pkgDir)+".wasm")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	cmd := exec.Command(gobin, "build", "-trimpath", "-buildmode=c-shared", "-o", out, ".")
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s for wasip1: %v\n%s", pkgDir, err, b)
	}
	return os.ReadFile(out)
}
