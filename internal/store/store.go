// Package store keeps the membership durable: which members are registered in which service.
// Every change is written to disk (temp file, fsync, rename, directory fsync) before the call
// that made it returns, so a crash or restart of clbd loses nothing that was acknowledged.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"clb/internal/atomicfile"
	"clb/internal/model"
)

// FileName is the state file inside the state directory.
const FileName = "state.json"

const formatVersion = 1

// ErrNotFound is returned when a member to remove is not registered.
var ErrNotFound = errors.New("not found")

// Store is the membership state. It is safe for concurrent use; writers are serialised so
// concurrent calls lose no update.
type Store struct {
	path string

	mu       sync.Mutex
	gen      uint64
	services map[string]map[string]model.Member
	// leases holds the members registered with a TTL (see PutLease and Expire). Only the TTL
	// is written to disk; expiry times live in memory, and Open grants every lease a full TTL
	// from start-up.
	leases map[string]map[string]Lease
}

type file struct {
	Version    int                      `json:"version"`
	Generation uint64                   `json:"generation"`
	Services   map[string]serviceRecord `json:"services"`
}

type serviceRecord struct {
	Members []model.Member `json:"members"`
	// Leases maps the names of leased members to their TTL ("30s"); other members are permanent.
	Leases map[string]string `json:"leases,omitempty"`
}

// Open loads the state from dir (creating dir if needed). A missing state file is an empty
// state; a corrupt one is an error rather than silently losing every member.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open state dir: %w", err)
	}
	s := &Store{path: filepath.Join(dir, FileName), services: map[string]map[string]model.Member{}, leases: map[string]map[string]Lease{}}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var f file
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("read state %s: %w", s.path, err)
	}
	if f.Version != formatVersion {
		return nil, fmt.Errorf("read state %s: unknown format version %d", s.path, f.Version)
	}
	s.gen = f.Generation
	for name, rec := range f.Services {
		ms := map[string]model.Member{}
		for _, m := range rec.Members {
			if err := m.Validate(); err != nil {
				return nil, fmt.Errorf("read state %s: service %s: %w", s.path, name, err)
			}
			ms[m.Name] = m
		}
		s.services[name] = ms
		if err := s.loadLeases(name, rec.Leases, time.Now()); err != nil {
			return nil, fmt.Errorf("read state %s: %w", s.path, err)
		}
	}
	return s, nil
}

// Put registers or updates m in service. It reports whether anything changed; an identical
// registration writes nothing.
func (s *Store) Put(service string, m model.Member) (changed bool, err error) {
	if err := m.Validate(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.services[service][m.Name]
	_, leased := s.leases[service][m.Name]
	if ok && old == m && !leased {
		return false, nil
	}
	next := s.cloneService(service)
	next[m.Name] = m
	leases := s.cloneLeases(service)
	delete(leases, m.Name) // a registration without a TTL is permanent
	return true, s.commit(service, next, leases)
}

// Delete removes member name from service, or returns ErrNotFound.
func (s *Store) Delete(service, name string) (model.Member, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.services[service][name]
	if !ok {
		return model.Member{}, fmt.Errorf("member %s of service %s: %w", name, service, ErrNotFound)
	}
	next := s.cloneService(service)
	delete(next, name)
	leases := s.cloneLeases(service)
	delete(leases, name)
	return m, s.commit(service, next, leases)
}

// Get returns one member.
func (s *Store) Get(service, name string) (model.Member, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.services[service][name]
	return m, ok
}

// Snapshot is a consistent copy of the state.
type Snapshot struct {
	Generation uint64
	// Members by service, sorted by name.
	Members map[string][]model.Member
}

// Snapshot returns a copy of the whole state with its generation.
func (s *Store) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := Snapshot{Generation: s.gen, Members: make(map[string][]model.Member, len(s.services))}
	for name, ms := range s.services {
		snap.Members[name] = record(ms).Members
	}
	return snap
}

func (s *Store) cloneService(service string) map[string]model.Member {
	next := maps.Clone(s.services[service])
	if next == nil {
		next = map[string]model.Member{}
	}
	return next
}

// commit persists the state with service replaced by members, and only then makes it visible:
// a failed write leaves memory and disk as they were.
func (s *Store) commit(service string, members map[string]model.Member, leases map[string]Lease) error {
	f := file{Version: formatVersion, Generation: s.gen + 1, Services: make(map[string]serviceRecord, len(s.services)+1)}
	for name, ms := range s.services {
		if name == service {
			continue
		}
		f.Services[name] = record(ms).withLeases(s.leases[name])
	}
	if len(members) > 0 {
		f.Services[service] = record(members).withLeases(leases)
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := atomicfile.Write(s.path, append(data, '\n'), 0o640); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	s.gen++
	if len(members) > 0 {
		s.services[service] = members
	} else {
		delete(s.services, service)
	}
	if len(leases) > 0 {
		s.leases[service] = leases
	} else {
		delete(s.leases, service)
	}
	return nil
}

func record(ms map[string]model.Member) serviceRecord {
	list := slices.Collect(maps.Values(ms))
	slices.SortFunc(list, func(a, b model.Member) int { return strings.Compare(a.Name, b.Name) })
	return serviceRecord{Members: list}
}
