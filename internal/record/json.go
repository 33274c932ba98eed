package record

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"
)

// AppendJSON appends r as one JSON object (no trailing newline) to dst.
// It is hand-written because it runs once per access log entry: several
// times faster than encoding/json and allocation-free apart from growing
// dst. Keys are stable; empty values are omitted. Durations are
// milliseconds with microsecond precision, times RFC 3339 with nanoseconds.
//
// An Encoder writes the same bytes faster when it renders many records of
// one stream; AppendJSON keeps no state between calls.
func AppendJSON(b []byte, r *Record) []byte {
	return appendRecord(b, r, nil)
}

// appendRecord is AppendJSON, with e's caches when e is not nil.
//
// Every member is written with a leading comma; "kind" always comes first
// and carries none, and a nested object's opening brace overwrites the
// leading comma of its first member (see jOpen). String members' keys end
// with the value's opening quote.
func appendRecord(b []byte, r *Record, e *Encoder) []byte {
	var day *dayCache
	var maps *[numMaps]mapKeys
	if e != nil {
		day, maps = &e.day, &e.maps
	} else {
		day = new(dayCache) // does not escape
	}
	b = append(b, kindPrefix(r.Kind)...)
	b = jStr(b, `,"record_id":"`, r.ID)
	b = jStr(b, `,"tenant":"`, r.Tenant)
	b = jTime(b, `,"start_time":"`, r.StartTime, day)
	b = jTime(b, `,"received_at":"`, r.ReceivedAt, day)
	b = jStr(b, `,"trace_id":"`, r.Trace.TraceID)
	b = jStr(b, `,"span_id":"`, r.Trace.SpanID)
	b = jStr(b, `,"parent_span_id":"`, r.Trace.ParentSpanID)
	if r.Trace.Sampled != nil {
		if *r.Trace.Sampled {
			b = append(b, `,"sampled":true`...)
		} else {
			b = append(b, `,"sampled":false`...)
		}
	}
	b = jStr(b, `,"trace_source":"`, r.Trace.Source)
	b = jStr(b, `,"reporter":"`, r.Reporter)

	if r.Node != (Node{}) {
		b = append(b, `,"node":`...)
		b = e.node(b, &r.Node)
	}
	if r.Source != (Workload{}) {
		b = append(b, `,"source":`...)
		b = e.workload(b, &r.Source)
	}
	if r.Destination != (Workload{}) {
		b = append(b, `,"destination":`...)
		b = e.workload(b, &r.Destination)
	}

	h := &r.HTTP
	b = jStr(b, `,"method":"`, h.Method)
	b = jStr(b, `,"scheme":"`, h.Scheme)
	b = jStr(b, `,"authority":"`, h.Authority)
	b = jStr(b, `,"path":"`, h.Path)
	b = jStr(b, `,"original_path":"`, h.OriginalPath)
	b = jStr(b, `,"protocol":"`, h.Protocol)
	b = jUint(b, `,"response_code":`, uint64(h.ResponseCode))
	b = jStr(b, `,"response_code_details":"`, h.ResponseCodeDetails)
	b = jStr(b, `,"grpc_status":"`, h.GRPCStatus)
	b = jStr(b, `,"request_id":"`, h.RequestID)
	b = jStr(b, `,"user_agent":"`, h.UserAgent)
	b = jStr(b, `,"referer":"`, h.Referer)
	b = jStr(b, `,"forwarded_for":"`, h.ForwardedFor)
	b = jUint(b, `,"request_header_bytes":`, h.RequestHeaderBytes)
	b = jUint(b, `,"request_body_bytes":`, h.RequestBodyBytes)
	b = jUint(b, `,"response_header_bytes":`, h.ResponseHeaderBytes)
	b = jUint(b, `,"response_body_bytes":`, h.ResponseBodyBytes)
	b = jUint(b, `,"received_bytes":`, r.ReceivedBytes)
	b = jUint(b, `,"sent_bytes":`, r.SentBytes)

	t := &r.Timings
	b = jMillis(b, `,"duration_ms":`, t.Total)
	if *t != (Timings{Total: t.Total}) {
		var o int
		b, o = jOpen(b, `,"timings":`)
		b = jMillis(b, `,"last_rx_byte_ms":`, t.LastRxByte)
		b = jMillis(b, `,"first_upstream_tx_byte_ms":`, t.FirstUpstreamTxByte)
		b = jMillis(b, `,"last_upstream_tx_byte_ms":`, t.LastUpstreamTxByte)
		b = jMillis(b, `,"first_upstream_rx_byte_ms":`, t.FirstUpstreamRxByte)
		b = jMillis(b, `,"last_upstream_rx_byte_ms":`, t.LastUpstreamRxByte)
		b = jMillis(b, `,"first_downstream_tx_byte_ms":`, t.FirstDownstreamTxByte)
		b = jMillis(b, `,"last_downstream_tx_byte_ms":`, t.LastDownstreamTxByte)
		b = jClose(b, o)
	}

	b = jStr(b, `,"response_flags":"`, r.ResponseFlags)
	b = jStr(b, `,"route_name":"`, r.RouteName)
	b = jStr(b, `,"connection_termination_details":"`, r.ConnectionTerminationDetails)
	b = jStr(b, `,"connection_security_policy":"`, r.ConnectionSecurityPolicy)
	b = jStr(b, `,"stream_id":"`, r.StreamID)
	if r.Intermediate {
		b = append(b, `,"intermediate":true`...)
	}
	if v := r.SampleRate; v != 0 && !math.IsNaN(v) && !math.IsInf(v, 0) {
		b = append(b, `,"sample_rate":`...)
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	}

	if u := &r.Upstream; *u != (Upstream{}) {
		var o int
		b, o = jOpen(b, `,"upstream":`)
		b = e.upstreamHead(b, u)
		b = jStr(b, `,"host":"`, u.Host)
		b = jStr(b, `,"local_address":"`, u.LocalAddress)
		b = jStr(b, `,"transport_failure_reason":"`, u.TransportFailure)
		b = jUint(b, `,"request_attempt_count":`, uint64(u.RequestAttemptCount))
		b = jUint(b, `,"wire_bytes_sent":`, u.WireBytesSent)
		b = jUint(b, `,"wire_bytes_received":`, u.WireBytesReceived)
		b = jClose(b, o)
	}
	if d := &r.Downstream; *d != (Downstream{}) {
		var o int
		b, o = jOpen(b, `,"downstream":`)
		b = jStr(b, `,"remote_address":"`, d.RemoteAddress)
		b = jStr(b, `,"local_address":"`, d.LocalAddress)
		b = jStr(b, `,"direct_remote_address":"`, d.DirectRemoteAddress)
		b = jStr(b, `,"transport_failure_reason":"`, d.TransportFailure)
		b = jUint(b, `,"wire_bytes_sent":`, d.WireBytesSent)
		b = jUint(b, `,"wire_bytes_received":`, d.WireBytesReceived)
		b = jClose(b, o)
	}
	if r.TLS != (TLS{}) {
		b = append(b, `,"tls":`...)
		b = e.tls(b, &r.TLS)
	}
	b = jMap(b, `,"request_headers":`, r.RequestHeaders, mapSlot(maps, 0))
	b = jMap(b, `,"response_headers":`, r.ResponseHeaders, mapSlot(maps, 1))
	b = jMap(b, `,"response_trailers":`, r.ResponseTrailers, mapSlot(maps, 2))
	b = jMap(b, `,"tags":`, r.Tags, mapSlot(maps, 3))
	b = jMap(b, `,"filter_state":`, r.FilterState, mapSlot(maps, 4))

	b = jStr(b, `,"message":"`, r.Message)
	b = jStr(b, `,"level":"`, r.Level)
	b = jStr(b, `,"stream":"`, r.Stream)
	b = jMap(b, `,"fields":`, r.Fields, mapSlot(maps, 5))
	if r.Truncated {
		b = append(b, `,"truncated":true`...)
	}
	if r.InvalidUTF8 {
		b = append(b, `,"invalid_utf8":true`...)
	}
	return append(b, '}')
}

