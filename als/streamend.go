package als

import (
	"time"

	accesslogsvc "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
)

// How a stream ends on the receiver's side. Envoy never ends its access
// log stream; the receiver ends it at shutdown (Drain) and at its
// connection's max age, after reading what Envoy already sent.

// Drain makes every stream end, with status OK, after its next message
// and what Envoy sent right behind it (see readAhead): Envoy never ends its
// access log stream, so this is how a shutting-down receiver lets go of
// its Envoys with as little as possible in flight.
func (r *Receiver) Drain() { r.draining.Store(true) }

// Streams is the number of streams open now.
func (r *Receiver) Streams() int64 { return r.streams.Load() }

// closeStream ends a stream as the client-streaming RPC is defined: one
// (empty) StreamAccessLogsResponse, then status OK. Envoy ignores the
// response; a gRPC client library waits for it.
func closeStream(stream grpc.ServerStream) error {
	_ = stream.SendMsg(&accesslogsvc.StreamAccessLogsResponse{})
	return nil
}

// readAhead reads the messages of a stream that is about to end: those
// gRPC already holds (up to the HTTP/2 window) and those that keep coming
// back to back. The stream ends at the first pause or after
// readAheadMessages, whichever comes first; what Envoy sends after that,
// before it sees the stream end, is lost (HTTP/2 has no way to tell it to
// stop first), so the pause is short but longer than a read from buffers.
type readAhead struct {
	ch   chan received
	left int
}

type received struct {
	raw []byte
	err error
}

const (
	readAheadPause    = 20 * time.Millisecond
	readAheadMessages = 64 // 1 MiB of Envoy's 16 KiB flushes: four windows' worth
)

func startReadAhead(stream grpc.ServerStream) *readAhead {
	ra := &readAhead{ch: make(chan received), left: readAheadMessages}
	go func() {
		// Ends when the stream does: RecvMsg fails once the handler has
		// returned and gRPC cancelled the stream.
		for {
			var raw []byte
			err := stream.RecvMsg(&raw)
			select {
			case ra.ch <- received{raw, err}:
			case <-stream.Context().Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ra
}

// next returns the next message already sent, or more=false when the
// stream should end now.
func (ra *readAhead) next() (received, bool) {
	if ra.left == 0 {
		return received{}, false
	}
	ra.left--
	t := time.NewTimer(readAheadPause)
	defer t.Stop()
	select {
	case m := <-ra.ch:
		return m, true
	case <-t.C:
		return received{}, false
	}
}
