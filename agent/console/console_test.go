package console

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"clb/internal/auth"
	"clb/internal/ratelimit"
)

// The console over real HTTP (httptest servers on 127.0.0.1, plain and TLS) with a recording
// API behind the console's own API interface; the console in front of the real API and a real
// clbd is tested in package agent (console_test.go, console_browser_test.go).

const (
	adminSecret  = "admin-secret-0123456789"
	memberSecret = "member-secret-0123456789"
)

// recordingAPI answers every request with what it was asked: path, method and identity.
type recordingAPI struct {
	mu    sync.Mutex
	calls []string
}

func (a *recordingAPI) ServeAs(w http.ResponseWriter, r *http.Request, id auth.Identity) {
	a.mu.Lock()
	a.calls = append(a.calls, r.Method+" "+r.URL.Path)
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"path": r.URL.Path, "query": r.URL.RawQuery, "key": id.KeyID, "scope": id.Scope.String(),
		"cookie": r.Header.Get("Cookie"), "csrf": r.Header.Get(CSRFHeader)})
}

func (a *recordingAPI) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.calls)
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type rig struct {
	t       *testing.T
	srv     *httptest.Server
	keys    *auth.Keyring
	limiter *ratelimit.Limiter
	api     *recordingAPI
	clock   *clock
	console *Console
}

func keySet() map[string]auth.Key {
	return map[string]auth.Key{
		"admin":  {Signing: auth.DeriveKey([]byte(adminSecret)), Scope: auth.ScopeAdmin},
		"member": {Signing: auth.DeriveKey([]byte(memberSecret)), Scope: auth.Scope{Services: []string{"web"}}},
	}
}

func newRig(t *testing.T, tls bool, o Options) *rig {
	t.Helper()
	r := &rig{t: t, keys: auth.NewKeyring(keySet()), api: &recordingAPI{}, clock: &clock{t: time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)}}
	r.limiter = ratelimit.New(3, time.Minute, 0, r.clock.now)
	o.Keys, o.Limiter, o.API, o.Now = r.keys, r.limiter, r.api, r.clock.now
	r.console = New(o)
	if tls {
		r.srv = httptest.NewTLSServer(r.console)
	} else {
		r.srv = httptest.NewServer(r.console)
	}
	t.Cleanup(r.srv.Close)
	return r
}

// do sends a request; headers are name, value pairs ("Cookie" included).
func (r *rig) do(method, path, body string, headers ...string) (*http.Response, map[string]any) {
	r.t.Helper()
	req, err := http.NewRequest(method, r.srv.URL+path, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	client := r.srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			r.t.Fatalf("%s %s: answer is not JSON: %v", method, path, err)
		}
	}
	return resp, out
}

// login logs in and returns the session cookie ("name=value") and the CSRF token.
func (r *rig) login(key, secret string) (cookie, csrf string) {
	r.t.Helper()
	resp, out := r.do("POST", "/ui/login", `{"key":"`+key+`","secret":"`+secret+`"}`, "Origin", r.srv.URL)
	if resp.StatusCode != http.StatusOK {
		r.t.Fatalf("login %s = %d %v", key, resp.StatusCode, out)
	}
	cs := resp.Cookies()
	if len(cs) != 1 || cs[0].Name != CookieName {
		r.t.Fatalf("login set cookies %v, want one %s", resp.Header.Values("Set-Cookie"), CookieName)
	}
	return cs[0].Name + "=" + cs[0].Value, out["csrf_token"].(string)
}

