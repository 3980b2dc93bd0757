// Package autoscale runs Auto Scaling groups on machines clbd starts and stops itself, with
// the launch and terminate commands of a launcher (config.Launcher). It is part of the core,
// driven by the composition root (package agent), not a front: it reads the membership,
// haproxy's health and traffic history and the instance registry through the small
// interfaces of deps.go, and changes membership only the way the API does (Drainer).
//
// One controller goroutine (Run) checks every group each autoscale.interval: it launches what
// is missing, spread evenly over the group's zones; replaces instances that did not register
// within the grace period, and (health check type ELB) instances haproxy reports down after
// it; scales in by zone balance, then oldest first, draining an instance through the load
// balancer before terminating it; evaluates the group's triggers; and never crosses min or
// max. Launches and terminations run as their own goroutines (one per instance, bounded by
// the launcher's timeout), so a slow hypervisor does not stall the other groups.
//
// Durability: every decision is written to StatePath before it is acted on. A launch is
// recorded (state Launching, with the instance name clbd chose) before the launch command
// runs, so after a kill -9 mid-launch the record still counts towards the capacity (no
// duplicate) and is resolved at start: it becomes Pending, and is adopted when a member or
// instance with that name or id registers within the grace period, else terminated by name
// (the terminate command must accept a name that has no machine) and replaced (no orphan).
// An instance being terminated stays recorded (Terminating) until its terminate command
// succeeded; after a restart the termination is resumed.
//
// A failing launch command is retried with exponential backoff (autoscale.backoff_min,
// doubled per consecutive failure up to backoff_max), one launch at a time until one
// succeeds, and every failure is a Failed activity with the command's output: never a launch
// storm.
package autoscale

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"clb/agent/config"
	"clb/agent/defs"
	"clb/internal/atomicfile"
	"clb/internal/haproxy"
	"clb/internal/model"
)

// Instance lifecycle states (AWS's LifecycleState names).
const (
	// Launching: recorded, the launch command runs (or ran when clbd died).
	Launching = "Launching"
	// Pending: launched, not yet registered and healthy in every service of the group.
	Pending = "Pending"
	// InService: registered and healthy.
	InService = "InService"
	// Terminating: being drained and terminated.
	Terminating = "Terminating"
)

// Activity status codes.
const (
	StatusInProgress = "InProgress"
	StatusSuccessful = "Successful"
	StatusFailed     = "Failed"
)

// Instance is one instance of a group, as the controller keeps it.
type Instance struct {
	// Name is the name clbd chose (CLB_INSTANCE_NAME), ID the id the launch command printed
	// (Name when it printed none). A member or registry instance of either name is this one.
	Name     string    `json:"name"`
	ID       string    `json:"id,omitempty"`
	Zone     string    `json:"zone"`
	State    string    `json:"state"`
	Launched time.Time `json:"launched"`
	// Healthy is the last health seen (registered and up everywhere).
	Healthy bool `json:"healthy"`
	// LaunchConfiguration it was launched with.
	LaunchConfiguration string `json:"launch_configuration"`
	// Decrement: terminating it also lowers the desired capacity (already done).
	Cause string `json:"cause,omitempty"`
	// RetryAt: a termination that failed is tried again then.
	RetryAt time.Time `json:"retry_at,omitempty"`
	// activity is the id of the activity that follows the running operation.
	Activity string `json:"activity,omitempty"`
}

// id is the instance's id once launched (its name before).
func (in *Instance) id() string {
	if in.ID != "" {
		return in.ID
	}
	return in.Name
}

// Activity is one scaling decision and its outcome.
type Activity struct {
	ID          string    `json:"id"`
	Group       string    `json:"group"`
	Cause       string    `json:"cause"`
	Description string    `json:"description"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end,omitzero"`
	Status      string    `json:"status"`
	Message     string    `json:"message,omitempty"`
	Progress    int       `json:"progress"`
}

