package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Jaeger is a real Jaeger v2 (test/tools/jaeger.sh) with in-memory storage,
// receiving OTLP over gRPC and HTTP and Zipkin v2 JSON, queried over its
// HTTP query API.
type Jaeger struct {
	OTLPGRPC string // host:port
	OTLPHTTP string // host:port (POST /v1/traces)
	Zipkin   string // host:port (POST /api/v2/spans)
	QueryURL string // http://host:port of the query service
	Process  *Process
}

// StartJaeger starts Jaeger on free loopback ports and waits until its
// receivers and query API answer.
func StartJaeger(t testing.TB) *Jaeger {
	t.Helper()
	bin := Tool(t, "jaeger")
	dir := t.TempDir()
	j := &Jaeger{OTLPGRPC: FreeAddr(t), OTLPHTTP: FreeAddr(t), Zipkin: FreeAddr(t)}
	query, queryGRPC, health := FreeAddr(t), FreeAddr(t), FreeAddr(t)
	j.QueryURL = "http://" + query
	cfg := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp, zipkin]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  healthcheckv2:
    use_v2: true
    http:
      endpoint: %s
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
  zipkin:
    endpoint: %s
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`, query, queryGRPC, health, j.OTLPGRPC, j.OTLPHTTP, j.Zipkin)
	cfgPath := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	j.Process = Start(t, "jaeger", nil, bin, "--config="+cfgPath)
	WaitHTTP(t, j.Process, j.QueryURL+"/api/services", 60*time.Second)
	for _, a := range []string{j.OTLPGRPC, j.OTLPHTTP, j.Zipkin} {
		WaitTCP(t, j.Process, a, 60*time.Second)
	}
	return j
}

// JaegerSpan is one span of a trace as Jaeger's query API returns it, with
// the process resolved to its service name and tags flattened.
type JaegerSpan struct {
	TraceID       string
	SpanID        string
	ParentSpanID  string // from the CHILD_OF reference; "" for a root
	OperationName string
	Service       string
	StartTime     time.Time
	Duration      time.Duration
	Tags          map[string]string
}

// Trace returns the spans of traceID (32 hex) from /api/traces/{id}; an
// unknown trace is an error, so it can be polled with Eventually.
func (j *Jaeger) Trace(ctx context.Context, traceID string) ([]JaegerSpan, error) {
	var out struct {
		Data []struct {
			Spans []struct {
				TraceID       string `json:"traceID"`
				SpanID        string `json:"spanID"`
				OperationName string `json:"operationName"`
				References    []struct {
					RefType string `json:"refType"`
					SpanID  string `json:"spanID"`
				} `json:"references"`
				StartTime int64 `json:"startTime"` // µs since epoch
				Duration  int64 `json:"duration"`  // µs
				Tags      []struct {
					Key   string `json:"key"`
					Value any    `json:"value"`
				} `json:"tags"`
				ProcessID string `json:"processID"`
			} `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		} `json:"data"`
	}
	if err := GetJSON(ctx, j.QueryURL+"/api/traces/"+traceID, &out); err != nil {
		return nil, err
	}
	if len(out.Data) == 0 {
		return nil, fmt.Errorf("jaeger: trace %s not found", traceID)
	}
	var spans []JaegerSpan
	for _, tr := range out.Data {
		for _, s := range tr.Spans {
			js := JaegerSpan{
				TraceID: s.TraceID, SpanID: s.SpanID, OperationName: s.OperationName,
				Service:   tr.Processes[s.ProcessID].ServiceName,
				StartTime: time.UnixMicro(s.StartTime), Duration: time.Duration(s.Duration) * time.Microsecond,
				Tags: map[string]string{},
			}
			for _, r := range s.References {
				if r.RefType == "CHILD_OF" {
					js.ParentSpanID = r.SpanID
				}
			}
			for _, tg := range s.Tags {
				js.Tags[tg.Key] = fmt.Sprint(tg.Value)
			}
			spans = append(spans, js)
		}
	}
	return spans, nil
}
