package als

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogsvc "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshtrail/meshtrail/internal/record"
)

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

// Envoy logs upstream_cluster only once it picked an upstream host, so the
// failures a user looks for (no route, no healthy upstream, a blocked host)
// arrive without an Istio cluster name. They must still say which side
// reported them and whose workload it was, as Istio's metrics do.
func TestEntriesWithoutAnIstioClusterStillHaveAReporter(t *testing.T) {
	const podIP = "10.1.2.3" // the node id's IP (httpMessage)
	type want struct {
		reporter, service, serviceName, source, destination string
	}
	cases := []struct {
		name string
		edit func(e *accesslogv3.HTTPAccessLogEntry)
		want want
	}{
		{"inbound without a cluster (a local reply)", func(e *accesslogv3.HTTPAccessLogEntry) {
			e.CommonProperties.UpstreamCluster = ""
			e.CommonProperties.DownstreamLocalAddress = socketAddress(podIP, 8080)
			e.Request.Authority = "cart.shop.svc.cluster.local:8080"
			e.Response.ResponseCode = wrapperspb.UInt32(403)
		}, want{"destination", "cart.shop.svc.cluster.local", "cart", "", "cart"}},
		{"outbound without a cluster (no healthy upstream)", func(e *accesslogv3.HTTPAccessLogEntry) {
			e.CommonProperties.UpstreamCluster = ""
			e.CommonProperties.DownstreamLocalAddress = socketAddress("10.96.0.15", 8080)
			e.Response.ResponseCode = wrapperspb.UInt32(503)
		}, want{"source", "", "", "cart", ""}},
		{"blocked by REGISTRY_ONLY", func(e *accesslogv3.HTTPAccessLogEntry) {
			e.CommonProperties.UpstreamCluster = ""
			e.CommonProperties.RouteName = "block_all"
			e.CommonProperties.DownstreamLocalAddress = socketAddress("93.184.215.14", 80)
			e.Request.Authority = "httpbin.org"
			e.Response.ResponseCode = wrapperspb.UInt32(502)
		}, want{"source", "httpbin.org", "BlackHoleCluster", "cart", ""}},
		{"let through by ALLOW_ANY", func(e *accesslogv3.HTTPAccessLogEntry) {
			e.CommonProperties.UpstreamCluster = "PassthroughCluster"
			e.CommonProperties.RouteName = "allow_any"
			e.Request.Authority = "httpbin.org:80"
		}, want{"source", "httpbin.org", "PassthroughCluster", "cart", ""}},
		{"inbound passthrough", func(e *accesslogv3.HTTPAccessLogEntry) {
			e.CommonProperties.UpstreamCluster = "InboundPassthroughClusterIpv4"
			e.Request.Authority = "10.1.2.3:9999"
		}, want{"destination", "10.1.2.3", "InboundPassthroughClusterIpv4", "", "cart"}},
	}
	ts := startService(t, nil)
	var entries []*accesslogv3.HTTPAccessLogEntry
	for _, c := range cases {
		e := httpEntry(map[string]string{"x-case": c.name})
		c.edit(e)
		entries = append(entries, e)
	}
	if err := ts.send(ts.dial(), httpMessage(true, entries...)); err != nil {
		t.Fatal(err)
	}
	m := ts.metrics(false)
	recs := ts.records()
	if len(recs) != len(cases) {
		t.Fatalf("%d records, want %d", len(recs), len(cases))
	}
	for i, c := range cases {
		r := recs[i]
		got := want{string(r.Reporter), r.Upstream.Service, r.Upstream.ServiceName, r.Source.Name, r.Destination.Name}
		if got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
	}
	// The blocked request is counted as Istio counts it: by the source, to
	// BlackHoleCluster, for the host asked for.
	if v := metricValue(t, m, "meshtrail_requests_total", `reporter="source"`, `source_workload="cart"`,
		`destination_service="httpbin.org"`, `destination_service_name="BlackHoleCluster"`, `response_code="502"`,
		`destination_canonical_service="unknown"`); v != "1" {
		t.Errorf("blocked request counted %q times, want 1", v)
	}
	if v := metricValue(t, m, "meshtrail_requests_total", `reporter="destination"`, `destination_workload="cart"`, `response_code="403"`); v != "1" {
		t.Errorf("inbound local reply counted %q times, want 1", v)
	}
}

