package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"clb/agent/config"
	"clb/internal/auth"
	"clb/internal/testutil"
	"clb/register"
	"io"
)

// waitUntil polls cond (a state, not a duration: the test fails only if it never holds).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// clbdKeys runs `clbd keys ARGS --keys-file F` and returns stdout and stderr.
func clbdKeys(t *testing.T, file string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	full := append([]string{"clbd", "keys"}, args[0], "--keys-file", file)
	full = append(full, args[1:]...)
	code := CLIMain(full, &stdout, &stderr)
	return stdout.String(), stderr.String(), code
}

// TestKeysRotation rotates a member key with clbd keys while clbd runs: the old key works
// until it is revoked, the new one from the moment clbd has read the file; no call fails.
func TestKeysRotation(t *testing.T) {
	s := newSecureAgent(t, secureOpts{})
	body := fmt.Sprintf(`{"address":"127.0.0.1","port":%d}`, s.b1Port)
	if st, out := s.call("PUT", memberPath+"m1", "web-deploy", body); st != http.StatusOK {
		t.Fatalf("register with web-deploy = %d %v", st, out)
	}

	secret, stderr, code := clbdKeys(t, s.keys, "rotate", "web-deploy", "web-deploy-2")
	secret = strings.TrimSpace(secret)
	if code != 0 || len(secret) != 64 || !strings.Contains(stderr, "clbd keys revoke web-deploy") {
		t.Fatalf("keys rotate: exit %d, stdout %q, stderr %q", code, secret, stderr)
	}
	if fi, err := os.Stat(s.keys); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keys file after rotate: %v, %v; want mode 0600", fi.Mode(), err)
	}
	secrets["web-deploy-2"] = secret
	t.Cleanup(func() { delete(secrets, "web-deploy-2") })
	waitUntil(t, "clbd to load web-deploy-2", func() bool { return slices.Contains(s.a.KeyIDs(), "web-deploy-2") })
	for _, key := range []string{"web-deploy", "web-deploy-2"} {
		if st, out := s.call("PUT", memberPath+"m1", key, body); st != http.StatusOK {
			t.Errorf("during rotation, register with %s = %d %v, want 200", key, st, out)
		}
	}
	// The new key has the old one's scope.
	if st, out := s.call("PUT", "/v1/services/db/members/m1", "web-deploy-2", ""); st != http.StatusForbidden {
		t.Errorf("web-deploy-2 outside web = %d %v, want 403", st, out)
	}

	list, _, code := clbdKeys(t, s.keys, "list")
	if code != 0 || !strings.Contains(list, "web-deploy-2") || !strings.Contains(list, "register") {
		t.Errorf("keys list: exit %d:\n%s", code, list)
	}
	for id, sec := range secrets {
		if strings.Contains(list, sec) {
			t.Errorf("keys list shows the secret of %s", id)
		}
	}

	if _, stderr, code := clbdKeys(t, s.keys, "revoke", "web-deploy"); code != 0 {
		t.Fatalf("keys revoke: exit %d: %s", code, stderr)
	}
	waitUntil(t, "clbd to drop web-deploy", func() bool { return !slices.Contains(s.a.KeyIDs(), "web-deploy") })
	if st, out := s.call("PUT", memberPath+"m1", "web-deploy", body); st != http.StatusUnauthorized {
		t.Errorf("revoked key = %d %v, want 401", st, out)
	}
	if st, out := s.call("PUT", memberPath+"m1", "web-deploy-2", body); st != http.StatusOK {
		t.Errorf("new key after revoke = %d %v, want 200", st, out)
	}
	if s.a.AuthFailures() != 1 {
		t.Errorf("AuthFailures() = %d, want 1 (only the revoked key's call)", s.a.AuthFailures())
	}
}

