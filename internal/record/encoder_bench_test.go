package record

import (
	"fmt"
	"testing"
	"time"
)

// envoyBatch builds n records the way one sidecar's ALS message arrives:
// productpage's Envoy reporting its inbound requests and its outbound
// calls to details and reviews. Every record shares one Node; the
// workloads take two or three values, and the strings are shared as the
// ALS decoder's interning shares them.
func envoyBatch(n int) []*Record {
	node := Node{
		ID:        "sidecar~10.244.1.10~productpage-v1-7d9f8c6b5d-00035.bookinfo~bookinfo.svc.cluster.local",
		Cluster:   "productpage-v1.bookinfo",
		Type:      "sidecar",
		IP:        "10.244.1.10",
		Pod:       "productpage-v1-7d9f8c6b5d-00035",
		Namespace: "bookinfo",
		Workload:  "productpage-v1",
		Mesh:      "cluster.local",
		ClusterID: "Kubernetes",
		LogName:   "envoy_accesslog",
	}
	self := Workload{
		Name: "productpage-v1", Namespace: "bookinfo", CanonicalService: "productpage", CanonicalRevision: "v1",
		App: "productpage", Version: "v1", Principal: "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage",
		Cluster: "Kubernetes", Pod: "productpage-v1-7d9f8c6b5d-00035", IP: "10.244.1.10",
	}
	gateway := Workload{
		Name: "istio-ingressgateway", Namespace: "istio-system", CanonicalService: "istio-ingressgateway", CanonicalRevision: "latest",
		App: "istio-ingressgateway", Principal: "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
		Cluster: "Kubernetes", Pod: "istio-ingressgateway-5c8b6d7f9-x2k4q", IP: "10.244.0.7",
	}
	details := Workload{
		Name: "details-v1", Namespace: "bookinfo", CanonicalService: "details", CanonicalRevision: "v1",
		App: "details", Version: "v1", Principal: "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-details",
		Cluster: "Kubernetes", Pod: "details-v1-6f9b7c8d4-8qzlm", IP: "10.244.2.14",
	}
	reviews := Workload{
		Name: "reviews-v2", Namespace: "bookinfo", CanonicalService: "reviews", CanonicalRevision: "v2",
		App: "reviews", Version: "v2", Principal: "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews",
		Cluster: "Kubernetes", Pod: "reviews-v2-65c4dc6fdc-r5v9t", IP: "10.244.2.21",
	}
	inTLS := TLS{
		Version: "TLSv1.3", CipherSuite: 0x1301, SNI: "outbound_.9080_._.productpage.bookinfo.svc.cluster.local",
		PeerURISAN: gateway.Principal, LocalURISAN: self.Principal,
	}
	base := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	yes := true
	recs := make([]*Record, n)
	for i := range recs {
		trace := fmt.Sprintf("%016x%016x", 0x4bf92f3577b34da6+uint64(i/3), 0xa3ce929d0e0e4736^uint64(i))
		span := fmt.Sprintf("%016x", 0x00f067aa0ba902b7+uint64(i))
		parent := fmt.Sprintf("%016x", 0x1f067aa0ba902b70+uint64(i))
		reqID := fmt.Sprintf("%08x-9c2e-4f3a-b8d1-%012x", 0x5f1c2a3b+i, 0x7a6e5d4c3b2a+i)
		start := base.Add(time.Duration(i)*7919*time.Microsecond + time.Duration(i%7)*113)
		r := &Record{
			Kind:       KindHTTP,
			StartTime:  start,
			ReceivedAt: start.Add(1200*time.Millisecond + time.Duration(i*977)),
			Node:       node,
			Trace:      Trace{TraceID: trace, SpanID: span, ParentSpanID: parent, Sampled: &yes, Source: "filter_state"},
			HTTP: HTTP{
				Method: "GET", Scheme: "http", Protocol: "HTTP/1.1", ResponseCode: 200,
				ResponseCodeDetails: "via_upstream", RequestID: reqID,
				UserAgent:          "python-requests/2.31.0",
				RequestHeaderBytes: 612 + uint64(i%5), ResponseHeaderBytes: 187, ResponseBodyBytes: 178 + uint64(i*31%900),
			},
			Timings: Timings{
				LastRxByte: 21 * time.Microsecond, FirstUpstreamTxByte: 412 * time.Microsecond,
				LastUpstreamTxByte: 431 * time.Microsecond, FirstUpstreamRxByte: time.Duration(3100+i*17) * time.Microsecond,
				LastUpstreamRxByte: time.Duration(3350+i*17) * time.Microsecond, FirstDownstreamTxByte: time.Duration(3190+i*17) * time.Microsecond,
				LastDownstreamTxByte: time.Duration(3420+i*17) * time.Microsecond, Total: time.Duration(3420+i*17) * time.Microsecond,
			},
			ResponseFlags: "-",
			StreamID:      fmt.Sprintf("%016x", 0x3c2b1a0918273645+uint64(i)),
			RequestHeaders: map[string]string{
				"x-request-id":      reqID,
				"x-b3-traceid":      trace,
				"x-b3-spanid":       span,
				"x-b3-parentspanid": parent,
				"x-b3-sampled":      "1",
			},
			FilterState: map[string]string{
				"wasm.meshtrail_trace_id":       trace,
				"wasm.meshtrail_span_id":        span,
				"wasm.meshtrail_parent_span_id": parent,
				"wasm.meshtrail_sampled":        "1",
			},
		}
		if i%3 == 0 { // inbound from the gateway
			r.Reporter = ReporterDestination
			r.Source, r.Destination = gateway, self
			r.HTTP.Authority = "productpage.bookinfo.svc.cluster.local:9080"
			r.HTTP.UserAgent = "curl/8.5.0"
			r.HTTP.ForwardedFor = "10.244.0.1"
			r.HTTP.Path = fmt.Sprintf("/productpage?u=normal&i=%d", i)
			r.Upstream = Upstream{
				Cluster: "inbound|9080||", Direction: "inbound", Port: 9080,
				Service: "productpage.bookinfo.svc.cluster.local", ServiceName: "productpage", ServiceNamespace: "bookinfo",
				Host: "10.244.1.10:9080", LocalAddress: "127.0.0.6:41231", WireBytesSent: 790, WireBytesReceived: 1210,
				RequestAttemptCount: 1,
			}
			r.Downstream = Downstream{RemoteAddress: fmt.Sprintf("10.244.0.7:%d", 40000+i), LocalAddress: "10.244.1.10:9080", DirectRemoteAddress: "10.244.0.7:52210", WireBytesSent: 1412, WireBytesReceived: 845}
			r.TLS = inTLS
			r.ConnectionSecurityPolicy = "mutual_tls"
			r.RouteName = "default"
		} else { // outbound to details or reviews
			r.Reporter = ReporterSource
			dst, svc := details, "details"
			if i%3 == 2 {
				dst, svc = reviews, "reviews"
			}
			r.Source, r.Destination = self, dst
			r.HTTP.Authority = svc + ":9080"
			r.HTTP.Path = fmt.Sprintf("/%s/%d", svc, i)
			r.Upstream = Upstream{
				Cluster: "outbound|9080||" + svc + ".bookinfo.svc.cluster.local", Direction: "outbound", Port: 9080,
				Service: svc + ".bookinfo.svc.cluster.local", ServiceName: svc, ServiceNamespace: "bookinfo",
				Host: dst.IP + ":9080", LocalAddress: fmt.Sprintf("10.244.1.10:%d", 51000+i), RequestAttemptCount: 1,
				WireBytesSent: 702, WireBytesReceived: 377,
			}
			r.Downstream = Downstream{RemoteAddress: "10.244.1.10:38866", LocalAddress: dst.IP + ":9080"}
			r.ConnectionSecurityPolicy = "unknown"
			r.RouteName = svc + ".bookinfo.svc.cluster.local:9080"
		}
		recs[i] = r
	}
	return recs
}

// benchBatch is one Envoy's ALS message: 13 entries.
const benchBatch = 13

// BenchmarkAppendJSONBatch renders one Envoy's batch with the function
// (one record at a time, no state kept between them).
func BenchmarkAppendJSONBatch(b *testing.B) { benchmarkBatch(b, AppendJSON) }

// BenchmarkEncoderBatch renders the same batch with one Encoder kept
// across batches, as the NDJSON sink keeps one per pooled buffer.
func BenchmarkEncoderBatch(b *testing.B) {
	var e Encoder
	benchmarkBatch(b, e.Append)
}

func benchmarkBatch(b *testing.B, render func([]byte, *Record) []byte) {
	recs := envoyBatch(benchBatch)
	buf := make([]byte, 0, 64<<10)
	n := 0
	for _, r := range recs {
		n += len(AppendJSON(nil, r))
	}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for _, r := range recs {
			buf = render(buf, r)
		}
	}
}
