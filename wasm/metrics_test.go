package main

import (
	"encoding/base64"
	"encoding/binary"
	"regexp"
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// reviewsNode is the node metadata Istio's injector gives reviews-v1's
// sidecar, with the mTLS identities of an inbound connection.
var reviewsNode = map[string]string{
	"node|metadata|WORKLOAD_NAME":                              "reviews-v1",
	"node|metadata|NAMESPACE":                                  "default",
	"node|metadata|CLUSTER_ID":                                 "Kubernetes",
	"node|metadata|LABELS|app":                                 "reviews",
	"node|metadata|LABELS|version":                             "v1",
	"node|metadata|LABELS|service.istio.io/canonical-name":     "reviews",
	"node|metadata|LABELS|service.istio.io/canonical-revision": "v1",
	"connection|mtls":                                          "\x01",
	"connection|uri_san_peer_certificate":                      "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
	"connection|uri_san_local_certificate":                     "spiffe://cluster.local/ns/default/sa/bookinfo-reviews",
}

// peerMetadata is what Istio's metadata exchange sends: the peer's node
// metadata as a base64 serialized google.protobuf.Struct.
func peerMetadata(t *testing.T, fields map[string]any) string {
	t.Helper()
	s, err := structpb.NewStruct(fields)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func productpagePeer(t *testing.T) string {
	return peerMetadata(t, map[string]any{
		"WORKLOAD_NAME": "productpage-v1",
		"NAMESPACE":     "default",
		"CLUSTER_ID":    "Kubernetes",
		"MESH_ID":       "cluster.local",
		"LABELS": map[string]any{
			"app": "productpage", "version": "v1",
			"service.istio.io/canonical-name": "productpage", "service.istio.io/canonical-revision": "v1",
		},
		"PLATFORM_METADATA": map[string]any{"gcp_project": "p"},
		"INSTANCE_IPS":      []any{"10.0.0.1"},
		"SOME_NUMBER":       3.5,
	})
}

const reviewsLabels = "reporter=.=destination;.;" +
	"source_workload=.=productpage-v1;.;source_canonical_service=.=productpage;.;source_canonical_revision=.=v1;.;" +
	"source_workload_namespace=.=default;.;source_principal=.=spiffe://cluster.local/ns/default/sa/bookinfo-productpage;.;" +
	"source_app=.=productpage;.;source_version=.=v1;.;source_cluster=.=Kubernetes;.;" +
	"destination_workload=.=reviews-v1;.;destination_workload_namespace=.=default;.;" +
	"destination_principal=.=spiffe://cluster.local/ns/default/sa/bookinfo-reviews;.;" +
	"destination_app=.=reviews;.;destination_version=.=v1;.;destination_service=.=reviews.default.svc.cluster.local;.;" +
	"destination_canonical_service=.=reviews;.;destination_canonical_revision=.=v1;.;" +
	"destination_service_name=.=reviews;.;destination_service_namespace=.=default;.;destination_cluster=.=Kubernetes;.;" +
	"request_protocol=.=http;.;response_code=.=200;.;grpc_response_status=.=;.;response_flags=.=-;.;" +
	"connection_security_policy=.=mutual_tls;.;"

func TestIstioStandardMetrics(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		e := start(t, vm, `{"reporter":"destination"}`, reviewsNode)
		req := [][2]string{
			{":method", "GET"}, {":path", "/reviews/0"}, {":authority", "reviews.default.svc.cluster.local:9080"},
			{"x-envoy-peer-metadata", productpagePeer(t)},
		}
		for i := 0; i < 3; i++ {
			e.request(req, [][2]string{{":status", "200"}})
		}
		got, err := e.GetCounterMetric(reviewsLabels + "istio_requests_total")
		if err != nil || got != 3 {
			t.Fatalf("istio_requests_total = %d, %v; want 3", got, err)
		}
		for _, h := range []string{"istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"} {
			if _, err := e.GetHistogramMetric(reviewsLabels + h); err != nil {
				t.Errorf("%s: %v", h, err)
			}
		}
		// Without Envoy's response.total_size the body bytes are counted.
		if v, _ := e.GetHistogramMetric(reviewsLabels + "istio_response_bytes"); v != 5 {
			t.Errorf("istio_response_bytes recorded %d, want 5", v)
		}
		// A different response code is a different series.
		e.request(req, [][2]string{{":status", "503"}})
		name503 := strings.Replace(reviewsLabels, "response_code=.=200", "response_code=.=503", 1) + "istio_requests_total"
		if got, err := e.GetCounterMetric(name503); err != nil || got != 1 {
			t.Errorf("503 series = %d, %v", got, err)
		}
	})
}

