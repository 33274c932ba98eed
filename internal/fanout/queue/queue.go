package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/fanout/internal/ratelimit"
	"github.com/meshtrail/meshtrail/internal/fanout/queue/diskq"
	"github.com/meshtrail/meshtrail/internal/record"
)

// ErrClosed is returned by ConsumeRecords and ConsumeDurable after
// Shutdown.
var ErrClosed = errors.New("queue: shut down")

// ErrFull is wrapped by the error ConsumeDurable returns when the queue
// had no room for the batch within overflow.block_timeout (or before its
// context ended). Nothing of the batch was queued: the source keeps it
// (and its checkpoint) and offers it again later.
var ErrFull = errors.New("queue full")

// item is one queued record with what the queue needs to know about it.
type item struct {
	rec  *record.Record
	size int   // rec.Size(), len(record.AppendJSON(rec)): what batch.max_bytes counts
	at   int64 // when it was accepted, Unix nanoseconds
}

// Queue is a fanout.Sink that queues records for one exporter. See the
// package documentation.
type Queue struct {
	name string
	exp  fanout.Exporter
	cfg  Config
	log  *slog.Logger
	m    *metrics
	disk Log // nil: memory only
	dead *deadLetter
	rate *ratelimit.Bucket // nil: unlimited
	bo   backoff
	// holdUntil is when a backend's Retry-After ends (Unix nanoseconds; 0
	// or past: none): no worker sends before it.
	holdUntil atomic.Int64

	// run is the context of exports and retry waits; cancelled when
	// Shutdown's context ends (or on a simulated crash).
	run       context.Context
	cancelRun context.CancelFunc
	workers   sync.WaitGroup

	mu       sync.Mutex
	cond     *sync.Cond // records added, room made, or state changed
	mem      []item     // memory queue, oldest first, from memHead
	memHead  int
	memBytes int64
	memCap   int
	closing  bool // Shutdown called: accept nothing, drain
	stopped  bool // Shutdown's context ended: workers stop taking batches
	inflight map[*batch]struct{}
	leftover []item // memory batches that Shutdown interrupted
	// durable counts ConsumeDurable calls between their append and their
	// Sync, so Shutdown closes the log only after they are settled.
	durable sync.WaitGroup
	diskAt  int64 // enqueue time of the last record read from disk

	replay replayProgress
}

// New returns a started Queue in front of exp. reg receives the sink's
// metrics (labelled sink=exp.Name()); nil disables them. logger nil
// discards logs.
func New(exp fanout.Exporter, cfg Config, reg prometheus.Registerer, logger *slog.Logger) (*Queue, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sink %s: %w", exp.Name(), err)
	}
	var l Log
	if cfg.Disk.Dir != "" {
		if logger == nil {
			logger = slog.New(slog.DiscardHandler)
		}
		d, err := diskq.Open(diskq.Options{
			Dir: cfg.Disk.Dir, SegmentBytes: cfg.Disk.SegmentBytes, MaxBytes: cfg.Disk.MaxBytes,
			Fsync: diskq.FsyncPolicy(cfg.Disk.Fsync), FsyncInterval: cfg.Disk.FsyncInterval.D(),
			Logger: logger.With("sink", exp.Name()),
		})
		if err != nil {
			return nil, fmt.Errorf("sink %s: queue.disk: %w", exp.Name(), err)
		}
		l = d
	}
	q, err := NewWithLog(exp, cfg, l, reg, logger)
	if err != nil && l != nil {
		l.Close()
	}
	return q, err
}

// NewWithLog is New with the spill area given rather than built from
// cfg.Disk (nil: memory only). It is the seam for a distributed log.
func NewWithLog(exp fanout.Exporter, cfg Config, l Log, reg prometheus.Registerer, logger *slog.Logger) (*Queue, error) {
	cfg = cfg.WithDefaults()
	if l == nil && *cfg.Memory.Records == 0 {
		return nil, fmt.Errorf("sink %s: queue.memory.records: must be > 0 without a disk", exp.Name())
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sink %s: %w", exp.Name(), err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	q := &Queue{
		name:     exp.Name(),
		exp:      exp,
		cfg:      cfg,
		log:      logger.With("sink", exp.Name()),
		disk:     l,
		bo:       backoff{initial: cfg.Retry.InitialBackoff.D(), max: cfg.Retry.MaxBackoff.D()},
		memCap:   *cfg.Memory.Records,
		inflight: make(map[*batch]struct{}),
	}
	q.cond = sync.NewCond(&q.mu)
	if cfg.RateLimit.RecordsPerSecond > 0 {
		q.rate = ratelimit.New(cfg.RateLimit.RecordsPerSecond, cfg.RateLimit.Burst)
	}
	var err error
	if q.m, err = newMetrics(q, reg); err != nil {
		return nil, err
	}
	q.dead = &deadLetter{path: cfg.DeadLetter}
	if l != nil {
		if n, _ := l.Len(); n > 0 {
			q.replay.start(n, time.Now())
		}
	}
	q.run, q.cancelRun = context.WithCancel(context.Background())
	for range cfg.Workers {
		q.workers.Add(1)
		go q.work()
	}
	return q, nil
}

