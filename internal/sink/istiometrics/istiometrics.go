// Package istiometrics derives Istio's standard request metrics (requests,
// duration, request and response size, TCP bytes and connections) from
// access log records, with Istio's metric names, label set and bucket
// boundaries, and exemplars carrying the trace id. With the prefix
// "istio_" Kiali can draw its graph from them.
package istiometrics

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/filterstate"
	"github.com/meshtrail/meshtrail/internal/record"
)

// Istio's bucket boundaries. Istio's standard metrics are Envoy histograms
// (since Istio 1.5), so durations and sizes alike get Envoy's default
// buckets (istio_request_bytes_bucket runs le="0.5" ... le="3600000"),
// unless a pod's sidecar.istio.io/statsHistogramBuckets says otherwise.
// The same boundaries keep histogram_quantile right over series from
// Istio's own telemetry and from these.
var (
	DurationBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}
	BytesBuckets    = append([]float64(nil), DurationBuckets...)
)

// peerLabels are the labels every Istio metric carries, in Istio's order.
var peerLabels = []string{
	"reporter",
	"source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
	"source_cluster", "source_canonical_service", "source_canonical_revision",
	"destination_workload", "destination_workload_namespace", "destination_principal", "destination_app",
	"destination_version", "destination_service", "destination_service_name", "destination_service_namespace",
	"destination_canonical_service", "destination_canonical_revision", "destination_cluster",
	"request_protocol",
}

const nPeer = 21

// HTTPLabels and TCPLabels are the label names of the HTTP and TCP metrics.
// MessageLabels, of the gRPC message counters, are the peer labels without
// request_protocol: Istio adds those counters before it adds the request's
// own labels (istio_stats.cc, reportHelper runs first in log()).
var (
	MessageLabels = append([]string{}, peerLabels[:nPeer-1]...)
	HTTPLabels    = append(append([]string{}, peerLabels...), "response_code", "grpc_response_status", "response_flags", "connection_security_policy")
	TCPLabels     = append(append([]string{}, peerLabels...), "response_flags", "connection_security_policy")
)

type httpKey [nPeer + 4]string
type msgKey [nPeer - 1]string

type msgSeries struct {
	requests, responses prometheus.Counter
}
type tcpKey [nPeer + 2]string

type httpSeries struct {
	requests            prometheus.Counter
	duration, req, resp prometheus.Observer
	lastExemplar        atomic.Int64 // unix nanos
}

type tcpSeries struct {
	sent, received, opened, closed prometheus.Counter
}

// Metrics is a sink (fanout.Sink) that updates the RED metrics. Each label
// combination is looked up once and cached, so a record costs one map
// lookup instead of hashing 25 label values per metric.
type Metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	reqBytes  *prometheus.HistogramVec
	respBytes *prometheus.HistogramVec
	tcpSent   *prometheus.CounterVec
	tcpRecv   *prometheus.CounterVec
	tcpOpen   *prometheus.CounterVec
	tcpClose  *prometheus.CounterVec
	reqMsgs   *prometheus.CounterVec
	respMsgs  *prometheus.CounterVec
	dropped   prometheus.Counter

	mu        sync.RWMutex
	http      map[httpKey]*httpSeries
	tcp       map[tcpKey]*tcpSeries
	msgs      map[msgKey]*msgSeries
	maxSeries int
	// conns follows open TCP connections logged periodically (see
	// observeTCP).
	connMu sync.Mutex
	conns  map[string]tcpConn
	// calls follows the message counts of long gRPC calls logged
	// periodically (see observeMessages), under connMu.
	calls map[string]grpcCall
	// ExemplarEvery bounds how often a series gets a new exemplar; failed
	// requests always get one. Prometheus keeps one exemplar per bucket, so
	// more would only cost CPU.
	exemplarEvery time.Duration
}

// Options configure Metrics.
type Options struct {
	Prefix    string // metric name prefix, "meshtrail_" by default
	MaxSeries int    // label combinations kept; 0 = 50000
}

