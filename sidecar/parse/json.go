package parse

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/meshtrail/meshtrail/internal/record"
)

// JSON parses a line holding one JSON object. Its top-level members become
// the record's fields (strings as they are, other values as their JSON
// text); the usual names give the message (msg, message, log), the level
// (level, severity, lvl), the time (time, ts, timestamp, @timestamp:
// RFC 3339 or Unix seconds/milliseconds) and the trace context (trace_id,
// traceId, span_id, spanId, traceparent). The object is scanned by hand,
// members only, without building a generic tree: several times faster
// than encoding/json into a map.
type JSON struct{ opts Options }

// Parse implements Parser.
func (p JSON) Parse(line []byte, r *record.Record) error {
	s := strings.TrimSpace(string(line))
	fields, err := scanObject(s)
	if err != nil {
		r.Message = string(line)
		FindTrace(r.Message, &r.Trace)
		return err
	}
	applyFields(fields, r, p.opts)
	if r.Message == "" && len(r.Fields) == 0 {
		r.Message = s
	}
	return nil
}

// member names the parsers read the record's own fields from, in order.
var (
	messageKeys = []string{"msg", "message", "log", "MESSAGE"}
	levelKeys   = []string{"level", "severity", "lvl", "loglevel", "log.level", "severity_text"}
	timeKeys    = []string{"time", "ts", "timestamp", "@timestamp", "t"}
	traceKeys   = []string{"trace_id", "traceId", "traceid", "trace.id", "traceID", "dd.trace_id"}
	spanKeys    = []string{"span_id", "spanId", "spanid", "span.id", "spanID"}
)

// applyFields moves the well-known members into r and keeps the rest as
// fields.
func applyFields(fields map[string]string, r *record.Record, o Options) {
	take := func(keys []string) string {
		for _, k := range keys {
			if v, ok := fields[k]; ok {
				delete(fields, k)
				return v
			}
		}
		return ""
	}
	r.Message = take(messageKeys)
	r.Level = strings.ToLower(take(levelKeys))
	if ts := take(timeKeys); ts != "" {
		if t, ok := ParseTime(ts); ok {
			r.StartTime = t
		} else {
			fields["time"] = ts // kept: an unknown layout is still information
		}
	}
	tk, sk := traceKeys, spanKeys
	if o.TraceField != "" {
		tk = []string{o.TraceField}
	}
	if o.SpanField != "" {
		sk = []string{o.SpanField}
	}
	found := false
	for _, k := range tk {
		if tid, ok := TraceID(fields[k]); ok {
			r.Trace.TraceID, r.Trace.Source, found = tid, "field", true
			delete(fields, k)
			break
		}
	}
	if found {
		for _, k := range sk {
			if sid, ok := SpanID(fields[k]); ok {
				r.Trace.SpanID = sid
				delete(fields, k)
				break
			}
		}
	} else if tp, ok := fields["traceparent"]; ok {
		FindTrace("traceparent="+tp, &r.Trace)
	} else if o.TraceField == "" && r.Message != "" {
		FindTrace(r.Message, &r.Trace)
	}
	if len(fields) > 0 {
		r.Fields = fields
	}
}

