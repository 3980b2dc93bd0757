package gateway

import (
	"clb/internal/model"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Limits. They keep one domain's decision list affordable (a regex entry costs about 0.1 µs
// per request in haproxy, and map updates go through the runtime API in 12 KB chunks) and one
// gateway's maps small enough to apply in a few milliseconds.
const (
	// MaxRoutesPerDomain bounds a domain's declared routes.
	MaxRoutesPerDomain = 256
	// MaxEntriesPerDomain bounds a domain's compiled decision list (an Eru graph with shared
	// subgraphs compiles to one entry per root-to-leaf path).
	MaxEntriesPerDomain = 256
	// MaxDomainsPerGateway bounds a gateway's domains.
	MaxDomainsPerGateway = 10000
	// MaxEruDepth bounds the tests on one root-to-leaf path of an Eru rule graph.
	MaxEruDepth = 32
	// MaxEntryBytes bounds one map line (key and value): haproxy reads `add map` payloads
	// into a 16 KiB buffer, and ApplyMap sends at most 12 KB at a time.
	MaxEntryBytes = 8 << 10
	// MaxPathLen bounds the paths and prefixes of matches and rewrites.
	MaxPathLen = 1024
)

var (
	nameRe   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	methodRe = regexp.MustCompile(`^[A-Z]{1,16}$`)
	tokenRe  = regexp.MustCompile(`^[a-z0-9!#$%&'*+.^_` + "`" + `|~-]{1,64}$`)
	refRe    = regexp.MustCompile(`\\[0-9]`)
)

// ValidateGatewayName accepts the names a service may have (lower case letters, digits, - and
// _): the name goes into haproxy section and map file names.
func ValidateGatewayName(name string) error {
	if err := model.ValidateServiceName(name); err != nil {
		return fmt.Errorf("%w: gateway name %q: want 1-64 of a-z 0-9 - _, starting with a letter or digit", ErrInvalid, clip(name))
	}
	return nil
}

// Validate checks a whole gateway before it is saved: its name, bind, protocol, certificate
// paths, statuses and header names, and every domain (ValidateDomain). Errors wrap ErrInvalid
// (400) or ErrUnknownService (409); warnings (unreachable routes, patterns that cannot match)
// do not prevent saving. What Validate accepts, Compile compiles.
func Validate(name string, g Gateway, t Targets) (warnings []string, err error) {
	if err := ValidateGatewayName(name); err != nil {
		return nil, err
	}
	if err := validateScaffold(g); err != nil {
		return nil, fmt.Errorf("gateway %s: %w", name, err)
	}
	if len(g.Domains) > MaxDomainsPerGateway {
		return nil, fmt.Errorf("%w: gateway %s: %d domains: at most %d", ErrInvalid, name, len(g.Domains), MaxDomainsPerGateway)
	}
	hosts := make([]string, 0, len(g.Domains))
	for h := range g.Domains {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		w, err := ValidateDomain(h, g.Domains[h], g, t)
		if err != nil {
			return nil, fmt.Errorf("gateway %s: %w", name, err)
		}
		warnings = append(warnings, w...)
	}
	return warnings, nil
}

// validateScaffold checks what the frontend scaffold is made of (a change there reloads).
func validateScaffold(g Gateway) error {
	if err := validateBind(g.Bind); err != nil {
		return err
	}
	switch g.Protocol {
	case "", "http", "https":
	default:
		return fmt.Errorf("%w: protocol %q: want http or https", ErrInvalid, clip(g.Protocol))
	}
	if g.Certificates != "" {
		if err := validateFilePath("certificates", g.Certificates); err != nil {
			return err
		}
	}
	if g.DefaultStatus != 0 && !validStatus(g.DefaultStatus) {
		return fmt.Errorf("%w: default_status %d: want one of %v", ErrInvalid, g.DefaultStatus, Statuses)
	}
	if len(g.Headers) > MaxHeaders {
		return fmt.Errorf("%w: %d headers: at most %d", ErrInvalid, len(g.Headers), MaxHeaders)
	}
	seen := map[string]bool{}
	for _, h := range g.Headers {
		if !tokenRe.MatchString(h) {
			return fmt.Errorf("%w: header %q: want a lower-case header field name", ErrInvalid, clip(h))
		}
		if h == "host" || h == "user-agent" {
			return fmt.Errorf("%w: header %q: routes match it with their own fields (the domain, user_agent)", ErrInvalid, h)
		}
		if seen[h] {
			return fmt.Errorf("%w: header %q listed twice", ErrInvalid, h)
		}
		seen[h] = true
	}
	return nil
}

// validateBind accepts ADDR:PORT with ADDR empty (all addresses), an IPv4 or a bracketed IPv6
// address.
func validateBind(b string) error {
	host, port, err := net.SplitHostPort(b)
	if err != nil {
		return fmt.Errorf("%w: bind %q: want address:port: %v", ErrInvalid, clip(b), err)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%w: bind %q: %q is not an IP address", ErrInvalid, clip(b), clip(host))
		}
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
		return fmt.Errorf("%w: bind %q: port %q: want 1-65535", ErrInvalid, clip(b), clip(port))
	}
	return nil
}

