package record

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"
)

// Strings the generator draws from: plain, empty, needing escapes,
// invalid UTF-8, U+2028/9, and lengths around the eight-byte lanes.
var diffStrings = []string{
	"", "a", "ab", "abc", "abcd", "abcdefg", "abcdefgh", "abcdefghi", "abcdefghijklmnop", "abcdefghijklmnopq",
	"productpage-v1", "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage", "10.244.1.10",
	"quote\"", "\"", "back\\slash", "\\", "ctl\x00", "\x1f", "tab\tnl\nret\r", "x\x7f", "<html>&",
	"\u2028", "a\u2029b", "日本語", "bad\xffutf8", "\xff", "\xfe\xff", "abcdefg\xff", "abcdefgh\"", "\xe2\x80", "\xe2\x80\xa8x",
	"0123456789abcdef0123456789abcdef", "x-b3-traceid", "wasm.meshtrail_trace_id",
}

func randString(rng *rand.Rand) string {
	if rng.IntN(4) == 0 {
		// A fresh string, not sharing bytes with the pool's.
		var sb strings.Builder
		for n := rng.IntN(3); n >= 0; n-- {
			sb.WriteString(diffStrings[rng.IntN(len(diffStrings))])
		}
		return sb.String()
	}
	return diffStrings[rng.IntN(len(diffStrings))]
}

func maybe(rng *rand.Rand, s func() string) string {
	if rng.IntN(3) == 0 {
		return ""
	}
	return s()
}

func randMap(rng *rand.Rand, keys []string) map[string]string {
	if rng.IntN(3) == 0 {
		return nil
	}
	m := map[string]string{}
	for _, k := range keys {
		if rng.IntN(5) != 0 {
			m[k] = randString(rng)
		}
	}
	if rng.IntN(4) == 0 {
		m[randString(rng)] = randString(rng)
	}
	if rng.IntN(20) == 0 { // more keys than the key cache holds
		for i := range 20 {
			m[fmt.Sprint("k", i)] = "v"
		}
	}
	return m
}

func randTime(rng *rand.Rand) time.Time {
	switch rng.IntN(6) {
	case 0:
		return time.Time{}
	case 1:
		return time.Unix(rng.Int64N(1<<40)-1<<39, 0) // whole seconds, years before 1970 too
	case 2:
		return time.Date(rng.IntN(12000)-1000, time.Month(1+rng.IntN(12)), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1e9), time.UTC)
	case 3:
		loc := time.FixedZone("x", 3600*(rng.IntN(27)-12))
		return time.Date(2026, 11, 21, rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1e9), loc)
	}
	return time.Date(2026, 11, 21, 10, rng.IntN(2), rng.IntN(60), rng.IntN(1e9)/int(math.Pow10(rng.IntN(10)))*int(math.Pow10(rng.IntN(10)))%1e9, time.UTC)
}

