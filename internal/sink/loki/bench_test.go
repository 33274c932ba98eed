package loki

import (
	"context"
	"net/http"
	"testing"

	"github.com/meshtrail/meshtrail/internal/recordtest"
)

// BenchmarkExport is the whole Export path (streams, protobuf, snappy,
// request) with the network replaced by an in-process round tripper.
func BenchmarkExport(b *testing.B) {
	batch := recordtest.Batch("bench", 1, 500)
	e, _ := New(Options{URL: "http://loki/loki/api/v1/push", Client: &http.Client{Transport: recordtest.Loopback{Status: 204}}})
	recordtest.BenchRecords(b, len(batch), func() {
		if err := e.Export(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	})
}
