package als

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"

	"github.com/meshtrail/meshtrail/record"
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
// concurrent use: it holds only configuration.
type converter struct {
	redact         map[string]bool // lowercase header names never kept
	maxHeaderBytes int             // longer header values are cut
}

// sensitiveHeaders never enter a record unless configured: they carry
// credentials.
var sensitiveHeaders = []string{
	"authorization", "proxy-authorization", "cookie", "set-cookie",
	"x-api-key", "x-auth-token", "x-csrf-token", "x-xsrf-token", "x-amz-security-token",
	"x-goog-iap-jwt-assertion", "x-forwarded-client-cert",
}

func newConverter(allowSensitive []string, extraRedact []string, maxHeaderBytes int) *converter {
	c := &converter{redact: map[string]bool{}, maxHeaderBytes: maxHeaderBytes}
	for _, h := range sensitiveHeaders {
		c.redact[h] = true
	}
	for _, h := range extraRedact {
		c.redact[strings.ToLower(h)] = true
	}
	for _, h := range allowSensitive {
		delete(c.redact, strings.ToLower(h))
	}
	return c
}

// entryNotes collects what was odd about an entry that was still accepted.
type entryNotes struct {
	invalidTrace   []invalidTrace
	redacted       int
	truncated      int
	badFilterState []string
}

// http converts one HTTP entry.
func (c *converter) http(p *proxy, e *accesslogv3.HTTPAccessLogEntry, now time.Time, notes *entryNotes) (*record.Record, error) {
	cp := e.GetCommonProperties()
	if cp == nil {
		return nil, &errEntry{reasonMissingCommon, "HTTP entry without common_properties"}
	}
	req, resp := e.GetRequest(), e.GetResponse()
	if req == nil {
		return nil, &errEntry{reasonMissingRequest, "HTTP entry without request properties"}
	}
	if resp == nil {
		return nil, &errEntry{reasonMissingResponse, "HTTP entry without response properties"}
	}
	r := &record.Record{Kind: record.KindHTTP, ReceivedAt: now}
	c.common(p, cp, r, notes)

	h := &r.HTTP
	h.Method = methodName(req.GetRequestMethod())
	h.Scheme = req.GetScheme()
	h.Authority = req.GetAuthority()
	h.Path = req.GetPath()
	h.OriginalPath = req.GetOriginalPath()
	h.Protocol = protocolName(e.GetProtocolVersion())
	h.RequestID = req.GetRequestId()
	h.UserAgent = req.GetUserAgent()
	h.Referer = req.GetReferer()
	h.ForwardedFor = req.GetForwardedFor()
	h.RequestHeaderBytes = req.GetRequestHeadersBytes()
	h.RequestBodyBytes = req.GetRequestBodyBytes()
	h.ResponseCode = resp.GetResponseCode().GetValue()
	h.ResponseCodeDetails = resp.GetResponseCodeDetails()
	h.ResponseHeaderBytes = resp.GetResponseHeadersBytes()
	h.ResponseBodyBytes = resp.GetResponseBodyBytes()

	// Trace headers are read before redaction could remove them, and even
	// when they are not kept.
	r.Trace, notes.invalidTrace = traceFrom(r.FilterState, req.GetRequestHeaders(), notes.invalidTrace)
	r.RequestHeaders = c.headers(req.GetRequestHeaders(), notes)
	r.ResponseHeaders = c.headers(resp.GetResponseHeaders(), notes)
	r.ResponseTrailers = c.headers(resp.GetResponseTrailers(), notes)
	if gs, ok := resp.GetResponseTrailers()["grpc-status"]; ok {
		h.GRPCStatus = gs
	} else if gs, ok := resp.GetResponseHeaders()["grpc-status"]; ok {
		h.GRPCStatus = gs // trailers-only responses
	}

	c.identify(p, r)
	if r.Upstream.Service == "" && r.Reporter == record.ReporterDestination && h.Authority != "" {
		// Inbound clusters carry no service (Istio >= 1.10): Istio's
		// telemetry takes it from the host the caller asked for.
		fillServiceFromAuthority(&r.Upstream, h.Authority, r.Destination.Namespace)
	}
	return r, nil
}

