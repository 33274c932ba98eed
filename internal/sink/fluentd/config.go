package fluentd

import (
	"errors"

	"github.com/meshtrail/meshtrail/internal/config"
	"github.com/meshtrail/meshtrail/internal/sink/endpoint"
)

// Config is the `sinks.fluentd` section: forward-protocol events with
// acknowledgements (Fluentd, Fluent Bit, an OpenTelemetry Collector).
type Config struct {
	endpoint.Common
	Address   string `json:"address"` // host:port
	TagPrefix string `json:"tag_prefix,omitempty"`
}

// Validate reports every wrong field, named relative to the section.
func (c *Config) Validate() error {
	errs := append(c.Common.Validate(), endpoint.CheckAddr("address", c.Address))
	if c.Auth != nil {
		errs = append(errs, config.Errorf("auth", "not supported by the forward protocol client (use tls)"))
	}
	return errors.Join(errs...)
}

// Build makes the exporter.
func (c *Config) Build(_ string, _ endpoint.Deps) (endpoint.Built, error) {
	o := Options{Address: c.Address, TagPrefix: c.TagPrefix, Timeout: c.Timeout.D()}
	if c.TLS != nil {
		o.TLS, o.InsecureSkipVerify = true, c.TLS.InsecureSkipVerify
	}
	exp, err := New(o)
	if err != nil {
		return endpoint.Built{}, err
	}
	return endpoint.Built{Exporter: exp, Close: exp.Shutdown}, nil
}