// mapSlot is maps[i], or nil (no caching) without an Encoder.
func mapSlot(maps *[numMaps]mapKeys, i int) *mapKeys {
	if maps == nil {
		return nil
	}
	return &maps[i]
}

func kindPrefix(k Kind) string {
	switch k {
	case KindHTTP:
		return `{"kind":"http"`
	case KindTCP:
		return `{"kind":"tcp"`
	case KindLog:
		return `{"kind":"log"`
	}
	return `{"kind":"unknown"`
}

func appendNode(b []byte, n *Node) []byte {
	o := len(b)
	b = jStr(b, `,"id":"`, n.ID)
	b = jStr(b, `,"cluster":"`, n.Cluster)
	b = jStr(b, `,"type":"`, n.Type)
	b = jStr(b, `,"ip":"`, n.IP)
	b = jStr(b, `,"pod":"`, n.Pod)
	b = jStr(b, `,"namespace":"`, n.Namespace)
	b = jStr(b, `,"workload":"`, n.Workload)
	b = jStr(b, `,"mesh":"`, n.Mesh)
	b = jStr(b, `,"network":"`, n.Network)
	b = jStr(b, `,"cluster_id":"`, n.ClusterID)
	b = jStr(b, `,"log_name":"`, n.LogName)
	return jClose(b, o)
}

