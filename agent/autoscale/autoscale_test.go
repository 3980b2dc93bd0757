package autoscale

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"clb/agent/config"
	"clb/agent/defs"
	"clb/internal/model"
	"clb/internal/stats"
	"clb/internal/store"
)

func TestPolicyApply(t *testing.T) {
	for _, c := range []struct {
		p         Policy
		cur, want int
	}{
		{Policy{AdjustmentType: ChangeInCapacity, ScalingAdjustment: 10}, 4, 14},
		{Policy{AdjustmentType: ChangeInCapacity, ScalingAdjustment: -5}, 4, -1},
		{Policy{AdjustmentType: ExactCapacity, ScalingAdjustment: 3}, 7, 3},
		{Policy{AdjustmentType: PercentChangeInCapacity, ScalingAdjustment: 50}, 4, 6},
		{Policy{AdjustmentType: PercentChangeInCapacity, ScalingAdjustment: 10}, 4, 5},  // rounds to 0: 1
		{Policy{AdjustmentType: PercentChangeInCapacity, ScalingAdjustment: -25}, 2, 1}, // rounds to 0: -1
		{Policy{AdjustmentType: PercentChangeInCapacity, ScalingAdjustment: 10, MinAdjustmentMagnitude: 3}, 10, 13},
	} {
		if got := c.p.apply(c.cur); got != c.want {
			t.Errorf("%+v.apply(%d) = %d, want %d", c.p, c.cur, got, c.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	s := config.AutoscaleSettings{BackoffMin: time.Second, BackoffMax: 10 * time.Second}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 50: 10 * time.Second} {
		if got := backoff(s, n); got != want {
			t.Errorf("backoff after %d failures = %s, want %s", n, got, want)
		}
	}
}

func TestSeriesPeriods(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var s series
	for i := range 30 { // one sample every 100 ms for 3 s: 10, 11, ... 39
		s.add(t0.Add(time.Duration(i)*100*time.Millisecond), float64(10+i), 10*time.Second)
	}
	now := t0.Add(2900 * time.Millisecond)
	vals, ok := s.periods(now, time.Second, 2, "Average")
	if !ok || len(vals) != 2 || vals[0] != 34.5 || vals[1] != 24.5 {
		t.Errorf("periods = %v %v, want [34.5 24.5] true", vals, ok)
	}
	if !breached(vals, 20, true) || breached(vals, 30, true) || !breached(vals, 40, false) {
		t.Errorf("breached(%v) wrong", vals)
	}
	// Not enough history for 4 periods of 1 s: no decision.
	if _, ok := s.periods(now, time.Second, 4, "Average"); ok {
		t.Error("4 periods over 3 s of samples: want not enough data")
	}
	if got := statistic("Maximum", []float64{1, 5, 2}); got != 5 {
		t.Errorf("Maximum = %v", got)
	}
	if got := statistic("Sum", []float64{1, 5, 2}); got != 8 {
		t.Errorf("Sum = %v", got)
	}
}

// fakeCore is the core at the controller's own interfaces: a membership, health and drain
// the test sets.
type fakeCore struct {
	mu      sync.Mutex
	members map[string][]model.Member
	health  map[string]map[string]string
	drained []string
}

func (f *fakeCore) Snapshot() store.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]model.Member{}
	for k, v := range f.members {
		out[k] = append([]model.Member(nil), v...)
	}
	return store.Snapshot{Members: out}
}
func (f *fakeCore) Health() map[string]map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.health
}
func (f *fakeCore) Unregister(_ context.Context, service, member string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drained = append(f.drained, service+"/"+member)
	return nil
}
func (f *fakeCore) Instances() map[string]defs.Instance { return nil }

type noStats struct{}

func (noStats) Snapshot(time.Time) map[string]stats.ServiceStats { return nil }

