package kiali

import (
	"context"
	"crypto/sha256"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/meshtrail/meshtrail/test/harness"
)

// kialiCommit is the Kiali source (github.com/kiali/kiali) the queries
// and the graph building below are ported from: graph/telemetry/istio/
// istio.go (buildNamespaceTrafficMap, populateTrafficMap, addTraffic,
// addEdgeTraffic, addNode), graph/telemetry/istio/util/util.go (the
// bad-telemetry and unusual-destination rules), graph/types.go (Id) and
// graph/telemetry/common.go (MergeTrafficMaps).
const kialiCommit = "d733a096e02eea357a274edcbbde8314e80786f4"

const (
	unknown            = "unknown"
	passthroughCluster = "PassthroughCluster"
	nodeTypeService    = "service"
	nodeTypeWorkload   = "workload"
	nodeTypeApp        = "app"
	nodeTypeUnknown    = "unknown"
	graphWorkload      = "workload"
	graphVersionedApp  = "versionedApp"
)

// options are the graph options a Kiali user picks; Kiali's defaults
// except for gRPC, drawn from message rates so that the message counters
// are what draws the gRPC edges.
type options struct {
	graphType          string
	grpcRate, tcpRate  string // "requests"/"sent"/"received"/"total"; "sent"/"received"/"total"
	injectServiceNodes bool
	durationSeconds    int
}

// query is one PromQL query Kiali runs for a namespace and what it
// selects: the metric and the reporter of the answers.
type query struct {
	metric, reporter, promql string
}

// Kiali's default ambient setting ("total") makes every reporter selector
// include waypoints (util.GetReporter) and adds no app filter to TCP
// (util.GetApp).
func reporterSel(r string) string { return fmt.Sprintf(`reporter=~"waypoint|%s"`, r) }

const (
	httpGroupBy = "source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision,destination_cluster,destination_service_namespace,destination_service,destination_service_name,destination_workload_namespace,destination_workload,destination_canonical_service,destination_canonical_revision,request_protocol,response_code,grpc_response_status,response_flags"
	grpcGroupBy = "source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision,destination_cluster,destination_service_namespace,destination_service,destination_service_name,destination_workload_namespace,destination_workload,destination_canonical_service,destination_canonical_revision"
	tcpGroupBy  = "app,source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision,destination_cluster,destination_service_namespace,destination_service,destination_service_name,destination_workload_namespace,destination_workload,destination_canonical_service,destination_canonical_revision,response_flags"
)

// namespaceQueries are buildNamespaceTrafficMap's queries for a namespace
// that is not ambient, in Kiali's order.
func namespaceQueries(ns string, o options) []query {
	var qs []query
	d := o.durationSeconds
	three := func(metric, groupBy string) {
		qs = append(qs,
			// 0) unserviced namespace services' incoming traffic: failed requests that never reached a workload
			query{metric, "source", fmt.Sprintf(`sum(rate(%s{%s,source_workload_namespace!="%s",destination_workload_namespace="unknown",destination_workload="unknown",destination_service=~"^.+\\.%s\\..+$"} [%ds])) by (%s) > 0`,
				metric, reporterSel("source"), ns, ns, d, groupBy)},
			// 2) namespace services' incoming traffic
			query{metric, "destination", fmt.Sprintf(`sum(rate(%s{%s,destination_workload_namespace="%s"} [%ds])) by (%s) > 0`,
				metric, reporterSel("destination"), ns, d, groupBy)},
			// 3) namespace workloads' outgoing traffic
			query{metric, "source", fmt.Sprintf(`sum(rate(%s{%s,source_workload_namespace="%s"} [%ds])) by (%s) > 0`,
				metric, reporterSel("source"), ns, d, groupBy)})
	}
	three("istio_requests_total", httpGroupBy)
	var grpcMetrics, tcpMetrics []string
	switch o.grpcRate {
	case "received":
		grpcMetrics = []string{"istio_response_messages_total"}
	case "sent":
		grpcMetrics = []string{"istio_request_messages_total"}
	case "total":
		grpcMetrics = []string{"istio_request_messages_total", "istio_response_messages_total"}
	}
	for _, m := range grpcMetrics {
		three(m, grpcGroupBy)
	}
	// L4 telemetry is backwards (istio/istio#32399)
	switch o.tcpRate {
	case "received":
		tcpMetrics = []string{"istio_tcp_sent_bytes_total"}
	case "sent":
		tcpMetrics = []string{"istio_tcp_received_bytes_total"}
	case "total":
		tcpMetrics = []string{"istio_tcp_received_bytes_total", "istio_tcp_sent_bytes_total"}
	}
	for _, m := range tcpMetrics {
		three(m, tcpGroupBy)
	}
	return qs
}

