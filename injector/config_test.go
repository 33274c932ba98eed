package injector

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{
		"20MiB/s": 20 << 20, "500KB/s": 500e3, "1.5GiB/s": 1.5 * (1 << 30), "1048576": 1 << 20, " 2Mi/s ": 2 << 20, "0/s": 0,
	} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fast", "MiB/s", "20 parsecs/s", "-1MiB/s", "1..2MiB/s"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
	if got := formatRate(20 << 20); got != "20MiB/s" {
		t.Errorf("formatRate = %s", got)
	}
}

func TestValidateNamesEveryBadField(t *testing.T) {
	c := DefaultConfig()
	c.Listen, c.Threshold, c.Mode, c.KubernetesVersion = "", "lots", "sometimes", "one"
	c.Sidecar.Image, c.Sidecar.ImagePullPolicy, c.Sidecar.Parsers = "", "Often", nil
	c.Sidecar.MemoryLimit, c.Sidecar.DefaultSinks, c.Sidecar.Sinks = "much", []string{"kafka"}, []string{"loki"}
	c.Sidecar.DrainSeconds, c.Sidecar.RunAsUser = -1, 0
	c.ShutdownDelay.Duration = -time.Second
	err := c.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, field := range []string{"listen:", "tlsCert:", "tlsKey:", "threshold:", "mode:", "kubernetesVersion:", "sidecar.image:",
		"sidecar.imagePullPolicy:", "sidecar.parsers:", "sidecar.memoryLimit:", "sidecar.defaultSinks:", "sidecar.drainSeconds:", "sidecar.runAsUser:", "shutdownDelay:"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("no %s in:\n%v", field, err)
		}
	}
	good := testConfig()
	if err := good.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "inject.yaml")
	os.WriteFile(p, []byte("threshold: 10MiB/s\nmode: native\nstrict: true\nsidecar:\n  image: r/m:1\n  sinks: [loki]\n"), 0o600)
	c, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Threshold != "10MiB/s" || c.Mode != ModeNative || !c.Strict || c.Sidecar.Image != "r/m:1" || c.Sidecar.MemoryLimit != "256Mi" {
		t.Fatalf("%+v", c)
	}
	os.WriteFile(p, []byte("treshold: 10MiB/s\n"), 0o600)
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), "treshold") {
		t.Fatalf("unknown field: %v", err)
	}
}

func TestResolveMode(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	ver := func(v string, err error) func(context.Context) (string, error) {
		return func(context.Context) (string, error) { return v, err }
	}
	for _, tc := range []struct {
		kv       string
		discover func(context.Context) (string, error)
		want     SidecarMode
	}{
		{"", ver("v1.34.4", nil), ModeNative},
		{"", ver("v1.29.0-gke.1", nil), ModeNative},
		{"", ver("v1.28.9", nil), ModeRegular},
		{"", ver("", errors.New("unreachable")), ModeRegular},
		{"", nil, ModeRegular},
		{"1.33", ver("v1.20.0", nil), ModeNative},
		{"1.27", nil, ModeRegular},
	} {
		cfg.KubernetesVersion = tc.kv
		if got, why := ResolveMode(ctx, cfg, tc.discover); got != tc.want {
			t.Errorf("kv=%q: %s (%s), want %s", tc.kv, got, why, tc.want)
		}
	}
	cfg.Mode = ModeRegular
	if got, _ := ResolveMode(ctx, cfg, ver("v1.34.0", nil)); got != ModeRegular {
		t.Errorf("explicit mode overridden")
	}
}
