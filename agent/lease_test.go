package agent_test

import (
	"bytes"
	"clb/internal/testutil"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Lease tests: real clbd (managed), real haproxy, real backends, the real clb_register.
// Leases are short (2s) so that the tests are; clbd allows them with lease_min_ttl.

const (
	testTTL           = 2 * time.Second
	testCheckInterval = 250 * time.Millisecond
	// leaseSlack is what the lease tests allow on top of TTL + one check interval: the drain
	// and apply, and the test's own polling through haproxy, on a busy 2-core CI machine. It
	// is far below a second TTL, so "kept forever" and "expired twice as late" still fail.
	leaseSlack = 1500 * time.Millisecond
)

type leaseScenario struct {
	t      *testing.T
	dir    string
	front  string
	ports  map[string]int
	pwFile string
	c      *clbd
}

func newLeaseScenario(t *testing.T) *leaseScenario {
	requireHaproxyBin(t)
	s := &leaseScenario{t: t, dir: shortDir(t), ports: map[string]int{}}
	front := freePort(t)
	s.front = fmt.Sprintf("http://127.0.0.1:%d/", front)
	for i, name := range []string{"b1", "b2"} {
		s.ports[name] = freePort(t)
		backend(t, name, fmt.Sprintf("127.0.0.%d:%d", i+1, s.ports[name]))
	}
	cfg := filepath.Join(s.dir, "clbd.yaml")
	writeFile(t, cfg, fmt.Sprintf("lease_min_ttl: 1s\nlease_check_interval: %s\n%s", testCheckInterval, webConfig(front, s.ports["b1"], "")), 0o644)
	s.pwFile = filepath.Join(s.dir, "password")
	writeFile(t, s.pwFile, "correct horse battery staple\n", 0o600)
	s.c = startClbd(t, s.dir, "--config", cfg, "--state-dir", s.dir, "--password-file", s.pwFile, "--managed")
	return s
}

// args are clb_register's arguments for backend name.
func (s *leaseScenario) args(name string, extra ...string) []string {
	return append([]string{"--server", "http://" + s.c.api, "--password-file", s.pwFile, "--service", "web",
		"--name", name, "--address", "127.0.0." + name[1:], "--port", itoa(s.ports[name])}, extra...)
}

func (s *leaseScenario) reloads() float64 {
	return s.c.status()["reloads"].(float64)
}

// TestLeaseExpires: a member that does not renew is drained and removed within its TTL plus
// one check interval; a permanent member stays.
func TestLeaseExpires(t *testing.T) {
	t.Parallel()
	s := newLeaseScenario(t)
	mustRun(t, "clb_register", s.args("b1")...)
	mustRun(t, "clb_register", s.args("b2", "--ttl", testTTL.String())...)
	registered := time.Now()
	wantServed(t, s.front, 10, "b1", "b2")

	waitFor(t, testTTL+testCheckInterval+2*time.Second, "b2's lease to expire", func() bool {
		return spread(t, s.front, 4)["b2"] == 0
	})
	gone := time.Since(registered)
	if gone < testTTL-100*time.Millisecond {
		t.Errorf("b2 removed %s after registering with a %s lease: too early", gone, testTTL)
	}
	if limit := testTTL + testCheckInterval + leaseSlack; gone > limit {
		t.Errorf("b2 removed %s after registering, want within TTL + one check interval (+ the apply): %s", gone, limit)
	}
	t.Logf("a %s lease lapsed and the member left haproxy after %s", testTTL, gone.Round(time.Millisecond))
	wantServed(t, s.front, 10, "b1")
	// haproxy drops the member as soon as its removal is staged; the log line, the counter and
	// state.json follow once the store has synced it (moments later).
	waitFor(t, 5*time.Second, "the expiry's log line", func() bool {
		return strings.Contains(s.c.logs.String(), "lease expired: member unregistered")
	})
	want := `clb_registrations_total{op="expire",service="web"} 1`
	waitFor(t, 5*time.Second, "/metrics to count the expiry", func() bool {
		resp, err := noKeepAlive.Get("http://" + s.c.api + "/metrics")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(body), want)
	})
	if state := string(readFile(t, filepath.Join(s.dir, "state.json"))); strings.Contains(state, `"b2"`) {
		t.Errorf("state.json still holds b2:\n%s", state)
	}
	// Unregistering the expired member answers "not registered" (exit 1), like any unknown one.
	if code, out := run(t, "clb_unregister", s.args("b2")...); code != 1 || !strings.Contains(out, "not registered") {
		t.Errorf("clb_unregister of an expired member: exit %d, %q; want 1, not registered", code, out)
	}
	// A ttl below clbd's minimum is refused with the range.
	if code, out := run(t, "clb_register", s.args("b2", "--ttl", "500ms")...); code != 64 {
		t.Errorf("clb_register --ttl 500ms: exit %d, want 64: %s", code, out)
	}
}

