// Package meshsim is a synthetic Istio mesh: Bookinfo's services behind an
// ingress gateway, each with a sidecar that reports every hop as Envoy's
// HttpGrpcAccessLogConfig would (identifier first, propagated traceparent
// or B3 headers, response flags, retries, Istio peer metadata). The demo,
// the tests and the load generator drive the ALS receiver with it.
package meshsim

import (
	"fmt"
	"math/rand/v2"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogsvc "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Propagation is how a workload's proxy propagates trace context.
type Propagation int

const (
	W3C Propagation = iota
	B3Multi
	B3Single
)

// Workload is one pod with a sidecar.
type Workload struct {
	Name, App, Version, Namespace, Pod, IP string
	Port                                   uint32
	Type                                   string // sidecar or router
	Propagation                            Propagation
}

// NodeID is Istio's Envoy node id for the workload.
func (w *Workload) NodeID() string {
	return fmt.Sprintf("%s~%s~%s.%s~%s.svc.cluster.local", w.Type, w.IP, w.Pod, w.Namespace, w.Namespace)
}

// Service is the workload's Kubernetes service FQDN.
func (w *Workload) Service() string { return w.App + "." + w.Namespace + ".svc.cluster.local" }

// Principal is the workload's SPIFFE id.
func (w *Workload) Principal() string {
	return "spiffe://cluster.local/ns/" + w.Namespace + "/sa/bookinfo-" + w.App
}

// Identifier is the first message's identifier, as Istio's proxy sends it.
func (w *Workload) Identifier(logName string) *accesslogsvc.StreamAccessLogsMessage_Identifier {
	labels, _ := structpb.NewStruct(map[string]any{
		"app": w.App, "version": w.Version,
		"service.istio.io/canonical-name": w.App, "service.istio.io/canonical-revision": w.Version,
	})
	md, _ := structpb.NewStruct(map[string]any{
		"NAME": w.Pod, "NAMESPACE": w.Namespace, "WORKLOAD_NAME": w.Name,
		"CLUSTER_ID": "Kubernetes", "MESH_ID": "cluster.local", "SERVICE_ACCOUNT": "bookinfo-" + w.App,
		"ISTIO_VERSION": "1.28.0",
	})
	md.Fields["LABELS"] = structpb.NewStructValue(labels)
	return &accesslogsvc.StreamAccessLogsMessage_Identifier{
		Node:    &corev3.Node{Id: w.NodeID(), Cluster: w.App + "." + w.Namespace, Metadata: md},
		LogName: logName,
	}
}

// peerStruct is Istio's peer metadata filter state for w.
func (w *Workload) peerStruct() *anypb.Any {
	s, _ := structpb.NewStruct(map[string]any{
		"namespace": w.Namespace, "workload": w.Name, "service": w.App, "revision": w.Version,
		"app": w.App, "version": w.Version, "cluster": "Kubernetes", "type": "deployment", "name": w.Pod,
	})
	a, _ := anypb.New(s)
	return a
}

// Mesh is Bookinfo behind an ingress gateway, with the rest of a real
// mesh's traffic around it (see Background).
type Mesh struct {
	Gateway, ProductPage, Details, Ratings *Workload
	Reviews                                []*Workload
	// Inventory serves a gRPC server-streaming call productpage makes;
	// MongoDB is ratings' database, reached over TCP.
	Inventory, MongoDB *Workload
	rng                *rand.Rand
	// ErrorRate is the chance ratings fails a call (503 UF, retried).
	ErrorRate float64
	// WithFilter makes every proxy run the meshtrail Wasm filter: entries
	// carry its filter state (wasm.meshtrail_trace_id, _span_id,
	// _parent_span_id, _sampled), which gives W3C hops their parent span.
	WithFilter bool
}

// Workloads lists every proxy in the mesh: one ALS stream each.
func (m *Mesh) Workloads() []*Workload {
	return append([]*Workload{m.Gateway, m.ProductPage, m.Details, m.Ratings, m.Inventory, m.MongoDB}, m.Reviews...)
}

// Bookinfo returns the mesh with a deterministic random source.
func Bookinfo(seed uint64) *Mesh {
	ns := "bookinfo"
	w := func(name, app, version, ip string, port uint32, p Propagation) *Workload {
		return &Workload{Name: name, App: app, Version: version, Namespace: ns, IP: ip, Port: port,
			Pod: name + "-7d9f8c6b5d-" + fmt.Sprintf("%05x", seed%0xfffff)[:5], Type: "sidecar", Propagation: p}
	}
	m := &Mesh{
		Gateway:     &Workload{Name: "istio-ingressgateway", App: "istio-ingressgateway", Version: "1.28.0", Namespace: "istio-system", Pod: "istio-ingressgateway-5c8d7b9f4-q2w7e", IP: "10.244.0.5", Port: 8080, Type: "router", Propagation: W3C},
		ProductPage: w("productpage-v1", "productpage", "v1", "10.244.1.10", 9080, W3C),
		Details:     w("details-v1", "details", "v1", "10.244.1.11", 9080, B3Multi),
		Ratings:     w("ratings-v1", "ratings", "v1", "10.244.1.12", 9080, B3Single),
		Reviews: []*Workload{
			w("reviews-v1", "reviews", "v1", "10.244.1.13", 9080, W3C),
			w("reviews-v2", "reviews", "v2", "10.244.1.14", 9080, B3Multi),
			w("reviews-v3", "reviews", "v3", "10.244.1.15", 9080, W3C),
		},
		Inventory:  w("inventory-v1", "inventory", "v1", "10.244.1.16", 9090, W3C),
		MongoDB:    w("mongodb-v1", "mongodb", "v1", "10.244.1.17", 27017, W3C),
		rng:        rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		ErrorRate:  0.05,
		WithFilter: true,
	}
	return m
}

// Entry is one access log entry and the proxy that reports it: HTTP or
// TCP.
type Entry struct {
	Proxy *Workload
	HTTP  *accesslogv3.HTTPAccessLogEntry
	TCP   *accesslogv3.TCPAccessLogEntry
}

// Request is one end-user request's trail: every entry every proxy logs
// for it, and its trace id.
type Request struct {
	TraceID string
	Entries []Entry
	// Failed reports whether any hop of the request failed (the end user
	// may still have had a 200: reviews hides the stars when ratings fails).
	Failed bool
}

// Request simulates one GET /productpage through the mesh starting at now.
func (m *Mesh) Request(now time.Time) Request {
	var tid [16]byte
	m.fill(tid[:])
	req := Request{TraceID: fmt.Sprintf("%x", tid)}
	t := now
	// gateway -> productpage
	root := m.spanID()
	code, total := m.hop(&req, m.Gateway, m.ProductPage, "/productpage", tid, root, [8]byte{}, t, func(t time.Time, parent [8]byte) (uint32, time.Duration) {
		var elapsed time.Duration
		// productpage -> details
		_, d := m.hop(&req, m.ProductPage, m.Details, "/details/0", tid, m.spanID(), parent, t, nil)
		elapsed += d
		// productpage -> reviews-vN (-> ratings for v2, v3)
		rv := m.Reviews[m.rng.IntN(len(m.Reviews))]
		c, d := m.hop(&req, m.ProductPage, rv, "/reviews/0", tid, m.spanID(), parent, t.Add(elapsed), func(t time.Time, parent [8]byte) (uint32, time.Duration) {
			if rv.Version == "v1" {
				return 200, time.Duration(2+m.rng.IntN(5)) * time.Millisecond
			}
			c, d := m.hop(&req, rv, m.Ratings, "/ratings/0", tid, m.spanID(), parent, t, nil)
			if c >= 500 {
				return 200, d + time.Millisecond // reviews degrades gracefully: stars are hidden
			}
			return 200, d + time.Duration(1+m.rng.IntN(3))*time.Millisecond
		})
		elapsed += d
		if c >= 500 {
			return 503, elapsed
		}
		return 200, elapsed + time.Duration(3+m.rng.IntN(10))*time.Millisecond
	})
	_, _ = code, total
	return req
}

// hop logs a call from caller to callee: the caller's outbound entry
// (reporter source) and the callee's inbound entry (reporter destination).
// inner simulates the callee's own work and calls.
func (m *Mesh) hop(req *Request, caller, callee *Workload, path string, tid [16]byte, clientSpan, parent [8]byte, start time.Time,
	inner func(time.Time, [8]byte) (uint32, time.Duration)) (uint32, time.Duration) {
	serverSpan := m.spanID()
	code := uint32(200)
	work := time.Duration(1+m.rng.IntN(4)) * time.Millisecond
	if inner != nil {
		code, work = inner(start.Add(500*time.Microsecond), serverSpan)
	}
	attempts := uint32(1)
	flags := &accesslogv3.ResponseFlags{}
	details := "via_upstream"
	if callee == m.Ratings && m.rng.Float64() < m.ErrorRate {
		// The upstream refused the connection on every try: Envoy retried
		// and gave up.
		code, attempts, details = 503, 3, "upstream_reset_before_response_started{connection_failure}"
		flags.UpstreamConnectionFailure, flags.UpstreamRetryLimitExceeded = true, true
		work = 25 * time.Millisecond
	}
	total := work + time.Duration(300+m.rng.IntN(700))*time.Microsecond
	if code >= 500 {
		req.Failed = true
	}

	headers := func(w *Workload, spanID, parentID [8]byte) map[string]string {
		h := map[string]string{}
		switch w.Propagation {
		case W3C:
			h["traceparent"] = fmt.Sprintf("00-%x-%x-01", tid, spanID)
		case B3Multi:
			h["x-b3-traceid"] = fmt.Sprintf("%x", tid)
			h["x-b3-spanid"] = fmt.Sprintf("%x", spanID)
			if parentID != ([8]byte{}) {
				h["x-b3-parentspanid"] = fmt.Sprintf("%x", parentID)
			}
			h["x-b3-sampled"] = "1"
		case B3Single:
			if parentID != ([8]byte{}) {
				h["b3"] = fmt.Sprintf("%x-%x-1-%x", tid, spanID, parentID)
			} else {
				h["b3"] = fmt.Sprintf("%x-%x-1", tid, spanID)
			}
		}
		h["x-request-id"] = req.TraceID[:8] + "-req"
		return h
	}
	outCluster := fmt.Sprintf("outbound|%d||%s", callee.Port, callee.Service())
	inCluster := fmt.Sprintf("inbound|%d||", callee.Port)
	out := m.entry(caller, callee, path, outCluster, start, total, code, attempts, flags, details, headers(caller, clientSpan, parent))
	out.CommonProperties.FilterStateObjects = map[string]*anypb.Any{}
	if attempts == 1 {
		// Istio's metadata exchange learns the peer from its response:
		// a connection that failed brings none.
		out.CommonProperties.FilterStateObjects["upstream_peer"] = callee.peerStruct()
	}
	if m.WithFilter {
		m.filterState(out, tid, clientSpan, parent)
	}
	in := m.entry(caller, callee, path, inCluster, start.Add(200*time.Microsecond), total-400*time.Microsecond, code, 1, &accesslogv3.ResponseFlags{}, "via_upstream", headers(callee, serverSpan, clientSpan))
	if code == 503 && attempts > 1 {
		in = nil // the connection never reached the callee's proxy
	}
	if in != nil {
		in.CommonProperties.FilterStateObjects = map[string]*anypb.Any{"downstream_peer": caller.peerStruct()}
		if m.WithFilter {
			m.filterState(in, tid, serverSpan, clientSpan)
		}
		in.CommonProperties.TlsProperties = &accesslogv3.TLSProperties{
			TlsVersion:     accesslogv3.TLSProperties_TLSv1_3,
			TlsSniHostname: fmt.Sprintf("outbound_.%d_._.%s", callee.Port, callee.Service()),
			PeerCertificateProperties: &accesslogv3.TLSProperties_CertificateProperties{
				SubjectAltName: []*accesslogv3.TLSProperties_CertificateProperties_SubjectAltName{{San: &accesslogv3.TLSProperties_CertificateProperties_SubjectAltName_Uri{Uri: caller.Principal()}}},
			},
			LocalCertificateProperties: &accesslogv3.TLSProperties_CertificateProperties{
				SubjectAltName: []*accesslogv3.TLSProperties_CertificateProperties_SubjectAltName{{San: &accesslogv3.TLSProperties_CertificateProperties_SubjectAltName_Uri{Uri: callee.Principal()}}},
			},
		}
		req.Entries = append(req.Entries, Entry{Proxy: callee, HTTP: in})
	}
	req.Entries = append(req.Entries, Entry{Proxy: caller, HTTP: out})
	return code, total
}

func (m *Mesh) entry(caller, callee *Workload, path, cluster string, start time.Time, d time.Duration, code, attempts uint32,
	flags *accesslogv3.ResponseFlags, details string, headers map[string]string) *accesslogv3.HTTPAccessLogEntry {
	sock := func(ip string, port uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
	}
	respBody := uint64(200 + m.rng.IntN(4000))
	if code >= 500 {
		respBody = 91
	}
	return &accesslogv3.HTTPAccessLogEntry{
		ProtocolVersion: accesslogv3.HTTPAccessLogEntry_HTTP11,
		CommonProperties: &accesslogv3.AccessLogCommon{
			StartTime:                   timestamppb.New(start),
			TimeToLastRxByte:            durationpb.New(40 * time.Microsecond),
			TimeToFirstUpstreamTxByte:   durationpb.New(150 * time.Microsecond),
			TimeToLastUpstreamTxByte:    durationpb.New(160 * time.Microsecond),
			TimeToFirstUpstreamRxByte:   durationpb.New(d - 200*time.Microsecond),
			TimeToLastUpstreamRxByte:    durationpb.New(d - 100*time.Microsecond),
			TimeToFirstDownstreamTxByte: durationpb.New(d - 150*time.Microsecond),
			TimeToLastDownstreamTxByte:  durationpb.New(d),
			Duration:                    durationpb.New(d),
			UpstreamRemoteAddress:       sock(callee.IP, callee.Port),
			UpstreamLocalAddress:        sock(caller.IP, 40000+uint32(m.rng.IntN(20000))),
			DownstreamRemoteAddress:     sock(caller.IP, 50000+uint32(m.rng.IntN(10000))),
			DownstreamLocalAddress:      sock(callee.IP, callee.Port),
			UpstreamCluster:             cluster,
			ResponseFlags:               flags,
			RouteName:                   "default",
			UpstreamRequestAttemptCount: attempts,
			AccessLogType:               accesslogv3.AccessLogType_DownstreamEnd,
		},
		Request: &accesslogv3.HTTPRequestProperties{
			RequestMethod:       corev3.RequestMethod_GET,
			Scheme:              "http",
			Authority:           callee.App + ":" + fmt.Sprint(callee.Port),
			Path:                path,
			UserAgent:           "Mozilla/5.0 (meshtrail demo)",
			RequestId:           headers["x-request-id"],
			RequestHeadersBytes: 420,
			RequestHeaders:      headers,
		},
		Response: &accesslogv3.HTTPResponseProperties{
			ResponseCode:         wrapperspb.UInt32(code),
			ResponseCodeDetails:  details,
			ResponseHeadersBytes: 180,
			ResponseBodyBytes:    respBody,
		},
	}
}

// filterState adds what the meshtrail filter writes with SetProperty
// (Envoy logs it as Any(BytesValue) under "wasm.<name>").
func (m *Mesh) filterState(e *accesslogv3.HTTPAccessLogEntry, tid [16]byte, span, parent [8]byte) {
	add := func(k, v string) {
		a, _ := anypb.New(wrapperspb.Bytes([]byte(v)))
		e.CommonProperties.FilterStateObjects["wasm.meshtrail_"+k] = a
	}
	add("trace_id", fmt.Sprintf("%x", tid))
	add("span_id", fmt.Sprintf("%x", span))
	if parent != ([8]byte{}) {
		add("parent_span_id", fmt.Sprintf("%x", parent))
	}
	add("sampled", "1")
}

func (m *Mesh) spanID() [8]byte {
	var s [8]byte
	for s == ([8]byte{}) {
		m.fill(s[:])
	}
	return s
}

func (m *Mesh) fill(b []byte) {
	for i := range b {
		b[i] = byte(m.rng.Uint32())
	}
}

// Batch groups entries per proxy into StreamAccessLogsMessages of at most
// maxBytes (Envoy flushes its buffer at 16 KiB by default); HTTP and TCP
// entries go in messages of their own, as Envoy's two loggers send them.
func Batch(entries []Entry, maxBytes int) map[*Workload][]*accesslogsvc.StreamAccessLogsMessage {
	type key struct {
		w   *Workload
		tcp bool
	}
	out := map[*Workload][]*accesslogsvc.StreamAccessLogsMessage{}
	cur := map[key]*accesslogsvc.StreamAccessLogsMessage{}
	size := map[key]int{}
	for _, e := range entries {
		k := key{e.Proxy, e.TCP != nil}
		var n int
		if k.tcp {
			n = proto.Size(e.TCP)
		} else {
			n = proto.Size(e.HTTP)
		}
		c := cur[k]
		if c == nil || size[k]+n > maxBytes {
			if k.tcp {
				c = &accesslogsvc.StreamAccessLogsMessage{LogEntries: &accesslogsvc.StreamAccessLogsMessage_TcpLogs{
					TcpLogs: &accesslogsvc.StreamAccessLogsMessage_TCPAccessLogEntries{}}}
			} else {
				c = &accesslogsvc.StreamAccessLogsMessage{LogEntries: &accesslogsvc.StreamAccessLogsMessage_HttpLogs{
					HttpLogs: &accesslogsvc.StreamAccessLogsMessage_HTTPAccessLogEntries{}}}
			}
			cur[k], size[k] = c, 0
			out[e.Proxy] = append(out[e.Proxy], c)
		}
		if k.tcp {
			c.GetTcpLogs().LogEntry = append(c.GetTcpLogs().LogEntry, e.TCP)
		} else {
			c.GetHttpLogs().LogEntry = append(c.GetHttpLogs().LogEntry, e.HTTP)
		}
		size[k] += n
	}
	return out
}
