package gateway

import (
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// evalEntries runs a decision list in Go, the way the map_regm key means it: the first entry
// whose conditions all hold (and whose rewrite pattern matches) decides.
func evalEntries(entries []Entry, req Request) (Decision, bool) {
	ua := req.UserAgent
	fields := map[Field]string{FieldMethod: req.Method, FieldUA: lowerASCII(ua), FieldUARaw: ua, FieldPath: req.Path}
	for h, v := range req.Headers {
		fields[FieldHeader+Field(h)] = v
	}
	for _, e := range entries {
		ok := true
		for _, c := range e.Conds {
			v := fields[c.Field]
			switch c.Kind {
			case CondMethods:
				ok = slices.Contains(c.Values, v)
			case CondExact:
				ok = v == c.Value
			case CondPrefix:
				ok = strings.HasPrefix(v, c.Value)
			case CondSegment:
				ok = v == c.Value || strings.HasPrefix(v, c.Value+"/")
			case CondRegex:
				ok = (c.Field == FieldPath || v != "") && regexp.MustCompile(c.Value).MatchString(v)
			}
			if !ok {
				break
			}
		}
		if !ok {
			continue
		}
		d := Decision{Backend: e.Backend, Status: e.Status, Path: req.Path}
		if rw := e.Rewrite; rw != nil {
			p := req.Path
			switch rw.Kind {
			case RewriteStrip:
				d.Path = "/" + strings.TrimPrefix(p[len(rw.Prefix):], "/")
			case RewriteReplace:
				d.Path = rw.Replacement + p[len(rw.Prefix):]
			case RewriteRegex, RewriteEru:
				g := regexp.MustCompile(rw.Pattern).FindStringSubmatch(p)
				if g == nil {
					continue
				}
				if rw.Kind == RewriteRegex {
					d.Path = expand(rw.Replacement, g)
				} else if len(g) > 1 {
					d.Path = "/" + g[1]
				} else {
					d.Path = "/"
				}
			}
			d.Path = squeeze(d.Path)
		}
		if d.Status != 0 {
			d.Path = req.Path
		}
		return d, true
	}
	return Decision{}, false
}

// TestDecisionListsMatchModel checks the decision-list algorithm (route and Eru graph →
// ordered entries) against the model on many random gateways, in Go only: the haproxy
// differential test then only has to show that haproxy runs the entries as Go does.
func TestDecisionListsMatchModel(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	checked := 0
	for round := range 40 {
		g, hosts := randGateway(r)
		m, err := NewModel("f", g, diffServices)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Compile(map[string]Gateway{"f": g}, diffServices)
		if err != nil {
			t.Fatal(err)
		}
		paths := seedPaths(g)
		for range 300 {
			req := randRequest(r, hosts, paths)
			host, _, _ := strings.Cut(strings.ToLower(req.Host), ":")
			d, ok := g.Domains[host]
			if !ok {
				continue
			}
			want := m.Resolve(req)
			got, matched := evalEntries(c.Domains["f"][host], req)
			if !matched {
				got = status(orDefault(d.NoMatchStatus), req.Path)
			}
			if want.Status != 0 {
				want.Path = req.Path
			}
			if got != want {
				t.Fatalf("round %d %+v:\n entries %+v\n model   %+v\n domain %s\n entries %s", round, req, got, want, jsonOf(d), jsonOf(c.Domains["f"][host]))
			}
			checked++
		}
	}
	t.Logf("%d requests agree", checked)
}

// FuzzPCREEmission: what the emitter writes for haproxy means what the user's pattern means
// in Go (on subjects without "\n", which no request field holds), groups included.
func FuzzPCREEmission(f *testing.F) {
	for _, p := range append(append([]string{`^/blog/(\S+)$`, `(?i)k[^a]`, `a.b|c$`, `(?s).+?`, `[[:^alpha:]]{2}`, `\bx\B`, `(?U)a+b`}, diffPathRe...), diffUARe...) {
		f.Add(p, "/blog/a b/Kz", "xAxb")
	}
	f.Fuzz(func(t *testing.T, p, s1, s2 string) {
		re, err := parseRegex(p)
		if err != nil {
			return
		}
		e := pcre(re.tree, true)
		if strings.Contains(e, "(?!)") {
			return // Go has no (?!); the emitter writes it only for classes that match nothing in ASCII
		}
		// The key runs in (?m): ^ and $ are line anchors.
		ge, err := regexp.Compile("(?m)" + e)
		if err != nil {
			t.Fatalf("%q emits %q, which Go cannot parse: %v", p, e, err)
		}
		for _, s := range []string{s1, s2, s1 + s2, ""} {
			if strings.ContainsAny(s, "\n") || !isASCII(s) {
				continue
			}
			a, b := re.re.FindStringSubmatch(s), ge.FindStringSubmatch(s)
			if !slices.Equal(a, b) {
				t.Fatalf("%q on %q: Go %q, emitted %q gives %q", p, s, a, e, b)
			}
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// FuzzNoConfigInjection: whatever a route holds, what is accepted compiles to map lines
// without line breaks, keys without white space, and an unchanged scaffold.
func FuzzNoConfigInjection(f *testing.F) {
	f.Add("a.example", "/a", "ua", "/b", `^/(x)`, `/\1`, "x-h")
	f.Add("b.example", "/a\nuse_backend x", "ua\r\n", "/b c", `(a)\n`, "/\n", "x-h")
	f.Fuzz(func(t *testing.T, host, prefix, ua, exact, re, repl, hdr string) {
		g := Gateway{Bind: "127.0.0.1:80", Headers: []string{"x-h"}, Domains: map[string]Domain{host: {Routes: []Route{
			{Name: "p", Match: Match{PathPrefix: prefix, UserAgent: ua}, Service: "s1", Rewrite: &Rewrite{ReplacePrefix: exact}},
			{Name: "r", Match: Match{PathRegex: re, Headers: map[string]string{"x-h": hdr}}, Service: "s2", Rewrite: &Rewrite{Replacement: repl}},
			{Name: "e", Match: Match{PathExact: exact}, Status: 403},
		}}}}
		if _, err := Validate("fz", g, diffServices); err != nil {
			return
		}
		c, err := Compile(map[string]Gateway{"fz": g}, diffServices)
		if err != nil {
			t.Fatalf("Validate accepts what Compile refuses: %v", err)
		}
		for n, es := range c.Maps {
			for _, e := range es {
				if e.Key == "" || strings.ContainsAny(e.Key, " \t\r\n") || strings.ContainsAny(e.Value, " \t\r\n") || strings.HasPrefix(e.Key, "#") {
					t.Fatalf("map %s: line %q %q", n, e.Key, e.Value)
				}
			}
		}
		empty, _ := Compile(map[string]Gateway{"fz": {Bind: g.Bind, Headers: g.Headers}}, diffServices)
		a, _ := RenderScaffold("/m", c)
		b, _ := RenderScaffold("/m", empty)
		if a != b {
			t.Fatal("routes changed the scaffold")
		}
	})
}