// New registers the metrics with reg.
func New(opts Options, reg prometheus.Registerer) (*Metrics, error) {
	p := opts.Prefix
	if p == "" {
		p = "meshtrail_"
	}
	if opts.MaxSeries == 0 {
		opts.MaxSeries = 50000
	}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "requests_total",
			Help: "Requests, from Envoy access logs (Istio's requests_total)."}, HTTPLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: p + "request_duration_milliseconds",
			Help: "Request duration in milliseconds, from Envoy access logs.", Buckets: DurationBuckets}, HTTPLabels),
		reqBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: p + "request_bytes",
			Help: "Request size in bytes on the wire (headers and body from Envoys that log no wire bytes).", Buckets: BytesBuckets}, HTTPLabels),
		respBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: p + "response_bytes",
			Help: "Response size in bytes on the wire (headers and body from Envoys that log no wire bytes).", Buckets: BytesBuckets}, HTTPLabels),
		tcpSent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "tcp_sent_bytes_total",
			Help: "Bytes sent to the downstream over TCP connections."}, TCPLabels),
		tcpRecv: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "tcp_received_bytes_total",
			Help: "Bytes received from the downstream over TCP connections."}, TCPLabels),
		tcpOpen: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "tcp_connections_opened_total",
			Help: "TCP connections opened."}, TCPLabels),
		tcpClose: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "tcp_connections_closed_total",
			Help: "TCP connections closed."}, TCPLabels),
		reqMsgs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "request_messages_total",
			Help: "gRPC messages sent by the client, from Envoy's grpc_stats filter state in the access logs."}, MessageLabels),
		respMsgs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "response_messages_total",
			Help: "gRPC messages sent by the server, from Envoy's grpc_stats filter state in the access logs."}, MessageLabels),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshtrail_red_series_dropped_total",
			Help: "Records not counted because their label combination would pass metrics.max_series."}),
		http:          map[httpKey]*httpSeries{},
		tcp:           map[tcpKey]*tcpSeries{},
		msgs:          map[msgKey]*msgSeries{},
		conns:         map[string]tcpConn{},
		calls:         map[string]grpcCall{},
		maxSeries:     opts.MaxSeries,
		exemplarEvery: time.Second,
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.reqBytes, m.respBytes, m.tcpSent, m.tcpRecv, m.tcpOpen, m.tcpClose, m.reqMsgs, m.respMsgs, m.dropped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Name implements fanout.Sink.
func (m *Metrics) Name() string { return "istio-metrics" }

// ConsumeRecords counts each record. Log records are ignored.
func (m *Metrics) ConsumeRecords(_ context.Context, recs []*record.Record) error {
	var recent recentSeries
	for _, r := range recs {
		switch r.Kind {
		case record.KindHTTP:
			m.observeMessages(r)
			m.observeHTTP(r, &recent)
		case record.KindTCP:
			m.observeTCP(r)
		}
	}
	return nil
}

// recentSeries remembers the last few series of one batch. A batch is one
// Envoy's message, whose entries fall into a handful of series; a key
// found here costs a comparison (its strings are the decoder's interned
// ones, equal by pointer) instead of hashing 29 labels and taking the
// shared lock every stream contends on.
type recentSeries struct {
	keys   [4]httpKey
	series [4]*httpSeries
	next   int
}

func (rs *recentSeries) find(k *httpKey) *httpSeries {
	for i, s := range rs.series {
		if s != nil && rs.keys[i] == *k {
			return s
		}
	}
	return nil
}

func (rs *recentSeries) add(k *httpKey, s *httpSeries) {
	rs.keys[rs.next], rs.series[rs.next] = *k, s
	rs.next = (rs.next + 1) % len(rs.series)
}

