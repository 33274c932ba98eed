package main

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/meshtrail/meshtrail/internal/filterstate"
	"github.com/meshtrail/meshtrail/internal/tracecontext"
)

// Config is the plugin configuration: the JSON in a WasmPlugin's
// pluginConfig or Envoy's `configuration`. Every field is optional; the zero
// document `{}` gives Istio's standard metrics, W3C + B3 multi propagation at
// a 1% sampling rate and the trace attributes in filter state.
type Config struct {
	// Reporter is "auto" (from Envoy's xds.listener_direction: inbound is
	// "destination", outbound "source"), "source" or "destination".
	Reporter  string          `json:"reporter"`
	Tracing   TracingConfig   `json:"tracing"`
	Metrics   MetricsConfig   `json:"metrics"`
	AccessLog AccessLogConfig `json:"access_log"`
}

// TracingConfig controls trace context propagation.
type TracingConfig struct {
	Disabled bool `json:"disabled"`
	// Formats written outbound: any of "w3c", "b3" (single header),
	// "b3multi". Inbound, every format is read whatever this says.
	Formats []string `json:"formats"`
	// SamplingPercentage (0-100) applies to traces started here and to
	// inbound contexts that defer the decision. Default 1, as Istio.
	SamplingPercentage *float64 `json:"sampling_percentage"`
	// TraceStateKey, when set, is our tracestate member; its value is the
	// span id we send upstream.
	TraceStateKey string `json:"tracestate_key"`
}

// MetricsConfig controls the Istio standard metrics.
type MetricsConfig struct {
	Disabled bool `json:"disabled"`
	// Overrides add or remove dimensions as Istio's Telemetry API metric
	// overrides do.
	Overrides []MetricOverride `json:"overrides"`
	// MaxSeries bounds the distinct label combinations the filter records
	// (each is four stats in Envoy); requests beyond it are counted in
	// meshtrail_metric_series_dropped_total instead. Default 10000.
	MaxSeries int `json:"max_series"`
}

// MetricOverride changes the dimensions of one metric or all of them.
type MetricOverride struct {
	// Match is ALL_METRICS (default), REQUEST_COUNT, REQUEST_DURATION,
	// REQUEST_SIZE or RESPONSE_SIZE.
	Match        string                 `json:"match"`
	TagOverrides map[string]TagOverride `json:"tag_overrides"`
}

// TagOverride is one dimension change.
type TagOverride struct {
	// Operation is UPSERT (default) or REMOVE.
	Operation string `json:"operation"`
	// Value is where an upserted dimension comes from:
	// request.headers['name'], response.headers['name'] or an Envoy
	// attribute path such as request.host or upstream.address.
	Value string `json:"value"`
}

// AccessLogConfig lists what goes into filter state for the access log.
type AccessLogConfig struct {
	Disabled bool `json:"disabled"`
	// Headers are request headers copied to wasm.meshtrail_h_<name>.
	Headers []string `json:"headers"`
	// Attributes are Envoy attribute paths (request.host, ...) copied to
	// wasm.meshtrail_h_<path with dots as underscores>.
	Attributes []string `json:"attributes"`
}

// metric kinds, in the order overrides name them.
const (
	metricRequests = iota
	metricDuration
	metricRequestBytes
	metricResponseBytes
	numMetrics
)

var metricMatchNames = [numMetrics]string{"REQUEST_COUNT", "REQUEST_DURATION", "REQUEST_SIZE", "RESPONSE_SIZE"}

// parseConfig decodes and validates the plugin configuration. The error
// names the offending field so that the Envoy log says what to fix.
func parseConfig(data []byte) (*settings, error) {
	var c Config
	if len(bytes.TrimSpace(data)) > 0 {
		tree, err := parseJSON(string(data))
		if err != nil {
			return nil, fmt.Errorf("configuration: %w", err)
		}
		if err := c.decode(tree); err != nil {
			return nil, err
		}
	}
	return c.compile()
}

