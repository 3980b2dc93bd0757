package agent_test

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Auto Scaling figures (make bench): a trigger's breach to a new member serving, and a dead
// member to its replacement serving, with the local launcher (members are processes on
// 127.0.0.1; the launch command's own time, from its activity, is reported apart and taken
// out).

const asgBenchGroup = `  g:
    launch_configuration: lc
    min_size: 1
    max_size: 2
    services: [web]
    health_check_type: ELB
    health_check_grace_period: 5s
    cooldown: 1s
    triggers:
      - name: load
        metric: RequestRate
        period: 1s
        breach_duration: 1s
        upper_threshold: 20
        upper_breach_scale_increment: "1"
        lower_threshold: 5
        lower_breach_scale_increment: "-1"
`

// firstServedBy waits (bounded) until a request through the front is answered by a member
// other than those in old, and returns its name.
func firstServedBy(b *testing.B, s *asgScenario, old []string, limit time.Duration) string {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		for name := range spread(b, s.front, 1) {
			if name != "ERR" && !strings.HasPrefix(name, "HTTP ") && !slices.Contains(old, name) {
				return name
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Fatalf("no new member served within %s", limit)
	return ""
}

// launchTime is how long the launch command of instance id ran, from its activity.
func launchTime(acts []asgActivity, id string) time.Duration {
	for _, a := range acts {
		if strings.Contains(a.Description, "Launching a new instance: "+id) && !a.End.IsZero() {
			return a.End.Sub(a.Start)
		}
	}
	return 0
}

func BenchmarkAutoscaleBreachToServing(b *testing.B) {
	s := newASGScenario(b, "", asgBenchGroup)
	n := max(3, *samples/30)
	var total, net []time.Duration
	for range b.N {
		for range n {
			var one []string
			waitFor(b, 60*time.Second, "1 instance in service", func() bool {
				g, _ := s.group()
				one = g.exactlyInService(1)
				return one != nil && len(s.running()) == 1
			})
			// The breach: over 20 req/s from now on (the trigger needs one 1 s period of it, and
			// haproxy's stats are sampled every 2 s).
			start := time.Now()
			load := startASGLoad(s.front, 40, 60*time.Second)
			id := firstServedBy(b, s, one, 60*time.Second)
			took := time.Since(start)
			load.end()
			_, acts := s.group()
			lt := launchTime(acts, id)
			total = append(total, took)
			net = append(net, took-lt)
		}
	}
	slices.Sort(total)
	slices.Sort(net)
	figure(b, "Auto Scaling: load over the upper threshold → new member serving", fmt.Sprintf("p50 / max (%d samples)", len(total)),
		ms(percentile(total, 0.5))+" / "+ms(total[len(total)-1]), "", false)
	figure(b, "", "the same minus the launch command's time (trigger: 1 s period and breach; stats sampled every 2 s)", ms(percentile(net, 0.5))+" / "+ms(net[len(net)-1]), "", false)
}

func BenchmarkAutoscaleDeadToReplaced(b *testing.B) {
	s := newASGScenario(b, "", strings.Replace(strings.Split(asgBenchGroup, "    triggers:")[0], "max_size: 2", "max_size: 1", 1))
	n := max(3, *samples/30)
	var total, net []time.Duration
	for range b.N {
		for range n {
			var one []string
			waitFor(b, 60*time.Second, "1 instance in service", func() bool {
				g, _ := s.group()
				one = g.exactlyInService(1)
				return one != nil
			})
			start := time.Now()
			syscall.Kill(s.pids()[one[0]], syscall.SIGKILL)
			id := firstServedBy(b, s, one, 60*time.Second)
			took := time.Since(start)
			_, acts := s.group()
			total = append(total, took)
			net = append(net, took-launchTime(acts, id))
		}
	}
	slices.Sort(total)
	slices.Sort(net)
	figure(b, "Auto Scaling: member killed (SIGKILL) → replacement serving", fmt.Sprintf("p50 / max (%d samples)", len(total)),
		ms(percentile(total, 0.5))+" / "+ms(total[len(total)-1]), "", false)
	figure(b, "", "the same minus the launch command's time (haproxy check inter 5 s, fall 2)", ms(percentile(net, 0.5))+" / "+ms(net[len(net)-1]), "", false)
}
