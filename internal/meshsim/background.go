package meshsim

import (
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	grpcstatsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_stats/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// ExternalHost is the host outside the mesh details calls (Bookinfo's
// details-v2 looks books up there), through a ServiceEntry.
const ExternalHost = "www.googleapis.com"

// UnhealthyService is a Bookinfo service with no healthy endpoint: the
// gateway answers its requests with 503 UH.
const UnhealthyService = "catalog"

// UnroutableHost is a host the gateway has no route for: 404 NR.
const UnroutableHost = "shop.example.com"

// Background simulates, starting at now, the traffic of a real mesh that
// Bookinfo's page requests do not make, as the proxies log it:
//
//   - productpage -> inventory: a gRPC server-streaming call (HTTP/2,
//     application/grpc, grpc-status in trailers, Envoy's grpc_stats filter
//     state with the messages each way), both reporters;
//   - ratings -> mongodb: a TCP connection over Istio's mutual TLS, both
//     reporters (the callee's entry has the SNI naming the service);
//   - details -> ExternalHost: HTTPS through a ServiceEntry, reported by
//     the caller only (nothing in the mesh is on the other side);
//   - the gateway -> UnhealthyService: 503 UH, no upstream host was ever
//     picked (a failure before the upstream);
//   - the gateway -> UnroutableHost: 404 NR, no route and no cluster.
//
// A failure after the upstream (503 UF, the connection to the pod refused)
// is Request's, at ratings.
func (m *Mesh) Background(now time.Time) []Entry {
	var out []Entry
	out = append(out, m.grpcStream(now)...)
	out = append(out, m.tcpConnection(now)...)
	out = append(out, m.external(now))
	out = append(out, m.gatewayFailures(now)...)
	return out
}

// headersFor is what a proxy logs of a request that starts a new trace.
func (m *Mesh) headersFor() map[string]string {
	var tid [16]byte
	m.fill(tid[:])
	span := m.spanID()
	return map[string]string{"traceparent": fmt.Sprintf("00-%x-%x-01", tid, span), "x-request-id": fmt.Sprintf("%x-req", tid[:4])}
}

func (m *Mesh) grpcStream(now time.Time) []Entry {
	caller, callee := m.ProductPage, m.Inventory
	d := time.Duration(50+m.rng.IntN(200)) * time.Millisecond
	responses := uint64(3 + m.rng.IntN(18))
	h := m.headersFor()
	h["content-type"] = "application/grpc"
	mk := func(cluster string, start time.Time, d time.Duration) *accesslogv3.HTTPAccessLogEntry {
		e := m.entry(caller, callee, "/inventory.Inventory/Watch", cluster, start, d, 200, 1, &accesslogv3.ResponseFlags{}, "via_upstream", h)
		e.ProtocolVersion = accesslogv3.HTTPAccessLogEntry_HTTP2
		e.Request.Authority = callee.App + ":" + fmt.Sprint(callee.Port)
		e.Request.RequestMethod = corev3.RequestMethod_POST
		e.Request.RequestBodyBytes = 12
		e.Response.ResponseBodyBytes = responses * 48
		e.Response.ResponseHeaders = map[string]string{"content-type": "application/grpc"}
		e.Response.ResponseTrailers = map[string]string{"grpc-status": "0"}
		stats, _ := anypb.New(&grpcstatsv3.FilterObject{RequestMessageCount: 1, ResponseMessageCount: responses})
		e.CommonProperties.FilterStateObjects = map[string]*anypb.Any{"envoy.filters.http.grpc_stats": stats}
		return e
	}
	out := mk(fmt.Sprintf("outbound|%d||%s", callee.Port, callee.Service()), now, d)
	out.CommonProperties.FilterStateObjects["upstream_peer"] = callee.peerStruct()
	in := mk(fmt.Sprintf("inbound|%d||", callee.Port), now.Add(200*time.Microsecond), d-400*time.Microsecond)
	in.CommonProperties.FilterStateObjects["downstream_peer"] = caller.peerStruct()
	in.CommonProperties.TlsProperties = mtls(caller, callee)
	return []Entry{{Proxy: callee, HTTP: in}, {Proxy: caller, HTTP: out}}
}

func (m *Mesh) tcpConnection(now time.Time) []Entry {
	caller, callee := m.Ratings, m.MongoDB
	d := time.Duration(5+m.rng.IntN(50)) * time.Millisecond
	sent, received := uint64(200+m.rng.IntN(2000)), uint64(100+m.rng.IntN(300))
	mk := func(cluster string, start time.Time) *accesslogv3.TCPAccessLogEntry {
		// Only a connection's timing and addresses: the HTTP entry's
		// common properties minus what TCP entries never carry.
		c := m.entry(caller, callee, "", cluster, start, d, 0, 1, &accesslogv3.ResponseFlags{}, "", nil).CommonProperties
		c.TimeToLastRxByte, c.TimeToFirstUpstreamTxByte, c.TimeToLastUpstreamTxByte = nil, nil, nil
		c.TimeToFirstUpstreamRxByte, c.TimeToLastUpstreamRxByte, c.TimeToFirstDownstreamTxByte = nil, nil, nil
		c.TimeToLastDownstreamTxByte, c.RouteName = nil, ""
		c.AccessLogType = accesslogv3.AccessLogType_TcpConnectionEnd
		return &accesslogv3.TCPAccessLogEntry{CommonProperties: c,
			ConnectionProperties: &accesslogv3.ConnectionProperties{ReceivedBytes: received, SentBytes: sent}}
	}
	out := mk(fmt.Sprintf("outbound|%d||%s", callee.Port, callee.Service()), now)
	out.CommonProperties.FilterStateObjects = map[string]*anypb.Any{"upstream_peer": callee.peerStruct()}
	in := mk(fmt.Sprintf("inbound|%d||", callee.Port), now.Add(100*time.Microsecond))
	in.CommonProperties.FilterStateObjects = map[string]*anypb.Any{"downstream_peer": caller.peerStruct()}
	in.CommonProperties.TlsProperties = mtls(caller, callee)
	// The caller's side sends what the callee's receives.
	out.ConnectionProperties.SentBytes, out.ConnectionProperties.ReceivedBytes = received, sent
	return []Entry{{Proxy: callee, TCP: in}, {Proxy: caller, TCP: out}}
}

func (m *Mesh) external(now time.Time) Entry {
	caller := m.Details
	d := time.Duration(20+m.rng.IntN(80)) * time.Millisecond
	e := m.entry(caller, caller, "/books/v1/volumes", "outbound|443||"+ExternalHost, now, d, 200, 1, &accesslogv3.ResponseFlags{}, "via_upstream", m.headersFor())
	e.Request.Authority, e.Request.Scheme = ExternalHost, "https"
	e.CommonProperties.UpstreamRemoteAddress = sockAddr("142.250.74.106", 443)
	e.CommonProperties.DownstreamLocalAddress = sockAddr("142.250.74.106", 443)
	return Entry{Proxy: caller, HTTP: e}
}

func (m *Mesh) gatewayFailures(now time.Time) []Entry {
	gw := m.Gateway
	uh := m.entry(gw, m.ProductPage, "/catalog", fmt.Sprintf("outbound|9080||%s.%s.svc.cluster.local", UnhealthyService, m.ProductPage.Namespace),
		now, 300*time.Microsecond, 503, 0, &accesslogv3.ResponseFlags{NoHealthyUpstream: true}, "no_healthy_upstream", m.headersFor())
	uh.Request.Authority = "bookinfo.example.com"
	noHost(uh)
	nr := m.entry(gw, m.ProductPage, "/admin", "", now.Add(time.Millisecond), 200*time.Microsecond, 404, 0,
		&accesslogv3.ResponseFlags{NoRouteFound: true}, "route_not_found", m.headersFor())
	nr.Request.Authority = UnroutableHost
	nr.CommonProperties.RouteName = ""
	noHost(nr)
	return []Entry{{Proxy: gw, HTTP: uh}, {Proxy: gw, HTTP: nr}}
}

// noHost makes an entry one Envoy answered itself: no upstream was
// reached, so no upstream address or upstream timing is logged.
func noHost(e *accesslogv3.HTTPAccessLogEntry) {
	c := e.CommonProperties
	c.UpstreamRemoteAddress, c.UpstreamLocalAddress = nil, nil
	c.TimeToFirstUpstreamTxByte, c.TimeToLastUpstreamTxByte = nil, nil
	c.TimeToFirstUpstreamRxByte, c.TimeToLastUpstreamRxByte = nil, nil
	c.DownstreamLocalAddress = sockAddr("10.244.0.5", 8080)
	e.Response.ResponseBodyBytes = 19
}

// mtls is what the callee's Envoy logs of Istio's mutual TLS from caller.
func mtls(caller, callee *Workload) *accesslogv3.TLSProperties {
	return &accesslogv3.TLSProperties{
		TlsVersion:     accesslogv3.TLSProperties_TLSv1_3,
		TlsSniHostname: fmt.Sprintf("outbound_.%d_._.%s", callee.Port, callee.Service()),
		PeerCertificateProperties: &accesslogv3.TLSProperties_CertificateProperties{
			SubjectAltName: []*accesslogv3.TLSProperties_CertificateProperties_SubjectAltName{{San: &accesslogv3.TLSProperties_CertificateProperties_SubjectAltName_Uri{Uri: caller.Principal()}}},
		},
		LocalCertificateProperties: &accesslogv3.TLSProperties_CertificateProperties{
			SubjectAltName: []*accesslogv3.TLSProperties_CertificateProperties_SubjectAltName{{San: &accesslogv3.TLSProperties_CertificateProperties_SubjectAltName_Uri{Uri: callee.Principal()}}},
		},
	}
}

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}
