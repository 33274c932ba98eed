package ndjson

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/record"
)

// Batches from many goroutines (each sink buffer with its own Encoder)
// come out as exactly the lines record.AppendJSON writes.
func TestConcurrentBatchesWriteAppendJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.ndjson")
	s, err := New(path, Rotation{MaxSizeMB: 100}, nil)
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
