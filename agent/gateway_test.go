package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"clb/agent/config"
	"clb/agent/reconcile"
	"clb/internal/auth"
	"clb/internal/haproxy"
	"clb/internal/testutil"
)

var (
	gwAPIClient = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	gwClient    = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
)

func gwWriteFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// gwLoad sends GET / with Host lb.test on keep-alive connections from workers goroutines,
// each request once (no retries: a closed connection is a failure), until stop; it counts
// answers by body and failures by cause.
func gwLoad(addr string, workers int) (stop func() (ok int, bodies map[string]int, failures map[string]int)) {
	var mu sync.Mutex
	bodies, failures := map[string]int{}, map[string]int{}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c net.Conn
			var br *bufio.Reader
			for n := 0; n < 1_000_000; n++ {
				select {
				case <-quit:
					if c != nil {
						c.Close()
					}
					return
				default:
				}
				if c == nil {
					var err error
					if c, err = net.DialTimeout("tcp", addr, 3*time.Second); err != nil {
						mu.Lock()
						failures["dial: "+err.Error()]++
						mu.Unlock()
						continue
					}
					br = bufio.NewReader(c)
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				key := ""
				if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n"); err != nil {
					key = "write: " + err.Error()
				} else if resp, err := http.ReadResponse(br, nil); err != nil {
					key = "read: " + err.Error()
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						key = "status " + strconv.Itoa(resp.StatusCode)
					} else {
						mu.Lock()
						bodies[string(b)]++
						mu.Unlock()
					}
					if resp.Close {
						c.Close()
						c = nil
					}
				}
				if key != "" {
					mu.Lock()
					failures[key]++
					mu.Unlock()
					c.Close()
					c = nil
				}
			}
		}()
	}
	return func() (int, map[string]int, map[string]int) {
		close(quit)
		wg.Wait()
		ok := 0
		for _, n := range bodies {
			ok += n
		}
		return ok, bodies, failures
	}
}

// Gateways end to end: a real managed haproxy, real HTTP backends on 127.0.0.1, the API
// signed with an admin key and a key scoped to domains.

const (
	gwAdminSecret  = "gateway-admin-secret-0123456789"
	gwDomainSecret = "gateway-domain-secret-012345678"
)

// gwFix is a running clbd with services web (its own http listener), blog and api (protocol
// gateway: reached only through gateways), one member each answering "NAME PATH", and a
// config-file gateway "fixed".
type gwFix struct {
	t      testing.TB
	a      *Agent
	base   string
	cfg    config.Config
	opts   Options
	gwPort int
	sock   string
	// done receives the running agent's Run result.
	done chan error
}

// echo is a real HTTP backend on addr that answers "NAME PATH?QUERY".
func echo(t testing.TB, name, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name+" "+r.URL.RequestURI())
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func startGateways(t testing.TB, opts Options) *gwFix {
	t.Helper()
	requireHaproxy(t)
	dir := testutil.ShortDir(t)
	keys := filepath.Join(dir, "keys.yaml")
	gwWriteFile(t, keys, "keys:\n  - {id: ops, secret: "+gwAdminSecret+", scope: admin}\n"+
		"  - {id: dom, secret: "+gwDomainSecret+", scope: register, domains: [\"*.example.com\"]}\n", 0o600)
	webFront, fixedPort := testutil.FreePort(t), testutil.FreePort(t)
	members := map[string]int{"web": testutil.FreePort(t), "blog": testutil.FreePort(t), "api": testutil.FreePort(t)}
	for name, port := range members {
		echo(t, name, "127.0.0.1:"+strconv.Itoa(port))
	}
	yml := fmt.Sprintf(`services:
  web:
    listeners: [{port: %d, address: 127.0.0.1, member_port: %d}]
  blog:
    listeners: [{port: 9001, protocol: gateway, member_port: %d}]
  api:
    listeners: [{port: 9002, protocol: gateway, member_port: %d}]
gateways:
  fixed:
    bind: 127.0.0.1:%d
    domains:
      fixed.example.com:
        routes: [{name: all, service: web}]
`, webFront, members["web"], members["blog"], members["api"], fixedPort)
	cfg := config.Defaults()
	if err := config.Decode(&cfg, []byte(yml), "test"); err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.StateDir, cfg.Templates, cfg.KeysFile, cfg.Managed = "127.0.0.1:0", dir, filepath.Join(dir, "templates"), keys, true
	cfg.Output = config.OutputPath(&cfg, false)
	cfg.RequestTimeout = 30 * time.Second
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	f := &gwFix{t: t, cfg: cfg, opts: opts, gwPort: testutil.FreePort(t), sock: cfg.AdminSocket()}
	f.start()
	for name, port := range members {
		f.mustCall("PUT", "/v1/services/"+name+"/members/m1", fmt.Sprintf(`{"address":"127.0.0.1","port":%d}`, port), http.StatusOK)
	}
	return f
}

