package als

import (
	"io"
	"log/slog"
	"strings"
)

// IstioSnippet is the meshConfig and Telemetry resource that send a mesh's
// access logs, with the trace headers and filter state the receiver
// correlates by, to a receiver at meshtrail-als.meshtrail:18000.
const IstioSnippet = `  # meshConfig (istioctl install / IstioOperator / istiod Helm values)
  extensionProviders:
  - name: meshtrail-als
    envoyHttpAls:
      service: meshtrail-als.meshtrail.svc.cluster.local
      port: 18000
      logName: meshtrail
      additionalRequestHeadersToLog: [traceparent, tracestate, b3, x-b3-traceid, x-b3-spanid, x-b3-parentspanid, x-b3-sampled, x-b3-flags, content-type]
      additionalResponseHeadersToLog: [grpc-status]
      additionalResponseTrailersToLog: [grpc-status]
      filterStateObjectsToLog: [wasm.meshtrail_trace_id, wasm.meshtrail_span_id, wasm.meshtrail_parent_span_id, wasm.meshtrail_sampled, upstream_peer, downstream_peer, io.istio.peer_principal, io.istio.local_principal]
  ---
  apiVersion: telemetry.istio.io/v1
  kind: Telemetry
  metadata: {name: meshtrail, namespace: istio-system}
  spec:
    accessLogging:
    - providers: [{name: meshtrail-als}]
`

// NewLogger returns a text logger at level (debug, info, warn, error).
func NewLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(strings.ToUpper(level)))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
