package sidecar

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/meshtrail/meshtrail/internal/record"
)

// ndjsonOut is --out: records as NDJSON, one per line. With a file, its
// length is checkpointed together with the read offsets and a restart
// truncates it back to that length, so what it holds is exactly the lines
// before the checkpointed offsets: a crash at any moment gives neither a
// lost nor a repeated line.
type ndjsonOut struct {
	w    io.Writer
	f    *os.File // nil for stdout
	off  int64
	enc  record.Encoder
	buf  []byte
	path string
}

// openOut opens path ("-": stdout) and cuts it to resumeAt (the
// checkpoint's Output; -1 when there is none).
func openOut(path string, resumeAt int64, stdout io.Writer) (*ndjsonOut, int64, error) {
	if path == "-" {
		return &ndjsonOut{w: stdout, path: path}, 0, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, 0, fmt.Errorf("out: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("out: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("out: %s is not a regular file", path)
	}
	size := fi.Size()
	var cut int64 // how many bytes written after the checkpoint were cut
	switch {
	case resumeAt < 0:
		// No checkpoint: append to what is there.
	case size > resumeAt:
		if err := f.Truncate(resumeAt); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("out: truncating %s to the checkpoint's %d bytes: %w", path, resumeAt, err)
		}
		cut = size - resumeAt
		size = resumeAt
	case size < resumeAt:
		// Someone shortened or replaced the file: what it lacks cannot be
		// written again; carry on from its end.
		cut = size - resumeAt
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("out: %w", err)
	}
	return &ndjsonOut{w: f, f: f, off: size, path: path}, cut, nil
}

// ConsumeRecords writes recs. On a failed write the file is cut back to
// where the batch began, so no partial batch stays in it.
func (o *ndjsonOut) ConsumeRecords(_ context.Context, recs []*record.Record) error {
	o.buf = o.buf[:0]
	for _, r := range recs {
		o.buf = o.enc.Append(o.buf, r)
		o.buf = append(o.buf, '\n')
	}
	n, err := o.w.Write(o.buf)
	if err != nil {
		if o.f != nil {
			if terr := o.f.Truncate(o.off); terr == nil {
				o.f.Seek(o.off, io.SeekStart)
				n = 0
			}
		}
		o.off += int64(n)
		return fmt.Errorf("out %s: %w", o.path, err)
	}
	o.off += int64(n)
	if cap(o.buf) > 8<<20 {
		o.buf = nil
	}
	return nil
}

// offset is the file's length (-1 for stdout, which has none to keep).
func (o *ndjsonOut) offset() int64 {
	if o.f == nil {
		return -1
	}
	return o.off
}

// sync makes what was written durable before a checkpoint names it.
func (o *ndjsonOut) sync() error {
	if o.f == nil {
		return nil
	}
	return o.f.Sync()
}

func (o *ndjsonOut) Close() error {
	if o.f == nil {
		return nil
	}
	return o.f.Close()
}
