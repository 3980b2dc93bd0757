package eru

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"clb/agent/config"
	"clb/internal/gateway"
	"clb/internal/model"
	"clb/internal/store"
)

// FuzzParseServer: no server key or option string panics, and whatever is accepted is a
// valid member (so nothing it carries can reach haproxy.cfg unchecked).
func FuzzParseServer(f *testing.F) {
	for _, s := range [][2]string{{"127.0.0.1:8088", ""}, {"127.0.0.1:8089", "max_fails=2 weight=10"}, {"[fd00::1]:80", "down fail_timeout=1m30s"}, {"h:1", "weight=256\n"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, key, opts string) {
		m, err := ParseServer(key, opts)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("ParseServer(%q, %q) accepted %+v: %v", key, opts, m, err)
		}
		if strings.ContainsAny(m.Name+m.Address, " \t\r\n#;") {
			t.Fatalf("ParseServer(%q, %q) = %+v: a space, newline or comment in a name", key, opts, m)
		}
	})
}

// core is an in-memory core behind the adapter: members, definitions and domains in maps,
// applies done at once. It stands at the interfaces the adapter defines (and the API's).
type core struct {
	cfg     *config.Config
	members map[string][]model.Member
	calls   []string
	hold    bool
}

func newCore() *core {
	return &core{cfg: &config.Config{
		Gateways: map[string]gateway.Gateway{"web": {Bind: ":80"}}, Services: map[string]config.Service{},
		MaxMembers: 10, RequestTimeout: time.Second,
	}, members: map[string][]model.Member{}}
}

func (c *core) deps() Deps {
	return Deps{Config: func() *config.Config { return c.cfg }, Members: c, Applier: c, Definitions: c, Gateways: c}
}

func (c *core) Put(service string, m model.Member) (bool, error) {
	c.calls = append(c.calls, "put "+service+" "+m.Name)
	ms := slices.DeleteFunc(slices.Clone(c.members[service]), func(o model.Member) bool { return o.Name == m.Name })
	c.members[service] = append(ms, m)
	return true, nil
}
func (c *core) PutLease(service string, m model.Member, _ time.Duration, _ time.Time) (bool, time.Time, error) {
	ch, err := c.Put(service, m)
	return ch, time.Time{}, err
}
func (c *core) Delete(service, name string) (model.Member, error) {
	c.calls = append(c.calls, "delete "+service+" "+name)
	c.members[service] = slices.DeleteFunc(c.members[service], func(o model.Member) bool { return o.Name == name })
	return model.Member{Name: name}, nil
}
func (c *core) Snapshot() store.Snapshot {
	out := map[string][]model.Member{}
	for s, ms := range c.members {
		out[s] = slices.Clone(ms)
	}
	return store.Snapshot{Members: out}
}
func (c *core) Leases() map[string]map[string]store.Lease { return nil }
func (c *core) Trigger() <-chan error                     { return c.done() }
func (c *core) TriggerFor(string) <-chan error            { return c.done() }

// done is an apply's outcome: at once, or never when the core holds (haproxy stuck).
func (c *core) done() <-chan error {
	ch := make(chan error, 1)
	if !c.hold {
		ch <- nil
	}
	return ch
}
func (c *core) DefineService(name string, svc config.Service) error {
	c.calls = append(c.calls, "define "+name)
	c.cfg.Services[name] = svc
	return nil
}
func (c *core) RemoveService(name string) error {
	c.calls = append(c.calls, "remove "+name)
	delete(c.cfg.Services, name)
	return nil
}
func (c *core) PutDomain(gw, host string, d gateway.Domain) ([]string, error) {
	g := c.cfg.Gateways[gw]
	w, err := gateway.ValidateDomain(host, d, g, c.cfg.Targets())
	if err != nil {
		return nil, err
	}
	g.Domains = maps.Clone(g.Domains)
	if g.Domains == nil {
		g.Domains = map[string]gateway.Domain{}
	}
	g.Domains[host] = d
	c.cfg.Gateways[gw] = g
	c.calls = append(c.calls, "domain "+gw+" "+host)
	return w, nil
}
func (c *core) RemoveDomain(gw, host string) error {
	g := c.cfg.Gateways[gw]
	g.Domains = maps.Clone(g.Domains)
	delete(g.Domains, host)
	c.cfg.Gateways[gw] = g
	c.calls = append(c.calls, "undomain "+gw+" "+host)
	return nil
}

// FuzzRequests: no request makes the adapter panic, every answer is JSON, and whatever it
// saves is valid (members validate; domains pass the gateway validation).
func FuzzRequests(f *testing.F) {
	f.Add("PUT", "/__erulb__/domain", `{"a.example": {"init": "r1", "rules": {"r1": {"type": "backend", "args": {"servername": "up"}}}}}`)
	f.Add("PUT", "/__erulb__/upstream", `{"up": {"10.0.0.1:80": "weight=2"}}`)
	f.Add("DELETE", "/__erulb__/domain", `["a.example", "b:80"]`)
	f.Add("DELETE", "/__erulb__/upstream", `["up", "x"]`)
	f.Add("PUT", "/__erulb__/domain", `{"a.example": {"init": "a", "rules": {"a": {"type": "ua", "args": {"pattern": "(a+)+", "succ": "a"}}}}}`)
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if method != "GET" && method != "PUT" && method != "DELETE" {
			method = "PUT"
		}
		if _, err := url.ParseRequestURI(path); err != nil || !strings.HasPrefix(path, "/__erulb__/") || strings.ContainsAny(path, " ?#%") {
			path = "/__erulb__/domain"
		}
		c := newCore()
		s := New(c.deps())
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.RemoteAddr = "127.0.0.1:1"
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%s %s %q: answer %d is not JSON: %q", method, path, body, w.Code, w.Body)
		}
		for svc, ms := range c.members {
			for _, m := range ms {
				if err := m.Validate(); err != nil || model.ValidateServiceName(svc) != nil {
					t.Fatalf("%s %s %q saved member %s/%+v: %v", method, path, body, svc, m, err)
				}
			}
		}
	})
}

