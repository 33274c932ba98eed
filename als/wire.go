package als

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshtrail/meshtrail/internal/record"
)

// The receiver decodes StreamAccessLogsMessage from the wire itself, straight
// into records, instead of building go-control-plane's generated messages
// and converting them: generic protobuf decoding cost more than everything
// else per entry together (reflection and about 75 allocations an entry).
// Field numbers are those of envoy/data/accesslog/v3/accesslog.proto and
// envoy/service/accesslog/v3/als.proto; reference_test.go holds the
// converter over the generated types that this is checked against.

// wireDecoder decodes one stream's messages. It belongs to the stream's
// goroutine.
type wireDecoder struct {
	conv *converter
	// intern holds recently seen short strings (see str).
	intern *[internSlots]string
	// peers remembers decoded peer metadata (see peerCache).
	peers peerCache
	// arena holds the current entry's unique strings (see text);
	// arenaHint sizes the next one, arenaMissed counts what did not fit.
	arena       []byte
	arenaHint   int
	arenaMissed int
	// addrs remembers rendered stable addresses (see address).
	addrs [addrCacheSize]addrCacheEntry
	// repaired counts strings that held invalid UTF-8 (Envoy does not
	// validate it), replaced by U+FFFD rather than failing the message.
	repaired int
}

var errTruncated = errors.New("truncated or malformed protobuf")

func newWireDecoder(conv *converter) *wireDecoder {
	return &wireDecoder{conv: conv, intern: new([internSlots]string), arenaHint: 512}
}

// wireMessage is one StreamAccessLogsMessage, its structure checked: the
// identifier and how many entries of each kind it holds. Its entries are
// walked by each, without collecting them: a 4 MiB message can hold half
// a million 8-byte entries, and nothing per entry may be held for the
// whole message.
type wireMessage struct {
	raw        []byte
	identifier []byte // serialized Identifier, nil if absent
	http, tcp  int    // entries of each kind
}

// splitMessage checks the message's structure down to its entries. A
// structural error here is a malformed message and nothing of it is
// used; an entry's own errors are found when it is decoded, so one bad
// entry costs only itself.
func splitMessage(b []byte, m *wireMessage) error {
	*m = wireMessage{raw: b}
	off := 0
	for off < len(b) {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return fmt.Errorf("StreamAccessLogsMessage: bad tag at byte %d: %w", off, errTruncated)
		}
		off += n
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b[off:])
			if n < 0 {
				return fmt.Errorf("StreamAccessLogsMessage: field %d at byte %d: %w", num, off, errTruncated)
			}
			off += n
			continue
		}
		v, n := protowire.ConsumeBytes(b[off:])
		if n < 0 {
			return fmt.Errorf("StreamAccessLogsMessage: field %d at byte %d: %w", num, off, errTruncated)
		}
		switch num {
		case 1:
			m.identifier = v
		case 2, 3: // http_logs, tcp_logs: repeated entries in field 1
			count := 0
			if err := eachBytes(v, 1, func([]byte) { count++ }); err != nil {
				return fmt.Errorf("StreamAccessLogsMessage: log entries at byte %d: %w", off, err)
			}
			if num == 2 {
				m.http += count
			} else {
				m.tcp += count
			}
		}
		off += n
	}
	return nil
}

// each calls fn with every entry of the message in order, tcp telling its
// kind, until fn returns false. The structure was checked by splitMessage.
func (m *wireMessage) each(fn func(tcp bool, entry []byte) bool) {
	more := true
	_ = eachField(m.raw, func(num protowire.Number, v []byte) error {
		if !more || (num != 2 && num != 3) {
			return nil
		}
		return eachBytes(v, 1, func(e []byte) {
			if more {
				more = fn(num == 3, e)
			}
		})
	})
}

// eachBytes calls fn with every length-delimited field number want of b.
func eachBytes(b []byte, want protowire.Number, fn func([]byte)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errTruncated
		}
		b = b[n:]
		if num == want && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return errTruncated
			}
			fn(v)
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return errTruncated
		}
		b = b[m:]
	}
	return nil
}

// shape says which fields of a message are length-delimited (strings,
// bytes, messages, maps) and which are fixed64 (doubles); all others are
// varints. A known field that arrives with another wire type is skipped, as
// protobuf treats it as unknown.
type shape struct{ bytes, fixed64 uint64 }

