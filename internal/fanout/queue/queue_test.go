package queue

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/record"
)

var _ fanout.Sink = (*Queue)(nil)

// An outage of a real HTTP backend: records accepted before and during it
// all arrive once the backend is back, in order (one worker), none lost.
func TestOutageOverRealSocketsWithSpill(t *testing.T) {
	srv := newNDJSONServer(t)
	cfg := fastConfig()
	cfg.Disk.Dir = t.TempDir()
	q := newQueue(t, newHTTPExporter(srv.addr), cfg)

	consume(t, q, recs(0, 300), 7)
	srv.waitUnique(t, 300)
	srv.down()
	consume(t, q, recs(300, 2000), 7) // far more than memory holds: spills
	if s := q.Stats(); s.DiskRecords == 0 {
		t.Fatalf("nothing spilled to disk during the outage: %+v", s)
	}
	srv.up(t)
	consume(t, q, recs(2000, 2100), 7)
	srv.waitUnique(t, 2100)
	shutdown(t, q)

	srv.mu.Lock()
	defer srv.mu.Unlock()
	assertInOrder(t, srv.order, 2100)
	dups := 0
	for _, n := range srv.seen {
		dups += n - 1
	}
	// A batch cut off by the listener closing may arrive twice; a sink
	// with ids (Elasticsearch) absorbs that. Everything arrived at least
	// once, exactly once after dedup.
	t.Logf("requests=%d duplicates=%d", srv.requests, dups)
}

// kill -9 during an outage: the next Queue on the same directory replays
// what was spilled, including the memory backlog moved there on spill.
func TestCrashDuringOutageReplaysDisk(t *testing.T) {
	dir := t.TempDir()
	g := newGate(false)
	cfg := fastConfig()
	cfg.Disk.Dir = dir
	cfg.Batch.MaxRecords = 1000
	cfg.Batch.MaxWait = Duration(time.Hour) // memory holds until it overflows
	q := newQueue(t, funcExporter{"gate", g.export}, cfg)
	consume(t, q, recs(0, 80), 80)  // memory
	consume(t, q, recs(80, 101), 7) // overflow: memory and new records to disk
	for deadline := time.Now().Add(time.Minute); q.disk.Unread(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the worker never read the spilled records")
		}
	}
	// The worker holds the whole backlog in flight (the backend is down):
	// nothing is unread, yet new records must still go to disk, or a
	// crash loses them. When the worker got here between two calls (under
	// load), the records after it stayed in memory: the flake of 423 of
	// 500 on disk, 11 calls of 7 records short.
	consume(t, q, recs(101, 178), 7)
	if s := q.Stats(); s.DiskRecords != 178 {
		t.Fatalf("disk holds %d records, want 178", s.DiskRecords)
	}
	q.crash()

	g.set(true)
	q2 := newQueue(t, funcExporter{"gate", g.export}, cfg)
	g.waitUnique(t, 178)
	shutdown(t, q2)
	assertInOrder(t, g.order, 178)
}

// Write-ahead mode (memory.records: 0): every record is on disk before
// ConsumeRecords returns, so a crash loses nothing not yet committed.
func TestWriteAheadCrash(t *testing.T) {
	dir := t.TempDir()
	g := newGate(false)
	cfg := fastConfig()
	cfg.Disk.Dir = dir
	cfg.Memory.Records = intp(0)
	q := newQueue(t, funcExporter{"gate", g.export}, cfg)
	consume(t, q, recs(0, 250), 3)
	q.crash()
	g.set(true)
	q2 := newQueue(t, funcExporter{"gate", g.export}, cfg)
	g.waitUnique(t, 250)
	shutdown(t, q2)
	assertInOrder(t, g.order, 250)
}

// Shutdown with the backend down persists memory and in-flight records.
func TestShutdownPersistsToDisk(t *testing.T) {
	dir := t.TempDir()
	g := newGate(false)
	cfg := fastConfig()
	cfg.Disk.Dir = dir
	q := newQueue(t, funcExporter{"gate", g.export}, cfg)
	consume(t, q, recs(0, 60), 5)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := q.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := q.ConsumeRecords(context.Background(), recs(60, 61)); err != ErrClosed {
		t.Fatalf("ConsumeRecords after Shutdown = %v", err)
	}
	g.set(true)
	q2 := newQueue(t, funcExporter{"gate", g.export}, cfg)
	g.waitUnique(t, 60)
	shutdown(t, q2)
}

