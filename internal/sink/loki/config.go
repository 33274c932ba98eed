package loki

import (
	"errors"

	"github.com/meshtrail/meshtrail/internal/config"
	"github.com/meshtrail/meshtrail/internal/sink/endpoint"
)

// Config is the `sinks.loki` section: log streams pushed to Loki.
type Config struct {
	endpoint.Common
	URL    string `json:"url"` // e.g. http://127.0.0.1:3100/loki/api/v1/push
	Tenant string `json:"tenant,omitempty"`
	// TenantFromRecord sends each record as its tenant (routing.tenant);
	// Tenant is then the tenant of records without one.
	TenantFromRecord bool              `json:"tenant_from_record,omitempty"`
	ExtraLabels      map[string]string `json:"extra_labels,omitempty"`
}

// Validate reports every wrong field, named relative to the section.
func (c *Config) Validate() error {
	errs := append(c.Common.Validate(), endpoint.CheckURL("url", c.URL))
	for k := range c.ExtraLabels {
		if !validLabel(k) {
			errs = append(errs, config.Errorf("extra_labels", "%q is not a valid label name", k))
		}
		switch k {
		case "namespace", "workload", "source", "status_class":
			errs = append(errs, config.Errorf("extra_labels", "%q is set by the sink itself", k))
		case "trace_id", "span_id":
			errs = append(errs, config.Errorf("extra_labels", "%q is unbounded: it travels as structured metadata", k))
		}
	}
	return errors.Join(errs...)
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

// Build makes the exporter.
func (c *Config) Build(_ string, _ endpoint.Deps) (endpoint.Built, error) {
	client, headers, err := c.HTTPClient()
	if err != nil {
		return endpoint.Built{}, err
	}
	exp, err := New(Options{URL: c.URL, Tenant: c.Tenant, TenantFromRecord: c.TenantFromRecord, ExtraLabels: c.ExtraLabels, Client: client, Headers: headers})
	return endpoint.Built{Exporter: exp}, err
}
