package agent

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	base := "services:\n  web:\n    listeners:\n      - port: 80\n"
	tests := []configCase{
		{"minimal", base, ""},
		{"default config", string(defaultConfigYAML), ""},
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
	}
	checkConfigCases(t, tests)
}

func TestConfigDefaultsFilled(t *testing.T) {
	cfg := Defaults()
	if err := Decode(&cfg, []byte("services:\n  web:\n    listeners:\n      - port: 80\n"), "test"); err != nil {
		t.Fatal(err)
	}
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
