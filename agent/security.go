package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"clb/internal/auth"
	"clb/internal/ratelimit"
)

// Defaults of the security settings.
const (
	// DefaultAuthFailBurst failed authentications are allowed from one source at once...
	DefaultAuthFailBurst = 10
	// ...and one more every DefaultAuthFailRefill after that.
	DefaultAuthFailRefill = 6 * time.Second
	// DefaultMaxMembers bounds the members of one service.
	DefaultMaxMembers = 10_000
)

// security is the agent's authentication state: the keys (swapped as a whole on reload), the
// verifier with its replay cache, the per-source limiter of failed authentications and the
// counters the metrics read.
type security struct {
	keys     *auth.Keyring
	verifier *auth.Verifier
	limiter  *ratelimit.Limiter
	// failures counts refused authentications; limited counts requests refused with 429.
	failures atomic.Uint64
	limited  atomic.Uint64
}

// AuthFailures is the number of requests refused because their signature was missing,
// stale, replayed or invalid since the agent started.
func (a *Agent) AuthFailures() uint64 { return a.sec.failures.Load() }

// AuthRateLimited is the number of requests refused with 429 because their source had too
// many failed authentications.
func (a *Agent) AuthRateLimited() uint64 { return a.sec.limited.Load() }

// KeyIDs returns the ids of the API keys in use, sorted (never their secrets).
func (a *Agent) KeyIDs() []string {
	if a.sec.keys == nil {
		return nil
	}
	return a.sec.keys.IDs()
}

// setupSecurity loads the keys and prepares the verifier and the limiter.
func (a *Agent) setupSecurity(cfg *Config) error {
	keys, err := a.readKeys(cfg, true)
	if err != nil {
		return err
	}
	a.sec.keys = auth.NewKeyring(keys)
	a.sec.verifier = auth.New(a.sec.keys)
	a.sec.limiter = ratelimit.New(cfg.AuthFailBurst, cfg.AuthFailRefill, 0, nil)
	a.log.Info("API keys loaded", "keys", strings.Join(a.sec.keys.IDs(), ","))
	return nil
}

// readKeys builds the key set: the password file as key "default" (register scope on every
// service) and every key of the keys file. With neither configured, clbd uses
// STATE_DIR/password, generating a random one on first start (the quick start's dev
// password; the log says where it is). first is true at start, false on a hot reload.
func (a *Agent) readKeys(cfg *Config, first bool) (map[string]auth.Key, error) {
	keys := map[string]auth.Key{}
	pwPath := passwordPath(cfg)
	if cfg.PasswordFile == "" && pwPath != "" {
		if first {
			if err := generatePassword(pwPath); err == nil {
				a.log.Warn("no password_file or keys_file configured: generated a password for key \"default\"", "path", pwPath)
			} else if !errors.Is(err, fs.ErrExist) {
				return nil, err
			}
		}
	}
	if pwPath != "" {
		pw, err := auth.ReadPasswordFile(pwPath)
		if err != nil {
			return nil, err
		}
		if fi, err := os.Stat(pwPath); err == nil && first {
			if err := auth.CheckPrivateFile(pwPath, fi, os.Getuid()); err != nil {
				a.log.Warn("password file is readable by other users; chmod 600 it", "path", pwPath, "err", err)
			}
		}
		keys[auth.DefaultKeyID] = auth.Key{Signing: auth.DeriveKey(pw), Scope: auth.ScopeRegisterAll}
	}
	if cfg.KeysFile != "" {
		kf, err := auth.LoadKeysFile(cfg.KeysFile, os.Getuid())
		if err != nil {
			return nil, err
		}
		for id, k := range kf.SigningKeys() {
			if _, ok := keys[id]; ok {
				return nil, fmt.Errorf("keys file %s: key id %q is taken by password_file; rename the key", cfg.KeysFile, id)
			}
			keys[id] = k
		}
	}
	if len(keys) == 0 {
		a.log.Warn("no API keys: every authenticated call will be refused", "path", cfg.KeysFile)
	}
	return keys, nil
}

