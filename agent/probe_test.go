package agent_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Regression tests, with real processes, for the state-dir lock, a full state dir, the count
// of managed haproxy restarts and pending_changes.

// TestSecondClbdOnStateDir: a second clbd on the state dir of a running one exits at once,
// non-zero, naming the first one's PID, and touches nothing; the first keeps serving.
func TestSecondClbdOnStateDir(t *testing.T) {
	s := newScenario(t, true)
	s.register("b1")
	state := readFile(t, filepath.Join(s.dir, "state.json"))
	cfg := readFile(t, s.hapCfg)
	hapPID := s.c.status()["haproxy_pid"]

	// The first one's arguments with another --listen (startClbd puts it first).
	args := slices.Clone(s.c.args)
	if args[0] != "--listen" {
		t.Fatalf("clbd args start with %q, want --listen", args[0])
	}
	args[1] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	code, out, exited := runBounded(t, 15*time.Second, "clbd", args...)
	if !exited {
		t.Fatalf("second clbd on %s still ran after 15s (killed), want an exit at once:\n%s", s.dir, out)
	}
	want := fmt.Sprintf("in use by another clbd (pid %d)", s.c.cmd.Process.Pid)
	if code == 0 || !strings.Contains(out, want) {
		t.Errorf("second clbd on the same state dir: exit %d, output:\n%s\nwant non-zero and %q", code, out, want)
	}

	// The first one is untouched and keeps serving.
	if got := readFile(t, filepath.Join(s.dir, "state.json")); string(got) != string(state) {
		t.Errorf("state.json changed by the second clbd:\n%s\nwant\n%s", got, state)
	}
	if got := readFile(t, s.hapCfg); string(got) != string(cfg) {
		t.Errorf("haproxy.cfg changed by the second clbd")
	}
	resp, err := noKeepAlive.Get("http://" + s.c.api + "/healthz")
	if err != nil {
		t.Fatalf("first clbd's /healthz after the second one exited: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("first clbd's /healthz = %d, want 200", resp.StatusCode)
	}
	if got := s.c.status()["haproxy_pid"]; got != hapPID {
		t.Errorf("haproxy pid = %v after the second clbd, want %v (untouched)", got, hapPID)
	}
	s.register("b2")
	wantServed(t, s.front, 20, "b1", "b2")
}

// TestStateDirFull: with the state dir on a full tmpfs, a registration answers 503
// store_unavailable with Retry-After, keeps nothing (state.json whole, with the members from
// before; no temp file left), haproxy keeps serving; clb_register retries and gives up
// non-zero; once there is room again it succeeds.
func TestStateDirFull(t *testing.T) {
	requireHaproxyBin(t)
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := shortDir(t)
	stateDir := filepath.Join(dir, "s")
	if err := os.Mkdir(stateDir, 0o750); err != nil {
		t.Fatal(err)
	}
	// 1 MiB holds clbd's and haproxy's files (a few KiB) with room to spare until filled.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m,mode=0750", "tmpfs", stateDir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	// Registered before startClbd's cleanup, so it runs after clbd (and its haproxy) stopped.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", stateDir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", stateDir, err, out)
			exec.Command("umount", "-l", stateDir).Run()
		}
	})

	s := &scenario{t: t, dir: dir, managed: true, ports: map[string]int{}, stopBackend: map[string]func(){}}
	front := freePort(t)
	s.front = fmt.Sprintf("http://127.0.0.1:%d/", front)
	s.memberP = freePort(t)
	s.ports["b1"], s.ports["b2"] = s.memberP, freePort(t)
	for _, name := range []string{"b1", "b2"} {
		s.stopBackend[name] = backend(t, name, s.addr(name))
	}
	s.cfgPath = filepath.Join(dir, "clbd.yaml")
	writeFile(t, s.cfgPath, webConfig(front, s.memberP, ""), 0o644)
	s.pwFile = filepath.Join(dir, "password")
	writeFile(t, s.pwFile, "correct horse battery staple\n", 0o600)
	s.hapCfg = filepath.Join(stateDir, "haproxy.cfg")
	s.c = startClbd(t, dir, "--config", s.cfgPath, "--state-dir", stateDir, "--templates", filepath.Join(dir, "templates"),
		"--password-file", s.pwFile, "--managed")

	s.register("b1")
	wantServed(t, s.front, 6, "b1")
	statePath := filepath.Join(stateDir, "state.json")
	if got := stateMembers(t, statePath); !slices.Equal(got, []string{"b1"}) {
		t.Fatalf("state.json members before the disk is full = %v, want [b1]", got)
	}

	filler := filepath.Join(stateDir, "filler")
	fill(t, filler)

	req := s.c.signed("PUT", "/v1/services/web/members/b2", "correct horse battery staple",
		map[string]any{"address": "127.0.0.2", "port": s.ports["b2"]})
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var ans struct{ Code, Error string }
	if err := json.Unmarshal(body, &ans); err != nil {
		t.Fatalf("PUT b2 on a full state dir: %d, answer %q: %v", resp.StatusCode, body, err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || ans.Code != "store_unavailable" {
		t.Errorf("PUT b2 on a full state dir = %d %q, want 503 store_unavailable: %s", resp.StatusCode, ans.Code, body)
	}
	if ra := resp.Header.Get("Retry-After"); ra == "" {
		t.Errorf("PUT b2 on a full state dir: no Retry-After header")
	}
	if !strings.Contains(ans.Error, "no space left") {
		t.Errorf("PUT b2 on a full state dir: error %q does not name the cause (no space left)", ans.Error)
	}
	wantKeptOnly(t, stateDir, "b1")
	wantServed(t, s.front, 10, "b1")

	// clb_register retries the 503, waiting out its Retry-After (5 s), and then gives up: the
	// timeout leaves room for one retry (with a Retry-After beyond the time left it gives up
	// without retrying, so a 3 s timeout would exit after one attempt).
	code, out := run(t, "clb_register", "--server", "http://"+s.c.api, "--password-file", s.pwFile, "--service", "web",
		"--name", "b2", "--address", "127.0.0.2", "--port", itoa(s.ports["b2"]), "--timeout", "8s")
	if code != 69 {
		t.Errorf("clb_register on a full state dir: exit %d, want 69 (unavailable): %s", code, out)
	}
	if !strings.Contains(out, "retrying") || !strings.Contains(out, "attempt=1") {
		t.Errorf("clb_register on a full state dir (exit %d) logged no retry:\n%s", code, out)
	}
	wantKeptOnly(t, stateDir, "b1")
	wantServed(t, s.front, 10, "b1")

	// Room again: the same registration goes through.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s.register("b2")
	if got := stateMembers(t, statePath); !slices.Equal(got, []string{"b1", "b2"}) {
		t.Errorf("state.json members after the disk has room = %v, want [b1 b2]", got)
	}
	wantServed(t, s.front, 20, "b1", "b2")
}

// TestManagedRestartCounted: a managed haproxy master killed with SIGKILL is started again by
// clbd, which counts it in /v1/status and /metrics; the new one serves the members.
func TestManagedRestartCounted(t *testing.T) {
	s := newScenario(t, true)
	s.register("b1")
	st := s.c.status()
	pid, _ := st["haproxy_pid"].(float64)
	if pid <= 0 {
		t.Fatalf("haproxy_pid = %v, want a pid", st["haproxy_pid"])
	}
	if got := st["haproxy_restarts"]; got != 0.0 {
		t.Fatalf("haproxy_restarts before any death = %v, want 0", got)
	}
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		t.Fatalf("kill haproxy master %v: %v", pid, err)
	}
	var newPID float64
	waitFor(t, 30*time.Second, "clbd to start haproxy again", func() bool {
		newPID, _ = s.c.status()["haproxy_pid"].(float64)
		return newPID > 0 && newPID != pid
	})
	if got := s.c.status()["haproxy_restarts"]; got != 1.0 {
		t.Errorf("haproxy_restarts after one kill = %v, want 1", got)
	}
	if got, ok := metric(t, s.c, "clb_haproxy_restarts_total"); !ok || got != "1" {
		t.Errorf("clb_haproxy_restarts_total = %q (found %v), want 1", got, ok)
	}
	waitFor(t, 10*time.Second, "the restarted haproxy to serve b1", func() bool {
		return spread(t, s.front, 1)["b1"] == 1
	})
	wantServed(t, s.front, 10, "b1")
	if got := s.c.status()["haproxy_pid"]; got != newPID {
		t.Errorf("haproxy_pid = %v, want %v (no further restart)", got, newPID)
	}
}

