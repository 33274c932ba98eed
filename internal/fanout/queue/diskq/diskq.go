// Package diskq is a durable, append-only message log on local disk: the
// spill area of a sink's queue (package fanout/queue) when its memory is
// full or its backend is down.
//
// Messages are opaque byte strings appended to numbered segment files and
// read back in order. A reader's progress is a cursor (segment, offset)
// written atomically (temp file + rename) when batches are committed, so a
// restart resumes after the last committed batch: delivery is at least
// once. A segment is deleted once the cursor has moved past it.
//
// On-disk format of a segment file (NNNNNNNNNNNNNNNNNNNN.seg):
//
//	frame := length uint32 LE | crc32c(payload) uint32 LE | payload
//
// A crash can leave a torn frame at the end of the last segment; Open
// detects it by length and CRC, truncates it, logs it and counts it
// (Stats.TruncatedBytes) instead of failing.
package diskq

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FsyncPolicy says when appended data is forced to stable storage.
type FsyncPolicy string

const (
	FsyncAlways   FsyncPolicy = "always"   // after every Append and cursor write
	FsyncInterval FsyncPolicy = "interval" // by a background timer
	FsyncNever    FsyncPolicy = "never"    // left to the operating system
)

// ErrFull is returned by Append when the messages would take the log past
// Options.MaxBytes. Nothing was written.
var ErrFull = errors.New("diskq: size cap reached")

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("diskq: closed")

// MaxMessageBytes bounds one message; a larger length field in a frame is
// taken as corruption rather than an allocation request.
const MaxMessageBytes = 64 << 20

const (
	frameHeader = 8
	segSuffix   = ".seg"
	cursorFile  = "cursor"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options configure a Log.
type Options struct {
	Dir           string
	SegmentBytes  int64 // a segment is closed once it reaches this size
	MaxBytes      int64 // cap on queued (uncommitted) bytes; 0 = unlimited
	Fsync         FsyncPolicy
	FsyncInterval time.Duration // for FsyncInterval; default 1s
	Logger        *slog.Logger
}

// Stats describe the log for metrics.
type Stats struct {
	Messages       int64 // unread plus read-but-uncommitted messages
	Bytes          int64 // bytes of those messages, frames included
	TruncatedBytes int64 // torn or corrupt bytes cut off since Open
	TruncatedTimes int64 // how many times that happened
}

// segment is one file's bookkeeping.
type segment struct {
	id    uint64
	size  int64 // bytes written (valid frames only)
	count int64 // messages in the file
}

// pos is a place in the log: a segment and a byte offset in it.
type pos struct {
	seg uint64
	off int64
}

func (p pos) less(q pos) bool { return p.seg < q.seg || (p.seg == q.seg && p.off < q.off) }

// outstanding is a read batch not yet committed (or a dropped range, which
// counts as committed from the start).
type outstanding struct {
	token uint64
	end   pos
	msgs  int64
	bytes int64
	done  bool
}

// Log is a segmented on-disk message log. It is safe for concurrent use.
type Log struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	closed bool
	segs   []*segment // ordered by id; the last one is written to
	w      *os.File   // the last segment, open for append
	wbuf   []byte
	dirty  bool // data written since the last fsync
	// unsynced are segments closed by a rotation while holding data not
	// yet fsynced (policy never); dirDirty says a segment file was created
	// since the directory was last fsynced. Sync settles both, so its
	// promise covers a batch that spanned a rotation.
	unsynced  []uint64
	dirDirty  bool
	committed pos // durable cursor: everything before it is done
	read      pos // next frame to read
	r         *os.File
	rseg      uint64
	rbuf      *bufio.Reader
	pending   []outstanding
	nextToken uint64

	messages, bytes   int64 // not yet committed
	total             int64 // bytes of all segment files
	truncBytes, trunc int64

	cursorAt    time.Time // when the cursor file was last written
	cursorSaved pos       // what it holds

	stop chan struct{}
	done chan struct{}
}

// cursorEvery bounds how often a commit rewrites the cursor file.
const cursorEvery = 100 * time.Millisecond

// Open opens (or creates) the log in opts.Dir, recovering from a torn tail.
func Open(opts Options) (*Log, error) {
	if opts.Dir == "" {
		return nil, errors.New("diskq: Dir is empty")
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = 64 << 20
	}
	if opts.Fsync == "" {
		opts.Fsync = FsyncInterval
	}
	if opts.FsyncInterval <= 0 {
		opts.FsyncInterval = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("diskq: %w", err)
	}
	// dirDirty: the directory or the first segment may have just been
	// created.
	l := &Log{opts: opts, log: opts.Logger.With("dir", opts.Dir), dirDirty: true}
	if err := l.load(); err != nil {
		return nil, err
	}
	if opts.Fsync != FsyncAlways {
		l.stop, l.done = make(chan struct{}), make(chan struct{})
		go l.syncLoop()
	}
	return l, nil
}

