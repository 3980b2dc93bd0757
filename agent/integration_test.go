package agent_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// scenario is one end-to-end run: a clbd (managed or external), haproxy, three backends.
type scenario struct {
	t        testing.TB
	dir      string
	managed  bool
	front    string // http://127.0.0.1:PORT/ of service web
	memberP  int    // web's member_port; backend b1 listens on 127.0.0.1:memberP
	ports    map[string]int
	cfgPath  string
	hapCfg   string // the haproxy.cfg clbd writes
	pwFile   string
	failFlag string
	c        *clbd
	haproxy  *exec.Cmd // external mode only
	// stopBackend closes a backend's listener (a dead member).
	stopBackend map[string]func()
}

// addr is where backend name listens: b1 on 127.0.0.1, b2 on 127.0.0.2, ...
func (s *scenario) addr(name string) string {
	return fmt.Sprintf("127.0.0.%s:%d", name[1:], s.ports[name])
}

// adminSecret is the secret of key "admin" (admin scope) in every scenario.
const adminSecret = "admin-secret-0123456789abcdef"

// admin sends a call signed with the admin key.
func (s *scenario) admin(method, path string, body any) (int, map[string]any) {
	s.t.Helper()
	return s.c.callAs("admin", method, path, adminSecret, body)
}

func webConfig(frontPort, memberPort int, extra string) string {
	return fmt.Sprintf(`services:
  web:
    listeners:
      - port: %d
        address: 127.0.0.1
        member_port: %d
%s`, frontPort, memberPort, extra)
}

func newScenario(t testing.TB, managed bool) *scenario {
	return newScenarioWith(t, managed, "")
}

// newScenarioWith appends extra to the config file after web's listeners: lines indented by
// four spaces add to web (health_check, sticky, ...), by two spaces define more services.
func newScenarioWith(t testing.TB, managed bool, extra string, clbdArgs ...string) *scenario {
	requireHaproxyBin(t)
	s := &scenario{t: t, dir: shortDir(t), managed: managed, ports: map[string]int{}}
	front := freePort(t)
	s.front = fmt.Sprintf("http://127.0.0.1:%d/", front)
	s.memberP = freePort(t)
	s.ports["b1"] = s.memberP
	s.ports["b2"] = freePort(t)
	s.ports["b3"] = freePort(t)
	s.stopBackend = map[string]func(){}
	for _, name := range []string{"b1", "b2", "b3"} {
		s.stopBackend[name] = backend(t, name, s.addr(name))
	}

	s.cfgPath = filepath.Join(s.dir, "clbd.yaml")
	writeFile(t, s.cfgPath, webConfig(front, s.memberP, extra), 0o644)
	s.pwFile = filepath.Join(s.dir, "password")
	writeFile(t, s.pwFile, "correct horse battery staple\n", 0o600)
	s.failFlag = filepath.Join(s.dir, "fail-reload")
	keys := filepath.Join(s.dir, "keys.yaml")
	writeFile(t, keys, "keys:\n  - id: admin\n    secret: "+adminSecret+"\n    scope: admin\n", 0o600)
	args := append([]string{"--config", s.cfgPath, "--state-dir", s.dir, "--templates", filepath.Join(s.dir, "templates"), "--password-file", s.pwFile, "--keys-file", keys}, clbdArgs...)
	if managed {
		s.hapCfg = filepath.Join(s.dir, "haproxy.cfg")
		args = append(args, "--managed")
	} else {
		s.hapCfg = filepath.Join(s.dir, "external.cfg")
		script, err := filepath.Abs("testdata/reload-haproxy.sh")
		if err != nil {
			t.Fatal(err)
		}
		pid := filepath.Join(s.dir, "external.pid")
		args = append(args, "-o", s.hapCfg, "--reload-cmd", fmt.Sprintf("%q %q %q", script, pid, s.failFlag))
		// External mode: haproxy already runs (as Debian's service would) on the config clbd
		// renders; clbd then only rewrites the file and runs the reload command.
		out := mustRun(t, "clbd", append([]string{"render"}, args...)...)
		writeFile(t, s.hapCfg, out, 0o644)
		s.haproxy = exec.Command("haproxy", "-W", "-f", s.hapCfg, "-p", pid)
		if err := s.haproxy.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			s.haproxy.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { s.haproxy.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				s.haproxy.Process.Kill()
			}
		})
		waitFor(t, 10*time.Second, "external haproxy to serve", func() bool {
			got := spread(t, s.front, 1)
			return got["HTTP 503"] == 1
		})
	}
	s.c = startClbd(t, s.dir, args...)
	return s
}

// waitFor polls cond every 20 ms until it holds, failing the test after limit.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *scenario) register(name string, extra ...string) {
	s.t.Helper()
	args := append([]string{"--server", "http://" + s.c.api, "--password-file", s.pwFile, "--service", "web",
		"--name", name, "--address", "127.0.0." + name[1:], "--port", itoa(s.ports[name])}, extra...)
	mustRun(s.t, "clb_register", args...)
}

