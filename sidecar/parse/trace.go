package parse

import (
	"strings"
	"unsafe"

	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/tracecontext"
)

// FindTrace looks for a trace context written in a line: a W3C
// traceparent value, a B3 single header, X-B3-TraceId/X-B3-SpanId,
// trace_id=HEX / span_id=HEX (logfmt, key=value) or "traceId":"HEX"
// (JSON). Every candidate is validated by the rules of
// internal/tracecontext (lengths, hex, no all-zero ids, version ff
// refused), so the id a line lands under is the one the proxies' records
// carry. The first valid one wins; t is left alone when none is.
func FindTrace(line string, t *record.Trace) bool {
	// One cheap test keeps lines without any trace words fast.
	if !strings.Contains(line, "race") && !strings.Contains(line, "RACE") && !containsFold2(line, 'b', '3') {
		return false
	}
	// Keys are usually written in lowercase: look for them as they are
	// first, and lowercase the line (on the stack) only when that fails.
	if findTrace(line, line, t) {
		return true
	}
	if !hasUpper(line) {
		return false
	}
	var buf [2048]byte
	b := buf[:0]
	if len(line) > len(buf) {
		b = make([]byte, 0, len(line))
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return findTrace(line, unsafe.String(unsafe.SliceData(b), len(b)), t)
}

// findTrace is FindTrace over lower, line lowercased (or line itself).
func findTrace(line, lower string, t *record.Trace) bool {
	if v, ok := valueAfter(line, lower, "traceparent"); ok {
		if c, err := tracecontext.ParseTraceparent(prefix(v, 55)); err == nil {
			setTrace(t, c, "traceparent")
			return true
		}
	}
	if v, ok := valueAfter(line, lower, "x-b3-traceid"); ok {
		h := tracecontext.B3Multi{TraceID: token(v)}
		if s, ok := valueAfter(line, lower, "x-b3-spanid"); ok {
			h.SpanID = token(s)
		}
		if s, ok := valueAfter(line, lower, "x-b3-parentspanid"); ok {
			h.ParentSpanID = token(s)
		}
		if s, ok := valueAfter(line, lower, "x-b3-sampled"); ok {
			h.Sampled = token(s)
		}
		if c, err := tracecontext.ParseB3Multi(h); err == nil {
			setTrace(t, c, "x-b3")
			return true
		}
	}
	if v, ok := valueAfterWord(line, lower, "b3"); ok {
		if c, err := tracecontext.ParseB3Single(token(v)); err == nil {
			setTrace(t, c, "b3")
			return true
		}
	}
	for _, k := range []string{"trace_id", "traceid", "trace-id", "trace.id"} {
		v, ok := valueAfter(line, lower, k)
		if !ok {
			continue
		}
		tid, ok := TraceID(token(v))
		if !ok {
			continue
		}
		t.TraceID, t.Source = tid, "line"
		for _, sk := range []string{"span_id", "spanid", "span-id", "span.id"} {
			if s, ok := valueAfter(line, lower, sk); ok {
				if sid, ok := SpanID(token(s)); ok {
					t.SpanID = sid
					break
				}
			}
		}
		return true
	}
	return false
}

func setTrace(t *record.Trace, c tracecontext.Context, source string) {
	t.TraceID, t.SpanID, t.Source = c.TraceID.String(), c.SpanID.String(), source
	if c.ParentSpanID.IsValid() {
		t.ParentSpanID = c.ParentSpanID.String()
	}
	if c.Sampling != tracecontext.SamplingUnset {
		s := c.Sampling.Sampled()
		t.Sampled = &s
	}
}

// TraceID validates a trace id found in an application's own field
// (trace_id=, "traceId") as B3 does, 16 or 32 hex digits, not all zeros,
// and returns it as 32 lowercase hex digits, 64-bit ids left-padded as
// Zipkin does. Either case is taken here: B3 headers must be lower-hex,
// but a logging library may print the id in upper case, and it is still
// the id of that request.
func TraceID(s string) (string, bool) {
	s = strings.ToLower(s)
	if len(s) == 16 {
		s = "0000000000000000" + s
	}
	if len(s) != 32 {
		return "", false
	}
	// ParseB3Single checks hex and zero ids by tracecontext's own rules.
	c, err := tracecontext.ParseB3Single(s + "-0000000000000001")
	if err != nil {
		return "", false
	}
	return c.TraceID.String(), true
}

// SpanID validates a span id: 16 hex digits (either case, as TraceID),
// not all zeros.
func SpanID(s string) (string, bool) {
	s = strings.ToLower(s)
	if len(s) != 16 {
		return "", false
	}
	c, err := tracecontext.ParseB3Single("00000000000000000000000000000001-" + s)
	if err != nil {
		return "", false
	}
	return c.SpanID.String(), true
}

// valueAfter finds key (lowercase) in lower and returns line from just
// after the key's separator (= or :, optional quotes and spaces).
func valueAfter(line, lower, key string) (string, bool) {
	from := 0
	for {
		i := strings.Index(lower[from:], key)
		if i < 0 {
			return "", false
		}
		i += from
		j := i + len(key)
		// The key must end there: "trace_id" is not "trace_idx".
		if j < len(lower) && (isIDChar(lower[j]) && lower[j] != '"' && lower[j] != '\'') {
			from = j
			continue
		}
		if j < len(lower) && (lower[j] == '"' || lower[j] == '\'') {
			j++
		}
		k := j
		for k < len(lower) && (lower[k] == ' ' || lower[k] == '\t') {
			k++
		}
		if k < len(lower) && (lower[k] == '=' || lower[k] == ':') {
			k++
			for k < len(lower) && (lower[k] == ' ' || lower[k] == '"' || lower[k] == '\'' || lower[k] == '\t') {
				k++
			}
			return line[k:], true
		}
		from = j
	}
}

// valueAfterWord is valueAfter for a short key that must start a word.
func valueAfterWord(line, lower, key string) (string, bool) {
	from := 0
	for {
		i := strings.Index(lower[from:], key)
		if i < 0 {
			return "", false
		}
		i += from
		if i == 0 || !isIDChar(lower[i-1]) {
			if v, ok := valueAfter(line[i:], lower[i:], key); ok && strings.HasPrefix(lower[i:], key) {
				return v, true
			}
		}
		from = i + len(key)
	}
}

func isIDChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
}

// token is v up to the first character that cannot be in an id or header
// value (quote, space, comma, semicolon, brace).
func token(v string) string {
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"', '\'', ' ', '\t', ',', ';', '}', ']', ')', '&':
			return v[:i]
		}
	}
	return v
}

func prefix(v string, n int) string {
	v = token(v)
	if len(v) > n {
		return v[:n]
	}
	return v
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

func containsFold2(s string, a, b byte) bool {
	for i := 0; i+1 < len(s); i++ {
		if (s[i]|0x20) == a && s[i+1] == b {
			return true
		}
	}
	return false
}
