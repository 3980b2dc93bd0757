package haproxy

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// baseCfg is shaped like the built-in template's output: comments, blank lines, a global and a
// defaults section, a frontend and a backend with a default-server line and two servers.
const baseCfg = `# haproxy.cfg rendered by clbd from built-in template — do not edit: changes are overwritten.
global
    # No maxconn: haproxy derives it from the file-descriptor limit it is given.
    stats socket /run/clb/admin.sock mode 600 level admin expose-fd listeners
    hard-stop-after 60s

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s

# service web, listener http :8080 -> members port 8000
frontend web_8080
    mode http
    bind :8080
    default_backend web_8080

backend web_8080
    mode http
    balance roundrobin
    default-server init-addr last,libc,none pool-purge-delay 500ms check inter 10000ms rise 2 fall 3
    server m1 10.0.0.1:8000 weight 100
    server m2 10.0.0.2:8000 weight 50
`

// baseSkeleton is baseCfg without comments, blank lines and servers, whitespace folded.
const baseSkeleton = `global
stats socket /run/clb/admin.sock mode 600 level admin expose-fd listeners
hard-stop-after 60s
defaults
mode http
timeout connect 5s
timeout client 60s
timeout server 60s
frontend web_8080
mode http
bind :8080
default_backend web_8080
backend web_8080
mode http
balance roundrobin
default-server init-addr last,libc,none pool-purge-delay 500ms check inter 10000ms rise 2 fall 3
`

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name           string
		cfg            string
		wantServers    map[string]map[string]Server
		wantDefaults   map[string][]string
		wantReloadOnly map[string]string
		wantBackends   []string
		wantSkeleton   string // "" = not checked
		skip           string
	}{
		{
			name: "built-in shape",
			cfg:  baseCfg,
			wantServers: map[string]map[string]Server{"web_8080": {
				"m1": {Name: "m1", Addr: "10.0.0.1:8000", Args: []string{"weight", "100"}},
				"m2": {Name: "m2", Addr: "10.0.0.2:8000", Args: []string{"weight", "50"}},
			}},
			wantDefaults: map[string][]string{"web_8080": {"init-addr", "last,libc,none", "pool-purge-delay", "500ms", "check", "inter", "10000ms", "rise", "2", "fall", "3"}},
			wantBackends: []string{"web_8080"},
			wantSkeleton: baseSkeleton,
		},
		{
			name: "listen section holds servers",
			cfg:  "listen stats_db\n    bind :3306\n    mode tcp\n    server db1 10.0.0.9:3306 check\n",
			wantServers: map[string]map[string]Server{"stats_db": {
				"db1": {Name: "db1", Addr: "10.0.0.9:3306", Args: []string{"check"}},
			}},
			wantBackends: []string{"stats_db"},
			wantSkeleton: "listen stats_db\nbind :3306\nmode tcp\n",
		},
		{
			name:         "server with no arguments",
			cfg:          "backend b\n    server s1 10.0.0.1:80\n",
			wantServers:  map[string]map[string]Server{"b": {"s1": {Name: "s1", Addr: "10.0.0.1:80", Args: []string{}}}},
			wantBackends: []string{"b"},
			wantSkeleton: "backend b\n",
		},
		{
			name:         "backends without servers are listed",
			cfg:          "frontend f\n    bind :80\n    default_backend empty\nbackend empty\n    mode http\nbackend full\n    server s1 10.0.0.1:80\n",
			wantServers:  map[string]map[string]Server{"full": {"s1": {Name: "s1", Addr: "10.0.0.1:80", Args: []string{}}}},
			wantBackends: []string{"empty", "full"},
		},
		{
			name:         "frontend, global and defaults are not backends",
			cfg:          "global\n    daemon\ndefaults\n    mode http\nfrontend web\n    bind :80\n",
			wantBackends: nil,
			wantSkeleton: "global\ndaemon\ndefaults\nmode http\nfrontend web\nbind :80\n",
		},
		{
			name:           "cookie is reload-only",
			cfg:            "backend sticky\n    balance roundrobin\n    cookie SRV insert indirect nocache\n    server s1 10.0.0.1:80 cookie s1\n",
			wantServers:    map[string]map[string]Server{"sticky": {"s1": {Name: "s1", Addr: "10.0.0.1:80", Args: []string{"cookie", "s1"}}}},
			wantReloadOnly: map[string]string{"sticky": "cookie stickiness: haproxy 2.6 refuses cookies on dynamic servers"},
			wantBackends:   []string{"sticky"},
		},
		{
			name:           "balance static-rr is reload-only",
			cfg:            "backend b\n    balance static-rr\n",
			wantReloadOnly: map[string]string{"b": "balance static-rr: haproxy 2.6 refuses dynamic servers with it"},
			wantBackends:   []string{"b"},
		},
		{
			name:           "balance source is reload-only",
			cfg:            "backend b\n    balance source\n",
			wantReloadOnly: map[string]string{"b": "balance source: haproxy 2.6 refuses dynamic servers with it"},
			wantBackends:   []string{"b"},
		},
		{
			name:           "balance uri is reload-only",
			cfg:            "listen l\n    balance uri\n",
			wantReloadOnly: map[string]string{"l": "balance uri: haproxy 2.6 refuses dynamic servers with it"},
			wantBackends:   []string{"l"},
		},
		{
			name:         "dynamic balances are not reload-only",
			cfg:          "backend rr\n    balance roundrobin\nbackend lc\n    balance leastconn\nbackend fi\n    balance first\nbackend ra\n    balance random\n",
			wantBackends: []string{"fi", "lc", "ra", "rr"},
		},
		{
			name:         "cookie and balance outside a backend are not reload-only",
			cfg:          "frontend f\n    balance source\n    cookie SRV insert\nbackend b\n    mode http\n",
			wantBackends: []string{"b"},
		},
		{
			name: "comments, blank lines, tabs and runs of spaces",
			cfg:  "\n# top\nbackend   b\n\n\t# inside\n\tmode   http\n\t\tserver\ts1   10.0.0.1:80\t weight  7\n   \n",
			wantServers: map[string]map[string]Server{"b": {
				"s1": {Name: "s1", Addr: "10.0.0.1:80", Args: []string{"weight", "7"}},
			}},
			wantBackends: []string{"b"},
			wantSkeleton: "backend b\nmode http\n",
		},
		{
			name:         "CRLF line ends",
			cfg:          "backend b\r\n    mode http\r\n    server s1 10.0.0.1:80 weight 7\r\n",
			wantServers:  map[string]map[string]Server{"b": {"s1": {Name: "s1", Addr: "10.0.0.1:80", Args: []string{"weight", "7"}}}},
			wantBackends: []string{"b"},
			wantSkeleton: "backend b\nmode http\n",
		},
		{
			// haproxy applies every default-server line in turn: they add up.
			name:         "default-server lines add up",
			cfg:          "backend b\n    default-server check\n    default-server inter 2s\n",
			wantDefaults: map[string][]string{"b": {"check", "inter", "2s"}},
			wantBackends: []string{"b"},
		},
		{
			// haproxy copies a defaults section's default-server into every backend after it,
			// and dynamic servers inherit neither: a server added at runtime to b gets no
			// health check although the reload path gives it one.
			name:         "default-server of a defaults section applies to the backends",
			cfg:          "defaults\n    mode http\n    default-server check inter 2s\nbackend b\n    server s1 10.0.0.1:80\n",
			wantServers:  map[string]map[string]Server{"b": {"s1": {Name: "s1", Addr: "10.0.0.1:80", Args: []string{}}}},
			wantDefaults: map[string][]string{"b": {"check", "inter", "2s"}},
			wantBackends: []string{"b"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip != "" {
				t.Skip(tc.skip)
			}
			got := ParseConfig([]byte(tc.cfg))
			if tc.wantServers == nil {
				tc.wantServers = map[string]map[string]Server{}
			}
			if tc.wantDefaults == nil {
				tc.wantDefaults = map[string][]string{}
			}
			if tc.wantReloadOnly == nil {
				tc.wantReloadOnly = map[string]string{}
			}
			if !reflect.DeepEqual(got.Servers, tc.wantServers) {
				t.Errorf("Servers = %v, want %v", got.Servers, tc.wantServers)
			}
			if !reflect.DeepEqual(got.Defaults, tc.wantDefaults) {
				t.Errorf("Defaults = %q, want %q", got.Defaults, tc.wantDefaults)
			}
			if !reflect.DeepEqual(got.ReloadOnly, tc.wantReloadOnly) {
				t.Errorf("ReloadOnly = %q, want %q", got.ReloadOnly, tc.wantReloadOnly)
			}
			if b := slices.Sorted(maps.Keys(got.Backends)); !slices.Equal(b, tc.wantBackends) {
				t.Errorf("Backends = %q, want %q", b, tc.wantBackends)
			}
			for b, ok := range got.Backends {
				if !ok {
					t.Errorf("Backends[%q] = false, want only true entries", b)
				}
			}
			if tc.wantSkeleton != "" && got.Skeleton != tc.wantSkeleton {
				t.Errorf("Skeleton = %q, want %q", got.Skeleton, tc.wantSkeleton)
			}
			for _, line := range strings.Split(got.Skeleton, "\n") {
				if strings.HasPrefix(line, "server ") || strings.HasPrefix(line, "#") || line != strings.Join(strings.Fields(line), " ") {
					t.Errorf("Skeleton line %q: want no servers, no comments, whitespace folded", line)
				}
			}
		})
	}
}

