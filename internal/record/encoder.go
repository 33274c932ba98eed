package record

// An Encoder writes records as JSON exactly as AppendJSON does, but
// remembers the rendered JSON of the parts that repeat record after record
// of one stream: the Node (the same for every entry of an Envoy's stream),
// the source and destination Workloads (a handful of values), the TLS
// block, the upstream cluster and service, and the sorted key order of
// the header and filter state maps. A part equal (==) to a remembered one
// is copied rather than escaped again; comparing costs little because the
// ALS decoder interns these strings (equal strings share their bytes, and
// string comparison stops at equal pointers).
//
// The caches are small and fixed in number (a few entries each, replaced
// round robin, fragments over maxFragment bytes not kept), so an Encoder's
// memory is bounded whatever it sees. It keeps references to the strings
// of records it rendered until they are replaced.
//
// The zero value is ready to use. An Encoder is not safe for concurrent
// use; a nil *Encoder renders without caching, like AppendJSON.
type Encoder struct {
	nodes     [2]fragment[Node]
	workloads [8]fragment[Workload]
	tlss      [2]fragment[TLS]
	upstreams [4]fragment[upstreamHead]
	maps      [numMaps]mapKeys
	day       dayCache

	nextNode, nextWorkload, nextTLS, nextUpstream uint8
}

// Append appends r as one JSON object (no trailing newline) to dst: the
// same bytes as AppendJSON(dst, r). The first rendering of r also
// caches its length for Size: the NDJSON file (first in the pipeline)
// then measures each record for every sink's queue, which no longer
// renders it again only to count its bytes.
func (e *Encoder) Append(dst []byte, r *Record) []byte {
	n := len(dst)
	dst = appendRecord(dst, r, e)
	if r.sizeKnown() == 0 {
		r.setSize(len(dst) - n)
	}
	return dst
}

const (
	// maxFragment bounds a remembered fragment; larger ones are rendered
	// every time.
	maxFragment = 4 << 10
	// maxMapKeys bounds the keys of a remembered map key order.
	maxMapKeys = 16
	// numMaps is the number of map members of a record.
	numMaps = 6
)

// fragment is the remembered JSON of one value.
type fragment[T comparable] struct {
	v    T
	json []byte
	ok   bool
}

// upstreamHead is the part of an Upstream that names the cluster.
type upstreamHead struct {
	cluster, direction                      string
	port                                    uint32
	subset, service, serviceName, namespace string
}

// keep copies the fragment out[from:] into frag, unless it is too large.
func keep(frag, out []byte, from int) ([]byte, bool) {
	if len(out)-from > maxFragment {
		return frag, false
	}
	return append(frag[:0], out[from:]...), true
}

// find returns the remembered JSON of v, if one of slots holds it.
func find[T comparable](slots []fragment[T], v *T) ([]byte, bool) {
	for i := range slots {
		if f := &slots[i]; f.ok && f.v == *v {
			return f.json, true
		}
	}
	return nil, false
}

// remember keeps out[from:], v's JSON, in slots[*next] (round robin).
func remember[T comparable](slots []fragment[T], next *uint8, v *T, out []byte, from int) {
	f := &slots[int(*next)%len(slots)]
	*next++
	f.json, f.ok = keep(f.json, out, from)
	f.v = *v
}

// node, workload, tls and upstreamHead append their value through e's
// caches; a nil e renders without them (AppendJSON).

func (e *Encoder) node(b []byte, n *Node) []byte {
	if e == nil {
		return appendNode(b, n)
	}
	if j, ok := find(e.nodes[:], n); ok {
		return append(b, j...)
	}
	from := len(b)
	b = appendNode(b, n)
	remember(e.nodes[:], &e.nextNode, n, b, from)
	return b
}

func (e *Encoder) workload(b []byte, w *Workload) []byte {
	if e == nil {
		return appendWorkload(b, w)
	}
	if j, ok := find(e.workloads[:], w); ok {
		return append(b, j...)
	}
	from := len(b)
	b = appendWorkload(b, w)
	remember(e.workloads[:], &e.nextWorkload, w, b, from)
	return b
}

func (e *Encoder) tls(b []byte, s *TLS) []byte {
	if e == nil {
		return appendTLS(b, s)
	}
	if j, ok := find(e.tlss[:], s); ok {
		return append(b, j...)
	}
	from := len(b)
	b = appendTLS(b, s)
	remember(e.tlss[:], &e.nextTLS, s, b, from)
	return b
}

func (e *Encoder) upstreamHead(b []byte, u *Upstream) []byte {
	h := upstreamHead{u.Cluster, u.Direction, u.Port, u.Subset, u.Service, u.ServiceName, u.ServiceNamespace}
	if e == nil || h == (upstreamHead{}) {
		return appendUpstreamHead(b, &h)
	}
	if j, ok := find(e.upstreams[:], &h); ok {
		return append(b, j...)
	}
	from := len(b)
	b = appendUpstreamHead(b, &h)
	remember(e.upstreams[:], &e.nextUpstream, &h, b, from)
	return b
}

// mapKeys remembers the sorted keys of the last map written for one
// member, and their rendering: prefix[:ends[0]] is the member's key, '{'
// and the first key with its colon and the value's opening quote;
// prefix[ends[i-1]:ends[i]] is ',' and key i with its colon and quote.
type mapKeys struct {
	keys   []string
	prefix []byte
	ends   []int32
}

// append writes m if it has exactly the remembered keys; false (and b
// unchanged in length) if not.
func (c *mapKeys) append(b []byte, m map[string]string) ([]byte, bool) {
	if len(c.keys) != len(m) {
		return b, false
	}
	start, prev := len(b), 0
	for i, k := range c.keys {
		v, ok := m[k]
		if !ok {
			return b[:start], false
		}
		end := int(c.ends[i])
		b = append(b, c.prefix[prev:end]...)
		prev = end
		b = appendStringBody(b, v)
	}
	return append(b, '}'), true
}

// remember makes kvs's keys, sorted, the remembered ones.
func (c *mapKeys) remember(key string, kvs []kv) {
	c.keys, c.prefix, c.ends = c.keys[:0], c.prefix[:0], c.ends[:0]
	size := len(key) + 1
	for _, p := range kvs {
		size += len(p.k) + 3
	}
	if len(kvs) > maxMapKeys || size > maxFragment/6 { // escaping at most sextuples
		return
	}
	c.prefix = append(c.prefix, key...)
	c.prefix = append(c.prefix, '{')
	for i, p := range kvs {
		if i > 0 {
			c.prefix = append(c.prefix, ',')
		}
		c.prefix = AppendJSONString(c.prefix, p.k)
		c.prefix = append(c.prefix, ':', '"')
		c.ends = append(c.ends, int32(len(c.prefix)))
		c.keys = append(c.keys, p.k)
	}
}
