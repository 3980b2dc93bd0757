package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"clb/internal/atomicfile"
	"clb/internal/auth"
	"clb/internal/model"
	"clb/internal/store"
	"clb/templates"
)

// The benchmarks run the real clbd (managed mode) with haproxy and real HTTP backends on
// 127.0.0.0/8, and print their figures as "FIGURE: benchmark | figure | value | target | met"
// lines, which `make bench` collects into a table (docs/benchmarks.md). They measure; they
// do not assert timings. Each is bounded in time and count; -benchtime 1x runs each once.

var (
	samples  = flag.Int("samples", 100, "samples per latency benchmark")
	benchLog = flag.String("clbd-logs", "", "directory to write the clbd (and haproxy) logs of each benchmark to")
)

const benchPassword = "correct horse battery staple"

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// figure prints one row of the `make bench` table. target is "" when there is none; met is
// then "-".
func figure(b testing.TB, bench, name, value, target string, met bool) {
	b.Helper()
	verdict := "-"
	switch {
	case target == "":
		target = "-"
	case met:
		verdict = "yes"
	default:
		verdict = "**no**"
	}
	fmt.Fprintf(os.Stdout, "FIGURE: %s | %s | %s | %s | %s\n", bench, name, value, target, verdict)
}

func ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000)
	default:
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
}

// lb is a managed clbd (and its haproxy) on a config file the benchmark writes, with a signed
// API client that keeps its connections alive, so a measured call starts with its first byte
// on an open connection.
type lb struct {
	b      testing.TB
	dir    string
	cfg    string
	c      *clbd
	key    []byte
	client *http.Client
}

func startLB(b testing.TB, config string) *lb { return startLBWith(b, config, "") }

// startLBWith starts clbd with a user template (empty: the built-in one).
func startLBWith(b testing.TB, config, template string) *lb {
	b.Helper()
	requireHaproxyBin(b)
	l := &lb{b: b, dir: shortDir(b), key: auth.DeriveKey([]byte(benchPassword))}
	if template != "" {
		os.MkdirAll(filepath.Join(l.dir, "templates"), 0o755)
		writeFile(b, filepath.Join(l.dir, "templates", templates.Name), template, 0o644)
	}
	l.cfg = filepath.Join(l.dir, "clbd.yaml")
	writeFile(b, l.cfg, config, 0o644)
	pw := filepath.Join(l.dir, "password")
	writeFile(b, pw, benchPassword+"\n", 0o600)
	l.c = startClbd(b, l.dir, "--log-level", "info", "--managed", "--config", l.cfg, "--state-dir", l.dir,
		"--templates", filepath.Join(l.dir, "templates"), "--password-file", pw)
	l.client = &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	b.Cleanup(l.client.CloseIdleConnections)
	saveLogs(b, l.c)
	return l
}

// saveLogs writes the logs of c to the -clbd-logs directory when the benchmark ends.
func saveLogs(b testing.TB, c *clbd) {
	if *benchLog == "" {
		return
	}
	b.Cleanup(func() {
		name := strings.NewReplacer("/", "_", " ", "_").Replace(b.Name()) + ".log"
		if err := os.WriteFile(filepath.Join(*benchLog, name), []byte(c.logs.String()), 0o644); err != nil {
			b.Log(err)
		}
	})
}

// request builds a signed API request; the signature is not part of what is measured.
func (l *lb) request(method, path string, body any) *http.Request {
	l.b.Helper()
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			l.b.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, "http://"+l.c.api+path, bytes.NewReader(data))
	if err != nil {
		l.b.Fatal(err)
	}
	if err := auth.Sign(req, "default", l.key, data, time.Now()); err != nil {
		l.b.Fatal(err)
	}
	return req
}

// do sends a request and returns its status and body; a transport error is a 0 status.
func (l *lb) do(req *http.Request) (int, string) {
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// must sends a signed request that must answer want.
func (l *lb) must(method, path string, body any, want int) {
	l.b.Helper()
	if code, out := l.do(l.request(method, path, body)); code != want {
		l.b.Fatalf("%s %s = %d %s, want %d", method, path, code, out, want)
	}
}

func (l *lb) status() map[string]any {
	l.b.Helper()
	code, out := l.do(l.request("GET", "/v1/status", nil))
	var st map[string]any
	if code != http.StatusOK || json.Unmarshal([]byte(out), &st) != nil {
		l.b.Fatalf("GET /v1/status = %d %s", code, out)
	}
	return st
}

func (l *lb) reloads() int {
	l.b.Helper()
	return int(l.status()["reloads"].(float64))
}

// storeRevision is the store's generation from /v1/status: for the local store, one per write
// of state.json.
func (l *lb) storeRevision() int {
	l.b.Helper()
	st, _ := l.status()["store"].(map[string]any)
	return int(st["revision"].(float64))
}

// applies sums clb_applies_total (from /metrics) by path.
func (l *lb) applies() map[string]float64 {
	l.b.Helper()
	code, out := l.do(l.request("GET", "/metrics", nil))
	if code != http.StatusOK {
		l.b.Fatalf("GET /metrics = %d", code)
	}
	got := map[string]float64{}
	for _, line := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(line, "clb_applies_total{")
		if !ok {
			continue
		}
		labels, value, _ := strings.Cut(rest, "} ")
		path := ""
		for _, kv := range strings.Split(labels, ",") {
			if v, ok := strings.CutPrefix(kv, "path="); ok {
				path = strings.Trim(v, `"`)
			}
		}
		v, _ := strconv.ParseFloat(strings.TrimSpace(value), 64)
		got[path] += v
	}
	return got
}

