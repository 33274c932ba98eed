package als

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshtrail/meshtrail/internal/record"
)

// peerCache remembers the Istio peer metadata (upstream_peer,
// downstream_peer) one stream has decoded. Every entry of a connection
// carries its peer again, but not byte for byte: Envoy serializes the
// Struct's map in hash order, which changes from one entry to the next. So
// a peer is found by the set of its Struct's entries, whatever their order,
// and verified exactly: a hit is the same multiset of entry bytes, and
// only peers whose decoding does not depend on entry order are cached (see
// peermeta.DecodeOrderFree). A hit costs a walk of the top level and a few
// comparisons instead of decoding three levels of nested messages.
type peerCache struct {
	slots [peerCacheSize]cachedPeer
	next  int
	// scratch holds the entries of the value being looked up.
	scratch []peerEntry
}

type peerEntry struct {
	b    []byte
	off  int // where b starts in the Struct
	hash uint32
}

// peerCacheSize bounds a stream's cache: one Envoy logs its own workload
// and the few peers it talks to.
const peerCacheSize = 8

// maxCachedEntries bounds the entries of a cacheable Struct (Istio's
// peer metadata has about ten), maxCachedBytes its size; larger ones are
// decoded every time.
const (
	maxCachedEntries = 24
	maxCachedBytes   = 4096
)

// cachedPeer keeps a peer's Struct in one string, its entries located by
// offset: one allocation, and a lookup reads contiguous memory.
type cachedPeer struct {
	fingerprint uint64
	raw         string // the serialized Struct as first seen
	n           int    // entries
	off, end    [maxCachedEntries]uint16
	hashes      [maxCachedEntries]uint32 // entryHash of each
	w           record.Workload
}

// structEntries splits a serialized Struct into its top-level map entries
// and an order-independent fingerprint of them. It reports false when the
// bytes hold anything else or more than maxCachedEntries entries: such
// values are never cached.
func structEntries(b []byte, out []peerEntry) (_ []peerEntry, fingerprint uint64, ok bool) {
	for pos := 0; pos < len(b); {
		if b[pos] != 0x0a || len(out) == maxCachedEntries { // field 1, length-delimited
			return out, 0, false
		}
		var e []byte
		n := -1
		if pos+1 < len(b) && b[pos+1] < 0x80 { // under 128 bytes: Istio's entries
			if l := int(b[pos+1]); pos+2+l <= len(b) {
				e, n = b[pos+2:pos+2+l], 1+l
			}
		} else {
			e, n = protowire.ConsumeBytes(b[pos+1:])
		}
		if n < 0 {
			return out, 0, false
		}
		h := entryHash(e)
		fingerprint += uint64(h) * 0x9e3779b97f4a7c15
		out = append(out, peerEntry{e, pos + 1 + n - len(e), h})
		pos += 1 + n
	}
	return out, fingerprint, len(out) > 0
}

// entryHash is cheap, and enough to tell Istio's entries apart (they
// differ in their keys, which come first). Equal hashes are always
// verified.
func entryHash(e []byte) uint32 {
	h := headTailHash(e)
	return uint32(h ^ h>>32)
}

func (c *peerCache) lookup(b []byte) (record.Workload, bool) {
	entries, fp, ok := structEntries(b, c.scratch[:0])
	c.scratch = entries
	if !ok {
		return record.Workload{}, false
	}
	for i := range c.slots {
		p := &c.slots[i]
		if p.fingerprint != fp || len(p.raw) != len(b) || p.n != len(entries) {
			continue
		}
		if sameEntries(entries, p) {
			return p.w, true
		}
	}
	return record.Workload{}, false
}

// sameEntries reports whether got is a permutation of want's entries
// (which are distinct): each entry of got matches a different one of want.
func sameEntries(got []peerEntry, want *cachedPeer) bool {
	var used uint32
	for _, e := range got {
		found := false
		for j, h := range want.hashes[:want.n] {
			if h == e.hash && used&(1<<j) == 0 && want.raw[want.off[j]:want.end[j]] == string(e.b) {
				used |= 1 << j
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (c *peerCache) add(b []byte, w record.Workload) {
	if len(b) > maxCachedBytes {
		return
	}
	entries, fp, ok := structEntries(b, c.scratch[:0])
	c.scratch = entries
	if !ok {
		return
	}
	p := cachedPeer{fingerprint: fp, raw: string(b), n: len(entries), w: w}
	for i, e := range entries {
		for _, prev := range entries[:i] {
			if string(prev.b) == string(e.b) {
				return // the same entry twice: never cached
			}
		}
		p.off[i], p.end[i], p.hashes[i] = uint16(e.off), uint16(e.off+len(e.b)), e.hash
	}
	c.slots[c.next] = p
	c.next = (c.next + 1) % peerCacheSize
}
