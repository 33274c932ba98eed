package tracecontext

import (
	"errors"
	"fmt"
	"strings"
)

// Format is a propagation format.
type Format string

const (
	FormatW3C     Format = "w3c"     // traceparent + tracestate
	FormatB3      Format = "b3"      // single b3 header
	FormatB3Multi Format = "b3multi" // x-b3-* headers
)

// DefaultOrder is the precedence Extract uses when none is given: W3C first
// (what Istio's OpenTelemetry tracing propagates), then the single b3
// header over the multi form, as the B3 spec says.
var DefaultOrder = []Format{FormatW3C, FormatB3, FormatB3Multi}

// Getter returns every value received for a lowercase header name (nil when
// absent), in the order received. Two or more traceparent values make it
// invalid (W3C test.py test_traceparent_duplicated); for B3 headers the
// first value wins (B3 README "Multiple Headers": "When extracting state
// headers, the first value wins"); tracestate values are combined.
type Getter func(name string) []string

// Extract finds the first valid context in order (DefaultOrder when nil).
// It returns the format that supplied it. A header that is present but
// invalid is reported in errs (one per format tried) and skipped, so a bad
// traceparent does not hide a good b3. found is false when no format gave a
// valid context; a bare sampling decision (b3: 0) is returned with
// found=false and ctx.Sampling set.
func Extract(get Getter, order []Format) (ctx Context, from Format, found bool, errs []error) {
	if order == nil {
		order = DefaultOrder
	}
	var decision Sampling
	for _, f := range order {
		c, present, err := extractOne(func(name string) (string, int) {
			v := get(name)
			if len(v) == 0 {
				return "", 0
			}
			return v[0], len(v)
		}, f)
		if !present {
			continue
		}
		if errors.Is(err, ErrDenyOnly) {
			if decision == SamplingUnset {
				decision = c.Sampling
			}
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if decision != SamplingUnset {
			// A bare decision ("b3: 0") came from a format that takes
			// precedence over this one: the ids are used, the decision
			// stands.
			c.Sampling = decision
			c.TraceFlags = flagsFor(decision) | c.TraceFlags&^0x01
		}
		if f == FormatW3C {
			if ts := get(HeaderTracestate); len(ts) > 0 {
				// tracestate is combined per RFC 9110 list rules.
				joined := ts[0]
				for _, v := range ts[1:] {
					joined += "," + v
				}
				if state, err := ParseTraceState(joined); err == nil {
					c.TraceState = state
				} else {
					errs = append(errs, err)
				}
			}
		}
		return c, f, true, errs
	}
	return Context{Sampling: decision}, "", false, errs
}

// ExtractJoined extracts the context of one format from headers whose
// repeated values were joined into one field value with "," (RFC 9110
// section 5.3), as Envoy's gRPC access log writes them
// (HeaderUtility::getAllOfHeaderAsString). get returns a header's value and
// whether it was present. The rules are Extract's: a repeated traceparent
// is invalid, the first value of a B3 header wins. present is false when
// none of the format's headers is there; a bare sampling decision returns
// ErrDenyOnly. tracestate is not read.
func ExtractJoined(get func(name string) (string, bool), f Format) (c Context, present bool, err error) {
	return extractOne(func(name string) (string, int) {
		v, ok := get(name)
		if !ok {
			return "", 0
		}
		n := 1 + strings.Count(v, ",")
		if i := strings.IndexByte(v, ','); i >= 0 {
			v = v[:i]
		}
		return v, n
	}, f)
}

// extractOne extracts format f; first returns a header's first value and
// how many values it had (0: absent).
func extractOne(first func(name string) (string, int), f Format) (c Context, present bool, err error) {
	switch f {
	case FormatW3C:
		v, n := first(HeaderTraceparent)
		if n == 0 {
			return c, false, nil
		}
		if n > 1 {
			return c, true, fmt.Errorf("traceparent: %w: %d values", ErrDuplicate, n)
		}
		c, err = ParseTraceparent(v)
		return c, true, err
	case FormatB3:
		v, n := first(HeaderB3)
		if n == 0 {
			return c, false, nil
		}
		// The first value wins (README "Multiple Headers"; the rule is
		// for every B3 state header, and Envoy's own Zipkin tracer reads
		// the first b3 value too).
		c, err = ParseB3Single(v)
		return c, true, err
	case FormatB3Multi:
		// Values by index, not through pointers into h: h then stays on
		// the stack (the filter runs this per request).
		names := [...]string{HeaderB3TraceID, HeaderB3SpanID, HeaderB3ParentSpan, HeaderB3Sampled}
		var vals [len(names)]string
		present := false
		for i, name := range names {
			v, n := first(name)
			if n == 0 {
				continue
			}
			present = true
			// README "Multiple Headers": an empty header (X-B3-Sampled: )
			// is malformed, not absent.
			if strings.TrimSpace(v) == "" {
				return Context{}, true, fmt.Errorf("%s: %w: empty value", name, ErrMalformed)
			}
			vals[i] = v // the first value wins
		}
		h := B3Multi{TraceID: vals[0], SpanID: vals[1], ParentSpanID: vals[2], Sampled: vals[3]}
		// x-b3-flags: any value but 1 is ignored, as if absent.
		if v, n := first(HeaderB3Flags); n > 0 && b3Debug(v) {
			h.Flags = v
			present = true
		}
		if !present {
			return c, false, nil
		}
		c, err = ParseB3Multi(h)
		return c, true, err
	}
	return c, false, fmt.Errorf("unknown trace format %q", f)
}
