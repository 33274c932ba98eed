package envoystandin

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alsdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ProxyConfig configures the HTTP side of the stand-in: one listener, one
// upstream, the filter in between, and the access log.
type ProxyConfig struct {
	Listen   string // host:port; 127.0.0.1:0 picks a port
	Upstream string // base URL requests are forwarded to, e.g. http://127.0.0.1:8080
	Host     *Host  // the filter
	// Inbound sets xds.listener_direction (or listener_direction, as the
	// Host's AttributeNames say): true plays a sidecar's inbound listener
	// (reporter=destination), false its outbound one.
	Inbound bool
	// UpstreamCluster is the upstream cluster's name: the filter reads it
	// as xds.cluster_name, the access log names it as the upstream.
	// Istio names outbound clusters outbound|PORT|SUBSET|HOST, inbound
	// ones inbound|PORT||; PassthroughCluster, BlackHoleCluster.
	UpstreamCluster string
	// ClusterServices is the upstream cluster's Istio metadata
	// filter_metadata.istio.services (Istio's control plane writes the
	// cluster's Service there; every Service on the port for an inbound
	// cluster).
	ClusterServices []ClusterService
	// RouteName is xds.route_name (Istio's catch-all routes are
	// allow_any, to PassthroughCluster, and block_all).
	RouteName string
	// DirectResponse, when set, answers every request with this status
	// without an upstream or a cluster, as a route's direct_response
	// does (Istio's block_all answers 502).
	DirectResponse int
	// ALS receives an entry per request when set, carrying the filter
	// state objects listed in FilterStateObjectsToLog and the request
	// headers in AdditionalRequestHeadersToLog (after the filter ran).
	// IstioPeerMetadata plays Istio's peer_metadata filter: on an inbound
	// listener, ahead of the Wasm filter, the x-envoy-peer-metadata(-id)
	// request headers are consumed and the peer becomes the filter state
	// downstream_peer, as the filter reads it (see FilterStatePeer); on
	// an outbound one the upstream's response header becomes
	// upstream_peer after the filter's response callback. Listed in
	// FilterStateObjectsToLog, both are logged as Any(Struct), as Envoy
	// logs Istio's peer objects (see PeerStruct).
	IstioPeerMetadata             bool
	ALS                           *ALSClient
	FilterStateObjectsToLog       []string
	AdditionalRequestHeadersToLog []string
}

// Proxy serves HTTP through the filter.
type Proxy struct {
	cfg    ProxyConfig
	ln     net.Listener
	srv    *http.Server
	client *http.Client
	// Errors counts filter callbacks that failed (a trap in the module);
	// like Envoy's fail-open, the request still goes through.
	errors  atomic.Int64
	started time.Time
}

