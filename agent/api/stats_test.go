package api

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"clb/agent/config"
	"clb/internal/auth"
	"clb/internal/model"
	"clb/internal/ratelimit"
	"clb/internal/stats"
)

// statsServer serves services web and api, with a history of two samples of web's member m1
// (5 then 25 requests, 2 s apart) and m0, a member the history still has that is no longer
// registered; m2 is registered without samples. Key "webonly" may see service web only.
func statsServer(t *testing.T) (*Server, time.Time) {
	t.Helper()
	cfg := config.Defaults()
	cfg.Services = map[string]config.Service{
		"web": {Listeners: []config.Listener{{Port: 80, MemberPort: 8080}}},
		"api": {Listeners: []config.Listener{{Port: 81, MemberPort: 8081}}},
	}
	cfg.SetDefaults()
	keys := auth.NewKeyring(map[string]auth.Key{
		"admin":   {Signing: testKey, Scope: auth.ScopeAdmin},
		"webonly": {Signing: testKey, Scope: auth.Scope{Services: []string{"w*"}}},
	})
	h := stats.New(2*time.Second, 10*time.Minute)
	t0 := time.Date(2026, 12, 2, 1, 2, 3, 456_000_000, time.UTC)
	for i, n := range []uint64{5, 25} {
		h.Add(stats.Input{Time: t0.Add(time.Duration(i) * 2 * time.Second), Services: map[string]stats.ServiceInput{
			"web": {Backends: []stats.Source{{Key: "web_80", Reading: stats.Reading{Requests: n + 1}}},
				Servers: []stats.Source{{Key: "web_80/s1", Member: "m1", Reading: stats.Reading{Requests: n, RespMS: 2, Sessions: 1}},
					{Key: "web_80/s2", Member: "m0", Reading: stats.Reading{Requests: 1}}}},
			"api": {},
		}})
	}
	m := &fakeMembers{members: map[string][]model.Member{"web": {
		{Name: "m1", Address: "10.0.0.1", Port: 8080, Weight: 100}, {Name: "m2", Address: "10.0.0.2", Port: 8080, Weight: 100},
	}}}
	return New(Deps{
		Config: func() *config.Config { return &cfg }, Members: m, Applier: &fakeApplier{}, Definitions: fakeDefs{}, Status: fakeStatus{},
		Stats: h, Verifier: auth.New(keys), Limiter: ratelimit.New(10, time.Second, 0, nil),
	}), t0
}

func getStatsView(t *testing.T, s *Server, key, query string) StatsView {
	t.Helper()
	w, _ := call(t, s, key, "GET", "/v1/stats"+query, "")
	if w.Code != 200 {
		t.Fatalf("GET /v1/stats%s = %d %s", query, w.Code, w.Body)
	}
	var v StatsView
	dec := json.NewDecoder(w.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestStatsEndpoint(t *testing.T) {
	s, t0 := statsServer(t)
	v := getStatsView(t, s, "admin", "")
	if v.IntervalSeconds != 2 || v.WindowSeconds != 600 || len(v.Services) != 2 || v.Services[0].Name != "api" || v.Services[1].Name != "web" {
		t.Fatalf("view = %+v, want interval 2, window 600, services api and web", v)
	}
	if api := v.Services[0]; api.Totals == nil || len(api.Members) != 0 {
		t.Errorf("api = %+v, want totals and no members", api)
	}
	web := v.Services[1]
	var names []string
	for _, m := range web.Members {
		names = append(names, m.Name)
	}
	if strings.Join(names, ",") != "m0,m1,m2" {
		t.Errorf("web's members = %v, want m0 (in the history), m1, m2 (registered, no samples) by name", names)
	}
	m1 := web.Members[1].Samples
	want := []stats.Sample{
		{T: t0, Requests: 5, RespMS: 2, Sessions: 1},
		{T: t0.Add(2 * time.Second), Requests: 25, ReqRate: 10, RespMS: 2, Sessions: 1},
	}
	if len(m1) != 2 || m1[0] != want[0] || m1[1] != want[1] {
		t.Errorf("m1's samples = %+v, want %+v", m1, want)
	}
	if web.Members[2].Samples == nil || len(web.Members[2].Samples) != 0 {
		t.Errorf("m2's samples = %#v, want [] (not null)", web.Members[2].Samples)
	}
	if web.Totals == nil || web.Totals.Requests != 26 || web.Totals.ReqRate != 10 {
		t.Errorf("web's totals = %+v, want the latest: 26 requests, 10/s", web.Totals)
	}
	// The raw JSON: times in RFC 3339 UTC, totals null before any sample.
	w, _ := call(t, s, "admin", "GET", "/v1/stats?service=web", "")
	if !strings.Contains(w.Body.String(), `"t": "2026-12-02T01:02:03.456Z"`) {
		t.Errorf("body has no RFC 3339 UTC sample time:\n%s", w.Body)
	}

	// since: only later samples; totals stay the latest.
	v = getStatsView(t, s, "admin", "?service=web&since="+url.QueryEscape(t0.Format(time.RFC3339Nano)))
	if len(v.Services) != 1 || len(v.Services[0].Members[1].Samples) != 1 || v.Services[0].Members[1].Samples[0].Requests != 25 || v.Services[0].Totals == nil {
		t.Errorf("since the first sample: %+v, want web with m1's second sample only, and totals", v)
	}
	v = getStatsView(t, s, "admin", "?since=2026-12-02T02:00:00%2B01:00") // = 01:00 UTC, before both
	if got := len(v.Services[1].Members[1].Samples); got != 2 {
		t.Errorf("since 02:00+01:00: %d samples of m1, want 2", got)
	}

	// Scope: a register key sees the services its globs allow.
	v = getStatsView(t, s, "webonly", "")
	if len(v.Services) != 1 || v.Services[0].Name != "web" {
		t.Errorf("webonly sees %+v, want web only", v.Services)
	}
}

func TestStatsRefusals(t *testing.T) {
	s, _ := statsServer(t)
	for _, tc := range []struct {
		name, key, query string
		status           int
		code, errHas     string
	}{
		{"unsigned", "", "", 401, "unauthenticated", "signature"},
		{"unknown service", "admin", "?service=nope", 404, "not_found", `unknown service "nope"`},
		{"bad service name", "admin", "?service=Bad%20Name", 400, "bad_request", "service name"},
		{"empty service", "admin", "?service=", 400, "bad_request", "service name"},
		{"service out of scope", "webonly", "?service=api", 403, "forbidden", `may not use service "api"`},
		{"bad since", "admin", "?since=yesterday", 400, "bad_request", "RFC 3339"},
		{"since without zone", "admin", "?since=2026-12-02T01:02:03", 400, "bad_request", "RFC 3339"},
		{"empty since", "admin", "?since=", 400, "bad_request", "RFC 3339"},
		{"unknown parameter", "admin", "?servce=web", 400, "bad_request", `unknown query parameter "servce"`},
		{"parameter twice", "admin", "?service=web&service=api", 400, "bad_request", "2 times"},
		{"wrong method", "admin", "", 405, "method_not_allowed", "POST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := "GET"
			if tc.name == "wrong method" {
				method = "POST"
			}
			w, out := call(t, s, tc.key, method, "/v1/stats"+tc.query, "")
			if w.Code != tc.status || out["code"] != tc.code {
				t.Fatalf("got %d %s, want %d %s", w.Code, w.Body, tc.status, tc.code)
			}
			if msg, _ := out["error"].(string); !strings.Contains(msg, tc.errHas) {
				t.Errorf("error %q does not contain %q", msg, tc.errHas)
			}
		})
	}
}
