// Package elasticsearch writes records to Elasticsearch (or a compatible
// store: OpenSearch, zincsearch) with the _bulk API.
//
// Every document has a stable id, the record's own ID when its source set
// one (a resending source such as the tail agent), else one derived from
// the record, and is written with the create action, so a batch sent twice (a retry after a timeout,
// a replay from the disk queue) never duplicates: the second create of an
// id answers 409, which counts as success. Per-item results are handled
// one by one: 429 and 5xx items are returned to the queue for retry in a
// *fanout.PartialError; any other rejected item goes to the dead-letter
// writer and a counter, without failing the rest. A request the server
// refuses whole as too large (413) or malformed (400) is split in halves
// until the parts fit or the bad record is isolated and dead-lettered.
package elasticsearch

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/sink/endpoint"
)

// Options configure an Exporter.
type Options struct {
	Name string // default "elasticsearch"
	// URL is the base of the Elasticsearch API, e.g. http://127.0.0.1:9200
	// (zincsearch: http://127.0.0.1:4080/es); _bulk is appended.
	URL string
	// Index is the index name template: {date} is the record's day in
	// DateLayout (UTC), {namespace} the record's namespace, {tenant} its
	// tenant (record.Tenant lowercased, "unknown" when unset). Default
	// "meshtrail-{date}" (one index per day).
	Index string
	// DateLayout is a Go time layout; default "2006.01.02".
	DateLayout string
	// TenantPrefixes maps a tenant (record.Tenant, which the pipeline's
	// routing.tenant sets, so the router and this sink agree on whose a
	// record is) to an index prefix, so each tenant's records land in
	// their own indices: "<prefix>-<Index>".
	TenantPrefixes map[string]string
	Client         *http.Client
	Headers        map[string]string
	// DeadLetter receives rejected items as NDJSON ({"index","status",
	// "error","document"}); nil only counts them.
	DeadLetter io.Writer
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Exporter writes batches with _bulk.
type Exporter struct {
	o        Options
	bulkURL  string
	items    *prometheus.CounterVec
	deadMu   sync.Mutex
	deadLets prometheus.Counter
	logger   *slog.Logger
	encs     sync.Pool // of *record.Encoder, for Encode
	bodies   endpoint.BufPool
	dayIndex bool // the index depends on the day only through {date}: cache it per day
}

var _ fanout.Exporter = (*Exporter)(nil)

// New returns an Exporter and registers its counters.
func New(o Options) (*Exporter, error) {
	if o.URL == "" {
		return nil, errors.New("elasticsearch: url is required")
	}
	if o.Name == "" {
		o.Name = "elasticsearch"
	}
	if o.Index == "" {
		o.Index = "meshtrail-{date}"
	}
	if o.DateLayout == "" {
		o.DateLayout = "2006.01.02"
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Exporter{
		o:       o,
		bulkURL: strings.TrimRight(o.URL, "/") + "/_bulk",
		logger:  o.Logger.With("sink", o.Name),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "meshtrail_sink_bulk_items_total",
			Help:        "Bulk items by result: created, duplicate (409 on create: already stored), retry (429/5xx), dead_letter (rejected).",
			ConstLabels: prometheus.Labels{"sink": o.Name},
		}, []string{"result"}),
	}
	e.deadLets = e.items.WithLabelValues("dead_letter")
	// The {date} part changes at most once a day when the layout gives the
	// same name to the first and the last second of a UTC day.
	day0 := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	e.dayIndex = day0.Format(o.DateLayout) == day0.Add(24*time.Hour-time.Second).Format(o.DateLayout)
	if o.Registerer != nil {
		if err := o.Registerer.Register(e.items); err != nil {
			return nil, fmt.Errorf("elasticsearch: %w", err)
		}
	}
	return e, nil
}

// Name implements fanout.Exporter.
func (e *Exporter) Name() string { return e.o.Name }

