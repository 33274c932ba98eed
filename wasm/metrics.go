package main

import (
	"unsafe"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
)

// Istio's standard labels, in the order Istio's stats plugin wrote them.
// The index of each is its slot in labelValues.
var standardLabels = [...]string{
	"reporter",
	"source_workload",
	"source_canonical_service",
	"source_canonical_revision",
	"source_workload_namespace",
	"source_principal",
	"source_app",
	"source_version",
	"source_cluster",
	"destination_workload",
	"destination_workload_namespace",
	"destination_principal",
	"destination_app",
	"destination_version",
	"destination_service",
	"destination_canonical_service",
	"destination_canonical_revision",
	"destination_service_name",
	"destination_service_namespace",
	"destination_cluster",
	"request_protocol",
	"response_code",
	"grpc_response_status",
	"response_flags",
	"connection_security_policy",
}

const (
	lReporter = iota
	lSourceWorkload
	lSourceCanonicalService
	lSourceCanonicalRevision
	lSourceWorkloadNamespace
	lSourcePrincipal
	lSourceApp
	lSourceVersion
	lSourceCluster
	lDestinationWorkload
	lDestinationWorkloadNamespace
	lDestinationPrincipal
	lDestinationApp
	lDestinationVersion
	lDestinationService
	lDestinationCanonicalService
	lDestinationCanonicalRevision
	lDestinationServiceName
	lDestinationServiceNamespace
	lDestinationCluster
	lRequestProtocol
	lResponseCode
	lGrpcResponseStatus
	lResponseFlags
	lConnectionSecurityPolicy
	numStandardLabels
)

// labelValues holds one request's standard label values.
type labelValues [numStandardLabels]string

// Metric names as Prometheus shows them once Envoy has extracted the tags.
var metricNames = [numMetrics]string{
	"istio_requests_total",
	"istio_request_duration_milliseconds",
	"istio_request_bytes",
	"istio_response_bytes",
}

// Stat-name encoding of Istio's Wasm-era stats plugin: every label is
// written as `name=.=value;.;` ahead of the metric name, e.g.
//
//	reporter=.=destination;.;source_workload=.=productpage-v1;.;...;.;istio_requests_total
//
// Envoy prefixes Wasm stats with "wasmcustom." and its tag extractor (one
// stats_tags rule per label, regex `(name=\.=(.*?);\.;)`) removes each
// `name=.=value;.;` from the name and makes it a tag, so /stats/prometheus
// shows istio_requests_total{reporter="destination",...}.
const (
	tagValueSep = "=.="
	tagEnd      = ";.;"
)

// seriesCache maps a request's label values to the ids of its four
// metrics. Envoy allocates a new id on every define call, so each stat
// name is defined once. The key is the label values alone (a few hundred
// bytes): hashing the full encoded names (about 1 KB each, four per
// request) was most of the filter's cost in Go-compiled Wasm.
type seriesCache struct {
	ids     map[string]*[numMetrics]uint32
	max     int
	key     []byte // reused to build keys without allocating
	name    []byte // reused to build stat names on a miss
	dropped proxywasm.MetricCounter
	// names keeps every stat name passed to the host alive: a host may
	// keep the pointer rather than copy it (proxytest does).
	names []string
	// last is the previous request's series: consecutive requests mostly
	// share one, and comparing the values is cheaper than building and
	// hashing the key.
	lastLabels labelValues
	lastCustom []string
	lastIDs    *[numMetrics]uint32
}

func newSeriesCache(max int) *seriesCache {
	return &seriesCache{
		ids:     make(map[string]*[numMetrics]uint32, 64),
		max:     max,
		key:     make([]byte, 0, 512),
		name:    make([]byte, 0, 1024),
		dropped: proxywasm.DefineCounterMetric(statSeriesDropped),
	}
}

// statSeriesDropped counts requests not recorded because the cap on label
// combinations was reached.
const statSeriesDropped = "meshtrail_metric_series_dropped_total"

// appendStatName writes the encoded stat name for metric m.
func appendStatName(b []byte, dims []dimension, std *labelValues, custom []string, ownCluster, m int) []byte {
	for _, d := range dims {
		v := ""
		if d.std >= 0 {
			v = std[d.std]
		} else {
			v = custom[d.expr]
		}
		// Istio writes unknown for a missing identity, but leaves
		// grpc_response_status empty on plain HTTP, and the proxy's own
		// cluster as its CLUSTER_ID has it, empty without one
		// (istio_stats.cc: context_.cluster_name_).
		if v == "" && d.std != lGrpcResponseStatus && (d.std != ownCluster || d.std < 0) {
			v = "unknown"
		}
		b = append(b, d.name...)
		b = append(b, tagValueSep...)
		b = appendTagValue(b, v)
		b = append(b, tagEnd...)
	}
	return append(b, metricNames[m]...)
}

