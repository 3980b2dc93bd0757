package statelock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// helperEnv switches the test binary into the second process of the tests: it calls Acquire on
// the directory the variable names (see TestHelperProcess).
const helperEnv = "STATELOCK_HELPER_DIR"

// helperHoldEnv makes the helper keep the lock until its stdin closes, instead of releasing it.
const helperHoldEnv = "STATELOCK_HELPER_HOLD"

// exitLocked is the helper's exit code when the lock is held.
const exitLocked = 3

// TestHelperProcess is not a test: it is the second clbd of the tests below, run as a child
// process of the test binary. It prints the outcome of Acquire and exits 0 (acquired),
// exitLocked (ErrLocked) or 1 (any other error).
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process for the other tests")
	}
	l, err := Acquire(dir)
	switch {
	case errors.Is(err, ErrLocked):
		fmt.Println(err)
		os.Exit(exitLocked)
	case err != nil:
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Printf("acquired by pid %d\n", os.Getpid())
	if os.Getenv(helperHoldEnv) != "" {
		io.Copy(io.Discard, os.Stdin) // until the test closes stdin or kills this process
	}
	if err := l.Release(); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	os.Exit(0)
}

// helper returns the command of a second process that calls Acquire on dir; it is killed if it
// runs for more than 10 s.
func helper(t *testing.T, dir string, hold bool) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	if hold {
		cmd.Env = append(cmd.Env, helperHoldEnv+"=1")
	}
	return cmd
}

// runHelper runs the second process to its end and returns its exit code and output.
func runHelper(t *testing.T, dir string) (int, string) {
	t.Helper()
	out, err := helper(t, dir, false).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("run helper: %v: %s", err, out)
	return 0, ""
}

func TestAcquireTwiceInOneProcess(t *testing.T) {
	dir := t.TempDir()
	// A PID longer than ours from an earlier holder: Acquire truncates it.
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("99999999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Acquire = %v, want %v", err, ErrLocked)
	}
	want := fmt.Sprintf("state dir %s is in use by another clbd (pid %d): stop it first, or give this one another --state-dir", dir, os.Getpid())
	if got := err.Error(); got != want {
		t.Errorf("second Acquire error:\n got %s\nwant %s", got, want)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Errorf("second Release = %v, want nil", err)
	}
	l2, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after Release = %v", err)
	}
	defer l2.Release()
	if got, want := readFile(t, filepath.Join(dir, FileName)), strconv.Itoa(os.Getpid())+"\n"; got != want {
		t.Errorf("lock file = %q, want %q", got, want)
	}
}

// TestLockedNamesHolder: what the error says about the holder for what the lock file holds.
func TestLockedNamesHolder(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    string
	}{
		{"pid", "4242\n", "(pid 4242)"},
		{"no newline", "17", "(pid 17)"},
		{"empty", "", "(pid unknown)"},
		{"not a pid", "hello\n", "(pid unknown)"},
		{"negative", "-5\n", "(pid unknown)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := Acquire(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Release()
			if err := os.WriteFile(filepath.Join(dir, FileName), []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = Acquire(dir)
			if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Acquire = %v, want %v naming %q", err, ErrLocked, tt.want)
			}
		})
	}
}

// TestLockedByAnotherProcess: a second process cannot take the lock while this one holds it,
// and is told this process's PID; once it is released, the second process takes it.
func TestLockedByAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	code, out := runHelper(t, dir)
	if code != exitLocked {
		t.Errorf("second process exit code = %d, want %d; output: %s", code, exitLocked, out)
	}
	if want := fmt.Sprintf("in use by another clbd (pid %d)", os.Getpid()); !strings.Contains(out, want) {
		t.Errorf("second process output = %q, want containing %q", out, want)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if code, out := runHelper(t, dir); code != 0 || !strings.Contains(out, "acquired") {
		t.Errorf("second process after Release: exit code %d, output %q; want 0, acquired", code, out)
	}
	// The lock file stays, with the last holder's PID.
	if got := readFile(t, filepath.Join(dir, FileName)); got == "" {
		t.Error("lock file empty after the second process held the lock")
	}
}

// TestLockDiesWithHolder: a holder that is killed (no Release) leaves no stale lock.
func TestLockDiesWithHolder(t *testing.T) {
	dir := t.TempDir()
	cmd := helper(t, dir, true)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
	}()
	select {
	case line := <-lines:
		if !strings.HasPrefix(line, "acquired") {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("holder process said %q, want acquired", line)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("holder process did not take the lock within 10s")
	}

	_, err = Acquire(dir)
	if want := fmt.Sprintf("(pid %d)", cmd.Process.Pid); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), want) {
		t.Errorf("Acquire while another process holds the lock = %v, want %v naming %s", err, ErrLocked, want)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait() // killed: its error says so
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after the holder was killed = %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
}

func TestAcquireCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "clb")
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Errorf("lock file: %v", err)
	}
}

func TestAcquireUnusableDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Acquire(file)
	if err == nil || errors.Is(err, ErrLocked) {
		t.Errorf("Acquire(a file) = %v, want an error other than %v", err, ErrLocked)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