// GroupState is what the controller keeps of one group.
type GroupState struct {
	Desired   int                  `json:"desired"`
	Instances map[string]*Instance `json:"instances"`
	// Activities, newest first, at most autoscale.max_activities.
	Activities []Activity `json:"activities"`
	// LaunchFailures counts consecutive failed launches; NextLaunch is when the next may run.
	LaunchFailures int       `json:"launch_failures,omitempty"`
	NextLaunch     time.Time `json:"next_launch,omitzero"`
	// LastScale is the last change of the desired capacity by a trigger or policy (cooldown).
	LastScale time.Time `json:"last_scale,omitzero"`
	// Created is when the controller first saw the group.
	Created time.Time `json:"created"`
	// Policies are the group's scaling policies by name (PutScalingPolicy).
	Policies map[string]Policy `json:"policies,omitempty"`
}

// State is the controller's durable state.
type State struct {
	Groups map[string]*GroupState `json:"groups"`
	// Alarms by name (CloudWatch's; policies are in their group's state).
	Alarms map[string]*Alarm `json:"alarms,omitempty"`
}

// Controller runs the groups.
type Controller struct {
	o   Options
	log *slog.Logger

	mu sync.Mutex
	st State
	// busy are the instances whose launch or termination runs now, by name.
	busy map[string]bool
	// triggers holds the samples of each trigger, by group and trigger key.
	triggers map[string]map[string]*series
	// alarmSeries holds each alarm's samples, by alarm name.
	alarmSeries map[string]*series
	kick        chan struct{}
	// warned are the removed groups whose left instances were reported.
	warned map[string]bool
	// stopping: Run ended; no more operations start.
	stopping bool
	wg       sync.WaitGroup
	loaded   bool
	opCtx    context.Context
}

// New builds a controller; Run starts it.
func New(o Options) *Controller {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Controller{o: o, log: o.Logger.With("component", "autoscale"), busy: map[string]bool{},
		triggers: map[string]map[string]*series{}, alarmSeries: map[string]*series{},
		kick: make(chan struct{}, 1), warned: map[string]bool{}, st: State{Groups: map[string]*GroupState{}}}
}

// Load reads the state file (none yet is an empty state). Run calls it when it was not.
func (c *Controller) Load() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loaded {
		return nil
	}
	data, err := os.ReadFile(c.o.StatePath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read autoscale state: %w", err)
	}
	if len(data) > 0 {
		var st State
		if err := json.Unmarshal(data, &st); err != nil {
			return fmt.Errorf("read autoscale state %s: %w", c.o.StatePath, err)
		}
		if st.Groups == nil {
			st.Groups = map[string]*GroupState{}
		}
		for _, g := range st.Groups {
			if g.Instances == nil {
				g.Instances = map[string]*Instance{}
			}
		}
		c.st = st
	}
	// Launches that were running when clbd stopped: their outcome is unknown. They count
	// towards the capacity as Pending instances named as clbd named them; the grace period
	// decides (registered: adopted; not: terminated by name and replaced).
	interrupted := false
	for name, g := range c.st.Groups {
		for _, in := range g.Instances {
			if in.State == Launching {
				interrupted = true
				in.State = Pending
				c.log.Warn("launch interrupted by a restart: waiting for the instance to register", "group", name, "instance", in.Name)
			}
		}
	}
	c.loaded = true
	if !interrupted {
		return nil
	}
	return c.saveLocked()
}

// saveLocked writes the state; the caller holds mu.
func (c *Controller) saveLocked() error {
	data, err := json.MarshalIndent(c.st, "", " ")
	if err != nil {
		return fmt.Errorf("encode autoscale state: %w", err)
	}
	if err := atomicfile.Write(c.o.StatePath, data, 0o640); err != nil {
		return fmt.Errorf("save autoscale state: %w", err)
	}
	return nil
}