// settings is the validated, precomputed form of Config used per request.
type settings struct {
	reporter string // "", "source" or "destination"; "" = auto

	tracing      bool
	writeW3C     bool
	writeB3      bool
	writeB3Multi bool
	sampling     float64 // 0..1
	stateKey     string

	metrics   bool
	maxSeries int
	// dims are, per metric kind, the dimensions in stat-name order.
	dims [numMetrics][]dimension
	// exprs are the values custom dimensions read, evaluated once per
	// request; dimension.expr indexes into it.
	exprs []valueExpr

	accessLog  bool
	logHeaders []loggedValue
	// reqAttrs are the attributes Envoy derives from the request headers
	// (request.path, request.host, request.headers.*, ...): Envoy serves
	// them only while the filter has the request headers, so they are
	// read in OnHttpRequestHeaders. logAttrs are the others, read when
	// the response starts.
	reqAttrs []loggedValue
	logAttrs []loggedValue
}

// dimension is one label of a metric: a standard Istio label (std >= 0) or
// a custom expression (expr >= 0).
type dimension struct {
	name string
	std  int
	expr int
	// field is the configuration field that added a custom dimension.
	field string
}

// loggedValue is a header or attribute copied into filter state.
type loggedValue struct {
	source   string    // header name, or attribute path
	attr     *attrRead // the attribute (nil for a header)
	property propPath  // filter state property name (without the wasm. prefix)
}

func (c *Config) compile() (*settings, error) {
	s := &settings{}
	switch c.Reporter {
	case "", "auto":
	case "source", "destination":
		s.reporter = c.Reporter
	default:
		return nil, fmt.Errorf("reporter: %q is not auto, source or destination", c.Reporter)
	}

	s.tracing = !c.Tracing.Disabled
	formats := c.Tracing.Formats
	if formats == nil {
		formats = []string{string(tracecontext.FormatW3C), string(tracecontext.FormatB3Multi)}
	}
	for i, f := range formats {
		switch tracecontext.Format(f) {
		case tracecontext.FormatW3C:
			s.writeW3C = true
		case tracecontext.FormatB3:
			s.writeB3 = true
		case tracecontext.FormatB3Multi:
			s.writeB3Multi = true
		default:
			return nil, fmt.Errorf("tracing.formats[%d]: %q is not w3c, b3 or b3multi", i, f)
		}
	}
	s.sampling = 0.01
	if p := c.Tracing.SamplingPercentage; p != nil {
		if *p < 0 || *p > 100 || *p != *p {
			return nil, fmt.Errorf("tracing.sampling_percentage: %v is not within 0..100", *p)
		}
		s.sampling = *p / 100
	}
	if k := c.Tracing.TraceStateKey; k != "" {
		// Validate the key by the W3C rules: a member with a valid value.
		if _, err := tracecontext.UpdateTraceState("", k, "0000000000000000"); err != nil {
			return nil, fmt.Errorf("tracing.tracestate_key: %q is not a valid W3C tracestate key", k)
		}
		s.stateKey = k
	}

	s.metrics = !c.Metrics.Disabled
	s.maxSeries = 10000
	if c.Metrics.MaxSeries < 0 {
		return nil, fmt.Errorf("metrics.max_series: %d is negative", c.Metrics.MaxSeries)
	}
	if c.Metrics.MaxSeries > 0 {
		s.maxSeries = c.Metrics.MaxSeries
	}
	if err := s.compileDimensions(c.Metrics.Overrides); err != nil {
		return nil, err
	}

	s.accessLog = !c.AccessLog.Disabled
	seen := map[string]string{}
	for i, h := range c.AccessLog.Headers {
		name := strings.ToLower(strings.TrimSpace(h))
		if !validHeaderName(name) {
			return nil, fmt.Errorf("access_log.headers[%d]: %q is not a header name", i, h)
		}
		prop := filterstate.HeaderKey(name)
		if prev, dup := seen[prop]; dup {
			return nil, fmt.Errorf("access_log.headers[%d]: %q maps to %s like %q", i, h, prop, prev)
		}
		seen[prop] = h
		s.logHeaders = append(s.logHeaders, loggedValue{source: name, property: mkPath(prop)})
	}
	for i, a := range c.AccessLog.Attributes {
		attr, err := newAttrRead(a)
		if err != nil {
			return nil, fmt.Errorf("access_log.attributes[%d]: %v", i, err)
		}
		prop := filterstate.HeaderKey(a)
		if prev, dup := seen[prop]; dup {
			return nil, fmt.Errorf("access_log.attributes[%d]: %q maps to %s like %q", i, a, prop, prev)
		}
		seen[prop] = a
		lv := loggedValue{source: a, attr: attr, property: mkPath(prop)}
		if attr.fromRequestHeaders() {
			s.reqAttrs = append(s.reqAttrs, lv)
		} else {
			s.logAttrs = append(s.logAttrs, lv)
		}
	}
	return s, nil
}

