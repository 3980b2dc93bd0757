package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestNotify(t *testing.T) {
	dir, err := os.MkdirTemp("", "sd") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	for _, tc := range []struct {
		env      string
		wantSent bool
		wantErr  bool
	}{
		{"", false, false},
		{path, true, false},
		{"relative/path", false, true},
		{filepath.Join(dir, "missing"), false, true},
	} {
		t.Setenv("NOTIFY_SOCKET", tc.env)
		sent, err := Notify(Ready + "\nSTATUS=registered")
		if sent != tc.wantSent || (err != nil) != tc.wantErr {
			t.Errorf("NOTIFY_SOCKET=%q: Notify = %v, %v; want sent %v, error %v", tc.env, sent, err, tc.wantSent, tc.wantErr)
		}
		if !sent {
			continue
		}
		buf := make([]byte, 256)
		ln.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := ln.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(buf[:n]), "READY=1\nSTATUS=registered"; got != want {
			t.Errorf("datagram = %q, want %q", got, want)
		}
	}
}
