package elasticsearch

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/recordtest"
)

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

// DocID must give the ids it always gave (a resend after an upgrade must
// hit the same documents): the streaming hash it replaced, as reference.
func TestDocIDUnchanged(t *testing.T) {
	ref := func(r *record.Record) string {
		h := sha256.New()
		var b [9]byte
		b[0] = byte(r.Kind)
		binary.BigEndian.PutUint64(b[1:], uint64(timestamp(r).UnixNano()))
		h.Write(b[:])
		for _, s := range [...]string{r.Node.ID, r.Reporter, r.StreamID, r.Trace.TraceID, r.Trace.SpanID,
			r.Trace.ParentSpanID, r.HTTP.RequestID, r.Stream, r.Message} {
			h.Write([]byte(s))
			h.Write([]byte{0})
		}
		return hex.EncodeToString(h.Sum(nil)[:16])
	}
	recs := recordtest.Batch("docid", 7, 50)
	long := *recs[0]
	long.Message = strings.Repeat("x", 2000) // past the stack buffer
	recs = append(recs, &long)
	for i, r := range recs {
		var id [32]byte
		DocID(&id, r)
		if got, want := string(id[:]), ref(r); got != want {
			t.Fatalf("record %d: id %s, was %s", i, got, want)
		}
	}
}
