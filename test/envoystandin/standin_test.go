package envoystandin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/meshtrail/meshtrail/internal/tracecontext"
	"github.com/meshtrail/meshtrail/test/harness"
)

var (
	filterOnce sync.Once
	filterWasm []byte
	filterErr  error
)

// filterModule builds ./wasm once per test binary.
func filterModule(t testing.TB) []byte {
	t.Helper()
	filterOnce.Do(func() {
		dir, err := os.MkdirTemp("", "envoystandin")
		if err != nil {
			filterErr = err
			return
		}
		defer os.RemoveAll(dir)
		filterWasm, filterErr = BuildWasm(filepath.Join(harness.RepoRoot(t), "wasm"), dir)
	})
	if filterErr != nil {
		t.Fatal(filterErr)
	}
	return filterWasm
}

var reviews = Node{
	IP: "10.1.0.7", Pod: "reviews-v1-7f4c", Namespace: "default", Workload: "reviews-v1", ClusterID: "Kubernetes",
	Labels: map[string]string{"app": "reviews", "version": "v1", "service.istio.io/canonical-name": "reviews", "service.istio.io/canonical-revision": "v1"},
}

var productpage = Node{
	IP: "10.1.0.5", Pod: "productpage-v1-55b9", Namespace: "default", Workload: "productpage-v1", ClusterID: "Kubernetes",
	Labels: map[string]string{"app": "productpage", "version": "v1"},
}

// upstreamEcho answers with the request headers it received as JSON.
func upstreamEcho(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(s.Close)
	return s
}

func startProxy(t *testing.T, opts HostOptions, cfg ProxyConfig) (*Host, *Proxy) {
	t.Helper()
	if opts.Properties == nil {
		opts.Properties = reviews.Properties()
	}
	opts.CompilationCacheDir = filepath.Join(os.TempDir(), "meshtrail-wazero-cache")
	h, err := NewHost(context.Background(), filterModule(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	cfg.Host = h
	p, err := NewProxy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return h, p
}

// get sends a request through the proxy and returns the headers the
// upstream received.
func get(t *testing.T, p *Proxy, headers map[string]string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.Addr()+"/reviews/0", nil)
	req.Host = "reviews.default.svc.cluster.local:9080"
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var seen http.Header
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(b, &seen); err != nil {
			t.Fatalf("upstream answer %q: %v", b, err)
		}
	}
	return resp.StatusCode, seen
}

func TestFilterOnRealHTTP(t *testing.T) {
	up := upstreamEcho(t)
	h, p := startProxy(t, HostOptions{PluginConfig: []byte(`{"tracing":{"sampling_percentage":100,"tracestate_key":"meshtrail"}}`)},
		ProxyConfig{Upstream: up.URL, Inbound: true})
	in := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	code, seen := get(t, p, map[string]string{"traceparent": in, "x-envoy-peer-metadata": productpage.PeerMetadataHeader()})
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	out, err := tracecontext.ParseTraceparent(seen.Get("traceparent"))
	if err != nil {
		t.Fatalf("upstream traceparent %q: %v", seen.Get("traceparent"), err)
	}
	if out.TraceID.String() != "4bf92f3577b34da6a3ce929d0e0e4736" || out.SpanID.String() == "00f067aa0ba902b7" {
		t.Errorf("upstream traceparent %s does not continue %s with a new span", seen.Get("traceparent"), in)
	}
	if seen.Get("X-B3-Parentspanid") != "00f067aa0ba902b7" || seen.Get("Tracestate") != "meshtrail="+out.SpanID.String() {
		t.Errorf("b3 parent %q tracestate %q", seen.Get("X-B3-Parentspanid"), seen.Get("Tracestate"))
	}
	// listener_direction inbound -> reporter destination; the peer from
	// the metadata exchange header; the local side from node metadata.
	series := requestSeries(t, h, "reporter=.=destination;.;", "source_workload=.=productpage-v1;.;", "destination_workload=.=reviews-v1;.;",
		"destination_canonical_service=.=reviews;.;", "destination_service_name=.=reviews;.;", "response_code=.=200;.;", "connection_security_policy=.=none;.;")
	for _, m := range series {
		if m.Value != 1 {
			t.Errorf("%s = %d", m.Name, m.Value)
		}
	}
	for _, m := range h.Metrics() {
		if strings.HasSuffix(m.Name, "istio_request_duration_milliseconds") && m.Count != 1 {
			t.Errorf("duration histogram count %d", m.Count)
		}
	}
	if len(series) == 0 {
		t.Errorf("no istio_requests_total among %v", h.Metrics())
	}
	if p.FilterErrors() != 0 {
		t.Errorf("%d filter errors", p.FilterErrors())
	}
}

