package injector

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/test/harness"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func runCommand(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Command(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpTeaches(t *testing.T) {
	code, stderr, _ := runCommand("--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, s := range []string{"Examples:", "meshtrail.io/log-volume: 20MiB/s", "--print-webhook", "-tls-cert", "-threshold"} {
		if !strings.Contains(stderr, s) {
			t.Errorf("help lacks %q", s)
		}
	}
}

func TestCommandRefusesBadConfigNamingFields(t *testing.T) {
	code, _, stderr := runCommand("--listen", "127.0.0.1:0", "--threshold", "lots", "--mode", "maybe")
	if code != 2 {
		t.Fatalf("exit %d", code)
	}
	for _, s := range []string{"tlsCert:", "tlsKey:", "threshold:", "mode:"} {
		if !strings.Contains(stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, stderr)
		}
	}
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte("listn: x\n"), 0o600)
	if code, _, stderr := runCommand("--config", p); code != 2 || !strings.Contains(stderr, "listn") {
		t.Errorf("unknown config field: exit %d %s", code, stderr)
	}
	if code, _, _ := runCommand("stray"); code != 2 {
		t.Errorf("stray argument: exit %d", code)
	}
}

// The shipped example must be what the code generates, so that neither
// drifts from the other.
func TestExampleWebhookIsGenerated(t *testing.T) {
	code, out, stderr := runCommand("--print-webhook", "--service", "meshtrail/meshtrail-injector", "--failure-policy", "Ignore")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want, err := os.ReadFile("examples/mutatingwebhookconfiguration.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The example carries a header comment; compare the YAML.
	body := string(want)
	if i := strings.Index(body, "apiVersion:"); i > 0 {
		body = body[i:]
	}
	if body != out {
		t.Fatalf("injector/examples/mutatingwebhookconfiguration.yaml is stale; regenerate with\n  meshtrail inject --print-webhook --service meshtrail/meshtrail-injector\ngot:\n%s", out)
	}
	var hook admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict([]byte(out), &hook); err != nil {
		t.Fatal(err)
	}
	if len(hook.Webhooks) != 2 || *hook.Webhooks[0].ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy ||
		*hook.Webhooks[1].SideEffects != admissionregistrationv1.SideEffectClassNone || *hook.Webhooks[0].ClientConfig.Service.Path != "/inject" {
		t.Fatalf("%+v", hook)
	}
	if code, _, _ := runCommand("--print-webhook"); code != 2 {
		t.Errorf("--print-webhook without --service or --url: exit %d", code)
	}
	if code, _, _ := runCommand("--print-webhook", "--url", "https://x/inject", "--failure-policy", "Sometimes"); code != 2 {
		t.Errorf("bad failure policy: exit %d", code)
	}
}

func TestHandlerRejectsNonReviews(t *testing.T) {
	inj := newTestInjector(t, ModeNative, nil)
	for _, tc := range []struct {
		method, body string
		want         int
	}{
		{http.MethodGet, "", http.StatusMethodNotAllowed},
		{http.MethodPost, "{", http.StatusBadRequest},
		{http.MethodPost, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, http.StatusBadRequest},
	} {
		rec := httptest.NewRecorder()
		inj.ServeHTTP(rec, httptest.NewRequest(tc.method, "/inject", strings.NewReader(tc.body)))
		if rec.Code != tc.want {
			t.Errorf("%s %q: %d", tc.method, tc.body, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	inj.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/inject", strings.NewReader(reviewJSON(t, appPod(heavy())))))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"kind":"AdmissionReview"`) || !strings.Contains(rec.Body.String(), `"patchType":"JSONPatch"`) {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
}

func TestExampleConfigLoads(t *testing.T) {
	c, err := LoadConfig("examples/inject.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Sidecar.Sinks) == 0 && len(c.Sidecar.DefaultSinks) == 0 {
		c.Sidecar.Sinks, c.Sidecar.DefaultSinks = nil, nil
	}
	if !reflect.DeepEqual(c.Sidecar, DefaultConfig().Sidecar) {
		t.Errorf("example sidecar section differs from the defaults it documents: %+v", c.Sidecar)
	}
	d := DefaultConfig()
	if c.Threshold != d.Threshold || c.Mode != d.Mode || c.Listen != d.Listen || c.MetricsListen != d.MetricsListen {
		t.Errorf("example differs from the defaults it documents: %+v", c)
	}
}

// The example Deployment's configuration is valid and gives every
// injected sidecar the receiver's address as --forward.
func TestExampleDeployForwardsToTheReceiver(t *testing.T) {
	b, err := os.ReadFile("examples/deploy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	for _, doc := range strings.Split(string(b), "\n---\n") {
		if strings.Contains(doc, "kind: ConfigMap") {
			if err := yaml.UnmarshalStrict([]byte(doc), &cm); err != nil {
				t.Fatal(err)
			}
		}
	}
	path := filepath.Join(t.TempDir(), "inject.yaml")
	if err := os.WriteFile(path, []byte(cm.Data["inject.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	inj := newTestInjector(t, ModeNative, func(c *Config) { c.Sidecar = cfg.Sidecar })
	a := admitTwice(t, inj, "shop", appPod(heavy()))
	if c := container(a.pod, SidecarName); c == nil || !contains(c.Args, "--forward=meshtrail-als.meshtrail.svc.cluster.local:4317") {
		t.Fatalf("sidecar %+v", c)
	}
}

// The example app's annotations are honoured: the Deployment's pod
// template, admitted, gets the sidecar without warnings.
func TestExampleAppIsInjected(t *testing.T) {
	b, err := os.ReadFile("examples/app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(b), "\n---\n")
	var dep appsv1.Deployment
	if err := yaml.UnmarshalStrict([]byte(docs[len(docs)-1]), &dep); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: dep.Spec.Template.ObjectMeta, Spec: dep.Spec.Template.Spec}
	a := admitTwice(t, newTestInjector(t, ModeNative, nil), "shop", pod)
	if container(a.pod, SidecarName) == nil || len(a.resp.Warnings) != 0 {
		t.Fatalf("warnings %q status %s", a.resp.Warnings, a.pod.Annotations[StatusAnnotation])
	}
}

func TestCommandServesAndShutsDown(t *testing.T) {
	ca := harness.NewCA(t)
	certFile, keyFile := ca.Issue(t, "injector", "127.0.0.1").Write(t, t.TempDir(), "tls")
	listen, metrics := harness.FreeAddr(t), harness.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Command(ctx, []string{"--listen", listen, "--tls-cert", certFile, "--tls-key", keyFile,
			"--metrics-listen", metrics, "--mode", "native", "--log-level", "warn", "--shutdown-delay", "300ms"}, io.Discard, &stderr)
	}()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.TLSClient()}}
	harness.Eventually(t, 10*time.Second, "readyz", func() error {
		resp, err := client.Get("https://" + listen + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	resp, err := client.Post("https://"+listen+"/inject", "application/json", strings.NewReader(reviewJSON(t, appPod(heavy()))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, s := range []string{`meshtrail_injector_injected_total{mode="native"} 1`, "go_goroutines", `meshtrail_injector_certificate_loads_total{result="ok"} 1`} {
		if !strings.Contains(string(body), s) {
			t.Errorf("metrics lack %s", s)
		}
	}
	cancel()
	// During the shutdown delay reviews are still answered, /readyz fails.
	harness.Eventually(t, 5*time.Second, "readyz failing while draining", func() error {
		resp, err := client.Get("https://" + listen + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no graceful shutdown")
	}
}