type node struct {
	id, nodeType, cluster, namespace, workload, app, version, service string
	edges                                                             []*edge
	tsHash                                                            string
}

type edge struct {
	dest     *node
	protocol string
	tsHashes map[string]bool
	// applied counts, per response code and flags, the reporters whose
	// series were added to the edge: two would be the same requests
	// counted twice.
	applied map[string]map[string]bool
	rate    float64
	// mtls is the security-policy appender's percentage of mutual TLS
	// traffic; 0 when it found none.
	mtls float64
}

type trafficMap map[string]*node

// builder replays Kiali's graph building on Prometheus' answers.
type builder struct {
	o options
	// dropped are the series Kiali skipped as bad or incomplete
	// telemetry, with why.
	dropped []string
}

var grpcMetric = regexp.MustCompile(`istio_.*_messages`)

func isOK(v string) bool        { return v != "" && v != unknown }
func isOKVersion(v string) bool { return isOK(v) && v != "latest" }

// build runs every namespace's queries, the security-policy appender on
// each namespace's map, and merges the namespace maps, as
// BuildNamespacesTrafficMap does (no other appender alters nodes or edges
// of this graph: the dead-node appender only removes nodes without
// traffic, and every node here has some).
func (b *builder) build(ctx context.Context, prom *harness.Prometheus, namespaces []string) (trafficMap, error) {
	out := trafficMap{}
	for _, ns := range namespaces {
		m := trafficMap{}
		for _, q := range namespaceQueries(ns, b.o) {
			samples, err := prom.Query(ctx, q.promql)
			if err != nil {
				return nil, err
			}
			b.populate(m, samples, q)
		}
		if err := b.appendSecurityPolicy(ctx, prom, ns, m); err != nil {
			return nil, err
		}
		merge(out, ns, m)
	}
	return out, nil
}

