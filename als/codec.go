package als

import (
	"fmt"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// tolerantCodec is gRPC's proto codec with one difference: a message whose
// string fields hold invalid UTF-8 is repaired (each bad byte becomes
// U+FFFD) instead of failing the whole stream. Envoy does not validate
// UTF-8 when it serialises access logs, so a single request with a raw
// byte in its path would otherwise cost every entry in that message and
// end the stream.
type tolerantCodec struct {
	repaired *atomic.Uint64 // messages repaired, read by the metrics
}

var _ encoding.CodecV2 = tolerantCodec{}

func (tolerantCodec) Name() string { return "proto" }

func (tolerantCodec) Marshal(v any) (mem.BufferSlice, error) {
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

func (c tolerantCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("als codec: cannot unmarshal into %T", v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	err := proto.Unmarshal(b, m)
	if err == nil || !strings.Contains(err.Error(), "UTF-8") {
		return err
	}
	fixed, ok := repairUTF8(b, m.ProtoReflect().Descriptor(), 0)
	if !ok {
		return err
	}
	proto.Reset(m)
	if err := proto.Unmarshal(fixed, m); err != nil {
		return err
	}
	if c.repaired != nil {
		c.repaired.Add(1)
	}
	return nil
}

// repairUTF8 rewrites b (a message of type md) with every string field
// made valid UTF-8, descending into nested messages and map entries.
func repairUTF8(b []byte, md protoreflect.MessageDescriptor, depth int) ([]byte, bool) {
	if depth > 64 {
		return nil, false
	}
	out := make([]byte, 0, len(b)+16)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		tagBytes := b[:n]
		b = b[n:]
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return nil, false
			}
			out = append(out, tagBytes...)
			out = append(out, b[:m]...)
			b = b[m:]
			continue
		}
		val, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return nil, false
		}
		b = b[m:]
		fd := md.Fields().ByNumber(num)
		switch {
		case fd != nil && fd.Kind() == protoreflect.StringKind && !utf8.Valid(val):
			val = []byte(strings.ToValidUTF8(string(val), "\uFFFD"))
		case fd != nil && (fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind):
			var ok bool
			if val, ok = repairUTF8(val, fd.Message(), depth+1); !ok {
				return nil, false
			}
		}
		out = append(out, tagBytes...)
		out = protowire.AppendBytes(out, val)
	}
	return out, true
}
