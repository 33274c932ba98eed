package pipeline

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/meshtrail/meshtrail/internal/fanout/queue"
	"github.com/meshtrail/meshtrail/internal/sink/elasticsearch"
	"github.com/meshtrail/meshtrail/internal/sink/endpoint"
	"github.com/meshtrail/meshtrail/internal/sink/fluentd"
	"github.com/meshtrail/meshtrail/internal/sink/loki"
	"github.com/meshtrail/meshtrail/internal/sink/otlp"
	"github.com/meshtrail/meshtrail/internal/sink/promremote"
	"github.com/meshtrail/meshtrail/internal/sink/zipkin"
)

// Sinks is the `sinks:` section: one field per network sink, its key the
// sink's name (what routing rules, logs and the sink="..." label use).
// Each sink package owns its section's type, validation and construction:
// adding a sink is its package and one line here.
type Sinks struct {
	OTLP          *otlp.Config          `json:"otlp,omitempty"`
	Zipkin        *zipkin.Config        `json:"zipkin,omitempty"`
	Loki          *loki.Config          `json:"loki,omitempty"`
	Elasticsearch *elasticsearch.Config `json:"elasticsearch,omitempty"`
	Fluentd       *fluentd.Config       `json:"fluentd,omitempty"`
	RemoteWrite   *promremote.Config    `json:"prometheus_remote_write,omitempty"`
}

// section is what every sink's configuration is.
type section interface {
	On() bool
	Validate() error
}

// queued is a section that builds an exporter for a queue to drive (every
// sink but remote write, which pushes the RED metrics itself).
type queued interface {
	section
	Build(name string, d endpoint.Deps) (endpoint.Built, error)
	QueueConfig() queue.Config
}

type namedSection struct {
	name string
	section
}

// sections lists the sections present, in field order.
func (c *Sinks) sections() []namedSection {
	var out []namedSection
	v := reflect.ValueOf(c).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if f.IsNil() {
			continue
		}
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		out = append(out, namedSection{name, f.Interface().(section)})
	}
	return out
}

// Validate reports every invalid field of the enabled sinks, each error
// naming its field (sinks.loki.url: ...).
func (c *Sinks) Validate() error {
	var errs []error
	for _, s := range c.sections() {
		if !s.On() {
			continue
		}
		if err := s.Validate(); err != nil {
			for _, e := range endpoint.Unjoin(err) {
				errs = append(errs, sectionError(s.name, e))
			}
		}
	}
	return errors.Join(errs...)
}

// Enabled returns the names of the enabled sinks, in the order Build
// creates them.
func (c *Sinks) Enabled() []string {
	var names []string
	for _, s := range c.sections() {
		if s.On() {
			names = append(names, s.name)
		}
	}
	return names
}

// Only returns the sections named in names (all of them when names is
// empty), for a source that sends to some of the sinks (meshtrail tail
// --sinks). A name that is not an enabled section is an error naming it.
func (c Sinks) Only(names []string) (Sinks, error) {
	if len(names) == 0 {
		return c, nil
	}
	enabled := c.Enabled()
	for _, n := range names {
		if !slices.Contains(enabled, n) {
			return Sinks{}, fmt.Errorf("%q is not an enabled sink of the sinks: section (enabled: %s)", n, strings.Join(enabled, ", "))
		}
	}
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		if !slices.Contains(names, name) {
			v.Field(i).SetZero()
		}
	}
	return c, nil
}
