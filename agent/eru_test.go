package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"clb/agent/config"
	"clb/internal/gateway"
	"clb/internal/testutil"
)

// eruEnv is a clbd (in process, managed haproxy) with one http gateway and the Eru adapter,
// and real HTTP members on 127.0.0.1 that answer "NAME PATH?QUERY".
type eruEnv struct {
	t       *testing.T
	a       *Agent
	eru     string // host:port of the adapter
	gw      int    // the gateway's port
	members map[string]string
	logs    *testutil.SyncBuffer
}

var (
	// eruAPIClient waits for applies (a reload for a new upstream's service).
	eruAPIClient = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	// eruProxied opens a new connection per request through haproxy.
	eruProxied = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
)

func startEru(t *testing.T) *eruEnv {
	t.Helper()
	requireHaproxy(t)
	dir := testutil.ShortDir(t)
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte(testPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &eruEnv{t: t, gw: testutil.FreePort(t), members: map[string]string{}, logs: &testutil.SyncBuffer{}}
	cfg := config.Defaults()
	e.eru = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg.Listen, cfg.StateDir, cfg.Templates, cfg.EruListen = "127.0.0.1:0", dir, filepath.Join(dir, "templates"), e.eru
	cfg.Managed, cfg.Output, cfg.PasswordFile = true, filepath.Join(dir, config.ManagedCfgName), pw
	cfg.RequestTimeout = 15 * time.Second
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.a, _ = startAgent(t, &cfg, Options{Logger: log})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("clbd log:\n%s", e.logs.String())
		}
	})
	// The gateway is defined through the API: a config-file gateway's domains are the
	// file's, and the adapter may not change them.
	if _, err := e.a.PutGateway("web", gateway.Gateway{Bind: fmt.Sprintf("127.0.0.1:%d", e.gw)}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-e.a.rec.Trigger():
		if err != nil {
			t.Fatalf("apply the gateway: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("gateway not applied within 20s")
	}
	for _, n := range []string{"a", "b", "c", "d"} {
		e.members[n] = e.member(n)
	}
	return e
}

// member starts an HTTP server on 127.0.0.1 answering "NAME PATH" (and "?QUERY").
func (e *eruEnv) member(name string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name+" "+r.URL.RequestURI())
	})}
	go srv.Serve(ln)
	e.t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// call is one request to the adapter as Eru's clients make it (plain JSON, no signature).