// appendTagValue keeps the separators unambiguous: values come from the
// client (:authority, headers). A ';' would end the tag early, and an '='
// would let a value carry another label's `name=.=` (Envoy's tag
// extractor takes the first match of `(name=\.=(.*?);\.;)` anywhere in
// the stat name, so "xresponse_code=.=999" in destination_service would
// become response_code): both become '_'.
func appendTagValue(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == ';' || c == '=' || c < 0x20 || c == 0x7f {
			c = '_'
		}
		b = append(b, c)
	}
	return b
}

// requestMetrics is what one request reports.
type requestMetrics struct {
	labels labelValues
	// ownCluster is the slot of the reporting proxy's own cluster
	// (lSourceCluster or lDestinationCluster), kept empty when empty.
	ownCluster    int
	custom        []string
	durationMs    uint64
	requestBytes  uint64
	responseBytes uint64
}

// lookup returns the metric ids for r's labels, defining the four stats on
// first use; nil when the cap on label combinations is reached.
func (c *seriesCache) lookup(s *settings, r *requestMetrics) *[numMetrics]uint32 {
	if c.lastIDs != nil && sameValues(r.labels[:], c.lastLabels[:]) && sameValues(r.custom, c.lastCustom) {
		return c.lastIDs
	}
	ids := c.lookupKey(s, r)
	if ids != nil {
		c.lastLabels = r.labels
		c.lastCustom = append(c.lastCustom[:0], r.custom...)
		c.lastIDs = ids
	}
	return ids
}

// sameValues compares label values, most of which are the very strings of
// the previous request (the local workload's, constants): same pointer and
// length is equal without reading the bytes.
func sameValues(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i, v := range a {
		w := b[i]
		if len(v) != len(w) {
			return false
		}
		if len(v) == 0 || unsafe.StringData(v) == unsafe.StringData(w) {
			continue
		}
		if v != w {
			return false
		}
	}
	return true
}

func (c *seriesCache) lookupKey(s *settings, r *requestMetrics) *[numMetrics]uint32 {
	k := c.key[:0]
	for _, v := range r.labels {
		k = append(k, v...)
		k = append(k, 0)
	}
	for _, v := range r.custom {
		k = append(k, v...)
		k = append(k, 0)
	}
	c.key = k
	if ids, ok := c.ids[string(k)]; ok {
		return ids
	}
	if len(c.ids) >= c.max {
		c.dropped.Increment(1)
		return nil
	}
	ids := new([numMetrics]uint32)
	for m := 0; m < numMetrics; m++ {
		c.name = appendStatName(c.name[:0], s.dims[m], &r.labels, r.custom, r.ownCluster, m)
		name := string(c.name)
		c.names = append(c.names, name)
		if m == metricRequests {
			ids[m] = uint32(proxywasm.DefineCounterMetric(name))
		} else {
			ids[m] = uint32(proxywasm.DefineHistogramMetric(name))
		}
	}
	c.ids[string(k)] = ids
	return ids
}

// record writes the four Istio metrics for one request.
func (c *seriesCache) record(s *settings, r *requestMetrics) {
	ids := c.lookup(s, r)
	if ids == nil {
		return
	}
	incrementCounter(ids[metricRequests], 1)
	recordHistogram(ids[metricDuration], r.durationMs)
	recordHistogram(ids[metricRequestBytes], r.requestBytes)
	recordHistogram(ids[metricResponseBytes], r.responseBytes)
}

// responseFlagNames are Envoy's short response flag strings by bit
// (CoreResponseFlag in envoy/stream_info/stream_info.h, names from
// ResponseFlagUtils in source/common/stream_info/utility.h), as Istio's
// response_flags label shows them. response.flags carries the core flags
// up to LastFlag (bit 28 DR: downstream remote reset; bit 29 UDO:
// unconditional drop overload).
var responseFlagNames = [...]string{
	"LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL",
	"UAEX", "RLSE", "DC", "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF",
	"DT", "UPE", "NC", "OM", "DF", "DO", "DR", "UDO",
}

// formatResponseFlags renders Envoy's response.flags bitmask as Istio does:
// "-" when none, otherwise the short names joined by ','.
func formatResponseFlags(flags uint64) string {
	if flags == 0 {
		return "-"
	}
	var b []byte
	for i, n := range responseFlagNames {
		if flags&(1<<uint(i)) != 0 {
			if len(b) > 0 {
				b = append(b, ',')
			}
			b = append(b, n...)
		}
	}
	if b == nil {
		return "-"
	}
	return string(b)
}
