package als

import (
	"strconv"
	"strings"

	"github.com/meshtrail/meshtrail/record"
)

// parseCluster fills the Istio parts of an upstream cluster name:
// "outbound|9080|v2|reviews.default.svc.cluster.local" is
// DIRECTION|PORT|SUBSET|FQDN. Inbound clusters are
// "inbound|9080||" (Istio >= 1.10) or "inbound|9080|http|reviews.default.svc.cluster.local".
// Anything else (BlackHoleCluster, PassthroughCluster, a plain Envoy
// cluster) is kept as the raw name only.
func parseCluster(name string, u *record.Upstream) {
	u.Cluster = name
	var parts [4]string
	rest := name
	for i := 0; i < 3; i++ {
		var ok bool
		if parts[i], rest, ok = strings.Cut(rest, "|"); !ok {
			return
		}
	}
	if strings.IndexByte(rest, '|') >= 0 {
		return
	}
	parts[3] = rest
	switch parts[0] {
	case "inbound":
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
