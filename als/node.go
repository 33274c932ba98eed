package als

import (
	"strings"

	"github.com/meshtrail/meshtrail/internal/peermeta"
	"github.com/meshtrail/meshtrail/internal/record"
)

// Istio's canonical service labels.
const (
	labelCanonicalName     = peermeta.LabelCanonicalName
	labelCanonicalRevision = peermeta.LabelCanonicalRevision
)

// proxy is what the receiver knows of the Envoy at the other end of a
// stream: parsed once, from the stream's first message.
type proxy struct {
	node     record.Node
	workload record.Workload // the proxy's own workload, for the side it reports
	// principal is the identity the proxy showed on an inbound entry,
	// learned from the stream; its outbound entries carry it.
	principal string
	// announced: the converter's endpoint map knows this proxy's address.
	announced bool
}

// proxyFrom reads a stream's identifier the way Istio builds a node: id
// "TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local" and node metadata
// (NAME, NAMESPACE, WORKLOAD_NAME, LABELS, CLUSTER_ID, MESH_ID,
// SERVICE_ACCOUNT...). Metadata wins over what the id implies; a node that
// is not Istio's still gets its id and cluster. The fields are already
// bounded and valid UTF-8 (decodeIdentifier).
func proxyFrom(f identifierFields) proxy {
	var p proxy
	p.node.LogName = f.logName
	if !f.hasNode {
		return p
	}
	p.node.ID = f.id
	p.node.Cluster = f.cluster
	if parts := strings.Split(f.id, "~"); len(parts) == 4 {
		p.node.Type = parts[0]
		p.node.IP = parts[1]
		// A pod name may hold dots; a namespace (a DNS label) never does.
		if i := strings.LastIndexByte(parts[2], '.'); i >= 0 {
			p.node.Pod, p.node.Namespace = parts[2][:i], parts[2][i+1:]
		} else {
			p.node.Pod = parts[2]
		}
		if p.node.Namespace == "" {
			if ns, _, ok := strings.Cut(parts[3], "."); ok {
				p.node.Namespace = ns
			}
		}
	}
	str := func(k string) string { return f.metadata[k] }
	if v := str("NAME"); v != "" {
		p.node.Pod = v
	}
	if v := str("NAMESPACE"); v != "" {
		p.node.Namespace = v
	}
	p.node.Workload = str("WORKLOAD_NAME")
	p.node.Mesh = str("MESH_ID")
	p.node.Network = str("NETWORK")
	p.node.ClusterID = str("CLUSTER_ID")
	if p.node.Workload == "" {
		p.node.Workload = workloadFromPod(p.node.Pod)
	}

	lbl := func(k string) string { return f.labels[k] }
	w := record.Workload{
		Name:              p.node.Workload,
		Namespace:         p.node.Namespace,
		CanonicalService:  lbl(labelCanonicalName),
		CanonicalRevision: lbl(labelCanonicalRevision),
		App:               lbl("app"),
		Version:           lbl("version"),
		Cluster:           p.node.ClusterID,
		Pod:               p.node.Pod,
		IP:                p.node.IP,
	}
	w.CanonicalService = peermeta.CanonicalService(w.CanonicalService, lbl("app.kubernetes.io/name"), w.App, w.Name)
	w.CanonicalRevision = peermeta.CanonicalRevision(w.CanonicalRevision, lbl("app.kubernetes.io/version"), w.Version)
	if sa := str("SERVICE_ACCOUNT"); sa != "" && w.Namespace != "" {
		td := firstNonEmpty(str("TRUST_DOMAIN"), "cluster.local")
		w.Principal = "spiffe://" + td + "/ns/" + w.Namespace + "/sa/" + sa
	}
	p.workload = w
	return p
}

// workloadFromPod guesses a workload name from a pod name when Istio's
// WORKLOAD_NAME metadata is missing: "reviews-v2-5b64f47978-x7k2p" (a
// Deployment's pod) becomes "reviews-v2". StatefulSet ordinals and other
// shapes are left as they are.
func workloadFromPod(pod string) string {
	parts := strings.Split(pod, "-")
	n := len(parts)
	if n >= 3 && len(parts[n-1]) == 5 && isAlnum(parts[n-1]) && len(parts[n-2]) >= 8 && len(parts[n-2]) <= 10 && isAlnum(parts[n-2]) {
		return strings.Join(parts[:n-2], "-")
	}
	return pod
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// principalNamespace reads the namespace out of a SPIFFE id
// spiffe://TD/ns/NS/sa/SA.
func principalNamespace(spiffe string) string {
	rest, ok := strings.CutPrefix(spiffe, "spiffe://")
	if !ok {
		return ""
	}
	parts := strings.Split(rest, "/")
	for i := 1; i+1 < len(parts); i += 2 {
		if parts[i] == "ns" {
			return parts[i+1]
		}
	}
	return ""
}