// productpageNode is the node metadata of productpage-v1's sidecar, the
// source side in sourceSeries.
var productpageNode = map[string]string{
	"node|metadata|WORKLOAD_NAME": "productpage-v1", "node|metadata|NAMESPACE": "default",
	"node|metadata|LABELS|app": "productpage",
}

// sourceRequest is productpage calling ratings over gRPC, ratings
// answering with its peer metadata; sourceSeries is how the source side
// counts it.
func sourceRequest(t *testing.T, e *emulator) exchange {
	return e.request(
		[][2]string{{":authority", "ratings:9080"}, {"content-type", "application/grpc"}},
		[][2]string{{":status", "200"}, {"grpc-status", "14"}, {"x-envoy-peer-metadata", peerMetadata(t, map[string]any{"WORKLOAD_NAME": "ratings-v1", "NAMESPACE": "bookinfo"})}},
	)
}

const sourceSeries = "reporter=.=source;.;source_workload=.=productpage-v1;.;source_canonical_service=.=productpage;.;source_canonical_revision=.=latest;.;" +
	"source_workload_namespace=.=default;.;source_principal=.=unknown;.;source_app=.=productpage;.;source_version=.=unknown;.;source_cluster=.=;.;" +
	"destination_workload=.=ratings-v1;.;destination_workload_namespace=.=bookinfo;.;destination_principal=.=unknown;.;destination_app=.=unknown;.;" +
	"destination_version=.=unknown;.;destination_service=.=ratings;.;destination_canonical_service=.=ratings-v1;.;destination_canonical_revision=.=latest;.;" +
	"destination_service_name=.=ratings;.;destination_service_namespace=.=bookinfo;.;destination_cluster=.=unknown;.;" +
	"request_protocol=.=grpc;.;response_code=.=200;.;grpc_response_status=.=14;.;response_flags=.=-;.;connection_security_policy=.=unknown;.;istio_requests_total"

func TestSourceReporterAndUnknownPeer(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		e := start(t, vm, `{"reporter":"source"}`, productpageNode)
		x := sourceRequest(t, e)
		if got, err := e.GetCounterMetric(sourceSeries); err != nil || got != 1 {
			t.Errorf("source-side series: %d, %v", got, err)
		}
		if x.state["meshtrail_peer_workload"] != "ratings-v1" || x.state["meshtrail_peer_namespace"] != "bookinfo" {
			t.Errorf("peer in filter state: %v", x.state)
		}
	})
}

// Envoy 1.33 serves the local node and the listener direction only as
// xds.node and xds.listener_direction; older Envoys served node and
// listener_direction. The identity and reporter:auto work with either
// name alone (and with both).
func TestIdentityAndDirectionUnderEitherName(t *testing.T) {
	inbound, outbound := string(binary.LittleEndian.AppendUint64(nil, 1)), string(binary.LittleEndian.AppendUint64(nil, 2))
	// named keys the node (given under node|...) and the direction
	// under the current names, the old ones or both.
	named := func(node map[string]string, direction string, current, old bool) map[string]string {
		p := map[string]string{}
		for k, v := range node {
			if rest, ok := strings.CutPrefix(k, "node|"); ok {
				if current {
					p["xds|node|"+rest] = v
				}
				if old {
					p[k] = v
				}
				continue
			}
			p[k] = v
		}
		if current {
			p["xds|listener_direction"] = direction
		}
		if old {
			p["listener_direction"] = direction
		}
		return p
	}
	for _, n := range []struct {
		name         string
		current, old bool
	}{{"xds names only", true, false}, {"old names only", false, true}, {"both", true, true}} {
		t.Run(n.name, func(t *testing.T) {
			eachRunner(t, func(t *testing.T, vm types.VMContext) {
				// Inbound: reporter destination, reviews-v1 the local side.
				e := start(t, vm, `{}`, named(reviewsNode, inbound, n.current, n.old))
				for i := 0; i < 2; i++ {
					e.request([][2]string{
						{":authority", "reviews.default.svc.cluster.local:9080"}, {"x-envoy-peer-metadata", productpagePeer(t)},
					}, nil)
				}
				if got, err := e.GetCounterMetric(reviewsLabels + "istio_requests_total"); err != nil || got != 2 {
					t.Errorf("inbound series: %d, %v", got, err)
				}
				// Outbound: reporter source (not the default destination),
				// productpage-v1 the local side.
				e = start(t, vm, `{}`, named(productpageNode, outbound, n.current, n.old))
				sourceRequest(t, e)
				sourceRequest(t, e)
				if got, err := e.GetCounterMetric(sourceSeries); err != nil || got != 2 {
					t.Errorf("outbound series: %d, %v", got, err)
				}
			})
		})
	}
}

