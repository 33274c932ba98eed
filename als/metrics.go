package als

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// receiverMetrics are meshtrail's own metrics about the receiver.
type receiverMetrics struct {
	streamsOpen     prometheus.Gauge
	streamsTotal    prometheus.Counter
	streamsAged     prometheus.Counter
	streamErrors    *prometheus.CounterVec // by reason
	handshakeErrors *prometheus.CounterVec // failed TLS handshakes, by reason
	messages        prometheus.Counter
	bytes           prometheus.Counter
	received        *prometheus.CounterVec // entries by type
	converted       *prometheus.CounterVec // records by type
	rejected        *prometheus.CounterVec // entries by reason
	invalidTrace    *prometheus.CounterVec // by format, reason
	redacted        prometheus.Counter
	truncated       prometheus.Counter
	// identifierRepaired counts identifier fields cut to their documented
	// size or repaired to valid UTF-8, by field and reason.
	identifierRepaired *prometheus.CounterVec
	sinkErrors         prometheus.Counter
	processing         prometheus.Histogram // seconds to convert and hand off one message
	repairedMessages   atomic.Uint64
}

func newReceiverMetrics(reg prometheus.Registerer) *receiverMetrics {
	m := &receiverMetrics{
		streamsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshtrail_als_streams_open", Help: "ALS streams open now (an Envoy opens one per worker thread and access logger).",
		}),
		streamsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshtrail_als_streams_total", Help: "ALS streams accepted.",
		}),
		streamsAged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshtrail_als_streams_aged_total", Help: "ALS streams ended cleanly at their max age (grpc.max_connection_age), for Envoy to reopen on a new connection.",
		}),
		streamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrail_als_stream_errors_total", Help: "ALS streams ended by an error, by reason.",
		}, []string{"reason"}),
		handshakeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrail_als_tls_handshake_errors_total",
			Help: "Connections whose TLS handshake failed, by reason (plaintext, client_certificate, rejected_by_client, protocol_version, closed, other).",
		}, []string{"reason"}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshtrail_als_messages_total", Help: "StreamAccessLogsMessage messages received.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshtrail_als_received_bytes_total", Help: "Bytes of StreamAccessLogsMessage payload received.",
		}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrail_als_entries_received_total", Help: "Access log entries received, by type (http, tcp).",
		}, []string{"type"}),
		converted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrail_als_entries_converted_total", Help: "Access log entries converted to records, by type.",
		}, []string{"type"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrail_als_entries_rejected_total", Help: "Access log entries dropped as invalid, by reason.",
		}, []string{"reason"}),
		invalidTrace: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrail_als_invalid_trace_headers_total",
			Help: "Trace headers present but invalid per the W3C or B3 spec (the record gets no trace id from them), by format and reason.",
		}, []string{"format", "reason"}),
		redacted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshtrail_als_headers_redacted_total", Help: "Sensitive headers (Authorization, Cookie, ...) removed from records.",
		}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshtrail_als_headers_truncated_total", Help: "Header values cut to max_header_bytes.",
		}),
		identifierRepaired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrail_als_identifier_repaired_total",
			Help: "Stream identifier fields (node id, cluster, log name, node metadata) cut to their documented size (reason too_long) or whose invalid UTF-8 was replaced by U+FFFD (invalid_utf8); the stream goes on.",
		}, []string{"field", "reason"}),
		sinkErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshtrail_als_sink_errors_total", Help: "Batches a sink refused (see that sink's own metrics).",
		}),
		processing: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshtrail_als_processing_seconds",
			Help:    "Time to convert one ALS message and hand its records to the sinks.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 4, 10),
		}),
	}
	reg.MustRegister(m.streamsOpen, m.streamsTotal, m.streamsAged, m.streamErrors, m.handshakeErrors, m.messages, m.bytes, m.received, m.converted,
		m.rejected, m.invalidTrace, m.redacted, m.truncated, m.identifierRepaired, m.sinkErrors, m.processing,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "meshtrail_als_messages_utf8_repaired_total",
			Help: "Messages whose string fields held invalid UTF-8, repaired instead of dropped.",
		}, func() float64 { return float64(m.repairedMessages.Load()) }),
	)
	// Pre-create the series so dashboards see zeros, not gaps, and an
	// alert on rate() or increase() fires on the first error (a series
	// born at 1 has no increase).
	for _, t := range []string{"http", "tcp"} {
		m.received.WithLabelValues(t)
		m.converted.WithLabelValues(t)
	}
	for _, r := range []string{"malformed_entry", reasonMissingCommon, reasonMissingRequest, reasonMissingResponse, "bad_filter_state"} {
		m.rejected.WithLabelValues(r)
	}
	for _, r := range []string{"malformed_message", "missing_identifier", "message_too_large", "receive_error", "too_many_streams"} {
		m.streamErrors.WithLabelValues(r)
	}
	return m
}
