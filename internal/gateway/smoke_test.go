package gateway

import (
	"encoding/json"
	"os"
	"testing"
)

func eruReadme(t testing.TB) map[string]EruRules {
	t.Helper()
	b, err := os.ReadFile("testdata/eru_readme.json")
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]EruRules
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSmokeHaproxy(t *testing.T) {
	targets := ServiceTargets{"up1": {80}, "up2": {80}, "web": {80}, "blog": {80}}
	doms := map[string]Domain{}
	for h, r := range eruReadme(t) {
		r := r
		doms[h] = Domain{Eru: &r}
	}
	doms["www.example"] = Domain{Routes: []Route{
		{Name: "blog", Match: Match{PathSegmentPrefix: "/blog"}, Service: "blog", Rewrite: &Rewrite{StripPrefix: "/blog"}},
		{Name: "gone", Match: Match{PathExact: "/old"}, Status: 410},
		{Name: "mobile", Match: Match{UserAgent: "mobile", PathRegex: `^/m/(.*)$`}, Service: "web", Rewrite: &Rewrite{Replacement: `/mobile/\1`}},
		{Name: "rest", Service: "web"},
	}}
	gws := map[string]Gateway{"pub": {Bind: ":80", Domains: doms}}
	l := startLab(t, gws, targets)
	m, err := NewModel("pub", gws["pub"], targets)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []Request{
		{Host: "127.0.0.1:80", Method: "GET", Path: "/blog/post/1", UserAgent: "HTTPie/3.2.1"},
		{Host: "127.0.0.1", Method: "GET", Path: "/blog/post", UserAgent: "curl/8"},
		{Host: "127.0.0.1", Method: "GET", Path: "/other", UserAgent: "HTTPie/3.2.1"},
		{Host: "LOCALHOST", Method: "GET", Path: "/api/v1", UserAgent: "x"},
		{Host: "localhost", Method: "GET", Path: "/apx", UserAgent: "x"},
		{Host: "unknown.example", Method: "GET", Path: "/", UserAgent: "x"},
		{Host: "www.example", Method: "GET", Path: "/blog", UserAgent: "x"},
		{Host: "www.example", Method: "GET", Path: "/blog/a/b", UserAgent: "x"},
		{Host: "www.example", Method: "GET", Path: "/blogx", UserAgent: "x"},
		{Host: "www.example", Method: "GET", Path: "/old", UserAgent: "x"},
		{Host: "www.example", Method: "GET", Path: "/m/x/y", UserAgent: "A Mobile thing"},
		{Host: "www.example", Method: "GET", Path: "/m/x/y", UserAgent: ""},
	} {
		got, err := l.do(req)
		if err != nil {
			t.Fatal(err)
		}
		want := m.Resolve(req).answer()
		if got != want {
			t.Errorf("%+v: haproxy %+v, model %+v", req, got, want)
		} else {
			t.Logf("%+v -> %+v", req, got)
		}
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
