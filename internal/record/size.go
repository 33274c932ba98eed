package record

import (
	"sync"
	"sync/atomic"
)

// sizers render records to measure them, from many goroutines at once.
var sizers = sync.Pool{New: func() any { return new(sizer) }}

type sizer struct {
	enc Encoder
	buf []byte
}

// Size is the length of r's JSON form, len(AppendJSON(r)): what the sink
// queues count against batch.max_bytes. The first call renders r once;
// the result is cached in r (race-free, so every sink's queue can ask at
// once), so a record fanned out to four sinks is measured once, not four
// times.
//
// Like every consumer, Size relies on the record contract: a Record is not
// modified after it is handed to a Consumer. A copy made by value carries
// the cached size, so change a copy only if the original was never
// measured.
func (r *Record) Size() int {
	if n := atomic.LoadInt64(&r.size); n > 0 {
		return int(n)
	}
	s := sizers.Get().(*sizer)
	s.buf = s.enc.Append(s.buf[:0], r)
	n := len(s.buf)
	if cap(s.buf) > 64<<10 {
		s.buf = nil // do not pin a huge record's buffer in the pool
	}
	sizers.Put(s)
	atomic.StoreInt64(&r.size, int64(n))
	return n
}

// sizeKnown returns the cached size, 0 when r was never measured.
func (r *Record) sizeKnown() int { return int(atomic.LoadInt64(&r.size)) }

// setSize caches a size known from elsewhere (the first JSON rendering).
func (r *Record) setSize(n int) { atomic.StoreInt64(&r.size, int64(n)) }
