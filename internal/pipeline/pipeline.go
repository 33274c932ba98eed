// Package pipeline is the middle of meshtrail's one-way flow, shared by
// every source:
//
//	source -> Consumer -> tenant -> NDJSON file, RED metrics, router -> queue -> exporter
//
// New builds it from the configuration a process was given (`out`,
// `metrics`, `sinks:` and `routing:`, the same keys in `meshtrail als` and
// `meshtrail tail` files); cmd/meshtrail hands each source a Consumer from
// it. Sources import no sink: they see only a record.Consumer.
//
// A source picks how a batch is accepted (Delivery): Queued returns as soon
// as every sink has taken the batch into its queue, dropping by each
// queue's overflow policy when one is full (the ALS receiver: ALS has no
// acknowledgement and HTTP/2 flow control is its back-pressure);
// Acknowledged returns nil only once every sink the batch was routed to
// holds it (on disk, fsynced, where that sink has a disk queue; in memory
// otherwise), and an error when one cannot, so a source that can read
// again (the tail agent's file offsets, an OTLP client) keeps its position
// until then.
//
// Shutdown is ordered and idempotent: the caller stops its sources first;
// remote write pushes the RED metrics a last time; then every queue drains or persists to disk (concurrently, so one slow
// backend does not eat the others' share of the deadline), the exporters
// close, and last the NDJSON file is flushed and closed.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/config"
	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/fanout/route"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/sink/istiometrics"
	"github.com/meshtrail/meshtrail/internal/sink/ndjson"
	"github.com/meshtrail/meshtrail/internal/sink/promremote"
)

// Config is the part of a process's configuration the pipeline is built
// from. Its keys sit at the top level of `meshtrail als` and `meshtrail
// tail` files, beside the source's own.
type Config struct {
	// Out is where NDJSON records go: a file path (size-rotated) or "-" for
	// stdout. Empty disables the file output.
	Out         string   `json:"out"`
	OutRotation Rotation `json:"out_rotation"`
	// Metrics are the Istio-style RED metrics derived from access records.
	Metrics MetricsConfig `json:"metrics"`
	// Sinks are the backends every record is also sent to, each through its
	// own bounded queue (internal/sink/README.md): otlp, zipkin, loki,
	// elasticsearch, fluentd, prometheus_remote_write.
	Sinks Sinks `json:"sinks,omitempty"`
	// Routing sends records to some of the sinks by tenant or namespace,
	// with per-tenant quotas (internal/fanout/README.md). Without it every
	// sink gets every record. Its tenant setting also decides
	// record.Tenant, which the Loki and Elasticsearch sinks key on.
	Routing *route.Config `json:"routing,omitempty"`
}

// Rotation bounds the NDJSON file.
type Rotation struct {
	MaxSizeMB  int  `json:"max_size_mb"`
	MaxBackups int  `json:"max_backups"`
	Compress   bool `json:"compress"`
}

// MetricsConfig configures the Istio-style RED metrics derived from the
// access logs.
type MetricsConfig struct {
	// Disabled turns the RED metrics off.
	Disabled bool `json:"disabled"`
	// Prefix of the metric names. The default "meshtrail_" cannot collide
	// with (and so never double-counts beside) Istio's own istio_* metrics;
	// "istio_" lets Kiali draw its graph from them when Istio's own
	// telemetry is off.
	Prefix string `json:"prefix"`
	// MaxSeries bounds the label combinations kept; new combinations past
	// it are counted in meshtrail_red_series_dropped_total.
	MaxSeries int `json:"max_series"`
}

// DefaultConfig is NDJSON to stdout and RED metrics with the meshtrail_
// prefix: what runs with no configuration at all.
func DefaultConfig() Config {
	return Config{
		Out:         "-",
		OutRotation: Rotation{MaxSizeMB: 100, MaxBackups: 5},
		Metrics:     MetricsConfig{Prefix: "meshtrail_", MaxSeries: 50000},
	}
}

