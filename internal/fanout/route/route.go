// Package route sends each record to the sinks its tenant or namespace is
// routed to, behind a per-tenant token-bucket quota so that one tenant's
// flood cannot fill the shared sink queues and starve the others.
//
// A Router is a record.Consumer placed between a source and the sinks
// (usually fanout/queue Queues, which never block). The YAML shape is in
// fanout/README.md.
package route

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/fanout/internal/ratelimit"
	"github.com/meshtrail/meshtrail/internal/record"
)

// Where a record's tenant is read from.
const (
	FromNodeNamespace        = "node_namespace"        // the reporting proxy's namespace
	FromDestinationNamespace = "destination_namespace" // the callee's namespace
	FromSourceNamespace      = "source_namespace"      // the caller's namespace
	FromHeader               = "header"                // a logged request header
)

// What happens to records over their tenant's quota.
const (
	ExcessDrop  = "drop"  // discard, counted
	ExcessSpill = "spill" // send to quota.spill_sink instead (e.g. a slow, disk-backed queue)
)

// Config is the `routing:` section.
type Config struct {
	Tenant TenantConfig `json:"tenant"`
	// Routes are tried in order; the first match decides a record's sinks.
	Routes []Rule `json:"routes,omitempty"`
	// DefaultSinks take records no rule matched. Empty: every sink.
	DefaultSinks []string    `json:"default_sinks,omitempty"`
	Quota        QuotaConfig `json:"quota"`
}

// TenantConfig says what a record's tenant is.
type TenantConfig struct {
	From    string `json:"from,omitempty"`    // node_namespace (default) | destination_namespace | source_namespace | header
	Header  string `json:"header,omitempty"`  // for from: header, e.g. x-tenant
	Default string `json:"default,omitempty"` // when the field is empty; default "unknown"
}

// Rule routes the records of some tenants or namespaces to some sinks.
type Rule struct {
	Tenants    []string `json:"tenants,omitempty"`    // match the tenant
	Namespaces []string `json:"namespaces,omitempty"` // match Node.Namespace
	Sinks      []string `json:"sinks"`
}

// Limit is a token bucket in records.
type Limit struct {
	RecordsPerSecond float64 `json:"records_per_second"`
	Burst            int     `json:"burst,omitempty"` // default: one second's worth
}

// QuotaConfig limits each tenant; RecordsPerSecond 0 disables quotas.
type QuotaConfig struct {
	Limit                       // every tenant's default
	Tenants    map[string]Limit `json:"tenants,omitempty"`     // per-tenant overrides
	Excess     string           `json:"excess,omitempty"`      // drop (default) | spill
	SpillSink  string           `json:"spill_sink,omitempty"`  // for excess: spill
	MaxTenants int              `json:"max_tenants,omitempty"` // buckets kept; later tenants share one. Default 10000
}

func (c Config) withDefaults() Config {
	if c.Tenant.From == "" {
		c.Tenant.From = FromNodeNamespace
	}
	if c.Tenant.Default == "" {
		c.Tenant.Default = "unknown"
	}
	if c.Quota.Excess == "" {
		c.Quota.Excess = ExcessDrop
	}
	if c.Quota.MaxTenants == 0 {
		c.Quota.MaxTenants = 10000
	}
	return c
}