func TestMetricOverrides(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		cfg := `{"reporter":"destination","metrics":{"overrides":[
			{"tag_overrides":{"request_protocol":{"operation":"REMOVE"},"source_principal":{"operation":"REMOVE"},
			  "tenant":{"value":"request.headers['x-tenant']"}}},
			{"match":"REQUEST_COUNT","tag_overrides":{"response_code":{"operation":"REMOVE"},"path":{"value":"request.url_path"}}}
		]}}`
		props := map[string]string{"request|url_path": "/reviews"}
		for k, v := range reviewsNode {
			props[k] = v
		}
		e := start(t, vm, cfg, props)
		e.request([][2]string{{":authority", "reviews.default.svc.cluster.local"}, {"x-tenant", "acme"}, {"x-envoy-peer-metadata", productpagePeer(t)}}, nil)
		base := strings.Replace(reviewsLabels, "request_protocol=.=http;.;", "", 1)
		base = strings.Replace(base, "source_principal=.=spiffe://cluster.local/ns/default/sa/bookinfo-productpage;.;", "", 1)
		count := strings.Replace(base, "response_code=.=200;.;", "", 1) + "tenant=.=acme;.;path=.=/reviews;.;istio_requests_total"
		if got, err := e.GetCounterMetric(count); err != nil || got != 1 {
			t.Errorf("requests with overrides: %d, %v", got, err)
		}
		if _, err := e.GetHistogramMetric(base + "tenant=.=acme;.;istio_request_duration_milliseconds"); err != nil {
			t.Errorf("duration with overrides: %v", err)
		}
	})
}

func TestSeriesCap(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		e := start(t, vm, `{"metrics":{"max_series":1}}`, nil)
		e.request(nil, [][2]string{{":status", "200"}}) // the one label combination
		e.request(nil, [][2]string{{":status", "200"}})
		e.request(nil, [][2]string{{":status", "404"}}) // a second one: dropped
		if got, err := e.GetCounterMetric("meshtrail_metric_series_dropped_total"); err != nil || got != 1 {
			t.Errorf("dropped = %d, %v; want 1", got, err)
		}
	})
}

func TestResponseFlags(t *testing.T) {
	for _, c := range []struct {
		flags uint64
		want  string
	}{{0, "-"}, {0x2, "UH"}, {0x2 | 0x100, "UH,NR"}, {0x1 << 40, "-"},
		{1 << 27, "DO"}, {1 << 28, "DR"}, {1 << 29, "UDO"}, {1<<14 | 1<<28, "DC,DR"}, {1 << 30, "-"}} {
		if got := formatResponseFlags(c.flags); got != c.want {
			t.Errorf("formatResponseFlags(%#x) = %q, want %q", c.flags, got, c.want)
		}
	}
}

// gRPC answers carry grpc-status in trailers; trailers-only answers in the
// headers. Both land in grpc_response_status.
func TestGrpcStatusFromTrailers(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		e := start(t, vm, `{"reporter":"destination","metrics":{"overrides":[{"tag_overrides":{
			"source_workload":{"operation":"REMOVE"},"source_canonical_service":{"operation":"REMOVE"}}}]}}`, nil)
		id := e.InitializeHttpContext()
		e.CallOnRequestHeaders(id, [][2]string{{":authority", "ratings"}, {"content-type", "application/grpc+proto"}}, false)
		e.CallOnResponseHeaders(id, [][2]string{{":status", "200"}, {"content-type", "application/grpc"}}, false)
		e.CallOnResponseTrailers(id, [][2]string{{"grpc-status", "5"}})
		e.CompleteHttpContext(id)
		var found bool
		want := "reporter=.=destination;.;source_canonical_revision=.=latest;.;source_workload_namespace=.=unknown;.;" +
			"source_principal=.=unknown;.;source_app=.=unknown;.;source_version=.=unknown;.;source_cluster=.=unknown;.;" +
			"destination_workload=.=unknown;.;destination_workload_namespace=.=unknown;.;destination_principal=.=unknown;.;" +
			"destination_app=.=unknown;.;destination_version=.=unknown;.;destination_service=.=ratings;.;" +
			"destination_canonical_service=.=unknown;.;destination_canonical_revision=.=latest;.;destination_service_name=.=ratings;.;" +
			"destination_service_namespace=.=unknown;.;destination_cluster=.=;.;request_protocol=.=grpc;.;response_code=.=200;.;" +
			"grpc_response_status=.=5;.;response_flags=.=-;.;connection_security_policy=.=none;.;istio_requests_total"
		if v, err := e.GetCounterMetric(want); err == nil && v == 1 {
			found = true
		}
		if !found {
			t.Errorf("no series %s", want)
		}
	})
}

