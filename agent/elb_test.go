package agent_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ELB-style behaviour with a real haproxy in managed mode: weights, zones, health checks,
// drains under load, sticky sessions, https listeners, services defined through the API.

const pw = "correct horse battery staple"

func (s *scenario) put(name string, body map[string]any) {
	s.t.Helper()
	if code, out := s.c.call("PUT", "/v1/services/web/members/"+name, pw, body); code != http.StatusOK {
		s.t.Fatalf("PUT %s = %d %v", name, code, out)
	}
}

func (s *scenario) reloads() float64 {
	s.t.Helper()
	return s.c.status()["reloads"].(float64)
}

// within reports whether got is want ± tol (a fraction of want).
func within(got, want int, tol float64) bool {
	d := float64(got - want)
	return d <= tol*float64(want) && -d <= tol*float64(want)
}

func TestWeightsAndZones(t *testing.T) {
	t.Parallel()
	s := newScenario(t, true)
	// Weights 1:3 without zones.
	s.put("b2", map[string]any{"address": "127.0.0.2", "port": s.ports["b2"], "weight": 1})
	s.put("b3", map[string]any{"address": "127.0.0.3", "port": s.ports["b3"], "weight": 3})
	got := spread(t, s.front, 200)
	if !within(got["b2"], 50, 0.2) || !within(got["b3"], 150, 0.2) {
		t.Errorf("weights 1:3 over 200 requests: %v, want about b2:50 b3:150", got)
	}
	// Zones: b1 alone in zone a, b2 and b3 in zone b: each zone gets half.
	s.put("b1", map[string]any{"address": "127.0.0.1", "port": s.ports["b1"], "zone": "a"})
	s.put("b2", map[string]any{"address": "127.0.0.2", "port": s.ports["b2"], "zone": "b"})
	s.put("b3", map[string]any{"address": "127.0.0.3", "port": s.ports["b3"], "zone": "b"})
	got = spread(t, s.front, 200)
	if !within(got["b1"], 100, 0.15) || !within(got["b2"], 50, 0.2) || !within(got["b3"], 50, 0.2) {
		t.Errorf("zones a={b1} b={b2,b3} over 200 requests: %v, want about b1:100 b2:50 b3:50", got)
	}
	before := s.reloads()
	if code, out := s.admin("POST", "/v1/services/web/zones/b/disable", nil); code != http.StatusOK {
		t.Fatalf("disable zone b = %d %v", code, out)
	}
	wantServed(t, s.front, 30, "b1")
	if code, out := s.admin("POST", "/v1/services/web/zones/b/enable", nil); code != http.StatusOK {
		t.Fatalf("enable zone b = %d %v", code, out)
	}
	wantServed(t, s.front, 30, "b1", "b2", "b3")
	if after := s.reloads(); after != before {
		t.Errorf("zone disable/enable took %v reloads, want 0 (runtime API)", after-before)
	}
	// A disabled zone survives a restart of clbd.
	s.admin("POST", "/v1/services/web/zones/a/disable", nil)
	s.c.stop(syscall.SIGTERM)
	s.c.start()
	wantServed(t, s.front, 30, "b2", "b3")
}

func TestHealthCheckTakesDeadMemberOut(t *testing.T) {
	t.Parallel()
	s := newScenarioWith(t, true, `    health_check:
      interval: 5s
      timeout: 1s
      healthy_threshold: 2
      unhealthy_threshold: 2
`)
	s.register("b1")
	s.register("b2")
	wantServed(t, s.front, 20, "b1", "b2")
	health := func(name string) string {
		_, out := s.c.call("GET", "/v1/services/web", pw, nil)
		for _, m := range out["members"].([]any) {
			m := m.(map[string]any)
			if m["name"] == name {
				return m["health"].(string)
			}
		}
		return "absent"
	}
	waitFor(t, 10*time.Second, "b2 reported up", func() bool { return health("b2") == "up" })
	s.stopBackend["b2"]()
	// haproxy retries a refused connection on another member, so nothing fails meanwhile.
	stop := load(s.front)
	waitFor(t, 20*time.Second, "the health check to mark b2 down", func() bool { return health("b2") == "down" })
	if total, failed := stop(); failed != 0 {
		t.Errorf("while b2 died: %d of %d requests failed, want 0", failed, total)
	}
	wantServed(t, s.front, 20, "b1")
	s.stopBackend["b2"] = backend(t, "b2", s.addr("b2"))
	waitFor(t, 20*time.Second, "b2 to come back up", func() bool { return health("b2") == "up" })
	wantServed(t, s.front, 20, "b1", "b2")
}

