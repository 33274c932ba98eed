package promremote

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/recordtest"
	"github.com/meshtrail/meshtrail/internal/sink/istiometrics"
	"github.com/meshtrail/meshtrail/test/harness"
)

// TestPushAsScraped decodes what a push sends: counters, gauges and
// histograms (cumulative _bucket with +Inf, _sum, _count) as a scrape would
// store them, labels sorted, the replica and external labels on every
// series, a metric's own label winning over an external one, and pushes
// split into requests of at most MaxSamplesPerRequest.
func TestPushAsScraped(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "t_requests_total", Help: "h"}, []string{"code", "cluster"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "t_duration_ms", Help: "h", Buckets: []float64{0.5, 1, 3600000}})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "t_open", Help: "h"})
	reg.MustRegister(c, h, g)
	c.WithLabelValues("200", "").Add(3)
	c.WithLabelValues("503", "west").Add(1)
	h.Observe(0.7)
	h.Observe(2)
	h.Observe(5e6)
	g.Set(7)

	var mu sync.Mutex
	var requests [][]map[string]string // per request, per series: labels + "value"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		raw, err := snappy.Decode(nil, body)
		if err != nil || r.Header.Get("Content-Encoding") != "snappy" {
			http.Error(w, fmt.Sprintf("not snappy: %v", err), http.StatusBadRequest)
			return
		}
		ss, err := decodeWriteRequest(raw)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		requests = append(requests, ss)
		mu.Unlock()
	}))
	defer srv.Close()

	p, err := NewPusher(Options{Gatherer: reg, URL: srv.URL, Replica: "r1",
		ExternalLabels: map[string]string{"cluster": "east"}, MaxSamplesPerRequest: 4}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Push(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{} // series (sorted labels) -> value
	for _, req := range requests {
		if len(req) > 4 {
			t.Errorf("a request of %d samples, want at most 4", len(req))
		}
		for _, s := range req {
			if s["replica"] != "r1" {
				t.Errorf("series %v: replica %q, want r1", s, s["replica"])
			}
			got[s["series"]] = s["value"]
		}
	}
	want := map[string]string{
		`__name__="t_requests_total",cluster="east",code="200",replica="r1"`:       "3",
		`__name__="t_requests_total",cluster="west",code="503",replica="r1"`:       "1",
		`__name__="t_duration_ms_bucket",cluster="east",le="0.5",replica="r1"`:     "0",
		`__name__="t_duration_ms_bucket",cluster="east",le="1",replica="r1"`:       "1",
		`__name__="t_duration_ms_bucket",cluster="east",le="3.6e+06",replica="r1"`: "2",
		`__name__="t_duration_ms_bucket",cluster="east",le="+Inf",replica="r1"`:    "3",
		`__name__="t_duration_ms_sum",cluster="east",replica="r1"`:                 "5.0000027e+06",
		`__name__="t_duration_ms_count",cluster="east",replica="r1"`:               "3",
		`__name__="t_open",cluster="east",replica="r1"`:                            "7",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d series, want %d: %v", len(got), len(want), got)
	}
	if len(requests) != 3 {
		t.Errorf("%d requests for 9 samples at 4 per request, want 3", len(requests))
	}

	if _, err := NewPusher(Options{Gatherer: reg, URL: srv.URL, ExternalLabels: map[string]string{"replica": "x"}}, nil, nil); err == nil || !strings.Contains(err.Error(), "external_labels.replica") {
		t.Errorf("replica as an external label: err %v", err)
	}
}

// decodeWriteRequest parses WriteRequest{timeseries{labels, samples}} into
// one map per series: its labels, "series" (the sorted label set, checked
// to be sorted as remote write requires) and "value".
func decodeWriteRequest(b []byte) ([]map[string]string, error) {
	var out []map[string]string
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			return nil, fmt.Errorf("WriteRequest: field %d type %d", num, typ)
		}
		b = b[n:]
		ts, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, fmt.Errorf("WriteRequest: bad timeseries")
		}
		b = b[n:]
		s := map[string]string{}
		var names, pairs []string
		for len(ts) > 0 {
			num, _, n := protowire.ConsumeTag(ts)
			ts = ts[n:]
			v, n := protowire.ConsumeBytes(ts)
			if n < 0 {
				return nil, fmt.Errorf("TimeSeries: bad field %d", num)
			}
			ts = ts[n:]
			switch num {
			case 1: // Label
				var name, value string
				for len(v) > 0 {
					f, _, n := protowire.ConsumeTag(v)
					v = v[n:]
					str, n := protowire.ConsumeString(v)
					v = v[n:]
					if f == 1 {
						name = str
					} else {
						value = str
					}
				}
				s[name] = value
				names = append(names, name)
				pairs = append(pairs, fmt.Sprintf("%s=%q", name, value))
			case 2: // Sample
				for len(v) > 0 {
					f, typ, n := protowire.ConsumeTag(v)
					v = v[n:]
					if f == 1 && typ == protowire.Fixed64Type {
						bits, n := protowire.ConsumeFixed64(v)
						v = v[n:]
						s["value"] = fmt.Sprint(math.Float64frombits(bits))
					} else {
						_, n := protowire.ConsumeVarint(v)
						v = v[n:]
					}
				}
			}
		}
		if !slices.IsSorted(names) {
			return nil, fmt.Errorf("labels not sorted: %v", names)
		}
		s["series"] = strings.Join(pairs, ",")
		out = append(out, s)
	}
	return out, nil
}

