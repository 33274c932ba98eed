package queue

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/record"
)

// batch is what a worker sends: records from memory, or from one disk
// Read (committed once every record is delivered or dead-lettered).
type batch struct {
	recs     []*record.Record
	items    []item // memory batches: to put back on Shutdown
	sizes    []int  // disk batches: each record's JSON size
	bytes    int64
	oldest   int64
	fromDisk bool
	token    uint64
}

// work is one worker: take a batch, deliver it, repeat until shut down.
func (q *Queue) work() {
	defer q.workers.Done()
	for {
		b := q.next()
		if b == nil {
			return
		}
		q.deliver(b)
	}
}

// next waits for a batch: from memory when batch.max_records or
// batch.max_bytes is reached or its oldest record has waited
// batch.max_wait (or at once while shutting down or when a disk backlog
// waits behind memory), else from the disk backlog. nil means stop.
func (q *Queue) next() *batch {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if q.stopped {
			return nil
		}
		if n := q.memLen(); n > 0 {
			head := q.mem[q.memHead].at
			due := time.Unix(0, head).Add(q.cfg.Batch.MaxWait.D())
			if n >= q.cfg.Batch.MaxRecords || q.memBytes >= int64(q.cfg.Batch.MaxBytes) ||
				q.closing || !time.Now().Before(due) || (q.disk != nil && q.disk.Unread()) {
				return q.takeMemLocked()
			}
			q.waitLocked(context.Background(), due)
			continue
		}
		if q.disk != nil && q.disk.Unread() {
			if b := q.readDiskLocked(); b != nil {
				return b
			}
			continue
		}
		if q.closing {
			return nil
		}
		q.cond.Wait()
	}
}

func (q *Queue) takeMemLocked() *batch {
	b := &batch{}
	for q.memLen() > 0 && len(b.items) < q.cfg.Batch.MaxRecords {
		next := q.mem[q.memHead].size
		if len(b.items) > 0 && b.bytes+int64(next) > int64(q.cfg.Batch.MaxBytes) {
			break
		}
		it := q.popMem()
		b.items = append(b.items, it)
		b.recs = append(b.recs, it.rec)
		b.bytes += int64(it.size)
	}
	b.oldest = b.items[0].at
	q.inflight[b] = struct{}{}
	q.cond.Broadcast() // room for blocked sources
	return b
}

// readDiskLocked reads the next disk batch; nil when nothing came back
// (the caller loops). Unreadable records are counted and skipped.
func (q *Queue) readDiskLocked() *batch {
	msgs, token, err := q.disk.Read(q.cfg.Batch.MaxRecords, q.cfg.Batch.MaxBytes+msgHeader*q.cfg.Batch.MaxRecords)
	if err != nil {
		q.log.Error("disk queue read failed", "err", err)
		// Do not spin on a broken disk; wake up later.
		q.waitLocked(context.Background(), time.Now().Add(time.Second))
		return nil
	}
	if len(msgs) == 0 {
		return nil
	}
	b := &batch{fromDisk: true, token: token}
	for _, m := range msgs {
		it, err := parseMessage(m)
		if err != nil {
			q.m.dropped.WithLabelValues(ReasonCorrupt).Inc()
			q.log.Error("disk queue: undecodable record skipped", "err", err)
			continue
		}
		if b.oldest == 0 {
			b.oldest = it.at
		}
		q.diskAt = it.at
		b.recs = append(b.recs, it.rec)
		b.sizes = append(b.sizes, it.size)
		b.bytes += int64(msgHeader + it.size)
	}
	if len(b.recs) == 0 {
		if err := q.disk.Commit(token); err != nil {
			q.log.Error("disk queue commit failed", "err", err)
		}
		return nil
	}
	q.inflight[b] = struct{}{}
	return b
}

// deliver sends b and settles it: commits a disk batch, or keeps what
// Shutdown interrupted for persisting.
func (q *Queue) deliver(b *batch) {
	var rest []*record.Record
	if b.fromDisk {
		rest = q.sendSized(b.recs, b.sizes)
	} else {
		rest = q.send(q.run, b.recs, 0)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.inflight, b)
	q.cond.Broadcast()
	if b.fromDisk {
		if len(rest) > 0 {
			return // not committed: read again after the restart
		}
		if err := q.disk.Commit(b.token); err != nil {
			q.log.Error("disk queue commit failed; the batch will be sent again after a restart", "err", err)
		}
		q.replay.progress(q.log, len(b.recs), q.disk, q.cfg, time.Now())
		return
	}
	if len(rest) > 0 {
		left := make(map[*record.Record]bool, len(rest))
		for _, r := range rest {
			left[r] = true
		}
		for _, it := range b.items {
			if left[it.rec] {
				q.leftover = append(q.leftover, it)
			}
		}
	}
}

// sendSized sends a disk batch in parts of at most batch.max_bytes of
// JSON: the log reads by frame bytes, and a binary frame is smaller than
// its JSON, so one read can hold more than a request should. It returns
// what ctx's end left unsent, as send does.
func (q *Queue) sendSized(recs []*record.Record, sizes []int) []*record.Record {
	for len(recs) > 0 {
		n, bytes := 0, 0
		for n < len(recs) && (n == 0 || bytes+sizes[n] <= q.cfg.Batch.MaxBytes) {
			bytes += sizes[n]
			n++
		}
		if rest := q.send(q.run, recs[:n], 0); len(rest) > 0 {
			return append(rest, recs[n:]...)
		}
		recs, sizes = recs[n:], sizes[n:]
	}
	return nil
}

