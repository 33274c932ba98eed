package hostile

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogsvc "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshtrail/meshtrail/test/harness"
)

// alsServer is one `meshtrail als` process on its default configuration
// (listen addresses and the NDJSON file aside).
type alsServer struct {
	p       *harness.Process
	grpc    string
	metrics string // http://HOST:PORT
	out     string
	good    atomic.Int64
	// clientTLS, when set, is how good streams connect.
	clientTLS *tls.Config
}

func startALS(t *testing.T, args ...string) *alsServer {
	t.Helper()
	s := &alsServer{grpc: harness.FreeAddr(t), out: filepath.Join(t.TempDir(), "records.ndjson")}
	maddr := harness.FreeAddr(t)
	s.metrics = "http://" + maddr
	var env []string
	if v := os.Getenv("MESHTRAIL_HOSTILE_GOMEMLIMIT"); v != "" {
		env = []string{"GOMEMLIMIT=" + v} // bench/hostile.sh: the live part of the bound
	}
	s.p = harness.Start(t, "meshtrail-als", env, binary(t), append([]string{"als", "--listen", s.grpc, "--metrics-listen", maddr, "--out", s.out}, args...)...)
	harness.WaitHTTP(t, s.p, s.metrics+"/readyz", 20*time.Second)
	return s
}

// rawCodec sends []byte as it is: a hostile client is not bound by what a
// protobuf library would marshal.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

func (s *alsServer) dial(t *testing.T, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		if s.clientTLS != nil {
			opts = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(s.clientTLS))}
		}
	}
	conn, err := grpc.NewClient(s.grpc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func openStream(t *testing.T, ctx context.Context, conn *grpc.ClientConn, opts ...grpc.CallOption) grpc.ClientStream {
	t.Helper()
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true},
		"/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs", append(opts, grpc.ForceCodecV2(rawCodec{}))...)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// sendAll sends msgs on a new stream, closes it and returns the status the
// receiver ended it with.
func (s *alsServer) sendAll(t *testing.T, conn *grpc.ClientConn, msgs ...[]byte) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := openStream(t, ctx, conn)
	for _, m := range msgs {
		if err := cs.SendMsg(m); err != nil {
			break // ended by the receiver: RecvMsg says why
		}
	}
	_ = cs.CloseSend()
	var resp []byte
	return cs.RecvMsg(&resp)
}

func (s *alsServer) scrape(t *testing.T) string { return scrape(t, s.metrics+"/metrics") }

// checkGoodStream sends a valid stream and waits for its record in the
// NDJSON output.
func (s *alsServer) checkGoodStream(t *testing.T) {
	t.Helper()
	pod := fmt.Sprintf("good-%d", s.good.Add(1))
	msg := marshal(t, &accesslogsvc.StreamAccessLogsMessage{
		Identifier: identifier("sidecar~10.0.0.9~" + pod + ".shop~shop.svc.cluster.local"),
		LogEntries: &accesslogsvc.StreamAccessLogsMessage_HttpLogs{HttpLogs: &accesslogsvc.StreamAccessLogsMessage_HTTPAccessLogEntries{
			LogEntry: []*accesslogv3.HTTPAccessLogEntry{goodEntry(nil)}}},
	})
	if err := s.sendAll(t, s.dial(t), msg); err != nil {
		t.Fatalf("a good stream after the hostile input: %v", err)
	}
	eventually(t, "the good stream's record in the NDJSON output", func() error {
		b, err := os.ReadFile(s.out)
		if err != nil {
			return err
		}
		if !bytes.Contains(b, []byte(`"`+pod+`"`)) {
			return fmt.Errorf("no record of %s", pod)
		}
		return nil
	})
}

func identifier(nodeID string) *accesslogsvc.StreamAccessLogsMessage_Identifier {
	return &accesslogsvc.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: nodeID, Cluster: "c"}, LogName: "hostile"}
}

func goodEntry(headers map[string]string) *accesslogv3.HTTPAccessLogEntry {
	return &accesslogv3.HTTPAccessLogEntry{
		CommonProperties: &accesslogv3.AccessLogCommon{UpstreamCluster: "outbound|80||api.shop.svc.cluster.local"},
		Request:          &accesslogv3.HTTPRequestProperties{RequestMethod: corev3.RequestMethod_GET, Path: "/", RequestHeaders: headers},
		Response:         &accesslogv3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(200)},
	}
}

