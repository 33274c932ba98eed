package envoystandin

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/meshtrail/meshtrail/test/harness"
)

// Per-request cost of the compiled filter hosted directly on wazero
// (no HTTP): context create, request headers, response headers, log and
// delete, as Envoy calls them. The SDK's no-op plugin in the same run is the
// baseline to subtract. See bench/results/wasm.md for figures.
func BenchmarkFilterPerRequest(b *testing.B) {
	noop := buildNoop(b)
	type variant struct {
		name   string
		module []byte
		config string
	}
	// MESHTRAIL_WASM_BASELINE names another build of the filter (say,
	// from an earlier commit) to measure in the same run: before/after.
	var extra []variant
	if f := os.Getenv("MESHTRAIL_WASM_BASELINE"); f != "" {
		m, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		extra = append(extra, variant{"meshtrail-baseline", m, filterConfig})
	}
	for _, c := range append([]variant{
		{"noop", noop, ""},
		// Reference only (the target is against the no-op): the same
		// plugin reading both header maps, the least a filter that looks
		// at headers pays.
		{"noop-readheaders", noop, "read-headers"},
		{"meshtrail", filterModule(b), filterConfig},
	}, extra...) {
		b.Run(c.name, func(b *testing.B) {
			h := benchHost(b, c.module, c.config)
			// Warm up: series defined, caches filled, and the guest's Go
			// heap grown to its GC target (the last growth is seen around
			// request 37000: the filter allocates little per request, so
			// the heap settles slowly).
			for i := benchWarmUp(b); i > 0; i-- {
				oneRequest(b, h)
			}
			mem := h.MemoryBytes()
			calls := h.HostCalls()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				oneRequest(b, h)
			}
			b.StopTimer()
			b.ReportMetric(float64(h.MemoryBytes()-mem), "guest-mem-growth-bytes")
			var n uint64
			for name, c := range h.HostCalls() {
				n += c - calls[name]
			}
			b.ReportMetric(float64(n)/float64(b.N), "host-calls/op")
		})
	}
}

// filterConfig is the filter's configuration in the benchmark.
const filterConfig = `{"tracing":{"sampling_percentage":1},"access_log":{"headers":["x-request-id"]}}`

// warmUp is how many requests run before anything is measured.
// MESHTRAIL_WASM_WARMUP overrides it in the benchmark (bench/
// wasm-instructions.sh runs under callgrind, where 50,000 requests take
// minutes; the difference of two run lengths cancels it anyway).
const warmUp = 50000

func benchWarmUp(b *testing.B) int {
	if v := os.Getenv("MESHTRAIL_WASM_WARMUP"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			b.Fatalf("MESHTRAIL_WASM_WARMUP=%q: want a count of requests", v)
		}
		return n
	}
	return warmUp
}

func buildNoop(b testing.TB) []byte {
	dir := b.TempDir()
	m, err := BuildWasm(filepath.Join(harness.RepoRoot(b), "bench", "wasmnoop"), dir)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func benchHost(b testing.TB, module []byte, config string) *Host {
	h, err := NewHost(context.Background(), module, HostOptions{
		PluginConfig: []byte(config), Properties: reviews.Properties(),
		CompilationCacheDir: filepath.Join(os.TempDir(), "meshtrail-wazero-cache"),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = h.Close() })
	return h
}

var (
	benchRequest = Headers{
		{":authority", "reviews.default.svc.cluster.local:9080"}, {":path", "/reviews/0"}, {":method", "GET"}, {":scheme", "http"},
		{"user-agent", "Mozilla/5.0"}, {"accept", "*/*"}, {"x-request-id", "2f6e3b4c-9a1d-4b7e-8c5f-0d1e2f3a4b5c"},
		{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{"x-forwarded-proto", "http"},
	}
	benchResponse = Headers{{":status", "200"}, {"content-type", "application/json"}, {"content-length", "358"}, {"date", "Sat, 21 Nov 2026 10:00:00 GMT"}}
	// benchCluster is what Istio gives the inbound cluster: its name and
	// the istio.services metadata the filter takes the service from.
	benchCluster = func() map[string][]byte {
		p := map[string][]byte{Path("xds", "cluster_name"): []byte("inbound|9080||")}
		ClusterService{Host: "reviews.default.svc.cluster.local", Name: "reviews", Namespace: "default"}.setProperties(p, 0)
		return p
	}()
)

func oneRequest(b testing.TB, h *Host) {
	s, err := h.NewStream()
	if err != nil {
		b.Fatal(err)
	}
	s.RequestHeaders = append(Headers(nil), benchRequest...)
	s.Properties[Path("xds", "listener_direction")] = u64(1)
	for k, v := range benchCluster {
		s.Properties[k] = v
	}
	if _, err := s.OnRequestHeaders(true); err != nil {
		b.Fatal(err)
	}
	s.ResponseHeaders = append(Headers(nil), benchResponse...)
	if _, err := s.OnResponseHeaders(false); err != nil {
		b.Fatal(err)
	}
	s.Properties[Path("request", "duration")] = u64(3_500_000)
	s.Properties[Path("response", "code")] = u64(200)
	if err := s.Done(); err != nil {
		b.Fatal(err)
	}
}

// The filter's guest memory stays flat over many requests with the same
// label set (no per-request growth of caches or leaked contexts).
func TestGuestMemoryFlat(t *testing.T) {
	h := benchHost(t, filterModule(t), `{"access_log":{"headers":["x-request-id"]}}`)
	// The Go heap in the guest grows to its GC target over the first
	// ~37000 requests, then stays.
	for i := 0; i < warmUp; i++ {
		oneRequest(t, h)
	}
	before := h.MemoryBytes()
	for i := 0; i < 25000; i++ {
		oneRequest(t, h)
	}
	if after := h.MemoryBytes(); after != before {
		t.Errorf("guest memory grew from %d to %d bytes over 25000 requests", before, after)
	}
	if n := len(h.Metrics()); n != 4+2+5 {
		t.Errorf("%d metrics defined, want 4 Istio series + 2 own counters + 5 invalid-header counters", n)
	}
}
