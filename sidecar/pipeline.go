package sidecar

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/config"
	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/pipeline"
	"github.com/meshtrail/meshtrail/internal/record"
)

// buildPipeline turns the sinks: section into the consumer records go to:
// one queued sink per backend, restricted to cfg.SinkNames when given.
// ConsumeRecords returning nil means every sink's queue took the batch.
// (The one place to swap for the shared pipeline once it lands.)
func buildPipeline(cfg Config, reg prometheus.Registerer, logger *slog.Logger) (record.Consumer, func(context.Context) error, error) {
	pc, err := pipeline.FromSections(cfg.Sinks)
	if err != nil {
		return nil, nil, err
	}
	for name := range pc.Other {
		return nil, nil, config.Errorf("sinks."+name, "unknown sink; known: otlp, zipkin, loki, elasticsearch, fluentd, prometheus_remote_write")
	}
	if err := pc.Validate(); err != nil {
		return nil, nil, err
	}
	sinks, shutdown, err := pipeline.Build(pc, reg, logger)
	if err != nil {
		return nil, nil, err
	}
	if len(cfg.SinkNames) > 0 {
		var kept []fanout.Sink
		for _, s := range sinks {
			if slices.Contains(cfg.SinkNames, s.Name()) {
				kept = append(kept, s)
			}
		}
		for _, n := range cfg.SinkNames {
			if !slices.ContainsFunc(kept, func(s fanout.Sink) bool { return s.Name() == n }) {
				_ = shutdown(context.Background())
				return nil, nil, config.Errorf("sink_names", "%q is not an enabled sink of the sinks: section", n)
			}
		}
		sinks = kept
	}
	if len(sinks) == 0 {
		_ = shutdown(context.Background())
		return nil, nil, fmt.Errorf("sinks: no sink enabled")
	}
	return fanout.New(sinks...), shutdown, nil
}
