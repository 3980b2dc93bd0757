package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPCREEmission(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`^/blog/(\S+)$`, `(?:^/blog/([^\x09\x0a\x0c\x0d\x20]+)$)`},
		{`a.b`, `(?:a[^\n]b)`},
		{`(?s)a.b`, `(?:a[^\n]b)`},      // . never crosses into the next field
		{`[^;]*`, `[^\x0a\;]*`},         // nor does a negated class
		{`\s`, `[\x09\x0c\x0d\x20]`},    // Go's \s ([\t\n\f\r ], not \v) minus \n
		{`(?i)mozilla`, `(?i:MOZILLA)`}, // ASCII folding is PCRE2's
		{`(?i)[k]`, `[Kk]`},             // the Kelvin sign is dropped: PCRE2 runs without UTF
		{`x{2,5}?`, `x{2,5}?`},          //
		{`(?P<n>a)(b)`, `(?:(a)(b))`},   // named groups become plain ones
		{`\bfoo\B`, `(?:\bfoo\B)`},      //
		{`a b`, `a\x20b`},               // no space: it would end the map key
		{`\Aa\z`, `(?:^a$)`},            // text anchors become field anchors
		{`[[:alpha:]]+|[0-9]{3,}`, `(?:[A-Za-z]+|[0-9]{3,})`},
		{`[a-c.]`, `[\.a-c]`},
		{`^$`, `(?:^$)`},
	} {
		re, err := parseRegex(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got := pcre(re.tree, true); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.in, got, tc.want)
		}
	}
	re, _ := parseRegex(`(a)(?:b)(c)`)
	if got := pcre(re.tree, false); got != `(?:(?:a)bc)` && !strings.Contains(got, "(?:a)") {
		t.Errorf("condition patterns keep no groups: %s", got)
	}
	if strings.Count(pcre(re.tree, false), "(?:") < 2 || strings.Contains(strings.ReplaceAll(pcre(re.tree, false), "(?:", ""), "(") {
		t.Errorf("condition patterns keep no capturing group: %s", pcre(re.tree, false))
	}
}

// TestPCREAcceptsEmission loads every emitted form of a list of patterns into haproxy (as
// map_regm keys of a map file that haproxy -c compiles): PCRE2 must accept all that Go
// accepts and the emitter writes.
func TestPCREAcceptsEmission(t *testing.T) {
	patterns := append([]string{
		`^/blog/(\S+)$`, `(?i)MoZiLLa`, `[^\x00-\x1f]`, `\pL`, `\PN+`, `[\p{Greek}a]`, `[^\p{Greek}]`,
		`\d\D\w\W\s\S`, `[[:^space:]]`, `x*?y+?z??`, `(a|b|)c`, `(?U)a+`, `(?m)^a$`, `\Q.*+\E`,
		`[]a]`, `[^]a]`, `[a-]`, `\x{41}`, `\.\-\#`, `(|a)`, `a{0}`, `a{1000}`, `(?:)`,
		`[\-\]\\\^]`, "\\t\\f\\v\\r", `\b\B`, `^`, `$`, `.`,
	}, diffPathRe...)
	patterns = append(patterns, diffUARe...)
	var b strings.Builder
	for _, p := range patterns {
		re, err := parseRegex(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		fmt.Fprintf(&b, `(?m)\Ax\n[^\n]*?%s be_x|/\1`+"\n", pcre(re.tree, true))
		fmt.Fprintf(&b, `(?m)\Ax\n(?=[^\n]*?%s) be_x`+"\n", pcre(re.tree, false))
	}
	dir := t.TempDir()
	m := filepath.Join(dir, "re.map")
	if err := os.WriteFile(m, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	conf := "defaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\nfrontend fe\n    bind 127.0.0.1:1\n    http-request set-var(txn.x) path,map_regm(" + m + ")\n    use_backend %[var(txn.x)]\nbackend be_x\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	checkConfig(t, cfg)
}

// TestFieldSafety: a user-agent pattern cannot reach into the path (or a header) field, and a
// path pattern cannot reach back; checked through a real haproxy and against the model.
func TestFieldSafety(t *testing.T) {
	targets := ServiceTargets{"hit": {80}, "miss": {80}}
	gws := map[string]Gateway{"fs": {Bind: ":80", Headers: []string{"x-h"}, Domains: map[string]Domain{
		"f.example": {Routes: []Route{
			{Name: "ua-class", Match: Match{UserAgent: `a[^;]*zz`}, Service: "hit"},
			{Name: "ua-dotall", Match: Match{UserAgent: `(?s)b.*yy`}, Service: "hit"},
			{Name: "ua-space", Match: Match{UserAgent: `c\s*xx`}, Service: "hit"},
			{Name: "ua-end", Match: Match{UserAgent: `d$`}, Service: "hit"},
			{Name: "hdr", Match: Match{Headers: map[string]string{"x-h": `^e[^!]*ww`}}, Service: "hit"},
			{Name: "path-back", Match: Match{PathRegex: `[^!]*qq/p`}, Service: "hit"},
			{Name: "rest", Service: "miss"},
		}},
	}}}
	l := startLab(t, gws, targets)
	m, err := NewModel("fs", gws["fs"], targets)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		req  Request
		want string
	}{
		{Request{Host: "f.example", Method: "GET", Path: "/zz", UserAgent: "a"}, "miss_80"},
		{Request{Host: "f.example", Method: "GET", Path: "/p", UserAgent: "a zz"}, "hit_80"},
		{Request{Host: "f.example", Method: "GET", Path: "/yy", UserAgent: "b"}, "miss_80"},
		{Request{Host: "f.example", Method: "GET", Path: "/xx", UserAgent: "c"}, "miss_80"},
		{Request{Host: "f.example", Method: "GET", Path: "/p", UserAgent: "c xx"}, "hit_80"},
		{Request{Host: "f.example", Method: "GET", Path: "/p", UserAgent: "d"}, "hit_80"},
		{Request{Host: "f.example", Method: "GET", Path: "/p", UserAgent: "dx"}, "miss_80"},
		{Request{Host: "f.example", Method: "GET", Path: "/ww", UserAgent: "z", Headers: map[string]string{"x-h": "e"}}, "miss_80"},
		{Request{Host: "f.example", Method: "GET", Path: "/p", UserAgent: "qq", Headers: map[string]string{"x-h": "qq"}}, "miss_80"},
		{Request{Host: "f.example", Method: "GET", Path: "/qq/p", UserAgent: "z"}, "hit_80"},
	} {
		got, err := l.do(tc.req)
		if err != nil {
			t.Fatal(err)
		}
		if model := m.Resolve(tc.req).Backend; got.Backend != tc.want || model != tc.want {
			t.Errorf("%+v: haproxy %s, model %s, want %s", tc.req, got.Backend, model, tc.want)
		}
	}
}
