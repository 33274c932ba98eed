package record

import (
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// canonical is r as DecodeBinary gives it back: times in UTC (the instant
// is kept, the location and monotonic reading are not), NaN made
// comparable.
func canonical(r *Record) Record {
	c := *r
	c.StartTime = c.StartTime.UTC().Round(-1)
	c.ReceivedAt = c.ReceivedAt.UTC().Round(-1)
	if math.IsNaN(c.SampleRate) {
		c.SampleRate = 12345 // bits compared separately
	}
	return c
}

func checkRoundTrip(t testing.TB, r *Record) {
	t.Helper()
	b := AppendBinary(nil, r)
	got, err := DecodeBinary(b)
	if err != nil {
		t.Fatalf("DecodeBinary(AppendBinary(r)): %v", err)
	}
	if math.Float64bits(got.SampleRate) != math.Float64bits(r.SampleRate) {
		t.Fatalf("sample rate %v came back as %v", r.SampleRate, got.SampleRate)
	}
	if w, g := canonical(r), canonical(got); !reflect.DeepEqual(w, g) {
		t.Fatalf("round trip changed the record:\n got %+v\nwant %+v", g, w)
	}
	if (r.Trace.Sampled == nil) != (got.Trace.Sampled == nil) || (r.Trace.Sampled != nil && got.Trace.Sampled == r.Trace.Sampled) {
		t.Fatal("Sampled pointer not rebuilt")
	}
}

// Random records, the generator of the JSON tests: every one comes back
// exactly (durations and times to the nanosecond, nil and empty maps, the
// Sampled pointer, NaN sample rates), measured or not.
func TestBinaryRoundTripRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var nodes []Node
	for range 4 {
		nodes = append(nodes, Node{ID: randString(rng), Cluster: randString(rng), Pod: randString(rng), ClusterID: randString(rng)})
	}
	var workloads []Workload
	for range 7 {
		workloads = append(workloads, Workload{Name: randString(rng), Namespace: randString(rng), Principal: randString(rng), IP: randString(rng)})
	}
	for i := range 4000 {
		r := randRecord(rng, nodes, workloads)
		if i%2 == 0 {
			r.Size()
		}
		if i%7 == 0 {
			r.Tags = map[string]string{} // empty, not nil
		}
		if i%5 == 0 {
			r.StartTime = r.StartTime.Add(time.Duration(rng.IntN(1e9))) // nanoseconds
			r.ReceivedAt = time.Now()                                   // with a monotonic reading
		}
		checkRoundTrip(t, r)
	}
	for _, r := range envoyBatch(100) {
		checkRoundTrip(t, r)
	}
}

// fill sets every field reachable from v to a random non-zero value, so a
// field added to Record and forgotten by the binary form fails the test.
func fill(rng *rand.Rand, v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Unix(rng.Int64N(1<<40)-1<<39, 1+rng.Int64N(1e9-1))))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(rng, v.Field(i))
			}
		}
	case reflect.String:
		v.SetString(diffStrings[1+rng.IntN(len(diffStrings)-1)])
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Uint8, reflect.Uint32, reflect.Uint64:
		v.SetUint(1 + rng.Uint64N(1<<(v.Type().Bits()-1)))
	case reflect.Int64:
		v.SetInt(rng.Int64() - 1<<62)
	case reflect.Float64:
		v.SetFloat(rng.Float64() + 1e-9)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(rng, p.Elem())
		v.Set(p)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for range 1 + rng.IntN(20) {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(rng, k)
			fill(rng, e)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	default:
		panic("fill: no rule for " + v.Type().String())
	}
}

func TestBinaryKeepsEveryField(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 500 {
		r := new(Record)
		fill(rng, reflect.ValueOf(r).Elem())
		checkRoundTrip(t, r)
		// Sampled false too.
		no := false
		r.Trace.Sampled = &no
		checkRoundTrip(t, r)
	}
}

// The cached size travels with the frame: a replayed record is counted
// without being rendered as JSON.
func TestBinaryCarriesSize(t *testing.T) {
	r := envoyBatch(1)[0]
	want := r.Size()
	got, err := DecodeBinary(AppendBinary(nil, r))
	if err != nil {
		t.Fatal(err)
	}
	if got.sizeKnown() != want {
		t.Fatalf("decoded size %d, want %d", got.sizeKnown(), want)
	}
}

// Every truncation and a wrong version fail with an error naming what was
// wrong, never a panic; the version byte is never '{', which is how a disk
// queue tells an old JSON record from a binary one.
func TestDecodeBinaryErrors(t *testing.T) {
	if BinaryVersion == '{' {
		t.Fatal("the version byte must differ from the first byte of a JSON record")
	}
	b := AppendBinary(nil, envoyBatch(1)[0])
	for i := range len(b) {
		if _, err := DecodeBinary(b[:i]); err == nil {
			t.Fatalf("a frame cut to %d of %d bytes decoded", i, len(b))
		}
	}
	if _, err := DecodeBinary(append(b[:len(b):len(b)], 0)); err == nil || !strings.Contains(err.Error(), "after the last field") {
		t.Fatalf("trailing byte: %v", err)
	}
	if _, err := DecodeBinary([]byte(`{"kind":"http"}`)); err == nil || !strings.Contains(err.Error(), "version 123") {
		t.Fatalf("JSON given to DecodeBinary: %v", err)
	}
	_, err := DecodeBinary(b[:40])
	if err == nil || !strings.Contains(err.Error(), "record: binary frame: ") {
		t.Fatalf("truncated: %v", err)
	}
}

