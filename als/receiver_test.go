package als

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogsvc "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshtrail/meshtrail/internal/config"
	"github.com/meshtrail/meshtrail/internal/meshsim"
	"github.com/meshtrail/meshtrail/internal/record"
)

// bookinfoMessages simulates n requests and returns, per proxy, the
// messages its Envoy would send: identifier first, then batches.
func bookinfoMessages(t *testing.T, n int) (map[*meshsim.Workload][]*accesslogsvc.StreamAccessLogsMessage, []meshsim.Request) {
	t.Helper()
	mesh := meshsim.Bookinfo(7)
	mesh.ErrorRate = 0.3
	mesh.WithFilter = false // correlation from the logged headers alone
	var reqs []meshsim.Request
	var entries []meshsim.Entry
	start := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		r := mesh.Request(start.Add(time.Duration(i) * time.Millisecond))
		reqs = append(reqs, r)
		entries = append(entries, r.Entries...)
	}
	batches := meshsim.Batch(entries, 16<<10)
	for w, msgs := range batches {
		msgs[0].Identifier = w.Identifier("meshtrail")
	}
	return batches, reqs
}

func TestBookinfoRecordsAreCorrelatedByTraceID(t *testing.T) {
	ts := startService(t, nil)
	conn := ts.dial()
	batches, reqs := bookinfoMessages(t, 60)
	var wg sync.WaitGroup
	for _, msgs := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ts.send(conn, msgs...); err != nil {
				t.Errorf("send: %v", err)
			}
		}()
	}
	wg.Wait()
	metricsText := ts.metrics(true)
	recs := ts.records()

	want := 0
	for _, r := range reqs {
		want += len(r.Entries)
	}
	if len(recs) != want {
		t.Fatalf("got %d records, want one per entry: %d", len(recs), want)
	}
	byTrace := map[string][]*record.Record{}
	for _, r := range recs {
		if r.Trace.TraceID == "" {
			t.Fatalf("record without trace id: %+v", r)
		}
		byTrace[r.Trace.TraceID] = append(byTrace[r.Trace.TraceID], r)
	}
	sawFailure := false
	for _, req := range reqs {
		got := byTrace[req.TraceID]
		if len(got) != len(req.Entries) {
			t.Fatalf("trace %s: %d records, want every hop's %d", req.TraceID, len(got), len(req.Entries))
		}
		sources := map[string]bool{}
		for _, r := range got {
			sources[r.Trace.Source] = true
			if r.Node.ID == "" || r.Node.Workload == "" || r.Node.Namespace == "" {
				t.Fatalf("record lost its stream's node: %+v", r.Node)
			}
		}
		// Bookinfo's proxies propagate W3C, B3 multi and B3 single: all
		// three must land on the same trace id.
		if !sources["traceparent"] || !sources["x-b3"] {
			t.Errorf("trace %s was not joined across propagation formats: %v", req.TraceID, sources)
		}
		if req.Failed {
			sawFailure = true
		}
	}
	if !sawFailure {
		t.Fatal("the simulation produced no failure; raise ErrorRate")
	}

	// One outbound record in detail: productpage -> reviews.
	var out *record.Record
	for _, r := range recs {
		if r.Reporter == record.ReporterSource && r.Upstream.ServiceName == "ratings" && r.HTTP.ResponseCode == 503 {
			out = r
			break
		}
	}
	if out == nil {
		t.Fatal("no failed outbound call to ratings")
	}
	if out.ResponseFlags != "UF,URX" || out.Upstream.RequestAttemptCount != 3 {
		t.Errorf("flags %q attempts %d, want UF,URX after 3 attempts", out.ResponseFlags, out.Upstream.RequestAttemptCount)
	}
	if out.Upstream.Direction != "outbound" || out.Upstream.Port != 9080 || out.Upstream.ServiceNamespace != "bookinfo" {
		t.Errorf("upstream cluster not parsed: %+v", out.Upstream)
	}
	// A refused connection carries no peer metadata: the receiver names
	// ratings from its address once ratings' own stream was seen, which
	// here runs alongside its callers' (istiolabels_test.go orders them).
	if (out.Destination.Name != "ratings-v1" && out.Destination.Name != "") || !strings.HasPrefix(out.Source.Name, "reviews-v") {
		t.Errorf("workloads: source %q destination %q", out.Source.Name, out.Destination.Name)
	}
	if out.Timings.Total != 25*time.Millisecond+out.Timings.Total-out.Timings.Total && out.Timings.Total == 0 {
		t.Errorf("duration missing")
	}

	// An inbound record: mTLS identity from the peer certificate.
	for _, r := range recs {
		if r.Reporter == record.ReporterDestination && r.Destination.Name == "details-v1" {
			if r.ConnectionSecurityPolicy != "mutual_tls" || r.Source.Principal != "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage" {
				t.Errorf("inbound identity: policy %q source principal %q", r.ConnectionSecurityPolicy, r.Source.Principal)
			}
			if r.Upstream.Service != "details.bookinfo.svc.cluster.local" {
				t.Errorf("inbound destination service %q, want it from the authority", r.Upstream.Service)
			}
			break
		}
	}

	// RED metrics with Istio's labels, and exemplars over OpenMetrics.
	// The refused calls are put on ratings-v1 from the address map its own
	// stream taught the receiver; a call that raced ahead of that stream
	// stays on unknown, as Istio's would without endpoint metadata.
	named := metricValue(t, metricsText, "meshtrail_requests_total", `reporter="source"`, `destination_workload="ratings-v1"`, `response_code="503"`, `response_flags="UF,URX"`)
	unnamed := metricValue(t, metricsText, "meshtrail_requests_total", `reporter="source"`, `destination_workload="unknown"`, `destination_service_name="ratings"`, `response_code="503"`, `response_flags="UF,URX"`)
	if (named == "" || named == "0") && (unnamed == "" || unnamed == "0") {
		t.Errorf("no meshtrail_requests_total series for the failed ratings calls")
	}
	if !strings.Contains(metricsText, `# {trace_id="`) {
		t.Errorf("no trace_id exemplars in the OpenMetrics output")
	}
	if v := metricValue(t, metricsText, "meshtrail_als_entries_converted_total", `type="http"`); v != fmt.Sprint(want) {
		t.Errorf("entries converted counter = %q, want %d", v, want)
	}
}