// TestPendingChanges: while a user template renders a config haproxy -c refuses, a
// registration answers 503 not_applied and pending_changes counts it, and keeps counting it;
// once the template is removed the retry applies it and pending_changes is back to 0.
func TestPendingChanges(t *testing.T) {
	s := newScenario(t, true)
	s.register("b1")
	if got := s.c.status()["pending_changes"]; got != 0.0 {
		t.Fatalf("pending_changes after an applied registration = %v, want 0", got)
	}
	tmpl := filepath.Join(s.dir, "templates", "haproxy.tmpl")
	if err := os.MkdirAll(filepath.Dir(tmpl), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, tmpl, "global\n    no-such-keyword-clb\n", 0o644)
	waitFor(t, 10*time.Second, "/v1/status to report the config haproxy refuses", func() bool {
		r, e := lastApply(s.c.status())
		return r == "error" && strings.Contains(e, "no-such-keyword-clb")
	})
	// The template change itself may count as asked for and not applied.
	before, _ := s.c.status()["pending_changes"].(float64)

	code, ans := s.c.call("PUT", "/v1/services/web/members/b2", "correct horse battery staple",
		map[string]any{"address": "127.0.0.2", "port": s.ports["b2"]})
	if code != http.StatusServiceUnavailable || ans["code"] != "not_applied" {
		t.Fatalf("PUT b2 with a refused config = %d %v, want 503 not_applied", code, ans)
	}
	for i := range 2 {
		if i > 0 {
			time.Sleep(150 * time.Millisecond)
		}
		st := s.c.status()
		if got, _ := st["pending_changes"].(float64); got < 1 || got < before+1 {
			t.Errorf("pending_changes (read %d) after a registration not applied = %v, want >= 1 and more than the %v before it", i+1, st["pending_changes"], before)
		}
	}
	if got, ok := metric(t, s.c, "clb_pending_changes"); !ok || got == "0" {
		t.Errorf("clb_pending_changes = %q (found %v), want >= 1", got, ok)
	}
	wantServed(t, s.front, 10, "b1")

	if err := os.Remove(tmpl); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "pending_changes to go back to 0 after the template fix", func() bool {
		st := s.c.status()
		r, _ := lastApply(st)
		return r == "ok" && st["pending_changes"] == 0.0
	})
	if got, ok := metric(t, s.c, "clb_pending_changes"); !ok || got != "0" {
		t.Errorf("clb_pending_changes after the fix = %q (found %v), want 0", got, ok)
	}
	wantServed(t, s.front, 20, "b1", "b2")
}

