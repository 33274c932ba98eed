package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/meshtrail/meshtrail/als"
	"github.com/meshtrail/meshtrail/internal/config"
	"github.com/meshtrail/meshtrail/internal/otlplogs"
	"github.com/meshtrail/meshtrail/internal/pipeline"
)

// alsFile is `meshtrail als --config`'s file: the receiver's settings and
// the pipeline's (out, metrics, sinks, routing) side by side at the top
// level, as als/examples/als.yaml shows.
type alsFile struct {
	als.Config
	Pipeline pipeline.Config `json:"-"` // its keys sit beside the receiver's: see UnmarshalJSON
}

// UnmarshalJSON reads both halves from the one object, strictly: a key
// neither knows is an error naming it.
func (f *alsFile) UnmarshalJSON(b []byte) error {
	return config.UnmarshalMerged(b, &f.Config, &f.Pipeline)
}

// alsDefaults are the embedded defaults: everything on loopback, NDJSON to
// stdout, RED metrics with the meshtrail_ prefix.
func alsDefaults() alsFile {
	return alsFile{Config: als.DefaultConfig(), Pipeline: pipeline.DefaultConfig()}
}

func (f *alsFile) validate() error {
	if err := f.Config.Validate(); err != nil {
		return err
	}
	return f.Pipeline.Validate()
}

// newRegistry is the process's one registry: /metrics serves it, every
// part registers on it.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

const alsUsage = `Usage: meshtrail als [flags]

Receives Envoy access logs over gRPC (envoy.service.accesslog.v3
AccessLogService), turns each HTTP and TCP entry into a structured record
correlated by trace id, writes the records as NDJSON and serves Istio-style
RED metrics (with trace_id exemplars) on /metrics.

Examples:
  # embedded defaults: gRPC on 127.0.0.1:18000, metrics on 127.0.0.1:18090, NDJSON to stdout
  meshtrail als

  # in an Istio mesh: all interfaces, a rotated file. Give the receiver's
  # pod a sidecar: Istio's mutual TLS then protects the hop from every
  # Envoy (they reach it through their outbound cluster, as the snippet
  # below configures), and a PeerAuthentication in STRICT mode enforces it
  meshtrail als --listen 0.0.0.0:18000 --metrics-listen 0.0.0.0:18090 \
    --out /var/log/meshtrail/records.ndjson

  # Envoys outside the mesh, or a receiver without a sidecar: TLS here, and
  # client certificates from this CA required (mutual TLS)
  meshtrail als --listen 0.0.0.0:18000 --tls-cert /certs/tls.crt \
    --tls-key /certs/tls.key --tls-client-ca /certs/ca.crt

  # everything from a YAML file (flags given on the command line win)
  meshtrail als --config als.yaml

Point Istio at it:
` + als.IstioSnippet + `
Flags:
`

