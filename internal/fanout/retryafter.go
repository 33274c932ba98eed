package fanout

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RetryAfterError is a retryable error for which the backend said how
// long to wait (HTTP 429 or 503 with Retry-After, RFC 9110 section
// 10.2.3). The queue waits at least After before sending that batch again,
// and holds its other workers back as long.
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (server asked to retry after %v)", e.Err, e.After)
}
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter returns the wait a backend asked for, if err (or an error it
// wraps) carries one.
func RetryAfter(err error) (time.Duration, bool) {
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return ra.After, true
	}
	return 0, false
}

// ParseRetryAfter reads a Retry-After value: delay-seconds or an
// HTTP-date (compared with now). A date in the past is a wait of 0. It
// reports false for anything else (negative, garbage), which callers
// treat as no Retry-After at all.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return time.Duration(1<<63 - 1), true // absurdly long: the caller's ceiling applies
			}
			return 0, false
		}
		if s > uint64((1<<63-1)/time.Second) {
			return time.Duration(1<<63 - 1), true
		}
		return time.Duration(s) * time.Second, true
	}
	t, err := http.ParseTime(v) // IMF-fixdate, and the obsolete RFC 850 and asctime forms
	if err != nil {
		return 0, false
	}
	return max(0, t.Sub(now)), true
}

// HTTPResponseError is HTTPStatusError with the response's headers: a 429
// or 503 carrying a valid Retry-After becomes a *RetryAfterError.
func HTTPResponseError(name string, resp *http.Response, body []byte) error {
	err := HTTPStatusError(name, resp.StatusCode, body)
	if err == nil {
		return nil
	}
	if d, ok := retryAfterOf(resp); ok {
		return &RetryAfterError{Err: err, After: d}
	}
	return err
}

// HTTPRetryAfter is nil unless resp is a 429 or 503 with a valid
// Retry-After, and then a *RetryAfterError naming name and the status:
// for a sink that handles statuses itself (Elasticsearch's bulk API) and
// only needs the wait.
func HTTPRetryAfter(name string, resp *http.Response) error {
	if d, ok := retryAfterOf(resp); ok {
		return &RetryAfterError{Err: fmt.Errorf("%s: status %d", name, resp.StatusCode), After: d}
	}
	return nil
}

func retryAfterOf(resp *http.Response) (time.Duration, bool) {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return 0, false
	}
	return ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
}
