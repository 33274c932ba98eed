package injector

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"
)

const help = `meshtrail inject: the mutating admission webhook that adds the log tail
sidecar to pods whose declared log volume is too heavy for the node DaemonSet.

Usage:
  meshtrail inject --listen HOST:PORT --tls-cert FILE --tls-key FILE [--config FILE] [flags]
  meshtrail inject --print-webhook --ca-bundle FILE (--service NS/NAME[:PORT] | --url URL)

It serves AdmissionReview v1 at https://HOST:PORT/inject, /healthz and /readyz
on the same port, and Prometheus metrics at http://METRICS/metrics.

Pods are selected like Istio's: namespace label meshtrail-injection=enabled,
or pod label meshtrail.io/inject=true; "false" (label or annotation) wins.
A selected pod declares its log volume and files:

  metadata:
    annotations:
      meshtrail.io/log-volume: 20MiB/s
      meshtrail.io/log-paths: /var/log/app/*.log

At or over --threshold it gets the meshtrail-tail sidecar; under it the node
DaemonSet reads it. The decision is written to meshtrail.io/injection-status.
All annotations: injector/README.md.

Examples:
  # Serve with a cert-manager certificate (reloaded when it rotates):
  meshtrail inject --listen :8443 --tls-cert /tls/tls.crt --tls-key /tls/tls.key

  # Settings in a file, one overridden by a flag:
  meshtrail inject --config /etc/meshtrail/inject.yaml --threshold 10MiB/s

  # Print the MutatingWebhookConfiguration for kubectl apply:
  meshtrail inject --print-webhook --ca-bundle ca.crt --service meshtrail/meshtrail-injector

Flags (override the --config file):
`

// Command is `meshtrail inject`.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("meshtrail inject", flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout) // asked for: help is output, not an error
		}
	}
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), help)
		fs.PrintDefaults()
	}
	def := DefaultConfig()
	var (
		configFile = fs.String("config", "", "YAML `file` with the settings (field names in injector/README.md)")
		listen     = fs.String("listen", def.Listen, "`HOST:PORT` serving /inject, /healthz, /readyz over HTTPS")
		cert       = fs.String("tls-cert", "", "serving certificate PEM `file` (re-read when it changes)")
		key        = fs.String("tls-key", "", "serving key PEM `file` (re-read when it changes)")
		metrics    = fs.String("metrics-listen", def.MetricsListen, "`HOST:PORT` for Prometheus /metrics over HTTP; empty disables")
		threshold  = fs.String("threshold", def.Threshold, "log `volume` at or over which a pod gets a sidecar, e.g. 5MiB/s")
		mode       = fs.String("mode", string(def.Mode), "sidecar `mode`: native (init container, restartPolicy Always), regular, or auto by server version")
		kubeVer    = fs.String("kubernetes-version", "", "cluster `version` (e.g. 1.33) deciding auto mode without asking the API server")
		image      = fs.String("image", def.Sidecar.Image, "sidecar `image`")
		strict     = fs.Bool("strict", false, "deny pods whose meshtrail annotations cannot be honoured (default: admit without sidecar, with a warning)")
		delay      = fs.Duration("shutdown-delay", def.ShutdownDelay.Duration, "on SIGTERM, keep answering with /readyz failing for this `duration` before closing")
		logLevel   = fs.String("log-level", "info", "`level`: debug, info, warn, error")

		printHook = fs.Bool("print-webhook", false, "print the MutatingWebhookConfiguration YAML and exit")
		caBundle  = fs.String("ca-bundle", "", "with --print-webhook: CA PEM `file` the serving certificate chains to")
		service   = fs.String("service", "", "with --print-webhook: `NS/NAME[:PORT]` of the injector's Service")
		url       = fs.String("url", "", "with --print-webhook: webhook `URL` (instead of --service)")
		failure   = fs.String("failure-policy", "Ignore", "with --print-webhook: `Ignore` or Fail when the injector is unreachable")
	)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "meshtrail inject: unexpected argument %q\n", fs.Arg(0))
		return 2
	}

	cfg := def
	if *configFile != "" {
		var err error
		if cfg, err = LoadConfig(*configFile); err != nil {
			fmt.Fprintln(stderr, "meshtrail inject:", err)
			return 2
		}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			cfg.Listen = *listen
		case "tls-cert":
			cfg.TLSCert = *cert
		case "tls-key":
			cfg.TLSKey = *key
		case "metrics-listen":
			cfg.MetricsListen = *metrics
		case "threshold":
			cfg.Threshold = *threshold
		case "mode":
			cfg.Mode = SidecarMode(*mode)
		case "kubernetes-version":
			cfg.KubernetesVersion = *kubeVer
		case "image":
			cfg.Sidecar.Image = *image
		case "strict":
			cfg.Strict = *strict
		case "shutdown-delay":
			cfg.ShutdownDelay.Duration = *delay
		}
	})

	if *printHook {
		return printWebhook(stdout, stderr, cfg, *caBundle, *service, *url, *failure)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "meshtrail inject: --log-level: %v\n", err)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "meshtrail inject: invalid configuration:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := Run(ctx, cfg, reg, InClusterVersion, log); err != nil {
		log.Error("injector stopped", "err", err)
		return 1
	}
	return 0
}

func printWebhook(stdout, stderr io.Writer, cfg Config, caFile, service, url, failure string) int {
	o := WebhookOptions{SystemNamespaces: cfg.SystemNamespaces, URL: url,
		FailurePolicy: admissionregistrationv1.FailurePolicyType(failure)}
	if o.FailurePolicy != admissionregistrationv1.Ignore && o.FailurePolicy != admissionregistrationv1.Fail {
		fmt.Fprintf(stderr, "meshtrail inject: --failure-policy %q: want Ignore or Fail\n", failure)
		return 2
	}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			fmt.Fprintln(stderr, "meshtrail inject:", err)
			return 2
		}
		o.CABundle = b
	}
	if url == "" {
		nsName, port, _ := strings.Cut(service, ":")
		ns, name, ok := strings.Cut(nsName, "/")
		if !ok || ns == "" || name == "" {
			fmt.Fprintln(stderr, "meshtrail inject: --print-webhook needs --service NS/NAME[:PORT] or --url URL")
			return 2
		}
		o.ServiceNamespace, o.ServiceName = ns, name
		if port != "" {
			var p int32
			if _, err := fmt.Sscanf(port, "%d", &p); err != nil || p <= 0 || p > 65535 {
				fmt.Fprintf(stderr, "meshtrail inject: --service port %q\n", port)
				return 2
			}
			o.ServicePort = p
		}
	}
	b, err := yaml.Marshal(WebhookConfiguration(o))
	if err != nil {
		fmt.Fprintln(stderr, "meshtrail inject:", err)
		return 1
	}
	_, _ = stdout.Write(b)
	return 0
}
