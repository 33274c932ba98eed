// Package queue is the pipeline between the fan-out and one backend
// exporter: a bounded, disk-backed queue with its own workers, so that a
// slow or dead backend never blocks the sources or the other sinks.
//
//	fanout -> Queue.ConsumeRecords -> memory ──(full)──> disk (Log)
//	                                      \               /
//	                                       workers: batch -> rate limit -> Export
//	                                                 retry with backoff, split poison, dead-letter
//
// A *Queue is a fanout.Sink. ConsumeRecords only enqueues: into memory
// while there is room and the disk holds nothing undelivered, otherwise
// onto the disk log (the memory backlog moves there too, so during an
// outage almost everything is durable; memory takes records again only
// when the disk is full and nothing on it waits unread). Only when the disk cap is hit as well does the
// overflow policy apply (drop_newest, drop_oldest, or block for a bounded
// time), and every record it discards is counted in
// meshtrail_sink_dropped_total{reason}.
//
// ConsumeDurable is the acknowledged form for sources that keep a
// checkpoint: it returns nil only once the queue holds the batch (on a
// disk log, appended and synced), and instead of dropping it returns an
// error wrapping ErrFull, so the source offers the batch again.
//
// Delivery is at least once. Order: records leave in the order they were
// accepted (memory first, then the disk backlog, which is read in append
// order); with workers: 1 they also arrive in that order, retries
// included. With more workers, batches are sent concurrently. A Shutdown
// during an outage appends the records still in memory after the disk
// backlog, so order across such a shutdown is not kept.
//
// Failures follow the fanout.Exporter contract: a retryable error retries
// the whole batch after capped, fully jittered exponential backoff, for
// ever unless retry.max_elapsed says otherwise; a *fanout.PartialError
// retries only its Retry records; a fanout.Permanent error splits the
// batch in halves, recursively, until the poison records are alone, and
// those go to the dead-letter file (NDJSON, one record.AppendJSON object a
// line) while the rest is delivered.
//
// The disk spill sits behind the Log interface (append, read in order,
// commit), implemented on local segment files by package diskq. A later
// backend can put a distributed log such as Kafka in its place: Append is
// produce, Read is fetch, Commit is an offset commit. See NewWithLog.
package queue
