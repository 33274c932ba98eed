package als

import (
	"github.com/meshtrail/meshtrail/internal/istiocluster"
	"github.com/meshtrail/meshtrail/internal/record"
)

// parseCluster fills the Istio parts of an upstream cluster name
// (istiocluster.Parse): "outbound|9080|v2|reviews.default.svc.cluster.local"
// gives direction, port, subset and service, the service's name and
// namespace when the host is cluster-local. Istio labels a catch-all
// cluster's traffic with the cluster's name as destination_service_name.
// Anything else (a plain Envoy cluster) is kept as the raw name only.
func parseCluster(name string, u *record.Upstream) {
	u.Cluster = name
	c := istiocluster.Parse(name)
	u.Direction, u.Port, u.Subset, u.Service = c.Direction, c.Port, c.Subset, c.Host
	switch {
	case c.CatchAll != "":
		u.ServiceName = c.CatchAll
	case c.Host == "":
	default:
		// A ServiceEntry host may be any FQDN: it is its own name.
		u.ServiceName = c.Host
		if n, ns, ok := istiocluster.ServiceParts(c.Host); ok {
			u.ServiceName, u.ServiceNamespace = n, ns
		}
	}
}
