// Package tail follows log files by glob through rotation and restarts.
//
// A file is identified by its device and inode plus a fingerprint of its
// first bytes (see fingerprint), and read through its open descriptor, so:
//
//   - rename rotation (app.log -> app.log.1, a new app.log): the old inode is
//     read to its end through the descriptor, also when the glob matches the
//     rotated name (the same inode is the same stream, never read twice);
//   - create rotation (moved out of the glob, or deleted while open): the
//     same, and the file is let go once drained and quiet;
//   - copytruncate (copied to app.log.1, app.log truncated): the
//     truncation is seen (size below the read offset, or the first bytes
//     changed); the unread rest of the old content is read from the copy
//     when the glob matches it (its fingerprint is the old stream's), and
//     the truncated file starts over from 0. A copy found while the
//     original still holds the same bytes is not read at all.
//
// Reading is pull-based: the caller asks for a batch with Read, hands the
// entries on, and only once they were accepted takes Positions for its
// checkpoint. New files and writes are noticed through inotify
// (fsnotify) when it works, and by polling every PollInterval always.
package tail

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/time/rate"

	"github.com/meshtrail/meshtrail/internal/loglimit"
	"github.com/meshtrail/meshtrail/sidecar/checkpoint"
)

// Config says what to read and how. The sidecar's Config validates it.
type Config struct {
	Paths []string // globs (filepath.Match syntax)
	// MaxLineBytes cuts longer lines (and multiline records) there; the
	// entry is flagged truncated.
	MaxLineBytes int
	// Multiline, when set, matches the first line of a record; lines that
	// do not match join the record before them.
	Multiline *regexp.Regexp
	// FlushAfter emits a multiline record, or a last line without its
	// newline, when the file gave nothing new for this long.
	FlushAfter time.Duration
	// ReadBytesPerSecond limits reading over all files (0: no limit) so
	// the agent never starves the application of disk or CPU.
	ReadBytesPerSecond float64
	// PollInterval is how often the globs are evaluated and files checked
	// without a filesystem event.
	PollInterval time.Duration
	// Linger is how long a file no longer matched (rotated away, deleted)
	// is kept open after it stopped growing, for a writer's last lines.
	Linger time.Duration
	// FingerprintBytes is how many first bytes identify a file (1 KiB).
	FingerprintBytes int
	// CRI joins the kubelet's partial lines: a CRI log line tagged P is
	// continued by the next line of the same stream, up to one tagged F.
	// The joined entry is one CRI line (the first part's header, every
	// part's content) tagged F.
	CRI bool
}

// Entry is one line (or multiline record) read.
type Entry struct {
	Data      []byte // valid until the next Read
	Path      string // the file's path when it was read
	ID        string // stable id: the file's stream and the entry's offset
	Offset    int64
	Truncated bool
}

// Tailer follows the files. It is not safe for concurrent use, except
// Wake and Events.
type Tailer struct {
	cfg     Config
	log     *slog.Logger
	warn    *loglimit.Limiter
	metrics *Metrics
	limiter *rate.Limiter

	readers  map[fileKey]*reader
	order    []*reader
	next     int               // round robin start
	known    []checkpoint.File // positions of files not open: from the checkpoint, or released
	handoffs []handoff         // streams whose file was truncated: the copy continues there
	problems map[string]string // path -> the problem last logged, so it is logged once
	watcher  *fsnotify.Watcher // nil: polling only
	watched  map[string]bool
	wake     chan struct{}
	chunk    []byte
	arena    []byte
	entries  []Entry
	closed   bool
	lastScan time.Time
	// scanWanted is set by file events that may mean a new file.
	scanWanted atomic.Bool
	// early holds files opened as soon as their creation was reported,
	// so a file rotated out of the globs (or deleted) before the next
	// Scan is still read. Guarded by earlyMu: filled by the event
	// goroutine, taken by Scan.
	earlyMu sync.Mutex
	early   map[fileKey]candidate
	// deferred are new files that so far only repeat the start of a file
	// being read (see open).
	deferred []candidate
}

