// Package sidecar is the log-tail agent, "meshtrail tail": the sidecar the
// injector adds to pods with heavy log volume, and the node DaemonSet
// reading every pod's container logs. It follows files through rotation
// (package tail), parses lines (package parse), joins them to traces, and
// hands them to a destination, checkpointing positions (package
// checkpoint) only after the destination accepted them.
package sidecar
