package clbdcli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"clb/internal/testutil"
)

func runMain(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := Main(append([]string{"clbd"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestGlobalFlagsReachSubcommands: `clbd --config F check` (the global flag before the
// subcommand, as people type it) reads F exactly like `clbd check --config F`. It used to check
// the embedded default and report ok for a broken F.
func TestGlobalFlagsReachSubcommands(t *testing.T) {
	testutil.RequireHaproxy(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	state := filepath.Join(dir, "state")
	if err := os.WriteFile(good, []byte("services:\n  api:\n    listeners:\n      - port: 9123\n        address: 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("services:\n  api:\n    listeners:\n      - port: 9123\n    stikcy: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		args     []string
		wantCode int
		want     string // in stdout (code 0) or stderr
	}{
		{"check, flag after", []string{"check", "--config", bad, "--state-dir", state}, ExitConfig, "field stikcy not found"},
		{"check, flag before", []string{"--config", bad, "--state-dir", state, "check"}, ExitConfig, "field stikcy not found"},
		{"check good, flag after", []string{"check", "--config", good, "--state-dir", state}, 0, "ok: haproxy accepts"},
		{"check good, flag before", []string{"--config", good, "--state-dir", state, "check"}, 0, "ok: haproxy accepts"},
		{"render, flag before", []string{"--config", good, "--state-dir", state, "render"}, 0, "frontend api_9123"},
		{"render, mixed", []string{"--state-dir", state, "render", "--config", good}, 0, "frontend api_9123"},
		{"after wins", []string{"--config", bad, "render", "--config", good, "--state-dir", state}, 0, "frontend api_9123"},
		{"log level before", []string{"--log-level", "loud", "--config", good, "--state-dir", state, "check"}, ExitConfig, "log_level \"loud\""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runMain(tt.args...)
			if code != tt.wantCode {
				t.Fatalf("clbd %v: exit %d, want %d\nstdout: %s\nstderr: %s", tt.args, code, tt.wantCode, stdout, stderr)
			}
			out := stderr
			if code == 0 {
				out = stdout
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("clbd %v: output lacks %q:\nstdout: %s\nstderr: %s", tt.args, tt.want, stdout, stderr)
			}
		})
	}
}