// Validate checks c against the sinks that exist; errors name the field.
func (c Config) Validate(sinks map[string]record.Consumer) error {
	c = c.withDefaults()
	var errs []error
	bad := func(field, msg string) { errs = append(errs, fmt.Errorf("routing.%s: %s", field, msg)) }
	known := func(field string, names []string) {
		for _, n := range names {
			if _, ok := sinks[n]; !ok {
				bad(field, fmt.Sprintf("unknown sink %q", n))
			}
		}
	}
	switch c.Tenant.From {
	case FromNodeNamespace, FromDestinationNamespace, FromSourceNamespace:
	case FromHeader:
		if c.Tenant.Header == "" {
			bad("tenant.header", "must be set when tenant.from is header")
		}
	default:
		bad("tenant.from", fmt.Sprintf("%q: must be node_namespace, destination_namespace, source_namespace or header", c.Tenant.From))
	}
	for i, r := range c.Routes {
		f := fmt.Sprintf("routes[%d]", i)
		if len(r.Tenants) == 0 && len(r.Namespaces) == 0 {
			bad(f, "needs tenants or namespaces")
		}
		if len(r.Sinks) == 0 {
			bad(f+".sinks", "must not be empty")
		}
		known(f+".sinks", r.Sinks)
	}
	known("default_sinks", c.DefaultSinks)
	checkLimit := func(f string, l Limit) {
		if l.RecordsPerSecond < 0 {
			bad(f+".records_per_second", "must be >= 0")
		}
		if l.Burst < 0 {
			bad(f+".burst", "must be >= 0")
		}
	}
	checkLimit("quota", c.Quota.Limit)
	for t, l := range c.Quota.Tenants {
		checkLimit("quota.tenants."+t, l)
	}
	switch c.Quota.Excess {
	case ExcessDrop:
	case ExcessSpill:
		if c.Quota.SpillSink == "" {
			bad("quota.spill_sink", "must be set when quota.excess is spill")
		}
		known("quota.spill_sink", []string{c.Quota.SpillSink})
	default:
		bad("quota.excess", fmt.Sprintf("%q: must be drop or spill", c.Quota.Excess))
	}
	if c.Quota.MaxTenants < 0 {
		bad("quota.max_tenants", "must be >= 0")
	}
	return errors.Join(errs...)
}

// TenantFunc returns a record's tenant as cfg says. Sinks use it too, to
// put a tenant in an index name or a label.
func TenantFunc(cfg TenantConfig) func(*record.Record) string {
	cfg = Config{Tenant: cfg}.withDefaults().Tenant
	pick := func(r *record.Record) string { return r.Node.Namespace }
	switch cfg.From {
	case FromDestinationNamespace:
		pick = func(r *record.Record) string { return r.Destination.Namespace }
	case FromSourceNamespace:
		pick = func(r *record.Record) string { return r.Source.Namespace }
	case FromHeader:
		h := cfg.Header
		pick = func(r *record.Record) string { return r.RequestHeaders[h] }
	}
	return func(r *record.Record) string {
		if t := pick(r); t != "" {
			return t
		}
		return cfg.Default
	}
}

// Router is a record.Consumer that routes records to sinks under tenant
// quotas.
type Router struct {
	cfg    Config
	tenant func(*record.Record) string
	sinks  map[string]record.Consumer
	names  []string // sorted, for a stable delivery order
	log    *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	buckets map[string]*ratelimit.Bucket
	shared  *ratelimit.Bucket // tenants beyond max_tenants

	routed   *prometheus.CounterVec // sink
	exceeded *prometheus.CounterVec // tenant, action
	noRoute  prometheus.Counter
	labelled map[string]bool // tenants named in the config: the only tenant label values
}

// New returns a Router over sinks (by name). reg receives its metrics
// (nil: none); logger nil discards logs.
func New(cfg Config, sinks map[string]record.Consumer, reg prometheus.Registerer, logger *slog.Logger) (*Router, error) {
	if err := cfg.Validate(sinks); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Router{
		cfg: cfg, tenant: TenantFunc(cfg.Tenant), sinks: sinks, log: logger, now: time.Now,
		buckets:  map[string]*ratelimit.Bucket{},
		labelled: map[string]bool{},
		routed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrail_route_records_total", Help: "Records routed to each sink.",
		}, []string{"sink"}),
		exceeded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrail_route_quota_exceeded_total",
			Help: "Records over their tenant's quota, by action (dropped, spilled). Tenants not named in the config are \"other\".",
		}, []string{"tenant", "action"}),
		noRoute: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshtrail_route_unrouted_total", Help: "Records no rule matched while default_sinks routes nowhere.",
		}),
	}
	for n := range sinks {
		r.names = append(r.names, n)
	}
	slices.Sort(r.names)
	for t := range cfg.Quota.Tenants {
		r.labelled[t] = true
	}
	for _, rule := range cfg.Routes {
		for _, t := range rule.Tenants {
			r.labelled[t] = true
		}
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.routed, r.exceeded, r.noRoute} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("routing: metrics: %w", err)
			}
		}
	}
	return r, nil
}

