// Package statelock keeps two clbd processes from sharing one state directory: each would
// write state.json and haproxy.cfg over the other's, and a registration acknowledged by one
// would be lost when the other writes.
//
// The lock is an exclusive flock(2) on clbd.lock in the state directory. The kernel releases it
// when the holder exits, however it exits, so a crash never leaves a stale lock to clean up;
// the file itself stays, with the last holder's PID in it for the error message.
package statelock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// FileName is the lock file inside the state directory.
const FileName = "clbd.lock"

// ErrLocked is returned by Acquire when another holder has the lock: another clbd process
// (or another Acquire in this one) uses the state directory.
var ErrLocked = errors.New("in use by another clbd")

// A holder writes its PID just after taking the lock: a contender that finds the file still
// empty rereads it a few times before giving up on naming the holder.
const (
	pidReads    = 5
	pidInterval = 20 * time.Millisecond
)

// Lock is a held lock on a state directory.
type Lock struct {
	f *os.File
}

// Acquire takes the lock on dir, creating dir and the lock file if needed, and writes this
// process's PID into the file. It does not wait: if the lock is held, by another process or
// by an earlier Acquire in this one, it returns an error wrapping ErrLocked that names the
// holder's PID. The lock is held until Release or until the process exits.
func Acquire(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("lock state dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	// os.OpenFile sets O_CLOEXEC: haproxy and the commands clbd runs do not inherit the lock
	// and keep it after clbd is gone.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock state dir: %w", err)
	}
	// flock locks belong to the open file description, so a second Acquire in this process,
	// with its own open, conflicts with the first like another process would.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("state dir %s is %w (%s): stop it first, or give this one another --state-dir",
				dir, ErrLocked, holder(path))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write pid to %s: %w", path, err)
	}
	if _, err := f.WriteAt(pid, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write pid to %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Release unlocks and closes the lock file; the file stays. Releasing a released lock does
// nothing.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	uerr := unix.Flock(int(f.Fd()), unix.LOCK_UN)
	cerr := f.Close()
	if uerr != nil {
		return fmt.Errorf("unlock %s: %w", f.Name(), uerr)
	}
	if cerr != nil {
		return fmt.Errorf("unlock %s: %w", f.Name(), cerr)
	}
	return nil
}

// holder describes the holder of the lock file at path: "pid 1234", or "pid unknown" when the
// file has no PID (a holder that has just taken the lock, or that is not a clbd).
func holder(path string) string {
	for i := range pidReads {
		if i > 0 {
			time.Sleep(pidInterval)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			break
		}
		s := strings.TrimSpace(string(data))
		if s == "" {
			continue
		}
		if pid, err := strconv.Atoi(s); err == nil && pid > 0 {
			return "pid " + strconv.Itoa(pid)
		}
		break
	}
	return "pid unknown"
}
