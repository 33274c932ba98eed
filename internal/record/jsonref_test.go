package record

// The AppendJSON of commit 3fb7f73, kept verbatim (renamed) as the
// reference the encoder's output must equal byte for byte.

import (
	"math"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"
)

// refAppendJSON appends r as one JSON object (no trailing newline) to dst.
// It is hand-written because it runs once per access log entry: several
// times faster than encoding/json and allocation-free apart from growing
// dst. Keys are stable; empty values are omitted. Durations are
// milliseconds with microsecond precision, times RFC 3339 with nanoseconds.
//
// Every member is written with a leading comma; "kind" always comes first
// and carries none, and nested objects drop their first comma when closed.
func refAppendJSON(b []byte, r *Record) []byte {
	b = append(b, `{"kind":"`...)
	b = append(b, r.Kind.String()...)
	b = append(b, '"')
	b = refJStr(b, `,"record_id":`, r.ID)
	b = refJStr(b, `,"tenant":`, r.Tenant)
	b = refJTime(b, `,"start_time":`, r.StartTime)
	b = refJTime(b, `,"received_at":`, r.ReceivedAt)
	b = refJStr(b, `,"trace_id":`, r.Trace.TraceID)
	b = refJStr(b, `,"span_id":`, r.Trace.SpanID)
	b = refJStr(b, `,"parent_span_id":`, r.Trace.ParentSpanID)
	if r.Trace.Sampled != nil {
		b = append(b, `,"sampled":`...)
		b = strconv.AppendBool(b, *r.Trace.Sampled)
	}
	b = refJStr(b, `,"trace_source":`, r.Trace.Source)
	b = refJStr(b, `,"reporter":`, r.Reporter)

	if r.Node != (Node{}) {
		n := &r.Node
		var o int
		b, o = refJOpen(b, `,"node":`)
		b = refJStr(b, `,"id":`, n.ID)
		b = refJStr(b, `,"cluster":`, n.Cluster)
		b = refJStr(b, `,"type":`, n.Type)
		b = refJStr(b, `,"ip":`, n.IP)
		b = refJStr(b, `,"pod":`, n.Pod)
		b = refJStr(b, `,"namespace":`, n.Namespace)
		b = refJStr(b, `,"workload":`, n.Workload)
		b = refJStr(b, `,"mesh":`, n.Mesh)
		b = refJStr(b, `,"network":`, n.Network)
		b = refJStr(b, `,"cluster_id":`, n.ClusterID)
		b = refJStr(b, `,"log_name":`, n.LogName)
		b = refJClose(b, o)
	}
	b = refJWorkload(b, `,"source":`, &r.Source)
	b = refJWorkload(b, `,"destination":`, &r.Destination)

	h := &r.HTTP
	b = refJStr(b, `,"method":`, h.Method)
	b = refJStr(b, `,"scheme":`, h.Scheme)
	b = refJStr(b, `,"authority":`, h.Authority)
	b = refJStr(b, `,"path":`, h.Path)
	b = refJStr(b, `,"original_path":`, h.OriginalPath)
	b = refJStr(b, `,"protocol":`, h.Protocol)
	b = refJUint(b, `,"response_code":`, uint64(h.ResponseCode))
	b = refJStr(b, `,"response_code_details":`, h.ResponseCodeDetails)
	b = refJStr(b, `,"grpc_status":`, h.GRPCStatus)
	b = refJStr(b, `,"request_id":`, h.RequestID)
	b = refJStr(b, `,"user_agent":`, h.UserAgent)
	b = refJStr(b, `,"referer":`, h.Referer)
	b = refJStr(b, `,"forwarded_for":`, h.ForwardedFor)
	b = refJUint(b, `,"request_header_bytes":`, h.RequestHeaderBytes)
	b = refJUint(b, `,"request_body_bytes":`, h.RequestBodyBytes)
	b = refJUint(b, `,"response_header_bytes":`, h.ResponseHeaderBytes)
	b = refJUint(b, `,"response_body_bytes":`, h.ResponseBodyBytes)
	b = refJUint(b, `,"received_bytes":`, r.ReceivedBytes)
	b = refJUint(b, `,"sent_bytes":`, r.SentBytes)

	t := &r.Timings
	b = refJMillis(b, `,"duration_ms":`, t.Total)
	if *t != (Timings{Total: t.Total}) {
		var o int
		b, o = refJOpen(b, `,"timings":`)
		b = refJMillis(b, `,"last_rx_byte_ms":`, t.LastRxByte)
		b = refJMillis(b, `,"first_upstream_tx_byte_ms":`, t.FirstUpstreamTxByte)
		b = refJMillis(b, `,"last_upstream_tx_byte_ms":`, t.LastUpstreamTxByte)
		b = refJMillis(b, `,"first_upstream_rx_byte_ms":`, t.FirstUpstreamRxByte)
		b = refJMillis(b, `,"last_upstream_rx_byte_ms":`, t.LastUpstreamRxByte)
		b = refJMillis(b, `,"first_downstream_tx_byte_ms":`, t.FirstDownstreamTxByte)
		b = refJMillis(b, `,"last_downstream_tx_byte_ms":`, t.LastDownstreamTxByte)
		b = refJClose(b, o)
	}

	b = refJStr(b, `,"response_flags":`, r.ResponseFlags)
	b = refJStr(b, `,"route_name":`, r.RouteName)
	b = refJStr(b, `,"connection_termination_details":`, r.ConnectionTerminationDetails)
	b = refJStr(b, `,"connection_security_policy":`, r.ConnectionSecurityPolicy)
	b = refJStr(b, `,"stream_id":`, r.StreamID)
	if r.Intermediate {
		b = append(b, `,"intermediate":true`...)
	}
	if v := r.SampleRate; v != 0 && !math.IsNaN(v) && !math.IsInf(v, 0) {
		b = append(b, `,"sample_rate":`...)
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	}

	if u := &r.Upstream; *u != (Upstream{}) {
		var o int
		b, o = refJOpen(b, `,"upstream":`)
		b = refJStr(b, `,"cluster":`, u.Cluster)
		b = refJStr(b, `,"direction":`, u.Direction)
		b = refJUint(b, `,"port":`, uint64(u.Port))
		b = refJStr(b, `,"subset":`, u.Subset)
		b = refJStr(b, `,"service":`, u.Service)
		b = refJStr(b, `,"service_name":`, u.ServiceName)
		b = refJStr(b, `,"service_namespace":`, u.ServiceNamespace)
		b = refJStr(b, `,"host":`, u.Host)
		b = refJStr(b, `,"local_address":`, u.LocalAddress)
		b = refJStr(b, `,"transport_failure_reason":`, u.TransportFailure)
		b = refJUint(b, `,"request_attempt_count":`, uint64(u.RequestAttemptCount))
		b = refJUint(b, `,"wire_bytes_sent":`, u.WireBytesSent)
		b = refJUint(b, `,"wire_bytes_received":`, u.WireBytesReceived)
		b = refJClose(b, o)
	}
	if d := &r.Downstream; *d != (Downstream{}) {
		var o int
		b, o = refJOpen(b, `,"downstream":`)
		b = refJStr(b, `,"remote_address":`, d.RemoteAddress)
		b = refJStr(b, `,"local_address":`, d.LocalAddress)
		b = refJStr(b, `,"direct_remote_address":`, d.DirectRemoteAddress)
		b = refJStr(b, `,"transport_failure_reason":`, d.TransportFailure)
		b = refJUint(b, `,"wire_bytes_sent":`, d.WireBytesSent)
		b = refJUint(b, `,"wire_bytes_received":`, d.WireBytesReceived)
		b = refJClose(b, o)
	}
	if s := &r.TLS; *s != (TLS{}) {
		var o int
		b, o = refJOpen(b, `,"tls":`)
		b = refJStr(b, `,"version":`, s.Version)
		b = refJUint(b, `,"cipher_suite":`, uint64(s.CipherSuite))
		b = refJStr(b, `,"sni":`, s.SNI)
		b = refJStr(b, `,"peer_uri_san":`, s.PeerURISAN)
		b = refJStr(b, `,"peer_subject":`, s.PeerSubject)
		b = refJStr(b, `,"local_uri_san":`, s.LocalURISAN)
		b = refJStr(b, `,"local_subject":`, s.LocalSubject)
		b = refJStr(b, `,"session_id":`, s.SessionID)
		b = refJClose(b, o)
	}
	b = refJMap(b, `,"request_headers":`, r.RequestHeaders)
	b = refJMap(b, `,"response_headers":`, r.ResponseHeaders)
	b = refJMap(b, `,"response_trailers":`, r.ResponseTrailers)
	b = refJMap(b, `,"tags":`, r.Tags)
	b = refJMap(b, `,"filter_state":`, r.FilterState)

	b = refJStr(b, `,"message":`, r.Message)
	b = refJStr(b, `,"level":`, r.Level)
	b = refJStr(b, `,"stream":`, r.Stream)
	b = refJMap(b, `,"fields":`, r.Fields)
	if r.Truncated {
		b = append(b, `,"truncated":true`...)
	}
	if r.InvalidUTF8 {
		b = append(b, `,"invalid_utf8":true`...)
	}
	return append(b, '}')
}

