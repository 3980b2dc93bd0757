package config

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestConfigValidate(t *testing.T) {
	base := "services:\n  web:\n    listeners:\n      - port: 80\n"
	tests := []configCase{
		{"minimal", base, ""},
		{"default config", string(DefaultConfigYAML()), ""},
		{"empty file", "", "config is empty"},
		{"blank file", " \n   \n", "config is empty"},
		{"comments only", "# services:\n", "config is empty"},
		{"bad log level", base + "log_level: loud\n", "log_level \"loud\""},
		{"unknown key", "listen: :1\nlisen: :2\n", "field lisen not found"},
		{"unknown service key", base + "    stikcy: true\n", "field stikcy not found"},
		{"bad service name", "services:\n  Web!:\n    listeners:\n      - port: 80\n", "service name \"Web!\""},
		{"no listener", "services:\n  web: {}\n", "service web: needs at least one listener"},
		{"port 0", "services:\n  web:\n    listeners:\n      - port: 0\n", "port 0: want 1-65535"},
		{"port too big", "services:\n  web:\n    listeners:\n      - port: 70000\n", "port 70000"},
		{"bad protocol", "services:\n  web:\n    listeners:\n      - port: 80\n        protocol: udp\n", "protocol \"udp\""},
		{"https without certificate", "services:\n  web:\n    listeners:\n      - port: 443\n        protocol: https\n", "needs certificate"},
		{"certificate injection", "services:\n  web:\n    listeners:\n      - port: 443\n        protocol: https\n        certificate: \"/x.pem\\n    bind :1\"\n", "want an absolute path"},
		{"bad bind address", "services:\n  web:\n    listeners:\n      - port: 80\n        address: \"0.0.0.0 ssl\"\n", "want an IP address"},
		{"same bind twice", base + "  api:\n    listeners:\n      - port: 80\n", "already used by service"},
		{"bad balance", base + "    balance: fastest\n", "balance \"fastest\""},
		{"interval too short", base + "    health_check:\n      interval: 1s\n", "interval 1s: want 5s-600s"},
		{"interval too long", base + "    health_check:\n      interval: 601s\n", "interval 10m1s: want 5s-600s"},
		{"timeout not below interval", base + "    health_check:\n      interval: 5s\n      timeout: 5s\n", "timeout 5s"},
		{"threshold low", base + "    health_check:\n      healthy_threshold: 1\n", "healthy_threshold 1: want 2-10"},
		{"threshold high", base + "    health_check:\n      unhealthy_threshold: 11\n", "unhealthy_threshold 11: want 2-10"},
		{"target no port", base + "    health_check:\n      target: HTTP\n", "want HTTP:PORT/PATH or TCP:PORT"},
		{"target bad proto", base + "    health_check:\n      target: UDP:53\n", "protocol \"UDP\""},
		{"target tcp path", base + "    health_check:\n      target: TCP:80/x\n", "a TCP check takes no path"},
		{"target path injection", base + "    health_check:\n      target: \"HTTP:80/a b\"\n", "path \"/a b\""},
		{"target path newline", base + "    health_check:\n      target: \"HTTP:80/a\\n  server x 1.2.3.4:80\"\n", "want printable ASCII"},
		{"keys file path with a newline", base + "keys_file: \"/etc/clb/keys\\n.yaml\"\n", "keys_file: path"},
		{"tls cert without key", base + "tls_cert: /etc/clb/api.pem\n", "tls_cert and tls_key"},
		{"draining negative", base + "    draining_timeout: -1s\n", "draining_timeout"},
		{"bad http_reuse", base + "    http_reuse: sometimes\n", "http_reuse \"sometimes\": want one of safe"},
		{"ssl without certificate", "services:\n  mail:\n    listeners:\n      - port: 465\n        protocol: ssl\n", "protocol ssl needs certificate"},
		{"certificate on tcp", "services:\n  db:\n    listeners:\n      - port: 5432\n        protocol: tcp\n        certificate: /x.pem\n", "certificate is only for protocols https and ssl"},
		{"proxy protocol", "services:\n  db:\n    listeners:\n      - port: 5432\n        protocol: tcp\n        proxy_protocol: true\n", ""},
		{"app cookie", base + "    sticky: true\n    sticky_cookie: JSESSIONID\n", ""},
		{"app cookie without sticky", base + "    sticky_cookie: JSESSIONID\n", "sticky_cookie \"JSESSIONID\" needs sticky: true"},
		{"app cookie name injection", base + "    sticky: true\n    sticky_cookie: \"a b\"\n", "want 1-128 of"},
		{"app cookie with max age", base + "    sticky: true\n    sticky_cookie: sid\n    sticky_max_age: 1h\n", "sticky_max_age is for haproxy's own cookie"},
		{"max age fraction", base + "    sticky: true\n    sticky_max_age: 1500ms\n", "want whole seconds"},
		{"max age without sticky", base + "    sticky_max_age: 1h\n", "sticky_max_age needs sticky: true"},
		{"haproxy metrics on loopback", base + "haproxy_metrics_listen: \":9101\"\n", ""},
		{"haproxy metrics, bare port", base + "haproxy_metrics_listen: \"9101\"\n", ""},
		{"haproxy metrics on IPv6", base + "haproxy_metrics_listen: \"[::1]:9101\"\n", ""},
		{"haproxy metrics on a host name", base + "haproxy_metrics_listen: \"localhost:9101\"\n", "haproxy_metrics_listen \"localhost:9101\": want IP:PORT"},
		{"haproxy metrics injection", base + "haproxy_metrics_listen: \"127.0.0.1:9101\\n    bind :1\"\n", "want IP:PORT"},
		{"haproxy metrics port 0", base + "haproxy_metrics_listen: \"127.0.0.1:0\"\n", "want IP:PORT"},
		{"haproxy metrics without port", base + "haproxy_metrics_listen: \"127.0.0.1\"\n", "want IP:PORT"},
		{"haproxy metrics on a service's port", base + "haproxy_metrics_listen: \":80\"\n", "haproxy_metrics_listen 127.0.0.1:80: service web listens on port 80"},
	}
	checkConfigCases(t, tests)
}

