//lint:file-ignore SA1019 the classic (v1) dashboard model is what Grafana's dashboard sidecar provisions; v2 needs Grafana 12 with a feature flag

// Command dashboards writes meshtrail's Grafana dashboards, written as code
// with Grafana's grafana-foundation-sdk, as JSON into the chart
// (`make dashboards`: charts/meshtrail/dashboards/*.json, each shipped as a
// ConfigMap for Grafana's dashboard sidecar). test/chart fails when the
// files are stale, validates them against @grafana/schema, parses every
// PromQL expression and runs it against a Prometheus scraping meshtrail.
//
// Queries use Grafana's variables: ${prefix} is the RED metric prefix
// (meshtrail_, or istio_ where meshtrail feeds Kiali), $__rate_interval the
// scrape-aware rate window.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/logs"
	"github.com/grafana/grafana-foundation-sdk/go/loki"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

func main() {
	out := flag.String("out", "charts/meshtrail/dashboards", "directory for the JSON files")
	flag.Parse()
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "dashboards:", err)
		os.Exit(1)
	}
}

func write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for file, b := range map[string]*dashboard.DashboardBuilder{
		"mesh-red.json":         meshRED(),
		"meshtrail-health.json": health(),
		"meshtrail-logs.json":   logsDashboard(),
	} {
		d, err := b.Build()
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		// The SDK (v0.0.22) gives every variable the interval variable's
		// auto, auto_min and auto_count; Grafana's dashboard schema
		// (@grafana/schema 13) has them on no variable: leave them out.
		for i := range d.Templating.List {
			v := &d.Templating.List[i]
			v.Auto, v.AutoMin, v.AutoCount = nil, nil, nil
		}
		j, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), append(j, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

var (
	promDS = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}
	lokiDS = common.DataSourceRef{Type: cog.ToPtr("loki"), Uid: cog.ToPtr("${loki}")}
)

func base(uid, title, description string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{"meshtrail", "istio"}).
		Refresh("30s").
		Time("now-1h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Prometheus").Type("prometheus"))
}

func query(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Datasource(promDS).Expr(expr).LegendFormat(legend)
}

func series(title, unit, description string, targets ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Title(title).Description(description).Unit(unit).
		Datasource(promDS).Height(8).Span(12).Min(0)
	for _, t := range targets {
		p.WithTarget(t)
	}
	return p
}