// preopen opens a newly created file that a glob matches.
func (t *Tailer) preopen(path string) {
	if !slices.ContainsFunc(t.cfg.Paths, func(g string) bool { ok, _ := filepath.Match(g, path); return ok }) {
		return
	}
	// Symlinks are not followed (Scan logs them): Lstat, then check the
	// opened file is the one Lstat saw.
	lfi, err := os.Lstat(path)
	if err != nil || !lfi.Mode().IsRegular() {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		return // Scan reports it
	}
	fi, err := f.Stat()
	key, ok := keyOf(fi)
	lkey, lok := keyOf(lfi)
	if err != nil || !ok || !lok || key != lkey {
		f.Close()
		return
	}
	t.earlyMu.Lock()
	defer t.earlyMu.Unlock()
	if _, dup := t.early[key]; dup || t.closed {
		f.Close()
		return
	}
	if t.early == nil {
		t.early = map[fileKey]candidate{}
	}
	t.early[key] = candidate{path: path, key: key, f: f}
}

// takeEarly returns the files opened by preopen since the last call.
func (t *Tailer) takeEarly() map[fileKey]candidate {
	t.earlyMu.Lock()
	defer t.earlyMu.Unlock()
	e := t.early
	t.early = nil
	return e
}

// ScanDue reports whether a Scan is wanted: the poll interval passed, or
// a file was created, renamed or removed.
func (t *Tailer) ScanDue() bool {
	return t.scanWanted.Load() || time.Since(t.lastScan) >= t.cfg.PollInterval
}

// handoff is where a truncated file's stream had got to.
type handoff struct {
	fp     fingerprint
	offset int64
	at     time.Time
}

const (
	chunkSize   = 64 << 10
	maxKnown    = 1024
	handoffLife = 5 * time.Minute
)

// New returns a Tailer resuming from the files of a checkpoint.
func New(cfg Config, resume []checkpoint.File, logger *slog.Logger, m *Metrics) *Tailer {
	t := &Tailer{
		cfg: cfg, log: logger, warn: loglimit.New(time.Minute), metrics: m,
		readers: map[fileKey]*reader{}, problems: map[string]string{}, watched: map[string]bool{},
		wake: make(chan struct{}, 1), chunk: make([]byte, chunkSize),
	}
	if cfg.FingerprintBytes <= 0 {
		t.cfg.FingerprintBytes = 1024
	}
	if cfg.ReadBytesPerSecond > 0 {
		t.limiter = rate.NewLimiter(rate.Limit(cfg.ReadBytesPerSecond), max(chunkSize, int(cfg.ReadBytesPerSecond)))
	}
	t.known = append(t.known, resume...)
	if w, err := fsnotify.NewWatcher(); err != nil {
		logger.Warn("file events unavailable, polling only", "error", err, "poll_interval", cfg.PollInterval)
	} else {
		t.watcher = w
		go t.forwardEvents(w)
	}
	return t
}

func (t *Tailer) forwardEvents(w *fsnotify.Watcher) {
	for {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if ev.Op&fsnotify.Create != 0 {
				t.preopen(ev.Name)
			}
			if ev.Op&(fsnotify.Create|fsnotify.Rename|fsnotify.Remove) != 0 {
				// A file appeared or moved: look at once, before a fast
				// rotation moves it out of the globs unread.
				t.scanWanted.Store(true)
			}
			t.Wake()
		case _, ok := <-w.Errors:
			if !ok {
				return
			}
			t.scanWanted.Store(true) // an overflow lost events: look at everything
			t.Wake()
		}
	}
}

// Wake makes the next WaitChange return at once.
func (t *Tailer) Wake() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// WaitChange waits for a filesystem event, the poll interval, or d,
// whichever comes first.
func (t *Tailer) WaitChange(ctx context.Context, d time.Duration) {
	d = min(d, t.cfg.PollInterval)
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-t.wake:
	case <-tm.C:
	}
}

