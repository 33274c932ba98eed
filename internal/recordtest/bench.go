package recordtest

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/internal/record"
)

// Batch returns about n records: requests of 5 hops plus a log line each.
func Batch(namespace string, seed uint64, n int) []*record.Record {
	g := New(namespace, seed)
	var out []*record.Record
	for len(out) < n {
		tid, recs := g.Request(200)
		out = append(out, recs...)
		out = append(out, g.LogLine(tid, recs[1].Trace.SpanID, "reviews", "GET /reviews/0 served in 12ms"))
	}
	return out[:n]
}

// CPUTime is the process' user+system CPU time so far.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchRecords runs fn (which handles recordsPerOp records) b.N times and
// reports records per CPU-second (all of the process' threads, so GC and
// background work count) and nanoseconds of CPU per record.
func BenchRecords(b *testing.B, recordsPerOp int, fn func()) {
	b.ReportAllocs()
	b.ResetTimer()
	start := CPUTime()
	for i := 0; i < b.N; i++ {
		fn()
	}
	cpu := CPUTime() - start
	b.StopTimer()
	n := float64(b.N * recordsPerOp)
	if cpu > 0 {
		b.ReportMetric(n/cpu.Seconds(), "records/cpu-s")
		b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/record")
	}
}

// Loopback is an http.RoundTripper that answers every request in process
// with status and body after reading the request body: exporters run
// their whole Export path except the network.
type Loopback struct {
	Status int
	Body   func(req []byte) []byte
}

// RoundTrip implements http.RoundTripper.
func (l Loopback) RoundTrip(r *http.Request) (*http.Response, error) {
	var in []byte
	if r.Body != nil {
		// Sized from the request, as a socket takes the body without
		// growing a buffer: the stand-in for the network should not
		// cost more than the exporter it measures.
		buf := bytes.NewBuffer(make([]byte, 0, max(r.ContentLength, 0)+bytes.MinRead))
		_, _ = buf.ReadFrom(r.Body)
		in = buf.Bytes()
		r.Body.Close()
	}
	var out []byte
	if l.Body != nil {
		out = l.Body(in)
	}
	return &http.Response{
		StatusCode: l.Status, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(out)), ContentLength: int64(len(out)), Request: r,
	}, nil
}

// BulkOK answers an Elasticsearch _bulk body with one 201 item per action.
func BulkOK(req []byte) []byte {
	n := bytes.Count(req, []byte("\n")) / 2
	var b strings.Builder
	b.WriteString(`{"took":1,"errors":false,"items":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"create":{"_index":"x","_id":"y","status":201}}`)
	}
	b.WriteString("]}")
	return []byte(b.String())
}