// start runs an agent on the fixture's config (again, after a Restart: it adopts haproxy)
// until the test ends.
func (f *gwFix) start() {
	f.t.Helper()
	cfg, opts := f.cfg, f.opts
	ready := make(chan net.Addr, 1)
	opts.Ready = ready
	a, err := New(&cfg, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	f.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.t.Errorf("Run: %v", err)
		}
		done <- nil // for a later reader
	})
	select {
	case addr := <-ready:
		f.a, f.base, f.done = a, "http://"+addr.String(), done
	case err := <-done:
		f.t.Fatalf("Run ended early: %v", err)
	case <-time.After(20 * time.Second):
		f.t.Fatal("agent not ready within 20s")
	}
}

// restart stops the agent as a re-executed clbd does (haproxy keeps running) and starts
// another on the same state dir.
func (f *gwFix) restart() {
	f.t.Helper()
	f.a.Restart()
	select {
	case err := <-f.done:
		if err != nil {
			f.t.Fatalf("Run after Restart: %v", err)
		}
		f.done <- nil // the cleanup reads it too
	case <-time.After(20 * time.Second):
		f.t.Fatal("agent did not stop within 20s of Restart")
	}
	f.start()
}

// callAs sends a signed API call with key id/secret and decodes the JSON answer.
func (f *gwFix) callAs(id, secret, method, path, body string) (int, map[string]any) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.base+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if err := auth.Sign(req, id, auth.DeriveKey([]byte(secret)), []byte(body), time.Now()); err != nil {
		f.t.Fatal(err)
	}
	resp, err := gwAPIClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		f.t.Fatalf("%s %s: answer is not JSON: %v", method, path, err)
	}
	return resp.StatusCode, out
}

func (f *gwFix) call(method, path, body string) (int, map[string]any) {
	f.t.Helper()
	return f.callAs("ops", gwAdminSecret, method, path, body)
}

func (f *gwFix) mustCall(method, path, body string, want int) map[string]any {
	f.t.Helper()
	st, out := f.call(method, path, body)
	if st != want {
		f.t.Fatalf("%s %s = %d %v, want %d", method, path, st, out, want)
	}
	return out
}