// TestTwoReplicasIntoPrometheus runs two "receivers" (two RED sinks, each
// in its own registry, fed different records) pushing into one real
// Prometheus as replicas a and b: the sum over replicas is every request
// fed, each replica has its own series, and a push that fails while
// Prometheus is down loses nothing: the next one (here the last push of
// Shutdown) carries the totals.
func TestTwoReplicasIntoPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs Prometheus (make test)")
	}
	p := harness.StartPrometheus(t, harness.PrometheusOptions{})
	ctx := context.Background()
	type receiver struct {
		red    *istiometrics.Metrics
		pusher *Pusher
		gen    *recordtest.Gen
		fed    int
		fed503 int
	}
	var rs []*receiver
	for i, replica := range []string{"a", "b"} {
		reg := prometheus.NewRegistry()
		red, err := istiometrics.New(istiometrics.Options{Prefix: "rw_"}, reg)
		if err != nil {
			t.Fatal(err)
		}
		pu, err := NewPusher(Options{Gatherer: reg, URL: p.URL + "/api/v1/write", Replica: replica, Interval: 200 * time.Millisecond}, prometheus.NewRegistry(), nil)
		if err != nil {
			t.Fatal(err)
		}
		pu.Start()
		rs = append(rs, &receiver{red: red, pusher: pu, gen: recordtest.New("rw"+replica, uint64(80+i))})
	}
	feed := func(r *receiver, requests int) {
		for i := 0; i < requests; i++ {
			_, recs := r.gen.Request([]uint32{200, 503, 404}[i%3])
			if err := r.red.ConsumeRecords(ctx, recs); err != nil {
				t.Fatal(err)
			}
			r.fed += countRequests(recs, 0)
			r.fed503 += countRequests(recs, 503)
		}
	}
	check := func(q string, want int) {
		t.Helper()
		harness.Eventually(t, 30*time.Second, q, func() error {
			res, err := p.Query(ctx, q)
			if err != nil {
				return err
			}
			if len(res) != 1 || res[0].Value != fmt.Sprint(want) {
				return fmt.Errorf("got %+v, want %d", res, want)
			}
			return nil
		})
	}
	feed(rs[0], 7)
	feed(rs[1], 11)
	check(`sum(rw_requests_total)`, rs[0].fed+rs[1].fed)
	check(`sum(rw_requests_total{replica="a"})`, rs[0].fed)
	check(`sum(rw_requests_total{replica="b"})`, rs[1].fed)
	check(`sum(rw_request_duration_milliseconds_bucket{le="+Inf"})`, rs[0].fed+rs[1].fed)
	check(`sum(rw_request_duration_milliseconds_count{response_code="503"})`, rs[0].fed503+rs[1].fed503)
	check(`count(count by (replica) (rw_requests_total))`, 2)

	// Prometheus down: pushes fail; what is counted meanwhile arrives with
	// the last push once it is back.
	p.Stop()
	feed(rs[0], 5)
	if err := rs[0].pusher.Push(ctx); err == nil {
		t.Fatal("a push to a stopped Prometheus succeeded")
	}
	p.Restart(t)
	feed(rs[1], 3)
	for _, r := range rs {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := r.pusher.Shutdown(sctx); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	check(`sum(rw_requests_total)`, rs[0].fed+rs[1].fed)
	check(`sum(rw_requests_total{replica="a"})`, rs[0].fed)
}

// countRequests counts the HTTP requests among recs, those answered code
// when code is not 0.
func countRequests(recs []*record.Record, code uint32) int {
	n := 0
	for _, r := range recs {
		if r.Kind == record.KindHTTP && !r.Intermediate && (code == 0 || r.HTTP.ResponseCode == code) {
			n++
		}
	}
	return n
}
