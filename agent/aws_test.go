package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"clb/agent/config"
	"clb/internal/auth"
	"clb/internal/testutil"
	"clb/register"
)

// The AWS ELB front driven by the real clients Debian packages (boto 2.49, boto3 1.26, the
// AWS CLI 2.9, libcloud 3.4.1) against an in-process clbd with a managed haproxy and real
// backends on loopback addresses, checking the traffic through haproxy after each step.

const (
	awsAdminID     = "ops"
	awsAdminSecret = "ops-secret-0123456789abcdef"
	awsRegID       = "webreg"
	awsRegSecret   = "webreg-secret-0123456789ab"
)

// elbEnv is a running clbd with the AWS front, two announced instances with backends and a
// config-file service.
type elbEnv struct {
	t        *testing.T
	a        *Agent
	api, aws string // host:port
	instPort int
	logs     *testutil.SyncBuffer
}

// instances: id → loopback address and zone; each runs a backend answering its id.
var elbInstances = []struct{ id, addr, zone string }{
	{"i-4f8cf126", "127.0.0.2", "us-east-1a"},
	{"i-0bb7ca62", "127.0.0.3", "us-east-1b"},
}

func startELB(t *testing.T) *elbEnv {
	t.Helper()
	requireHaproxy(t)
	for _, p := range []string{"/usr/bin/python3", "/usr/bin/aws"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s not installed (make test installs python3-boto, python3-boto3, awscli, python3-libcloud)", p)
		}
	}
	dir := testutil.ShortDir(t)
	pw := filepath.Join(dir, "pw")
	awsWriteFile(t, pw, testPassword+"\n", 0o600)
	keys := filepath.Join(dir, "keys.yaml")
	awsWriteFile(t, keys, fmt.Sprintf("keys:\n  - {id: %s, secret: %s, scope: admin}\n  - {id: %s, secret: %s, scope: register, services: [\"web*\"]}\n",
		awsAdminID, awsAdminSecret, awsRegID, awsRegSecret), 0o600)
	e := &elbEnv{t: t, instPort: testutil.FreePort(t), logs: &testutil.SyncBuffer{}}
	cfg := config.Defaults()
	yaml := fmt.Sprintf("services:\n  legacy:\n    listeners:\n      - port: %d\n        address: 127.0.0.1\n        member_port: 9\n", testutil.FreePort(t))
	if err := config.Decode(&cfg, []byte(yaml), "test"); err != nil {
		t.Fatal(err)
	}
	e.aws = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg.Listen, cfg.StateDir, cfg.Templates, cfg.AWSListen = "127.0.0.1:0", dir, filepath.Join(dir, "templates"), e.aws
	cfg.Managed, cfg.Output = true, filepath.Join(dir, config.ManagedCfgName)
	cfg.PasswordFile, cfg.KeysFile = pw, keys
	cfg.RequestTimeout = 15 * time.Second
	cfg.AuthFailBurst = 50
	// Certificates of HTTPS listeners: web-cert and other-cert (the same PEM).
	cfg.AWSCertDir = filepath.Join(dir, "certs")
	if err := os.Mkdir(cfg.AWSCertDir, 0o700); err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile("testdata/test-cert.pem")
	if err != nil {
		t.Fatal(err)
	}
	awsWriteFile(t, filepath.Join(cfg.AWSCertDir, "web-cert.pem"), string(pem), 0o600)
	awsWriteFile(t, filepath.Join(cfg.AWSCertDir, "other-cert.pem"), string(pem), 0o600)
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, addr := startAgent(t, &cfg, Options{Logger: log})
	e.a, e.api = a, addr.String()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("clbd log:\n%s", e.logs.String())
		}
	})
	for _, in := range elbInstances {
		awsBackend(t, in.id, net.JoinHostPort(in.addr, fmt.Sprint(e.instPort)))
		body, _ := json.Marshal(map[string]string{"address": in.addr, "zone": in.zone})
		if code, out := e.native("PUT", "/v1/instances/"+in.id, awsAdminID, awsAdminSecret, body); code != http.StatusOK {
			t.Fatalf("announce %s: %d %s", in.id, code, out)
		}
	}
	return e
}

// native calls the native API signed with a key.
func (e *elbEnv) native(method, path, keyID, secret string, body []byte) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, "http://"+e.api+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := auth.Sign(req, keyID, auth.DeriveKey([]byte(secret)), body, time.Now()); err != nil {
		e.t.Fatal(err)
	}
	resp, err := awsAPIClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// served sends n requests to a front port and counts the answers by body ("ERR" for
// failures, "503" and the like for haproxy's own answers).
func served(t *testing.T, port, n int) map[string]int {
	t.Helper()
	return testutil.Spread(awsProxied, fmt.Sprintf("http://127.0.0.1:%d/", port), n)
}

// wantOnly checks that n requests reached exactly the instances named (none: no instance).
func wantOnly(t *testing.T, step string, port, n int, ids ...string) {
	t.Helper()
	got := served(t, port, n)
	for _, in := range elbInstances {
		want := false
		for _, id := range ids {
			want = want || id == in.id
		}
		if want && got[in.id] == 0 || !want && got[in.id] > 0 {
			t.Fatalf("after %s: %d requests reached %v, want exactly %v", step, n, got, ids)
		}
	}
}

// pyDriver is one Python process of a client library, fed one statement block per step.
type pyDriver struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Scanner
	lines chan string
}

