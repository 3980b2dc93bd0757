package config

import (
	"strings"
	"testing"
	"time"
)

func TestLeaseConfig(t *testing.T) {
	tests := []struct {
		name     string
		min, chk time.Duration
		wantErr  string
	}{
		{name: "defaults"},
		{name: "test minimum", min: time.Second, chk: 100 * time.Millisecond},
		{name: "min too short", min: 500 * time.Millisecond, wantErr: "lease_min_ttl 500ms: want 1s-24h0m0s"},
		{name: "check too fast", chk: 10 * time.Millisecond, wantErr: "lease_check_interval 10ms: want 100ms-1m"},
		{name: "check too slow", chk: 2 * time.Minute, wantErr: "lease_check_interval 2m0s: want 100ms-1m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{LeaseMinTTL: tt.min, LeaseCheckInterval: tt.chk}
			c.SetDefaults()
			errs := c.validateLeases()
			var got string
			if len(errs) > 0 {
				got = errs[0].Error()
			}
			if got != tt.wantErr {
				t.Fatalf("validateLeases() = %q, want %q", got, tt.wantErr)
			}
			if tt.min == 0 && c.LeaseMinTTL != DefaultLeaseMinTTL || tt.chk == 0 && c.LeaseCheckInterval != DefaultLeaseCheckInterval {
				t.Errorf("defaults not filled: %s, %s", c.LeaseMinTTL, c.LeaseCheckInterval)
			}
		})
	}
}

func TestLeaseTTL(t *testing.T) {
	c := Config{}
	c.SetDefaults()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "", want: 0},
		{in: "30s", want: 30 * time.Second},
		{in: "5s", want: 5 * time.Second},
		{in: "24h", want: 24 * time.Hour},
		{in: "4s", wantErr: "ttl 4s: want 5s-24h0m0s"},
		{in: "25h", wantErr: "ttl 25h0m0s: want 5s-24h0m0s"},
		{in: "-30s", wantErr: "want 5s-24h0m0s"},
		{in: "30", wantErr: `ttl "30": want a duration such as "30s"`},
		{in: strings.Repeat("9", 100), wantErr: `ttl "9999999999999999999999999999999999999999...": want a duration`},
	}
	for _, tt := range tests {
		got, err := c.LeaseTTL(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("LeaseTTL(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("LeaseTTL(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}
