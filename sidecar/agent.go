package sidecar

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"reflect"
	"regexp"
	"slices"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/loglimit"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/sidecar/checkpoint"
	"github.com/meshtrail/meshtrail/sidecar/parse"
	"github.com/meshtrail/meshtrail/sidecar/tail"
)

// Agent reads the files, parses their lines into records and hands them
// to the destination; once the destination accepted a batch (its
// ConsumeRecords returned nil) the positions after it may be
// checkpointed. One goroutine does all of it, in that order, so a
// checkpoint never names a line the destination does not hold.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	warn    *loglimit.Limiter
	tailer  *tail.Tailer
	parser  parse.Parser
	dest    record.Consumer
	out     *ndjsonOut // set with --out FILE: its length is checkpointed
	meta    func(path string) PodMeta
	metrics *agentMetrics

	acked      checkpoint.State // the positions after the last accepted batch
	dirty      bool
	savedAt    time.Time
	lastRead   atomic.Int64 // unix nanos of the last bytes read
	caughtUp   atomic.Bool
	savedClean atomic.Bool  // the checkpoint on disk holds every accepted batch
	savedAtN   atomic.Int64 // savedAt for the metrics scrape

	// reuse: dest retains no record after ConsumeRecords returns, so
	// block and recs serve every batch.
	reuse bool
	block []record.Record
	recs  []*record.Record

	// reload returns the configuration file's settings when it changed.
	reload      func() (Config, bool, error)
	reloadedAt  time.Time
	tailMetrics *tail.Metrics
	// podSeries are the pods with per-pod series (node mode).
	podSeries map[[2]string]bool
}

// newAgent wires an agent; resume is the loaded checkpoint.
func newAgent(cfg Config, resume checkpoint.State, dest record.Consumer, out *ndjsonOut, meta func(string) PodMeta,
	reg prometheus.Registerer, logger *slog.Logger) (*Agent, error) {
	p, tcfg, err := readerSetup(cfg)
	if err != nil {
		return nil, err
	}
	tm := tail.NewMetrics(reg)
	a := &Agent{
		cfg: cfg, log: logger, warn: loglimit.New(30 * time.Second), parser: p, dest: dest, out: out, meta: meta,
		metrics: newAgentMetrics(reg),
		tailer:  tail.New(tcfg, resume.Files, logger, tm), tailMetrics: tm,
		acked:   checkpoint.State{Files: resume.Files, Output: resume.Output},
		savedAt: time.Now(),
	}
	_, a.reuse = dest.(*ndjsonOut)
	a.metrics.checkpointAge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meshtrail_tail_checkpoint_age_seconds",
		Help: "Seconds since the checkpoint was last written."}, func() float64 { return time.Since(a.savedAtLoad()).Seconds() })
	reg.MustRegister(a.metrics.checkpointAge)
	return a, nil
}

// readerSetup is the parser and the tailer's configuration of cfg.
func readerSetup(cfg Config) (parse.Parser, tail.Config, error) {
	parserName := cfg.Parser
	if cfg.Node {
		parserName = "cri" // the kubelet writes every container log in the CRI format
	}
	p, err := parse.New(parserName, parse.Options{TraceField: cfg.TraceField, SpanField: cfg.SpanField, Regex: cfg.Regex})
	if err != nil {
		return nil, tail.Config{}, err
	}
	var ml *regexp.Regexp
	if cfg.Multiline != "" {
		if ml, err = regexp.Compile(cfg.Multiline); err != nil {
			return nil, tail.Config{}, err
		}
	}
	paths := cfg.Paths
	if cfg.Node {
		paths = append(append([]string(nil), paths...), nodeGlob(cfg.PodsDir))
	}
	return p, tail.Config{
		Paths: paths, MaxLineBytes: cfg.MaxLineBytes, Multiline: ml, FlushAfter: cfg.FlushAfter.D(),
		ReadBytesPerSecond: cfg.ReadBytesPerSecond, PollInterval: cfg.PollInterval.D(), Linger: cfg.Linger.D(),
		CRI: parserName == "cri",
	}, nil
}