// TestLoginCookie: the session cookie is HttpOnly, SameSite=Strict, Path=/ui/, Secure over
// TLS only; the answer holds the CSRF token and the scope, never the secret.
func TestLoginCookie(t *testing.T) {
	for _, tls := range []bool{false, true} {
		name := map[bool]string{false: "http", true: "https"}[tls]
		t.Run(name, func(t *testing.T) {
			r := newRig(t, tls, Options{})
			resp, out := r.do("POST", "/ui/login", `{"key":"admin","secret":"`+adminSecret+`"}`, "Origin", r.srv.URL)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("login = %d %v", resp.StatusCode, out)
			}
			raw := resp.Header.Get("Set-Cookie")
			for _, want := range []string{CookieName + "=", "Path=/ui/", "HttpOnly", "SameSite=Strict"} {
				if !strings.Contains(raw, want) {
					t.Errorf("Set-Cookie %q lacks %s", raw, want)
				}
			}
			if got := strings.Contains(raw, "Secure"); got != tls {
				t.Errorf("Set-Cookie %q: Secure = %v, want %v", raw, got, tls)
			}
			if out["key"] != "admin" || out["admin"] != true || out["scope"] != "admin" || len(out["csrf_token"].(string)) < 40 {
				t.Errorf("login answer = %v", out)
			}
			b, _ := json.Marshal(out)
			if strings.Contains(string(b), adminSecret) {
				t.Errorf("login answer holds the secret: %s", b)
			}
			// The cookie works, and the API behind sees the key and no cookie or token.
			cookie := resp.Cookies()[0].Name + "=" + resp.Cookies()[0].Value
			resp, out = r.do("GET", "/ui/api/services?x=1", "", "Cookie", cookie)
			if resp.StatusCode != 200 || out["path"] != "/v1/services" || out["query"] != "x=1" || out["key"] != "admin" || out["cookie"] != "" {
				t.Errorf("GET /ui/api/services = %d %v, want /v1/services as admin without the cookie", resp.StatusCode, out)
			}
			resp, out = r.do("GET", "/ui/session", "", "Cookie", cookie)
			if resp.StatusCode != 200 || out["csrf_token"] == "" || out["key"] != "admin" {
				t.Errorf("GET /ui/session = %d %v", resp.StatusCode, out)
			}
		})
	}
}

// TestLoginRefused: every bad login is refused with the right status and a JSON error, and no
// session cookie is set.
func TestLoginRefused(t *testing.T) {
	r := newRig(t, false, Options{})
	tests := []struct {
		name, body, origin string
		status             int
		code               string
	}{
		{name: "wrong secret", body: `{"key":"admin","secret":"nope"}`, status: 401, code: "unauthenticated"},
		{name: "secret of another key", body: `{"key":"admin","secret":"` + memberSecret + `"}`, status: 401, code: "unauthenticated"},
		{name: "unknown key", body: `{"key":"ghost","secret":"` + adminSecret + `"}`, status: 401, code: "unauthenticated"},
		{name: "malformed key id", body: `{"key":"a b\n","secret":"x"}`, status: 401, code: "unauthenticated"},
		{name: "no secret", body: `{"key":"admin"}`, status: 400, code: "bad_request"},
		{name: "not JSON", body: `key=admin`, status: 400, code: "bad_request"},
		{name: "unknown field", body: `{"key":"admin","secret":"x","remember":true}`, status: 400, code: "bad_request"},
		{name: "two values", body: `{"key":"admin","secret":"x"} {}`, status: 400, code: "bad_request"},
		{name: "too large", body: `{"key":"admin","secret":"` + strings.Repeat("x", maxLoginBody) + `"}`, status: 413, code: "too_large"},
		{name: "cross origin", body: `{"key":"admin","secret":"` + adminSecret + `"}`, origin: "http://evil.example", status: 403, code: "csrf"},
		{name: "no origin", body: `{"key":"admin","secret":"` + adminSecret + `"}`, origin: "-", status: 403, code: "csrf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			origin := r.srv.URL
			if tt.origin != "" {
				origin = tt.origin
			}
			var h []string
			if origin != "-" {
				h = []string{"Origin", origin}
			}
			resp, out := r.do("POST", "/ui/login", tt.body, h...)
			if resp.StatusCode != tt.status || out["code"] != tt.code || out["error"] == "" {
				t.Fatalf("login = %d %v, want %d %s", resp.StatusCode, out, tt.status, tt.code)
			}
			if sc := resp.Header.Values("Set-Cookie"); len(sc) != 0 {
				t.Errorf("refused login set %v", sc)
			}
		})
		// Three failures (the rig's burst) would block the next tests: let the bucket refill.
		r.clock.add(10 * time.Minute)
	}
	if n := r.console.Sessions(); n != 0 {
		t.Errorf("%d sessions after refused logins, want 0", n)
	}
}

