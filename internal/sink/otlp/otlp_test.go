package otlp

import (
	"context"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/recordtest"
	"github.com/meshtrail/meshtrail/internal/sink/spans"
	"github.com/meshtrail/meshtrail/test/harness"
)

func TestEncode(t *testing.T) {
	g := recordtest.New("shop", 10)
	tid, recs := g.Request(503)
	recs = append(recs, g.LogLine(tid, recs[0].Trace.SpanID, "reviews", "not a span"))
	rss := Encode(recs)
	var got []*tracepb.Span
	services := map[*tracepb.Span]string{}
	for _, rs := range rss {
		var svc string
		for _, kv := range rs.Resource.Attributes {
			if kv.Key == "service.name" {
				svc = kv.Value.GetStringValue()
			}
		}
		if svc == "" {
			t.Errorf("resource without service.name: %v", rs.Resource)
		}
		if len(rs.ScopeSpans) != 1 || rs.ScopeSpans[0].Scope.GetName() != ScopeName {
			t.Errorf("resource %s: scopes %v, want one named %s", svc, rs.ScopeSpans, ScopeName)
		}
		for _, s := range rs.ScopeSpans[0].Spans {
			got = append(got, s)
			services[s] = svc
		}
	}
	if len(got) != 5 {
		t.Fatalf("%d spans, want 5 (the log line is not one)", len(got))
	}
	bySpanID := map[string]*tracepb.Span{}
	for _, s := range got {
		bySpanID[string(s.SpanId)] = s
	}
	for i, r := range recs[:5] {
		s := bySpanID[string(mustID(t, r.Trace.SpanID))]
		if s == nil {
			t.Fatalf("record %d: no span with id %s", i, r.Trace.SpanID)
		}
		if hex.EncodeToString(s.TraceId) != r.Trace.TraceID || hex.EncodeToString(s.ParentSpanId) != r.Trace.ParentSpanID {
			t.Errorf("span %d trace %x parent %x, record %+v", i, s.TraceId, s.ParentSpanId, r.Trace)
		}
		wantKind, wantSvc := tracepb.Span_SPAN_KIND_SERVER, r.Destination.CanonicalService
		if r.Reporter == record.ReporterSource {
			wantKind, wantSvc = tracepb.Span_SPAN_KIND_CLIENT, r.Source.CanonicalService
		}
		if s.Kind != wantKind || services[s] != wantSvc {
			t.Errorf("span %d: kind %v service %q, want %v %q", i, s.Kind, services[s], wantKind, wantSvc)
		}
		if s.StartTimeUnixNano != uint64(r.StartTime.UnixNano()) || s.EndTimeUnixNano != uint64(r.StartTime.Add(r.Timings.Total).UnixNano()) {
			t.Errorf("span %d: %d..%d, record %v + %v", i, s.StartTimeUnixNano, s.EndTimeUnixNano, r.StartTime, r.Timings.Total)
		}
	}
	last := bySpanID[string(mustID(t, recs[4].Trace.SpanID))]
	if last.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || !strings.Contains(last.Status.GetMessage(), "503") {
		t.Errorf("503 span status %v", last.Status)
	}
	if len(Encode(recs[5:])) != 0 {
		t.Error("a batch of log lines gave spans")
	}
}

