// Package checkpoint stores the tail agent's read positions (and, with
// --out, the output file's length) so a restart resumes where the last
// accepted batch ended. A checkpoint is replaced atomically: written to a
// temporary file, fsynced, renamed over the old one and the directory
// fsynced, so a crash at any moment leaves either the old or the new one,
// never a torn file.
package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// FileName is the checkpoint's name inside the state directory.
const FileName = "checkpoint.json"

// version is the format version; a checkpoint of another version is refused
// rather than misread.
const version = 1

// File is the position in one tailed file.
type File struct {
	Path string `json:"path"` // where it was last seen (informative: identity is Dev+Inode+fingerprint)
	Dev  uint64 `json:"dev"`
	Ino  uint64 `json:"ino"`
	// FPLen and FPHash fingerprint the file's first FPLen bytes, so a
	// reused inode is told apart and a copy (copytruncate) recognised.
	FPLen  int    `json:"fp_len"`
	FPHash uint64 `json:"fp_hash"`
	// Offset is where reading resumes: the end of the last accepted line.
	Offset int64 `json:"offset"`
	// Skipping: the line at Offset was already emitted cut at the maximum
	// line size; its rest is skipped up to the next newline.
	Skipping bool `json:"skipping,omitempty"`
	// Released: the file was read to its end and let go (rotated away).
	Released bool `json:"released,omitempty"`
}

// State is one checkpoint.
type State struct {
	Version int    `json:"version"`
	Files   []File `json:"files"`
	// Output is the length of the --out file that holds exactly the
	// lines before the Files' offsets; -1 when there is no such file.
	Output int64 `json:"output"`
}

// Load reads dir's checkpoint. A missing one is an empty State (first start).
func Load(dir string) (State, error) {
	p := filepath.Join(dir, FileName)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return State{Version: version, Output: -1}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("checkpoint %s: %w", p, err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("checkpoint %s: %w (delete it to start over from the files' beginning)", p, err)
	}
	if s.Version != version {
		return State{}, fmt.Errorf("checkpoint %s: version %d, this agent reads version %d", p, s.Version, version)
	}
	return s, nil
}

// Save replaces dir's checkpoint with s atomically. On error the previous
// checkpoint is left as it was.
func Save(dir string, s State) error {
	s.Version = version
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, FileName+".tmp*")
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(b); err != nil {
		return fmt.Errorf("checkpoint: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("checkpoint: fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("checkpoint: close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, FileName)); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	ok = true
	// The rename is durable only once the directory entry is.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("checkpoint: fsync %s: %w", dir, err)
	}
	return nil
}
