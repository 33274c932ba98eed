package ratelimit

import (
	"context"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// The benchmarks compare Bucket with golang.org/x/time/rate on the two
// paths meshtrail uses: the router taking up to a batch's worth of a
// tenant's tokens (TakeUpTo, an ALS message of 13 entries), and a queue
// waiting for a batch's tokens (Wait of 500) when they are there. A
// Limiter has no TakeUpTo: the equivalent reads the tokens and takes what
// is there, two lock round trips.

func limiterTakeUpTo(l *rate.Limiter, now time.Time, n int) int {
	k := min(n, int(l.TokensAt(now)))
	if k <= 0 || !l.AllowN(now, k) {
		return 0
	}
	return k
}

func BenchmarkTakeUpTo(b *testing.B) {
	now := time.Now()
	b.Run("bucket", func(b *testing.B) {
		bk := New(1e12, 1<<30)
		for b.Loop() {
			now = now.Add(time.Nanosecond)
			if bk.TakeUpTo(now, 13) != 13 {
				b.Fatal("short")
			}
		}
	})
	b.Run("x-time-rate", func(b *testing.B) {
		l := rate.NewLimiter(1e12, 1<<30)
		for b.Loop() {
			now = now.Add(time.Nanosecond)
			if limiterTakeUpTo(l, now, 13) != 13 {
				b.Fatal("short")
			}
		}
	})
}

func BenchmarkTakeUpToParallel(b *testing.B) {
	b.Run("bucket", func(b *testing.B) {
		bk := New(1e12, 1<<30)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				bk.TakeUpTo(time.Now(), 13)
			}
		})
	})
	b.Run("x-time-rate", func(b *testing.B) {
		l := rate.NewLimiter(1e12, 1<<30)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				limiterTakeUpTo(l, time.Now(), 13)
			}
		})
	})
}

func BenchmarkWait(b *testing.B) {
	ctx := context.Background()
	b.Run("bucket", func(b *testing.B) {
		bk := New(1e12, 1<<20)
		for b.Loop() {
			if err := bk.Wait(ctx, 500); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("x-time-rate", func(b *testing.B) {
		l := rate.NewLimiter(1e12, 1<<20)
		for b.Loop() {
			if err := l.WaitN(ctx, 500); err != nil {
				b.Fatal(err)
			}
		}
	})
}
