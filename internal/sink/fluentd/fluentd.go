// Package fluentd sends records over the Fluentd forward protocol to
// Fluentd, Fluent Bit or an OpenTelemetry Collector's fluentforward
// receiver, with fluent-logger-golang in synchronous mode and
// acknowledgements on: Export returns only once the receiver has
// acknowledged every record (at-least-once; a lost ack means a resend).
//
// Each record is one forward-protocol event tagged "<tag prefix>.<kind>"
// (meshtrail.http, meshtrail.tcp, meshtrail.log), encoded directly to
// MessagePack as a flat map of its useful fields (see Event.MarshalMsg):
// Fluentd filters and outputs match flat keys, and direct encoding avoids
// building a map per record.
package fluentd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"
	"github.com/tinylib/msgp/msgp"

	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/record"
)

// Options configure an Exporter.
type Options struct {
	Name string // default "fluentd"
	// Address is host:port of the forward input.
	Address string
	// TagPrefix defaults to "meshtrail".
	TagPrefix string
	// Timeout bounds connecting, writing and waiting for each ack; default 10s.
	Timeout time.Duration
	// TLS turns on TLS to the receiver (Fluentd's forward input with tls).
	TLS bool
	// InsecureSkipVerify is for test receivers only.
	InsecureSkipVerify bool
}

// Exporter sends records with acknowledgements.
type Exporter struct {
	o Options

	mu     sync.Mutex // one sender: acks are read in order on one connection
	logger *fluent.Fluent
}

var _ fanout.Exporter = (*Exporter)(nil)

// New returns an Exporter. It connects on the first export, so a receiver
// that is down at start-up does not fail meshtrail's start.
func New(o Options) (*Exporter, error) {
	if o.Address == "" {
		return nil, errors.New("fluentd: address is required")
	}
	if _, _, err := net.SplitHostPort(o.Address); err != nil {
		return nil, fmt.Errorf("fluentd: address %q: %w", o.Address, err)
	}
	if o.Name == "" {
		o.Name = "fluentd"
	}
	if o.TagPrefix == "" {
		o.TagPrefix = "meshtrail"
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	return &Exporter{o: o}, nil
}

// Name implements fanout.Exporter.
func (e *Exporter) Name() string { return e.o.Name }

func (e *Exporter) connect() (*fluent.Fluent, error) {
	if e.logger != nil {
		return e.logger, nil
	}
	host, port, _ := net.SplitHostPort(e.o.Address)
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fanout.Permanent(fmt.Errorf("fluentd: port %q: %w", port, err))
	}
	network := "tcp"
	if e.o.TLS {
		network = "tls"
	}
	l, err := fluent.New(fluent.Config{
		FluentHost:            host,
		FluentPort:            p,
		FluentNetwork:         network,
		TlsInsecureSkipVerify: e.o.InsecureSkipVerify,
		Timeout:               e.o.Timeout,
		WriteTimeout:          e.o.Timeout,
		ReadTimeout:           e.o.Timeout,
		RequestAck:            true,
		SubSecondPrecision:    true,
		// One attempt: the queue owns retries and backoff, and must see
		// the failure to spill and count it.
		MaxRetry:  1,
		RetryWait: 100,
	})
	if err != nil {
		return nil, fmt.Errorf("fluentd: connect %s: %w", e.o.Address, err)
	}
	e.logger = l
	return l, nil
}

// Export sends batch record by record, each acknowledged before the next.
// If sending stops part-way, the records not yet acknowledged are returned
// for retry.
func (e *Exporter) Export(ctx context.Context, batch []*record.Record) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	l, err := e.connect()
	if err != nil {
		return err
	}
	for i, r := range batch {
		if err := ctx.Err(); err != nil {
			return e.partial(batch, i, err)
		}
		ev := Event{R: r}
		if err := l.EncodeAndPostData(e.o.TagPrefix+"."+r.Kind.String(), timestamp(r), &ev); err != nil {
			// The logger has closed its connection; drop it so the next
			// export starts afresh.
			_ = l.Close()
			e.logger = nil
			return e.partial(batch, i, fmt.Errorf("fluentd: %w", err))
		}
	}
	return nil
}

func (e *Exporter) partial(batch []*record.Record, i int, err error) error {
	if i == 0 {
		return err
	}
	return &fanout.PartialError{Retry: batch[i:], Err: err}
}

