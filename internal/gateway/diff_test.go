package gateway

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The differential test: random domains (declared routes and Eru graphs) and random requests,
// routed by a real haproxy running the compiled maps and scaffold, and by the Go model; every
// answer (backend or status, and the path the backend sees) must agree. One fixed seed, then a
// random one (logged; GATEWAY_DIFF_SEED=N replays it).

var (
	diffSegments = []string{"a", "ab", "api", "v1", "v22", "blog", "x", "m", "API", "b.c", "%2F"}
	diffPathRe   = []string{`^/api/(.*)$`, `^/(a|ab)/`, `v[0-9]+`, `^/blog/([^/]+)/?(.*)$`, `b$`, `(?i)API`, `^/x(/.*)?$`, `\.c`, `^/m/([a-z]*)`, `^(/[a-z]+){2}$`, `[^a-z/]`}
	diffUARe     = []string{`mobile|android`, `^curl/`, `bot$`, `[0-9]+\.[0-9]`, `(?i)Mozilla`, `httpie(\S+)$`, `\s`, `^$`, `.`}
	diffUAs      = []string{"", "curl/8.0", "Mozilla/5.0 (Android; Mobile)", "googlebot", "HTTPie/3.2.1", "x 1.2", "Curl/7", "MOBILE"}
	diffHdrRe    = []string{`^1$`, `yes`, `[0-9]`}
	diffHdrs     = []string{"", "1", "yes", "0", "10"}
	diffMethods  = []string{"GET", "POST", "PUT", "DELETE"}
	diffServices = ServiceTargets{"s1": {80}, "s2": {80}, "s3": {80}, "s4": {8080}}
)

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func randPath(r *rand.Rand) string {
	n := 1 + r.IntN(4)
	var b strings.Builder
	for range n {
		b.WriteString("/")
		if r.IntN(8) > 0 {
			b.WriteString(pick(r, diffSegments))
		}
	}
	if r.IntN(5) == 0 {
		b.WriteString("/")
	}
	return b.String()
}

func randPrefix(r *rand.Rand) string {
	p := randPath(r)
	if i := strings.IndexByte(p[1:], '/'); i >= 0 && r.IntN(2) == 0 {
		p = p[:i+1]
	}
	if r.IntN(3) == 0 && len(p) > 2 {
		p = p[:len(p)-1] // a string prefix ending mid-segment
	}
	return p
}

func randService(r *rand.Rand) (string, int) {
	s := pick(r, []string{"s1", "s2", "s3", "s4"})
	return s, 0
}

func randRoute(r *rand.Rand, i int, rewrites bool) Route {
	rt := Route{Name: "r" + strconv.Itoa(i)}
	m := &rt.Match
	kind := r.IntN(6)
	if rewrites {
		kind = 2 + r.IntN(4)
	}
	switch kind {
	case 1:
		m.PathExact = randPath(r)
	case 2:
		m.PathPrefix = randPrefix(r)
	case 3:
		m.PathSegmentPrefix = strings.TrimSuffix(randPrefix(r), "/")
		if m.PathSegmentPrefix == "" {
			m.PathSegmentPrefix = "/api"
		}
	case 4, 5:
		m.PathRegex = pick(r, diffPathRe)
	}
	if rewrites {
		// only path conditions, and always a rewrite
	} else if r.IntN(4) == 0 {
		m.UserAgent = pick(r, diffUARe)
		m.UserAgentCaseSensitive = r.IntN(3) == 0
	}
	if !rewrites && r.IntN(6) == 0 {
		m.Headers = map[string]string{"x-canary": pick(r, diffHdrRe)}
	}
	if !rewrites && r.IntN(6) == 0 {
		m.Methods = []string{pick(r, diffMethods)}
		if r.IntN(2) == 0 {
			m.Methods = append(m.Methods, "PUT")
			if m.Methods[0] == "PUT" {
				m.Methods = m.Methods[:1]
			}
		}
	}
	if !rewrites && r.IntN(5) == 0 {
		rt.Status = pick(r, []int{403, 410, 503})
		return rt
	}
	rt.Service, rt.Port = randService(r)
	if rewrites || r.IntN(2) == 0 {
		switch {
		case m.PathPrefix != "" || m.PathSegmentPrefix != "":
			if r.IntN(2) == 0 {
				rt.Rewrite = &Rewrite{StripPrefix: m.PathPrefix + m.PathSegmentPrefix}
			} else {
				rt.Rewrite = &Rewrite{ReplacePrefix: pick(r, []string{"/new", "/", "/v2/"})}
			}
		case m.PathRegex != "":
			re, _ := parseRegex(m.PathRegex)
			switch {
			case re.caps >= 2:
				rt.Rewrite = &Rewrite{Replacement: `/r/\2/\1`}
			case re.caps == 1:
				rt.Rewrite = &Rewrite{Replacement: pick(r, []string{`/r/\1`, `\1`, `/\1/end`})}
			default:
				rt.Rewrite = &Rewrite{Replacement: "/fixed"}
			}
			if !strings.HasPrefix(rt.Rewrite.Replacement, "/") {
				rt.Rewrite.Replacement = "/" + rt.Rewrite.Replacement
			}
		}
	}
	return rt
}

