// Package console is clbd's web console at /ui/ on the API listener: a page served from the
// binary (embedded index.html, app.js and app.css; plain JavaScript and inline SVG charts, no
// framework, no CDN, no build step) that logs in with an API key, shows services, zones,
// members, health, per-member request rate and response time, the last applies and reloads,
// and offers the admin actions of the CLI (disable and enable a zone, unregister a member).
//
// It is a front like the API: it never talks to haproxy or the reconciler. Every read and
// every action goes through the API's own handlers in the same process (api.Server.ServeAs)
// with the session's identity, so scopes, validation and error answers are exactly the API's:
// /ui/api/X is /v1/X.
//
// Security choices (see the README's "Web console" section):
//   - Login takes a key id and its secret (for key "default", the 2010 password). The
//     secret is checked against clbd's keyring by deriving its signing key (auth.DeriveKey)
//     and comparing in constant time; it is then forgotten. Failed logins count in the same
//     per-source limiter as failed signatures, so a blocked source gets 429 with Retry-After
//     on the console and the API alike.
//   - Sessions live in clbd's memory only (lost on restart: log in again): a random 256-bit
//     id in a cookie that is HttpOnly, SameSite=Strict, Path=/ui/ and Secure when the request
//     came over TLS; idle and absolute expiry; a bounded number (the longest idle goes first).
//     Each request checks that the key is still in the keyring with the same secret: removing
//     or rotating a key ends its sessions at their next request.
//   - The page keeps nothing in localStorage or sessionStorage; it holds only the session's
//     CSRF token, in memory. Every state-changing call must carry that token in the
//     X-Clb-Csrf header and come from the same origin (Origin, or Referer when a browser sends
//     no Origin); login and logout check the origin too.
//   - Register-scoped keys see only the services their globs allow (the API filters) and no
//     buttons at all: the console is an operator's tool and shows them read-only. The API
//     still decides every call, so a register key gets 403 on a zone action, like when signed.
//   - The console expects to be reached directly (plain HTTP or clbd's own TLS): behind a
//     proxy that terminates TLS, cookies lose Secure and the origin check refuses actions.
package console

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"clb/agent/api"
	"clb/internal/auth"
	"clb/internal/ratelimit"
)

//go:embed assets
var assets embed.FS

// CookieName is the session cookie.
const CookieName = "clb_session"

// CSRFHeader carries the session's CSRF token on every state-changing call.
const CSRFHeader = "X-Clb-Csrf"

// Defaults of Options.
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultMaxAge      = 12 * time.Hour
	DefaultMaxSessions = 1000
)

// maxLoginBody bounds the login request (a key id and a secret).
const maxLoginBody = 8 << 10

// API serves a request as an identity the console authenticated (api.Server.ServeAs).
type API interface {
	ServeAs(w http.ResponseWriter, r *http.Request, id auth.Identity)
}

// Options are what the console needs.
type Options struct {
	Logger *slog.Logger
	// Keys is clbd's keyring (looked up at login and on every request of a session).
	Keys auth.Keys
	// Limiter counts failed authentications per source; shared with the API.
	Limiter *ratelimit.Limiter
	API     API
	// IdleTimeout ends a session not used for that long; MaxAge ends any session that old;
	// MaxSessions bounds how many are held. Zero values take the defaults.
	IdleTimeout time.Duration
	MaxAge      time.Duration
	MaxSessions int
	// Now is the clock (time.Now when nil), for tests of expiry.
	Now func() time.Time
}

// Console is the web console, an http.Handler for /ui and everything under /ui/.
type Console struct {
	o        Options
	log      *slog.Logger
	sessions *sessions
	// failures counts refused logins (wrong key or secret); limited, logins refused with 429.
	failures atomic.Uint64
	limited  atomic.Uint64
}

// New builds the console.
func New(o Options) *Console {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = DefaultMaxSessions
	}
	return &Console{o: o, log: o.Logger.With("component", "console"), sessions: newSessions(o.IdleTimeout, o.MaxAge, o.MaxSessions, o.Now)}
}

// LoginFailures is the number of logins refused for a wrong key id or secret.
func (c *Console) LoginFailures() uint64 { return c.failures.Load() }

// LoginRateLimited is the number of logins refused with 429 because their source had too many
// failed authentications.
func (c *Console) LoginRateLimited() uint64 { return c.limited.Load() }

// Sessions is the number of sessions held.
func (c *Console) Sessions() int { return c.sessions.len() }

var assetTypes = map[string]string{
	"index.html": "text/html; charset=utf-8",
	"app.js":     "text/javascript; charset=utf-8",
	"app.css":    "text/css; charset=utf-8",
}

