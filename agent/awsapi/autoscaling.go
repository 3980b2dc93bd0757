package awsapi

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"clb/agent/autoscale"
	"clb/agent/config"
	"clb/agent/defs"
)

// Auto Scaling 2011-01-01 on the same endpoint (Version=2011-01-01): launch configurations and
// groups are saved with the definitions (defs.File, local or etcd) and run by the core's group
// controller (package autoscale) through Scaling. A group's LoadBalancerNames are clb
// services (ELB names, case-folded); its instances are machines the launch configuration's
// launcher starts (the config file's launcher "default", or the only one: the API cannot name
// commands). Launch configurations and groups of the config file are read-only here.
// "Not found" is ValidationError with AWS's messages; times are YYYY-MM-DDTHH:MM:SS.mmmZ (the
// only form, with ...SSZ, boto 2 parses).

// AutoScalingVersion and AutoScalingNamespace are the Auto Scaling API's.
const (
	AutoScalingVersion   = "2011-01-01"
	AutoScalingNamespace = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
)

// Scaling is the group controller as the front sees it (*autoscale.Controller).
type Scaling interface {
	Groups() []autoscale.GroupView
	Group(name string) (autoscale.GroupView, error)
	Activities(group string) []autoscale.Activity
	SetDesiredCapacity(group string, n int, honorCooldown bool, cause string) error
	TerminateInstance(id string, decrement bool) (string, autoscale.Activity, error)
	PutPolicy(p autoscale.Policy) (autoscale.Policy, error)
	Policies(group string) []autoscale.Policy
	DeletePolicy(group, name string) error
	ExecutePolicy(group, nameOrARN string, honorCooldown bool) error
	PutAlarm(a autoscale.Alarm) error
	Alarms(names ...string) []autoscale.Alarm
	DeleteAlarms(names ...string) error
	Kick()
}

func (s *Server) autoscalingActions() map[string]handler {
	return map[string]handler{
		"CreateLaunchConfiguration":            s.scaling(s.createLaunchConfiguration),
		"DescribeLaunchConfigurations":         s.scaling(s.describeLaunchConfigurations),
		"DeleteLaunchConfiguration":            s.scaling(s.deleteLaunchConfiguration),
		"CreateAutoScalingGroup":               s.scaling(s.createGroup),
		"UpdateAutoScalingGroup":               s.scaling(s.updateGroup),
		"DescribeAutoScalingGroups":            s.scaling(s.describeGroups),
		"DeleteAutoScalingGroup":               s.scaling(s.deleteGroup),
		"DescribeScalingActivities":            s.scaling(s.describeActivities),
		"SetDesiredCapacity":                   s.scaling(s.setDesiredCapacity),
		"PutScalingPolicy":                     s.scaling(s.putScalingPolicy),
		"DescribePolicies":                     s.scaling(s.describeScalingPolicies),
		"DeletePolicy":                         s.scaling(s.deleteScalingPolicy),
		"ExecutePolicy":                        s.scaling(s.executePolicy),
		"TerminateInstanceInAutoScalingGroup":  s.scaling(s.terminateInstance),
		"DescribeAutoScalingInstances":         s.scaling(s.describeASInstances),
		"DescribeAdjustmentTypes":              s.scaling(s.describeAdjustmentTypes),
		"DescribeScalingProcessTypes":          s.scaling(s.describeProcessTypes),
		"DescribeTerminationPolicyTypes":       s.scaling(s.describeTerminationPolicyTypes),
		"DescribeAutoScalingNotificationTypes": s.scaling(func(*request) (any, error) { return struct{}{}, nil }),
	}
}

// autoscalingUnserved are Auto Scaling actions clbd knows and does not serve.
var autoscalingUnserved = map[string]bool{
	"AttachInstances": true, "DetachInstances": true, "AttachLoadBalancers": true, "DetachLoadBalancers": true,
	"SetInstanceHealth": true, "SuspendProcesses": true, "ResumeProcesses": true, "CreateOrUpdateTags": true,
	"DeleteTags": true, "DescribeTags": true, "PutScheduledUpdateGroupAction": true, "DescribeScheduledActions": true,
	"DeleteScheduledAction": true, "DescribeAccountLimits": true, "PutLifecycleHook": true, "EnterStandby": true,
	"ExitStandby": true, "SetInstanceProtection": true, "AttachLoadBalancerTargetGroups": true,
	"PutNotificationConfiguration": true, "DescribeNotificationConfigurations": true, "EnableMetricsCollection": true,
}

