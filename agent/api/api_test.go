package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"clb/agent/config"
	"clb/agent/defs"
	"clb/internal/auth"
	"clb/internal/model"
	"clb/internal/ratelimit"
	"clb/internal/store"
)

// The handlers against fakes of the interfaces the API defines (failure injection at seams the
// project owns); the real core behind them is tested in package agent with real processes.

// fakeMembers is a membership whose writes fail with err when it is set.
type fakeMembers struct {
	members map[string][]model.Member
	leases  map[string]map[string]store.Lease
	err     error
}

func (f *fakeMembers) Put(service string, m model.Member) (bool, error) {
	if f.err != nil {
		return false, f.err
	}
	f.members[service] = append(f.members[service], m)
	return true, nil
}

func (f *fakeMembers) PutLease(service string, m model.Member, ttl time.Duration, now time.Time) (bool, time.Time, error) {
	changed, err := f.Put(service, m)
	if err == nil {
		if f.leases == nil {
			f.leases = map[string]map[string]store.Lease{}
		}
		if f.leases[service] == nil {
			f.leases[service] = map[string]store.Lease{}
		}
		f.leases[service][m.Name] = store.Lease{TTL: ttl, Expires: now.Add(ttl)}
	}
	return changed, now.Add(ttl), err
}

func (f *fakeMembers) Leases() map[string]map[string]store.Lease { return f.leases }

func (f *fakeMembers) Delete(service, name string) (model.Member, error) {
	if f.err != nil {
		return model.Member{}, f.err
	}
	for i, m := range f.members[service] {
		if m.Name == name {
			f.members[service] = append(f.members[service][:i], f.members[service][i+1:]...)
			return m, nil
		}
	}
	return model.Member{}, store.ErrNotFound
}

func (f *fakeMembers) Snapshot() store.Snapshot {
	out := map[string][]model.Member{}
	for k, v := range f.members {
		out[k] = append([]model.Member(nil), v...)
	}
	return store.Snapshot{Members: out}
}

// fakeApplier answers every trigger with err; triggers counts them, forMember the names.
type fakeApplier struct {
	err       error
	triggers  int
	forMember []string
}

func (f *fakeApplier) Trigger() <-chan error { return f.TriggerFor("") }
func (f *fakeApplier) TriggerFor(m string) <-chan error {
	f.triggers++
	if m != "" {
		f.forMember = append(f.forMember, m)
	}
	ch := make(chan error, 1)
	ch <- f.err
	return ch
}

type fakeDefs struct{ err error }

func (f fakeDefs) DefineService(string, config.Service) error { return f.err }
func (f fakeDefs) RemoveService(string) error                 { return f.err }
func (f fakeDefs) SetZone(string, string, bool) error         { return f.err }

type fakeStatus struct{}

func (fakeStatus) Status() any { return map[string]int{"pending_changes": 0} }
func (fakeStatus) Health() map[string]map[string]string {
	return map[string]map[string]string{"web": {"m1": "up"}}
}
func (fakeStatus) Draining() map[string][]string { return map[string][]string{"web": {"old"}} }

var testKey = auth.DeriveKey([]byte("pw"))

func newTestServer(t *testing.T, m *fakeMembers, a *fakeApplier, d fakeDefs) *Server {
	t.Helper()
	cfg := config.Defaults()
	cfg.Services = map[string]config.Service{"web": {Listeners: []config.Listener{{Port: 80, MemberPort: 8080}}}}
	cfg.SetDefaults()
	keys := auth.NewKeyring(map[string]auth.Key{
		"default": {Signing: testKey, Scope: auth.ScopeRegisterAll},
		"admin":   {Signing: testKey, Scope: auth.Scope{Admin: true}},
	})
	return New(Deps{
		Config: func() *config.Config { return &cfg }, Members: m, Applier: a, Definitions: d, Status: fakeStatus{},
		Verifier: auth.New(keys), Limiter: ratelimit.New(10, time.Second, 0, nil),
	})
}