// Validate checks every field and names the first wrong one.
func (c *Config) Validate() error {
	if c.Out != "" && c.Out != "-" && c.OutRotation.MaxSizeMB <= 0 {
		return config.Errorf("out_rotation.max_size_mb", "must be > 0, got %d", c.OutRotation.MaxSizeMB)
	}
	if c.OutRotation.MaxBackups < 0 {
		return config.Errorf("out_rotation.max_backups", "must be >= 0, got %d", c.OutRotation.MaxBackups)
	}
	if !c.Metrics.Disabled {
		if p := c.Metrics.Prefix; p != "" && !validMetricPrefix(p) {
			return config.Errorf("metrics.prefix", "%q is not a valid Prometheus metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)", p)
		}
		if c.Metrics.MaxSeries < 0 {
			return config.Errorf("metrics.max_series", "must be >= 0 (0 = default), got %d", c.Metrics.MaxSeries)
		}
	}
	sc, err := c.sinks()
	if err != nil {
		return err
	}
	if c.Routing != nil {
		if sc == nil || len(sc.Enabled()) == 0 {
			return config.Errorf("routing", "routes records between sinks: enable at least one in the sinks: section")
		}
		known := map[string]record.Consumer{}
		for _, name := range sc.Enabled() {
			known[name] = nil
		}
		if err := c.Routing.Validate(known); err != nil {
			return err
		}
	}
	return nil
}

// sinks validates the sinks: section (nil when it enables none).
func (c *Config) sinks() (*Sinks, error) {
	if len(c.Sinks.Enabled()) == 0 {
		return nil, nil
	}
	if err := c.Sinks.Validate(); err != nil {
		return nil, err
	}
	return &c.Sinks, nil
}

func validMetricPrefix(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		ok := c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			return false
		}
	}
	return true
}

// Delivery is when a Consumer's ConsumeRecords returns.
type Delivery int

const (
	// Queued returns once every sink took the batch into its queue; a full
	// queue drops by its overflow policy (counted). For sources that cannot
	// read again and are held back by flow control (ALS).
	Queued Delivery = iota
	// Acknowledged returns nil only once every sink the batch was routed
	// to holds it: durably where that sink has a disk queue, in memory
	// otherwise. A full queue is an error, never a silent drop.
	Acknowledged
)

// Pipeline is a built pipeline. See the package documentation.
type Pipeline struct {
	log      *slog.Logger
	tenant   func(*record.Record) string // for records that come without one
	sinks    []fanout.Sink               // in delivery order: file, metrics, backends or router
	ndjson   *ndjson.Sink
	metrics  *istiometrics.Metrics
	red      *prometheus.Registry // the RED metrics' own registry: what remote write pushes
	pusher   *promremote.Pusher
	backends func(context.Context) error // drains the queues, closes the exporters
	names    []string

	stopOnce sync.Once
	stopErr  error
}

// New validates cfg and builds the pipeline; reg receives every sink's
// metrics. On error nothing is left running.
func New(cfg Config, reg prometheus.Registerer, logger *slog.Logger) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Pipeline{log: logger, tenant: route.TenantFunc(route.TenantConfig{})}
	if cfg.Routing != nil {
		p.tenant = route.TenantFunc(cfg.Routing.Tenant)
	}
	if cfg.Out != "" {
		nd, err := ndjson.New(cfg.Out, ndjson.Rotation(cfg.OutRotation), reg, logger)
		if err != nil {
			return nil, fmt.Errorf("out: %w", err)
		}
		p.ndjson = nd
		p.sinks = append(p.sinks, nd)
	}
	if !cfg.Metrics.Disabled {
		// A registry of their own: remote write pushes it as it is, and
		// /metrics serves it beside the process's (Gatherer).
		p.red = prometheus.NewRegistry()
		m, err := istiometrics.New(istiometrics.Options{Prefix: cfg.Metrics.Prefix, MaxSeries: cfg.Metrics.MaxSeries}, p.red)
		if err != nil {
			_ = p.closeFile()
			return nil, fmt.Errorf("metrics: %w", err)
		}
		p.metrics = m
		p.sinks = append(p.sinks, m)
	}
	sc, _ := cfg.sinks() // validated above
	if sc != nil {
		if sc.RemoteWrite != nil && sc.RemoteWrite.Enabled && p.red == nil {
			_ = p.closeFile()
			return nil, config.Errorf("sinks.prometheus_remote_write", "pushes the RED metrics, which metrics.disabled turns off")
		}
		backends, shutdown, err := Build(sc, reg, logger)
		if err != nil {
			_ = p.closeFile()
			return nil, err
		}
		p.backends = shutdown
		if p.pusher, err = NewRemoteWrite(sc, p.red, reg, logger); err != nil {
			_ = shutdown(context.Background())
			_ = p.closeFile()
			return nil, err
		}
		if p.pusher != nil {
			p.pusher.Start()
		}
		for _, b := range backends {
			p.names = append(p.names, b.Name())
		}
		if cfg.Routing != nil {
			byName := make(map[string]record.Consumer, len(backends))
			for _, b := range backends {
				byName[b.Name()] = deliverer{b}
			}
			router, err := route.New(*cfg.Routing, byName, reg, logger)
			if err != nil {
				_ = shutdown(context.Background())
				_ = p.closeFile()
				return nil, fmt.Errorf("routing: %w", err)
			}
			p.sinks = append(p.sinks, named{router, "router"})
		} else {
			for _, b := range backends {
				p.sinks = append(p.sinks, named{deliverer{b}, b.Name()})
			}
		}
		logger.Info("sinks ready", "sinks", p.names, "routing", cfg.Routing != nil)
	}
	return p, nil
}

