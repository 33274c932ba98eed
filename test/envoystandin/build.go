package envoystandin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildWasm compiles the Go Proxy-Wasm plugin in pkgDir (a package main,
// e.g. <repo>/wasm) with the project's fixed flags and returns the module.
// Go's build cache makes a rebuild of unchanged sources take a second.
func BuildWasm(pkgDir, outDir string) ([]byte, error) {
	out := filepath.Join(outDir, filepath.Base(pkgDir)+".wasm")
	cmd := exec.Command(goTool(), "build", "-trimpath", "-buildmode=c-shared", "-o", out, ".")
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s for wasip1: %v\n%s", pkgDir, err, b)
	}
	return os.ReadFile(out)
}

// goTool is the go command of the running toolchain.
func goTool() string {
	// `go test` runs the test binary with GOROOT set to its toolchain
	// (runtime.GOROOT is deprecated); elsewhere the go on PATH.
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}
