package harness

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Kube is a real kube-apiserver on etcd, both started for one test, with
// an admin bearer token (group system:masters). No controller-manager or
// scheduler runs: pods stay Pending and namespaces get no `default`
// ServiceAccount unless EnsureNamespace creates it.
type Kube struct {
	URL    string // https://127.0.0.1:PORT
	Token  string
	CA     *CA // signed the API server's serving certificate
	Client *http.Client

	Etcd, APIServer *Process
}

// StartKube starts etcd and kube-apiserver (from `make tools`) and waits
// until the API server is ready. Both stop when the test ends.
func StartKube(t testing.TB) *Kube {
	t.Helper()
	etcdBin, apiBin := Tool(t, "etcd"), Tool(t, "kube-apiserver")
	dir := t.TempDir()

	client, peer := FreeAddr(t), FreeAddr(t)
	etcd := Start(t, "etcd", nil, etcdBin,
		"--name=test", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls=http://"+client, "--advertise-client-urls=http://"+client,
		"--listen-peer-urls=http://"+peer, "--initial-advertise-peer-urls=http://"+peer,
		"--initial-cluster=test=http://"+peer, "--unsafe-no-fsync", "--log-level=warn")
	WaitHTTP(t, etcd, "http://"+client+"/health", 30*time.Second)

	ca := NewCA(t)
	certFile, keyFile := ca.Issue(t, "kube-apiserver", "127.0.0.1", "localhost").Write(t, dir, "apiserver")
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// SEC1 "EC PRIVATE KEY": the API server reads the public half from it
	// (a PKCS#8 "PRIVATE KEY" is refused as --service-account-key-file).
	saDER, _ := x509.MarshalECPrivateKey(saKey)
	saFile := filepath.Join(dir, "sa.key")
	if err := os.WriteFile(saFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	token := strings.TrimLeft(serial(t).Text(36), "0")
	tokenFile := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(token+`,admin,admin-uid,"system:masters"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := FreeAddr(t)
	_, port := splitHostPort(t, addr)
	// The API server calls webhooks at 127.0.0.1: never through a proxy.
	env := []string{"NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost"}
	api := Start(t, "kube-apiserver", env, apiBin,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+port,
		"--etcd-servers=http://"+client,
		"--tls-cert-file="+certFile, "--tls-private-key-file="+keyFile,
		"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file="+saFile,
		"--service-account-signing-key-file="+saFile, "--token-auth-file="+tokenFile,
		"--authorization-mode=RBAC", "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged",
		"--endpoint-reconciler-type=none", "--cert-dir="+filepath.Join(dir, "certs"), "--profiling=false")

	k := &Kube{
		URL: "https://" + addr, Token: token, CA: ca, Etcd: etcd, APIServer: api,
		Client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.TLSClient(), Proxy: nil}},
	}
	Eventually(t, 90*time.Second, "kube-apiserver ready", func() error {
		if exited, err := api.Exited(); exited {
			t.Fatalf("harness: kube-apiserver exited: %v (log %s)", err, api.Log)
		}
		code, body, err := k.Do(context.Background(), http.MethodGet, "/readyz", nil)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("readyz %d: %.300s", code, body)
		}
		return nil
	})
	return k
}

// Do sends body (nil, []byte, or anything JSON-encodable) to the API server
// and returns the status code and the response body.
func (k *Kube) Do(ctx context.Context, method, path string, body any) (int, []byte, error) {
	resp, out, err := k.Request(ctx, method, path, body)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, out, nil
}

// Request is Do returning the whole response (its headers carry admission
// warnings), with the body already read and closed.
func (k *Kube) Request(ctx context.Context, method, path string, body any) (*http.Response, []byte, error) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, nil, err
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, k.URL+path, r)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+k.Token)
	req.Header.Set("Accept", "application/json")
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := k.Client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp, out, err
}

// MustDo is Do failing the test unless the status is one of want.
func (k *Kube) MustDo(t testing.TB, method, path string, body any, want ...int) []byte {
	t.Helper()
	code, out, err := k.Do(context.Background(), method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	for _, w := range want {
		if code == w {
			return out
		}
	}
	t.Fatalf("%s %s: status %d, want %v: %s", method, path, code, want, out)
	return nil
}

// EnsureNamespace creates a namespace with labels, and its `default`
// ServiceAccount (no controller-manager runs to create it, and the
// ServiceAccount admission plugin refuses pods without it).
func (k *Kube) EnsureNamespace(t testing.TB, name string, labels map[string]string) {
	t.Helper()
	k.MustDo(t, http.MethodPost, "/api/v1/namespaces", map[string]any{
		"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": name, "labels": labels},
	}, http.StatusCreated, http.StatusConflict)
	k.MustDo(t, http.MethodPost, "/api/v1/namespaces/"+name+"/serviceaccounts", map[string]any{
		"apiVersion": "v1", "kind": "ServiceAccount",
		"metadata": map[string]any{"name": "default"},
	}, http.StatusCreated, http.StatusConflict)
}
