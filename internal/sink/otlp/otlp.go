// Package otlp exports access records as OTLP trace spans (gRPC or HTTP) to
// Jaeger, an OpenTelemetry Collector or any OTLP backend. Spans come from
// package spans; Encode builds the OTLP protobuf messages
// (go.opentelemetry.io/proto/otlp) from them directly, and the
// OpenTelemetry Go exporters' clients (otlptracegrpc, otlptracehttp) only
// carry them. The SDK's span types are not involved: going through them
// cost a read-only span snapshot and a second conversion per record. The
// clients' own retry is off: the sink's queue owns retries, backoff and
// spill.
package otlp

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/sink/spans"
)

// Protocol is the OTLP transport.
type Protocol string

const (
	GRPC Protocol = "grpc"
	HTTP Protocol = "http" // OTLP/HTTP protobuf, POST {endpoint}/v1/traces
)

// ScopeName is the instrumentation scope of every span meshtrail sends.
const ScopeName = "github.com/meshtrail/meshtrail/internal/sink/otlp"

// Options configure an Exporter.
type Options struct {
	Name     string // sink name in logs and metrics; default "otlp-<protocol>"
	Protocol Protocol
	// Endpoint is host:port.
	Endpoint string
	// URLPath overrides /v1/traces (HTTP only).
	URLPath string
	// TLS is nil for plaintext.
	TLS *tls.Config
	// Headers are sent with every export (authentication goes here).
	Headers map[string]string
	// Gzip compresses requests.
	Gzip bool
	// Timeout bounds one export; default 10s.
	Timeout time.Duration
}

// Exporter sends records as spans over OTLP.
type Exporter struct {
	name   string
	client otlptrace.Client
	// encoders are reused across exports (the queue's workers export
	// concurrently, each takes its own).
	encoders sync.Pool
}

var _ fanout.Exporter = (*Exporter)(nil)

// New returns an Exporter. It does not connect until the first export.
func New(ctx context.Context, o Options) (*Exporter, error) {
	if o.Endpoint == "" {
		return nil, fmt.Errorf("otlp: endpoint is required")
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	// The queue retries with backoff and spill; a second retry loop here would
	// hold a worker and hide outages from the queue's metrics.
	builtinRetry := false
	var client otlptrace.Client
	switch o.Protocol {
	case GRPC, "":
		o.Protocol = GRPC
		opts := []otlptracegrpc.Option{
			otlptracegrpc.WithEndpoint(o.Endpoint),
			otlptracegrpc.WithTimeout(o.Timeout),
			otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: builtinRetry}),
		}
		if o.TLS == nil {
			opts = append(opts, otlptracegrpc.WithInsecure())
		} else {
			opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(o.TLS)))
		}
		if len(o.Headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(o.Headers))
		}
		if o.Gzip {
			opts = append(opts, otlptracegrpc.WithCompressor("gzip"))
		}
		client = otlptracegrpc.NewClient(opts...)
	case HTTP:
		opts := []otlptracehttp.Option{
			otlptracehttp.WithEndpoint(o.Endpoint),
			otlptracehttp.WithTimeout(o.Timeout),
			otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: builtinRetry}),
		}
		if o.URLPath != "" {
			opts = append(opts, otlptracehttp.WithURLPath(o.URLPath))
		}
		if o.TLS == nil {
			opts = append(opts, otlptracehttp.WithInsecure())
		} else {
			opts = append(opts, otlptracehttp.WithTLSClientConfig(o.TLS))
		}
		if len(o.Headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(o.Headers))
		}
		if o.Gzip {
			opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
		} else {
			opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.NoCompression))
		}
		client = otlptracehttp.NewClient(opts...)
	default:
		return nil, fmt.Errorf("otlp: unknown protocol %q (want grpc or http)", o.Protocol)
	}
	if o.Name == "" {
		o.Name = "otlp-" + string(o.Protocol)
	}
	return newExporter(ctx, o.Name, client)
}

// newExporter starts client (the gRPC client creates its connection here;
// it dials lazily) and wraps it.
func newExporter(ctx context.Context, name string, client otlptrace.Client) (*Exporter, error) {
	if err := client.Start(ctx); err != nil {
		return nil, fmt.Errorf("otlp: starting the %s client: %w", name, err)
	}
	return &Exporter{name: name, client: client, encoders: sync.Pool{New: func() any { return new(encoder) }}}, nil
}