// scaling refuses the call when clbd runs no group controller.
func (s *Server) scaling(h handler) handler {
	return func(req *request) (any, error) {
		if s.d.Scaling == nil {
			return nil, errorf(http.StatusBadRequest, "UnsupportedOperation", "this clbd runs no Auto Scaling groups")
		}
		return h(req)
	}
}

func asTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func intParam(req *request, name string, required bool) (int, bool, error) {
	v, ok := req.p[name]
	if !ok || v == "" {
		if required {
			_, err := req.p.required(name)
			return 0, false, err
		}
		return 0, false, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, false, validation("%s %q: want an integer", name, clip(v))
	}
	return n, true, nil
}

func boolParam(req *request, name string) bool {
	v := strings.ToLower(req.p.get(name))
	return v == "true" || v == "1"
}

func lcARN(name string) string {
	return "arn:aws:autoscaling:clb:000000000000:launchConfiguration:" + name + ":launchConfigurationName/" + name
}

func groupARN(name string) string {
	return "arn:aws:autoscaling:clb:000000000000:autoScalingGroup:" + name + ":autoScalingGroupName/" + name
}

// scalingError turns a controller or definitions error into Auto Scaling's answer.
func scalingError(err error) error {
	var ae *Error
	switch {
	case errors.As(err, &ae):
		return err
	case errors.Is(err, autoscale.ErrCooldown), errors.Is(err, autoscale.ErrInProgress):
		return errorf(http.StatusBadRequest, "ScalingActivityInProgress", "%v", err)
	case errors.Is(err, autoscale.ErrNotFound), errors.Is(err, autoscale.ErrInvalid), errors.Is(err, defs.ErrInvalid):
		return validation("%s", strings.TrimPrefix(strings.TrimPrefix(err.Error(), "invalid: "), "definitions change refused: "))
	}
	return err
}

// updateScaling saves a change of the API's launch configurations and groups.
func (s *Server) updateScaling(fn func(f *defs.File) error) error {
	if err := s.d.Definitions.UpdateDefinitions("", fn); err != nil {
		return scalingError(err)
	}
	s.d.Scaling.Kick()
	return nil
}

func (s *Server) createLaunchConfiguration(req *request) (any, error) {
	name, err := req.p.required("LaunchConfigurationName")
	if err != nil {
		return nil, err
	}
	lc := config.LaunchConfiguration{ImageID: req.p.get("ImageId"), InstanceType: req.p.get("InstanceType"),
		KeyName: req.p.get("KeyName"), SecurityGroups: req.p.list("SecurityGroups"), UserData: req.p.get("UserData"), Created: time.Now().UTC()}
	if _, ok := s.d.Config().LaunchConfigurations[name]; ok {
		return nil, errorf(http.StatusBadRequest, "AlreadyExists", "Launch Configuration by this name already exists - A launch configuration already exists with the name %s", clip(name))
	}
	return nil, s.updateScaling(func(f *defs.File) error {
		if _, ok := f.LaunchConfigurations[name]; ok {
			return errorf(http.StatusBadRequest, "AlreadyExists", "Launch Configuration by this name already exists - A launch configuration already exists with the name %s", clip(name))
		}
		f.LaunchConfigurations[name] = lc
		return nil
	})
}

type lcXML struct {
	LaunchConfigurationName string
	LaunchConfigurationARN  string
	ImageId                 string
	KeyName                 string
	SecurityGroups          xmlList[string]
	UserData                string
	InstanceType            string
	KernelId                string
	RamdiskId               string
	BlockDeviceMappings     xmlList[string]
	InstanceMonitoring      struct{ Enabled bool }
	CreatedTime             string
	EbsOptimized            bool
}