func segName(id uint64) string { return fmt.Sprintf("%020d%s", id, segSuffix) }

func (l *Log) path(name string) string { return filepath.Join(l.opts.Dir, name) }

// load scans the directory: reads the cursor, validates every segment
// from the cursor on, truncates torn tails and opens the last segment.
func (l *Log) load() error {
	entries, err := os.ReadDir(l.opts.Dir)
	if err != nil {
		return fmt.Errorf("diskq: %w", err)
	}
	var ids []uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil {
			continue
		}
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })

	cur, err := l.readCursor()
	if err != nil {
		return err
	}
	for _, id := range ids {
		if id < cur.seg {
			// Fully committed; a crash happened before it was removed.
			_ = os.Remove(l.path(segName(id)))
			continue
		}
		s, err := l.scan(id)
		if err != nil {
			return err
		}
		l.segs = append(l.segs, s)
		l.total += s.size
	}
	if len(l.segs) == 0 || cur.seg < l.segs[0].id {
		// The cursor's segment is gone (already consumed): start at the
		// first remaining one.
		first := cur.seg
		if len(l.segs) > 0 {
			first = l.segs[0].id
		}
		cur = pos{seg: first}
	}
	if len(l.segs) == 0 {
		s := &segment{id: cur.seg}
		l.segs = append(l.segs, s)
	}
	if cur.off > l.segs[0].size {
		cur.off = l.segs[0].size
	}
	// Count what is left to read: every message after the cursor.
	l.committed, l.read, l.cursorSaved = cur, cur, cur
	for _, s := range l.segs {
		l.messages += s.count
		l.bytes += s.size
	}
	if cur.off > 0 {
		n, err := l.countUpTo(l.segs[0].id, cur.off)
		if err != nil {
			return err
		}
		l.messages -= n
		l.bytes -= cur.off
	}
	last := l.segs[len(l.segs)-1]
	l.w, err = os.OpenFile(l.path(segName(last.id)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("diskq: %w", err)
	}
	if l.messages > 0 {
		l.log.Info("disk queue opened with a backlog", "messages", l.messages, "bytes", l.bytes, "segments", len(l.segs))
	}
	return nil
}

// scan validates segment id frame by frame and truncates it at the first
// torn or corrupt frame.
func (l *Log) scan(id uint64) (*segment, error) {
	name := l.path(segName(id))
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("diskq: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("diskq: %w", err)
	}
	s := &segment{id: id}
	sc := NewScanner(bufio.NewReaderSize(f, 1<<16))
	for sc.Next() {
		s.count++
		s.size += int64(frameHeader + len(sc.Message()))
	}
	if s.size < fi.Size() {
		cut := fi.Size() - s.size
		if err := f.Truncate(s.size); err != nil {
			return nil, fmt.Errorf("diskq: truncate torn tail: %w", err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("diskq: %w", err)
		}
		l.truncBytes += cut
		l.trunc++
		l.log.Warn("disk queue: truncated a torn or corrupt tail (crash during a write?)",
			"segment", segName(id), "kept_bytes", s.size, "cut_bytes", cut, "kept_messages", s.count, "reason", sc.Err())
	}
	return s, nil
}

// countUpTo counts the frames of segment id that end at or before off.
func (l *Log) countUpTo(id uint64, off int64) (int64, error) {
	f, err := os.Open(l.path(segName(id)))
	if err != nil {
		return 0, fmt.Errorf("diskq: %w", err)
	}
	defer f.Close()
	sc := NewScanner(bufio.NewReaderSize(io.LimitReader(f, off), 1<<16))
	var n int64
	for sc.Next() {
		n++
	}
	return n, nil
}

func (l *Log) readCursor() (pos, error) {
	b, err := os.ReadFile(l.path(cursorFile))
	if errors.Is(err, os.ErrNotExist) {
		return pos{seg: 1}, nil
	}
	if err != nil {
		return pos{}, fmt.Errorf("diskq: %w", err)
	}
	var p pos
	if len(b) != 20 || crc32.Checksum(b[:16], castagnoli) != binary.LittleEndian.Uint32(b[16:]) {
		// A cursor is replaced by rename, never written in place, so a bad
		// one means outside damage. Replaying from the start is the
		// choice that loses nothing.
		l.log.Warn("disk queue: cursor file unreadable, replaying from the oldest segment", "bytes", len(b))
		return pos{seg: 0}, nil
	}
	p.seg = binary.LittleEndian.Uint64(b[0:])
	p.off = int64(binary.LittleEndian.Uint64(b[8:]))
	return p, nil
}

// writeCursor replaces the cursor file atomically: write a temp file,
// (fsync it), rename it over the old one.
func (l *Log) writeCursor(p pos) error {
	var b [20]byte
	binary.LittleEndian.PutUint64(b[0:], p.seg)
	binary.LittleEndian.PutUint64(b[8:], uint64(p.off))
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[:16], castagnoli))
	tmp := l.path(cursorFile + ".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("diskq: %w", err)
	}
	if _, err := f.Write(b[:]); err != nil {
		f.Close()
		return fmt.Errorf("diskq: %w", err)
	}
	if l.opts.Fsync == FsyncAlways {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("diskq: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("diskq: %w", err)
	}
	if err := os.Rename(tmp, l.path(cursorFile)); err != nil {
		return fmt.Errorf("diskq: %w", err)
	}
	return nil
}

