package als

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshtrail/meshtrail/internal/loglimit"
	"github.com/meshtrail/meshtrail/internal/record"
	"github.com/meshtrail/meshtrail/internal/tracecontext"
)

// Receiver implements the AccessLogService. Every stream's records go to
// one record.Consumer.
type Receiver struct {
	consumer   record.Consumer
	conv       *converter
	metrics    *receiverMetrics
	log        *slog.Logger
	logLimit   *loglimit.Limiter
	maxStreams int64
	maxAge     time.Duration
	streams    atomic.Int64
	draining   atomic.Bool // set by Drain (streamend.go)
	now        func() time.Time
	bufs       messageBuffers // receive buffers, handed out by wireCodec
}

// ReceiverOptions configure a Receiver.
type ReceiverOptions struct {
	// MaxStreams bounds concurrent streams; 0 means no bound.
	MaxStreams int
	// AllowSensitiveHeaders are headers kept even though they carry
	// credentials (Authorization, Cookie, ...): empty by default.
	AllowSensitiveHeaders []string
	// RedactHeaders are dropped in addition to the sensitive ones.
	RedactHeaders []string
	// MaxHeaderBytes cuts longer header values; 0 keeps them whole.
	MaxHeaderBytes int
	// TraceOrder is the precedence of the trace header formats; nil means
	// tracecontext.DefaultOrder.
	TraceOrder []tracecontext.Format
	// MaxStreamAge ends a stream (status OK) after its next message once
	// its connection is this old; 0 never. Envoy never ends its stream, so
	// without it the connection's max age could only cut it, losing what
	// is in flight.
	MaxStreamAge time.Duration
}

// NewReceiver returns a Receiver handing records to consumer. Its metrics
// are registered with reg.
func NewReceiver(consumer record.Consumer, opts ReceiverOptions, reg prometheus.Registerer, logger *slog.Logger) *Receiver {
	return &Receiver{
		consumer:   consumer,
		conv:       newConverter(opts.AllowSensitiveHeaders, opts.RedactHeaders, opts.MaxHeaderBytes).withTraceOrder(opts.TraceOrder),
		metrics:    newReceiverMetrics(reg),
		log:        logger,
		logLimit:   loglimit.New(10 * time.Second),
		maxStreams: int64(opts.MaxStreams),
		maxAge:     opts.MaxStreamAge,
		now:        time.Now,
	}
}

