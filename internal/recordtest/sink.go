package recordtest

import (
	"context"
	"sync"

	"github.com/meshtrail/meshtrail/internal/record"
)

// Sink is a record.Consumer that keeps what it is given, for tests that
// need a destination but not a backend (the OpenTelemetry Collector's
// consumertest.LogsSink). Safe for concurrent use.
type Sink struct {
	mu    sync.Mutex
	recs  []*record.Record
	calls int
	err   error
}

// ConsumeRecords keeps recs, or refuses them with the error SetErr gave.
func (s *Sink) ConsumeRecords(_ context.Context, recs []*record.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.err != nil {
		return s.err
	}
	s.recs = append(s.recs, recs...)
	return nil
}

// SetErr makes every later call fail with err (nil: accept again).
func (s *Sink) SetErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// Records returns a copy of what was accepted, in order.
func (s *Sink) Records() []*record.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*record.Record(nil), s.recs...)
}

// Len is how many records were accepted.
func (s *Sink) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs)
}

// Calls is how many batches were offered, accepted or not.
func (s *Sink) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Discard accepts every batch and keeps nothing.
var Discard record.Consumer = record.ConsumerFunc(func(context.Context, []*record.Record) error { return nil })