func testConfig(t *testing.T, launch string, g config.Group) *config.Config {
	t.Helper()
	cfg := config.Defaults()
	cfg.StateDir = t.TempDir()
	cfg.Services = map[string]config.Service{"web": {Listeners: []config.Listener{{Port: 8000}}}}
	cfg.Launchers = map[string]config.Launcher{"default": {Launch: launch, Terminate: "true"}}
	cfg.LaunchConfigurations = map[string]config.LaunchConfiguration{"lc": {}}
	cfg.Groups = map[string]config.Group{"g": g}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

// settle runs checks until no operation runs (launch and terminate commands are real).
func settle(c *Controller) {
	for range 5 {
		c.Tick()
		c.wg.Wait()
	}
}

// TestSpreadAndScaleIn: launches go to the zone with fewest instances; scale-in takes from
// the zone with most, oldest first, draining from every service before terminating.
func TestSpreadAndScaleIn(t *testing.T) {
	three := 5
	cfg := testConfig(t, `sh -c 'echo "id-$CLB_INSTANCE_NAME"'`, config.Group{LaunchConfiguration: "lc", MinSize: 0, MaxSize: 6,
		DesiredCapacity: &three, Zones: []string{"a", "b"}, Services: []string{"web"}})
	core := &fakeCore{}
	now := time.Unix(5000, 0)
	c := New(Options{Config: func() *config.Config { return cfg }, StatePath: filepath.Join(cfg.StateDir, "as.json"),
		Members: core, Health: core, Drainer: core, Instances: core, Stats: noStats{}, Now: func() time.Time { now = now.Add(time.Second); return now }})
	settle(c)
	v, _ := c.Group("g")
	zones := map[string]int{}
	for _, in := range v.Instances {
		zones[in.Zone]++
		if !strings.HasPrefix(in.ID, "id-g-") {
			t.Errorf("instance id %q: want the id the launch command printed", in.ID)
		}
		if in.State != Pending {
			t.Errorf("instance %s is %s, want Pending (not registered)", in.ID, in.State)
		}
	}
	if zones["a"] != 3 || zones["b"] != 2 {
		t.Fatalf("zones = %v, want a:3 b:2", zones)
	}
	oldestA := ""
	for _, in := range v.Instances { // sorted by launch time
		if in.Zone == "a" {
			oldestA = in.ID
			break
		}
	}
	if err := c.SetDesiredCapacity("g", 4, false, ""); err != nil {
		t.Fatal(err)
	}
	settle(c)
	v, _ = c.Group("g")
	if len(v.Instances) != 4 {
		t.Fatalf("%d instances after scale-in, want 4", len(v.Instances))
	}
	for _, in := range v.Instances {
		if in.ID == oldestA {
			t.Errorf("oldest instance of zone a %s survived the scale-in", oldestA)
		}
	}
	if len(core.drained) != 2 || !strings.Contains(strings.Join(core.drained, " "), "web/"+oldestA) {
		t.Errorf("drained %v, want web/%s by id and name", core.drained, oldestA)
	}
	if err := c.SetDesiredCapacity("g", 7, false, ""); err == nil {
		t.Error("desired 7 above max 6 accepted")
	}
}

// TestReplaceUnhealthy: an ELB group replaces an instance haproxy reports down once it is
// past the grace period, and one that never registered within it.
func TestReplaceUnhealthy(t *testing.T) {
	two := 2
	cfg := testConfig(t, `sh -c 'echo $CLB_INSTANCE_NAME'`, config.Group{LaunchConfiguration: "lc", MinSize: 2, MaxSize: 2,
		DesiredCapacity: &two, Services: []string{"web"}, HealthCheckType: "ELB", HealthCheckGracePeriod: 10 * time.Second})
	core := &fakeCore{}
	now := time.Unix(5000, 0)
	clock := func() time.Time { return now }
	c := New(Options{Config: func() *config.Config { return cfg }, StatePath: filepath.Join(cfg.StateDir, "as.json"),
		Members: core, Health: core, Drainer: core, Instances: core, Stats: noStats{}, Now: clock})
	settle(c)
	v, _ := c.Group("g")
	a, b := v.Instances[0].ID, v.Instances[1].ID
	// a registers and is up; b never registers.
	core.mu.Lock()
	core.members = map[string][]model.Member{"web": {{Name: a}}}
	core.health = map[string]map[string]string{"web": {a: "up"}}
	core.mu.Unlock()
	settle(c)
	if v, _ := c.Group("g"); v.InService != 1 {
		t.Fatalf("in service = %d, want 1", v.InService)
	}
	now = now.Add(11 * time.Second) // past the grace period
	settle(c)
	v, _ = c.Group("g")
	ids := map[string]bool{}
	for _, in := range v.Instances {
		ids[in.ID] = true
	}
	if !ids[a] || ids[b] || len(ids) != 2 {
		t.Fatalf("instances %v: want %s kept, %s replaced", ids, a, b)
	}
	// a goes down: replaced too.
	core.mu.Lock()
	core.health = map[string]map[string]string{"web": {a: "down"}}
	core.mu.Unlock()
	settle(c)
	v, _ = c.Group("g")
	for _, in := range v.Instances {
		if in.ID == a {
			t.Fatalf("instance %s reported down was not replaced", a)
		}
	}
	if len(v.Instances) != 2 {
		t.Fatalf("%d instances, want 2", len(v.Instances))
	}
	acts := c.Activities("g")
	n := 0
	for _, act := range acts {
		if strings.Contains(act.Cause, "health check") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d health check activities, want 2: %+v", n, acts)
	}
}

type fakeCPU map[string]CPUReading

func (f fakeCPU) CPU() map[string]CPUReading { return f }

// TestCPUTrigger: the tutorial's trigger on the CPU use members report: above 80% for the
// breach duration adds 10 (clamped to max), below 40% removes 5 (clamped to min), at most
// once per cooldown.
func TestCPUTrigger(t *testing.T) {
	upper, lower := 80.0, 40.0
	two := 2
	cfg := testConfig(t, `sh -c 'echo $CLB_INSTANCE_NAME'`, config.Group{LaunchConfiguration: "lc", MinSize: 1, MaxSize: 8,
		DesiredCapacity: &two, Cooldown: 5 * time.Second, Triggers: []config.Trigger{{Name: "cpu", Metric: "CPUUtilization",
			Period: time.Second, BreachDuration: 3 * time.Second, UpperThreshold: &upper, LowerThreshold: &lower,
			UpperIncrement: "10", LowerIncrement: "-5"}}})
	core := &fakeCore{}
	now := time.Unix(5000, 0)
	cpu := fakeCPU{}
	c := New(Options{Config: func() *config.Config { return cfg }, StatePath: filepath.Join(cfg.StateDir, "as.json"),
		Members: core, Health: core, Drainer: core, Instances: core, Stats: noStats{}, CPU: cpu, Now: func() time.Time { return now }})
	settle(c)
	v, _ := c.Group("g")
	report := func(pct float64) {
		for _, in := range v.Instances {
			cpu[in.ID] = CPUReading{Percent: pct, At: now}
		}
	}
	step := func(pct float64, d time.Duration) {
		for end := now.Add(d); now.Before(end); now = now.Add(250 * time.Millisecond) {
			report(pct)
			c.Tick()
			c.wg.Wait()
		}
	}
	step(90, 2*time.Second) // shorter than the breach duration: nothing
	if v, _ := c.Group("g"); v.Desired != 2 {
		t.Fatalf("desired = %d after 2 s above 80%%, want 2 (breach duration 3 s)", v.Desired)
	}
	step(90, 1500*time.Millisecond)
	if v, _ := c.Group("g"); v.Desired != 8 {
		t.Fatalf("desired = %d after 3.5 s above 80%%, want 8 (2 + 10 clamped to max)", v.Desired)
	}
	step(10, 4*time.Second) // below 40% for 4 s, but within the 5 s cooldown of the scale-out
	if v, _ := c.Group("g"); v.Desired != 8 {
		t.Fatalf("desired = %d within the cooldown, want 8", v.Desired)
	}
	step(10, 2*time.Second)
	if v, _ := c.Group("g"); v.Desired != 3 {
		t.Fatalf("desired = %d after the cooldown below 40%%, want 3 (8 - 5)", v.Desired)
	}
	acts := c.Activities("g")
	if !strings.Contains(acts[len(acts)-1].Cause+fmt.Sprint(acts), "trigger cpu breached: CPUUtilization Average 90 > 80") {
		t.Errorf("no trigger activity: %+v", acts)
	}
}
