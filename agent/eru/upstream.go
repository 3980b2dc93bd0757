package eru

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"clb/agent/config"
	"clb/agent/defs"
	"clb/internal/model"
	"clb/internal/store"
)

// UpstreamPort names the backend of a service the adapter creates for an Eru upstream
// (SERVICE_80): its only listener has protocol gateway, so it binds nothing and is reached
// through gateway routes; members name their own ports.
const UpstreamPort = 80

// UpstreamService is the service the adapter creates for an upstream that is not a clb
// service yet: reached only through gateways, a TCP check on each member's port every 10 s
// (nginx's fail_timeout), down after 2 failures (the fewest clb takes; nginx's max_fails is
// 1), and clb's defaults otherwise.
func UpstreamService() config.Service {
	return config.Service{
		Listeners: []config.Listener{{Port: UpstreamPort, Protocol: config.ProtocolGateway, MemberPort: UpstreamPort}},
		HealthCheck: &config.HealthCheck{
			Interval: 10 * time.Second, Timeout: 5 * time.Second, HealthyThreshold: 2, UnhealthyThreshold: 2,
		},
	}
}

// ServerView is one member as GET /__erulb__/upstream shows it (Eru's lua-upstream fields):
// addr ADDRESS:PORT, name the member's name, weight, and max_fails / fail_timeout from the
// service's health check (unhealthy threshold, interval in seconds); down when its weight
// is 0 (a server PUT with "down", or a zone taken out of rotation).
type ServerView struct {
	Addr        string `json:"addr"`
	Name        string `json:"name"`
	Weight      int    `json:"weight"`
	MaxFails    int    `json:"max_fails"`
	FailTimeout int    `json:"fail_timeout"`
	Down        bool   `json:"down,omitempty"`
}

// httpService reports whether a service can be an upstream: gateways route to its http,
// https or gateway listeners, not tcp ones.
func httpService(svc config.Service) bool {
	return slices.ContainsFunc(svc.Listeners, func(l config.Listener) bool { return l.Protocol != "tcp" })
}

func (s *Server) getUpstreams(*http.Request, []byte) (any, error) {
	cfg := s.d.Config()
	snap := s.d.Members.Snapshot()
	out := map[string][]ServerView{}
	for name, svc := range cfg.Services {
		if !httpService(svc) {
			continue
		}
		hc := config.HealthCheck{}
		if svc.HealthCheck != nil {
			hc = *svc.HealthCheck
		}
		hc.SetDefaults()
		views := []ServerView{}
		for _, m := range snap.Members[name] {
			views = append(views, ServerView{
				Addr: net.JoinHostPort(m.Address, strconv.Itoa(m.Port)), Name: m.Name, Weight: m.Weight,
				MaxFails: hc.UnhealthyThreshold, FailTimeout: int(hc.Interval / time.Second), Down: m.Weight == 0,
			})
		}
		slices.SortFunc(views, func(a, b ServerView) int { return strings.Compare(a.Name, b.Name) })
		out[name] = views
	}
	return out, nil
}

