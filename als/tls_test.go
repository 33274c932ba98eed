package als

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/recordtest"
	"github.com/meshtrail/meshtrail/test/harness"
)

func TestMutualTLS(t *testing.T) {
	ca := harness.NewCA(t)
	dir := t.TempDir()
	serverCert, serverKey := ca.Issue(t, "meshtrail-als", "127.0.0.1").Write(t, dir, "tls")
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	client := ca.Issue(t, "istio-proxy")
	clientCert, err := tls.X509KeyPair(client.CertPEM, client.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ts := startService(t, func(c *Config) {
		c.TLS = TLSConfig{CertFile: serverCert, KeyFile: serverKey, ClientCAFile: caFile}
	})
	dial := func(tc *tls.Config) *grpc.ClientConn {
		return ts.dial(grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	}
	// No client certificate: refused.
	if err := ts.send(dial(ca.TLSClient()), httpMessage(true, httpEntry(nil))); err == nil {
		t.Fatal("a client without a certificate was accepted under mutual TLS")
	}
	// Plain text: refused.
	if err := ts.send(ts.dial(), httpMessage(true, httpEntry(nil))); err == nil {
		t.Fatal("a plain-text client was accepted by a TLS listener")
	}
	// A certificate from the CA: accepted.
	withCert := ca.TLSClient()
	withCert.Certificates = []tls.Certificate{clientCert}
	if err := ts.send(dial(withCert), httpMessage(true, httpEntry(map[string]string{"x-via": "mtls"}))); err != nil {
		t.Fatalf("client with a CA-signed certificate: %v", err)
	}
	// A client that does not trust the receiver's CA refuses it.
	if err := ts.send(dial(&tls.Config{Certificates: []tls.Certificate{clientCert}}), httpMessage(true, httpEntry(nil))); err == nil {
		t.Fatal("a client without the receiver's CA accepted its certificate")
	}
	// The refused clients are visible on the server side too: counted by
	// reason and logged with their address. (The server learns of a
	// client's refusal after the client has given up: wait for it.)
	reasons := []string{"client_certificate", "plaintext", "rejected_by_client"}
	counted := func(m string) bool {
		for _, reason := range reasons {
			if !strings.Contains(m, `meshtrail_als_tls_handshake_errors_total{reason="`+reason+`"}`) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(10 * time.Second)
	for !counted(ts.metrics(false)) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if m := ts.metrics(false); !counted(m) {
		t.Errorf("handshake failures %v not all counted:\n%s", reasons, grepLines(m, "handshake"))
	}
	if lt := ts.logText(); !strings.Contains(lt, "TLS handshake failed") || !strings.Contains(lt, "reason=plaintext") {
		t.Errorf("failed handshakes not logged:\n%s", lt)
	}
	recs := ts.records()
	if len(recs) != 1 || recs[0].RequestHeaders["x-via"] != "mtls" {
		t.Fatalf("want exactly the mTLS client's record, got %d", len(recs))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestTLSFilesAreCheckedAtStart(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen, cfg.MetricsListen = "127.0.0.1:0", ""
	cfg.TLS = TLSConfig{CertFile: "/nonexistent/tls.crt", KeyFile: "/nonexistent/tls.key"}
	if _, err := Start(cfg, recordtest.Discard, prometheus.NewRegistry(), NewLogger(os.Stderr, "error")); err == nil || !strings.Contains(err.Error(), "tls.cert_file") {
		t.Fatalf("got %v, want an error naming tls.cert_file", err)
	}
}

// Rotating the CA or the serving certificate in place (cert-manager, a
// re-mounted secret) takes effect without a restart.
func TestTLSFilesAreReloaded(t *testing.T) {
	old := tlsRecheck
	tlsRecheck = 10 * time.Millisecond
	t.Cleanup(func() { tlsRecheck = old })

	ca1, ca2 := harness.NewCA(t), harness.NewCA(t)
	dir := t.TempDir()
	serverCert, serverKey := ca1.Issue(t, "meshtrail-als", "127.0.0.1").Write(t, dir, "tls")
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca1.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ts := startService(t, func(c *Config) {
		c.TLS = TLSConfig{CertFile: serverCert, KeyFile: serverKey, ClientCAFile: caFile}
	})
	clientOf := func(ca *harness.CA, trusts *harness.CA) *tls.Config {
		leaf := ca.Issue(t, "istio-proxy")
		cert, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		tc := trusts.TLSClient()
		tc.Certificates = []tls.Certificate{cert}
		return tc
	}
	send := func(tc *tls.Config) error {
		return ts.send(ts.dial(grpc.WithTransportCredentials(credentials.NewTLS(tc))), httpMessage(true, httpEntry(nil)))
	}
	if err := send(clientOf(ca2, ca1)); err == nil {
		t.Fatal("a client of another CA was accepted")
	}
	// The mesh moves to CA 2: the CA file, then the serving certificate.
	later := time.Now().Add(time.Second)
	if err := os.WriteFile(caFile, ca2.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(caFile, later, later) // a new mtime even on a coarse clock
	time.Sleep(50 * time.Millisecond)
	if err := send(clientOf(ca2, ca1)); err != nil {
		t.Fatalf("after the CA file changed, a client of the new CA: %v", err)
	}
	if err := send(clientOf(ca1, ca1)); err == nil {
		t.Fatal("after the CA file changed, a client of the old CA was still accepted")
	}
	ca2.Issue(t, "meshtrail-als", "127.0.0.1").Write(t, dir, "tls")
	_ = os.Chtimes(serverCert, later, later)
	time.Sleep(50 * time.Millisecond)
	if err := send(clientOf(ca2, ca2)); err != nil {
		t.Fatalf("after the certificate changed, a client trusting only the new CA: %v", err)
	}
}
