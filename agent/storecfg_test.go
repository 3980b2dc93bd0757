package agent

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"clb/internal/store"
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
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Prefix != "/clb/" || cfg.Store.DialTimeout != 2*time.Second {
		t.Errorf("etcd defaults: prefix %q, dial_timeout %s; want /clb/ and 2s", cfg.Store.Prefix, cfg.Store.DialTimeout)
	}
}

func TestStoreError(t *testing.T) {
	tests := []struct {
		err        error
		status     int
		code, text string
	}{
		{store.ErrUnavailable, http.StatusServiceUnavailable, "store_unavailable", "etcd"},
		{store.ErrNotSeen, http.StatusServiceUnavailable, "not_applied", "saved but not applied"},
		{store.ErrConflict, http.StatusConflict, "conflict", "retry"},
	}
	for _, tt := range tests {
		err := storeError("save registration", tt.err)
		var ae *apiError
		if !errors.As(err, &ae) || ae.Status != tt.status || ae.Code != tt.code || !strings.Contains(ae.Msg, tt.text) {
			t.Errorf("storeError(%v) = %#v, want %d %s mentioning %q", tt.err, err, tt.status, tt.code, tt.text)
		}
	}
	if err := storeError("save", errors.New("disk full")); !strings.Contains(err.Error(), "save: disk full") {
		t.Errorf("other errors: %v", err)
	}
}