// hostile is a frame that claims huge lengths: a string of 2^62 bytes, or
// a map of 2^40 entries, in a few bytes.
func hostileFrames() [][]byte {
	var out [][]byte
	// size, kind, then the id's length.
	out = append(out, append([]byte{BinaryVersion, 0, 1}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f))
	// A valid record up to its first map, then a huge entry count.
	r := &Record{Kind: KindHTTP}
	b := AppendBinary(nil, r)
	// The empty record ends with 5 nil maps, 3 empty strings and a nil map.
	head := b[:len(b)-9]
	out = append(out, append(append([]byte(nil), head...), 0x80, 0x80, 0x80, 0x80, 0x80, 0x20))
	return out
}

// measure sums the string bytes and map entries reachable from v.
func measure(v reflect.Value) (strs, entries int) {
	switch v.Kind() {
	case reflect.String:
		return v.Len(), 0
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				s, e := measure(v.Field(i))
				strs, entries = strs+s, entries+e
			}
		}
	case reflect.Pointer:
		if !v.IsNil() {
			return measure(v.Elem())
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			entries++
			strs += it.Key().Len() + it.Value().Len()
		}
	}
	return strs, entries
}

func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A length prefix cannot make DecodeBinary allocate: hostile frames fail
// having allocated about their own size (the one copy of the input) and
// the empty record. (Measured with runtime.ReadMemStats, which stops the
// world: fine in a test, a stall in a fuzzing worker, so the fuzz target
// checks the decoded record's size against its input instead.)
func TestDecodeBinaryHostileLengths(t *testing.T) {
	for i, b := range hostileFrames() {
		var err error
		n := allocated(func() { _, err = DecodeBinary(b) })
		if err == nil {
			t.Fatalf("hostile frame %d decoded", i)
		}
		if n > allocBound(len(b)) {
			t.Fatalf("hostile frame %d of %d bytes: %d bytes allocated (%v)", i, len(b), n, err)
		}
		t.Logf("frame %d: %v (%d bytes allocated)", i, err, n)
	}
}

// allocBound is what decoding n bytes may allocate: the record, the copy
// of the input, the error, and map entries (each at least two input bytes
// and under 64 bytes of map).
func allocBound(n int) uint64 {
	return uint64(unsafeSizeofRecord + 2048 + 40*n)
}

var unsafeSizeofRecord = int(reflect.TypeFor[Record]().Size())

func FuzzDecodeBinary(f *testing.F) {
	for _, r := range envoyBatch(4) {
		f.Add(AppendBinary(nil, r))
	}
	rng := rand.New(rand.NewPCG(9, 10))
	r := new(Record)
	fill(rng, reflect.ValueOf(r).Elem())
	f.Add(AppendBinary(nil, r))
	f.Add(AppendBinary(nil, &Record{}))
	for _, b := range hostileFrames() {
		f.Add(b)
	}
	f.Add([]byte(`{"kind":"http"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeBinary(b)
		owned, oerr := DecodeBinaryOwned(append([]byte(nil), b...))
		if (err == nil) != (oerr == nil) || (err == nil && !reflect.DeepEqual(canonical(r), canonical(owned)) && !math.IsNaN(r.SampleRate)) {
			t.Fatalf("DecodeBinary and DecodeBinaryOwned disagree: %v / %v", err, oerr)
		}
		if err != nil {
			return
		}
		// What was built is bounded by the input: string bytes (all
		// slices of one copy of b) and map entries (two bytes each at
		// least) cannot exceed what b holds, whatever its lengths said.
		strs, entries := measure(reflect.ValueOf(r).Elem())
		if strs > len(b) || entries > len(b)/2 {
			t.Fatalf("%d bytes decoded into %d bytes of strings and %d map entries", len(b), strs, entries)
		}
		// What decodes re-encodes to the same bytes' meaning.
		again, err := DecodeBinary(AppendBinary(nil, r))
		if err != nil {
			t.Fatalf("re-encoding a decoded frame: %v", err)
		}
		if math.Float64bits(again.SampleRate) != math.Float64bits(r.SampleRate) || !reflect.DeepEqual(canonical(again), canonical(r)) {
			t.Fatal("decode(encode(decode(b))) differs from decode(b)")
		}
	})
}

func BenchmarkDecodeBinary(b *testing.B) {
	recs := envoyBatch(benchBatch)
	var frames [][]byte
	var size int64
	for _, r := range recs {
		frames = append(frames, AppendBinary(nil, r))
		size += int64(len(AppendJSON(nil, r)))
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		for _, f := range frames {
			if _, err := DecodeBinary(f); err != nil {
				b.Fatal(err)
			}
		}
	}
}
