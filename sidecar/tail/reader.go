package tail

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"regexp"
	"strconv"
	"time"
)

// reader follows one file (one device+inode) through its open descriptor,
// so a rename or an unlink does not stop it: what the writer appended
// before letting go is still read. buf always holds the file's bytes
// [lineStart, readOff): the part of a line not yet complete.
type reader struct {
	key  fileKey
	path string
	f    *os.File
	fp   fingerprint

	readOff   int64
	lineStart int64
	buf       []byte
	skipping  bool // the line at lineStart was emitted cut; its rest is dropped

	// The multiline record being built: lines join it until the next line
	// matching the start pattern, or the flush timeout.
	pending      []byte
	pendingSet   bool
	pendingStart int64
	pendingTrunc bool
	pendingAt    time.Time
	held         []heldLine
	heldBytes    int

	matched    bool      // seen by the last scan under a path the globs match
	lastGrowth time.Time // when the file last gave new bytes
	size       int64     // as of the last scan
	streamID   uint64    // part of every entry's stable id
	idPrefix   string    // streamID rendered
	linesRead  int       // in the current Read, counted once per Read
}

// commitOffset is where a restart must resume once everything emitted so
// far was accepted: the start of what is not yet emitted.
func (r *reader) commitOffset() int64 {
	if r.pendingSet {
		return r.pendingStart
	}
	return r.lineStart
}

// reset starts the file over (it was truncated or overwritten).
func (r *reader) reset() {
	r.readOff, r.lineStart, r.buf, r.skipping = 0, 0, r.buf[:0], false
	r.pending, r.pendingSet, r.pendingTrunc = r.pending[:0], false, false
	r.held, r.heldBytes = nil, 0
	r.streamID, r.idPrefix = 0, ""
}

// lineSink receives complete entries; data is only valid during the call.
type lineSink func(r *reader, data []byte, start int64, truncated bool)

// consume splits the buffered bytes into lines. Lines longer than maxLine
// are emitted cut at maxLine with truncated set, and the rest of the line
// is skipped; flushPartial emits an unterminated last line as it is.
func (r *reader) consume(maxLine int, ml *regexp.Regexp, cri bool, now time.Time, flushPartial bool, emit lineSink) {
	if cri {
		inner := emit
		emit = func(r *reader, data []byte, start int64, trunc bool) {
			r.criLine(data, start, trunc, maxLine, now, inner)
		}
	}
	for {
		i := bytes.IndexByte(r.buf, '\n')
		if i < 0 {
			break
		}
		n := int64(i + 1)
		if r.skipping {
			r.skipping = false
		} else {
			line := r.buf[:i]
			trunc := false
			if len(line) > maxLine {
				line, trunc = line[:maxLine], true
			}
			r.line(line, r.lineStart, trunc, maxLine, ml, now, emit)
		}
		r.buf = r.buf[n:]
		r.lineStart += n
	}
	switch {
	case r.skipping:
		r.lineStart += int64(len(r.buf))
		r.buf = r.buf[:0]
	case len(r.buf) > maxLine:
		// Cut now rather than buffer an unbounded line.
		r.line(r.buf[:maxLine], r.lineStart, true, maxLine, ml, now, emit)
		r.lineStart += int64(len(r.buf))
		r.buf = r.buf[:0]
		r.skipping = true
	case flushPartial && len(r.buf) > 0:
		r.line(r.buf, r.lineStart, false, maxLine, ml, now, emit)
		r.lineStart += int64(len(r.buf))
		r.buf = r.buf[:0]
	}
	// Compact: keep the partial line at the start of its buffer.
	if cap(r.buf) > 1<<20 && len(r.buf) < 64<<10 {
		r.buf = append([]byte(nil), r.buf...)
	}
}

// line passes one line through the multiline joiner.
func (r *reader) line(data []byte, start int64, trunc bool, maxLine int, ml *regexp.Regexp, now time.Time, emit lineSink) {
	if ml == nil {
		emit(r, data, start, trunc)
		return
	}
	if !r.pendingSet || ml.Match(data) {
		r.flushPending(emit)
		r.pending = append(r.pending[:0], data...)
		r.pendingSet, r.pendingStart, r.pendingTrunc, r.pendingAt = true, start, trunc, now
		return
	}
	room := maxLine - len(r.pending) - 1
	switch {
	case room <= 0:
		r.pendingTrunc = true
	case len(data) > room:
		r.pending = append(append(r.pending, '\n'), data[:room]...)
		r.pendingTrunc = true
	default:
		r.pending = append(append(r.pending, '\n'), data...)
		r.pendingTrunc = r.pendingTrunc || trunc
	}
	r.pendingAt = now
}

