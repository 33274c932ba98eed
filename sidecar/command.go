package sidecar

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshtrail/meshtrail/internal/config"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/sidecar/checkpoint"
	"github.com/meshtrail/meshtrail/sidecar/parse"
)

const usageText = `Usage: meshtrail tail --paths=GLOB[,GLOB...] --state-dir=DIR [flags]
       meshtrail tail --node [--pods-dir=/var/log/pods] --state-dir=DIR [flags]
       meshtrail tail drain --state-dir=DIR [--timeout=20s]

Tails application log files through rotation (rename, create,
copytruncate) and restarts, parses each line, joins it to its trace by
the trace id in it, and sends it on. A read position is checkpointed
(in --state-dir) only after the destination accepted the lines.

Destinations (exactly one):
  --out FILE|-        NDJSON; to a FILE exactly once across crashes
  --forward HOST:PORT OTLP logs over gRPC to a meshtrail receiver (meshtrail als --otlp-listen)
  --config FILE       with a sinks: section, straight to the backends

Examples:
  # what the injector runs in a pod (POD_NAME, POD_NAMESPACE, POD_UID, NODE_NAME from the downward API)
  meshtrail tail --paths=/var/log/app/*.log --parser=json --state-dir=/var/lib/meshtrail-tail \
    --forward=meshtrail-als.meshtrail:4317

  # Java stack traces joined to the line that starts with a date
  meshtrail tail --paths=/var/log/app/app.log* --multiline='^\d{4}-\d{2}-\d{2}' --state-dir=/tmp/st --out=-

  # the regular sidecar's preStop: returns once every file was read to its end
  meshtrail tail drain --state-dir=/var/lib/meshtrail-tail --timeout=20s

Flags:
`

// socketName is the control socket in the state directory: /healthz,
// /readyz, /metrics and /drain for "meshtrail tail drain".
const socketName = "tail.sock"

// Command runs "meshtrail tail".
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "drain" {
		return drainCommand(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
		}
	}
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	def := DefaultConfig()
	configPath := fs.String("config", "", "YAML file: every setting (snake_case names of the flags) and a sinks: section; flags override it")
	paths := fs.String("paths", "", "comma-separated absolute globs of the files to tail")
	parser := fs.String("parser", def.Parser, "line format: "+strings.Join(parse.Names(), ", "))
	stateDir := fs.String("state-dir", def.StateDir, "directory for the checkpoint and the control socket")
	regex := fs.String("regex", "", "pattern of --parser=regex: named groups (?P<name>...) become fields; msg, level, time, trace_id, span_id fill the record's own")
	multiline := fs.String("multiline", "", "regular expression matching the first line of a record; other lines join the record before them")
	sinks := fs.String("sinks", "", "comma-separated sink names of the sinks: section to send to (default: all)")
	out := fs.String("out", "", `NDJSON output: a file (exactly once across restarts) or "-" for stdout`)
	forward := fs.String("forward", "", "HOST:PORT of a meshtrail receiver's OTLP gRPC listener")
	node := fs.Bool("node", false, "DaemonSet mode: tail every pod's container logs under --pods-dir (CRI format)")
	podsDir := fs.String("pods-dir", def.PodsDir, "the kubelet's pod log directory (node mode)")
	listen := fs.String("listen", "", "HOST:PORT for /healthz, /readyz and /metrics (the control socket in --state-dir serves them always)")
	maxLine := fs.Int("max-line-bytes", def.MaxLineBytes, "longer lines are cut there and flagged truncated")
	rateLimit := fs.Float64("read-bytes-per-second", 0, "read at most this many bytes per second over all files (0: no limit)")
	grace := fs.Duration("shutdown-grace", def.ShutdownGrace.D(), "on SIGTERM: time to read every file to its end, deliver and checkpoint")
	logLevel := fs.String("log-level", def.LogLevel, "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "meshtrail tail: unexpected argument %q (flags start with --)\n", fs.Arg(0))
		return 2
	}
	cfg := def
	if *configPath != "" {
		if err := config.Load(*configPath, &cfg); err != nil {
			fmt.Fprintf(stderr, "meshtrail tail: %v\n", err)
			return 2
		}
	}
	// Flags given on the command line override the file, also on reload.
	setFlag := func(cfg *Config, name string) {
		switch name {
		case "paths":
			cfg.Paths = splitList(*paths)
		case "parser":
			cfg.Parser = *parser
		case "state-dir":
			cfg.StateDir = *stateDir
		case "multiline":
			cfg.Multiline = *multiline
		case "regex":
			cfg.Regex = *regex
		case "sinks":
			cfg.SinkNames = splitList(*sinks)
		case "out":
			cfg.Out = *out
		case "forward":
			cfg.Forward = *forward
		case "node":
			cfg.Node = *node
		case "pods-dir":
			cfg.PodsDir = *podsDir
		case "listen":
			cfg.Listen = *listen
		case "max-line-bytes":
			cfg.MaxLineBytes = *maxLine
		case "read-bytes-per-second":
			cfg.ReadBytesPerSecond = *rateLimit
		case "shutdown-grace":
			cfg.ShutdownGrace = config.Duration(*grace)
		case "log-level":
			cfg.LogLevel = *logLevel
		}
	}
	applyFlags := func(cfg *Config) { fs.Visit(func(f *flag.Flag) { setFlag(cfg, f.Name) }) }
	applyFlags(&cfg)
	cfg.Pod = PodFromEnv(os.Getenv)
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "meshtrail tail: %v\n", err)
		return 2
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	var reload func() (Config, bool, error)
	if *configPath != "" {
		reload = fileReloader(*configPath, def, cfg.Pod, applyFlags)
	}
	if err := Run(ctx, cfg, stdout, logger, reload); err != nil {
		logger.Error("tail stopped", "error", err)
		return 1
	}
	return 0
}

