package sidecar

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshtrail/meshtrail/internal/otlplogs"
	"github.com/meshtrail/meshtrail/internal/record"
)

// forwarder is --forward: OTLP logs over gRPC (ExportLogsServiceRequest)
// to a meshtrail receiver. A batch counts as accepted only when the
// receiver answered; the receiver answers only once its sinks' queues
// took it. Plaintext: inside the mesh the pod's Istio sidecar wraps the
// hop in mutual TLS.
type forwarder struct {
	conn   *grpc.ClientConn
	client collogspb.LogsServiceClient
	sinks  []string
	log    *slog.Logger
}

func newForwarder(addr string, _ PodMeta, sinks []string, logger *slog.Logger) (*forwarder, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(otlplogs.MaxRequestBytes)))
	if err != nil {
		return nil, fmt.Errorf("forward %s: %w", addr, err)
	}
	return &forwarder{conn: conn, client: collogspb.NewLogsServiceClient(conn), sinks: sinks, log: logger}, nil
}

// ConsumeRecords sends recs and waits for the answer. A partial success
// comes back as a *RejectedError: the OTLP specification says the
// rejected records must not be sent again.
func (f *forwarder) ConsumeRecords(ctx context.Context, recs []*record.Record) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := f.client.Export(ctx, exportRequest(recs, f.sinks))
	if err != nil {
		return fmt.Errorf("forward: %w", err)
	}
	if ps := resp.GetPartialSuccess(); ps != nil && ps.GetRejectedLogRecords() > 0 {
		return &RejectedError{Rejected: ps.GetRejectedLogRecords(), Message: ps.GetErrorMessage()}
	}
	return nil
}

func (f *forwarder) Close() error { return f.conn.Close() }

// exportRequest groups recs by pod (one ResourceLogs each, with the
// OpenTelemetry k8s.* resource attributes) and turns each into a
// LogRecord that otlplogs.Records turns back into the same record.
func exportRequest(recs []*record.Record, sinks []string) *collogspb.ExportLogsServiceRequest {
	type podKey struct{ ns, pod, uid, container, node string }
	idx := map[podKey]*logspb.ScopeLogs{}
	req := &collogspb.ExportLogsServiceRequest{}
	for _, r := range recs {
		k := podKey{r.Node.Namespace, r.Node.Pod, r.Fields["k8s.pod.uid"], r.Fields["k8s.container.name"], r.Fields["k8s.node.name"]}
		sl := idx[k]
		if sl == nil {
			var attrs []*commonpb.KeyValue
			for _, kv := range [][2]string{{"k8s.namespace.name", k.ns}, {"k8s.pod.name", k.pod}, {"k8s.pod.uid", k.uid},
				{"k8s.container.name", k.container}, {"k8s.node.name", k.node}} {
				if kv[1] != "" {
					attrs = append(attrs, str(kv[0], kv[1]))
				}
			}
			if len(sinks) > 0 {
				attrs = append(attrs, str("meshtrail.sinks", strings.Join(sinks, ",")))
			}
			sl = &logspb.ScopeLogs{Scope: &commonpb.InstrumentationScope{Name: "meshtrail-tail"}}
			req.ResourceLogs = append(req.ResourceLogs, &logspb.ResourceLogs{
				Resource: &resourcepb.Resource{Attributes: attrs}, ScopeLogs: []*logspb.ScopeLogs{sl}})
			idx[k] = sl
		}
		sl.LogRecords = append(sl.LogRecords, logRecord(r))
	}
	return req
}

func logRecord(r *record.Record) *logspb.LogRecord {
	lr := &logspb.LogRecord{
		ObservedTimeUnixNano: uint64(r.ReceivedAt.UnixNano()),
		SeverityText:         r.Level,
		Body:                 &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: r.Message}},
	}
	if !r.StartTime.IsZero() {
		lr.TimeUnixNano = uint64(r.StartTime.UnixNano())
	}
	if id, err := hex.DecodeString(r.Trace.TraceID); err == nil && len(id) == 16 {
		lr.TraceId = id
		if sid, err := hex.DecodeString(r.Trace.SpanID); err == nil && len(sid) == 8 {
			lr.SpanId = sid
		}
		if r.Trace.Sampled != nil && *r.Trace.Sampled {
			lr.Flags = 1
		}
	}
	if r.Stream != "" {
		lr.Attributes = append(lr.Attributes, str(otlplogs.AttrFilePath, r.Stream))
	}
	if r.ID != "" {
		lr.Attributes = append(lr.Attributes, str(otlplogs.AttrLogID, r.ID))
	}
	if r.Truncated {
		lr.Attributes = append(lr.Attributes, str(otlplogs.AttrTruncated, "true"))
	}
	if r.InvalidUTF8 {
		lr.Attributes = append(lr.Attributes, str(otlplogs.AttrInvalidUTF8, "true"))
	}
	for k, v := range r.Fields {
		switch k {
		case "k8s.pod.uid", "k8s.container.name", "k8s.node.name":
			continue // resource attributes
		}
		lr.Attributes = append(lr.Attributes, str(k, v))
	}
	return lr
}

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}
