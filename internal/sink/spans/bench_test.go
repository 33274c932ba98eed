package spans

import (
	"testing"

	"github.com/meshtrail/meshtrail/internal/recordtest"
)

func BenchmarkFromRecord(b *testing.B) {
	batch := recordtest.Batch("bench", 1, 500)
	var sp Span
	recordtest.BenchRecords(b, len(batch), func() {
		for _, r := range batch {
			FromRecord(r, &sp)
		}
	})
}
