package agent_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"clb/internal/testutil"
	"clb/templates"
)

// BenchmarkThroughput compares, in one run and under the same load, a hand-written
// haproxy.cfg with one static server per member (haproxy run directly, no clbd), clbd with
// the built-in template (members registered through the API take server slots by `set
// server`), and clbd with a template that renders a server per member, as clbd did before
// server slots (members registered through the API arrive as dynamic servers, `add server`);
// and, since haproxy's default `http-reuse safe` never reuses a backend connection for the
// first request of a client connection (so clients that close after each request get no reuse
// from any haproxy.cfg), the hand-written file and clbd again with `http-reuse always` (clbd:
// the service's `http_reuse: always`; `aggressive` reuses only connections that already
// carried two requests, which clients that all close never make). Each target proxies to 3 backends of its
// own; the load (8 workers, with keep-alive and with a new connection per request) runs
// against one target at a time, in 1 s rounds that take the targets in turn, after a warm-up
// of each. The ratios are medians of the per-round ratios (round k of clbd ÷ round k of the
// hand-written file), so a change of the machine's load weighs on both sides alike. Backend
// connections are counted at the backends (accepts, and accepted connections that carried a
// request: haproxy's TCP health checks connect and close without one) and read from haproxy's
// per-backend connect and reuse counters (`show stat`).
func BenchmarkThroughput(b *testing.B) {
	requireHaproxyBin(b)
	memberPort := freePort(b)
	const always = "    http-reuse always\n"
	targets := []*tputTarget{
		startStaticTarget(b, "static haproxy.cfg", "static", "", memberPort, 81),
		startClbdTarget(b, "clbd, server slots (built-in template)", "slots", "", "", memberPort, 91),
		startClbdTarget(b, "clbd, dynamic servers (template with a server per member)", "dynamic", dynamicTemplate(b), "", memberPort, 101),
		startStaticTarget(b, "static haproxy.cfg + http-reuse always", "static-always", always, memberPort, 111),
		startClbdTarget(b, "clbd, server slots, http_reuse: always", "slots-always", "", "    http_reuse: always\n", memberPort, 121),
	}
	// pairs are the (hand-written, clbd) targets compared.
	pairs := [][2]int{{0, 1}, {3, 4}}
	// The static files must stay the built-in template's: every line of them but the section
	// heads and their own sockets, addresses and servers is in clbd's haproxy.cfg.
	for _, p := range pairs {
		rendered := string(readFile(b, filepath.Join(targets[p[1]].dir, "haproxy.cfg")))
		for _, line := range strings.Split(string(readFile(b, filepath.Join(targets[p[0]].dir, "haproxy.cfg"))), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || slices.Contains([]string{"global", "defaults", "frontend", "backend", "stats", "bind", "default_backend", "server"}, f[0]) {
				continue
			}
			if !strings.Contains(rendered, "\n"+line+"\n") {
				b.Fatalf("%s is not the built-in template's any more: clbd's haproxy.cfg has no line %q", targets[p[0]].name, line)
			}
		}
	}
	for _, t := range targets[1:] {
		figure(b, "throughput: set-up", t.name+": reloads while registering its 3 members (runtime path)", strconv.Itoa(t.reloads), "0", t.reloads == 0)
	}
	for range b.N {
		for _, keepAlive := range []bool{true, false} {
			conn := map[bool]string{true: "keep-alive", false: "new connection per request"}[keepAlive]
			bench := fmt.Sprintf("throughput (%d workers, %s, %s per target)", tputWorkers, conn, tputLimit)
			for _, t := range targets {
				t.warmUp(b, keepAlive)
			}
			// Rounds in turn, each starting with the next target, so that a change of the
			// machine's load during the run weighs on every target alike.
			runs := make([]tputRun, len(targets))
			for k := range tputRounds {
				for j := range targets {
					i := (k + j) % len(targets)
					targets[i].round(b, keepAlive, &runs[i])
				}
			}
			for i, r := range runs {
				t := targets[i]
				figure(b, bench, t.name+": req/s", fmt.Sprintf("%.0f", r.rate()), "", false)
				value := fmt.Sprintf("%d (%d accepted); %s (haproxy: %d connects, %d reuses)", r.used, r.accepted, pct(r.reuse()), r.connects, r.reuses)
				name := t.name + ": backend connections opened (accepted, checks included); reuse = 1 − connections / requests"
				// The reuse target: slots with keep-alive clients under the default, and
				// with clients that close under http_reuse: always (under safe, no
				// haproxy.cfg reuses for them: see the hand-written file's figure).
				if i == 1 && keepAlive || i == 4 && !keepAlive {
					figure(b, bench, name, value, "≥ 99%", r.reuse() >= 0.99)
				} else {
					figure(b, bench, name, value, "", false)
				}
				b.ReportMetric(r.rate(), fmt.Sprintf("req/s-%s-%s", t.short, map[bool]string{true: "ka", false: "close"}[keepAlive]))
			}
			for _, p := range pairs {
				ratios := make([]float64, tputRounds)
				for k := range ratios {
					ratios[k] = runs[p[1]].rounds[k] / runs[p[0]].rounds[k]
				}
				slices.Sort(ratios)
				med := ratios[len(ratios)/2]
				value := fmt.Sprintf("median %s (rounds %s … %s; totals %s)", pct(med), pct(ratios[0]), pct(ratios[len(ratios)-1]), pct(runs[p[1]].rate()/runs[p[0]].rate()))
				figure(b, bench, targets[p[1]].name+" ÷ "+targets[p[0]].name+" (req/s, per round)", value, "≥ 95%", med >= 0.95)
			}
			var failed, names []string
			clean := true
			for i, r := range runs {
				failed = append(failed, fmt.Sprintf("%d of %d", r.s.failed()+r.s.non2xx(), r.s.Requests))
				names = append(names, targets[i].short)
				clean = clean && r.s.failed() == 0 && r.s.non2xx() == 0
			}
			figure(b, bench, "failed requests and non-2xx answers: "+strings.Join(names, "; "), strings.Join(failed, "; "), "0", clean)
		}
	}
}

