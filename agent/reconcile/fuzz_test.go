package reconcile

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"clb/agent/config"
	"clb/internal/model"
	"clb/internal/render"
	"clb/internal/store"
)

// The fuzz targets prove that no input can add a line, a directive or a section to the
// rendered haproxy.cfg. They run as unit tests on their seeds; run them longer with e.g.
//
//	go test ./agent/reconcile -run '^$' -fuzz FuzzDecodeMember -fuzztime 3m

// fuzzConfig is a validated config with an http service (sticky, HTTP check) and a tcp one.
func fuzzConfig(t testing.TB) *config.Config {
	cfg := config.Defaults()
	cfg.StateDir, cfg.Output = "/nonexistent", "/nonexistent/haproxy.cfg"
	cfg.Services = map[string]config.Service{
		"web": {Listeners: []config.Listener{{Port: 80, MemberPort: 8080}, {Port: 81, MemberPort: 8081}}, Sticky: true,
			HealthCheck: &config.HealthCheck{Target: "HTTP:8080/health"}},
		"db": {Listeners: []config.Listener{{Port: 5432, Protocol: "tcp"}}},
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

func renderWith(t testing.TB, cfg *config.Config, members map[string][]model.Member) string {
	tmpl, source, err := render.Load("")
	if err != nil {
		t.Fatal(err)
	}
	out, err := render.Render(tmpl, Desired(cfg, store.Snapshot{Members: members}, nil, render.Data{TemplateSource: source}))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// serverLine is the only line shape a member may produce.
// A slot holds a member (its name in the comment) or is free (disabled, on 127.0.0.1:1).
var serverLine = regexp.MustCompile(`^    server (s[1-9][0-9]*) (\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]+) weight ([0-9]+)( cookie (s[1-9][0-9]*))?( # ([A-Za-z0-9][A-Za-z0-9_.:-]*))?$`)
var freeLine = regexp.MustCompile(`^    server (s[1-9][0-9]*) 127\.0\.0\.1:1 weight 100 disabled( cookie (s[1-9][0-9]*))?$`)

// checkRendered renders members and checks that the output is the member-less config plus
// exactly one well-formed server line per member and listener, in the right backends.
func checkRendered(t testing.TB, cfg *config.Config, members map[string][]model.Member) {
	t.Helper()
	var base []string // the member-less config without its (free) server lines
	for _, line := range strings.Split(renderWith(t, cfg, nil), "\n") {
		if !strings.HasPrefix(line, "    server ") {
			base = append(base, line)
		}
	}
	out := renderWith(t, cfg, members)
	var rest []string
	servers := map[string]int{} // by service
	backend := ""
	for _, line := range strings.Split(out, "\n") {
		if b, ok := strings.CutPrefix(line, "backend "); ok {
			backend = b
		}
		if !strings.HasPrefix(line, "    server ") {
			rest = append(rest, line)
			continue
		}
		if f := freeLine.FindStringSubmatch(line); f != nil {
			if f[2] != "" && f[3] != f[1] {
				t.Fatalf("free slot %q: cookie %q is not the slot name", line, f[3])
			}
			continue
		}
		m := serverLine.FindStringSubmatch(line)
		if m == nil || m[8] == "" {
			t.Fatalf("server line %q has an unexpected shape\nconfig:\n%s", line, out)
		}
		svc := backend[:strings.LastIndexByte(backend, '_')]
		found := false
		for _, mem := range members[svc] {
			if mem.Name == m[8] && strconv.Itoa(mem.Weight) == m[4] {
				found = true
			}
		}
		if !found {
			t.Fatalf("server line %q in backend %s matches no member of %s: %v", line, backend, svc, members[svc])
		}
		if m[5] != "" && m[6] != m[1] {
			t.Fatalf("server line %q: cookie %q is not the slot name", line, m[6])
		}
		servers[svc]++
	}
	if strings.Join(rest, "\n") != strings.Join(base, "\n") {
		t.Fatalf("members changed lines other than server lines:\n%s\nwant (without servers)\n%s", out, strings.Join(base, "\n"))
	}
	for svc, ms := range members {
		want := len(ms) * len(cfg.Services[svc].Listeners)
		if servers[svc] != want {
			t.Fatalf("service %s: %d server lines, want %d (%d members × %d listeners)\n%s", svc, servers[svc], want, len(ms), len(cfg.Services[svc].Listeners), out)
		}
	}
}

// FuzzRenderMembers renders up to three members built from fuzzed values (the ones the model
// accepts) into two services and checks the exact set of lines, and fuzzes the config values
// that reach the template (health-check target, certificate path, bind address): a config
// that validates renders the same directives, line for line, as a reference config.
func FuzzRenderMembers(f *testing.F) {
	f.Add("m1", "10.0.0.1", 8080, 100, "eu", uint8(3), "HTTP:8080/health", "/etc/ssl/web.pem", "127.0.0.1")
	f.Add("a.b:c", "2001:db8::5", 1, 0, "", uint8(1), "TCP:9000", "/x.pem", "::1")
	f.Add("m\nserver x", "1.2.3.4 backup", 70000, -1, "a b", uint8(2), "HTTP:80/a b#c", "/a b", "1.2.3.4\n")
	f.Add("host", "db.internal.example", 65535, 256, "z-1", uint8(0), "HTTP:80/p?q=1&r", "rel/cert.pem", "0.0.0.0")
	f.Fuzz(func(t *testing.T, name, address string, port, weight int, zone string, n uint8, target, cert, bind string) {
		cfg := fuzzConfig(t)
		members := map[string][]model.Member{}
		for i := range int(n % 4) {
			m := model.Member{Name: name, Address: address, Port: port, Weight: weight, Zone: zone}
			if i > 0 {
				m.Name = name + "-" + strconv.Itoa(i)
			}
			if m.Validate() != nil {
				break
			}
			members["web"] = append(members["web"], m)
			members["db"] = append(members["db"], m)
		}
		checkRendered(t, cfg, members)

		// Config values: validate, then compare the directive shape with the reference.
		ref := renderWith(t, fuzzHTTPSConfig(t, "HTTP:8080/health", "/etc/ssl/web.pem", "127.0.0.1", false), nil)
		fc := fuzzHTTPSConfig(t, target, cert, bind, true)
		if fc == nil {
			return
		}
		out := renderWith(t, fc, nil)
		sameDirectives(t, out, ref, fc.Services["web"].HealthCheck.Target)
	})
}

// fuzzHTTPSConfig is a one-service config with an https listener and an HTTP check; nil when
// the values do not validate (and may is true).
func fuzzHTTPSConfig(t *testing.T, target, cert, bind string, may bool) *config.Config {
	cfg := config.Defaults()
	cfg.StateDir, cfg.Output = "/nonexistent", "/nonexistent/haproxy.cfg"
	cfg.Services = map[string]config.Service{
		"web": {Listeners: []config.Listener{{Port: 443, MemberPort: 8080, Protocol: "https", Certificate: cert, Address: bind}},
			HealthCheck: &config.HealthCheck{Target: target, Interval: 10 * time.Second, Timeout: 2 * time.Second}},
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		if !may {
			t.Fatal(err)
		}
		return nil
	}
	return &cfg
}

// sameDirectives checks that got has the lines of want, each with the same directive (first
// word) and, outside comments, the same number of words; a TCP check drops the http-check
// lines of the reference.
func sameDirectives(t *testing.T, got, want, target string) {
	t.Helper()
	var wl []string
	for _, l := range strings.Split(want, "\n") {
		if strings.HasPrefix(strings.ToUpper(target), "TCP") && (strings.Contains(l, "http-check") || strings.Contains(l, "option httpchk")) {
			continue
		}
		wl = append(wl, l)
	}
	gl := strings.Split(got, "\n")
	if len(gl) != len(wl) {
		t.Fatalf("%d lines, want %d:\n%s", len(gl), len(wl), got)
	}
	for i := range gl {
		g, w := strings.Fields(gl[i]), strings.Fields(wl[i])
		if len(g) == 0 || len(w) == 0 {
			if len(g) != len(w) {
				t.Fatalf("line %d: %q, want %q", i+1, gl[i], wl[i])
			}
			continue
		}
		if g[0] != w[0] || (g[0] != "#" && len(g) != len(w) && !strings.HasPrefix(g[0], "default-server")) {
			t.Fatalf("line %d: %q has another directive or word count than %q\n%s", i+1, gl[i], wl[i], got)
		}
	}
}

// FuzzMetricsListen: a haproxy_metrics_listen that validates renders one bind line with an
// IP:PORT and nothing else; one that does not is refused.
func FuzzMetricsListen(f *testing.F) {
	for _, s := range []string{":9101", "9101", "127.0.0.1:9101", "[::1]:9101", "0.0.0.0:80", "127.0.0.1:9101\n    bind :1", "localhost:1", ":0", "[::1%eth0]:1", " :1"} {
		f.Add(s)
	}
	bindLine := regexp.MustCompile(`^    bind (\[[0-9a-f:.]+\]|[0-9.]+):([0-9]+)$`)
	f.Fuzz(func(t *testing.T, s string) {
		cfg := fuzzConfig(t)
		cfg.HaproxyMetricsListen = s
		cfg.SetDefaults()
		if cfg.Validate() != nil || s == "" {
			return // refused, or off
		}
		out := renderWith(t, cfg, nil)
		cfg.HaproxyMetricsListen = ""
		base := renderWith(t, cfg, nil)
		extra := strings.Split(out, "\n")
		n := len(extra) - len(strings.Split(base, "\n"))
		if n != 9 { // blank line, two comments, frontend, mode, bind, no log, two http-request
			t.Fatalf("haproxy_metrics_listen %q added %d lines, want 9:\n%s", s, n, out)
		}
		binds := 0
		for _, line := range extra {
			if strings.HasPrefix(line, "    bind ") && !strings.Contains(base, line+"\n") {
				binds++
				if m := bindLine.FindStringSubmatch(line); m == nil {
					t.Fatalf("haproxy_metrics_listen %q rendered %q", s, line)
				} else if p, _ := strconv.Atoi(m[2]); p < 1 || p > 65535 {
					t.Fatalf("port %d", p)
				}
			}
		}
		if binds != 1 {
			t.Fatalf("haproxy_metrics_listen %q rendered %d new bind lines, want 1", s, binds)
		}
	})
}
