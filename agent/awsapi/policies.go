package awsapi

import (
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"

	"clb/agent/config"
	"clb/agent/defs"
)

// Policies: LB cookie stickiness only. clb's stickiness (sticky: true, haproxy's cookie
// CLBSRV insert indirect nocache) is a session cookie and belongs to the service, so:
// CookieExpirationPeriod other than none/0 is refused, and attaching a policy to any HTTP or
// HTTPS listener turns stickiness on for all of the load balancer's HTTP(S) listeners; it goes
// off when no listener has a policy left.

const lbCookieType = "LBCookieStickinessPolicyType"

var policyNameRe = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

func (s *Server) createLBCookiePolicy(req *request) (any, error) {
	l, err := s.find(req)
	if err != nil {
		return nil, err
	}
	name, err := req.p.required("PolicyName")
	if err != nil {
		return nil, err
	}
	if !policyNameRe.MatchString(name) {
		return nil, validation("PolicyName %q: want 1-64 of A-Z a-z 0-9 -", clip(name))
	}
	period := 0
	if v := req.p.get("CookieExpirationPeriod"); v != "" {
		if period, err = strconv.Atoi(v); err != nil || period < 0 {
			return nil, validation("CookieExpirationPeriod %q: want seconds", clip(v))
		}
	}
	if period > 0 {
		return nil, errorf(http.StatusConflict, "InvalidConfigurationRequest", "CookieExpirationPeriod %d: clbd's stickiness cookie is a session cookie; give no period (or 0)", period)
	}
	if _, ok := l.meta.Policies[name]; ok {
		return nil, errorf(http.StatusBadRequest, "DuplicatePolicyName", "load balancer %s already has a policy named %s", l.name(), name)
	}
	return nil, s.update(req, l, func(f *defs.File) error {
		meta := f.LoadBalancers[l.service]
		meta.Policies = maps.Clone(meta.Policies)
		if meta.Policies == nil {
			meta.Policies = map[string]defs.Policy{}
		}
		meta.Policies[name] = defs.Policy{Type: lbCookieType, CookieExpirationPeriod: period}
		f.LoadBalancers[l.service] = meta
		return nil
	})
}

func (s *Server) deletePolicy(req *request) (any, error) {
	l, err := s.find(req)
	if err != nil {
		return nil, err
	}
	name, err := req.p.required("PolicyName")
	if err != nil {
		return nil, err
	}
	if _, ok := l.meta.Policies[name]; !ok {
		return nil, nil
	}
	for port, names := range l.meta.ListenerPolicies {
		if slices.Contains(names, name) {
			return nil, errorf(http.StatusConflict, "InvalidConfigurationRequest", "policy %s is attached to the listener on port %d; detach it first", name, port)
		}
	}
	return nil, s.update(req, l, func(f *defs.File) error {
		meta := f.LoadBalancers[l.service]
		meta.Policies = maps.Clone(meta.Policies)
		delete(meta.Policies, name)
		f.LoadBalancers[l.service] = meta
		return nil
	})
}

