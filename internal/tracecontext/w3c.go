package tracecontext

import (
	"fmt"
	"strings"
)

// Header names, lowercase as HTTP/2 and Envoy use them.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// ParseTraceparent parses a W3C traceparent value following the spec's
// processing model: version 00 must be exactly 55 characters; a higher
// version is parsed by its 00 prefix as long as the next character is a
// '-'; version ff, all-zero ids, uppercase hex and bad separators are
// rejected.
func ParseTraceparent(v string) (Context, error) {
	var c Context
	v = strings.TrimSpace(v) // OWS around the value is allowed by RFC 9110
	if len(v) < 55 {
		return c, fmt.Errorf("traceparent %q: %w: shorter than 55 characters", clip(v), ErrMalformed)
	}
	var ver [1]byte
	if !hexDecode(ver[:], v[0:2], true) {
		return c, fmt.Errorf("traceparent %q: %w: version is not lowercase hex", clip(v), ErrMalformed)
	}
	if ver[0] == 0xff {
		return c, fmt.Errorf("traceparent %q: %w: version ff is forbidden", clip(v), ErrVersion)
	}
	if ver[0] == 0 && len(v) != 55 {
		return c, fmt.Errorf("traceparent %q: %w: version 00 must be 55 characters", clip(v), ErrMalformed)
	}
	if ver[0] > 0 && len(v) > 55 && v[55] != '-' {
		return c, fmt.Errorf("traceparent %q: %w: data after trace-flags must start with '-'", clip(v), ErrMalformed)
	}
	if v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return c, fmt.Errorf("traceparent %q: %w: fields must be separated by '-'", clip(v), ErrMalformed)
	}
	if !hexDecode(c.TraceID[:], v[3:35], true) {
		return Context{}, fmt.Errorf("traceparent %q: %w: trace-id is not 32 lowercase hex", clip(v), ErrMalformed)
	}
	if !hexDecode(c.SpanID[:], v[36:52], true) {
		return Context{}, fmt.Errorf("traceparent %q: %w: parent-id is not 16 lowercase hex", clip(v), ErrMalformed)
	}
	var flags [1]byte
	if !hexDecode(flags[:], v[53:55], true) {
		return Context{}, fmt.Errorf("traceparent %q: %w: trace-flags is not 2 lowercase hex", clip(v), ErrMalformed)
	}
	if !c.TraceID.IsValid() {
		return Context{}, fmt.Errorf("traceparent %q: %w: trace-id", clip(v), ErrZeroID)
	}
	if !c.SpanID.IsValid() {
		return Context{}, fmt.Errorf("traceparent %q: %w: parent-id", clip(v), ErrZeroID)
	}
	c.TraceFlags = flags[0]
	if ver[0] > 0 {
		// Future versions: only the sampled bit is understood.
		c.TraceFlags &= 0x01
	}
	if c.TraceFlags&0x01 != 0 {
		c.Sampling = SamplingAccept
	} else {
		c.Sampling = SamplingDeny
	}
	return c, nil
}

// FormatTraceparent writes c as a version 00 traceparent. The span id is the
// caller's own span (the parent-id the next hop will see).
func FormatTraceparent(c Context) string {
	b := make([]byte, 0, 55)
	b = append(b, '0', '0', '-')
	b = appendHex(b, c.TraceID[:])
	b = append(b, '-')
	b = appendHex(b, c.SpanID[:])
	b = append(b, '-')
	// Only flags this implementation understands are propagated: sampled
	// (bit 0) and random (bit 1, Trace Context Level 2); unknown bits must
	// not be passed on.
	flags := c.TraceFlags & FlagRandom
	if c.Sampling.Sampled() {
		flags |= FlagSampled
	}
	b = appendHex(b, []byte{flags})
	return string(b)
}

// MaxTraceStateMembers is the W3C limit on tracestate list members.
const MaxTraceStateMembers = 32

// ParseTraceState validates a tracestate value and returns it normalised
// (empty members and the whitespace around members dropped). A value with
// an invalid member or more than 32 members is rejected as a whole: Trace
// Context Level 2, 30-processing-model.md "A traceparent is Received" step
// 3 lets a vendor discard a tracestate it cannot parse, and the suite
// (test_tracestate_key_illegal_characters, _member_count_limit,
// _value_illegal_characters) expects exactly that. A repeated key is not an
// error: the list is kept and the repeat dropped (the first member wins),
// as 20-http_request_header_format.md "Mutating the tracestate Field"
// allows ("vendors MAY also discard duplicate keys") and
// test_tracestate_duplicated_keys requires the list to be propagated.
func ParseTraceState(v string) (string, error) {
	members, err := splitTraceState(v)
	if err != nil {
		return "", err
	}
	return strings.Join(members, ","), nil
}