// validateFilePath accepts absolute paths without spaces or control characters (they go into
// haproxy.cfg).
func validateFilePath(what, p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%w: %s %q: want an absolute path", ErrInvalid, what, clip(p))
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] == 0x7f || p[i] == '"' || p[i] == '\\' || p[i] == '#' {
			return fmt.Errorf("%w: %s %q: no spaces, quotes, backslashes, # or control characters", ErrInvalid, what, clip(p))
		}
	}
	return nil
}

// ValidHost reports whether host may name a domain: an RFC 1123 host name or an IPv4 address
// (Eru's README routes "127.0.0.1"), lower case, without a port or a trailing dot. Requests
// match it against their Host header without its port, lower-cased.
func ValidHost(host string) bool {
	if host == "" || strings.ToLower(host) != host || strings.HasSuffix(host, ".") {
		return false
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Is4()
	}
	return model.ValidHostname(host)
}

// ValidateDomain checks one domain of gateway g: the host name, each route (name, match,
// action, rewrite), the statuses, and an Eru rule set (CompileEru's refusals); and it warns
// about routes an earlier route makes unreachable and patterns that cannot match.
func ValidateDomain(host string, d Domain, g Gateway, t Targets) ([]string, error) {
	_, warnings, err := compileDomain(host, d, g, t)
	return warnings, err
}

// compileDomain validates a domain and compiles it to its decision list.
func compileDomain(host string, d Domain, g Gateway, t Targets) ([]Entry, []string, error) {
	if !ValidHost(host) {
		return nil, nil, fmt.Errorf("%w: domain %q: want a lower-case host name or IPv4 address, without port or trailing dot", ErrInvalid, clip(host))
	}
	fail := func(err error) ([]Entry, []string, error) {
		return nil, nil, fmt.Errorf("domain %s: %w", host, err)
	}
	if d.NoMatchStatus != 0 && !validStatus(d.NoMatchStatus) {
		return fail(fmt.Errorf("%w: no_match_status %d: want one of %v", ErrInvalid, d.NoMatchStatus, Statuses))
	}
	if d.Certificate != "" {
		if err := validateFilePath("certificate", d.Certificate); err != nil {
			return fail(err)
		}
	}
	var entries []Entry
	var warnings []string
	if d.RedirectHTTPS && g.Protocol == "https" {
		warnings = append(warnings, fmt.Sprintf("domain %s: redirect_https has no effect on an https gateway (set it on the domain of the http gateway)", host))
	}
	if d.Eru != nil {
		if len(d.Routes) > 0 {
			return fail(fmt.Errorf("%w: a domain has either routes or an Eru rule set, not both", ErrInvalid))
		}
		es, err := CompileEru(host, *d.Eru, EruByService(t))
		if err != nil {
			return nil, nil, err
		}
		entries = es
	} else {
		if len(d.Routes) > MaxRoutesPerDomain {
			return fail(fmt.Errorf("%w: %d routes: at most %d", ErrInvalid, len(d.Routes), MaxRoutesPerDomain))
		}
		names := map[string]bool{}
		for i, r := range d.Routes {
			if !nameRe.MatchString(r.Name) {
				return fail(fmt.Errorf("%w: route %d: name %q: want 1-64 of A-Z a-z 0-9 _ -", ErrInvalid, i+1, clip(r.Name)))
			}
			if names[r.Name] {
				return fail(fmt.Errorf("%w: route %q: duplicate name", ErrInvalid, r.Name))
			}
			names[r.Name] = true
			e, w, err := routeEntry(r, g, t)
			if err != nil {
				return fail(fmt.Errorf("route %q: %w", r.Name, err))
			}
			for _, s := range w {
				warnings = append(warnings, fmt.Sprintf("domain %s: route %q: %s", host, r.Name, s))
			}
			entries = append(entries, e)
		}
		for j := range d.Routes {
			for i := 0; i < j; i++ {
				if covers(d.Routes[i], d.Routes[j]) {
					warnings = append(warnings, fmt.Sprintf("domain %s: route %q is unreachable: route %q before it matches every request it matches", host, d.Routes[j].Name, d.Routes[i].Name))
					break
				}
			}
		}
	}
	if len(entries) > MaxEntriesPerDomain {
		return fail(fmt.Errorf("%w: %d decision-list entries: at most %d", ErrInvalid, len(entries), MaxEntriesPerDomain))
	}
	for _, e := range entries {
		k, v := regexKey(host, g.Headers, e)
		if n := len(k) + 1 + len(v); n > MaxEntryBytes {
			return fail(fmt.Errorf("%w: %s: compiles to a map line of %d bytes: at most %d", ErrInvalid, e.Source, n, MaxEntryBytes))
		}
	}
	return entries, warnings, nil
}

