// Package otlp exports access records as OTLP trace spans (gRPC or HTTP) to
// Jaeger, an OpenTelemetry Collector or any OTLP backend. Spans come from
// package spans; the OpenTelemetry Go exporters do the encoding and the
// transport, fed read-only span snapshots built from records. Their own
// retry is off: the sink's queue owns retries, backoff and spill.
package otlp

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
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
	name  string
	exp   *otlptrace.Exporter
	scope instrumentation.Scope
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
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		return nil, fmt.Errorf("otlp: %w", err)
	}
	return &Exporter{
		name:  o.Name,
		exp:   exp,
		scope: instrumentation.Scope{Name: "github.com/meshtrail/meshtrail/internal/sink/otlp"},
	}, nil
}

// Name implements fanout.Exporter.
func (e *Exporter) Name() string { return e.name }

// Export sends the span records of batch (records that are not spans, such
// as log lines, are skipped as accepted).
func (e *Exporter) Export(ctx context.Context, batch []*record.Record) error {
	ro := Encode(batch, e.scope)
	if len(ro) == 0 {
		return nil
	}
	if err := e.exp.ExportSpans(ctx, ro); err != nil {
		return classify(err)
	}
	return nil
}

// Shutdown closes the connection.
func (e *Exporter) Shutdown(ctx context.Context) error { return e.exp.Shutdown(ctx) }

// classify marks errors no retry can fix as permanent: the server said
// the request itself is malformed.
func classify(err error) error {
	if s, ok := status.FromError(err); ok && s.Code() == grpccodes.InvalidArgument {
		return fanout.Permanent(err)
	}
	return err
}

// Encode converts records to read-only spans, one resource per workload.
func Encode(batch []*record.Record, scope instrumentation.Scope) []sdktrace.ReadOnlySpan {
	out := make([]sdktrace.ReadOnlySpan, 0, len(batch))
	resources := make(map[resKey]*resource.Resource)
	var sp spans.Span
	for _, r := range batch {
		if !spans.FromRecord(r, &sp) {
			continue
		}
		k := resKey{sp.Service, sp.Namespace, sp.Pod, sp.Version, sp.Mesh}
		res, ok := resources[k]
		if !ok {
			res = newResource(k)
			resources[k] = res
		}
		out = append(out, stub(&sp, res, scope).Snapshot())
	}
	return out
}

type resKey struct{ service, namespace, pod, version, mesh string }

func newResource(k resKey) *resource.Resource {
	attrs := []attribute.KeyValue{attribute.String("service.name", k.service)}
	if k.namespace != "" {
		attrs = append(attrs, attribute.String("service.namespace", k.namespace), attribute.String("k8s.namespace.name", k.namespace))
	}
	if k.pod != "" {
		attrs = append(attrs, attribute.String("k8s.pod.name", k.pod))
	}
	if k.version != "" {
		attrs = append(attrs, attribute.String("service.version", k.version))
	}
	if k.mesh != "" {
		attrs = append(attrs, attribute.String("istio.mesh_id", k.mesh))
	}
	return resource.NewSchemaless(attrs...)
}

func stub(sp *spans.Span, res *resource.Resource, scope instrumentation.Scope) tracetest.SpanStub {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    sp.TraceID,
		SpanID:     sp.SpanID,
		TraceFlags: trace.FlagsSampled,
	})
	var parent trace.SpanContext
	if sp.HasParent() {
		parent = trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: sp.TraceID, SpanID: sp.ParentSpanID, TraceFlags: trace.FlagsSampled, Remote: true,
		})
	}
	kind := trace.SpanKindServer
	if sp.Kind == spans.KindClient {
		kind = trace.SpanKindClient
	}
	attrs := make([]attribute.KeyValue, len(sp.Attrs))
	for i, a := range sp.Attrs {
		if a.IsInt {
			attrs[i] = attribute.Int64(a.Key, a.Int)
		} else {
			attrs[i] = attribute.String(a.Key, a.Str)
		}
	}
	st := sdktrace.Status{Code: codes.Unset}
	if sp.Error {
		st = sdktrace.Status{Code: codes.Error, Description: sp.StatusMessage}
	}
	return tracetest.SpanStub{
		Name:                 sp.Name,
		SpanContext:          sc,
		Parent:               parent,
		SpanKind:             kind,
		StartTime:            sp.Start,
		EndTime:              sp.End,
		Attributes:           attrs,
		Status:               st,
		Resource:             res,
		InstrumentationScope: scope,
	}
}