// A request can carry a traceparent and a b3 that disagree (a W3C client
// behind a Zipkin-traced mesh). The record must carry the trace id of the
// tracer the mesh uses, which trace.header_order names.
func TestTraceHeaderOrderPicksWhichHeaderWins(t *testing.T) {
	const w3c, b3 = "4bf92f3577b34da6a3ce929d0e0e4736", "80f198ee56343ba864fe8b2a57d3eff7"
	headers := map[string]string{
		"traceparent": "00-" + w3c + "-00f067aa0ba902b7-01",
		"b3":          b3 + "-e457b5a2e4d86bd1-1",
	}
	for _, c := range []struct {
		order []string
		want  string
	}{
		{nil, w3c}, // the default: w3c, b3, b3multi
		{[]string{"b3", "b3multi", "w3c"}, b3},
	} {
		ts := startService(t, func(cfg *Config) {
			if c.order != nil {
				cfg.Trace.HeaderOrder = c.order
			}
		})
		if err := ts.send(ts.dial(), httpMessage(true, httpEntry(headers))); err != nil {
			t.Fatal(err)
		}
		if got := ts.records()[0].Trace.TraceID; got != c.want {
			t.Errorf("order %v: trace id %s, want %s", c.order, got, c.want)
		}
	}
}

// An ambient waypoint reports requests between two other workloads: Istio
// labels them reporter="waypoint", and neither side is the waypoint.
func TestWaypointEntriesAreReportedByTheWaypoint(t *testing.T) {
	ts := startService(t, nil)
	e := httpEntry(nil)
	e.CommonProperties.UpstreamCluster = "inbound-vip|9080|http|reviews.default.svc.cluster.local"
	e.CommonProperties.UpstreamRemoteAddress = &corev3.Address{Address: &corev3.Address_EnvoyInternalAddress{EnvoyInternalAddress: &corev3.EnvoyInternalAddress{
		AddressNameSpecifier: &corev3.EnvoyInternalAddress_ServerListenerName{ServerListenerName: "connect_originate"}, EndpointId: "10.244.1.12:9080"}}}
	e.CommonProperties.TlsProperties = &accesslogv3.TLSProperties{PeerCertificateProperties: &accesslogv3.TLSProperties_CertificateProperties{
		SubjectAltName: []*accesslogv3.TLSProperties_CertificateProperties_SubjectAltName{{San: &accesslogv3.TLSProperties_CertificateProperties_SubjectAltName_Uri{Uri: "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"}}}}}
	m := httpMessage(false, e)
	m.Identifier = &accesslogsvc.StreamAccessLogsMessage_Identifier{
		Node:    &corev3.Node{Id: "waypoint~10.1.9.9~waypoint-7d9f8c6b5d-q2w7e.default~default.svc.cluster.local"},
		LogName: "test",
	}
	if err := ts.send(ts.dial(), m); err != nil {
		t.Fatal(err)
	}
	text := ts.metrics(false)
	r := ts.records()[0]
	if r.Reporter != "waypoint" || r.Destination.Name == "waypoint" || r.Source.Name == "waypoint" ||
		r.Upstream.ServiceName != "reviews" || r.ConnectionSecurityPolicy != "mutual_tls" || r.Upstream.Host != "envoy://connect_originate/10.244.1.12:9080" ||
		r.Source.Principal != "spiffe://cluster.local/ns/default/sa/bookinfo-productpage" {
		t.Errorf("waypoint record: reporter %q source %+v destination %+v service %q policy %q upstream host %q",
			r.Reporter, r.Source, r.Destination, r.Upstream.ServiceName, r.ConnectionSecurityPolicy, r.Upstream.Host)
	}
	if v := metricValue(t, text, "meshtrail_requests_total", `reporter="waypoint"`, `destination_service_name="reviews"`); v != "1" {
		t.Errorf("waypoint request counted %q times, want 1", v)
	}
}

// Istio attaches the envoyHttpAls provider to tcp_proxy filter chains too,
// and Envoy's HTTP gRPC logger then sends each TCP connection as an HTTP
// entry whose access_log_type is a TCP one. It must count as a
// connection, not as an HTTP request with response code 0.
func TestTCPConnectionsLoggedAsHTTPEntriesAreTCP(t *testing.T) {
	ts := startService(t, nil)
	e := httpEntry(nil)
	e.CommonProperties.UpstreamCluster = "outbound|5432||pg.db.svc.cluster.local"
	e.CommonProperties.AccessLogType = accesslogv3.AccessLogType_TcpConnectionEnd
	e.Request = &accesslogv3.HTTPRequestProperties{RequestBodyBytes: 1200}
	e.Response = &accesslogv3.HTTPResponseProperties{ResponseBodyBytes: 34000}
	if err := ts.send(ts.dial(), httpMessage(true, e)); err != nil {
		t.Fatal(err)
	}
	m := ts.metrics(false)
	r := ts.records()[0]
	if r.Kind != record.KindTCP || r.ReceivedBytes != 1200 || r.SentBytes != 34000 || r.HTTP.Method != "" {
		t.Errorf("record kind %q received %d sent %d method %q, want a TCP connection", r.Kind, r.ReceivedBytes, r.SentBytes, r.HTTP.Method)
	}
	if v := metricValue(t, m, "meshtrail_tcp_connections_closed_total", `destination_service="pg.db.svc.cluster.local"`); v != "1" {
		t.Errorf("connections closed %q, want 1", v)
	}
	if v := metricValue(t, m, "meshtrail_tcp_received_bytes_total", `destination_service="pg.db.svc.cluster.local"`); v != "1200" {
		t.Errorf("received bytes %q, want 1200", v)
	}
	if strings.Contains(m, `meshtrail_requests_total{`) {
		t.Errorf("a TCP connection was counted as an HTTP request")
	}
}

