package als

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshtrail/meshtrail/internal/meshsim"
	"github.com/meshtrail/meshtrail/internal/record"
)

func TestResponseFlagsRenderAsEnvoyDoes(t *testing.T) {
	cases := []struct {
		flags *accesslogv3.ResponseFlags
		want  string
	}{
		{nil, "-"},
		{&accesslogv3.ResponseFlags{}, "-"},
		{&accesslogv3.ResponseFlags{UpstreamConnectionFailure: true, UpstreamRetryLimitExceeded: true}, "UF,URX"},
		// Envoy's render order (ALL_RESPONSE_STRINGS_FLAGS): DC after RLSE, URX after DC.
		{&accesslogv3.ResponseFlags{DownstreamConnectionTermination: true, RateLimitServiceError: true, UpstreamRetryLimitExceeded: true, FailedLocalHealthcheck: true}, "LH,RLSE,DC,URX"},
		{&accesslogv3.ResponseFlags{UnauthorizedDetails: &accesslogv3.ResponseFlags_Unauthorized{Reason: accesslogv3.ResponseFlags_Unauthorized_EXTERNAL_SERVICE}}, "UAEX"},
		{&accesslogv3.ResponseFlags{NoRouteFound: true, NoClusterFound: true, DnsResolutionFailure: true, DownstreamRemoteReset: true, OverloadManager: true}, "NR,NC,OM,DF,DR"},
		{&accesslogv3.ResponseFlags{UpstreamRequestTimeout: true, StreamIdleTimeout: true, DurationTimeout: true, UpstreamMaxStreamDurationReached: true}, "UT,SI,UMSDR,DT"},
		{&accesslogv3.ResponseFlags{DelayInjected: true, FaultInjected: true, RateLimited: true, InvalidEnvoyRequestHeaders: true, DownstreamProtocolError: true,
			ResponseFromCacheFilter: true, NoFilterConfigFound: true, UpstreamProtocolError: true, NoHealthyUpstream: true, LocalReset: true,
			UpstreamRemoteReset: true, UpstreamConnectionTermination: true, UpstreamOverflow: true},
			"UH,LR,UR,UC,UO,DI,FI,RL,IH,DPE,RFCF,NFCF,UPE"},
	}
	for _, c := range cases {
		if got := maskOf(c.flags).String(); got != c.want {
			t.Errorf("flags %v render %q, want %q", c.flags, got, c.want)
		}
	}
}

func TestParseNode(t *testing.T) {
	md, _ := structpb.NewStruct(map[string]any{
		"NAME": "reviews-v2-5b64f47978-x7k2p", "NAMESPACE": "default", "WORKLOAD_NAME": "reviews-v2",
		"CLUSTER_ID": "east", "MESH_ID": "mesh1", "NETWORK": "net-a", "SERVICE_ACCOUNT": "bookinfo-reviews",
		"LABELS": map[string]any{"app": "reviews", "version": "v2", "service.istio.io/canonical-name": "reviews-svc"},
	})
	p := parseNode(&corev3.Node{Id: "sidecar~10.44.0.7~reviews-v2-5b64f47978-x7k2p.default~default.svc.cluster.local", Cluster: "reviews.default", Metadata: md}, "als")
	want := record.Node{ID: "sidecar~10.44.0.7~reviews-v2-5b64f47978-x7k2p.default~default.svc.cluster.local", Cluster: "reviews.default",
		Type: "sidecar", IP: "10.44.0.7", Pod: "reviews-v2-5b64f47978-x7k2p", Namespace: "default", Workload: "reviews-v2",
		Mesh: "mesh1", Network: "net-a", ClusterID: "east", LogName: "als"}
	if p.node != want {
		t.Errorf("node:\n got %+v\nwant %+v", p.node, want)
	}
	w := p.workload
	if w.CanonicalService != "reviews-svc" || w.CanonicalRevision != "v2" || w.Principal != "spiffe://cluster.local/ns/default/sa/bookinfo-reviews" || w.Cluster != "east" {
		t.Errorf("workload: %+v", w)
	}

	// Without metadata the id alone still gives pod, namespace and a workload.
	p = parseNode(&corev3.Node{Id: "router~10.0.0.9~istio-ingressgateway-5c8d7b9f4-q2w7e.istio-system~istio-system.svc.cluster.local"}, "")
	if p.node.Type != "router" || p.node.Namespace != "istio-system" || p.node.Workload != "istio-ingressgateway" {
		t.Errorf("id-only node: %+v", p.node)
	}
	// A pod name may hold dots (a DNS subdomain); the namespace is after the last.
	p = parseNode(&corev3.Node{Id: "sidecar~10.0.0.7~web.v2-7d9f8c6b5d-x2k9p.shop~shop.svc.cluster.local"}, "")
	if p.node.Pod != "web.v2-7d9f8c6b5d-x2k9p" || p.node.Namespace != "shop" {
		t.Errorf("dotted pod name: pod %q namespace %q", p.node.Pod, p.node.Namespace)
	}
	// A node that is not Istio's keeps its id.
	p = parseNode(&corev3.Node{Id: "front-envoy", Cluster: "edge"}, "")
	if p.node.ID != "front-envoy" || p.node.Cluster != "edge" || p.node.Type != "" {
		t.Errorf("plain node: %+v", p.node)
	}
}

