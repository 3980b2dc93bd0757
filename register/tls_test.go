package register

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePin(t *testing.T) {
	hex64 := strings.Repeat("ab", 32)
	tests := []struct {
		in      string
		wantErr string
	}{
		{in: "sha256:" + hex64},
		{in: "sha256:" + strings.ToUpper(hex64)},
		{in: "sha256:" + strings.TrimSuffix(strings.Repeat("AB:", 32), ":")},
		{in: hex64, wantErr: "want sha256:"},
		{in: "sha1:" + hex64, wantErr: "want sha256:"},
		{in: "sha256:abcd", wantErr: "64 hex digits"},
		{in: "sha256:" + strings.Repeat("zz", 32), wantErr: "64 hex digits"},
	}
	for _, tt := range tests {
		_, err := ParsePin(tt.in)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("ParsePin(%q) = %v, want error containing %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestCheckTransport(t *testing.T) {
	tests := []struct {
		server   string
		insecure bool
		ok       bool
	}{
		{"http://127.0.0.1:8090", false, true},
		{"http://127.0.0.53:8090", false, true},
		{"http://[::1]:8090", false, true},
		{"http://localhost:8090", false, true},
		{"http://lb.example:8090", false, false},
		{"http://10.0.0.1:8090", false, false},
		{"http://10.0.0.1:8090", true, true},
		{"https://lb.example:8090", false, true},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.server)
		if err != nil {
			t.Fatal(err)
		}
		err = CheckTransport(u, tt.insecure)
		if (err == nil) != tt.ok {
			t.Errorf("CheckTransport(%s, insecure=%v) = %v, want ok=%v", tt.server, tt.insecure, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "refusing plain http") {
			t.Errorf("error %q does not say why", err)
		}
	}
}

// TestTLSOptions: a real TLS server (httptest's self-signed certificate) is reached with its
// CA or its pin, and refused with a wrong pin or without either.
func TestTLSOptions(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	pin := Fingerprint(srv.Certificate())
	wrong := "sha256:" + strings.Repeat("00", 32)
	tests := []struct {
		name    string
		opts    TLSOptions
		wantErr string
	}{
		{name: "ca", opts: TLSOptions{CAFile: ca}},
		{name: "pin", opts: TLSOptions{Pin: pin}},
		{name: "ca and pin", opts: TLSOptions{CAFile: ca, Pin: pin}},
		{name: "wrong pin", opts: TLSOptions{Pin: wrong}, wantErr: "does not match the pinned"},
		{name: "ca and wrong pin", opts: TLSOptions{CAFile: ca, Pin: wrong}, wantErr: "does not match the pinned"},
		{name: "neither", opts: TLSOptions{}, wantErr: "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc, err := tt.opts.HTTPClient()
			if err != nil {
				t.Fatal(err)
			}
			resp, err := hc.Get(srv.URL)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("GET: %v", err)
				}
				resp.Body.Close()
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatalf("GET succeeded, want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("GET: %v, want an error containing %q", err, tt.wantErr)
			}
			var cv *tls.CertificateVerificationError
			if !errors.As(err, &cv) && !strings.Contains(err.Error(), "unknown authority") {
				t.Errorf("GET: %v is not a certificate verification error (retrying would not help)", err)
			}
		})
	}
	if _, err := (TLSOptions{CAFile: filepath.Join(dir, "missing.pem")}).Config(); err == nil || !strings.Contains(err.Error(), "--ca") {
		t.Errorf("missing CA file: %v", err)
	}
	if _, err := (TLSOptions{CertFile: ca}).Config(); err == nil || !strings.Contains(err.Error(), "--cert and --key") {
		t.Errorf("cert without key: %v", err)
	}
}

// TestCLIRefusesPlainHTTP: clb_register will not send a request in clear to another machine.
func TestCLIRefusesPlainHTTP(t *testing.T) {
	var stdout, stderr strings.Builder
	app := newApp("clb_register", false, appOptions{lookupEnv: func(string) (string, bool) { return "", false }, clientConfig: filepath.Join(t.TempDir(), "none")})
	code := runApp(t.Context(), app, []string{"clb_register", "pw", "lb.example", "web"}, &stdout, &stderr)
	if code != ExitUsage || !strings.Contains(stderr.String(), "refusing plain http to lb.example:8090") {
		t.Errorf("exit %d, stderr %q; want %d and a refusal", code, stderr.String(), ExitUsage)
	}
	stderr.Reset()
	code = runApp(t.Context(), app, []string{"clb_register", "--pin", "sha256:12", "pw", "lb.example", "web"}, &stdout, &stderr)
	if code != ExitUsage || !strings.Contains(stderr.String(), "--pin") {
		t.Errorf("bad pin: exit %d, stderr %q; want %d naming --pin", code, stderr.String(), ExitUsage)
	}
}