func bitsOf(nums ...int) uint64 {
	var m uint64
	for _, n := range nums {
		m |= 1 << n
	}
	return m
}

// Shapes of the messages the decoder reads (accesslog.proto, base.proto,
// address.proto, wrappers, timestamp, duration).
var (
	shapeHTTPEntry = shape{bytes: bitsOf(1, 3, 4)}
	shapeTCPEntry  = shape{bytes: bitsOf(1, 2)}
	shapeConnProps = shape{}
	shapeCommon    = shape{bytes: bitsOf(2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 25, 26, 28), fixed64: bitsOf(1)}
	shapeFlags     = shape{bytes: bitsOf(13)}
	shapeRequest   = shape{bytes: bitsOf(2, 3, 4, 5, 6, 7, 8, 9, 10, 13)}
	shapeResponse  = shape{bytes: bitsOf(1, 4, 5, 6)}
	shapeTLS       = shape{bytes: bitsOf(2, 3, 4, 5, 6, 7)}
	shapeCert      = shape{bytes: bitsOf(1, 2, 3)}
	shapeSAN       = shape{bytes: bitsOf(1, 2)}
	shapePipe      = shape{bytes: bitsOf(1)}
	shapeInternal  = shape{bytes: bitsOf(1, 2)}
	shapeMapEntry  = shape{bytes: bitsOf(1, 2)}
	shapeAny       = shape{bytes: bitsOf(1, 2)}
)

// fields iterates a message's fields: fn gets the number, wire type, the
// varint/fixed value (for scalar types) and the bytes (for length-delimited
// ones). Fields whose wire type does not match sh are skipped.
func fields(b []byte, sh shape, fn func(num protowire.Number, typ protowire.Type, u uint64, v []byte) error) error {
	// Walked by index, one-byte tags (fields 1-15), varints and lengths
	// (values under 128 bytes) read inline: this loop runs for every field
	// of every entry.
	for i := 0; i < len(b); {
		var num protowire.Number
		var typ protowire.Type
		if c := b[i]; c >= 8 && c < 0x80 {
			num, typ = protowire.Number(c>>3), protowire.Type(c&7)
			i++
		} else if c >= 0x80 && i+1 < len(b) && b[i+1] < 0x80 && b[i+1] != 0 { // fields 16-2047
			tag := uint64(c&0x7f) | uint64(b[i+1])<<7
			num, typ = protowire.Number(tag>>3), protowire.Type(tag&7)
			i += 2
		} else {
			var n int
			if num, typ, n = protowire.ConsumeTag(b[i:]); n < 0 {
				return errTruncated
			}
			i += n
		}
		var u uint64
		var v []byte
		switch typ {
		case protowire.BytesType:
			if i < len(b) && b[i] < 0x80 {
				if end := i + 1 + int(b[i]); end <= len(b) {
					v, i = b[i+1:end:end], end
					break
				}
				return errTruncated
			}
			var n int
			if v, n = protowire.ConsumeBytes(b[i:]); n < 0 {
				return errTruncated
			}
			i += n
		case protowire.VarintType:
			if i < len(b) && b[i] < 0x80 {
				u = uint64(b[i])
				i++
				break
			}
			var n int
			if u, n = protowire.ConsumeVarint(b[i:]); n < 0 {
				return errTruncated
			}
			i += n
		default:
			var n int
			switch typ {
			case protowire.Fixed64Type:
				u, n = protowire.ConsumeFixed64(b[i:])
			case protowire.Fixed32Type:
				var u32 uint32
				u32, n = protowire.ConsumeFixed32(b[i:])
				u = uint64(u32)
			default:
				n = protowire.ConsumeFieldValue(num, typ, b[i:])
			}
			if n < 0 {
				return errTruncated
			}
			i += n
		}
		want := protowire.VarintType
		if num < 64 {
			switch {
			case sh.bytes&(1<<num) != 0:
				want = protowire.BytesType
			case sh.fixed64&(1<<num) != 0:
				want = protowire.Fixed64Type
			}
		}
		if typ != want {
			continue
		}
		if err := fn(num, typ, u, v); err != nil {
			return err
		}
	}
	return nil
}