func TestParseCluster(t *testing.T) {
	cases := map[string]record.Upstream{
		"outbound|9080|v2|reviews.default.svc.cluster.local": {Direction: "outbound", Port: 9080, Subset: "v2", Service: "reviews.default.svc.cluster.local", ServiceName: "reviews", ServiceNamespace: "default"},
		"inbound|9080||":                {Direction: "inbound", Port: 9080},
		"outbound|443||api.stripe.com":  {Direction: "outbound", Port: 443, Service: "api.stripe.com", ServiceName: "api.stripe.com"},
		"PassthroughCluster":            {Direction: "outbound", ServiceName: "PassthroughCluster"},
		"BlackHoleCluster":              {Direction: "outbound", ServiceName: "BlackHoleCluster"},
		"InboundPassthroughClusterIpv4": {Direction: "inbound", ServiceName: "InboundPassthroughClusterIpv4"},
		"front-door":                    {},
		"outbound_.9080_.v2_.reviews.default.svc.cluster.local":   {Direction: "outbound", Port: 9080, Subset: "v2", Service: "reviews.default.svc.cluster.local", ServiceName: "reviews", ServiceNamespace: "default"},
		"outbound_.443_._.api.stripe.com":                         {Direction: "outbound", Port: 443, Service: "api.stripe.com", ServiceName: "api.stripe.com"},
		"inbound-vip|9080|http|reviews.default.svc.cluster.local": {Direction: "inbound", Port: 9080, Subset: "http", Service: "reviews.default.svc.cluster.local", ServiceName: "reviews", ServiceNamespace: "default"},
		"outbound|notaport||x.y.svc.cluster.local":                {Direction: "outbound", Service: "x.y.svc.cluster.local", ServiceName: "x", ServiceNamespace: "y"},
	}
	for name, want := range cases {
		var u record.Upstream
		parseCluster(name, &u)
		want.Cluster = name
		if u != want {
			t.Errorf("%s:\n got %+v\nwant %+v", name, u, want)
		}
	}
}

func TestConfigValidationNamesTheField(t *testing.T) {
	cases := []struct {
		field  string
		mutate func(*Config)
	}{
		{"listen", func(c *Config) { c.Listen = "" }},
		{"metrics_listen", func(c *Config) { c.MetricsListen = "9090" }},
		{"tls", func(c *Config) { c.TLS.CertFile = "a.crt" }},
		{"tls.client_ca_file", func(c *Config) { c.TLS.ClientCAFile = "ca.crt" }},
		{"grpc.max_recv_message_bytes", func(c *Config) { c.GRPC.MaxRecvMessageBytes = 10 }},
		{"grpc.max_connection_age", func(c *Config) { c.GRPC.MaxConnectionAge = -1 }},
		{"log_level", func(c *Config) { c.LogLevel = "loud" }},
		{"headers.max_value_bytes", func(c *Config) { c.Headers.MaxValueBytes = -5 }},
		{"trace.header_order[1]", func(c *Config) { c.Trace.HeaderOrder = []string{"b3", "jaeger"} }},
		{"trace.header_order[2]", func(c *Config) { c.Trace.HeaderOrder = []string{"b3", "w3c", "b3"} }},
		{"listen", func(c *Config) { c.Listen = "127.0.0.1:99999" }},
		{"shutdown_grace", func(c *Config) { c.ShutdownGrace = 0 }},
	}
	for _, tc := range cases {
		c := DefaultConfig()
		tc.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("%s: got %v, want an error naming the field", tc.field, err)
		}
	}
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults must be valid: %v", err)
	}
}