func (r *Router) label(tenant string) string {
	if r.labelled[tenant] {
		return tenant
	}
	return "other"
}

// bucket returns tenant's quota bucket, nil when it has none.
func (r *Router) bucket(tenant string) *ratelimit.Bucket {
	l, ok := r.cfg.Quota.Tenants[tenant]
	if !ok {
		l = r.cfg.Quota.Limit
	}
	if l.RecordsPerSecond <= 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.buckets[tenant]; b != nil {
		return b
	}
	burst := l.Burst
	if burst == 0 {
		burst = max(1, int(l.RecordsPerSecond))
	}
	if !ok && len(r.buckets) >= r.cfg.Quota.MaxTenants {
		if r.shared == nil {
			r.shared = ratelimit.New(l.RecordsPerSecond, burst)
			r.log.Warn("routing: more tenants than quota.max_tenants; the rest share one quota", "max_tenants", r.cfg.Quota.MaxTenants)
		}
		return r.shared
	}
	b := ratelimit.New(l.RecordsPerSecond, burst)
	r.buckets[tenant] = b
	return b
}

// tenantOf is the tenant the pipeline gave rec, or the configured one when
// the Router is used on its own.
func (r *Router) tenantOf(rec *record.Record) string {
	if rec.Tenant != "" {
		return rec.Tenant
	}
	return r.tenant(rec)
}

// sinksFor returns the sinks rec goes to.
func (r *Router) sinksFor(rec *record.Record, tenant string) []string {
	for _, rule := range r.cfg.Routes {
		if slices.Contains(rule.Tenants, tenant) || slices.Contains(rule.Namespaces, rec.Node.Namespace) {
			return rule.Sinks
		}
	}
	if len(r.cfg.DefaultSinks) > 0 {
		return r.cfg.DefaultSinks
	}
	return r.names
}

// ConsumeRecords applies the quotas and hands each sink its records in one
// call, in the order they came. Errors from sinks are joined.
func (r *Router) ConsumeRecords(ctx context.Context, recs []*record.Record) error {
	now := r.now()
	// Group by tenant to take each tenant's tokens once per call.
	byTenant := map[string][]int{}
	var tenants []string
	for i, rec := range recs {
		t := r.tenantOf(rec)
		if _, ok := byTenant[t]; !ok {
			tenants = append(tenants, t)
		}
		byTenant[t] = append(byTenant[t], i)
	}
	admit := make([]bool, len(recs))
	var spill []*record.Record
	for _, t := range tenants {
		idx := byTenant[t]
		ok := len(idx)
		if b := r.bucket(t); b != nil {
			ok = b.TakeUpTo(now, len(idx))
		}
		for _, i := range idx[:ok] {
			admit[i] = true
		}
		if over := len(idx) - ok; over > 0 {
			if r.cfg.Quota.Excess == ExcessSpill {
				for _, i := range idx[ok:] {
					spill = append(spill, recs[i])
				}
				r.exceeded.WithLabelValues(r.label(t), "spilled").Add(float64(over))
			} else {
				r.exceeded.WithLabelValues(r.label(t), "dropped").Add(float64(over))
			}
		}
	}
	perSink := map[string][]*record.Record{}
	for i, rec := range recs {
		if !admit[i] {
			continue
		}
		dst := r.sinksFor(rec, r.tenantOf(rec))
		if len(dst) == 0 {
			r.noRoute.Inc()
			continue
		}
		for _, s := range dst {
			perSink[s] = append(perSink[s], rec)
		}
	}
	if len(spill) > 0 {
		perSink[r.cfg.Quota.SpillSink] = append(perSink[r.cfg.Quota.SpillSink], spill...)
	}
	var errs []error
	for _, name := range r.names {
		batch := perSink[name]
		if len(batch) == 0 {
			continue
		}
		r.routed.WithLabelValues(name).Add(float64(len(batch)))
		if err := r.sinks[name].ConsumeRecords(ctx, batch); err != nil {
			errs = append(errs, fmt.Errorf("sink %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
