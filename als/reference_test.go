package als

import (
	"github.com/meshtrail/meshtrail/internal/peermeta"
	"net"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"

	"github.com/meshtrail/meshtrail/internal/record"
)

// The reference converter works on go-control-plane's generated types. The
// receiver decodes the wire format itself (wire.go) for speed; this slower,
// obviously-correct path is the oracle the tests and the differential fuzz
// target compare it with.

func (c *converter) refHTTP(p *proxy, e *accesslogv3.HTTPAccessLogEntry, now time.Time, notes *entryNotes) (*record.Record, error) {
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
	c.refCommon(p, cp, r, notes)
	h := &r.HTTP
	h.Method = methodName(int32(req.GetRequestMethod()))
	h.Scheme = req.GetScheme()
	h.Authority = req.GetAuthority()
	h.Path = req.GetPath()
	h.OriginalPath = req.GetOriginalPath()
	h.Protocol = protocolName(int32(e.GetProtocolVersion()))
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
	r.ResponseHeaders = nonEmpty(resp.GetResponseHeaders())
	r.ResponseTrailers = nonEmpty(resp.GetResponseTrailers())
	c.finish(p, r, nonEmpty(req.GetRequestHeaders()), notes)
	return r, nil
}

func nonEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func (c *converter) refTCP(p *proxy, e *accesslogv3.TCPAccessLogEntry, now time.Time, notes *entryNotes) (*record.Record, error) {
	cp := e.GetCommonProperties()
	if cp == nil {
		return nil, &errEntry{reasonMissingCommon, "TCP entry without common_properties"}
	}
	r := &record.Record{Kind: record.KindTCP, ReceivedAt: now}
	c.refCommon(p, cp, r, notes)
	r.ReceivedBytes = e.GetConnectionProperties().GetReceivedBytes()
	r.SentBytes = e.GetConnectionProperties().GetSentBytes()
	c.finish(p, r, nil, notes)
	return r, nil
}

func (c *converter) refCommon(p *proxy, cp *accesslogv3.AccessLogCommon, r *record.Record, notes *entryNotes) {
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
	t.Total = cp.GetDuration().AsDuration()

	parseCluster(cp.GetUpstreamCluster(), &r.Upstream)
	r.Upstream.Host = refAddress(cp.GetUpstreamRemoteAddress())
	r.Upstream.LocalAddress = refAddress(cp.GetUpstreamLocalAddress())
	r.Upstream.TransportFailure = cp.GetUpstreamTransportFailureReason()
	r.Upstream.RequestAttemptCount = cp.GetUpstreamRequestAttemptCount()
	r.Upstream.WireBytesSent = cp.GetUpstreamWireBytesSent()
	r.Upstream.WireBytesReceived = cp.GetUpstreamWireBytesReceived()
	r.Downstream.RemoteAddress = refAddress(cp.GetDownstreamRemoteAddress())
	r.Downstream.LocalAddress = refAddress(cp.GetDownstreamLocalAddress())
	r.Downstream.DirectRemoteAddress = refAddress(cp.GetDownstreamDirectRemoteAddress())
	r.Downstream.TransportFailure = cp.GetDownstreamTransportFailureReason()
	r.Downstream.WireBytesSent = cp.GetDownstreamWireBytesSent()
	r.Downstream.WireBytesReceived = cp.GetDownstreamWireBytesReceived()
	if tls := cp.GetTlsProperties(); tls != nil {
		r.TLS.Version = tlsVersion(int32(tls.GetTlsVersion()))
		r.TLS.CipherSuite = tls.GetTlsCipherSuite().GetValue()
		r.TLS.SNI = tls.GetTlsSniHostname()
		r.TLS.SessionID = tls.GetTlsSessionId()
		r.TLS.PeerURISAN, r.TLS.PeerSubject = refCertIdentity(tls.GetPeerCertificateProperties())
		r.TLS.LocalURISAN, r.TLS.LocalSubject = refCertIdentity(tls.GetLocalCertificateProperties())
	}
	r.ResponseFlags = maskOf(cp.GetResponseFlags()).String()
	r.RouteName = cp.GetRouteName()
	r.ConnectionTerminationDetails = cp.GetConnectionTerminationDetails()
	r.StreamID = cp.GetStreamId()
	//lint:ignore SA1019 older Envoys still send the deprecated flag
	r.Intermediate = cp.GetIntermediateLogEntry() || intermediateType(uint64(cp.GetAccessLogType()))
	notes.logType = uint64(cp.GetAccessLogType())
	r.SampleRate = cp.GetSampleRate()
	r.Tags = nonEmpty(cp.GetCustomTags())
	var ds decodedState
	for k, a := range cp.GetFilterStateObjects() {
		if !ds.add(k, a.GetTypeUrl(), a.GetValue(), copyingDecoder{}) {
			notes.badFilterState = append(notes.badFilterState, k)
		}
		notes.noteHeaderCopy(k)
	}
	r.FilterState, notes.filterTrace = ds.values, ds.trace
	if ds.hasUpstream {
		r.Destination = ds.upstreamPeer
	}
	if ds.hasDownPeer {
		r.Source = ds.downstreamPeer
	}
}

