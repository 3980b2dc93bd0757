package agent_test

import (
	"net/http"
	"syscall"
	"testing"
	"time"
)

// TestServerSlots: members of a sticky service (haproxy 2.6 refuses cookies on dynamic
// servers, so this took a reload per change before server slots) join and leave by `set
// server` on static slots, without a reload; a member that comes back gets its slot again;
// a reload for another reason, and a kill -9 of clbd, keep every member in its slot and served;
// a kill -9 between the runtime commands and the file's rewrite is repaired at start-up.
func TestServerSlots(t *testing.T) {
	s := newScenarioWith(t, true, "    sticky: true\n    health_check:\n      interval: 5s\n      timeout: 1s\n      healthy_threshold: 2\n      unhealthy_threshold: 2\n")
	backend := "web_" + itoa(freePortOf(s.front))
	reloads := func() float64 { return s.c.status()["reloads"].(float64) }
	base := reloads()
	s.register("b1")
	s.register("b2")
	wantServed(t, s.front, 20, "b1", "b2")
	slot1, slot2 := slotOf(t, s.hapCfg, backend, "b1"), slotOf(t, s.hapCfg, backend, "b2")
	if slot1 == "" || slot2 == "" || slot1 == slot2 {
		t.Fatalf("slots of b1, b2 = %q, %q; want two different slots", slot1, slot2)
	}
	mustRun(t, "clb_unregister", "--server", "http://"+s.c.api, "--password-file", s.pwFile, "--service", "web", "--name", "b2")
	wantServed(t, s.front, 10, "b1")
	s.register("b2")
	if got := slotOf(t, s.hapCfg, backend, "b2"); got != slot2 {
		t.Errorf("b2 came back in slot %q, want its old slot %q", got, slot2)
	}
	wantServed(t, s.front, 20, "b1", "b2")
	if got := reloads() - base; got != 0 {
		t.Errorf("%v reloads for 4 membership changes of a sticky service, want 0 (server slots)", got)
	}
	// Sticky: a client with b1's cookie stays on b1.
	req, _ := http.NewRequest("GET", s.front, nil)
	req.AddCookie(&http.Cookie{Name: "CLBSRV", Value: slot1})
	for range 5 {
		resp, err := noKeepAlive.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := make([]byte, 16)
		n, _ := resp.Body.Read(body)
		resp.Body.Close()
		if string(body[:n]) != "b1" {
			t.Fatalf("with b1's cookie: served by %q, want b1", body[:n])
		}
	}

	// A reload for another reason (a new service) keeps them, served and healthy.
	if code, out := s.admin("PUT", "/v1/services/api", map[string]any{"listeners": []map[string]any{{"port": freePort(t), "address": "127.0.0.1"}}}); code != http.StatusOK {
		t.Fatalf("define api = %d %v", code, out)
	}
	if reloads()-base != 1 {
		t.Errorf("defining a service: %v reloads, want 1", reloads()-base)
	}
	wantServed(t, s.front, 20, "b1", "b2")
	waitFor(t, 15*time.Second, "b1 and b2 reported up after the reload", func() bool { return membersUp(s) == 2 })

	// kill -9 of clbd: the next one learns the slots from haproxy.cfg, and with them which
	// member each server is (health is known again without any change).
	s.c.stop(syscall.SIGKILL)
	s.c.start()
	waitFor(t, 15*time.Second, "b1 and b2 reported up after a restart without a change", func() bool { return membersUp(s) == 2 })
	s.register("b3")
	if got1, got2 := slotOf(t, s.hapCfg, backend, "b1"), slotOf(t, s.hapCfg, backend, "b2"); got1 != slot1 || got2 != slot2 {
		t.Errorf("after kill -9 and a registration: slots %q, %q, want %q, %q", got1, got2, slot1, slot2)
	}
	wantServed(t, s.front, 30, "b1", "b2", "b3")
	if st := s.c.status(); st["reloads"].(float64) != 0 {
		t.Errorf("registration after the restart took %v reloads, want 0", st["reloads"])
	}

	// kill -9 between the runtime commands and the rewrite of haproxy.cfg (here: of an
	// unregistration; the file put back as it was before it): the next clbd renders the
	// state, installs it and reloads the haproxy it adopts, so the file, haproxy and
	// state.json agree again.
	before := readFile(t, s.hapCfg)
	mustRun(t, "clb_unregister", "--server", "http://"+s.c.api, "--password-file", s.pwFile, "--service", "web", "--name", "b3")
	s.c.stop(syscall.SIGKILL)
	writeFile(t, s.hapCfg, string(before), 0o644)
	s.c.start()
	waitFor(t, 15*time.Second, "clbd's first apply after the restart", func() bool {
		la, _ := s.c.status()["last_apply"].(map[string]any)
		return la["result"] == "ok"
	})
	if got := slotOf(t, s.hapCfg, backend, "b3"); got != "" {
		t.Errorf("after the restart, haproxy.cfg still has b3 in slot %s", got)
	}
	wantServed(t, s.front, 20, "b1", "b2")
	if got1, got2 := slotOf(t, s.hapCfg, backend, "b1"), slotOf(t, s.hapCfg, backend, "b2"); got1 != slot1 || got2 != slot2 {
		t.Errorf("after the stale-file restart: slots %q, %q, want %q, %q", got1, got2, slot1, slot2)
	}
}

// membersUp counts the members of web that GET /v1/services/web reports up.
func membersUp(s *scenario) int {
	_, out := s.c.call("GET", "/v1/services/web", s.c.password(), nil)
	ms, _ := out["members"].([]any)
	up := 0
	for _, m := range ms {
		if m.(map[string]any)["health"] == "up" {
			up++
		}
	}
	return up
}
