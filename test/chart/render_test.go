// Package chart tests the Helm chart in charts/meshtrail with the real
// tools: helm lint and template over the values files in
// charts/meshtrail/ci, kubeconform -strict against the Kubernetes 1.34 and
// Istio/cert-manager/prometheus-operator schemas (test/tools/kube-schemas.sh),
// the rendering applied to a real kube-apiserver with those CRDs installed,
// and the injector run with the configuration and certificates the chart
// rendered, injecting a pod created through that API server.
package chart

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/meshtrail/meshtrail/test/harness"
	"sigs.k8s.io/yaml"
)

const (
	release   = "meshtrail"
	namespace = "meshtrail"
	// The API server version the chart is rendered for: the kube-apiserver
	// the tests start, and the Kubernetes schemas kubeconform checks with.
	kubeVersion = "1.34.4"
)

// object is one rendered Kubernetes object, as generic JSON.
type object map[string]any

func (o object) kind() string { s, _ := o["kind"].(string); return s }
func (o object) apiVersion() string {
	s, _ := o["apiVersion"].(string)
	return s
}
func (o object) name() string { s, _ := dig(o, "metadata", "name").(string); return s }
func (o object) namespace() string {
	s, _ := dig(o, "metadata", "namespace").(string)
	return s
}
func (o object) String() string { return o.kind() + "/" + o.name() }

// dig walks maps by key and slices by int index; nil when a step is missing.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				if o, isObj := v.(object); isObj {
					m = o
				} else {
					return nil
				}
			}
			v = m[k]
		case int:
			s, ok := v.([]any)
			if !ok || k >= len(s) {
				return nil
			}
			v = s[k]
		}
	}
	return v
}

func chartDir(t testing.TB) string { return filepath.Join(harness.RepoRoot(t), "charts", "meshtrail") }

// valuesFiles lists charts/meshtrail/ci/*-values.yaml: the combinations every
// check runs over.
func valuesFiles(t testing.TB) []string {
	files, err := filepath.Glob(filepath.Join(chartDir(t), "ci", "*-values.yaml"))
	if err != nil || len(files) < 6 {
		t.Fatalf("values files in %s/ci: %v %v", chartDir(t), files, err)
	}
	sort.Strings(files)
	return files
}

// helm runs the installed helm with its caches inside the test's temp dir.
func helm(t testing.TB, args ...string) ([]byte, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(harness.Tool(t, "helm"), args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config",
		"HELM_DATA_HOME="+home+"/data")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.Bytes(), &cmdError{args: args, err: err, stderr: errb.String() + out.String()}
	}
	return out.Bytes(), nil
}

type cmdError struct {
	args   []string
	err    error
	stderr string
}

func (e *cmdError) Error() string {
	return strings.Join(e.args, " ") + ": " + e.err.Error() + "\n" + e.stderr
}

// render is `helm template` of the chart with a values file (or none) and
// --set flags, as the YAML stream helm prints.
func render(t testing.TB, valuesFile string, set ...string) []byte {
	t.Helper()
	return renderNS(t, namespace, valuesFile, set...)
}

// renderNS is render into another namespace.
func renderNS(t testing.TB, ns, valuesFile string, set ...string) []byte {
	t.Helper()
	args := []string{"template", release, chartDir(t), "--namespace", ns, "--kube-version", kubeVersion}
	if valuesFile != "" {
		args = append(args, "--values", valuesFile)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return out
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// objects splits a rendered stream into its objects.
func objects(t testing.TB, stream []byte) []object {
	t.Helper()
	var objs []object
	for _, doc := range docSep.Split(string(stream), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var o object
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("rendered document is not YAML: %v\n%s", err, doc)
		}
		if o == nil {
			continue
		}
		objs = append(objs, o)
	}
	return objs
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// find returns the one object of kind whose name ends with suffix.
func find(t testing.TB, objs []object, kind, suffix string) object {
	t.Helper()
	var hit []object
	for _, o := range objs {
		if o.kind() == kind && strings.HasSuffix(o.name(), suffix) {
			hit = append(hit, o)
		}
	}
	if len(hit) != 1 {
		t.Fatalf("want one %s named *%s in the rendering, found %d", kind, suffix, len(hit))
	}
	return hit[0]
}

func kinds(objs []object) map[string]int {
	m := map[string]int{}
	for _, o := range objs {
		m[o.kind()]++
	}
	return m
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// meshtrailBinary builds ./cmd/meshtrail once per test binary.
func meshtrailBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meshtrail-chart-test")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "meshtrail")
		cmd := exec.Command("go", "build", "-trimpath", "-o", builtBin, "./cmd/meshtrail")
		cmd.Dir = harness.RepoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &cmdError{args: cmd.Args, err: err, stderr: string(out)}
		}
	})
	if buildErr != nil {
		t.Fatalf("build meshtrail: %v", buildErr)
	}
	return builtBin
}
