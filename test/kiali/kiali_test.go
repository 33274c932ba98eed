// Package kiali checks that Kiali draws from meshtrail's metrics the graph
// it draws from Istio's own: the real `meshtrail als --metric-prefix
// istio_` receives a synthetic mesh (HTTP, gRPC streaming, TCP, an
// external host, failures before and after the upstream), a real
// Prometheus scrapes it, and Kiali's own queries and graph building
// (ported in graph_test.go, at kialiCommit) run on Prometheus' answers.
package kiali

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshtrail/meshtrail/internal/meshsim"
	"github.com/meshtrail/meshtrail/test/harness"
)

// expectedWorkloadGraph is the workload graph Istio's own telemetry gives
// Kiali for the mesh meshsim simulates (Kiali's default options, service
// nodes injected, gRPC drawn from message rates, TCP from bytes both
// ways), for the namespaces bookinfo and istio-system. Every proxy has
// CLUSTER_ID "Kubernetes". What Istio reports where no peer answered
// (istio_stats.cc populatePeerInfo) puts the external host, the service
// without endpoints and the unroutable request on service nodes of cluster
// and namespace "unknown": no phantom app or workload nodes, and a refused
// connection to ratings is on ratings' own node.
var expectedWorkloadGraph = struct{ nodes, edges []string }{
	nodes: []string{
		"svc_Kubernetes_bookinfo_details",
		"svc_Kubernetes_bookinfo_inventory",
		"svc_Kubernetes_bookinfo_mongodb",
		"svc_Kubernetes_bookinfo_productpage",
		"svc_Kubernetes_bookinfo_ratings",
		"svc_Kubernetes_bookinfo_reviews",
		"svc_unknown_unknown_catalog",
		"svc_unknown_unknown_unknown",
		"svc_unknown_unknown_www.googleapis.com",
		"wl_Kubernetes_bookinfo_details-v1",
		"wl_Kubernetes_bookinfo_inventory-v1",
		"wl_Kubernetes_bookinfo_mongodb-v1",
		"wl_Kubernetes_bookinfo_productpage-v1",
		"wl_Kubernetes_bookinfo_ratings-v1",
		"wl_Kubernetes_bookinfo_reviews-v1",
		"wl_Kubernetes_bookinfo_reviews-v2",
		"wl_Kubernetes_bookinfo_reviews-v3",
		"wl_Kubernetes_istio-system_istio-ingressgateway",
	},
	edges: []string{
		"svc_Kubernetes_bookinfo_details -> wl_Kubernetes_bookinfo_details-v1 (http)",
		"svc_Kubernetes_bookinfo_inventory -> wl_Kubernetes_bookinfo_inventory-v1 (grpc)",
		"svc_Kubernetes_bookinfo_mongodb -> wl_Kubernetes_bookinfo_mongodb-v1 (tcp)",
		"svc_Kubernetes_bookinfo_productpage -> wl_Kubernetes_bookinfo_productpage-v1 (http)",
		"svc_Kubernetes_bookinfo_ratings -> wl_Kubernetes_bookinfo_ratings-v1 (http)",
		"svc_Kubernetes_bookinfo_reviews -> wl_Kubernetes_bookinfo_reviews-v1 (http)",
		"svc_Kubernetes_bookinfo_reviews -> wl_Kubernetes_bookinfo_reviews-v2 (http)",
		"svc_Kubernetes_bookinfo_reviews -> wl_Kubernetes_bookinfo_reviews-v3 (http)",
		"wl_Kubernetes_bookinfo_details-v1 -> svc_unknown_unknown_www.googleapis.com (http)",
		"wl_Kubernetes_bookinfo_productpage-v1 -> svc_Kubernetes_bookinfo_details (http)",
		"wl_Kubernetes_bookinfo_productpage-v1 -> svc_Kubernetes_bookinfo_inventory (grpc)",
		"wl_Kubernetes_bookinfo_productpage-v1 -> svc_Kubernetes_bookinfo_reviews (http)",
		"wl_Kubernetes_bookinfo_ratings-v1 -> svc_Kubernetes_bookinfo_mongodb (tcp)",
		"wl_Kubernetes_bookinfo_reviews-v2 -> svc_Kubernetes_bookinfo_ratings (http)",
		"wl_Kubernetes_bookinfo_reviews-v3 -> svc_Kubernetes_bookinfo_ratings (http)",
		"wl_Kubernetes_istio-system_istio-ingressgateway -> svc_Kubernetes_bookinfo_productpage (http)",
		"wl_Kubernetes_istio-system_istio-ingressgateway -> svc_unknown_unknown_catalog (http)",
		"wl_Kubernetes_istio-system_istio-ingressgateway -> svc_unknown_unknown_unknown (http)",
	},
}

