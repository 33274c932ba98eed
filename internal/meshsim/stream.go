package meshsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	accesslogsvc "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
)

// Stream sends each proxy's messages on its own gRPC stream, identifier
// first, as Envoy's HttpGrpcAccessLogConfig does, and waits until every
// stream is closed.
func Stream(ctx context.Context, conn *grpc.ClientConn, logName string, batches map[*Workload][]*accesslogsvc.StreamAccessLogsMessage) error {
	client := accesslogsvc.NewAccessLogServiceClient(conn)
	var wg sync.WaitGroup
	errs := make(chan error, len(batches))
	for w, msgs := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := client.StreamAccessLogs(ctx)
			if err != nil {
				errs <- err
				return
			}
			msgs[0].Identifier = w.Identifier(logName)
			for _, m := range msgs {
				if err := s.Send(m); err != nil {
					break // CloseAndRecv reports why
				}
			}
			// Envoy never reads a response and the receiver never sends
			// one: a clean end shows as EOF or gRPC's cardinality complaint.
			if _, err := s.CloseAndRecv(); err != nil && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "cardinality violation") {
				errs <- fmt.Errorf("%s: %w", w.Name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}
