package envoystandin

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshtrail/meshtrail/test/harness"
)

// The shipped stats_tags rules, applied the way Envoy's tag extractor does
// (the regex's first capture group is cut from the name, the second is the
// tag value), turn every stat the filter defines into the Prometheus metric
// and labels Istio shows.
func TestShippedStatsTagsExtractLabels(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "wasm", "examples", "bootstrap-stats-tags.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var boot struct {
		StatsConfig struct {
			StatsTags []struct {
				TagName string `json:"tag_name"`
				Regex   string `json:"regex"`
			} `json:"stats_tags"`
		} `json:"stats_config"`
	}
	if err := yaml.Unmarshal(b, &boot); err != nil {
		t.Fatal(err)
	}
	type rule struct {
		name string
		re   *regexp.Regexp
	}
	var rules []rule
	for _, r := range boot.StatsConfig.StatsTags {
		rules = append(rules, rule{r.TagName, regexp.MustCompile(r.Regex)})
	}
	extract := func(name string) (string, map[string]string) {
		tags := map[string]string{}
		for _, r := range rules {
			m := r.re.FindStringSubmatchIndex(name)
			if m == nil {
				continue
			}
			tags[r.name] = name[m[4]:m[5]]
			name = name[:m[2]] + name[m[3]:]
		}
		return name, tags
	}

	up := upstreamEcho(t)
	h, p := startProxy(t, HostOptions{PluginConfig: []byte(`{}`)}, ProxyConfig{Upstream: up.URL, Inbound: true})
	get(t, p, map[string]string{"x-envoy-peer-metadata": productpage.PeerMetadataHeader(), "traceparent": "ff-bad"})
	seen := map[string]bool{}
	for _, m := range h.Metrics() {
		// Envoy puts Wasm stats in the wasmcustom namespace, which its
		// Prometheus output strips.
		name, tags := extract("wasmcustom." + m.Name)
		name = strings.TrimPrefix(name, "wasmcustom.")
		seen[name] = true
		if strings.ContainsAny(name, "=;") {
			t.Errorf("%s: tags left in the name after extraction: %q", m.Name, name)
		}
		if strings.HasPrefix(name, "istio_") {
			if len(tags) != 25 || tags["reporter"] != "destination" || tags["source_workload"] != "productpage-v1" ||
				tags["destination_workload"] != "reviews-v1" || tags["response_code"] != "200" || tags["grpc_response_status"] != "" {
				t.Errorf("%s: tags %v", name, tags)
			}
		}
		if name == "meshtrail_trace_headers_invalid_total" && tags["reason"] == "" {
			t.Errorf("invalid header counter without reason: %v", tags)
		}
	}
	for _, want := range []string{"istio_requests_total", "istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes", "meshtrail_trace_headers_invalid_total", "meshtrail_filter_errors_total"} {
		if !seen[want] {
			t.Errorf("no %s after extraction; have %v", want, seen)
		}
	}
}

// The Istio snippet: its extraStatTags, turned into the rules Istio's
// bootstrap generates for them (`(tag=\.=(.*?);\.;)`, the only ones it has
// for these stats), extract every label of every stat the filter defines,
// mesh-wide and per pod alike; its histogram bucket key is a prefix of the
// filter's stat names as Envoy files them (wasmcustom.<name>).
func TestIstioSnippetExtractsLabels(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "wasm", "examples", "istio-proxy-stats.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(b), "\n---\n")
	if len(docs) != 2 {
		t.Fatalf("want 2 YAML documents, got %d", len(docs))
	}
	type proxyConfig struct {
		ExtraStatTags []string `json:"extraStatTags"`
	}
	var mesh struct {
		Spec struct {
			MeshConfig struct {
				DefaultConfig proxyConfig `json:"defaultConfig"`
			} `json:"meshConfig"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal([]byte(docs[0]), &mesh); err != nil {
		t.Fatal(err)
	}
	var deploy struct {
		Spec struct {
			Template struct {
				Metadata struct {
					Annotations map[string]string `json:"annotations"`
				} `json:"metadata"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal([]byte(docs[1]), &deploy); err != nil {
		t.Fatal(err)
	}
	ann := deploy.Spec.Template.Metadata.Annotations
	var pod proxyConfig
	if err := yaml.Unmarshal([]byte(ann["proxy.istio.io/config"]), &pod); err != nil {
		t.Fatal(err)
	}
	var buckets map[string][]float64
	if err := json.Unmarshal([]byte(ann["sidecar.istio.io/statsHistogramBuckets"]), &buckets); err != nil {
		t.Fatal(err)
	}

	up := upstreamEcho(t)
	h, p := startProxy(t, HostOptions{PluginConfig: []byte(`{"metrics":{"overrides":[{"tag_overrides":{"tenant":{"value":"request.headers['x-tenant']"}}}]}}`)},
		ProxyConfig{Upstream: up.URL, Inbound: true})
	get(t, p, map[string]string{"x-envoy-peer-metadata": productpage.PeerMetadataHeader(), "traceparent": "ff-bad", "x-tenant": "acme"})

	for where, tags := range map[string][]string{"meshConfig": mesh.Spec.MeshConfig.DefaultConfig.ExtraStatTags, "pod annotation": pod.ExtraStatTags} {
		var rules []*regexp.Regexp
		for _, tag := range tags {
			rules = append(rules, regexp.MustCompile(`(`+tag+`=\.=(.*?);\.;)`))
		}
		for _, m := range h.Metrics() {
			full := "wasmcustom." + m.Name
			name, got := full, map[string]string{}
			for i, re := range rules {
				if x := re.FindStringSubmatchIndex(name); x != nil {
					got[tags[i]] = name[x[4]:x[5]]
					name = name[:x[2]] + name[x[3]:]
				}
			}
			name = strings.TrimPrefix(name, "wasmcustom.")
			if strings.ContainsAny(name, "=;") {
				t.Errorf("%s: %s: tags left in the name: %q", where, m.Name, name)
			}
			if strings.HasPrefix(name, "istio_") {
				if len(got) != 26 || got["reporter"] != "destination" || got["source_workload"] != "productpage-v1" ||
					got["destination_service"] != "reviews.default.svc.cluster.local" || got["tenant"] != "acme" {
					t.Errorf("%s: %s: tags %v", where, name, got)
				}
				if m.Type == MetricHistogram {
					var matched bool
					for prefix := range buckets {
						matched = matched || strings.HasPrefix(full, prefix)
					}
					if !matched {
						t.Errorf("histogram bucket keys %v match no prefix of %s", buckets, full)
					}
				}
			}
		}
	}
}
