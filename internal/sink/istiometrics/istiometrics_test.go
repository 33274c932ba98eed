package istiometrics

import (
	"context"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshtrail/meshtrail/internal/record"
)

// istioHTTPLabels are the labels of istio_requests_total as Istio's docs
// (Istio Standard Metrics) list them.
var istioHTTPLabels = []string{
	"reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
	"source_cluster", "source_canonical_service", "source_canonical_revision",
	"destination_workload", "destination_workload_namespace", "destination_principal", "destination_app",
	"destination_version", "destination_service", "destination_service_name", "destination_service_namespace",
	"destination_canonical_service", "destination_canonical_revision", "destination_cluster",
	"request_protocol", "response_code", "grpc_response_status", "response_flags", "connection_security_policy",
}

// envoyDefaultBuckets are Envoy's default histogram bucket bounds, which
// Istio's histograms use for durations and sizes alike.
var envoyDefaultBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

func newMetrics(t *testing.T, opts Options) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(opts, reg)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func httpRecord(code uint32) *record.Record {
	r := &record.Record{Kind: record.KindHTTP, Reporter: record.ReporterDestination, ReceivedAt: time.Now()}
	r.Source = record.Workload{Name: "productpage-v1", Namespace: "bookinfo", CanonicalService: "productpage", CanonicalRevision: "v1", App: "productpage", Version: "v1"}
	r.Destination = record.Workload{Name: "reviews-v2", Namespace: "bookinfo", CanonicalService: "reviews", CanonicalRevision: "v2", App: "reviews", Version: "v2"}
	r.Upstream = record.Upstream{Service: "reviews.bookinfo.svc.cluster.local", ServiceName: "reviews", ServiceNamespace: "bookinfo"}
	r.HTTP.ResponseCode = code
	r.HTTP.RequestHeaderBytes, r.HTTP.RequestBodyBytes = 300, 0
	r.HTTP.ResponseHeaderBytes, r.HTTP.ResponseBodyBytes = 200, 4000
	r.Timings.Total = 42 * time.Millisecond
	r.ConnectionSecurityPolicy = "mutual_tls"
	return r
}

func TestMetricNamesLabelsAndBucketsAreIstios(t *testing.T) {
	m, reg := newMetrics(t, Options{Prefix: "istio_"})
	if err := m.ConsumeRecords(context.Background(), []*record.Record{httpRecord(200)}); err != nil {
		t.Fatal(err)
	}
	mfs := gather(t, reg)
	for _, name := range []string{"istio_requests_total", "istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"} {
		mf := mfs[name]
		if mf == nil || len(mf.GetMetric()) != 1 {
			t.Fatalf("%s: want one series, got %v", name, mf)
		}
		var got []string
		for k := range labels(mf.GetMetric()[0]) {
			got = append(got, k)
		}
		sort.Strings(got)
		want := slices.Clone(istioHTTPLabels)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s labels:\n got %v\nwant %v", name, got, want)
		}
		if h := mf.GetMetric()[0].GetHistogram(); h != nil {
			var bounds []float64
			for _, b := range h.GetBucket() {
				bounds = append(bounds, b.GetUpperBound())
			}
			if !slices.Equal(bounds, envoyDefaultBuckets) {
				t.Errorf("%s buckets %v, want Envoy's defaults %v", name, bounds, envoyDefaultBuckets)
			}
		}
	}
	l := labels(mfs["istio_requests_total"].GetMetric()[0])
	if l["reporter"] != "destination" || l["source_workload"] != "productpage-v1" || l["destination_service_name"] != "reviews" ||
		l["response_code"] != "200" || l["response_flags"] != "-" || l["source_principal"] != "unknown" || l["request_protocol"] != "http" {
		t.Errorf("label values: %v", l)
	}
	dur := mfs["istio_request_duration_milliseconds"].GetMetric()[0].GetHistogram()
	if dur.GetSampleSum() != 42 {
		t.Errorf("duration sum %v ms, want 42", dur.GetSampleSum())
	}
	if resp := mfs["istio_response_bytes"].GetMetric()[0].GetHistogram(); resp.GetSampleSum() != 4200 {
		t.Errorf("response bytes %v, want 4200 (headers and body: this Envoy logged no wire bytes)", resp.GetSampleSum())
	}
}

// Istio records the downstream wire bytes as request and response size;
// Envoys since 1.22 log them, and they win over header and body sizes.
func TestSizesAreWireBytesWhenEnvoyLogsThem(t *testing.T) {
	m, reg := newMetrics(t, Options{Prefix: "istio_"})
	r := httpRecord(200)
	r.Downstream.WireBytesReceived, r.Downstream.WireBytesSent = 57, 1830 // HTTP/2, compressed headers
	if err := m.ConsumeRecords(context.Background(), []*record.Record{r}); err != nil {
		t.Fatal(err)
	}
	mfs := gather(t, reg)
	req := mfs["istio_request_bytes"].GetMetric()[0].GetHistogram().GetSampleSum()
	resp := mfs["istio_response_bytes"].GetMetric()[0].GetHistogram().GetSampleSum()
	if req != 57 || resp != 1830 {
		t.Errorf("request/response bytes %v/%v, want the wire bytes 57/1830", req, resp)
	}
}

