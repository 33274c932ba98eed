package fanout

import (
	"bytes"
	"fmt"
	"net/http"
)

// HTTPStatusError turns an HTTP backend's answer to a batch into the
// Exporter error contract, one rule for every HTTP sink:
//   - 2xx: nil;
//   - 400, 413, 422: Permanent, since the same batch can never succeed
//     (a bad or oversized record), so the queue splits it to isolate
//     the bad record;
//   - anything else (429, 5xx, and also 401/403/404, which are
//     credentials or address problems an operator fixes): retryable, so
//     the data stays queued instead of being dropped as poison.
//
// name prefixes the message; body is the start of the response, for it.
// HTTPResponseError is the same with the response's Retry-After honoured;
// sinks should call that.
func HTTPStatusError(name string, status int, body []byte) error {
	if status/100 == 2 {
		return nil
	}
	err := fmt.Errorf("%s: status %d: %s", name, status, bytes.TrimSpace(body))
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return Permanent(err)
	}
	return err
}
