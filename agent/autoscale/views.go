package autoscale

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clb/agent/config"
)

// GroupView is a group as the APIs show it: its settings, current desired capacity and
// instances.
type GroupView struct {
	Name string `json:"name"`
	config.Group
	Desired   int            `json:"desired_capacity_now"`
	Instances []InstanceView `json:"instances"`
	// InService counts the instances in service; LaunchFailures the launches that failed in
	// a row (the next waits NextLaunch).
	InService      int       `json:"in_service"`
	LaunchFailures int       `json:"launch_failures"`
	NextLaunch     time.Time `json:"next_launch,omitzero"`
	Created        time.Time `json:"created"`
}

// InstanceView is one instance of a group.
type InstanceView struct {
	ID                  string    `json:"instance_id"`
	Name                string    `json:"name"`
	Zone                string    `json:"zone"`
	State               string    `json:"lifecycle_state"`
	Healthy             bool      `json:"healthy"`
	LaunchConfiguration string    `json:"launch_configuration"`
	Launched            time.Time `json:"launched"`
}

// Groups returns the configured groups, sorted by name.
func (c *Controller) Groups() []GroupView {
	cfg := c.o.Config()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []GroupView
	for _, name := range slices.Sorted(maps.Keys(cfg.Groups)) {
		out = append(out, c.viewLocked(name, cfg.Groups[name]))
	}
	return out
}

