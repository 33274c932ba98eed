package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Otelcol is the OpenTelemetry Collector built by test/tools/otelcol.sh, started
// with every receiver on its own free loopback port and file exporters
// writing OTLP JSON lines (one ExportRequest per line) under Dir.
type Otelcol struct {
	OTLPGRPC string // host:port, OTLP gRPC receiver
	OTLPHTTP string // host:port, OTLP HTTP receiver
	Forward  string // host:port, fluentforward receiver (Fluentd forward protocol)
	Zipkin   string // host:port, zipkin receiver (POST /api/v2/spans)
	EnvoyALS string // host:port, envoyals receiver (Envoy gRPC access log service)
	// Prometheus is the host:port where the prometheus exporter serves the
	// metrics pipeline.
	Prometheus string

	Dir         string
	TracesFile  string
	LogsFile    string
	MetricsFile string
	Process     *Process

	bin, cfgPath string
}

// StartOtelcol starts the collector and waits until its receivers listen.
func StartOtelcol(t testing.TB) *Otelcol {
	t.Helper()
	bin := Tool(t, "otelcol")
	dir := t.TempDir()
	c := &Otelcol{
		OTLPGRPC: FreeAddr(t), OTLPHTTP: FreeAddr(t), Forward: FreeAddr(t),
		Zipkin: FreeAddr(t), EnvoyALS: FreeAddr(t), Prometheus: FreeAddr(t),
		Dir:         dir,
		TracesFile:  filepath.Join(dir, "traces.jsonl"),
		LogsFile:    filepath.Join(dir, "logs.jsonl"),
		MetricsFile: filepath.Join(dir, "metrics.jsonl"),
	}
	telemetry := FreeAddr(t)
	thost, tport := splitHostPort(t, telemetry)
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
  fluentforward:
    endpoint: %s
  zipkin:
    endpoint: %s
  envoyals:
    endpoint: %s
processors:
  batch:
    timeout: 100ms
exporters:
  debug:
    verbosity: basic
  file/traces:
    path: %s
    append: true
    flush_interval: 100ms
  file/logs:
    path: %s
    append: true
    flush_interval: 100ms
  file/metrics:
    path: %s
    append: true
    flush_interval: 100ms
  prometheus:
    endpoint: %s
service:
  telemetry:
    logs:
      level: info
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: %s
                port: %s
  pipelines:
    traces:
      receivers: [otlp, zipkin]
      processors: [batch]
      exporters: [debug, file/traces]
    logs:
      receivers: [otlp, fluentforward, envoyals]
      processors: [batch]
      exporters: [debug, file/logs]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [prometheus, file/metrics]
`, c.OTLPGRPC, c.OTLPHTTP, c.Forward, c.Zipkin, c.EnvoyALS,
		c.TracesFile, c.LogsFile, c.MetricsFile, c.Prometheus, thost, tport)
	cfgPath := filepath.Join(dir, "otelcol.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c.bin, c.cfgPath = bin, cfgPath
	c.Process = Start(t, "otelcol", nil, bin, "--config="+cfgPath)
	c.wait(t)
	return c
}

func (c *Otelcol) wait(t testing.TB) {
	for _, a := range []string{c.OTLPGRPC, c.OTLPHTTP, c.Forward, c.Zipkin, c.EnvoyALS} {
		WaitTCP(t, c.Process, a, 60*time.Second)
	}
}

// Stop stops the collector; its output files stay (and are appended to
// after Restart).
func (c *Otelcol) Stop() { c.Process.Stop() }

// Restart starts the collector again on the same ports and files.
func (c *Otelcol) Restart(t testing.TB) {
	t.Helper()
	c.Process.Stop()
	c.Process = Start(t, "otelcol-restarted", nil, c.bin, "--config="+c.cfgPath)
	c.wait(t)
}

// OTLPLogRecord is one log record from the file exporter's OTLP JSON, with
// its resource and attributes flattened to strings.
type OTLPLogRecord struct {
	Resource     map[string]string
	Attributes   map[string]string
	Body         string
	TimeUnixNano string
}

// ReadLogs parses every log record the logs file exporter has written so
// far. A missing file yields no records.
func (c *Otelcol) ReadLogs() ([]OTLPLogRecord, error) {
	data, err := os.ReadFile(c.LogsFile)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []OTLPLogRecord
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var req struct {
			ResourceLogs []struct {
				Resource struct {
					Attributes []otlpKV `json:"attributes"`
				} `json:"resource"`
				ScopeLogs []struct {
					LogRecords []struct {
						TimeUnixNano string    `json:"timeUnixNano"`
						Body         otlpValue `json:"body"`
						Attributes   []otlpKV  `json:"attributes"`
					} `json:"logRecords"`
				} `json:"scopeLogs"`
			} `json:"resourceLogs"`
		}
		if err := json.Unmarshal(line, &req); err != nil {
			// The exporter may be mid-write of the last line.
			continue
		}
		for _, rl := range req.ResourceLogs {
			res := flattenKV(rl.Resource.Attributes)
			for _, sl := range rl.ScopeLogs {
				for _, lr := range sl.LogRecords {
					out = append(out, OTLPLogRecord{
						Resource: res, Attributes: flattenKV(lr.Attributes),
						Body: lr.Body.String(), TimeUnixNano: lr.TimeUnixNano,
					})
				}
			}
		}
	}
	return out, sc.Err()
}

type otlpKV struct {
	Key   string    `json:"key"`
	Value otlpValue `json:"value"`
}

type otlpValue struct {
	StringValue *string         `json:"stringValue"`
	IntValue    *string         `json:"intValue"`
	DoubleValue *float64        `json:"doubleValue"`
	BoolValue   *bool           `json:"boolValue"`
	Other       json.RawMessage `json:"kvlistValue"`
}

func (v otlpValue) String() string {
	switch {
	case v.StringValue != nil:
		return *v.StringValue
	case v.IntValue != nil:
		return *v.IntValue
	case v.DoubleValue != nil:
		return fmt.Sprint(*v.DoubleValue)
	case v.BoolValue != nil:
		return fmt.Sprint(*v.BoolValue)
	case v.Other != nil:
		return string(v.Other)
	}
	return ""
}

func flattenKV(kvs []otlpKV) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value.String()
	}
	return m
}
