package ndjson

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/record"
)

// Batches from many goroutines (each sink buffer with its own Encoder)
// come out as exactly the lines record.AppendJSON writes.
func TestConcurrentBatchesWriteAppendJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.ndjson")
	s, err := New(path, Rotation{MaxSizeMB: 100}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	batches := make([][]*record.Record, 16)
	for g := range batches {
		node := record.Node{ID: fmt.Sprintf("sidecar~10.0.0.%d~pod-%d.ns~ns.svc.cluster.local", g%4, g%4), Pod: fmt.Sprint("pod-", g%4)}
		for i := range 50 {
			r := &record.Record{
				Kind: record.KindHTTP, StartTime: time.Unix(1763719200+int64(i), int64(g*i)),
				Node:           node,
				Source:         record.Workload{Name: fmt.Sprint("w", i%3), Namespace: "ns\"q"},
				HTTP:           record.HTTP{Path: fmt.Sprintf("/p/%d/%d\n", g, i), ResponseCode: 200},
				RequestHeaders: map[string]string{"x-request-id": fmt.Sprint(g, "-", i), "x-b3-sampled": "1"},
			}
			batches[g] = append(batches[g], r)
			want = append(want, string(record.AppendJSON(nil, r)))
		}
	}
	var wg sync.WaitGroup
	for _, b := range batches {
		wg.Go(func() {
			for i := 0; i < len(b); i += 10 {
				if err := s.ConsumeRecords(context.Background(), b[i:i+10]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%d lines written, %d expected, or they differ", len(got), len(want))
	}
}

// Rotation happens between lines: every rotated file starts and ends with
// a whole record, so whoever tails them (Fluent Bit, Promtail) never sees
// half a record, and no record is lost across the files.
func TestRotationKeepsLinesWhole(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.ndjson")
	s, err := New(path, Rotation{MaxSizeMB: 1, MaxBackups: 10}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	const total = 9000 // about 3 MB: two rotations at least
	batch := make([]*record.Record, 0, 7)
	for i := range total {
		batch = append(batch, &record.Record{
			Kind: record.KindHTTP, StartTime: time.Unix(1763719200, int64(i)),
			HTTP: record.HTTP{Path: fmt.Sprintf("/items/%d/%s", i, strings.Repeat("x", i%300)), ResponseCode: 200},
		})
		if len(batch) == cap(batch) || i == total-1 {
			if err := s.ConsumeRecords(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "out*.ndjson"))
	if len(files) < 3 {
		t.Fatalf("%d files, want a rotation at least twice", len(files))
	}
	seen := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 1<<20 {
			t.Errorf("%s: %d bytes, over the 1 MB rotation size", f, len(data))
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			t.Errorf("%s ends mid-line: %q", f, data[max(0, len(data)-40):])
		}
		for n, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			var r struct {
				Path string `json:"path"`
			}
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("%s line %d is not a whole record: %v: %.60q", f, n+1, err, line)
			}
			seen[r.Path] = true
		}
	}
	if len(seen) != total {
		t.Fatalf("%d distinct records across the files, want %d", len(seen), total)
	}
}

// A failed write (here a full disk) drops the buffered records, counts
// them as dropped and not as written, and says so in the log; the sink
// keeps working for the writes after it.
func TestWriteFailureIsCountedAndLogged(t *testing.T) {
	reg := prometheus.NewRegistry()
	var logs strings.Builder
	s, err := New("/dev/full", Rotation{MaxSizeMB: 100}, reg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]*record.Record, 26)
	for i := range recs {
		recs[i] = &record.Record{Kind: record.KindHTTP, HTTP: record.HTTP{Path: fmt.Sprint("/", i)}}
	}
	if err := s.ConsumeRecords(context.Background(), recs); err != nil {
		t.Fatal(err) // buffered: the failure comes at the flush
	}
	if err := s.Close(); err == nil {
		t.Fatal("Close on a full disk returned no error")
	}
	got := map[string]float64{}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetCounter().GetValue()
	}
	if got["meshtrail_ndjson_records_dropped_total"] != 26 || got["meshtrail_ndjson_records_written_total"] != 0 ||
		got["meshtrail_ndjson_write_errors_total"] != 1 {
		t.Errorf("metrics %v: want 26 dropped, 0 written, 1 error", got)
	}
	if !strings.Contains(logs.String(), "write failed") || !strings.Contains(logs.String(), "records_dropped=26") {
		t.Errorf("log %q does not report the failed write", logs.String())
	}
}

// shortWriter writes only the first limit bytes of one Write and fails it,
// as a filling disk does, then writes everything.
type shortWriter struct {
	buf   strings.Builder
	limit int
	done  bool
}

func (w *shortWriter) Write(p []byte) (int, error) {
	if !w.done {
		w.done = true
		n := min(w.limit, len(p))
		w.buf.Write(p[:n])
		return n, errors.New("no space left on device")
	}
	return w.buf.Write(p)
}

// A write cut short leaves part of a line in the file; the next records
// still start lines of their own, and only the cut records count as lost.
func TestShortWriteDoesNotGlueRecords(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := New("-", Rotation{}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &shortWriter{limit: 40}
	s.out = w
	batch := func(from, n int) []*record.Record {
		var recs []*record.Record
		for i := from; i < from+n; i++ {
			recs = append(recs, &record.Record{Kind: record.KindHTTP, HTTP: record.HTTP{Path: fmt.Sprint("/", i)}})
		}
		return recs
	}
	_ = s.ConsumeRecords(context.Background(), batch(0, 3))
	if err := s.Flush(); err == nil {
		t.Fatal("a short write was not reported")
	}
	_ = s.ConsumeRecords(context.Background(), batch(3, 2))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The 40 bytes that made it hold record 0 and part of record 1.
	lines := strings.Split(strings.TrimSuffix(w.buf.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want record 0, the cut fragment and two whole records:\n%s", len(lines), w.buf.String())
	}
	for i, want := range map[int]string{0: "/0", 2: "/3", 3: "/4"} {
		var r struct {
			Path string `json:"path"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &r); err != nil || r.Path != want {
			t.Errorf("line %d = %q (%v), want the record %s on a line of its own", i+1, lines[i], err, want)
		}
	}
	got := map[string]float64{}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetCounter().GetValue()
	}
	if got["meshtrail_ndjson_records_dropped_total"] != 2 || got["meshtrail_ndjson_records_written_total"] != 3 {
		t.Errorf("metrics %v: want 2 dropped (the cut ones), 3 written", got)
	}
}
