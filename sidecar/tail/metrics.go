package tail

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the tailer's own series. A nil *Metrics counts nothing.
type Metrics struct {
	bytes     *prometheus.CounterVec
	lines     *prometheus.CounterVec
	open      prometheus.Gauge
	rotations *prometheus.CounterVec
	problems  *prometheus.CounterVec
}

// NewMetrics registers the tailer's series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshtrail_tail_read_bytes_total",
			Help: "Bytes read per tailed file (the series goes when the file is let go)."}, []string{"path"}),
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshtrail_tail_read_lines_total",
			Help: "Lines (or multiline records) read per tailed file."}, []string{"path"}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshtrail_tail_files_open", Help: "Files being tailed."}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshtrail_tail_rotations_total",
			Help: "Rotations seen: rename (a tailed inode under a new name), truncate, copytruncate (the rest read from the copy)."}, []string{"kind"}),
		problems: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshtrail_tail_file_problems_total",
			Help: "Matched paths that could not be tailed, by reason (counted per scan)."}, []string{"reason"}),
	}
	reg.MustRegister(m.bytes, m.lines, m.open, m.rotations, m.problems)
	return m
}

func (m *Metrics) read(path string, n int) {
	if m != nil {
		m.bytes.WithLabelValues(path).Add(float64(n))
	}
}

func (m *Metrics) addLines(path string, n int) {
	if m != nil {
		m.lines.WithLabelValues(path).Add(float64(n))
	}
}

func (m *Metrics) opened(string) {
	if m != nil {
		m.open.Inc()
	}
}

func (m *Metrics) closed(path string) {
	if m != nil {
		m.open.Dec()
		m.bytes.DeleteLabelValues(path)
		m.lines.DeleteLabelValues(path)
	}
}

func (m *Metrics) rotation(kind string) {
	if m != nil {
		m.rotations.WithLabelValues(kind).Inc()
	}
}

func (m *Metrics) problem(reason string) {
	if m != nil {
		m.problems.WithLabelValues(reason).Inc()
	}
}