// Kick asks for a check of every group now.
func (c *Controller) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run checks the groups until ctx ends, then waits for the operations it started (each is
// bounded by its launcher's timeout; they are cancelled with ctx).
func (c *Controller) Run(ctx context.Context) error {
	if err := c.Load(); err != nil {
		return err
	}
	c.mu.Lock()
	c.opCtx = ctx
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.stopping = true // no operation starts after this (goOp runs under mu)
		c.mu.Unlock()
		c.wg.Wait()
	}()
	interval := c.o.Config().Autoscale.Interval
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		c.Tick()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-c.kick:
		}
		if iv := c.o.Config().Autoscale.Interval; iv != interval {
			interval = iv
			t.Reset(iv)
		}
	}
}

// Tick checks every group once.
func (c *Controller) Tick() {
	cfg := c.o.Config()
	snap := c.o.Members.Snapshot()
	health := c.o.Health.Health()
	registry := c.o.Instances.Instances()
	now := c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
	for _, name := range slices.Sorted(maps.Keys(cfg.Groups)) {
		g := cfg.Groups[name]
		gs := c.groupLocked(name, g, now)
		obs := observation{members: snap.Members, health: health, registry: registry}
		if c.checkGroupLocked(cfg, name, g, gs, obs, now) {
			changed = true
		}
	}
	for name, gs := range c.st.Groups {
		if _, ok := cfg.Groups[name]; ok {
			continue
		}
		if len(gs.Instances) == 0 {
			delete(c.st.Groups, name)
			changed = true
		} else if !c.warned[name] {
			// A group gone from the config with instances left: they keep running (removing a
			// group by mistake must not stop its machines); put it back with min 0 and desired
			// 0 to terminate them, then remove it.
			c.warned[name] = true
			c.log.Warn("group removed from the config while it has instances: they are left running and unmanaged", "group", name, "instances", len(gs.Instances))
		}
	}
	if changed {
		if err := c.saveLocked(); err != nil {
			c.log.Error("save autoscale state", "err", err)
		}
	}
}

// groupLocked returns the group's state, made when the group is new; the desired capacity
// is kept within [min, max].
func (c *Controller) groupLocked(name string, g config.Group, now time.Time) *GroupState {
	gs := c.st.Groups[name]
	if gs == nil {
		gs = &GroupState{Desired: g.Desired(), Instances: map[string]*Instance{}, Created: now}
		c.st.Groups[name] = gs
	}
	gs.Desired = clamp(gs.Desired, g.MinSize, g.MaxSize)
	return gs
}

func clamp(v, lo, hi int) int { return max(lo, min(v, hi)) }

type observation struct {
	members  map[string][]model.Member
	health   map[string]map[string]string
	registry map[string]defs.Instance
}

// checkGroupLocked makes one group's decisions; it reports whether the state changed.
func (c *Controller) checkGroupLocked(cfg *config.Config, name string, g config.Group, gs *GroupState, obs observation, now time.Time) bool {
	changed := false
	// Health of what was launched.
	for _, in := range gs.Instances {
		if in.State != Pending && in.State != InService || c.busy[in.Name] {
			continue
		}
		registered, healthy, down := obs.status(g, in)
		was := in.Healthy
		in.Healthy = healthy
		switch {
		case in.State == Pending && healthy:
			in.State = InService
			changed = true
			c.log.Info("instance in service", "group", name, "instance", in.id())
		case in.State == Pending && now.Sub(in.Launched) >= g.HealthCheckGracePeriod:
			why := "did not register within the health check grace period"
			if registered {
				why = "did not pass its health checks within the health check grace period"
			}
			c.replaceLocked(name, gs, in, fmt.Sprintf("an instance was taken out of service in response to a health check: %s %s (%s)", in.id(), why, g.HealthCheckGracePeriod), now)
			changed = true
		case in.State == InService && (down || !registered) && g.HealthCheckType == "ELB" && now.Sub(in.Launched) >= g.HealthCheckGracePeriod:
			why := "haproxy reports it down"
			if !registered {
				why = "it is no longer registered"
			}
			c.replaceLocked(name, gs, in, fmt.Sprintf("an instance was taken out of service in response to an ELB health check: %s: %s", in.id(), why), now)
			changed = true
		}
		if was != in.Healthy {
			changed = true
		}
	}
	if c.evaluateTriggersLocked(cfg, name, g, gs, obs, now) {
		changed = true
	}
	// Resume terminations (failed ones after their backoff, interrupted ones after a restart).
	for _, in := range gs.Instances {
		if in.State == Terminating && !c.busy[in.Name] && !now.Before(in.RetryAt) {
			c.startTerminateLocked(cfg, name, g, gs, in, in.Cause, now)
			changed = true
		}
	}
	active := gs.active()
	switch {
	case len(active) < gs.Desired:
		if now.Before(gs.NextLaunch) {
			break
		}
		n := gs.Desired - len(active)
		if gs.LaunchFailures > 0 {
			// Probe with one launch until one succeeds.
			n = 1
			if c.launchingLocked(gs) > 0 {
				n = 0
			}
		}
		for range n {
			c.startLaunchLocked(cfg, name, g, gs, now)
			changed = true
		}
	case len(active) > gs.Desired:
		for _, in := range c.victimsLocked(gs, active, len(active)-gs.Desired) {
			cause := fmt.Sprintf("At %s an instance was taken out of service in response to a difference between desired and actual capacity, shrinking the capacity from %d to %d.", awsTime(now), len(active), gs.Desired)
			in.State, in.Cause = Terminating, cause
			c.startTerminateLocked(cfg, name, g, gs, in, cause, now)
			changed = true
		}
	}
	return changed
}

