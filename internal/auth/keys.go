package auth

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"sync/atomic"
)

// Scope says what a key may do. The zero Scope allows nothing.
type Scope struct {
	// Admin keys may do everything: define and remove services, take zones out of rotation,
	// and register into every service.
	Admin bool
	// Services are the glob patterns (path.Match syntax: *, ?, [a-z]) of the services a
	// register key may register into and unregister from. Ignored for admin keys.
	Services []string
	// Domains are the glob patterns (path.Match syntax; "*.example.com" matches every
	// subdomain, at any depth, since host names have no '/') of the gateway domains a key
	// may read, define and remove (GET/PUT/DELETE /v1/gateways/{gateway}/domains/{host}) on
	// any gateway. Ignored for admin keys, which may change every domain.
	Domains []string
}

// ScopeAdmin is the scope of admin keys.
var ScopeAdmin = Scope{Admin: true}

// ScopeRegisterAll is the scope of the 2010 shared password: register into every service.
var ScopeRegisterAll = Scope{Services: []string{"*"}}

// AllowsService reports whether the scope may change the members of service.
func (s Scope) AllowsService(service string) bool {
	if s.Admin {
		return true
	}
	for _, g := range s.Services {
		if ok, err := path.Match(g, service); err == nil && ok {
			return true
		}
	}
	return false
}

// AllowsDomain reports whether the scope may change the gateway domain host.
func (s Scope) AllowsDomain(host string) bool {
	if s.Admin {
		return true
	}
	for _, g := range s.Domains {
		if ok, err := path.Match(g, host); err == nil && ok {
			return true
		}
	}
	return false
}

// String is "admin" or "register:" and the globs joined by commas, then " domains:" and the
// domain globs when there are some, for logs and `keys list`.
func (s Scope) String() string {
	if s.Admin {
		return "admin"
	}
	out := "register:" + strings.Join(s.Services, ",")
	if len(s.Domains) > 0 {
		out += " domains:" + strings.Join(s.Domains, ",")
	}
	return out
}

// ValidateDomainGlob accepts a glob over host names: lower-case letters, digits, '.', '-'
// and the path.Match metacharacters * ? [ ] and '^' inside brackets.
func ValidateDomainGlob(g string) error {
	if g == "" || len(g) > 253 {
		return fmt.Errorf("domain glob %q: want 1-253 characters", clip(g))
	}
	for i := 0; i < len(g); i++ {
		c := g[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte(".-*?[]^", c) >= 0) {
			return fmt.Errorf("domain glob %q: want a-z 0-9 . - and the wildcards * ? [...]", clip(g))
		}
	}
	if _, err := path.Match(g, ""); err != nil {
		return fmt.Errorf("domain glob %q: %w", clip(g), err)
	}
	return nil
}

// ValidateServiceGlob accepts a glob over service names: the characters of a service name
// plus the path.Match metacharacters * ? [ ] and '-', '^' inside brackets.
func ValidateServiceGlob(g string) error {
	if g == "" || len(g) > 128 {
		return fmt.Errorf("service glob %q: want 1-128 characters", clip(g))
	}
	for i := 0; i < len(g); i++ {
		c := g[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-_*?[]^", c) >= 0) {
			return fmt.Errorf("service glob %q: want a-z 0-9 - _ and the wildcards * ? [...]", clip(g))
		}
	}
	if _, err := path.Match(g, ""); err != nil {
		return fmt.Errorf("service glob %q: %w", clip(g), err)
	}
	return nil
}

// Key is a signing key with its scope.
type Key struct {
	// Signing is the 32-byte key derived from the secret with DeriveKey.
	Signing []byte
	// Secret is the secret itself (the keys file's secret, the password of key "default"):
	// AWS SigV4 derives its own keys from it. Never logged: String leaves it out.
	Secret []byte
	Scope  Scope
}

// String describes the key without its secret or signing key, should one ever be printed.
func (k Key) String() string { return "key(" + k.Scope.String() + ")" }

// GoString is String, so that %#v does not print the secret either.
func (k Key) GoString() string { return k.String() }

// Keys finds the signing key and scope of a key id.
type Keys interface {
	// Lookup returns the key of id and whether id is known.
	Lookup(id string) (Key, bool)
}

// StaticKeys is a fixed set of signing keys by key id, each with ScopeRegisterAll.
type StaticKeys map[string][]byte

// Lookup returns the key of id.
func (k StaticKeys) Lookup(id string) (Key, bool) {
	key, ok := k[id]
	if !ok || len(key) == 0 {
		return Key{}, false
	}
	return Key{Signing: key, Scope: ScopeRegisterAll}, true
}

// Keyring is a set of scoped keys that can be replaced as a whole while requests are being
// verified: a hot reload of the keys file swaps the set in one step, so a request sees
// either the old keys or the new ones. The zero Keyring knows no key.
type Keyring struct {
	keys atomic.Pointer[map[string]Key]
}

// NewKeyring returns a Keyring holding keys.
func NewKeyring(keys map[string]Key) *Keyring {
	k := &Keyring{}
	k.Set(keys)
	return k
}

// Set replaces every key. The map must not be changed afterwards.
func (k *Keyring) Set(keys map[string]Key) { k.keys.Store(&keys) }

// Lookup returns the key of id.
func (k *Keyring) Lookup(id string) (Key, bool) {
	m := k.keys.Load()
	if m == nil {
		return Key{}, false
	}
	key, ok := (*m)[id]
	return key, ok && len(key.Signing) > 0
}

// IDs returns the known key ids, sorted.
func (k *Keyring) IDs() []string {
	m := k.keys.Load()
	if m == nil {
		return nil
	}
	ids := make([]string, 0, len(*m))
	for id := range *m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
