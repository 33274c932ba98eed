package hostile

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshtrail/meshtrail/test/harness"
)

// injectServer is one `meshtrail inject` process on its default
// configuration (addresses, certificate and the Kubernetes version aside:
// no API server is asked).
type injectServer struct {
	p       *harness.Process
	url     string // https://HOST:PORT
	metrics string
	client  *http.Client
}

func startInject(t *testing.T) *injectServer {
	t.Helper()
	ca := harness.NewCA(t)
	cert, key := ca.Issue(t, "injector", "127.0.0.1").Write(t, t.TempDir(), "injector")
	addr, maddr := harness.FreeAddr(t), harness.FreeAddr(t)
	s := &injectServer{url: "https://" + addr, metrics: "http://" + maddr,
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.TLSClient()}}}
	s.p = harness.Start(t, "meshtrail-inject", nil, binary(t), "inject", "--listen", addr, "--metrics-listen", maddr,
		"--tls-cert", cert, "--tls-key", key, "--kubernetes-version", "1.34",
		"--shutdown-delay", "0s") // a quick stop between cases; serving is unchanged
	harness.Eventually(t, 20*time.Second, "injector ready", func() error {
		resp, err := s.client.Get(s.url + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	return s
}

// post sends body to /inject and returns the status and body.
func (s *injectServer) post(t *testing.T, body []byte) (int, []byte) {
	t.Helper()
	resp, err := s.client.Post(s.url+"/inject", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func heavyPod(ann map[string]string) *corev1.Pod {
	a := map[string]string{"meshtrail.io/log-volume": "20MiB/s", "meshtrail.io/log-paths": "/var/log/app/*.log"}
	for k, v := range ann {
		a[k] = v
	}
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", Annotations: a},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "shop/web:1"}}},
	}
}

func review(t *testing.T, pod *corev1.Pod) ([]byte, []byte) {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "uid-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: "shop",
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b, raw
}

// admit reviews pod and returns the response and the patched pod.
func (s *injectServer) admit(t *testing.T, pod *corev1.Pod) (*admissionv1.AdmissionResponse, *corev1.Pod) {
	t.Helper()
	body, raw := review(t, pod)
	code, out := s.post(t, body)
	if code != http.StatusOK {
		t.Fatalf("review answered %d: %s", code, out)
	}
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &rv); err != nil || rv.Response == nil {
		t.Fatalf("answer is no AdmissionReview: %v %.300s", err, out)
	}
	patched := raw
	if len(rv.Response.Patch) > 0 {
		p, err := jsonpatch.DecodePatch(rv.Response.Patch)
		if err != nil {
			t.Fatal(err)
		}
		if patched, err = p.Apply(raw); err != nil {
			t.Fatal(err)
		}
	}
	var got corev1.Pod
	if err := json.Unmarshal(patched, &got); err != nil {
		t.Fatal(err)
	}
	return rv.Response, &got
}

func (s *injectServer) checkGoodReview(t *testing.T) {
	t.Helper()
	resp, pod := s.admit(t, heavyPod(nil))
	if !resp.Allowed || len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Name != "meshtrail-tail" {
		t.Fatalf("a good review after the hostile input did not inject: %+v", resp)
	}
}

func injectCase(t *testing.T, name string, run func(t *testing.T, s *injectServer)) {
	t.Run(name, func(t *testing.T) {
		s := startInject(t)
		run(t, s)
		alive(t, s.p, s.url+"/healthz", s.client)
		s.checkGoodReview(t)
		checkPeak(t, s.p, "inject", injectPeakBound)
	})
}

func annotationBytes(pod *corev1.Pod) int {
	n := 0
	for k, v := range pod.Annotations {
		n += len(k) + len(v)
	}
	return n
}

// apiServerAnnotationLimit is the API server's bound on a pod's
// annotations (apimachinery TotalAnnotationSizeLimitB).
const apiServerAnnotationLimit = 256 << 10

func TestInjectHostileInput(t *testing.T) {
	skipShort(t)
	// Finding 3: valid pods the status annotation used to make invalid.
	for name, ann := range map[string]map[string]string{
		"finding3_60KiB_log_parser":         {"meshtrail.io/log-parser": strings.Repeat("<x>", 20<<10)},
		"finding3_130KiB_invalid_multiline": {"meshtrail.io/log-multiline": "(" + strings.Repeat(`"<`, 65<<10)},
		"finding3_parser_multiline_and_50KiB_tail_cpu_together": {
			"meshtrail.io/log-parser":    strings.Repeat("<x>", 20<<10),
			"meshtrail.io/log-multiline": "(" + strings.Repeat(`"<`, 65<<10),
			"meshtrail.io/tail-cpu":      strings.Repeat("9", 50<<10) + "parsecs",
		},
	} {
		injectCase(t, name, func(t *testing.T, s *injectServer) {
			pod := heavyPod(ann)
			if annotationBytes(pod) > apiServerAnnotationLimit {
				t.Fatal("the test pod is invalid already")
			}
			resp, got := s.admit(t, pod)
			if n := annotationBytes(got); n > apiServerAnnotationLimit {
				t.Fatalf("patched pod has %d bytes of annotations: the API server rejects it", n)
			}
			if !resp.Allowed || len(got.Spec.InitContainers) != 0 {
				t.Errorf("allowed=%v, init containers %d: an unhonourable pod is admitted unchanged", resp.Allowed, len(got.Spec.InitContainers))
			}
			if v := metric(scrape(t, s.metrics+"/metrics"), "meshtrail_injector_skipped_total", `reason="unhonourable"`); v != 1 {
				t.Errorf("skipped_total{unhonourable} = %v", v)
			}
		})
	}
	injectCase(t, "finding7_log_containers_names_istio_proxy", func(t *testing.T, s *injectServer) {
		pod := heavyPod(map[string]string{"meshtrail.io/log-containers": "istio-proxy", "meshtrail.io/log-paths": "/etc/istio/proxy/*.log"})
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "istio/proxyv2",
			VolumeMounts: []corev1.VolumeMount{{Name: "istio-envoy", MountPath: "/etc/istio/proxy"}}})
		pod.Spec.Volumes = []corev1.Volume{{Name: "istio-envoy", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		resp, got := s.admit(t, pod)
		if len(got.Spec.InitContainers) != 0 || len(got.Spec.Containers[1].VolumeMounts) != 1 {
			t.Errorf("Istio's container or volumes were touched: %s", resp.Patch)
		}
		warned := false
		for _, w := range resp.Warnings {
			warned = warned || strings.Contains(w, `"istio-proxy" is Istio's container`)
		}
		if !warned {
			t.Errorf("warnings %q", resp.Warnings)
		}
		if v := metric(scrape(t, s.metrics+"/metrics"), "meshtrail_injector_skipped_total", `reason="unhonourable"`); v != 1 {
			t.Errorf("skipped_total{unhonourable} = %v", v)
		}
	})
	// Finding 8 and the bodies that already got a 400.
	good, _ := review(t, heavyPod(nil))
	deep := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":` + strings.Repeat("[", 20_000) + strings.Repeat("]", 20_000) + `}}`
	for _, c := range []struct {
		name, body, reason, says string
	}{
		{"finding8_v1beta1_review", strings.Replace(string(good), `"admission.k8s.io/v1"`, `"admission.k8s.io/v1beta1"`, 1), "api_version", "apiVersion"},
		{"finding8_foo_v9_review", strings.Replace(string(good), `"admission.k8s.io/v1"`, `"foo/v9"`, 1), "api_version", "apiVersion"},
		{"finding8_review_without_uid", strings.Replace(string(good), `"uid":"uid-1",`, "", 1), "no_uid", "uid"},
		{"garbage_body", "\x00\xff not json", "not_json", "not an AdmissionReview"},
		{"deep_json_nesting", deep, "not_json", "not an AdmissionReview"},
		{"20MiB_body", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","x":"` + strings.Repeat("x", 20<<20) + `"}`, "body", "over"},
	} {
		injectCase(t, c.name, func(t *testing.T, s *injectServer) {
			if c.body == string(good) {
				t.Fatal("the case did not change the review")
			}
			code, out := s.post(t, []byte(c.body))
			if code != http.StatusBadRequest || !strings.Contains(string(out), c.says) {
				t.Errorf("answered %d %.200q, want 400 naming %q", code, out, c.says)
			}
			if v := metric(scrape(t, s.metrics+"/metrics"), "meshtrail_injector_bad_requests_total", `reason="`+c.reason+`"`); v != 1 {
				t.Errorf("bad_requests_total{%s} = %v", c.reason, v)
			}
		})
	}
	injectCase(t, "backtracking_multiline_regexp", func(t *testing.T, s *injectServer) {
		// Go's regexp is linear: a pattern that backtracks exponentially
		// elsewhere compiles and is passed on.
		resp, got := s.admit(t, heavyPod(map[string]string{"meshtrail.io/log-multiline": `^(a+)+$|(a|aa)+b|(.*a){20}`}))
		if !resp.Allowed || len(got.Spec.InitContainers) != 1 {
			t.Errorf("not injected: %q", resp.Warnings)
		}
		if v := metric(scrape(t, s.metrics+"/metrics"), "meshtrail_injector_injected_total", `mode="native"`); v != 1 {
			t.Errorf("injected_total = %v", v)
		}
	})
	injectCase(t, "plaintext_to_TLS", func(t *testing.T, s *injectServer) {
		plain := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{}}}
		resp, err := plain.Post(strings.Replace(s.url, "https", "http", 1)+"/inject", "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("plain HTTP to the TLS port answered %d", resp.StatusCode)
			}
		}
		if v := metric(scrape(t, s.metrics+"/metrics"), "meshtrail_injector_reviews_total", `result="allowed"`); v != 0 {
			t.Errorf("a plaintext request was reviewed: %v", v)
		}
	})
}