func appendWorkload(b []byte, w *Workload) []byte {
	o := len(b)
	b = jStr(b, `,"workload":"`, w.Name)
	b = jStr(b, `,"namespace":"`, w.Namespace)
	b = jStr(b, `,"canonical_service":"`, w.CanonicalService)
	b = jStr(b, `,"canonical_revision":"`, w.CanonicalRevision)
	b = jStr(b, `,"app":"`, w.App)
	b = jStr(b, `,"version":"`, w.Version)
	b = jStr(b, `,"principal":"`, w.Principal)
	b = jStr(b, `,"cluster":"`, w.Cluster)
	b = jStr(b, `,"pod":"`, w.Pod)
	b = jStr(b, `,"ip":"`, w.IP)
	return jClose(b, o)
}

func appendTLS(b []byte, s *TLS) []byte {
	o := len(b)
	b = jStr(b, `,"version":"`, s.Version)
	b = jUint(b, `,"cipher_suite":`, uint64(s.CipherSuite))
	b = jStr(b, `,"sni":"`, s.SNI)
	b = jStr(b, `,"peer_uri_san":"`, s.PeerURISAN)
	b = jStr(b, `,"peer_subject":"`, s.PeerSubject)
	b = jStr(b, `,"local_uri_san":"`, s.LocalURISAN)
	b = jStr(b, `,"local_subject":"`, s.LocalSubject)
	b = jStr(b, `,"session_id":"`, s.SessionID)
	return jClose(b, o)
}

// appendUpstreamHead writes the upstream members that name the cluster
// (the same for every request to one service), leading commas included.
func appendUpstreamHead(b []byte, u *upstreamHead) []byte {
	b = jStr(b, `,"cluster":"`, u.cluster)
	b = jStr(b, `,"direction":"`, u.direction)
	b = jUint(b, `,"port":`, uint64(u.port))
	b = jStr(b, `,"subset":"`, u.subset)
	b = jStr(b, `,"service":"`, u.service)
	b = jStr(b, `,"service_name":"`, u.serviceName)
	return jStr(b, `,"service_namespace":"`, u.namespace)
}

