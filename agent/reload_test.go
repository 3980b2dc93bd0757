package agent_test

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSighupWithBrokenConfig: `systemctl reload clb-server` (SIGHUP) with a config file that
// does not check — a YAML syntax error, an unknown key, an empty file — must not take clbd
// down: it logs why it refuses, keeps its API, its haproxy and its members, and restarts in
// place once the file is fixed. (It used to re-execute into the broken config and exit,
// orphaning haproxy.)
func TestSighupWithBrokenConfig(t *testing.T) {
	s := newScenario(t, true)
	s.register("b1")
	good := string(readFile(t, s.cfgPath))
	pid := s.c.cmd.Process.Pid
	haproxyPID := s.c.status()["haproxy_pid"]
	for _, bad := range []struct{ name, content string }{
		{"syntax error", good + "  - this is: [not yaml\n"},
		{"unknown key", good + "lisen: :1\n"},
		{"empty", ""},
	} {
		refusals := strings.Count(s.c.logs.String(), "does not check")
		writeFile(t, s.cfgPath, bad.content, 0o644)
		s.c.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, 10*time.Second, "clbd to refuse the "+bad.name, func() bool {
			return strings.Count(s.c.logs.String(), "does not check") > refusals
		})
		select {
		case <-s.c.exited:
			t.Fatalf("%s: clbd exited on SIGHUP: %v\n%s", bad.name, s.c.waitErr, s.c.logs.String())
		default:
		}
		if s.c.cmd.Process.Pid != pid {
			t.Fatalf("%s: pid changed", bad.name)
		}
		s.c.waitHealthy()
		wantServed(t, s.front, 10, "b1")
	}
	if strings.Contains(s.c.logs.String(), "SIGHUP: restarting") {
		t.Errorf("clbd restarted on a broken config:\n%s", s.c.logs.String())
	}
	// Fixed: SIGHUP restarts in place and adopts haproxy.
	listening := strings.Count(s.c.logs.String(), "clbd listening")
	writeFile(t, s.cfgPath, good, 0o644)
	s.c.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 20*time.Second, "clbd to re-execute with the fixed config", func() bool {
		return strings.Count(s.c.logs.String(), "clbd listening") > listening
	})
	s.c.waitHealthy()
	if got := s.c.status()["haproxy_pid"]; got != haproxyPID {
		t.Errorf("haproxy pid after the restart = %v, want %v (adopted)", got, haproxyPID)
	}
	wantServed(t, s.front, 10, "b1")
}