// TestEncodeAsSDK checks that the spans are the ones the OpenTelemetry SDK
// sent for the same records before meshtrail built them itself: each
// record goes through the SDK's span stub and its OTLP transform here, and
// the two requests must be equal message for message.
func TestEncodeAsSDK(t *testing.T) {
	var recs []*record.Record
	g := recordtest.New("shop", 3)
	for _, code := range []uint32{200, 404, 503, 0} {
		_, rs := g.Request(code)
		recs = append(recs, rs...)
	}
	recs = append(recs, recordtest.Batch("other", 4, 40)...)

	c := &captureClient{}
	exp, err := otlptrace.New(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if err := exp.ExportSpans(context.Background(), sdkSpans(recs)); err != nil {
		t.Fatal(err)
	}
	want, got := normalize(c.got), normalize(Encode(recs))
	if len(got) != len(want) {
		t.Fatalf("%d resources, the SDK made %d", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("resource %d differs from the SDK's:\n got  %v\n want %v", i, got[i], want[i])
		}
	}
}

type captureClient struct{ got []*tracepb.ResourceSpans }

func (c *captureClient) Start(context.Context) error { return nil }
func (c *captureClient) Stop(context.Context) error  { return nil }
func (c *captureClient) UploadTraces(_ context.Context, rs []*tracepb.ResourceSpans) error {
	c.got = append(c.got, rs...)
	return nil
}

// normalize orders resources by their attributes (the SDK groups them in a
// map) and marshals nothing: proto.Equal compares the rest.
func normalize(rss []*tracepb.ResourceSpans) []*tracepb.ResourceSpans {
	key := func(rs *tracepb.ResourceSpans) string { return rs.Resource.String() }
	out := slices.Clone(rss)
	slices.SortFunc(out, func(a, b *tracepb.ResourceSpans) int { return strings.Compare(key(a), key(b)) })
	return out
}

// sdkSpans is the encoding this package used before: records through the
// SDK's span stubs.
func sdkSpans(recs []*record.Record) []sdktrace.ReadOnlySpan {
	scope := instrumentation.Scope{Name: ScopeName}
	var out []sdktrace.ReadOnlySpan
	var sp spans.Span
	for _, r := range recs {
		if !spans.FromRecord(r, &sp) {
			continue
		}
		attrs := []attribute.KeyValue{attribute.String("service.name", sp.Service)}
		if sp.Namespace != "" {
			attrs = append(attrs, attribute.String("service.namespace", sp.Namespace), attribute.String("k8s.namespace.name", sp.Namespace))
		}
		if sp.Pod != "" {
			attrs = append(attrs, attribute.String("k8s.pod.name", sp.Pod))
		}
		if sp.Version != "" {
			attrs = append(attrs, attribute.String("service.version", sp.Version))
		}
		if sp.Mesh != "" {
			attrs = append(attrs, attribute.String("istio.mesh_id", sp.Mesh))
		}
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: sp.TraceID, SpanID: sp.SpanID, TraceFlags: trace.FlagsSampled})
		var parent trace.SpanContext
		if sp.HasParent() {
			parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: sp.TraceID, SpanID: sp.ParentSpanID, TraceFlags: trace.FlagsSampled, Remote: true})
		}
		kind := trace.SpanKindServer
		if sp.Kind == spans.KindClient {
			kind = trace.SpanKindClient
		}
		var spanAttrs []attribute.KeyValue
		for _, a := range sp.Attrs {
			if a.IsInt {
				spanAttrs = append(spanAttrs, attribute.Int64(a.Key, a.Int))
			} else {
				spanAttrs = append(spanAttrs, attribute.String(a.Key, a.Str))
			}
		}
		st := sdktrace.Status{Code: codes.Unset}
		if sp.Error {
			st = sdktrace.Status{Code: codes.Error, Description: sp.StatusMessage}
		}
		out = append(out, tracetest.SpanStub{
			Name: sp.Name, SpanContext: sc, Parent: parent, SpanKind: kind,
			StartTime: sp.Start, EndTime: sp.End, Attributes: spanAttrs, Status: st,
			Resource: resource.NewSchemaless(attrs...), InstrumentationScope: scope,
		}.Snapshot())
	}
	return out
}

func mustID(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad id %q: %v", s, err)
	}
	return b
}

// TestJaegerOTLP sends requests over OTLP gRPC and OTLP HTTP to a real
// Jaeger v2 and reads every trace back from its query API: each hop is a
// span with the record's ids, kind, service, start and duration, and the
// hops of one request form one tree.
func TestJaegerOTLP(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs Jaeger (make test)")
	}
	j := harness.StartJaeger(t)
	ctx := context.Background()
	for _, proto := range []Protocol{GRPC, HTTP} {
		t.Run(string(proto), func(t *testing.T) {
			exp, err := New(ctx, Options{Protocol: proto, Endpoint: map[Protocol]string{GRPC: j.OTLPGRPC, HTTP: j.OTLPHTTP}[proto]})
			if err != nil {
				t.Fatal(err)
			}
			defer exp.Shutdown(ctx)
			g := recordtest.New("shop", map[Protocol]uint64{GRPC: 11, HTTP: 12}[proto])
			traces := map[string][]*record.Record{}
			var batch []*record.Record
			for i := 0; i < 3; i++ {
				tid, recs := g.Request([]uint32{200, 404, 503}[i])
				traces[tid] = recs
				batch = append(batch, recs...)
			}
			if err := exp.Export(ctx, batch); err != nil {
				t.Fatal(err)
			}
			for tid, recs := range traces {
				harness.Eventually(t, 30*time.Second, "trace "+tid+" in jaeger", func() error {
					got, err := j.Trace(ctx, tid)
					if err != nil {
						return err
					}
					return recordtest.CheckJaegerTree(got, recs)
				})
			}
		})
	}
}
