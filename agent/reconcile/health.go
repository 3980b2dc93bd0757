package reconcile

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"clb/internal/haproxy"
	"clb/internal/stats"
)

// HealthInterval is how often the reconciler polls haproxy for its servers' health and
// traffic counters; StatsWindow how much of the counters' history it keeps (GET /v1/stats).
const (
	HealthInterval = 2 * time.Second
	StatsWindow    = 10 * time.Minute
)

// pollHealth refreshes the health cache from haproxy (Run goroutine only): by service and
// member, as the installed layout maps haproxy's backends to services. On the same connection
// it samples `show stat` into the stats history.
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
	sample, err := haproxy.ShowStat(rt)
	if err != nil {
		r.rt = nil
		r.log.Debug("stats poll", "err", err)
		return
	}
	if sample.Stopping {
		return // an old worker answered, just after a reload: not the counters that run
	}
	draining := map[string]string{}
	for key, d := range r.drains {
		draining[key] = d.Member
	}
	r.stats.Add(statsInput(time.Now(), uint64(sample.Pid), sample.Backends, r.layout, draining))
}

// statsInput maps one `show stat` to services and members with the installed layout: each
// service's backends, and each of their servers with the member it holds ("" for a free
// slot). epoch is the worker's pid: a new worker (a reload) starts haproxy's counters again.
// draining is the member each draining server ("backend/server") still serves: the layout
// shows its slot free already, but its last requests are still the member's.
func statsInput(now time.Time, epoch uint64, table map[string]haproxy.BackendStat, lay layout, draining map[string]string) stats.Input {
	in := stats.Input{Time: now, Epoch: epoch, Services: map[string]stats.ServiceInput{}}
	for svc, backends := range lay.order {
		var si stats.ServiceInput
		for _, b := range backends {
			bs, ok := table[b]
			if !ok {
				continue
			}
			// A backend's own row is keyed by its name alone, servers by backend/server: no
			// server name can collide with it.
			si.Backends = append(si.Backends, stats.Source{Key: b, Reading: reading(bs.Backend)})
			for _, name := range slices.Sorted(maps.Keys(bs.Servers)) {
				member := name
				if lay.slotted[b] {
					member = lay.member[b][name]
				}
				if m, ok := draining[b+"/"+name]; ok && member == "" {
					member = m
				}
				si.Servers = append(si.Servers, stats.Source{Key: b + "/" + name, Member: member, Reading: reading(bs.Servers[name])})
			}
		}
		in.Services[svc] = si
	}
	return in
}

func reading(s haproxy.Stat) stats.Reading {
	return stats.Reading{
		Requests:      s.Requests(),
		Responses:     [6]uint64{s.Hrsp1xx, s.Hrsp2xx, s.Hrsp3xx, s.Hrsp4xx, s.Hrsp5xx, s.HrspOther},
		ConnectErrors: s.Econ, ResponseErrors: s.Eresp, Retries: s.Wretr, Redispatches: s.Wredis,
		CheckFailures: s.Chkfail, BytesIn: s.Bin, BytesOut: s.Bout,
		Sessions: s.Scur, Queue: s.Qcur, RespMS: float64(s.Rtime), Up: s.Up(),
	}
}

// Stats is the history of haproxy's counters by service and member, sampled at every health
// poll (empty without a runtime API).
func (r *Reconciler) Stats() *stats.History { return r.stats }

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