// populate is populateTrafficMap.
func (b *builder) populate(m trafficMap, samples []harness.PromSample, q query) {
	isRequests, protocol := true, ""
	switch {
	case grpcMetric.MatchString(q.metric):
		isRequests, protocol = false, "grpc"
	case strings.HasPrefix(q.metric, "istio_tcp"):
		isRequests, protocol = false, "tcp"
	}
	skipRequestsGrpc := isRequests && b.o.grpcRate != "requests"
	for _, s := range samples {
		val, _ := strconv.ParseFloat(s.Value, 64)
		l := s.Metric
		get := func(k string) (string, bool) { v, ok := l[k]; return v, ok }
		lSourceCluster, sourceClusterOk := get("source_cluster")
		lDestCluster, destClusterOk := get("destination_cluster")
		required := []string{"source_workload_namespace", "source_workload", "source_canonical_service", "source_canonical_revision",
			"destination_service_namespace", "destination_service", "destination_service_name", "destination_workload_namespace",
			"destination_workload", "destination_canonical_service", "destination_canonical_revision"}
		missing := ""
		for _, k := range required {
			if _, ok := l[k]; !ok {
				missing = k
				break
			}
		}
		if missing != "" {
			b.dropped = append(b.dropped, fmt.Sprintf("missing %s: %v", missing, l))
			continue
		}
		sourceWlNs, sourceWl, sourceApp, sourceVer := l["source_workload_namespace"], l["source_workload"], l["source_canonical_service"], l["source_canonical_revision"]
		destSvc := l["destination_service"]
		flags := ""
		if isRequests || protocol == "tcp" {
			f, ok := l["response_flags"]
			if !ok {
				b.dropped = append(b.dropped, fmt.Sprintf("missing response_flags: %v", l))
				continue
			}
			flags = f
		}
		// util.HandleClusters
		sourceCluster, destCluster := unknown, unknown
		if sourceClusterOk {
			sourceCluster = lSourceCluster
		}
		if destClusterOk {
			destCluster = lDestCluster
		}
		// util.IsBadSourceTelemetry
		if isOK(sourceWlNs) && !isOK(sourceWl) && !isOK(sourceApp) {
			b.dropped = append(b.dropped, fmt.Sprintf("bad source telemetry (no workload or app): %v", l))
			continue
		}
		if isOK(sourceWlNs) && sourceClusterOk && !isOK(sourceCluster) {
			b.dropped = append(b.dropped, fmt.Sprintf("bad source telemetry (cluster %q): %v", sourceCluster, l))
			continue
		}
		destSvcNs, destSvcName, destWlNs, destWl, destApp, destVer := l["destination_service_namespace"], l["destination_service_name"],
			l["destination_workload_namespace"], l["destination_workload"], l["destination_canonical_service"], l["destination_canonical_revision"]
		// util.HandleDestination
		if egress := "istio-egressgateway.istio-system.svc.cluster.local"; destSvc == egress && destSvc == destSvcName {
			destCluster, destSvcNs, destSvcName, destWlNs, destWl, destApp, destVer = sourceCluster, "istio-system", "istio-egressgateway", "istio-system", "istio-egressgateway", "istio-egressgateway", "latest"
		} else if !isOK(destCluster) && isOK(sourceCluster) && isOK(destSvcNs) {
			destCluster = sourceCluster
		}
		// util.IsBadDestTelemetry
		if !isOK(destWl) && isOK(destSvc) && isOK(destSvcName) && destSvc == destSvcName && badServiceMatcher.MatchString(destSvcName) {
			b.dropped = append(b.dropped, fmt.Sprintf("bad destination telemetry (an IP as service): %v", l))
			continue
		}
		if isOK(destSvcNs) && destClusterOk && !isOK(destCluster) {
			b.dropped = append(b.dropped, fmt.Sprintf("bad destination telemetry (cluster %q): %v", destCluster, l))
			continue
		}
		code := ""
		if isRequests {
			proto, protoOk := l["request_protocol"]
			lCode, codeOk := l["response_code"]
			lGrpc, grpcOk := l["grpc_response_status"]
			if !protoOk || !codeOk {
				b.dropped = append(b.dropped, fmt.Sprintf("missing request_protocol or response_code: %v", l))
				continue
			}
			protocol = proto
			if skipRequestsGrpc && protocol == "grpc" {
				continue
			}
			code = handleResponseCode(protocol, lCode, grpcOk, lGrpc)
		}
		host := destSvc
		inject := false
		if b.o.injectServiceNodes && isOK(destSvcName) && destSvcName != passthroughCluster {
			_, destNodeType, err := id(destCluster, destSvcNs, destSvcName, destWlNs, destWl, destApp, destVer, b.o.graphType)
			if err != nil {
				b.dropped = append(b.dropped, fmt.Sprintf("%v: %v", err, l))
				continue
			}
			inject = destNodeType != nodeTypeService
		}
		b.addTraffic(m, q, inject, val, protocol, code, flags, host, sourceCluster, sourceWlNs, "", sourceWl, sourceApp, sourceVer,
			destCluster, destSvcNs, destSvcName, destWlNs, destWl, destApp, destVer)
	}
}