// NewProxy listens and starts serving.
func NewProxy(cfg ProxyConfig) (*Proxy, error) {
	if cfg.Host == nil || cfg.Upstream == "" {
		return nil, errors.New("envoystandin: Host and Upstream are required")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg: cfg, ln: ln,
		client: &http.Client{
			Timeout:       30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		started: time.Now(),
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Addr is the listening address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// FilterErrors is the number of filter callbacks that failed.
func (p *Proxy) FilterErrors() int64 { return p.errors.Load() }

// Close stops serving.
func (p *Proxy) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.srv.Shutdown(ctx)
}

func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// check records a failed callback; the request continues (fail open).
func (p *Proxy) check(_ uint64, err error) {
	if err != nil {
		p.errors.Add(1)
	}
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s, err := p.cfg.Host.NewStream()
	if err != nil {
		p.errors.Add(1)
		http.Error(w, "filter context: "+err.Error(), http.StatusInternalServerError)
		return
	}
	reqID := r.Header.Get("X-Request-Id")
	if reqID == "" {
		reqID = newRequestID()
	}
	s.RequestHeaders = Headers{{":authority", r.Host}, {":path", r.URL.RequestURI()}, {":method", r.Method}, {":scheme", "http"}}
	for name, values := range r.Header {
		for _, v := range values {
			s.RequestHeaders = append(s.RequestHeaders, [2]string{strings.ToLower(name), v})
		}
	}
	if r.Header.Get("X-Request-Id") == "" {
		s.RequestHeaders = append(s.RequestHeaders, [2]string{"x-request-id", reqID})
	}
	direction := uint64(2)
	if p.cfg.Inbound {
		direction = 1
	}
	s.Properties[Path("xds", "listener_direction")] = u64(direction)
	// request.path, .url_path, .host, .method, .scheme, .id, ... are
	// served from s.RequestHeaders while Envoy would (Host.property).
	s.Properties[Path("request", "protocol")] = []byte(r.Proto)
	s.Properties[Path("connection", "mtls")] = []byte{0}
	s.Properties[Path("source", "address")] = []byte(r.RemoteAddr)
	if p.cfg.RouteName != "" {
		s.Properties[Path("xds", "route_name")] = []byte(p.cfg.RouteName)
	}
	if p.cfg.UpstreamCluster != "" && p.cfg.DirectResponse == 0 {
		s.Properties[Path("xds", "cluster_name")] = []byte(p.cfg.UpstreamCluster)
		for i, svc := range p.cfg.ClusterServices {
			svc.setProperties(s.Properties, i)
		}
	}

	if p.cfg.IstioPeerMetadata && p.cfg.Inbound {
		if v := s.RequestHeaders.Get("x-envoy-peer-metadata"); v != "" {
			if fs, ok := FilterStatePeer(v); ok {
				s.Properties[Path("filter_state", "downstream_peer")] = fs
			}
			if st, ok := PeerStruct(v); ok {
				s.IstioPeers["downstream_peer"] = st
			}
		}
		s.RequestHeaders = removeAll(removeAll(s.RequestHeaders, "x-envoy-peer-metadata"), "x-envoy-peer-metadata-id")
	}

	body, _ := io.ReadAll(r.Body)
	p.check(s.OnRequestHeaders(len(body) == 0))
	if len(body) > 0 {
		p.check(s.OnRequestBody(len(body), true))
	}

	var flags uint64
	var status int
	var respBody []byte
	var upstreamAddr string
	if p.cfg.DirectResponse != 0 {
		status = p.cfg.DirectResponse
		s.ResponseHeaders = Headers{{":status", strconv.Itoa(status)}}
	} else {
		status, respBody, upstreamAddr = p.forward(r.Context(), s, body, &flags)
	}
	p.check(s.OnResponseHeaders(len(respBody) == 0))
	if p.cfg.IstioPeerMetadata && !p.cfg.Inbound {
		if st, ok := PeerStruct(s.ResponseHeaders.Get("x-envoy-peer-metadata")); ok {
			s.IstioPeers["upstream_peer"] = st
		}
	}
	for _, kv := range s.ResponseHeaders {
		if !strings.HasPrefix(kv[0], ":") {
			w.Header().Add(kv[0], kv[1])
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write(respBody)
	if len(respBody) > 0 {
		p.check(s.OnResponseBody(len(respBody), true))
	}

	dur := time.Since(start)
	reqHeaderBytes, respHeaderBytes := headerBytes(s.RequestHeaders), headerBytes(s.ResponseHeaders)
	s.Properties[Path("request", "duration")] = u64(uint64(dur))
	s.Properties[Path("request", "size")] = u64(uint64(len(body)))
	s.Properties[Path("request", "total_size")] = u64(uint64(len(body)) + reqHeaderBytes)
	s.Properties[Path("response", "code")] = u64(uint64(status))
	s.Properties[Path("response", "size")] = u64(uint64(len(respBody)))
	s.Properties[Path("response", "total_size")] = u64(uint64(len(respBody)) + respHeaderBytes)
	s.Properties[Path("response", "flags")] = u64(flags)
	// Envoy's configured access loggers (the gRPC ALS here) run before
	// the filter's proxy_on_log: the connection manager adds them to the
	// stream's access log handlers when the stream is created, before the
	// filter chain adds the Wasm filter's, and runs the handlers in order
	// (conn_manager_impl.cc ActiveStream, FilterManager::log). What the
	// filter writes in proxy_on_log is not in the entry.
	if p.cfg.ALS != nil {
		p.cfg.ALS.Log(p.entry(r, s, start, dur, status, flags, uint64(len(body)), uint64(len(respBody)), reqHeaderBytes, respHeaderBytes, upstreamAddr))
	}
	if err := s.Done(); err != nil {
		p.errors.Add(1)
	}
}

// responseFlagUF is Envoy's UpstreamConnectionFailure bit.
const responseFlagUF = 0x20

// forward sends the request as the filter left it to the upstream and
// fills s.ResponseHeaders. An unreachable upstream is a local 503 with
// response flag UF, as Envoy replies.
func (p *Proxy) forward(ctx context.Context, s *Stream, body []byte, flags *uint64) (status int, respBody []byte, upstreamAddr string) {
	path := s.RequestHeaders.Get(":path")
	req, err := http.NewRequestWithContext(ctx, s.RequestHeaders.Get(":method"), strings.TrimRight(p.cfg.Upstream, "/")+path, bytes.NewReader(body))
	if err == nil {
		for _, kv := range s.RequestHeaders {
			if strings.HasPrefix(kv[0], ":") || kv[0] == "host" || kv[0] == "content-length" {
				continue
			}
			req.Header.Add(kv[0], kv[1])
		}
		req.Host = s.RequestHeaders.Get(":authority")
		var resp *http.Response
		resp, err = p.client.Do(req)
		if err == nil {
			defer resp.Body.Close()
			respBody, _ = io.ReadAll(resp.Body)
			s.ResponseHeaders = Headers{{":status", strconv.Itoa(resp.StatusCode)}}
			for name, values := range resp.Header {
				for _, v := range values {
					s.ResponseHeaders = append(s.ResponseHeaders, [2]string{strings.ToLower(name), v})
				}
			}
			return resp.StatusCode, respBody, req.URL.Host
		}
	}
	*flags |= responseFlagUF
	respBody = []byte("upstream connect error or disconnect/reset before headers")
	s.ResponseHeaders = Headers{{":status", "503"}, {"content-type", "text/plain"}}
	return http.StatusServiceUnavailable, respBody, ""
}

// ClusterService is one entry of an Istio cluster's metadata
// filter_metadata.istio.services (istio/istio pilot
// buildServiceMetadata).
type ClusterService struct {
	Host      string // the FQDN: reviews.default.svc.cluster.local
	Name      string // the Service's short name
	Namespace string
}

// setProperties serves entry i at
// xds.cluster_metadata.filter_metadata.istio.services.<i>: Envoy hands a
// Wasm filter the Struct as a CEL map in Proxy-Wasm pairs, and each of
// its strings one level further down.
func (c ClusterService) setProperties(props map[string][]byte, i int) {
	base := []string{"xds", "cluster_metadata", "filter_metadata", "istio", "services", strconv.Itoa(i)}
	props[Path(base...)] = serializeMap(Headers{{"host", c.Host}, {"name", c.Name}, {"namespace", c.Namespace}})
	for _, kv := range [][2]string{{"host", c.Host}, {"name", c.Name}, {"namespace", c.Namespace}} {
		props[Path(append(base, kv[0])...)] = []byte(kv[1])
	}
}

func headerBytes(hs Headers) uint64 {
	var n uint64
	for _, kv := range hs {
		n += uint64(len(kv[0]) + len(kv[1]))
	}
	return n
}

// entry builds the HTTPAccessLogEntry Envoy's gRPC access logger would.
func (p *Proxy) entry(r *http.Request, s *Stream, start time.Time, dur time.Duration, status int, flags, reqBody, respBody, reqHdr, respHdr uint64, upstreamAddr string) *alsdatav3.HTTPAccessLogEntry {
	common := &alsdatav3.AccessLogCommon{
		StartTime:                  timestamppb.New(start),
		TimeToLastDownstreamTxByte: durationpb.New(dur),
		DownstreamRemoteAddress:    socketAddress(r.RemoteAddr),
		DownstreamLocalAddress:     socketAddress(p.Addr()),
	}
	if p.cfg.DirectResponse == 0 {
		common.UpstreamCluster = p.cfg.UpstreamCluster
	}
	if upstreamAddr != "" {
		common.UpstreamRemoteAddress = socketAddress(upstreamAddr)
	}
	if flags&responseFlagUF != 0 {
		common.ResponseFlags = &alsdatav3.ResponseFlags{UpstreamConnectionFailure: true}
	}
	for _, key := range p.cfg.FilterStateObjectsToLog {
		if st, ok := s.IstioPeers[key]; ok {
			if a, err := anypb.New(st); err == nil {
				if common.FilterStateObjects == nil {
					common.FilterStateObjects = map[string]*anypb.Any{}
				}
				common.FilterStateObjects[key] = a
			}
			continue
		}
		v, ok := s.FilterState[key]
		if !ok {
			continue
		}
		// Envoy serialises Wasm filter state (CelState of type bytes) as
		// google.protobuf.BytesValue.
		a, err := anypb.New(wrapperspb.Bytes(v))
		if err != nil {
			continue
		}
		if common.FilterStateObjects == nil {
			common.FilterStateObjects = map[string]*anypb.Any{}
		}
		common.FilterStateObjects[key] = a
	}
	req := &alsdatav3.HTTPRequestProperties{
		RequestMethod:       corev3.RequestMethod(corev3.RequestMethod_value[r.Method]),
		Scheme:              "http",
		Authority:           s.RequestHeaders.Get(":authority"),
		Path:                s.RequestHeaders.Get(":path"),
		UserAgent:           s.RequestHeaders.Get("user-agent"),
		RequestId:           s.RequestHeaders.Get("x-request-id"),
		RequestHeadersBytes: reqHdr,
		RequestBodyBytes:    reqBody,
	}
	// Every value of a repeated header, joined by ",", as Envoy logs it
	// (HeaderUtility::getAllOfHeaderAsString in http_grpc_access_log_impl.cc).
	for _, name := range p.cfg.AdditionalRequestHeadersToLog {
		name = strings.ToLower(name)
		var vals []string
		for _, kv := range s.RequestHeaders {
			if kv[0] == name {
				vals = append(vals, kv[1])
			}
		}
		if len(vals) > 0 {
			if req.RequestHeaders == nil {
				req.RequestHeaders = map[string]string{}
			}
			req.RequestHeaders[name] = strings.Join(vals, ",")
		}
	}
	return &alsdatav3.HTTPAccessLogEntry{
		CommonProperties: common,
		ProtocolVersion:  alsdatav3.HTTPAccessLogEntry_HTTP11,
		Request:          req,
		Response: &alsdatav3.HTTPResponseProperties{
			ResponseCode:         wrapperspb.UInt32(uint32(status)),
			ResponseHeadersBytes: respHdr,
			ResponseBodyBytes:    respBody,
		},
	}
}

func socketAddress(hostport string) *corev3.Address {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil
	}
	n, _ := strconv.Atoi(port)
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(n)},
	}}}
}

var requestSeq atomic.Uint64

// newRequestID stands in for Envoy's x-request-id (a UUID there).
func newRequestID() string {
	n := requestSeq.Add(1)
	return "standin-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatUint(n, 10)
}