// TestSkeletonEqual: equal skeletons are what lets a change go through the runtime API, so
// server-only changes must keep them equal and anything else must not.
func TestSkeletonEqual(t *testing.T) {
	edit := func(old, new string) string {
		if !strings.Contains(baseCfg, old) {
			panic("baseCfg has no " + old)
		}
		return strings.Replace(baseCfg, old, new, 1)
	}
	for _, tc := range []struct {
		name, next string
		wantEqual  bool
	}{
		{"identical", baseCfg, true},
		{"server added", edit("weight 50\n", "weight 50\n    server m3 10.0.0.3:8000 weight 100\n"), true},
		{"server removed", edit("    server m2 10.0.0.2:8000 weight 50\n", ""), true},
		{"all servers removed", edit("    server m1 10.0.0.1:8000 weight 100\n    server m2 10.0.0.2:8000 weight 50\n", ""), true},
		{"weight changed", edit("weight 50", "weight 0"), true},
		{"server address changed", edit("10.0.0.2:8000", "10.0.0.22:8000"), true},
		{"servers reordered", edit("    server m1 10.0.0.1:8000 weight 100\n    server m2 10.0.0.2:8000 weight 50\n", "    server m2 10.0.0.2:8000 weight 50\n    server m1 10.0.0.1:8000 weight 100\n"), true},
		{"re-indented with tabs", strings.ReplaceAll(baseCfg, "\n    ", "\n\t"), true},
		{"runs of spaces", edit("timeout client 60s", "timeout   client\t60s"), true},
		{"comment and blank lines added", edit("\nbackend web_8080\n", "\n# a comment\n\nbackend web_8080\n    # another\n\n"), true},
		{"trailing spaces", strings.ReplaceAll(baseCfg, "\n", "  \n"), true},
		{"new backend", baseCfg + "\nbackend api_9000\n    mode http\n", false},
		{"new backend with servers", baseCfg + "\nbackend api_9000\n    server a1 10.0.0.5:9000 weight 100\n", false},
		{"backend renamed", strings.ReplaceAll(baseCfg, "web_8080", "web_8081"), false},
		{"timeout changed", edit("timeout server 60s", "timeout server 30s"), false},
		{"balance changed", edit("balance roundrobin", "balance leastconn"), false},
		{"default-server changed", edit("rise 2 fall 3", "rise 3 fall 3"), false},
		{"bind changed", edit("bind :8080", "bind :8081"), false},
		{"global line added", edit("hard-stop-after 60s\n", "hard-stop-after 60s\n    maxconn 1000\n"), false},
		{"trailing comment changed", edit("mode http\n    bind", "mode http # plain\n    bind"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prev, next := ParseConfig([]byte(baseCfg)), ParseConfig([]byte(tc.next))
			if got := prev.Skeleton == next.Skeleton; got != tc.wantEqual {
				t.Errorf("skeletons equal = %v, want %v\nprev:\n%s\nnext:\n%s", got, tc.wantEqual, prev.Skeleton, next.Skeleton)
			}
		})
	}
}

