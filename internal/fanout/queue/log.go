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
	// after the last ones read, and a token for Commit. The messages
	// belong to the caller: the queue's records keep pointing into them. No messages and
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
// nanoseconds, little endian) followed by the record: record.AppendBinary,
// whose first byte is its version. Logs written by releases before the
// binary form hold record.AppendJSON there instead, first byte '{'; they
// are still read, so an upgrade replays what the old release spilled.
const msgHeader = 8

func appendMessage(dst []byte, it *item) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, uint64(it.at))
	return record.AppendBinary(dst, it.rec)
}

func parseMessage(msg []byte) (item, error) {
	if len(msg) <= msgHeader {
		return item{}, fmt.Errorf("queue: spilled message of %d bytes", len(msg))
	}
	at := int64(binary.LittleEndian.Uint64(msg))
	body := msg[msgHeader:]
	if body[0] == '{' { // written before the binary form
		r, err := record.ParseJSON(body)
		if err != nil {
			return item{}, err
		}
		return item{rec: r, size: len(body), at: at}, nil
	}
	r, err := record.DecodeBinaryOwned(body) // body is this read's own buffer
	if err != nil {
		return item{}, err
	}
	// The frame carries the record's JSON size, so Size does not render it.
	return item{rec: r, size: r.Size(), at: at}, nil
}

func since(at int64, now time.Time) time.Duration { return now.Sub(time.Unix(0, at)) }
