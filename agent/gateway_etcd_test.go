package agent_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"clb/agent/config"
	"clb/agent/reconcile"
	"clb/internal/etcdtest"
	"clb/internal/haproxy"
)

// TestEtcdGateways: a gateway and its domains defined on node A (with the clbd gateway
// commands) are stored in etcd and served by node B too; a domain change reaches B's haproxy
// through its runtime maps, without a reload there. Both haproxies bind the gateway's port
// (SO_REUSEPORT), so requests to it may reach either: each must answer by the new routes.
func TestEtcdGateways(t *testing.T) {
	c := etcdtest.Start(t, 1)
	f := newFleet(t, c, 2, nil)
	A, B := f.nodes[0], f.nodes[1]
	gwPort := freePort(t)
	dir := shortDir(t)
	gwFile, domFile := filepath.Join(dir, "pub.yaml"), filepath.Join(dir, "www.yaml")
	writeFile(t, gwFile, fmt.Sprintf("bind: 127.0.0.1:%d\ndomains:\n  www.example.com:\n    routes: [{name: all, service: web}]\n", gwPort), 0o644)
	writeFile(t, domFile, `{"routes":[{"name":"gone","match":{"path_prefix":"/"},"status":410}]}`, 0o644)
	cli := func(nd *lbNode, args ...string) string {
		t.Helper()
		flags := []string{"--server", "http://" + nd.c.api, "--keys-file", f.keys, "--key", "admin"}
		// clbd gateway [domain] VERB FLAGS ARGS
		i := 2
		if args[1] == "domain" {
			i = 3
		}
		return mustRun(t, "clbd", append(append(append([]string{}, args[:i]...), flags...), args[i:]...)...)
	}
	f.register(A, "b1")
	f.converge("b1 registered", "b1")
	out := cli(A, "gateway", "put", "pub", gwFile)
	if !strings.Contains(out, `"applied": true`) {
		t.Fatalf("clbd gateway put: %s", out)
	}
	// B learns the gateway from etcd: its map files and its haproxy.
	bMaps := filepath.Join(B.dir, "clb-maps")
	bSock := filepath.Join(B.dir, "haproxy-admin.sock")
	waitFor(t, 15*time.Second, "node B's haproxy runs gateway pub", func() bool {
		p := filepath.Join(bMaps, "gw.pub.prefix.map")
		data, _ := os.ReadFile(p)
		return strings.Contains(string(data), "www.example.com@ web_") &&
			haproxy.CheckMap(context.Background(), bSock, p, haproxy.ParseMap(data)) == nil &&
			B.c.status()["last_apply"].(map[string]any)["path"] == "reload"
	})
	wantAll := func(what string, want int) {
		t.Helper()
		waitFor(t, 15*time.Second, what, func() bool {
			for range 8 {
				req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/x", gwPort), nil)
				req.Host = "www.example.com"
				resp, err := noKeepAlive.Do(req)
				if err != nil {
					return false
				}
				resp.Body.Close()
				if resp.StatusCode != want {
					return false
				}
			}
			return true
		})
	}
	wantAll("both nodes route www.example.com to web", http.StatusOK)
	reloadsB := B.c.status()["reloads"]
	out = cli(A, "gateway", "domain", "put", "pub", "www.example.com", domFile)
	if !strings.Contains(out, `"applied": true`) {
		t.Fatalf("clbd gateway domain put: %s", out)
	}
	wantAll("both nodes answer 410 for www.example.com", http.StatusGone)
	if got := B.c.status()["reloads"]; got != reloadsB {
		t.Errorf("node B reloaded for a domain change (%v → %v); want its runtime maps", reloadsB, got)
	}
	paths, _ := filepath.Glob(filepath.Join(bMaps, "*.map"))
	for _, p := range paths {
		data, _ := os.ReadFile(p)
		if err := haproxy.CheckMap(context.Background(), bSock, p, haproxy.ParseMap(data)); err != nil {
			t.Errorf("node B: %v", err)
		}
	}
	if out := cli(B, "gateway", "list"); !strings.Contains(out, `"source": "api"`) || !strings.Contains(out, "www.example.com") {
		t.Errorf("clbd gateway list on B: %s", out)
	}
}