func TestUpstreamDownIsCountedWithFlags(t *testing.T) {
	up := upstreamEcho(t)
	up.Close()
	h, p := startProxy(t, HostOptions{PluginConfig: []byte(`{}`)}, ProxyConfig{Upstream: up.URL, Inbound: true})
	if code, _ := get(t, p, nil); code != 503 {
		t.Fatalf("status %d, want 503", code)
	}
	var ok bool
	for _, m := range h.Metrics() {
		if strings.Contains(m.Name, "response_code=.=503;.;") && strings.Contains(m.Name, "response_flags=.=UF;.;") && strings.HasSuffix(m.Name, "istio_requests_total") {
			ok = true
		}
	}
	if !ok {
		t.Errorf("no 503/UF series in %v", h.Metrics())
	}
}

// A host error at run time must not break the request: it passes
// untouched and the filter's error counter goes up.
func TestHostFailurePassesRequestUntouched(t *testing.T) {
	up := upstreamEcho(t)
	h, p := startProxy(t, HostOptions{PluginConfig: []byte(`{"tracing":{"sampling_percentage":100}}`), FailSetProperty: true},
		ProxyConfig{Upstream: up.URL, Inbound: true})
	in := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	code, seen := get(t, p, map[string]string{"traceparent": in})
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	if seen.Get("traceparent") != in || seen.Get("X-B3-Traceid") != "" {
		t.Errorf("request was modified: traceparent %q x-b3-traceid %q", seen.Get("traceparent"), seen.Get("X-B3-Traceid"))
	}
	m, ok := h.Metric("meshtrail_filter_errors_total")
	if !ok || m.Value != 1 {
		t.Errorf("meshtrail_filter_errors_total = %+v (%v), want 1", m, ok)
	}
}

func TestInvalidConfigRejected(t *testing.T) {
	_, err := NewHost(context.Background(), filterModule(t), HostOptions{PluginConfig: []byte(`{"tracing":{"formats":["jaeger"]}}`)})
	if err == nil || !strings.Contains(err.Error(), "tracing.formats[0]") {
		t.Fatalf("err = %v, want a refusal naming tracing.formats[0]", err)
	}
}

