package injector

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestInjectsNativeSidecarWithEmptyDir(t *testing.T) {
	inj := newTestInjector(t, ModeNative, nil)
	a := admitTwice(t, inj, "shop", appPod(heavy(LogParserAnnotation, "json", LogMultilineAnnotation, `^\d{4}-`, LogSinksAnnotation, "loki,es")))
	pod := a.pod
	if len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Name != SidecarName {
		t.Fatalf("init containers %+v", pod.Spec.InitContainers)
	}
	sc := &pod.Spec.InitContainers[0]
	if sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("native sidecar restartPolicy %v", sc.RestartPolicy)
	}
	if sc.Lifecycle != nil {
		t.Errorf("native sidecar needs no preStop: %+v", sc.Lifecycle)
	}
	wantArgs := []string{"--paths=/var/log/app/*.log", "--parser=json", "--state-dir=" + stateDir, `--multiline=^\d{4}-`, "--sinks=loki,es"}
	if !reflect.DeepEqual(sc.Args, wantArgs) || !reflect.DeepEqual(sc.Command, []string{"meshtrail", "tail"}) {
		t.Errorf("command %q args %q", sc.Command, sc.Args)
	}
	if sc.Image != "registry.example/meshtrail:test" {
		t.Errorf("image %q", sc.Image)
	}
	env := map[string]string{}
	for _, e := range sc.Env {
		env[e.Name] = e.ValueFrom.FieldRef.FieldPath
	}
	if !reflect.DeepEqual(env, map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_UID": "metadata.uid", "NODE_NAME": "spec.nodeName"}) {
		t.Errorf("downward env %v", env)
	}
	s := sc.SecurityContext
	if s == nil || !*s.RunAsNonRoot || !*s.ReadOnlyRootFilesystem || *s.AllowPrivilegeEscalation || s.Capabilities == nil ||
		!reflect.DeepEqual(s.Capabilities.Drop, []corev1.Capability{"ALL"}) || s.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("securityContext not hardened: %+v", s)
	}
	if q := sc.Resources.Requests[corev1.ResourceMemory]; q.String() != "64Mi" {
		t.Errorf("default memory request %s", q.String())
	}
	// The app's log directory is on no volume: an emptyDir, shared.
	if v := volume(pod, "meshtrail-logs"); v == nil || v.EmptyDir == nil {
		t.Fatalf("volumes %+v", pod.Spec.Volumes)
	}
	if m := mountAt(&pod.Spec.Containers[0], "/var/log/app"); m == nil || m.Name != "meshtrail-logs" || m.ReadOnly {
		t.Errorf("app mount %+v", pod.Spec.Containers[0].VolumeMounts)
	}
	if m := mountAt(sc, "/var/log/app"); m == nil || m.Name != "meshtrail-logs" || !m.ReadOnly {
		t.Errorf("sidecar mount %+v", sc.VolumeMounts)
	}
	if m := mountAt(sc, stateDir); m == nil || m.ReadOnly {
		t.Errorf("state mount %+v", sc.VolumeMounts)
	}
	st := status(t, pod)
	want := Status{Decision: DecisionSidecar, Mode: ModeNative, Container: SidecarName,
		Reason:  "log volume 20MiB/s is at or over the sidecar threshold 5MiB/s",
		Volumes: []string{"meshtrail-logs", "meshtrail-tail-state"},
		Mounts:  []string{"meshtrail-logs:/var/log/app", "meshtrail-tail-state:" + stateDir}}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("status\n got %+v\nwant %+v", st, want)
	}
	if len(a.resp.Warnings) != 0 {
		t.Errorf("warnings %q", a.resp.Warnings)
	}
}

