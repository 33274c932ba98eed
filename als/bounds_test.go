package als

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogsvc "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshtrail/meshtrail/internal/record"
)

// Bounds on what one client controls (issue 15): the identifier's fields,
// the records one message costs at a time, header cuts and redaction.

// rawIdentifierMessage is a StreamAccessLogsMessage with an identifier
// whose node id, cluster and log name are the given bytes (not
// necessarily UTF-8: the generated code would refuse to marshal them),
// and the given entries.
func rawIdentifierMessage(id, cluster, logName []byte, metadata []byte, entries ...*accesslogv3.HTTPAccessLogEntry) []byte {
	var node []byte
	node = protowire.AppendTag(node, 1, protowire.BytesType)
	node = protowire.AppendBytes(node, id)
	node = protowire.AppendTag(node, 2, protowire.BytesType)
	node = protowire.AppendBytes(node, cluster)
	if metadata != nil {
		node = protowire.AppendTag(node, 3, protowire.BytesType)
		node = protowire.AppendBytes(node, metadata)
	}
	var ident []byte
	ident = protowire.AppendTag(ident, 1, protowire.BytesType)
	ident = protowire.AppendBytes(ident, node)
	ident = protowire.AppendTag(ident, 2, protowire.BytesType)
	ident = protowire.AppendBytes(ident, logName)
	var msg []byte
	msg = protowire.AppendTag(msg, 1, protowire.BytesType)
	msg = protowire.AppendBytes(msg, ident)
	if len(entries) > 0 {
		b, err := proto.Marshal(httpMessage(false, entries...))
		if err != nil {
			panic(err)
		}
		msg = append(msg, b...)
	}
	return msg
}