func refAddress(a *corev3.Address) string {
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
		return internalAddress(ei.GetServerListenerName(), ei.GetEndpointId())
	}
	return ""
}

func refCertIdentity(c *accesslogv3.TLSProperties_CertificateProperties) (uriSAN, subject string) {
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

// copyingDecoder decodes filter state objects with plain copies, no cache.
type copyingDecoder struct{}

func (copyingDecoder) peer(b []byte) (record.Workload, bool) {
	w, ok, _ := decodePeer(b, func(b []byte) string { return string(b) })
	return w, ok
}

func (copyingDecoder) text(b []byte) string { return string(b) }

// refProxy is the receiver's identifier parsing before it decoded the
// identifier itself, over the generated types: decodeIdentifier and
// proxyFrom must agree with it on every identifier within the size limits
// (the generated code rejects invalid UTF-8, which the receiver repairs).
// It reads an Envoy node the way Istio builds it: id
// "TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local" and node metadata
// (NAME, NAMESPACE, WORKLOAD_NAME, LABELS, CLUSTER_ID, MESH_ID,
// SERVICE_ACCOUNT...). Metadata wins over what the id implies; a node that
// is not Istio's still gets its id and cluster.
func refProxy(n *corev3.Node, logName string) proxy {
	var p proxy
	p.node.LogName = logName
	if n == nil {
		return p
	}
	p.node.ID = n.GetId()
	p.node.Cluster = n.GetCluster()
	if parts := strings.Split(n.GetId(), "~"); len(parts) == 4 {
		p.node.Type = parts[0]
		p.node.IP = parts[1]
		// A pod name may hold dots; a namespace (a DNS label) never does.
		if i := strings.LastIndexByte(parts[2], '.'); i >= 0 {
			p.node.Pod, p.node.Namespace = parts[2][:i], parts[2][i+1:]
		} else {
			p.node.Pod = parts[2]
		}
		if p.node.Namespace == "" {
			if ns, _, ok := strings.Cut(parts[3], "."); ok {
				p.node.Namespace = ns
			}
		}
	}
	md := n.GetMetadata().GetFields()
	str := func(k string) string { return md[k].GetStringValue() }
	if v := str("NAME"); v != "" {
		p.node.Pod = v
	}
	if v := str("NAMESPACE"); v != "" {
		p.node.Namespace = v
	}
	p.node.Workload = str("WORKLOAD_NAME")
	p.node.Mesh = str("MESH_ID")
	p.node.Network = str("NETWORK")
	p.node.ClusterID = str("CLUSTER_ID")
	if p.node.Workload == "" {
		p.node.Workload = workloadFromPod(p.node.Pod)
	}

	labels := md["LABELS"].GetStructValue().GetFields()
	lbl := func(k string) string { return labels[k].GetStringValue() }
	w := record.Workload{
		Name:              p.node.Workload,
		Namespace:         p.node.Namespace,
		CanonicalService:  lbl(labelCanonicalName),
		CanonicalRevision: lbl(labelCanonicalRevision),
		App:               lbl("app"),
		Version:           lbl("version"),
		Cluster:           p.node.ClusterID,
		Pod:               p.node.Pod,
		IP:                p.node.IP,
	}
	w.CanonicalService = peermeta.CanonicalService(w.CanonicalService, lbl("app.kubernetes.io/name"), w.App, w.Name)
	w.CanonicalRevision = peermeta.CanonicalRevision(w.CanonicalRevision, lbl("app.kubernetes.io/version"), w.Version)
	if sa := str("SERVICE_ACCOUNT"); sa != "" && w.Namespace != "" {
		td := firstNonEmpty(str("TRUST_DOMAIN"), "cluster.local")
		w.Principal = "spiffe://" + td + "/ns/" + w.Namespace + "/sa/" + sa
	}
	p.workload = w
	return p
}

// workloadFromPod guesses a workload name from a pod name when Istio's