// AppendFrame appends one frame for msg to dst. Exported for tests and
// fuzzing of the reader.
func AppendFrame(dst, msg []byte) []byte {
	var h [frameHeader]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(len(msg)))
	binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(msg, castagnoli))
	return append(append(dst, h[:]...), msg...)
}

// Append writes msgs at the end of the log, in order, all or nothing with
// respect to the size cap. With FsyncAlways they are on stable storage
// when it returns.
func (l *Log) Append(msgs [][]byte) error {
	if len(msgs) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	var need int64
	for _, m := range msgs {
		if len(m) > MaxMessageBytes {
			return fmt.Errorf("diskq: message of %d bytes exceeds %d", len(m), MaxMessageBytes)
		}
		need += int64(frameHeader + len(m))
	}
	// The cap counts queued bytes (unread and in flight), not file
	// sizes: a dropped or committed range frees its room at once even if
	// its segment file waits for an earlier batch's commit to be deleted.
	if l.opts.MaxBytes > 0 && l.bytes+need > l.opts.MaxBytes {
		return ErrFull
	}
	for len(msgs) > 0 {
		last := l.segs[len(l.segs)-1]
		if last.size >= l.opts.SegmentBytes {
			if err := l.rotate(); err != nil {
				return err
			}
			last = l.segs[len(l.segs)-1]
		}
		// Fill this segment up to its size, at least one message.
		buf := l.wbuf[:0]
		n := 0
		for n < len(msgs) && (n == 0 || last.size+int64(len(buf)+frameHeader+len(msgs[n])) <= l.opts.SegmentBytes) {
			buf = AppendFrame(buf, msgs[n])
			n++
		}
		if _, err := l.w.Write(buf); err != nil {
			// Cut a short write back so the next append starts on a frame
			// boundary; if even that fails, the next Open cuts the tail.
			_ = l.w.Truncate(last.size)
			return fmt.Errorf("diskq: %w", err)
		}
		l.wbuf = buf
		last.size += int64(len(buf))
		last.count += int64(n)
		l.total += int64(len(buf))
		l.messages += int64(n)
		l.bytes += int64(len(buf))
		msgs = msgs[n:]
	}
	if cap(l.wbuf) > 4<<20 {
		l.wbuf = nil // do not pin a huge buffer after a burst
	}
	l.dirty = true
	if l.opts.Fsync == FsyncAlways {
		return l.syncLocked()
	}
	return nil
}

