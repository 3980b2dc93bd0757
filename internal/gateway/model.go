package gateway

import (
	"fmt"
	"regexp"
	"strings"
)

// Request is what routing looks at.
type Request struct {
	// Host is the Host header as sent (a port and upper case are allowed).
	Host   string
	Method string
	// Path is the request path without the query string.
	Path      string
	UserAgent string
	// Headers by lower-case name: the last value sent for each.
	Headers map[string]string
}

// Decision is where a request goes.
type Decision struct {
	// Backend is the haproxy backend that answers: a service's, or StatusBackend(Status).
	Backend string
	// Status is set when a fixed status answers (a route's status, a domain's no-match, the
	// gateway's default, or an Eru dead end).
	Status int
	// Path is the path the backend sees (the request's, or the rewritten one).
	Path string
	// Redirect: the domain redirects plain HTTP to https (301).
	Redirect bool
}

// Model routes requests the way the compiled maps and the scaffold make haproxy route them,
// straight from the declared routes and Eru graphs (not from the compiled form): it is the
// reference the compiler is tested against, and a way to explain a route ("where would this
// request go?") without haproxy.
//
// Semantics. The host is the Host header up to the first ':', lower-cased (ASCII); an unknown
// host gets the gateway's default status (404). A domain's routes are tried in order and the
// first whose conditions all hold serves: path_exact (equal), path_prefix (string prefix),
// path_segment_prefix (equal, or followed by "/"), path_regex (found anywhere; anchor it),
// user_agent (found in the lower-cased User-Agent, or the one sent with
// user_agent_case_sensitive; absent or empty never matches), headers (found in the header's
// last value; absent or empty never matches), methods (one of). No match: the domain's
// no_match_status (404). Rewrites: strip_prefix leaves "/" + the rest (one "/" between),
// replace_prefix puts its text before the rest, replacement expands \1-\9 from path_regex
// (an unmatched group is empty); a leading run of slashes in the new path becomes one.
type Model struct {
	gw      Gateway
	targets Targets
	domains map[string]modelDomain
}

type modelDomain struct {
	d      Domain
	routes []modelRoute
	eru    map[string]*eruRule
}

type modelRoute struct {
	r          Route
	backend    string
	ua, path   *regexp.Regexp
	headers    map[string]*regexp.Regexp
	hasRewrite bool
}

// NewModel validates g (Validate) and prepares its routes.
func NewModel(name string, g Gateway, t Targets) (*Model, error) {
	if _, err := Validate(name, g, t); err != nil {
		return nil, err
	}
	m := &Model{gw: g, targets: t, domains: map[string]modelDomain{}}
	for host, d := range g.Domains {
		md := modelDomain{d: d}
		if d.Eru != nil {
			md.eru = map[string]*eruRule{}
			for n, r := range d.Eru.Rules {
				rule, err := parseEruRule(n, r, EruByService(t))
				if err != nil {
					return nil, err
				}
				if rule.re != nil {
					rule.re.re = regexp.MustCompile(rule.pattern)
				}
				md.eru[n] = rule
			}
		}
		for _, r := range d.Routes {
			mr := modelRoute{r: r, headers: map[string]*regexp.Regexp{}}
			if r.Service != "" {
				be, err := t.Backend(r.Service, r.Port)
				if err != nil {
					return nil, err
				}
				mr.backend = be
			} else {
				mr.backend = StatusBackend(r.Status)
			}
			if r.Match.UserAgent != "" {
				mr.ua = regexp.MustCompile(r.Match.UserAgent)
			}
			if r.Match.PathRegex != "" {
				mr.path = regexp.MustCompile(r.Match.PathRegex)
			}
			for h, p := range r.Match.Headers {
				mr.headers[h] = regexp.MustCompile(p)
			}
			md.routes = append(md.routes, mr)
		}
		m.domains[host] = md
	}
	return m, nil
}

// Resolve routes one request.
func (m *Model) Resolve(req Request) Decision {
	host, _, _ := strings.Cut(req.Host, ":")
	host = lowerASCII(host)
	d, ok := m.domains[host]
	if !ok {
		return status(orDefault(m.gw.DefaultStatus), req.Path)
	}
	if d.d.RedirectHTTPS && (m.gw.Protocol == "" || m.gw.Protocol == "http") {
		return Decision{Redirect: true, Path: req.Path}
	}
	if d.eru != nil {
		return m.resolveEru(d, req)
	}
	for _, r := range d.routes {
		if dec, ok := r.resolve(req); ok {
			return dec
		}
	}
	return status(orDefault(d.d.NoMatchStatus), req.Path)
}

