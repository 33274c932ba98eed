package main

import (
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
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
		if got := filterStateName(in); got != want {
			t.Errorf("filterStateName(%q) = %q, want %q", in, got, want)
		}
	}
}
