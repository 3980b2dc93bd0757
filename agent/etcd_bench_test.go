package agent_test

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"clb/internal/etcdtest"
)

// BenchmarkEtcdPropagation measures, on two clbd nodes sharing a three-member etcd cluster,
// the time from sending a registration to node A to the first proxied 200 from that member
// through node B's haproxy (new connection per probe), over -samples runs; and the same for an
// unregistration (until B no longer routes to the member).
func BenchmarkEtcdPropagation(b *testing.B) {
	c := etcdtest.Start(b, 3)
	f := newFleet(b, c, 2, nil)
	A, B := f.nodes[0], f.nodes[1]
	f.register(A, "b1")
	f.converge("b1 registered", "b1")
	body := map[string]any{"address": "127.0.0.2", "port": f.ports["b2"]}
	var reg, regA, unreg []time.Duration
	for range b.N {
		for range *samples {
			start := time.Now()
			code, out := A.c.call("PUT", "/v1/services/web/members/b2", fleetPassword, body)
			if code != http.StatusOK {
				b.Fatalf("register via A = %d %v", code, out)
			}
			regA = append(regA, time.Since(start))
			deadline := time.Now().Add(10 * time.Second)
			for spread(b, B.front, 1)["b2"] == 0 {
				if time.Now().After(deadline) {
					b.Fatal("b2 not served through B within 10s of registering via A")
				}
			}
			reg = append(reg, time.Since(start))

			start = time.Now()
			if code, out := A.c.call("DELETE", "/v1/services/web/members/b2", fleetPassword, nil); code != http.StatusOK {
				b.Fatalf("unregister via A = %d %v", code, out)
			}
			// B stops routing to b2: a run of requests that all reach b1.
			deadline = time.Now().Add(10 * time.Second)
			for spread(b, B.front, 4)["b1"] != 4 {
				if time.Now().After(deadline) {
					b.Fatal("b2 still served through B 10s after unregistering via A")
				}
			}
			unreg = append(unreg, time.Since(start))
		}
	}
	for _, l := range [][]time.Duration{reg, regA, unreg} {
		slices.Sort(l)
	}
	b.ReportMetric(float64(percentile(reg, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(reg, 0.99).Microseconds())/1000, "p99-ms")
	const bench = "etcd fleet (2 clbd nodes, 3-member etcd): register via node A → first proxied 200 through node B"
	n := len(reg)
	figure(b, bench, fmt.Sprintf("p50 (%d samples, API call start on A to B's first 200)", n), ms(percentile(reg, 0.5)), "", false)
	figure(b, bench, fmt.Sprintf("p99 (%d samples)", n), ms(percentile(reg, 0.99)), "< 250 ms", percentile(reg, 0.99) < 250*time.Millisecond)
	figure(b, bench, fmt.Sprintf("register via A answered (applied on A), p50 / p99 (%d samples)", n),
		ms(percentile(regA, 0.5))+" / "+ms(percentile(regA, 0.99)), "", false)
	figure(b, bench, fmt.Sprintf("unregister via A (drained on A) → B no longer routes to it, p50 / p99 (%d samples)", n),
		ms(percentile(unreg, 0.5))+" / "+ms(percentile(unreg, 0.99)), "", false)
}
