// Package zipkin exports access records as Zipkin v2 spans (JSON, POST
// /api/v2/spans) to Zipkin, Jaeger's Zipkin receiver or an OpenTelemetry
// Collector. Spans come from package spans and are encoded with
// zipkin-go's model and serializer.
//
// zipkin-go's reporter/http is not used for sending: it queues spans in the
// background and only logs a failed POST, so the sink's queue could never
// learn that a batch failed and retry it. Export posts synchronously
// instead and reports the outcome.
package zipkin

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/openzipkin/zipkin-go/model"
	"github.com/openzipkin/zipkin-go/reporter"

	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/sink/spans"
)

// Options configure an Exporter.
type Options struct {
	Name string // default "zipkin"
	// URL is the full span endpoint, e.g. http://127.0.0.1:9411/api/v2/spans.
	URL string
	// Client sends the requests (TLS and timeouts live there); default
	// a client with a 10s timeout.
	Client *http.Client
	// Headers are added to every request (authentication goes here).
	Headers map[string]string
}

// Exporter posts records as Zipkin spans.
type Exporter struct {
	name    string
	url     string
	client  *http.Client
	headers map[string]string
	ser     reporter.JSONSerializer
}

var _ fanout.Exporter = (*Exporter)(nil)

// New returns an Exporter.
func New(o Options) (*Exporter, error) {
	if o.URL == "" {
		return nil, fmt.Errorf("zipkin: url is required")
	}
	if o.Name == "" {
		o.Name = "zipkin"
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Exporter{name: o.Name, url: o.URL, client: o.Client, headers: o.Headers}, nil
}

// Name implements fanout.Exporter.
func (e *Exporter) Name() string { return e.name }

// Export posts the span records of batch; others are skipped as accepted.
func (e *Exporter) Export(ctx context.Context, batch []*record.Record) error {
	body, err := e.Encode(batch)
	if err != nil {
		return fanout.Permanent(err)
	}
	if body == nil {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return fanout.Permanent(err)
	}
	req.Header.Set("Content-Type", e.ser.ContentType())
	for k, v := range e.headers {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("zipkin: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return fanout.HTTPResponseError("zipkin", resp, msg)
}

// Encode returns the JSON body for batch, or nil when no record is a span.
func (e *Exporter) Encode(batch []*record.Record) ([]byte, error) {
	models := make([]*model.SpanModel, 0, len(batch))
	var sp spans.Span
	for _, r := range batch {
		if !spans.FromRecord(r, &sp) {
			continue
		}
		models = append(models, toModel(&sp))
	}
	if len(models) == 0 {
		return nil, nil
	}
	return e.ser.Serialize(models)
}

func toModel(sp *spans.Span) *model.SpanModel {
	m := &model.SpanModel{
		SpanContext: model.SpanContext{
			TraceID: model.TraceID{
				High: be64(sp.TraceID[:8]),
				Low:  be64(sp.TraceID[8:]),
			},
			ID: model.ID(be64(sp.SpanID[:])),
		},
		Name:          sp.Name,
		Timestamp:     sp.Start,
		Duration:      sp.End.Sub(sp.Start),
		LocalEndpoint: &model.Endpoint{ServiceName: sp.Service},
		Tags:          make(map[string]string, len(sp.Attrs)+4),
	}
	if m.Duration < time.Microsecond {
		// Zipkin's unit is the microsecond; 0 would read as "unknown".
		m.Duration = time.Microsecond
	}
	if sp.HasParent() {
		p := model.ID(be64(sp.ParentSpanID[:]))
		m.ParentID = &p
	}
	if sp.Kind == spans.KindClient {
		m.Kind = model.Client
	} else {
		m.Kind = model.Server
	}
	if sp.PeerService != "" || sp.PeerAddress != "" {
		re := &model.Endpoint{ServiceName: sp.PeerService}
		if h, p, err := net.SplitHostPort(sp.PeerAddress); err == nil {
			if ip := net.ParseIP(h); ip != nil {
				if ip4 := ip.To4(); ip4 != nil {
					re.IPv4 = ip4
				} else {
					re.IPv6 = ip
				}
			}
			if n, err := strconv.ParseUint(p, 10, 16); err == nil {
				re.Port = uint16(n)
			}
		}
		m.RemoteEndpoint = re
	}
	for _, a := range sp.Attrs {
		if a.IsInt {
			m.Tags[a.Key] = strconv.FormatInt(a.Int, 10)
		} else {
			m.Tags[a.Key] = a.Str
		}
	}
	if sp.Namespace != "" {
		m.Tags["k8s.namespace.name"] = sp.Namespace
	}
	if sp.Pod != "" {
		m.Tags["k8s.pod.name"] = sp.Pod
	}
	if sp.Error {
		// Zipkin's convention: the "error" tag marks a failed span.
		m.Tags["error"] = sp.StatusMessage
	}
	return m
}

func be64(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}
