package chart

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/test/harness"
	"sigs.k8s.io/yaml"
)

// TestApplyToAPIServer applies the chart's full rendering to a real
// kube-apiserver 1.34 with Istio's, cert-manager's and prometheus-operator's
// CRDs installed: every object must be accepted with strict field
// validation, so WasmPlugin, Telemetry and EnvoyFilter pass the API
// server's own schema checks. Then it runs the real injector with the
// configuration and certificates the chart rendered, registered by the
// chart's own MutatingWebhookConfiguration, and creates pods through the
// API server.
func TestApplyToAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver and etcd")
	}
	kube := harness.StartKube(t)
	installCRDs(t, kube)
	api := &discovery{kube: kube}

	t.Run("full rendering", func(t *testing.T) {
		// The API server warns about workloads whose pods the namespace's
		// Pod Security level would refuse.
		kube.EnsureNamespace(t, namespace, map[string]string{"pod-security.kubernetes.io/warn": "restricted"})
		kube.EnsureNamespace(t, "istio-system", nil)
		objs := objects(t, render(t, filepath.Join(chartDir(t), "ci", "full-values.yaml")))
		for _, want := range []string{"StatefulSet", "WasmPlugin", "Telemetry", "EnvoyFilter", "ServiceMonitor",
			"PodMonitor", "NetworkPolicy", "MutatingWebhookConfiguration", "DaemonSet", "HorizontalPodAutoscaler",
			"PodDisruptionBudget"} {
			if kinds(objs)[want] == 0 {
				t.Errorf("the full rendering has no %s", want)
			}
		}
		for _, o := range objs {
			warnings := api.create(t, o, namespace)
			switch o.kind() {
			case "DaemonSet":
				// hostPath and uid 0: the node agent needs a privileged namespace.
				if !strings.Contains(warnings, "hostPath") {
					t.Errorf("%s: expected a Pod Security warning about hostPath, got %q", o, warnings)
				}
			default:
				if warnings != "" {
					t.Errorf("%s: Pod Security (restricted) warns: %s", o, warnings)
				}
			}
		}
		// The stored WasmPlugin kept its whole spec (nothing pruned).
		wp := find(t, objs, "WasmPlugin", release)
		stored := object{}
		json.Unmarshal(kube.MustDo(t, http.MethodGet, api.path(t, wp, namespace)+"/"+wp.name(), nil, http.StatusOK), &stored)
		if fmt.Sprint(dig(stored, "spec")) != fmt.Sprint(dig(wp, "spec")) {
			t.Errorf("WasmPlugin spec changed on the way in:\nsent   %v\nstored %v", dig(wp, "spec"), dig(stored, "spec"))
		}
		// failurePolicy Fail towards a Service with no endpoints here: take it
		// away before pods are created below.
		hook := find(t, objs, "MutatingWebhookConfiguration", "injector-"+namespace)
		kube.MustDo(t, http.MethodDelete, api.path(t, hook, "")+"/"+hook.name(), nil, http.StatusOK)
	})

	t.Run("injector from the rendered config", func(t *testing.T) {
		const ns = "meshtrail-b"
		kube.EnsureNamespace(t, ns, nil)
		addr := harness.FreeAddr(t)
		stream := renderNS(t, ns, "", "injector.webhookURL=https://"+addr+"/inject",
			"injector.certificates.ipAddresses={127.0.0.1}", "injector.failurePolicy=Fail",
			// The mesh-wide Istio objects of the first release already sit in istio-system.
			"istio.enabled=false")
		objs := objects(t, stream)
		for _, o := range objs {
			api.create(t, o, ns)
		}
		secret := find(t, objs, "Secret", "injector-tls")
		dir := t.TempDir()
		certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		writeSecretKey(t, secret, "tls.crt", certFile)
		writeSecretKey(t, secret, "tls.key", keyFile)
		caPEM := writeSecretKey(t, secret, "ca.crt", filepath.Join(dir, "ca.crt"))

		var cfg map[string]any
		cm := find(t, objs, "ConfigMap", "injector")
		if err := yaml.Unmarshal([]byte(dig(cm, "data", "inject.yaml").(string)), &cfg); err != nil {
			t.Fatal(err)
		}
		wantForward := fmt.Sprintf("meshtrail-als.%s.svc.cluster.local:4317", ns)
		if got := dig(cfg, "sidecar", "forward"); got != wantForward {
			t.Fatalf("injector config sidecar.forward = %v, want the receiver's OTLP port %s", got, wantForward)
		}
		wantImage := dig(cfg, "sidecar", "image").(string)
		// Only the files' places and the loopback listener differ from the pod.
		cfg["tlsCert"], cfg["tlsKey"], cfg["listen"], cfg["metricsListen"] = certFile, keyFile, addr, ""
		bin := meshtrailBinary(t)
		p := startInjector(t, bin, dir, cfg)
		if exited, _ := waitInjector(t, p, addr, caPEM); exited {
			log, _ := os.ReadFile(p.Log)
			t.Fatalf("the injector refused the chart's configuration:\n%s", log)
		}

		kube.EnsureNamespace(t, "shop", map[string]string{"meshtrail-injection": "enabled"})
		kube.EnsureNamespace(t, "plain", nil)
		pod := func(name string) map[string]any {
			return map[string]any{
				"apiVersion": "v1", "kind": "Pod",
				"metadata": map[string]any{"name": name, "annotations": map[string]any{
					"meshtrail.io/log-volume": "20MiB/s", "meshtrail.io/log-paths": "/var/log/app/*.log"}},
				"spec": map[string]any{"containers": []any{map[string]any{"name": "app", "image": "shop/app:1"}}},
			}
		}
		// The webhook configuration takes effect asynchronously: dry-run
		// until the pod comes back injected.
		var got object
		harness.Eventually(t, 30*time.Second, "pod injected through the chart's webhook", func() error {
			code, body, err := kube.Do(context.Background(), http.MethodPost, "/api/v1/namespaces/shop/pods?dryRun=All", pod("checkout"))
			if err != nil || code != http.StatusCreated {
				return fmt.Errorf("dry-run create: %d %v %.300s", code, err, body)
			}
			got = object{}
			json.Unmarshal(body, &got)
			if tailContainer(got) == nil {
				return fmt.Errorf("not injected yet")
			}
			return nil
		})
		body := kube.MustDo(t, http.MethodPost, "/api/v1/namespaces/shop/pods", pod("checkout"), http.StatusCreated)
		got = object{}
		json.Unmarshal(body, &got)
		c := tailContainer(got)
		if c == nil {
			t.Fatalf("created pod has no meshtrail-tail container: %s", body)
		}
		if img := dig(c, "image"); img != wantImage || !strings.HasPrefix(wantImage, "ghcr.io/meshtrail/meshtrail:") {
			t.Errorf("sidecar image %v, want the chart's %s", img, wantImage)
		}
		args := fmt.Sprint(dig(c, "command"), dig(c, "args"))
		if !strings.Contains(args, "tail") || !strings.Contains(args, "--paths=/var/log/app/*.log") {
			t.Errorf("sidecar command %s", args)
		}
		if !strings.Contains(args, "--forward="+wantForward) && !strings.Contains(args, "--forward "+wantForward) {
			t.Errorf("sidecar command %s does not forward to %s", args, wantForward)
		}
		if s := dig(got, "metadata", "annotations", "meshtrail.io/injection-status"); !strings.Contains(fmt.Sprint(s), `"decision":"sidecar"`) {
			t.Errorf("injection-status %v", s)
		}
		// A namespace that did not opt in is left alone.
		body = kube.MustDo(t, http.MethodPost, "/api/v1/namespaces/plain/pods", pod("other"), http.StatusCreated)
		got = object{}
		json.Unmarshal(body, &got)
		if tailContainer(got) != nil {
			t.Errorf("pod in a namespace without meshtrail-injection was injected")
		}
	})
}