func TestGRPCResponseStatusIsSetOnlyForGRPC(t *testing.T) {
	grpcReq := func(code uint32, status string) *record.Record {
		r := httpRecord(code)
		r.RequestHeaders = map[string]string{"content-type": "application/grpc+proto"}
		r.HTTP.GRPCStatus = status
		return r
	}
	cases := []struct {
		name     string
		r        *record.Record
		protocol string
		status   string
	}{
		{"plain HTTP", httpRecord(503), "http", ""},
		{"gRPC with its status", grpcReq(200, "5"), "grpc", "5"},
		{"a grpc-status alone says gRPC", func() *record.Record { r := httpRecord(200); r.HTTP.GRPCStatus = "0"; return r }(), "grpc", "0"},
		{"gRPC local reply 503 without status", grpcReq(503, ""), "grpc", "14"},
		{"gRPC 404", grpcReq(404, ""), "grpc", "12"},
		{"gRPC 401", grpcReq(401, ""), "grpc", "16"},
		{"gRPC 500", grpcReq(500, ""), "grpc", "2"},
		{"gRPC 200 whose trailer was not logged", grpcReq(200, ""), "grpc", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, reg := newMetrics(t, Options{Prefix: "istio_"})
			if err := m.ConsumeRecords(context.Background(), []*record.Record{c.r}); err != nil {
				t.Fatal(err)
			}
			l := labels(gather(t, reg)["istio_requests_total"].GetMetric()[0])
			if l["request_protocol"] != c.protocol || l["grpc_response_status"] != c.status {
				t.Errorf("request_protocol=%q grpc_response_status=%q, want %q %q", l["request_protocol"], l["grpc_response_status"], c.protocol, c.status)
			}
		})
	}
}

