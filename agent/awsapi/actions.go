package awsapi

import (
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"clb/agent/config"
	"clb/agent/defs"
	"clb/internal/model"
	"clb/internal/store"
)

// How ELB maps onto clb (README, "The AWS ELB API"):
//
//   - A load balancer is a service; its name is the service name lower-cased (ELB names are
//     compared without case; the spelling given at creation is echoed back). Services of the
//     config file are load balancers too: visible, registrable, immutable (409
//     InvalidConfigurationRequest).
//   - An instance is a member named by its instance id: an id from the instance registry
//     (clb_register --instance-id) takes its address and zone from there; an IP address,
//     IP:port or a dotted host name is used as the address itself. Anything else is
//     InvalidInstance, and the whole call changes nothing. Members registered natively show
//     their member name as InstanceId. The port is the first listener's InstancePort.
//   - Availability zones are clb zones: disabling one gives its members weight 0 (no new
//     requests; in-flight ones finish).

type handler func(req *request) (any, error)

func (s *Server) actions() map[string]handler {
	return map[string]handler{
		"CreateLoadBalancer":                      s.createLoadBalancer,
		"DeleteLoadBalancer":                      s.deleteLoadBalancer,
		"DescribeLoadBalancers":                   s.describeLoadBalancers,
		"ConfigureHealthCheck":                    s.configureHealthCheck,
		"RegisterInstancesWithLoadBalancer":       s.registerInstances,
		"DeregisterInstancesFromLoadBalancer":     s.deregisterInstances,
		"DescribeInstanceHealth":                  s.describeInstanceHealth,
		"EnableAvailabilityZonesForLoadBalancer":  s.setZones(true),
		"DisableAvailabilityZonesForLoadBalancer": s.setZones(false),
		"CreateLoadBalancerListeners":             s.createListeners,
		"DeleteLoadBalancerListeners":             s.deleteListeners,
		"DescribeLoadBalancerAttributes":          s.describeAttributes,
		"ModifyLoadBalancerAttributes":            s.modifyAttributes,
		"AddTags":                                 s.addTags,
		"RemoveTags":                              s.removeTags,
		"DescribeTags":                            s.describeTags,
		"SetLoadBalancerListenerSSLCertificate":   s.setCertificate,
		"CreateLBCookieStickinessPolicy":          s.createLBCookiePolicy,
		"CreateAppCookieStickinessPolicy":         s.createAppCookiePolicy,
		"CreateLoadBalancerPolicy":                s.createPolicy,
		"SetLoadBalancerPoliciesForBackendServer": s.setBackendPolicies,
		"DeleteLoadBalancerPolicy":                s.deletePolicy,
		"SetLoadBalancerPoliciesOfListener":       s.setListenerPolicies,
		"DescribeLoadBalancerPolicies":            s.describePolicies,
		"DescribeLoadBalancerPolicyTypes":         s.describePolicyTypes,
	}
}

var elbNameRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?$`)

func notFound(name string) *Error {
	return errorf(http.StatusBadRequest, "LoadBalancerNotFound", "There is no ACTIVE Load Balancer named '%s'", clip(name))
}

func immutable(name string) *Error {
	return errorf(http.StatusConflict, "InvalidConfigurationRequest", "load balancer %s is defined in clbd's config file; change it there", name)
}

// lb is a load balancer as the front sees it.
type lb struct {
	service string
	svc     config.Service // from the running config, defaults filled
	meta    defs.LoadBalancer
	file    bool // defined in the config file
}

func (l lb) name() string {
	if l.meta.Name != "" {
		return l.meta.Name
	}
	return l.service
}

// zones are the load balancer's availability zones: those it was created or enabled with
// (API load balancers), else the zones of its members that are not disabled.
func (l lb) zones(cfg *config.Config, members []model.Member) []string {
	if !l.file && len(l.meta.Zones) > 0 {
		return slices.Clone(l.meta.Zones)
	}
	var out []string
	for _, m := range members {
		if m.Zone != "" && !slices.Contains(out, m.Zone) && !slices.Contains(cfg.DisabledZones[l.service], m.Zone) {
			out = append(out, m.Zone)
		}
	}
	slices.Sort(out)
	return out
}

// serviceName maps an ELB name to its service name.
func serviceName(name string) (string, error) {
	if !elbNameRe.MatchString(name) {
		return "", validation("LoadBalancerName %q: want 1-32 of A-Z a-z 0-9 and '-', not starting or ending with '-'", clip(name))
	}
	return strings.ToLower(name), nil
}

// find returns the load balancer named by the LoadBalancerName parameter, checking the key's
// scope.
func (s *Server) find(req *request) (lb, error) {
	name, err := req.p.required("LoadBalancerName")
	if err != nil {
		return lb{}, err
	}
	return s.lookup(req, name)
}

func (s *Server) lookup(req *request, name string) (lb, error) {
	service, err := serviceName(name)
	if err != nil {
		return lb{}, notFound(name)
	}
	if !req.scope.AllowsService(service) {
		return lb{}, errorf(http.StatusForbidden, "AccessDenied", "key %q has scope %s: it may not use load balancer %s", req.key, req.scope, name)
	}
	svc, ok := s.d.Config().Services[service]
	if !ok {
		return lb{}, notFound(name)
	}
	d := s.d.Definitions.Definitions()
	_, api := d.Services[service]
	return lb{service: service, svc: svc, meta: d.LoadBalancers[service], file: !api}, nil
}

// update changes an API load balancer's definitions and waits for the apply.
func (s *Server) update(req *request, l lb, fn func(f *defs.File) error) error {
	if l.file {
		return immutable(l.name())
	}
	if err := s.d.Definitions.UpdateDefinitions(l.service, fn); err != nil {
		return defsError(err)
	}
	return s.wait(req, s.d.Applier.Trigger())
}

func defsError(err error) error {
	var ae *Error
	switch {
	case errors.As(err, &ae):
		return err
	case errors.Is(err, defs.ErrFileService):
		return errorf(http.StatusConflict, "InvalidConfigurationRequest", "%v", err)
	case errors.Is(err, defs.ErrInvalid):
		return errorf(http.StatusConflict, "InvalidConfigurationRequest", "%v", err)
	case errors.Is(err, model.ErrInvalid):
		return validation("%v", err)
	case errors.Is(err, store.ErrNotSaved), errors.Is(err, store.ErrUnavailable):
		return &Error{Status: http.StatusServiceUnavailable, Code: "ServiceUnavailable", Msg: "the change was not saved: " + err.Error(), Receiver: true}
	}
	return err
}

// wait waits for the apply of a saved change, bounded by request_timeout: 503
// ServiceUnavailable (botocore retries it) when haproxy does not run it in time.
func (s *Server) wait(req *request, done <-chan error) error {
	t := time.NewTimer(s.d.Config().RequestTimeout)
	defer t.Stop()
	var err error
	select {
	case err = <-done:
	case <-t.C:
		err = errors.New("timed out waiting for haproxy; it will be applied later")
	case <-req.r.Context().Done():
		err = errors.New("request cancelled")
	}
	if err != nil {
		return &Error{Status: http.StatusServiceUnavailable, Code: "ServiceUnavailable", Msg: "change saved but not applied: " + err.Error(), Receiver: true}
	}
	return nil
}

// --- listeners

type xmlListener struct {
	Protocol         string
	LoadBalancerPort int
	InstanceProtocol string
	InstancePort     int
	SSLCertificateID string `xml:"SSLCertificateId,omitempty"`
}

// listeners parses Listeners.member.N, with the SSLCertificateId of each HTTPS listener by
// port.
func (s *Server) listeners(req *request) ([]config.Listener, map[int]string, error) {
	raw := req.p.structs("Listeners")
	if len(raw) == 0 {
		return nil, nil, validation("1 validation error detected: Value null at 'listeners' failed to satisfy constraint: Member must not be null")
	}
	var out []config.Listener
	certs := map[int]string{}
	for i, m := range raw {
		where := fmt.Sprintf("Listeners.member.%d", i+1)
		port, err := portParam(m["LoadBalancerPort"], where+".LoadBalancerPort")
		if err != nil {
			return nil, nil, err
		}
		iport, err := portParam(m["InstancePort"], where+".InstancePort")
		if err != nil {
			return nil, nil, err
		}
		proto := strings.ToUpper(m["Protocol"])
		iproto := strings.ToUpper(m["InstanceProtocol"])
		l := config.Listener{Port: port, MemberPort: iport}
		switch proto {
		case "HTTP":
			l.Protocol = "http"
		case "TCP":
			l.Protocol = "tcp"
		case "HTTPS":
			l.Protocol = "https"
			path, err := s.certificate(m["SSLCertificateId"])
			if err != nil {
				return nil, nil, err
			}
			l.Certificate, certs[port] = path, m["SSLCertificateId"]
		case "SSL":
			l.Protocol = "ssl"
			path, err := s.certificate(m["SSLCertificateId"])
			if err != nil {
				return nil, nil, err
			}
			l.Certificate, certs[port] = path, m["SSLCertificateId"]
		case "":
			return nil, nil, validation("%s.Protocol: missing", where)
		default:
			return nil, nil, errorf(http.StatusBadRequest, "UnsupportedProtocol", "%s: protocol %q: want HTTP, HTTPS, TCP or SSL", where, clip(m["Protocol"]))
		}
		tcp := proto == "TCP" || proto == "SSL"
		if iproto == "" {
			iproto = "HTTP"
			if tcp {
				iproto = "TCP"
			}
		}
		if iproto != "HTTP" && iproto != "TCP" || (iproto == "TCP") != tcp {
			return nil, nil, errorf(http.StatusConflict, "InvalidConfigurationRequest", "%s: InstanceProtocol %s with Protocol %s: clbd speaks plain HTTP to the members of HTTP and HTTPS listeners and plain TCP to those of TCP and SSL listeners (no TLS to members)", where, iproto, proto)
		}
		if m["SSLCertificateId"] != "" && proto != "HTTPS" && proto != "SSL" {
			return nil, nil, validation("%s: SSLCertificateId is only for HTTPS and SSL listeners", where)
		}
		out = append(out, l)
	}
	return out, certs, nil
}

var certNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// certificate maps an SSLCertificateId to its PEM file: NAME, or an ARN whose last path
// element is NAME (arn:aws:iam::123456789012:server-certificate/NAME), is
// aws_cert_dir/NAME.pem, which must exist.
func (s *Server) certificate(id string) (string, error) {
	if id == "" {
		return "", validation("an HTTPS listener needs an SSLCertificateId")
	}
	dir := s.d.Config().AWSCertDir
	if dir == "" {
		return "", errorf(http.StatusBadRequest, "CertificateNotFound", "certificate %q: clbd has no aws_cert_dir configured, so it knows no certificates", clip(id))
	}
	name := id
	if strings.HasPrefix(id, "arn:") {
		name = id[strings.LastIndexAny(id, "/:")+1:]
	}
	if !certNameRe.MatchString(name) {
		return "", errorf(http.StatusBadRequest, "CertificateNotFound", "certificate %q: want NAME or an ARN ending in /NAME, NAME of A-Z a-z 0-9 . _ -", clip(id))
	}
	path, err := filepath.Abs(filepath.Join(dir, name+".pem"))
	if err != nil {
		return "", err
	}
	if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
		return "", errorf(http.StatusBadRequest, "CertificateNotFound", "certificate %q: no file %s.pem in aws_cert_dir", clip(id), name)
	}
	return path, nil
}

// listenerOf returns the load balancer named by LoadBalancerName and its listener on
// LoadBalancerPort (ListenerNotFound when it has none).
func (s *Server) listenerOf(req *request) (lb, config.Listener, error) {
	l, err := s.find(req)
	if err != nil {
		return lb{}, config.Listener{}, err
	}
	port, err := portParam(req.p.get("LoadBalancerPort"), "LoadBalancerPort")
	if err != nil {
		return lb{}, config.Listener{}, err
	}
	i := slices.IndexFunc(l.svc.Listeners, func(o config.Listener) bool { return o.Port == port })
	if i < 0 {
		return lb{}, config.Listener{}, errorf(http.StatusBadRequest, "ListenerNotFound", "load balancer %s has no listener on port %d", l.name(), port)
	}
	return l, l.svc.Listeners[i], nil
}

func portParam(v, name string) (int, error) {
	if v == "" {
		return 0, validation("%s: missing", name)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		return 0, validation("%s %q: want 1-65535", name, clip(v))
	}
	return n, nil
}

func xmlListeners(ls []config.Listener, meta defs.LoadBalancer) xmlList[listenerDescription] {
	certs := meta.Certificates
	out := xmlList[listenerDescription]{}
	for _, l := range ls {
		p := strings.ToUpper(l.Protocol)
		ip := "HTTP"
		if l.Protocol == "tcp" || l.Protocol == "ssl" {
			ip = "TCP"
		}
		x := xmlListener{Protocol: p, LoadBalancerPort: l.Port, InstanceProtocol: ip, InstancePort: l.MemberPort}
		if l.Certificate != "" {
			x.SSLCertificateID = certs[l.Port]
			if x.SSLCertificateID == "" {
				x.SSLCertificateID = l.Certificate // a config-file service: its PEM path
			}
		}
		out = append(out, listenerDescription{Listener: x, PolicyNames: append(xmlList[string]{}, meta.ListenerPolicies[l.Port]...)})
	}
	return out
}

type listenerDescription struct {
	Listener    xmlListener
	PolicyNames xmlList[string]
}

// --- create, delete, describe

func (s *Server) zonesParam(req *request, required bool) ([]string, error) {
	zones := req.p.list("AvailabilityZones")
	if required && len(zones) == 0 {
		return nil, validation("1 validation error detected: Value null at 'availabilityZones' failed to satisfy constraint: Member must not be null")
	}
	var out []string
	for _, z := range zones {
		if err := model.ValidateZone(z); err != nil || z == "" {
			return nil, validation("AvailabilityZone %q: want 1-64 of a-z 0-9 - _", clip(z))
		}
		if !slices.Contains(out, z) {
			out = append(out, z)
		}
	}
	return out, nil
}

func (s *Server) createLoadBalancer(req *request) (any, error) {
	name, err := req.p.required("LoadBalancerName")
	if err != nil {
		return nil, err
	}
	service, err := serviceName(name)
	if err != nil {
		return nil, err
	}
	if err := model.ValidateServiceName(service); err != nil {
		return nil, validation("%v", err)
	}
	listeners, certs, err := s.listeners(req)
	if err != nil {
		return nil, err
	}
	zones, err := s.zonesParam(req, false)
	if err != nil {
		return nil, err
	}
	if len(zones) > 0 && len(req.p.list("Subnets")) > 0 {
		return nil, validation("give AvailabilityZones or Subnets, not both")
	}
	tags, err := tagsParam(req, true)
	if err != nil {
		return nil, err
	}
	scheme := req.p.get("Scheme")
	if scheme == "" {
		scheme = "internet-facing"
	}
	if scheme != "internet-facing" && scheme != "internal" {
		return nil, validation("Scheme %q: want internet-facing or internal", clip(scheme))
	}
	svc := config.Service{Listeners: listeners, HealthCheck: &config.HealthCheck{
		Target: "TCP:" + strconv.Itoa(listeners[0].MemberPort), Interval: 30 * time.Second, Timeout: 5 * time.Second,
		UnhealthyThreshold: 2, HealthyThreshold: 10,
	}}
	checked := svc
	checked.SetDefaults()
	if err := checked.Validate(service); err != nil {
		return nil, validation("%v", err)
	}
	cfg := s.d.Config()
	d := s.d.Definitions.Definitions()
	if _, ok := cfg.Services[service]; ok {
		old, api := d.Services[service]
		if !api {
			return nil, immutable(name)
		}
		if !slices.Equal(old.Listeners, listeners) {
			return nil, errorf(http.StatusBadRequest, "DuplicateLoadBalancerName", "a load balancer named %s exists with other listeners", d.LoadBalancers[service].Name)
		}
		// AWS answers the same creation again with success.
		return struct{ DNSName string }{s.dnsName(req, name)}, nil
	}
	meta := defs.LoadBalancer{Name: name, Zones: zones, Created: time.Now().UTC().Truncate(time.Millisecond), Scheme: scheme, Tags: tags, Certificates: certs}
	err = s.d.Definitions.UpdateDefinitions(service, func(f *defs.File) error {
		f.Services[service] = svc
		f.LoadBalancers[service] = meta
		return nil
	})
	if err != nil {
		return nil, defsError(err)
	}
	s.log.Info("load balancer created", "service", service, "request_id", req.id)
	if err := s.wait(req, s.d.Applier.Trigger()); err != nil {
		return nil, err
	}
	return struct{ DNSName string }{s.dnsName(req, name)}, nil
}

// dnsName is aws_dns_name with {name} replaced, else NAME.<host the client called>.
func (s *Server) dnsName(req *request, name string) string {
	name = strings.ToLower(name)
	if p := s.d.Config().AWSDNSName; p != "" {
		return strings.ReplaceAll(p, "{name}", name)
	}
	host := req.r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return name + "." + strings.Trim(host, "[]")
}

func (s *Server) deleteLoadBalancer(req *request) (any, error) {
	name, err := req.p.required("LoadBalancerName")
	if err != nil {
		return nil, err
	}
	l, err := s.lookup(req, name)
	var ae *Error
	if errors.As(err, &ae) && ae.Code == "LoadBalancerNotFound" {
		return nil, nil // deleting a missing load balancer succeeds, as on AWS
	}
	if err != nil {
		return nil, err
	}
	if err := s.update(req, l, func(f *defs.File) error {
		delete(f.Services, l.service)
		delete(f.LoadBalancers, l.service)
		delete(f.DisabledZones, l.service)
		return nil
	}); err != nil {
		return nil, err
	}
	s.log.Info("load balancer deleted", "service", l.service, "request_id", req.id)
	return nil, nil
}

type healthCheckXML struct {
	Target             string
	Interval           int
	Timeout            int
	UnhealthyThreshold int
	HealthyThreshold   int
}

func healthXML(svc config.Service) healthCheckXML {
	hc := svc.HealthCheck
	if hc == nil {
		hc = &config.HealthCheck{}
	}
	target := hc.Target
	if target == "" && len(svc.Listeners) > 0 {
		target = "TCP:" + strconv.Itoa(svc.MemberPort())
	}
	return healthCheckXML{Target: target, Interval: int(hc.Interval / time.Second), Timeout: int(hc.Timeout / time.Second),
		UnhealthyThreshold: hc.UnhealthyThreshold, HealthyThreshold: hc.HealthyThreshold}
}

type instanceXML struct {
	InstanceID string `xml:"InstanceId"`
}

type lbDescription struct {
	LoadBalancerName          string
	DNSName                   string
	CanonicalHostedZoneName   string
	CanonicalHostedZoneNameID string
	ListenerDescriptions      xmlList[listenerDescription]
	Policies                  struct {
		AppCookieStickinessPolicies xmlList[appCookiePolicy]
		LBCookieStickinessPolicies  xmlList[lbCookiePolicy]
		OtherPolicies               xmlList[string]
	}
	BackendServerDescriptions xmlList[backendDescription]
	AvailabilityZones         xmlList[string]
	Subnets                   xmlList[string]
	Instances                 xmlList[instanceXML]
	HealthCheck               healthCheckXML
	SourceSecurityGroup       struct{ OwnerAlias, GroupName string }
	SecurityGroups            xmlList[string]
	CreatedTime               string
	Scheme                    string
}

func (s *Server) describe(req *request, l lb) lbDescription {
	cfg := s.d.Config()
	members := s.d.Members.Snapshot().Members[l.service]
	dns := s.dnsName(req, l.name())
	d := lbDescription{LoadBalancerName: l.name(), DNSName: dns, CanonicalHostedZoneName: dns,
		ListenerDescriptions: xmlListeners(l.svc.Listeners, l.meta),
		AvailabilityZones:    l.zones(cfg, members), Subnets: xmlList[string]{}, Instances: instancesXML(members),
		HealthCheck: healthXML(l.svc), SecurityGroups: xmlList[string]{}, Scheme: l.meta.Scheme}
	describePolicies(&d, l.meta)
	d.SourceSecurityGroup.OwnerAlias, d.SourceSecurityGroup.GroupName = "amazon-elb", "amazon-elb-sg"
	if d.AvailabilityZones == nil {
		d.AvailabilityZones = xmlList[string]{}
	}
	if d.Scheme == "" {
		d.Scheme = "internet-facing"
	}
	created := l.meta.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	d.CreatedTime = created.UTC().Format("2006-01-02T15:04:05.000Z")
	return d
}

func instancesXML(members []model.Member) xmlList[instanceXML] {
	out := xmlList[instanceXML]{}
	for _, name := range memberNames(members) {
		out = append(out, instanceXML{name})
	}
	return out
}

func memberNames(members []model.Member) []string {
	names := make([]string, 0, len(members))
	for _, m := range members {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return names
}

// DescribeLoadBalancers pages: PageSize (1-400, default 400) load balancers by name; the
// NextMarker of a page is the base64url of the next page's first service name, and it is
// only given when more follow (AWS's Marker is opaque too).
func (s *Server) describeLoadBalancers(req *request) (any, error) {
	size := 400
	if ps := req.p.get("PageSize"); ps != "" {
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > 400 {
			return nil, validation("PageSize %q: want 1-400", clip(ps))
		}
		size = n
	}
	var out []lbDescription
	var next string
	if names := req.p.list("LoadBalancerNames"); len(names) > 0 {
		if req.p.get("Marker") != "" {
			return nil, validation("Marker: not with LoadBalancerNames (they are answered in one page)")
		}
		for _, n := range names {
			l, err := s.lookup(req, n)
			if err != nil {
				return nil, err
			}
			out = append(out, s.describe(req, l))
		}
	} else {
		from := ""
		if m := req.p.get("Marker"); m != "" {
			b, err := base64.RawURLEncoding.DecodeString(m)
			if err != nil || model.ValidateServiceName(string(b)) != nil {
				return nil, validation("Marker %q: not a marker clbd gave (NextMarker of an earlier page)", clip(m))
			}
			from = string(b)
		}
		d := s.d.Definitions.Definitions()
		services := s.d.Config().Services
		for _, service := range slices.Sorted(maps.Keys(services)) {
			if service < from || !req.scope.AllowsService(service) {
				continue
			}
			if len(out) == size {
				next = base64.RawURLEncoding.EncodeToString([]byte(service))
				break
			}
			_, api := d.Services[service]
			out = append(out, s.describe(req, lb{service: service, svc: services[service], meta: d.LoadBalancers[service], file: !api}))
		}
	}
	return struct {
		LoadBalancerDescriptions xmlList[lbDescription]
		NextMarker               string `xml:",omitempty"`
	}{out, next}, nil
}

// --- health check

func (s *Server) configureHealthCheck(req *request) (any, error) {
	l, err := s.find(req)
	if err != nil {
		return nil, err
	}
	target, err := req.p.required("HealthCheck.Target")
	if err != nil {
		return nil, err
	}
	nums := map[string]int{}
	for _, f := range []struct {
		name     string
		min, max int
	}{{"Interval", 5, 300}, {"Timeout", 2, 60}, {"UnhealthyThreshold", 2, 10}, {"HealthyThreshold", 2, 10}} {
		v, err := req.p.required("HealthCheck." + f.name)
		if err != nil {
			return nil, err
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < f.min || n > f.max {
			return nil, validation("HealthCheck.%s %q: want %d-%d", f.name, clip(v), f.min, f.max)
		}
		nums[f.name] = n
	}
	hc := config.HealthCheck{Target: target, Interval: time.Duration(nums["Interval"]) * time.Second,
		Timeout: time.Duration(nums["Timeout"]) * time.Second, UnhealthyThreshold: nums["UnhealthyThreshold"], HealthyThreshold: nums["HealthyThreshold"]}
	if err := hc.Validate(); err != nil {
		return nil, validation("HealthCheck: %v", err)
	}
	if err := s.update(req, l, func(f *defs.File) error {
		svc := f.Services[l.service]
		svc.HealthCheck = &hc
		f.Services[l.service] = svc
		return nil
	}); err != nil {
		return nil, err
	}
	return struct{ HealthCheck healthCheckXML }{healthXML(config.Service{HealthCheck: &hc, Listeners: l.svc.Listeners})}, nil
}

// --- instances

// instanceIDs parses Instances.member.N.InstanceId (at least one).
func instanceIDs(req *request, required bool) ([]string, error) {
	var ids []string
	for i, m := range req.p.structs("Instances") {
		id := m["InstanceId"]
		if id == "" {
			return nil, validation("Instances.member.%d.InstanceId: missing", i+1)
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	if required && len(ids) == 0 {
		return nil, validation("1 validation error detected: Value null at 'instances' failed to satisfy constraint: Member must not be null")
	}
	return ids, nil
}

// resolve turns an instance id into the member it registers.
func (s *Server) resolve(id string, port int, registry map[string]defs.Instance) (model.Member, bool) {
	m := model.Member{Name: id, Port: port, Weight: model.DefaultWeight}
	if in, ok := registry[id]; ok {
		m.Address, m.Zone = in.Address, in.Zone
	} else if a, err := netip.ParseAddr(id); err == nil {
		m.Address = a.String()
	} else if ap, err := netip.ParseAddrPort(id); err == nil {
		m.Address, m.Port = ap.Addr().String(), int(ap.Port())
	} else if host, p, err := net.SplitHostPort(id); err == nil && strings.Contains(host, ".") && model.ValidHostname(host) {
		n, err := strconv.Atoi(p)
		if err != nil {
			return m, false
		}
		m.Address, m.Port = host, n
	} else if strings.Contains(id, ".") && model.ValidHostname(id) {
		m.Address = id
	} else {
		return m, false
	}
	if err := model.ValidateMemberName(m.Name); err != nil {
		m.Name = model.DefaultName(m.Address, m.Port)
	}
	return m, m.Validate() == nil
}

func invalidInstance(ids []string) *Error {
	return errorf(http.StatusBadRequest, "InvalidInstance", "Could not find EC2 instance %s (clbd knows instances announced with clb_register --instance-id, and addresses)", strings.Join(ids, ", "))
}

func (s *Server) registerInstances(req *request) (any, error) {
	l, err := s.find(req)
	if err != nil {
		return nil, err
	}
	ids, err := instanceIDs(req, true)
	if err != nil {
		return nil, err
	}
	registry := s.d.Definitions.Definitions().Instances
	var members []model.Member
	var unknown []string
	for _, id := range ids {
		m, ok := s.resolve(id, l.svc.MemberPort(), registry)
		if !ok {
			unknown = append(unknown, id)
			continue
		}
		members = append(members, m)
	}
	if len(unknown) > 0 {
		return nil, invalidInstance(unknown)
	}
	current := s.d.Members.Snapshot().Members[l.service]
	if max := s.d.Config().MaxMembers; len(current)+len(members) > max {
		n := 0
		for _, m := range members {
			if !slices.ContainsFunc(current, func(c model.Member) bool { return c.Name == m.Name }) {
				n++
			}
		}
		if len(current)+n > max {
			return nil, errorf(http.StatusBadRequest, "TooManyInstances", "load balancer %s would have more than %d instances (max_members)", l.name(), max)
		}
	}
	for _, m := range members {
		changed, err := s.d.Members.Put(l.service, m)
		if err != nil {
			return nil, defsError(err)
		}
		if changed {
			s.log.Info("member registered", "service", l.service, "member", m.Name, "addr", m.Address, "port", m.Port, "request_id", req.id)
		}
	}
	if err := s.wait(req, s.d.Applier.Trigger()); err != nil {
		return nil, err
	}
	return struct{ Instances xmlList[instanceXML] }{instancesXML(s.d.Members.Snapshot().Members[l.service])}, nil
}

// registered finds the member an instance id names: by member name, else by the address it
// resolves to.
func (s *Server) registered(id string, l lb, members []model.Member, registry map[string]defs.Instance) (model.Member, bool) {
	for _, m := range members {
		if m.Name == id {
			return m, true
		}
	}
	if want, ok := s.resolve(id, l.svc.MemberPort(), registry); ok {
		for _, m := range members {
			if m.Address == want.Address && m.Port == want.Port {
				return m, true
			}
		}
	}
	return model.Member{}, false
}

func (s *Server) deregisterInstances(req *request) (any, error) {
	l, err := s.find(req)
	if err != nil {
		return nil, err
	}
	ids, err := instanceIDs(req, true)
	if err != nil {
		return nil, err
	}
	registry := s.d.Definitions.Definitions().Instances
	members := s.d.Members.Snapshot().Members[l.service]
	var names, unknown []string
	for _, id := range ids {
		m, ok := s.registered(id, l, members, registry)
		if !ok {
			unknown = append(unknown, id)
			continue
		}
		names = append(names, m.Name)
	}
	if len(unknown) > 0 {
		return nil, errorf(http.StatusBadRequest, "InvalidInstance", "The requested instance IDs are not registered with load balancer %s: %s", l.name(), strings.Join(unknown, ", "))
	}
	var waits []<-chan error
	for _, name := range names {
		if _, err := s.d.Members.Delete(l.service, name); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, defsError(err)
		}
		s.log.Info("member unregistered", "service", l.service, "member", name, "request_id", req.id)
		waits = append(waits, s.d.Applier.TriggerFor(name))
	}
	for _, w := range waits {
		if err := s.wait(req, w); err != nil {
			return nil, err
		}
	}
	return struct{ Instances xmlList[instanceXML] }{instancesXML(s.d.Members.Snapshot().Members[l.service])}, nil
}

type instanceState struct {
	InstanceID  string `xml:"InstanceId"`
	State       string
	ReasonCode  string
	Description string
}

// healthState maps haproxy's health of a member to ELB's state, reason code and description.
func healthState(health string, zoneDisabled bool) (string, string, string) {
	switch {
	case zoneDisabled:
		return "OutOfService", "ELB", "Instance is in an Availability Zone for which LoadBalancer is not configured to route traffic to."
	case health == "up":
		return "InService", "N/A", "N/A"
	case health == "down":
		return "OutOfService", "Instance", "Instance has failed at least the UnhealthyThreshold number of health checks consecutively."
	case health == "starting":
		return "OutOfService", "ELB", "Instance registration is still in progress."
	case health == "drain":
		return "OutOfService", "ELB", "Instance deregistration currently in progress."
	case health == "maint":
		return "OutOfService", "ELB", "Instance is in maintenance: its address could not be resolved, or it is out of rotation."
	}
	return "Unknown", "ELB", "A transient error occurred. Please try again later."
}

func (s *Server) describeInstanceHealth(req *request) (any, error) {
	l, err := s.find(req)
	if err != nil {
		return nil, err
	}
	ids, err := instanceIDs(req, false)
	if err != nil {
		return nil, err
	}
	cfg := s.d.Config()
	members := s.d.Members.Snapshot().Members[l.service]
	health := s.d.Status.Health()[l.service]
	draining := s.d.Status.Draining()[l.service]
	state := func(id string, m model.Member) instanceState {
		st, code, desc := healthState(health[m.Name], m.Zone != "" && slices.Contains(cfg.DisabledZones[l.service], m.Zone))
		return instanceState{InstanceID: id, State: st, ReasonCode: code, Description: desc}
	}
	out := xmlList[instanceState]{}
	if len(ids) == 0 {
		for _, name := range memberNames(members) {
			i := slices.IndexFunc(members, func(m model.Member) bool { return m.Name == name })
			out = append(out, state(name, members[i]))
		}
		return struct{ InstanceStates xmlList[instanceState] }{out}, nil
	}
	registry := s.d.Definitions.Definitions().Instances
	var unknown []string
	for _, id := range ids {
		if m, ok := s.registered(id, l, members, registry); ok {
			out = append(out, state(id, m))
			continue
		}
		if slices.Contains(draining, id) {
			st, code, desc := healthState("drain", false)
			out = append(out, instanceState{id, st, code, desc})
			continue
		}
		unknown = append(unknown, id)
	}
	if len(unknown) > 0 {
		return nil, invalidInstance(unknown)
	}
	return struct{ InstanceStates xmlList[instanceState] }{out}, nil
}

// --- zones

func (s *Server) setZones(enable bool) handler {
	return func(req *request) (any, error) {
		l, err := s.find(req)
		if err != nil {
			return nil, err
		}
		zones, err := s.zonesParam(req, true)
		if err != nil {
			return nil, err
		}
		cfg := s.d.Config()
		if l.file {
			for _, z := range zones {
				if err := s.d.Definitions.SetZone(l.service, z, enable); err != nil {
					return nil, defsError(err)
				}
			}
			if err := s.wait(req, s.d.Applier.Trigger()); err != nil {
				return nil, err
			}
			return struct{ AvailabilityZones xmlList[string] }{l.zones(s.d.Config(), s.d.Members.Snapshot().Members[l.service])}, nil
		}
		next := l.zones(cfg, s.d.Members.Snapshot().Members[l.service])
		if enable {
			for _, z := range zones {
				if !slices.Contains(next, z) {
					next = append(next, z)
				}
			}
		} else {
			next = slices.DeleteFunc(next, func(z string) bool { return slices.Contains(zones, z) })
			if len(next) == 0 {
				return nil, validation("cannot disable every availability zone of load balancer %s; delete it instead", l.name())
			}
		}
		if err := s.update(req, l, func(f *defs.File) error {
			meta := f.LoadBalancers[l.service]
			meta.Zones = next
			f.LoadBalancers[l.service] = meta
			disabled := slices.Clone(f.DisabledZones[l.service])
			for _, z := range zones {
				disabled = slices.DeleteFunc(disabled, func(d string) bool { return d == z })
				if !enable {
					disabled = append(disabled, z)
				}
			}
			slices.Sort(disabled)
			if len(disabled) == 0 {
				delete(f.DisabledZones, l.service)
			} else {
				f.DisabledZones[l.service] = disabled
			}
			return nil
		}); err != nil {
			return nil, err
		}
		verb := map[bool]string{true: "zones enabled", false: "zones disabled"}[enable]
		s.log.Info(verb, "service", l.service, "zones", strings.Join(zones, ","), "request_id", req.id)
		return struct{ AvailabilityZones xmlList[string] }{next}, nil
	}
}

// --- listeners

func (s *Server) createListeners(req *request) (any, error) {
	l, err := s.find(req)
	if err != nil {
		return nil, err
	}
	add, certs, err := s.listeners(req)
	if err != nil {
		return nil, err
	}
	next := slices.Clone(l.svc.Listeners)
	for _, n := range add {
		i := slices.IndexFunc(next, func(o config.Listener) bool { return o.Port == n.Port })
		if i >= 0 {
			n.ProxyProtocol = next[i].ProxyProtocol // derived from the back-end policies
		}
		switch {
		case i < 0:
			next = append(next, n)
		case next[i] != n:
			return nil, errorf(http.StatusBadRequest, "DuplicateListener", "load balancer %s already has a listener on port %d with other settings", l.name(), n.Port)
		}
	}
	return nil, s.setListeners(req, l, next, certs)
}

func (s *Server) deleteListeners(req *request) (any, error) {
	l, err := s.find(req)
	if err != nil {
		return nil, err
	}
	ports := req.p.list("LoadBalancerPorts")
	if len(ports) == 0 {
		return nil, validation("1 validation error detected: Value null at 'loadBalancerPorts' failed to satisfy constraint: Member must not be null")
	}
	next := slices.Clone(l.svc.Listeners)
	for i, p := range ports {
		n, err := portParam(p, fmt.Sprintf("LoadBalancerPorts.member.%d", i+1))
		if err != nil {
			return nil, err
		}
		next = slices.DeleteFunc(next, func(o config.Listener) bool { return o.Port == n })
	}
	if len(next) == 0 {
		return nil, validation("clbd needs at least one listener per load balancer; delete the load balancer instead")
	}
	return nil, s.setListeners(req, l, next, nil)
}

// setListeners makes next the listeners; certs are the certificate ids of new HTTPS
// listeners (those of removed listeners are forgotten).
func (s *Server) setListeners(req *request, l lb, next []config.Listener, certs map[int]string) error {
	if slices.Equal(next, l.svc.Listeners) {
		return nil
	}
	checked := l.svc
	checked.Listeners = next
	if err := checked.Validate(l.service); err != nil {
		return validation("%v", err)
	}
	return s.update(req, l, func(f *defs.File) error {
		svc := f.Services[l.service]
		svc.Listeners = next
		meta := f.LoadBalancers[l.service]
		ids := map[int]string{}
		for _, li := range next {
			if li.Certificate == "" {
				continue
			}
			if id, ok := certs[li.Port]; ok {
				ids[li.Port] = id
			} else if id, ok := meta.Certificates[li.Port]; ok {
				ids[li.Port] = id
			}
		}
		meta.Certificates = ids
		lp := map[int][]string{}
		for _, li := range next {
			if names, ok := meta.ListenerPolicies[li.Port]; ok {
				lp[li.Port] = names
			}
		}
		meta.ListenerPolicies = lp
		f.Services[l.service] = derivePolicies(svc, meta)
		f.LoadBalancers[l.service] = meta
		return nil
	})
}

// setCertificate is SetLoadBalancerListenerSSLCertificate: the HTTPS listener on the port
// gets another certificate (a reload).
func (s *Server) setCertificate(req *request) (any, error) {
	l, li, err := s.listenerOf(req)
	if err != nil {
		return nil, err
	}
	port := li.Port
	id, err := req.p.required("SSLCertificateId")
	if err != nil {
		return nil, err
	}
	i := slices.Index(l.svc.Listeners, li)
	if li.Protocol != "https" && li.Protocol != "ssl" {
		return nil, errorf(http.StatusConflict, "InvalidConfigurationRequest", "the listener on port %d is %s, not HTTPS or SSL", port, strings.ToUpper(li.Protocol))
	}
	path, err := s.certificate(id)
	if err != nil {
		return nil, err
	}
	next := slices.Clone(l.svc.Listeners)
	next[i].Certificate = path
	if slices.Equal(next, l.svc.Listeners) && l.meta.Certificates[port] == id {
		return nil, nil
	}
	if l.file {
		return nil, immutable(l.name())
	}
	return nil, s.update(req, l, func(f *defs.File) error {
		svc := f.Services[l.service]
		svc.Listeners = next
		f.Services[l.service] = svc
		meta := f.LoadBalancers[l.service]
		meta.Certificates = maps.Clone(meta.Certificates)
		if meta.Certificates == nil {
			meta.Certificates = map[int]string{}
		}
		meta.Certificates[port] = id
		f.LoadBalancers[l.service] = meta
		return nil
	})
}

// --- attributes

type attributesXML struct {
	CrossZoneLoadBalancing struct{ Enabled bool }
	AccessLog              struct{ Enabled bool }
	ConnectionDraining     struct {
		Enabled bool
		Timeout int
	}
	ConnectionSettings struct{ IdleTimeout int }
}

func attributes(svc config.Service) attributesXML {
	var a attributesXML
	a.ConnectionDraining.Enabled = svc.DrainingTimeout >= time.Second
	a.ConnectionDraining.Timeout = int(svc.DrainingTimeout / time.Second)
	a.ConnectionSettings.IdleTimeout = 60
	return a
}

func (s *Server) describeAttributes(req *request) (any, error) {
	l, err := s.find(req)
	if err != nil {
		return nil, err
	}
	return struct{ LoadBalancerAttributes attributesXML }{attributes(l.svc)}, nil
}

// modifyAttributes serves ConnectionDraining (draining_timeout) and the values clbd has
// fixed: CrossZoneLoadBalancing false (each enabled zone gets an equal share), AccessLog off,
// IdleTimeout 60. Asking for another value of those is refused, not ignored.
func (s *Server) modifyAttributes(req *request) (any, error) {
	l, err := s.find(req)
	if err != nil {
		return nil, err
	}
	const pre = "LoadBalancerAttributes."
	boolParam := func(name string) (bool, bool, error) {
		v, ok := req.p[pre+name]
		if !ok {
			return false, false, nil
		}
		switch strings.ToLower(v) {
		case "true":
			return true, true, nil
		case "false":
			return false, true, nil
		}
		return false, true, validation("%s%s %q: want true or false", pre, name, clip(v))
	}
	if on, ok, err := boolParam("CrossZoneLoadBalancing.Enabled"); err != nil {
		return nil, err
	} else if ok && on {
		return nil, errorf(http.StatusConflict, "InvalidConfigurationRequest", "clbd balances each enabled zone equally (CrossZoneLoadBalancing false); cross-zone balancing is not served yet")
	}
	if on, ok, err := boolParam("AccessLog.Enabled"); err != nil {
		return nil, err
	} else if ok && on {
		return nil, errorf(http.StatusConflict, "InvalidConfigurationRequest", "access logs to S3 are not served; haproxy logs to syslog")
	}
	if v, ok := req.p[pre+"ConnectionSettings.IdleTimeout"]; ok && v != "60" {
		return nil, errorf(http.StatusConflict, "InvalidConfigurationRequest", "ConnectionSettings.IdleTimeout %q: clbd's is fixed at 60 s", clip(v))
	}
	for k := range req.p {
		if strings.HasPrefix(k, pre+"AdditionalAttributes.") {
			return nil, errorf(http.StatusConflict, "InvalidConfigurationRequest", "AdditionalAttributes are not served")
		}
	}
	on, ok, err := boolParam("ConnectionDraining.Enabled")
	if err != nil {
		return nil, err
	}
	svc := l.svc
	if ok {
		timeout := svc.DrainingTimeout
		if v, has := req.p[pre+"ConnectionDraining.Timeout"]; has {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 3600 {
				return nil, validation("%sConnectionDraining.Timeout %q: want 1-3600", pre, clip(v))
			}
			timeout = time.Duration(n) * time.Second
		} else if timeout == 0 {
			timeout = 300 * time.Second
		}
		if !on {
			timeout = 0
		}
		svc.DrainingTimeout = timeout
		if svc.DrainingTimeout != l.svc.DrainingTimeout {
			if svc.DrainingTimeout > time.Hour {
				return nil, validation("ConnectionDraining.Timeout: clbd allows at most 3600 s")
			}
			if err := s.update(req, l, func(f *defs.File) error {
				fs := f.Services[l.service]
				fs.DrainingTimeout = svc.DrainingTimeout
				if fs.DrainingTimeout == 0 {
					// 0 in a definition means "the default": cut at once is the smallest
					// positive timeout haproxy's drain knows.
					fs.DrainingTimeout = time.Millisecond
				}
				f.Services[l.service] = fs
				return nil
			}); err != nil {
				return nil, err
			}
			l, _ = s.lookup(req, l.name())
		}
	}
	return struct {
		LoadBalancerName       string
		LoadBalancerAttributes attributesXML
	}{l.name(), attributes(l.svc)}, nil
}

// --- tags

type tagXML struct {
	Key   string
	Value string
}

const maxTags = 50

func tagsParam(req *request, optional bool) (map[string]string, error) {
	raw := req.p.structs("Tags")
	if len(raw) == 0 {
		if optional {
			return nil, nil
		}
		return nil, validation("1 validation error detected: Value null at 'tags' failed to satisfy constraint: Member must not be null")
	}
	out := map[string]string{}
	for i, m := range raw {
		k := m["Key"]
		if k == "" || len(k) > 128 || len(m["Value"]) > 256 {
			return nil, validation("Tags.member.%d: want a Key of 1-128 characters and a Value of at most 256", i+1)
		}
		if _, dup := out[k]; dup {
			return nil, errorf(http.StatusBadRequest, "DuplicateTagKeys", "tag key %q is given twice", clip(k))
		}
		out[k] = m["Value"]
	}
	if len(out) > maxTags {
		return nil, errorf(http.StatusBadRequest, "TooManyTags", "at most %d tags per load balancer", maxTags)
	}
	return out, nil
}

func (s *Server) tagTargets(req *request) ([]lb, error) {
	names := req.p.list("LoadBalancerNames")
	if len(names) == 0 {
		return nil, validation("1 validation error detected: Value null at 'loadBalancerNames' failed to satisfy constraint: Member must not be null")
	}
	var out []lb
	for _, n := range names {
		l, err := s.lookup(req, n)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

func (s *Server) addTags(req *request) (any, error) {
	tags, err := tagsParam(req, false)
	if err != nil {
		return nil, err
	}
	return s.changeTags(req, func(t map[string]string) { maps.Copy(t, tags) })
}

func (s *Server) removeTags(req *request) (any, error) {
	var keys []string
	for i, m := range req.p.structs("Tags") {
		if m["Key"] == "" {
			return nil, validation("Tags.member.%d.Key: missing", i+1)
		}
		keys = append(keys, m["Key"])
	}
	if len(keys) == 0 {
		return nil, validation("1 validation error detected: Value null at 'tags' failed to satisfy constraint: Member must not be null")
	}
	return s.changeTags(req, func(t map[string]string) {
		for _, k := range keys {
			delete(t, k)
		}
	})
}

func (s *Server) changeTags(req *request, fn func(map[string]string)) (any, error) {
	targets, err := s.tagTargets(req)
	if err != nil {
		return nil, err
	}
	for _, l := range targets {
		if l.file {
			return nil, immutable(l.name())
		}
	}
	for _, l := range targets {
		err := s.d.Definitions.UpdateDefinitions(l.service, func(f *defs.File) error {
			meta := f.LoadBalancers[l.service]
			t := maps.Clone(meta.Tags)
			if t == nil {
				t = map[string]string{}
			}
			fn(t)
			if len(t) > maxTags {
				return errorf(http.StatusBadRequest, "TooManyTags", "at most %d tags per load balancer", maxTags)
			}
			meta.Tags = t
			f.LoadBalancers[l.service] = meta
			return nil
		})
		if err != nil {
			return nil, defsError(err)
		}
	}
	return nil, nil
}

func (s *Server) describeTags(req *request) (any, error) {
	targets, err := s.tagTargets(req)
	if err != nil {
		return nil, err
	}
	type desc struct {
		LoadBalancerName string
		Tags             xmlList[tagXML]
	}
	out := xmlList[desc]{}
	for _, l := range targets {
		d := desc{LoadBalancerName: l.name(), Tags: xmlList[tagXML]{}}
		for _, k := range slices.Sorted(maps.Keys(l.meta.Tags)) {
			d.Tags = append(d.Tags, tagXML{k, l.meta.Tags[k]})
		}
		out = append(out, d)
	}
	return struct{ TagDescriptions xmlList[desc] }{out}, nil
}
