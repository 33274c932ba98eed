package queue

import (
	"context"
	"time"

	"github.com/meshtrail/meshtrail/internal/fanout"
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

// MaxRetryAfter caps the wait a backend can ask for with Retry-After, so
// a misconfigured or hostile server cannot park a queue for days.
const MaxRetryAfter = 10 * time.Minute

// retryWait is the wait before the next attempt after n failures, the last
// one err: the jittered backoff, or what the backend asked for if that is
// longer (capped at MaxRetryAfter). asked is the backend's wait, 0 if none.
func (b backoff) retryWait(n int, err error, u float64) (wait, asked time.Duration) {
	wait = b.delay(n, u)
	if d, ok := fanout.RetryAfter(err); ok {
		asked = min(d, MaxRetryAfter)
		wait = max(wait, asked)
	}
	return wait, asked
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
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