func (s *Server) describeLaunchConfigurations(req *request) (any, error) {
	names := req.p.list("LaunchConfigurationNames")
	cfg := s.d.Config()
	out := xmlList[lcXML]{}
	for _, name := range sortedKeys(cfg.LaunchConfigurations) {
		if len(names) > 0 && !slices.Contains(names, name) {
			continue
		}
		lc := cfg.LaunchConfigurations[name]
		created := lc.Created
		if created.IsZero() {
			created = s.started()
		}
		x := lcXML{LaunchConfigurationName: name, LaunchConfigurationARN: lcARN(name), ImageId: lc.ImageID, KeyName: lc.KeyName,
			SecurityGroups: xmlList[string](lc.SecurityGroups), UserData: lc.UserData, InstanceType: lc.InstanceType,
			BlockDeviceMappings: xmlList[string]{}, CreatedTime: asTime(created)}
		if x.SecurityGroups == nil {
			x.SecurityGroups = xmlList[string]{}
		}
		x.InstanceMonitoring.Enabled = true
		out = append(out, x)
	}
	return struct {
		LaunchConfigurations xmlList[lcXML]
	}{out}, nil
}

func (s *Server) deleteLaunchConfiguration(req *request) (any, error) {
	name, err := req.p.required("LaunchConfigurationName")
	if err != nil {
		return nil, err
	}
	cfg := s.d.Config()
	if _, ok := cfg.LaunchConfigurations[name]; !ok {
		return nil, validation("Launch configuration name not found - %s", clip(name))
	}
	for _, g := range sortedKeys(cfg.Groups) {
		if cfg.Groups[g].LaunchConfiguration == name {
			return nil, errorf(http.StatusBadRequest, "ResourceInUse", "Cannot delete launch configuration %s because it is attached to AutoScalingGroup %s", name, g)
		}
	}
	return nil, s.updateScaling(func(f *defs.File) error {
		if _, ok := f.LaunchConfigurations[name]; !ok {
			return validation("launch configuration %s is defined in clbd's config file; remove it there", name)
		}
		delete(f.LaunchConfigurations, name)
		return nil
	})
}

// groupParams lays the parameters of CreateAutoScalingGroup / UpdateAutoScalingGroup over g.
func (s *Server) groupParams(req *request, g *config.Group, create bool) (desired *int, err error) {
	if v := req.p.get("LaunchConfigurationName"); v != "" {
		g.LaunchConfiguration = v
	} else if create {
		return nil, validation("LaunchConfigurationName is required (clbd serves no launch templates)")
	}
	if _, ok := s.d.Config().LaunchConfigurations[g.LaunchConfiguration]; !ok {
		return nil, validation("Launch configuration name not found - %s", clip(g.LaunchConfiguration))
	}
	for _, f := range []struct {
		name string
		dst  *int
	}{{"MinSize", &g.MinSize}, {"MaxSize", &g.MaxSize}} {
		n, ok, err := intParam(req, f.name, create)
		if err != nil {
			return nil, err
		}
		if ok {
			*f.dst = n
		}
	}
	if n, ok, err := intParam(req, "DesiredCapacity", false); err != nil {
		return nil, err
	} else if ok {
		desired = &n
	}
	for _, f := range []struct {
		name string
		dst  *time.Duration
	}{{"DefaultCooldown", &g.Cooldown}, {"HealthCheckGracePeriod", &g.HealthCheckGracePeriod}} {
		n, ok, err := intParam(req, f.name, false)
		if err != nil {
			return nil, err
		}
		if ok {
			if n < 0 {
				return nil, validation("%s %d: must not be negative", f.name, n)
			}
			*f.dst = time.Duration(n) * time.Second
			if n == 0 {
				*f.dst = time.Nanosecond // 0 is a value of its own, not "default"
			}
		}
	}
	if v := req.p.get("HealthCheckType"); v != "" {
		g.HealthCheckType = v
	}
	if zones := req.p.list("AvailabilityZones"); len(zones) > 0 {
		g.Zones = zones
	}
	if names := req.p.list("LoadBalancerNames"); len(names) > 0 || create {
		var services []string
		for _, n := range names {
			svc, err := serviceName(n)
			if err != nil {
				return nil, validation("Provided Load Balancers may not be valid. Please ensure they exist and try again. (%s)", clip(n))
			}
			if _, ok := s.d.Config().Services[svc]; !ok {
				return nil, validation("Provided Load Balancers may not be valid. Please ensure they exist and try again. (no load balancer %s)", clip(n))
			}
			if !req.scope.AllowsService(svc) {
				return nil, errorf(http.StatusForbidden, "AccessDenied", "key %q may not use load balancer %s", req.key, n)
			}
			services = append(services, svc)
		}
		g.Services = services
	}
	if g.MinSize > g.MaxSize {
		return nil, validation("Max bound, %d, must be greater than or equal to min bound, %d", g.MaxSize, g.MinSize)
	}
	if desired != nil && (*desired < g.MinSize || *desired > g.MaxSize) {
		return nil, validation("Desired capacity:%d must be between the specified min size:%d and max size:%d", *desired, g.MinSize, g.MaxSize)
	}
	return desired, nil
}

