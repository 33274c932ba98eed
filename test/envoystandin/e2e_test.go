package envoystandin

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshtrail/meshtrail/internal/tracecontext"
	"github.com/meshtrail/meshtrail/test/harness"
)

// The filter-state keys the ALS receiver decodes (the contract with als/).
var filterStateKeys = []string{
	"wasm.meshtrail_trace_id", "wasm.meshtrail_span_id", "wasm.meshtrail_parent_span_id", "wasm.meshtrail_sampled",
	"wasm.meshtrail_peer_principal", "wasm.meshtrail_peer_workload", "wasm.meshtrail_peer_namespace",
	"wasm.meshtrail_h_x_tenant", "wasm.meshtrail_h_request_url_path",
}

// End to end without Envoy: a real HTTP request through the stand-in
// running the compiled filter, its access log streamed to the real
// `meshtrail als` receiver, which must write a record carrying the trace
// id the filter sent upstream.
func TestAccessLogReachesReceiver(t *testing.T) {
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "meshtrail")
	build := exec.Command(goTool(), "build", "-trimpath", "-o", bin, "./cmd/meshtrail")
	build.Dir = harness.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building meshtrail: %v\n%s", err, out)
	}
	grpcAddr, metricsAddr := harness.FreeAddr(t), harness.FreeAddr(t)
	records := filepath.Join(tmp, "records.ndjson")
	rcv := harness.Start(t, "meshtrail-als", nil, bin, "als", "--listen", grpcAddr, "--metrics-listen", metricsAddr, "--out", records)
	harness.WaitHTTP(t, rcv, "http://"+metricsAddr+"/metrics", 30*time.Second)

	als, err := DialALS(grpcAddr, reviews.Proto(), "meshtrail")
	if err != nil {
		t.Fatal(err)
	}
	up := upstreamEcho(t)
	_, p := startProxy(t, HostOptions{PluginConfig: []byte(`{"tracing":{"sampling_percentage":100},"access_log":{"headers":["x-tenant"],"attributes":["request.url_path"]}}`)},
		ProxyConfig{
			Upstream: up.URL, Inbound: true, UpstreamCluster: "inbound|9080||", ALS: als,
			FilterStateObjectsToLog:       filterStateKeys,
			AdditionalRequestHeadersToLog: []string{"traceparent", "x-tenant"},
		})

	// One request starting a trace, one continuing a B3 trace.
	_, seen1 := get(t, p, map[string]string{"x-tenant": "acme", "x-envoy-peer-metadata": productpage.PeerMetadataHeader()})
	started, err := tracecontext.ParseTraceparent(seen1.Get("traceparent"))
	if err != nil {
		t.Fatalf("upstream traceparent %q: %v", seen1.Get("traceparent"), err)
	}
	_, seen2 := get(t, p, map[string]string{"x-b3-traceid": "463ac35c9f6413ad", "x-b3-spanid": "a2fb4a1d1a96d312", "x-b3-sampled": "1"})
	continued, err := tracecontext.ParseTraceparent(seen2.Get("traceparent"))
	if err != nil {
		t.Fatal(err)
	}
	// Behind Istio's peer_metadata filter: the header is consumed, the
	// filter takes the peer from downstream_peer, and Envoy logs that
	// object as Any(Struct), which the receiver makes the record's source.
	_, pi := startProxy(t, HostOptions{PluginConfig: []byte(`{"tracing":{"sampling_percentage":100}}`)},
		ProxyConfig{
			Upstream: up.URL, Inbound: true, UpstreamCluster: "inbound|9080||", ALS: als, IstioPeerMetadata: true,
			FilterStateObjectsToLog: append([]string{"downstream_peer"}, filterStateKeys...),
		})
	_, seen3 := get(t, pi, map[string]string{"x-envoy-peer-metadata": productpage.PeerMetadataHeader()})
	istio, err := tracecontext.ParseTraceparent(seen3.Get("traceparent"))
	if err != nil {
		t.Fatal(err)
	}
	if err := als.Close(); err != nil {
		t.Fatal(err)
	}
	if sent, dropped, streams := als.Stats(); sent != 3 || dropped != 0 || streams != 1 {
		t.Errorf("ALS client: sent %d dropped %d streams %d", sent, dropped, streams)
	}

	var recs map[string]map[string]any
	harness.Eventually(t, 20*time.Second, "records for both trace ids in "+records, func() error {
		recs = map[string]map[string]any{}
		b, err := os.ReadFile(records)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var r map[string]any
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				return fmt.Errorf("record %q: %v", sc.Text(), err)
			}
			if id, _ := r["trace_id"].(string); id != "" {
				recs[id] = r
			}
		}
		for _, id := range []string{started.TraceID.String(), continued.TraceID.String(), istio.TraceID.String()} {
			if recs[id] == nil {
				return fmt.Errorf("no record with trace_id %s in:\n%s", id, b)
			}
		}
		return nil
	})
	r := recs[started.TraceID.String()]
	fs, _ := r["filter_state"].(map[string]any)
	// The filter's ids became the record's trace (and are not repeated in
	// filter_state).
	if r["trace_source"] != "filter_state" || r["span_id"] != started.SpanID.String() || fs["wasm.meshtrail_trace_id"] != nil {
		t.Errorf("record trace %v/%v, filter_state %v: not the ids the filter sent upstream (%s)", r["trace_source"], r["span_id"], fs, seen1.Get("traceparent"))
	}
	if fs["wasm.meshtrail_h_x_tenant"] != "acme" || fs["wasm.meshtrail_peer_workload"] != "productpage-v1" {
		t.Errorf("filter_state %v lacks the configured header or the peer", fs)
	}
	// The entry is sent before proxy_on_log, as Envoy's is: the peer was
	// written by then.
	if fs["wasm.meshtrail_peer_namespace"] != "default" {
		t.Errorf("filter_state %v lacks the peer namespace", fs)
	}
	// Envoy serves request.url_path only while the filter has the request
	// headers (as the stand-in does): read then, it reaches the record.
	if fs["wasm.meshtrail_h_request_url_path"] != "/reviews/0" {
		t.Errorf("filter_state %v lacks request.url_path", fs)
	}
	if _, ok := r["parent_span_id"]; ok {
		t.Errorf("a trace started at this hop has no parent span: %v", r["parent_span_id"])
	}
	r2 := recs[continued.TraceID.String()]
	if continued.TraceID.String() != "0000000000000000463ac35c9f6413ad" {
		t.Errorf("B3 64-bit trace id not continued: %s", continued.TraceID)
	}
	if r2["trace_source"] != "filter_state" || r2["parent_span_id"] != "a2fb4a1d1a96d312" {
		t.Errorf("continued trace: %v parent %v, want the filter's, a2fb4a1d1a96d312", r2["trace_source"], r2["parent_span_id"])
	}
	r3 := recs[istio.TraceID.String()]
	fs3, _ := r3["filter_state"].(map[string]any)
	src, _ := r3["source"].(map[string]any)
	if src["workload"] != "productpage-v1" || src["namespace"] != "default" {
		t.Errorf("downstream_peer: record source %v, want productpage-v1 in default", r3["source"])
	}
	if fs3["wasm.meshtrail_peer_workload"] != "productpage-v1" {
		t.Errorf("downstream_peer: filter_state %v lacks the peer", fs3)
	}
	if t.Failed() {
		b, _ := json.MarshalIndent(r, "", "  ")
		t.Logf("record: %s", b)
	}
}
