package chart

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/meshtrail/meshtrail/test/harness"
)

func dashboardFiles(t testing.TB) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(chartDir(t), "dashboards", "*.json"))
	if len(files) < 3 {
		t.Fatalf("dashboards in the chart: %v (make dashboards)", files)
	}
	return files
}

// The JSON in the chart is what charts/dashboards generates today.
func TestDashboardsUpToDate(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command("go", "run", "./charts/dashboards", "-out", out)
	cmd.Dir = harness.RepoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generate: %v\n%s", err, b)
	}
	fresh, _ := filepath.Glob(filepath.Join(out, "*.json"))
	shipped := dashboardFiles(t)
	if len(fresh) != len(shipped) {
		t.Fatalf("generator writes %d dashboards, the chart has %d: run make dashboards", len(fresh), len(shipped))
	}
	for _, f := range fresh {
		want, _ := os.ReadFile(f)
		got, err := os.ReadFile(filepath.Join(chartDir(t), "dashboards", filepath.Base(f)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("charts/meshtrail/dashboards/%s is stale: run make dashboards", filepath.Base(f))
		}
	}
}

// Every dashboard is valid against Grafana's own dashboard schema (npm
// @grafana/schema, test/tools/grafana-schema.sh), unknown fields included.
func TestDashboardsSchema(t *testing.T) {
	out, err := exec.Command(harness.Tool(t, "validate-dashboards"), dashboardFiles(t)...).CombinedOutput()
	if err != nil {
		t.Fatalf("@grafana/schema: %v\n%s", err, out)
	}
	// And the validator does reject what Grafana's schema does not allow.
	bad := filepath.Join(t.TempDir(), "bad.json")
	b, _ := os.ReadFile(dashboardFiles(t)[0])
	os.WriteFile(bad, bytes.Replace(b, []byte(`"title"`), []byte(`"titel"`), 1), 0o600)
	if out, err := exec.Command(harness.Tool(t, "validate-dashboards"), bad).CombinedOutput(); err == nil {
		t.Fatalf("a dashboard with a misspelt field passed: %s", out)
	}
}

// Each dashboard ships as a ConfigMap labelled for Grafana's sidecar.
func TestDashboardsConfigMaps(t *testing.T) {
	objs := objects(t, render(t, ""))
	for _, f := range dashboardFiles(t) {
		name := filepath.Base(f)
		cm := find(t, objs, "ConfigMap", "-dashboard-"+name[:len(name)-len(".json")])
		if dig(cm, "metadata", "labels", "grafana_dashboard") != "1" {
			t.Errorf("%s: not labelled grafana_dashboard=1", cm)
		}
		want, _ := os.ReadFile(f)
		if got := dig(cm, "data", name); got != string(want) {
			t.Errorf("%s: data %s differs from the file", cm, name)
		}
	}
	objs = objects(t, render(t, "", "dashboards.enabled=false"))
	for _, o := range objs {
		if dig(o, "metadata", "labels", "grafana_dashboard") != nil {
			t.Errorf("dashboards.enabled=false still renders %s", o)
		}
	}
}