// The principals and connection_security_policy are labels: with the
// access log part disabled they are still resolved from the connection.
func TestPrincipalsWithoutAccessLog(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		e := start(t, vm, `{"reporter":"destination","access_log":{"disabled":true}}`, reviewsNode)
		e.request([][2]string{
			{":authority", "reviews.default.svc.cluster.local:9080"}, {"x-envoy-peer-metadata", productpagePeer(t)},
		}, nil)
		if got, err := e.GetCounterMetric(reviewsLabels + "istio_requests_total"); err != nil || got != 1 {
			t.Errorf("series with mTLS principals: %d, %v", got, err)
		}
	})
}

// A local reply from a filter before this one (RBAC 403, JWT 401): Envoy
// runs none of the header callbacks, only the log. The request is still
// counted (as Istio counts it), with every custom dimension, and is not a
// filter error.
func TestLocalReplyBeforeFilterIsCounted(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		cfg := `{"reporter":"destination","metrics":{"overrides":[{"tag_overrides":{
			"tenant":{"value":"request.headers['x-tenant']"},"server":{"value":"response.headers['server']"},
			"path":{"value":"request.url_path"}}}]}}`
		props := map[string]string{"response|code": "\xcb\x01\x00\x00\x00\x00\x00\x00", "request|url_path": "/reviews"} // 459
		for k, v := range reviewsNode {
			props[k] = v
		}
		e := start(t, vm, cfg, props)
		id := e.InitializeHttpContext()
		e.CompleteHttpContext(id)
		if n, err := e.GetCounterMetric("meshtrail_filter_errors_total"); err != nil || n != 0 {
			t.Fatalf("filter errors = %d, %v; want 0", n, err)
		}
		// proxytest has no headers to give at log time (the stand-in
		// test reads them): the peer is unknown but for the principal,
		// from the connection; the status from response.code; without a
		// host the service is the local canonical service, as Istio's.
		name := "reporter=.=destination;.;source_workload=.=unknown;.;source_canonical_service=.=unknown;.;source_canonical_revision=.=latest;.;" +
			"source_workload_namespace=.=default;.;source_principal=.=spiffe://cluster.local/ns/default/sa/bookinfo-productpage;.;" +
			"source_app=.=unknown;.;source_version=.=unknown;.;source_cluster=.=unknown;.;" +
			"destination_workload=.=reviews-v1;.;destination_workload_namespace=.=default;.;" +
			"destination_principal=.=spiffe://cluster.local/ns/default/sa/bookinfo-reviews;.;" +
			"destination_app=.=reviews;.;destination_version=.=v1;.;destination_service=.=reviews;.;" +
			"destination_canonical_service=.=reviews;.;destination_canonical_revision=.=v1;.;" +
			"destination_service_name=.=reviews;.;destination_service_namespace=.=default;.;destination_cluster=.=Kubernetes;.;" +
			"request_protocol=.=http;.;response_code=.=459;.;grpc_response_status=.=;.;response_flags=.=-;.;" +
			"connection_security_policy=.=mutual_tls;.;path=.=/reviews;.;server=.=unknown;.;tenant=.=unknown;.;istio_requests_total"
		if got, err := e.GetCounterMetric(name); err != nil || got != 1 {
			t.Errorf("local reply counted %d, %v as %s", got, err, name)
		}
	})
}

