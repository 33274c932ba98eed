package tail

import (
	"bytes"
	"testing"
	"time"
)

// FuzzConsume feeds a file's bytes to the line splitter in chunks of
// arbitrary sizes: the lines must be the file's lines whatever the chunk
// boundaries, cut at the maximum with the flag, with every entry's offset
// the start of its line and the commit offset never past an unemitted byte.
func FuzzConsume(f *testing.F) {
	f.Add([]byte("a\nbb\n\nccc"), []byte{1, 2, 3}, uint8(4))
	f.Add([]byte("x\n"+string(bytes.Repeat([]byte("y"), 50))+"\nz\n"), []byte{7}, uint8(8))
	f.Fuzz(func(t *testing.T, data, cuts []byte, maxLine uint8) {
		max := int(maxLine%64) + 1
		// Reference: split on '\n', keep only terminated lines.
		var want []string
		var wantOff []int64
		off := int64(0)
		for {
			i := bytes.IndexByte(data[off:], '\n')
			if i < 0 {
				break
			}
			line := data[off : off+int64(i)]
			if len(line) > max {
				line = line[:max]
			}
			want = append(want, string(line))
			wantOff = append(wantOff, off)
			off += int64(i) + 1
		}
		r := &reader{}
		var got []string
		var gotOff []int64
		emit := func(_ *reader, d []byte, start int64, trunc bool) {
			if trunc && len(d) != max {
				t.Fatalf("truncated entry of %d bytes, max %d", len(d), max)
			}
			got = append(got, string(d))
			gotOff = append(gotOff, start)
		}
		pos := 0
		for i := 0; pos < len(data); i++ {
			n := 1
			if len(cuts) > 0 {
				n = int(cuts[i%len(cuts)])%17 + 1
			}
			n = min(n, len(data)-pos)
			r.buf = append(r.buf, data[pos:pos+n]...)
			r.readOff += int64(n)
			pos += n
			r.consume(max, nil, false, time.Time{}, false, emit)
			if c := r.commitOffset(); c > r.readOff {
				t.Fatalf("commit offset %d past read offset %d", c, r.readOff)
			}
		}
		// A line longer than max is emitted before its newline arrives, so
		// the splitter may emit the cut prefix of a final unterminated line.
		if len(got) > len(want) {
			extra := got[len(want)]
			if len(got) != len(want)+1 || len(extra) != max || gotOff[len(want)] != off {
				t.Fatalf("got %q, want %q", got, want)
			}
			got, gotOff = got[:len(want)], gotOff[:len(want)]
		}
		if len(got) != len(want) {
			t.Fatalf("got %d lines %q, want %d %q", len(got), got, len(want), want)
		}
		for i := range want {
			if got[i] != want[i] || gotOff[i] != wantOff[i] {
				t.Fatalf("line %d: got %q@%d, want %q@%d", i, got[i], gotOff[i], want[i], wantOff[i])
			}
		}
	})
}