// str returns b as a valid UTF-8 string, interned: the strings that repeat
// across one Envoy's entries (cluster names, authorities, header names,
// user agents) are allocated once per stream, not once per entry.
func (d *wireDecoder) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > 256 {
		return d.fresh(b)
	}
	slot := &d.intern[internSlot(b)]
	if *slot == string(b) { // compared without allocating
		return *slot
	}
	s := d.valid(b) // its own allocation: the table outlives the entry
	*slot = s
	return s
}

// internSlots is the size of a stream's intern table: small enough that
// thousands of streams cost little memory (16 KiB each), large enough for
// the distinct short strings one Envoy repeats.
const internSlots = 1024

// internSlot hashes the length and the first and last eight bytes: cheaper
// than hashing the whole string, and different values of one field almost
// always differ there. A collision only costs an allocation.
func internSlot(b []byte) uint32 {
	h := headTailHash(b)
	h ^= h >> 29
	return uint32(h) & (internSlots - 1)
}

// headTailHash mixes b's length and its first and last eight bytes (the
// intern table's and the peer cache's hash; callers verify equality).
func headTailHash(b []byte) uint64 {
	h := uint64(len(b)) * 0x9e3779b97f4a7c15
	var head, tail uint64
	if len(b) >= 8 {
		head = binary.LittleEndian.Uint64(b)
		tail = binary.LittleEndian.Uint64(b[len(b)-8:])
	} else {
		for i, c := range b {
			head |= uint64(c) << (8 * i)
		}
	}
	h ^= head * 0xff51afd7ed558ccd
	h ^= tail * 0xc4ceb9fe1a85ec53
	return h
}

// valid returns b as a new valid UTF-8 string.
func (d *wireDecoder) valid(b []byte) string {
	if !utf8.Valid(b) {
		return d.repair(b)
	}
	return string(b)
}

// fresh returns b as a valid UTF-8 string for a value that rarely repeats
// (ids, paths, header values), stored in the entry's arena.
func (d *wireDecoder) fresh(b []byte) string {
	if !utf8.Valid(b) {
		return d.repair(b)
	}
	return d.text(b)
}