func (e *eruEnv) call(method, path, body string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, "http://"+e.eru+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := eruAPIClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// want calls and checks the status and that the JSON answer equals want (JSON text).
func (e *eruEnv) want(step, method, path, body string, status int, want string) {
	e.t.Helper()
	code, got := e.call(method, path, body)
	if code != status || !jsonEqual(got, want) {
		e.t.Fatalf("%s: %s %s = %d %s\nwant %d %s", step, method, path, code, got, status, want)
	}
}

// refused calls and checks a refusal: its status and a sentence in {"msg"}.
func (e *eruEnv) refused(step, method, path, body string, status int, msg string) {
	e.t.Helper()
	code, got := e.call(method, path, body)
	var out struct{ Msg string }
	json.Unmarshal([]byte(got), &out)
	if code != status || !strings.Contains(out.Msg, msg) {
		e.t.Errorf("%s: %s %s = %d %s, want %d with msg %q", step, method, path, code, got, status, msg)
	}
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// get sends one request through the gateway with Host and User-Agent and returns "status
// body".
func (e *eruEnv) get(host, ua, path string) string {
	e.t.Helper()
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", e.gw, path), nil)
	req.Host = host
	req.Header.Set("User-Agent", ua)
	resp, err := eruProxied.Do(req)
	if err != nil {
		return "ERR " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprint(resp.StatusCode)
	}
	return "200 " + string(b)
}

// route checks where requests go: each case is host, user agent, path and the answer
// ("200 MEMBER PATH" or a status), with the member's letter for MEMBER.
func (e *eruEnv) route(step string, cases ...[4]string) {
	e.t.Helper()
	for _, c := range cases {
		if got := e.get(c[0], c[1], c[2]); !answerIs(got, c[3]) {
			e.t.Errorf("%s: Host %s UA %q %s → %q, want %q", step, c[0], c[1], c[2], got, c[3])
		}
	}
}

// answerIs matches an answer against "200 MEMBER PATH" where MEMBER may be "a|b" (either).
func answerIs(got, want string) bool {
	g, w := strings.Fields(got), strings.Fields(want)
	if len(g) != len(w) {
		return false
	}
	for i := range g {
		if i == 1 && len(w) == 3 {
			if !slices.Contains(strings.Split(w[1], "|"), g[1]) {
				return false
			}
		} else if g[i] != w[i] {
			return false
		}
	}
	return true
}

// routeAny checks that requests reach the members named (each at least once) and no other.
func (e *eruEnv) routeAny(step, host, path string, n int, names ...string) {
	e.t.Helper()
	got := map[string]int{}
	for range n {
		r := e.get(host, "curl/8", path)
		if f := strings.Fields(r); len(f) == 3 && f[0] == "200" {
			r = f[1]
		}
		got[r]++
	}
	for _, n := range names {
		if got[n] == 0 {
			e.t.Errorf("%s: %s%s: no request reached %s (%v)", step, host, path, n, got)
		}
		delete(got, n)
	}
	if len(got) > 0 {
		e.t.Errorf("%s: %s%s: answers other than %v: %v", step, host, path, names, got)
	}
}

func (e *eruEnv) reloads() (uint64, int) {
	s := e.a.status()
	return s.Reloads, s.HaproxyPID
}

// TestEruReadme replays the Eru README's transcripts against a real clbd and haproxy:
// upstreams PUT and GET in Eru's shapes, the README's domains PUT and GET back exactly,
// traffic through haproxy following the rules (with clb's fixed semantics: the regex path
// rule fails when it does not match, a rewrite keeps its leading /, the host is matched
// without port and case), a rule change applied without a reload, DELETE of domains and
// upstreams, and dump.
func TestEruReadme(t *testing.T) {
	e := startEru(t)
	m := e.members

	// Upstreams: up1 with two servers, up2 with one weighted server (the README's etcd
	// example). Neither is a service yet: both are created.
	e.want("PUT upstream", "PUT", "/__erulb__/upstream", fmt.Sprintf(`{"up1": {"%s": "", "%s": ""}, "up2": {"%s": "max_fails=2 weight=10"}}`, m["a"], m["b"], m["c"]),
		200, `{"msg": "OK"}`)
	e.want("GET upstream", "GET", "/__erulb__/upstream", "", 200, fmt.Sprintf(`{
		"up1": [{"addr": "%[1]s", "name": "%[1]s", "weight": 1, "max_fails": 2, "fail_timeout": 10},
		        {"addr": "%[2]s", "name": "%[2]s", "weight": 1, "max_fails": 2, "fail_timeout": 10}],
		"up2": [{"addr": "%[3]s", "name": "%[3]s", "weight": 10, "max_fails": 2, "fail_timeout": 10}]}`, sorted2(m["a"], m["b"])[0], sorted2(m["a"], m["b"])[1], m["c"]))

	// Domains: the README's rule set for 127.0.0.1 (ua httpie → path regex /blog/ → up1,
	// else up2), with rewrite, and its localhost one (prefix /api/).
	readme := eruReadmeRules
	e.want("PUT domain", "PUT", "/__erulb__/domain", readme, 200, `{"msg": "OK"}`)
	e.want("GET domain", "GET", "/__erulb__/domain", "", 200, readme)
	reloads, pid := e.reloads()

	e.route("README rules",
		[4]string{"127.0.0.1", "HTTPie/3.2.1", "/blog/post/1?x=1", "200 a|b /post/1?x=1"},
		[4]string{"127.0.0.1:8080", "HTTPie/3.2.1", "/blog/post/1", "200 a|b /post/1"},
		[4]string{"127.0.0.1", "curl/8", "/blog/post", "200 c /blog/post"},
		[4]string{"127.0.0.1", "HTTPie/3.2.1", "/other", "200 c /other"}, // Eru: up1 (its regex rule always succeeds)
		[4]string{"LOCALHOST", "x", "/api/v1", "200 a|b /api/v1"},
		[4]string{"localhost", "x", "/apix", "200 c /apix"}, // a plain string prefix, as in Eru
		[4]string{"unknown.example", "x", "/", "404"},
	)
	e.routeAny("up1 has two servers", "localhost", "/api/", 20, "a", "b")

	// A rule change: localhost's /api/ goes to up2 now, no reload.
	e.want("PUT changed domain", "PUT", "/__erulb__/domain", `{"localhost": {"init": "r1", "rules": {
		"r1": {"type": "path", "args": {"pattern": "/api/", "succ": "r2", "fail": "r3"}},
		"r2": {"type": "backend", "args": {"servername": "up2"}},
		"r3": {"type": "backend", "args": {"servername": "up1"}}}}}`, 200, `{"msg": "OK"}`)
	e.route("changed rules", [4]string{"localhost", "x", "/api/v1", "200 c /api/v1"})
	if r, p := e.reloads(); r != reloads || p != pid {
		t.Errorf("a rule change reloaded haproxy: reloads %d → %d, pid %d → %d", reloads, r, pid, p)
	}
	// The other domain stayed (PUT merges).
	e.route("other domain kept", [4]string{"127.0.0.1", "HTTPie/1", "/blog/x", "200 a|b /x"})

	// Upstream replaced whole: up1 keeps b only (a is drained), through the runtime API.
	e.want("PUT upstream, one server", "PUT", "/__erulb__/upstream", fmt.Sprintf(`{"up1": {"%s": "weight=5"}}`, m["b"]), 200, `{"msg": "OK"}`)
	e.routeAny("up1 replaced", "localhost", "/x", 10, "b")
	e.routeAny("up2 untouched", "localhost", "/api/", 10, "c")
	if r, _ := e.reloads(); r != reloads {
		t.Errorf("a change of servers reloaded haproxy: reloads %d → %d", reloads, r)
	}
	// down: the server stays, out of rotation.
	e.want("PUT upstream, down", "PUT", "/__erulb__/upstream", fmt.Sprintf(`{"up2": {"%s": "down", "%s": ""}}`, m["c"], m["d"]), 200, `{"msg": "OK"}`)
	e.routeAny("down server out", "localhost", "/api/", 10, "d")
	_, body := e.call("GET", "/__erulb__/upstream", "")
	if !strings.Contains(body, `"addr":"`+m["c"]+`","name":"`+m["c"]+`","weight":0,"max_fails":2,"fail_timeout":10,"down":true`) {
		t.Errorf("GET upstream: %s, want %s down with weight 0", body, m["c"])
	}

	e.want("dump", "PUT", "/__erulb__/dump", "", 200, `{"msg": "OK"}`)

	// Refusals through the core: an upstream a domain routes to, a bad rule set (nothing
	// changes), a domain defined natively.
	e.refused("DELETE routed upstream", "DELETE", "/__erulb__/upstream", `["up1"]`, 409, "up1: domain 127.0.0.1 of gateway web still routes to it")
	e.refused("bad regex", "PUT", "/__erulb__/domain", `{"localhost": {"init": "r1", "rules": {
		"r1": {"type": "path", "args": {"pattern": "(a+)+$", "regex": true, "succ": "r2"}},
		"r2": {"type": "backend", "args": {"servername": "up1"}}}}}`, 400, "localhost")
	e.refused("dangling succ", "PUT", "/__erulb__/domain", `{"localhost": {"init": "r1", "rules": {
		"r1": {"type": "ua", "args": {"pattern": "x", "succ": "r9"}}}}}`, 400, "r9")
	e.route("still the changed rules", [4]string{"localhost", "x", "/api/v1", "200 d /api/v1"})

	// DELETE domains (absent ones ignored), then upstreams.
	e.want("DELETE domain", "DELETE", "/__erulb__/domain", `["localhost", "127.0.0.1", "absent.example"]`, 200, `{"msg": "OK"}`)
	e.want("GET domain, none", "GET", "/__erulb__/domain", "", 200, `{}`)
	e.route("no domain", [4]string{"localhost", "x", "/api/v1", "404"}, [4]string{"127.0.0.1", "HTTPie/1", "/blog/x", "404"})
	e.want("DELETE upstream", "DELETE", "/__erulb__/upstream", `["up1", "up2", "nope"]`, 200, `{"up1": true, "up2": true, "nope": 404}`)
	e.want("GET upstream, none", "GET", "/__erulb__/upstream", "", 200, `{}`)
}

// TestEruCitadel runs citadel's sequence: set_domain_rules (a one-rule set naming an
// upstream that does not exist yet) → dump_to_etcd → set_upstream with the full server set,
// then the next full set after a container change.
func TestEruCitadel(t *testing.T) {
	e := startEru(t)
	m := e.members
	const up = "app___web___pod"
	e.want("set_domain_rules", "PUT", "/__erulb__/domain", `{"app.example.com": {"init": "backend", "rules": {"backend": {"type": "backend", "args": {"servername": "`+up+`"}}}}}`,
		200, `{"msg": "OK"}`)
	e.want("dump_to_etcd", "PUT", "/__erulb__/dump", "", 200, `{"msg": "OK"}`)
	e.route("no server yet", [4]string{"app.example.com", "x", "/", "503"})
	e.want("set_upstream", "PUT", "/__erulb__/upstream", fmt.Sprintf(`{"%s": {"%s": "", "%s": ""}}`, up, m["a"], m["b"]), 200, `{"msg": "OK"}`)
	e.routeAny("served", "app.example.com", "/", 20, "a", "b")
	e.want("set_upstream after a container change", "PUT", "/__erulb__/upstream", fmt.Sprintf(`{"%s": {"%s": "", "%s": ""}}`, up, m["b"], m["c"]), 200, `{"msg": "OK"}`)
	e.routeAny("new set", "app.example.com", "/", 20, "b", "c")
	_, got := e.call("GET", "/__erulb__/domain", "")
	if !jsonEqual(got, `{"app.example.com": {"init": "backend", "rules": {"backend": {"type": "backend", "args": {"servername": "`+up+`"}}}}}`) {
		t.Errorf("GET domain: %s", got)
	}
}

func sorted2(a, b string) [2]string {
	if b < a {
		return [2]string{b, a}
	}
	return [2]string{a, b}
}

// eruReadmeRules are the README's two domains (the research note's eru_readme.json): its
// 127.0.0.1 rule set with rewrite on, and its localhost one.
const eruReadmeRules = `{
  "127.0.0.1": {
    "init": "r1",
    "rules": {
      "r1": {"type": "ua", "args": {"fail": "r3", "pattern": "httpie(\\S+)$", "succ": "r4"}},
      "r2": {"type": "backend", "args": {"servername": "up1"}},
      "r3": {"type": "backend", "args": {"servername": "up2"}},
      "r4": {"type": "path", "args": {"regex": true, "pattern": "^\\/blog\\/(\\S+)$", "succ": "r2", "fail": "r3", "rewrite": true}}
    }
  },
  "localhost": {
    "init": "r1",
    "rules": {
      "r1": {"type": "path", "args": {"pattern": "/api/", "succ": "r2", "fail": "r3"}},
      "r2": {"type": "backend", "args": {"servername": "up1"}},
      "r3": {"type": "backend", "args": {"servername": "up2"}}
    }
  }
}`

// TestEruGatewayByPort binds a domain key host:port to the gateway on that port: served
// there and not on the other gateway, and GET gives the key back with its port (the plain
// host of the default gateway without).
func TestEruGatewayByPort(t *testing.T) {
	e := startEru(t)
	alt := testutil.FreePort(t)
	if _, err := e.a.PutGateway("alt", gateway.Gateway{Bind: fmt.Sprintf("127.0.0.1:%d", alt)}); err != nil {
		t.Fatal(err)
	}
	if err := <-e.a.rec.Trigger(); err != nil {
		t.Fatal(err)
	}
	// Two gateways and no eru_gateway: a plain host is ambiguous.
	one := `{"init": "b", "rules": {"b": {"type": "backend", "args": {"servername": "up"}}}}`
	e.refused("plain host, two gateways", "PUT", "/__erulb__/domain", `{"x.example": `+one+`}`, 400, "2 gateways and no eru_gateway")
	e.want("PUT upstream", "PUT", "/__erulb__/upstream", fmt.Sprintf(`{"up": {"%s": ""}}`, e.members["a"]), 200, `{"msg": "OK"}`)
	e.want("PUT host:port", "PUT", "/__erulb__/domain", fmt.Sprintf(`{"X.Example:%d": %s}`, alt, one), 200, `{"msg": "OK"}`)
	e.want("GET", "GET", "/__erulb__/domain", "", 200, fmt.Sprintf(`{"x.example:%d": %s}`, alt, one))
	get := func(port int) string {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/p", port), nil)
		req.Host = "x.example"
		resp, err := eruProxied.Do(req)
		if err != nil {
			return "ERR"
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	if got := get(alt); got != "200 a /p" {
		t.Errorf("through gateway alt: %q, want 200 a /p", got)
	}
	if got := get(e.gw); !strings.HasPrefix(got, "404") {
		t.Errorf("through gateway web: %q, want 404 (the domain is alt's)", got)
	}
	e.want("DELETE by host:port", "DELETE", "/__erulb__/domain", fmt.Sprintf(`["x.example:%d"]`, alt), 200, `{"msg": "OK"}`)
	if got := get(alt); !strings.HasPrefix(got, "404") {
		t.Errorf("after DELETE: %q, want 404", got)
	}
}
