package tail

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func newTestTailer(t *testing.T, cfg Config) *Tailer {
	t.Helper()
	if cfg.MaxLineBytes == 0 {
		cfg.MaxLineBytes = 1 << 20
	}
	cfg.PollInterval, cfg.Linger = 10*time.Millisecond, time.Hour
	if cfg.FlushAfter == 0 {
		cfg.FlushAfter = time.Hour
	}
	tl := New(cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	t.Cleanup(tl.Close)
	return tl
}

func readAll(t *testing.T, tl *Tailer, drain bool) []string {
	t.Helper()
	tl.Scan(false)
	var out []string
	for {
		es, err := tl.Read(context.Background(), 1<<20, drain)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			return out
		}
		for _, e := range es {
			s := string(e.Data)
			if e.Truncated {
				s += "<cut>"
			}
			out = append(out, s)
		}
	}
}

// Multiline: a stack trace joins the line that starts the record; the
// checkpoint stays at the record's start until it is emitted, and a
// record over the maximum is cut and flagged.
func TestMultiline(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	first := "2026-12-02 21:00:00 ERROR boom\n\tat a.b(C.java:1)\n\tat d.e(F.java:2)\n"
	os.WriteFile(p, []byte(first+"2026-12-02 21:00:01 INFO next\n"+strings.Repeat("\tat x\n", 100)), 0o644)
	tl := newTestTailer(t, Config{Paths: []string{filepath.Join(dir, "*.log")}, Multiline: regexp.MustCompile(`^\d{4}-`), MaxLineBytes: 200})
	got := readAll(t, tl, false)
	if len(got) != 1 || got[0] != strings.TrimSuffix(first, "\n") {
		t.Fatalf("got %q", got)
	}
	if pos := tl.Positions(); len(pos) != 1 || pos[0].Offset != int64(len(first)) {
		t.Fatalf("checkpoint %+v, want the pending record's start %d", pos, len(first))
	}
	// The quiet flush (here: a drain) emits the pending record, cut at 200 bytes.
	got = readAll(t, tl, true)
	if len(got) != 1 || !strings.HasSuffix(got[0], "<cut>") || len(got[0]) != 200+len("<cut>") || !strings.HasPrefix(got[0], "2026-12-02 21:00:01 INFO next\n\tat x") {
		t.Fatalf("got %q", got)
	}
}

// CRI partial lines: P parts join up to the F part; the checkpoint never
// points between the parts of one line.
func TestCRIPartials(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "0.log")
	parts := "2026-12-02T21:00:00Z stdout P hello \n2026-12-02T21:00:00Z stdout P wide \n"
	os.WriteFile(p, []byte(parts), 0o644)
	tl := newTestTailer(t, Config{Paths: []string{p}, CRI: true})
	if got := readAll(t, tl, false); len(got) != 0 {
		t.Fatalf("emitted before the F part: %q", got)
	}
	if pos := tl.Positions(); pos[0].Offset != 0 {
		t.Fatalf("checkpoint at %d, inside a partial line", pos[0].Offset)
	}
	f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("2026-12-02T21:00:01Z stderr F other stream\n")
	f.Sync()
	// The other stream's line waits for the partial line: emitted before
	// it, it would lie past the checkpoint and be read twice after a crash.
	if got := readAll(t, tl, false); len(got) != 0 {
		t.Fatalf("emitted while a partial line is pending: %q", got)
	}
	if pos := tl.Positions(); pos[0].Offset != 0 {
		t.Fatalf("checkpoint at %d, past a pending partial line", pos[0].Offset)
	}
	f.WriteString("2026-12-02T21:00:00Z stdout F world\n")
	f.Close()
	got := readAll(t, tl, false)
	want := []string{"2026-12-02T21:00:00Z stdout F hello wide world", "2026-12-02T21:00:01Z stderr F other stream"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q want %q", got, want)
	}
	if pos := tl.Positions(); pos[0].Offset != int64(len(parts)+len("2026-12-02T21:00:01Z stderr F other stream\n2026-12-02T21:00:00Z stdout F world\n")) {
		t.Fatalf("checkpoint at %d after everything was emitted", pos[0].Offset)
	}
}

// A last line without its newline is held until the file stays quiet.
func TestUnterminatedLastLine(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	os.WriteFile(p, []byte("one\ntw"), 0o644)
	tl := newTestTailer(t, Config{Paths: []string{p}})
	if got := readAll(t, tl, false); strings.Join(got, "|") != "one" {
		t.Fatalf("got %q", got)
	}
	f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("o\n")
	f.Close()
	if got := readAll(t, tl, false); strings.Join(got, "|") != "two" {
		t.Fatalf("got %q", got)
	}
}
