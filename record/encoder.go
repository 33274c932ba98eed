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
	nodes     [2]nodeFragment
	workloads [8]workloadFragment
	tlss      [2]tlsFragment
	upstreams [4]upstreamFragment
	maps      [numMaps]mapKeys
	day       dayCache

	nextNode, nextWorkload, nextTLS, nextUpstream uint8
}

// Append appends r as one JSON object (no trailing newline) to dst: the
// same bytes as AppendJSON(dst, r).
func (e *Encoder) Append(dst []byte, r *Record) []byte {
	return appendRecord(dst, r, e)
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

type nodeFragment struct {
	v    Node
	json []byte
	ok   bool
}

type workloadFragment struct {
	v    Workload
	json []byte
	ok   bool
}

type tlsFragment struct {
	v    TLS
	json []byte
	ok   bool
}

// upstreamHead is the part of an Upstream that names the cluster.
type upstreamHead struct {
	cluster, direction                      string
	port                                    uint32
	subset, service, serviceName, namespace string
}

type upstreamFragment struct {
	v    upstreamHead
	json []byte
	ok   bool
}

// keep copies the fragment out[from:] into frag, unless it is too large.
func keep(frag, out []byte, from int) ([]byte, bool) {
	if len(out)-from > maxFragment {
		return frag, false
	}
	return append(frag[:0], out[from:]...), true
}

func (e *Encoder) node(b []byte, n *Node) []byte {
	for i := range e.nodes {
		if f := &e.nodes[i]; f.ok && f.v == *n {
			return append(b, f.json...)
		}
	}
	from := len(b)
	b = appendNode(b, n)
	f := &e.nodes[int(e.nextNode)%len(e.nodes)]
	e.nextNode++
	f.json, f.ok = keep(f.json, b, from)
	f.v = *n
	return b
}

func (e *Encoder) workload(b []byte, w *Workload) []byte {
	for i := range e.workloads {
		if f := &e.workloads[i]; f.ok && f.v == *w {
			return append(b, f.json...)
		}
	}
	from := len(b)
	b = appendWorkload(b, w)
	f := &e.workloads[int(e.nextWorkload)%len(e.workloads)]
	e.nextWorkload++
	f.json, f.ok = keep(f.json, b, from)
	f.v = *w
	return b
}

func (e *Encoder) tls(b []byte, s *TLS) []byte {
	for i := range e.tlss {
		if f := &e.tlss[i]; f.ok && f.v == *s {
			return append(b, f.json...)
		}
	}
	from := len(b)
	b = appendTLS(b, s)
	f := &e.tlss[int(e.nextTLS)%len(e.tlss)]
	e.nextTLS++
	f.json, f.ok = keep(f.json, b, from)
	f.v = *s
	return b
}

func (e *Encoder) upstreamHead(b []byte, u *Upstream) []byte {
	h := upstreamHead{u.Cluster, u.Direction, u.Port, u.Subset, u.Service, u.ServiceName, u.ServiceNamespace}
	if h == (upstreamHead{}) {
		return b
	}
	for i := range e.upstreams {
		if f := &e.upstreams[i]; f.ok && f.v == h {
			return append(b, f.json...)
		}
	}
	from := len(b)
	b = appendUpstreamHead(b, u)
	f := &e.upstreams[int(e.nextUpstream)%len(e.upstreams)]
	e.nextUpstream++
	f.json, f.ok = keep(f.json, b, from)
	f.v = h
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