// validPath accepts what a match or rewrite path may hold: printable ASCII without spaces,
// backslashes, ? or #, starting with "/".
func validPath(what, p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%w: %s %q: must start with /", ErrInvalid, what, clip(p))
	}
	if len(p) > MaxPathLen {
		return fmt.Errorf("%w: %s: %d bytes: at most %d", ErrInvalid, what, len(p), MaxPathLen)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f || c == '\\' || c == '?' || c == '#' {
			return fmt.Errorf("%w: %s %q: no spaces, control characters, non-ASCII, \\, ? or #", ErrInvalid, what, clip(p))
		}
	}
	return nil
}

func backend(t Targets, service string, port int) (string, error) {
	if err := model.ValidateServiceName(service); err != nil {
		return "", err
	}
	if port < 0 || port > 65535 {
		return "", fmt.Errorf("%w: port %d: want 1-65535 (0: the service's only http listener)", ErrInvalid, port)
	}
	be, err := t.Backend(service, port)
	if err != nil {
		if errors.Is(err, ErrUnknownService) {
			return "", err
		}
		return "", fmt.Errorf("%w %q: %v", ErrUnknownService, service, err)
	}
	if !backendRe.MatchString(be) {
		return "", fmt.Errorf("service %q: backend name %q is not a haproxy name", service, clip(be))
	}
	return be, nil
}

