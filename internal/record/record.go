// Package record holds meshtrail's one data model: a Record is a single
// observation of a request (an Envoy HTTP or TCP access log entry) or an
// application log line, already correlated by trace id. Sources produce
// Records, sinks consume them; nothing else crosses that seam.
package record

import (
	"context"
	"time"
)

// Kind says what a Record observed.
type Kind uint8

const (
	KindHTTP Kind = iota + 1 // an HTTP access log entry
	KindTCP                  // a TCP access log entry
	KindLog                  // an application log line (tail sidecar)
)

func (k Kind) String() string {
	switch k {
	case KindHTTP:
		return "http"
	case KindTCP:
		return "tcp"
	case KindLog:
		return "log"
	}
	return "unknown"
}

// Reporter says which side of a hop reported it, with Istio's values.
const (
	ReporterSource      = "source"      // outbound: the caller's proxy
	ReporterDestination = "destination" // inbound: the callee's proxy
	ReporterWaypoint    = "waypoint"    // an ambient mesh's waypoint proxy, between the two
)

// Workload identifies one side of a hop the way Istio's standard metrics do.
// Empty fields mean unknown (rendered "unknown" in metrics, as Istio does).
type Workload struct {
	Name              string `json:"workload,omitempty"`
	Namespace         string `json:"namespace,omitempty"`
	CanonicalService  string `json:"canonical_service,omitempty"`
	CanonicalRevision string `json:"canonical_revision,omitempty"`
	App               string `json:"app,omitempty"`
	Version           string `json:"version,omitempty"`
	Principal         string `json:"principal,omitempty"` // SPIFFE id, spiffe://td/ns/NS/sa/SA
	Cluster           string `json:"cluster,omitempty"`
	Pod               string `json:"pod,omitempty"`
	IP                string `json:"ip,omitempty"`
}

