package als

import (
	"sync"

	"github.com/meshtrail/meshtrail/internal/record"
)

// endpointWorkloads maps pod addresses to the workloads whose Envoys
// stream to this receiver, so that a call that failed before any peer
// metadata came back (a 503 UF: the connection to 10.244.2.14 was refused)
// is still put on the pod it was meant for.
//
// Istio's client-side stats do the same from the endpoint's metadata when
// the peer is unknown (istio/proxy istio_stats.cc, populatePeerInfo ->
// extractEndpointMetadata, the "istio"/"workload" filter metadata EDS puts
// on every endpoint). That metadata holds workload, namespace, canonical
// service and revision and cluster, not app and version
// (metadata_object.cc, convertEndpointMetadata), so neither does a workload
// found here.
//
// The receiver only knows the pods whose own Envoy streams to it: a pod
// without a sidecar, a pod whose stream went to another replica, or one
// that has not logged anything since the receiver started, stays unknown.
// Kubernetes reuses pod addresses: the most recent stream for an address
// wins (Istio does not inject hostNetwork pods, so two live workloads do
// not share an address), and until the new pod's Envoy streams, a failure
// to the address is put on the pod that had it before.
type endpointWorkloads struct {
	mu  sync.RWMutex
	m   map[string]record.Workload // by IP
	max int
}

// maxEndpointWorkloads bounds the map: a mesh of this many pods per
// receiver replica; past it an arbitrary address is forgotten for each new
// one.
const maxEndpointWorkloads = 65536

func newEndpointWorkloads(max int) *endpointWorkloads {
	return &endpointWorkloads{m: map[string]record.Workload{}, max: max}
}

// learn remembers the workload of a proxy that streams to the receiver.
// Only sidecars and gateways are endpoints of a service; a waypoint is not
// what its callers' clusters pick.
func (e *endpointWorkloads) learn(p *proxy) {
	if p.node.IP == "" || p.workload.Name == "" || (p.node.Type != "sidecar" && p.node.Type != "router") {
		return
	}
	w := endpointWorkload(p.workload)
	e.mu.RLock()
	old, ok := e.m[p.node.IP]
	e.mu.RUnlock()
	if ok && old == w {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.m[p.node.IP]; !ok && len(e.m) >= e.max {
		for k := range e.m {
			delete(e.m, k)
			break
		}
	}
	e.m[p.node.IP] = w
}

// lookup returns the workload last seen at ip.
func (e *endpointWorkloads) lookup(ip string) (record.Workload, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	w, ok := e.m[ip]
	return w, ok
}

// endpointWorkload keeps what Istio's endpoint metadata says of a
// workload.
func endpointWorkload(w record.Workload) record.Workload {
	return record.Workload{
		Name: w.Name, Namespace: w.Namespace, CanonicalService: w.CanonicalService,
		CanonicalRevision: w.CanonicalRevision, Cluster: w.Cluster,
	}
}
