package sidecar

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/meshtrail/meshtrail/internal/config"
	"github.com/meshtrail/meshtrail/internal/pipeline"
	"github.com/meshtrail/meshtrail/sidecar/parse"
)

// Config is the agent's whole configuration: flags (the injector's
// contract) override the YAML file's fields of the same name.
type Config struct {
	// Paths are the globs of the files to tail (--paths).
	Paths []string `json:"paths"`
	// Parser is the line format: one of parse.Names() (--parser).
	Parser string `json:"parser"`
	// StateDir holds the checkpoint and the control socket (--state-dir).
	StateDir string `json:"state_dir"`
	// Multiline matches the first line of a record (--multiline).
	Multiline string `json:"multiline,omitempty"`
	// SinkNames restricts the sinks: section to these (--sinks).
	SinkNames []string `json:"sink_names,omitempty"`
	// Out writes NDJSON to a file (exactly once) or "-" (--out).
	Out string `json:"out,omitempty"`
	// Forward sends OTLP logs over gRPC to a meshtrail receiver (--forward).
	Forward string `json:"forward,omitempty"`
	// Node reads every pod's logs under PodsDir (--node).
	Node    bool   `json:"node,omitempty"`
	PodsDir string `json:"pods_dir,omitempty"`
	// Listen serves /healthz, /readyz and /metrics over TCP (--listen);
	// the state directory's control socket serves them always.
	Listen string `json:"listen,omitempty"`

	MaxLineBytes       int             `json:"max_line_bytes"`
	ReadBytesPerSecond float64         `json:"read_bytes_per_second"`
	PollInterval       config.Duration `json:"poll_interval"`
	FlushAfter         config.Duration `json:"flush_after"`
	Linger             config.Duration `json:"linger"`
	CheckpointInterval config.Duration `json:"checkpoint_interval"`
	BatchBytes         int             `json:"batch_bytes"`
	ShutdownGrace      config.Duration `json:"shutdown_grace"`
	// Transforms run on every parsed record, in order.
	Transforms []parse.Transform `json:"transforms,omitempty"`
	// Regex is the pattern of parser regex: named groups become fields.
	Regex string `json:"regex,omitempty"`
	// TraceField and SpanField name the structured field with the ids.
	TraceField string `json:"trace_field,omitempty"`
	SpanField  string `json:"span_field,omitempty"`
	LogLevel   string `json:"log_level"`

	// Sinks is the receiver's sinks: section (internal/pipeline).
	Sinks pipeline.Sinks `json:"sinks,omitempty"`

	// Pod is who the lines belong to: from the environment (the
	// injector's downward API), or from the path in node mode.
	Pod PodMeta `json:"-"`
}

// PodMeta is attached to every record.
type PodMeta struct {
	Name, Namespace, UID, Container, Node string
}

// PodFromEnv reads the variables the injector sets.
func PodFromEnv(getenv func(string) string) PodMeta {
	return PodMeta{Name: getenv("POD_NAME"), Namespace: getenv("POD_NAMESPACE"), UID: getenv("POD_UID"), Node: getenv("NODE_NAME")}
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Parser:             "raw",
		StateDir:           "/var/lib/meshtrail-tail",
		PodsDir:            "/var/log/pods",
		MaxLineBytes:       1 << 20,
		PollInterval:       config.Duration(250 * time.Millisecond),
		FlushAfter:         config.Duration(time.Second),
		Linger:             config.Duration(5 * time.Second),
		CheckpointInterval: config.Duration(time.Second),
		BatchBytes:         256 << 10,
		ShutdownGrace:      config.Duration(15 * time.Second),
		LogLevel:           "info",
	}
}

// Validate checks every field, naming the first that is wrong.
func (c *Config) Validate() error {
	if len(c.Paths) == 0 && !c.Node {
		return config.Errorf("paths", "required: at least one glob of files to tail (or node mode)")
	}
	for _, p := range c.Paths {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return config.Errorf("paths", "%q must be an absolute, clean path", p)
		}
		if _, err := filepath.Match(p, p); err != nil {
			return config.Errorf("paths", "%q: %v", p, err)
		}
	}
	if _, err := parse.New(c.Parser, parse.Options{Regex: c.Regex}); err != nil {
		return config.Errorf("parser", "%v", err)
	}
	for i := range c.Transforms {
		if err := c.Transforms[i].Validate(fmt.Sprintf("transforms[%d]", i)); err != nil {
			return err
		}
	}
	if c.StateDir == "" {
		return config.Errorf("state_dir", "required: where the checkpoint is kept")
	}
	if c.Multiline != "" {
		if _, err := regexp.Compile(c.Multiline); err != nil {
			return config.Errorf("multiline", "%v", err)
		}
	}
	outs := 0
	for _, set := range []bool{c.Out != "", c.Forward != "", len(c.Sinks.Enabled()) > 0} {
		if set {
			outs++
		}
	}
	if outs == 0 {
		return config.Errorf("out", "no destination: give --out FILE|-, --forward HOST:PORT or a sinks: section")
	}
	if outs > 1 {
		return config.Errorf("out", "one destination only: --out, --forward and sinks: exclude each other")
	}
	if c.Forward != "" {
		if _, _, err := net.SplitHostPort(c.Forward); err != nil {
			return config.Errorf("forward", "%q: %v", c.Forward, err)
		}
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return config.Errorf("listen", "%q: %v", c.Listen, err)
		}
	}
	if c.Node && c.PodsDir == "" {
		return config.Errorf("pods_dir", "required in node mode")
	}
	if c.MaxLineBytes < 256 || c.MaxLineBytes > 64<<20 {
		return config.Errorf("max_line_bytes", "%d: must be 256 to 64 MiB", c.MaxLineBytes)
	}
	if c.ReadBytesPerSecond < 0 {
		return config.Errorf("read_bytes_per_second", "must not be negative")
	}
	if c.ReadBytesPerSecond > 0 && c.ReadBytesPerSecond < 4096 {
		return config.Errorf("read_bytes_per_second", "%g: at least 4096 (or 0: no limit)", c.ReadBytesPerSecond)
	}
	for name, d := range map[string]config.Duration{"poll_interval": c.PollInterval, "flush_after": c.FlushAfter,
		"linger": c.Linger, "checkpoint_interval": c.CheckpointInterval, "shutdown_grace": c.ShutdownGrace} {
		if d.D() <= 0 {
			return config.Errorf(name, "must be positive")
		}
	}
	if c.BatchBytes < 4096 || c.BatchBytes > 4<<20 {
		return config.Errorf("batch_bytes", "%d: 4096 to 4 MiB", c.BatchBytes)
	}
	if c.Forward != "" && c.MaxLineBytes > 4<<20 {
		// One OTLP request must stay under the receiver's 16 MiB limit, or
		// it is refused every time and the position never advances.
		return config.Errorf("max_line_bytes", "%d: at most 4 MiB with forward (a request must stay under the receiver's 16 MiB)", c.MaxLineBytes)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return config.Errorf("log_level", "%q: one of debug, info, warn, error", c.LogLevel)
	}
	return nil
}

// prepareStateDir creates the state directory and checks it is one.
func prepareStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return config.Errorf("state_dir", "%v", err)
	}
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		return config.Errorf("state_dir", "%s is not a directory", dir)
	}
	return nil
}

func (p PodMeta) String() string {
	return fmt.Sprintf("%s/%s", p.Namespace, p.Name)
}
