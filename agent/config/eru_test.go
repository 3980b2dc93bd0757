package config

import (
	"fmt"
	"strings"
	"testing"
)

func TestValidateEruConfig(t *testing.T) {
	for _, tc := range []struct {
		listen  string
		allow   []string
		wantErr string
	}{
		{listen: "127.0.0.1:8081"},
		{listen: "[::1]:8081"},
		{listen: "localhost:8081"},
		{listen: "0.0.0.0:8081", allow: []string{"10.0.0.0/8"}},
		{listen: ":8081", wantErr: "not a loopback address, and eru_allow lists no network"},
		{listen: "10.0.0.5:8081", wantErr: "not a loopback address"},
		{listen: "127.0.0.1:8090", wantErr: "another API listens there"},
		{listen: "127.0.0.1", wantErr: "eru_listen"},
		{listen: "127.0.0.1:8081", allow: []string{"10.0.0.0/33"}, wantErr: `eru_allow "10.0.0.0/33"`},
	} {
		c := Defaults()
		c.Listen, c.EruListen, c.EruAllow = "127.0.0.1:8090", tc.listen, tc.allow
		c.SetDefaults()
		err := c.Validate()
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("eru_listen %s eru_allow %v: Validate = %v, want %q", tc.listen, tc.allow, err, tc.wantErr)
		}
	}
}

func TestEruAllowed(t *testing.T) {
	c := Config{EruAllow: []string{"192.0.2.7", "10.1.2.3/16", "::ffff:10.9.0.0/112", "fd00::/8"}}
	got := c.EruAllowed()
	want := "[192.0.2.7/32 10.1.0.0/16 10.9.0.0/16 fd00::/8]"
	if fmt.Sprint(got) != want {
		t.Errorf("EruAllowed = %v, want %s", got, want)
	}
}