// TestKeysFileRefused: a keys file others can read is refused at start, and at a reload the
// keys in use stay.
func TestKeysFileRefused(t *testing.T) {
	s := newSecureAgent(t, secureOpts{})
	if err := os.Chmod(s.keys, 0o644); err != nil {
		t.Fatal(err)
	}
	// Rewrite it (a new key) so that the watcher sees a change.
	data, _ := os.ReadFile(s.keys)
	data = append(data, []byte("  - {id: late, secret: late-secret-0123456789, scope: admin}\n")...)
	if err := os.WriteFile(s.keys, data, 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the refused reload to be logged", func() bool { return strings.Contains(s.logs.String(), "keys file not reloaded") })
	if !strings.Contains(s.logs.String(), "mode 0644 lets other users read") {
		t.Errorf("log does not say why the keys file was refused:\n%s", s.logs.String())
	}
	if slices.Contains(s.a.KeyIDs(), "late") {
		t.Errorf("a key from a world-readable file was loaded")
	}
	if st, out := s.call("GET", "/v1/status", "ops", ""); st != http.StatusOK {
		t.Errorf("old key after a refused reload = %d %v, want 200", st, out)
	}

	// At start the same file is an error.
	cfg := config.Defaults()
	if err := config.Decode(&cfg, config.DefaultConfigYAML(), "default"); err != nil {
		t.Fatal(err)
	}
	cfg.StateDir, cfg.Listen, cfg.Output, cfg.KeysFile = t.TempDir(), "127.0.0.1:0", filepath.Join(t.TempDir(), "haproxy.cfg"), s.keys
	a, err := New(&cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "insecure file permissions") {
		t.Errorf("Run with a world-readable keys file = %v, want insecure file permissions", err)
	}
}

// TestKeysCommand: add prints a secret once, refuses duplicates and bad scopes, and writes a
// private file; an unknown key cannot be revoked.
func TestKeysCommand(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.yaml")
	tests := []struct {
		args    []string
		code    int
		errHas  string
		secret  bool
		listHas string
	}{
		{args: []string{"add", "--scope", "admin", "ops"}, secret: true, listHas: "ops"},
		{args: []string{"add", "--service", "web", "--service", "api-*", "web"}, secret: true, listHas: "web,api-*"},
		{args: []string{"add", "--service", "web", "web"}, code: 1, errHas: `key "web" exists`},
		{args: []string{"add", "--scope", "root", "x"}, code: 64, errHas: `scope "root"`},
		{args: []string{"add", "y"}, code: 64, errHas: "a register key needs services"},
		{args: []string{"add", "--scope", "admin", "bad id"}, code: 64, errHas: "key id"},
		{args: []string{"revoke", "nobody"}, code: 1, errHas: `no key "nobody"`},
		{args: []string{"rotate", "--in-place", "ops"}, secret: true, listHas: "ops"},
		{args: []string{"rotate", "ops"}, code: 64, errHas: "usage"},
		{args: []string{"add", "z", "--scope", "admin"}, code: 64, errHas: "flags must come first"},
		{args: []string{"revoke", "ops"}, listHas: "web"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			stdout, stderr, code := clbdKeys(t, file, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.errHas) {
				t.Fatalf("exit %d, stderr %q; want %d containing %q", code, stderr, tt.code, tt.errHas)
			}
			if got := len(strings.TrimSpace(stdout)) == 64; got != tt.secret {
				t.Errorf("stdout %q: secret printed = %v, want %v", stdout, got, tt.secret)
			}
			if tt.listHas != "" {
				list, _, _ := clbdKeys(t, file, "list")
				if !strings.Contains(list, tt.listHas) {
					t.Errorf("list does not show %q:\n%s", tt.listHas, list)
				}
			}
		})
	}
	kf, err := auth.LoadKeysFile(file, os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	if len(kf.Keys) != 1 || kf.Keys[0].ID != "web" {
		t.Errorf("keys file holds %+v, want only web", kf.Keys)
	}
}

// testCert is testutil.TestCert for 127.0.0.1.
func testCert(t *testing.T, dir, name string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (string, string, *x509.Certificate, *ecdsa.PrivateKey) {
	return testutil.TestCert(t, dir, name, isCA, parent, parentKey)
}

// TestTLS: the API over TLS, reached with a pin or the CA; plain http is refused; a renewed
// certificate is served without a restart; with tls_client_ca a client needs its certificate.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caPath, _, ca, caKey := testCert(t, dir, "ca", true, nil, nil)
	certPath, keyPath, cert, _ := testCert(t, dir, "server", false, ca, caKey)
	clientCert, clientKey, _, _ := testCert(t, dir, "client", false, ca, caKey)
	s := newSecureAgent(t, secureOpts{tweak: func(c *config.Config) { c.TLSCert, c.TLSKey, c.TLSClientCA = certPath, keyPath, caPath }})

	call := func(opts register.TLSOptions) (int, error) {
		hc, err := opts.HTTPClient()
		if err != nil {
			t.Fatal(err)
		}
		req := s.request("GET", "/v1/status", "ops", "")
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	withClient := func(o register.TLSOptions) register.TLSOptions {
		o.CertFile, o.KeyFile = clientCert, clientKey
		return o
	}
	tests := []struct {
		name    string
		opts    register.TLSOptions
		wantErr string
	}{
		{name: "ca", opts: withClient(register.TLSOptions{CAFile: caPath})},
		{name: "pin", opts: withClient(register.TLSOptions{Pin: register.Fingerprint(cert)})},
		{name: "wrong pin", opts: withClient(register.TLSOptions{Pin: register.Fingerprint(ca)}), wantErr: "does not match the pinned"},
		// TLS 1.3 reports a refused client certificate after the handshake, in words that vary.
		{name: "no client certificate", opts: register.TLSOptions{CAFile: caPath}, wantErr: "*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := call(tt.opts)
			if tt.wantErr == "" {
				if err != nil || st != http.StatusOK {
					t.Fatalf("GET /v1/status = %d, %v; want 200", st, err)
				}
				return
			}
			if err == nil || tt.wantErr != "*" && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("GET /v1/status = %d, %v; want an error containing %q", st, err, tt.wantErr)
			}
		})
	}
	// clb_register over TLS with a pin, a client certificate and a scoped key.
	secretFile := filepath.Join(dir, "web-deploy.secret")
	if err := os.WriteFile(secretFile, []byte(secWebKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	server := strings.TrimPrefix(s.api, "https://")
	for _, c := range []struct {
		service string
		code    int
	}{{"web", register.ExitOK}, {"db", register.ExitAuth}} {
		var stdout, stderr bytes.Buffer
		code := register.Main([]string{"clb_register", "--server", server, "--pin", register.Fingerprint(cert), "--cert", clientCert, "--key", clientKey,
			"--key-id", "web-deploy", "--password-file", secretFile, "--service", c.service, "--name", "tls1", "--address", "127.0.0.1",
			"--port", fmt.Sprint(s.b1Port), "--timeout", "10s"}, &stdout, &stderr)
		if code != c.code {
			t.Errorf("clb_register over TLS into %s: exit %d, want %d: %s%s", c.service, code, c.code, stdout.String(), stderr.String())
		}
	}
	if got := s.served(3); got["b1"] != 3 {
		t.Errorf("after clb_register over TLS, web served %v, want b1", got)
	}

	plain := strings.Replace(s.api, "https://", "http://", 1)
	if resp, err := http.Get(plain + "/healthz"); err == nil {
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain http to the TLS API answered 200")
		}
		resp.Body.Close()
	}

	// Renew: a new certificate (same CA) in place of the old; the next handshake serves it.
	newCert, newKey, renewed, _ := testCert(t, t.TempDir(), "server2", false, ca, caKey)
	for _, p := range [][2]string{{newKey, keyPath}, {newCert, certPath}} {
		data, _ := os.ReadFile(p[0])
		if err := os.WriteFile(p[1]+".tmp", data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p[1]+".tmp", p[1]); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := call(withClient(register.TLSOptions{Pin: register.Fingerprint(renewed)})); err != nil || st != http.StatusOK {
		t.Errorf("after renewal, pin of the new certificate: %d, %v", st, err)
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(s.api, "https://"), &tls.Config{InsecureSkipVerify: true, Certificates: mustPair(t, clientCert, clientKey)})
	if err == nil {
		if got := conn.ConnectionState().PeerCertificates[0]; !got.Equal(renewed) {
			t.Errorf("after renewal the server still shows %s", got.Subject.CommonName)
		}
		conn.Close()
	}

	// A second client CA: its clients are refused until tls_client_ca holds it too, then
	// accepted without a restart.
	ca2Path, _, ca2, ca2Key := testCert(t, t.TempDir(), "ca2", true, nil, nil)
	client2Cert, client2Key, _, _ := testCert(t, t.TempDir(), "client2", false, ca2, ca2Key)
	second := register.TLSOptions{Pin: register.Fingerprint(renewed), CertFile: client2Cert, KeyFile: client2Key}
	if st, err := call(second); err == nil && st == http.StatusOK {
		t.Errorf("a client of a CA not in tls_client_ca was accepted")
	}
	bundle := append(append([]byte{}, mustRead(t, caPath)...), mustRead(t, ca2Path)...)
	if err := os.WriteFile(caPath+".tmp", bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(caPath+".tmp", caPath); err != nil {
		t.Fatal(err)
	}
	if st, err := call(second); err != nil || st != http.StatusOK {
		t.Errorf("after adding its CA to tls_client_ca: %d, %v; want 200", st, err)
	}
	if st, err := call(withClient(register.TLSOptions{Pin: register.Fingerprint(renewed)})); err != nil || st != http.StatusOK {
		t.Errorf("after adding a CA, a client of the first CA: %d, %v; want 200", st, err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustPair(t *testing.T, cert, key string) []tls.Certificate {
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return []tls.Certificate{pair}
}

func TestFileModes(t *testing.T) {
	s := newSecureAgent(t, secureOpts{})
	if st, out := s.call("PUT", memberPath+"m1", "default", fmt.Sprintf(`{"address":"127.0.0.1","port":%d}`, s.b1Port)); st != http.StatusOK {
		t.Fatalf("register = %d %v", st, out)
	}
	tests := []struct {
		name string
		// deny are the permission bits that must be clear.
		deny os.FileMode
	}{
		{"state.json", 0o027},
		{config.LastGoodName, 0o077},
		{"haproxy-master.sock", 0o077},
		{config.AdminSocketName, 0o077},
		{".", 0o027},
	}
	for _, tt := range tests {
		fi, err := os.Stat(filepath.Join(s.dir, tt.name))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got := fi.Mode().Perm(); got&tt.deny != 0 {
			t.Errorf("%s has mode %04o, want none of %04o", tt.name, got, tt.deny)
		}
	}
	pw := filepath.Join(t.TempDir(), "password")
	if err := generatePassword(pw); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(pw); fi.Mode().Perm() != 0o600 {
		t.Errorf("generated password has mode %04o, want 0600", fi.Mode().Perm())
	}
	before, _ := os.ReadFile(pw)
	if err := generatePassword(pw); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second generatePassword = %v, want fs.ErrExist", err)
	}
	if after, _ := os.ReadFile(pw); !bytes.Equal(before, after) {
		t.Errorf("an existing password was overwritten")
	}
}

// TestPasswdRotatesTheSharedPassword: `clbd passwd` writes a new password that the running
// clbd uses at once (the password file is watched); the old one is refused from then on.
func TestPasswdRotatesTheSharedPassword(t *testing.T) {
	base, a := testAgent(t)
	pwFile := a.config().PasswordFile
	cfgFile := filepath.Join(t.TempDir(), "clbd.yaml")
	if err := os.WriteFile(cfgFile, []byte("password_file: "+pwFile+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	if code := CLIMain([]string{"clbd", "passwd", "--config", cfgFile}, &out, &errOut); code != 0 {
		t.Fatalf("clbd passwd: exit %d: %s", code, errOut.String())
	}
	newPW := strings.TrimSpace(out.String())
	if len(newPW) < 16 || strings.Contains(errOut.String(), newPW) {
		t.Fatalf("clbd passwd printed %q on stdout (stderr %q); want the password on stdout only", newPW, errOut.String())
	}
	if fi, err := os.Stat(pwFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file mode: %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	call := func(pw string) int {
		code, _ := doCase(t, base, apiCase{method: "GET", path: "/v1/status", sign: true, password: pw})
		return code
	}
	deadline := time.Now().Add(10 * time.Second)
	for call(newPW) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("clbd did not take the new password within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := call(testPassword); code != http.StatusUnauthorized {
		t.Errorf("the old password after clbd passwd: %d, want 401", code)
	}
}

// CLIMain is clbd's command line (clbdcli.Main), set by cli_hook_test.go: package clbdcli
// imports agent, so only the external test package may import it.
var CLIMain func(args []string, stdout, stderr io.Writer) int