// Without a disk, Shutdown reports what it could not deliver.
func TestShutdownMemoryOnlyReportsLoss(t *testing.T) {
	g := newGate(false)
	reg := prometheus.NewRegistry()
	q, err := New(funcExporter{"gate", g.export}, fastConfig(), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	consume(t, q, recs(0, 30), 30)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := q.Shutdown(ctx); err == nil || !strings.Contains(err.Error(), "30 records") {
		t.Fatalf("Shutdown = %v", err)
	}
	if v := value(q.m.dropped.WithLabelValues(ReasonShutdown)); v != 30 {
		t.Fatalf("dropped{shutdown} = %v", v)
	}
}

// Overflow policies when memory and disk are full, each counted.
func TestOverflowPolicies(t *testing.T) {
	for _, tc := range []struct {
		policy string
		disk   bool
	}{
		{DropNewest, false}, {DropOldest, false}, {Block, false},
		{DropNewest, true}, {DropOldest, true}, {Block, true},
	} {
		name := tc.policy
		if tc.disk {
			name += "/disk"
		}
		t.Run(name, func(t *testing.T) {
			g := newGate(false)
			cfg := fastConfig()
			cfg.Memory.Records = intp(50)
			cfg.Batch.MaxRecords = 10
			cfg.Overflow = OverflowConfig{Policy: tc.policy, BlockTimeout: Duration(time.Millisecond)}
			if tc.disk {
				cfg.Disk.Dir = t.TempDir()
				cfg.Disk.SegmentBytes = 8 << 10
				cfg.Disk.MaxBytes = 32 << 10
			}
			reg := prometheus.NewRegistry()
			q, err := New(funcExporter{"gate", g.export}, cfg, reg, nil)
			if err != nil {
				t.Fatal(err)
			}
			const total = 2000
			consume(t, q, recs(0, total), 5)

			dropped := func(reason string) float64 { return value(q.m.dropped.WithLabelValues(reason)) }
			lost := dropped(ReasonQueueFull) + dropped(ReasonOldest) + dropped(ReasonBlockTimeout)
			switch tc.policy {
			case DropNewest:
				if dropped(ReasonQueueFull) == 0 {
					t.Fatal("nothing counted as queue_full")
				}
			case DropOldest:
				if dropped(ReasonOldest) == 0 {
					t.Fatal("nothing counted as evicted")
				}
			case Block:
				if dropped(ReasonBlockTimeout) == 0 {
					t.Fatal("nothing counted as block_timeout")
				}
			}
			g.set(true)
			want := total - int(lost)
			g.waitUnique(t, want)
			shutdown(t, q)
			sent := value(q.m.sent)
			if int(sent) != want || g.unique() != want {
				t.Fatalf("sent %v, arrived %d, want %d (= %d offered - %v dropped)", sent, g.unique(), want, total, lost)
			}
			if tc.policy == DropOldest {
				// The newest record survives; the oldest were evicted.
				g.mu.Lock()
				newest := g.seen[total-1]
				g.mu.Unlock()
				if newest == 0 {
					t.Fatal("drop_oldest lost the newest record")
				}
			}
		})
	}
}

// Block makes the source wait while there is room coming: with the
// backend up, a tiny memory queue and block, nothing is dropped.
func TestBlockWaitsForRoom(t *testing.T) {
	g := newGate(true)
	cfg := fastConfig()
	cfg.Memory.Records = intp(10)
	cfg.Batch.MaxRecords = 5
	cfg.Overflow = OverflowConfig{Policy: Block, BlockTimeout: Duration(time.Minute)}
	q := newQueue(t, funcExporter{"gate", g.export}, cfg)
	consume(t, q, recs(0, 1000), 5)
	g.waitUnique(t, 1000)
	shutdown(t, q)
	if v := value(q.m.dropped.WithLabelValues(ReasonBlockTimeout)); v != 0 {
		t.Fatalf("dropped %v", v)
	}
}

// Poison records are isolated by splitting and dead-lettered; the rest of
// their batches is delivered.
func TestPoisonRecordsSplitAndDeadLettered(t *testing.T) {
	poison := map[int]bool{3: true, 57: true, 58: true, 199: true}
	var mu sync.Mutex
	got := map[int]int{}
	var calls atomic.Int64
	exp := funcExporter{"poison", func(_ context.Context, b []*record.Record) error {
		calls.Add(1)
		for _, r := range b {
			if poison[idOf(r)] {
				return fanout.Permanent(errBad)
			}
		}
		mu.Lock()
		for _, r := range b {
			got[idOf(r)]++
		}
		mu.Unlock()
		return nil
	}}
	cfg := fastConfig()
	cfg.Batch.MaxRecords = 64
	cfg.Memory.Records = intp(1000)
	cfg.DeadLetter = filepath.Join(t.TempDir(), "dead.ndjson")
	q := newQueue(t, exp, cfg)
	consume(t, q, recs(0, 200), 200)
	shutdown(t, q)

	if len(got) != 196 {
		t.Fatalf("delivered %d, want 196", len(got))
	}
	for id, n := range got {
		if n != 1 || poison[id] {
			t.Fatalf("id %d delivered %d times (poison %v)", id, n, poison[id])
		}
	}
	f, err := os.Open(cfg.DeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dead := map[int]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		r, err := record.ParseJSON(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		dead[idOf(r)] = true
	}
	if len(dead) != len(poison) {
		t.Fatalf("dead letters %v, want %v", dead, poison)
	}
	for id := range poison {
		if !dead[id] {
			t.Fatalf("poison %d not dead-lettered", id)
		}
	}
	if v := value(q.m.deadLettered); v != 4 {
		t.Fatalf("dead_lettered_total = %v", v)
	}
	if v := value(q.m.failed); v != 4 {
		t.Fatalf("records_failed_total = %v", v)
	}
	t.Logf("export calls: %d", calls.Load())
}

type stringErr string

func (e stringErr) Error() string { return string(e) }

const errBad = stringErr("mapper_parsing_exception")

// A PartialError retries only its Retry records.
func TestPartialErrorRetriesOnlyThoseRecords(t *testing.T) {
	var mu sync.Mutex
	attempts := map[int]int{}
	accepted := map[int]int{}
	exp := funcExporter{"partial", func(_ context.Context, b []*record.Record) error {
		mu.Lock()
		defer mu.Unlock()
		var retry []*record.Record
		for _, r := range b {
			id := idOf(r)
			attempts[id]++
			// Odd ids are throttled (429) on their first two attempts.
			if id%2 == 1 && attempts[id] <= 2 {
				retry = append(retry, r)
				continue
			}
			accepted[id]++
		}
		if len(retry) > 0 {
			return &fanout.PartialError{Retry: retry, Err: stringErr("429")}
		}
		return nil
	}}
	q := newQueue(t, exp, fastConfig())
	consume(t, q, recs(0, 100), 10)
	shutdown(t, q)
	for id := 0; id < 100; id++ {
		want := 1
		if id%2 == 1 {
			want = 3
		}
		if accepted[id] != 1 || attempts[id] != want {
			t.Fatalf("id %d: accepted %d times after %d attempts (want 1 after %d)", id, accepted[id], attempts[id], want)
		}
	}
	if v := value(q.m.retried); v != 100 {
		t.Fatalf("records_retried_total = %v, want 100 (50 odd ids x 2)", v)
	}
	if v := value(q.m.sent); v != 100 {
		t.Fatalf("records_sent_total = %v", v)
	}
}

// retry.max_elapsed gives up on a batch (dead-lettered or counted) instead
// of retrying for ever.
func TestRetryMaxElapsed(t *testing.T) {
	g := newGate(false)
	cfg := fastConfig()
	cfg.Retry.MaxElapsed = Duration(5 * time.Millisecond)
	q := newQueue(t, funcExporter{"gate", g.export}, cfg)
	consume(t, q, recs(0, 20), 20)
	shutdown(t, q)
	if v := value(q.m.dropped.WithLabelValues(ReasonRetryExpired)); v != 20 {
		t.Fatalf("dropped{retry_expired} = %v", v)
	}
}

func TestBackoffIsCappedWithFullJitter(t *testing.T) {
	b := backoff{initial: 100 * time.Millisecond, max: 10 * time.Second}
	if b.ceiling(0) != 100*time.Millisecond || b.ceiling(3) != 800*time.Millisecond {
		t.Fatalf("ceilings %v %v", b.ceiling(0), b.ceiling(3))
	}
	for n := 0; n < 500; n++ {
		if c := b.ceiling(n); c > b.max || c <= 0 {
			t.Fatalf("ceiling(%d) = %v", n, c)
		}
		if d := b.delay(n, 0.999999); d >= b.max+1 || d < 0 {
			t.Fatalf("delay(%d) = %v", n, d)
		}
	}
	if b.delay(1000, 0) != 0 {
		t.Fatal("full jitter must reach 0")
	}
}

// The rate limit holds: at every export, what was sent so far is within
// burst + rate*elapsed (an upper bound that cannot flake).
func TestRateLimitRespected(t *testing.T) {
	const rate, burst = 2000.0, 50
	var mu sync.Mutex
	var sent int
	var start time.Time
	var violations []string
	exp := funcExporter{"rated", func(_ context.Context, b []*record.Record) error {
		mu.Lock()
		defer mu.Unlock()
		sent += len(b)
		if allowed := burst + rate*time.Since(start).Seconds(); float64(sent) > allowed+1 {
			violations = append(violations, "sent "+itoa(sent)+" > allowed "+itoa(int(allowed)))
		}
		return nil
	}}
	cfg := fastConfig()
	cfg.Workers = 3
	cfg.Batch.MaxRecords = 40
	cfg.RateLimit = RateConfig{RecordsPerSecond: rate, Burst: burst}
	cfg.Memory.Records = intp(1000)
	start = time.Now()
	q := newQueue(t, exp, cfg)
	consume(t, q, recs(0, 600), 20)
	shutdown(t, q)
	if sent != 600 || len(violations) > 0 {
		t.Fatalf("sent %d; violations %v", sent, violations)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestMetricsRegisteredWithSinkLabel(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := newGate(true)
	cfg := fastConfig()
	cfg.Disk.Dir = t.TempDir()
	q, err := New(funcExporter{"loki", g.export}, cfg, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	consume(t, q, recs(0, 10), 10)
	g.waitUnique(t, 10)
	shutdown(t, q)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		for _, m := range mf.GetMetric() {
			ok := false
			for _, l := range m.GetLabel() {
				ok = ok || (l.GetName() == "sink" && l.GetValue() == "loki")
			}
			if !ok {
				t.Fatalf("%s without sink=loki", mf.GetName())
			}
		}
	}
	for _, n := range []string{
		"meshtrail_sink_records_sent_total", "meshtrail_sink_records_retried_total", "meshtrail_sink_records_failed_total",
		"meshtrail_sink_dropped_total", "meshtrail_sink_queue_records", "meshtrail_sink_queue_bytes",
		"meshtrail_sink_oldest_record_age_seconds", "meshtrail_sink_batches_sent_total",
		"meshtrail_sink_export_duration_seconds", "meshtrail_sink_dead_lettered_total",
	} {
		if !names[n] {
			t.Errorf("metric %s missing", n)
		}
	}
	// A second queue for the same sink name on one registry is an error.
	if _, err := New(funcExporter{"loki", g.export}, fastConfig(), reg, nil); err == nil {
		t.Fatal("duplicate sink metrics accepted")
	}
}

// With the disk at its cap and all of it in flight, new records still go
// to memory when it has room rather than being dropped: nothing unread
// waits on disk, so memory keeps the order.
func TestFullDiskInFlightFallsBackToMemory(t *testing.T) {
	g := newGate(false)
	cfg := fastConfig()
	cfg.Memory.Records = intp(100)
	cfg.Batch.MaxRecords = 1000
	cfg.Batch.MaxWait = Duration(time.Hour)
	cfg.Disk.Dir = t.TempDir()
	cfg.Disk.SegmentBytes = 8 << 10
	// Room for exactly the first spill: memory's 100 and the 10 that
	// overflowed it.
	var spilled int64
	for _, r := range recs(0, 110) {
		spilled += int64(8 + len(appendMessage(nil, &item{rec: r, size: r.Size()})))
	}
	cfg.Disk.MaxBytes = spilled + 100
	reg := prometheus.NewRegistry()
	q, err := New(funcExporter{"gate", g.export}, cfg, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	consume(t, q, recs(0, 110), 10)
	if s := q.Stats(); s.DiskRecords != 110 {
		t.Fatalf("%d records on disk, want the 110 of the spill", s.DiskRecords)
	}
	for deadline := time.Now().Add(time.Minute); q.disk.Unread(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the worker never read the disk backlog")
		}
	}
	consume(t, q, recs(110, 160), 10) // the disk is full and all in flight
	if v := value(q.m.dropped.WithLabelValues(ReasonQueueFull)); v != 0 {
		t.Fatalf("dropped %v records with memory empty", v)
	}
	g.set(true)
	shutdown(t, q) // sends memory's partial batch too (max_wait is an hour)
	assertInOrder(t, g.order, 160)
}