// get sends a request through a gateway port (a new connection) and returns status and body.
func (f *gwFix) get(port int, host, path string) (int, string) {
	f.t.Helper()
	req, err := http.NewRequest("GET", "http://127.0.0.1:"+strconv.Itoa(port)+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	req.Host = host
	resp, err := gwClient.Do(req)
	if err != nil {
		f.t.Fatalf("GET %s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func (f *gwFix) want(host, path, body string) {
	f.t.Helper()
	if st, got := f.get(f.gwPort, host, path); st != http.StatusOK || got != body {
		f.t.Errorf("GET %s%s = %d %q, want 200 %q", host, path, st, got, body)
	}
}

// workerPid is haproxy's worker pid (show info): a reload changes it.
func (f *gwFix) workerPid() string {
	f.t.Helper()
	out, err := haproxy.AdminCommand(context.Background(), f.sock, "show info")
	if err != nil {
		f.t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "Pid: "); ok {
			return strings.TrimSpace(v)
		}
	}
	f.t.Fatalf("show info has no Pid: %s", out)
	return ""
}

// noReload runs fn and checks that haproxy was not reloaded meanwhile (worker pid and
// reload counter unchanged) and that the last apply went through the runtime maps.
func (f *gwFix) noReload(what string, fn func()) {
	f.t.Helper()
	pid, reloads := f.workerPid(), f.a.status().Reloads
	fn()
	st := f.a.status()
	if got := f.workerPid(); got != pid || st.Reloads != reloads {
		f.t.Errorf("%s: haproxy worker %s → %s, reloads %d → %d; want no reload", what, pid, got, reloads, st.Reloads)
	}
	if st.LastApply.Path != reconcile.PathRuntimeMaps {
		f.t.Errorf("%s: last apply path %q, want %q", what, st.LastApply.Path, reconcile.PathRuntimeMaps)
	}
}

// files is the content of the definitions, haproxy.cfg and every map file.
func (f *gwFix) files() string {
	f.t.Helper()
	var b strings.Builder
	paths, _ := filepath.Glob(filepath.Join(config.MapDir(f.cfg.Output), "*.map"))
	for _, p := range append([]string{filepath.Join(f.cfg.StateDir, "definitions.yaml"), f.cfg.Output}, paths...) {
		data, _ := os.ReadFile(p)
		fmt.Fprintf(&b, "== %s\n%s", p, data)
	}
	return b.String()
}

// checkLoaded compares every map haproxy has loaded with its file.
func (f *gwFix) checkLoaded() {
	f.t.Helper()
	paths, _ := filepath.Glob(filepath.Join(config.MapDir(f.cfg.Output), "*.map"))
	if len(paths) == 0 {
		f.t.Fatal("no map files")
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.t.Fatal(err)
		}
		if err := haproxy.CheckMap(context.Background(), f.sock, p, haproxy.ParseMap(data)); err != nil {
			f.t.Errorf("loaded map differs from its file: %v", err)
		}
	}
}

func (f *gwFix) putGateway(extra string) {
	f.t.Helper()
	f.mustCall("PUT", "/v1/gateways/pub", fmt.Sprintf(`{"bind":"127.0.0.1:%d","headers":["x-canary"]%s}`, f.gwPort, extra), http.StatusOK)
}

// TestGatewayRoutesWithoutReload: a gateway defined through the API reloads once; after that,
// domains and routes change through the runtime maps only, effective for the next request,
// with haproxy's worker and the reload counter unchanged. Bad input is refused before
// anything is saved.
func TestGatewayRoutesWithoutReload(t *testing.T) {
	f := startGateways(t, Options{})
	if st, body := f.get(f.fixedPort(), "fixed.example.com", "/x"); st != 200 || body != "web /x" {
		t.Errorf("config-file gateway: GET fixed.example.com/x = %d %q, want web", st, body)
	}
	f.putGateway("")
	if st, _ := f.get(f.gwPort, "www.example.com", "/"); st != http.StatusNotFound {
		t.Errorf("gateway without domains: status %d, want 404", st)
	}

	f.noReload("new domain", func() {
		out := f.mustCall("PUT", "/v1/gateways/pub/domains/www.example.com", `{"routes":[
			{"name":"blog","match":{"path_segment_prefix":"/blog"},"service":"blog","rewrite":{"strip_prefix":"/blog"}},
			{"name":"rest","service":"web"}]}`, http.StatusOK)
		if out["applied"] != true {
			t.Errorf("PUT domain answered %v, want applied", out)
		}
		f.want("www.example.com", "/blog/a/b?q=1", "blog /a/b?q=1")
		f.want("www.example.com", "/blogx", "web /blogx")
		f.want("WWW.example.com:80", "/", "web /")
	})
	f.noReload("changed routes", func() {
		f.mustCall("PUT", "/v1/gateways/pub/domains/www.example.com", `{"routes":[
			{"name":"v2","match":{"path_regex":"^/v2/(.*)$"},"service":"api","rewrite":{"replacement":"/\\1"}},
			{"name":"canary","match":{"headers":{"x-canary":"^1$"}},"service":"blog"},
			{"name":"rest","service":"web"}]}`, http.StatusOK)
		f.want("www.example.com", "/v2/users", "api /users")
		f.want("www.example.com", "/blog/a", "web /blog/a")
	})
	// The domain key may change domains it is scoped to, and nothing else.
	f.noReload("domain key", func() {
		st, out := f.callAs("dom", gwDomainSecret, "PUT", "/v1/gateways/pub/domains/shop.example.com", `{"routes":[{"name":"all","service":"api"}]}`)
		if st != http.StatusOK {
			t.Fatalf("domain key PUT shop.example.com = %d %v", st, out)
		}
		f.want("shop.example.com", "/", "api /")
	})
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/v1/gateways/pub/domains/shop.other.test", `{"routes":[{"name":"all","service":"api"}]}`},
		{"GET", "/v1/gateways", ""},
		{"PUT", "/v1/gateways/pub", `{"bind":"127.0.0.1:1"}`},
	} {
		if st, out := f.callAs("dom", gwDomainSecret, c.method, c.path, c.body); st != http.StatusForbidden {
			t.Errorf("domain key %s %s = %d %v, want 403", c.method, c.path, st, out)
		}
	}

	// Refusals: nothing saved, haproxy untouched.
	before, pid := f.files(), f.workerPid()
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"nested repeat", "PUT", "/v1/gateways/pub/domains/bad.example.com", `{"routes":[{"name":"r","match":{"path_regex":"^/(a+)+$"},"service":"web"}]}`, 400, "bad_request"},
		{"bad regex", "PUT", "/v1/gateways/pub/domains/bad.example.com", `{"routes":[{"name":"r","match":{"path_regex":"^/(x"},"service":"web"}]}`, 400, "bad_request"},
		{"unknown field", "PUT", "/v1/gateways/pub/domains/bad.example.com", `{"routez":[]}`, 400, "bad_request"},
		{"upper-case host", "PUT", "/v1/gateways/pub/domains/Bad.example.com", `{"routes":[]}`, 400, "bad_request"},
		{"unknown service", "PUT", "/v1/gateways/pub/domains/bad.example.com", `{"routes":[{"name":"r","service":"nope"}]}`, 409, "unknown_service"},
		{"unknown gateway", "PUT", "/v1/gateways/nope/domains/bad.example.com", `{"routes":[]}`, 404, "not_found"},
		{"config-file gateway", "PUT", "/v1/gateways/fixed/domains/bad.example.com", `{"routes":[]}`, 409, "conflict"},
		{"config-file gateway itself", "DELETE", "/v1/gateways/fixed", "", 409, "conflict"},
		{"bind taken by a service", "PUT", "/v1/gateways/other", fmt.Sprintf(`{"bind":"127.0.0.1:%d"}`, f.fixedPort()), 409, "conflict"},
		{"bad bind", "PUT", "/v1/gateways/other", `{"bind":"127.0.0.1"}`, 400, "bad_request"},
		{"tcp service", "PUT", "/v1/gateways/pub/domains/bad.example.com", `{"routes":[{"name":"r","service":"web","port":1}]}`, 409, "unknown_service"},
	} {
		st, out := f.call(c.method, c.path, c.body)
		if st != c.status || out["code"] != c.code || out["error"] == "" {
			t.Errorf("%s: %s %s = %d %v, want %d %s with an error", c.name, c.method, c.path, st, out, c.status, c.code)
		}
	}
	if after := f.files(); after != before {
		t.Errorf("refused calls changed the definitions, haproxy.cfg or the maps:\n%s", after)
	}
	if got := f.workerPid(); got != pid {
		t.Errorf("refused calls reloaded haproxy (%s → %s)", pid, got)
	}

	// 2,000 routes over 10 domains: the prefix map is past the 16 KiB of one add map
	// payload, so it goes in chunks.
	var doms []string
	for d := range 10 {
		var routes []string
		for i := range 200 {
			svc := []string{"blog", "api"}[(d+i)%2]
			routes = append(routes, fmt.Sprintf(`{"name":"r%d","match":{"path_segment_prefix":"/section-%03d/page"},"service":"%s"}`, i, i, svc))
		}
		doms = append(doms, fmt.Sprintf(`"d%d.example.com":{"routes":[%s]}`, d, strings.Join(routes, ",")))
	}
	f.noReload("2,000 routes", func() {
		f.putGateway(`,"domains":{` + strings.Join(doms, ",") + `}`)
		f.want("d9.example.com", "/section-199/page/x", "blog /section-199/page/x")
		f.want("d0.example.com", "/section-000/page", "blog /section-000/page")
		f.want("d3.example.com", "/section-100/page", "api /section-100/page")
		f.want("d3.example.com", "/section-101/page", "blog /section-101/page")
	})
	if st, _ := f.get(f.gwPort, "www.example.com", "/"); st != http.StatusNotFound {
		t.Errorf("domain left out of the replaced gateway: status %d, want 404", st)
	}
	prefix := filepath.Join(config.MapDir(f.cfg.Output), "gw.pub.prefix.map")
	if fi, err := os.Stat(prefix); err != nil || fi.Size() <= 16<<10 {
		t.Errorf("prefix map %v: want more than 16 KiB", err)
	}
	f.checkLoaded()

	f.noReload("domain removed", func() {
		f.mustCall("DELETE", "/v1/gateways/pub/domains/d9.example.com", "", http.StatusOK)
		if st, _ := f.get(f.gwPort, "d9.example.com", "/section-199/page"); st != http.StatusNotFound {
			t.Errorf("removed domain: status %d, want 404", st)
		}
	})
	out := f.mustCall("GET", "/v1/gateways", "", http.StatusOK)
	gws, _ := out["gateways"].(map[string]any)
	if fixed, _ := gws["fixed"].(map[string]any); fixed["source"] != "config" {
		t.Errorf("GET /v1/gateways: fixed = %v, want source config", gws["fixed"])
	}
	if pub, _ := gws["pub"].(map[string]any); pub["source"] != "api" || len(pub["domains"].(map[string]any)) != 9 {
		t.Errorf("GET /v1/gateways: pub has source %v and %d domains, want api and 9", pub["source"], len(pub["domains"].(map[string]any)))
	}
	f.mustCall("GET", "/v1/gateways/pub/domains/d1.example.com", "", http.StatusOK)
	if n := f.metric(`clb_map_applies_total{result="ok"}`); n < 5 {
		t.Errorf("clb_map_applies_total{result=\"ok\"} = %v, want at least 5", n)
	}

	// A removed gateway reloads and frees its port.
	f.mustCall("DELETE", "/v1/gateways/pub", "", http.StatusOK)
	if _, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(f.gwPort), time.Second); err == nil {
		t.Errorf("gateway removed, its port still accepts connections")
	}
}

