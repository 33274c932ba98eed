package als

import (
	"errors"
	"fmt"
	"net"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"

	"github.com/meshtrail/meshtrail/internal/filterstate"
	"github.com/meshtrail/meshtrail/internal/istiocluster"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/tracecontext"
)

// Reasons an entry is rejected; each is a label value of
// meshtrail_als_entries_rejected_total.
const (
	reasonMissingCommon   = "missing_common_properties"
	reasonMissingRequest  = "missing_request"
	reasonMissingResponse = "missing_response"
)

// errEntry is an entry that cannot become a record.
type errEntry struct {
	reason string
	msg    string
}

func (e *errEntry) Error() string { return e.msg }

// converter turns access log entries into records. It is safe for
// concurrent use: it holds configuration and the endpoint map, which
// locks.
type converter struct {
	redact         map[string]bool // lowercase header names never kept
	redactState    map[string]bool // the Wasm filter's copies of them in filter state
	maxHeaderBytes int             // longer header values are cut
	traceOrder     []tracecontext.Format
	// endpoints names the pods behind upstream addresses, learned from
	// the streams of their own Envoys (shared by every stream).
	endpoints *endpointWorkloads
}

// withTraceOrder sets the precedence of trace header formats (nil: the
// default).
func (c *converter) withTraceOrder(order []tracecontext.Format) *converter {
	if order != nil {
		c.traceOrder = order
	}
	return c
}

// headerCopyPrefix starts the filter state keys under which the Wasm
// filter logs the request headers it was told to (access_log.headers).
const headerCopyPrefix = filterstate.WasmPrefix + filterstate.HeaderPrefix

// sensitiveHeaders never enter a record unless configured: they carry
// credentials.
var sensitiveHeaders = []string{
	"authorization", "proxy-authorization", "cookie", "set-cookie",
	"x-api-key", "x-auth-token", "x-csrf-token", "x-xsrf-token", "x-amz-security-token",
	"x-goog-iap-jwt-assertion", "x-forwarded-client-cert",
}

func newConverter(allowSensitive []string, extraRedact []string, maxHeaderBytes int) *converter {
	c := &converter{redact: map[string]bool{}, maxHeaderBytes: maxHeaderBytes, traceOrder: tracecontext.DefaultOrder,
		endpoints: newEndpointWorkloads(maxEndpointWorkloads)}
	for _, h := range sensitiveHeaders {
		c.redact[h] = true
	}
	for _, h := range extraRedact {
		c.redact[strings.ToLower(h)] = true
	}
	for _, h := range allowSensitive {
		delete(c.redact, strings.ToLower(h))
	}
	c.redactState = map[string]bool{}
	for h := range c.redact {
		c.redactState[filterstate.WasmPrefix+filterstate.HeaderKey(h)] = true
	}
	return c
}

// redacted reports whether a header must not be kept. Envoy logs names
// lowercased; another sender's Authorization is caught too.
func (c *converter) redacted(name string) bool {
	if c.redact[name] {
		return true
	}
	for i := 0; i < len(name); i++ {
		if 'A' <= name[i] && name[i] <= 'Z' {
			return c.redact[strings.ToLower(name)]
		}
	}
	return false
}

// entryNotes collects what was odd about an entry that was still accepted.
type entryNotes struct {
	invalidTrace   []invalidTrace
	redacted       int
	truncated      int
	badFilterState []string
	headerCopies   bool // filter state holds the Wasm filter's header copies
	filterTrace    filterTrace
	logType        uint64 // access_log_type (Envoy >= 1.27), 0 if not sent
}

// normalHeaderCopyKey is a filter state key of a header copy as the
// meshtrail filter writes it, whatever the case or punctuation another
// writer used; "" for other keys.
func normalHeaderCopyKey(k string) string {
	if len(k) <= len(headerCopyPrefix) || !strings.EqualFold(k[:len(headerCopyPrefix)], headerCopyPrefix) {
		return ""
	}
	name := k[len(headerCopyPrefix):]
	if k[:len(headerCopyPrefix)] == headerCopyPrefix && isHeaderKeyName(name) {
		return "" // already as the filter writes it: looked up as it is
	}
	return filterstate.WasmPrefix + filterstate.HeaderKey(name)
}