func status(s int, path string) Decision {
	return Decision{Backend: StatusBackend(s), Status: s, Path: path}
}

func (r modelRoute) resolve(req Request) (Decision, bool) {
	m := r.r.Match
	if len(m.Methods) > 0 {
		found := false
		for _, x := range m.Methods {
			found = found || x == req.Method
		}
		if !found {
			return Decision{}, false
		}
	}
	if r.ua != nil {
		ua := req.UserAgent
		if !m.UserAgentCaseSensitive {
			ua = lowerASCII(ua)
		}
		if ua == "" || !r.ua.MatchString(ua) {
			return Decision{}, false
		}
	}
	for h, re := range r.headers {
		v := req.Headers[h]
		if v == "" || !re.MatchString(v) {
			return Decision{}, false
		}
	}
	p := req.Path
	var groups []string
	switch {
	case m.PathExact != "" && p != m.PathExact,
		m.PathPrefix != "" && !strings.HasPrefix(p, m.PathPrefix),
		m.PathSegmentPrefix != "" && p != m.PathSegmentPrefix && !strings.HasPrefix(p, m.PathSegmentPrefix+"/"):
		return Decision{}, false
	case r.path != nil:
		groups = r.path.FindStringSubmatch(p)
		if groups == nil {
			return Decision{}, false
		}
	}
	dec := Decision{Backend: r.backend, Status: r.r.Status, Path: p}
	if rw := r.r.Rewrite; rw != nil {
		prefix := m.PathPrefix + m.PathSegmentPrefix
		switch {
		case rw.StripPrefix != "":
			dec.Path = "/" + strings.TrimPrefix(p[len(prefix):], "/")
		case rw.ReplacePrefix != "":
			dec.Path = rw.ReplacePrefix + p[len(prefix):]
		default:
			dec.Path = expand(rw.Replacement, groups)
		}
		dec.Path = squeeze(dec.Path)
	}
	return dec, true
}

// expand replaces \1-\9 in tmpl with groups[1..9] (empty when unmatched or absent).
func expand(tmpl string, groups []string) string {
	var b strings.Builder
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] == '\\' && i+1 < len(tmpl) && tmpl[i+1] >= '0' && tmpl[i+1] <= '9' {
			if n := int(tmpl[i+1] - '0'); n < len(groups) {
				b.WriteString(groups[n])
			}
			i++
			continue
		}
		b.WriteByte(tmpl[i])
	}
	return b.String()
}

// squeeze turns a leading run of slashes into one, as the scaffold's regsub(^//+,/) does.
func squeeze(p string) string {
	if strings.HasPrefix(p, "//") {
		return "/" + strings.TrimLeft(p, "/")
	}
	return p
}

// resolveEru walks an Eru graph with the fixed semantics of CompileEru.
func (m *Model) resolveEru(d modelDomain, req Request) Decision {
	path := req.Path
	ua := lowerASCII(req.UserAgent)
	name := d.d.Eru.Init
	for range len(d.eru) + 1 { // validated: no loops, so a walk visits each rule once at most
		rule := d.eru[name]
		if rule.typ == "backend" {
			return Decision{Backend: rule.backend, Path: path}
		}
		ok := false
		switch {
		case rule.typ == "ua":
			ok = ua != "" && rule.re.re.MatchString(ua)
		case !rule.regex:
			ok = strings.HasPrefix(path, rule.pattern)
		default:
			g := rule.re.re.FindStringSubmatch(path)
			ok = g != nil
			if ok && rule.rewrite {
				if len(g) > 1 {
					path = squeeze("/" + g[1])
				} else {
					path = "/"
				}
			}
		}
		next := rule.fail
		if ok {
			next = rule.succ
		}
		if next == "" {
			return status(eruDeadEnd, req.Path)
		}
		name = next
	}
	panic(fmt.Sprintf("gateway model: Eru walk longer than %d rules: the graph was validated, so this is a bug", len(d.eru)))
}

// lowerASCII lower-cases ASCII letters only, as haproxy's lower converter does.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