// reloadIfChanged asks a.reload for a changed configuration and applies
// what can change in place: what is read and how it is parsed. The files'
// positions carry over (everything read so far was delivered, so the
// tailer's positions are the accepted ones). Destinations and the state
// directory need a restart.
func (a *Agent) reloadIfChanged() {
	if a.reload == nil || time.Since(a.reloadedAt) < time.Second {
		return
	}
	a.reloadedAt = time.Now()
	cfg, changed, err := a.reload()
	if err != nil {
		a.metrics.reloads.WithLabelValues("invalid").Inc()
		a.warn.Log(a.log, slog.LevelError, "reload", "changed configuration not applied; the running one stays", "error", err)
		return
	}
	if !changed {
		return
	}
	if cfg.Out != a.cfg.Out || cfg.Forward != a.cfg.Forward || cfg.StateDir != a.cfg.StateDir || cfg.Node != a.cfg.Node ||
		cfg.Listen != a.cfg.Listen || !reflect.DeepEqual(cfg.Sinks, a.cfg.Sinks) || !slices.Equal(cfg.SinkNames, a.cfg.SinkNames) {
		a.log.Warn("configuration changed: destinations, state_dir, node and listen apply at the next restart; the rest now")
	}
	p, tcfg, err := readerSetup(cfg)
	if err != nil {
		a.metrics.reloads.WithLabelValues("invalid").Inc()
		a.log.Error("changed configuration not applied", "error", err)
		return
	}
	pos := a.tailer.Positions()
	a.tailer.Close()
	a.tailer = tail.New(tcfg, pos, a.log, a.tailMetrics)
	a.parser = p
	keep := a.cfg
	a.cfg = cfg
	a.cfg.Out, a.cfg.Forward, a.cfg.StateDir, a.cfg.Node, a.cfg.Listen, a.cfg.Sinks, a.cfg.SinkNames =
		keep.Out, keep.Forward, keep.StateDir, keep.Node, keep.Listen, keep.Sinks, keep.SinkNames
	a.metrics.reloads.WithLabelValues("applied").Inc()
	a.log.Info("configuration reloaded", "paths", cfg.Paths, "parser", cfg.Parser)
}

func (a *Agent) savedAtLoad() time.Time { return time.Unix(0, a.savedAtN.Load()) }

// Run tails until ctx ends, then drains: no new file is opened, every
// open file is read to its current end and delivered, the checkpoint is
// written, all within ShutdownGrace.
func (a *Agent) Run(ctx context.Context) error {
	defer a.tailer.Close()
	a.savedAtN.Store(time.Now().UnixNano())
	// graceCtx bounds the drain: it ends ShutdownGrace after ctx.
	graceCtx, cancelGrace := context.WithCancel(context.Background())
	defer cancelGrace()
	go func() {
		select {
		case <-ctx.Done():
		case <-graceCtx.Done():
			return
		}
		t := time.NewTimer(a.cfg.ShutdownGrace.D())
		defer t.Stop()
		select {
		case <-t.C:
			cancelGrace()
		case <-graceCtx.Done():
		}
	}()
	lastScan := time.Time{}
	stopping := false
	for {
		if !stopping && ctx.Err() != nil {
			stopping = true
			a.log.Info("stopping: reading every file to its end", "grace", a.cfg.ShutdownGrace.D())
			lastScan = time.Time{}
		}
		readCtx := ctx
		if stopping {
			readCtx = graceCtx
		}
		if !stopping {
			a.reloadIfChanged()
		}
		if a.tailer.ScanDue() || lastScan.IsZero() {
			a.tailer.Scan(stopping)
			lastScan = time.Now()
			lag := a.tailer.Lag()
			a.metrics.lag(lag)
			if a.cfg.Node {
				a.forgetGonePods(lag)
			}
		}
		entries, _ := a.tailer.Read(readCtx, a.cfg.BatchBytes, stopping)
		if len(entries) > 0 {
			a.lastRead.Store(time.Now().UnixNano())
			a.caughtUp.Store(false)
			a.savedClean.Store(false)
			recs := a.records(entries)
			if err := a.deliver(readCtx, recs); err != nil {
				a.saveCheckpoint()
				return err
			}
			a.acked = checkpoint.State{Files: a.tailer.Positions(), Output: -1}
			if a.out != nil {
				a.acked.Output = a.out.offset()
			}
			a.dirty = true
		}
		if a.dirty && time.Since(a.savedAt) >= a.cfg.CheckpointInterval.D() {
			a.saveCheckpoint()
		}
		if len(entries) == 0 {
			caught := a.tailer.CaughtUp()
			a.caughtUp.Store(caught)
			if caught && a.dirty {
				a.saveCheckpoint() // idle: nothing to batch with, so keep the checkpoint current
			}
			if caught && !a.dirty {
				a.savedClean.Store(true)
			}
			if stopping && (caught || graceCtx.Err() != nil) {
				a.saveCheckpoint()
				if !caught {
					a.log.Warn("shutdown grace over before every file was read to its end; the checkpoint resumes there")
				}
				return nil
			}
			wait := a.cfg.FlushAfter.D()
			if stopping {
				wait = 50 * time.Millisecond
			}
			a.tailer.WaitChange(readCtx, wait)
		}
	}
}

