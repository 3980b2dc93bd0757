package gateway

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

var testTargets = ServiceTargets{"u": {80}, "up1": {80}, "up2": {80}, "web": {80}, "blog": {80}, "api": {80, 8080}}

func testGateway() Gateway {
	return Gateway{Bind: ":80", Headers: []string{"x-canary"}}
}

// The research note's validation cases (testdata/validation_cases.json, from
// shared/notes/l7), each refused with a clear error; the last one is accepted (a missing fail
// branch answers 403, as in Eru).
func TestEruValidationCases(t *testing.T) {
	b, err := os.ReadFile("testdata/validation_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases map[string]EruRules
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"loop":               `domain h.example: eru rules: invalid value: loop: a -> b -> a`,
		"missing":            `domain h.example: eru rules: invalid value: rule "a": points to missing rule "zz"`,
		"unreachable":        `domain h.example: eru rules: invalid value: rules unreachable from init "c": a`,
		"badregex":           `domain h.example: eru rules: invalid value: rule "a": invalid value: regular expression "(x": error parsing regexp: missing closing ): ` + "`(x`",
		"path-after-rewrite": `domain h.example: eru rules: invalid value: rule "b": path test after the rewriting rule "a" (a -> b): its subject would be the rewritten path`,
		"unknown-type":       `domain h.example: eru rules: invalid value: rule "a": unknown type "header": want ua, path or backend`,
	}
	if len(cases) != len(want)+1 {
		t.Fatalf("%d cases in the file, %d here", len(cases), len(want)+1)
	}
	for name, rs := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := CompileEru("h.example", rs, EruByService(testTargets))
			if name == "missing-fail-branch-403" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || err.Error() != want[name] {
				t.Fatalf("got  %v\nwant %s", err, want[name])
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not wrap ErrInvalid", err)
			}
		})
	}
}

func erule(typ string, args map[string]any) EruRule { return EruRule{Type: typ, Args: args} }

func TestEruRefusals(t *testing.T) {
	be := erule("backend", map[string]any{"servername": "u"})
	deep := map[string]EruRule{"b": be}
	for i := 0; i < MaxEruDepth+1; i++ {
		next := "b"
		if i < MaxEruDepth {
			next = "t" + itoa(i+1)
		}
		deep["t"+itoa(i)] = erule("ua", map[string]any{"pattern": "x", "succ": next, "fail": "b"})
	}
	// A DAG whose paths double at every level: 2^10 root-to-leaf paths.
	wide := map[string]EruRule{"b": be}
	for i := 0; i < 10; i++ {
		next := "b"
		if i < 9 {
			next = "w" + itoa(i+1)
		}
		wide["w"+itoa(i)] = erule("ua", map[string]any{"pattern": "x", "succ": next, "fail": next})
	}
	for _, tc := range []struct {
		name string
		r    EruRules
		want string
		sent error
	}{
		{"no init", EruRules{Rules: map[string]EruRule{"b": be}}, "init is missing", ErrInvalid},
		{"no rules", EruRules{Init: "a"}, "rules are missing", ErrInvalid},
		{"unknown init", EruRules{Init: "a", Rules: map[string]EruRule{"b": be}}, `init rule "a" does not exist`, ErrInvalid},
		{"backend without servername", EruRules{Init: "b", Rules: map[string]EruRule{"b": erule("backend", nil)}}, "backend rule has no servername", ErrInvalid},
		{"backend headers", EruRules{Init: "b", Rules: map[string]EruRule{"b": erule("backend", map[string]any{"servername": "u", "expires": "30d"})}}, `backend arg "expires": only servername is accepted`, ErrInvalid},
		{"unknown servername", EruRules{Init: "b", Rules: map[string]EruRule{"b": erule("backend", map[string]any{"servername": "nope"})}}, `unknown service "nope"`, ErrUnknownService},
		{"host:port servername", EruRules{Init: "b", Rules: map[string]EruRule{"b": erule("backend", map[string]any{"servername": "127.0.0.1:7070"})}}, `servername "127.0.0.1:7070": a literal host:port is not supported; name a clb service`, ErrInvalid},
		{"unknown arg", EruRules{Init: "a", Rules: map[string]EruRule{"a": erule("ua", map[string]any{"pattern": "x", "succ": "b", "regex": true}), "b": be}}, `unknown arg "regex" for type ua`, ErrInvalid},
		{"no pattern", EruRules{Init: "a", Rules: map[string]EruRule{"a": erule("ua", map[string]any{"succ": "b"}), "b": be}}, "pattern is required", ErrInvalid},
		{"regex not bool", EruRules{Init: "a", Rules: map[string]EruRule{"a": erule("path", map[string]any{"pattern": "/x", "regex": "yes", "succ": "b"}), "b": be}}, "arg regex: want true or false", ErrInvalid},
		{"succ not string", EruRules{Init: "a", Rules: map[string]EruRule{"a": erule("path", map[string]any{"pattern": "/x", "succ": 3.0}), "b": be}}, "arg succ: want a string", ErrInvalid},
		{"self loop", EruRules{Init: "a", Rules: map[string]EruRule{"a": erule("ua", map[string]any{"pattern": "x", "succ": "a", "fail": "b"}), "b": be}}, "loop: a -> a", ErrInvalid},
		{"long loop", EruRules{Init: "a", Rules: map[string]EruRule{
			"a": erule("ua", map[string]any{"pattern": "x", "succ": "b", "fail": "d"}),
			"b": erule("path", map[string]any{"pattern": "/x", "succ": "d", "fail": "c"}),
			"c": erule("ua", map[string]any{"pattern": "y", "succ": "a"}),
			"d": be,
		}}, "loop: a -> b -> c -> a", ErrInvalid},
		{"too deep", EruRules{Init: "t00", Rules: deep}, "more than 32 tests on the path t00 -> t01", ErrInvalid},
		{"too many entries", EruRules{Init: "w00", Rules: wide}, "more than 256 decision-list entries", ErrInvalid},
		{"backreference", EruRules{Init: "a", Rules: map[string]EruRule{"a": erule("path", map[string]any{"pattern": `^/(a)\1`, "regex": true, "succ": "b"}), "b": be}}, `backreference \1 is not supported`, ErrInvalid},
		{"nested repeat", EruRules{Init: "a", Rules: map[string]EruRule{"a": erule("ua", map[string]any{"pattern": `(a+)+$`, "succ": "b"}), "b": be}}, "unbounded repeat `a+` inside another unbounded repeat", ErrInvalid},
		{"prefix without slash", EruRules{Init: "a", Rules: map[string]EruRule{"a": erule("path", map[string]any{"pattern": "api", "succ": "b"}), "b": be}}, `prefix pattern "api": must start with /`, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CompileEru("h.example", tc.r, EruByService(testTargets))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.sent) {
				t.Fatalf("got %v, want an error with %q wrapping %v", err, tc.want, tc.sent)
			}
		})
	}
}

