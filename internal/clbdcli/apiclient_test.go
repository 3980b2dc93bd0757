package clbdcli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"clb/agent/config"
	"clb/internal/auth"
)

func TestEndpoint(t *testing.T) {
	for _, tt := range []struct {
		listen, tlsCert, server string
		want                    string
		wantErr                 string
	}{
		{listen: ":8090", want: "http://127.0.0.1:8090"},
		{listen: "0.0.0.0:8090", want: "http://127.0.0.1:8090"},
		{listen: "[::]:8090", want: "http://[::1]:8090"},
		{listen: "127.0.0.2:9000", want: "http://127.0.0.2:9000"},
		{listen: "10.0.0.5:8090", tlsCert: "/etc/clb/api.pem", want: "https://10.0.0.5:8090"},
		{listen: ":8090", tlsCert: "/etc/clb/api.pem", want: "https://127.0.0.1:8090"},
		{listen: ":8090", server: "lb.example:8443", tlsCert: "/x.pem", want: "https://lb.example:8443"},
		{listen: ":8090", server: "http://127.0.0.1:9/ignored?x=1", want: "http://127.0.0.1:9"},
		{listen: ":8090", server: "ftp://lb", wantErr: "want http(s)://HOST:PORT"},
		{listen: "nonsense", wantErr: `listen "nonsense" of the config`},
	} {
		cfg := config.Defaults()
		cfg.Listen, cfg.TLSCert = tt.listen, tt.tlsCert
		u, err := endpoint(&cfg, tt.server)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("endpoint(%q, %q) error %v, want %q", tt.listen, tt.server, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("endpoint(%q, %q): %v", tt.listen, tt.server, err)
		case u.String() != tt.want:
			t.Errorf("endpoint(%q, %q) = %s, want %s", tt.listen, tt.server, u, tt.want)
		}
	}
}

// TestFindCredential: the keys file's first admin key by default, --key picks one, the password
// file (key "default") otherwise; missing and unreadable files say what to do, with their exit
// codes.
func TestFindCredential(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pw := write("password", "hunter2 password\n", 0o600)
	withAdmin := write("keys.yaml", "keys:\n  - id: web-deploy\n    secret: s1-0123456789abcdef\n    scope: register\n    services: [web]\n  - id: ops\n    secret: s2-0123456789abcdef\n    scope: admin\n", 0o600)
	noAdmin := write("keys-noadmin.yaml", "keys:\n  - id: web-deploy\n    secret: s1-0123456789abcdef\n    scope: register\n    services: [web]\n", 0o600)
	broken := write("keys-broken.yaml", "keys: [\n", 0o600)
	for _, tt := range []struct {
		name           string
		keys, password string
		stateDir       string
		key            string
		wantID         string
		wantSecret     string
		wantCode       int
		wantErr        string
	}{
		{name: "admin key first", keys: withAdmin, password: pw, wantID: "ops", wantSecret: "s2-0123456789abcdef"},
		{name: "--key picks", keys: withAdmin, password: pw, key: "web-deploy", wantID: "web-deploy", wantSecret: "s1-0123456789abcdef"},
		{name: "--key default", keys: withAdmin, password: pw, key: "default", wantID: "default", wantSecret: "hunter2 password"},
		{name: "no admin key: password", keys: noAdmin, password: pw, wantID: "default", wantSecret: "hunter2 password"},
		{name: "password only", password: pw, wantID: "default", wantSecret: "hunter2 password"},
		{name: "generated password in the state dir", stateDir: dir, wantID: "default", wantSecret: "hunter2 password"},
		{name: "no admin key, no password", keys: noAdmin, wantCode: ExitNoInput, wantErr: "has no admin key and the config sets no password_file"},
		{name: "unknown --key", keys: withAdmin, key: "nope", wantCode: ExitUsage, wantErr: "no such key in"},
		{name: "--key without keys file", password: pw, key: "ops", wantCode: ExitUsage, wantErr: "sets no keys_file"},
		{name: "password missing", stateDir: filepath.Join(dir, "none"), wantCode: ExitNoInput, wantErr: "does not exist (clbd writes STATE_DIR/password on its first start"},
		{name: "keys file missing", keys: filepath.Join(dir, "absent.yaml"), wantCode: ExitNoInput, wantErr: "keys file"},
		{name: "keys file broken", keys: broken, wantCode: ExitConfig, wantErr: "keys file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Defaults()
			cfg.KeysFile, cfg.PasswordFile = tt.keys, tt.password
			if tt.stateDir != "" {
				cfg.StateDir = tt.stateDir
			}
			cred, err := findCredential(&cfg, tt.key)
			if tt.wantErr != "" {
				var ec cli.ExitCoder
				if !errors.As(err, &ec) || ec.ExitCode() != tt.wantCode || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want exit %d and %q", err, tt.wantCode, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cred.id != tt.wantID || string(cred.key) != string(auth.DeriveKey([]byte(tt.wantSecret))) {
				t.Errorf("credential %s (from %s), want %s with the key of %q", cred.id, cred.from, tt.wantID, tt.wantSecret)
			}
		})
	}
}

// TestUnreadableCredentials: a keys file the caller may not read (clb-server's, mode 0600, read
// by another user) says to run as root or clb-server, exit 77.
func TestUnreadableCredentials(t *testing.T) {
	if os.Getuid() == 0 {
		t.Skip("root reads every file")
	}
	p := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(p, []byte("keys: []\n"), 0o000); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.KeysFile = p
	_, err := findCredential(&cfg, "")
	var ec cli.ExitCoder
	if !errors.As(err, &ec) || ec.ExitCode() != ExitNoPerm || !strings.Contains(err.Error(), "run this as root or as the clb-server user") {
		t.Errorf("unreadable keys file: %v, want exit 77 and the hint", err)
	}
}

func TestExitFor(t *testing.T) {
	for _, tt := range []struct {
		status int
		code   string
		want   int
	}{
		{400, "bad_request", ExitUsage},
		{401, "unauthenticated", ExitNoPerm},
		{403, "forbidden", ExitNoPerm},
		{404, "not_found", ExitNotFound},
		{409, "conflict", ExitFailure},
		{429, "rate_limited", ExitTempFail},
		{503, "not_applied", ExitTempFail},
		{503, "store_unavailable", ExitUnavailable},
		{500, "internal", ExitFailure},
	} {
		if got := exitFor(tt.status, tt.code); got != tt.want {
			t.Errorf("exitFor(%d, %s) = %d, want %d", tt.status, tt.code, got, tt.want)
		}
	}
}

// TestOperatorUsage: argument errors are refused before any request, with exit 64.
func TestOperatorUsage(t *testing.T) {
	for _, args := range [][]string{
		{"members"},
		{"members", "web", "extra"},
		{"members", "Bad Name"},
		{"zone", "disable", "web"},
		{"zone", "enable", "web", "a", "--json"},
		{"unregister", "web", "-x"},
		{"status", "extra"},
	} {
		code, _, stderr := runMain(args...)
		if code != ExitUsage || stderr == "" {
			t.Errorf("clbd %v: exit %d (%q), want %d with a message", args, code, stderr, ExitUsage)
		}
	}
}