// active are the instances that count towards the capacity: all but those terminating.
func (gs *GroupState) active() []*Instance {
	var out []*Instance
	for _, in := range gs.Instances {
		if in.State != Terminating {
			out = append(out, in)
		}
	}
	return out
}

func (c *Controller) launchingLocked(gs *GroupState) int {
	n := 0
	for _, in := range gs.Instances {
		if in.State == Launching {
			n++
		}
	}
	return n
}

// victimsLocked picks n instances to scale in: never one being launched; from the zone with
// the most instances, the oldest first (AWS's default termination policy, without launch
// configurations).
func (c *Controller) victimsLocked(gs *GroupState, active []*Instance, n int) []*Instance {
	perZone := map[string]int{}
	for _, in := range active {
		perZone[in.Zone]++
	}
	var out []*Instance
	cand := slices.DeleteFunc(slices.Clone(active), func(in *Instance) bool { return in.State == Launching || c.busy[in.Name] })
	for range n {
		if len(cand) == 0 {
			break
		}
		sort.Slice(cand, func(i, j int) bool {
			a, b := cand[i], cand[j]
			if perZone[a.Zone] != perZone[b.Zone] {
				return perZone[a.Zone] > perZone[b.Zone]
			}
			if !a.Launched.Equal(b.Launched) {
				return a.Launched.Before(b.Launched)
			}
			return a.Name < b.Name
		})
		v := cand[0]
		out = append(out, v)
		perZone[v.Zone]--
		cand = cand[1:]
	}
	return out
}

// zoneFor picks the zone with the fewest active instances (the first of the group's zones
// among equals).
func zoneFor(g config.Group, gs *GroupState) string {
	count := map[string]int{}
	for _, in := range gs.active() {
		count[in.Zone]++
	}
	best := g.Zones[0]
	for _, z := range g.Zones {
		if count[z] < count[best] {
			best = z
		}
	}
	return best
}

// replaceLocked terminates an unhealthy instance; the capacity check then launches its
// replacement.
func (c *Controller) replaceLocked(group string, gs *GroupState, in *Instance, cause string, now time.Time) {
	c.log.Warn("replacing unhealthy instance", "group", group, "instance", in.id(), "cause", cause)
	in.State, in.Cause = Terminating, "At "+awsTime(now)+" "+cause+"."
	in.RetryAt = time.Time{}
}

