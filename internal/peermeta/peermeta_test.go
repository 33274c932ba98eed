package peermeta

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

func copyString(b []byte) string { return string(b) }

func marshal(t testing.TB, m map[string]any) []byte {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeBothShapes(t *testing.T) {
	own := marshal(t, map[string]any{"namespace": "ns1", "workload": "w1", "service": "svc1", "revision": "r1",
		"app": "a1", "version": "v1", "cluster": "c1", "identity": "spiffe://td/ns/ns1/sa/s", "name": "p1", "type": "deployment"})
	w, ok := Decode(own, copyString)
	want := Workload{Name: "w1", Namespace: "ns1", CanonicalService: "svc1", CanonicalRevision: "r1", App: "a1", Version: "v1",
		Cluster: "c1", Principal: "spiffe://td/ns/ns1/sa/s", Pod: "p1"}
	if !ok || w != want {
		t.Errorf("peer-object shape:\n got %+v\nwant %+v", w, want)
	}
	node := marshal(t, map[string]any{"NAMESPACE": "ns2", "WORKLOAD_NAME": "w2", "CLUSTER_ID": "c2", "NAME": "p2",
		"LABELS": map[string]any{"app": "a2", "version": "v2", LabelCanonicalName: "c-svc", LabelCanonicalRevision: "c-rev"}})
	w, ok = Decode(node, copyString)
	want = Workload{Name: "w2", Namespace: "ns2", CanonicalService: "c-svc", CanonicalRevision: "c-rev", App: "a2", Version: "v2", Cluster: "c2", Pod: "p2"}
	if !ok || w != want {
		t.Errorf("node-metadata shape:\n got %+v\nwant %+v", w, want)
	}
}

func TestCanonicalFallsBackAsIstioDoes(t *testing.T) {
	for _, c := range []struct {
		labels        map[string]any
		svc, revision string
	}{
		{map[string]any{LabelCanonicalName: "c", LabelCanonicalRevision: "r", "app": "a", "version": "v"}, "c", "r"},
		{map[string]any{"app.kubernetes.io/name": "k", "app.kubernetes.io/version": "kv", "app": "a", "version": "v"}, "k", "kv"},
		{map[string]any{"app": "a", "version": "v"}, "a", "v"},
		{map[string]any{}, "w", "latest"},
	} {
		w, ok := Decode(marshal(t, map[string]any{"WORKLOAD_NAME": "w", "LABELS": c.labels}), copyString)
		svc, rev := w.Canonical()
		if !ok || svc != c.svc || rev != c.revision {
			t.Errorf("labels %v: canonical %q/%q, want %q/%q", c.labels, svc, rev, c.svc, c.revision)
		}
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, {0x0a}, {0x0a, 0x05, 0x01}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}} {
		if _, ok := Decode(b, copyString); ok {
			t.Errorf("Decode(%x) accepted malformed bytes", b)
		}
	}
}

// FuzzDecode: any bytes are handled without panicking, and whatever the
// protobuf runtime reads as a Struct gives the same string fields.
func FuzzDecode(f *testing.F) {
	f.Add(marshal(f, map[string]any{"workload": "w", "LABELS": map[string]any{"app": "a"}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		w, ok := Decode(b, copyString)
		var s structpb.Struct
		if proto.Unmarshal(b, &s) != nil || !ok {
			return
		}
		if got, want := w.Name, s.Fields["workload"].GetStringValue()+s.Fields["WORKLOAD_NAME"].GetStringValue(); s.Fields["workload"] != nil && s.Fields["WORKLOAD_NAME"] == nil && got != want {
			t.Fatalf("workload %q, protobuf says %q", got, want)
		}
	})
}

// Istio's WorkloadMetadataObject serializes its extra labels under a
// lowercase "labels" struct; the app.kubernetes.io fallbacks come from there.
func TestLowercaseLabelsOfAPeerObject(t *testing.T) {
	b := marshal(t, map[string]any{"workload": "w", "namespace": "ns",
		"labels": map[string]any{"app.kubernetes.io/name": "shop", "app.kubernetes.io/version": "2.1"}})
	w, ok := Decode(b, copyString)
	svc, rev := w.Canonical()
	if !ok || svc != "shop" || rev != "2.1" {
		t.Errorf("canonical %q/%q from lowercase labels, want shop/2.1 (%+v)", svc, rev, w)
	}
}