// repair replaces b's invalid UTF-8 (Envoy does not validate it) by U+FFFD.
func (d *wireDecoder) repair(b []byte) string {
	d.repaired++
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// text returns b as a string stored in the current entry's arena: one
// allocation holds an entry's unique strings (a dozen: ids, paths, header
// values, ephemeral addresses) instead of one each. Only strings of this
// entry's record go there, so an arena lives exactly as long as its
// record; interned strings never do (they outlive it).
func (d *wireDecoder) text(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if d.arena == nil {
		d.arena = make([]byte, 0, d.arenaHint)
	}
	if len(d.arena)+len(b) > cap(d.arena) {
		d.arenaMissed += len(b)
		return string(b)
	}
	start := len(d.arena)
	d.arena = append(d.arena, b...)
	return unsafe.String(&d.arena[start], len(b))
}

// Arena sizes, adapted per stream to what its entries need.
const (
	minArena = 128
	maxArena = 4 << 10
)

// endEntry closes the entry's arena (nothing is appended to it again) and
// sizes the next one from what this entry used.
func (d *wireDecoder) endEntry() {
	if need := len(d.arena) + d.arenaMissed; need > 0 {
		d.arenaHint = min(max((d.arenaHint*3+need+need/4)/4, minArena), maxArena)
	}
	d.arena, d.arenaMissed = nil, 0
}

// http decodes one HTTPAccessLogEntry.
func (d *wireDecoder) http(p *proxy, b []byte, now time.Time, notes *entryNotes) (*record.Record, error) {
	defer d.endEntry()
	r := &record.Record{Kind: record.KindHTTP, ReceivedAt: now, Node: p.node}
	var haveCommon, haveReq, haveResp bool
	var reqHeaders map[string]string
	err := fields(b, shapeHTTPEntry, func(num protowire.Number, typ protowire.Type, u uint64, v []byte) error {
		switch num {
		case 1:
			haveCommon = true
			return d.common(p, v, r, notes)
		case 2:
			r.HTTP.Protocol = protocolName(int32(u))
		case 3:
			haveReq = true
			return d.request(v, r, &reqHeaders)
		case 4:
			haveResp = true
			return d.response(v, r)
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, &errEntry{"malformed_entry", "HTTP entry: " + err.Error()}
	case !haveCommon:
		return nil, &errEntry{reasonMissingCommon, "HTTP entry without common_properties"}
	case !haveReq:
		return nil, &errEntry{reasonMissingRequest, "HTTP entry without request properties"}
	case !haveResp:
		return nil, &errEntry{reasonMissingResponse, "HTTP entry without response properties"}
	}
	d.conv.finish(p, r, reqHeaders, notes)
	return r, nil
}

// tcp decodes one TCPAccessLogEntry.
func (d *wireDecoder) tcp(p *proxy, b []byte, now time.Time, notes *entryNotes) (*record.Record, error) {
	defer d.endEntry()
	r := &record.Record{Kind: record.KindTCP, ReceivedAt: now, Node: p.node}
	haveCommon := false
	err := fields(b, shapeTCPEntry, func(num protowire.Number, typ protowire.Type, u uint64, v []byte) error {
		switch num {
		case 1:
			haveCommon = true
			return d.common(p, v, r, notes)
		case 2:
			return fields(v, shapeConnProps, func(num protowire.Number, _ protowire.Type, u uint64, _ []byte) error {
				switch num {
				case 1:
					r.ReceivedBytes = u
				case 2:
					r.SentBytes = u
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, &errEntry{"malformed_entry", "TCP entry: " + err.Error()}
	}
	if !haveCommon {
		return nil, &errEntry{reasonMissingCommon, "TCP entry without common_properties"}
	}
	d.conv.finish(p, r, nil, notes)
	return r, nil
}

// common decodes AccessLogCommon.
func (d *wireDecoder) common(p *proxy, b []byte, r *record.Record, notes *entryNotes) error {
	var flags flagMask
	var ds decodedState
	t := &r.Timings
	err := fields(b, shapeCommon, func(num protowire.Number, typ protowire.Type, u uint64, v []byte) error {
		var err error
		switch num {
		case 1:
			r.SampleRate = math.Float64frombits(u)
		case 2:
			r.Downstream.RemoteAddress, err = d.address(v, false)
		case 3:
			r.Downstream.LocalAddress, err = d.address(v, true)
		case 4:
			err = d.tls(v, &r.TLS)
		case 5:
			var sec, nanos int64
			sec, nanos, err = secondsNanos(v)
			r.StartTime = time.Unix(sec, nanos).UTC()
		case 6:
			t.LastRxByte, err = duration(v)
		case 7:
			t.FirstUpstreamTxByte, err = duration(v)
		case 8:
			t.LastUpstreamTxByte, err = duration(v)
		case 9:
			t.FirstUpstreamRxByte, err = duration(v)
		case 10:
			t.LastUpstreamRxByte, err = duration(v)
		case 11:
			t.FirstDownstreamTxByte, err = duration(v)
		case 12:
			t.LastDownstreamTxByte, err = duration(v)
		case 13:
			r.Upstream.Host, err = d.address(v, true)
		case 14:
			r.Upstream.LocalAddress, err = d.address(v, false)
		case 15:
			parseCluster(d.str(v), &r.Upstream)
		case 16:
			err = fields(v, shapeFlags, func(num protowire.Number, typ protowire.Type, u uint64, _ []byte) error {
				// bools, and field 13 (unauthorized_details), a message
				// Envoy sets only for UnauthorizedExternalService.
				if num >= 1 && num <= maxFlagField && (u != 0 || typ == protowire.BytesType) {
					flags |= 1 << num
				}
				return nil
			})
		case 18:
			r.Upstream.TransportFailure = d.str(v)
		case 19:
			r.RouteName = d.str(v)
		case 20:
			r.Downstream.DirectRemoteAddress, err = d.address(v, false)
		case 21:
			err = d.filterState(p, v, &ds, notes)
		case 22:
			if r.Tags == nil {
				r.Tags = make(map[string]string, 4)
			}
			err = d.mapEntry(v, r.Tags)
		case 23:
			t.Total, err = duration(v)
		case 24:
			r.Upstream.RequestAttemptCount = uint32(u)
		case 25:
			r.ConnectionTerminationDetails = d.str(v)
		case 26:
			r.StreamID = d.fresh(v)
		case 27: // intermediate_log_entry: deprecated, older Envoys still send it
			r.Intermediate = r.Intermediate || u != 0
		case 33:
			r.Intermediate = r.Intermediate || intermediateType(u)
			notes.logType = u
		case 28:
			r.Downstream.TransportFailure = d.str(v)
		case 29:
			r.Downstream.WireBytesSent = u
		case 30:
			r.Downstream.WireBytesReceived = u
		case 31:
			r.Upstream.WireBytesSent = u
		case 32:
			r.Upstream.WireBytesReceived = u
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("common_properties: %w", err)
	}
	r.ResponseFlags = flags.String()
	r.FilterState, notes.filterTrace = ds.values, ds.trace
	if ds.hasUpstream {
		r.Destination = ds.upstreamPeer
	}
	if ds.hasDownPeer {
		r.Source = ds.downstreamPeer
	}
	return nil
}

// tcpType reports whether an AccessLogType is one of a TCP connection's:
// Istio attaches the envoyHttpAls provider to tcp_proxy too, and Envoy's
// HTTP gRPC logger then sends connections as HTTP entries of these types.
func tcpType(t uint64) bool {
	switch t {
	case 1, 2, 3, 14: // TcpUpstreamConnected, TcpPeriodic, TcpConnectionEnd, TcpConnectionStart
		return true
	}
	return false
}

// intermediateType reports whether an AccessLogType (Envoy >= 1.27) marks
// an entry logged before the stream or connection ended: at its start or
// periodically. Only the final entry describes the whole request.
func intermediateType(t uint64) bool {
	switch t {
	case 1, 2, 14, // TcpUpstreamConnected, TcpPeriodic, TcpConnectionStart
		4, 5, // DownstreamStart, DownstreamPeriodic
		7, 8, // UpstreamPoolReady, UpstreamPeriodic
		10, 11, 12: // DownstreamTunnelSuccessfullyEstablished, UdpTunnelUpstreamConnected, UdpPeriodic
		return true
	}
	return false
}

// filterState decodes one map entry of filter_state_objects: key (1) and
// google.protobuf.Any (2) with type_url (1) and value (2).
func (d *wireDecoder) filterState(p *proxy, b []byte, ds *decodedState, notes *entryNotes) error {
	var key, typeURL string
	var value []byte
	err := fields(b, shapeMapEntry, func(num protowire.Number, _ protowire.Type, _ uint64, v []byte) error {
		switch num {
		case 1:
			key = d.str(v)
		case 2:
			return fields(v, shapeAny, func(num protowire.Number, _ protowire.Type, _ uint64, v []byte) error {
				switch num {
				case 1:
					typeURL = d.typeURL(v)
				case 2:
					value = v
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !ds.add(key, typeURL, value, d) {
		notes.badFilterState = append(notes.badFilterState, key)
	}
	notes.noteHeaderCopy(key)
	return nil
}

// peer decodes Istio peer metadata (upstream_peer, downstream_peer)
// through the stream's cache.
func (d *wireDecoder) peer(b []byte) (record.Workload, bool) {
	if w, ok := d.peers.lookup(b); ok {
		return w, true
	}
	w, ok, orderFree := decodePeer(b, d.str)
	if ok && orderFree {
		d.peers.add(b, w)
	}
	return w, ok
}

// mapEntry decodes a map<string,string> entry into m. Keys (header names,
// tag names) repeat and are interned; values are not.
func (d *wireDecoder) mapEntry(b []byte, m map[string]string) error {
	var key, val []byte
	err := fields(b, shapeMapEntry, func(num protowire.Number, _ protowire.Type, _ uint64, v []byte) error {
		switch num {
		case 1:
			key = v
		case 2:
			val = v
		}
		return nil
	})
	if err != nil {
		return err
	}
	m[d.str(key)] = d.fresh(val)
	return nil
}

// request decodes HTTPRequestProperties.
func (d *wireDecoder) request(b []byte, r *record.Record, headers *map[string]string) error {
	h := &r.HTTP
	err := fields(b, shapeRequest, func(num protowire.Number, _ protowire.Type, u uint64, v []byte) error {
		switch num {
		case 1:
			h.Method = methodName(int32(u))
		case 2:
			h.Scheme = d.str(v)
		case 3:
			h.Authority = d.str(v)
		case 5:
			h.Path = d.fresh(v)
		case 6:
			h.UserAgent = d.str(v)
		case 7:
			h.Referer = d.str(v)
		case 8:
			h.ForwardedFor = d.fresh(v)
		case 9:
			h.RequestID = d.fresh(v)
		case 10:
			h.OriginalPath = d.fresh(v)
		case 11:
			h.RequestHeaderBytes = u
		case 12:
			h.RequestBodyBytes = u
		case 13:
			if *headers == nil {
				*headers = make(map[string]string, 8)
			}
			return d.mapEntry(v, *headers)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	return nil
}

// response decodes HTTPResponseProperties.
func (d *wireDecoder) response(b []byte, r *record.Record) error {
	h := &r.HTTP
	err := fields(b, shapeResponse, func(num protowire.Number, _ protowire.Type, u uint64, v []byte) error {
		switch num {
		case 1:
			c, err := uint32Value(v)
			h.ResponseCode = c
			return err
		case 2:
			h.ResponseHeaderBytes = u
		case 3:
			h.ResponseBodyBytes = u
		case 4:
			if r.ResponseHeaders == nil {
				r.ResponseHeaders = make(map[string]string, 4)
			}
			return d.mapEntry(v, r.ResponseHeaders)
		case 5:
			if r.ResponseTrailers == nil {
				r.ResponseTrailers = make(map[string]string, 2)
			}
			return d.mapEntry(v, r.ResponseTrailers)
		case 6:
			h.ResponseCodeDetails = d.str(v)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("response: %w", err)
	}
	return nil
}

// tls decodes TLSProperties.
func (d *wireDecoder) tls(b []byte, t *record.TLS) error {
	return fields(b, shapeTLS, func(num protowire.Number, _ protowire.Type, u uint64, v []byte) error {
		var err error
		switch num {
		case 1:
			t.Version = tlsVersion(int32(u))
		case 2:
			t.CipherSuite, err = uint32Value(v)
		case 3:
			t.SNI = d.str(v)
		case 4:
			t.LocalURISAN, t.LocalSubject, err = d.certificate(v)
		case 5:
			t.PeerURISAN, t.PeerSubject, err = d.certificate(v)
		case 6:
			t.SessionID = d.fresh(v)
		}
		return err
	})
}

// certificate decodes CertificateProperties: the first URI SAN and the
// subject.
func (d *wireDecoder) certificate(b []byte) (uri, subject string, err error) {
	err = fields(b, shapeCert, func(num protowire.Number, _ protowire.Type, _ uint64, v []byte) error {
		switch num {
		case 1: // SubjectAltName: oneof uri (1), dns (2)
			if uri != "" {
				return nil
			}
			return fields(v, shapeSAN, func(num protowire.Number, _ protowire.Type, _ uint64, v []byte) error {
				if num == 1 {
					uri = d.str(v)
				}
				return nil
			})
		case 2:
			subject = d.str(v)
		}
		return nil
	})
	return uri, subject, err
}

// address renders an envoy.config.core.v3.Address as ip:port,
// unix:PATH or envoy://LISTENER. Addresses with ephemeral ports are not
// interned (they rarely repeat). Four per entry: it walks the bytes itself.
func (d *wireDecoder) address(b []byte, stable bool) (string, error) {
	if !stable {
		return d.parseAddress(b, false)
	}
	// A proxy's own addresses and its upstream hosts repeat: remember how
	// their bytes render.
	slot := &d.addrs[internSlot(b)%addrCacheSize]
	if slot.raw == string(b) && slot.raw != "" {
		return slot.text, nil
	}
	s, err := d.parseAddress(b, true)
	if err == nil && len(b) <= 128 {
		*slot = addrCacheEntry{raw: string(b), text: s}
	}
	return s, err
}

// typeURL names a filter state object's type: one of the few Envoy
// sends, compared without hashing, else interned.
func (d *wireDecoder) typeURL(v []byte) string {
	for _, t := range [...]string{typeBytesValue, typeStruct, typeStringValue} {
		if string(v) == t {
			return t
		}
	}
	return d.str(v)
}

// addrCacheSize bounds the stable addresses a stream remembers.
const addrCacheSize = 64

type addrCacheEntry struct{ raw, text string }

func (d *wireDecoder) parseAddress(b []byte, stable bool) (string, error) {
	var out string
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", errTruncated
		}
		b = b[n:]
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return "", errTruncated
			}
			b = b[m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return "", errTruncated
		}
		b = b[m:]
		var err error
		switch num {
		case 1:
			out, err = d.socketAddress(v, stable)
		case 2: // Pipe: path (1)
			err = fields(v, shapePipe, func(num protowire.Number, _ protowire.Type, _ uint64, v []byte) error {
				if num == 1 {
					out = "unix:" + d.fresh(v)
				}
				return nil
			})
		case 3: // EnvoyInternalAddress: server_listener_name (1), endpoint_id (2)
			var listener, endpoint []byte
			err = fields(v, shapeInternal, func(num protowire.Number, _ protowire.Type, _ uint64, v []byte) error {
				switch num {
				case 1:
					listener = v
				case 2:
					endpoint = v
				}
				return nil
			})
			out = internalAddress(d.fresh(listener), d.fresh(endpoint))
		}
		if err != nil {
			return "", err
		}
	}
	return out, nil
}

// internalAddress renders an EnvoyInternalAddress the way Envoy prints it:
// envoy://LISTENER/ENDPOINT. An ambient waypoint's upstream hosts are
// envoy://connect_originate/POD_IP:PORT, the endpoint being the pod.
func internalAddress(listener, endpoint string) string {
	if endpoint == "" {
		return "envoy://" + listener
	}
	return "envoy://" + listener + "/" + endpoint
}

// socketAddress renders SocketAddress: address (2), port_value (3),
// named_port (4).
func (d *wireDecoder) socketAddress(b []byte, stable bool) (string, error) {
	var ip, named []byte
	var port uint64
	hasPort := false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", errTruncated
		}
		b = b[n:]
		switch {
		case typ == protowire.BytesType && (num == 2 || num == 4):
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return "", errTruncated
			}
			b = b[m:]
			if num == 2 {
				ip = v
			} else {
				named = v
			}
		case typ == protowire.VarintType && num == 3:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return "", errTruncated
			}
			b = b[m:]
			port, hasPort = v, true
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return "", errTruncated
			}
			b = b[m:]
		}
	}
	var buf [64]byte
	s := buf[:0]
	bracket := containsColon(ip) && (hasPort || named != nil)
	if bracket {
		s = append(s, '[')
	}
	s = append(s, ip...)
	if bracket {
		s = append(s, ']')
	}
	switch {
	case hasPort:
		s = append(s, ':')
		s = strconv.AppendUint(s, port, 10)
	case named != nil:
		s = append(s, ':')
		s = append(s, named...)
	}
	if stable {
		return d.str(s), nil
	}
	return d.fresh(s), nil
}

func containsColon(b []byte) bool {
	for _, c := range b {
		if c == ':' {
			return true
		}
	}
	return false
}

// secondsNanos decodes a Timestamp or Duration (seconds 1, nanos 2). It
// runs nine times per entry, so it walks the bytes itself instead of going
// through fields.
func secondsNanos(b []byte) (sec, nanos int64, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, errTruncated
		}
		b = b[n:]
		if typ == protowire.VarintType && (num == 1 || num == 2) {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return 0, 0, errTruncated
			}
			b = b[m:]
			if num == 1 {
				sec = int64(v)
			} else {
				nanos = int64(int32(v))
			}
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return 0, 0, errTruncated
		}
		b = b[m:]
	}
	return sec, nanos, nil
}

// duration decodes a Duration, saturating on overflow as
// durationpb.AsDuration does.
func duration(b []byte) (time.Duration, error) {
	sec, nanos, err := secondsNanos(b)
	d := time.Duration(sec) * time.Second
	overflow := d/time.Second != time.Duration(sec)
	d += time.Duration(nanos)
	overflow = overflow || (sec < 0 && nanos < 0 && d > 0) || (sec > 0 && nanos > 0 && d < 0)
	if overflow {
		if sec < 0 {
			return math.MinInt64, err
		}
		return math.MaxInt64, err
	}
	return d, err
}

// uint32Value decodes google.protobuf.UInt32Value (value 1).
func uint32Value(b []byte) (uint32, error) {
	var out uint32
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, errTruncated
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return 0, errTruncated
			}
			out, b = uint32(v), b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return 0, errTruncated
		}
		b = b[m:]
	}
	return out, nil
}
