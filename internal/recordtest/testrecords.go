// Package recordtest builds realistic records for the sinks' tests and
// benchmarks: the hops of requests through a chain of workloads, each hop
// reported by both proxies, plus application log lines of the same traces.
package recordtest

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/meshtrail/meshtrail/internal/record"
)

// Chain is the workloads a request passes through, in call order.
var Chain = []string{"productpage", "reviews", "ratings"}

// Gen produces records with ids unique to one generator (seeded), so
// parallel tests never collide in a shared backend.
type Gen struct {
	rng       *rand.Rand
	Namespace string
	// Base is the start time of the first request; each request starts
	// 10ms after the previous one.
	Base time.Time
	n    int
}

// New returns a generator for namespace, with ids from seed.
func New(namespace string, seed uint64) *Gen {
	return &Gen{
		rng:       rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		Namespace: namespace,
		Base:      time.Now().Add(-time.Minute).Truncate(time.Millisecond),
	}
}

func (g *Gen) id(n int) string {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], g.rng.Uint64())
		copy(b[i:], w[:])
	}
	return hex.EncodeToString(b)
}

// Request returns the records of one request through Chain: for each call
// caller -> callee, a CLIENT record (reporter source) and a SERVER record
// (reporter destination), ids chained so they form one tree:
// client(productpage->reviews) -> server(reviews) -> client(reviews->ratings) -> server(ratings).
// The first call (from an ingress) is server-only. status is the last
// hop's response code. Every record shares the trace id it returns.
func (g *Gen) Request(status uint32) (traceID string, recs []*record.Record) {
	traceID = g.id(16)
	start := g.Base.Add(time.Duration(g.n) * 10 * time.Millisecond)
	g.n++
	sampled := true
	parent := ""
	total := 40 * time.Millisecond
	for i, callee := range Chain {
		code := uint32(200)
		if i == len(Chain)-1 {
			code = status
		}
		callee := callee
		dst := g.workload(callee)
		var src record.Workload
		if i > 0 {
			src = g.workload(Chain[i-1])
			clientID := g.id(8)
			c := g.hop(record.ReporterSource, src, dst, start, total, code)
			c.Trace = record.Trace{TraceID: traceID, SpanID: clientID, ParentSpanID: parent, Sampled: &sampled, Source: "x-b3"}
			recs = append(recs, c)
			parent = clientID
			start = start.Add(time.Millisecond)
			total -= 2 * time.Millisecond
		} else {
			src = record.Workload{Name: "istio-ingressgateway", Namespace: "istio-system", CanonicalService: "istio-ingressgateway"}
		}
		serverID := g.id(8)
		s := g.hop(record.ReporterDestination, src, dst, start, total, code)
		s.Trace = record.Trace{TraceID: traceID, SpanID: serverID, ParentSpanID: parent, Sampled: &sampled, Source: "x-b3"}
		recs = append(recs, s)
		parent = serverID
		start = start.Add(time.Millisecond)
		total -= 5 * time.Millisecond
	}
	return traceID, recs
}

// LogLine returns an application log line of the given trace.
func (g *Gen) LogLine(traceID, spanID, workload, msg string) *record.Record {
	g.n++
	w := g.workload(workload)
	return &record.Record{
		Kind:        record.KindLog,
		StartTime:   g.Base.Add(time.Duration(g.n) * 10 * time.Millisecond),
		ReceivedAt:  time.Now(),
		Node:        record.Node{ID: "sidecar~10.0.0.1~" + w.Pod + "." + g.Namespace + "~" + g.Namespace + ".svc.cluster.local", Namespace: g.Namespace, Workload: workload, Pod: w.Pod},
		Destination: w,
		Trace:       record.Trace{TraceID: traceID, SpanID: spanID},
		Message:     msg,
		Level:       "info",
		Stream:      "stdout",
		Fields:      map[string]string{"logger": "app"},
	}
}

func (g *Gen) workload(name string) record.Workload {
	return record.Workload{
		Name: name + "-v1", Namespace: g.Namespace, CanonicalService: name, CanonicalRevision: "v1",
		App: name, Version: "v1", Principal: "spiffe://cluster.local/ns/" + g.Namespace + "/sa/" + name,
		Cluster: "Kubernetes", Pod: name + "-v1-6d8b7c9f4-x2x9z", IP: fmt.Sprintf("10.0.%d.%d", len(name), g.n%250+1),
	}
}

func (g *Gen) hop(reporter string, src, dst record.Workload, start time.Time, total time.Duration, code uint32) *record.Record {
	self := dst
	dir := "inbound"
	cluster := "inbound|9080||"
	if reporter == record.ReporterSource {
		self = src
		dir = "outbound"
		cluster = fmt.Sprintf("outbound|9080||%s.%s.svc.cluster.local", dst.CanonicalService, g.Namespace)
	}
	flags := "-"
	if code == 503 {
		flags = "UF"
	}
	return &record.Record{
		Kind:       record.KindHTTP,
		StartTime:  start,
		ReceivedAt: start.Add(total + 50*time.Millisecond),
		Node: record.Node{
			ID:      "sidecar~" + self.IP + "~" + self.Pod + "." + g.Namespace + "~" + g.Namespace + ".svc.cluster.local",
			Cluster: self.Name + "." + g.Namespace, Type: "sidecar", IP: self.IP, Pod: self.Pod,
			Namespace: g.Namespace, Workload: self.Name, Mesh: "cluster.local", ClusterID: "Kubernetes", LogName: "meshtrail",
		},
		Reporter:    reporter,
		Source:      src,
		Destination: dst,
		HTTP: record.HTTP{
			Method: "GET", Scheme: "http", Authority: dst.CanonicalService + ":9080",
			Path: "/" + dst.CanonicalService + "/0?x=1", Protocol: "HTTP/1.1", ResponseCode: code,
			ResponseCodeDetails: "via_upstream", RequestID: g.id(8), UserAgent: "curl/8.5.0",
			RequestHeaderBytes: 420, ResponseHeaderBytes: 180, ResponseBodyBytes: 1234,
		},
		Timings: record.Timings{
			LastRxByte: 100 * time.Microsecond, FirstUpstreamTxByte: 300 * time.Microsecond,
			FirstUpstreamRxByte: total - time.Millisecond, LastDownstreamTxByte: total, Total: total,
		},
		Upstream: record.Upstream{
			Cluster: cluster, Direction: dir, Port: 9080, Service: dst.CanonicalService + "." + g.Namespace + ".svc.cluster.local",
			ServiceName: dst.CanonicalService, ServiceNamespace: g.Namespace, Host: dst.IP + ":9080",
		},
		Downstream:               record.Downstream{RemoteAddress: src.IP + ":41234", LocalAddress: dst.IP + ":9080"},
		ResponseFlags:            flags,
		RouteName:                "default",
		ConnectionSecurityPolicy: "mutual_tls",
		StreamID:                 g.id(8),
		RequestHeaders:           map[string]string{"x-request-id": "abc"},
	}
}
