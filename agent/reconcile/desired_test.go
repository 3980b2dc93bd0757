package reconcile

import (
	"reflect"
	"testing"

	"clb/agent/config"
	"clb/internal/haproxy"
	"clb/internal/model"
	"clb/internal/render"
	"clb/internal/store"
)

func member(name, zone string, weight int) model.Member {
	return model.Member{Name: name, Address: "10.0.0.1", Port: 8000, Weight: weight, Zone: zone}
}

func TestZoneWeights(t *testing.T) {
	for _, tc := range []struct {
		name     string
		members  []model.Member
		disabled []string
		want     map[string]int
	}{
		{"no members", nil, nil, map[string]int{}},
		{"one zone: registered weights", []model.Member{member("a1", "a", 100), member("a2", "a", 10), member("a3", "a", 256)}, nil,
			map[string]int{"a1": 100, "a2": 10, "a3": 256}},
		{"no zones at all: registered weights", []model.Member{member("m1", "", 7), member("m2", "", 3)}, nil,
			map[string]int{"m1": 7, "m2": 3}},
		{"one member", []model.Member{member("m1", "a", 1)}, nil, map[string]int{"m1": 1}},
		{"two zones, 1 and 3 members: equal share per zone, largest 256",
			[]model.Member{member("a1", "a", 100), member("b1", "b", 100), member("b2", "b", 100), member("b3", "b", 100)}, nil,
			map[string]int{"a1": 256, "b1": 85, "b2": 85, "b3": 85}},
		{"two zones, 2 and 2 members: scaled to 256",
			[]model.Member{member("a1", "a", 10), member("a2", "a", 10), member("b1", "b", 10), member("b2", "b", 10)}, nil,
			map[string]int{"a1": 256, "a2": 256, "b1": 256, "b2": 256}},
		{"weights within a zone keep their ratio",
			[]model.Member{member("a1", "a", 100), member("a2", "a", 300), member("b1", "b", 50)}, nil,
			map[string]int{"a1": 64, "a2": 192, "b1": 256}},
		{"members without a zone count as one zone",
			[]model.Member{member("n1", "", 100), member("n2", "", 100), member("a1", "a", 100)}, nil,
			map[string]int{"n1": 128, "n2": 128, "a1": 256}},
		{"a disabled zone: 0 for its members",
			[]model.Member{member("a1", "a", 100), member("b1", "b", 100), member("b2", "b", 100)}, []string{"b"},
			map[string]int{"a1": 256, "b1": 0, "b2": 0}},
		{"the only zone disabled",
			[]model.Member{member("a1", "a", 100), member("a2", "a", 50)}, []string{"a"},
			map[string]int{"a1": 0, "a2": 0}},
		{"all zones disabled",
			[]model.Member{member("a1", "a", 100), member("b1", "b", 100), member("n1", "", 100)}, []string{"a", "b", ""},
			map[string]int{"a1": 0, "b1": 0, "n1": 0}},
		{"the no-zone zone disabled",
			[]model.Member{member("n1", "", 100), member("a1", "a", 100)}, []string{""},
			map[string]int{"n1": 0, "a1": 256}},
		{"a disabled zone with no members: the one zone scaled to 256",
			[]model.Member{member("a1", "a", 100), member("a2", "a", 50)}, []string{"z"},
			map[string]int{"a1": 256, "a2": 128}},
		{"weight 0 in one zone stays 0",
			[]model.Member{member("a1", "a", 0), member("a2", "a", 100)}, nil,
			map[string]int{"a1": 0, "a2": 100}},
		{"weight 0 among zones stays 0",
			[]model.Member{member("a1", "a", 0), member("a2", "a", 100), member("b1", "b", 100)}, nil,
			map[string]int{"a1": 0, "a2": 256, "b1": 256}},
		{"a zone of weight-0 members: 0, the others scaled",
			[]model.Member{member("a1", "a", 0), member("b1", "b", 100), member("b2", "b", 100)}, nil,
			map[string]int{"a1": 0, "b1": 256, "b2": 256}},
		{"every member weight 0", []model.Member{member("a1", "a", 0), member("b1", "b", 0)}, nil,
			map[string]int{"a1": 0, "b1": 0}},
		{"a tiny share rounds up to 1, not 0",
			[]model.Member{member("a1", "a", 1), member("a2", "a", 256), member("b1", "b", 1)}, nil,
			map[string]int{"a1": 1, "a2": 255, "b1": 256}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ZoneWeights(tc.members, tc.disabled); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ZoneWeights = %v, want %v", got, tc.want)
			}
		})
	}
}

