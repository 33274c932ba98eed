package fanout

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 2, 21, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"120", 2 * time.Minute, true},
		{" 0 ", 0, true},
		{"Wed, 02 Dec 2026 21:00:30 GMT", 30 * time.Second, true},
		{"Wednesday, 02-Dec-26 21:01:00 GMT", time.Minute, true}, // RFC 850
		{"Wed Dec  2 21:00:05 2026", 5 * time.Second, true},      // asctime
		{"Fri, 31 Dec 1999 23:59:59 GMT", 0, true},               // past: no wait
		{"99999999999999999999999", 1<<63 - 1, true},             // the caller caps it
		{"-5", 0, false}, {"1.5", 0, false}, {"soon", 0, false}, {"", 0, false},
	} {
		got, ok := ParseRetryAfter(c.in, now)
		if got != c.want || ok != c.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestHTTPResponseErrorRetryAfter(t *testing.T) {
	resp := func(status int, ra string) *http.Response {
		h := http.Header{}
		if ra != "" {
			h.Set("Retry-After", ra)
		}
		return &http.Response{StatusCode: status, Header: h}
	}
	for _, c := range []struct {
		status int
		ra     string
		want   time.Duration
		has    bool
	}{
		{429, "7", 7 * time.Second, true},
		{503, "1", time.Second, true},
		{429, "", 0, false},
		{429, "later", 0, false},
		{500, "7", 0, false}, // only 429 and 503 carry it
	} {
		err := HTTPResponseError("loki", resp(c.status, c.ra), []byte("slow down"))
		if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "loki: status") {
			t.Fatalf("%d %q: %v", c.status, c.ra, err)
		}
		d, ok := RetryAfter(err)
		if d != c.want || ok != c.has {
			t.Errorf("%d %q: RetryAfter = %v, %v; want %v, %v", c.status, c.ra, d, ok, c.want, c.has)
		}
		var se *SinkError
		if errors.As(&SinkError{Sink: "loki", Err: err}, &se) {
			if _, ok := RetryAfter(se); ok != c.has {
				t.Errorf("wrapped: the wait is lost")
			}
		}
		ra := HTTPRetryAfter("elasticsearch", resp(c.status, c.ra))
		if (ra != nil) != c.has {
			t.Errorf("%d %q: HTTPRetryAfter = %v", c.status, c.ra, ra)
		}
	}
	if HTTPResponseError("loki", resp(204, "5"), nil) != nil {
		t.Fatal("a 2xx is no error")
	}
}