// Name implements fanout.Exporter.
func (e *Exporter) Name() string { return e.name }

// Export sends the span records of batch (records that are not spans, such
// as log lines, are skipped as accepted).
func (e *Exporter) Export(ctx context.Context, batch []*record.Record) error {
	enc := e.encoders.Get().(*encoder)
	defer e.encoders.Put(enc)
	// The gRPC and HTTP clients marshal the request before UploadTraces
	// returns and keep no reference to it (their own retry, which could, is
	// off), so the messages can be reused right after.
	defer enc.reset()
	rs := enc.encode(batch)
	if len(rs) == 0 {
		return nil
	}
	if err := e.client.UploadTraces(ctx, rs); err != nil {
		return classify(err)
	}
	return nil
}

// Shutdown closes the connection.
func (e *Exporter) Shutdown(ctx context.Context) error { return e.client.Stop(ctx) }

// classify marks errors no retry can fix as permanent: the server said
// the request itself is malformed.
func classify(err error) error {
	if s, ok := status.FromError(err); ok && s.Code() == grpccodes.InvalidArgument {
		return fanout.Permanent(err)
	}
	return err
}

// Flags of every span: sampled (W3C trace flags 0x01, as only sampled
// records become spans), "we know whether the parent is remote", and, with
// a parent, "it is": the parent span was reported by another proxy. This is
// what the SDK wrote for the same spans.
const (
	flagsRoot   = 0x01 | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
	flagsRemote = flagsRoot | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
)

// Encode converts records to OTLP ResourceSpans, one per workload (the
// resource attributes service.name, service.namespace, k8s.namespace.name,
// k8s.pod.name, service.version, istio.mesh_id), in the order the
// workloads first appear. Records that are not spans are skipped. The
// messages belong to the caller.
func Encode(batch []*record.Record) []*tracepb.ResourceSpans {
	return new(encoder).encode(batch)
}

// encoder builds the OTLP messages of a batch from arenas: a span has about
// twenty attributes, each three protobuf messages, and allocating them one by
// one (or even per batch) made the garbage collector most of the cost. The
// Exporter reuses encoders through a pool once the client has marshalled
// the request.
type encoder struct {
	spans  arena[tracepb.Span]
	status arena[tracepb.Status]
	kvs    arena[commonpb.KeyValue]
	vals   arena[commonpb.AnyValue]
	strs   arena[commonpb.AnyValue_StringValue]
	ints   arena[commonpb.AnyValue_IntValue]
	ptrs   sliceArena[*commonpb.KeyValue]
	ids    sliceArena[byte]

	sp    spans.Span
	byRes map[resKey]*tracepb.ScopeSpans
}

type resKey struct{ service, namespace, pod, version, mesh string }

func (e *encoder) encode(batch []*record.Record) []*tracepb.ResourceSpans {
	var out []*tracepb.ResourceSpans
	for _, r := range batch {
		if !spans.FromRecord(r, &e.sp) {
			continue
		}
		if e.byRes == nil {
			e.byRes = make(map[resKey]*tracepb.ScopeSpans)
		}
		sp := &e.sp
		k := resKey{sp.Service, sp.Namespace, sp.Pod, sp.Version, sp.Mesh}
		ss, ok := e.byRes[k]
		if !ok {
			ss = &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: ScopeName}}
			out = append(out, &tracepb.ResourceSpans{
				Resource:   &resourcepb.Resource{Attributes: e.resourceAttrs(k)},
				ScopeSpans: []*tracepb.ScopeSpans{ss},
			})
			e.byRes[k] = ss
		}
		ss.Spans = append(ss.Spans, e.span(sp))
	}
	return out
}

// reset makes the encoder's messages free for the next batch. Nothing may
// hold the messages of the last one.
func (e *encoder) reset() {
	e.spans.reset()
	e.status.reset()
	e.kvs.reset()
	e.vals.reset()
	e.strs.reset()
	e.ints.reset()
	e.ptrs.reset()
	e.ids.reset()
	clear(e.byRes)
}

