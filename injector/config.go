// Package injector is meshtrail's mutating admission webhook. It adds the
// log tail sidecar (`meshtrail tail`) to pods whose declared log volume is
// too heavy for the node DaemonSet, mounts the volume the application writes
// its logs to into that sidecar, and records what it decided on the pod.
//
// The webhook never emits a patch that makes a pod invalid: the API server
// rejects the user's pod for an invalid patch whatever the failurePolicy, so
// every patch is applied to the pod locally and the result checked before it
// is returned. A pod whose annotations cannot be honoured is admitted
// unchanged with a warning (or denied with the reason when Config.Strict).
package injector

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshtrail/meshtrail/internal/config"
)

// SidecarMode says how the tail sidecar is added to a pod.
type SidecarMode string

const (
	// ModeNative adds it as an init container with restartPolicy Always
	// (Kubernetes >= 1.29): it starts before and stops after the app, and
	// Jobs complete.
	ModeNative SidecarMode = "native"
	// ModeRegular adds it as an ordinary container that drains on preStop.
	ModeRegular SidecarMode = "regular"
	// ModeAuto picks native or regular from the API server's version.
	ModeAuto SidecarMode = "auto"
)

// Config is everything `meshtrail inject` can be told, from a YAML file
// (--config) with flags on top. Field names in errors are the YAML names.
type Config struct {
	// Listen is the HTTPS address serving /inject, /healthz and /readyz.
	Listen string `json:"listen"`
	// TLSCert and TLSKey are PEM files; both are re-read when they change.
	TLSCert string `json:"tlsCert"`
	TLSKey  string `json:"tlsKey"`
	// MetricsListen serves Prometheus /metrics over plain HTTP; empty disables.
	MetricsListen string `json:"metricsListen"`
	// ShutdownDelay is how long, after SIGTERM, the injector keeps serving
	// with /readyz failing, so that the Service stops sending it reviews
	// before its listener closes (a review refused then would create the pod
	// without its sidecar under failurePolicy Ignore).
	ShutdownDelay metav1.Duration `json:"shutdownDelay"`

	// Threshold is the declared log volume (e.g. "5MiB/s") at or above
	// which a pod gets its own sidecar; under it the node DaemonSet tails it.
	Threshold string `json:"threshold"`
	// Mode is native, regular or auto (by the API server's version).
	Mode SidecarMode `json:"mode"`
	// KubernetesVersion, when set ("1.33"), decides auto mode without asking
	// the API server.
	KubernetesVersion string `json:"kubernetesVersion"`
	// SystemNamespaces are never injected, whatever their labels.
	SystemNamespaces []string `json:"systemNamespaces"`
	// Strict denies pods whose annotations cannot be honoured instead of
	// admitting them without the sidecar.
	Strict bool `json:"strict"`

	// Sidecar describes the injected container.
	Sidecar SidecarConfig `json:"sidecar"`
}

// SidecarConfig is the injected container's fixed part.
type SidecarConfig struct {
	Image           string `json:"image"`
	ImagePullPolicy string `json:"imagePullPolicy"`
	// Parsers are the values meshtrail.io/log-parser may take.
	Parsers []string `json:"parsers"`
	// Sinks, when not empty, are the only names meshtrail.io/log-sinks may
	// use; DefaultSinks apply when the pod names none.
	Sinks        []string `json:"sinks"`
	DefaultSinks []string `json:"defaultSinks"`
	// Forward is the meshtrail receiver's OTLP logs address (HOST:PORT,
	// `meshtrail als --otlp-listen`), passed to the sidecar as --forward:
	// the sidecar sends its records there, so app namespaces hold no
	// backend credentials. Empty: the sidecar sends to its sinks itself.
	Forward string `json:"forward"`
	// Requests and limits used when the pod's annotations give none.
	CPURequest    string `json:"cpuRequest"`
	MemoryRequest string `json:"memoryRequest"`
	CPULimit      string `json:"cpuLimit"`
	MemoryLimit   string `json:"memoryLimit"`
	// DrainSeconds bounds the preStop drain of a regular (non-native) sidecar.
	DrainSeconds int `json:"drainSeconds"`
	// RunAsUser is the sidecar's non-root uid.
	RunAsUser int64 `json:"runAsUser"`
}

// DefaultConfig is the configuration before the file and flags apply.
func DefaultConfig() Config {
	return Config{
		Listen:           ":8443",
		MetricsListen:    ":9464",
		ShutdownDelay:    metav1.Duration{Duration: 5 * time.Second},
		Threshold:        "5MiB/s",
		Mode:             ModeAuto,
		SystemNamespaces: []string{"kube-system", "kube-public", "kube-node-lease", "istio-system"},
		Sidecar: SidecarConfig{
			Image:           "ghcr.io/meshtrail/meshtrail:latest",
			ImagePullPolicy: "IfNotPresent",
			Parsers:         []string{"raw", "json", "logfmt", "cri"},
			CPURequest:      "50m",
			MemoryRequest:   "64Mi",
			CPULimit:        "1",
			MemoryLimit:     "256Mi",
			DrainSeconds:    20,
			RunAsUser:       65532,
		},
	}
}