// Export writes batch. See the package comment for the error contract.
func (e *Exporter) Export(ctx context.Context, batch []*record.Record) error {
	retry, err := e.send(ctx, batch)
	if err != nil {
		return err
	}
	if len(retry) > 0 {
		return &fanout.PartialError{Retry: retry, Err: fmt.Errorf("elasticsearch: %d of %d items refused for now (429/5xx)", len(retry), len(batch))}
	}
	return nil
}

// send posts recs, splitting on 413/400, and returns the records to retry.
// A non-nil error means none of recs was accepted.
func (e *Exporter) send(ctx context.Context, recs []*record.Record) ([]*record.Record, error) {
	// Pre-sized: a record is about 1.5 KB of NDJSON; growing from nil
	// was a third of the encoding time.
	body := e.Encode(e.bodies.Get(2048*len(recs)), recs)
	status, items, err := e.post(ctx, body)
	if err != nil {
		return nil, err
	}
	switch {
	case status == http.StatusRequestEntityTooLarge || status == http.StatusBadRequest:
		if len(recs) == 1 {
			// It cannot fit or cannot be parsed on its own: it never will.
			e.deadLetter(recs[0], e.indexOf(recs[0]), status, fmt.Sprintf("whole request refused with %d", status))
			return nil, nil
		}
		half := len(recs) / 2
		r1, err1 := e.send(ctx, recs[:half])
		r2, err2 := e.send(ctx, recs[half:])
		// A half that failed whole is retried whole; the other half's
		// outcome stands.
		if err1 != nil {
			r1 = recs[:half]
		}
		if err2 != nil {
			r2 = recs[half:]
		}
		if err1 != nil && err2 != nil {
			return nil, errors.Join(err1, err2)
		}
		return append(r1, r2...), nil
	case status == http.StatusTooManyRequests || status >= 500:
		return nil, fmt.Errorf("elasticsearch: bulk status %d", status)
	case status/100 != 2:
		// 401/403/404...: configuration, not data; keep the data queued.
		return nil, fmt.Errorf("elasticsearch: bulk status %d", status)
	}
	if len(items) != len(recs) {
		return nil, fmt.Errorf("elasticsearch: %d items in the response for %d documents", len(items), len(recs))
	}
	var retry []*record.Record
	for i, it := range items {
		switch {
		case it.Status/100 == 2:
			e.items.WithLabelValues("created").Inc()
		case it.Status == http.StatusConflict:
			e.items.WithLabelValues("duplicate").Inc()
		case it.Status == http.StatusTooManyRequests || it.Status >= 500:
			e.items.WithLabelValues("retry").Inc()
			retry = append(retry, recs[i])
		default:
			e.deadLetter(recs[i], it.Index, it.Status, string(it.Error))
		}
	}
	return retry, nil
}

type bulkItem struct {
	Index  string          `json:"_index"`
	ID     string          `json:"_id"`
	Status int             `json:"status"`
	Error  json.RawMessage `json:"error"`
}

// bulkAction is one item of a _bulk response, keyed by its action.
type bulkAction struct {
	Create *bulkItem `json:"create"`
	Index  *bulkItem `json:"index"`
	Update *bulkItem `json:"update"`
	Delete *bulkItem `json:"delete"`
}

