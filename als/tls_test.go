package als

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// testPKI is a CA with a server and a client certificate, as files.
type testPKI struct {
	dir                           string
	caPool                        *x509.CertPool
	caFile, serverCert, serverKey string
	client                        tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "meshtrail test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &testPKI{dir: dir, caPool: x509.NewCertPool()}
	p.caPool.AddCert(ca)
	p.caFile = writePEM(t, dir, "ca.crt", "CERTIFICATE", caDER)

	issue := func(serial int64, server bool) ([]byte, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "meshtrail"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
		if server {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		} else {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
			u, _ := url.Parse("spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway")
			tmpl.URIs = []*url.URL{u}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	der, key := issue(2, true)
	p.serverCert = writePEM(t, dir, "tls.crt", "CERTIFICATE", der)
	kb, _ := x509.MarshalECPrivateKey(key)
	p.serverKey = writePEM(t, dir, "tls.key", "EC PRIVATE KEY", kb)
	der, key = issue(3, false)
	p.client = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return p
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	ts := startService(t, func(c *Config) {
		c.TLS = TLSConfig{CertFile: pki.serverCert, KeyFile: pki.serverKey, ClientCAFile: pki.caFile}
	})
	dial := func(tc *tls.Config) *grpc.ClientConn {
		return ts.dial(grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	}
	// No client certificate: refused.
	if err := ts.send(dial(&tls.Config{RootCAs: pki.caPool}), httpMessage(true, httpEntry(nil))); err == nil {
		t.Fatal("a client without a certificate was accepted under mutual TLS")
	}
	// Plain text: refused.
	if err := ts.send(ts.dial(), httpMessage(true, httpEntry(nil))); err == nil {
		t.Fatal("a plain-text client was accepted by a TLS listener")
	}
	// A certificate from the CA: accepted.
	if err := ts.send(dial(&tls.Config{RootCAs: pki.caPool, Certificates: []tls.Certificate{pki.client}}),
		httpMessage(true, httpEntry(map[string]string{"x-via": "mtls"}))); err != nil {
		t.Fatalf("client with a CA-signed certificate: %v", err)
	}
	recs := ts.records()
	if len(recs) != 1 || recs[0].RequestHeaders["x-via"] != "mtls" {
		t.Fatalf("want exactly the mTLS client's record, got %d", len(recs))
	}
}

func TestTLSFilesAreCheckedAtStart(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen, cfg.MetricsListen, cfg.Out = "127.0.0.1:0", "", ""
	cfg.TLS = TLSConfig{CertFile: "/nonexistent/tls.crt", KeyFile: "/nonexistent/tls.key"}
	if _, err := Start(cfg, NewLogger(os.Stderr, "error")); err == nil || !strings.Contains(err.Error(), "tls.cert_file") {
		t.Fatalf("got %v, want an error naming tls.cert_file", err)
	}
}
