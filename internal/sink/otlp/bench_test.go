package otlp

import (
	"context"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrail/meshtrail/internal/recordtest"
)

// marshalClient is an otlptrace.Client that encodes the request to
// protobuf, as the gRPC and HTTP clients do, and sends nothing.
type marshalClient struct{ buf []byte }

func (c *marshalClient) Start(context.Context) error { return nil }
func (c *marshalClient) Stop(context.Context) error  { return nil }
func (c *marshalClient) UploadTraces(_ context.Context, rs []*tracepb.ResourceSpans) error {
	var err error
	c.buf, err = proto.MarshalOptions{}.MarshalAppend(c.buf[:0], &tracepb.TracesData{ResourceSpans: rs})
	return err
}

// BenchmarkExport is spans, the OTLP messages and their protobuf encoding;
// the network is left out.
func BenchmarkExport(b *testing.B) {
	batch := recordtest.Batch("bench", 1, 500)
	e, err := newExporter(context.Background(), "bench", &marshalClient{})
	if err != nil {
		b.Fatal(err)
	}
	recordtest.BenchRecords(b, len(batch), func() {
		if err := e.Export(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkEncode is records to OTLP messages alone, with the encoder
// reused as Export reuses it: what this package does before the client
// marshals and sends them.
func BenchmarkEncode(b *testing.B) {
	batch := recordtest.Batch("bench", 1, 500)
	var enc encoder
	recordtest.BenchRecords(b, len(batch), func() {
		if len(enc.encode(batch)) == 0 {
			b.Fatal("no spans")
		}
		enc.reset()
	})
}

// BenchmarkMarshal is the protobuf encoding of one batch's messages, which
// the gRPC and HTTP clients do: the part of Export this package does not own.
func BenchmarkMarshal(b *testing.B) {
	batch := recordtest.Batch("bench", 1, 500)
	req := &tracepb.TracesData{ResourceSpans: Encode(batch)}
	var buf []byte
	recordtest.BenchRecords(b, len(batch), func() {
		var err error
		if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf[:0], req); err != nil {
			b.Fatal(err)
		}
	})
}
