package elasticsearch

import "testing"

func TestAllSucceeded(t *testing.T) {
	for _, c := range []struct {
		body string
		n    int
		ok   bool
	}{
		{`{"took":1,"errors":false,"items":[]}`, 0, true},
		{`{"took":1,"errors":false,"items":[{"create":{"_index":"x","_id":"y","status":201}},{"create":{"status":200}}]}`, 2, true},
		{"{\n \"items\" : [ { \"index\" : { \"status\" : 201 , \"_shards\":{\"total\":2}} } ] }", 1, true},
		// "errors": false beside a 409: the statuses decide.
		{`{"errors":false,"items":[{"create":{"status":201}},{"create":{"status":409,"error":{"type":"version_conflict"}}}]}`, 0, false},
		{`{"errors":true,"items":[{"create":{"status":429}}]}`, 0, false},
		// An id that looks like a status, a status elsewhere, a missing one.
		{`{"items":[{"create":{"_id":"\"status\":500","status":201}}]}`, 1, true},
		{`{"status":500,"items":[{"create":{"status":201}}]}`, 1, true},
		{`{"items":[{"create":{"_id":"a"}}]}`, 0, false},
		{`{"items":[{"create":{"status":201}}`, 0, false},
		{`not json`, 0, true},
	} {
		n, ok := allSucceeded([]byte(c.body))
		if n != c.n || ok != c.ok {
			t.Errorf("allSucceeded(%s) = %d, %v; want %d, %v", c.body, n, ok, c.n, c.ok)
		}
	}
}
