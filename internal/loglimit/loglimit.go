// Package loglimit keeps repeated log lines from flooding the log: one line
// per reason gets through per interval, and the next one says how many
// were held back. Bad input from one client, or a disk that stays full,
// then costs a line every so often, not one per event (the metrics count
// every event).
package loglimit

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Limiter lets one line per reason through per interval. It is safe for
// concurrent use.
type Limiter struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]*state
}

type state struct {
	at         time.Time
	suppressed int
}

// New returns a Limiter letting one line per reason through every every.
func New(every time.Duration) *Limiter {
	return &Limiter{every: every, last: map[string]*state{}}
}

// Allow reports whether a line for reason may be written now, and how many
// were held back since the last one that was.
func (l *Limiter) Allow(reason string) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.last[reason]
	now := time.Now()
	if s == nil {
		if len(l.last) > 1000 { // reasons are a closed set; stay bounded anyway
			clear(l.last)
		}
		l.last[reason] = &state{at: now}
		return 0, true
	}
	if now.Sub(s.at) < l.every {
		s.suppressed++
		return 0, false
	}
	n := s.suppressed
	s.at, s.suppressed = now, 0
	return n, true
}

// Log writes msg at level through logger if reason's line is due, adding
// suppressed_since_last when lines were held back.
func (l *Limiter) Log(logger *slog.Logger, level slog.Level, reason, msg string, args ...any) {
	if suppressed, ok := l.Allow(reason); ok {
		if suppressed > 0 {
			args = append(args, "suppressed_since_last", suppressed)
		}
		logger.Log(context.Background(), level, msg, args...)
	}
}
