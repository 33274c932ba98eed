package als

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"

	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/fanout/route"
	"github.com/meshtrail/meshtrail/internal/otlplogs"
	"github.com/meshtrail/meshtrail/internal/pipeline"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/sink/istiometrics"
	"github.com/meshtrail/meshtrail/internal/sink/ndjson"
)

// Service is a running receiver: the gRPC server, its sinks and the
// metrics endpoint. Start one with Start; stop it with Shutdown.
type Service struct {
	cfg      Config
	log      *slog.Logger
	Registry *prometheus.Registry
	receiver *Receiver
	grpc     *grpc.Server
	lis      net.Listener
	http     *http.Server
	httpLis  net.Listener
	ndjson   *ndjson.Sink
	closers  []func(context.Context) error
	wg       sync.WaitGroup
	stopLog  chan struct{}
	grpcDown atomic.Bool // the gRPC server's Serve returned
	stopOnce sync.Once
	stopErr  error
}

// Start validates cfg, opens the listeners and serves in the background.
// extra sinks (the fan-out to backends) receive every record after the
// embedded ones.
func Start(cfg Config, logger *slog.Logger, extra ...fanout.Sink) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: logger, Registry: prometheus.NewRegistry(), stopLog: make(chan struct{})}
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var sinks []fanout.Sink
	if cfg.Out != "" {
		nd, err := ndjson.New(cfg.Out, ndjson.Rotation(cfg.OutRotation), s.Registry, logger)
		if err != nil {
			return nil, fmt.Errorf("out: %w", err)
		}
		s.ndjson = nd
		sinks = append(sinks, nd)
	}
	if !cfg.Metrics.Disabled {
		m, err := istiometrics.New(istiometrics.Options{Prefix: cfg.Metrics.Prefix, MaxSeries: cfg.Metrics.MaxSeries}, s.Registry)
		if err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		sinks = append(sinks, m)
	}
	sinks = append(sinks, extra...)

	// The backends: each behind its own queue, optionally routed.
	backendCfg, err := cfg.sinks()
	if err != nil {
		s.closeSinks()
		return nil, err
	}
	if backendCfg != nil {
		backends, shutdown, err := pipeline.Build(backendCfg, s.Registry, logger)
		if err != nil {
			s.closeSinks()
			return nil, err
		}
		s.closers = append(s.closers, shutdown)
		if cfg.Routing != nil {
			byName := make(map[string]record.Consumer, len(backends))
			for _, b := range backends {
				byName[b.Name()] = b
			}
			router, err := route.New(*cfg.Routing, byName, s.Registry, logger)
			if err != nil {
				_ = shutdown(context.Background())
				s.closeSinks()
				return nil, fmt.Errorf("routing: %w", err)
			}
			sinks = append(sinks, namedConsumer{router, "router"})
		} else {
			sinks = append(sinks, backends...)
		}
		names := make([]string, 0, len(backends))
		for _, b := range backends {
			names = append(names, b.Name())
		}
		logger.Info("sinks ready", "sinks", names, "routing", cfg.Routing != nil)
	}

	maxHeader := cfg.Headers.MaxValueBytes
	if maxHeader == -1 {
		maxHeader = 0
	} else if maxHeader == 0 {
		maxHeader = DefaultConfig().Headers.MaxValueBytes
	}
	all := fanout.New(sinks...)
	if cfg.OTLPListen != "" {
		// Application logs over OTLP go to the same sinks; the listener
		// stops before the sinks flush (first closer).
		ol, err := otlplogs.Listen(cfg.OTLPListen, all, s.Registry, logger)
		if err != nil {
			s.closeAll()
			return nil, err
		}
		s.closers = append([]func(context.Context) error{ol.Shutdown}, s.closers...)
	}
	s.receiver = NewReceiver(all, ReceiverOptions{
		MaxStreams:            cfg.GRPC.MaxStreams,
		AllowSensitiveHeaders: cfg.Headers.AllowSensitive,
		RedactHeaders:         cfg.Headers.Redact,
		MaxHeaderBytes:        maxHeader,
		TraceOrder:            cfg.Trace.traceOrder(),
		MaxStreamAge:          cfg.GRPC.MaxConnectionAge.D() * 11 / 10, // past gRPC's jitter: the GOAWAY was sent
	}, s.Registry, logger)

	if s.grpc, err = NewGRPCServer(s.receiver, cfg.GRPC, cfg.TLS); err != nil {
		s.closeSinks()
		return nil, err
	}
	if s.lis, err = Listen(cfg.Listen); err != nil {
		s.closeSinks()
		return nil, fmt.Errorf("listen: %w", err)
	}
	if cfg.MetricsListen != "" {
		if s.httpLis, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			s.lis.Close()
			s.closeSinks()
			return nil, fmt.Errorf("metrics_listen %s: %w", cfg.MetricsListen, err)
		}
		mux := http.NewServeMux()
		// OpenMetrics carries the exemplars (trace_id) when the scraper asks for it.
		mux.Handle("/metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{EnableOpenMetrics: true, Registry: s.Registry}))
		if cfg.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			if s.receiver.draining.Load() {
				// Shutting down: Kubernetes stops sending new connections here.
				http.Error(w, "shutting down", http.StatusServiceUnavailable)
				return
			}
			if s.grpcDown.Load() {
				http.Error(w, "the ALS gRPC server has stopped (see the log)", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ready")
		})
		s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.http.Serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("metrics server stopped", "error", err)
			}
		}()
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.grpc.Serve(s.lis); err != nil {
			logger.Error("ALS gRPC server stopped", "error", err)
		}
		s.grpcDown.Store(true)
	}()
	go func() {
		defer s.wg.Done()
		s.progressLoop(time.Minute)
	}()
	logger.Info("ALS receiver listening", "grpc", s.lis.Addr().String(), "tls", cfg.TLS.Enabled(),
		"mtls", cfg.TLS.ClientCAFile != "", "metrics", s.MetricsAddr(), "out", cfg.Out, "metric_prefix", cfg.Metrics.Prefix)
	return s, nil
}

