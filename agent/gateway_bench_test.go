package agent

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkGateway is issue 10's figures, printed as FIGURE lines for `make bench`:
//   - route change → effective: PUT of a domain (its catch-all moved to another service) to
//     the first request, on a new connection, answered by the new service; p50 and p99;
//   - haproxy's CPU per request (utime+stime of its worker from /proc over a bounded number
//     of keep-alive requests) with 1,000 prefix routes and with 1,000 regex routes, each
//     against a service's plain frontend (bind → default_backend) in the same run. A domain
//     holds at most gateway.MaxRoutesPerDomain (256) routes, so the 1,000 routes are 4
//     domains of 250; requests hit the last route of the last domain.
func BenchmarkGateway(b *testing.B) {
	n := 100
	if f := flag.Lookup("samples"); f != nil {
		n, _ = strconv.Atoi(f.Value.String())
	}
	f := startGateways(b, Options{})
	f.putGateway(`,"domains":{"lb.test":{"routes":[{"name":"all","service":"web"}]}}`)
	for range b.N {
		// Route change → effective.
		var lat []time.Duration
		reloads := f.a.status().Reloads
		for i := range n {
			svc := []string{"blog", "api"}[i%2]
			start := time.Now()
			if st, out := f.call("PUT", "/v1/gateways/pub/domains/lb.test", fmt.Sprintf(`{"routes":[{"name":"all","service":"%s"}]}`, svc)); st != http.StatusOK {
				b.Fatalf("PUT = %d %v", st, out)
			}
			for try := 0; ; try++ {
				if _, body := f.get(f.gwPort, "lb.test", "/"); body == svc+" /" {
					break
				}
				if try == 1000 {
					b.Fatalf("sample %d: %s not served after 1,000 requests", i, svc)
				}
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		p50, p99 := gwPercentile(lat, 0.5), gwPercentile(lat, 0.99)
		name := "gateway: route change (PUT domain) → first request served by the new route"
		gwFigure(name, fmt.Sprintf("p50 / p99 (%d samples)", len(lat)), gwMS(p50)+" / "+gwMS(p99), "p99 ≤ 10 ms", p99 <= 10*time.Millisecond)
		r := f.a.status().Reloads - reloads
		gwFigure(name, "reloads during the samples", strconv.FormatUint(r, 10), "0", r == 0)

		// CPU per request.
		const requests = 20_000
		for _, kind := range []string{"prefix", "regex"} {
			var doms []string
			for d := range 4 {
				var routes []string
				for i := range 250 {
					m := fmt.Sprintf(`"path_prefix":"/section-%03d/"`, i)
					if kind == "regex" {
						m = fmt.Sprintf(`"path_regex":"^/section-%03d/[a-z]+$"`, i)
					}
					routes = append(routes, fmt.Sprintf(`{"name":"r%d","match":{%s},"service":"%s"}`, i, m, []string{"blog", "api"}[i%2]))
				}
				doms = append(doms, fmt.Sprintf(`"d%d.example.com":{"routes":[%s]}`, d, strings.Join(routes, ",")))
			}
			f.putGateway(`,"domains":{` + strings.Join(doms, ",") + `}`)
			if _, body := f.get(f.gwPort, "d3.example.com", "/section-249/page"); body != "api /section-249/page" {
				b.Fatalf("%s routes: last route answered %q", kind, body)
			}
			plainPort := f.webPort()
			plain := f.cpuPerRequest(plainPort, "lb.test", "/section-249/page", requests)
			routed := f.cpuPerRequest(f.gwPort, "d3.example.com", "/section-249/page", requests)
			name := fmt.Sprintf("gateway: haproxy CPU per request, 1,000 %s routes (4 domains × 250), last route", kind)
			gwFigure(name, "plain frontend (default_backend), µs/request", fmt.Sprintf("%.1f", plain), "", false)
			target, met := "", false
			if kind == "prefix" {
				target, met = "≤ 10 µs and ≤ 2× plain", routed-plain <= 10 && routed <= 2*plain
			}
			gwFigure(name, fmt.Sprintf("gateway, µs/request (%d requests each)", requests), fmt.Sprintf("%.1f (%.1f more than plain)", routed, routed-plain), target, met)
		}
	}
}

// webPort is the port of service web's own frontend.
func (f *gwFix) webPort() int {
	return f.cfg.Services["web"].Listeners[0].Port
}

// cpuPerRequest sends n requests (4 keep-alive connections) to port with host and path and
// returns haproxy's worker CPU time (user + system, /proc/PID/stat) per request in µs.
func (f *gwFix) cpuPerRequest(port int, host, path string, n int) float64 {
	f.t.Helper()
	pid := f.workerPid()
	before := procCPU(f.t, pid)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed int
	const workers = 4
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				mu.Lock()
				failed += n / workers
				mu.Unlock()
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			req := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
			for range n / workers {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				resp, err := func() (*http.Response, error) {
					if _, err := io.WriteString(c, req); err != nil {
						return nil, err
					}
					return http.ReadResponse(br, nil)
				}()
				if err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if failed > 0 {
		f.t.Fatalf("%d of %d requests to :%d failed", failed, n, port)
	}
	if got := f.workerPid(); got != pid {
		f.t.Fatalf("haproxy reloaded during the measure")
	}
	return float64(procCPU(f.t, pid)-before) / float64(n)
}

// procCPU is a process's utime+stime in µs.
func procCPU(t testing.TB, pid string) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return (utime + stime) * 1_000_000 / ticks
}

func gwPercentile(sorted []time.Duration, p float64) time.Duration {
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func gwMS(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// gwFigure prints one row of the `make bench` table (the format of bench_test.go's figure).
func gwFigure(bench, name, value, target string, met bool) {
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
