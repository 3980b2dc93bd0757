package agent_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
