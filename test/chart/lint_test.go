package chart

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/test/harness"
	"sigs.k8s.io/yaml"
)

func TestHelmLint(t *testing.T) {
	for _, vf := range valuesFiles(t) {
		t.Run(filepath.Base(vf), func(t *testing.T) {
			if out, err := helm(t, "lint", "--strict", "--kube-version", kubeVersion, chartDir(t), "--namespace", namespace, "--values", vf); err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
		})
	}
}

// kubeconform validates a rendered stream strictly against the offline
// schemas; a kind without a schema is an error, not skipped.
func kubeconform(t testing.TB, stream []byte) error {
	t.Helper()
	schemas := harness.Tool(t, "kube-schemas")
	cmd := exec.Command(harness.Tool(t, "kubeconform"), "-strict", "-summary", "-output", "text",
		"-schema-location", schemas+"/kubernetes/{{.ResourceKind}}{{.KindSuffix}}.json",
		"-schema-location", schemas+"/crds/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json",
		"-")
	cmd.Stdin = bytes.NewReader(stream)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubeconform: %v\n%s", err, out)
	}
	return nil
}

func TestKubeconformStrict(t *testing.T) {
	for _, vf := range valuesFiles(t) {
		t.Run(filepath.Base(vf), func(t *testing.T) {
			stream := render(t, vf)
			if err := kubeconform(t, stream); err != nil {
				t.Fatal(err)
			}
			if n := len(objects(t, stream)); n < 5 {
				t.Fatalf("only %d objects rendered", n)
			}
		})
	}
}

// The schemas reject what the API server would: a misspelt field in a
// Deployment and in a WasmPlugin, and a kind nobody knows.
func TestKubeconformRejects(t *testing.T) {
	stream := render(t, "")
	objs := objects(t, stream)
	for name, mutate := range map[string]func(object){
		"Deployment typo": func(o object) {
			if o.kind() == "Deployment" {
				dig(o, "spec").(map[string]any)["replica"] = 2
			}
		},
		"WasmPlugin typo": func(o object) {
			if o.kind() == "WasmPlugin" {
				dig(o, "spec").(map[string]any)["failstrategy"] = "FAIL_OPEN"
			}
		},
		"WasmPlugin bad enum": func(o object) {
			if o.kind() == "WasmPlugin" {
				dig(o, "spec").(map[string]any)["phase"] = "LAST"
			}
		},
		"container port as text": func(o object) {
			if o.kind() == "DaemonSet" {
				dig(o, "spec", "template", "spec", "containers", 0).(map[string]any)["ports"] = []any{map[string]any{"containerPort": "http"}}
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			for _, o := range objs {
				c := object(deepCopy(o).(map[string]any))
				mutate(c)
				b, _ := yaml.Marshal(c)
				buf.WriteString("---\n")
				buf.Write(b)
			}
			if err := kubeconform(t, buf.Bytes()); err == nil {
				t.Fatal("kubeconform accepted it")
			}
		})
	}
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case object:
		return deepCopy(map[string]any(x))
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e)
		}
		return s
	}
	return v
}