func TestUnregisterUnderLoadLosesNothing(t *testing.T) {
	t.Parallel()
	s := newScenario(t, true)
	s.register("b1")
	s.register("b2")
	s.register("b3")
	stop := load(s.front)
	time.Sleep(200 * time.Millisecond)
	start := s.reloads()
	t0 := time.Now()
	mustRun(t, "clb_unregister", "--server", "http://"+s.c.api, "--password-file", s.pwFile, "--service", "web", "--name", "b2")
	t.Logf("unregister under load took %s", time.Since(t0))
	s.register("b2")
	t.Logf("re-register took %s", time.Since(t0))
	mustRun(t, "clb_unregister", "--server", "http://"+s.c.api, "--password-file", s.pwFile, "--service", "web", "--name", "b3")
	t.Logf("second unregister took %s", time.Since(t0))
	time.Sleep(200 * time.Millisecond)
	total, failed := stop()
	t.Logf("stop took %s", time.Since(t0))
	if failed != 0 || total == 0 {
		t.Errorf("unregistering under load: %d of %d requests failed, want 0 of > 0", failed, total)
	}
	if got := s.reloads(); got != start {
		t.Errorf("unregister/register took %v reloads, want 0", got-start)
	}
	wantServed(t, s.front, 20, "b1", "b2")
	resp, err := noKeepAlive.Get("http://" + s.c.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`clb_members{service="web"} 2`,
		`clb_registrations_total{op="unregister",service="web"} 2`,
		`clb_applies_total{path="runtime",result="ok"}`,
		`clb_draining_servers 0`,
		`clb_auth_failures_total{reason="unauthenticated"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestStickySessionsKeepAClient(t *testing.T) {
	t.Parallel()
	s := newScenarioWith(t, true, "    sticky: true\n")
	s.register("b1")
	s.register("b2")
	st := s.c.status()
	// Server slots take cookies: a sticky service changes at runtime, so it is not listed as
	// reload-only (it was, with dynamic servers).
	if ro, ok := st["reload_only_backends"].(map[string]any); ok && len(ro) > 0 {
		t.Errorf("status lists backends as reload-only with server slots: %v", ro)
	}
	if st["reloads"].(float64) != 0 {
		t.Errorf("registering into a sticky service took %v reloads, want 0", st["reloads"])
	}
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	seen := map[string]int{}
	for range 20 {
		resp, err := client.Get(s.front)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[string(b)]++
	}
	if len(seen) != 1 {
		t.Errorf("a client with the cookie reached %v, want one member", seen)
	}
	wantServed(t, s.front, 20, "b1", "b2") // clients without the cookie are spread
}

func TestHTTPSListener(t *testing.T) {
	t.Parallel()
	cert, err := filepath.Abs("testdata/test-cert.pem")
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	s := newScenarioWith(t, true, fmt.Sprintf(`  secure:
    listeners:
      - port: %d
        address: 127.0.0.1
        protocol: https
        certificate: %s
        member_port: 9
`, port, cert))
	if code, out := s.c.call("PUT", "/v1/services/secure/members/b3", pw, map[string]any{"address": "127.0.0.3", "port": s.ports["b3"]}); code != 200 {
		t.Fatalf("register into secure = %d %v", code, out)
	}
	pem, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "clb.test"}}}
	resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatalf("https through haproxy: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "b3" || resp.TLS == nil {
		t.Errorf("https answer = %d %q (tls %v), want 200 b3 over TLS", resp.StatusCode, b, resp.TLS != nil)
	}
}

func TestServicesThroughTheAPI(t *testing.T) {
	t.Parallel()
	s := newScenario(t, true)
	port := freePort(t)
	def := map[string]any{"listeners": []map[string]any{{"port": port, "address": "127.0.0.1", "member_port": s.ports["b2"]}}, "balance": "leastconn"}
	if code, out := s.admin("PUT", "/v1/services/api", def); code != http.StatusOK {
		t.Fatalf("PUT /v1/services/api = %d %v", code, out)
	}
	if code, out := s.c.call("PUT", "/v1/services/api/members/b2", pw, map[string]any{"address": "127.0.0.2"}); code != http.StatusOK {
		t.Fatalf("register into api = %d %v", code, out)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	wantServed(t, url, 5, "b2")
	bad := []struct {
		method, path string
		body         any
		status       int
		errHas       string
	}{
		{"PUT", "/v1/services/web", def, http.StatusConflict, "defined in the config file"},
		{"PUT", "/v1/services/other", def, http.StatusConflict, "already used by service api"},
		{"PUT", "/v1/services/bad", map[string]any{"listeners": []map[string]any{{"port": 0}}}, http.StatusBadRequest, "port 0"},
		{"PUT", "/v1/services/bad", map[string]any{"listenres": 1}, http.StatusBadRequest, "listenres"},
		{"DELETE", "/v1/services/web", nil, http.StatusConflict, "config file"},
		{"DELETE", "/v1/services/nope", nil, http.StatusNotFound, "nope"},
		{"POST", "/v1/services/web/zones/Bad%20Zone/disable", nil, http.StatusBadRequest, "zone"},
	}
	for _, b := range bad {
		code, out := s.admin(b.method, b.path, b.body)
		if msg, _ := out["error"].(string); code != b.status || !strings.Contains(msg, b.errHas) {
			t.Errorf("%s %s = %d %v, want %d with %q", b.method, b.path, code, out, b.status, b.errHas)
		}
	}
	// Definitions survive a restart.
	s.c.stop(syscall.SIGTERM)
	s.c.start()
	wantServed(t, url, 5, "b2")
	if code, out := s.admin("DELETE", "/v1/services/api", nil); code != http.StatusOK {
		t.Fatalf("DELETE /v1/services/api = %d %v", code, out)
	}
	if got := spread(t, url, 1); got["ERR"] != 1 {
		t.Errorf("after DELETE the listener still answers: %v", got)
	}
}

// TestExternalModeRuntimeSocket: in external mode with --runtime-socket, membership changes go
// through the admin socket of the externally run haproxy too: no reload command runs.
func TestExternalModeRuntimeSocket(t *testing.T) {
	t.Parallel()
	dir := shortDir(t)
	s := newScenarioWith(t, false, "", "--runtime-socket", filepath.Join(dir, "admin.sock"))
	s.register("b1")
	s.register("b2")
	wantServed(t, s.front, 20, "b1", "b2")
	mustRun(t, "clb_unregister", "--server", "http://"+s.c.api, "--password-file", s.pwFile, "--service", "web", "--name", "b1")
	wantServed(t, s.front, 10, "b2")
	if got := s.reloads(); got != 0 {
		t.Errorf("reloads = %v, want 0: the runtime socket applies membership changes", got)
	}
}

// TestDrainFinishesInFlightRequests: an unregistered member finishes the request it is
// serving, the unregister answers only after that, and other calls meanwhile do not wait for
// the drain.
func TestDrainFinishesInFlightRequests(t *testing.T) {
	t.Parallel()
	s := newScenario(t, true)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	slowPort := freePort(t)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.4:%d", slowPort))
	if err != nil {
		t.Fatal(err)
	}
	slow := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "slow")
	})}
	go slow.Serve(ln)
	t.Cleanup(func() { slow.Close() })
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)

	s.put("slow", map[string]any{"address": "127.0.0.4", "port": slowPort})
	inflight := make(chan string, 1)
	go func() {
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get(s.front)
		if err != nil {
			inflight <- "ERR " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		inflight <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the slow member")
	}
	unregistered := make(chan int, 1)
	go func() {
		code, _ := s.c.call("DELETE", "/v1/services/web/members/slow", pw, nil)
		unregistered <- code
	}()
	// Out of rotation at once: new requests go to b1 only, and registering b1 does not wait for
	// slow's drain.
	s.register("b1")
	wantServed(t, s.front, 10, "b1")
	select {
	case code := <-unregistered:
		t.Fatalf("unregister answered %d while its member still served a request", code)
	default:
	}
	unblock()
	if got := <-inflight; got != "200 slow" {
		t.Errorf("in-flight request on the drained member = %q, want 200 slow", got)
	}
	select {
	case code := <-unregistered:
		if code != http.StatusOK {
			t.Errorf("unregister = %d, want 200", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("unregister did not answer after its member's last request ended")
	}
}