// records turns entries into records.
func (a *Agent) records(entries []tail.Entry) []*record.Record {
	now := time.Now()
	var recs []*record.Record
	var block []record.Record
	if a.reuse {
		// The destination keeps nothing past ConsumeRecords (our own
		// NDJSON writer): the batch's records are reused, which spares
		// the garbage collector most of its work.
		if cap(a.block) < len(entries) {
			a.block, a.recs = make([]record.Record, len(entries)), make([]*record.Record, len(entries))
		}
		block, recs = a.block[:len(entries)], a.recs[:len(entries)]
		clear(block)
	} else {
		recs = make([]*record.Record, len(entries))
		block = make([]record.Record, len(entries)) // one allocation for the batch
	}
	for i := range entries {
		e := &entries[i]
		r := &block[i]
		r.Kind, r.ReceivedAt, r.ID, r.Truncated = record.KindLog, now, e.ID, e.Truncated
		data := e.Data
		if !utf8.Valid(data) {
			data = bytes.ToValidUTF8(data, []byte("\uFFFD"))
			r.InvalidUTF8 = true
			a.metrics.invalidUTF8.Inc()
		}
		if e.Truncated {
			a.metrics.truncated.Inc()
		}
		if err := a.parser.Parse(data, r); err != nil {
			a.metrics.parseErrors.WithLabelValues(a.cfg.Parser).Inc()
			a.warn.Log(a.log, slog.LevelWarn, "parse", "line does not parse; kept as its text", "path", e.Path, "offset", e.Offset, "parser", a.cfg.Parser, "error", err)
		}
		for i := range a.cfg.Transforms {
			a.cfg.Transforms[i].Apply(r)
		}
		a.attach(r, e.Path)
		if a.cfg.Node {
			if a.podSeries == nil {
				a.podSeries = map[[2]string]bool{}
			}
			a.podSeries[[2]string{r.Node.Namespace, r.Node.Pod}] = true
			a.metrics.podBytes.WithLabelValues(r.Node.Namespace, r.Node.Pod).Add(float64(len(e.Data) + 1))
			a.metrics.podLines.WithLabelValues(r.Node.Namespace, r.Node.Pod).Inc()
		}
		recs[i] = r
	}
	return recs
}

// attach gives r its pod, namespace, pod uid, container and node:
// namespace and pod as the record's node (the workload that wrote the
// line, which Loki labels by), the rest as OpenTelemetry k8s.* fields.
func (a *Agent) attach(r *record.Record, path string) {
	m := a.meta(path)
	r.Node.Pod, r.Node.Namespace = m.Name, m.Namespace
	if r.Stream == "" {
		r.Stream = path
	}
	if m.UID == "" && m.Container == "" && m.Node == "" {
		return
	}
	if r.Fields == nil {
		r.Fields = make(map[string]string, 3)
	}
	for k, v := range map[string]string{"k8s.pod.uid": m.UID, "k8s.container.name": m.Container, "k8s.node.name": m.Node} {
		if v != "" {
			r.Fields[k] = v
		}
	}
}