// Close closes every file and the watcher.
func (t *Tailer) Close() {
	if t.closed {
		return
	}
	t.closed = true
	for _, r := range t.order {
		r.f.Close()
	}
	if t.watcher != nil {
		t.watcher.Close()
	}
	for _, c := range t.takeEarly() {
		c.f.Close()
	}
	for _, c := range t.deferred {
		c.f.Close()
	}
}

// problem logs a path's problem once (until it changes or goes away) and
// counts it.
func (t *Tailer) problem(path, reason string, err error) {
	t.metrics.problem(reason)
	msg := reason
	if err != nil {
		msg += ": " + err.Error()
	}
	if t.problems[path] == msg {
		return
	}
	t.problems[path] = msg
	t.log.Warn("cannot tail file", "path", path, "reason", reason, "error", err)
}

// Scan evaluates the globs: new files are opened and positioned, files
// that were truncated start over, and files no longer matched are
// marked so they are let go once drained. With stopOpening (a drain or
// shutdown), no new file is opened.
func (t *Tailer) Scan(stopOpening bool) {
	now := time.Now()
	t.lastScan = now
	t.scanWanted.Store(false)
	for _, r := range t.order {
		r.matched = false
		t.checkTruncation(r, now)
	}
	var paths []string
	seen := map[string]bool{}
	for _, g := range t.cfg.Paths {
		m, err := filepath.Glob(g)
		if err != nil {
			t.problem(g, "bad glob", err) // validated at start; kept for safety
			continue
		}
		for _, p := range m {
			if !seen[p] {
				seen[p] = true
				paths = append(paths, p)
			}
		}
		t.watch(globBase(g))
	}
	slices.Sort(paths)
	early := t.takeEarly()
	defer func() {
		for _, c := range early {
			c.f.Close()
		}
	}()
	var fresh []candidate
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			continue // gone between the glob and here
		}
		if !fi.Mode().IsRegular() {
			if fi.Mode()&fs.ModeSymlink != 0 {
				t.problem(p, "symlink not followed", nil)
			} else if fi.IsDir() {
				t.problem(p, "is a directory", nil)
			} else {
				t.problem(p, "not a regular file", nil)
			}
			continue
		}
		key, ok := keyOf(fi)
		if !ok {
			continue
		}
		if r := t.readers[key]; r != nil {
			if r.path != p {
				t.metrics.rotation("rename")
			}
			r.path, r.matched = p, true
			delete(t.problems, p)
			continue
		}
		if stopOpening {
			continue
		}
		if c, ok := early[key]; ok {
			delete(early, key)
			if c.fp, err = readFingerprint(c.f, t.cfg.FingerprintBytes); err == nil {
				c.path, c.size = p, fi.Size()
				fresh = append(fresh, c)
				continue
			}
			c.f.Close()
		}
		f, err := os.Open(p)
		if err != nil {
			t.problem(p, "unreadable", err) // retried next scan
			continue
		}
		// The path may have been replaced between Lstat and Open.
		ofi, err := f.Stat()
		if k, ok := keyOf(ofi); err != nil || !ok || k != key {
			f.Close()
			continue
		}
		fp, err := readFingerprint(f, t.cfg.FingerprintBytes)
		if err != nil {
			f.Close()
			t.problem(p, "unreadable", err)
			continue
		}
		delete(t.problems, p)
		fresh = append(fresh, candidate{path: p, key: key, f: f, fp: fp, size: ofi.Size()})
	}
	// Files created and already moved out of the globs (or deleted): read
	// through the descriptor opened at their creation, then let go.
	if !stopOpening {
		for key, c := range early {
			delete(early, key)
			fi, err := c.f.Stat()
			if t.readers[key] != nil || err != nil {
				c.f.Close()
				continue
			}
			if c.fp, err = readFingerprint(c.f, t.cfg.FingerprintBytes); err != nil {
				c.f.Close()
				continue
			}
			c.size = fi.Size()
			fresh = append(fresh, c)
		}
	}
	for _, c := range t.deferred {
		fi, err := c.f.Stat()
		if err != nil || t.readers[c.key] != nil || slices.ContainsFunc(fresh, func(f candidate) bool { return f.key == c.key }) {
			c.f.Close()
			continue
		}
		if c.fp, err = readFingerprint(c.f, t.cfg.FingerprintBytes); err != nil {
			c.f.Close()
			continue
		}
		c.size = fi.Size()
		fresh = append(fresh, c)
	}
	t.deferred = t.deferred[:0]
	n := len(t.order)
	t.open(fresh, now)
	for _, r := range t.order[n:] {
		if !seen[r.path] {
			r.matched = false
		}
	}
	for p := range t.problems {
		if !seen[p] {
			delete(t.problems, p)
		}
	}
	t.handoffs = slices.DeleteFunc(t.handoffs, func(h handoff) bool { return now.Sub(h.at) > handoffLife })
}

