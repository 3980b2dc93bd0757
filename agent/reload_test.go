package agent_test

import (
	"path/filepath"
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

// TestUnregisterByAddressTakesEveryName: one machine registered twice at the same address and
// port (the 2010 form's default name, and --name app1) is leaving when clb_unregister names
// only its service: both members go, and clb_unregister exits 0 only once no request reaches
// the machine. (It used to remove one of them, report "applied", and leave traffic flowing.)
func TestUnregisterByAddressTakesEveryName(t *testing.T) {
	s := newScenario(t, true)
	const pw = "correct horse battery staple"
	mustRun(t, "clb_register", pw, s.c.api, "web") // name 127.0.0.1:PORT, b1's port
	mustRun(t, "clb_register", "--server", "http://"+s.c.api, "--password-file", s.pwFile, "--service", "web",
		"--name", "app1", "--address", "127.0.0.1", "--port", itoa(s.memberP))
	if st, out := s.c.call("GET", "/v1/services/web", s.c.password(), nil); st != 200 || len(out["members"].([]any)) != 2 {
		t.Fatalf("GET /v1/services/web = %d %v, want 2 members", st, out)
	}
	wantServed(t, s.front, 10, "b1")
	mustRun(t, "clb_unregister", pw, s.c.api, "web")
	if got := spread(t, s.front, 10); got["b1"] != 0 {
		t.Errorf("after clb_unregister by address: %v, want no request to reach the machine", got)
	}
	if st, out := s.c.call("GET", "/v1/services/web", s.c.password(), nil); st != 200 || len(out["members"].([]any)) != 0 {
		t.Errorf("GET /v1/services/web = %d %v, want no member left", st, out)
	}
}

// TestUserTemplateBackendNames: a user template may name backends as it likes; clbd maps them
// to services from the servers it rendered, so members still get their health (and their
// service's drain timeout). It used to parse SERVICE_PORT back out of backend names and
// report every member "unknown".
func TestUserTemplateBackendNames(t *testing.T) {
	s := newScenario(t, true)
	s.register("b1")
	builtIn := string(readFile(t, "../templates/haproxy.tmpl"))
	custom := strings.NewReplacer("backend {{$l.Name}}", "backend be_{{$l.Name}}", "default_backend {{$l.Name}}", "default_backend be_{{$l.Name}}").Replace(builtIn)
	if custom == builtIn {
		t.Fatal("the built-in template changed: this test's replacements no longer apply")
	}
	writeFile(t, filepath.Join(s.dir, "templates", "haproxy.tmpl"), custom, 0o644)
	waitFor(t, 10*time.Second, "the user template to be applied", func() bool {
		return strings.Contains(string(readFile(t, s.hapCfg)), "backend be_web_")
	})
	wantServed(t, s.front, 10, "b1")
	waitFor(t, 10*time.Second, "member b1 to be reported up", func() bool {
		_, out := s.c.call("GET", "/v1/services/web", s.c.password(), nil)
		ms, _ := out["members"].([]any)
		return len(ms) == 1 && ms[0].(map[string]any)["health"] == "up"
	})
}