func (e *encoder) span(sp *spans.Span) *tracepb.Span {
	s := e.spans.next()
	s.TraceId = e.ids.take(sp.TraceID[:])
	s.SpanId = e.ids.take(sp.SpanID[:])
	s.Flags = flagsRoot
	if sp.HasParent() {
		s.ParentSpanId = e.ids.take(sp.ParentSpanID[:])
		s.Flags = flagsRemote
	}
	s.Name = sp.Name
	s.Kind = tracepb.Span_SPAN_KIND_SERVER
	if sp.Kind == spans.KindClient {
		s.Kind = tracepb.Span_SPAN_KIND_CLIENT
	}
	s.StartTimeUnixNano = unixNano(sp.Start)
	s.EndTimeUnixNano = unixNano(sp.End)
	s.Status = e.status.next()
	if sp.Error {
		s.Status.Code = tracepb.Status_STATUS_CODE_ERROR
		s.Status.Message = sp.StatusMessage
	}
	s.Attributes = e.ptrs.make(len(sp.Attrs))
	for i := range sp.Attrs {
		at := &sp.Attrs[i]
		if at.IsInt {
			s.Attributes[i] = e.intKV(at.Key, at.Int)
		} else {
			s.Attributes[i] = e.strKV(at.Key, at.Str)
		}
	}
	return s
}

func (e *encoder) strKV(key, v string) *commonpb.KeyValue {
	sv := e.strs.next()
	sv.StringValue = v
	kv := e.kvs.next()
	kv.Key = key
	kv.Value = e.vals.next()
	kv.Value.Value = sv
	return kv
}

func (e *encoder) intKV(key string, v int64) *commonpb.KeyValue {
	iv := e.ints.next()
	iv.IntValue = v
	kv := e.kvs.next()
	kv.Key = key
	kv.Value = e.vals.next()
	kv.Value.Value = iv
	return kv
}

// resourceAttrs are sorted by key, as the SDK's attribute sets were.
func (e *encoder) resourceAttrs(k resKey) []*commonpb.KeyValue {
	attrs := make([]*commonpb.KeyValue, 0, 6)
	add := func(key, v string) {
		if v != "" {
			attrs = append(attrs, e.strKV(key, v))
		}
	}
	add("istio.mesh_id", k.mesh)
	add("k8s.namespace.name", k.namespace)
	add("k8s.pod.name", k.pod)
	attrs = append(attrs, e.strKV("service.name", k.service))
	add("service.namespace", k.namespace)
	add("service.version", k.version)
	return attrs
}

func unixNano(t time.Time) uint64 {
	if n := t.UnixNano(); n > 0 {
		return uint64(n)
	}
	return 0
}

const chunkLen = 4096

// arena hands out zeroed values from fixed chunks, so pointers handed out
// stay valid while it grows; reset zeroes what was used and starts over.
type arena[T any] struct {
	chunks [][]T
	c, i   int // next value: chunks[c][i]
}

func (a *arena[T]) next() *T {
	if a.c < len(a.chunks) && a.i == len(a.chunks[a.c]) {
		a.c, a.i = a.c+1, 0
	}
	if a.c == len(a.chunks) {
		a.chunks = append(a.chunks, make([]T, chunkLen))
	}
	p := &a.chunks[a.c][a.i]
	a.i++
	return p
}

func (a *arena[T]) reset() {
	for c := 0; c < a.c && c < len(a.chunks); c++ {
		clear(a.chunks[c])
	}
	if a.c < len(a.chunks) {
		clear(a.chunks[a.c][:a.i])
	}
	a.c, a.i = 0, 0
}

// sliceArena hands out contiguous slices (a span's attribute list, ids).
type sliceArena[T any] struct {
	chunks [][]T
	c, i   int
}

// make returns n zeroed elements with capacity n.
func (a *sliceArena[T]) make(n int) []T {
	for a.c < len(a.chunks) && len(a.chunks[a.c])-a.i < n {
		a.c, a.i = a.c+1, 0
	}
	if a.c == len(a.chunks) {
		a.chunks = append(a.chunks, make([]T, max(chunkLen, n)))
	}
	s := a.chunks[a.c][a.i : a.i+n : a.i+n]
	a.i += n
	return s
}

// take returns a copy of b.
func (a *sliceArena[T]) take(b []T) []T {
	s := a.make(len(b))
	copy(s, b)
	return s
}

func (a *sliceArena[T]) reset() {
	for c := 0; c < a.c && c < len(a.chunks); c++ {
		clear(a.chunks[c])
	}
	if a.c < len(a.chunks) {
		clear(a.chunks[a.c][:a.i])
	}
	a.c, a.i = 0, 0
}
