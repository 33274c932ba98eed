package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unsafe"
)

// The binary form of a Record is what the sink queues spill to disk: every
// field, exactly (nanosecond times and durations, NaN sample rates, nil
// versus empty maps, the Sampled pointer), about half the size of the
// JSON form and an order of magnitude cheaper to read back. It is not an
// interchange format; only meshtrail reads it, and only for records it
// wrote itself (a crash or a restart replays the disk queue).
//
//	frame   := version(1 byte) | size uvarint | fields...
//	string  := length uvarint | bytes
//	uint    := uvarint;  duration := varint (nanoseconds)
//	time    := varint Unix seconds | uvarint nanoseconds   (the instant; read back in UTC)
//	sampled := 1 byte: 0 nil, 1 false, 2 true
//	bool    := 1 byte;   float := 8 bytes little endian (IEEE 754 bits)
//	map     := uvarint (entries+1, 0 for a nil map) | key string | value string ...
//
// size is Size's cached value (0 when it was never measured), so a replayed
// record need not be rendered as JSON to be counted against max_bytes.
// Fields follow in the order of the Record struct (see AppendBinary).
//
// The first byte is a version, never '{': disk queues written by releases
// before this form hold JSON records, and their readers tell the two apart
// by that byte. A change of layout takes the next version number and
// DecodeBinary keeps reading the old ones. Version 2 added the log line
// flags (truncated, invalid_utf8) after fields.
const BinaryVersion = 2

// AppendBinary appends r's binary form to dst.
func AppendBinary(dst []byte, r *Record) []byte {
	b := append(dst, BinaryVersion)
	b = binary.AppendUvarint(b, uint64(r.sizeKnown()))
	b = append(b, byte(r.Kind))
	b = bStr(b, r.ID)
	b = bStr(b, r.Tenant)
	b = bTime(b, r.StartTime)
	b = bTime(b, r.ReceivedAt)

	n := &r.Node
	b = bStr(b, n.ID)
	b = bStr(b, n.Cluster)
	b = bStr(b, n.Type)
	b = bStr(b, n.IP)
	b = bStr(b, n.Pod)
	b = bStr(b, n.Namespace)
	b = bStr(b, n.Workload)
	b = bStr(b, n.Mesh)
	b = bStr(b, n.Network)
	b = bStr(b, n.ClusterID)
	b = bStr(b, n.LogName)

	b = bStr(b, r.Reporter)
	b = bWorkload(b, &r.Source)
	b = bWorkload(b, &r.Destination)

	t := &r.Trace
	b = bStr(b, t.TraceID)
	b = bStr(b, t.SpanID)
	b = bStr(b, t.ParentSpanID)
	switch {
	case t.Sampled == nil:
		b = append(b, 0)
	case *t.Sampled:
		b = append(b, 2)
	default:
		b = append(b, 1)
	}
	b = bStr(b, t.Source)

	h := &r.HTTP
	b = bStr(b, h.Method)
	b = bStr(b, h.Scheme)
	b = bStr(b, h.Authority)
	b = bStr(b, h.Path)
	b = bStr(b, h.OriginalPath)
	b = bStr(b, h.Protocol)
	b = binary.AppendUvarint(b, uint64(h.ResponseCode))
	b = bStr(b, h.ResponseCodeDetails)
	b = bStr(b, h.GRPCStatus)
	b = bStr(b, h.RequestID)
	b = bStr(b, h.UserAgent)
	b = bStr(b, h.Referer)
	b = bStr(b, h.ForwardedFor)
	b = binary.AppendUvarint(b, h.RequestHeaderBytes)
	b = binary.AppendUvarint(b, h.RequestBodyBytes)
	b = binary.AppendUvarint(b, h.ResponseHeaderBytes)
	b = binary.AppendUvarint(b, h.ResponseBodyBytes)

	tm := &r.Timings
	b = binary.AppendVarint(b, int64(tm.LastRxByte))
	b = binary.AppendVarint(b, int64(tm.FirstUpstreamTxByte))
	b = binary.AppendVarint(b, int64(tm.LastUpstreamTxByte))
	b = binary.AppendVarint(b, int64(tm.FirstUpstreamRxByte))
	b = binary.AppendVarint(b, int64(tm.LastUpstreamRxByte))
	b = binary.AppendVarint(b, int64(tm.FirstDownstreamTxByte))
	b = binary.AppendVarint(b, int64(tm.LastDownstreamTxByte))
	b = binary.AppendVarint(b, int64(tm.Total))

	u := &r.Upstream
	b = bStr(b, u.Cluster)
	b = bStr(b, u.Direction)
	b = binary.AppendUvarint(b, uint64(u.Port))
	b = bStr(b, u.Subset)
	b = bStr(b, u.Service)
	b = bStr(b, u.ServiceName)
	b = bStr(b, u.ServiceNamespace)
	b = bStr(b, u.Host)
	b = bStr(b, u.LocalAddress)
	b = bStr(b, u.TransportFailure)
	b = binary.AppendUvarint(b, uint64(u.RequestAttemptCount))
	b = binary.AppendUvarint(b, u.WireBytesSent)
	b = binary.AppendUvarint(b, u.WireBytesReceived)

	d := &r.Downstream
	b = bStr(b, d.RemoteAddress)
	b = bStr(b, d.LocalAddress)
	b = bStr(b, d.DirectRemoteAddress)
	b = bStr(b, d.TransportFailure)
	b = binary.AppendUvarint(b, d.WireBytesSent)
	b = binary.AppendUvarint(b, d.WireBytesReceived)

	s := &r.TLS
	b = bStr(b, s.Version)
	b = binary.AppendUvarint(b, uint64(s.CipherSuite))
	b = bStr(b, s.SNI)
	b = bStr(b, s.PeerURISAN)
	b = bStr(b, s.PeerSubject)
	b = bStr(b, s.LocalURISAN)
	b = bStr(b, s.LocalSubject)
	b = bStr(b, s.SessionID)

	b = binary.AppendUvarint(b, r.ReceivedBytes)
	b = binary.AppendUvarint(b, r.SentBytes)
	b = bStr(b, r.ResponseFlags)
	b = bStr(b, r.RouteName)
	b = bStr(b, r.ConnectionTerminationDetails)
	b = bStr(b, r.ConnectionSecurityPolicy)
	b = bStr(b, r.StreamID)
	if r.Intermediate {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.SampleRate))

	b = bMap(b, r.RequestHeaders)
	b = bMap(b, r.ResponseHeaders)
	b = bMap(b, r.ResponseTrailers)
	b = bMap(b, r.Tags)
	b = bMap(b, r.FilterState)

	b = bStr(b, r.Message)
	b = bStr(b, r.Level)
	b = bStr(b, r.Stream)
	b = bMap(b, r.Fields)
	var flags byte
	if r.Truncated {
		flags |= flagTruncated
	}
	if r.InvalidUTF8 {
		flags |= flagInvalidUTF8
	}
	return append(b, flags)
}