// haproxy asks haproxy's admin socket (runtime API) and returns the answer.
func (l *lb) haproxy(cmd string) string {
	l.b.Helper()
	c, err := net.DialTimeout("unix", filepath.Join(l.dir, "haproxy-admin.sock"), 5*time.Second)
	if err != nil {
		l.b.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		l.b.Fatal(err)
	}
	out, err := io.ReadAll(c)
	if err != nil {
		l.b.Fatal(err)
	}
	return string(out)
}

// servers counts the servers of a backend in haproxy (not in the file).
// servers counts the servers of backend in haproxy that are not in maintenance: the members
// (free server slots are).
func (l *lb) servers(backend string) int {
	n := 0
	for _, line := range strings.Split(l.haproxy("show servers state "+backend), "\n") {
		if f := strings.Fields(line); len(f) > 6 && f[1] == backend {
			if admin, err := strconv.Atoi(f[6]); err == nil && admin&1 == 0 {
				n++
			}
		}
	}
	return n
}

// service is one service of a benchmark config: an http listener on 127.0.0.1:port.
func service(name string, port, memberPort int, extra string) string {
	return fmt.Sprintf("  %s:\n    listeners:\n      - port: %d\n        address: 127.0.0.1\n        member_port: %d\n%s", name, port, memberPort, extra)
}

// probeOnce asks addr for / on a new connection from src and returns the status and body.
func probeOnce(addr string, src net.IP) (int, string, error) {
	d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: src}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n"); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// probeUntil asks addr on new connections, back to back, until a 200 answer carries want,
// and returns when that answer arrived. Bounded by limit and by stop. Sources rotate over
// 127.0.srcNet.1-250 so that thousands of closed connections leave enough source ports.
func probeUntil(addr, want string, srcNet int, limit time.Duration, stop <-chan struct{}) (time.Time, int, error) {
	deadline := time.Now().Add(limit)
	for n := 0; ; n++ {
		select {
		case <-stop:
			return time.Time{}, n, errors.New("stopped")
		default:
		}
		if time.Now().After(deadline) {
			return time.Time{}, n, fmt.Errorf("no 200 from %s within %s (%d probes)", want, limit, n)
		}
		code, body, err := probeOnce(addr, net.IPv4(127, 0, byte(srcNet), byte(1+n%250)))
		if err == nil && code == http.StatusOK && body == want {
			return time.Now(), n + 1, nil
		}
	}
}

