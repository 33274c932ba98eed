package injector

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Bounds on what the injector writes and answers (issue 15), and pod-level
// resources (issue 12).

func annotationBytes(pod *corev1.Pod) int {
	n := 0
	for k, v := range pod.Annotations {
		n += len(k) + len(v)
	}
	return n
}

func TestStatusNeverTakesAValidPodOverTheAnnotationLimit(t *testing.T) {
	// The three pods: valid on their own, 266-430 KiB of
	// annotations once the status quoted (and escaped) their values.
	for name, ann := range map[string][]string{
		"60 KiB parser":             {LogParserAnnotation, strings.Repeat("<x>", 20<<10)},
		"130 KiB invalid multiline": {LogMultilineAnnotation, "(" + strings.Repeat("\"<", 65<<10)},
		"50 KiB tail-cpu":           {CPUAnnotation, strings.Repeat("9", 50<<10) + "parsecs"},
		"240 KiB of the pod's own":  {"example.com/blob", strings.Repeat("b", 240<<10), LogParserAnnotation, strings.Repeat("p", 15<<10)},
	} {
		t.Run(name, func(t *testing.T) {
			pod := appPod(heavy(ann...))
			if annotationBytes(pod) > totalAnnotationBytes {
				t.Fatalf("test pod is invalid already: %d bytes", annotationBytes(pod))
			}
			a := admitTwice(t, newTestInjector(t, ModeNative, nil), "shop", pod)
			if got := annotationBytes(a.pod); got > totalAnnotationBytes {
				t.Fatalf("patched pod has %d bytes of annotations, over the API server's %d", got, totalAnnotationBytes)
			}
			if container(a.pod, SidecarName) != nil || !reflect.DeepEqual(a.pod.Spec, pod.Spec) {
				t.Error("an unhonourable pod got a sidecar or a changed spec")
			}
			if st, ok := readStatus(a.pod); ok && (st.Decision != DecisionNone || len(st.Reason) > maxStatusReason) {
				t.Errorf("status %s (%d bytes of reason)", st.Decision, len(st.Reason))
			}
			for _, w := range a.resp.Warnings {
				if len(w) > maxWarning {
					t.Errorf("warning of %d bytes", len(w))
				}
			}
		})
	}
}

func TestAPodAtTheAnnotationLimitIsAdmittedUnchanged(t *testing.T) {
	pod := appPod(heavy("example.com/blob", strings.Repeat("b", totalAnnotationBytes-200)))
	a := admit(t, newTestInjector(t, ModeNative, nil), "shop", pod)
	if len(a.resp.Patch) != 0 || !a.resp.Allowed {
		t.Fatalf("patched a pod whose annotations cannot take the status: %.200s", a.resp.Patch)
	}
	if !hasWarning(a.resp, "admitted unchanged") {
		t.Errorf("warnings %q", a.resp.Warnings)
	}
}

func TestIstioContainersAndVolumesAreLeftAlone(t *testing.T) {
	istioPod := func(ann map[string]string) *corev1.Pod {
		pod := appPod(ann)
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "istio/proxyv2",
			VolumeMounts: []corev1.VolumeMount{{Name: "istio-envoy", MountPath: "/etc/istio/proxy"}}})
		pod.Spec.Volumes = []corev1.Volume{{Name: "istio-envoy", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		return pod
	}
	for name, tc := range map[string]struct {
		pod  *corev1.Pod
		want string
	}{
		"log-containers names istio-proxy": {istioPod(heavy(LogContainersAnnotation, "istio-proxy")), `"istio-proxy" is Istio's container`},
		"log-containers names istio-init":  {istioPod(heavy(LogContainersAnnotation, "app,istio-init")), `"istio-init" is Istio's container`},
		"log path on istio-envoy": {func() *corev1.Pod {
			p := istioPod(heavy(LogPathsAnnotation, "/etc/istio/proxy/*.log"))
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "istio-envoy", MountPath: "/etc/istio/proxy"}}
			return p
		}(), `Istio's volume "istio-envoy"`},
	} {
		t.Run(name, func(t *testing.T) {
			a := admitTwice(t, newTestInjector(t, ModeNative, nil), "shop", tc.pod)
			if container(a.pod, SidecarName) != nil || !reflect.DeepEqual(a.pod.Spec, tc.pod.Spec) {
				t.Fatalf("the pod was changed: %s", a.resp.Patch)
			}
			if st := status(t, a.pod); st.Decision != DecisionNone || !strings.Contains(st.Reason, tc.want) {
				t.Errorf("status %+v", st)
			}
			if !hasWarning(a.resp, tc.want) {
				t.Errorf("warnings %q", a.resp.Warnings)
			}
		})
	}
}

