package envoystandin

import (
	"context"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alsdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// ALSClient streams HTTP access log entries to an Envoy gRPC Access Log
// Service receiver the way Envoy's HttpGrpcAccessLogConfig does:
// StreamAccessLogs, the identifier (node, log_name) only in the first
// message of each stream, entries batched per message, no reply expected,
// and a new stream (with the identifier again) after a failure.
type ALSClient struct {
	conn    *grpc.ClientConn
	client  alsv3.AccessLogServiceClient
	node    *corev3.Node
	logName string

	entries chan *alsdatav3.HTTPAccessLogEntry
	done    chan struct{}
	wg      sync.WaitGroup

	mu      sync.Mutex
	sent    int
	failed  int
	streams int
}

// DialALS connects to addr (host:port, plaintext) and starts the sender.
func DialALS(addr string, node *corev3.Node, logName string) (*ALSClient, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	c := &ALSClient{
		conn: conn, client: alsv3.NewAccessLogServiceClient(conn), node: node, logName: logName,
		entries: make(chan *alsdatav3.HTTPAccessLogEntry, 1024), done: make(chan struct{}),
	}
	c.wg.Add(1)
	go c.run()
	return c, nil
}

// Log queues an entry; like Envoy, a full buffer drops rather than blocks
// the request path.
func (c *ALSClient) Log(e *alsdatav3.HTTPAccessLogEntry) {
	select {
	case c.entries <- e:
	default:
		c.mu.Lock()
		c.failed++
		c.mu.Unlock()
	}
}

// Stats reports entries sent, entries dropped and streams opened.
func (c *ALSClient) Stats() (sent, dropped, streams int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent, c.failed, c.streams
}

// Close flushes queued entries, ends the stream and the connection.
func (c *ALSClient) Close() error {
	close(c.done)
	c.wg.Wait()
	return c.conn.Close()
}

// flushInterval is Envoy's default buffer_flush_interval (1 s) shortened:
// tests should not wait a second per entry.
const flushInterval = 50 * time.Millisecond

func (c *ALSClient) run() {
	defer c.wg.Done()
	var (
		stream alsv3.AccessLogService_StreamAccessLogsClient
		cancel context.CancelFunc
		batch  []*alsdatav3.HTTPAccessLogEntry
	)
	closeStream := func() {
		if stream == nil {
			return
		}
		// Half-close, then wait for the receiver to end the RPC so that
		// what was sent is read before the context is cancelled. Envoy
		// never reads a reply and the receiver sends none: Recv returns
		// EOF or "cardinality violation", both fine.
		ended := make(chan struct{})
		go func(s alsv3.AccessLogService_StreamAccessLogsClient) {
			_, _ = s.CloseAndRecv()
			close(ended)
		}(stream)
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
		}
		cancel()
		stream = nil
	}
	flush := func() {
		if len(batch) == 0 {
			return
		}
		for attempt := 0; attempt < 2; attempt++ {
			first := false
			if stream == nil {
				ctx, cf := context.WithCancel(context.Background())
				s, err := c.client.StreamAccessLogs(ctx)
				if err != nil {
					cf()
					continue
				}
				stream, cancel, first = s, cf, true
				c.mu.Lock()
				c.streams++
				c.mu.Unlock()
			}
			msg := &alsv3.StreamAccessLogsMessage{
				LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{
					HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: batch},
				},
			}
			if first {
				msg.Identifier = &alsv3.StreamAccessLogsMessage_Identifier{Node: c.node, LogName: c.logName}
			}
			if err := stream.Send(msg); err != nil {
				closeStream()
				continue
			}
			c.mu.Lock()
			c.sent += len(batch)
			c.mu.Unlock()
			batch = nil
			return
		}
		c.mu.Lock()
		c.failed += len(batch)
		c.mu.Unlock()
		batch = nil
	}
	tick := time.NewTicker(flushInterval)
	defer tick.Stop()
	for {
		select {
		case e := <-c.entries:
			batch = append(batch, e)
			if len(batch) >= 100 {
				flush()
			}
		case <-tick.C:
			flush()
		case <-c.done:
		drain:
			for {
				select {
				case e := <-c.entries:
					batch = append(batch, e)
				default:
					break drain
				}
			}
			flush()
			closeStream()
			return
		}
	}
}