// serveStream serves one Envoy's stream until it ends. Envoy ignores the
// response message a closed stream gets (closeStream).
func (r *Receiver) serveStream(stream grpc.ServerStream) error {
	if n := r.streams.Add(1); r.maxStreams > 0 && n > r.maxStreams {
		r.streams.Add(-1)
		r.metrics.streamErrors.WithLabelValues("too_many_streams").Inc()
		r.logf("too_many_streams", "ALS stream refused: max_streams reached; raise it or add replicas", "peer", peerAddr(stream.Context()), "limit", r.maxStreams)
		return status.Errorf(codes.ResourceExhausted, "meshtrail: %d streams open, the limit is %d; retry against another replica", n-1, r.maxStreams)
	}
	r.metrics.streamsOpen.Inc()
	r.metrics.streamsTotal.Inc()
	defer func() {
		r.streams.Add(-1)
		r.metrics.streamsOpen.Dec()
	}()

	ctx := stream.Context()
	opened := connectionStart(ctx)
	from := peerAddr(ctx)
	var (
		px    *proxy
		chunk recordChunk
		msg   wireMessage
		raw   []byte
		dec   = newWireDecoder(r.conv)
		// ending is set once the stream is to end (shutdown, max age): the
		// messages already sent are read from it, then the stream ends.
		ending *readAhead
	)
	for {
		var err error
		if ending == nil {
			err = stream.RecvMsg(&raw)
		} else {
			m, more := ending.next()
			if !more {
				return closeStream(stream)
			}
			raw, err = m.raw, m.err
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return closeStream(stream)
			}
			// A message over the size limit ends only this stream. gRPC may
			// already have cancelled the stream for it, so this is checked
			// before the context.
			if status.Code(err) == codes.ResourceExhausted {
				r.metrics.streamErrors.WithLabelValues("message_too_large").Inc()
				r.logf("message_too_large", "ALS stream ended: message over grpc.max_recv_message_bytes", "node", nodeName(px), "peer", from, "reason", "message_too_large", "error", err)
				return err
			}
			if status.Code(err) == codes.Canceled || ctx.Err() != nil {
				return nil
			}
			r.metrics.streamErrors.WithLabelValues("receive_error").Inc()
			r.logf("receive_error", "ALS stream ended by a transport error", "node", nodeName(px), "peer", from, "error", err)
			return err
		}
		start := time.Now()
		r.metrics.messages.Inc()
		r.metrics.bytes.Add(float64(len(raw)))
		if err := splitMessage(raw, &msg); err != nil {
			r.metrics.streamErrors.WithLabelValues("malformed_message").Inc()
			r.logf("malformed_message", "ALS stream ended by a malformed message", "node", nodeName(px), "peer", from, "reason", "malformed_message", "error", err)
			return status.Errorf(codes.InvalidArgument, "meshtrail: %v", err)
		}
		if px == nil {
			if msg.identifier == nil {
				r.metrics.streamErrors.WithLabelValues("missing_identifier").Inc()
				r.logf("missing_identifier", "ALS stream rejected: its first message has no identifier (node, log_name), which Envoy always sends first",
					"peer", from)
				return status.Error(codes.InvalidArgument, "meshtrail: the first StreamAccessLogsMessage of a stream must carry identifier (node and log_name)")
			}
			f, repairs, err := decodeIdentifier(msg.identifier)
			if err != nil {
				r.metrics.streamErrors.WithLabelValues("malformed_message").Inc()
				r.logf("malformed_message", "ALS stream rejected: its identifier does not decode", "peer", from, "reason", "malformed_message", "error", err)
				return status.Errorf(codes.InvalidArgument, "meshtrail: %v", err)
			}
			p := proxyFrom(f)
			px = &p
			for _, rp := range repairs {
				r.metrics.identifierRepaired.WithLabelValues(rp.field, rp.reason).Inc()
				r.logf("identifier_"+rp.reason, "ALS stream identifier repaired: a field was cut to its documented size or held invalid UTF-8 (replaced by U+FFFD); the stream goes on",
					"node", px.node.ID, "peer", from, "field", rp.field, "reason", rp.reason)
			}
			r.log.Debug("ALS stream opened", "node", px.node.ID, "log_name", px.node.LogName, "peer", from)
		}
		// Envoy may repeat the identifier; the first one stays.

		repairedBefore := dec.repaired
		r.convertMessage(ctx, px, dec, &msg, &chunk)
		if dec.repaired > repairedBefore {
			r.metrics.repairedMessages.Add(1)
			r.logf("invalid_utf8", "invalid UTF-8 in an access log entry was replaced by U+FFFD", "node", px.node.ID)
		}
		r.metrics.processing.Observe(time.Since(start).Seconds())
		r.bufs.put(raw)
		raw = nil
		if ending != nil {
			continue
		}
		if r.draining.Load() {
			// Shutting down: Envoy never ends its stream, so end it here,
			// after what it has already sent; Envoy opens a new one at
			// its next flush, to another replica (the listener is closed).
			ending = startReadAhead(stream)
		} else if r.maxAge > 0 && start.Sub(opened) > r.maxAge {
			// Its connection got a GOAWAY at its max age: end the stream
			// before the connection is cut, so Envoy reopens it on a new
			// connection instead of losing what is in flight at the cut.
			r.metrics.streamsAged.Inc()
			ending = startReadAhead(stream)
		}
	}
}

// Records are handed on in chunks of at most chunkRecords records or
// chunkBytes of their entries: a message's entries are not all converted
// before the first is handed on, so a message of half a million tiny
// entries costs one chunk of records at a time, not half a million
// (README.md, "Bad input").
const (
	chunkRecords = 256
	chunkBytes   = 256 << 10
)