func TestEndToEnd(t *testing.T) {
	for _, mode := range []string{"managed", "external"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, mode == "managed")
			s.registerThree()
			s.refusals()
			s.unregister()
			s.restart()
			s.brokenTemplate()
			if !s.managed {
				s.failingReload()
			}
			s.concurrent()
		})
	}
}

// registerThree registers b1 with the 2010 form (address and port from the defaults), b2 with
// the flag form and b3 with flags and positional CLB_SERVER SERVICE.
func (s *scenario) registerThree() {
	t := s.t
	out := mustRun(t, "clb_register", "correct horse battery staple", s.c.api, "web")
	if !strings.Contains(out, "visible") {
		t.Errorf("2010 form with the password in argv printed no warning: %q", out)
	}
	// clb_register exits 0 only once haproxy routes to the member: no waiting here.
	wantServed(t, s.front, 6, "b1")
	s.register("b2")
	mustRun(t, "clb_register", "--password-file", s.pwFile, "--name", "b3", "--address", "127.0.0.3", "--port", itoa(s.ports["b3"]), "http://"+s.c.api, "web")
	wantServed(t, s.front, 30, "b1", "b2", "b3")
	if s.managed {
		// Membership changes go through the runtime API: no reload at all.
		if st := s.c.status(); st["reloads"].(float64) != 0 {
			t.Errorf("after three registrations: %v reloads, want 0 (runtime API)", st["reloads"])
		}
	}
}

// refusals: a wrong password and a replayed request are refused and change nothing.
func (s *scenario) refusals() {
	t := s.t
	state := readFile(t, filepath.Join(s.dir, "state.json"))
	cfg := readFile(t, s.hapCfg)
	code, out := run(t, "clb_register", "wrong password", s.c.api, "web")
	if code != 77 {
		t.Errorf("clb_register with a wrong password: exit %d, want 77 (auth refused): %s", code, out)
	}
	req := s.c.signed("PUT", "/v1/services/web/members/replayed", "correct horse battery staple", map[string]any{"address": "127.0.0.9", "port": 9})
	body, _ := req.GetBody()
	first, err := apiClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	first.Body.Close()
	if first.StatusCode != http.StatusOK {
		t.Fatalf("signed PUT = %d, want 200", first.StatusCode)
	}
	replay := req.Clone(req.Context())
	replay.Body = body
	second, err := apiClient.Do(replay)
	if err != nil {
		t.Fatal(err)
	}
	second.Body.Close()
	if second.StatusCode != http.StatusUnauthorized {
		t.Errorf("replayed PUT = %d, want 401", second.StatusCode)
	}
	if code, ans := s.c.call("DELETE", "/v1/services/web/members/replayed", "correct horse battery staple", nil); code != http.StatusOK {
		t.Fatalf("DELETE replayed = %d %v", code, ans)
	}
	if got := readFile(t, filepath.Join(s.dir, "state.json")); !bytes.Equal(stripGeneration(got), stripGeneration(state)) {
		t.Errorf("state changed by refused calls:\n%s\nwant\n%s", got, state)
	}
	if got := readFile(t, s.hapCfg); !bytes.Equal(got, cfg) {
		t.Errorf("haproxy.cfg changed by refused calls")
	}
	wantServed(t, s.front, 30, "b1", "b2", "b3")
}

// stripGeneration drops the generation line, which counts every write (the replayed member was
// added and removed again).
func stripGeneration(b []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if !bytes.Contains(l, []byte(`"generation"`)) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// unregister: b2 with the flag form, b1 with the 2010 form (found by its address and port),
// then b1 back.
func (s *scenario) unregister() {
	t := s.t
	mustRun(t, "clb_unregister", "--server", "http://"+s.c.api, "--password-file", s.pwFile, "--service", "web", "--name", "b2")
	wantServed(t, s.front, 20, "b1", "b3")
	mustRun(t, "clb_unregister", "correct horse battery staple", s.c.api, "web")
	wantServed(t, s.front, 10, "b3")
	code, out := run(t, "clb_unregister", "--server", "http://"+s.c.api, "--password-file", s.pwFile, "--service", "web", "--name", "b2")
	if code == 0 {
		t.Errorf("unregistering a member twice succeeded: %s", out)
	}
	mustRun(t, "clb_register", "correct horse battery staple", s.c.api, "web")
	wantServed(t, s.front, 20, "b1", "b3")
}

// load sends requests in the background, one connection each, until stop is called; it returns
// the number of requests and of failures (errors or answers other than 200). Bounded: at most
// 20,000 requests or 60 s.
func load(url string) (stop func() (total, failed int64)) {
	var total, failed atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		deadline := time.Now().Add(60 * time.Second)
		for i := 0; i < 20000 && time.Now().Before(deadline); i++ {
			select {
			case <-done:
				return
			default:
			}
			total.Add(1)
			resp, err := noKeepAlive.Get(url)
			if err != nil {
				failed.Add(1)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failed.Add(1)
			}
		}
	})
	return func() (int64, int64) {
		close(done)
		wg.Wait()
		return total.Load(), failed.Load()
	}
}

