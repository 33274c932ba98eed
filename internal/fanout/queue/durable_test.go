package queue

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/fanout/queue/diskq"
)

// syncSpy is the real disk log, remembering how many messages had been
// appended when each Sync returned.
type syncSpy struct {
	*diskq.Log
	mu       sync.Mutex
	appended int
	synced   int // appended as of the last Sync that returned nil
}

func (s *syncSpy) Append(msgs [][]byte) error {
	err := s.Log.Append(msgs)
	if err == nil {
		s.mu.Lock()
		s.appended += len(msgs)
		s.mu.Unlock()
	}
	return err
}

func (s *syncSpy) Sync() error {
	s.mu.Lock()
	n := s.appended
	s.mu.Unlock()
	err := s.Log.Sync()
	if err == nil {
		s.mu.Lock()
		s.synced = max(s.synced, n)
		s.mu.Unlock()
	}
	return err
}

// A durable batch is in the disk log, synced, when ConsumeDurable returns,
// even with disk.fsync: never; records only in memory are not. After a
// kill -9 the next Queue on the directory delivers the durable batch.
func TestConsumeDurableSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	g := newGate(false)
	cfg := fastConfig()
	cfg.Disk.Dir = dir
	cfg.Disk.Fsync = FsyncNever
	cfg.Batch.MaxWait = Duration(time.Hour) // keep the memory records in memory
	cfg.Batch.MaxRecords = 1000
	l, err := diskq.Open(diskq.Options{Dir: dir, SegmentBytes: 4 << 10, Fsync: diskq.FsyncNever})
	if err != nil {
		t.Fatal(err)
	}
	spy := &syncSpy{Log: l}
	q, err := NewWithLog(funcExporter{"gate", g.export}, cfg, spy, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	consume(t, q, recs(0, 30), 10) // memory only: lost in the crash
	for from := 30; from < 90; from += 20 {
		if err := q.ConsumeDurable(context.Background(), recs(from, from+20)); err != nil {
			t.Fatal(err)
		}
		spy.mu.Lock()
		synced, appended := spy.synced, spy.appended
		spy.mu.Unlock()
		if synced != appended || appended != from+20-30 {
			t.Fatalf("after ConsumeDurable(%d..%d): %d messages appended, %d synced; want %d both",
				from, from+20, appended, synced, from+20-30)
		}
	}
	q.crash()

	g.set(true)
	q2 := newQueue(t, funcExporter{"gate", g.export}, cfg)
	g.waitUnique(t, 60)
	shutdown(t, q2)
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, id := range g.order {
		if id != 30+i {
			t.Fatalf("arrival %d is id %d, want %d: only the durable records, in order", i, id, 30+i)
		}
	}
	if len(g.order) != 60 {
		t.Fatalf("%d records after the crash, want the 60 durable ones", len(g.order))
	}
}

// Memory is the head and disk the tail: records queued in memory before a
// durable batch is written to disk are still delivered before it.
func TestConsumeDurableKeepsOrder(t *testing.T) {
	g := newGate(false)
	cfg := fastConfig()
	cfg.Disk.Dir = t.TempDir()
	q := newQueue(t, funcExporter{"gate", g.export}, cfg)
	consume(t, q, recs(0, 40), 8)
	if err := q.ConsumeDurable(context.Background(), recs(40, 80)); err != nil {
		t.Fatal(err)
	}
	consume(t, q, recs(80, 120), 8)
	if err := q.ConsumeDurable(context.Background(), recs(120, 130)); err != nil {
		t.Fatal(err)
	}
	g.set(true)
	g.waitUnique(t, 130)
	shutdown(t, q)
	assertInOrder(t, g.order, 130)
}