// ParseTime reads a timestamp: RFC 3339 (with or without fraction), or a
// Unix time in seconds, milliseconds, microseconds or nanoseconds (told
// apart by magnitude, as Vector and Fluent Bit do).
func ParseTime(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f > 0 {
		switch {
		case f < 1e11: // seconds (until year 5138)
			sec := int64(f)
			return time.Unix(sec, int64((f-float64(sec))*1e9)).UTC(), true
		case f < 1e14:
			return time.UnixMicro(int64(f * 1e3)).UTC(), true
		case f < 1e17:
			return time.UnixMicro(int64(f)).UTC(), true
		default:
			return time.Unix(0, int64(f)).UTC(), true
		}
	}
	for _, layout := range []string{"2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

var errNotObject = errors.New("not a JSON object")

// scanObject reads a JSON object's top-level members. String values are
// unescaped; numbers, booleans, null, arrays and objects are kept as
// their JSON text. Any syntax error is reported with its byte offset.
func scanObject(s string) (map[string]string, error) {
	sc := scanner{s: s}
	sc.space()
	if !sc.eat('{') {
		return nil, errNotObject
	}
	fields := make(map[string]string, 8)
	sc.space()
	if sc.eat('}') {
		return fields, sc.end()
	}
	for {
		sc.space()
		k, err := sc.str()
		if err != nil {
			return nil, err
		}
		sc.space()
		if !sc.eat(':') {
			return nil, sc.errorf("expected ':' after member %q", k)
		}
		sc.space()
		var v string
		if sc.peek() == '"' {
			v, err = sc.str()
		} else {
			v, err = sc.value()
		}
		if err != nil {
			return nil, err
		}
		fields[k] = v
		sc.space()
		if sc.eat(',') {
			continue
		}
		if sc.eat('}') {
			return fields, sc.end()
		}
		return nil, sc.errorf("expected ',' or '}'")
	}
}

type scanner struct {
	s string
	i int
}

func (sc *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("json at byte %d: %s", sc.i, fmt.Sprintf(format, args...))
}

func (sc *scanner) space() {
	for sc.i < len(sc.s) {
		switch sc.s[sc.i] {
		case ' ', '\t', '\n', '\r':
			sc.i++
		default:
			return
		}
	}
}

func (sc *scanner) peek() byte {
	if sc.i < len(sc.s) {
		return sc.s[sc.i]
	}
	return 0
}

func (sc *scanner) eat(c byte) bool {
	if sc.peek() == c {
		sc.i++
		return true
	}
	return false
}

func (sc *scanner) end() error {
	sc.space()
	if sc.i != len(sc.s) {
		return sc.errorf("text after the object")
	}
	return nil
}

// str reads a string, unescaping it only when it holds an escape.
func (sc *scanner) str() (string, error) {
	if !sc.eat('"') {
		return "", sc.errorf("expected a string")
	}
	start := sc.i
	escaped := false
	for sc.i < len(sc.s) {
		c := sc.s[sc.i]
		switch {
		case c == '"':
			raw := sc.s[start:sc.i]
			sc.i++
			if !escaped {
				return raw, nil
			}
			var out string
			if err := json.Unmarshal([]byte(sc.s[start-1:sc.i]), &out); err != nil {
				return "", sc.errorf("bad string: %v", err)
			}
			return out, nil
		case c == '\\':
			escaped = true
			sc.i += 2
		case c < 0x20:
			return "", sc.errorf("control character in a string")
		default:
			sc.i++
		}
	}
	return "", sc.errorf("unterminated string")
}

// value skips a non-string value and returns its text.
func (sc *scanner) value() (string, error) {
	start := sc.i
	depth := 0
	for sc.i < len(sc.s) {
		c := sc.s[sc.i]
		switch c {
		case '{', '[':
			depth++
			sc.i++
		case '}', ']':
			if depth == 0 {
				return sc.scalar(start)
			}
			depth--
			sc.i++
			if depth == 0 {
				return sc.s[start:sc.i], nil
			}
		case '"':
			if depth == 0 {
				return "", sc.errorf("unexpected string")
			}
			if _, err := sc.str(); err != nil {
				return "", err
			}
		case ',':
			if depth == 0 {
				return sc.scalar(start)
			}
			sc.i++
		default:
			sc.i++
		}
	}
	if depth > 0 {
		return "", sc.errorf("unterminated array or object")
	}
	return sc.scalar(start)
}

// scalar checks that a bare value is a JSON number, true, false or null.
func (sc *scanner) scalar(start int) (string, error) {
	v := strings.TrimSpace(sc.s[start:sc.i])
	switch v {
	case "true", "false", "null":
		return v, nil
	}
	if _, err := strconv.ParseFloat(v, 64); err != nil || v == "" || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) || strings.ContainsAny(v, "xXpP_") {
		return "", fmt.Errorf("json at byte %d: bad value %q", start, clip(v))
	}
	return v, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
