package awsapi

import (
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"clb/agent/config"
	"clb/agent/defs"
)

// Policies. clbd serves three policy types, mapped onto the service:
//
//   - LBCookieStickinessPolicyType: haproxy's own cookie CLBSRV (sticky: true), with
//     CookieExpirationPeriod as its Max-Age (sticky_max_age; 0 or none: a session cookie).
//   - AppCookieStickinessPolicyType: the application's cookie CookieName (sticky_cookie):
//     haproxy prefixes its value with the member's slot, so the client stays with the member
//     that set it as long as the application keeps its cookie.
//   - ProxyProtocolPolicyType (CreateLoadBalancerPolicy, then
//     SetLoadBalancerPoliciesForBackendServer on an InstancePort): the listeners whose
//     InstancePort it is send the PROXY protocol v1 header to members (proxy_protocol), also
//     on health checks.
//
// Stickiness belongs to the service in clb, not to a listener: the stickiness policy of the
// load balancer's HTTP(S) listeners is the same one on each of them (a listener with another
// one is refused with InvalidConfigurationRequest); stickiness is on while a listener has it
// and off when none has. The policies are kept with the load balancer (defs.LoadBalancer) and
// the service is derived from them (derivePolicies) at every change of policies or listeners.

const (
	lbCookieType  = "LBCookieStickinessPolicyType"
	appCookieType = "AppCookieStickinessPolicyType"
	proxyType     = "ProxyProtocolPolicyType"
)

var policyNameRe = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// maxCookiePeriod bounds CookieExpirationPeriod (and sticky_max_age): ten years.
const maxCookiePeriod = 10 * 365 * 24 * 3600

func stickiness(p defs.Policy) bool { return p.Type == lbCookieType || p.Type == appCookieType }

// newPolicy adds a policy to an API load balancer.
func (s *Server) newPolicy(req *request, p defs.Policy) (any, error) {
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
	if _, ok := l.meta.Policies[name]; ok {
		return nil, errorf(http.StatusBadRequest, "DuplicatePolicyName", "load balancer %s already has a policy named %s", l.name(), name)
	}
	return nil, s.update(req, l, func(f *defs.File) error {
		meta := f.LoadBalancers[l.service]
		meta.Policies = maps.Clone(meta.Policies)
		if meta.Policies == nil {
			meta.Policies = map[string]defs.Policy{}
		}
		meta.Policies[name] = p
		f.LoadBalancers[l.service] = meta
		return nil
	})
}

func (s *Server) createLBCookiePolicy(req *request) (any, error) {
	period := 0
	if v := req.p.get("CookieExpirationPeriod"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxCookiePeriod {
			return nil, validation("CookieExpirationPeriod %q: want 0-%d seconds", clip(v), maxCookiePeriod)
		}
		period = n
	}
	return s.newPolicy(req, defs.Policy{Type: lbCookieType, CookieExpirationPeriod: period})
}

func (s *Server) createAppCookiePolicy(req *request) (any, error) {
	cookie, err := req.p.required("CookieName")
	if err != nil {
		return nil, err
	}
	if !config.ValidCookieName(cookie) {
		return nil, validation("CookieName %q: want a cookie name, 1-128 of A-Z a-z 0-9 and !#$%%&'*+-.^_`|~", clip(cookie))
	}
	return s.newPolicy(req, defs.Policy{Type: appCookieType, CookieName: cookie})
}