func httpEntry(headers map[string]string) *accesslogv3.HTTPAccessLogEntry {
	return &accesslogv3.HTTPAccessLogEntry{
		ProtocolVersion: accesslogv3.HTTPAccessLogEntry_HTTP2,
		CommonProperties: &accesslogv3.AccessLogCommon{
			StartTime:       timestamppb.New(time.Unix(1700000000, 0)),
			Duration:        durationpb.New(3 * time.Millisecond),
			UpstreamCluster: "outbound|8080||api.shop.svc.cluster.local",
		},
		Request:  &accesslogv3.HTTPRequestProperties{RequestMethod: corev3.RequestMethod_POST, Path: "/cart", RequestHeaders: headers},
		Response: &accesslogv3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(200)},
	}
}

func httpMessage(id bool, entries ...*accesslogv3.HTTPAccessLogEntry) *accesslogsvc.StreamAccessLogsMessage {
	m := &accesslogsvc.StreamAccessLogsMessage{LogEntries: &accesslogsvc.StreamAccessLogsMessage_HttpLogs{
		HttpLogs: &accesslogsvc.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries}}}
	if id {
		m.Identifier = &accesslogsvc.StreamAccessLogsMessage_Identifier{
			Node:    &corev3.Node{Id: "sidecar~10.1.2.3~cart-5d8f7c9b6d-abcde.shop~shop.svc.cluster.local"},
			LogName: "test",
		}
	}
	return m
}

