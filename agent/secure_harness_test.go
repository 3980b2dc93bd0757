package agent

import (
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

	"clb/agent/config"
	"clb/internal/auth"
	"clb/internal/testutil"
)

// Secrets of the secured test agent's keys.
const (
	secPassword  = "correct horse battery staple"
	secAdmin     = "admin-secret-0123456789abcdef"
	secWebKey    = "web-secret-0123456789abcdef"
	secAPIKey    = "api-secret-0123456789abcdef"
	secKeysFileF = `keys:
  - id: ops
    secret: %s
    scope: admin
  - id: web-deploy
    secret: %s
    scope: register
    services: [web]
  - id: api-deploy
    secret: %s
    scope: register
    services: ["api-*"]
`
)

// secrets maps key ids to the secrets of the secured agent.
var secrets = map[string]string{"default": secPassword, "ops": secAdmin, "web-deploy": secWebKey, "api-deploy": secAPIKey}

// secureAgent is an in-process clbd in managed mode (a real haproxy) with a keys file, a
// password file and a real HTTP backend "b1" behind service web.
type secureAgent struct {
	t      *testing.T
	a      *Agent
	api    string // http(s)://127.0.0.1:PORT
	front  string // http://127.0.0.1:PORT/ of service web
	b1Port int
	dir    string
	keys   string
	logs   *testutil.SyncBuffer
	client *http.Client
}

type secureOpts struct {
	maxMembers int
	burst      int
	tweak      func(*config.Config)
}

func freeTCPPort(t *testing.T) int { return testutil.FreePort(t) }

// startBackend serves name on 127.0.0.1:PORT and returns the port.
func startBackend(t *testing.T, name string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func newSecureAgent(t *testing.T, o secureOpts) *secureAgent {
	t.Helper()
	requireHaproxy(t)
	dir, err := os.MkdirTemp("", "clbsec")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &secureAgent{t: t, dir: dir, logs: &testutil.SyncBuffer{}, client: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	s.b1Port = startBackend(t, "b1")
	front := freeTCPPort(t)
	s.front = fmt.Sprintf("http://127.0.0.1:%d/", front)
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte(secPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.keys = filepath.Join(dir, "keys.yaml")
	if err := os.WriteFile(s.keys, fmt.Appendf(nil, secKeysFileF, secAdmin, secWebKey, secAPIKey), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`services:
  web:
    listeners:
      - port: %d
        address: 127.0.0.1
        member_port: %d
  db:
    listeners:
      - port: %d
        address: 127.0.0.1
        protocol: tcp
        member_port: 5432
  api-eu:
    listeners:
      - port: %d
        address: 127.0.0.1
        member_port: 8080
`, front, s.b1Port, freeTCPPort(t), freeTCPPort(t))
	cfg := config.Defaults()
	if err := config.Decode(&cfg, []byte(yaml), "test"); err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.StateDir, cfg.Templates = "127.0.0.1:0", dir, filepath.Join(dir, "templates")
	cfg.Managed, cfg.Output = true, filepath.Join(dir, config.ManagedCfgName)
	cfg.PasswordFile, cfg.KeysFile = pw, s.keys
	cfg.RequestTimeout = 15 * time.Second
	cfg.MaxMembers, cfg.AuthFailBurst = o.maxMembers, o.burst
	if o.tweak != nil {
		o.tweak(&cfg)
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	ready := make(chan net.Addr, 1)
	log := slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := New(&cfg, Options{Logger: log, Ready: ready})
	if err != nil {
		t.Fatal(err)
	}
	s.a = a
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			t.Logf("clbd log:\n%s", s.logs.String())
		}
	})
	select {
	case addr := <-ready:
		s.api = scheme + "://" + addr.String()
	case err := <-done:
		t.Fatalf("Run ended early: %v\n%s", err, s.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("agent not ready within 30s\n%s", s.logs.String())
	}
	return s
}

// request builds a request signed with key id (secret from secrets), or unsigned for "".
func (s *secureAgent) request(method, path, keyID, body string) *http.Request {
	s.t.Helper()
	req, err := http.NewRequest(method, s.api+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if keyID != "" {
		if err := auth.Sign(req, keyID, auth.DeriveKey([]byte(secrets[keyID])), []byte(body), time.Now()); err != nil {
			s.t.Fatal(err)
		}
	}
	return req
}

// do sends req and decodes the JSON answer.
func (s *secureAgent) do(req *http.Request) (*http.Response, map[string]any) {
	s.t.Helper()
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		s.t.Fatalf("%s %s: answer is not JSON: %v: %q", req.Method, req.URL.Path, err, raw)
	}
	return resp, out
}

func (s *secureAgent) call(method, path, keyID, body string) (int, map[string]any) {
	s.t.Helper()
	resp, out := s.do(s.request(method, path, keyID, body))
	return resp.StatusCode, out
}

// files returns state.json and haproxy.cfg, to compare before and after a call.
func (s *secureAgent) files() string {
	s.t.Helper()
	var b strings.Builder
	for _, p := range []string{filepath.Join(s.dir, "state.json"), s.a.config().Output} {
		data, err := os.ReadFile(p)
		if err != nil {
			s.t.Fatal(err)
		}
		fmt.Fprintf(&b, "== %s\n%s", p, data)
	}
	return b.String()
}

// served sends n requests to service web and counts the answers by body.
func (s *secureAgent) served(n int) map[string]int {
	return testutil.Spread(&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}, s.front, n)
}