// FuzzConvertHTTP feeds arbitrary bytes as an HTTP entry. Whatever the
// generated code accepts, the receiver's own wire decoder must turn into
// the same record as the reference converter (without panicking), and its
// NDJSON must be valid JSON that parses back.
func FuzzConvertHTTP(f *testing.F) {
	for _, e := range []*accesslogv3.HTTPAccessLogEntry{
		httpEntry(map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "authorization": "x"}),
		httpEntry(map[string]string{"b3": "a3ce929d0e0e4736-00f067aa0ba902b7-d", "x-b3-traceid": "zz"}),
	} {
		b, _ := proto.Marshal(e)
		f.Add(b)
	}
	mesh := meshsim.Bookinfo(3)
	for _, e := range mesh.Request(time.Unix(1700000000, 0)).Entries {
		b, _ := proto.Marshal(e.HTTP)
		f.Add(b)
	}
	conv := newConverter(nil, nil, 1024)
	f.Fuzz(func(t *testing.T, b []byte) {
		pxRef := parseNode(&corev3.Node{Id: "sidecar~1.2.3.4~p.ns~ns.svc.cluster.local"}, "fuzz")
		pxWire := pxRef
		dec := newWireDecoder(conv)
		var notes entryNotes
		buf := append([]byte(nil), b...) // the receiver reuses its buffer: nothing may alias it
		got, err := dec.http(&pxWire, buf, time.Unix(0, 0), &notes)
		checkNoAliasing(t, buf, got, err)
		var e accesslogv3.HTTPAccessLogEntry
		if proto.Unmarshal(b, &e) != nil {
			return // the generated code rejects it too (or wire accepted a superset; both fine)
		}
		want, refErr := conv.refHTTP(&pxRef, &e, time.Unix(0, 0), &entryNotes{})
		if !sameAsReference(t, b, got, err, want, refErr) {
			return
		}
		for _, h := range sensitiveHeaders {
			if _, ok := got.RequestHeaders[h]; ok {
				t.Fatalf("%s kept", h)
			}
		}
		if got.Trace.TraceID != "" && (len(got.Trace.TraceID) != 32 || !isLowerHex(got.Trace.TraceID)) {
			t.Fatalf("trace id %q is not 32 lowercase hex", got.Trace.TraceID)
		}
	})
}

// repeatedMessageField reports whether a non-map message field appears
// twice at any level the decoders read, where protobuf merges and the wire
// decoder keeps the last value: a shape Envoy never produces.
func repeatedMessageField(b []byte) bool {
	seen := map[protowire.Number]bool{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return false
		}
		if typ == protowire.BytesType {
			if seen[num] {
				return true
			}
			seen[num] = true
			v, _ := protowire.ConsumeBytes(b)
			if repeatedMessageField(v) {
				return true
			}
		}
		b = b[m:]
	}
	return false
}

// The wire decoder and the reference converter agree on TCP entries too,
// including which entries are intermediate (logged before the connection
// ended), whether Envoy says so with the deprecated flag or the newer
// access_log_type.
func TestWireMatchesReferenceForTCP(t *testing.T) {
	cases := []*accesslogv3.TCPAccessLogEntry{
		{CommonProperties: &accesslogv3.AccessLogCommon{UpstreamCluster: "outbound|5432||pg.db.svc.cluster.local",
			ResponseFlags: &accesslogv3.ResponseFlags{UpstreamConnectionTermination: true}, AccessLogType: accesslogv3.AccessLogType_TcpConnectionEnd},
			ConnectionProperties: &accesslogv3.ConnectionProperties{ReceivedBytes: 10, SentBytes: 20}},
		{CommonProperties: &accesslogv3.AccessLogCommon{AccessLogType: accesslogv3.AccessLogType_TcpPeriodic},
			ConnectionProperties: &accesslogv3.ConnectionProperties{ReceivedBytes: 5}},
		// Envoys before 1.26 mark intermediate entries only this way.
		//lint:ignore SA1019 still sent by older Envoys, which the receiver must read
		{CommonProperties: &accesslogv3.AccessLogCommon{IntermediateLogEntry: true}},
	}
	conv := newConverter(nil, nil, 1024)
	for i, e := range cases {
		b, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		px := parseNode(&corev3.Node{Id: "sidecar~1.2.3.4~p.ns~ns.svc.cluster.local"}, "tcp")
		got, err := newWireDecoder(conv).tcp(&px, b, time.Unix(0, 0), &entryNotes{})
		if err != nil {
			t.Fatal(err)
		}
		want, err := conv.refTCP(&px, e, time.Unix(0, 0), &entryNotes{})
		if err != nil {
			t.Fatal(err)
		}
		if g, w := string(record.AppendJSON(nil, got)), string(record.AppendJSON(nil, want)); g != w {
			t.Errorf("case %d:\nwire %s\nref  %s", i, g, w)
		}
		if wantIntermediate := i > 0; got.Intermediate != wantIntermediate {
			t.Errorf("case %d: intermediate = %v, want %v", i, got.Intermediate, wantIntermediate)
		}
	}
}

