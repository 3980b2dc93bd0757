package reconcile

import (
	"maps"
	"math"
	"slices"
	"time"

	"clb/agent/config"
	"clb/internal/haproxy"
	"clb/internal/model"
	"clb/internal/render"
	"clb/internal/store"
)

// Desired builds the template data from a validated config and a state snapshot: what haproxy
// should run. Members of services the config does not define are kept in the state but not
// rendered.
//
// Ports: a member registers one port, used by the service's first listener; further listeners
// reach members on their own member_port (ELB's model: the listener says the instance port).
//
// d carries what does not come from the config: template source, sockets, state file
// (haproxy_metrics_listen, which does, is set here).
//
// slots says which member holds which server slot (see slots.go); nil assigns them afresh
// (clbd render).
func Desired(c *config.Config, snap store.Snapshot, slots *Slots, d render.Data) render.Data {
	if slots == nil {
		slots = PlanSlots(nil, c, snap)
	}
	d.MetricsListen = c.HaproxyMetricsListen
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		svc := c.Services[name]
		rs := render.Service{Name: name, Balance: svc.Balance, Sticky: svc.Sticky, StickyCookie: svc.StickyCookie, StickyMaxAge: int(svc.StickyMaxAge / time.Second), HTTPReuse: svc.HTTPReuse, Check: renderCheck(*svc.HealthCheck)}
		weights := ZoneWeights(snap.Members[name], c.DisabledZones[name])
		for i, l := range svc.Listeners {
			mode := "http"
			if l.Protocol == "tcp" || l.Protocol == "ssl" {
				mode = "tcp"
			}
			rl := render.Listener{
				Name: config.BackendName(name, l.Port), Address: l.Address, Port: l.Port,
				Protocol: l.Protocol, Mode: mode, Certificate: l.Certificate, MemberPort: l.MemberPort, ProxyProtocol: l.ProxyProtocol,
			}
			for _, m := range snap.Members[name] {
				port := l.MemberPort
				if i == 0 {
					port = m.Port
				}
				rl.Servers = append(rl.Servers, render.Server{Name: m.Name, Address: m.Address, Port: port, Weight: weights[m.Name], Zone: m.Zone})
			}
			rl.Slots = renderSlots(slots.pools[name], rl.Servers)
			rs.Listeners = append(rs.Listeners, rl)
		}
		d.Services = append(d.Services, rs)
	}
	return d
}

// ZoneWeights returns the haproxy weight of each member. With members in one zone and no zone
// disabled, a member's weight is its registered weight. Otherwise traffic is spread evenly
// across the enabled zones whatever their member counts (ELB's promise): a member gets the
// share of its zone its weight gives it, scaled so the largest share is weight 256 (haproxy's
// maximum); members of disabled zones get 0 (no new requests; in-flight ones finish). The
// members without a zone count as one zone. Rounding to 1..256 makes the split approximate
// when a zone has more than ~50 members.
func ZoneWeights(members []model.Member, disabled []string) map[string]int {
	out := make(map[string]int, len(members))
	zones := map[string]int{} // registered weight per zone
	for _, m := range members {
		out[m.Name] = m.Weight
		if !slices.Contains(disabled, m.Zone) {
			zones[m.Zone] += m.Weight
		}
	}
	seen := map[string]bool{}
	for _, m := range members {
		seen[m.Zone] = true
	}
	if len(seen) < 2 && len(disabled) == 0 {
		return out
	}
	share := func(m model.Member) float64 {
		if slices.Contains(disabled, m.Zone) || zones[m.Zone] == 0 {
			return 0
		}
		return float64(m.Weight) / float64(zones[m.Zone])
	}
	maxShare := 0.0
	for _, m := range members {
		maxShare = max(maxShare, share(m))
	}
	for _, m := range members {
		sh := share(m)
		if sh == 0 {
			out[m.Name] = 0
			continue
		}
		out[m.Name] = max(1, int(math.Round(model.MaxWeight*sh/maxShare)))
	}
	return out
}

