// Package als is meshtrail's Envoy Access Log Service receiver: a gRPC
// server for envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs
// that turns every HTTP and TCP access log entry into a record.Record,
// correlated by trace id, and hands the records to a record.Consumer (the
// fan-out to sinks).
//
// One Envoy keeps one long-lived stream open and sends its identifier (node
// and log name) only in the stream's first message; the receiver keeps it
// per stream. Each stream is processed synchronously (receive, convert,
// consume, receive), so gRPC flow control pushes back on a client that
// sends faster than the sinks take: there is no unbounded queue.
package als