// runBounded runs one of the module's commands for at most limit; exited is false when it had
// to be killed at the limit.
func runBounded(t testing.TB, limit time.Duration, name string, args ...string) (code int, out string, exited bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t, name), args...)
	cmd.Env = append(os.Environ(), "CLB_PASSWORD=", "HOME="+t.TempDir())
	b, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return -1, string(b), false
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(b), true
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return 0, string(b), true
}

// fill writes path until its file system has no room left (ENOSPC), then checks that a new
// file cannot take a byte. Bounded: at most 64 MiB.
func fill(t testing.TB, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	var werr error
	for range 1024 {
		if _, werr = f.Write(chunk); werr != nil {
			break
		}
	}
	f.Close()
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("filling %s: %v, want ENOSPC within 64 MiB", path, werr)
	}
	probe := filepath.Join(filepath.Dir(path), "probe")
	err = os.WriteFile(probe, []byte("x"), 0o644)
	os.Remove(probe)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a new file on the filled file system: %v, want ENOSPC", err)
	}
}

// stateMembers parses state.json and returns the names of web's members, sorted.
func stateMembers(t testing.TB, path string) []string {
	t.Helper()
	var f struct {
		Services map[string]struct {
			Members []struct{ Name string }
		}
	}
	data := readFile(t, path)
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("state.json does not parse: %v\n%s", err, data)
	}
	var names []string
	for _, m := range f.Services["web"].Members {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return names
}

// wantKeptOnly checks that state.json in dir parses and holds exactly the members named, and
// that no temp file of a failed write is left in dir.
func wantKeptOnly(t testing.TB, dir string, names ...string) {
	t.Helper()
	if got := stateMembers(t, filepath.Join(dir, "state.json")); !slices.Equal(got, names) {
		t.Errorf("state.json members = %v, want %v", got, names)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temp file %s left in the state dir", e.Name())
		}
	}
}

// metric returns the value of an unlabelled metric from clbd's /metrics.
func metric(t testing.TB, c *clbd, name string) (string, bool) {
	t.Helper()
	resp, err := noKeepAlive.Get("http://" + c.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v, true
		}
	}
	return "", false
}