func httpMessage(t *testing.T, id *accesslogsvc.StreamAccessLogsMessage_Identifier, entries ...*accesslogv3.HTTPAccessLogEntry) []byte {
	return marshal(t, &accesslogsvc.StreamAccessLogsMessage{Identifier: id,
		LogEntries: &accesslogsvc.StreamAccessLogsMessage_HttpLogs{HttpLogs: &accesslogsvc.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries}}})
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawIdentifier is a serialized identifier field (1) of a message whose
// node id and log name are any bytes.
func rawIdentifier(nodeID, logName []byte) []byte {
	var node, id, msg []byte
	node = protowire.AppendTag(node, 1, protowire.BytesType)
	node = protowire.AppendBytes(node, nodeID)
	id = protowire.AppendTag(id, 1, protowire.BytesType)
	id = protowire.AppendBytes(id, node)
	id = protowire.AppendTag(id, 2, protowire.BytesType)
	id = protowire.AppendBytes(id, logName)
	msg = protowire.AppendTag(msg, 1, protowire.BytesType)
	return protowire.AppendBytes(msg, id)
}

// minimalEntries is field 2 (http_logs) holding n entries of 8 bytes each:
// empty common properties, request and response.
func minimalEntries(n int) []byte {
	entries := make([]byte, 0, 8*n)
	for range n {
		entries = append(entries, 0x0a, 0x06, 0x0a, 0x00, 0x1a, 0x00, 0x22, 0x00)
	}
	var msg []byte
	msg = protowire.AppendTag(msg, 2, protowire.BytesType)
	return protowire.AppendBytes(msg, entries)
}

// alsCase runs one hostile input against a fresh receiver, then the checks
// every case shares.
func alsCase(t *testing.T, name string, run func(t *testing.T, s *alsServer), args ...string) {
	t.Run(name, func(t *testing.T) {
		s := startALS(t, args...)
		run(t, s)
		alive(t, s.p, s.metrics+"/healthz", http.DefaultClient)
		s.checkGoodStream(t)
		checkPeak(t, s.p, "als", alsPeakBound)
	})
}