// TestGatewayKill9External: external mode (haproxy run as Debian's service would, clbd with
// --runtime-socket), a config-file gateway. clbd is killed with SIGKILL; meanwhile haproxy's
// loaded map is changed behind its back and a new version is left prepared but never
// committed (what a clbd killed between prepare and commit leaves). The clbd started again
// finds the loaded maps differ from the files and loads the files through the runtime API:
// traffic follows the files, with no reload (worker pid and reload counter unchanged).
func TestGatewayKill9External(t *testing.T) {
	requireHaproxyBin(t)
	dir := shortDir(t)
	front, member, gwPort := freePort(t), freePort(t), freePort(t)
	backend(t, "b1", fmt.Sprintf("127.0.0.1:%d", member))
	cfgPath := filepath.Join(dir, "clbd.yaml")
	cfgText := webConfig(front, member, fmt.Sprintf("gateways:\n  pub:\n    bind: 127.0.0.1:%d\n    domains:\n      www.example.com:\n        routes: [{name: all, service: web}]\n", gwPort))
	writeFile(t, cfgPath, cfgText, 0o644)
	pwFile := filepath.Join(dir, "password")
	writeFile(t, pwFile, fleetPassword+"\n", 0o600)
	hapCfg, pid, sock := filepath.Join(dir, "external.cfg"), filepath.Join(dir, "external.pid"), filepath.Join(dir, "admin.sock")
	script, err := filepath.Abs("testdata/reload-haproxy.sh")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", cfgPath, "--state-dir", dir, "--templates", filepath.Join(dir, "templates"), "--password-file", pwFile,
		"-o", hapCfg, "--reload-cmd", fmt.Sprintf("%q %q", script, pid), "--runtime-socket", sock}
	// haproxy runs first, on the config and maps clbd renders.
	writeFile(t, hapCfg, mustRun(t, "clbd", append([]string{"render"}, args...)...), 0o644)
	cfg := config.Defaults()
	if err := config.Decode(&cfg, []byte(cfgText), "test"); err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	_, files, _, err := reconcile.Gateways(&cfg, config.MapDir(hapCfg), config.CertDir(hapCfg))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.WriteMaps(files); err != nil {
		t.Fatal(err)
	}
	hap := exec.Command("haproxy", "-W", "-f", hapCfg, "-p", pid)
	if err := hap.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hap.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { hap.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			hap.Process.Kill()
		}
	})
	get := func() string {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/", gwPort), nil)
		req.Host = "www.example.com"
		resp, err := noKeepAlive.Do(req)
		if err != nil {
			return "ERR " + err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	c := startClbd(t, dir, args...)
	mustRun(t, "clb_register", "--server", "http://"+c.api, "--password-file", pwFile, "--service", "web", "--name", "b1",
		"--address", "127.0.0.1", "--port", itoa(member))
	waitFor(t, 10*time.Second, "the gateway routes to b1", func() bool { return get() == "200 b1" })
	workerPid := func() string {
		out, err := haproxy.AdminCommand(context.Background(), sock, "show info")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(l, "Pid: "); ok {
				return v
			}
		}
		return ""
	}
	worker := workerPid()

	c.stop(syscall.SIGKILL)
	prefix := filepath.Join(config.MapDir(hapCfg), "gw.pub.prefix.map")
	for _, cmd := range []struct{ cmd, payload string }{
		{"set map " + prefix + " www.example.com@ gw.status.503", ""}, // haproxy now differs from the file
		{"prepare map " + prefix, ""},                                 // and a version left uncommitted
		{"add map @1 " + prefix, "www.example.com@ gw.status.410"},
	} {
		var payload []string
		if cmd.payload != "" {
			payload = []string{cmd.payload}
		}
		if out, err := haproxy.AdminCommand(context.Background(), sock, cmd.cmd, payload...); err != nil {
			t.Fatalf("%s: %v %s", cmd.cmd, err, out)
		}
	}
	if got := get(); !strings.HasPrefix(got, "503 ") {
		t.Fatalf("after the change behind clbd's back: %q, want 503", got)
	}
	c.start()
	waitFor(t, 10*time.Second, "the restarted clbd restores the files' routes", func() bool { return get() == "200 b1" })
	if got := workerPid(); got != worker {
		t.Errorf("haproxy worker %s → %s: want the maps repaired without a reload", worker, got)
	}
	if st := c.status(); st["reloads"] != float64(0) {
		t.Errorf("restarted clbd: reloads %v, want 0 (runtime maps)", st["reloads"])
	}
	data, _ := os.ReadFile(prefix)
	if err := haproxy.CheckMap(context.Background(), sock, prefix, haproxy.ParseMap(data)); err != nil {
		t.Error(err)
	}

	// A domain changed in the config file (hot-reloaded) goes through the maps too.
	writeFile(t, cfgPath, strings.Replace(cfgText, "routes: [{name: all, service: web}]", "routes: [{name: all, status: 410}]", 1), 0o644)
	waitFor(t, 10*time.Second, "the config file's new route", func() bool { return strings.HasPrefix(get(), "410 ") })
	if got := workerPid(); got != worker || c.status()["reloads"] != float64(0) {
		t.Errorf("a config-file domain change reloaded haproxy (worker %s → %s)", worker, got)
	}
}