// ParseServer reads one server of an upstream: its key ADDRESS:PORT (an IP address or a
// host name) and Eru's option string, nginx `server` parameters separated by spaces:
// weight=N (1-256; default 1, as nginx), down (kept, weight 0: no traffic), max_fails=N
// and fail_timeout=T (accepted and not used: clb's health checks are per service). backup
// and every other parameter are refused: clb has no backup servers, and a parameter it
// would ignore silently is a surprise later.
func ParseServer(key, opts string) (model.Member, error) {
	host, p, err := net.SplitHostPort(key)
	if err != nil {
		return model.Member{}, fmt.Errorf("server %q: want ADDRESS:PORT", model.Clip(key, 80))
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return model.Member{}, fmt.Errorf("server %q: port %q: want 1-65535", model.Clip(key, 80), model.Clip(p, 10))
	}
	m := model.Member{Address: host, Port: port, Weight: 1}
	m.Name = model.DefaultName(host, port)
	if err := model.ValidateAddress(host); err != nil {
		return model.Member{}, fmt.Errorf("server %q: %w", model.Clip(key, 80), err)
	}
	if err := model.ValidatePort(port); err != nil {
		return model.Member{}, fmt.Errorf("server %q: %w", model.Clip(key, 80), err)
	}
	down, weighted := false, false
	for _, tok := range strings.Fields(opts) {
		k, v, hasValue := strings.Cut(tok, "=")
		bad := func(want string) error {
			return fmt.Errorf("server %s: option %q: %s", key, model.Clip(tok, 40), want)
		}
		switch {
		case k == "weight" && hasValue:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > model.MaxWeight {
				return model.Member{}, bad(fmt.Sprintf("want weight=1..%d", model.MaxWeight))
			}
			if weighted {
				return model.Member{}, bad("weight given twice")
			}
			m.Weight, weighted = n, true
		case k == "max_fails" && hasValue:
			if n, err := strconv.Atoi(v); err != nil || n < 0 {
				return model.Member{}, bad("want max_fails=N, N ≥ 0")
			}
		case k == "fail_timeout" && hasValue:
			if !nginxTime(v) {
				return model.Member{}, bad("want fail_timeout=TIME (10, 10s, 1m, 500ms)")
			}
		case k == "down" && !hasValue:
			down = true
		case k == "backup" && !hasValue:
			return model.Member{}, bad("backup servers are not supported by clb (give the server weight=1 and the others more)")
		default:
			return model.Member{}, bad("unknown; clb takes weight=N, down, max_fails=N and fail_timeout=T")
		}
	}
	if down {
		m.Weight = 0
	}
	return m, m.Validate()
}

// nginxTime reports whether s is an nginx time: digits with an optional unit (ms s m h d
// w M y), or several such ("1m30s").
func nginxTime(s string) bool {
	if s == "" {
		return false
	}
	for s != "" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 {
			return false
		}
		s = s[i:]
		for _, u := range []string{"ms", "s", "m", "h", "d", "w", "M", "y", ""} {
			if strings.HasPrefix(s, u) {
				s = s[len(u):]
				break
			}
		}
	}
	return true
}

// upstream is one upstream of a PUT, parsed.
type upstream struct {
	name    string
	members []model.Member
	create  bool
}

// putUpstreams replaces the servers of each named upstream whole (Eru's semantics): the
// members the body lists are registered (or updated), the others unregistered with
// draining, through the same membership and applier as clb_register. Everything is
// checked before anything changes; an upstream that is not a service yet is created
// (UpstreamService). Answered once haproxy runs it, drains included.
func (s *Server) putUpstreams(r *http.Request, body []byte) (any, error) {
	var in map[string]map[string]string
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if len(in) == 0 {
		return nil, errorf(http.StatusBadRequest, "no upstream in the body: want {\"UPSTREAM\": {\"ADDRESS:PORT\": \"OPTIONS\"}}")
	}
	cfg := s.d.Config()
	var ups []upstream
	seen := map[string]string{}
	for _, raw := range slices.Sorted(maps.Keys(in)) {
		name := strings.ToLower(raw)
		if err := model.ValidateServiceName(name); err != nil {
			return nil, errorf(http.StatusBadRequest, "upstream %q: %v", model.Clip(raw, 80), err)
		}
		if o, dup := seen[name]; dup {
			return nil, errorf(http.StatusBadRequest, "upstreams %q and %q are the same service %s", o, raw, name)
		}
		seen[name] = raw
		u := upstream{name: name}
		if svc, found := cfg.Services[name]; !found {
			u.create = true
		} else if !httpService(svc) {
			return nil, errorf(http.StatusConflict, "upstream %s: service %s has only tcp listeners; gateways cannot route to it", raw, name)
		}
		byName := map[string]string{}
		for _, key := range slices.Sorted(maps.Keys(in[raw])) {
			m, err := ParseServer(key, in[raw][key])
			if err != nil {
				return nil, errorf(http.StatusBadRequest, "upstream %s: %v", raw, err)
			}
			if o, dup := byName[m.Name]; dup {
				return nil, errorf(http.StatusBadRequest, "upstream %s: servers %q and %q are the same member %s", raw, o, key, m.Name)
			}
			byName[m.Name] = key
			u.members = append(u.members, m)
		}
		if len(u.members) > cfg.MaxMembers {
			return nil, errorf(http.StatusBadRequest, "upstream %s: %d servers, more than max_members %d", raw, len(u.members), cfg.MaxMembers)
		}
		ups = append(ups, u)
	}
	var waits []<-chan error
	for _, u := range ups {
		if u.create {
			if err := s.d.Definitions.DefineService(u.name, UpstreamService()); err != nil {
				return nil, coreError("upstream "+u.name, err)
			}
			s.log.Info("eru: service created for an upstream", "service", u.name)
		}
		w, err := s.replaceMembers(u)
		if err != nil {
			return nil, err
		}
		waits = append(waits, w...)
	}
	waits = append(waits, s.d.Applier.Trigger())
	if err := s.wait(r, waits...); err != nil {
		return nil, err
	}
	return ok{Msg: "OK"}, nil
}

