package chart

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

var fence = regexp.MustCompile("(?ms)^([ \t]*)```yaml ([a-z-]+)\n(.*?)^[ \t]*```")

// readmeBlock returns the README's ```yaml NAME block, unindented.
func readmeBlock(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir(t), "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range fence.FindAllStringSubmatch(string(b), -1) {
		if m[2] != name {
			continue
		}
		var out strings.Builder
		for _, l := range strings.Split(m[3], "\n") {
			out.WriteString(strings.TrimPrefix(l, m[1]) + "\n")
		}
		return []byte(out.String())
	}
	t.Fatalf("charts/README.md has no ```yaml %s block", name)
	return nil
}

// The meshConfig the README shows is the one the chart renders.
func TestReadmeIstioMeshConfig(t *testing.T) {
	var shown, rendered any
	if err := yaml.Unmarshal(readmeBlock(t, "meshconfig"), &shown); err != nil {
		t.Fatal(err)
	}
	cm := find(t, objects(t, render(t, "")), "ConfigMap", "-istio-meshconfig")
	if err := yaml.Unmarshal([]byte(dig(cm, "data", "meshConfig.yaml").(string)), &rendered); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(shown, rendered) {
		r, _ := yaml.Marshal(rendered)
		t.Fatalf("charts/README.md's meshConfig differs from the chart's rendering:\n%s", r)
	}
	var ds any
	if err := yaml.Unmarshal(readmeBlock(t, "grafana-datasource"), &ds); err != nil || dig(ds, "datasources", 0, "jsonData", "exemplarTraceIdDestinations", 0, "name") != "trace_id" {
		t.Fatalf("grafana-datasource block: %v", err)
	}
}

// The plain-Envoy bootstrap decodes with Envoy's own protos (every typed
// config too) and passes their validation rules, and points at the
// receiver the chart installs.
func TestReadmeEnvoyBootstrap(t *testing.T) {
	j, err := yaml.YAMLToJSON(readmeBlock(t, "envoy-bootstrap"))
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(j, &b); err != nil {
		t.Fatalf("not an Envoy v3 bootstrap: %v", err)
	}
	validateDeep(t, &b, "bootstrap")
	als := b.GetStaticResources().GetClusters()[0]
	addr := als.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	objs := objects(t, render(t, ""))
	svc := find(t, objs, "Service", "-als")
	port := dig(svc, "spec", "ports", 0, "port")
	if addr.GetAddress() != "meshtrail-als."+namespace+".svc.cluster.local" || float64(addr.GetPortValue()) != port {
		t.Errorf("bootstrap sends to %s:%d, the chart's receiver is %s.%s:%v", addr.GetAddress(), addr.GetPortValue(), svc.name(), namespace, port)
	}
}

// validateDeep runs the protoc-gen-validate rules on m and, unpacked, on
// every Any inside it (typed_config), recursively.
func validateDeep(t *testing.T, m proto.Message, where string) {
	t.Helper()
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			t.Errorf("%s: %v", where, err)
		}
	}
	var walk func(protoreflect.Message, string)
	walk = func(msg protoreflect.Message, path string) {
		msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			p := path + "." + string(fd.Name())
			visit := func(sub protoreflect.Message, p string) {
				if a, ok := sub.Interface().(*anypb.Any); ok {
					inner, err := a.UnmarshalNew()
					if err != nil {
						t.Errorf("%s: %s: %v", where, p, err)
						return
					}
					validateDeep(t, inner, p+"("+a.GetTypeUrl()+")")
					return
				}
				walk(sub, p)
			}
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					visit(v.List().Get(i).Message(), p)
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					visit(mv.Message(), p+"["+k.String()+"]")
					return true
				})
			case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
				visit(v.Message(), p)
			}
			return true
		})
	}
	walk(m.ProtoReflect(), where)
}
