// Package parse turns one log line (or multiline record) into the fields
// of a record.Record of kind log: message, level, time, structured fields,
// and the trace context found in it. Parsers are chosen by name (--parser).
package parse

import (
	"fmt"
	"sort"
	"strings"

	"github.com/meshtrail/meshtrail/internal/record"
)

// Parser fills r from line. line is only valid during the call. An error
// means the line did not have the parser's format; r then still holds the
// line as its message, so nothing is lost.
type Parser interface {
	Parse(line []byte, r *record.Record) error
}

// Options configure the parsers.
type Options struct {
	// TraceField and SpanField name the structured field holding the ids;
	// empty: the usual names (trace_id, traceId, traceid, ...) and, in
	// any line, traceparent / b3 / X-B3-TraceId values.
	TraceField, SpanField string
	// Regex is the pattern of the regex parser (named groups).
	Regex string
}

// constructors by name: what --parser accepts.
var constructors = map[string]func(Options) Parser{
	"raw":    func(o Options) Parser { return Raw{opts: o} },
	"json":   func(o Options) Parser { return JSON{opts: o} },
	"logfmt": func(o Options) Parser { return Logfmt{opts: o} },
	"cri":    func(o Options) Parser { return CRI{opts: o} },
	"docker": func(o Options) Parser { return Docker{opts: o} },
}

// Names lists the parser names.
func Names() []string {
	out := []string{"regex"}
	for n := range constructors {
		out = append(out, n)
	}
	for n := range presets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// New returns the parser called name.
func New(name string, o Options) (Parser, error) {
	if name == "regex" {
		if o.Regex == "" {
			return nil, fmt.Errorf("parser regex needs a pattern (regex: with named groups)")
		}
		return NewRegex(o.Regex, "", o)
	}
	if p, ok := presets[name]; ok {
		return NewRegex(p.re, p.timeLayout, o)
	}
	c, ok := constructors[name]
	if !ok {
		return nil, fmt.Errorf("unknown parser %q (one of %s)", name, strings.Join(Names(), ", "))
	}
	return c(o), nil
}

// Raw keeps the line as the message and looks for a trace context in it.
type Raw struct{ opts Options }

// Parse implements Parser.
func (p Raw) Parse(line []byte, r *record.Record) error {
	r.Message = string(line)
	FindTrace(r.Message, &r.Trace)
	return nil
}
