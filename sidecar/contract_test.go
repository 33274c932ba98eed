package sidecar_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshtrail/meshtrail/injector"
	"github.com/meshtrail/meshtrail/sidecar/internal/tailtest"
)

// injectedContainer runs the real injector over a heavy pod and returns
// the meshtrail-tail container it added.
func injectedContainer(t *testing.T, mode injector.SidecarMode) corev1.Container {
	t.Helper()
	cfg := injector.DefaultConfig()
	cfg.TLSCert, cfg.TLSKey = "unused.crt", "unused.key"
	cfg.Sidecar.Image = "registry.example/meshtrail:test"
	inj, err := injector.New(cfg, mode, injector.NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	pod := corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "cart-1", Namespace: "shop", Labels: map[string]string{"meshtrail.io/inject": "true"},
			Annotations: map[string]string{"meshtrail.io/log-volume": "20MiB/s", "meshtrail.io/log-paths": "/var/log/app/*.log",
				"meshtrail.io/log-parser": "json", "meshtrail.io/log-multiline": `^\{`}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	raw, _ := json.Marshal(pod)
	resp := inj.Review(context.Background(), &admissionv1.AdmissionRequest{UID: "u", Namespace: "shop", Operation: admissionv1.Create,
		Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Object: runtime.RawExtension{Raw: raw}})
	p, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("no patch: %v (%+v)", err, resp.Result)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatal(err)
	}
	var got corev1.Pod
	json.Unmarshal(out, &got)
	for _, c := range append(got.Spec.InitContainers, got.Spec.Containers...) {
		if c.Name == injector.SidecarName {
			return c
		}
	}
	t.Fatalf("no %s container in %s", injector.SidecarName, out)
	return corev1.Container{}
}

// TestInjectedContainerRuns takes the container the injector adds (its
// command, arguments and downward-API environment), maps its paths into
// temp directories, and runs the real binary with them; in regular mode it
// also runs the preStop drain the injector wrote, which must return once
// the app's lines are read.
func TestInjectedContainerRuns(t *testing.T) {
	bin := tailtest.Binary(t)
	for _, mode := range []injector.SidecarMode{injector.ModeNative, injector.ModeRegular} {
		t.Run(string(mode), func(t *testing.T) {
			c := injectedContainer(t, mode)
			root := t.TempDir()
			remap := func(s string) string {
				for _, prefix := range []string{"/var/log/app", "/var/lib/meshtrail-tail"} {
					s = strings.ReplaceAll(s, prefix, filepath.Join(root, prefix))
				}
				return s
			}
			os.MkdirAll(filepath.Join(root, "/var/log/app"), 0o755)
			if c.Command[0] != "meshtrail" || c.Command[1] != "tail" {
				t.Fatalf("command %v", c.Command)
			}
			args := []string{"tail"}
			for _, a := range c.Args {
				args = append(args, remap(a))
			}
			outPath := filepath.Join(root, "out.ndjson")
			if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--forward") || strings.HasPrefix(a, "--out") }) {
				args = append(args, "--out="+outPath) // no receiver address configured in the injector: write NDJSON
			}
			env := map[string]string{"metadata.name": "cart-1", "metadata.namespace": "shop", "metadata.uid": "0c1e", "spec.nodeName": "node-a"}
			cmd := exec.Command(bin, args...)
			cmd.Env = os.Environ()
			for _, e := range c.Env {
				cmd.Env = append(cmd.Env, e.Name+"="+env[e.ValueFrom.FieldRef.FieldPath])
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			os.WriteFile(filepath.Join(root, "/var/log/app/app.log"),
				[]byte("{\"msg\":\"one\",\n \"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\"}\n{\"msg\":\"two\"}\n"), 0o644)

			if mode == injector.ModeRegular {
				pre := c.Lifecycle.PreStop.Exec.Command
				if pre[0] != "meshtrail" {
					t.Fatalf("preStop %v", pre)
				}
				time.Sleep(300 * time.Millisecond) // the control socket is up
				var dargs []string
				for _, a := range pre[1:] {
					dargs = append(dargs, remap(a))
				}
				out, err := exec.Command(bin, dargs...).CombinedOutput()
				if err != nil {
					t.Fatalf("preStop %v: %v\n%s\n%s", dargs, err, out, stderr.String())
				}
				if countLines(outPath) != 2 {
					t.Fatalf("drain returned with %d of 2 lines out", countLines(outPath))
				}
			} else {
				deadline := time.Now().Add(20 * time.Second)
				for countLines(outPath) < 2 && time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
				}
			}
			cmd.Process.Signal(os.Interrupt)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("%v\n%s", err, stderr.String())
			}
			recs := tailtest.ReadOut(t, outPath)
			if len(recs) != 2 {
				t.Fatalf("%d records:\n%s", len(recs), stderr.String())
			}
			r := recs[0]
			if r.Message != "one" || r.Trace.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || r.Node.Pod != "cart-1" || r.Node.Namespace != "shop" ||
				r.Fields["k8s.pod.uid"] != "0c1e" || r.Fields["k8s.node.name"] != "node-a" {
				t.Fatalf("record %+v", r)
			}
		})
	}
}