func TestALSHostileInput(t *testing.T) {
	skipShort(t)
	// Findings 1-2, 4-6 of issue 15.
	alsCase(t, "finding1_256KiB_pod_name_in_node_id", func(t *testing.T, s *alsServer) {
		id := "sidecar~10.0.0.1~" + strings.Repeat("p", 256<<10) + ".shop~shop.svc.cluster.local"
		entries := make([]*accesslogv3.HTTPAccessLogEntry, 100)
		for i := range entries {
			entries[i] = goodEntry(nil)
		}
		if err := s.sendAll(t, s.dial(t), httpMessage(t, identifier(id), entries...)); err != nil {
			t.Fatalf("stream ended with %v", err)
		}
		eventually(t, "100 records", func() error {
			if v := metric(s.scrape(t), "meshtrail_als_entries_converted_total", `type="http"`); v != 100 {
				return fmt.Errorf("converted %v", v)
			}
			return nil
		})
		if v := metric(s.scrape(t), "meshtrail_als_identifier_repaired_total", `field="node.id"`, `reason="too_long"`); v != 1 {
			t.Errorf("identifier_repaired_total{node.id,too_long} = %v, want 1", v)
		}
		s.checkGoodStream(t) // flushes the output behind the 100 records
		st, err := os.Stat(s.out)
		if err != nil {
			t.Fatal(err)
		}
		// 1.57 MB per record before; now the node id is at most 1 KiB.
		if st.Size() > 101*4<<10 {
			t.Errorf("%d bytes of NDJSON for 101 records", st.Size())
		}
	})
	maxEntries := func(t *testing.T, s *alsServer, n int) {
		msg := append(rawIdentifier([]byte("sidecar~10.0.0.1~flood-1.shop~shop.svc.cluster.local"), []byte("hostile")), minimalEntries(n)...)
		if len(msg) > 4<<20 {
			t.Fatalf("message of %d bytes is over the default limit", len(msg))
		}
		if err := s.sendAll(t, s.dial(t), msg); err != nil {
			t.Fatalf("stream ended with %v", err)
		}
		eventually(t, "every entry converted", func() error {
			if v := metric(s.scrape(t), "meshtrail_als_entries_converted_total", `type="http"`); v != float64(n) {
				return fmt.Errorf("converted %v of %d", v, n)
			}
			return nil
		})
	}
	alsCase(t, "finding2_524279_entries_in_4MiB", func(t *testing.T, s *alsServer) { maxEntries(t, s, 524_279) })
	alsCase(t, "finding2_100000_entries_in_800KB", func(t *testing.T, s *alsServer) { maxEntries(t, s, 100_000) })
	alsCase(t, "finding4_invalid_utf8_in_identifier", func(t *testing.T, s *alsServer) {
		msg := append(rawIdentifier([]byte("sidecar~10.0.0.1~bad-\xff\xfe.shop~shop.svc.cluster.local"), []byte("log\xc3")), minimalEntries(3)...)
		if err := s.sendAll(t, s.dial(t), msg, minimalEntries(2)); err != nil {
			t.Fatalf("stream ended with %v; invalid UTF-8 is repaired, not refused", err)
		}
		eventually(t, "the stream's 5 records", func() error {
			m := s.scrape(t)
			if v := metric(m, "meshtrail_als_entries_converted_total", `type="http"`); v != 5 {
				return fmt.Errorf("converted %v", v)
			}
			return nil
		})
		m := s.scrape(t)
		for _, f := range []string{`field="node.id"`, `field="log_name"`} {
			if v := metric(m, "meshtrail_als_identifier_repaired_total", f, `reason="invalid_utf8"`); v != 1 {
				t.Errorf("identifier_repaired_total{%s,invalid_utf8} = %v", f, v)
			}
		}
	})
	alsCase(t, "finding5_filter_state_header_copy_in_capitals", func(t *testing.T, s *alsServer) {
		e := goodEntry(nil)
		secret, _ := anypb.New(wrapperspb.Bytes([]byte("Bearer hostile-secret")))
		e.CommonProperties.FilterStateObjects = map[string]*anypb.Any{"wasm.meshtrail_h_AUTHORIZATION": secret, "wasm.MESHTRAIL_H_Cookie": secret}
		if err := s.sendAll(t, s.dial(t), httpMessage(t, identifier("sidecar~10.0.0.1~fs-1.shop~shop.svc.cluster.local"), e)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "two headers redacted", func() error {
			if v := metric(s.scrape(t), "meshtrail_als_headers_redacted_total"); v != 2 {
				return fmt.Errorf("redacted %v", v)
			}
			return nil
		})
		s.checkGoodStream(t)
		if b, _ := os.ReadFile(s.out); bytes.Contains(b, []byte("hostile-secret")) {
			t.Error("the secret reached the NDJSON output")
		}
	})
	alsCase(t, "finding6_header_cut_inside_a_character", func(t *testing.T, s *alsServer) {
		e := goodEntry(map[string]string{"x-long": strings.Repeat("a", 8190) + "€€"})
		if err := s.sendAll(t, s.dial(t), httpMessage(t, identifier("sidecar~10.0.0.1~cut-1.shop~shop.svc.cluster.local"), e)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "one header cut", func() error {
			if v := metric(s.scrape(t), "meshtrail_als_headers_truncated_total"); v != 1 {
				return fmt.Errorf("truncated %v", v)
			}
			return nil
		})
		s.checkGoodStream(t)
		b, _ := os.ReadFile(s.out)
		if !bytes.Contains(b, []byte(`"x-long":"`+strings.Repeat("a", 8190)+`"`)) || bytes.Contains(b, []byte("\uFFFD")) {
			t.Error("the cut value is not the 8190 bytes before the character crossing 8 KiB")
		}
	})

	// What already held on main; kept so it keeps holding.
	streamError := func(reason string) func(*testing.T, *alsServer, error) {
		return func(t *testing.T, s *alsServer, err error) {
			if err == nil {
				t.Error("the stream ended OK")
			}
			eventually(t, "stream_errors_total{"+reason+"}", func() error {
				if v := metric(s.scrape(t), "meshtrail_als_stream_errors_total", `reason="`+reason+`"`); v != 1 {
					return fmt.Errorf("%v", v)
				}
				return nil
			})
		}
	}
	for _, c := range []struct {
		name  string
		msgs  func(t *testing.T) [][]byte
		check func(*testing.T, *alsServer, error)
	}{
		{"garbage", func(*testing.T) [][]byte { return [][]byte{bytes.Repeat([]byte{0xff}, 4096)} }, streamError("malformed_message")},
		{"truncated_varint", func(*testing.T) [][]byte { return [][]byte{{0x0a, 0xff, 0xff, 0xff}} }, streamError("malformed_message")},
		{"no_identifier", func(*testing.T) [][]byte { return [][]byte{minimalEntries(1)} }, streamError("missing_identifier")},
		{"64MiB_message", func(*testing.T) [][]byte {
			return [][]byte{append(rawIdentifier([]byte("x"), []byte("y")), minimalEntries(8<<20)...)}
		}, streamError("message_too_large")},
		{"wrong_wire_types", func(t *testing.T) [][]byte {
			// An entry whose common properties (1), request (3) and
			// response (4) arrive as varints: skipped as unknown, so the
			// entry has none and is rejected.
			var msg []byte
			msg = append(msg, rawIdentifier([]byte("sidecar~10.0.0.1~w-1.shop~shop.svc.cluster.local"), []byte("y"))...)
			msg = append(msg, 0x12, 0x08, 0x0a, 0x06, 0x08, 0x01, 0x18, 0x01, 0x20, 0x01)
			return [][]byte{msg}
		}, func(t *testing.T, s *alsServer, err error) {
			if err != nil {
				t.Errorf("stream ended with %v", err)
			}
			eventually(t, "the entry rejected", func() error {
				if v := metric(s.scrape(t), "meshtrail_als_entries_rejected_total", `reason="missing_common_properties"`); v != 1 {
					return fmt.Errorf("%v", v)
				}
				return nil
			})
		}},
		{"deep_nesting_in_filter_state", func(t *testing.T) [][]byte {
			// A Struct nested 20,000 deep: past protobuf's recursion limit.
			v := structpb.NewStringValue("x")
			for range 20_000 {
				v = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"k": v}})
			}
			deep, err := proto.MarshalOptions{}.Marshal(v.GetStructValue())
			if err != nil {
				t.Fatal(err)
			}
			e := goodEntry(nil)
			e.CommonProperties.FilterStateObjects = map[string]*anypb.Any{"deep": {TypeUrl: "type.googleapis.com/google.protobuf.Struct", Value: deep}}
			return [][]byte{httpMessage(t, identifier("sidecar~10.0.0.1~d-1.shop~shop.svc.cluster.local"), e)}
		}, func(t *testing.T, s *alsServer, err error) {
			if err != nil {
				t.Errorf("stream ended with %v", err)
			}
			eventually(t, "bad_filter_state counted", func() error {
				if v := metric(s.scrape(t), "meshtrail_als_entries_rejected_total", `reason="bad_filter_state"`); v != 1 {
					return fmt.Errorf("%v", v)
				}
				return nil
			})
		}},
	} {
		alsCase(t, c.name, func(t *testing.T, s *alsServer) {
			err := s.sendAll(t, s.dial(t), c.msgs(t)...)
			c.check(t, s, err)
		})
	}
	alsCase(t, "gzip_bomb", func(t *testing.T, s *alsServer) {
		// 64 MiB of zeros in 64 KiB of gzip: the receiver decompresses
		// (the binary links gRPC's gzip) no further than its message limit.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cs := openStream(t, ctx, s.dial(t), grpc.UseCompressor(grpcgzip.Name))
		bomb := append(rawIdentifier([]byte("x"), []byte("y")), minimalEntries(8<<20)...)
		_ = cs.SendMsg(bomb)
		_ = cs.CloseSend()
		var resp []byte
		if err := cs.RecvMsg(&resp); err == nil {
			t.Error("the stream ended OK")
		}
		eventually(t, "the stream's end counted", func() error {
			m := s.scrape(t)
			if v := metric(m, "meshtrail_als_stream_errors_total", `reason="message_too_large"`) + metric(m, "meshtrail_als_stream_errors_total", `reason="receive_error"`); v != 1 {
				return fmt.Errorf("%v", v)
			}
			return nil
		})
	})
	alsCase(t, "silent_and_stalled_clients", func(t *testing.T, s *alsServer) {
		// A TCP connection that never speaks, and a stream that sends half
		// a message and stalls: neither holds anyone else up.
		silent, err := net.Dial("tcp", s.grpc)
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stalled := openStream(t, ctx, s.dial(t))
		if err := stalled.SendMsg(httpMessage(t, identifier("sidecar~10.0.0.1~slow-1.shop~shop.svc.cluster.local"), goodEntry(nil))); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the stalled stream open", func() error {
			if v := metric(s.scrape(t), "meshtrail_als_streams_open"); v != 1 {
				return fmt.Errorf("streams_open %v", v)
			}
			return nil
		})
		s.checkGoodStream(t)
	})
	alsCase(t, "2000_idle_streams", func(t *testing.T, s *alsServer) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		first := httpMessage(t, identifier("sidecar~10.0.0.1~idle-1.shop~shop.svc.cluster.local"))
		for c := range 20 {
			conn := s.dial(t)
			for range 100 {
				cs := openStream(t, ctx, conn)
				if err := cs.SendMsg(first); err != nil {
					t.Fatalf("connection %d: %v", c, err)
				}
			}
		}
		eventually(t, "2000 streams open", func() error {
			if v := metric(s.scrape(t), "meshtrail_als_streams_open"); v != 2000 {
				return fmt.Errorf("streams_open %v", v)
			}
			return nil
		})
	})
	ca := harness.NewCA(t)
	cert, key := ca.Issue(t, "als", "127.0.0.1").Write(t, t.TempDir(), "als")
	alsCase(t, "plaintext_to_TLS", func(t *testing.T, s *alsServer) {
		conn, err := net.Dial("tcp", s.grpc)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
		_, _ = conn.Read(make([]byte, 64))
		conn.Close()
		eventually(t, "the plaintext handshake counted", func() error {
			if v := metric(s.scrape(t), "meshtrail_als_tls_handshake_errors_total", `reason="plaintext"`); v != 1 {
				return fmt.Errorf("%v", v)
			}
			return nil
		})
		s.clientTLS = ca.TLSClient() // the good stream goes over TLS
	}, "--tls-cert", cert, "--tls-key", key)
}