func TestMountsTheVolumeTheAppAlreadyWritesTo(t *testing.T) {
	inj := newTestInjector(t, ModeNative, nil)
	pod := appPod(heavy(LogPathsAnnotation, "/var/log/app/*.log,/var/log/app/audit/*.json"))
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "logs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web"}}}},
	}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{
		{Name: "config", MountPath: "/etc/web"},
		{Name: "logs", MountPath: "/var/log", SubPath: "web"},
	}
	a := admitTwice(t, inj, "shop", pod)
	sc := container(a.pod, SidecarName)
	if sc == nil {
		t.Fatal("not injected")
	}
	m := mountAt(sc, "/var/log")
	if m == nil || m.Name != "logs" || m.SubPath != "web" || !m.ReadOnly {
		t.Fatalf("sidecar mounts %+v", sc.VolumeMounts)
	}
	if len(sc.VolumeMounts) != 2 {
		t.Errorf("sidecar mounts one log volume once and its state: %+v", sc.VolumeMounts)
	}
	if volume(a.pod, "meshtrail-logs") != nil || len(a.pod.Spec.Volumes) != 3 {
		t.Errorf("no new log volume wanted: %+v", a.pod.Spec.Volumes)
	}
	if !reflect.DeepEqual(a.pod.Spec.Containers[0], pod.Spec.Containers[0]) {
		t.Errorf("app container changed: %+v", a.pod.Spec.Containers[0])
	}
}

func TestAppendsAfterExistingInitContainers(t *testing.T) {
	inj := newTestInjector(t, ModeNative, nil)
	pod := appPod(heavy())
	pod.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "shop/migrate:1"}, {Name: "warm", Image: "shop/warm:1"}}
	a := admitTwice(t, inj, "shop", pod)
	names := []string{}
	for _, c := range a.pod.Spec.InitContainers {
		names = append(names, c.Name)
	}
	if !reflect.DeepEqual(names, []string{"migrate", "warm", SidecarName}) {
		t.Fatalf("init containers %v", names)
	}
}

func TestSeveralContainersOnlyTheLogContainerGetsTheVolume(t *testing.T) {
	inj := newTestInjector(t, ModeNative, nil)
	pod := appPod(heavy(defaultContainerAnnotation, "api"))
	pod.Spec.Containers = []corev1.Container{
		{Name: "proxy", Image: "nginx", VolumeMounts: []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}}},
		{Name: "api", Image: "shop/api:1"},
	}
	pod.Spec.Volumes = []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	a := admitTwice(t, inj, "shop", pod)
	if got := a.pod.Spec.Containers[0].VolumeMounts; len(got) != 1 {
		t.Errorf("proxy mounts changed: %+v", got)
	}
	if m := mountAt(&a.pod.Spec.Containers[1], "/var/log/app"); m == nil {
		t.Errorf("api container has no log mount: %+v", a.pod.Spec.Containers[1].VolumeMounts)
	}

	// Both, explicitly: each gets the emptyDir.
	pod.Annotations[LogContainersAnnotation] = "proxy, api"
	a = admitTwice(t, inj, "shop", pod)
	for _, c := range a.pod.Spec.Containers[:2] {
		if mountAt(&c, "/var/log/app") == nil {
			t.Errorf("%s has no log mount", c.Name)
		}
	}
	if n := len(a.pod.Spec.Volumes); n != 3 {
		t.Errorf("want cache + one log emptyDir + state, got %+v", a.pod.Spec.Volumes)
	}
}

func TestClashingLogVolumesAcrossContainers(t *testing.T) {
	inj := newTestInjector(t, ModeNative, nil)
	pod := appPod(heavy(LogContainersAnnotation, "a,b", LogPathsAnnotation, "/logs/*.log"))
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "va", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "vb", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	pod.Spec.Containers = []corev1.Container{
		{Name: "a", Image: "a", VolumeMounts: []corev1.VolumeMount{{Name: "va", MountPath: "/logs"}}},
		{Name: "b", Image: "b", VolumeMounts: []corev1.VolumeMount{{Name: "vb", MountPath: "/logs"}}},
	}
	a := admitTwice(t, inj, "shop", pod)
	if container(a.pod, SidecarName) != nil || status(t, a.pod).Decision != DecisionNone || !hasWarning(a.resp, "name clash") {
		t.Fatalf("want no injection with a name clash warning; warnings %q status %+v", a.resp.Warnings, status(t, a.pod))
	}
}