func (f *gwFix) fixedPort() int {
	_, port, _ := config.SplitBind(f.cfg.Gateways["fixed"].Bind)
	return port
}

// metric reads one sample of clbd's /metrics.
func (f *gwFix) metric(name string) float64 {
	f.t.Helper()
	resp, err := http.Get(f.base + "/metrics")
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return n
		}
	}
	return 0
}

// failingMaps fails ApplyMap while fail is set; with prepareOnly, it instead starts the
// version the way ApplyMap does (prepare, add), tells prepared, and stops there until the
// agent stops: a clbd killed between prepare and commit.
type failingMaps struct {
	reconcile.MapApplier
	sock        *string
	fail        *atomic.Bool
	prepareOnly *atomic.Bool
	prepared    chan string
}

func (m failingMaps) ApplyMap(ctx context.Context, path string, entries []haproxy.MapEntry) error {
	if m.prepareOnly.Load() {
		out, err := haproxy.AdminCommand(ctx, *m.sock, "prepare map "+path)
		if err != nil {
			return err
		}
		ver := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "New version created:"))
		var lines []string
		for _, e := range entries {
			lines = append(lines, e.Key+" "+e.Value)
		}
		if _, err := haproxy.AdminCommand(ctx, *m.sock, "add map @"+ver+" "+path, lines...); err != nil {
			return err
		}
		m.prepared <- path
		<-ctx.Done()
		return fmt.Errorf("killed before commit: %w", ctx.Err())
	}
	if m.fail.Load() {
		return errors.New("injected map failure")
	}
	return m.MapApplier.ApplyMap(ctx, path, entries)
}

