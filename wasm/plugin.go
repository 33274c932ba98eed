package main

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/meshtrail/meshtrail/internal/istiocluster"
	"github.com/meshtrail/meshtrail/internal/tracecontext"
)

// vmContext is the Wasm VM: one per Envoy worker thread.
type vmContext struct {
	types.DefaultVMContext
}

func (*vmContext) NewPluginContext(uint32) types.PluginContext {
	return &pluginContext{direction: renamedAttr{names: attrListenerDirection}}
}

// pluginContext is one filter configuration (one per listener in Istio).
// Everything it holds is read-mostly state shared by that listener's
// requests on this worker.
type pluginContext struct {
	types.DefaultPluginContext

	s      *settings
	host   envoyHost
	tracer tracer
	local  workload
	series *seriesCache
	// messages are the gRPC message counters.
	messages *messageCache
	peers    *peerCache
	// fsPeers caches downstream_peer filter state values.
	fsPeers *peerCache

	// reporter is settled on the first request when configured as auto,
	// from direction.
	reporter  string
	direction renamedAttr
	// clockDuration: the host lacks request.duration, use the guest clock.
	clockDuration bool

	// errors counts requests the filter gave up on (they passed untouched).
	errors proxywasm.MetricCounter
	// invalidHeaders counts inbound trace headers ignored, by reason.
	invalidHeaders [len(invalidReasons)]proxywasm.MetricCounter
	// free holds request contexts whose request has ended (see recycle).
	free []*httpContext
	// reqHeaders is the storage request headers are decoded into, reused
	// by every request (only read during OnHttpRequestHeaders).
	reqHeaders headerList
	// statNames keeps the names passed to the host alive: a host may keep
	// the pointer it was given rather than copy (proxytest does).
	statNames []string
}

// Attribute paths read per request, serialized once.
var (
	pathConnMTLS        = mkPath("connection", "mtls")
	pathConnPeerSAN     = mkPath("connection", "uri_san_peer_certificate")
	pathUpstreamPeerSAN = mkPath("upstream", "uri_san_peer_certificate")
	// The local identity, read until known (a plaintext connection has
	// none).
	pathConnLocalSAN     = mkPath("connection", "uri_san_local_certificate")
	pathUpstreamLocalSAN = mkPath("upstream", "uri_san_local_certificate")
	pathRequestDuration  = mkPath("request", "duration")
	pathRequestSize      = mkPath("request", "total_size")
	pathResponseSize     = mkPath("response", "total_size")
	pathResponseCode     = mkPath("response", "code")
	pathResponseFlags    = mkPath("response", "flags")
)

// Stat names of the filter's own counters (Envoy adds "wasmcustom.").
const statFilterErrors = "meshtrail_filter_errors_total"

// invalidHeaderStat is the counter of inbound trace headers ignored for
// reason, tagged like the Istio metrics so one stats_tags rule extracts it.
func invalidHeaderStat(reason string) string {
	return "reason=.=" + reason + ";.;meshtrail_trace_headers_invalid_total"
}

// invalidReasons are the tracecontext errors counted, in counter order.
var invalidReasons = [...]struct {
	err  error
	name string
}{
	{tracecontext.ErrMalformed, "malformed"},
	{tracecontext.ErrZeroID, "zero_id"},
	{tracecontext.ErrVersion, "version"},
	{tracecontext.ErrSampling, "sampling"},
	{tracecontext.ErrDuplicate, "duplicate"},
}

