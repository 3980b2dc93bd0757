package model

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	good := Member{Name: "web-1", Address: "10.0.0.1", Port: 8080, Weight: 100, Zone: "a"}
	tests := []struct {
		name    string
		edit    func(*Member)
		wantErr string
	}{
		{"good", func(*Member) {}, ""},
		{"ipv6", func(m *Member) { m.Address = "fd00::1" }, ""},
		{"host name", func(m *Member) { m.Address = "app-1.example.com" }, ""},
		{"weight 0", func(m *Member) { m.Weight = 0 }, ""},
		{"weight 256", func(m *Member) { m.Weight = 256 }, ""},
		{"no zone", func(m *Member) { m.Zone = "" }, ""},
		{"empty name", func(m *Member) { m.Name = "" }, "member name"},
		{"name with space", func(m *Member) { m.Name = "a b" }, "member name"},
		{"name with newline", func(m *Member) { m.Name = "a\nserver x" }, "member name"},
		{"name starting with dash", func(m *Member) { m.Name = "-a" }, "member name"},
		{"name too long", func(m *Member) { m.Name = strings.Repeat("a", 129) }, "member name"},
		{"address injection", func(m *Member) { m.Address = "1.2.3.4 backup" }, "address"},
		{"address with port", func(m *Member) { m.Address = "1.2.3.4:80" }, "address"},
		{"address unspecified", func(m *Member) { m.Address = "0.0.0.0" }, "unspecified"},
		{"address with zone", func(m *Member) { m.Address = "fe80::1%eth0" }, "zones"},
		{"address all digits", func(m *Member) { m.Address = "1234" }, "address"},
		{"address label too long", func(m *Member) { m.Address = strings.Repeat("a", 64) + ".com" }, "address"},
		{"port 0", func(m *Member) { m.Port = 0 }, "port 0"},
		{"port too big", func(m *Member) { m.Port = 65536 }, "port 65536"},
		{"weight negative", func(m *Member) { m.Weight = -1 }, "weight -1"},
		{"weight too big", func(m *Member) { m.Weight = 257 }, "weight 257"},
		{"zone upper case", func(m *Member) { m.Zone = "A" }, "zone"},
		{"zone injection", func(m *Member) { m.Zone = "a#b" }, "zone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := good
			tt.edit(&m)
			err := m.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalid)):
				t.Fatalf("got %v, want an ErrInvalid containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidateServiceName(t *testing.T) {
	for name, ok := range map[string]bool{"web": true, "api_v2": true, "a-1": true, "": false, "Web": false, "-web": false, "a.b": false, "a b": false, strings.Repeat("a", 65): false} {
		if err := ValidateServiceName(name); (err == nil) != ok {
			t.Errorf("ValidateServiceName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestDefaultName(t *testing.T) {
	tests := []struct {
		addr string
		port int
		want string
	}{
		{"10.0.0.1", 80, "10.0.0.1:80"},
		{"app.example", 8080, "app.example:8080"},
		{"fd00::1", 80, "ip6-fd00--1:80"},
		{"::ffff:10.0.0.1", 80, "10.0.0.1:80"},
	}
	for _, tt := range tests {
		got := DefaultName(tt.addr, tt.port)
		if got != tt.want {
			t.Errorf("DefaultName(%q, %d) = %q, want %q", tt.addr, tt.port, got, tt.want)
		}
		if err := ValidateMemberName(got); err != nil {
			t.Errorf("DefaultName(%q, %d) = %q is not a valid member name: %v", tt.addr, tt.port, got, err)
		}
	}
}
