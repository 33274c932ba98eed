// Command alsload is a load generator for ALS receivers: many concurrent
// streams (one per simulated Envoy), each sending its identifier first and
// then batches of Istio-shaped HTTP access log entries of about 16 KiB,
// like Envoy's default flush. Like an Envoy, a stream carries only its own
// proxy's entries, and the streams are shared among Bookinfo's proxies in
// proportion to the entries each logs, so the load is the mesh's own mix. Messages are marshalled once up front so the
// generator spends its CPU on sending, not encoding.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	accesslogsvc "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrail/meshtrail/internal/meshsim"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18000", "receiver gRPC address")
	streams := flag.Int("streams", 100, "concurrent streams (simulated Envoys)")
	entries := flag.Int("entries", 1_000_000, "entries to send in total (0: until -duration)")
	duration := flag.Duration("duration", 0, "send for this long instead of a fixed count")
	rate := flag.Int("rate", 0, "entries per second across all streams (0: as fast as the receiver takes them)")
	batchBytes := flag.Int("batch-bytes", 16<<10, "bytes per message, like Envoy's buffer_size_bytes flush")
	flag.Parse()

	proxies, msgs, perMsg := prepare(*batchBytes, *streams)
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		fail(err)
	}
	defer conn.Close()

	var sent atomic.Int64
	budget := int64(*entries)
	ctx := context.Background()
	var stop atomic.Bool
	if *duration > 0 {
		budget = 0
		time.AfterFunc(*duration, func() { stop.Store(true) })
	}
	var interval time.Duration
	if *rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(perMsg) * float64(*streams) / float64(*rate))
	}
	begin := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < *streams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs")
			if err != nil {
				fail(err)
			}
			w := *proxies[i]
			w.Pod = fmt.Sprintf("%s-7d9f8c6b5d-%05d", w.Name, i)
			mine := msgs[w.Name]
			id, _ := proto.Marshal(&accesslogsvc.StreamAccessLogsMessage{Identifier: w.Identifier("bench")})
			if err := s.SendMsg(id); err != nil {
				fail(err)
			}
			next := time.Now()
			for j := i; ; j++ {
				if stop.Load() || (budget > 0 && sent.Add(int64(perMsg)) > budget) {
					break
				}
				if budget == 0 {
					sent.Add(int64(perMsg))
				}
				if err := s.SendMsg(mine[j%len(mine)]); err != nil {
					fail(err)
				}
				if interval > 0 {
					next = next.Add(interval)
					time.Sleep(time.Until(next))
				}
			}
			_ = s.CloseSend()
			var b []byte
			if err := s.RecvMsg(&b); err != nil && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "cardinality") {
				fail(err)
			}
		}()
	}
	wg.Wait()
	n := sent.Load()
	if budget > 0 && n > budget {
		// the last Add of each stream overshot; what was sent is whole messages
		n = (budget / int64(perMsg)) * int64(perMsg)
	}
	el := time.Since(begin)
	fmt.Printf("sent %d entries in %d-entry messages over %d streams in %.2fs (%.0f entries/s)\n", n, perMsg, *streams, el.Seconds(), float64(n)/el.Seconds())
}

// prepare marshals, for every proxy of the mesh, a pool of realistic
// messages of about batchBytes each, all with the same entry count so
// totals are exact. The pools are keyed by the proxy's workload name. It
// also gives each stream its proxy: proxies get streams in proportion to
// the entries they log, so the entries sent are the mesh's mix.
func prepare(batchBytes, streams int) ([]*meshsim.Workload, map[string][][]byte, int) {
	mesh := meshsim.Bookinfo(42)
	proxies := mesh.Workloads()
	byProxy := map[*meshsim.Workload][]meshsim.Entry{}
	start := time.Now()
	total, size := 0, 0
	for total < 40000 {
		at := start.Add(time.Duration(total) * time.Millisecond)
		entries := append(mesh.Request(at).Entries, mesh.Background(at)...)
		for _, e := range entries {
			byProxy[e.Proxy] = append(byProxy[e.Proxy], e)
			if e.TCP != nil {
				size += proto.Size(e.TCP) + 3
			} else {
				size += proto.Size(e.HTTP) + 3
			}
		}
		total += len(entries)
	}
	per := max(1, batchBytes/(size/total))
	out := map[string][][]byte{}
	for _, w := range proxies {
		entries := byProxy[w]
		var msgs [][]byte
		// HTTP and TCP entries travel in messages of their own, as
		// Envoy's two loggers send them; each message holds per entries.
		var httpEntries, tcpEntries []meshsim.Entry
		for _, e := range entries {
			if e.TCP != nil {
				tcpEntries = append(tcpEntries, e)
			} else {
				httpEntries = append(httpEntries, e)
			}
		}
		for i := 0; i+per <= len(httpEntries) && len(msgs) < 30; i += per {
			m := &accesslogsvc.StreamAccessLogsMessage_HTTPAccessLogEntries{}
			for _, e := range httpEntries[i : i+per] {
				m.LogEntry = append(m.LogEntry, e.HTTP)
			}
			b, err := proto.Marshal(&accesslogsvc.StreamAccessLogsMessage{LogEntries: &accesslogsvc.StreamAccessLogsMessage_HttpLogs{HttpLogs: m}})
			if err != nil {
				fail(err)
			}
			msgs = append(msgs, b)
		}
		for i := 0; i+per <= len(tcpEntries) && len(msgs) < 30; i += per {
			m := &accesslogsvc.StreamAccessLogsMessage_TCPAccessLogEntries{}
			for _, e := range tcpEntries[i : i+per] {
				m.LogEntry = append(m.LogEntry, e.TCP)
			}
			b, err := proto.Marshal(&accesslogsvc.StreamAccessLogsMessage{LogEntries: &accesslogsvc.StreamAccessLogsMessage_TcpLogs{TcpLogs: m}})
			if err != nil {
				fail(err)
			}
			msgs = append(msgs, b)
		}
		if len(msgs) == 0 {
			fail(fmt.Errorf("proxy %s logged fewer than %d entries", w.Name, per))
		}
		out[w.Name] = msgs
	}
	// Stream i serves the proxy whose share of all entries covers the
	// point (i+0.5)/streams: with 100 streams each proxy gets within one
	// stream of its share.
	assigned := make([]*meshsim.Workload, streams)
	for i := range assigned {
		at, cum := (float64(i)+0.5)/float64(streams)*float64(total), 0
		for _, w := range proxies {
			cum += len(byProxy[w])
			if float64(cum) > at || w == proxies[len(proxies)-1] {
				assigned[i] = w
				break
			}
		}
	}
	fmt.Fprintf(os.Stderr, "alsload: %d entries per message, %d bytes per entry on average\n", per, size/total)
	return assigned, out, per
}

type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "alsload:", err)
	os.Exit(1)
}
