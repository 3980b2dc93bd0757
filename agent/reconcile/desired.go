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
// d carries what does not come from the config: template source, sockets, state file.
func Desired(c *config.Config, snap store.Snapshot, d render.Data) render.Data {
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		svc := c.Services[name]
		rs := render.Service{Name: name, Balance: svc.Balance, Sticky: svc.Sticky, Check: renderCheck(*svc.HealthCheck)}
		weights := ZoneWeights(snap.Members[name], c.DisabledZones[name])
		for i, l := range svc.Listeners {
			mode := "http"
			if l.Protocol == "tcp" {
				mode = "tcp"
			}
			rl := render.Listener{
				Name: config.BackendName(name, l.Port), Address: l.Address, Port: l.Port,
				Protocol: l.Protocol, Mode: mode, Certificate: l.Certificate, MemberPort: l.MemberPort,
			}
			for _, m := range snap.Members[name] {
				port := l.MemberPort
				if i == 0 {
					port = m.Port
				}
				rl.Servers = append(rl.Servers, render.Server{Name: m.Name, Address: m.Address, Port: port, Weight: weights[m.Name], Zone: m.Zone})
			}
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
}

func newLayout(p haproxy.ParsedConfig, d render.Data) layout {
	lay := layout{service: map[string]string{}, order: map[string][]string{}}
	add := func(backend, service string) {
		if _, ok := lay.service[backend]; ok {
			return
		}
		lay.service[backend] = service
		lay.order[service] = append(lay.order[service], backend)
	}
	// holder is the backend whose servers include one of l's (same name and address), the
	// first by name; "" when none does.
	holder := func(l render.Listener) string {
		for _, backend := range slices.Sorted(maps.Keys(p.Servers)) {
			if _, taken := lay.service[backend]; taken {
				continue
			}
			for _, srv := range l.Servers {
				if got, ok := p.Servers[backend][srv.Name]; ok && got.Addr == srv.Addr() {
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
			if p.Backends[l.Name] {
				add(l.Name, s.Name)
			} else if b := holder(l); b != "" {
				add(b, s.Name)
			}
		}
	}
	return lay
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
