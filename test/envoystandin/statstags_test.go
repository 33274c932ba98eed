package envoystandin

import (
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
	b, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "examples", "wasm", "bootstrap-stats-tags.yaml"))
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