// Every pod the chart deploys is locked down, whatever the values file.
func TestSecurityDefaults(t *testing.T) {
	for _, vf := range valuesFiles(t) {
		t.Run(filepath.Base(vf), func(t *testing.T) {
			objs := objects(t, render(t, vf))
			pods := 0
			for _, o := range objs {
				switch o.kind() {
				case "Deployment", "StatefulSet", "DaemonSet":
				default:
					continue
				}
				pods++
				spec := dig(o, "spec", "template", "spec").(map[string]any)
				if dig(spec, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
					t.Errorf("%s: pod seccompProfile is not RuntimeDefault", o)
				}
				if dig(spec, "hostNetwork") == true || dig(spec, "hostPID") == true {
					t.Errorf("%s: host namespaces", o)
				}
				root := dig(spec, "securityContext", "runAsUser")
				if o.kind() != "DaemonSet" && (dig(spec, "securityContext", "runAsNonRoot") != true || root == float64(0)) {
					t.Errorf("%s: not runAsNonRoot", o)
				}
				for _, c := range dig(spec, "containers").([]any) {
					sc := dig(c, "securityContext")
					if dig(sc, "readOnlyRootFilesystem") != true || dig(sc, "allowPrivilegeEscalation") != false ||
						dig(sc, "privileged") != false || !reflect.DeepEqual(dig(sc, "capabilities", "drop"), []any{"ALL"}) ||
						dig(sc, "capabilities", "add") != nil {
						t.Errorf("%s container %v: securityContext %v", o, dig(c, "name"), sc)
					}
					if dig(c, "resources", "requests") == nil || dig(c, "resources", "limits", "memory") == nil {
						t.Errorf("%s container %v: no requests or memory limit", o, dig(c, "name"))
					}
				}
				for _, v := range asSlice(dig(spec, "volumes")) {
					if hp := dig(v, "hostPath"); hp != nil {
						// Only the node agent, and /var/log/pods only read-only.
						if o.kind() != "DaemonSet" {
							t.Errorf("%s: hostPath volume %v", o, hp)
						}
					}
				}
				if o.kind() == "DaemonSet" {
					for _, m := range asSlice(dig(spec, "containers", 0, "volumeMounts")) {
						if dig(m, "mountPath") == "/var/log/pods" && dig(m, "readOnly") != true {
							t.Errorf("%s: /var/log/pods mounted writable", o)
						}
					}
				}
			}
			if pods == 0 {
				t.Fatal("no workloads rendered")
			}
			// RBAC: the injector's GET /version, nothing else, for anyone.
			for _, o := range objs {
				if o.kind() != "ClusterRole" && o.kind() != "Role" {
					continue
				}
				want := []any{map[string]any{"nonResourceURLs": []any{"/version"}, "verbs": []any{"get"}}}
				if !reflect.DeepEqual(o["rules"], want) {
					t.Errorf("%s grants %v", o, o["rules"])
				}
			}
			// No secrets in ConfigMaps: credentials are referenced by
			// environment variable or file, never written.
			secretish := regexp.MustCompile(`(?im)^\s*(password|token|secret|api_key|bearer_token)\s*:\s*\S`)
			for _, o := range objs {
				if o.kind() != "ConfigMap" {
					continue
				}
				for k, v := range dig(o, "data").(map[string]any) {
					if m := secretish.FindString(v.(string)); m != "" {
						t.Errorf("%s %s: a secret in a ConfigMap: %q", o, k, m)
					}
					if strings.Contains(v.(string), "BEGIN") && strings.Contains(v.(string), "PRIVATE KEY") {
						t.Errorf("%s %s: a private key in a ConfigMap", o, k)
					}
				}
			}
		})
	}
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

// The chart's MutatingWebhookConfiguration is the one `meshtrail inject
// --print-webhook` prints for the same Service and failure policy: the
// selectors, rules and policies stay in one place of truth.
func TestWebhookMatchesInjector(t *testing.T) {
	bin := meshtrailBinary(t)
	for _, policy := range []string{"Ignore", "Fail"} {
		t.Run(policy, func(t *testing.T) {
			objs := objects(t, render(t, "", "injector.failurePolicy="+policy))
			got := find(t, objs, "MutatingWebhookConfiguration", "injector-"+namespace)
			ca := dig(got, "webhooks", 0, "clientConfig", "caBundle").(string)
			pem, err := base64.StdEncoding.DecodeString(ca)
			if err != nil || !bytes.Contains(pem, []byte("BEGIN CERTIFICATE")) {
				t.Fatalf("caBundle is not a base64 PEM certificate: %v", err)
			}
			caFile := filepath.Join(t.TempDir(), "ca.pem")
			os.WriteFile(caFile, pem, 0o600)
			out, err := exec.Command(bin, "inject", "--print-webhook", "--service", namespace+"/meshtrail-injector",
				"--failure-policy", policy, "--ca-bundle", caFile).Output()
			if err != nil {
				t.Fatalf("meshtrail inject --print-webhook: %v", err)
			}
			var want object
			if err := yaml.Unmarshal(out, &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got["webhooks"], want["webhooks"]) {
				g, _ := yaml.Marshal(got["webhooks"])
				w, _ := yaml.Marshal(want["webhooks"])
				t.Fatalf("webhooks differ from meshtrail inject --print-webhook:\n--- chart\n%s\n--- injector\n%s", g, w)
			}
		})
	}
}

// The receiver configuration the chart renders (every values file) is
// accepted by the real receiver, which starts and turns ready with it.
func TestReceiverAcceptsRenderedConfig(t *testing.T) {
	bin := meshtrailBinary(t)
	for _, vf := range valuesFiles(t) {
		t.Run(filepath.Base(vf), func(t *testing.T) {
			objs := objects(t, render(t, vf))
			cm := find(t, objs, "ConfigMap", "-als")
			cfg := dig(cm, "data", "als.yaml").(string)
			// The disk queue lives on the pod's volume at /var/lib/meshtrail.
			dir := t.TempDir()
			cfg = strings.ReplaceAll(cfg, "/var/lib/meshtrail", dir)
			file := filepath.Join(dir, "als.yaml")
			if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			workload := find(t, objs, receiverKind(objs), "-als")
			spec := dig(workload, "spec", "template", "spec")
			grace := dig(spec, "terminationGracePeriodSeconds").(float64)
			var parsed struct {
				ShutdownGrace string `json:"shutdown_grace"`
			}
			yaml.Unmarshal([]byte(cfg), &parsed)
			d, err := time.ParseDuration(parsed.ShutdownGrace)
			if err != nil || grace <= d.Seconds() {
				t.Fatalf("terminationGracePeriodSeconds %v is not above shutdown_grace %q", grace, parsed.ShutdownGrace)
			}
			env := []string{}
			for _, e := range asSlice(dig(spec, "containers", 0, "env")) {
				env = append(env, dig(e, "name").(string)+"=from-a-secret")
			}
			// The container's own arguments, with loopback addresses for its
			// listeners and the config file where the test wrote it.
			metrics := harness.FreeAddr(t)
			var args, otlp []string
			for _, a := range asSlice(dig(spec, "containers", 0, "args")) {
				a := a.(string)
				switch {
				case strings.HasPrefix(a, "--config="):
					a = "--config=" + file
				case strings.HasPrefix(a, "--otlp-"):
					name, _, _ := strings.Cut(a, "=")
					addr := harness.FreeAddr(t)
					a = name + "=" + addr
					otlp = append(otlp, addr)
				}
				args = append(args, a)
			}
			args = append(args, "--listen", harness.FreeAddr(t), "--metrics-listen", metrics)
			p := harness.Start(t, "receiver", env, bin, args...)
			harness.WaitHTTP(t, p, "http://"+metrics+"/readyz", 30*time.Second)
			resp, err := http.Get("http://" + metrics + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			for _, addr := range otlp {
				c, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					t.Errorf("the receiver's OTLP listener %s: %v", addr, err)
					continue
				}
				c.Close()
			}
			p.Stop()
		})
	}
}

func receiverKind(objs []object) string {
	if kinds(objs)["StatefulSet"] > 0 {
		return "StatefulSet"
	}
	return "Deployment"
}

// Values that cannot work fail the rendering with a message naming them.
func TestValuesErrors(t *testing.T) {
	for set, want := range map[string]string{
		"receiver.persistence.type=hostPath":                         "receiver.persistence.type",
		"injector.certificates.source=vault":                         "injector.certificates.source",
		"injector.failurePolicy=Never":                               "injector.failurePolicy",
		"istio.wasmPlugin.sha256=XYZ":                                "istio.wasmPlugin.sha256",
		"istio.wasmPlugin.url=ftp://x/y.wasm":                        "istio.wasmPlugin.url",
		"istio.envoyFilterWasm.enabled=true":                         "istio.envoyFilterWasm",
		"injector.certificates.source=secret":                        "injector.certificates.secret",
		"receiver.terminationGraceMarginSeconds=0":                   "receiver.terminationGraceMarginSeconds",
		"receiver.secretEnv[0].name=X,receiver.secretEnv[0].key=pwd": "secretName",
	} {
		args := []string{"template", release, chartDir(t), "--namespace", namespace, "--kube-version", kubeVersion}
		for _, s := range strings.Split(set, ",") {
			args = append(args, "--set", s)
		}
		_, err := helm(t, args...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: want an error naming %q, got %v", set, want, err)
		}
	}
}
