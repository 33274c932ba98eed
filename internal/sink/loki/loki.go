// Package loki pushes records to Loki's push API (protobuf, snappy
// compressed). Streams carry bounded labels only: namespace, workload,
// source (the record kind: http, tcp, log) and status_class (2xx..5xx for
// HTTP). Ids whose cardinality is unbounded (trace_id, span_id) travel as
// structured metadata, which Loki indexes per line without creating
// streams. Each line is the record's NDJSON document. Within a stream,
// entries are sent in timestamp order, which Loki requires of a stream.
//
// Tenants: with TenantFromRecord, each record goes to the Loki tenant
// (X-Scope-OrgID) named by its record.Tenant, which the pipeline sets once
// from routing.tenant, so the router, the quotas and Loki agree on whose a
// record is. A batch is pushed once per tenant in it.
//
// The PushRequest protobuf is encoded by hand with protowire rather than
// with github.com/grafana/loki/pkg/push: that module has no tagged
// release (only pseudo-versions tied to Loki commits) and pulls in
// gogo/protobuf and Loki's own dependency tree, while the message is four
// small types whose field numbers are a stable public API.
package loki

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/sink/endpoint"
)

// Options configure an Exporter.
type Options struct {
	Name string // default "loki"
	// URL is the push endpoint, e.g. http://127.0.0.1:3100/loki/api/v1/push.
	URL string
	// Tenant is sent as X-Scope-OrgID when set (multi-tenant Loki): the
	// tenant of every record, or with TenantFromRecord of the records
	// without one.
	Tenant string
	// TenantFromRecord sends each record as its record.Tenant: a batch is
	// split by tenant, one push each.
	TenantFromRecord bool
	// ExtraLabels are added to every stream (keep them constant: each
	// distinct value set is a new stream).
	ExtraLabels map[string]string
	Client      *http.Client
	Headers     map[string]string
}

// Exporter pushes records to Loki.
type Exporter struct {
	o     Options
	extra string           // pre-rendered extra labels, sorted
	encs  sync.Pool        // of *encodeState, for Encode
	raw   endpoint.BufPool // uncompressed PushRequests
	body  endpoint.BufPool // snappy-compressed request bodies
}

// encodeState is Encode's scratch, reused from batch to batch.
type encodeState struct {
	enc     record.Encoder
	idx     map[string]int
	streams []stream
	labels  []byte
	line    []byte
	entry   []byte
	st      []byte
}

var _ fanout.Exporter = (*Exporter)(nil)

// New returns an Exporter.
func New(o Options) (*Exporter, error) {
	if o.URL == "" {
		return nil, fmt.Errorf("loki: url is required")
	}
	if o.Name == "" {
		o.Name = "loki"
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	keys := make([]string, 0, len(o.ExtraLabels))
	for k := range o.ExtraLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(", ")
		b.WriteString(k)
		b.WriteString("=")
		b.WriteString(strconv.Quote(o.ExtraLabels[k]))
	}
	return &Exporter{o: o, extra: b.String()}, nil
}

// Name implements fanout.Exporter.
func (e *Exporter) Name() string { return e.o.Name }

// Export pushes batch as one request, or with TenantFromRecord one per
// tenant.
func (e *Exporter) Export(ctx context.Context, batch []*record.Record) error {
	if len(batch) == 0 {
		return nil
	}
	if !e.o.TenantFromRecord {
		return e.push(ctx, e.o.Tenant, batch)
	}
	groups := e.byTenant(batch)
	if len(groups) == 1 {
		return e.push(ctx, groups[0].tenant, groups[0].recs)
	}
	var retry []*record.Record
	var errs []error
	for _, g := range groups {
		err := e.push(ctx, g.tenant, g.recs)
		if err == nil {
			continue
		}
		if fanout.IsPermanent(err) {
			// The queue splits the whole batch to isolate the bad record;
			// what other tenants already took comes again, and Loki drops
			// an entry identical in stream, time and line.
			return err
		}
		retry = append(retry, g.recs...)
		errs = append(errs, fmt.Errorf("tenant %q: %w", g.tenant, err))
	}
	if len(errs) > 0 {
		return &fanout.PartialError{Retry: retry, Err: errors.Join(errs...)}
	}
	return nil
}

type tenantRecords struct {
	tenant string
	recs   []*record.Record
}

// byTenant groups batch by tenant in first-seen order, keeping the
// records' order within each.
func (e *Exporter) byTenant(batch []*record.Record) []tenantRecords {
	var groups []tenantRecords
	for _, r := range batch {
		t := firstNonEmpty(r.Tenant, e.o.Tenant)
		i := 0
		for i < len(groups) && groups[i].tenant != t {
			i++
		}
		if i == len(groups) {
			groups = append(groups, tenantRecords{tenant: t})
		}
		groups[i].recs = append(groups[i].recs, r)
	}
	return groups
}