// Mesh RED: the edges from Istio's (or meshtrail's) RED series, with
// exemplars carrying trace ids (the Prometheus data source's
// exemplarTraceIdDestinations turns them into links to Jaeger), and the
// trail of one request from Loki.
func meshRED() *dashboard.DashboardBuilder {
	const sel = `reporter="$reporter", destination_workload_namespace=~"$namespace"`
	edge := "source_workload_namespace, source_workload, destination_service_name"
	rate := func(extra string) string {
		return fmt.Sprintf(`sum by (%s) (rate(${prefix}requests_total{%s%s}[$__rate_interval]))`, edge, sel, extra)
	}
	quantile := func(q string) *prometheus.DataqueryBuilder {
		return query(fmt.Sprintf(`histogram_quantile(%s, sum by (le, %s) (rate(${prefix}request_duration_milliseconds_bucket{%s}[$__rate_interval])))`, q, edge, sel),
			"p"+q[2:]+" {{source_workload}} → {{destination_service_name}}").Exemplar(true)
	}
	return base("meshtrail-mesh-red", "meshtrail / Mesh RED",
		"Requests, errors and latency per service edge from the access logs, with exemplars linking to the trace; a request's trail from Loki.").
		WithVariable(dashboard.NewDatasourceVariableBuilder("loki").Label("Loki").Type("loki")).
		WithVariable(dashboard.NewCustomVariableBuilder("prefix").Label("Metric prefix").
			Values(dashboard.StringOrMap{String: cog.ToPtr("meshtrail_,istio_")}).
			Current(option("meshtrail_"))).
		WithVariable(dashboard.NewCustomVariableBuilder("reporter").Label("Reporter").
			Values(dashboard.StringOrMap{String: cog.ToPtr("destination,source,waypoint")}).
			Current(option("destination"))).
		WithVariable(dashboard.NewQueryVariableBuilder("namespace").Label("Namespace").
			Datasource(promDS).
			Query(dashboard.StringOrMap{String: cog.ToPtr(`label_values(${prefix}requests_total, destination_workload_namespace)`)}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Multi(true).IncludeAll(true).AllValue(".*")).
		WithVariable(dashboard.NewTextBoxVariableBuilder("trace_id").Label("Trace id")).
		WithRow(dashboard.NewRowBuilder("Service edges")).
		WithPanel(series("Requests per second", "reqps", "Per edge: the calling workload and the destination service.",
			query(rate(""), "{{source_workload}} → {{destination_service_name}}"))).
		// Failures from the caller's side (reporter="source"): a request that
		// never reached the callee (503 UF, URX) has no destination record.
		WithPanel(series("Success ratio (non-5xx), caller's view", "percentunit",
			"Share of each edge's requests not answered 5xx, as the calling proxy saw them (including requests that never reached the callee).",
			query(fmt.Sprintf(`%s / %s`, callerRate(edge, `, response_code!~"5.."`), callerRate(edge, "")), "{{source_workload}} → {{destination_service_name}}"))).
		WithPanel(series("Errors by code and flags, caller's view", "reqps", "Failed requests (5xx, and 0: reset before a response) by response code and Envoy response flags.",
			query(`sum by (destination_service_name, response_code, response_flags) (rate(${prefix}requests_total{reporter="source", destination_service_namespace=~"$namespace", response_code=~"5..|0"}[$__rate_interval]))`,
				"{{destination_service_name}} {{response_code}} {{response_flags}}"))).
		WithPanel(series("Latency p50 / p90 / p99", "ms", "Request duration quantiles per edge; exemplar dots link to the trace.",
			quantile("0.50"), quantile("0.90"), quantile("0.99"))).
		WithRow(dashboard.NewRowBuilder("A request's trail")).
		WithPanel(logs.NewPanelBuilder().Title("Trail of trace $trace_id").
			Description("Every proxy record and application log line carrying the trace id (trace_id is structured metadata in Loki).").
			Datasource(lokiDS).Height(12).Span(24).
			ShowTime(true).WrapLogMessage(true).SortOrder(common.LogsSortOrderAscending).
			WithTarget(loki.NewDataqueryBuilder().Datasource(lokiDS).
				Expr(`{namespace=~".+"} | trace_id="$trace_id"`)))
}

// callerRate is an edge's request rate as the calling proxies report it.
func callerRate(by, extra string) string {
	return fmt.Sprintf(`sum by (%s) (rate(${prefix}requests_total{reporter="source", destination_service_namespace=~"$namespace"%s}[$__rate_interval]))`, by, extra)
}

// meshtrail's own health: the receiver's streams and entries, the sinks'
// queues, retries and drops.
func health() *dashboard.DashboardBuilder {
	return base("meshtrail-health", "meshtrail / Health",
		"The receiver and its sinks: ALS streams, entries, rejections, queues in memory and on disk, oldest record, retries, drops, TLS handshake errors.").
		WithRow(dashboard.NewRowBuilder("Receiver")).
		WithPanel(stat.NewPanelBuilder().Title("ALS streams open").Datasource(promDS).Height(4).Span(6).
			WithTarget(query(`sum(meshtrail_als_streams_open)`, "streams"))).
		WithPanel(stat.NewPanelBuilder().Title("Entries per second").Datasource(promDS).Unit("ops").Height(4).Span(6).
			WithTarget(query(`sum(rate(meshtrail_als_entries_received_total[$__rate_interval]))`, "entries/s"))).
		WithPanel(stat.NewPanelBuilder().Title("TLS handshake errors per second").Datasource(promDS).Unit("ops").Height(4).Span(6).
			WithTarget(query(`sum(rate(meshtrail_als_tls_handshake_errors_total[$__rate_interval]))`, "errors/s"))).
		WithPanel(stat.NewPanelBuilder().Title("Oldest record waiting").Datasource(promDS).Unit("s").Height(4).Span(6).
			WithTarget(query(`max(meshtrail_sink_oldest_record_age_seconds)`, "oldest"))).
		WithPanel(series("Entries received and converted", "ops", "Entries per second from Envoy, and the records made of them.",
			query(`sum(rate(meshtrail_als_entries_received_total[$__rate_interval]))`, "received"),
			query(`sum(rate(meshtrail_als_entries_converted_total[$__rate_interval]))`, "converted"))).
		WithPanel(series("Rejected entries by reason", "ops", "Invalid entries dropped, by reason (the receiver logs the stream's node).",
			query(`sum by (reason) (rate(meshtrail_als_entries_rejected_total[$__rate_interval]))`, "{{reason}}"))).
		WithRow(dashboard.NewRowBuilder("Sinks")).
		WithPanel(series("Queue depth", "short", "Records queued per sink, in memory and on disk (in flight included).",
			query(`sum by (sink, where) (meshtrail_sink_queue_records)`, "{{sink}} {{where}}"))).
		WithPanel(series("Oldest record age", "s", "Age of the oldest record not yet sent, per sink: how far behind the backend is.",
			query(`max by (sink) (meshtrail_sink_oldest_record_age_seconds)`, "{{sink}}"))).
		WithPanel(series("Retries", "ops", "Records sent again after a failed attempt, per sink.",
			query(`sum by (sink) (rate(meshtrail_sink_records_retried_total[$__rate_interval]))`, "{{sink}}"))).
		WithPanel(series("Drops", "ops", "Records discarded, per sink and reason.",
			query(`sum by (sink, reason) (rate(meshtrail_sink_dropped_total[$__rate_interval]))`, "{{sink}} {{reason}}"))).
		WithPanel(series("Sent", "ops", "Records each backend accepted.",
			query(`sum by (sink) (rate(meshtrail_sink_records_sent_total[$__rate_interval]))`, "{{sink}}")))
}

// Logs: what the tail agents read. The node agent's bytes per pod against
// the injector's sidecar threshold shows which pods should get a sidecar.
func logsDashboard() *dashboard.DashboardBuilder {
	return base("meshtrail-logs", "meshtrail / Logs",
		"The tail agents: lag and bytes per pod, the node agent's volume per pod against the sidecar threshold, checkpoint age.").
		WithVariable(dashboard.NewCustomVariableBuilder("threshold").Label("Sidecar threshold (bytes/s)").
			Values(dashboard.StringOrMap{String: cog.ToPtr("5242880")}).Current(option("5242880"))).
		WithPanel(series("Which pods should get a sidecar", "Bps",
			"Bytes per second the node agent reads per pod, against the injector's threshold: pods above it belong on a sidecar (meshtrail.io/log-volume).",
			query(`topk(20, sum by (namespace, pod) (rate(meshtrail_tail_read_bytes_total{mode="node"}[$__rate_interval])))`, "{{namespace}}/{{pod}}"),
			query(`vector($threshold)`, "sidecar threshold"))).
		WithPanel(series("Bytes per second per pod", "Bps", "Read by the sidecars and the node agent.",
			query(`sum by (namespace, pod, mode) (rate(meshtrail_tail_read_bytes_total[$__rate_interval]))`, "{{namespace}}/{{pod}} ({{mode}})"))).
		WithPanel(series("Tail lag per pod", "bytes", "Bytes written to the pod's files and not read yet.",
			query(`max by (namespace, pod) (meshtrail_tail_lag_bytes)`, "{{namespace}}/{{pod}}"))).
		WithPanel(series("Checkpoint age", "s", "Time since each agent last committed its read positions.",
			query(`max by (namespace, pod) (meshtrail_tail_checkpoint_age_seconds)`, "{{namespace}}/{{pod}}")))
}

func option(v string) dashboard.VariableOption {
	return dashboard.VariableOption{
		Text:  dashboard.StringOrArrayOfString{String: cog.ToPtr(v)},
		Value: dashboard.StringOrArrayOfString{String: cog.ToPtr(v)},
	}
}