// refJOpen starts a nested object; refJClose ends it, dropping the leading comma
// of its first member.
func refJOpen(b []byte, key string) ([]byte, int) {
	b = append(b, key...)
	return append(b, '{'), len(b)
}

func refJClose(b []byte, open int) []byte {
	if len(b) > open+1 && b[open+1] == ',' {
		copy(b[open+1:], b[open+2:])
		b = b[:len(b)-1]
	}
	return append(b, '}')
}

func refJStr(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, key...)
	return refAppendJSONString(b, v)
}

func refJUint(b []byte, key string, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, key...)
	return strconv.AppendUint(b, v, 10)
}

func refJTime(b []byte, key string, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	b = append(b, key...)
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// refJMillis writes d as milliseconds with up to microsecond precision.
func refJMillis(b []byte, key string, d time.Duration) []byte {
	if d == 0 {
		return b
	}
	b = append(b, key...)
	us := d.Microseconds()
	if us < 0 {
		b = append(b, '-')
		us = -us
	}
	b = strconv.AppendInt(b, us/1000, 10)
	if frac := us % 1000; frac != 0 {
		b = append(b, '.')
		digits := [3]byte{byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
		n := 3
		for n > 0 && digits[n-1] == '0' {
			n--
		}
		b = append(b, digits[:n]...)
	}
	return b
}

func refJWorkload(b []byte, key string, w *Workload) []byte {
	if *w == (Workload{}) {
		return b
	}
	b, o := refJOpen(b, key)
	b = refJStr(b, `,"workload":`, w.Name)
	b = refJStr(b, `,"namespace":`, w.Namespace)
	b = refJStr(b, `,"canonical_service":`, w.CanonicalService)
	b = refJStr(b, `,"canonical_revision":`, w.CanonicalRevision)
	b = refJStr(b, `,"app":`, w.App)
	b = refJStr(b, `,"version":`, w.Version)
	b = refJStr(b, `,"principal":`, w.Principal)
	b = refJStr(b, `,"cluster":`, w.Cluster)
	b = refJStr(b, `,"pod":`, w.Pod)
	b = refJStr(b, `,"ip":`, w.IP)
	return refJClose(b, o)
}

// refJMap writes m with sorted keys so that output is deterministic.
func refJMap(b []byte, key string, m map[string]string) []byte {
	if len(m) == 0 {
		return b
	}
	b = append(b, key...)
	var stack [16]string
	keys := stack[:0]
	for mk := range m {
		keys = append(keys, mk)
	}
	sort.Strings(keys)
	b = append(b, '{')
	for i, mk := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = refAppendJSONString(b, mk)
		b = append(b, ':')
		b = refAppendJSONString(b, m[mk])
	}
	return append(b, '}')
}

// refPlainASCII marks the bytes a JSON string may hold as they are.
var refPlainASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return
}()

const (
	refLanes01 = 0x0101010101010101
	refLanes80 = 0x8080808080808080
)

// refNeedsEscape8 reports whether any of s[i:i+8] is a control character,
// '"', '\\' or a non-ASCII byte. It may say yes for eight plain bytes (the
// caller then goes byte by byte), never no for one that needs escaping.
func refNeedsEscape8(s string, i int) bool {
	// One unaligned load; the caller checked i+8 <= len(s).
	x := *(*uint64)(unsafe.Add(unsafe.Pointer(unsafe.StringData(s)), i))
	below20 := (x - refLanes01*0x20) & ^x & refLanes80
	q := x ^ (refLanes01 * '"')
	quote := (q - refLanes01) & ^q & refLanes80
	bs := x ^ (refLanes01 * '\\')
	backslash := (bs - refLanes01) & ^bs & refLanes80
	return (below20 | quote | backslash | x&refLanes80) != 0
}

// refAppendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, as encoding/json does, so the output is always valid JSON.
func refAppendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		// Eight bytes at a time while none needs escaping (most of a
		// record's text): this loop was a sixth of the receiver's work.
		for i+8 <= len(s) && !refNeedsEscape8(s, i) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if refPlainASCII[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