// Addr is the gRPC address Envoys stream to.
func (s *Service) Addr() string { return s.lis.Addr().String() }

// MetricsAddr is the metrics address, "" when disabled.
func (s *Service) MetricsAddr() string {
	if s.httpLis == nil {
		return ""
	}
	return s.httpLis.Addr().String()
}

// AddCloser registers f to run at Shutdown after the receiver has stopped
// (a fan-out's queues flush or persist there).
func (s *Service) AddCloser(f func(context.Context) error) { s.closers = append(s.closers, f) }

// Shutdown stops accepting streams and ends the open ones, each after its
// next message and what was sent right behind it (Receiver.Drain), then
// flushes every sink. Envoy never ends its access log stream, but it sends
// at least every flush interval (1 s by default), so a busy stream ends
// within about a second; streams still open after half the time ctx leaves
// (idle ones, with nothing in flight) are cut, and the other half is the
// sinks' to flush. Without a deadline on ctx idle streams are waited for.
// Calling it again returns the first result.
func (s *Service) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { s.stopErr = s.shutdown(ctx) })
	return s.stopErr
}

func (s *Service) shutdown(ctx context.Context) error {
	close(s.stopLog)
	s.receiver.Drain()
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	var cut <-chan time.Time
	if deadline, ok := ctx.Deadline(); ok {
		t := time.NewTimer(time.Until(deadline) / 2)
		defer t.Stop()
		cut = t.C
	}
	select {
	case <-stopped:
	case <-cut:
	case <-ctx.Done():
	}
	select {
	case <-stopped:
	default:
		s.log.Warn("shutdown: cutting the streams still open (idle ones; a busy stream ends after its next message)",
			"streams", s.receiver.Streams())
		s.grpc.Stop()
		<-stopped
	}
	var errs []error
	for _, c := range s.closers {
		errs = append(errs, c(ctx))
	}
	errs = append(errs, s.closeSinks())
	if s.http != nil {
		errs = append(errs, s.http.Shutdown(ctx))
	}
	s.wg.Wait()
	s.log.Info("ALS receiver stopped")
	return errors.Join(errs...)
}

// closeAll undoes a Start that failed after the sinks were built.
func (s *Service) closeAll() {
	for _, c := range s.closers {
		_ = c(context.Background())
	}
	s.closeSinks()
}

func (s *Service) closeSinks() error {
	if s.ndjson != nil {
		return s.ndjson.Close()
	}
	return nil
}

// progressLoop logs a one-line summary every interval while entries flow,
// so an operator sees the receiver working without enabling debug logs.
func (s *Service) progressLoop(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var last float64
	for {
		select {
		case <-s.stopLog:
			return
		case <-t.C:
			total := counterSum(s.receiver.metrics.converted)
			if total == last {
				continue
			}
			s.log.Info("ALS progress", "streams_open", s.receiver.streams.Load(), "records_total", int64(total),
				"records_per_second", int64((total-last)/every.Seconds()))
			last = total
		}
	}
}

func counterSum(v *prometheus.CounterVec) float64 {
	ch := make(chan prometheus.Metric, 16)
	go func() { v.Collect(ch); close(ch) }()
	var sum float64
	for m := range ch {
		var pb dto.Metric
		if m.Write(&pb) == nil {
			sum += pb.GetCounter().GetValue()
		}
	}
	return sum
}

// Wait blocks until ctx is done, then shuts down within grace.
func (s *Service) Wait(ctx context.Context, grace time.Duration) error {
	<-ctx.Done()
	s.log.Info("shutting down: finishing open streams and flushing sinks", "grace", grace)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	return s.Shutdown(sctx)
}

// namedConsumer lets a record.Consumer (the router) sit among the sinks.
type namedConsumer struct {
	record.Consumer
	name string
}

func (n namedConsumer) Name() string { return n.name }