// versionedApp is the same graph as Kiali's versioned-app graph names it:
// every workload here has its canonical service, so its node is the
// workload's versioned app node.
func versionedApp(ids []string) []string {
	out := make([]string, len(ids))
	for i, s := range ids {
		out[i] = strings.ReplaceAll(s, "wl_", "vapp_")
	}
	slices.Sort(out)
	return out
}

func TestKialiDrawsIstiosGraphFromMeshtrailMetrics(t *testing.T) {
	t.Logf("Kiali's queries and graph building as of github.com/kiali/kiali %s", kialiCommit)
	if testing.Short() {
		t.Skip("end-to-end: starts Prometheus and the meshtrail binary")
	}
	bin := buildMeshtrail(t)
	grpcAddr, metricsAddr := harness.FreeAddr(t), harness.FreeAddr(t)
	prom := harness.StartPrometheus(t, harness.PrometheusOptions{Targets: []string{metricsAddr}})
	mt := harness.Start(t, "meshtrail", nil, bin, "als", "--listen", grpcAddr, "--metrics-listen", metricsAddr,
		"--out", filepath.Join(t.TempDir(), "records.ndjson"), "--metric-prefix", "istio_")
	harness.WaitHTTP(t, mt, "http://"+metricsAddr+"/readyz", 30*time.Second)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Rounds of traffic a few scrapes apart, so that every series grows
	// between scrapes and Kiali's rate(...) > 0 sees it. The first round
	// has no failures: every proxy's stream announces it before ratings
	// starts refusing connections (503 UF, a failure after the upstream
	// was picked), as in a mesh that has been running.
	mesh := meshsim.Bookinfo(16)
	for round := 0; round < 8; round++ {
		mesh.ErrorRate = 0
		if round > 0 {
			mesh.ErrorRate = 0.3
		}
		var entries []meshsim.Entry
		now := time.Now()
		for i := 0; i < 20; i++ {
			at := now.Add(time.Duration(i) * time.Millisecond)
			entries = append(entries, mesh.Request(at).Entries...)
			entries = append(entries, mesh.Background(at)...)
		}
		if err := meshsim.Stream(ctx, conn, "kiali", meshsim.Batch(entries, 16<<10)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
	}

	// Kiali's metrics pages (business/metrics.go, metrics_definitions.go,
	// metrics_labels_builder.go; prometheus/metrics.go fetchRateRange):
	// a service's inbound charts, from the callee's reports.
	t.Run("metrics pages", func(t *testing.T) {
		page := func(service string) string {
			return fmt.Sprintf(`{reporter="destination",destination_service_name="%s",destination_service_namespace="bookinfo"}`, service)
		}
		rate := func(metric, labels string) float64 {
			t.Helper()
			// fetchRateRange: sum(rate(METRIC{LABELS}[INTERVAL])) by (GROUPING)
			samples, err := prom.Query(ctx, fmt.Sprintf("sum(rate(%s%s[120s])) by (destination_workload)", metric, labels))
			if err != nil {
				t.Fatal(err)
			}
			if len(samples) != 1 {
				t.Fatalf("%s%s: %d series, want one per destination workload: %v", metric, labels, len(samples), samples)
			}
			v, _ := strconv.ParseFloat(samples[0].Value, 64)
			return v
		}
		// inventory's gRPC charts: sent (one message per call) and
		// received (several per call, a server stream).
		calls := rate("istio_requests_total", page("inventory"))
		sent := rate("istio_request_messages_total", page("inventory"))
		received := rate("istio_response_messages_total", page("inventory"))
		// (A scrape may fall between a batch's messages and its requests.)
		if calls <= 0 || math.Abs(sent-calls) > 0.1*calls || received < 3*calls {
			t.Errorf("inventory: %.3f calls/s, %.3f messages/s sent, %.3f received; want as many sent as calls and at least 3 received per call", calls, sent, received)
		}
		// mongodb's TCP charts: the callee's bytes carry its service.
		if r := rate("istio_tcp_sent_bytes_total", page("mongodb")); r <= 0 {
			t.Errorf("mongodb: %.3f TCP bytes/s", r)
		}
	})

	namespaces := []string{"bookinfo", "istio-system"}
	for _, tc := range []struct {
		graphType    string
		nodes, edges []string
	}{
		{graphWorkload, expectedWorkloadGraph.nodes, expectedWorkloadGraph.edges},
		{graphVersionedApp, versionedApp(expectedWorkloadGraph.nodes), versionedApp(expectedWorkloadGraph.edges)},
	} {
		t.Run(tc.graphType, func(t *testing.T) {
			o := options{graphType: tc.graphType, grpcRate: "total", tcpRate: "total", injectServiceNodes: true, durationSeconds: 120}
			var m trafficMap
			var b *builder
			var nodes, edges []string
			// Prometheus has every round once it scraped after the last:
			// until then edges may still be missing, never extra.
			harness.Eventually(t, 30*time.Second, "Kiali's graph from Prometheus", func() error {
				b = &builder{o: o}
				var err error
				if m, err = b.build(ctx, prom, namespaces); err != nil {
					return err
				}
				nodes, edges = nodesAndEdges(m)
				if !slices.Equal(nodes, tc.nodes) || !slices.Equal(edges, tc.edges) {
					return fmt.Errorf("graph differs:\n%s", diff(nodes, edges, tc.nodes, tc.edges))
				}
				return nil
			})
			for _, d := range b.dropped {
				t.Errorf("Kiali dropped a series: %s", d)
			}
			// One request reported by both proxies is applied once: two
			// reporters on one code of one edge would be double counting.
			for _, n := range m {
				for _, e := range n.edges {
					for code, reporters := range e.applied {
						if len(reporters) > 1 {
							t.Errorf("%s -> %s (%s) code %q: counted from both reporters", n.id, e.dest.id, e.protocol, code)
						}
					}
				}
			}
			// The security-policy appender, from the callee's telemetry:
			// every hop into a pod is mutual TLS (TCP too, once its
			// service is known); gRPC edges are partly, as with Istio's
			// own metrics, whose message counters carry no
			// connection_security_policy. Hops to no pod have none.
			for sid, n := range m {
				for _, e := range n.edges {
					toPod := !strings.Contains(e.dest.id, "_unknown_")
					t.Logf("%s -> %s (%s): rate %.2f, %.0f%% mTLS", sid, e.dest.id, e.protocol, e.rate, e.mtls)
					switch {
					case !toPod && e.mtls != 0:
						t.Errorf("%s -> %s: %.0f%% mTLS, want none", sid, e.dest.id, e.mtls)
					case toPod && e.protocol == "grpc" && e.mtls <= 0:
						t.Errorf("%s -> %s (grpc): no mTLS", sid, e.dest.id)
					case toPod && e.protocol != "grpc" && e.mtls != 100:
						t.Errorf("%s -> %s (%s): %.1f%% mTLS, want 100", sid, e.dest.id, e.protocol, e.mtls)
					}
				}
			}
			// What reaches a service node leaves it for its pods: a
			// request counted from both reporters, or one side labelled
			// otherwise than the other, would break the balance.
			in, out := map[string]float64{}, map[string]float64{}
			for sid, n := range m {
				for _, e := range n.edges {
					in[e.dest.id+" "+e.protocol] += e.rate
					if n.nodeType == nodeTypeService {
						out[sid+" "+e.protocol] += e.rate
					}
				}
			}
			for k, o := range out {
				// 3%: the two sides of a hop are scraped a moment apart under load.
				if i := in[k]; math.Abs(i-o) > 0.03*i {
					t.Errorf("service %s: %.3f/s in, %.3f/s out", k, i, o)
				}
			}
			// The connections ratings refused (503 UF) reach ratings' own
			// node through its service, as Istio names them from the
			// endpoint: not a dead end at the service node.
			svc := m[versionedAppIf(tc.graphType, "svc_Kubernetes_bookinfo_ratings")]
			if svc == nil {
				t.Fatal("no ratings service node")
			}
			sawUF := false
			for _, e := range svc.edges {
				if _, ok := e.applied["503 UF,URX"]; ok && e.dest.id == versionedAppIf(tc.graphType, "wl_Kubernetes_bookinfo_ratings-v1") {
					sawUF = true
				}
			}
			if !sawUF {
				t.Error("no 503 UF,URX traffic from the ratings service to ratings-v1")
			}
		})
	}
}

func versionedAppIf(graphType, id string) string {
	if graphType == graphVersionedApp {
		return strings.Replace(id, "wl_", "vapp_", 1)
	}
	return id
}

// diff says which nodes and edges are missing or extra.
func diff(nodes, edges, wantNodes, wantEdges []string) string {
	var b strings.Builder
	for _, pair := range []struct {
		what      string
		got, want []string
	}{{"node", nodes, wantNodes}, {"edge", edges, wantEdges}} {
		for _, w := range pair.want {
			if !slices.Contains(pair.got, w) {
				fmt.Fprintf(&b, "  missing %s %s\n", pair.what, w)
			}
		}
		for _, g := range pair.got {
			if !slices.Contains(pair.want, g) {
				fmt.Fprintf(&b, "  extra %s %s\n", pair.what, g)
			}
		}
	}
	return b.String()
}

func buildMeshtrail(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "meshtrail")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/meshtrail")
	build.Dir = harness.RepoRoot(t)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build meshtrail: %v\n%s", err, out)
	}
	return bin
}
