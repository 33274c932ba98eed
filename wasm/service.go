package main

import (
	"encoding/binary"
	"strings"
	"unsafe"
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

// passthroughName returns the cluster name when it is one of Istio's
// passthrough or blackhole clusters, which stand for the service name.
func passthroughName(cluster string) string {
	switch cluster {
	case "BlackHoleCluster", "PassthroughCluster", "InboundPassthroughCluster",
		"InboundPassthroughClusterIpv4", "InboundPassthroughClusterIpv6":
		return cluster
	}
	return ""
}

// outboundHost returns HOST from Istio's outbound|PORT|SUBSET|HOST.
func outboundHost(cluster string) string {
	rest, ok := strings.CutPrefix(cluster, "outbound|")
	if !ok {
		return ""
	}
	i := strings.IndexByte(rest, '|') // after PORT
	if i < 0 {
		return ""
	}
	rest = rest[i+1:]
	i = strings.IndexByte(rest, '|') // after SUBSET
	if i < 0 || strings.IndexByte(rest[i+1:], '|') >= 0 {
		return ""
	}
	return rest[i+1:]
}

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
		} else if n := passthroughName(hp.pathString(&pathClusterName)); n != "" {
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
		switch hp.pathString(&pathRouteName) {
		case "block_all":
			l[lDestinationServiceName] = "BlackHoleCluster"
		case "allow_any":
			l[lDestinationServiceName] = "PassthroughCluster"
		}
		return
	}
	if n := passthroughName(cluster); n != "" {
		l[lDestinationServiceName] = n
	} else if host := outboundHost(cluster); host != "" {
		l[lDestinationService] = host
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