// Every AccessLogType Envoy knows is either the final entry of a request,
// connection or session (its name ends in End; NotSet from Envoys before
// 1.27) or an intermediate one that must not be counted as a whole request.
// Walking go-control-plane's enum catches a type added by a newer Envoy.
func TestEveryAccessLogTypeIsClassified(t *testing.T) {
	for v, name := range accesslogv3.AccessLogType_name {
		final := name == "NotSet" || strings.HasSuffix(name, "End")
		if got := intermediateType(uint64(v)); got == final {
			t.Errorf("%s (%d): intermediate=%v, want %v", name, v, got, !final)
		}
	}
}

// FuzzConvertTCP is FuzzConvertHTTP for TCP entries: the wire decoder must
// not panic, must not alias its buffer, and must agree with the reference
// converter on whatever the generated code accepts.
func FuzzConvertTCP(f *testing.F) {
	for _, e := range []*accesslogv3.TCPAccessLogEntry{
		{CommonProperties: &accesslogv3.AccessLogCommon{UpstreamCluster: "outbound|5432||pg.db.svc.cluster.local",
			DownstreamRemoteAddress: socketAddress("10.0.0.9", 41000), DownstreamLocalAddress: socketAddress("10.96.0.20", 5432),
			ResponseFlags: &accesslogv3.ResponseFlags{UpstreamConnectionTermination: true}, AccessLogType: accesslogv3.AccessLogType_TcpConnectionEnd},
			ConnectionProperties: &accesslogv3.ConnectionProperties{ReceivedBytes: 10, SentBytes: 20}},
		{CommonProperties: &accesslogv3.AccessLogCommon{AccessLogType: accesslogv3.AccessLogType_TcpPeriodic, UpstreamCluster: "BlackHoleCluster"},
			ConnectionProperties: &accesslogv3.ConnectionProperties{ReceivedBytes: 5}},
	} {
		b, _ := proto.Marshal(e)
		f.Add(b)
	}
	conv := newConverter(nil, nil, 1024)
	f.Fuzz(func(t *testing.T, b []byte) {
		pxRef := parseNode(&corev3.Node{Id: "sidecar~1.2.3.4~p.ns~ns.svc.cluster.local"}, "fuzz")
		pxWire := pxRef
		buf := append([]byte(nil), b...)
		got, err := newWireDecoder(conv).tcp(&pxWire, buf, time.Unix(0, 0), &entryNotes{})
		checkNoAliasing(t, buf, got, err)
		var e accesslogv3.TCPAccessLogEntry
		if proto.Unmarshal(b, &e) != nil {
			return
		}
		want, refErr := conv.refTCP(&pxRef, &e, time.Unix(0, 0), &entryNotes{})
		sameAsReference(t, b, got, err, want, refErr)
	})
}

// checkNoAliasing fails when a decoded record changes after its message
// buffer is overwritten: the receiver reuses that buffer.
func checkNoAliasing(t *testing.T, buf []byte, got *record.Record, err error) {
	t.Helper()
	if err != nil {
		return
	}
	before := record.AppendJSON(nil, got)
	for i := range buf {
		buf[i] = 0xff
	}
	if after := record.AppendJSON(nil, got); !bytes.Equal(before, after) {
		t.Fatalf("the record changed when the message buffer was overwritten:\n%s\n%s", before, after)
	}
}

// sameAsReference checks the wire decoder's result against the reference
// converter's for entry bytes b, and that its JSON is valid and parses
// back. It reports whether both produced a record.
func sameAsReference(t *testing.T, b []byte, got *record.Record, err error, want *record.Record, refErr error) bool {
	t.Helper()
	if (err == nil) != (refErr == nil) {
		// The generated code merges repeated message fields; Envoy never
		// sends them, and wire decoding rejects nothing it accepts.
		if err != nil {
			t.Fatalf("wire decoder rejected what the reference accepts: %v", err)
		}
		return false
	}
	if err != nil {
		return false
	}
	gj, wj := record.AppendJSON(nil, got), record.AppendJSON(nil, want)
	if !json.Valid(gj) {
		t.Fatalf("invalid JSON: %s", gj)
	}
	if _, err := record.ParseJSON(gj); err != nil {
		t.Fatalf("does not parse back: %v", err)
	}
	if string(gj) != string(wj) && !repeatedMessageField(b) {
		t.Fatalf("wire and reference differ:\nwire %s\nref  %s", gj, wj)
	}
	return true
}
