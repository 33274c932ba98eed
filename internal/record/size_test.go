package record

import (
	"math/rand/v2"
	"sync"
	"testing"
)

// Size is len(AppendJSON), measured once: the second call reads the cache.
func TestSizeIsJSONLengthAndCached(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	nodes := []Node{{ID: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", Namespace: "ns"}}
	workloads := []Workload{{Name: "productpage-v1", Namespace: "bookinfo"}}
	for i := range 3000 {
		r := randRecord(rng, nodes, workloads)
		if r.sizeKnown() != 0 {
			t.Fatal("a fresh record claims a size")
		}
		want := len(AppendJSON(nil, r))
		if got := r.Size(); got != want {
			t.Fatalf("record %d: Size %d, len(AppendJSON) %d", i, got, want)
		}
		if r.sizeKnown() != want {
			t.Fatalf("record %d: size not cached", i)
		}
	}
}

// Every sink's queue measures the same record at once; under -race this
// shows the cache is safe, and every caller gets the same answer.
func TestSizeConcurrent(t *testing.T) {
	recs := envoyBatch(64)
	want := make([]int, len(recs))
	for i, r := range recs {
		want[i] = len(AppendJSON(nil, r))
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Go(func() {
			for i, r := range recs {
				if got := r.Size(); got != want[i] {
					errs <- "record " + itoa(i) + ": wrong size"
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

func itoa(i int) string { return string(appendUint(nil, uint64(i))) }

// BenchmarkSizeFanout4 is what four sink queues spend measuring a fresh
// batch of Envoy records: once per record (Size) against once per record
// per queue (the Encoder each queue ran before).
func BenchmarkSizeFanout4(b *testing.B) {
	tmpl := envoyBatch(benchBatch)
	fresh := func() []*Record {
		out := make([]*Record, len(tmpl))
		for i, r := range tmpl {
			c := *r
			c.size = 0
			out[i] = &c
		}
		return out
	}
	b.Run("encode-per-queue", func(b *testing.B) {
		var enc Encoder
		var buf []byte
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			batch := fresh()
			b.StartTimer()
			for range 4 {
				for _, r := range batch {
					buf = enc.Append(buf[:0], r)
					_ = len(buf)
				}
			}
		}
		b.ReportMetric(float64(b.N*len(tmpl))/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("size-cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			batch := fresh()
			b.StartTimer()
			for range 4 {
				for _, r := range batch {
					_ = r.Size()
				}
			}
		}
		b.ReportMetric(float64(b.N*len(tmpl))/b.Elapsed().Seconds(), "records/s")
	})
}

// An Encoder's first rendering caches the size (the NDJSON file measures
// every record for the queues after it), counting only the record's own
// bytes when appended behind others.
func TestEncoderAppendCachesSize(t *testing.T) {
	var e Encoder
	dst := []byte("prefix")
	for i, r := range envoyBatch(32) {
		want := len(AppendJSON(nil, r))
		dst = e.Append(dst, r)
		if r.sizeKnown() != want {
			t.Fatalf("record %d: cached %d after Encoder.Append, want %d", i, r.sizeKnown(), want)
		}
	}
}