// rotate closes the segment being written and starts the next one.
func (l *Log) rotate() error {
	if err := l.syncLocked(); err != nil {
		return err
	}
	if l.dirty {
		// Policy never left it unsynced: remember it for a forced Sync.
		l.unsynced = append(l.unsynced, l.segs[len(l.segs)-1].id)
	}
	if err := l.w.Close(); err != nil {
		return fmt.Errorf("diskq: %w", err)
	}
	id := l.segs[len(l.segs)-1].id + 1
	f, err := os.OpenFile(l.path(segName(id)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("diskq: %w", err)
	}
	l.w = f
	l.segs = append(l.segs, &segment{id: id})
	l.dirDirty = true
	return nil
}

// syncLocked fsyncs what was appended, as the policy says.
func (l *Log) syncLocked() error {
	if l.opts.Fsync == FsyncNever {
		return nil
	}
	return l.forceSyncLocked()
}

// forceSyncLocked fsyncs every appended byte whatever the policy: the
// segment being written, segments rotated away unsynced, and the
// directory when a segment file was created since (else a crash can lose
// the new file's name even though its data was flushed).
func (l *Log) forceSyncLocked() error {
	for len(l.unsynced) > 0 {
		id := l.unsynced[0]
		f, err := os.OpenFile(l.path(segName(id)), os.O_WRONLY, 0)
		if err == nil {
			err = f.Sync()
			f.Close()
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) { // gone: already committed
			return fmt.Errorf("diskq: fsync segment %s: %w", segName(id), err)
		}
		l.unsynced = l.unsynced[1:]
	}
	if l.dirty {
		l.dirty = false
		if err := l.w.Sync(); err != nil {
			l.dirty = true
			return fmt.Errorf("diskq: fsync: %w", err)
		}
	}
	if l.dirDirty {
		d, err := os.Open(l.opts.Dir)
		if err == nil {
			err = d.Sync()
			d.Close()
		}
		if err != nil {
			return fmt.Errorf("diskq: fsync directory %s: %w", l.opts.Dir, err)
		}
		l.dirDirty = false
	}
	return nil
}

// Sync forces every appended message to stable storage, whatever the
// fsync policy (it is what an acknowledged append waits for), and saves
// the read cursor if it moved.
func (l *Log) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.cursorSaved != l.committed {
		if err := l.writeCursor(l.committed); err != nil {
			return err
		}
		l.cursorAt, l.cursorSaved = time.Now(), l.committed
	}
	return l.forceSyncLocked()
}

// periodicSync is the timer's work: save the cursor if it moved, and
// fsync as the policy says (under never, only the cursor).
func (l *Log) periodicSync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.cursorSaved != l.committed {
		if err := l.writeCursor(l.committed); err != nil {
			return err
		}
		l.cursorAt, l.cursorSaved = time.Now(), l.committed
	}
	return l.syncLocked()
}

func (l *Log) syncLoop() {
	defer close(l.done)
	t := time.NewTicker(l.opts.FsyncInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if err := l.periodicSync(); err != nil && !errors.Is(err, ErrClosed) {
				l.log.Error("disk queue: periodic fsync failed", "err", err)
			}
		}
	}
}

func (l *Log) segIndex(id uint64) int {
	for i, s := range l.segs {
		if s.id == id {
			return i
		}
	}
	return -1
}

// Read returns up to maxMsgs messages (and about maxBytes: at least one
// message) after the last one read, and a token to Commit them with. It
// returns no messages and no error when everything has been read.
// Messages are read again after a restart until they are committed.
func (l *Log) Read(maxMsgs, maxBytes int) ([][]byte, uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, 0, ErrClosed
	}
	var out [][]byte
	var size int64
	start := l.read
	for len(out) < maxMsgs {
		i := l.segIndex(l.read.seg)
		if i < 0 {
			break
		}
		s := l.segs[i]
		if l.read.off >= s.size {
			if i == len(l.segs)-1 {
				break // caught up with the writer
			}
			l.read = pos{seg: l.segs[i+1].id}
			continue
		}
		if l.r == nil || l.rseg != s.id {
			if err := l.openReader(s.id, l.read.off); err != nil {
				return nil, 0, err
			}
		}
		n, err := peekFrameLen(l.rbuf)
		if err == nil && len(out) > 0 && maxBytes > 0 && size+n > int64(maxBytes) {
			break // keep it for the next Read
		}
		var msg []byte
		if err == nil {
			msg, err = readFrame(l.rbuf, s.size-l.read.off)
		}
		if err != nil {
			// The frame was valid when written or scanned; failing now
			// means outside damage. Skip the rest of the segment.
			l.log.Error("disk queue: unreadable frame, skipping the rest of the segment",
				"segment", segName(s.id), "offset", l.read.off, "err", err)
			l.truncBytes += s.size - l.read.off
			l.trunc++
			l.closeReader()
			l.read.off = s.size
			continue
		}
		out = append(out, msg)
		size += n
		l.read.off += n
	}
	if len(out) == 0 {
		if l.read != start {
			// Only segment boundaries were crossed.
			l.pushPending(outstanding{end: l.read, done: true})
		}
		return nil, 0, nil
	}
	l.nextToken++
	l.pushPending(outstanding{token: l.nextToken, end: l.read, msgs: int64(len(out)), bytes: size})
	return out, l.nextToken, nil
}

func (l *Log) pushPending(o outstanding) {
	l.pending = append(l.pending, o)
	if o.done {
		_ = l.advanceLocked()
	}
}

func (l *Log) openReader(id uint64, off int64) error {
	l.closeReader()
	f, err := os.Open(l.path(segName(id)))
	if err != nil {
		return fmt.Errorf("diskq: %w", err)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("diskq: %w", err)
	}
	l.r, l.rseg = f, id
	if l.rbuf == nil {
		l.rbuf = bufio.NewReaderSize(f, 1<<16)
	} else {
		l.rbuf.Reset(f)
	}
	return nil
}

