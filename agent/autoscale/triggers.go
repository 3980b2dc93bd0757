package autoscale

import (
	"fmt"
	"math"
	"time"

	"clb/agent/config"
)

// Triggers (the 2009 Auto Scaling trigger, config.Trigger) and alarms (CloudWatch's, with
// policies as their actions: policies.go) measure the group's own metrics, computed at every
// check from haproxy's stats history, the health the controller sees and the CPU use members
// report. A trigger keeps one sample per check for its breach duration; it breaches when
// every period of the breach duration has samples and the statistic of each is beyond the
// threshold. A breach changes the desired capacity by the increment (clamped to [min, max])
// unless the group scaled less than its cooldown ago.

// series is one measure's samples, oldest first, for the last keep.
type series struct {
	t []time.Time
	v []float64
}

func (s *series) add(t time.Time, v float64, keep time.Duration) {
	s.t, s.v = append(s.t, t), append(s.v, v)
	cut := 0
	for cut < len(s.t) && t.Sub(s.t[cut]) > keep {
		cut++
	}
	s.t, s.v = s.t[cut:], s.v[cut:]
}

// periods returns the statistic of each of the n periods ending at now, newest first; ok is
// false when a period has no sample (not enough data yet).
func (s *series) periods(now time.Time, period time.Duration, n int, stat string) (vals []float64, ok bool) {
	for k := range n {
		hi, lo := now.Add(-time.Duration(k)*period), now.Add(-time.Duration(k+1)*period)
		var in []float64
		for i, t := range s.t {
			if t.After(lo) && !t.After(hi) {
				in = append(in, s.v[i])
			}
		}
		if len(in) == 0 {
			return nil, false
		}
		vals = append(vals, statistic(stat, in))
	}
	// The samples must span the whole duration (less a tenth, for the sampling's jitter): a
	// breach is n periods of breaching values, not one sample in the oldest period.
	if len(s.t) == 0 || now.Sub(s.t[0]) < time.Duration(n)*period*9/10 {
		return nil, false
	}
	return vals, true
}