func uriSAN(uri string) *accesslogv3.TLSProperties_CertificateProperties {
	return &accesslogv3.TLSProperties_CertificateProperties{SubjectAltName: []*accesslogv3.TLSProperties_CertificateProperties_SubjectAltName{
		{San: &accesslogv3.TLSProperties_CertificateProperties_SubjectAltName_Uri{Uri: uri}}}}
}

// Principals are what Istio's stats report: the identity the proxy served
// the request with (unknown over plaintext), never one made up from the
// service account and a guessed trust domain; the proxy's outbound entries
// carry the identity it showed inbound.
func TestPrincipalsAreTheCertificatesNotGuesses(t *testing.T) {
	const self, caller = "spiffe://corp.example/ns/shop/sa/cart", "spiffe://corp.example/ns/web/sa/frontend"
	plain := httpEntry(map[string]string{"x-case": "plaintext inbound"})
	plain.CommonProperties.UpstreamCluster = "inbound|8080||"
	mtls := httpEntry(map[string]string{"x-case": "mTLS inbound"})
	mtls.CommonProperties.UpstreamCluster = "inbound|8080||"
	mtls.CommonProperties.TlsProperties = &accesslogv3.TLSProperties{PeerCertificateProperties: uriSAN(caller), LocalCertificateProperties: uriSAN(self)}
	out := httpEntry(map[string]string{"x-case": "outbound"}) // outbound|8080||api.shop...
	m := httpMessage(false, plain, mtls, out)
	md, err := structpb.NewStruct(map[string]any{"NAMESPACE": "shop", "SERVICE_ACCOUNT": "cart", "WORKLOAD_NAME": "cart"})
	if err != nil {
		t.Fatal(err)
	}
	m.Identifier = &accesslogsvc.StreamAccessLogsMessage_Identifier{LogName: "test",
		Node: &corev3.Node{Id: "sidecar~10.1.2.3~cart-5d8f7c9b6d-abcde.shop~shop.svc.cluster.local", Metadata: md}}
	ts := startService(t, nil)
	if err := ts.send(ts.dial(), m); err != nil {
		t.Fatal(err)
	}
	recs := ts.records()
	if p := recs[0].Destination.Principal; p != "" || recs[0].ConnectionSecurityPolicy != "none" {
		t.Errorf("plaintext inbound: destination principal %q policy %q, want none known", p, recs[0].ConnectionSecurityPolicy)
	}
	if p := recs[1].Destination.Principal; p != self || recs[1].Source.Principal != caller || recs[1].ConnectionSecurityPolicy != "mutual_tls" {
		t.Errorf("mTLS inbound: destination %q source %q policy %q", p, recs[1].Source.Principal, recs[1].ConnectionSecurityPolicy)
	}
	if p := recs[2].Source.Principal; p != self {
		t.Errorf("outbound after an mTLS inbound: source principal %q, want the proxy's own %q", p, self)
	}
}

// On an ambient waypoint the mTLS handshake ends a hop before the HTTP
// access log; Istio hands the identities over in filter state, and its
// stats read them first.
func TestWaypointPrincipalsFromIstioFilterState(t *testing.T) {
	str := func(s string) *anypb.Any {
		a, err := anypb.New(wrapperspb.String(s))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	e := httpEntry(nil)
	e.CommonProperties.UpstreamCluster = "inbound-vip|9080|http|reviews.default.svc.cluster.local"
	e.CommonProperties.FilterStateObjects = map[string]*anypb.Any{
		"io.istio.peer_principal":  str("spiffe://cluster.local/ns/default/sa/bookinfo-productpage"),
		"io.istio.local_principal": str("spiffe://cluster.local/ns/default/sa/waypoint"),
	}
	m := httpMessage(false, e)
	m.Identifier = &accesslogsvc.StreamAccessLogsMessage_Identifier{LogName: "test",
		Node: &corev3.Node{Id: "waypoint~10.1.9.9~waypoint-7d9f8c6b5d-q2w7e.default~default.svc.cluster.local"}}
	ts := startService(t, nil)
	if err := ts.send(ts.dial(), m); err != nil {
		t.Fatal(err)
	}
	r := ts.records()[0]
	if r.ConnectionSecurityPolicy != "mutual_tls" || r.Source.Principal != "spiffe://cluster.local/ns/default/sa/bookinfo-productpage" {
		t.Errorf("waypoint: policy %q source principal %q", r.ConnectionSecurityPolicy, r.Source.Principal)
	}
}
