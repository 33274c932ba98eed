// Package spans turns access log records into trace spans, once, for every
// trace sink (OTLP, Zipkin). Each record is one hop seen by one proxy: the
// caller's proxy (reporter "source", outbound) reports a CLIENT span, the
// callee's proxy (reporter "destination", inbound) a SERVER span. Ids come
// from the record's trace context: Trace.SpanID is the hop's own span and
// Trace.ParentSpanID its parent, which is what makes the hops of one
// request a single tree in Jaeger or Zipkin.
//
// Attributes follow the OpenTelemetry HTTP semantic conventions
// (http.request.method, url.path, server.address, ...); a few Envoy/Istio
// specific ones carry the envoy. and istio. prefixes.
package spans

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/meshtrail/meshtrail/internal/record"
)

// Kind is the span kind: which side of the hop the span describes.
type Kind uint8

const (
	KindServer Kind = iota + 1 // inbound: the destination's proxy
	KindClient                 // outbound: the source's proxy
)

// Attr is one span attribute: a string, or an integer when IsInt.
type Attr struct {
	Key   string
	Str   string
	Int   int64
	IsInt bool
}

// Span is a record seen as a span, independent of any wire format.
type Span struct {
	TraceID      [16]byte
	SpanID       [8]byte
	ParentSpanID [8]byte // zero for a root span
	Kind         Kind
	Name         string
	Start        time.Time
	End          time.Time

	// Service is the workload the span belongs to (the resource's
	// service.name); Namespace, Pod, Version and Cluster describe it too.
	Service   string
	Namespace string
	Pod       string
	Version   string
	Mesh      string

	// PeerService is the other side (the callee of a client span, the
	// caller of a server span), for Zipkin's remote endpoint.
	PeerService string
	PeerAddress string // ip:port when known

	Attrs []Attr

	Error         bool
	StatusMessage string // why it is an error, e.g. "HTTP 503 UF"
}

// HasParent reports whether the span has a parent span id.
func (s *Span) HasParent() bool { return s.ParentSpanID != [8]byte{} }

// FromRecord fills sp from r (reusing sp.Attrs' storage) and reports
// whether r is a span at all: it must be an HTTP or TCP access record with
// a valid trace id, not explicitly unsampled, and not an intermediate
// (periodic) entry of a long stream, whose final entry is the span.
func FromRecord(r *record.Record, sp *Span) bool {
	if r.Kind != record.KindHTTP && r.Kind != record.KindTCP {
		return false
	}
	if r.Intermediate || (r.Trace.Sampled != nil && !*r.Trace.Sampled) {
		return false
	}
	if !decodeHex(sp.TraceID[:], r.Trace.TraceID) || sp.TraceID == [16]byte{} {
		return false
	}
	if !decodeHex(sp.SpanID[:], r.Trace.SpanID) || sp.SpanID == [8]byte{} {
		// No span id was logged: derive a stable one so a retried export
		// is the same span, not a second one.
		sp.SpanID = StableSpanID(r)
	}
	sp.ParentSpanID = [8]byte{}
	if !decodeHex(sp.ParentSpanID[:], r.Trace.ParentSpanID) {
		sp.ParentSpanID = [8]byte{}
	}

	sp.Start = r.StartTime
	d := r.Timings.Total
	if d == 0 {
		d = r.Timings.LastDownstreamTxByte
	}
	sp.End = r.StartTime.Add(d)

	self, peer := &r.Destination, &r.Source
	sp.Kind = KindServer
	if r.Reporter == record.ReporterSource || (r.Reporter == "" && r.Upstream.Direction == "outbound") {
		sp.Kind = KindClient
		self, peer = &r.Source, &r.Destination
	}
	sp.Service = firstNonEmpty(self.CanonicalService, self.Name, r.Node.Workload, r.Node.Cluster, "unknown")
	sp.Namespace = firstNonEmpty(self.Namespace, r.Node.Namespace)
	sp.Pod = firstNonEmpty(self.Pod, r.Node.Pod)
	sp.Version = firstNonEmpty(self.CanonicalRevision, self.Version)
	sp.Mesh = r.Node.Mesh
	sp.PeerService = firstNonEmpty(peer.CanonicalService, peer.Name)
	if sp.Kind == KindClient {
		sp.PeerService = firstNonEmpty(sp.PeerService, r.Upstream.ServiceName)
		sp.PeerAddress = r.Upstream.Host
	} else {
		sp.PeerAddress = r.Downstream.RemoteAddress
	}

	sp.Attrs = sp.Attrs[:0]
	if r.Kind == record.KindHTTP {
		sp.Name = httpSpanName(r)
		sp.Attrs = appendHTTPAttrs(sp.Attrs, r, sp.Kind)
	} else {
		sp.Name = "tcp " + firstNonEmpty(r.Upstream.Service, r.Upstream.Cluster, "unknown")
		sp.Attrs = append(sp.Attrs,
			Attr{Key: "network.transport", Str: "tcp"},
			Attr{Key: "envoy.bytes_received", Int: int64(r.ReceivedBytes), IsInt: true},
			Attr{Key: "envoy.bytes_sent", Int: int64(r.SentBytes), IsInt: true},
		)
	}
	sp.Attrs = appendMeshAttrs(sp.Attrs, r, peer)
	sp.Error, sp.StatusMessage = status(r, sp.Kind)
	return true
}