// restart: members survive a restart of clbd, and traffic does not notice it.
func (s *scenario) restart() {
	t := s.t
	before := readFile(t, s.hapCfg)
	if s.managed {
		pid := s.c.status()["haproxy_pid"]
		// SIGHUP: clbd re-executes itself and adopts the running haproxy.
		stop := load(s.front)
		time.Sleep(100 * time.Millisecond)
		listening := strings.Count(s.c.logs.String(), "clbd listening")
		s.c.cmd.Process.Signal(syscall.SIGHUP)
		// The re-executed process has its API up (waitHealthy could be answered by the old one).
		waitFor(t, 20*time.Second, "clbd to re-execute after SIGHUP", func() bool {
			return strings.Count(s.c.logs.String(), "clbd listening") > listening
		})
		s.c.waitHealthy()
		total, failed := stop()
		if failed != 0 || total == 0 {
			t.Errorf("across a clbd restart (SIGHUP): %d of %d requests failed, want 0 of > 0", failed, total)
		}
		if got := s.c.status()["haproxy_pid"]; got != pid {
			t.Errorf("haproxy pid after SIGHUP = %v, want %v (adopted, not restarted)", got, pid)
		}
		wantServed(t, s.front, 20, "b1", "b3")
	}
	// A full stop and start: the state is on disk; the rendered config is the same bytes, so
	// nothing is rewritten or reloaded.
	s.c.stop(syscall.SIGTERM)
	if s.managed {
		if out, err := exec.Command("pgrep", "-f", s.hapCfg).Output(); err == nil {
			t.Errorf("haproxy still running after clbd stopped (orphan): pids %s", out)
		}
	}
	s.c.start()
	wantServed(t, s.front, 20, "b1", "b3")
	if got := readFile(t, s.hapCfg); !bytes.Equal(got, before) {
		t.Errorf("haproxy.cfg changed across a restart of clbd")
	}
	if st := s.c.status(); st["reloads"].(float64) != 0 {
		t.Errorf("reloads after restart = %v, want 0 (unchanged config)", st["reloads"])
	}
}

func lastApply(st map[string]any) (result, errText string) {
	la, _ := st["last_apply"].(map[string]any)
	r, _ := la["result"].(string)
	e, _ := la["error"].(string)
	return r, e
}

// brokenTemplate: a broken user template is reported, haproxy keeps its config, registrations
// are stored but not applied (exit 75), clbd check fails; the fix applies them.
func (s *scenario) brokenTemplate() {
	t := s.t
	tmpl := filepath.Join(s.dir, "templates", "haproxy.tmpl")
	cfg := readFile(t, s.hapCfg)
	writeFile(t, tmpl, "global\n{{range .Nope}}\n", 0o644)
	waitFor(t, 10*time.Second, "/v1/status to report the broken template", func() bool {
		r, e := lastApply(s.c.status())
		return r == "error" && strings.Contains(e, "template")
	})
	if got := readFile(t, s.hapCfg); !bytes.Equal(got, cfg) {
		t.Errorf("haproxy.cfg changed after a broken template")
	}
	wantServed(t, s.front, 20, "b1", "b3")
	code, out := run(t, "clbd", "check", "--config", s.cfgPath, "--state-dir", s.dir, "--templates", filepath.Join(s.dir, "templates"))
	if code == 0 || !strings.Contains(out, "haproxy.tmpl") {
		t.Errorf("clbd check with a broken template: exit %d, output %q; want non-zero naming the template", code, out)
	}
	code, out = run(t, "clb_register", "--server", "http://"+s.c.api, "--password-file", s.pwFile, "--service", "web",
		"--name", "b2", "--address", "127.0.0.2", "--port", itoa(s.ports["b2"]), "--timeout", "2s")
	if code != 75 {
		t.Errorf("register while the template is broken: exit %d, want 75 (accepted, not applied): %s", code, out)
	}
	wantServed(t, s.front, 20, "b1", "b3")
	if err := os.Remove(tmpl); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the stored registration to be applied after the template fix", func() bool {
		r, _ := lastApply(s.c.status())
		return r == "ok" && spread(t, s.front, 3)["b2"] > 0
	})
	wantServed(t, s.front, 30, "b1", "b2", "b3")
	mustRun(t, "clbd", "check", "--config", s.cfgPath, "--state-dir", s.dir, "--templates", filepath.Join(s.dir, "templates"))
}