// metadataStruct is a serialized Struct of string values.
func metadataStruct(kv map[string]string) []byte {
	s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for k, v := range kv {
		s.Fields[k] = structpb.NewStringValue(v)
	}
	b, err := proto.Marshal(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestIdentifierIsCutAndRepairedNeverEndingTheStream(t *testing.T) {
	pod := strings.Repeat("p", 256<<10)
	cases := []struct {
		name                 string
		id, cluster, logName []byte
		metadata             []byte
		wantID               string
		repaired             []string // field/reason pairs counted
	}{
		{
			name:    "256 KiB pod name in the node id",
			id:      []byte("sidecar~10.0.0.1~" + pod + ".shop~shop.svc.cluster.local"),
			cluster: []byte("cart.shop"), logName: []byte("als"),
			wantID:   ("sidecar~10.0.0.1~" + pod)[:maxNodeIDBytes],
			repaired: []string{`field="node.id",reason="too_long"`},
		},
		{
			name:    "invalid UTF-8 in the node id, log name and metadata",
			id:      []byte("sidecar~10.0.0.1~cart-\xff.shop~shop.svc.cluster.local"),
			cluster: []byte("cart.shop"), logName: []byte("als\xc3"),
			metadata: metadataStructRaw("NAME", []byte("cart-\xfe\xfe-1")),
			wantID:   "sidecar~10.0.0.1~cart-\uFFFD.shop~shop.svc.cluster.local",
			repaired: []string{`field="node.id",reason="invalid_utf8"`, `field="log_name",reason="invalid_utf8"`, `field="node.metadata.NAME",reason="invalid_utf8"`},
		},
		{
			name:    "invalid bytes that grow when replaced",
			id:      []byte(strings.Repeat("\xffa", maxNodeIDBytes)),
			cluster: []byte("c"), logName: []byte("als"),
			wantID:   strings.Repeat("\uFFFDa", maxNodeIDBytes/4),
			repaired: []string{`field="node.id",reason="too_long"`, `field="node.id",reason="invalid_utf8"`},
		},
		{
			name:    "long cluster cut inside a multi-byte character",
			id:      []byte("front-envoy"),
			cluster: []byte(strings.Repeat("a", maxNodeClusterBytes-1) + "€€"), logName: []byte("als"),
			metadata: metadataStruct(map[string]string{"WORKLOAD_NAME": strings.Repeat("w", 100_000)}),
			wantID:   "front-envoy",
			repaired: []string{`field="node.cluster",reason="too_long"`, `field="node.metadata.WORKLOAD_NAME",reason="too_long"`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts := startService(t, nil)
			stream := rawStream(t, ts.dial())
			raw := rawIdentifierMessage(c.id, c.cluster, c.logName, c.metadata, httpEntry(nil), httpEntry(nil))
			if err := stream.SendMsg(raw); err != nil {
				t.Fatal(err)
			}
			// The stream goes on: a second message on it is converted too.
			if err := stream.SendMsg(mustMarshal(httpMessage(false, httpEntry(nil)))); err != nil {
				t.Fatal(err)
			}
			if err := stream.CloseSend(); err != nil {
				t.Fatal(err)
			}
			var resp []byte
			if err := stream.RecvMsg(&resp); err != nil {
				t.Fatalf("stream ended with %v, want OK", err)
			}
			m := ts.metrics(false)
			for _, f := range c.repaired {
				if v := metricValue(t, m, "meshtrail_als_identifier_repaired_total", f); v != "1" {
					t.Errorf("identifier_repaired_total{%s} = %q, want 1", f, v)
				}
			}
			if v := metricValue(t, m, "meshtrail_als_stream_errors_total", `reason="malformed_message"`); v != "0" {
				t.Errorf("stream_errors_total{malformed_message} = %q, want 0", v)
			}
			recs := ts.records()
			if len(recs) != 3 {
				t.Fatalf("%d records, want 3", len(recs))
			}
			for _, r := range recs {
				n := r.Node
				if n.ID != c.wantID {
					t.Errorf("node id = %.80q (%d bytes), want %.80q", n.ID, len(n.ID), c.wantID)
				}
				for name, v := range map[string]string{"id": n.ID, "cluster": n.Cluster, "log name": n.LogName, "pod": n.Pod, "workload": n.Workload} {
					if !utf8.ValidString(v) {
						t.Errorf("node %s %q is not valid UTF-8", name, v)
					}
				}
				if len(n.Cluster) > maxNodeClusterBytes || len(n.Workload) > maxMetadataValueBytes || len(n.LogName) > maxLogNameBytes {
					t.Errorf("node fields over their bounds: cluster %d, workload %d, log name %d bytes", len(n.Cluster), len(n.Workload), len(n.LogName))
				}
			}
		})
	}
}

// metadataStructRaw is a Struct with one string entry whose value is
// arbitrary bytes.
func metadataStructRaw(key string, value []byte) []byte {
	var v []byte
	v = protowire.AppendTag(v, 3, protowire.BytesType)
	v = protowire.AppendBytes(v, value)
	var entry []byte
	entry = protowire.AppendTag(entry, 1, protowire.BytesType)
	entry = protowire.AppendString(entry, key)
	entry = protowire.AppendTag(entry, 2, protowire.BytesType)
	entry = protowire.AppendBytes(entry, v)
	var s []byte
	s = protowire.AppendTag(s, 1, protowire.BytesType)
	return protowire.AppendBytes(s, entry)
}

func TestIdentifierDecodesAsTheGeneratedCode(t *testing.T) {
	labels, _ := structpb.NewStruct(map[string]any{"app": "reviews", "version": "v2", "service.istio.io/canonical-name": "reviews", "other": 1})
	md := &structpb.Struct{Fields: map[string]*structpb.Value{
		"NAME": structpb.NewStringValue("reviews-v2-5b64f47978-x7k2p"), "NAMESPACE": structpb.NewStringValue("default"),
		"WORKLOAD_NAME": structpb.NewStringValue("reviews-v2"), "LABELS": structpb.NewStructValue(labels),
		"CLUSTER_ID": structpb.NewStringValue("Kubernetes"), "MESH_ID": structpb.NewNumberValue(3),
		"SERVICE_ACCOUNT": structpb.NewStringValue("bookinfo-reviews"), "ISTIO_VERSION": structpb.NewStringValue("1.24"),
	}}
	for _, n := range []*corev3.Node{
		nil,
		{Id: "sidecar~10.44.0.7~reviews-v2-5b64f47978-x7k2p.default~default.svc.cluster.local", Cluster: "reviews.default", Metadata: md},
		{Id: "router~10.0.0.9~istio-ingressgateway-5c8d7b9f4-q2w7e.istio-system~istio-system.svc.cluster.local"},
		{Id: "front-envoy", Cluster: "edge", UserAgentName: "envoy", Locality: &corev3.Locality{Zone: "z"}},
		{Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{"LABELS": structpb.NewStringValue("not a struct")}}},
	} {
		got, want := parseNode(n, "als"), refProxy(n, "als")
		if got != want {
			t.Errorf("node %v:\n got %+v\nwant %+v", n, got, want)
		}
	}
}

// FuzzIdentifier feeds arbitrary bytes as a stream identifier. Whatever the
// generated code accepts within the size limits must decode to the same
// proxy; anything else must not panic, and every field the receiver keeps
// must be valid UTF-8 within its bound.
func FuzzIdentifier(f *testing.F) {
	for _, seed := range [][]byte{
		mustMarshal(&accesslogsvc.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "sidecar~10.0.0.1~a-1.ns~ns.svc.cluster.local", Cluster: "a.ns",
			Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{"NAME": structpb.NewStringValue("a-1"), "LABELS": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"app": structpb.NewStringValue("a")}})}}}, LogName: "als"}),
		rawIdentifierMessage([]byte("sidecar~\xff~p.ns~ns"), []byte("c"), []byte("l\xc3"), metadataStructRaw("LABELS", []byte("x"))),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fields, repairs, err := decodeIdentifier(b)
		if err != nil {
			return
		}
		p := proxyFrom(fields)
		for name, v := range map[string]string{"id": p.node.ID, "cluster": p.node.Cluster, "log name": p.node.LogName, "pod": p.node.Pod,
			"workload": p.node.Workload, "canonical service": p.workload.CanonicalService, "principal": p.workload.Principal} {
			if !utf8.ValidString(v) {
				t.Fatalf("%s %q is not valid UTF-8", name, v)
			}
		}
		if len(p.node.ID) > maxNodeIDBytes || len(p.node.Cluster) > maxNodeClusterBytes || len(p.node.LogName) > maxLogNameBytes || len(p.node.Workload) > maxNodeIDBytes {
			t.Fatalf("a field is over its bound: %+v", p.node)
		}
		var id accesslogsvc.StreamAccessLogsMessage_Identifier
		if proto.Unmarshal(b, &id) != nil || len(repairs) > 0 {
			return
		}
		if want := refProxy(id.GetNode(), id.GetLogName()); p != want {
			t.Fatalf("decoded\n %+v\nthe generated code gives\n %+v", p, want)
		}
	})
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// chunkConsumer records the size of every batch it is handed.
type chunkConsumer struct {
	batches []int
	records int
}

