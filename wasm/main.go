// Command wasm is meshtrail's Proxy-Wasm HTTP filter for Envoy (Istio
// sidecars and gateways), built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o meshtrail.wasm ./wasm
//
// For every request it
//   - continues or starts the trace: reads W3C traceparent/tracestate and
//     B3 (single and multi header), writes the configured formats upstream
//     with a fresh span id whose parent is the inbound span;
//   - records Istio's standard request metrics (istio_requests_total,
//     istio_request_duration_milliseconds, istio_request_bytes,
//     istio_response_bytes) with Istio's labels encoded in the stat name;
//   - stores trace ids, peer identity and configured headers/attributes in
//     filter state (wasm.meshtrail_*) for Envoy's gRPC access log.
//
// The configuration is validated at start (an invalid one is refused); at
// run time a failure never breaks a request: it passes untouched and
// meshtrail_filter_errors_total goes up. See README.md for the
// configuration, the filter-state contract and the Istio snippets.
package main

import "github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

func init() {
	// The SDK's one entry point: the VM context is the only global.
	proxywasm.SetVMContext(&vmContext{})
}

// main is required by -buildmode=c-shared but never does anything: Envoy
// drives the module through its exported proxy_on_* functions.
func main() {}
