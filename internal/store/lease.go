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
// the expiry is not kept there (see Open). It reports whether the stored state changed.
func (s *Store) PutLease(service string, m model.Member, ttl time.Duration, now time.Time) (changed bool, expires time.Time, err error) {
	if err := m.Validate(); err != nil {
		return false, time.Time{}, err
	}
	if ttl <= 0 {
		return false, time.Time{}, fmt.Errorf("%w: lease TTL %s: want a positive duration", model.ErrInvalid, ttl)
	}
	expires = now.Add(ttl)
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.services[service][m.Name]
	l, leased := s.leases[service][m.Name]
	if ok && old == m && leased && l.TTL == ttl {
		s.leases[service][m.Name] = Lease{TTL: ttl, Expires: expires}
		return false, expires, nil
	}
	next := s.cloneService(service)
	next[m.Name] = m
	leases := s.cloneLeases(service)
	leases[m.Name] = Lease{TTL: ttl, Expires: expires}
	return true, expires, s.commit(service, next, leases)
}

// Lease returns the lease of a member; false for a permanent or unknown member.
func (s *Store) Lease(service, name string) (Lease, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[service][name]
	return l, ok
}

// Leases returns a copy of every lease, by service and member name.
func (s *Store) Leases() map[string]map[string]Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]map[string]Lease, len(s.leases))
	for service, ls := range s.leases {
		out[service] = maps.Clone(ls)
	}
	return out
}

// Expire removes every member whose lease expired at or before now, durably, and returns them
// sorted by service and name. The check and the removal happen under one lock, so a renewal
// is either in time (and the member stays) or too late (and re-registers it).
func (s *Store) Expire(now time.Time) ([]Expired, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Expired
	for _, service := range slices.Sorted(maps.Keys(s.leases)) {
		var lapsed []string
		for name, l := range s.leases[service] {
			if !l.Expires.After(now) {
				lapsed = append(lapsed, name)
			}
		}
		if len(lapsed) == 0 {
			continue
		}
		slices.Sort(lapsed)
		next, leases := s.cloneService(service), s.cloneLeases(service)
		var removed []Expired
		for _, name := range lapsed {
			removed = append(removed, Expired{Service: service, Member: next[name], Lease: leases[name]})
			delete(next, name)
			delete(leases, name)
		}
		if err := s.commit(service, next, leases); err != nil {
			return out, fmt.Errorf("expire leases of service %s: %w", service, err)
		}
		out = append(out, removed...)
	}
	return out, nil
}

func (s *Store) cloneLeases(service string) map[string]Lease {
	next := maps.Clone(s.leases[service])
	if next == nil {
		next = map[string]Lease{}
	}
	return next
}

// loadLeases reads the leases of one service from the state file. Every lease gets a full TTL
// from start-up: clbd cannot know whether a member renewed while it was down, so a restart
// neither expires every member at once nor keeps a dead one longer than one TTL.
func (s *Store) loadLeases(service string, ttls map[string]string, start time.Time) error {
	if len(ttls) == 0 {
		return nil
	}
	ls := make(map[string]Lease, len(ttls))
	for name, v := range ttls {
		ttl, err := time.ParseDuration(v)
		if err != nil || ttl <= 0 {
			return fmt.Errorf("service %s: lease of %s: TTL %q: want a positive duration", service, name, v)
		}
		if _, ok := s.services[service][name]; !ok {
			return fmt.Errorf("service %s: lease of %s: no such member", service, name)
		}
		ls[name] = Lease{TTL: ttl, Expires: start.Add(ttl)}
	}
	s.leases[service] = ls
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