func TestOnlyAdmissionReviewV1WithAUIDIsAnswered(t *testing.T) {
	good := reviewJSON(t, appPod(heavy()))
	for name, tc := range map[string]struct {
		body, reason, says string
	}{
		"v1beta1":    {strings.Replace(good, `"admission.k8s.io/v1"`, `"admission.k8s.io/v1beta1"`, 1), "api_version", `apiVersion "admission.k8s.io/v1beta1"`},
		"foo/v9":     {strings.Replace(good, `"admission.k8s.io/v1"`, `"foo/v9"`, 1), "api_version", `apiVersion "foo/v9"`},
		"no version": {strings.Replace(good, `"apiVersion":"admission.k8s.io/v1",`, ``, 1), "api_version", `apiVersion ""`},
		"kind":       {strings.Replace(good, `"kind":"AdmissionReview"`, `"kind":"Pod"`, 1), "kind", `kind "Pod"`},
		"no uid":     {strings.Replace(good, `"uid":"uid-1",`, ``, 1), "no_uid", "request.uid is empty"},
		"no request": {`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, "no_request", "without request"},
		"not JSON":   {`{"apiVersion":`, "not_json", "not an AdmissionReview"},
	} {
		t.Run(name, func(t *testing.T) {
			if tc.body == good {
				t.Fatal("the test did not change the review")
			}
			reg := prometheus.NewRegistry()
			inj, err := New(testConfig(), ModeNative, NewMetrics(reg), newTestInjector(t, ModeNative, nil).log)
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			inj.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/inject", strings.NewReader(tc.body)))
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), tc.says) {
				t.Errorf("%d %q, want 400 saying %q", rec.Code, rec.Body.String(), tc.says)
			}
			var m dto.Metric
			if err := inj.metrics.badRequests.WithLabelValues(tc.reason).Write(&m); err != nil {
				t.Fatal(err)
			}
			if v := m.GetCounter().GetValue(); v != 1 {
				t.Errorf("bad_requests_total{reason=%q} = %v, want 1", tc.reason, v)
			}
		})
	}
}

func TestForwardBecomesTheSidecarsForwardArgument(t *testing.T) {
	inj := newTestInjector(t, ModeNative, func(c *Config) { c.Sidecar.Forward = "meshtrail-als.meshtrail.svc:4317" })
	a := admitTwice(t, inj, "shop", appPod(heavy()))
	c := container(a.pod, SidecarName)
	if c == nil || !contains(c.Args, "--forward=meshtrail-als.meshtrail.svc:4317") {
		t.Fatalf("sidecar args %v", c)
	}
	a = admit(t, newTestInjector(t, ModeNative, nil), "shop", appPod(heavy()))
	for _, arg := range container(a.pod, SidecarName).Args {
		if strings.HasPrefix(arg, "--forward") {
			t.Errorf("--forward without sidecar.forward: %v", arg)
		}
	}
	for _, bad := range []string{"als", "als:0", ":4317", "als:http"} {
		cfg := testConfig()
		cfg.Sidecar.Forward = bad
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "sidecar.forward") {
			t.Errorf("forward %q: %v", bad, err)
		}
	}
}

func TestPodLevelResourcesAreRaisedByTheSidecars(t *testing.T) {
	for _, mode := range []SidecarMode{ModeNative, ModeRegular} {
		t.Run(string(mode), func(t *testing.T) {
			pod := appPod(heavy())
			pod.Spec.Containers[0].Resources = corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("50Mi"), corev1.ResourceCPU: resource.MustParse("100m")},
			}
			pod.Spec.Resources = &corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("100Mi"), corev1.ResourceCPU: resource.MustParse("100m")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("200Mi")},
			}
			a := admitTwice(t, newTestInjector(t, mode, nil), "shop", pod)
			if container(a.pod, SidecarName) == nil {
				t.Fatalf("not injected: %q", a.resp.Warnings)
			}
			r := a.pod.Spec.Resources
			for _, c := range []struct {
				got  resource.Quantity
				want string
			}{
				{r.Requests[corev1.ResourceMemory], "164Mi"}, // + the sidecar's 64Mi request
				{r.Requests[corev1.ResourceCPU], "150m"},     // + its 50m
				{r.Limits[corev1.ResourceMemory], "456Mi"},   // + its 256Mi limit
			} {
				if c.got.Cmp(resource.MustParse(c.want)) != 0 {
					t.Errorf("pod-level resources %v, want %s", r, c.want)
				}
			}
			if _, ok := r.Limits[corev1.ResourceCPU]; ok {
				t.Error("a pod-level cpu limit was added where the pod had none")
			}
			if err := checkPodShape(a.pod); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestPodResourceCheckFollowsTheAPIServer(t *testing.T) {
	q := resource.MustParse
	sidecar := corev1.ContainerRestartPolicyAlways
	pod := appPod(nil)
	pod.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: q("50Mi")}
	pod.Spec.InitContainers = []corev1.Container{{Name: "tail", RestartPolicy: &sidecar, Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: q("64Mi")}}}}
	pod.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: q("100Mi")}}
	// The 422: 50Mi + a 64Mi sidecar (its request defaulted to its
	// limit) is over the pod's 100Mi.
	if err := checkPodShape(pod); err == nil || !strings.Contains(err.Error(), "aggregate container requests 114Mi") {
		t.Errorf("got %v", err)
	}
	pod.Spec.Resources.Requests[corev1.ResourceMemory] = q("114Mi")
	if err := checkPodShape(pod); err != nil {
		t.Error(err)
	}
	// A plain init container asking more than everything else together.
	pod.Spec.InitContainers = append([]corev1.Container{{Name: "migrate", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: q("1Gi")}}}}, pod.Spec.InitContainers...)
	if err := checkPodShape(pod); err == nil || !strings.Contains(err.Error(), "1Gi") {
		t.Errorf("got %v", err)
	}
	pod.Spec.InitContainers = pod.Spec.InitContainers[1:]
	pod.Spec.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: q("60Mi")}
	pod.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: q("70Mi")}
	if err := checkPodShape(pod); err == nil || !strings.Contains(err.Error(), "over spec.resources.limits[memory]") {
		t.Errorf("got %v", err)
	}
}

func TestAPodAtEtcdsSizeIsNotGrown(t *testing.T) {
	pod := appPod(heavy())
	// 1.5 MiB of environment: valid for the API server, at etcd's limit.
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "BLOB", Value: strings.Repeat("e", maxPodBytes-600)}}
	a := admit(t, newTestInjector(t, ModeNative, nil), "shop", pod)
	if container(a.pod, SidecarName) != nil {
		t.Fatal("injected into a pod the sidecar takes past etcd's limit")
	}
	if len(a.raw) > maxPodBytes+4096 {
		t.Errorf("the pod grew to %d bytes", len(a.raw))
	}
}