func (s *Server) createGroup(req *request) (any, error) {
	name, err := req.p.required("AutoScalingGroupName")
	if err != nil {
		return nil, err
	}
	exists := validation("AutoScalingGroup by this name already exists - A group with the name %s already exists", clip(name))
	exists.Code = "AlreadyExists"
	if _, ok := s.d.Config().Groups[name]; ok {
		return nil, exists
	}
	var g config.Group
	desired, err := s.groupParams(req, &g, true)
	if err != nil {
		return nil, err
	}
	g.DesiredCapacity = desired
	return nil, s.updateScaling(func(f *defs.File) error {
		if _, ok := f.Groups[name]; ok {
			return exists
		}
		f.Groups[name] = g
		return nil
	})
}

// apiGroup returns a group defined through the API (refusing the config file's).
func (s *Server) apiGroup(name string) (config.Group, error) {
	if g, ok := s.d.Definitions.Definitions().Groups[name]; ok {
		return g, nil
	}
	if _, ok := s.d.Config().Groups[name]; ok {
		return config.Group{}, validation("AutoScalingGroup %s is defined in clbd's config file; change it there", name)
	}
	return config.Group{}, validation("AutoScalingGroup name not found - %s", clip(name))
}

func (s *Server) updateGroup(req *request) (any, error) {
	name, err := req.p.required("AutoScalingGroupName")
	if err != nil {
		return nil, err
	}
	g, err := s.apiGroup(name)
	if err != nil {
		return nil, err
	}
	desired, err := s.groupParams(req, &g, false)
	if err != nil {
		return nil, err
	}
	if err := s.updateScaling(func(f *defs.File) error {
		if _, ok := f.Groups[name]; !ok {
			return validation("AutoScalingGroup name not found - %s", clip(name))
		}
		f.Groups[name] = g
		return nil
	}); err != nil {
		return nil, err
	}
	if desired != nil {
		if err := s.d.Scaling.SetDesiredCapacity(name, *desired, false, ""); err != nil {
			return nil, scalingError(err)
		}
	}
	return nil, nil
}

type asInstanceXML struct {
	InstanceId              string
	AvailabilityZone        string
	LifecycleState          string
	HealthStatus            string
	LaunchConfigurationName string
	ProtectedFromScaleIn    bool
}

type groupXML struct {
	AutoScalingGroupName             string
	AutoScalingGroupARN              string
	LaunchConfigurationName          string
	MinSize                          int
	MaxSize                          int
	DesiredCapacity                  int
	DefaultCooldown                  int
	AvailabilityZones                xmlList[string]
	LoadBalancerNames                xmlList[string]
	TargetGroupARNs                  xmlList[string]
	HealthCheckType                  string
	HealthCheckGracePeriod           int
	Instances                        xmlList[asInstanceXML]
	CreatedTime                      string
	SuspendedProcesses               xmlList[string]
	VPCZoneIdentifier                string
	EnabledMetrics                   xmlList[string]
	Tags                             xmlList[string]
	TerminationPolicies              xmlList[string]
	NewInstancesProtectedFromScaleIn bool
}

func healthStatus(in autoscale.InstanceView) string {
	if in.Healthy || in.State == autoscale.Launching || in.State == autoscale.Pending {
		return "Healthy"
	}
	return "Unhealthy"
}

func (s *Server) lbNames(services []string) xmlList[string] {
	d := s.d.Definitions.Definitions()
	out := xmlList[string]{}
	for _, svc := range services {
		if m, ok := d.LoadBalancers[svc]; ok && m.Name != "" {
			out = append(out, m.Name)
		} else {
			out = append(out, svc)
		}
	}
	return out
}