// deliver hands recs to the destination until it accepts them or ctx
// ends: a destination that is down holds the position, nothing is skipped.
func (a *Agent) deliver(ctx context.Context, recs []*record.Record) error {
	backoff := 100 * time.Millisecond
	for {
		err := a.dest.ConsumeRecords(ctx, recs)
		if err == nil {
			a.metrics.delivered.Add(float64(len(recs)))
			return nil
		}
		var rej *RejectedError
		if errors.As(err, &rej) {
			// Partial success: the receiver refused some records for good and
			// says they must not be sent again (OTLP spec).
			a.metrics.dropped.WithLabelValues("rejected_by_receiver").Add(float64(rej.Rejected))
			a.metrics.delivered.Add(float64(len(recs) - int(rej.Rejected)))
			a.warn.Log(a.log, slog.LevelWarn, "rejected", "the receiver rejected records", "rejected", rej.Rejected, "reason", rej.Message)
			return nil
		}
		a.metrics.deliveryErrors.Inc()
		a.warn.Log(a.log, slog.LevelWarn, "deliver", "destination did not accept the batch; holding the position and retrying", "records", len(recs), "error", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(errors.New("gave up delivering a batch: its lines are read again after a restart"), err)
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// forgetGonePods removes the per-pod series of pods none of whose files
// is open any more (the pod was deleted and its logs read to the end),
// so the series stay bounded by the pods on the node.
func (a *Agent) forgetGonePods(open map[string]int64) {
	live := make(map[[2]string]bool, len(open))
	for p := range open {
		if m, ok := podFromPath(a.cfg.PodsDir, p); ok {
			live[[2]string{m.Namespace, m.Name}] = true
		}
	}
	for k := range a.podSeries {
		if !live[k] {
			a.metrics.podBytes.DeleteLabelValues(k[0], k[1])
			a.metrics.podLines.DeleteLabelValues(k[0], k[1])
			delete(a.podSeries, k)
		}
	}
}

// RejectedError is a destination's partial success: Rejected of the batch
// were refused and must not be retried; the rest was accepted.
type RejectedError struct {
	Rejected int64
	Message  string
}

func (e *RejectedError) Error() string { return "receiver rejected records: " + e.Message }

// saveCheckpoint writes the positions after the last accepted batch. A
// failure (a full disk) keeps the previous checkpoint and reading goes on.
func (a *Agent) saveCheckpoint() {
	if !a.dirty {
		return
	}
	if a.out != nil {
		if err := a.out.sync(); err != nil {
			a.metrics.checkpointErrors.Inc()
			a.warn.Log(a.log, slog.LevelError, "out-sync", "fsync of --out failed; checkpoint kept as it was", "error", err)
			return
		}
	}
	if err := checkpoint.Save(a.cfg.StateDir, a.acked); err != nil {
		a.metrics.checkpointErrors.Inc()
		a.warn.Log(a.log, slog.LevelError, "checkpoint", "checkpoint not written; still reading, the previous one stays", "error", err)
		a.savedAt = time.Now() // retry at the next interval, not every line
		return
	}
	a.dirty = false
	a.savedAt = time.Now()
	a.savedAtN.Store(a.savedAt.UnixNano())
}

// Drained reports whether every file was read to its end, was quiet for
// quiet, and the checkpoint holds all of it.
func (a *Agent) Drained(quiet time.Duration) bool {
	return a.caughtUp.Load() && a.savedClean.Load() && time.Since(time.Unix(0, a.lastRead.Load())) >= quiet
}

type agentMetrics struct {
	delivered, deliveryErrors, checkpointErrors, invalidUTF8, truncated prometheus.Counter
	dropped, parseErrors                                                *prometheus.CounterVec
	lagBytes                                                            *prometheus.GaugeVec
	podBytes, podLines, reloads                                         *prometheus.CounterVec
	checkpointAge                                                       prometheus.GaugeFunc
}

func newAgentMetrics(reg prometheus.Registerer) *agentMetrics {
	m := &agentMetrics{
		delivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshtrail_tail_records_delivered_total",
			Help: "Records the destination accepted."}),
		deliveryErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshtrail_tail_delivery_errors_total",
			Help: "Batches the destination did not accept (retried; the position is held)."}),
		checkpointErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshtrail_tail_checkpoint_errors_total",
			Help: "Checkpoints that could not be written (full or read-only state directory); the previous one stays."}),
		invalidUTF8: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshtrail_tail_invalid_utf8_lines_total",
			Help: "Lines whose invalid UTF-8 was replaced by U+FFFD (flagged invalid_utf8)."}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshtrail_tail_truncated_lines_total",
			Help: "Lines cut at max_line_bytes (flagged truncated)."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshtrail_tail_records_dropped_total",
			Help: "Records dropped, by reason."}, []string{"reason"}),
		parseErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshtrail_tail_parse_errors_total",
			Help: "Lines that did not have the parser's format (kept as their text)."}, []string{"parser"}),
		lagBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meshtrail_tail_lag_bytes",
			Help: "Bytes behind each tailed file's end."}, []string{"path"}),
	}
	// Node mode: what each pod writes, so a user sees which workloads are
	// over the injector's sidecar threshold (rate() of these).
	m.podBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshtrail_tail_pod_bytes_total",
		Help: "Node mode: bytes of container log lines read per pod."}, []string{"namespace", "pod"})
	m.podLines = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshtrail_tail_pod_lines_total",
		Help: "Node mode: container log lines read per pod."}, []string{"namespace", "pod"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshtrail_tail_config_reloads_total",
		Help: "Changed configuration files seen, by result (applied, invalid)."}, []string{"result"})
	reg.MustRegister(m.reloads, m.delivered, m.deliveryErrors, m.checkpointErrors, m.invalidUTF8, m.truncated, m.dropped, m.parseErrors,
		m.lagBytes, m.podBytes, m.podLines)
	return m
}

func (m *agentMetrics) lag(l map[string]int64) {
	m.lagBytes.Reset()
	for p, v := range l {
		m.lagBytes.WithLabelValues(p).Set(float64(v))
	}
}