const (
	tputWorkers = 8
	tputWarmUp  = time.Second
	tputRounds  = 7 // of tputRound per target, in turn
	tputRound   = time.Second
	tputLimit   = tputRounds * tputRound
	tputMax     = 1_000_000 // far above what a round reaches (~25k req/s at most here): time ends each round
)

// tputTarget is one haproxy under test, with its 3 backends.
type tputTarget struct {
	name, short string
	dir         string
	front       string              // host:port of its frontend
	backend     string              // its haproxy backend
	ask         func(string) string // a command on its admin socket
	counts      []*countingListener
	srcNet      int // third octet of the load's source addresses
	reloads     int // reloads of clbd while its members registered
}

// tputRun is what the rounds of one target served.
type tputRun struct {
	s                loadStats
	accepted, used   int64     // backend connections accepted, and those that carried a request
	connects, reuses int64     // haproxy's backend counters
	rounds           []float64 // req/s of each round, in order
}

func (r *tputRun) add(s loadStats) {
	if r.s.Failed == nil {
		r.s = loadStats{Non2xx: map[int]int64{}, Failed: map[string]int64{}, Bodies: map[string]int64{}}
	}
	r.s.Requests += s.Requests
	r.s.OK += s.OK
	r.s.Conns += s.Conns
	r.s.Elapsed += s.Elapsed
	for k, v := range s.Non2xx {
		r.s.Non2xx[k] += v
	}
	for k, v := range s.Failed {
		r.s.Failed[k] += v
	}
	for k, v := range s.Bodies {
		r.s.Bodies[k] += v
	}
}

func (r tputRun) rate() float64 { return float64(r.s.OK) / r.s.Elapsed.Seconds() }

