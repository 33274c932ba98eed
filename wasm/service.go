package main

import (
	"encoding/binary"
	"unsafe"

	"github.com/meshtrail/meshtrail/internal/istiocluster"
)

// Where Istio takes destination_service and destination_service_name
// from (istio/proxy source/extensions/filters/http/istio_stats,
// populatePeerInfo), read at log time:
//
//   - the Host header is the fallback for both;
//   - route block_all (Istio's REGISTRY_ONLY catch-all, a direct 502 with
//     no cluster) names the service BlackHoleCluster, route allow_any
//     PassthroughCluster; so do the clusters BlackHoleCluster,
//     PassthroughCluster and InboundPassthroughCluster[Ipv4|Ipv6] (a
//     port no Service declares), with the requested host as
//     destination_service;
//   - otherwise the upstream cluster's metadata istio.services[0]
//     (host: the FQDN, name: the Service's short name), which Istio's
//     control plane writes on outbound clusters (the one Service) and on
//     inbound clusters (every Service on that port);
//   - the destination side without any host reports the local canonical
//     service.
//
// The source side reads Envoy's xds.cluster_name: an outbound cluster is
// named outbound|PORT|SUBSET|HOST by Istio, HOST being the same FQDN as
// the metadata's host (one read instead of two). The destination side's
// inbound|PORT|| names no host, so it reads the metadata, and the
// cluster name only without it (InboundPassthroughCluster has none).
var (
	pathClusterName    = mkPath("xds", "cluster_name")
	pathRouteName      = mkPath("xds", "route_name")
	pathClusterService = mkPath("xds", "cluster_metadata", "filter_metadata", "istio", "services", "0")
)

// resolveService sets destination_service, and destination_service_name
// when Istio's rule names it otherwise than by the host (fillWorkloadLabels
// derives the rest), from what readRequest took from :authority.
func (h *httpContext) resolveService() {
	l := &h.m.labels
	hp := h.p.host
	if h.destination() {
		if b, ok := getProperty(&pathClusterService); ok {
			if host, name := serviceMetadata(b); host != "" {
				l[lDestinationService] = host
				l[lDestinationServiceName] = name
			}
		} else if n := istiocluster.Parse(hp.pathString(&pathClusterName)).CatchAll; n != "" {
			l[lDestinationServiceName] = n
		}
		if l[lDestinationService] == "" {
			l[lDestinationService] = h.p.local.canonicalService
		}
		return
	}
	cluster := hp.pathString(&pathClusterName)
	if cluster == "" {
		// No cluster: a direct response, Istio's block_all among them.
		if n := istiocluster.RouteCatchAll(hp.pathString(&pathRouteName)); n != "" {
			l[lDestinationServiceName] = n
		}
		return
	}
	if c := istiocluster.Parse(cluster); c.CatchAll != "" {
		l[lDestinationServiceName] = c.CatchAll
	} else if c.Direction == "outbound" && c.Host != "" {
		l[lDestinationService] = c.Host
	}
}

// serviceMetadata reads host and name from istio.services[0], which Envoy
// hands a Wasm filter as a CEL map (the Struct) in Proxy-Wasm pairs. The
// strings point into b, the buffer this read returned.
func serviceMetadata(b []byte) (host, name string) {
	if len(b) < 4 {
		return "", ""
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n > (len(b)-4)/8 {
		return "", ""
	}
	data := 4 + 8*n
	for i := 0; i < n; i++ {
		ks := int(binary.LittleEndian.Uint32(b[4+8*i:]))
		vs := int(binary.LittleEndian.Uint32(b[8+8*i:]))
		if ks < 0 || vs < 0 || data+ks+1+vs+1 > len(b) {
			return "", ""
		}
		k := b[data : data+ks]
		var v string
		if vs > 0 {
			v = unsafe.String(&b[data+ks+1], vs)
		}
		data += ks + 1 + vs + 1
		switch string(k) {
		case "host":
			host = v
		case "name":
			name = v
		}
	}
	return host, name
}