// recordChunk is a stream's records on their way to the consumer, reused
// from one chunk to the next.
type recordChunk struct {
	records   []*record.Record
	bytes     int // of the entries they came from
	http, tcp int // converted, by kind
	notes     entryNotes
}

// convertMessage converts msg's entries and hands them to the consumer,
// chunk by chunk.
func (r *Receiver) convertMessage(ctx context.Context, px *proxy, dec *wireDecoder, msg *wireMessage, c *recordChunk) {
	if msg.http > 0 {
		r.metrics.received.WithLabelValues("http").Add(float64(msg.http))
	}
	if msg.tcp > 0 {
		r.metrics.received.WithLabelValues("tcp").Add(float64(msg.tcp))
	}
	now := r.now()
	i := 0
	msg.each(func(tcp bool, e []byte) bool {
		c.notes = entryNotes{invalidTrace: c.notes.invalidTrace[:0]}
		var rec *record.Record
		var err error
		if tcp {
			rec, err = dec.tcp(px, e, now, &c.notes)
		} else {
			rec, err = dec.http(px, e, now, &c.notes)
		}
		r.account(px, i, err, &c.notes)
		i++
		if err == nil {
			c.records = append(c.records, rec)
			c.bytes += len(e)
			if tcp {
				c.tcp++
			} else {
				c.http++
			}
			if len(c.records) >= chunkRecords || c.bytes >= chunkBytes {
				r.handOn(ctx, px, c)
			}
		}
		return true
	})
	r.handOn(ctx, px, c)
}

// handOn gives the chunk's records to the consumer and empties it.
func (r *Receiver) handOn(ctx context.Context, px *proxy, c *recordChunk) {
	if c.http > 0 {
		r.metrics.converted.WithLabelValues("http").Add(float64(c.http))
	}
	if c.tcp > 0 {
		r.metrics.converted.WithLabelValues("tcp").Add(float64(c.tcp))
	}
	if len(c.records) > 0 {
		if err := r.consumer.ConsumeRecords(ctx, c.records); err != nil {
			r.metrics.sinkErrors.Inc()
			r.logf("sink_error", "a sink refused records", "node", px.node.ID, "records", len(c.records), "error", err)
		}
	}
	clear(c.records) // the records belong to the consumer now
	c.records, c.bytes, c.http, c.tcp = c.records[:0], 0, 0, 0
}

// account counts and logs what was wrong with entry i, if anything.
func (r *Receiver) account(px *proxy, i int, err error, notes *entryNotes) {
	if err != nil {
		reason, msg := entryError(err)
		r.metrics.rejected.WithLabelValues(reason).Inc()
		r.logf(reason, "access log entry dropped", "node", px.node.ID, "entry", i, "reason", reason, "error", msg)
		return
	}
	for _, it := range notes.invalidTrace {
		r.metrics.invalidTrace.WithLabelValues(it.format, it.reason).Inc()
		r.logf("invalid_trace_"+it.format, "invalid trace header: the record has no trace id from it",
			"node", px.node.ID, "entry", i, "format", it.format, "error", it.err)
	}
	if notes.redacted > 0 {
		r.metrics.redacted.Add(float64(notes.redacted))
	}
	if notes.truncated > 0 {
		r.metrics.truncated.Add(float64(notes.truncated))
		r.logf("header_truncated", "header value longer than max_header_bytes was cut", "node", px.node.ID, "entry", i)
	}
	for _, k := range notes.badFilterState {
		r.metrics.rejected.WithLabelValues("bad_filter_state").Inc()
		r.logf("bad_filter_state", "filter state object could not be decoded; the entry is kept without it", "node", px.node.ID, "entry", i, "key", k)
	}
}

// logf logs a warning about bad input, at most once per reason every 10 s.
func (r *Receiver) logf(reason, msg string, args ...any) {
	r.logLimit.Log(r.log, slog.LevelWarn, reason, msg, args...)
}

// peerAddr is the address of a stream's client, for log lines.
func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok {
		return p.Addr.String()
	}
	return "unknown peer"
}

func nodeName(px *proxy) string {
	if px == nil {
		return "(before identifier)"
	}
	return px.node.ID
}