func TestBesideIstio(t *testing.T) {
	inj := newTestInjector(t, ModeNative, nil)
	pod := appPod(heavy("sidecar.istio.io/status", `{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["istio-envoy","istio-data"]}`))
	pod.Spec.InitContainers = []corev1.Container{{Name: "istio-init", Image: "istio/proxyv2", Args: []string{"istio-iptables"}}}
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "istio/proxyv2",
		VolumeMounts: []corev1.VolumeMount{{Name: "istio-envoy", MountPath: "/etc/istio/proxy"}, {Name: "istio-data", MountPath: "/var/lib/istio/data"}}})
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "istio-envoy", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
		{Name: "istio-data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	a := admitTwice(t, inj, "shop", pod)
	if !reflect.DeepEqual(a.pod.Spec.InitContainers[0], pod.Spec.InitContainers[0]) || a.pod.Spec.InitContainers[1].Name != SidecarName {
		t.Errorf("istio-init must stay first and unchanged: %+v", a.pod.Spec.InitContainers)
	}
	if !reflect.DeepEqual(*container(a.pod, "istio-proxy"), pod.Spec.Containers[1]) {
		t.Errorf("istio-proxy touched: %+v", container(a.pod, "istio-proxy"))
	}
	if !reflect.DeepEqual(a.pod.Spec.Volumes[:2], pod.Spec.Volumes) {
		t.Errorf("istio volumes touched")
	}
	if a.pod.Annotations["sidecar.istio.io/status"] != pod.Annotations["sidecar.istio.io/status"] {
		t.Errorf("istio status annotation touched")
	}
	if mountAt(&a.pod.Spec.Containers[0], "/var/log/app") == nil {
		t.Errorf("app has no log mount")
	}

	// Istio's injector runs after ours and re-orders containers: the
	// reinvocation still sees the sidecar and changes nothing.
	var again corev1.Pod
	if err := json.Unmarshal(a.raw, &again); err != nil {
		t.Fatal(err)
	}
	again.Spec.Containers[0], again.Spec.Containers[1] = again.Spec.Containers[1], again.Spec.Containers[0]
	if r := admit(t, inj, "shop", &again); len(r.resp.Patch) != 0 {
		t.Errorf("reinvocation after istio re-ordered containers patched: %s", r.resp.Patch)
	}
}

func TestJobs(t *testing.T) {
	for _, rp := range []corev1.RestartPolicy{corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure} {
		t.Run(string(rp), func(t *testing.T) {
			pod := appPod(heavy())
			pod.Spec.RestartPolicy = rp
			// Native: the Job still completes, the sidecar is injected.
			a := admitTwice(t, newTestInjector(t, ModeNative, nil), "batch", pod)
			if c := container(a.pod, SidecarName); c == nil || c.RestartPolicy == nil {
				t.Fatalf("native sidecar missing in a Job pod")
			}
			// Regular: a plain container would keep the Job running forever.
			a = admitTwice(t, newTestInjector(t, ModeRegular, nil), "batch", pod)
			if container(a.pod, SidecarName) != nil || !hasWarning(a.resp, "from completing") {
				t.Fatalf("regular sidecar in a Job: warnings %q", a.resp.Warnings)
			}
			// Strict: denied with the reason.
			a = admit(t, newTestInjector(t, ModeRegular, func(c *Config) { c.Strict = true }), "batch", pod)
			if a.resp.Allowed || !strings.Contains(a.resp.Result.Message, "from completing") {
				t.Fatalf("strict: allowed=%v result %+v", a.resp.Allowed, a.resp.Result)
			}
		})
	}
}

