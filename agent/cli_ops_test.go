package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"clb/agent/api"
	"clb/agent/config"
	"clb/internal/testutil"
)

// The operator commands (clbd status, members, zone, unregister) against a real clbd with a
// real haproxy (managed) and real backends, run in-process through CLIMain with nothing but the
// config file clbd runs with: endpoint, TLS and key come from it.

// opCLI runs `clbd --config cfgFile ARGS` (the global flag before the command, as people type
// it) and returns the exit code, stdout and stderr.
func opCLI(t *testing.T, cfgFile string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := CLIMain(append([]string{"clbd", "--config", cfgFile}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// writeOpConfig writes a clbd config file for the CLI: the agent's listen address with an
// unspecified host (":PORT", as in production), its files and TLS settings.
func writeOpConfig(t *testing.T, s *secureAgent, extra string) string {
	t.Helper()
	u, err := url.Parse(s.api)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(u.Host)
	cfg := s.a.config()
	f := filepath.Join(t.TempDir(), "clbd.yaml")
	body := fmt.Sprintf("listen: \":%s\"\nstate_dir: %s\n%s", port, cfg.StateDir, extra)
	if cfg.TLSCert != "" {
		body += fmt.Sprintf("tls_cert: %s\ntls_key: %s\n", cfg.TLSCert, cfg.TLSKey)
	}
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// haproxyWeights reads `show servers state` from haproxy's admin socket: the user weight of
// each server of backend by its port.
func haproxyWeights(t *testing.T, socket string) map[int]int {
	t.Helper()
	conn, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		t.Fatalf("admin socket: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("show servers state\n")); err != nil {
		t.Fatal(err)
	}
	weights := map[int]int{}
	var cols map[string]int
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 1 && f[0] == "#" && cols == nil {
			cols = map[string]int{}
			for i, name := range f[1:] {
				cols[name] = i
			}
			continue
		}
		if cols == nil || len(f) <= cols["srv_port"] || strings.HasPrefix(f[0], "#") {
			continue
		}
		port, err1 := strconv.Atoi(f[cols["srv_port"]])
		w, err2 := strconv.Atoi(f[cols["srv_uweight"]])
		if err1 == nil && err2 == nil && f[cols["srv_addr"]] == "127.0.0.1" {
			weights[port] = w
		}
	}
	if cols == nil {
		t.Fatal("show servers state: no header")
	}
	return weights
}

// membersJSON is `clbd members web --json`, decoded.
func membersJSON(t *testing.T, cfgFile string) api.ServiceView {
	t.Helper()
	code, out, errOut := opCLI(t, cfgFile, "members", "--json", "web")
	if code != 0 {
		t.Fatalf("clbd members --json web: exit %d: %s", code, errOut)
	}
	var v api.ServiceView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("clbd members --json is not a ServiceView: %v\n%s", err, out)
	}
	return v
}

func memberByName(v api.ServiceView, name string) (api.MemberView, bool) {
	i := slices.IndexFunc(v.Members, func(m api.MemberView) bool { return m.Name == name })
	if i < 0 {
		return api.MemberView{}, false
	}
	return v.Members[i], true
}

func TestOperatorCLI(t *testing.T) {
	s := newSecureAgent(t, secureOpts{})
	b2Port := startBackend(t, "b2")
	cfgFile := writeOpConfig(t, s, fmt.Sprintf("keys_file: %s\npassword_file: %s\n", s.keys, s.a.config().PasswordFile))
	for name, body := range map[string]string{
		"m1": fmt.Sprintf(`{"address":"127.0.0.1","port":%d,"zone":"a"}`, s.b1Port),
		"m2": fmt.Sprintf(`{"address":"127.0.0.1","port":%d,"zone":"b","ttl":"1h"}`, b2Port),
	} {
		if st, out := s.call("PUT", "/v1/services/web/members/"+name, "default", body); st != http.StatusOK {
			t.Fatalf("register %s = %d %v", name, st, out)
		}
	}
	waitUntil(t, "haproxy to report m1 and m2 up (clbd members --json)", func() bool {
		v := membersJSON(t, cfgFile)
		m1, ok1 := memberByName(v, "m1")
		m2, ok2 := memberByName(v, "m2")
		return ok1 && ok2 && m1.Health == "up" && m2.Health == "up"
	})

	t.Run("status table", func(t *testing.T) {
		code, out, errOut := opCLI(t, cfgFile, "status")
		if code != 0 {
			t.Fatalf("clbd status: exit %d: %s", code, errOut)
		}
		for _, want := range []string{
			"mode               managed, haproxy pid ",
			"last apply         ok via ",
			fmt.Sprintf("m1      127.0.0.1:%d  a     ", s.b1Port),
			fmt.Sprintf("m2      127.0.0.1:%d  b     ", b2Port),
			"1h0m0s, expires in 59m",
			"db       tcp 127.0.0.1:",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("clbd status lacks %q:\n%s", want, out)
			}
		}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) >= 5 && (f[0] == "m1" || f[0] == "m2") && f[4] != "up" {
				t.Errorf("member row without health up: %q", line)
			}
		}
	})

	t.Run("status --json parsed back", func(t *testing.T) {
		code, out, errOut := opCLI(t, cfgFile, "status", "--json")
		if code != 0 {
			t.Fatalf("clbd status --json: exit %d: %s", code, errOut)
		}
		var got struct {
			Status   Status            `json:"status"`
			Services []api.ServiceView `json:"services"`
		}
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("clbd status --json: %v\n%s", err, out)
		}
		want := s.a.status()
		if got.Status.Mode != "managed" || got.Status.HaproxyPID != want.HaproxyPID || got.Status.HaproxyVersion != want.HaproxyVersion ||
			got.Status.LastApply.Generation == 0 || got.Status.LastApply.Result != "ok" {
			t.Errorf("status --json: mode %q pid %d version %q last apply %+v; want managed, pid %d, %q, an ok apply",
				got.Status.Mode, got.Status.HaproxyPID, got.Status.HaproxyVersion, got.Status.LastApply, want.HaproxyPID, want.HaproxyVersion)
		}
		_, direct := s.call("GET", "/v1/services", "ops", "")
		raw, _ := json.Marshal(direct["services"])
		var wantServices []api.ServiceView
		if err := json.Unmarshal(raw, &wantServices); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(serviceViewNames(got.Services)) != fmt.Sprint(serviceViewNames(wantServices)) {
			t.Fatalf("services %v, want %v", serviceViewNames(got.Services), serviceViewNames(wantServices))
		}
		for i := range wantServices {
			g, w := got.Services[i], wantServices[i]
			if fmt.Sprintf("%+v", g.Listeners) != fmt.Sprintf("%+v", w.Listeners) || fmt.Sprint(g.Zones) != fmt.Sprint(w.Zones) || len(g.Members) != len(w.Members) {
				t.Errorf("service %s: --json %+v, API %+v", w.Name, g, w)
				continue
			}
			for j := range w.Members {
				if g.Members[j].Member != w.Members[j].Member || g.Members[j].LeaseTTL != w.Members[j].LeaseTTL {
					t.Errorf("service %s member %d: --json %+v, API %+v", w.Name, j, g.Members[j], w.Members[j])
				}
			}
		}
	})

	t.Run("zone disable and enable", func(t *testing.T) {
		socket := s.a.config().AdminSocket()
		if w := haproxyWeights(t, socket); w[s.b1Port] == 0 || w[b2Port] == 0 {
			t.Fatalf("haproxy weights before: %v, want both members > 0", w)
		}
		code, out, errOut := opCLI(t, cfgFile, "zone", "disable", "web", "a")
		if code != 0 || !strings.Contains(out, "zone a of web disabled") {
			t.Fatalf("clbd zone disable web a: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		if w := haproxyWeights(t, socket); w[s.b1Port] != 0 || w[b2Port] == 0 {
			t.Errorf("haproxy weights after disabling zone a: %v, want m1 (port %d) 0 and m2 (port %d) > 0", w, s.b1Port, b2Port)
		}
		v := membersJSON(t, cfgFile)
		if i := slices.IndexFunc(v.Zones, func(z api.ZoneView) bool { return z.Name == "a" }); i < 0 || v.Zones[i].Enabled {
			t.Errorf("clbd members --json: zones %+v, want a disabled", v.Zones)
		}
		_, table, _ := opCLI(t, cfgFile, "members", "web")
		zoneRow := slices.ContainsFunc(strings.Split(table, "\n"), func(l string) bool { return strings.Join(strings.Fields(l), " ") == "a no 1" })
		if !strings.Contains(table, "a (disabled)") || !zoneRow {
			t.Errorf("clbd members web does not show zone a disabled:\n%s", table)
		}
		code, out, errOut = opCLI(t, cfgFile, "zone", "enable", "--json", "web", "a")
		var ans map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &ans) != nil || ans["applied"] != true || ans["enabled"] != true {
			t.Fatalf("clbd zone enable --json web a: exit %d, %q (%s)", code, out, errOut)
		}
		if w := haproxyWeights(t, socket); w[s.b1Port] == 0 {
			t.Errorf("haproxy weights after enabling zone a: %v, want m1 > 0", w)
		}
	})

	t.Run("register-scoped keys get the 403 and its exit code", func(t *testing.T) {
		pwOnly := writeOpConfig(t, s, fmt.Sprintf("password_file: %s\n", s.a.config().PasswordFile))
		code, _, errOut := opCLI(t, pwOnly, "zone", "disable", "web", "a")
		if code != 77 || !strings.Contains(errOut, "HTTP 403 forbidden") || !strings.Contains(errOut, `the key "default"`) || !strings.Contains(errOut, "use an admin key") {
			t.Errorf("zone disable with the password: exit %d, stderr %q; want 77 and the admin-key hint", code, errOut)
		}
		code, _, errOut = opCLI(t, cfgFile, "zone", "disable", "--key", "web-deploy", "web", "a")
		if code != 77 || !strings.Contains(errOut, `the key "web-deploy"`) {
			t.Errorf("zone disable --key web-deploy: exit %d, stderr %q; want 77", code, errOut)
		}
		// Reading works with the password: register scope covers every service.
		if code, out, errOut := opCLI(t, pwOnly, "members", "web"); code != 0 || !strings.Contains(out, "m1") {
			t.Errorf("members with the password: exit %d, %s%s", code, out, errOut)
		}
		if w := haproxyWeights(t, s.a.config().AdminSocket()); w[s.b1Port] == 0 {
			t.Errorf("a refused zone disable changed haproxy: %v", w)
		}
	})

	t.Run("not found and bad usage", func(t *testing.T) {
		if code, out, errOut := opCLI(t, cfgFile, "members", "nope"); code != 67 || !strings.Contains(errOut, `unknown service "nope"`) {
			t.Errorf("members nope: exit %d, %s%s; want 67", code, out, errOut)
		}
		if code, out, errOut := opCLI(t, cfgFile, "members", "--json", "nope"); code != 67 || !strings.Contains(out, `"code": "not_found"`) {
			t.Errorf("members --json nope: exit %d, stdout %q, stderr %q; want 67 and the API's error JSON", code, out, errOut)
		}
		if code, _, errOut := opCLI(t, cfgFile, "unregister", "web"); code != 64 || !strings.Contains(errOut, "usage: clbd unregister [flags] SERVICE MEMBER") {
			t.Errorf("unregister web: exit %d, %s; want 64", code, errOut)
		}
		if code, _, errOut := opCLI(t, cfgFile, "zone", "disable", "web", "Bad Zone"); code != 64 {
			t.Errorf("zone disable with a bad zone: exit %d, %s; want 64", code, errOut)
		}
	})

	t.Run("unregister drains and removes", func(t *testing.T) {
		code, out, errOut := opCLI(t, cfgFile, "unregister", "web", "m2")
		if code != 0 || !strings.Contains(out, "member m2 of web: drained and removed") {
			t.Fatalf("clbd unregister web m2: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		if _, ok := memberByName(membersJSON(t, cfgFile), "m2"); ok {
			t.Errorf("m2 still listed after clbd unregister")
		}
		if got := s.served(20); got["b2"] != 0 || got["b1"] != 20 {
			t.Errorf("after unregistering m2, haproxy served %v, want b1 only", got)
		}
		if code, _, errOut := opCLI(t, cfgFile, "unregister", "web", "m2"); code != 67 {
			t.Errorf("unregister m2 again: exit %d (%s), want 67", code, errOut)
		}
	})

	t.Run("nothing listening", func(t *testing.T) {
		down := filepath.Join(t.TempDir(), "clbd.yaml")
		os.WriteFile(down, fmt.Appendf(nil, "listen: 127.0.0.1:%d\nkeys_file: %s\n", testutil.FreePort(t), s.keys), 0o644)
		code, _, errOut := opCLI(t, down, "status")
		if code != 69 || !strings.Contains(errOut, "connection refused: is clbd running?") {
			t.Errorf("status with nothing listening: exit %d, %q; want 69", code, errOut)
		}
	})
}

