package als

import (
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/meshtrail/meshtrail/internal/config"
	"github.com/meshtrail/meshtrail/internal/tracecontext"
)

// Config is the receiver's configuration: YAML (meshtrail als --config) or
// flags. Zero values take the defaults from DefaultConfig.
type Config struct {
	// Listen is the gRPC address Envoys stream to.
	Listen string `json:"listen"`
	// OTLPListen, when set, also receives OTLP logs (gRPC LogsService and
	// OTLP/HTTP POST /v1/logs on one port) from meshtrail tail --forward
	// or any OpenTelemetry SDK or Collector; see internal/otlplogs.
	OTLPListen string `json:"otlp_listen,omitempty"`
	// MetricsListen serves /metrics (Prometheus and OpenMetrics with
	// exemplars), /healthz and /readyz. Empty disables it.
	MetricsListen string       `json:"metrics_listen"`
	TLS           TLSConfig    `json:"tls"`
	GRPC          GRPCConfig   `json:"grpc"`
	Headers       HeaderConfig `json:"headers"`
	Trace         TraceConfig  `json:"trace"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log_level"`
	// Pprof serves Go's /debug/pprof on the metrics listener (off by
	// default: profiles reveal internals).
	Pprof bool `json:"pprof"`
	// ShutdownGrace is what a SIGTERM gives the receiver: half to end its
	// streams (each after the message in hand), the rest to flush every
	// sink. Keep it under the pod's terminationGracePeriodSeconds.
	ShutdownGrace config.Duration `json:"shutdown_grace"`
}

// TLSConfig turns on TLS for the gRPC listener; with ClientCAFile, mutual
// TLS: Envoys must present a certificate signed by that CA.
type TLSConfig struct {
	CertFile     string `json:"cert_file"`
	KeyFile      string `json:"key_file"`
	ClientCAFile string `json:"client_ca_file"`
}

// Enabled reports whether TLS is configured.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// GRPCConfig are the server's limits and keepalive. MaxConnectionAge makes
// every Envoy reconnect now and then, so a fleet rebalances across
// receiver replicas after a scale-up.
type GRPCConfig struct {
	MaxStreams           int    `json:"max_streams"`
	MaxRecvMessageBytes  int    `json:"max_recv_message_bytes"`
	MaxConcurrentStreams uint32 `json:"max_concurrent_streams_per_connection"`
	// WindowBytes is the HTTP/2 flow-control window per stream and per
	// connection. It bounds what one Envoy can have in flight before it
	// must wait for the receiver: memory stays at most about
	// connections x window however fast Envoys send. Fixing it also turns
	// off gRPC's window growth (BDP estimation), which would otherwise let
	// a fast sender buffer megabytes per connection.
	WindowBytes int32 `json:"window_bytes"`
	// MaxConnectionAge sends an Envoy's connection a GOAWAY (gRPC adds
	// +-10% jitter); once the connection is 1.1 x this old, each stream on
	// it ends cleanly after its next message (and those right behind it),
	// and Envoy reopens it on a new connection, possibly to another
	// replica. MaxConnectionAgeGrace is how long after the GOAWAY a
	// connection is cut regardless: keep it above a fifth of
	// MaxConnectionAge, or streams are cut (and what is in flight on them
	// lost) before they can end cleanly. 0 means no limit.
	MaxConnectionAge      config.Duration `json:"max_connection_age"`
	MaxConnectionAgeGrace config.Duration `json:"max_connection_age_grace"`
	KeepaliveTime         config.Duration `json:"keepalive_time"`
	KeepaliveTimeout      config.Duration `json:"keepalive_timeout"`
	KeepaliveMinTime      config.Duration `json:"keepalive_min_time"`
}

// HeaderConfig decides which logged headers reach records.
type HeaderConfig struct {
	// AllowSensitive keeps credentials-bearing headers (Authorization,
	// Cookie, Set-Cookie, Proxy-Authorization, X-Api-Key, ...) that are
	// otherwise always removed. Empty by default: ask for them by name.
	AllowSensitive []string `json:"allow_sensitive"`
	// Redact removes more headers by name.
	Redact []string `json:"redact"`
	// MaxValueBytes cuts longer values (a 1 MiB header stays out of the
	// records). 0 means the default; -1 keeps values whole.
	MaxValueBytes int `json:"max_value_bytes"`
}

// TraceConfig decides which logged trace header gives a record its trace
// id when a request carries several that disagree. The Wasm filter's filter
// state, when present, always wins: it is the context the filter sent on.
type TraceConfig struct {
	// HeaderOrder is the precedence of the formats: w3c (traceparent), b3
	// (the single b3 header), b3multi (x-b3-*). The default w3c, b3,
	// b3multi suits Istio's OpenTelemetry tracing; a mesh whose proxies
	// trace with Zipkin (B3) wants [b3, b3multi, w3c], so that records
	// carry the trace id Zipkin or Jaeger shows.
	HeaderOrder []string `json:"header_order"`
}

