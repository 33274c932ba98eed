package checkpoint

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	s, err := Load(dir)
	if err != nil || len(s.Files) != 0 || s.Output != -1 {
		t.Fatalf("empty dir: %+v %v", s, err)
	}
	want := State{Version: version, Output: 42, Files: []File{{Path: "/a", Dev: 1, Ino: 2, FPLen: 10, FPHash: 99, Offset: 7}}}
	if err := Save(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v %v", got, err)
	}
	// No temporary files left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("dir holds %v", ents)
	}
}

func TestLoadNamesTheBrokenFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, FileName), []byte("{garbage"), 0o600)
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), FileName) {
		t.Fatalf("err = %v", err)
	}
}

func TestSaveFailureKeepsOldCheckpoint(t *testing.T) {
	dir := t.TempDir()
	old := State{Output: 1, Files: []File{{Path: "/x", Offset: 5}}}
	if err := Save(dir, old); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		// root ignores directory permissions; a missing directory fails for everyone.
		if err := Save(filepath.Join(dir, "missing"), State{}); err == nil {
			t.Fatal("save into a missing directory succeeded")
		}
	} else {
		os.Chmod(dir, 0o500)
		defer os.Chmod(dir, 0o700)
		if err := Save(dir, State{Output: 9}); err == nil {
			t.Fatal("save into a read-only directory succeeded")
		}
	}
	got, err := Load(dir)
	if err != nil || got.Output != 1 || got.Files[0].Offset != 5 {
		t.Fatalf("old checkpoint lost: %+v %v", got, err)
	}
}
