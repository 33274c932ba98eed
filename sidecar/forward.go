package sidecar

import (
	"context"
	"errors"
	"log/slog"

	"github.com/meshtrail/meshtrail/internal/record"
)

// forwarder is --forward (OTLP logs over gRPC); see forward_otlp.go.
type forwarder struct{}

func newForwarder(addr string, pod PodMeta, sinks []string, logger *slog.Logger) (*forwarder, error) {
	return nil, errors.New("forward: not built yet")
}

func (f *forwarder) ConsumeRecords(context.Context, []*record.Record) error {
	return errors.New("not built")
}
func (f *forwarder) Close() error { return nil }
