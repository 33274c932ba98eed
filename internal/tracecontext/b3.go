package tracecontext

import (
	"fmt"
	"strings"
)

// B3 header names.
const (
	HeaderB3           = "b3"
	HeaderB3TraceID    = "x-b3-traceid"
	HeaderB3SpanID     = "x-b3-spanid"
	HeaderB3ParentSpan = "x-b3-parentspanid"
	HeaderB3Sampled    = "x-b3-sampled"
	HeaderB3Flags      = "x-b3-flags"
)

// parseB3TraceID accepts 32 or 16 lower-hex characters (README "TraceId":
// "encoded as 32 or 16 lower-hex characters"; Zipkin's Brave refuses other
// characters too) and left-pads 64-bit ids.
func parseB3TraceID(s string) (TraceID, bool) {
	var t TraceID
	switch len(s) {
	case 32:
		return t, hexDecode(t[:], s, true)
	case 16:
		return t, hexDecode(t[8:], s, true)
	}
	return t, false
}

// parseB3SpanID accepts 16 lower-hex characters (README "SpanId",
// "ParentSpanId").
func parseB3SpanID(s string) (SpanID, bool) {
	var id SpanID
	return id, hexDecode(id[:], s, true)
}

// ParseB3Single parses the single "b3" header:
// {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]] or a bare
// sampling state ("0", "1", "d"). A bare state returns ErrDenyOnly together
// with the decision in the returned context, so the caller can honour
// "b3: 0" as deny without ids.
func ParseB3Single(v string) (Context, error) {
	var c Context
	v = strings.TrimSpace(v)
	if len(v) == 1 {
		s, ok := parseB3SamplingState(v)
		if !ok {
			return c, fmt.Errorf("b3 %q: %w", clip(v), ErrSampling)
		}
		c.Sampling = s
		return c, ErrDenyOnly
	}
	parts := strings.Split(v, "-")
	if len(parts) < 2 || len(parts) > 4 {
		return c, fmt.Errorf("b3 %q: %w: want traceid-spanid[-sampled[-parentspanid]]", clip(v), ErrMalformed)
	}
	var ok bool
	if c.TraceID, ok = parseB3TraceID(parts[0]); !ok {
		return Context{}, fmt.Errorf("b3 %q: %w: trace id must be 16 or 32 lower-hex", clip(v), ErrMalformed)
	}
	if c.SpanID, ok = parseB3SpanID(parts[1]); !ok {
		return Context{}, fmt.Errorf("b3 %q: %w: span id must be 16 lower-hex", clip(v), ErrMalformed)
	}
	if len(parts) >= 3 {
		if c.Sampling, ok = parseB3SamplingState(parts[2]); !ok {
			return Context{}, fmt.Errorf("b3 %q: %w", clip(v), ErrSampling)
		}
	}
	if len(parts) == 4 {
		if c.ParentSpanID, ok = parseB3SpanID(parts[3]); !ok {
			return Context{}, fmt.Errorf("b3 %q: %w: parent span id must be 16 lower-hex", clip(v), ErrMalformed)
		}
		if !c.ParentSpanID.IsValid() {
			return Context{}, fmt.Errorf("b3 %q: %w: parent span id", clip(v), ErrZeroID)
		}
	}
	if !c.TraceID.IsValid() {
		return Context{}, fmt.Errorf("b3 %q: %w: trace id", clip(v), ErrZeroID)
	}
	if !c.SpanID.IsValid() {
		return Context{}, fmt.Errorf("b3 %q: %w: span id", clip(v), ErrZeroID)
	}
	c.TraceFlags = flagsFor(c.Sampling)
	return c, nil
}

func parseB3SamplingState(s string) (Sampling, bool) {
	switch s {
	case "0":
		return SamplingDeny, true
	case "1":
		return SamplingAccept, true
	case "d":
		return SamplingDebug, true
	}
	return SamplingUnset, false
}

// B3Multi holds the values of the x-b3-* headers; empty means absent (a
// header present with an empty value is malformed, README "Multiple
// Headers": Extract and ExtractFormat reject it before ParseB3Multi).
type B3Multi struct {
	TraceID, SpanID, ParentSpanID, Sampled, Flags string
}