// ServeHTTP routes /ui/ requests.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	path := r.URL.Path
	switch {
	case path == "/ui":
		http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
	case strings.HasPrefix(path, "/ui/api/"):
		c.proxy(w, r)
	case path == "/ui/login":
		c.onlyMethod(w, r, http.MethodPost, c.login)
	case path == "/ui/logout":
		c.onlyMethod(w, r, http.MethodPost, c.logout)
	case path == "/ui/session":
		c.onlyMethod(w, r, http.MethodGet, c.current)
	default:
		name := strings.TrimPrefix(path, "/ui/")
		if name == "" {
			name = "index.html"
		}
		ctype, ok := assetTypes[name]
		if !ok {
			fail(w, http.StatusNotFound, "not_found", "no such page: %s", path)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			fail(w, http.StatusMethodNotAllowed, "method_not_allowed", "method %s is not allowed on %s; allowed: GET, HEAD", r.Method, path)
			return
		}
		b, err := assets.ReadFile("assets/" + name)
		if err != nil {
			fail(w, http.StatusInternalServerError, "internal", "asset %s: %v", name, err)
			return
		}
		h.Set("Content-Type", ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			w.Write(b)
		}
	}
}

func (c *Console) onlyMethod(w http.ResponseWriter, r *http.Request, method string, fn func(http.ResponseWriter, *http.Request)) {
	if r.Method != method {
		w.Header().Set("Allow", method)
		fail(w, http.StatusMethodNotAllowed, "method_not_allowed", "method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, method)
		return
	}
	fn(w, r)
}

// loginRequest is the body of POST /ui/login.
type loginRequest struct {
	Key    string `json:"key"`
	Secret string `json:"secret"`
}

// sessionInfo answers login and GET /ui/session: who is logged in and the CSRF token the page
// keeps in memory.
type sessionInfo struct {
	Key   string `json:"key"`
	Scope string `json:"scope"`
	Admin bool   `json:"admin"`
	// Services are the globs of a register key's scope (empty for admin keys: every service).
	Services    []string `json:"services"`
	CSRFToken   string   `json:"csrf_token"`
	IdleSeconds int      `json:"idle_timeout_seconds"`
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if err := sameOrigin(r); err != nil {
		c.log.Warn("console login refused", "addr", r.RemoteAddr, "err", err)
		fail(w, http.StatusForbidden, "csrf", "%v", err)
		return
	}
	src := ratelimit.Source(api.SourceAddr(r))
	if wait, blocked := c.o.Limiter.Blocked(src); blocked {
		c.limited.Add(1)
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		c.log.Warn("console login refused: too many failed authentications", "addr", r.RemoteAddr, "source", src, "retry_after", secs)
		fail(w, http.StatusTooManyRequests, "rate_limited", "too many failed authentications from %s; retry after %d s", src, secs)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLoginBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(w, http.StatusRequestEntityTooLarge, "too_large", "login body is larger than %d bytes", maxLoginBody)
			return
		}
		fail(w, http.StatusBadRequest, "bad_request", "read login body: %v", err)
		return
	}
	var req loginRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "bad_request", "decode login: %v; want {\"key\": ID, \"secret\": SECRET}", err)
		return
	}
	if dec.More() {
		fail(w, http.StatusBadRequest, "bad_request", "decode login: more than one JSON value")
		return
	}
	if req.Key == "" || req.Secret == "" {
		fail(w, http.StatusBadRequest, "bad_request", "login needs a key id and its secret")
		return
	}
	derived := auth.DeriveKey([]byte(req.Secret))
	req.Secret = ""
	key, known := auth.Key{}, false
	if auth.ValidateKeyID(req.Key) == nil {
		key, known = c.o.Keys.Lookup(req.Key)
	}
	// hmac.Equal runs in constant time for equal lengths; an unknown key compares against
	// itself-sized zeros so that both refusals take the same path.
	want := key.Signing
	if !known {
		want = make([]byte, len(derived))
	}
	if !hmac.Equal(derived, want) || !known {
		c.o.Limiter.Take(src)
		c.failures.Add(1)
		c.log.Warn("console login refused", "addr", r.RemoteAddr, "key", clip(req.Key), "known_key", known)
		fail(w, http.StatusUnauthorized, "unauthenticated", "key id or secret is wrong")
		return
	}
	id, sess := c.sessions.create(req.Key, sha256.Sum256(key.Signing))
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: "/ui/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	c.log.Info("console login", "addr", r.RemoteAddr, "key", req.Key, "scope", key.Scope.String())
	writeJSON(w, http.StatusOK, c.info(sess, key.Scope))
}

func (c *Console) info(sess session, scope auth.Scope) sessionInfo {
	in := sessionInfo{Key: sess.keyID, Scope: scope.String(), Admin: scope.Admin, Services: []string{}, CSRFToken: sess.csrf,
		IdleSeconds: int(c.o.IdleTimeout / time.Second)}
	if !scope.Admin {
		in.Services = append(in.Services, scope.Services...)
	}
	return in
}