// post sends body (a buffer of e.bodies, which it gives back).
func (e *Exporter) post(ctx context.Context, buf []byte) (int, []bulkItem, error) {
	body := endpoint.NewBody(buf, &e.bodies)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.bulkURL, body)
	if err != nil {
		body.Close()
		return 0, nil, fanout.Permanent(err)
	}
	req.ContentLength = body.Len()
	req.Header.Set("Content-Type", "application/x-ndjson")
	for k, v := range e.o.Headers {
		req.Header.Set(k, v)
	}
	resp, err := e.o.Client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("elasticsearch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return resp.StatusCode, nil, fanout.HTTPRetryAfter("elasticsearch", resp) // nil unless 429/503 with Retry-After: retried whole, as below
	}
	// Most bulks succeed whole: then a scan of the statuses is enough
	// (decoding was a third of the exporter's CPU). The statuses are read,
	// not the "errors" flag: what the sink counts is per item, and a
	// compatible store need not set the flag as Elasticsearch does.
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("elasticsearch: read bulk response: %w", err)
	}
	if n, ok := allSucceeded(data); ok {
		items := make([]bulkItem, n)
		for i := range items {
			items[i].Status = http.StatusCreated
		}
		return resp.StatusCode, items, nil
	}
	// One key per item: the action. Decoded into a struct of the four
	// actions rather than a map per item (500 maps per bulk were a fifth
	// of the exporter's CPU).
	var head struct {
		Items []bulkAction `json:"items"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return 0, nil, fmt.Errorf("elasticsearch: decode bulk response: %w", err)
	}
	out := head.Items
	items := make([]bulkItem, len(out))
	for i := range out {
		a := &out[i]
		switch {
		case a.Create != nil:
			items[i] = *a.Create
		case a.Index != nil:
			items[i] = *a.Index
		case a.Update != nil:
			items[i] = *a.Update
		case a.Delete != nil:
			items[i] = *a.Delete
		}
		if items[i].Status == 0 {
			items[i].Status = http.StatusOK
		}
	}
	return resp.StatusCode, items, nil
}

func (e *Exporter) deadLetter(r *record.Record, index string, status int, reason string) {
	e.deadLets.Inc()
	e.logger.Warn("bulk item rejected; dead-lettered", "index", index, "status", status, "trace_id", r.Trace.TraceID)
	if e.o.DeadLetter == nil {
		return
	}
	var b []byte
	b = append(b, `{"index":`...)
	b = record.AppendJSONString(b, index)
	b = fmt.Appendf(b, `,"status":%d,"error":`, status)
	if json.Valid([]byte(reason)) && reason != "" {
		b = append(b, reason...)
	} else {
		b = record.AppendJSONString(b, reason)
	}
	b = append(b, `,"document":`...)
	b = record.AppendJSON(b, r)
	b = append(b, "}\n"...)
	e.deadMu.Lock()
	defer e.deadMu.Unlock()
	if _, err := e.o.DeadLetter.Write(b); err != nil {
		e.logger.Error("dead-letter write failed", "err", err)
	}
}

// Encode appends the _bulk NDJSON body for recs to dst: a create action
// with index and stable id, then the document (the record's NDJSON form
// with an @timestamp field first, as Elasticsearch tooling expects).
func (e *Exporter) Encode(dst []byte, recs []*record.Record) []byte {
	enc, _ := e.encs.Get().(*record.Encoder)
	if enc == nil {
		enc = new(record.Encoder)
	}
	defer e.encs.Put(enc)
	var id [32]byte
	var memo indexMemo
	for _, r := range recs {
		dst = append(dst, `{"create":{"_index":`...)
		dst = record.AppendJSONString(dst, memo.indexOf(e, r))
		dst = append(dst, `,"_id":`...)
		if useRecordID(r) {
			dst = record.AppendJSONString(dst, r.ID)
		} else {
			DocID(&id, r)
			dst = append(dst, '"')
			dst = append(dst, id[:]...)
			dst = append(dst, '"')
		}
		dst = append(dst, "}}\n"...)
		dst = append(dst, `{"@timestamp":"`...)
		dst = timestamp(r).UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
		n := len(dst)
		dst = enc.Append(dst, r)
		// Append wrote "{...}": replace its "{" by "," to continue our object.
		if len(dst)-n > 2 {
			dst[n] = ','
		} else {
			dst = append(dst[:n], '}')
		}
		dst = append(dst, '\n')
	}
	return dst
}

// indexMemo keeps the last index name of a batch: consecutive records
// mostly share their day, namespace and tenant, and building the name
// costs string replacements and a date format.
type indexMemo struct {
	ok             bool
	day            int64
	ns, tenant     string
	reporterSource bool
	idx            string
}

func (m *indexMemo) indexOf(e *Exporter, r *record.Record) string {
	if !e.dayIndex {
		return e.indexOf(r)
	}
	day := timestamp(r).Unix()
	if day < 0 {
		day -= 86399
	}
	day /= 86400
	src := r.Reporter == record.ReporterSource
	if m.ok && m.day == day && m.reporterSource == src && m.tenant == r.Tenant && m.ns == nsOf(r) {
		return m.idx
	}
	*m = indexMemo{ok: true, day: day, ns: nsOf(r), tenant: r.Tenant, reporterSource: src, idx: e.indexOf(r)}
	return m.idx
}

// nsOf is the namespace the index's {namespace} is taken from.
func nsOf(r *record.Record) string {
	ns := r.Destination.Namespace
	if r.Reporter == record.ReporterSource {
		ns = r.Source.Namespace
	}
	if ns == "" {
		ns = r.Node.Namespace
	}
	return ns
}

func (e *Exporter) indexOf(r *record.Record) string {
	ns := nsOf(r)
	idx := e.o.Index
	if strings.Contains(idx, "{date}") {
		idx = strings.ReplaceAll(idx, "{date}", timestamp(r).UTC().Format(e.o.DateLayout))
	}
	if strings.Contains(idx, "{namespace}") {
		n := ns
		if n == "" {
			n = "unknown"
		}
		idx = strings.ReplaceAll(idx, "{namespace}", n)
	}
	if strings.Contains(idx, "{tenant}") {
		// Index names are lowercase; a tenant taken from a header may not be.
		idx = strings.ReplaceAll(idx, "{tenant}", strings.ToLower(firstNonEmpty(r.Tenant, "unknown")))
	}
	if p, ok := e.o.TenantPrefixes[r.Tenant]; ok && r.Tenant != "" {
		idx = p + "-" + idx
	}
	return idx
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// maxIDBytes is Elasticsearch's limit on _id; a longer record ID falls
// back to the derived id rather than have every copy rejected.
const maxIDBytes = 512

// useRecordID reports whether r's own ID is its document id: set by a
// source that resends (the tail agent: file identity and offset), it stays
// the same where the derived one might not (a log line's time re-parsed).
func useRecordID(r *record.Record) bool { return r.ID != "" && len(r.ID) <= maxIDBytes }

func timestamp(r *record.Record) time.Time {
	if !r.StartTime.IsZero() {
		return r.StartTime
	}
	return r.ReceivedAt
}

// DocID writes r's derived document id (32 hex characters) into id, used
// when the record has no ID of its own: a hash
// of what identifies one observation (the proxy, its stream, the trace
// ids, the start time, and for log lines the line itself), so the same
// record always gets the same id and two observations never share one.
//
// A tailed log line carries its own stable id (record.ID: file identity
// and offset, see meshtrail tail), which names the document instead
// (useRecordID), so a line read again after a restart, with a new
// receive time, is the same document.
func DocID(id *[32]byte, r *record.Record) {
	// One Sum256 over the bytes a streaming hash was fed (the same ids as
	// before), from a stack buffer: no hasher allocated per record.
	var scratch [512]byte
	b := append(scratch[:0], byte(r.Kind))
	b = binary.BigEndian.AppendUint64(b, uint64(timestamp(r).UnixNano()))
	for _, s := range [...]string{r.Node.ID, r.Reporter, r.StreamID, r.Trace.TraceID, r.Trace.SpanID,
		r.Trace.ParentSpanID, r.HTTP.RequestID, r.Stream, r.Message} {
		b = append(b, s...)
		b = append(b, 0)
	}
	sum := sha256.Sum256(b)
	hex.Encode(id[:], sum[:16])
}
