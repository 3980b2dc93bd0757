package agent_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"clb/internal/auth"
)

// Auto Scaling groups end to end: clbd launches real member processes (this test binary, run
// as a member by the shipped local launcher docs/autoscale/local/launch.sh) that listen on
// 127.0.0.1 and register themselves through the signed API; haproxy health-checks them.

func init() {
	if os.Getenv("CLB_ASG_MEMBER") == "1" {
		os.Exit(runASGMember())
	}
}

// runASGMember is a member machine: an HTTP server answering with its instance name, which
// announces itself (PUT /v1/instances/NAME) and registers in service web (retrying, bounded,
// while clbd is down), and exits on SIGTERM after its requests are done.
func runASGMember() int {
	name, zone := os.Getenv("CLB_INSTANCE_NAME"), os.Getenv("CLB_ZONE")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Each answer takes 250 ms, so that requests are in flight when an instance is stopped.
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(250 * time.Millisecond)
		io.WriteString(w, name)
	})}
	go srv.Serve(ln)
	port := ln.Addr().(*net.TCPAddr).Port
	pw, _ := os.ReadFile(os.Getenv("CLB_TEST_PASSWORD_FILE"))
	key := auth.DeriveKey(bytes.TrimSpace(pw))
	call := func(server, path string, body any) error {
		data, _ := json.Marshal(body)
		req, _ := http.NewRequest("PUT", server+path, bytes.NewReader(data))
		if err := auth.Sign(req, "default", key, data, time.Now()); err != nil {
			return err
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("%s: %d %s", path, resp.StatusCode, b)
		}
		return nil
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		server, _ := os.ReadFile(os.Getenv("CLB_TEST_SERVER_FILE"))
		s := strings.TrimSpace(string(server))
		err := fmt.Errorf("no server yet")
		if s != "" {
			if err = call(s, "/v1/instances/"+name, map[string]any{"zone": zone}); err == nil {
				err = call(s, "/v1/services/web/members/"+name, map[string]any{"port": port, "zone": zone})
			}
		}
		if err == nil {
			fmt.Println("registered", name, port)
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "register:", err)
			return 1
		}
		time.Sleep(100 * time.Millisecond)
	}
	// SIGTERM stops it at once, like a machine powered off: requests in flight are cut, so
	// only a drain before the termination loses none.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return 0
}

// asgScenario is a clbd with service web and one group g of local member processes.
type asgScenario struct {
	*scenario
	instDir string // the local launcher's pid and log files
}

// asgConfig is the config after web's listeners: web's health check and draining, the local
// launcher (launchPrefix runs before launch.sh, e.g. a failure switch) and the group.
func newASGScenario(t testing.TB, launchPrefix, group string) *asgScenario {
	t.Helper()
	requireHaproxyBin(t)
	docs, err := filepath.Abs("../docs/autoscale/local")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := shortDir(t)
	s := &asgScenario{instDir: filepath.Join(dir, "instances"), scenario: &scenario{t: t, dir: dir, managed: true, ports: map[string]int{}}}
	// Members outlive clbd (sessions of their own): stop them after everything else.
	t.Cleanup(func() { s.killAll(syscall.SIGKILL) })
	serverFile := filepath.Join(dir, "server")
	s.pwFile = filepath.Join(dir, "password")
	writeFile(t, s.pwFile, "correct horse battery staple\n", 0o600)
	keys := filepath.Join(dir, "keys.yaml")
	writeFile(t, keys, "keys:\n  - id: admin\n    secret: "+adminSecret+"\n    scope: admin\n", 0o600)
	front := freePort(t)
	s.front = fmt.Sprintf("http://127.0.0.1:%d/", front)
	launch := fmt.Sprintf("%s%q %q env CLB_ASG_MEMBER=1 CLB_TEST_SERVER_FILE=%q CLB_TEST_PASSWORD_FILE=%q %q",
		launchPrefix, docs+"/launch.sh", s.instDir, serverFile, s.pwFile, self)
	extra := `    draining_timeout: 2s
    health_check:
      interval: 5s
      timeout: 2s
      healthy_threshold: 2
      unhealthy_threshold: 2
launchers:
  local:
    launch: ` + yamlQuote(launch) + `
    terminate: ` + yamlQuote(fmt.Sprintf("%q %q", docs+"/terminate.sh", s.instDir)) + `
    timeout: 30s
launch_configurations:
  lc:
    launcher: local
    image_id: local-process
    instance_type: test
autoscale:
  interval: 200ms
  backoff_min: 500ms
  backoff_max: 4s
groups:
` + group
	s.cfgPath = filepath.Join(dir, "clbd.yaml")
	writeFile(t, s.cfgPath, webConfig(front, freePort(t), extra), 0o644)
	s.hapCfg = filepath.Join(dir, "haproxy.cfg")
	s.c = startClbd(t, dir, "--config", s.cfgPath, "--state-dir", dir, "--templates", filepath.Join(dir, "templates"),
		"--password-file", s.pwFile, "--keys-file", keys, "--managed")
	writeFile(t, serverFile, "http://"+s.c.api+"\n", 0o644)
	return s
}

func yamlQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// group is the group's view and activities from GET /v1/groups/g.
type asgGroup struct {
	Desired   int `json:"desired_capacity_now"`
	MinSize   int `json:"min_size"`
	MaxSize   int `json:"max_size"`
	InService int `json:"in_service"`
	Failures  int `json:"launch_failures"`
	Instances []struct {
		ID    string `json:"instance_id"`
		Zone  string `json:"zone"`
		State string `json:"lifecycle_state"`
	} `json:"instances"`
}

type asgActivity struct {
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	Cause       string    `json:"cause"`
	Description string    `json:"description"`
	Status      string    `json:"status"`
	Message     string    `json:"message"`
}

func (s *asgScenario) group() (asgGroup, []asgActivity) {
	s.t.Helper()
	code, out := s.admin("GET", "/v1/groups/g", nil)
	if code != http.StatusOK {
		s.t.Fatalf("GET /v1/groups/g = %d %v", code, out)
	}
	var v struct {
		Group      asgGroup      `json:"group"`
		Activities []asgActivity `json:"activities"`
	}
	b, _ := json.Marshal(out)
	if err := json.Unmarshal(b, &v); err != nil {
		s.t.Fatal(err)
	}
	return v.Group, v.Activities
}

// inService returns the ids of the instances in service, or nil unless exactly n are and
// nothing else is in the group.
func (g asgGroup) exactlyInService(n int) []string {
	var ids []string
	for _, in := range g.Instances {
		if in.State != "InService" {
			return nil
		}
		ids = append(ids, in.ID)
	}
	if len(ids) != n || g.Desired != n {
		return nil
	}
	return ids
}

// pids are the local instances' processes by instance id (pid files of launch.sh).
func (s *asgScenario) pids() map[string]int {
	out := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(s.instDir, "*.pid"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			continue
		}
		out[strings.TrimSuffix(filepath.Base(f), ".pid")] = pid
	}
	return out
}

// running are the instances whose process is alive (not a zombie).
func (s *asgScenario) running() map[string]int {
	out := map[string]int{}
	for id, pid := range s.pids() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 2 && f[2] != "Z" {
			out[id] = pid
		}
	}
	return out
}

func (s *asgScenario) killAll(sig syscall.Signal) {
	for _, pid := range s.running() {
		syscall.Kill(pid, sig)
	}
}

// webMembers are the members of service web.
func (s *asgScenario) webMembers() map[string]bool {
	s.t.Helper()
	code, out := s.admin("GET", "/v1/services/web", nil)
	if code != http.StatusOK {
		s.t.Fatalf("GET /v1/services/web = %d %v", code, out)
	}
	got := map[string]bool{}
	ms, _ := out["members"].([]any)
	for _, m := range ms {
		if mm, ok := m.(map[string]any); ok {
			got[fmt.Sprint(mm["name"])] = true
		}
	}
	return got
}

// watchBounds checks the group's desired capacity and active instances against min and max
// every 100 ms until the test ends.
func (s *asgScenario) watchBounds(t *testing.T, min, max int) {
	stop := make(chan struct{})
	done := make(chan struct{})
	var bad atomic.Value
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			code, out := s.c.callAs("admin", "GET", "/v1/groups/g", adminSecret, nil)
			if code != http.StatusOK {
				continue
			}
			g, _ := out["group"].(map[string]any)
			d, _ := g["desired_capacity_now"].(float64)
			active := 0
			ins, _ := g["instances"].([]any)
			for _, in := range ins {
				if m, ok := in.(map[string]any); ok && m["lifecycle_state"] != "Terminating" {
					active++
				}
			}
			if int(d) < min || int(d) > max || active > max {
				bad.Store(fmt.Sprintf("desired %v, %d active instances: outside [%d, %d]", d, active, min, max))
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		if v := bad.Load(); v != nil {
			t.Errorf("bounds crossed: %v", v)
		}
	})
}