// Gatherer is what /metrics serves besides the process's registry: the
// RED metrics (nil when they are disabled).
func (p *Pipeline) Gatherer() prometheus.Gatherer {
	if p.red == nil {
		return nil
	}
	return p.red
}

// Sinks names the backends built from the sinks: section.
func (p *Pipeline) Sinks() []string { return p.names }

// Consumer returns the record.Consumer a source hands its records to.
func (p *Pipeline) Consumer(d Delivery) record.Consumer {
	return &consumer{p: p, durable: d == Acknowledged}
}

type consumer struct {
	p       *Pipeline
	durable bool
}

// ConsumeRecords sets each record's tenant, then gives the batch to every
// sink in turn; every sink is tried even when one fails.
func (c *consumer) ConsumeRecords(ctx context.Context, recs []*record.Record) error {
	if len(recs) == 0 {
		return nil
	}
	// The records are not shared yet: this is the one place that writes
	// them after the source.
	for _, r := range recs {
		if r.Tenant == "" {
			r.Tenant = c.p.tenant(r)
		}
	}
	if c.durable {
		ctx = context.WithValue(ctx, durableKey{}, true)
	}
	var errs []error
	for _, s := range c.p.sinks {
		if err := s.ConsumeRecords(ctx, recs); err != nil {
			errs = append(errs, &fanout.SinkError{Sink: s.Name(), Err: err})
		}
	}
	return errors.Join(errs...)
}

// durableKey marks a context whose batch must be held durably before the
// call returns (Acknowledged). Only this package sets and reads it: the
// router passes the context through to the queues unchanged.
type durableKey struct{}

// durableConsumer is a queue that can hold a batch durably before it
// returns (fanout/queue.Queue).
type durableConsumer interface {
	ConsumeDurable(ctx context.Context, recs []*record.Record) error
}

// deliverer calls a backend's queue the way the batch's context asks.
type deliverer struct{ s fanout.Sink }

func (d deliverer) ConsumeRecords(ctx context.Context, recs []*record.Record) error {
	if ctx.Value(durableKey{}) != nil {
		if dc, ok := d.s.(durableConsumer); ok {
			return dc.ConsumeDurable(ctx, recs)
		}
	}
	return d.s.ConsumeRecords(ctx, recs)
}

// named lets a record.Consumer sit among the sinks.
type named struct {
	record.Consumer
	name string
}

func (n named) Name() string { return n.name }

// Shutdown drains or persists every queue, closes the exporters, then
// flushes and closes the NDJSON file. Stop the sources first. Calling it
// again returns the first result.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	p.stopOnce.Do(func() {
		var errs []error
		if p.pusher != nil {
			// First: every record is counted once the sources have stopped,
			// and the last push need not wait for the queues.
			errs = append(errs, p.pusher.Shutdown(ctx))
		}
		if p.backends != nil {
			errs = append(errs, p.backends(ctx))
		}
		errs = append(errs, p.closeFile())
		p.stopErr = errors.Join(errs...)
	})
	return p.stopErr
}

func (p *Pipeline) closeFile() error {
	if p.ndjson == nil {
		return nil
	}
	return p.ndjson.Close()
}
