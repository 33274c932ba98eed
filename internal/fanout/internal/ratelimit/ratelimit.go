// Package ratelimit is a token bucket shared by the sink queues (records
// per second to a backend) and the router (records per second per tenant).
// It is small on purpose: one mutex, tokens refilled lazily from the clock.
//
// It was kept rather than replaced by golang.org/x/time/rate because it
// measured faster on both of meshtrail's paths (bench_test.go, figures in
// bench/RESULTS.md): the router's TakeUpTo (a Limiter needs two calls for
// "as many as there are") and the queue's Wait.
package ratelimit

import (
	"context"
	"sync"
	"time"
)

// Bucket holds up to Burst tokens refilled at Rate per second.
type Bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

// New returns a full bucket.
func New(rate float64, burst int) *Bucket {
	return &Bucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// Burst is the most tokens one call can take.
func (b *Bucket) Burst() int { return int(b.burst) }

func (b *Bucket) refill(now time.Time) {
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	if b.last.IsZero() || now.After(b.last) {
		b.last = now
	}
}

// Allow takes n tokens at time now if there are that many.
func (b *Bucket) Allow(now time.Time, n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}

// Wait takes n tokens (n is clamped to Burst), sleeping until they are
// there. On ctx's end it gives them back and returns ctx.Err().
func (b *Bucket) Wait(ctx context.Context, n int) error {
	b.mu.Lock()
	take := min(float64(n), b.burst)
	b.refill(time.Now())
	b.tokens -= take // may go negative: a reservation on future tokens
	var wait time.Duration
	if b.tokens < 0 {
		wait = time.Duration(-b.tokens / b.rate * float64(time.Second))
	}
	b.mu.Unlock()
	if wait == 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		b.tokens += take
		b.mu.Unlock()
		return ctx.Err()
	}
}

// TakeUpTo takes as many of n tokens as there are at time now (whole
// tokens only) and returns how many it took.
func (b *Bucket) TakeUpTo(now time.Time, n int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	k := min(n, int(b.tokens))
	if k <= 0 {
		return 0
	}
	b.tokens -= float64(k)
	return k
}
