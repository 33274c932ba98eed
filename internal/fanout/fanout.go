// Package fanout hands every record a source produces to each configured
// sink. It is the middle of meshtrail's one-way flow:
// source -> record -> fanout -> sink. A sink never reaches back into a source.
package fanout

import (
	"context"
	"errors"

	"github.com/meshtrail/meshtrail/internal/record"
)

// Sink is a named record.Consumer: a destination such as the NDJSON file,
// the Prometheus RED metrics, Loki or Elasticsearch.
type Sink interface {
	record.Consumer
	// Name identifies the sink in logs and in meshtrail's own metrics.
	Name() string
}

// Fanout is a record.Consumer that passes each batch to every sink in turn.
// It keeps no state of its own; queueing, batching and retries belong to
// the sinks (or to a queue placed in front of one).
type Fanout struct {
	sinks []Sink
}

// New returns a Fanout over sinks.
func New(sinks ...Sink) *Fanout { return &Fanout{sinks: sinks} }

// Sinks returns the sinks in order.
func (f *Fanout) Sinks() []Sink { return f.sinks }

// ConsumeRecords gives recs to every sink. Every sink is tried even when
// one fails; the errors are joined.
func (f *Fanout) ConsumeRecords(ctx context.Context, recs []*record.Record) error {
	var errs []error
	for _, s := range f.sinks {
		if err := s.ConsumeRecords(ctx, recs); err != nil {
			errs = append(errs, &SinkError{Sink: s.Name(), Err: err})
		}
	}
	return errors.Join(errs...)
}

// SinkError says which sink refused a batch.
type SinkError struct {
	Sink string
	Err  error
}

func (e *SinkError) Error() string { return "sink " + e.Sink + ": " + e.Err.Error() }
func (e *SinkError) Unwrap() error { return e.Err }
