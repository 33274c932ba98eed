package injector

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// BenchmarkReview measures the /inject handler, JSON AdmissionReview in
// and out, and reports reviews per CPU-second of the whole process (user +
// system time from getrusage), so parallel runs count honestly.
//
//	go test -run '^$' -bench BenchmarkReview -count 5 ./injector/
func BenchmarkReview(b *testing.B) {
	istio := appPod(heavy("sidecar.istio.io/status", `{"containers":["istio-proxy"]}`))
	istio.Spec.InitContainers = []corev1.Container{{Name: "istio-init", Image: "istio/proxyv2"}}
	istio.Spec.Containers = append(istio.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "istio/proxyv2",
		VolumeMounts: []corev1.VolumeMount{{Name: "istio-envoy", MountPath: "/etc/istio/proxy"}}})
	istio.Spec.Volumes = []corev1.Volume{{Name: "istio-envoy", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	light := appPod(heavy(LogVolumeAnnotation, "1KiB/s"))
	injectedOnce := newTestInjector(b, ModeNative, nil)
	already := admit(b, injectedOnce, "shop", appPod(heavy())).pod

	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
	}{
		{"sidecar", appPod(heavy())},
		{"sidecar-beside-istio", istio},
		{"daemonset", light},
		{"already-injected", already},
	} {
		b.Run(tc.name, func(b *testing.B) {
			inj := newTestInjector(b, ModeNative, nil)
			body := reviewJSON(b, tc.pod)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rec := httptest.NewRecorder()
					inj.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/inject", strings.NewReader(body)))
					if rec.Code != 200 {
						b.Fatal(rec.Code)
					}
				}
			})
			b.StopTimer()
			if cpu := (cpuTime() - cpu0).Seconds(); cpu > 0 {
				b.ReportMetric(float64(b.N)/cpu, "reviews/cpu-s")
			}
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