// generatePassword writes a random password to path unless the file exists (fs.ErrExist).
func generatePassword(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		return fmt.Errorf("generate password: %w", err)
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		f.Close()
		return fmt.Errorf("generate password: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(b) + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("generate password: %w", err)
	}
	return f.Close()
}

// reloadKeys re-reads the keys (and password) file. A file that is broken or readable by
// other users is reported and the keys in use stay.
func (a *Agent) reloadKeys() {
	cfg := a.config()
	keys, err := a.readKeys(cfg, false)
	if err != nil {
		a.log.Error("keys file not reloaded; keeping the keys in use", "path", cfg.KeysFile, "err", err)
		return
	}
	old := a.sec.keys.IDs()
	a.sec.keys.Set(keys)
	now := a.sec.keys.IDs()
	if slices.Equal(old, now) {
		a.log.Info("keys file reloaded", "path", cfg.KeysFile, "keys", strings.Join(now, ","))
		return
	}
	var added, removed []string
	for _, id := range now {
		if !slices.Contains(old, id) {
			added = append(added, id)
		}
	}
	for _, id := range old {
		if !slices.Contains(now, id) {
			removed = append(removed, id)
		}
	}
	a.log.Info("keys file reloaded", "path", cfg.KeysFile, "keys", strings.Join(now, ","), "added", strings.Join(added, ","), "removed", strings.Join(removed, ","))
}

// identityKey is the context key of the authenticated auth.Identity of a request.
type identityKey struct{}

// identity returns who signed r (the zero Identity, allowed nothing, for unsigned requests).
func identity(r *http.Request) auth.Identity {
	id, _ := r.Context().Value(identityKey{}).(auth.Identity)
	return id
}

// requireAdmin answers 403 forbidden unless r was signed with an admin key. handle applies it
// to every admin pattern (see needsAdmin), whatever the handler does.
func requireAdmin(r *http.Request) error {
	id := identity(r)
	if id.Scope.Admin {
		return nil
	}
	return errorf(http.StatusForbidden, "forbidden", "key %q has scope %s: %s %s needs a key with admin scope", id.KeyID, id.Scope, r.Method, r.URL.Path)
}

// requireService answers 403 forbidden unless r's key may change the members of service.
func requireService(r *http.Request, service string) error {
	id := identity(r)
	if id.Scope.AllowsService(service) {
		return nil
	}
	return errorf(http.StatusForbidden, "forbidden", "key %q has scope %s: it may not use service %q", id.KeyID, id.Scope, service)
}

// needsAdmin reports whether a route pattern is an admin endpoint: defining or removing a
// service, and zones. handle enforces it whatever the handler does.
func needsAdmin(pattern string) bool {
	method, path, _ := strings.Cut(pattern, " ")
	switch {
	case strings.Contains(path, "/zones"):
		return true
	case path == "/v1/services/{service}" && method != http.MethodGet:
		return true
	case path == "/v1/services" && method != http.MethodGet:
		return true
	}
	return false
}

// authenticate runs before every authenticated handler: it refuses a source that failed too
// often (429 rate_limited with Retry-After), checks the signature (401, one message for every
// cause; the cause goes to the log with the source), counts failures, and returns r with the
// caller's identity attached.
func (h *api) authenticate(w http.ResponseWriter, r *http.Request, body []byte) (*http.Request, bool) {
	sec := &h.a.sec
	src := ratelimit.Source(sourceAddr(r))
	if wait, blocked := sec.limiter.Blocked(src); blocked {
		sec.limited.Add(1)
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		h.log.Warn("request refused: too many failed authentications", "addr", r.RemoteAddr, "source", src, "method", r.Method, "path", r.URL.Path, "retry_after", secs)
		h.fail(w, r, errorf(http.StatusTooManyRequests, "rate_limited", "too many failed authentications from %s; retry after %d s", src, secs))
		return r, false
	}
	id, err := sec.verifier.Authenticate(r, body)
	if err != nil {
		sec.limiter.Take(src)
		sec.failures.Add(1)
		h.log.Warn("authentication refused", "addr", r.RemoteAddr, "key", id.KeyID, "method", r.Method, "path", r.URL.Path, "err", err)
		h.fail(w, r, errorf(http.StatusUnauthorized, "unauthenticated", "%s", auth.ErrUnauthenticated.Error()))
		return r, false
	}
	return r.WithContext(context.WithValue(r.Context(), identityKey{}, id)), true
}

