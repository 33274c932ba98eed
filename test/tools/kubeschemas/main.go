// Command kubeschemas turns the Kubernetes OpenAPI document and
// CustomResourceDefinition files into the per-kind JSON Schema files
// kubeconform reads offline (test/tools/kube-schemas.sh runs it): strict,
// so a misspelt field is an error, as `kubeconform -strict` intends.
//
// Layout, matching the -schema-location templates test/chart uses:
//
//	OUT/kubernetes/{kind}{-group}-{version}.json   (kubeconform's KindSuffix)
//	OUT/crds/{group}/{kind}_{version}.json
//
// Each Kubernetes file carries the definitions its kind reaches, so it
// stands alone; CRD schemas are inline already.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

func main() {
	swagger := flag.String("swagger", "", "Kubernetes api/openapi-spec/swagger.json")
	out := flag.String("out", "", "output directory")
	flag.Parse()
	if *swagger == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: kubeschemas -swagger swagger.json -out DIR CRD.yaml...")
		os.Exit(2)
	}
	n, err := kubernetes(*swagger, filepath.Join(*out, "kubernetes"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeschemas:", err)
		os.Exit(1)
	}
	m := 0
	for _, f := range flag.Args() {
		k, err := crds(f, filepath.Join(*out, "crds"))
		if err != nil {
			fmt.Fprintf(os.Stderr, "kubeschemas: %s: %v\n", f, err)
			os.Exit(1)
		}
		m += k
	}
	fmt.Printf("kubeschemas: %d Kubernetes kinds, %d CRD versions in %s\n", n, m, *out)
}

type schema = map[string]any

func kubernetes(swaggerFile, dir string) (int, error) {
	raw, err := os.ReadFile(swaggerFile)
	if err != nil {
		return 0, err
	}
	var doc struct {
		Definitions map[string]schema `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return 0, fmt.Errorf("%s: %w", swaggerFile, err)
	}
	defs := doc.Definitions
	// Quantity is a string in the OpenAPI document, but manifests write
	// `cpu: 1` too; the API server accepts both.
	if q, ok := defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]; ok {
		delete(q, "type")
		q["oneOf"] = []any{schema{"type": "string"}, schema{"type": "number"}}
	}
	for _, d := range defs {
		strict(d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	n := 0
	for name, d := range defs {
		gvks, _ := d["x-kubernetes-group-version-kind"].([]any)
		if len(gvks) != 1 {
			continue // list and option types, or none
		}
		gvk := gvks[0].(map[string]any)
		group, version, kind := gvk["group"].(string), gvk["version"].(string), gvk["kind"].(string)
		suffix := "-" + version
		if group != "" {
			suffix = "-" + strings.ToLower(strings.Split(group, ".")[0]) + suffix
		}
		closure := map[string]any{}
		reach(defs, name, closure)
		s := schema{"$ref": "#/definitions/" + name, "definitions": closure}
		if err := write(filepath.Join(dir, strings.ToLower(kind)+suffix+".json"), s); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// reach adds name and every definition it refers to, transitively.
func reach(defs map[string]schema, name string, into map[string]any) {
	if _, done := into[name]; done {
		return
	}
	d := defs[name]
	into[name] = d
	walk(d, func(m schema) {
		if ref, ok := m["$ref"].(string); ok {
			reach(defs, strings.TrimPrefix(ref, "#/definitions/"), into)
		}
	})
}

func walk(v any, f func(schema)) {
	switch x := v.(type) {
	case map[string]any:
		f(x)
		for _, c := range x {
			walk(c, f)
		}
	case []any:
		for _, c := range x {
			walk(c, f)
		}
	}
}

// strict closes every object that lists its properties, unless the schema
// itself keeps unknown fields; int-or-string becomes a JSON Schema choice.
func strict(v any) {
	walk(v, func(m schema) {
		if m["format"] == "int-or-string" {
			delete(m, "type")
			delete(m, "format")
			m["oneOf"] = []any{schema{"type": "string"}, schema{"type": "integer"}}
		}
		_, props := m["properties"].(map[string]any)
		_, open := m["additionalProperties"]
		if props && !open && m["x-kubernetes-preserve-unknown-fields"] != true {
			m["additionalProperties"] = false
		}
	})
}

func crds(file, dir string) (int, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, docText := range strings.Split("\n"+string(raw), "\n---") {
		var crd struct {
			Kind string `json:"kind"`
			Spec struct {
				Group string `json:"group"`
				Names struct {
					Kind string `json:"kind"`
				} `json:"names"`
				Versions []struct {
					Name   string `json:"name"`
					Schema struct {
						OpenAPIV3Schema schema `json:"openAPIV3Schema"`
					} `json:"schema"`
				} `json:"versions"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(docText), &crd); err != nil {
			return n, err
		}
		if crd.Kind != "CustomResourceDefinition" {
			continue
		}
		for _, v := range crd.Spec.Versions {
			s := v.Schema.OpenAPIV3Schema
			if s == nil {
				return n, fmt.Errorf("%s %s: no openAPIV3Schema", crd.Spec.Names.Kind, v.Name)
			}
			// The API server adds these to every custom resource; the CRD
			// schemas leave them out.
			props, _ := s["properties"].(map[string]any)
			if props == nil {
				props = map[string]any{}
				s["properties"] = props
			}
			props["apiVersion"] = schema{"type": "string"}
			props["kind"] = schema{"type": "string"}
			props["metadata"] = schema{"type": "object"}
			strict(s)
			p := filepath.Join(dir, crd.Spec.Group, strings.ToLower(crd.Spec.Names.Kind)+"_"+v.Name+".json")
			if err := write(p, s); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

func write(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