// randRecord draws from small pools of nodes and workloads so that an
// Encoder sees hits, misses and replacements.
func randRecord(rng *rand.Rand, nodes []Node, workloads []Workload) *Record {
	yes, no := true, false
	r := &Record{
		Kind:       Kind(rng.IntN(5)),
		StartTime:  randTime(rng),
		ReceivedAt: randTime(rng),
		Reporter:   maybe(rng, func() string { return randString(rng) }),
		ID:         maybe(rng, func() string { return randString(rng) }),
		Tenant:     maybe(rng, func() string { return randString(rng) }),
		Trace:      Trace{TraceID: randString(rng), SpanID: maybe(rng, func() string { return randString(rng) }), ParentSpanID: randString(rng), Source: randString(rng)},
		HTTP: HTTP{Method: randString(rng), Authority: randString(rng), Path: randString(rng), ResponseCode: uint32(rng.IntN(3) * 200),
			UserAgent: randString(rng), RequestBodyBytes: uint64(rng.IntN(2)) << rng.IntN(64), ResponseBodyBytes: math.MaxUint64 * uint64(rng.IntN(2))},
		ResponseFlags: maybe(rng, func() string { return randString(rng) }),
		Message:       maybe(rng, func() string { return randString(rng) }),
	}
	switch rng.IntN(3) {
	case 0:
		r.Trace.Sampled = &yes
	case 1:
		r.Trace.Sampled = &no
	}
	if rng.IntN(5) != 0 {
		r.Node = nodes[rng.IntN(len(nodes))]
	}
	if rng.IntN(5) != 0 {
		r.Source = workloads[rng.IntN(len(workloads))]
	}
	if rng.IntN(5) != 0 {
		r.Destination = workloads[rng.IntN(len(workloads))]
		if rng.IntN(4) == 0 {
			r.Destination.IP = randString(rng) // patched per record, as the ALS receiver does
		}
	}
	if rng.IntN(3) != 0 {
		r.Timings = Timings{Total: time.Duration(rng.Int64N(1e10) - 1e9)}
		if rng.IntN(2) == 0 {
			r.Timings.LastRxByte = time.Duration(rng.Int64N(1e7))
			r.Timings.LastDownstreamTxByte = -time.Duration(rng.Int64N(1e7))
		}
	}
	if rng.IntN(4) != 0 {
		svc := []string{"", "reviews", "details", "rat\"ings", "\xff"}[rng.IntN(5)]
		r.Upstream = Upstream{Cluster: maybe(rng, func() string { return "outbound|9080||" + svc }), Port: uint32(rng.IntN(2) * 9080), ServiceName: svc,
			Host: maybe(rng, func() string { return randString(rng) }), WireBytesSent: uint64(rng.IntN(3))}
	}
	if rng.IntN(2) == 0 {
		r.Downstream = Downstream{RemoteAddress: randString(rng), WireBytesReceived: uint64(rng.IntN(2))}
	}
	if rng.IntN(2) == 0 {
		tlss := []TLS{{Version: "TLSv1.3", SNI: "outbound_.9080_._.reviews"}, {CipherSuite: 4865}, {PeerURISAN: "spiffe://x/\"y\""}}
		r.TLS = tlss[rng.IntN(len(tlss))]
		if rng.IntN(3) == 0 {
			r.TLS.SessionID = randString(rng)
		}
	}
	if rng.IntN(3) == 0 {
		r.SampleRate = []float64{0.5, 1e-9, math.NaN(), math.Inf(1), 3}[rng.IntN(5)]
	}
	r.Intermediate = rng.IntN(5) == 0
	hdrs := []string{"x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled"}
	r.RequestHeaders = randMap(rng, hdrs)
	r.ResponseHeaders = randMap(rng, hdrs[:2])
	r.ResponseTrailers = randMap(rng, []string{"grpc-status"})
	r.Tags = randMap(rng, []string{"a", "b\"", "\xff"})
	r.FilterState = randMap(rng, []string{"wasm.meshtrail_trace_id", "wasm.meshtrail_span_id", "wasm.meshtrail_sampled"})
	r.Fields = randMap(rng, []string{"msg", "level"})
	return r
}

// The Encoder and AppendJSON must write, byte for byte, what AppendJSON
// wrote before either existed (refAppendJSON), record after record with
// nodes and workloads changing between them.
func TestEncoderMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var nodes []Node
	for range 4 {
		nodes = append(nodes, Node{ID: randString(rng), Cluster: randString(rng), Pod: randString(rng), ClusterID: maybe(rng, func() string { return randString(rng) }), LogName: maybe(rng, func() string { return randString(rng) })})
	}
	var workloads []Workload
	for range 7 {
		workloads = append(workloads, Workload{Name: randString(rng), Namespace: maybe(rng, func() string { return randString(rng) }), Principal: randString(rng), IP: randString(rng)})
	}
	var e Encoder
	var got, fn, want []byte
	// 50,000 random records: minutes under the race detector on 2 cores.
	for i := range 50000 {
		r := randRecord(rng, nodes, workloads)
		want = refAppendJSON(want[:0], r)
		got = e.Append(got[:0], r)
		if !bytes.Equal(got, want) {
			t.Fatalf("record %d: Encoder wrote\n%s\nwant\n%s", i, got, want)
		}
		fn = AppendJSON(fn[:0], r)
		if !bytes.Equal(fn, want) {
			t.Fatalf("record %d: AppendJSON wrote\n%s\nwant\n%s", i, fn, want)
		}
	}
	// The realistic batch, many times through one Encoder.
	for range 3 {
		for i, r := range envoyBatch(2 * benchBatch) {
			if got, want := e.Append(nil, r), refAppendJSON(nil, r); !bytes.Equal(got, want) {
				t.Fatalf("batch record %d: Encoder wrote\n%s\nwant\n%s", i, got, want)
			}
		}
	}
}