// load sends requests to the front at about rate per second from one goroutine until stop,
// counting failures; bounded by limit.
type asgLoad struct {
	stop        chan struct{}
	done        chan struct{}
	ok, failed  atomic.Int64
	mu          sync.Mutex
	lastFailure string
	servedBy    map[string]int
}

func startASGLoad(url string, rate int, limit time.Duration) *asgLoad {
	l := &asgLoad{stop: make(chan struct{}), done: make(chan struct{}), servedBy: map[string]int{}}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		end := time.After(limit)
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			select {
			case <-l.stop:
				return
			case <-end:
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := noKeepAlive.Get(url)
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						l.ok.Add(1)
						l.mu.Lock()
						l.servedBy[string(b)]++
						l.mu.Unlock()
						return
					}
					err = fmt.Errorf("HTTP %d", resp.StatusCode)
				}
				l.failed.Add(1)
				l.mu.Lock()
				l.lastFailure = err.Error()
				l.mu.Unlock()
			}()
		}
	}()
	return l
}

func (l *asgLoad) end() {
	close(l.stop)
	<-l.done
}

const asgGroupYAML = `  g:
    launch_configuration: lc
    min_size: 2
    max_size: 3
    zones: [za, zb]
    services: [web]
    health_check_type: ELB
    health_check_grace_period: 8s
    cooldown: 2s
    triggers:
      - name: load
        metric: RequestRate
        statistic: Average
        period: 1s
        breach_duration: 2s
        upper_threshold: 25
        upper_breach_scale_increment: "1"
        lower_threshold: 12
        lower_breach_scale_increment: "-1"
`

// TestAutoscaleGroup runs a group's life: launched over two zones, a killed member replaced,
// load over the trigger's upper threshold scales out, load gone scales in with a drain and no
// failed request, and min/max are never crossed.
func TestAutoscaleGroup(t *testing.T) {
	s := newASGScenario(t, "", asgGroupYAML)
	s.watchBounds(t, 2, 3)

	var first []string
	waitFor(t, 30*time.Second, "2 instances in service", func() bool {
		g, _ := s.group()
		first = g.exactlyInService(2)
		return first != nil
	})
	g, _ := s.group()
	zones := map[string]int{}
	for _, in := range g.Instances {
		zones[in.Zone]++
	}
	if zones["za"] != 1 || zones["zb"] != 1 {
		t.Fatalf("instances by zone = %v, want one in za and one in zb", zones)
	}
	if got := s.running(); len(got) != 2 {
		t.Fatalf("running member processes = %v, want 2", got)
	}
	wantServed(t, s.front, 20, first...)

	// A member dies (kill -9): haproxy's checks see it down, the group replaces it.
	victim := first[0]
	syscall.Kill(s.pids()[victim], syscall.SIGKILL)
	var second []string
	waitFor(t, 45*time.Second, "the killed instance to be replaced", func() bool {
		g, _ := s.group()
		second = g.exactlyInService(2)
		if second == nil {
			return false
		}
		for _, id := range second {
			if id == victim {
				return false
			}
		}
		return true
	})
	if s.webMembers()[victim] {
		t.Errorf("killed instance %s is still a member of web", victim)
	}
	_, acts := s.group()
	if !hasActivity(acts, "ELB health check", victim) {
		t.Errorf("no activity for the replacement of %s: %+v", victim, acts)
	}
	wantServed(t, s.front, 20, second...)

	// Load over 25 req/s for 2 s: scale out to 3 (the max; the trigger keeps breaching).
	heavy := startASGLoad(s.front, 60, 60*time.Second)
	var third []string
	waitFor(t, 45*time.Second, "scale out to 3", func() bool {
		g, _ := s.group()
		third = g.exactlyInService(3)
		return third != nil
	})
	heavy.end()
	g, _ = s.group()
	zones = map[string]int{}
	for _, in := range g.Instances {
		zones[in.Zone]++
	}
	if zones["za"]+zones["zb"] != 3 || zones["za"] == 0 || zones["zb"] == 0 {
		t.Fatalf("instances by zone = %v, want 3 over za and zb", zones)
	}

	// Load gone (a probe of 8 req/s stays, below the lower threshold of 12; about 2 requests
	// in flight at any time): scale in to 2, draining the instance first: not one probe
	// request fails.
	probe := startASGLoad(s.front, 8, 60*time.Second)
	var fourth []string
	waitFor(t, 45*time.Second, "scale in to 2", func() bool {
		g, _ := s.group()
		fourth = g.exactlyInService(2)
		return fourth != nil && len(s.running()) == 2
	})
	probe.end()
	if n := probe.failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed during the scale-in (last: %s)", n, n+probe.ok.Load(), probe.lastFailure)
	}
	if probe.ok.Load() < 4 {
		t.Errorf("only %d probe requests succeeded", probe.ok.Load())
	}
	_, acts = s.group()
	if !hasActivity(acts, "shrinking the capacity from 3 to 2", "") {
		t.Errorf("no scale-in activity: %+v", acts)
	}
	// Zone balance: the zone with two instances gave one up.
	g, _ = s.group()
	zones = map[string]int{}
	for _, in := range g.Instances {
		zones[in.Zone]++
	}
	if zones["za"] != 1 || zones["zb"] != 1 {
		t.Errorf("after scale-in instances by zone = %v, want one each", zones)
	}
	members := s.webMembers()
	for _, id := range fourth {
		if !members[id] {
			t.Errorf("instance %s in service but not a member of web (%v)", id, members)
		}
	}
	if len(members) != 2 {
		t.Errorf("web members = %v, want the 2 instances", members)
	}
	resp, err := noKeepAlive.Get("http://" + s.c.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`clb_group_desired_capacity{group="g"} 2`, `clb_group_instances{group="g",state="InService"} 2`, `clb_group_min_size{group="g"} 2`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics has no %q", want)
		}
	}
}