// Name is the exporter's name.
func (q *Queue) Name() string { return q.name }

// ConsumeRecords queues recs and returns without waiting for the backend.
// Records an overflow policy discards are counted, not reported as an
// error (the source could do nothing better with them); with the block
// policy it waits at most overflow.block_timeout or until ctx ends.
func (q *Queue) ConsumeRecords(ctx context.Context, recs []*record.Record) error {
	if len(recs) == 0 {
		return nil
	}
	items := newItems(recs)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closing {
		q.m.dropped.WithLabelValues(ReasonClosed).Add(float64(len(items)))
		return ErrClosed
	}
	q.enqueueLocked(ctx, items)
	return nil
}

// newItems wraps recs for the queue. The sizes come from record.Size,
// which renders each record once for every sink's queue together.
func newItems(recs []*record.Record) []item {
	items := make([]item, len(recs))
	now := time.Now().UnixNano()
	for i, r := range recs {
		items[i] = item{rec: r, size: r.Size(), at: now}
	}
	return items
}

// ConsumeDurable queues recs and returns nil only once the queue holds
// them: with a disk log, appended to it (after whatever is already on
// disk; older records still in memory go first, so order is kept) and
// synced to stable storage whatever disk.fsync says; without one, in
// memory. It never drops: when there is no room it waits, as the block
// policy does, up to overflow.block_timeout or ctx's end, and then
// returns an error wrapping ErrFull with nothing queued, so the source
// keeps its checkpoint and retries. After Shutdown it returns ErrClosed.
// An error other than those (the disk failed) may leave the batch queued
// anyway: retrying it gives a duplicate, which at-least-once allows.
func (q *Queue) ConsumeDurable(ctx context.Context, recs []*record.Record) error {
	if len(recs) == 0 {
		return nil
	}
	items := newItems(recs)
	q.mu.Lock()
	var deadline time.Time
	for {
		if q.closing { // checked again after every wait: Shutdown may have begun
			q.mu.Unlock()
			return ErrClosed
		}
		var err error
		if q.disk != nil {
			err = q.appendDisk(items)
		} else if q.memLen()+len(items) <= q.memCap {
			q.pushMem(items)
		} else {
			err = ErrLogFull // memory is the whole queue: the same wait
			if len(items) > q.memCap {
				q.mu.Unlock()
				return fmt.Errorf("sink %s: %w: a batch of %d records never fits queue.memory.records (%d) without a disk",
					q.name, ErrFull, len(items), q.memCap)
			}
		}
		if err == nil {
			break
		}
		if !errors.Is(err, diskq.ErrFull) && !errors.Is(err, ErrLogFull) {
			q.mu.Unlock()
			return fmt.Errorf("sink %s: disk queue append: %w", q.name, err)
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(q.cfg.Overflow.BlockTimeout.D())
		}
		if !time.Now().Before(deadline) || ctx.Err() != nil {
			q.mu.Unlock()
			if ctx.Err() != nil {
				return fmt.Errorf("sink %s: %w: no room for %d records before the caller gave up: %w",
					q.name, ErrFull, len(items), context.Cause(ctx))
			}
			return fmt.Errorf("sink %s: %w: no room for %d records within overflow.block_timeout (%v)",
				q.name, ErrFull, len(items), q.cfg.Overflow.BlockTimeout.D())
		}
		q.waitLocked(ctx, deadline)
	}
	q.cond.Broadcast()
	if q.disk == nil {
		q.mu.Unlock()
		return nil
	}
	// Sync outside the queue's lock: other sources keep enqueueing, and
	// concurrent durable calls share one fsync.
	q.durable.Add(1)
	q.mu.Unlock()
	defer q.durable.Done()
	if err := q.disk.Sync(); err != nil {
		return fmt.Errorf("sink %s: disk queue sync: %w", q.name, err)
	}
	return nil
}

