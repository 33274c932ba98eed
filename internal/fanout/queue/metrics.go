package queue

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Drop reasons (label reason of meshtrail_sink_dropped_total).
const (
	ReasonQueueFull    = "queue_full"    // drop_newest: memory and disk full
	ReasonOldest       = "evicted"       // drop_oldest: made room for newer records
	ReasonBlockTimeout = "block_timeout" // block: the wait for room ran out
	ReasonPermanent    = "permanent"     // poison record and no dead-letter file
	ReasonRetryExpired = "retry_expired" // retry.max_elapsed ran out and no dead-letter file
	ReasonShutdown     = "shutdown"      // not sent by Shutdown and no disk to persist to
	ReasonClosed       = "closed"        // offered after Shutdown
	ReasonCorrupt      = "corrupt"       // unreadable on disk
)

// metrics are one sink's counters; every series carries sink="<name>".
type metrics struct {
	sent, retried, failed, deadLettered, batches prometheus.Counter
	dropped                                      *prometheus.CounterVec
	exportDur                                    prometheus.Histogram
}

func newMetrics(q *Queue, reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry() // metrics off: a private, unread registry
	}
	reg = prometheus.WrapRegistererWith(prometheus.Labels{"sink": q.name}, reg)
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "meshtrail_sink_" + name, Help: help})
	}
	m := &metrics{
		sent:         counter("records_sent_total", "Records the backend accepted."),
		retried:      counter("records_retried_total", "Records sent again after a failed attempt."),
		failed:       counter("records_failed_total", "Records given up on: rejected as poison or out of retry time (see dead_lettered and dropped)."),
		deadLettered: counter("dead_lettered_total", "Records written to the dead-letter file."),
		batches:      counter("batches_sent_total", "Batches the backend accepted."),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrail_sink_dropped_total", Help: "Records discarded, by reason.",
		}, []string{"reason"}),
		exportDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meshtrail_sink_export_duration_seconds", Help: "Duration of one Export call, successful or not.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
	}
	for _, r := range []string{ReasonQueueFull, ReasonOldest, ReasonBlockTimeout, ReasonPermanent, ReasonRetryExpired, ReasonShutdown, ReasonClosed} {
		m.dropped.WithLabelValues(r) // show zeros, so rate() works from the start
	}
	for _, c := range []prometheus.Collector{m.sent, m.retried, m.failed, m.deadLettered, m.batches, m.dropped, m.exportDur, stateCollector{q}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("queue %s: metrics: %w", q.name, err)
		}
	}
	return m, nil
}

var (
	descRecords = prometheus.NewDesc("meshtrail_sink_queue_records", "Records queued, in memory or on disk (in flight included).", []string{"where"}, nil)
	descBytes   = prometheus.NewDesc("meshtrail_sink_queue_bytes", "Bytes queued (JSON size in memory, frame size on disk).", []string{"where"}, nil)
	descAge     = prometheus.NewDesc("meshtrail_sink_oldest_record_age_seconds", "Age of the oldest record not yet sent (0 when empty).", nil, nil)
	descTrunc   = prometheus.NewDesc("meshtrail_sink_disk_truncated_bytes_total", "Torn or corrupt bytes cut from the disk queue (crash recovery).", nil, nil)
)

// stateCollector reads the queue's depth at scrape time rather than
// keeping gauges in step on every enqueue.
type stateCollector struct{ q *Queue }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRecords
	ch <- descBytes
	ch <- descAge
	ch <- descTrunc
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.q.Stats()
	ch <- prometheus.MustNewConstMetric(descRecords, prometheus.GaugeValue, float64(s.MemoryRecords), "memory")
	ch <- prometheus.MustNewConstMetric(descRecords, prometheus.GaugeValue, float64(s.DiskRecords), "disk")
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(s.MemoryBytes), "memory")
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(s.DiskBytes), "disk")
	ch <- prometheus.MustNewConstMetric(descAge, prometheus.GaugeValue, s.OldestAge.Seconds())
	ch <- prometheus.MustNewConstMetric(descTrunc, prometheus.CounterValue, float64(s.DiskTruncatedBytes))
}
