package als

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
	cfg := DefaultConfig()
	cfg.Listen = ""
	if err := config.Load(filepath.Join("examples", "als.yaml"), &cfg); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, DefaultConfig()) {
		t.Fatalf("als/examples/als.yaml differs from DefaultConfig:\n file %+v\n code %+v", cfg, DefaultConfig())
	}
}

func TestConfigFileTypoIsNamed(t *testing.T) {
	p := filepath.Join(t.TempDir(), "als.yaml")
	if err := os.WriteFile(p, []byte("listen: 127.0.0.1:1\ngrpc:\n  max_stream: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	err := config.Load(p, &cfg)
	if err == nil || !strings.Contains(err.Error(), "max_stream") {
		t.Fatalf("got %v, want an error naming the unknown field max_stream", err)
	}
}

func TestSinksSectionIsValidatedAtStart(t *testing.T) {
	cases := map[string]string{
		"sinks:\n  lokki:\n    enabled: true\n":                                                             "sinks.lokki",
		"sinks:\n  loki:\n    enabled: true\n    urll: http://x\n":                                          "urll",
		"sinks:\n  loki:\n    enabled: true\n":                                                              "sinks.loki.url",
		"sinks:\n  otlp:\n    enabled: true\n    endpoint: 127.0.0.1:4317\n    queue:\n      workers: -1\n": "workers",
	}
	for doc, want := range cases {
		p := filepath.Join(t.TempDir(), "als.yaml")
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := DefaultConfig()
		err := config.Load(p, &cfg)
		if err == nil {
			err = cfg.Validate()
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
		cfg := DefaultConfig()
		err := config.Load(p, &cfg)
		if err == nil {
			err = cfg.Validate()
		}
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v, want it valid (sinks are named after their sections)", doc, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: got %v, want an error containing %q", doc, err, want)
		}
	}
}