// failingReload (external mode): a reload command that fails leaves the last-known-good config
// installed and haproxy serving; the change applies once reloads work again.
func (s *scenario) failingReload() {
	t := s.t
	cfg := readFile(t, s.hapCfg)
	writeFile(t, s.failFlag, "", 0o644)
	code, out := run(t, "clb_unregister", "--server", "http://"+s.c.api, "--password-file", s.pwFile, "--service", "web", "--name", "b2", "--timeout", "1s")
	if code != 75 {
		t.Errorf("unregister while reloads fail: exit %d, want 75: %s", code, out)
	}
	// clbd retries the apply with backoff, and each retry installs the new file for as long as
	// the reload command runs before restoring the last good one, so a single read may land
	// inside a retry: the last-known-good file must be back between retries.
	waitFor(t, 10*time.Second, "haproxy.cfg to be the last-known-good one after a failed reload", func() bool {
		return bytes.Equal(readFile(t, s.hapCfg), cfg)
	})
	if r, e := lastApply(s.c.status()); r != "error" || !strings.Contains(e, "reload refused") {
		t.Errorf("status after a failed reload = %q %q, want error naming the reload output", r, e)
	}
	wantServed(t, s.front, 20, "b1", "b2", "b3")
	// The change is stored; clbd retries the apply with backoff and it lands once reloads work.
	os.Remove(s.failFlag)
	waitFor(t, 10*time.Second, "the stored unregistration to be applied", func() bool {
		r, _ := lastApply(s.c.status())
		return r == "ok"
	})
	wantServed(t, s.front, 20, "b1", "b3")
	code, out = run(t, "clb_unregister", "--server", "http://"+s.c.api, "--password-file", s.pwFile, "--service", "web", "--name", "b2")
	if code != 1 || !strings.Contains(out, "not registered") {
		t.Errorf("unregistering b2 again: exit %d, %q; want 1 and 'not registered'", code, out)
	}
}

// concurrent: a service added to the config file (hot reload), then 200 registrations at once:
// all in the state and in haproxy.cfg.
func (s *scenario) concurrent() {
	t := s.t
	bulkPort := freePort(t)
	// Slots for the burst: no pool growth, so no reload.
	extra := fmt.Sprintf(`  bulk:
    slots: 256
    listeners:
      - port: %d
        address: 127.0.0.1
        member_port: 9
`, bulkPort)
	writeFile(t, s.cfgPath+".tmp", webConfig(freePortOf(s.front), s.memberP, extra), 0o644)
	if err := os.Rename(s.cfgPath+".tmp", s.cfgPath); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "service bulk to appear after the config edit", func() bool {
		code, _ := s.c.call("GET", "/v1/services/bulk", "correct horse battery staple", nil)
		return code == http.StatusOK
	})
	// One registration first: it is answered after the apply that also added the service (a
	// reload), so the burst below is measured on its own.
	if code, out := s.c.call("PUT", "/v1/services/bulk/members/first", "correct horse battery staple", map[string]any{"address": "127.0.0.250", "port": 9}); code != http.StatusOK {
		t.Fatalf("first registration into bulk = %d %v", code, out)
	}
	const n = 200
	start := time.Now()
	before := s.c.status()["reloads"].(float64)
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			codes[i], _ = s.c.call("PUT", fmt.Sprintf("/v1/services/bulk/members/m%03d", i), "correct horse battery staple",
				map[string]any{"address": fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250), "port": 9})
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("registration %d: status %d, want 200", i, c)
		}
	}
	st := s.c.status()
	reloads := st["reloads"].(float64) - before
	t.Logf("%s mode: %d concurrent registrations applied in %s with %v reloads", map[bool]string{true: "managed", false: "external"}[s.managed], n, elapsed.Round(time.Millisecond), reloads)
	if s.managed && reloads != 0 {
		t.Errorf("%d registrations into an existing service took %v reloads, want 0 (runtime API)", n, reloads)
	}
	cfg := string(readFile(t, s.hapCfg))
	for i := range n {
		if !strings.Contains(cfg, fmt.Sprintf(" # m%03d\n", i)) {
			t.Fatalf("member m%03d missing from haproxy.cfg", i)
		}
	}
	state := string(readFile(t, filepath.Join(s.dir, "state.json")))
	if got := strings.Count(state, `"name": "m`); got != n {
		t.Errorf("state.json holds %d bulk members, want %d", got, n)
	}
	if s.managed {
		wantServed(t, s.front, 30, "b1", "b2", "b3")
	} else { // failingReload took b2 out
		wantServed(t, s.front, 20, "b1", "b3")
	}
}

func freePortOf(url string) int {
	var p int
	fmt.Sscanf(url[strings.LastIndex(url, ":")+1:], "%d/", &p)
	return p
}
