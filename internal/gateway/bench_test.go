package gateway

import "testing"

func benchCompile(b *testing.B, regex bool) {
	g := Gateway{Bind: ":80", Domains: map[string]Domain{"bench.example": SyntheticDomain(MaxRoutesPerDomain, regex, "s1")}}
	for i := range 40 {
		g.Domains["d"+itoa(i)+".example"] = SyntheticDomain(25, regex, "s2")
	}
	gws := map[string]Gateway{"bench": g}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(gws, diffServices); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompilePrefix: 1,256 prefix routes (tree maps).
func BenchmarkCompilePrefix(b *testing.B) { benchCompile(b, false) }

// BenchmarkCompileRegex: 1,256 regex routes with rewrites (shards).
func BenchmarkCompileRegex(b *testing.B) { benchCompile(b, true) }

func TestSyntheticDomain(t *testing.T) {
	for _, regex := range []bool{false, true} {
		g := Gateway{Bind: ":80", Domains: map[string]Domain{"s.example": SyntheticDomain(100, regex, "s1")}}
		m, err := NewModel("s", g, diffServices)
		if err != nil {
			t.Fatal(err)
		}
		want := "/r99/x"
		if regex {
			want = "/x"
		}
		if d := m.Resolve(Request{Host: "s.example", Method: "GET", Path: "/r99/x"}); d.Backend != "s1_80" || d.Path != want {
			t.Errorf("regex %v: %+v", regex, d)
		}
		c, _ := Compile(map[string]Gateway{"s": g}, diffServices)
		if tree := isTree(c.Domains["s"]["s.example"]); tree == regex {
			t.Errorf("regex %v: tree %v", regex, tree)
		}
	}
}
