package promremote

import (
	"errors"
	"log/slog"
	"reflect"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/config"
	"github.com/meshtrail/meshtrail/internal/fanout/queue"
	"github.com/meshtrail/meshtrail/internal/sink/endpoint"
)

// Config is the `sinks.prometheus_remote_write` section: the RED metrics
// pushed every interval. It is no queued sink: its queue section is
// refused.
type Config struct {
	endpoint.Common
	URL            string            `json:"url"`                // e.g. http://127.0.0.1:9090/api/v1/write
	Interval       config.Duration   `json:"interval,omitempty"` // default 15s
	Replica        string            `json:"replica,omitempty"`  // default $POD_NAME, else the host name
	ExternalLabels map[string]string `json:"external_labels,omitempty"`
}

// Validate reports every wrong field, named relative to the section.
func (c *Config) Validate() error {
	errs := append(c.Common.Validate(), endpoint.CheckURL("url", c.URL))
	if !reflect.DeepEqual(c.Queue, queue.Config{}) {
		errs = append(errs, config.Errorf("queue", "not used: remote write pushes the RED metrics every interval (set interval)"))
	}
	if c.Interval.D() < 0 {
		errs = append(errs, config.Errorf("interval", "negative"))
	}
	return errors.Join(errs...)
}

// BuildPusher makes the pusher of what red (the RED metrics' registry)
// holds; reg takes the pusher's own metrics.
func (c *Config) BuildPusher(red prometheus.Gatherer, reg prometheus.Registerer, logger *slog.Logger) (*Pusher, error) {
	client, headers, err := c.HTTPClient()
	if err != nil {
		return nil, err
	}
	return NewPusher(Options{
		Gatherer: red, URL: c.URL, Client: client, Headers: headers,
		Interval: c.Interval.D(), Replica: c.Replica, ExternalLabels: c.ExternalLabels,
	}, reg, logger)
}
