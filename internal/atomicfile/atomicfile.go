// Package atomicfile writes files so that a reader sees either the old content or the new one,
// never a torn write, and so that the new content survives a crash once Write returns.
//
// A path that is a symbolic link is written through: the new content replaces the link's final
// target and the link stays a link (an operator may have linked haproxy.cfg into a directory
// of their own). A path that exists and is not a regular file is refused rather than replaced.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrNotRegular is returned when the path, or the final target of the link it is, exists and
// is not a regular file (a directory, a fifo, a device, a socket): replacing it with a file
// would break whatever uses it.
var ErrNotRegular = errors.New("not a regular file")

// maxLinks bounds the links followed through a dangling chain, like the kernel's MAXSYMLINKS.
const maxLinks = 40

// Write replaces path with data: it writes a temporary file in the same directory, fsyncs it,
// renames it over path and fsyncs the directory. perm applies to the new file. When path is a
// symbolic link, the link's final target is replaced instead (see the package comment).
func Write(path string, data []byte, perm os.FileMode) error {
	tmp, err := WriteTemp(path, data, perm)
	if err != nil {
		return err
	}
	return Install(tmp, path)
}

// WriteTemp writes data to a new synced temporary file beside path and returns its name, so
// that the caller can check it (haproxy -c) before installing it with Install. When path is a
// symbolic link the temporary file is beside the link's final target, so that Install can
// rename it there.
func WriteTemp(path string, data []byte, perm os.FileMode) (string, error) {
	target, err := resolve(path)
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("create temp file for %s: %w", path, err)
	}
	name := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(name)
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return name, nil
}

// Install renames tmp over path, or over the final target of path when it is a symbolic link,
// and fsyncs the directory it renamed into; on failure tmp is removed.
func Install(tmp, path string) error {
	target, err := resolve(path)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("install %s: %w", path, err)
	}
	if err := os.Rename(tmp, target); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("install %s: %w", path, err)
	}
	return syncDir(filepath.Dir(target))
}

// resolve returns the file that a write of path replaces or creates: path itself unless it is
// a symbolic link, else the link's final target. It fails if that exists and is not a regular
// file, and for a dangling link if the directory the link points into does not exist.
func resolve(path string) (string, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return path, nil // a new file; creating the temp file reports a missing directory
	case err != nil:
		return "", err
	case fi.Mode()&fs.ModeSymlink == 0:
		if !fi.Mode().IsRegular() {
			return "", fmt.Errorf("%w (%s)", ErrNotRegular, fileType(fi.Mode()))
		}
		return path, nil
	}
	target, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		return dangling(path)
	}
	if err != nil {
		return "", fmt.Errorf("resolve link: %w", err)
	}
	fi, err = os.Stat(target)
	if err != nil {
		return "", fmt.Errorf("resolve link: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("link to %s: %w (%s)", target, ErrNotRegular, fileType(fi.Mode()))
	}
	return target, nil
}

// dangling follows the chain of links that starts at path to the name that does not exist,
// which a write creates, provided that its directory exists.
func dangling(path string) (string, error) {
	cur := path
	for range maxLinks {
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			dir := filepath.Dir(cur)
			di, err := os.Stat(dir)
			if err != nil {
				return "", fmt.Errorf("dangling link to %s: %w", cur, err)
			}
			if !di.IsDir() {
				return "", fmt.Errorf("dangling link to %s: %s is not a directory", cur, dir)
			}
			return cur, nil
		}
		if err != nil {
			return "", fmt.Errorf("resolve link: %w", err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			// Created since EvalSymlinks looked.
			if !fi.Mode().IsRegular() {
				return "", fmt.Errorf("link to %s: %w (%s)", cur, ErrNotRegular, fileType(fi.Mode()))
			}
			return cur, nil
		}
		next, err := os.Readlink(cur)
		if err != nil {
			return "", fmt.Errorf("resolve link: %w", err)
		}
		if !filepath.IsAbs(next) {
			next = filepath.Join(filepath.Dir(cur), next)
		}
		cur = next
	}
	return "", fmt.Errorf("resolve link: more than %d links", maxLinks)
}

func fileType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a fifo"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	default:
		return "mode " + m.Type().String()
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
