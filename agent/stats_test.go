package agent_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// statsHealth checks members every 5 s and takes them out after 2 failures, so that a dead
// member is reported down within about 10 s.
const statsHealth = "    health_check:\n      interval: 5s\n      timeout: 1s\n      healthy_threshold: 2\n      unhealthy_threshold: 2\n"

// scrapeMetrics scrapes clbd's /metrics into value by series as the text format writes it
// (`name{label="v",...}`, labels sorted by name).
func scrapeMetrics(t testing.TB, c *clbd) (map[string]float64, string) {
	t.Helper()
	resp, err := noKeepAlive.Get("http://" + c.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d, %v", resp.StatusCode, err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out, string(body)
}

// statsOf is GET /v1/stats (query appended) signed with key and secret.
func statsOf(t testing.TB, c *clbd, key, secret, query string) (int, map[string]any) {
	t.Helper()
	return c.callAs(key, "GET", "/v1/stats"+query, secret, nil)
}

// memberRequests is each member's cumulative requests in its latest sample, from a
// GET /v1/stats answer, for service svc.
func memberRequests(out map[string]any, svc string) map[string]float64 {
	got := map[string]float64{}
	services, _ := out["services"].([]any)
	for _, s := range services {
		sm := s.(map[string]any)
		if sm["name"] != svc {
			continue
		}
		for _, m := range sm["members"].([]any) {
			mm := m.(map[string]any)
			samples := mm["samples"].([]any)
			if len(samples) > 0 {
				got[mm["name"].(string)] = samples[len(samples)-1].(map[string]any)["requests"].(float64)
			} else {
				got[mm["name"].(string)] = -1
			}
		}
	}
	return got
}

// TestTrafficStats: requests through a real haproxy to real backends show up in /v1/stats
// and /metrics under the members' names, counted exactly (HTTP requests; sessions for a TCP
// service); a dead member shows redispatches and goes down; a reload (which starts haproxy's
// counters again) loses nothing; a register key sees its services only; bad queries are
// refused; the Grafana dashboard queries only exported metrics.
func TestTrafficStats(t *testing.T) {
	apiPort, rawPort := freePort(t), freePort(t)
	// raw: a TCP service in front of the same backends, where a request is a session.
	raw := fmt.Sprintf("  raw:\n    listeners:\n      - port: %d\n        address: 127.0.0.1\n        protocol: tcp\n", rawPort)
	s := newScenarioWith(t, true, statsHealth+raw)
	pw := s.c.password()
	s.register("b1")
	s.register("b2")
	mustRun(t, "clb_register", "--server", "http://"+s.c.api, "--password-file", s.pwFile, "--service", "raw",
		"--name", "r1", "--address", "127.0.0.1", "--port", itoa(s.ports["b1"]))
	// Both members have a first sample (haproxy counted nothing yet).
	waitFor(t, 10*time.Second, "a first sample of b1 and b2", func() bool {
		_, out := statsOf(t, s.c, "default", pw, "?service=web")
		got := memberRequests(out, "web")
		return got["b1"] == 0 && got["b2"] == 0
	})
	served := spread(t, s.front, 40)
	if served["b1"]+served["b2"] != 40 {
		t.Fatalf("40 requests were served %v, want b1 and b2 only", served)
	}
	var out map[string]any
	waitFor(t, 10*time.Second, fmt.Sprintf("/v1/stats counting b1:%d b2:%d", served["b1"], served["b2"]), func() bool {
		_, out = statsOf(t, s.c, "default", pw, "?service=web")
		got := memberRequests(out, "web")
		return got["b1"] == float64(served["b1"]) && got["b2"] == float64(served["b2"])
	})
	svc := out["services"].([]any)[0].(map[string]any)
	var names []string
	for _, m := range svc["members"].([]any) {
		names = append(names, m.(map[string]any)["name"].(string))
	}
	if !slices.Equal(names, []string{"b1", "b2"}) {
		t.Errorf("members in /v1/stats: %v, want b1 and b2 (member names, never slots)", names)
	}
	if tot := svc["totals"].(map[string]any); tot["requests"] != 40.0 {
		t.Errorf("web's totals = %v, want 40 requests", tot)
	}
	if out["interval_seconds"] != 2.0 || out["window_seconds"] != 600.0 {
		t.Errorf("interval %v, window %v; want 2 and 600", out["interval_seconds"], out["window_seconds"])
	}
	// TCP: every connection is one session of r1.
	rawURL := fmt.Sprintf("http://127.0.0.1:%d/", rawPort)
	if got := spread(t, rawURL, 7); got["b1"] != 7 {
		t.Fatalf("7 requests through raw were served %v, want all by b1", got)
	}
	waitFor(t, 10*time.Second, "r1 counting 7 sessions", func() bool {
		_, out := statsOf(t, s.c, "default", pw, "?service=raw")
		return memberRequests(out, "raw")["r1"] == 7
	})

	m, _ := scrapeMetrics(t, s.c)
	for _, name := range []string{"b1", "b2"} {
		lbl := `{member="` + name + `",service="web"}`
		if got := m["clb_member_requests_total"+lbl]; got != float64(served[name]) {
			t.Errorf("clb_member_requests_total%s = %v, want %d", lbl, got, served[name])
		}
		if got := m[`clb_member_responses_total{code="2xx",member="`+name+`",service="web"}`]; got != float64(served[name]) {
			t.Errorf("2xx responses of %s = %v, want %d", name, got, served[name])
		}
		if m["clb_member_up"+lbl] != 1 {
			t.Errorf("clb_member_up%s = %v, want 1", lbl, m["clb_member_up"+lbl])
		}
	}
	if got := m[`clb_member_requests_total{member="r1",service="raw"}`]; got != 7 {
		t.Errorf("r1's sessions in /metrics = %v, want 7", got)
	}
	if got := m[`clb_service_requests_total{service="web"}`]; got != 40 {
		t.Errorf("clb_service_requests_total = %v, want 40", got)
	}
	if got := m[`clb_service_members_up{service="web"}`]; got != 2 {
		t.Errorf("clb_service_members_up = %v, want 2", got)
	}

	// A dead member: haproxy fails to connect, retries and redispatches to b1 (every request
	// is still served), and reports b2 down once its checks fail.
	s.stopBackend["b2"]()
	if got := spread(t, s.front, 20); got["b1"] != 20 {
		t.Errorf("with b2 dead, 20 requests were served %v, want all by b1", got)
	}
	// haproxy counts a connection error (econ) only when the last try fails; here haproxy
	// redispatches to b1 (wredis, on b2) or retries (wretr), so b2 shows those.
	var text string
	defer func() {
		if t.Failed() {
			t.Logf("last /metrics:\n%s", text)
		}
	}()
	waitFor(t, 20*time.Second, "b2 down in /metrics, with redispatches or retries", func() bool {
		var m map[string]float64
		m, text = scrapeMetrics(t, s.c)
		return m[`clb_member_up{member="b2",service="web"}`] == 0 && m[`clb_member_redispatches_total{member="b2",service="web"}`]+m[`clb_member_retries_total{member="b2",service="web"}`] > 0 &&
			m[`clb_service_members_up{service="web"}`] == 1
	})
	_, out = statsOf(t, s.c, "default", pw, "?service=web")
	if got := memberRequests(out, "web"); got["b1"] < float64(served["b1"]+10) {
		t.Errorf("b1's requests %v after serving %d+20, want at least %d", got["b1"], served["b1"], served["b1"]+10)
	}

	// A reload (defining a service) starts haproxy's counters at zero: clbd's do not drop,
	// and later requests add to them.
	before, _ := scrapeMetrics(t, s.c)
	b1 := before[`clb_member_requests_total{member="b1",service="web"}`]
	reloads := s.c.status()["reloads"].(float64)
	if code, out := s.admin("PUT", "/v1/services/api", map[string]any{"listeners": []map[string]any{{"port": apiPort, "address": "127.0.0.1"}}}); code != http.StatusOK {
		t.Fatalf("define api = %d %v", code, out)
	}
	if s.c.status()["reloads"].(float64) != reloads+1 {
		t.Fatal("defining a service did not reload haproxy")
	}
	if got := spread(t, s.front, 10); got["b1"] != 10 {
		t.Fatalf("after the reload, 10 requests were served %v, want all by b1", got)
	}
	waitFor(t, 10*time.Second, fmt.Sprintf("b1's requests at %v+10 after the reload", b1), func() bool {
		m, _ := scrapeMetrics(t, s.c)
		return m[`clb_member_requests_total{member="b1",service="web"}`] == b1+10
	})

	// Scope: a register key for web sees web only.
	keys := filepath.Join(s.dir, "keys.yaml")
	writeAtomic(t, keys, "keys:\n  - id: admin\n    secret: "+adminSecret+"\n    scope: admin\n  - id: webdeploy\n    secret: web-secret-0123456789\n    scope: register\n    services: [web]\n")
	waitFor(t, 10*time.Second, "key webdeploy accepted", func() bool {
		code, _ := statsOf(t, s.c, "webdeploy", "web-secret-0123456789", "")
		return code == http.StatusOK
	})
	_, out = statsOf(t, s.c, "webdeploy", "web-secret-0123456789", "")
	if got := serviceNames(out); !slices.Equal(got, []string{"web"}) {
		t.Errorf("webdeploy sees %v, want web only", got)
	}
	_, out = s.admin("GET", "/v1/stats", nil)
	if got := serviceNames(out); !slices.Equal(got, []string{"api", "raw", "web"}) {
		t.Errorf("admin sees %v, want api, raw and web", got)
	}
	for _, tc := range []struct {
		key, secret, query string
		status             int
		code               string
	}{
		{"webdeploy", "web-secret-0123456789", "?service=api", 403, "forbidden"},
		{"admin", adminSecret, "?service=nope", 404, "not_found"},
		{"admin", adminSecret, "?since=last-tuesday", 400, "bad_request"},
		{"admin", adminSecret, "?servce=web", 400, "bad_request"},
	} {
		if code, out := statsOf(t, s.c, tc.key, tc.secret, tc.query); code != tc.status || out["code"] != tc.code {
			t.Errorf("GET /v1/stats%s as %s = %d %v, want %d %s", tc.query, tc.key, code, out, tc.status, tc.code)
		}
	}

	// The Grafana dashboard queries only metrics this clbd exports.
	checkDashboard(t, s.c)
}

func serviceNames(out map[string]any) []string {
	var names []string
	services, _ := out["services"].([]any)
	for _, s := range services {
		names = append(names, s.(map[string]any)["name"].(string))
	}
	return names
}

func writeAtomic(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, content, 0o600)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// metricName finds the clb_ metric names in a PromQL expression.
var metricName = regexp.MustCompile(`\bclb_[a-z0-9_]+`)

// checkDashboard parses docs/grafana/clb.json and checks that every clb_ metric it queries
// (panel targets' expr, template variables' query) is in the live clbd's /metrics (histograms
// by their _bucket, _sum or _count series).
func checkDashboard(t *testing.T, c *clbd) {
	t.Helper()
	var dash map[string]any
	if err := json.Unmarshal(readFile(t, "../docs/grafana/clb.json"), &dash); err != nil {
		t.Fatalf("docs/grafana/clb.json: %v", err)
	}
	if panels, _ := dash["panels"].([]any); len(panels) < 10 {
		t.Fatalf("docs/grafana/clb.json has %d panels", len(panels))
	}
	var queries []string
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(e, k)
			}
		case []any:
			for _, e := range v {
				walk(e, key)
			}
		case string:
			if key == "expr" || key == "query" {
				queries = append(queries, v)
			}
		}
	}
	walk(dash, "")
	_, text := scrapeMetrics(t, c)
	exported := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			exported[strings.Fields(name)[0]] = true
		}
	}
	queried := map[string]bool{}
	for _, q := range queries {
		for _, name := range metricName.FindAllString(q, -1) {
			base := name
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(name, suffix); ok && exported[b] {
					base = b
				}
			}
			queried[base] = true
			if !exported[base] {
				t.Errorf("the dashboard queries %s (in %q), which clbd does not export", name, q)
			}
		}
	}
	for _, want := range []string{"clb_member_requests_total", "clb_member_responses_total", "clb_member_response_time_seconds",
		"clb_member_sessions", "clb_member_queue", "clb_member_up", "clb_service_requests_total", "clb_service_members_up",
		"clb_applies_total", "clb_haproxy_reloads_total"} {
		if !queried[want] {
			t.Errorf("the dashboard does not query %s", want)
		}
	}
}

// TestHaproxyExporter: with haproxy_metrics_listen, haproxy serves its built-in Prometheus
// exporter there (Debian's build has it), labelling servers by slot; other paths answer 404.
func TestHaproxyExporter(t *testing.T) {
	port := freePort(t)
	s := newScenarioWith(t, true, statsHealth+fmt.Sprintf("haproxy_metrics_listen: \":%d\"\n", port))
	s.register("b1")
	spread(t, s.front, 5)
	slot := slotOf(t, s.hapCfg, "web_"+itoa(freePortOf(s.front)), "b1")
	resp, err := noKeepAlive.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatalf("haproxy's exporter on 127.0.0.1:%d: %v", port, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := fmt.Sprintf(`haproxy_server_http_responses_total{proxy="web_%d",server="%s",code="2xx"} 5`, freePortOf(s.front), slot)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		t.Errorf("GET /metrics = %d, want a line %q in:\n%.2000s", resp.StatusCode, want, body)
	}
	resp, err = noKeepAlive.Get(fmt.Sprintf("http://127.0.0.1:%d/other", port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /other = %d, want 404", resp.StatusCode)
	}
}