func (l *Log) closeReader() {
	if l.r != nil {
		l.r.Close()
		l.r = nil
	}
}

// Commit marks the batch read with token as done. The durable cursor moves
// over every batch committed so far in read order, so batches may be
// committed out of order.
func (l *Log) Commit(token uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	for i := range l.pending {
		if l.pending[i].token == token && !l.pending[i].done {
			l.pending[i].done = true
			l.messages -= l.pending[i].msgs
			l.bytes -= l.pending[i].bytes
			return l.advanceLocked()
		}
	}
	return fmt.Errorf("diskq: unknown token %d", token)
}

// advanceLocked moves the durable cursor over the committed prefix of
// pending, writes it, and deletes segments wholly behind it.
func (l *Log) advanceLocked() error {
	n := 0
	for n < len(l.pending) && l.pending[n].done {
		n++
	}
	if n == 0 {
		return nil
	}
	next := l.pending[n-1].end
	l.pending = append(l.pending[:0], l.pending[n:]...)
	if !l.committed.less(next) {
		return nil
	}
	crossed := next.seg != l.committed.seg
	l.committed = next
	// The cursor file is rewritten at most every cursorEvery (always on
	// crossing a segment, and under FsyncAlways on every commit): a crash
	// replays at most that much again, which at-least-once allows, and
	// the replay is not bound by file renames.
	now := time.Now()
	if crossed || l.opts.Fsync == FsyncAlways || now.Sub(l.cursorAt) >= cursorEvery {
		if err := l.writeCursor(next); err != nil {
			return err
		}
		l.cursorAt, l.cursorSaved = now, next
	}
	for len(l.segs) > 1 && l.segs[0].id < next.seg {
		s := l.segs[0]
		if l.r != nil && l.rseg == s.id {
			l.closeReader()
		}
		if err := os.Remove(l.path(segName(s.id))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("diskq: %w", err)
		}
		l.total -= s.size
		l.segs = l.segs[1:]
	}
	return nil
}

// DropOldest discards the unread messages of the oldest segment that still
// has some, to make room under the size cap. It returns how many messages
// and bytes were discarded (0 when nothing unread is left to drop).
func (l *Log) DropOldest() (int64, int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, 0, ErrClosed
	}
	i := l.segIndex(l.read.seg)
	if i < 0 {
		return 0, 0, nil
	}
	s := l.segs[i]
	if s.size == l.read.off && i == len(l.segs)-1 {
		return 0, 0, nil
	}
	if i == len(l.segs)-1 {
		// Dropping the segment being written: start a new one first.
		if err := l.rotate(); err != nil {
			return 0, 0, err
		}
	}
	skipped, err := l.countFrom(s.id, l.read.off)
	if err != nil {
		return 0, 0, err
	}
	bytes := s.size - l.read.off
	l.closeReader()
	l.read = pos{seg: l.segs[i+1].id}
	l.messages -= skipped
	l.bytes -= bytes
	l.pushPending(outstanding{end: l.read, done: true})
	return skipped, bytes, nil
}

func (l *Log) countFrom(id uint64, off int64) (int64, error) {
	f, err := os.Open(l.path(segName(id)))
	if err != nil {
		return 0, fmt.Errorf("diskq: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, fmt.Errorf("diskq: %w", err)
	}
	sc := NewScanner(bufio.NewReaderSize(f, 1<<16))
	var n int64
	for sc.Next() {
		n++
	}
	return n, nil
}

// Len returns the messages and bytes not yet committed.
func (l *Log) Len() (int64, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.messages, l.bytes
}

// Unread reports whether there are appended messages not yet returned by
// Read.
func (l *Log) Unread() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := l.segIndex(l.read.seg)
	return i >= 0 && (i < len(l.segs)-1 || l.read.off < l.segs[i].size)
}

// Stats returns counters for metrics.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{Messages: l.messages, Bytes: l.bytes, TruncatedBytes: l.truncBytes, TruncatedTimes: l.trunc}
}

// Close syncs and closes the log. Uncommitted reads are read again by the
// next Open.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	err := l.syncLocked()
	if l.cursorSaved != l.committed {
		if cerr := l.writeCursor(l.committed); err == nil {
			err = cerr
		}
	}
	l.closed = true
	l.closeReader()
	if cerr := l.w.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("diskq: %w", cerr)
	}
	l.mu.Unlock()
	if l.stop != nil {
		close(l.stop)
		<-l.done
	}
	return err
}
