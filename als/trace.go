package als

import (
	"errors"

	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/tracecontext"
)

// Trace sources, as recorded in record.Trace.Source.
const (
	traceFromFilterState = "filter_state"
	traceFromW3C         = "traceparent"
	traceFromB3          = "b3"
	traceFromB3Multi     = "x-b3"
)

// invalidTrace is one trace header that was present but invalid.
type invalidTrace struct {
	format string // traceparent, b3, x-b3, filter_state
	reason string // malformed, zero_id, version, sampling, duplicate
	err    error
}

// traceFrom finds a record's trace context: the meshtrail filter's filter
// state first (it saw the request inside Envoy), then whichever trace
// headers Envoy logged, in order (trace.header_order). A header that
// is present but invalid is reported and skipped, as both specs say: the
// request is then treated as having no context from that header.
func traceFrom(state *filterTrace, headers map[string]string, order []tracecontext.Format, invalid []invalidTrace) (record.Trace, []invalidTrace) {
	if id, ok := state.get(0); ok {
		if validHexID(id, 32) {
			tr := record.Trace{TraceID: id, Source: traceFromFilterState}
			bad := func(key, want string) {
				invalid = append(invalid, invalidTrace{format: "filter_state", reason: "malformed", err: errors.New(key + " is not " + want)})
			}
			if sp, ok := state.get(1); validHexID(sp, 16) {
				tr.SpanID = sp
			} else if ok {
				bad(fsSpanID, "16 lowercase hex")
			}
			if pp, ok := state.get(2); validHexID(pp, 16) {
				tr.ParentSpanID = pp
			} else if ok {
				bad(fsParentSpanID, "16 lowercase hex")
			}
			switch sampled, ok := state.get(3); sampled {
			case "1", "true":
				tr.Sampled = &sampledTrue
			case "0", "false":
				tr.Sampled = &sampledFalse
			default:
				if ok {
					bad(fsSampled, "0, 1, true or false")
				}
			}
			return tr, invalid
		}
		invalid = append(invalid, invalidTrace{format: "filter_state", reason: "malformed", err: errors.New(fsTraceID + " is not 32 lowercase hex")})
	}
	if len(headers) == 0 {
		return record.Trace{}, invalid
	}
	for _, f := range order {
		switch f {
		case tracecontext.FormatW3C:
			if v, ok := headers[tracecontext.HeaderTraceparent]; ok {
				c, err := tracecontext.ParseTraceparent(v)
				if err == nil {
					return traceOf(c, traceFromW3C), invalid
				}
				invalid = append(invalid, invalidTrace{format: traceFromW3C, reason: reasonOf(err), err: err})
			}
		case tracecontext.FormatB3:
			if v, ok := headers[tracecontext.HeaderB3]; ok {
				c, err := tracecontext.ParseB3Single(v)
				if err == nil {
					return traceOf(c, traceFromB3), invalid
				}
				if !errors.Is(err, tracecontext.ErrDenyOnly) {
					invalid = append(invalid, invalidTrace{format: traceFromB3, reason: reasonOf(err), err: err})
				}
			}
		case tracecontext.FormatB3Multi:
			if tid, ok := headers[tracecontext.HeaderB3TraceID]; ok {
				c, err := tracecontext.ParseB3Multi(tracecontext.B3Multi{
					TraceID:      tid,
					SpanID:       headers[tracecontext.HeaderB3SpanID],
					ParentSpanID: headers[tracecontext.HeaderB3ParentSpan],
					Sampled:      headers[tracecontext.HeaderB3Sampled],
					Flags:        headers[tracecontext.HeaderB3Flags],
				})
				if err == nil {
					return traceOf(c, traceFromB3Multi), invalid
				}
				invalid = append(invalid, invalidTrace{format: traceFromB3Multi, reason: reasonOf(err), err: err})
			}
		}
	}
	return record.Trace{}, invalid
}

var sampledTrue, sampledFalse = true, false

func traceOf(c tracecontext.Context, source string) record.Trace {
	t := record.Trace{TraceID: c.TraceID.String(), SpanID: c.SpanID.String(), Source: source}
	if c.ParentSpanID.IsValid() {
		t.ParentSpanID = c.ParentSpanID.String()
	}
	switch c.Sampling {
	case tracecontext.SamplingAccept, tracecontext.SamplingDebug:
		t.Sampled = &sampledTrue
	case tracecontext.SamplingDeny:
		t.Sampled = &sampledFalse
	}
	return t
}

func reasonOf(err error) string {
	switch {
	case errors.Is(err, tracecontext.ErrZeroID):
		return "zero_id"
	case errors.Is(err, tracecontext.ErrVersion):
		return "version"
	case errors.Is(err, tracecontext.ErrSampling):
		return "sampling"
	case errors.Is(err, tracecontext.ErrDuplicate):
		return "duplicate"
	}
	return "malformed"
}

// validHexID reports whether s is n lowercase hex characters, not all zero.
func validHexID(s string, n int) bool {
	if len(s) != n || !isLowerHex(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return true
		}
	}
	return false
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