func TestRegularSidecarDrainsOnPreStop(t *testing.T) {
	inj := newTestInjector(t, ModeNative, nil)
	a := admitTwice(t, inj, "shop", appPod(heavy(SidecarModeAnnotation, "regular")))
	if len(a.pod.Spec.InitContainers) != 0 || len(a.pod.Spec.Containers) != 2 {
		t.Fatalf("want a second regular container: %+v", a.pod.Spec)
	}
	sc := &a.pod.Spec.Containers[1]
	if sc.Name != SidecarName || sc.RestartPolicy != nil || sc.Lifecycle == nil || sc.Lifecycle.PreStop == nil ||
		!reflect.DeepEqual(sc.Lifecycle.PreStop.Exec.Command, []string{"meshtrail", "tail", "drain", "--state-dir=" + stateDir, "--timeout=20s"}) {
		t.Fatalf("regular sidecar %+v", sc)
	}
	if st := status(t, a.pod); st.Mode != ModeRegular {
		t.Errorf("status mode %q", st.Mode)
	}
}

func TestGenerateNameOnly(t *testing.T) {
	inj := newTestInjector(t, ModeNative, nil)
	pod := appPod(heavy())
	pod.Name, pod.GenerateName, pod.Namespace = "", "web-7d9f-", ""
	a := admitTwice(t, inj, "shop", pod)
	if container(a.pod, SidecarName) == nil {
		t.Fatal("pod with only generateName not injected")
	}
}

func TestNotOurs(t *testing.T) {
	for name, tc := range map[string]struct {
		ns  string
		pod func() *corev1.Pod
	}{
		"opt-out label":      {"shop", func() *corev1.Pod { p := appPod(heavy()); p.Labels[InjectKey] = "false"; return p }},
		"opt-out annotation": {"shop", func() *corev1.Pod { return appPod(heavy(InjectKey, "false")) }},
		"system namespace":   {"kube-system", func() *corev1.Pod { return appPod(heavy()) }},
		"istio-system":       {"istio-system", func() *corev1.Pod { return appPod(heavy()) }},
	} {
		t.Run(name, func(t *testing.T) {
			a := admit(t, newTestInjector(t, ModeNative, nil), tc.ns, tc.pod())
			if !a.resp.Allowed || len(a.resp.Patch) != 0 || len(a.resp.Warnings) != 0 {
				t.Fatalf("want untouched: allowed=%v patch=%s warnings=%q", a.resp.Allowed, a.resp.Patch, a.resp.Warnings)
			}
		})
	}
}

func TestLeftToTheDaemonSet(t *testing.T) {
	for name, tc := range map[string]struct {
		pod     func() *corev1.Pod
		reason  string
		warning string
	}{
		"host network": {func() *corev1.Pod { p := appPod(heavy()); p.Spec.HostNetwork = true; return p }, "hostNetwork", ""},
		"no volume declared": {func() *corev1.Pod {
			return appPod(map[string]string{LogPathsAnnotation: "/var/log/app/*.log"})
		}, "no meshtrail.io/log-volume", ""},
		"under threshold": {func() *corev1.Pod {
			return appPod(heavy(LogVolumeAnnotation, "512KiB/s", CPUAnnotation, "200m"))
		}, "512KiB/s is under the sidecar threshold 5MiB/s", "meshtrail.io/tail-cpu ignored"},
		"no paths": {func() *corev1.Pod {
			return appPod(map[string]string{LogVolumeAnnotation: "50MB/s"})
		}, "stdout is read by the node DaemonSet", "no meshtrail.io/log-paths"},
		"no annotations at all": {func() *corev1.Pod { return appPod(nil) }, "no meshtrail.io/log-volume", ""},
	} {
		t.Run(name, func(t *testing.T) {
			a := admitTwice(t, newTestInjector(t, ModeNative, nil), "shop", tc.pod())
			st := status(t, a.pod)
			if container(a.pod, SidecarName) != nil || st.Decision != DecisionDaemonSet || !strings.Contains(st.Reason, tc.reason) {
				t.Fatalf("status %+v", st)
			}
			if tc.warning != "" && !hasWarning(a.resp, tc.warning) {
				t.Errorf("warnings %q, want %q", a.resp.Warnings, tc.warning)
			}
			if tc.warning == "" && len(a.resp.Warnings) > 0 {
				t.Errorf("unexpected warnings %q", a.resp.Warnings)
			}
		})
	}
}

