package injector_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/injector"
	"github.com/meshtrail/meshtrail/test/harness"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// stack is a real kube-apiserver + etcd with the injector registered as a
// mutating webhook, served in-process over HTTPS on 127.0.0.1.
type stack struct {
	kube        *harness.Kube
	ca          *harness.CA
	cfg         injector.Config
	certFile    string
	keyFile     string
	metricsURL  string
	stopWebhook func() error
}

const (
	nsEnabled  = "shop"     // meshtrail-injection=enabled
	nsPlain    = "plain"    // no label
	nsDisabled = "disabled" // meshtrail-injection=disabled
)

func startStack(tb testing.TB) *stack {
	tb.Helper()
	s := startUnregistered(tb)
	s.register(tb)
	return s
}

// startUnregistered is startStack before the MutatingWebhookConfiguration
// exists: the API server does not know the injector yet.
func startUnregistered(tb testing.TB) *stack {
	tb.Helper()
	kube := harness.StartKube(tb)
	ca := harness.NewCA(tb)
	s := &stack{kube: kube, ca: ca}
	s.certFile, s.keyFile = ca.Issue(tb, "meshtrail-injector", "127.0.0.1").Write(tb, tb.TempDir(), "webhook")

	cfg := injector.DefaultConfig()
	cfg.Listen, cfg.MetricsListen = harness.FreeAddr(tb), harness.FreeAddr(tb)
	cfg.TLSCert, cfg.TLSKey = s.certFile, s.keyFile
	cfg.Sidecar.Image = "registry.example/meshtrail:e2e"
	cfg.Mode = injector.ModeAuto // resolved from the real API server's /version
	cfg.ShutdownDelay.Duration = 0
	s.cfg, s.metricsURL = cfg, "http://"+cfg.MetricsListen+"/metrics"

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	discover := func(ctx context.Context) (string, error) {
		return injector.ServerVersion(ctx, kube.Client, kube.URL, kube.Token)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	go func() { done <- injector.Run(ctx, cfg, prometheus.NewRegistry(), discover, log) }()
	var once atomic.Bool
	s.stopWebhook = func() error {
		if !once.CompareAndSwap(false, true) {
			return nil
		}
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			return fmt.Errorf("injector did not stop in 15s")
		}
	}
	tb.Cleanup(func() { _ = s.stopWebhook() })
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.TLSClient()}}
	harness.Eventually(tb, 10*time.Second, "injector /readyz", func() error {
		resp, err := client.Get("https://" + cfg.Listen + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})

	kube.EnsureNamespace(tb, nsEnabled, map[string]string{injector.NamespaceLabel: "enabled"})
	kube.EnsureNamespace(tb, nsPlain, nil)
	kube.EnsureNamespace(tb, nsDisabled, map[string]string{injector.NamespaceLabel: "disabled"})
	kube.EnsureNamespace(tb, "kube-system", nil)
	return s
}

// register creates the MutatingWebhookConfiguration and waits until the API
// server calls the injector.
func (s *stack) register(tb testing.TB) {
	tb.Helper()
	cfg, ca, kube := s.cfg, s.ca, s.kube
	// failurePolicy Fail: a webhook error shows up as a rejected pod rather
	// than hiding behind Ignore.
	hook := injector.WebhookConfiguration(injector.WebhookOptions{
		URL: "https://" + cfg.Listen + "/inject", CABundle: ca.CertPEM, FailurePolicy: admissionregistrationv1.Fail,
	})
	kube.MustDo(tb, http.MethodPost, "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", hook, http.StatusCreated)
	// The API server picks a new configuration up asynchronously.
	harness.Eventually(tb, 60*time.Second, "webhook in effect", func() error {
		pod, _, err := s.create(nsEnabled, heavyPod("probe"), true)
		if err != nil {
			return err
		}
		if findContainer(pod, injector.SidecarName) == nil {
			return fmt.Errorf("dry-run pod not mutated yet")
		}
		return nil
	})
}

