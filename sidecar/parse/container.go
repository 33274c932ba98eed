package parse

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/meshtrail/meshtrail/internal/record"
)

// CRI parses the kubelet's container log format (k8s.io/cri-api,
// "TIME STREAM TAG CONTENT", TIME RFC 3339 with nanoseconds, STREAM
// stdout or stderr, TAG P for a partial line or F for a full one). The
// tailer joins partial lines before they get here (tail.Config.CRI). The
// content is parsed as JSON when it is a JSON object, otherwise searched
// for a trace context like a raw line.
type CRI struct{ opts Options }

var errCRI = errors.New("not a CRI log line (want TIME STREAM TAG CONTENT)")

// Parse implements Parser.
func (p CRI) Parse(line []byte, r *record.Record) error {
	i := bytes.IndexByte(line, ' ')
	if i < 0 {
		return p.fallback(line, r, errCRI)
	}
	t, err := time.Parse(time.RFC3339Nano, string(line[:i]))
	if err != nil {
		return p.fallback(line, r, fmt.Errorf("CRI time %q: %w", clip(string(line[:i])), err))
	}
	rest := line[i+1:]
	j := bytes.IndexByte(rest, ' ')
	if j < 0 {
		return p.fallback(line, r, errCRI)
	}
	stream := string(rest[:j])
	if stream != "stdout" && stream != "stderr" {
		return p.fallback(line, r, fmt.Errorf("CRI stream %q: want stdout or stderr", clip(stream)))
	}
	rest = rest[j+1:]
	content := rest[len(rest):]
	if k := bytes.IndexByte(rest, ' '); k >= 0 {
		content = rest[k+1:]
	}
	r.StartTime, r.Stream = t, stream
	containerContent(content, r, p.opts)
	return nil
}

func (p CRI) fallback(line []byte, r *record.Record, err error) error {
	Raw(p).Parse(line, r)
	return err
}

// Docker parses Docker's json-file log driver lines:
// {"log":"...\n","stream":"stdout","time":"RFC 3339"}.
type Docker struct{ opts Options }

// Parse implements Parser.
func (p Docker) Parse(line []byte, r *record.Record) error {
	fields, err := scanObject(strings.TrimSpace(string(line)))
	if err != nil {
		Raw(p).Parse(line, r)
		return fmt.Errorf("docker json-file: %w", err)
	}
	msg, ok := fields["log"]
	if !ok {
		Raw(p).Parse(line, r)
		return errors.New(`docker json-file: no "log" member`)
	}
	if t, ok := ParseTime(fields["time"]); ok {
		r.StartTime = t
	}
	r.Stream = fields["stream"]
	containerContent([]byte(strings.TrimSuffix(msg, "\n")), r, p.opts)
	return nil
}

// containerContent parses what a container wrote: a JSON object becomes
// fields, anything else is the message (searched for a trace context).
func containerContent(content []byte, r *record.Record, o Options) {
	c := bytes.TrimSpace(content)
	if len(c) > 1 && c[0] == '{' && c[len(c)-1] == '}' {
		if fields, err := scanObject(string(c)); err == nil {
			t := r.StartTime
			applyFields(fields, r, o)
			if r.StartTime.IsZero() {
				r.StartTime = t
			}
			if r.Message == "" {
				r.Message = string(content)
			}
			return
		}
	}
	r.Message = string(content)
	FindTrace(r.Message, &r.Trace)
}