// The log line flags, one byte from version 2 on.
const (
	flagTruncated   = 1 << 0
	flagInvalidUTF8 = 1 << 1
)

// knownVersion reports whether this build reads frames of version v.
func knownVersion(v byte) bool { return v == 1 || v == BinaryVersion }

func bStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func bTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

func bWorkload(b []byte, w *Workload) []byte {
	b = bStr(b, w.Name)
	b = bStr(b, w.Namespace)
	b = bStr(b, w.CanonicalService)
	b = bStr(b, w.CanonicalRevision)
	b = bStr(b, w.App)
	b = bStr(b, w.Version)
	b = bStr(b, w.Principal)
	b = bStr(b, w.Cluster)
	b = bStr(b, w.Pod)
	return bStr(b, w.IP)
}

// bMap writes m's entries in map order: the frame is read back into a map,
// so the order carries nothing and sorting would only cost.
func bMap(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(m))+1)
	for k, v := range m {
		b = bStr(b, k)
		b = bStr(b, v)
	}
	return b
}

// errShort is the cause of every truncated-frame error.
var errShort = errors.New("frame ends early")

// DecodeBinary reads one frame written by AppendBinary (of any version
// this build knows). The record's strings share one copy of b, made once,
// so b may be reused afterwards. Times come back in UTC.
//
// Hostile input cannot make it allocate beyond that one copy of b plus the
// record and the map entries actually present: every length is checked
// against the bytes left before it is used, and map sizes are never taken
// from the frame as allocation hints.
func DecodeBinary(b []byte) (*Record, error) {
	if len(b) == 0 {
		return nil, errors.New("record: binary frame is empty")
	}
	if !knownVersion(b[0]) {
		return nil, fmt.Errorf("record: binary frame version %d is unknown (this build reads 1 to %d)", b[0], BinaryVersion)
	}
	r := new(Record)
	if err := decodeInto(r, b, string(b)); err != nil {
		return nil, err
	}
	return r, nil
}