func TestBadAnnotationsAreNotHonoured(t *testing.T) {
	for name, tc := range map[string]struct {
		ann  []string
		want string
	}{
		"volume":          {[]string{LogVolumeAnnotation, "lots"}, "meshtrail.io/log-volume"},
		"volume unit":     {[]string{LogVolumeAnnotation, "20 parsecs/s"}, "unknown unit"},
		"relative path":   {[]string{LogPathsAnnotation, "logs/*.log"}, "not an absolute path"},
		"unclean path":    {[]string{LogPathsAnnotation, "/var/log/../etc/*.log"}, "not a clean path"},
		"root path":       {[]string{LogPathsAnnotation, "/*.log"}, "directly under /"},
		"bad glob":        {[]string{LogPathsAnnotation, "/var/log/[.log"}, "not a valid glob"},
		"parser":          {[]string{LogParserAnnotation, "xml"}, "unknown parser \"xml\""},
		"multiline":       {[]string{LogMultilineAnnotation, "(unclosed"}, "not a regular expression"},
		"sink":            {[]string{LogSinksAnnotation, "Loki!"}, "not a sink name"},
		"cpu":             {[]string{CPUAnnotation, "lots"}, "meshtrail.io/tail-cpu"},
		"request > limit": {[]string{MemoryAnnotation, "1Gi", MemoryLimitAnnotation, "128Mi"}, "above its limit"},
		"mode":            {[]string{SidecarModeAnnotation, "sometimes"}, "not native or regular"},
		"log container":   {[]string{LogContainersAnnotation, "nope"}, "no app container \"nope\""},
	} {
		t.Run(name, func(t *testing.T) {
			pod := appPod(heavy(tc.ann...))
			a := admitTwice(t, newTestInjector(t, ModeNative, nil), "shop", pod)
			st := status(t, a.pod)
			if container(a.pod, SidecarName) != nil || st.Decision != DecisionNone || !strings.Contains(st.Reason, tc.want) {
				t.Fatalf("status %+v", st)
			}
			if !hasWarning(a.resp, "sidecar not injected: ") || !hasWarning(a.resp, tc.want) {
				t.Errorf("warnings %q", a.resp.Warnings)
			}
			if !reflect.DeepEqual(a.pod.Spec, pod.Spec) {
				t.Errorf("spec changed")
			}
			strict := admit(t, newTestInjector(t, ModeNative, func(c *Config) { c.Strict = true }), "shop", pod)
			if strict.resp.Allowed || strict.resp.Result.Code != 403 || !strings.Contains(strict.resp.Result.Message, tc.want) || len(strict.resp.Patch) != 0 {
				t.Errorf("strict: allowed=%v result=%+v", strict.resp.Allowed, strict.resp.Result)
			}
		})
	}
}

func TestSinksRestrictedByConfig(t *testing.T) {
	inj := newTestInjector(t, ModeNative, func(c *Config) {
		c.Sidecar.Sinks = []string{"loki", "es"}
		c.Sidecar.DefaultSinks = []string{"loki"}
	})
	a := admitTwice(t, inj, "shop", appPod(heavy()))
	if sc := container(a.pod, SidecarName); sc == nil || sc.Args[len(sc.Args)-1] != "--sinks=loki" {
		t.Fatalf("default sinks: %+v", sc)
	}
	a = admitTwice(t, inj, "shop", appPod(heavy(LogSinksAnnotation, "kafka")))
	if container(a.pod, SidecarName) != nil || !hasWarning(a.resp, `unknown sink "kafka"`) {
		t.Fatalf("warnings %q", a.resp.Warnings)
	}
}

