package agent

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"clb/agent/config"
	"clb/internal/testutil"
)

// TestConfigFileWatch: the watched config file is re-read on every change. A file caught
// empty (truncated before it is written again) is refused and the running services stay; the
// same content written again changes nothing and warns of nothing; a real change applies.
func TestConfigFileWatch(t *testing.T) {
	requireHaproxy(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte(testPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "clbd.yaml")
	web := fmt.Sprintf("services:\n  web:\n    listeners:\n      - port: %d\n        address: 127.0.0.1\n", testutil.FreePort(t))
	if err := os.WriteFile(cfgPath, []byte(web), 0o644); err != nil {
		t.Fatal(err)
	}
	load := func() (*config.Config, error) {
		cfg := config.Defaults()
		if err := config.LoadFile(&cfg, cfgPath); err != nil {
			return nil, err
		}
		cfg.Listen, cfg.StateDir, cfg.Templates, cfg.PasswordFile = "127.0.0.1:0", dir, filepath.Join(dir, "templates"), pw
		cfg.Output = filepath.Join(dir, "haproxy.cfg")
		return &cfg, nil
	}
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	a, _ := startAgent(t, cfg, Options{ConfigPath: cfgPath, Reload: load, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	waitLog := func(what string, n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(logs.String(), what) < n {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log after 10s:\n%s", what, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Truncated: refused, services kept, haproxy.cfg still has the backend.
	if err := os.WriteFile(cfgPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitLog("config is empty", 1)
	if _, ok := a.config().Services["web"]; !ok {
		t.Fatalf("an empty config file emptied the running services: %v", a.config().Services)
	}
	// Written again with the same content, then with a second service: only the second
	// write reloads, and nothing says settings other than services changed.
	if err := os.WriteFile(cfgPath, []byte(web), 0o644); err != nil {
		t.Fatal(err)
	}
	api := fmt.Sprintf("  api:\n    listeners:\n      - port: %d\n        address: 127.0.0.1\n", testutil.FreePort(t))
	if err := os.WriteFile(cfgPath, []byte(web+api), 0o644); err != nil {
		t.Fatal(err)
	}
	waitLog("config reloaded", 1)
	if _, ok := a.config().Services["api"]; !ok {
		t.Errorf("service api not running after the config file defined it")
	}
	if strings.Contains(logs.String(), "settings other than services") {
		t.Errorf("rewriting the config with its services only warned of other settings:\n%s", logs.String())
	}
	// The reconciler applies it (bounded wait): both backends are in haproxy.cfg.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := os.ReadFile(cfg.Output)
		if strings.Contains(string(out), "backend web_") && strings.Contains(string(out), "backend api_") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy.cfg lacks the backends of web and api after 10s:\n%s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
