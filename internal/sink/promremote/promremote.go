// Package promremote pushes the Istio RED metrics with Prometheus remote
// write (1.0: protobuf WriteRequest, snappy), for setups where nothing
// scrapes meshtrail.
//
// It keeps no metrics of its own: a Pusher gathers what the RED metrics sink
// (package istiometrics) already holds, in its own registry, and pushes
// that every interval. So remote write and /metrics show one model: the
// same 25 Istio labels, the same series cap, TCP as TCP. Every series
// carries a replica label (the pod name by default): two receivers push
// cumulative counters of the same label sets, and without it Prometheus
// would take one replica's total for the other's, each push overwriting
// the last. sum() over replicas gives the mesh's totals.
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
	"log/slog"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/encoding/protowire"
)

// ReplicaLabel is the label every pushed series carries, naming the
// meshtrail process that pushed it.
const ReplicaLabel = "replica"

// Options configure a Pusher.
type Options struct {
	// Gatherer holds the metrics to push: the RED metrics sink's registry
	// (package istiometrics). Every counter, gauge, histogram and summary
	// it gathers is pushed.
	Gatherer prometheus.Gatherer
	URL      string // e.g. http://127.0.0.1:9090/api/v1/write
	Client   *http.Client
	Headers  map[string]string
	// Interval between pushes; default 15s.
	Interval time.Duration
	// Replica is the value of the replica label; default DefaultReplica().
	// Two receivers pushing the same series with the same replica would
	// overwrite each other's cumulative counters, so it must differ per
	// process.
	Replica string
	// ExternalLabels are added to every series (cluster="east", ...). A
	// metric's own label of the same name wins, as with Prometheus'
	// external_labels; replica may not be one of them.
	ExternalLabels map[string]string
	// MaxSamplesPerRequest splits a push into requests of at most this
	// many samples; default 2000 (Prometheus' own max_samples_per_send).
	MaxSamplesPerRequest int
	// Now stamps the samples; default time.Now.
	Now func() time.Time
}

// Pusher pushes what a Gatherer holds to a remote-write endpoint every
// interval, as Prometheus would have scraped it: counters and gauges as
// they are, histograms as _bucket (cumulative, le including +Inf), _sum
// and _count series, summaries as quantiles, _sum and _count. Each push
// sends the cumulative values, so a failed push loses nothing but
// resolution: the next one carries the totals.
type Pusher struct {
	o      Options
	logger *slog.Logger
	labels []label // external labels and the replica, sorted

	pushes      *prometheus.CounterVec
	samples     prometheus.Counter
	lastSuccess prometheus.Gauge

	mu     sync.Mutex // one push at a time; guards lastMs and the batch
	lastMs int64
	batch  batch

	stop     chan struct{}
	done     chan struct{}
	started  bool
	stopOnce sync.Once
}

type label struct{ name, value string }

// batch is the request being filled during a push. Samples are encoded as
// they are flattened and sent every MaxSamplesPerRequest, so a push holds
// one request, not every bucket of every series (at the RED sink's cap,
// 50,000 label sets times 67 samples).
type batch struct {
	ctx    context.Context
	ms     int64
	body   []byte
	n      int     // samples in body
	sent   int     // samples sent in this push
	labels []label // the sample being encoded
	base   []label // the current metric's labels, external labels, replica
	err    error
}

// DefaultReplica is the POD_NAME environment variable (set from the
// downward API in the chart), else the host name.
func DefaultReplica() string {
	if p := os.Getenv("POD_NAME"); p != "" {
		return p
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return h
}

// NewPusher returns a Pusher; Start begins the pushes. Its own metrics
// (pushes by result, samples sent, time of the last success) are registered
// with reg.
func NewPusher(o Options, reg prometheus.Registerer, logger *slog.Logger) (*Pusher, error) {
	if o.Gatherer == nil {
		return nil, errors.New("promremote: a gatherer (the RED metrics' registry) is required")
	}
	if o.URL == "" {
		return nil, errors.New("promremote: url is required")
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Interval <= 0 {
		o.Interval = 15 * time.Second
	}
	if o.Replica == "" {
		o.Replica = DefaultReplica()
	}
	if o.MaxSamplesPerRequest <= 0 {
		o.MaxSamplesPerRequest = 2000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Pusher{o: o, logger: logger, stop: make(chan struct{}), done: make(chan struct{})}
	for n, v := range o.ExternalLabels {
		switch {
		case n == ReplicaLabel:
			return nil, fmt.Errorf("promremote: external_labels.%s: the replica label is set by replica", n)
		case !validLabelName(n):
			return nil, fmt.Errorf("promremote: external_labels: %q is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not __*)", n)
		case v == "":
			return nil, fmt.Errorf("promremote: external_labels.%s: empty value", n)
		}
		p.labels = append(p.labels, label{n, v})
	}
	p.labels = append(p.labels, label{ReplicaLabel, o.Replica})
	slices.SortFunc(p.labels, func(a, b label) int { return strings.Compare(a.name, b.name) })

	p.pushes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshtrail_remote_write_pushes_total",
		Help: "Pushes of the RED metrics with Prometheus remote write, by result (success, failure).",
	}, []string{"result"})
	p.samples = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "meshtrail_remote_write_samples_total",
		Help: "Samples accepted by the remote-write endpoint.",
	})
	p.lastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "meshtrail_remote_write_last_success_timestamp_seconds",
		Help: "When a push last succeeded entirely (unix seconds).",
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{p.pushes, p.samples, p.lastSuccess} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("promremote: %w", err)
			}
		}
	}
	return p, nil
}