// Node is the proxy that sent the entry (one Envoy), parsed from the ALS
// stream identifier.
type Node struct {
	ID        string `json:"id,omitempty"`
	Cluster   string `json:"cluster,omitempty"` // Envoy node.cluster (Istio: "<workload>.<namespace>")
	Type      string `json:"type,omitempty"`    // Istio proxy type: sidecar, router
	IP        string `json:"ip,omitempty"`
	Pod       string `json:"pod,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Workload  string `json:"workload,omitempty"`
	Mesh      string `json:"mesh,omitempty"`       // Istio MESH_ID
	Network   string `json:"network,omitempty"`    // Istio NETWORK (multi-network meshes)
	ClusterID string `json:"cluster_id,omitempty"` // Istio CLUSTER_ID (the Kubernetes cluster)
	LogName   string `json:"log_name,omitempty"`
}

// Trace is the trace context a record belongs to. IDs are lowercase hex:
// TraceID always 32 characters (64-bit B3 ids left-padded with zeros as
// Zipkin does), span ids 16. Empty TraceID means no valid context was seen.
type Trace struct {
	TraceID      string `json:"trace_id,omitempty"`
	SpanID       string `json:"span_id,omitempty"`
	ParentSpanID string `json:"parent_span_id,omitempty"`
	Sampled      *bool  `json:"sampled,omitempty"` // nil: no decision was propagated
	Source       string `json:"source,omitempty"`  // where it came from: filter_state, traceparent, b3, x-b3
}

// Upstream is where the proxy sent the request.
type Upstream struct {
	Cluster             string `json:"cluster,omitempty"`   // raw, e.g. outbound|9080||reviews.default.svc.cluster.local
	Direction           string `json:"direction,omitempty"` // inbound, outbound, or "" when not an Istio cluster name
	Port                uint32 `json:"port,omitempty"`
	Subset              string `json:"subset,omitempty"`
	Service             string `json:"service,omitempty"`           // FQDN: reviews.default.svc.cluster.local
	ServiceName         string `json:"service_name,omitempty"`      // reviews
	ServiceNamespace    string `json:"service_namespace,omitempty"` // default
	Host                string `json:"host,omitempty"`              // upstream remote address ip:port
	LocalAddress        string `json:"local_address,omitempty"`
	TransportFailure    string `json:"transport_failure_reason,omitempty"`
	RequestAttemptCount uint32 `json:"request_attempt_count,omitempty"`
	WireBytesSent       uint64 `json:"wire_bytes_sent,omitempty"`
	WireBytesReceived   uint64 `json:"wire_bytes_received,omitempty"`
}

// Downstream is who called the proxy.
type Downstream struct {
	RemoteAddress       string `json:"remote_address,omitempty"`
	LocalAddress        string `json:"local_address,omitempty"`
	DirectRemoteAddress string `json:"direct_remote_address,omitempty"`
	TransportFailure    string `json:"transport_failure_reason,omitempty"`
	WireBytesSent       uint64 `json:"wire_bytes_sent,omitempty"`
	WireBytesReceived   uint64 `json:"wire_bytes_received,omitempty"`
}

// TLS holds the downstream connection's TLS properties.
type TLS struct {
	Version      string `json:"version,omitempty"` // TLSv1.2, TLSv1.3
	CipherSuite  uint32 `json:"cipher_suite,omitempty"`
	SNI          string `json:"sni,omitempty"`
	PeerURISAN   string `json:"peer_uri_san,omitempty"` // first URI SAN of the peer certificate
	PeerSubject  string `json:"peer_subject,omitempty"`
	LocalURISAN  string `json:"local_uri_san,omitempty"`
	LocalSubject string `json:"local_subject,omitempty"`
	SessionID    string `json:"session_id,omitempty"`
}

// Timings are every duration Envoy reports, measured from StartTime.
// Zero means Envoy did not report it.
type Timings struct {
	LastRxByte            time.Duration
	FirstUpstreamTxByte   time.Duration
	LastUpstreamTxByte    time.Duration
	FirstUpstreamRxByte   time.Duration
	LastUpstreamRxByte    time.Duration
	FirstDownstreamTxByte time.Duration
	LastDownstreamTxByte  time.Duration
	Total                 time.Duration // Envoy's duration field (or LastDownstreamTxByte)
}

// HTTP holds the request and response of an HTTP entry.
type HTTP struct {
	Method              string
	Scheme              string
	Authority           string
	Path                string
	OriginalPath        string
	Protocol            string // HTTP/1.0, HTTP/1.1, HTTP/2, HTTP/3
	ResponseCode        uint32
	ResponseCodeDetails string
	GRPCStatus          string // grpc-status from trailers or headers; "" when not gRPC
	RequestID           string
	UserAgent           string
	Referer             string
	ForwardedFor        string
	RequestHeaderBytes  uint64
	RequestBodyBytes    uint64
	ResponseHeaderBytes uint64
	ResponseBodyBytes   uint64
}

// Record is one observation. Producers fill it once and never modify it
// after handing it to a Consumer, so consumers may keep it.
type Record struct {
	Kind Kind
	// ID is a stable identity for sources that can resend the same record
	// (the tail agent: file identity and offset), so a store that keys on
	// it (Elasticsearch's _id) keeps one copy; "" lets the sink derive one.
	ID string
	// Tenant is who the record belongs to for routing, quotas and the
	// per-tenant backends (Loki's X-Scope-OrgID, Elasticsearch's index
	// prefix). The pipeline sets it once, before the fan-out, from the
	// routing.tenant configuration; sources leave it empty.
	Tenant    string
	StartTime time.Time
	// ReceivedAt is when meshtrail accepted the record.
	ReceivedAt time.Time

	Node        Node
	Reporter    string // ReporterSource, ReporterDestination or ReporterWaypoint, "" if unknown
	Source      Workload
	Destination Workload
	Trace       Trace

	HTTP       HTTP // KindHTTP only
	Timings    Timings
	Upstream   Upstream
	Downstream Downstream
	TLS        TLS

	// TCP byte counts (KindTCP), from the connection properties.
	ReceivedBytes uint64
	SentBytes     uint64

	ResponseFlags                string // Envoy %RESPONSE_FLAGS% short codes, comma-separated, "-" when none
	RouteName                    string
	ConnectionTerminationDetails string
	ConnectionSecurityPolicy     string // mutual_tls, none, unknown (as Istio's label)
	StreamID                     string
	Intermediate                 bool // an intermediate (periodic) log entry of a long stream
	SampleRate                   float64

	// RequestHeaders and ResponseHeaders are the headers the proxy was told
	// to log, minus the ones meshtrail redacts (Authorization, Cookie, ...).
	RequestHeaders   map[string]string
	ResponseHeaders  map[string]string
	ResponseTrailers map[string]string
	// Tags are Envoy custom_tags.
	Tags map[string]string
	// FilterState holds decoded filter state objects (e.g. wasm.* values
	// written by the meshtrail filter), as text.
	FilterState map[string]string

	// Log line fields (KindLog).
	Message string
	Level   string
	Stream  string            // stdout, stderr, or the file tailed
	Fields  map[string]string // parsed fields of a structured log line
	// Truncated: the line was longer than the tailer's maximum line size
	// and was cut there.
	Truncated bool
	// InvalidUTF8: invalid UTF-8 in the line was replaced by U+FFFD.
	InvalidUTF8 bool

	// size caches Size: 0 until measured. Read and written atomically,
	// because every sink's queue asks for it concurrently.
	size int64
}

// Failed reports whether the record observed a failed request: a 5xx, a
// gRPC error status, no response at all, or a response flag that means
// Envoy itself failed the request.
func (r *Record) Failed() bool {
	if r.Kind != KindHTTP {
		return r.ResponseFlags != "" && r.ResponseFlags != "-"
	}
	if r.HTTP.ResponseCode == 0 || r.HTTP.ResponseCode >= 500 {
		return true
	}
	if r.HTTP.GRPCStatus != "" && r.HTTP.GRPCStatus != "0" {
		return true
	}
	return false
}

// Consumer takes records from a source. It is the one seam between sources
// (the ALS receiver, the tail sidecar) and the fan-out to sinks, shaped like
// the OpenTelemetry Collector's consumer.Logs.
//
// The caller gives up the records (they are never modified again) but keeps
// the slice: a Consumer that retains records must copy the slice. An error
// means the batch was not accepted; the caller decides whether to retry.
type Consumer interface {
	ConsumeRecords(ctx context.Context, recs []*Record) error
}

// ConsumerFunc adapts a function to a Consumer.
type ConsumerFunc func(ctx context.Context, recs []*Record) error

// ConsumeRecords calls f.
func (f ConsumerFunc) ConsumeRecords(ctx context.Context, recs []*Record) error { return f(ctx, recs) }
