package tail

import (
	"hash/fnv"
	"io"
	"os"
	"syscall"
)

// fileKey is a file's device and inode: what stays the same through a
// rename, and what an open descriptor keeps reading.
type fileKey struct{ dev, ino uint64 }

func keyOf(fi os.FileInfo) (fileKey, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true
}

// fingerprint is a hash of a file's first n bytes. Inodes are reused once
// a file is deleted, so a checkpoint's device+inode alone could resume a
// new file at an old file's offset; and a copy (copytruncate) has a new
// inode but the same first bytes. The OpenTelemetry Collector's filelog
// receiver identifies files by the same kind of prefix (fingerprint_size,
// 1 KiB by default).
type fingerprint struct {
	n    int
	hash uint64
}

// readFingerprint hashes f's first min(size, max) bytes.
func readFingerprint(f *os.File, max int) (fingerprint, error) {
	buf := make([]byte, max)
	n, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return fingerprint{}, err
	}
	return fingerprint{n: n, hash: hashBytes(buf[:n])}, nil
}

// matches reports whether f's first fp.n bytes are those fp was taken of.
// An empty fingerprint matches nothing: an empty file says nothing about
// which stream it belongs to.
func (fp fingerprint) matches(f *os.File) bool {
	if fp.n == 0 {
		return false
	}
	buf := make([]byte, fp.n)
	n, err := f.ReadAt(buf, 0)
	if n != fp.n || (err != nil && err != io.EOF) {
		return false
	}
	return hashBytes(buf) == fp.hash
}

func hashBytes(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}
