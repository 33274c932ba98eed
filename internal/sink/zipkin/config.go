package zipkin

import (
	"errors"

	"github.com/meshtrail/meshtrail/internal/sink/endpoint"
)

// Config is the `sinks.zipkin` section: spans as Zipkin v2 JSON.
type Config struct {
	endpoint.Common
	URL string `json:"url"` // e.g. http://127.0.0.1:9411/api/v2/spans
}

// Validate reports every wrong field, named relative to the section.
func (c *Config) Validate() error {
	return errors.Join(append(c.Common.Validate(), endpoint.CheckURL("url", c.URL))...)
}

// Build makes the exporter.
func (c *Config) Build(_ string, _ endpoint.Deps) (endpoint.Built, error) {
	client, headers, err := c.HTTPClient()
	if err != nil {
		return endpoint.Built{}, err
	}
	exp, err := New(Options{URL: c.URL, Client: client, Headers: headers})
	return endpoint.Built{Exporter: exp}, err
}
