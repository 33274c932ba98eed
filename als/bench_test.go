package als

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrail/meshtrail/internal/meshsim"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/sink/istiometrics"
)

// BenchmarkMessagePath is the receiver's per-message work without the
// network: unmarshal a 16 KiB Envoy-sized message, convert every entry,
// encode NDJSON and update the RED metrics. Reported per entry.
func BenchmarkMessagePath(b *testing.B) {
	mesh := meshsim.Bookinfo(1)
	var entries []meshsim.Entry
	for len(entries) < 2000 {
		entries = append(entries, mesh.Request(time.Now()).Entries...)
	}
	batches := meshsim.Batch(entries, 16<<10)
	// One 16 KiB message of the productpage sidecar (inbound and outbound
	// entries, every propagation format): the same message on every run.
	first := batches[mesh.ProductPage][0]
	wire, _ := proto.Marshal(first)
	perMsg := len(first.GetHttpLogs().GetLogEntry())
	reg := prometheus.NewRegistry()
	red, _ := istiometrics.New(istiometrics.Options{Prefix: "meshtrail_"}, reg)
	buf := make([]byte, 0, 1<<20)
	var je record.Encoder // as the NDJSON sink encodes
	enc := record.ConsumerFunc(func(_ context.Context, recs []*record.Record) error {
		buf = buf[:0]
		for _, r := range recs {
			buf = je.Append(buf, r)
			buf = append(buf, '\n')
		}
		_, err := io.Discard.Write(buf)
		return err
	})
	out := record.ConsumerFunc(func(ctx context.Context, recs []*record.Record) error {
		if err := enc(ctx, recs); err != nil {
			return err
		}
		return red.ConsumeRecords(ctx, recs)
	})
	conv := newConverter(nil, nil, 8<<10)
	px := parseNode(mesh.ProductPage.Identifier("b").GetNode(), "b")
	b.ReportAllocs()
	b.SetBytes(int64(len(wire)))
	var batch []*record.Record
	dec := newWireDecoder(conv)
	var msg wireMessage
	for b.Loop() {
		if err := splitMessage(wire, &msg); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
		now := time.Now()
		msg.each(func(_ bool, e []byte) bool {
			var notes entryNotes
			r, err := dec.http(&px, e, now, &notes)
			if err != nil {
				b.Fatal(err)
			}
			batch = append(batch, r)
			return true
		})
		_ = out.ConsumeRecords(context.Background(), batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perMsg), "ns/entry")
}
