package main

import (
	"encoding/binary"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/meshtrail/meshtrail/internal/filterstate"
)

// An invalid configuration is refused at start (Envoy then rejects it), and
// the log names the field to fix.
func TestInvalidConfigRefused(t *testing.T) {
	cases := []struct{ config, field string }{
		{`not json`, "configuration: JSON"},
		{`{"reporter":"sidecar"}`, "reporter"},
		{`{"reporter":1}`, "reporter: want a string"},
		{`{"tracing":{"formats":["zipkin"]}}`, "tracing.formats[0]"},
		{`{"tracing":{"formats":"w3c"}}`, "tracing.formats: want a list"},
		{`{"tracing":{"sampling_percentage":101}}`, "tracing.sampling_percentage"},
		{`{"tracing":{"samplingPercentage":1}}`, "tracing.samplingPercentage: unknown field"},
		{`{"tracing":{"tracestate_key":"Bad"}}`, "tracing.tracestate_key"},
		{`{"metrics":{"overrides":[{"match":"FOO"}]}}`, "metrics.overrides[0].match"},
		{`{"metrics":{"overrides":[{"tag_overrides":{"x":{"operation":"UPSERT"}}}]}}`, "metrics.overrides[0].tag_overrides[x].value"},
		{`{"metrics":{"overrides":[{"tag_overrides":{"x":{"value":"request.headers[x]"}}}]}}`, "want request.headers['name']"},
		{`{"metrics":{"overrides":[{"tag_overrides":{"x":{"operation":"DROP"}}}]}}`, "metrics.overrides[0].tag_overrides[x].operation"},
		{`{"metrics":{"overrides":[{"tag_overrides":{"Bad-Tag":{"operation":"REMOVE"}}}]}}`, "tag_overrides[Bad-Tag]"},
		{`{"metrics":{"max_series":1.5}}`, "metrics.max_series"},
		{`{"access_log":{"headers":["bad header"]}}`, "access_log.headers[0]"},
		{`{"access_log":{"headers":["X-A","x_a"]}}`, "access_log.headers[1]"},
		{`{"access_log":{"attributes":["request..path"]}}`, "access_log.attributes[0]"},
		// Maps have no single value; keys Envoy does not serve are typos.
		{`{"access_log":{"attributes":["request.path","request.headers"]}}`, `access_log.attributes[1]: "request.headers" is a map`},
		{`{"access_log":{"attributes":["xds"]}}`, `access_log.attributes[0]: "xds" is a map`},
		{`{"access_log":{"attributes":["xds.node"]}}`, `access_log.attributes[0]: "xds.node" is a map`},
		{`{"access_log":{"attributes":["request.url_pth"]}}`, `access_log.attributes[0]: "request.url_pth" is not an Envoy attribute`},
		{`{"access_log":{"attributes":["response.code.x"]}}`, `access_log.attributes[0]: "response.code.x" is not an Envoy attribute`},
		{`{"metrics":{"overrides":[{"tag_overrides":{"x":{"value":"metadata"}}}]}}`, `metrics.overrides[0].tag_overrides[x].value: "metadata" is a map`},
		{`{"metrics":{"overrides":[{"tag_overrides":{"x":{"value":"upstream.prot"}}}]}}`, `metrics.overrides[0].tag_overrides[x].value: "upstream.prot" is not an Envoy attribute`},
		{`{"metrics":{"overrides":[{"tag_overrides":{"app":{"value":"request.host"}}}]}}`, `metrics.overrides[0].tag_overrides[app]: tag "app" clashes with tag "source_app"`},
		{`{"metrics":{"overrides":[{"tag_overrides":{"version":{"value":"request.host"}}}]}}`, "tag_overrides[version]"},
		{`{"metrics":{"overrides":[{"tag_overrides":{"cluster":{"value":"request.host"}}}]}}`, "tag_overrides[cluster]"},
		{`{"metrics":{"overrides":[{"tag_overrides":{"namespace":{"value":"request.host"}}}]}}`, "tag_overrides[namespace]"},
		{`{"metrics":{"overrides":[{"tag_overrides":{"principal":{"value":"request.host"}}}]}}`, "tag_overrides[principal]"},
		{`{"metrics":{"overrides":[{"match":"REQUEST_COUNT","tag_overrides":{"my_source_app":{"value":"request.host"}}}]}}`, `tag_overrides[my_source_app]: tag "my_source_app" clashes with tag "source_app"`},
		{`{"metrics":{"overrides":[{"tag_overrides":{"x_reason":{"value":"request.host"}}}]}}`, "tag_overrides[x_reason]"},
		{`{"metrics":{"overrides":[{"tag_overrides":{"tenant":{"value":"request.host"},"my_tenant":{"value":"request.host"}}}]}}`, "tag_overrides[my_tenant]"},
		{`{} {}`, "trailing data"},
		{`{"reporter":"source","reporter":"source"}`, "duplicated key"},
	}
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		for _, c := range cases {
			e, status := startStatus(t, vm, c.config, nil)
			logs := strings.Join(e.GetCriticalLogs(), "\n")
			if status != types.OnPluginStartStatusFailed {
				t.Errorf("%s: accepted", c.config)
				continue
			}
			if !strings.Contains(logs, c.field) {
				t.Errorf("%s: log %q does not name %q", c.config, logs, c.field)
			}
		}
		for _, ok := range []string{``, `{}`, " \n", `{"reporter":"auto","tracing":{"formats":[],"disabled":false},"metrics":{"overrides":[]},"access_log":{"headers":[]}}`,
			// Overriding a standard label's value, or a tag no other ends.
			`{"metrics":{"overrides":[{"tag_overrides":{"destination_service":{"value":"request.host"},"tenant":{"value":"request.host"},"app_tier":{"value":"request.host"}}}]}}`,
			// Typed attributes, one header of a map, values inside
			// metadata and filter state, another filter's wasm.<name>.
			`{"access_log":{"attributes":["response.code","connection.mtls","request.duration","request.time","upstream.port",
			  "request.headers.x_tenant","metadata.filter_metadata.acme.tier","xds.node.id","filter_state.tier","other_filter_value",
			  "upstream.uri_san_peer_certificate","xds.cluster_name","connection_id"]}}`,
		} {
			if _, status := startStatus(t, vm, ok, nil); status != types.OnPluginStartStatusOK {
				t.Errorf("%q refused", ok)
			}
		}
	})
}

