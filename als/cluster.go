package als

import (
	"strconv"
	"strings"

	"github.com/meshtrail/meshtrail/record"
)

// Istio's outbound catch-all clusters: traffic to hosts the mesh does not
// know, let through (outboundTrafficPolicy ALLOW_ANY) or refused
// (REGISTRY_ONLY).
const (
	clusterPassthrough = "PassthroughCluster"
	clusterBlackHole   = "BlackHoleCluster"
)

// parseCluster fills the Istio parts of an upstream cluster name:
// "outbound|9080|v2|reviews.default.svc.cluster.local" is
// DIRECTION|PORT|SUBSET|FQDN. Inbound clusters are
// "inbound|9080||" (Istio >= 1.10) or "inbound|9080|http|reviews.default.svc.cluster.local";
// gateways in AUTO_PASSTHROUGH use "outbound_.9080_.v2_.reviews.default.svc.cluster.local".
// Istio's catch-all clusters say their direction by name, and Istio labels
// their traffic with the cluster's name as destination_service_name (the
// inbound one too: a port no Service declares).
// Anything else (a plain Envoy cluster) is kept as the raw name only.
func parseCluster(name string, u *record.Upstream) {
	u.Cluster = name
	switch name {
	case clusterPassthrough, clusterBlackHole:
		u.Direction, u.ServiceName = "outbound", name
		return
	case "InboundPassthroughClusterIpv4", "InboundPassthroughClusterIpv6", "InboundPassthroughCluster":
		u.Direction, u.ServiceName = "inbound", name
		return
	}
	// DIRECTION|PORT|SUBSET|FQDN, or a gateway's SNI-DNAT form
	// outbound_.PORT_.SUBSET_.FQDN (AUTO_PASSTHROUGH).
	sep := "|"
	if strings.HasPrefix(name, "outbound_.") {
		sep = "_."
	}
	var parts [4]string
	rest := name
	for i := 0; i < 3; i++ {
		var ok bool
		if parts[i], rest, ok = strings.Cut(rest, sep); !ok {
			return
		}
	}
	if sep == "|" && strings.IndexByte(rest, '|') >= 0 {
		return
	}
	parts[3] = rest
	switch parts[0] {
	case "inbound", "inbound-vip": // inbound-vip: a sidecar's clusters for a service's VIP
		u.Direction = "inbound"
	case "outbound":
		u.Direction = "outbound"
	default:
		return
	}
	if p, err := strconv.ParseUint(parts[1], 10, 32); err == nil {
		u.Port = uint32(p)
	}
	u.Subset = parts[2]
	u.Service = parts[3]
	if u.Service == "" {
		return
	}
	// name.namespace.svc.cluster.local; a ServiceEntry host may be any FQDN.
	if name, rest, ok := strings.Cut(u.Service, "."); ok {
		if ns, suffix, ok := strings.Cut(rest, "."); ok && strings.HasPrefix(suffix, "svc.") {
			u.ServiceName, u.ServiceNamespace = name, ns
			return
		}
	}
	u.ServiceName = u.Service
}