// tcp converts one TCP entry.
func (c *converter) tcp(p *proxy, e *accesslogv3.TCPAccessLogEntry, now time.Time, notes *entryNotes) (*record.Record, error) {
	cp := e.GetCommonProperties()
	if cp == nil {
		return nil, &errEntry{reasonMissingCommon, "TCP entry without common_properties"}
	}
	r := &record.Record{Kind: record.KindTCP, ReceivedAt: now}
	c.common(p, cp, r, notes)
	r.ReceivedBytes = e.GetConnectionProperties().GetReceivedBytes()
	r.SentBytes = e.GetConnectionProperties().GetSentBytes()
	r.Trace, notes.invalidTrace = traceFrom(r.FilterState, nil, notes.invalidTrace)
	c.identify(p, r)
	return r, nil
}

// common fills what HTTP and TCP entries share.
func (c *converter) common(p *proxy, cp *accesslogv3.AccessLogCommon, r *record.Record, notes *entryNotes) {
	r.Node = p.node
	if ts := cp.GetStartTime(); ts != nil {
		r.StartTime = time.Unix(ts.GetSeconds(), int64(ts.GetNanos())).UTC()
	}
	t := &r.Timings
	t.LastRxByte = cp.GetTimeToLastRxByte().AsDuration()
	t.FirstUpstreamTxByte = cp.GetTimeToFirstUpstreamTxByte().AsDuration()
	t.LastUpstreamTxByte = cp.GetTimeToLastUpstreamTxByte().AsDuration()
	t.FirstUpstreamRxByte = cp.GetTimeToFirstUpstreamRxByte().AsDuration()
	t.LastUpstreamRxByte = cp.GetTimeToLastUpstreamRxByte().AsDuration()
	t.FirstDownstreamTxByte = cp.GetTimeToFirstDownstreamTxByte().AsDuration()
	t.LastDownstreamTxByte = cp.GetTimeToLastDownstreamTxByte().AsDuration()
	if d := cp.GetDuration(); d != nil {
		t.Total = d.AsDuration()
	} else {
		t.Total = t.LastDownstreamTxByte
	}

	parseCluster(cp.GetUpstreamCluster(), &r.Upstream)
	r.Upstream.Host = address(cp.GetUpstreamRemoteAddress())
	r.Upstream.LocalAddress = address(cp.GetUpstreamLocalAddress())
	r.Upstream.TransportFailure = cp.GetUpstreamTransportFailureReason()
	r.Upstream.RequestAttemptCount = cp.GetUpstreamRequestAttemptCount()
	r.Upstream.WireBytesSent = cp.GetUpstreamWireBytesSent()
	r.Upstream.WireBytesReceived = cp.GetUpstreamWireBytesReceived()
	r.Downstream.RemoteAddress = address(cp.GetDownstreamRemoteAddress())
	r.Downstream.LocalAddress = address(cp.GetDownstreamLocalAddress())
	r.Downstream.DirectRemoteAddress = address(cp.GetDownstreamDirectRemoteAddress())
	r.Downstream.TransportFailure = cp.GetDownstreamTransportFailureReason()
	r.Downstream.WireBytesSent = cp.GetDownstreamWireBytesSent()
	r.Downstream.WireBytesReceived = cp.GetDownstreamWireBytesReceived()

	if tls := cp.GetTlsProperties(); tls != nil {
		r.TLS.Version = tlsVersion(tls.GetTlsVersion())
		r.TLS.CipherSuite = tls.GetTlsCipherSuite().GetValue()
		r.TLS.SNI = tls.GetTlsSniHostname()
		r.TLS.SessionID = tls.GetTlsSessionId()
		r.TLS.PeerURISAN, r.TLS.PeerSubject = certIdentity(tls.GetPeerCertificateProperties())
		r.TLS.LocalURISAN, r.TLS.LocalSubject = certIdentity(tls.GetLocalCertificateProperties())
	}

	r.ResponseFlags = responseFlags(cp.GetResponseFlags())
	r.RouteName = cp.GetRouteName()
	r.ConnectionTerminationDetails = cp.GetConnectionTerminationDetails()
	r.StreamID = cp.GetStreamId()
	r.Intermediate = cp.GetIntermediateLogEntry()
	r.SampleRate = cp.GetSampleRate()
	r.Tags = cp.GetCustomTags()

	ds, bad := decodeFilterState(cp.GetFilterStateObjects())
	r.FilterState = ds.values
	notes.badFilterState = bad
	if ds.upstreamPeer != nil {
		if w, ok := peerWorkload(ds.upstreamPeer); ok {
			r.Destination = w
		}
	}
	if ds.downstreamPeer != nil {
		if w, ok := peerWorkload(ds.downstreamPeer); ok {
			r.Source = w
		}
	}
}