// traceOrder is HeaderOrder as formats (nil: the default).
func (t TraceConfig) traceOrder() []tracecontext.Format {
	var order []tracecontext.Format
	for _, f := range t.HeaderOrder {
		order = append(order, tracecontext.Format(f))
	}
	return order
}

// DefaultConfig returns the embedded defaults: everything on loopback.
func DefaultConfig() Config {
	return Config{
		Listen:        "127.0.0.1:18000",
		MetricsListen: "127.0.0.1:18090",
		GRPC: GRPCConfig{
			MaxStreams:            20000,
			MaxRecvMessageBytes:   4 << 20,
			MaxConcurrentStreams:  100,
			WindowBytes:           256 << 10,
			MaxConnectionAge:      config.Duration(30 * time.Minute),
			MaxConnectionAgeGrace: config.Duration(10 * time.Minute),
			KeepaliveTime:         config.Duration(2 * time.Minute),
			KeepaliveTimeout:      config.Duration(20 * time.Second),
			KeepaliveMinTime:      config.Duration(10 * time.Second),
		},
		Headers:       HeaderConfig{MaxValueBytes: 8 << 10},
		Trace:         TraceConfig{HeaderOrder: []string{"w3c", "b3", "b3multi"}},
		LogLevel:      "info",
		ShutdownGrace: config.Duration(20 * time.Second),
	}
}

// Validate checks every field and names the first wrong one.
func (c *Config) Validate() error {
	if err := validAddr("listen", c.Listen, true); err != nil {
		return err
	}
	if err := validAddr("metrics_listen", c.MetricsListen, false); err != nil {
		return err
	}
	if err := validAddr("otlp_listen", c.OTLPListen, false); err != nil {
		return err
	}
	if c.ShutdownGrace <= 0 {
		return config.Errorf("shutdown_grace", "must be > 0 (the time to end streams and flush the sinks), got %s", c.ShutdownGrace.D())
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return config.Errorf("tls", "cert_file and key_file go together: set both or neither")
	}
	if c.TLS.ClientCAFile != "" && !c.TLS.Enabled() {
		return config.Errorf("tls.client_ca_file", "mutual TLS needs tls.cert_file and tls.key_file too")
	}
	g := c.GRPC
	if g.MaxStreams < 0 {
		return config.Errorf("grpc.max_streams", "must be >= 0 (0 = unbounded), got %d", g.MaxStreams)
	}
	if g.MaxRecvMessageBytes < 1024 {
		return config.Errorf("grpc.max_recv_message_bytes", "must be >= 1024, got %d (Envoy flushes up to 16 KiB by default)", g.MaxRecvMessageBytes)
	}
	if g.WindowBytes < 64<<10 {
		return config.Errorf("grpc.window_bytes", "must be >= 65536 (HTTP/2's minimum useful window), got %d", g.WindowBytes)
	}
	for name, d := range map[string]config.Duration{
		"grpc.max_connection_age": g.MaxConnectionAge, "grpc.max_connection_age_grace": g.MaxConnectionAgeGrace,
		"grpc.keepalive_time": g.KeepaliveTime, "grpc.keepalive_timeout": g.KeepaliveTimeout, "grpc.keepalive_min_time": g.KeepaliveMinTime,
	} {
		if d < 0 {
			return config.Errorf(name, "must not be negative, got %s", d.D())
		}
	}
	if c.Headers.MaxValueBytes < -1 {
		return config.Errorf("headers.max_value_bytes", "must be -1 (no limit), 0 (default) or positive, got %d", c.Headers.MaxValueBytes)
	}
	seen := map[string]bool{}
	for i, f := range c.Trace.HeaderOrder {
		field := "trace.header_order[" + strconv.Itoa(i) + "]"
		switch tracecontext.Format(f) {
		case tracecontext.FormatW3C, tracecontext.FormatB3, tracecontext.FormatB3Multi:
		default:
			return config.Errorf(field, "%q is not a trace format: use w3c, b3 or b3multi", f)
		}
		if seen[f] {
			return config.Errorf(field, "%q is listed twice", f)
		}
		seen[f] = true
	}
	switch strings.ToLower(c.LogLevel) {
	case "", "debug", "info", "warn", "error":
	default:
		return config.Errorf("log_level", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	return nil
}

func validAddr(field, addr string, required bool) error {
	if addr == "" {
		if required {
			return config.Errorf(field, "is required (HOST:PORT)")
		}
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return config.Errorf(field, "%q is not HOST:PORT: %v", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return config.Errorf(field, "%q: the port must be a number from 0 to 65535", addr)
	}
	return nil
}
