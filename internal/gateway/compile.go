package gateway

import (
	"clb/internal/haproxy"
	"fmt"
	"hash/fnv"
	"net"
	"sort"
	"strconv"
	"strings"
)

// NumShards is the number of regex decision-list maps of a gateway. A domain that needs
// regexes (or user agent, header or method conditions, or a rewrite) has its entries in one
// shard, chosen by a hash of its host name (so it stays there as its routes change); a request
// scans only its domain's shard. 16 keeps the scaffold's per-request shard dispatch cheap.
const NumShards = 16

// Frontend is the render data of one gateway's frontend scaffold. Map file names are relative
// to the map directory given to RenderScaffold.
type Frontend struct {
	Gateway string
	// Name is the haproxy frontend: "gw." + gateway (the dot keeps it apart from every
	// service's "service_port").
	Name     string
	Bind     string
	Protocol string
	// BindExtra is appended to the bind line (e.g. "ssl crt-list /path"): Compile leaves it
	// empty; the TLS code sets it before rendering.
	BindExtra string
	// Headers are the gateway's header slots, in subject order.
	Headers []string
	// DefaultBackend answers hosts without a domain (a status backend).
	DefaultBackend string
	DomainsMap     string
	ExactMap       string
	PrefixMap      string
	Shards         []Shard
}

// Shard is one regex decision-list map and the tag domains.map gives its domains.
type Shard struct {
	Tag string // "s07"
	Map string
}

// StatusBackendData is one fixed-status backend of the scaffold.
type StatusBackendData struct {
	Name   string
	Status int
	Body   string
}

// Compiled is what the gateways compile to: the frontends' render data and the contents of
// every map file they read. The same gateways always give the same, byte-identical output.
type Compiled struct {
	Frontends []Frontend
	// Maps holds every map file (name relative to the map directory → ordered entries),
	// empty ones included: haproxy refuses a config naming a missing map file.
	Maps map[string][]haproxy.MapEntry
	// Domains holds each gateway's decision lists by host, for status pages and tests.
	Domains map[string]map[string][]Entry
}

// MapFile returns a map file's contents as haproxy.FormatMap writes them.
func (c *Compiled) MapFile(name string) []byte { return haproxy.FormatMap(c.Maps[name]) }

