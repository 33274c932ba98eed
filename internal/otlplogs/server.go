package otlplogs

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrail/meshtrail/internal/loglimit"
	"github.com/meshtrail/meshtrail/internal/record"
)

// MaxRequestBytes bounds one request (gRPC message or HTTP body, after
// decompression).
const MaxRequestBytes = 16 << 20

// Server is the listener. Both protocols share one port: gRPC (HTTP/2
// with content-type application/grpc) and OTLP/HTTP (POST /v1/logs).
type Server struct {
	collogspb.UnimplementedLogsServiceServer
	consumer record.Consumer
	log      *slog.Logger
	warn     *loglimit.Limiter
	grpc     *grpc.Server
	http     *http.Server
	lis      net.Listener
	done     chan struct{}

	received *prometheus.CounterVec
	refused  *prometheus.CounterVec
}

// Listen opens addr and serves OTLP logs to consumer until Shutdown.
func Listen(addr string, consumer record.Consumer, reg prometheus.Registerer, logger *slog.Logger) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("otlp_listen %s: %w", addr, err)
	}
	s := &Server{consumer: consumer, log: logger, warn: loglimit.New(30 * time.Second), lis: lis, done: make(chan struct{}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshtrail_otlp_log_records_received_total",
			Help: "OTLP log records accepted (handed to the sinks), by protocol."}, []string{"protocol"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshtrail_otlp_log_requests_refused_total",
			Help: "OTLP log requests answered with an error, by reason."}, []string{"reason"}),
	}
	if err := reg.Register(s.received); err != nil {
		lis.Close()
		return nil, err
	}
	if err := reg.Register(s.refused); err != nil {
		lis.Close()
		return nil, err
	}
	s.grpc = grpc.NewServer(grpc.MaxRecvMsgSize(MaxRequestBytes))
	collogspb.RegisterLogsServiceServer(s.grpc, s)
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/logs", s.serveHTTP)
	// One port for both: net/http speaks HTTP/1.1 and cleartext HTTP/2
	// (prior knowledge, as gRPC clients without TLS do), and hands gRPC
	// requests to the gRPC server's ServeHTTP.
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	s.http = &http.Server{Handler: h2cHandler(s.grpc, mux), ReadHeaderTimeout: 10 * time.Second, Protocols: protos}
	go func() {
		defer close(s.done)
		if err := s.http.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("OTLP logs listener stopped", "error", err)
		}
	}()
	logger.Info("OTLP logs listening", "addr", lis.Addr().String(), "grpc", true, "http", "/v1/logs")
	return s, nil
}

// Addr is the listening address.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Shutdown stops accepting requests and waits for those in flight (their
// answers depend on the consumer) until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	s.grpc.GracefulStop()
	<-s.done
	return err
}

// Export is the gRPC LogsService method.
func (s *Server) Export(ctx context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	recs := Records(req, time.Now())
	if len(recs) == 0 {
		return &collogspb.ExportLogsServiceResponse{}, nil
	}
	if err := s.consumer.ConsumeRecords(ctx, recs); err != nil {
		s.refused.WithLabelValues("sinks_refused").Inc()
		s.warn.Log(s.log, slog.LevelWarn, "otlp-refused", "OTLP logs not accepted by the sinks; the sender retries", "records", len(recs), "error", err)
		return nil, status.Error(codes.Unavailable, "sinks did not accept the batch: "+err.Error())
	}
	s.received.WithLabelValues("grpc").Add(float64(len(recs)))
	return &collogspb.ExportLogsServiceResponse{}, nil
}

// serveHTTP is OTLP/HTTP with binary protobuf (gzip allowed).
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.refused.WithLabelValues("bad_request").Inc()
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		s.refused.WithLabelValues("bad_request").Inc()
		http.Error(w, fmt.Sprintf("Content-Type %q: only application/x-protobuf is served", ct), http.StatusUnsupportedMediaType)
		return
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, MaxRequestBytes)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			s.refused.WithLabelValues("bad_request").Inc()
			http.Error(w, "gzip: "+err.Error(), http.StatusBadRequest)
			return
		}
		body = io.LimitReader(zr, MaxRequestBytes+1)
	}
	b, err := io.ReadAll(body)
	if err != nil || len(b) > MaxRequestBytes {
		s.refused.WithLabelValues("bad_request").Inc()
		http.Error(w, fmt.Sprintf("body unreadable or over %d bytes", MaxRequestBytes), http.StatusRequestEntityTooLarge)
		return
	}
	var req collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		s.refused.WithLabelValues("bad_request").Inc()
		http.Error(w, "ExportLogsServiceRequest: "+err.Error(), http.StatusBadRequest)
		return
	}
	recs := Records(&req, time.Now())
	if len(recs) > 0 {
		if err := s.consumer.ConsumeRecords(r.Context(), recs); err != nil {
			s.refused.WithLabelValues("sinks_refused").Inc()
			s.warn.Log(s.log, slog.LevelWarn, "otlp-refused", "OTLP logs not accepted by the sinks; the sender retries", "records", len(recs), "error", err)
			w.Header().Set("Retry-After", "1")
			http.Error(w, "sinks did not accept the batch", http.StatusServiceUnavailable)
			return
		}
		s.received.WithLabelValues("http").Add(float64(len(recs)))
	}
	out, _ := proto.Marshal(&collogspb.ExportLogsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// h2cHandler sends gRPC (HTTP/2 cleartext, prior knowledge) to g and the
// rest to h.
func h2cHandler(g *grpc.Server, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && bytes.HasPrefix([]byte(r.Header.Get("Content-Type")), []byte("application/grpc")) {
			g.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}
