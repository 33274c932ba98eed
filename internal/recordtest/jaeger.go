package recordtest

import (
	"fmt"
	"time"

	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/test/harness"
)

// CheckJaegerTree compares the spans Jaeger returned for one trace with the
// records that produced them: one span per access record, with the
// record's span and parent ids, the kind its reporter implies, the
// workload as service, and the record's start time and duration. It also
// checks the spans form a single tree (one root, every parent present).
func CheckJaegerTree(got []harness.JaegerSpan, recs []*record.Record) error {
	byID := make(map[string]harness.JaegerSpan, len(got))
	for _, s := range got {
		byID[s.SpanID] = s
	}
	want := 0
	for _, r := range recs {
		if r.Kind != record.KindHTTP && r.Kind != record.KindTCP {
			continue
		}
		want++
		s, ok := byID[r.Trace.SpanID]
		if !ok {
			return fmt.Errorf("span %s (%s %s) missing from %d spans", r.Trace.SpanID, r.Reporter, r.Destination.Name, len(got))
		}
		if s.ParentSpanID != r.Trace.ParentSpanID {
			return fmt.Errorf("span %s: parent %q, want %q", s.SpanID, s.ParentSpanID, r.Trace.ParentSpanID)
		}
		kind, svc := "server", r.Destination.CanonicalService
		if r.Reporter == record.ReporterSource {
			kind, svc = "client", r.Source.CanonicalService
		}
		if s.Tags["span.kind"] != kind {
			return fmt.Errorf("span %s: kind %q, want %q", s.SpanID, s.Tags["span.kind"], kind)
		}
		if s.Service != svc {
			return fmt.Errorf("span %s: service %q, want %q", s.SpanID, s.Service, svc)
		}
		if !s.StartTime.Equal(r.StartTime.Truncate(time.Microsecond)) {
			return fmt.Errorf("span %s: start %v, want %v", s.SpanID, s.StartTime, r.StartTime)
		}
		if s.Duration != r.Timings.Total.Truncate(time.Microsecond) {
			return fmt.Errorf("span %s: duration %v, want %v", s.SpanID, s.Duration, r.Timings.Total)
		}
		if m := r.HTTP.Method; m != "" && s.Tags["http.request.method"] != m {
			return fmt.Errorf("span %s: http.request.method %q, want %q", s.SpanID, s.Tags["http.request.method"], m)
		}
		if code := r.HTTP.ResponseCode; code >= 500 && s.Tags["error"] != "true" && s.Tags["otel.status_code"] != "ERROR" {
			return fmt.Errorf("span %s: HTTP %d not marked as error: tags %v", s.SpanID, code, s.Tags)
		}
	}
	if len(got) != want {
		return fmt.Errorf("%d spans, want %d", len(got), want)
	}
	roots := 0
	for _, s := range got {
		if s.ParentSpanID == "" {
			roots++
		} else if _, ok := byID[s.ParentSpanID]; !ok {
			return fmt.Errorf("span %s: parent %s not in the trace", s.SpanID, s.ParentSpanID)
		}
	}
	if roots != 1 {
		return fmt.Errorf("%d root spans, want 1", roots)
	}
	return nil
}
