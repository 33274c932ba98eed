// Package ndjson is the embedded default sink: one JSON object per line
// (record.AppendJSON, written by a record.Encoder), to stdout or to a size-rotated file.
package ndjson

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/meshtrail/meshtrail/record"
)

// Rotation bounds a file output.
type Rotation struct {
	MaxSizeMB  int  // rotate when the file reaches this size
	MaxBackups int  // rotated files kept
	Compress   bool // gzip rotated files
}

// Sink writes records as NDJSON. Writes are buffered and flushed at least
// every FlushInterval, and on Close.
type Sink struct {
	mu     sync.Mutex
	w      *bufio.Writer
	out    io.Writer
	closer io.Closer
	bufs   sync.Pool // of *encodeBuf
	stop   chan struct{}
	done   chan struct{}

	records prometheus.Counter
	bytes   prometheus.Counter
	errors  prometheus.Counter
}

// FlushInterval bounds how long a record waits in the buffer.
const FlushInterval = time.Second

// New opens path ("-" for stdout) for writing. reg receives the sink's
// metrics.
func New(path string, rot Rotation, reg prometheus.Registerer) (*Sink, error) {
	s := &Sink{stop: make(chan struct{}), done: make(chan struct{})}
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
	s.w = bufio.NewWriterSize(s.out, 256<<10)
	s.bufs.New = func() any { return &encodeBuf{b: make([]byte, 0, 64<<10)} }
	s.records = prometheus.NewCounter(prometheus.CounterOpts{Name: "meshtrail_ndjson_records_written_total", Help: "Records written to the NDJSON output."})
	s.bytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "meshtrail_ndjson_bytes_written_total", Help: "Bytes written to the NDJSON output."})
	s.errors = prometheus.NewCounter(prometheus.CounterOpts{Name: "meshtrail_ndjson_write_errors_total", Help: "Writes to the NDJSON output that failed."})
	if reg != nil {
		for _, c := range []prometheus.Collector{s.records, s.bytes, s.errors} {
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
	_, err := s.w.Write(buf)
	s.mu.Unlock()
	n := len(buf)
	if cap(buf) <= 1<<20 { // do not pin huge buffers in the pool
		eb.b = buf
		s.bufs.Put(eb)
	}
	if err != nil {
		s.errors.Inc()
		return fmt.Errorf("ndjson sink: %w", err)
	}
	s.records.Add(float64(len(recs)))
	s.bytes.Add(float64(n))
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
	return s.w.Flush()
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
