package endpoint

import (
	"bytes"
	"io"
	"sync"
)

// BufPool hands out byte buffers for request bodies and encoding scratch,
// so an exporter does not allocate (and clear) a megabyte per batch.
// Buffers larger than 16 MiB are not kept.
type BufPool struct{ p sync.Pool }

const maxPooled = 16 << 20

// Get returns an empty buffer with at least n bytes of capacity.
func (bp *BufPool) Get(n int) []byte {
	if b, ok := bp.p.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:0]
	} else if ok {
		bp.p.Put(b)
	}
	return make([]byte, 0, n)
}

// Put returns b to the pool; b must not be used after.
func (bp *BufPool) Put(b []byte) {
	if cap(b) == 0 || cap(b) > maxPooled {
		return
	}
	b = b[:0]
	bp.p.Put(&b)
}

// Body is a request body over a pooled buffer: the buffer goes back to
// its pool when the HTTP transport closes the body (http.RoundTripper
// closes the request body once it has written it, possibly after
// RoundTrip returned), never before. Set the request's ContentLength
// to Len: net/http cannot see through the type.
type Body struct {
	mu   sync.Mutex // the transport may Close while a Read runs
	r    bytes.Reader
	buf  []byte
	pool *BufPool
}

// NewBody returns a body reading buf, which goes back to pool on Close.
func NewBody(buf []byte, pool *BufPool) *Body {
	b := &Body{buf: buf, pool: pool}
	b.r.Reset(buf)
	return b
}

// Len is the body's length in bytes.
func (b *Body) Len() int64 { return b.r.Size() }

// Read implements io.Reader.
func (b *Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.r.Read(p)
}

// WriteTo implements io.WriterTo (the transport copies without a buffer).
func (b *Body) WriteTo(w io.Writer) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.r.WriteTo(w)
}

// Close returns the buffer to its pool; later calls do nothing.
func (b *Body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.r.Reset(nil)
	if b.pool != nil && b.buf != nil {
		b.pool.Put(b.buf)
	}
	b.buf = nil
	return nil
}
