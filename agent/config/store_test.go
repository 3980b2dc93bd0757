package config

import (
	"testing"
	"time"
)

func TestStoreConfig(t *testing.T) {
	base := "services:\n  web:\n    listeners:\n      - port: 80\n"
	etcd := base + "store:\n  type: etcd\n  endpoints: [http://127.0.0.1:2379]\n"
	tests := []configCase{
		{"no store section", base, ""},
		{"local", base + "store:\n  type: local\n", ""},
		{"etcd", etcd, ""},
		{"etcd full", etcd + "  prefix: /fleet-a/\n  dial_timeout: 500ms\n  username: clb\n  password: pw\n  tls:\n    ca: /etc/clb/ca.pem\n    cert: /etc/clb/c.pem\n    key: /etc/clb/c.key\n", ""},
		{"host:port endpoint", base + "store:\n  type: etcd\n  endpoints: [10.0.0.1:2379]\n", ""},
		{"unknown key", etcd + "  endpoint: x\n", "field endpoint not found"},
		{"unknown tls key", etcd + "  tls:\n    cafile: x\n", "field cafile not found"},
		{"unknown type", base + "store:\n  type: consul\n", "store.type \"consul\": want local or etcd"},
		{"local with endpoints", base + "store:\n  endpoints: [http://127.0.0.1:2379]\n", "store.type local takes no other setting"},
		{"etcd without endpoints", base + "store:\n  type: etcd\n", "store.endpoints: type etcd needs at least one endpoint"},
		{"endpoint without port", base + "store:\n  type: etcd\n  endpoints: [http://etcd.example]\n", "want host:port"},
		{"endpoint bad scheme", base + "store:\n  type: etcd\n  endpoints: [unix:///run/etcd.sock]\n", "scheme \"unix\""},
		{"endpoint with path", base + "store:\n  type: etcd\n  endpoints: [http://e:2379/v3]\n", "nothing more"},
		{"prefix without slashes", etcd + "  prefix: clb\n", "store.prefix \"clb\""},
		{"prefix with a space", etcd + "  prefix: \"/c b/\"\n", "store.prefix"},
		{"dial timeout too short", etcd + "  dial_timeout: 1ms\n", "store.dial_timeout 1ms: want 100ms-1m"},
		{"password without user", etcd + "  password: pw\n", "password without username"},
		{"user without password", etcd + "  username: clb\n", "without password"},
		{"password twice", etcd + "  username: clb\n  password: pw\n  password_file: /f\n", "give one"},
		{"cert without key", etcd + "  tls:\n    cert: /c.pem\n", "cert and key go together"},
	}
	checkConfigCases(t, tests)
	cfg := Defaults()
	if err := Decode(&cfg, []byte(etcd), "test"); err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Prefix != "/clb/" || cfg.Store.DialTimeout != 2*time.Second {
		t.Errorf("etcd defaults: prefix %q, dial_timeout %s; want /clb/ and 2s", cfg.Store.Prefix, cfg.Store.DialTimeout)
	}
}