// TestGatewayMapFailures: an ApplyMap that fails falls back to a reload (the files are
// right); a clbd stopped between prepare and commit leaves haproxy on the old routes, and
// the clbd that starts again finds the loaded maps differ from the files and applies them,
// without a reload.
func TestGatewayMapFailures(t *testing.T) {
	var fail, prepareOnly atomic.Bool
	prepared := make(chan string, 1)
	var sock string
	f := startGateways(t, Options{wrapMaps: func(m reconcile.MapApplier) reconcile.MapApplier {
		return failingMaps{MapApplier: m, sock: &sock, fail: &fail, prepareOnly: &prepareOnly, prepared: prepared}
	}})
	sock = f.sock
	f.putGateway(`,"domains":{"www.example.com":{"routes":[{"name":"all","service":"web"}]}}`)
	f.want("www.example.com", "/", "web /")

	fail.Store(true)
	st := f.a.status()
	f.mustCall("PUT", "/v1/gateways/pub/domains/www.example.com", `{"routes":[{"name":"all","service":"blog"}]}`, http.StatusOK)
	after := f.a.status()
	if after.Reloads != st.Reloads+1 || after.RuntimeFallbacks != st.RuntimeFallbacks+1 || !strings.Contains(after.LastRuntimeError, "injected map failure") {
		t.Errorf("failed ApplyMap: reloads %d → %d, fallbacks %d → %d, last error %q; want one fallback reload naming the failure",
			st.Reloads, after.Reloads, st.RuntimeFallbacks, after.RuntimeFallbacks, after.LastRuntimeError)
	}
	f.want("www.example.com", "/", "blog /")
	f.checkLoaded()
	fail.Store(false)

	// Stopped between prepare and commit.
	prepareOnly.Store(true)
	if st, out := f.call("PUT", "/v1/gateways/pub/domains/www.example.com?wait=false", `{"routes":[{"name":"all","service":"api"}]}`); st != http.StatusAccepted {
		t.Fatalf("PUT ?wait=false = %d %v", st, out)
	}
	select {
	case <-prepared:
	case <-time.After(20 * time.Second):
		t.Fatal("the map change was not prepared within 20 s")
	}
	f.want("www.example.com", "/", "blog /") // prepared, not committed: invisible
	data, err := os.ReadFile(filepath.Join(config.MapDir(f.cfg.Output), "gw.pub.domains.map"))
	if err != nil || !strings.Contains(string(data), "www.example.com") {
		t.Fatalf("domains map %q, %v", data, err)
	}
	if err := haproxy.CheckMap(context.Background(), f.sock, filepath.Join(config.MapDir(f.cfg.Output), "gw.pub.prefix.map"),
		haproxy.ParseMap(readMap(t, f, "gw.pub.prefix.map"))); err == nil {
		t.Fatalf("the uncommitted change is loaded already")
	}
	prepareOnly.Store(false)
	master := f.a.status().HaproxyPID
	f.restart() // haproxy stays up, as after kill -9 of clbd (the adopting clbd reloads it)
	if got := f.a.status().HaproxyPID; got != master {
		t.Fatalf("the restarted clbd did not adopt haproxy (master %d, now %d): two haproxy processes may share the port", master, got)
	}
	f.want("www.example.com", "/", "api /")
	f.checkLoaded()
}