// ParseB3Multi parses the multi-header form by the B3 README:
//   - x-b3-traceid (32 or 16 lower-hex) and x-b3-spanid (16 lower-hex) are
//     required unless only a sampling state is propagated;
//   - x-b3-sampled is 1 (accept) or 0 (deny); true and false are accepted
//     ("a lenient implementation may accept them"); absent defers;
//   - x-b3-flags: 1 is debug and implies accept, so it wins over
//     x-b3-sampled; "Absent or any other value can be ignored";
//   - x-b3-parentspanid, when present, is 16 lower-hex.
//
// Headers carrying only a sampling decision return ErrDenyOnly with the
// decision set.
func ParseB3Multi(h B3Multi) (Context, error) {
	var c Context
	switch strings.TrimSpace(h.Sampled) {
	case "":
	case "0", "false":
		c.Sampling = SamplingDeny
	case "1", "true":
		c.Sampling = SamplingAccept
	default:
		return Context{}, fmt.Errorf("x-b3-sampled %q: %w: want 1 or 0", clip(h.Sampled), ErrSampling)
	}
	if b3Debug(h.Flags) {
		c.Sampling = SamplingDebug
	}
	if h.TraceID == "" && h.SpanID == "" {
		if c.Sampling == SamplingUnset {
			return Context{}, fmt.Errorf("x-b3: %w: no x-b3-traceid", ErrMalformed)
		}
		return c, ErrDenyOnly
	}
	var ok bool
	if c.TraceID, ok = parseB3TraceID(strings.TrimSpace(h.TraceID)); !ok {
		return Context{}, fmt.Errorf("x-b3-traceid %q: %w: must be 16 or 32 lower-hex", clip(h.TraceID), ErrMalformed)
	}
	if c.SpanID, ok = parseB3SpanID(strings.TrimSpace(h.SpanID)); !ok {
		return Context{}, fmt.Errorf("x-b3-spanid %q: %w: must be 16 lower-hex", clip(h.SpanID), ErrMalformed)
	}
	if p := strings.TrimSpace(h.ParentSpanID); p != "" {
		if c.ParentSpanID, ok = parseB3SpanID(p); !ok {
			return Context{}, fmt.Errorf("x-b3-parentspanid %q: %w: must be 16 lower-hex", clip(p), ErrMalformed)
		}
		if !c.ParentSpanID.IsValid() {
			return Context{}, fmt.Errorf("x-b3-parentspanid: %w", ErrZeroID)
		}
	}
	if !c.TraceID.IsValid() {
		return Context{}, fmt.Errorf("x-b3-traceid: %w", ErrZeroID)
	}
	if !c.SpanID.IsValid() {
		return Context{}, fmt.Errorf("x-b3-spanid: %w", ErrZeroID)
	}
	c.TraceFlags = flagsFor(c.Sampling)
	return c, nil
}

// b3Debug reports whether an x-b3-flags value is the debug flag. README
// "Debug Flag": "Debug is encoded as X-B3-Flags: 1. Absent or any other
// value can be ignored."
func b3Debug(flags string) bool { return strings.TrimSpace(flags) == "1" }

func flagsFor(s Sampling) byte {
	if s.Sampled() {
		return 0x01
	}
	return 0
}

// FormatB3SingleHeader writes c as a single b3 header value. The trace id is
// always written as 128 bits: Zipkin accepts both, and a 64-bit id read
// earlier is already left-padded, so nothing is lost.
func FormatB3SingleHeader(c Context) string {
	b := make([]byte, 0, 32+1+16+2+17)
	b = appendHex(b, c.TraceID[:])
	b = append(b, '-')
	b = appendHex(b, c.SpanID[:])
	switch c.Sampling {
	case SamplingAccept:
		b = append(b, '-', '1')
	case SamplingDeny:
		b = append(b, '-', '0')
	case SamplingDebug:
		b = append(b, '-', 'd')
	}
	if c.ParentSpanID.IsValid() && c.Sampling != SamplingUnset {
		b = append(b, '-')
		b = appendHex(b, c.ParentSpanID[:])
	}
	return string(b)
}

// FormatB3MultiHeaders returns the x-b3-* header values for c. Empty values are
// headers not to send.
func FormatB3MultiHeaders(c Context) B3Multi {
	h := B3Multi{TraceID: c.TraceID.String(), SpanID: c.SpanID.String()}
	if c.ParentSpanID.IsValid() {
		h.ParentSpanID = c.ParentSpanID.String()
	}
	switch c.Sampling {
	case SamplingAccept:
		h.Sampled = "1"
	case SamplingDeny:
		h.Sampled = "0"
	case SamplingDebug:
		h.Flags = "1"
	}
	return h
}