func TestResourcesFromAnnotations(t *testing.T) {
	a := admitTwice(t, newTestInjector(t, ModeNative, nil), "shop", appPod(heavy(CPUAnnotation, "250m", MemoryLimitAnnotation, "1Gi")))
	r := container(a.pod, SidecarName).Resources
	for _, c := range []struct {
		got  resource.Quantity
		want string
	}{{r.Requests[corev1.ResourceCPU], "250m"}, {r.Requests[corev1.ResourceMemory], "64Mi"}, {r.Limits[corev1.ResourceCPU], "1"}, {r.Limits[corev1.ResourceMemory], "1Gi"}} {
		if c.got.String() != c.want {
			t.Errorf("got %s want %s (%+v)", c.got.String(), c.want, r)
		}
	}
}

func TestNameClashes(t *testing.T) {
	inj := newTestInjector(t, ModeNative, nil)
	// A container of the user's already has our name: not ours to replace.
	pod := appPod(heavy())
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: SidecarName, Image: "someone/else"})
	a := admitTwice(t, inj, "shop", pod)
	if !reflect.DeepEqual(a.pod.Spec, pod.Spec) || !hasWarning(a.resp, "name clash") {
		t.Fatalf("warnings %q spec %+v", a.resp.Warnings, a.pod.Spec)
	}
	// Volumes with our names, unrelated: ours get fresh names.
	pod = appPod(heavy())
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "meshtrail-logs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "meshtrail-logs-1", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "meshtrail-tail-state", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "meshtrail-logs", MountPath: "/data"}}
	a = admitTwice(t, inj, "shop", pod)
	st := status(t, a.pod)
	if !reflect.DeepEqual(st.Volumes, []string{"meshtrail-logs-2", "meshtrail-tail-state-1"}) {
		t.Fatalf("volumes %v", st.Volumes)
	}
	if err := checkPodShape(a.pod); err != nil {
		t.Fatal(err)
	}
}

func TestCopiedStatusWithoutSidecarIsInjected(t *testing.T) {
	// A pod created from another's manifest carries its status annotation
	// but not the sidecar: the annotation alone does not count.
	inj := newTestInjector(t, ModeNative, nil)
	first := admit(t, inj, "shop", appPod(heavy()))
	pod := appPod(heavy(StatusAnnotation, first.pod.Annotations[StatusAnnotation]))
	a := admitTwice(t, inj, "shop", pod)
	if container(a.pod, SidecarName) == nil {
		t.Fatal("not injected")
	}
}

func TestNestedAndRepeatedPathsShareOneVolume(t *testing.T) {
	inj := newTestInjector(t, ModeNative, nil)
	a := admitTwice(t, inj, "shop", appPod(heavy(LogPathsAnnotation, "/var/log/app/*.log, /var/log/app/sub/*.log,/var/log/app/x.log, /srv/out.log")))
	st := status(t, a.pod)
	want := []string{"meshtrail-logs:/srv", "meshtrail-logs-1:/var/log/app", "meshtrail-tail-state:" + stateDir}
	if !reflect.DeepEqual(st.Mounts, want) {
		t.Fatalf("mounts %v, want %v", st.Mounts, want)
	}
}

func TestUnknownAnnotationWarns(t *testing.T) {
	a := admitTwice(t, newTestInjector(t, ModeNative, nil), "shop", appPod(heavy("meshtrail.io/log-volumes", "1")))
	if !hasWarning(a.resp, "unknown annotation meshtrail.io/log-volumes") || container(a.pod, SidecarName) == nil {
		t.Fatalf("warnings %q", a.resp.Warnings)
	}
}

