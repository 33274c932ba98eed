package als

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// structOf serializes a Struct with the given string fields in this order
// (a Struct's map entries concatenated are a Struct), the way Envoy sends
// the same peer with its entries in varying order.
func structOf(t *testing.T, kv ...string) []byte {
	t.Helper()
	var out []byte
	for i := 0; i < len(kv); i += 2 {
		b, err := proto.Marshal(&structpb.Struct{Fields: map[string]*structpb.Value{kv[i]: structpb.NewStringValue(kv[i+1])}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

func TestPeerCacheFindsAPeerInAnyEntryOrder(t *testing.T) {
	d := newWireDecoder(newConverter(nil, nil, 8<<10))
	a := structOf(t, "workload", "reviews-v2", "namespace", "bookinfo", "app", "reviews", "version", "v2")
	w1, ok := d.peer(a)
	if !ok || w1.Name != "reviews-v2" || w1.App != "reviews" {
		t.Fatalf("decode: %+v %v", w1, ok)
	}
	permuted := structOf(t, "version", "v2", "app", "reviews", "namespace", "bookinfo", "workload", "reviews-v2")
	if w, ok := d.peers.lookup(permuted); !ok || w != w1 {
		t.Fatalf("a permutation of a cached peer missed the cache: %+v %v", w, ok)
	}
	// Same size, same keys, another value: a different peer.
	other := structOf(t, "version", "v3", "app", "reviews", "namespace", "bookinfo", "workload", "reviews-v3")
	if _, ok := d.peers.lookup(other); ok {
		t.Fatal("a different peer was taken from the cache")
	}
	if w, _ := d.peer(other); w.Name != "reviews-v3" || w.Version != "v3" {
		t.Fatalf("other peer decoded as %+v", w)
	}
	// A subset of a cached peer's entries is not that peer.
	if _, ok := d.peers.lookup(structOf(t, "workload", "reviews-v2", "namespace", "bookinfo")); ok {
		t.Fatal("a subset of a cached peer hit the cache")
	}
}

func TestPeerCacheSkipsOrderDependentAndRepeatedEntries(t *testing.T) {
	d := newWireDecoder(newConverter(nil, nil, 8<<10))
	// The same key twice: the last one wins, so the order matters.
	twice := structOf(t, "workload", "a", "workload", "b")
	if w, _ := d.peer(twice); w.Name != "b" {
		t.Fatalf("last value should win, got %q", w.Name)
	}
	if w, _ := d.peer(structOf(t, "workload", "b", "workload", "a")); w.Name != "a" {
		t.Fatalf("reordered: last value should win, got %q", w.Name)
	}
	// One entry repeated byte for byte is never cached either.
	dup := structOf(t, "workload", "a", "workload", "a", "app", "x")
	d.peer(dup)
	if _, ok := d.peers.lookup(structOf(t, "workload", "a", "app", "x", "app", "x")); ok {
		t.Fatal("a different multiset of entries hit the cache")
	}
	if _, ok := d.peers.lookup(dup); ok {
		t.Fatal("a Struct with a repeated entry was cached")
	}
}

func BenchmarkPeerDecode(b *testing.B) {
	t := &testing.T{}
	v := structOf(t, "namespace", "bookinfo", "workload", "reviews-v2", "service", "reviews", "revision", "v2",
		"app", "reviews", "version", "v2", "cluster", "Kubernetes", "type", "deployment", "name", "reviews-v2-5b9f8c-abcde")
	d := newWireDecoder(newConverter(nil, nil, 8<<10))
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			d.peer(v)
		}
	})
	b.Run("decoded", func(b *testing.B) {
		for b.Loop() {
			decodePeer(v, d.str)
		}
	})
}

// FuzzPeerCache checks that the cache never answers differently from
// decoding: a value, then the same entries in reverse order, each through
// a decoder that has seen the other.
func FuzzPeerCache(f *testing.F) {
	t := &testing.T{}
	f.Add(structOf(t, "workload", "a", "namespace", "ns", "app", "x"))
	f.Add(structOf(t, "service", "s", "LABELS", "x", "workload", "a"))
	f.Add(structOf(t, "workload", "a", "workload", "b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := newWireDecoder(newConverter(nil, nil, 8<<10))
		ref := newWireDecoder(newConverter(nil, nil, 8<<10)) // repairs UTF-8 as d does
		check := func(v []byte) {
			want, wantOK, _ := decodePeer(v, ref.str)
			got, gotOK := d.peer(v)
			if got != want || gotOK != wantOK {
				t.Fatalf("peer(%x) = %+v %v, decoding gives %+v %v", v, got, gotOK, want, wantOK)
			}
		}
		check(b)
		check(b)
		entries, _, ok := structEntries(b, nil)
		if !ok {
			return
		}
		var reversed []byte
		for i := len(entries) - 1; i >= 0; i-- {
			reversed = append(reversed, 0x0a)
			reversed = appendVarint(reversed, uint64(len(entries[i].b)))
			reversed = append(reversed, entries[i].b...)
		}
		check(reversed)
	})
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