func (m *Metrics) observeHTTP(r *record.Record, recent *recentSeries) {
	if r.Intermediate {
		// Envoy's periodic and start-of-request entries (flush intervals,
		// flush_access_log_on_new_request) are not requests: counting
		// them would inflate requests_total with response_code 0.
		return
	}
	var k httpKey
	fillPeer((*[nPeer]string)(k[:nPeer]), r)
	k[nPeer] = responseCode(r.HTTP.ResponseCode)
	k[nPeer+1] = grpcResponseStatus(r, k[nPeer-1] == "grpc")
	k[nPeer+2] = orDash(r.ResponseFlags)
	k[nPeer+3] = orUnknown(r.ConnectionSecurityPolicy)
	s := recent.find(&k)
	if s == nil {
		if s = m.httpSeriesFor(&k); s != nil {
			recent.add(&k, s)
		}
	}
	if s == nil {
		m.dropped.Inc()
		return
	}
	ms := float64(r.Timings.Total.Microseconds()) / 1000
	reqBytes, respBytes := messageBytes(r)
	if tid := r.Trace.TraceID; tid != "" && m.wantExemplar(s, r) {
		ex := prometheus.Labels{"trace_id": tid}
		s.requests.(prometheus.ExemplarAdder).AddWithExemplar(1, ex)
		s.duration.(prometheus.ExemplarObserver).ObserveWithExemplar(ms, ex)
	} else {
		s.requests.Inc()
		s.duration.Observe(ms)
	}
	s.req.Observe(reqBytes)
	s.resp.Observe(respBytes)
}

func (m *Metrics) wantExemplar(s *httpSeries, r *record.Record) bool {
	now := r.ReceivedAt.UnixNano()
	if now == 0 {
		now = time.Now().UnixNano()
	}
	last := s.lastExemplar.Load()
	if r.Failed() || now-last >= int64(m.exemplarEvery) {
		return s.lastExemplar.CompareAndSwap(last, now) || r.Failed()
	}
	return false
}

func (m *Metrics) httpSeriesFor(k *httpKey) *httpSeries {
	m.mu.RLock()
	s := m.http[*k]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s = m.http[*k]; s != nil {
		return s
	}
	if m.seriesLocked() >= m.maxSeries {
		return nil
	}
	lv := k[:]
	s = &httpSeries{
		requests: m.requests.WithLabelValues(lv...),
		duration: m.duration.WithLabelValues(lv...),
		req:      m.reqBytes.WithLabelValues(lv...),
		resp:     m.respBytes.WithLabelValues(lv...),
	}
	m.http[*k] = s
	return s
}

// observeTCP counts a TCP entry. Envoy logs a connection when it closes,
// and, with access_log_flush_interval or flush-on-connect, also while it is
// open: those intermediate entries carry running byte totals. As Istio
// does, a connection is counted opened at its first entry and closed at its
// last, and its bytes as they are reported, so a database connection open
// for hours shows up while it is open. Connections are told apart by
// stream_id; entries without one are counted at close.
func (m *Metrics) observeTCP(r *record.Record) {
	prev, count := m.connProgress(r)
	if !count {
		return
	}
	s := m.tcpSeriesFor(r)
	if s == nil {
		m.dropped.Inc()
		return
	}
	s.sent.Add(float64(r.SentBytes - min(prev.sent, r.SentBytes)))
	s.received.Add(float64(r.ReceivedBytes - min(prev.received, r.ReceivedBytes)))
	if !prev.known {
		s.opened.Inc()
	}
	if !r.Intermediate {
		s.closed.Inc()
	}
}

// tcpConn is what earlier entries of one open connection already counted.
type tcpConn struct {
	known          bool
	sent, received uint64
}

// maxTrackedConns bounds the open connections followed through their
// intermediate entries; past it a connection is counted when it closes.
const maxTrackedConns = 100000

// connProgress returns what r's connection already counted and whether r
// is to be counted now.
func (m *Metrics) connProgress(r *record.Record) (prev tcpConn, count bool) {
	if r.StreamID == "" {
		return tcpConn{}, !r.Intermediate
	}
	m.connMu.Lock()
	defer m.connMu.Unlock()
	prev = m.conns[r.StreamID]
	switch {
	case !r.Intermediate:
		delete(m.conns, r.StreamID)
	case prev.known || len(m.conns) < maxTrackedConns:
		m.conns[r.StreamID] = tcpConn{known: true, sent: max(prev.sent, r.SentBytes), received: max(prev.received, r.ReceivedBytes)}
	default:
		return prev, false
	}
	return prev, true
}