// fileReloader returns the configuration at path, with the command line's
// flags applied over it, whenever the file's modification time or size
// changed since the last look.
func fileReloader(path string, def Config, pod PodMeta, applyFlags func(*Config)) func() (Config, bool, error) {
	var last os.FileInfo
	if fi, err := os.Stat(path); err == nil {
		last = fi
	}
	return func() (Config, bool, error) {
		fi, err := os.Stat(path)
		if err != nil {
			return Config{}, false, err
		}
		if last != nil && fi.ModTime().Equal(last.ModTime()) && fi.Size() == last.Size() {
			return Config{}, false, nil
		}
		last = fi
		cfg := def
		if err := config.Load(path, &cfg); err != nil {
			return Config{}, false, err
		}
		applyFlags(&cfg)
		cfg.Pod = pod
		if err := cfg.Validate(); err != nil {
			return Config{}, false, err
		}
		return cfg, true, nil
	}
}

// Run runs the agent until ctx ends and it has drained. reload, when not
// nil, reports a changed configuration (see Agent.reloadIfChanged).
func Run(ctx context.Context, cfg Config, stdout io.Writer, logger *slog.Logger, reload func() (Config, bool, error)) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := prepareStateDir(cfg.StateDir); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	resume, err := checkpoint.Load(cfg.StateDir)
	if err != nil {
		return err
	}
	var (
		dest     record.Consumer
		out      *ndjsonOut
		shutdown = func(context.Context) error { return nil }
	)
	switch {
	case cfg.Out != "":
		var cut int64
		if out, cut, err = openOut(cfg.Out, resume.Output, stdout); err != nil {
			return err
		}
		defer out.Close()
		if cut > 0 {
			logger.Info("output cut back to the checkpoint: those lines are read again", "out", cfg.Out, "bytes", cut)
		} else if cut < 0 {
			logger.Warn("output is shorter than the checkpoint says (truncated or replaced by someone else)", "out", cfg.Out, "missing_bytes", -cut)
		}
		if out.f == nil {
			out = nil // stdout: at least once, no length to checkpoint
			dest = &ndjsonOut{w: stdout, path: "-"}
		} else {
			dest = out
		}
	case cfg.Forward != "":
		f, err := newForwarder(cfg.Forward, cfg.Pod, cfg.SinkNames, logger)
		if err != nil {
			return err
		}
		dest, shutdown = f, func(context.Context) error { return f.Close() }
	default:
		if dest, shutdown, err = buildPipeline(cfg, reg, logger); err != nil {
			return err
		}
	}
	meta := func(string) PodMeta { return cfg.Pod }
	if cfg.Node {
		meta = func(p string) PodMeta {
			m, ok := podFromPath(cfg.PodsDir, p)
			if !ok {
				return cfg.Pod
			}
			m.Node = cfg.Pod.Node
			return m
		}
	}
	a, err := newAgent(cfg, resume, dest, out, meta, reg, logger)
	if err != nil {
		return err
	}
	a.reload = reload
	stopServe, err := serveControl(cfg, a, reg, logger)
	if err != nil {
		return err
	}
	defer stopServe()
	logger.Info("tailing", "paths", cfg.Paths, "node", cfg.Node, "parser", cfg.Parser, "state_dir", cfg.StateDir,
		"out", cfg.Out, "forward", cfg.Forward, "pod", cfg.Pod.String(), "resumed_files", len(resume.Files))
	runErr := a.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace.D())
	defer cancel()
	return errors.Join(runErr, shutdown(sctx))
}