// authorized returns the request's session and its key's current scope, or answers 401. A
// session whose key left the keyring, or whose secret changed, is ended.
func (c *Console) authorized(w http.ResponseWriter, r *http.Request) (string, session, auth.Scope, bool) {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		c.log.Warn("console request refused: no session cookie", "addr", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
		fail(w, http.StatusUnauthorized, "unauthenticated", "not logged in: log in at /ui/ with a key id and its secret")
		return "", session{}, auth.Scope{}, false
	}
	sess, ok := c.sessions.get(ck.Value)
	if !ok {
		c.log.Warn("console request refused: unknown or expired session", "addr", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
		clearCookie(w, r)
		fail(w, http.StatusUnauthorized, "unauthenticated", "session expired or ended: log in again")
		return "", session{}, auth.Scope{}, false
	}
	if sess.revoked != "" {
		c.log.Warn("console request refused: session ended", "addr", r.RemoteAddr, "key", sess.keyID, "method", r.Method, "path", r.URL.Path, "err", sess.revoked)
		clearCookie(w, r)
		fail(w, http.StatusUnauthorized, "unauthenticated", "%s", sess.revoked)
		return "", session{}, auth.Scope{}, false
	}
	key, ok := c.o.Keys.Lookup(sess.keyID)
	if d := sha256.Sum256(key.Signing); !ok || subtle.ConstantTimeCompare(d[:], sess.keyDigest[:]) != 1 {
		why := fmt.Sprintf("key %q was removed or its secret changed: session ended", sess.keyID)
		c.sessions.revoke(ck.Value, why)
		clearCookie(w, r)
		c.log.Warn("console session ended: key removed or changed", "addr", r.RemoteAddr, "key", sess.keyID)
		fail(w, http.StatusUnauthorized, "unauthenticated", "%s", why)
		return "", session{}, auth.Scope{}, false
	}
	return ck.Value, sess, key.Scope, true
}

// checkCSRF refuses a state-changing request without the session's token or from another
// origin.
func (c *Console) checkCSRF(w http.ResponseWriter, r *http.Request, sess session) bool {
	tok := r.Header.Get(CSRFHeader)
	if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(sess.csrf)) != 1 {
		c.log.Warn("console request refused: CSRF token missing or wrong", "addr", r.RemoteAddr, "key", sess.keyID, "method", r.Method, "path", r.URL.Path)
		fail(w, http.StatusForbidden, "csrf", "missing or wrong %s header: reload the console", CSRFHeader)
		return false
	}
	if err := sameOrigin(r); err != nil {
		c.log.Warn("console request refused", "addr", r.RemoteAddr, "key", sess.keyID, "method", r.Method, "path", r.URL.Path, "err", err)
		fail(w, http.StatusForbidden, "csrf", "%v", err)
		return false
	}
	return true
}

func (c *Console) current(w http.ResponseWriter, r *http.Request) {
	_, sess, scope, ok := c.authorized(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, c.info(sess, scope))
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	id, sess, _, ok := c.authorized(w, r)
	if !ok || !c.checkCSRF(w, r, sess) {
		return
	}
	c.sessions.end(id)
	clearCookie(w, r)
	c.log.Info("console logout", "addr", r.RemoteAddr, "key", sess.keyID)
	writeJSON(w, http.StatusOK, map[string]bool{"logged_out": true})
}

// proxy serves /ui/api/X as the API's /v1/X with the session's identity.
func (c *Console) proxy(w http.ResponseWriter, r *http.Request) {
	_, sess, scope, ok := c.authorized(w, r)
	if !ok {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !c.checkCSRF(w, r, sess) {
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/v1/" + strings.TrimPrefix(r.URL.Path, "/ui/api/")
	if r.URL.RawPath != "" {
		r2.URL.RawPath = "/v1/" + strings.TrimPrefix(r.URL.RawPath, "/ui/api/")
	}
	r2.RequestURI = r2.URL.RequestURI()
	r2.Header.Del("Cookie")
	r2.Header.Del(CSRFHeader)
	c.o.API.ServeAs(w, r2, auth.Identity{KeyID: sess.keyID, Scope: scope})
}

// clearCookie tells the browser to drop the session cookie (logout, or a session that ended).
func clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/ui/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// sameOrigin checks that a browser sent r from a page of this server: Origin (or Referer,
// when the browser sends no Origin) must be this scheme and host.
func sameOrigin(r *http.Request) error {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	want := scheme + "://" + r.Host
	if o := r.Header.Get("Origin"); o != "" {
		if o != want {
			return fmt.Errorf("cross-origin request refused: Origin %q is not %s", clip(o), want)
		}
		return nil
	}
	ref := r.Header.Get("Referer")
	if ref == "" {
		return fmt.Errorf("request refused: no Origin or Referer header to check it comes from %s", want)
	}
	u, err := url.Parse(ref)
	if err != nil || u.Scheme+"://"+u.Host != want {
		return fmt.Errorf("cross-origin request refused: Referer is not from %s", want)
	}
	return nil
}

func fail(w http.ResponseWriter, status int, code, format string, args ...any) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, args...), "code": code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// clip keeps logged input short.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