func call(t *testing.T, s *Server, key, method, path, body string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, "http://clbd"+path, strings.NewReader(body))
	req.RemoteAddr = "127.0.0.7:5555"
	if key != "" {
		if err := auth.Sign(req, key, testKey, []byte(body), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w, out
}

func TestHandlers(t *testing.T) {
	full := fmt.Errorf("%w: write state.json: %w", store.ErrNotSaved, syscall.ENOSPC)
	tests := []struct {
		name           string
		members        error
		apply          error
		defs           error
		key            string
		method, path   string
		body           string
		wantStatus     int
		wantCode       string
		wantRetryAfter string
		wantTriggers   int
	}{
		{name: "register applied", key: "default", method: "PUT", path: "/v1/services/web/members/m1", wantStatus: 200, wantTriggers: 1},
		{name: "register not applied", apply: errors.New("haproxy refused"), key: "default", method: "PUT", path: "/v1/services/web/members/m1", wantStatus: 503, wantCode: "not_applied", wantTriggers: 1},
		{name: "disk full", members: full, key: "default", method: "PUT", path: "/v1/services/web/members/m1", wantStatus: 503, wantCode: "store_unavailable", wantRetryAfter: "5"},
		{name: "etcd down", members: store.ErrUnavailable, key: "default", method: "PUT", path: "/v1/services/web/members/m1", wantStatus: 503, wantCode: "store_unavailable", wantRetryAfter: "1"},
		{name: "unknown error is 500", members: errors.New("boom"), key: "default", method: "PUT", path: "/v1/services/web/members/m1", wantStatus: 500, wantCode: "internal"},
		{name: "unknown service", key: "default", method: "PUT", path: "/v1/services/api/members/m1", wantStatus: 404, wantCode: "not_found"},
		{name: "wait=false", key: "default", method: "PUT", path: "/v1/services/web/members/m1?wait=false", wantStatus: 202, wantTriggers: 1},
		{name: "define in file", defs: fmt.Errorf("service web: %w", defs.ErrFileService), key: "admin", method: "PUT", path: "/v1/services/web", body: `{"listeners":[{"port":81}]}`, wantStatus: 409, wantCode: "conflict"},
		{name: "remove undefined", defs: fmt.Errorf("x: %w", defs.ErrNotDefined), key: "admin", method: "DELETE", path: "/v1/services/api", wantStatus: 404, wantCode: "not_found"},
		{name: "listener taken", defs: fmt.Errorf("%w: listener", defs.ErrInvalid), key: "admin", method: "PUT", path: "/v1/services/api", body: `{"listeners":[{"port":80}]}`, wantStatus: 409, wantCode: "conflict"},
		{name: "define needs admin", key: "default", method: "PUT", path: "/v1/services/api", body: `{"listeners":[{"port":81}]}`, wantStatus: 403, wantCode: "forbidden"},
		{name: "zone disabled", key: "admin", method: "POST", path: "/v1/services/web/zones/a/disable", wantStatus: 200, wantTriggers: 1},
		{name: "unsigned unknown path", method: "GET", path: "/v9/x", wantStatus: 401, wantCode: "unauthenticated"},
		{name: "unsigned wrong method", method: "PATCH", path: "/v1/status", wantStatus: 401, wantCode: "unauthenticated"},
		{name: "signed wrong method", key: "default", method: "PATCH", path: "/v1/status", wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "signed unknown path", key: "default", method: "GET", path: "/v9/x", wantStatus: 404, wantCode: "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &fakeMembers{members: map[string][]model.Member{}, err: tt.members}
			a := &fakeApplier{err: tt.apply}
			w, out := call(t, newTestServer(t, m, a, fakeDefs{err: tt.defs}), tt.key, tt.method, tt.path, tt.body)
			if w.Code != tt.wantStatus {
				t.Fatalf("status = %d %s, want %d", w.Code, w.Body, tt.wantStatus)
			}
			if tt.wantCode != "" && out["code"] != tt.wantCode {
				t.Errorf("code = %v, want %s (%s)", out["code"], tt.wantCode, w.Body)
			}
			if got := w.Header().Get("Retry-After"); got != tt.wantRetryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetryAfter)
			}
			if a.triggers != tt.wantTriggers {
				t.Errorf("applies asked = %d, want %d", a.triggers, tt.wantTriggers)
			}
		})
	}
}

