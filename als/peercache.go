package als

import (
	"github.com/meshtrail/meshtrail/record"
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
	hash uint64
}

// peerCacheSize bounds a stream's cache: one Envoy logs its own workload
// and the few peers it talks to.
const peerCacheSize = 8

// maxCachedEntries bounds the entries of a cacheable Struct (Istio's
// peer metadata has about ten); larger ones are decoded every time.
const maxCachedEntries = 32

type cachedPeer struct {
	fingerprint uint64
	size        int
	entries     []string // the Struct's top-level entries (field 1), distinct
	hashes      []uint64 // entryHash of each
	w           record.Workload
}

// structEntries splits a serialized Struct into its top-level map entries
// and an order-independent fingerprint of them. It reports false when the
// bytes hold anything else, more than maxCachedEntries entries, or the same
// entry twice: such values are never cached.
func structEntries(b []byte, out []peerEntry) (_ []peerEntry, fingerprint uint64, ok bool) {
	for len(b) > 0 {
		if b[0] != 0x0a { // field 1, length-delimited, one-byte tag
			return out, 0, false
		}
		l, m := uint64(0), 0
		if len(b) > 1 && b[1] < 0x80 {
			l, m = uint64(b[1]), 1
		} else {
			var shift uint
			for i := 1; i < len(b) && i < 6; i++ {
				l |= uint64(b[i]&0x7f) << shift
				shift += 7
				if b[i] < 0x80 {
					m = i
					break
				}
			}
			if m == 0 {
				return out, 0, false
			}
		}
		if l > uint64(len(b)-1-m) || len(out) == maxCachedEntries {
			return out, 0, false
		}
		e := b[1+m : 1+m+int(l)]
		b = b[1+m+int(l):]
		h := entryHash(e)
		fingerprint += h
		out = append(out, peerEntry{e, h})
	}
	return out, fingerprint, len(out) > 0
}

// entryHash mixes an entry's length and its first and last eight bytes:
// cheap, and enough to tell Istio's entries apart (they differ in their
// keys, which come first). Equal fingerprints are always verified.
func entryHash(e []byte) uint64 {
	return uint64(internSlot(e))*0x9e3779b97f4a7c15 ^ uint64(len(e))
}

func (c *peerCache) lookup(b []byte) (record.Workload, bool) {
	entries, fp, ok := structEntries(b, c.scratch[:0])
	c.scratch = entries
	if !ok {
		return record.Workload{}, false
	}
	for i := range c.slots {
		p := &c.slots[i]
		if p.fingerprint != fp || p.size != len(b) || len(p.entries) != len(entries) {
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
	var used uint64
	for _, e := range got {
		found := false
		for j, h := range want.hashes {
			if h == e.hash && used&(1<<j) == 0 && want.entries[j] == string(e.b) {
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
	entries, fp, ok := structEntries(b, c.scratch[:0])
	c.scratch = entries
	if !ok {
		return
	}
	p := cachedPeer{fingerprint: fp, size: len(b), entries: make([]string, len(entries)), hashes: make([]uint64, len(entries)), w: w}
	for i, e := range entries {
		for _, prev := range p.entries[:i] {
			if prev == string(e.b) {
				return // the same entry twice: never cached
			}
		}
		p.entries[i], p.hashes[i] = string(e.b), e.hash
	}
	c.slots[c.next] = p
	c.next = (c.next + 1) % peerCacheSize
}