// perStreamBound is what README.md ("Bad input") promises one stream
// costs at most with the default configuration, whatever it sends: its
// message (at most grpc.max_recv_message_bytes, 4 MiB, copied out of
// gRPC's 16 KiB frame buffers), one chunk of records (256 records or
// 256 KiB of entries), the decoder's caches and the next message's
// HTTP/2 window: at most 16 MiB live, times the collector's headroom (the
// receiver runs GOGC=400; GOMEMLIMIT takes the headroom back).
const perStreamBound = 64 << 20

func TestALSPerStreamBound(t *testing.T) {
	skipShort(t)
	// 8 streams at once, each sending the worst message for its size:
	// 524,279 entries in 4 MiB.
	const streams = 8
	s := startALS(t, "--out", "")
	base := peakRSS(t, s.p.Cmd.Process.Pid)
	msg := append(rawIdentifier([]byte("sidecar~10.0.0.1~flood-1.shop~shop.svc.cluster.local"), []byte("hostile")), minimalEntries(524_279)...)
	errs := make(chan error, streams)
	for i := range streams {
		conn := s.dial(t) // a connection each: the connection window is no bound here
		go func() { errs <- s.sendAll(t, conn, msg) }()
		_ = i
	}
	for range streams {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every entry converted", func() error {
		if v := metric(s.scrape(t), "meshtrail_als_entries_converted_total", `type="http"`); v != streams*524_279 {
			return fmt.Errorf("converted %v", v)
		}
		return nil
	})
	alive(t, s.p, s.metrics+"/healthz", http.DefaultClient)
	peak := peakRSS(t, s.p.Cmd.Process.Pid)
	perStream := float64(peak-base) / streams
	t.Logf("peak RSS %.1f MiB at %d streams from %.1f MiB idle: %.1f MiB per stream (bound %d MiB)", float64(peak)/(1<<20), streams, float64(base)/(1<<20), perStream/(1<<20), perStreamBound>>20)
	if path := os.Getenv("MESHTRAIL_HOSTILE_REPORT"); path != "" {
		if f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintf(f, "als per_stream_KiB %d\n", int64(perStream)>>10)
			f.Close()
		}
	}
	if perStream > perStreamBound {
		t.Errorf("%.1f MiB per stream, over the documented %d MiB", perStream/(1<<20), perStreamBound>>20)
	}
}
