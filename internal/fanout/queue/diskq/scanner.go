package diskq

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// ErrTorn says a frame was cut short: a crash in the middle of a write.
var ErrTorn = errors.New("diskq: torn frame")

// ErrCorrupt says a frame's length or checksum is wrong.
var ErrCorrupt = errors.New("diskq: corrupt frame")

// Scanner reads frames from a segment in order and stops at the first one
// that is torn or corrupt. It is what Open uses to validate segments and
// what the fuzz test drives.
type Scanner struct {
	r   *bufio.Reader
	msg []byte
	err error
}

// NewScanner returns a Scanner reading frames from r.
func NewScanner(r *bufio.Reader) *Scanner { return &Scanner{r: r} }

// Next reads the next frame; it returns false at the end of the data or at
// the first bad frame (see Err).
func (s *Scanner) Next() bool {
	if s.err != nil {
		return false
	}
	msg, err := readFrame(s.r, -1)
	if err != nil {
		if err != io.EOF {
			s.err = err
		} else {
			s.err = io.EOF
		}
		s.msg = nil
		return false
	}
	s.msg = msg
	return true
}

// Message returns the payload of the current frame. It is valid until the
// next call to Next.
func (s *Scanner) Message() []byte { return s.msg }

// Err returns why scanning stopped: nil at a clean end, ErrTorn or
// ErrCorrupt (wrapped) otherwise.
func (s *Scanner) Err() error {
	if s.err == io.EOF {
		return nil
	}
	return s.err
}

// peekFrameLen returns the full size (header included) of the next frame
// without consuming it.
func peekFrameLen(r *bufio.Reader) (int64, error) {
	h, err := r.Peek(frameHeader)
	if err != nil {
		if err == io.EOF && len(h) == 0 {
			return 0, io.EOF
		}
		return 0, fmt.Errorf("%w: %d header bytes", ErrTorn, len(h))
	}
	n := binary.LittleEndian.Uint32(h)
	if n > MaxMessageBytes {
		return 0, fmt.Errorf("%w: length %d", ErrCorrupt, n)
	}
	return int64(frameHeader) + int64(n), nil
}

// readFrame reads one frame and returns a fresh copy of its payload. limit
// (when >= 0) is how many bytes are known to be valid: a frame claiming
// more is corrupt. It returns io.EOF only at a clean frame boundary.
func readFrame(r *bufio.Reader, limit int64) ([]byte, error) {
	size, err := peekFrameLen(r)
	if err != nil {
		return nil, err
	}
	if limit >= 0 && size > limit {
		return nil, fmt.Errorf("%w: frame of %d bytes past the end (%d)", ErrCorrupt, size, limit)
	}
	var h [frameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTorn, err)
	}
	msg := make([]byte, size-frameHeader)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrTorn, err)
	}
	if crc32.Checksum(msg, castagnoli) != binary.LittleEndian.Uint32(h[4:]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	return msg, nil
}
