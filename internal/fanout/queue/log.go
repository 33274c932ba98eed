package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/meshtrail/meshtrail/internal/record"
)

// Log is the durable spill area behind a Queue: an ordered log of opaque
// messages with a committed read position. diskq.Log implements it on
// local segment files; a Kafka topic partition with a consumer group fits
// the same shape (Append = produce, Read = fetch, Commit = commit offset).
type Log interface {
	// Append adds msgs at the end, in order, all or nothing. It returns
	// an error wrapping ErrLogFull when the log's size cap is reached.
	Append(msgs [][]byte) error
	// Read returns up to maxMsgs messages (about maxBytes, at least one)
	// after the last ones read, and a token for Commit. No messages and
	// no error means nothing is left to read.
	Read(maxMsgs, maxBytes int) (msgs [][]byte, token uint64, err error)
	// Sync returns once every message appended so far is on stable
	// storage (fsynced, or acknowledged by the brokers), whatever the
	// log's own flush policy. ConsumeDurable waits for it.
	Sync() error
	// Commit marks a Read batch as delivered; batches may be committed
	// out of order. Uncommitted batches are read again after a restart.
	Commit(token uint64) error
	// DropOldest discards the oldest unread messages to make room and
	// says how many (0 when there is nothing to drop).
	DropOldest() (msgs, bytes int64, err error)
	// Unread reports whether Read would return messages.
	Unread() bool
	// Len is the messages and bytes not yet committed.
	Len() (msgs, bytes int64)
	// Close flushes and releases the log.
	Close() error
}

// ErrLogFull is what a Log's Append wraps when its size cap is reached.
// diskq.ErrFull is matched too.
var ErrLogFull = errors.New("queue: log full")

// A spilled record is a message of 8 bytes of enqueue time (Unix
// nanoseconds, little endian) followed by record.AppendJSON.
const msgHeader = 8

func appendMessage(dst []byte, it *item) []byte {
	return appendMessageWith(dst, it, nil)
}

// appendMessageWith is appendMessage rendering with enc (nil: no caching).
func appendMessageWith(dst []byte, it *item, enc *record.Encoder) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, uint64(it.at))
	return enc.Append(dst, it.rec)
}

func parseMessage(msg []byte) (item, error) {
	if len(msg) < msgHeader {
		return item{}, fmt.Errorf("queue: spilled message of %d bytes", len(msg))
	}
	r, err := record.ParseJSON(msg[msgHeader:])
	if err != nil {
		return item{}, err
	}
	return item{rec: r, size: len(msg) - msgHeader, at: int64(binary.LittleEndian.Uint64(msg))}, nil
}

func since(at int64, now time.Time) time.Duration { return now.Sub(time.Unix(0, at)) }
