package tracecontext

import (
	"errors"
	"fmt"
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
// absent). Two or more values for a trace header make it invalid.
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
		c, present, err := extractOne(get, f)
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

func extractOne(get Getter, f Format) (c Context, present bool, err error) {
	switch f {
	case FormatW3C:
		v := get(HeaderTraceparent)
		if len(v) == 0 {
			return c, false, nil
		}
		if len(v) > 1 {
			return c, true, fmt.Errorf("traceparent: %w", ErrDuplicate)
		}
		c, err = ParseTraceparent(v[0])
		return c, true, err
	case FormatB3:
		v := get(HeaderB3)
		if len(v) == 0 {
			return c, false, nil
		}
		if len(v) > 1 {
			return c, true, fmt.Errorf("b3: %w", ErrDuplicate)
		}
		c, err = ParseB3Single(v[0])
		return c, true, err
	case FormatB3Multi:
		var h B3Multi
		any := false
		for _, p := range []struct {
			name string
			dst  *string
		}{
			{HeaderB3TraceID, &h.TraceID}, {HeaderB3SpanID, &h.SpanID},
			{HeaderB3ParentSpan, &h.ParentSpanID}, {HeaderB3Sampled, &h.Sampled}, {HeaderB3Flags, &h.Flags},
		} {
			v := get(p.name)
			if len(v) == 0 {
				continue
			}
			any = true
			if len(v) > 1 {
				return c, true, fmt.Errorf("%s: %w", p.name, ErrDuplicate)
			}
			*p.dst = v[0]
		}
		if !any {
			return c, false, nil
		}
		c, err = ParseB3Multi(h)
		return c, true, err
	}
	return c, false, fmt.Errorf("unknown trace format %q", f)
}