// describe is a change as a test reads it: +B/S ADDR ARGS, -B/S, ~B/S OLD -> NEW.
func describe(c ServerChange) string {
	line := func(s *Server) string { return strings.TrimSpace(s.Addr + " " + strings.Join(s.Args, " ")) }
	switch {
	case c.Old == nil:
		return fmt.Sprintf("+%s/%s %s", c.Backend, c.New.Name, line(c.New))
	case c.New == nil:
		return fmt.Sprintf("-%s/%s", c.Backend, c.Old.Name)
	}
	return fmt.Sprintf("~%s/%s %s -> %s", c.Backend, c.New.Name, line(c.Old), line(c.New))
}

func TestDiffServers(t *testing.T) {
	const old = `backend web
    server m1 10.0.0.1:80 weight 100
    server m2 10.0.0.2:80 weight 100
    server m3 10.0.0.3:80 weight 100 check
`
	for _, tc := range []struct {
		name     string
		old, new string
		want     []string
	}{
		{"unchanged", old, old, nil},
		{"unchanged, reordered and re-indented", old, "backend web\n\tserver m3  10.0.0.3:80 weight 100 check\n\tserver m2 10.0.0.2:80 weight 100\n\tserver m1 10.0.0.1:80 weight 100\n", nil},
		{"added", old, old + "    server m4 10.0.0.4:80 weight 10\n", []string{"+web/m4 10.0.0.4:80 weight 10"}},
		{"removed", old, strings.Replace(old, "    server m2 10.0.0.2:80 weight 100\n", "", 1), []string{"-web/m2"}},
		{"weight changed", old, strings.Replace(old, "10.0.0.1:80 weight 100", "10.0.0.1:80 weight 5", 1), []string{"~web/m1 10.0.0.1:80 weight 100 -> 10.0.0.1:80 weight 5"}},
		{"address changed", old, strings.Replace(old, "10.0.0.2:80", "10.0.0.20:80", 1), []string{"~web/m2 10.0.0.2:80 weight 100 -> 10.0.0.20:80 weight 100"}},
		{"argument dropped", old, strings.Replace(old, "weight 100 check", "weight 100", 1), []string{"~web/m3 10.0.0.3:80 weight 100 check -> 10.0.0.3:80 weight 100"}},
		{"whole backend added", "", old, []string{"+web/m1 10.0.0.1:80 weight 100", "+web/m2 10.0.0.2:80 weight 100", "+web/m3 10.0.0.3:80 weight 100 check"}},
		{"whole backend removed", old, "backend web\n", []string{"-web/m1", "-web/m2", "-web/m3"}},
		{
			name: "sorted by backend, then name",
			old:  "backend zeta\n    server b 10.0.0.2:80\nbackend alpha\n    server z 10.0.0.26:80\n",
			new:  "backend zeta\n    server c 10.0.0.3:80\n    server a 10.0.0.1:80\nbackend alpha\n    server y 10.0.0.25:80\n",
			want: []string{"+alpha/y 10.0.0.25:80", "-alpha/z", "+zeta/a 10.0.0.1:80", "-zeta/b", "+zeta/c 10.0.0.3:80"},
		},
		{
			name: "same server name in two backends",
			old:  "backend a\n    server m1 10.0.0.1:80 weight 1\nbackend b\n    server m1 10.0.0.1:81 weight 1\n",
			new:  "backend a\n    server m1 10.0.0.1:80 weight 1\nbackend b\n    server m1 10.0.0.1:81 weight 2\n",
			want: []string{"~b/m1 10.0.0.1:81 weight 1 -> 10.0.0.1:81 weight 2"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, c := range DiffServers(ParseConfig([]byte(tc.old)), ParseConfig([]byte(tc.new))) {
				got = append(got, describe(c))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("DiffServers =\n  %q\nwant\n  %q", got, tc.want)
			}
		})
	}
}