// BenchmarkDiskSync measures what one durable write costs on the filesystem the benchmarks'
// state dirs are on: clbd writes state.json this way before it answers a registration, and
// haproxy.cfg and its last-known-good copy on every apply. Tail latencies of the other
// benchmarks follow it on a shared disk.
func BenchmarkDiskSync(b *testing.B) {
	dir := shortDir(b)
	data := bytes.Repeat([]byte("server m0000 127.0.0.1:8000 weight 100\n"), 1000) // 40 KB
	var lat []time.Duration
	for range b.N {
		for range 200 {
			t0 := time.Now()
			if err := atomicfile.Write(filepath.Join(dir, "f"), data, 0o644); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
	}
	slices.Sort(lat)
	figure(b, "machine: durable file write (40 KB: write, fsync, rename, directory fsync)", fmt.Sprintf("p50 / p99 (%d samples)", len(lat)),
		ms(percentile(lat, 0.5))+" / "+ms(percentile(lat, 0.99)), "", false)
}

// BenchmarkStorePut measures the durable part of one registration: internal/store rewrites
// and syncs the whole state.json under one lock, so concurrent registrations queue here.
func BenchmarkStorePut(b *testing.B) {
	dir := shortDir(b)
	st := stateFile{Version: 1, Generation: 1, Services: map[string]map[string][]model.Member{}}
	var ms1 []model.Member
	for i := range 1000 {
		ms1 = append(ms1, model.Member{Name: fmt.Sprintf("m%04d", i), Address: fmt.Sprintf("127.0.%d.%d", 100+i/250, 1+i%250), Port: 9, Weight: model.DefaultWeight})
	}
	st.Services["burst"] = map[string][]model.Member{"members": ms1}
	data, err := json.Marshal(st)
	if err != nil {
		b.Fatal(err)
	}
	writeFile(b, filepath.Join(dir, store.FileName), string(data), 0o640)
	s, err := store.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	for iter := range b.N {
		for i := range 200 {
			m := model.Member{Name: fmt.Sprintf("n%d-%03d", iter, i), Address: "127.0.99.1", Port: 9, Weight: model.DefaultWeight}
			t0 := time.Now()
			if _, err := s.Put("burst", m); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	mean := sum / time.Duration(len(lat))
	figure(b, "store: one registration into a service of 1,000 members (state.json rewritten and synced)", fmt.Sprintf("p50 / p99 / mean (%d samples); serial ceiling", len(lat)),
		fmt.Sprintf("%s / %s / %s; %.0f registrations/s", ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), ms(mean), float64(time.Second)/float64(mean)), "", false)
}

// BenchmarkRegisterLatency measures, for the runtime path (a roundrobin service: add server +
// enable through the admin socket) and the reload path (a sticky service: haproxy 2.6 refuses
// cookies on dynamic servers, so every change is a check + reload), the time from the first
// byte of a signed PUT on a kept-alive API connection to the first proxied 200 from the new
// member, probed back to back on new connections. The service has no other member, so every
// other answer is a 503. Each sample's member is unregistered (and applied) before the next.
// The runtime path runs twice: with the default coalescing (apply_quiet 20ms: the reconciler
// waits for 20 ms without changes before it applies) and with apply_quiet: 0s, which shows
// what the pipeline itself costs.
func BenchmarkRegisterLatency(b *testing.B) {
	for _, path := range []struct{ name, global, extra string }{
		{"runtime", "", ""},
		{"runtime-quiet0", "apply_quiet: 0s\n", ""},
		// A static-rr service registered with weight 50: haproxy ignores weights set at
		// runtime there, so every change is render, haproxy -c, install, reload. (Sticky
		// services take the runtime path since server slots.)
		{"reload", "", "    balance: static-rr\n"},
	} {
		b.Run(path.name, func(b *testing.B) {
			front := freePort(b)
			l := startLB(b, path.global+"services:\n"+service("svc", front, 9, path.extra))
			type member struct {
				body string
				addr string
				port int
			}
			var ms2 []member
			for i, ip := range []string{"127.0.0.51", "127.0.0.52"} {
				p := freePort(b)
				name := fmt.Sprintf("member-%d", i)
				backend(b, name, fmt.Sprintf("%s:%d", ip, p))
				ms2 = append(ms2, member{body: name, addr: ip, port: p})
			}
			frontAddr := fmt.Sprintf("127.0.0.1:%d", front)
			reloadsBefore := l.reloads()
			var toServed, toAnswer []time.Duration
			var probes int
			for range b.N {
				for i := range *samples {
					m := ms2[i%2]
					name := fmt.Sprintf("s%04d", i)
					body := map[string]any{"address": m.addr, "port": m.port}
					if path.name == "reload" {
						body["weight"] = 50
					}
					req := l.request("PUT", "/v1/services/svc/members/"+name, body)
					stop := make(chan struct{})
					type served struct {
						at  time.Time
						n   int
						err error
					}
					got := make(chan served, 1)
					start := time.Now()
					go func() {
						at, n, err := probeUntil(frontAddr, m.body, 10+i%2, 10*time.Second, stop)
						got <- served{at, n, err}
					}()
					code, out := l.do(req)
					answered := time.Now()
					if code != http.StatusOK {
						close(stop)
						<-got
						b.Fatalf("PUT %s = %d %s", name, code, out)
					}
					s := <-got
					if s.err != nil {
						b.Fatalf("sample %d: %v", i, s.err)
					}
					toServed = append(toServed, s.at.Sub(start))
					toAnswer = append(toAnswer, answered.Sub(start))
					probes += s.n
					l.must("DELETE", "/v1/services/svc/members/"+name, nil, http.StatusOK)
				}
			}
			reloads := l.reloads() - reloadsBefore
			slices.Sort(toServed)
			slices.Sort(toAnswer)
			p50, p99 := percentile(toServed, 0.5), percentile(toServed, 0.99)
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			bench := map[string]string{
				"runtime":        "register → first proxied 200, runtime path (defaults: apply_quiet 20ms)",
				"runtime-quiet0": "register → first proxied 200, runtime path with apply_quiet: 0s",
				"reload":         "register → first proxied 200, reload path (static-rr service, weight 50)",
			}[path.name]
			n := len(toServed)
			switch path.name {
			case "runtime", "runtime-quiet0":
				figure(b, bench, fmt.Sprintf("p50 / p90 (%d samples)", n), ms(p50)+" / "+ms(percentile(toServed, 0.9)), "p50 ≤ 2.5 ms", p50 <= 2500*time.Microsecond)
				figure(b, bench, fmt.Sprintf("p99 (%d samples)", n), ms(p99), "≤ 6 ms", p99 <= 6*time.Millisecond)
				figure(b, bench, "reloads during the samples (register + unregister each)", strconv.Itoa(reloads), "0", reloads == 0)
			default:
				figure(b, bench, fmt.Sprintf("p50 / p90 (%d samples)", n), ms(p50)+" / "+ms(percentile(toServed, 0.9)), "", false)
				figure(b, bench, fmt.Sprintf("p99 (%d samples)", n), ms(p99), "", false)
				figure(b, bench, "reloads during the samples (register + unregister each)", strconv.Itoa(reloads), "", false)
			}
			figure(b, bench, "PUT answered (applied), p50 / p99", ms(percentile(toAnswer, 0.5))+" / "+ms(percentile(toAnswer, 0.99)), "", false)
			figure(b, bench, "min / max to first 200; probes per sample", fmt.Sprintf("%s / %s; %d", ms(toServed[0]), ms(toServed[n-1]), probes/n), "", false)
		})
	}
}

// BenchmarkRegistrationBurst sends 1,000 registrations from 50 concurrent clients (20 each,
// one after the other, each waiting for its apply) into a service that already exists: a
// roundrobin service (runtime path) and, for comparison, a sticky one (reload path).
func BenchmarkRegistrationBurst(b *testing.B) {
	const total, clients = 1000, 50
	for _, path := range []struct{ name, extra string }{
		{"runtime", "    slots: 1024\n"},
		{"runtime, sticky", "    sticky: true\n    slots: 1024\n"},
		{"pool grows from 8", ""},
	} {
		b.Run(path.name, func(b *testing.B) {
			port := freePort(b)
			l := startLB(b, "services:\n"+service("burst", port, 9, path.extra))
			backendName := "burst_" + itoa(port) // the built-in template names backends SERVICE_PORT
			for iter := range b.N {
				before, applied, writesBefore := l.reloads(), l.applies(), l.storeRevision()
				var lat []time.Duration
				var mu sync.Mutex
				var failed atomic.Int64
				// Requests are signed up front so that the clients only send.
				reqs := make([][]*http.Request, clients)
				for c := range clients {
					for k := range total / clients {
						i := c*(total/clients) + k
						reqs[c] = append(reqs[c], l.request("PUT", fmt.Sprintf("/v1/services/burst/members/r%d-%04d", iter, i),
							map[string]any{"address": fmt.Sprintf("127.0.%d.%d", 100+i/250, 1+i%250), "port": 9}))
					}
				}
				start := time.Now()
				var wg sync.WaitGroup
				for c := range clients {
					wg.Go(func() {
						for _, req := range reqs[c] {
							t0 := time.Now()
							code, out := l.do(req)
							d := time.Since(t0)
							if code != http.StatusOK {
								failed.Add(1)
								b.Errorf("%s: %d %s", req.URL.Path, code, out)
								continue
							}
							mu.Lock()
							lat = append(lat, d)
							mu.Unlock()
						}
					})
				}
				wg.Wait()
				wall := time.Since(start)
				reloads := l.reloads() - before
				writes := l.storeRevision() - writesBefore
				inHaproxy := l.servers(backendName)
				var appliesBy []string
				for path, n := range l.applies() {
					if d := n - applied[path]; d > 0 && path != "unchanged" {
						appliesBy = append(appliesBy, fmt.Sprintf("%.0f %s", d, path))
					}
				}
				slices.Sort(appliesBy)
				slices.Sort(lat)
				bench := fmt.Sprintf("burst: %d registrations, %d clients, existing service (%s)", total, clients, path.name)
				figure(b, bench, "wall time (all applied)", ms(wall), "", false)
				figure(b, bench, "registrations/s", fmt.Sprintf("%.0f", total/wall.Seconds()), "", false)
				if strings.HasPrefix(path.name, "runtime") {
					figure(b, bench, "reloads", strconv.Itoa(reloads), "0 (slots for all)", reloads == 0)
				} else {
					figure(b, bench, "reloads", strconv.Itoa(reloads), "", false)
				}
				figure(b, bench, "applies (changes coalesced per apply)", strings.Join(appliesBy, ", "), "", false)
				figure(b, bench, "state.json writes (group commit: registrations per write)", fmt.Sprintf("%d (%.0f)", writes, total/float64(max(writes, 1))), "", false)
				figure(b, bench, "per call p50 / p99; failed calls; servers in haproxy", fmt.Sprintf("%s / %s; %d; %d", ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), failed.Load(), inHaproxy), "", false)
				b.ReportMetric(float64(wall.Milliseconds()), "ms/burst")
				b.ReportMetric(float64(reloads), "reloads")
			}
		})
	}
}

// freeRange finds n consecutive ports, from 20000 up (below the ephemeral range), that are
// free on 127.0.0.1 now.
func freeRange(b testing.TB, n int) int {
	b.Helper()
	for base := 20000; base+n < 32768; base += n {
		ok := true
		for p := base; p < base+n && ok; p++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				continue
			}
			ln.Close()
		}
		if ok {
			return base
		}
	}
	b.Fatalf("no %d consecutive free ports between 20000 and 32767", n)
	return 0
}

