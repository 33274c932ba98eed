package als

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/stats"
)

// NewGRPCServer returns a gRPC server serving r with the limits, keepalive
// and TLS of cfg.
func NewGRPCServer(r *Receiver, cfg GRPCConfig, tlsCfg TLSConfig) (*grpc.Server, error) {
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(wireCodec{bufs: &r.bufs}),
		grpc.StatsHandler(connStart{}),
		// A connection that never finishes its TLS handshake or HTTP/2
		// preface is dropped after this (gRPC's default is 120 s, which a
		// shutdown would otherwise wait out).
		grpc.ConnectionTimeout(10 * time.Second),
		grpc.MaxRecvMsgSize(cfg.MaxRecvMessageBytes),
		grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams),
		grpc.InitialWindowSize(cfg.WindowBytes),
		grpc.InitialConnWindowSize(cfg.WindowBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      cfg.MaxConnectionAge.D(),
			MaxConnectionAgeGrace: cfg.MaxConnectionAgeGrace.D(),
			Time:                  cfg.KeepaliveTime.D(),
			Timeout:               cfg.KeepaliveTimeout.D(),
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             cfg.KeepaliveMinTime.D(),
			PermitWithoutStream: true,
		}),
	}
	if tlsCfg.Enabled() {
		tc, err := serverTLS(tlsCfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(handshakeWatch{credentials.NewTLS(tc), r.handshakeFailed}))
	}
	s := grpc.NewServer(opts...)
	s.RegisterService(&serviceDesc, r)
	return s, nil
}

// connStart stamps every connection's context with the time it was
// accepted: a stream's age at grpc.max_connection_age is its
// connection's, not its own (a second logger's stream may open on an old
// connection).
type connStart struct{}

type connStartKey struct{}

func (connStart) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return context.WithValue(ctx, connStartKey{}, time.Now())
}
func (connStart) HandleConn(context.Context, stats.ConnStats) {}
func (connStart) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}
func (connStart) HandleRPC(context.Context, stats.RPCStats) {}

// connectionStart is when the connection a stream's context belongs to was
// accepted (now, if the context carries no stamp).
func connectionStart(ctx context.Context) time.Time {
	if t, ok := ctx.Value(connStartKey{}).(time.Time); ok {
		return t
	}
	return time.Now()
}

// handshakeWatch reports failed TLS handshakes (a plaintext client, an
// unknown CA, no client certificate): the client sees the failure, the
// server would otherwise show nothing, and a misconfigured fleet would
// just look quiet.
type handshakeWatch struct {
	credentials.TransportCredentials
	failed func(remote net.Addr, err error)
}

func (h handshakeWatch) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := h.TransportCredentials.ServerHandshake(c)
	if err != nil {
		h.failed(c.RemoteAddr(), err)
	}
	return conn, info, err
}

func (h handshakeWatch) Clone() credentials.TransportCredentials {
	return handshakeWatch{h.TransportCredentials.Clone(), h.failed}
}

// handshakeFailed counts a failed TLS handshake and logs it, unless the
// client merely hung up (probes do that all day).
func (r *Receiver) handshakeFailed(remote net.Addr, err error) {
	reason := handshakeReason(err)
	r.metrics.handshakeErrors.WithLabelValues(reason).Inc()
	if reason != "closed" {
		what := "the client cannot stream (check its TLS settings and certificate)"
		if reason == "rejected_by_client" {
			what = "the client refused this receiver's certificate (check that it trusts the CA that signed --tls-cert)"
		}
		r.logf("tls_handshake_"+reason, "TLS handshake failed: "+what,
			"peer", remote.String(), "reason", reason, "error", err)
	}
}

// handshakeReason sorts a failed handshake for the metric's label.
func handshakeReason(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, io.EOF) || strings.Contains(msg, "connection reset"):
		return "closed" // the client hung up first: a TCP probe, a load balancer check
	case strings.Contains(msg, "remote error"):
		return "rejected_by_client" // the client refused this receiver's certificate (or TLS version)
	case strings.Contains(msg, "does not look like a TLS handshake"):
		return "plaintext"
	case strings.Contains(msg, "certificate"):
		return "client_certificate"
	case strings.Contains(msg, "protocol version"):
		return "protocol_version"
	}
	return "other"
}

// serverTLS loads the certificate and the client CA for mTLS, re-reading
// both when their files change (cert-manager rotates them in place).
func serverTLS(c TLSConfig) (*tls.Config, error) {
	kp := &reloadingFile[*tls.Certificate]{path: c.CertFile, field: "tls.cert_file", parse: func() (*tls.Certificate, error) {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: loading %s and %s: %w", c.CertFile, c.KeyFile, err)
		}
		return &cert, nil
	}}
	if _, err := kp.load(); err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.load() }}
	if c.ClientCAFile == "" {
		return tc, nil
	}
	ca := &reloadingFile[*x509.CertPool]{path: c.ClientCAFile, field: "tls.client_ca_file", parse: func() (*x509.CertPool, error) {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.client_ca_file %s: no PEM certificate found", c.ClientCAFile)
		}
		return pool, nil
	}}
	pool, err := ca.load()
	if err != nil {
		return nil, err
	}
	tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	base := tc.Clone()
	// Each handshake gets the CA as the file is now: rotating the mesh's
	// CA (cert-manager, a mounted secret) needs no restart.
	tc.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		pool, err := ca.load()
		if err != nil {
			return nil, err
		}
		cfg := base.Clone()
		cfg.ClientCAs = pool
		return cfg, nil
	}
	return tc, nil
}

// tlsRecheck is how often at most the TLS files are checked for changes.
var tlsRecheck = 5 * time.Second

// reloadingFile holds what was parsed from a file (a certificate, a CA
// pool), parsing it again when the file's modification time changes,
// checked at most every tlsRecheck. A file missing or broken after a
// good load keeps the last good value: a secret being rewritten must not
// break serving.
type reloadingFile[T any] struct {
	path, field string
	parse       func() (T, error)

	mu      sync.Mutex
	val     T
	loaded  bool
	modTime time.Time
	checked time.Time
}

func (r *reloadingFile[T]) load() (T, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.loaded && time.Since(r.checked) < tlsRecheck {
		return r.val, nil
	}
	r.checked = time.Now()
	st, err := os.Stat(r.path)
	if err != nil {
		if r.loaded {
			return r.val, nil
		}
		var zero T
		return zero, fmt.Errorf("%s: %w", r.field, err)
	}
	if r.loaded && st.ModTime().Equal(r.modTime) {
		return r.val, nil
	}
	v, err := r.parse()
	if err != nil {
		if r.loaded {
			return r.val, nil
		}
		return v, err
	}
	r.val, r.loaded, r.modTime = v, true, st.ModTime()
	return v, nil
}

// Listen opens the gRPC listener, naming the field when it fails.
func Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w (is another process using it? choose another with --listen)", addr, err)
	}
	return l, nil
}