// checkMemberCap refuses a new member in a service that already has max_members.
func (h *api) checkMemberCap(service, member string) error {
	max := h.a.config().MaxMembers
	if max <= 0 {
		return nil
	}
	members := h.a.store.Snapshot().Members[service]
	if len(members) < max {
		return nil
	}
	for _, m := range members {
		if m.Name == member {
			return nil // an update, not a new member
		}
	}
	return errorf(http.StatusConflict, "conflict", "service %s already has %d members, the limit (max_members); unregister members or raise max_members", service, len(members))
}

// validateSecurity checks the security settings and fills their defaults.
func (c *Config) validateSecurity() []error {
	var errs []error
	if c.AuthFailBurst == 0 {
		c.AuthFailBurst = DefaultAuthFailBurst
	}
	if c.AuthFailRefill == 0 {
		c.AuthFailRefill = DefaultAuthFailRefill
	}
	if c.MaxMembers == 0 {
		c.MaxMembers = DefaultMaxMembers
	}
	if c.AuthFailBurst < 1 || c.AuthFailBurst > 1_000_000 {
		errs = append(errs, fmt.Errorf("auth_fail_burst %d: want 1-1000000", c.AuthFailBurst))
	}
	if c.AuthFailRefill < time.Millisecond || c.AuthFailRefill > 24*time.Hour {
		errs = append(errs, fmt.Errorf("auth_fail_refill %s: want 1ms-24h", c.AuthFailRefill))
	}
	if c.MaxMembers < 1 || c.MaxMembers > 1_000_000 {
		errs = append(errs, fmt.Errorf("max_members %d: want 1-1000000", c.MaxMembers))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls_cert and tls_key: give both or neither"))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("tls_client_ca needs tls_cert and tls_key"))
	}
	for _, f := range []struct{ key, path string }{
		{"keys_file", c.KeysFile}, {"password_file", c.PasswordFile}, {"tls_cert", c.TLSCert},
		{"tls_key", c.TLSKey}, {"tls_client_ca", c.TLSClientCA}, {"state_dir", c.StateDir},
		{"templates", c.Templates}, {"output", c.Output}, {"runtime_socket", c.RuntimeSocket},
	} {
		if err := validFilePath(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.key, err))
		}
	}
	if c.Listen != "" {
		if err := validListen(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("listen %q: %w", clipText(c.Listen), err))
		}
	}
	return errs
}

// validFilePath refuses paths that cannot be meant: control characters (a newline in a path
// would also be a new line wherever the path is rendered), or too long.
func validFilePath(p string) error {
	if len(p) > 4096 {
		return errors.New("path longer than 4096 bytes")
	}
	for _, r := range p {
		if r < ' ' || r == 0x7f {
			return fmt.Errorf("path %q contains a control character", clipText(p))
		}
	}
	return nil
}

// validListen accepts HOST:PORT with an IP address or host name (or nothing, for all
// addresses) and a port 0-65535 (0: any free port).
func validListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want HOST:PORT, [IPv6]:PORT or :PORT")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 || strconv.Itoa(p) != port {
		return fmt.Errorf("port %q: want 0-65535", clipText(port))
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	for _, r := range host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return fmt.Errorf("host %q: want an IP address or a host name", clipText(host))
		}
	}
	return nil
}

func clipText(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