// Label values come from the client. One carrying another label's
// `name=.=value;.;` must not be taken for it by Envoy's tag extractor,
// which applies `(name=\.=(.*?);\.;)` to the whole stat name and takes the
// first match.
func TestForgedLabelInValue(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		e := start(t, vm, `{"reporter":"destination","metrics":{"overrides":[{"tag_overrides":{"tenant":{"value":"request.headers['x-tenant']"}}}]}}`, reviewsNode)
		e.request([][2]string{
			{":authority", "evilresponse_code=.=999"}, {"x-tenant", "aresponse_flags=.=UF;.;b"},
			{"x-envoy-peer-metadata", productpagePeer(t)},
		}, nil)
		name := strings.Replace(reviewsLabels, "destination_service=.=reviews.default.svc.cluster.local;.;", "destination_service=.=evilresponse_code_._999;.;", 1)
		name = strings.Replace(name, "destination_service_name=.=reviews;.;destination_service_namespace=.=default;.;",
			"destination_service_name=.=evilresponse_code_._999;.;destination_service_namespace=.=default;.;", 1)
		name += "tenant=.=aresponse_flags_._UF_._b;.;istio_requests_total"
		if got, err := e.GetCounterMetric(name); err != nil || got != 1 {
			t.Fatalf("series %s: %d, %v", name, got, err)
		}
		for tag, want := range map[string]string{"response_code": "200", "response_flags": "-", "destination_service": "evilresponse_code_._999"} {
			m := regexp.MustCompile(`(` + tag + `=\.=(.*?);\.;)`).FindStringSubmatch(name)
			if m == nil || m[2] != want {
				t.Errorf("tag %s extracted as %q, want %q", tag, m, want)
			}
		}
	})
}

// pairs serializes key/value pairs as Proxy-Wasm does (Envoy's map
// properties): count, (key size, value size) each, then each key and
// value NUL-terminated.
func pairs(kv ...string) string {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(len(kv)/2))
	for i := 0; i < len(kv); i += 2 {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(kv[i])))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(kv[i+1])))
	}
	for _, s := range kv {
		b = append(append(b, s...), 0)
	}
	return string(b)
}

// Under Istio's peer_metadata filter the x-envoy-peer-metadata request
// header is gone by the time this filter runs; the peer is the filter
// state downstream_peer (a Struct CelState, read through
// ["filter_state","downstream_peer"] as a map's pairs). The header, when
// present (no peer_metadata filter), still comes first.
func TestPeerFromFilterState(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		props := map[string]string{"filter_state|downstream_peer": pairs(
			"type", "deployment", "workload", "productpage-v1", "name", "productpage-v1-55b9", "cluster", "Kubernetes",
			"namespace", "default", "service", "productpage", "revision", "v1", "app", "productpage", "version", "v1",
			"labels", pairs("app", "productpage", "version", "v1"))}
		for k, v := range reviewsNode {
			props[k] = v
		}
		e := start(t, vm, `{"reporter":"destination"}`, props)
		x := e.request([][2]string{{":authority", "reviews.default.svc.cluster.local:9080"}}, nil)
		if got, err := e.GetCounterMetric(reviewsLabels + "istio_requests_total"); err != nil || got != 1 {
			t.Errorf("series with the filter-state peer: %d, %v", got, err)
		}
		if x.state["meshtrail_peer_workload"] != "productpage-v1" || x.state["meshtrail_peer_canonical_service"] != "productpage" {
			t.Errorf("peer in filter state: %v", x.state)
		}
		// The header wins when both are there.
		e.request([][2]string{{":authority", "reviews.default.svc.cluster.local:9080"},
			{"x-envoy-peer-metadata", peerMetadata(t, map[string]any{"WORKLOAD_NAME": "ratings-v1", "NAMESPACE": "default"})}}, nil)
		ratings := strings.NewReplacer("source_workload=.=productpage-v1;.;source_canonical_service=.=productpage;.;source_canonical_revision=.=v1;.;",
			"source_workload=.=ratings-v1;.;source_canonical_service=.=ratings-v1;.;source_canonical_revision=.=latest;.;",
			"source_app=.=productpage;.;source_version=.=v1;.;source_cluster=.=Kubernetes;.;",
			"source_app=.=unknown;.;source_version=.=unknown;.;source_cluster=.=unknown;.;").Replace(reviewsLabels)
		if got, err := e.GetCounterMetric(ratings + "istio_requests_total"); err != nil || got != 1 {
			t.Errorf("header peer not preferred: %d, %v", got, err)
		}
	})
}