// routeEntry validates one route and compiles it to its decision-list entry.
func routeEntry(r Route, g Gateway, t Targets) (Entry, []string, error) {
	e := Entry{Source: r.Name}
	var warnings []string
	m := r.Match
	paths := 0
	for _, p := range []string{m.PathExact, m.PathPrefix, m.PathSegmentPrefix, m.PathRegex} {
		if p != "" {
			paths++
		}
	}
	if paths > 1 {
		return e, nil, fmt.Errorf("%w: at most one of path_exact, path_prefix, path_segment_prefix, path_regex", ErrInvalid)
	}
	// Conditions in subject order: method, user agent, headers, path.
	if len(m.Methods) > 0 {
		seen := map[string]bool{}
		for _, mt := range m.Methods {
			if !methodRe.MatchString(mt) {
				return e, nil, fmt.Errorf("%w: method %q: want an upper-case method name", ErrInvalid, clip(mt))
			}
			if seen[mt] {
				return e, nil, fmt.Errorf("%w: method %s listed twice", ErrInvalid, mt)
			}
			seen[mt] = true
		}
		e.Conds = append(e.Conds, Cond{Field: FieldMethod, Kind: CondMethods, Values: slices.Clone(m.Methods)})
	}
	if m.UserAgentCaseSensitive && m.UserAgent == "" {
		return e, nil, fmt.Errorf("%w: user_agent_case_sensitive without user_agent", ErrInvalid)
	}
	if m.UserAgent != "" {
		re, err := parseRegex(m.UserAgent)
		if err != nil {
			return e, nil, fmt.Errorf("user_agent: %w", err)
		}
		f := FieldUA
		if m.UserAgentCaseSensitive {
			f = FieldUARaw
		} else if hasUpperLiteral(m.UserAgent) {
			warnings = append(warnings, fmt.Sprintf("user_agent %q has upper-case letters but is matched against the lower-cased User-Agent (set user_agent_case_sensitive, or write the pattern in lower case)", clip(m.UserAgent)))
		}
		e.Conds = append(e.Conds, Cond{Field: f, Kind: CondRegex, Value: m.UserAgent, re: re})
	}
	if len(m.Headers) > 0 {
		names := make([]string, 0, len(m.Headers))
		for h := range m.Headers {
			names = append(names, h)
		}
		sort.Strings(names)
		for _, h := range names {
			if !slices.Contains(g.Headers, h) {
				return e, nil, fmt.Errorf("%w: header %q is not among the gateway's headers %v", ErrInvalid, clip(h), g.Headers)
			}
			re, err := parseRegex(m.Headers[h])
			if err != nil {
				return e, nil, fmt.Errorf("header %s: %w", h, err)
			}
			e.Conds = append(e.Conds, Cond{Field: FieldHeader + Field(h), Kind: CondRegex, Value: m.Headers[h], re: re})
		}
	}
	var pathRe *userRegex
	switch {
	case m.PathExact != "":
		if err := validPath("path_exact", m.PathExact); err != nil {
			return e, nil, err
		}
		e.Conds = append(e.Conds, Cond{Field: FieldPath, Kind: CondExact, Value: m.PathExact})
	case m.PathPrefix != "":
		if err := validPath("path_prefix", m.PathPrefix); err != nil {
			return e, nil, err
		}
		e.Conds = append(e.Conds, Cond{Field: FieldPath, Kind: CondPrefix, Value: m.PathPrefix})
	case m.PathSegmentPrefix != "":
		if err := validPath("path_segment_prefix", m.PathSegmentPrefix); err != nil {
			return e, nil, err
		}
		if strings.HasSuffix(m.PathSegmentPrefix, "/") {
			return e, nil, fmt.Errorf("%w: path_segment_prefix %q: must not end with / (use path_prefix for a string prefix)", ErrInvalid, clip(m.PathSegmentPrefix))
		}
		e.Conds = append(e.Conds, Cond{Field: FieldPath, Kind: CondSegment, Value: m.PathSegmentPrefix})
	case m.PathRegex != "":
		re, err := parseRegex(m.PathRegex)
		if err != nil {
			return e, nil, fmt.Errorf("path_regex: %w", err)
		}
		pathRe = re
		if r.Rewrite == nil || r.Rewrite.Replacement == "" {
			e.Conds = append(e.Conds, Cond{Field: FieldPath, Kind: CondRegex, Value: m.PathRegex, re: re})
		}
	}

	switch {
	case r.Service != "" && r.Status != 0:
		return e, nil, fmt.Errorf("%w: service and status are exclusive", ErrInvalid)
	case r.Service != "":
		be, err := backend(t, r.Service, r.Port)
		if err != nil {
			return e, nil, err
		}
		e.Backend = be
	case r.Status != 0:
		if r.Port != 0 {
			return e, nil, fmt.Errorf("%w: port without service", ErrInvalid)
		}
		if !validStatus(r.Status) {
			return e, nil, fmt.Errorf("%w: status %d: want one of %v", ErrInvalid, r.Status, Statuses)
		}
		e.Status, e.Backend = r.Status, StatusBackend(r.Status)
	default:
		return e, nil, fmt.Errorf("%w: a route needs a service or a status", ErrInvalid)
	}

	if rw := r.Rewrite; rw != nil {
		if r.Status != 0 {
			return e, nil, fmt.Errorf("%w: a route with a fixed status has no rewrite", ErrInvalid)
		}
		forms := 0
		for _, s := range []string{rw.StripPrefix, rw.ReplacePrefix, rw.Replacement} {
			if s != "" {
				forms++
			}
		}
		if forms != 1 {
			return e, nil, fmt.Errorf("%w: rewrite: exactly one of strip_prefix, replace_prefix, replacement", ErrInvalid)
		}
		prefix, segment := m.PathPrefix, false
		if m.PathSegmentPrefix != "" {
			prefix, segment = m.PathSegmentPrefix, true
		}
		switch {
		case rw.StripPrefix != "":
			if prefix == "" || rw.StripPrefix != prefix {
				return e, nil, fmt.Errorf("%w: rewrite strip_prefix %q: must be the route's path_prefix or path_segment_prefix", ErrInvalid, clip(rw.StripPrefix))
			}
			e.Rewrite = &EntryRewrite{Kind: RewriteStrip, Prefix: prefix, Segment: segment}
		case rw.ReplacePrefix != "":
			if prefix == "" {
				return e, nil, fmt.Errorf("%w: rewrite replace_prefix needs a path_prefix or path_segment_prefix match", ErrInvalid)
			}
			if err := validPath("rewrite replace_prefix", rw.ReplacePrefix); err != nil {
				return e, nil, err
			}
			e.Rewrite = &EntryRewrite{Kind: RewriteReplace, Prefix: prefix, Segment: segment, Replacement: rw.ReplacePrefix}
		default:
			if pathRe == nil {
				return e, nil, fmt.Errorf("%w: rewrite replacement needs a path_regex match", ErrInvalid)
			}
			if !strings.HasPrefix(rw.Replacement, "/") {
				return e, nil, fmt.Errorf("%w: rewrite replacement %q: must start with /", ErrInvalid, clip(rw.Replacement))
			}
			if err := validPath("rewrite replacement (without its \\N)", refRe.ReplaceAllString(rw.Replacement, "")); err != nil {
				return e, nil, err
			}
			for _, ref := range refRe.FindAllString(rw.Replacement, -1) {
				n := int(ref[1] - '0')
				if n == 0 || n > pathRe.caps {
					return e, nil, fmt.Errorf("%w: rewrite replacement %q: %s: path_regex has %d groups (\\1 to \\9 name them)", ErrInvalid, clip(rw.Replacement), ref, pathRe.caps)
				}
			}
			e.Rewrite = &EntryRewrite{Kind: RewriteRegex, Pattern: m.PathRegex, Replacement: rw.Replacement, re: pathRe}
		}
	}
	return e, warnings, nil
}

