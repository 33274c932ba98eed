// Command meshtrail is the mesh telemetry kit's one binary: each part of the
// product is a subcommand.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshtrail/meshtrail/injector"
	"github.com/meshtrail/meshtrail/internal/demo"
	"github.com/meshtrail/meshtrail/sidecar"
)

// command is one subcommand. run gets the arguments after the subcommand's
// name and returns the process exit code.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

// commands lists the subcommands in the order --help shows them.
var commands = []command{
	// Subcommands register here; see each package's Command function.
	{name: "demo", summary: "run the receiver on embedded defaults against a synthetic mesh and show the result", run: demo.Command},
	{name: "als", summary: "receive Envoy access logs (ALS gRPC) as trace-correlated records and RED metrics", run: alsCommand},
	{name: "inject", summary: "mutating admission webhook adding the log tail sidecar to pods with heavy log volume", run: injector.Command},
	{name: "tail", summary: "tail application log files through rotation and restarts, joined to traces (the sidecar and node agent)", run: sidecar.Command},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal starts a graceful shutdown, a second one
	// (an impatient Ctrl-C) ends the process at once.
	go func() { <-ctx.Done(); stop() }()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "meshtrail: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `meshtrail joins an Istio/Envoy mesh's metrics, traces, access logs and
application logs by trace id, and ships them to the backends you already run.

Usage:
  meshtrail <command> [flags]

Commands:`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, `
Run "meshtrail <command> --help" for a command's flags and examples.`)
}
