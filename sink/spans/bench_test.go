package spans

import (
	"testing"

	"github.com/meshtrail/meshtrail/sink/internal/testrecords"
)

func BenchmarkFromRecord(b *testing.B) {
	batch := testrecords.Batch("bench", 1, 500)
	var sp Span
	testrecords.BenchRecords(b, len(batch), func() {
		for _, r := range batch {
			FromRecord(r, &sp)
		}
	})
}
