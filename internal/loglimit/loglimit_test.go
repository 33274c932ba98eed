package loglimit

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

// One line per reason per interval; the next one says how many were held
// back; reasons do not hold each other back.
func TestOneLinePerReasonPerInterval(t *testing.T) {
	var out strings.Builder
	logger := slog.New(slog.NewTextHandler(&out, nil))
	l := New(200 * time.Millisecond)
	for range 3 {
		l.Log(logger, slog.LevelWarn, "malformed", "bad message")
	}
	l.Log(logger, slog.LevelWarn, "too_large", "big message")
	time.Sleep(250 * time.Millisecond)
	l.Log(logger, slog.LevelWarn, "malformed", "bad message")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), out.String())
	}
	if !strings.Contains(lines[2], "suppressed_since_last=2") {
		t.Errorf("last line %q does not count the two held back", lines[2])
	}
}
