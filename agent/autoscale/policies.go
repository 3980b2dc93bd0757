package autoscale

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"clb/agent/config"
)

// Scaling policies and alarms: the 2011 Auto Scaling API's replacement of triggers. A policy
// changes a group's desired capacity when executed (by an alarm in state ALARM, or by a
// caller); an alarm measures one group metric (dimension AutoScalingGroupName) and runs its
// actions (policy ARNs or names) at every check while it is in ALARM and the group is out of
// its cooldown.

// Adjustment types.
const (
	ChangeInCapacity        = "ChangeInCapacity"
	ExactCapacity           = "ExactCapacity"
	PercentChangeInCapacity = "PercentChangeInCapacity"
)

// Policy is a simple scaling policy.
type Policy struct {
	Name              string `json:"name"`
	Group             string `json:"group"`
	ARN               string `json:"arn"`
	AdjustmentType    string `json:"adjustment_type"`
	ScalingAdjustment int    `json:"scaling_adjustment"`
	// MinAdjustmentMagnitude is the least change of a percent adjustment.
	MinAdjustmentMagnitude int `json:"min_adjustment_magnitude,omitempty"`
	// Cooldown overrides the group's (nil: the group's).
	Cooldown *time.Duration `json:"cooldown,omitempty"`
}

// apply returns the desired capacity the policy makes of cur (not clamped).
func (p Policy) apply(cur int) int {
	switch p.AdjustmentType {
	case ExactCapacity:
		return p.ScalingAdjustment
	case PercentChangeInCapacity:
		d := cur * p.ScalingAdjustment / 100
		if d == 0 && p.ScalingAdjustment != 0 {
			// AWS: a percent change that rounds to 0 changes the capacity by 1.
			d = 1
			if p.ScalingAdjustment < 0 {
				d = -1
			}
		}
		if m := p.MinAdjustmentMagnitude; m > 0 && abs(d) < m {
			d = m * sign(d)
		}
		return cur + d
	}
	return cur + p.ScalingAdjustment
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	if v < 0 {
		return -1
	}
	return 1
}

// Alarm states.
const (
	AlarmOK               = "OK"
	AlarmAlarm            = "ALARM"
	AlarmInsufficientData = "INSUFFICIENT_DATA"
)

// Alarm is a CloudWatch metric alarm on a group metric.
type Alarm struct {
	Name              string        `json:"name"`
	Description       string        `json:"description,omitempty"`
	Group             string        `json:"group"`
	Namespace         string        `json:"namespace,omitempty"`
	Metric            string        `json:"metric"`
	Statistic         string        `json:"statistic"`
	Period            time.Duration `json:"period"`
	EvaluationPeriods int           `json:"evaluation_periods"`
	Threshold         float64       `json:"threshold"`
	// Comparison is GreaterThanThreshold, GreaterThanOrEqualToThreshold, LessThanThreshold
	// or LessThanOrEqualToThreshold.
	Comparison string `json:"comparison"`
	Unit       string `json:"unit,omitempty"`
	// Actions are run in ALARM: policy ARNs or names of the alarm's group.
	Actions   []string `json:"actions,omitempty"`
	OKActions []string `json:"ok_actions,omitempty"`
	// State and why, since when.
	State        string    `json:"state"`
	StateReason  string    `json:"state_reason"`
	StateUpdated time.Time `json:"state_updated"`
	Updated      time.Time `json:"updated"`
}

// Comparisons of alarms.
var Comparisons = []string{"GreaterThanThreshold", "GreaterThanOrEqualToThreshold", "LessThanThreshold", "LessThanOrEqualToThreshold"}

func (a *Alarm) breaches(v float64) bool {
	switch a.Comparison {
	case "GreaterThanThreshold":
		return v > a.Threshold
	case "GreaterThanOrEqualToThreshold":
		return v >= a.Threshold
	case "LessThanThreshold":
		return v < a.Threshold
	case "LessThanOrEqualToThreshold":
		return v <= a.Threshold
	}
	return false
}

// ErrNotFound: no such group, policy, instance or alarm.
var ErrNotFound = errors.New("not found")

// ErrInvalid: the request is not valid (min/max crossed, unknown metric, ...).
var ErrInvalid = errors.New("invalid")

// PolicyARN is the ARN of a group's policy (opaque to clients).
func PolicyARN(group, name string) string {
	return "arn:aws:autoscaling:clb:000000000000:scalingPolicy:" + newID() + ":autoScalingGroupName/" + group + ":policyName/" + name
}

