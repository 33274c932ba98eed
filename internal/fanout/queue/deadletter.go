package queue

import (
	"fmt"
	"os"
	"sync"

	"github.com/meshtrail/meshtrail/internal/record"
)

// deadLetter appends records the backend rejected for good to an NDJSON
// file (one record.AppendJSON object a line), so they can be inspected
// and replayed by hand. The file is opened on first use.
type deadLetter struct {
	path string

	mu   sync.Mutex
	f    *os.File
	buf  []byte
	enc  record.Encoder
	seen int
}

// write appends recs and returns how many were written.
func (d *deadLetter) write(recs []*record.Record) (int, error) {
	if d.path == "" {
		return 0, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		f, err := os.OpenFile(d.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return 0, fmt.Errorf("dead letter: %w", err)
		}
		d.f = f
	}
	d.buf = d.buf[:0]
	for _, r := range recs {
		d.buf = append(d.enc.Append(d.buf, r), '\n')
	}
	if _, err := d.f.Write(d.buf); err != nil {
		return 0, fmt.Errorf("dead letter: %w", err)
	}
	return len(recs), nil
}

// sample says whether to log this give-up: the first ten, then every
// thousandth.
func (d *deadLetter) sample() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen++
	return d.seen <= 10 || d.seen%1000 == 0
}

func (d *deadLetter) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	return err
}