// renderSlots lays a listener's servers into the service's pool: each member's slot, and the
// free ones disabled on a placeholder address.
func renderSlots(p *pool, servers []render.Server) []render.Slot {
	if p == nil {
		return nil
	}
	byName := make(map[string]render.Server, len(servers))
	for _, s := range servers {
		byName[s.Name] = s
	}
	out := make([]render.Slot, p.size)
	for i := range out {
		sl := render.Slot{Name: slotName(i + 1), Free: true, Address: render.FreeAddress, Port: render.FreePort, Weight: model.DefaultWeight}
		if s, ok := byName[p.holder[i+1]]; ok {
			sl = render.Slot{Name: sl.Name, Member: s.Name, Address: s.Address, Port: s.Port, Weight: s.Weight, Zone: s.Zone}
		}
		out[i] = sl
	}
	return out
}

// renderCheck is a validated health check in haproxy's terms.
func renderCheck(h config.HealthCheck) render.Check {
	t, _ := h.ParseTarget() // validated already
	return render.Check{
		HTTP: t.HTTP, Port: t.Port, Path: t.Path, Host: "localhost",
		Interval: h.Interval, Timeout: h.Timeout, Rise: h.HealthyThreshold, Fall: h.UnhealthyThreshold,
	}
}

// layout says which service each backend of a rendered config belongs to, whatever the
// template called it: the drain timeout of a removed server and the health of a member are
// the service's. A backend named as the built-in template names it (config.BackendName) is
// that listener's; any other backend belongs to the service whose rendered servers it holds
// (same name and address). order lists each service's backends in listener order: a
// member's health is the one of the first backend that has it.
type layout struct {
	service map[string]string   // backend → service
	order   map[string][]string // service → backends
	// slotted are the backends rendered with server slots; member names the member each slot
	// holds, by backend and slot.
	slotted map[string]bool
	member  map[string]map[string]string
}

func newLayout(p haproxy.ParsedConfig, d render.Data) layout {
	lay := layout{service: map[string]string{}, order: map[string][]string{}, slotted: map[string]bool{}, member: map[string]map[string]string{}}
	add := func(backend, service string) {
		if _, ok := lay.service[backend]; ok {
			return
		}
		lay.service[backend] = service
		lay.order[service] = append(lay.order[service], backend)
	}
	// holder is the backend whose servers include one of l's slots or servers (same name and
	// address), the first by name; "" when none does.
	holder := func(l render.Listener) string {
		want := map[string]string{} // server name → address
		for _, sl := range l.Slots {
			if !sl.Free {
				want[sl.Name] = sl.Addr()
			}
		}
		for _, srv := range l.Servers {
			want[srv.Name] = srv.Addr()
		}
		for _, backend := range slices.Sorted(maps.Keys(p.Servers)) {
			if _, taken := lay.service[backend]; taken {
				continue
			}
			for name, addr := range want {
				if got, ok := p.Servers[backend][name]; ok && got.Addr == addr {
					return backend
				}
			}
		}
		return ""
	}
	// Listener order, service by service: the built-in name, else the backend that holds the
	// listener's servers.
	for _, s := range d.Services {
		for _, l := range s.Listeners {
			b := l.Name
			if !p.Backends[b] {
				if b = holder(l); b == "" {
					continue
				}
			}
			add(b, s.Name)
			if slotted(p.Servers[b], l.Slots) {
				lay.slotted[b] = true
				lay.member[b] = map[string]string{}
				for _, sl := range l.Slots {
					if sl.Member != "" {
						lay.member[b][sl.Name] = sl.Member
					}
				}
			}
		}
	}
	return lay
}

// slotted reports whether a backend's servers are exactly its slots, as rendered.
func slotted(servers map[string]haproxy.Server, slots []render.Slot) bool {
	if len(slots) == 0 || len(servers) != len(slots) {
		return false
	}
	for _, sl := range slots {
		if srv, ok := servers[sl.Name]; !ok || srv.Addr != sl.Addr() {
			return false
		}
	}
	return true
}

// drainTimeout is the draining timeout of each backend's service (30 s for backends of no
// known service).
func (r *Reconciler) drainTimeout(lay layout) func(backend string) time.Duration {
	cfg := r.config()
	return func(backend string) time.Duration {
		if svc, ok := cfg.Services[lay.service[backend]]; ok {
			return svc.DrainingTimeout
		}
		return config.DefaultDrainingTimeout
	}
}