// OnPluginStart validates the configuration. Returning failure makes Envoy
// reject the configuration (the listener is not updated), and the log line
// names the field to fix.
func (p *pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	data, err := proxywasm.GetPluginConfiguration()
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
		proxywasm.LogCriticalf("meshtrail: reading plugin configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	s, err := parseConfig(data)
	if err != nil {
		proxywasm.LogCriticalf("meshtrail: invalid plugin configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	p.s = s
	p.reporter = s.reporter
	// Seed from the runtime's generator, itself seeded from the host's
	// random_get: crypto/rand would pull ~400 KB of crypto into the .wasm,
	// and trace ids need to be unique, not secret.
	var seed [32]byte
	for i := 0; i < len(seed); i += 8 {
		binary.LittleEndian.PutUint64(seed[i:], rand.Uint64())
	}
	p.tracer = tracer{s: s, rng: rand.New(rand.NewChaCha8(seed))}
	p.local = localWorkload()
	p.series = newSeriesCache(s.maxSeries)
	p.messages = newMessageCache(s.maxSeries, p.series.dropped)
	p.peers = newPeerCache(256)
	p.fsPeers = newPeerCache(256)
	p.errors = proxywasm.DefineCounterMetric(statFilterErrors)
	for i, r := range invalidReasons {
		name := invalidHeaderStat(r.name)
		p.statNames = append(p.statNames, name)
		p.invalidHeaders[i] = proxywasm.DefineCounterMetric(name)
	}
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	var h *httpContext
	if n := len(p.free); n > 0 {
		h = p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		custom := h.m.custom
		*h = httpContext{p: p}
		h.m.custom = custom
	} else {
		h = &httpContext{p: p}
	}
	// The custom dimension values exist from the start: a request can
	// reach any callback without the ones before it (a local reply from
	// an earlier filter skips the request headers).
	if p.s != nil {
		if n := len(p.s.exprs); cap(h.m.custom) >= n {
			h.m.custom = h.m.custom[:n]
			clear(h.m.custom)
		} else {
			h.m.custom = make([]string, n)
		}
	}
	return h
}

// maxFree bounds the recycled request contexts kept per plugin: about the
// number of requests a worker has between their log and delete callbacks.
const maxFree = 16

// recycle keeps h for a later request once its last callback has run
// (proxy_on_log: afterwards Envoy only deletes the context, which the SDK
// does without calling it). A request context is the filter's largest
// allocation; reusing it keeps the guest's GC out of the request path.
func (p *pluginContext) recycle(h *httpContext) {
	// A second proxy_on_log for the context must not hand it out twice.
	if h.recycled || len(p.free) >= maxFree {
		return
	}
	h.recycled = true
	p.free = append(p.free, h)
}

// httpContext is one request.
type httpContext struct {
	types.DefaultHttpContext
	p *pluginContext

	failed  bool // a callback failed: do nothing more for this request
	reqSeen bool // OnHttpRequestHeaders ran
	resSeen bool // OnHttpResponseHeaders ran
	start   time.Time
	reqBody uint64
	resBody uint64

	trace       traceResult
	traced      bool
	m           requestMetrics
	peer        workload
	peerKnown   bool
	peerWritten bool // the peer attributes are in filter state
	attrsDone   bool
	statusSeen  bool
	grpc        bool // the request's content-type is application/grpc*
	// reqFrames and resFrames count a gRPC call's messages each way.
	reqFrames, resFrames grpcFrames
	recycled             bool // in the plugin's free list
}

// guard turns a panic in a callback (a failed host call, a bug) into a
// counted error: the request continues untouched and the filter leaves it
// alone from then on.
func (h *httpContext) guard() {
	if r := recover(); r != nil {
		h.fail()
	}
}

func (h *httpContext) fail() {
	h.failed = true
	func() {
		defer func() { _ = recover() }()
		h.p.errors.Increment(1)
	}()
}

func (h *httpContext) OnHttpRequestHeaders(int, bool) (action types.Action) {
	defer h.guard()
	if h.failed {
		return types.ActionContinue
	}
	h.reqSeen = true
	if h.p.clockDuration {
		h.start = time.Now()
	}
	list, err := getRequestHeaders(h.p.reqHeaders)
	if err != nil {
		h.fail()
		return types.ActionContinue
	}
	h.p.reqHeaders = list
	s := h.p.s

	if s.tracing {
		h.trace = h.p.tracer.continueTrace(list)
		h.traced = true
		for _, e := range h.trace.invalid {
			for i, r := range invalidReasons {
				if errors.Is(e, r.err) {
					h.p.invalidHeaders[i].Increment(1)
					break
				}
			}
		}
		txt := newTraceText(&h.trace.out)
		// Filter state first: if the host refuses it, the request has
		// not been touched yet.
		if s.accessLog {
			if err := writeTraceAttributes(txt, h.trace.out.Sampling.Sampled(), h.trace.started); err != nil {
				h.fail()
				return types.ActionContinue
			}
		}
		if err := h.p.tracer.inject(list, &h.trace.out, txt); err != nil {
			h.fail()
			return types.ActionContinue
		}
	}
	if s.accessLog {
		for i := range s.logHeaders {
			lh := &s.logHeaders[i]
			if err := setNonEmpty(&lh.property, list.first(lh.source)); err != nil {
				h.fail()
				return types.ActionContinue
			}
		}
		// Envoy serves the request header attributes only now (and at
		// log time, after its access log has been written).
		for i := range s.reqAttrs {
			a := &s.reqAttrs[i]
			if err := setNonEmpty(&a.property, a.attr.read()); err != nil {
				h.fail()
				return types.ActionContinue
			}
		}
	}

	h.readRequest(list)
	if h.destination() {
		h.writeRequestPeer()
	}
	return types.ActionContinue
}

// writeRequestPeer resolves the principals and, on the destination side,
// stores the peer identity now: the peer is known from the request (the
// metadata exchange header or downstream_peer, the connection's
// certificate), and Envoy's configured access loggers run before the
// filter's proxy_on_log, so what is written later than the last header
// callback the request reaches never gets into the access log (a client
// that resets before the response).
func (h *httpContext) writeRequestPeer() {
	s := h.p.s
	if s.metrics || s.accessLog {
		h.resolvePrincipals()
	}
	if !s.accessLog {
		return
	}
	if err := writePeerAttributes(&h.peer); err != nil {
		h.fail()
		return
	}
	h.peerWritten = true
}

// readRequest takes what the metrics and the peer identity need from the
// request headers: in OnHttpRequestHeaders, or at log time when that
// callback did not run.
func (h *httpContext) readRequest(list headerList) {
	s := h.p.s
	if s.metrics {
		h.m.labels[lRequestProtocol] = "http"
		if strings.HasPrefix(list.first("content-type"), "application/grpc") {
			h.m.labels[lRequestProtocol] = "grpc"
			h.grpc = true
		}
		host := list.first(":authority")
		if i := strings.LastIndexByte(host, ':'); i > 0 && !strings.Contains(host[i:], "]") {
			host = host[:i]
		}
		h.m.labels[lDestinationService] = host
		for i, e := range s.exprs {
			if e.requestHeader != "" {
				h.m.custom[i] = list.first(e.requestHeader)
			}
		}
	}
	// Known already when the response headers callback of a local reply
	// read it (and resolved its principal).
	if h.destination() && !h.peerKnown {
		if v := list.first(headerPeerMetadata); v != "" {
			h.learnPeer(v)
		} else {
			h.readFilterStatePeer()
		}
	}
}

// readFilterStatePeer takes the peer from the downstream_peer filter state
// Istio's peer_metadata filter keeps once it has consumed the metadata
// exchange header.
func (h *httpContext) readFilterStatePeer() {
	if b, ok := getProperty(&pathDownstreamPeer); ok {
		if w, ok := h.p.fsPeers.decodeFilterState(b); ok {
			h.peer = w
			h.peerKnown = true
		}
	}
}

// destination reports whether this proxy reports as the destination. The
// reporter is one of two strings of different lengths: comparing lengths
// avoids a string comparison (a runtime call in Go's Wasm) per use.
func (h *httpContext) destination() bool {
	return len(h.reporter()) == len("destination")
}

// reporter returns "source" or "destination", reading Envoy's
// xds.listener_direction (1 inbound, 2 outbound; listener_direction on
// Envoys that serve only that name) when configured as auto, until it is
// known: in practice on the first request only.
func (h *httpContext) reporter() string {
	p := h.p
	if p.reporter != "" {
		return p.reporter
	}
	switch d, _ := p.direction.readUint(); d {
	case 1:
		p.reporter = "destination"
	case 2:
		p.reporter = "source"
	default:
		// Unknown direction (not Istio): a sidecar's inbound is the
		// common case, but do not settle it.
		return "destination"
	}
	return p.reporter
}

// learnPeer reads the peer's identity from Istio's metadata exchange
// header; the peer principal comes from the connection at log time.
func (h *httpContext) learnPeer(v string) {
	if v != "" {
		if w, ok := h.p.peers.decode(v); ok {
			h.peer = w
			h.peerKnown = true
		}
	}
}

func (h *httpContext) OnHttpRequestBody(size int, _ bool) types.Action {
	h.reqBody += uint64(size)
	if h.grpc && size > 0 && h.p.s.metrics {
		h.countFrames(&h.reqFrames, proxywasm.GetHttpRequestBody, size)
	}
	return types.ActionContinue
}

func (h *httpContext) OnHttpResponseBody(size int, _ bool) types.Action {
	h.resBody += uint64(size)
	if h.grpc && size > 0 && h.p.s.metrics {
		h.countFrames(&h.resFrames, proxywasm.GetHttpResponseBody, size)
	}
	return types.ActionContinue
}

// countFrames reads the chunk Envoy holds (only on gRPC calls: a plain
// request's body is never copied into the filter).
func (h *httpContext) countFrames(f *grpcFrames, body func(int, int) ([]byte, error), size int) {
	defer h.guard()
	b, err := body(0, size)
	if err != nil {
		return
	}
	f.feed(b)
}

func (h *httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	defer h.guard()
	if h.failed {
		return types.ActionContinue
	}
	h.resSeen = true
	if !h.reqSeen && h.destination() {
		// A local reply from a filter before this one (RBAC, JWT): Envoy
		// runs this callback but not the request headers one, and the
		// request header map is gone (README, "Requests answered before
		// the filter"). The peer Istio's peer_metadata filter kept is
		// still there: write it with the response attributes, before
		// Envoy's access log runs.
		h.readFilterStatePeer()
	}
	if !h.readResponse() {
		return types.ActionContinue
	}
	h.writeResponseAttributes()
	return types.ActionContinue
}

// readResponse takes what the metrics and the peer identity need from the
// response headers, in OnHttpResponseHeaders or at log time when that
// callback did not run. It reports false when the request failed.
func (h *httpContext) readResponse() bool {
	// Only the headers used are read, one host call each, rather than
	// the whole map.
	s := h.p.s
	if s.metrics {
		code, err := getResponseHeader(":status")
		if err != nil {
			h.fail()
			return false
		}
		h.m.labels[lResponseCode] = code
		h.statusSeen = code != ""
		// grpc-status in headers (a trailers-only answer) is only looked
		// for on gRPC requests, as Istio fills grpc_response_status only
		// for them.
		if h.grpc {
			g, err := getResponseHeader("grpc-status")
			if err != nil {
				h.fail()
				return false
			}
			if g != "" {
				h.m.labels[lGrpcResponseStatus] = g
			}
		}
		for i, e := range s.exprs {
			if e.responseHeader != "" {
				v, err := getResponseHeader(e.responseHeader)
				if err != nil {
					h.fail()
					return false
				}
				h.m.custom[i] = v
			}
		}
	}
	if !h.destination() {
		v, err := getResponseHeader(headerPeerMetadata)
		if err != nil {
			h.fail()
			return false
		}
		h.learnPeer(v)
	}
	return true
}

func (h *httpContext) OnHttpResponseTrailers(int) types.Action {
	defer h.guard()
	if h.failed || !h.p.s.metrics {
		return types.ActionContinue
	}
	if g, err := proxywasm.GetHttpResponseTrailer("grpc-status"); err == nil && g != "" {
		h.m.labels[lGrpcResponseStatus] = g
	}
	return types.ActionContinue
}

// writeResponseAttributes resolves the mTLS principals (metric labels and
// peer attributes) and stores the configured attributes read at response
// headers and, on the source side, the peer identity, which the response
// brings. It is the last point where the filter writes filter state:
// Envoy's configured access loggers run before proxy_on_log.
func (h *httpContext) writeResponseAttributes() {
	if h.attrsDone {
		return
	}
	h.attrsDone = true
	s := h.p.s
	// The principals are labels too: resolve them whenever either part
	// needs them, not only for the access log.
	if s.metrics || s.accessLog {
		h.resolvePrincipals()
	}
	if !s.accessLog {
		return
	}
	for i := range s.logAttrs {
		a := &s.logAttrs[i]
		if err := setNonEmpty(&a.property, a.attr.read()); err != nil {
			h.fail()
			return
		}
	}
	if h.peerWritten {
		return
	}
	if err := writePeerAttributes(&h.peer); err != nil {
		h.fail()
	}
}

// resolvePrincipals reads the mTLS identities once per request.
func (h *httpContext) resolvePrincipals() {
	if h.m.labels[lConnectionSecurityPolicy] != "" {
		return
	}
	hp := h.p.host
	if h.destination() {
		// A plaintext connection has no peer certificate: read it only
		// over mTLS.
		if mtls, _ := hp.pathBool(&pathConnMTLS); mtls {
			h.m.labels[lConnectionSecurityPolicy] = "mutual_tls"
			h.peer.principal = hp.pathString(&pathConnPeerSAN)
			// The local identity is read until known, and only over
			// mTLS: on a plaintext connection (PERMISSIVE mode) Envoy
			// has no local certificate to name.
			if h.p.local.principal == "" {
				h.p.local.principal = strings.Clone(hp.pathString(&pathConnLocalSAN))
			}
		} else {
			h.m.labels[lConnectionSecurityPolicy] = "none"
		}
	} else {
		h.peer.principal = hp.pathString(&pathUpstreamPeerSAN)
		// Likewise only over a TLS upstream, whose peer certificate
		// named the peer.
		if h.peer.principal != "" && h.p.local.principal == "" {
			h.p.local.principal = strings.Clone(hp.pathString(&pathUpstreamLocalSAN))
		}
		// Istio reports the client side's policy as unknown.
		h.m.labels[lConnectionSecurityPolicy] = "unknown"
	}
	if h.peer.namespace == "" {
		h.peer.namespace = spiffeNamespace(h.peer.principal)
	}
}

func (h *httpContext) OnHttpStreamDone() {
	defer h.p.recycle(h) // runs last, after guard
	defer h.guard()
	if h.failed {
		return
	}
	// A local reply from a filter before this one (RBAC 403, JWT 401)
	// skips the request and response header callbacks, and Envoy may
	// create the context only now: read the headers here, where Envoy
	// exposes both, as those callbacks would have. Istio counts these
	// requests.
	if !h.reqSeen {
		list, err := getRequestHeaders(h.p.reqHeaders)
		if err != nil {
			h.fail()
			return
		}
		h.p.reqHeaders = list
		h.readRequest(list)
	}
	if !h.resSeen && !h.readResponse() {
		return
	}
	// Nothing is written to filter state here: Envoy has written its
	// access log already.
	if h.failed || !h.p.s.metrics {
		return
	}
	h.resolvePrincipals()
	hp := h.p.host
	if d, ok := hp.pathUint(&pathRequestDuration); ok {
		h.m.durationMs = d / uint64(time.Millisecond)
	} else if !h.start.IsZero() {
		h.m.durationMs = uint64(time.Since(h.start) / time.Millisecond)
	} else {
		// The host has no request.duration (not Envoy): time requests
		// with the guest clock from now on. Envoy never needs the two
		// clock calls per request.
		h.p.clockDuration = true
	}
	if n, ok := hp.pathUint(&pathRequestSize); ok {
		h.m.requestBytes = n
	} else {
		h.m.requestBytes = h.reqBody
	}
	if n, ok := hp.pathUint(&pathResponseSize); ok {
		h.m.responseBytes = n
	} else {
		h.m.responseBytes = h.resBody
	}
	if !h.statusSeen {
		if c, ok := hp.pathUint(&pathResponseCode); ok {
			h.m.labels[lResponseCode] = strconv.FormatUint(c, 10)
		} else {
			h.m.labels[lResponseCode] = "0"
		}
	}
	flags, _ := hp.pathUint(&pathResponseFlags)
	h.m.labels[lResponseFlags] = formatResponseFlags(flags)
	for i, e := range h.p.s.exprs {
		if e.attr != nil {
			h.m.custom[i] = e.attr.read()
		}
	}
	h.resolveService()
	h.fillWorkloadLabels()
	h.p.series.record(h.p.s, &h.m)
	if h.grpc {
		h.p.messages.record(&h.m.labels, h.m.ownCluster, h.reqFrames.count, h.resFrames.count)
	}
}

// fillWorkloadLabels puts the local and peer workloads on the side each
// stands for this reporter.
func (h *httpContext) fillWorkloadLabels() {
	l := &h.m.labels
	src, dst := h.peer, h.p.local
	l[lReporter] = h.reporter()
	if !h.destination() {
		src, dst = h.p.local, h.peer
	}
	// The peer's canonical revision is "latest" when the peer is not
	// known (istio_stats.cc populatePeerInfo), the own cluster stays as
	// CLUSTER_ID says.
	peerRev := h.peer.canonicalRev
	if peerRev == "" {
		peerRev = "latest"
	}
	l[lSourceWorkload] = src.name
	l[lSourceCanonicalService] = src.canonicalService
	l[lSourceCanonicalRevision] = src.canonicalRev
	l[lSourceWorkloadNamespace] = src.namespace
	l[lSourcePrincipal] = src.principal
	l[lSourceApp] = src.app
	l[lSourceVersion] = src.version
	l[lSourceCluster] = src.cluster
	l[lDestinationWorkload] = dst.name
	l[lDestinationWorkloadNamespace] = dst.namespace
	l[lDestinationPrincipal] = dst.principal
	l[lDestinationApp] = dst.app
	l[lDestinationVersion] = dst.version
	l[lDestinationCanonicalService] = dst.canonicalService
	l[lDestinationCanonicalRevision] = dst.canonicalRev
	l[lDestinationCluster] = dst.cluster
	if h.destination() {
		l[lSourceCanonicalRevision] = peerRev
		h.m.ownCluster = lDestinationCluster
	} else {
		l[lDestinationCanonicalRevision] = peerRev
		h.m.ownCluster = lSourceCluster
	}
	// destination_service_name from a cluster-local host name.ns.svc.
	// <domain>, else the host; a name resolveService set (Istio's service
	// metadata, a passthrough or blackhole cluster) stays.
	// destination_service_namespace is the destination workload's, as
	// Istio takes it: the peer's on the caller's side ("unknown" when no
	// peer answered), the proxy's own on the callee's.
	svc := l[lDestinationService]
	name := svc
	if n, _, ok := istiocluster.ServiceParts(svc); ok {
		name = n
	}
	if l[lDestinationServiceName] == "" {
		l[lDestinationServiceName] = name
	}
	l[lDestinationServiceNamespace] = dst.namespace
}