func (m *Metrics) tcpSeriesFor(r *record.Record) *tcpSeries {
	var k tcpKey
	fillPeer((*[nPeer]string)(k[:nPeer]), r)
	k[nPeer-1] = "tcp"
	k[nPeer] = orDash(r.ResponseFlags)
	k[nPeer+1] = orUnknown(r.ConnectionSecurityPolicy)
	m.mu.RLock()
	s := m.tcp[k]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s = m.tcp[k]; s != nil {
		return s
	}
	if m.seriesLocked() >= m.maxSeries {
		return nil
	}
	lv := k[:]
	s = &tcpSeries{sent: m.tcpSent.WithLabelValues(lv...), received: m.tcpRecv.WithLabelValues(lv...),
		opened: m.tcpOpen.WithLabelValues(lv...), closed: m.tcpClose.WithLabelValues(lv...)}
	m.tcp[k] = s
	return s
}

// seriesLocked counts the label combinations kept; m.mu must be held.
func (m *Metrics) seriesLocked() int { return len(m.http) + len(m.tcp) + len(m.msgs) }

// grpcCall is what earlier entries of one long gRPC call already counted.
type grpcCall struct {
	requests, responses uint64
}

// observeMessages counts a gRPC call's messages from the grpc_stats
// filter state, as Istio does (istio_stats.cc, reportHelper): the counts
// are running totals, so a call logged periodically adds what is new
// since its last entry (told apart by stream_id; without one it is
// counted at its end).
func (m *Metrics) observeMessages(r *record.Record) {
	v, ok := r.FilterState[filterstate.GRPCStats]
	if !ok {
		return
	}
	reqs, resps, ok := filterstate.ParseGRPCStats(v)
	if !ok || requestProtocol(r) != "grpc" {
		return
	}
	var prev grpcCall
	if r.StreamID == "" {
		if r.Intermediate {
			return
		}
	} else {
		m.connMu.Lock()
		prev = m.calls[r.StreamID]
		switch {
		case !r.Intermediate:
			delete(m.calls, r.StreamID)
		case len(m.calls) < maxTrackedConns || m.callKnown(r.StreamID):
			m.calls[r.StreamID] = grpcCall{max(prev.requests, reqs), max(prev.responses, resps)}
		default:
			m.connMu.Unlock()
			return
		}
		m.connMu.Unlock()
	}
	var k msgKey
	var peer [nPeer]string
	fillPeer(&peer, r)
	copy(k[:], peer[:nPeer-1])
	s := m.msgSeriesFor(&k)
	if s == nil {
		m.dropped.Inc()
		return
	}
	s.requests.Add(float64(reqs - min(prev.requests, reqs)))
	s.responses.Add(float64(resps - min(prev.responses, resps)))
}

// callKnown reports whether a call is followed; m.connMu must be held.
func (m *Metrics) callKnown(id string) bool {
	_, ok := m.calls[id]
	return ok
}

func (m *Metrics) msgSeriesFor(k *msgKey) *msgSeries {
	m.mu.RLock()
	s := m.msgs[*k]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s = m.msgs[*k]; s != nil {
		return s
	}
	if m.seriesLocked() >= m.maxSeries {
		return nil
	}
	s = &msgSeries{requests: m.reqMsgs.WithLabelValues(k[:]...), responses: m.respMsgs.WithLabelValues(k[:]...)}
	m.msgs[*k] = s
	return s
}