// startLaunchLocked records a launch (saved before the command runs) and starts it.
func (c *Controller) startLaunchLocked(cfg *config.Config, group string, g config.Group, gs *GroupState, now time.Time) {
	in := &Instance{Name: newInstanceName(group), Zone: zoneFor(g, gs), State: Launching, Launched: now, LaunchConfiguration: g.LaunchConfiguration}
	from := len(gs.active())
	cause := fmt.Sprintf("At %s an instance was started in response to a difference between desired and actual capacity, increasing the capacity from %d to %d.", awsTime(now), from, from+1)
	act := c.addActivityLocked(cfg, group, gs, cause, "Launching a new instance: "+in.Name, now)
	in.Activity = act
	gs.Instances[in.Name] = in
	if err := c.saveLocked(); err != nil {
		// No launch without the intent on disk: a crash would orphan the machine.
		delete(gs.Instances, in.Name)
		c.endActivityLocked(gs, act, StatusFailed, err.Error(), now)
		return
	}
	lc := cfg.LaunchConfigurations[g.LaunchConfiguration]
	l := cfg.Launchers[cfg.LauncherFor(lc)]
	env := launchEnv(group, g, g.LaunchConfiguration, lc, in)
	c.busy[in.Name] = true
	c.log.Info("launching instance", "group", group, "instance", in.Name, "zone", in.Zone)
	c.goOp(func(ctx context.Context) {
		out, err := runCommand(ctx, l.Launch, l.Timeout, env)
		var id string
		if err == nil {
			id, err = instanceID(out)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.busy, in.Name)
		now := c.o.Now()
		if ctx.Err() != nil && err != nil {
			// clbd is stopping: the launch's outcome is unknown; Load resolves it.
			return
		}
		if err != nil {
			gs.LaunchFailures++
			wait := backoff(cfg.Autoscale, gs.LaunchFailures)
			gs.NextLaunch = now.Add(wait)
			delete(gs.Instances, in.Name)
			c.endActivityLocked(gs, in.Activity, StatusFailed, fmt.Sprintf("%v (failure %d in a row; next launch in %s)", err, gs.LaunchFailures, wait), now)
			c.log.Error("launch failed", "group", group, "instance", in.Name, "failures", gs.LaunchFailures, "retry_in", wait, "err", err)
		} else {
			gs.LaunchFailures, gs.NextLaunch = 0, time.Time{}
			if id != "" {
				in.ID = id
			}
			if in.State == Launching {
				in.State = Pending
			}
			c.endActivityLocked(gs, in.Activity, StatusSuccessful, "", now)
			in.Activity = ""
			c.log.Info("instance launched", "group", group, "instance", in.id(), "zone", in.Zone)
		}
		if err := c.saveLocked(); err != nil {
			c.log.Error("save autoscale state", "err", err)
		}
		c.Kick()
	})
}

// backoff is the wait after the n-th consecutive failure.
func backoff(s config.AutoscaleSettings, n int) time.Duration {
	d := s.BackoffMin
	for i := 1; i < n && d < s.BackoffMax; i++ {
		d *= 2
	}
	return min(d, s.BackoffMax)
}

// startTerminateLocked drains the instance from the group's services, then runs the
// terminate command; on success the instance is forgotten, on failure tried again after a
// backoff.
func (c *Controller) startTerminateLocked(cfg *config.Config, group string, g config.Group, gs *GroupState, in *Instance, cause string, now time.Time) {
	if in.Activity == "" {
		in.Activity = c.addActivityLocked(cfg, group, gs, cause, "Terminating instance: "+in.id(), now)
	}
	lc := cfg.LaunchConfigurations[in.LaunchConfiguration]
	if _, ok := cfg.LaunchConfigurations[in.LaunchConfiguration]; !ok {
		lc = cfg.LaunchConfigurations[g.LaunchConfiguration]
	}
	l := cfg.Launchers[cfg.LauncherFor(lc)]
	cp := *in
	cp.ID = in.id()
	env := launchEnv(group, g, in.LaunchConfiguration, lc, &cp)
	names := []string{in.id()}
	if in.Name != in.id() {
		names = append(names, in.Name)
	}
	c.busy[in.Name] = true
	c.log.Info("terminating instance", "group", group, "instance", in.id())
	c.goOp(func(ctx context.Context) {
		var err error
		for _, svc := range g.Services {
			for _, m := range names {
				if e := c.o.Drainer.Unregister(ctx, svc, m); e != nil {
					err = errors.Join(err, fmt.Errorf("drain %s from %s: %w", m, svc, e))
				}
			}
		}
		if err == nil {
			_, err = runCommand(ctx, l.Terminate, l.Timeout, env)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.busy, in.Name)
		if ctx.Err() != nil && err != nil {
			return // stopping: resumed after the restart
		}
		now := c.o.Now()
		if err != nil {
			wait := backoff(cfg.Autoscale, 1)
			in.RetryAt = now.Add(wait)
			c.endActivityLocked(gs, in.Activity, StatusFailed, fmt.Sprintf("%v (retried in %s)", err, wait), now)
			in.Activity = ""
			c.log.Error("terminate failed", "group", group, "instance", in.id(), "err", err)
		} else {
			delete(gs.Instances, in.Name)
			c.endActivityLocked(gs, in.Activity, StatusSuccessful, "", now)
			c.log.Info("instance terminated", "group", group, "instance", in.id())
		}
		if err := c.saveLocked(); err != nil {
			c.log.Error("save autoscale state", "err", err)
		}
		c.Kick()
	})
}