// A full queue refuses a durable batch with ErrFull after block_timeout:
// nothing of it is queued, nothing is counted as dropped or sent, and what
// was acknowledged before is all delivered.
func TestConsumeDurableFull(t *testing.T) {
	for _, disk := range []bool{false, true} {
		name := "memory"
		if disk {
			name = "disk"
		}
		t.Run(name, func(t *testing.T) {
			g := newGate(false)
			cfg := fastConfig()
			cfg.Memory.Records = intp(50)
			cfg.Batch.MaxRecords = 10
			cfg.Overflow = OverflowConfig{Policy: DropNewest, BlockTimeout: Duration(20 * time.Millisecond)}
			if disk {
				cfg.Disk.Dir = t.TempDir()
				cfg.Disk.SegmentBytes = 8 << 10
				cfg.Disk.MaxBytes = 32 << 10
			}
			reg := prometheus.NewRegistry()
			q, err := New(funcExporter{"gate", g.export}, cfg, reg, nil)
			if err != nil {
				t.Fatal(err)
			}
			accepted := 0
			var full error
			for accepted < 10000 {
				err := q.ConsumeDurable(context.Background(), recs(accepted, accepted+10))
				if err != nil {
					full = err
					break
				}
				accepted += 10
			}
			if !errors.Is(full, ErrFull) || !strings.Contains(full.Error(), "sink gate") {
				t.Fatalf("after %d records: ConsumeDurable = %v, want ErrFull naming the sink", accepted, full)
			}
			// A cancelled caller gets ErrFull too, saying why.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := q.ConsumeDurable(ctx, recs(accepted, accepted+10)); !errors.Is(err, ErrFull) || !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled ConsumeDurable = %v", err)
			}
			g.set(true)
			g.waitUnique(t, accepted)
			shutdown(t, q)
			if got := g.unique(); got != accepted {
				t.Fatalf("%d records arrived, want the %d acknowledged (the refused batch stays with the source)", got, accepted)
			}
			for _, reason := range []string{ReasonQueueFull, ReasonOldest, ReasonBlockTimeout} {
				if v := value(q.m.dropped.WithLabelValues(reason)); v != 0 {
					t.Fatalf("dropped{%s} = %v: a refused durable batch is not a drop", reason, v)
				}
			}
			if v := value(q.m.sent); int(v) != accepted {
				t.Fatalf("sent %v, want %d", v, accepted)
			}
			if err := q.ConsumeDurable(context.Background(), recs(0, 1)); err != ErrClosed {
				t.Fatalf("ConsumeDurable after Shutdown = %v, want ErrClosed", err)
			}
		})
	}
}

// A durable caller waits for room, as the block policy does, rather than
// failing at once: room made within block_timeout means success.
func TestConsumeDurableWaitsForRoom(t *testing.T) {
	g := newGate(false)
	cfg := fastConfig()
	cfg.Memory.Records = intp(20)
	cfg.Batch.MaxRecords = 10
	cfg.Overflow = OverflowConfig{Policy: DropNewest, BlockTimeout: Duration(time.Minute)}
	q := newQueue(t, funcExporter{"gate", g.export}, cfg)
	n := 0
	for ; n < 30; n += 10 { // 20 in memory, 10 in flight
		if err := q.ConsumeDurable(context.Background(), recs(n, n+10)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- q.ConsumeDurable(context.Background(), recs(30, 40)) }()
	select {
	case err := <-done:
		t.Fatalf("ConsumeDurable returned %v with the queue full and the backend down", err)
	case <-time.After(50 * time.Millisecond):
	}
	g.set(true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	g.waitUnique(t, 40)
	shutdown(t, q)
	assertInOrder(t, g.order, 40)
}

// A durable caller waiting for room when Shutdown begins gets ErrClosed,
// not a late append to a log being closed.
func TestConsumeDurableWaitingAtShutdown(t *testing.T) {
	g := newGate(false)
	cfg := fastConfig()
	cfg.Memory.Records = intp(10)
	cfg.Batch.MaxRecords = 10
	cfg.Overflow = OverflowConfig{Policy: DropNewest, BlockTimeout: Duration(time.Minute)}
	q := newQueue(t, funcExporter{"gate", g.export}, cfg)
	for n := 0; n < 20; n += 10 { // 10 in flight, 10 in memory
		if err := q.ConsumeDurable(context.Background(), recs(n, n+10)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- q.ConsumeDurable(context.Background(), recs(20, 30)) }()
	time.Sleep(20 * time.Millisecond) // let it start waiting; either order is correct
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	q.Shutdown(ctx) // memory only: reports the loss of the 20
	if err := <-done; err != ErrClosed {
		t.Fatalf("ConsumeDurable during Shutdown = %v, want ErrClosed", err)
	}
}