type candidate struct {
	path  string
	key   fileKey
	f     *os.File
	fp    fingerprint
	size  int64
	since time.Time // deferred since (see open)
}

// open positions and starts reading new files: first those the
// checkpoint knows by device, inode and fingerprint; then copies of a
// truncated stream; copies of a stream still being read are skipped.
func (t *Tailer) open(fresh []candidate, now time.Time) {
	var rest []candidate
	for _, c := range fresh {
		i := slices.IndexFunc(t.known, func(k checkpoint.File) bool {
			return k.Dev == c.key.dev && k.Ino == c.key.ino && c.size >= k.Offset &&
				(k.FPLen == 0 || (fingerprint{n: k.FPLen, hash: k.FPHash}).matches(c.f))
		})
		if i < 0 {
			rest = append(rest, c)
			continue
		}
		k := t.known[i]
		t.known = slices.Delete(t.known, i, i+1)
		t.start(c, k.Offset, k.Skipping, now)
	}
	for _, c := range rest {
		if i := slices.IndexFunc(t.handoffs, func(h handoff) bool { return h.fp.matches(c.f) }); i >= 0 {
			h := t.handoffs[i]
			t.handoffs = slices.Delete(t.handoffs, i, i+1)
			t.log.Info("reading the rest of a truncated file from its copy", "path", c.path, "offset", h.offset)
			t.metrics.rotation("copytruncate")
			t.start(c, h.offset, false, now)
			continue
		}
		if i := slices.IndexFunc(t.order, func(r *reader) bool { return r.fp.n > 0 && r.fp.matches(c.f) }); i >= 0 {
			// A copy of a stream still being read: reading it would
			// duplicate. Looked at again next scan while the globs match it.
			c.f.Close()
			continue
		}
		if slices.ContainsFunc(t.order, func(r *reader) bool { return shortPrefixOf(c, r) }) {
			// All it holds yet is the start of a file being read: a copy
			// being written (copytruncate copies, then truncates), or a new
			// file that begins like the old one. Kept open and looked at
			// again next scan, when it has diverged or the original was
			// truncated; a rotation cannot lose it meanwhile.
			t.deferCandidate(c, now)
			continue
		}
		// A copy made while the agent was down: the checkpoint's position of
		// the file it was copied from.
		if i := slices.IndexFunc(t.known, func(k checkpoint.File) bool {
			return k.FPLen > 0 && c.size >= k.Offset && (fingerprint{n: k.FPLen, hash: k.FPHash}).matches(c.f)
		}); i >= 0 {
			k := t.known[i]
			t.known = slices.Delete(t.known, i, i+1)
			t.start(c, k.Offset, k.Skipping, now)
			continue
		}
		t.start(c, 0, false, now)
	}
}

func (t *Tailer) start(c candidate, off int64, skipping bool, now time.Time) {
	r := &reader{key: c.key, path: c.path, f: c.f, fp: c.fp, readOff: off, lineStart: off, skipping: skipping,
		matched: true, lastGrowth: now, size: c.size}
	t.readers[c.key] = r
	t.order = append(t.order, r)
	t.watch(filepath.Dir(c.path))
	t.metrics.opened(r.path)
	t.log.Debug("tailing", "path", c.path, "offset", off)
}