func itoa(i int) string {
	return string(rune('0'+i/10)) + string(rune('0'+i%10))
}

func TestValidateRefusals(t *testing.T) {
	g := testGateway()
	route := func(r Route) Domain { return Domain{Routes: []Route{r}} }
	for _, tc := range []struct {
		name string
		host string
		d    Domain
		want string
		sent error
	}{
		{"upper-case host", "WWW.example", route(Route{Name: "a", Service: "web"}), `domain "WWW.example": want a lower-case host name`, ErrInvalid},
		{"host with port", "www.example:80", route(Route{Name: "a", Service: "web"}), "without port", ErrInvalid},
		{"host with dot", "www.example.", route(Route{Name: "a", Service: "web"}), "trailing dot", ErrInvalid},
		{"ipv6 host", "::1", route(Route{Name: "a", Service: "web"}), "want a lower-case host name or IPv4", ErrInvalid},
		{"route name", "h.example", route(Route{Name: "a b", Service: "web"}), `route 1: name "a b"`, ErrInvalid},
		{"duplicate name", "h.example", Domain{Routes: []Route{{Name: "a", Service: "web"}, {Name: "a", Service: "web"}}}, `route "a": duplicate name`, ErrInvalid},
		{"two paths", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathExact: "/a", PathPrefix: "/b"}}), "at most one of path_exact", ErrInvalid},
		{"relative path", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathPrefix: "api"}}), `path_prefix "api": must start with /`, ErrInvalid},
		{"space in path", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathExact: "/a b"}}), "no spaces", ErrInvalid},
		{"query in path", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathExact: "/a?b=1"}}), "no spaces, control characters, non-ASCII, \\, ? or #", ErrInvalid},
		{"segment slash", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathSegmentPrefix: "/api/"}}), "must not end with /", ErrInvalid},
		{"bad method", "h.example", route(Route{Name: "a", Service: "web", Match: Match{Methods: []string{"get"}}}), `method "get"`, ErrInvalid},
		{"duplicate method", "h.example", route(Route{Name: "a", Service: "web", Match: Match{Methods: []string{"GET", "GET"}}}), "method GET listed twice", ErrInvalid},
		{"undeclared header", "h.example", route(Route{Name: "a", Service: "web", Match: Match{Headers: map[string]string{"x-other": "1"}}}), `header "x-other" is not among the gateway's headers`, ErrInvalid},
		{"bad regex", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathRegex: "(x"}}), "path_regex: invalid value: regular expression \"(x\": error parsing regexp: missing closing )", ErrInvalid},
		{"lookahead", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathRegex: "^/(?=a)"}}), "lookaround (?=...) is not supported", ErrInvalid},
		{"lookbehind", "h.example", route(Route{Name: "a", Service: "web", Match: Match{UserAgent: "(?<!a)b"}}), "lookaround (?<!...) is not supported", ErrInvalid},
		{"backreference", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathRegex: `(a)\1`}}), `backreference \1`, ErrInvalid},
		{"nested", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathRegex: `^(/[a-z]*)*$`}}), "unbounded repeat `[a-z]*` inside another unbounded repeat", ErrInvalid},
		{"nested counted", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathRegex: `(x+){2,}`}}), "inside another unbounded repeat", ErrInvalid},
		{"non-ascii", "h.example", route(Route{Name: "a", Service: "web", Match: Match{UserAgent: "é"}}), "only printable ASCII", ErrInvalid},
		{"long regex", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathRegex: strings.Repeat("a", MaxRegexLen+1)}}), "regular expression of 513 bytes: at most 512", ErrInvalid},
		{"no action", "h.example", route(Route{Name: "a"}), "a route needs a service or a status", ErrInvalid},
		{"both actions", "h.example", route(Route{Name: "a", Service: "web", Status: 403}), "service and status are exclusive", ErrInvalid},
		{"bad status", "h.example", route(Route{Name: "a", Status: 302}), "status 302: want one of", ErrInvalid},
		{"bad no-match status", "h.example", Domain{NoMatchStatus: 299}, "no_match_status 299", ErrInvalid},
		{"unknown service", "h.example", route(Route{Name: "a", Service: "nope"}), `route "a": unknown service "nope": no service "nope"`, ErrUnknownService},
		{"unknown port", "h.example", route(Route{Name: "a", Service: "web", Port: 81}), `unknown service "web": service "web" has no http listener on port 81`, ErrUnknownService},
		{"ambiguous port", "h.example", route(Route{Name: "a", Service: "api"}), `service "api" has 2 http listeners: name the port`, ErrUnknownService},
		{"bad service name", "h.example", route(Route{Name: "a", Service: "Web"}), `service name "Web"`, ErrInvalid},
		{"status rewrite", "h.example", route(Route{Name: "a", Status: 403, Match: Match{PathPrefix: "/a"}, Rewrite: &Rewrite{StripPrefix: "/a"}}), "a route with a fixed status has no rewrite", ErrInvalid},
		{"two rewrites", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathPrefix: "/a"}, Rewrite: &Rewrite{StripPrefix: "/a", ReplacePrefix: "/b"}}), "exactly one of strip_prefix", ErrInvalid},
		{"strip other prefix", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathPrefix: "/a"}, Rewrite: &Rewrite{StripPrefix: "/b"}}), `strip_prefix "/b": must be the route's path_prefix`, ErrInvalid},
		{"strip without prefix", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathRegex: "^/a"}, Rewrite: &Rewrite{StripPrefix: "/a"}}), "must be the route's path_prefix or path_segment_prefix", ErrInvalid},
		{"replace on exact", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathExact: "/a"}, Rewrite: &Rewrite{ReplacePrefix: "/b"}}), "replace_prefix needs a path_prefix", ErrInvalid},
		{"replacement without regex", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathPrefix: "/a"}, Rewrite: &Rewrite{Replacement: "/b"}}), "replacement needs a path_regex", ErrInvalid},
		{"replacement group", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathRegex: "^/(a)"}, Rewrite: &Rewrite{Replacement: `/\2`}}), `\2: path_regex has 1 groups`, ErrInvalid},
		{"replacement relative", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathRegex: "^/(a)"}, Rewrite: &Rewrite{Replacement: `\1`}}), "must start with /", ErrInvalid},
		{"replacement escape", "h.example", route(Route{Name: "a", Service: "web", Match: Match{PathRegex: "^/(a)"}, Rewrite: &Rewrite{Replacement: `/\x`}}), `no spaces, control characters, non-ASCII, \, ? or #`, ErrInvalid},
		{"routes and eru", "h.example", Domain{Routes: []Route{{Name: "a", Service: "web"}}, Eru: &EruRules{Init: "b", Rules: map[string]EruRule{"b": erule("backend", map[string]any{"servername": "u"})}}}, "either routes or an Eru rule set", ErrInvalid},
		{"certificate path", "h.example", Domain{Certificate: "certs/a.pem"}, "want an absolute path", ErrInvalid},
		{"certificate injection", "h.example", Domain{Certificate: "/a.pem\n    bind :1"}, "no spaces", ErrInvalid},
		{"case flag alone", "h.example", route(Route{Name: "a", Service: "web", Match: Match{UserAgentCaseSensitive: true}}), "user_agent_case_sensitive without user_agent", ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ValidateDomain(tc.host, tc.d, g, testTargets)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.sent) {
				t.Fatalf("got %v\nwant an error with %q wrapping %v", err, tc.want, tc.sent)
			}
		})
	}
}

func TestValidateGatewayRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		gw   string
		g    Gateway
		want string
	}{
		{"name", "Pub", Gateway{Bind: ":80"}, `gateway name "Pub"`},
		{"no bind", "pub", Gateway{}, `bind "": want address:port`},
		{"bind host name", "pub", Gateway{Bind: "lb.example:80"}, `"lb.example" is not an IP address`},
		{"bind port", "pub", Gateway{Bind: ":0"}, `port "0": want 1-65535`},
		{"bind port text", "pub", Gateway{Bind: ":http"}, `port "http"`},
		{"protocol", "pub", Gateway{Bind: ":80", Protocol: "tcp"}, `protocol "tcp": want http or https`},
		{"default status", "pub", Gateway{Bind: ":80", DefaultStatus: 302}, "default_status 302"},
		{"too many headers", "pub", Gateway{Bind: ":80", Headers: []string{"a", "b", "c", "d", "e"}}, "5 headers: at most 4"},
		{"header case", "pub", Gateway{Bind: ":80", Headers: []string{"X-Canary"}}, `header "X-Canary": want a lower-case header field name`},
		{"header host", "pub", Gateway{Bind: ":80", Headers: []string{"host"}}, `header "host": routes match it with their own fields`},
		{"header twice", "pub", Gateway{Bind: ":80", Headers: []string{"x-a", "x-a"}}, `header "x-a" listed twice`},
		{"certificates", "pub", Gateway{Bind: ":443", Protocol: "https", Certificates: "/etc/certs dir"}, "no spaces"},
		{"domain", "pub", Gateway{Bind: ":80", Domains: map[string]Domain{"a.example": {Routes: []Route{{Name: "x"}}}}}, `gateway pub: domain a.example: route "x": invalid value: a route needs a service or a status`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Validate(tc.gw, tc.g, testTargets)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v\nwant an error with %q", err, tc.want)
			}
			// Compile refuses what Validate refuses.
			if _, err := Compile(map[string]Gateway{tc.gw: tc.g}, testTargets); err == nil {
				t.Error("Compile accepts it")
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	g := testGateway()
	d := Domain{Routes: []Route{
		{Name: "api", Match: Match{PathPrefix: "/api"}, Service: "web"},
		{Name: "api-v1", Match: Match{PathPrefix: "/api/v1"}, Service: "blog"},
		{Name: "seg", Match: Match{PathSegmentPrefix: "/blog"}, Service: "blog"},
		{Name: "seg-exact", Match: Match{PathExact: "/blog/x"}, Service: "web"},
		{Name: "seg-not", Match: Match{PathExact: "/blogx"}, Service: "web"},
		{Name: "get", Match: Match{Methods: []string{"GET", "HEAD"}, PathPrefix: "/m"}, Service: "web"},
		{Name: "get-only", Match: Match{Methods: []string{"GET"}, PathPrefix: "/m/x"}, Service: "web"},
		{Name: "post", Match: Match{Methods: []string{"POST"}, PathPrefix: "/m/x"}, Service: "web"},
		{Name: "ua", Match: Match{UserAgent: "Mobile"}, Service: "web"},
		{Name: "all", Service: "web"},
		{Name: "after-all", Match: Match{PathExact: "/z"}, Service: "blog"},
	}}
	got, err := ValidateDomain("h.example", d, g, testTargets)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`domain h.example: route "ua": user_agent "Mobile" has upper-case letters but is matched against the lower-cased User-Agent (set user_agent_case_sensitive, or write the pattern in lower case)`,
		`domain h.example: route "api-v1" is unreachable: route "api" before it matches every request it matches`,
		`domain h.example: route "seg-exact" is unreachable: route "seg" before it matches every request it matches`,
		`domain h.example: route "get-only" is unreachable: route "get" before it matches every request it matches`,
		`domain h.example: route "after-all" is unreachable: route "all" before it matches every request it matches`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