func statistic(stat string, v []float64) float64 {
	switch stat {
	case "Sum":
		sum := 0.0
		for _, x := range v {
			sum += x
		}
		return sum
	case "Minimum":
		m := math.Inf(1)
		for _, x := range v {
			m = math.Min(m, x)
		}
		return m
	case "Maximum":
		m := math.Inf(-1)
		for _, x := range v {
			m = math.Max(m, x)
		}
		return m
	case "SampleCount":
		return float64(len(v))
	}
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

// metricsLocked computes every group metric now.
func (c *Controller) metricsLocked(g config.Group, gs *GroupState, obs observation, now time.Time) map[string]float64 {
	ids := map[string]bool{}
	inService, healthy := 0, 0
	for _, in := range gs.Instances {
		if in.State == Terminating {
			continue
		}
		ids[in.id()], ids[in.Name] = true, true
		if in.State == InService {
			inService++
		}
		if in.Healthy {
			healthy++
		}
	}
	var rate, queue, sessions, respW, resp float64
	st := c.o.Stats.Snapshot(now.Add(-30 * time.Second))
	for _, svc := range g.Services {
		for name, ms := range st[svc].Members {
			if !ids[name] || len(ms.Samples) == 0 {
				continue
			}
			last := ms.Samples[len(ms.Samples)-1]
			rate += last.ReqRate
			queue += float64(last.Queue)
			sessions += float64(last.Sessions)
			resp += last.RespMS * math.Max(last.ReqRate, 1e-9)
			respW += math.Max(last.ReqRate, 1e-9)
		}
	}
	m := map[string]float64{"RequestRate": rate, "QueueLength": queue, "HealthyHostCount": float64(healthy)}
	if inService > 0 {
		m["RequestRatePerInstance"] = rate / float64(inService)
		m["SessionsPerInstance"] = sessions / float64(inService)
	}
	if respW > 0 {
		m["Latency"] = resp / respW
	}
	if c.o.CPU != nil {
		sum, n := 0.0, 0
		for name, r := range c.o.CPU.CPU() {
			if ids[name] && now.Sub(r.At) < 2*time.Minute {
				sum += r.Percent
				n++
			}
		}
		if n > 0 {
			m["CPUUtilization"] = sum / float64(n)
		}
	}
	return m
}

// evaluateTriggersLocked samples and evaluates the group's triggers and alarms; it reports
// whether the desired capacity changed.
func (c *Controller) evaluateTriggersLocked(cfg *config.Config, name string, g config.Group, gs *GroupState, obs observation, now time.Time) bool {
	alarms := c.groupAlarmsLocked(name)
	if len(g.Triggers) == 0 && len(alarms) == 0 {
		return false
	}
	m := c.metricsLocked(g, gs, obs, now)
	if c.triggers[name] == nil {
		c.triggers[name] = map[string]*series{}
	}
	changed := false
	for i, t := range g.Triggers {
		key := fmt.Sprintf("%d/%s/%s/%s/%s", i, t.Name, t.Metric, t.Statistic, t.Period)
		s := c.triggers[name][key]
		if s == nil {
			s = &series{}
			c.triggers[name][key] = s
		}
		v, have := m[t.Metric]
		if !have {
			continue // no data (no CPU reports yet, no instance in service): no sample
		}
		s.add(now, v, t.BreachDuration+t.Period)
		n := int(t.BreachDuration / t.Period)
		vals, ok := s.periods(now, t.Period, n, t.Statistic)
		if !ok {
			continue
		}
		for _, side := range []struct {
			th    *float64
			inc   string
			above bool
		}{{t.UpperThreshold, t.UpperIncrement, true}, {t.LowerThreshold, t.LowerIncrement, false}} {
			if side.th == nil || !breached(vals, *side.th, side.above) {
				continue
			}
			if !gs.LastScale.IsZero() && now.Sub(gs.LastScale) < g.Cooldown {
				continue
			}
			inc, pct, _ := config.ParseIncrement(side.inc)
			adj := Policy{AdjustmentType: ChangeInCapacity, ScalingAdjustment: inc}
			if pct {
				adj.AdjustmentType = PercentChangeInCapacity
			}
			op := ">"
			if !side.above {
				op = "<"
			}
			cause := fmt.Sprintf("At %s trigger %s breached: %s %s %.4g %s %g for %s", awsTime(now), t.Name, t.Metric, t.Statistic, vals[0], op, *side.th, t.BreachDuration)
			if c.adjustLocked(cfg, name, g, gs, adj, cause, now) {
				changed = true
			}
		}
	}
	if c.evaluateAlarmsLocked(cfg, name, g, gs, m, now) {
		changed = true
	}
	return changed
}

func breached(vals []float64, th float64, above bool) bool {
	for _, v := range vals {
		if above && !(v > th) || !above && !(v < th) {
			return false
		}
	}
	return true
}

// adjustLocked changes the desired capacity as a policy says; it reports whether it changed.
// The change is an activity of its own (the launches and terminations follow as theirs).
func (c *Controller) adjustLocked(cfg *config.Config, name string, g config.Group, gs *GroupState, p Policy, cause string, now time.Time) bool {
	next := p.apply(gs.Desired)
	next = clamp(next, g.MinSize, g.MaxSize)
	gs.LastScale = now
	if next == gs.Desired {
		return false
	}
	c.log.Info("scaling", "group", name, "from", gs.Desired, "to", next, "cause", cause)
	id := c.addActivityLocked(cfg, name, gs, fmt.Sprintf("%s, changing the desired capacity from %d to %d.", cause, gs.Desired, next),
		fmt.Sprintf("Setting the desired capacity from %d to %d", gs.Desired, next), now)
	c.endActivityLocked(gs, id, StatusSuccessful, "", now)
	gs.Desired = next
	return true
}
