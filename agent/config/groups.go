package config

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	shellwords "github.com/mattn/go-shellwords"

	"clb/internal/model"
)

// Auto Scaling groups (package autoscale runs them): launchers are commands, and live in the
// config file only (nothing an API caller sends can make clbd run a command); launch
// configurations name a launcher and carry what it is given; groups keep a number of
// instances of one launch configuration running over zones, registered in services.

// Launcher is how clbd starts and stops machines: two commands run like reload_cmd (parsed as
// shell words, no shell, with a timeout, their output in the error when they fail).
type Launcher struct {
	// Launch starts one instance. Its environment has CLB_GROUP, CLB_ZONE, CLB_INSTANCE_NAME,
	// CLB_IMAGE_ID, CLB_INSTANCE_TYPE, CLB_KEY_NAME, CLB_SECURITY_GROUPS (comma-separated),
	// CLB_USER_DATA (as given, base64 from the AWS API), CLB_SERVICES and CLB_LAUNCH_CONFIGURATION;
	// it prints the new instance's id on the last line of its output (empty: the id is
	// CLB_INSTANCE_NAME).
	Launch string `yaml:"launch"`
	// Terminate stops one instance: the same environment plus CLB_INSTANCE_ID. It must succeed
	// for an instance that does not exist (clbd terminates by name after a crash, see the
	// README's "Auto Scaling groups").
	Terminate string        `yaml:"terminate"`
	Timeout   time.Duration `yaml:"timeout"`
}

// LaunchConfiguration is what a group launches: the launcher and what it is given.
type LaunchConfiguration struct {
	// Launcher names an entry of launchers (default: "default", or the only one).
	Launcher       string   `yaml:"launcher" json:"launcher,omitempty"`
	ImageID        string   `yaml:"image_id" json:"image_id,omitempty"`
	InstanceType   string   `yaml:"instance_type" json:"instance_type,omitempty"`
	KeyName        string   `yaml:"key_name" json:"key_name,omitempty"`
	SecurityGroups []string `yaml:"security_groups,flow" json:"security_groups,omitempty"`
	UserData       string   `yaml:"user_data" json:"user_data,omitempty"`
	// Created is when the AWS API created it (zero for the config file's).
	Created time.Time `yaml:"created,omitempty" json:"created,omitzero"`
}

// Group is an Auto Scaling group.
type Group struct {
	LaunchConfiguration string `yaml:"launch_configuration" json:"launch_configuration"`
	MinSize             int    `yaml:"min_size" json:"min_size"`
	MaxSize             int    `yaml:"max_size" json:"max_size"`
	// DesiredCapacity is the initial desired capacity (nil: min_size); scaling changes the
	// running value, which clbd keeps in its state dir.
	DesiredCapacity *int `yaml:"desired_capacity" json:"desired_capacity,omitempty"`
	// Zones: launches are spread evenly over them (empty: one zone, "").
	Zones []string `yaml:"zones,flow" json:"zones,omitempty"`
	// Services the instances register in (they register themselves; clbd drains them there
	// before terminating).
	Services []string `yaml:"services,flow" json:"services"`
	// HealthCheckType ELB replaces instances haproxy reports down past the grace period; EC2
	// (default) replaces only instances that never registered within it.
	HealthCheckType string `yaml:"health_check_type" json:"health_check_type"`
	// HealthCheckGracePeriod is how long a new instance has to register and pass its checks
	// (default 300s).
	HealthCheckGracePeriod time.Duration `yaml:"health_check_grace_period" json:"health_check_grace_period"`
	// Cooldown is the least time between two scaling activities of a trigger or policy
	// (default 300s).
	Cooldown time.Duration `yaml:"cooldown" json:"cooldown"`
	// Triggers scale the group on its metrics (the 2009 Auto Scaling trigger).
	Triggers []Trigger `yaml:"triggers" json:"triggers,omitempty"`
}

