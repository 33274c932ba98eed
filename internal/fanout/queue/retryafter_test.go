package queue

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/internal/fanout"
	"github.com/meshtrail/meshtrail/internal/record"
)

// throttlingServer is a real HTTP backend on 127.0.0.1 that answers its
// first request with status and a Retry-After header (from retryAfter,
// given the time of the request), and accepts every later one.
type throttlingServer struct {
	url string

	mu    sync.Mutex
	times []time.Time
	n     int
}

func newThrottlingServer(t *testing.T, status int, retryAfter func(now time.Time) string) *throttlingServer {
	s := &throttlingServer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.url = "http://" + ln.Addr().String() + "/push"
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		now := time.Now()
		s.mu.Lock()
		s.times = append(s.times, now)
		first := len(s.times) == 1
		if !first {
			s.n++
		}
		s.mu.Unlock()
		if first {
			w.Header().Set("Retry-After", retryAfter(now))
			http.Error(w, "slow down", status)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// pushExporter posts a batch and reads the answer the way the HTTP sinks
// do, through fanout.HTTPResponseError.
type pushExporter struct {
	url    string
	client *http.Client
}

func (e *pushExporter) Name() string { return "push" }

func (e *pushExporter) Export(ctx context.Context, batch []*record.Record) error {
	var body []byte
	for _, r := range batch {
		body = append(record.AppendJSON(body, r), '\n')
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return fanout.Permanent(err)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return fanout.HTTPResponseError("push", resp, msg)
}

// A 429 or 503 with Retry-After (seconds or an HTTP-date) holds the batch
// back at least as long as the server asked, although the queue's own
// backoff is a few milliseconds; then it is delivered.
func TestRetryAfterIsHonoured(t *testing.T) {
	for _, c := range []struct {
		name    string
		status  int
		header  func(now time.Time) string
		atLeast time.Duration
	}{
		{"429-seconds", http.StatusTooManyRequests, func(time.Time) string { return "2" }, 2 * time.Second},
		// An HTTP-date has whole seconds: 3 s ahead is at least 2 s.
		{"503-date", http.StatusServiceUnavailable, func(now time.Time) string {
			return now.Add(3 * time.Second).UTC().Format(http.TimeFormat)
		}, 2 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := newThrottlingServer(t, c.status, c.header)
			cfg := fastConfig() // backoff 1-10 ms
			q := newQueue(t, &pushExporter{url: srv.url, client: &http.Client{}}, cfg)
			consume(t, q, recs(0, 10), 10)
			deadline := time.Now().Add(time.Minute)
			for {
				srv.mu.Lock()
				n := srv.n
				srv.mu.Unlock()
				if n > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the batch was never delivered after the 429")
				}
				time.Sleep(10 * time.Millisecond)
			}
			shutdown(t, q)
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if gap := srv.times[1].Sub(srv.times[0]); gap < c.atLeast {
				t.Fatalf("retried after %v; the server asked for %v", gap, c.atLeast)
			}
			if len(srv.times) != 2 {
				t.Fatalf("%d requests, want the refused one and the retry", len(srv.times))
			}
		})
	}
}

// The wait is the longer of the backoff and the server's, and a server
// cannot ask for more than MaxRetryAfter.
func TestRetryWait(t *testing.T) {
	b := backoff{initial: 100 * time.Millisecond, max: 10 * time.Second}
	plain := errors.New("down")
	if w, asked := b.retryWait(3, plain, 0.5); w != 400*time.Millisecond || asked != 0 {
		t.Fatalf("no Retry-After: %v %v", w, asked)
	}
	ra := func(d time.Duration) error { return &fanout.RetryAfterError{Err: plain, After: d} }
	if w, _ := b.retryWait(10, ra(time.Second), 0.99); w < 9*time.Second {
		t.Fatalf("a shorter Retry-After shortened the backoff: %v", w)
	}
	if w, asked := b.retryWait(0, ra(30*time.Second), 0.5); w != 30*time.Second || asked != 30*time.Second {
		t.Fatalf("Retry-After 30s: wait %v", w)
	}
	if w, asked := b.retryWait(0, ra(1000*time.Hour), 0.5); w != MaxRetryAfter || asked != MaxRetryAfter {
		t.Fatalf("Retry-After 1000h: wait %v, want the %v ceiling", w, MaxRetryAfter)
	}
	wrapped := &fanout.SinkError{Sink: "loki", Err: ra(5 * time.Second)}
	if w, _ := b.retryWait(0, wrapped, 0); w != 5*time.Second {
		t.Fatalf("wrapped Retry-After lost: %v", w)
	}
}
