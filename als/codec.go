package als

import (
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// wireCodec hands the receiver each StreamAccessLogsMessage as its bytes,
// for wire.go to decode. It marshals ordinary messages for anything else
// the server sends (the ALS server never sends a response).
type wireCodec struct {
	bufs *messageBuffers
}

var _ encoding.CodecV2 = wireCodec{}

func (wireCodec) Name() string { return "proto" }

func (wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("als codec: cannot marshal %T", v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("als codec: cannot unmarshal into %T", v)
	}
	// Copied into a pooled buffer: no record aliases it (every string the
	// decoder keeps is a copy or interned), so a 16 KiB message costs no
	// allocation. The stream hands it back after decoding.
	*p = c.bufs.get(data.Len())
	data.CopyTo(*p)
	return nil
}

// messageBuffers pools receive buffers between messages: an idle stream,
// the common case among thousands of Envoys, holds none.
type messageBuffers struct{ pool sync.Pool }

// maxPooledBuffer is the largest buffer kept for reuse (Envoy flushes at
// 16 KiB by default); a rare larger message gets its own.
const maxPooledBuffer = 256 << 10

func (m *messageBuffers) get(n int) []byte {
	if bp, _ := m.pool.Get().(*[]byte); bp != nil && cap(*bp) >= n {
		return (*bp)[:n]
	}
	return make([]byte, n)
}

func (m *messageBuffers) put(b []byte) {
	if cap(b) <= maxPooledBuffer {
		b = b[:0]
		m.pool.Put(&b)
	}
}

// streamServer is what the service description dispatches to.
type streamServer interface {
	serveStream(grpc.ServerStream) error
}

// serviceDesc is envoy.service.accesslog.v3.AccessLogService as the
// generated code describes it, with a handler that receives raw bytes.
var serviceDesc = grpc.ServiceDesc{
	ServiceName: "envoy.service.accesslog.v3.AccessLogService",
	HandlerType: (*streamServer)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "StreamAccessLogs",
		Handler:       func(srv any, s grpc.ServerStream) error { return srv.(streamServer).serveStream(s) },
		ClientStreams: true,
	}},
	Metadata: "envoy/service/accesslog/v3/als.proto",
}