// keepaliveProc is a running `clb_register --keepalive` with its own $NOTIFY_SOCKET.
type keepaliveProc struct {
	cmd    *exec.Cmd
	out    *testutil.SyncBuffer
	notify *net.UnixConn
	exited chan struct{}
	err    error
}

func startKeepalive(t *testing.T, s *leaseScenario, name string) *keepaliveProc {
	t.Helper()
	sock := filepath.Join(shortDir(t), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	k := &keepaliveProc{out: &testutil.SyncBuffer{}, notify: conn, exited: make(chan struct{})}
	k.cmd = exec.Command(binary(t, "clb_register"), s.args(name, "--ttl", testTTL.String(), "--keepalive")...)
	k.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "CLB_PASSWORD=")
	k.cmd.Stdout, k.cmd.Stderr = k.out, k.out
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { k.err = k.cmd.Wait(); close(k.exited) }()
	t.Cleanup(func() {
		k.cmd.Process.Kill()
		<-k.exited
		if t.Failed() {
			t.Logf("clb_register --keepalive output:\n%s", k.out.String())
		}
	})
	return k
}

// waitNotify waits (bounded) for a datagram starting with prefix.
func (k *keepaliveProc) waitNotify(t *testing.T, prefix string) {
	t.Helper()
	buf := make([]byte, 4096)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		k.notify.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := k.notify.Read(buf)
		if err == nil && bytes.HasPrefix(buf[:n], []byte(prefix)) {
			return
		}
		select {
		case <-k.exited:
			t.Fatalf("clb_register --keepalive exited (%v) before notifying %q:\n%s", k.err, prefix, k.out.String())
		default:
		}
	}
	t.Fatalf("no %q from clb_register --keepalive within 20s:\n%s", prefix, k.out.String())
}

// TestKeepaliveAcrossRestart: a keepalive member stays through renewals (which never reload
// haproxy) and through a stop and start of clbd, without being duplicated; a lease that nobody
// renews is given one TTL after the restart, then removed; SIGTERM unregisters and exits 0.
func TestKeepaliveAcrossRestart(t *testing.T) {
	t.Parallel()
	s := newLeaseScenario(t)
	k := startKeepalive(t, s, "b1")
	k.waitNotify(t, "READY=1")
	wantServed(t, s.front, 10, "b1")

	reloads := s.reloads()
	time.Sleep(testTTL + 2*testCheckInterval) // longer than the lease: renewals must carry it
	wantServed(t, s.front, 10, "b1")
	if got := s.reloads(); got != reloads {
		t.Errorf("reloads during renewals = %v, want %v: a renewal must not reload haproxy", got-reloads, 0)
	}

	// b2 takes a lease and dies with clbd: nobody renews it.
	mustRun(t, "clb_register", s.args("b2", "--ttl", testTTL.String())...)
	wantServed(t, s.front, 10, "b1", "b2")
	s.c.stop(syscall.SIGTERM)
	time.Sleep(testTTL + testCheckInterval) // the outage outlasts b2's lease (b1 keeps retrying)
	s.c.start()
	restarted := time.Now()
	// Grace: b2's lease runs one TTL from the restart; b1 renewed in the meantime.
	wantServed(t, s.front, 10, "b1", "b2")
	waitFor(t, testTTL+testCheckInterval+2*time.Second, "b2's lease to expire after the restart", func() bool {
		return spread(t, s.front, 4)["b2"] == 0
	})
	if gone := time.Since(restarted); gone > testTTL+testCheckInterval+leaseSlack {
		t.Errorf("the dead member b2 left %s after the restart, want within one TTL + one check interval", gone)
	}
	time.Sleep(testCheckInterval)
	wantServed(t, s.front, 10, "b1")
	if state := string(readFile(t, filepath.Join(s.dir, "state.json"))); strings.Count(state, `"name"`) != 1 || !strings.Contains(state, `"b1": "2s"`) {
		t.Errorf("state.json after the restart, want b1 once, leased for 2s:\n%s", state)
	}

	k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("clb_register --keepalive did not exit within 20s of SIGTERM")
	}
	if k.err != nil {
		t.Errorf("clb_register --keepalive after SIGTERM: %v, want exit 0:\n%s", k.err, k.out.String())
	}
	if !strings.Contains(k.out.String(), "unregistered b1 (127.0.0.1:") {
		t.Errorf("clb_register --keepalive did not report the unregistration:\n%s", k.out.String())
	}
	// Exit 0 means applied: haproxy no longer routes to b1.
	if got := spread(t, s.front, 4); got["HTTP 503"] != 4 {
		t.Errorf("after SIGTERM, requests reached %v, want 503s (no member left)", got)
	}
}