func (s *Server) groupXML(v autoscale.GroupView) groupXML {
	x := groupXML{AutoScalingGroupName: v.Name, AutoScalingGroupARN: groupARN(v.Name), LaunchConfigurationName: v.LaunchConfiguration,
		MinSize: v.MinSize, MaxSize: v.MaxSize, DesiredCapacity: v.Desired, DefaultCooldown: int(v.Cooldown / time.Second),
		AvailabilityZones: xmlList[string]{}, LoadBalancerNames: s.lbNames(v.Services), TargetGroupARNs: xmlList[string]{},
		HealthCheckType: v.HealthCheckType, HealthCheckGracePeriod: int(v.HealthCheckGracePeriod / time.Second),
		Instances: xmlList[asInstanceXML]{}, CreatedTime: asTime(v.Created), SuspendedProcesses: xmlList[string]{},
		EnabledMetrics: xmlList[string]{}, Tags: xmlList[string]{}, TerminationPolicies: xmlList[string]{"Default"}}
	if v.Created.IsZero() {
		x.CreatedTime = asTime(s.started())
	}
	for _, z := range v.Zones {
		if z != "" {
			x.AvailabilityZones = append(x.AvailabilityZones, z)
		}
	}
	for _, in := range v.Instances {
		x.Instances = append(x.Instances, asInstanceXML{InstanceId: in.ID, AvailabilityZone: in.Zone, LifecycleState: in.State,
			HealthStatus: healthStatus(in), LaunchConfigurationName: in.LaunchConfiguration})
	}
	return x
}

func (s *Server) describeGroups(req *request) (any, error) {
	names := req.p.list("AutoScalingGroupNames")
	out := xmlList[groupXML]{}
	for _, v := range s.d.Scaling.Groups() {
		if len(names) > 0 && !slices.Contains(names, v.Name) {
			continue
		}
		out = append(out, s.groupXML(v))
	}
	return struct {
		AutoScalingGroups xmlList[groupXML]
	}{out}, nil
}

