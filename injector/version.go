package injector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// nativeSidecarSince is the first minor version with native sidecars on by
// default (SidecarContainers feature gate, beta in 1.29, GA in 1.33).
const nativeSidecarMinor = 29

// ResolveMode turns auto into native or regular by the cluster's version:
// cfg.KubernetesVersion if set, else what discover returns (nil discover, or
// an error, falls back to regular, which works on every version).
func ResolveMode(ctx context.Context, cfg Config, discover func(context.Context) (string, error)) (SidecarMode, string) {
	if cfg.Mode != ModeAuto {
		return cfg.Mode, "configured"
	}
	version, source := cfg.KubernetesVersion, "kubernetesVersion"
	if version == "" {
		if discover == nil {
			return ModeRegular, "auto: no API server to ask, regular works everywhere"
		}
		v, err := discover(ctx)
		if err != nil {
			return ModeRegular, "auto: server version unknown (" + err.Error() + "), regular works everywhere"
		}
		version, source = v, "API server /version"
	}
	major, minor, err := parseMajorMinor(version)
	if err != nil {
		return ModeRegular, "auto: " + err.Error()
	}
	if major > 1 || minor >= nativeSidecarMinor {
		return ModeNative, fmt.Sprintf("auto: Kubernetes %s (%s) >= 1.%d", version, source, nativeSidecarMinor)
	}
	return ModeRegular, fmt.Sprintf("auto: Kubernetes %s (%s) < 1.%d", version, source, nativeSidecarMinor)
}

// parseMajorMinor reads "1.33", "v1.34.4" or "v1.30.2-gke.1".
func parseMajorMinor(v string) (int, int, error) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return 0, 0, fmt.Errorf("%q is not a version like 1.33", v)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(strings.TrimRight(parts[1], "+"))
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%q is not a version like 1.33", v)
	}
	return major, minor, nil
}

// ServerVersion asks an API server for its gitVersion (GET /version, which
// every authenticated client may read).
func ServerVersion(ctx context.Context, client *http.Client, baseURL, token string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(baseURL, "/")+"/version", nil)
	if err != nil {
		return "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /version: %s", resp.Status)
	}
	var info struct {
		GitVersion string `json:"gitVersion"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return "", err
	}
	return info.GitVersion, nil
}

// InClusterVersion is the discover function for a pod: it reads the
// service account's token and CA the kubelet mounts.
func InClusterVersion(ctx context.Context) (string, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return "", fmt.Errorf("not in a cluster (KUBERNETES_SERVICE_HOST unset)")
	}
	const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
	token, err := os.ReadFile(sa + "token")
	if err != nil {
		return "", err
	}
	caPEM, err := os.ReadFile(sa + "ca.crt")
	if err != nil {
		return "", err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return ServerVersion(ctx, client, "https://"+host+":"+port, strings.TrimSpace(string(token)))
}
