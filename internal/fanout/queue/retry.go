package queue

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff is capped exponential backoff with full jitter: before attempt
// n (0-based count of failures so far) wait a uniformly random time in
// [0, min(max, initial*2^n)). Full jitter spreads the retries of many
// meshtrail replicas hitting one recovering backend.
type backoff struct {
	initial, max time.Duration
}

// ceiling is the upper bound of the wait after n failures, never above max
// and safe from overflow for any n.
func (b backoff) ceiling(n int) time.Duration {
	d := b.initial
	for i := 0; i < n && d < b.max; i++ {
		d *= 2
	}
	return min(d, b.max)
}

// delay draws the wait after n failures; u is uniform in [0,1).
func (b backoff) delay(n int, u float64) time.Duration {
	return time.Duration(u * float64(b.ceiling(n)))
}

// sleep waits the jittered delay after n failures or until ctx ends.
func (b backoff) sleep(ctx context.Context, n int) error {
	d := b.delay(n, rand.Float64())
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