func TestParseJSON(t *testing.T) {
	v, err := parseJSON(`{"a":[1,-2.5e3,true,false,null,"x\u00e9\n\"\ud83d\ude00"],"b":{}}`)
	if err != nil {
		t.Fatal(err)
	}
	a := v.(map[string]any)["a"].([]any)
	if a[0] != 1.0 || a[1] != -2500.0 || a[2] != true || a[3] != false || a[4] != nil || a[5] != "xé\n\"😀" {
		t.Errorf("parsed %#v", a)
	}
	for _, bad := range []string{`{`, `[1,]`, `{"a" 1}`, `01`, `"\x"`, `tru`, `{"a":1,}`, strings.Repeat("[", 40) + strings.Repeat("]", 40), "\"a\x01\""} {
		if _, err := parseJSON(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestAccessLogAttributes(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		props := map[string]string{"request|path": "/reviews/0?x=1"}
		for k, v := range reviewsNode {
			props[k] = v
		}
		e := start(t, vm, `{"reporter":"destination","access_log":{"headers":["X-Request-Id","user-agent"],"attributes":["request.path"]}}`, props)
		x := e.request([][2]string{
			{"x-request-id", "req-1"}, {"user-agent", "curl/8"},
			{"traceparent", "00-" + suiteTrace + "-" + suiteParent + "-01"},
			{"x-envoy-peer-metadata", productpagePeer(t)},
		}, nil)
		want := map[string]string{
			"meshtrail_trace_id":               suiteTrace,
			"meshtrail_parent_span_id":         suiteParent,
			"meshtrail_sampled":                "1",
			"meshtrail_h_x_request_id":         "req-1",
			"meshtrail_h_user_agent":           "curl/8",
			"meshtrail_h_request_path":         "/reviews/0?x=1",
			"meshtrail_peer_principal":         "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
			"meshtrail_peer_workload":          "productpage-v1",
			"meshtrail_peer_namespace":         "default",
			"meshtrail_peer_canonical_service": "productpage",
		}
		for k, v := range want {
			if x.state[k] != v {
				t.Errorf("filter state %s = %q, want %q", k, x.state[k], v)
			}
		}
		if s := x.state["meshtrail_span_id"]; len(s) != 16 || s == suiteParent {
			t.Errorf("span id %q", s)
		}
	})
}

func TestDisabledParts(t *testing.T) {
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		e := start(t, vm, `{"tracing":{"disabled":true},"metrics":{"disabled":true}}`, nil)
		x := e.request([][2]string{{"traceparent", "00-" + suiteTrace + "-" + suiteParent + "-01"}}, nil)
		if got := header(t, x.upstream, "traceparent"); got != "00-"+suiteTrace+"-"+suiteParent+"-01" {
			t.Errorf("tracing disabled, traceparent changed to %q", got)
		}
		if _, ok := x.state["meshtrail_trace_id"]; ok {
			t.Error("tracing disabled, trace id written")
		}
		if _, err := e.GetCounterMetric("meshtrail_metric_series_dropped_total"); err != nil {
			t.Errorf("own counters are defined even with metrics off: %v", err)
		}
	})
}

