package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type sample struct {
	GRPC struct {
		KeepaliveTime Duration `json:"keepalive_time"`
	} `json:"grpc"`
	Out string `json:"out"`
}

func load(t *testing.T, text string) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "als.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var s sample
	return Load(path, &s)
}

// A misspelt key is named with its line, in words about YAML, not JSON.
func TestUnknownFieldNamedWithItsLine(t *testing.T) {
	err := load(t, "out: stdout\ngrpc:\n  keepalive_tme: 30s\n")
	if err == nil {
		t.Fatal("a misspelt key was accepted")
	}
	for _, want := range []string{"line 3", `"keepalive_tme"`, "misspelt"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "JSON") {
		t.Errorf("error %q talks about JSON in a YAML file", err)
	}
	// A name valid in one place and wrong in another: both lines are named.
	type nested struct {
		GRPC struct {
			MaxStreams int `json:"max_streams"`
		} `json:"grpc"`
	}
	path := filepath.Join(t.TempDir(), "als.yaml")
	if err := os.WriteFile(path, []byte("grpc:\n  max_streams: 5\nmax_streams: 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var n nested
	if err := Load(path, &n); err == nil || !strings.Contains(err.Error(), "one of lines 2, 3") {
		t.Errorf("got %v, want both candidate lines named", err)
	}
}

// A second document would be ignored silently: it is an error instead.
func TestSecondDocumentRefused(t *testing.T) {
	if err := load(t, "out: stdout\n---\ngrpc:\n  keepalive_time: 30s\n"); err == nil || !strings.Contains(err.Error(), "more than one YAML document") {
		t.Fatalf("got %v, want the second document refused", err)
	}
	if err := load(t, "out: stdout\n--- # the grpc part\ngrpc:\n  keepalive_time: 30s\n"); err == nil {
		t.Fatal("a second document after a commented marker was ignored")
	}
	// A leading "---" is only a document start.
	if err := load(t, "# meshtrail\n---\nout: stdout\n"); err != nil {
		t.Fatalf("a file starting with --- was refused: %v", err)
	}
}

// A duration without a unit is refused with the unit to write: one part of
// meshtrail once read 30 as seconds and another as nanoseconds.
func TestBareNumberDurationIsRefused(t *testing.T) {
	err := load(t, "grpc:\n  keepalive_time: 30\n")
	if err == nil || !strings.Contains(err.Error(), `"30s"`) {
		t.Fatalf("got %v, want the bare number refused with the unit to write", err)
	}
	if err := load(t, "grpc:\n  keepalive_time: 30s\n"); err != nil {
		t.Fatal(err)
	}
}
