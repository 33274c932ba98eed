package sidecar_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/sidecar/internal/tailtest"
)

// rotator returns the writer's rotation for one kind, as logrotate does it.
func rotator(t *testing.T, logPath, kind string, keep int) func(*os.File) *os.File {
	n := 0
	return func(f *os.File) *os.File {
		n++
		rotated := fmt.Sprintf("%s.%d", logPath, n)
		if n > keep { // logrotate's "rotate N": the oldest goes, maybe while still read
			os.Remove(fmt.Sprintf("%s.%d", logPath, n-keep))
		}
		switch kind {
		case "rename", "create":
			f.Close()
			if err := os.Rename(logPath, rotated); err != nil {
				t.Error(err)
			}
			nf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
			if err != nil {
				t.Error(err)
			}
			return nf
		case "copytruncate":
			src, err := os.Open(logPath)
			if err != nil {
				t.Error(err)
				return f
			}
			dst, err := os.Create(rotated)
			if err != nil {
				t.Error(err)
				return f
			}
			io.Copy(dst, src)
			src.Close()
			dst.Close()
			if err := f.Truncate(0); err != nil {
				t.Error(err)
			}
			return f
		}
		t.Fatalf("unknown rotation %s", kind)
		return nil
	}
}

// TestRotationUnderLoad writes at full speed while rotating every few
// thousand lines, and checks the output holds every line exactly once.
// The glob matches the rotated names for rename and copytruncate (as
// app.log* does with logrotate's names), so a rotated file must be
// recognised as the stream already read; for create it does not.
func TestRotationUnderLoad(t *testing.T) {
	bin := tailtest.Binary(t)
	for _, tc := range []struct{ kind, glob string }{
		{"rename", "app.log*"},
		{"create", "*.log"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			dir := t.TempDir()
			logPath := filepath.Join(dir, "app.log")
			outPath := filepath.Join(dir, "out.ndjson")
			args := []string{"tail", "--paths=" + filepath.Join(dir, tc.glob), "--state-dir=" + filepath.Join(dir, "state"),
				"--out=" + outPath, "--log-level=debug"}
			const n = 40000
			w := &writer{path: logPath, n: n, rotate: rotator(t, logPath, tc.kind, 10), rotateEvery: 3000}
			if tc.kind == "create" {
				// The glob does not match the rotated names, so a new file
				// must be found before it is rotated away: a file created and
				// rotated out of the globs within the agent's discovery time
				// (a filesystem event, then an open by path) is missed, as by
				// any tailer that follows paths. logrotate rotates minutes
				// apart; here 100 ms, still a hundred times faster.
				w.rotatePause = 100 * time.Millisecond
			}
			os.WriteFile(logPath, nil, 0o644)
			cmd := startAgent(t, bin, args)
			// Write only once the agent is up: a file rotated away and
			// deleted before the agent started is lost to any tailer.
			waitForSocket(t, filepath.Join(dir, "state", "tail.sock"))
			start := time.Now()
			w.run(t, 0)
			t.Logf("%d lines written with rotations in %v", n, time.Since(start))
			stopWhenOut(t, cmd, outPath, n)
			checkExactlyOnce(t, outPath, n)
		})
	}
}

func waitForSocket(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			time.Sleep(300 * time.Millisecond) // its first scan
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not up: no %s", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