// Start pushes every interval until Shutdown.
func (p *Pusher) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return
	}
	p.started = true
	go p.loop()
}

func (p *Pusher) loop() {
	defer close(p.done)
	t := time.NewTicker(p.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), p.o.Interval)
			if err := p.Push(ctx); err != nil {
				// The next push carries the same totals and more: only the
				// resolution of this interval is lost.
				p.logger.Warn("remote write push failed; the next push carries the totals", "url", p.o.URL, "error", err)
			}
			cancel()
		}
	}
}

// Shutdown stops the pushes and pushes one last time, so what was counted
// since the last push is not lost, retrying until ctx ends if the endpoint
// fails. It is idempotent.
func (p *Pusher) Shutdown(ctx context.Context) error {
	var err error
	p.stopOnce.Do(func() {
		close(p.stop)
		p.mu.Lock()
		started := p.started
		p.mu.Unlock()
		if started {
			select {
			case <-p.done:
			case <-ctx.Done():
				err = ctx.Err()
				return
			}
		}
		backoff := 100 * time.Millisecond
		for {
			if err = p.Push(ctx); err == nil {
				return
			}
			select {
			case <-ctx.Done():
				err = fmt.Errorf("promremote: last push before shutdown: %w", err)
				return
			case <-time.After(backoff):
				backoff = min(2*backoff, 2*time.Second)
			}
		}
	})
	return err
}

// Push gathers and pushes once.
func (p *Pusher) Push(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.push(ctx)
	if err != nil {
		p.pushes.WithLabelValues("failure").Inc()
		return err
	}
	p.pushes.WithLabelValues("success").Inc()
	p.lastSuccess.Set(float64(p.o.Now().UnixNano()) / 1e9)
	return nil
}

func (p *Pusher) push(ctx context.Context) error {
	mfs, err := p.o.Gatherer.Gather()
	if err != nil && len(mfs) == 0 {
		return fmt.Errorf("promremote: gathering: %w", err)
	}
	// Gather may return what it could together with an error (an
	// inconsistent collector); push that, as a scrape would.
	if err != nil {
		p.logger.Warn("remote write: gathering returned an error; pushing the rest", "error", err)
	}
	// Every push gets its own millisecond: Prometheus refuses a second
	// sample of a series at the same timestamp with another value.
	ms := max(p.o.Now().UnixMilli(), p.lastMs+1)
	p.lastMs = ms
	b := &p.batch
	b.ctx, b.ms, b.body, b.n, b.sent, b.err = ctx, ms, b.body[:0], 0, 0, nil
	p.flatten(mfs)
	p.flush()
	b.ctx = nil
	return b.err
}

