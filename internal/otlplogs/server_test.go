package otlplogs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrail/meshtrail/internal/record"
)

// sink collects what it accepts; while failing is set it refuses.
type sink struct {
	mu      sync.Mutex
	recs    []*record.Record
	failing bool
}

func (s *sink) ConsumeRecords(_ context.Context, recs []*record.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing {
		return errors.New("queue full")
	}
	s.recs = append(s.recs, recs...)
	return nil
}

func kv(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func request() *collogspb.ExportLogsServiceRequest {
	tid := []byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	return &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			kv("k8s.namespace.name", "shop"), kv("k8s.pod.name", "cart-7d9-x"), kv("k8s.deployment.name", "cart"), kv("k8s.container.name", "api")}},
		ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{
			{TimeUnixNano: uint64(time.Date(2026, 12, 2, 21, 0, 0, 0, time.UTC).UnixNano()), SeverityNumber: logspb.SeverityNumber_SEVERITY_NUMBER_ERROR,
				Body:    &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "payment failed"}},
				TraceId: tid, SpanId: []byte{0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}, Flags: 1,
				Attributes: []*commonpb.KeyValue{kv("order", "42"), kv(AttrLogID, "abc-7"), kv(AttrFilePath, "/var/log/app/app.log")}},
			{SeverityText: "WARN", Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 7}},
				TraceId: make([]byte, 16), SpanId: []byte{1}}, // all-zero / short ids: invalid, dropped
		}}},
	}}}
}

func checkConverted(t *testing.T, recs []*record.Record) {
	t.Helper()
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	r := recs[0]
	if r.Kind != record.KindLog || r.Message != "payment failed" || r.Level != "error" ||
		r.Trace.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || r.Trace.SpanID != "00f067aa0ba902b7" || r.Trace.Sampled == nil ||
		r.Node.Namespace != "shop" || r.Node.Pod != "cart-7d9-x" || r.Node.Workload != "cart" ||
		r.Fields["k8s.container.name"] != "api" || r.Fields["order"] != "42" || r.ID != "abc-7" || r.Stream != "/var/log/app/app.log" ||
		!r.StartTime.Equal(time.Date(2026, 12, 2, 21, 0, 0, 0, time.UTC)) {
		t.Errorf("converted: %+v", r)
	}
	if r2 := recs[1]; r2.Message != "7" || r2.Level != "warn" || r2.Trace.TraceID != "" || r2.Trace.SpanID != "" {
		t.Errorf("second: %+v", r2)
	}
}

func TestGRPCAndHTTPAnswerAfterTheConsumer(t *testing.T) {
	s := &sink{}
	srv, err := Listen("127.0.0.1:0", s, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())

	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := collogspb.NewLogsServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.Export(ctx, request()); err != nil {
		t.Fatal(err)
	}
	checkConverted(t, s.recs)

	body, _ := proto.Marshal(request())
	post := func() *http.Response {
		resp, err := http.Post("http://"+srv.Addr()+"/v1/logs", "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := post(); resp.StatusCode != 200 {
		t.Fatalf("HTTP status %d", resp.StatusCode)
	}
	checkConverted(t, s.recs[2:])

	// Sinks refusing: a retryable error on both protocols, nothing kept.
	s.failing = true
	_, err = client.Export(ctx, request())
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("gRPC with refusing sinks: %v, want UNAVAILABLE", err)
	}
	if resp := post(); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("HTTP with refusing sinks: %d, want 503", resp.StatusCode)
	}
	// Garbage is a 400 naming the message.
	resp, err := http.Post("http://"+srv.Addr()+"/v1/logs", "application/x-protobuf", bytes.NewReader([]byte{0xff, 0xff, 0xff}))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !bytes.Contains(msg, []byte("ExportLogsServiceRequest")) {
		t.Fatalf("garbage: %d %s", resp.StatusCode, msg)
	}
	if len(s.recs) != 4 {
		t.Fatalf("%d records kept, want 4", len(s.recs))
	}
}