func randRouteDomain(r *rand.Rand, treeOnly, rewrites bool) Domain {
	var d Domain
	n := 1 + r.IntN(7)
	for i := range n {
		for range 20 {
			rt := randRoute(r, i, rewrites)
			if treeOnly {
				rt.Match.PathRegex, rt.Match.UserAgent, rt.Match.UserAgentCaseSensitive, rt.Match.Headers, rt.Match.Methods, rt.Rewrite = "", "", false, nil, nil, nil
			}
			if _, _, err := routeEntry(rt, Gateway{Headers: []string{"x-canary"}}, diffServices); err == nil {
				d.Routes = append(d.Routes, rt)
				break
			}
		}
	}
	if r.IntN(2) == 0 {
		d.Routes = append(d.Routes, Route{Name: "rest", Service: "s1"})
	}
	if r.IntN(3) == 0 {
		d.NoMatchStatus = pick(r, []int{403, 421})
	}
	return d
}

// randEru makes a random loop-free graph: rule i only points at rules after it, the last
// ones are backends.
func randEru(r *rand.Rand) EruRules {
	n := 2 + r.IntN(6)
	rules := map[string]EruRule{}
	name := func(i int) string { return "n" + strconv.Itoa(i) }
	nb := 1 + r.IntN(2)
	for i := range n {
		if i >= n-nb {
			rules[name(i)] = EruRule{Type: "backend", Args: map[string]any{"servername": pick(r, []string{"s1", "s2", "S3"})}}
			continue
		}
		args := map[string]any{}
		next := func() any {
			if r.IntN(6) == 0 {
				return nil
			}
			return name(i + 1 + r.IntN(n-i-1))
		}
		if s := next(); s != nil {
			args["succ"] = s
		}
		if f := next(); f != nil {
			args["fail"] = f
		}
		if r.IntN(2) == 0 {
			args["pattern"] = pick(r, diffUARe)
			rules[name(i)] = EruRule{Type: "ua", Args: args}
			continue
		}
		if r.IntN(2) == 0 {
			args["pattern"] = randPrefix(r)
		} else {
			args["regex"] = true
			args["pattern"] = pick(r, diffPathRe)
			if r.IntN(3) == 0 {
				args["rewrite"] = true
			}
		}
		rules[name(i)] = EruRule{Type: "path", Args: args}
	}
	return EruRules{Init: name(0), Rules: rules}
}

func randGateway(r *rand.Rand) (Gateway, []string) {
	g := Gateway{Bind: "127.0.0.1:1", Headers: []string{"x-canary"}, Domains: map[string]Domain{}}
	if r.IntN(2) == 0 {
		g.DefaultStatus = 421
	}
	var hosts []string
	for i := range 12 {
		host := fmt.Sprintf("d%d.example", i)
		var d Domain
		ok := false
		for range 50 {
			switch i % 4 {
			case 0:
				d = randRouteDomain(r, true, false)
			case 1:
				d = randRouteDomain(r, false, false)
			case 2:
				d = randRouteDomain(r, false, true)
			default:
				e := randEru(r)
				d = Domain{Eru: &e}
			}
			if _, err := ValidateDomain(host, d, g, diffServices); err == nil {
				ok = true
				break
			}
		}
		if ok {
			g.Domains[host] = d
			hosts = append(hosts, host)
		}
	}
	return g, hosts
}