// Trigger is the 2009 Auto Scaling trigger on one of the group's metrics: when the statistic
// over each period stays above the upper threshold (below the lower) for the breach duration,
// the desired capacity changes by the increment ("2", "-1", "50%", "-25%").
type Trigger struct {
	Name string `yaml:"name" json:"name"`
	// Metric is one of Metrics.
	Metric string `yaml:"metric" json:"metric"`
	// Statistic is Average (default), Minimum, Maximum or Sum of the samples of a period.
	Statistic      string        `yaml:"statistic" json:"statistic"`
	Period         time.Duration `yaml:"period" json:"period"`
	BreachDuration time.Duration `yaml:"breach_duration" json:"breach_duration"`
	// LowerThreshold and UpperThreshold; nil for none.
	LowerThreshold *float64 `yaml:"lower_threshold" json:"lower_threshold,omitempty"`
	UpperThreshold *float64 `yaml:"upper_threshold" json:"upper_threshold,omitempty"`
	LowerIncrement string   `yaml:"lower_breach_scale_increment" json:"lower_breach_scale_increment,omitempty"`
	UpperIncrement string   `yaml:"upper_breach_scale_increment" json:"upper_breach_scale_increment,omitempty"`
}

// Metrics are the group metrics triggers and alarms measure: CPUUtilization (mean percent
// reported by the instances with clb_register --keepalive), RequestRate (requests per second
// to the group's members, summed), RequestRatePerInstance (that over the instances in
// service), Latency (mean response time in ms, haproxy's rtime), QueueLength (requests queued
// for the members), SessionsPerInstance (mean current sessions) and HealthyHostCount.
var Metrics = []string{"CPUUtilization", "RequestRate", "RequestRatePerInstance", "Latency", "QueueLength", "SessionsPerInstance", "HealthyHostCount"}

// Statistics are the statistics of a trigger or alarm.
var Statistics = []string{"Average", "Minimum", "Maximum", "Sum", "SampleCount"}

// AutoscaleSettings tune the group controller.
type AutoscaleSettings struct {
	// Interval is how often groups are checked (default 1s).
	Interval time.Duration `yaml:"interval"`
	// BackoffMin and BackoffMax bound the wait after a failed launch, doubled at each
	// consecutive failure (defaults 2s and 5m).
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
	// MaxActivities kept per group (default 100).
	MaxActivities int `yaml:"max_activities"`
}

// Defaults of groups.
const (
	DefaultLauncherTimeout = 5 * time.Minute
	DefaultGracePeriod     = 300 * time.Second
	DefaultCooldown        = 300 * time.Second
)

// SetDefaults fills the autoscale settings and every group's defaults (on copies).
func (c *Config) setGroupDefaults() {
	a := &c.Autoscale
	if a.Interval == 0 {
		a.Interval = time.Second
	}
	if a.BackoffMin == 0 {
		a.BackoffMin = 2 * time.Second
	}
	if a.BackoffMax == 0 {
		a.BackoffMax = 5 * time.Minute
	}
	if a.MaxActivities == 0 {
		a.MaxActivities = 100
	}
	if c.Launchers != nil {
		ls := make(map[string]Launcher, len(c.Launchers))
		for name, l := range c.Launchers {
			if l.Timeout == 0 {
				l.Timeout = DefaultLauncherTimeout
			}
			ls[name] = l
		}
		c.Launchers = ls
	}
	if c.Groups != nil {
		gs := make(map[string]Group, len(c.Groups))
		for name, g := range c.Groups {
			g.SetDefaults()
			gs[name] = g
		}
		c.Groups = gs
	}
}

// SetDefaults fills a group's defaults on a copy of its slices.
func (g *Group) SetDefaults() {
	if g.HealthCheckType == "" {
		g.HealthCheckType = "EC2"
	}
	if g.HealthCheckGracePeriod == 0 {
		g.HealthCheckGracePeriod = DefaultGracePeriod
	}
	if g.Cooldown == 0 {
		g.Cooldown = DefaultCooldown
	}
	if len(g.Zones) == 0 {
		g.Zones = []string{""}
	}
	g.Zones, g.Services = slices.Clone(g.Zones), slices.Clone(g.Services)
	g.Triggers = slices.Clone(g.Triggers)
	for i := range g.Triggers {
		t := &g.Triggers[i]
		if t.Statistic == "" {
			t.Statistic = "Average"
		}
		if t.Period == 0 {
			t.Period = time.Minute
		}
		if t.BreachDuration == 0 {
			t.BreachDuration = t.Period
		}
	}
}

