package reconcile

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"clb/agent/config"
	"clb/internal/haproxy"
	"clb/internal/store"
)

// Server slots. haproxy 2.6 never reuses a backend connection to a server added at runtime
// (`add server`), so members that all arrived through the API would serve at less than half
// the rate of a hand-written config. The built-in template therefore renders every backend
// with a pool of static servers, s1..sN: a member takes a free slot by `set server` (address,
// weight, health, ready) and leaves it by maint, without a reload and with full connection
// reuse; static servers also take cookies and any balance algorithm, so sticky, source, uri
// and static-rr services change at runtime too.
//
// A service's members hold the same slot in every listener's backend. Pools start at
// minSlots and grow, by a reload, to half again what they need when they run out; they do
// not shrink while clbd runs. Which member holds which slot is written into haproxy.cfg (a
// comment on the server line), so a restart of clbd, or a kill -9 at any point, finds the
// mapping again in the config haproxy runs.
//
// Reuse of a freed slot: never while it drains (connections to the member that left, in use
// or idle, remain); never in the apply that freed it; a member that comes back gets its old
// slot again when it is free; and other members take never-used slots before freed ones,
// the longest-freed first. For sticky services that means a slot's cookie goes to a new member
// only when no never-used slot is left: a client still holding the old member's cookie then
// lands on that new member, as it would have landed on any other once the old one left.

// minSlots is the smallest pool.
const minSlots = 8

// poolSize is the size a pool grows to for n members: half again as many, at least minSlots
// or the service's slots setting.
func poolSize(n, least int) int {
	return max(minSlots, least, n+(n+1)/2)
}

// slotName is the haproxy server name (and cookie) of slot i (from 1).
func slotName(i int) string { return "s" + strconv.Itoa(i) }

// slotIndex is the i of a slot name, 0 when name is not one.
func slotIndex(name string) int {
	n, ok := strings.CutPrefix(name, "s")
	if !ok {
		return 0
	}
	i, err := strconv.Atoi(n)
	if err != nil || i < 1 || strconv.Itoa(i) != n {
		return 0
	}
	return i
}

// Slots is the slot table of every service: which member holds which slot. The reconciler
// owns one; clbd render makes a fresh one.
type Slots struct {
	pools map[string]*pool
	round uint64 // assignments made, to tell slots freed by this one
}

type pool struct {
	size   int
	holder map[int]string // slot → member
	slot   map[string]int // member → slot
	// freed are free slots that had a member: who, and in which assignment round.
	freed map[int]freed
}

type freed struct {
	member string
	round  uint64
}

// NewSlots returns an empty table.
func NewSlots() *Slots { return &Slots{pools: map[string]*pool{}} }

func (t *Slots) pool(service string) *pool {
	p := t.pools[service]
	if p == nil {
		p = &pool{holder: map[int]string{}, slot: map[string]int{}, freed: map[int]freed{}}
		t.pools[service] = p
	}
	return p
}

// Learn takes the slots of a rendered config (the one haproxy runs, after a restart of clbd):
// each service's pool size and holders, from its first listener's backend as the built-in
// template names it.
func (t *Slots) Learn(p haproxy.ParsedConfig, cfg *config.Config) {
	for name, svc := range cfg.Services {
		servers := p.Servers[config.BackendName(name, svc.Listeners[0].Port)]
		if len(servers) == 0 {
			continue
		}
		pl := t.pool(name)
		for sname, srv := range servers {
			i := slotIndex(sname)
			if i == 0 {
				continue
			}
			pl.size = max(pl.size, i)
			if srv.Comment != "" && !slices.Contains(srv.Args, "disabled") {
				pl.holder[i], pl.slot[srv.Comment] = srv.Comment, i
			}
		}
	}
}

// Assign gives every member of snap a slot, keeping the slots members hold, freeing those of
// members gone, and growing pools that run out. busy reports slots that still drain. It
// reports whether a pool grew (which takes a reload).
func (t *Slots) Assign(cfg *config.Config, snap store.Snapshot, busy func(service, slot string) bool) (grew bool) {
	t.round++
	for name := range t.pools {
		if _, ok := cfg.Services[name]; !ok {
			delete(t.pools, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Services)) {
		p := t.pool(name)
		present := map[string]bool{}
		for _, m := range snap.Members[name] {
			present[m.Name] = true
		}
		for member, i := range p.slot {
			if !present[member] {
				delete(p.slot, member)
				delete(p.holder, i)
				p.freed[i] = freed{member: member, round: t.round}
			}
		}
		var waiting []string
		for _, m := range snap.Members[name] { // sorted by name
			if _, ok := p.slot[m.Name]; ok {
				continue
			}
			if i := p.pick(m.Name, t.round, func(i int) bool { return busy(name, slotName(i)) }); i > 0 {
				p.take(i, m.Name)
				continue
			}
			waiting = append(waiting, m.Name)
		}
		if p.size < max(minSlots, cfg.Services[name].Slots) || len(waiting) > 0 {
			old := p.size
			p.size = max(poolSize(len(snap.Members[name]), cfg.Services[name].Slots), old+len(waiting))
			grew = grew || (old > 0 && p.size > old)
			next := old + 1
			for _, member := range waiting {
				p.take(next, member)
				next++
			}
		}
	}
	return grew
}

func (p *pool) take(i int, member string) {
	p.holder[i], p.slot[member] = member, i
	delete(p.freed, i)
}

// pick chooses a free slot for member (0: none): its own old slot, else a never-used one,
// else the longest-freed; never a busy one or one freed in this round.
func (p *pool) pick(member string, round uint64, busy func(int) bool) int {
	usable := func(i int) bool {
		f, wasFreed := p.freed[i]
		return p.holder[i] == "" && !busy(i) && (!wasFreed || f.round < round)
	}
	for i, f := range p.freed {
		if f.member == member && usable(i) {
			return i
		}
	}
	for i := 1; i <= p.size; i++ {
		if _, wasFreed := p.freed[i]; !wasFreed && usable(i) {
			return i
		}
	}
	best := 0
	for i, f := range p.freed {
		if usable(i) && (best == 0 || f.round < p.freed[best].round || f.round == p.freed[best].round && i < best) {
			best = i
		}
	}
	return best
}

// PlanSlots is the slot table clbd would use now: learnt from the installed config (nil:
// none), then assigned to the members of snap. For clbd render and check, which must render
// what the daemon renders.
func PlanSlots(installed []byte, cfg *config.Config, snap store.Snapshot) *Slots {
	t := NewSlots()
	if installed != nil {
		t.Learn(haproxy.ParseConfig(installed), cfg)
	}
	t.Assign(cfg, snap, func(string, string) bool { return false })
	return t
}
