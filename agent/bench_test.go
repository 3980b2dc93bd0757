package agent_test

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var samples = flag.Int("samples", 30, "samples per latency benchmark")

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// BenchmarkRegisterToFirstResponse measures, in each mode, the time from starting clb_register
// to the first proxied 200 from that member (new connection per probe), over -samples runs.
func BenchmarkRegisterToFirstResponse(b *testing.B) {
	for _, mode := range []string{"managed", "external"} {
		b.Run(mode, func(b *testing.B) {
			s := newScenario(b, mode == "managed")
			var lat []time.Duration
			for range b.N {
				for range *samples {
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
			b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
			report(b, "register → first proxied 200 (%s mode, %d samples, clb_register process start to response): p50 %s, p99 %s",
				mode, len(lat), percentile(lat, 0.5).Round(100*time.Microsecond), percentile(lat, 0.99).Round(100*time.Microsecond))
		})
	}
}

// BenchmarkConcurrentRegistrations measures 200 registrations from 200 concurrent callers.
func BenchmarkConcurrentRegistrations(b *testing.B) {
	for _, mode := range []string{"managed", "external"} {
		b.Run(mode, func(b *testing.B) {
			s := newScenario(b, mode == "managed")
			const n = 200
			for iter := range b.N {
				before := s.c.status()["reloads"].(float64)
				start := time.Now()
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() {
						code, out := s.c.call("PUT", fmt.Sprintf("/v1/services/web/members/c%d-%03d", iter, i), "correct horse battery staple",
							map[string]any{"address": fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250), "port": 9})
						if code != 200 {
							b.Errorf("registration %d: %d %v", i, code, out)
						}
					})
				}
				wg.Wait()
				el := time.Since(start)
				reloads := s.c.status()["reloads"].(float64) - before
				b.ReportMetric(float64(el.Milliseconds()), "ms/200-registrations")
				b.ReportMetric(reloads, "reloads")
				report(b, "200 concurrent registrations (%s mode): all applied in %s, %.0f registrations/s, %.0f reloads",
					mode, el.Round(time.Millisecond), n/el.Seconds(), reloads)
			}
		})
	}
}

// report prints a figure line for `make bench` (and docs/benchmarks.md).
func report(b *testing.B, format string, args ...any) {
	b.Helper()
	line := fmt.Sprintf(format, args...)
	fmt.Fprintln(os.Stdout, "FIGURE: "+strings.TrimSpace(line))
}