func (p *Pusher) send(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.o.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("promremote: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	req.Header.Set("User-Agent", "meshtrail")
	for k, v := range p.o.Headers {
		req.Header.Set(k, v)
	}
	resp, err := p.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("promremote: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("promremote: POST %s: status %d: %s", p.o.URL, resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

// flatten turns the gathered families into samples as a scrape would
// store them, sending a request whenever one is full; it stops at the
// first failed request (in p.batch.err).
func (p *Pusher) flatten(mfs []*dto.MetricFamily) {
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			p.metricLabels(m)
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				p.add(name, "", "", m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				p.add(name, "", "", m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				p.add(name, "", "", m.GetUntyped().GetValue())
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := m.GetHistogram()
				infSeen := false
				for _, b := range h.GetBucket() {
					ub := b.GetUpperBound()
					infSeen = infSeen || math.IsInf(ub, 1)
					p.add(name+"_bucket", "le", formatFloat(ub), float64(b.GetCumulativeCount()))
				}
				if !infSeen {
					p.add(name+"_bucket", "le", "+Inf", float64(h.GetSampleCount()))
				}
				p.add(name+"_sum", "", "", h.GetSampleSum())
				p.add(name+"_count", "", "", float64(h.GetSampleCount()))
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					p.add(name, "quantile", formatFloat(q.GetQuantile()), q.GetValue())
				}
				p.add(name+"_sum", "", "", s.GetSampleSum())
				p.add(name+"_count", "", "", float64(s.GetSampleCount()))
			}
			if p.batch.err != nil {
				return
			}
		}
	}
}

// metricLabels sets p.batch.base to m's labels, the external labels m does
// not have itself and the replica, sorted by name: once per metric, not
// per sample (a histogram is 22 samples of the same labels).
func (p *Pusher) metricLabels(m *dto.Metric) {
	b := &p.batch
	ls := b.base[:0]
	for _, lp := range m.GetLabel() {
		if lp.GetName() == ReplicaLabel || lp.GetValue() == "" {
			// Ours wins: it is what keeps replicas apart. An empty value
			// is no label at all to Prometheus.
			continue
		}
		ls = append(ls, label{lp.GetName(), lp.GetValue()})
	}
	own := len(ls)
	for _, l := range p.labels {
		if l.name != ReplicaLabel && hasLabel(ls[:own], l.name) {
			continue
		}
		ls = append(ls, l)
	}
	slices.SortFunc(ls, func(a, b label) int { return strings.Compare(a.name, b.name) })
	b.base = ls
}

// add encodes one sample of the current metric into the batch: its labels
// (p.batch.base) with __name__ and the extra label (le, quantile) when
// given merged in, sorted by name as remote write requires. A full batch
// is sent.
func (p *Pusher) add(name string, extraName, extraValue string, v float64) {
	b := &p.batch
	if b.err != nil {
		return
	}
	extra := [2]label{{"__name__", name}, {extraName, extraValue}}
	pending := extra[:1]
	if extraName != "" {
		pending = extra[:2]
		if extraName < "__name__" {
			pending[0], pending[1] = pending[1], pending[0]
		}
	}
	ls := b.labels[:0]
	for _, l := range b.base {
		for len(pending) > 0 && pending[0].name < l.name {
			ls = append(ls, pending[0])
			pending = pending[1:]
		}
		ls = append(ls, l)
	}
	ls = append(ls, pending...)
	b.labels = ls
	b.body = appendSeries(b.body, ls, v, b.ms)
	if b.n++; b.n >= p.o.MaxSamplesPerRequest {
		p.flush()
	}
}

// flush sends the samples encoded so far.
func (p *Pusher) flush() {
	b := &p.batch
	if b.n == 0 || b.err != nil {
		return
	}
	if err := p.send(b.ctx, snappy.Encode(nil, b.body)); err != nil {
		b.err = fmt.Errorf("%w (%d samples sent before)", err, b.sent)
		return
	}
	p.samples.Add(float64(b.n))
	b.sent += b.n
	b.body, b.n = b.body[:0], 0
}

func hasLabel(ls []label, name string) bool {
	for _, l := range ls {
		if l.name == name {
			return true
		}
	}
	return false
}

// formatFloat writes le and quantile values as the Prometheus text
// exposition does (0.5, 1, 3.6e+06, +Inf), so the series are the ones a
// scrape of the same metrics stores.
func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// appendSeries appends WriteRequest.timeseries = TimeSeries{labels,
// samples: [{value, ms}]}.
func appendSeries(dst []byte, labels []label, v float64, ms int64) []byte {
	size := 0
	for _, l := range labels {
		size += protowire.SizeTag(1) + protowire.SizeBytes(labelSize(l))
	}
	sampleSize := protowire.SizeTag(1) + protowire.SizeFixed64() + protowire.SizeTag(2) + protowire.SizeVarint(uint64(ms))
	size += protowire.SizeTag(2) + protowire.SizeBytes(sampleSize)

	dst = protowire.AppendTag(dst, 1, protowire.BytesType) // WriteRequest.timeseries
	dst = protowire.AppendVarint(dst, uint64(size))
	for _, l := range labels {
		dst = protowire.AppendTag(dst, 1, protowire.BytesType) // TimeSeries.labels
		dst = protowire.AppendVarint(dst, uint64(labelSize(l)))
		dst = protowire.AppendTag(dst, 1, protowire.BytesType) // Label.name
		dst = protowire.AppendString(dst, l.name)
		dst = protowire.AppendTag(dst, 2, protowire.BytesType) // Label.value
		dst = protowire.AppendString(dst, l.value)
	}
	dst = protowire.AppendTag(dst, 2, protowire.BytesType) // TimeSeries.samples
	dst = protowire.AppendVarint(dst, uint64(sampleSize))
	dst = protowire.AppendTag(dst, 1, protowire.Fixed64Type) // Sample.value
	dst = protowire.AppendFixed64(dst, math.Float64bits(v))
	dst = protowire.AppendTag(dst, 2, protowire.VarintType) // Sample.timestamp (ms)
	dst = protowire.AppendVarint(dst, uint64(ms))
	return dst
}

func labelSize(l label) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(len(l.name)) + protowire.SizeTag(2) + protowire.SizeBytes(len(l.value))
}

func validLabelName(n string) bool {
	if n == "" || strings.HasPrefix(n, "__") {
		return false
	}
	for i, c := range n {
		if c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return false
	}
	return true
}
