package agent

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"clb/agent/config"
	"clb/agent/console"
	"clb/internal/auth"
	"clb/internal/testutil"
)

// The console in front of the real API of an in-process clbd (real keyring, limiter, store
// and haproxy -c), over plain HTTP: what each kind of key sees and may do, and that removing a
// key from the keys file ends its sessions. The browser test is console_browser_test.go.

const (
	consoleAdminSecret  = "console-admin-secret-0123456789"
	consoleMemberSecret = "console-member-secret-0123456789"
)

func consoleKeys(admin bool) string {
	s := "keys:\n"
	if admin {
		s += "  - id: ops\n    secret: " + consoleAdminSecret + "\n    scope: admin\n"
	}
	return s + "  - id: webmember\n    secret: " + consoleMemberSecret + "\n    scope: register\n    services: [web]\n"
}

// consoleAgent runs clbd with services web and shop, keys ops (admin) and webmember
// (register: web), and returns its base URL.
func consoleAgent(t *testing.T) (string, *Agent, string) {
	t.Helper()
	requireHaproxy(t)
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.yaml")
	if err := os.WriteFile(keys, []byte(consoleKeys(true)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	yaml := fmt.Sprintf(`services:
  web:
    listeners:
      - port: %d
        address: 127.0.0.1
        member_port: 8000
  shop:
    listeners:
      - port: %d
        address: 127.0.0.1
        member_port: 8001
`, testutil.FreePort(t), testutil.FreePort(t))
	if err := config.Decode(&cfg, []byte(yaml), "test"); err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.StateDir, cfg.Templates, cfg.KeysFile = "127.0.0.1:0", dir, filepath.Join(dir, "templates"), keys
	cfg.Output = filepath.Join(dir, "haproxy.cfg")
	cfg.RequestTimeout = 10 * time.Second
	cfg.AuthFailBurst = 2
	a, addr := startAgent(t, &cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return "http://" + addr.String(), a, keys
}

// uiCall sends a console request from the console's own origin.
func uiCall(t *testing.T, base, method, path, cookie, csrf, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", base)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	if csrf != "" {
		req.Header.Set(console.CSRFHeader, csrf)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: answer is not JSON: %v", method, path, err)
	}
	return resp, out
}

func uiLogin(t *testing.T, base, key, secret string) (cookie, csrf string, info map[string]any) {
	t.Helper()
	resp, out := uiCall(t, base, "POST", "/ui/login", "", "", fmt.Sprintf(`{"key":%q,"secret":%q}`, key, secret))
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 {
		t.Fatalf("login %s = %d %v (cookies %v)", key, resp.StatusCode, out, resp.Header.Values("Set-Cookie"))
	}
	c := resp.Cookies()[0]
	return c.Name + "=" + c.Value, out["csrf_token"].(string), out
}

func serviceNames(out map[string]any) []string {
	var names []string
	svcs, _ := out["services"].([]any)
	for _, s := range svcs {
		names = append(names, s.(map[string]any)["name"].(string))
	}
	return names
}

// TestConsoleScopes: a register-scoped key sees only its services and gets the API's 403 on
// a zone action (and the page is told it is no admin, so it shows no buttons); an admin key
// sees everything and its zone action is applied; the 2010 password logs in as "default".
func TestConsoleScopes(t *testing.T) {
	base, a, _ := consoleAgent(t)

	cookie, csrf, info := uiLogin(t, base, "webmember", consoleMemberSecret)
	if info["admin"] != false || info["scope"] != "register:web" {
		t.Errorf("register key's session = %v, want admin false, scope register:web", info)
	}
	resp, out := uiCall(t, base, "GET", "/ui/api/services", cookie, "", "")
	if got := serviceNames(out); resp.StatusCode != 200 || len(got) != 1 || got[0] != "web" {
		t.Errorf("register key sees %v (%d), want only web", got, resp.StatusCode)
	}
	resp, out = uiCall(t, base, "GET", "/ui/api/services/shop", cookie, "", "")
	if resp.StatusCode != 403 || out["code"] != "forbidden" {
		t.Errorf("register key GET shop = %d %v, want 403 forbidden", resp.StatusCode, out)
	}
	resp, out = uiCall(t, base, "POST", "/ui/api/services/web/zones/a/disable", cookie, csrf, "")
	if resp.StatusCode != 403 || out["code"] != "forbidden" || !strings.Contains(out["error"].(string), "admin scope") {
		t.Errorf("register key disables a zone = %d %v, want the API's 403 forbidden", resp.StatusCode, out)
	}
	if z := a.config().DisabledZones["web"]; len(z) != 0 {
		t.Errorf("zones disabled after a refused call: %v", z)
	}

	cookie, csrf, info = uiLogin(t, base, "ops", consoleAdminSecret)
	if info["admin"] != true {
		t.Errorf("admin session = %v", info)
	}
	resp, out = uiCall(t, base, "GET", "/ui/api/services", cookie, "", "")
	if got := serviceNames(out); len(got) != 2 {
		t.Errorf("admin sees %v, want shop and web", got)
	}
	resp, out = uiCall(t, base, "POST", "/ui/api/services/web/zones/a/disable", cookie, csrf, "")
	if resp.StatusCode != 200 || out["applied"] != true {
		t.Fatalf("admin disables zone a = %d %v, want 200 applied", resp.StatusCode, out)
	}
	if z := a.config().DisabledZones["web"]; len(z) != 1 || z[0] != "a" {
		t.Errorf("disabled zones = %v, want [a]", z)
	}
	// Validation is the API's.
	resp, out = uiCall(t, base, "POST", "/ui/api/services/web/zones/A%20B/disable", cookie, csrf, "")
	if resp.StatusCode != 400 || out["code"] != "bad_request" {
		t.Errorf("bad zone = %d %v, want 400 bad_request", resp.StatusCode, out)
	}
	resp, out = uiCall(t, base, "GET", "/ui/api/status", cookie, "", "")
	if resp.StatusCode != 200 || out["recent_applies"] == nil {
		t.Errorf("status = %d %v", resp.StatusCode, out)
	}
}

// TestConsoleSharedLimiter: failed console logins and failed signatures count in one limiter:
// after the burst of failed logins, a correctly signed API call from the same source is
// refused with 429 too, and so is a console login with the right secret.
func TestConsoleSharedLimiter(t *testing.T) {
	base, a, _ := consoleAgent(t)
	for range 2 {
		if resp, out := uiCall(t, base, "POST", "/ui/login", "", "", `{"key":"ops","secret":"wrong"}`); resp.StatusCode != 401 {
			t.Fatalf("wrong login = %d %v", resp.StatusCode, out)
		}
	}
	resp, out := uiCall(t, base, "POST", "/ui/login", "", "", `{"key":"ops","secret":"`+consoleAdminSecret+`"}`)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || len(resp.Cookies()) != 0 {
		t.Errorf("login when blocked = %d %v, Retry-After %q, cookies %d; want 429 with Retry-After, no cookie", resp.StatusCode, out, resp.Header.Get("Retry-After"), len(resp.Cookies()))
	}
	req, _ := http.NewRequest("GET", base+"/v1/status", nil)
	if err := auth.Sign(req, "ops", auth.DeriveKey([]byte(consoleAdminSecret)), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 429 {
		t.Errorf("signed API call after failed console logins = %d, want 429", r.StatusCode)
	}
	// The agent's counters (clb_auth_failures_total) see the console's refusals.
	if f, l := a.AuthFailures(), a.AuthRateLimited(); f != 2 || l != 2 {
		t.Errorf("auth failures %d, rate limited %d; want 2 (wrong logins) and 2 (a login and a signed call)", f, l)
	}
}

// TestConsoleKeyRemoved: removing a key from the keys file (the reload the file watcher runs)
// ends the key's console sessions; other keys' sessions go on.
func TestConsoleKeyRemoved(t *testing.T) {
	base, a, keys := consoleAgent(t)
	admin, _, _ := uiLogin(t, base, "ops", consoleAdminSecret)
	member, _, _ := uiLogin(t, base, "webmember", consoleMemberSecret)
	if err := os.WriteFile(keys, []byte(consoleKeys(false)), 0o600); err != nil {
		t.Fatal(err)
	}
	a.reloadKeys()
	resp, out := uiCall(t, base, "GET", "/ui/api/services", admin, "", "")
	if resp.StatusCode != 401 || !strings.Contains(out["error"].(string), `key "ops" was removed`) {
		t.Errorf("session of a removed key = %d %v, want 401", resp.StatusCode, out)
	}
	if resp, out := uiCall(t, base, "GET", "/ui/api/services", member, "", ""); resp.StatusCode != 200 {
		t.Errorf("session of a kept key = %d %v, want 200", resp.StatusCode, out)
	}
	if resp, _ := uiCall(t, base, "POST", "/ui/login", "", "", `{"key":"ops","secret":"`+consoleAdminSecret+`"}`); resp.StatusCode != 401 {
		t.Errorf("login with a removed key = %d, want 401", resp.StatusCode)
	}
}

// TestConsoleOverTLS: on a clbd with TLS, the session cookie is Secure too, and the origin
// check expects https.
func TestConsoleOverTLS(t *testing.T) {
	dir := t.TempDir()
	_, _, ca, caKey := testCert(t, dir, "ca", true, nil, nil)
	certPath, keyPath, _, _ := testCert(t, dir, "server", false, ca, caKey)
	s := newSecureAgent(t, secureOpts{tweak: func(c *config.Config) { c.TLSCert, c.TLSKey = certPath, keyPath }})
	if !strings.HasPrefix(s.api, "https://") {
		t.Fatalf("API at %s, want https", s.api)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	post := func(origin string) *http.Response {
		req, _ := http.NewRequest("POST", s.api+"/ui/login", strings.NewReader(`{"key":"ops","secret":"`+secAdmin+`"}`))
		req.Header.Set("Origin", origin)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := post(strings.Replace(s.api, "https:", "http:", 1)); resp.StatusCode != http.StatusForbidden {
		t.Errorf("login with an http Origin on the https console = %d, want 403", resp.StatusCode)
	}
	resp := post(s.api)
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 {
		t.Fatalf("login over TLS = %d, cookies %v", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}
	c := resp.Cookies()[0]
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui/" {
		t.Errorf("cookie over TLS = %+v, want Secure, HttpOnly, SameSite=Strict, Path=/ui/", c)
	}
	req, _ := http.NewRequest("GET", s.api+"/ui/api/status", nil)
	req.AddCookie(c)
	r, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Errorf("GET /ui/api/status over TLS = %d, want 200", r.StatusCode)
	}
}