// isHeaderKeyName reports whether s holds only [a-z0-9_], as
// filterstate.HeaderKey writes names.
func isHeaderKeyName(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// noteHeaderCopy remembers that a filter state key is one of the Wasm
// filter's header copies, so that only such entries are checked for
// redaction.
func (n *entryNotes) noteHeaderCopy(key string) {
	if len(key) > len(headerCopyPrefix) && strings.EqualFold(key[:len(headerCopyPrefix)], headerCopyPrefix) {
		n.headerCopies = true
	}
}

// finish does what every entry needs once its fields are decoded: the
// trace context (read before redaction could remove a header), redaction,
// and which side of the hop the reporting proxy is.
func (c *converter) finish(p *proxy, r *record.Record, reqHeaders map[string]string, notes *entryNotes) {
	if r.Kind == record.KindHTTP && tcpType(notes.logType) {
		// A TCP connection logged by Envoy's HTTP gRPC logger (Istio's
		// envoyHttpAls provider on a tcp_proxy): its bytes are in the
		// request and response body counts, and it is no HTTP request.
		r.Kind = record.KindTCP
		r.ReceivedBytes, r.SentBytes = r.HTTP.RequestBodyBytes, r.HTTP.ResponseBodyBytes
		r.HTTP = record.HTTP{}
		reqHeaders, r.ResponseHeaders, r.ResponseTrailers = nil, nil, nil
	}
	if r.Kind == record.KindHTTP {
		r.Trace, notes.invalidTrace = traceFrom(&notes.filterTrace, reqHeaders, c.traceOrder, notes.invalidTrace)
		r.RequestHeaders = c.headers(reqHeaders, notes)
		r.ResponseHeaders = c.headers(r.ResponseHeaders, notes)
		r.ResponseTrailers = c.headers(r.ResponseTrailers, notes)
		if notes.headerCopies {
			r.FilterState = c.filterState(r.FilterState, notes)
		}
		if gs, ok := r.ResponseTrailers["grpc-status"]; ok {
			r.HTTP.GRPCStatus = gs
		} else if gs, ok := r.ResponseHeaders["grpc-status"]; ok {
			r.HTTP.GRPCStatus = gs // trailers-only responses
		}
	} else {
		r.Trace, notes.invalidTrace = traceFrom(&notes.filterTrace, nil, c.traceOrder, notes.invalidTrace)
	}
	r.FilterState = notes.filterTrace.restoreUnused(r.FilterState, &r.Trace)
	if r.Timings.Total == 0 {
		r.Timings.Total = r.Timings.LastDownstreamTxByte
	}
	c.identify(p, r)
	if r.Kind == record.KindTCP && r.Reporter == record.ReporterDestination && r.Upstream.Service == "" {
		serviceFromSNI(&r.Upstream, r.TLS.SNI)
	}
	if r.Kind == record.KindHTTP && r.Upstream.Service == "" && r.HTTP.Authority != "" {
		switch {
		case istiocluster.IsCatchAll(r.Upstream.ServiceName):
			// Istio labels passthrough and blocked requests with the host
			// asked for as destination_service.
			r.Upstream.Service = hostOf(r.HTTP.Authority)
		case r.Reporter == record.ReporterDestination:
			// Inbound clusters carry no service (Istio >= 1.10): Istio's
			// telemetry takes it from the host the caller asked for.
			fillServiceFromAuthority(&r.Upstream, r.HTTP.Authority, r.Destination.Namespace)
		}
	}
}

// identify decides the reporter and fills the side of the hop the proxy
// itself is, the way Istio's standard metrics label them.
func (c *converter) identify(p *proxy, r *record.Record) {
	if !p.announced {
		c.endpoints.learn(p)
		p.announced = true
	}
	if p.node.Type == "waypoint" {
		// An ambient waypoint is neither side of the hop: Istio labels
		// its reports reporter="waypoint", with both peers from the
		// peer metadata, never the waypoint's own workload.
		r.Reporter = record.ReporterWaypoint
		r.ConnectionSecurityPolicy = "none"
		if peerSAN, _ := principals(r); peerSAN != "" {
			r.ConnectionSecurityPolicy = "mutual_tls"
			if r.Source.Principal == "" {
				r.Source.Principal = peerSAN
			}
		}
		return
	}
	if r.Upstream.Direction == "" {
		directionWithoutCluster(p, r)
	}
	switch {
	case r.Upstream.Direction == "inbound":
		r.Reporter = record.ReporterDestination
	case r.Upstream.Direction == "outbound", p.node.Type == "router":
		r.Reporter = record.ReporterSource
	}
	switch r.Reporter {
	case record.ReporterDestination:
		if r.Destination.Name == "" {
			r.Destination = p.workload
		}
		peerSAN, localSAN := principals(r)
		// Istio's destination_principal is the identity the proxy served
		// this request with: unknown over plaintext, whatever the service
		// account would imply. The stream remembers it for the entries
		// the same proxy reports as the caller.
		r.Destination.Principal = localSAN
		if localSAN != "" {
			p.principal = localSAN
		}
		if peerSAN != "" {
			r.ConnectionSecurityPolicy = "mutual_tls"
			if r.Source.Principal == "" {
				r.Source.Principal = peerSAN
			}
			if r.Source.Namespace == "" {
				r.Source.Namespace = principalNamespace(peerSAN)
			}
		} else {
			r.ConnectionSecurityPolicy = "none"
		}
		if r.Source.IP == "" {
			if host, _, err := net.SplitHostPort(r.Downstream.RemoteAddress); err == nil {
				r.Source.IP = host
			}
		}
	case record.ReporterSource:
		if r.Source.Name == "" {
			r.Source = p.workload
			if p.principal != "" {
				// The identity this proxy showed on its inbound
				// entries; before one arrives, the one its service
				// account and trust domain imply.
				r.Source.Principal = p.principal
			}
		}
		r.ConnectionSecurityPolicy = "unknown"
		if r.Destination.Name == "" && r.Upstream.Service != "" && r.Upstream.Host != "" && !istiocluster.IsCatchAll(r.Upstream.ServiceName) {
			// No peer metadata came back (the connection failed, or the
			// peer runs no metadata exchange). Istio then names the
			// destination from the endpoint's metadata (istio_stats.cc,
			// populatePeerInfo: extractEndpointMetadata); the receiver
			// knows the endpoints whose Envoys stream to it. Past that,
			// Istio leaves the destination unknown, whatever the service
			// says: the destination_workload_namespace="unknown" Kiali
			// looks for requests that never reached a workload by.
			if w, ok := c.endpoints.lookup(hostOf(r.Upstream.Host)); ok {
				r.Destination = w
			}
		}
	}
}

// Filter state Istio sets from the downstream mTLS handshake (istio_authn /
// set_filter_state: the HBONE peer on a waypoint or an ambient-captured
// sidecar, whose access log never sees that TLS). Istio's stats read them
// before the connection's own TLS properties.
const (
	fsPeerPrincipal  = "io.istio.peer_principal"
	fsLocalPrincipal = "io.istio.local_principal"
)

// principals returns the peer's and the proxy's own identity for an
// inbound entry, as Istio's stats take them: filter state first, else the
// downstream TLS certificates.
func principals(r *record.Record) (peer, local string) {
	if fs := r.FilterState; fs != nil {
		peer, local = fs[fsPeerPrincipal], fs[fsLocalPrincipal]
	}
	if peer == "" && local == "" {
		peer, local = r.TLS.PeerURISAN, r.TLS.LocalURISAN
	}
	return peer, local
}

// directionWithoutCluster decides the direction of an entry whose upstream
// cluster says nothing. Envoy logs upstream_cluster only once it picked an
// upstream host, so the failures users look for most (no route, no healthy
// upstream, a blocked host, a local reply) arrive without one. Istio's
// routes to its catch-all clusters are named allow_any and block_all; past
// those, a sidecar received the request inbound when the address the
// downstream connected to is the proxy's own (inbound traffic is
// redirected to the pod's address, outbound keeps the service's).
func directionWithoutCluster(p *proxy, r *record.Record) {
	if ca := istiocluster.RouteCatchAll(r.RouteName); ca != "" {
		r.Upstream.Direction, r.Upstream.ServiceName = "outbound", ca
		return
	}
	if p.node.Type != "sidecar" || p.node.IP == "" || r.Downstream.LocalAddress == "" {
		return
	}
	if hostOf(r.Downstream.LocalAddress) == p.node.IP {
		r.Upstream.Direction = "inbound"
	} else {
		r.Upstream.Direction = "outbound"
	}
}

// serviceFromSNI fills an inbound TCP connection's service from the SNI of
// Istio's mutual TLS (outbound_.6379_._.redis.shop.svc.cluster.local: the
// caller's cluster name, which names the service it called). Istio labels
// inbound TCP with the service of the inbound cluster's metadata
// (istio_stats.cc, populatePeerInfo: the "istio" filter metadata's
// services[0] host and name), which the access log does not carry; the
// SNI names the same service. Plaintext connections carry no SNI and stay
// without one.
func serviceFromSNI(u *record.Upstream, sni string) {
	cl := istiocluster.Parse(sni)
	if cl.Direction != "outbound" || cl.Host == "" || cl.CatchAll != "" {
		return
	}
	u.Service, u.ServiceName = cl.Host, cl.Host
	if n, ns, ok := istiocluster.ServiceParts(cl.Host); ok {
		u.ServiceName, u.ServiceNamespace = n, ns
	}
}

// hostOf is host:port without the port (an address without one is kept).
func hostOf(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

func fillServiceFromAuthority(u *record.Upstream, authority, namespace string) {
	host := hostOf(authority)
	name, rest, dotted := strings.Cut(host, ".")
	switch {
	case !dotted && namespace != "":
		u.Service = name + "." + namespace + ".svc.cluster.local"
		u.ServiceName, u.ServiceNamespace = name, namespace
	case strings.Contains(rest, ".svc."):
		ns, _, _ := strings.Cut(rest, ".")
		u.Service = host
		u.ServiceName, u.ServiceNamespace = name, ns
	default:
		u.Service, u.ServiceName = host, host
	}
}

// headers keeps the logged headers minus the redacted ones, cutting values
// longer than maxHeaderBytes. The proto's map is owned by this entry, so it
// is reused in place when nothing needs removing.
func (c *converter) headers(m map[string]string, notes *entryNotes) map[string]string {
	if len(m) == 0 {
		return nil
	}
	for k, v := range m {
		if c.redacted(k) {
			delete(m, k)
			notes.redacted++
			continue
		}
		if c.maxHeaderBytes > 0 && len(v) > c.maxHeaderBytes {
			// Cut on a character boundary (the value is valid UTF-8
			// already); a slice would keep the whole value alive.
			m[k] = strings.Clone(v[:utf8Boundary(v, c.maxHeaderBytes)])
			notes.truncated++
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// filterState drops the Wasm filter's copies of headers that are redacted
// here: a filter told to log Authorization does not get it past the
// receiver's own rule (allow it with headers.allow_sensitive). The key is
// compared the way the filter builds it (filterstate.HeaderKey: lowercase,
// '_' for other characters), so wasm.meshtrail_h_AUTHORIZATION from
// another writer is caught too.
func (c *converter) filterState(m map[string]string, notes *entryNotes) map[string]string {
	for k := range m {
		if c.redactState[k] || c.redactState[normalHeaderCopyKey(k)] {
			delete(m, k)
			notes.redacted++
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

func tlsVersion(v int32) string {
	switch accesslogv3.TLSProperties_TLSVersion(v) {
	case accesslogv3.TLSProperties_TLSv1:
		return "TLSv1"
	case accesslogv3.TLSProperties_TLSv1_1:
		return "TLSv1.1"
	case accesslogv3.TLSProperties_TLSv1_2:
		return "TLSv1.2"
	case accesslogv3.TLSProperties_TLSv1_3:
		return "TLSv1.3"
	}
	return ""
}

func protocolName(v int32) string {
	switch accesslogv3.HTTPAccessLogEntry_HTTPVersion(v) {
	case accesslogv3.HTTPAccessLogEntry_HTTP10:
		return "HTTP/1.0"
	case accesslogv3.HTTPAccessLogEntry_HTTP11:
		return "HTTP/1.1"
	case accesslogv3.HTTPAccessLogEntry_HTTP2:
		return "HTTP/2"
	case accesslogv3.HTTPAccessLogEntry_HTTP3:
		return "HTTP/3"
	}
	return ""
}

func methodName(v int32) string {
	switch m := corev3.RequestMethod(v); m {
	case corev3.RequestMethod_GET:
		return "GET"
	case corev3.RequestMethod_POST:
		return "POST"
	case corev3.RequestMethod_PUT:
		return "PUT"
	case corev3.RequestMethod_DELETE:
		return "DELETE"
	case corev3.RequestMethod_HEAD:
		return "HEAD"
	case corev3.RequestMethod_PATCH:
		return "PATCH"
	case corev3.RequestMethod_OPTIONS:
		return "OPTIONS"
	case corev3.RequestMethod_CONNECT:
		return "CONNECT"
	case corev3.RequestMethod_TRACE:
		return "TRACE"
	case corev3.RequestMethod_METHOD_UNSPECIFIED:
		return ""
	}
	return corev3.RequestMethod(v).String()
}

// entryError describes why an entry was rejected, for the log line.
func entryError(err error) (reason, msg string) {
	var ee *errEntry
	if errors.As(err, &ee) {
		return ee.reason, ee.msg
	}
	return "invalid_entry", fmt.Sprint(err)
}