// jOpen starts a nested object: it writes only the key, and returns where
// the members begin. jClose turns the first member's leading comma into
// the opening brace (or writes "{}" when there was none).
func jOpen(b []byte, key string) ([]byte, int) {
	b = append(b, key...)
	return b, len(b)
}

func jClose(b []byte, open int) []byte {
	if len(b) == open {
		return append(b, '{', '}')
	}
	b[open] = '{'
	return append(b, '}')
}

// jStr writes a string member; key ends with the value's opening quote.
func jStr(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	n := len(b)
	if need := len(key) + len(v) + 1; cap(b)-n < need {
		b = slices.Grow(b, need)
	}
	d := unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), n)
	copyString(d, key)
	d = unsafe.Add(d, len(key))
	if !copyScan(d, v) {
		b = append(b[:n], key...)
		return appendEscaped(b, v)
	}
	*(*byte)(unsafe.Add(d, len(v))) = '"'
	return b[:n+len(key)+len(v)+1]
}

func jUint(b []byte, key string, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, key...)
	return appendUint(b, v)
}

// digitPairs holds "00" to "99".
const digitPairs = "00010203040506070809101112131415161718192021222324252627282930313233343536373839" +
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879" +
	"8081828384858687888990919293949596979899"

// appendUint is strconv.AppendUint(b, v, 10), two digits a step.
func appendUint(b []byte, v uint64) []byte {
	switch {
	case v < 10:
		return append(b, byte('0'+v))
	case v < 100:
		return append(b, digitPairs[v*2], digitPairs[v*2+1])
	case v < 1000:
		lo := v % 100 * 2
		return append(b, byte('0'+v/100), digitPairs[lo], digitPairs[lo+1])
	case v < 10000:
		hi, lo := v/100*2, v%100*2
		return append(b, digitPairs[hi], digitPairs[hi+1], digitPairs[lo], digitPairs[lo+1])
	}
	var buf [20]byte
	i := len(buf)
	for v >= 100 {
		d := v % 100 * 2
		v /= 100
		i -= 2
		buf[i], buf[i+1] = digitPairs[d], digitPairs[d+1]
	}
	if v >= 10 {
		i -= 2
		buf[i], buf[i+1] = digitPairs[v*2], digitPairs[v*2+1]
	} else {
		i--
		buf[i] = byte('0' + v)
	}
	return append(b, buf[i:]...)
}

// dayCache holds the date part of the last time written, so that times
// of the same UTC day cost a copy and a few divisions.
type dayCache struct {
	start int64    // Unix time of the day's first second
	date  [11]byte // "2006-01-02T"
	ok    bool
}

// set makes t's UTC day the cached one; false if t's year is outside
// 0000-9999, which the fixed layout cannot write.
func (d *dayCache) set(t time.Time) bool {
	y, m, day := t.UTC().Date()
	if y < 0 || y > 9999 {
		return false
	}
	sec := t.Unix()
	sod := sec % 86400
	if sod < 0 {
		sod += 86400
	}
	d.start = sec - sod
	d.date = [11]byte{
		byte('0' + y/1000), byte('0' + y/100%10), byte('0' + y/10%10), byte('0' + y%10), '-',
		byte('0' + int(m)/10), byte('0' + int(m)%10), '-',
		byte('0' + day/10), byte('0' + day%10), 'T',
	}
	d.ok = true
	return true
}