// fillPeer writes the 21 peer labels the way Istio's stats plugin does
// (istio/proxy source/extensions/filters/http/istio_stats/istio_stats.cc,
// populatePeerInfo): "unknown" for what is not known of the peer, a
// missing peer's canonical revision "latest", and the reporting proxy's own
// cluster as its node metadata has it (CLUSTER_ID; empty without one,
// which Kiali reads as "not reported" where it drops "unknown" as bad
// telemetry). destination_service_namespace is the destination workload's
// namespace, as Istio takes it: the peer's on the caller's side ("unknown"
// when no peer answered), the proxy's own on the callee's.
func fillPeer(k *[nPeer]string, r *record.Record) {
	src, dst := &r.Source, &r.Destination
	k[0] = orUnknown(r.Reporter)
	k[1] = orUnknown(src.Name)
	k[2] = orUnknown(src.Namespace)
	k[3] = orUnknown(src.Principal)
	k[4] = orUnknown(src.App)
	k[5] = orUnknown(src.Version)
	k[6] = orUnknown(src.Cluster)
	k[7] = orUnknown(src.CanonicalService)
	k[8] = orUnknown(src.CanonicalRevision)
	k[9] = orUnknown(dst.Name)
	k[10] = orUnknown(dst.Namespace)
	k[11] = orUnknown(dst.Principal)
	k[12] = orUnknown(dst.App)
	k[13] = orUnknown(dst.Version)
	k[14] = orUnknown(r.Upstream.Service)
	k[15] = orUnknown(r.Upstream.ServiceName)
	k[16] = orUnknown(r.Upstream.ServiceNamespace)
	k[17] = orUnknown(dst.CanonicalService)
	k[18] = orUnknown(dst.CanonicalRevision)
	k[19] = orUnknown(dst.Cluster)
	k[20] = requestProtocol(r)
	switch r.Reporter {
	case record.ReporterSource:
		k[6] = src.Cluster
		k[16] = orUnknown(dst.Namespace)
		k[18] = orLatest(dst.CanonicalRevision)
	case record.ReporterDestination:
		k[8] = orLatest(src.CanonicalRevision)
		k[16] = orUnknown(dst.Namespace)
		k[19] = dst.Cluster
	case record.ReporterWaypoint:
		k[8] = orLatest(src.CanonicalRevision)
	}
}

func orLatest(s string) string {
	if s == "" {
		return "latest"
	}
	return s
}

func requestProtocol(r *record.Record) string {
	if r.Kind == record.KindTCP {
		return "tcp"
	}
	if r.HTTP.GRPCStatus != "" {
		return "grpc"
	}
	if ct := r.RequestHeaders["content-type"]; len(ct) >= 16 && ct[:16] == "application/grpc" {
		return "grpc"
	}
	return "http"
}

// messageBytes are the request and response sizes Istio records: the
// downstream wire bytes (istio_stats.cc, getDownstreamBytesMeter), which
// Envoy logs since 1.22; before that, header and body sizes.
func messageBytes(r *record.Record) (req, resp float64) {
	if d := &r.Downstream; d.WireBytesReceived > 0 || d.WireBytesSent > 0 {
		return float64(d.WireBytesReceived), float64(d.WireBytesSent)
	}
	h := &r.HTTP
	return float64(h.RequestHeaderBytes + h.RequestBodyBytes), float64(h.ResponseHeaderBytes + h.ResponseBodyBytes)
}

// grpcResponseStatus is Istio's grpc_response_status: empty unless the
// request is gRPC. Then it is the grpc-status Envoy logged (a trailer, or a
// header of a trailers-only reply), else the status the HTTP code implies,
// as Envoy's Grpc::Common::getGrpcStatus infers it.
func grpcResponseStatus(r *record.Record, grpc bool) string {
	switch {
	case !grpc:
		return ""
	case r.HTTP.GRPCStatus != "":
		return r.HTTP.GRPCStatus
	case r.HTTP.ResponseCode == 0 || r.HTTP.ResponseCode == 200:
		// Envoy would say UNKNOWN for a 200 without grpc-status, but
		// here that more likely means the grpc-status trailer was not
		// logged (additional_response_trailers_to_log) than that the
		// server broke gRPC: no value rather than a false error.
		return ""
	}
	// grpc/doc/http-grpc-status-mapping.md, as Envoy's
	// Grpc::Utility::httpToGrpcStatus has it.
	switch r.HTTP.ResponseCode {
	case 400:
		return "13" // INTERNAL
	case 401:
		return "16" // UNAUTHENTICATED
	case 403:
		return "7" // PERMISSION_DENIED
	case 404:
		return "12" // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return "14" // UNAVAILABLE
	}
	return "2" // UNKNOWN
}

var codeStrings = func() (s [600]string) {
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return
}()

func responseCode(c uint32) string {
	if c < uint32(len(codeStrings)) {
		return codeStrings[c]
	}
	return strconv.FormatUint(uint64(c), 10)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
