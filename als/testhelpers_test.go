package als

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogsvc "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrail/meshtrail/internal/pipeline"
	"github.com/meshtrail/meshtrail/internal/record"
)

// testService runs a real receiver on 127.0.0.1 writing NDJSON to a temp
// file. records() shuts it down (flushing) and reads what it wrote.
type testService struct {
	t   *testing.T
	svc *Service
	out string
	log *lockedWriter
}

// logText is what the service logged so far.
func (ts *testService) logText() string {
	ts.log.mu.Lock()
	defer ts.log.mu.Unlock()
	return ts.log.w.(*strings.Builder).String()
}

func startService(t *testing.T, mutate func(*Config)) *testService {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.MetricsListen = "127.0.0.1:0"
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &lockedWriter{w: &strings.Builder{}}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// The receiver as meshtrail als runs it: over a pipeline writing
	// NDJSON and RED metrics.
	pcfg := pipeline.DefaultConfig()
	pcfg.Out = filepath.Join(t.TempDir(), "records.ndjson")
	reg := prometheus.NewRegistry()
	p, err := pipeline.New(pcfg, reg, logger)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := Start(cfg, p.Consumer(pipeline.Queued), reg, logger, p.Gatherer())
	if err != nil {
		_ = p.Shutdown(context.Background())
		t.Fatal(err)
	}
	svc.AddCloser(p.Shutdown)
	ts := &testService{t: t, svc: svc, out: pcfg.Out, log: logs}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = svc.Shutdown(ctx)
	})
	return ts
}

func (ts *testService) dial(opts ...grpc.DialOption) *grpc.ClientConn {
	ts.t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(ts.svc.Addr(), opts...)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { conn.Close() })
	return conn
}

// send opens one stream, sends msgs and closes it the way Envoy's client
// would (Envoy never waits for a response; CloseAndRecv reports the
// server's status, which is what the test wants to see).
func (ts *testService) send(conn *grpc.ClientConn, msgs ...*accesslogsvc.StreamAccessLogsMessage) error {
	ts.t.Helper()
	stream, err := accesslogsvc.NewAccessLogServiceClient(conn).StreamAccessLogs(context.Background())
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			break // the server ended the stream; CloseAndRecv says why
		}
	}
	_, err = stream.CloseAndRecv() // the receiver answers a closed stream as the RPC is defined
	return err
}

// records stops the service and returns every record it wrote.
func (ts *testService) records() []*record.Record {
	ts.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.svc.Shutdown(ctx); err != nil {
		ts.t.Fatal(err)
	}
	f, err := os.Open(ts.out)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer f.Close()
	recs, err := record.ReadNDJSON(f)
	if err != nil {
		ts.t.Fatal(err)
	}
	return recs
}

// metrics scrapes /metrics (OpenMetrics when openMetrics is set).
func (ts *testService) metrics(openMetrics bool) string {
	ts.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+ts.svc.MetricsAddr()+"/metrics", nil)
	if openMetrics {
		req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricValue finds the value of the first series whose line starts with
// name and contains every label fragment.
func metricValue(t *testing.T, text, name string, fragments ...string) string {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, f := range fragments {
			if !strings.Contains(line, f) {
				ok = false
				break
			}
		}
		if ok {
			fields := strings.Fields(line)
			// "name{...} value [# exemplar]" -> value
			for i, f := range fields {
				if strings.HasSuffix(f, "}") || f == name {
					if i+1 < len(fields) {
						// OpenMetrics writes 3.0 where the text format writes 3.
						if v, err := strconv.ParseFloat(fields[i+1], 64); err == nil {
							return strconv.FormatFloat(v, 'f', -1, 64)
						}
						return fields[i+1]
					}
				}
			}
		}
	}
	return ""
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// parseNode is what the receiver knows of a stream whose identifier is
// node and logName, decoded the way the receiver decodes it.
func parseNode(node *corev3.Node, logName string) proxy {
	b, err := proto.Marshal(&accesslogsvc.StreamAccessLogsMessage_Identifier{Node: node, LogName: logName})
	if err != nil {
		panic(err)
	}
	f, _, err := decodeIdentifier(b)
	if err != nil {
		panic(err)
	}
	return proxyFrom(f)
}