func hasActivity(acts []asgActivity, cause, desc string) bool {
	for _, a := range acts {
		if strings.Contains(a.Cause, cause) && strings.Contains(a.Cause+a.Description, desc) {
			return true
		}
	}
	return false
}

// TestAutoscaleLauncherFailureBacksOff: a launcher that fails is retried one launch at a time
// with exponential backoff (0.5 s, 1 s, 2 s, 4 s...), every failure an activity with its
// output; once it works again the group fills up.
func TestAutoscaleLauncherFailureBacksOff(t *testing.T) {
	dir := shortDir(t)
	failFlag, attempts := filepath.Join(dir, "fail"), filepath.Join(dir, "attempts")
	writeFile(t, failFlag, "", 0o644)
	prefix := fmt.Sprintf(`sh -c 'if [ -f %s ]; then echo x >>%s; echo "no capacity in zone $CLB_ZONE" >&2; exit 3; fi; exec "$0" "$@"' `, failFlag, attempts)
	s := newASGScenario(t, prefix, `  g:
    launch_configuration: lc
    min_size: 2
    max_size: 2
    zones: [za]
    services: [web]
    health_check_type: ELB
    health_check_grace_period: 8s
`)
	// Refusals of the native API, while the launches fail.
	for _, c := range []struct {
		key, secret, method, path string
		body                      any
		want                      int
		code                      string
	}{
		{"admin", adminSecret, "GET", "/v1/groups/nope", nil, http.StatusNotFound, "not_found"},
		{"admin", adminSecret, "PUT", "/v1/groups/g/desired_capacity", map[string]any{"desired_capacity": 3}, http.StatusBadRequest, "bad_request"},
		{"admin", adminSecret, "PUT", "/v1/groups/g/desired_capacity", map[string]any{"desired": 1}, http.StatusBadRequest, "bad_request"},
		{"default", "correct horse battery staple", "PUT", "/v1/groups/g/desired_capacity", map[string]any{"desired_capacity": 1}, http.StatusForbidden, "forbidden"},
		{"default", "correct horse battery staple", "PUT", "/v1/services/web/members/m1", map[string]any{"port": 9, "cpu": 150}, http.StatusBadRequest, "bad_request"},
	} {
		code, out := s.c.callAs(c.key, c.method, c.path, c.secret, c.body)
		if code != c.want || out["code"] != c.code {
			t.Errorf("%s %s %v = %d %v, want %d %s", c.method, c.path, c.body, code, out, c.want, c.code)
		}
	}
	if code, out := s.c.callAs("default", "GET", "/v1/groups", "correct horse battery staple", nil); code != http.StatusOK || len(out["groups"].([]any)) != 1 {
		t.Errorf("GET /v1/groups = %d %v, want the one group", code, out)
	}
	time.Sleep(6 * time.Second)
	n := strings.Count(readFileString(t, attempts), "x")
	// Launch attempts at about 0, 0.5, 1.5, 3.5 s (then 7.5 s): a storm would be ~60 (one per
	// 200 ms check and missing instance).
	if n < 3 || n > 5 {
		t.Errorf("%d launch attempts in 6 s, want 3-5 (backoff 0.5s doubling, one at a time)", n)
	}
	g, acts := s.group()
	if g.Failures < 3 {
		t.Errorf("launch_failures = %d, want >= 3", g.Failures)
	}
	failed := 0
	for _, a := range acts {
		if a.Status == "Failed" {
			failed++
			if !strings.Contains(a.Message, "no capacity in zone za") || !strings.Contains(a.Message, "exit status 3") {
				t.Errorf("failed activity message %q: want the command's output and exit status", a.Message)
			}
		}
	}
	if failed != n {
		t.Errorf("%d failed activities, want one per attempt (%d)", failed, n)
	}
	if len(s.running()) != 0 {
		t.Errorf("instances running although every launch failed: %v", s.running())
	}
	// The launcher works again: the next attempt (within backoff_max 4 s) succeeds and the
	// group fills up.
	if err := os.Remove(failFlag); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "2 instances in service", func() bool {
		g, _ := s.group()
		return g.exactlyInService(2) != nil
	})
	if g, _ := s.group(); g.Failures != 0 {
		t.Errorf("launch_failures = %d after a success, want 0", g.Failures)
	}
}