// seedPaths are paths the gateway's routes and rules name, so requests hit them often.
func seedPaths(g Gateway) []string {
	out := []string{"/api/v1/x", "/blog/a/b", "/m/abc", "/x", "/x/y", "/a/", "/ab/c"}
	for _, d := range g.Domains {
		for _, rt := range d.Routes {
			for _, p := range []string{rt.Match.PathExact, rt.Match.PathPrefix, rt.Match.PathSegmentPrefix} {
				if p != "" {
					out = append(out, p)
				}
			}
		}
		if d.Eru != nil {
			for _, rule := range d.Eru.Rules {
				if p, ok := rule.Args["pattern"].(string); ok && strings.HasPrefix(p, "/") && rule.Args["regex"] == nil {
					out = append(out, p)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func randRequest(r *rand.Rand, hosts, paths []string) Request {
	req := Request{Method: pick(r, diffMethods), Path: randPath(r), UserAgent: pick(r, diffUAs)}
	switch r.IntN(4) {
	case 0:
		req.Path = pick(r, paths)
	case 1:
		req.Path = strings.TrimSuffix(pick(r, paths), "/") + pick(r, []string{"/", "/z", "z", "/api/q", "//w"})
		if !strings.HasPrefix(req.Path, "/") {
			req.Path = "/" + req.Path
		}
	}
	switch r.IntN(10) {
	case 0:
		req.Host = "unknown.example"
	case 1:
		req.Host = strings.ToUpper(pick(r, hosts)) + ":8080"
	default:
		req.Host = pick(r, hosts)
	}
	if v := pick(r, diffHdrs); v != "" {
		req.Headers = map[string]string{"x-canary": v}
	}
	return req
}

func TestDifferentialHaproxy(t *testing.T) {
	haproxyBin(t)
	seeds := []uint64{1, uint64(time.Now().UnixNano())}
	if s := os.Getenv("GATEWAY_DIFF_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seeds = []uint64{n}
	}
	const requests = 600
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Logf("seed %d (GATEWAY_DIFF_SEED=%d replays it)", seed, seed)
			r := rand.New(rand.NewPCG(seed, 0))
			g, hosts := randGateway(r)
			if len(hosts) < 5 {
				t.Fatalf("only %d valid random domains", len(hosts))
			}
			gws := map[string]Gateway{"diff": g}
			l := startLab(t, gws, diffServices)
			m, err := NewModel("diff", gws["diff"], diffServices)
			if err != nil {
				t.Fatal(err)
			}
			c, _ := Compile(gws, diffServices)
			paths := seedPaths(gws["diff"])
			fails := 0
			kinds := map[string]int{}
			for range requests {
				req := randRequest(r, hosts, paths)
				got, err := l.do(req)
				if err != nil {
					t.Fatalf("%+v: %v", req, err)
				}
				want := m.Resolve(req).answer()
				kinds[fmt.Sprintf("status=%d rewritten=%v", want.Status, want.Path != req.Path)]++
				if got != want {
					fails++
					host, _, _ := strings.Cut(strings.ToLower(req.Host), ":")
					t.Errorf("%+v:\n haproxy %+v\n model   %+v\n domain %s: %s\n entries: %s", req, got, want, host, jsonOf(gws["diff"].Domains[host]), jsonOf(c.Domains["diff"][host]))
					if fails > 5 {
						t.FailNow()
					}
				}
			}
			t.Logf("%d requests over %d domains agree: %v", requests, len(hosts), kinds)
			if seed == 1 && (kinds["status=0 rewritten=true"] < 10 || kinds["status=0 rewritten=false"] < 100 || len(kinds) < 5) {
				t.Errorf("the fixed seed no longer covers rewrites, backends and statuses well: %v", kinds)
			}
		})
	}
}
