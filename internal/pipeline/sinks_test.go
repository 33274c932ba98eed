package pipeline

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/config"
	"github.com/meshtrail/meshtrail/test/harness"
)

func TestExampleParsesAndValidates(t *testing.T) {
	var file struct {
		Sinks Sinks `json:"sinks"`
	}
	if err := config.Load(filepath.Join(harness.RepoRoot(t), "als", "examples", "sinks.yaml"), &file); err != nil {
		t.Fatal(err)
	}
	c := &file.Sinks
	for name, on := range map[string]bool{
		"otlp": c.OTLP != nil && c.OTLP.Enabled, "zipkin": c.Zipkin != nil && c.Zipkin.Enabled,
		"loki": c.Loki != nil && c.Loki.Enabled, "elasticsearch": c.Elasticsearch != nil && c.Elasticsearch.Enabled,
		"fluentd": c.Fluentd != nil && c.Fluentd.Enabled, "prometheus_remote_write": c.RemoteWrite != nil && c.RemoteWrite.Enabled,
	} {
		if !on {
			t.Errorf("als/examples/sinks.yaml does not enable %s", name)
		}
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Loki.Queue.Disk.Dir == "" || c.Elasticsearch.Auth.PasswordEnv != "ZINC_PASSWORD" {
		t.Errorf("nested fields not read: %+v", c.Loki.Queue)
	}
}

func TestUnknownSinkFieldIsNamedWithItsLine(t *testing.T) {
	_, err := parse("sinks:\n  loki: {enabled: true, url: http://x}\n  lokki: {enabled: true}\n")
	if err == nil || !strings.Contains(err.Error(), `line 3: unknown setting "lokki"`) {
		t.Errorf("misspelt sink: %v", err)
	}
	_, err = parse("sinks:\n  loki:\n    enabled: true\n    ulr: http://x\n")
	if err == nil || !strings.Contains(err.Error(), `line 4: unknown setting "ulr"`) {
		t.Errorf("misspelt field: %v", err)
	}
}

// parse reads a document holding a sinks: section, as the loader does.
func parse(doc string) (*Sinks, error) {
	var file struct {
		Sinks Sinks `json:"sinks"`
	}
	if err := config.Parse("test.yaml", []byte(doc), &file); err != nil {
		return nil, err
	}
	return &file.Sinks, nil
}

func TestValidateNamesFields(t *testing.T) {
	neg := -1
	c, err := parse(string(`sinks:
  otlp: {enabled: true, protocol: quic, endpoint: "nohostport"}
  zipkin: {enabled: true, url: "ftp://x"}
  loki: {enabled: true, url: "http://x", extra_labels: {trace_id: "a", "bad-name": "b"}}
  elasticsearch: {enabled: true, url: "http://x", index: "Big*", auth: {username: u}}
  fluentd: {enabled: true}
  prometheus_remote_write: {enabled: false}
`))
	if err != nil {
		t.Fatal(err)
	}
	c.Loki.Queue.Memory.Records = &neg
	err = c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"sinks.otlp.protocol", "sinks.otlp.endpoint", "sinks.zipkin.url", `sinks.loki.extra_labels: "trace_id"`,
		`sinks.loki.extra_labels: "bad-name"`, "sinks.loki.queue.memory.records", "sinks.elasticsearch.index",
		"sinks.elasticsearch.auth", "sinks.fluentd.address",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
}

// A secret that cannot be read is named under its sink's section, by the
// variable that is missing, never by its value.
func TestBuildNamesTheMissingSecret(t *testing.T) {
	c, err := parse("sinks:\n  elasticsearch: {enabled: true, url: \"http://127.0.0.1:1\", auth: {username: u, password_env: MT_UNSET_VAR}}\n")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Build(c, prometheus.NewRegistry(), nil)
	if err == nil || !strings.Contains(err.Error(), "sinks.elasticsearch.auth.password_env: environment variable MT_UNSET_VAR is not set") {
		t.Fatalf("got %v", err)
	}
}

func TestBuildWrapsEachExporterInAQueue(t *testing.T) {
	c, err := parse(string(`sinks:
  otlp: {enabled: true, endpoint: "127.0.0.1:1"}
  zipkin: {enabled: true, url: "http://127.0.0.1:1/api/v2/spans"}
  loki: {enabled: true, url: "http://127.0.0.1:1/loki/api/v1/push"}
  elasticsearch: {enabled: true, url: "http://127.0.0.1:1"}
  fluentd: {enabled: true, address: "127.0.0.1:1"}
  prometheus_remote_write: {enabled: true, url: "http://127.0.0.1:1/api/v1/write"}
`))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	sinks, shutdown, err := Build(c, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range sinks {
		names = append(names, s.Name())
	}
	// Remote write is no queued sink: NewRemoteWrite builds its pusher.
	if got := strings.Join(names, ","); got != "otlp,zipkin,loki,elasticsearch,fluentd" {
		t.Errorf("sinks %s", got)
	}
	p, err := NewRemoteWrite(c, prometheus.NewRegistry(), reg, nil)
	if err != nil || p == nil {
		t.Errorf("NewRemoteWrite: %v, %v", p, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // nothing is reachable: shut down at once, persisting nothing (memory only)
	_ = shutdown(ctx)
}
