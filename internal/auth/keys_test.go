package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestScopeAllowsService(t *testing.T) {
	tests := []struct {
		scope   Scope
		service string
		want    bool
	}{
		{ScopeAdmin, "anything", true},
		{ScopeRegisterAll, "web", true},
		{Scope{Services: []string{"web"}}, "web", true},
		{Scope{Services: []string{"web"}}, "web2", false},
		{Scope{Services: []string{"api-*"}}, "api-eu", true},
		{Scope{Services: []string{"api-*"}}, "web", false},
		{Scope{Services: []string{"web", "db?"}}, "db1", true},
		{Scope{Services: []string{"[ab]x"}}, "bx", true},
		{Scope{}, "web", false},
		{Scope{Services: []string{"["}}, "[", false}, // malformed glob matches nothing
	}
	for _, tt := range tests {
		if got := tt.scope.AllowsService(tt.service); got != tt.want {
			t.Errorf("%v.AllowsService(%q) = %v, want %v", tt.scope, tt.service, got, tt.want)
		}
	}
}

const goodSecret = "0123456789abcdef0123"

func TestParseKeysFile(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		wantErr string
		want    map[string]string // id → scope string
	}{
		{name: "empty", data: "", want: map[string]string{}},
		{name: "two keys", data: "keys:\n  - id: ops\n    secret: " + goodSecret + "\n    scope: admin\n  - id: web-1\n    secret: " + goodSecret + "x\n    scope: register\n    services: [web, \"api-*\"]\n",
			want: map[string]string{"ops": "admin", "web-1": "register:web,api-*"}},
		{name: "unknown field", data: "keys:\n  - id: a\n    secret: " + goodSecret + "\n    scope: admin\n    colour: red\n", wantErr: "field colour not found"},
		{name: "short secret", data: "keys:\n  - id: a\n    secret: short\n    scope: admin\n", wantErr: `key "a": secret is shorter than 16`},
		{name: "duplicate id", data: "keys:\n  - {id: a, secret: " + goodSecret + ", scope: admin}\n  - {id: a, secret: " + goodSecret + ", scope: admin}\n", wantErr: `key "a": listed twice`},
		{name: "bad id", data: "keys:\n  - {id: 'a b', secret: " + goodSecret + ", scope: admin}\n", wantErr: `key 1: key id "a b"`},
		{name: "bad scope", data: "keys:\n  - {id: a, secret: " + goodSecret + ", scope: root}\n", wantErr: `scope "root": want register or admin`},
		{name: "register without services", data: "keys:\n  - {id: a, secret: " + goodSecret + ", scope: register}\n", wantErr: "a register key needs services"},
		{name: "admin with services", data: "keys:\n  - {id: a, secret: " + goodSecret + ", scope: admin, services: [web]}\n", wantErr: "an admin key takes no services"},
		{name: "bad glob", data: "keys:\n  - {id: a, secret: " + goodSecret + ", scope: register, services: ['web\nx']}\n", wantErr: "service glob"},
		{name: "malformed glob", data: "keys:\n  - {id: a, secret: " + goodSecret + ", scope: register, services: ['[a']}\n", wantErr: "syntax error in pattern"},
		{name: "secret with spaces", data: "keys:\n  - {id: a, secret: ' " + goodSecret + "', scope: admin}\n", wantErr: "one line without surrounding spaces"},
		{name: "secret never in type errors", data: "keys:\n  - id: a\n    secret: " + goodSecret + "\n    scope: admin\n    services: " + goodSecret + "zz\n", wantErr: "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseKeysFile([]byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), goodSecret) {
					t.Errorf("error %q contains the secret", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for id, k := range f.SigningKeys() {
				got[id] = k.Scope.String()
				if len(k.Signing) != KeySize {
					t.Errorf("key %s: signing key of %d bytes", id, len(k.Signing))
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got keys %v, want %v", got, tt.want)
			}
			for id, s := range tt.want {
				if got[id] != s {
					t.Errorf("key %s: scope %q, want %q", id, got[id], s)
				}
			}
		})
	}
}

func TestKeysFileRoundTrip(t *testing.T) {
	in := &KeysFile{Keys: []FileKey{
		{ID: "ops", Secret: goodSecret, Scope: ScopeNameAdmin, Created: "2026-01-02T03:04:05Z"},
		{ID: "web", Secret: goodSecret + "1", Scope: ScopeNameRegister, Services: []string{"web", "api-*"}},
	}}
	data, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseKeysFile(data)
	if err != nil {
		t.Fatalf("parse marshalled file: %v\n%s", err, data)
	}
	if len(out.Keys) != 2 || out.Keys[1].Services[1] != "api-*" || out.Keys[0].Created != in.Keys[0].Created {
		t.Errorf("round trip = %+v, want %+v", out.Keys, in.Keys)
	}
}

