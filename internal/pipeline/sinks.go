// The `sinks:` section: one typed section per network sink.
//
// Secrets never appear in the configuration itself: auth fields name an
// environment variable or a file that holds the secret, read once at
// build, and never logged.

package pipeline

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"strings"

	"github.com/meshtrail/meshtrail/internal/fanout/queue"
)

// Sinks is the `sinks:` section.
type Sinks struct {
	OTLP          *OTLP          `json:"otlp,omitempty"`
	Zipkin        *Zipkin        `json:"zipkin,omitempty"`
	Loki          *Loki          `json:"loki,omitempty"`
	Elasticsearch *Elasticsearch `json:"elasticsearch,omitempty"`
	Fluentd       *Fluentd       `json:"fluentd,omitempty"`
	RemoteWrite   *RemoteWrite   `json:"prometheus_remote_write,omitempty"`
}

// Common are the fields every network sink has.
type Common struct {
	Enabled bool           `json:"enabled"`
	TLS     *TLS           `json:"tls,omitempty"`
	Auth    *Auth          `json:"auth,omitempty"`
	Timeout queue.Duration `json:"timeout,omitempty"` // one request; default 10s
	Queue   queue.Config   `json:"queue"`
}

// TLS configures a client connection. Absent means plaintext.
type TLS struct {
	CAFile             string `json:"ca_file,omitempty"`
	CertFile           string `json:"cert_file,omitempty"`
	KeyFile            string `json:"key_file,omitempty"`
	ServerName         string `json:"server_name,omitempty"`
	InsecureSkipVerify bool   `json:"insecure_skip_verify,omitempty"`
}

// Auth names where credentials come from; at most one scheme.
type Auth struct {
	BearerTokenEnv  string `json:"bearer_token_env,omitempty"`
	BearerTokenFile string `json:"bearer_token_file,omitempty"`
	Username        string `json:"username,omitempty"`
	PasswordEnv     string `json:"password_env,omitempty"`
	PasswordFile    string `json:"password_file,omitempty"`
	// HeadersFromEnv sets header -> value of the environment variable
	// (e.g. an API key header).
	HeadersFromEnv map[string]string `json:"headers_from_env,omitempty"`
}

// OTLP sends spans over OTLP.
type OTLP struct {
	Common
	Protocol string `json:"protocol,omitempty"` // grpc (default) | http
	Endpoint string `json:"endpoint"`           // host:port
	URLPath  string `json:"url_path,omitempty"` // http only; default /v1/traces
	Gzip     bool   `json:"gzip,omitempty"`
}

// Zipkin sends spans as Zipkin v2 JSON.
type Zipkin struct {
	Common
	URL string `json:"url"` // e.g. http://127.0.0.1:9411/api/v2/spans
}

// Loki pushes log streams.
type Loki struct {
	Common
	URL    string `json:"url"` // e.g. http://127.0.0.1:3100/loki/api/v1/push
	Tenant string `json:"tenant,omitempty"`
	// TenantFromRecord sends each record as its tenant (routing.tenant);
	// Tenant is then the tenant of records without one.
	TenantFromRecord bool              `json:"tenant_from_record,omitempty"`
	ExtraLabels      map[string]string `json:"extra_labels,omitempty"`
}

// Elasticsearch writes documents with _bulk.
type Elasticsearch struct {
	Common
	URL            string            `json:"url"`             // API base; _bulk is appended
	Index          string            `json:"index,omitempty"` // default meshtrail-{date}
	DateLayout     string            `json:"date_layout,omitempty"`
	TenantPrefixes map[string]string `json:"tenant_prefixes,omitempty"` // record tenant -> index prefix
	// DeadLetter is the NDJSON file for items the store rejected; ""
	// counts them only. Keep it distinct from queue.dead_letter.
	DeadLetter string `json:"dead_letter,omitempty"`
}

// Fluentd sends forward-protocol events with acknowledgements.
type Fluentd struct {
	Common
	Address   string `json:"address"` // host:port
	TagPrefix string `json:"tag_prefix,omitempty"`
}

// RemoteWrite pushes the RED metrics with Prometheus remote write (see
// NewRemoteWrite); its queue section is not used.
type RemoteWrite struct {
	Common
	URL            string            `json:"url"`                // e.g. http://127.0.0.1:9090/api/v1/write
	Interval       queue.Duration    `json:"interval,omitempty"` // default 15s
	Replica        string            `json:"replica,omitempty"`  // default $POD_NAME, else the host name
	ExternalLabels map[string]string `json:"external_labels,omitempty"`
}