func TestExistingAnnotationsAndEmptyArrays(t *testing.T) {
	// "volumes": [] and "annotations": {} present but empty, and keys with
	// "/" and "~" that need JSON pointer escaping around ours.
	inj := newTestInjector(t, ModeNative, nil)
	raw := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","annotations":{"a~b/c":"1","meshtrail.io/log-volume":"6MiB/s","meshtrail.io/log-paths":"/l/*.log"}},
	  "spec":{"volumes":[],"initContainers":[],"containers":[{"name":"app","image":"x","volumeMounts":[]}]}}`)
	a := admitRaw(t, inj, "shop", raw)
	if container(a.pod, SidecarName) == nil || a.pod.Annotations["a~b/c"] != "1" {
		t.Fatalf("pod %+v", a.pod)
	}
	if r := admitRaw(t, inj, "shop", a.raw); len(r.resp.Patch) != 0 {
		t.Fatalf("second pass %s", r.resp.Patch)
	}
}

func TestOnlyPodCreates(t *testing.T) {
	inj := newTestInjector(t, ModeNative, nil)
	raw, _ := json.Marshal(appPod(heavy()))
	req := createRequest(t, "shop", raw)
	req.Operation = admissionv1.Update
	if r := inj.Review(t.Context(), req); !r.Allowed || r.Patch != nil {
		t.Fatalf("update: %+v", r)
	}
	req = createRequest(t, "shop", raw)
	req.SubResource = "ephemeralcontainers"
	if r := inj.Review(t.Context(), req); !r.Allowed || r.Patch != nil {
		t.Fatalf("subresource: %+v", r)
	}
	req = createRequest(t, "shop", []byte(`{"spec": 7}`))
	if r := inj.Review(t.Context(), req); !r.Allowed || r.Patch != nil || len(r.Warnings) != 1 {
		t.Fatalf("undecodable pod: %+v", r)
	}
}

func TestCheckPodShapeCatchesWhatTheAPIServerRejects(t *testing.T) {
	for name, spec := range map[string]corev1.PodSpec{
		"dup volume":     {Volumes: []corev1.Volume{{Name: "a"}, {Name: "a"}}},
		"dup container":  {InitContainers: []corev1.Container{{Name: "a"}}, Containers: []corev1.Container{{Name: "a"}}},
		"missing volume": {Containers: []corev1.Container{{Name: "a", VolumeMounts: []corev1.VolumeMount{{Name: "v", MountPath: "/x"}}}}},
		"dup mount path": {Volumes: []corev1.Volume{{Name: "v"}, {Name: "w"}}, Containers: []corev1.Container{{Name: "a", VolumeMounts: []corev1.VolumeMount{{Name: "v", MountPath: "/x"}, {Name: "w", MountPath: "/x"}}}}},
		"dup ephemeral":  {Containers: []corev1.Container{{Name: "a"}}, EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "a"}}}},
	} {
		if err := checkPodShape(&corev1.Pod{Spec: spec}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestWarningsQuotingUserInputStayShortAndPrintable(t *testing.T) {
	long := "(" + strings.Repeat("é", 400) + "\n"
	a := admitTwice(t, newTestInjector(t, ModeNative, nil), "shop", appPod(heavy(LogMultilineAnnotation, long)))
	if len(a.resp.Warnings) != 1 {
		t.Fatalf("warnings %q", a.resp.Warnings)
	}
	w := a.resp.Warnings[0]
	if len(w) > maxWarning || strings.ContainsAny(w, "\n\r\t") || !utf8.ValidString(w) || !strings.HasSuffix(w, "...") {
		t.Fatalf("warning %d bytes: %q", len(w), w)
	}
}

func TestLogPathOnTheSidecarStateDirectory(t *testing.T) {
	a := admitTwice(t, newTestInjector(t, ModeNative, nil), "shop", appPod(heavy(LogPathsAnnotation, stateDir+"/*.log")))
	if st := status(t, a.pod); st.Decision != DecisionNone || !strings.Contains(st.Reason, "own state directory") {
		t.Fatalf("status %+v", st)
	}
}

func TestOneWarningPerProblem(t *testing.T) {
	a := admitTwice(t, newTestInjector(t, ModeNative, nil), "shop", appPod(heavy(CPUAnnotation, "lots")))
	if len(a.resp.Warnings) != 1 {
		t.Fatalf("warnings %q", a.resp.Warnings)
	}
}
