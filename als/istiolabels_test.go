package als

import (
	"strings"
	"testing"
	"time"

	grpcstatsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_stats/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrail/meshtrail/internal/filterstate"
	"github.com/meshtrail/meshtrail/internal/meshsim"
	"github.com/meshtrail/meshtrail/internal/record"
)

// sendMesh streams each proxy's messages on its own stream, the proxies in
// the order given, one after the other.
func sendMesh(t *testing.T, ts *testService, order []*meshsim.Workload, entries []meshsim.Entry) {
	t.Helper()
	conn := ts.dial()
	batches := meshsim.Batch(entries, 16<<10)
	for _, w := range order {
		msgs := batches[w]
		if len(msgs) == 0 {
			continue
		}
		msgs[0].Identifier = w.Identifier("istio-labels")
		if err := ts.send(conn, msgs...); err != nil && !strings.Contains(err.Error(), "cardinality") {
			t.Fatal(err)
		}
	}
}

// The cases where the receiver must label a hop the way Istio's stats
// plugin does (istio/proxy istio_stats.cc populatePeerInfo, at
// 00aaa6e7900560d32b2923cddb04ebcfa02c822b), through a real receiver.
func TestHopsWithoutAPeerAreLabelledAsIstioDoes(t *testing.T) {
	ts := startService(t, nil)
	mesh := meshsim.Bookinfo(5)
	mesh.ErrorRate = 1 // every call to ratings is refused: 503 UF
	now := time.Now()
	var entries []meshsim.Entry
	for i := 0; i < 3; i++ {
		entries = append(entries, mesh.Request(now.Add(time.Duration(i)*time.Millisecond)).Entries...)
		entries = append(entries, mesh.Background(now.Add(time.Duration(i)*time.Millisecond))...)
	}
	// ratings' own Envoy streams first, so the receiver knows its address
	// before reviews reports the refused connections to it; ratings'
	// stream has only its mongodb connections (its callers all failed).
	order := append([]*meshsim.Workload{mesh.Ratings, mesh.MongoDB}, mesh.Gateway, mesh.ProductPage, mesh.Details, mesh.Inventory)
	order = append(order, mesh.Reviews...)
	sendMesh(t, ts, order, entries)
	recs := ts.records()

	var uf, uh, nr, external, tcpIn, grpcIn, grpcOut int
	for _, r := range recs {
		switch {
		case r.Kind == record.KindHTTP && r.HTTP.ResponseCode == 503 && strings.Contains(r.ResponseFlags, "UF"):
			uf++
			// Istio names a refused endpoint from its EDS metadata:
			// workload, namespace, canonical service and revision, not
			// app or version (metadata_object.cc convertEndpointMetadata).
			want := record.Workload{Name: "ratings-v1", Namespace: "bookinfo", CanonicalService: "ratings", CanonicalRevision: "v1", Cluster: "Kubernetes"}
			if r.Destination != want {
				t.Errorf("503 UF to ratings: destination %+v, want %+v", r.Destination, want)
			}
		case r.Kind == record.KindHTTP && r.HTTP.ResponseCode == 503 && r.ResponseFlags == "UH":
			uh++
			// No peer, no endpoint: Istio reports the destination
			// unknown, not the service's namespace or name.
			if r.Destination != (record.Workload{}) {
				t.Errorf("503 UH from the gateway: destination %+v, want none", r.Destination)
			}
			if r.Upstream.Service != meshsim.UnhealthyService+".bookinfo.svc.cluster.local" || r.Reporter != record.ReporterSource {
				t.Errorf("503 UH: service %q reporter %q", r.Upstream.Service, r.Reporter)
			}
		case r.Kind == record.KindHTTP && r.HTTP.ResponseCode == 404:
			nr++
			if r.Destination != (record.Workload{}) || r.Upstream.Service != "" || r.Reporter != record.ReporterSource {
				t.Errorf("404 NR from the gateway: destination %+v service %q reporter %q", r.Destination, r.Upstream.Service, r.Reporter)
			}
		case r.Kind == record.KindHTTP && r.Upstream.Service == meshsim.ExternalHost:
			external++
			if r.Destination != (record.Workload{}) || r.Upstream.ServiceName != meshsim.ExternalHost {
				t.Errorf("external call: destination %+v service name %q", r.Destination, r.Upstream.ServiceName)
			}
		case r.Kind == record.KindTCP && r.Reporter == record.ReporterDestination:
			tcpIn++
			if r.Upstream.Service != "mongodb.bookinfo.svc.cluster.local" || r.Upstream.ServiceName != "mongodb" || r.Upstream.ServiceNamespace != "bookinfo" {
				t.Errorf("inbound TCP: service %q name %q namespace %q, want mongodb's from the SNI", r.Upstream.Service, r.Upstream.ServiceName, r.Upstream.ServiceNamespace)
			}
		case r.Kind == record.KindHTTP && r.Upstream.Port == 9090:
			if r.Reporter == record.ReporterDestination {
				grpcIn++
			} else {
				grpcOut++
			}
			v := r.FilterState[filterstate.GRPCStats]
			if req, resp, ok := filterstate.ParseGRPCStats(v); !ok || req != 1 || resp < 3 {
				t.Errorf("gRPC stream: grpc_stats filter state %q", v)
			}
		}
	}
	if uf != 3 || uh != 3 || nr != 3 || external != 3 || tcpIn != 3 || grpcIn != 3 || grpcOut != 3 {
		t.Errorf("records: %d UF, %d UH, %d NR, %d external, %d inbound TCP, %d+%d gRPC; want 3 each", uf, uh, nr, external, tcpIn, grpcIn, grpcOut)
	}
}

