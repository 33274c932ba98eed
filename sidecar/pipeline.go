package sidecar

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/config"
	"github.com/meshtrail/meshtrail/internal/pipeline"
	"github.com/meshtrail/meshtrail/internal/record"
)

// buildPipeline builds the shared pipeline from the sinks: section,
// restricted to cfg.SinkNames when given, and returns its Acknowledged
// consumer: ConsumeRecords returns nil only once every sink holds the
// batch (on disk where it has a disk queue), which is when the agent may
// advance its checkpoints.
func buildPipeline(cfg Config, reg prometheus.Registerer, logger *slog.Logger) (record.Consumer, func(context.Context) error, error) {
	sinks, err := cfg.Sinks.Only(cfg.SinkNames)
	if err != nil {
		return nil, nil, config.Errorf("sinks", "%v", err)
	}
	if len(sinks.Enabled()) == 0 {
		return nil, nil, fmt.Errorf("sinks: no sink enabled")
	}
	// The agent writes no NDJSON of its own here (--out is its exactly-once
	// writer) and derives no RED metrics: its records are log lines.
	p, err := pipeline.New(pipeline.Config{Sinks: sinks, Metrics: pipeline.MetricsConfig{Disabled: true}}, reg, logger)
	if err != nil {
		return nil, nil, err
	}
	return p.Consumer(pipeline.Acknowledged), p.Shutdown, nil
}
