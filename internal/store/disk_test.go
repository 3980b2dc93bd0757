//go:build linux

package store

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tinyDisk mounts a tmpfs of size (such as "16k") on a new directory and returns it; the
// test is skipped when it cannot mount (not root, no CAP_SYS_ADMIN in a container).
func tinyDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if out, err := mount(t, "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	// Registered after t.TempDir's cleanup, so it runs before the directory is removed.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, strings.TrimSpace(string(out)))
		}
	})
	return dir
}

// mount runs mount(8) with args, for at most 10 s.
func mount(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mount", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestFullDisk fills a real, tiny file system: the Put that does not fit fails with
// ErrNotSaved and ENOSPC, leaves memory as on disk and no temp file, and succeeds once there
// is room again.
func TestFullDisk(t *testing.T) {
	dir := tinyDisk(t, "16k")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var failed int
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatal("1000 members fit on a 16k file system, want a full disk")
		}
		if _, err = s.Put("web", member(i)); err != nil {
			failed = i
			break
		}
	}
	t.Logf("disk full at member %d: %v", failed, err)
	if !errors.Is(err, ErrNotSaved) {
		t.Errorf("Put on a full disk = %v, want %v", err, ErrNotSaved)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Put on a full disk = %v, want %v", err, syscall.ENOSPC)
	}
	if failed == 0 {
		t.Fatal("the first Put failed: the disk was full from the start")
	}
	checkAsOnDisk(t, s, dir)
	if got, want := len(s.Snapshot().Members["web"]), failed; got != want {
		t.Errorf("members after the failed Put = %d, want %d", got, want)
	}
	if _, ok := s.Get("web", member(failed).Name); ok {
		t.Errorf("member %s visible although not saved", member(failed).Name)
	}
	checkNoTemp(t, dir)

	// Fix the cause, retry: saved.
	if out, err := mount(t, "-o", "remount,size=1m", dir); err != nil {
		t.Fatalf("grow the tmpfs: %v: %s", err, out)
	}
	if changed, err := s.Put("web", member(failed)); err != nil || !changed {
		t.Fatalf("Put retried with room = %v, %v; want true, nil", changed, err)
	}
	checkAsOnDisk(t, s, dir)
	checkNoTemp(t, dir)
}

// checkNoTemp fails the test if a temp file of the state file is left in dir.
func checkNoTemp(t *testing.T, dir string) {
	t.Helper()
	left, err := filepath.Glob(filepath.Join(dir, "."+FileName+".tmp-*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}