// serveControl serves /healthz, /readyz, /metrics and /drain on the state
// directory's socket, and on --listen when given.
func serveControl(cfg Config, a *Agent, reg *prometheus.Registry, logger *slog.Logger) (func(), error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ready") })
	mux.HandleFunc("/drain", func(w http.ResponseWriter, r *http.Request) {
		timeout, err := time.ParseDuration(r.URL.Query().Get("timeout"))
		if err != nil || timeout <= 0 {
			timeout = 20 * time.Second
		}
		deadline := time.Now().Add(timeout)
		for !a.Drained(time.Second) {
			if time.Now().After(deadline) {
				http.Error(w, "timeout: files still growing or not yet read to their end", http.StatusGatewayTimeout)
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		fmt.Fprintln(w, "drained")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	sock := filepath.Join(cfg.StateDir, socketName)
	os.Remove(sock) // a previous run's, killed before it could remove it
	var lis []net.Listener
	l, err := net.Listen("unix", sock)
	if err != nil {
		return nil, config.Errorf("state_dir", "control socket: %v", err)
	}
	lis = append(lis, l)
	if cfg.Listen != "" {
		l, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			lis[0].Close()
			return nil, config.Errorf("listen", "%v", err)
		}
		lis = append(lis, l)
		logger.Info("serving health and metrics", "listen", l.Addr().String())
	}
	for _, l := range lis {
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("control server stopped", "error", err)
			}
		}()
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		os.Remove(sock)
	}, nil
}

// drainCommand is the regular sidecar's preStop: it asks the running
// agent, over the state directory's socket, to answer once every file was
// read to its end and stopped growing.
func drainCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tail drain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", DefaultConfig().StateDir, "the running agent's --state-dir")
	timeout := fs.Duration("timeout", 20*time.Second, "return after this long even if not drained")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	sock := filepath.Join(*stateDir, socketName)
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}, Timeout: *timeout + 5*time.Second}
	ctx, cancel := context.WithTimeout(ctx, *timeout+5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://tail/drain?timeout="+timeout.String(), nil)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "meshtrail tail drain: no running agent at %s: %v\n", sock, err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "meshtrail tail drain: %s", body)
		return 1
	}
	fmt.Fprintf(stdout, "%s", body)
	return 0
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