// jTime writes t in UTC exactly as t.UTC().AppendFormat(b,
// time.RFC3339Nano) would (trailing zeros of the fraction dropped, no
// fraction for whole seconds); key ends with the opening quote.
func jTime(b []byte, key string, t time.Time, day *dayCache) []byte {
	if t.IsZero() {
		return b
	}
	b = append(b, key...)
	sec := t.Unix()
	if !day.ok || sec < day.start || sec-day.start >= 86400 {
		if !day.set(t) {
			b = t.UTC().AppendFormat(b, time.RFC3339Nano)
			return append(b, '"')
		}
	}
	sod := int(sec - day.start)
	var buf [31]byte // date, "15:04:05", ".999999999", 'Z', '"'
	copy(buf[:11], day.date[:])
	h, m, s := sod/3600, sod/60%60, sod%60
	buf[11], buf[12] = byte('0'+h/10), byte('0'+h%10)
	buf[13] = ':'
	buf[14], buf[15] = byte('0'+m/10), byte('0'+m%10)
	buf[16] = ':'
	buf[17], buf[18] = byte('0'+s/10), byte('0'+s%10)
	n := 19
	if ns := t.Nanosecond(); ns != 0 {
		buf[19] = '.'
		buf[20] = byte('0' + ns/1e8)
		for i := 27; i > 20; i -= 2 {
			d := ns % 100 * 2
			ns /= 100
			buf[i], buf[i+1] = digitPairs[d], digitPairs[d+1]
		}
		n = 29
		for buf[n-1] == '0' {
			n--
		}
	}
	buf[n] = 'Z'
	buf[n+1] = '"'
	return append(b, buf[:n+2]...)
}

// jMillis writes d as milliseconds with up to microsecond precision.
func jMillis(b []byte, key string, d time.Duration) []byte {
	if d == 0 {
		return b
	}
	b = append(b, key...)
	us := d.Microseconds()
	if us < 0 {
		b = append(b, '-')
		us = -us
	}
	b = appendUint(b, uint64(us)/1000)
	if frac := uint64(us) % 1000; frac != 0 {
		// ".ddd" without trailing zeros, in one append.
		digits := [4]byte{'.', byte('0' + frac/100), digitPairs[frac%100*2], digitPairs[frac%100*2+1]}
		n := 4
		for digits[n-1] == '0' {
			n--
		}
		b = append(b, digits[:n]...)
	}
	return b
}

type kv struct{ k, v string }

// jMap writes m with sorted keys so that output is deterministic. With
// keys, the sorted keys of the last map written there (the same header
// names record after record) spare the sort.
func jMap(b []byte, key string, m map[string]string, keys *mapKeys) []byte {
	if len(m) == 0 {
		return b
	}
	if keys != nil {
		var ok bool
		if b, ok = keys.append(b, m); ok {
			return b
		}
	}
	var stack [16]kv
	kvs := stack[:0]
	for k, v := range m {
		kvs = append(kvs, kv{k, v})
	}
	if len(kvs) > 1 {
		slices.SortFunc(kvs, func(x, y kv) int { return strings.Compare(x.k, y.k) })
	}
	b = append(b, key...)
	b = append(b, '{')
	for i, p := range kvs {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, p.k)
		b = append(b, ':')
		b = AppendJSONString(b, p.v)
	}
	if keys != nil {
		keys.remember(key, kvs)
	}
	return append(b, '}')
}

// plainASCII marks the bytes a JSON string may hold as they are.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return
}()

const (
	lanes01 = 0x0101010101010101
	lanes80 = 0x8080808080808080
)

// needsEscape8 reports whether any of s[i:i+8] is a control character,
// '"', '\\' or a non-ASCII byte. It may say yes for eight plain bytes (the
// caller then goes byte by byte), never no for one that needs escaping.
func needsEscape8(s string, i int) bool {
	// One unaligned load; the caller checked i+8 <= len(s).
	return needsEscape64(*(*uint64)(unsafe.Add(unsafe.Pointer(unsafe.StringData(s)), i)))
}

// needsEscape64 is needsEscape8 for eight bytes already loaded.
func needsEscape64(x uint64) bool {
	below20 := (x - lanes01*0x20) & ^x & lanes80
	q := x ^ (lanes01 * '"')
	quote := (q - lanes01) & ^q & lanes80
	bs := x ^ (lanes01 * '\\')
	backslash := (bs - lanes01) & ^bs & lanes80
	return (below20 | quote | backslash | x&lanes80) != 0
}