// httpSpanName is "{method} {route}" as the HTTP conventions ask, or just
// the method: never the path, whose cardinality is unbounded.
func httpSpanName(r *record.Record) string {
	m := r.HTTP.Method
	if m == "" {
		m = "HTTP"
	}
	if r.RouteName != "" && r.RouteName != "default" {
		return m + " " + r.RouteName
	}
	if r.Upstream.Service != "" {
		// Envoy's own operation name for mesh traffic: the upstream service.
		return m + " " + r.Upstream.Service
	}
	return m
}

func appendHTTPAttrs(a []Attr, r *record.Record, k Kind) []Attr {
	h := &r.HTTP
	a = appendStr(a, "http.request.method", h.Method)
	path, query, _ := strings.Cut(h.Path, "?")
	a = appendStr(a, "url.path", path)
	a = appendStr(a, "url.query", query)
	a = appendStr(a, "url.scheme", h.Scheme)
	host, port := splitAuthority(h.Authority, h.Scheme)
	a = appendStr(a, "server.address", host)
	if port > 0 {
		a = append(a, Attr{Key: "server.port", Int: int64(port), IsInt: true})
	}
	if h.ResponseCode != 0 {
		a = append(a, Attr{Key: "http.response.status_code", Int: int64(h.ResponseCode), IsInt: true})
	}
	if v := protocolVersion(h.Protocol); v != "" {
		a = append(a, Attr{Key: "network.protocol.name", Str: "http"}, Attr{Key: "network.protocol.version", Str: v})
	}
	a = appendStr(a, "user_agent.original", h.UserAgent)
	if h.RequestBodyBytes > 0 {
		a = append(a, Attr{Key: "http.request.body.size", Int: int64(h.RequestBodyBytes), IsInt: true})
	}
	if h.ResponseBodyBytes > 0 {
		a = append(a, Attr{Key: "http.response.body.size", Int: int64(h.ResponseBodyBytes), IsInt: true})
	}
	if h.GRPCStatus != "" {
		if n, err := strconv.Atoi(h.GRPCStatus); err == nil {
			a = append(a, Attr{Key: "rpc.system", Str: "grpc"}, Attr{Key: "rpc.grpc.status_code", Int: int64(n), IsInt: true})
		}
	}
	if k == KindServer {
		if ip, p := splitHostPort(r.Downstream.RemoteAddress); ip != "" {
			a = append(a, Attr{Key: "client.address", Str: ip})
			if p > 0 {
				a = append(a, Attr{Key: "client.port", Int: int64(p), IsInt: true})
			}
		}
	}
	a = appendStr(a, "envoy.request_id", h.RequestID)
	a = appendStr(a, "envoy.response_code_details", h.ResponseCodeDetails)
	return a
}

