// Package istiocluster reads what Istio's upstream cluster and route names
// say about a hop: direction, port, subset and service host
// ("outbound|9080|v2|reviews.default.svc.cluster.local"), and Istio's
// catch-all clusters. The Wasm filter and the ALS receiver label metrics
// from the same names, so they share this reading.
package istiocluster

import (
	"strconv"
	"strings"
)

// Istio's catch-all clusters: traffic to hosts the mesh does not know, let
// through (outboundTrafficPolicy ALLOW_ANY) or refused (REGISTRY_ONLY), and
// inbound traffic to a port no Service declares. Istio labels their traffic
// with the cluster's name as destination_service_name.
const (
	Passthrough        = "PassthroughCluster"
	BlackHole          = "BlackHoleCluster"
	InboundPassthrough = "InboundPassthroughCluster" // and ...Ipv4, ...Ipv6
)

// Cluster is what an upstream cluster name says.
type Cluster struct {
	Direction string // "inbound", "outbound", or "" when the name says neither
	Port      uint32
	Subset    string
	Host      string // the service's FQDN; "" for inbound clusters of Istio >= 1.10
	// CatchAll is the name of the catch-all cluster this is, "" for others.
	CatchAll string
}

// Parse reads DIRECTION|PORT|SUBSET|HOST ("inbound|9080||" since Istio
// 1.10, inbound-vip|... on a waypoint), a gateway's SNI-DNAT form
// outbound_.PORT_.SUBSET_.HOST (AUTO_PASSTHROUGH), and the catch-all
// clusters. Any other name (a plain Envoy cluster) gives the zero Cluster.
func Parse(name string) Cluster {
	if d := catchAllDirection(name); d != "" {
		return Cluster{Direction: d, CatchAll: name}
	}
	sep := "|"
	if strings.HasPrefix(name, "outbound_.") {
		sep = "_."
	}
	var parts [4]string
	rest := name
	for i := 0; i < 3; i++ {
		var ok bool
		if parts[i], rest, ok = strings.Cut(rest, sep); !ok {
			return Cluster{}
		}
	}
	if sep == "|" && strings.IndexByte(rest, '|') >= 0 {
		return Cluster{}
	}
	var c Cluster
	switch parts[0] {
	case "inbound", "inbound-vip":
		c.Direction = "inbound"
	case "outbound":
		c.Direction = "outbound"
	default:
		return Cluster{}
	}
	if p, err := strconv.ParseUint(parts[1], 10, 32); err == nil {
		c.Port = uint32(p)
	}
	c.Subset, c.Host = parts[2], rest
	return c
}

// IsCatchAll reports whether a name is one of the catch-all clusters.
func IsCatchAll(name string) bool { return catchAllDirection(name) != "" }

func catchAllDirection(name string) string {
	switch name {
	case Passthrough, BlackHole:
		return "outbound"
	case InboundPassthrough, InboundPassthrough + "Ipv4", InboundPassthrough + "Ipv6":
		return "inbound"
	}
	return ""
}

// RouteCatchAll returns the catch-all cluster a route name stands for
// (Istio names its routes to them block_all and allow_any; a blocked
// request is a direct 502 that never picks a cluster), "" for others.
func RouteCatchAll(route string) string {
	switch route {
	case "block_all":
		return BlackHole
	case "allow_any":
		return Passthrough
	}
	return ""
}

// ServiceParts splits a cluster-local host name.namespace.svc.<domain>;
// ok is false for any other host (a ServiceEntry's may be any FQDN).
func ServiceParts(host string) (name, namespace string, ok bool) {
	name, rest, found := strings.Cut(host, ".")
	if !found {
		return "", "", false
	}
	namespace, suffix, found := strings.Cut(rest, ".")
	if !found || !strings.HasPrefix(suffix, "svc.") {
		return "", "", false
	}
	return name, namespace, true
}
