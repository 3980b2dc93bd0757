package haproxy

import (
	"clb/internal/testutil"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// needHaproxy returns the haproxy binary; without one the test is skipped, or fails in CI.
func needHaproxy(t testing.TB) string {
	t.Helper()
	testutil.RequireHaproxy(t)
	bin, _ := exec.LookPath("haproxy")
	return bin
}

// shortTempDir is t.TempDir, or a shorter directory when the master socket
// path would not fit in a sockaddr_un.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if len(filepath.Join(dir, MasterSocketName)) <= maxSocketPath {
		return dir
	}
	dir, err := os.MkdirTemp("", "hap")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func freePort(t testing.TB) int { return testutil.FreePort(t) }

// backend starts an HTTP server answering body and returns its address.
func backend(t testing.TB, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

const testConfig = `global
    # nothing: stats socket and logging are not needed here

defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    option idle-close-on-response

frontend fe
    bind 127.0.0.1:%d
    default_backend be

backend be
    server s1 %s
`

// writeConfig writes a config atomically, as the agent does, so that a
// reloading master never reads half a file.
func writeConfig(t testing.TB, path string, port int, server string, extra string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf(testConfig, port, server)+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

var noKeepAlive = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

func get(port int) (string, error) {
	resp, err := noKeepAlive.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s: %s", resp.Status, b)
	}
	return string(b), nil
}

// eventually retries f every 20 ms for up to d.
func eventually(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wantBody waits until the frontend on port answers body, then requires
// it a few more times in a row.
func wantBody(t testing.TB, port int, body string) {
	t.Helper()
	eventually(t, 3*time.Second, "frontend answers "+body, func() error {
		got, err := get(port)
		if err != nil {
			return err
		}
		if got != body {
			return fmt.Errorf("got %q, want %q", got, body)
		}
		return nil
	})
	for range 5 {
		if got, err := get(port); err != nil || got != body {
			t.Fatalf("frontend: got %q, %v; want %q", got, err, body)
		}
	}
}

// syncWriter sends log output to t.Log until the test ends: haproxy output
// can arrive after that.
type syncWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := &syncWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestCheck(t *testing.T) {
	bin := needHaproxy(t)
	dir := t.TempDir()
	valid := filepath.Join(dir, "valid.cfg")
	writeConfig(t, valid, 8080, "127.0.0.1:8081", "")
	broken := filepath.Join(dir, "broken.cfg")
	writeConfig(t, broken, 8080, "127.0.0.1:8081", "    no-such-keyword here\n")

	ctx := context.Background()
	if err := Check(ctx, bin, valid); err != nil {
		t.Errorf("Check(valid) = %v, want nil", err)
	}

	err := Check(ctx, bin, broken)
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Check(broken) = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"unknown keyword 'no-such-keyword'", "broken.cfg:17", "[ALERT] config : parsing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check(broken) = %q, want it to contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "NOTICE") {
		t.Errorf("Check(broken) = %q, want no NOTICE lines", err)
	}

	err = Check(ctx, bin, filepath.Join(dir, "missing.cfg"))
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "Cannot open configuration file") {
		t.Errorf("Check(missing) = %v, want ErrInvalidConfig with haproxy's message", err)
	}

	err = Check(ctx, filepath.Join(dir, "no-haproxy"), valid)
	if !errors.Is(err, ErrBinary) || errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Check(no binary) = %v, want ErrBinary only", err)
	}
}

func TestCheckTimeout(t *testing.T) {
	// A "binary" that never answers stands in for a hung haproxy.
	dir := t.TempDir()
	slow := filepath.Join(dir, "slow")
	if err := os.WriteFile(slow, []byte("#!/bin/sh\nexec sleep 10\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Check(ctx, slow, "x.cfg")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Check(slow) = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Check(slow) took %v", d)
	}
}

func TestVersion(t *testing.T) {
	bin := needHaproxy(t)
	v, err := Version(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\d+\.\d+`).MatchString(v) {
		t.Errorf("Version() = %q, want a version number", v)
	}
	t.Logf("haproxy %s", v)

	if _, err := Version(context.Background(), "/nonexistent/haproxy"); !errors.Is(err, ErrBinary) {
		t.Errorf("Version(missing) = %v, want ErrBinary", err)
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		out, want string
	}{
		{"HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/\nStatus: long-term supported branch\n", "2.6.12-1+deb12u4"},
		{"HAProxy version 3.0.5-8e879a5 2024/09/19 - https://haproxy.org/\n", "3.0.5-8e879a5"},
		{"HA-Proxy version 1.8.19 2019/02/11\nCopyright 2000-2019 Willy Tarreau\n", "1.8.19"},
		{"garbage\n", ""},
	}
	for _, tt := range tests {
		got, err := ParseVersion(tt.out)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("ParseVersion(%q) = %q, %v; want %q", tt.out, got, err, tt.want)
		}
	}
}

func TestTrimOutput(t *testing.T) {
	var many strings.Builder
	for i := range 25 {
		fmt.Fprintf(&many, "[ALERT]    (1) : line %d\n", i)
	}
	tests := []struct {
		name, in, want string
	}{
		{"empty", "  \n", "(no output)"},
		{"notice only", "[NOTICE]   (6655) : haproxy version is 2.6.12\n", "(no output)"},
		{
			"alerts",
			"[NOTICE]   (6655) : haproxy version is 2.6.12\n[ALERT]    (6655) : config : parsing [x.cfg:13] : unknown keyword 'garbage'\n[ALERT]    (6655) : config : Fatal errors found in configuration.\n",
			"[ALERT] config : parsing [x.cfg:13] : unknown keyword 'garbage'; [ALERT] config : Fatal errors found in configuration.",
		},
		{"plain", "something odd\n", "something odd"},
		{"many", many.String(), "line 19; ... (5 more lines)"},
	}
	for _, tt := range tests {
		got := TrimOutput([]byte(tt.in))
		if tt.name == "many" {
			if !strings.HasSuffix(got, tt.want) || strings.Count(got, "[ALERT]") != maxOutputLines {
				t.Errorf("%s: TrimOutput = %q, want 20 lines ending %q", tt.name, got, tt.want)
			}
			continue
		}
		if got != tt.want {
			t.Errorf("%s: TrimOutput = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// processGone reports whether pid no longer exists (reaped, not a zombie).
func processGone(pid int) bool {
	return syscall.Kill(pid, 0) == syscall.ESRCH
}
