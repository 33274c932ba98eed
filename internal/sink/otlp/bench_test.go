package otlp

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
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

// BenchmarkExport is spans, snapshots, the OTel SDK's transform to OTLP
// and the protobuf encoding; the network is left out.
func BenchmarkExport(b *testing.B) {
	batch := recordtest.Batch("bench", 1, 500)
	exp, err := otlptrace.New(context.Background(), &marshalClient{})
	if err != nil {
		b.Fatal(err)
	}
	e := &Exporter{name: "bench", exp: exp}
	recordtest.BenchRecords(b, len(batch), func() {
		if err := e.Export(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	})
}