// onlyServiceLabels is a configuration that removes every standard label
// but destination_service, destination_service_name and
// destination_service_namespace, so a test can name the series.
func onlyServiceLabels(reporter string) string {
	var b strings.Builder
	b.WriteString(`{"reporter":"` + reporter + `","metrics":{"overrides":[{"tag_overrides":{`)
	first := true
	for _, l := range standardLabels {
		if strings.HasPrefix(l, "destination_service") {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(`"` + l + `":{"operation":"REMOVE"}`)
	}
	b.WriteString(`}}]}}`)
	return b.String()
}

func serviceSeries(svc, name, ns string) string {
	return "destination_service=.=" + svc + ";.;destination_service_name=.=" + name + ";.;destination_service_namespace=.=" + ns + ";.;istio_requests_total"
}

// The source side takes the destination service from the upstream
// cluster Istio names outbound|PORT|SUBSET|HOST, so a failed call (no
// peer metadata came back) still names the service; its
// destination_service_namespace is the peer's, as Istio's
// (istio_stats.cc populatePeerInfo: peer_namespace), so "unknown";
// Istio's passthrough and blackhole (route block_all, no cluster) get
// the cluster's name and keep the requested host; a cluster named
// otherwise leaves :authority.
func TestSourceDestinationServiceFromCluster(t *testing.T) {
	for _, c := range []struct {
		name      string
		props     map[string]string
		authority string
		want      string
	}{
		{"service", map[string]string{"xds|cluster_name": "outbound|9080||ratings.bookinfo.svc.cluster.local"}, "ratings:9080",
			serviceSeries("ratings.bookinfo.svc.cluster.local", "ratings", "unknown")},
		{"subset", map[string]string{"xds|cluster_name": "outbound|9080|v2|reviews.default.svc.cluster.local"}, "reviews",
			serviceSeries("reviews.default.svc.cluster.local", "reviews", "unknown")},
		{"service entry", map[string]string{"xds|cluster_name": "outbound|443||api.example.com"}, "api.example.com",
			serviceSeries("api.example.com", "api.example.com", "unknown")},
		{"passthrough", map[string]string{"xds|cluster_name": "PassthroughCluster"}, "httpbin.org",
			serviceSeries("httpbin.org", "PassthroughCluster", "unknown")},
		{"blackhole cluster", map[string]string{"xds|cluster_name": "BlackHoleCluster"}, "blocked.example.com:8080",
			serviceSeries("blocked.example.com", "BlackHoleCluster", "unknown")},
		{"blackhole route", map[string]string{"xds|route_name": "block_all"}, "blocked.example.com",
			serviceSeries("blocked.example.com", "BlackHoleCluster", "unknown")},
		{"not istio", map[string]string{"xds|cluster_name": "service_backend"}, "ratings:9080",
			serviceSeries("ratings", "ratings", "unknown")},
		{"no cluster", nil, "ratings.bookinfo.svc.cluster.local",
			serviceSeries("ratings.bookinfo.svc.cluster.local", "ratings", "unknown")},
	} {
		t.Run(c.name, func(t *testing.T) {
			eachRunner(t, func(t *testing.T, vm types.VMContext) {
				e := start(t, vm, onlyServiceLabels("source"), c.props)
				e.request([][2]string{{":authority", c.authority}}, [][2]string{{":status", "503"}})
				if got, err := e.GetCounterMetric(c.want); err != nil || got != 1 {
					t.Errorf("series %s: %d, %v", c.want, got, err)
				}
			})
		})
	}
}

// The destination side takes the service from the inbound cluster's
// metadata istio.services[0] (its cluster name inbound|PORT|| names no
// host), names InboundPassthroughCluster traffic after the cluster, and
// falls back to :authority, then to the local canonical service.
func TestDestinationServiceFromClusterMetadata(t *testing.T) {
	services := "xds|cluster_metadata|filter_metadata|istio|services|0"
	for _, c := range []struct {
		name      string
		props     map[string]string
		authority string
		want      string
	}{
		{"metadata", map[string]string{services: pairs("host", "reviews.default.svc.cluster.local", "name", "reviews", "namespace", "default"),
			"xds|cluster_name": "inbound|9080||"}, "reviews:9080",
			serviceSeries("reviews.default.svc.cluster.local", "reviews", "default")},
		{"inbound passthrough", map[string]string{"xds|cluster_name": "InboundPassthroughClusterIpv4"}, "10.1.0.7:8000",
			serviceSeries("10.1.0.7", "InboundPassthroughClusterIpv4", "default")},
		{"no metadata", map[string]string{"xds|cluster_name": "inbound|9080||"}, "reviews:9080",
			serviceSeries("reviews", "reviews", "default")},
		{"no host", nil, "", serviceSeries("reviews", "reviews", "default")},
	} {
		t.Run(c.name, func(t *testing.T) {
			eachRunner(t, func(t *testing.T, vm types.VMContext) {
				props := map[string]string{}
				for k, v := range reviewsNode {
					props[k] = v
				}
				for k, v := range c.props {
					props[k] = v
				}
				e := start(t, vm, onlyServiceLabels("destination"), props)
				var req [][2]string
				if c.authority != "" {
					req = [][2]string{{":authority", c.authority}}
				}
				e.request(req, nil)
				if got, err := e.GetCounterMetric(c.want); err != nil || got != 1 {
					t.Errorf("series %s: %d, %v", c.want, got, err)
				}
			})
		})
	}
}

// The local identity is read until Envoy names one: a plaintext first
// request (PERMISSIVE mTLS; a worker's first outbound call to a non-TLS
// upstream) has no local certificate, and must not leave the principal
// unknown for the worker's lifetime.
func TestLocalPrincipalAfterPlaintextRequest(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		t.Run("destination", func(t *testing.T) {
			plain := map[string]string{"connection|mtls": "\x00"}
			for k, v := range reviewsNode {
				if !strings.HasPrefix(k, "connection|") {
					plain[k] = v
				}
			}
			e := start(t, vm, `{"reporter":"destination"}`, plain)
			req := [][2]string{{":authority", "reviews.default.svc.cluster.local:9080"}, {"x-envoy-peer-metadata", productpagePeer(t)}}
			e.request(req, nil)
			plainLabels := strings.Replace(reviewsLabels, "source_principal=.=spiffe://cluster.local/ns/default/sa/bookinfo-productpage;.;", "source_principal=.=unknown;.;", 1)
			plainLabels = strings.Replace(plainLabels, "destination_principal=.=spiffe://cluster.local/ns/default/sa/bookinfo-reviews;.;", "destination_principal=.=unknown;.;", 1)
			plainLabels = strings.Replace(plainLabels, "connection_security_policy=.=mutual_tls;.;", "connection_security_policy=.=none;.;", 1)
			if got, err := e.GetCounterMetric(plainLabels + "istio_requests_total"); err != nil || got != 1 {
				t.Errorf("plaintext series: %d, %v", got, err)
			}
			for _, k := range []string{"connection|mtls", "connection|uri_san_peer_certificate", "connection|uri_san_local_certificate"} {
				if err := e.SetProperty(strings.Split(k, "|"), []byte(reviewsNode[k])); err != nil {
					t.Fatal(err)
				}
			}
			e.request(req, nil)
			if got, err := e.GetCounterMetric(reviewsLabels + "istio_requests_total"); err != nil || got != 1 {
				t.Errorf("mTLS series after a plaintext request: %d, %v", got, err)
			}
		})
		t.Run("source", func(t *testing.T) {
			e := start(t, vm, `{"reporter":"source"}`, productpageNode)
			sourceRequest(t, e)
			if got, err := e.GetCounterMetric(sourceSeries); err != nil || got != 1 {
				t.Errorf("plaintext upstream series: %d, %v", got, err)
			}
			for k, v := range map[string]string{
				"upstream|uri_san_peer_certificate":  "spiffe://cluster.local/ns/bookinfo/sa/ratings",
				"upstream|uri_san_local_certificate": "spiffe://cluster.local/ns/default/sa/productpage",
			} {
				if err := e.SetProperty(strings.Split(k, "|"), []byte(v)); err != nil {
					t.Fatal(err)
				}
			}
			sourceRequest(t, e)
			want := strings.Replace(sourceSeries, "source_principal=.=unknown;.;", "source_principal=.=spiffe://cluster.local/ns/default/sa/productpage;.;", 1)
			want = strings.Replace(want, "destination_principal=.=unknown;.;", "destination_principal=.=spiffe://cluster.local/ns/bookinfo/sa/ratings;.;", 1)
			if got, err := e.GetCounterMetric(want); err != nil || got != 1 {
				t.Errorf("TLS upstream series after a plaintext one: %d, %v", got, err)
			}
		})
	})
}