func readFileString(t testing.TB, path string) string {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// TestAutoscaleKill9MidScale: clbd is killed (SIGKILL) while launches run; after a restart
// every instance is accounted for: the launches that completed meanwhile are adopted when
// their members register, none is launched twice, and none is left running outside the group.
func TestAutoscaleKill9MidScale(t *testing.T) {
	// A slow launcher (1.5 s), so that the kill lands while launches run.
	s := newASGScenario(t, `sh -c 'sleep 1.5; exec "$0" "$@"' `, `  g:
    launch_configuration: lc
    min_size: 1
    max_size: 4
    zones: [za, zb]
    services: [web]
    health_check_type: ELB
    health_check_grace_period: 15s
`)
	waitFor(t, 30*time.Second, "1 instance in service", func() bool {
		g, _ := s.group()
		return g.exactlyInService(1) != nil
	})
	if code, out := s.admin("PUT", "/v1/groups/g/desired_capacity", map[string]any{"desired_capacity": 4}); code != http.StatusOK {
		t.Fatalf("set desired = %d %v", code, out)
	}
	state := filepath.Join(s.dir, "autoscale.json")
	waitFor(t, 10*time.Second, "launches recorded", func() bool {
		return strings.Count(readFileString(t, state), `"state": "Launching"`) == 3
	})
	s.c.stop(syscall.SIGKILL)
	// The launch commands outlive clbd, start their members, which retry registering.
	time.Sleep(2 * time.Second)
	s.c.start()
	waitFor(t, 40*time.Second, "4 instances in service after the restart", func() bool {
		g, _ := s.group()
		return g.exactlyInService(4) != nil
	})
	// Stable: nothing more is launched or terminated.
	time.Sleep(2 * time.Second)
	g, _ := s.group()
	ids := g.exactlyInService(4)
	if ids == nil {
		t.Fatalf("group = %+v, want 4 in service", g)
	}
	running := s.running()
	members := s.webMembers()
	if len(running) != 4 || len(members) != 4 {
		t.Errorf("running processes %v, web members %v: want exactly the 4 instances", running, members)
	}
	for _, id := range ids {
		if running[id] == 0 || !members[id] {
			t.Errorf("instance %s: running %v, member %v", id, running[id] != 0, members[id])
		}
	}
	logs, _ := filepath.Glob(filepath.Join(s.instDir, "*.log"))
	if len(logs) != 4 {
		t.Errorf("%d instances were ever launched, want 4 (none twice): %v", len(logs), logs)
	}
}