// enqueueLocked places items in memory or on disk, or applies the overflow
// policy. Memory is the head of the queue and disk its tail, so a record
// goes to memory only while the disk holds nothing undelivered. (Not
// merely nothing unread: during an outage a worker holds the backlog in
// flight, nothing is unread, and records put in memory then would be lost
// to a crash although the disk had room.)
func (q *Queue) enqueueLocked(ctx context.Context, items []item) {
	var deadline time.Time
	for {
		backlog := q.diskBacklog()
		fits := q.memLen()+len(items) <= q.memCap
		if !backlog && fits {
			q.pushMem(items)
			q.cond.Broadcast()
			return
		}
		if q.disk != nil && q.spillLocked(items, backlog) {
			q.cond.Broadcast()
			return
		}
		if fits && !q.disk.Unread() {
			// The disk is full, but all of it is in flight: memory is
			// behind it in order, and better than a drop.
			q.pushMem(items)
			q.cond.Broadcast()
			return
		}
		// Memory and disk are full.
		switch q.cfg.Overflow.Policy {
		case DropOldest:
			if q.evictLocked(len(items)) {
				continue
			}
			q.m.dropped.WithLabelValues(ReasonQueueFull).Add(float64(len(items)))
			return
		case Block:
			if deadline.IsZero() {
				deadline = time.Now().Add(q.cfg.Overflow.BlockTimeout.D())
			}
			if !time.Now().Before(deadline) || ctx.Err() != nil || q.closing {
				q.m.dropped.WithLabelValues(ReasonBlockTimeout).Add(float64(len(items)))
				return
			}
			q.waitLocked(ctx, deadline)
		default: // DropNewest
			q.m.dropped.WithLabelValues(ReasonQueueFull).Add(float64(len(items)))
			return
		}
	}
}

// diskBacklog reports whether the disk holds records not yet delivered
// (unread, or read and in flight).
func (q *Queue) diskBacklog() bool {
	if q.disk == nil {
		return false
	}
	n, _ := q.disk.Len()
	return n > 0
}

// spillLocked appends items to the disk log, moving the memory queue there
// first when it fits (so it survives a crash). It reports whether items
// were written. With a backlog on disk, memory stays where it is: its
// records are older than the backlog (ConsumeDurable writes to disk while
// memory holds records), and memory is sent first.
func (q *Queue) spillLocked(items []item, backlog bool) bool {
	if n := q.memLen(); n > 0 && !backlog && q.appendDisk(append(q.mem[q.memHead:q.memHead+n:q.memHead+n], items...)) == nil {
		q.clearMem()
		return true
	}
	return q.appendDisk(items) == nil
}

func (q *Queue) appendDisk(items []item) error {
	var size int
	for i := range items {
		size += msgHeader + items[i].size
	}
	// The JSON size is a fair first guess at the binary frames' size.
	buf := make([]byte, 0, size+64)
	msgs := make([][]byte, len(items))
	for i := range items {
		start := len(buf)
		buf = appendMessage(buf, &items[i]) // a grown buf leaves earlier msgs on the old array: fine
		msgs[i] = buf[start:len(buf):len(buf)]
	}
	err := q.disk.Append(msgs)
	if err != nil && !errors.Is(err, diskq.ErrFull) && !errors.Is(err, ErrLogFull) {
		q.log.Error("disk queue append failed; treating the disk as full", "err", err)
	}
	return err
}

// evictLocked makes room for n records by discarding the oldest ones of
// the store that is full: the disk log when spilling, else memory.
func (q *Queue) evictLocked(n int) bool {
	if q.disk != nil {
		msgs, _, err := q.disk.DropOldest()
		if err != nil {
			q.log.Error("disk queue: dropping the oldest segment failed", "err", err)
		}
		if msgs > 0 {
			q.m.dropped.WithLabelValues(ReasonOldest).Add(float64(msgs))
			q.log.Warn("queue full: evicted the oldest records on disk", "records", msgs)
			return true
		}
		if q.memCap == 0 || n > q.memCap {
			return false
		}
	}
	if n > q.memCap || q.memLen() == 0 {
		return false
	}
	k := min(q.memLen(), q.memLen()+n-q.memCap)
	for i := 0; i < k; i++ {
		q.popMem()
	}
	q.m.dropped.WithLabelValues(ReasonOldest).Add(float64(k))
	return true
}