// MapNames lists the map files, sorted.
func (c *Compiled) MapNames() []string {
	names := make([]string, 0, len(c.Maps))
	for n := range c.Maps {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Compile validates and compiles gateways (see Validate; warnings are not repeated here).
//
// Per gateway, domains.map (map_str on the Host header without port, lower-cased) gives a
// domain's mode and its no-match backend: "t|B" (the tree maps), "sNN|B" (regex shard NN) or
// "r|https://HOST[:PORT]" (redirect to the https gateway that serves the domain, 443 when
// none does). Tree domains' routes are exact.map (map_str on "host@path") and
// prefix.map (map_beg on "host@path": the longest prefix). A domain goes to the tree when all
// its routes are path_exact, path_prefix, path_segment_prefix or catch-all, with no rewrite
// and no other condition; a route entry an earlier one covers is left out, after which the
// longest match the tree picks is always the first match in declaration order. Every other
// domain compiles to map_regm entries on the subject "host\nmethod\nua\nUA\nheaders...\npath",
// one per decision-list entry, in order. Map values are "backend" or "backend|new path"
// (\N = the rewrite pattern's groups); backends come from Targets or are status backends,
// never user text.
func Compile(gateways map[string]Gateway, t Targets) (*Compiled, error) {
	c := &Compiled{Maps: map[string][]haproxy.MapEntry{}, Domains: map[string]map[string][]Entry{}}
	names := make([]string, 0, len(gateways))
	for n := range gateways {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		g := gateways[name]
		if err := ValidateGatewayName(name); err != nil {
			return nil, err
		}
		if err := validateScaffold(g); err != nil {
			return nil, fmt.Errorf("gateway %s: %w", name, err)
		}
		if len(g.Domains) > MaxDomainsPerGateway {
			return nil, fmt.Errorf("%w: gateway %s: %d domains: at most %d", ErrInvalid, name, len(g.Domains), MaxDomainsPerGateway)
		}
		f := frontendOf(name, g)
		c.Frontends = append(c.Frontends, f)
		doms, exact, prefix := []haproxy.MapEntry{}, []haproxy.MapEntry{}, []haproxy.MapEntry{}
		shards := make([][]haproxy.MapEntry, NumShards)
		hosts := make([]string, 0, len(g.Domains))
		for h := range g.Domains {
			hosts = append(hosts, h)
		}
		sort.Strings(hosts)
		c.Domains[name] = map[string][]Entry{}
		for _, h := range hosts {
			d := g.Domains[h]
			entries, _, err := compileDomain(h, d, g, t)
			if err != nil {
				return nil, fmt.Errorf("gateway %s: %w", name, err)
			}
			c.Domains[name][h] = entries
			noMatch := StatusBackend(orDefault(d.NoMatchStatus))
			if d.RedirectHTTPS && (g.Protocol == "" || g.Protocol == "http") {
				doms = append(doms, haproxy.MapEntry{Key: h, Value: "r|" + haproxy.RedirectOrigin(h, httpsPort(gateways, h))})
				continue
			}
			if isTree(entries) {
				doms = append(doms, haproxy.MapEntry{Key: h, Value: "t|" + noMatch})
				ex, pr := treeEntries(h, entries)
				exact, prefix = append(exact, ex...), append(prefix, pr...)
				continue
			}
			s := shardOf(h)
			doms = append(doms, haproxy.MapEntry{Key: h, Value: f.Shards[s].Tag + "|" + noMatch})
			for _, e := range entries {
				k, v := regexKey(h, g.Headers, e)
				shards[s] = append(shards[s], haproxy.MapEntry{Key: k, Value: v})
			}
		}
		sort.Slice(exact, func(i, j int) bool { return exact[i].Key < exact[j].Key })
		sort.Slice(prefix, func(i, j int) bool { return prefix[i].Key < prefix[j].Key })
		c.Maps[f.DomainsMap] = doms
		c.Maps[f.ExactMap] = exact
		c.Maps[f.PrefixMap] = prefix
		for i, sh := range f.Shards {
			if shards[i] == nil {
				shards[i] = []haproxy.MapEntry{}
			}
			c.Maps[sh.Map] = shards[i]
		}
	}
	return c, nil
}

func orDefault(status int) int {
	if status == 0 {
		return 404
	}
	return status
}

func frontendOf(name string, g Gateway) Frontend {
	base := "gw." + name + "."
	f := Frontend{
		Gateway: name, Name: "gw." + name, Bind: g.Bind, Protocol: g.Protocol,
		Headers:        g.Headers,
		DefaultBackend: StatusBackend(orDefault(g.DefaultStatus)),
		DomainsMap:     base + "domains.map",
		ExactMap:       base + "exact.map",
		PrefixMap:      base + "prefix.map",
	}
	if f.Protocol == "" {
		f.Protocol = "http"
	}
	for i := range NumShards {
		tag := fmt.Sprintf("s%02d", i)
		f.Shards = append(f.Shards, Shard{Tag: tag, Map: base + "re" + tag[1:] + ".map"})
	}
	return f
}

func shardOf(host string) int {
	h := fnv.New32a()
	h.Write([]byte(host))
	return int(h.Sum32() % NumShards)
}

func isTree(entries []Entry) bool {
	for _, e := range entries {
		if !e.tree() {
			return false
		}
	}
	return true
}

// treeEntries turns a tree domain's entries into exact and prefix keys ("host@path"),
// dropping every key an earlier one covers (same exact key, or a path an earlier prefix
// starts): what remains, looked up exact first and then longest prefix, answers what the
// first matching entry in order would.
func treeEntries(host string, entries []Entry) (exact, prefix []haproxy.MapEntry) {
	type atom struct {
		exact bool
		path  string
		be    string
	}
	var atoms []atom
	for _, e := range entries {
		if len(e.Conds) == 0 {
			atoms = append(atoms, atom{path: "", be: e.Backend})
			continue
		}
		c := e.Conds[0]
		switch c.Kind {
		case CondExact:
			atoms = append(atoms, atom{exact: true, path: c.Value, be: e.Backend})
		case CondPrefix:
			atoms = append(atoms, atom{path: c.Value, be: e.Backend})
		case CondSegment:
			atoms = append(atoms, atom{exact: true, path: c.Value, be: e.Backend}, atom{path: c.Value + "/", be: e.Backend})
		}
	}
	var kept []atom
	for _, b := range atoms {
		covered := false
		for _, a := range kept {
			if (a.exact && b.exact && a.path == b.path) || (!a.exact && strings.HasPrefix(b.path, a.path)) {
				covered = true
				break
			}
		}
		if !covered {
			kept = append(kept, b)
		}
	}
	for _, a := range kept {
		e := haproxy.MapEntry{Key: host + "@" + a.path, Value: a.be}
		if a.exact {
			exact = append(exact, e)
		} else {
			prefix = append(prefix, e)
		}
	}
	return exact, prefix
}

// subjectFields are the fields of the regex subject after the host, in order; the path is
// last, so that a rewrite pattern's groups may run to its end.
func subjectFields(headers []string) []Field {
	fs := []Field{FieldMethod, FieldUA, FieldUARaw}
	for _, h := range headers {
		fs = append(fs, FieldHeader+Field(h))
	}
	return fs
}

// regexKey is an entry's map_regm line. Each condition is a lookahead at the start of its
// field (so several may test one field), each field is then skipped with [^\n]*\n; the
// rewrite pattern alone consumes, so its groups are the only capturing ones (\1 is its
// first). User patterns are re-emitted field-safe (see pcre).
func regexKey(host string, headers []string, e Entry) (key, value string) {
	var b strings.Builder
	b.WriteString(`(?m)\A`)
	b.WriteString(escapeLiteral(host))
	b.WriteString(`\n`)
	for _, f := range subjectFields(headers) {
		for _, c := range e.Conds {
			if c.Field == f {
				lookahead(&b, c)
			}
		}
		b.WriteString(`[^\n]*\n`)
	}
	for _, c := range e.Conds {
		if c.Field == FieldPath {
			lookahead(&b, c)
		}
	}
	value = e.Backend
	if rw := e.Rewrite; rw != nil {
		switch rw.Kind {
		case RewriteStrip:
			b.WriteString(escapeLiteral(rw.Prefix))
			b.WriteString(`/?([^\n]*)`)
			value += `|/\1`
		case RewriteReplace:
			b.WriteString(escapeLiteral(rw.Prefix))
			b.WriteString(`([^\n]*)`)
			value += "|" + rw.Replacement + `\1`
		case RewriteRegex:
			b.WriteString(`[^\n]*?`)
			b.WriteString(pcre(rw.re.tree, true))
			value += "|" + rw.Replacement
		case RewriteEru:
			b.WriteString(`[^\n]*?`)
			b.WriteString(pcre(rw.re.tree, true))
			if rw.re.caps > 0 {
				value += `|/\1`
			} else {
				value += "|/"
			}
		}
	}
	return b.String(), value
}

func lookahead(b *strings.Builder, c Cond) {
	switch c.Kind {
	case CondMethods:
		b.WriteString(`(?=(?:`)
		for i, m := range c.Values {
			if i > 0 {
				b.WriteByte('|')
			}
			b.WriteString(m)
		}
		b.WriteString(`)$)`)
	case CondExact:
		b.WriteString(`(?=` + escapeLiteral(c.Value) + `$)`)
	case CondPrefix:
		b.WriteString(`(?=` + escapeLiteral(c.Value) + `)`)
	case CondSegment:
		b.WriteString(`(?=` + escapeLiteral(c.Value) + `(?:/|$))`)
	case CondRegex:
		if c.Field != FieldPath {
			b.WriteString(`(?=[^\n])`) // an absent or empty header does not match
		}
		b.WriteString(`(?=[^\n]*?`)
		b.WriteString(pcre(c.re.tree, false))
		b.WriteByte(')')
	}
}

// httpsPort is the port of the https gateway (the first by name) that serves host: where a
// domain's redirect_https sends clients; 443 when no https gateway has the domain.
func httpsPort(gateways map[string]Gateway, host string) int {
	names := make([]string, 0, len(gateways))
	for n := range gateways {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		g := gateways[n]
		if _, ok := g.Domains[host]; !ok || g.Protocol != "https" {
			continue
		}
		if _, port, err := net.SplitHostPort(g.Bind); err == nil {
			if p, err := strconv.Atoi(port); err == nil {
				return p
			}
		}
	}
	return 443
}