// DecodeBinaryOwned is DecodeBinary for a frame the caller hands over:
// the record's strings point into b itself instead of a copy, so b must
// never be modified again (a disk queue's read buffer, allocated per
// message, is such a frame). It saves a copy and an allocation per record.
func DecodeBinaryOwned(b []byte) (*Record, error) {
	if len(b) == 0 || !knownVersion(b[0]) {
		return DecodeBinary(b) // the same errors
	}
	r := new(Record)
	if err := decodeInto(r, b, unsafe.String(&b[0], len(b))); err != nil {
		return nil, err
	}
	return r, nil
}

// decodeInto fills r from the frame b, whose copy s the strings slice.
func decodeInto(r *Record, b []byte, s string) error {
	d := decoder{b: b, s: s, i: 1}
	size := d.uint("size")
	if size > math.MaxInt32 {
		return fmt.Errorf("record: binary frame: size %d is not a record's", size)
	}
	r.size = int64(size)
	r.Kind = Kind(d.byte("kind"))
	r.ID = d.str("id")
	r.Tenant = d.str("tenant")
	r.StartTime = d.time("start_time")
	r.ReceivedAt = d.time("received_at")

	n := &r.Node
	d.strs(nodeFields, &n.ID, &n.Cluster, &n.Type, &n.IP, &n.Pod, &n.Namespace, &n.Workload, &n.Mesh,
		&n.Network, &n.ClusterID, &n.LogName)

	r.Reporter = d.str("reporter")
	d.workload(&r.Source, 0)
	d.workload(&r.Destination, 1)

	t := &r.Trace
	t.TraceID = d.str("trace_id")
	t.SpanID = d.str("span_id")
	t.ParentSpanID = d.str("parent_span_id")
	switch v := d.byte("sampled"); v {
	case 0:
	case 1, 2:
		sampled := v == 2
		t.Sampled = &sampled
	default:
		d.fail("sampled", fmt.Errorf("value %d is not 0, 1 or 2", v))
	}
	t.Source = d.str("trace_source")

	h := &r.HTTP
	h.Method = d.str("method")
	h.Scheme = d.str("scheme")
	h.Authority = d.str("authority")
	h.Path = d.str("path")
	h.OriginalPath = d.str("original_path")
	h.Protocol = d.str("protocol")
	h.ResponseCode = d.uint32("response_code")
	h.ResponseCodeDetails = d.str("response_code_details")
	h.GRPCStatus = d.str("grpc_status")
	h.RequestID = d.str("request_id")
	h.UserAgent = d.str("user_agent")
	h.Referer = d.str("referer")
	h.ForwardedFor = d.str("forwarded_for")
	h.RequestHeaderBytes = d.uint("request_header_bytes")
	h.RequestBodyBytes = d.uint("request_body_bytes")
	h.ResponseHeaderBytes = d.uint("response_header_bytes")
	h.ResponseBodyBytes = d.uint("response_body_bytes")

	tm := &r.Timings
	tm.LastRxByte = d.duration("timings")
	tm.FirstUpstreamTxByte = d.duration("timings")
	tm.LastUpstreamTxByte = d.duration("timings")
	tm.FirstUpstreamRxByte = d.duration("timings")
	tm.LastUpstreamRxByte = d.duration("timings")
	tm.FirstDownstreamTxByte = d.duration("timings")
	tm.LastDownstreamTxByte = d.duration("timings")
	tm.Total = d.duration("duration")

	u := &r.Upstream
	u.Cluster = d.str("upstream.cluster")
	u.Direction = d.str("upstream.direction")
	u.Port = d.uint32("upstream.port")
	u.Subset = d.str("upstream.subset")
	u.Service = d.str("upstream.service")
	u.ServiceName = d.str("upstream.service_name")
	u.ServiceNamespace = d.str("upstream.service_namespace")
	u.Host = d.str("upstream.host")
	u.LocalAddress = d.str("upstream.local_address")
	u.TransportFailure = d.str("upstream.transport_failure_reason")
	u.RequestAttemptCount = d.uint32("upstream.request_attempt_count")
	u.WireBytesSent = d.uint("upstream.wire_bytes_sent")
	u.WireBytesReceived = d.uint("upstream.wire_bytes_received")

	dn := &r.Downstream
	dn.RemoteAddress = d.str("downstream.remote_address")
	dn.LocalAddress = d.str("downstream.local_address")
	dn.DirectRemoteAddress = d.str("downstream.direct_remote_address")
	dn.TransportFailure = d.str("downstream.transport_failure_reason")
	dn.WireBytesSent = d.uint("downstream.wire_bytes_sent")
	dn.WireBytesReceived = d.uint("downstream.wire_bytes_received")

	tl := &r.TLS
	tl.Version = d.str("tls.version")
	tl.CipherSuite = d.uint32("tls.cipher_suite")
	tl.SNI = d.str("tls.sni")
	tl.PeerURISAN = d.str("tls.peer_uri_san")
	tl.PeerSubject = d.str("tls.peer_subject")
	tl.LocalURISAN = d.str("tls.local_uri_san")
	tl.LocalSubject = d.str("tls.local_subject")
	tl.SessionID = d.str("tls.session_id")

	r.ReceivedBytes = d.uint("received_bytes")
	r.SentBytes = d.uint("sent_bytes")
	r.ResponseFlags = d.str("response_flags")
	r.RouteName = d.str("route_name")
	r.ConnectionTerminationDetails = d.str("connection_termination_details")
	r.ConnectionSecurityPolicy = d.str("connection_security_policy")
	r.StreamID = d.str("stream_id")
	switch v := d.byte("intermediate"); v {
	case 0:
	case 1:
		r.Intermediate = true
	default:
		d.fail("intermediate", fmt.Errorf("value %d is not 0 or 1", v))
	}
	r.SampleRate = d.float("sample_rate")

	r.RequestHeaders = d.strMap("request_headers")
	r.ResponseHeaders = d.strMap("response_headers")
	r.ResponseTrailers = d.strMap("response_trailers")
	r.Tags = d.strMap("tags")
	r.FilterState = d.strMap("filter_state")

	r.Message = d.str("message")
	r.Level = d.str("level")
	r.Stream = d.str("stream")
	r.Fields = d.strMap("fields")
	if b[0] >= 2 {
		switch f := d.byte("flags"); {
		case f&^(flagTruncated|flagInvalidUTF8) != 0:
			d.fail("flags", fmt.Errorf("unknown bits in %#x", f))
		default:
			r.Truncated, r.InvalidUTF8 = f&flagTruncated != 0, f&flagInvalidUTF8 != 0
		}
	}

	if d.err != nil {
		return d.err
	}
	if d.i != len(b) {
		return fmt.Errorf("record: binary frame: %d bytes after the last field", len(b)-d.i)
	}
	return nil
}