func (c *chunkConsumer) ConsumeRecords(_ context.Context, recs []*record.Record) error {
	c.batches = append(c.batches, len(recs))
	c.records += len(recs)
	return nil
}

func TestAMessageOfManyEntriesIsHandedOnInChunks(t *testing.T) {
	// 100,000 minimal entries in one message (the 2.2 MB case, and
	// the shape of its 4 MiB case of 524,279 8-byte entries).
	const n = 100_000
	var entries []byte
	for range n {
		entries = protowire.AppendTag(entries, 1, protowire.BytesType)
		entries = protowire.AppendBytes(entries, []byte{0x0a, 0x00, 0x1a, 0x00, 0x22, 0x00}) // common, request, response: all empty
	}
	var raw []byte
	raw = append(raw, rawIdentifierMessage([]byte("sidecar~10.0.0.1~a-1.ns~ns.svc.cluster.local"), []byte("a.ns"), []byte("als"), nil)...)
	raw = protowire.AppendTag(raw, 2, protowire.BytesType)
	raw = protowire.AppendBytes(raw, entries)

	var consumer chunkConsumer
	reg := prometheus.NewRegistry()
	r := NewReceiver(&consumer, ReceiverOptions{}, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var msg wireMessage
	if err := splitMessage(raw, &msg); err != nil {
		t.Fatal(err)
	}
	if msg.http != n {
		t.Fatalf("counted %d entries, want %d", msg.http, n)
	}
	f, _, err := decodeIdentifier(msg.identifier)
	if err != nil {
		t.Fatal(err)
	}
	px := proxyFrom(f)
	var chunk recordChunk
	r.convertMessage(context.Background(), &px, newWireDecoder(r.conv), &msg, &chunk)
	if consumer.records != n {
		t.Fatalf("%d records handed on, want %d", consumer.records, n)
	}
	for i, b := range consumer.batches {
		if b > chunkRecords {
			t.Fatalf("batch %d holds %d records, over chunkRecords %d", i, b, chunkRecords)
		}
	}
	if len(consumer.batches) < n/chunkRecords {
		t.Fatalf("%d batches for %d records", len(consumer.batches), n)
	}
	for i, rec := range chunk.records[:cap(chunk.records)] {
		if rec != nil {
			t.Fatalf("the chunk still holds record %d after handing it on", i)
		}
	}
}

func TestHeaderCutKeepsCharactersWhole(t *testing.T) {
	conv := newConverter(nil, nil, 8<<10)
	value := strings.Repeat("a", 8190) + "€tail" // € is 3 bytes: 8190..8192
	e := httpEntry(map[string]string{"x-long": value, "x-short": "ok"})
	b := mustMarshal(e)
	var notes entryNotes
	px := parseNode(&corev3.Node{Id: "front-envoy"}, "als")
	r, err := newWireDecoder(conv).http(&px, b, time.Unix(0, 0), &notes)
	if err != nil {
		t.Fatal(err)
	}
	got := r.RequestHeaders["x-long"]
	if got != strings.Repeat("a", 8190) {
		t.Errorf("cut value is %d bytes ending %q, want the 8190 bytes before the character that crosses 8 KiB", len(got), got[max(0, len(got)-6):])
	}
	if notes.truncated != 1 {
		t.Errorf("truncated = %d, want 1", notes.truncated)
	}
	if !strings.Contains(string(record.AppendJSON(nil, r)), `"x-long":"`+strings.Repeat("a", 8190)+`"`) {
		t.Error("the NDJSON value is not the cut value (repaired by the writer?)")
	}
}

func TestFilterStateHeaderCopiesAreRedactedWhateverTheirCase(t *testing.T) {
	ts := startService(t, nil)
	e := httpEntry(nil)
	e.CommonProperties.FilterStateObjects = map[string]*anypb.Any{
		"wasm.meshtrail_h_AUTHORIZATION":       bytesValue(t, "Bearer secret-1"),
		"wasm.MESHTRAIL_H_Cookie":              bytesValue(t, "session=secret-2"),
		"wasm.meshtrail_h_x-api-key":           bytesValue(t, "secret-3"),
		"wasm.meshtrail_h_Proxy-Authorization": bytesValue(t, "secret-4"),
		"wasm.meshtrail_h_x_tenant":            bytesValue(t, "acme"),
	}
	e.Request.RequestHeaders = map[string]string{"AUTHORIZATION": "Bearer secret-5", "x-tenant": "acme"}
	if err := ts.send(ts.dial(), httpMessage(true, e)); err != nil {
		t.Fatal(err)
	}
	m := ts.metrics(false)
	if v := metricValue(t, m, "meshtrail_als_headers_redacted_total"); v != "5" {
		t.Errorf("headers_redacted_total = %q, want 5", v)
	}
	r := ts.records()[0]
	line := string(record.AppendJSON(nil, r))
	if strings.Contains(line, "secret") {
		t.Errorf("a secret reached the record: %s", line)
	}
	if r.FilterState["wasm.meshtrail_h_x_tenant"] != "acme" || r.RequestHeaders["x-tenant"] != "acme" {
		t.Errorf("a header that is no secret was removed: %s", line)
	}
}
