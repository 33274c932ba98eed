package otlp

import (
	"context"
	"errors"

	"github.com/meshtrail/meshtrail/internal/config"
	"github.com/meshtrail/meshtrail/internal/sink/endpoint"
)

// Config is the `sinks.otlp` section: spans over OTLP (Jaeger v2, an
// OpenTelemetry Collector, Tempo).
type Config struct {
	endpoint.Common
	Protocol string `json:"protocol,omitempty"` // grpc (default) | http
	Endpoint string `json:"endpoint"`           // host:port
	URLPath  string `json:"url_path,omitempty"` // http only; default /v1/traces
	Gzip     bool   `json:"gzip,omitempty"`
}

// Validate reports every wrong field, named relative to the section.
func (c *Config) Validate() error {
	errs := c.Common.Validate()
	errs = append(errs, endpoint.CheckAddr("endpoint", c.Endpoint))
	if c.Protocol != "" && c.Protocol != "grpc" && c.Protocol != "http" {
		errs = append(errs, config.Errorf("protocol", "%q: want grpc or http", c.Protocol))
	}
	if c.URLPath != "" && c.Protocol != "http" {
		errs = append(errs, config.Errorf("url_path", "only with protocol: http"))
	}
	return errors.Join(errs...)
}

// Build makes the exporter named name (the section's name: routing rules,
// logs and the sink="..." label use the word the user wrote).
func (c *Config) Build(name string, _ endpoint.Deps) (endpoint.Built, error) {
	tlsCfg, headers, err := c.Security()
	if err != nil {
		return endpoint.Built{}, err
	}
	exp, err := New(context.Background(), Options{
		Name: name, Protocol: Protocol(c.Protocol), Endpoint: c.Endpoint, URLPath: c.URLPath,
		TLS: tlsCfg, Headers: headers, Gzip: c.Gzip, Timeout: c.Timeout.D(),
	})
	if err != nil {
		return endpoint.Built{}, err
	}
	return endpoint.Built{Exporter: exp, Close: exp.Shutdown}, nil
}