func TestLoadKeysFilePermissions(t *testing.T) {
	dir := t.TempDir()
	data := "keys:\n  - {id: a, secret: " + goodSecret + ", scope: admin}\n"
	tests := []struct {
		name    string
		mode    os.FileMode
		uid     int
		wantErr string
	}{
		{name: "private", mode: 0o600, uid: os.Getuid()},
		{name: "read-only private", mode: 0o400, uid: os.Getuid()},
		{name: "group readable", mode: 0o640, uid: os.Getuid(), wantErr: "mode 0640 lets other users read"},
		{name: "world readable", mode: 0o604, uid: os.Getuid(), wantErr: "mode 0604"},
		{name: "group writable", mode: 0o620, uid: os.Getuid(), wantErr: "mode 0620"},
		{name: "other owner", mode: 0o600, uid: os.Getuid() + 1, wantErr: "not by clbd's uid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := LoadKeysFile(p, tt.uid)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInsecureFile) {
				t.Fatalf("got %v, want ErrInsecureFile containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := LoadKeysFile(dir, os.Getuid()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory as keys file: got %v", err)
	}
}

func TestAuthenticateScope(t *testing.T) {
	ring := NewKeyring(map[string]Key{
		"ops": {Signing: testKey, Scope: ScopeAdmin},
		"web": {Signing: otherKey, Scope: Scope{Services: []string{"web"}}},
	})
	v := New(ring, WithClock(func() time.Time { return t0 }))
	r := newSigned(t, "PUT", testTarget, testBody, "web", otherKey)
	id, err := v.Authenticate(r, []byte(testBody))
	if err != nil || id.KeyID != "web" || id.Scope.Admin || !id.Scope.AllowsService("web") || id.Scope.AllowsService("db") {
		t.Fatalf("Authenticate = %+v, %v; want key web with register scope on web", id, err)
	}
	// Revoking the key by swapping the ring refuses its next request.
	ring.Set(map[string]Key{"ops": {Signing: testKey, Scope: ScopeAdmin}})
	r = newSigned(t, "PUT", testTarget+"&x=1", testBody, "web", otherKey)
	if id, err := v.Authenticate(r, []byte(testBody)); err == nil || id.Scope.AllowsService("web") {
		t.Errorf("revoked key: Authenticate = %+v, %v; want an error and no scope", id, err)
	}
	if got := ring.IDs(); len(got) != 1 || got[0] != "ops" {
		t.Errorf("IDs() = %v, want [ops]", got)
	}
}

// TestReplayRefusedWholeWindow: whatever the signer's clock offset (within the skew), a
// replay is refused at every moment its timestamp is still acceptable, and refused as stale
// afterwards: nonces live at least as long as the timestamps that carry them.
func TestReplayRefusedWholeWindow(t *testing.T) {
	for _, tsOffset := range []time.Duration{-DefaultSkew, -time.Minute, 0, time.Minute, DefaultSkew} {
		clock := t0
		v := New(keys, WithClock(func() time.Time { return clock }))
		r := httptest.NewRequest(http.MethodPut, testTarget, strings.NewReader(testBody))
		if err := sign(r, "default", testKey, []byte(testBody), t0.Add(tsOffset), testNonce); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(r, []byte(testBody)); err != nil {
			t.Fatalf("ts %+v: first Verify() = %v", tsOffset, err)
		}
		for at := time.Duration(0); at <= 2*DefaultSkew+time.Minute; at += 15 * time.Second {
			clock = t0.Add(at)
			_, err := v.Verify(r, []byte(testBody))
			if err == nil {
				t.Fatalf("ts %+v: replay at +%v accepted", tsOffset, at)
			}
		}
	}
}

func TestScopeAllowsDomain(t *testing.T) {
	for _, tt := range []struct {
		scope Scope
		host  string
		want  bool
	}{
		{ScopeAdmin, "a.example.com", true},
		{Scope{Domains: []string{"*.example.com"}}, "a.example.com", true},
		{Scope{Domains: []string{"*.example.com"}}, "a.b.example.com", true},
		{Scope{Domains: []string{"*.example.com"}}, "example.com", false},
		{Scope{Domains: []string{"www.example.com"}}, "api.example.com", false},
		{Scope{Services: []string{"*"}}, "a.example.com", false},
		{Scope{}, "a.example.com", false},
	} {
		if got := tt.scope.AllowsDomain(tt.host); got != tt.want {
			t.Errorf("%s.AllowsDomain(%q) = %v, want %v", tt.scope, tt.host, got, tt.want)
		}
	}
}

func TestKeysFileDomains(t *testing.T) {
	f, err := ParseKeysFile([]byte("keys:\n  - {id: d, secret: " + goodSecret + ", scope: register, domains: [\"*.example.com\"]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := f.SigningKeys()["d"].Scope; !s.AllowsDomain("www.example.com") || s.AllowsService("web") {
		t.Errorf("scope %s: want domains *.example.com and no service", s)
	}
	for _, bad := range []string{
		"keys:\n  - {id: d, secret: " + goodSecret + ", scope: register, domains: [\"Bad Host\"]}\n",
		"keys:\n  - {id: d, secret: " + goodSecret + ", scope: admin, domains: [\"a.example\"]}\n",
	} {
		if _, err := ParseKeysFile([]byte(bad)); err == nil {
			t.Errorf("ParseKeysFile(%q): no error", bad)
		}
	}
}
