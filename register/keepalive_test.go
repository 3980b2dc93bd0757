package register

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"clb/internal/auth"
)

// notifySocket listens on a fresh $NOTIFY_SOCKET and returns the datagrams received so far.
func notifySocket(t *testing.T) func() []string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ka")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return func() []string {
		var got []string
		buf := make([]byte, 4096)
		for {
			ln.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			n, err := ln.Read(buf)
			if err != nil {
				return got
			}
			got = append(got, string(buf[:n]))
		}
	}
}

func keepaliveClient(fs *fakeServer, logs *bytes.Buffer) *Client {
	c := &Client{Server: fs.URL, Key: auth.DeriveKey([]byte("pw")), Timeout: 5 * time.Second, Logger: newTestLogger(logs)}
	fast(c)
	return c
}

// runKeepalive runs Keepalive until the server saw want calls, then cancels it like SIGTERM.
func runKeepalive(t *testing.T, c *Client, fs *fakeServer, req Request, want int) (Result, error, bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type out struct {
		res Result
		err error
	}
	done := make(chan out, 1)
	readied := false
	go func() {
		res, err := c.Keepalive(ctx, "web", req, func(Result) { readied = true })
		done <- out{res, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(fs.Calls()) < want && time.Now().Before(deadline) {
		select {
		case o := <-done:
			return o.res, o.err, readied
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	select {
	case o := <-done:
		return o.res, o.err, readied
	case <-time.After(10 * time.Second):
		t.Fatal("Keepalive did not return within 10s of the cancel")
	}
	return Result{}, nil, false
}

// TestKeepalive: a POST without a name, renewals as PUTs of the name clbd chose, every third
// of the TTL, READY=1 once registered, an unregister at the end.
func TestKeepalive(t *testing.T) {
	received := notifySocket(t)
	fs := newFakeServer(t, keysFor("pw"))
	var logs bytes.Buffer
	start := time.Now()
	_, err, readied := runKeepalive(t, keepaliveClient(fs, &logs), fs, Request{TTL: time.Second}, 4)
	if err != nil {
		t.Fatalf("Keepalive = %v\n%s", err, logs.String())
	}
	if !readied {
		t.Error("ready was not called")
	}
	calls := fs.Calls()
	if len(calls) < 5 {
		t.Fatalf("calls = %d, want a registration, 3 renewals and an unregistration", len(calls))
	}
	if elapsed := time.Since(start); elapsed < 900*time.Millisecond {
		t.Errorf("3 renewals of a 1s lease took %s, want about 1s (every TTL/3)", elapsed)
	}
	if c := calls[0]; c.method != "POST" || c.path != "/v1/services/web/members" || !strings.Contains(c.body, `"ttl":"1s"`) {
		t.Errorf("first call = %s %s %s, want POST .../members with ttl 1s", c.method, c.path, c.body)
	}
	name := "127.0.0.1:8080" // the fake's defaults: the source address and port 8080
	for _, c := range calls[1 : len(calls)-1] {
		var b memberBody
		json.Unmarshal([]byte(c.body), &b)
		if c.method != "PUT" || c.path != "/v1/services/web/members/"+name || b.TTL != "1s" || b.Address != "127.0.0.1" || b.Port != 8080 {
			t.Errorf("renewal = %s %s %s, want PUT of %s with its address, port and ttl", c.method, c.path, c.body, name)
		}
	}
	if c := calls[len(calls)-1]; c.method != "DELETE" || c.path != "/v1/services/web/members/"+name {
		t.Errorf("last call = %s %s, want DELETE of %s", c.method, c.path, name)
	}
	got := strings.Join(received(), "|")
	if !strings.HasPrefix(got, "READY=1\nSTATUS=registered 127.0.0.1:8080 in web") || !strings.Contains(got, "STOPPING=1") {
		t.Errorf("sd_notify datagrams = %q, want READY=1 first and STOPPING=1", got)
	}
}

// TestKeepaliveSurvivesRefusals: renewals refused (a key being rotated, say) or unanswered are
// retried; the process keeps running and renews once the server accepts again.
func TestKeepaliveSurvivesRefusals(t *testing.T) {
	fs := newFakeServer(t, keysFor("pw"),
		reply{status: 200},
		reply{status: 401, code: "unauthenticated", msg: "nope"},
		reply{status: 401, code: "unauthenticated", msg: "nope"},
		reply{status: 200})
	var logs bytes.Buffer
	_, err, _ := runKeepalive(t, keepaliveClient(fs, &logs), fs, Request{Name: "m1", TTL: time.Second}, 5)
	if err != nil {
		t.Fatalf("Keepalive = %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "lease renewal failed") || !strings.Contains(logs.String(), "lease renewed again") {
		t.Errorf("logs do not report the failed and the resumed renewals:\n%s", logs.String())
	}
	calls := fs.Calls()
	if c := calls[len(calls)-1]; c.method != "DELETE" {
		t.Errorf("last call = %s %s, want DELETE", c.method, c.path)
	}
}

// TestKeepaliveLeaseGone: an unregister that finds the member gone (its lease expired) is done.
func TestKeepaliveLeaseGone(t *testing.T) {
	fs := newFakeServer(t, keysFor("pw"), reply{status: 200}, reply{status: 404, code: "not_found", msg: "member m1 is not registered"})
	var logs bytes.Buffer
	if _, err, _ := runKeepalive(t, keepaliveClient(fs, &logs), fs, Request{Name: "m1", TTL: 3 * time.Second}, 1); err != nil {
		t.Errorf("Keepalive = %v, want nil when the member is already gone", err)
	}
}

// TestKeepaliveRegistrationRefused: a refused first registration ends Keepalive at once, with
// the error's exit code, and nothing to unregister.
func TestKeepaliveRegistrationRefused(t *testing.T) {
	fs := newFakeServer(t, keysFor("pw"), reply{status: 404, code: "not_found", msg: "unknown service"})
	var logs bytes.Buffer
	_, err, readied := runKeepalive(t, keepaliveClient(fs, &logs), fs, Request{Name: "m1", TTL: 3 * time.Second}, 100)
	if ExitCode(err) != ExitRefused || readied {
		t.Errorf("Keepalive = %v (exit %d), ready %v; want exit %d and no ready", err, ExitCode(err), readied, ExitRefused)
	}
	if n := len(fs.Calls()); n != 1 {
		t.Errorf("calls = %d, want 1", n)
	}
}

// TestCLIKeepalive: the CLI form prints the registration and the unregistration.
func TestCLIKeepalive(t *testing.T) {
	fs := newFakeServer(t, keysFor("pw"))
	t.Setenv("NOTIFY_SOCKET", "")
	app := newApp("clb_register", false, appOptions{
		lookupEnv:    func(k string) (string, bool) { return map[string]string{"CLB_PASSWORD": "pw"}[k], k == "CLB_PASSWORD" },
		tune:         fast,
		clientConfig: filepath.Join(t.TempDir(), "client.conf"),
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for len(fs.Calls()) < 2 {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	var out, errb bytes.Buffer
	code := runApp(ctx, app, []string{"clb_register", "--ttl", "1s", "--keepalive", "--name", "m1", fs.hostPort(), "web"}, &out, &errb)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := "registered m1 (127.0.0.1:8080) in web (applied); renewing the 1s lease every 333ms until SIGTERM\nunregistered m1 (127.0.0.1:8080) from web (applied)\n"
	if out.String() != want {
		t.Errorf("stdout = %q, want %q", out.String(), want)
	}
}