// LoadConfig reads a YAML file over DefaultConfig. Unknown fields are an
// error: a typo must not silently fall back to a default.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	err := config.Load(path, &cfg)
	return cfg, err
}

// Validate checks every field and returns all problems at once, each naming
// its field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, a...)...))
	}
	if c.Listen == "" {
		bad("listen", "must be set (HOST:PORT)")
	}
	if c.TLSCert == "" {
		bad("tlsCert", "must be set (--tls-cert FILE)")
	}
	if c.TLSKey == "" {
		bad("tlsKey", "must be set (--tls-key FILE)")
	}
	if d := c.ShutdownDelay.Duration; d < 0 || d > 5*time.Minute {
		bad("shutdownDelay", "%v is outside 0s..5m", d)
	}
	if _, err := ParseRate(c.Threshold); err != nil {
		bad("threshold", "%v", err)
	}
	switch c.Mode {
	case ModeNative, ModeRegular, ModeAuto:
	default:
		bad("mode", "%q is not native, regular or auto", c.Mode)
	}
	if c.KubernetesVersion != "" {
		if _, _, err := parseMajorMinor(c.KubernetesVersion); err != nil {
			bad("kubernetesVersion", "%v", err)
		}
	}
	s := &c.Sidecar
	if s.Image == "" {
		bad("sidecar.image", "must be set")
	}
	switch s.ImagePullPolicy {
	case "Always", "IfNotPresent", "Never":
	default:
		bad("sidecar.imagePullPolicy", "%q is not Always, IfNotPresent or Never", s.ImagePullPolicy)
	}
	if len(s.Parsers) == 0 {
		bad("sidecar.parsers", "must list at least one parser")
	}
	for _, q := range []struct{ field, v string }{
		{"sidecar.cpuRequest", s.CPURequest}, {"sidecar.memoryRequest", s.MemoryRequest},
		{"sidecar.cpuLimit", s.CPULimit}, {"sidecar.memoryLimit", s.MemoryLimit},
	} {
		if q.v == "" {
			continue
		}
		if _, err := resource.ParseQuantity(q.v); err != nil {
			bad(q.field, "%q is not a quantity", q.v)
		}
	}
	for _, n := range s.DefaultSinks {
		if !sinkName.MatchString(n) {
			bad("sidecar.defaultSinks", "%q is not a sink name", n)
		} else if len(s.Sinks) > 0 && !contains(s.Sinks, n) {
			bad("sidecar.defaultSinks", "%q is not in sidecar.sinks", n)
		}
	}
	if s.Forward != "" {
		if err := checkHostPort(s.Forward); err != nil {
			bad("sidecar.forward", "%v", err)
		}
	}
	if s.DrainSeconds < 0 || s.DrainSeconds > 600 {
		bad("sidecar.drainSeconds", "%d is outside 0..600", s.DrainSeconds)
	}
	if s.RunAsUser <= 0 {
		bad("sidecar.runAsUser", "%d: the sidecar runs as a non-root uid", s.RunAsUser)
	}
	return errors.Join(errs...)
}

// checkHostPort accepts HOST:PORT with a host and a port from 1 to 65535.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not HOST:PORT: %v", addr, err)
	}
	if host == "" {
		return fmt.Errorf("%q: the host is empty (the receiver's Service, e.g. meshtrail-als.meshtrail.svc:4317)", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: the port must be a number from 1 to 65535", addr)
	}
	return nil
}

var sinkName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$`)

// ParseRate parses a log volume such as "20MiB/s", "500KB/s", "1.5GiB/s" or
// a bare number of bytes per second, into bytes per second.
func ParseRate(s string) (float64, error) {
	v := strings.TrimSpace(s)
	v = strings.TrimSuffix(v, "/s")
	i := 0
	for i < len(v) && (v[i] >= '0' && v[i] <= '9' || v[i] == '.') {
		i++
	}
	num, unit := v[:i], strings.TrimSpace(v[i:])
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" {
		return 0, fmt.Errorf("%q is not a log volume like 20MiB/s", s)
	}
	mult, ok := rateUnits[unit]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q (B, KB, KiB, MB, MiB, GB, GiB per second)", s, unit)
	}
	return n * mult, nil
}

var rateUnits = map[string]float64{
	"": 1, "B": 1,
	"KB": 1e3, "kB": 1e3, "KiB": 1 << 10, "Ki": 1 << 10, "K": 1e3, "k": 1e3,
	"MB": 1e6, "MiB": 1 << 20, "Mi": 1 << 20, "M": 1e6,
	"GB": 1e9, "GiB": 1 << 30, "Gi": 1 << 30, "G": 1e9,
}

// formatRate prints bytes per second the way people write them.
func formatRate(b float64) string {
	switch {
	case b >= 1<<30:
		return strconv.FormatFloat(b/(1<<30), 'f', -1, 64) + "GiB/s"
	case b >= 1<<20:
		return strconv.FormatFloat(b/(1<<20), 'f', -1, 64) + "MiB/s"
	case b >= 1<<10:
		return strconv.FormatFloat(b/(1<<10), 'f', -1, 64) + "KiB/s"
	}
	return strconv.FormatFloat(b, 'f', -1, 64) + "B/s"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
