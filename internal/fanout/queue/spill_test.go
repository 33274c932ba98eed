package queue

import (
	"context"
	"sync"
	"testing"

	"github.com/meshtrail/meshtrail/internal/fanout/queue/diskq"
	"github.com/meshtrail/meshtrail/internal/record"
)

// A disk queue written by the release before the binary spill form holds
// JSON records; after the upgrade they replay, in order, and the records
// spilled from then on (binary) follow them.
func TestReplaysJSONFramesOfThePreviousRelease(t *testing.T) {
	dir := t.TempDir()
	cfg := fastConfig()
	cfg.Disk.Dir = dir
	l, err := diskq.Open(diskq.Options{Dir: dir, SegmentBytes: cfg.Disk.SegmentBytes, Fsync: diskq.FsyncNever})
	if err != nil {
		t.Fatal(err)
	}
	var old [][]byte
	for _, r := range recs(0, 150) {
		old = append(old, appendJSONMessage(nil, &item{rec: r, at: 1}))
	}
	if err := l.Append(old); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	g := newGate(false)
	cfg.Memory.Records = intp(0) // write-ahead: the new records are binary frames behind the old ones
	q := newQueue(t, funcExporter{"gate", g.export}, cfg)
	consume(t, q, recs(150, 300), 10)
	g.set(true)
	g.waitUnique(t, 300)
	shutdown(t, q)
	assertInOrder(t, g.order, 300)
	if v := value(q.m.dropped.WithLabelValues(ReasonCorrupt)); v != 0 {
		t.Fatalf("%v records could not be decoded", v)
	}
}

// What comes back from disk is the record that went in, every field.
func TestSpillKeepsRecords(t *testing.T) {
	dir := t.TempDir()
	cfg := fastConfig()
	cfg.Disk.Dir = dir
	cfg.Memory.Records = intp(0)
	in := recs(0, 50)
	yes := true
	for i, r := range in {
		r.Tenant = "team-" + itoa(i%3)
		r.ID = "id-" + itoa(i)
		r.Trace.Sampled = &yes
		r.Timings.Total = 1234567 // nanoseconds: the JSON form kept microseconds
	}
	var mu sync.Mutex
	var out []*record.Record
	q := newQueue(t, funcExporter{"keep", func(_ context.Context, b []*record.Record) error {
		mu.Lock()
		out = append(out, b...)
		mu.Unlock()
		return nil
	}}, cfg)
	consume(t, q, in, 7)
	shutdown(t, q)
	if len(out) != len(in) {
		t.Fatalf("%d records came back, want %d", len(out), len(in))
	}
	for i := range in {
		a, b := record.AppendJSON(nil, in[i]), record.AppendJSON(nil, out[i])
		if string(a) != string(b) || out[i].Timings.Total != in[i].Timings.Total || out[i] == in[i] {
			t.Fatalf("record %d changed on disk:\n%s\n%s", i, a, b)
		}
	}
}

// batch.max_bytes holds for batches read back from disk too, although the
// log reads by binary frame bytes (smaller than the JSON counted).
func TestDiskBatchesKeepMaxBytes(t *testing.T) {
	cfg := fastConfig()
	cfg.Disk.Dir = t.TempDir()
	cfg.Memory.Records = intp(0)
	cfg.Batch.MaxRecords = 100
	in := recs(0, 400)
	size := in[0].Size()
	cfg.Batch.MaxBytes = 10 * size
	var mu sync.Mutex
	var biggest, got int
	g := newGate(false)
	q := newQueue(t, funcExporter{"sized", func(ctx context.Context, b []*record.Record) error {
		if err := g.export(ctx, b); err != nil {
			return err
		}
		n := 0
		for _, r := range b {
			n += r.Size()
		}
		mu.Lock()
		biggest = max(biggest, n)
		got += len(b)
		mu.Unlock()
		return nil
	}}, cfg)
	consume(t, q, in, 50) // all on disk while the backend is down
	g.set(true)
	g.waitUnique(t, len(in))
	shutdown(t, q)
	if biggest > cfg.Batch.MaxBytes+size { // records differ by a few bytes
		t.Fatalf("a disk batch of %d JSON bytes, max_bytes %d", biggest, cfg.Batch.MaxBytes)
	}
}
