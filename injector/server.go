package injector

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// shutdownGrace bounds how long in-flight reviews may finish on shutdown;
// the API server's own timeout for a call is at most 30s, ours default 5s.
const shutdownGrace = 10 * time.Second

// Run serves the injector until ctx ends, then shuts down gracefully:
// /readyz turns 503 first and reviews are still answered for
// cfg.ShutdownDelay, then in-flight reviews finish and listeners close.
// discover resolves mode auto (nil: regular unless cfg.KubernetesVersion).
func Run(ctx context.Context, cfg Config, reg *prometheus.Registry, discover func(context.Context) (string, error), log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	metrics := NewMetrics(reg)
	certs, err := newCertReloader(cfg.TLSCert, cfg.TLSKey, func(err error) {
		if err != nil {
			metrics.certLoad.WithLabelValues("error").Inc()
			log.Error("serving certificate not reloaded; keeping the last good one", "err", err)
			return
		}
		metrics.certLoad.WithLabelValues("ok").Inc()
		log.Info("serving certificate loaded", "cert", cfg.TLSCert)
	})
	if err != nil {
		return err
	}
	mode, why := ResolveMode(ctx, cfg, discover)
	log.Info("sidecar mode", "mode", mode, "why", why)
	inj, err := New(cfg, mode, metrics, log)
	if err != nil {
		return err
	}

	var stopping atomic.Bool
	mux := http.NewServeMux()
	mux.Handle("/inject", inj)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if stopping.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	servers := []*http.Server{{
		Handler:           mux,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate},
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
	addrs := []string{cfg.Listen}
	if cfg.MetricsListen != "" {
		mm := http.NewServeMux()
		mm.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		mm.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		servers = append(servers, &http.Server{Handler: mm, ReadHeaderTimeout: 5 * time.Second})
		addrs = append(addrs, cfg.MetricsListen)
	}
	// Listen on everything before serving anything: a bad address is a
	// start-up error, not a half-running server.
	var listeners []net.Listener
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return fmt.Errorf("listen %s: %w", a, err)
		}
		listeners = append(listeners, l)
	}
	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() {
			var err error
			if i == 0 {
				log.Info("serving AdmissionReviews", "addr", listeners[i].Addr().String(), "path", "/inject")
				err = s.ServeTLS(listeners[i], "", "")
			} else {
				log.Info("serving metrics", "addr", listeners[i].Addr().String(), "path", "/metrics")
				err = s.Serve(listeners[i])
			}
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			errc <- err
		}()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	stopping.Store(true)
	if d := cfg.ShutdownDelay.Duration; d > 0 && runErr == nil {
		log.Info("shutting down: /readyz failing, still serving", "for", d)
		time.Sleep(d)
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil && runErr == nil {
			runErr = err
		}
	}
	return runErr
}
