package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"clb/agent/api"
	"clb/agent/config"
	"clb/internal/auth"
	"clb/internal/testutil"
)

const testPassword = "s3cret password"

// testAgent runs an in-process clbd in external mode without a reload command (it renders,
// checks with the real haproxy -c and installs) and returns its API base URL.
func testAgent(t *testing.T) (string, *Agent) {
	t.Helper()
	requireHaproxy(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte(testPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	if err := config.Decode(&cfg, config.DefaultConfigYAML(), "default"); err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.StateDir, cfg.Templates, cfg.PasswordFile = "127.0.0.1:0", dir, filepath.Join(dir, "templates"), pw
	cfg.Output = filepath.Join(dir, "haproxy.cfg")
	cfg.RequestTimeout = 10 * time.Second
	a, addr := startAgent(t, &cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return "http://" + addr.String(), a
}

// startAgent runs an in-process agent until the test ends and returns it once its API
// listens (bounded: 20 s); a Run that ends with an error fails the test.
func startAgent(t *testing.T, cfg *config.Config, opts Options) (*Agent, net.Addr) {
	t.Helper()
	ready := make(chan net.Addr, 1)
	opts.Ready = ready
	a, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case addr := <-ready:
		return a, addr
	case err := <-done:
		t.Fatalf("Run ended early: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("agent not ready within 20s")
	}
	return nil, nil
}

type apiCase struct {
	name     string
	method   string
	path     string
	body     string
	sign     bool
	password string
	mutate   func(*http.Request)
	status   int
	code     string
	errHas   string
}

func doCase(t *testing.T, base string, c apiCase) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.sign {
		pw := c.password
		if pw == "" {
			pw = testPassword
		}
		if err := auth.Sign(req, "default", auth.DeriveKey([]byte(pw)), []byte(c.body), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if c.mutate != nil {
		c.mutate(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
	return resp.StatusCode, out
}

// TestAPIRefusals: bad calls get the right status, a JSON error naming the problem, and change
// neither the state nor haproxy.cfg.
func TestAPIRefusals(t *testing.T) {
	base, a := testAgent(t)
	ok := apiCase{method: "PUT", path: "/v1/services/web/members/good", body: `{"address":"127.0.0.1","port":8001}`, sign: true}
	if st, out := doCase(t, base, ok); st != http.StatusOK {
		t.Fatalf("good registration = %d %v", st, out)
	}
	state := snapshotFiles(t, a)
	cases := []apiCase{
		{name: "unsigned", method: "PUT", path: "/v1/services/web/members/x", status: 401, code: "unauthenticated", errHas: "signature"},
		{name: "wrong password", method: "PUT", path: "/v1/services/web/members/x", sign: true, password: "nope", status: 401, code: "unauthenticated"},
		{name: "body tampered", method: "PUT", path: "/v1/services/web/members/x", body: `{"port":1}`, sign: true, status: 401, code: "unauthenticated",
			mutate: func(r *http.Request) { r.Body = io.NopCloser(strings.NewReader(`{"port":2}`)); r.ContentLength = 10 }},
		{name: "stale timestamp", method: "PUT", path: "/v1/services/web/members/x", status: 401, code: "unauthenticated",
			mutate: func(r *http.Request) {
				auth.Sign(r, "default", auth.DeriveKey([]byte(testPassword)), nil, time.Now().Add(-10*time.Minute))
			}},
		{name: "unknown service", method: "PUT", path: "/v1/services/nope/members/x", sign: true, status: 404, code: "not_found", errHas: "unknown service \"nope\""},
		{name: "bad service name", method: "PUT", path: "/v1/services/Bad%20Name/members/x", sign: true, status: 400, code: "bad_request", errHas: "service name"},
		{name: "bad member name", method: "PUT", path: "/v1/services/web/members/-x", sign: true, status: 400, code: "bad_request", errHas: "member name"},
		{name: "malformed json", method: "PUT", path: "/v1/services/web/members/x", body: `{"port":`, sign: true, status: 400, code: "bad_request", errHas: "decode"},
		{name: "wrong type", method: "PUT", path: "/v1/services/web/members/x", body: `{"port":"80"}`, sign: true, status: 400, code: "bad_request", errHas: "port"},
		{name: "unknown field", method: "PUT", path: "/v1/services/web/members/x", body: `{"prot":80}`, sign: true, status: 400, code: "bad_request", errHas: "unknown field"},
		{name: "two values", method: "PUT", path: "/v1/services/web/members/x", body: `{} {}`, sign: true, status: 400, code: "bad_request", errHas: "more than one"},
		{name: "port out of range", method: "PUT", path: "/v1/services/web/members/x", body: `{"port":65536}`, sign: true, status: 400, code: "bad_request", errHas: "port 65536"},
		{name: "weight out of range", method: "PUT", path: "/v1/services/web/members/x", body: `{"weight":257}`, sign: true, status: 400, code: "bad_request", errHas: "weight 257"},
		{name: "address injection", method: "PUT", path: "/v1/services/web/members/x", body: `{"address":"1.2.3.4:80\n    server evil 6.6.6.6"}`, sign: true, status: 400, code: "bad_request", errHas: "address"},
		{name: "zone injection", method: "PUT", path: "/v1/services/web/members/x", body: `{"zone":"a b"}`, sign: true, status: 400, code: "bad_request", errHas: "zone"},
		{name: "name mismatch", method: "PUT", path: "/v1/services/web/members/x", body: `{"name":"y"}`, sign: true, status: 400, code: "bad_request", errHas: "body names member"},
		{name: "too large", method: "PUT", path: "/v1/services/web/members/x", body: `{"zone":"` + strings.Repeat("a", api.MaxBody) + `"}`, sign: true, status: 413, code: "too_large"},
		{name: "method not allowed", method: "PATCH", path: "/v1/services/web/members/x", sign: true, status: 405, code: "method_not_allowed", errHas: "PATCH"},
		{name: "no such endpoint", method: "GET", path: "/v2/x", sign: true, status: 404, code: "not_found", errHas: "no such endpoint"},
		{name: "no such endpoint unsigned", method: "GET", path: "/v2/x", status: 401, code: "unauthenticated", errHas: "signature"},
		{name: "unregister unknown", method: "DELETE", path: "/v1/services/web/members/ghost", sign: true, status: 404, code: "not_found", errHas: "not registered"},
		{name: "unregister self unknown", method: "DELETE", path: "/v1/services/web/members", body: `{"port":1}`, sign: true, status: 404, code: "not_found", errHas: "no member with address 127.0.0.1 and port 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, out := doCase(t, base, c)
			if st != c.status || out["code"] != c.code {
				t.Fatalf("got %d %v, want %d %s", st, out, c.status, c.code)
			}
			if msg, _ := out["error"].(string); !strings.Contains(msg, c.errHas) {
				t.Errorf("error %q does not contain %q", msg, c.errHas)
			}
			if got := snapshotFiles(t, a); got != state {
				t.Errorf("state or haproxy.cfg changed:\n%s\nwant\n%s", got, state)
			}
		})
	}
}

func snapshotFiles(t *testing.T, a *Agent) string {
	t.Helper()
	var b bytes.Buffer
	for _, p := range []string{filepath.Join(a.config().StateDir, "state.json"), a.config().Output} {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "== %s\n%s", p, data)
	}
	return b.String()
}

// TestAPIRegisterDefaults: address from the connection, port from the service, name
// address:port; the member is in the rendered config when the call returns.
func TestAPIRegisterDefaults(t *testing.T) {
	base, a := testAgent(t)
	st, out := doCase(t, base, apiCase{method: "POST", path: "/v1/services/web/members", body: `{"zone":"a","weight":7}`, sign: true})
	if st != http.StatusOK || out["applied"] != true {
		t.Fatalf("POST = %d %v", st, out)
	}
	m := out["member"].(map[string]any)
	if m["name"] != "127.0.0.1:8000" || m["address"] != "127.0.0.1" || m["port"] != 8000.0 || m["weight"] != 7.0 || m["zone"] != "a" {
		t.Errorf("member = %v, want 127.0.0.1:8000 with weight 7, zone a", m)
	}
	cfg, err := os.ReadFile(a.config().Output)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), " 127.0.0.1:8000 weight 7 # 127.0.0.1:8000") {
		t.Errorf("registered member not in haproxy.cfg:\n%s", cfg)
	}
	st, out = doCase(t, base, apiCase{method: "GET", path: "/v1/status", sign: true})
	recent, _ := out["recent_applies"].([]any)
	if st != http.StatusOK || len(recent) == 0 {
		t.Fatalf("GET /v1/status = %d, recent_applies %v", st, out["recent_applies"])
	}
	if last := recent[0].(map[string]any); last["result"] != "ok" || last["path"] == "" || last["generation"] != out["last_apply"].(map[string]any)["generation"] {
		t.Errorf("newest recent apply = %v, last_apply = %v", last, out["last_apply"])
	}
	st, out = doCase(t, base, apiCase{method: "DELETE", path: "/v1/services/web/members", sign: true})
	if st != http.StatusOK {
		t.Fatalf("DELETE self = %d %v", st, out)
	}
	st, out = doCase(t, base, apiCase{method: "PUT", path: "/v1/services/web/members/n1?wait=false", body: `{"address":"127.0.0.5"}`, sign: true})
	if st != http.StatusAccepted || out["status_url"] != "/v1/status" {
		t.Errorf("PUT ?wait=false = %d %v, want 202 with a status URL", st, out)
	}
}
func requireHaproxy(t testing.TB) { testutil.RequireHaproxy(t) }
