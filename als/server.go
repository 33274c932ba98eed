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

// serverTLS loads the certificate, re-reading it when the files change
// (cert-manager rotates them in place), and the client CA for mTLS.
func serverTLS(c TLSConfig) (*tls.Config, error) {
	kp := &reloadingKeyPair{certFile: c.CertFile, keyFile: c.KeyFile}
	if _, err := kp.load(); err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: kp.get}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.client_ca_file %s: no PEM certificate found", c.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

type reloadingKeyPair struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	modTime           time.Time
	checked           time.Time
}

func (k *reloadingKeyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return k.load() }

// load returns the cached pair, reloading it at most every few seconds when
// the certificate file's mtime changed.
func (k *reloadingKeyPair) load() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cert != nil && time.Since(k.checked) < 5*time.Second {
		return k.cert, nil
	}
	k.checked = time.Now()
	st, err := os.Stat(k.certFile)
	if err != nil {
		if k.cert != nil {
			return k.cert, nil // keep serving the last good pair
		}
		return nil, fmt.Errorf("tls.cert_file: %w", err)
	}
	if k.cert != nil && st.ModTime().Equal(k.modTime) {
		return k.cert, nil
	}
	c, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		if k.cert != nil {
			return k.cert, nil
		}
		return nil, fmt.Errorf("tls: loading %s and %s: %w", k.certFile, k.keyFile, err)
	}
	k.cert, k.modTime = &c, st.ModTime()
	return k.cert, nil
}

// Listen opens the gRPC listener, naming the field when it fails.
func Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w (is another process using it? choose another with --listen)", addr, err)
	}
	return l, nil
}