// TestLoginRateLimit: failed logins take tokens of the shared limiter; a blocked source gets
// 429 with Retry-After even with the right secret, and so would its signed API calls (same
// limiter); once the bucket refills the right secret works.
func TestLoginRateLimit(t *testing.T) {
	r := newRig(t, false, Options{})
	bad := `{"key":"admin","secret":"wrong"}`
	for i := range 3 {
		if resp, out := r.do("POST", "/ui/login", bad, "Origin", r.srv.URL); resp.StatusCode != 401 {
			t.Fatalf("failure %d = %d %v, want 401", i+1, resp.StatusCode, out)
		}
	}
	resp, out := r.do("POST", "/ui/login", `{"key":"admin","secret":"`+adminSecret+`"}`, "Origin", r.srv.URL)
	if resp.StatusCode != 429 || out["code"] != "rate_limited" || resp.Header.Get("Retry-After") != "60" {
		t.Fatalf("login after 3 failures = %d %v Retry-After %q, want 429 rate_limited, Retry-After 60", resp.StatusCode, out, resp.Header.Get("Retry-After"))
	}
	if len(resp.Header.Values("Set-Cookie")) != 0 {
		t.Error("a blocked login set a cookie")
	}
	if _, blocked := r.limiter.Blocked("127.0.0.1"); !blocked {
		t.Error("the shared limiter does not block 127.0.0.1: API calls from it would pass")
	}
	r.clock.add(time.Minute)
	r.login("admin", adminSecret)
}

// TestCSRF: a state-changing call needs the session's token and the same origin; reads need
// neither. Refused calls never reach the API.
func TestCSRF(t *testing.T) {
	r := newRig(t, false, Options{})
	cookie, csrf := r.login("admin", adminSecret)
	path := "/ui/api/services/web/zones/a/disable"
	tests := []struct {
		name    string
		headers []string
		status  int
	}{
		{name: "no token", headers: []string{"Origin", r.srv.URL}, status: 403},
		{name: "wrong token", headers: []string{"Origin", r.srv.URL, CSRFHeader, csrf[:len(csrf)-1] + "x"}, status: 403},
		{name: "wrong origin", headers: []string{"Origin", "http://evil.example", CSRFHeader, csrf}, status: 403},
		{name: "other scheme", headers: []string{"Origin", strings.Replace(r.srv.URL, "http:", "https:", 1), CSRFHeader, csrf}, status: 403},
		{name: "no origin or referer", headers: []string{CSRFHeader, csrf}, status: 403},
		{name: "cross-site referer", headers: []string{"Referer", "http://evil.example/ui/", CSRFHeader, csrf}, status: 403},
		{name: "token and origin", headers: []string{"Origin", r.srv.URL, CSRFHeader, csrf}, status: 200},
		{name: "token and same-origin referer", headers: []string{"Referer", r.srv.URL + "/ui/", CSRFHeader, csrf}, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := r.api.count()
			resp, out := r.do("POST", path, "", append([]string{"Cookie", cookie}, tt.headers...)...)
			if resp.StatusCode != tt.status {
				t.Fatalf("POST = %d %v, want %d", resp.StatusCode, out, tt.status)
			}
			reached := r.api.count() - before
			if tt.status == 403 && (out["code"] != "csrf" || reached != 0) {
				t.Errorf("refusal = %v, reached the API %d times; want code csrf and 0", out, reached)
			}
			if tt.status == 200 && (out["path"] != "/v1/services/web/zones/a/disable" || out["csrf"] != "") {
				t.Errorf("API saw %v, want /v1/services/web/zones/a/disable without the token header", out)
			}
		})
	}
	// Logout is a state change too.
	if resp, out := r.do("POST", "/ui/logout", "", "Cookie", cookie, "Origin", r.srv.URL); resp.StatusCode != 403 || out["code"] != "csrf" {
		t.Errorf("logout without token = %d %v, want 403 csrf", resp.StatusCode, out)
	}
	// A read needs no token.
	if resp, _ := r.do("GET", "/ui/api/status", "", "Cookie", cookie); resp.StatusCode != 200 {
		t.Errorf("GET without token = %d, want 200", resp.StatusCode)
	}
	// Without a session, nothing passes.
	if resp, out := r.do("GET", "/ui/api/status", ""); resp.StatusCode != 401 || out["code"] != "unauthenticated" {
		t.Errorf("GET without cookie = %d %v, want 401", resp.StatusCode, out)
	}
	if resp, _ := r.do("GET", "/ui/api/status", "", "Cookie", CookieName+"=forged"); resp.StatusCode != 401 {
		t.Errorf("GET with a forged cookie = %d, want 401", resp.StatusCode)
	}
}

