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
	// Envoy logs a repeated header once, its values joined by ","
	// (getAllOfHeaderAsString): ExtractJoined applies the filter's rules
	// to that (a repeated traceparent is invalid, the first B3 value
	// wins).
	get := func(name string) (string, bool) {
		v, ok := headers[name]
		return v, ok
	}
	for _, f := range order {
		c, present, err := tracecontext.ExtractJoined(get, f)
		switch {
		case !present, errors.Is(err, tracecontext.ErrDenyOnly):
			// A bare decision (b3: 0) carries no ids to correlate.
		case err != nil:
			invalid = append(invalid, invalidTrace{format: sourceOf[f], reason: reasonOf(err), err: err})
		default:
			return traceOf(c, sourceOf[f]), invalid
		}
	}
	return record.Trace{}, invalid
}

// sourceOf is the record.Trace.Source of each header format.
var sourceOf = map[tracecontext.Format]string{
	tracecontext.FormatW3C:     traceFromW3C,
	tracecontext.FormatB3:      traceFromB3,
	tracecontext.FormatB3Multi: traceFromB3Multi,
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
