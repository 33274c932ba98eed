package main

import (
	"encoding/binary"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
)

// grpcFrames counts the gRPC messages in one direction of a call from its
// body chunks: each message is a frame of a 5-byte header (compressed
// flag, 4-byte big-endian length) and the message (gRPC over HTTP/2,
// "Length-Prefixed-Message"). A frame may span chunks. Envoy's grpc_stats
// filter, which Istio's own counters read, counts the same way (a message
// when its frame header is read).
type grpcFrames struct {
	header    [5]byte
	have      int    // header bytes read
	remaining uint64 // message bytes still to skip
	count     uint64
}

func (f *grpcFrames) feed(b []byte) {
	for len(b) > 0 {
		if f.remaining > 0 {
			n := uint64(len(b))
			if n > f.remaining {
				n = f.remaining
			}
			f.remaining -= n
			b = b[n:]
			continue
		}
		n := copy(f.header[f.have:], b)
		f.have += n
		b = b[n:]
		if f.have == len(f.header) {
			f.count++
			f.remaining = uint64(binary.BigEndian.Uint32(f.header[1:]))
			f.have = 0
		}
	}
}

// Istio's gRPC message counters. They carry the peer labels only:
// Istio's stats plugin adds them before it adds the request's own labels
// (istio/proxy istio_stats.cc, reportHelper runs first in log()).
const (
	statRequestMessages  = "istio_request_messages_total"
	statResponseMessages = "istio_response_messages_total"
)

// messageCache maps peer label values to the ids of the two message
// counters, defining each stat name once, at most max of them.
type messageCache struct {
	ids     map[string][2]uint32
	max     int
	key     []byte
	dropped proxywasm.MetricCounter
	names   []string // kept alive: a host may keep the pointer
}

func newMessageCache(max int, dropped proxywasm.MetricCounter) *messageCache {
	return &messageCache{ids: map[string][2]uint32{}, max: max, dropped: dropped}
}

// record adds a call's messages to the series of its peer labels.
func (c *messageCache) record(l *labelValues, ownCluster int, requests, responses uint64) {
	k := c.key[:0]
	for _, v := range l[:lRequestProtocol] {
		k = append(k, v...)
		k = append(k, 0)
	}
	c.key = k
	ids, ok := c.ids[string(k)]
	if !ok {
		if len(c.ids) >= c.max {
			c.dropped.Increment(1)
			return
		}
		for i, metric := range [2]string{statRequestMessages, statResponseMessages} {
			var b []byte
			for j, name := range standardLabels[:lRequestProtocol] {
				v := l[j]
				if v == "" && j != ownCluster {
					v = "unknown"
				}
				b = append(b, name...)
				b = append(b, tagValueSep...)
				b = appendTagValue(b, v)
				b = append(b, tagEnd...)
			}
			name := string(append(b, metric...))
			c.names = append(c.names, name)
			ids[i] = uint32(proxywasm.DefineCounterMetric(name))
		}
		c.ids[string(k)] = ids
	}
	if requests > 0 {
		incrementCounter(ids[0], int64(requests))
	}
	if responses > 0 {
		incrementCounter(ids[1], int64(responses))
	}
}
