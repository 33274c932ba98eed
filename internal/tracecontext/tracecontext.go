// Package tracecontext parses and formats the trace context headers a mesh
// propagates: W3C Trace Context (traceparent, tracestate) and Zipkin B3, both
// the multi-header form (x-b3-*) and the single "b3" header. It is shared by
// the Envoy Wasm filter (which reads, starts and propagates context) and the
// ALS receiver (which reads what Envoy logged), so both agree on every edge
// case. It has no dependencies beyond the standard library so that it builds
// for wasip1.
//
// Versions implemented:
//   - W3C Trace Context Level 2 (https://www.w3.org/TR/trace-context-2/;
//     github.com/w3c/trace-context branch level-2 at 82c5ffd): the
//     traceparent processing model, the random trace-id flag (0x02), and
//     Level 2's tracestate key grammar, in which "@" is an ordinary key
//     character. Checked against the suite's test/test.py at main acab820
//     at its default strictness (see tracecontexttest).
//   - B3 propagation as its README states it today
//     (github.com/openzipkin/b3-propagation at 3e54cda): both encodings,
//     lower-hex ids, the first value of a repeated header wins, x-b3-flags
//     other than 1 ignored.
package tracecontext

import (
	"encoding/hex"
	"errors"
)

// TraceID is a 128-bit trace id. 64-bit B3 ids are held left-padded with
// zeros, as Zipkin does.
type TraceID [16]byte

// SpanID is a 64-bit span id.
type SpanID [8]byte

// IsValid reports whether t is not all zeros (both specs forbid that).
func (t TraceID) IsValid() bool { return t != TraceID{} }

// IsValid reports whether s is not all zeros.
func (s SpanID) IsValid() bool { return s != SpanID{} }

// String returns 32 lowercase hex characters.
func (t TraceID) String() string { return hex.EncodeToString(t[:]) }

// String returns 16 lowercase hex characters.
func (s SpanID) String() string { return hex.EncodeToString(s[:]) }

// Sampling is a propagated sampling decision.
type Sampling uint8

const (
	SamplingUnset  Sampling = iota // no decision propagated: the receiver decides
	SamplingDeny                   // b3 "0", W3C sampled flag clear
	SamplingAccept                 // b3 "1", W3C sampled flag set
	SamplingDebug                  // b3 "d" / x-b3-flags: 1 (implies accept)
)

// W3C trace-flags bits.
const (
	// FlagSampled is the sampled flag (Trace Context Level 1).
	FlagSampled byte = 0x01
	// FlagRandom is the random trace-id flag (Trace Context Level 2): set,
	// at least the rightmost 7 bytes of the trace id are random. Only the
	// hop that generated the trace id may set it; others pass it on.
	FlagRandom byte = 0x02
)

// Sampled reports whether the decision is to sample (accept or debug).
func (s Sampling) Sampled() bool { return s == SamplingAccept || s == SamplingDebug }

// Context is one hop's trace context.
type Context struct {
	TraceID      TraceID
	SpanID       SpanID
	ParentSpanID SpanID // B3 only; zero when not propagated
	Sampling     Sampling
	// TraceFlags are the W3C trace-flags byte as received (FlagSampled,
	// FlagRandom); other bits are carried but not interpreted.
	TraceFlags byte
	// TraceState is the W3C tracestate header, already validated and
	// normalised (see ParseTraceState).
	TraceState string
}

// IsValid reports whether the context carries usable ids.
func (c Context) IsValid() bool { return c.TraceID.IsValid() && c.SpanID.IsValid() }

// Errors name what was wrong, so callers can count invalid headers by reason.
var (
	ErrMalformed = errors.New("malformed")              // wrong length, separators or characters
	ErrZeroID    = errors.New("all-zero id")            // trace or span id of only zeros
	ErrVersion   = errors.New("invalid version")        // traceparent version ff
	ErrSampling  = errors.New("invalid sampling")       // b3 sampling field not 0/1/d, x-b3-sampled not 0/1/true/false
	ErrDuplicate = errors.New("duplicated header")      // the same trace header received more than once
	ErrDenyOnly  = errors.New("sampling decision only") // "b3: 0" and friends: a decision without ids
)

// hexDecode decodes lowercase-or-uppercase hex of exactly len(dst)*2
// characters into dst. lowerOnly enforces W3C's lowercase rule.
func hexDecode(dst []byte, s string, lowerOnly bool) bool {
	if len(s) != len(dst)*2 {
		return false
	}
	for i := 0; i < len(dst); i++ {
		hi, ok1 := fromHex(s[2*i], lowerOnly)
		lo, ok2 := fromHex(s[2*i+1], lowerOnly)
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func fromHex(c byte, lowerOnly bool) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F' && !lowerOnly:
		return c - 'A' + 10, true
	}
	return 0, false
}

const hexDigits = "0123456789abcdef"

func appendHex(dst []byte, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}
