package fluentd

import (
	"testing"

	"github.com/meshtrail/meshtrail/internal/recordtest"
)

// BenchmarkMarshal is the event encoding (MessagePack); the forward
// protocol framing and the ack round trip per record are network.
func BenchmarkMarshal(b *testing.B) {
	batch := recordtest.Batch("bench", 1, 500)
	var buf []byte
	recordtest.BenchRecords(b, len(batch), func() {
		for _, r := range batch {
			ev := Event{R: r}
			buf, _ = ev.MarshalMsg(buf[:0])
		}
	})
}
