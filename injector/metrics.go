package injector

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the injector's Prometheus series, registered on the registry
// given to NewMetrics (never the global one).
type Metrics struct {
	reviews  *prometheus.CounterVec // by result: allowed, denied, error
	injected *prometheus.CounterVec // by mode
	skipped  *prometheus.CounterVec // by reason
	latency  prometheus.Histogram   // handler time per review
	warnings prometheus.Counter     // admission warnings returned
	certLoad *prometheus.CounterVec // TLS certificate (re)loads by result
	// badRequests are requests answered 400/405 before any review, by
	// what was wrong.
	badRequests *prometheus.CounterVec
}

// NewMetrics registers the injector's series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrail_injector_reviews_total",
			Help: "AdmissionReviews answered, by result (allowed, denied, error).",
		}, []string{"result"}),
		injected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrail_injector_injected_total",
			Help: "Pods given the tail sidecar, by sidecar mode (native, regular).",
		}, []string{"mode"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrail_injector_skipped_total",
			Help: "Pods reviewed and not injected, by reason.",
		}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshtrail_injector_review_duration_seconds",
			Help:    "Time to answer one AdmissionReview, decode to encode.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		warnings: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshtrail_injector_warnings_total",
			Help: "Admission warnings returned to clients.",
		}),
		certLoad: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrail_injector_certificate_loads_total",
			Help: "Serving certificate (re)loads from disk, by result (ok, error).",
		}, []string{"result"}),
		badRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrail_injector_bad_requests_total",
			Help: "Requests refused before any review, by reason (method, body, not_json, api_version, kind, no_request, no_uid).",
		}, []string{"reason"}),
	}
	for _, r := range []string{"method", "body", "not_json", "api_version", "kind", "no_request", "no_uid"} {
		m.badRequests.WithLabelValues(r)
	}
	reg.MustRegister(m.reviews, m.injected, m.skipped, m.latency, m.warnings, m.certLoad, m.badRequests)
	return m
}