var badServiceMatcher = regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+(:\d+)?$`)

// handleResponseCode is util.HandleResponseCode.
func handleResponseCode(protocol, code string, grpcOk bool, grpc string) string {
	if code == "0" {
		return "-"
	}
	if protocol != "grpc" || strings.HasPrefix(code, "4") || strings.HasPrefix(code, "5") || !grpcOk {
		return code
	}
	return grpc
}

func (b *builder) addTraffic(m trafficMap, q query, inject bool, val float64, protocol, code, flags, host,
	sourceCluster, sourceNs, sourceSvc, sourceWl, sourceApp, sourceVer,
	destCluster, destSvcNs, destSvcName, destWlNs, destWl, destApp, destVer string) {
	source, err := b.addNode(m, sourceCluster, sourceNs, sourceSvc, sourceNs, sourceWl, sourceApp, sourceVer)
	if err != nil {
		b.dropped = append(b.dropped, "source: "+err.Error())
		return
	}
	dest, err := b.addNode(m, destCluster, destSvcNs, destSvcName, destWlNs, destWl, destApp, destVer)
	if err != nil {
		b.dropped = append(b.dropped, "dest: "+err.Error())
		return
	}
	// The same requests reported by both proxies have the same hash:
	// Kiali applies them once.
	h := sha256.Sum256([]byte(strings.Join([]string{q.metric, source.tsHash, dest.tsHash, code, flags, host}, ":")))
	tsHash := fmt.Sprintf("%x", h)
	if inject {
		svc, err := b.addNode(m, destCluster, destSvcNs, destSvcName, "", "", "", "")
		if err != nil {
			b.dropped = append(b.dropped, "inject: "+err.Error())
			return
		}
		if addEdgeTraffic(val, protocol, code, flags, q.reporter, source, svc, tsHash) {
			addEdgeTraffic(val, protocol, code, flags, q.reporter, svc, dest, tsHash)
		}
		return
	}
	addEdgeTraffic(val, protocol, code, flags, q.reporter, source, dest, tsHash)
}

func addEdgeTraffic(val float64, protocol, code, flags, reporter string, source, dest *node, tsHash string) bool {
	var e *edge
	for _, x := range source.edges {
		if x.dest.id == dest.id && x.protocol == protocol {
			e = x
			break
		}
	}
	if e == nil {
		e = &edge{dest: dest, protocol: protocol, tsHashes: map[string]bool{}, applied: map[string]map[string]bool{}}
		source.edges = append(source.edges, e)
	}
	if e.tsHashes[tsHash] {
		return false
	}
	e.tsHashes[tsHash] = true
	k := code + " " + flags
	if e.applied[k] == nil {
		e.applied[k] = map[string]bool{}
	}
	e.applied[k][reporter] = true
	e.rate += val
	return true
}

func (b *builder) addNode(m trafficMap, cluster, serviceNs, service, workloadNs, workload, app, version string) (*node, error) {
	nid, nodeType, err := id(cluster, serviceNs, service, workloadNs, workload, app, version, b.o.graphType)
	if err != nil {
		return nil, err
	}
	n, found := m[nid]
	if !found {
		namespace := workloadNs
		if !isOK(namespace) {
			namespace = serviceNs
		}
		n = &node{id: nid, nodeType: nodeType, cluster: cluster, namespace: namespace, workload: workload, app: app, version: version, service: service}
		m[nid] = n
	}
	h := sha256.Sum256([]byte(strings.Join([]string{cluster, serviceNs, service, workloadNs, workload, app, version}, ":")))
	n.tsHash = fmt.Sprintf("%x", h)
	return n, nil
}

// id is graph.Id.
func id(cluster, serviceNamespace, service, workloadNamespace, workload, app, version, graphType string) (string, string, error) {
	namespace := workloadNamespace
	if !isOK(namespace) {
		namespace = serviceNamespace
	}
	if namespace == unknown && workload == unknown && app == unknown && service == "" {
		return cluster + "_unknown_source", nodeTypeUnknown, nil
	}
	if workload == unknown && app == unknown && service == unknown {
		return fmt.Sprintf("svc_%s_%s_unknown", cluster, namespace), nodeTypeService, nil
	}
	workloadOk, appOk, serviceOk := isOK(workload), isOK(app), isOK(service)
	if !workloadOk && !appOk && !serviceOk {
		return "", "", fmt.Errorf("failed ID gen1: cluster=[%s] namespace=[%s] workload=[%s] app=[%s] version=[%s] service=[%s]", cluster, namespace, workload, app, version, service)
	}
	if graphType == graphWorkload {
		if !workloadOk {
			if serviceOk {
				return fmt.Sprintf("svc_%s_%s_%s", cluster, namespace, service), nodeTypeService, nil
			}
			return fmt.Sprintf("svc_%s_%s_%s", cluster, namespace, unknown), nodeTypeService, nil
		}
		return fmt.Sprintf("wl_%s_%s_%s", cluster, namespace, workload), nodeTypeWorkload, nil
	}
	if appOk {
		if graphType == graphVersionedApp {
			if workloadOk {
				return fmt.Sprintf("vapp_%s_%s_%s", cluster, namespace, workload), nodeTypeApp, nil
			}
			if isOKVersion(version) {
				return fmt.Sprintf("vapp_%s_%s_%s_%s", cluster, namespace, app, version), nodeTypeApp, nil
			}
		}
		return fmt.Sprintf("app_%s_%s_%s", cluster, namespace, app), nodeTypeApp, nil
	}
	if workloadOk {
		return fmt.Sprintf("wl_%s_%s_%s", cluster, namespace, workload), nodeTypeWorkload, nil
	}
	return fmt.Sprintf("svc_%s_%s_%s", cluster, namespace, service), nodeTypeService, nil
}

// merge is telemetry.MergeTrafficMaps: one node per id, and an edge a
// second namespace also saw is kept once.
func merge(out trafficMap, ns string, nsMap trafficMap) {
	for nid, nsNode := range nsMap {
		n, dup := out[nid]
		if !dup {
			out[nid] = nsNode
			continue
		}
		if nsNode.namespace == ns {
			out[nid] = nsNode
			n, nsNode = nsNode, n
		}
		for _, nsEdge := range nsNode.edges {
			isDup := false
			for _, e := range n.edges {
				if nsEdge.dest.id == e.dest.id && nsEdge.protocol == e.protocol {
					isDup = true
					break
				}
			}
			if !isDup {
				n.edges = append(n.edges, nsEdge)
			}
		}
	}
}

// nodesAndEdges lists a map's node ids and its edges as
// "SOURCE -> DEST (PROTOCOL)", sorted.
func nodesAndEdges(m trafficMap) (nodes, edges []string) {
	for nid, n := range m {
		nodes = append(nodes, nid)
		for _, e := range n.edges {
			edges = append(edges, fmt.Sprintf("%s -> %s (%s)", nid, e.dest.id, e.protocol))
		}
	}
	sort.Strings(nodes)
	sort.Strings(edges)
	return nodes, edges
}

// appendSecurityPolicy is the security-policy appender
// (graph/telemetry/istio/appender/security_policy.go): destination
// telemetry, by connection_security_policy, for traffic from outside and
// from inside the namespace, with the rates the graph options select.
func (b *builder) appendSecurityPolicy(ctx context.Context, prom *harness.Prometheus, ns string, m trafficMap) error {
	const groupBy = "source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision,source_principal,destination_cluster,destination_service_namespace,destination_service_name,destination_workload_namespace,destination_workload,destination_canonical_service,destination_canonical_revision,destination_principal,connection_security_policy"
	metrics := []string{"istio_requests_total"}
	if b.o.grpcRate == "sent" || b.o.grpcRate == "total" {
		metrics = append(metrics, "istio_request_messages_total")
	}
	if b.o.grpcRate == "received" || b.o.grpcRate == "total" {
		metrics = append(metrics, "istio_response_messages_total")
	}
	if b.o.tcpRate == "sent" || b.o.tcpRate == "total" {
		metrics = append(metrics, "istio_tcp_sent_bytes_total")
	}
	if b.o.tcpRate == "received" || b.o.tcpRate == "total" {
		metrics = append(metrics, "istio_tcp_received_bytes_total")
	}
	policies := map[string]map[string]float64{} // "SOURCE DEST" -> policy -> rate
	for _, selector := range []string{
		fmt.Sprintf(`source_workload_namespace!="%s",destination_service_namespace="%s"`, ns, ns),
		fmt.Sprintf(`source_workload_namespace="%s"`, ns),
	} {
		var parts []string
		for _, metric := range metrics {
			parts = append(parts, fmt.Sprintf(`(sum(rate(%s{%s,%s}[%ds])) by (%s) > 0)`, metric, reporterSel("destination"), selector, b.o.durationSeconds, groupBy))
		}
		samples, err := prom.Query(ctx, strings.Join(parts, " OR "))
		if err != nil {
			return err
		}
		for _, smp := range samples {
			l := smp.Metric
			missing := false
			for _, k := range []string{"source_workload_namespace", "source_workload", "source_canonical_service", "source_canonical_revision",
				"destination_service_namespace", "destination_service_name", "destination_workload_namespace", "destination_workload",
				"destination_canonical_service", "destination_canonical_revision", "source_principal", "destination_principal"} {
				if _, ok := l[k]; !ok {
					missing = true
				}
			}
			if missing {
				b.dropped = append(b.dropped, fmt.Sprintf("security policy: missing labels: %v", l))
				continue
			}
			csp, ok := l["connection_security_policy"]
			if !ok {
				csp = unknown
			}
			val, _ := strconv.ParseFloat(smp.Value, 64)
			sourceCluster, destCluster := unknown, unknown
			if v, ok := l["source_cluster"]; ok {
				sourceCluster = v
			}
			if v, ok := l["destination_cluster"]; ok {
				destCluster = v
			}
			srcNs, srcWl, srcApp, srcVer := l["source_workload_namespace"], l["source_workload"], l["source_canonical_service"], l["source_canonical_revision"]
			dSvcNs, dSvc, dWlNs, dWl, dApp, dVer := l["destination_service_namespace"], l["destination_service_name"], l["destination_workload_namespace"],
				l["destination_workload"], l["destination_canonical_service"], l["destination_canonical_revision"]
			add := func(sCl, sNs, sSvc, sWl, sApp, sVer, dCl, dSvcNs, dSvc, dWlNs, dWl, dApp, dVer string) {
				sid, _, err1 := id(sCl, sNs, sSvc, sNs, sWl, sApp, sVer, b.o.graphType)
				did, _, err2 := id(dCl, dSvcNs, dSvc, dWlNs, dWl, dApp, dVer, b.o.graphType)
				if err1 != nil || err2 != nil {
					return
				}
				k := sid + " " + did
				if policies[k] == nil {
					policies[k] = map[string]float64{}
				}
				policies[k][csp] = val // Kiali keeps the last rate per policy
			}
			inject := false
			if b.o.injectServiceNodes && isOK(dSvc) && dSvc != passthroughCluster {
				_, t, err := id(destCluster, dSvcNs, dSvc, dWlNs, dWl, dApp, dVer, b.o.graphType)
				if err != nil {
					continue
				}
				inject = t != nodeTypeService
			}
			if inject {
				add(sourceCluster, srcNs, "", srcWl, srcApp, srcVer, destCluster, dSvcNs, dSvc, "", "", "", "")
				add(destCluster, dSvcNs, dSvc, "", "", "", destCluster, dSvcNs, dSvc, dWlNs, dWl, dApp, dVer)
			} else {
				add(sourceCluster, srcNs, "", srcWl, srcApp, srcVer, destCluster, dSvcNs, dSvc, dWlNs, dWl, dApp, dVer)
			}
		}
	}
	for sid, n := range m {
		for _, e := range n.edges {
			rates, ok := policies[sid+" "+e.dest.id]
			if !ok {
				continue
			}
			mtls, other := 0.0, 0.0
			for p, r := range rates {
				if p == "mutual_tls" {
					mtls = r
				} else {
					other += r
				}
			}
			if mtls > 0 {
				e.mtls = mtls / (mtls + other) * 100
			}
		}
	}
	return nil
}