// setListenerPolicies is SetLoadBalancerPoliciesOfListener: the policies of one listener
// (none: cleared; boto 2 sends an empty PolicyNames, libcloud none).
func (s *Server) setListenerPolicies(req *request) (any, error) {
	l, err := s.find(req)
	if err != nil {
		return nil, err
	}
	port, err := portParam(req.p.get("LoadBalancerPort"), "LoadBalancerPort")
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(l.svc.Listeners, func(o config.Listener) bool { return o.Port == port })
	if i < 0 {
		return nil, errorf(http.StatusBadRequest, "ListenerNotFound", "load balancer %s has no listener on port %d", l.name(), port)
	}
	var names []string
	for _, n := range req.p.list("PolicyNames") {
		if n == "" {
			continue
		}
		if _, ok := l.meta.Policies[n]; !ok {
			return nil, errorf(http.StatusBadRequest, "PolicyNotFound", "load balancer %s has no policy named %s", l.name(), clip(n))
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if len(names) > 1 {
		return nil, errorf(http.StatusConflict, "InvalidConfigurationRequest", "a listener takes one stickiness policy")
	}
	if len(names) > 0 && l.svc.Listeners[i].Protocol == "tcp" {
		return nil, errorf(http.StatusConflict, "InvalidConfigurationRequest", "cookie stickiness needs an HTTP or HTTPS listener; port %d is TCP", port)
	}
	return nil, s.update(req, l, func(f *defs.File) error {
		meta := f.LoadBalancers[l.service]
		lp := map[int][]string{}
		for p, n := range meta.ListenerPolicies {
			lp[p] = slices.Clone(n)
		}
		if len(names) == 0 {
			delete(lp, port)
		} else {
			lp[port] = names
		}
		meta.ListenerPolicies = lp
		f.LoadBalancers[l.service] = meta
		svc := f.Services[l.service]
		svc.Sticky = len(lp) > 0
		f.Services[l.service] = svc
		return nil
	})
}

type policyAttribute struct {
	AttributeName  string
	AttributeValue string
}

type policyDescription struct {
	PolicyName                  string
	PolicyTypeName              string
	PolicyAttributeDescriptions xmlList[policyAttribute]
}

func (s *Server) describePolicies(req *request) (any, error) {
	out := xmlList[policyDescription]{}
	if req.p.get("LoadBalancerName") == "" {
		return struct{ PolicyDescriptions xmlList[policyDescription] }{out}, nil
	}
	l, err := s.find(req)
	if err != nil {
		return nil, err
	}
	want := req.p.list("PolicyNames")
	for _, n := range want {
		if _, ok := l.meta.Policies[n]; !ok {
			return nil, errorf(http.StatusBadRequest, "PolicyNotFound", "load balancer %s has no policy named %s", l.name(), clip(n))
		}
	}
	for _, n := range slices.Sorted(maps.Keys(l.meta.Policies)) {
		if len(want) > 0 && !slices.Contains(want, n) {
			continue
		}
		p := l.meta.Policies[n]
		out = append(out, policyDescription{PolicyName: n, PolicyTypeName: p.Type, PolicyAttributeDescriptions: xmlList[policyAttribute]{
			{"CookieExpirationPeriod", strconv.Itoa(p.CookieExpirationPeriod)}}})
	}
	return struct{ PolicyDescriptions xmlList[policyDescription] }{out}, nil
}

type policyAttributeType struct {
	AttributeName string
	AttributeType string
	Description   string
	Cardinality   string
}

type policyTypeDescription struct {
	PolicyTypeName                  string
	Description                     string
	PolicyAttributeTypeDescriptions xmlList[policyAttributeType]
}

// describePolicyTypes lists the policy types clbd serves: LB cookie stickiness only.
func (s *Server) describePolicyTypes(req *request) (any, error) {
	served := policyTypeDescription{PolicyTypeName: lbCookieType, Description: "Stickiness policy with session lifetimes controlled by the browser (user-agent): clbd's cookie is a session cookie.",
		PolicyAttributeTypeDescriptions: xmlList[policyAttributeType]{{"CookieExpirationPeriod", "Long", "clbd accepts only 0 (a session cookie).", "ZERO_OR_ONE"}}}
	for _, n := range req.p.list("PolicyTypeNames") {
		if n != lbCookieType {
			return nil, errorf(http.StatusBadRequest, "PolicyTypeNotFound", "policy type %s is not served by clbd (it serves %s)", clip(n), lbCookieType)
		}
	}
	return struct {
		PolicyTypeDescriptions xmlList[policyTypeDescription]
	}{xmlList[policyTypeDescription]{served}}, nil
}

// lbCookiePolicies lists a load balancer's LB cookie policies for DescribeLoadBalancers.
func lbCookiePolicies(meta defs.LoadBalancer) xmlList[lbCookiePolicy] {
	out := xmlList[lbCookiePolicy]{}
	for _, n := range slices.Sorted(maps.Keys(meta.Policies)) {
		if p := meta.Policies[n]; p.Type == lbCookieType {
			out = append(out, lbCookiePolicy{PolicyName: n, CookieExpirationPeriod: p.CookieExpirationPeriod})
		}
	}
	return out
}

type lbCookiePolicy struct {
	PolicyName             string
	CookieExpirationPeriod int
}
