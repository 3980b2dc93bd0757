package gateway

import (
	"clb/internal/atomicfile"
	"clb/internal/haproxy"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func labPid(t *testing.T, l *lab) string {
	t.Helper()
	out, err := haproxy.AdminCommand(context.Background(), l.sock, "show info")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Pid: (\d+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no Pid in %q", out)
	}
	return m[1]
}

// TestRuntimeRouteChange applies a route change through the runtime API only (Plan +
// haproxy.ApplyMap): domains change, move from the tree to a shard, go and come; the next
// requests follow the new routes, haproxy's pid stays, a domain moving from the tree to a
// shard never misses a request meanwhile, and what is loaded equals the files.
func TestRuntimeRouteChange(t *testing.T) {
	targets := ServiceTargets{"s1": {80}, "s2": {80}}
	v1 := map[string]Gateway{"rt": {Bind: ":80", Domains: map[string]Domain{
		"a.example": {Routes: []Route{{Name: "all", Service: "s1"}}},
		"b.example": {Routes: []Route{{Name: "x", Match: Match{PathPrefix: "/x"}, Service: "s2"}}},
		"c.example": {Routes: []Route{{Name: "ua", Match: Match{UserAgent: "curl"}, Service: "s2"}, {Name: "all", Service: "s1"}}},
		"p.example": {Routes: []Route{{Name: "all", Service: "s1"}}},
	}}}
	l := startLab(t, v1, targets)
	pid := labPid(t, l)
	old, err := Compile(v1, targets)
	if err != nil {
		t.Fatal(err)
	}
	v2 := map[string]Gateway{"rt": {Bind: v1["rt"].Bind, Domains: map[string]Domain{
		"a.example": {Routes: []Route{{Name: "all", Service: "s2"}}},
		"c.example": {Routes: []Route{{Name: "ua", Match: Match{UserAgent: "wget"}, Service: "s2"}, {Name: "m", Match: Match{PathRegex: `^/m/(.*)`}, Service: "s2", Rewrite: &Rewrite{Replacement: `/\1`}}, {Name: "all", Service: "s1"}}},
		"d.example": {Routes: []Route{{Name: "all", Service: "s2"}}},
		"p.example": {Routes: []Route{{Name: "never", Match: Match{UserAgent: "never-sent"}, Service: "s2"}, {Name: "all", Service: "s1"}}},
	}}}
	next, err := Compile(v2, targets)
	if err != nil {
		t.Fatal(err)
	}
	if !next.ScaffoldEqual(old) {
		t.Fatal("a route change changed the scaffold")
	}
	plan := next.Plan(old)
	if len(plan) == 0 || plan[len(plan)-1].Map == "gw.rt.domains.map" {
		t.Fatalf("plan %v: p.example moves from the tree, so its old tree entries go after the flip", planNames(plan))
	}

	// p.example answers s1 throughout, while it moves from the tree to a shard.
	probe := Request{Host: "p.example", Method: "GET", Path: "/probe", UserAgent: "curl/8"}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var probes, wrong int
	var lastWrong answer
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 5000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			got, err := l.do(probe)
			probes++
			if err != nil || got.Backend != "s1_80" {
				wrong++
				lastWrong = got
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, u := range plan {
		if err := haproxy.ApplyMap(ctx, l.sock, MapPath(l.mapDir, u.Map), u.Entries); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // let the prober see each intermediate state
	}
	for _, n := range next.MapNames() {
		if err := atomicfile.Write(filepath.Join(l.mapDir, n), next.MapFile(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if wrong > 0 || probes == 0 {
		t.Errorf("p.example: %d of %d requests during the change were not served by s1 (last: %+v)", wrong, probes, lastWrong)
	}

	m, err := NewModel("rt", v2["rt"], targets)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []Request{
		{Host: "a.example", Method: "GET", Path: "/", UserAgent: "x"},
		{Host: "b.example", Method: "GET", Path: "/x", UserAgent: "x"},
		{Host: "c.example", Method: "GET", Path: "/", UserAgent: "curl"},
		{Host: "c.example", Method: "GET", Path: "/", UserAgent: "wget"},
		{Host: "c.example", Method: "GET", Path: "/m/a/b", UserAgent: "x"},
		{Host: "d.example", Method: "GET", Path: "/", UserAgent: "x"},
		{Host: "p.example", Method: "GET", Path: "/", UserAgent: "never-sent"},
	} {
		got, err := l.do(req)
		if err != nil {
			t.Fatal(err)
		}
		if want := m.Resolve(req).answer(); got != want {
			t.Errorf("%+v: haproxy %+v, want %+v", req, got, want)
		}
	}
	if got := labPid(t, l); got != pid {
		t.Errorf("haproxy pid %s became %s", pid, got)
	}
	// The files and what is loaded agree, so a reload changes nothing.
	for _, n := range next.MapNames() {
		b, err := os.ReadFile(filepath.Join(l.mapDir, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := haproxy.CheckMap(ctx, l.sock, MapPath(l.mapDir, n), haproxy.ParseMap(b)); err != nil {
			t.Error(err)
		}
	}
	// Nothing left to do.
	if p := next.Plan(next); len(p) != 0 {
		t.Errorf("plan from a state to itself: %v", planNames(p))
	}
}

func planNames(p []MapUpdate) []string {
	var out []string
	for _, u := range p {
		out = append(out, u.Map)
	}
	return out
}

// PlanMaps works on map paths as well as names (the reconciler keys maps by path), and
// leaves the domains map to the middle only when a domain moves.
func TestPlanMapsByPath(t *testing.T) {
	targets := ServiceTargets{"s1": {80}}
	byPath := func(c *Compiled) map[string][]haproxy.MapEntry {
		out := map[string][]haproxy.MapEntry{}
		for n, e := range c.Maps {
			out[MapPath("/var/lib/clb/maps", n)] = e
		}
		return out
	}
	gw := func(d Domain) map[string]Gateway {
		return map[string]Gateway{"g": {Bind: ":80", Domains: map[string]Domain{"a.example": d, "z.example": {Routes: []Route{{Name: "all", Service: "s1"}}}}}}
	}
	tree, _ := Compile(gw(Domain{Routes: []Route{{Name: "all", Service: "s1"}}}), targets)
	tree2, _ := Compile(gw(Domain{Routes: []Route{{Name: "x", Match: Match{PathExact: "/x"}, Status: 403}, {Name: "all", Service: "s1"}}}), targets)
	shard, _ := Compile(gw(Domain{Routes: []Route{{Name: "ua", Match: Match{UserAgent: "bot"}, Status: 403}, {Name: "all", Service: "s1"}}}), targets)

	names := func(p []MapUpdate) string {
		var out []string
		for _, u := range p {
			out = append(out, filepath.Base(u.Map)+"/"+strconv.Itoa(len(u.Entries)))
		}
		return strings.Join(out, " ")
	}
	s := "re" + fmt.Sprintf("%02d", shardOf("a.example"))
	for _, tc := range []struct {
		name     string
		from, to *Compiled
		want     string
	}{
		{"same", tree, tree, ""},
		{"stays in the tree", tree, tree2, "gw.g.exact.map/1"},
		{"tree to shard", tree, shard, "gw.g.prefix.map/2 gw.g." + s + ".map/2 gw.g.domains.map/2 gw.g.prefix.map/1"},
		{"shard to tree", shard, tree, "gw.g.prefix.map/2 gw.g." + s + ".map/2 gw.g.domains.map/2 gw.g." + s + ".map/0"},
		{"unknown", nil, tree, "gw.g.exact.map/0 gw.g.prefix.map/2 gw.g.re00.map/0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var loaded map[string][]haproxy.MapEntry
			if tc.from != nil {
				loaded = byPath(tc.from)
			}
			got := names(PlanMaps(loaded, byPath(tc.to)))
			if tc.from == nil {
				got = strings.Join(strings.Fields(got)[:3], " ")
				if !strings.HasSuffix(names(PlanMaps(loaded, byPath(tc.to))), "gw.g.domains.map/2") {
					t.Errorf("the domains map is not applied last: %s", names(PlanMaps(loaded, byPath(tc.to))))
				}
			}
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}
