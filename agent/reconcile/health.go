package reconcile

import (
	"context"
	"strings"

	"clb/internal/haproxy"
)

// pollHealth refreshes the health cache from haproxy (Run goroutine only): by service and
// member, as the installed layout maps haproxy's backends to services.
func (r *Reconciler) pollHealth(ctx context.Context) {
	r.mu.Lock()
	running := r.running
	r.mu.Unlock()
	if r.dial == nil || !running {
		return
	}
	rt, err := r.runtime(ctx)
	if err != nil {
		r.log.Debug("health poll", "err", err)
		return
	}
	out, err := rt.ExecuteRaw("show servers state")
	if err != nil {
		r.rt = nil
		r.log.Debug("health poll", "err", err)
		return
	}
	h := memberHealth(haproxy.ParseServersState(strings.Join(out, "")), r.layout)
	r.mu.Lock()
	r.health = h
	r.mu.Unlock()
}

// memberHealth is the health of each member by service: the state of its server in the
// first of the service's backends that has it.
func memberHealth(states map[string]map[string]haproxy.ServerState, lay layout) map[string]map[string]string {
	out := map[string]map[string]string{}
	for svc, backends := range lay.order {
		m := map[string]string{}
		for _, b := range backends {
			for name, st := range states[b] {
				if lay.slotted[b] {
					if name = lay.member[b][name]; name == "" {
						continue // a free slot
					}
				}
				if _, seen := m[name]; !seen {
					m[name] = st.Health
				}
			}
		}
		out[svc] = m
	}
	return out
}

// Health returns the last health poll by service and member (nil before the first, or
// without a runtime API).
func (r *Reconciler) Health() map[string]map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.health
}