// TestUpstreamReplace checks the diff of a PUT upstream: servers kept are put again
// (idempotent), new ones put, missing ones deleted; an upstream that is not a service yet is
// defined first; DELETE removes every member, then the service.
func TestUpstreamReplace(t *testing.T) {
	c := newCore()
	s := New(c.deps())
	do := func(method, path, body string) string {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.RemoteAddr = "127.0.0.1:1"
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		return fmt.Sprintf("%d %s", w.Code, strings.TrimSpace(w.Body.String()))
	}
	steps := []struct{ method, path, body, want, calls string }{
		{"PUT", "/__erulb__/upstream", `{"Up": {"10.0.0.1:80": "", "10.0.0.2:80": "weight=3"}}`, `200 {"msg":"OK"}`, "define up, put up 10.0.0.1:80, put up 10.0.0.2:80"},
		{"PUT", "/__erulb__/upstream", `{"up": {"10.0.0.2:80": "weight=3", "10.0.0.3:80": "down"}}`, `200 {"msg":"OK"}`, "put up 10.0.0.2:80, put up 10.0.0.3:80, delete up 10.0.0.1:80"},
		{"GET", "/__erulb__/upstream", "", `200 {"up":[{"addr":"10.0.0.2:80","name":"10.0.0.2:80","weight":3,"max_fails":2,"fail_timeout":10},{"addr":"10.0.0.3:80","name":"10.0.0.3:80","weight":0,"max_fails":2,"fail_timeout":10,"down":true}]}`, ""},
		{"PUT", "/__erulb__/domain", `{"a.example": {"init": "b", "rules": {"b": {"type": "backend", "args": {"servername": "up"}}}}}`, `200 {"msg":"OK"}`, "domain web a.example"},
		{"DELETE", "/__erulb__/upstream", `["up"]`, `409 {"msg":"upstream up: domain a.example of gateway web still routes to it; change or delete the domain first"}`, ""},
		{"DELETE", "/__erulb__/domain", `["a.example"]`, `200 {"msg":"OK"}`, "undomain web a.example"},
		{"DELETE", "/__erulb__/upstream", `["up", "gone"]`, `200 {"gone":404,"up":true}`, "delete up 10.0.0.2:80, delete up 10.0.0.3:80, remove up"},
		{"PUT", "/__erulb__/domain", `{"b.example": {"init": "b", "rules": {"b": {"type": "backend", "args": {"servername": "New___Up"}}}}}`, `200 {"msg":"OK"}`, "define new___up, domain web b.example"},
	}
	for i, st := range steps {
		c.calls = nil
		if got := do(st.method, st.path, st.body); got != st.want {
			t.Errorf("step %d %s %s: %s\nwant %s", i, st.method, st.path, got, st.want)
		}
		if got := strings.Join(c.calls, ", "); got != st.calls {
			t.Errorf("step %d: calls %q, want %q", i, got, st.calls)
		}
	}
}

// TestNotApplied: a change haproxy does not run within request_timeout is saved and
// answered 503 (Eru's clients retry); ?wait=false answers once it is saved.
func TestNotApplied(t *testing.T) {
	c := newCore()
	c.hold = true
	c.cfg.RequestTimeout = 20 * time.Millisecond
	s := New(c.deps())
	for _, tc := range []struct{ path, body, want string }{
		{"/__erulb__/upstream", `{"up": {"10.0.0.1:80": ""}}`, `503 {"msg":"saved but not applied: timed out waiting for haproxy; it will be applied later"}`},
		{"/__erulb__/upstream?wait=false", `{"up": {"10.0.0.2:80": ""}}`, `200 {"msg":"OK"}`},
		{"/__erulb__/dump", ``, `503 {"msg":"saved but not applied: timed out waiting for haproxy; it will be applied later"}`},
	} {
		req := httptest.NewRequest("PUT", tc.path, strings.NewReader(tc.body))
		req.RemoteAddr = "127.0.0.1:1"
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if got := fmt.Sprintf("%d %s", w.Code, strings.TrimSpace(w.Body.String())); got != tc.want {
			t.Errorf("PUT %s: %s, want %s", tc.path, got, tc.want)
		}
	}
	if got := fmt.Sprint(c.members["up"]); !strings.Contains(got, "10.0.0.2:80") || strings.Contains(got, "10.0.0.1:80") {
		t.Errorf("members %s: want the last PUT's server, saved although not applied", got)
	}
}