// identify decides the reporter and fills the side of the hop the proxy
// itself is, the way Istio's standard metrics label them.
func (c *converter) identify(p *proxy, r *record.Record) {
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
		if r.Destination.Principal == "" {
			r.Destination.Principal = r.TLS.LocalURISAN
		}
		if r.TLS.PeerURISAN != "" {
			r.ConnectionSecurityPolicy = "mutual_tls"
			if r.Source.Principal == "" {
				r.Source.Principal = r.TLS.PeerURISAN
			}
			if r.Source.Namespace == "" {
				r.Source.Namespace = principalNamespace(r.TLS.PeerURISAN)
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
		}
		r.ConnectionSecurityPolicy = "unknown"
		if r.Destination.Namespace == "" {
			r.Destination.Namespace = r.Upstream.ServiceNamespace
		}
		if r.Destination.CanonicalService == "" {
			r.Destination.CanonicalService = r.Upstream.ServiceName
		}
	}
}

func fillServiceFromAuthority(u *record.Upstream, authority, namespace string) {
	host := authority
	if h, _, err := net.SplitHostPort(authority); err == nil {
		host = h
	}
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
		if c.redact[k] {
			delete(m, k)
			notes.redacted++
			continue
		}
		if c.maxHeaderBytes > 0 && len(v) > c.maxHeaderBytes {
			m[k] = v[:c.maxHeaderBytes]
			notes.truncated++
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

func address(a *corev3.Address) string {
	if a == nil {
		return ""
	}
	if sa := a.GetSocketAddress(); sa != nil {
		if port, ok := sa.GetPortSpecifier().(*corev3.SocketAddress_PortValue); ok {
			return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(port.PortValue), 10))
		}
		if name := sa.GetNamedPort(); name != "" {
			return net.JoinHostPort(sa.GetAddress(), name)
		}
		return sa.GetAddress()
	}
	if p := a.GetPipe(); p != nil {
		return "unix:" + p.GetPath()
	}
	if ei := a.GetEnvoyInternalAddress(); ei != nil {
		return "envoy://" + ei.GetServerListenerName()
	}
	return ""
}

func certIdentity(c *accesslogv3.TLSProperties_CertificateProperties) (uriSAN, subject string) {
	if c == nil {
		return "", ""
	}
	for _, san := range c.GetSubjectAltName() {
		if u := san.GetUri(); u != "" {
			uriSAN = u
			break
		}
	}
	return uriSAN, c.GetSubject()
}

func tlsVersion(v accesslogv3.TLSProperties_TLSVersion) string {
	switch v {
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

func protocolName(v accesslogv3.HTTPAccessLogEntry_HTTPVersion) string {
	switch v {
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

func methodName(m corev3.RequestMethod) string {
	switch m {
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
	return m.String()
}

// entryError describes why an entry was rejected, for the log line.
func entryError(err error) (reason, msg string) {
	var ee *errEntry
	if errors.As(err, &ee) {
		return ee.reason, ee.msg
	}
	return "invalid_entry", fmt.Sprint(err)
}