// TestOperatorCLIClbdStopped: clbd status answers while clbd runs and exits 69 ("is clbd
// running?") once it has stopped; the config file is the one clbd ran with.
func TestOperatorCLIClbdStopped(t *testing.T) {
	requireHaproxy(t)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte(testPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := testutil.FreePort(t)
	cfgFile := filepath.Join(dir, "clbd.yaml")
	yaml := fmt.Sprintf("listen: 127.0.0.1:%d\nstate_dir: %s\npassword_file: %s\noutput: %s\ntemplates: %s\n"+
		"services:\n  web:\n    listeners:\n      - port: %d\n        address: 127.0.0.1\n        member_port: 8000\n",
		port, dir, pwFile, filepath.Join(dir, "haproxy.cfg"), filepath.Join(dir, "templates"), testutil.FreePort(t))
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	if err := config.LoadFile(&cfg, cfgFile); err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	ready := make(chan net.Addr, 1)
	a, err := New(&cfg, Options{ConfigPath: cfgFile, Ready: ready, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run ended early: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("clbd not ready within 20s")
	}
	if code, out, errOut := opCLI(t, cfgFile, "status"); code != 0 || !strings.Contains(out, "SERVICES") {
		t.Fatalf("clbd status while clbd runs: exit %d\n%s%s", code, out, errOut)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	code, _, errOut := opCLI(t, cfgFile, "status")
	if code != 69 || !strings.Contains(errOut, "connection refused: is clbd running?") {
		t.Errorf("clbd status after clbd stopped: exit %d, %q; want 69 and \"is clbd running?\"", code, errOut)
	}
}

// TestOperatorCLIOverTLS: with tls_cert in the config, the commands use https and verify the
// server against that certificate, without a CA or host name; another certificate is refused.
func TestOperatorCLIOverTLS(t *testing.T) {
	certDir := t.TempDir()
	cert, key, _, _ := testutil.TestCert(t, certDir, "api", false, nil, nil, "127.0.0.1")
	s := newSecureAgent(t, secureOpts{tweak: func(c *config.Config) { c.TLSCert, c.TLSKey = cert, key }})
	cfgFile := writeOpConfig(t, s, fmt.Sprintf("keys_file: %s\n", s.keys))
	code, out, errOut := opCLI(t, cfgFile, "members", "web")
	if code != 0 || !strings.Contains(out, "SERVICE web") {
		t.Fatalf("clbd members web over TLS: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	other, _, _, _ := testutil.TestCert(t, t.TempDir(), "other", false, nil, nil, "127.0.0.1")
	wrong := strings.Replace(readTextFile(t, cfgFile), cert, other, 1)
	os.WriteFile(cfgFile, []byte(wrong), 0o644)
	code, _, errOut = opCLI(t, cfgFile, "members", "web")
	if code != 1 || !strings.Contains(errOut, "is not the one in tls_cert") {
		t.Errorf("with another tls_cert: exit %d, %q; want 1 and the pin error", code, errOut)
	}
}

func readTextFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func serviceViewNames(vs []api.ServiceView) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Name
	}
	return out
}

// TestOperatorCLIFailedApply: with a template haproxy cannot use, an admin action is saved but
// not applied (exit 75, the API's message), and clbd status shows the failed apply and the
// pending change; once the template is gone, the change lands.
func TestOperatorCLIFailedApply(t *testing.T) {
	s := newSecureAgent(t, secureOpts{})
	cfgFile := writeOpConfig(t, s, fmt.Sprintf("keys_file: %s\n", s.keys))
	if st, out := s.call("PUT", "/v1/services/web/members/m1", "default", fmt.Sprintf(`{"address":"127.0.0.1","port":%d,"zone":"a"}`, s.b1Port)); st != http.StatusOK {
		t.Fatalf("register m1 = %d %v", st, out)
	}
	tmpl := filepath.Join(s.a.config().Templates, "haproxy.tmpl")
	if err := os.MkdirAll(filepath.Dir(tmpl), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmpl, []byte("global\n    no-such-directive {{ len .Services }}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the broken template to fail an apply", func() bool { return s.a.status().LastApply.Result == "error" })
	code, _, errOut := opCLI(t, cfgFile, "zone", "disable", "web", "a")
	if code != 75 || !strings.Contains(errOut, "not_applied") || !strings.Contains(errOut, "clbd keeps retrying") {
		t.Fatalf("zone disable with a broken template: exit %d, %q; want 75 and not_applied", code, errOut)
	}
	code, out, errOut := opCLI(t, cfgFile, "status")
	if code != 0 || !strings.Contains(out, "last apply         ERROR") || !strings.Contains(out, "no-such-directive") || strings.Contains(out, "pending changes    0") {
		t.Errorf("clbd status after a failed apply: exit %d, want the failed apply, its error and pending changes:\n%s%s", code, out, errOut)
	}
	if err := os.Remove(tmpl); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the change to land with the built-in template", func() bool {
		return s.a.status().LastApply.Result == "ok" && haproxyWeights(t, s.a.config().AdminSocket())[s.b1Port] == 0
	})
	if code, out, _ := opCLI(t, cfgFile, "status"); code != 0 || !strings.Contains(out, "pending changes    0") {
		t.Errorf("clbd status once applied: exit %d\n%s", code, out)
	}
}