func TestServerChangeWeightOnly(t *testing.T) {
	srv := func(addr string, args ...string) *Server { return &Server{Name: "m1", Addr: addr, Args: args} }
	for _, tc := range []struct {
		name       string
		old, new   *Server
		wantWeight string
		wantOK     bool
	}{
		{"weight only", srv("10.0.0.1:80", "weight", "100"), srv("10.0.0.1:80", "weight", "20"), "20", true},
		{"weight to 0", srv("10.0.0.1:80", "weight", "100"), srv("10.0.0.1:80", "weight", "0"), "0", true},
		{"weight only, other args kept", srv("10.0.0.1:80", "check", "weight", "100", "backup"), srv("10.0.0.1:80", "check", "weight", "1", "backup"), "1", true},
		{"weight moved among the same args", srv("10.0.0.1:80", "weight", "100", "check"), srv("10.0.0.1:80", "check", "weight", "50"), "50", true},
		{"weight given where there was none", srv("10.0.0.1:80"), srv("10.0.0.1:80", "weight", "50"), "50", true},
		{"weight dropped", srv("10.0.0.1:80", "weight", "50"), srv("10.0.0.1:80"), "", false},
		{"same weight", srv("10.0.0.1:80", "weight", "50"), srv("10.0.0.1:80", "weight", "50"), "50", false},
		{"address changed", srv("10.0.0.1:80", "weight", "100"), srv("10.0.0.2:80", "weight", "20"), "", false},
		{"address changed, same weight", srv("10.0.0.1:80", "weight", "100"), srv("10.0.0.1:81", "weight", "100"), "", false},
		{"other arg changed too", srv("10.0.0.1:80", "weight", "100"), srv("10.0.0.1:80", "weight", "20", "check"), "20", false},
		{"other arg changed, same weight", srv("10.0.0.1:80", "weight", "100", "check"), srv("10.0.0.1:80", "weight", "100"), "100", false},
		{"added", nil, srv("10.0.0.1:80", "weight", "100"), "", false},
		{"removed", srv("10.0.0.1:80", "weight", "100"), nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, ok := ServerChange{Backend: "web", Old: tc.old, New: tc.new}.WeightOnly()
			if ok != tc.wantOK {
				t.Errorf("WeightOnly() ok = %v, want %v", ok, tc.wantOK)
			}
			if ok && w != tc.wantWeight {
				t.Errorf("WeightOnly() weight = %q, want %q", w, tc.wantWeight)
			}
		})
	}
}

