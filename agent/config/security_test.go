package config

import (
	"strings"
	"testing"
)

// TestSecurityConfigValidation: the security settings and paths are checked with errors that
// name the setting.
func TestSecurityConfigValidation(t *testing.T) {
	tests := []struct {
		name   string
		tweak  func(*Config)
		errHas string
	}{
		{name: "cert without key", tweak: func(c *Config) { c.TLSCert = "/c.pem" }, errHas: "tls_cert and tls_key: give both"},
		{name: "client ca without cert", tweak: func(c *Config) { c.TLSClientCA = "/ca.pem" }, errHas: "tls_client_ca needs tls_cert"},
		{name: "newline in keys file", tweak: func(c *Config) { c.KeysFile = "/etc/clb/keys\n.yaml" }, errHas: "keys_file: path"},
		{name: "control char in state dir", tweak: func(c *Config) { c.StateDir = "/var/lib/\x01clb" }, errHas: "state_dir: path"},
		{name: "listen without port", tweak: func(c *Config) { c.Listen = "127.0.0.1" }, errHas: "listen \"127.0.0.1\": want HOST:PORT"},
		{name: "listen bad port", tweak: func(c *Config) { c.Listen = ":99999" }, errHas: "port \"99999\""},
		{name: "listen bad host", tweak: func(c *Config) { c.Listen = "a b:80" }, errHas: "host \"a b\""},
		{name: "burst negative", tweak: func(c *Config) { c.AuthFailBurst = -1 }, errHas: "auth_fail_burst -1"},
		{name: "max members negative", tweak: func(c *Config) { c.MaxMembers = -5 }, errHas: "max_members -5"},
		{name: "defaults", tweak: func(c *Config) {}},
		{name: "listen ipv6", tweak: func(c *Config) { c.Listen = "[::1]:8090" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Defaults()
			if err := Decode(&cfg, DefaultConfigYAML(), "default"); err != nil {
				t.Fatal(err)
			}
			tt.tweak(&cfg)
			cfg.SetDefaults()
			err := cfg.Validate()
			if tt.errHas == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if cfg.MaxMembers != DefaultMaxMembers || cfg.AuthFailBurst != DefaultAuthFailBurst {
					t.Errorf("defaults not filled: max_members %d, auth_fail_burst %d", cfg.MaxMembers, cfg.AuthFailBurst)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.errHas)
			}
		})
	}
}

// TestFileModes: what clbd writes is private to its user (or group, for the state).