func splitTraceState(v string) ([]string, error) {
	if strings.Trim(v, " \t,") == "" {
		return nil, nil
	}
	parts := strings.Split(v, ",")
	members := make([]string, 0, len(parts))
	n := 0
	for _, p := range parts {
		p = strings.Trim(p, " \t")
		if p == "" {
			continue
		}
		n++
		eq := strings.IndexByte(p, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("tracestate member %q: %w: no key=value", clip(p), ErrMalformed)
		}
		key, val := p[:eq], p[eq+1:]
		if !validTraceStateKey(key) {
			return nil, fmt.Errorf("tracestate key %q: %w: want a lowercase letter or digit, then up to 255 of a-z 0-9 _ - * / @", clip(key), ErrMalformed)
		}
		if !validTraceStateValue(val) {
			return nil, fmt.Errorf("tracestate value of %q: %w: want 1 to 256 printable ASCII characters except ',' and '=', not ending in a space", clip(key), ErrMalformed)
		}
		if hasKey(members, key) {
			continue
		}
		members = append(members, p)
	}
	// The limit is on the list as received: 33 members are invalid even
	// when one of them repeats a key.
	if n > MaxTraceStateMembers {
		return nil, fmt.Errorf("tracestate: %w: %d members, at most %d", ErrMalformed, n, MaxTraceStateMembers)
	}
	return members, nil
}

// hasKey reports whether a member of members has key. A list holds at most
// 32 members, so a scan costs less than a map.
func hasKey(members []string, key string) bool {
	for _, m := range members {
		if len(m) > len(key) && m[len(key)] == '=' && m[:len(key)] == key {
			return true
		}
	}
	return false
}

// UpdateTraceState sets key=value as the first member of state (moving it
// if present), dropping members from the end to stay within 32, as the W3C
// mutation rules say. state must already be valid (from ParseTraceState).
func UpdateTraceState(state, key, value string) (string, error) {
	if !validTraceStateKey(key) || !validTraceStateValue(value) {
		return state, fmt.Errorf("tracestate member %s=%s: %w", clip(key), clip(value), ErrMalformed)
	}
	members, err := splitTraceState(state)
	if err != nil {
		return state, err
	}
	out := make([]string, 0, len(members)+1)
	out = append(out, key+"="+value)
	for _, m := range members {
		if strings.HasPrefix(m, key+"=") {
			continue
		}
		out = append(out, m)
	}
	if len(out) > MaxTraceStateMembers {
		out = out[:MaxTraceStateMembers]
	}
	return strings.Join(out, ","), nil
}

// validTraceStateKey follows Trace Context Level 2
// (20-http_request_header_format.md, "Key"):
//
//	key     = ( lcalpha / DIGIT ) 0*255 ( keychar )
//	keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"
//
// Level 1's tenant@system form with its per-part limits is gone: "@" is an
// ordinary keychar, so foo@, foo@@bar, foo@bar@baz and a 242-character
// tenant are keys; only the first character is restricted.
func validTraceStateKey(k string) bool {
	if k == "" || len(k) > 256 {
		return false
	}
	if !isLCAlpha(k[0]) && !isDigit(k[0]) {
		return false
	}
	return keyChars(k[1:])
}

func keyChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isLCAlpha(c) || isDigit(c) || c == '_' || c == '-' || c == '*' || c == '/' || c == '@') {
			return false
		}
	}
	return true
}

// validTraceStateValue follows 20-http_request_header_format.md "Value":
// 0*255(chr) nblk-chr, chr = %x20 / nblk-chr, nblk-chr = %x21-2B /
// %x2D-3C / %x3E-7E. Leading spaces are part of the value.
func validTraceStateValue(v string) bool {
	if v == "" || len(v) > 256 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == ' ' && i < len(v)-1 {
			continue
		}
		if c < 0x21 || c > 0x7e || c == ',' || c == '=' {
			return false
		}
	}
	return true
}

func isLCAlpha(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool   { return c >= '0' && c <= '9' }

// clip keeps error messages short when a header is huge.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