// push sends recs as tenant ("" sends no X-Scope-OrgID).
func (e *Exporter) push(ctx context.Context, tenant string, batch []*record.Record) error {
	// Pre-sized (about 1.5 KB per entry) and pooled: growing from nil,
	// or allocating and clearing a fresh megabyte per batch, cost more
	// than the encoding.
	raw := e.Encode(e.raw.Get(2048*len(batch)), batch)
	buf := snappy.Encode(e.body.Get(snappy.MaxEncodedLen(len(raw)))[:snappy.MaxEncodedLen(len(raw))], raw)
	e.raw.Put(raw)
	body := endpoint.NewBody(buf, &e.body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.o.URL, body)
	if err != nil {
		body.Close()
		return fanout.Permanent(err)
	}
	req.ContentLength = body.Len()
	req.Header.Set("Content-Type", "application/x-protobuf")
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	for k, v := range e.o.Headers {
		req.Header.Set(k, v)
	}
	resp, err := e.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("loki: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	// 400 (too old, line too long, invalid labels) is permanent: the queue
	// splits the batch to find the bad record.
	return fanout.HTTPResponseError("loki", resp, msg)
}

// Labels returns the stream selector of r: {namespace, workload, source,
// status_class}, all bounded.
func Labels(r *record.Record) string {
	var b strings.Builder
	appendLabels(&b, r, "")
	return b.String()
}

func appendLabels(b *strings.Builder, r *record.Record, extra string) {
	b.Write(appendLabelBytes(nil, r, extra))
}

func appendLabelBytes(b []byte, r *record.Record, extra string) []byte {
	w := &r.Destination
	if r.Reporter == record.ReporterSource {
		w = &r.Source
	}
	ns := firstNonEmpty(w.Namespace, r.Node.Namespace, "unknown")
	wl := firstNonEmpty(w.Name, r.Node.Workload, "unknown")
	b = append(b, `{namespace=`...)
	b = strconv.AppendQuote(b, ns)
	b = append(b, `, workload=`...)
	b = strconv.AppendQuote(b, wl)
	b = append(b, `, source="`...)
	b = append(b, r.Kind.String()...)
	b = append(b, '"')
	if r.Kind == record.KindHTTP {
		b = append(b, `, status_class="`...)
		b = append(b, statusClass(r.HTTP.ResponseCode)...)
		b = append(b, '"')
	}
	b = append(b, extra...)
	b = append(b, '}')
	return b
}

func statusClass(c uint32) string {
	if c < 100 || c > 599 {
		return "none"
	}
	return [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}[c/100-1]
}

// Timestamp is the entry time of r: when the request started (or the log
// line was written), else when meshtrail received it.
func Timestamp(r *record.Record) time.Time {
	if !r.StartTime.IsZero() {
		return r.StartTime
	}
	return r.ReceivedAt
}

type stream struct {
	labels string
	recs   []*record.Record
}

// Encode appends the uncompressed PushRequest for batch to dst.
func (e *Exporter) Encode(dst []byte, batch []*record.Record) []byte {
	es, _ := e.encs.Get().(*encodeState)
	if es == nil {
		es = &encodeState{idx: make(map[string]int, 8)}
	}
	defer e.encs.Put(es)
	// Group by stream, keeping first-seen order of streams. The label
	// string is allocated once per stream, not once per record.
	clear(es.idx)
	for i, all := 0, es.streams[:cap(es.streams)]; i < len(all); i++ {
		all[i].recs = all[i].recs[:0]
	}
	streams := es.streams[:0]
	for _, r := range batch {
		es.labels = appendLabelBytes(es.labels[:0], r, e.extra)
		i, ok := es.idx[string(es.labels)]
		if !ok {
			i = len(streams)
			l := string(es.labels)
			es.idx[l] = i
			if i < cap(streams) {
				streams = streams[:i+1]
				streams[i].labels = l
			} else {
				streams = append(streams, stream{labels: l})
			}
		}
		streams[i].recs = append(streams[i].recs, r)
	}
	es.streams = streams
	enc := &es.enc
	line, entry, st := es.line, es.entry, es.st
	for _, s := range streams {
		sort.SliceStable(s.recs, func(a, b int) bool { return Timestamp(s.recs[a]).Before(Timestamp(s.recs[b])) })
		st = st[:0]
		st = protowire.AppendTag(st, 1, protowire.BytesType) // StreamAdapter.labels
		st = protowire.AppendString(st, s.labels)
		for _, r := range s.recs {
			line = enc.Append(line[:0], r)
			entry = appendEntry(entry[:0], r, line)
			st = protowire.AppendTag(st, 2, protowire.BytesType) // StreamAdapter.entries
			st = protowire.AppendBytes(st, entry)
		}
		dst = protowire.AppendTag(dst, 1, protowire.BytesType) // PushRequest.streams
		dst = protowire.AppendBytes(dst, st)
	}
	es.line, es.entry, es.st = line, entry, st
	for i := range streams {
		clear(streams[i].recs) // hold no records between batches
	}
	return dst
}

// appendEntry encodes EntryAdapter{timestamp=1, line=2, structuredMetadata=3}.
func appendEntry(dst []byte, r *record.Record, line []byte) []byte {
	ts := Timestamp(r)
	var tsb [24]byte
	t := tsb[:0]
	if s := ts.Unix(); s != 0 {
		t = protowire.AppendTag(t, 1, protowire.VarintType) // Timestamp.seconds
		t = protowire.AppendVarint(t, uint64(s))
	}
	if n := ts.Nanosecond(); n != 0 {
		t = protowire.AppendTag(t, 2, protowire.VarintType) // Timestamp.nanos
		t = protowire.AppendVarint(t, uint64(n))
	}
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendBytes(dst, t)
	dst = protowire.AppendTag(dst, 2, protowire.BytesType)
	dst = protowire.AppendBytes(dst, line)
	dst = appendMeta(dst, "trace_id", r.Trace.TraceID)
	dst = appendMeta(dst, "span_id", r.Trace.SpanID)
	return dst
}

// appendMeta encodes one LabelPairAdapter{name=1, value=2} of structured metadata.
func appendMeta(dst []byte, name, value string) []byte {
	if value == "" {
		return dst
	}
	size := protowire.SizeTag(1) + protowire.SizeBytes(len(name)) + protowire.SizeTag(2) + protowire.SizeBytes(len(value))
	dst = protowire.AppendTag(dst, 3, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(size))
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendString(dst, name)
	dst = protowire.AppendTag(dst, 2, protowire.BytesType)
	dst = protowire.AppendString(dst, value)
	return dst
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
