package fanout

import (
	"context"
	"errors"

	"github.com/meshtrail/meshtrail/internal/record"
)

// Exporter sends batches to one backend (Jaeger, Loki, Elasticsearch, ...).
// It is what a sink's queue drives: the queue owns batching, retries,
// backoff, rate limits and disk spill; the exporter only encodes and sends.
type Exporter interface {
	// Name identifies the backend in logs and metrics, e.g. "loki".
	Name() string
	// Export sends one batch and reports the outcome:
	//   nil                    every record was accepted;
	//   a *PartialError        some records must be retried (Retry), the
	//                          rest were accepted or dead-lettered;
	//   Permanent(err)         the batch can never succeed as is (the queue
	//                          splits it to isolate the bad record, then
	//                          drops or dead-letters what still fails);
	//   any other error        the whole batch may be retried later.
	Export(ctx context.Context, batch []*record.Record) error
}

// PartialError says which records of a batch must be sent again.
type PartialError struct {
	Retry []*record.Record
	Err   error
}

func (e *PartialError) Error() string { return "partial failure: " + e.Err.Error() }
func (e *PartialError) Unwrap() error { return e.Err }

type permanentError struct{ err error }

func (e permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying unchanged.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err (or an error it wraps) was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}