// TestUnregisterByAddressAll: every member at the address and port goes, each waited for.
func TestUnregisterByAddressAll(t *testing.T) {
	m := &fakeMembers{members: map[string][]model.Member{"web": {
		{Name: "127.0.0.7:8080", Address: "127.0.0.7", Port: 8080, Weight: 100},
		{Name: "app1", Address: "127.0.0.7", Port: 8080, Weight: 100},
		{Name: "other", Address: "127.0.0.8", Port: 8080, Weight: 100},
	}}}
	a := &fakeApplier{}
	w, out := call(t, newTestServer(t, m, a, fakeDefs{}), "default", "DELETE", "/v1/services/web/members", "")
	if w.Code != 200 {
		t.Fatalf("status %d %s", w.Code, w.Body)
	}
	if got := m.Snapshot().Members["web"]; len(got) != 1 || got[0].Name != "other" {
		t.Errorf("left %v, want only other", got)
	}
	if len(a.forMember) != 2 {
		t.Errorf("waited for %v, want both names", a.forMember)
	}
	if ms, _ := out["members"].([]any); len(ms) != 2 {
		t.Errorf("answer lists %v, want both members", out["members"])
	}
	// The health of members comes from Status.Health, by service and member.
	w, _ = call(t, newTestServer(t, &fakeMembers{members: map[string][]model.Member{"web": {{Name: "m1", Address: "127.0.0.1", Port: 1, Weight: 1}}}}, a, fakeDefs{}), "default", "GET", "/v1/services/web", "")
	if !bytes.Contains(w.Body.Bytes(), []byte(`"health": "up"`)) {
		t.Errorf("GET service = %s, want m1 up", w.Body)
	}
}

// TestViews: zones come from the members and the disabled list, leases and drains are shown.
func TestViews(t *testing.T) {
	cfg := config.Defaults()
	cfg.Services = map[string]config.Service{"web": {Listeners: []config.Listener{{Port: 80, MemberPort: 8080}}}}
	cfg.DisabledZones = map[string][]string{"web": {"b", "c"}}
	exp := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	in := ViewInput{
		Config: &cfg,
		Snapshot: store.Snapshot{Members: map[string][]model.Member{"web": {
			{Name: "m1", Address: "10.0.0.1", Port: 8000, Weight: 100, Zone: "a"},
			{Name: "m2", Address: "10.0.0.2", Port: 8000, Weight: 100, Zone: "b"},
			{Name: "m3", Address: "10.0.0.3", Port: 8000, Weight: 100},
		}}},
		Leases:   map[string]map[string]store.Lease{"web": {"m2": {TTL: 30 * time.Second, Expires: exp}, "m3": {TTL: time.Minute}}},
		Health:   map[string]map[string]string{"web": {"m1": "up", "m2": "down"}},
		Draining: map[string][]string{"web": {"m0"}},
	}
	views := Views(in)
	if len(views) != 1 || views[0].Name != "web" {
		t.Fatalf("views = %+v", views)
	}
	v := views[0]
	wantZones := []ZoneView{{Name: "a", Enabled: true, Members: 1}, {Name: "b", Enabled: false, Members: 1}, {Name: "c", Enabled: false, Members: 0}}
	if !slices.Equal(v.Zones, wantZones) {
		t.Errorf("zones = %+v, want %+v", v.Zones, wantZones)
	}
	if got := []string{v.Members[0].Health, v.Members[1].Health, v.Members[2].Health}; !slices.Equal(got, []string{"up", "down", HealthUnknown}) {
		t.Errorf("health = %v", got)
	}
	if v.Members[0].LeaseTTL != "" || v.Members[1].LeaseTTL != "30s" || v.Members[1].LeaseExpires == nil || !v.Members[1].LeaseExpires.Equal(exp) {
		t.Errorf("leases: %+v %+v", v.Members[0], v.Members[1])
	}
	if v.Members[2].LeaseTTL != "1m0s" || v.Members[2].LeaseExpires != nil {
		t.Errorf("etcd-style lease without expiry: %+v", v.Members[2])
	}
	if !slices.Equal(v.Draining, []string{"m0"}) {
		t.Errorf("draining = %v", v.Draining)
	}
}

