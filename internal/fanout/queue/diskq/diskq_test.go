package diskq

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func open(t testing.TB, dir string, mod func(*Options)) *Log {
	t.Helper()
	o := Options{Dir: dir, SegmentBytes: 1 << 10, Fsync: FsyncNever}
	if mod != nil {
		mod(&o)
	}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func msgs(from, to int) [][]byte {
	var out [][]byte
	for i := from; i < to; i++ {
		out = append(out, []byte(fmt.Sprintf("message-%04d-%s", i, bytes.Repeat([]byte{'x'}, i%37))))
	}
	return out
}

// readAll reads and commits everything.
func readAll(t testing.TB, l *Log) []string {
	t.Helper()
	var got []string
	for {
		m, tok, err := l.Read(7, 300)
		if err != nil {
			t.Fatal(err)
		}
		if len(m) == 0 {
			return got
		}
		for _, b := range m {
			got = append(got, string(b))
		}
		if err := l.Commit(tok); err != nil {
			t.Fatal(err)
		}
	}
}

func want(from, to int) []string {
	var out []string
	for _, m := range msgs(from, to) {
		out = append(out, string(m))
	}
	return out
}

func equal(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("message %d: got %q, want %q", i, got[i], want[i])
		}
	}
}

func TestAppendReadAcrossSegmentsAndRestart(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, nil)
	if err := l.Append(msgs(0, 100)); err != nil {
		t.Fatal(err)
	}
	// Read and commit the first 30, read 10 more without committing.
	var got []string
	for len(got) < 30 {
		m, tok, err := l.Read(30-len(got), 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range m {
			got = append(got, string(b))
		}
		l.Commit(tok)
	}
	if m, _, _ := l.Read(10, 0); len(m) != 10 {
		t.Fatalf("read %d", len(m))
	}
	if n, _ := l.Len(); n != 70 {
		t.Fatalf("Len = %d, want 70 (uncommitted included)", n)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) < 3 {
		t.Fatalf("want several segments, got %d", len(segs))
	}
	l.Sync()  // what the fsync timer does; without it up to 100ms of commits replay again
	l.crash() // no Close: the uncommitted 10 come back
	l2 := open(t, dir, nil)
	defer l2.Close()
	equal(t, append(got, readAll(t, l2)...), want(0, 100))
	if n, b := l2.Len(); n != 0 || b != 0 {
		t.Fatalf("Len after all committed = %d, %d", n, b)
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "*.seg")); len(segs) != 1 {
		t.Fatalf("consumed segments not deleted: %v", segs)
	}
}

func TestOutOfOrderCommit(t *testing.T) {
	l := open(t, t.TempDir(), nil)
	defer l.Close()
	l.Append(msgs(0, 30))
	_, t1, _ := l.Read(10, 0)
	_, t2, _ := l.Read(10, 0)
	_, t3, _ := l.Read(10, 0)
	l.Commit(t3)
	l.Commit(t2)
	if l.committed != (pos{seg: 1}) {
		t.Fatalf("cursor moved past an uncommitted batch: %+v", l.committed)
	}
	l.Commit(t1)
	if n, _ := l.Len(); n != 0 {
		t.Fatalf("Len = %d", n)
	}
	if err := l.Commit(t1); err == nil {
		t.Fatal("double commit accepted")
	}
}

func TestTornTailIsTruncated(t *testing.T) {
	for name, tail := range map[string][]byte{
		"short header":  {1, 2, 3},
		"short payload": AppendFrame(nil, []byte("a message cut in the middle"))[:20],
		"bad checksum":  func() []byte { f := AppendFrame(nil, []byte("flipped")); f[len(f)-1] ^= 1; return f }(),
		"huge length":   {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l := open(t, dir, func(o *Options) { o.SegmentBytes = 1 << 20 })
			l.Append(msgs(0, 10))
			l.Close()
			seg := filepath.Join(dir, segName(1))
			f, _ := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
			f.Write(tail)
			f.Close()

			l = open(t, dir, func(o *Options) { o.SegmentBytes = 1 << 20 })
			defer l.Close()
			st := l.Stats()
			if st.TruncatedTimes != 1 || st.TruncatedBytes != int64(len(tail)) {
				t.Fatalf("stats %+v, want one truncation of %d bytes", st, len(tail))
			}
			// Appends after recovery land on a clean frame boundary.
			l.Append(msgs(10, 12))
			equal(t, readAll(t, l), want(0, 12))
		})
	}
}

func TestSizeCapAndDropOldest(t *testing.T) {
	l := open(t, t.TempDir(), func(o *Options) { o.MaxBytes = 4 << 10 })
	defer l.Close()
	n := 0
	for ; ; n++ {
		if err := l.Append(msgs(n, n+1)); err != nil {
			if !errors.Is(err, ErrFull) {
				t.Fatal(err)
			}
			break
		}
	}
	dropped, _, err := l.DropOldest()
	if err != nil || dropped == 0 {
		t.Fatalf("DropOldest = %d, %v", dropped, err)
	}
	if err := l.Append(msgs(n, n+1)); err != nil {
		t.Fatalf("append after drop: %v", err)
	}
	got := readAll(t, l)
	if int64(len(got)) != int64(n+1)-dropped {
		t.Fatalf("read %d, want %d", len(got), int64(n+1)-dropped)
	}
	equal(t, got, want(int(dropped), n+1)) // the oldest went, in order
}

func TestFsyncPolicies(t *testing.T) {
	for _, p := range []FsyncPolicy{FsyncAlways, FsyncInterval, FsyncNever} {
		t.Run(string(p), func(t *testing.T) {
			dir := t.TempDir()
			l := open(t, dir, func(o *Options) { o.Fsync = p; o.FsyncInterval = 1 })
			for i := 0; i < 20; i++ {
				if err := l.Append(msgs(i, i+1)); err != nil {
					t.Fatal(err)
				}
			}
			m, tok, _ := l.Read(5, 0)
			l.Commit(tok)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = open(t, dir, nil)
			defer l.Close()
			equal(t, append(strs(m), readAll(t, l)...), want(0, 20))
		})
	}
}

func strs(m [][]byte) []string {
	var out []string
	for _, b := range m {
		out = append(out, string(b))
	}
	return out
}

// FuzzScanner feeds arbitrary bytes to the segment reader: it must never
// panic, and what it accepts must be exactly a prefix of valid frames.
func FuzzScanner(f *testing.F) {
	f.Add([]byte{})
	f.Add(AppendFrame(AppendFrame(nil, []byte("one")), []byte("two")))
	f.Add(AppendFrame(nil, []byte("torn"))[:9])
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		sc := NewScanner(bufio.NewReader(bytes.NewReader(data)))
		var again []byte
		for sc.Next() {
			again = AppendFrame(again, sc.Message())
		}
		if !bytes.HasPrefix(data, again) {
			t.Fatalf("accepted frames are not a prefix of the input")
		}
		if sc.Err() == nil && len(again) != len(data) {
			t.Fatalf("clean end after %d of %d bytes", len(again), len(data))
		}
		if sc.Err() != nil && !errors.Is(sc.Err(), ErrTorn) && !errors.Is(sc.Err(), ErrCorrupt) {
			t.Fatalf("unexpected error %v", sc.Err())
		}
	})
}
