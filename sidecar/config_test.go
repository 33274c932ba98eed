package sidecar

import (
	"strings"
	"testing"

	"github.com/meshtrail/meshtrail/internal/config"
)

func TestValidateNamesTheField(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		c.Paths, c.StateDir, c.Out = []string{"/var/log/app/*.log"}, "/tmp/st", "-"
		return c
	}
	ok := base()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		edit  func(*Config)
		field string
	}{
		{func(c *Config) { c.Paths = nil }, "paths"},
		{func(c *Config) { c.Paths = []string{"rel/*.log"} }, "paths"},
		{func(c *Config) { c.Paths = []string{"/a/[x.log"} }, "paths"},
		{func(c *Config) { c.Parser = "yaml" }, "parser"},
		{func(c *Config) { c.Parser = "regex" }, "parser"},
		{func(c *Config) { c.Multiline = "(" }, "multiline"},
		{func(c *Config) { c.Out = "" }, "out"},
		{func(c *Config) { c.Forward = "host:4317" }, "out"},
		{func(c *Config) { c.Out, c.Forward = "", "nohostport" }, "forward"},
		{func(c *Config) { c.Out, c.Forward, c.MaxLineBytes = "", "h:1", 16<<20 }, "max_line_bytes"},
		{func(c *Config) { c.MaxLineBytes = 10 }, "max_line_bytes"},
		{func(c *Config) { c.ReadBytesPerSecond = 10 }, "read_bytes_per_second"},
		{func(c *Config) { c.BatchBytes = 64 << 20 }, "batch_bytes"},
		{func(c *Config) { c.PollInterval = 0 }, "poll_interval"},
		{func(c *Config) { c.LogLevel = "loud" }, "log_level"},
		{func(c *Config) { c.Listen = "x" }, "listen"},
	} {
		c := base()
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("want an error naming %s, got %v", tc.field, err)
		}
	}
}

// The example configuration loads strictly and is valid.
func TestExampleConfig(t *testing.T) {
	c := DefaultConfig()
	if err := config.Load("examples/tail.yaml", &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Parser != "json" || len(c.Transforms) != 5 || c.Forward == "" {
		t.Fatalf("%+v", c)
	}
}
