package sidecar_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/sidecar/internal/tailtest"
)

// TestBadInput feeds the agent a 10 MiB line, binary garbage, a file
// replaced by a directory, a symlink to a file outside the globs and a
// file deleted while read. Each costs only itself: the long line comes out
// cut and flagged, garbage flagged invalid_utf8, the directory and the
// symlink are logged and skipped, and every good line around them arrives.
func TestBadInput(t *testing.T) {
	bin := tailtest.Binary(t)
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	os.MkdirAll(logs, 0o755)
	outPath := filepath.Join(dir, "out.ndjson")
	secret := filepath.Join(dir, "secret.txt")
	os.WriteFile(secret, []byte("password=hunter2\n"), 0o600)
	p := startAgent(t, bin, []string{"tail", "--paths=" + filepath.Join(logs, "*.log"), "--state-dir=" + filepath.Join(dir, "state"),
		"--out=" + outPath, "--max-line-bytes=65536"})

	app := filepath.Join(logs, "app.log")
	var b bytes.Buffer
	b.WriteString("before\n")
	b.WriteString(strings.Repeat("y", 10<<20) + "\n")
	b.WriteString("after the long line\n")
	b.WriteString("garbage \xff\xfe\x00\x01\xc3 end\n")
	os.WriteFile(app, b.Bytes(), 0o644)
	os.Symlink(secret, filepath.Join(logs, "link.log"))
	gone := filepath.Join(logs, "gone.log")
	os.WriteFile(gone, []byte("from a file deleted while read\n"), 0o644)
	time.Sleep(500 * time.Millisecond)
	os.Remove(gone)
	// app.log replaced by a directory; a new file keeps going.
	os.Remove(app)
	os.Mkdir(app, 0o755)
	os.WriteFile(filepath.Join(logs, "next.log"), []byte("still serving\n"), 0o644)

	stopWhenOut(t, p, outPath, 6)
	recs := tailtest.ReadOut(t, outPath)
	byMsg := map[string]int{}
	for _, r := range recs {
		switch {
		case strings.HasPrefix(r.Message, "yyyy"):
			if !r.Truncated || len(r.Message) != 65536 {
				t.Errorf("long line: truncated=%v, %d bytes", r.Truncated, len(r.Message))
			}
			byMsg["long"]++
		case strings.HasPrefix(r.Message, "garbage"):
			if !r.InvalidUTF8 || !strings.Contains(r.Message, "\ufffd") || !strings.HasSuffix(r.Message, " end") {
				t.Errorf("garbage line: %+v", r)
			}
			byMsg["garbage"]++
		case strings.Contains(r.Message, "hunter2"):
			t.Errorf("a symlink out of the globs was followed: %q", r.Message)
		default:
			byMsg[r.Message]++
		}
	}
	for _, m := range []string{"before", "long", "after the long line", "garbage", "from a file deleted while read", "still serving"} {
		if byMsg[m] != 1 {
			t.Errorf("%q came out %d times", m, byMsg[m])
		}
	}
	log := p.stderr.String()
	for _, want := range []string{`"reason":"symlink not followed"`, `"reason":"is a directory"`} {
		if strings.Count(log, want) != 1 {
			t.Errorf("log has %d lines with %s, want it logged once:\n%s", strings.Count(log, want), want, lastLines(log, 20))
		}
	}
}