func TestAddArgs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		srv      Server
		defaults []string
		want     string
	}{
		{"no defaults", Server{Addr: "10.0.0.1:80", Args: []string{"weight", "100"}}, nil, "10.0.0.1:80 weight 100"},
		{"no args at all", Server{Addr: "10.0.0.1:80"}, nil, "10.0.0.1:80"},
		{
			"built-in defaults: init-addr and its value dropped, defaults before own args",
			Server{Addr: "10.0.0.1:8000", Args: []string{"weight", "256"}},
			[]string{"init-addr", "last,libc,none", "pool-purge-delay", "500ms", "check", "inter", "10000ms", "rise", "2", "fall", "3"},
			"10.0.0.1:8000 pool-purge-delay 500ms check inter 10000ms rise 2 fall 3 weight 256",
		},
		{"init-addr last", Server{Addr: "[::1]:80", Args: []string{"weight", "1"}}, []string{"check", "init-addr", "none"}, "[::1]:80 check weight 1"},
		{"init-addr without value", Server{Addr: "h:80"}, []string{"check", "init-addr"}, "h:80 check"},
		{"own args after defaults even when they repeat", Server{Addr: "h:80", Args: []string{"inter", "1s"}}, []string{"inter", "5s"}, "h:80 inter 5s inter 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := AddArgs(tc.srv, tc.defaults); got != tc.want {
				t.Errorf("AddArgs = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestHasCheck(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		defaults []string
		want     bool
	}{
		{"in defaults", []string{"weight", "1"}, []string{"init-addr", "none", "check", "inter", "2s"}, true},
		{"in own args", []string{"weight", "1", "check"}, nil, true},
		{"in both", []string{"check"}, []string{"check"}, true},
		{"neither", []string{"weight", "1"}, []string{"inter", "2s"}, false},
		{"nothing", nil, nil, false},
		{"check-ssl alone is no check", []string{"check-ssl"}, []string{"check-sni", "x"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := HasCheck(Server{Addr: "10.0.0.1:80", Args: tc.args}, tc.defaults); got != tc.want {
				t.Errorf("HasCheck(%q, %q) = %v, want %v", tc.args, tc.defaults, got, tc.want)
			}
		})
	}
}
