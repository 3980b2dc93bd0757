package store

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"clb/internal/model"
)

// Lease is a registration that lapses unless renewed: clb_register --ttl.
type Lease struct {
	TTL     time.Duration
	Expires time.Time
}

// Expired is a member removed by Expire.
type Expired struct {
	Service string
	Member  model.Member
	Lease   Lease
}

// PutLease registers or updates m in service as a lease of ttl that expires at now+ttl. A
// renewal (same member, same TTL) only moves the expiry: nothing is written to disk, because
// the expiry is not kept there (see Open), and the new expiry is seen at once, by reads and
// by Expire alike. It reports whether the stored state changed. A change returns once it is
// on disk, as with Put; so does a renewal of a lease that a concurrent call staged and that
// is not on disk yet.
func (s *Store) PutLease(service string, m model.Member, ttl time.Duration, now time.Time) (changed bool, expires time.Time, err error) {
	if err := m.Validate(); err != nil {
		return false, time.Time{}, err
	}
	if ttl <= 0 {
		return false, time.Time{}, fmt.Errorf("%w: lease TTL %s: want a positive duration", model.ErrInvalid, ttl)
	}
	expires = now.Add(ttl)
	s.mu.Lock()
	old, ok := s.staged.services[service][m.Name]
	l, leased := s.staged.leases[service][m.Name]
	if ok && old == m && leased && l.TTL == ttl {
		// Every version that holds this lease gets the new expiry: whichever of them is on
		// disk in the end, after a write or after a failed one, keeps the renewal.
		s.staged.renew(service, m, ttl, expires)
		s.durable.renew(service, m, ttl, expires)
		if s.inflight != nil {
			s.inflight.state.renew(service, m, ttl, expires)
		}
		return false, expires, s.settle(service, m.Name)
	}
	next := cloneMap(s.staged.services[service])
	next[m.Name] = m
	leases := cloneMap(s.staged.leases[service])
	leases[m.Name] = Lease{TTL: ttl, Expires: expires}
	s.staged.set(service, next, leases)
	return true, expires, s.commit()
}

// Lease returns the lease of a member, as on disk (with its expiry from memory); false for a
// permanent or unknown member.
func (s *Store) Lease(service, name string) (Lease, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.durable.leases[service][name]
	return l, ok
}

// Leases returns a copy of every lease on disk, by service and member name.
func (s *Store) Leases() map[string]map[string]Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]map[string]Lease, len(s.durable.leases))
	for service, ls := range s.durable.leases {
		out[service] = maps.Clone(ls)
	}
	return out
}

// Expire removes every member whose lease expired at or before now, durably, and returns them
// sorted by service and name. The lapsed members are chosen and their removal staged under
// one lock, against the staged state, so a renewal is either in time (and the member stays)
// or too late (and re-registers it). All removals share one write: if it fails, none is made
// and Expire returns the error alone.
func (s *Store) Expire(now time.Time) ([]Expired, error) {
	s.mu.Lock()
	var out []Expired
	for _, service := range slices.Sorted(maps.Keys(s.staged.leases)) {
		var lapsed []string
		for name, l := range s.staged.leases[service] {
			if !l.Expires.After(now) {
				lapsed = append(lapsed, name)
			}
		}
		if len(lapsed) == 0 {
			continue
		}
		slices.Sort(lapsed)
		next, leases := cloneMap(s.staged.services[service]), cloneMap(s.staged.leases[service])
		for _, name := range lapsed {
			out = append(out, Expired{Service: service, Member: next[name], Lease: leases[name]})
			delete(next, name)
			delete(leases, name)
		}
		s.staged.set(service, next, leases)
	}
	if len(out) == 0 {
		s.mu.Unlock()
		return nil, nil
	}
	if err := s.commit(); err != nil {
		return nil, fmt.Errorf("expire leases: %w", err)
	}
	return out, nil
}

// renew moves the expiry of m's lease of ttl in v, if v holds that lease. The lease map may
// be shared with other versions, which hold the same lease then.
func (v *view) renew(service string, m model.Member, ttl time.Duration, expires time.Time) {
	if l, ok := v.leases[service][m.Name]; ok && l.TTL == ttl && v.services[service][m.Name] == m {
		v.leases[service][m.Name] = Lease{TTL: ttl, Expires: expires}
	}
}

// loadLeases reads the leases of one service from the state file. Every lease gets a full TTL
// from start-up: clbd cannot know whether a member renewed while it was down, so a restart
// neither expires every member at once nor keeps a dead one longer than one TTL.
func (v view) loadLeases(service string, ttls map[string]string, start time.Time) error {
	if len(ttls) == 0 {
		return nil
	}
	ls := make(map[string]Lease, len(ttls))
	for name, val := range ttls {
		ttl, err := time.ParseDuration(val)
		if err != nil || ttl <= 0 {
			return fmt.Errorf("service %s: lease of %s: TTL %q: want a positive duration", service, name, val)
		}
		if _, ok := v.services[service][name]; !ok {
			return fmt.Errorf("service %s: lease of %s: no such member", service, name)
		}
		ls[name] = Lease{TTL: ttl, Expires: start.Add(ttl)}
	}
	v.leases[service] = ls
	return nil
}

func (r serviceRecord) withLeases(ls map[string]Lease) serviceRecord {
	if len(ls) == 0 {
		return r
	}
	r.Leases = make(map[string]string, len(ls))
	for name, l := range ls {
		r.Leases[name] = l.TTL.String()
	}
	return r
}