func tailContainer(pod object) any {
	for _, list := range []string{"initContainers", "containers"} {
		for _, c := range asSlice(dig(pod, "spec", list)) {
			if dig(c, "name") == "meshtrail-tail" {
				return c
			}
		}
	}
	return nil
}

func startInjector(t *testing.T, bin, dir string, cfg map[string]any) *harness.Process {
	t.Helper()
	b, _ := yaml.Marshal(cfg)
	file := filepath.Join(dir, "inject.yaml")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// --kubernetes-version: outside a pod there is no in-cluster API to
	// ask (the chart mounts a token for that); 1.34 is the test's server.
	return harness.Start(t, "injector", nil, bin, "inject", "--config", file, "--kubernetes-version", "1.34")
}

// waitInjector waits for /readyz over TLS verified with the chart's CA
// (and the 127.0.0.1 SAN); exited reports an injector that ended instead.
func waitInjector(t *testing.T, p *harness.Process, addr string, caPEM []byte) (exited bool, err error) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("the chart's ca.crt holds no certificate")
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Proxy: nil}}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if done, err := p.Exited(); done {
			return true, err
		}
		resp, err := client.Get("https://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return false, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("injector not ready over TLS with the chart's certificate at %s", addr)
	return false, nil
}

func writeSecretKey(t *testing.T, secret object, key, file string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(fmt.Sprint(dig(secret, "data", key)))
	if err != nil || len(b) == 0 {
		t.Fatalf("%s %s: not base64 data: %v", secret, key, err)
	}
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

// installCRDs creates the CRDs kube-schemas.sh prepared (Istio,
// cert-manager, prometheus-operator) and waits until they are served.
func installCRDs(t *testing.T, kube *harness.Kube) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(harness.Tool(t, "kube-schemas"), "crd-manifests", "*.yaml"))
	if len(files) < 5 {
		t.Fatalf("CRD manifests: %v", files)
	}
	var names []string
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objects(t, raw) {
			if o.kind() != "CustomResourceDefinition" {
				continue
			}
			kube.MustDo(t, http.MethodPost, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", o, http.StatusCreated, http.StatusConflict)
			names = append(names, o.name())
		}
	}
	for _, n := range names {
		harness.Eventually(t, 60*time.Second, "CRD "+n+" established", func() error {
			_, body, err := kube.Do(context.Background(), http.MethodGet, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"+n, nil)
			if err != nil {
				return err
			}
			var crd object
			json.Unmarshal(body, &crd)
			for _, c := range asSlice(dig(crd, "status", "conditions")) {
				if dig(c, "type") == "Established" && dig(c, "status") == "True" {
					return nil
				}
			}
			return fmt.Errorf("not established")
		})
	}
}

