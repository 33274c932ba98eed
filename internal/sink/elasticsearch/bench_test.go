package elasticsearch

import (
	"context"
	"net/http"
	"testing"

	"github.com/meshtrail/meshtrail/internal/recordtest"
)

// BenchmarkExport is the whole Export path (ids, NDJSON, request, per-item
// response parsing) with the network replaced by an in-process round
// tripper answering 201 for every item.
func BenchmarkExport(b *testing.B) {
	batch := recordtest.Batch("bench", 1, 500)
	e, _ := New(Options{URL: "http://es", Client: &http.Client{Transport: recordtest.Loopback{Status: 200, Body: recordtest.BulkOK}}})
	recordtest.BenchRecords(b, len(batch), func() {
		if err := e.Export(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	})
}