// Shutdown closes the connection.
func (e *Exporter) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.logger == nil {
		return nil
	}
	err := e.logger.Close()
	e.logger = nil
	return err
}

func timestamp(r *record.Record) time.Time {
	if !r.StartTime.IsZero() {
		return r.StartTime
	}
	return r.ReceivedAt
}

// Event is a record as a forward-protocol event body.
type Event struct{ R *record.Record }

var _ msgp.Marshaler = (*Event)(nil)

// MarshalMsg appends the record as a flat MessagePack map: identity and
// trace ids, both workloads, the request and response, timings in
// milliseconds; for log lines the line as "message" (the key Fluentd and
// the collector's fluentforward receiver treat as the body) and its
// parsed fields as "fields". Empty values are left out.
func (ev *Event) MarshalMsg(b []byte) ([]byte, error) {
	r := ev.R
	var kv [64]kvPair
	m := kv[:0]
	str := func(k, v string) {
		if v != "" {
			m = append(m, kvPair{k: k, s: v})
		}
	}
	num := func(k string, v uint64) {
		if v != 0 {
			m = append(m, kvPair{k: k, n: v, isNum: true})
		}
	}
	ms := func(k string, d time.Duration) {
		if d != 0 {
			m = append(m, kvPair{k: k, f: float64(d) / float64(time.Millisecond), isFloat: true})
		}
	}
	str("kind", r.Kind.String())
	str("trace_id", r.Trace.TraceID)
	str("span_id", r.Trace.SpanID)
	str("parent_span_id", r.Trace.ParentSpanID)
	str("reporter", r.Reporter)
	str("node_id", r.Node.ID)
	str("pod", r.Node.Pod)
	str("namespace", r.Node.Namespace)
	str("workload", r.Node.Workload)
	str("source_workload", r.Source.Name)
	str("source_namespace", r.Source.Namespace)
	str("source_principal", r.Source.Principal)
	str("destination_workload", r.Destination.Name)
	str("destination_namespace", r.Destination.Namespace)
	str("destination_service", r.Upstream.Service)
	str("destination_principal", r.Destination.Principal)
	str("method", r.HTTP.Method)
	str("authority", r.HTTP.Authority)
	str("path", r.HTTP.Path)
	str("protocol", r.HTTP.Protocol)
	num("response_code", uint64(r.HTTP.ResponseCode))
	str("grpc_status", r.HTTP.GRPCStatus)
	str("response_code_details", r.HTTP.ResponseCodeDetails)
	if r.ResponseFlags != "-" {
		str("response_flags", r.ResponseFlags)
	}
	str("request_id", r.HTTP.RequestID)
	str("user_agent", r.HTTP.UserAgent)
	num("request_bytes", r.HTTP.RequestBodyBytes)
	num("response_bytes", r.HTTP.ResponseBodyBytes)
	num("received_bytes", r.ReceivedBytes)
	num("sent_bytes", r.SentBytes)
	ms("duration_ms", r.Timings.Total)
	ms("first_upstream_rx_byte_ms", r.Timings.FirstUpstreamRxByte)
	str("upstream_cluster", r.Upstream.Cluster)
	str("upstream_host", r.Upstream.Host)
	str("downstream_remote_address", r.Downstream.RemoteAddress)
	str("route_name", r.RouteName)
	str("connection_security_policy", r.ConnectionSecurityPolicy)
	str("message", r.Message)
	str("level", r.Level)
	str("stream", r.Stream)

	n := uint32(len(m))
	if len(r.Fields) > 0 {
		n++
	}
	b = msgp.AppendMapHeader(b, n)
	for _, p := range m {
		b = msgp.AppendString(b, p.k)
		switch {
		case p.isNum:
			b = msgp.AppendUint64(b, p.n)
		case p.isFloat:
			b = msgp.AppendFloat64(b, p.f)
		default:
			b = msgp.AppendString(b, p.s)
		}
	}
	if len(r.Fields) > 0 {
		b = msgp.AppendString(b, "fields")
		b = msgp.AppendMapHeader(b, uint32(len(r.Fields)))
		for k, v := range r.Fields {
			b = msgp.AppendString(b, k)
			b = msgp.AppendString(b, v)
		}
	}
	return b, nil
}

type kvPair struct {
	k       string
	s       string
	n       uint64
	f       float64
	isNum   bool
	isFloat bool
}