// goOp runs an operation in its own goroutine, cancelled when Run's context ends; the caller
// holds mu.
func (c *Controller) goOp(fn func(ctx context.Context)) {
	ctx := c.opCtx
	if ctx == nil {
		ctx = context.Background()
	}
	if c.stopping || ctx.Err() != nil {
		// Stopping: Run waits for the operations already started; this one is left to the
		// next start (its intent is saved: Load resolves it).
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn(ctx)
	}()
}

// addActivityLocked starts an activity; the oldest beyond max_activities are dropped.
func (c *Controller) addActivityLocked(cfg *config.Config, group string, gs *GroupState, cause, desc string, now time.Time) string {
	a := Activity{ID: newID(), Group: group, Cause: cause, Description: desc, Start: now, Status: StatusInProgress, Progress: 0}
	gs.Activities = append([]Activity{a}, gs.Activities...)
	if n := cfg.Autoscale.MaxActivities; len(gs.Activities) > n {
		gs.Activities = gs.Activities[:n]
	}
	return a.ID
}

func (c *Controller) endActivityLocked(gs *GroupState, id, status, msg string, now time.Time) {
	for i := range gs.Activities {
		if a := &gs.Activities[i]; a.ID == id {
			a.Status, a.Message, a.End, a.Progress = status, msg, now, 100
			return
		}
	}
}

// newInstanceName is GROUP-8 hex digits (the machine's name for the launcher).
func newInstanceName(group string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := group
	if len(name) > 100 {
		name = name[:100]
	}
	return sanitize(name) + "-" + hex.EncodeToString(b[:])
}

// sanitize keeps what haproxy allows in a server name (groups may have upper case: kept).
func sanitize(s string) string {
	out := []rune(s)
	for i, r := range out {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			out[i] = '-'
		}
	}
	return string(out)
}

// newID is a random UUID (version 4).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// awsTime is the time as AWS writes it in causes.
func awsTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// status says whether an instance registered (in every service of the group, as a member
// named by its id or name; a group without services: in the instance registry), whether
// haproxy reports it up in every service, and whether it reports it down in one (a member
// haproxy has not polled yet is neither).
func (o observation) status(g config.Group, in *Instance) (registered, up, down bool) {
	if len(g.Services) == 0 {
		_, a := o.registry[in.id()]
		_, b := o.registry[in.Name]
		return a || b, a || b, false
	}
	up = true
	for _, svc := range g.Services {
		name := ""
		for _, m := range o.members[svc] {
			if m.Name == in.id() || m.Name == in.Name {
				name = m.Name
				break
			}
		}
		if name == "" {
			return false, false, false
		}
		if o.health == nil {
			continue // no runtime API: registered is all clbd can know
		}
		switch o.health[svc][name] {
		case haproxy.HealthUp:
		case haproxy.HealthDown:
			up, down = false, true
		default:
			up = false
		}
	}
	return true, up, down
}