// waitLocked waits on the cond until woken, the deadline, or ctx's end.
func (q *Queue) waitLocked(ctx context.Context, deadline time.Time) {
	wake := func() { q.mu.Lock(); q.cond.Broadcast(); q.mu.Unlock() }
	var t *time.Timer
	if !deadline.IsZero() {
		t = time.AfterFunc(time.Until(deadline), wake)
	}
	stop := context.AfterFunc(ctx, wake)
	q.cond.Wait()
	stop()
	if t != nil {
		t.Stop()
	}
}

func (q *Queue) memLen() int { return len(q.mem) - q.memHead }

func (q *Queue) pushMem(items []item) {
	if q.memHead > 0 && q.memHead >= len(q.mem)/2 {
		// Compact: slide the live part down instead of growing forever.
		n := copy(q.mem, q.mem[q.memHead:])
		clear(q.mem[n:])
		q.mem = q.mem[:n]
		q.memHead = 0
	}
	for i := range items {
		q.memBytes += int64(items[i].size)
	}
	q.mem = append(q.mem, items...)
}

func (q *Queue) popMem() item {
	it := q.mem[q.memHead]
	q.mem[q.memHead] = item{}
	q.memHead++
	q.memBytes -= int64(it.size)
	if q.memHead == len(q.mem) {
		q.mem, q.memHead = q.mem[:0], 0
	}
	return it
}

func (q *Queue) clearMem() {
	clear(q.mem)
	q.mem, q.memHead, q.memBytes = q.mem[:0], 0, 0
}

// Stats is a snapshot of the queue's depth.
type Stats struct {
	MemoryRecords, MemoryBytes int64 // queued or in flight from memory
	DiskRecords, DiskBytes     int64 // on disk, not yet committed
	OldestAge                  time.Duration
	DiskTruncatedBytes         int64
}

// Stats returns the queue's current depth.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	s := Stats{MemoryRecords: int64(q.memLen()), MemoryBytes: q.memBytes}
	var oldest int64
	older := func(at int64) {
		if at != 0 && (oldest == 0 || at < oldest) {
			oldest = at
		}
	}
	if q.memLen() > 0 {
		older(q.mem[q.memHead].at)
	}
	for b := range q.inflight {
		if !b.fromDisk {
			s.MemoryRecords += int64(len(b.recs))
			s.MemoryBytes += b.bytes
		}
		older(b.oldest)
	}
	for i := range q.leftover {
		s.MemoryRecords++
		s.MemoryBytes += int64(q.leftover[i].size)
	}
	if q.disk != nil {
		s.DiskRecords, s.DiskBytes = q.disk.Len()
		if s.DiskRecords > 0 {
			older(q.diskAt)
		}
		if st, ok := q.disk.(interface{ Stats() diskq.Stats }); ok {
			s.DiskTruncatedBytes = st.Stats().TruncatedBytes
		}
	}
	if oldest != 0 {
		s.OldestAge = max(0, since(oldest, now))
	}
	return s
}

// Shutdown stops accepting records, sends what it can until ctx ends, and
// then persists everything still queued or in flight to disk (when there
// is one). It returns an error when records had to be dropped because
// there was no disk to keep them.
func (q *Queue) Shutdown(ctx context.Context) error {
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return errors.New("queue: Shutdown called twice")
	}
	q.closing = true
	q.cond.Broadcast()
	q.mu.Unlock()

	done := make(chan struct{})
	go func() { q.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		q.mu.Lock()
		q.stopped = true
		q.cond.Broadcast()
		q.mu.Unlock()
		q.cancelRun()
		<-done
	}
	q.cancelRun()

	q.durable.Wait() // closing is set: no new ones start
	q.mu.Lock()
	rest := append(q.leftover, q.mem[q.memHead:]...)
	q.leftover = nil
	q.clearMem()
	q.mu.Unlock()

	var errs []error
	if len(rest) > 0 {
		if q.disk == nil {
			q.m.dropped.WithLabelValues(ReasonShutdown).Add(float64(len(rest)))
			errs = append(errs, fmt.Errorf("queue %s: %d records not delivered and no disk to keep them", q.name, len(rest)))
		} else if err := q.appendDisk(rest); err != nil {
			q.m.dropped.WithLabelValues(ReasonShutdown).Add(float64(len(rest)))
			errs = append(errs, fmt.Errorf("queue %s: persisting %d records: %w", q.name, len(rest), err))
		} else {
			q.log.Info("shutdown: records persisted to the disk queue", "records", len(rest))
		}
	}
	if q.disk != nil {
		if err := q.disk.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := q.dead.close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
