package elasticsearch

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"

	"github.com/meshtrail/meshtrail/internal/config"
	"github.com/meshtrail/meshtrail/internal/sink/endpoint"
)

// Config is the `sinks.elasticsearch` section: documents written with
// _bulk (Elasticsearch, OpenSearch, zincsearch).
type Config struct {
	endpoint.Common
	URL            string            `json:"url"`             // API base; _bulk is appended
	Index          string            `json:"index,omitempty"` // default meshtrail-{date}
	DateLayout     string            `json:"date_layout,omitempty"`
	TenantPrefixes map[string]string `json:"tenant_prefixes,omitempty"` // record tenant -> index prefix
	// DeadLetter is the NDJSON file for items the store rejected; ""
	// counts them only. Keep it distinct from queue.dead_letter.
	DeadLetter string `json:"dead_letter,omitempty"`
}

// Validate reports every wrong field, named relative to the section.
func (c *Config) Validate() error {
	errs := append(c.Common.Validate(), endpoint.CheckURL("url", c.URL))
	if c.Index != "" && (strings.ToLower(c.Index) != c.Index || strings.ContainsAny(c.Index, ` "*\<|,>/?`)) {
		errs = append(errs, config.Errorf("index", "%q: index names are lowercase without spaces or \"*\\<|,>/?", c.Index))
	}
	for t, p := range c.TenantPrefixes {
		if p == "" || strings.ToLower(p) != p {
			errs = append(errs, config.Errorf("tenant_prefixes."+t, "prefix %q must be non-empty lowercase", p))
		}
	}
	if c.DeadLetter != "" && c.DeadLetter == c.Queue.DeadLetter {
		errs = append(errs, config.Errorf("dead_letter", "must differ from queue.dead_letter (two writers on one file)"))
	}
	return errors.Join(errs...)
}

// Build makes the exporter, opening the dead-letter file.
func (c *Config) Build(_ string, d endpoint.Deps) (endpoint.Built, error) {
	client, headers, err := c.HTTPClient()
	if err != nil {
		return endpoint.Built{}, err
	}
	var dead io.Writer
	var closeDead func(context.Context) error
	if c.DeadLetter != "" {
		f, err := os.OpenFile(c.DeadLetter, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return endpoint.Built{}, config.Errorf("dead_letter", "%v", err)
		}
		dead, closeDead = f, func(context.Context) error { return f.Close() }
	}
	exp, err := New(Options{
		URL: c.URL, Index: c.Index, DateLayout: c.DateLayout, TenantPrefixes: c.TenantPrefixes,
		Client: client, Headers: headers, DeadLetter: dead, Registerer: d.Registerer, Logger: d.Logger,
	})
	if err != nil && closeDead != nil {
		_ = closeDead(context.Background())
	}
	return endpoint.Built{Exporter: exp, Close: closeDead}, err
}