// replaceMembers makes u's service have exactly u's members and returns what to wait for:
// the drain of each removed member.
func (s *Server) replaceMembers(u upstream) ([]<-chan error, error) {
	current := s.d.Members.Snapshot().Members[u.name]
	want := map[string]bool{}
	for _, m := range u.members {
		want[m.Name] = true
		changed, err := s.d.Members.Put(u.name, m)
		if err != nil {
			return nil, coreError("upstream "+u.name, err)
		}
		if changed {
			s.log.Info("member registered", "service", u.name, "member", m.Name, "addr", m.Address, "port", m.Port, "weight", m.Weight)
		}
	}
	var waits []<-chan error
	for _, m := range current {
		if want[m.Name] {
			continue
		}
		if _, err := s.d.Members.Delete(u.name, m.Name); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, coreError("upstream "+u.name, err)
		}
		s.log.Info("member unregistered", "service", u.name, "member", m.Name)
		waits = append(waits, s.d.Applier.TriggerFor(m.Name))
	}
	return waits, nil
}

// deleteUpstreams removes upstreams: every member is unregistered (drained) and a service
// defined through the API is removed (a config-file service stays, empty). The answer is
// Eru's: {"NAME": true} for each one removed, {"NAME": 404} for one that does not exist.
// An upstream a domain still routes to is refused (409) before anything changes: Eru would
// answer 502 for those requests later.
func (s *Server) deleteUpstreams(r *http.Request, body []byte) (any, error) {
	var in []string
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	cfg := s.d.Config()
	out := map[string]any{}
	var names []string
	for _, raw := range in {
		name := strings.ToLower(raw)
		if _, found := cfg.Services[name]; !found {
			out[raw] = http.StatusNotFound
			continue
		}
		if by := routedBy(cfg, name); by != "" {
			return nil, errorf(http.StatusConflict, "upstream %s: %s still routes to it; change or delete the domain first", raw, by)
		}
		names = append(names, name)
		out[raw] = true
	}
	var waits []<-chan error
	snap := s.d.Members.Snapshot()
	for _, name := range names {
		for _, m := range snap.Members[name] {
			if _, err := s.d.Members.Delete(name, m.Name); err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, coreError("upstream "+name, err)
			}
			s.log.Info("member unregistered", "service", name, "member", m.Name)
			waits = append(waits, s.d.Applier.TriggerFor(m.Name))
		}
	}
	if err := s.wait(r, waits...); err != nil {
		return nil, err
	}
	removed := false
	for _, name := range names {
		err := s.d.Definitions.RemoveService(name)
		switch {
		case err == nil:
			removed = true
			s.log.Info("eru: service removed", "service", name)
		case errors.Is(err, defs.ErrFileService), errors.Is(err, defs.ErrNotDefined):
		default:
			return nil, coreError("upstream "+name, err)
		}
	}
	if removed {
		if err := s.wait(r, s.d.Applier.Trigger()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// routedBy names a domain whose routes send requests to service, or "".
func routedBy(cfg *config.Config, service string) string {
	for _, gw := range slices.Sorted(maps.Keys(cfg.Gateways)) {
		g := cfg.Gateways[gw]
		for _, host := range slices.Sorted(maps.Keys(g.Domains)) {
			d := g.Domains[host]
			for _, rt := range d.Routes {
				if rt.Service == service {
					return "domain " + host + " of gateway " + gw
				}
			}
			if d.Eru != nil && slices.Contains(servernames(*d.Eru), service) {
				return "domain " + host + " of gateway " + gw
			}
		}
	}
	return ""
}