func (s *Server) deleteGroup(req *request) (any, error) {
	name, err := req.p.required("AutoScalingGroupName")
	if err != nil {
		return nil, err
	}
	g, err := s.apiGroup(name)
	if err != nil {
		return nil, err
	}
	v, err := s.d.Scaling.Group(name)
	if err != nil {
		return nil, scalingError(err)
	}
	if len(v.Instances) > 0 {
		if !boolParam(req, "ForceDelete") {
			return nil, errorf(http.StatusBadRequest, "ResourceInUse", "You cannot delete an AutoScalingGroup while there are instances or pending Spot instance request(s) still in the group.")
		}
		// ForceDelete: scale to 0 (drain and terminate every instance), wait for it
		// (bounded by request_timeout), then delete.
		zero := 0
		g.MinSize, g.MaxSize, g.DesiredCapacity = 0, 0, &zero
		if err := s.updateScaling(func(f *defs.File) error { f.Groups[name] = g; return nil }); err != nil {
			return nil, err
		}
		if err := s.d.Scaling.SetDesiredCapacity(name, 0, false, ""); err != nil {
			return nil, scalingError(err)
		}
		deadline := time.Now().Add(s.d.Config().RequestTimeout)
		for {
			v, err := s.d.Scaling.Group(name)
			if err != nil {
				return nil, scalingError(err)
			}
			if len(v.Instances) == 0 {
				break
			}
			if time.Now().After(deadline) {
				return nil, errorf(http.StatusBadRequest, "ScalingActivityInProgress", "the group was scaled to 0 and its %d instances are being terminated; call again once they are gone", len(v.Instances))
			}
			select {
			case <-req.r.Context().Done():
				return nil, req.r.Context().Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil, s.updateScaling(func(f *defs.File) error {
		delete(f.Groups, name)
		return nil
	})
}

type activityXML struct {
	ActivityId           string
	AutoScalingGroupName string
	Description          string
	Cause                string
	StartTime            string
	EndTime              string `xml:",omitempty"`
	StatusCode           string
	StatusMessage        string `xml:",omitempty"`
	Progress             int
	Details              string
}

func activityOf(a autoscale.Activity) activityXML {
	x := activityXML{ActivityId: a.ID, AutoScalingGroupName: a.Group, Description: a.Description, Cause: a.Cause,
		StartTime: asTime(a.Start), StatusCode: a.Status, StatusMessage: a.Message, Progress: a.Progress, Details: "{}"}
	if !a.End.IsZero() {
		x.EndTime = asTime(a.End)
	}
	return x
}

func (s *Server) describeActivities(req *request) (any, error) {
	group := req.p.get("AutoScalingGroupName")
	if group != "" {
		if _, err := s.d.Scaling.Group(group); err != nil {
			return nil, scalingError(err)
		}
	}
	max, ok, err := intParam(req, "MaxRecords", false)
	if err != nil {
		return nil, err
	}
	if !ok || max <= 0 || max > 100 {
		max = 100
	}
	ids := req.p.list("ActivityIds")
	out := xmlList[activityXML]{}
	for _, a := range s.d.Scaling.Activities(group) {
		if len(ids) > 0 && !slices.Contains(ids, a.ID) {
			continue
		}
		if len(out) == max {
			break
		}
		out = append(out, activityOf(a))
	}
	return struct {
		Activities xmlList[activityXML]
	}{out}, nil
}

func (s *Server) setDesiredCapacity(req *request) (any, error) {
	name, err := req.p.required("AutoScalingGroupName")
	if err != nil {
		return nil, err
	}
	n, _, err := intParam(req, "DesiredCapacity", true)
	if err != nil {
		return nil, err
	}
	if _, ok := s.d.Config().Groups[name]; !ok {
		return nil, validation("AutoScalingGroup name not found - %s", clip(name))
	}
	return nil, scalingErrorOrNil(s.d.Scaling.SetDesiredCapacity(name, n, boolParam(req, "HonorCooldown"), ""))
}

func scalingErrorOrNil(err error) error {
	if err == nil {
		return nil
	}
	return scalingError(err)
}

func (s *Server) putScalingPolicy(req *request) (any, error) {
	group, err := req.p.required("AutoScalingGroupName")
	if err != nil {
		return nil, err
	}
	name, err := req.p.required("PolicyName")
	if err != nil {
		return nil, err
	}
	if t := req.p.get("PolicyType"); t != "" && t != "SimpleScaling" {
		return nil, validation("PolicyType %s: clbd serves SimpleScaling policies only", clip(t))
	}
	typ, err := req.p.required("AdjustmentType")
	if err != nil {
		return nil, err
	}
	adj, _, err := intParam(req, "ScalingAdjustment", true)
	if err != nil {
		return nil, err
	}
	p := autoscale.Policy{Name: name, Group: group, AdjustmentType: typ, ScalingAdjustment: adj}
	for _, k := range []string{"MinAdjustmentMagnitude", "MinAdjustmentStep"} {
		if n, ok, err := intParam(req, k, false); err != nil {
			return nil, err
		} else if ok {
			p.MinAdjustmentMagnitude = n
		}
	}
	if n, ok, err := intParam(req, "Cooldown", false); err != nil {
		return nil, err
	} else if ok {
		d := time.Duration(n) * time.Second
		p.Cooldown = &d
	}
	if _, ok := s.d.Config().Groups[group]; !ok {
		return nil, validation("AutoScalingGroup name not found - %s", clip(group))
	}
	p, err = s.d.Scaling.PutPolicy(p)
	if err != nil {
		return nil, scalingError(err)
	}
	return struct {
		PolicyARN string
		Alarms    xmlList[alarmRefXML]
	}{p.ARN, xmlList[alarmRefXML]{}}, nil
}

type alarmRefXML struct {
	AlarmName string
	AlarmARN  string
}

type policyXML struct {
	AutoScalingGroupName   string
	PolicyName             string
	PolicyARN              string
	PolicyType             string
	AdjustmentType         string
	ScalingAdjustment      int
	Cooldown               int `xml:",omitempty"`
	MinAdjustmentStep      int `xml:",omitempty"`
	MinAdjustmentMagnitude int `xml:",omitempty"`
	Alarms                 xmlList[alarmRefXML]
	Enabled                bool
}

func (s *Server) describeScalingPolicies(req *request) (any, error) {
	group := req.p.get("AutoScalingGroupName")
	names := req.p.list("PolicyNames")
	alarms := s.d.Scaling.Alarms()
	out := xmlList[policyXML]{}
	for _, p := range s.d.Scaling.Policies(group) {
		if len(names) > 0 && !slices.Contains(names, p.Name) && !slices.Contains(names, p.ARN) {
			continue
		}
		x := policyXML{AutoScalingGroupName: p.Group, PolicyName: p.Name, PolicyARN: p.ARN, PolicyType: "SimpleScaling",
			AdjustmentType: p.AdjustmentType, ScalingAdjustment: p.ScalingAdjustment, MinAdjustmentStep: p.MinAdjustmentMagnitude,
			MinAdjustmentMagnitude: p.MinAdjustmentMagnitude, Alarms: xmlList[alarmRefXML]{}, Enabled: true}
		if p.Cooldown != nil {
			x.Cooldown = int(*p.Cooldown / time.Second)
		}
		for _, a := range alarms {
			if slices.Contains(a.Actions, p.ARN) || slices.Contains(a.Actions, p.Name) && a.Group == p.Group {
				x.Alarms = append(x.Alarms, alarmRefXML{AlarmName: a.Name, AlarmARN: alarmARN(a.Name)})
			}
		}
		out = append(out, x)
	}
	return struct {
		ScalingPolicies xmlList[policyXML]
	}{out}, nil
}

func (s *Server) deleteScalingPolicy(req *request) (any, error) {
	name, err := req.p.required("PolicyName")
	if err != nil {
		return nil, err
	}
	return nil, scalingErrorOrNil(s.d.Scaling.DeletePolicy(req.p.get("AutoScalingGroupName"), name))
}

func (s *Server) executePolicy(req *request) (any, error) {
	name, err := req.p.required("PolicyName")
	if err != nil {
		return nil, err
	}
	return nil, scalingErrorOrNil(s.d.Scaling.ExecutePolicy(req.p.get("AutoScalingGroupName"), name, boolParam(req, "HonorCooldown")))
}

func (s *Server) terminateInstance(req *request) (any, error) {
	id, err := req.p.required("InstanceId")
	if err != nil {
		return nil, err
	}
	if _, err := req.p.required("ShouldDecrementDesiredCapacity"); err != nil {
		return nil, err
	}
	_, act, err := s.d.Scaling.TerminateInstance(id, boolParam(req, "ShouldDecrementDesiredCapacity"))
	if errors.Is(err, autoscale.ErrNotFound) {
		return nil, validation("Instance Id not found - No managed instance found for instance ID %s", clip(id))
	}
	if err != nil {
		return nil, scalingError(err)
	}
	return struct{ Activity activityXML }{activityOf(act)}, nil
}

func (s *Server) describeASInstances(req *request) (any, error) {
	ids := req.p.list("InstanceIds")
	type instXML struct {
		InstanceId              string
		AutoScalingGroupName    string
		AvailabilityZone        string
		LifecycleState          string
		HealthStatus            string
		LaunchConfigurationName string
		ProtectedFromScaleIn    bool
	}
	out := xmlList[instXML]{}
	for _, g := range s.d.Scaling.Groups() {
		for _, in := range g.Instances {
			if len(ids) > 0 && !slices.Contains(ids, in.ID) {
				continue
			}
			out = append(out, instXML{InstanceId: in.ID, AutoScalingGroupName: g.Name, AvailabilityZone: in.Zone, LifecycleState: in.State,
				HealthStatus: strings.ToUpper(healthStatus(in)), LaunchConfigurationName: in.LaunchConfiguration})
		}
	}
	return struct {
		AutoScalingInstances xmlList[instXML]
	}{out}, nil
}

func (s *Server) describeAdjustmentTypes(*request) (any, error) {
	type t struct{ AdjustmentType string }
	return struct{ AdjustmentTypes xmlList[t] }{xmlList[t]{{autoscale.ChangeInCapacity}, {autoscale.ExactCapacity}, {autoscale.PercentChangeInCapacity}}}, nil
}

func (s *Server) describeProcessTypes(*request) (any, error) {
	type t struct{ ProcessName string }
	return struct{ Processes xmlList[t] }{xmlList[t]{{"Launch"}, {"Terminate"}, {"HealthCheck"}, {"ReplaceUnhealthy"}, {"AlarmNotification"}}}, nil
}

func (s *Server) describeTerminationPolicyTypes(*request) (any, error) {
	return struct{ TerminationPolicyTypes xmlList[string] }{xmlList[string]{"Default"}}, nil
}

// started is when this front was built: the CreatedTime of what the config file defines.
func (s *Server) started() time.Time { return s.created }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
