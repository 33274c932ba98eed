package sidecar_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/sidecar/internal/tailtest"
)

// TestConfigReloadKeepsPositions changes the configuration file while
// the agent runs: a new glob and another parser apply without a restart,
// and the files already read go on from where they were (no line twice).
func TestConfigReloadKeepsPositions(t *testing.T) {
	bin := tailtest.Binary(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "a"), 0o755)
	os.MkdirAll(filepath.Join(dir, "b"), 0o755)
	outPath := filepath.Join(dir, "out.ndjson")
	cfgPath := filepath.Join(dir, "tail.yaml")
	write := func(paths, parser string) {
		os.WriteFile(cfgPath, []byte(fmt.Sprintf("paths: [%s]\nparser: %s\nstate_dir: %s\nout: %s\n", paths, parser,
			filepath.Join(dir, "state"), outPath)), 0o644)
	}
	write(filepath.Join(dir, "a", "*.log"), "raw")
	p := startAgent(t, bin, []string{"tail", "--config=" + cfgPath})
	appendTo := func(path string, lines ...string) {
		f, _ := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		for _, l := range lines {
			f.WriteString(l + "\n")
		}
		f.Close()
	}
	appendTo(filepath.Join(dir, "a", "app.log"), `{"msg":"a1"}`, `{"msg":"a2"}`)
	appendTo(filepath.Join(dir, "b", "app.log"), `{"msg":"b1"}`)
	deadline := time.Now().Add(20 * time.Second)
	for countLines(outPath) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	write(filepath.Join(dir, "a", "*.log")+", "+filepath.Join(dir, "b", "*.log"), "json")
	// b1 out means the new configuration is in force.
	for countLines(outPath) < 3 && time.Now().Before(deadline.Add(20*time.Second)) {
		time.Sleep(50 * time.Millisecond)
	}
	appendTo(filepath.Join(dir, "a", "app.log"), `{"msg":"a3"}`)
	stopWhenOut(t, p, outPath, 4)
	got := map[string]int{}
	for _, r := range tailtest.ReadOut(t, outPath) {
		got[r.Message]++
	}
	// Before the reload lines are raw (the whole object), after it JSON.
	want := map[string]int{`{"msg":"a1"}`: 1, `{"msg":"a2"}`: 1, "b1": 1, "a3": 1}
	for m, n := range want {
		if got[m] != n {
			t.Errorf("%q came out %d times; all: %v", m, got[m], got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("unexpected records: %v", got)
	}
}
