// Command envoystandin runs the test stand-in for Envoy (it is not Envoy):
// a compiled Proxy-Wasm filter hosted on wazero in front of one upstream,
// streaming access logs to an ALS receiver. `make demo` and manual tries
// use it where a real Envoy cannot be had.
//
//	go run ./test/envoystandin/cmd --wasm dist/meshtrail.wasm \
//	  --listen 127.0.0.1:15006 --upstream http://127.0.0.1:8080 --als 127.0.0.1:18000
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/meshtrail/meshtrail/test/envoystandin"
)

func main() {
	wasmPath := flag.String("wasm", "dist/meshtrail.wasm", "compiled Proxy-Wasm filter")
	config := flag.String("config", "{}", "filter configuration (JSON), or @file")
	listen := flag.String("listen", "127.0.0.1:15006", "HTTP listen address")
	upstream := flag.String("upstream", "", `upstream base URL (required); "echo" starts a built-in upstream that answers with the trace headers it received`)
	alsAddr := flag.String("als", "", "ALS receiver host:port (empty: no access log)")
	inbound := flag.Bool("inbound", true, "play the sidecar's inbound listener (reporter=destination)")
	names := flag.String("attribute-names", "xds", `names the local node and the listener direction are served under: "xds" (xds.node, xds.listener_direction: Envoy >= 1.33), "old" (node, listener_direction) or "both"`)
	pod := flag.String("pod", "reviews-v1-7f4c", "pod name in the node id")
	ns := flag.String("namespace", "default", "namespace")
	workload := flag.String("workload", "reviews-v1", "workload name")
	app := flag.String("app", "reviews", "app label")
	version := flag.String("version", "v1", "version label")
	ip := flag.String("ip", "10.1.0.7", "pod IP in the node id")
	fsKeys := flag.String("filter-state", "wasm.meshtrail_trace_id,wasm.meshtrail_span_id,wasm.meshtrail_parent_span_id,wasm.meshtrail_sampled,wasm.meshtrail_peer_principal,wasm.meshtrail_peer_workload,wasm.meshtrail_peer_namespace,wasm.meshtrail_peer_canonical_service",
		"filter_state_objects_to_log, comma separated")
	headers := flag.String("log-headers", "traceparent,tracestate,x-b3-traceid,x-b3-spanid,x-b3-parentspanid,x-b3-sampled", "additional_request_headers_to_log, comma separated")
	flag.Parse()
	an, err := envoystandin.ParseAttributeNames(*names)
	if err != nil {
		fmt.Fprintln(os.Stderr, "envoystandin:", err)
		os.Exit(2)
	}
	if err := run(*wasmPath, *config, *listen, *upstream, *alsAddr, *inbound, an, envoystandin.Node{
		IP: *ip, Pod: *pod, Namespace: *ns, Workload: *workload, ClusterID: "Kubernetes",
		Labels: map[string]string{"app": *app, "version": *version, "service.istio.io/canonical-name": *app, "service.istio.io/canonical-revision": *version},
	}, split(*fsKeys), split(*headers)); err != nil {
		fmt.Fprintln(os.Stderr, "envoystandin:", err)
		os.Exit(1)
	}
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func run(wasmPath, config, listen, upstream, alsAddr string, inbound bool, names envoystandin.AttributeNames, node envoystandin.Node, fsKeys, headers []string) error {
	if upstream == "" {
		return fmt.Errorf("--upstream is required")
	}
	if upstream == "echo" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: http.HandlerFunc(echo), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(l)
		defer srv.Close()
		upstream = "http://" + l.Addr().String()
	}
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		return err
	}
	if strings.HasPrefix(config, "@") {
		b, err := os.ReadFile(config[1:])
		if err != nil {
			return err
		}
		config = string(b)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cache, _ := os.UserCacheDir()
	host, err := envoystandin.NewHost(ctx, wasm, envoystandin.HostOptions{
		PluginConfig: []byte(config), Properties: node.Properties(), Names: names,
		CompilationCacheDir: cacheDir(cache),
	})
	if err != nil {
		return err
	}
	defer host.Close()
	cfg := envoystandin.ProxyConfig{
		Listen: listen, Upstream: upstream, Host: host, Inbound: inbound, UpstreamCluster: "inbound|http||",
		FilterStateObjectsToLog: fsKeys, AdditionalRequestHeadersToLog: headers,
	}
	if alsAddr != "" {
		c, err := envoystandin.DialALS(alsAddr, node.Proto(), "meshtrail")
		if err != nil {
			return err
		}
		defer c.Close()
		cfg.ALS = c
	}
	p, err := envoystandin.NewProxy(cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	fmt.Fprintf(os.Stderr, "envoystandin (a test stand-in for Envoy): %s -> %s, node %s\n", p.Addr(), upstream, node.ID())
	<-ctx.Done()
	return nil
}

// echo is the built-in upstream: it shows which trace context the filter
// propagated.
func echo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "upstream got %s %s\n", r.Method, r.URL.Path)
	for _, h := range []string{"traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled"} {
		if v := r.Header.Get(h); v != "" {
			fmt.Fprintf(w, "  %s: %s\n", h, v)
		}
	}
}

func cacheDir(base string) string {
	if base == "" {
		return ""
	}
	return base + "/meshtrail-wazero"
}
