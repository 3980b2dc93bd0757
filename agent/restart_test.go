package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"clb/agent/config"
	"clb/internal/testutil"
)

// TestRestartAnyTime: Restart (SIGHUP) may come at any moment of Run — before it, during
// start-up, once it serves — from another goroutine. Run then ends with nil and leaves the
// managed haproxy running for the process that replaces it. Under -race this also shows that
// Restart and Run share no unguarded fields (they did: cancel and the managed haproxy).
func TestRestartAnyTime(t *testing.T) {
	requireHaproxy(t)
	for _, delay := range []time.Duration{-1, 0, time.Millisecond, 30 * time.Millisecond} {
		t.Run(fmt.Sprint(delay), func(t *testing.T) {
			dir := testutil.ShortDir(t)
			cfg := config.Defaults()
			yml := fmt.Sprintf("services:\n  web:\n    listeners:\n      - port: %d\n        address: 127.0.0.1\n", testutil.FreePort(t))
			if err := config.Decode(&cfg, []byte(yml), "test"); err != nil {
				t.Fatal(err)
			}
			cfg.Listen, cfg.StateDir, cfg.Templates, cfg.Managed = "127.0.0.1:0", dir, filepath.Join(dir, "templates"), true
			cfg.Output = config.OutputPath(&cfg, false)
			t.Cleanup(func() { killHaproxy(t, dir) })
			a, err := New(&cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Ready: make(chan net.Addr, 1)})
			if err != nil {
				t.Fatal(err)
			}
			if delay < 0 {
				a.Restart()
			}
			done := make(chan error, 1)
			go func() { done <- a.Run(context.Background()) }()
			if delay >= 0 {
				time.Sleep(delay) // the moment of the SIGHUP, not a synchronisation
				a.Restart()
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run after Restart = %v, want nil", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Run did not end within 20s of Restart")
			}
			if !a.Restarting() {
				t.Error("Restarting() = false after Restart")
			}
		})
	}
}

// killHaproxy stops a managed haproxy left running in dir (Restart detaches it on purpose).
func killHaproxy(t *testing.T, dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "haproxy.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for range 100 {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}