// Validate reports every invalid field of the enabled sinks, each error
// naming its field (sinks.loki.url: ...).
func (c *Sinks) Validate() error {
	var errs []error
	bad := func(field, msg string, args ...any) {
		errs = append(errs, fmt.Errorf("sinks.%s: %s", field, fmt.Sprintf(msg, args...)))
	}
	common := func(name string, cm *Common) {
		if cm.Timeout < 0 {
			bad(name+".timeout", "must be >= 0")
		}
		if t := cm.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
			bad(name+".tls", "cert_file and key_file go together")
		}
		if a := cm.Auth; a != nil {
			schemes := 0
			if a.BearerTokenEnv != "" || a.BearerTokenFile != "" {
				schemes++
				if a.BearerTokenEnv != "" && a.BearerTokenFile != "" {
					bad(name+".auth", "bearer_token_env and bearer_token_file are exclusive")
				}
			}
			if a.Username != "" || a.PasswordEnv != "" || a.PasswordFile != "" {
				schemes++
				if a.Username == "" {
					bad(name+".auth.username", "required with password_env/password_file")
				}
				if (a.PasswordEnv == "") == (a.PasswordFile == "") {
					bad(name+".auth", "basic auth needs exactly one of password_env, password_file")
				}
			}
			if schemes > 1 {
				bad(name+".auth", "bearer token and basic auth are exclusive")
			}
		}
		if err := cm.Queue.WithDefaults().Validate(); err != nil {
			for _, e := range unjoin(err) {
				errs = append(errs, fmt.Errorf("sinks.%s.%w", name, e))
			}
		}
	}
	checkURL := func(field, u string) {
		if u == "" {
			bad(field, "required when enabled")
			return
		}
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad(field, "%q is not an http(s) URL", u)
		}
	}
	checkAddr := func(field, a string) {
		if a == "" {
			bad(field, "required when enabled")
			return
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad(field, "%q is not host:port", a)
		}
	}
	if s := c.OTLP; s != nil && s.Enabled {
		common("otlp", &s.Common)
		checkAddr("otlp.endpoint", s.Endpoint)
		if s.Protocol != "" && s.Protocol != "grpc" && s.Protocol != "http" {
			bad("otlp.protocol", "%q: want grpc or http", s.Protocol)
		}
		if s.URLPath != "" && s.Protocol != "http" {
			bad("otlp.url_path", "only with protocol: http")
		}
	}
	if s := c.Zipkin; s != nil && s.Enabled {
		common("zipkin", &s.Common)
		checkURL("zipkin.url", s.URL)
	}
	if s := c.Loki; s != nil && s.Enabled {
		common("loki", &s.Common)
		checkURL("loki.url", s.URL)
		for k := range s.ExtraLabels {
			if !validLabel(k) {
				bad("loki.extra_labels", "%q is not a valid label name", k)
			}
			switch k {
			case "namespace", "workload", "source", "status_class":
				bad("loki.extra_labels", "%q is set by the sink itself", k)
			case "trace_id", "span_id":
				bad("loki.extra_labels", "%q is unbounded: it travels as structured metadata", k)
			}
		}
	}
	if s := c.Elasticsearch; s != nil && s.Enabled {
		common("elasticsearch", &s.Common)
		checkURL("elasticsearch.url", s.URL)
		if s.Index != "" && (strings.ToLower(s.Index) != s.Index || strings.ContainsAny(s.Index, ` "*\<|,>/?`)) {
			bad("elasticsearch.index", "%q: index names are lowercase without spaces or \"*\\<|,>/?", s.Index)
		}
		for ns, p := range s.TenantPrefixes {
			if p == "" || strings.ToLower(p) != p {
				bad("elasticsearch.tenant_prefixes."+ns, "prefix %q must be non-empty lowercase", p)
			}
		}
		if s.DeadLetter != "" && s.DeadLetter == s.Queue.DeadLetter {
			bad("elasticsearch.dead_letter", "must differ from queue.dead_letter (two writers on one file)")
		}
	}
	if s := c.Fluentd; s != nil && s.Enabled {
		common("fluentd", &s.Common)
		checkAddr("fluentd.address", s.Address)
		if s.Auth != nil {
			bad("fluentd.auth", "not supported by the forward protocol client (use tls)")
		}
	}
	if s := c.RemoteWrite; s != nil && s.Enabled {
		common("prometheus_remote_write", &s.Common)
		checkURL("prometheus_remote_write.url", s.URL)
		if !reflect.DeepEqual(s.Queue, queue.Config{}) {
			bad("prometheus_remote_write.queue", "not used: remote write pushes the RED metrics every interval (set interval)")
		}
		if s.Interval.D() < 0 {
			bad("prometheus_remote_write.interval", "negative")
		}
	}
	return errors.Join(errs...)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func validLabel(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Enabled returns the names of the enabled sinks, which are their section
// names (what routing rules refer to), in the order Build creates them.
func (c *Sinks) Enabled() []string {
	var names []string
	for _, s := range []struct {
		name string
		on   bool
	}{
		{"otlp", c.OTLP != nil && c.OTLP.Enabled},
		{"zipkin", c.Zipkin != nil && c.Zipkin.Enabled},
		{"loki", c.Loki != nil && c.Loki.Enabled},
		{"elasticsearch", c.Elasticsearch != nil && c.Elasticsearch.Enabled},
		{"fluentd", c.Fluentd != nil && c.Fluentd.Enabled},
		{"prometheus_remote_write", c.RemoteWrite != nil && c.RemoteWrite.Enabled},
	} {
		if s.on {
			names = append(names, s.name)
		}
	}
	return names
}
