package demo

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The demo is the first thing a new user runs: it must show the trail of a
// failed request, RED per edge and the Istio snippet, and leave the records
// where it says.
func TestDemoShowsTheTrailOfAFailedRequest(t *testing.T) {
	out := filepath.Join(t.TempDir(), "records.ndjson")
	var stdout, stderr strings.Builder
	code := Command(context.Background(), []string{"--requests", "80", "--error-rate", "0.5", "--out", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	text := stdout.String()
	for _, want := range []string{
		"== The trail of a failed request: trace ",
		"UF,URX",
		"== RED per service edge",
		"reviews-v2            ratings-v1",
		"envoyHttpAls:",
		"filterStateObjectsToLog",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	// The trace id it prints finds that request's records in the file.
	marker := "failed request: trace "
	i := strings.Index(text, marker)
	traceID := strings.Fields(text[i+len(marker):])[0]
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"trace_id":"`+traceID+`"`) {
			n++
		}
	}
	if n < 3 {
		t.Fatalf("%d records of trace %s in %s, want the request's hops", n, traceID, out)
	}
}

func TestDemoHelp(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := Command(context.Background(), []string{"--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	if !strings.Contains(stderr.String(), "synthetic Istio mesh") {
		t.Errorf("--help does not explain the demo:\n%s", stderr.String())
	}
}
