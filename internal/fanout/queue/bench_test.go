package queue

import (
	"context"
	"encoding/binary"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/internal/fanout/queue/diskq"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/recordtest"
)

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkQueueNoop pushes records through a memory queue into an
// exporter that does nothing: the cost of queueing, batching and the size
// accounting (one record.AppendJSON per record). Reports records/s
// (wall) and records per CPU-second (all cores the process used).
func BenchmarkQueueNoop(b *testing.B) {
	var got atomic.Int64
	exp := funcExporter{"noop", func(_ context.Context, batch []*record.Record) error {
		got.Add(int64(len(batch)))
		return nil
	}}
	cfg := Defaults()
	cfg.Overflow = OverflowConfig{Policy: Block, BlockTimeout: Duration(time.Minute)}
	q, err := New(exp, cfg, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	batch := recs(0, 100)
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	n := 0
	for ; n < b.N; n += len(batch) {
		q.ConsumeRecords(context.Background(), batch)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q.Shutdown(ctx)
	wall, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	if got.Load() != int64(n) {
		b.Fatalf("delivered %d of %d", got.Load(), n)
	}
	b.ReportMetric(float64(n)/wall.Seconds(), "records/s")
	b.ReportMetric(float64(n)/cpu.Seconds(), "records/cpu-s")
}

// diskMsgs spills n test records as the queue does (binary frames, or
// json: the frames of releases before the binary form) and returns them
// with jsonSize, the bytes of the same messages in the JSON form: the
// unit every replay figure is given in, so MB/s compare the same records.
func diskMsgs(n int, json bool) (msgs [][]byte, jsonSize int64) {
	return spill(recs(0, n), json)
}

func spill(rs []*record.Record, json bool) (msgs [][]byte, jsonSize int64) {
	for _, r := range rs {
		it := item{rec: r, size: r.Size(), at: time.Now().UnixNano()}
		j := appendJSONMessage(nil, &it)
		m := j
		if !json {
			m = appendMessage(nil, &it)
		}
		msgs = append(msgs, m)
		jsonSize += int64(len(j))
	}
	return msgs, jsonSize
}

// appendJSONMessage is a spilled record as releases before the binary
// form wrote it.
func appendJSONMessage(dst []byte, it *item) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, uint64(it.at))
	return record.AppendJSON(dst, it.rec)
}

// BenchmarkDiskWrite appends spilled records (100 per Append, as a spill
// of one ConsumeRecords call) with fsync never and interval.
func BenchmarkDiskWrite(b *testing.B) {
	for _, p := range []diskq.FsyncPolicy{diskq.FsyncNever, diskq.FsyncInterval, diskq.FsyncAlways} {
		b.Run(string(p), func(b *testing.B) {
			l, err := diskq.Open(diskq.Options{Dir: b.TempDir(), Fsync: p})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			msgs, _ := diskMsgs(100, false)
			var size int64
			for _, m := range msgs {
				size += int64(len(m))
			}
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := l.Append(msgs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDiskReplay reads back and commits spilled records in batches
// of 500: "raw" is the log alone, "decode" adds record.DecodeBinary (what
// a replay into a backend costs before the network), "decode-json" the
// same for the JSON frames of releases before the binary form (the
// record.ParseJSON path, still used for such logs). Bytes are those of
// the JSON messages in every case, so MB/s compare records per second.
// The first three use the small test records (about 270 bytes of JSON)
// the history of this figure was measured with; the envoy- ones realistic
// Envoy entries and log lines (recordtest.Batch, about 1.7 KB of JSON).
func BenchmarkDiskReplay(b *testing.B) {
	envoy := recordtest.Batch("bookinfo", 1, 500)
	for _, mode := range []string{"raw", "decode", "decode-json", "envoy-decode", "envoy-decode-json"} {
		b.Run(mode, func(b *testing.B) {
			l, err := diskq.Open(diskq.Options{Dir: b.TempDir(), Fsync: diskq.FsyncNever})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			json := strings.HasSuffix(mode, "-json")
			msgs, size := diskMsgs(500, json)
			if strings.HasPrefix(mode, "envoy-") {
				msgs, size = spill(envoy, json)
			}
			for i := 0; i < b.N; i++ {
				if err := l.Append(msgs); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(size)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for {
				m, tok, err := l.Read(500, 4<<20)
				if err != nil {
					b.Fatal(err)
				}
				if len(m) == 0 {
					break
				}
				if mode != "raw" {
					for _, x := range m {
						if _, err := parseMessage(x); err != nil {
							b.Fatal(err)
						}
					}
				}
				if err := l.Commit(tok); err != nil {
					b.Fatal(err)
				}
			}
			cpu := cpuTime() - cpu0
			b.ReportMetric(float64(b.N*len(msgs))/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(b.N)*float64(size)/1e6/cpu.Seconds(), "MB/cpu-s")
		})
	}
}

// BenchmarkFanout4Queues hands fresh records (copied from a realistic
// template each time, as a source makes new ones) to four memory queues
// with no-op exporters, as the fan-out does with four sinks: the queues'
// per-record cost, size accounting included. One op is 100 records to all
// four queues; the copy is counted in both the before and after figures.
func BenchmarkFanout4Queues(b *testing.B) {
	var got atomic.Int64
	exp := funcExporter{"noop", func(_ context.Context, batch []*record.Record) error {
		got.Add(int64(len(batch)))
		return nil
	}}
	cfg := Defaults()
	cfg.Overflow = OverflowConfig{Policy: Block, BlockTimeout: Duration(time.Minute)}
	var qs []*Queue
	for range 4 {
		q, err := New(exp, cfg, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		qs = append(qs, q)
	}
	tmpl := recordtest.Batch("bookinfo", 1, 100)
	batch := make([]*record.Record, len(tmpl))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for i := 0; i < b.N; i++ {
		for j, r := range tmpl {
			c := new(record.Record)
			*c = *r
			batch[j] = c
		}
		for _, q := range qs {
			q.ConsumeRecords(context.Background(), batch)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, q := range qs {
		q.Shutdown(ctx)
	}
	wall, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	n := b.N * len(tmpl)
	if got.Load() != int64(4*n) {
		b.Fatalf("delivered %d of %d", got.Load(), 4*n)
	}
	b.ReportMetric(float64(n)/wall.Seconds(), "records/s")
	b.ReportMetric(float64(n)/cpu.Seconds(), "records/cpu-s")
}

// BenchmarkSpillEncode renders realistic records for the disk log (what
// a spill costs before the write): the binary frame against the JSON
// frame of the release before (record.Encoder, as appendMessageWith was).
func BenchmarkSpillEncode(b *testing.B) {
	rs := recordtest.Batch("bookinfo", 2, 100)
	items := make([]item, len(rs))
	for i, r := range rs {
		items[i] = item{rec: r, size: r.Size(), at: 1}
	}
	b.Run("binary", func(b *testing.B) {
		var buf []byte
		recordtest.BenchRecords(b, len(items), func() {
			buf = buf[:0]
			for i := range items {
				buf = appendMessage(buf, &items[i])
			}
		})
	})
	b.Run("json", func(b *testing.B) {
		var buf []byte
		var enc record.Encoder
		recordtest.BenchRecords(b, len(items), func() {
			buf = buf[:0]
			for i := range items {
				buf = binary.LittleEndian.AppendUint64(buf, uint64(items[i].at))
				buf = enc.Append(buf, items[i].rec)
			}
		})
	})
}