// checkTruncation starts a file over when it shrank below what was read or
// its first bytes changed, leaving a handoff for its copy.
func (t *Tailer) checkTruncation(r *reader, now time.Time) {
	fi, err := r.f.Stat()
	if err != nil {
		return
	}
	r.size = fi.Size()
	if r.size >= r.readOff && (r.fp.n == 0 || r.fp.matches(r.f)) {
		return
	}
	t.handoffs = append(t.handoffs, handoff{fp: r.fp, offset: r.commitOffset(), at: now})
	t.log.Info("file truncated or overwritten: reading it from the start", "path", r.path, "size", r.size, "read_offset", r.readOff)
	t.metrics.rotation("truncate")
	r.reset()
	r.fp, _ = readFingerprint(r.f, t.cfg.FingerprintBytes)
	r.lastGrowth = now
}

// globBase is the directory part of a glob before its first
// metacharacter, where a new matching file or directory appears.
func globBase(g string) string {
	i := strings.IndexAny(g, "*?[\\")
	if i < 0 {
		return filepath.Dir(g)
	}
	return filepath.Dir(g[:i+1])
}

func (t *Tailer) watch(dir string) {
	if t.watcher == nil || t.watched[dir] {
		return
	}
	if err := t.watcher.Add(dir); err != nil {
		return // not there yet, or out of watches: polling covers it
	}
	t.watched[dir] = true
}

// Read reads up to maxBytes over the files, round robin, and returns the
// entries completed. Entries and their Data are valid until the next Read.
// drain flushes unterminated last lines and multiline records at once
// (shutdown), rather than after FlushAfter.
func (t *Tailer) Read(ctx context.Context, maxBytes int, drain bool) ([]Entry, error) {
	t.arena = t.arena[:0]
	t.entries = t.entries[:0]
	type span struct{ from, to int }
	var spans []span
	emit := func(r *reader, data []byte, start int64, trunc bool) {
		from := len(t.arena)
		t.arena = append(t.arena, data...)
		spans = append(spans, span{from, len(t.arena)})
		t.entries = append(t.entries, Entry{Path: r.path, ID: r.id(start), Offset: start, Truncated: trunc})
		r.linesRead++
	}
	now := time.Now()
	budget := maxBytes
	n := len(t.order)
	for i := 0; i < n && budget > 0; i++ {
		r := t.order[(t.next+i)%n]
		for budget > 0 {
			want := min(len(t.chunk), budget)
			if t.limiter != nil {
				want = min(want, t.limiter.Burst())
				if err := t.limiter.WaitN(ctx, want); err != nil {
					break
				}
			}
			got, err := r.readChunk(t.chunk[:want])
			if err != nil {
				t.problem(r.path, "read failed", err)
				break
			}
			if got == 0 {
				break
			}
			// Truncated (copytruncate) and written again since the last
			// Scan? Then these bytes may be the new content at old offsets:
			// they are put back, and the Scan (wanted now) hands the old
			// stream's rest over to the copy from before this chunk.
			if r.fp.n > 0 && !r.fp.matches(r.f) {
				r.buf = r.buf[:len(r.buf)-got]
				r.readOff -= int64(got)
				t.scanWanted.Store(true)
				break
			}
			budget -= got
			r.lastGrowth = now
			t.metrics.read(r.path, got)
			if r.fp.n < t.cfg.FingerprintBytes && r.readOff > int64(r.fp.n) {
				r.fp, _ = readFingerprint(r.f, t.cfg.FingerprintBytes)
			}
			r.consume(t.cfg.MaxLineBytes, t.cfg.Multiline, t.cfg.CRI, now, false, emit)
		}
	}
	t.next++
	// Quiet files: flush what waits for a line that may never come.
	for _, r := range t.order {
		quiet := drain || now.Sub(r.lastGrowth) >= t.cfg.FlushAfter
		if !quiet {
			continue
		}
		r.consume(t.cfg.MaxLineBytes, t.cfg.Multiline, t.cfg.CRI, now, true, emit)
		r.flushPending(emit)
	}
	for _, r := range t.order {
		if r.linesRead > 0 {
			t.metrics.addLines(r.path, r.linesRead)
			r.linesRead = 0
		}
	}
	t.release(now)
	for i, s := range spans {
		t.entries[i].Data = t.arena[s.from:s.to]
	}
	if err := ctx.Err(); err != nil && len(t.entries) == 0 {
		return nil, err
	}
	return t.entries, nil
}