// decoder reads a frame: b for the numbers, s (one copy of b) for the
// strings, which are substrings of it. After the first error every read
// returns a zero value, so DecodeBinary checks once at the end.
type decoder struct {
	b   []byte
	s   string
	i   int
	err error
}

func (d *decoder) fail(field string, err error) {
	if d.err == nil {
		d.err = fmt.Errorf("record: binary frame: %s at byte %d: %w", field, d.i, err)
	}
	d.i = len(d.b) // every later read fails fast
}

// uint, str and byte have a fast path small enough to inline (a field
// of a frame is one of about a hundred, most a byte or two long); the
// rest is in the slow functions.
func (d *decoder) uint(field string) uint64 {
	if i := d.i; i < len(d.b) && d.b[i] < 0x80 {
		d.i = i + 1
		return uint64(d.b[i])
	}
	return d.uintSlow(field)
}

func (d *decoder) uintSlow(field string) uint64 {
	v, n := binary.Uvarint(d.b[d.i:])
	if n <= 0 {
		if n == 0 {
			d.fail(field, errShort)
		} else {
			d.fail(field, errors.New("varint overflows 64 bits"))
		}
		return 0
	}
	d.i += n
	return v
}

func (d *decoder) uint32(field string) uint32 {
	v := d.uint(field)
	if v > math.MaxUint32 {
		d.fail(field, fmt.Errorf("%d does not fit 32 bits", v))
		return 0
	}
	return uint32(v)
}