// send delivers recs, retrying and splitting as the exporter's errors say,
// and returns the records it could not settle because ctx ended. depth is
// the split depth (0 for a whole batch).
func (q *Queue) send(ctx context.Context, recs []*record.Record, depth int) []*record.Record {
	start := time.Now()
	failures := 0
	for len(recs) > 0 {
		if ctx.Err() != nil {
			return recs
		}
		if until := q.holdUntil.Load(); until > 0 {
			// A backend's Retry-After holds back every worker, not only
			// the one that was told.
			if sleep(ctx, time.Until(time.Unix(0, until))) != nil {
				return recs
			}
		}
		if q.rate != nil {
			if err := q.waitRate(ctx, len(recs)); err != nil {
				return recs
			}
		}
		actx, cancel := context.WithTimeout(ctx, q.cfg.Timeout.D())
		t0 := time.Now()
		err := q.exp.Export(actx, recs)
		cancel()
		q.m.exportDur.Observe(time.Since(t0).Seconds())

		var partial *fanout.PartialError
		switch {
		case err == nil:
			q.m.sent.Add(float64(len(recs)))
			q.m.batches.Inc()
			if failures > 0 {
				q.log.Info("export recovered", "records", len(recs), "failed_attempts", failures)
			}
			return nil
		case fanout.IsPermanent(err):
			if len(recs) == 1 {
				q.giveUp(recs, err, ReasonPermanent)
				return nil
			}
			// Split in halves until the poison records are alone.
			half := len(recs) / 2
			rest := q.send(ctx, recs[:half], depth+1)
			return append(rest, q.send(ctx, recs[half:], depth+1)...)
		case errors.As(err, &partial):
			q.m.sent.Add(float64(len(recs) - len(partial.Retry)))
			recs = partial.Retry
			if len(recs) == 0 {
				q.m.batches.Inc()
				return nil
			}
		}
		if ctx.Err() != nil {
			return recs
		}
		failures++
		if failures == 1 {
			q.log.Warn("export failed; retrying with backoff", "records", len(recs), "err", err)
		}
		if max := q.cfg.Retry.MaxElapsed.D(); max > 0 && time.Since(start) >= max {
			q.giveUp(recs, err, ReasonRetryExpired)
			return nil
		}
		wait, asked := q.bo.retryWait(failures-1, err, rand.Float64())
		if asked > 0 {
			until := time.Now().Add(asked).UnixNano()
			for {
				old := q.holdUntil.Load()
				if old >= until || q.holdUntil.CompareAndSwap(old, until) {
					break
				}
			}
		}
		if sleep(ctx, wait) != nil {
			return recs
		}
		q.m.retried.Add(float64(len(recs)))
	}
	return nil
}

// waitRate takes n tokens, in chunks no larger than the bucket's burst.
func (q *Queue) waitRate(ctx context.Context, n int) error {
	for n > 0 {
		k := min(n, q.rate.Burst())
		if err := q.rate.Wait(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// giveUp dead-letters recs, or drops them (counted) without a dead-letter
// file. Logs are sampled so a backend that rejects everything does not
// flood them.
func (q *Queue) giveUp(recs []*record.Record, cause error, reason string) {
	q.m.failed.Add(float64(len(recs)))
	n, err := q.dead.write(recs)
	if n > 0 {
		q.m.deadLettered.Add(float64(n))
	}
	if lost := len(recs) - n; lost > 0 {
		q.m.dropped.WithLabelValues(reason).Add(float64(lost))
	}
	if q.dead.sample() {
		q.log.Warn("records given up on", "records", len(recs), "reason", reason, "cause", cause,
			"dead_letter", q.cfg.DeadLetter, "dead_letter_err", err)
	}
}

// replayProgress logs the progress of a long disk replay, every
// progress_every records or progress_interval, never per record.
type replayProgress struct {
	active   bool
	total    int64
	done     int64
	lastN    int64
	lastTime time.Time
	began    time.Time
}

func (p *replayProgress) start(backlog int64, now time.Time) {
	*p = replayProgress{active: true, total: backlog, began: now, lastTime: now}
}

func (p *replayProgress) progress(log interface {
	Info(string, ...any)
}, n int, l Log, cfg Config, now time.Time) {
	if !p.active {
		p.start(0, now)
	}
	p.done += int64(n)
	left, _ := l.Len()
	if left == 0 {
		if p.done >= int64(cfg.ProgressEvery) || now.Sub(p.began) >= cfg.ProgressInterval.D() {
			log.Info("disk queue replay finished", "records", p.done, "took", now.Sub(p.began).Round(time.Millisecond))
		}
		p.active = false
		return
	}
	if p.done-p.lastN >= int64(cfg.ProgressEvery) || now.Sub(p.lastTime) >= cfg.ProgressInterval.D() {
		log.Info("disk queue replay", "sent", p.done, "left", left,
			"rate_per_s", int(float64(p.done-p.lastN)/max(now.Sub(p.lastTime).Seconds(), 1e-3)))
		p.lastN, p.lastTime = p.done, now
	}
}