func TestFilterStateName(t *testing.T) {
	for in, want := range map[string]string{"x-request-id": "meshtrail_h_x_request_id", "User-Agent": "meshtrail_h_user_agent", "request.path": "meshtrail_h_request_path", ":authority": "meshtrail_h__authority"} {
		if got := filterstate.HeaderKey(in); got != want {
			t.Errorf("HeaderKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// Envoy hands a Wasm filter ints, bools, durations and timestamps in
// binary; a label or a filter-state value gets them as Envoy's
// Expr::print prints them (what Istio's stats filter puts in a custom
// dimension).
func TestTypedAttributes(t *testing.T) {
	le := func(v uint64) string { return string(binary.LittleEndian.AppendUint64(nil, v)) }
	props := map[string]string{
		"response|code": le(200), "request|size": le(5), "connection|mtls": "\x01", "upstream|port": le(9080),
		"request|duration": le(3_500_000), "request|time": le(uint64(time.Date(2026, 11, 21, 10, 0, 0, 500_000_000, time.UTC).UnixNano())),
		"connection|id": le(42),
	}
	attrs := []string{"response.code", "request.size", "connection.mtls", "upstream.port", "request.duration", "request.time", "connection.id"}
	want := []string{"200", "5", "true", "9080", "3.5ms", "2026-11-21T10:00:00.5+00:00", "42"}
	eachRunner(t, func(t *testing.T, vm types.VMContext) {
		var tags []string
		for _, a := range attrs {
			tags = append(tags, `"t_`+strings.ReplaceAll(a, ".", "_")+`":{"value":"`+a+`"}`)
		}
		cfg := onlyServiceLabels("destination")
		cfg = strings.Replace(cfg, `"tag_overrides":{`, `"tag_overrides":{`+strings.Join(tags, ",")+`,`, 1)
		cfg = strings.Replace(cfg, `"metrics":`, `"access_log":{"attributes":["`+strings.Join(attrs, `","`)+`"]},"metrics":`, 1)
		e := start(t, vm, cfg, props)
		for i := 0; i < 2; i++ { // the second one from the kept values
			x := e.request([][2]string{{":authority", "reviews"}}, nil)
			for j, a := range attrs {
				if got := x.state[filterstate.HeaderKey(a)]; got != want[j] {
					t.Errorf("filter state %s = %q, want %q", filterstate.HeaderKey(a), got, want[j])
				}
			}
		}
		// Tags are applied sorted by name.
		var sorted []string
		for j, a := range attrs {
			sorted = append(sorted, "t_"+strings.ReplaceAll(a, ".", "_")+"=.="+want[j]+";.;")
		}
		sort.Strings(sorted)
		name := strings.TrimSuffix(serviceSeries("reviews", "reviews", "unknown"), "istio_requests_total") + strings.Join(sorted, "") + "istio_requests_total"
		if got, err := e.GetCounterMetric(name); err != nil || got != 2 {
			t.Errorf("series %s: %d, %v", name, got, err)
		}
	})
}

func TestAbslDuration(t *testing.T) {
	for _, c := range []struct {
		ns   int64
		want string
	}{
		{0, "0"}, {1, "1ns"}, {999, "999ns"}, {1000, "1us"}, {1500, "1.5us"}, {3_500_000, "3.5ms"},
		{999_999_999, "999.999999ms"}, {1e9, "1s"}, {1_500_000_000, "1.5s"}, {1_000_000_001, "1.000000001s"},
		{60e9, "1m"}, {3600e9, "1h"}, {3723_500_000_000, "1h2m3.5s"}, {-1_500_000, "-1.5ms"},
		{-9223372036854775808, "-2562047h47m16.854775808s"},
	} {
		if got := string(appendAbslDuration(nil, c.ns)); got != c.want {
			t.Errorf("appendAbslDuration(%d) = %q, want %q", c.ns, got, c.want)
		}
	}
}