// Appending after existing bytes, and into a buffer without spare
// capacity, changes nothing.
func TestEncoderAppends(t *testing.T) {
	var e Encoder
	for _, r := range append(envoyBatch(3), sampleRecord(), &Record{Kind: KindTCP}) {
		for _, prefix := range []string{"", "x", strings.Repeat("y", 100)} {
			want := refAppendJSON([]byte(prefix), r)
			if got := e.Append([]byte(prefix), r); !bytes.Equal(got, want) {
				t.Fatalf("got\n%s\nwant\n%s", got, want)
			}
			if got := AppendJSON([]byte(prefix), r); !bytes.Equal(got, want) {
				t.Fatalf("got\n%s\nwant\n%s", got, want)
			}
		}
	}
	var nilEnc *Encoder
	r := sampleRecord()
	if got, want := nilEnc.Append(nil, r), refAppendJSON(nil, r); !bytes.Equal(got, want) {
		t.Fatalf("nil Encoder: got\n%s\nwant\n%s", got, want)
	}
}

// Large fragments are written but not kept: memory stays bounded.
func TestEncoderBoundsItsCaches(t *testing.T) {
	var e Encoder
	big := strings.Repeat("n", 2*maxFragment)
	for i := range 50 {
		r := &Record{Kind: KindHTTP, Node: Node{ID: big, Pod: fmt.Sprint(i)}, Source: Workload{Name: big + fmt.Sprint(i)},
			RequestHeaders: map[string]string{big: "v", fmt.Sprint(i): "w"}}
		if got, want := e.Append(nil, r), refAppendJSON(nil, r); !bytes.Equal(got, want) {
			t.Fatal("output differs")
		}
	}
	for _, f := range e.nodes {
		if f.ok || cap(f.json) > 0 {
			t.Errorf("node fragment kept: %d bytes", cap(f.json))
		}
	}
	for _, f := range e.workloads {
		if f.ok || cap(f.json) > 0 {
			t.Errorf("workload fragment kept: %d bytes", cap(f.json))
		}
	}
	if k := e.maps[0]; len(k.keys) > 0 || cap(k.prefix) > 0 {
		t.Errorf("map keys kept: %d, %d bytes", len(k.keys), cap(k.prefix))
	}
}

// jTime's fixed layout must equal time.Format(RFC3339Nano) in UTC.
func TestJTimeMatchesRFC3339Nano(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var day dayCache
	check := func(tm time.Time) {
		t.Helper()
		want := `,"t":"` + tm.UTC().Format(time.RFC3339Nano) + `"`
		if got := jTime(nil, `,"t":"`, tm, &day); string(got) != want {
			t.Fatalf("%v: got %s want %s", tm, got, want)
		}
		var fresh dayCache
		if got := jTime(nil, `,"t":"`, tm, &fresh); string(got) != want {
			t.Fatalf("%v (fresh cache): got %s want %s", tm, got, want)
		}
	}
	edges := []time.Time{
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(0, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(-1, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(999, 12, 31, 23, 59, 59, 100, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 500000000, time.UTC), time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 21, 23, 59, 59, 999999999, time.UTC), time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 2, 29, 12, 0, 0, 10, time.UTC), time.Date(2026, 11, 21, 10, 0, 0, 123000000, time.FixedZone("x", -7*3600)),
		time.Unix(1<<40, 0), time.Unix(-1<<40, 5),
		time.Now(), // with a monotonic reading
	}
	for _, tm := range edges {
		check(tm)
	}
	for range 300000 {
		var tm time.Time
		switch rng.IntN(4) {
		case 0: // any instant of years -100..10100
			tm = time.Unix(rng.Int64N(320000000000)-65000000000, rng.Int64N(1e9))
		case 1: // whole seconds and round fractions
			tm = time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)/int64(math.Pow10(rng.IntN(10)))*int64(math.Pow10(rng.IntN(10)))%1e9)
		default: // the same day, in order, as records of a stream
			tm = time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC).Add(time.Duration(rng.Int64N(int64(26 * time.Hour))))
		}
		check(tm)
	}
}

