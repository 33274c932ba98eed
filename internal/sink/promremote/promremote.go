// Package promremote sends request metrics derived from access records to
// a Prometheus remote-write endpoint (remote write 1.0: protobuf
// WriteRequest, snappy), for setups where nothing scrapes meshtrail.
//
// The exporter keeps cumulative counters per series, named and labelled
// like Istio's standard metrics (meshtrail_requests_total,
// meshtrail_request_duration_milliseconds_sum/_count), and each export
// sends the new totals of the series the batch touched. A batch's counts
// are committed only once the write succeeds, so a retried batch is not
// counted twice, and a write whose answer was lost is harmless: sending a
// total again changes nothing.
//
// WriteRequest is encoded by hand with protowire: the prompb package lives
// in the whole Prometheus server module, and the message is three tiny
// types (TimeSeries, Label, Sample).
package promremote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/record"
)

// Options configure an Exporter.
type Options struct {
	Name    string // default "prometheus-remote-write"
	URL     string // e.g. http://127.0.0.1:9090/api/v1/write
	Client  *http.Client
	Headers map[string]string
	// Now stamps the samples; default time.Now.
	Now func() time.Time
}

// Exporter writes cumulative request metrics.
type Exporter struct {
	o Options

	mu     sync.Mutex // one export at a time: totals are read-modify-write
	series map[seriesKey]*totals
	lastMs int64 // timestamp of the last export, under mu
}

var _ fanout.Exporter = (*Exporter)(nil)

// New returns an Exporter.
func New(o Options) (*Exporter, error) {
	if o.URL == "" {
		return nil, errors.New("promremote: url is required")
	}
	if o.Name == "" {
		o.Name = "prometheus-remote-write"
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Exporter{o: o, series: map[seriesKey]*totals{}}, nil
}

// Name implements fanout.Exporter.
func (e *Exporter) Name() string { return e.o.Name }

// seriesKey is the label set, Istio's label names.
type seriesKey struct {
	reporter, srcWorkload, srcNamespace, dstWorkload, dstNamespace, dstService string
	code, protocol, flags, security                                            string
}

type totals struct {
	requests, durationMs float64
}

func keyOf(r *record.Record) seriesKey {
	proto := "tcp"
	code := ""
	if r.Kind == record.KindHTTP {
		proto = "http"
		if r.HTTP.GRPCStatus != "" {
			proto = "grpc"
		}
		code = strconv.Itoa(int(r.HTTP.ResponseCode))
	}
	return seriesKey{
		reporter: orUnknown(r.Reporter), srcWorkload: orUnknown(r.Source.Name), srcNamespace: orUnknown(r.Source.Namespace),
		dstWorkload: orUnknown(r.Destination.Name), dstNamespace: orUnknown(r.Destination.Namespace),
		dstService: orUnknown(r.Upstream.Service), code: code, protocol: proto,
		flags: orDash(r.ResponseFlags), security: orUnknown(r.ConnectionSecurityPolicy),
	}
}

// Export adds batch's requests to the totals and writes the touched series.
func (e *Exporter) Export(ctx context.Context, batch []*record.Record) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	next := map[seriesKey]totals{}
	for _, r := range batch {
		if (r.Kind != record.KindHTTP && r.Kind != record.KindTCP) || r.Intermediate {
			continue
		}
		k := keyOf(r)
		t, ok := next[k]
		if !ok {
			if cur := e.series[k]; cur != nil {
				t = *cur
			}
		}
		t.requests++
		t.durationMs += float64(r.Timings.Total) / float64(time.Millisecond)
		next[k] = t
	}
	if len(next) == 0 {
		return nil
	}
	// Every export gets its own millisecond: Prometheus refuses a second
	// sample of a series at the same timestamp ("duplicate sample for
	// timestamp"), which would drop the batch when two exports (a retry
	// after an outage, a busy queue) fall in one millisecond.
	ms := max(e.o.Now().UnixMilli(), e.lastMs+1)
	e.lastMs = ms
	body := snappy.Encode(nil, Encode(nil, next, time.UnixMilli(ms)))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.o.URL, bytes.NewReader(body))
	if err != nil {
		return fanout.Permanent(err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	for k, v := range e.o.Headers {
		req.Header.Set(k, v)
	}
	resp, err := e.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("promremote: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if err := fanout.HTTPResponseError("promremote", resp, msg); err != nil {
		return err
	}
	for k, t := range next {
		t := t
		e.series[k] = &t
	}
	return nil
}

// Encode appends a WriteRequest with three series per key to dst.
func Encode(dst []byte, series map[seriesKey]totals, now time.Time) []byte {
	ts := now.UnixMilli()
	var s []byte
	for k, t := range series {
		for _, m := range [...]struct {
			name string
			v    float64
		}{
			{"meshtrail_request_duration_milliseconds_count", t.requests},
			{"meshtrail_request_duration_milliseconds_sum", t.durationMs},
			{"meshtrail_requests_total", t.requests},
		} {
			s = appendSeries(s[:0], m.name, &k, m.v, ts)
			dst = protowire.AppendTag(dst, 1, protowire.BytesType) // WriteRequest.timeseries
			dst = protowire.AppendBytes(dst, s)
		}
	}
	return dst
}

// appendSeries encodes TimeSeries{labels=1 (sorted by name), samples=2}.
func appendSeries(b []byte, name string, k *seriesKey, v float64, ts int64) []byte {
	label := func(n, val string) {
		if val == "" {
			return
		}
		size := protowire.SizeTag(1) + protowire.SizeBytes(len(n)) + protowire.SizeTag(2) + protowire.SizeBytes(len(val))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, n)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, val)
	}
	// Sorted by label name, as remote write requires.
	label("__name__", name)
	label("connection_security_policy", k.security)
	label("destination_service", k.dstService)
	label("destination_workload", k.dstWorkload)
	label("destination_workload_namespace", k.dstNamespace)
	label("reporter", k.reporter)
	label("request_protocol", k.protocol)
	label("response_code", k.code)
	label("response_flags", k.flags)
	label("source_workload", k.srcWorkload)
	label("source_workload_namespace", k.srcNamespace)
	size := protowire.SizeTag(1) + protowire.SizeFixed64() + protowire.SizeTag(2) + protowire.SizeVarint(uint64(ts))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	b = protowire.AppendTag(b, 1, protowire.Fixed64Type) // Sample.value
	b = protowire.AppendFixed64(b, math.Float64bits(v))
	b = protowire.AppendTag(b, 2, protowire.VarintType) // Sample.timestamp (ms)
	b = protowire.AppendVarint(b, uint64(ts))
	return b
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
