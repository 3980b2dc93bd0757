package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestWriteThroughLinks writes each kind of path with Write and with WriteTemp+Install: a link
// must stay a link and its final target get the content; what is not a regular file is refused
// and left as it was.
func TestWriteThroughLinks(t *testing.T) {
	// Each setup builds the case in dir and returns the path to write and the file that must
	// get the content ("" when the write must fail).
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) (path, target string)
		wantErr error // nil: success; errAny: any error
	}{
		{name: "new file", setup: func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "f")
			return p, p
		}},
		{name: "regular file", setup: func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "f")
			writeFile(t, p, "old")
			return p, p
		}},
		{name: "absolute link", setup: func(t *testing.T, dir string) (string, string) {
			target := filepath.Join(dir, "real", "haproxy.cfg")
			mkdir(t, filepath.Dir(target))
			writeFile(t, target, "old")
			return link(t, target, filepath.Join(dir, "haproxy.cfg")), target
		}},
		{name: "relative link", setup: func(t *testing.T, dir string) (string, string) {
			target := filepath.Join(dir, "real", "haproxy.cfg")
			mkdir(t, filepath.Dir(target))
			writeFile(t, target, "old")
			mkdir(t, filepath.Join(dir, "etc"))
			return link(t, "../real/haproxy.cfg", filepath.Join(dir, "etc", "haproxy.cfg")), target
		}},
		{name: "chain of two links", setup: func(t *testing.T, dir string) (string, string) {
			target := filepath.Join(dir, "c", "real")
			mkdir(t, filepath.Join(dir, "b"))
			mkdir(t, filepath.Dir(target))
			writeFile(t, target, "old")
			second := link(t, "../c/real", filepath.Join(dir, "b", "second"))
			return link(t, second, filepath.Join(dir, "first")), target
		}},
		{name: "dangling link", setup: func(t *testing.T, dir string) (string, string) {
			target := filepath.Join(dir, "real", "new.cfg")
			mkdir(t, filepath.Dir(target))
			return link(t, "real/new.cfg", filepath.Join(dir, "l")), target
		}},
		{name: "dangling chain", setup: func(t *testing.T, dir string) (string, string) {
			target := filepath.Join(dir, "real", "new.cfg")
			mkdir(t, filepath.Dir(target))
			second := link(t, "real/new.cfg", filepath.Join(dir, "second"))
			return link(t, second, filepath.Join(dir, "first")), target
		}},
		{name: "dangling link into a missing dir", wantErr: errAny, setup: func(t *testing.T, dir string) (string, string) {
			return link(t, "missing/new.cfg", filepath.Join(dir, "l")), ""
		}},
		{name: "directory", wantErr: ErrNotRegular, setup: func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "d")
			mkdir(t, p)
			return p, ""
		}},
		{name: "link to a directory", wantErr: ErrNotRegular, setup: func(t *testing.T, dir string) (string, string) {
			mkdir(t, filepath.Join(dir, "d"))
			return link(t, "d", filepath.Join(dir, "l")), ""
		}},
		{name: "fifo", wantErr: ErrNotRegular, setup: func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "fifo")
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
			return p, ""
		}},
		{name: "device", wantErr: ErrNotRegular, setup: func(t *testing.T, dir string) (string, string) {
			return link(t, os.DevNull, filepath.Join(dir, "null")), ""
		}},
	}
	writers := []struct {
		name  string
		write func(path string, data []byte, perm os.FileMode) error
	}{
		{"Write", Write},
		{"WriteTemp+Install", func(path string, data []byte, perm os.FileMode) error {
			tmp, err := WriteTemp(path, data, perm)
			if err != nil {
				return err
			}
			return Install(tmp, path)
		}},
	}
	for _, tt := range tests {
		for _, w := range writers {
			t.Run(tt.name+"/"+w.name, func(t *testing.T) {
				dir := t.TempDir()
				path, target := tt.setup(t, dir)
				before, _ := os.Lstat(path)
				err := w.write(path, []byte("new"), 0o640)
				switch {
				case tt.wantErr == nil && err != nil:
					t.Fatalf("%s(%s) = %v, want nil", w.name, path, err)
				case tt.wantErr == errAny && err == nil, tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
					t.Fatalf("%s(%s) = %v, want %v", w.name, path, err, tt.wantErr)
				}
				if err == nil {
					if got, err := os.ReadFile(target); err != nil || string(got) != "new" {
						t.Errorf("target %s = %q, %v; want %q", target, got, err, "new")
					}
					fi, err := os.Stat(target)
					if err != nil {
						t.Fatal(err)
					}
					if got, want := fi.Mode().Perm(), os.FileMode(0o640); got != want {
						t.Errorf("target mode = %v, want %v", got, want)
					}
				} else if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name %s", err, path)
				}
				// The path is what it was: a link stays a link (to the same place), a refused
				// directory or fifo stays one.
				if before != nil {
					after, err := os.Lstat(path)
					if err != nil {
						t.Fatalf("path gone after the write: %v", err)
					}
					if got, want := after.Mode().Type(), before.Mode().Type(); got != want {
						t.Errorf("path type = %v, want %v", got, want)
					}
				}
				if tmps := temps(t, dir); len(tmps) != 0 {
					t.Errorf("temp files left behind: %v", tmps)
				}
			})
		}
	}
}

// TestWriteTempBesideTarget: the temp file of a link is in its target's directory, so that
// Install's rename stays within one directory (one file system).
func TestWriteTempBesideTarget(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real", "f")
	mkdir(t, filepath.Dir(target))
	writeFile(t, target, "old")
	path := link(t, target, filepath.Join(dir, "f"))
	tmp, err := WriteTemp(path, []byte("new"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := filepath.Dir(tmp), filepath.Dir(target); got != want {
		t.Errorf("temp file in %s, want %s", got, want)
	}
	if err := Install(tmp, path); err != nil {
		t.Fatal(err)
	}
	if got, err := os.Readlink(path); err != nil || got != target {
		t.Errorf("link = %q, %v; want %q", got, err, target)
	}
}

// errAny is a wantErr that accepts any error.
var errAny = errors.New("any error")

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o750); err != nil {
		t.Fatal(err)
	}
}

// link creates a symbolic link at name pointing to target and returns name.
func link(t *testing.T, target, name string) string {
	t.Helper()
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
	return name
}

// temps lists the temp files under dir.
func temps(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(d.Name(), ".tmp-") {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