// Desired is the group's initial desired capacity.
func (g Group) Desired() int {
	if g.DesiredCapacity != nil {
		return *g.DesiredCapacity
	}
	return g.MinSize
}

// LauncherFor returns the name of the launcher a launch configuration uses.
func (c *Config) LauncherFor(lc LaunchConfiguration) string {
	if lc.Launcher != "" {
		return lc.Launcher
	}
	if _, ok := c.Launchers["default"]; ok || len(c.Launchers) != 1 {
		return "default"
	}
	for name := range c.Launchers {
		return name
	}
	return "default"
}

// MergeGroups adds the launch configurations and groups defined through the API to c (the
// config file's, already in c, win) and validates those it added; c's maps are replaced, not
// changed.
func (c *Config) MergeGroups(lcs map[string]LaunchConfiguration, groups map[string]Group) error {
	var errs []error
	nl := maps.Clone(c.LaunchConfigurations)
	if nl == nil {
		nl = map[string]LaunchConfiguration{}
	}
	for name, lc := range lcs {
		if _, file := nl[name]; !file {
			nl[name] = lc
		}
	}
	c.LaunchConfigurations = nl
	ng := maps.Clone(c.Groups)
	if ng == nil {
		ng = map[string]Group{}
	}
	for _, name := range slices.Sorted(maps.Keys(groups)) {
		if _, file := ng[name]; file {
			continue
		}
		g := groups[name]
		g.SetDefaults()
		if err := c.ValidateGroup(name, g); err != nil {
			errs = append(errs, err)
		}
		ng[name] = g
	}
	c.Groups = ng
	for _, name := range slices.Sorted(maps.Keys(lcs)) {
		if err := c.ValidateLaunchConfiguration(name, nl[name]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ParseIncrement reads a scale increment: "N" or "-N" instances, "N%" or "-N%" of the
// current capacity.
func ParseIncrement(s string) (n int, percent bool, err error) {
	v, percent := strings.CutSuffix(strings.TrimSpace(s), "%")
	n, err = strconv.Atoi(v)
	if err != nil {
		return 0, false, fmt.Errorf("scale increment %q: want N, -N, N%% or -N%%", model.Clip(s, 40))
	}
	return n, percent, nil
}

// validateGroups checks launchers, launch configurations and groups against each other and
// the services.
func (c *Config) validateGroups() []error {
	var errs []error
	a := c.Autoscale
	if a.Interval < 10*time.Millisecond || a.BackoffMin <= 0 || a.BackoffMax < a.BackoffMin || a.MaxActivities < 1 {
		errs = append(errs, fmt.Errorf("autoscale: want interval >= 10ms, 0 < backoff_min <= backoff_max, max_activities >= 1"))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Launchers)) {
		l := c.Launchers[name]
		if err := model.ValidateServiceName(name); err != nil {
			errs = append(errs, fmt.Errorf("launcher %q: %w", model.Clip(name, 40), err))
		}
		for what, cmd := range map[string]string{"launch": l.Launch, "terminate": l.Terminate} {
			argv, err := shellwords.Parse(cmd)
			if err != nil || len(argv) == 0 {
				errs = append(errs, fmt.Errorf("launcher %s: %s command %q: want a command line", name, what, model.Clip(cmd, 80)))
			}
		}
		if l.Timeout <= 0 {
			errs = append(errs, fmt.Errorf("launcher %s: timeout must be positive", name))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.LaunchConfigurations)) {
		if err := c.ValidateLaunchConfiguration(name, c.LaunchConfigurations[name]); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Groups)) {
		if err := c.ValidateGroup(name, c.Groups[name]); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// ValidateLaunchConfiguration checks one launch configuration: its name and its launcher.
func (c *Config) ValidateLaunchConfiguration(name string, lc LaunchConfiguration) error {
	if err := validGroupName(name); err != nil {
		return fmt.Errorf("launch configuration %q: %w", model.Clip(name, 40), err)
	}
	if _, ok := c.Launchers[c.LauncherFor(lc)]; !ok {
		return fmt.Errorf("launch configuration %s: no launcher %q in launchers", name, model.Clip(c.LauncherFor(lc), 40))
	}
	if len(lc.UserData) > 21847 { // AWS: 16 KB before base64
		return fmt.Errorf("launch configuration %s: user_data is longer than 21847 characters", name)
	}
	return nil
}

// ValidateGroup checks one group whose defaults are filled.
func (c *Config) ValidateGroup(name string, g Group) error {
	var errs []error
	if err := validGroupName(name); err != nil {
		return fmt.Errorf("group %q: %w", model.Clip(name, 40), err)
	}
	if _, ok := c.LaunchConfigurations[g.LaunchConfiguration]; !ok {
		errs = append(errs, fmt.Errorf("launch_configuration %q is not defined", model.Clip(g.LaunchConfiguration, 40)))
	}
	if g.MinSize < 0 || g.MaxSize < g.MinSize || g.MaxSize > 1000 {
		errs = append(errs, fmt.Errorf("min_size %d, max_size %d: want 0 <= min <= max <= 1000", g.MinSize, g.MaxSize))
	}
	if d := g.Desired(); d < g.MinSize || d > g.MaxSize {
		errs = append(errs, fmt.Errorf("desired_capacity %d is outside [min_size %d, max_size %d]", d, g.MinSize, g.MaxSize))
	}
	for _, z := range g.Zones {
		if err := model.ValidateZone(z); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range g.Services {
		if _, ok := c.Services[s]; !ok {
			errs = append(errs, fmt.Errorf("service %q is not defined", model.Clip(s, 40)))
		}
	}
	if g.HealthCheckType != "EC2" && g.HealthCheckType != "ELB" {
		errs = append(errs, fmt.Errorf("health_check_type %q: want EC2 or ELB", model.Clip(g.HealthCheckType, 20)))
	}
	if g.HealthCheckGracePeriod < 0 || g.Cooldown < 0 {
		errs = append(errs, errors.New("health_check_grace_period and cooldown must not be negative"))
	}
	for i, t := range g.Triggers {
		if err := t.validate(); err != nil {
			errs = append(errs, fmt.Errorf("trigger %d (%s): %w", i+1, model.Clip(t.Name, 40), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("group %s: %w", name, err)
	}
	return nil
}

func (t Trigger) validate() error {
	var errs []error
	if !slices.Contains(Metrics, t.Metric) {
		errs = append(errs, fmt.Errorf("metric %q: want one of %s", model.Clip(t.Metric, 40), strings.Join(Metrics, ", ")))
	}
	if !slices.Contains(Statistics, t.Statistic) {
		errs = append(errs, fmt.Errorf("statistic %q: want one of %s", model.Clip(t.Statistic, 40), strings.Join(Statistics, ", ")))
	}
	if t.Period <= 0 || t.BreachDuration < t.Period {
		errs = append(errs, fmt.Errorf("period %s, breach_duration %s: want 0 < period <= breach_duration", t.Period, t.BreachDuration))
	}
	if t.LowerThreshold == nil && t.UpperThreshold == nil {
		errs = append(errs, errors.New("neither lower_threshold nor upper_threshold is set"))
	}
	if t.LowerThreshold != nil && t.UpperThreshold != nil && *t.LowerThreshold >= *t.UpperThreshold {
		errs = append(errs, errors.New("lower_threshold must be below upper_threshold"))
	}
	for _, inc := range []struct {
		th  *float64
		val string
	}{{t.LowerThreshold, t.LowerIncrement}, {t.UpperThreshold, t.UpperIncrement}} {
		if inc.th == nil {
			continue
		}
		if _, _, err := ParseIncrement(inc.val); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// validGroupName accepts AWS-style names (letters of both cases, digits, - _ .), 1-64.
func validGroupName(s string) error {
	if len(s) == 0 || len(s) > 64 {
		return fmt.Errorf("%w: want 1-64 characters", model.ErrInvalid)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("%w: name %q: want letters, digits, - _ .", model.ErrInvalid, model.Clip(s, 40))
		}
	}
	return nil
}