func readMap(t *testing.T, f *gwFix, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(config.MapDir(f.cfg.Output), name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestGatewayRouteChangesUnderLoad: 0 failed requests across 100 route changes under load
// (4 workers on keep-alive connections, each request sent once), and no reload.
func TestGatewayRouteChangesUnderLoad(t *testing.T) {
	f := startGateways(t, Options{})
	f.putGateway(`,"domains":{"lb.test":{"routes":[{"name":"all","service":"web"}]}}`)
	pid, reloads := f.workerPid(), f.a.status().Reloads
	stop := gwLoad("127.0.0.1:"+strconv.Itoa(f.gwPort), 4)
	for i := range 100 {
		svc := []string{"web", "blog", "api"}[i%3]
		body := fmt.Sprintf(`{"routes":[{"name":"x%d","match":{"path_prefix":"/x/%d"},"service":"api"},{"name":"all","service":"%s"}]}`, i, i, svc)
		f.mustCall("PUT", "/v1/gateways/pub/domains/lb.test", body, http.StatusOK)
	}
	ok, bodies, failures := stop()
	t.Logf("%d requests answered 200, by backend %v", ok, bodies)
	if len(failures) != 0 || ok == 0 {
		t.Errorf("under 100 route changes: %d ok, failures: %v", ok, failures)
	}
	for _, name := range []string{"web /", "blog /", "api /"} {
		if bodies[name] == 0 {
			t.Errorf("no request reached %q: %v", name, bodies)
		}
	}
	if f.workerPid() != pid || f.a.status().Reloads != reloads {
		t.Errorf("route changes reloaded haproxy")
	}
}
