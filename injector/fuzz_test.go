package injector

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// FuzzReview feeds arbitrary annotation values and pod shapes to the
// injector. Whatever the input, a non-strict review admits the pod, its
// patch applies and yields a pod the API server would accept, and a second
// pass over the result changes nothing.
func FuzzReview(f *testing.F) {
	f.Add("20MiB/s", "/var/log/app/*.log", "json", `^\d`, "", "", "/var/log", uint8(0))
	f.Add("6MiB/s", "/var/log/app/*.log,/var/log/app/x/*.log,/srv/a.log", "raw", "", "app,side", "regular", "/var", uint8(0xff))
	f.Add("1GiB/s", "/logs/[a-z]*.log", "cri", "(", "side", "native", "/logs", uint8(0x5a))
	f.Add("lots", "relative", "xml", "", "nope", "maybe", "", uint8(3))
	// Issue 15's pods: a long unhonourable value beside 200 KiB of the
	// pod's own annotations, Istio's container named as the log container.
	f.Add("20MiB/s", "/var/log/app/*.log", strings.Repeat("<x>", 20<<10), "("+strings.Repeat(`"<`, 2<<10), "", "", "", uint8(0x80))
	f.Add("20MiB/s", "/etc/istio/proxy/*.log", "raw", "", "istio-proxy", "", "", uint8(0x10))
	// Issue 12: pod-level resources.
	f.Add("20MiB/s", "/var/log/app/*.log", "raw", "", "", "regular", "", uint8(0x40))
	f.Fuzz(func(t *testing.T, volume, paths, parser, multiline, containers, mode, appMount string, shape uint8) {
		ann := map[string]string{LogVolumeAnnotation: volume, LogPathsAnnotation: paths, LogParserAnnotation: parser}
		if multiline != "" {
			ann[LogMultilineAnnotation] = multiline
		}
		if containers != "" {
			ann[LogContainersAnnotation] = containers
		}
		if mode != "" {
			ann[SidecarModeAnnotation] = mode
		}
		pod := appPod(ann)
		if shape&1 != 0 {
			pod.Spec.InitContainers = []corev1.Container{{Name: "istio-init", Image: "i"}}
		}
		if shape&2 != 0 {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "side", Image: "s",
				VolumeMounts: []corev1.VolumeMount{{Name: "meshtrail-logs", MountPath: "/data"}}})
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "meshtrail-logs"})
		}
		if shape&4 != 0 && strings.HasPrefix(appMount, "/") {
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "logs"})
			pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "logs", MountPath: appMount}}
		}
		if shape&8 != 0 {
			pod.Spec.RestartPolicy = corev1.RestartPolicyNever
		}
		if shape&16 != 0 {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "p"})
		}
		if shape&32 != 0 {
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "meshtrail-tail-state"})
		}
		if shape&64 != 0 {
			pod.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("50Mi")}
			pod.Spec.Resources = &corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("100Mi"), corev1.ResourceCPU: resource.MustParse("100m")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("200Mi")},
			}
		}
		if shape&128 != 0 {
			pod.Annotations["example.com/blob"] = strings.Repeat("b", 200<<10)
		}
		if checkPodShape(pod) != nil {
			return // the API server would reject the pod before us
		}
		raw, _ := json.Marshal(pod)
		inj := newTestInjector(t, ModeNative, nil)
		a := admitRaw(t, inj, "shop", raw) // fails the test if the patch does not apply
		if !a.resp.Allowed {
			t.Fatalf("non-strict review denied: %+v", a.resp.Result)
		}
		if err := checkPodShape(a.pod); err != nil {
			t.Fatalf("patched pod invalid: %v\n%s", err, a.resp.Patch)
		}
		if again := admitRaw(t, inj, "shop", a.raw); len(again.resp.Patch) != 0 {
			t.Fatalf("second pass patched: %s", again.resp.Patch)
		}
	})
}