// testConfig is two services: web with two http listeners (members on 8000, then 9443),
// api with one tcp listener.
func testConfig(t *testing.T, disabled map[string][]string) *config.Config {
	t.Helper()
	cfg := config.Defaults()
	cfg.Services = map[string]config.Service{
		"web": {Listeners: []config.Listener{
			{Port: 8080, MemberPort: 8000},
			{Port: 8443, MemberPort: 9443, Protocol: "https", Certificate: "/etc/clb/web.pem"},
		}, HealthCheck: &config.HealthCheck{Target: "HTTP:8000/healthz"}, Sticky: true},
		"api": {Listeners: []config.Listener{{Port: 9000, Protocol: "tcp", Address: "10.1.0.1"}}, Balance: "leastconn"},
	}
	cfg.DisabledZones = disabled
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return &cfg
}

func TestDesired(t *testing.T) {
	snap := store.Snapshot{Members: map[string][]model.Member{
		"web": {
			{Name: "w1", Address: "10.0.0.1", Port: 8001, Weight: 100, Zone: "a"},
			{Name: "w2", Address: "fd00::2", Port: 8002, Weight: 50, Zone: "a"},
		},
		"api":   {{Name: "a1", Address: "10.0.0.9", Port: 9009, Weight: 10}},
		"ghost": {{Name: "g1", Address: "10.0.0.7", Port: 7000, Weight: 100}}, // no such service
	}}
	in := render.Data{TemplateSource: render.BuiltIn, AdminSocket: "/run/clb/admin.sock", ServerStateFile: "/var/lib/clb-server/haproxy.state"}

	for _, tc := range []struct {
		name     string
		disabled map[string][]string
		want     []render.Service
	}{
		{
			name: "services sorted, first listener on the member's port, further ones on member_port",
			want: []render.Service{
				{Name: "api", Balance: "leastconn", Check: render.Check{Host: "localhost", Interval: 30e9, Timeout: 5e9, Rise: 3, Fall: 5},
					Listeners: []render.Listener{{
						Name: "api_9000", Address: "10.1.0.1", Port: 9000, Protocol: "tcp", Mode: "tcp", MemberPort: 9000,
						Servers: []render.Server{{Name: "a1", Address: "10.0.0.9", Port: 9009, Weight: 10}},
					}}},
				{Name: "web", Balance: "roundrobin", Sticky: true, Check: render.Check{HTTP: true, Port: 8000, Path: "/healthz", Host: "localhost", Interval: 30e9, Timeout: 5e9, Rise: 3, Fall: 5},
					Listeners: []render.Listener{
						{Name: "web_8080", Port: 8080, Protocol: "http", Mode: "http", MemberPort: 8000, Servers: []render.Server{
							{Name: "w1", Address: "10.0.0.1", Port: 8001, Weight: 100, Zone: "a"},
							{Name: "w2", Address: "fd00::2", Port: 8002, Weight: 50, Zone: "a"},
						}},
						{Name: "web_8443", Port: 8443, Protocol: "https", Mode: "http", Certificate: "/etc/clb/web.pem", MemberPort: 9443, Servers: []render.Server{
							{Name: "w1", Address: "10.0.0.1", Port: 9443, Weight: 100, Zone: "a"},
							{Name: "w2", Address: "fd00::2", Port: 9443, Weight: 50, Zone: "a"},
						}},
					}},
			},
		},
		{
			name:     "zone weights on every listener",
			disabled: map[string][]string{"web": {"a"}},
			want: []render.Service{
				{Name: "api", Balance: "leastconn", Check: render.Check{Host: "localhost", Interval: 30e9, Timeout: 5e9, Rise: 3, Fall: 5},
					Listeners: []render.Listener{{
						Name: "api_9000", Address: "10.1.0.1", Port: 9000, Protocol: "tcp", Mode: "tcp", MemberPort: 9000,
						Servers: []render.Server{{Name: "a1", Address: "10.0.0.9", Port: 9009, Weight: 10}},
					}}},
				{Name: "web", Balance: "roundrobin", Sticky: true, Check: render.Check{HTTP: true, Port: 8000, Path: "/healthz", Host: "localhost", Interval: 30e9, Timeout: 5e9, Rise: 3, Fall: 5},
					Listeners: []render.Listener{
						{Name: "web_8080", Port: 8080, Protocol: "http", Mode: "http", MemberPort: 8000, Servers: []render.Server{
							{Name: "w1", Address: "10.0.0.1", Port: 8001, Weight: 0, Zone: "a"},
							{Name: "w2", Address: "fd00::2", Port: 8002, Weight: 0, Zone: "a"},
						}},
						{Name: "web_8443", Port: 8443, Protocol: "https", Mode: "http", Certificate: "/etc/clb/web.pem", MemberPort: 9443, Servers: []render.Server{
							{Name: "w1", Address: "10.0.0.1", Port: 9443, Weight: 0, Zone: "a"},
							{Name: "w2", Address: "fd00::2", Port: 9443, Weight: 0, Zone: "a"},
						}},
					}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Desired(testConfig(t, tc.disabled), snap, nil, in)
			if got.TemplateSource != in.TemplateSource || got.AdminSocket != in.AdminSocket || got.ServerStateFile != in.ServerStateFile {
				t.Errorf("Desired changed the data it was given: %+v, want %+v", got, in)
			}
			// Slots are TestSlots' business; here the members as servers.
			for i := range got.Services {
				for j := range got.Services[i].Listeners {
					got.Services[i].Listeners[j].Slots = nil
				}
			}
			if !reflect.DeepEqual(got.Services, tc.want) {
				t.Errorf("Desired services =\n  %+v\nwant\n  %+v", got.Services, tc.want)
			}
		})
	}
}

// TestDesiredBackendNames: every listener's backend is named by config.BackendName, the one
// place that builds the name.
func TestDesiredBackendNames(t *testing.T) {
	got := Desired(testConfig(t, nil), store.Snapshot{}, nil, render.Data{})
	var names []string
	for _, s := range got.Services {
		for _, l := range s.Listeners {
			names = append(names, l.Name)
			if len(l.Servers) != 0 {
				t.Errorf("listener %s has servers %v with no members, want none", l.Name, l.Servers)
			}
		}
	}
	want := []string{config.BackendName("api", 9000), config.BackendName("web", 8080), config.BackendName("web", 8443)}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("backend names = %q, want %q", names, want)
	}
}