// PutPolicy creates or replaces a policy of a group (the ARN of a replaced one is kept).
func (c *Controller) PutPolicy(p Policy) (Policy, error) {
	if err := c.Load(); err != nil {
		return p, err
	}
	cfg := c.o.Config()
	g, ok := cfg.Groups[p.Group]
	if !ok {
		return p, fmt.Errorf("group %q: %w", p.Group, ErrNotFound)
	}
	switch p.AdjustmentType {
	case ChangeInCapacity, ExactCapacity, PercentChangeInCapacity:
	default:
		return p, fmt.Errorf("%w: adjustment type %q: want ChangeInCapacity, ExactCapacity or PercentChangeInCapacity", ErrInvalid, p.AdjustmentType)
	}
	if p.Name == "" || len(p.Name) > 255 {
		return p, fmt.Errorf("%w: policy name: want 1-255 characters", ErrInvalid)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	gs := c.groupLocked(p.Group, g, c.o.Now())
	if gs.Policies == nil {
		gs.Policies = map[string]Policy{}
	}
	if old, ok := gs.Policies[p.Name]; ok {
		p.ARN = old.ARN
	} else {
		p.ARN = PolicyARN(p.Group, p.Name)
	}
	gs.Policies[p.Name] = p
	return p, c.saveLocked()
}

// Policies lists the policies of a group ("" for all), by group then name.
func (c *Controller) Policies(group string) []Policy {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Policy
	for _, gname := range slices.Sorted(maps.Keys(c.st.Groups)) {
		if group != "" && gname != group {
			continue
		}
		gs := c.st.Groups[gname]
		for _, name := range slices.Sorted(maps.Keys(gs.Policies)) {
			out = append(out, gs.Policies[name])
		}
	}
	return out
}

// DeletePolicy removes a policy (by name or ARN).
func (c *Controller) DeletePolicy(group, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	gname, p, ok := c.findPolicyLocked(group, name)
	if !ok {
		return fmt.Errorf("policy %q: %w", name, ErrNotFound)
	}
	delete(c.st.Groups[gname].Policies, p.Name)
	return c.saveLocked()
}

func (c *Controller) findPolicyLocked(group, nameOrARN string) (string, Policy, bool) {
	for gname, gs := range c.st.Groups {
		if group != "" && gname != group {
			continue
		}
		for _, p := range gs.Policies {
			if p.Name == nameOrARN || p.ARN == nameOrARN {
				return gname, p, true
			}
		}
	}
	return "", Policy{}, false
}

// ExecutePolicy runs a policy now; honorCooldown refuses it (ErrCooldown) while the group is
// in its cooldown.
func (c *Controller) ExecutePolicy(group, nameOrARN string, honorCooldown bool) error {
	cfg := c.o.Config()
	c.mu.Lock()
	defer c.mu.Unlock()
	gname, p, ok := c.findPolicyLocked(group, nameOrARN)
	if !ok {
		return fmt.Errorf("policy %q: %w", nameOrARN, ErrNotFound)
	}
	g, ok := cfg.Groups[gname]
	if !ok {
		return fmt.Errorf("group %q: %w", gname, ErrNotFound)
	}
	gs := c.groupLocked(gname, g, c.o.Now())
	now := c.o.Now()
	if honorCooldown && !gs.LastScale.IsZero() && now.Sub(gs.LastScale) < p.cooldown(g) {
		return ErrCooldown
	}
	c.adjustLocked(cfg, gname, g, gs, p, fmt.Sprintf("At %s policy %s was executed", awsTime(now), p.Name), now)
	c.Kick()
	return c.saveLocked()
}

// ErrCooldown: a scaling activity is refused while the group is in its cooldown.
var ErrCooldown = errors.New("the group is in its cooldown")

func (p Policy) cooldown(g config.Group) time.Duration {
	if p.Cooldown != nil {
		return *p.Cooldown
	}
	return g.Cooldown
}

// PutAlarm creates or replaces an alarm; its dimension names the group.
func (c *Controller) PutAlarm(a Alarm) error {
	if err := c.Load(); err != nil {
		return err
	}
	cfg := c.o.Config()
	if _, ok := cfg.Groups[a.Group]; !ok {
		return fmt.Errorf("%w: alarm %s: dimension AutoScalingGroupName %q names no group", ErrInvalid, a.Name, a.Group)
	}
	if !slices.Contains(config.Metrics, a.Metric) {
		return fmt.Errorf("%w: metric %q: clbd measures %v", ErrInvalid, a.Metric, config.Metrics)
	}
	if !slices.Contains(config.Statistics, a.Statistic) {
		return fmt.Errorf("%w: statistic %q", ErrInvalid, a.Statistic)
	}
	if !slices.Contains(Comparisons, a.Comparison) {
		return fmt.Errorf("%w: comparison operator %q", ErrInvalid, a.Comparison)
	}
	if a.Period <= 0 || a.EvaluationPeriods < 1 || a.EvaluationPeriods > 1000 {
		return fmt.Errorf("%w: period and evaluation periods must be positive", ErrInvalid)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, act := range a.Actions {
		if _, _, ok := c.findPolicyLocked(a.Group, act); !ok {
			return fmt.Errorf("%w: alarm action %q is no policy of group %s", ErrInvalid, act, a.Group)
		}
	}
	now := c.o.Now()
	a.Updated = now
	if old, ok := c.st.Alarms[a.Name]; ok && old.Metric == a.Metric && old.Group == a.Group {
		a.State, a.StateReason, a.StateUpdated = old.State, old.StateReason, old.StateUpdated
	} else {
		a.State, a.StateReason, a.StateUpdated = AlarmInsufficientData, "Unchecked: Initial alarm creation", now
		delete(c.alarmSeries, a.Name)
	}
	if c.st.Alarms == nil {
		c.st.Alarms = map[string]*Alarm{}
	}
	c.st.Alarms[a.Name] = &a
	return c.saveLocked()
}

// Alarms lists alarms (names empty: all), sorted by name.
func (c *Controller) Alarms(names ...string) []Alarm {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Alarm
	for _, name := range slices.Sorted(maps.Keys(c.st.Alarms)) {
		if len(names) > 0 && !slices.Contains(names, name) {
			continue
		}
		out = append(out, *c.st.Alarms[name])
	}
	return out
}

// DeleteAlarms removes alarms; unknown names are an error (ErrNotFound) and nothing is removed.
func (c *Controller) DeleteAlarms(names ...string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range names {
		if _, ok := c.st.Alarms[n]; !ok {
			return fmt.Errorf("alarm %q: %w", n, ErrNotFound)
		}
	}
	for _, n := range names {
		delete(c.st.Alarms, n)
		delete(c.alarmSeries, n)
	}
	return c.saveLocked()
}

func (c *Controller) groupAlarmsLocked(group string) []*Alarm {
	var out []*Alarm
	for _, name := range slices.Sorted(maps.Keys(c.st.Alarms)) {
		if a := c.st.Alarms[name]; a.Group == group {
			out = append(out, a)
		}
	}
	return out
}

// evaluateAlarmsLocked samples the group's alarms, sets their states and runs the actions of
// those in ALARM; it reports whether anything changed.
func (c *Controller) evaluateAlarmsLocked(cfg *config.Config, name string, g config.Group, gs *GroupState, m map[string]float64, now time.Time) bool {
	changed := false
	for _, a := range c.groupAlarmsLocked(name) {
		s := c.alarmSeries[a.Name]
		if s == nil {
			s = &series{}
			c.alarmSeries[a.Name] = s
		}
		state, reason := AlarmInsufficientData, "no data"
		if v, ok := m[a.Metric]; ok {
			s.add(now, v, time.Duration(a.EvaluationPeriods+1)*a.Period)
			if vals, ok := s.periods(now, a.Period, a.EvaluationPeriods, a.Statistic); ok {
				state, reason = AlarmOK, fmt.Sprintf("Threshold Crossed: %d datapoints were not all beyond the threshold (%g)", len(vals), a.Threshold)
				all := true
				for _, v := range vals {
					all = all && a.breaches(v)
				}
				if all {
					state, reason = AlarmAlarm, fmt.Sprintf("Threshold Crossed: %d datapoints %v were %s the threshold (%g)", len(vals), vals, a.Comparison, a.Threshold)
				}
			} else {
				state, reason = a.State, a.StateReason
				if state == "" {
					state = AlarmInsufficientData
				}
			}
		}
		if state != a.State {
			a.State, a.StateReason, a.StateUpdated = state, reason, now
			changed = true
		}
		if a.State != AlarmAlarm {
			continue
		}
		for _, act := range a.Actions {
			_, p, ok := c.findPolicyLocked(name, act)
			if !ok {
				continue
			}
			if !gs.LastScale.IsZero() && now.Sub(gs.LastScale) < p.cooldown(g) {
				continue
			}
			if c.adjustLocked(cfg, name, g, gs, p, fmt.Sprintf("At %s a monitor alarm %s in state ALARM triggered policy %s", awsTime(now), a.Name, p.Name), now) {
				changed = true
			}
		}
	}
	return changed
}
