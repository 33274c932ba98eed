package injector_test

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/injector"
	corev1 "k8s.io/api/core/v1"
)

// BenchmarkPodCreate measures pod creation latency through the real
// kube-apiserver (+etcd), client to stored, without the webhook and with it
// (light pod: status annotation only; heavy pod: sidecar injected). Reports
// p50 and p99 in milliseconds. Run with a fixed count, e.g.
//
//	go test -run '^$' -bench BenchmarkPodCreate -benchtime 300x -count 5 ./injector/
func BenchmarkPodCreate(b *testing.B) {
	s := startUnregistered(b)
	seq := 0
	run := func(name, ns string, pod func() *corev1.Pod, wantSidecar bool) {
		b.Run(name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				seq++
				p := pod()
				p.Name = fmt.Sprintf("bench-%d", seq)
				start := time.Now()
				created, _, err := s.create(ns, p, false)
				lat = append(lat, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
				if (findContainer(created, injector.SidecarName) != nil) != wantSidecar {
					b.Fatalf("%s: sidecar present=%v", name, !wantSidecar)
				}
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			pct := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
		})
	}
	light := func() *corev1.Pod {
		p := heavyPod("")
		p.Annotations[injector.LogVolumeAnnotation] = "100KiB/s"
		return p
	}
	// Warm the API server (caches, connection, APF) before the first
	// measured phase, which would otherwise pay for it alone.
	for i := 0; i < 200; i++ {
		seq++
		p := heavyPod(fmt.Sprintf("warm-%d", seq))
		if _, _, err := s.create(nsPlain, p, false); err != nil {
			b.Fatal(err)
		}
	}
	run("no-webhook", nsEnabled, func() *corev1.Pod { return heavyPod("") }, false)
	s.register(b)
	run("webhook-not-selected", nsPlain, func() *corev1.Pod { return heavyPod("") }, false)
	run("webhook-daemonset", nsEnabled, light, false)
	run("webhook-sidecar", nsEnabled, func() *corev1.Pod { return heavyPod("") }, true)
}
