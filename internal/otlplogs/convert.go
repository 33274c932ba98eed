// Package otlplogs is meshtrail's OTLP logs listener: the gRPC LogsService
// and the OTLP/HTTP protobuf endpoint (POST /v1/logs). It turns each
// LogRecord into a record of kind log (trace and span ids from the
// LogRecord's own fields, severity, body, attributes, k8s.* resource
// attributes into the record's workload fields) and answers only after
// its consumer accepted the batch, so a sender (meshtrail tail --forward,
// an OpenTelemetry SDK or Collector) can hold its position until then. A
// consumer error is answered with a retryable status (gRPC UNAVAILABLE,
// HTTP 503), as the OTLP specification asks of a receiver that could not
// take the data for a transient reason.
package otlplogs

import (
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"

	"github.com/meshtrail/meshtrail/internal/record"
)

// Attribute names meshtrail's tail agent sets beside the OpenTelemetry
// semantic conventions, so a forwarded line keeps its stable id and flags.
const (
	AttrLogID       = "meshtrail.log_id"
	AttrTruncated   = "meshtrail.truncated"
	AttrInvalidUTF8 = "meshtrail.invalid_utf8"
	AttrFilePath    = "log.file.path" // OpenTelemetry semantic convention
	AttrIOStream    = "log.iostream"  // stdout/stderr (semantic convention)
)

// Records converts a request. now stamps ReceivedAt.
func Records(req *collogspb.ExportLogsServiceRequest, now time.Time) []*record.Record {
	n := 0
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			n += len(sl.GetLogRecords())
		}
	}
	out := make([]*record.Record, 0, n)
	block := make([]record.Record, n)
	for _, rl := range req.GetResourceLogs() {
		var res resource
		for _, kv := range rl.GetResource().GetAttributes() {
			res.set(kv.GetKey(), text(kv.GetValue()))
		}
		for _, sl := range rl.GetScopeLogs() {
			for _, lr := range sl.GetLogRecords() {
				r := &block[len(out)]
				convert(lr, &res, r, now)
				out = append(out, r)
			}
		}
	}
	return out
}

// resource holds the k8s.* attributes a record's workload fields take.
type resource struct {
	node   record.Node
	fields map[string]string
}

func (res *resource) set(k, v string) {
	switch k {
	case "k8s.namespace.name":
		res.node.Namespace = v
	case "k8s.pod.name":
		res.node.Pod = v
	case "k8s.deployment.name", "k8s.statefulset.name", "k8s.daemonset.name", "k8s.job.name":
		res.node.Workload = v
	case "service.name":
		if res.node.Workload == "" {
			res.node.Workload = v
		}
	case "k8s.cluster.name":
		res.node.ClusterID = v
	case "host.ip", "k8s.pod.ip":
		res.node.IP = v
	}
	if k == "k8s.namespace.name" || k == "k8s.pod.name" {
		return // the record's node fields
	}
	if strings.HasPrefix(k, "k8s.") || k == "service.name" || k == "service.namespace" {
		if res.fields == nil {
			res.fields = map[string]string{}
		}
		res.fields[k] = v
	}
}

func convert(lr *logspb.LogRecord, res *resource, r *record.Record, now time.Time) {
	r.Kind, r.ReceivedAt, r.Node = record.KindLog, now, res.node
	if t := lr.GetTimeUnixNano(); t != 0 {
		r.StartTime = time.Unix(0, int64(t)).UTC()
	} else if t := lr.GetObservedTimeUnixNano(); t != 0 {
		r.StartTime = time.Unix(0, int64(t)).UTC()
	}
	r.Level = strings.ToLower(lr.GetSeverityText())
	if r.Level == "" {
		r.Level = severityLevel(lr.GetSeverityNumber())
	}
	r.Message = text(lr.GetBody())
	// Ids of the wrong length or all zeros are invalid (OTLP spec); the
	// record is kept without them.
	if id := lr.GetTraceId(); len(id) == 16 && !allZero(id) {
		r.Trace.TraceID, r.Trace.Source = hex.EncodeToString(id), "otlp"
		if sid := lr.GetSpanId(); len(sid) == 8 && !allZero(sid) {
			r.Trace.SpanID = hex.EncodeToString(sid)
		}
		if lr.GetFlags()&0x1 != 0 {
			yes := true
			r.Trace.Sampled = &yes
		}
	}
	fields := make(map[string]string, len(res.fields)+len(lr.GetAttributes()))
	for k, v := range res.fields {
		fields[k] = v
	}
	for _, kv := range lr.GetAttributes() {
		k, v := kv.GetKey(), text(kv.GetValue())
		switch k {
		case AttrLogID:
			r.ID = v
		case AttrTruncated:
			r.Truncated = v == "true"
		case AttrInvalidUTF8:
			r.InvalidUTF8 = v == "true"
		case AttrFilePath, AttrIOStream:
			if r.Stream == "" || k == AttrIOStream {
				r.Stream = v
			}
		default:
			fields[k] = v
		}
	}
	if n := lr.GetEventName(); n != "" {
		fields["event.name"] = n
	}
	if len(fields) > 0 {
		r.Fields = fields
	}
}

// severityLevel names an OTLP SeverityNumber's range (logs data model:
// 1-4 TRACE, 5-8 DEBUG, 9-12 INFO, 13-16 WARN, 17-20 ERROR, 21-24 FATAL).
func severityLevel(n logspb.SeverityNumber) string {
	switch {
	case n <= 0:
		return ""
	case n <= 4:
		return "trace"
	case n <= 8:
		return "debug"
	case n <= 12:
		return "info"
	case n <= 16:
		return "warn"
	case n <= 20:
		return "error"
	default:
		return "fatal"
	}
}

// text renders an AnyValue: strings as they are, the rest as JSON.
func text(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case nil:
		return ""
	case *commonpb.AnyValue_StringValue:
		if !utf8.ValidString(x.StringValue) {
			return strings.ToValidUTF8(x.StringValue, "\uFFFD")
		}
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		return hex.EncodeToString(x.BytesValue)
	}
	b, _ := json.Marshal(jsonValue(v))
	return string(b)
}

func jsonValue(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_ArrayValue:
		out := make([]any, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			out = append(out, jsonValue(e))
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		out := make(map[string]any, len(x.KvlistValue.GetValues()))
		for _, kv := range x.KvlistValue.GetValues() {
			out[kv.GetKey()] = jsonValue(kv.GetValue())
		}
		return out
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	}
	return text(v)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