// create posts a pod (server-side dry run when dryRun) and returns what the
// API server stored and the warnings it sent back.
func (s *stack) create(ns string, pod *corev1.Pod, dryRun bool) (*corev1.Pod, []string, error) {
	path := "/api/v1/namespaces/" + ns + "/pods"
	if dryRun {
		path += "?dryRun=All"
	}
	resp, body, err := s.kube.Request(context.Background(), http.MethodPost, path, pod)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusCreated {
		return nil, nil, fmt.Errorf("create pod in %s: status %d: %s", ns, resp.StatusCode, body)
	}
	var out corev1.Pod
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, nil, err
	}
	return &out, resp.Header.Values("Warning"), nil
}

// mustCreate creates the pod for real and reads it back from the API
// server. No pod may ever be rejected: the webhook policy is Fail, so this
// also catches every invalid patch and webhook error.
func (s *stack) mustCreate(t testing.TB, ns string, pod *corev1.Pod) (*corev1.Pod, []string) {
	t.Helper()
	created, warnings, err := s.create(ns, pod, false)
	if err != nil {
		t.Fatal(err)
	}
	body := s.kube.MustDo(t, http.MethodGet, "/api/v1/namespaces/"+ns+"/pods/"+created.Name, nil, http.StatusOK)
	var stored corev1.Pod
	if err := json.Unmarshal(body, &stored); err != nil {
		t.Fatal(err)
	}
	return &stored, warnings
}

func heavyPod(name string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}, Annotations: map[string]string{
			injector.LogVolumeAnnotation: "20MiB/s", injector.LogPathsAnnotation: "/var/log/app/*.log",
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "shop/web:1"}}},
	}
}

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
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