// vmHWM is the peak resident set size of a process, from /proc/PID/status.
func vmHWM(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM")
}

// children are the child processes of pid.
func children(pid int) []int {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var out []int
	for _, f := range strings.Fields(string(data)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// stateFile is internal/store's state.json format (version 1).
type stateFile struct {
	Version    int                                  `json:"version"`
	Generation uint64                               `json:"generation"`
	Services   map[string]map[string][]model.Member `json:"services"`
}

// BenchmarkColdStart10k starts clbd on 1,000 services (one listener each, on consecutive
// ports of 127.0.0.1) and a state of 10 members each (10,000 servers; 10 real backends), and
// measures clbd start → /healthz (clbd answers only after its first apply: render, haproxy -c,
// install, haproxy started), the first apply's own duration from /v1/status, start → every
// frontend served a 200, clbd's peak RSS, and then one change of each path at that scale.
func BenchmarkColdStart10k(b *testing.B) {
	requireHaproxyBin(b)
	for range b.N {
		rss0, slots0 := coldStart(b, 0)
		rss1, slots1 := coldStart(b, 18) // more hits the fd limit here (20,000: haproxy wants one per server with checks)
		perSlot := float64(rss1-rss0) / float64(slots1-slots0)
		figure(b, "cold start: server slots", fmt.Sprintf("haproxy worker RSS per slot (%d → %d slots: %.0f → %.0f MB)", slots0, slots1, float64(rss0)/(1<<20), float64(rss1)/(1<<20)),
			fmt.Sprintf("%.1f KB", perSlot/1024), "", false)
	}
}

// coldStart starts clbd on 10,000 members in 1,000 services, each with the slots setting
// given (0: the default pool), prints its figures and returns haproxy's worker peak RSS and
// the server slots it runs.
func coldStart(b *testing.B, slotsSetting int) (hapRSS int64, slots int) {
	const nServices, perService = 1000, 10
	{
		base := freeRange(b, nServices)
		memberPort := freePort(b)
		var bodies []string
		for j := range perService {
			name := fmt.Sprintf("be%d", j)
			backend(b, name, fmt.Sprintf("127.0.1.%d:%d", 1+j, memberPort))
			bodies = append(bodies, name)
		}
		var cfg strings.Builder
		cfg.WriteString("services:\n")
		st := stateFile{Version: 1, Generation: 1, Services: map[string]map[string][]model.Member{}}
		for i := range nServices {
			name := fmt.Sprintf("svc%04d", i)
			extra := ""
			if slotsSetting > 0 {
				extra = fmt.Sprintf("    slots: %d\n", slotsSetting)
			}
			if i == 0 {
				extra += "    balance: static-rr\n" // a weight change is a reload: to time one at this scale
			}
			cfg.WriteString(service(name, base+i, memberPort, extra))
			var ms []model.Member
			for j := range perService {
				ms = append(ms, model.Member{Name: fmt.Sprintf("m%02d", j), Address: fmt.Sprintf("127.0.1.%d", 1+j), Port: memberPort, Weight: model.DefaultWeight})
			}
			st.Services[name] = map[string][]model.Member{"members": ms}
		}
		dir := shortDir(b)
		data, err := json.Marshal(st)
		if err != nil {
			b.Fatal(err)
		}
		writeFile(b, filepath.Join(dir, store.FileName), string(data), 0o640)
		if s, err := store.Open(dir); err != nil {
			b.Fatalf("state.json in internal/store's format: %v", err)
		} else if n := len(s.Snapshot().Members); n != nServices {
			b.Fatalf("state.json holds %d services, want %d", n, nServices)
		}
		cfgPath := filepath.Join(dir, "clbd.yaml")
		writeFile(b, cfgPath, cfg.String(), 0o644)
		pw := filepath.Join(dir, "password")
		writeFile(b, pw, benchPassword+"\n", 0o600)

		binary(b, "clbd") // built before the clock starts
		start := time.Now()
		c := startClbd(b, dir, "--log-level", "info", "--managed", "--config", cfgPath, "--state-dir", dir,
			"--templates", filepath.Join(dir, "templates"), "--password-file", pw)
		healthy := time.Since(start)
		saveLogs(b, c)
		l := &lb{b: b, dir: dir, cfg: cfgPath, c: c, key: auth.DeriveKey([]byte(benchPassword)),
			client: &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 10}}}
		b.Cleanup(l.client.CloseIdleConnections)
		stat := l.status()
		applied := time.Since(start)
		la := stat["last_apply"].(map[string]any)
		if la["result"] != "ok" {
			b.Fatalf("first apply: %v", la)
		}
		firstApply := time.Duration(la["duration_ms"].(float64) * float64(time.Millisecond))
		// Every frontend answers 200 (any of its members).
		for i := range nServices {
			addr := fmt.Sprintf("127.0.0.1:%d", base+i)
			deadline := time.Now().Add(20 * time.Second)
			for {
				code, body, err := probeOnce(addr, net.IPv4(127, 0, 20, byte(1+i%250)))
				if err == nil && code == http.StatusOK && slices.Contains(bodies, body) {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("frontend %s: no 200 within 20s of starting to probe (last %d %q %v)", addr, code, body, err)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		serving := time.Since(start)
		inHaproxy := 0 // members: servers not in maintenance
		for _, line := range strings.Split(l.haproxy("show servers state"), "\n") {
			if f := strings.Fields(line); len(f) > 6 && !strings.HasPrefix(f[0], "#") {
				slots++
				if admin, err := strconv.Atoi(f[6]); err == nil && admin&1 == 0 {
					inHaproxy++
				}
			}
		}

		// One change of each path at this scale.
		t0 := time.Now()
		l.must("PUT", "/v1/services/svc0001/members/extra", map[string]any{"address": "127.0.1.1", "port": memberPort}, http.StatusOK)
		runtimeOne := time.Since(t0)
		r0 := l.reloads()
		t0 = time.Now()
		l.must("PUT", "/v1/services/svc0000/members/extra", map[string]any{"address": "127.0.1.1", "port": memberPort, "weight": 50}, http.StatusOK)
		reloadOne := time.Since(t0)
		if l.reloads() != r0+1 {
			b.Errorf("a weight-50 registration into static-rr svc0000 did not reload (reloads %d → %d)", r0, l.reloads())
		}
		rss, err := vmHWM(c.cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		if pid, ok := stat["haproxy_pid"].(float64); ok {
			for _, w := range children(int(pid)) {
				hapRSS = max(hapRSS, must64(vmHWM(w)))
			}
		}
		bench := fmt.Sprintf("cold start: %d members in %d services, %d server slots", nServices*perService, nServices, slots)
		figure(b, bench, "clbd start → /healthz (render, check, install, haproxy up)", ms(healthy), "< 3 s", healthy < 3*time.Second)
		figure(b, bench, "clbd start → first apply ok in /v1/status", ms(applied), "< 3 s", applied < 3*time.Second)
		figure(b, bench, "first apply alone (render + haproxy -c + install)", ms(firstApply), "", false)
		figure(b, bench, fmt.Sprintf("clbd start → all %d frontends served a 200", nServices), ms(serving), "", false)
		figure(b, bench, "members served by haproxy (slots not in maintenance)", strconv.Itoa(inHaproxy), strconv.Itoa(nServices*perService), inHaproxy == nServices*perService)
		figure(b, bench, "clbd peak RSS (VmHWM)", fmt.Sprintf("%.0f MB", float64(rss)/(1<<20)), "< 150 MB", rss < 150<<20)
		figure(b, bench, "haproxy worker peak RSS (VmHWM)", fmt.Sprintf("%.0f MB", float64(hapRSS)/(1<<20)), "", false)
		figure(b, bench, "one more registration, runtime path: PUT → applied", ms(runtimeOne), "", false)
		figure(b, bench, "one more registration, reload path: PUT → applied", ms(reloadOne), "", false)
		b.ReportMetric(float64(healthy.Milliseconds()), "ms-to-healthz")
		b.ReportMetric(float64(rss)/(1<<20), "MB-peak-rss")
		c.stop(syscall.SIGTERM)
	}
	return hapRSS, slots
}

func must64(v int64, err error) int64 {
	if err != nil {
		return 0
	}
	return v
}

// BenchmarkLoadUnderChange keeps a constant load on a frontend (8 workers, with keep-alive
// and with a new connection per request) while (a) 1,000 register/unregister events of real
// members of that frontend go through the runtime path, and (b) 20 reloads happen (a member
// registered into and unregistered from a sticky service of the same haproxy: each change is
// a check + reload). It reports failed requests (no answer) and non-2xx answers.
//
// The control run repeats (b) with keep-alive on a template without `option
// idle-close-on-response`: it shows that the load generator does see the failures that
// option prevents (idle keep-alive connections closed by the old worker).
func BenchmarkLoadUnderChange(b *testing.B) {
	b.Run("builtin-template", func(b *testing.B) {
		env := newLoadEnv(b, "")
		for _, keepAlive := range []bool{true, false} {
			for _, change := range []string{"runtime", "runtime-sticky", "reload", "growth"} {
				b.Run(map[bool]string{true: "keep-alive", false: "close"}[keepAlive]+"/"+change, func(b *testing.B) {
					for range b.N {
						env.run(b, keepAlive, change, "")
					}
				})
			}
		}
	})
	b.Run("control-without-idle-close", func(b *testing.B) {
		tmpl := strings.Replace(templates.Default, "option idle-close-on-response", "", 1)
		if tmpl == templates.Default {
			b.Skip("the built-in template has no option idle-close-on-response any more")
		}
		env := newLoadEnv(b, tmpl)
		for range b.N {
			env.run(b, true, "reload", "control: template without option idle-close-on-response; ")
		}
	})
}

const (
	loadWorkers  = 8
	loadChurners = 10
	loadEvents   = 1000
	loadReloads  = 20
	loadGrowth   = 40 // members registered into a pool of 8: it grows twice
)

// loadEnv is a clbd with four services on one haproxy: web (roundrobin; two stable members and
// loadChurners members that come and go), sticky (cookie stickiness; one stable member, and
// the same churners), static (static-rr: a weight change there is a reload, haproxy ignores
// weights set at runtime) and growing (its pool grows under load). web and sticky have slots
// for every member they get, so that their churn measures the runtime path alone.
type loadEnv struct {
	l                             *lb
	front, stickyFront, growFront string
	memberPort                    int
	grown                         int // members growing has
}

func newLoadEnv(b *testing.B, template string) *loadEnv {
	front, sticky, static, grow, memberPort := freePort(b), freePort(b), freePort(b), freePort(b), freePort(b)
	l := startLBWith(b, "services:\n"+service("web", front, memberPort, "    slots: 16\n")+
		service("sticky", sticky, memberPort, "    sticky: true\n    slots: 16\n")+
		service("static", static, memberPort, "    balance: static-rr\n")+
		service("growing", grow, memberPort, ""), template)
	for i := range 2 {
		ip := fmt.Sprintf("127.0.0.%d", 31+i)
		backend(b, "stable", ip+":"+itoa(memberPort))
		l.must("PUT", "/v1/services/web/members/stable"+itoa(i), map[string]any{"address": ip}, http.StatusOK)
		l.must("PUT", "/v1/services/growing/members/stable"+itoa(i), map[string]any{"address": ip}, http.StatusOK)
	}
	l.must("PUT", "/v1/services/sticky/members/stable", map[string]any{"address": "127.0.0.31"}, http.StatusOK)
	for k := range loadChurners {
		backend(b, "churner", fmt.Sprintf("127.0.0.%d:%d", 41+k, memberPort))
	}
	backend(b, "static", "127.0.0.60:"+itoa(memberPort))
	l.must("PUT", "/v1/services/static/members/keep", map[string]any{"address": "127.0.0.60"}, http.StatusOK)
	return &loadEnv{l: l, front: fmt.Sprintf("127.0.0.1:%d", front), stickyFront: fmt.Sprintf("127.0.0.1:%d", sticky),
		growFront: fmt.Sprintf("127.0.0.1:%d", grow), memberPort: memberPort}
}

// churn registers and unregisters churner members of web, each churner one call after the
// other (waiting for the apply), until loadEvents changes were applied. It returns the
// latencies of registrations and of unregistrations (which include the drain).
func (e *loadEnv) churn(service string) (took time.Duration, reg, unreg []time.Duration, err error) {
	var left atomic.Int64
	left.Store(loadEvents)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for k := range loadChurners {
		wg.Go(func() {
			addr := fmt.Sprintf("127.0.0.%d", 41+k)
			name := fmt.Sprintf("churner%d", k)
			registered := false
			for left.Add(-1) >= 0 {
				method, body := "PUT", any(map[string]any{"address": addr})
				if registered {
					method, body = "DELETE", nil
				}
				t0 := time.Now()
				code, out := e.l.do(e.l.request(method, "/v1/services/"+service+"/members/"+name, body))
				d := time.Since(t0)
				mu.Lock()
				if code != http.StatusOK && err == nil {
					err = fmt.Errorf("%s %s: %d %s", method, name, code, out)
				}
				if registered {
					unreg = append(unreg, d)
				} else {
					reg = append(reg, d)
				}
				mu.Unlock()
				registered = !registered
			}
			if registered { // leave the service as it was
				e.l.do(e.l.request("DELETE", "/v1/services/"+service+"/members/"+name, nil))
			}
		})
	}
	wg.Wait()
	slices.Sort(reg)
	slices.Sort(unreg)
	return time.Since(start), reg, unreg, err
}

// reloads toggles the weight of the static-rr member loadReloads times: each call is a reload.
func (e *loadEnv) reloads() (time.Duration, error) {
	start := time.Now()
	for n := range loadReloads {
		weight := 100 - 50*(1-n%2)
		if code, out := e.l.do(e.l.request("PUT", "/v1/services/static/members/keep", map[string]any{"address": "127.0.0.60", "weight": weight})); code != http.StatusOK {
			return time.Since(start), fmt.Errorf("weight %d: %d %s", weight, code, out)
		}
	}
	return time.Since(start), nil
}

// grow registers loadGrowth more members into growing, 10 at a time: its pool of 8 grows by
// reloads.
func (e *loadEnv) grow() (time.Duration, error) {
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var err error
	for k := range 10 {
		wg.Go(func() {
			for i := k; i < loadGrowth; i += 10 {
				name := fmt.Sprintf("grow%03d", e.grown+i)
				code, out := e.l.do(e.l.request("PUT", "/v1/services/growing/members/"+name, map[string]any{"address": fmt.Sprintf("127.0.0.%d", 41+k)}))
				if code != http.StatusOK {
					mu.Lock()
					err = fmt.Errorf("register %s: %d %s", name, code, out)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	e.grown += loadGrowth
	return time.Since(start), err
}

// run measures the load on web during one kind of change and prints its figures.
func (e *loadEnv) run(b *testing.B, keepAlive bool, change, prefix string) {
	conn := "keep-alive"
	if !keepAlive {
		conn = "new connection per request"
	}
	r0 := e.l.reloads()
	rejected0 := strings.Count(e.l.c.logs.String(), "corrupted global server state file")
	addr := map[string]string{"runtime-sticky": e.stickyFront, "growth": e.growFront}[change]
	if addr == "" {
		addr = e.front
	}
	stop := startLoad(context.Background(), loadOpts{addr: addr, workers: loadWorkers, keepAlive: keepAlive,
		max: 2_000_000, limit: 3 * time.Minute, srcNet: 30})
	time.Sleep(200 * time.Millisecond) // the load runs before the first change and after the last
	var what, detail string
	var err error
	switch change {
	case "runtime", "runtime-sticky":
		service := map[string]string{"runtime": "web", "runtime-sticky": "sticky"}[change]
		took, reg, unreg, cerr := e.churn(service)
		err = cerr
		what = fmt.Sprintf("%d register/unregister events in %s (%s)", loadEvents, service, map[string]string{"web": "roundrobin", "sticky": "cookie stickiness"}[service])
		detail = fmt.Sprintf("changes in %s; register p50/p99 %s / %s; unregister (drain included) p50/p99 %s / %s",
			ms(took), ms(percentile(reg, 0.5)), ms(percentile(reg, 0.99)), ms(percentile(unreg, 0.5)), ms(percentile(unreg, 0.99)))
	case "growth":
		took, gerr := e.grow()
		err = gerr
		what = fmt.Sprintf("%d registrations that grow a pool of server slots", loadGrowth)
		detail = "registrations in " + ms(took)
	default:
		took, rerr := e.reloads()
		err = rerr
		what = fmt.Sprintf("%d reloads", loadReloads)
		detail = "reloads in " + ms(took)
	}
	time.Sleep(200 * time.Millisecond)
	s := stop()
	if err != nil {
		b.Errorf("%s: %v", what, err)
	}
	reloads := e.l.reloads() - r0
	rejected := strings.Count(e.l.c.logs.String(), "corrupted global server state file") - rejected0
	bench := fmt.Sprintf("%sload (%d workers, %s) during %s", prefix, loadWorkers, conn, what)
	failed := fmt.Sprintf("%d of %d", s.failed(), s.Requests)
	if prefix != "" { // the control is expected to fail: no target
		figure(b, bench, "failed requests (no answer)", failed, "", false)
	} else {
		figure(b, bench, "failed requests (no answer)", failed, "0", s.failed() == 0)
		figure(b, bench, "non-2xx answers", strconv.FormatInt(s.non2xx(), 10), "0", s.non2xx() == 0)
	}
	figure(b, bench, "causes; req/s; connections opened; reloads", fmt.Sprintf("%s; %.0f; %d; %d", s.causes(), float64(s.Requests)/s.Elapsed.Seconds(), s.Conns, reloads), "", false)
	switch change {
	case "runtime", "runtime-sticky":
		figure(b, bench, "reloads", strconv.Itoa(reloads), "0", reloads == 0)
		figure(b, bench, "answers from the churning members; "+detail, fmt.Sprintf("%d", s.Bodies["churner"]), "", false)
	case "growth":
		figure(b, bench, "reloads (pool growth); "+detail, strconv.Itoa(reloads), "≥ 1", reloads >= 1)
	default:
		figure(b, bench, "reloads whose server-state file haproxy rejected; "+detail, strconv.Itoa(rejected), "0", rejected == 0)
	}
}

// BenchmarkDrainUnderLoad times one unregistration (drain included) of a member that serves
// a keep-alive load, for a member added at runtime and for one that is in the config file
// (it was registered before a reload), with the built-in template and with one whose
// default-server adds `pool-purge-delay 500ms`. haproxy keeps idle server-side connections to
// config-file servers (none to dynamic ones) and closes half of them every pool-purge-delay
// (5 s by default); `del server` refuses while any is left.
func BenchmarkDrainUnderLoad(b *testing.B) {
	const purge = "pool-purge-delay 500ms "
	for _, variant := range []struct{ name, template string }{
		{"built-in template", ""},
		{"default-server with " + strings.TrimSpace(purge), strings.Replace(templates.Default, "default-server init-addr last,libc,none ", "default-server init-addr last,libc,none "+purge, 1)},
	} {
		b.Run(strings.Fields(variant.name)[0], func(b *testing.B) {
			if variant.template == templates.Default {
				b.Skip("the built-in template's default-server line changed")
			}
			front, sticky, memberPort := freePort(b), freePort(b), freePort(b)
			l := startLBWith(b, "services:\n"+service("web", front, memberPort, "")+service("sticky", sticky, memberPort, "    sticky: true\n"), variant.template)
			backend(b, "stable", "127.0.0.31:"+itoa(memberPort))
			backend(b, "m", "127.0.0.71:"+itoa(memberPort))
			l.must("PUT", "/v1/services/web/members/stable", map[string]any{"address": "127.0.0.31"}, http.StatusOK)
			for range b.N {
				for _, static := range []bool{false, true} {
					kind := "added at runtime (dynamic server)"
					if static {
						kind = "in the config file (registered before a reload)"
					}
					var took []string
					var failed, requests int64
					for range 3 {
						l.must("PUT", "/v1/services/web/members/m", map[string]any{"address": "127.0.0.71"}, http.StatusOK)
						if static {
							l.must("PUT", "/v1/services/sticky/members/x", map[string]any{"address": "127.0.0.72"}, http.StatusOK)
						}
						stop := startLoad(context.Background(), loadOpts{addr: fmt.Sprintf("127.0.0.1:%d", front), workers: loadWorkers, keepAlive: true,
							max: 1_000_000, limit: time.Minute, srcNet: 31})
						time.Sleep(time.Second)
						t0 := time.Now()
						l.must("DELETE", "/v1/services/web/members/m", nil, http.StatusOK)
						took = append(took, ms(time.Since(t0)))
						s := stop()
						failed, requests = failed+s.failed()+s.non2xx(), requests+s.Requests
						if static {
							l.must("DELETE", "/v1/services/sticky/members/x", nil, http.StatusOK)
						}
					}
					figure(b, "unregister under keep-alive load ("+itoa(loadWorkers)+" workers), "+variant.name,
						"member "+kind+": DELETE → answered (drained and removed), 3 runs; failed requests",
						fmt.Sprintf("%s; %d of %d", strings.Join(took, ", "), failed, requests), "", false)
				}
			}
		})
	}
}

// BenchmarkRegisterToFirstResponse measures, in each mode, the time from starting the
// clb_register process (which signs, calls and waits for the apply) to the first proxied 200
// from that member, over -samples/10 runs: it includes the process start-up that
// BenchmarkRegisterLatency leaves out.
func BenchmarkRegisterToFirstResponse(b *testing.B) {
	for _, mode := range []string{"managed", "external"} {
		b.Run(mode, func(b *testing.B) {
			s := newScenario(b, mode == "managed")
			var lat []time.Duration
			n := max(10, *samples/10)
			for range b.N {
				for range n {
					start := time.Now()
					s.register("b2")
					deadline := time.Now().Add(10 * time.Second)
					for spread(b, s.front, 1)["b2"] == 0 {
						if time.Now().After(deadline) {
							b.Fatal("b2 not served within 10s of registering")
						}
					}
					lat = append(lat, time.Since(start))
					mustRun(b, "clb_unregister", "--server", "http://"+s.c.api, "--password-file", s.pwFile, "--service", "web", "--name", "b2")
				}
			}
			slices.Sort(lat)
			path := "runtime"
			if mode == "external" {
				path = "reload"
			}
			figure(b, fmt.Sprintf("clb_register process start → first proxied 200 (%s mode, %s path)", mode, path),
				fmt.Sprintf("p50 / p99 (%d samples)", len(lat)), ms(percentile(lat, 0.5))+" / "+ms(percentile(lat, 0.99)), "", false)
		})
	}
}