// reuse is the share of requests that did not open a backend connection.
func (r tputRun) reuse() float64 {
	if r.s.OK == 0 {
		return 0
	}
	return 1 - float64(r.used)/float64(r.s.OK)
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

// warmUp runs the load on the target for tputWarmUp.
func (t *tputTarget) warmUp(b *testing.B, keepAlive bool) {
	b.Helper()
	if w := runLoad(t.opts(keepAlive, tputWarmUp)); w.failed()+w.non2xx() > 0 {
		b.Errorf("%s: warm-up: %s", t.name, w.causes())
	}
}

func (t *tputTarget) opts(keepAlive bool, d time.Duration) loadOpts {
	return loadOpts{addr: t.front, workers: tputWorkers, keepAlive: keepAlive, max: tputMax, limit: d, srcNet: t.srcNet}
}

// round runs the load on the target for tputRound and adds what it served, and what it cost
// the backends, to r.
func (t *tputTarget) round(b *testing.B, keepAlive bool, r *tputRun) {
	b.Helper()
	acc0, used0 := t.conns()
	conn0, reuse0 := t.stat(b)
	s := runLoad(t.opts(keepAlive, tputRound))
	acc1, used1 := t.conns()
	conn1, reuse1 := t.stat(b)
	if s.Requests >= tputMax {
		b.Errorf("%s: the load reached its request bound before its time bound: req/s is not measured", t.name)
	}
	for body := range s.Bodies {
		if !strings.HasPrefix(body, t.short+"-") {
			b.Errorf("%s: an answer from %q, not from one of its backends", t.name, body)
		}
	}
	if len(s.Bodies) != len(t.counts) {
		b.Errorf("%s: answers from %d backends (%v), want %d", t.name, len(s.Bodies), s.Bodies, len(t.counts))
	}
	r.add(s)
	r.rounds = append(r.rounds, float64(s.OK)/s.Elapsed.Seconds())
	r.accepted += acc1 - acc0
	r.used += used1 - used0
	r.connects += conn1 - conn0
	r.reuses += reuse1 - reuse0
}

// runLoad runs the load for o.limit. It stops the load itself, with a second bound as a
// backstop: when startLoad's own time bound ends a run, the dials under way fail with "i/o
// timeout" (their deadline is the bound's) before the context reports it is done, and count
// as failed requests; a stop cancels them, and they do not count.
func runLoad(o loadOpts) loadStats {
	d := o.limit
	o.limit += 10 * time.Second
	stop := startLoad(context.Background(), o)
	time.Sleep(d)
	return stop()
}

func (t *tputTarget) conns() (accepted, used int64) {
	for _, c := range t.counts {
		accepted += c.accepted.Load()
		used += c.used.Load()
	}
	return accepted, used
}

// stat reads the connect and reuse counters of the target's backend from `show stat`.
func (t *tputTarget) stat(b *testing.B) (connects, reuses int64) {
	b.Helper()
	lines := strings.Split(strings.TrimSpace(t.ask("show stat")), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "# ") {
		b.Fatalf("%s: show stat: %q", t.name, lines)
	}
	head := strings.Split(strings.TrimPrefix(lines[0], "# "), ",")
	col := func(name string) int {
		i := slices.Index(head, name)
		if i < 0 {
			b.Fatalf("%s: show stat has no %s column", t.name, name)
		}
		return i
	}
	ci, ri := col("connect"), col("reuse")
	for _, line := range lines[1:] {
		f := strings.Split(line, ",")
		if len(f) > max(ci, ri) && f[0] == t.backend && f[1] == "BACKEND" {
			connects, _ = strconv.ParseInt(f[ci], 10, 64)
			reuses, _ = strconv.ParseInt(f[ri], 10, 64)
			return connects, reuses
		}
	}
	b.Fatalf("%s: show stat has no row for backend %s", t.name, t.backend)
	return 0, 0
}

// tputBackends starts 3 counted backends on 127.0.0.first..first+2:port, named short-1..3.
func tputBackends(b *testing.B, short string, first, port int) (ips []string, counts []*countingListener) {
	for i := range 3 {
		ip := fmt.Sprintf("127.0.0.%d", first+i)
		counts = append(counts, countedBackend(b, fmt.Sprintf("%s-%d", short, i+1), fmt.Sprintf("%s:%d", ip, port)))
		ips = append(ips, ip)
	}
	return ips, counts
}

// startStaticTarget runs haproxy (master-worker, no clbd) on a hand-written haproxy.cfg: the
// built-in template's defaults, a frontend, and a backend with a static server line per
// member, plus an admin socket of its own.
func startStaticTarget(b *testing.B, name, short, backendExtra string, memberPort, first int) *tputTarget {
	t := &tputTarget{name: name, short: short, dir: shortDir(b), backend: "static", srcNet: 60 + first/10}
	ips, counts := tputBackends(b, t.short, first, memberPort)
	t.counts = counts
	t.front = fmt.Sprintf("127.0.0.1:%d", freePort(b))
	sock := filepath.Join(t.dir, "admin.sock")
	t.ask = func(cmd string) string { return adminCommand(b, sock, cmd) }
	// The built-in template's global and defaults sections and its backend settings for a
	// service with the default health check (checked against clbd's haproxy.cfg).
	cfg := fmt.Sprintf(`global
    stats socket %s mode 600 level admin
    hard-stop-after 60s

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 10s
    timeout check 5s
    option idle-close-on-response
    option redispatch
    retries 3

frontend static
    mode http
    bind %s
    option forwardfor
    default_backend static

backend static
    mode http
    balance roundrobin
%s    timeout check 5000ms
    default-server init-addr last,libc,none pool-purge-delay 500ms check inter 30000ms rise 3 fall 5
`, sock, t.front, backendExtra)
	for i, ip := range ips {
		cfg += fmt.Sprintf("    server m%d %s:%d weight 100\n", i+1, ip, memberPort)
	}
	path := filepath.Join(t.dir, "haproxy.cfg")
	writeFile(b, path, cfg, 0o644)
	startHaproxy(b, path)
	waitServedBy(b, t, 3)
	return t
}

// startClbdTarget starts clbd with template (empty: the built-in one) and one service (with
// the settings of extra), and registers its 3 members through the API.
func startClbdTarget(b *testing.B, name, short, template, extra string, memberPort, first int) *tputTarget {
	front := freePort(b)
	l := startLBWith(b, "services:\n"+service("web", front, memberPort, extra), template)
	t := &tputTarget{name: name, short: short, dir: l.dir, front: fmt.Sprintf("127.0.0.1:%d", front), backend: "web_" + itoa(front),
		ask: l.haproxy, srcNet: 60 + first/10}
	ips, counts := tputBackends(b, short, first, memberPort)
	t.counts = counts
	r0 := l.reloads()
	for i, ip := range ips {
		l.must("PUT", fmt.Sprintf("/v1/services/web/members/m%d", i+1), map[string]any{"address": ip}, http.StatusOK)
	}
	t.reloads = l.reloads() - r0
	waitServedBy(b, t, 3)
	return t
}

// dynamicTemplate is the built-in template with its slot loop replaced by a server line per
// member: what clbd rendered before server slots, so members registered at runtime are added
// by `add server`.
func dynamicTemplate(b *testing.B) string {
	const from = "{{- range $s := $l.Slots}}"
	i := strings.Index(templates.Default, from)
	j := strings.Index(templates.Default[max(i, 0):], "{{- end}}")
	if i < 0 || j < 0 {
		b.Fatal("the built-in template has no slot loop (range $s := $l.Slots ... end) any more")
	}
	return templates.Default[:i] + "{{- range $m := $l.Servers}}\n    server {{$m.Name}} {{$m.Addr}} weight {{$m.Weight}}\n" + templates.Default[i+j:]
}

// waitServedBy probes the target on new connections until it has answered from n different
// backends (bounded).
func waitServedBy(b *testing.B, t *tputTarget, n int) {
	b.Helper()
	seen := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; len(seen) < n; i++ {
		if time.Now().After(deadline) {
			b.Fatalf("%s: answers from %v within 20s, want %d backends", t.name, seen, n)
		}
		if code, body, err := probeOnce(t.front, net.IPv4(127, 0, byte(t.srcNet), byte(200+i%50))); err == nil && code == http.StatusOK {
			seen[body] = true
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// startHaproxy runs `haproxy -W -f path` in the foreground until the benchmark ends: then it
// is stopped (SIGTERM to the master, which stops its workers), bounded, and the workers it had
// are waited for.
func startHaproxy(b *testing.B, path string) {
	b.Helper()
	logs := &testutil.SyncBuffer{}
	cmd := exec.Command("haproxy", "-W", "-f", path)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		workers := children(cmd.Process.Pid)
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			b.Errorf("haproxy (static) did not exit within 10s of SIGTERM\n%s", logs.String())
		}
		for _, pid := range workers {
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
					break
				}
				if time.Now().After(deadline) {
					syscall.Kill(pid, syscall.SIGKILL)
					b.Errorf("haproxy worker %d outlived its master by 5s", pid)
					break
				}
			}
		}
	})
	// The master forks the worker; give up if it exits first.
	deadline := time.Now().Add(10 * time.Second)
	for len(children(cmd.Process.Pid)) == 0 {
		select {
		case <-exited:
			b.Fatalf("haproxy -W -f %s exited:\n%s", path, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("haproxy started no worker within 10s:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// adminCommand sends one command to a haproxy admin socket and returns the answer.
func adminCommand(b testing.TB, sock, cmd string) string {
	b.Helper()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		b.Fatal(err)
	}
	out, err := io.ReadAll(c)
	if err != nil {
		b.Fatal(err)
	}
	return string(out)
}

// countingListener counts the connections it accepts, and those of them on which a byte
// arrived (a request; a TCP health check connects and closes).
type countingListener struct {
	net.Listener
	accepted, used atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countingListener
	read atomic.Bool
}

func (c *countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.read.Swap(true) {
		c.l.used.Add(1)
	}
	return n, err
}

// countedBackend is backend (an HTTP server on addr that answers with its name) on a
// counting listener.
func countedBackend(b testing.TB, name, addr string) *countingListener {
	b.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	})}
	go srv.Serve(cl)
	b.Cleanup(func() { srv.Close() })
	return cl
}