// layoutData is the rendered data newLayout maps backends from: web (8080 on the member's
// port 8001, 8443 on 9443) and api (9000).
func layoutData(t *testing.T) render.Data {
	return Desired(testConfig(t, nil), store.Snapshot{Members: map[string][]model.Member{
		"web": {{Name: "w1", Address: "10.0.0.1", Port: 8001, Weight: 100}},
		"api": {{Name: "a1", Address: "10.0.0.9", Port: 9009, Weight: 100}},
	}}, nil, render.Data{})
}

func TestNewLayout(t *testing.T) {
	for _, tc := range []struct {
		name        string
		cfg         string
		wantService map[string]string
		wantOrder   map[string][]string
		skip        string
	}{
		{
			name: "built-in names, with or without servers",
			cfg: "backend web_8080\n    server w1 10.0.0.1:8001 weight 100\n" +
				"backend web_8443\n" +
				"backend api_9000\n    server a1 10.0.0.9:9009 weight 100\n",
			wantService: map[string]string{"web_8080": "web", "web_8443": "web", "api_9000": "api"},
			wantOrder:   map[string][]string{"web": {"web_8080", "web_8443"}, "api": {"api_9000"}},
		},
		{
			name:        "listen sections count as backends",
			cfg:         "listen api_9000\n    bind :9000\n",
			wantService: map[string]string{"api_9000": "api"},
			wantOrder:   map[string][]string{"api": {"api_9000"}},
		},
		{
			name:        "renamed by a user template: the service whose servers it holds",
			cfg:         "backend be_web\n    server w1 10.0.0.1:8001 weight 100\nbackend be_api\n    server a1 10.0.0.9:9009 check\n",
			wantService: map[string]string{"be_web": "web", "be_api": "api"},
			wantOrder:   map[string][]string{"web": {"be_web"}, "api": {"be_api"}},
		},
		{
			name:        "renamed, one known server among others",
			cfg:         "backend be_mixed\n    server aaa 192.0.2.1:80\n    server w1 10.0.0.1:9443\n",
			wantService: map[string]string{"be_mixed": "web"},
			wantOrder:   map[string][]string{"web": {"be_mixed"}},
		},
		{
			name:        "unknown name, no servers: nothing",
			cfg:         "backend be_static\n    mode http\n",
			wantService: map[string]string{},
			wantOrder:   map[string][]string{},
		},
		{
			name:        "unknown name, unknown servers: nothing",
			cfg:         "backend be_other\n    server x1 192.0.2.1:80\n",
			wantService: map[string]string{},
			wantOrder:   map[string][]string{},
		},
		{
			name:        "a member's name at another address: nothing",
			cfg:         "backend be_other\n    server w1 10.0.0.1:1234\n",
			wantService: map[string]string{},
			wantOrder:   map[string][]string{},
		},
		{
			name:        "a listener's backend the template left out is not mapped",
			cfg:         "backend web_8080\n    server w1 10.0.0.1:8001\n",
			wantService: map[string]string{"web_8080": "web"},
			wantOrder:   map[string][]string{"web": {"web_8080"}},
		},
		{
			// The first listener's servers are at the member's port (8001), the second's at
			// member_port 9443, so the servers say which listener a renamed backend is.
			name:        "renamed backends in listener order",
			cfg:         "backend z_plain\n    server w1 10.0.0.1:8001\nbackend a_tls\n    server w1 10.0.0.1:9443\n",
			wantService: map[string]string{"z_plain": "web", "a_tls": "web"},
			wantOrder:   map[string][]string{"web": {"z_plain", "a_tls"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip != "" {
				t.Skip(tc.skip)
			}
			lay := newLayout(haproxy.ParseConfig([]byte(tc.cfg)), layoutData(t))
			if !reflect.DeepEqual(lay.service, tc.wantService) {
				t.Errorf("service = %v, want %v", lay.service, tc.wantService)
			}
			if !reflect.DeepEqual(lay.order, tc.wantOrder) {
				t.Errorf("order = %v, want %v", lay.order, tc.wantOrder)
			}
		})
	}
}

func TestMemberHealth(t *testing.T) {
	st := func(h string) haproxy.ServerState { return haproxy.ServerState{Health: h, Address: "10.0.0.1"} }
	webLayout := layout{
		service: map[string]string{"web_8080": "web", "web_8443": "web", "api_9000": "api"},
		order:   map[string][]string{"web": {"web_8080", "web_8443"}, "api": {"api_9000"}},
	}
	for _, tc := range []struct {
		name   string
		states map[string]map[string]haproxy.ServerState
		lay    layout
		want   map[string]map[string]string
	}{
		{
			name: "first backend in listener order wins",
			states: map[string]map[string]haproxy.ServerState{
				"web_8080": {"w1": st(haproxy.HealthUp), "w2": st(haproxy.HealthDown)},
				"web_8443": {"w1": st(haproxy.HealthDown), "w2": st(haproxy.HealthUp), "w3": st(haproxy.HealthStarting)},
				"api_9000": {"a1": st(haproxy.HealthMaint)},
			},
			lay: webLayout,
			want: map[string]map[string]string{
				"web": {"w1": haproxy.HealthUp, "w2": haproxy.HealthDown, "w3": haproxy.HealthStarting},
				"api": {"a1": haproxy.HealthMaint},
			},
		},
		{
			name: "the order decides, not the backend names",
			states: map[string]map[string]haproxy.ServerState{
				"a_second": {"w1": st(haproxy.HealthDown)},
				"z_first":  {"w1": st(haproxy.HealthUp)},
			},
			lay:  layout{service: map[string]string{"z_first": "web", "a_second": "web"}, order: map[string][]string{"web": {"z_first", "a_second"}}},
			want: map[string]map[string]string{"web": {"w1": haproxy.HealthUp}},
		},
		{
			name: "backends of no service are ignored",
			states: map[string]map[string]haproxy.ServerState{
				"web_8080":  {"w1": st(haproxy.HealthDrain)},
				"be_static": {"w1": st(haproxy.HealthDown), "s1": st(haproxy.HealthUp)},
			},
			lay:  webLayout,
			want: map[string]map[string]string{"web": {"w1": haproxy.HealthDrain}, "api": {}},
		},
		{
			name:   "no states: every service, no members",
			states: nil,
			lay:    webLayout,
			want:   map[string]map[string]string{"web": {}, "api": {}},
		},
		{
			name:   "empty layout",
			states: map[string]map[string]haproxy.ServerState{"web_8080": {"w1": st(haproxy.HealthUp)}},
			lay:    layout{},
			want:   map[string]map[string]string{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := memberHealth(tc.states, tc.lay); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("memberHealth = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestMemberHealthRenamedListeners: with a user template naming web's backends z_plain (first
// listener) and a_tls (second), a member up on the first listener is up.
func TestMemberHealthRenamedListeners(t *testing.T) {
	p := haproxy.ParseConfig([]byte("backend z_plain\n    server w1 10.0.0.1:8001\nbackend a_tls\n    server w1 10.0.0.1:9443\n"))
	states := map[string]map[string]haproxy.ServerState{
		"z_plain": {"w1": {Health: haproxy.HealthUp, Address: "10.0.0.1"}},
		"a_tls":   {"w1": {Health: haproxy.HealthDown, Address: "10.0.0.1"}},
	}
	got := memberHealth(states, newLayout(p, layoutData(t)))["web"]["w1"]
	if want := haproxy.HealthUp; got != want {
		t.Errorf("health of web/w1 = %q, want %q (first listener's)", got, want)
	}
}
