package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/meshtrail/meshtrail/internal/config"
)

// The example file documents every field with its default: loading it must
// give exactly DefaultConfig, so the two cannot drift apart.
func TestExampleConfigIsTheDefaults(t *testing.T) {
	var cfg alsFile
	if err := config.Load(filepath.Join("..", "..", "als", "examples", "als.yaml"), &cfg); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, alsDefaults()) {
		t.Fatalf("als/examples/als.yaml differs from the defaults:\n file %+v\n code %+v", cfg, alsDefaults())
	}
}

// A file that sets the pipeline's keys and the receiver's reaches both
// halves; a key neither knows is named.
func TestALSFileFillsReceiverAndPipeline(t *testing.T) {
	p := filepath.Join(t.TempDir(), "als.yaml")
	doc := "listen: 0.0.0.0:18000\nout: /var/log/records.ndjson\nmetrics:\n  prefix: istio_\ngrpc:\n  max_streams: 7\n"
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := alsDefaults()
	if err := config.Load(p, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "0.0.0.0:18000" || cfg.GRPC.MaxStreams != 7 || cfg.Pipeline.Out != "/var/log/records.ndjson" || cfg.Pipeline.Metrics.Prefix != "istio_" {
		t.Fatalf("loaded %+v", cfg)
	}
	if cfg.Pipeline.OutRotation.MaxSizeMB != 100 {
		t.Errorf("out_rotation lost its default: %+v", cfg.Pipeline.OutRotation)
	}
	if err := os.WriteFile(p, []byte("listen: 127.0.0.1:1\nsinkz: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := config.Load(p, &cfg); err == nil || !strings.Contains(err.Error(), `line 2: unknown setting "sinkz"`) {
		t.Fatalf("got %v, want the unknown key named with its line", err)
	}
}

func TestPipelineValidationNamesTheField(t *testing.T) {
	for field, mutate := range map[string]func(*alsFile){
		"metrics.prefix":           func(c *alsFile) { c.Pipeline.Metrics.Prefix = "9bad-" },
		"out_rotation.max_size_mb": func(c *alsFile) { c.Pipeline.Out = "/tmp/x"; c.Pipeline.OutRotation.MaxSizeMB = 0 },
		"listen":                   func(c *alsFile) { c.Listen = "" },
	} {
		c := alsDefaults()
		mutate(&c)
		if err := c.validate(); err == nil || !strings.HasPrefix(err.Error(), field+":") {
			t.Errorf("%s: got %v, want an error naming the field", field, err)
		}
	}
}

func TestConfigFileTypoIsNamed(t *testing.T) {
	p := filepath.Join(t.TempDir(), "als.yaml")
	if err := os.WriteFile(p, []byte("listen: 127.0.0.1:1\ngrpc:\n  max_stream: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := alsDefaults()
	err := config.Load(p, &cfg)
	if err == nil || !strings.Contains(err.Error(), "max_stream") {
		t.Fatalf("got %v, want an error naming the unknown field max_stream", err)
	}
}

func TestSinksSectionIsValidatedAtStart(t *testing.T) {
	cases := map[string]string{
		"sinks:\n  lokki:\n    enabled: true\n":                                                             `line 2: unknown setting "lokki"`,
		"sinks:\n  loki:\n    enabled: true\n    urll: http://x\n":                                          "urll",
		"sinks:\n  loki:\n    enabled: true\n":                                                              "sinks.loki.url",
		"sinks:\n  otlp:\n    enabled: true\n    endpoint: 127.0.0.1:4317\n    queue:\n      workers: -1\n": "workers",
	}
	for doc, want := range cases {
		p := filepath.Join(t.TempDir(), "als.yaml")
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := alsDefaults()
		err := config.Load(p, &cfg)
		if err == nil {
			err = cfg.validate()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error naming %s", doc, err, want)
		}
	}
}

func TestRoutingIsValidatedAgainstTheEnabledSinks(t *testing.T) {
	sinks := "sinks:\n  loki:\n    enabled: true\n    url: http://127.0.0.1:3100/loki/api/v1/push\n  otlp:\n    enabled: true\n    endpoint: 127.0.0.1:4317\n"
	cases := map[string]string{
		"routing:\n  default_sinks: [loki]\n":                                                                         "routing: routes records between sinks",
		sinks + "routing:\n  routes:\n  - namespaces: [payments]\n    sinks: [jaeger]\n":                              `routing.routes[0].sinks: unknown sink "jaeger"`,
		sinks + "routing:\n  tenant: {from: label}\n":                                                                 "routing.tenant.from",
		sinks + "routing:\n  routes:\n  - namespaces: [payments]\n    sinks: [otlp, loki]\n  default_sinks: [loki]\n": "",
	}
	for doc, want := range cases {
		p := filepath.Join(t.TempDir(), "als.yaml")
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := alsDefaults()
		err := config.Load(p, &cfg)
		if err == nil {
			err = cfg.validate()
		}
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v, want it valid (sinks are named after their sections)", doc, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: got %v, want an error containing %q", doc, err, want)
		}
	}
}