// Group returns one group.
func (c *Controller) Group(name string) (GroupView, error) {
	cfg := c.o.Config()
	g, ok := cfg.Groups[name]
	if !ok {
		return GroupView{}, fmt.Errorf("group %q: %w", name, ErrNotFound)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.viewLocked(name, g), nil
}

func (c *Controller) viewLocked(name string, g config.Group) GroupView {
	v := GroupView{Name: name, Group: g, Desired: g.Desired(), Instances: []InstanceView{}}
	gs := c.st.Groups[name]
	if gs == nil {
		return v
	}
	v.Desired, v.LaunchFailures, v.NextLaunch, v.Created = clamp(gs.Desired, g.MinSize, g.MaxSize), gs.LaunchFailures, gs.NextLaunch, gs.Created
	for _, in := range gs.Instances {
		v.Instances = append(v.Instances, InstanceView{ID: in.id(), Name: in.Name, Zone: in.Zone, State: in.State, Healthy: in.Healthy,
			LaunchConfiguration: in.LaunchConfiguration, Launched: in.Launched})
		if in.State == InService {
			v.InService++
		}
	}
	sort.Slice(v.Instances, func(i, j int) bool {
		return v.Instances[i].Launched.Before(v.Instances[j].Launched) || v.Instances[i].Launched.Equal(v.Instances[j].Launched) && v.Instances[i].Name < v.Instances[j].Name
	})
	return v
}

// Activities returns a group's activities ("" for every group), newest first.
func (c *Controller) Activities(group string) []Activity {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Activity
	for name, gs := range c.st.Groups {
		if group == "" || name == group {
			out = append(out, gs.Activities...)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.After(out[j].Start) })
	return out
}

// SetDesiredCapacity sets a group's desired capacity, within [min, max] (else ErrInvalid);
// honorCooldown refuses it during the cooldown (ErrCooldown).
func (c *Controller) SetDesiredCapacity(group string, n int, honorCooldown bool, cause string) error {
	if err := c.Load(); err != nil {
		return err
	}
	cfg := c.o.Config()
	g, ok := cfg.Groups[group]
	if !ok {
		return fmt.Errorf("group %q: %w", group, ErrNotFound)
	}
	if n < g.MinSize || n > g.MaxSize {
		return fmt.Errorf("%w: New SetDesiredCapacity value %d is below min value %d or above max value %d for the AutoScalingGroup.", ErrInvalid, n, g.MinSize, g.MaxSize)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.o.Now()
	gs := c.groupLocked(group, g, now)
	if honorCooldown && !gs.LastScale.IsZero() && now.Sub(gs.LastScale) < g.Cooldown {
		return ErrCooldown
	}
	if cause == "" {
		cause = fmt.Sprintf("At %s a user request explicitly set group desired capacity changing the desired capacity from %d to %d.", awsTime(now), gs.Desired, n)
	}
	if n != gs.Desired {
		id := c.addActivityLocked(cfg, group, gs, cause, fmt.Sprintf("Setting the desired capacity from %d to %d", gs.Desired, n), now)
		c.endActivityLocked(gs, id, StatusSuccessful, "", now)
	}
	gs.Desired = n
	gs.LastScale = now
	c.Kick()
	return c.saveLocked()
}

// TerminateInstance drains and terminates one instance (by id or name); with decrement the
// desired capacity goes down by one (not below min), else a replacement is launched. It
// returns the group and the activity id.
func (c *Controller) TerminateInstance(id string, decrement bool) (string, Activity, error) {
	if err := c.Load(); err != nil {
		return "", Activity{}, err
	}
	cfg := c.o.Config()
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.o.Now()
	for name, gs := range c.st.Groups {
		g, ok := cfg.Groups[name]
		if !ok {
			continue
		}
		for _, in := range gs.Instances {
			if in.id() != id && in.Name != id {
				continue
			}
			if in.State == Terminating || in.State == Launching || c.busy[in.Name] {
				return name, Activity{}, fmt.Errorf("%w: instance %s is %s", ErrInProgress, id, in.State)
			}
			cause := fmt.Sprintf("At %s instance %s was taken out of service in response to a user request.", awsTime(now), in.id())
			if decrement && gs.Desired > g.MinSize {
				cause = fmt.Sprintf("At %s instance %s was taken out of service in response to a user request, shrinking the capacity from %d to %d.", awsTime(now), in.id(), gs.Desired, gs.Desired-1)
				gs.Desired--
			}
			in.State, in.Cause = Terminating, cause
			c.startTerminateLocked(cfg, name, g, gs, in, cause, now)
			act := gs.Activities[0]
			return name, act, c.saveLocked()
		}
	}
	return "", Activity{}, fmt.Errorf("instance %q: %w", id, ErrNotFound)
}

// ErrInProgress: a scaling activity on the instance or group is in progress.
var ErrInProgress = fmt.Errorf("scaling activity in progress")

// Collector exports the groups to Prometheus: clb_group_desired_capacity,
// clb_group_instances{state}, clb_group_min_size, clb_group_max_size and
// clb_group_activities{status} (kept activities by status).
func (c *Controller) Collector() prometheus.Collector { return collector{c} }

type collector struct{ c *Controller }

var (
	descDesired    = prometheus.NewDesc("clb_group_desired_capacity", "Desired capacity of an Auto Scaling group.", []string{"group"}, nil)
	descMin        = prometheus.NewDesc("clb_group_min_size", "Minimum size of an Auto Scaling group.", []string{"group"}, nil)
	descMax        = prometheus.NewDesc("clb_group_max_size", "Maximum size of an Auto Scaling group.", []string{"group"}, nil)
	descInstances  = prometheus.NewDesc("clb_group_instances", "Instances of an Auto Scaling group by lifecycle state.", []string{"group", "state"}, nil)
	descActivities = prometheus.NewDesc("clb_group_activities", "Scaling activities kept (autoscale.max_activities) by status.", []string{"group", "status"}, nil)
	descFailures   = prometheus.NewDesc("clb_group_launch_failures", "Consecutive failed launches of an Auto Scaling group (0 after a success).", []string{"group"}, nil)
)

// Describe sends the descriptors.
func (k collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDesired, descMin, descMax, descInstances, descActivities, descFailures} {
		ch <- d
	}
}

// Collect sends the current values.
func (k collector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range k.c.Groups() {
		ch <- prometheus.MustNewConstMetric(descDesired, prometheus.GaugeValue, float64(v.Desired), v.Name)
		ch <- prometheus.MustNewConstMetric(descMin, prometheus.GaugeValue, float64(v.MinSize), v.Name)
		ch <- prometheus.MustNewConstMetric(descMax, prometheus.GaugeValue, float64(v.MaxSize), v.Name)
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.GaugeValue, float64(v.LaunchFailures), v.Name)
		states := map[string]int{Launching: 0, Pending: 0, InService: 0, Terminating: 0}
		for _, in := range v.Instances {
			states[in.State]++
		}
		for s, n := range states {
			ch <- prometheus.MustNewConstMetric(descInstances, prometheus.GaugeValue, float64(n), v.Name, s)
		}
		acts := map[string]int{StatusInProgress: 0, StatusSuccessful: 0, StatusFailed: 0}
		for _, a := range k.c.Activities(v.Name) {
			acts[a.Status]++
		}
		for s, n := range acts {
			ch <- prometheus.MustNewConstMetric(descActivities, prometheus.GaugeValue, float64(n), v.Name, s)
		}
	}
}
