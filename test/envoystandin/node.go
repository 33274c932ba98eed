package envoystandin

import (
	"encoding/base64"
	"fmt"
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Node is the identity of the sidecar the stand-in plays, as Istio's
// injector and bootstrap describe it.
type Node struct {
	IP, Pod, Namespace, Workload, ClusterID string
	Labels                                  map[string]string
}

// ID is Istio's node id: sidecar~IP~POD.NS~NS.svc.cluster.local.
func (n Node) ID() string {
	return fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", n.IP, n.Pod, n.Namespace, n.Namespace)
}

func (n Node) metadata() map[string]any {
	labels := map[string]any{}
	for k, v := range n.Labels {
		labels[k] = v
	}
	return map[string]any{
		"NAME": n.Pod, "NAMESPACE": n.Namespace, "WORKLOAD_NAME": n.Workload,
		"CLUSTER_ID": n.ClusterID, "LABELS": labels, "INSTANCE_IPS": n.IP,
	}
}

// Proto is the node as Envoy sends it in the ALS identifier.
func (n Node) Proto() *corev3.Node {
	md, err := structpb.NewStruct(n.metadata())
	if err != nil {
		panic(err) // only strings: cannot fail
	}
	return &corev3.Node{Id: n.ID(), Cluster: n.Workload + "." + n.Namespace, Metadata: md}
}

// Properties are the node attributes a filter reads (xds.node.id,
// xds.node.metadata.*), keyed as HostOptions.Properties expects; the Host
// serves them as node.* too when its AttributeNames say so.
func (n Node) Properties() map[string][]byte {
	node := func(k ...string) string { return Path(append([]string{"xds", "node"}, k...)...) }
	p := map[string][]byte{
		node("id"):                        []byte(n.ID()),
		node("metadata", "NAME"):          []byte(n.Pod),
		node("metadata", "NAMESPACE"):     []byte(n.Namespace),
		node("metadata", "WORKLOAD_NAME"): []byte(n.Workload),
		node("metadata", "CLUSTER_ID"):    []byte(n.ClusterID),
		node("metadata", "INSTANCE_IPS"):  []byte(n.IP),
	}
	keys := make([]string, 0, len(n.Labels))
	for k := range n.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p[node("metadata", "LABELS", k)] = []byte(n.Labels[k])
	}
	return p
}

// PeerMetadataHeader is the x-envoy-peer-metadata value Istio's metadata
// exchange would send for n: its metadata as a base64 serialized Struct.
func (n Node) PeerMetadataHeader() string {
	md, err := structpb.NewStruct(n.metadata())
	if err != nil {
		panic(err)
	}
	b, err := proto.Marshal(md)
	if err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// FilterStatePeer is what a Wasm filter reads at ["filter_state",
// "downstream_peer"] once Istio's peer_metadata filter has consumed an
// x-envoy-peer-metadata header: Istio stores the peer object's keys
// (istio/proxy WorkloadMetadataObject::serializeAsProto: type, workload,
// name, cluster, namespace, service, revision, app, version) as a Struct
// CelState, which Envoy hands a Wasm filter as a CEL map in Proxy-Wasm
// pairs. Labels beyond these are Istio's additional_labels, none here.
func FilterStatePeer(header string) ([]byte, bool) {
	fields, ok := peerObject(header)
	if !ok {
		return nil, false
	}
	return serializeMap(fields), true
}

// PeerStruct is the same peer object as the google.protobuf.Struct Envoy's
// access logger logs for Istio's downstream_peer / upstream_peer filter
// state (in filter_state_objects_to_log, as Any(Struct)).
func PeerStruct(header string) (*structpb.Struct, bool) {
	fields, ok := peerObject(header)
	if !ok {
		return nil, false
	}
	s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for _, kv := range fields {
		s.Fields[kv[0]] = structpb.NewStringValue(kv[1])
	}
	return s, true
}

// peerObject is the keys Istio's peer object has for the peer whose
// metadata exchange header is header.
func peerObject(header string) (Headers, bool) {
	raw, err := base64.StdEncoding.DecodeString(header)
	if err != nil {
		return nil, false
	}
	var md structpb.Struct
	if err := proto.Unmarshal(raw, &md); err != nil {
		return nil, false
	}
	f := md.GetFields()
	str := func(k string) string { return f[k].GetStringValue() }
	labels := f["LABELS"].GetStructValue().GetFields()
	label := func(k string) string { return labels[k].GetStringValue() }
	var out Headers
	for _, kv := range [][2]string{
		{"workload", str("WORKLOAD_NAME")}, {"name", str("NAME")}, {"cluster", str("CLUSTER_ID")},
		{"namespace", str("NAMESPACE")}, {"service", label("service.istio.io/canonical-name")},
		{"revision", label("service.istio.io/canonical-revision")}, {"app", label("app")}, {"version", label("version")},
	} {
		if kv[1] != "" {
			out = append(out, kv)
		}
	}
	return out, len(out) > 0
}