// discovery maps apiVersion and kind to the API server's resource paths,
// from its own discovery documents.
type discovery struct {
	kube *harness.Kube
	mu   sync.Mutex
	res  map[string]resource // apiVersion/Kind
}

type resource struct {
	name       string
	namespaced bool
}

func (d *discovery) path(t testing.TB, o object, ns string) string {
	t.Helper()
	key := o.apiVersion() + "/" + o.kind()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.res == nil {
		d.res = map[string]resource{}
	}
	r, ok := d.res[key]
	if !ok {
		base := "/apis/" + o.apiVersion()
		if !strings.Contains(o.apiVersion(), "/") {
			base = "/api/" + o.apiVersion()
		}
		harness.Eventually(t, 30*time.Second, "discover "+key, func() error {
			code, body, err := d.kube.Do(context.Background(), http.MethodGet, base, nil)
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("GET %s: %d %v", base, code, err)
			}
			var list struct {
				Resources []struct {
					Name       string `json:"name"`
					Kind       string `json:"kind"`
					Namespaced bool   `json:"namespaced"`
				} `json:"resources"`
			}
			json.Unmarshal(body, &list)
			for _, res := range list.Resources {
				if res.Kind == o.kind() && !strings.Contains(res.Name, "/") {
					r, ok = resource{res.Name, res.Namespaced}, true
					return nil
				}
			}
			return fmt.Errorf("%s not served at %s", o.kind(), base)
		})
		d.res[key] = r
	}
	base := "/apis/" + o.apiVersion()
	if !strings.Contains(o.apiVersion(), "/") {
		base = "/api/" + o.apiVersion()
	}
	if r.namespaced {
		if o.namespace() != "" {
			ns = o.namespace()
		}
		return base + "/namespaces/" + ns + "/" + r.name
	}
	return base + "/" + r.name
}

// create POSTs o with strict field validation: an unknown or duplicated
// field is an error, not silently dropped.
func (d *discovery) create(t testing.TB, o object, ns string) (warnings string) {
	t.Helper()
	p := d.path(t, o, ns) + "?fieldValidation=Strict"
	resp, body, err := d.kube.Request(context.Background(), http.MethodPost, p, o)
	if err != nil || resp.StatusCode != http.StatusCreated {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		t.Errorf("create %s: %d %v: %s", o, code, err, body)
		return ""
	}
	return strings.Join(resp.Header.Values("Warning"), "; ")
}