// TestServeAs: a request served as an identity gets exactly the answers a request signed by
// that key gets (scopes, validation), unsigned; and a client cannot claim an identity by any
// header: the same unsigned request through ServeHTTP is refused.
func TestServeAs(t *testing.T) {
	register := auth.Identity{KeyID: "member", Scope: auth.Scope{Services: []string{"api-*"}}}
	admin := auth.Identity{KeyID: "ops", Scope: auth.ScopeAdmin}
	tests := []struct {
		name         string
		id           auth.Identity
		method, path string
		wantStatus   int
		wantCode     string
		wantServices int
	}{
		{name: "admin sees every service", id: admin, method: "GET", path: "/v1/services", wantStatus: 200, wantServices: 1},
		{name: "register key sees only its services", id: register, method: "GET", path: "/v1/services", wantStatus: 200, wantServices: 0},
		{name: "register key may not disable a zone", id: register, method: "POST", path: "/v1/services/web/zones/a/disable", wantStatus: 403, wantCode: "forbidden"},
		{name: "register key may not use another service", id: register, method: "DELETE", path: "/v1/services/web/members/m1", wantStatus: 403, wantCode: "forbidden"},
		{name: "admin disables a zone", id: admin, method: "POST", path: "/v1/services/web/zones/a/disable", wantStatus: 200},
		{name: "validation as for signed calls", id: admin, method: "POST", path: "/v1/services/web/zones/A%20B/disable", wantStatus: 400, wantCode: "bad_request"},
		{name: "unknown endpoint", id: admin, method: "GET", path: "/v1/nope", wantStatus: 404, wantCode: "not_found"},
		{name: "zero identity is allowed nothing", id: auth.Identity{}, method: "POST", path: "/v1/services/web/zones/a/disable", wantStatus: 403, wantCode: "forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, &fakeMembers{members: map[string][]model.Member{}}, &fakeApplier{}, fakeDefs{})
			req := httptest.NewRequest(tt.method, "http://clbd"+tt.path, nil)
			w := httptest.NewRecorder()
			s.ServeAs(w, req, tt.id)
			if w.Code != tt.wantStatus {
				t.Fatalf("status = %d %s, want %d", w.Code, w.Body, tt.wantStatus)
			}
			var out map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
				t.Fatalf("answer is not JSON: %s", w.Body)
			}
			if tt.wantCode != "" && out["code"] != tt.wantCode {
				t.Errorf("code = %v, want %s", out["code"], tt.wantCode)
			}
			if tt.path == "/v1/services" {
				if got := len(out["services"].([]any)); got != tt.wantServices {
					t.Errorf("services = %d, want %d", got, tt.wantServices)
				}
			}
			// Unsigned through ServeHTTP, the same request is refused, whatever it claims.
			req = httptest.NewRequest(tt.method, "http://clbd"+tt.path, nil)
			req.Header.Set("X-Clb-Key", tt.id.KeyID)
			w = httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code != 401 {
				t.Errorf("unsigned ServeHTTP = %d, want 401", w.Code)
			}
		})
	}
}