func (d *decoder) varint(field string) int64 {
	v, n := binary.Varint(d.b[d.i:])
	if n <= 0 {
		if n == 0 {
			d.fail(field, errShort)
		} else {
			d.fail(field, errors.New("varint overflows 64 bits"))
		}
		return 0
	}
	d.i += n
	return v
}

func (d *decoder) duration(field string) time.Duration { return time.Duration(d.varint(field)) }

func (d *decoder) byte(field string) byte {
	if i := d.i; i < len(d.b) {
		d.i = i + 1
		return d.b[i]
	}
	d.fail(field, errShort)
	return 0
}

func (d *decoder) float(field string) float64 {
	if len(d.b)-d.i < 8 {
		d.fail(field, errShort)
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b[d.i:]))
	d.i += 8
	return v
}

func (d *decoder) time(field string) time.Time {
	sec := d.varint(field)
	nsec := d.uint(field)
	if d.err != nil {
		return time.Time{}
	}
	if nsec >= 1e9 {
		d.fail(field, fmt.Errorf("nanoseconds %d out of range", nsec))
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func (d *decoder) str(field string) string {
	if i := d.i; i < len(d.b) {
		if n := int(d.b[i]); n < 0x80 && n < len(d.b)-i {
			d.i = i + 1 + n
			return d.s[i+1 : i+1+n]
		}
	}
	return d.strSlow(field)
}

func (d *decoder) strSlow(field string) string {
	n := d.uint(field)
	if n == 0 {
		return ""
	}
	if n > uint64(len(d.b)-d.i) {
		d.fail(field, fmt.Errorf("length %d exceeds the %d bytes left", n, len(d.b)-d.i))
		return ""
	}
	v := d.s[d.i : d.i+int(n)]
	d.i += int(n)
	return v
}

// The names of the fields read in a row by strs, for its errors.
var (
	nodeFields = []string{"node.id", "node.cluster", "node.type", "node.ip", "node.pod", "node.namespace",
		"node.workload", "node.mesh", "node.network", "node.cluster_id", "node.log_name"}
	workloadFields = func() (f [2][]string) {
		for i, side := range []string{"source", "destination"} {
			for _, name := range []string{"workload", "namespace", "canonical_service", "canonical_revision", "app",
				"version", "principal", "cluster", "pod", "ip"} {
				f[i] = append(f[i], side+"."+name)
			}
		}
		return f
	}()
)

// strs reads len(dst) strings in a row: one call and a tight loop instead
// of a call per field (str does not fit the inliner's budget).
func (d *decoder) strs(names []string, dst ...*string) {
	b, i := d.b, d.i
	for k, p := range dst {
		if i < len(b) {
			if n := int(b[i]); n < 0x80 && n < len(b)-i {
				*p = d.s[i+1 : i+1+n]
				i += 1 + n
				continue
			}
		}
		d.i = i
		*p = d.strSlow(names[k])
		i = d.i
	}
	d.i = i
}

func (d *decoder) workload(w *Workload, side int) {
	d.strs(workloadFields[side], &w.Name, &w.Namespace, &w.CanonicalService, &w.CanonicalRevision, &w.App,
		&w.Version, &w.Principal, &w.Cluster, &w.Pod, &w.IP)
}

// mapHint caps the size hint given to make: a frame's entry count is not
// trusted for allocation, the entries actually read grow the map.
const mapHint = 8

func (d *decoder) strMap(field string) map[string]string {
	n := d.uint(field)
	if n == 0 {
		return nil
	}
	n--
	// Each entry takes at least two bytes (two empty strings).
	if n > uint64(len(d.b)-d.i)/2 {
		d.fail(field, fmt.Errorf("%d entries cannot fit the %d bytes left", n, len(d.b)-d.i))
		return nil
	}
	m := make(map[string]string, min(int(n), mapHint))
	for ; n > 0 && d.err == nil; n-- {
		k := d.str(field)
		m[k] = d.str(field)
	}
	return m
}