func (r *reader) flushPending(emit lineSink) {
	if !r.pendingSet {
		return
	}
	r.pendingSet = false
	emit(r, r.pending, r.pendingStart, r.pendingTrunc)
	r.pending = r.pending[:0]
	for _, h := range r.held {
		emit(r, h.data, h.start, h.trunc)
	}
	r.held, r.heldBytes = r.held[:0], 0
}

// heldLine is a CRI line of the other stream that arrived while a partial
// line was pending (see criLine).
type heldLine struct {
	data  []byte
	start int64
	trunc bool
}

// readChunk appends up to len(chunk) new bytes of the file to buf.
func (r *reader) readChunk(chunk []byte) (int, error) {
	n, err := r.f.ReadAt(chunk, r.readOff)
	if n > 0 {
		r.buf = append(r.buf, chunk[:n]...)
		r.readOff += int64(n)
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}

// id returns the stable id of the entry starting at off: the stream (the
// file's device, inode and first line) and the offset, the same every time
// that line is read, also after a restart.
func (r *reader) id(off int64) string {
	if r.streamID == 0 {
		h := fnv.New64a()
		fmt.Fprintf(h, "%d:%d:", r.key.dev, r.key.ino)
		first := make([]byte, 1024)
		n, _ := r.f.ReadAt(first, 0)
		first = first[:n]
		if i := bytes.IndexByte(first, '\n'); i >= 0 {
			first = first[:i]
		}
		h.Write(first)
		r.streamID = h.Sum64() | 1 // never 0, which means "not computed"
		r.idPrefix = fmt.Sprintf("%016x-", r.streamID)
	}
	var b [48]byte
	return string(strconv.AppendInt(append(b[:0], r.idPrefix...), off, 10))
}

// criLine joins the kubelet's partial lines ("TIME STREAM P content"),
// see Config.CRI. A line of the other stream between two parts passes
// through on its own.
func (r *reader) criLine(data []byte, start int64, trunc bool, maxLine int, now time.Time, emit lineSink) {
	stream, tag, content, ok := criSplit(data)
	if !ok {
		r.flushPending(emit)
		emit(r, data, start, trunc)
		return
	}
	if r.pendingSet {
		pstream, _, _, _ := criSplit(r.pending)
		if !bytes.Equal(pstream, stream) {
			// The other stream's line, between two parts of this one: held
			// and emitted after the joined line. Emitted now it would lie
			// past the checkpoint, which stays at the partial line's start,
			// and be read twice after a crash.
			r.held = append(r.held, heldLine{data: append([]byte(nil), data...), start: start, trunc: trunc})
			r.heldBytes += len(data)
			if r.heldBytes > maxLine {
				r.flushPending(emit) // bounded: a partial line never finished
			}
			return
		}
		room := maxLine - len(r.pending)
		if len(content) > room {
			content, r.pendingTrunc = content[:max(room, 0)], true
		}
		r.pending = append(r.pending, content...)
		r.pendingTrunc = r.pendingTrunc || trunc
		r.pendingAt = now
		if !bytes.Equal(tag, []byte("P")) && !bytes.HasPrefix(tag, []byte("P:")) {
			r.flushPending(emit)
		}
		return
	}
	if bytes.Equal(tag, []byte("P")) || bytes.HasPrefix(tag, []byte("P:")) {
		// The first part: kept whole, its tag rewritten to F for the
		// joined line (same length, so the content offset holds).
		r.pending = append(r.pending[:0], data...)
		r.pending[len(data)-len(content)-1-len(tag)] = 'F'
		r.pendingSet, r.pendingStart, r.pendingTrunc, r.pendingAt = true, start, trunc, now
		return
	}
	emit(r, data, start, trunc)
}

// criSplit cuts a CRI log line: TIME STREAM TAG CONTENT (the kubelet's
// format, k8s.io/cri-api logs: tags separated by ':', P or F first).
func criSplit(line []byte) (stream, tag, content []byte, ok bool) {
	i := bytes.IndexByte(line, ' ')
	if i < 0 {
		return nil, nil, nil, false
	}
	rest := line[i+1:]
	j := bytes.IndexByte(rest, ' ')
	if j < 0 {
		return nil, nil, nil, false
	}
	stream, rest = rest[:j], rest[j+1:]
	k := bytes.IndexByte(rest, ' ')
	if k < 0 {
		// "TIME STREAM F" with empty content
		return stream, rest, rest[len(rest):], len(rest) > 0
	}
	return stream, rest[:k], rest[k+1:], true
}