// An address is put on the workload whose Envoy streamed from it last: a
// pod address Kubernetes gave to another pod names the new pod once that
// pod's Envoy streams.
func TestEndpointAddressFollowsTheLatestStream(t *testing.T) {
	e := newEndpointWorkloads(2)
	old := parseNode(meshsim.Bookinfo(1).Ratings.Identifier("x").Node, "x")
	e.learn(&old)
	if w, ok := e.lookup("10.244.1.12"); !ok || w.Name != "ratings-v1" {
		t.Fatalf("lookup = %+v, %v", w, ok)
	}
	reused := meshsim.Bookinfo(1).Details
	reused.IP = "10.244.1.12"
	p := parseNode(reused.Identifier("x").Node, "x")
	e.learn(&p)
	if w, _ := e.lookup("10.244.1.12"); w.Name != "details-v1" {
		t.Errorf("after the address moved: %q, want details-v1", w.Name)
	}
	// Bounded: a third address evicts one of the two.
	third := parseNode(meshsim.Bookinfo(1).Inventory.Identifier("x").Node, "x")
	e.learn(&third)
	if len(e.m) != 2 {
		t.Errorf("%d addresses kept, want at most 2", len(e.m))
	}
	if _, ok := e.lookup("10.244.1.16"); !ok {
		t.Error("the newest address was not kept")
	}
	// A waypoint is not an endpoint of the services it serves.
	wp := parseNode(meshsim.Bookinfo(1).Details.Identifier("x").Node, "x")
	wp.node.Type, wp.node.IP = "waypoint", "10.244.9.9"
	e.learn(&wp)
	if _, ok := e.lookup("10.244.9.9"); ok {
		t.Error("a waypoint's address was learned")
	}
}

// Envoy's grpc_stats FilterObject, malformed: the entry is kept, the
// object is reported as undecodable filter state.
func TestMalformedGRPCStatsObject(t *testing.T) {
	for _, b := range [][]byte{{0x08}, {0x08, 0xff}, {0x0a, 0x05, 0x01}} {
		if _, _, ok := grpcStatsObject(b); ok {
			t.Errorf("%x decoded", b)
		}
	}
	if req, resp, ok := grpcStatsObject([]byte{0x08, 0x01, 0x10, 0x96, 0x01}); !ok || req != 1 || resp != 150 {
		t.Errorf("= %d, %d, %v; want 1, 150", req, resp, ok)
	}
}

// grpcStatsObject agrees with the protobuf library on every input the
// library accepts as a FilterObject.
func FuzzGRPCStatsObject(f *testing.F) {
	for _, b := range [][]byte{{0x08, 0x01, 0x10, 0x96, 0x01}, {}, {0x10, 0x03}, {0x08}, {0x1a, 0x01, 0x00}} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, resp, ok := grpcStatsObject(b)
		var want grpcstatsv3.FilterObject
		if err := proto.Unmarshal(b, &want); err != nil {
			return
		}
		if !ok || req != want.GetRequestMessageCount() || resp != want.GetResponseMessageCount() {
			t.Errorf("%x: got %d, %d, %v; protobuf says %d, %d", b, req, resp, ok, want.GetRequestMessageCount(), want.GetResponseMessageCount())
		}
	})
}