// release lets go of files no longer matched (rotated away, deleted,
// replaced) once read to their end and quiet for Linger.
func (t *Tailer) release(now time.Time) {
	t.order = slices.DeleteFunc(t.order, func(r *reader) bool {
		if r.matched || r.readOff < r.size || len(r.buf) > 0 || r.pendingSet || now.Sub(r.lastGrowth) < t.cfg.Linger {
			return false
		}
		if fi, err := r.f.Stat(); err == nil && fi.Size() > r.readOff {
			return false
		}
		r.f.Close()
		delete(t.readers, r.key)
		t.remember(t.fileState(r, true))
		t.metrics.closed(r.path)
		t.log.Debug("released", "path", r.path, "offset", r.readOff)
		return true
	})
}

func (t *Tailer) remember(k checkpoint.File) {
	t.known = append(t.known, k)
	if len(t.known) > maxKnown {
		t.known = t.known[len(t.known)-maxKnown:]
	}
}

func (t *Tailer) fileState(r *reader, released bool) checkpoint.File {
	return checkpoint.File{Path: r.path, Dev: r.key.dev, Ino: r.key.ino, FPLen: r.fp.n, FPHash: r.fp.hash,
		Offset: r.commitOffset(), Skipping: r.skipping && !r.pendingSet && len(r.buf) == 0, Released: released}
}

// Positions returns where every file stands once everything Read returned
// was accepted: the open files' and the remembered ones'.
func (t *Tailer) Positions() []checkpoint.File {
	out := make([]checkpoint.File, 0, len(t.order)+len(t.known))
	for _, r := range t.order {
		out = append(out, t.fileState(r, false))
	}
	return append(out, t.known...)
}

// CaughtUp reports whether every open file was read to its end (as of the
// last Scan) and nothing waits in a buffer.
func (t *Tailer) CaughtUp() bool {
	for _, r := range t.order {
		fi, err := r.f.Stat()
		if err != nil {
			continue
		}
		if fi.Size() > r.readOff || len(r.buf) > 0 || r.pendingSet {
			return false
		}
	}
	return true
}

// Lag is the bytes not yet read, per path.
func (t *Tailer) Lag() map[string]int64 {
	out := make(map[string]int64, len(t.order))
	for _, r := range t.order {
		if fi, err := r.f.Stat(); err == nil {
			out[r.path] += max(0, fi.Size()-r.readOff)
		}
	}
	return out
}

// String describes the open files, for logs.
func (t *Tailer) String() string {
	var b strings.Builder
	for _, r := range t.order {
		fmt.Fprintf(&b, "%s@%d ", r.path, r.readOff)
	}
	return b.String()
}

// deferCandidate keeps c open to look at again next Scan, for at most
// handoffLife.
func (t *Tailer) deferCandidate(c candidate, now time.Time) {
	if !c.since.IsZero() && now.Sub(c.since) > handoffLife {
		c.f.Close()
		return
	}
	if c.since.IsZero() {
		c.since = now
	}
	t.deferred = append(t.deferred, c)
}

// shortPrefixOf reports whether everything c holds so far (less than r's
// fingerprint) is the start of r's file.
func shortPrefixOf(c candidate, r *reader) bool {
	if c.fp.n == 0 || c.fp.n >= r.fp.n {
		return false
	}
	return c.fp.matches(r.f)
}
