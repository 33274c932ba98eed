package pipeline

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/fanout/queue"
	"github.com/meshtrail/meshtrail/internal/sink/elasticsearch"
	"github.com/meshtrail/meshtrail/internal/sink/fluentd"
	"github.com/meshtrail/meshtrail/internal/sink/loki"
	"github.com/meshtrail/meshtrail/internal/sink/otlp"
	"github.com/meshtrail/meshtrail/internal/sink/promremote"
	"github.com/meshtrail/meshtrail/internal/sink/zipkin"
)

// Build validates c and returns one queued sink per enabled section, and a
// shutdown function that flushes (or persists to disk) what the queues
// hold, then closes the exporters. On error nothing is left running.
func Build(c *Sinks, reg prometheus.Registerer, logger *slog.Logger) ([]fanout.Sink, func(context.Context) error, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := &builder{reg: reg, logger: logger}
	if err := b.build(c); err != nil {
		_ = b.shutdown(context.Background())
		return nil, nil, err
	}
	return b.sinks, b.shutdown, nil
}

type builder struct {
	reg     prometheus.Registerer
	logger  *slog.Logger
	sinks   []fanout.Sink
	queues  []*queue.Queue
	closers []func(context.Context) error
}

func (b *builder) build(c *Sinks) error {
	if s := c.OTLP; s != nil && s.Enabled {
		tlsCfg, headers, err := clientSecurity("otlp", &s.Common)
		if err != nil {
			return err
		}
		// Sinks are named after their section, so routing rules, logs and
		// the sink="..." metric label all use the word the user wrote.
		exp, err := otlp.New(context.Background(), otlp.Options{
			Name: "otlp", Protocol: otlp.Protocol(s.Protocol), Endpoint: s.Endpoint, URLPath: s.URLPath,
			TLS: tlsCfg, Headers: headers, Gzip: s.Gzip, Timeout: s.Timeout.D(),
		})
		if err != nil {
			return err
		}
		b.closers = append(b.closers, exp.Shutdown)
		if err := b.add(exp, s.Queue); err != nil {
			return err
		}
	}
	if s := c.Zipkin; s != nil && s.Enabled {
		client, headers, err := httpClient("zipkin", &s.Common)
		if err != nil {
			return err
		}
		exp, err := zipkin.New(zipkin.Options{URL: s.URL, Client: client, Headers: headers})
		if err != nil {
			return err
		}
		if err := b.add(exp, s.Queue); err != nil {
			return err
		}
	}
	if s := c.Loki; s != nil && s.Enabled {
		client, headers, err := httpClient("loki", &s.Common)
		if err != nil {
			return err
		}
		exp, err := loki.New(loki.Options{URL: s.URL, Tenant: s.Tenant, TenantFromRecord: s.TenantFromRecord, ExtraLabels: s.ExtraLabels, Client: client, Headers: headers})
		if err != nil {
			return err
		}
		if err := b.add(exp, s.Queue); err != nil {
			return err
		}
	}
	if s := c.Elasticsearch; s != nil && s.Enabled {
		client, headers, err := httpClient("elasticsearch", &s.Common)
		if err != nil {
			return err
		}
		var dead io.Writer
		if s.DeadLetter != "" {
			f, err := os.OpenFile(s.DeadLetter, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
			if err != nil {
				return fmt.Errorf("sinks.elasticsearch.dead_letter: %w", err)
			}
			b.closers = append(b.closers, func(context.Context) error { return f.Close() })
			dead = f
		}
		exp, err := elasticsearch.New(elasticsearch.Options{
			URL: s.URL, Index: s.Index, DateLayout: s.DateLayout, TenantPrefixes: s.TenantPrefixes,
			Client: client, Headers: headers, DeadLetter: dead, Registerer: b.reg, Logger: b.logger,
		})
		if err != nil {
			return err
		}
		if err := b.add(exp, s.Queue); err != nil {
			return err
		}
	}
	if s := c.Fluentd; s != nil && s.Enabled {
		o := fluentd.Options{Address: s.Address, TagPrefix: s.TagPrefix, Timeout: s.Timeout.D()}
		if s.TLS != nil {
			o.TLS, o.InsecureSkipVerify = true, s.TLS.InsecureSkipVerify
		}
		exp, err := fluentd.New(o)
		if err != nil {
			return err
		}
		b.closers = append(b.closers, exp.Shutdown)
		if err := b.add(exp, s.Queue); err != nil {
			return err
		}
	}
	// prometheus_remote_write is no queued sink: NewRemoteWrite builds its
	// pusher from the RED metrics' registry.
	return nil
}

// NewRemoteWrite returns the pusher of the prometheus_remote_write section,
// which pushes what the RED metrics sink holds (its registry is g), or nil
// when the section is absent or disabled. The caller starts it and shuts it
// down after the sources stop, so its last push has every record.
func NewRemoteWrite(c *Sinks, g prometheus.Gatherer, reg prometheus.Registerer, logger *slog.Logger) (*promremote.Pusher, error) {
	s := c.RemoteWrite
	if s == nil || !s.Enabled {
		return nil, nil
	}
	client, headers, err := httpClient("prometheus_remote_write", &s.Common)
	if err != nil {
		return nil, err
	}
	p, err := promremote.NewPusher(promremote.Options{
		Gatherer: g, URL: s.URL, Client: client, Headers: headers,
		Interval: s.Interval.D(), Replica: s.Replica, ExternalLabels: s.ExternalLabels,
	}, reg, logger)
	if err != nil {
		return nil, fmt.Errorf("sinks.prometheus_remote_write: %w", err)
	}
	return p, nil
}

func (b *builder) add(exp fanout.Exporter, qc queue.Config) error {
	q, err := queue.New(exp, qc, b.reg, b.logger)
	if err != nil {
		return err
	}
	b.queues = append(b.queues, q)
	b.sinks = append(b.sinks, q)
	return nil
}

// shutdown drains every queue (concurrently: one slow backend must not
// eat the others' share of the deadline), then closes the exporters.
func (b *builder) shutdown(ctx context.Context) error {
	errc := make(chan error, len(b.queues))
	for _, q := range b.queues {
		go func() { errc <- q.Shutdown(ctx) }()
	}
	var errs []error
	for range b.queues {
		errs = append(errs, <-errc)
	}
	for _, c := range b.closers {
		errs = append(errs, c(ctx))
	}
	b.queues, b.closers = nil, nil
	return errors.Join(errs...)
}

// httpClient returns the client and headers a sink's requests use.
func httpClient(name string, c *Common) (*http.Client, map[string]string, error) {
	tlsCfg, headers, err := clientSecurity(name, c)
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

// clientSecurity loads the TLS material and resolves the credentials into
// request headers. Secret values are read here and only here; errors name
// the field and the variable or file, never the value.
func clientSecurity(name string, c *Common) (*tls.Config, map[string]string, error) {
	var tlsCfg *tls.Config
	if t := c.TLS; t != nil {
		tlsCfg = &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return nil, nil, fmt.Errorf("sinks.%s.tls.ca_file: %w", name, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("sinks.%s.tls.ca_file: no PEM certificate in %s", name, t.CAFile)
			}
			tlsCfg.RootCAs = pool
		}
		if t.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			if err != nil {
				return nil, nil, fmt.Errorf("sinks.%s.tls.cert_file: %w", name, err)
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
				return "", fmt.Errorf("sinks.%s.auth.%s_env: environment variable %s is not set", name, field, env)
			}
			return v, nil
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("sinks.%s.auth.%s_file: %w", name, field, err)
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
			return nil, nil, fmt.Errorf("sinks.%s.auth.headers_from_env.%s: environment variable %s is not set", name, h, env)
		}
		headers[h] = v
	}
	return tlsCfg, headers, nil
}