// escapeBits has the high bit set in each lane of x that holds a control
// character, '"', '\\' or a non-ASCII byte, and only there: the low
// seven bits are tested apart from the high one, so no lane carries into
// the next.
func escapeBits(x uint64) uint64 {
	const lanes7f, lanes60 = 0x7f7f7f7f7f7f7f7f, 0x6060606060606060
	y := x & lanes7f
	ctl := y + lanes60                         // high bit clear iff y < 0x20
	quote := (y ^ (lanes01 * '"')) + lanes7f   // clear iff y == '"'
	bslash := (y ^ (lanes01 * '\\')) + lanes7f // clear iff y == '\\'
	return (^(ctl & quote & bslash) | x) & lanes80
}

func load64(p unsafe.Pointer, i int) uint64 { return *(*uint64)(unsafe.Add(p, i)) }

func load32(p unsafe.Pointer, i int) uint32 { return *(*uint32)(unsafe.Add(p, i)) }

func store64(p unsafe.Pointer, i int, x uint64) { *(*uint64)(unsafe.Add(p, i)) = x }

func store32(p unsafe.Pointer, i int, x uint32) { *(*uint32)(unsafe.Add(p, i)) = x }

// escMasks are escapeBits' constants in a variable: loaded once into
// registers rather than rebuilt in every round of copyScan's loop.
var escMasks = [4]uint64{0x7f7f7f7f7f7f7f7f, 0x6060606060606060, lanes01 * '"', lanes01 * '\\'}

// copyScan copies s to d, which has room for len(s) bytes, and reports
// whether s can be written as it is between quotes (false means it needs
// escaping, or holds non-ASCII bytes). It moves eight bytes at a time,
// the last eight overlapping, so short strings cost no call to memmove.
// It is escapeBits with the final masking taken out of the loop: each
// word's "plain" bits are ANDed, its raw bytes ORed (for the high bits).
func copyScan(d unsafe.Pointer, s string) bool {
	n := len(s)
	p := unsafe.Pointer(unsafe.StringData(s))
	switch {
	case n >= 8:
		m7f, m60, mq, mbs := escMasks[0], escMasks[1], escMasks[2], escMasks[3]
		ok, raw := ^uint64(0), uint64(0)
		for i, last := 0, n-8; i < last; i += 8 {
			x := load64(p, i)
			store64(d, i, x)
			y := x & m7f
			ok &= (y + m60) & ((y ^ mq) + m7f) & ((y ^ mbs) + m7f)
			raw |= x
		}
		x := load64(p, n-8)
		store64(d, n-8, x)
		y := x & m7f
		ok &= (y + m60) & ((y ^ mq) + m7f) & ((y ^ mbs) + m7f)
		raw |= x
		return (^ok|raw)&lanes80 == 0
	case n >= 4:
		lo, hi := load32(p, 0), load32(p, n-4)
		store32(d, 0, lo)
		store32(d, n-4, hi)
		return escapeBits(uint64(lo)|uint64(hi)<<32) == 0
	}
	plain := true
	for i := 0; i < n; i++ {
		c := s[i]
		*(*byte)(unsafe.Add(d, i)) = c
		plain = plain && plainASCII[c]
	}
	return plain
}

// copyString copies s to d, which has room for len(s) bytes, as copyScan
// does but without looking at the bytes.
func copyString(d unsafe.Pointer, s string) {
	n := len(s)
	p := unsafe.Pointer(unsafe.StringData(s))
	switch {
	case n >= 8:
		for i := 0; i < n-8; i += 8 {
			store64(d, i, load64(p, i))
		}
		store64(d, n-8, load64(p, n-8))
	case n >= 4:
		store32(d, 0, load32(p, 0))
		store32(d, n-4, load32(p, n-4))
	default:
		for i := 0; i < n; i++ {
			*(*byte)(unsafe.Add(d, i)) = s[i]
		}
	}
}

// AppendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, as encoding/json does, so the output is always valid JSON.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	return appendStringBody(dst, s)
}

// appendStringBody appends s escaped and the closing quote.
func appendStringBody(dst []byte, s string) []byte {
	n := len(dst)
	if cap(dst)-n < len(s)+1 {
		dst = slices.Grow(dst, len(s)+1)
	}
	d := unsafe.Add(unsafe.Pointer(unsafe.SliceData(dst)), n)
	if !copyScan(d, s) {
		return appendEscaped(dst, s)
	}
	*(*byte)(unsafe.Add(d, len(s))) = '"'
	return dst[:n+len(s)+1]
}

func appendEscaped(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		// Eight bytes at a time while none needs escaping.
		for i+8 <= len(s) && !needsEscape8(s, i) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if plainASCII[c] {
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

// wire mirrors AppendJSON's output for decoding.
type wire struct {
	Kind         string                 `json:"kind"`
	ID           string                 `json:"record_id"`
	Tenant       string                 `json:"tenant"`
	StartTime    time.Time              `json:"start_time"`
	ReceivedAt   time.Time              `json:"received_at"`
	TraceID      string                 `json:"trace_id"`
	SpanID       string                 `json:"span_id"`
	ParentSpanID string                 `json:"parent_span_id"`
	Sampled      *bool                  `json:"sampled"`
	TraceSource  string                 `json:"trace_source"`
	Reporter     string                 `json:"reporter"`
	Node         Node                   `json:"node"`
	Source       Workload               `json:"source"`
	Destination  Workload               `json:"destination"`
	Method       string                 `json:"method"`
	Scheme       string                 `json:"scheme"`
	Authority    string                 `json:"authority"`
	Path         string                 `json:"path"`
	OriginalPath string                 `json:"original_path"`
	Protocol     string                 `json:"protocol"`
	ResponseCode uint32                 `json:"response_code"`
	CodeDetails  string                 `json:"response_code_details"`
	GRPCStatus   string                 `json:"grpc_status"`
	RequestID    string                 `json:"request_id"`
	UserAgent    string                 `json:"user_agent"`
	Referer      string                 `json:"referer"`
	ForwardedFor string                 `json:"forwarded_for"`
	ReqHdrBytes  uint64                 `json:"request_header_bytes"`
	ReqBodyBytes uint64                 `json:"request_body_bytes"`
	RespHdrBytes uint64                 `json:"response_header_bytes"`
	RespBodyByte uint64                 `json:"response_body_bytes"`
	Received     uint64                 `json:"received_bytes"`
	Sent         uint64                 `json:"sent_bytes"`
	DurationMS   json.Number            `json:"duration_ms"`
	Timings      map[string]json.Number `json:"timings"`
	Flags        string                 `json:"response_flags"`
	RouteName    string                 `json:"route_name"`
	TermDetails  string                 `json:"connection_termination_details"`
	SecPolicy    string                 `json:"connection_security_policy"`
	StreamID     string                 `json:"stream_id"`
	Intermediate bool                   `json:"intermediate"`
	SampleRate   float64                `json:"sample_rate"`
	Upstream     Upstream               `json:"upstream"`
	Downstream   Downstream             `json:"downstream"`
	TLS          TLS                    `json:"tls"`
	ReqHeaders   map[string]string      `json:"request_headers"`
	RespHeaders  map[string]string      `json:"response_headers"`
	RespTrailers map[string]string      `json:"response_trailers"`
	Tags         map[string]string      `json:"tags"`
	FilterState  map[string]string      `json:"filter_state"`
	Message      string                 `json:"message"`
	Level        string                 `json:"level"`
	Stream       string                 `json:"stream"`
	Fields       map[string]string      `json:"fields"`
	Truncated    bool                   `json:"truncated"`
	InvalidUTF8  bool                   `json:"invalid_utf8"`
}

// ParseJSON decodes one object written by AppendJSON. It is the inverse
// used by disk queues and tests; it is not on a hot path.
func ParseJSON(data []byte) (*Record, error) {
	var w wire
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	r := &Record{
		ID: w.ID, Tenant: w.Tenant,
		StartTime: w.StartTime, ReceivedAt: w.ReceivedAt,
		Trace:    Trace{TraceID: w.TraceID, SpanID: w.SpanID, ParentSpanID: w.ParentSpanID, Sampled: w.Sampled, Source: w.TraceSource},
		Reporter: w.Reporter, Node: w.Node, Source: w.Source, Destination: w.Destination,
		HTTP: HTTP{
			Method: w.Method, Scheme: w.Scheme, Authority: w.Authority, Path: w.Path, OriginalPath: w.OriginalPath,
			Protocol: w.Protocol, ResponseCode: w.ResponseCode, ResponseCodeDetails: w.CodeDetails, GRPCStatus: w.GRPCStatus,
			RequestID: w.RequestID, UserAgent: w.UserAgent, Referer: w.Referer, ForwardedFor: w.ForwardedFor,
			RequestHeaderBytes: w.ReqHdrBytes, RequestBodyBytes: w.ReqBodyBytes,
			ResponseHeaderBytes: w.RespHdrBytes, ResponseBodyBytes: w.RespBodyByte,
		},
		ReceivedBytes: w.Received, SentBytes: w.Sent,
		ResponseFlags: w.Flags, RouteName: w.RouteName, ConnectionTerminationDetails: w.TermDetails,
		ConnectionSecurityPolicy: w.SecPolicy, StreamID: w.StreamID, Intermediate: w.Intermediate, SampleRate: w.SampleRate,
		Upstream: w.Upstream, Downstream: w.Downstream, TLS: w.TLS,
		RequestHeaders: w.ReqHeaders, ResponseHeaders: w.RespHeaders, ResponseTrailers: w.RespTrailers,
		Tags: w.Tags, FilterState: w.FilterState,
		Message: w.Message, Level: w.Level, Stream: w.Stream, Fields: w.Fields,
		Truncated: w.Truncated, InvalidUTF8: w.InvalidUTF8,
	}
	switch w.Kind {
	case "http":
		r.Kind = KindHTTP
	case "tcp":
		r.Kind = KindTCP
	case "log":
		r.Kind = KindLog
	default:
		return nil, fmt.Errorf("record: unknown kind %q", w.Kind)
	}
	var err error
	if r.Timings.Total, err = parseMillis(w.DurationMS); err != nil {
		return nil, fmt.Errorf("record: duration_ms: %w", err)
	}
	for k, dst := range map[string]*time.Duration{
		"last_rx_byte_ms": &r.Timings.LastRxByte, "first_upstream_tx_byte_ms": &r.Timings.FirstUpstreamTxByte,
		"last_upstream_tx_byte_ms": &r.Timings.LastUpstreamTxByte, "first_upstream_rx_byte_ms": &r.Timings.FirstUpstreamRxByte,
		"last_upstream_rx_byte_ms": &r.Timings.LastUpstreamRxByte, "first_downstream_tx_byte_ms": &r.Timings.FirstDownstreamTxByte,
		"last_downstream_tx_byte_ms": &r.Timings.LastDownstreamTxByte,
	} {
		if *dst, err = parseMillis(w.Timings[k]); err != nil {
			return nil, fmt.Errorf("record: timings.%s: %w", k, err)
		}
	}
	return r, nil
}

func parseMillis(n json.Number) (time.Duration, error) {
	if n == "" {
		return 0, nil
	}
	f, err := n.Float64()
	if err != nil {
		return 0, err
	}
	return time.Duration(math.Round(f*1000)) * time.Microsecond, nil
}