func TestPlainAgreesWithTheEscaper(t *testing.T) {
	// Every string of up to 3 bytes from an alphabet with each kind of byte,
	// and every single bad byte at each position of longer ones.
	alphabet := []byte{'a', 0, 0x1f, ' ', '"', '\\', 0x7f, 0x80, 0xe2, 0xff}
	var strs []string
	var gen func(prefix []byte)
	gen = func(prefix []byte) {
		strs = append(strs, string(prefix))
		if len(prefix) == 3 {
			return
		}
		for _, c := range alphabet {
			gen(append(prefix, c))
		}
	}
	gen(nil)
	for n := 4; n <= 25; n++ {
		for pos := 0; pos < n; pos++ {
			for _, c := range alphabet {
				b := []byte(strings.Repeat("abcdefghijklmnopqrstuvwxyz", 2)[:n])
				b[pos] = c
				strs = append(strs, string(b))
			}
		}
	}
	for _, s := range strs {
		if got, want := AppendJSONString(nil, s), refAppendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q: got %s want %s", s, got, want)
		}
		buf := make([]byte, len(s))
		plain := copyScan(unsafe.Pointer(unsafe.SliceData(buf)), s)
		if string(buf) != s {
			t.Fatalf("%q copied as %q", s, buf)
		}
		same := string(refAppendJSONString(nil, s)) == `"`+s+`"`
		if plain && !same || !plain && same && !strings.ContainsFunc(s, func(r rune) bool { return r >= utf8.RuneSelf }) {
			t.Fatalf("%q: copyScan says plain=%v", s, plain)
		}
	}
}

// escapeBits is exact, lane by lane, whatever the other lanes hold.
func TestEscapeBitsIsExactPerLane(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for round := range 200 {
		for pos := range 8 {
			for c := range 256 {
				x := rng.Uint64()
				if round == 0 {
					x = 0x6867666564636261 // "abcdefgh"
				}
				x = x&^(0xff<<(8*pos)) | uint64(c)<<(8*pos)
				bits := escapeBits(x)
				for lane := range 8 {
					v := byte(x >> (8 * lane))
					needs := v < 0x20 || v == '"' || v == '\\' || v >= 0x80
					if got := bits>>(8*lane)&0xff == 0x80; got != needs {
						t.Fatalf("x=%#x lane %d (%#x): escapeBits says %v", x, lane, v, got)
					}
				}
				if bits&^lanes80 != 0 {
					t.Fatalf("x=%#x: bits outside the lanes' high bits: %#x", x, bits)
				}
			}
		}
	}
}

func TestAppendUintMatchesStrconv(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	vals := []uint64{0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 9999, 10000, math.MaxUint32, math.MaxUint64, math.MaxUint64 - 1}
	for p := uint64(1); p < math.MaxUint64/10; p *= 10 {
		vals = append(vals, p-1, p, p+1)
	}
	for range 100000 {
		vals = append(vals, rng.Uint64()>>rng.IntN(64))
	}
	for _, v := range vals {
		if got, want := string(appendUint([]byte("x"), v)), "x"+strconv.FormatUint(v, 10); got != want {
			t.Fatalf("%d: got %s want %s", v, got, want)
		}
	}
	for _, d := range []time.Duration{1, 999, 1000, 1001, 1500, 10000, 123456789, -1500, -1000, math.MaxInt64, math.MinInt64, -999} {
		ref := refJMillis(nil, "", d)
		if got := jMillis(nil, "", d); string(got) != string(ref) {
			t.Fatalf("%v: got %s want %s", d, got, ref)
		}
	}
}