func TestInvalidTraceHeadersGiveNoTraceIDAndAreCounted(t *testing.T) {
	cases := []struct {
		name    string
		headers map[string]string
		trace   string // expected trace id, "" for none
		format  string // counter label when invalid
	}{
		{"valid traceparent", map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "4bf92f3577b34da6a3ce929d0e0e4736", ""},
		{"all-zero trace id", map[string]string{"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}, "", "traceparent"},
		{"all-zero span id", map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"}, "", "traceparent"},
		{"version ff", map[string]string{"traceparent": "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "", "traceparent"},
		{"short", map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"}, "", "traceparent"},
		{"uppercase", map[string]string{"traceparent": "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}, "", "traceparent"},
		{"bad flags", map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g"}, "", "traceparent"},
		{"duplicated (joined by Envoy)", map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01,00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "", "traceparent"},
		{"b3 64-bit is left-padded", map[string]string{"b3": "a3ce929d0e0e4736-00f067aa0ba902b7-1"}, "0000000000000000a3ce929d0e0e4736", ""},
		{"b3 bad sampling", map[string]string{"b3": "a3ce929d0e0e4736-00f067aa0ba902b7-x"}, "", "b3"},
		{"b3 deny only", map[string]string{"b3": "0"}, "", ""},
		{"x-b3 multi", map[string]string{"x-b3-traceid": "4bf92f3577b34da6a3ce929d0e0e4736", "x-b3-spanid": "00f067aa0ba902b7", "x-b3-sampled": "1"}, "4bf92f3577b34da6a3ce929d0e0e4736", ""},
		{"x-b3 zero trace", map[string]string{"x-b3-traceid": "0000000000000000", "x-b3-spanid": "00f067aa0ba902b7"}, "", "x-b3"},
		{"invalid traceparent falls back to valid b3", map[string]string{"traceparent": "garbage", "b3": "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"}, "4bf92f3577b34da6a3ce929d0e0e4736", "traceparent"},
	}
	ts := startService(t, nil)
	conn := ts.dial()
	var entries []*accesslogv3.HTTPAccessLogEntry
	for _, c := range cases {
		h := map[string]string{"x-case": c.name}
		for k, v := range c.headers {
			h[k] = v
		}
		entries = append(entries, httpEntry(h))
	}
	if err := ts.send(conn, httpMessage(true, entries...)); err != nil {
		t.Fatal(err)
	}
	m := ts.metrics(false)
	recs := ts.records()
	if len(recs) != len(cases) {
		t.Fatalf("%d records, want %d: an invalid trace header must not drop the entry", len(recs), len(cases))
	}
	invalid := map[string]int{}
	for i, c := range cases {
		if got := recs[i].Trace.TraceID; got != c.trace {
			t.Errorf("%s: trace id %q, want %q", c.name, got, c.trace)
		}
		if c.format != "" {
			invalid[c.format]++
		}
	}
	for format, n := range invalid {
		total := 0
		for _, line := range strings.Split(m, "\n") {
			if strings.HasPrefix(line, "meshtrail_als_invalid_trace_headers_total{") && strings.Contains(line, `format="`+format+`"`) {
				var v int
				fmt.Sscan(strings.Fields(line)[1], &v)
				total += v
			}
		}
		if total != n {
			t.Errorf("invalid %s counter = %d, want %d", format, total, n)
		}
	}
}

func TestSensitiveHeadersNeverEnterRecordsUnlessAllowed(t *testing.T) {
	headers := func() map[string]string {
		return map[string]string{"authorization": "Bearer secret", "cookie": "session=secret", "x-api-key": "k",
			"proxy-authorization": "Basic x", "x-tenant": "acme", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			"X-Auth-Token": "t"} // a sender that does not lowercase as Envoy does
	}
	for _, allowed := range [][]string{nil, {"Cookie"}} {
		ts := startService(t, func(c *Config) { c.Headers.AllowSensitive = allowed })
		e := httpEntry(headers())
		e.Response.ResponseHeaders = map[string]string{"set-cookie": "a=b", "content-type": "text/html"}
		// The Wasm filter told to log credentials (access_log.headers)
		// does not get them past the receiver.
		e.CommonProperties.FilterStateObjects = map[string]*anypb.Any{
			"wasm.meshtrail_h_authorization": bytesValue(t, "Bearer secret"),
			"wasm.meshtrail_h_cookie":        bytesValue(t, "session=secret"),
			"wasm.meshtrail_h_x_tenant":      bytesValue(t, "acme"),
		}
		if err := ts.send(ts.dial(), httpMessage(true, e)); err != nil {
			t.Fatal(err)
		}
		recs := ts.records()
		r := recs[0]
		for _, h := range []string{"authorization", "x-api-key", "proxy-authorization", "X-Auth-Token"} {
			if _, ok := r.RequestHeaders[h]; ok {
				t.Errorf("allowed=%v: %s leaked into the record", allowed, h)
			}
		}
		if _, ok := r.FilterState["wasm.meshtrail_h_authorization"]; ok {
			t.Errorf("allowed=%v: the filter's copy of authorization leaked into the record", allowed)
		}
		if _, ok := r.FilterState["wasm.meshtrail_h_cookie"]; ok != (allowed != nil) {
			t.Errorf("allowed=%v: the filter's copy of cookie present=%v", allowed, ok)
		}
		if r.FilterState["wasm.meshtrail_h_x_tenant"] != "acme" {
			t.Errorf("ordinary header copies must stay: %v", r.FilterState)
		}
		if _, ok := r.ResponseHeaders["set-cookie"]; ok {
			t.Errorf("set-cookie leaked into the record")
		}
		_, hasCookie := r.RequestHeaders["cookie"]
		if hasCookie != (allowed != nil) {
			t.Errorf("allowed=%v: cookie present=%v", allowed, hasCookie)
		}
		if r.RequestHeaders["x-tenant"] != "acme" || r.Trace.TraceID == "" {
			t.Errorf("ordinary headers and the trace must stay: %v", r.RequestHeaders)
		}
	}
}

func TestBadInputDropsOnlyWhatIsBad(t *testing.T) {
	ts := startService(t, nil)
	conn := ts.dial()

	// A stream whose first message has no identifier is refused...
	err := ts.send(conn, httpMessage(false, httpEntry(nil)))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "identifier") {
		t.Fatalf("stream without identifier: got %v, want InvalidArgument naming the identifier", err)
	}

	// ...an entry without request or response is dropped, its neighbours kept...
	noReq := httpEntry(nil)
	noReq.Request = nil
	noResp := httpEntry(nil)
	noResp.Response = nil
	noCommon := httpEntry(nil)
	noCommon.CommonProperties = nil
	huge := httpEntry(map[string]string{"x-huge": strings.Repeat("a", 1<<20)})
	if err := ts.send(conn, httpMessage(true, httpEntry(map[string]string{"x-n": "1"}), noReq, noResp, noCommon, huge, httpEntry(map[string]string{"x-n": "2"}))); err != nil {
		t.Fatalf("a message with bad entries must not end the stream: %v", err)
	}

	// Invalid UTF-8, as Envoy may send it: Go's proto library will not
	// marshal it, so patch the bytes on the wire (same lengths).
	badUTF8 := httpEntry(map[string]string{"x-bytes": "cafQ"})
	badUTF8.Request.Path = "/QQ"
	wire, err := proto.Marshal(httpMessage(true, badUTF8))
	if err != nil {
		t.Fatal(err)
	}
	wire = bytes.Replace(wire, []byte("cafQ"), []byte("caf\xe9"), 1)
	wire = bytes.Replace(wire, []byte("/QQ"), []byte("/\xff\xfe"), 1)
	utf8Stream := rawStream(t, conn)
	if err := utf8Stream.SendMsg(wire); err != nil {
		t.Fatal(err)
	}
	_ = utf8Stream.CloseSend()
	if err := utf8Stream.RecvMsg(new([]byte)); err != nil && !strings.Contains(err.Error(), "cardinality") && err != io.EOF {
		t.Fatalf("invalid UTF-8 must be repaired, not end the stream: %v", err)
	}

	// ...and a stream of malformed protobuf ends only that stream.
	raw := rawStream(t, conn)
	if err := raw.SendMsg([]byte{0x0a, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	_ = raw.CloseSend()
	err = raw.RecvMsg(new([]byte))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("malformed protobuf: got %v, want InvalidArgument saying what is malformed", err)
	}
	if err := ts.send(conn, httpMessage(true, httpEntry(map[string]string{"x-n": "3"}))); err != nil {
		t.Fatalf("other streams must keep flowing: %v", err)
	}

	m := ts.metrics(false)
	logs := ts.logText()
	recs := ts.records()
	if len(recs) != 5 {
		t.Fatalf("%d records, want 5 (2 good + huge + bad UTF-8 + after the malformed stream)", len(recs))
	}
	for _, r := range recs {
		if v, ok := r.RequestHeaders["x-huge"]; ok && len(v) != 8<<10 {
			t.Errorf("1 MiB header kept at %d bytes, want cut to 8 KiB", len(v))
		}
		if r.RequestHeaders["x-bytes"] != "" && r.RequestHeaders["x-bytes"] != "caf\uFFFD" {
			t.Errorf("invalid UTF-8 not repaired: %q", r.RequestHeaders["x-bytes"])
		}
	}
	for _, reason := range []string{"missing_request", "missing_response", "missing_common_properties"} {
		if v := metricValue(t, m, "meshtrail_als_entries_rejected_total", `reason="`+reason+`"`); v != "1" {
			t.Errorf("rejected{%s} = %q, want 1", reason, v)
		}
	}
	for _, reason := range []string{"missing_identifier", "malformed_message"} {
		if v := metricValue(t, m, "meshtrail_als_stream_errors_total", `reason="`+reason+`"`); v != "1" {
			t.Errorf("stream_errors{%s} = %q, want 1", reason, v)
		}
	}
	if v := metricValue(t, m, "meshtrail_als_messages_utf8_repaired_total"); v != "1" {
		t.Errorf("utf8 repaired = %q, want 1", v)
	}
	for _, want := range []string{"HTTP entry without request properties", "node=sidecar~10.1.2.3~cart", "first message has no identifier", "reason=malformed_message"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log does not say %q:\n%s", want, logs)
		}
	}
}

func TestThousandConcurrentStreams(t *testing.T) {
	ts := startService(t, func(c *Config) { c.GRPC.MaxConcurrentStreams = 2000 })
	conn := ts.dial()
	const streams = 1000
	var wg sync.WaitGroup
	for i := 0; i < streams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ts.send(conn, httpMessage(true, httpEntry(map[string]string{"x-stream": fmt.Sprint(i)}))); err != nil {
				t.Errorf("stream %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, r := range ts.records() {
		seen[r.RequestHeaders["x-stream"]] = true
	}
	if len(seen) != streams {
		t.Fatalf("records from %d streams, want %d", len(seen), streams)
	}
}

func TestTCPEntries(t *testing.T) {
	ts := startService(t, nil)
	msg := &accesslogsvc.StreamAccessLogsMessage{
		Identifier: httpMessage(true).Identifier,
		LogEntries: &accesslogsvc.StreamAccessLogsMessage_TcpLogs{TcpLogs: &accesslogsvc.StreamAccessLogsMessage_TCPAccessLogEntries{
			LogEntry: []*accesslogv3.TCPAccessLogEntry{{
				CommonProperties: &accesslogv3.AccessLogCommon{
					UpstreamCluster: "outbound|5432||postgres.db.svc.cluster.local",
					ResponseFlags:   &accesslogv3.ResponseFlags{UpstreamConnectionTermination: true},
					FilterStateObjects: map[string]*anypb.Any{
						fsTraceID: bytesValue(t, "4bf92f3577b34da6a3ce929d0e0e4736"),
					},
				},
				ConnectionProperties: &accesslogv3.ConnectionProperties{ReceivedBytes: 1200, SentBytes: 34000},
			}},
		}},
	}
	if err := ts.send(ts.dial(), msg); err != nil {
		t.Fatal(err)
	}
	m := ts.metrics(false)
	recs := ts.records()
	r := recs[0]
	if r.Kind != record.KindTCP || r.SentBytes != 34000 || r.ReceivedBytes != 1200 || r.ResponseFlags != "UC" {
		t.Fatalf("tcp record: %+v", r)
	}
	if r.Trace.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || r.Trace.Source != "filter_state" {
		t.Errorf("trace from filter state: %+v", r.Trace)
	}
	if v := metricValue(t, m, "meshtrail_tcp_sent_bytes_total", `destination_service="postgres.db.svc.cluster.local"`, `request_protocol="tcp"`); v != "34000" {
		t.Errorf("tcp_sent_bytes_total = %q, want 34000", v)
	}
}

func bytesValue(t *testing.T, s string) *anypb.Any {
	t.Helper()
	a, err := anypb.New(wrapperspb.Bytes([]byte(s)))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestFilterStateFromTheWasmFilterWinsOverHeaders(t *testing.T) {
	ts := startService(t, nil)
	e := httpEntry(map[string]string{"traceparent": "00-11111111111111111111111111111111-2222222222222222-01"})
	e.CommonProperties.FilterStateObjects = map[string]*anypb.Any{
		"wasm.meshtrail_trace_id":       bytesValue(t, "4bf92f3577b34da6a3ce929d0e0e4736"),
		"wasm.meshtrail_span_id":        bytesValue(t, "00f067aa0ba902b7"),
		"wasm.meshtrail_parent_span_id": bytesValue(t, "2222222222222222"),
		"wasm.meshtrail_sampled":        bytesValue(t, "1"),
		"wasm.meshtrail_h_x_tenant":     bytesValue(t, "acme"),
	}
	if err := ts.send(ts.dial(), httpMessage(true, e)); err != nil {
		t.Fatal(err)
	}
	r := ts.records()[0]
	if r.Trace.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || r.Trace.SpanID != "00f067aa0ba902b7" ||
		r.Trace.ParentSpanID != "2222222222222222" || r.Trace.Sampled == nil || !*r.Trace.Sampled {
		t.Errorf("trace = %+v", r.Trace)
	}
	if r.FilterState["wasm.meshtrail_h_x_tenant"] != "acme" {
		t.Errorf("filter state not decoded: %v", r.FilterState)
	}
	// The ids became the record's trace: they are not repeated as text.
	if len(r.FilterState) != 1 {
		t.Errorf("filter state %v repeats the trace it became", r.FilterState)
	}
}

// A filter-state span id or sampling flag that is not valid is not used,
// is counted, and stays in the record's filter state.
func TestInvalidFilterStateSpanStaysVisible(t *testing.T) {
	ts := startService(t, nil)
	e := httpEntry(nil)
	e.CommonProperties.FilterStateObjects = map[string]*anypb.Any{
		"wasm.meshtrail_trace_id": bytesValue(t, "4bf92f3577b34da6a3ce929d0e0e4736"),
		"wasm.meshtrail_span_id":  bytesValue(t, "NOT-A-SPAN"),
		"wasm.meshtrail_sampled":  bytesValue(t, "maybe"),
	}
	if err := ts.send(ts.dial(), httpMessage(true, e)); err != nil {
		t.Fatal(err)
	}
	if m := ts.metrics(false); !strings.Contains(m, `meshtrail_als_invalid_trace_headers_total{format="filter_state",reason="malformed"} 2`) {
		t.Errorf("invalid span id and sampled flag not counted:\n%s", grepLines(m, "invalid_trace"))
	}
	r := ts.records()[0]
	if r.Trace.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || r.Trace.SpanID != "" || r.Trace.Sampled != nil {
		t.Errorf("trace = %+v", r.Trace)
	}
	if r.FilterState["wasm.meshtrail_span_id"] != "NOT-A-SPAN" || r.FilterState["wasm.meshtrail_sampled"] != "maybe" || r.FilterState["wasm.meshtrail_trace_id"] != "" {
		t.Errorf("filter state %v: want the invalid values kept and the used trace id not repeated", r.FilterState)
	}
}

// A filter-state trace id that is not valid is not used, and stays in the
// record's filter state so the user sees what the filter wrote.
func TestInvalidFilterStateTraceStaysVisible(t *testing.T) {
	ts := startService(t, nil)
	e := httpEntry(map[string]string{"traceparent": "00-11111111111111111111111111111111-2222222222222222-01"})
	e.CommonProperties.FilterStateObjects = map[string]*anypb.Any{
		"wasm.meshtrail_trace_id": bytesValue(t, "not-a-trace-id"),
		"wasm.meshtrail_span_id":  bytesValue(t, "00f067aa0ba902b7"),
	}
	if err := ts.send(ts.dial(), httpMessage(true, e)); err != nil {
		t.Fatal(err)
	}
	r := ts.records()[0]
	if r.Trace.TraceID != "11111111111111111111111111111111" || r.Trace.Source != "traceparent" {
		t.Errorf("trace = %+v, want the traceparent's", r.Trace)
	}
	if r.FilterState["wasm.meshtrail_trace_id"] != "not-a-trace-id" || r.FilterState["wasm.meshtrail_span_id"] != "00f067aa0ba902b7" {
		t.Errorf("filter state %v lost the invalid trace the filter wrote", r.FilterState)
	}
}

func TestFloodIsHeldBackByFlowControl(t *testing.T) {
	release := make(chan struct{})
	var consumed sync.WaitGroup
	block := blockingConsumer{release: release, wg: &consumed}
	// Drive the Receiver directly with a consumer that blocks, behind a
	// real gRPC server.
	cfg := DefaultConfig()
	cfg.Listen, cfg.MetricsListen = "127.0.0.1:0", ""
	svc, err := Start(cfg, block, prometheus.NewRegistry(), NewLogger(&strings.Builder{}, "error"))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(context.Background())
	ts := &testService{t: t, svc: svc}
	conn := ts.dial()
	stream, err := accesslogsvc.NewAccessLogServiceClient(conn).StreamAccessLogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	big := httpEntry(map[string]string{"x-pad": strings.Repeat("p", 4000)})
	msg := httpMessage(true, big, big, big, big)
	var sent sync.WaitGroup
	var mu sync.Mutex
	n := 0
	sent.Add(1)
	go func() {
		defer sent.Done()
		for i := 0; i < 5000; i++ {
			if stream.Send(msg) != nil {
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
		}
	}()
	// Wait until the client cannot send any more: the receiver is stuck in
	// the blocked sink and gRPC flow control has stopped the sender.
	last, stable := -1, 0
	for stable < 10 {
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		cur := n
		mu.Unlock()
		if cur == last {
			stable++
		} else {
			stable, last = 0, cur
		}
	}
	if last >= 5000 {
		t.Fatalf("the client sent all %d messages while the sink was blocked: nothing pushed back", last)
	}
	if last > 1000 {
		t.Errorf("%d messages (%d MiB) buffered while the sink was blocked: flow control should hold it to a few windows", last, last*16/1024)
	}
	close(release)
	sent.Wait()
	_ = stream.CloseSend()
}

type blockingConsumer struct {
	release chan struct{}
	wg      *sync.WaitGroup
}

func (b blockingConsumer) Name() string { return "blocking" }
func (b blockingConsumer) ConsumeRecords(ctx context.Context, _ []*record.Record) error {
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return nil
}

var _ = rand.Read

// Envoy never ends its access log stream. On shutdown a stream that is
// still sending ends cleanly (a response, status OK) right after its next
// message, whose records are written: a rolling update does not wait for
// the grace to run out, nor cut the stream with messages in flight.
func TestShutdownEndsBusyStreamsAfterTheirNextMessage(t *testing.T) {
	ts := startService(t, nil)
	stream, err := accesslogsvc.NewAccessLogServiceClient(ts.dial()).StreamAccessLogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	first := httpEntry(nil)
	first.Request.Path = "/before-shutdown"
	if err := stream.Send(httpMessage(true, first)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		return ts.svc.receiver.Streams() == 1 && strings.Contains(ts.metrics(false), "meshtrail_als_processing_seconds_count 1")
	})
	shutdownDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		shutdownDone <- ts.svc.Shutdown(ctx)
	}()
	waitFor(t, func() bool { return ts.svc.receiver.draining.Load() })
	// Not ready any more: Kubernetes sends new connections elsewhere.
	ready, err := http.Get("http://" + ts.svc.MetricsAddr() + "/readyz")
	if err != nil {
		t.Fatalf("/readyz while shutting down: %v", err)
	}
	ready.Body.Close()
	if ready.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz while shutting down: %s, want 503", ready.Status)
	}
	// Envoy keeps flushing: twenty messages back to back. They are read
	// from the stream before it ends (gRPC already holds them), not
	// dropped when the handler returns after the first.
	for i := range 20 {
		e := httpEntry(nil)
		e.Request.Path = fmt.Sprintf("/during-shutdown/%d", i)
		if err := stream.Send(httpMessage(false, e)); err != nil {
			t.Fatal(err)
		}
	}
	// Like Envoy, the client never closes its side: the server ends it.
	var resp accesslogsvc.StreamAccessLogsResponse
	if err := stream.RecvMsg(&resp); err != nil {
		t.Fatalf("stream ended by %v, want a response and status OK", err)
	}
	if err := <-shutdownDone; err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ts.logText(), "cutting the streams") {
		t.Errorf("the busy stream was cut instead of ended after its message:\n%s", ts.logText())
	}
	recs := ts.records()
	if len(recs) != 21 || recs[20].HTTP.Path != "/during-shutdown/19" {
		t.Fatalf("%d records, want the 21 sent before the stream ended", len(recs))
	}
}

// A stream with nothing in flight is cut once half the grace is gone, so
// the sinks keep the other half to flush.
func TestShutdownCutsIdleStreams(t *testing.T) {
	ts := startService(t, nil)
	stream, err := accesslogsvc.NewAccessLogServiceClient(ts.dial()).StreamAccessLogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(httpMessage(true, httpEntry(nil))); err != nil {
		t.Fatal(err)
	}
	// The message is consumed before the shutdown starts: the stream is
	// idle in its next receive.
	waitFor(t, func() bool { return strings.Contains(ts.metrics(false), "meshtrail_als_processing_seconds_count 1") })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := ts.svc.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Errorf("shutdown used the whole grace: the sinks had none left")
	}
	if !strings.Contains(ts.logText(), "cutting the streams still open") || !strings.Contains(ts.logText(), "streams=1") {
		t.Errorf("no log line says an idle stream was cut:\n%s", ts.logText())
	}
	if recs := ts.records(); len(recs) != 1 {
		t.Errorf("%d records, want the one sent before the shutdown", len(recs))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
	}
}

// At its connection's max age a stream ends cleanly after its next
// message (the GOAWAY is out), so Envoy reopens it on a new connection and
// the grace's hard cut finds nothing in flight. The age is the
// connection's: a second logger's stream opened later on it ends too.
func TestStreamEndsCleanlyAtMaxAge(t *testing.T) {
	ts := startService(t, func(c *Config) {
		c.GRPC.MaxConnectionAge = config.Duration(300 * time.Millisecond)
		c.GRPC.MaxConnectionAgeGrace = config.Duration(time.Minute)
	})
	client := accesslogsvc.NewAccessLogServiceClient(ts.dial())
	first, err := client.StreamAccessLogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Send(httpMessage(true, httpEntry(nil))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return ts.svc.receiver.Streams() == 1 })
	time.Sleep(150 * time.Millisecond) // the connection is older than the next stream
	second, err := client.StreamAccessLogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Send(httpMessage(true, httpEntry(nil))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond) // past 1.1 x the max age for the connection, not for the second stream
	for i, stream := range []accesslogsvc.AccessLogService_StreamAccessLogsClient{first, second} {
		if err := stream.Send(httpMessage(false, httpEntry(nil))); err != nil {
			t.Fatal(err)
		}
		var resp accesslogsvc.StreamAccessLogsResponse
		if err := stream.RecvMsg(&resp); err != nil {
			t.Fatalf("stream %d ended by %v, want a response and status OK", i+1, err)
		}
	}
	if m := ts.metrics(false); !strings.Contains(m, "meshtrail_als_streams_aged_total 2") {
		t.Errorf("aged streams not counted:\n%s", grepLines(m, "streams_"))
	}
	if recs := ts.records(); len(recs) != 4 {
		t.Errorf("%d records, want every message's", len(recs))
	}
}