// hasUpperLiteral reports whether a pattern has an upper-case letter outside an escape
// (\S, \D, \W, \B, \A are classes and anchors, not letters).
func hasUpperLiteral(p string) bool {
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '\\':
			i++
		case p[i] >= 'A' && p[i] <= 'Z':
			return !strings.Contains(p, "(?i")
		}
	}
	return false
}

// covers reports whether route a matches every request route b matches (cheap cases only:
// regexes are compared as text).
func covers(a, b Route) bool {
	am, bm := a.Match, b.Match
	if len(am.Methods) > 0 {
		if len(bm.Methods) == 0 {
			return false
		}
		for _, m := range bm.Methods {
			if !slices.Contains(am.Methods, m) {
				return false
			}
		}
	}
	if am.UserAgent != "" && (am.UserAgent != bm.UserAgent || am.UserAgentCaseSensitive != bm.UserAgentCaseSensitive) {
		return false
	}
	for h, p := range am.Headers {
		if bm.Headers[h] != p {
			return false
		}
	}
	switch {
	case am.PathExact != "":
		return bm.PathExact == am.PathExact
	case am.PathPrefix != "":
		p := am.PathPrefix
		return (bm.PathExact != "" && strings.HasPrefix(bm.PathExact, p)) ||
			(bm.PathPrefix != "" && strings.HasPrefix(bm.PathPrefix, p)) ||
			(bm.PathSegmentPrefix != "" && strings.HasPrefix(bm.PathSegmentPrefix, p))
	case am.PathSegmentPrefix != "":
		s := am.PathSegmentPrefix
		inSeg := func(x string) bool { return x == s || strings.HasPrefix(x, s+"/") }
		return (bm.PathExact != "" && inSeg(bm.PathExact)) ||
			(bm.PathSegmentPrefix != "" && inSeg(bm.PathSegmentPrefix)) ||
			(bm.PathPrefix != "" && strings.HasPrefix(bm.PathPrefix, s+"/"))
	case am.PathRegex != "":
		return bm.PathRegex == am.PathRegex
	}
	return true
}
