package injector

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

func testConfig() Config {
	c := DefaultConfig()
	c.TLSCert, c.TLSKey = "unused.crt", "unused.key"
	c.Sidecar.Image = "registry.example/meshtrail:test"
	return c
}

func newTestInjector(t testing.TB, mode SidecarMode, edit func(*Config)) *Injector {
	t.Helper()
	cfg := testConfig()
	if edit != nil {
		edit(&cfg)
	}
	inj, err := New(cfg, mode, NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return inj
}

// admitted is what one pass of the webhook did to a pod.
type admitted struct {
	resp *admissionv1.AdmissionResponse
	pod  *corev1.Pod // after the patch (the input when there is none)
	raw  []byte
}

func createRequest(t testing.TB, ns string, raw []byte) *admissionv1.AdmissionRequest {
	t.Helper()
	return &admissionv1.AdmissionRequest{
		UID:       types.UID("uid-1"),
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: ns,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}
}

// admitRaw runs one review over the pod's JSON and applies the patch with
// an independent JSON patch implementation, as the API server would.
func admitRaw(t testing.TB, inj *Injector, ns string, raw []byte) admitted {
	t.Helper()
	resp := inj.Review(context.Background(), createRequest(t, ns, raw))
	if resp.UID != "uid-1" {
		t.Fatalf("response UID %q", resp.UID)
	}
	out := raw
	if len(resp.Patch) > 0 {
		if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Fatalf("patch type %v", resp.PatchType)
		}
		p, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("patch does not decode: %v\n%s", err, resp.Patch)
		}
		// Strict: adding into a missing parent is an error, as in the API server.
		if out, err = p.ApplyWithOptions(raw, &jsonpatch.ApplyOptions{EnsurePathExistsOnAdd: false, AllowMissingPathOnRemove: false}); err != nil {
			t.Fatalf("patch does not apply: %v\n%s", err, resp.Patch)
		}
	}
	var pod corev1.Pod
	if err := json.Unmarshal(out, &pod); err != nil {
		t.Fatal(err)
	}
	return admitted{resp: resp, pod: &pod, raw: out}
}

func admit(t testing.TB, inj *Injector, ns string, pod *corev1.Pod) admitted {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return admitRaw(t, inj, ns, raw)
}

// admitTwice admits pod, then admits the result again (a reinvocation) and
// fails unless the second pass changes nothing.
func admitTwice(t testing.TB, inj *Injector, ns string, pod *corev1.Pod) admitted {
	t.Helper()
	first := admit(t, inj, ns, pod)
	if !first.resp.Allowed {
		return first
	}
	second := admitRaw(t, inj, ns, first.raw)
	if len(second.resp.Patch) != 0 {
		t.Fatalf("second pass is not a no-op: %s", second.resp.Patch)
	}
	if !second.resp.Allowed {
		t.Fatalf("second pass denied: %v", second.resp.Result)
	}
	return first
}

func appPod(annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", Annotations: annotations, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "shop/web:1"}},
		},
	}
}

func heavy(extra ...string) map[string]string {
	m := map[string]string{LogVolumeAnnotation: "20MiB/s", LogPathsAnnotation: "/var/log/app/*.log"}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

func status(t testing.TB, pod *corev1.Pod) Status {
	t.Helper()
	st, ok := readStatus(pod)
	if !ok {
		t.Fatalf("no readable %s annotation: %v", StatusAnnotation, pod.Annotations)
	}
	return st
}

func container(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

func volume(pod *corev1.Pod, name string) *corev1.Volume {
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == name {
			return &pod.Spec.Volumes[i]
		}
	}
	return nil
}

func mountAt(c *corev1.Container, path string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == path {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func hasWarning(resp *admissionv1.AdmissionResponse, substr string) bool {
	for _, w := range resp.Warnings {
		if strings.Contains(w, substr) {
			return true
		}
	}
	return false
}

func reviewJSON(t testing.TB, pod *corev1.Pod) string {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  createRequest(t, "shop", raw),
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkPodShape runs the injector's own shape check on a typed pod.
func checkPodShape(pod *corev1.Pod) error {
	b, err := json.Marshal(pod)
	if err != nil {
		return err
	}
	var shape podShape
	if err := json.Unmarshal(b, &shape); err != nil {
		return err
	}
	return shape.check()
}