// alsCommand runs "meshtrail als": the ALS receiver as the source of a
// pipeline built from the same configuration.
func alsCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("als", flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout) // asked for: it goes where a pager or grep reads
		}
	}
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), alsUsage)
		printFlags(fs)
	}
	def := alsDefaults()
	configPath := fs.String("config", "", "YAML configuration file: every setting, flags override it (the project's als/examples/als.yaml documents each key)")
	listen := fs.String("listen", def.Listen, "gRPC HOST:PORT Envoys stream access logs to")
	metricsListen := fs.String("metrics-listen", def.MetricsListen, "HOST:PORT for /metrics, /healthz, /readyz (empty disables)")
	otlpListen := fs.String("otlp-listen", "", "HOST:PORT receiving OTLP logs (gRPC and HTTP /v1/logs) from meshtrail tail --forward or OpenTelemetry SDKs; empty disables")
	out := fs.String("out", def.Pipeline.Out, `NDJSON output: a file path (size-rotated) or "-" for stdout; empty disables`)
	prefix := fs.String("metric-prefix", def.Pipeline.Metrics.Prefix, `RED metric name prefix; "istio_" feeds Kiali (only with Istio's own telemetry off, or it double-counts)`)
	tlsCert := fs.String("tls-cert", "", "serve gRPC over TLS with this certificate (PEM)")
	tlsKey := fs.String("tls-key", "", "private key of --tls-cert (PEM)")
	tlsCA := fs.String("tls-client-ca", "", "require client certificates signed by this CA (mutual TLS)")
	allow := fs.String("allow-sensitive-headers", "", "comma-separated headers to keep even though they carry credentials (Authorization, Cookie, ...)")
	traceOrder := fs.String("trace-header-order", strings.Join(def.Trace.HeaderOrder, ","), "which logged trace header gives a record its trace id when several disagree: w3c, b3, b3multi in order of precedence (b3,b3multi,w3c for a mesh traced with Zipkin)")
	logLevel := fs.String("log-level", def.LogLevel, "debug, info, warn or error")
	pprofOn := fs.Bool("pprof", false, "serve /debug/pprof on the metrics listener")
	grace := fs.Duration("shutdown-grace", def.ShutdownGrace.D(), "on SIGTERM: the time to end open streams (each after the message in hand; idle ones are cut at half of it) and to flush every sink; keep it under the pod's terminationGracePeriodSeconds. A second signal exits at once")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "meshtrail als: unexpected argument %q (flags start with --)\n", fs.Arg(0))
		return 2
	}

	cfg := def
	if *configPath != "" {
		if err := config.Load(*configPath, &cfg); err != nil {
			fmt.Fprintf(stderr, "meshtrail als: %v\n", err)
			return 2
		}
	}
	// Flags given explicitly override the file.
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			cfg.Listen = *listen
		case "metrics-listen":
			cfg.MetricsListen = *metricsListen
		case "otlp-listen":
			cfg.OTLPListen = *otlpListen
		case "out":
			cfg.Pipeline.Out = *out
		case "metric-prefix":
			cfg.Pipeline.Metrics.Prefix = *prefix
		case "tls-cert":
			cfg.TLS.CertFile = *tlsCert
		case "tls-key":
			cfg.TLS.KeyFile = *tlsKey
		case "tls-client-ca":
			cfg.TLS.ClientCAFile = *tlsCA
		case "allow-sensitive-headers":
			cfg.Headers.AllowSensitive = splitList(*allow)
		case "trace-header-order":
			cfg.Trace.HeaderOrder = splitList(*traceOrder)
		case "log-level":
			cfg.LogLevel = *logLevel
		case "pprof":
			cfg.Pprof = *pprofOn
		case "shutdown-grace":
			cfg.ShutdownGrace = config.Duration(*grace)
		}
	})
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(stderr, "meshtrail als: invalid configuration: %v\n", err)
		return 2
	}
	logger := als.NewLogger(stderr, cfg.LogLevel)
	if os.Getenv("GOGC") == "" {
		// The receiver's live heap is small (a few MB per thousand streams)
		// and its allocation rate high: collecting at 4x the live heap
		// instead of 2x halves GC CPU for a few MB more memory. GOGC in
		// the environment overrides it.
		debug.SetGCPercent(400)
	}
	reg := newRegistry()
	p, err := pipeline.New(cfg.Pipeline, reg, logger)
	if err != nil {
		logger.Error("cannot start", "error", err)
		return 1
	}
	svc, err := als.Start(cfg.Config, p.Consumer(pipeline.Queued), reg, logger, p.Gatherer())
	if err != nil {
		_ = p.Shutdown(context.Background())
		logger.Error("cannot start", "error", err)
		return 1
	}
	if cfg.OTLPListen != "" {
		// Application logs over OTLP (meshtrail tail --forward, SDKs, a
		// Collector): answered only once every sink holds them.
		ol, err := otlplogs.Listen(cfg.OTLPListen, p.Consumer(pipeline.Acknowledged), reg, logger)
		if err != nil {
			_ = svc.Shutdown(context.Background())
			_ = p.Shutdown(context.Background())
			logger.Error("cannot start", "error", err)
			return 1
		}
		svc.AddCloser(ol.Shutdown)
	}
	// The sources end first (the receiver its streams, then the OTLP
	// listener); the pipeline then drains.
	svc.AddCloser(p.Shutdown)
	if err := svc.Wait(ctx, cfg.ShutdownGrace.D()); err != nil {
		logger.Error("shutdown", "error", err)
		return 1
	}
	return 0
}

// printFlags lists the flags as they are typed, --name, with their
// defaults.
func printFlags(fs *flag.FlagSet) {
	w := fs.Output()
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if typ != "" {
			line += " " + typ
		}
		if f.DefValue != "" && f.DefValue != "false" {
			usage += fmt.Sprintf(" (default %q)", f.DefValue)
		}
		fmt.Fprintf(w, "%s\n    \t%s\n", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
	})
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