func podStatus(t testing.TB, pod *corev1.Pod) (injector.Status, bool) {
	t.Helper()
	v, ok := pod.Annotations[injector.StatusAnnotation]
	if !ok {
		return injector.Status{}, false
	}
	var st injector.Status
	if err := json.Unmarshal([]byte(v), &st); err != nil {
		t.Fatalf("status annotation %q: %v", v, err)
	}
	return st, true
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end against a real kube-apiserver: run without -short (make test)")
	}
	s := startStack(t)

	t.Run("injects a native sidecar in a labelled namespace", func(t *testing.T) {
		pod, warnings := s.mustCreate(t, nsEnabled, heavyPod("web"))
		st, ok := podStatus(t, pod)
		if !ok || st.Decision != injector.DecisionSidecar || st.Mode != injector.ModeNative {
			t.Fatalf("status %+v (auto mode on Kubernetes 1.34 must be native)", st)
		}
		sc := findContainer(pod, injector.SidecarName)
		if sc == nil || len(pod.Spec.InitContainers) != 1 || sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Fatalf("sidecar %+v", pod.Spec.InitContainers)
		}
		if sc.SecurityContext == nil || !*sc.SecurityContext.ReadOnlyRootFilesystem || sc.Image != "registry.example/meshtrail:e2e" {
			t.Errorf("sidecar %+v", sc)
		}
		if len(pod.Spec.Containers[0].VolumeMounts) == 0 {
			t.Errorf("app got no log mount")
		}
		if len(warnings) != 0 {
			t.Errorf("warnings %q", warnings)
		}
	})

	t.Run("opt-in label outside labelled namespaces", func(t *testing.T) {
		p := heavyPod("optin")
		p.Labels[injector.InjectKey] = "true"
		pod, _ := s.mustCreate(t, nsPlain, p)
		if findContainer(pod, injector.SidecarName) == nil {
			t.Fatal("not injected")
		}
	})

	for name, tc := range map[string]struct {
		ns  string
		pod func() *corev1.Pod
	}{
		"unlabelled namespace, unlabelled pod": {nsPlain, func() *corev1.Pod { return heavyPod("plain") }},
		"opt-out label":                        {nsEnabled, func() *corev1.Pod { p := heavyPod("out-l"); p.Labels[injector.InjectKey] = "false"; return p }},
		"opt-out annotation": {nsEnabled, func() *corev1.Pod {
			p := heavyPod("out-a")
			p.Annotations[injector.InjectKey] = "false"
			return p
		}},
		"disabled namespace wins over pod opt-in": {nsDisabled, func() *corev1.Pod { p := heavyPod("dis"); p.Labels[injector.InjectKey] = "true"; return p }},
		"system namespace":                        {"kube-system", func() *corev1.Pod { p := heavyPod("sys"); p.Labels[injector.InjectKey] = "true"; return p }},
	} {
		t.Run(name, func(t *testing.T) {
			pod, _ := s.mustCreate(t, tc.ns, tc.pod())
			if _, ok := podStatus(t, pod); ok || findContainer(pod, injector.SidecarName) != nil {
				t.Fatalf("pod touched: annotations %v", pod.Annotations)
			}
			// Only the ServiceAccount plugin's kube-api-access volume.
			for _, v := range pod.Spec.Volumes {
				if strings.HasPrefix(v.Name, "meshtrail-") {
					t.Fatalf("volume %s added", v.Name)
				}
			}
		})
	}

	t.Run("light pods are left to the DaemonSet", func(t *testing.T) {
		p := heavyPod("light")
		p.Annotations[injector.LogVolumeAnnotation] = "100KiB/s"
		pod, _ := s.mustCreate(t, nsEnabled, p)
		if st, _ := podStatus(t, pod); st.Decision != injector.DecisionDaemonSet || findContainer(pod, injector.SidecarName) != nil {
			t.Fatalf("status %+v", st)
		}
	})

	t.Run("bad annotations: admitted unchanged with a warning", func(t *testing.T) {
		p := heavyPod("bad")
		p.Annotations[injector.LogParserAnnotation] = "xml"
		pod, warnings := s.mustCreate(t, nsEnabled, p)
		if st, _ := podStatus(t, pod); st.Decision != injector.DecisionNone || findContainer(pod, injector.SidecarName) != nil {
			t.Fatalf("status %+v", st)
		}
		if len(warnings) != 1 || !strings.Contains(warnings[0], `unknown parser \"xml\"`) && !strings.Contains(warnings[0], `unknown parser "xml"`) {
			t.Fatalf("warnings %q", warnings)
		}
	})

	t.Run("Job pod with generateName, init containers and an existing log volume", func(t *testing.T) {
		p := heavyPod("")
		p.Name, p.GenerateName = "", "job-"
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
		p.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "busybox"}}
		p.Spec.Volumes = []corev1.Volume{{Name: "logs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "logs", MountPath: "/var/log"}}
		pod, _ := s.mustCreate(t, nsEnabled, p)
		if len(pod.Spec.InitContainers) != 2 || pod.Spec.InitContainers[1].Name != injector.SidecarName {
			t.Fatalf("init containers %+v", pod.Spec.InitContainers)
		}
		st, _ := podStatus(t, pod)
		if strings.Join(st.Mounts, " ") != "logs:/var/log meshtrail-tail-state:/var/lib/meshtrail-tail" {
			t.Fatalf("mounts %v", st.Mounts)
		}
	})

	t.Run("awkward shapes are never rejected", func(t *testing.T) {
		emptyDir := corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
		for name, tc := range map[string]struct {
			pod    func() *corev1.Pod
			inject bool
		}{
			"our volume names taken": {func() *corev1.Pod {
				p := heavyPod("taken")
				p.Spec.Volumes = []corev1.Volume{{Name: "meshtrail-logs", VolumeSource: emptyDir}, {Name: "meshtrail-tail-state", VolumeSource: emptyDir}}
				p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "meshtrail-logs", MountPath: "/data"}}
				return p
			}, true},
			"user container named meshtrail-tail": {func() *corev1.Pod {
				p := heavyPod("clash")
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: injector.SidecarName, Image: "x"})
				return p
			}, false},
			"two log containers, nested and repeated paths, a subPath mount": {func() *corev1.Pod {
				p := heavyPod("multi")
				p.Annotations[injector.LogContainersAnnotation] = "app,worker"
				p.Annotations[injector.LogPathsAnnotation] = "/var/log/app/*.log,/var/log/app/sub/*.log,/srv/logs/x.log"
				p.Spec.Volumes = []corev1.Volume{{Name: "srv", VolumeSource: emptyDir}}
				p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "srv", MountPath: "/srv", SubPath: "app"}}
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "worker", Image: "w",
					VolumeMounts: []corev1.VolumeMount{{Name: "srv", MountPath: "/srv", SubPath: "app"}}})
				return p
			}, true},
			"istio-injected pod": {func() *corev1.Pod {
				p := heavyPod("istio")
				p.Annotations["sidecar.istio.io/status"] = `{"containers":["istio-proxy"]}`
				p.Spec.InitContainers = []corev1.Container{{Name: "istio-init", Image: "istio/proxyv2"}}
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "istio/proxyv2",
					VolumeMounts: []corev1.VolumeMount{{Name: "istio-envoy", MountPath: "/etc/istio/proxy"}}})
				p.Spec.Volumes = []corev1.Volume{{Name: "istio-envoy", VolumeSource: emptyDir}}
				return p
			}, true},
			"log path on the state directory": {func() *corev1.Pod {
				p := heavyPod("state")
				p.Annotations[injector.LogPathsAnnotation] = "/var/lib/meshtrail-tail/*.log"
				return p
			}, false},
		} {
			t.Run(name, func(t *testing.T) {
				pod, _ := s.mustCreate(t, nsEnabled, tc.pod())
				st, _ := podStatus(t, pod)
				if got := findContainer(pod, injector.SidecarName) != nil && st.Decision == injector.DecisionSidecar; got != tc.inject {
					t.Fatalf("injected=%v, want %v; status %+v", got, tc.inject, st)
				}
			})
		}
	})

	t.Run("regular sidecar by annotation", func(t *testing.T) {
		p := heavyPod("regular")
		p.Annotations[injector.SidecarModeAnnotation] = "regular"
		pod, _ := s.mustCreate(t, nsEnabled, p)
		sc := findContainer(pod, injector.SidecarName)
		if sc == nil || len(pod.Spec.Containers) != 2 || sc.Lifecycle == nil || sc.Lifecycle.PreStop == nil {
			t.Fatalf("containers %+v", pod.Spec.Containers)
		}
	})

	t.Run("pod-level resources are raised by the sidecar's", func(t *testing.T) {
		// Issue 12: without the raise the API server answers 422
		// "must be greater than or equal to aggregate container requests
		// of 114Mi" whatever the failurePolicy.
		for _, mode := range []injector.SidecarMode{injector.ModeNative, injector.ModeRegular} {
			p := heavyPod("podres-" + string(mode))
			p.Annotations[injector.SidecarModeAnnotation] = string(mode)
			p.Spec.Containers[0].Resources = corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("50Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("100Mi")},
			}
			p.Spec.Resources = &corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("100Mi"), corev1.ResourceCPU: resource.MustParse("100m")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("200Mi"), corev1.ResourceCPU: resource.MustParse("500m")},
			}
			pod, _ := s.mustCreate(t, nsEnabled, p)
			if findContainer(pod, injector.SidecarName) == nil {
				t.Fatalf("%s: not injected", mode)
			}
			r := pod.Spec.Resources
			if r == nil {
				t.Fatalf("%s: the API server dropped spec.resources (PodLevelResources off?)", mode)
			}
			for _, c := range []struct {
				got  resource.Quantity
				want string
			}{
				{r.Requests[corev1.ResourceMemory], "164Mi"}, {r.Requests[corev1.ResourceCPU], "150m"},
				{r.Limits[corev1.ResourceMemory], "456Mi"}, {r.Limits[corev1.ResourceCPU], "1500m"},
			} {
				if c.got.Cmp(resource.MustParse(c.want)) != 0 {
					t.Errorf("%s: pod-level resources %v, want %s", mode, r, c.want)
				}
			}
		}
	})

	t.Run("annotations the status cannot quote stay valid", func(t *testing.T) {
		// Issue 15, finding 3: 240 KiB of annotations, valid; the status
		// used to quote them past the API server's 256 KiB.
		p := heavyPod("long-annotations")
		p.Annotations[injector.LogParserAnnotation] = strings.Repeat("<x>", 20<<10)
		p.Annotations[injector.LogMultilineAnnotation] = "(" + strings.Repeat(`"<`, 65<<10)
		p.Annotations[injector.CPUAnnotation] = strings.Repeat("9", 50<<10) + "parsecs"
		pod, warnings := s.mustCreate(t, nsEnabled, p)
		if findContainer(pod, injector.SidecarName) != nil {
			t.Error("injected despite unhonourable annotations")
		}
		if st, ok := podStatus(t, pod); !ok || st.Decision != injector.DecisionNone {
			t.Errorf("status %+v", st)
		}
		if len(warnings) == 0 {
			t.Error("no warning")
		}
	})

	t.Run("Istio's container is not a log container", func(t *testing.T) {
		p := heavyPod("istio-logs")
		p.Annotations[injector.LogContainersAnnotation] = "istio-proxy"
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "istio/proxyv2"})
		pod, warnings := s.mustCreate(t, nsEnabled, p)
		if findContainer(pod, injector.SidecarName) != nil {
			t.Error("injected")
		}
		for _, m := range pod.Spec.Containers[1].VolumeMounts {
			if strings.HasPrefix(m.Name, "meshtrail-") { // (the API server adds the service account token's)
				t.Errorf("Istio's container got mount %+v", m)
			}
		}
		if !strings.Contains(strings.Join(warnings, "\n"), "is Istio's container") {
			t.Errorf("warnings %q", warnings)
		}
	})

	t.Run("re-creating an injected pod changes nothing", func(t *testing.T) {
		first, _ := s.mustCreate(t, nsEnabled, heavyPod("again"))
		again := &corev1.Pod{TypeMeta: first.TypeMeta, Spec: first.Spec, ObjectMeta: metav1.ObjectMeta{
			Name: "again-2", Labels: first.Labels, Annotations: first.Annotations}}
		again.Spec.NodeName = ""
		pod, _ := s.mustCreate(t, nsEnabled, again)
		if len(pod.Spec.InitContainers) != 1 || len(pod.Spec.Volumes) != len(first.Spec.Volumes) ||
			pod.Annotations[injector.StatusAnnotation] != first.Annotations[injector.StatusAnnotation] {
			t.Fatalf("second injection: init %d volumes %d", len(pod.Spec.InitContainers), len(pod.Spec.Volumes))
		}
	})

	t.Run("reinvoked after another mutating webhook (Istio-like)", func(t *testing.T) {
		before := s.metric(t, `meshtrail_injector_skipped_total{reason="already-injected"}`)
		fake := startFakeIstio(t, s)
		p := heavyPod("meshed")
		p.Labels["fake-istio"] = "inject"
		var pod *corev1.Pod
		// The fake webhook's configuration also takes effect asynchronously.
		harness.Eventually(t, 30*time.Second, "fake istio webhook in effect", func() error {
			dry, _, err := s.create(nsEnabled, p, true)
			if err != nil {
				return err
			}
			if findContainer(dry, "istio-proxy") == nil {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		pod, _ = s.mustCreate(t, nsEnabled, p)
		if findContainer(pod, "istio-proxy") == nil || findContainer(pod, injector.SidecarName) == nil || len(pod.Spec.InitContainers) != 2 {
			t.Fatalf("init %+v containers %+v", pod.Spec.InitContainers, pod.Spec.Containers)
		}
		if fake.calls.Load() == 0 {
			t.Fatal("fake istio never called")
		}
		// The API server re-invoked us after the fake changed the pod; the
		// second pass found the sidecar and left the pod alone.
		if after := s.metric(t, `meshtrail_injector_skipped_total{reason="already-injected"}`); after <= before {
			t.Fatalf("no reinvocation seen: already-injected %v -> %v", before, after)
		}
	})

	t.Run("serving certificate rotation", func(t *testing.T) {
		kp := s.ca.Issue(t, "meshtrail-injector-rotated", "127.0.0.1")
		dir := t.TempDir()
		c, k := kp.Write(t, dir, "new")
		// Replace the files in place, as a Secret volume update would.
		for _, f := range [][2]string{{c, s.certFile}, {k, s.keyFile}} {
			b, _ := os.ReadFile(f[0])
			if err := os.WriteFile(f[1]+".tmp", b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(f[1]+".tmp", f[1]); err != nil {
				t.Fatal(err)
			}
			future := time.Now().Add(time.Minute)
			_ = os.Chtimes(f[1], future, future)
		}
		harness.Eventually(t, 10*time.Second, "rotated certificate served", func() error {
			conn, err := tls.Dial("tcp", s.cfg.Listen, s.ca.TLSClient())
			if err != nil {
				return err
			}
			defer conn.Close()
			if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "meshtrail-injector-rotated" {
				return fmt.Errorf("still serving %s", cn)
			}
			return nil
		})
		pod, _ := s.mustCreate(t, nsEnabled, heavyPod("after-rotation"))
		if findContainer(pod, injector.SidecarName) == nil {
			t.Fatal("not injected after rotation")
		}
	})

	t.Run("strict injector denies with the reason", func(t *testing.T) {
		// A second, strict injector behind its own configuration, selecting
		// namespaces labelled strict-injection=enabled (which the first
		// webhook's selectors do not match).
		cfg := s.cfg
		cfg.Listen, cfg.MetricsListen, cfg.Strict, cfg.Mode = harness.FreeAddr(t), "", true, injector.ModeNative
		cfg.ShutdownDelay.Duration = 0
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- injector.Run(ctx, cfg, prometheus.NewRegistry(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
		}()
		t.Cleanup(func() { cancel(); <-done })
		hook := injector.WebhookConfiguration(injector.WebhookOptions{
			Name: "meshtrail-injector-strict", URL: "https://" + cfg.Listen + "/inject", CABundle: s.ca.CertPEM,
		})
		hook.Webhooks = hook.Webhooks[:1]
		hook.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"strict-injection": "enabled"}}
		s.kube.MustDo(t, http.MethodPost, "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", hook, http.StatusCreated)
		s.kube.EnsureNamespace(t, "strict", map[string]string{"strict-injection": "enabled"})
		p := heavyPod("strict-bad")
		p.Annotations[injector.LogVolumeAnnotation] = "lots"
		var msg string
		harness.Eventually(t, 30*time.Second, "strict webhook in effect", func() error {
			_, _, err := s.create("strict", p, true)
			if err == nil {
				return fmt.Errorf("admitted")
			}
			msg = err.Error()
			return nil
		})
		if !strings.Contains(msg, "status 403") || !strings.Contains(msg, `meshtrail injector (strict): meshtrail.io/log-volume: \"lots\" is not a log volume`) {
			t.Fatalf("denial: %s", msg)
		}
		// A good pod in the same namespace is injected.
		pod, _ := s.mustCreate(t, "strict", heavyPod("strict-good"))
		if findContainer(pod, injector.SidecarName) == nil {
			t.Fatal("not injected")
		}
	})

	t.Run("metrics", func(t *testing.T) {
		if n := s.metric(t, `meshtrail_injector_injected_total{mode="native"}`); n < 5 {
			t.Errorf("injected native %v", n)
		}
		if n := s.metric(t, `meshtrail_injector_skipped_total{reason="unhonourable"}`); n < 1 {
			t.Errorf("unhonourable %v", n)
		}
		// The self-check never had to drop an injection of ours.
		if n := s.metric(t, `meshtrail_injector_reviews_total{result="error"}`); n != 0 {
			t.Errorf("reviews with errors: %v", n)
		}
		if n := s.metric(t, `meshtrail_injector_review_duration_seconds_count`); n < 10 {
			t.Errorf("latency count %v", n)
		}
	})

	if err := s.stopWebhook(); err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}
}

// metric reads one sample from the injector's /metrics (0 when absent).
func (s *stack) metric(t testing.TB, series string) float64 {
	t.Helper()
	resp, err := http.Get(s.metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			fmt.Sscanf(v, "%g", &f)
			return f
		}
	}
	return 0
}

