package main

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// grpcMessage frames one message as gRPC over HTTP/2 does.
func grpcMessage(payload string) []byte {
	b := make([]byte, 5, 5+len(payload))
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

func TestGRPCFramesAcrossChunks(t *testing.T) {
	var stream []byte
	for _, p := range []string{"", "a", strings.Repeat("x", 300), "end"} {
		stream = append(stream, grpcMessage(p)...)
	}
	// Every way of cutting the stream in two and in single bytes counts
	// the same four messages.
	for cut := 0; cut <= len(stream); cut++ {
		var f grpcFrames
		f.feed(stream[:cut])
		f.feed(stream[cut:])
		if f.count != 4 {
			t.Fatalf("cut at %d: %d messages, want 4", cut, f.count)
		}
	}
	var f grpcFrames
	for i := range stream {
		f.feed(stream[i : i+1])
	}
	if f.count != 4 {
		t.Errorf("byte by byte: %d messages, want 4", f.count)
	}
}

// A server-streaming call: one request message, three responses over
// chunks that split frames; the counters carry the peer labels only, as
// Istio's.
func TestGRPCMessageCounters(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		e := start(t, vm, `{"reporter":"source"}`, productpageNode)
		id := e.InitializeHttpContext()
		e.CallOnRequestHeaders(id, [][2]string{{":authority", "ratings:9080"}, {"content-type", "application/grpc"}}, false)
		e.CallOnRequestBody(id, grpcMessage("watch"), true)
		e.CallOnResponseHeaders(id, [][2]string{{":status", "200"}, {"content-type", "application/grpc"},
			{"x-envoy-peer-metadata", peerMetadata(t, map[string]any{"WORKLOAD_NAME": "ratings-v1", "NAMESPACE": "bookinfo"})}}, false)
		resp := append(append(grpcMessage("one"), grpcMessage("two")...), grpcMessage("three")...)
		e.CallOnResponseBody(id, resp[:7], false)
		e.CallOnResponseBody(id, resp[7:], false)
		e.CallOnResponseTrailers(id, [][2]string{{"grpc-status", "0"}})
		e.CompleteHttpContext(id)
		peer := strings.SplitN(sourceSeries, "request_protocol=", 2)[0]
		for name, want := range map[string]uint64{peer + "istio_request_messages_total": 1, peer + "istio_response_messages_total": 3} {
			if got, err := e.GetCounterMetric(name); err != nil || got != want {
				t.Errorf("%s = %d, %v; want %d", name, got, err, want)
			}
		}
		// A plain HTTP request's body is not read, and counts no messages.
		id = e.InitializeHttpContext()
		e.CallOnRequestHeaders(id, [][2]string{{":authority", "ratings:9080"}}, false)
		e.CallOnRequestBody(id, grpcMessage("not grpc"), true)
		e.CallOnResponseHeaders(id, [][2]string{{":status", "200"}}, false)
		e.CompleteHttpContext(id)
		if got, _ := e.GetCounterMetric(peer + "istio_request_messages_total"); got != 1 {
			t.Errorf("after a plain HTTP request: %d request messages, want 1", got)
		}
	})
}

// Cutting a body anywhere counts the messages whole bodies count.
func FuzzGRPCFrames(f *testing.F) {
	f.Add(append(grpcMessage("a"), grpcMessage("bc")...), uint(3))
	f.Add([]byte{0, 0, 0, 0}, uint(1))
	f.Fuzz(func(t *testing.T, b []byte, cut uint) {
		var whole, split grpcFrames
		whole.feed(b)
		c := int(cut % uint(len(b)+1))
		split.feed(b[:c])
		split.feed(b[c:])
		if whole != split {
			t.Errorf("%x cut at %d: %+v, whole %+v", b, c, split, whole)
		}
	})
}
