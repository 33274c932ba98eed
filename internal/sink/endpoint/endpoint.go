// Package endpoint is what every network sink's section of `sinks:` shares:
// whether it is on, how it reaches its backend (TLS, credentials, request
// timeout) and its queue, with their validation and the HTTP client built
// from them. Each sink package embeds Common in its own Config.
//
// Secrets never appear in the configuration itself: auth fields name an
// environment variable or a file that holds the secret, read once when the
// sink is built, and never logged.
package endpoint

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/config"
	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/fanout/queue"
)

// Common are the fields every network sink has.
type Common struct {
	Enabled bool            `json:"enabled"`
	TLS     *TLS            `json:"tls,omitempty"`
	Auth    *Auth           `json:"auth,omitempty"`
	Timeout config.Duration `json:"timeout,omitempty"` // one request; default 10s
	Queue   queue.Config    `json:"queue"`
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

// On reports whether the section is enabled.
func (c *Common) On() bool { return c != nil && c.Enabled }

// QueueConfig is the section's queue.
func (c *Common) QueueConfig() queue.Config { return c.Queue }

// Deps is what building a sink may use besides its configuration.
type Deps struct {
	Registerer prometheus.Registerer // the sink's own metrics; may be nil
	Logger     *slog.Logger
}

// Built is what a queued sink's section builds: the exporter its queue
// drives and what to close once that queue has drained (nil: nothing).
type Built struct {
	Exporter fanout.Exporter
	Close    func(context.Context) error
}

// Validate reports the shared fields' problems, each a *config.FieldError
// named relative to the section (tls, auth.username, queue.workers).
func (c *Common) Validate() []error {
	var errs []error
	bad := func(field, msg string) { errs = append(errs, config.Errorf(field, "%s", msg)) }
	if c.Timeout < 0 {
		bad("timeout", "must be >= 0")
	}
	if t := c.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		bad("tls", "cert_file and key_file go together")
	}
	if a := c.Auth; a != nil {
		schemes := 0
		if a.BearerTokenEnv != "" || a.BearerTokenFile != "" {
			schemes++
			if a.BearerTokenEnv != "" && a.BearerTokenFile != "" {
				bad("auth", "bearer_token_env and bearer_token_file are exclusive")
			}
		}
		if a.Username != "" || a.PasswordEnv != "" || a.PasswordFile != "" {
			schemes++
			if a.Username == "" {
				bad("auth.username", "required with password_env/password_file")
			}
			if (a.PasswordEnv == "") == (a.PasswordFile == "") {
				bad("auth", "basic auth needs exactly one of password_env, password_file")
			}
		}
		if schemes > 1 {
			bad("auth", "bearer token and basic auth are exclusive")
		}
	}
	if err := c.Queue.WithDefaults().Validate(); err != nil {
		// The queue names its fields from the section ("queue.workers: ...").
		for _, e := range Unjoin(err) {
			field, msg, ok := strings.Cut(e.Error(), ": ")
			if !ok {
				field, msg = "queue", e.Error()
			}
			errs = append(errs, config.Errorf(field, "%s", msg))
		}
	}
	return errs
}

// CheckURL is nil when u is an http(s) URL; field names it otherwise.
func CheckURL(field, u string) error {
	if u == "" {
		return config.Errorf(field, "required when enabled")
	}
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return config.Errorf(field, "%q is not an http(s) URL", u)
	}
	return nil
}

// CheckAddr is nil when a is host:port; field names it otherwise.
func CheckAddr(field, a string) error {
	if a == "" {
		return config.Errorf(field, "required when enabled")
	}
	if _, _, err := net.SplitHostPort(a); err != nil {
		return config.Errorf(field, "%q is not host:port", a)
	}
	return nil
}

// Unjoin lists the errors errors.Join put together (err itself otherwise).
func Unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// HTTPClient returns the client and headers the sink's requests use.
func (c *Common) HTTPClient() (*http.Client, map[string]string, error) {
	tlsCfg, headers, err := c.Security()
	if err != nil {
		return nil, nil, err
	}
	timeout := c.Timeout.D()
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	tr.MaxIdleConnsPerHost = 16
	return &http.Client{Transport: tr, Timeout: timeout}, headers, nil
}

// Security loads the TLS material and resolves the credentials into
// request headers. Secret values are read here and only here; errors name
// the field and the variable or file, never the value.
func (c *Common) Security() (*tls.Config, map[string]string, error) {
	var tlsCfg *tls.Config
	if t := c.TLS; t != nil {
		tlsCfg = &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return nil, nil, config.Errorf("tls.ca_file", "%v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, config.Errorf("tls.ca_file", "no PEM certificate in %s", t.CAFile)
			}
			tlsCfg.RootCAs = pool
		}
		if t.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			if err != nil {
				return nil, nil, config.Errorf("tls.cert_file", "%v", err)
			}
			tlsCfg.Certificates = []tls.Certificate{cert}
		}
	}
	headers := map[string]string{}
	a := c.Auth
	if a == nil {
		return tlsCfg, headers, nil
	}
	secret := func(field, env, file string) (string, error) {
		if env != "" {
			v, ok := os.LookupEnv(env)
			if !ok || v == "" {
				return "", config.Errorf("auth."+field+"_env", "environment variable %s is not set", env)
			}
			return v, nil
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", config.Errorf("auth."+field+"_file", "%v", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	switch {
	case a.BearerTokenEnv != "" || a.BearerTokenFile != "":
		tok, err := secret("bearer_token", a.BearerTokenEnv, a.BearerTokenFile)
		if err != nil {
			return nil, nil, err
		}
		headers["Authorization"] = "Bearer " + tok
	case a.Username != "":
		pw, err := secret("password", a.PasswordEnv, a.PasswordFile)
		if err != nil {
			return nil, nil, err
		}
		headers["Authorization"] = "Basic " + base64.StdEncoding.EncodeToString([]byte(a.Username+":"+pw))
	}
	for h, env := range a.HeadersFromEnv {
		v, ok := os.LookupEnv(env)
		if !ok {
			return nil, nil, config.Errorf("auth.headers_from_env."+h, "environment variable %s is not set", env)
		}
		headers[h] = v
	}
	return tlsCfg, headers, nil
}
