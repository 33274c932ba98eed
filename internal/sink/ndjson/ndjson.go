// Package ndjson is the embedded default sink: one JSON object per line
// (record.AppendJSON, written by a record.Encoder), to stdout or to a size-rotated file.
package ndjson

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/meshtrail/meshtrail/internal/loglimit"
	"github.com/meshtrail/meshtrail/internal/record"
)

// Rotation bounds a file output.
type Rotation struct {
	MaxSizeMB  int  // rotate when the file reaches this size
	MaxBackups int  // rotated files kept
	Compress   bool // gzip rotated files
}

// Sink writes records as NDJSON. Writes are buffered and flushed at least
// every FlushInterval, and on Close.
//
// Every write to the output holds whole lines: the rotating file rotates
// only between writes, so a line never starts in one file and ends in the
// next (a bufio.Writer flushes at its size, mid-line, which split a record
// at every rotation for whoever tails the files).
type Sink struct {
	mu          sync.Mutex
	pending     []byte // whole lines not yet written, under mu
	pendingRecs int    // the records in pending, under mu
	out         io.Writer
	log         *slog.Logger
	midLine     bool // a failed write ended mid-line, under mu
	logLimit    *loglimit.Limiter
	closer      io.Closer
	bufs        sync.Pool // of *encodeBuf
	stop        chan struct{}
	done        chan struct{}

	records prometheus.Counter
	bytes   prometheus.Counter
	errors  prometheus.Counter
	dropped prometheus.Counter
}

// FlushInterval bounds how long a record waits in the buffer.
const FlushInterval = time.Second

// flushAt is the buffered size that triggers a write. maxWrite is the most
// one write carries unless a single line is longer: room for a batch past
// flushAt (one write, not two), and still under the 1 MB smallest rotation
// size, which the rotating file refuses to exceed in one write.
const (
	flushAt    = 256 << 10
	maxWrite   = 512 << 10
	pendingCap = flushAt + 64<<10 // room for the batch that crosses flushAt
)

// New opens path ("-" for stdout) for writing. reg receives the sink's
// metrics; write errors are logged to logger (nil: not logged).
func New(path string, rot Rotation, reg prometheus.Registerer, logger *slog.Logger) (*Sink, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// A full disk fails every flush: one line a minute says so.
	s := &Sink{stop: make(chan struct{}), done: make(chan struct{}), log: logger, logLimit: loglimit.New(time.Minute)}
	if path == "-" {
		s.out = os.Stdout
	} else {
		// Fail at start, with the path, rather than on the first record.
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return nil, fmt.Errorf("ndjson sink: %w", err)
		}
		f.Close()
		lj := &lumberjack.Logger{Filename: path, MaxSize: rot.MaxSizeMB, MaxBackups: rot.MaxBackups, Compress: rot.Compress}
		s.out, s.closer = lj, lj
	}
	s.pending = make([]byte, 0, pendingCap)
	s.bufs.New = func() any { return &encodeBuf{b: make([]byte, 0, 64<<10)} }
	s.records = prometheus.NewCounter(prometheus.CounterOpts{Name: "meshtrail_ndjson_records_written_total", Help: "Records written to the NDJSON output (handed to the file, not only buffered)."})
	s.bytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "meshtrail_ndjson_bytes_written_total", Help: "Bytes written to the NDJSON output."})
	s.errors = prometheus.NewCounter(prometheus.CounterOpts{Name: "meshtrail_ndjson_write_errors_total", Help: "Writes to the NDJSON output that failed."})
	s.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "meshtrail_ndjson_records_dropped_total", Help: "Buffered records lost because a write to the NDJSON output failed (disk full, file removed)."})
	if reg != nil {
		for _, c := range []prometheus.Collector{s.records, s.bytes, s.errors, s.dropped} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					return nil, err
				}
			}
		}
	}
	go s.flushLoop()
	return s, nil
}

// Name implements fanout.Sink.
func (s *Sink) Name() string { return "ndjson" }

// encodeBuf is what ConsumeRecords renders with: a buffer and an Encoder,
// which remembers the JSON of the parts the records of a stream share
// (ConsumeRecords runs on many goroutines at once, hence the pool).
type encodeBuf struct {
	b   []byte
	enc record.Encoder
}

// ConsumeRecords encodes recs outside the lock, then writes them at once.
func (s *Sink) ConsumeRecords(_ context.Context, recs []*record.Record) error {
	eb := s.bufs.Get().(*encodeBuf)
	buf := eb.b[:0]
	for _, r := range recs {
		buf = eb.enc.Append(buf, r)
		buf = append(buf, '\n')
	}
	s.mu.Lock()
	s.pending = append(s.pending, buf...)
	s.pendingRecs += len(recs)
	var err error
	if len(s.pending) >= flushAt {
		err = s.writePending()
	}
	s.mu.Unlock()
	if cap(buf) <= 1<<20 { // do not pin huge buffers in the pool
		eb.b = buf
		s.bufs.Put(eb)
	}
	if err != nil {
		return fmt.Errorf("ndjson sink: %w", err)
	}
	return nil
}

func (s *Sink) flushLoop() {
	defer close(s.done)
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			_ = s.Flush()
		}
	}
}

// Flush writes buffered records out.
func (s *Sink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writePending()
}

// writePending writes the buffered lines in chunks of at most maxWrite
// bytes cut after a newline (a longer line goes alone). On an error the
// unwritten lines are dropped, counted and logged (at most once a minute):
// keeping them would grow the buffer without bound while the disk stays
// full.
func (s *Sink) writePending() error {
	p, recs := s.pending, s.pendingRecs
	s.pending, s.pendingRecs = s.pending[:0], 0
	if cap(s.pending) > 4<<20 { // one huge batch once: do not keep its buffer
		s.pending = make([]byte, 0, pendingCap)
	}
	total := len(p)
	if s.midLine && len(p) > 0 {
		// A failed write left part of a line in the file: end it, so the
		// next record starts a line of its own.
		if _, err := s.out.Write([]byte{'\n'}); err == nil {
			s.midLine = false
		}
	}
	for len(p) > 0 {
		n := len(p)
		if n > maxWrite {
			if i := bytes.LastIndexByte(p[:maxWrite], '\n'); i >= 0 {
				n = i + 1
			} else if j := bytes.IndexByte(p[maxWrite:], '\n'); j >= 0 {
				n = maxWrite + j + 1
			}
		}
		if w, err := s.out.Write(p[:n]); err != nil {
			w = max(0, min(w, n))
			if w > 0 && p[w-1] != '\n' {
				s.midLine = true
			}
			lost := bytes.Count(p[w:], []byte{'\n'})
			s.errors.Inc()
			s.dropped.Add(float64(lost))
			s.records.Add(float64(recs - lost))
			s.bytes.Add(float64(total - len(p) + w))
			s.logLimit.Log(s.log, slog.LevelError, "write", "NDJSON output: write failed, buffered records dropped (is the disk full or the file gone?)",
				"error", err, "records_dropped", lost)
			return err
		}
		p = p[n:]
	}
	s.records.Add(float64(recs))
	s.bytes.Add(float64(total))
	return nil
}

// Close flushes and closes the output.
func (s *Sink) Close() error {
	close(s.stop)
	<-s.done
	err := s.Flush()
	if s.closer != nil {
		err = errors.Join(err, s.closer.Close())
	}
	return err
}