// fakeIstio is a second mutating webhook, registered after ours, that adds
// istio-init and istio-proxy the way Istio's injector does, so that the API
// server re-invokes ours (reinvocationPolicy IfNeeded).
type fakeIstio struct{ calls atomic.Int64 }

func startFakeIstio(t *testing.T, s *stack) *fakeIstio {
	f := &fakeIstio{}
	addr := harness.FreeAddr(t)
	certFile, keyFile := s.ca.Issue(t, "fake-istio", "127.0.0.1").Write(t, t.TempDir(), "istio")
	mux := http.NewServeMux()
	mux.HandleFunc("/inject", func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		var pod corev1.Pod
		_ = json.Unmarshal(review.Request.Object.Raw, &pod)
		resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		if findContainer(&pod, "istio-proxy") == nil {
			patch := []map[string]any{
				{"op": "add", "path": "/spec/containers/-", "value": corev1.Container{Name: "istio-proxy", Image: "istio/proxyv2"}},
				{"op": "add", "path": "/spec/initContainers/0", "value": corev1.Container{Name: "istio-init", Image: "istio/proxyv2"}},
				{"op": "add", "path": "/metadata/annotations/sidecar.istio.io~1status", "value": `{"containers":["istio-proxy"]}`},
			}
			if len(pod.Spec.InitContainers) == 0 {
				patch[1] = map[string]any{"op": "add", "path": "/spec/initContainers", "value": []corev1.Container{{Name: "istio-init", Image: "istio/proxyv2"}}}
			}
			resp.Patch, _ = json.Marshal(patch)
			pt := admissionv1.PatchTypeJSONPatch
			resp.PatchType = &pt
		}
		review.Response, review.Request = resp, nil
		_ = json.NewEncoder(w).Encode(review)
	})
	srv := &http.Server{Addr: addr, Handler: mux}
	go func() { _ = srv.ListenAndServeTLS(certFile, keyFile) }()
	t.Cleanup(func() { _ = srv.Close() })

	hook := injector.WebhookConfiguration(injector.WebhookOptions{
		Name: "zz-fake-istio", URL: "https://" + addr + "/inject", CABundle: s.ca.CertPEM, FailurePolicy: admissionregistrationv1.Fail,
	})
	hook.Webhooks = hook.Webhooks[:1]
	hook.Webhooks[0].Name = "fake.istio.io"
	hook.Webhooks[0].ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"fake-istio": "inject"}}
	never := admissionregistrationv1.NeverReinvocationPolicy
	hook.Webhooks[0].ReinvocationPolicy = &never
	s.kube.MustDo(t, http.MethodPost, "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", hook, http.StatusCreated)
	return f
}