// createPolicy is CreateLoadBalancerPolicy: ProxyProtocolPolicyType only (the stickiness
// types have their own actions; SSL negotiation and back-end authentication are not served).
func (s *Server) createPolicy(req *request) (any, error) {
	typ, err := req.p.required("PolicyTypeName")
	if err != nil {
		return nil, err
	}
	if typ != proxyType {
		return nil, errorf(http.StatusBadRequest, "PolicyTypeNotFound", "policy type %s is not served by CreateLoadBalancerPolicy; clbd serves %s (and the stickiness types through their own actions)", clip(typ), proxyType)
	}
	on, seen := false, false
	for i, a := range req.p.structs("PolicyAttributes") {
		if a["AttributeName"] != "ProxyProtocol" {
			return nil, errorf(http.StatusBadRequest, "InvalidConfigurationRequest", "PolicyAttributes.member.%d: attribute %q: %s takes ProxyProtocol only", i+1, clip(a["AttributeName"]), proxyType)
		}
		switch strings.ToLower(a["AttributeValue"]) {
		case "true":
			on = true
		case "false":
			on = false
		default:
			return nil, errorf(http.StatusBadRequest, "InvalidConfigurationRequest", "PolicyAttributes.member.%d: ProxyProtocol %q: want true or false", i+1, clip(a["AttributeValue"]))
		}
		seen = true
	}
	if !seen {
		return nil, errorf(http.StatusBadRequest, "InvalidConfigurationRequest", "%s needs the attribute ProxyProtocol", proxyType)
	}
	return s.newPolicy(req, defs.Policy{Type: proxyType, ProxyProtocol: on})
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
	for _, attached := range []struct {
		what  string
		ports map[int][]string
	}{{"listener", l.meta.ListenerPolicies}, {"back-end server port", l.meta.BackendPolicies}} {
		for _, port := range slices.Sorted(maps.Keys(attached.ports)) {
			if slices.Contains(attached.ports[port], name) {
				return nil, errorf(http.StatusConflict, "InvalidConfigurationRequest", "policy %s is attached to the %s %d; detach it first", name, attached.what, port)
			}
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

// policyNames reads PolicyNames.member.N: each a policy of the load balancer that ok
// accepts, no repeats (empty members are skipped: boto 2 sends an empty list as one).
func policyNames(req *request, l lb, ok func(defs.Policy) error) ([]string, error) {
	var names []string
	for _, n := range req.p.list("PolicyNames") {
		if n == "" || slices.Contains(names, n) {
			continue
		}
		p, found := l.meta.Policies[n]
		if !found {
			return nil, errorf(http.StatusBadRequest, "PolicyNotFound", "load balancer %s has no policy named %s", l.name(), clip(n))
		}
		if err := ok(p); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, nil
}

// setListenerPolicies is SetLoadBalancerPoliciesOfListener: the stickiness policy of one
// listener (none: cleared; boto 2 sends an empty PolicyNames, libcloud none).
func (s *Server) setListenerPolicies(req *request) (any, error) {
	l, li, err := s.listenerOf(req)
	if err != nil {
		return nil, err
	}
	names, err := policyNames(req, l, func(p defs.Policy) error {
		if !stickiness(p) {
			return errorf(http.StatusConflict, "InvalidConfigurationRequest", "a %s policy goes on a back-end server port (SetLoadBalancerPoliciesForBackendServer), not on a listener", p.Type)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(names) > 1 {
		return nil, errorf(http.StatusConflict, "InvalidConfigurationRequest", "a listener takes one stickiness policy")
	}
	if len(names) > 0 && li.Protocol != "http" && li.Protocol != "https" {
		return nil, errorf(http.StatusConflict, "InvalidConfigurationRequest", "cookie stickiness needs an HTTP or HTTPS listener; port %d is %s", li.Port, strings.ToUpper(li.Protocol))
	}
	if len(names) > 0 {
		want := l.meta.Policies[names[0]]
		for _, port := range slices.Sorted(maps.Keys(l.meta.ListenerPolicies)) {
			other := l.meta.ListenerPolicies[port]
			if port != li.Port && len(other) > 0 && l.meta.Policies[other[0]] != want {
				return nil, errorf(http.StatusConflict, "InvalidConfigurationRequest", "the listener on port %d has stickiness policy %s: clbd's stickiness belongs to the load balancer, so every listener takes the same one", port, other[0])
			}
		}
	}
	return nil, s.updatePolicies(req, l, func(meta *defs.LoadBalancer) {
		meta.ListenerPolicies = setPorts(meta.ListenerPolicies, li.Port, names)
	})
}

// setBackendPolicies is SetLoadBalancerPoliciesForBackendServer: the ProxyProtocol policies
// of an instance port (none: cleared). Listeners whose InstancePort it is, now or later,
// send the PROXY header.
func (s *Server) setBackendPolicies(req *request) (any, error) {
	l, err := s.find(req)
	if err != nil {
		return nil, err
	}
	port, err := portParam(req.p.get("InstancePort"), "InstancePort")
	if err != nil {
		return nil, err
	}
	names, err := policyNames(req, l, func(p defs.Policy) error {
		if p.Type != proxyType {
			return errorf(http.StatusConflict, "InvalidConfigurationRequest", "a %s policy goes on a listener (SetLoadBalancerPoliciesOfListener), not on a back-end server port", p.Type)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return nil, s.updatePolicies(req, l, func(meta *defs.LoadBalancer) {
		meta.BackendPolicies = setPorts(meta.BackendPolicies, port, names)
	})
}

// updatePolicies changes the policy attachments of an API load balancer and derives its
// service from them.
func (s *Server) updatePolicies(req *request, l lb, fn func(meta *defs.LoadBalancer)) error {
	if l.file {
		return immutable(l.name())
	}
	next := l.meta
	next.ListenerPolicies, next.BackendPolicies = defs.ClonePorts(l.meta.ListenerPolicies), defs.ClonePorts(l.meta.BackendPolicies)
	fn(&next)
	svc := derivePolicies(l.svc, next)
	if slices.Equal(svc.Listeners, l.svc.Listeners) && stickyOf(svc) == stickyOf(l.svc) &&
		fmt.Sprint(next.ListenerPolicies, next.BackendPolicies) == fmt.Sprint(l.meta.ListenerPolicies, l.meta.BackendPolicies) {
		return nil
	}
	return s.update(req, l, func(f *defs.File) error {
		meta := f.LoadBalancers[l.service]
		meta.ListenerPolicies, meta.BackendPolicies = next.ListenerPolicies, next.BackendPolicies
		f.LoadBalancers[l.service] = meta
		f.Services[l.service] = derivePolicies(f.Services[l.service], meta)
		return nil
	})
}

type sticky struct {
	on     bool
	cookie string
	maxAge time.Duration
}

func stickyOf(svc config.Service) sticky {
	return sticky{svc.Sticky, svc.StickyCookie, svc.StickyMaxAge}
}

// derivePolicies returns svc with stickiness and the listeners' PROXY protocol made from the
// load balancer's attached policies. The listeners are a new slice.
func derivePolicies(svc config.Service, meta defs.LoadBalancer) config.Service {
	svc.Sticky, svc.StickyCookie, svc.StickyMaxAge = false, "", 0
	for _, port := range slices.Sorted(maps.Keys(meta.ListenerPolicies)) {
		names := meta.ListenerPolicies[port]
		if len(names) == 0 {
			continue
		}
		p := meta.Policies[names[0]]
		svc.Sticky = true
		if p.Type == appCookieType {
			svc.StickyCookie = p.CookieName
		} else {
			svc.StickyMaxAge = time.Duration(p.CookieExpirationPeriod) * time.Second
		}
		break
	}
	svc.Listeners = slices.Clone(svc.Listeners)
	for i, li := range svc.Listeners {
		on := false
		for _, n := range meta.BackendPolicies[li.MemberPort] {
			on = on || meta.Policies[n].ProxyProtocol
		}
		svc.Listeners[i].ProxyProtocol = on
	}
	return svc
}

// setPorts returns m with port's names set (none: removed).
func setPorts(m map[int][]string, port int, names []string) map[int][]string {
	m = defs.ClonePorts(m)
	if m == nil {
		m = map[int][]string{}
	}
	if len(names) == 0 {
		delete(m, port)
	} else {
		m[port] = names
	}
	return m
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

func policyAttributes(p defs.Policy) xmlList[policyAttribute] {
	switch p.Type {
	case appCookieType:
		return xmlList[policyAttribute]{{"CookieName", p.CookieName}}
	case proxyType:
		return xmlList[policyAttribute]{{"ProxyProtocol", strconv.FormatBool(p.ProxyProtocol)}}
	}
	return xmlList[policyAttribute]{{"CookieExpirationPeriod", strconv.Itoa(p.CookieExpirationPeriod)}}
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
		out = append(out, policyDescription{PolicyName: n, PolicyTypeName: p.Type, PolicyAttributeDescriptions: policyAttributes(p)})
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

// policyTypes are the policy types clbd serves.
var policyTypes = []policyTypeDescription{
	{PolicyTypeName: appCookieType, Description: "Stickiness policy with session lifetimes controlled by the lifetime of the application-generated cookie.",
		PolicyAttributeTypeDescriptions: xmlList[policyAttributeType]{{"CookieName", "String", "The name of the application cookie used for stickiness.", "ONE"}}},
	{PolicyTypeName: lbCookieType, Description: "Stickiness policy with session lifetimes controlled by the browser (user-agent) or a specified expiration period.",
		PolicyAttributeTypeDescriptions: xmlList[policyAttributeType]{{"CookieExpirationPeriod", "Long", "The time period, in seconds, after which the cookie should be considered stale; none or 0 is a session cookie.", "ZERO_OR_ONE"}}},
	{PolicyTypeName: proxyType, Description: "Policy that controls whether to include the IP address and port of the originating request for TCP messages (PROXY protocol v1 to the members).",
		PolicyAttributeTypeDescriptions: xmlList[policyAttributeType]{{"ProxyProtocol", "Boolean", "Enable the PROXY protocol on the instance port.", "ONE"}}},
}

func (s *Server) describePolicyTypes(req *request) (any, error) {
	want := req.p.list("PolicyTypeNames")
	out := xmlList[policyTypeDescription]{}
	for _, n := range want {
		if !slices.ContainsFunc(policyTypes, func(t policyTypeDescription) bool { return t.PolicyTypeName == n }) {
			return nil, errorf(http.StatusBadRequest, "PolicyTypeNotFound", "policy type %s is not served by clbd (it serves %s, %s and %s)", clip(n), appCookieType, lbCookieType, proxyType)
		}
	}
	for _, t := range policyTypes {
		if len(want) == 0 || slices.Contains(want, t.PolicyTypeName) {
			out = append(out, t)
		}
	}
	return struct {
		PolicyTypeDescriptions xmlList[policyTypeDescription]
	}{out}, nil
}

type lbCookiePolicy struct {
	PolicyName             string
	CookieExpirationPeriod int
}

type appCookiePolicy struct {
	PolicyName string
	CookieName string
}

type backendDescription struct {
	InstancePort int
	PolicyNames  xmlList[string]
}

// describePolicies fills a load balancer description's policies and back-end servers.
func describePolicies(d *lbDescription, meta defs.LoadBalancer) {
	d.Policies.AppCookieStickinessPolicies = xmlList[appCookiePolicy]{}
	d.Policies.LBCookieStickinessPolicies = xmlList[lbCookiePolicy]{}
	d.Policies.OtherPolicies = xmlList[string]{}
	for _, n := range slices.Sorted(maps.Keys(meta.Policies)) {
		switch p := meta.Policies[n]; p.Type {
		case lbCookieType:
			d.Policies.LBCookieStickinessPolicies = append(d.Policies.LBCookieStickinessPolicies, lbCookiePolicy{n, p.CookieExpirationPeriod})
		case appCookieType:
			d.Policies.AppCookieStickinessPolicies = append(d.Policies.AppCookieStickinessPolicies, appCookiePolicy{n, p.CookieName})
		default:
			d.Policies.OtherPolicies = append(d.Policies.OtherPolicies, n)
		}
	}
	d.BackendServerDescriptions = xmlList[backendDescription]{}
	for _, port := range slices.Sorted(maps.Keys(meta.BackendPolicies)) {
		d.BackendServerDescriptions = append(d.BackendServerDescriptions, backendDescription{port, append(xmlList[string]{}, meta.BackendPolicies[port]...)})
	}
}
