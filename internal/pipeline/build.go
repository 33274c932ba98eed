package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/config"
	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/fanout/queue"
	"github.com/meshtrail/meshtrail/internal/sink/endpoint"
	"github.com/meshtrail/meshtrail/internal/sink/promremote"
)

// Build validates c and returns one queued sink per enabled section, and a
// shutdown function that flushes (or persists to disk) what the queues
// hold, then closes the exporters. On error nothing is left running.
func Build(c *Sinks, reg prometheus.Registerer, logger *slog.Logger) ([]fanout.Sink, func(context.Context) error, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := &builder{reg: reg, logger: logger}
	if err := b.build(c); err != nil {
		_ = b.shutdown(context.Background())
		return nil, nil, err
	}
	return b.sinks, b.shutdown, nil
}

type builder struct {
	reg     prometheus.Registerer
	logger  *slog.Logger
	sinks   []fanout.Sink
	queues  []*queue.Queue
	closers []func(context.Context) error
}

func (b *builder) build(c *Sinks) error {
	for _, s := range c.sections() {
		q, ok := s.section.(queued)
		if !ok || !s.On() {
			continue // remote write: NewRemoteWrite builds its pusher
		}
		built, err := q.Build(s.name, endpoint.Deps{Registerer: b.reg, Logger: b.logger})
		if err != nil {
			return sectionError(s.name, err)
		}
		if built.Close != nil {
			b.closers = append(b.closers, built.Close)
		}
		if err := b.add(built.Exporter, q.QueueConfig()); err != nil {
			return err
		}
	}
	return nil
}

// NewRemoteWrite returns the pusher of the prometheus_remote_write section,
// which pushes what the RED metrics sink holds (its registry is g), or nil
// when the section is absent or disabled. The caller starts it and shuts it
// down after the sources stop, so its last push has every record.
func NewRemoteWrite(c *Sinks, g prometheus.Gatherer, reg prometheus.Registerer, logger *slog.Logger) (*promremote.Pusher, error) {
	if c.RemoteWrite == nil || !c.RemoteWrite.On() {
		return nil, nil
	}
	p, err := c.RemoteWrite.BuildPusher(g, reg, logger)
	if err != nil {
		return nil, sectionError("prometheus_remote_write", err)
	}
	return p, nil
}

// sectionError places a sink's error under its section: a field error
// becomes sinks.NAME.FIELD: ..., any other sinks.NAME: ...
func sectionError(name string, err error) error {
	var fe *config.FieldError
	if errors.As(err, &fe) {
		return fmt.Errorf("sinks.%s.%w", name, err)
	}
	return fmt.Errorf("sinks.%s: %w", name, err)
}

func (b *builder) add(exp fanout.Exporter, qc queue.Config) error {
	q, err := queue.New(exp, qc, b.reg, b.logger)
	if err != nil {
		return err
	}
	b.queues = append(b.queues, q)
	b.sinks = append(b.sinks, q)
	return nil
}

// shutdown drains every queue (concurrently: one slow backend must not
// eat the others' share of the deadline), then closes the exporters.
func (b *builder) shutdown(ctx context.Context) error {
	errc := make(chan error, len(b.queues))
	for _, q := range b.queues {
		go func() { errc <- q.Shutdown(ctx) }()
	}
	var errs []error
	for range b.queues {
		errs = append(errs, <-errc)
	}
	for _, c := range b.closers {
		errs = append(errs, c(ctx))
	}
	b.queues, b.closers = nil, nil
	return errors.Join(errs...)
}