// A local reply from a filter before this one (RBAC 403): Envoy creates
// the filter's context at log time and runs only proxy_on_log, exposing
// the request and response headers there. The request is counted with
// what the request headers say (service, protocol, peer, custom tags).
func TestLocalReplyBeforeFilterCounted(t *testing.T) {
	h, err := NewHost(context.Background(), filterModule(t), HostOptions{
		PluginConfig: []byte(`{"metrics":{"overrides":[{"tag_overrides":{"tenant":{"value":"request.headers['x-tenant']"}}}]}}`),
		Properties:   reviews.Properties(), CompilationCacheDir: filepath.Join(os.TempDir(), "meshtrail-wazero-cache"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s, err := h.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	s.RequestHeaders = Headers{{":authority", "reviews.default.svc.cluster.local:9080"}, {":path", "/reviews/0"}, {":method", "GET"},
		{"x-tenant", "acme"}, {"x-envoy-peer-metadata", productpage.PeerMetadataHeader()}}
	s.ResponseHeaders = Headers{{":status", "403"}, {"content-type", "text/plain"}}
	s.Properties[Path("xds", "listener_direction")] = u64(1)
	s.Properties[Path("connection", "mtls")] = []byte{0}
	s.Properties[Path("response", "code")] = u64(403)
	if err := s.Done(); err != nil {
		t.Fatal(err)
	}
	if m, ok := h.Metric("meshtrail_filter_errors_total"); !ok || m.Value != 0 {
		t.Errorf("filter errors %+v", m)
	}
	series := requestSeries(t, h, "reporter=.=destination;.;", "source_workload=.=productpage-v1;.;", "destination_service=.=reviews.default.svc.cluster.local;.;",
		"request_protocol=.=http;.;", "response_code=.=403;.;", "connection_security_policy=.=none;.;", "tenant=.=acme;.;")
	for _, m := range series {
		if m.Value != 1 {
			t.Errorf("%s = %d", m.Name, m.Value)
		}
	}
	if len(series) == 0 {
		t.Errorf("local reply not counted: %v", h.Metrics())
	}
}

// A local reply from a filter before this one, as Envoy runs it
// (filter_manager.h sendLocalReplyViaFilterChain: the reply passes through
// every encoder filter; Wasm's Context::onResponseHeaders creates the
// guest's context there): the response headers callback and the log run,
// the request headers callback does not. The filter writes the peer Istio's
// peer_metadata filter kept into filter state before Envoy's access log
// runs, writes no trace ids (it never saw the inbound context), and counts
// the request once, as the peer.
func TestLocalReplyResponseCallbackWritesPeer(t *testing.T) {
	h, err := NewHost(context.Background(), filterModule(t), HostOptions{
		PluginConfig: []byte(`{}`), Properties: reviews.Properties(),
		CompilationCacheDir: filepath.Join(os.TempDir(), "meshtrail-wazero-cache"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s, err := h.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	fs, ok := FilterStatePeer(productpage.PeerMetadataHeader())
	if !ok {
		t.Fatal("no filter state peer")
	}
	s.Properties[Path("filter_state", "downstream_peer")] = fs
	s.Properties[Path("xds", "listener_direction")] = u64(1)
	s.Properties[Path("connection", "mtls")] = []byte{0}
	s.ResponseHeaders = Headers{{":status", "403"}, {"content-type", "text/plain"}}
	if _, err := s.OnResponseHeaders(false); err != nil {
		t.Fatal(err)
	}
	// What Envoy's access logger sees: it runs before proxy_on_log.
	if got := string(s.FilterState["wasm.meshtrail_peer_workload"]); got != "productpage-v1" {
		t.Errorf("peer workload in filter state %q, want productpage-v1 (all: %v)", got, s.FilterState)
	}
	if got := string(s.FilterState["wasm.meshtrail_peer_namespace"]); got != "default" {
		t.Errorf("peer namespace in filter state %q, want default", got)
	}
	if _, ok := s.FilterState["wasm.meshtrail_trace_id"]; ok {
		t.Errorf("trace id %q written for a request whose trace headers the filter never saw", s.FilterState["wasm.meshtrail_trace_id"])
	}
	s.RequestHeaders = Headers{{":authority", "reviews.default.svc.cluster.local:9080"}, {":path", "/reviews/0"}, {":method", "GET"}}
	s.Properties[Path("response", "code")] = u64(403)
	if err := s.Done(); err != nil {
		t.Fatal(err)
	}
	if m, ok := h.Metric("meshtrail_filter_errors_total"); !ok || m.Value != 0 {
		t.Errorf("filter errors %+v", m)
	}
	series := requestSeries(t, h, "reporter=.=destination;.;", "source_workload=.=productpage-v1;.;", "response_code=.=403;.;")
	if len(series) != 1 || series[0].Value != 1 {
		t.Errorf("local reply counted as %v, want once as productpage-v1's 403", series)
	}
}

// Under Istio's peer_metadata filter the peer header never reaches the
// Wasm filter: the destination side takes the source workload from the
// downstream_peer filter state.
func TestPeerFromIstioFilterState(t *testing.T) {
	up := upstreamEcho(t)
	h, p := startProxy(t, HostOptions{PluginConfig: []byte(`{}`)}, ProxyConfig{Upstream: up.URL, Inbound: true, IstioPeerMetadata: true})
	code, seen := get(t, p, map[string]string{"x-envoy-peer-metadata": productpage.PeerMetadataHeader()})
	if code != 200 || seen.Get("X-Envoy-Peer-Metadata") != "" {
		t.Fatalf("status %d, peer header reached the upstream: %q", code, seen.Get("X-Envoy-Peer-Metadata"))
	}
	found := len(requestSeries(t, h, "source_workload=.=productpage-v1;.;", "source_workload_namespace=.=default;.;",
		"source_canonical_service=.=productpage;.;", "source_app=.=productpage;.;", "source_version=.=v1;.;", "source_cluster=.=Kubernetes;.;")) > 0
	if !found || p.FilterErrors() != 0 {
		t.Errorf("found %v, filter errors %d", found, p.FilterErrors())
	}
}

// destination_service comes from the upstream cluster as Istio takes it:
// the source side from outbound|PORT|SUBSET|HOST (a failed call, with no
// peer metadata back, still names the service and its namespace), the
// destination side from the inbound cluster's istio.services metadata;
// passthrough and blackhole traffic is named after the cluster (Istio's
// block_all route answers 502 itself, with no cluster) and keeps the
// requested host.
func TestDestinationServiceFromCluster(t *testing.T) {
	const reviewsFQDN = "reviews.default.svc.cluster.local"
	for _, c := range []struct {
		name       string
		cfg        ProxyConfig
		upstream   bool // reachable
		host       string
		wantStatus int
		want       []string
	}{
		{"source service, upstream down", ProxyConfig{UpstreamCluster: "outbound|9080||" + reviewsFQDN}, false, "reviews:9080", 503,
			// No peer answered: Istio's stats plugin takes the service
			// namespace from the peer on the caller's side, so unknown.
			[]string{"reporter=.=source;.;", "destination_service=.=" + reviewsFQDN + ";.;", "destination_service_name=.=reviews;.;",
				"destination_service_namespace=.=unknown;.;", "destination_workload=.=unknown;.;", "response_flags=.=UF;.;"}},
		{"source passthrough", ProxyConfig{UpstreamCluster: "PassthroughCluster", RouteName: "allow_any"}, true, "httpbin.org", 200,
			[]string{"destination_service=.=httpbin.org;.;", "destination_service_name=.=PassthroughCluster;.;", "destination_service_namespace=.=unknown;.;"}},
		{"source blackhole", ProxyConfig{RouteName: "block_all", DirectResponse: 502}, true, "blocked.example.com:8080", 502,
			[]string{"destination_service=.=blocked.example.com;.;", "destination_service_name=.=BlackHoleCluster;.;", "response_code=.=502;.;"}},
		{"destination service", ProxyConfig{Inbound: true, UpstreamCluster: "inbound|9080||",
			ClusterServices: []ClusterService{{Host: reviewsFQDN, Name: "reviews", Namespace: "default"}}}, true, "reviews:9080", 200,
			[]string{"reporter=.=destination;.;", "destination_service=.=" + reviewsFQDN + ";.;", "destination_service_name=.=reviews;.;",
				"destination_service_namespace=.=default;.;"}},
		{"destination inbound passthrough", ProxyConfig{Inbound: true, UpstreamCluster: "InboundPassthroughClusterIpv4"}, true, "10.1.0.7:8000", 200,
			[]string{"destination_service=.=10.1.0.7;.;", "destination_service_name=.=InboundPassthroughClusterIpv4;.;", "destination_service_namespace=.=default;.;"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := upstreamEcho(t)
			if !c.upstream {
				up.Close()
			}
			cfg := c.cfg
			cfg.Upstream = up.URL
			// The source side plays productpage calling out.
			opts := HostOptions{PluginConfig: []byte(`{}`)}
			if !cfg.Inbound {
				opts.Properties = productpage.Properties()
			}
			h, p := startProxy(t, opts, cfg)
			req, _ := http.NewRequest(http.MethodGet, "http://"+p.Addr()+"/reviews/0", nil)
			req.Host = c.host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.wantStatus)
			}
			found := len(requestSeries(t, h, c.want...)) > 0
			if !found || p.FilterErrors() != 0 {
				t.Errorf("series found %v, filter errors %d: %v", found, p.FilterErrors(), h.Metrics())
			}
		})
	}
}

// Envoy hands a Wasm filter int and bool attributes in binary: labels and
// filter state get them printed (response.code 200, connection.mtls
// false), not as bytes.
func TestTypedAttributesOnRealHTTP(t *testing.T) {
	up := upstreamEcho(t)
	h, p := startProxy(t, HostOptions{PluginConfig: []byte(`{"metrics":{"overrides":[{"tag_overrides":{
		"http_code":{"value":"response.code"},"mtls":{"value":"connection.mtls"},"req_body":{"value":"request.size"}}}]},
		"access_log":{"attributes":["connection.mtls"]}}`)},
		ProxyConfig{Upstream: up.URL, Inbound: true})
	if code, _ := get(t, p, nil); code != 200 {
		t.Fatalf("status %d", code)
	}
	var found bool
	for _, m := range h.Metrics() {
		if strings.HasSuffix(m.Name, "istio_requests_total") {
			found = true
			if !strings.HasSuffix(m.Name, ";.;http_code=.=200;.;mtls=.=false;.;req_body=.=0;.;istio_requests_total") {
				t.Errorf("custom dimensions in %q", m.Name)
			}
		}
	}
	if !found || p.FilterErrors() != 0 {
		t.Errorf("series found %v, filter errors %d", found, p.FilterErrors())
	}
	// Filter state, on a stream of the same filter over mTLS.
	s, err := h.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	s.RequestHeaders = Headers{{":authority", "reviews"}, {":path", "/"}, {":method", "GET"}}
	s.Properties[Path("connection", "mtls")] = []byte{1}
	if _, err := s.OnRequestHeaders(true); err != nil {
		t.Fatal(err)
	}
	s.ResponseHeaders = Headers{{":status", "200"}}
	if _, err := s.OnResponseHeaders(true); err != nil {
		t.Fatal(err)
	}
	if got := string(s.FilterState["wasm.meshtrail_h_connection_mtls"]); got != "true" {
		t.Errorf("wasm.meshtrail_h_connection_mtls = %q, want true", got)
	}
}

// The host serves the renamed attributes under the names its
// AttributeNames say, whichever name the caller keyed them by.
func TestAttributeNamesServeOneForm(t *testing.T) {
	props := reviews.Properties()
	props[Path("listener_direction")] = u64(1) // keyed by the old name
	for _, c := range []struct {
		names        AttributeNames
		current, old bool
	}{{XDSNames, true, false}, {OldNames, false, true}, {BothNames, true, true}} {
		h := &Host{opts: HostOptions{Properties: props, Names: c.names}}
		for _, p := range [][2]string{
			{Path("xds", "node", "metadata", "WORKLOAD_NAME"), Path("node", "metadata", "WORKLOAD_NAME")},
			{Path("xds", "node", "id"), Path("node", "id")},
			{Path("xds", "listener_direction"), Path("listener_direction")},
		} {
			if _, ok := h.property(p[0]); ok != c.current {
				t.Errorf("names %v: %q served %v, want %v", c.names, p[0], ok, c.current)
			}
			if _, ok := h.property(p[1]); ok != c.old {
				t.Errorf("names %v: %q served %v, want %v", c.names, p[1], ok, c.old)
			}
		}
		// Names that only begin like a renamed one are not renamed.
		h.opts.Properties = map[string][]byte{Path("nodes"): {1}, Path("xds", "node_x"): {1}}
		for _, p := range []string{Path("nodes"), Path("xds", "node_x")} {
			if _, ok := h.property(p); !ok {
				t.Errorf("names %v: %q not served", c.names, p)
			}
		}
	}
	if n, err := ParseAttributeNames("old"); err != nil || n != OldNames {
		t.Errorf("ParseAttributeNames(old) = %v, %v", n, err)
	}
	if _, err := ParseAttributeNames("node"); err == nil {
		t.Error("ParseAttributeNames(node) accepted")
	}
}

// The filter takes its identity and, with reporter auto, the reporter from
// Envoy 1.33's xds.node and xds.listener_direction as from the older node
// and listener_direction, alone or together; either way it reads the
// direction on the first request only, so later requests make the same
// host calls.
func TestIdentityAndDirectionUnderEitherName(t *testing.T) {
	up := upstreamEcho(t)
	for _, inbound := range []bool{true, false} {
		want := []string{"reporter=.=destination;.;", "destination_workload=.=reviews-v1;.;", "destination_canonical_service=.=reviews;.;",
			"destination_cluster=.=Kubernetes;.;", "source_workload=.=productpage-v1;.;"}
		if !inbound {
			want = []string{"reporter=.=source;.;", "source_workload=.=reviews-v1;.;", "source_canonical_service=.=reviews;.;",
				"source_app=.=reviews;.;", "source_cluster=.=Kubernetes;.;"}
		}
		perRequest := map[AttributeNames]uint64{}
		for _, names := range []AttributeNames{XDSNames, OldNames, BothNames} {
			t.Run(fmt.Sprintf("inbound=%v/names=%v", inbound, names), func(t *testing.T) {
				h, p := startProxy(t, HostOptions{PluginConfig: []byte(`{}`), Names: names},
					ProxyConfig{Upstream: up.URL, Inbound: inbound})
				peer := map[string]string{"x-envoy-peer-metadata": productpage.PeerMetadataHeader()}
				if code, _ := get(t, p, peer); code != 200 {
					t.Fatalf("status %d", code)
				}
				before := h.HostCalls()["proxy_get_property"]
				const n = 3
				for i := 0; i < n; i++ {
					get(t, p, peer)
				}
				perRequest[names] = (h.HostCalls()["proxy_get_property"] - before) / n
				series := requestSeries(t, h, want...)
				for _, m := range series {
					if m.Value != 1+n {
						t.Errorf("%s = %d", m.Name, m.Value)
					}
				}
				if found := len(series) > 0; !found || p.FilterErrors() != 0 {
					t.Errorf("series found %v, filter errors %d: %v", found, p.FilterErrors(), h.Metrics())
				}
			})
		}
		if perRequest[OldNames] != perRequest[XDSNames] || perRequest[BothNames] != perRequest[XDSNames] {
			t.Errorf("inbound=%v: proxy_get_property per request by names: %v", inbound, perRequest)
		}
	}
}

// Envoy serves the request.* attributes computed from the request headers
// only while its Wasm context has them: in proxy_on_request_headers and
// proxy_on_log, not in the response callbacks. So does the stand-in, from
// the headers as the filter left them; the request header map likewise.
func TestRequestAttributesOnlyWithRequestHeaders(t *testing.T) {
	h := &Host{}
	s := &Stream{h: h, Properties: map[string][]byte{}, FilterState: map[string][]byte{},
		RequestHeaders: Headers{{":path", "/reviews/0?a=1#f"}, {":authority", "reviews:9080"}, {":method", "GET"},
			{"x-request-id", "r1"}, {"x-tenant", "a"}, {"x-tenant", "b"}}}
	h.cur = s
	want := map[string]string{
		Path("request", "path"): "/reviews/0?a=1#f", Path("request", "url_path"): "/reviews/0",
		Path("request", "query"): "a=1", Path("request", "host"): "reviews:9080", Path("request", "method"): "GET",
		Path("request", "id"): "r1", Path("request", "headers", "x-tenant"): "a,b",
	}
	for _, p := range []phase{phaseRequestHeaders, phaseResponseHeaders, phaseResponseTrailers, phaseOther, phaseLog} {
		s.phase = p
		served := p == phaseRequestHeaders || p == phaseLog
		for path, v := range want {
			got, ok := h.property(path)
			if ok != served || (served && string(got) != v) {
				t.Errorf("phase %d: %q = %q, %v; want served %v", p, path, got, ok, served)
			}
		}
		if _, ok := h.property(Path("request", "scheme")); ok {
			t.Errorf("phase %d: request.scheme without a :scheme header served", p)
		}
		if (h.headerMap(mapRequestHeaders) != nil) != served {
			t.Errorf("phase %d: request header map available %v", p, !served)
		}
	}
}

// Envoy's access log is written before the filter's proxy_on_log, so
// what it needs must be in filter state after the last header callback a
// request reaches. A client that resets before the response: the
// destination side's peer and trace ids are there after the request
// headers.
func TestPeerWrittenWithRequestHeaders(t *testing.T) {
	h, err := NewHost(context.Background(), filterModule(t), HostOptions{
		PluginConfig: []byte(`{}`), Properties: reviews.Properties(),
		CompilationCacheDir: filepath.Join(os.TempDir(), "meshtrail-wazero-cache"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, fromFilterState := range []bool{false, true} {
		s, err := h.NewStream()
		if err != nil {
			t.Fatal(err)
		}
		s.RequestHeaders = Headers{{":authority", "reviews:9080"}, {":path", "/"}, {":method", "GET"}}
		if fromFilterState {
			fs, _ := FilterStatePeer(productpage.PeerMetadataHeader())
			s.Properties[Path("filter_state", "downstream_peer")] = fs
		} else {
			s.RequestHeaders = append(s.RequestHeaders, [2]string{"x-envoy-peer-metadata", productpage.PeerMetadataHeader()})
		}
		s.Properties[Path("xds", "listener_direction")] = u64(1)
		s.Properties[Path("connection", "mtls")] = []byte{1}
		s.Properties[Path("connection", "uri_san_peer_certificate")] = []byte("spiffe://cluster.local/ns/default/sa/bookinfo-productpage")
		if _, err := s.OnRequestHeaders(true); err != nil {
			t.Fatal(err)
		}
		for k, want := range map[string]string{
			"wasm.meshtrail_peer_workload": "productpage-v1", "wasm.meshtrail_peer_namespace": "default",
			"wasm.meshtrail_peer_canonical_service": "productpage",
			"wasm.meshtrail_peer_principal":         "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
		} {
			if got := string(s.FilterState[k]); got != want {
				t.Errorf("downstream_peer %v: after the request headers %s = %q, want %q", fromFilterState, k, got, want)
			}
		}
		if len(s.FilterState["wasm.meshtrail_trace_id"]) != 32 {
			t.Errorf("no trace id after the request headers: %q", s.FilterState)
		}
		// The client resets: Envoy logs, then runs proxy_on_log.
		if err := s.Done(); err != nil {
			t.Fatal(err)
		}
	}
	if m, ok := h.Metric("meshtrail_filter_errors_total"); !ok || m.Value != 0 {
		t.Errorf("filter errors %+v", m)
	}
}

// requestSeries returns the istio_requests_total series the filter
// recorded, failing t for every wanted label fragment a series lacks.
func requestSeries(t *testing.T, h *Host, want ...string) []Metric {
	t.Helper()
	var series []Metric
	for _, m := range h.Metrics() {
		if !strings.HasSuffix(m.Name, "istio_requests_total") {
			continue
		}
		series = append(series, m)
		for _, w := range want {
			if !strings.Contains(m.Name, w) {
				t.Errorf("%s lacks %s", m.Name, w)
			}
		}
	}
	return series
}