// compileDimensions starts every metric from Istio's standard labels and
// applies the overrides in order.
func (s *settings) compileDimensions(overrides []MetricOverride) error {
	for m := 0; m < numMetrics; m++ {
		d := make([]dimension, len(standardLabels))
		for i, name := range standardLabels {
			d[i] = dimension{name: name, std: i, expr: -1}
		}
		s.dims[m] = d
	}
	exprIndex := map[string]int{}
	for i, o := range overrides {
		var targets []int
		switch o.Match {
		case "", "ALL_METRICS":
			targets = []int{metricRequests, metricDuration, metricRequestBytes, metricResponseBytes}
		default:
			for m, n := range metricMatchNames {
				if n == o.Match {
					targets = []int{m}
				}
			}
			if targets == nil {
				return fmt.Errorf("metrics.overrides[%d].match: %q is not ALL_METRICS, REQUEST_COUNT, REQUEST_DURATION, REQUEST_SIZE or RESPONSE_SIZE", i, o.Match)
			}
		}
		// Map iteration order is random: apply tags sorted so the stat
		// names are the same on every proxy.
		names := make([]string, 0, len(o.TagOverrides))
		for n := range o.TagOverrides {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, name := range names {
			t := o.TagOverrides[name]
			field := fmt.Sprintf("metrics.overrides[%d].tag_overrides[%s]", i, name)
			if !validTagName(name) {
				return fmt.Errorf("%s: tag name must match [a-z_][a-z0-9_]*", field)
			}
			switch t.Operation {
			case "REMOVE":
				if t.Value != "" {
					return fmt.Errorf("%s.value: must be empty for REMOVE", field)
				}
				for _, m := range targets {
					s.dims[m] = removeDimension(s.dims[m], name)
				}
			case "", "UPSERT":
				if t.Value == "" {
					return fmt.Errorf("%s.value: required for UPSERT", field)
				}
				e, err := parseValueExpr(t.Value)
				if err != nil {
					return fmt.Errorf("%s.value: %v", field, err)
				}
				idx, ok := exprIndex[t.Value]
				if !ok {
					idx = len(s.exprs)
					exprIndex[t.Value] = idx
					s.exprs = append(s.exprs, e)
				}
				for _, m := range targets {
					s.dims[m] = upsertDimension(s.dims[m], dimension{name: name, std: -1, expr: idx, field: field})
				}
			default:
				return fmt.Errorf("%s.operation: %q is not UPSERT or REMOVE", field, t.Operation)
			}
		}
	}
	return s.checkTagNames()
}

// checkTagNames refuses a custom tag whose name ends another tag's name
// after a '_' (app and source_app, or my_source_app and source_app).
// Envoy's tag extractor applies each rule, `(name=\.=(.*?);\.;)` (the form
// Istio generates for extraStatTags, which cannot be anchored there), to
// the whole stat name and takes the first match: the rule for app would
// match inside source_app=.=...;.; and cut it apart. reason is the tag of
// meshtrail_trace_headers_invalid_total, whose rule sees these stats too.
func (s *settings) checkTagNames() error {
	for m := range s.dims {
		names := append([]dimension{{name: "reason", std: -2, expr: -1}}, s.dims[m]...)
		for _, a := range names {
			for _, b := range names {
				if a.name == b.name || (a.std != -1 && b.std != -1) || !strings.HasSuffix(a.name, "_"+b.name) {
					continue
				}
				custom, other := a, b
				if custom.std != -1 {
					custom, other = b, a
				}
				return fmt.Errorf("%s: tag %q clashes with tag %q: Envoy's rule (%s=\\.=(.*?);\\.;) would also match inside %s=.=",
					custom.field, custom.name, other.name, b.name, a.name)
			}
		}
	}
	return nil
}

func removeDimension(d []dimension, name string) []dimension {
	out := d[:0:0]
	for _, x := range d {
		if x.name != name {
			out = append(out, x)
		}
	}
	return out
}

func upsertDimension(d []dimension, nd dimension) []dimension {
	out := append([]dimension(nil), d...)
	for i := range out {
		if out[i].name == nd.name {
			out[i] = nd
			return out
		}
	}
	return append(out, nd)
}

// valueExpr is where a custom dimension's value comes from.
type valueExpr struct {
	requestHeader  string    // request.headers['x']
	responseHeader string    // response.headers['x']
	attr           *attrRead // an Envoy attribute
}

func parseValueExpr(v string) (valueExpr, error) {
	for _, p := range []struct {
		prefix string
		resp   bool
	}{{"request.headers[", false}, {"response.headers[", true}} {
		if !strings.HasPrefix(v, p.prefix) {
			continue
		}
		rest := strings.TrimPrefix(v, p.prefix)
		if len(rest) < 4 || !strings.HasSuffix(rest, "]") {
			return valueExpr{}, fmt.Errorf("%q: want %s'name']", v, p.prefix)
		}
		inner := rest[:len(rest)-1]
		q := inner[0]
		if (q != '\'' && q != '"') || inner[len(inner)-1] != q {
			return valueExpr{}, fmt.Errorf("%q: header name must be quoted", v)
		}
		name := strings.ToLower(inner[1 : len(inner)-1])
		if !validHeaderName(name) {
			return valueExpr{}, fmt.Errorf("%q: %q is not a header name", v, name)
		}
		if p.resp {
			return valueExpr{responseHeader: name}, nil
		}
		return valueExpr{requestHeader: name}, nil
	}
	attr, err := newAttrRead(v)
	if err != nil {
		return valueExpr{}, err
	}
	return valueExpr{attr: attr}, nil
}

// newAttrRead validates an attribute path and knows its type.
func newAttrRead(a string) (*attrRead, error) {
	path, err := attributePath(a)
	if err != nil {
		return nil, err
	}
	kind, err := attributeKind(path)
	if err != nil {
		return nil, err
	}
	return &attrRead{path: mkPath(path...), kind: kind}, nil
}

// attributePath splits an Envoy attribute such as request.url_path.
func attributePath(a string) ([]string, error) {
	if a == "" {
		return nil, errors.New("empty attribute")
	}
	parts := strings.Split(a, ".")
	for _, p := range parts {
		if p == "" || !validTagName(p) {
			return nil, fmt.Errorf("%q is not an attribute path like request.host", a)
		}
	}
	return parts, nil
}

func validTagName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c == '_' || (i > 0 && c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

// validHeaderName accepts lowercase RFC 9110 tokens (and HTTP/2 pseudo
// headers such as :authority).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ':' && i == 0 {
			continue
		}
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