func appendMeshAttrs(a []Attr, r *record.Record, peer *record.Workload) []Attr {
	if ip, p := splitHostPort(r.Upstream.Host); ip != "" && r.Reporter == record.ReporterSource {
		a = append(a, Attr{Key: "network.peer.address", Str: ip})
		if p > 0 {
			a = append(a, Attr{Key: "network.peer.port", Int: int64(p), IsInt: true})
		}
	}
	a = appendStr(a, "envoy.upstream_cluster", r.Upstream.Cluster)
	if r.ResponseFlags != "" && r.ResponseFlags != "-" {
		a = append(a, Attr{Key: "envoy.response_flags", Str: r.ResponseFlags})
	}
	a = appendStr(a, "istio.reporter", r.Reporter)
	a = appendStr(a, "istio.connection_security_policy", r.ConnectionSecurityPolicy)
	a = appendStr(a, "peer.service", firstNonEmpty(peer.CanonicalService, peer.Name))
	a = appendStr(a, "istio.peer.namespace", peer.Namespace)
	a = appendStr(a, "istio.peer.principal", peer.Principal)
	a = appendStr(a, "envoy.node_id", r.Node.ID)
	return a
}

// status reports an error for a 5xx, a missing response, a non-zero gRPC
// status or an Envoy response flag; a CLIENT span is also an error on
// 4xx, as the HTTP conventions say (a server did nothing wrong on a 4xx).
func status(r *record.Record, k Kind) (bool, string) {
	flags := r.ResponseFlags
	if flags == "-" {
		flags = ""
	}
	var msg []string
	if r.Kind == record.KindHTTP {
		c := r.HTTP.ResponseCode
		switch {
		case c == 0:
			msg = append(msg, "no response")
		case c >= 500, c >= 400 && k == KindClient:
			msg = append(msg, "HTTP "+strconv.Itoa(int(c)))
		}
		if g := r.HTTP.GRPCStatus; g != "" && g != "0" {
			msg = append(msg, "grpc-status "+g)
		}
	}
	if flags != "" {
		msg = append(msg, flags)
	}
	if len(msg) == 0 {
		return false, ""
	}
	return true, strings.Join(msg, " ")
}

// StableSpanID derives a span id from what identifies the record, so the
// same record always yields the same span.
func StableSpanID(r *record.Record) [8]byte {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(r.StartTime.UnixNano()))
	h.Write(b[:])
	for _, s := range []string{r.Trace.TraceID, r.Node.ID, r.StreamID, r.Reporter, r.HTTP.RequestID} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var id [8]byte
	copy(id[:], h.Sum(nil))
	if id == [8]byte{} {
		id[7] = 1
	}
	return id
}

func decodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	_, err := hex.Decode(dst, []byte(s))
	return err == nil
}

func appendStr(a []Attr, k, v string) []Attr {
	if v == "" {
		return a
	}
	return append(a, Attr{Key: k, Str: v})
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" && v != "unknown" {
			return v
		}
	}
	if len(s) > 0 {
		return s[len(s)-1]
	}
	return ""
}

// protocolVersion maps Envoy's "HTTP/1.1" to the convention's "1.1".
func protocolVersion(p string) string {
	if v, ok := strings.CutPrefix(p, "HTTP/"); ok {
		return v
	}
	return ""
}

// splitAuthority returns the host and port of an authority, with the
// scheme's default port when none is given.
func splitAuthority(a, scheme string) (string, int) {
	if a == "" {
		return "", 0
	}
	if h, p := splitHostPort(a); h != "" {
		return h, p
	}
	switch scheme {
	case "https":
		return a, 443
	case "http":
		return a, 80
	}
	return a, 0
}

func splitHostPort(a string) (string, int) {
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0
	}
	n, _ := strconv.Atoi(p)
	return h, n
}