// TestSessionExpiry: idle and absolute expiry, logout, the bound on sessions, and keys
// removed or rotated in the keyring.
func TestSessionExpiry(t *testing.T) {
	status := func(r *rig, cookie string) int {
		resp, _ := r.do("GET", "/ui/api/status", "", "Cookie", cookie)
		return resp.StatusCode
	}
	t.Run("idle", func(t *testing.T) {
		r := newRig(t, false, Options{IdleTimeout: 10 * time.Minute, MaxAge: time.Hour})
		cookie, _ := r.login("admin", adminSecret)
		r.clock.add(10*time.Minute - time.Second)
		if got := status(r, cookie); got != 200 {
			t.Fatalf("used just before the idle timeout = %d, want 200", got)
		}
		r.clock.add(10*time.Minute - time.Second) // idle counts from the last use
		if got := status(r, cookie); got != 200 {
			t.Fatalf("used again = %d, want 200", got)
		}
		r.clock.add(10 * time.Minute)
		resp, _ := r.do("GET", "/ui/api/status", "", "Cookie", cookie)
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("Set-Cookie"), "Max-Age=0") {
			t.Fatalf("idle 10 min = %d, Set-Cookie %q; want 401 and the cookie cleared", resp.StatusCode, resp.Header.Get("Set-Cookie"))
		}
		if n := r.console.Sessions(); n != 0 {
			t.Errorf("expired session still held (%d)", n)
		}
	})
	t.Run("absolute", func(t *testing.T) {
		r := newRig(t, false, Options{IdleTimeout: 10 * time.Minute, MaxAge: time.Hour})
		cookie, _ := r.login("admin", adminSecret)
		for range 11 { // 55 minutes of use every 5 minutes
			r.clock.add(5 * time.Minute)
			if got := status(r, cookie); got != 200 {
				t.Fatalf("in use after %s = %d, want 200", r.clock.now().Sub(time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)), got)
			}
		}
		r.clock.add(5 * time.Minute)
		if got := status(r, cookie); got != 401 {
			t.Fatalf("in use at the max age = %d, want 401", got)
		}
	})
	t.Run("logout", func(t *testing.T) {
		r := newRig(t, false, Options{})
		cookie, csrf := r.login("admin", adminSecret)
		resp, out := r.do("POST", "/ui/logout", "", "Cookie", cookie, "Origin", r.srv.URL, CSRFHeader, csrf)
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Set-Cookie"), "Max-Age=0") {
			t.Fatalf("logout = %d %v, Set-Cookie %q; want 200 and the cookie cleared", resp.StatusCode, out, resp.Header.Get("Set-Cookie"))
		}
		if got := status(r, cookie); got != 401 {
			t.Errorf("cookie after logout = %d, want 401", got)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		r := newRig(t, false, Options{MaxSessions: 3})
		var cookies []string
		for range 4 {
			c, _ := r.login("admin", adminSecret)
			cookies = append(cookies, c)
			r.clock.add(time.Second)
		}
		if n := r.console.Sessions(); n != 3 {
			t.Errorf("%d sessions held, want 3", n)
		}
		if got := status(r, cookies[0]); got != 401 {
			t.Errorf("longest idle session = %d, want 401 (evicted)", got)
		}
		for i, c := range cookies[1:] {
			if got := status(r, c); got != 200 {
				t.Errorf("session %d = %d, want 200", i+2, got)
			}
		}
	})
	t.Run("key removed or rotated", func(t *testing.T) {
		r := newRig(t, false, Options{})
		admin, _ := r.login("admin", adminSecret)
		member, _ := r.login("member", memberSecret)
		keys := keySet()
		delete(keys, "admin")
		keys["member"] = auth.Key{Signing: auth.DeriveKey([]byte("rotated-secret-0123456789")), Scope: keys["member"].Scope}
		r.keys.Set(keys)
		// Every request says why, also the ones after the first (a page polls several at once).
		for range 2 {
			for name, c := range map[string]string{"removed": admin, "rotated": member} {
				resp, out := r.do("GET", "/ui/api/status", "", "Cookie", c)
				if resp.StatusCode != 401 || !strings.Contains(out["error"].(string), "removed or its secret changed") {
					t.Errorf("%s key: %d %v, want 401 naming why", name, resp.StatusCode, out)
				}
			}
		}
		// The keys back as they were: the ended sessions stay ended.
		r.keys.Set(keySet())
		for name, c := range map[string]string{"removed": admin, "rotated": member} {
			if got := status(r, c); got != 401 {
				t.Errorf("%s key back in the keyring: its old session = %d, want 401", name, got)
			}
		}
		// They go at their idle timeout like any session.
		r.clock.add(DefaultIdleTimeout)
		status(r, admin)
		status(r, member)
		if n := r.console.Sessions(); n != 0 {
			t.Errorf("%d sessions left after the idle timeout, want 0", n)
		}
	})
	t.Run("scope follows the keyring", func(t *testing.T) {
		r := newRig(t, false, Options{})
		c, _ := r.login("member", memberSecret)
		keys := keySet()
		m := keys["member"]
		m.Scope = auth.Scope{Services: []string{"api-*"}}
		keys["member"] = m
		r.keys.Set(keys)
		if _, out := r.do("GET", "/ui/api/services", "", "Cookie", c); out["scope"] != "register:api-*" {
			t.Errorf("API saw scope %v, want the keyring's current register:api-*", out["scope"])
		}
	})
}