func TestIntermediateEntriesAreNotCounted(t *testing.T) {
	m, reg := newMetrics(t, Options{})
	periodic := httpRecord(0)
	periodic.Intermediate = true
	tcpPeriodic := &record.Record{Kind: record.KindTCP, Intermediate: true, SentBytes: 10, ReceivedBytes: 20}
	tcpFinal := &record.Record{Kind: record.KindTCP, SentBytes: 100, ReceivedBytes: 200, Reporter: record.ReporterSource}
	recs := []*record.Record{periodic, periodic, httpRecord(200), tcpPeriodic, tcpFinal}
	if err := m.ConsumeRecords(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	mfs := gather(t, reg)
	reqs := mfs["meshtrail_requests_total"].GetMetric()
	if len(reqs) != 1 || reqs[0].GetCounter().GetValue() != 1 || labels(reqs[0])["response_code"] != "200" {
		t.Errorf("requests_total: want only the final entry counted, got %v", reqs)
	}
	for name, want := range map[string]float64{
		"meshtrail_tcp_sent_bytes_total": 100, "meshtrail_tcp_received_bytes_total": 200,
		"meshtrail_tcp_connections_opened_total": 1, "meshtrail_tcp_connections_closed_total": 1,
	} {
		ms := mfs[name].GetMetric()
		if len(ms) != 1 || ms[0].GetCounter().GetValue() != want {
			t.Errorf("%s = %v, want %v", name, ms, want)
			continue
		}
		if l := labels(ms[0]); l["request_protocol"] != "tcp" || l["reporter"] != "source" {
			t.Errorf("%s labels %v", name, l)
		}
	}
}

func TestSeriesCapDropsAndCounts(t *testing.T) {
	m, reg := newMetrics(t, Options{MaxSeries: 2})
	var recs []*record.Record
	for _, code := range []uint32{200, 404, 500, 503, 200} {
		recs = append(recs, httpRecord(code))
	}
	if err := m.ConsumeRecords(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	mfs := gather(t, reg)
	if n := len(mfs["meshtrail_requests_total"].GetMetric()); n != 2 {
		t.Errorf("%d series, want the cap of 2", n)
	}
	if v := mfs["meshtrail_red_series_dropped_total"].GetMetric()[0].GetCounter().GetValue(); v != 2 {
		t.Errorf("dropped %v records, want 2 (500 and 503)", v)
	}
}

// A connection Envoy logs while it is open (access_log_flush_interval)
// is counted opened at its first entry and its bytes as they are reported,
// so a long-lived connection shows up before it closes; its close adds only
// what is new. Another connection logged only at close counts as before.
func TestLongLivedTCPConnectionsAreCountedWhileOpen(t *testing.T) {
	m, reg := newMetrics(t, Options{})
	conn := func(stream string, intermediate bool, sent, received uint64) *record.Record {
		return &record.Record{Kind: record.KindTCP, Reporter: record.ReporterSource, StreamID: stream,
			Intermediate: intermediate, SentBytes: sent, ReceivedBytes: received}
	}
	value := func(name string) float64 {
		var sum float64
		if mf := gather(t, reg)[name]; mf != nil {
			for _, s := range mf.GetMetric() {
				sum += s.GetCounter().GetValue()
			}
		}
		return sum
	}
	check := func(step string, opened, closed, sent, received float64) {
		t.Helper()
		got := [4]float64{value("meshtrail_tcp_connections_opened_total"), value("meshtrail_tcp_connections_closed_total"),
			value("meshtrail_tcp_sent_bytes_total"), value("meshtrail_tcp_received_bytes_total")}
		if want := [4]float64{opened, closed, sent, received}; got != want {
			t.Errorf("%s: opened, closed, sent, received = %v, want %v", step, got, want)
		}
	}
	consume := func(recs ...*record.Record) {
		if err := m.ConsumeRecords(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
	}
	consume(conn("pg-1", true, 100, 1000))
	check("first periodic entry", 1, 0, 100, 1000)
	consume(conn("pg-1", true, 150, 5000))
	check("second periodic entry adds the difference", 1, 0, 150, 5000)
	consume(conn("short-1", false, 10, 20))
	check("a connection logged only at close", 2, 1, 160, 5020)
	consume(conn("pg-1", false, 150, 5500))
	check("the long connection closes", 2, 2, 160, 5520)
	consume(conn("pg-1", false, 150, 5500))
	check("nothing of pg-1 is kept after it closed: an entry again is a new connection", 3, 3, 310, 11020)
}

// What Istio's stats plugin emits where a label has no value (istio/proxy
// istio_stats.cc populatePeerInfo at
// 00aaa6e7900560d32b2923cddb04ebcfa02c822b): the caller's own cluster as
// CLUSTER_ID says (empty without it), the missing peer "unknown" with
// canonical revision "latest", destination_service_namespace the peer's
// namespace.
func TestLabelsOfAHopWithoutPeerAreIstios(t *testing.T) {
	m, reg := newMetrics(t, Options{Prefix: "istio_"})
	r := httpRecord(503)
	r.Reporter = record.ReporterSource
	r.Source.Cluster = ""
	r.Destination = record.Workload{}
	r.Upstream = record.Upstream{Service: "catalog.bookinfo.svc.cluster.local", ServiceName: "catalog", ServiceNamespace: "bookinfo"}
	r.ResponseFlags = "UH"
	in := httpRecord(200) // the callee's own report, with no CLUSTER_ID either
	in.Destination.Cluster = ""
	if err := m.ConsumeRecords(context.Background(), []*record.Record{r, in}); err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]string{}
	for _, s := range gather(t, reg)["istio_requests_total"].GetMetric() {
		l := labels(s)
		got[l["reporter"]] = l
	}
	for reporter, want := range map[string]map[string]string{
		"source": {"source_cluster": "", "destination_workload": "unknown", "destination_workload_namespace": "unknown",
			"destination_canonical_service": "unknown", "destination_canonical_revision": "latest",
			"destination_service": "catalog.bookinfo.svc.cluster.local", "destination_service_name": "catalog",
			"destination_service_namespace": "unknown", "destination_cluster": "unknown"},
		"destination": {"destination_cluster": "", "source_cluster": "unknown", "destination_service_namespace": "bookinfo",
			"destination_canonical_revision": "v2"},
	} {
		for k, v := range want {
			if got[reporter][k] != v {
				t.Errorf("reporter %s: %s=%q, want %q", reporter, k, got[reporter][k], v)
			}
		}
	}
}

// gRPC messages are counted from Envoy's grpc_stats filter state, deltas
// for a long call logged periodically, with the peer labels only (Istio
// adds these counters before the request's own labels).
func TestGRPCMessagesFromFilterState(t *testing.T) {
	m, reg := newMetrics(t, Options{Prefix: "istio_"})
	call := func(intermediate bool, stats string) *record.Record {
		r := httpRecord(200)
		r.HTTP.GRPCStatus = "0"
		r.StreamID = "call-1"
		r.Intermediate = intermediate
		r.FilterState = map[string]string{"envoy.filters.http.grpc_stats": stats}
		return r
	}
	plain := httpRecord(200) // not gRPC: its filter state is not counted
	plain.FilterState = map[string]string{"envoy.filters.http.grpc_stats": "5,5"}
	bad := call(false, "seven")
	bad.StreamID = "call-2"
	recs := []*record.Record{call(true, "1,4"), call(true, "1,9"), call(false, "2,12"), plain, bad}
	if err := m.ConsumeRecords(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	mfs := gather(t, reg)
	for name, want := range map[string]float64{"istio_request_messages_total": 2, "istio_response_messages_total": 12} {
		mf := mfs[name]
		if mf == nil || len(mf.GetMetric()) != 1 {
			t.Fatalf("%s: %v", name, mf)
		}
		s := mf.GetMetric()[0]
		if v := s.GetCounter().GetValue(); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
		var names []string
		for n := range labels(s) {
			names = append(names, n)
		}
		sort.Strings(names)
		want := slices.Clone(istioHTTPLabels[:20])
		sort.Strings(want)
		if !slices.Equal(names, want) {
			t.Errorf("%s labels %v, want %v", name, names, want)
		}
	}
	if n := len(m.calls); n != 0 {
		t.Errorf("%d calls still followed after their last entry", n)
	}
}