// pyPrelude runs each block read from stdin (one JSON string a line) and answers one JSON
// line: {"ok": true, "result": the value of _} or the error's class, AWS code and message.
const pyPrelude = `
import sys, json
g = {}
def code_of(e):
    c = getattr(e, "error_code", None)
    if c: return c
    r = getattr(e, "response", None)
    if isinstance(r, dict): return r.get("Error", {}).get("Code")
    return None
for line in sys.stdin:
    g["_"] = None
    try:
        exec(json.loads(line), g)
        out = {"ok": True, "result": g.get("_")}
    except Exception as e:
        out = {"ok": False, "error": type(e).__name__, "code": code_of(e), "msg": str(e)[:2000]}
    print(json.dumps(out, default=str), flush=True)
`

func startPython(t *testing.T) *pyDriver {
	t.Helper()
	d := &pyDriver{t: t, lines: make(chan string)}
	d.cmd = exec.Command("/usr/bin/python3", "-c", pyPrelude)
	d.cmd.Env = awsCleanEnv()
	var err error
	if d.in, err = d.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr testutil.SyncBuffer
	d.cmd.Stderr = &stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			d.lines <- sc.Text()
		}
		close(d.lines)
	}()
	t.Cleanup(func() {
		d.in.Close()
		done := make(chan struct{})
		go func() { d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
			<-done
		}
		if t.Failed() && stderr.String() != "" {
			t.Logf("python stderr:\n%s", stderr.String())
		}
	})
	return d
}

type pyResult struct {
	OK     bool   `json:"ok"`
	Result any    `json:"result"`
	Error  string `json:"error"`
	Code   string `json:"code"`
	Msg    string `json:"msg"`
}

// try runs a block and returns its outcome (bounded: 60 s).
func (d *pyDriver) try(code string) pyResult {
	d.t.Helper()
	b, _ := json.Marshal(code)
	if _, err := fmt.Fprintf(d.in, "%s\n", b); err != nil {
		d.t.Fatalf("python: %v", err)
	}
	select {
	case line, ok := <-d.lines:
		if !ok {
			d.t.Fatalf("python exited running:\n%s", code)
		}
		var r pyResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			d.t.Fatalf("python answered %q: %v", line, err)
		}
		return r
	case <-time.After(60 * time.Second):
		d.t.Fatalf("python did not answer within 60s:\n%s", code)
	}
	return pyResult{}
}

// run runs a block that must succeed and returns the value of _.
func (d *pyDriver) run(code string) any {
	d.t.Helper()
	r := d.try(code)
	if !r.OK {
		d.t.Fatalf("python failed: %s %s: %s\nrunning:\n%s", r.Error, r.Code, r.Msg, code)
	}
	return r.Result
}

// fails runs a block that must fail with an AWS error code (found in the code or the message).
func (d *pyDriver) fails(code, want string) {
	d.t.Helper()
	r := d.try(code)
	if r.OK {
		d.t.Fatalf("python succeeded, want error %s; result %v\nrunning:\n%s", want, r.Result, code)
	}
	if r.Code != want && !strings.Contains(r.Msg, want) {
		d.t.Fatalf("python failed with %s %s: %s; want %s\nrunning:\n%s", r.Error, r.Code, r.Msg, want, code)
	}
}

// awsProxied opens a new connection per request, so that every request sees the current
// haproxy worker; awsAPIClient waits for applies.
var (
	awsProxied   = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	awsAPIClient = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
)

func awsWriteFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// awsBackend is a real HTTP server on addr answering its name, until the test ends.
func awsBackend(t *testing.T, name, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func awsCleanEnv() []string {
	return []string{"PATH=/usr/bin:/bin", "HOME=" + os.TempDir(), "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"BOTO_CONFIG=/dev/null", "AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER="}
}

func strs(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func (e *elbEnv) boto2(t *testing.T, keyID, secret string) *pyDriver {
	d := startPython(t)
	host, port, _ := net.SplitHostPort(e.aws)
	d.run(fmt.Sprintf(`
import boto.ec2.elb, boto.exception
from boto.regioninfo import RegionInfo
from boto.ec2.elb import HealthCheck
conn = boto.ec2.elb.ELBConnection(aws_access_key_id=%q, aws_secret_access_key=%q, region=RegionInfo(name="local", endpoint=%q), port=%s, is_secure=False)
`, keyID, secret, host, port))
	return d
}

// TestELBBoto2Tutorial runs every step of boto's ELB tutorial (seed 000) with boto 2.
func TestELBBoto2Tutorial(t *testing.T) {
	e := startELB(t)
	d := e.boto2(t, awsAdminID, awsAdminSecret)
	front, tcpFront := testutil.FreePort(t), testutil.FreePort(t)

	if got := strs(d.run(`_ = [lb.name for lb in conn.get_all_load_balancers()]`)); len(got) != 1 || got[0] != "legacy" {
		t.Fatalf("get_all_load_balancers = %v, want the config file's service legacy", got)
	}
	d.fails(`conn.get_all_load_balancers(load_balancer_names=['load-balancer-prod'])`, "LoadBalancerNotFound")

	d.run(fmt.Sprintf(`
hc = HealthCheck(interval=20, healthy_threshold=3, unhealthy_threshold=5, target='HTTP:%d/health')
regions = ['us-east-1a', 'us-east-1b']
ports = [(%d, %d, 'http'), (%d, %d, 'tcp')]
lb = conn.create_load_balancer('my-lb', regions, ports)
`, e.instPort, front, e.instPort, tcpFront, e.instPort))
	if got := d.run(`_ = lb.configure_health_check(hc).target`); got != fmt.Sprintf("HTTP:%d/health", e.instPort) {
		t.Fatalf("configure_health_check target = %v", got)
	}
	if got := d.run(`_ = lb.dns_name`); got != "my-lb.127.0.0.1" {
		t.Fatalf("dns_name = %v, want my-lb.127.0.0.1 (no aws_dns_name: NAME.<host called>)", got)
	}
	desc := d.run(`b = conn.get_all_load_balancers(load_balancer_names=['my-lb'])[0]
_ = {"name": b.name, "zones": b.availability_zones, "listeners": [[l.load_balancer_port, l.instance_port, l.protocol] for l in b.listeners], "hc": [b.health_check.interval, b.health_check.healthy_threshold, b.health_check.unhealthy_threshold, b.health_check.target]}`)
	if got, want := fmt.Sprint(desc), fmt.Sprintf("map[hc:[20 3 5 HTTP:%d/health] listeners:[[%d %d HTTP] [%d %d TCP]] name:my-lb zones:[us-east-1a us-east-1b]]", e.instPort, front, e.instPort, tcpFront, e.instPort); got != want {
		t.Fatalf("described:\n got %s\nwant %s", got, want)
	}
	wantOnly(t, "create_load_balancer", front, 10)

	got := strs(d.run(`instance_ids = ['i-4f8cf126', 'i-0bb7ca62']
lb.register_instances(instance_ids)
_ = sorted(i.id for i in lb.instances)`))
	if fmt.Sprint(got) != "[i-0bb7ca62 i-4f8cf126]" {
		t.Fatalf("lb.instances after register = %v", got)
	}
	wantOnly(t, "register_instances", front, 20, "i-4f8cf126", "i-0bb7ca62")
	// haproxy's health is polled: wait (bounded, like botocore's instance_in_service waiter).
	// Identical Describe requests within a second have the same signature (boto 2 signs with
	// a one-second clock): clbd serves them, reads are not refused as replays.
	health := d.run(`import time
for _i in range(50):
    _ = sorted((s.instance_id, s.state, s.reason_code) for s in lb.get_instance_health())
    if all(s[1] == 'InService' for s in _): break
    time.sleep(0.2)`)
	if fmt.Sprint(health) != "[[i-0bb7ca62 InService N/A] [i-4f8cf126 InService N/A]]" {
		t.Fatalf("get_instance_health = %v", health)
	}

	got = strs(d.run(`lb.deregister_instances(['i-4f8cf126'])
_ = [i.id for i in lb.instances]`))
	if fmt.Sprint(got) != "[i-0bb7ca62]" {
		t.Fatalf("lb.instances after deregister = %v", got)
	}
	wantOnly(t, "deregister_instances", front, 20, "i-0bb7ca62")
	d.fails(`lb.get_instance_health(['i-4f8cf126'])`, "InvalidInstance")

	d.run(`lb.register_instances(['i-4f8cf126'])`)
	wantOnly(t, "register_instances again", front, 20, "i-4f8cf126", "i-0bb7ca62")
	if got := strs(d.run(`lb.disable_zones(['us-east-1a'])
_ = lb.availability_zones`)); fmt.Sprint(got) != "[us-east-1b]" {
		t.Fatalf("zones after disable_zones = %v", got)
	}
	wantOnly(t, "disable_zones us-east-1a", front, 20, "i-0bb7ca62")
	if got := d.run(`_ = [(s.state, s.reason_code) for s in lb.get_instance_health(['i-4f8cf126'])]`); fmt.Sprint(got) != "[[OutOfService ELB]]" {
		t.Fatalf("health in a disabled zone = %v", got)
	}
	d.fails(`lb.disable_zones(['us-east-1b'])`, "ValidationError")
	if got := strs(d.run(`lb.enable_zones(['us-east-1a', 'us-east-1c'])
_ = lb.availability_zones`)); fmt.Sprint(got) != "[us-east-1b us-east-1a us-east-1c]" {
		t.Fatalf("zones after enable_zones = %v", got)
	}
	wantOnly(t, "enable_zones us-east-1a", front, 20, "i-4f8cf126", "i-0bb7ca62")

	// Listeners, attributes (the tutorial's text; boto 2 methods).
	extra := testutil.FreePort(t)
	d.run(fmt.Sprintf(`conn.create_load_balancer_listeners('my-lb', [(%d, %d, 'HTTP')])`, extra, e.instPort))
	wantOnly(t, "create_load_balancer_listeners", extra, 10, "i-4f8cf126", "i-0bb7ca62")
	d.run(fmt.Sprintf(`conn.delete_load_balancer_listeners('my-lb', [%d])`, extra))
	if got := served(t, extra, 3); got["i-4f8cf126"]+got["i-0bb7ca62"] > 0 {
		t.Fatalf("deleted listener still serves: %v", got)
	}
	d.fails(`conn.modify_lb_attribute('my-lb', 'crossZoneLoadBalancing', True)`, "InvalidConfigurationRequest")
	if got := d.run(`_ = conn.get_all_lb_attributes('my-lb').cross_zone_load_balancing.enabled`); got != false {
		t.Fatalf("cross zone = %v", got)
	}
	// LB cookie stickiness: haproxy's cookie, with the period as its Max-Age.
	d.run(fmt.Sprintf(`conn.create_lb_cookie_stickiness_policy(60, 'my-lb', 'p1')
conn.set_lb_policies_of_listener('my-lb', %d, ['p1'])`, front))
	if svc := e.a.config().Services["my-lb"]; !svc.Sticky || svc.StickyMaxAge != time.Minute {
		t.Fatalf("a stickiness policy on a listener made the service sticky %v, max age %s; want true, 1m", svc.Sticky, svc.StickyMaxAge)
	}
	if got := stickyServed(t, front, 10); len(got) != 1 {
		t.Fatalf("with a stickiness policy, one client reached %v, want one instance", got)
	}
	if got := strs(d.run(`_ = conn.get_all_load_balancers(['my-lb'])[0].listeners[0].policy_names`)); fmt.Sprint(got) != "[p1]" {
		t.Fatalf("listener policies = %v", got)
	}
	d.fails(`conn.delete_lb_policy('my-lb', 'p1')`, "InvalidConfigurationRequest")
	d.fails(fmt.Sprintf(`conn.set_lb_policies_of_listener('my-lb', %d, ['nope'])`, front), "PolicyNotFound")
	// (The delete a second after the refused one: the same request in its second is a replay.)
	d.run(fmt.Sprintf(`conn.set_lb_policies_of_listener('my-lb', %d, [])
time.sleep(1.05); conn.delete_lb_policy('my-lb', 'p1')`, front))
	if e.a.config().Services["my-lb"].Sticky {
		t.Fatal("clearing the listener's policies left the service sticky")
	}
	d.run(fmt.Sprintf(`conn.create_app_cookie_stickiness_policy('JSESSIONID', 'my-lb', 'p2')
conn.set_lb_policies_of_listener('my-lb', %d, ['p2'])`, front))
	if svc := e.a.config().Services["my-lb"]; !svc.Sticky || svc.StickyCookie != "JSESSIONID" {
		t.Fatalf("the app cookie policy made the service sticky %v on cookie %q", svc.Sticky, svc.StickyCookie)
	}
	if got := strs(d.run(`_ = [p.cookie_name for p in conn.get_all_load_balancers(['my-lb'])[0].policies.app_cookie_stickiness_policies]`)); fmt.Sprint(got) != "[JSESSIONID]" {
		t.Fatalf("app cookie policies = %v", got)
	}

	// Refusals.
	d.fails(`conn.create_load_balancer('bad_name', ['us-east-1a'], [(81, 8080, 'http')])`, "ValidationError")
	d.fails(`conn.create_load_balancer('legacy', ['us-east-1a'], [(81, 8080, 'http')])`, "InvalidConfigurationRequest")
	d.fails(`conn.register_instances('my-lb', ['i-4f8cf126', 'i-unknown'])`, "InvalidInstance")
	if got := strs(d.run(`_ = sorted(i.id for i in conn.get_all_load_balancers(['my-lb'])[0].instances)`)); fmt.Sprint(got) != "[i-0bb7ca62 i-4f8cf126]" {
		t.Fatalf("a refused register changed the instances: %v", got)
	}
	d.fails(`conn.delete_load_balancer('legacy')`, "InvalidConfigurationRequest")

	d.run(`lb.delete()`)
	if got := served(t, front, 3); got["i-4f8cf126"]+got["i-0bb7ca62"] > 0 {
		t.Fatalf("deleted load balancer still serves: %v", got)
	}
	// Deleting again succeeds (idempotent, as on AWS). A second later: the same mutating
	// request within the signature's second is refused as a replay.
	d.run(`time.sleep(1.05); conn.delete_load_balancer('my-lb')`)
	d.fails(`conn.get_all_load_balancers(load_balancer_names=['my-lb'])`, "LoadBalancerNotFound")
}

func (e *elbEnv) boto3(t *testing.T, keyID, secret string) *pyDriver {
	d := startPython(t)
	d.run(fmt.Sprintf(`
import boto3, botocore.config, time
elb = boto3.client("elb", endpoint_url="http://%s", region_name="us-east-1", aws_access_key_id=%q, aws_secret_access_key=%q, config=botocore.config.Config(retries={"max_attempts": 1}))
`, e.aws, keyID, secret))
	return d
}

// TestELBBoto3 runs the tutorial's steps with boto3 (POST form bodies), and the refusals: a
// register-scoped key, a wrong secret, an unknown key, bad parameters.
func TestELBBoto3(t *testing.T) {
	e := startELB(t)
	d := e.boto3(t, awsAdminID, awsAdminSecret)
	front := testutil.FreePort(t)
	dns := d.run(fmt.Sprintf(`_ = elb.create_load_balancer(LoadBalancerName="Web-Shop", AvailabilityZones=["us-east-1a", "us-east-1b"],
    Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": %d, "InstanceProtocol": "HTTP", "InstancePort": %d}], Tags=[{"Key": "team", "Value": "shop"}])["DNSName"]`, front, e.instPort))
	if dns != "web-shop.127.0.0.1" {
		t.Fatalf("DNSName = %v", dns)
	}
	hc := d.run(fmt.Sprintf(`_ = elb.configure_health_check(LoadBalancerName="Web-Shop", HealthCheck={"Target": "HTTP:%d/health", "Interval": 10, "Timeout": 3, "UnhealthyThreshold": 2, "HealthyThreshold": 2})["HealthCheck"]`, e.instPort))
	if got := fmt.Sprint(hc); got != fmt.Sprintf("map[HealthyThreshold:2 Interval:10 Target:HTTP:%d/health Timeout:3 UnhealthyThreshold:2]", e.instPort) {
		t.Fatalf("HealthCheck = %s", got)
	}
	got := d.run(`_ = sorted(i["InstanceId"] for i in elb.register_instances_with_load_balancer(LoadBalancerName="Web-Shop", Instances=[{"InstanceId": "i-4f8cf126"}, {"InstanceId": "i-0bb7ca62"}])["Instances"])`)
	if fmt.Sprint(got) != "[i-0bb7ca62 i-4f8cf126]" {
		t.Fatalf("registered = %v", got)
	}
	wantOnly(t, "register", front, 20, "i-4f8cf126", "i-0bb7ca62")
	d.run(`elb.get_waiter("instance_in_service").wait(LoadBalancerName="Web-Shop", WaiterConfig={"Delay": 1, "MaxAttempts": 20})`)
	desc := d.run(`b = elb.describe_load_balancers(LoadBalancerNames=["web-shop"])["LoadBalancerDescriptions"][0]
_ = [b["LoadBalancerName"], b["AvailabilityZones"], sorted(i["InstanceId"] for i in b["Instances"]), b["Scheme"], b["CreatedTime"].year > 2000]`)
	if got := fmt.Sprint(desc); got != "[Web-Shop [us-east-1a us-east-1b] [i-0bb7ca62 i-4f8cf126] internet-facing true]" {
		t.Fatalf("described %s", got)
	}
	if got := d.run(`_ = elb.describe_tags(LoadBalancerNames=["Web-Shop"])["TagDescriptions"][0]["Tags"]`); fmt.Sprint(got) != "[map[Key:team Value:shop]]" {
		t.Fatalf("tags = %v", got)
	}
	attrs := d.run(`elb.modify_load_balancer_attributes(LoadBalancerName="Web-Shop", LoadBalancerAttributes={"ConnectionDraining": {"Enabled": True, "Timeout": 42}})
_ = elb.describe_load_balancer_attributes(LoadBalancerName="Web-Shop")["LoadBalancerAttributes"]["ConnectionDraining"]`)
	if fmt.Sprint(attrs) != "map[Enabled:true Timeout:42]" {
		t.Fatalf("ConnectionDraining = %v", attrs)
	}
	if got := e.a.config().Services["web-shop"].DrainingTimeout; got != 42*time.Second {
		t.Fatalf("draining_timeout = %s, want 42s", got)
	}

	got = d.run(`_ = [i["InstanceId"] for i in elb.deregister_instances_from_load_balancer(LoadBalancerName="Web-Shop", Instances=[{"InstanceId": "i-0bb7ca62"}])["Instances"]]`)
	if fmt.Sprint(got) != "[i-4f8cf126]" {
		t.Fatalf("after deregister = %v", got)
	}
	wantOnly(t, "deregister", front, 20, "i-4f8cf126")
	d.run(`elb.get_waiter("instance_deregistered").wait(LoadBalancerName="Web-Shop", Instances=[{"InstanceId": "i-0bb7ca62"}], WaiterConfig={"Delay": 1, "MaxAttempts": 5})`)

	// Refusals, each with AWS's code.
	d.fails(`elb.describe_load_balancers(LoadBalancerNames=["nope"])`, "LoadBalancerNotFound")
	d.fails(`elb.register_instances_with_load_balancer(LoadBalancerName="Web-Shop", Instances=[{"InstanceId": "i-00000000"}])`, "InvalidInstance")
	// (A second after the first: the same request within its signature's second is a replay.)
	d.fails(`time.sleep(1.05); elb.deregister_instances_from_load_balancer(LoadBalancerName="Web-Shop", Instances=[{"InstanceId": "i-0bb7ca62"}])`, "InvalidInstance")
	d.fails(fmt.Sprintf(`elb.configure_health_check(LoadBalancerName="Web-Shop", HealthCheck={"Target": "HTTP:%d/health", "Interval": 5, "Timeout": 5, "UnhealthyThreshold": 2, "HealthyThreshold": 2})`, e.instPort), "ValidationError")
	d.fails(`elb.create_load_balancer(LoadBalancerName="x", AvailabilityZones=["us-east-1a"], Listeners=[{"Protocol": "UDP", "LoadBalancerPort": 1, "InstancePort": 1}])`, "UnsupportedProtocol")
	d.fails(fmt.Sprintf(`elb.create_load_balancer(LoadBalancerName="other", AvailabilityZones=["us-east-1a"], Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": %d, "InstancePort": 8080}])`, front), "InvalidConfigurationRequest")
	d.fails(`elb.set_load_balancer_policies_of_listener(LoadBalancerName="Web-Shop", LoadBalancerPort=1, PolicyNames=[])`, "ListenerNotFound")
	d.fails(`elb.create_load_balancer_policy(LoadBalancerName="Web-Shop", PolicyName="pp", PolicyTypeName="ProxyProtocolPolicyType", PolicyAttributes=[])`, "InvalidConfigurationRequest")

	reg := e.boto3(t, awsRegID, awsRegSecret)
	if got := reg.run(`_ = [b["LoadBalancerName"] for b in elb.describe_load_balancers()["LoadBalancerDescriptions"]]`); fmt.Sprint(got) != "[Web-Shop]" {
		t.Fatalf("register key sees %v, want only its web* load balancers", got)
	}
	reg.run(`elb.register_instances_with_load_balancer(LoadBalancerName="Web-Shop", Instances=[{"InstanceId": "i-0bb7ca62"}])`)
	wantOnly(t, "register with a register key", front, 20, "i-4f8cf126", "i-0bb7ca62")
	reg.fails(`elb.describe_load_balancers(LoadBalancerNames=["legacy"])`, "AccessDenied")
	reg.fails(`elb.delete_load_balancer(LoadBalancerName="Web-Shop")`, "AccessDenied")
	reg.fails(`elb.create_load_balancer(LoadBalancerName="web-two", AvailabilityZones=["us-east-1a"], Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": 1, "InstancePort": 1}])`, "AccessDenied")

	e.boto3(t, awsAdminID, "not the secret at all").fails(`elb.describe_load_balancers()`, "SignatureDoesNotMatch")
	e.boto3(t, "nobody", awsAdminSecret).fails(`elb.describe_load_balancers()`, "InvalidClientTokenId")
	if e.a.AuthFailures() < 2 {
		t.Fatalf("AuthFailures = %d, want the two refused signatures counted", e.a.AuthFailures())
	}

	d.run(`elb.delete_load_balancer(LoadBalancerName="Web-Shop")`)
	if got := served(t, front, 3); got["i-4f8cf126"]+got["i-0bb7ca62"] > 0 {
		t.Fatalf("deleted load balancer still serves: %v", got)
	}
}

// awsCLI runs /usr/bin/aws elb with the admin key and returns its JSON answer.
func (e *elbEnv) awsCLI(t *testing.T, args ...string) (map[string]any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/aws", append([]string{"elb"}, append(args, "--endpoint-url", "http://"+e.aws, "--region", "us-east-1", "--output", "json")...)...)
	cmd.Env = append(awsCleanEnv(), "AWS_ACCESS_KEY_ID="+awsAdminID, "AWS_SECRET_ACCESS_KEY="+awsAdminSecret, "AWS_MAX_ATTEMPTS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("aws elb %s: %v: %s", strings.Join(args, " "), err, out)
	}
	var m map[string]any
	if len(bytes.TrimSpace(out)) > 0 {
		if err := json.Unmarshal(out, &m); err != nil {
			return nil, fmt.Errorf("aws elb %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return m, nil
}

func (e *elbEnv) mustCLI(t *testing.T, args ...string) map[string]any {
	t.Helper()
	m, err := e.awsCLI(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestELBAWSCLI runs the tutorial's steps with the AWS CLI (aws elb ... --endpoint-url).
func TestELBAWSCLI(t *testing.T) {
	e := startELB(t)
	front := testutil.FreePort(t)
	m := e.mustCLI(t, "create-load-balancer", "--load-balancer-name", "cli-lb", "--availability-zones", "us-east-1a", "us-east-1b",
		"--listeners", fmt.Sprintf("Protocol=HTTP,LoadBalancerPort=%d,InstanceProtocol=HTTP,InstancePort=%d", front, e.instPort))
	if m["DNSName"] != "cli-lb.127.0.0.1" {
		t.Fatalf("DNSName = %v", m)
	}
	e.mustCLI(t, "configure-health-check", "--load-balancer-name", "cli-lb", "--health-check",
		fmt.Sprintf("Target=HTTP:%d/health,Interval=20,Timeout=5,UnhealthyThreshold=5,HealthyThreshold=3", e.instPort))
	m = e.mustCLI(t, "register-instances-with-load-balancer", "--load-balancer-name", "cli-lb", "--instances", "i-4f8cf126", "i-0bb7ca62")
	if len(m["Instances"].([]any)) != 2 {
		t.Fatalf("registered %v", m)
	}
	wantOnly(t, "register-instances-with-load-balancer", front, 20, "i-4f8cf126", "i-0bb7ca62")
	m = e.mustCLI(t, "disable-availability-zones-for-load-balancer", "--load-balancer-name", "cli-lb", "--availability-zones", "us-east-1b")
	if fmt.Sprint(m["AvailabilityZones"]) != "[us-east-1a]" {
		t.Fatalf("zones %v", m)
	}
	wantOnly(t, "disable-availability-zones-for-load-balancer us-east-1b", front, 20, "i-4f8cf126")
	e.mustCLI(t, "enable-availability-zones-for-load-balancer", "--load-balancer-name", "cli-lb", "--availability-zones", "us-east-1b")
	m = e.mustCLI(t, "deregister-instances-from-load-balancer", "--load-balancer-name", "cli-lb", "--instances", "i-4f8cf126")
	if fmt.Sprint(m["Instances"]) != "[map[InstanceId:i-0bb7ca62]]" {
		t.Fatalf("after deregister %v", m)
	}
	wantOnly(t, "deregister-instances-from-load-balancer", front, 20, "i-0bb7ca62")
	m = e.mustCLI(t, "describe-instance-health", "--load-balancer-name", "cli-lb")
	if states := m["InstanceStates"].([]any); len(states) != 1 || states[0].(map[string]any)["InstanceId"] != "i-0bb7ca62" {
		t.Fatalf("instance health %v", m)
	}
	if _, err := e.awsCLI(t, "describe-load-balancers", "--load-balancer-names", "missing"); err == nil || !strings.Contains(err.Error(), "LoadBalancerNotFound") {
		t.Fatalf("describe missing: %v, want LoadBalancerNotFound", err)
	}
	e.mustCLI(t, "delete-load-balancer", "--load-balancer-name", "cli-lb")
	if got := served(t, front, 3); got["i-4f8cf126"]+got["i-0bb7ca62"] > 0 {
		t.Fatalf("deleted load balancer still serves: %v", got)
	}
}

// TestELBLibcloud runs the libcloud tutorial's calls (seed 001) that libcloud itself does not
// break: list, create, attach, get, detach, destroy; the policy calls, not served yet, fail
// with a clear error instead of a silent success.
func TestELBLibcloud(t *testing.T) {
	e := startELB(t)
	// libcloud's create_balancer uses one port for the listener and the instances: the
	// instance is an address-like id on another loopback port.
	port, memberPort := testutil.FreePort(t), testutil.FreePort(t)
	awsBackend(t, "lc-member", fmt.Sprintf("127.0.0.1:%d", memberPort))
	d := startPython(t)
	host, p, _ := net.SplitHostPort(e.aws)
	d.run(fmt.Sprintf(`
from libcloud.loadbalancer.providers import get_driver
from libcloud.loadbalancer.types import Provider
from libcloud.loadbalancer.base import Algorithm
drv = get_driver(Provider.ELB)(%q, %q, region="us-east-1")
drv.connection.host, drv.connection.port, drv.connection.secure = %q, %s, False
drv.connection.connect()
class Node:
    def __init__(self, id): self.id = id
`, awsAdminID, awsAdminSecret, host, p))
	if got := d.run(`_ = [b.name for b in drv.list_balancers()]`); fmt.Sprint(got) != "[legacy]" {
		t.Fatalf("list_balancers = %v", got)
	}
	d.run(fmt.Sprintf(`lb = drv.create_balancer(name="lc-lb", port=%d, protocol="http", algorithm=Algorithm.ROUND_ROBIN, members=[], ex_members_availability_zones=["a"])`, port))
	d.run(fmt.Sprintf(`drv.balancer_attach_compute_node(lb, Node("127.0.0.1:%d"))`, memberPort))
	if got := served(t, port, 10); got["lc-member"] != 10 {
		t.Fatalf("after attach: %v, want every request at the member", got)
	}
	got := d.run(`b = drv.get_balancer("lc-lb")
_ = [b.name, b.ip, [m.id for m in b._members]]`)
	if fmt.Sprint(got) != fmt.Sprintf("[lc-lb lc-lb.127.0.0.1 [127.0.0.1:%d]]", memberPort) {
		t.Fatalf("get_balancer = %v", got)
	}
	if got := d.run(`_ = drv.ex_list_balancer_policy_types()`); fmt.Sprint(got) != "[AppCookieStickinessPolicyType LBCookieStickinessPolicyType ProxyProtocolPolicyType]" {
		t.Fatalf("policy types = %v", got)
	}
	d.fails(`drv.ex_set_balancer_policies_backend_server("lc-lb", 80, ["pp"])`, "PolicyNotFound")
	d.run(fmt.Sprintf(`drv.balancer_detach_member(lb, Node("127.0.0.1:%d"))`, memberPort))
	if got := served(t, port, 5); got["lc-member"] > 0 {
		t.Fatalf("after detach: %v, want no request at the member", got)
	}
	// libcloud's policy calls: a ProxyProtocol policy on the instance port. (libcloud
	// 3.4.1's ex_create_balancer_policy calls dict.iteritems, Python 2 only: boto3 makes it.)
	d.fails(`drv.ex_create_balancer_policy("lc-lb", "pp", "ProxyProtocolPolicyType", {"ProxyProtocol": "true"})`, "iteritems")
	e.boto3(t, awsAdminID, awsAdminSecret).run(`elb.create_load_balancer_policy(LoadBalancerName="lc-lb", PolicyName="pp", PolicyTypeName="ProxyProtocolPolicyType", PolicyAttributes=[{"AttributeName": "ProxyProtocol", "AttributeValue": "true"}])`)
	if got := d.run(fmt.Sprintf(`_ = [drv.ex_set_balancer_policies_backend_server("lc-lb", %d, ["pp"]), drv.ex_list_balancer_policies(lb)]`, port)); fmt.Sprint(got) != "[true [pp]]" {
		t.Fatalf("ProxyProtocol policy through libcloud: %v", got)
	}
	if l := e.a.config().Services["lc-lb"].Listeners[0]; !l.ProxyProtocol {
		t.Fatalf("listener %+v: want proxy_protocol from the back-end policy", l)
	}
	d.run(`drv.destroy_balancer(lb)`)
	d.fails(`drv.get_balancer("lc-lb")`, "LoadBalancerNotFound")
}

// TestELBInstanceRegistry: a member announces itself with clb_register --instance-id (a
// register-scoped key, its own address), and ELB calls then name it by id: deregistered, it
// serves no more; registered again by id, it serves from the announced address. A register
// key may not announce another machine's address.
func TestELBInstanceRegistry(t *testing.T) {
	e := startELB(t)
	front := testutil.FreePort(t)
	awsBackend(t, "i-self", fmt.Sprintf("127.0.0.1:%d", e.instPort))
	d := e.boto3(t, awsAdminID, awsAdminSecret)
	d.run(fmt.Sprintf(`elb.create_load_balancer(LoadBalancerName="web-reg", AvailabilityZones=["us-east-1a"],
    Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": %d, "InstancePort": %d}])`, front, e.instPort))

	pwFile := filepath.Join(t.TempDir(), "pw")
	awsWriteFile(t, pwFile, awsRegSecret+"\n", 0o600)
	var out, errb bytes.Buffer
	if code := register.Main([]string{"clb_register", "--server", e.api, "--key-id", awsRegID, "--password-file", pwFile,
		"--client-config", "/dev/null", "--instance-id", "i-self", "--zone", "us-east-1a", "--service", "web-reg"}, &out, &errb); code != 0 {
		t.Fatalf("clb_register exit %d: %s%s", code, out.String(), errb.String())
	}
	wantServedBy(t, "clb_register --instance-id", front, 10, "i-self")
	if got := d.run(`_ = [i["InstanceId"] for i in elb.describe_load_balancers(LoadBalancerNames=["web-reg"])["LoadBalancerDescriptions"][0]["Instances"]]`); fmt.Sprint(got) != "[i-self]" {
		t.Fatalf("instances = %v, want the member named by its instance id", got)
	}
	d.run(`elb.deregister_instances_from_load_balancer(LoadBalancerName="web-reg", Instances=[{"InstanceId": "i-self"}])`)
	wantServedBy(t, "deregister i-self", front, 5)
	d.run(`elb.register_instances_with_load_balancer(LoadBalancerName="web-reg", Instances=[{"InstanceId": "i-self"}])`)
	wantServedBy(t, "register i-self by id", front, 10, "i-self")

	body := []byte(`{"address": "127.0.0.9"}`)
	if code, resp := e.native("PUT", "/v1/instances/i-other", awsRegID, awsRegSecret, body); code != http.StatusForbidden {
		t.Fatalf("a register key announcing another address: %d %s, want 403", code, resp)
	}
	if code, resp := e.native("PUT", "/v1/instances/i-other", awsAdminID, awsAdminSecret, body); code != http.StatusOK {
		t.Fatalf("an admin key announcing an address: %d %s, want 200", code, resp)
	}
}

// wantServedBy checks that n requests to a front port reached exactly the backends named
// (none: no backend answered).
func wantServedBy(t *testing.T, step string, port, n int, names ...string) {
	t.Helper()
	got := served(t, port, n)
	ok := true
	for body, c := range got {
		if c > 0 && !strings.HasPrefix(body, "HTTP ") && body != "ERR" && !slicesContains(names, body) {
			ok = false
		}
	}
	for _, name := range names {
		ok = ok && got[name] > 0
	}
	if !ok {
		t.Fatalf("after %s: %d requests reached %v, want exactly %v", step, n, got, names)
	}
}

func slicesContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestELBHTTPS: an HTTPS listener whose SSLCertificateId (an IAM ARN) names a PEM file of
// aws_cert_dir terminates TLS in haproxy; SetLoadBalancerListenerSSLCertificate swaps it.
func TestELBHTTPS(t *testing.T) {
	e := startELB(t)
	front := testutil.FreePort(t)
	d := e.boto3(t, awsAdminID, awsAdminSecret)
	arn := "arn:aws:iam::123456789012:server-certificate/web-cert"
	d.run(fmt.Sprintf(`elb.create_load_balancer(LoadBalancerName="web-tls", AvailabilityZones=["us-east-1a"],
    Listeners=[{"Protocol": "HTTPS", "LoadBalancerPort": %d, "InstanceProtocol": "HTTP", "InstancePort": %d, "SSLCertificateId": %q}])
elb.register_instances_with_load_balancer(LoadBalancerName="web-tls", Instances=[{"InstanceId": "i-4f8cf126"}])`, front, e.instPort, arn))
	pem, err := os.ReadFile("testdata/test-cert.pem")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/", front))
	if err != nil {
		t.Fatalf("https through haproxy: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "i-4f8cf126" || resp.TLS == nil {
		t.Fatalf("https answer %d %q, want 200 i-4f8cf126 over TLS", resp.StatusCode, b)
	}
	cert := `_ = elb.describe_load_balancers(LoadBalancerNames=["web-tls"])["LoadBalancerDescriptions"][0]["ListenerDescriptions"][0]["Listener"]["SSLCertificateId"]`
	if got := d.run(cert); got != arn {
		t.Fatalf("SSLCertificateId = %v, want %s", got, arn)
	}
	d.run(fmt.Sprintf(`elb.set_load_balancer_listener_ssl_certificate(LoadBalancerName="web-tls", LoadBalancerPort=%d, SSLCertificateId="other-cert")`, front))
	if got := d.run(cert); got != "other-cert" {
		t.Fatalf("SSLCertificateId after set = %v, want other-cert", got)
	}
	if !strings.Contains(string(awsReadFile(t, e.a.config().Output)), "other-cert.pem") {
		t.Fatalf("haproxy.cfg does not use other-cert.pem")
	}
	d.fails(fmt.Sprintf(`elb.set_load_balancer_listener_ssl_certificate(LoadBalancerName="web-tls", LoadBalancerPort=%d, SSLCertificateId="nope")`, front), "CertificateNotFound")
	d.fails(`elb.set_load_balancer_listener_ssl_certificate(LoadBalancerName="web-tls", LoadBalancerPort=1, SSLCertificateId="web-cert")`, "ListenerNotFound")
	d.fails(`elb.create_load_balancer(LoadBalancerName="bad-tls", AvailabilityZones=["us-east-1a"], Listeners=[{"Protocol": "HTTPS", "LoadBalancerPort": 1, "InstancePort": 1, "SSLCertificateId": "../etc/passwd"}])`, "CertificateNotFound")
	d.fails(`elb.create_load_balancer(LoadBalancerName="bad-ssl", AvailabilityZones=["us-east-1a"], Listeners=[{"Protocol": "SSL", "LoadBalancerPort": 1, "InstancePort": 1, "SSLCertificateId": "nope"}])`, "CertificateNotFound")
}

func awsReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stickyServed sends n requests as one client keeping cookies and counts the instances that
// answered.
func stickyServed(t *testing.T, port, n int) map[string]int {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 3 * time.Second, Jar: jar, Transport: &http.Transport{DisableKeepAlives: true}}
	return testutil.Spread(c, fmt.Sprintf("http://127.0.0.1:%d/", port), n)
}