// TestAssets: the page and its assets come from the binary, with a strict CSP; the script
// keeps nothing in web storage.
func TestAssets(t *testing.T) {
	r := newRig(t, false, Options{})
	for _, c := range []struct{ path, ctype, has string }{
		{"/ui/", "text/html", `<script src="app.js"`},
		{"/ui/index.html", "text/html", `id="login-form"`},
		{"/ui/app.js", "text/javascript", "X-Clb-Csrf"},
		{"/ui/app.css", "text/css", ".health.down"},
	} {
		req, _ := http.NewRequest("GET", r.srv.URL+c.path, nil)
		resp, err := r.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		buf := make([]byte, 1<<16)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), c.ctype) || !strings.Contains(b.String(), c.has) {
			t.Errorf("GET %s = %d %s, want %s containing %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.ctype, c.has)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: CSP %q", c.path, csp)
		}
		for _, banned := range []string{"localStorage", "sessionStorage", "document.cookie", "http://", "https://", "innerHTML", "outerHTML", "insertAdjacentHTML", "eval("} {
			// No URL leaves clbd (the SVG namespace is a name, not a fetch).
			js := strings.ReplaceAll(b.String(), "http://www.w3.org/2000/svg", "")
			if c.path == "/ui/app.js" && strings.Contains(js, banned) {
				t.Errorf("app.js uses %s", banned)
			}
		}
	}
	if resp, _ := r.do("GET", "/ui", ""); resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui = %d to %q, want 301 to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, out := r.do("GET", "/ui/nope.js", ""); resp.StatusCode != 404 || out["code"] != "not_found" {
		t.Errorf("GET /ui/nope.js = %d %v", resp.StatusCode, out)
	}
	if resp, out := r.do("POST", "/ui/app.js", ""); resp.StatusCode != 405 || out["code"] != "method_not_allowed" {
		t.Errorf("POST /ui/app.js = %d %v", resp.StatusCode, out)
	}
	if resp, out := r.do("GET", "/ui/login", ""); resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET /ui/login = %d %v", resp.StatusCode, out)
	}
}