func TestMetricsListenDefault(t *testing.T) {
	for in, want := range map[string]string{
		"": "", ":9101": "127.0.0.1:9101", "9101": "127.0.0.1:9101", "0.0.0.0:9101": "0.0.0.0:9101",
		"[::1]:9101": "[::1]:9101", "localhost:9101": "localhost:9101",
	} {
		if got := metricsListenDefault(in); got != want {
			t.Errorf("metricsListenDefault(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConfigDefaultsFilled(t *testing.T) {
	cfg := Defaults()
	if err := Decode(&cfg, []byte("services:\n  web:\n    listeners:\n      - port: 80\n"), "test"); err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	svc := cfg.Services["web"]
	if got, want := svc.Listeners[0].Protocol, "http"; got != want {
		t.Errorf("protocol = %q, want %q", got, want)
	}
	if got, want := svc.MemberPort(), 80; got != want {
		t.Errorf("member port = %d, want %d (listener port)", got, want)
	}
	if got, want := svc.Balance, "roundrobin"; got != want {
		t.Errorf("balance = %q, want %q", got, want)
	}
	hc := svc.HealthCheck
	if hc.Interval.Seconds() != 30 || hc.Timeout.Seconds() != 5 || hc.HealthyThreshold != 3 || hc.UnhealthyThreshold != 5 {
		t.Errorf("health check defaults = %+v, want 30s/5s/3/5", *hc)
	}
}

// configCase is a config file and the error its validation gives ("" = none).
type configCase struct {
	name, yaml, wantErr string
}

// checkConfigCases decodes and validates every case's config, checking the error text.
func checkConfigCases(t *testing.T, tests []configCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Defaults()
			err := Decode(&cfg, []byte(tt.yaml), "test")
			if err == nil {
				cfg.SetDefaults()
				err = cfg.Validate()
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got error %v, want none", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("got no error, want one containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("got error %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestValidateChangesNothing: Validate is a pure check; defaults come only from SetDefaults.
func TestValidateChangesNothing(t *testing.T) {
	for _, yml := range []string{
		"services:\n  web:\n    listeners:\n      - port: 80\n",
		string(DefaultConfigYAML()),
		"services:\n  web:\n    listeners:\n      - port: 80\n    health_check:\n      interval: 1s\n",
	} {
		cfg := Defaults()
		if err := Decode(&cfg, []byte(yml), "test"); err != nil {
			t.Fatal(err)
		}
		before, _ := yaml.Marshal(cfg)
		_ = cfg.Validate()
		after, _ := yaml.Marshal(cfg)
		if string(before) != string(after) {
			t.Errorf("Validate changed the config:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		// And SetDefaults is idempotent.
		cfg.SetDefaults()
		once, _ := yaml.Marshal(cfg)
		cfg.SetDefaults()
		twice, _ := yaml.Marshal(cfg)
		if string(once) != string(twice) {
			t.Errorf("SetDefaults twice differs from once:\n%s\n%s", once, twice)
		}
	}
}

// TestSetDefaultsCopies: filling the defaults of a config leaves another config that shares
// its services untouched (the running config is read concurrently while a new one is made).
func TestSetDefaultsCopies(t *testing.T) {
	shared := Service{Listeners: []Listener{{Port: 80}}}
	a := Config{Services: map[string]Service{"web": shared}}
	a.SetDefaults()
	if shared.Listeners[0].Protocol != "" || shared.HealthCheck != nil {
		t.Errorf("SetDefaults wrote through to the shared service: %+v", shared)
	}
	if a.Services["web"].Listeners[0].Protocol != "http" {
		t.Errorf("protocol not filled: %+v", a.Services["web"])
	}
}

func TestMerge(t *testing.T) {
	svc := func(port int) Service { return Service{Listeners: []Listener{{Port: port}}} }
	base := Defaults()
	tests := []struct {
		name         string
		file, api    map[string]Service
		disabled     map[string][]string
		wantServices []string
		wantShadowed []string
		wantErr      string
	}{
		{"file only", map[string]Service{"web": svc(80)}, nil, nil, []string{"web"}, nil, ""},
		{"both", map[string]Service{"web": svc(80)}, map[string]Service{"api": svc(81)}, nil, []string{"api", "web"}, nil, ""},
		{"file wins", map[string]Service{"web": svc(80)}, map[string]Service{"web": svc(81)}, nil, []string{"web"}, []string{"web"}, ""},
		{"listener taken", map[string]Service{"web": svc(80)}, map[string]Service{"api": svc(80)}, nil, nil, nil, "already used by service"},
		{"disabled zones kept", nil, map[string]Service{"api": svc(81)}, map[string][]string{"api": {"a"}}, []string{"api"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, shadowed, err := Merge(&base, tt.file, tt.api, tt.disabled)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if names := slices.Sorted(maps.Keys(got.Services)); !slices.Equal(names, tt.wantServices) {
				t.Errorf("services = %v, want %v", names, tt.wantServices)
			}
			if !slices.Equal(shadowed, tt.wantShadowed) {
				t.Errorf("shadowed = %v, want %v", shadowed, tt.wantShadowed)
			}
			if got.Services[tt.wantServices[0]].HealthCheck == nil {
				t.Error("defaults not filled")
			}
			if !reflect.DeepEqual(got.DisabledZones, orEmpty(tt.disabled)) {
				t.Errorf("disabled zones = %v, want %v", got.DisabledZones, tt.disabled)
			}
			if base.Services != nil {
				t.Error("Merge changed base")
			}
		})
	}
}

func orEmpty(m map[string][]string) map[string][]string {
	if m == nil {
		return map[string][]string{}
	}
	return m
}
